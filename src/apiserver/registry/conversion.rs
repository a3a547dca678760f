//! Conversions for resources served in more than one version from one storage, as
//! upstream converts them: autoscaling/v1 HorizontalPodAutoscalers over the stored
//! autoscaling/v2 ones (what v1 cannot say travels in the `autoscaling.alpha.kubernetes.io/*`
//! annotations, so a v1 round trip loses nothing), and events.k8s.io/v1 Events over the
//! stored core/v1 ones (the same fields under other names).

use serde_json::{json, Map, Value};

use super::Conversion;

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";

/// The member holding a metric source of each type.
fn source_key(ty: &str) -> Option<&'static str> {
    Some(match ty {
        "Object" => "object",
        "Pods" => "pods",
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "External" => "external",
        _ => return None,
    })
}

/// Where each field of a v1 metric source lives in v2, per source type: `(v1, v2)` as
/// JSON pointers below the source. `T` is `target` for specs and `current` for statuses.
fn field_map(ty: &str, status: bool) -> &'static [(&'static str, &'static str)] {
    match (ty, status) {
        ("Object", false) => &[("/target", "/describedObject"), ("/metricName", "/metric/name"), ("/selector", "/metric/selector"), ("/targetValue", "/target/value"), ("/averageValue", "/target/averageValue")],
        ("Pods", false) => &[("/metricName", "/metric/name"), ("/selector", "/metric/selector"), ("/targetAverageValue", "/target/averageValue")],
        ("Resource", false) => &[("/name", "/name"), ("/targetAverageUtilization", "/target/averageUtilization"), ("/targetAverageValue", "/target/averageValue")],
        ("ContainerResource", false) => &[("/name", "/name"), ("/container", "/container"), ("/targetAverageUtilization", "/target/averageUtilization"), ("/targetAverageValue", "/target/averageValue")],
        ("External", false) => &[("/metricName", "/metric/name"), ("/metricSelector", "/metric/selector"), ("/targetValue", "/target/value"), ("/targetAverageValue", "/target/averageValue")],
        ("Object", true) => &[("/target", "/describedObject"), ("/metricName", "/metric/name"), ("/selector", "/metric/selector"), ("/currentValue", "/current/value"), ("/averageValue", "/current/averageValue")],
        ("Pods", true) => &[("/metricName", "/metric/name"), ("/selector", "/metric/selector"), ("/currentAverageValue", "/current/averageValue")],
        ("Resource", true) => &[("/name", "/name"), ("/currentAverageUtilization", "/current/averageUtilization"), ("/currentAverageValue", "/current/averageValue")],
        ("ContainerResource", true) => &[("/name", "/name"), ("/container", "/container"), ("/currentAverageUtilization", "/current/averageUtilization"), ("/currentAverageValue", "/current/averageValue")],
        ("External", true) => &[("/metricName", "/metric/name"), ("/metricSelector", "/metric/selector"), ("/currentValue", "/current/value"), ("/currentAverageValue", "/current/averageValue")],
        _ => &[],
    }
}

/// Sets `ptr` (of object members only) in `v`, making the objects on the way.
fn put(v: &mut Value, ptr: &str, x: Value) {
    let mut cur = v;
    for part in ptr.split('/').skip(1) {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Some(m) = cur.as_object_mut() else { return };
        cur = m.entry(part.to_string()).or_insert(Value::Null);
    }
    *cur = x;
}

fn present<'a>(v: &'a Value, ptr: &str) -> Option<&'a Value> {
    v.pointer(ptr).filter(|x| !x.is_null())
}

/// One v2 metric (spec or status) in v1's annotation form.
fn metric_to_v1(m: &Value, status: bool) -> Value {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let mut out = json!({"type": ty});
    if let Some(key) = source_key(ty) {
        let src = m.get(key).cloned().unwrap_or(Value::Null);
        let mut dst = json!({});
        for (v1, v2) in field_map(ty, status) {
            if let Some(x) = present(&src, v2) {
                put(&mut dst, v1, x.clone());
            }
        }
        out[key] = dst;
    }
    out
}

/// One v1 annotation metric in v2 form.
fn metric_to_v2(m: &Value, status: bool) -> Value {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let mut out = json!({"type": ty});
    if let Some(key) = source_key(ty) {
        let src = m.get(key).cloned().unwrap_or(Value::Null);
        let mut dst = json!({});
        for (v1, v2) in field_map(ty, status) {
            if let Some(x) = present(&src, v1) {
                put(&mut dst, v2, x.clone());
            }
        }
        if !status {
            let target_type = if present(&dst, "/target/averageUtilization").is_some() {
                "Utilization"
            } else if present(&dst, "/target/value").is_some() {
                "Value"
            } else {
                "AverageValue"
            };
            put(&mut dst, "/target/type", json!(target_type));
        }
        out[key] = dst;
    }
    out
}

