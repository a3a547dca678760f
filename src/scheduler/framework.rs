//! The scheduling framework's shapes: what a pod and a node look like to plugins
//! ([`PodInfo`], [`NodeInfo`], the cycle's [`Snapshot`]), the Filter stage (with its
//! PreFilter step) and the Score stage, and the diagnosis of a pod that fits nowhere in
//! upstream's words ([`fit_error`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, Pod, PodAffinityTerm, TopologySpreadConstraint,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::core::{Selector, SelectorExt};

use super::resources::{pod_requests, Resources};

pub type Labels = BTreeMap<String, String>;

/// A port a pod takes on its node's addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    /// `0.0.0.0` for every address.
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Two uses of a port clash on the same protocol and port when either takes every
    /// address or both name the same one.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.protocol == other.protocol
            && self.port == other.port
            && (self.ip == "0.0.0.0" || other.ip == "0.0.0.0" || self.ip == other.ip)
    }
}

/// A label selector as the scheduler applies it: `None` is a missing or unusable selector,
/// which selects nothing (upstream); `matchLabelKeys` are folded in from the pod's labels.
fn selector(s: Option<&LabelSelector>, match_label_keys: Option<&[String]>, labels: &Labels) -> Option<Selector> {
    let mut s = s?.clone();
    for key in match_label_keys.into_iter().flatten() {
        if let Some(v) = labels.get(key) {
            s.match_expressions.get_or_insert_with(Vec::new).push(LabelSelectorRequirement {
                key: key.clone(),
                operator: "In".into(),
                values: Some(vec![v.clone()]),
            });
        }
    }
    Selector::try_from(s).ok()
}

/// One pod (anti-)affinity term, its selectors parsed once.
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    pub selector: Option<Selector>,
    /// The namespaces listed, or the pod's own when none are and there is no namespace
    /// selector.
    pub namespaces: BTreeSet<String>,
    pub namespace_selector: Option<Selector>,
    pub topology_key: String,
    /// The preference's weight; 0 for a required term.
    pub weight: i32,
}

impl AffinityTerm {
    fn new(t: &PodAffinityTerm, weight: i32, owner_ns: &str, owner_labels: &Labels) -> AffinityTerm {
        let mut namespaces: BTreeSet<String> = t.namespaces.iter().flatten().cloned().collect();
        let namespace_selector = t.namespace_selector.clone().and_then(|s| Selector::try_from(s).ok());
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.insert(owner_ns.to_string());
        }
        AffinityTerm {
            selector: selector(t.label_selector.as_ref(), t.match_label_keys.as_deref(), owner_labels),
            namespaces,
            namespace_selector,
            topology_key: t.topology_key.clone(),
            weight,
        }
    }

    /// Whether `pod` is one the term is about.
    pub fn matches(&self, pod: &PodInfo) -> bool {
        let in_ns = self.namespaces.contains(&pod.namespace)
            || self.namespace_selector.as_ref().is_some_and(|s| s.matches(&pod.namespace_labels));
        in_ns && self.selector.as_ref().is_some_and(|s| s.matches(&pod.labels))
    }
}

/// A topology spread constraint, its selector parsed once.
#[derive(Clone, Debug)]
pub struct SpreadConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    /// `DoNotSchedule` (a filter) rather than `ScheduleAnyway` (a score).
    pub hard: bool,
    pub selector: Option<Selector>,
    pub min_domains: i32,
    /// Only nodes that pass the pod's node affinity and selector count (`Honor`, the default).
    pub honor_node_affinity: bool,
    /// Only nodes whose taints the pod tolerates count (`Ignore` is the default).
    pub honor_node_taints: bool,
}

impl SpreadConstraint {
    fn new(c: &TopologySpreadConstraint, labels: &Labels) -> SpreadConstraint {
        SpreadConstraint {
            max_skew: c.max_skew,
            topology_key: c.topology_key.clone(),
            hard: c.when_unsatisfiable == "DoNotSchedule",
            selector: selector(c.label_selector.as_ref(), c.match_label_keys.as_deref(), labels),
            min_domains: c.min_domains.unwrap_or(1),
            honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
        }
    }

    /// Whether an existing pod counts toward the constraint of a pod in `namespace`.
    pub fn counts(&self, namespace: &str, pod: &PodInfo) -> bool {
        pod.namespace == namespace && !pod.terminating && self.selector.as_ref().is_some_and(|s| s.matches(&pod.labels))
    }
}

/// A pod's inter-pod affinity, parsed.
#[derive(Clone, Debug, Default)]
pub struct PodAffinity {
    pub required: Vec<AffinityTerm>,
    pub required_anti: Vec<AffinityTerm>,
    pub preferred: Vec<AffinityTerm>,
    pub preferred_anti: Vec<AffinityTerm>,
}

