//! The control-plane pieces pods need, in a real server started in process on a temp dir
//! (PKI, HTTPS listener, controllers and scheduler as `k3rs server` starts them): the
//! `default` ServiceAccount and `kube-root-ca.crt` in new namespaces, ServiceAccount
//! admission, the binding subresource, the scheduler, and the node's registration and lease.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).expect("store");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let started = k3rs::server::apiserver::start(&config, Arc::new(store), stopped).await.expect("server starts");
    let admin = Client::new(started.api.clone(), Identity::new("system:admin", &["system:masters", "system:authenticated"]));
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
    c.admin.post("/api/v1/namespaces", &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).await.expect("namespace");
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
        within(Duration::from_secs(2), || async { c.admin.get(&path).await.ok() }).await.unwrap_or_else(|| panic!("root CA in {ns}"));
        wait_default_sa(&c, ns).await;
    }

    // Deleted: recreated (a new uid).
    let old_uid = c.admin.get(sa_path).await.expect("sa")["metadata"]["uid"].clone();
    c.admin.delete(sa_path).await.expect("delete sa");
    let back = within(Duration::from_secs(1), || async { c.admin.get(sa_path).await.ok().filter(|s| s["metadata"]["uid"] != old_uid) }).await;
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
    let gone = within(Duration::from_secs(5), || async { c.admin.get("/api/v1/namespaces/team-a").await.err().filter(|e| e.code == 404) }).await;
    assert!(gone.is_some(), "namespace not deleted");
}

#[tokio::test]
async fn pods_default_to_the_default_account_and_a_missing_account_is_refused_as_upstream() {
    let c = cluster().await;
    wait_default_sa(&c, "default").await;
    let created = c.admin.post("/api/v1/namespaces/default/pods", &pod("p1", json!({"schedulerName": "none"}))).await.expect("pod");
    assert_eq!(created["spec"]["serviceAccountName"], "default");
    assert_eq!(created["spec"]["serviceAccount"], "default");

    let err = c
        .admin
        .post("/api/v1/namespaces/default/pods", &pod("p2", json!({"serviceAccountName": "robot"})))
        .await
        .expect_err("refused");
    assert_eq!((err.code, err.reason), (403, "Forbidden"));
    assert_eq!(err.message, r#"pods "p2" is forbidden: error looking up service account default/robot: serviceaccount "robot" not found"#);
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
    let body: Value = serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body")).expect("json");
    assert_eq!((body["details"]["name"].as_str(), body["details"]["kind"].as_str()), (Some("p2"), Some("pods")));

    // Once the account exists the same pod is admitted.
    c.admin
        .post("/api/v1/namespaces/default/serviceaccounts", &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "robot"}}))
        .await
        .expect("sa");
    let ok = c.admin.post("/api/v1/namespaces/default/pods", &pod("p2", json!({"serviceAccountName": "robot", "schedulerName": "none"}))).await.expect("pod");
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
        c.admin.post("/api/v1/namespaces/default/pods", &pod(name, json!({"schedulerName": "manual"}))).await.expect("pod");
    }
    let binding = |pod: &str, node: &str| json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod}, "target": {"apiVersion": "v1", "kind": "Node", "name": node}});

    let st = c.admin.post("/api/v1/namespaces/default/pods/b1/binding", &binding("b1", "n1")).await.expect("bound");
    assert_eq!(st, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}));
    let p = c.admin.get("/api/v1/namespaces/default/pods/b1").await.expect("pod");
    assert_eq!(p["spec"]["nodeName"], "n1");
    let cond = p["status"]["conditions"].as_array().expect("conditions").iter().find(|c| c["type"] == "PodScheduled").cloned().expect("PodScheduled");
    assert_eq!(cond["status"], "True");
    assert!(cond["lastTransitionTime"].is_string());

    let err = c.admin.post("/api/v1/namespaces/default/pods/b1/binding", &binding("b1", "n2")).await.expect_err("conflict");
    assert_eq!((err.code, err.reason), (409, "Conflict"));
    assert_eq!(err.message, r#"Operation cannot be fulfilled on pods/binding "b1": pod b1 is already assigned to node "n1""#);

    let err = c.admin.post("/api/v1/namespaces/default/pods/b2/binding", &binding("b1", "n2")).await.expect_err("mismatch");
    assert_eq!((err.code, err.message.as_str()), (400, "name in URL does not match name in Binding object"));

    // dryRun: success, nothing changes.
    c.admin.post("/api/v1/namespaces/default/pods/b2/binding?dryRun=All", &binding("b2", "n1")).await.expect("dry run");
    let p = c.admin.get("/api/v1/namespaces/default/pods/b2").await.expect("pod");
    assert!(p["spec"].get("nodeName").is_none(), "{p}");

    // The deprecated collection, with annotations merged into the pod.
    let mut b = binding("b2", "n2");
    b["metadata"]["annotations"] = json!({"example.com/why": "test"});
    c.admin.post("/api/v1/namespaces/default/bindings", &b).await.expect("bound");
    let p = c.admin.get("/api/v1/namespaces/default/pods/b2").await.expect("pod");
    assert_eq!((p["spec"]["nodeName"].as_str(), p["metadata"]["annotations"]["example.com/why"].as_str()), (Some("n2"), Some("test")));

    let err = c.admin.post("/api/v1/namespaces/default/pods/nope/binding", &binding("nope", "n1")).await.expect_err("missing");
    assert_eq!((err.code, err.message.as_str()), (404, r#"pods "nope" not found"#));
    let mut bad = binding("b3", "");
    bad["target"]["kind"] = json!("Pod");
    let err = c.admin.post("/api/v1/namespaces/default/pods/b3/binding", &bad).await.expect_err("invalid");
    assert_eq!(err.code, 500);
    assert_eq!(err.message, r#"[target.kind: Unsupported value: "Pod": supported values: "Node", "<empty>", target.name: Required value]"#);
}
