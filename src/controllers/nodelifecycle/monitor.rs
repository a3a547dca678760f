//! What the node lifecycle controller decides, with no I/O: from each node's status, its
//! Lease's renewals and the time, the node's health as upstream tracks it (a probe time
//! taken from this controller's clock whenever the kubelet showed a sign of life, so that
//! clock skew between machines does not matter), the conditions to turn Unknown, the
//! NoExecute taints (rate-limited per zone, withheld when every zone is down) and the
//! NoSchedule taints that mirror the conditions.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// How long a node may go without a sign of life before it is Unknown (upstream's
/// `--node-monitor-grace-period`).
pub const NODE_MONITOR_GRACE_PERIOD: Duration = Duration::from_secs(40);
/// The same for a node whose kubelet never posted a Ready condition
/// (`--node-startup-grace-period`).
pub const NODE_STARTUP_GRACE_PERIOD: Duration = Duration::from_secs(60);
/// The longest between two passes over all nodes (`--node-monitor-period`).
pub const NODE_MONITOR_PERIOD: Duration = Duration::from_secs(5);
/// One node tainted NoExecute per this interval and zone (`--node-eviction-rate` 0.1).
pub const NODE_EVICTION_INTERVAL: Duration = Duration::from_secs(10);
/// The same in a large zone in partial disruption (`--secondary-node-eviction-rate` 0.01).
pub const SECONDARY_NODE_EVICTION_INTERVAL: Duration = Duration::from_secs(100);
/// Above this many nodes a zone is large (`--large-cluster-size-threshold`).
pub const LARGE_CLUSTER_SIZE_THRESHOLD: usize = 50;
/// The share of not-ready nodes, in percent, that puts a zone in partial disruption
/// (`--unhealthy-zone-threshold` 0.55).
pub const UNHEALTHY_ZONE_THRESHOLD_PERCENT: u32 = 55;

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
/// A node with this label does not count toward its zone's disruption.
pub const LABEL_EXCLUDE_DISRUPTION: &str = "node.kubernetes.io/exclude-disruption";

/// The conditions a silent node's kubelet can no longer vouch for (NetworkUnavailable is
/// the network plugin's, not the kubelet's).
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The node lifecycle controller's settings (upstream's kube-controller-manager flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub node_monitor_grace_period: Duration,
    pub node_startup_grace_period: Duration,
    pub node_monitor_period: Duration,
    pub node_eviction_interval: Duration,
    pub secondary_node_eviction_interval: Duration,
    pub large_cluster_size_threshold: usize,
    pub unhealthy_zone_threshold_percent: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_monitor_grace_period: NODE_MONITOR_GRACE_PERIOD,
            node_startup_grace_period: NODE_STARTUP_GRACE_PERIOD,
            node_monitor_period: NODE_MONITOR_PERIOD,
            node_eviction_interval: NODE_EVICTION_INTERVAL,
            secondary_node_eviction_interval: SECONDARY_NODE_EVICTION_INTERVAL,
            large_cluster_size_threshold: LARGE_CLUSTER_SIZE_THRESHOLD,
            unhealthy_zone_threshold_percent: UNHEALTHY_ZONE_THRESHOLD_PERCENT,
        }
    }
}

/// A node as the pass sees it: the object and its Lease's renew time.
pub struct Observed<'a> {
    pub node: &'a Node,
    pub lease_renewed: Option<Timestamp>,
}

/// What to do to one node.
#[derive(Debug, Default, PartialEq)]
pub struct NodeAction {
    pub name: String,
    /// The node's new status conditions (all of them), when they changed.
    pub conditions: Option<Vec<NodeCondition>>,
    /// The node's new taints (all of them), when they changed.
    pub taints: Option<Vec<Taint>>,
    /// Its pods' Ready conditions become False (upstream's MarkPodsNotReady).
    pub mark_pods_not_ready: bool,
    /// Normal events on the node: (reason, message).
    pub events: Vec<(String, String)>,
}

impl NodeAction {
    fn is_empty(&self) -> bool {
        self.conditions.is_none() && self.taints.is_none() && !self.mark_pods_not_ready && self.events.is_empty()
    }
}

