//! Discovery as the real kubectl sees it: the discovery documents are served by a small
//! plain-HTTP server on 127.0.0.1, and `kubectl api-resources` / `kubectl api-versions`
//! (the default kubectl, 1.27 and 1.33) must print what they print against an upstream 1.33
//! apiserver for the groups k3rs serves. The expected table below is written out from
//! upstream's facts, independently of the table in the library.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::common;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::kubectl_http::KubectlHttp;
use k3rs::apiserver::discovery::{respond, version_info, DiscoveryError, DiscoveryPath};

/// One row of `kubectl api-resources -o wide`, as upstream 1.33 prints it (kubectl 1.33
/// joins verbs and categories with commas).
struct Row {
    name: &'static str,
    short_names: &'static str,
    api_version: &'static str,
    namespaced: bool,
    kind: &'static str,
    verbs: &'static str,
    categories: &'static str,
}

const FULL: &str = "create,delete,deletecollection,get,list,patch,update,watch";
const CREATE: &str = "create";

const fn row(
    name: &'static str,
    short_names: &'static str,
    api_version: &'static str,
    namespaced: bool,
    kind: &'static str,
) -> Row {
    Row { name, short_names, api_version, namespaced, kind, verbs: FULL, categories: "" }
}

impl Row {
    const fn verbs(mut self, verbs: &'static str) -> Row {
        self.verbs = verbs;
        self
    }
    const fn categories(mut self, categories: &'static str) -> Row {
        self.categories = categories;
        self
    }
}

