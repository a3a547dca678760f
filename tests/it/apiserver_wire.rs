//! On the wire with the real kubectl: large answers are gzipped when the client accepts it
//! (kubectl does), small ones are not; PATCH bodies with unknown or duplicate fields are
//! refused under `fieldValidation=Strict` and warned about by default, as upstream does.

use crate::common;

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use k3rs::apiserver::ApiServer;
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};
use tower::ServiceExt;

use common::kubectl_http::{admin, kubectl, serve_as, KubectlHttp};

async fn setup() -> (Arc<ApiServer>, KubectlHttp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let api =
        ApiServer::new(Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap()));
    api.bootstrap().await.unwrap();
    let http = serve_as(&api, admin()).await;
    (api, http, dir)
}

async fn get(api: &Arc<ApiServer>, uri: &str, encoding: Option<&str>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut b = Request::builder().method(Method::GET).uri(uri);
    if let Some(e) = encoding {
        b = b.header("accept-encoding", e);
    }
    let mut req = b.body(Body::empty()).unwrap();
    req.extensions_mut().insert(admin());
    let resp = api.router().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, axum::body::to_bytes(body, usize::MAX).await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_are_gzipped_for_clients_that_ask() {
    let (api, http, _dir) = setup().await;
    let client = k3rs::client::Client::new(api.clone(), admin());
    let payload = "x".repeat(4096);
    for i in 0..40 {
        client
            .post(
                "/api/v1/namespaces/default/configmaps",
                &json!({"metadata": {"name": format!("cm-{i}")}, "data": {"k": payload}}),
            )
            .await
            .unwrap();
    }
    let (code, headers, zipped) = get(&api, "/api/v1/namespaces/default/configmaps", Some("gzip")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(headers.get("content-encoding").map(|v| v.to_str().unwrap()), Some("gzip"));
    assert!(headers.get_all("vary").iter().any(|v| v == "Accept-Encoding"), "{headers:?}");
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&zipped[..]).read_to_end(&mut plain).unwrap();
    let list: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 40);
    assert!(zipped.len() < plain.len() / 10, "{} vs {}", zipped.len(), plain.len());

    let (_, headers, body) = get(&api, "/api/v1/namespaces/default/configmaps", None).await;
    assert!(headers.get("content-encoding").is_none());
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), list);
    let (_, headers, _) = get(&api, "/api/v1/namespaces/default/configmaps", Some("gzip;q=0")).await;
    assert!(headers.get("content-encoding").is_none());
    let (_, headers, _) = get(&api, "/api/v1/namespaces/default/configmaps/cm-1", Some("gzip")).await;
    assert!(headers.get("content-encoding").is_none(), "small answers stay plain");

    // kubectl asks for gzip and reads the compressed list.
    let out = http.run(&kubectl("kubectl.1.33"), &["get", "configmaps", "-o", "name", "-v=8"]).await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.stdout.lines().filter(|l| l.starts_with("configmap/cm-")).count(), 40);
    // Go's transport asked for gzip itself, so it unzipped the body and dropped the
    // Content-Encoding header from what it logs; the Vary header shows the compression.
    let list_response = out.stderr.split("configmaps?limit=500").nth(1).unwrap_or("");
    assert!(
        list_response.split("Response Body").next().unwrap_or("").contains("Vary: Accept-Encoding"),
        "{}",
        out.stderr
    );
}

