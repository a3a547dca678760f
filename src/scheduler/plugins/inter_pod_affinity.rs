//! InterPodAffinity: pods placed by the pods around them, over topology domains (nodes
//! that share the value of a label such as `kubernetes.io/hostname` or
//! `topology.kubernetes.io/zone`).
//!
//! Filter, in upstream's order: each of the pod's required affinity terms needs a matching
//! pod in the node's domain (unless no pod anywhere matches and the pod matches its own
//! terms: the first of a group that wants to be together); none of its required
//! anti-affinity terms may match a pod in the node's domain; no existing pod's required
//! anti-affinity may match the pod in the node's domain. Score: preferred terms both ways (and existing
//! pods' required affinity at weight 1), summed over the node's domains, scaled 0–100.

use std::collections::HashMap;

use crate::scheduler::framework::{AffinityTerm, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Snapshot, Unfit};

pub const AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";
pub const EXISTING_ANTI_AFFINITY: &str = "node(s) didn't satisfy existing pods anti-affinity rules";

/// Upstream's hardPodAffinityWeight: what an existing pod's required affinity adds to the
/// score of the nodes in its domain.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

pub struct InterPodAffinity;

type Pair<'a> = (&'a str, &'a str);

/// Whether `a` and `b` are in the same domain of `key` (both have the label, equal).
fn same_domain(key: &str, a: &NodeInfo, b: &NodeInfo) -> bool {
    matches!((a.label(key), b.label(key)), (Some(x), Some(y)) if x == y)
}

fn every_pod(nodes: &[NodeInfo]) -> impl Iterator<Item = (&NodeInfo, &PodInfo)> {
    nodes.iter().flat_map(|n| n.pods.iter().map(move |p| (n, &**p)))
}

fn existing_anti_affinity_refuses(pod: &PodInfo, node: &NodeInfo, nodes: &[NodeInfo]) -> bool {
    every_pod(nodes).any(|(n, existing)| {
        existing.affinity.required_anti.iter().any(|t| same_domain(&t.topology_key, n, node) && t.matches(pod))
    })
}

fn affinity_satisfied(pod: &PodInfo, node: &NodeInfo, nodes: &[NodeInfo]) -> bool {
    let terms = &pod.affinity.required;
    if terms.is_empty() {
        return true;
    }
    // Every topology key must be on the node.
    if terms.iter().any(|t| node.label(&t.topology_key).is_none()) {
        return false;
    }
    // Pods that match all the terms count, in each term's domain of their node.
    let mut counts: HashMap<Pair<'_>, usize> = HashMap::new();
    for (n, existing) in every_pod(nodes) {
        if terms.iter().all(|t| t.matches(existing)) {
            for t in terms {
                if let Some(v) = n.label(&t.topology_key) {
                    *counts.entry((t.topology_key.as_str(), v)).or_insert(0) += 1;
                }
            }
        }
    }
    let here = |t: &AffinityTerm| -> usize {
        let v = node.label(&t.topology_key).unwrap_or("");
        counts.get(&(t.topology_key.as_str(), v)).copied().unwrap_or(0)
    };
    if terms.iter().all(|t| here(t) > 0) {
        return true;
    }
    counts.is_empty() && terms.iter().all(|t| t.matches(pod))
}

fn anti_affinity_satisfied(pod: &PodInfo, node: &NodeInfo, nodes: &[NodeInfo]) -> bool {
    pod.affinity.required_anti.iter().all(|t| {
        node.label(&t.topology_key).is_none()
            || !every_pod(nodes).any(|(n, existing)| same_domain(&t.topology_key, n, node) && t.matches(existing))
    })
}

impl FilterPlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> Result<(), Unfit> {
        if !affinity_satisfied(pod, node, &snap.nodes) {
            return Err(Unfit::unresolvable(AFFINITY));
        }
        if !anti_affinity_satisfied(pod, node, &snap.nodes) {
            return Err(Unfit::unschedulable(ANTI_AFFINITY));
        }
        if existing_anti_affinity_refuses(pod, node, &snap.nodes) {
            return Err(Unfit::unschedulable(EXISTING_ANTI_AFFINITY));
        }
        Ok(())
    }
}

