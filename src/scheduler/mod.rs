//! The scheduler: places pods that name no node on a node where they fit, through the
//! `pods/binding` subresource, as upstream's `default-scheduler` does.
//!
//! It reads pods, nodes, namespaces and volume claims from the controller runtime's shared
//! informers. Each pending pod (no node, `schedulerName: default-scheduler`, not
//! terminating, no scheduling gates) goes through one scheduling cycle ([`cycle`]): the
//! Filter plugins ([`plugins::default_profile`]) against every node, then the Score plugins
//! over the nodes that fit. A pod that fits nowhere gets PodScheduled=False (reason
//! Unschedulable) with upstream's diagnosis and a FailedScheduling event, and waits until
//! something that could make room changes (a node, a placed pod, a volume claim or storage
//! class), or at most upstream's podMaxInUnschedulablePodsDuration (5 min). As upstream
//! does, a pod is assumed on its node as soon as it is chosen and the binding is written in
//! the background, so a burst of pods is placed at the API server's pace rather than one
//! write round trip after another.

pub mod cycle;
pub mod framework;
pub mod plugins;
pub mod preemption;
pub mod resources;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod, PodCondition, PodStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Resource;

use self::cycle::Decision;
use self::framework::{Labels, NodeInfo, PodInfo, Profile, Snapshot};
use self::preemption::Candidate;
use crate::controllers::runtime::{is_conflict, is_not_found, Context, Informer, Notice};

/// The `schedulerName` this scheduler serves.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// The longest an unschedulable pod waits without an event before it is tried again
/// (upstream's podMaxInUnschedulablePodsDuration).
const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);
/// How soon a pod whose binding failed is tried again.
const RETRY_FAILED_BINDING: Duration = Duration::from_secs(1);
/// Most bindings written at once.
const BINDS_IN_FLIGHT: usize = 64;

type Key = (String, String);

fn key_of(pod: &Pod) -> Key {
    (pod.metadata.namespace.clone().unwrap_or_default(), pod.metadata.name.clone().unwrap_or_default())
}

