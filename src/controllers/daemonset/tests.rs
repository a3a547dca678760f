//! The sync run in memory: a set, nodes and pods, with the scheduler and kubelet played by
//! the test (pods are bound at once, made Ready or finish terminating when it says).

use k8s_openapi::api::apps::v1::{DaemonSetSpec, DaemonSetUpdateStrategy, RollingUpdateDaemonSet};
use k8s_openapi::api::core::v1::{
    Affinity, Container, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, NodeSpec, PodSpec,
    PodStatus, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::sync::*;
use super::*;
use crate::controllers::podutil;
use crate::controllers::podutil::testing::make_ready;

fn daemonset(image: &str) -> DaemonSet {
    DaemonSet {
        metadata: ObjectMeta {
            name: Some("agent".into()),
            namespace: Some("ns".into()),
            uid: Some("ds-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some([("app".into(), "agent".into())].into()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("app".into(), "agent".into())].into()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }],
                    ..Default::default()
                }),
            },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    max_surge: Some(IntOrString::Int(0)),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn node(name: &str, labels: &[(&str, &str)], taints: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!taints.is_empty()).then(|| {
                taints
                    .iter()
                    .map(|(k, e)| Taint { key: k.to_string(), effect: e.to_string(), ..Default::default() })
                    .collect()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn template_spec(ds: &mut DaemonSet) -> &mut PodSpec {
    ds.spec.as_mut().unwrap().template.spec.as_mut().unwrap()
}

#[test]
fn eligible_nodes_follow_the_selector_affinity_and_taints() {
    fn affinity(zone: &str) -> Affinity {
        Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "zone".into(),
                            operator: "In".into(),
                            values: Some(vec![zone.into()]),
                        }]),
                        match_fields: None,
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
    type Tweak = fn(&mut PodSpec);
    // (what the template adds, node labels, node taints) → (should run, may keep running)
    type Pairs = &'static [(&'static str, &'static str)];
    type Case = (&'static str, Tweak, Pairs, Pairs, (bool, bool));
    let cases: Vec<Case> = vec![
        ("plain", |_| {}, &[], &[], (true, true)),
        (
            "selector matches",
            |s| s.node_selector = Some([("disk".into(), "ssd".into())].into()),
            &[("disk", "ssd")],
            &[],
            (true, true),
        ),
        (
            "selector misses",
            |s| s.node_selector = Some([("disk".into(), "ssd".into())].into()),
            &[("disk", "hdd")],
            &[],
            (false, false),
        ),
        ("nodeName elsewhere", |s| s.node_name = Some("other".into()), &[], &[], (false, false)),
        ("NoSchedule taint", |_| {}, &[], &[("dedicated", "NoSchedule")], (false, true)),
        ("NoExecute taint", |_| {}, &[], &[("dedicated", "NoExecute")], (false, false)),
        ("PreferNoSchedule taint", |_| {}, &[], &[("dedicated", "PreferNoSchedule")], (true, true)),
        (
            "tolerated taint",
            |s| {
                s.tolerations = Some(vec![Toleration {
                    key: Some("dedicated".into()),
                    operator: Some("Exists".into()),
                    ..Default::default()
                }])
            },
            &[],
            &[("dedicated", "NoSchedule")],
            (true, true),
        ),
        ("not-ready NoExecute", |_| {}, &[], &[("node.kubernetes.io/not-ready", "NoExecute")], (true, true)),
        ("unreachable NoExecute", |_| {}, &[], &[("node.kubernetes.io/unreachable", "NoExecute")], (true, true)),
        ("not-ready NoSchedule", |_| {}, &[], &[("node.kubernetes.io/not-ready", "NoSchedule")], (false, true)),
        ("unschedulable", |_| {}, &[], &[("node.kubernetes.io/unschedulable", "NoSchedule")], (true, true)),
        ("disk pressure", |_| {}, &[], &[("node.kubernetes.io/disk-pressure", "NoSchedule")], (true, true)),
        ("memory pressure", |_| {}, &[], &[("node.kubernetes.io/memory-pressure", "NoSchedule")], (true, true)),
        ("pid pressure", |_| {}, &[], &[("node.kubernetes.io/pid-pressure", "NoSchedule")], (true, true)),
        (
            "network unavailable",
            |_| {},
            &[],
            &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
            (false, true),
        ),
        (
            "network unavailable, host network",
            |s| s.host_network = Some(true),
            &[],
            &[("node.kubernetes.io/network-unavailable", "NoSchedule")],
            (true, true),
        ),
        ("affinity matches", |s| s.affinity = Some(affinity("a")), &[("zone", "a")], &[], (true, true)),
        ("affinity misses", |s| s.affinity = Some(affinity("a")), &[("zone", "b")], &[], (false, false)),
    ];
    for (what, tweak, labels, taints, want) in cases {
        let mut ds = daemonset("busybox:1");
        tweak(template_spec(&mut ds));
        assert_eq!(should_run(&ds, &node("n1", labels, taints)), want, "{what}");
    }
}

#[test]
fn daemon_pods_are_pinned_to_their_node_with_upstreams_tolerations() {
    let mut ds = daemonset("busybox:1");
    template_spec(&mut ds).tolerations = Some(vec![Toleration {
        key: Some("node.kubernetes.io/unschedulable".into()),
        operator: Some("Equal".into()),
        value: Some("x".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    }]);
    let pod = new_pod(&ds, "n7", "h1");
    assert_eq!(pod.metadata.generate_name.as_deref(), Some("agent-"));
    assert_eq!(pod.metadata.labels.as_ref().unwrap()["controller-revision-hash"], "h1");
    assert_eq!(target_node(&pod).as_deref(), Some("n7"));
    let spec = pod.spec.as_ref().unwrap();
    let terms = &spec
        .affinity
        .as_ref()
        .unwrap()
        .node_affinity
        .as_ref()
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap()
        .node_selector_terms;
    assert_eq!(terms.len(), 1);
    let field = &terms[0].match_fields.as_ref().unwrap()[0];
    assert_eq!((field.key.as_str(), field.operator.as_str()), ("metadata.name", "In"));
    let tolerations: Vec<String> = spec
        .tolerations
        .iter()
        .flatten()
        .map(|t| format!("{}:{}:{}", t.key.clone().unwrap(), t.operator.clone().unwrap(), t.effect.clone().unwrap()))
        .collect();
    assert_eq!(
        tolerations,
        [
            "node.kubernetes.io/unschedulable:Exists:NoSchedule",
            "node.kubernetes.io/not-ready:Exists:NoExecute",
            "node.kubernetes.io/unreachable:Exists:NoExecute",
            "node.kubernetes.io/disk-pressure:Exists:NoSchedule",
            "node.kubernetes.io/memory-pressure:Exists:NoSchedule",
            "node.kubernetes.io/pid-pressure:Exists:NoSchedule",
        ]
    );
    let mut bound = pod.clone();
    bound.spec.as_mut().unwrap().node_name = Some("n8".into());
    assert_eq!(target_node(&bound).as_deref(), Some("n8"));
}

/// An in-memory cluster: the set, nodes and pods.
struct World {
    ds: DaemonSet,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    hash: String,
    now: i64,
    made: usize,
    backoff: sync::FailedPodBackoff,
}

impl World {
    fn new(ds: DaemonSet, nodes: Vec<Node>) -> Self {
        World { ds, nodes, pods: vec![], hash: "h1".into(), now: 1_000_000, made: 0, backoff: Default::default() }
    }

    fn step(&mut self) -> sync::Step {
        let step = sync::sync(sync::Input {
            ds: &self.ds,
            nodes: self.nodes.iter().collect(),
            pods: self.pods.iter().collect(),
            hash: &self.hash,
            now: Timestamp::from_second(self.now).unwrap(),
            failed_backoff: &mut self.backoff,
        });
        for p in &step.create {
            self.made += 1;
            let mut p = p.clone();
            p.metadata.name = Some(format!("agent-{}", self.made));
            p.metadata.uid = Some(format!("uid-{}", self.made));
            p.metadata.creation_timestamp = Some(Time(Timestamp::from_second(self.now + self.made as i64).unwrap()));
            // The scheduler binds it to the node its affinity names.
            p.spec.as_mut().unwrap().node_name = target_node(&p);
            p.status = Some(PodStatus { phase: Some("Pending".into()), ..Default::default() });
            self.pods.push(p);
        }
        for d in &step.delete {
            let p = self.pods.iter_mut().find(|p| p.metadata.name == d.metadata.name).unwrap();
            p.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(self.now).unwrap()));
        }
        self.ds.status = Some(step.status.clone());
        step
    }

    fn finish_terminating(&mut self) -> bool {
        let before = self.pods.len();
        self.pods.retain(|p| p.metadata.deletion_timestamp.is_none());
        before != self.pods.len()
    }

    fn ready_all(&mut self) -> bool {
        let t = Timestamp::from_second(self.now).unwrap();
        let mut changed = false;
        for p in self.pods.iter_mut().filter(|p| !podutil::is_ready(p)) {
            make_ready(p, t);
            changed = true;
        }
        changed
    }

    /// Live pods as "node=revision", sorted.
    fn layout(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| format!("{}={}", target_node(p).unwrap(), p.metadata.labels.as_ref().unwrap()[REVISION_LABEL]))
            .collect();
        v.sort();
        v
    }

    fn settle(&mut self) {
        for _ in 0..100 {
            let step = self.step();
            let gone = self.finish_terminating();
            let readied = self.ready_all();
            if step.create.is_empty() && step.delete.is_empty() && !gone && !readied {
                return;
            }
        }
        panic!("no steady state");
    }
}

fn three_nodes() -> Vec<Node> {
    vec![node("n1", &[], &[]), node("n2", &[], &[]), node("n3", &[], &[])]
}

#[test]
fn one_pod_goes_on_each_eligible_node_and_leaves_when_the_node_stops_fitting() {
    let mut nodes = three_nodes();
    nodes.push(node("tainted", &[], &[("dedicated", "NoSchedule")]));
    let mut w = World::new(daemonset("busybox:1"), nodes);
    let s = w.step();
    assert_eq!(s.create.len(), 3);
    assert_eq!(s.status.desired_number_scheduled, 3);
    assert_eq!(s.status.current_number_scheduled, 0);
    let s = w.step();
    assert!(s.create.is_empty() && s.delete.is_empty(), "one per node");
    assert_eq!((s.status.current_number_scheduled, s.status.number_ready), (3, 0));
    assert_eq!(s.status.number_unavailable, Some(3));
    w.ready_all();
    let s = w.step();
    assert_eq!(
        (s.status.number_ready, s.status.number_available, s.status.updated_number_scheduled),
        (3, Some(3), Some(3))
    );
    assert_eq!(s.status.number_unavailable, Some(0));
    assert_eq!(w.layout(), ["n1=h1", "n2=h1", "n3=h1"]);

    // A NoExecute taint evicts; the node going away takes nothing scheduled with it (pod GC's job).
    w.nodes[1].spec.as_mut().unwrap().taints =
        Some(vec![Taint { key: "dedicated".into(), effect: "NoExecute".into(), ..Default::default() }]);
    let s = w.step();
    assert_eq!(s.delete.len(), 1);
    assert_eq!(target_node(&s.delete[0]).as_deref(), Some("n2"));
    assert_eq!((s.status.desired_number_scheduled, s.status.number_misscheduled), (2, 1));
    w.finish_terminating();
    // A failed pod is replaced, with a warning.
    w.pods[0].status.as_mut().unwrap().phase = Some("Failed".into());
    let s = w.step();
    assert_eq!(s.delete.len(), 1);
    assert_eq!(s.failed.len(), 1);
    w.finish_terminating();
    assert_eq!(w.step().create.len(), 1);
    // One failing again at once waits for the back-off (1 s, then 2 s) before it goes.
    let fail_latest = |w: &mut World| {
        let p = w.pods.iter_mut().rfind(|p| p.metadata.deletion_timestamp.is_none()).unwrap();
        p.status.as_mut().unwrap().phase = Some("Failed".into());
    };
    fail_latest(&mut w);
    let s = w.step();
    assert!(s.delete.is_empty() && s.create.is_empty(), "{s:?}");
    assert_eq!(s.requeue, Some(std::time::Duration::from_secs(1)));
    w.now += 1;
    assert_eq!(w.step().delete.len(), 1);
    w.finish_terminating();
    assert_eq!(w.step().create.len(), 1);
    fail_latest(&mut w);
    w.now += 1;
    assert_eq!(w.step().requeue, Some(std::time::Duration::from_secs(1)), "2 s after the last deletion");
    w.now += 1;
    assert_eq!(w.step().delete.len(), 1);
}

#[test]
fn unavailable_budget_as_upstream() {
    let n = |node: &str, new: Option<bool>, old: Option<bool>| NodePods {
        node: node.into(),
        ambiguous: false,
        new: new.map(|a| (format!("{node}-new"), a)),
        old: old.map(|a| (format!("{node}-old"), a)),
        should_run: true,
    };
    // (nodes, maxUnavailable) → deleted
    let cases: Vec<(Vec<NodePods>, i32, Vec<&str>)> = vec![
        (vec![n("a", None, Some(true)), n("b", None, Some(true))], 1, vec!["a-old"]),
        (vec![n("a", None, Some(true)), n("b", None, Some(true))], 2, vec!["a-old", "b-old"]),
        (vec![n("a", Some(false), None), n("b", None, Some(true))], 1, vec![]),
        (vec![n("a", Some(true), None), n("b", None, Some(true))], 1, vec!["b-old"]),
        (vec![n("a", None, None), n("b", None, Some(true))], 1, vec![]),
        (vec![n("a", None, Some(false)), n("b", None, Some(true))], 1, vec!["a-old", "b-old"]),
        (vec![n("a", Some(false), None), n("b", None, Some(false))], 1, vec!["b-old"]),
    ];
    for (nodes, max, want) in cases {
        assert_eq!(unavailable_plan(&nodes, max).delete, want, "{nodes:?} max {max}");
    }
}

#[test]
fn surge_budget_as_upstream() {
    let n = |node: &str, new: Option<bool>, old: Option<bool>| NodePods {
        node: node.into(),
        ambiguous: false,
        new: new.map(|a| (format!("{node}-new"), a)),
        old: old.map(|a| (format!("{node}-old"), a)),
        should_run: true,
    };
    // (nodes, maxSurge) → (created on, deleted)
    type Case = (Vec<NodePods>, i32, Vec<&'static str>, Vec<&'static str>);
    let cases: Vec<Case> = vec![
        (vec![n("a", None, Some(true)), n("b", None, Some(true))], 1, vec!["a"], vec![]),
        (vec![n("a", Some(false), Some(true)), n("b", None, Some(true))], 1, vec![], vec![]),
        (vec![n("a", Some(true), Some(true)), n("b", None, Some(true))], 1, vec!["b"], vec!["a-old"]),
        (vec![n("a", None, Some(false)), n("b", None, Some(true))], 1, vec!["a", "b"], vec![]),
        (vec![n("a", None, Some(true)), n("b", None, Some(true))], 2, vec!["a", "b"], vec![]),
    ];
    for (nodes, max, create, delete) in cases {
        let plan = surge_plan(&nodes, max);
        assert_eq!(
            (plan.create_on, plan.delete),
            (
                create.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                delete.iter().map(|s| s.to_string()).collect::<Vec<_>>()
            ),
            "{nodes:?} surge {max}"
        );
    }
}

#[test]
fn a_rolling_update_replaces_one_node_at_a_time() {
    let mut w = World::new(daemonset("busybox:1"), three_nodes());
    w.settle();
    w.hash = "h2".into();
    let s = w.step();
    assert!(s.create.is_empty());
    assert_eq!(s.delete.len(), 1, "maxUnavailable 1");
    assert_eq!(s.status.updated_number_scheduled, Some(0));
    // Not replaced until the old pod is gone; then the node gets the new one.
    assert!(w.step().create.is_empty());
    w.finish_terminating();
    let s = w.step();
    assert_eq!(s.create.len(), 1);
    assert_eq!(s.create[0].metadata.labels.as_ref().unwrap()[REVISION_LABEL], "h2");
    // The new pod is not ready: the next node waits.
    let s = w.step();
    assert!(s.delete.is_empty() && s.create.is_empty());
    w.settle();
    assert_eq!(w.layout(), ["n1=h2", "n2=h2", "n3=h2"]);
    let st = w.ds.status.clone().unwrap();
    assert_eq!((st.updated_number_scheduled, st.number_available), (Some(3), Some(3)));
}

#[test]
fn a_surging_update_starts_the_new_pod_before_stopping_the_old() {
    let mut ds = daemonset("busybox:1");
    ds.spec.as_mut().unwrap().update_strategy.as_mut().unwrap().rolling_update = Some(RollingUpdateDaemonSet {
        max_unavailable: Some(IntOrString::Int(0)),
        max_surge: Some(IntOrString::Int(1)),
    });
    let mut w = World::new(ds, three_nodes());
    w.settle();
    w.hash = "h2".into();
    let s = w.step();
    assert_eq!((s.create.len(), s.delete.len()), (1, 0));
    let node = target_node(&s.create[0]).unwrap();
    // Both run on that node until the new one is available.
    assert!(w.step().delete.is_empty());
    assert_eq!(w.layout().iter().filter(|l| l.starts_with(&format!("{node}="))).count(), 2);
    w.ready_all();
    let s = w.step();
    assert_eq!(s.delete.len(), 1);
    assert_eq!(s.delete[0].metadata.labels.as_ref().unwrap()[REVISION_LABEL], "h1");
    w.settle();
    assert_eq!(w.layout(), ["n1=h2", "n2=h2", "n3=h2"]);
}

#[test]
fn on_delete_leaves_old_pods_alone() {
    let mut ds = daemonset("busybox:1");
    ds.spec.as_mut().unwrap().update_strategy =
        Some(DaemonSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None });
    let mut w = World::new(ds, three_nodes());
    w.settle();
    w.hash = "h2".into();
    w.settle();
    assert_eq!(w.layout(), ["n1=h1", "n2=h1", "n3=h1"]);
    w.pods.remove(0);
    w.settle();
    assert_eq!(w.layout(), ["n1=h2", "n2=h1", "n3=h1"]);
}