impl ScorePlugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn weight(&self) -> i64 {
        2
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, feasible: &[&NodeInfo]) -> i64 {
        let mut score = 0;
        let term = |t: &AffinityTerm, n: &NodeInfo, other: &PodInfo, w: i64| {
            if same_domain(&t.topology_key, n, node) && t.matches(other) {
                w
            } else {
                0
            }
        };
        // Only the pods on feasible nodes count (upstream counts all): a domain split between
        // feasible and refused nodes scores a little lower than upstream's.
        let nodes = feasible.iter().flat_map(|n| n.pods.iter().map(move |p| (*n, &**p)));
        for (n, existing) in nodes {
            for t in &pod.affinity.preferred {
                score += term(t, n, existing, i64::from(t.weight));
            }
            for t in &pod.affinity.preferred_anti {
                score -= term(t, n, existing, i64::from(t.weight));
            }
            for t in &existing.affinity.required {
                score += term(t, n, pod, HARD_POD_AFFINITY_WEIGHT);
            }
            for t in &existing.affinity.preferred {
                score += term(t, n, pod, i64::from(t.weight));
            }
            for t in &existing.affinity.preferred_anti {
                score -= term(t, n, pod, i64::from(t.weight));
            }
        }
        score
    }

    fn normalize(&self, scores: &mut [i64]) {
        let (min, max) = (scores.iter().copied().min().unwrap_or(0), scores.iter().copied().max().unwrap_or(0));
        for s in scores.iter_mut() {
            *s = if max > min { (*s - min) * 100 / (max - min) } else { 0 };
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::scheduler::plugins::testing::{node, pod_with};

    fn app(name: &str, app: &str, affinity: Value) -> PodInfo {
        pod_with(json!({"name": name, "namespace": "default", "labels": {"app": app}}), json!({"affinity": affinity}))
    }

    fn term(app: &str, key: &str) -> Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    fn zone_node(name: &str, zone: &str) -> NodeInfo {
        node(name, json!({"metadata": {"labels": {"topology.kubernetes.io/zone": zone}}}))
    }

    const HOST: &str = "kubernetes.io/hostname";
    const ZONE: &str = "topology.kubernetes.io/zone";

    /// (case, incoming pod, pods on a (zone z1), pods on b (zone z1), verdict on a)
    type Case = (&'static str, PodInfo, Vec<PodInfo>, Vec<PodInfo>, Result<(), Unfit>);

    #[test]
    fn filter_table() {
        let anti = |app: &str, key: &str| json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(app, key)]}});
        let with = |app: &str, key: &str| json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term(app, key)]}});
        // (case, incoming pod, pods on a (zone z1), pods on b (zone z1), pods on c (zone z2), verdict on a)
        let cases: Vec<Case> = vec![
            ("no affinity", app("p", "web", json!({})), vec![app("x", "web", json!({}))], vec![], Ok(())),
            (
                "anti-affinity by host refuses a node with a match",
                app("p", "web", anti("web", HOST)),
                vec![app("x", "web", json!({}))],
                vec![],
                Err(Unfit::unschedulable(ANTI_AFFINITY)),
            ),
            (
                "anti-affinity by host ignores the other node",
                app("p", "web", anti("web", HOST)),
                vec![],
                vec![app("x", "web", json!({}))],
                Ok(()),
            ),
            (
                "anti-affinity by zone refuses the whole zone",
                app("p", "web", anti("web", ZONE)),
                vec![],
                vec![app("x", "web", json!({}))],
                Err(Unfit::unschedulable(ANTI_AFFINITY)),
            ),
            (
                "an existing pod's anti-affinity refuses",
                app("p", "db", json!({})),
                vec![app("x", "web", anti("db", HOST))],
                vec![],
                Err(Unfit::unschedulable(EXISTING_ANTI_AFFINITY)),
            ),
            (
                "a pod's own anti-affinity is reported before an existing pod's",
                app("p", "web", anti("web", HOST)),
                vec![app("x", "web", anti("web", HOST))],
                vec![],
                Err(Unfit::unschedulable(ANTI_AFFINITY)),
            ),
            (
                "affinity needs a match in the domain",
                app("p", "web", with("db", HOST)),
                vec![],
                vec![app("x", "db", json!({}))],
                Err(Unfit::unresolvable(AFFINITY)),
            ),
            (
                "affinity by zone is met by a pod on another node of the zone",
                app("p", "web", with("db", ZONE)),
                vec![],
                vec![app("x", "db", json!({}))],
                Ok(()),
            ),
            (
                "the first of a self-affine group goes anywhere",
                app("p", "web", with("web", HOST)),
                vec![],
                vec![],
                Ok(()),
            ),
            (
                "affinity to pods that exist elsewhere only",
                app("p", "web", with("web", HOST)),
                vec![],
                vec![app("x", "web", json!({}))],
                Err(Unfit::unresolvable(AFFINITY)),
            ),
        ];
        for (case, incoming, on_a, on_b, want) in cases {
            let (mut a, mut b) = (zone_node("a", "z1"), zone_node("b", "z1"));
            on_a.into_iter().for_each(|p| a.add_pod(p));
            on_b.into_iter().for_each(|p| b.add_pod(p));
            let nodes = vec![a.clone(), b, zone_node("c", "z2")];
            assert_eq!(InterPodAffinity.filter(&incoming, &a, &Snapshot::of_nodes(nodes)), want, "{case}");
        }
    }

    #[test]
    fn a_node_without_the_topology_key_fails_required_affinity_only() {
        let bare = node("bare", json!({}));
        let p = app(
            "p",
            "web",
            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web", ZONE)]}}),
        );
        assert_eq!(
            InterPodAffinity.filter(&p, &bare, &Snapshot::of_nodes(vec![bare.clone()])),
            Err(Unfit::unresolvable(AFFINITY))
        );
        let q = app(
            "q",
            "web",
            json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("web", ZONE)]}}),
        );
        assert_eq!(InterPodAffinity.filter(&q, &bare, &Snapshot::of_nodes(vec![bare.clone()])), Ok(()));
    }

    #[test]
    fn preferred_terms_score_toward_and_away_from_pods() {
        let mut a = zone_node("a", "z1");
        a.add_pod(app("x", "db", json!({})));
        let b = zone_node("b", "z2");
        let near = app(
            "p",
            "web",
            json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": term("db", HOST)}]}}),
        );
        let far = app(
            "p",
            "web",
            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": term("db", HOST)}]}}),
        );
        let feasible = [&a, &b];
        let scores = |p: &PodInfo| {
            let mut s: Vec<i64> = feasible.iter().map(|n| InterPodAffinity.score(p, n, &feasible)).collect();
            InterPodAffinity.normalize(&mut s);
            s
        };
        assert_eq!(scores(&near), [100, 0]);
        assert_eq!(scores(&far), [0, 100]);
    }
}
