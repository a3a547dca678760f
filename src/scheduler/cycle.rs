//! One scheduling cycle for one pod, as a pure function of a [`Snapshot`]: PreFilter and
//! Filter over every node, Score over those that fit, and for a pod that fits nowhere the
//! diagnosis and what default preemption makes of it ([`super::preemption`]).

use super::framework::{fit_error, run_filters, NodeInfo, PodInfo, Profile, Snapshot, Unfit, NO_NODES};
use super::preemption::{self, Candidate};

/// Where a pod goes, or why it goes nowhere.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Node(String),
    Unschedulable(String),
    /// It fits nowhere, but evicting the candidate's victims makes room on its node; the
    /// message has no preemption part then, as upstream's.
    Preempt {
        message: String,
        candidate: Candidate,
    },
}

/// The pod's verdict on each node, PreFilter first.
pub struct Filtered {
    /// A PreFilter refusal, which refuses every node.
    pub pre: Option<Unfit>,
    pub verdicts: Vec<Result<(), Unfit>>,
}

/// Runs PreFilter, then the filters on every node.
pub fn filter_all(profile: &Profile, pod: &PodInfo, snap: &Snapshot) -> Filtered {
    for p in &profile.filters {
        if let Err(u) = p.pre_filter(pod, snap) {
            let verdicts = snap.nodes.iter().map(|_| Err(u.clone())).collect();
            return Filtered { pre: Some(u), verdicts };
        }
    }
    let verdicts = snap
        .nodes
        .iter()
        .map(|n| {
            // Pods nominated to the node that matter more hold their room (upstream runs
            // the filters with them added).
            let mut ahead = snap
                .nominated
                .iter()
                .filter(|(node, p)| *node == n.name && p.priority >= pod.priority && p.key() != pod.key())
                .peekable();
            if ahead.peek().is_none() {
                return run_filters(&profile.filters, pod, n, snap);
            }
            let mut with = n.clone();
            ahead.for_each(|(_, p)| with.add_pod(p.clone()));
            run_filters(&profile.filters, pod, &with, snap)
        })
        .collect();
    Filtered { pre: None, verdicts }
}

/// The best of the nodes that fit: the highest weighted sum of normalized scores, the
/// first by name among equals.
pub fn pick<'a>(profile: &Profile, pod: &PodInfo, feasible: &[&'a NodeInfo]) -> Option<&'a NodeInfo> {
    if feasible.len() <= 1 {
        return feasible.first().copied();
    }
    let mut totals = vec![0i64; feasible.len()];
    for s in &profile.scores {
        let mut scores: Vec<i64> = feasible.iter().map(|n| s.score(pod, n, feasible)).collect();
        s.normalize(&mut scores);
        for (t, v) in totals.iter_mut().zip(scores) {
            *t += v * s.weight();
        }
    }
    let best = totals.iter().enumerate().fold(0, |best, (i, t)| if *t > totals[best] { i } else { best });
    feasible.get(best).copied()
}

