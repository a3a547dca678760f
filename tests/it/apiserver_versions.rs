//! Resources served in more than one version (or group) from one storage: autoscaling/v1 and
//! v2 HorizontalPodAutoscalers, core/v1 and events.k8s.io/v1 Events. Lists and watches in
//! either see objects written in the other, converted as upstream converts them.

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

fn request(method: Method, uri: &str, ct: &str, body: &Value) -> Request<Body> {
    let body = if body.is_null() { Body::empty() } else { Body::from(serde_json::to_vec(body).unwrap()) };
    let mut req = Request::builder().method(method).uri(uri).header("content-type", ct).body(body).unwrap();
    req.extensions_mut().insert(Identity::new("system:admin", &["system:masters", "system:authenticated"]));
    req
}

impl Api {
    async fn call_ct(&self, method: Method, uri: &str, ct: &str, body: Value) -> (StatusCode, Value) {
        let resp = self.api.router().oneshot(request(method, uri, ct, &body)).await.unwrap();
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (code, serde_json::from_slice(&bytes).unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes))))
    }
    async fn call(&self, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call_ct(method, uri, "application/json", body).await
    }
    async fn ok(&self, method: Method, uri: &str, body: Value) -> Value {
        let (code, v) = self.call(method, uri, body).await;
        assert!(code.is_success(), "{uri}: {code} {v}");
        v
    }
    /// The first `n` events of a watch.
    async fn watch(&self, uri: &str, n: usize) -> Vec<Value> {
        let resp =
            self.api.router().oneshot(request(Method::GET, uri, "application/json", &Value::Null)).await.unwrap();
        let mut body = resp.into_body().into_data_stream();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        while out.len() < n {
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
                .await
                .expect("a watch event in time")
                .unwrap()
                .unwrap();
            buf.extend_from_slice(&chunk);
            while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=i).collect();
                out.push(serde_json::from_slice(&line).unwrap());
            }
        }
        out
    }
}

const V1: &str = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers";
const V2: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";

