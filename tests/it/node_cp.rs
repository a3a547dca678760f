//! The control-plane pieces pods need, in a real server started in process on a temp dir
//! (PKI, HTTPS listener, controllers and scheduler as `k3rs server` starts them): the
//! `default` ServiceAccount and `kube-root-ca.crt` in new namespaces, ServiceAccount
//! admission, the binding subresource, the scheduler, and the node's registration and lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k3rs::apiserver::status::Reason;
use k3rs::apiserver::{ApiServer, Identity};
use k3rs::client::Client;
use k3rs::server::config::ServerConfig;
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};

struct Cluster {
    api: Arc<ApiServer>,
    admin: Client,
    dir: tempfile::TempDir,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn cluster() -> Cluster {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig::with_defaults(dir.path().join("data"), "node-a");
    config.apiserver.bind_address = "127.0.0.1".parse().expect("ip");
    config.apiserver.https_listen_port = 0;
    config.apiserver.write_kubeconfig = dir.path().join("kubeconfig.yaml");
    // The nodes these tests make have no kubelet: see tests/it/controllers.rs.
    config.controllers.retain(|c| !matches!(*c, "node-lifecycle-controller" | "taint-eviction-controller"));
    let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).expect("store");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let started = k3rs::server::apiserver::start(&config, Arc::new(store), stopped).await.expect("server starts");
    let admin =
        Client::new(started.api.clone(), Identity::new("system:admin", &["system:masters", "system:authenticated"]));
    Cluster { api: started.api, admin, dir, stop }
}

/// Polls `f` every 20 ms until it returns `Some`, for at most `limit`.
async fn within<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pod(name: &str, extra_spec: Value) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    });
    if let (Some(spec), Some(extra)) = (p["spec"].as_object_mut(), extra_spec.as_object()) {
        for (k, v) in extra {
            spec.insert(k.clone(), v.clone());
        }
    }
    p
}

async fn make_namespace(c: &Cluster, ns: &str) {
    c.admin
        .post("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
        .await
        .expect("namespace");
}

/// Waits until the namespace's `default` ServiceAccount exists.
async fn wait_default_sa(c: &Cluster, ns: &str) {
    let path = format!("/api/v1/namespaces/{ns}/serviceaccounts/default");
    within(Duration::from_secs(2), || async { c.admin.get(&path).await.ok() }).await.expect("default service account");
}

#[tokio::test]
async fn new_namespaces_get_the_default_service_account_and_the_root_ca_within_a_second() {
    let c = cluster().await;
    let ca = std::fs::read_to_string(c.dir.path().join("data/server/tls/server-ca.crt")).expect("server CA");
    let t0 = Instant::now();
    make_namespace(&c, "team-a").await;
    let sa_path = "/api/v1/namespaces/team-a/serviceaccounts/default";
    let cm_path = "/api/v1/namespaces/team-a/configmaps/kube-root-ca.crt";
    let sa = within(Duration::from_secs(1), || async { c.admin.get(sa_path).await.ok() }).await;
    let cm = within(Duration::from_secs(1), || async { c.admin.get(cm_path).await.ok() }).await;
    assert!(t0.elapsed() < Duration::from_secs(1), "took {:?}", t0.elapsed());
    assert_eq!(sa.expect("service account")["metadata"]["name"], "default");
    let cm = cm.expect("root CA config map");
    assert_eq!(cm["data"], json!({"ca.crt": ca}));
    assert_eq!(
        cm["metadata"]["annotations"]["kubernetes.io/description"],
        "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."
    );
    // Namespaces from boot have them too.
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let path = format!("/api/v1/namespaces/{ns}/configmaps/kube-root-ca.crt");
        within(Duration::from_secs(2), || async { c.admin.get(&path).await.ok() })
            .await
            .unwrap_or_else(|| panic!("root CA in {ns}"));
        wait_default_sa(&c, ns).await;
    }

    // Deleted: recreated (a new uid).
    let old_uid = c.admin.get(sa_path).await.expect("sa")["metadata"]["uid"].clone();
    c.admin.delete(sa_path).await.expect("delete sa");
    let back = within(Duration::from_secs(1), || async {
        c.admin.get(sa_path).await.ok().filter(|s| s["metadata"]["uid"] != old_uid)
    })
    .await;
    assert!(back.is_some(), "default service account not recreated");
    c.admin.delete(cm_path).await.expect("delete cm");
    let back = within(Duration::from_secs(1), || async { c.admin.get(cm_path).await.ok() }).await;
    assert_eq!(back.expect("config map recreated")["data"]["ca.crt"], ca.as_str());

    // Changed: restored, the user's extra annotation kept.
    let mut cm = c.admin.get(cm_path).await.expect("cm");
    cm["data"]["ca.crt"] = json!("not a CA");
    cm["metadata"]["annotations"] = json!({"team": "a"});
    c.admin.put(cm_path, &cm).await.expect("update cm");
    let fixed = within(Duration::from_secs(1), || async {
        c.admin.get(cm_path).await.ok().filter(|cm| cm["data"]["ca.crt"] == ca.as_str())
    })
    .await
    .expect("config map restored");
    assert_eq!(fixed["metadata"]["annotations"]["team"], "a");
    assert!(fixed["metadata"]["annotations"]["kubernetes.io/description"].is_string());

    // A terminating namespace gets nothing back.
    c.admin.delete("/api/v1/namespaces/team-a").await.expect("delete ns");
    let gone = within(Duration::from_secs(5), || async {
        c.admin.get("/api/v1/namespaces/team-a").await.err().filter(|e| e.is_not_found())
    })
    .await;
    assert!(gone.is_some(), "namespace not deleted");
}

