//! Which pods a shrinking ReplicaSet deletes first: upstream's `ActivePodsWithRanks` order
//! (with pod-deletion-cost and logarithmic scale-down, both on by default since 1.22).

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::controllers::podutil;

/// The annotation by which users say which pods to delete first (lower cost first).
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

fn phase_rank(pod: &Pod) -> u8 {
    match podutil::phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn deletion_cost(pod: &Pod) -> i32 {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(DELETION_COST)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
}

/// `floor(log2(now - t))` in nanoseconds; -1 for a time not in the past.
fn log_rank(t: Timestamp, now: Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d <= 0 {
        return -1;
    }
    (d as f64).log2() as i64
}

/// Compares two times so that the more recent comes first, in log2 buckets of their age;
/// `None` when they fall in one bucket.
fn newer_first(t1: Option<Timestamp>, t2: Option<Timestamp>, now: Timestamp) -> Option<Ordering> {
    match (t1, t2) {
        (a, b) if a == b => None,
        // A missing time counts as the newest.
        (None, _) => Some(Ordering::Less),
        (_, None) => Some(Ordering::Greater),
        (Some(a), Some(b)) => match log_rank(a, now).cmp(&log_rank(b, now)) {
            Ordering::Equal => None,
            o => Some(o),
        },
    }
}

/// Orders `pods` so that those to delete first come first. `related` are all the pods of the
/// owner's family (for a Deployment, those of all its ReplicaSets): a pod sharing its node
/// with more of them goes earlier.
pub fn sort_for_deletion(pods: &mut [&Pod], related: &[&Pod], now: Timestamp) {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in related {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            if podutil::is_active(p) {
                *per_node.entry(n).or_default() += 1;
            }
        }
    }
    let rank = |p: &Pod| -> usize {
        p.spec.as_ref().and_then(|s| s.node_name.as_deref()).and_then(|n| per_node.get(n)).copied().unwrap_or(0)
    };
    pods.sort_by(|a, b| compare(a, b, rank(a), rank(b), now));
}

fn compare(a: &Pod, b: &Pod, rank_a: usize, rank_b: usize, now: Timestamp) -> Ordering {
    let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    // 1. Unassigned before assigned.
    if node(a) != node(b) {
        return node(a).cmp(&node(b));
    }
    // 2. Pending before Unknown before Running.
    if phase_rank(a) != phase_rank(b) {
        return phase_rank(a).cmp(&phase_rank(b));
    }
    // 3. Not ready before ready.
    let (ra, rb) = (podutil::is_ready(a), podutil::is_ready(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    // 4. Lower deletion cost first.
    if deletion_cost(a) != deletion_cost(b) {
        return deletion_cost(a).cmp(&deletion_cost(b));
    }
    // 5. More pods of the family on the same node first.
    if rank_a != rank_b {
        return rank_b.cmp(&rank_a);
    }
    // 6. Ready for less time first.
    if ra && rb {
        if let Some(o) = newer_first(podutil::ready_since(a), podutil::ready_since(b), now) {
            return o;
        }
    }
    // 7. More restarts first.
    if restarts(a) != restarts(b) {
        return restarts(b).cmp(&restarts(a));
    }
    // 8. Newer first.
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    if let Some(o) = newer_first(created(a), created(b), now) {
        return o;
    }
    a.metadata.uid.cmp(&b.metadata.uid)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;
    use crate::controllers::podutil::testing::make_ready;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn pod(name: &str, node: Option<&str>, phase: &str, created: i64) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(name.into()),
                creation_timestamp: Some(Time(ts(created))),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: node.map(Into::into), ..Default::default() }),
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
        }
    }

    fn order(pods: &[Pod], now: i64) -> Vec<String> {
        let mut refs: Vec<&Pod> = pods.iter().collect();
        let related = refs.clone();
        sort_for_deletion(&mut refs, &related, ts(now));
        refs.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
    }

    #[test]
    fn upstream_ranking() {
        let now = 100_000;
        let mut ready_old = pod("ready-old", Some("n"), "Running", 1000);
        make_ready(&mut ready_old, ts(1000));
        let mut ready_new = pod("ready-new", Some("n"), "Running", 99_000);
        make_ready(&mut ready_new, ts(99_990));
        let cases = vec![
            // (pods, expected order)
            (
                vec![pod("assigned", Some("n"), "Pending", 1), pod("unassigned", None, "Pending", 1)],
                vec!["unassigned", "assigned"],
            ),
            (
                vec![
                    pod("running", Some("n"), "Running", 1),
                    pod("unknown", Some("n"), "Unknown", 1),
                    pod("pending", Some("n"), "Pending", 1),
                ],
                vec!["pending", "unknown", "running"],
            ),
            (vec![ready_old.clone(), pod("notready", Some("n"), "Running", 1)], vec!["notready", "ready-old"]),
            (vec![ready_old.clone(), ready_new.clone()], vec!["ready-new", "ready-old"]),
            (vec![pod("old", Some("n"), "Running", 10), pod("new", Some("n"), "Running", 90_000)], vec!["new", "old"]),
        ];
        for (pods, want) in cases {
            assert_eq!(order(&pods, now), want);
        }
    }

    #[test]
    fn deletion_cost_and_restarts() {
        let mut cheap = pod("cheap", Some("n"), "Running", 1);
        cheap.metadata.annotations = Some([(DELETION_COST.to_string(), "-5".to_string())].into());
        let dear = pod("dear", Some("n"), "Running", 1);
        assert_eq!(order(&[dear.clone(), cheap], 10), vec!["cheap", "dear"]);
        let mut crashy = pod("crashy", Some("n"), "Running", 1);
        crashy.status.as_mut().unwrap().container_statuses =
            Some(vec![k8s_openapi::api::core::v1::ContainerStatus { restart_count: 4, ..Default::default() }]);
        assert_eq!(order(&[dear, crashy], 10), vec!["crashy", "dear"]);
    }

    #[test]
    fn times_in_one_log_bucket_tie() {
        // 1000 s and 1010 s old fall in one log2 bucket of nanoseconds: the UID decides.
        assert_eq!(
            order(&[pod("b", Some("n"), "Running", 0), pod("a", Some("n"), "Running", 10)], 1010),
            vec!["a", "b"]
        );
        assert_eq!(
            order(&[pod("a", Some("n"), "Running", 0), pod("b", Some("n"), "Running", 10)], 1010),
            vec!["a", "b"]
        );
    }
}
