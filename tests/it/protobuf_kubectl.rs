//! The protobuf bodies real kubectl sends: a small plain-HTTP server on 127.0.0.1 records
//! each request body of `kubectl create ...`, `certificate approve`, `auth can-i`,
//! `auth whoami` and `create token`, answers with the JSON `decode_request` makes of it,
//! and the test checks that JSON against what the same kubectl prints for
//! `--dry-run=client -o json` (Go's own JSON of the object it encoded) or against the
//! object written out by hand. Run with the default kubectl (1.32) and its 1.33 sibling;
//! kubectl 1.31 and older send JSON.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::common;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use common::kubectl_http::KubectlHttp;
use k3rs::apiserver::discovery::{respond, DiscoveryPath};
use k3rs::apiserver::protobuf::{decode_request, CONTENT_TYPE};
use serde_json::{json, Value};

/// A write kubectl made, with its body decoded (or parsed, if it was JSON).
#[derive(Clone, Debug)]
struct Write {
    method: Method,
    path: String,
    content_type: String,
    object: Value,
}

#[derive(Clone)]
struct Served {
    address: String,
    writes: Arc<Mutex<Vec<Write>>>,
    /// Objects GET returns, by path.
    objects: Arc<Mutex<Vec<(String, Value)>>>,
}

fn status(code: StatusCode, message: String) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "code": code.as_u16(),
    });
    (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

async fn handle(State(served): State<Served>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    if method == Method::GET {
        if let Some(discovery) = DiscoveryPath::parse(&path) {
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
            return match respond(&discovery, accept, &served.address) {
                Ok(doc) => ([(header::CONTENT_TYPE, doc.content_type)], doc.body).into_response(),
                Err(e) => status(StatusCode::NOT_FOUND, e.to_string()),
            };
        }
        let found = served.objects.lock().ok().and_then(|o| o.iter().find(|(p, _)| *p == path).map(|(_, v)| v.clone()));
        return match found {
            Some(object) => json_response(StatusCode::OK, &object),
            None => status(StatusCode::NOT_FOUND, format!("{path} not found")),
        };
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let object = if content_type == CONTENT_TYPE {
        match decode_request(&body) {
            Ok(object) => object,
            Err(e) => return status(StatusCode::UNSUPPORTED_MEDIA_TYPE, e.to_string()),
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(object) => object,
            Err(e) => return status(StatusCode::BAD_REQUEST, e.to_string()),
        }
    };
    if let Ok(mut writes) = served.writes.lock() {
        writes.push(Write { method: method.clone(), path, content_type, object: object.clone() });
    }
    let code = if method == Method::POST { StatusCode::CREATED } else { StatusCode::OK };
    json_response(code, &with_server_status(object))
}

/// What an apiserver fills into the reviews and token requests kubectl sends.
fn with_server_status(mut object: Value) -> Value {
    let status = match object["kind"].as_str() {
        Some("SelfSubjectAccessReview") => json!({"allowed": true}),
        Some("SelfSubjectReview") => json!({"userInfo": {"username": "test"}}),
        Some("TokenRequest") => json!({"token": "issued", "expirationTimestamp": "2030-01-01T00:00:00Z"}),
        _ => return object,
    };
    object["status"] = status;
    object
}

struct Server {
    http: KubectlHttp,
    served: Served,
}

impl Server {
    async fn start() -> Server {
        let writes = Arc::default();
        let objects = Arc::default();
        let mut served = None;
        let http = KubectlHttp::serve(false, |address| {
            let state = Served { address, writes, objects };
            served = Some(state.clone());
            Router::new().fallback(handle).with_state(state)
        })
        .await;
        Server { http, served: served.expect("the app was built") }
    }

    async fn kubectl(&self, binary: &Path, args: &[&str]) -> String {
        self.http.kubectl(binary, args).await
    }

    fn take_writes(&self) -> Vec<Write> {
        self.served.writes.lock().map(|mut w| std::mem::take(&mut *w)).unwrap_or_default()
    }
}

fn kubectl(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).map(|d| d.join("kubectl")).find(|p| p.is_file());
    let kubectl =
        std::fs::canonicalize(found.expect("kubectl must be on PATH for this test")).expect("resolve kubectl");
    let path = kubectl.parent().expect("kubectl has a parent folder").join(name);
    assert!(path.is_file(), "{} is not installed", path.display());
    path
}

/// `kubectl create` subcommands whose typed clients send protobuf.
const CREATES: &[&[&str]] = &[
    &["create", "configmap", "demo", "--from-literal=a=b", "--from-literal=empty="],
    &["create", "secret", "generic", "s", "--from-literal=k=v", "--type=Opaque"],
    &[
        "create",
        "secret",
        "docker-registry",
        "reg",
        "--docker-server=r.local",
        "--docker-username=u",
        "--docker-password=p",
    ],
    &["create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80"],
    &["create", "deployment", "zero", "--image=nginx", "--replicas=0"],
    &["create", "job", "once", "--image=busybox", "--", "echo", "hi"],
    &["create", "cronjob", "tick", "--image=busybox", "--schedule=*/5 * * * *", "--", "date"],
    &["create", "namespace", "team-a"],
    &["create", "service", "clusterip", "web", "--tcp=80:8080", "--tcp=443:https"],
    &["create", "service", "nodeport", "np", "--tcp=443:8443", "--node-port=30443"],
    &["create", "service", "externalname", "ext", "--external-name=example.com"],
    &["create", "serviceaccount", "robot"],
    &["create", "role", "reader", "--verb=get,list", "--resource=pods,deployments.apps"],
    &["create", "clusterrole", "viewer", "--verb=get", "--non-resource-url=/healthz"],
    &["create", "rolebinding", "rb", "--role=reader", "--user=alice", "--serviceaccount=default:robot"],
    &["create", "clusterrolebinding", "crb", "--clusterrole=viewer", "--group=devs"],
    &["create", "quota", "q", "--hard=cpu=1,memory=1Gi,pods=10", "--scopes=NotTerminating"],
    &["create", "priorityclass", "high", "--value=1000", "--description=important", "--preemption-policy=Never"],
    &["create", "poddisruptionbudget", "pdb", "--selector=app=web", "--min-available=50%"],
    &["create", "ingress", "web", "--rule=foo.com/bar=svc1:8080,tls=cert", "--class=default"],
];

/// kubectl's dry-run output is the object it would send, as Go's JSON encoder writes it.
async fn dry_run(server: &Server, binary: &Path, args: &[&str]) -> Value {
    let mut with = args.to_vec();
    // Flags must come before a `--` that starts the container command.
    let at = with.iter().position(|a| *a == "--").unwrap_or(with.len());
    with.splice(at..at, ["--dry-run=client", "-o", "json"]);
    let out = server.kubectl(binary, &with).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} --dry-run=client printed no JSON: {e}\n{out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_bodies_decode_to_their_dry_run_json() {
    let server = Server::start().await;
    // kubectl sends typed bodies as protobuf since 1.32 (1.27 still sent JSON).
    for name in ["kubectl", "kubectl.1.33"] {
        let binary = kubectl(name);
        for args in CREATES {
            let want = dry_run(&server, &binary, args).await;
            assert!(server.take_writes().is_empty(), "dry-run=client wrote to the server");
            server.kubectl(&binary, args).await;
            let writes = server.take_writes();
            assert_eq!(writes.len(), 1, "{name} {args:?}: {writes:?}");
            let write = &writes[0];
            assert_eq!(write.content_type, CONTENT_TYPE, "{name} {args:?} did not send protobuf");
            assert_eq!(write.method, Method::POST);
            assert_eq!(write.object, want, "{name} {args:?}: decoded body (left) != dry-run JSON (right)");

            // --dry-run=server sends the same body to the server.
            let mut server_dry = args.to_vec();
            let at = server_dry.iter().position(|a| *a == "--").unwrap_or(server_dry.len());
            server_dry.insert(at, "--dry-run=server");
            server.kubectl(&binary, &server_dry).await;
            let writes = server.take_writes();
            assert_eq!(writes.len(), 1, "{name} {server_dry:?}: {writes:?}");
            assert_eq!(writes[0].object, want, "{name} {server_dry:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_certificate_approve_sends_a_decodable_approval() {
    let server = Server::start().await;
    let csr = json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "node-csr", "uid": "0b8a3a4e-1111-4111-8111-000000000001",
                     "resourceVersion": "7", "creationTimestamp": "2024-05-06T07:08:09Z"},
        "spec": {
            "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
            "signerName": "kubernetes.io/kube-apiserver-client",
            "usages": ["client auth"],
            "username": "alice",
            "groups": ["system:authenticated"],
            "extra": {"scopes": ["a", "b"]},
        },
        "status": {},
    });
    let path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/node-csr".to_string();
    server.served.objects.lock().expect("objects").push((path.clone(), csr.clone()));
    for name in ["kubectl", "kubectl.1.33"] {
        server.kubectl(&kubectl(name), &["certificate", "approve", "node-csr"]).await;
        let writes = server.take_writes();
        assert_eq!(writes.len(), 1, "{name}: {writes:?}");
        let write = &writes[0];
        assert_eq!((write.method.clone(), write.path.as_str()), (Method::PUT, format!("{path}/approval").as_str()));
        assert_eq!(write.content_type, CONTENT_TYPE, "{name} did not send protobuf");
        let mut got = write.object.clone();
        let conditions = got["status"].as_object_mut().and_then(|s| s.remove("conditions")).unwrap_or_default();
        let mut want = csr.clone();
        want["status"] = json!({});
        assert_eq!(got, want, "{name}: the approval carries the object it read");
        let condition = &conditions[0];
        assert_eq!(
            (&condition["type"], &condition["status"], &condition["reason"]),
            (&json!("Approved"), &json!("True"), &json!("KubectlApprove")),
            "{conditions}"
        );
        let stamp = condition["lastUpdateTime"].as_str().unwrap_or_default();
        assert!(
            stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "lastUpdateTime {stamp:?} is not RFC 3339 in seconds"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_and_token_requests_decode() {
    let server = Server::start().await;
    let cases: &[(&[&str], &str, Value)] = &[
        (
            &["auth", "can-i", "create", "pods"],
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            json!({
                "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "metadata": {"creationTimestamp": null},
                "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}},
                // SubjectAccessReviewStatus.allowed has no omitempty in Go
                "status": {"allowed": false},
            }),
        ),
        (
            &["auth", "whoami"],
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                "metadata": {"creationTimestamp": null},
                "status": {"userInfo": {}},
            }),
        ),
        (
            &[
                "create",
                "token",
                "robot",
                "--duration=1h",
                "--audience=a",
                "--bound-object-kind=Pod",
                "--bound-object-name=p",
                "--bound-object-uid=u1",
            ],
            "/api/v1/namespaces/default/serviceaccounts/robot/token",
            json!({
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "metadata": {"creationTimestamp": null},
                "spec": {
                    "audiences": ["a"],
                    "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u1"},
                    "expirationSeconds": 3600,
                },
                // token has no omitempty; expirationTimestamp is a zero metav1.Time
                "status": {"token": "", "expirationTimestamp": null},
            }),
        ),
    ];
    for name in ["kubectl", "kubectl.1.33"] {
        for (args, path, want) in cases {
            server.kubectl(&kubectl(name), args).await;
            let writes = server.take_writes();
            assert_eq!(writes.len(), 1, "{name} {args:?}: {writes:?}");
            assert_eq!((writes[0].method.clone(), writes[0].path.as_str()), (Method::POST, *path), "{name} {args:?}");
            assert_eq!(writes[0].content_type, CONTENT_TYPE, "{name} {args:?} did not send protobuf");
            assert_eq!(&writes[0].object, want, "{name} {args:?}");
        }
    }
}