impl PodAffinity {
    fn of(pod: &Pod, ns: &str, labels: &Labels) -> PodAffinity {
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let req = |t: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            t.into_iter().flatten().map(|t| AffinityTerm::new(t, 0, ns, labels)).collect()
        };
        let pref = |t: Option<&Vec<WeightedPodAffinityTerm>>| -> Vec<AffinityTerm> {
            t.into_iter().flatten().map(|w| AffinityTerm::new(&w.pod_affinity_term, w.weight, ns, labels)).collect()
        };
        let a = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        PodAffinity {
            required: req(a.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
            required_anti: req(anti.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref())),
            preferred: pref(a.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
            preferred_anti: pref(anti.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.required.is_empty()
            && self.required_anti.is_empty()
            && self.preferred.is_empty()
            && self.preferred_anti.is_empty()
    }
}

/// A pod as the plugins see it, with what they need precomputed.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// The labels of the pod's namespace, for namespace selectors of affinity terms.
    pub namespace_labels: Arc<Labels>,
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub priority: i32,
    pub terminating: bool,
    pub affinity: PodAffinity,
    pub spread: Vec<SpreadConstraint>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        PodInfo::in_namespace(pod, Arc::default())
    }

    pub fn in_namespace(pod: Arc<Pod>, namespace_labels: Arc<Labels>) -> PodInfo {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone().unwrap_or_default();
        let labels = meta.labels.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let mut host_ports = Vec::new();
        let containers = spec.into_iter().flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers));
        for p in containers.flat_map(|c| c.ports.iter().flatten()) {
            if let Some(port) = p.host_port.filter(|p| *p > 0) {
                let ip = p.host_ip.as_deref().filter(|s| !s.is_empty()).unwrap_or("0.0.0.0");
                let protocol = p.protocol.as_deref().unwrap_or("TCP");
                host_ports.push(HostPort { protocol: protocol.to_string(), ip: ip.to_string(), port });
            }
        }
        let spread = spec
            .and_then(|s| s.topology_spread_constraints.as_ref())
            .into_iter()
            .flatten()
            .map(|c| SpreadConstraint::new(c, &labels))
            .collect();
        PodInfo {
            name: meta.name.clone().unwrap_or_default(),
            affinity: PodAffinity::of(&pod, &namespace, &labels),
            spread,
            namespace,
            labels,
            namespace_labels,
            requests: spec.map(pod_requests).unwrap_or_default(),
            priority: spec.and_then(|s| s.priority).unwrap_or(0),
            terminating: meta.deletion_timestamp.is_some(),
            host_ports,
            pod,
        }
    }

    pub fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }

    pub fn uid(&self) -> &str {
        self.pod.metadata.uid.as_deref().unwrap_or("")
    }
}

/// A node and what the pods already bound to it take.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub node: Arc<Node>,
    pub allocatable: Resources,
    /// How many pods the node takes.
    pub allowed_pods: i64,
    pub requested: Resources,
    pub pods: Vec<Arc<PodInfo>>,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let allocatable = Resources::from_list(node.status.as_ref().and_then(|s| s.allocatable.as_ref()));
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            allowed_pods: allocatable.scalar("pods"),
            allocatable,
            node,
            requested: Resources::default(),
            pods: Vec::new(),
        }
    }

    /// Counts a pod bound to this node.
    pub fn add_pod(&mut self, pod: impl Into<Arc<PodInfo>>) {
        let pod = pod.into();
        self.requested.add(&pod.requests);
        self.pods.push(pod);
    }

    /// The node with only the pods `keep` keeps.
    pub fn retaining(&self, keep: impl Fn(&PodInfo) -> bool) -> NodeInfo {
        let mut n = NodeInfo::new(self.node.clone());
        for p in self.pods.iter().filter(|p| keep(p)) {
            n.add_pod(p.clone());
        }
        n
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.node.metadata.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str)
    }

    pub fn labels(&self) -> Option<&Labels> {
        self.node.metadata.labels.as_ref()
    }
}

/// What one scheduling cycle sees: the nodes with their pods, the pods nominated to nodes
/// (they wait for preempted pods to go), and the volume objects.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeInfo>,
    pub nominated: Vec<(String, Arc<PodInfo>)>,
    pub claims: HashMap<(String, String), Arc<PersistentVolumeClaim>>,
    pub classes: HashMap<String, Arc<StorageClass>>,
    /// PersistentVolumes by name.
    pub volumes: HashMap<String, Arc<PersistentVolume>>,
}

impl Snapshot {
    pub fn of_nodes(nodes: Vec<NodeInfo>) -> Snapshot {
        Snapshot { nodes, ..Snapshot::default() }
    }
}

/// How firmly a node refuses a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    /// Could change if other pods went (preemption might help).
    Unschedulable,
    /// Nothing about other pods would help.
    UnschedulableAndUnresolvable,
}

