//! Pod rules shared by the apiserver, the scheduler and the kubelet: upstream's defaulting of
//! a PodSpec, its QoS class and its condition update. Pods are held as JSON by the apiserver
//! and the scheduler and as `k8s-openapi` structs by the kubelet's spec builder; the QoS
//! class reads both.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Map, Value};

use super::quantity::Quantity;

/// A pod's QoS class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// One container's requests and limits, by resource name; `None` for an unreadable amount.
type Amounts<'a> = Vec<(&'a str, Option<Quantity>)>;

/// Upstream's `ComputePodQOS` over the app and init containers. A resource only limited
/// requests its limit, as upstream's defaulting stores it before the class is computed.
fn qos<'a>(containers: impl Iterator<Item = (Amounts<'a>, Amounts<'a>)>) -> QosClass {
    // Only cpu and memory amounts above zero count.
    let counted =
        |name: &str, q: &Option<Quantity>| q.clone().filter(|q| matches!(name, "cpu" | "memory") && q.signum() > 0);
    let add = |sum: &mut BTreeMap<&'a str, Quantity>, name: &'a str, q: Quantity| {
        let total = match sum.get(name) {
            Some(s) => s.checked_add(&q).unwrap_or(q),
            None => q,
        };
        sum.insert(name, total);
    };
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    for (req, lim) in containers {
        let defaulted = lim.iter().filter(|(name, _)| !req.iter().any(|(r, _)| r == name));
        for (name, q) in req.iter().chain(defaulted) {
            if let Some(q) = counted(name, q) {
                add(&mut requests, name, q);
            }
        }
        let mut limited = BTreeSet::new();
        for (name, q) in &lim {
            if let Some(q) = counted(name, q) {
                limited.insert(*name);
                add(&mut limits, name, q);
            }
        }
        if !(limited.contains("cpu") && limited.contains("memory")) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    guaranteed = guaranteed && requests.iter().all(|(name, r)| limits.get(name) == Some(r));
    if guaranteed && requests.len() == limits.len() {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// The QoS class of a PodSpec held as JSON.
pub fn qos_class_of_spec(spec: &Value) -> QosClass {
    let amounts = |c: &'_ Value, field: &str| -> Vec<(String, Option<Quantity>)> {
        c.get("resources")
            .and_then(|r| r.get(field))
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), Quantity::from_json(v)))
            .collect()
    };
    let containers: Vec<_> = ["containers", "initContainers"]
        .iter()
        .filter_map(|l| spec.get(*l).and_then(Value::as_array))
        .flatten()
        .map(|c| (amounts(c, "requests"), amounts(c, "limits")))
        .collect();
    qos(containers.iter().map(|(r, l)| (borrow(r), borrow(l))))
}

/// The QoS class of a typed pod.
pub fn qos_class(pod: &Pod) -> QosClass {
    let amounts = |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
        m.into_iter().flatten().map(|(k, v)| (k.clone(), v.0.trim().parse().ok())).collect::<Vec<_>>()
    };
    let containers: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
        .map(|c| {
            let r = c.resources.as_ref();
            (amounts(r.and_then(|r| r.requests.as_ref())), amounts(r.and_then(|r| r.limits.as_ref())))
        })
        .collect();
    qos(containers.iter().map(|(r, l)| (borrow(r), borrow(l))))
}

fn borrow(v: &[(String, Option<Quantity>)]) -> Amounts<'_> {
    v.iter().map(|(k, q)| (k.as_str(), q.clone())).collect()
}

/// Sets a pod condition as upstream's `UpdatePodCondition`: the new condition replaces the
/// old one of its type; `lastTransitionTime` moves only when the status changes. Returns
/// whether anything changed.
pub fn update_condition(pod: &mut Value, mut condition: Value, now: &str) -> bool {
    let Some(kind) = condition.get("type").and_then(Value::as_str).map(str::to_string) else { return false };
    if condition.get("lastProbeTime").is_none() {
        condition["lastProbeTime"] = Value::Null;
    }
    condition["lastTransitionTime"] = json!(now);
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let status = &mut pod["status"];
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) else { return false };
    match conditions.iter_mut().find(|c| c.get("type").and_then(Value::as_str) == Some(kind.as_str())) {
        None => {
            conditions.push(condition);
            true
        }
        Some(old) => {
            if old.get("status") == condition.get("status") {
                condition["lastTransitionTime"] = old.get("lastTransitionTime").cloned().unwrap_or(Value::Null);
            }
            let same = ["status", "reason", "message", "lastProbeTime", "lastTransitionTime"]
                .iter()
                .all(|f| old.get(*f).filter(|v| !v.is_null()) == condition.get(*f).filter(|v| !v.is_null()));
            *old = condition;
            !same
        }
    }
}

fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

/// `imagePullPolicy` from the image's tag, as upstream: `Always` for `:latest` or no tag.
pub fn pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match name.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_container(c: &mut Value) {
    let Some(m) = c.as_object_mut() else { return };
    let image = m.get("image").and_then(Value::as_str).unwrap_or("").to_string();
    default(m, "imagePullPolicy", json!(pull_policy(&image)));
    default(m, "terminationMessagePath", json!("/dev/termination-log"));
    default(m, "terminationMessagePolicy", json!("File"));
    default(m, "resources", json!({}));
    if let Some(Value::Array(ports)) = m.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(Value::Object(p)) = m.get_mut(probe) {
            default(p, "timeoutSeconds", json!(1));
            default(p, "periodSeconds", json!(10));
            default(p, "successThreshold", json!(1));
            default(p, "failureThreshold", json!(3));
            if let Some(Value::Object(h)) = p.get_mut("httpGet") {
                default(h, "path", json!("/"));
                default(h, "scheme", json!("HTTP"));
            }
        }
    }
    if let Some(Value::Array(env)) = m.get_mut("env") {
        for e in env.iter_mut() {
            if let Some(Value::Object(fr)) = e.pointer_mut("/valueFrom/fieldRef") {
                default(fr, "apiVersion", json!("v1"));
            }
        }
    }
}

