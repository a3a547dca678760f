//! The scheduling framework's shapes: what a pod and a node look like to plugins
//! ([`PodInfo`], [`NodeInfo`]), the [`FilterPlugin`] stage with its verdicts, and the
//! diagnosis of a pod that fits nowhere in upstream's words. Scoring, affinity, spreading
//! and preemption grow from here as more plugins and stages.

use std::collections::BTreeMap;

use serde_json::Value;

use super::resources::{pod_requests, Resources};

/// A port a pod takes on its node's addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    /// `0.0.0.0` for every address.
    pub ip: String,
    pub port: i64,
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

/// A pod as the plugins see it, with what they need precomputed.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub pod: Value,
    pub requests: Resources,
    pub host_ports: Vec<HostPort>,
    pub priority: i64,
}

impl PodInfo {
    pub fn new(pod: Value) -> PodInfo {
        let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
        let mut host_ports = Vec::new();
        for list in ["initContainers", "containers"] {
            for c in spec.get(list).and_then(Value::as_array).into_iter().flatten() {
                for p in c.get("ports").and_then(Value::as_array).into_iter().flatten() {
                    let port = p.get("hostPort").and_then(Value::as_i64).unwrap_or(0);
                    if port > 0 {
                        let ip = p.get("hostIP").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("0.0.0.0");
                        let protocol = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                        host_ports.push(HostPort { protocol: protocol.to_string(), ip: ip.to_string(), port });
                    }
                }
            }
        }
        PodInfo {
            namespace: str_at(&pod, "/metadata/namespace").to_string(),
            name: str_at(&pod, "/metadata/name").to_string(),
            requests: pod_requests(&spec),
            priority: spec.get("priority").and_then(Value::as_i64).unwrap_or(0),
            host_ports,
            pod,
        }
    }

    pub fn spec(&self, field: &str) -> Option<&Value> {
        self.pod.get("spec").and_then(|s| s.get(field))
    }
}

/// A node and what the pods already bound to it take.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub node: Value,
    pub allocatable: Resources,
    /// How many pods the node takes.
    pub allowed_pods: i64,
    pub requested: Resources,
    pub pods: Vec<PodInfo>,
}

impl NodeInfo {
    pub fn new(node: Value) -> NodeInfo {
        let allocatable = Resources::from_list(node.pointer("/status/allocatable"));
        NodeInfo {
            name: str_at(&node, "/metadata/name").to_string(),
            allowed_pods: allocatable.scalar("pods"),
            allocatable,
            node,
            requested: Resources::default(),
            pods: Vec::new(),
        }
    }

    /// Counts a pod bound to this node.
    pub fn add_pod(&mut self, pod: PodInfo) {
        self.requested.add(&pod.requests);
        self.pods.push(pod);
    }

    pub fn labels(&self) -> Option<&serde_json::Map<String, Value>> {
        self.node.pointer("/metadata/labels").and_then(Value::as_object)
    }
}

pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
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
    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit>;
}

/// Runs the plugins in order; the first refusal is the node's verdict, as upstream.
pub fn run_filters(plugins: &[Box<dyn FilterPlugin>], pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
    for p in plugins {
        p.filter(pod, node)?;
    }
    Ok(())
}

/// Upstream's message when there are no nodes at all.
pub const NO_NODES: &str = "no nodes available to schedule pods";

/// `0/N nodes are available: <count> <reason>, ... .` with the reasons counted over nodes
/// and sorted as strings, as upstream's `FitError`.
pub fn fit_error(num_nodes: usize, statuses: &[Unfit], post_filter: Option<&str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in statuses {
        for r in &s.reasons {
            *counts.entry(r.as_str()).or_insert(0) += 1;
        }
    }
    let mut reasons: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    reasons.sort();
    let mut msg = format!("0/{num_nodes} nodes are available:");
    if !reasons.is_empty() {
        msg.push_str(&format!(" {}.", reasons.join(", ")));
    }
    if let Some(p) = post_filter.filter(|p| !p.is_empty()) {
        msg.push(' ');
        msg.push_str(p);
    }
    msg
}

/// What default preemption would report for a pod that fits nowhere, without evicting
/// anything (preemption itself is a later stage): nodes refused for reasons removing pods
/// cannot change are "not helpful"; on the others, the pod is tried again without the
/// lower-priority pods, and where it still does not fit, that refusal is reported;
/// nodes with no lower-priority pods have no victims.
pub fn preemption_message(
    plugins: &[Box<dyn FilterPlugin>],
    pod: &PodInfo,
    nodes: &[NodeInfo],
    statuses: &[Unfit],
) -> String {
    if pod.spec("preemptionPolicy").and_then(Value::as_str) == Some("Never") {
        return "preemption: not eligible due to preemptionPolicy=Never.".to_string();
    }
    let mut out = Vec::with_capacity(nodes.len());
    for (node, status) in nodes.iter().zip(statuses) {
        if status.code == Code::UnschedulableAndUnresolvable {
            out.push(Unfit::unresolvable("Preemption is not helpful for scheduling"));
            continue;
        }
        let victims: Vec<&PodInfo> = node.pods.iter().filter(|p| p.priority < pod.priority).collect();
        if victims.is_empty() {
            out.push(Unfit::unresolvable("No preemption victims found for incoming pod"));
            continue;
        }
        let mut without = NodeInfo::new(node.node.clone());
        for p in node.pods.iter().filter(|p| p.priority >= pod.priority) {
            without.add_pod(p.clone());
        }
        match run_filters(plugins, pod, &without) {
            Err(unfit) => out.push(unfit),
            // Evicting would make room, but k3rs does not preempt yet.
            Ok(()) => out.push(Unfit::unresolvable("No preemption victims found for incoming pod")),
        }
    }
    format!("preemption: {}", fit_error(nodes.len(), &out, None))
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
            fit_error(3, &statuses, Some("preemption: x.")),
            "0/3 nodes are available: 1 Insufficient memory, 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu. preemption: x."
        );
        assert_eq!(fit_error(0, &[], None), "0/0 nodes are available:");
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