/// One scheduling cycle for one pod over a snapshot of the nodes.
pub fn decide(profile: &Profile, pod: &PodInfo, snap: &Snapshot) -> Decision {
    if snap.nodes.is_empty() {
        return Decision::Unschedulable(NO_NODES.to_string());
    }
    let filtered = filter_all(profile, pod, snap);
    let feasible: Vec<&NodeInfo> =
        snap.nodes.iter().zip(&filtered.verdicts).filter(|(_, v)| v.is_ok()).map(|(n, _)| n).collect();
    if let Some(node) = pick(profile, pod, &feasible) {
        return Decision::Node(node.name.clone());
    }
    let statuses: Vec<Unfit> = filtered.verdicts.into_iter().filter_map(Result::err).collect();
    let n = snap.nodes.len();
    match preemption::preempt(profile, pod, snap, &statuses) {
        Ok(candidate) => Decision::Preempt { message: fit_error(n, &statuses, filtered.pre.as_ref(), None), candidate },
        Err(post) => Decision::Unschedulable(fit_error(n, &statuses, filtered.pre.as_ref(), Some(&post))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::scheduler::plugins::default_profile;
    use crate::scheduler::plugins::testing::{node, pod};

    fn asking(cpu: &str) -> PodInfo {
        pod(json!({"containers": [{"resources": {"requests": {"cpu": cpu}}}]}))
    }

    fn on(nodes: Vec<NodeInfo>) -> Snapshot {
        Snapshot::of_nodes(nodes)
    }

    #[test]
    fn the_least_allocated_fitting_node_wins() {
        let profile = default_profile();
        let mut busy = node("a", json!({}));
        busy.add_pod(asking("1"));
        let idle = node("b", json!({}));
        assert_eq!(decide(&profile, &asking("500m"), &on(vec![busy.clone(), idle])), Decision::Node("b".into()));
        assert_eq!(decide(&profile, &asking("500m"), &on(vec![busy])), Decision::Node("a".into()));
    }

    #[test]
    fn no_fit_gives_upstreams_diagnosis() {
        let profile = default_profile();
        let mut n = node("a", json!({}));
        n.add_pod(asking("1500m"));
        assert_eq!(
            decide(&profile, &asking("1"), &on(vec![n.clone()])),
            Decision::Unschedulable(
                "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.".into()
            )
        );
        assert_eq!(
            decide(&profile, &asking("3"), &on(vec![n.clone()])),
            Decision::Unschedulable(
                "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".into()
            )
        );
        let tainted =
            node("b", json!({"spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}}));
        assert_eq!(
            decide(&profile, &asking("1"), &on(vec![n, tainted])),
            Decision::Unschedulable(
                "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.".into()
            )
        );
        assert_eq!(decide(&profile, &asking("1"), &on(vec![])), Decision::Unschedulable(NO_NODES.into()));
    }

    #[test]
    fn a_pod_that_fits_only_by_evicting_gets_a_candidate_and_no_preemption_message() {
        let profile = default_profile();
        let mut n = node("a", json!({}));
        n.add_pod(pod(json!({"priority": 1, "containers": [{"resources": {"requests": {"cpu": "1500m"}}}]})));
        let urgent = pod(json!({"priority": 10, "containers": [{"resources": {"requests": {"cpu": "1"}}}]}));
        match decide(&profile, &urgent, &on(vec![n])) {
            Decision::Preempt { message, candidate } => {
                assert_eq!(message, "0/1 nodes are available: 1 Insufficient cpu.");
                assert_eq!((candidate.node.as_str(), candidate.victims.len()), ("a", 1));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_nominated_pod_of_higher_priority_holds_its_room() {
        let profile = default_profile();
        let n = node("a", json!({}));
        let nominated =
            Arc::new(pod(json!({"priority": 10, "containers": [{"resources": {"requests": {"cpu": "1500m"}}}]})));
        let mut snap = on(vec![n]);
        snap.nominated.push(("a".into(), nominated));
        let mut low = pod(json!({"priority": 1, "containers": [{"resources": {"requests": {"cpu": "1"}}}]}));
        low.name = "other".into();
        assert!(matches!(decide(&profile, &low, &snap), Decision::Unschedulable(_)));
        let mut high = pod(json!({"priority": 20, "containers": [{"resources": {"requests": {"cpu": "1"}}}]}));
        high.name = "other".into();
        assert_eq!(decide(&profile, &high, &snap), Decision::Node("a".into()));
    }

    #[test]
    fn lower_priority_pods_make_the_preemption_message_name_what_still_blocks() {
        let profile = default_profile();
        let mut n = node("a", json!({}));
        n.add_pod(pod(json!({"priority": -5, "containers": [{"resources": {"requests": {"cpu": "1500m"}}}]})));
        n.add_pod(pod(json!({"priority": 20, "containers": [{"resources": {"requests": {"cpu": "400m"}}}]})));
        let urgent = pod(json!({"priority": 10, "containers": [{"resources": {"requests": {"cpu": "1700m"}}}]}));
        assert_eq!(
            decide(&profile, &urgent, &on(vec![n])),
            Decision::Unschedulable(
                "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Insufficient cpu."
                    .into()
            )
        );
    }
}