/// What a pass decided, and when the next pass is due at the latest.
#[derive(Debug)]
pub struct Pass {
    pub actions: Vec<NodeAction>,
    pub next: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneState {
    Initial,
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// What the controller remembers of a node between passes.
#[derive(Clone, Debug)]
struct Health {
    /// When this controller last saw a sign of life (a new heartbeat or lease renewal).
    probe: Timestamp,
    /// The Ready condition it last saw or wrote.
    ready: Option<NodeCondition>,
    lease_renewed: Option<Timestamp>,
}

/// The controller's memory: per-node health, zone states and per-zone tainting times.
#[derive(Default)]
pub struct Monitor {
    config: Config,
    health: HashMap<String, Health>,
    zones: HashMap<String, ZoneState>,
    /// Per zone, when the next NoExecute taint may be added (a token bucket of one).
    next_taint: HashMap<String, Timestamp>,
    /// Nodes per zone, as of the last pass.
    zone_sizes: HashMap<String, usize>,
    /// Nodes whose pods could not all be marked not ready; tried again next pass.
    retry_mark: HashSet<String>,
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add(d).unwrap_or(Timestamp::MAX)
}

/// How long from `now` until `t` (zero if past).
pub fn until(now: Timestamp, t: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or(Duration::ZERO)
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

fn taints(node: &Node) -> Vec<Taint> {
    node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default()
}

/// Upstream's taint identity: key and effect.
fn has_taint(taints: &[Taint], key: &str, effect: &str) -> bool {
    taints.iter().any(|t| t.key == key && t.effect == effect)
}

fn taint(key: &str, effect: &str, now: Timestamp) -> Taint {
    Taint { key: key.into(), effect: effect.into(), value: None, time_added: Some(Time(now)) }
}

/// Upstream's zone key: region and zone from the topology labels (or their beta names).
pub fn zone_key(node: &Node) -> String {
    let labels = node.metadata.labels.as_ref();
    let label =
        |ga: &str, beta: &str| labels.and_then(|l| l.get(ga).or_else(|| l.get(beta))).cloned().unwrap_or_default();
    let region = label("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region");
    let zone = label("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone");
    if region.is_empty() && zone.is_empty() {
        return String::new();
    }
    format!("{region}:\x00:{zone}")
}

/// A zone's state from its nodes' Ready statuses (`None`: no Ready condition).
pub fn zone_state(ready: &[Option<&str>], unhealthy_percent: u32) -> ZoneState {
    let ready_nodes = ready.iter().filter(|r| **r == Some("True")).count();
    let not_ready = ready.len() - ready_nodes;
    if ready_nodes == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2 && not_ready * 100 >= ready.len() * unhealthy_percent as usize {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// The NoSchedule taint a condition in a status stands for.
fn condition_taint(type_: &str, status: &str) -> Option<&'static str> {
    Some(match (type_, status) {
        ("Ready", "False") => TAINT_NOT_READY,
        ("Ready", "Unknown") => TAINT_UNREACHABLE,
        ("MemoryPressure", "True") => "node.kubernetes.io/memory-pressure",
        ("DiskPressure", "True") => "node.kubernetes.io/disk-pressure",
        ("NetworkUnavailable", "True") => "node.kubernetes.io/network-unavailable",
        ("PIDPressure", "True") => "node.kubernetes.io/pid-pressure",
        _ => return None,
    })
}

const CONDITION_TAINTS: [&str; 6] = [
    TAINT_NOT_READY,
    TAINT_UNREACHABLE,
    "node.kubernetes.io/memory-pressure",
    "node.kubernetes.io/disk-pressure",
    "node.kubernetes.io/network-unavailable",
    "node.kubernetes.io/pid-pressure",
];

/// The NoSchedule taints `conditions` and `unschedulable` call for, set on `taints`: the
/// ones this controller manages are added or removed, others are left alone.
pub fn reconcile_no_schedule(
    taints: &mut Vec<Taint>,
    conditions: &[NodeCondition],
    unschedulable: bool,
    now: Timestamp,
) {
    let mut want: Vec<&str> = conditions.iter().filter_map(|c| condition_taint(&c.type_, &c.status)).collect();
    if unschedulable {
        want.push(TAINT_UNSCHEDULABLE);
    }
    let managed = |k: &str| k == TAINT_UNSCHEDULABLE || CONDITION_TAINTS.contains(&k);
    taints.retain(|t| t.effect != "NoSchedule" || !managed(&t.key) || want.contains(&t.key.as_str()));
    for key in want {
        if !has_taint(taints, key, "NoSchedule") {
            taints.push(taint(key, "NoSchedule", now));
        }
    }
}

/// `conditions` after the grace period ran out: the kubelet's conditions Unknown (those it
/// never posted added as such).
pub fn mark_unknown(conditions: &mut Vec<NodeCondition>, created: Option<&Time>, now: Timestamp) {
    for type_ in KUBELET_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => conditions.push(NodeCondition {
                type_: type_.into(),
                status: "Unknown".into(),
                reason: Some("NodeStatusNeverUpdated".into()),
                message: Some("Kubelet never posted node status.".into()),
                last_heartbeat_time: created.cloned(),
                last_transition_time: Some(Time(now)),
            }),
            Some(c) if c.status != "Unknown" => {
                c.status = "Unknown".into();
                c.reason = Some("NodeStatusUnknown".into());
                c.message = Some("Kubelet stopped posting node status.".into());
                c.last_transition_time = Some(Time(now));
            }
            Some(_) => {}
        }
    }
}

impl Monitor {
    pub fn new(config: Config) -> Self {
        Monitor { config, ..Default::default() }
    }

    /// Marking a node's pods not ready failed: the next pass tries again.
    pub fn mark_failed(&mut self, node: &str) {
        self.retry_mark.insert(node.to_string());
    }

    /// Updates what is known of a node from the object and its lease; returns the grace
    /// period it is entitled to and the Ready condition it has (upstream's
    /// `tryUpdateNodeHealth`, first half).
    fn observe(&mut self, o: &Observed<'_>, now: Timestamp) -> (Duration, NodeCondition) {
        let node = o.node;
        let name = node.metadata.name.clone().unwrap_or_default();
        let created = node.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
        let current = condition(node, "Ready");
        let (grace, observed) = match current {
            Some(c) => (self.config.node_monitor_grace_period, c.clone()),
            None => (
                self.config.node_startup_grace_period,
                NodeCondition {
                    type_: "Ready".into(),
                    status: "Unknown".into(),
                    last_heartbeat_time: Some(Time(created)),
                    last_transition_time: Some(Time(created)),
                    ..Default::default()
                },
            ),
        };
        let fresh = |probe| Health { probe, ready: current.cloned(), lease_renewed: None };
        let health = match self.health.remove(&name) {
            // Never posted: the grace period runs from the node's creation.
            None if current.is_none() => fresh(created),
            None => fresh(now),
            Some(h) => match (&h.ready, current) {
                (None, None) => h,
                (None, Some(_)) | (Some(_), None) => Health { lease_renewed: h.lease_renewed, ..fresh(now) },
                (Some(saved), Some(c)) if saved.last_heartbeat_time != c.last_heartbeat_time => {
                    Health { lease_renewed: h.lease_renewed, ..fresh(now) }
                }
                (Some(_), Some(_)) => h,
            },
        };
        let mut health = health;
        if let Some(renewed) = o.lease_renewed {
            if health.lease_renewed.is_none_or(|saved| saved < renewed) {
                health.lease_renewed = Some(renewed);
                health.probe = now;
            }
        }
        self.health.insert(name, health);
        (grace, observed)
    }

    /// One pass over every node (upstream's `monitorNodeHealth` with the NoExecute and
    /// NoSchedule tainting passes).
    pub fn pass(&mut self, nodes: &[Observed<'_>], now: Timestamp) -> Pass {
        let mut next = self.config.node_monitor_period;
        let mut actions = Vec::new();
        let names: HashSet<String> = nodes.iter().filter_map(|o| o.node.metadata.name.clone()).collect();
        let gone: Vec<String> = self.health.keys().filter(|n| !names.contains(*n)).cloned().collect();
        for name in gone {
            self.health.remove(&name);
            self.retry_mark.remove(&name);
            actions.push(NodeAction {
                events: vec![("RemovingNode".into(), format!("Removing Node {name} from Controller"))],
                name,
                ..Default::default()
            });
        }

        // Conditions first, for every node: the zones' states need them all.
        let mut per_node = Vec::new();
        let mut zones: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
        for o in nodes {
            let node = o.node;
            let name = node.metadata.name.clone().unwrap_or_default();
            let mut action = NodeAction { name: name.clone(), ..Default::default() };
            if !self.health.contains_key(&name) {
                action.events.push(("RegisteredNode".into(), format!("Registered Node {name} in Controller")));
            }
            let (grace, observed) = self.observe(o, now);
            let mut conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            let probe = self.health.get(&name).map(|h| h.probe).unwrap_or(now);
            let deadline = after(probe, grace);
            if now > deadline {
                mark_unknown(&mut conditions, node.metadata.creation_timestamp.as_ref(), now);
                let ready = conditions.iter().find(|c| c.type_ == "Ready").cloned();
                if ready.as_ref() != Some(&observed) {
                    if let Some(h) = self.health.get_mut(&name) {
                        h.ready = ready;
                    }
                    action.conditions = Some(conditions.clone());
                }
            } else {
                next = next.min(until(now, deadline) + Duration::from_millis(1));
            }
            let current = conditions.iter().find(|c| c.type_ == "Ready").map(|c| c.status.clone());
            if !node.metadata.labels.as_ref().is_some_and(|l| l.contains_key(LABEL_EXCLUDE_DISRUPTION)) {
                zones.entry(zone_key(node)).or_default().push(current.clone());
            }
            if let Some(status) = &current {
                let retry = self.retry_mark.remove(&name);
                let was_ready = observed.status == "True";
                if status != "True" && was_ready {
                    action.events.push(("NodeNotReady".into(), format!("Node {name} status is now: NodeNotReady")));
                }
                if status != "True" && (was_ready || retry) {
                    action.mark_pods_not_ready = true;
                }
            }
            per_node.push((o, action, conditions, current));
        }

        let entering_full_disruption = self.handle_disruption(&zones, now);

        for (o, mut action, conditions, current) in per_node {
            let node = o.node;
            let original = taints(node);
            let mut t = original.clone();
            let zone = zone_key(node);
            if entering_full_disruption {
                t.retain(|x| !(x.effect == "NoExecute" && (x.key == TAINT_NOT_READY || x.key == TAINT_UNREACHABLE)));
            } else if let Some(status) = current.as_deref() {
                if let Some(wait) = self.no_execute(&mut t, status, &zone, now) {
                    next = next.min(wait);
                }
            }
            let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false);
            reconcile_no_schedule(&mut t, &conditions, unschedulable, now);
            if t != original {
                action.taints = Some(t);
            }
            if !action.is_empty() {
                actions.push(action);
            }
        }
        Pass { actions, next }
    }

    /// The NoExecute taint for a node whose Ready status is `status`; returns how long until
    /// it may be added when the zone's rate holds it back.
    fn no_execute(&mut self, t: &mut Vec<Taint>, status: &str, zone: &str, now: Timestamp) -> Option<Duration> {
        let (want, opposite) = match status {
            "False" => (TAINT_NOT_READY, TAINT_UNREACHABLE),
            "Unknown" => (TAINT_UNREACHABLE, TAINT_NOT_READY),
            _ => {
                t.retain(|x| !(x.effect == "NoExecute" && (x.key == TAINT_NOT_READY || x.key == TAINT_UNREACHABLE)));
                return None;
            }
        };
        if has_taint(t, want, "NoExecute") {
            return None;
        }
        let swap = has_taint(t, opposite, "NoExecute");
        if !swap {
            // A new NoExecute taint goes at the zone's rate.
            let interval = self.interval(zone)?;
            if let Some(at) = self.next_taint.get(zone).filter(|at| **at > now) {
                return Some(until(now, *at));
            }
            self.next_taint.insert(zone.to_string(), after(now, interval));
        }
        t.retain(|x| !(x.effect == "NoExecute" && x.key == opposite));
        t.push(taint(want, "NoExecute", now));
        None
    }

    /// How often a zone may have a node tainted NoExecute; `None`: not at all.
    fn interval(&self, zone: &str) -> Option<Duration> {
        if self.all_fully_disrupted() {
            return None;
        }
        match self.zones.get(zone).copied().unwrap_or(ZoneState::Initial) {
            ZoneState::PartialDisruption => {
                let size = self.zone_sizes.get(zone).copied().unwrap_or(0);
                (size > self.config.large_cluster_size_threshold)
                    .then_some(self.config.secondary_node_eviction_interval)
            }
            _ => Some(self.config.node_eviction_interval),
        }
    }

    fn all_fully_disrupted(&self) -> bool {
        !self.zones.is_empty() && self.zones.values().all(|s| *s == ZoneState::FullDisruption)
    }

    /// Upstream's `handleDisruption`: new zone states; true when every zone just went down
    /// (the NoExecute taints come off every node: the control plane, not the nodes, is the
    /// likelier culprit). When they come back, every node gets a fresh grace period.
    fn handle_disruption(&mut self, zones: &BTreeMap<String, Vec<Option<String>>>, now: Timestamp) -> bool {
        let mut new_states = HashMap::new();
        let mut all_are = true;
        for (zone, ready) in zones {
            let ready: Vec<Option<&str>> = ready.iter().map(Option::as_deref).collect();
            let s = zone_state(&ready, self.config.unhealthy_zone_threshold_percent);
            all_are &= s == ZoneState::FullDisruption;
            new_states.insert(zone.clone(), s);
            self.zones.entry(zone.clone()).or_insert(ZoneState::Initial);
        }
        self.zones.retain(|z, _| zones.contains_key(z));
        self.zone_sizes = zones.iter().map(|(z, v)| (z.clone(), v.len())).collect();
        let all_were = self.all_fully_disrupted() || self.zones.is_empty();
        if all_are && all_were {
            return false;
        }
        if all_are {
            for s in self.zones.values_mut() {
                *s = ZoneState::FullDisruption;
            }
            return true;
        }
        if all_were {
            for h in self.health.values_mut() {
                h.probe = now;
            }
        }
        self.zones = new_states;
        false
    }
}