fn is_cpu_utilization(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("Resource")
        && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
        && present(m, "/resource/target/averageUtilization").is_some()
}

fn copy(from: &Value, to: &mut Value, keys: &[&str]) {
    for k in keys {
        if let Some(x) = from.get(*k) {
            to[*k] = x.clone();
        }
    }
}

/// autoscaling/v1 HorizontalPodAutoscaler over stored autoscaling/v2 ones.
pub struct HpaV1;

impl Conversion for HpaV1 {
    fn from_storage(&self, v2: Value) -> Value {
        let mut out = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler"});
        let mut meta = v2.get("metadata").cloned().unwrap_or(json!({}));
        let mut notes = Map::new();
        let spec = v2.get("spec").cloned().unwrap_or(json!({}));
        let mut v1spec = json!({});
        copy(&spec, &mut v1spec, &["scaleTargetRef", "minReplicas", "maxReplicas"]);
        let metrics = spec.get("metrics").and_then(Value::as_array).cloned().unwrap_or_default();
        if let Some(cpu) = metrics.iter().find(|m| is_cpu_utilization(m)) {
            v1spec["targetCPUUtilizationPercentage"] = cpu.pointer("/resource/target/averageUtilization").cloned().unwrap_or(Value::Null);
        }
        let others: Vec<Value> = metrics.iter().filter(|m| !is_cpu_utilization(m)).map(|m| metric_to_v1(m, false)).collect();
        if !others.is_empty() {
            notes.insert(METRICS.into(), json!(Value::Array(others).to_string()));
        }
        if let Some(b) = present(&spec, "/behavior") {
            notes.insert(BEHAVIOR.into(), json!(b.to_string()));
        }
        out["spec"] = v1spec;
        if let Some(status) = v2.get("status").filter(|s| s.is_object()) {
            let mut v1status = json!({});
            copy(status, &mut v1status, &["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"]);
            let current = status.get("currentMetrics").and_then(Value::as_array).cloned().unwrap_or_default();
            if let Some(u) = current.iter().find_map(|m| {
                (m.get("type").and_then(Value::as_str) == Some("Resource") && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu"))
                    .then(|| present(m, "/resource/current/averageUtilization").cloned())
                    .flatten()
            }) {
                v1status["currentCPUUtilizationPercentage"] = u;
            }
            // All current metrics, the CPU one too: it keeps its raw value there.
            if !current.is_empty() {
                let all: Vec<Value> = current.iter().map(|m| metric_to_v1(m, true)).collect();
                notes.insert(CURRENT_METRICS.into(), json!(Value::Array(all).to_string()));
            }
            if let Some(c) = status.get("conditions").and_then(Value::as_array).filter(|c| !c.is_empty()) {
                notes.insert(CONDITIONS.into(), json!(Value::Array(c.clone()).to_string()));
            }
            out["status"] = v1status;
        }
        if !notes.is_empty() {
            if !meta.get("annotations").is_some_and(Value::is_object) {
                meta["annotations"] = json!({});
            }
            if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                a.extend(notes);
            }
        }
        out["metadata"] = meta;
        out
    }