fn node_of(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Whether this scheduler should place `pod`.
pub fn wants_scheduling(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else { return false };
    node_of(pod).is_empty()
        && spec.scheduler_name.as_deref() == Some(SCHEDULER_NAME)
        && pod.metadata.deletion_timestamp.is_none()
        && !is_terminal(pod)
        && spec.scheduling_gates.as_ref().is_none_or(Vec::is_empty)
}

/// The last try of a pod that did not fit (or whose binding failed).
struct Attempt {
    pod: Arc<Pod>,
    generation: u64,
    retry_at: Instant,
}

impl Attempt {
    /// Whether the pod itself changed in a way that could change the outcome.
    fn changed(&self, now: &Pod) -> bool {
        self.pod.spec != now.spec || self.pod.metadata.labels != now.metadata.labels
    }
}

/// What of a placed pod matters to other pods' placement.
#[derive(PartialEq)]
struct Placement {
    node: String,
    labels: Option<Labels>,
    done: bool,
    terminating: bool,
}

impl Placement {
    fn of(pod: &Pod) -> Placement {
        Placement {
            node: node_of(pod).to_string(),
            labels: pod.metadata.labels.clone(),
            done: is_terminal(pod),
            terminating: pod.metadata.deletion_timestamp.is_some(),
        }
    }
}

/// What of a node matters to placement (not its heartbeats).
#[derive(PartialEq)]
struct NodeShape {
    labels: Option<Labels>,
    spec: Option<k8s_openapi::api::core::v1::NodeSpec>,
    allocatable: Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
}

impl NodeShape {
    fn of(node: &Node) -> NodeShape {
        NodeShape {
            labels: node.metadata.labels.clone(),
            spec: node.spec.clone(),
            allocatable: node.status.as_ref().and_then(|s| s.allocatable.clone()),
        }
    }
}

/// How a binding written in the background ended.
struct Bound {
    key: Key,
    result: Result<(), kube::Error>,
}

/// The informers the scheduler reads.
struct Sources {
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    namespaces: Informer<Namespace>,
    claims: Informer<PersistentVolumeClaim>,
    classes: Informer<StorageClass>,
    volumes: Informer<PersistentVolume>,
}

/// What the scheduler knows beyond the informers: which pods are due a try.
struct Queue {
    src: Sources,
    /// Bumped whenever something that could let a pod fit changes.
    generation: u64,
    attempts: HashMap<Key, Attempt>,
    /// Pods chosen for a node that the informer does not yet show there.
    assumed: HashMap<Key, String>,
    /// Placed pods as last seen, to tell changes that matter from status noise.
    placed: HashMap<Key, Placement>,
    node_shapes: HashMap<String, NodeShape>,
    /// Plugin views of pods, rebuilt when the informer's copy changes.
    infos: HashMap<Key, Arc<PodInfo>>,
}

struct Scheduler {
    client: kube::Client,
    recorder: Recorder,
    profile: Profile,
    q: Queue,
    binds: Arc<tokio::sync::Semaphore>,
    bound_tx: tokio::sync::mpsc::UnboundedSender<Bound>,
}

impl Queue {
    fn new(src: Sources) -> Queue {
        Queue {
            src,
            generation: 0,
            attempts: HashMap::new(),
            assumed: HashMap::new(),
            placed: HashMap::new(),
            node_shapes: HashMap::new(),
            infos: HashMap::new(),
        }
    }

    fn pod_info(&mut self, pod: &Arc<Pod>) -> Arc<PodInfo> {
        let key = key_of(pod);
        if let Some(i) = self.infos.get(&key).filter(|i| Arc::ptr_eq(&i.pod, pod)) {
            return i.clone();
        }
        let ns_labels = self
            .src
            .namespaces
            .get(None, &key.0)
            .and_then(|n| n.metadata.labels.clone())
            .map(Arc::new)
            .unwrap_or_default();
        let info = Arc::new(PodInfo::in_namespace(pod.clone(), ns_labels));
        self.infos.insert(key, info.clone());
        info
    }

    fn on_pod(&mut self, notice: Notice<Pod>) {
        match notice {
            Notice::Changed(p) => {
                let key = key_of(&p);
                if node_of(&p).is_empty() {
                    return;
                }
                self.assumed.remove(&key);
                let now = Placement::of(&p);
                if self.placed.get(&key) != Some(&now) {
                    self.placed.insert(key, now);
                    self.generation += 1;
                }
            }
            Notice::Deleted(p) => {
                let key = key_of(&p);
                self.attempts.remove(&key);
                self.infos.remove(&key);
                if self.placed.remove(&key).is_some() | self.assumed.remove(&key).is_some() {
                    self.generation += 1;
                }
            }
            Notice::Resynced => {
                let present: std::collections::HashSet<Key> =
                    self.src.pods.store().state().iter().map(|p| key_of(p)).collect();
                self.attempts.retain(|k, _| present.contains(k));
                self.infos.retain(|k, _| present.contains(k));
                self.placed.retain(|k, _| present.contains(k));
                self.generation += 1;
            }
        }
    }

    fn on_node(&mut self, notice: Notice<Node>) {
        match notice {
            Notice::Changed(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                let now = NodeShape::of(&n);
                if self.node_shapes.get(&name) != Some(&now) {
                    self.node_shapes.insert(name, now);
                    self.generation += 1;
                }
            }
            Notice::Deleted(n) => {
                self.node_shapes.remove(n.metadata.name.as_deref().unwrap_or(""));
                self.generation += 1;
            }
            Notice::Resynced => {
                self.node_shapes.clear();
                self.generation += 1;
            }
        }
    }

    /// The nodes with the pods placed (or assumed) on them that still hold resources.
    fn snapshot(&mut self) -> Snapshot {
        let mut nodes: BTreeMap<String, NodeInfo> = self
            .src
            .nodes
            .store()
            .state()
            .into_iter()
            .map(|n| (n.metadata.name.clone().unwrap_or_default(), NodeInfo::new(n)))
            .collect();
        for pod in self.src.pods.store().state() {
            if is_terminal(&pod) {
                continue;
            }
            let node = match node_of(&pod) {
                "" => match self.assumed.get(&key_of(&pod)) {
                    Some(n) => n.clone(),
                    None => continue,
                },
                n => n.to_string(),
            };
            if nodes.contains_key(&node) {
                let info = self.pod_info(&pod);
                if let Some(n) = nodes.get_mut(&node) {
                    n.add_pod(info);
                }
            }
        }
        let claims = self.src.claims.store().state().into_iter().map(|c| (key_of_claim(&c), c)).collect();
        let classes = self
            .src
            .classes
            .store()
            .state()
            .into_iter()
            .map(|c| (c.metadata.name.clone().unwrap_or_default(), c))
            .collect();
        let mut nominated = Vec::new();
        for pod in self.src.pods.store().state() {
            let to = pod.status.as_ref().and_then(|s| s.nominated_node_name.clone()).filter(|n| !n.is_empty());
            if let Some(to) = to.filter(|_| wants_scheduling(&pod)) {
                nominated.push((to, self.pod_info(&pod)));
            }
        }
        let volumes = self
            .src
            .volumes
            .store()
            .state()
            .into_iter()
            .map(|v| (v.metadata.name.clone().unwrap_or_default(), v))
            .collect();
        Snapshot { nodes: nodes.into_values().collect(), nominated, claims, classes, volumes }
    }

    /// Pending pods due a try, highest priority first, then oldest.
    fn due(&self, now: Instant) -> Vec<Arc<Pod>> {
        let mut due: Vec<Arc<Pod>> = self
            .src
            .pods
            .store()
            .state()
            .into_iter()
            .filter(|p| wants_scheduling(p))
            .filter(|p| {
                let key = key_of(p);
                !self.assumed.contains_key(&key)
                    && self
                        .attempts
                        .get(&key)
                        .is_none_or(|a| a.generation != self.generation || a.changed(p) || now >= a.retry_at)
            })
            .collect();
        let priority = |p: &Pod| p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        due.sort_by(|a, b| {
            priority(b)
                .cmp(&priority(a))
                .then_with(|| created(a).cmp(&created(b)))
                .then_with(|| key_of(a).cmp(&key_of(b)))
        });
        due
    }

    /// When the next unschedulable pod is due without any event.
    fn next_retry(&self) -> Option<Instant> {
        self.attempts.values().map(|a| a.retry_at).min()
    }

    /// A binding written in the background has ended.
    fn bound(&mut self, b: Bound) {
        let (ns, name) = &b.key;
        match b.result {
            Ok(()) => {
                self.attempts.remove(&b.key);
                // Still assumed until the informer shows the pod on its node.
                if self.src.pods.get(Some(ns), name).is_none_or(|p| !node_of(&p).is_empty()) {
                    self.assumed.remove(&b.key);
                }
            }
            Err(e) => {
                if self.assumed.remove(&b.key).is_some() {
                    self.generation += 1;
                }
                // Placed by someone else, being deleted, or gone: the informer brings the news.
                if !is_not_found(&e) && !is_conflict(&e) {
                    tracing::warn!(component = SCHEDULER_NAME, object = %format!("{ns}/{name}"), error = %e, "binding failed");
                }
                if let Some(pod) = self.src.pods.get(Some(ns), name) {
                    let retry_at = Instant::now() + RETRY_FAILED_BINDING;
                    self.attempts.insert(b.key, Attempt { pod, generation: self.generation, retry_at });
                }
            }
        }
    }
}

impl Scheduler {
    /// Tries every pending pod that is due.
    async fn schedule_due(&mut self) {
        let due = self.q.due(Instant::now());
        if due.is_empty() {
            return;
        }
        let mut snap = self.q.snapshot();
        for pod in due {
            let info = self.q.pod_info(&pod);
            match cycle::decide(&self.profile, &info, &snap) {
                Decision::Node(node) => {
                    let claims = Claims {
                        to_select: plugins::claims_to_provision(&info, &snap, &node),
                        to_wait_for: plugins::unbound_delayed_claims(&info, &snap),
                    };
                    if let Some(n) = snap.nodes.iter_mut().find(|n| n.name == node) {
                        n.add_pod(info.clone());
                    }
                    self.assume_and_bind(&info, node, claims).await;
                }
                Decision::Unschedulable(message) => self.unschedulable(&info, &message, None).await,
                Decision::Preempt { message, candidate } => {
                    self.preempt(&info, &candidate).await;
                    self.unschedulable(&info, &message, Some(&candidate.node)).await;
                }
            }
        }
    }

    /// Counts the pod on `node` from now on and writes its binding in the background,
    /// after naming the node on the claims it waits for and waiting until they are bound
    /// (upstream's PreBind).
    async fn assume_and_bind(&mut self, info: &PodInfo, node: String, claims: Claims) {
        let key = info.key();
        self.q.assumed.insert(key.clone(), node.clone());
        let binds = self.binds.clone();
        // Only a pod with nothing to wait for takes its place in line here: one waiting for
        // its volumes must not hold up the others.
        let permit = if claims.to_wait_for.is_empty() {
            let Ok(permit) = binds.clone().acquire_owned().await else { return };
            Some(permit)
        } else {
            None
        };
        let (client, tx, recorder) = (self.client.clone(), self.bound_tx.clone(), self.recorder.clone());
        let claim_informer = self.q.src.claims.clone();
        let pod = info.pod.clone();
        tokio::spawn(async move {
            let (ns, name) = &key;
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    uid: pod.metadata.uid.clone(),
                    ..ObjectMeta::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..ObjectReference::default()
                },
            };
            let mut pre_bind_failed = None;
            let result = async {
                select_node(&client, ns, &claims.to_select, &node).await?;
                if let Err(e) = wait_for_claims(&claim_informer, ns, &claims.to_wait_for).await {
                    pre_bind_failed = Some(format!("running PreBind plugin \"VolumeBinding\": {e}"));
                    return Err(kube::Error::Service(e.into()));
                }
                let _permit = match permit {
                    Some(p) => p,
                    None => binds.acquire_owned().await.map_err(|e| kube::Error::Service(e.into()))?,
                };
                let api: Api<Pod> = Api::namespaced(client, ns);
                api.create_subresource::<_, kube::core::Status>("binding", name, &PostParams::default(), &binding)
                    .await
                    .map(drop)
            }
            .await;
            if let Some(note) = pre_bind_failed {
                publish(&recorder, &pod, EventType::Warning, "FailedScheduling", "Scheduling", note).await;
            }
            if result.is_ok() {
                tracing::info!(component = SCHEDULER_NAME, object = %format!("{ns}/{name}"), node = %node, "bound");
                let note = format!("Successfully assigned {ns}/{name} to {node}");
                publish(&recorder, &pod, EventType::Normal, "Scheduled", "Binding", note).await;
            }
            let _ = tx.send(Bound { key, result });
        });
    }

    /// Evicts the victims for `preemptor`, as upstream's default preemption: each gets the
    /// DisruptionTarget condition, a Preempted event, and is deleted.
    async fn preempt(&self, preemptor: &PodInfo, candidate: &Candidate) {
        let note = format!("Preempted by pod {} on node {}", preemptor.uid(), candidate.node);
        for victim in &candidate.victims {
            let object = format!("{}/{}", victim.namespace, victim.name);
            tracing::info!(component = SCHEDULER_NAME, object = %object, preemptor = %format!("{}/{}", preemptor.namespace, preemptor.name), node = %candidate.node, "preempting");
            let disruption = PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("PreemptionByScheduler".into()),
                message: Some(format!("{SCHEDULER_NAME}: preempting to accommodate a higher priority pod")),
                last_transition_time: Some(Time(Timestamp::now())),
                ..PodCondition::default()
            };
            self.write_status(victim, condition_update(&victim.pod, disruption), None).await;
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &victim.namespace);
            match api.delete(&victim.name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => continue,
                Err(e) => {
                    tracing::warn!(component = SCHEDULER_NAME, object = %object, error = %e, "deleting a victim failed");
                    continue;
                }
            }
            let ev = Event {
                type_: EventType::Normal,
                reason: "Preempted".into(),
                note: Some(note.clone()),
                action: "Preempting".into(),
                secondary: Some(preemptor.pod.object_ref(&())),
            };
            if let Err(e) = self.recorder.publish(&ev, &victim.pod.object_ref(&())).await {
                tracing::debug!(component = SCHEDULER_NAME, error = %e, "cannot record event");
            }
        }
    }

    async fn unschedulable(&mut self, info: &PodInfo, message: &str, nominated: Option<&str>) {
        let key = info.key();
        tracing::debug!(component = SCHEDULER_NAME, object = %format!("{}/{}", key.0, key.1), message, "unschedulable");
        let retry_at = Instant::now() + MAX_UNSCHEDULABLE;
        self.q.attempts.insert(key, Attempt { pod: info.pod.clone(), generation: self.q.generation, retry_at });
        let condition = PodCondition {
            type_: "PodScheduled".into(),
            status: "False".into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.to_string()),
            last_transition_time: Some(Time(Timestamp::now())),
            ..PodCondition::default()
        };
        let nominated =
            nominated.filter(|n| info.pod.status.as_ref().and_then(|s| s.nominated_node_name.as_deref()) != Some(*n));
        self.write_status(info, condition_update(&info.pod, condition), nominated).await;
        let recorder = self.recorder.clone();
        let (pod, note) = (info.pod.clone(), message.to_string());
        tokio::spawn(async move {
            publish(&recorder, &pod, EventType::Warning, "FailedScheduling", "Scheduling", note).await;
        });
    }

    /// Writes a changed condition and a nominated node through the status subresource, as
    /// a strategic merge patch (conditions merge by type).
    async fn write_status(&self, info: &PodInfo, condition: Option<PodCondition>, nominated: Option<&str>) {
        if condition.is_none() && nominated.is_none() {
            return;
        }
        let patch = Pod {
            status: Some(PodStatus {
                conditions: condition.map(|c| vec![c]),
                nominated_node_name: nominated.map(str::to_string),
                ..PodStatus::default()
            }),
            ..Pod::default()
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &info.namespace);
        match api.patch_status(&info.name, &PatchParams::default(), &Patch::Strategic(&patch)).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                tracing::warn!(component = SCHEDULER_NAME, object = %format!("{}/{}", info.namespace, info.name), error = %e, "updating the pod's status failed");
            }
        }
    }
}

