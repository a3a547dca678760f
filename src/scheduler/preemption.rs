//! Default preemption (upstream's PostFilter): a pod that fits nowhere may evict pods of
//! lower priority. On each node where that could help, the fewest victims are chosen by
//! taking every lower-priority pod away and giving back, most important first, each one
//! the pod still fits beside; of the nodes with victims the one whose eviction hurts least
//! is picked. Where no node has victims, the diagnosis says why, in upstream's words.

use std::sync::Arc;

use k8s_openapi::jiff::Timestamp;

use super::framework::{fit_error, run_filters, Code, NodeInfo, PodInfo, Profile, Snapshot, Unfit};

const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// A node where evicting `victims` makes room for the pod.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.node == other.node
            && self.victims.len() == other.victims.len()
            && self.victims.iter().zip(&other.victims).all(|(a, b)| a.key() == b.key())
    }
}

impl Eq for Candidate {}

fn priority_of(p: &PodInfo) -> i32 {
    p.priority
}

/// When a pod started; one that has not counts as starting now (upstream).
fn start_time(p: &PodInfo) -> Timestamp {
    p.pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0).unwrap_or_else(Timestamp::now)
}

/// Whether `pod` may preempt at all; the refusal is upstream's message.
fn eligible(pod: &PodInfo, snap: &Snapshot, statuses: &[Unfit]) -> Result<(), String> {
    let spec = pod.pod.spec.as_ref();
    if spec.and_then(|s| s.preemption_policy.as_deref()) == Some("Never") {
        return Err("not eligible due to preemptionPolicy=Never.".into());
    }
    // Already nominated and its victims are still going: wait for them rather than evict more.
    let nominated = pod.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()).unwrap_or("");
    if let Some(i) = snap.nodes.iter().position(|n| n.name == nominated) {
        let unresolvable = statuses.get(i).is_some_and(|s| s.code == Code::UnschedulableAndUnresolvable);
        if !unresolvable && snap.nodes[i].pods.iter().any(|p| p.terminating && p.priority < pod.priority) {
            return Err("not eligible due to a terminating pod on the nominated node.".into());
        }
    }
    Ok(())
}

/// The fewest victims on `snap.nodes[i]` that make room for `pod`, or why there are none.
fn select_victims(profile: &Profile, pod: &PodInfo, snap: &Snapshot, i: usize) -> Result<Vec<Arc<PodInfo>>, Unfit> {
    let node = &snap.nodes[i];
    let mut potential: Vec<Arc<PodInfo>> = node.pods.iter().filter(|p| p.priority < pod.priority).cloned().collect();
    if potential.is_empty() {
        return Err(Unfit::unresolvable(NO_VICTIMS));
    }
    let mut trial = snap.clone();
    let fits = |trial: &mut Snapshot, candidate: NodeInfo| {
        trial.nodes[i] = candidate;
        run_filters(&profile.filters, pod, &trial.nodes[i], trial)
    };
    let mut kept = node.retaining(|p| p.priority >= pod.priority);
    fits(&mut trial, kept.clone())?;
    // Most important first: higher priority, then the longer running.
    potential.sort_by(|a, b| priority_of(b).cmp(&priority_of(a)).then_with(|| start_time(a).cmp(&start_time(b))));
    let mut victims = Vec::new();
    for p in potential {
        let mut with = kept.clone();
        with.add_pod(p.clone());
        if fits(&mut trial, with.clone()).is_ok() {
            kept = with;
        } else {
            victims.push(p);
        }
    }
    if victims.is_empty() {
        return Err(Unfit::unresolvable(NO_VICTIMS));
    }
    Ok(victims)
}

/// Upstream's choice among candidates: the lowest highest-priority victim, then the lowest
/// sum of priorities, then the fewest victims, then the latest start among the
/// highest-priority victims; then the first.
fn pick(candidates: Vec<Candidate>) -> Option<Candidate> {
    let key = |c: &Candidate| {
        let highest = c.victims.iter().map(|v| v.priority).max().unwrap_or(i32::MIN);
        // Offset so negative priorities still add up to a smaller sum (upstream).
        let sum: i64 = c.victims.iter().map(|v| i64::from(v.priority) + i64::from(i32::MAX) + 1).sum();
        let earliest = c.victims.iter().filter(|v| v.priority == highest).map(|v| start_time(v)).min();
        (highest, sum, c.victims.len(), std::cmp::Reverse(earliest))
    };
    candidates.into_iter().enumerate().min_by_key(|(i, c)| (key(c), *i)).map(|(_, c)| c)
}

