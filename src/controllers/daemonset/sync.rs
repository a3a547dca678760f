//! One sync of a DaemonSet, with no I/O (upstream's `manage`, `rollingUpdate` and
//! `updateDaemonSetStatus`): from the set, the nodes and the pods it controls, which nodes
//! get a pod, which pods go, and the status.
//!
//! A node is eligible when the pod the set would put there fits it as the scheduler would
//! judge: nodeSelector and required node affinity, and taints against the template's
//! tolerations plus those every daemon pod gets ([`daemon_tolerations`]). Pods are made for
//! one node each through a required node affinity on its name, and the scheduler binds them.
//! A rolling update only runs in a sync that had nothing else to do, as upstream's waits for
//! its expectations.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::controllers::deployment::util::scaled_value;
use crate::controllers::history::REVISION_LABEL;
use crate::controllers::podutil;
use crate::controllers::runtime::owner::controller_ref;
use crate::scheduler::framework::{FilterPlugin, NodeInfo, PodInfo, Snapshot};
use crate::scheduler::plugins::{tolerates, NodeAffinity as NodeAffinityFilter};

/// The inputs of one sync.
pub struct Input<'a> {
    pub ds: &'a DaemonSet,
    pub nodes: Vec<&'a Node>,
    /// The pods the set controls (after adoption and release).
    pub pods: Vec<&'a Pod>,
    /// The hash of the set's template revision (the pods' `controller-revision-hash`).
    pub hash: &'a str,
    pub now: Timestamp,
    /// When failed pods may be deleted again, per set and node.
    pub failed_backoff: &'a mut FailedPodBackoff,
}

/// Upstream's back-off for deleting failed daemon pods (1 s doubling to 15 min, per set
/// generation and node), so that a set whose pods a node keeps refusing does not spin.
#[derive(Debug, Default)]
pub struct FailedPodBackoff {
    entries: HashMap<String, (Duration, Timestamp)>,
}

impl FailedPodBackoff {
    const INITIAL: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(15 * 60);

    /// Whether a failed pod under `key` may be deleted at `now` (taking the next step of
    /// the back-off), or how long until it may.
    pub fn next(&mut self, key: &str, now: Timestamp) -> Result<(), Duration> {
        let since = |t: Timestamp| Duration::try_from(now.duration_since(t)).unwrap_or_default();
        // Entries untouched for twice the longest back-off are forgotten (upstream's GC).
        self.entries.retain(|_, (_, last)| since(*last) <= 2 * Self::MAX);
        let backoff = match self.entries.get(key) {
            Some((backoff, last)) if since(*last) < *backoff => return Err(*backoff - since(*last)),
            Some((backoff, _)) => (*backoff * 2).min(Self::MAX),
            None => Self::INITIAL,
        };
        self.entries.insert(key.to_string(), (backoff, now));
        Ok(())
    }
}

/// What one sync decided.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// Pods to create, one per node named in its affinity.
    pub create: Vec<Pod>,
    pub delete: Vec<Pod>,
    pub status: DaemonSetStatus,
    /// When to look again without an event (pods turning available after minReadySeconds,
    /// failed pods whose deletion is backed off).
    pub requeue: Option<Duration>,
    /// `(namespace/name, node)` of each failed pod found and deleted (a warning event each).
    pub failed: Vec<(String, String)>,
}

/// The tolerations upstream adds to every daemon pod, so that node conditions do not evict
/// or keep out what runs on every node (network-unavailable only for host-network pods,
/// which do not need the pod network).
pub fn daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        // One of the same key and effect is replaced (upstream's AddOrUpdateTolerationInPod).
        match list.iter_mut().find(|o| o.key == t.key && o.effect == t.effect) {
            Some(o) => *o = t,
            None => list.push(t),
        }
    }
}

/// The affinity that pins a pod to `node`: the required terms become one `metadata.name In
/// [node]` (the set's own node affinity was checked when the node was chosen).
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: "metadata.name".into(),
            operator: "In".into(),
            values: Some(vec![node.into()]),
        }]),
        match_expressions: None,
    };
    let mut a = affinity.unwrap_or_default();
    let na = a.node_affinity.get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(NodeSelector { node_selector_terms: vec![term] });
    a
}

