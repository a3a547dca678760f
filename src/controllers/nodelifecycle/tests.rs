//! The monitor run second by second against nodes in memory, as the controller's loop and
//! a kubelet would drive it, with the time passed in.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, PodCondition, PodStatus, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::monitor::*;
use super::*;

const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).unwrap()
}

fn ready(status: &str, heartbeat: Timestamp, transition: Timestamp) -> NodeCondition {
    NodeCondition {
        type_: "Ready".into(),
        status: status.into(),
        reason: Some("KubeletReady".into()),
        message: Some("kubelet is posting ready status".into()),
        last_heartbeat_time: Some(Time(heartbeat)),
        last_transition_time: Some(Time(transition)),
    }
}

/// Nodes, their leases and the time; each [`World::tick`] runs one pass and applies it.
struct World {
    monitor: Monitor,
    nodes: BTreeMap<String, Node>,
    leases: HashMap<String, Timestamp>,
    now: i64,
    marked: Vec<String>,
}

impl World {
    fn new() -> Self {
        World::with(Config::default())
    }

    fn with(config: Config) -> Self {
        World { monitor: Monitor::new(config), nodes: BTreeMap::new(), leases: HashMap::new(), now: 0, marked: vec![] }
    }

    fn add(&mut self, name: &str, zone: &str, status: Option<&str>) {
        let now = at(self.now);
        let node = Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(now)),
                labels: (!zone.is_empty())
                    .then(|| [("topology.kubernetes.io/zone".to_string(), zone.to_string())].into()),
                ..Default::default()
            },
            spec: Some(NodeSpec::default()),
            status: Some(NodeStatus { conditions: status.map(|s| vec![ready(s, now, now)]), ..Default::default() }),
        };
        self.nodes.insert(name.into(), node);
    }

    fn node(&mut self, name: &str) -> &mut Node {
        self.nodes.get_mut(name).unwrap()
    }

    /// The kubelet posts its Ready condition with a new heartbeat.
    fn post(&mut self, name: &str, status: &str) {
        let now = at(self.now);
        let cs = self.node(name).status.as_mut().unwrap().conditions.get_or_insert_with(Vec::new);
        match cs.iter_mut().find(|c| c.type_ == "Ready") {
            Some(c) => {
                let transition = if c.status == status { c.last_transition_time.clone().unwrap().0 } else { now };
                *c = ready(status, now, transition);
            }
            None => cs.push(ready(status, now, now)),
        }
    }

    fn renew(&mut self, name: &str) {
        self.leases.insert(name.into(), at(self.now));
    }

    fn tick(&mut self) -> Pass {
        let observed: Vec<Observed<'_>> = self
            .nodes
            .values()
            .map(|n| Observed { node: n, lease_renewed: self.leases.get(n.metadata.name.as_deref().unwrap()).copied() })
            .collect();
        let pass = self.monitor.pass(&observed, at(self.now));
        for a in &pass.actions {
            let Some(node) = self.nodes.get_mut(&a.name) else { continue };
            if let Some(c) = &a.conditions {
                node.status.as_mut().unwrap().conditions = Some(c.clone());
            }
            if let Some(t) = &a.taints {
                node.spec.as_mut().unwrap().taints = Some(t.clone());
            }
            if a.mark_pods_not_ready {
                self.marked.push(a.name.clone());
            }
        }
        pass
    }

    /// Runs a pass every second up to `secs`, with `each` done before each pass.
    fn run_until(&mut self, secs: i64, mut each: impl FnMut(&mut World)) {
        while self.now < secs {
            self.now += 1;
            each(self);
            self.tick();
        }
    }

    fn condition(&self, name: &str, type_: &str) -> Option<NodeCondition> {
        self.nodes[name].status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_).cloned()
    }

    fn ready(&self, name: &str) -> String {
        self.condition(name, "Ready").map(|c| c.status).unwrap_or_default()
    }

    fn taints(&self, name: &str) -> Vec<String> {
        let t = self.nodes[name].spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        t.iter().map(|t| format!("{}:{}", t.key.trim_start_matches("node.kubernetes.io/"), t.effect)).collect()
    }
}

