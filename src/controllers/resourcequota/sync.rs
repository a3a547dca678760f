//! The quota controller's count for one ResourceQuota, with no I/O: which kinds its hard
//! limits need, and their usage summed over the namespace's objects (every hard resource
//! gets a used amount, zero when nothing uses it, as upstream reports it).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::domain::quota::{self, Usage};

/// A kind by API group and plural.
pub type Kind = (String, String);

/// The kinds whose objects can use the quota resource `name`.
fn kinds_for(name: &str) -> Vec<Kind> {
    let core = |p: &str| (String::new(), p.to_string());
    if let Some(rest) = name.strip_prefix("count/") {
        return vec![match rest.split_once('.') {
            Some((plural, group)) => (group.to_string(), plural.to_string()),
            None => core(rest),
        }];
    }
    let legacy = [
        "pods",
        "services",
        "configmaps",
        "secrets",
        "persistentvolumeclaims",
        "replicationcontrollers",
        "resourcequotas",
    ];
    if legacy.contains(&name) {
        return vec![core(name)];
    }
    [core("pods"), core("services"), core("persistentvolumeclaims")]
        .into_iter()
        .filter(|(g, p)| quota::is_used_by(g, p, name))
        .collect()
}

/// The kinds to list to count `hard`.
pub fn kinds_needed(hard: &Usage) -> BTreeSet<Kind> {
    hard.keys().flat_map(|k| kinds_for(k)).collect()
}

/// `status.used`: for each hard resource, the sum of what the objects use.
pub fn used(hard: &Usage, objects: &BTreeMap<Kind, Vec<Value>>) -> Usage {
    let mut out: Usage = hard.keys().map(|k| (k.clone(), quota::zero())).collect();
    for ((group, plural), items) in objects {
        for obj in items {
            for (k, v) in quota::usage(group, plural, obj) {
                if let Some(sum) = out.get_mut(&k) {
                    *sum = sum.checked_add(&v).unwrap_or(v);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn hard(names: &[(&str, &str)]) -> Usage {
        names.iter().map(|(k, v)| (k.to_string(), v.parse().unwrap())).collect()
    }

    #[test]
    fn the_kinds_a_quota_counts() {
        let h = hard(&[
            ("pods", "2"),
            ("requests.cpu", "1"),
            ("count/deployments.apps", "1"),
            ("services.nodeports", "1"),
            ("secrets", "3"),
        ]);
        let needed = kinds_needed(&h);
        let kinds: Vec<(&str, &str)> = needed.iter().map(|(g, p)| (g.as_str(), p.as_str())).collect();
        assert_eq!(kinds, [("", "pods"), ("", "secrets"), ("", "services"), ("apps", "deployments")]);
    }

    #[test]
    fn usage_is_summed_and_zero_when_unused() {
        let h = hard(&[("pods", "5"), ("requests.memory", "1Gi"), ("configmaps", "2"), ("count/jobs.batch", "1")]);
        let pod = |mem: &str, phase: &str| json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"memory": mem}}}]}, "status": {"phase": phase}});
        let objects: BTreeMap<Kind, Vec<Value>> = [
            (
                (String::new(), "pods".to_string()),
                vec![pod("128Mi", "Running"), pod("128Mi", "Pending"), pod("1Gi", "Failed")],
            ),
            ((String::new(), "configmaps".to_string()), vec![json!({})]),
        ]
        .into();
        let u = used(&h, &objects);
        assert_eq!(quota::pretty(&u), "configmaps=1,count/jobs.batch=0,pods=2,requests.memory=256Mi");
    }
}