/// The node a daemon pod is for: its `nodeName`, or the one its affinity pins it to.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let required =
        spec.affinity.as_ref()?.node_affinity.as_ref()?.required_during_scheduling_ignored_during_execution.as_ref()?;
    required.node_selector_terms.iter().flat_map(|t| t.match_fields.iter().flatten()).find_map(|r| {
        let values = r.values.as_deref().unwrap_or(&[]);
        (r.key == "metadata.name" && r.operator == "In" && values.len() == 1).then(|| values[0].clone())
    })
}

/// The pod the set puts on `node` at revision `hash` (upstream's `CreatePodTemplate` and
/// node affinity): the template, the daemon tolerations, the revision label.
pub fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.insert(REVISION_LABEL.into(), hash.into());
    let mut spec = template.spec.unwrap_or_default();
    daemon_tolerations(&mut spec);
    spec.affinity = Some(pin_to_node(spec.affinity.take(), node));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.metadata.name.as_deref().unwrap_or("daemon"))),
            namespace: ds.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Whether the set's pod should run on `node`, and whether one there may keep running
/// (upstream's `NodeShouldRunDaemonPod`): both need the node name and affinity to fit; a new
/// pod must tolerate the NoSchedule and NoExecute taints, one running only the NoExecute.
pub fn should_run(ds: &DaemonSet, node: &Node) -> (bool, bool) {
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    let mut pod = new_pod(ds, node_name, "");
    if let Some(spec) = pod.spec.as_mut() {
        // The pin is what the controller adds; the set's own affinity is what must fit.
        spec.affinity = ds.spec.as_ref().and_then(|s| s.template.spec.as_ref()).and_then(|s| s.affinity.clone());
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let fits_name = spec.node_name.as_deref().is_none_or(|n| n.is_empty() || n == node_name);
    let node_info = NodeInfo::new(Arc::new(node.clone()));
    let fits_affinity =
        NodeAffinityFilter.filter(&PodInfo::new(Arc::new(pod)), &node_info, &Snapshot::default()).is_ok();
    let tolerations = spec.tolerations.unwrap_or_default();
    let untolerated = |effects: &[&str]| {
        node.spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .any(|t| effects.contains(&t.effect.as_str()) && !tolerates(Some(&tolerations), t))
    };
    let run = fits_name && fits_affinity && !untolerated(&["NoSchedule", "NoExecute"]);
    let keep = fits_name && fits_affinity && !untolerated(&["NoExecute"]);
    (run, keep)
}

fn revision_of(pod: &Pod) -> &str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)).map_or("", String::as_str)
}

/// Oldest first: scheduled before unscheduled, then by creation time and name.
fn sort_oldest_first(pods: &mut [&Pod]) {
    pods.sort_by(|a, b| {
        let unscheduled = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty);
        let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        unscheduled(a)
            .cmp(&unscheduled(b))
            .then_with(|| t(a).cmp(&t(b)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// `(maxSurge, maxUnavailable)` for `desired` nodes; both zero makes unavailability 1.
pub fn fenceposts(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let strategy = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
    if strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") != "RollingUpdate" {
        return (0, 0);
    }
    let ru = strategy.and_then(|s| s.rolling_update.as_ref());
    let scaled = |v: Option<&k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>, default: i32| {
        v.map_or(Ok(default), |v| scaled_value(v, desired, true)).unwrap_or(default)
    };
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), 0);
    let mut unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), 1);
    if desired > 0 && surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