async fn patch(api: &Arc<ApiServer>, uri: &str, ct: &str, body: &str) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(Method::PATCH)
        .uri(uri)
        .header("content-type", ct)
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut().insert(admin());
    let resp = api.router().oneshot(req).await.unwrap();
    let code = resp.status();
    (code, serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_bodies_are_checked_for_unknown_and_duplicate_fields() {
    let (api, http, _dir) = setup().await;
    let client = k3rs::client::Client::new(api.clone(), admin());
    client
        .post("/api/v1/namespaces/default/configmaps", &json!({"metadata": {"name": "app"}, "data": {"a": "1"}}))
        .await
        .unwrap();
    let strict = "/api/v1/namespaces/default/configmaps/app?fieldValidation=Strict";
    let (code, st) = patch(&api, strict, "application/merge-patch+json", r#"{"data":{"b":"2"},"bogus":true}"#).await;
    assert_eq!(
        (code, st["reason"].as_str(), st["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("BadRequest"), Some(r#"strict decoding error: unknown field "bogus""#))
    );
    let (_, st) =
        patch(&api, strict, "application/strategic-merge-patch+json", r#"{"data":{"b":"2"},"data":{"c":"3"}}"#).await;
    assert_eq!(st["message"], r#"strict decoding error: duplicate field "data""#);
    let (_, st) =
        patch(&api, strict, "application/json-patch+json", r#"[{"op":"add","path":"/spec","value":{"x":1}}]"#).await;
    assert_eq!(st["message"], r#"strict decoding error: unknown field "spec""#);
    assert_eq!(
        client.get("/api/v1/namespaces/default/configmaps/app").await.unwrap()["data"],
        json!({"a": "1"}),
        "nothing was written"
    );
    let (code, _) = patch(&api, strict, "application/merge-patch+json", r#"{"data":{"b":"2"}}"#).await;
    assert_eq!(code, StatusCode::OK);

    // kubectl patch sends no fieldValidation: the default, Warn, applies the patch and
    // reports the field, as upstream does.
    let out = http
        .run(
            &kubectl("kubectl.1.33"),
            &["patch", "configmap", "app", "--type=merge", "-p", r#"{"data":{"c":"3"},"bogus":1}"#],
        )
        .await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.stderr.trim(), r#"Warning: unknown field "bogus""#);
    assert_eq!(client.get("/api/v1/namespaces/default/configmaps/app").await.unwrap()["data"]["c"], "3");
}

/// A request with headers, its status, headers and raw body.
async fn raw(
    api: &Arc<ApiServer>,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Vec<u8>) {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let mut req = b.body(Body::from(body.to_string())).unwrap();
    req.extensions_mut().insert(admin());
    let resp = api.router().oneshot(req).await.unwrap();
    let code = resp.status();
    (code, axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap().to_vec())
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap()
}

const META: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
const META_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

/// `Accept: ...;as=PartialObjectMetadata[List]` answers metadata only, as kube-rs'
/// metadata API and client-go's metadata informers ask; other conversions are 406.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_object_metadata_is_served_and_negotiated() {
    let (api, _http, _dir) = setup().await;
    let client = k3rs::client::Client::new(api.clone(), admin());
    for name in ["a", "b"] {
        client
            .post(
                "/api/v1/namespaces/default/configmaps",
                &json!({"metadata": {"name": name, "labels": {"app": "x"}}, "data": {"secret": "value"}}),
            )
            .await
            .unwrap();
    }
    let uri = "/api/v1/namespaces/default/configmaps";
    let (code, body) = raw(&api, Method::GET, &format!("{uri}/a"), &[("accept", META)], "").await;
    assert_eq!(code, StatusCode::OK);
    let obj: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (obj["kind"].as_str(), obj["apiVersion"].as_str()),
        (Some("PartialObjectMetadata"), Some("meta.k8s.io/v1"))
    );
    assert_eq!(obj["metadata"]["labels"], json!({"app": "x"}));
    assert!(obj.get("data").is_none(), "metadata only: {obj}");

    let (code, body) = raw(&api, Method::GET, &format!("{uri}?limit=1"), &[("accept", META_LIST)], "").await;
    assert_eq!(code, StatusCode::OK);
    let list: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert!(list["metadata"]["continue"].is_string(), "{list}");
    assert!(list["items"][0].get("data").is_none());

    // A list asked for as one object's metadata, and an object asked for as a list: 406,
    // as upstream's transform answers them.
    let (code, body) = raw(&api, Method::GET, uri, &[("accept", META)], "").await;
    let st: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(code, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(
        st["message"],
        "you requested PartialObjectMetadata, but the requested object is a list (*core.ConfigMapList)"
    );
    assert_eq!(st["details"], json!({}));
    let (code, body) = raw(&api, Method::GET, &format!("{uri}/a"), &[("accept", META_LIST)], "").await;
    assert_eq!(code, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["message"],
        "you requested PartialObjectMetadataList, but the requested object is not a list (*core.ConfigMap)"
    );
    // An unsupported group or version: nothing servable, 406.
    for accept in [
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v2",
        "application/json;as=PartialObjectMetadata;g=example.com;v=v1",
    ] {
        let (code, body) = raw(&api, Method::GET, &format!("{uri}/a"), &[("accept", accept)], "").await;
        assert_eq!(code, StatusCode::NOT_ACCEPTABLE, "{accept}");
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["message"],
            "only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf"
        );
    }
    // Writes answer in the asked form too.
    let (code, body) = raw(
        &api,
        Method::PATCH,
        &format!("{uri}/a"),
        &[("accept", META), ("content-type", "application/merge-patch+json")],
        r#"{"metadata":{"annotations":{"k":"v"}}}"#,
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let patched: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (patched["kind"].as_str(), patched["metadata"]["annotations"]["k"].as_str()),
        (Some("PartialObjectMetadata"), Some("v"))
    );

    // kube-rs' metadata API.
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, WatchEvent, WatchParams};
    let cms: Api<ConfigMap> = Api::namespaced(client.typed(), "default");
    let one = cms.get_metadata("a").await.unwrap();
    assert_eq!(one.metadata.name.as_deref(), Some("a"));
    assert_eq!(one.types.as_ref().map(|t| t.kind.as_str()), Some("PartialObjectMetadata"));
    let all = cms.list_metadata(&ListParams::default()).await.unwrap();
    let names: Vec<_> = all.items.iter().filter_map(|m| m.metadata.name.clone()).collect();
    assert_eq!(names, ["a", "b"]);
    let rv = all.metadata.resource_version.clone().unwrap();
    let mut events = cms.watch_metadata(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    client
        .post("/api/v1/namespaces/default/configmaps", &json!({"metadata": {"name": "c"}, "data": {"k": "v"}}))
        .await
        .unwrap();
    match events.try_next().await.unwrap() {
        Some(WatchEvent::Added(m)) => {
            assert_eq!(m.metadata.name.as_deref(), Some("c"));
            assert_eq!(m.types.as_ref().map(|t| t.kind.as_str()), Some("PartialObjectMetadata"));
        }
        other => panic!("expected the ADDED metadata of c, got {other:?}"),
    }
}

/// Deletes answer as upstream's registry does: the object for the resources whose storage
/// returns it (Services, Pods, Namespaces, ...) and for objects only being deleted, a
/// Success Status otherwise; the official Python client parses each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_answer_with_the_object_where_upstream_does() {
    let (api, http, _dir) = setup().await;
    let client = k3rs::client::Client::new(api.clone(), admin());
    let svc = json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}});
    client.post("/api/v1/namespaces/default/services", &svc).await.unwrap();
    let (code, body) = raw(&api, Method::DELETE, "/api/v1/namespaces/default/services/web", &[], "").await;
    let deleted: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (code, deleted["kind"].as_str(), deleted["metadata"]["name"].as_str()),
        (StatusCode::OK, Some("Service"), Some("web"))
    );

    client.post("/api/v1/namespaces/default/configmaps", &json!({"metadata": {"name": "cm"}})).await.unwrap();
    let (code, body) = raw(&api, Method::DELETE, "/api/v1/namespaces/default/configmaps/cm", &[], "").await;
    assert_eq!(code, StatusCode::OK);
    let st: Value = serde_json::from_slice(&body).unwrap();
    let uid = st["details"]["uid"].as_str().unwrap_or_default().to_string();
    assert!(!uid.is_empty(), "{st}");
    assert_eq!(
        text(&body),
        format!("{{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{{}},\"status\":\"Success\",\"details\":{{\"name\":\"cm\",\"kind\":\"configmaps\",\"uid\":\"{uid}\"}}}}\n"),
        "the core group is left out of the details"
    );

    // Held by a finalizer: the object, marked; 202 when orphanDependents=false, as upstream.
    let held = json!({"metadata": {"name": "held", "finalizers": ["example.com/keep"]}});
    client.post("/api/v1/namespaces/default/configmaps", &held).await.unwrap();
    let (code, body) =
        raw(&api, Method::DELETE, "/api/v1/namespaces/default/configmaps/held?orphanDependents=false", &[], "").await;
    let marked: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((code, marked["kind"].as_str()), (StatusCode::ACCEPTED, Some("ConfigMap")), "{marked}");
    assert!(marked["metadata"]["deletionTimestamp"].is_string());

    client.post("/api/v1/namespaces", &json!({"metadata": {"name": "team"}})).await.unwrap();
    let (code, body) = raw(&api, Method::DELETE, "/api/v1/namespaces/team", &[], "").await;
    let ns: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (code, ns["kind"].as_str(), ns["status"]["phase"].as_str()),
        (StatusCode::OK, Some("Namespace"), Some("Terminating"))
    );

    // The official Python client declares V1Service as delete_namespaced_service's answer.
    client.post("/api/v1/namespaces/default/services", &svc).await.unwrap();
    client.post("/api/v1/namespaces/default/configmaps", &json!({"metadata": {"name": "cm2"}})).await.unwrap();
    let script = r#"
import sys
from kubernetes import client, config
config.load_kube_config(sys.argv[1])
v1 = client.CoreV1Api()
svc = v1.delete_namespaced_service("web", "default")
print(type(svc).__name__, svc.metadata.name, svc.spec.ports[0].port)
st = v1.delete_namespaced_config_map("cm2", "default")
print(st["kind"], st["status"], st["details"]["kind"], "group" in st["details"])
"#;
    let out = tokio::process::Command::new(common::python())
        .arg("-c")
        .arg(script)
        .arg(http.dir.path().join("kubeconfig"))
        .output()
        .await
        .expect("run python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "V1Service web 80\nStatus Success configmaps False\n");
}

/// JSON bodies as upstream's encoder writes them: `kind`, `apiVersion` and `metadata`
/// first (Status in its Go field order), and a newline at the end of every body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bodies_are_written_in_upstreams_order() {
    let (api, http, _dir) = setup().await;
    let client = k3rs::client::Client::new(api.clone(), admin());
    client
        .post("/api/v1/namespaces/default/configmaps", &json!({"metadata": {"name": "cm"}, "data": {"k": "v"}}))
        .await
        .unwrap();
    let (_, body) = raw(&api, Method::GET, "/api/v1/namespaces/default/configmaps/cm", &[], "").await;
    let body = text(&body);
    assert!(
        body.starts_with(
            r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm","namespace":"default","uid":""#
        ),
        "{body}"
    );
    assert!(body.ends_with("}\n"), "{body:?}");
    let (_, list) = raw(&api, Method::GET, "/api/v1/namespaces/default/configmaps", &[], "").await;
    let list = text(&list);
    assert!(list.starts_with(r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":""#), "{list}");
    assert!(
        list.contains(
            r#"[{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm","namespace":"default","uid":""#
        ),
        "{list}"
    );
    assert!(list.ends_with("]}\n"), "{list:?}");
    let (code, missing) = raw(&api, Method::GET, "/api/v1/namespaces/default/configmaps/nope", &[], "").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    assert_eq!(
        text(&missing),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"configmaps \\\"nope\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"nope\",\"kind\":\"configmaps\"},\"code\":404}\n"
    );
    let (_, disc) = raw(&api, Method::GET, "/api/v1", &[], "").await;
    assert!(text(&disc).ends_with("}\n"));

    // kubectl reads them as before, and an immutable ConfigMap's 422 reaches it whole.
    client
        .post(
            "/api/v1/namespaces/default/configmaps",
            &json!({"metadata": {"name": "frozen"}, "immutable": true, "data": {"a": "1"}}),
        )
        .await
        .unwrap();
    let out = http
        .run(&kubectl("kubectl.1.33"), &["patch", "configmap", "frozen", "--type=merge", "-p", r#"{"data":{"a":"2"}}"#])
        .await;
    assert!(!out.success);
    assert_eq!(
        out.stderr.trim(),
        "The ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
    assert_eq!(
        http.kubectl(&kubectl("kubectl.1.33"), &["get", "configmap", "cm", "-o", "jsonpath={.data.k}"]).await,
        "v"
    );
}

/// What discovery advertises is served: every resource and subresource of `/api/v1` and of
/// each group version under `/apis` is requested with its advertised verbs (get and list
/// on each resource, create where that is all it takes, and one harmless request on each
/// subresource), and none answers 405 or the 404 of an unknown path. A 404 about the
/// object named (it does not exist) is an answer from the resource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_resource_and_verb_is_served() {
    // A server as `k3rs server` runs it: with a service-account token issuer, which serves
    // `serviceaccounts/token`.
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap().serialize_pem();
    let issuer = k3rs::pki::issuer_for("cluster.local");
    let tokens = k3rs::pki::ServiceAccountTokens::from_pem(&key, issuer.clone(), vec![issuer]).unwrap();
    let api = ApiServer::with_options(
        Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap()),
        k3rs::apiserver::ApiOptions { tokens: Some(Arc::new(tokens)), ..Default::default() },
    );
    api.bootstrap().await.unwrap();
    let json = |b: &[u8]| serde_json::from_slice::<Value>(b).unwrap_or(Value::Null);
    let mut versions = vec!["/api/v1".to_string()];
    let (_, groups) = raw(&api, Method::GET, "/apis", &[], "").await;
    for g in json(&groups)["groups"].as_array().unwrap() {
        for v in g["versions"].as_array().unwrap() {
            versions.push(format!("/apis/{}", v["groupVersion"].as_str().unwrap()));
        }
    }
    let mut checked = 0;
    for base in &versions {
        let (code, doc) = raw(&api, Method::GET, base, &[], "").await;
        assert_eq!(code, StatusCode::OK, "{base}");
        for r in json(&doc)["resources"].as_array().unwrap() {
            let name = r["name"].as_str().unwrap();
            let verbs: Vec<&str> = r["verbs"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
            let (plural, sub) = match name.split_once('/') {
                Some((p, s)) => (p, Some(s)),
                None => (name, None),
            };
            let collection = if r["namespaced"] == true {
                format!("{base}/namespaces/default/{plural}")
            } else {
                format!("{base}/{plural}")
            };
            let object = format!("{collection}/no-such-object");
            let mut requests: Vec<(Method, String, &str)> = Vec::new();
            match sub {
                None => {
                    if verbs.contains(&"list") {
                        requests.push((Method::GET, collection.clone(), ""));
                    }
                    if verbs.contains(&"get") {
                        requests.push((Method::GET, object.clone(), ""));
                    }
                    if verbs == ["create"] {
                        requests.push((Method::POST, collection.clone(), "{}"));
                    }
                }
                Some(s) => {
                    let at = format!("{object}/{s}");
                    if verbs.contains(&"get") {
                        requests.push((Method::GET, at, ""));
                    } else if verbs.contains(&"create") {
                        requests.push((Method::POST, at, "{}"));
                    } else if verbs.contains(&"update") {
                        requests.push((Method::PUT, at, "{}"));
                    }
                }
            }
            assert!(!requests.is_empty(), "{base} {name} advertises nothing to request: {verbs:?}");
            for (method, uri, body) in requests {
                let (code, answer) =
                    raw(&api, method.clone(), &uri, &[("content-type", "application/json")], body).await;
                let answer = json(&answer);
                assert_ne!(code, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}: {answer}");
                if code == StatusCode::NOT_FOUND {
                    assert_eq!(
                        answer["details"]["name"], "no-such-object",
                        "{method} {uri} ({name} is advertised) answers an unknown path: {answer}"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "only {checked} requests");
}