/// kubectl sorts by API group (core first, then alphabetically) and keeps the server's
/// order inside a group; only each group's preferred version is listed.
const EXPECTED: &[Row] = &[
    row("bindings", "", "v1", true, "Binding").verbs(CREATE),
    row("configmaps", "cm", "v1", true, "ConfigMap"),
    row("endpoints", "ep", "v1", true, "Endpoints"),
    row("events", "ev", "v1", true, "Event"),
    row("limitranges", "limits", "v1", true, "LimitRange"),
    row("namespaces", "ns", "v1", false, "Namespace").verbs("create,delete,get,list,patch,update,watch"),
    row("nodes", "no", "v1", false, "Node"),
    row("persistentvolumeclaims", "pvc", "v1", true, "PersistentVolumeClaim"),
    row("persistentvolumes", "pv", "v1", false, "PersistentVolume"),
    row("pods", "po", "v1", true, "Pod").categories("all"),
    row("podtemplates", "", "v1", true, "PodTemplate"),
    row("replicationcontrollers", "rc", "v1", true, "ReplicationController").categories("all"),
    row("resourcequotas", "quota", "v1", true, "ResourceQuota"),
    row("secrets", "", "v1", true, "Secret"),
    row("serviceaccounts", "sa", "v1", true, "ServiceAccount"),
    row("services", "svc", "v1", true, "Service").categories("all"),
    row("customresourcedefinitions", "crd,crds", "apiextensions.k8s.io/v1", false, "CustomResourceDefinition")
        .categories("api-extensions"),
    row("controllerrevisions", "", "apps/v1", true, "ControllerRevision"),
    row("daemonsets", "ds", "apps/v1", true, "DaemonSet").categories("all"),
    row("deployments", "deploy", "apps/v1", true, "Deployment").categories("all"),
    row("replicasets", "rs", "apps/v1", true, "ReplicaSet").categories("all"),
    row("statefulsets", "sts", "apps/v1", true, "StatefulSet").categories("all"),
    row("selfsubjectreviews", "", "authentication.k8s.io/v1", false, "SelfSubjectReview").verbs(CREATE),
    row("tokenreviews", "", "authentication.k8s.io/v1", false, "TokenReview").verbs(CREATE),
    row("localsubjectaccessreviews", "", "authorization.k8s.io/v1", true, "LocalSubjectAccessReview").verbs(CREATE),
    row("selfsubjectaccessreviews", "", "authorization.k8s.io/v1", false, "SelfSubjectAccessReview").verbs(CREATE),
    row("selfsubjectrulesreviews", "", "authorization.k8s.io/v1", false, "SelfSubjectRulesReview").verbs(CREATE),
    row("subjectaccessreviews", "", "authorization.k8s.io/v1", false, "SubjectAccessReview").verbs(CREATE),
    row("horizontalpodautoscalers", "hpa", "autoscaling/v2", true, "HorizontalPodAutoscaler").categories("all"),
    row("cronjobs", "cj", "batch/v1", true, "CronJob").categories("all"),
    row("jobs", "", "batch/v1", true, "Job").categories("all"),
    row("certificatesigningrequests", "csr", "certificates.k8s.io/v1", false, "CertificateSigningRequest"),
    row("leases", "", "coordination.k8s.io/v1", true, "Lease"),
    row("endpointslices", "", "discovery.k8s.io/v1", true, "EndpointSlice"),
    row("events", "ev", "events.k8s.io/v1", true, "Event"),
    row("ingressclasses", "", "networking.k8s.io/v1", false, "IngressClass"),
    row("ingresses", "ing", "networking.k8s.io/v1", true, "Ingress"),
    row("ipaddresses", "ip", "networking.k8s.io/v1", false, "IPAddress"),
    row("networkpolicies", "netpol", "networking.k8s.io/v1", true, "NetworkPolicy"),
    row("servicecidrs", "", "networking.k8s.io/v1", false, "ServiceCIDR"),
    row("runtimeclasses", "", "node.k8s.io/v1", false, "RuntimeClass"),
    row("poddisruptionbudgets", "pdb", "policy/v1", true, "PodDisruptionBudget"),
    row("clusterrolebindings", "", "rbac.authorization.k8s.io/v1", false, "ClusterRoleBinding"),
    row("clusterroles", "", "rbac.authorization.k8s.io/v1", false, "ClusterRole"),
    row("rolebindings", "", "rbac.authorization.k8s.io/v1", true, "RoleBinding"),
    row("roles", "", "rbac.authorization.k8s.io/v1", true, "Role"),
    row("priorityclasses", "pc", "scheduling.k8s.io/v1", false, "PriorityClass"),
    row("csidrivers", "", "storage.k8s.io/v1", false, "CSIDriver"),
    row("csinodes", "", "storage.k8s.io/v1", false, "CSINode"),
    row("csistoragecapacities", "", "storage.k8s.io/v1", true, "CSIStorageCapacity"),
    row("storageclasses", "sc", "storage.k8s.io/v1", false, "StorageClass"),
    row("volumeattachments", "", "storage.k8s.io/v1", false, "VolumeAttachment"),
];

const EXPECTED_VERSIONS: &[&str] = &[
    "apiextensions.k8s.io/v1",
    "apps/v1",
    "authentication.k8s.io/v1",
    "authorization.k8s.io/v1",
    "autoscaling/v1",
    "autoscaling/v2",
    "batch/v1",
    "certificates.k8s.io/v1",
    "coordination.k8s.io/v1",
    "discovery.k8s.io/v1",
    "events.k8s.io/v1",
    "networking.k8s.io/v1",
    "node.k8s.io/v1",
    "policy/v1",
    "rbac.authorization.k8s.io/v1",
    "scheduling.k8s.io/v1",
    "storage.k8s.io/v1",
    "v1",
];

/// A request as the server saw it, and the Content-Type it answered with.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    accept: String,
    content_type: String,
}

#[derive(Clone)]
struct Served {
    /// When false the server behaves like one without aggregated discovery: it answers
    /// every request as if only `application/json` had been accepted.
    aggregated: bool,
    address: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn status(code: StatusCode, message: String) -> Response {
    let body = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "code": code.as_u16(),
    });
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