pub fn sync(input: Input<'_>) -> Step {
    let ds = input.ds;
    let hash = input.hash;
    let now = input.now;
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let mut nodes = input.nodes.clone();
    nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let eligibility: BTreeMap<&str, (bool, bool)> =
        nodes.iter().map(|n| (n.metadata.name.as_deref().unwrap_or(""), should_run(ds, n))).collect();

    // Pods by the node they are for; a finished pod being deleted no longer counts.
    let mut by_node: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in &input.pods {
        if podutil::is_terminal(p) && p.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if let Some(n) = target_node(p) {
            by_node.entry(n).or_default().push(p);
        }
    }
    for pods in by_node.values_mut() {
        sort_oldest_first(pods);
    }

    let mut step = Step { status: status(ds, &eligibility, &by_node, hash, now), ..Default::default() };
    if min_ready > 0 && step.status.number_ready != step.status.number_available.unwrap_or(0) {
        step.requeue = Some(Duration::from_secs(min_ready as u64));
    }
    if ds.metadata.deletion_timestamp.is_some() {
        return step;
    }
    let (surge, max_unavailable) = fenceposts(ds, step.status.desired_number_scheduled);
    let none: Vec<&Pod> = Vec::new();

    // Each node gets the one pod it should have (upstream's `podsShouldBeOnNode`).
    let mut create_on: Vec<String> = Vec::new();
    let mut delete: Vec<&Pod> = Vec::new();
    for (node, (run, keep)) in &eligibility {
        let pods = by_node.get(*node).unwrap_or(&none);
        if *run && pods.is_empty() {
            create_on.push(node.to_string());
        } else if *keep {
            let mut running = Vec::new();
            for p in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                if podutil::is_failed(p) {
                    let generation = ds.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
                    let key = format!("{}/{generation}/{node}", ds.metadata.uid.as_deref().unwrap_or(""));
                    match input.failed_backoff.next(&key, now) {
                        Ok(()) => {
                            let pod_ns = p.metadata.namespace.as_deref().unwrap_or("");
                            let pod_name = p.metadata.name.as_deref().unwrap_or("");
                            step.failed.push((format!("{pod_ns}/{pod_name}"), node.to_string()));
                            delete.push(p);
                        }
                        Err(wait) => step.requeue = Some(step.requeue.map_or(wait, |r| r.min(wait))),
                    }
                } else if podutil::is_terminal(p) {
                    delete.push(p);
                } else {
                    running.push(*p);
                }
            }
            if surge == 0 {
                delete.extend(running.iter().skip(1));
                continue;
            }
            if running.len() <= 1 {
                if running.is_empty() && *run {
                    create_on.push(node.to_string());
                }
                continue;
            }
            // Surging: an old and a new pod may both be kept while the new one is not
            // available and the old one is ready; anything else beyond one goes.
            let (mut oldest_new, mut oldest_old) = (None, None);
            for p in &running {
                let slot = if revision_of(p) == hash { &mut oldest_new } else { &mut oldest_old };
                if slot.is_none() {
                    *slot = Some(*p);
                } else {
                    delete.push(p);
                }
            }
            if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
                if !podutil::is_ready(old) || podutil::is_available(new, min_ready, now) {
                    delete.push(old);
                }
            }
        } else {
            delete.extend(pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()));
        }
    }
    // Unscheduled pods for nodes that are gone.
    for (node, pods) in &by_node {
        if !eligibility.contains_key(node.as_str()) {
            delete.extend(pods.iter().filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_none_or(str::is_empty)
            }));
        }
    }
    let rolling =
        ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.type_.as_deref()) != Some("OnDelete");
    if create_on.is_empty() && delete.is_empty() && rolling {
        // Nodes that want a pod and have none count as unavailable.
        for (node, (run, _)) in &eligibility {
            if *run {
                by_node.entry(node.to_string()).or_default();
            }
        }
        let view: Vec<NodePods> = by_node
            .iter()
            .map(|(node, pods)| NodePods::of(node, pods, hash, min_ready, now, eligibility.get(node.as_str())))
            .collect();
        let plan = if surge > 0 { surge_plan(&view, surge) } else { unavailable_plan(&view, max_unavailable) };
        create_on = plan.create_on;
        let names: HashSet<String> = plan.delete.into_iter().collect();
        delete = input
            .pods
            .iter()
            .copied()
            .filter(|p| p.metadata.name.as_ref().is_some_and(|n| names.contains(n)))
            .collect();
    }
    step.create = create_on.iter().map(|n| new_pod(ds, n, hash)).collect();
    let mut seen = HashSet::new();
    step.delete = delete.into_iter().filter(|p| seen.insert(p.metadata.name.clone())).cloned().collect();
    step
}

/// What the rolling update needs to know of one node's pods.
#[derive(Clone, Debug, Default)]
pub struct NodePods {
    pub node: String,
    /// More than one live pod of a kind: the manage step will sort it out first.
    pub ambiguous: bool,
    /// The live pod at the set's revision, if any: (name, available).
    pub new: Option<(String, bool)>,
    /// The live pod at another revision, if any: (name, available).
    pub old: Option<(String, bool)>,
    /// Whether a new pod may start here (upstream checks before surging onto an unavailable node).
    pub should_run: bool,
}