#[test]
fn conditions_and_taints_follow_lease_and_status_age() {
    struct Case {
        what: &'static str,
        /// The node has posted Ready at creation (time 0), or not at all.
        posted: Option<&'static str>,
        /// It posts this again at 100 - the age, or never.
        status_age: Option<(i64, &'static str)>,
        /// It renews its lease every 10 s until 100 - the age, or never.
        lease_age: Option<i64>,
        ready: &'static str,
        reason: Option<&'static str>,
        taints: &'static [&'static str],
    }
    let cases = [
        Case {
            what: "lease fresh, status old",
            posted: Some("True"),
            status_age: None,
            lease_age: Some(0),
            ready: "True",
            reason: Some("KubeletReady"),
            taints: &[],
        },
        Case {
            what: "lease 40 s old: still within the grace period",
            posted: Some("True"),
            status_age: None,
            lease_age: Some(40),
            ready: "True",
            reason: Some("KubeletReady"),
            taints: &[],
        },
        Case {
            what: "lease 45 s old and status older",
            posted: Some("True"),
            status_age: None,
            lease_age: Some(45),
            ready: "Unknown",
            reason: Some("NodeStatusUnknown"),
            taints: &["unreachable:NoExecute", "unreachable:NoSchedule"],
        },
        Case {
            what: "no lease, status posted 20 s ago",
            posted: Some("True"),
            status_age: Some((20, "True")),
            lease_age: None,
            ready: "True",
            reason: Some("KubeletReady"),
            taints: &[],
        },
        Case {
            what: "no lease, status 60 s old",
            posted: Some("True"),
            status_age: Some((60, "True")),
            lease_age: None,
            ready: "Unknown",
            reason: Some("NodeStatusUnknown"),
            taints: &["unreachable:NoExecute", "unreachable:NoSchedule"],
        },
        Case {
            what: "the kubelet says not ready",
            posted: Some("True"),
            status_age: Some((30, "False")),
            lease_age: Some(0),
            ready: "False",
            reason: Some("KubeletReady"),
            taints: &["not-ready:NoExecute", "not-ready:NoSchedule"],
        },
        Case {
            what: "said not ready, then went silent",
            posted: Some("True"),
            status_age: Some((80, "False")),
            lease_age: Some(80),
            ready: "Unknown",
            reason: Some("NodeStatusUnknown"),
            taints: &["unreachable:NoExecute", "unreachable:NoSchedule"],
        },
        Case {
            what: "never posted, lease renewed",
            posted: None,
            status_age: None,
            lease_age: Some(0),
            ready: "",
            reason: None,
            taints: &[],
        },
        Case {
            what: "never posted nor renewed",
            posted: None,
            status_age: None,
            lease_age: None,
            ready: "Unknown",
            reason: Some("NodeStatusNeverUpdated"),
            taints: &["unreachable:NoExecute", "unreachable:NoSchedule"],
        },
    ];
    for c in cases {
        let mut w = World::new();
        // A healthy neighbour keeps the zone out of full disruption.
        w.add("healthy", "", Some("True"));
        w.add("n", "", c.posted);
        w.tick();
        w.run_until(100, |w| {
            w.renew("healthy");
            if c.lease_age.is_some_and(|age| w.now <= 100 - age && w.now % 10 == 0) {
                w.renew("n");
            }
            if let Some((age, status)) = c.status_age {
                if w.now == 100 - age {
                    w.post("n", status);
                }
            }
        });
        assert_eq!(w.ready("n"), c.ready, "{}: Ready", c.what);
        assert_eq!(w.condition("n", "Ready").and_then(|r| r.reason).as_deref(), c.reason, "{}: reason", c.what);
        assert_eq!(w.taints("n"), c.taints, "{}: taints", c.what);
        assert_eq!(w.ready("healthy"), "True", "{}", c.what);
        assert!(w.taints("healthy").is_empty(), "{}", c.what);
    }
}