#[tokio::test]
async fn pods_default_to_the_default_account_and_a_missing_account_is_refused_as_upstream() {
    let c = cluster().await;
    wait_default_sa(&c, "default").await;
    let created = c
        .admin
        .post("/api/v1/namespaces/default/pods", &pod("p1", json!({"schedulerName": "none"})))
        .await
        .expect("pod");
    assert_eq!(created["spec"]["serviceAccountName"], "default");
    assert_eq!(created["spec"]["serviceAccount"], "default");

    let err = c
        .admin
        .post("/api/v1/namespaces/default/pods", &pod("p2", json!({"serviceAccountName": "robot"})))
        .await
        .expect_err("refused");
    assert_eq!((err.code(), err.reason), (403, Reason::Forbidden));
    assert_eq!(
        err.message,
        r#"pods "p2" is forbidden: error looking up service account default/robot: serviceaccount "robot" not found"#
    );
    // The full Status, as kubectl shows it.
    let resp = c.api.router();
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/api/v1/namespaces/default/pods")
        .header("content-type", "application/json")
        .extension(Identity::new("system:admin", &["system:masters", "system:authenticated"]))
        .body(axum::body::Body::from(pod("p2", json!({"serviceAccount": "robot"})).to_string()))
        .expect("request");
    let resp = tower::ServiceExt::oneshot(resp, req).await.expect("response");
    assert_eq!(resp.status(), 403);
    let body: Value =
        serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body")).expect("json");
    assert_eq!((body["details"]["name"].as_str(), body["details"]["kind"].as_str()), (Some("p2"), Some("pods")));

    // Once the account exists the same pod is admitted.
    c.admin
        .post(
            "/api/v1/namespaces/default/serviceaccounts",
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}),
        )
        .await
        .expect("sa");
    let ok = c
        .admin
        .post(
            "/api/v1/namespaces/default/pods",
            &pod("p2", json!({"serviceAccountName": "robot", "schedulerName": "none"})),
        )
        .await
        .expect("pod");
    assert_eq!(ok["spec"]["serviceAccount"], "robot");

    // Mirror pods skip the lookup and get no account.
    let mut mirror = pod("static-node-a", json!({"nodeName": "node-a"}));
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
    make_namespace(&c, "no-sa-yet").await;
    let m = c.admin.post("/api/v1/namespaces/default/pods", &mirror).await.expect("mirror pod");
    assert!(m["spec"].get("serviceAccountName").is_none(), "{m}");
    mirror["spec"]["serviceAccountName"] = json!("default");
    mirror["metadata"]["name"] = json!("static2-node-a");
    let err = c.admin.post("/api/v1/namespaces/default/pods", &mirror).await.expect_err("refused");
    assert_eq!(err.message, r#"pods "static2-node-a" is forbidden: a mirror pod may not reference service accounts"#);
}