/// The claims of a pod chosen for a node: those to name the node on, and those whose
/// volumes the binding waits for.
struct Claims {
    to_select: Vec<String>,
    to_wait_for: Vec<String>,
}

/// How long a pod's binding waits for its claims' volumes (upstream's `bindTimeoutSeconds`).
const BIND_TIMEOUT: Duration = Duration::from_secs(600);

/// Waits until every claim named is bound to a volume, or [`BIND_TIMEOUT`] passes.
async fn wait_for_claims(
    informer: &Informer<PersistentVolumeClaim>,
    ns: &str,
    claims: &[String],
) -> Result<(), String> {
    if claims.is_empty() {
        return Ok(());
    }
    let mut notices = informer.subscribe();
    let all_bound = || {
        claims.iter().all(|c| {
            informer
                .get(Some(ns), c)
                .is_some_and(|c| c.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_some_and(|v| !v.is_empty()))
        })
    };
    let waiting = async {
        while !all_bound() {
            if notices.next().await.is_none() {
                break;
            }
        }
    };
    match tokio::time::timeout(BIND_TIMEOUT, waiting).await {
        Ok(()) if all_bound() => Ok(()),
        _ => Err("binding volumes: timed out waiting for the condition".to_string()),
    }
}

/// Asks for the claims' volumes on `node` (`volume.kubernetes.io/selected-node`).
async fn select_node(client: &kube::Client, ns: &str, claims: &[String], node: &str) -> Result<(), kube::Error> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    for claim in claims {
        let patch = PersistentVolumeClaim {
            metadata: ObjectMeta {
                annotations: Some([(plugins::SELECTED_NODE.to_string(), node.to_string())].into()),
                ..ObjectMeta::default()
            },
            ..PersistentVolumeClaim::default()
        };
        api.patch(claim, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    }
    Ok(())
}