#[test]
fn a_silent_node_turns_unknown_once_and_recovers() {
    let mut w = World::new();
    w.add("a", "", Some("True"));
    w.add("b", "", Some("True"));
    let first = w.tick();
    assert!(first.actions.iter().all(|a| a.events[0].0 == "RegisteredNode" && a.conditions.is_none()));
    // b stops at 5 s; the pass that runs out its grace period is the one that acts.
    w.run_until(45, |w| {
        w.renew("a");
        if w.now <= 5 {
            w.renew("b");
        }
    });
    assert_eq!(w.ready("b"), "True");
    w.now += 1;
    w.renew("a");
    let pass = w.tick();
    let b = pass.actions.iter().find(|a| a.name == "b").expect("an action for b");
    let conditions = b.conditions.as_ref().expect("conditions");
    for type_ in ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = conditions.iter().find(|c| c.type_ == type_).expect(type_);
        assert_eq!(c.status, "Unknown", "{type_}");
        assert_eq!(c.last_transition_time, Some(Time(at(46))), "{type_}");
        let (reason, message) = if type_ == "Ready" {
            ("NodeStatusUnknown", "Kubelet stopped posting node status.")
        } else {
            ("NodeStatusNeverUpdated", "Kubelet never posted node status.")
        };
        assert_eq!((c.reason.as_deref(), c.message.as_deref()), (Some(reason), Some(message)), "{type_}");
    }
    // The kubelet's last heartbeat is kept.
    assert_eq!(conditions[0].last_heartbeat_time, Some(Time(at(0))));
    assert!(b.mark_pods_not_ready);
    assert_eq!(b.events, [("NodeNotReady".to_string(), "Node b status is now: NodeNotReady".to_string())]);
    let taints = b.taints.as_ref().expect("taints");
    assert!(taints.iter().all(|t| t.time_added == Some(Time(at(46)))));
    assert_eq!(w.taints("b"), ["unreachable:NoExecute", "unreachable:NoSchedule"]);

    // Later passes change nothing and mark no pods again.
    w.run_until(100, |w| w.renew("a"));
    assert_eq!(w.marked, ["b"]);
    let quiet = w.tick();
    assert!(quiet.actions.is_empty(), "{:?}", quiet.actions);

    // Back: the lease alone leaves it Unknown until the kubelet posts Ready.
    w.now += 1;
    w.renew("a");
    w.renew("b");
    w.tick();
    assert_eq!(w.ready("b"), "Unknown");
    w.now += 1;
    w.post("b", "True");
    w.tick();
    assert_eq!(w.ready("b"), "True");
    assert!(w.taints("b").is_empty());
}

#[test]
fn the_next_pass_is_due_when_a_grace_period_runs_out() {
    let mut w = World::new();
    w.add("a", "", Some("True"));
    w.add("b", "", Some("True"));
    w.renew("a");
    w.renew("b");
    w.tick();
    // Nothing due before the monitor period.
    assert_eq!(w.tick().next, NODE_MONITOR_PERIOD);
    let mut short = World::with(Config { node_monitor_grace_period: Duration::from_secs(2), ..Config::default() });
    short.add("a", "", Some("True"));
    short.renew("a");
    let pass = short.tick();
    assert_eq!(pass.next, Duration::from_millis(2001));
}

#[test]
fn all_nodes_down_is_a_full_disruption_without_noexecute_taints() {
    let mut w = World::new();
    w.add("only", "", Some("True"));
    w.tick();
    w.run_until(60, |_| {});
    assert_eq!(w.ready("only"), "Unknown");
    assert_eq!(w.taints("only"), ["unreachable:NoSchedule"], "the control plane, not the node, may be cut off");

    // Two zones: one fully down while the other is fine is tainted as usual.
    let mut w = World::new();
    w.add("a1", "a", Some("True"));
    w.add("b1", "b", Some("True"));
    w.tick();
    w.run_until(60, |w| w.renew("b1"));
    assert_eq!(w.taints("a1"), ["unreachable:NoExecute", "unreachable:NoSchedule"]);
    // Then b goes too: every zone is down, the NoExecute taints come off.
    w.run_until(120, |_| {});
    assert_eq!(w.taints("a1"), ["unreachable:NoSchedule"]);
    assert_eq!(w.taints("b1"), ["unreachable:NoSchedule"]);
    // b comes back: a, still Unknown, is tainted again.
    w.now += 1;
    w.renew("b1");
    w.post("b1", "True");
    w.tick();
    assert_eq!(w.taints("b1"), Vec::<String>::new());
    assert_eq!(w.taints("a1"), ["unreachable:NoSchedule", "unreachable:NoExecute"]);
}

#[test]
fn noexecute_taints_go_at_the_zone_rate_and_stop_in_partial_disruption() {
    // 5 nodes, 2 silent: one tainted at once, the other 10 s later.
    let mut w = World::with(Config { node_monitor_period: Duration::from_secs(60), ..Config::default() });
    for n in ["a", "b", "c", "d", "e"] {
        w.add(n, "", Some("True"));
    }
    w.tick();
    let alive = |w: &mut World| {
        for n in ["a", "b", "c"] {
            w.renew(n);
        }
    };
    w.run_until(40, alive);
    w.now += 1;
    alive(&mut w);
    let pass = w.tick();
    assert_eq!(w.taints("d"), ["unreachable:NoExecute", "unreachable:NoSchedule"]);
    assert_eq!(w.taints("e"), ["unreachable:NoSchedule"]);
    assert_eq!(pass.next, NODE_EVICTION_INTERVAL);
    w.run_until(50, alive);
    assert_eq!(w.taints("e"), ["unreachable:NoSchedule"]);
    w.run_until(51, alive);
    assert_eq!(w.taints("e"), ["unreachable:NoSchedule", "unreachable:NoExecute"]);

    // 4 nodes, 3 silent: a small zone in partial disruption taints none.
    let mut w = World::new();
    for n in ["a", "b", "c", "d"] {
        w.add(n, "", Some("True"));
    }
    w.tick();
    w.run_until(100, |w| w.renew("a"));
    for n in ["b", "c", "d"] {
        assert_eq!(w.ready(n), "Unknown");
        assert_eq!(w.taints(n), ["unreachable:NoSchedule"], "{n}");
    }
}