/// Default preemption for a pod that fits nowhere (`statuses`: each node's refusal): the
/// node and victims to evict, or the `preemption: ...` part of the diagnosis.
pub fn preempt(profile: &Profile, pod: &PodInfo, snap: &Snapshot, statuses: &[Unfit]) -> Result<Candidate, String> {
    eligible(pod, snap, statuses).map_err(|m| format!("preemption: {m}"))?;
    let mut out = Vec::with_capacity(snap.nodes.len());
    let mut candidates = Vec::new();
    for (i, (node, status)) in snap.nodes.iter().zip(statuses).enumerate() {
        if status.code == Code::UnschedulableAndUnresolvable {
            out.push(Unfit::unresolvable(NOT_HELPFUL));
            continue;
        }
        match select_victims(profile, pod, snap, i) {
            Ok(victims) => candidates.push(Candidate { node: node.name.clone(), victims }),
            Err(unfit) => out.push(unfit),
        }
    }
    pick(candidates).ok_or_else(|| format!("preemption: {}", fit_error(snap.nodes.len(), &out, None, None)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scheduler::plugins::default_profile;
    use crate::scheduler::plugins::testing::{node, pod_with};

    fn asking(name: &str, priority: i32, cpu: &str) -> PodInfo {
        pod_with(
            json!({"name": name, "namespace": "default"}),
            json!({"priority": priority, "containers": [{"resources": {"requests": {"cpu": cpu}}}]}),
        )
    }

    fn started(name: &str, priority: i32, cpu: &str, at: &str) -> PodInfo {
        let mut p = asking(name, priority, cpu);
        let mut pod = (*p.pod).clone();
        pod.status = Some(serde_json::from_value(json!({"startTime": at})).unwrap());
        p.pod = Arc::new(pod);
        p
    }

    fn node_with(name: &str, pods: Vec<PodInfo>) -> NodeInfo {
        let mut n = node(name, json!({}));
        pods.into_iter().for_each(|p| n.add_pod(p));
        n
    }

    fn names(c: &Candidate) -> (String, Vec<String>) {
        (c.node.clone(), c.victims.iter().map(|v| v.name.clone()).collect())
    }

    fn run(pod: &PodInfo, nodes: Vec<NodeInfo>) -> Result<(String, Vec<String>), String> {
        let profile = default_profile();
        let snap = Snapshot::of_nodes(nodes);
        let statuses: Vec<Unfit> =
            snap.nodes.iter().map(|n| run_filters(&profile.filters, pod, n, &snap).unwrap_err()).collect();
        preempt(&profile, pod, &snap, &statuses).map(|c| names(&c))
    }

    /// (case, preemptor, nodes, the node and victims or the message)
    type Case = (&'static str, PodInfo, Vec<NodeInfo>, Result<(&'static str, Vec<&'static str>), &'static str>);

    #[test]
    fn victim_selection_table() {
        // Nodes have 2 cpu.
        let cases: Vec<Case> = vec![
            (
                "the one low-priority pod that blocks",
                asking("p", 10, "1500m"),
                vec![node_with("a", vec![asking("low", 0, "1500m")])],
                Ok(("a", vec!["low"])),
            ),
            (
                "only as many as needed, the least important first",
                asking("p", 10, "1"),
                vec![node_with("a", vec![asking("l1", 1, "500m"), asking("l2", 2, "500m"), asking("l5", 5, "500m")])],
                Ok(("a", vec!["l1"])),
            ),
            (
                "equal or higher priority pods are never victims",
                asking("p", 10, "1500m"),
                vec![node_with("a", vec![asking("same", 10, "1"), asking("low", 0, "600m")])],
                Err("preemption: 0/1 nodes are available: 1 Insufficient cpu."),
            ),
            (
                "the node whose highest victim is lowest wins",
                asking("p", 10, "1500m"),
                vec![node_with("a", vec![asking("five", 5, "1500m")]), node_with("b", vec![asking("one", 1, "1500m")])],
                Ok(("b", vec!["one"])),
            ),
            (
                "then the fewest victims",
                asking("p", 10, "1500m"),
                vec![
                    node_with("a", vec![asking("x", 1, "800m"), asking("y", 1, "800m")]),
                    node_with("b", vec![asking("z", 1, "1500m")]),
                ],
                Ok(("b", vec!["z"])),
            ),
            (
                "too big for the node: not helpful",
                asking("p", 10, "3"),
                vec![node_with("a", vec![asking("low", 0, "1")])],
                Err("preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."),
            ),
        ];
        for (case, pod, nodes, want) in cases {
            let want = want.map(|(n, v)| (n.to_string(), v.into_iter().map(String::from).collect::<Vec<_>>()));
            assert_eq!(run(&pod, nodes), want.map_err(String::from), "{case}");
        }
    }

    #[test]
    fn among_equals_the_node_whose_victims_started_last_wins() {
        let pod = asking("p", 10, "1500m");
        let nodes = vec![
            node_with("a", vec![started("old", 1, "1500m", "2025-01-01T00:00:00Z")]),
            node_with("b", vec![started("new", 1, "1500m", "2025-06-01T00:00:00Z")]),
        ];
        assert_eq!(run(&pod, nodes), Ok(("b".into(), vec!["new".into()])));
    }

    #[test]
    fn a_pod_that_may_not_preempt_says_why() {
        let never = pod_with(
            json!({"name": "p", "namespace": "default"}),
            json!({"priority": 10, "preemptionPolicy": "Never", "containers": [{"resources": {"requests": {"cpu": "1500m"}}}]}),
        );
        let nodes = || vec![node_with("a", vec![asking("low", 0, "1500m")])];
        assert_eq!(run(&never, nodes()), Err("preemption: not eligible due to preemptionPolicy=Never.".into()));
        // Nominated to a node where a victim is still terminating.
        let mut waiting = asking("p", 10, "1500m");
        let mut pod = (*waiting.pod).clone();
        pod.status = Some(serde_json::from_value(json!({"nominatedNodeName": "a"})).unwrap());
        waiting.pod = Arc::new(pod);
        let going = pod_with(
            json!({"name": "low", "namespace": "default", "deletionTimestamp": "2025-01-01T00:00:00Z"}),
            json!({"priority": 0, "containers": [{"resources": {"requests": {"cpu": "1500m"}}}]}),
        );
        assert_eq!(
            run(&waiting, vec![node_with("a", vec![going])]),
            Err("preemption: not eligible due to a terminating pod on the nominated node.".into())
        );
    }
}
