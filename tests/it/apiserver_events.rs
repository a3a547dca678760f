//! Events recorded by an in-process component show up where people look for them: the real
//! `kubectl describe` (1.27 and 1.33) of a pod and of a deployment prints them in its Events
//! section, folded repeats with their count. The API server runs in process over a real
//! SQLite store, served on loopback over plain HTTP.

use crate::common;

use std::path::Path;
use std::sync::Arc;

use k3rs::apiserver::{ApiServer, Identity};
use k3rs::client::Client;
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::{json, Value};

use common::kubectl_http::{admin, kubectl, serve_as, KubectlHttp};

struct Setup {
    http: KubectlHttp,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap();
    let api = ApiServer::new(Arc::new(store));
    api.bootstrap().await.unwrap();
    let http = serve_as(&api, admin()).await;
    let client = Client::new(api, Identity::new("system:kube-controller-manager", &["system:authenticated"]));
    // Pods need their namespace's default service account (no controller makes it here).
    client.post("/api/v1/namespaces/default/serviceaccounts", &json!({"metadata": {"name": "default"}})).await.unwrap();
    Setup { http, client, _dir: dir }
}

/// The reference an event is about, from the object as the API returned it.
fn reference(obj: &Value) -> ObjectReference {
    let field = |p: &str| obj.pointer(p).and_then(Value::as_str).map(str::to_string);
    ObjectReference {
        api_version: field("/apiVersion"),
        kind: field("/kind"),
        name: field("/metadata/name"),
        namespace: field("/metadata/namespace"),
        uid: field("/metadata/uid"),
        resource_version: field("/metadata/resourceVersion"),
        field_path: None,
    }
}

/// The rows of the Events section of `kubectl describe` output.
fn event_rows(out: &str) -> Vec<String> {
    let Some(at) = out.find("\nEvents:") else { panic!("no Events section in:\n{out}") };
    let rows = out[at + 8..].lines().map(str::trim).filter(|l| !l.is_empty());
    rows.skip_while(|l| !l.starts_with("----"))
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

async fn describe_shows_events(binary: &Path) {
    let s = setup().await;
    let pod = s
        .client
        .post(
            "/api/v1/namespaces/default/pods",
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0"},
                    "spec": {"containers": [{"name": "web", "image": "busybox:1.36"}]}}),
        )
        .await
        .unwrap();
    let other = s
        .client
        .post(
            "/api/v1/namespaces/default/pods",
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1"},
                    "spec": {"containers": [{"name": "web", "image": "busybox:1.36"}]}}),
        )
        .await
        .unwrap();
    let deploy = s
        .client
        .post(
            "/apis/apps/v1/namespaces/default/deployments",
            &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                    "spec": {"selector": {"matchLabels": {"app": "web"}},
                             "template": {"metadata": {"labels": {"app": "web"}},
                                          "spec": {"containers": [{"name": "web", "image": "busybox:1.36"}]}}}}),
        )
        .await
        .unwrap();

    // The components' own recorder: kube-runtime's, over the in-process client.
    let typed = s.client.typed();
    let recorder = |controller: &str, instance: &str| {
        let instance = (!instance.is_empty()).then(|| instance.to_string());
        Recorder::new(typed.clone(), Reporter { controller: controller.into(), instance })
    };
    let (scheduler, kubelet, controller) =
        (recorder("default-scheduler", ""), recorder("kubelet", "node-a"), recorder("deployment-controller", ""));
    let event = |type_, reason: &str, note: &str| Event {
        type_,
        reason: reason.into(),
        note: Some(note.into()),
        action: reason.into(),
        secondary: None,
    };
    scheduler
        .publish(
            &event(EventType::Normal, "Scheduled", "Successfully assigned default/web-0 to node-a"),
            &reference(&pod),
        )
        .await
        .unwrap();
    let mut container = reference(&pod);
    container.field_path = Some("spec.containers{web}".into());
    for _ in 0..3 {
        kubelet
            .publish(&event(EventType::Warning, "BackOff", "Back-off restarting failed container web"), &container)
            .await
            .unwrap();
    }
    kubelet.publish(&event(EventType::Normal, "Pulled", "about the other pod"), &reference(&other)).await.unwrap();
    controller
        .publish(
            &event(EventType::Normal, "ScalingReplicaSet", "Scaled up replica set web-7d4b9c to 1"),
            &reference(&deploy),
        )
        .await
        .unwrap();

    let out = s.http.kubectl(binary, &["describe", "pod", "web-0"]).await;
    let rows = event_rows(&out);
    assert_eq!(rows.len(), 2, "only web-0's events: {rows:?}");
    assert!(
        rows.iter().any(|r| r.starts_with("Normal Scheduled ")
            && r.contains(" default-scheduler Successfully assigned default/web-0 to node-a")),
        "{rows:?}"
    );
    let backoff = rows.iter().find(|r| r.starts_with("Warning BackOff ")).unwrap_or_else(|| panic!("{rows:?}"));
    // kubectl shows the source's component only.
    assert!(
        backoff.contains(" (x3 over ") && backoff.ends_with(" kubelet Back-off restarting failed container web"),
        "{backoff}"
    );

    let out = s.http.kubectl(binary, &["describe", "deployment", "web"]).await;
    let rows = event_rows(&out);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].starts_with("Normal ScalingReplicaSet ")
            && rows[0].ends_with("deployment-controller Scaled up replica set web-7d4b9c to 1"),
        "{rows:?}"
    );

    // `kubectl get events` selects them by the involved object too.
    let out = s
        .http
        .kubectl(binary, &["get", "events", "--field-selector", "involvedObject.kind=Deployment", "-o", "name"])
        .await;
    assert_eq!(out.lines().count(), 1, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_33_describe_shows_recorded_events() {
    describe_shows_events(&kubectl("kubectl.1.33")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_1_27_describe_shows_recorded_events() {
    describe_shows_events(&kubectl("kubectl.1.27")).await;
}
