//! Validation through the whole handler stack: an invalid object is a 422 `Invalid` Status
//! whose message and causes are upstream's, for creates and for updates of fields upstream
//! makes immutable.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use k3rs::apiserver::{ApiServer, Identity};
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};
use tower::ServiceExt;

async fn call(api: &Arc<ApiServer>, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    req.extensions_mut().insert(Identity::new("system:admin", &["system:masters", "system:authenticated"]));
    let resp = api.router().oneshot(req).await.unwrap();
    let code = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (code, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn invalid_objects_get_upstreams_422() {
    let dir = tempfile::tempdir().unwrap();
    let api =
        ApiServer::new(Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap()));
    api.bootstrap().await.unwrap();

    let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
        "spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}});
    let (code, st) = call(&api, Method::POST, "/apis/networking.k8s.io/v1/namespaces/default/ingresses", ing).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(st["reason"], "Invalid");
    assert_eq!(
        st["message"],
        r#"Ingress.networking.k8s.io "web" is invalid: spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"#
    );
    assert_eq!(
        st["details"]["causes"],
        json!([{"reason": "FieldValueRequired", "field": "spec.rules[0].http.paths[0].pathType", "message": "Required value: pathType must be specified"}])
    );

    let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"}]});
    let (code, created) =
        call(&api, Method::POST, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", rb).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let mut moved = created.clone();
    moved["roleRef"]["name"] = json!("edit");
    let (code, st) =
        call(&api, Method::PUT, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/b", moved).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        st["message"],
        r#"RoleBinding.rbac.authorization.k8s.io "b" is invalid: roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"edit"}: cannot change roleRef"#
    );

    let sc = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "local"}, "provisioner": "rancher.io/local-path", "parameters": {"a": "1"}});
    let (code, created) = call(&api, Method::POST, "/apis/storage.k8s.io/v1/storageclasses", sc).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(
        (created["reclaimPolicy"].as_str(), created["volumeBindingMode"].as_str()),
        (Some("Delete"), Some("Immediate"))
    );
    let mut changed = created.clone();
    changed["parameters"]["a"] = json!("2");
    let (code, st) = call(&api, Method::PUT, "/apis/storage.k8s.io/v1/storageclasses/local", changed).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(st["details"]["causes"][0]["message"], "Forbidden: updates to parameters are forbidden.");

    let pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "too-high"}, "value": 1_500_000_000});
    let (code, st) = call(&api, Method::POST, "/apis/scheduling.k8s.io/v1/priorityclasses", pc).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        st["message"],
        r#"PriorityClass.scheduling.k8s.io "too-high" is invalid: value: Forbidden: maximum allowed value of a user defined priority is 1000000000"#
    );
}
