//! ResourceQuota rules that the quota controller and quota admission both apply (upstream's
//! quota evaluators): what an object uses (`pods`, `count/<resource>`, `requests.cpu`,
//! `limits.memory`, ...), which quota resources an object's kind can use, the pod
//! constraint that quota'd compute resources be specified, and the comparison of usage with
//! the hard limits. Objects are JSON, as the apiserver holds them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::quantity::{Format, Quantity};

/// Resource amounts by quota resource name, sorted as upstream prints them.
pub type Usage = BTreeMap<String, Quantity>;

fn one() -> Quantity {
    Quantity::new(1, 0, Format::DecimalSi)
}

/// Zero, for a resource nothing uses.
pub fn zero() -> Quantity {
    Quantity::zero(Format::DecimalSi)
}

/// `count/<resource>` or `count/<resource>.<group>`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The core kinds quota'd under their plain names too (`pods`, `services`, ...).
const LEGACY: &[&str] = &[
    "pods",
    "services",
    "configmaps",
    "secrets",
    "persistentvolumeclaims",
    "replicationcontrollers",
    "resourcequotas",
];

/// Whether the quota resource `name` is one objects of `group`/`plural` can use.
pub fn is_used_by(group: &str, plural: &str, name: &str) -> bool {
    if name == count_name(group, plural) || (group.is_empty() && LEGACY.contains(&plural) && name == plural) {
        return true;
    }
    match (group, plural) {
        ("", "pods") => is_compute(name),
        ("", "services") => matches!(name, "services.loadbalancers" | "services.nodeports"),
        ("", "persistentvolumeclaims") => name == "requests.storage",
        _ => false,
    }
}

/// The resources a pod's requests and limits count under.
fn is_compute(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage")
        || name.starts_with("requests.")
        || name.starts_with("limits.")
        || name.starts_with("hugepages-")
}

fn add(u: &mut Usage, name: &str, q: Quantity) {
    let total = match u.get(name) {
        Some(s) => s.checked_add(&q).unwrap_or(q),
        None => q,
    };
    u.insert(name.to_string(), total);
}

fn amounts(c: &Value, field: &str) -> BTreeMap<String, Quantity> {
    c.pointer(&format!("/resources/{field}"))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Quantity::from_json(v)?)))
        .collect()
}

/// A container's requests, with a limit standing for a missing request as upstream's
/// defaulting stores it.
fn requests_of(c: &Value) -> BTreeMap<String, Quantity> {
    let mut r = amounts(c, "requests");
    for (k, v) in amounts(c, "limits") {
        r.entry(k).or_insert(v);
    }
    r
}

/// The quota names requests and limits count under (upstream's `podComputeUsageHelper`).
fn compute_usage(requests: &BTreeMap<String, Quantity>, limits: &BTreeMap<String, Quantity>) -> Usage {
    let mut u = Usage::new();
    for (k, v) in requests {
        match k.as_str() {
            "cpu" | "memory" | "ephemeral-storage" => {
                u.insert(k.clone(), v.clone());
                u.insert(format!("requests.{k}"), v.clone());
            }
            h if h.starts_with("hugepages-") => {
                u.insert(format!("requests.{h}"), v.clone());
            }
            _ => {}
        }
    }
    for (k, v) in limits {
        if matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            u.insert(format!("limits.{k}"), v.clone());
        }
    }
    u
}

