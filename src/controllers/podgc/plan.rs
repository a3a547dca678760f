//! Which pods the pod garbage collector deletes, as pure functions of the pods and nodes the
//! informers hold, and the quarantine of missing nodes, which is given the time.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::controllers::podutil;

/// How long a node must be missing before its pods are deleted (upstream's quarantineTime):
/// the node informer may not have caught up with a node just made.
pub const QUARANTINE: Duration = Duration::from_secs(40);

/// The taint with which an administrator says a node is out of service for good.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

fn is_evicted(pod: &Pod) -> bool {
    podutil::phase(pod) == "Failed" && pod.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// Upstream's deletion order: evicted pods first, then the oldest, then by name.
fn sort_for_deletion(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        is_evicted(b)
            .cmp(&is_evicted(a))
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The terminated (Succeeded or Failed) pods beyond `threshold`, in deletion order; none if
/// the threshold is 0.
pub fn terminated_over_threshold<'a>(pods: &[&'a Pod], threshold: usize) -> Vec<&'a Pod> {
    if threshold == 0 {
        return Vec::new();
    }
    let mut terminated: Vec<&Pod> = pods.iter().copied().filter(|p| podutil::is_terminal(p)).collect();
    let Some(excess) = terminated.len().checked_sub(threshold).filter(|n| *n > 0) else { return Vec::new() };
    sort_for_deletion(&mut terminated);
    terminated.truncate(excess);
    terminated
}

fn is_ready(node: &Node) -> bool {
    let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

/// Terminating pods on a node that is not ready and tainted out of service: nothing there
/// will finish their deletion.
pub fn terminating_out_of_service<'a>(pods: &[&'a Pod], nodes: &HashMap<&str, &Node>) -> Vec<&'a Pod> {
    let mut out: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_some())
        .filter(|p| {
            let node = node_name(p).and_then(|n| nodes.get(n));
            node.is_some_and(|n| {
                let taints = n.spec.as_ref().and_then(|s| s.taints.as_ref());
                !is_ready(n) && taints.into_iter().flatten().any(|t| t.key == OUT_OF_SERVICE_TAINT)
            })
        })
        .collect();
    sort_for_deletion(&mut out);
    out
}

/// The node names pods are bound to that the node informer does not hold.
pub fn missing_nodes(pods: &[&Pod], nodes: &HashMap<&str, &Node>) -> BTreeSet<String> {
    pods.iter().filter_map(|p| node_name(p)).filter(|n| !nodes.contains_key(n)).map(String::from).collect()
}

/// Pods bound to the nodes confirmed deleted.
pub fn on_deleted_nodes<'a>(pods: &[&'a Pod], deleted: &HashSet<String>) -> Vec<&'a Pod> {
    pods.iter().copied().filter(|p| node_name(p).is_some_and(|n| deleted.contains(n))).collect()
}

/// Terminating pods never scheduled: no kubelet will finish their deletion.
pub fn unscheduled_terminating<'a>(pods: &[&'a Pod]) -> Vec<&'a Pod> {
    pods.iter().copied().filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_none()).collect()
}

/// The condition upstream records on a pod deleted because its node is gone.
pub fn node_gone_condition(now: Timestamp) -> PodCondition {
    PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByPodGC".into()),
        message: Some("PodGC: node no longer exists".into()),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    }
}

/// The pod's conditions with `condition` set (replacing one of its type).
pub fn with_condition(pod: &Pod, condition: PodCondition) -> Vec<PodCondition> {
    let mut out: Vec<PodCondition> = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
    match out.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(c) => *c = condition,
        None => out.push(condition),
    }
    out
}

/// Missing nodes and since when: a node is only taken for deleted once it has been missing
/// for [`QUARANTINE`].
#[derive(Debug, Default)]
pub struct Quarantine {
    since: HashMap<String, Instant>,
}