async fn handle(State(served): State<Served>, uri: Uri, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let path = uri.path().to_string();
    let response = if path == "/version" {
        let body = serde_json::to_vec(&version_info()).unwrap_or_default();
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else if let Some(discovery) = DiscoveryPath::parse(&path) {
        let offered = if served.aggregated { accept.as_deref() } else { Some("application/json") };
        match respond(&discovery, offered, &served.address) {
            Ok(doc) => {
                let mut response = ([(header::CONTENT_TYPE, doc.content_type)], doc.body).into_response();
                if discovery.varies_with_accept() {
                    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
                }
                response
            }
            Err(e @ DiscoveryError::NotFound { .. }) => status(StatusCode::NOT_FOUND, e.to_string()),
            Err(e @ DiscoveryError::NotAcceptable { .. }) => status(StatusCode::NOT_ACCEPTABLE, e.to_string()),
            Err(e) => status(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    } else {
        status(StatusCode::NOT_FOUND, "the server could not find the requested resource".to_string())
    };
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if let Ok(mut seen) = served.seen.lock() {
        seen.push(Seen { path, accept: accept.unwrap_or_default(), content_type });
    }
    response
}

struct Server {
    http: KubectlHttp,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start(aggregated: bool) -> Server {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let served_seen = seen.clone();
        let http = KubectlHttp::serve(false, move |address| {
            Router::new().fallback(handle).with_state(Served { aggregated, address, seen: served_seen })
        })
        .await;
        Server { http, seen }
    }

    /// Runs a kubectl binary against this server with a private kubeconfig and cache.
    async fn kubectl(&self, binary: &Path, args: &[&str]) -> String {
        self.http.kubectl(binary, args).await
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// The folder holding `kubectl` and its versioned siblings (`kubectl.1.27`, `kubectl.1.33`).
fn kubectl_dir() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).map(|d| d.join("kubectl")).find(|p| p.is_file());
    let kubectl = found.expect("kubectl must be on PATH for this test");
    let real = std::fs::canonicalize(&kubectl).expect("resolve kubectl");
    real.parent().expect("kubectl has a parent folder").to_path_buf()
}

fn kubectl(name: &str) -> PathBuf {
    let path = kubectl_dir().join(name);
    assert!(path.is_file(), "{} is not installed", path.display());
    path
}

/// Splits a kubectl table at the header's column starts (cells may be empty).
fn parse_table(output: &str) -> (Vec<String>, Vec<Vec<String>>) {
    let mut lines = output.lines().filter(|l| !l.trim().is_empty());
    let header = lines.next().expect("table has a header");
    let mut starts = Vec::new();
    let mut previous = ' ';
    for (i, c) in header.char_indices() {
        if c != ' ' && previous == ' ' {
            starts.push(i);
        }
        previous = c;
    }
    let cell = |line: &str, n: usize| -> String {
        let from = starts[n].min(line.len());
        let to = starts.get(n + 1).copied().unwrap_or(line.len()).min(line.len());
        line[from..to].trim().to_string()
    };
    let names = (0..starts.len()).map(|n| cell(header, n)).collect();
    let rows = lines.map(|l| (0..starts.len()).map(|n| cell(l, n)).collect()).collect();
    (names, rows)
}

fn expected_rows(wide: bool) -> Vec<Vec<String>> {
    EXPECTED
        .iter()
        .map(|r| {
            let mut cells = vec![
                r.name.to_string(),
                r.short_names.to_string(),
                r.api_version.to_string(),
                r.namespaced.to_string(),
                r.kind.to_string(),
            ];
            if wide {
                cells.push(r.verbs.to_string());
                cells.push(r.categories.to_string());
            }
            cells
        })
        .collect()
}

fn assert_same_rows(binary: &Path, got: &[Vec<String>], expected: &[Vec<String>]) {
    for (n, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g, e, "{}: row {n} differs", binary.display());
    }
    assert_eq!(got.len(), expected.len(), "{}: row count; got {got:#?}", binary.display());
}

async fn check_api_resources(server: &Server, binary: &Path) {
    let (header, rows) = parse_table(&server.kubectl(binary, &["api-resources"]).await);
    assert_eq!(header, ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"], "{}", binary.display());
    assert_same_rows(binary, &rows, &expected_rows(false));
}

async fn check_api_versions(server: &Server, binary: &Path) {
    let out = server.kubectl(binary, &["api-versions"]).await;
    let versions: Vec<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(versions, EXPECTED_VERSIONS, "{}", binary.display());
}

fn assert_answered(seen: &[Seen], path: &str, content_type: &str) {
    let answers: Vec<&Seen> = seen.iter().filter(|s| s.path == path).collect();
    assert!(!answers.is_empty(), "{path} was never requested: {seen:#?}");
    for s in answers {
        assert_eq!(s.content_type, content_type, "{path} asked with Accept {:?}", s.accept);
    }
}

const V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const V2BETA1: &str = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_33_reads_aggregated_v2() {
    let server = Server::start(true).await;
    let binary = kubectl("kubectl.1.33");
    check_api_resources(&server, &binary).await;
    check_api_versions(&server, &binary).await;
    let seen = server.seen();
    assert_answered(&seen, "/api", V2);
    assert_answered(&seen, "/apis", V2);
    assert!(!seen.iter().any(|s| s.path.starts_with("/apis/")), "aggregated discovery needs no per-group fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_27_reads_aggregated_v2beta1() {
    let server = Server::start(true).await;
    let binary = kubectl("kubectl.1.27");
    check_api_resources(&server, &binary).await;
    check_api_versions(&server, &binary).await;
    let seen = server.seen();
    assert_answered(&seen, "/api", V2BETA1);
    assert_answered(&seen, "/apis", V2BETA1);
    assert!(!seen.iter().any(|s| s.path.starts_with("/apis/")), "aggregated discovery needs no per-group fetch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_kubectl_lists_the_same() {
    let server = Server::start(true).await;
    let binary = kubectl("kubectl");
    check_api_resources(&server, &binary).await;
    check_api_versions(&server, &binary).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unaggregated_documents_give_the_same_listing() {
    let server = Server::start(false).await;
    for name in ["kubectl.1.33", "kubectl.1.27"] {
        let binary = kubectl(name);
        check_api_resources(&server, &binary).await;
        check_api_versions(&server, &binary).await;
    }
    let seen = server.seen();
    assert_answered(&seen, "/api", "application/json");
    assert_answered(&seen, "/apis", "application/json");
    // Without aggregation kubectl walks every group version, autoscaling/v1 included.
    for path in ["/api/v1", "/apis/apps/v1", "/apis/autoscaling/v1", "/apis/autoscaling/v2", "/apis/storage.k8s.io/v1"]
    {
        assert_answered(&seen, path, "application/json");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wide_listing_shows_verbs_and_categories() {
    for aggregated in [true, false] {
        let server = Server::start(aggregated).await;
        let binary = kubectl("kubectl.1.33");
        let (header, rows) = parse_table(&server.kubectl(&binary, &["api-resources", "-o", "wide"]).await);
        assert_eq!(header, ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND", "VERBS", "CATEGORIES"]);
        assert_same_rows(&binary, &rows, &expected_rows(true));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_version_reads_the_server_version() {
    let server = Server::start(true).await;
    let out = server.kubectl(&kubectl("kubectl.1.33"), &["version", "-o", "json"]).await;
    let doc: serde_json::Value = serde_json::from_str(&out).expect("kubectl version -o json prints JSON");
    assert_eq!(doc["serverVersion"]["gitVersion"], "v1.33.0+k3rs1");
    assert_eq!(doc["serverVersion"]["major"], "1");
    assert_eq!(doc["serverVersion"]["minor"], "33");
    assert_eq!(doc["serverVersion"]["platform"], k3rs::apiserver::discovery::platform());
}
