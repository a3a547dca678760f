//! PodSecurity admission through the whole handler stack, then with the real kubectl: a
//! namespace's enforce label refuses violating pods with upstream's 403, its warn label
//! adds upstream's `Warning` headers for pods and pod templates, raising its enforce level
//! warns about the pods already there, unreadable labels are refused, and pods that
//! controllers create are judged like anyone's.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use k3rs::apiserver::{ApiOptions, ApiServer};
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::common::kubectl_http::{admin, kubectl, serve_as, KubectlHttp};

struct Setup {
    api: Arc<ApiServer>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).expect("store");
    let api = ApiServer::with_options(Arc::new(store), ApiOptions::default());
    api.bootstrap().await.expect("bootstrap");
    Setup { api, _dir: dir }
}

/// What one request answered.
struct Answer {
    code: StatusCode,
    warnings: Vec<String>,
    body: Value,
}

impl Setup {
    /// One request as the cluster admin (JSON, or a merge patch for PATCH).
    async fn send(&self, method: Method, uri: &str, body: Value) -> Answer {
        let content_type = if method == Method::PATCH { "application/merge-patch+json" } else { "application/json" };
        self.send_typed(method, uri, content_type, body).await
    }

    async fn send_typed(&self, method: Method, uri: &str, content_type: &str, body: Value) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", content_type)
            .body(Body::from(serde_json::to_vec(&body).expect("JSON")))
            .expect("a request");
        req.extensions_mut().insert(admin());
        let resp = self.api.router().oneshot(req).await.expect("the router answers");
        let code = resp.status();
        let warnings = resp
            .headers()
            .get_all("warning")
            .iter()
            .map(|v| {
                let v = v.to_str().expect("an ASCII header");
                let text = v.strip_prefix("299 - \"").and_then(|t| t.strip_suffix('"'));
                text.unwrap_or_else(|| panic!("not a 299 warning: {v}")).replace("\\\"", "\"")
            })
            .collect();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("the body");
        Answer { code, warnings, body: serde_json::from_slice(&bytes).unwrap_or(Value::Null) }
    }

    /// A namespace with `labels` and the `default` ServiceAccount its pods need.
    async fn namespace(&self, name: &str, labels: Value) {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}});
        let a = self.send(Method::POST, "/api/v1/namespaces", ns).await;
        assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
        let a = self.send(Method::POST, &format!("/api/v1/namespaces/{name}/serviceaccounts"), sa).await;
        assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
    }

    async fn create_pod(&self, ns: &str, pod: Value) -> Answer {
        self.send(Method::POST, &format!("/api/v1/namespaces/{ns}/pods"), pod).await
    }
}

/// A pod with one container `c` and that container's securityContext.
fn pod(name: &str, security: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": security}]}})
}

fn restricted_security() -> Value {
    json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true,
           "seccompProfile": {"type": "RuntimeDefault"}})
}