    fn to_storage(&self, v1: Value) -> Value {
        let mut out = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler"});
        let mut meta = v1.get("metadata").cloned().unwrap_or(json!({}));
        let mut notes = Map::new();
        if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
            for k in [METRICS, CURRENT_METRICS, BEHAVIOR, CONDITIONS] {
                if let Some(v) = a.remove(k) {
                    notes.insert(k.to_string(), v);
                }
            }
            if a.is_empty() {
                if let Some(m) = meta.as_object_mut() {
                    m.remove("annotations");
                }
            }
        }
        let parsed = |k: &str| -> Option<Value> { notes.get(k).and_then(Value::as_str).and_then(|s| serde_json::from_str(s).ok()) };
        let spec = v1.get("spec").cloned().unwrap_or(json!({}));
        let mut v2spec = json!({});
        copy(&spec, &mut v2spec, &["scaleTargetRef", "minReplicas", "maxReplicas"]);
        let mut metrics: Vec<Value> = parsed(METRICS).and_then(|v| v.as_array().cloned()).unwrap_or_default().iter().map(|m| metric_to_v2(m, false)).collect();
        if let Some(t) = present(&spec, "/targetCPUUtilizationPercentage") {
            metrics.push(json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": t}}}));
        }
        if !metrics.is_empty() {
            v2spec["metrics"] = Value::Array(metrics);
        }
        if let Some(b) = parsed(BEHAVIOR) {
            v2spec["behavior"] = b;
        }
        out["metadata"] = meta;
        out["spec"] = v2spec;
        if let Some(status) = v1.get("status").filter(|s| s.is_object()) {
            let mut v2status = json!({});
            copy(status, &mut v2status, &["observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas"]);
            let current = match parsed(CURRENT_METRICS).and_then(|v| v.as_array().cloned()) {
                Some(all) => all.iter().map(|m| metric_to_v2(m, true)).collect(),
                None => match present(status, "/currentCPUUtilizationPercentage") {
                    Some(u) => vec![json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": u}}})],
                    None => Vec::new(),
                },
            };
            if !current.is_empty() {
                v2status["currentMetrics"] = Value::Array(current);
            }
            if let Some(c) = parsed(CONDITIONS) {
                v2status["conditions"] = c;
            }
            out["status"] = v2status;
        }
        out
    }
}

/// `(core/v1 name, events.k8s.io/v1 name)` of the fields that differ.
const EVENT_RENAMES: &[(&str, &str)] = &[
    ("message", "note"),
    ("involvedObject", "regarding"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(obj: Value, api_version: &str, from_core: bool) -> Value {
    let Value::Object(m) = obj else { return obj };
    let mut out = Map::new();
    for (k, v) in m {
        let name = EVENT_RENAMES
            .iter()
            .find(|(core, events)| if from_core { core == &k } else { events == &k })
            .map(|(core, events)| if from_core { *events } else { *core })
            .unwrap_or(k.as_str())
            .to_string();
        out.insert(name, v);
    }
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!("Event"));
    Value::Object(out)
}

/// events.k8s.io/v1 Event over stored core/v1 Events.
pub struct EventsV1;

impl Conversion for EventsV1 {
    fn from_storage(&self, core: Value) -> Value {
        rename(core, "events.k8s.io/v1", true)
    }

    fn to_storage(&self, events: Value) -> Value {
        rename(events, "v1", false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpa_v1_cpu_target_is_a_v2_utilization_metric() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70},
            "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 90}});
        let v2 = HpaV1.to_storage(v1.clone());
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(v2["spec"]["metrics"], json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]));
        assert_eq!(v2["status"]["currentMetrics"], json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 90}}}]));
        assert!(v2["metadata"].get("annotations").is_none());
        let back = HpaV1.from_storage(v2);
        assert_eq!(back["spec"], v1["spec"]);
        assert_eq!(back["status"]["currentCPUUtilizationPercentage"], 90);
    }

    #[test]
    fn what_v1_cannot_say_travels_in_annotations_and_comes_back() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web", "annotations": {"team": "a"}},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 10, "metrics": [
                {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                {"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "jobs"}}}, "target": {"type": "Value", "value": "30"}}},
            ], "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"currentReplicas": 1, "desiredReplicas": 1, "conditions": [{"type": "AbleToScale", "status": "True"}],
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 40, "averageValue": "100m"}}}]}});
        let v1 = HpaV1.from_storage(v2.clone());
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 40);
        let notes = &v1["metadata"]["annotations"];
        assert_eq!(notes["team"], "a");
        let others: Value = serde_json::from_str(notes[METRICS].as_str().unwrap()).unwrap();
        assert_eq!(others[0], json!({"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "1k"}}));
        assert_eq!(others[1], json!({"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "500Mi"}}));
        assert_eq!(others[2], json!({"type": "External", "external": {"metricName": "queue", "metricSelector": {"matchLabels": {"q": "jobs"}}, "targetValue": "30"}}));
        let back = HpaV1.to_storage(v1);
        // Upstream puts the CPU metric after the others.
        let mut expected = v2.clone();
        let metrics = expected["spec"]["metrics"].as_array_mut().unwrap();
        let cpu = metrics.remove(2);
        metrics.push(cpu);
        assert_eq!(back, expected);
    }

    #[test]
    fn events_v1_is_core_events_renamed() {
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "d"}, "message": "m",
            "involvedObject": {"kind": "Pod", "name": "p"}, "reportingComponent": "kubelet", "reportingInstance": "n1",
            "source": {"component": "kubelet"}, "firstTimestamp": "2024-01-01T00:00:00Z", "lastTimestamp": "2024-01-01T00:00:01Z",
            "count": 2, "type": "Normal", "reason": "Pulled", "eventTime": null, "action": "Pull", "related": {"kind": "Node", "name": "n1"},
            "series": {"count": 3, "lastObservedTime": "2024-01-01T00:00:01.000000Z"}});
        let ev = EventsV1.from_storage(core.clone());
        assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
        assert_eq!((ev["note"].as_str(), ev["regarding"]["name"].as_str(), ev["reportingController"].as_str()), (Some("m"), Some("p"), Some("kubelet")));
        assert_eq!((ev["deprecatedCount"].as_i64(), ev["deprecatedSource"]["component"].as_str()), (Some(2), Some("kubelet")));
        assert_eq!(ev["deprecatedFirstTimestamp"], "2024-01-01T00:00:00Z");
        assert_eq!((&ev["series"], &ev["related"], &ev["action"]), (&core["series"], &core["related"], &core["action"]));
        assert!(ev.get("message").is_none() && ev.get("involvedObject").is_none());
        assert_eq!(EventsV1.to_storage(ev), core);
    }
}