/// A node's refusal: its code and upstream's reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfit {
    pub code: Code,
    pub reasons: Vec<String>,
}

impl Unfit {
    pub fn unschedulable(reason: impl Into<String>) -> Unfit {
        Unfit { code: Code::Unschedulable, reasons: vec![reason.into()] }
    }
    pub fn unresolvable(reason: impl Into<String>) -> Unfit {
        Unfit { code: Code::UnschedulableAndUnresolvable, reasons: vec![reason.into()] }
    }
}

/// A Filter plugin: whether a pod may run on a node at all.
pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Once per pod and cycle, before any node (upstream's PreFilter): a refusal here
    /// refuses every node, and its reason is the whole diagnosis.
    fn pre_filter(&self, _pod: &PodInfo, _snapshot: &Snapshot) -> Result<(), Unfit> {
        Ok(())
    }

    /// Whether `node` takes `pod`; `snap` holds every node (this one included), for plugins
    /// that look at the pods of a whole topology domain, and the volumes.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> Result<(), Unfit>;
}

/// Runs the plugins in order; the first refusal is the node's verdict, as upstream.
pub fn run_filters(
    plugins: &[Box<dyn FilterPlugin>],
    pod: &PodInfo,
    node: &NodeInfo,
    snap: &Snapshot,
) -> Result<(), Unfit> {
    for p in plugins {
        p.filter(pod, node, snap)?;
    }
    Ok(())
}

/// A Score plugin: how much a node that fits is preferred, 0–100 after [`normalize`].
///
/// [`normalize`]: ScorePlugin::normalize
pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;
    /// The weight of its scores in the sum (upstream's default profile).
    fn weight(&self) -> i64;
    /// A raw score of `node`, one of `feasible` (the nodes that passed the filters).
    fn score(&self, pod: &PodInfo, node: &NodeInfo, feasible: &[&NodeInfo]) -> i64;
    /// Maps the raw scores of all feasible nodes onto 0–100; by default they already are.
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// The plugins a scheduling cycle runs: upstream's profile.
pub struct Profile {
    pub filters: Vec<Box<dyn FilterPlugin>>,
    pub scores: Vec<Box<dyn ScorePlugin>>,
}

/// Upstream's message when there are no nodes at all.
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// `0/N nodes are available: <count> <reason>, ... .` with the reasons counted over nodes
/// and sorted as strings, as upstream's `FitError`; a PreFilter refusal replaces the counts.
pub fn fit_error(
    num_nodes: usize,
    statuses: &[Unfit],
    pre_filter: Option<&Unfit>,
    post_filter: Option<&str>,
) -> String {
    let mut msg = format!("0/{num_nodes} nodes are available:");
    if let Some(pre) = pre_filter {
        msg.push_str(&format!(" {}.", pre.reasons.join(", ")));
    } else {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for s in statuses {
            for r in &s.reasons {
                *counts.entry(r.as_str()).or_insert(0) += 1;
            }
        }
        let mut reasons: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
        reasons.sort();
        if !reasons.is_empty() {
            msg.push_str(&format!(" {}.", reasons.join(", ")));
        }
    }
    if let Some(p) = post_filter.filter(|p| !p.is_empty()) {
        msg.push(' ');
        msg.push_str(p);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_and_sorted_as_upstream() {
        let statuses = vec![
            Unfit { code: Code::Unschedulable, reasons: vec!["Insufficient memory".into(), "Insufficient cpu".into()] },
            Unfit::unschedulable("Insufficient cpu"),
            Unfit::unresolvable("node(s) didn't match Pod's node affinity/selector"),
        ];
        assert_eq!(
            fit_error(3, &statuses, None, Some("preemption: x.")),
            "0/3 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu. preemption: x."
        );
        assert_eq!(fit_error(0, &[], None, None), "0/0 nodes are available:");
        let pre = Unfit::unresolvable("persistentvolumeclaim \"data\" not found");
        assert_eq!(
            fit_error(2, &statuses, Some(&pre), None),
            "0/2 nodes are available: persistentvolumeclaim \"data\" not found."
        );
    }

    #[test]
    fn host_ports_clash_on_any_address() {
        let p = |ip: &str, port| HostPort { protocol: "TCP".into(), ip: ip.into(), port };
        assert!(p("0.0.0.0", 80).conflicts(&p("10.0.0.1", 80)));
        assert!(p("10.0.0.1", 80).conflicts(&p("10.0.0.1", 80)));
        assert!(!p("10.0.0.1", 80).conflicts(&p("10.0.0.2", 80)));
        assert!(!p("0.0.0.0", 80).conflicts(&p("0.0.0.0", 81)));
        let udp = HostPort { protocol: "UDP".into(), ip: "0.0.0.0".into(), port: 80 };
        assert!(!udp.conflicts(&p("0.0.0.0", 80)));
    }
}
