//! The review APIs and impersonation: the real kubectl (`auth whoami`, `auth can-i`,
//! `auth can-i --list`, `--as`) against the API server in process, served on loopback over
//! plain HTTP (kubectl sends no credentials over HTTP, so each port stands for one caller),
//! and the review objects' answers and validation called directly.

use crate::common;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use k3rs::apiserver::{ApiOptions, ApiServer, Identity};
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};
use tower::ServiceExt;

use common::kubectl_http::{admin, call, kubectl, serve_as, KubectlHttp, KubectlOutput};

struct Setup {
    http: KubectlHttp,
    alice: KubectlHttp,
    api: Arc<ApiServer>,
    tokens: Arc<k3rs::pki::ServiceAccountTokens>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
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
    let api =
        ApiServer::with_options(Arc::new(store), ApiOptions { tokens: Some(tokens.clone()), ..Default::default() });
    api.bootstrap().await.unwrap();
    // One port where every caller is the cluster admin, one where every caller is alice.
    let http = serve_as(&api, admin()).await;
    let alice = serve_as(&api, Identity::new("alice", &["dev", "system:authenticated"])).await;
    Setup { http, alice, api, tokens, _dir: dir }
}

impl Setup {
    /// Creates the service account `default/robot` and returns it.
    async fn robot(&self) -> Value {
        let url = "/api/v1/namespaces/default/serviceaccounts";
        let (code, sa) = self.call(admin(), Method::POST, url, json!({"metadata": {"name": "robot"}})).await;
        assert_eq!(code, StatusCode::CREATED, "{sa}");
        sa
    }

    async fn call(&self, who: Identity, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        call(&self.api, who, method, uri, body).await
    }
}

fn failed(out: &KubectlOutput) -> &str {
    assert!(!out.success, "expected a failure, got:\n{}", out.stdout);
    out.stderr.trim()
}

