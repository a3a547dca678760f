//! NetworkPolicies, pods and namespaces into what each local pod may send and receive: a
//! pure function, so the semantics (networking.k8s.io/v1, upstream's documentation is the
//! specification) are tested without nftables.
//!
//! - A pod is isolated for ingress (egress) when any policy of its namespace selects it and
//!   has that type; it then takes only what at least one of those policies' rules allows.
//! - A rule's peers are pods (podSelector in the policy's namespace, namespaceSelector for
//!   all pods of those namespaces, both together for those pods of those namespaces) and
//!   ipBlocks with exceptions; no peers means any source (destination). Ports carry a
//!   protocol (TCP by default), an optional range end, or a name that is looked up in the
//!   containers of the pod receiving the traffic.
//! - A pod can always reach itself; its node reaches it and it reaches its node without
//!   crossing the forward hook, so that traffic is never filtered (as upstream promises).

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as MetaSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::apiserver::selector::LabelSelector;

/// What the engine needs of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ip: Ipv4Addr,
    /// Runs on this node: its traffic is filtered here.
    pub local: bool,
    /// Its containers' named ports: (name, protocol, number).
    pub named_ports: Vec<(String, Proto, u16)>,
}

impl PodView {
    /// The view of a pod with an IPv4 address that is neither host-networked nor finished;
    /// `ip` overrides the status (the kubelet knows it before the status says it).
    pub fn from_pod(pod: &Pod, node: &str, ip: Option<Ipv4Addr>) -> Option<PodView> {
        let spec = pod.spec.as_ref()?;
        if spec.host_network == Some(true) {
            return None;
        }
        let status = pod.status.as_ref();
        if status.and_then(|s| s.phase.as_deref()).is_some_and(|p| p == "Succeeded" || p == "Failed") {
            return None;
        }
        let ip = match ip {
            Some(ip) => ip,
            None => status.and_then(|s| s.pod_ip.as_deref()).and_then(|i| i.parse().ok())?,
        };
        let named_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let name = p.name.clone().filter(|n| !n.is_empty())?;
                let proto = Proto::parse(p.protocol.as_deref())?;
                Some((name, proto, u16::try_from(p.container_port).ok()?))
            })
            .collect();
        Some(PodView {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            ip,
            local: spec.node_name.as_deref() == Some(node),
            named_ports,
        })
    }
}

/// A transport protocol a policy port names: the proxy's (TCP when absent).
pub use crate::proxy::model::Proto;

/// Which way traffic goes, seen from the selected pod.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

/// An IPv4 network as an ipBlock gives it (host bits are cleared, as Go's ParseCIDR does).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Net {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Net {
    /// `None` for IPv6 or malformed text (pods here are IPv4 only).
    pub fn parse(s: &str) -> Option<Net> {
        let (a, p) = s.split_once('/')?;
        let addr: Ipv4Addr = a.parse().ok()?;
        let prefix: u8 = p.parse().ok().filter(|p| *p <= 32)?;
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        Some(Net { addr: Ipv4Addr::from(u32::from(addr) & mask), prefix })
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
        u32::from(ip) & mask == u32::from(self.addr)
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// One port clause of a rule, resolved for one selected pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortMatch {
    /// Every port of the protocol.
    AnyPort(Proto),
    /// A port or an inclusive range.
    Range(Proto, u16, u16),
    /// An egress named port: the destinations (within the rule's peers) that declare it,
    /// each with its number.
    Named(Proto, Vec<(Ipv4Addr, u16)>),
}

/// The peers of one rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peers {
    /// No `from`/`to`: anything.
    pub any: bool,
    /// Pods chosen by selectors (their IPs).
    pub pods: BTreeSet<Ipv4Addr>,
    /// Whether any peer was a selector (the rule then refers to its pod set, even empty).
    pub has_selectors: bool,
    pub blocks: Vec<(Net, Vec<Net>)>,
}

impl Peers {
    fn admits(&self, ip: Ipv4Addr) -> bool {
        self.any
            || self.pods.contains(&ip)
            || self.blocks.iter().any(|(n, except)| n.contains(ip) && !except.iter().any(|e| e.contains(ip)))
    }
}

