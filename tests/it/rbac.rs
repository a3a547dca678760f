//! RBAC: the real kubectl against the API server in process, with the bootstrap policy and
//! the ClusterRole aggregation controller running: service accounts hold nothing until
//! bound, users bound to view, edit and admin get what those roles give, escalation is
//! refused with upstream's words, and the bootstrap policy is put back at start.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use k3rs::apiserver::{ApiOptions, ApiServer, Identity};
use k3rs::controllers::runtime::{Context, Stop};
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use serde_json::{json, Value};

use common::kubectl_http::{admin, call, kubectl, serve_as, KubectlHttp, KubectlOutput};

struct Setup {
    http: KubectlHttp,
    api: Arc<ApiServer>,
    store: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap());
    let api = ApiServer::with_options(store.clone(), ApiOptions::default());
    api.bootstrap().await.unwrap();
    // The controller ends with the test's runtime.
    let stop = Stop::never();
    let identity = Identity::new("system:kube-controller-manager", &["system:authenticated"]);
    let (ctx, _failed) = Context::in_process(&api, identity, stop, String::new());
    tokio::spawn(k3rs::controllers::clusterroleaggregation::run(ctx));
    let http = serve_as(&api, admin()).await;
    let s = Setup { http, api, store, _dir: dir };
    // The aggregated roles are filled in by the controller.
    for _ in 0..100 {
        let (_, v) =
            s.call(admin(), Method::GET, "/apis/rbac.authorization.k8s.io/v1/clusterroles/view", Value::Null).await;
        if v["rules"].as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s
}

impl Setup {
    async fn call(&self, who: Identity, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        call(&self.api, who, method, uri, body).await
    }

    async fn k(&self, args: &[&str]) -> KubectlOutput {
        self.http.run(&kubectl("kubectl.1.32"), args).await
    }

    async fn ok(&self, args: &[&str]) -> String {
        self.http.kubectl(&kubectl("kubectl.1.32"), args).await
    }
}