async fn kubectl_auth_flow(binary: &str) {
    let s = setup().await;
    let k = kubectl(binary);
    let run = |args: &'static [&'static str]| {
        let (s, k) = (&s, &k);
        async move { s.http.run(k, args).await }
    };
    let run_alice = |args: &'static [&'static str]| {
        let (s, k) = (&s, &k);
        async move { s.alice.run(k, args).await }
    };

    // whoami
    let out = s.http.kubectl(&k, &["auth", "whoami", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["apiVersion"].as_str(), v["kind"].as_str()),
        (Some("authentication.k8s.io/v1"), Some("SelfSubjectReview"))
    );
    assert_eq!(
        v["status"]["userInfo"],
        json!({"username": "system:admin", "groups": ["system:masters", "system:authenticated"]})
    );
    let out = s.http.kubectl(&k, &["auth", "whoami"]).await;
    assert!(
        out.contains("Username")
            && out.contains("system:admin")
            && out.contains("[system:masters system:authenticated]"),
        "{out}"
    );
    let out = s.http.kubectl(&k, &["--as=jane", "--as-group=qa", "auth", "whoami", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"]["userInfo"], json!({"username": "jane", "groups": ["qa", "system:authenticated"]}));

    // can-i
    assert_eq!(s.http.kubectl(&k, &["auth", "can-i", "create", "pods"]).await.trim(), "yes");
    let out = run_alice(&["auth", "can-i", "create", "pods"]).await;
    assert_eq!((out.success, out.stdout.trim()), (false, "no"));
    let out = run_alice(&["auth", "can-i", "create", "selfsubjectaccessreviews.authorization.k8s.io"]).await;
    assert_eq!((out.success, out.stdout.trim()), (true, "yes"));
    let out = run(&["--as=someone", "auth", "can-i", "delete", "nodes"]).await;
    assert_eq!((out.success, out.stdout.trim()), (false, "no"));
    assert_eq!(
        s.http
            .kubectl(&k, &["--as=someone", "--as-group=system:masters", "auth", "can-i", "delete", "nodes"])
            .await
            .trim(),
        "yes"
    );

    // can-i --list
    let rows = |out: &str| -> Vec<String> {
        out.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
    };
    let admin_rows = rows(&s.http.kubectl(&k, &["auth", "can-i", "--list"]).await);
    assert!(admin_rows.contains(&"*.* [] [] [*]".to_string()), "{admin_rows:?}");
    assert!(admin_rows.contains(&"[*] [] [*]".to_string()), "{admin_rows:?}");
    let alice_rows = rows(&s.alice.kubectl(&k, &["auth", "can-i", "--list"]).await);
    assert!(!alice_rows.iter().any(|r| r.starts_with("*.*")), "{alice_rows:?}");
    assert!(
        alice_rows.contains(&"selfsubjectaccessreviews.authorization.k8s.io [] [] [create]".to_string()),
        "{alice_rows:?}"
    );
    assert!(alice_rows.contains(&"[/apis/*] [] [get]".to_string()), "{alice_rows:?}");

    // Acting as someone else.
    let out = run(&["--as=someone", "get", "pods"]).await;
    assert_eq!(
        failed(&out),
        r#"Error from server (Forbidden): pods is forbidden: User "someone" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    let out = run_alice(&["--as=bob", "get", "pods"]).await;
    assert_eq!(
        failed(&out),
        r#"Error from server (Forbidden): users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#
    );
    let out = run(&["--as=system:serviceaccount:kube-system:robot", "get", "configmaps", "-n", "kube-system"]).await;
    assert!(failed(&out).ends_with(r#"User "system:serviceaccount:kube-system:robot" cannot list resource "configmaps" in API group "" in the namespace "kube-system""#), "{}", out.stderr);
    assert!(s.http.kubectl(&k, &["--as=jane", "--as-group=system:masters", "get", "pods"]).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_33_whoami_can_i_and_impersonation() {
    kubectl_auth_flow("kubectl.1.33").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_28_whoami_can_i_and_impersonation() {
    // `auth whoami` left alpha in 1.28 (and uses v1 from 1.28 on when the server serves it).
    kubectl_auth_flow("kubectl.1.28").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_access_reviews_answer_for_the_named_subject() {
    let s = setup().await;
    let sar =
        |spec: Value| json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec});
    let pods = json!({"namespace": "default", "verb": "create", "resource": "pods"});
    let (code, v) = s
        .call(
            admin(),
            Method::POST,
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            sar(json!({"user": "alice", "resourceAttributes": pods})),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"]["allowed"], false);
    assert_eq!(v["spec"]["user"], "alice");
    assert!(v["metadata"]["creationTimestamp"].is_null());
    let (_, v) = s
        .call(
            admin(),
            Method::POST,
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            sar(json!({"user": "x", "groups": ["system:masters"], "resourceAttributes": pods})),
        )
        .await;
    assert_eq!(v["status"]["allowed"], true);
    let (_, v) = s
        .call(admin(), Method::POST, "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar(json!({"user": "x", "groups": ["system:authenticated"], "nonResourceAttributes": {"path": "/version", "verb": "get"}})))
        .await;
    assert_eq!(v["status"]["allowed"], true);

    // Validation as upstream words it.
    let (code, v) = s
        .call(
            admin(),
            Method::POST,
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            sar(json!({"resourceAttributes": pods})),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        v["message"],
        r#"SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": at least one of user or group must be specified"#
    );
    let (_, v) = s
        .call(admin(), Method::POST, "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar(json!({"user": "a"})))
        .await;
    assert_eq!(
        v["details"]["causes"][0],
        json!({"reason": "FieldValueRequired", "field": "spec.resourceAttributes", "message": "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified"})
    );

    // Plain users may not ask about others; they may about themselves.
    let alice = Identity::new("alice", &["system:authenticated"]);
    let (code, v) = s
        .call(
            alice.clone(),
            Method::POST,
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            sar(json!({"user": "alice", "resourceAttributes": pods})),
        )
        .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{v}");
    let ssar = json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "spec": {"user": "system:admin", "groups": ["system:masters"], "resourceAttributes": pods}});
    let (code, v) =
        s.call(alice.clone(), Method::POST, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", ssar).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"]["allowed"], false, "a self review is about the caller, whatever the spec says");

    // The namespaced one must name its own namespace.
    let lsar = |ns: &str| json!({"kind": "LocalSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "spec": {"user": "x", "groups": ["system:masters"], "resourceAttributes": {"namespace": ns, "verb": "get", "resource": "pods"}}});
    let (code, v) = s
        .call(
            admin(),
            Method::POST,
            "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews",
            lsar("default"),
        )
        .await;
    assert_eq!(
        (code, &v["status"]["allowed"], &v["metadata"]["namespace"]),
        (StatusCode::CREATED, &json!(true), &json!("default")),
        "{v}"
    );
    let (code, v) = s
        .call(
            admin(),
            Method::POST,
            "/apis/authorization.k8s.io/v1/namespaces/default/localsubjectaccessreviews",
            lsar("other"),
        )
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["details"]["causes"][0]["field"], "spec.resourceAttributes.namespace");

    // Create only.
    let (code, _) =
        s.call(admin(), Method::GET, "/apis/authorization.k8s.io/v1/subjectaccessreviews", Value::Null).await;
    assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reviews_use_the_real_authenticator() {
    let s = setup().await;
    let sa = s.robot().await;
    let uid = sa["metadata"]["uid"].as_str().unwrap();
    let claims = s.tokens.bound_claims(
        "default",
        k3rs::pki::ObjectRef::new("robot", uid),
        time::OffsetDateTime::now_utc(),
        time::Duration::hours(1),
    );
    let token = s.tokens.issue(&claims).unwrap();
    let review = |token: &str, audiences: Value| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": audiences}});
    let (code, v) =
        s.call(admin(), Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews", review(&token, json!([]))).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"]["authenticated"], true);
    assert_eq!(v["status"]["user"]["username"], "system:serviceaccount:default:robot");
    assert_eq!(v["status"]["user"]["uid"], uid);
    assert_eq!(
        v["status"]["user"]["groups"],
        json!(["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"])
    );
    assert_eq!(v["status"]["audiences"], json!(s.tokens.audiences()));
    let (_, v) = s
        .call(admin(), Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews", review(&token, json!(["vault"])))
        .await;
    assert_eq!(v["status"]["authenticated"], Value::Null, "{v}");
    assert!(v["status"]["error"].as_str().unwrap().contains("invalid for the target audiences"), "{v}");
    let (_, v) = s
        .call(admin(), Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews", review("garbage", json!([])))
        .await;
    assert!(v["status"]["error"].as_str().is_some_and(|e| e.contains("invalid bearer token")), "{v}");
    let (code, v) =
        s.call(admin(), Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews", review("", json!([]))).await;
    assert_eq!(
        (code, v["message"].as_str()),
        (StatusCode::BAD_REQUEST, Some("token is required for TokenReview in authentication"))
    );

    // The token's own SelfSubjectReview.
    let req = Request::builder()
        .method(Method::POST)
        .uri("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#))
        .unwrap();
    let resp = s.api.router().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let v: Value = serde_json::from_slice(&axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(v["status"]["userInfo"]["username"], "system:serviceaccount:default:robot");
    assert_eq!(v["status"]["userInfo"]["uid"], uid);
}

/// `kubectl create token` through the TokenRequest subresource: tokens that authenticate as
/// the account, with the asked audiences and lifetime, bound to a pod they die with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_token_issues_bound_tokens() {
    let s = setup().await;
    let k = kubectl("kubectl");
    let sa = s.robot().await;
    let (code, pod) = s
        .call(
            admin(),
            Method::POST,
            "/api/v1/namespaces/default/pods",
            json!({"metadata": {"name": "p"}, "spec": {"serviceAccountName": "robot", "containers": [{"name": "c", "image": "busybox:1.36"}]}}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{pod}");
    let review = |token: String, audiences: Value| {
        let s = &s;
        async move {
            let body = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token, "audiences": audiences}});
            s.call(admin(), Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews", body).await.1
        }
    };

    // The default: the server's audiences, an hour.
    let token = s.http.kubectl(&k, &["create", "token", "robot"]).await.trim().to_string();
    let v = review(token.clone(), json!([])).await;
    assert_eq!(v["status"]["user"]["username"], "system:serviceaccount:default:robot", "{v}");
    assert_eq!(v["status"]["user"]["uid"], sa["metadata"]["uid"]);
    let claims = s.tokens.verify(&token).unwrap();
    assert_eq!(claims.exp.unwrap() - claims.iat.unwrap(), 3600);
    assert!(claims.jti.is_some());

    // Another audience and lifetime.
    let token = s.http.kubectl(&k, &["create", "token", "robot", "--audience", "vault", "--duration", "20m"]).await;
    let token = token.trim().to_string();
    let claims = s.tokens.verify(&token);
    assert!(claims.is_err(), "the token is not for the API server's audiences");
    let v = review(token.clone(), json!(["vault"])).await;
    assert_eq!(v["status"]["authenticated"], true, "{v}");
    assert_eq!(v["status"]["audiences"], json!(["vault"]));

    // Bound to the pod: it names the pod and stops working once the pod is gone.
    let args = ["create", "token", "robot", "--bound-object-kind", "Pod", "--bound-object-name", "p"];
    let token = s.http.kubectl(&k, &args).await.trim().to_string();
    let v = review(token.clone(), json!([])).await;
    assert_eq!(v["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"], json!(["p"]), "{v}");
    assert_eq!(v["status"]["user"]["extra"]["authentication.kubernetes.io/pod-uid"], json!([pod["metadata"]["uid"]]));
    let (code, _) = s.call(admin(), Method::DELETE, "/api/v1/namespaces/default/pods/p", Value::Null).await;
    assert_eq!(code, StatusCode::OK);
    let v = review(token, json!([])).await;
    assert_ne!(v["status"]["authenticated"], true, "{v}");

    // Errors in upstream's words.
    let out = s.http.run(&k, &["create", "token", "ghost"]).await;
    assert_eq!(failed(&out), r#"error: failed to create token: serviceaccounts "ghost" not found"#);
    let url = "/api/v1/namespaces/default/serviceaccounts/robot/token";
    let (code, v) = s.call(admin(), Method::POST, url, json!({"spec": {"expirationSeconds": 60}})).await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["message"], "TokenRequest.authentication.k8s.io \"robot\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes");
    let bound = json!({"spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "nope"}}});
    let (code, v) = s.call(admin(), Method::POST, url, bound).await;
    assert_eq!((code, v["message"].as_str()), (StatusCode::NOT_FOUND, Some(r#"secrets "nope" not found"#)));
    let (_, robot) =
        s.call(admin(), Method::GET, "/api/v1/namespaces/default/serviceaccounts/robot", Value::Null).await;
    let (code, _) =
        s.call(admin(), Method::POST, "/api/v1/namespaces/default/secrets", json!({"metadata": {"name": "s"}})).await;
    assert_eq!(code, StatusCode::CREATED);
    let bound = json!({"spec": {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "s", "uid": robot["metadata"]["uid"]}}});
    let (code, v) = s.call(admin(), Method::POST, url, bound).await;
    assert_eq!(code, StatusCode::CONFLICT, "{v}");
    assert!(v["message"].as_str().unwrap().contains("does not match the UID in record"), "{v}");
}
