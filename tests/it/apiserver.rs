//! The API server's handler stack in process, over a real SQLite store on a temp dir:
//! requests go through the router as a tower service, the way in-process components call it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures::StreamExt;
use k3rs::apiserver::{ApiServer, Identity};
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};
use tower::ServiceExt;

struct Api {
    api: Arc<ApiServer>,
    _dir: tempfile::TempDir,
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap();
    let api = ApiServer::new(Arc::new(store));
    api.bootstrap().await.unwrap();
    Api { api, _dir: dir }
}

fn admin() -> Identity {
    Identity::new("system:admin", &["system:masters", "system:authenticated"])
}

impl Api {
    async fn call_as(
        &self,
        who: Option<Identity>,
        method: Method,
        uri: &str,
        ct: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        let body = if body.is_null() { Body::empty() } else { Body::from(serde_json::to_vec(&body).unwrap()) };
        let mut req = Request::builder().method(method).uri(uri).header("content-type", ct).body(body).unwrap();
        if let Some(id) = who {
            req.extensions_mut().insert(id);
        }
        let resp = self.api.router().oneshot(req).await.unwrap();
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
        (code, v)
    }
    async fn call(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call_as(Some(admin()), method, uri, "application/json", body).await
    }
}

#[tokio::test]
async fn configmap_lifecycle_with_statuses_like_upstream() {
    let a = api().await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"}, "data": {"k": "v"}});
    let (code, created) = a.call(Method::POST, "/api/v1/namespaces/default/configmaps", cm.clone()).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["metadata"]["namespace"], "default");
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap().to_string();

    let (code, again) = a.call(Method::POST, "/api/v1/namespaces/default/configmaps", cm.clone()).await;
    assert_eq!((code, again["reason"].as_str()), (StatusCode::CONFLICT, Some("AlreadyExists")));
    assert_eq!(again["message"], "configmaps \"app\" already exists");

    // Update with a stale resourceVersion: 409 Conflict; with the current one: applied.
    let mut upd = created.clone();
    upd["data"]["k"] = json!("v2");
    upd["metadata"]["resourceVersion"] = json!("1");
    let (code, st) = a.call(Method::PUT, "/api/v1/namespaces/default/configmaps/app", upd.clone()).await;
    assert_eq!((code, st["reason"].as_str()), (StatusCode::CONFLICT, Some("Conflict")));
    upd["metadata"]["resourceVersion"] = json!(rv);
    let (code, updated) = a.call(Method::PUT, "/api/v1/namespaces/default/configmaps/app", upd).await;
    assert_eq!(code, StatusCode::OK, "{updated}");
    assert_eq!(updated["metadata"]["uid"], uid.as_str());
    assert_eq!(updated["data"]["k"], "v2");

    let (code, patched) = a
        .call_as(
            Some(admin()),
            Method::PATCH,
            "/api/v1/namespaces/default/configmaps/app",
            "application/merge-patch+json",
            json!({"data": {"x": "y"}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    assert_eq!(patched["data"], json!({"k": "v2", "x": "y"}));

    let (code, list) = a.call(Method::GET, "/api/v1/namespaces/default/configmaps", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let (code, st) = a.call(Method::DELETE, "/api/v1/namespaces/default/configmaps/app", Value::Null).await;
    assert_eq!((code, st["status"].as_str()), (StatusCode::OK, Some("Success")));
    let (code, st) = a.call(Method::GET, "/api/v1/namespaces/default/configmaps/app", Value::Null).await;
    assert_eq!((code, st["message"].as_str()), (StatusCode::NOT_FOUND, Some("configmaps \"app\" not found")));
}

#[tokio::test]
async fn bad_input_gets_a_status() {
    let a = api().await;
    let (code, st) = a
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}}),
        )
        .await;
    assert_eq!((code, st["reason"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("Invalid")), "{st}");
    assert_eq!(st["details"]["causes"][0]["field"], "metadata.name");
    let (code, st) =
        a.call(Method::POST, "/api/v1/namespaces/nope/configmaps", json!({"metadata": {"name": "x"}})).await;
    assert_eq!((code, st["message"].as_str()), (StatusCode::NOT_FOUND, Some("namespaces \"nope\" not found")));
    let (code, st) = a
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
        )
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST, "{st}");
    let (code, _) = a.call_as(None, Method::GET, "/api/v1/namespaces", "application/json", Value::Null).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, st) = a
        .call_as(
            Some(Identity::new("bob", &["system:authenticated"])),
            Method::GET,
            "/api/v1/namespaces",
            "application/json",
            Value::Null,
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(st["message"], "namespaces is forbidden: User \"bob\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope");
    let (code, _) = a.call_as(None, Method::GET, "/readyz", "application/json", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    let big = "x".repeat(4 * 1024 * 1024);
    let (code, st) = a
        .call(
            Method::POST,
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": "big"}, "data": {"k": big}}),
        )
        .await;
    assert_eq!((code, st["reason"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("RequestEntityTooLarge")));
}

#[tokio::test]
async fn pagination_is_consistent_and_watch_streams_changes() {
    let a = api().await;
    for i in 0..7 {
        let (code, _) = a
            .call(
                Method::POST,
                "/api/v1/namespaces/default/configmaps",
                json!({"metadata": {"name": format!("cm{i}")}}),
            )
            .await;
        assert_eq!(code, StatusCode::CREATED);
    }
    let (_, p1) = a.call(Method::GET, "/api/v1/namespaces/default/configmaps?limit=3", Value::Null).await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 3);
    assert_eq!(p1["metadata"]["remainingItemCount"], 4);
    let token = p1["metadata"]["continue"].as_str().unwrap().to_string();
    // A write between pages does not show in later pages of the same list.
    a.call(Method::POST, "/api/v1/namespaces/default/configmaps", json!({"metadata": {"name": "cm9"}})).await;
    let (_, p2) = a
        .call(Method::GET, &format!("/api/v1/namespaces/default/configmaps?limit=10&continue={token}"), Value::Null)
        .await;
    let names: Vec<&str> =
        p2["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["cm3", "cm4", "cm5", "cm6"]);
    assert!(p2["metadata"].get("continue").is_none());

    let rv = p1["metadata"]["resourceVersion"].as_str().unwrap();
    let req = Request::builder()
        .uri(format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}"))
        .extension(admin())
        .body(Body::empty())
        .unwrap();
    let resp = a.api.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    a.call(Method::DELETE, "/api/v1/namespaces/default/configmaps/cm0", Value::Null).await;
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    while lines.len() < 2 {
        let chunk =
            tokio::time::timeout(std::time::Duration::from_secs(5), body.next()).await.unwrap().unwrap().unwrap();
        buf.extend_from_slice(&chunk);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            let l: Vec<u8> = buf.drain(..=i).collect();
            lines.push(serde_json::from_slice::<Value>(&l).unwrap());
        }
    }
    assert_eq!(
        (lines[0]["type"].as_str(), lines[0]["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("cm9"))
    );
    assert_eq!(
        (lines[1]["type"].as_str(), lines[1]["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("cm0"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_namespace_deletes_its_content_then_itself() {
    let a = api().await;
    let (code, _) = a.call(Method::POST, "/api/v1/namespaces", json!({"metadata": {"name": "team"}})).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, _) =
        a.call(Method::POST, "/api/v1/namespaces/team/configmaps", json!({"metadata": {"name": "c"}})).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, ns) = a.call(Method::DELETE, "/api/v1/namespaces/team", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(ns["status"]["phase"], "Terminating", "{ns}");
    let (code, st) =
        a.call(Method::POST, "/api/v1/namespaces/team/configmaps", json!({"metadata": {"name": "d"}})).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        st["message"],
        "configmaps is forbidden: unable to create new content in namespace team because it is being terminated"
    );

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (ctx, _failed) = k3rs::controllers::Context::in_process(
        &a.api,
        Identity::new("system:kube-controller-manager", &[]),
        k3rs::controllers::runtime::Stop::new(move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        }),
        String::new(),
    );
    let ctl = tokio::spawn(k3rs::controllers::namespace::run(ctx));
    let start = std::time::Instant::now();
    loop {
        let (code, _) = a.call(Method::GET, "/api/v1/namespaces/team", Value::Null).await;
        if code == StatusCode::NOT_FOUND {
            break;
        }
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "namespace was not deleted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, cms) = a.call(Method::GET, "/api/v1/namespaces/team/configmaps", Value::Null).await;
    assert_eq!(cms["items"], json!([]));
    let _ = stop.send(true);
    ctl.await.unwrap();
}

#[tokio::test]
async fn pods_on_a_node_are_deleted_gracefully() {
    let a = api().await;
    let pod = |name: &str, node: Option<&str>| {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        if let Some(n) = node {
            p["spec"]["nodeName"] = json!(n);
        }
        p
    };
    // No controllers run here: the account pods default to is made by hand.
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
    let (code, _) = a.call(Method::POST, "/api/v1/namespaces/default/serviceaccounts", sa).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, created) = a.call(Method::POST, "/api/v1/namespaces/default/pods", pod("free", None)).await;
    assert_eq!(code, StatusCode::CREATED, "{created}");
    assert_eq!(created["spec"]["restartPolicy"], "Always");
    assert_eq!(created["spec"]["terminationGracePeriodSeconds"], 30);
    assert_eq!(created["status"]["phase"], "Pending");
    let (code, st) = a.call(Method::DELETE, "/api/v1/namespaces/default/pods/free", Value::Null).await;
    // An unscheduled pod goes at once; upstream's pod storage answers with the deleted pod.
    assert_eq!((code, st["kind"].as_str()), (StatusCode::OK, Some("Pod")), "{st}");
    assert!(st["metadata"]["deletionTimestamp"].is_null(), "{st}");

    let (code, _) = a.call(Method::POST, "/api/v1/namespaces/default/pods", pod("placed", Some("node-a"))).await;
    assert_eq!(code, StatusCode::CREATED);
    let (code, marked) = a.call(Method::DELETE, "/api/v1/namespaces/default/pods/placed", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(marked["kind"], "Pod");
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    // A status write during the grace period keeps it.
    let mut status = marked.clone();
    status["status"]["phase"] = json!("Running");
    let (code, _) = a.call(Method::PUT, "/api/v1/namespaces/default/pods/placed/status", status).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = a.call(Method::GET, "/api/v1/namespaces/default/pods/placed", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    // The kubelet's final delete (grace period 0) removes it.
    let (code, _) =
        a.call(Method::DELETE, "/api/v1/namespaces/default/pods/placed?gracePeriodSeconds=0", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = a.call(Method::GET, "/api/v1/namespaces/default/pods/placed", Value::Null).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_tokens_authenticate_until_the_account_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let pki = k3rs::pki::ensure(&k3rs::pki::PkiConfig {
        dir: dir.path().join("tls"),
        cluster_domain: "cluster.local".into(),
        node_name: "node".into(),
        node_ip: "192.0.2.10".parse().unwrap(),
        service_ip: "10.43.0.1".parse().unwrap(),
        tls_sans: Vec::new(),
        now: time::OffsetDateTime::now_utc(),
    })
    .unwrap();
    let tokens = Arc::new(pki.service_account_tokens().clone());
    let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap();
    let api = ApiServer::with_options(
        Arc::new(store),
        k3rs::apiserver::ApiOptions { tokens: Some(tokens.clone()), ..Default::default() },
    );
    api.bootstrap().await.unwrap();
    let a = Api { api, _dir: dir };
    let (code, sa) = a
        .call(Method::POST, "/api/v1/namespaces/default/serviceaccounts", json!({"metadata": {"name": "robot"}}))
        .await;
    assert_eq!(code, StatusCode::CREATED, "{sa}");
    let uid = sa["metadata"]["uid"].as_str().unwrap();
    let claims = tokens.bound_claims(
        "default",
        k3rs::pki::ObjectRef::new("robot", uid),
        time::OffsetDateTime::now_utc(),
        time::Duration::hours(1),
    );
    let token = tokens.issue(&claims).unwrap();
    let with_token = |t: &str| {
        Request::builder()
            .uri("/api/v1/namespaces/default/configmaps")
            .header("authorization", format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap()
    };
    let resp = a.api.router().oneshot(with_token(&token)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "an authenticated service account is not authorized yet");
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let st: Value = serde_json::from_slice(&body).unwrap();
    assert!(st["message"].as_str().unwrap().contains("User \"system:serviceaccount:default:robot\""), "{st}");
    let resp = a.api.router().oneshot(with_token("not.a.token")).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let (code, _) = a.call(Method::DELETE, "/api/v1/namespaces/default/serviceaccounts/robot", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    let resp = a.api.router().oneshot(with_token(&token)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "a token of a deleted account is refused");
}
