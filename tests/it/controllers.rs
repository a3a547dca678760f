//! The workload controllers in a real server started in process on a temp dir (as
//! `k3rs server` starts its control plane, without a node), driven through kube-rs' typed
//! client over the in-process handler stack. Pod readiness is written by the test, as a
//! kubelet would.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k3rs::apiserver::{ApiServer, Identity};
use k3rs::server::config::ServerConfig;
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus, ReplicationController};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

pub struct Cluster {
    #[allow(dead_code)]
    pub api: Arc<ApiServer>,
    pub client: kube::Client,
    _dir: tempfile::TempDir,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub async fn cluster() -> Cluster {
    cluster_with(|_| {}).await
}

/// A cluster whose configuration `configure` adjusts first (shorter grace periods).
pub async fn cluster_with(configure: impl FnOnce(&mut ServerConfig)) -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig::with_defaults(dir.path().join("data"), "node-a");
    config.apiserver.bind_address = "127.0.0.1".parse().expect("ip");
    config.apiserver.https_listen_port = 0;
    config.apiserver.write_kubeconfig = dir.path().join("kubeconfig.yaml");
    // No kubelet keeps the nodes tests make alive: the node lifecycle controllers (which
    // would mark them Unknown, taint them and evict their pods) run only where a test asks
    // for them (tests/it/nodelife.rs).
    config.controllers.retain(|c| !matches!(*c, "node-lifecycle-controller" | "taint-eviction-controller"));
    configure(&mut config);
    let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).expect("store");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let started = k3rs::server::apiserver::start(&config, Arc::new(store), stopped).await.expect("server starts");
    let client = k3rs::client::kube_client(
        &started.api,
        Identity::new("system:admin", &["system:masters", "system:authenticated"]),
    );
    Cluster { api: started.api, client, _dir: dir, stop }
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
pub async fn within<T, F, Fut>(limit: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn make_namespace(c: &Cluster, ns: &str) {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(c.client.clone());
    api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap())
        .await
        .expect("namespace");
    // Pods need the namespace's default ServiceAccount, which its controller makes.
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(c.client.clone(), ns);
    within(Duration::from_secs(10), "the default ServiceAccount", || async {
        sa.get_opt("default").await.ok().flatten()
    })
    .await;
}

/// Pods in `ns` with `selector`, alive (not being deleted).
pub async fn live_pods(c: &Cluster, ns: &str, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(c.client.clone(), ns);
    let list = api.list(&ListParams::default().labels(selector)).await.expect("list pods");
    list.items.into_iter().filter(|p| p.metadata.deletion_timestamp.is_none()).collect()
}

/// Marks a pod Running and Ready, as its kubelet would.
pub async fn make_ready(c: &Cluster, pod: &Pod) {
    let ns = pod.metadata.namespace.as_deref().unwrap();
    let api: Api<Pod> = Api::namespaced(c.client.clone(), ns);
    let status = PodStatus {
        phase: Some("Running".into()),
        conditions: Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now())),
            ..Default::default()
        }]),
        ..Default::default()
    };
    api.patch_status(
        pod.metadata.name.as_deref().unwrap(),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .expect("pod status");
}

