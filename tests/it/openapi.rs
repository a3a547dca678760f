//! OpenAPI as the real kubectl uses it: the documents of `k3rs::apiserver::openapi` and the
//! discovery documents are served by a small plain-HTTP server on 127.0.0.1, with a tiny
//! in-memory object store standing in for the registry, and the default kubectl (1.32),
//! 1.27 and 1.33 run `explain`, `apply` and `create` against it.
//!
//! What each kubectl downloads is checked too: 1.27 fetches the v2 document (protobuf) for
//! client-side validation, every version reads the v3 index and the group version's
//! document through its hashed URL, and none ends up with a 404 or 406 on an OpenAPI path.

use crate::common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::kubectl_http::{KubectlHttp, KubectlOutput as Output};
use k3rs::apiserver::discovery::{self, version_info, DiscoveryPath};
use k3rs::apiserver::openapi;
use serde_json::{json, Value};

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    accept: String,
    content_type: String,
    request_type: String,
    status: u16,
    body: String,
}

#[derive(Clone, Default)]
struct Served {
    address: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    objects: Arc<Mutex<HashMap<String, Value>>>,
}

fn status(code: StatusCode, reason: &str, message: String, details: Value) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code.as_u16(),
    });
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn not_found_path() -> Response {
    status(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource".into(), json!({}))
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

/// What a resource path names.
struct ResourcePath {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
}

fn resource_path(path: &str) -> Option<ResourcePath> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest.to_vec()),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest.to_vec()),
        _ => return None,
    };
    let (namespace, rest) = match rest.as_slice() {
        ["namespaces", ns, plural, rest @ ..] => (Some(ns.to_string()), [&[*plural][..], rest].concat()),
        _ => (None, rest),
    };
    match rest.as_slice() {
        [plural] => Some(ResourcePath { group, version, plural: plural.to_string(), namespace, name: None }),
        [plural, name] => {
            Some(ResourcePath { group, version, plural: plural.to_string(), namespace, name: Some(name.to_string()) })
        }
        _ => None,
    }
}

fn query_param(query: &str, key: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    pairs.into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// The registry's part, reduced to what these tests need: objects kept by path, strict
/// field validation as upstream reports it, dry runs not stored.
fn resource(served: &Served, method: &Method, path: &str, query: &str, body: &[u8]) -> Response {
    let Some(ResourcePath { group, version, plural, namespace, name }) = resource_path(path) else {
        return not_found_path();
    };
    let Some(info) = discovery::lookup(&group, &version, &plural) else { return not_found_path() };
    let collection = match &namespace {
        Some(ns) => format!(
            "{}/namespaces/{ns}/{plural}",
            if group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{group}/{version}") }
        ),
        None => path.to_string(),
    };
    let not_found = |name: &str| {
        status(
            StatusCode::NOT_FOUND,
            "NotFound",
            if group.is_empty() {
                format!("{plural} \"{name}\" not found")
            } else {
                format!("{plural}.{group} \"{name}\" not found")
            },
            json!({ "name": name, "group": group, "kind": plural }),
        )
    };
    let mut objects = served.objects.lock().expect("object store lock");
    match (method.as_str(), name) {
        ("GET", Some(name)) => match objects.get(&format!("{collection}/{name}")) {
            Some(obj) => json_response(StatusCode::OK, obj),
            None => not_found(&name),
        },
        ("POST", None) | ("PATCH", Some(_)) | ("PUT", Some(_)) => {
            if query_param(query, "fieldValidation").as_deref() == Some("Strict") && method != Method::PATCH {
                let errors = openapi::strict_errors(&group, &version, info.kind, body);
                if !errors.is_empty() {
                    let message = format!(
                        "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                        openapi::join_strict_errors(&errors),
                        kind = info.kind
                    );
                    return status(StatusCode::BAD_REQUEST, "BadRequest", message, json!({}));
                }
            }
            let dry_run = query_param(query, "dryRun").as_deref() == Some("All");
            let obj: Value = match method.as_str() {
                // A patch is recorded, not applied: the tests check what kubectl sends.
                "PATCH" => objects.get(path).cloned().unwrap_or(Value::Null),
                _ => match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string(), json!({})),
                },
            };
            let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if !dry_run && method != Method::PATCH {
                objects.insert(format!("{collection}/{name}"), obj.clone());
            }
            json_response(if method == Method::POST { StatusCode::CREATED } else { StatusCode::OK }, &obj)
        }
        _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "not served by this test".into(), json!({})),
    }
}

