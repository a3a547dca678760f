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

use common::kubectl_http::{admin, kubectl, KubectlHttp};

async fn setup() -> (Arc<ApiServer>, KubectlHttp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let api =
        ApiServer::new(Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap()));
    api.bootstrap().await.unwrap();
    let served = api.clone();
    let http = KubectlHttp::serve(false, move |_| {
        served.router().layer(axum::middleware::map_request(|mut req: Request| async move {
            req.extensions_mut().insert(admin());
            req
        }))
    })
    .await;
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