fn replicaset(name: &str, replicas: i32, extra_spec: serde_json::Value) -> ReplicaSet {
    let mut spec = json!({
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        },
    });
    for (k, v) in extra_spec.as_object().unwrap() {
        spec["template"]["spec"][k] = v.clone();
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

#[tokio::test]
async fn replicaset_keeps_its_pods_and_reports_them() {
    let c = cluster().await;
    make_namespace(&c, "rs").await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "rs");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "rs");

    // An orphan that matches is adopted, not duplicated.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &orphan).await.expect("orphan pod");
    let rs = rss.create(&PostParams::default(), &replicaset("web", 3, json!({}))).await.expect("create rs");
    let uid = rs.metadata.uid.clone().unwrap();
    let made = within(Duration::from_secs(10), "3 pods", || async {
        let p = live_pods(&c, "rs", "app=web").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    for p in &made {
        let owner = &p.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("ReplicaSet", uid.as_str(), Some(true))
        );
        assert_eq!(owner.block_owner_deletion, Some(true));
    }
    assert!(made.iter().any(|p| p.metadata.name.as_deref() == Some("orphan")), "the orphan was adopted");
    assert!(made.iter().filter(|p| p.metadata.name.as_deref() != Some("orphan")).all(|p| p
        .metadata
        .name
        .as_deref()
        .unwrap()
        .starts_with("web-")));
    // Nothing more comes: the controller waited for its own creates.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(live_pods(&c, "rs", "app=web").await.len(), 3);

    for p in &made {
        make_ready(&c, p).await;
    }
    within(Duration::from_secs(10), "readyReplicas 3", || async {
        let s = rss.get("web").await.ok()?.status?;
        (s.ready_replicas == Some(3) && s.available_replicas == Some(3) && s.observed_generation == Some(1))
            .then_some(())
    })
    .await;

    // A deleted pod is replaced.
    pods.delete(made[0].metadata.name.as_deref().unwrap(), &DeleteParams::default()).await.expect("delete pod");
    within(Duration::from_secs(10), "a replacement", || async {
        let p = live_pods(&c, "rs", "app=web").await;
        (p.len() == 3 && p.iter().all(|p| p.metadata.name != made[0].metadata.name)).then_some(())
    })
    .await;

    // Scaled down, the not-ready replacement goes first.
    rss.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await.expect("scale");
    let left = within(Duration::from_secs(10), "2 pods", || async {
        let p = live_pods(&c, "rs", "app=web").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    let ready: Vec<_> = made[1..].iter().map(|p| p.metadata.name.clone()).collect();
    assert!(left.iter().all(|p| ready.contains(&p.metadata.name)), "the not-ready pod was deleted first");

    // A pod relabelled out of the selector is released.
    let name = left[0].metadata.name.clone().unwrap();
    pods.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})))
        .await
        .expect("relabel");
    within(Duration::from_secs(10), "the release", || async {
        let p = pods.get(&name).await.ok()?;
        p.metadata.owner_references.unwrap_or_default().is_empty().then_some(())
    })
    .await;
    within(Duration::from_secs(10), "a pod in its place", || async {
        (live_pods(&c, "rs", "app=web").await.len() == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_refused_pod_gives_a_replica_failure_condition_and_an_event() {
    let c = cluster().await;
    make_namespace(&c, "fail").await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "fail");
    rss.create(&PostParams::default(), &replicaset("bad", 2, json!({"serviceAccountName": "missing"})))
        .await
        .expect("create rs");
    let cond = within(Duration::from_secs(10), "ReplicaFailure", || async {
        let s = rss.get("bad").await.ok()?.status?;
        s.conditions?.into_iter().find(|c| c.type_ == "ReplicaFailure")
    })
    .await;
    assert_eq!(cond.status, "True");
    assert_eq!(cond.reason.as_deref(), Some("FailedCreate"));
    assert!(cond.message.as_deref().unwrap_or("").contains("missing"), "{cond:?}");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.client.clone(), "fail");
    within(Duration::from_secs(10), "a FailedCreate event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("FailedCreate")).map(|e| {
            assert_eq!(e.type_.as_deref(), Some("Warning"));
            assert!(e.message.as_deref().unwrap_or("").starts_with("Error creating: "), "{e:?}");
        })
    })
    .await;
    // The account appears: the pods follow, and the condition goes.
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(c.client.clone(), "fail");
    sa.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "missing"}})).unwrap())
        .await
        .expect("account");
    within(Duration::from_secs(30), "the pods and no ReplicaFailure", || async {
        let s = rss.get("bad").await.ok()?.status?;
        (s.replicas == 2 && s.conditions.unwrap_or_default().is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn replication_controller_keeps_its_pods() {
    let c = cluster().await;
    make_namespace(&c, "rc").await;
    let rcs: Api<ReplicationController> = Api::namespaced(c.client.clone(), "rc");
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "old"},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": {"app": "old"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))
    .unwrap();
    rcs.create(&PostParams::default(), &rc).await.expect("create rc");
    let made = within(Duration::from_secs(10), "2 pods", || async {
        let p = live_pods(&c, "rc", "app=old").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    assert_eq!(made[0].metadata.owner_references.as_ref().unwrap()[0].kind, "ReplicationController");
    assert_eq!(made[0].metadata.owner_references.as_ref().unwrap()[0].api_version, "v1");
    within(Duration::from_secs(10), "status.replicas 2", || async {
        (rcs.get("old").await.ok()?.status?.replicas == 2).then_some(())
    })
    .await;
}

/// Plays the kubelet for every pod: marks each new pod Running and Ready, until dropped.
pub fn auto_ready(c: &Cluster, ns: &str) -> tokio::task::JoinHandle<()> {
    let api: Api<Pod> = Api::namespaced(c.client.clone(), ns);
    tokio::spawn(async move {
        loop {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for p in list.items {
                    let ready = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready"));
                    if !ready && p.metadata.deletion_timestamp.is_none() {
                        let status = json!({"status": {"phase": "Running", "conditions": [{
                            "type": "Ready", "status": "True", "lastTransitionTime": Timestamp::now().to_string(),
                        }]}});
                        let _ = api
                            .patch_status(
                                p.metadata.name.as_deref().unwrap(),
                                &PatchParams::default(),
                                &Patch::Merge(status),
                            )
                            .await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

fn deployment(name: &str, replicas: i32, image: &str) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }))
    .unwrap()
}

#[tokio::test]
async fn deployment_rolls_out_and_back() {
    use k8s_openapi::api::apps::v1::Deployment;
    let c = cluster().await;
    make_namespace(&c, "dep").await;
    let kubelet = auto_ready(&c, "dep");
    let deps: Api<Deployment> = Api::namespaced(c.client.clone(), "dep");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "dep");
    deps.create(&PostParams::default(), &deployment("web", 4, "busybox:1")).await.expect("create");
    let complete = |rev: &'static str| {
        let deps = deps.clone();
        async move {
            let d = deps.get("web").await.ok()?;
            let s = d.status.clone()?;
            let progressing = s.conditions.as_ref()?.iter().find(|c| c.type_ == "Progressing")?;
            let done = s.observed_generation >= d.metadata.generation
                && s.updated_replicas == Some(4)
                && s.replicas == Some(4)
                && s.available_replicas == Some(4)
                && progressing.reason.as_deref() == Some("NewReplicaSetAvailable")
                && d.metadata.annotations.as_ref()?.get("deployment.kubernetes.io/revision").map(String::as_str)
                    == Some(rev);
            done.then_some(d)
        }
    };
    within(Duration::from_secs(20), "revision 1 rolled out", || complete("1")).await;
    let first = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(first.len(), 1);
    let hash = first[0].metadata.labels.as_ref().unwrap()["pod-template-hash"].clone();
    assert_eq!(first[0].metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    for p in live_pods(&c, "dep", "app=web").await {
        assert_eq!(p.metadata.labels.as_ref().unwrap()["pod-template-hash"], hash);
    }

    deps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}}),
        ),
    )
    .await
    .expect("set image");
    within(Duration::from_secs(30), "revision 2 rolled out", || complete("2")).await;
    let all = rss.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 2);
    let old = all.iter().find(|r| r.metadata.name == first[0].metadata.name).unwrap();
    assert_eq!(old.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(live_pods(&c, "dep", "app=web").await.len(), 4);

    // Scale to 0 and back.
    deps.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 0}}))).await.expect("scale");
    within(Duration::from_secs(20), "no pods", || async {
        live_pods(&c, "dep", "app=web").await.is_empty().then_some(())
    })
    .await;
    kubelet.abort();
}