/// What restricted says of a pod whose one container `c` sets nothing.
fn restricted_violations(c: &str) -> String {
    format!(
        "allowPrivilegeEscalation != false (container \"{c}\" must set securityContext.allowPrivilegeEscalation=false), \
         unrestricted capabilities (container \"{c}\" must set securityContext.capabilities.drop=[\"ALL\"]), \
         runAsNonRoot != true (pod or container \"{c}\" must set securityContext.runAsNonRoot=true), \
         seccompProfile (pod or container \"{c}\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" \
         or \"Localhost\")"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_refuses_violating_pods_with_upstreams_403() {
    let s = setup().await;
    s.namespace("locked", json!({"pod-security.kubernetes.io/enforce": "restricted"})).await;

    let a = s.create_pod("locked", pod("bare", json!({}))).await;
    assert_eq!(a.code, StatusCode::FORBIDDEN);
    assert_eq!(a.body["kind"], "Status");
    assert_eq!(a.body["reason"], "Forbidden");
    assert_eq!(a.body["code"], 403);
    assert_eq!(
        a.body["message"],
        format!(
            "pods \"bare\" is forbidden: violates PodSecurity \"restricted:latest\": {}",
            restricted_violations("c")
        )
    );
    assert_eq!(a.body["details"], json!({"name": "bare", "kind": "pods"}));
    assert!(a.warnings.is_empty(), "no warnings on a refused write: {:?}", a.warnings);

    // A generated name is the one the error names.
    let mut generated = pod("", json!({}));
    generated["metadata"] = json!({"generateName": "gen-"});
    let a = s.create_pod("locked", generated).await;
    assert_eq!(a.code, StatusCode::FORBIDDEN);
    let message = a.body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("pods \"gen-") && message.contains("\" is forbidden: violates PodSecurity"),
        "{message}"
    );

    // A dry run is judged too.
    let a = s.send(Method::POST, "/api/v1/namespaces/locked/pods?dryRun=All", pod("dry", json!({}))).await;
    assert_eq!(a.code, StatusCode::FORBIDDEN);

    let a = s.create_pod("locked", pod("good", restricted_security())).await;
    assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);

    // A pinned version is named as labelled; versions newer than the server's are judged
    // by its newest checks.
    s.namespace(
        "pinned",
        json!({"pod-security.kubernetes.io/enforce": "baseline",
                                 "pod-security.kubernetes.io/enforce-version": "v1.40"}),
    )
    .await;
    let a = s.create_pod("pinned", pod("priv", json!({"privileged": true}))).await;
    assert_eq!(a.code, StatusCode::FORBIDDEN);
    assert_eq!(
        a.body["message"],
        "pods \"priv\" is forbidden: violates PodSecurity \"baseline:v1.40\": privileged (container \"c\" must not set \
         securityContext.privileged=true)"
    );

    // Unlabelled namespaces (kube-system too) are privileged.
    for ns in ["default", "kube-system"] {
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
        s.send(Method::POST, &format!("/api/v1/namespaces/{ns}/serviceaccounts"), sa).await;
        let a = s.create_pod(ns, pod("anything", json!({"privileged": true}))).await;
        assert_eq!(a.code, StatusCode::CREATED, "{ns}: {}", a.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_labels_warn_on_pods_and_pod_templates() {
    let s = setup().await;
    s.namespace("watched", json!({"pod-security.kubernetes.io/warn": "baseline"})).await;

    let a = s.create_pod("watched", pod("priv", json!({"privileged": true}))).await;
    assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
    assert_eq!(
        a.warnings,
        ["would violate PodSecurity \"baseline:latest\": privileged (container \"c\" must not set securityContext.privileged=true)"]
    );
    let a = s.create_pod("watched", pod("plain", json!({}))).await;
    assert_eq!(a.code, StatusCode::CREATED);
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);

    // Workloads are warned about their pod template, never refused.
    let template = json!({"metadata": {"labels": {"app": "web"}},
                          "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "busybox"}]}});
    let expected = "would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)";
    let workloads = [
        (
            "/apis/apps/v1/namespaces/watched/deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template}}),
        ),
        (
            "/apis/batch/v1/namespaces/watched/cronjobs",
            json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly"},
                "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": {
                    "spec": {"hostNetwork": true, "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}}),
        ),
        (
            "/api/v1/namespaces/watched/podtemplates",
            json!({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": template}),
        ),
    ];
    for (uri, obj) in workloads {
        let a = s.send(Method::POST, uri, obj).await;
        assert_eq!(a.code, StatusCode::CREATED, "{uri}: {}", a.body);
        assert_eq!(a.warnings, [expected], "{uri}");
    }
    // Updating the template warns again; scaling (a subresource) does not.
    let a = s
        .send(Method::PATCH, "/apis/apps/v1/namespaces/watched/deployments/web", json!({"spec": {"replicas": 2}}))
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(a.warnings, [expected]);

    // enforce=restricted warns workloads at restricted too (warn follows enforce).
    s.namespace("locked", json!({"pod-security.kubernetes.io/enforce": "restricted"})).await;
    let a = s
        .send(
            Method::POST,
            "/apis/apps/v1/namespaces/locked/deployments",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                     "spec": {"selector": {"matchLabels": {"app": "web"}},
                              "template": {"metadata": {"labels": {"app": "web"}},
                                           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
        )
        .await;
    assert_eq!(a.code, StatusCode::CREATED, "{}", a.body);
    assert_eq!(
        a.warnings,
        [format!("would violate PodSecurity \"restricted:latest\": {}", restricted_violations("c"))]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_labels_are_checked_and_raising_enforce_warns_about_existing_pods() {
    let s = setup().await;
    // Unreadable labels are refused on create.
    let bad = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bad", "labels": {
        "pod-security.kubernetes.io/enforce": "strict", "pod-security.kubernetes.io/warn-version": "1.30"}}});
    let a = s.send(Method::POST, "/api/v1/namespaces", bad).await;
    assert_eq!(a.code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(a.body["reason"], "Invalid");
    assert_eq!(
        a.body["message"],
        "Namespace \"bad\" is invalid: [metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\": \
         must be one of privileged, baseline, restricted, metadata.labels[pod-security.kubernetes.io/warn-version]: \
         Invalid value: \"1.30\": must be \"latest\" or \"v1.x\"]"
    );

    s.namespace("team", json!({})).await;
    for (name, security) in [
        ("web-1", json!({"privileged": true})),
        ("web-2", json!({"privileged": true})),
        ("api", json!({"runAsUser": 0})),
        ("good", restricted_security()),
    ] {
        assert_eq!(s.create_pod("team", pod(name, security)).await.code, StatusCode::CREATED);
    }
    let label = |labels: Value| json!({"metadata": {"labels": labels}});
    let a = s
        .send(
            Method::PATCH,
            "/api/v1/namespaces/team",
            label(json!({"pod-security.kubernetes.io/enforce": "baseline"})),
        )
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.warnings,
        [
            "existing pods in namespace \"team\" violate the new PodSecurity enforce level \"baseline:latest\"",
            "web-1 (and 1 other pod): privileged",
        ]
    );
    let a = s
        .send(
            Method::PATCH,
            "/api/v1/namespaces/team",
            label(json!({"pod-security.kubernetes.io/enforce": "restricted"})),
        )
        .await;
    assert_eq!(
        a.warnings,
        [
            "existing pods in namespace \"team\" violate the new PodSecurity enforce level \"restricted:latest\"",
            "api: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, runAsUser=0, \
             seccompProfile",
            "web-1 (and 1 other pod): privileged, allowPrivilegeEscalation != false, unrestricted capabilities, \
             runAsNonRoot != true, seccompProfile",
        ]
    );
    // Relaxing, or an unchanged enforce level, checks nothing.
    let a = s
        .send(
            Method::PATCH,
            "/api/v1/namespaces/team",
            label(json!({"pod-security.kubernetes.io/enforce": "baseline"})),
        )
        .await;
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    let a = s.send(Method::PATCH, "/api/v1/namespaces/team", label(json!({"team": "a"}))).await;
    assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    // Changing to an unreadable level is refused.
    let a = s
        .send(Method::PATCH, "/api/v1/namespaces/team", label(json!({"pod-security.kubernetes.io/enforce": "nope"})))
        .await;
    assert_eq!(a.code, StatusCode::UNPROCESSABLE_ENTITY);

    // Pods already there may still be updated where nothing judged changes (labels, status)...
    let a = s.send(Method::PATCH, "/api/v1/namespaces/team/pods/web-1", label(json!({"tier": "front"}))).await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    let a = s
        .send(Method::PATCH, "/api/v1/namespaces/team/pods/web-1/status", json!({"status": {"phase": "Running"}}))
        .await;
    assert_eq!(a.code, StatusCode::OK, "{}", a.body);
    // ...but a new image is judged again.
    let a = s
        .send_typed(
            Method::PATCH,
            "/api/v1/namespaces/team/pods/web-1",
            "application/strategic-merge-patch+json",
            json!({"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}),
        )
        .await;
    assert_eq!(a.code, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(
        a.body["message"],
        "pods \"web-1\" is forbidden: violates PodSecurity \"baseline:latest\": privileged (container \"c\" must not set \
         securityContext.privileged=true)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_created_pods_are_enforced() {
    use k8s_openapi::api::core::v1::{Event, Namespace};
    use kube::api::{Api, ListParams, Patch, PatchParams};

    let c = crate::controllers::cluster().await;
    crate::controllers::make_namespace(&c, "locked").await;
    let nss: Api<Namespace> = Api::all(c.client.clone());
    let labels = json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}});
    nss.patch("locked", &PatchParams::default(), &Patch::Merge(labels)).await.expect("label the namespace");
    let deployments: Api<k8s_openapi::api::apps::v1::Deployment> = Api::namespaced(c.client.clone(), "locked");
    let deployment = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    deployments
        .create(&Default::default(), &serde_json::from_value(deployment).expect("a Deployment"))
        .await
        .expect("the Deployment is created (with a warning)");
    let events: Api<Event> = Api::namespaced(c.client.clone(), "locked");
    let message = crate::controllers::within(Duration::from_secs(20), "a FailedCreate event", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| e.reason.as_deref() == Some("FailedCreate")).and_then(|e| e.message)
    })
    .await;
    let expected =
        format!("\" is forbidden: violates PodSecurity \"restricted:latest\": {}", restricted_violations("c"));
    assert!(message.starts_with("Error creating: pods \"web-") && message.ends_with(&expected), "{message}");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(c.client.clone(), "locked");
    assert!(pods.list(&ListParams::default()).await.expect("pods").items.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_prints_upstreams_warnings_and_errors() {
    let s = setup().await;
    let http: KubectlHttp = serve_as(&s.api, admin()).await;
    let k = kubectl("kubectl.1.32");
    http.kubectl(&k, &["create", "namespace", "team"]).await;
    http.kubectl(&k, &["create", "serviceaccount", "default", "-n", "team"]).await;
    http.kubectl(&k, &["label", "namespace", "team", "pod-security.kubernetes.io/warn=restricted"]).await;

    let out = http.run(&k, &["run", "web", "-n", "team", "--image=busybox", "--restart=Never"]).await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.stdout, "pod/web created\n");
    assert_eq!(
        out.stderr,
        format!("Warning: would violate PodSecurity \"restricted:latest\": {}\n", restricted_violations("web"))
    );

    let out = http.run(&k, &["create", "deployment", "api", "-n", "team", "--image=busybox"]).await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.stdout, "deployment.apps/api created\n");
    assert_eq!(
        out.stderr,
        format!("Warning: would violate PodSecurity \"restricted:latest\": {}\n", restricted_violations("busybox"))
    );

    let out = http
        .run(&k, &["label", "--overwrite", "namespace", "team", "pod-security.kubernetes.io/enforce=baseline"])
        .await;
    assert!(out.success, "{}", out.stderr);
    assert!(out.stderr.is_empty(), "web passes baseline: {}", out.stderr);
    let out = http
        .run(&k, &["label", "--overwrite", "namespace", "team", "pod-security.kubernetes.io/enforce=restricted"])
        .await;
    assert!(out.success, "{}", out.stderr);
    assert_eq!(out.stdout, "namespace/team labeled\n");
    assert_eq!(
        out.stderr,
        "Warning: existing pods in namespace \"team\" violate the new PodSecurity enforce level \"restricted:latest\"\n\
         Warning: web: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile\n"
    );

    let out = http.run(&k, &["run", "web2", "-n", "team", "--image=busybox", "--restart=Never"]).await;
    assert!(!out.success);
    assert_eq!(
        out.stderr,
        format!(
            "Error from server (Forbidden): pods \"web2\" is forbidden: violates PodSecurity \"restricted:latest\": \
             {}\n",
            restricted_violations("web2")
        )
    );

    let out =
        http.run(&k, &["label", "--overwrite", "namespace", "team", "pod-security.kubernetes.io/audit=loud"]).await;
    assert!(!out.success);
    assert_eq!(
        out.stderr,
        "The Namespace \"team\" is invalid: metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: \"loud\": \
         must be one of privileged, baseline, restricted\n"
    );
}