/// kubectl's `auth can-i --list` rows, with runs of spaces made one.
fn rows(out: &str) -> Vec<String> {
    out.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

const SA: &str = "--as=system:serviceaccount:team:default";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_accounts_hold_nothing_until_bound() {
    let s = setup().await;
    s.ok(&["create", "namespace", "team"]).await;

    let listed = rows(&s.ok(&[SA, "auth", "can-i", "--list", "-n", "team"]).await);
    let want = [
        "selfsubjectreviews.authentication.k8s.io [] [] [create]",
        "selfsubjectaccessreviews.authorization.k8s.io [] [] [create]",
        "selfsubjectrulesreviews.authorization.k8s.io [] [] [create]",
        "[/.well-known/openid-configuration] [] [get]",
        "[/api/*] [] [get]",
        "[/healthz] [] [get]",
        "[/openid/v1/jwks] [] [get]",
        "[/version] [] [get]",
    ];
    for w in want {
        assert!(listed.contains(&w.to_string()), "missing {w:?} in {listed:#?}");
    }
    assert!(!listed.iter().any(|r| r.starts_with("pods") || r.starts_with("*.*")), "{listed:#?}");

    let out = s.k(&[SA, "get", "pods", "-n", "team"]).await;
    assert!(!out.success);
    assert_eq!(
        out.stderr.trim(),
        r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:team:default" cannot list resource "pods" in API group "" in the namespace "team""#
    );

    // Bound to view in its namespace (no namespace on the subject: the binding's own).
    s.ok(&["create", "rolebinding", "sa-view", "--clusterrole=view", "--serviceaccount=team:default", "-n", "team"])
        .await;
    assert_eq!(s.ok(&[SA, "get", "pods", "-n", "team", "-o", "name"]).await, "");
    assert_eq!(s.k(&[SA, "auth", "can-i", "list", "pods", "-n", "team"]).await.stdout.trim(), "yes");
    assert_eq!(s.k(&[SA, "auth", "can-i", "list", "pods", "-n", "default"]).await.stdout.trim(), "no");
    assert_eq!(s.k(&[SA, "auth", "can-i", "create", "pods", "-n", "team"]).await.stdout.trim(), "no");
    assert_eq!(
        s.k(&[SA, "auth", "can-i", "get", "secrets", "-n", "team"]).await.stdout.trim(),
        "no",
        "view hides secrets"
    );

    // Unbound again: denied at once.
    s.ok(&["delete", "rolebinding", "sa-view", "-n", "team"]).await;
    assert_eq!(s.k(&[SA, "auth", "can-i", "list", "pods", "-n", "team"]).await.stdout.trim(), "no");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_edit_and_admin_give_what_upstream_gives() {
    let s = setup().await;
    s.ok(&["create", "namespace", "team"]).await;
    for role in ["view", "edit", "admin"] {
        s.ok(&[
            "create",
            "rolebinding",
            role,
            &format!("--clusterrole={role}"),
            &format!("--user={role}-user"),
            "-n",
            "team",
        ])
        .await;
    }
    // (verb, resource, view, edit, admin)
    let table = [
        ("get", "pods", "yes", "yes", "yes"),
        ("create", "pods", "no", "yes", "yes"),
        ("create", "pods/exec", "no", "yes", "yes"),
        ("get", "pods/log", "yes", "yes", "yes"),
        ("get", "secrets", "no", "yes", "yes"),
        ("create", "deployments.apps", "no", "yes", "yes"),
        ("patch", "deployments.apps/scale", "no", "yes", "yes"),
        ("list", "endpointslices.discovery.k8s.io", "yes", "yes", "yes"),
        ("create", "leases.coordination.k8s.io", "no", "yes", "yes"),
        ("create", "rolebindings.rbac.authorization.k8s.io", "no", "no", "yes"),
        ("create", "localsubjectaccessreviews.authorization.k8s.io", "no", "no", "yes"),
        ("update", "resourcequotas", "no", "no", "no"),
        ("list", "nodes", "no", "no", "no"),
    ];
    for (verb, resource, view, edit, admin_) in table {
        for (user, want) in [("view-user", view), ("edit-user", edit), ("admin-user", admin_)] {
            let got = s.k(&[&format!("--as={user}"), "auth", "can-i", verb, resource, "-n", "team"]).await;
            assert_eq!(got.stdout.trim(), want, "{user} {verb} {resource}: {}", got.stderr);
        }
    }
    // Nothing outside the namespace.
    assert_eq!(s.k(&["--as=admin-user", "auth", "can-i", "get", "pods", "-n", "default"]).await.stdout.trim(), "no");

    let listed = rows(&s.ok(&["--as=view-user", "auth", "can-i", "--list", "-n", "team"]).await);
    assert!(listed.contains(&"pods [] [] [get list watch]".to_string()), "{listed:#?}");
    assert!(!listed.iter().any(|r| r.starts_with("secrets")), "{listed:#?}");

    // The reason a review gives names the binding.
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "edit-user", "resourceAttributes": {"namespace": "team", "verb": "create", "resource": "pods"}}});
    let (code, v) = s.call(admin(), Method::POST, "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    assert_eq!(v["status"]["allowed"], true);
    assert_eq!(
        v["status"]["reason"],
        r#"RBAC: allowed by RoleBinding "edit/team" of ClusterRole "edit" to User "edit-user""#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregation_gives_custom_rules_to_the_user_facing_roles() {
    let s = setup().await;
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "widgets-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list"]}]});
    let (code, v) = s.call(admin(), Method::POST, "/apis/rbac.authorization.k8s.io/v1/clusterroles", role).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    let mut found = false;
    for _ in 0..100 {
        let (_, view) =
            s.call(admin(), Method::GET, "/apis/rbac.authorization.k8s.io/v1/clusterroles/view", Value::Null).await;
        let (_, edit) =
            s.call(admin(), Method::GET, "/apis/rbac.authorization.k8s.io/v1/clusterroles/edit", Value::Null).await;
        let has = |r: &Value| r["rules"].as_array().unwrap().iter().any(|x| x["resources"] == json!(["widgets"]));
        if has(&view) && has(&edit) {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(found, "view (and edit, which aggregates view) gained the widgets rule");
    s.ok(&["create", "clusterrolebinding", "v", "--clusterrole=view", "--user=viewer"]).await;
    let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": "viewer", "resourceAttributes": {"namespace": "default", "verb": "list", "group": "example.com", "resource": "widgets"}}});
    let (code, v) = s.call(admin(), Method::POST, "/apis/authorization.k8s.io/v1/subjectaccessreviews", sar).await;
    assert_eq!((code, &v["status"]["allowed"]), (StatusCode::CREATED, &json!(true)), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_is_refused_unless_held_or_granted_escalate_and_bind() {
    let s = setup().await;
    s.ok(&["create", "namespace", "team"]).await;
    s.ok(&["create", "rolebinding", "a", "--clusterrole=admin", "--user=alice", "-n", "team"]).await;

    // A role with rules alice holds: fine.
    s.ok(&["--as=alice", "create", "role", "pod-reader", "--verb=get,list", "--resource=pods", "-n", "team"]).await;
    // One with rules she lacks: refused, naming them.
    let out =
        s.k(&["--as=alice", "create", "role", "node-reader", "--verb=list", "--resource=nodes", "-n", "team"]).await;
    assert!(!out.success);
    assert_eq!(
        out.stderr.trim(),
        "Error from server (Forbidden): roles.rbac.authorization.k8s.io \"node-reader\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"nodes\"], Verbs:[\"list\"]}"
    );
    // Binding a role she holds: fine. Binding cluster-admin: refused.
    s.ok(&["--as=alice", "create", "rolebinding", "b", "--role=pod-reader", "--user=bob", "-n", "team"]).await;
    let out = s
        .k(&["--as=alice", "create", "rolebinding", "c", "--clusterrole=cluster-admin", "--user=bob", "-n", "team"])
        .await;
    assert!(!out.success);
    assert!(
        out.stderr.contains("rolebindings.rbac.authorization.k8s.io \"c\" is forbidden: user \"alice\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:"),
        "{}",
        out.stderr
    );
    // With `bind` on cluster-admin she may bind it (without holding it).
    let binder = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "bind-admin"},
        "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["cluster-admin"]}]});
    let (code, v) = s.call(admin(), Method::POST, "/apis/rbac.authorization.k8s.io/v1/clusterroles", binder).await;
    assert_eq!(code, StatusCode::CREATED, "{v}");
    s.ok(&["create", "clusterrolebinding", "alice-binds", "--clusterrole=bind-admin", "--user=alice"]).await;
    s.ok(&["--as=alice", "create", "rolebinding", "c", "--clusterrole=cluster-admin", "--user=bob", "-n", "team"])
        .await;
    // With `escalate` on roles she may write any rule.
    let escalator = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "escalate-roles"},
        "rules": [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]}]});
    let (code, _) = s.call(admin(), Method::POST, "/apis/rbac.authorization.k8s.io/v1/clusterroles", escalator).await;
    assert_eq!(code, StatusCode::CREATED);
    s.ok(&["create", "clusterrolebinding", "alice-escalates", "--clusterrole=escalate-roles", "--user=alice"]).await;
    s.ok(&["--as=alice", "create", "role", "node-reader", "--verb=list", "--resource=nodes", "-n", "team"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_binding_to_a_missing_role_says_so_and_denies() {
    let s = setup().await;
    s.ok(&["create", "rolebinding", "dangling", "--role=nope", "--user=carol"]).await;
    let out = s.k(&["--as=carol", "get", "configmaps"]).await;
    assert_eq!(
        out.stderr.trim(),
        r#"Error from server (Forbidden): configmaps is forbidden: User "carol" cannot list resource "configmaps" in API group "" in the namespace "default": RBAC: role.rbac.authorization.k8s.io "nope" not found"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bootstrap_policy_is_reconciled_at_start() {
    let s = setup().await;
    let url = "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:basic-user";
    let (_, mut role) = s.call(admin(), Method::GET, url, Value::Null).await;
    let original = role["rules"].clone();
    role["rules"] = json!([{"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews"], "verbs": ["create"]},
                           {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
    let (code, v) = s.call(admin(), Method::PUT, url, role).await;
    assert_eq!(code, StatusCode::OK, "{v}");
    let (_, crb) = s
        .call(admin(), Method::GET, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cluster-admin", Value::Null)
        .await;
    let (code, _) = s
        .call(
            admin(),
            Method::DELETE,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cluster-admin",
            Value::Null,
        )
        .await;
    assert_eq!(code, StatusCode::OK);

    // A restart: a new API server over the same store.
    let api = ApiServer::with_options(s.store.clone(), ApiOptions::default());
    api.bootstrap().await.unwrap();
    let (_, role) = s.call(admin(), Method::GET, url, Value::Null).await;
    let rules = role["rules"].as_array().unwrap();
    for r in original.as_array().unwrap() {
        assert!(rules.contains(r), "{r} is back in {rules:?}");
    }
    assert!(
        rules.contains(&json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]})),
        "the user's rule stays"
    );
    let (code, again) = s
        .call(admin(), Method::GET, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/cluster-admin", Value::Null)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(again["subjects"], crb["subjects"]);

    // autoupdate=false: left as the user made it.
    let (_, mut role) = s.call(admin(), Method::GET, url, Value::Null).await;
    role["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"] = json!("false");
    role["rules"] = json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]);
    let (code, _) = s.call(admin(), Method::PUT, url, role).await;
    assert_eq!(code, StatusCode::OK);
    api.bootstrap().await.unwrap();
    let (_, role) = s.call(admin(), Method::GET, url, Value::Null).await;
    assert_eq!(role["rules"], json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]));
}