/// Sums per resource over the app containers, then takes the larger of that and each init
/// container (upstream's `PodRequests`/`PodLimits`).
fn pod_totals(pod: &Value, of: impl Fn(&Value) -> BTreeMap<String, Quantity>) -> BTreeMap<String, Quantity> {
    let list = |f: &str| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut total = BTreeMap::new();
    for c in list("containers") {
        for (k, v) in of(&c) {
            let sum = match total.get(&k) {
                Some(s) => Quantity::checked_add(s, &v).unwrap_or(v),
                None => v,
            };
            total.insert(k, sum);
        }
    }
    for c in list("initContainers") {
        for (k, v) in of(&c) {
            if total.get(&k).is_none_or(|t| v > *t) {
                total.insert(k, v);
            }
        }
    }
    if let Some(overhead) = pod.pointer("/spec/overhead").and_then(Value::as_object) {
        for (k, v) in overhead {
            if let Some(q) = Quantity::from_json(v) {
                let sum = match total.get(k) {
                    Some(t) => t.checked_add(&q).unwrap_or(q),
                    None => q,
                };
                total.insert(k.clone(), sum);
            }
        }
    }
    total
}

/// Whether a pod still uses quota: not terminal (upstream's `QuotaV1Pod`).
pub fn pod_counts(pod: &Value) -> bool {
    !matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

/// What one object of `group`/`plural` uses.
pub fn usage(group: &str, plural: &str, obj: &Value) -> Usage {
    let mut u = Usage::new();
    if group.is_empty() && plural == "pods" && !pod_counts(obj) {
        return u;
    }
    u.insert(count_name(group, plural), one());
    if group.is_empty() && LEGACY.contains(&plural) {
        u.insert(plural.to_string(), one());
    }
    match (group, plural) {
        ("", "pods") => {
            let requests = pod_totals(obj, requests_of);
            let limits = pod_totals(obj, |c| amounts(c, "limits"));
            u.extend(compute_usage(&requests, &limits));
        }
        ("", "services") => match obj.pointer("/spec/type").and_then(Value::as_str) {
            Some("LoadBalancer") => {
                u.insert("services.loadbalancers".into(), one());
                add(&mut u, "services.nodeports", ports(obj));
            }
            Some("NodePort") => add(&mut u, "services.nodeports", ports(obj)),
            _ => {}
        },
        ("", "persistentvolumeclaims") => {
            if let Some(q) = obj.pointer("/spec/resources/requests/storage").and_then(Quantity::from_json) {
                u.insert("requests.storage".into(), q);
            }
        }
        _ => {}
    }
    u
}

fn ports(svc: &Value) -> Quantity {
    let n = svc.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len);
    Quantity::new(n as i64, 0, Format::DecimalSi)
}

/// Upstream's pod `Constraints`: when a quota limits cpu or memory, every container must
/// say how much; the message lists what is missing, by resource, with the containers.
pub fn pod_constraints(pod: &Value, required: &BTreeSet<String>) -> Result<(), String> {
    const VALIDATED: &[&str] = &["cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory"];
    let required: BTreeSet<&str> = required.iter().map(String::as_str).filter(|r| VALIDATED.contains(r)).collect();
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for list in ["containers", "initContainers"] {
        for c in pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).into_iter().flatten() {
            let has = compute_usage(&requests_of(c), &amounts(c, "limits"));
            for r in &required {
                if !has.contains_key(*r) {
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_string();
                    missing.entry(r).or_default().insert(name);
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, cs)| format!("{r} for: {}", cs.iter().cloned().collect::<Vec<_>>().join(",")))
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// `a=1,b=2`, sorted by name (upstream's `prettyPrint`).
pub fn pretty(u: &Usage) -> String {
    u.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Reads a `hard`/`used` map.
pub fn read(v: Option<&Value>) -> Usage {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Quantity::from_json(v)?)))
        .collect()
}

/// Why a request does not fit a quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub requested: Usage,
    pub used: Usage,
    pub limited: Usage,
}