async fn handle(State(served): State<Served>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let request_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or_default().to_string();
    let response = if path.starts_with("/openapi/") {
        match openapi::respond(&path, uri.query(), &headers, SystemTime::now()) {
            Some(r) => r.map(axum::body::Body::from).into_response(),
            None => not_found_path(),
        }
    } else if path == "/version" {
        json_response(StatusCode::OK, &serde_json::to_value(version_info()).unwrap_or_default())
    } else if let (true, Some(d)) = (method == Method::GET, DiscoveryPath::parse(&path)) {
        match discovery::respond(&d, accept.as_deref(), &served.address) {
            Ok(doc) => {
                let mut response = ([(header::CONTENT_TYPE, doc.content_type)], doc.body).into_response();
                if d.varies_with_accept() {
                    response.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
                }
                response
            }
            Err(_) => not_found_path(),
        }
    } else {
        resource(&served, &method, &path, &query, &body)
    };
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    if let Ok(mut seen) = served.seen.lock() {
        seen.push(Seen {
            method: method.to_string(),
            path,
            query,
            accept: accept.unwrap_or_default(),
            content_type,
            request_type,
            status: response.status().as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    }
    response
}

struct Server {
    http: KubectlHttp,
    served: Served,
}

impl Server {
    async fn start() -> Server {
        let mut served = None;
        let http = KubectlHttp::serve(true, |address| {
            let state = Served { address, ..Default::default() };
            served = Some(state.clone());
            Router::new().fallback(handle).with_state(state)
        })
        .await;
        Server { http, served: served.expect("the app was built") }
    }

    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.http.dir.path().join(name);
        std::fs::write(&path, content).expect("write manifest");
        path
    }

    /// Runs a kubectl binary against this server (a cache per binary).
    async fn run(&self, binary: &Path, args: &[&str]) -> Output {
        self.http.run(binary, args).await
    }

    async fn kubectl(&self, binary: &Path, args: &[&str]) -> String {
        let out = self.run(binary, args).await;
        assert!(
            out.success,
            "{} {args:?} failed\nstdout:\n{}\nstderr:\n{}\nrequests:\n{}",
            binary.display(),
            out.stdout,
            out.stderr,
            self.requests()
        );
        // kubectl logs its fallbacks from OpenAPI to compiled-in types (at -v=5) or warns.
        assert!(
            !out.stderr.to_ascii_lowercase().contains("openapi"),
            "{} {args:?} complained: {}",
            binary.display(),
            out.stderr
        );
        out.stdout
    }

    fn seen(&self) -> Vec<Seen> {
        self.served.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn clear(&self) {
        if let Ok(mut s) = self.served.seen.lock() {
            s.clear();
        }
    }

    fn requests(&self) -> String {
        self.seen()
            .iter()
            .map(|s| format!("{} {}?{} [{}] -> {} {}", s.method, s.path, s.query, s.accept, s.status, s.content_type))
            .collect::<Vec<_>>()
            .join("\n")
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

fn kubectls() -> Vec<PathBuf> {
    ["kubectl", "kubectl.1.27", "kubectl.1.33"]
        .iter()
        .map(|name| {
            let path = kubectl_dir().join(name);
            assert!(path.is_file(), "{} is not installed", path.display());
            path
        })
        .collect()
}

/// Whitespace-insensitive containment: kubectl wraps descriptions at 80 columns.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A property's description in the served v3 document of `group_version`.
fn description(group_version: &str, definition: &str, field: &str) -> String {
    let doc = openapi::v3_document(group_version).expect("document served");
    let doc: Value = serde_json::from_slice(&doc).expect("document is JSON");
    let d = &doc["components"]["schemas"][definition];
    let d = if field.is_empty() { d } else { &d["properties"][field] };
    d["description"].as_str().expect("a description").to_string()
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  strategy:
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 25%
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
        resources:
          limits:
            cpu: 500m
            memory: 128Mi
      - name: sidecar
        image: busybox
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_uses_the_v3_documents() {
    let server = Server::start().await;
    let strategy = squash(&description("apis/apps/v1", "io.k8s.api.apps.v1.DeploymentSpec", "strategy"));
    let containers = squash(&description("api/v1", "io.k8s.api.core.v1.PodSpec", "containers"));
    let rolling = squash(&description("apis/apps/v1", "io.k8s.api.apps.v1.DeploymentStrategy", "rollingUpdate"));
    for kubectl in kubectls() {
        server.clear();
        let out = server.kubectl(&kubectl, &["explain", "deployment.spec.strategy"]).await;
        assert!(out.contains("GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n"), "{out}");
        assert!(out.contains("FIELD: strategy <DeploymentStrategy>"), "{out}");
        assert!(squash(&out).contains(&strategy), "{out}");
        assert!(out.contains("rollingUpdate\t<RollingUpdateDeployment>"), "{out}");
        assert!(squash(&out).contains(&rolling), "{out}");

        let out = server.kubectl(&kubectl, &["explain", "deployment.spec.strategy.rollingUpdate"]).await;
        assert!(out.contains("maxSurge\t<IntOrString>"), "{out}");

        // Required as upstream has it: a kind's metadata is not, a deployment's selector is.
        let out = server.kubectl(&kubectl, &["explain", "deployment"]).await;
        assert!(out.contains("\n  metadata\t<ObjectMeta>\n"), "{out}");
        let out = server.kubectl(&kubectl, &["explain", "deployment.spec"]).await;
        assert!(out.contains("\n  selector\t<LabelSelector> -required-\n"), "{out}");

        let out = server.kubectl(&kubectl, &["explain", "pods.spec.containers", "--recursive"]).await;
        let head: Vec<&str> = out.lines().take(10).collect();
        assert_eq!(head[0], "KIND:       Pod", "{out}");
        assert_eq!(head[1], "VERSION:    v1", "{out}");
        assert_eq!(head[3], "FIELD: containers <[]Container>", "{out}");
        assert!(squash(&out).contains(&containers), "{out}");
        assert!(out.contains("\n  args\t<[]string>\n"), "{out}");
        assert!(out.contains("\n  resources\t<ResourceRequirements>\n    claims\t<[]ResourceClaim>\n"), "{out}");
        assert!(out.contains("\n    limits\t<map[string]Quantity>\n"), "{out}");

        let seen = server.seen();
        assert!(seen.iter().any(|s| s.path == "/openapi/v3" && s.status == 200), "{}", server.requests());
        let apps = seen.iter().find(|s| s.path == "/openapi/v3/apis/apps/v1").expect("apps/v1 document fetched");
        assert!(apps.query.starts_with("hash="), "fetched through the hashed URL: {}", server.requests());
        assert!(
            seen.iter().all(|s| !s.path.starts_with("/openapi") || s.status == 200 || s.status == 304),
            "{}",
            server.requests()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explain_v2_reads_the_protobuf_document() {
    let server = Server::start().await;
    let strategy = squash(&description("apis/apps/v1", "io.k8s.api.apps.v1.DeploymentSpec", "strategy"));
    for kubectl in kubectls() {
        server.clear();
        let out =
            server.kubectl(&kubectl, &["explain", "deployment.spec.strategy", "--output=plaintext-openapiv2"]).await;
        assert!(out.contains("KIND:     Deployment\nVERSION:  apps/v1\n"), "{out}");
        assert!(out.contains("RESOURCE: strategy <Object>"), "{out}");
        assert!(squash(&out).contains(&strategy), "{out}");
        assert!(out.contains("rollingUpdate\t<Object>"), "{out}");
        let out = server
            .kubectl(&kubectl, &["explain", "deployment.spec.strategy.rollingUpdate", "--output=plaintext-openapiv2"])
            .await;
        assert!(out.contains("maxSurge\t<string>"), "int-or-string reads as a string in v2: {out}");
        let v2 = server.seen().into_iter().find(|s| s.path == "/openapi/v2").expect("v2 fetched");
        assert_eq!(v2.content_type, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf");
        assert!(v2.accept.contains("protobuf"), "client-go asks for protobuf: {}", v2.accept);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_and_create_with_validation() {
    let server = Server::start().await;
    let manifest = server.file("deploy.yaml", DEPLOYMENT);
    let manifest = manifest.to_str().expect("utf-8 path");
    let unknown = server.file(
        "unknown.yaml",
        &DEPLOYMENT
            .replace("  replicas: 2\n", "  replicas: 2\n  replicaz: 3\n")
            .replace("        image: busybox\n", "        image: busybox\n        imagePullPolicyx: Always\n"),
    );
    let unknown = unknown.to_str().expect("utf-8 path");
    for kubectl in kubectls() {
        let name = kubectl.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        server.clear();

        // A new object: client-side dry run prints it with the last-applied annotation.
        let out = server.kubectl(&kubectl, &["apply", "-f", manifest, "--dry-run=client", "-o", "yaml"]).await;
        let printed: Value = serde_saphyr::from_str(&out).expect("kubectl printed YAML");
        assert_eq!(printed["metadata"]["name"], "web");
        assert_eq!(printed["spec"]["template"]["spec"]["containers"][1]["name"], "sidecar");
        assert!(printed["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());
        // The field validation verifier found the fieldValidation parameter in the v3 document.
        let seen = server.seen();
        assert!(seen.iter().any(|s| s.path == "/openapi/v3/apis/apps/v1"), "{name}: {}", server.requests());
        if name == "kubectl.1.27" {
            // 1.27 loads the v2 document before validating anything.
            assert!(seen.iter().any(|s| s.path == "/openapi/v2" && s.status == 200), "{}", server.requests());
        }

        // The server validates fields (the documents say so), so a client-side dry run lets
        // unknown fields through, as against upstream...
        let out = server
            .kubectl(&kubectl, &["create", "-f", unknown, "--dry-run=client", "--validate=strict", "-o", "yaml"])
            .await;
        assert!(out.contains("replicaz: 3"), "{out}");
        // ...and a server-side one sends fieldValidation=Strict and shows the server's answer.
        server.clear();
        let out = server.run(&kubectl, &["create", "-f", unknown, "--dry-run=server", "--validate=strict"]).await;
        assert!(!out.success, "{name}: {}", out.stdout);
        assert!(
            out.stderr.contains(
                "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: \
                 unknown field \"spec.replicaz\", unknown field \"spec.template.spec.containers[1].imagePullPolicyx\""
            ),
            "{name}: {}",
            out.stderr
        );
        let post = server.seen().into_iter().find(|s| s.method == "POST").expect("create sent");
        assert!(post.query.contains("fieldValidation=Strict"), "{name}: {}", post.query);
        assert!(post.query.contains("dryRun=All"), "{name}: {}", post.query);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_computes_strategic_merge_patches_from_the_documents() {
    let server = Server::start().await;
    let changed = server.file(
        "changed.yaml",
        &DEPLOYMENT
            .replace("image: nginx:1.27", "image: nginx:1.28")
            .replace("      - name: sidecar\n        image: busybox\n", ""),
    );
    let changed = changed.to_str().expect("utf-8 path");
    let original = server.file("deploy.yaml", DEPLOYMENT);
    let original = original.to_str().expect("utf-8 path");
    for kubectl in kubectls() {
        let name = kubectl.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if let Ok(mut objects) = server.served.objects.lock() {
            objects.clear();
        }
        let out = server.kubectl(&kubectl, &["apply", "-f", original]).await;
        assert!(out.contains("deployment.apps/web created"), "{name}: {out}");
        server.clear();
        let out = server.kubectl(&kubectl, &["apply", "-f", changed, "-v=5"]).await;
        assert!(out.contains("deployment.apps/web configured"), "{name}: {out}");
        let patch = server.seen().into_iter().find(|s| s.method == "PATCH").expect("a patch was sent");
        assert_eq!(patch.request_type, "application/strategic-merge-patch+json", "{name}");
        let patch: Value = serde_json::from_str(&patch.body).expect("patch is JSON");
        // Containers merge by name: the removed one is deleted by key and the order of the
        // remaining ones is pinned, instead of the list being replaced whole.
        let spec = &patch["spec"]["template"]["spec"];
        assert_eq!(spec["$setElementOrder/containers"], json!([{"name": "web"}]), "{name}: {patch}");
        let containers = spec["containers"].as_array().cloned().unwrap_or_default();
        assert!(containers.contains(&json!({"$patch": "delete", "name": "sidecar"})), "{name}: {patch}");
        assert!(containers.contains(&json!({"image": "nginx:1.28", "name": "web"})), "{name}: {patch}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_explains_every_served_resource() {
    let server = Server::start().await;
    let kubectl = kubectl_dir().join("kubectl");
    for r in discovery::resources() {
        let api_version = r.api_version();
        let out = server.kubectl(&kubectl, &["explain", r.plural, "--api-version", &api_version]).await;
        let group = if r.group.is_empty() { String::new() } else { format!("GROUP:      {}\n", r.group) };
        let header = format!("{group}KIND:       {}\nVERSION:    {}\n", r.kind, r.version);
        assert!(out.starts_with(&header), "{api_version} {}: {out}", r.plural);
        assert!(out.contains("\nFIELDS:\n"), "{api_version} {}: {out}", r.plural);
    }
}

/// Objects of many kinds, valid as written, with int-or-strings as numbers and strings,
/// quantities as numbers and strings, maps of strings, CRD schemas and raw extensions.
const VALID_LIST: &str = r#"apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: web
    labels: {a: b}
    annotations: {x: y}
  spec:
    replicas: 3
    strategy:
      rollingUpdate: {maxSurge: 1, maxUnavailable: "25%"}
    selector:
      matchLabels: {app: web}
    template:
      metadata:
        labels: {app: web}
      spec:
        containers:
        - name: web
          image: nginx
          ports:
          - containerPort: 80
          resources:
            limits: {cpu: 1, memory: 128Mi}
            requests: {cpu: 0.5}
          env:
          - name: A
            valueFrom: {fieldRef: {fieldPath: metadata.name}}
        volumes:
        - name: v
          configMap: {name: cm}
- apiVersion: v1
  kind: Service
  metadata: {name: s}
  spec:
    ports:
    - port: 80
      targetPort: http
    - port: 81
      targetPort: 8081
- apiVersion: apiextensions.k8s.io/v1
  kind: CustomResourceDefinition
  metadata: {name: foos.example.com}
  spec:
    group: example.com
    names: {kind: Foo, plural: foos}
    scope: Namespaced
    versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
          properties:
            spec:
              type: object
              items: {type: string}
              additionalProperties: {type: string}
              default: {a: 1}
              anyOf: [{required: [a]}]
- apiVersion: batch/v1
  kind: CronJob
  metadata: {name: c}
  spec:
    schedule: "* * * * *"
    jobTemplate:
      spec:
        template:
          spec:
            restartPolicy: Never
            containers: [{name: c, image: busybox}]
- apiVersion: apps/v1
  kind: ControllerRevision
  metadata: {name: r}
  revision: 1
  data: {any: {thing: [1, 2]}}
"#;

/// Unknown fields at two depths and a value of the wrong type.
const INVALID_LIST: &str = r#"apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: web
  spec:
    replicaz: 3
    selector:
      matchLabels: {app: web}
    template:
      metadata:
        labels: {app: web}
      spec:
        containers:
        - name: web
          image: nginx
          imagePullPolicyx: Always
          ports:
          - containerPort: "80"
- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: cm
  data:
    a: b
"#;

/// A `kind: List` is validated on the client (field validation cannot be delegated for
/// it), against the v2 document: the messages are kubectl's own, naming our definitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_validates_lists_client_side_with_the_v2_document() {
    let server = Server::start().await;
    let valid = server.file("valid.yaml", VALID_LIST);
    let valid = valid.to_str().expect("utf-8 path");
    let invalid = server.file("invalid.yaml", INVALID_LIST);
    let invalid = invalid.to_str().expect("utf-8 path");
    for kubectl in kubectls() {
        let name = kubectl.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let out = server.run(&kubectl, &["create", "-f", invalid, "--dry-run=client", "-o", "name"]).await;
        assert!(!out.success, "{name}: {}", out.stdout);
        for expected in [
            r#"ValidationError(Deployment.spec): unknown field "replicaz" in io.k8s.api.apps.v1.DeploymentSpec"#,
            r#"ValidationError(Deployment.spec.template.spec.containers[0]): unknown field "imagePullPolicyx" in io.k8s.api.core.v1.Container"#,
            r#"invalid type for io.k8s.api.core.v1.ContainerPort.containerPort: got "string", expected "integer""#,
        ] {
            assert!(out.stderr.contains(expected), "{name}: {}", out.stderr);
        }
        assert!(server.seen().iter().any(|s| s.path == "/openapi/v2" && (s.status == 200 || s.status == 304)));

        // The valid list passes kubectl's validation and then the server's strict one.
        server.clear();
        let out = server.kubectl(&kubectl, &["create", "-f", valid, "--dry-run=server", "-o", "name"]).await;
        assert_eq!(out.lines().count(), 5, "{name}: {out}");
        let posts: Vec<Seen> = server.seen().into_iter().filter(|s| s.method == "POST").collect();
        assert_eq!(posts.len(), 5, "{name}: {}", server.requests());
        assert!(posts.iter().all(|p| p.query.contains("fieldValidation=Strict") && p.status == 201));
    }
}
