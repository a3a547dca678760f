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
    call_as(api, method, uri, "application/json", body).await
}

async fn call_as(
    api: &Arc<ApiServer>,
    method: Method,
    uri: &str,
    content_type: &str,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
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

async fn api() -> (Arc<ApiServer>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let api =
        ApiServer::new(Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap()));
    api.bootstrap().await.unwrap();
    (api, dir)
}

/// An object created `immutable: true` refuses every kind of write to its data, and to
/// `immutable` itself, with upstream's 422; labels may still change.
#[tokio::test]
async fn immutable_configmaps_and_secrets_refuse_every_write_to_their_data() {
    let (api, _dir) = api().await;
    const MSG: &str = "field is immutable when `immutable` is set";
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "frozen"}, "immutable": true, "data": {"a": "1"}});
    let (code, created) = call(&api, Method::POST, "/api/v1/namespaces/default/configmaps", cm).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let uri = "/api/v1/namespaces/default/configmaps/frozen";
    let patches = [
        ("application/merge-patch+json", json!({"data": {"a": "2"}})),
        ("application/strategic-merge-patch+json", json!({"data": {"b": "2"}})),
        ("application/json-patch+json", json!([{"op": "replace", "path": "/data/a", "value": "2"}])),
    ];
    for (ct, patch) in patches {
        let (code, st) = call_as(&api, Method::PATCH, uri, ct, patch).await;
        assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{ct}: {st}");
        assert_eq!(st["message"], format!("ConfigMap \"frozen\" is invalid: data: Forbidden: {MSG}"), "{ct}");
        assert_eq!(
            st["details"]["causes"],
            json!([{"reason": "FieldValueForbidden", "message": format!("Forbidden: {MSG}"), "field": "data"}])
        );
    }
    let mut put = created.clone();
    put["binaryData"] = json!({"b": "eA=="});
    put["immutable"] = json!(false);
    let (code, st) = call(&api, Method::PUT, uri, put).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        st["message"],
        format!("ConfigMap \"frozen\" is invalid: [immutable: Forbidden: {MSG}, binaryData: Forbidden: {MSG}]")
    );
    let (code, st) =
        call_as(&api, Method::PATCH, uri, "application/merge-patch+json", json!({"metadata": {"labels": {"x": "y"}}}))
            .await;
    assert_eq!(code, StatusCode::OK, "{st}");

    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "frozen"}, "immutable": true, "stringData": {"a": "1"}});
    let (code, created) = call(&api, Method::POST, "/api/v1/namespaces/default/secrets", secret).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let (code, st) = call_as(
        &api,
        Method::PATCH,
        "/api/v1/namespaces/default/secrets/frozen",
        "application/merge-patch+json",
        json!({"stringData": {"a": "2"}}),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{st}");
    assert_eq!(st["message"], format!("Secret \"frozen\" is invalid: data: Forbidden: {MSG}"));
}

/// The immutable fields of upstream's workload and service strategies, through the handler.
#[tokio::test]
async fn immutable_workload_fields_get_upstreams_422() {
    let (api, _dir) = api().await;
    let template =
        json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}});
    let (code, created) = call(&api, Method::POST, "/apis/apps/v1/namespaces/default/deployments", deploy).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let (code, st) = call_as(
        &api,
        Method::PATCH,
        "/apis/apps/v1/namespaces/default/deployments/web",
        "application/merge-patch+json",
        json!({"spec": {"selector": {"matchLabels": {"tier": "x"}}, "template": {"metadata": {"labels": {"tier": "x"}}}}}),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{st}");
    assert_eq!(
        st["message"],
        r#"Deployment.apps "web" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "tier":"x"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"#
    );

    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "perl"}]}}}});
    let (code, created) = call(&api, Method::POST, "/apis/batch/v1/namespaces/default/jobs", job).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let (code, st) = call_as(
        &api,
        Method::PATCH,
        "/apis/batch/v1/namespaces/default/jobs/pi",
        "application/strategic-merge-patch+json",
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "perl:5"}]}}}}),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{st}");
    assert_eq!(st["details"]["causes"][0]["field"], "spec.template");
    assert_eq!(st["details"]["causes"][0]["reason"], "FieldValueInvalid");

    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "selector": {"matchLabels": {"app": "web"}}, "template": template}});
    let (code, created) = call(&api, Method::POST, "/apis/apps/v1/namespaces/default/statefulsets", sts).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let (code, st) = call_as(
        &api,
        Method::PATCH,
        "/apis/apps/v1/namespaces/default/statefulsets/db",
        "application/merge-patch+json",
        json!({"spec": {"serviceName": "other"}}),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{st}");
    assert_eq!(
        st["message"],
        r#"StatefulSet.apps "db" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"#
    );
    let (code, st) = call_as(
        &api,
        Method::PATCH,
        "/apis/apps/v1/namespaces/default/statefulsets/db",
        "application/merge-patch+json",
        json!({"spec": {"replicas": 3}}),
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{st}");

    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let (code, created) = call(&api, Method::POST, "/api/v1/namespaces/default/persistentvolumeclaims", pvc).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    let (code, st) = call_as(
        &api,
        Method::PATCH,
        "/api/v1/namespaces/default/persistentvolumeclaims/data",
        "application/merge-patch+json",
        json!({"spec": {"accessModes": ["ReadWriteMany"]}}),
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{st}");
    assert_eq!(
        st["message"],
        r#"PersistentVolumeClaim "data" is invalid: spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"#
    );
}

/// A RoleBinding's ServiceAccount subject without a namespace means the binding's own; a
/// ClusterRoleBinding's must name one (upstream's `ValidateRoleBindingSubject`).
#[tokio::test]
async fn service_account_subjects_need_a_namespace_only_cluster_wide() {
    let (api, _dir) = api().await;
    let role_ref = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"});
    let subjects = json!([{"kind": "ServiceAccount", "name": "default"}]);
    let rb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "sa"},
        "roleRef": role_ref, "subjects": subjects});
    let (code, created) =
        call(&api, Method::POST, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", rb).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["subjects"], json!([{"kind": "ServiceAccount", "name": "default"}]));
    let crb = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "sa"},
        "roleRef": role_ref, "subjects": subjects});
    let (code, st) = call(&api, Method::POST, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", crb).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        st["message"],
        r#"ClusterRoleBinding.rbac.authorization.k8s.io "sa" is invalid: subjects[0].namespace: Required value"#
    );
}