impl Quarantine {
    /// Records the nodes missing `now` (one no longer missing leaves the quarantine) and
    /// returns those missing for the whole quarantine, which leave it too: the caller looks
    /// them up live.
    pub fn due(&mut self, missing: BTreeSet<String>, now: Instant) -> Vec<String> {
        self.since.retain(|n, _| missing.contains(n));
        for n in missing {
            self.since.entry(n).or_insert(now);
        }
        let mut due: Vec<String> = self
            .since
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) >= QUARANTINE)
            .map(|(n, _)| n.clone())
            .collect();
        due.sort();
        for n in &due {
            self.since.remove(n);
        }
        due
    }

    pub fn len(&self) -> usize {
        self.since.len()
    }

    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, PodSpec, PodStatus, Taint};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;
    use crate::controllers::runtime::Clock;

    /// A clock that moves only when told.
    struct FakeClock {
        start: Instant,
        offset: Mutex<Duration>,
    }

    impl FakeClock {
        fn new() -> Self {
            FakeClock { start: Instant::now(), offset: Mutex::new(Duration::ZERO) }
        }
        fn step(&self, d: Duration) {
            *self.offset.lock().unwrap() += d;
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> Timestamp {
            Timestamp::UNIX_EPOCH + *self.offset.lock().unwrap()
        }
        fn instant(&self) -> Instant {
            self.start + *self.offset.lock().unwrap()
        }
    }

    fn pod(name: &str, created: i64, phase: &str, node: Option<&str>, deleting: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
                deletion_timestamp: deleting.then(|| Time(Timestamp::from_second(created + 1).unwrap())),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: node.map(String::from), ..Default::default() }),
            status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
        }
    }

    fn evicted(name: &str, created: i64) -> Pod {
        let mut p = pod(name, created, "Failed", None, false);
        p.status.as_mut().unwrap().reason = Some("Evicted".into());
        p
    }

    fn node(name: &str, ready: bool, out_of_service: bool) -> Node {
        Node {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(NodeSpec {
                taints: out_of_service.then(|| {
                    vec![Taint { key: OUT_OF_SERVICE_TAINT.into(), effect: "NoExecute".into(), ..Default::default() }]
                }),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn names(pods: &[&Pod]) -> Vec<String> {
        pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
    }

    #[test]
    fn terminated_pods_over_the_threshold_go_evicted_then_oldest_first() {
        let all = [
            pod("run", 1, "Running", None, false),
            pod("new-done", 50, "Succeeded", None, false),
            pod("old-fail", 10, "Failed", None, false),
            evicted("evicted", 90),
            pod("b-same", 20, "Succeeded", None, false),
            pod("a-same", 20, "Failed", None, false),
        ];
        let pods: Vec<&Pod> = all.iter().collect();
        let cases: [(usize, &[&str]); 5] = [
            (0, &[]),
            (5, &[]),
            (4, &["evicted"]),
            (2, &["evicted", "old-fail", "a-same"]),
            (1, &["evicted", "old-fail", "a-same", "b-same"]),
        ];
        for (threshold, want) in cases {
            assert_eq!(names(&terminated_over_threshold(&pods, threshold)), want, "threshold {threshold}");
        }
    }

    #[test]
    fn terminating_pods_go_when_nothing_will_finish_them() {
        let n = [node("down", false, true), node("tainted-ready", true, true), node("not-ready", false, false)];
        let nodes: HashMap<&str, &Node> = n.iter().map(|n| (n.metadata.name.as_deref().unwrap(), n)).collect();
        let all = [
            pod("on-down", 1, "Running", Some("down"), true),
            pod("on-down-alive", 1, "Running", Some("down"), false),
            pod("on-ready", 1, "Running", Some("tainted-ready"), true),
            pod("on-not-ready", 1, "Running", Some("not-ready"), true),
            pod("unscheduled", 1, "Pending", None, true),
            pod("unscheduled-alive", 1, "Pending", None, false),
        ];
        let pods: Vec<&Pod> = all.iter().collect();
        assert_eq!(names(&terminating_out_of_service(&pods, &nodes)), ["on-down"]);
        assert_eq!(names(&unscheduled_terminating(&pods)), ["unscheduled"]);
    }

    #[test]
    fn pods_of_a_missing_node_go_after_the_quarantine() {
        let clock = FakeClock::new();
        let n = [node("here", true, false)];
        let nodes: HashMap<&str, &Node> = n.iter().map(|n| (n.metadata.name.as_deref().unwrap(), n)).collect();
        let all = [
            pod("a", 1, "Running", Some("gone"), false),
            pod("b", 1, "Running", Some("here"), false),
            pod("c", 1, "Running", Some("back"), false),
        ];
        let pods: Vec<&Pod> = all.iter().collect();
        let missing = missing_nodes(&pods, &nodes);
        assert_eq!(missing.iter().collect::<Vec<_>>(), ["back", "gone"]);

        let mut q = Quarantine::default();
        assert!(q.due(missing.clone(), clock.instant()).is_empty(), "just seen missing");
        clock.step(Duration::from_secs(20));
        assert!(q.due(missing.clone(), clock.instant()).is_empty(), "20 s in");
        // "back" appears: it leaves the quarantine, and starts over if it goes again.
        let only_gone: BTreeSet<String> = ["gone".to_string()].into();
        clock.step(Duration::from_secs(19));
        assert!(q.due(only_gone.clone(), clock.instant()).is_empty(), "39 s in");
        assert_eq!(q.len(), 1);
        clock.step(Duration::from_secs(1));
        let due = q.due(missing, clock.instant());
        assert_eq!(due, ["gone"], "40 s in; back has only just gone missing again");
        assert_eq!(q.len(), 1);

        let deleted: HashSet<String> = due.into_iter().collect();
        assert_eq!(names(&on_deleted_nodes(&pods, &deleted)), ["a"]);
        let c = with_condition(&all[0], node_gone_condition(clock.now()));
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].type_.as_str(), c[0].reason.as_deref()), ("DisruptionTarget", Some("DeletionByPodGC")));
        assert_eq!(c[0].last_transition_time, Some(Time(Timestamp::UNIX_EPOCH + Duration::from_secs(40))));
    }
}