/// One rule of one policy, as it applies to one selected pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allow {
    /// `namespace/name direction index`, for comments and set names.
    pub id: String,
    /// The rule's peers; shared by every pod the policy selects.
    pub peers: std::sync::Arc<Peers>,
    /// Empty: every port and protocol.
    pub ports: Vec<PortMatch>,
}

/// What one local pod is allowed, per direction it is isolated for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRules {
    /// `Some` when isolated for ingress: the rules that let traffic in.
    pub ingress: Option<Vec<Allow>>,
    pub egress: Option<Vec<Allow>>,
}

fn selector(s: Option<&MetaSelector>) -> LabelSelector {
    // A selector that does not convert selects nothing (validation refuses it upstream).
    LabelSelector::from_metav1(s).unwrap_or_else(|_| LabelSelector::nothing())
}

fn types(p: &NetworkPolicy) -> (bool, bool) {
    let spec = p.spec.as_ref();
    match spec.and_then(|s| s.policy_types.as_ref()) {
        Some(t) => (t.iter().any(|t| t == "Ingress"), t.iter().any(|t| t == "Egress")),
        // The API's default: Ingress always, Egress when there are egress rules.
        None => (true, spec.and_then(|s| s.egress.as_ref()).is_some_and(|e| !e.is_empty())),
    }
}

fn peers(
    list: Option<&Vec<NetworkPolicyPeer>>,
    policy_ns: &str,
    pods: &[PodView],
    namespaces: &BTreeMap<String, BTreeMap<String, String>>,
) -> Peers {
    let Some(list) = list.filter(|l| !l.is_empty()) else {
        return Peers { any: true, ..Default::default() };
    };
    let mut out = Peers::default();
    for peer in list {
        if let Some(b) = &peer.ip_block {
            if let Some(net) = Net::parse(&b.cidr) {
                let except = b.except.iter().flatten().filter_map(|e| Net::parse(e)).collect();
                out.blocks.push((net, except));
            }
            continue;
        }
        if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
            continue;
        }
        out.has_selectors = true;
        let pod_sel = peer.pod_selector.as_ref().map(|s| selector(Some(s)));
        let ns_sel = peer.namespace_selector.as_ref().map(|s| selector(Some(s)));
        for p in pods {
            let ns_ok = match &ns_sel {
                None => p.namespace == policy_ns,
                Some(sel) => namespaces.get(&p.namespace).is_some_and(|labels| sel.matches(labels)),
            };
            if ns_ok && pod_sel.as_ref().is_none_or(|s| s.matches(&p.labels)) {
                out.pods.insert(p.ip);
            }
        }
    }
    out
}

fn ports(
    list: Option<&Vec<NetworkPolicyPort>>,
    dir: Direction,
    target: &PodView,
    peers: &Peers,
    pods: &[PodView],
) -> Option<Vec<PortMatch>> {
    let Some(list) = list.filter(|l| !l.is_empty()) else {
        return Some(Vec::new());
    };
    let mut out = Vec::new();
    for p in list {
        let Some(proto) = Proto::parse(p.protocol.as_deref()) else { continue };
        match &p.port {
            None => out.push(PortMatch::AnyPort(proto)),
            Some(IntOrString::Int(n)) => {
                let Ok(start) = u16::try_from(*n) else { continue };
                let end = p.end_port.and_then(|e| u16::try_from(e).ok()).filter(|e| *e >= start).unwrap_or(start);
                out.push(PortMatch::Range(proto, start, end));
            }
            Some(IntOrString::String(name)) => match dir {
                // The port the receiving pod gives that name.
                Direction::Ingress => {
                    let found = target.named_ports.iter().find(|(n, pr, _)| n == name && *pr == proto);
                    if let Some((_, _, num)) = found {
                        out.push(PortMatch::Range(proto, *num, *num));
                    }
                }
                Direction::Egress => {
                    let mut dests: Vec<(Ipv4Addr, u16)> = pods
                        .iter()
                        .filter(|d| peers.admits(d.ip))
                        .filter_map(|d| {
                            d.named_ports
                                .iter()
                                .find(|(n, pr, _)| n == name && *pr == proto)
                                .map(|(_, _, n)| (d.ip, *n))
                        })
                        .collect();
                    dests.sort();
                    dests.dedup();
                    if !dests.is_empty() {
                        out.push(PortMatch::Named(proto, dests));
                    }
                }
            },
        }
    }
    // Ports were listed but none resolved: the rule allows nothing for this pod.
    (!out.is_empty()).then_some(out)
}