fn key_of_claim(c: &PersistentVolumeClaim) -> Key {
    (c.metadata.namespace.clone().unwrap_or_default(), c.metadata.name.clone().unwrap_or_default())
}

/// The condition to write, as upstream's `UpdatePodCondition`: `None` when the pod already
/// has it; `lastTransitionTime` moves only when the status changes.
fn condition_update(pod: &Pod, mut new: PodCondition) -> Option<PodCondition> {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let Some(old) = conditions.into_iter().flatten().find(|c| c.type_ == new.type_) else { return Some(new) };
    if old.status == new.status {
        new.last_transition_time = old.last_transition_time.clone();
    }
    let same = old.status == new.status && old.reason == new.reason && old.message == new.message;
    (!same).then_some(new)
}

async fn publish(recorder: &Recorder, pod: &Pod, type_: EventType, reason: &str, action: &str, note: String) {
    crate::controllers::runtime::publish(recorder, &pod.object_ref(&()), type_, reason, action, note).await;
}

/// Notices of any kind that mean "volumes changed".
fn volume_notices(src: &Sources) -> impl Stream<Item = ()> + Send + 'static {
    futures::stream::select(
        futures::stream::select(src.claims.subscribe().map(drop), src.classes.subscribe().map(drop)),
        src.volumes.subscribe().map(drop),
    )
}