#[tokio::test]
async fn binding_assigns_a_pod_once_as_upstream() {
    let c = cluster().await;
    wait_default_sa(&c, "default").await;
    // A scheduler name nobody serves, so only this test binds.
    for name in ["b1", "b2", "b3"] {
        c.admin
            .post("/api/v1/namespaces/default/pods", &pod(name, json!({"schedulerName": "manual"})))
            .await
            .expect("pod");
    }
    let binding = |pod: &str, node: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});

    let st = c.admin.post("/api/v1/namespaces/default/pods/b1/binding", &binding("b1", "n1")).await.expect("bound");
    assert_eq!(st, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}));
    let p = c.admin.get("/api/v1/namespaces/default/pods/b1").await.expect("pod");
    assert_eq!(p["spec"]["nodeName"], "n1");
    let cond = p["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .expect("PodScheduled");
    assert_eq!(cond["status"], "True");
    assert!(cond["lastTransitionTime"].is_string());

    let err =
        c.admin.post("/api/v1/namespaces/default/pods/b1/binding", &binding("b1", "n2")).await.expect_err("conflict");
    assert_eq!((err.code(), err.reason), (409, Reason::Conflict));
    assert_eq!(
        err.message,
        r#"Operation cannot be fulfilled on pods/binding "b1": pod b1 is already assigned to node "n1""#
    );

    let err =
        c.admin.post("/api/v1/namespaces/default/pods/b2/binding", &binding("b1", "n2")).await.expect_err("mismatch");
    assert_eq!((err.code(), err.message.as_str()), (400, "name in URL does not match name in Binding object"));

    // dryRun: success, nothing changes.
    c.admin.post("/api/v1/namespaces/default/pods/b2/binding?dryRun=All", &binding("b2", "n1")).await.expect("dry run");
    let p = c.admin.get("/api/v1/namespaces/default/pods/b2").await.expect("pod");
    assert!(p["spec"].get("nodeName").is_none(), "{p}");

    // The deprecated collection, with annotations merged into the pod.
    let mut b = binding("b2", "n2");
    b["metadata"]["annotations"] = json!({"example.com/why": "test"});
    c.admin.post("/api/v1/namespaces/default/bindings", &b).await.expect("bound");
    let p = c.admin.get("/api/v1/namespaces/default/pods/b2").await.expect("pod");
    assert_eq!(
        (p["spec"]["nodeName"].as_str(), p["metadata"]["annotations"]["example.com/why"].as_str()),
        (Some("n2"), Some("test"))
    );

    let err = c
        .admin
        .post("/api/v1/namespaces/default/pods/nope/binding", &binding("nope", "n1"))
        .await
        .expect_err("missing");
    assert_eq!((err.code(), err.message.as_str()), (404, r#"pods "nope" not found"#));
    let mut bad = binding("b3", "");
    bad["target"]["kind"] = json!("Pod");
    let err = c.admin.post("/api/v1/namespaces/default/pods/b3/binding", &bad).await.expect_err("invalid");
    assert_eq!((err.code(), err.reason), (500, Reason::Unknown));
    assert_eq!(
        err.message,
        r#"[target.kind: Unsupported value: "Pod": supported values: "Node", "<empty>", target.name: Required value]"#
    );
}

use k3rs::kubelet::node::{self, HostFacts, NodeConditions, NodeSpecInput};

fn facts(cpus: u64, memory_gib: u64) -> HostFacts {
    HostFacts {
        cpus,
        memory_bytes: memory_gib << 30,
        ephemeral_storage_bytes: 50 << 30,
        machine_id: "0123456789abcdef0123456789abcdef".into(),
        system_uuid: "uuid".into(),
        boot_id: "boot".into(),
        kernel_version: "6.1.0-test".into(),
        os_image: "Test Linux".into(),
    }
}

/// Registers a node through the API as the kubelet does and keeps its heartbeat going
/// until the cluster stops.
async fn start_node(c: &Cluster, name: &str, cpus: u64, memory_gib: u64) -> NodeSpecInput {
    let mut info =
        NodeSpecInput::new(name, "127.0.0.1".parse().expect("ip"), "10.42.0.0/16".parse().expect("cidr"), c.dir.path());
    info.facts = Some(facts(cpus, memory_gib));
    info.heartbeat.lease_every = Duration::from_millis(200);
    info.heartbeat.status_every = Duration::from_millis(200);
    let client = Client::new(c.api.clone(), node::node_identity(name));
    node::register(&client, &info).await.expect("register");
    let mut rx = c.stop.subscribe();
    tokio::spawn(node::run_heartbeat(client, info.clone(), NodeConditions::default, async move {
        let _ = rx.wait_for(|v| *v).await;
    }));
    info
}

async fn wait_bound(c: &Cluster, ns: &str, name: &str) -> Option<String> {
    let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
    within(Duration::from_secs(3), || async {
        c.admin
            .get(&path)
            .await
            .ok()
            .and_then(|p| p["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()).map(str::to_string))
    })
    .await
}

/// Waits for the pod's PodScheduled=False condition; returns its message.
async fn wait_unschedulable(c: &Cluster, ns: &str, name: &str) -> String {
    let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
    within(Duration::from_secs(3), || async {
        let p = c.admin.get(&path).await.ok()?;
        let cond = p["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "PodScheduled")?.clone();
        (cond["status"] == "False" && cond["reason"] == "Unschedulable")
            .then(|| cond["message"].as_str().unwrap_or("").to_string())
    })
    .await
    .unwrap_or_else(|| panic!("{name} not marked unschedulable"))
}

async fn events_for(c: &Cluster, ns: &str, pod: &str) -> Vec<Value> {
    let list = c.admin.get(&format!("/api/v1/namespaces/{ns}/events")).await.expect("events");
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == pod)
        .collect()
}

fn asking(name: &str, cpu: &str) -> Value {
    pod(
        name,
        json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]}),
    )
}

#[tokio::test]
async fn scheduler_binds_to_a_registered_node_and_waits_for_a_big_enough_one() {
    let c = cluster().await;
    wait_default_sa(&c, "default").await;
    start_node(&c, "node-a", 2, 4).await;

    c.admin.post("/api/v1/namespaces/default/pods", &asking("small", "100m")).await.expect("pod");
    assert_eq!(wait_bound(&c, "default", "small").await.as_deref(), Some("node-a"));
    let p = c.admin.get("/api/v1/namespaces/default/pods/small").await.expect("pod");
    let cond = p["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .expect("cond");
    assert_eq!(cond["status"], "True");
    let scheduled = within(Duration::from_secs(2), || async {
        events_for(&c, "default", "small").await.into_iter().find(|e| e["reason"] == "Scheduled")
    })
    .await
    .expect("Scheduled event");
    assert_eq!(scheduled["message"], "Successfully assigned default/small to node-a");
    // Upstream's scheduler records through events.k8s.io/v1: the reporting controller and
    // instance are set, the deprecated `source` is not.
    assert_eq!(
        (scheduled["type"].as_str(), scheduled["reportingComponent"].as_str(), scheduled["action"].as_str()),
        (Some("Normal"), Some("default-scheduler"), Some("Binding"))
    );
    assert!(scheduled["reportingInstance"].as_str().is_some_and(|i| i.starts_with("default-scheduler-")));
    assert!(scheduled["source"].get("component").is_none());

    // Bigger than the node: pending, with upstream's diagnosis and a Warning event.
    c.admin.post("/api/v1/namespaces/default/pods", &asking("huge", "8")).await.expect("pod");
    let msg = wait_unschedulable(&c, "default", "huge").await;
    assert_eq!(msg, "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.");
    let failed = within(Duration::from_secs(2), || async {
        events_for(&c, "default", "huge").await.into_iter().find(|e| e["reason"] == "FailedScheduling")
    })
    .await
    .expect("FailedScheduling event");
    assert_eq!(failed["type"], "Warning");
    assert_eq!(failed["message"], msg.as_str());
    assert_eq!(failed["reportingComponent"], "default-scheduler");
    assert_eq!(failed["action"], "Scheduling");
    let p = c.admin.get("/api/v1/namespaces/default/pods/huge").await.expect("pod");
    assert!(p["spec"].get("nodeName").is_none());

    // A bigger node appears: the pod goes there.
    start_node(&c, "node-big", 16, 32).await;
    assert_eq!(wait_bound(&c, "default", "huge").await.as_deref(), Some("node-big"));
}

#[tokio::test]
async fn taints_node_selectors_and_host_ports_are_honoured() {
    let c = cluster().await;
    wait_default_sa(&c, "default").await;
    start_node(&c, "node-a", 4, 8).await;
    // A second node as a plain API object, tainted.
    let tainted = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "tainted", "labels": {"kubernetes.io/hostname": "tainted", "disk": "ssd"}},
        "spec": {"taints": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]},
    });
    c.admin.post("/api/v1/nodes", &tainted).await.expect("node");
    let mut st = c.admin.get("/api/v1/nodes/tainted").await.expect("node");
    st["status"] = json!({"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}, "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}});
    c.admin.put("/api/v1/nodes/tainted/status", &st).await.expect("status");

    let mut to_ssd = asking("to-ssd", "100m");
    to_ssd["spec"]["nodeSelector"] = json!({"disk": "ssd"});
    c.admin.post("/api/v1/namespaces/default/pods", &to_ssd).await.expect("pod");
    assert_eq!(
        wait_unschedulable(&c, "default", "to-ssd").await,
        "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: x}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    to_ssd["metadata"]["name"] = json!("to-ssd-tolerant");
    to_ssd["spec"]["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]);
    c.admin.post("/api/v1/namespaces/default/pods", &to_ssd).await.expect("pod");
    assert_eq!(wait_bound(&c, "default", "to-ssd-tolerant").await.as_deref(), Some("tainted"));

    // Untolerating pods all go to node-a.
    c.admin.post("/api/v1/namespaces/default/pods", &asking("anywhere", "100m")).await.expect("pod");
    assert_eq!(wait_bound(&c, "default", "anywhere").await.as_deref(), Some("node-a"));

    let web = |name: &str| {
        let mut p = asking(name, "100m");
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        p["spec"]["nodeSelector"] = json!({"kubernetes.io/hostname": "node-a"});
        p
    };
    c.admin.post("/api/v1/namespaces/default/pods", &web("web-1")).await.expect("pod");
    assert_eq!(wait_bound(&c, "default", "web-1").await.as_deref(), Some("node-a"));
    c.admin.post("/api/v1/namespaces/default/pods", &web("web-2")).await.expect("pod");
    assert_eq!(
        wait_unschedulable(&c, "default", "web-2").await,
        "0/2 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 1 node(s) had untolerated taint {dedicated: x}. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
    );
    // The port is freed: the waiting pod follows (pod deletion triggers a retry). web-1 is
    // on a node, so its delete waits for a kubelet; force it as the kubelet would finish it.
    c.admin.delete("/api/v1/namespaces/default/pods/web-1?gracePeriodSeconds=0").await.expect("delete");
    assert_eq!(wait_bound(&c, "default", "web-2").await.as_deref(), Some("node-a"));
}

#[tokio::test]
async fn the_node_registers_once_reports_ready_and_renews_its_lease() {
    let c = cluster().await;
    let info = start_node(&c, "node-a", 2, 4).await;
    let node = within(Duration::from_secs(2), || async {
        c.admin.get("/api/v1/nodes/node-a").await.ok().filter(|n| {
            n["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
    })
    .await
    .expect("node Ready");
    assert_eq!(node["metadata"]["labels"]["node-role.kubernetes.io/master"], "true");
    assert_eq!(node["spec"]["podCIDR"], "10.42.0.0/24");
    assert_eq!(node["status"]["capacity"]["cpu"], "2");
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.33.0+k3rs1");
    let ready = node["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == "Ready")
        .cloned()
        .expect("Ready");
    assert_eq!(
        (ready["reason"].as_str(), ready["message"].as_str()),
        (Some("KubeletReady"), Some("kubelet is posting ready status"))
    );
    let uid = node["metadata"]["uid"].clone();

    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a";
    let lease = within(Duration::from_secs(2), || async { c.admin.get(lease_path).await.ok() }).await.expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "node-a");
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["uid"], uid);
    assert_eq!(lease["metadata"]["ownerReferences"][0]["kind"], "Node");
    let first = lease["spec"]["renewTime"].clone();
    let renewed = within(Duration::from_secs(2), || async {
        c.admin.get(lease_path).await.ok().filter(|l| l["spec"]["renewTime"] != first)
    })
    .await;
    assert!(renewed.is_some(), "lease not renewed");

    // A restart registers again: the same Node object, updated, not replaced.
    let client = Client::new(c.api.clone(), node::node_identity("node-a"));
    node::register(&client, &info).await.expect("register again");
    let again = c.admin.get("/api/v1/nodes/node-a").await.expect("node");
    assert_eq!(again["metadata"]["uid"], uid);

    // `kubectl get nodes` (a server-side Table): NAME STATUS ROLES AGE VERSION.
    let req = axum::http::Request::builder()
        .uri("/api/v1/nodes")
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .extension(Identity::new("system:admin", &["system:masters", "system:authenticated"]))
        .body(axum::body::Body::empty())
        .expect("request");
    let resp = tower::ServiceExt::oneshot(c.api.router(), req).await.expect("response");
    let table: Value =
        serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body")).expect("json");
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        (cells[0].as_str(), cells[1].as_str(), cells[2].as_str(), cells[4].as_str()),
        (Some("node-a"), Some("Ready"), Some("control-plane,master"), Some("v1.33.0+k3rs1"))
    );
    assert_eq!(
        (cells[5].as_str(), cells[7].as_str(), cells[9].as_str()),
        (Some("127.0.0.1"), Some("Test Linux"), Some("libcontainer://0.7.0"))
    );
}