#[test]
fn zone_states_as_upstream() {
    let t = Some("True");
    let f = Some("False");
    let cases: [(&[Option<&str>], ZoneState); 6] = [
        (&[t, t], ZoneState::Normal),
        (&[f], ZoneState::FullDisruption),
        (&[None, f], ZoneState::FullDisruption),
        (&[t, f, f], ZoneState::Normal),
        (&[t, f, f, f], ZoneState::PartialDisruption),
        (&[t, t, t, f, f, f], ZoneState::Normal),
    ];
    for (ready, want) in cases {
        assert_eq!(zone_state(ready, UNHEALTHY_ZONE_THRESHOLD_PERCENT), want, "{ready:?}");
    }
}

#[test]
fn noschedule_taints_mirror_conditions_and_cordon() {
    let cond = |t: &str, s: &str| NodeCondition { type_: t.into(), status: s.into(), ..Default::default() };
    let custom = Taint { key: "example.com/gpu".into(), effect: "NoSchedule".into(), ..Default::default() };
    /// What, the conditions, cordoned, the taints before, the taint keys after.
    type Case<'a> = (&'a str, Vec<NodeCondition>, bool, Vec<Taint>, Vec<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        ("healthy", vec![cond("Ready", "True"), cond("MemoryPressure", "False")], false, vec![], vec![]),
        (
            "pressure",
            vec![
                cond("Ready", "True"),
                cond("MemoryPressure", "True"),
                cond("DiskPressure", "True"),
                cond("PIDPressure", "True"),
            ],
            false,
            vec![],
            vec![
                "node.kubernetes.io/memory-pressure",
                "node.kubernetes.io/disk-pressure",
                "node.kubernetes.io/pid-pressure",
            ],
        ),
        (
            "network",
            vec![cond("NetworkUnavailable", "True")],
            false,
            vec![],
            vec!["node.kubernetes.io/network-unavailable"],
        ),
        ("cordoned", vec![cond("Ready", "True")], true, vec![], vec![TAINT_UNSCHEDULABLE]),
        (
            "recovered, a taint of someone else's kept",
            vec![cond("Ready", "True")],
            false,
            vec![custom.clone(), taint_of(TAINT_NOT_READY, "NoSchedule"), taint_of(TAINT_NOT_READY, "NoExecute")],
            vec!["example.com/gpu", TAINT_NOT_READY],
        ),
    ];
    for (what, conditions, cordoned, mut taints, want) in cases {
        reconcile_no_schedule(&mut taints, &conditions, cordoned, at(0));
        assert_eq!(taints.iter().map(|t| t.key.as_str()).collect::<Vec<_>>(), want, "{what}");
    }
}

fn taint_of(key: &str, effect: &str) -> Taint {
    Taint { key: key.into(), effect: effect.into(), ..Default::default() }
}

#[test]
fn a_ready_pod_turns_not_ready_once() {
    let mut pod = Pod {
        status: Some(PodStatus {
            conditions: Some(vec![
                PodCondition { type_: "PodScheduled".into(), status: "True".into(), ..Default::default() },
                PodCondition { type_: "Ready".into(), status: "True".into(), ..Default::default() },
            ]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let marked = not_ready(&pod, at(5)).expect("changed");
    let c = &marked.status.as_ref().unwrap().conditions.as_ref().unwrap()[1];
    assert_eq!((c.status.as_str(), c.last_transition_time.clone()), ("False", Some(Time(at(5)))));
    assert!(not_ready(&marked, at(6)).is_none());
    pod.status.as_mut().unwrap().conditions.as_mut().unwrap().pop();
    assert!(not_ready(&pod, at(6)).is_none(), "a pod without a Ready condition is left alone");
}
