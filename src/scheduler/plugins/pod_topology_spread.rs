//! PodTopologySpread: a pod's `topologySpreadConstraints` keep the pods its selector
//! matches evenly spread over topology domains.
//!
//! The domains are the values of the constraint's key on the nodes that count (those that
//! pass the pod's node affinity unless `nodeAffinityPolicy: Ignore`, those whose taints it
//! tolerates when `nodeTaintsPolicy: Honor`, and that carry every constraint's key). A
//! `DoNotSchedule` constraint refuses a node where placing the pod would make its domain's
//! count exceed the smallest domain's (0 when there are fewer domains than `minDomains`)
//! by more than `maxSkew`; a `ScheduleAnyway` one prefers the nodes of emptier domains.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Taint;

use super::{matches_node_affinity, tolerates};
use crate::scheduler::framework::{FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Snapshot, SpreadConstraint, Unfit};

pub const REASON: &str = "node(s) didn't match pod topology spread constraints";
pub const MISSING_LABEL: &str = "node(s) didn't match pod topology spread constraints (missing required label)";

pub struct PodTopologySpread;

/// Whether `node` counts for the pod's constraints `cs`.
fn counts_node(pod: &PodInfo, cs: &[&SpreadConstraint], node: &NodeInfo) -> bool {
    if !cs.iter().all(|c| node.label(&c.topology_key).is_some()) {
        return false;
    }
    if cs.iter().any(|c| c.honor_node_affinity) && !matches_node_affinity(pod, node) {
        return false;
    }
    if cs.iter().any(|c| c.honor_node_taints) {
        let tolerations = pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref());
        let taints: &[Taint] = node.node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or(&[]);
        let refused = taints
            .iter()
            .any(|t| matches!(t.effect.as_str(), "NoSchedule" | "NoExecute") && !tolerates(tolerations, t));
        if refused {
            return false;
        }
    }
    true
}

/// The matching pods per domain of `c`'s key, over the nodes that count.
fn domain_counts<'a>(
    pod: &PodInfo,
    all: &[&SpreadConstraint],
    c: &SpreadConstraint,
    nodes: impl Iterator<Item = &'a NodeInfo>,
) -> HashMap<&'a str, i64> {
    let mut counts = HashMap::new();
    for n in nodes.filter(|n| counts_node(pod, all, n)) {
        let Some(v) = n.label(&c.topology_key) else { continue };
        let matched = n.pods.iter().filter(|p| c.counts(&pod.namespace, p)).count() as i64;
        *counts.entry(v).or_insert(0) += matched;
    }
    counts
}

impl FilterPlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> Result<(), Unfit> {
        let hard: Vec<&SpreadConstraint> = pod.spread.iter().filter(|c| c.hard).collect();
        for c in &hard {
            let Some(value) = node.label(&c.topology_key) else {
                return Err(Unfit::unresolvable(MISSING_LABEL));
            };
            let counts = domain_counts(pod, &hard, c, snap.nodes.iter());
            let min = if (counts.len() as i64) < i64::from(c.min_domains) {
                0
            } else {
                counts.values().copied().min().unwrap_or(0)
            };
            let own = i64::from(c.selector.as_ref().is_some_and(|s| kube::core::SelectorExt::matches(s, &pod.labels)));
            let here = counts.get(value).copied().unwrap_or(0);
            if here + own - min > i64::from(c.max_skew) {
                return Err(Unfit::unschedulable(REASON));
            }
        }
        Ok(())
    }
}