/// Upstream's defaults of a PodSpec (the apiserver's, and the kubelet's for static pods).
pub fn default_spec(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else { return };
    default(m, "restartPolicy", json!("Always"));
    default(m, "terminationGracePeriodSeconds", json!(30));
    default(m, "dnsPolicy", json!("ClusterFirst"));
    default(m, "securityContext", json!({}));
    default(m, "schedulerName", json!("default-scheduler"));
    default(m, "enableServiceLinks", json!(true));
    if m.contains_key("serviceAccountName") || m.contains_key("serviceAccount") {
        let sa = m.get("serviceAccountName").or_else(|| m.get("serviceAccount")).cloned().unwrap_or(Value::Null);
        default(m, "serviceAccountName", sa.clone());
        default(m, "serviceAccount", sa);
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(Value::Array(cs)) = m.get_mut(list) {
            cs.iter_mut().for_each(default_container);
        }
    }
    if let Some(Value::Array(vols)) = m.get_mut("volumes") {
        for v in vols.iter_mut().filter_map(Value::as_object_mut) {
            for (kind, mode) in [("configMap", 420), ("secret", 420), ("projected", 420), ("downwardAPI", 420)] {
                if let Some(Value::Object(src)) = v.get_mut(kind) {
                    default(src, "defaultMode", json!(mode));
                }
            }
            if let Some(Value::Object(h)) = v.get_mut("hostPath") {
                default(h, "type", json!(""));
            }
            if let Some(Value::Array(items)) = v.get_mut("downwardAPI").and_then(|d| d.get_mut("items")) {
                items.iter_mut().for_each(default_downward_item);
            }
            if let Some(Value::Array(sources)) = v.get_mut("projected").and_then(|p| p.get_mut("sources")) {
                for s in sources.iter_mut() {
                    if let Some(Value::Object(t)) = s.get_mut("serviceAccountToken") {
                        default(t, "expirationSeconds", json!(3600));
                    }
                    if let Some(Value::Array(items)) = s.get_mut("downwardAPI").and_then(|d| d.get_mut("items")) {
                        items.iter_mut().for_each(default_downward_item);
                    }
                }
            }
        }
    }
}

/// A downward API file's `fieldRef` names API version v1 unless it says otherwise.
fn default_downward_item(item: &mut Value) {
    if let Some(Value::Object(f)) = item.get_mut("fieldRef") {
        default(f, "apiVersion", json!("v1"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_qos(spec: Value) -> QosClass {
        let typed: Pod = serde_json::from_value(json!({"spec": spec.clone()})).unwrap_or_default();
        let class = qos_class_of_spec(&spec);
        // The typed pod (when it reads) gets the same class.
        if typed.spec.is_some() {
            assert_eq!(qos_class(&typed), class, "{spec}");
        }
        class
    }

    #[test]
    fn qos_classes() {
        use QosClass::*;
        assert_eq!(spec_qos(json!({"containers": [{"name": "a"}]})), BestEffort);
        assert_eq!(spec_qos(json!({"containers": []})), BestEffort);
        let g = json!({"containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(spec_qos(g), Guaranteed);
        let b = json!({"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(spec_qos(b), Burstable);
        // Quantities compare by value: 1 and 1000m are equal.
        let g = json!({"containers": [{"name": "a", "resources": {
            "requests": {"cpu": "1000m", "memory": "1024Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(spec_qos(g), Guaranteed);
        // Only cpu and memory count, and only amounts above zero.
        let e =
            json!({"containers": [{"name": "a", "resources": {"requests": {"ephemeral-storage": "1Gi", "cpu": "0"}}}]});
        assert_eq!(spec_qos(e), BestEffort);
        // Every container must limit both; init containers count.
        let b = json!({
            "containers": [{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
            "initContainers": [{"name": "i", "resources": {"limits": {"cpu": "1"}}}],
        });
        assert_eq!(spec_qos(b), Burstable);
        let b = json!({"containers": [{"name": "a", "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(spec_qos(b), Burstable);
        assert_eq!(Guaranteed.as_str(), "Guaranteed");
    }

    #[test]
    fn conditions_keep_their_transition_time_while_status_holds() {
        let mut pod = json!({});
        assert!(update_condition(&mut pod, json!({"type": "PodScheduled", "status": "False"}), "t1"));
        assert!(!update_condition(&mut pod, json!({"type": "PodScheduled", "status": "False"}), "t2"));
        assert_eq!(pod["status"]["conditions"][0]["lastTransitionTime"], "t1");
        assert!(update_condition(&mut pod, json!({"type": "PodScheduled", "status": "True"}), "t3"));
        assert_eq!(pod["status"]["conditions"][0]["lastTransitionTime"], "t3");
        assert_eq!(pod["status"]["conditions"].as_array().map(Vec::len), Some(1));
        assert!(!update_condition(&mut pod, json!({"status": "True"}), "t4"));
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("busybox"), "Always");
        assert_eq!(pull_policy("busybox:latest"), "Always");
        assert_eq!(pull_policy("busybox:1.36"), "IfNotPresent");
        assert_eq!(pull_policy("registry:5000/app"), "Always");
        assert_eq!(pull_policy("app@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn spec_defaults() {
        let mut s = json!({"containers": [{"name": "c", "image": "nginx:1", "ports": [{"containerPort": 80}]}]});
        default_spec(&mut s);
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(s["containers"][0]["ports"][0]["protocol"], "TCP");
    }
}
