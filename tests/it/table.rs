//! Server-side printing as the real kubectl sees it: a small plain-HTTP server on
//! 127.0.0.1 serves discovery and a few pods, deployments and services as Tables rendered
//! by `k3rs::apiserver::table`, and `kubectl get` (the default kubectl, 1.27 and 1.33) must
//! print upstream's headers and cells: pod status and restarts, `-o wide` columns, `-A`
//! namespaces from the rows' metadata, deployment readiness, service ports and external
//! IPs, a single object, and watch events.

use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::kubectl_http::{kubectl, KubectlHttp};
use k3rs::apiserver::discovery::{respond, version_info, DiscoveryPath};
use k3rs::apiserver::table::{self, IncludeObject, TableOptions};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// A resource request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: String,
    table: bool,
}

#[derive(Clone)]
struct Served {
    address: String,
    now: OffsetDateTime,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn ago(now: OffsetDateTime, seconds: i64) -> String {
    (now - Duration::seconds(seconds)).format(&Rfc3339).unwrap_or_default()
}

fn meta(now: OffsetDateTime, namespace: &str, name: &str, age_seconds: i64) -> Value {
    json!({"name": name, "namespace": namespace, "uid": format!("uid-{name}"), "resourceVersion": "100",
        "creationTimestamp": ago(now, age_seconds)})
}

fn pods(now: OffsetDateTime) -> Vec<Value> {
    let running = |name: &str| json!({"name": name, "ready": true, "restartCount": 0, "state": {"running": {}}});
    vec![
        json!({
            "metadata": meta(now, "default", "web-1", 310),
            "spec": {"nodeName": "k3rs-node", "containers": [{"name": "nginx", "image": "nginx:1.27"}]},
            "status": {"phase": "Running", "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}],
                "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [running("nginx")]},
        }),
        json!({
            "metadata": meta(now, "default", "crashy", 51 * 3600),
            "spec": {"nodeName": "k3rs-node", "containers": [{"name": "app", "image": "busybox"}],
                "readinessGates": [{"conditionType": "example.com/ready"}]},
            "status": {"phase": "Running", "podIP": "10.42.0.6", "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(now, 180)}},
            }]},
        }),
        json!({
            "metadata": meta(now, "default", "starting", 45),
            "spec": {"initContainers": [{"name": "migrate"}, {"name": "seed"}], "containers": [{"name": "app"}, {"name": "side"}]},
            "status": {"phase": "Pending", "initContainerStatuses": [
                {"name": "migrate", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "seed", "state": {"running": {}}},
            ]},
        }),
        json!({
            "metadata": {"deletionTimestamp": ago(now, 5), "deletionGracePeriodSeconds": 30,
                "name": "leaving", "namespace": "default", "resourceVersion": "100", "creationTimestamp": ago(now, 3 * 3600)},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "containerStatuses": [running("c")]},
        }),
        json!({
            "metadata": meta(now, "kube-system", "coredns-x", 9 * 86400),
            "spec": {"nodeName": "k3rs-node", "containers": [{"name": "coredns"}]},
            "status": {"phase": "Running", "podIP": "10.42.0.2", "containerStatuses": [running("coredns")]},
        }),
    ]
}

fn deployments(now: OffsetDateTime) -> Vec<Value> {
    vec![
        json!({
            "metadata": meta(now, "default", "web", 600),
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 1, "availableReplicas": 2},
        }),
        json!({
            "metadata": meta(now, "default", "idle", 40 * 86400),
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "idle"}}, "template": {"spec": {"containers": [{"name": "x", "image": "x"}]}}},
            "status": {},
        }),
    ]
}

