//! The node lifecycle and taint eviction controllers in a real server started in process,
//! with a node monitor grace period of 2 s. There is no kubelet: the test creates the Nodes
//! and their Leases in `kube-node-lease`, renews the leases and posts the status as a kubelet
//! would, and stops renewing one to see the control plane give up on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::controllers::{cluster_with, make_namespace, make_ready, within, Cluster};

const NS: &str = "nl";

async fn lifecycle_cluster() -> Cluster {
    let c = cluster_with(|config| {
        config.node_lifecycle.node_monitor_grace_period = Duration::from_secs(2);
        config.node_lifecycle.node_monitor_period = Duration::from_millis(500);
        config.controllers.extend(["node-lifecycle-controller", "taint-eviction-controller"]);
    })
    .await;
    make_namespace(&c, NS).await;
    c
}

/// Registers a node and posts it Ready, as its kubelet would.
async fn make_node(c: &Cluster, name: &str) {
    let nodes: Api<Node> = Api::all(c.client.clone());
    nodes
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap())
        .await
        .expect("node");
    post_ready(c, name, "True").await;
}

async fn post_ready(c: &Cluster, name: &str, status: &str) {
    let nodes: Api<Node> = Api::all(c.client.clone());
    let now = Time(Timestamp::now());
    let condition = json!({"type": "Ready", "status": status, "reason": "KubeletReady",
        "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": {"conditions": [condition]}})))
        .await
        .expect("node status");
}

/// Renews the node's lease every 200 ms while `alive` holds.
fn keep_renewing(c: &Cluster, name: &str, alive: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    let leases: Api<Lease> = Api::namespaced(c.client.clone(), "kube-node-lease");
    let name = name.to_string();
    tokio::spawn(async move {
        loop {
            if alive.load(Ordering::SeqCst) {
                let spec = json!({"holderIdentity": name, "leaseDurationSeconds": 40,
                    "renewTime": MicroTime(Timestamp::now())});
                let renewed =
                    leases.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"spec": spec.clone()}))).await;
                if renewed.is_err() {
                    let lease = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
                    let _ = leases.create(&PostParams::default(), &lease).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

async fn pod_on(c: &Cluster, name: &str, node: &str, tolerations: serde_json::Value) -> Pod {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), NS);
    let mut spec = json!({"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]});
    if !tolerations.is_null() {
        spec["tolerations"] = tolerations;
    }
    let pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.expect("pod");
    make_ready(c, &created).await;
    created
}

async fn node(c: &Cluster, name: &str) -> Node {
    Api::<Node>::all(c.client.clone()).get(name).await.expect("node")
}

fn ready_of(n: &Node) -> Option<k8s_openapi::api::core::v1::NodeCondition> {
    n.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready").cloned()
}

fn taints_of(n: &Node) -> Vec<Taint> {
    n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default()
}

fn keys(taints: &[Taint]) -> Vec<String> {
    taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect()
}

/// Being deleted (a pod on a node waits for its kubelet) or gone.
async fn evicted(c: &Cluster, name: &str) -> Option<()> {
    match Api::<Pod>::namespaced(c.client.clone(), NS).get_opt(name).await.expect("get pod") {
        None => Some(()),
        Some(p) => p.metadata.deletion_timestamp.map(|_| ()),
    }
}

async fn event(c: &Cluster, reason: &str, message: &str) -> Option<Event> {
    let events: Api<Event> = Api::namespaced(c.client.clone(), NS);
    let list = events.list(&ListParams::default()).await.ok()?;
    list.items.into_iter().find(|e| e.reason.as_deref() == Some(reason) && e.message.as_deref() == Some(message))
}

#[tokio::test]
async fn a_silent_node_turns_unknown_its_pods_go_by_their_tolerations_and_it_comes_back() {
    let c = lifecycle_cluster().await;
    make_node(&c, "healthy").await;
    make_node(&c, "silent").await;
    let healthy = keep_renewing(&c, "healthy", Arc::new(AtomicBool::new(true)));
    let silent_alive = Arc::new(AtomicBool::new(true));
    let silent = keep_renewing(&c, "silent", silent_alive.clone());

    // The admission gives a pod without tolerations upstream's two defaults.
    let kept = pod_on(&c, "kept", "silent", serde_json::Value::Null).await;
    let defaults: Vec<_> = kept.spec.as_ref().unwrap().tolerations.clone().unwrap();
    assert_eq!(
        serde_json::to_value(&defaults).unwrap(),
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
        ])
    );
    let unreachable_for = |s: i64| json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s}]);
    pod_on(&c, "at-once", "silent", unreachable_for(0)).await;
    pod_on(&c, "after-5s", "silent", unreachable_for(5)).await;

    // Alive for a while: nothing happens.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let n = node(&c, "silent").await;
    assert_eq!(ready_of(&n).unwrap().status, "True");
    assert!(taints_of(&n).is_empty(), "{:?}", taints_of(&n));

    // The lease stops: after the grace period the node is Unknown and tainted.
    silent_alive.store(false, Ordering::SeqCst);
    let stopped = Instant::now();
    let n = within(Duration::from_secs(15), "the silent node Unknown and tainted", || async {
        let n = node(&c, "silent").await;
        let unknown = ready_of(&n)?.status == "Unknown";
        (unknown && taints_of(&n).len() == 2).then_some(n)
    })
    .await;
    // The last renewal may have come up to one renewal period (200 ms) before `stopped`.
    assert!(stopped.elapsed() >= Duration::from_millis(1800), "not before the grace period");
    let tainted = Instant::now();
    assert!(evicted(&c, "after-5s").await.is_none(), "after-5s went early");
    let ready = ready_of(&n).unwrap();
    assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
    assert_eq!(ready.message.as_deref(), Some("Kubelet stopped posting node status."));
    for type_ in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let cond = n.status.as_ref().unwrap().conditions.as_ref().unwrap().iter().find(|c| c.type_ == type_).cloned();
        assert_eq!(cond.map(|c| c.status).as_deref(), Some("Unknown"), "{type_}");
    }
    let taints = taints_of(&n);
    assert_eq!(
        keys(&taints),
        ["node.kubernetes.io/unreachable:NoExecute", "node.kubernetes.io/unreachable:NoSchedule"]
    );
    assert!(taints.iter().all(|t| t.time_added.is_some()), "{taints:?}");
    let h = node(&c, "healthy").await;
    assert_eq!(ready_of(&h).unwrap().status, "True");
    assert!(taints_of(&h).is_empty());

    // Tolerated for 0 s: evicted at once, marked and announced.
    within(Duration::from_secs(10), "at-once evicted", || evicted(&c, "at-once")).await;
    within(Duration::from_secs(10), "the eviction event", || {
        event(&c, "TaintManagerEviction", "Marking for deletion Pod nl/at-once")
    })
    .await;
    if let Some(p) = Api::<Pod>::namespaced(c.client.clone(), NS).get_opt("at-once").await.unwrap() {
        let conditions = p.status.unwrap().conditions.unwrap();
        let target = conditions.iter().find(|c| c.type_ == "DisruptionTarget").expect("DisruptionTarget");
        assert_eq!(target.reason.as_deref(), Some("DeletionByTaintManager"));
    }
    // The pods on the node are no longer Ready.
    within(Duration::from_secs(10), "kept not Ready", || async {
        let p = Api::<Pod>::namespaced(c.client.clone(), NS).get("kept").await.ok()?;
        let ready = p.status?.conditions?.into_iter().find(|c| c.type_ == "Ready")?;
        (ready.status == "False").then_some(())
    })
    .await;
    // Tolerated for 5 s: evicted 5 s after the taint.
    within(Duration::from_secs(15), "after-5s evicted", || evicted(&c, "after-5s")).await;
    assert!(tainted.elapsed() >= Duration::from_secs(4), "after-5s went after {:?}", tainted.elapsed());
    // The 300 s default holds.
    assert!(evicted(&c, "kept").await.is_none(), "kept was evicted");

    // The kubelet comes back: lease and status. The taints go and the eviction is cancelled.
    silent_alive.store(true, Ordering::SeqCst);
    post_ready(&c, "silent", "True").await;
    within(Duration::from_secs(15), "the node healthy and untainted", || async {
        let n = node(&c, "silent").await;
        (ready_of(&n)?.status == "True" && taints_of(&n).is_empty()).then_some(())
    })
    .await;
    within(Duration::from_secs(10), "the cancellation event", || {
        event(&c, "TaintManagerEviction", "Cancelling deletion of Pod nl/kept")
    })
    .await;
    assert!(evicted(&c, "kept").await.is_none(), "kept was evicted");
    healthy.abort();
    silent.abort();
}