#[tokio::test]
async fn hpa_v1_and_v2_are_one_object() {
    let a = api().await;
    let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 2, "maxReplicas": 6, "targetCPUUtilizationPercentage": 60}});
    let created = a.ok(Method::POST, V1, v1).await;
    assert_eq!(created["apiVersion"], "autoscaling/v1");
    assert_eq!(created["spec"]["targetCPUUtilizationPercentage"], 60);
    let as_v2 = a.ok(Method::GET, &format!("{V2}/web"), Value::Null).await;
    assert_eq!(as_v2["apiVersion"], "autoscaling/v2");
    assert_eq!(as_v2["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        as_v2["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}])
    );

    // A v2 change with a metric v1 cannot show survives a v1 read-modify-write.
    let mut changed = as_v2.clone();
    changed["spec"]["metrics"].as_array_mut().unwrap().insert(0, json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "100"}}}));
    a.ok(Method::PUT, &format!("{V2}/web"), changed).await;
    let mut read_v1 = a.ok(Method::GET, &format!("{V1}/web"), Value::Null).await;
    assert!(
        read_v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"].as_str().unwrap().contains("qps"),
        "{read_v1}"
    );
    read_v1["spec"]["maxReplicas"] = json!(9);
    a.ok(Method::PUT, &format!("{V1}/web"), read_v1).await;
    let after = a.ok(Method::GET, &format!("{V2}/web"), Value::Null).await;
    assert_eq!(after["spec"]["maxReplicas"], 9);
    assert_eq!(after["spec"]["metrics"].as_array().unwrap().len(), 2, "{after}");
    assert_eq!(after["spec"]["metrics"][0]["pods"]["metric"]["name"], "qps");
    assert!(after["metadata"].get("annotations").is_none(), "the annotations are v1's only: {after}");
    assert_eq!(after["metadata"]["generation"], 3);

    // A merge patch through v1.
    let (code, patched) = a
        .call_ct(
            Method::PATCH,
            &format!("{V1}/web"),
            "application/merge-patch+json",
            json!({"spec": {"targetCPUUtilizationPercentage": 75}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{patched}");
    let after = a.ok(Method::GET, &format!("{V2}/web"), Value::Null).await;
    assert_eq!(after["spec"]["metrics"][1]["resource"]["target"]["averageUtilization"], 75);

    // Lists in each version.
    let list = a.ok(Method::GET, V1, Value::Null).await;
    assert_eq!(
        (list["apiVersion"].as_str(), list["kind"].as_str()),
        (Some("autoscaling/v1"), Some("HorizontalPodAutoscalerList"))
    );
    assert_eq!(list["items"][0]["apiVersion"], "autoscaling/v1");
    assert_eq!(list["items"][0]["spec"]["targetCPUUtilizationPercentage"], 75);
    let list = a.ok(Method::GET, "/apis/autoscaling/v2/horizontalpodautoscalers", Value::Null).await;
    assert_eq!(list["items"][0]["apiVersion"], "autoscaling/v2");

    // A watch in v1 sees a change made in v2, as v1.
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let uri = format!("{V1}?watch=true&resourceVersion={rv}");
    let watch = a.watch(&uri, 1);
    let writer = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (code, v) = a
            .call_ct(
                Method::PATCH,
                &format!("{V2}/web"),
                "application/merge-patch+json",
                json!({"spec": {"minReplicas": 3}}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{v}");
    };
    let (events, ()) = tokio::join!(watch, writer);
    assert_eq!(events[0]["type"], "MODIFIED");
    assert_eq!(events[0]["object"]["apiVersion"], "autoscaling/v1");
    assert_eq!(events[0]["object"]["spec"]["minReplicas"], 3);

    a.ok(Method::DELETE, &format!("{V1}/web"), Value::Null).await;
    let (code, _) = a.call(Method::GET, &format!("{V2}/web"), Value::Null).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn events_k8s_io_is_a_view_of_core_events() {
    let a = api().await;
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "web.1"},
        "eventTime": "2024-05-01T10:00:00.000000Z", "reportingController": "example.com/ctl", "reportingInstance": "ctl-1",
        "action": "Scale", "reason": "Scaled", "note": "scaled to 3", "type": "Normal",
        "regarding": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "default"}});
    let created = a.ok(Method::POST, "/apis/events.k8s.io/v1/namespaces/default/events", ev).await;
    assert_eq!(created["note"], "scaled to 3");
    let core = a.ok(Method::GET, "/api/v1/namespaces/default/events/web.1", Value::Null).await;
    assert_eq!((core["apiVersion"].as_str(), core["message"].as_str()), (Some("v1"), Some("scaled to 3")));
    assert_eq!(core["involvedObject"]["name"], "web");
    assert_eq!(core["reportingComponent"], "example.com/ctl");
    assert!(core.get("note").is_none() && core.get("regarding").is_none());

    // Written in core, seen in events.k8s.io with field selectors of that group.
    a.ok(Method::POST, "/api/v1/namespaces/default/events", json!({"metadata": {"name": "pod.1"}, "message": "pulled", "reason": "Pulled", "type": "Normal",
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "source": {"component": "kubelet", "host": "n1"}, "count": 4})).await;
    let list = a
        .ok(
            Method::GET,
            "/apis/events.k8s.io/v1/namespaces/default/events?fieldSelector=regarding.kind%3DPod",
            Value::Null,
        )
        .await;
    assert_eq!((list["apiVersion"].as_str(), list["kind"].as_str()), (Some("events.k8s.io/v1"), Some("EventList")));
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(
        (
            items[0]["note"].as_str(),
            items[0]["deprecatedCount"].as_i64(),
            items[0]["deprecatedSource"]["host"].as_str()
        ),
        (Some("pulled"), Some(4), Some("n1"))
    );
    let all = a.ok(Method::GET, "/api/v1/events", Value::Null).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);

    // A watch on one group sees writes through the other.
    let rv = all["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    let uri = format!("/apis/events.k8s.io/v1/namespaces/default/events?watch=1&resourceVersion={rv}");
    let watch = a.watch(&uri, 2);
    let writer = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let (code, v) = a
            .call_ct(
                Method::PATCH,
                "/api/v1/namespaces/default/events/pod.1",
                "application/strategic-merge-patch+json",
                json!({"count": 5}),
            )
            .await;
        assert_eq!(code, StatusCode::OK, "{v}");
        a.ok(Method::DELETE, "/api/v1/namespaces/default/events/web.1", Value::Null).await;
    };
    let (events, ()) = tokio::join!(watch, writer);
    assert_eq!(
        (events[0]["type"].as_str(), events[0]["object"]["deprecatedCount"].as_i64()),
        (Some("MODIFIED"), Some(5))
    );
    assert_eq!(
        (events[1]["type"].as_str(), events[1]["object"]["note"].as_str()),
        (Some("DELETED"), Some("scaled to 3"))
    );
}