fn services(now: OffsetDateTime) -> Vec<Value> {
    vec![
        json!({
            "metadata": meta(now, "default", "kubernetes", 86400),
            "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.1", "clusterIPs": ["10.43.0.1"],
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
        }),
        json!({
            "metadata": meta(now, "default", "web", 7200),
            "spec": {"type": "NodePort", "clusterIP": "10.43.12.7", "selector": {"app": "web"},
                "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}]},
        }),
        json!({
            "metadata": meta(now, "default", "dns", 30),
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.99.1", "selector": {"app": "dns"},
                "ports": [{"port": 53, "nodePort": 31053, "protocol": "UDP"}]},
            "status": {"loadBalancer": {}},
        }),
    ]
}

fn status(code: StatusCode, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "code": code.as_u16()});
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn json_response(body: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// The resource a request path names.
struct Target {
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    namespace: Option<String>,
    name: Option<String>,
}

fn resource(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ((group, version), rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => (("", "v1"), rest),
        ["apis", "apps", "v1", rest @ ..] => (("apps", "v1"), rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        ["namespaces", ns, plural] => (Some(ns.to_string()), *plural, None),
        ["namespaces", ns, plural, name] => (Some(ns.to_string()), *plural, Some(name.to_string())),
        [plural] => (None, *plural, None),
        _ => return None,
    };
    let kind = match (group, plural) {
        ("", "pods") => "Pod",
        ("", "services") => "Service",
        ("apps", "deployments") => "Deployment",
        _ => return None,
    };
    Some(Target { group, version, kind, namespace, name })
}

fn objects(now: OffsetDateTime, kind: &str) -> Vec<Value> {
    match kind {
        "Pod" => pods(now),
        "Service" => services(now),
        _ => deployments(now),
    }
}

async fn handle(State(served): State<Served>, uri: Uri, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    if path == "/version" {
        return json_response(&serde_json::to_value(version_info()).unwrap_or_default());
    }
    if let Some(discovery) = DiscoveryPath::parse(&path) {
        return match respond(&discovery, Some(&accept), &served.address) {
            Ok(doc) => {
                let mut response = ([(header::CONTENT_TYPE, doc.content_type)], doc.body).into_response();
                if discovery.varies_with_accept() {
                    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
                }
                response
            }
            Err(e) => status(StatusCode::NOT_FOUND, &e.to_string()),
        };
    }
    let Some(Target { group, version, kind, namespace, name }) = resource(&path) else {
        return status(StatusCode::NOT_FOUND, "the server could not find the requested resource");
    };
    let wanted = table::wants_table(&accept);
    if let Ok(mut seen) = served.seen.lock() {
        seen.push(Seen { path: path.clone(), query: query.clone(), table: wanted.is_some() });
    }
    let Some(table_version) = wanted else {
        return status(StatusCode::NOT_ACCEPTABLE, "this test server only answers with Tables");
    };
    let params: Vec<(String, String)> = serde_urlencoded::from_str(&query).unwrap_or_default();
    let param = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let include = match IncludeObject::parse(param("includeObject")) {
        Ok(include) => include,
        Err(e) => return status(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let now = served.now;
    let selected: Vec<Value> = objects(now, kind)
        .into_iter()
        .filter(|o| namespace.as_deref().is_none_or(|ns| o["metadata"]["namespace"] == ns))
        .filter(|o| name.as_deref().is_none_or(|n| o["metadata"]["name"] == n))
        .collect();
    if let Some(name) = name {
        return match selected.first() {
            Some(object) => {
                json_response(&table::render_object(group, version, kind, object, include, table_version, now))
            }
            None => status(StatusCode::NOT_FOUND, &format!("{kind} \"{name}\" not found")),
        };
    }
    if matches!(param("watch"), Some("1") | Some("true")) {
        // Two events, then the stream ends: columns come with the first only.
        let mut lines = String::new();
        let mut modified = selected.first().cloned().unwrap_or_default();
        modified["metadata"]["resourceVersion"] = json!("101");
        modified["status"]["containerStatuses"][0]["restartCount"] = json!(1);
        modified["status"]["containerStatuses"][0]["lastState"] =
            json!({"terminated": {"exitCode": 137, "finishedAt": ago(now, 20)}});
        for (n, (event, object)) in
            [("ADDED", selected.get(2).cloned().unwrap_or_default()), ("MODIFIED", modified)].into_iter().enumerate()
        {
            let options = TableOptions { version: table_version, include, headers: n == 0 };
            let t = table::render_watch_row(group, version, kind, &object, options, now);
            lines.push_str(&json!({"type": event, "object": t}).to_string());
            lines.push('\n');
        }
        return ([(header::CONTENT_TYPE, "application/json")], Body::from(lines)).into_response();
    }
    let list_meta = json!({"resourceVersion": "100"});
    json_response(&table::render_with(
        group,
        version,
        kind,
        &selected,
        &list_meta,
        TableOptions { version: table_version, include, headers: true },
        now,
    ))
}

struct Server {
    http: KubectlHttp,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start() -> Server {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).expect("zero nanoseconds");
        let served_seen = seen.clone();
        let http = KubectlHttp::serve(false, move |address| {
            Router::new().fallback(handle).with_state(Served { address, now, seen: served_seen })
        })
        .await;
        Server { http, seen }
    }

    /// Runs kubectl against this server; returns its status, stdout and stderr.
    async fn run(&self, binary: &Path, args: &[&str]) -> (bool, String, String) {
        let out = self.http.run(binary, args).await;
        (out.success, out.stdout, out.stderr)
    }

    async fn kubectl(&self, binary: &Path, args: &[&str]) -> String {
        self.http.kubectl(binary, args).await
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Splits kubectl's table output at the header's column starts. kubectl pads columns with
/// three spaces, so a column starts after two spaces; headers and cells may hold one.
fn parse_table(output: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = output.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().unwrap_or_else(|| panic!("no table in {output:?}"));
    let bytes = header.as_bytes();
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&i| bytes[i] != b' ' && (i == 0 || (i >= 2 && bytes[i - 1] == b' ' && bytes[i - 2] == b' ')))
        .collect();
    let cell = |line: &str, n: usize| -> String {
        let from = starts[n].min(line.len());
        let to = starts.get(n + 1).copied().unwrap_or(line.len()).min(line.len());
        line[from..to].trim().to_string()
    };
    let names = (0..starts.len()).map(|n| cell(header, n)).collect();
    let rows = lines.map(|l| (0..starts.len()).map(|n| cell(l, n)).collect()).collect();
    (names, rows)
}

fn rows(expected: &[&[&str]]) -> Vec<Vec<String>> {
    expected.iter().map(|r| r.iter().map(|c| c.to_string()).collect()).collect()
}

async fn check_pods(server: &Server, binary: &Path) {
    let who = binary.display();
    let (header, got) = parse_table(&server.kubectl(binary, &["get", "pods"]).await);
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{who}");
    let want: &[&[&str]] = &[
        &["web-1", "1/1", "Running", "0", "5m10s"],
        &["crashy", "0/1", "CrashLoopBackOff", "5 (3m ago)", "2d3h"],
        &["starting", "0/2", "Init:1/2", "0", "45s"],
        &["leaving", "1/1", "Terminating", "0", "3h"],
    ];
    assert_eq!(got, rows(want), "{who}");

    let (header, got) = parse_table(&server.kubectl(binary, &["get", "pods", "-o", "wide"]).await);
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES"],
        "{who}"
    );
    let want: &[&[&str]] = &[
        &["web-1", "1/1", "Running", "0", "5m10s", "10.42.0.5", "k3rs-node", "<none>", "<none>"],
        &["crashy", "0/1", "CrashLoopBackOff", "5 (3m ago)", "2d3h", "10.42.0.6", "k3rs-node", "<none>", "0/1"],
        &["starting", "0/2", "Init:1/2", "0", "45s", "<none>", "<none>", "<none>", "<none>"],
        &["leaving", "1/1", "Terminating", "0", "3h", "<none>", "<none>", "<none>", "<none>"],
    ];
    assert_eq!(got, rows(want), "{who}");

    // The namespace column comes from each row's PartialObjectMetadata.
    let (header, got) = parse_table(&server.kubectl(binary, &["get", "pods", "-A"]).await);
    assert_eq!(header, ["NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{who}");
    assert_eq!(got.len(), 5, "{who}");
    assert_eq!(got[4], ["kube-system", "coredns-x", "1/1", "Running", "0", "9d"], "{who}");
    assert!(got[..4].iter().all(|r| r[0] == "default"), "{who}: {got:?}");

    let (header, got) = parse_table(&server.kubectl(binary, &["get", "pod", "crashy"]).await);
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{who}");
    assert_eq!(got, rows(&[&["crashy", "0/1", "CrashLoopBackOff", "5 (3m ago)", "2d3h"]]), "{who}");
}

async fn check_deployments(server: &Server, binary: &Path) {
    let who = binary.display();
    let (header, got) = parse_table(&server.kubectl(binary, &["get", "deploy"]).await);
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], "{who}");
    assert_eq!(got, rows(&[&["web", "2/3", "1", "2", "10m"], &["idle", "0/0", "0", "0", "40d"]]), "{who}");
    let (header, got) = parse_table(&server.kubectl(binary, &["get", "deployments", "-o", "wide"]).await);
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"],
        "{who}"
    );
    assert_eq!(got[0], ["web", "2/3", "1", "2", "10m", "nginx,log", "nginx:1.27,busybox", "app=web"], "{who}");
}

async fn check_services(server: &Server, binary: &Path) {
    let who = binary.display();
    let (header, got) = parse_table(&server.kubectl(binary, &["get", "svc"]).await);
    assert_eq!(header, ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"], "{who}");
    let want: &[&[&str]] = &[
        &["kubernetes", "ClusterIP", "10.43.0.1", "<none>", "443/TCP", "24h"],
        &["web", "NodePort", "10.43.12.7", "<none>", "80/TCP,443:30443/TCP", "120m"],
        &["dns", "LoadBalancer", "10.43.99.1", "<pending>", "53:31053/UDP", "30s"],
    ];
    assert_eq!(got, rows(want), "{who}");
    let (header, got) = parse_table(&server.kubectl(binary, &["get", "services", "-o", "wide"]).await);
    assert_eq!(header, ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"], "{who}");
    let selectors: Vec<&str> = got.iter().map(|r| r[6].as_str()).collect();
    assert_eq!(selectors, ["<none>", "app=web", "app=dns"], "{who}");
}

async fn check_all(binary: &Path) {
    let server = Server::start().await;
    check_pods(&server, binary).await;
    check_deployments(&server, binary).await;
    check_services(&server, binary).await;
    let seen = server.seen();
    assert!(!seen.is_empty());
    for s in &seen {
        assert!(s.table, "{} asked {}?{} without a Table", binary.display(), s.path, s.query);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_33_prints_server_tables() {
    check_all(&kubectl("kubectl.1.33")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_27_prints_server_tables() {
    check_all(&kubectl("kubectl.1.27")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_kubectl_prints_server_tables() {
    check_all(&kubectl("kubectl")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_print_as_rows() {
    let server = Server::start().await;
    let binary = kubectl("kubectl.1.33");
    // The server ends the watch after two events, and kubectl then exits.
    let (ok, stdout, stderr) = server.run(&binary, &["get", "pods", "--watch", "--request-timeout=20s"]).await;
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let (header, got) = parse_table(&stdout);
    assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "stderr: {stderr}");
    // The list, then the added and the modified pod, with no second header.
    assert_eq!(got.len(), 6, "{stdout}\nstderr: {stderr}");
    assert_eq!(got[4], ["starting", "0/2", "Init:1/2", "0", "45s"]);
    assert_eq!(got[5], ["web-1", "1/1", "Running", "1 (20s ago)", "5m10s"]);
    let watches: Vec<Seen> = server.seen().into_iter().filter(|s| s.query.contains("watch=")).collect();
    assert_eq!(watches.len(), 1, "{watches:?}");
}