/// The rules of every local pod, by IP.
pub fn build(
    policies: &[std::sync::Arc<NetworkPolicy>],
    pods: &[PodView],
    namespaces: &[std::sync::Arc<Namespace>],
) -> BTreeMap<Ipv4Addr, PodRules> {
    let ns_labels: BTreeMap<String, BTreeMap<String, String>> = namespaces
        .iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), n.metadata.labels.clone().unwrap_or_default()))
        .collect();
    let mut policies: Vec<&NetworkPolicy> = policies.iter().map(|p| p.as_ref()).collect();
    policies.sort_by(|a, b| (&a.metadata.namespace, &a.metadata.name).cmp(&(&b.metadata.namespace, &b.metadata.name)));
    // Peers are per policy rule, shared by all the pods the policy selects.
    struct Compiled<'a> {
        policy: &'a NetworkPolicy,
        id: String,
        selects: LabelSelector,
        ingress: bool,
        egress: bool,
        ingress_peers: Vec<std::sync::Arc<Peers>>,
        egress_peers: Vec<std::sync::Arc<Peers>>,
    }
    let compiled: Vec<Compiled<'_>> = policies
        .iter()
        .map(|p| {
            let ns = p.metadata.namespace.clone().unwrap_or_default();
            let spec = p.spec.as_ref();
            let (ingress, egress) = types(p);
            let ingress_peers = spec
                .and_then(|s| s.ingress.as_ref())
                .into_iter()
                .flatten()
                .map(|r| std::sync::Arc::new(peers(r.from.as_ref(), &ns, pods, &ns_labels)))
                .collect();
            let egress_peers = spec
                .and_then(|s| s.egress.as_ref())
                .into_iter()
                .flatten()
                .map(|r| std::sync::Arc::new(peers(r.to.as_ref(), &ns, pods, &ns_labels)))
                .collect();
            Compiled {
                policy: p,
                id: format!("{ns}/{}", p.metadata.name.as_deref().unwrap_or_default()),
                // An absent podSelector is the empty one: every pod of the namespace.
                selects: selector(Some(spec.and_then(|s| s.pod_selector.as_ref()).unwrap_or(&MetaSelector::default()))),
                ingress,
                egress,
                ingress_peers,
                egress_peers,
            }
        })
        .collect();
    let mut out = BTreeMap::new();
    for pod in pods.iter().filter(|p| p.local) {
        let mut rules = PodRules::default();
        for c in &compiled {
            if c.policy.metadata.namespace.as_deref().unwrap_or_default() != pod.namespace
                || !c.selects.matches(&pod.labels)
            {
                continue;
            }
            let spec = c.policy.spec.as_ref();
            if c.ingress {
                let allows = rules.ingress.get_or_insert_with(Vec::new);
                let list = spec.and_then(|s| s.ingress.as_ref()).into_iter().flatten();
                for (i, (r, p)) in list.zip(&c.ingress_peers).enumerate() {
                    if let Some(ports) = ports(r.ports.as_ref(), Direction::Ingress, pod, p, pods) {
                        allows.push(Allow { id: format!("{} ingress {i}", c.id), peers: p.clone(), ports });
                    }
                }
            }
            if c.egress {
                let allows = rules.egress.get_or_insert_with(Vec::new);
                let list = spec.and_then(|s| s.egress.as_ref()).into_iter().flatten();
                for (i, (r, p)) in list.zip(&c.egress_peers).enumerate() {
                    if let Some(ports) = ports(r.ports.as_ref(), Direction::Egress, pod, p, pods) {
                        allows.push(Allow { id: format!("{} egress {i}", c.id), peers: p.clone(), ports });
                    }
                }
            }
        }
        if rules.ingress.is_some() || rules.egress.is_some() {
            out.insert(pod.ip, rules);
        }
    }
    out
}