impl ScorePlugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn weight(&self) -> i64 {
        2
    }

    /// Upstream's raw score, lower is better: per soft constraint the matching pods in the
    /// node's domain weighted by the log of the number of domains, plus `maxSkew - 1`;
    /// -1 for a node that lacks a key (it gets 0 after normalizing).
    fn score(&self, pod: &PodInfo, node: &NodeInfo, feasible: &[&NodeInfo]) -> i64 {
        let soft: Vec<&SpreadConstraint> = pod.spread.iter().filter(|c| !c.hard).collect();
        if soft.is_empty() {
            return 0;
        }
        if !soft.iter().all(|c| node.label(&c.topology_key).is_some()) {
            return -1;
        }
        let mut score = 0.0;
        for c in &soft {
            let counts = domain_counts(pod, &soft, c, feasible.iter().copied());
            let weight = ((counts.len() + 2) as f64).ln();
            let here = node.label(&c.topology_key).and_then(|v| counts.get(v)).copied().unwrap_or(0);
            score += here as f64 * weight + f64::from(c.max_skew - 1);
        }
        score.round() as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        let counted = scores.iter().copied().filter(|s| *s >= 0);
        let (min, max) = (counted.clone().min().unwrap_or(0), counted.max().unwrap_or(0));
        for s in scores.iter_mut() {
            *s = match *s {
                s if s < 0 => 0,
                _ if max == 0 => 100,
                v => 100 * (max + min - v) / max,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::scheduler::plugins::testing::{node, pod_with};

    const ZONE: &str = "topology.kubernetes.io/zone";
    const HOST: &str = "kubernetes.io/hostname";

    fn web(constraints: Value) -> PodInfo {
        pod_with(
            json!({"name": "p", "namespace": "default", "labels": {"app": "web"}}),
            json!({"topologySpreadConstraints": constraints}),
        )
    }

    fn spread(key: &str, skew: i32, when: &str) -> Value {
        json!([{"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when, "labelSelector": {"matchLabels": {"app": "web"}}}])
    }

    fn other(ns: &str, app: &str) -> PodInfo {
        pod_with(json!({"name": "x", "namespace": ns, "labels": {"app": app}}), json!({}))
    }

    fn zoned(name: &str, zone: &str, pods: Vec<PodInfo>) -> NodeInfo {
        let mut n = node(name, json!({"metadata": {"labels": {ZONE: zone}}}));
        pods.into_iter().for_each(|p| n.add_pod(p));
        n
    }

    /// (case, incoming pod, nodes (the first is judged), verdict)
    type Case = (&'static str, PodInfo, Vec<NodeInfo>, Result<(), Unfit>);

    #[test]
    fn filter_table() {
        let web_pod = || other("default", "web");
        // (case, incoming pod, nodes (a is judged), verdict on a)
        let cases: Vec<Case> = vec![
            (
                "an even spread takes one more anywhere",
                web(spread(HOST, 1, "DoNotSchedule")),
                vec![zoned("a", "z1", vec![web_pod()]), zoned("b", "z1", vec![web_pod()])],
                Ok(()),
            ),
            (
                "a skew over maxSkew refuses",
                web(spread(HOST, 1, "DoNotSchedule")),
                vec![zoned("a", "z1", vec![web_pod()]), zoned("b", "z1", vec![])],
                Err(Unfit::unschedulable(REASON)),
            ),
            (
                "maxSkew 2 allows it",
                web(spread(HOST, 2, "DoNotSchedule")),
                vec![zoned("a", "z1", vec![web_pod()]), zoned("b", "z1", vec![])],
                Ok(()),
            ),
            (
                "pods of other namespaces or labels do not count",
                web(spread(HOST, 1, "DoNotSchedule")),
                vec![
                    zoned("a", "z1", vec![other("elsewhere", "web"), other("default", "db")]),
                    zoned("b", "z1", vec![]),
                ],
                Ok(()),
            ),
            (
                "zones are domains",
                web(spread(ZONE, 1, "DoNotSchedule")),
                vec![zoned("a", "z1", vec![]), zoned("b", "z1", vec![web_pod()]), zoned("c", "z2", vec![])],
                Err(Unfit::unschedulable(REASON)),
            ),
            (
                "ScheduleAnyway never filters",
                web(spread(HOST, 1, "ScheduleAnyway")),
                vec![zoned("a", "z1", vec![web_pod(), web_pod()]), zoned("b", "z1", vec![])],
                Ok(()),
            ),
            (
                "minDomains above the domains makes the minimum 0",
                web(
                    json!([{"maxSkew": 1, "minDomains": 3, "topologyKey": ZONE, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]),
                ),
                vec![zoned("a", "z1", vec![web_pod()]), zoned("c", "z2", vec![web_pod()])],
                Err(Unfit::unschedulable(REASON)),
            ),
            (
                "a node the pod's selector excludes is no domain",
                pod_with(
                    json!({"name": "p", "namespace": "default", "labels": {"app": "web"}}),
                    json!({"nodeSelector": {ZONE: "z1"}, "topologySpreadConstraints": spread(ZONE, 1, "DoNotSchedule")}),
                ),
                vec![zoned("a", "z1", vec![web_pod()]), zoned("c", "z2", vec![])],
                Ok(()),
            ),
        ];
        for (case, pod, nodes, want) in cases {
            assert_eq!(PodTopologySpread.filter(&pod, &nodes[0], &Snapshot::of_nodes(nodes.clone())), want, "{case}");
        }
        let bare = node("bare", json!({"metadata": {"labels": {}}}));
        assert_eq!(
            PodTopologySpread.filter(
                &web(spread(ZONE, 1, "DoNotSchedule")),
                &bare,
                &Snapshot::of_nodes(vec![bare.clone()])
            ),
            Err(Unfit::unresolvable(MISSING_LABEL))
        );
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let a = zoned("a", "z1", vec![other("default", "web"), other("default", "web")]);
        let b = zoned("b", "z1", vec![]);
        let feasible = [&a, &b];
        let p = web(spread(HOST, 1, "ScheduleAnyway"));
        let mut s: Vec<i64> = feasible.iter().map(|n| PodTopologySpread.score(&p, n, &feasible)).collect();
        PodTopologySpread.normalize(&mut s);
        assert!(s[1] > s[0], "{s:?}");
    }
}