/// Adds `requested` (only what `hard` limits) to `used`: the new usage of the resources
/// requested, or what they would exceed (upstream's admission check of one quota).
pub fn charge(hard: &Usage, used: &Usage, requested: &Usage) -> Result<Usage, Exceeded> {
    let requested: Usage =
        requested.iter().filter(|(k, _)| hard.contains_key(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut new = Usage::new();
    let mut exceeded = BTreeSet::new();
    for (k, v) in &requested {
        let total = used.get(k).map_or_else(|| v.clone(), |u| u.checked_add(v).unwrap_or_else(|| v.clone()));
        if hard.get(k).is_some_and(|h| total > *h) {
            exceeded.insert(k.clone());
        }
        new.insert(k.clone(), total);
    }
    if exceeded.is_empty() {
        return Ok(new);
    }
    let mask =
        |u: &Usage| u.iter().filter(|(k, _)| exceeded.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    Err(Exceeded { requested: mask(&requested), used: mask(used), limited: mask(hard) })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap()
    }

    fn usage_map(pairs: &[(&str, &str)]) -> Usage {
        pairs.iter().map(|(k, v)| (k.to_string(), q(v))).collect()
    }

    #[test]
    fn pod_usage_as_upstream() {
        let pod = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
                {"name": "b", "resources": {"limits": {"cpu": "300m", "memory": "64Mi"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}],
        }});
        let u = usage("", "pods", &pod);
        let printed: Vec<String> = u.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            printed,
            [
                "count/pods=1",
                "cpu=1",
                "limits.cpu=500m",
                "limits.memory=64Mi",
                "memory=128Mi",
                "pods=1",
                "requests.cpu=1",
                "requests.memory=128Mi",
            ]
        );
        let done = json!({"spec": {"containers": []}, "status": {"phase": "Succeeded"}});
        assert!(usage("", "pods", &done).is_empty(), "a finished pod uses nothing");
    }

    #[test]
    fn object_counts_by_kind() {
        let cases: &[(&str, &str, Value, &[&str])] = &[
            ("", "configmaps", json!({}), &["configmaps", "count/configmaps"]),
            ("apps", "deployments", json!({}), &["count/deployments.apps"]),
            (
                "",
                "services",
                json!({"spec": {"type": "NodePort", "ports": [{}, {}]}}),
                &["count/services", "services", "services.nodeports"],
            ),
            (
                "",
                "persistentvolumeclaims",
                json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}}),
                &["count/persistentvolumeclaims", "persistentvolumeclaims", "requests.storage"],
            ),
        ];
        for (group, plural, obj, want) in cases {
            let u = usage(group, plural, obj);
            let got: Vec<&str> = u.keys().map(String::as_str).collect();
            assert_eq!(&got, want, "{plural}");
            for name in *want {
                assert!(is_used_by(group, plural, name), "{plural} uses {name}");
            }
        }
        assert!(!is_used_by("", "configmaps", "pods"));
        assert!(is_used_by("", "pods", "requests.cpu"));
    }

    #[test]
    fn constraints_name_the_missing_resources_and_containers() {
        let pod = json!({"spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "1"}}},
            {"name": "d"},
        ]}});
        let required: BTreeSet<String> = ["limits.cpu", "requests.cpu", "pods"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            pod_constraints(&pod, &required),
            Err("must specify limits.cpu for: c,d; requests.cpu for: d".to_string())
        );
        let only_count: BTreeSet<String> = ["pods".to_string()].into();
        assert_eq!(pod_constraints(&pod, &only_count), Ok(()));
    }

    #[test]
    fn charging_a_quota() {
        let hard = usage_map(&[("pods", "2"), ("requests.cpu", "1")]);
        let requested = usage_map(&[("pods", "1"), ("count/pods", "1"), ("requests.cpu", "500m")]);
        let used = usage_map(&[("pods", "1"), ("requests.cpu", "500m")]);
        let new = charge(&hard, &used, &requested).unwrap();
        assert_eq!(pretty(&new), "pods=2,requests.cpu=1");
        let full = usage_map(&[("pods", "2"), ("requests.cpu", "0")]);
        let e = charge(&hard, &full, &requested).unwrap_err();
        assert_eq!(
            (pretty(&e.requested), pretty(&e.used), pretty(&e.limited)),
            ("pods=1".to_string(), "pods=2".to_string(), "pods=2".to_string())
        );
    }
}