/// Runs the scheduler until `ctx.stop`. `ctx` should carry the identity
/// `system:kube-scheduler`.
pub async fn run(ctx: Context) {
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let recorder = Recorder::new(
        ctx.client.clone(),
        Reporter { controller: SCHEDULER_NAME.into(), instance: Some(format!("{SCHEDULER_NAME}-{host}")) },
    );
    let src = Sources {
        pods: ctx.informers.get(),
        nodes: ctx.informers.get(),
        namespaces: ctx.informers.get(),
        claims: ctx.informers.get(),
        classes: ctx.informers.get(),
        volumes: ctx.informers.get(),
    };
    let mut pod_notices = Box::pin(src.pods.subscribe());
    let mut node_notices = Box::pin(src.nodes.subscribe());
    let mut volume_notices = Box::pin(volume_notices(&src));
    let mut stop = ctx.stop.wait();
    let ready = async {
        crate::controllers::runtime::informer::ready(src.pods.store()).await;
        crate::controllers::runtime::informer::ready(src.nodes.store()).await;
        crate::controllers::runtime::informer::ready(src.namespaces.store()).await;
        crate::controllers::runtime::informer::ready(src.claims.store()).await;
        crate::controllers::runtime::informer::ready(src.classes.store()).await;
        crate::controllers::runtime::informer::ready(src.volumes.store()).await;
    };
    tokio::select! {
        () = &mut stop => return,
        () = ready => {}
    }
    let (bound_tx, mut bound_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut s = Scheduler {
        client: ctx.client.clone(),
        recorder,
        profile: plugins::default_profile(),
        q: Queue::new(src),
        binds: Arc::new(tokio::sync::Semaphore::new(BINDS_IN_FLIGHT)),
        bound_tx,
    };
    tracing::debug!(component = SCHEDULER_NAME, "started");
    loop {
        s.schedule_due().await;
        let retry = s.q.next_retry();
        let wake = async move {
            match retry {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => return,
            Some(n) = pod_notices.next() => s.q.on_pod(n),
            Some(n) = node_notices.next() => s.q.on_node(n),
            Some(()) = volume_notices.next() => s.q.generation += 1,
            Some(b) = bound_rx.recv() => s.q.bound(b),
            () = wake => {}
        }
        // Take whatever else has arrived before deciding, so a burst is one cycle.
        loop {
            let mut got = false;
            while let Some(Some(n)) = pod_notices.next().now_or_never() {
                s.q.on_pod(n);
                got = true;
            }
            while let Some(Some(n)) = node_notices.next().now_or_never() {
                s.q.on_node(n);
                got = true;
            }
            while let Some(Some(())) = volume_notices.next().now_or_never() {
                s.q.generation += 1;
                got = true;
            }
            while let Ok(b) = bound_rx.try_recv() {
                s.q.bound(b);
                got = true;
            }
            if !got {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::controllers::runtime::informer::ManualFeed;

    fn pod(spec: serde_json::Value, extra_meta: serde_json::Value) -> Pod {
        let mut meta = json!({"name": "p", "namespace": "d"});
        for (k, v) in extra_meta.as_object().into_iter().flatten() {
            meta[k] = v.clone();
        }
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c"}]);
        serde_json::from_value(json!({"metadata": meta, "spec": spec, "status": {"phase": "Pending"}})).unwrap()
    }

    /// A queue over informers fed by hand, with one 2-cpu node and the given pods.
    fn queue(pods: Vec<Pod>) -> (Queue, ManualFeed<Pod>) {
        let (pods_informer, mut pod_feed) = Informer::manual();
        let (nodes, mut node_feed) = Informer::<Node>::manual();
        let (namespaces, _) = Informer::manual();
        let (claims, _) = Informer::manual();
        let (classes, _) = Informer::manual();
        let (volumes, _) = Informer::manual();
        let node =
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "110"}}});
        node_feed.fill([serde_json::from_value(node).unwrap()]);
        pod_feed.fill(pods);
        (Queue::new(Sources { pods: pods_informer, nodes, namespaces, claims, classes, volumes }), pod_feed)
    }

    fn pending(name: &str) -> Pod {
        pod(json!({"schedulerName": SCHEDULER_NAME}), json!({"name": name, "uid": name}))
    }

    #[test]
    fn an_assumed_pod_is_not_due_and_counts_on_its_node_until_the_informer_shows_it_bound() {
        let (mut q, mut feed) = queue(vec![pending("p")]);
        let key = ("d".to_string(), "p".to_string());
        let due = |q: &Queue| q.due(Instant::now()).iter().map(|p| key_of(p)).collect::<Vec<_>>();
        assert_eq!(due(&q), vec![key.clone()]);
        q.assumed.insert(key.clone(), "n".into());
        assert!(due(&q).is_empty());
        assert_eq!(q.snapshot().nodes[0].pods.len(), 1);
        // The binding is written; the informer has not caught up: still assumed.
        q.bound(Bound { key: key.clone(), result: Ok(()) });
        assert_eq!(q.assumed.len(), 1);
        // The informer shows the pod on its node.
        let mut placed = pending("p");
        placed.spec.as_mut().unwrap().node_name = Some("n".into());
        feed.apply(kube::runtime::watcher::Event::Apply(placed.clone()));
        q.on_pod(Notice::Changed(q.src.pods.get(Some("d"), "p").unwrap()));
        assert!(q.assumed.is_empty());
        assert_eq!(q.snapshot().nodes[0].pods.len(), 1);
        // Deleted: nothing is left, and waiting pods are told.
        let generation = q.generation;
        feed.apply(kube::runtime::watcher::Event::Delete(placed.clone()));
        q.on_pod(Notice::Deleted(Arc::new(placed)));
        assert!(q.snapshot().nodes[0].pods.is_empty());
        assert!(q.generation > generation);
    }

    #[test]
    fn an_unschedulable_pod_waits_for_a_change_that_matters_or_five_minutes() {
        let (mut q, _feed) = queue(vec![pending("p")]);
        let now = Instant::now();
        let p = q.src.pods.get(Some("d"), "p").unwrap();
        q.attempts.insert(key_of(&p), Attempt { pod: p, generation: q.generation, retry_at: now + MAX_UNSCHEDULABLE });
        assert!(q.due(now).is_empty());
        assert_eq!(q.due(now + MAX_UNSCHEDULABLE).len(), 1);
        assert_eq!(q.next_retry(), Some(now + MAX_UNSCHEDULABLE));
        // A node heartbeat changes nothing that matters; a new label does.
        let node: Node = serde_json::from_value(
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "110"}}}),
        )
        .unwrap();
        q.on_node(Notice::Changed(Arc::new(node.clone())));
        let generation = q.generation;
        let mut beat = node.clone();
        beat.status.as_mut().unwrap().phase = Some("Running".into());
        q.on_node(Notice::Changed(Arc::new(beat)));
        assert_eq!(q.generation, generation);
        let mut labelled = node;
        labelled.metadata.labels = Some([("zone".to_string(), "a".to_string())].into());
        q.on_node(Notice::Changed(Arc::new(labelled)));
        assert_eq!(q.due(now).len(), 1);
    }

    #[test]
    fn pending_pods_are_those_of_this_scheduler_without_a_node() {
        let p = |spec| pod(spec, json!({}));
        assert!(wants_scheduling(&p(json!({"schedulerName": "default-scheduler"}))));
        assert!(!wants_scheduling(&p(json!({"schedulerName": "other"}))));
        assert!(!wants_scheduling(&p(json!({"schedulerName": "default-scheduler", "nodeName": "n"}))));
        assert!(!wants_scheduling(&p(
            json!({"schedulerName": "default-scheduler", "schedulingGates": [{"name": "g"}]})
        )));
        let deleting =
            pod(json!({"schedulerName": "default-scheduler"}), json!({"deletionTimestamp": "2025-01-01T00:00:00Z"}));
        assert!(!wants_scheduling(&deleting));
    }

    #[test]
    fn a_condition_is_written_only_when_it_changes_and_keeps_its_transition_time() {
        let cond = |status: &str, message: &str, at: &str| PodCondition {
            type_: "PodScheduled".into(),
            status: status.into(),
            reason: Some("Unschedulable".into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(at.parse().unwrap())),
            ..PodCondition::default()
        };
        let mut p = pod(json!({}), json!({}));
        assert!(condition_update(&p, cond("False", "a", "2025-01-01T00:00:00Z")).is_some());
        p.status.as_mut().unwrap().conditions = Some(vec![cond("False", "a", "2025-01-01T00:00:00Z")]);
        assert_eq!(condition_update(&p, cond("False", "a", "2025-02-01T00:00:00Z")), None);
        let changed = condition_update(&p, cond("False", "b", "2025-02-01T00:00:00Z")).unwrap();
        assert_eq!(changed.last_transition_time, Some(Time("2025-01-01T00:00:00Z".parse().unwrap())));
    }
}