impl NodePods {
    fn of(node: &str, pods: &[&Pod], hash: &str, min_ready: i32, now: Timestamp, elig: Option<&(bool, bool)>) -> Self {
        let mut out = NodePods { node: node.into(), should_run: elig.is_some_and(|e| e.0), ..Default::default() };
        for p in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let entry = (p.metadata.name.clone().unwrap_or_default(), podutil::is_available(p, min_ready, now));
            let slot = if revision_of(p) == hash { &mut out.new } else { &mut out.old };
            if slot.is_some() {
                out.ambiguous = true;
            }
            *slot = Some(entry);
        }
        out
    }
}

/// What a rolling update step does: pods to delete by name, nodes to start a pod on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub delete: Vec<String>,
    pub create_on: Vec<String>,
}

/// Without surge: delete old pods while at most `max_unavailable` nodes lack an available pod;
/// an old pod that is not available anyway is always replaced.
pub fn unavailable_plan(nodes: &[NodePods], max_unavailable: i32) -> Plan {
    let mut unavailable = 0;
    let mut replace = Vec::new();
    let mut candidates = Vec::new();
    for n in nodes {
        if n.ambiguous {
            unavailable += 1;
            continue;
        }
        match (&n.new, &n.old) {
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some((_, available)), None) => unavailable += i32::from(!available),
            (None, Some((name, available))) => {
                if !available {
                    replace.push(name.clone());
                } else if unavailable < max_unavailable {
                    candidates.push(name.clone());
                }
            }
        }
    }
    let budget = (max_unavailable - unavailable).max(0) as usize;
    replace.extend(candidates.into_iter().take(budget));
    Plan { delete: replace, create_on: vec![] }
}

/// With surge: start new pods beside available old ones on at most `max_surge` nodes at a
/// time, and delete each old pod once the new one beside it is available.
pub fn surge_plan(nodes: &[NodePods], max_surge: i32) -> Plan {
    let mut plan = Plan::default();
    let mut surging = 0;
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    for n in nodes {
        if n.ambiguous {
            surging += 1;
            continue;
        }
        match (&n.new, &n.old) {
            (_, None) => {}
            (None, Some((name, available))) => {
                if !available {
                    if !n.should_run {
                        plan.delete.push(name.clone());
                    } else {
                        allowed.push(n.node.clone());
                    }
                } else if surging < max_surge {
                    candidates.push(n.node.clone());
                }
            }
            (Some((_, new_available)), Some((old, _))) => {
                if *new_available {
                    plan.delete.push(old.clone());
                } else {
                    surging += 1;
                }
            }
        }
    }
    let budget = (max_surge - surging).max(0) as usize;
    allowed.extend(candidates.into_iter().take(budget));
    plan.create_on = allowed;
    plan
}

/// The status (upstream's `updateDaemonSetStatus`), from the oldest pod on each node.
fn status(
    ds: &DaemonSet,
    eligibility: &BTreeMap<&str, (bool, bool)>,
    by_node: &BTreeMap<String, Vec<&Pod>>,
    hash: &str,
    now: Timestamp,
) -> DaemonSetStatus {
    let min_ready = ds.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let mut s = ds.status.clone().unwrap_or_default();
    let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0, 0, 0);
    for (node, (run, _)) in eligibility {
        let pods = by_node.get(*node).filter(|p| !p.is_empty());
        match (run, pods) {
            (true, None) => desired += 1,
            (true, Some(pods)) => {
                desired += 1;
                current += 1;
                let oldest = pods[0];
                if podutil::is_ready(oldest) {
                    ready += 1;
                    available += i32::from(podutil::is_available(oldest, min_ready, now));
                }
                updated += i32::from(revision_of(oldest) == hash);
            }
            (false, Some(_)) => misscheduled += 1,
            (false, None) => {}
        }
    }
    s.desired_number_scheduled = desired;
    s.current_number_scheduled = current;
    s.number_misscheduled = misscheduled;
    s.number_ready = ready;
    s.number_available = Some(available);
    s.number_unavailable = Some(desired - available);
    s.updated_number_scheduled = Some(updated);
    s.observed_generation = ds.metadata.generation;
    s
}
