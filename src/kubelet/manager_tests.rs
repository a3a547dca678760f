//! The pod manager's reconcile loop against an in-process API server and the fake node: pods
//! bound to the node start once, deleted pods are torn down, a sandbox whose holder died is
//! made again, containers a previous process left are adopted or removed, and a failing
//! sandbox set-up is retried after its pause.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, PodSpec, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::apiserver::{ApiServer, Identity};
use crate::kubelet::backend::ContainerRecord;
use crate::kubelet::fake::{Events, FakeApi, FakeBackend};
use crate::kubelet::status::AttemptState;
use crate::store::sqlite::{SqliteOptions, SqliteStore};

const NODE: &str = "node-a";

struct Cluster {
    _dir: tempfile::TempDir,
    client: Client,
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap();
    let api = ApiServer::new(Arc::new(store));
    api.bootstrap().await.unwrap();
    let client = Client::new(api, Identity::new("system:admin", &["system:masters"]));
    // Pods need their service account (the controller that makes it is not running here).
    // It mounts no API access volume: no root-CA publisher runs here, and this server has
    // no token issuer (e2e_serviceaccount covers that volume).
    let account = ServiceAccount {
        metadata: ObjectMeta { name: Some("default".into()), ..Default::default() },
        automount_service_account_token: Some(false),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.typed(), "default")
        .create(&PostParams::default(), &account)
        .await
        .unwrap();
    Cluster { _dir: dir, client }
}

/// A pod named `name` on `node` with one container `a`, as a test writes it.
fn pod_on(name: &str, namespace: Option<&str>, uid: Option<&str>, node: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: namespace.map(str::to_string),
            uid: uid.map(str::to_string),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container { name: "a".into(), image: Some("busybox:1".into()), ..Default::default() }],
            ..Default::default()
        }),
        status: None,
    }
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// The status of the pod's first container.
fn first_container(p: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.first()
}