#[tokio::test]
async fn a_noexecute_taint_evicts_the_pods_that_do_not_tolerate_it() {
    let c = lifecycle_cluster().await;
    make_node(&c, "worker").await;
    let renewing = keep_renewing(&c, "worker", Arc::new(AtomicBool::new(true)));
    pod_on(&c, "plain", "worker", serde_json::Value::Null).await;
    pod_on(
        &c,
        "tolerant",
        "worker",
        json!([{"key": "example.com/maintenance", "operator": "Exists", "effect": "NoExecute"}]),
    )
    .await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let taint = json!({"key": "example.com/maintenance", "value": "now", "effect": "NoExecute"});
    nodes
        .patch("worker", &PatchParams::default(), &Patch::Merge(json!({"spec": {"taints": [taint]}})))
        .await
        .expect("taint the node");
    within(Duration::from_secs(10), "plain evicted", || evicted(&c, "plain")).await;
    within(Duration::from_secs(10), "the eviction event", || {
        event(&c, "TaintManagerEviction", "Marking for deletion Pod nl/plain")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(evicted(&c, "tolerant").await.is_none(), "tolerant was evicted");
    // The node lifecycle controller leaves a taint it does not manage alone.
    let n = node(&c, "worker").await;
    assert_eq!(keys(&taints_of(&n)), ["example.com/maintenance:NoExecute"]);
    assert_eq!(ready_of(&n).unwrap().status, "True");
    renewing.abort();
}