impl Cluster {
    /// Creates a pod bound to `node` with one container `a`; returns its uid.
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.typed(), "default")
    }

    async fn pod(&self, name: &str, node: &str) -> String {
        let made = self.pods().create(&PostParams::default(), &pod_on(name, None, None, node)).await.unwrap();
        made.metadata.uid.expect("a uid")
    }

    async fn get(&self, name: &str) -> Option<Pod> {
        self.pods().get_opt(name).await.unwrap()
    }

    async fn delete(&self, name: &str, grace: u32) {
        let params = DeleteParams { grace_period_seconds: Some(grace), ..Default::default() };
        self.pods().delete(name, &params).await.unwrap();
    }

    /// Waits until the pod's status is `want`.
    async fn until_phase(&self, name: &str, want: &str) -> Pod {
        for _ in 0..200 {
            if let Some(p) = self.get(name).await.filter(|p| phase(p) == want) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pod {name} never reached {want}: {:?}", self.get(name).await);
    }

    async fn until_gone(&self, name: &str) {
        for _ in 0..200 {
            if self.get(name).await.is_none() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pod {name} is still there: {:?}", self.get(name).await);
    }
}

/// Waits until `check` holds of the fake node.
async fn until(backend: &FakeBackend, what: &str, check: impl Fn(&crate::kubelet::fake::Node) -> bool) {
    for _ in 0..200 {
        if check(&backend.node()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

/// A kubelet's pod manager running against the cluster and a fake node.
struct Kubelet {
    backend: Arc<FakeBackend>,
    events: Arc<Events>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

fn start(cluster: &Cluster, backend: Arc<FakeBackend>) -> Kubelet {
    let events = Arc::new(Events::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(
        cluster.client.clone(),
        NODE.into(),
        "10.0.0.1".into(),
        backend.clone(),
        Arc::new(ClientApi::new(cluster.client.clone())),
        events.clone(),
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    Kubelet { backend, events, stop: Some(stop), task }
}

impl Kubelet {
    async fn shut_down(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), &mut self.task).await.expect("the manager stops").unwrap();
    }
}

fn running(id: &str, pod_uid: &str, attempt: u32) -> ContainerRecord {
    ContainerRecord {
        id: id.into(),
        pod_uid: pod_uid.into(),
        container: "a".into(),
        attempt,
        image: "busybox:1".into(),
        image_id: "busybox:1@sha256:00".into(),
        state: AttemptState::Running { started_at: "2026-01-01T00:00:00Z".into() },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_bound_to_the_node_starts_once_and_others_are_left_alone() {
    let c = cluster().await;
    let uid = c.pod("web", NODE).await;
    c.pod("elsewhere", "node-b").await;
    let k = start(&c, Arc::new(FakeBackend::new(&["busybox:1"])));
    let pod = c.until_phase("web", "Running").await;
    assert_eq!(pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()), Some("10.42.0.7"));
    // Several resync passes later, still one sandbox and one container.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    {
        let n = k.backend.node();
        assert_eq!(n.sandboxes, std::slice::from_ref(&uid));
        assert_eq!(n.containers.len(), 1);
        assert_eq!((n.containers[0].pod_uid.as_str(), n.containers[0].attempt), (uid.as_str(), 0));
    }
    assert_eq!(k.events.reasons().iter().filter(|r| *r == "Started").count(), 1);
    assert_eq!(phase(&c.get("elsewhere").await.unwrap()), "Pending");
    k.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pod_is_stopped_within_its_grace_torn_down_and_its_delete_completed() {
    let c = cluster().await;
    let uid = c.pod("web", NODE).await;
    let k = start(&c, Arc::new(FakeBackend::new(&["busybox:1"])));
    c.until_phase("web", "Running").await;
    let id = k.backend.node().containers[0].id.clone();
    c.delete("web", 7).await;
    c.until_gone("web").await;
    {
        let n = k.backend.node();
        assert_eq!(n.stopped, [(id.clone(), Duration::from_secs(7))]);
        assert_eq!(n.removed, [id]);
        assert!(n.containers.is_empty() && n.sandboxes.is_empty());
        assert_eq!(n.torn_down, [uid]);
    }
    k.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_removed_from_the_api_at_once_is_torn_down_all_the_same() {
    let c = cluster().await;
    let uid = c.pod("web", NODE).await;
    let k = start(&c, Arc::new(FakeBackend::new(&["busybox:1"])));
    c.until_phase("web", "Running").await;
    // Grace 0 on a pod removes the object at once: the kubelet only sees it go.
    c.delete("web", 0).await;
    until(&k.backend, "the pod's sandbox torn down", |n| n.torn_down == std::slice::from_ref(&uid)).await;
    {
        let n = k.backend.node();
        assert!(n.containers.is_empty());
        assert_eq!(n.stopped.len(), 1);
    }
    k.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_whose_holder_died_is_made_again_without_any_change_to_the_pod() {
    let c = cluster().await;
    let uid = c.pod("web", NODE).await;
    let k = start(&c, Arc::new(FakeBackend::new(&["busybox:1"])));
    c.until_phase("web", "Running").await;
    let first = k.backend.node().containers[0].id.clone();
    k.backend.node().dead_sandboxes.push(uid.clone());
    until(&k.backend, "a second sandbox", |n| n.sandboxes.len() == 2).await;
    until(&k.backend, "the container running again", |n| {
        n.containers.iter().any(|c| c.id != first && matches!(c.state, AttemptState::Running { .. }))
    })
    .await;
    assert_eq!(k.backend.node().stopped, [(first, Duration::ZERO)]);
    assert!(k.events.reasons().contains(&"SandboxChanged".to_string()));
    for _ in 0..100 {
        let p = c.get("web").await.unwrap();
        if first_container(&p).is_some_and(|s| s.restart_count == 1) {
            assert_eq!(phase(&p), "Running");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(first_container(&c.get("web").await.unwrap()).map(|s| s.restart_count), Some(1));
    k.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_a_previous_process_left_are_adopted_or_removed_with_their_pod() {
    let c = cluster().await;
    let uid = c.pod("web", NODE).await;
    let backend = Arc::new(FakeBackend::new(&["busybox:1"]));
    {
        let mut n = backend.node();
        n.containers.push(running("kept", &uid, 3));
        n.containers.push(running("orphan", "uid-of-a-deleted-pod", 0));
    }
    let k = start(&c, backend);
    let pod = c.until_phase("web", "Running").await;
    let kept = first_container(&pod).expect("a container status");
    assert_eq!(kept.container_id.as_deref(), Some("libcontainer://kept"));
    assert_eq!(kept.restart_count, 3);
    until(&k.backend, "the orphan removed", |n| n.removed == ["orphan"]).await;
    until(&k.backend, "the orphan's sandbox torn down", |n| n.torn_down == ["uid-of-a-deleted-pod"]).await;
    {
        let n = k.backend.node();
        assert_eq!(n.stopped, [("orphan".to_string(), Duration::ZERO)]);
        let ids: Vec<&str> = n.containers.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["kept"], "the adopted container is not started again");
    }
    k.shut_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_manager_leaves_pods_running() {
    let c = cluster().await;
    c.pod("web", NODE).await;
    let k = start(&c, Arc::new(FakeBackend::new(&["busybox:1"])));
    c.until_phase("web", "Running").await;
    let backend = k.backend.clone();
    k.shut_down().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let n = backend.node();
    assert_eq!(n.containers.len(), 1);
    assert!(n.stopped.is_empty() && n.torn_down.is_empty());
}

#[tokio::test]
async fn a_failing_sandbox_is_retried_after_its_pause() {
    let backend = Arc::new(FakeBackend::new(&["busybox:1"]));
    backend.node().failing_sandboxes = 1;
    let events = Arc::new(Events::default());
    let mut pod = pod_on("web", Some("default"), Some("u1"), NODE);
    pod.status = Some(PodStatus { phase: Some("Pending".into()), ..Default::default() });
    let worker = Worker::new(pod, "10.0.0.1".into(), backend.clone(), Arc::new(FakeApi::default()), events.clone());
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(run_worker(worker, rx));
    let failures = || events.reasons().iter().filter(|r| *r == "FailedCreatePodSandBox").count();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(failures(), 1);
    tokio::time::sleep(Duration::from_millis(4300)).await;
    assert!(backend.node().sandboxes.is_empty(), "no retry before the pause is over");
    until(&backend, "the sandbox made on the retry", |n| n.sandboxes == ["u1"] && n.containers.len() == 1).await;
    assert_eq!(failures(), 1);
    // The manager going away ends the worker and leaves the pod as it is.
    drop(tx);
    tokio::time::timeout(Duration::from_secs(5), task).await.expect("the worker ends").unwrap();
    assert!(backend.node().torn_down.is_empty());
}
