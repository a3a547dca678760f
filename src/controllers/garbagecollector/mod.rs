//! The garbage collector (upstream's `garbage-collector-controller`): deletes objects whose
//! owners are all gone, and carries out the deletions the API server only marks, a
//! foreground one (the owner's `foregroundDeletion` finalizer goes once no blocking
//! dependent remains) and an orphaning one (the owner's `orphan` finalizer goes once its
//! dependents no longer reference it).
//!
//! It watches the metadata of every type discovery lists as deletable, listable and
//! watchable (rediscovered every 30 s, so types served later are covered), builds the
//! ownership [`graph`], and works through what the graph says in a [`queue`]. Nothing is
//! deleted on what the graph holds alone: each owner is looked up live, by name and UID,
//! before a dependent goes ([`decide`]).

pub mod decide;
pub mod graph;
pub mod queue;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams, Preconditions};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use self::decide::{decide, without_finalizer, Decision, OwnerState, Propagation, Subject};
use self::graph::{Graph, Kind, Node, Work, FOREGROUND, ORPHAN};
use self::queue::Queue;
use super::runtime::{failure_backoff, is_conflict, is_not_found, Context};

const NAME: &str = "garbage-collector-controller";

/// Upstream's `--concurrent-gc-syncs` default.
const WORKERS: usize = 20;

/// How often the served types are rediscovered.
const RESYNC: Duration = Duration::from_secs(30);

/// How long the workers wait for the first lists before they start anyway (what they
/// decide never rests on the graph alone, so an unsynced type costs lookups, not objects).
const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// Types never watched, as upstream's default: events have no dependents worth a watch.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// Why a piece of the collector's work failed; the item is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("discovery failed: {0}")]
    DiscoveryFailed(kube::Error),
    #[error("the owner kind {0} is not served")]
    UnknownOwnerKind(String),
    #[error("looking up {what} failed: {source}")]
    LookupFailed { what: String, source: kube::Error },
    #[error("updating {what} failed: {source}")]
    PatchFailed { what: String, source: kube::Error },
    #[error("deleting {what} failed: {source}")]
    DeleteFailed { what: String, source: kube::Error },
}

/// Runs the garbage collector until the context's stop.
pub async fn run(ctx: Context) {
    let gc = Arc::new(Collector::new(ctx.client.clone()));
    tokio::select! {
        () = ctx.stop.wait() => {}
        () = gc.serve() => {}
    }
}

/// The collector's state: the graph, the queue, and the served kinds owners resolve to.
pub struct Collector {
    client: kube::Client,
    graph: Mutex<Graph>,
    queue: Arc<Queue<Work>>,
    /// (group, kind) → the kind at its most stable version.
    kinds: RwLock<HashMap<(String, String), Arc<Kind>>>,
}

fn describe(kind: &Kind, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{} {ns}/{name}", kind.resource.kind),
        None => format!("{} {name}", kind.resource.kind),
    }
}

impl Collector {
    pub fn new(client: kube::Client) -> Self {
        Collector {
            client,
            graph: Mutex::new(Graph::default()),
            queue: Queue::new(),
            kinds: RwLock::new(HashMap::new()),
        }
    }

    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn enqueue(&self, work: Vec<Work>) {
        for w in work {
            self.queue.add(w);
        }
    }

    /// Discovers, watches, works; rediscovers every [`RESYNC`]. Never returns.
    async fn serve(self: &Arc<Self>) {
        let mut tasks = JoinSet::new();
        let mut monitors: HashMap<(String, String), tokio::task::AbortHandle> = HashMap::new();
        let mut workers_started = false;
        let mut failures = 0;
        loop {
            // Reap the monitors stopped last round.
            while tasks.try_join_next().is_some() {}
            let watched = match self.discover().await {
                Ok(w) => {
                    failures = 0;
                    w
                }
                Err(e) => {
                    let delay = failure_backoff(failures).max(Duration::from_millis(100)).min(RESYNC);
                    failures += 1;
                    tracing::warn!(controller = NAME, error = %e, retry_in = ?delay, "discovery failed");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            let keys: HashSet<(String, String)> =
                watched.iter().map(|k| (k.resource.group.clone(), k.resource.plural.clone())).collect();
            monitors.retain(|key, handle| {
                let keep = keys.contains(key);
                if !keep {
                    tracing::info!(controller = NAME, resource = ?key, "no longer served; stopped watching");
                    handle.abort();
                }
                keep
            });
            let mut syncs = Vec::new();
            for kind in watched {
                let key = (kind.resource.group.clone(), kind.resource.plural.clone());
                if monitors.contains_key(&key) {
                    continue;
                }
                let (synced, rx) = oneshot::channel();
                syncs.push(rx);
                let handle = tasks.spawn(self.clone().monitor(kind, synced));
                monitors.insert(key, handle);
            }
            if !workers_started {
                let all = futures::future::join_all(syncs);
                if tokio::time::timeout(SYNC_TIMEOUT, all).await.is_err() {
                    tracing::warn!(controller = NAME, "not every type listed in time; starting anyway");
                }
                tracing::info!(controller = NAME, objects = self.graph().len(), "graph synced; collecting");
                for _ in 0..WORKERS {
                    tasks.spawn(self.clone().worker());
                }
                workers_started = true;
            }
            tokio::time::sleep(RESYNC).await;
        }
    }

    /// The deletable, listable, watchable kinds to watch; records every served kind for
    /// resolving owner references.
    async fn discover(&self) -> Result<Vec<Arc<Kind>>, GcError> {
        let discovery = Discovery::new(self.client.clone()).run().await.map_err(GcError::DiscoveryFailed)?;
        let mut kinds = HashMap::new();
        let mut watched = Vec::new();
        for group in discovery.groups() {
            for (resource, caps) in group.resources_by_stability() {
                let kind = Arc::new(Kind { namespaced: caps.scope == Scope::Namespaced, resource });
                let r = &kind.resource;
                kinds.insert((r.group.clone(), r.kind.clone()), kind.clone());
                let usable = [verbs::LIST, verbs::WATCH, verbs::DELETE].iter().all(|v| caps.supports_operation(v));
                if usable && !IGNORED.contains(&(r.group.as_str(), r.plural.as_str())) {
                    watched.push(kind);
                }
            }
        }
        *self.kinds.write().unwrap_or_else(|p| p.into_inner()) = kinds;
        Ok(watched)
    }

    /// Feeds the graph from one type's metadata watch; `synced` fires after the first list.
    async fn monitor(self: Arc<Self>, kind: Arc<Kind>, synced: oneshot::Sender<()>) {
        // Metadata only: the graph needs no more, and the objects pass through unkept.
        let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(self.client.clone(), &kind.resource);
        let events = watcher(api, watcher::Config::default()).default_backoff();
        let mut events = std::pin::pin!(events);
        let mut synced = Some(synced);
        let mut listed: HashSet<String> = HashSet::new();
        while let Some(event) = events.next().await {
            let work = match event {
                Ok(Event::Init) => {
                    listed.clear();
                    Vec::new()
                }
                Ok(Event::InitApply(o)) => {
                    if let Some(uid) = &o.metadata.uid {
                        listed.insert(uid.clone());
                    }
                    self.observe(&kind, &o)
                }
                Ok(Event::InitDone) => {
                    let work = self.graph().resync(&kind, &std::mem::take(&mut listed));
                    if let Some(s) = synced.take() {
                        let _ = s.send(());
                    }
                    work
                }
                Ok(Event::Apply(o)) => self.observe(&kind, &o),
                Ok(Event::Delete(o)) => match &o.metadata.uid {
                    Some(uid) => self.graph().forget(uid),
                    None => Vec::new(),
                },
                Err(e) => {
                    tracing::debug!(controller = NAME, resource = %kind.resource.plural, error = %e, "watch error; retrying");
                    Vec::new()
                }
            };
            self.enqueue(work);
        }
    }

    fn observe(&self, kind: &Arc<Kind>, o: &PartialObjectMeta<DynamicObject>) -> Vec<Work> {
        let Some(uid) = &o.metadata.uid else { return Vec::new() };
        let node = Node::new(kind.clone(), &o.metadata);
        self.graph().observe(uid, node)
    }

    async fn worker(self: Arc<Self>) {
        loop {
            let item = self.queue.next().await;
            let result = match &item {
                Work::AttemptToDelete(uid) => self.attempt_to_delete(uid).await,
                Work::AttemptToOrphan(uid) => self.attempt_to_orphan(uid).await,
            };
            if let Err(e) = &result {
                tracing::warn!(controller = NAME, work = ?item, error = %e, "will retry");
            }
            self.queue.done(item, result.is_ok(), failure_backoff);
        }
    }

    fn api(&self, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace.filter(|_| kind.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &kind.resource),
            None => Api::all_with(self.client.clone(), &kind.resource),
        }
    }

    /// The object's live metadata, if it still exists with this UID.
    async fn live(
        &self,
        kind: &Kind,
        namespace: Option<&str>,
        name: &str,
        uid: &str,
    ) -> Result<Option<PartialObjectMeta<DynamicObject>>, GcError> {
        match self.api(kind, namespace).get_metadata_opt(name).await {
            Ok(found) => Ok(found.filter(|o| o.metadata.uid.as_deref() == Some(uid))),
            Err(source) => Err(GcError::LookupFailed { what: describe(kind, namespace, name), source }),
        }
    }

    /// The owner's state, looked up live: a namesake with another UID is no owner.
    async fn owner_state(&self, dependent: &Node, r: &OwnerReference) -> Result<OwnerState, GcError> {
        let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let kind =
            self.kinds.read().unwrap_or_else(|p| p.into_inner()).get(&(group.to_string(), r.kind.clone())).cloned();
        let kind = kind.ok_or_else(|| GcError::UnknownOwnerKind(format!("{}/{}", r.api_version, r.kind)))?;
        if kind.namespaced && dependent.namespace.is_none() {
            // A cluster-scoped object cannot have a namespaced owner: upstream treats it as absent.
            return Ok(OwnerState::Dangling);
        }
        let namespace = if kind.namespaced { dependent.namespace.as_deref() } else { None };
        Ok(match self.live(&kind, namespace, &r.name, &r.uid).await? {
            None => OwnerState::Dangling,
            Some(o) => {
                let foreground = o.metadata.finalizers.iter().flatten().any(|f| f == FOREGROUND);
                if o.metadata.deletion_timestamp.is_some() && foreground {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Solid
                }
            }
        })
    }

    async fn attempt_to_delete(&self, uid: &str) -> Result<(), GcError> {
        let (node, has_dependents, dependent_deleting_dependents, blocking) = {
            let g = self.graph();
            let Some(node) = g.get(uid).cloned() else { return Ok(()) };
            let dependents = g.dependents(uid);
            let waiting = dependents.iter().any(|d| g.get(d).is_some_and(|n| n.deleting_dependents));
            let blocking: Vec<(String, bool)> = g
                .blocking_dependents(uid)
                .into_iter()
                .map(|d| {
                    let deleting = g.get(&d).is_some_and(|n| n.deleting);
                    (d, deleting)
                })
                .collect();
            (node, !dependents.is_empty(), waiting, blocking)
        };
        let ns = node.namespace.as_deref();
        if node.deleting_dependents {
            if blocking.is_empty() {
                return self.remove_finalizer(&node, uid, FOREGROUND).await;
            }
            // Still waiting: make sure each blocking dependent is on its way out.
            for (d, deleting) in blocking {
                if !deleting {
                    self.queue.add(Work::AttemptToDelete(d));
                }
            }
            return Ok(());
        }
        if node.deleting {
            return Ok(());
        }
        let Some(live) = self.live(&node.kind, ns, &node.name, uid).await? else { return Ok(()) };
        let refs = live.metadata.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            return Ok(());
        }
        let mut states = Vec::with_capacity(refs.len());
        for r in &refs {
            states.push((r, self.owner_state(&node, r).await?));
        }
        let finalizers = live.metadata.finalizers.clone().unwrap_or_default();
        let subject = Subject { finalizers: &finalizers, has_dependents, dependent_deleting_dependents };
        let what = describe(&node.kind, ns, &node.name);
        match decide(subject, &states) {
            Decision::Keep => Ok(()),
            Decision::RemoveOwners(gone) => {
                tracing::info!(controller = NAME, object = %what, owners = ?gone, "removing references to owners that are gone");
                let kept: Vec<OwnerReference> = refs.iter().filter(|r| !gone.contains(&r.uid)).cloned().collect();
                self.patch_owners(&node, &live.metadata, &kept).await.map(|_| ())
            }
            Decision::Delete { propagation, unblock } => {
                let mut rv = live.metadata.resource_version.clone();
                if !unblock.is_empty() {
                    let unblocked: Vec<OwnerReference> = refs
                        .iter()
                        .map(|r| {
                            let mut r = r.clone();
                            if unblock.contains(&r.uid) {
                                r.block_owner_deletion = Some(false);
                            }
                            r
                        })
                        .collect();
                    match self.patch_owners(&node, &live.metadata, &unblocked).await? {
                        Some(new_rv) => rv = Some(new_rv),
                        None => return Ok(()),
                    }
                }
                tracing::info!(controller = NAME, object = %what, ?propagation, "deleting: its owners are gone");
                let dp = DeleteParams {
                    propagation_policy: Some(match propagation {
                        Propagation::Background => kube::api::PropagationPolicy::Background,
                        Propagation::Foreground => kube::api::PropagationPolicy::Foreground,
                        Propagation::Orphan => kube::api::PropagationPolicy::Orphan,
                    }),
                    preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: rv }),
                    ..Default::default()
                };
                match self.api(&node.kind, ns).delete(&node.name, &dp).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(source) => Err(GcError::DeleteFailed { what, source }),
                }
            }
        }
    }

    /// Removes the orphaned owner's reference from each of its dependents, then its
    /// `orphan` finalizer.
    async fn attempt_to_orphan(&self, uid: &str) -> Result<(), GcError> {
        let (node, dependents) = {
            let g = self.graph();
            let Some(node) = g.get(uid).cloned() else { return Ok(()) };
            let dependents: Vec<(String, Node)> =
                g.dependents(uid).into_iter().filter_map(|d| g.get(&d).cloned().map(|n| (d, n))).collect();
            (node, dependents)
        };
        if !node.orphaning {
            return Ok(());
        }
        for (duid, dep) in dependents {
            let Some(live) = self.live(&dep.kind, dep.namespace.as_deref(), &dep.name, &duid).await? else {
                continue;
            };
            let refs = live.metadata.owner_references.clone().unwrap_or_default();
            if !refs.iter().any(|r| r.uid == uid) {
                continue;
            }
            let kept: Vec<OwnerReference> = refs.into_iter().filter(|r| r.uid != uid).collect();
            self.patch_owners(&dep, &live.metadata, &kept).await?;
        }
        tracing::info!(controller = NAME, object = %describe(&node.kind, node.namespace.as_deref(), &node.name), "dependents orphaned");
        self.remove_finalizer(&node, uid, ORPHAN).await
    }

    /// Writes the object's owner references, guarded by the UID and resourceVersion it was
    /// read at. The new resourceVersion, or `None` if the object is gone.
    async fn patch_owners(
        &self,
        node: &Node,
        meta: &ObjectMeta,
        refs: &[OwnerReference],
    ) -> Result<Option<String>, GcError> {
        let patch = json!({"metadata": {
            "ownerReferences": refs,
            "uid": meta.uid,
            "resourceVersion": meta.resource_version,
        }});
        self.patch(node, patch).await
    }

    /// Removes `finalizer` from the live object with this UID.
    async fn remove_finalizer(&self, node: &Node, uid: &str, finalizer: &str) -> Result<(), GcError> {
        let ns = node.namespace.as_deref();
        let Some(live) = self.live(&node.kind, ns, &node.name, uid).await? else { return Ok(()) };
        let Some(left) = without_finalizer(live.metadata.finalizers.as_deref().unwrap_or_default(), finalizer) else {
            return Ok(());
        };
        tracing::info!(controller = NAME, object = %describe(&node.kind, ns, &node.name), finalizer, "removing the finalizer");
        let patch = json!({"metadata": {
            "finalizers": left,
            "uid": uid,
            "resourceVersion": live.metadata.resource_version,
        }});
        self.patch(node, patch).await.map(|_| ())
    }

    async fn patch(&self, node: &Node, patch: serde_json::Value) -> Result<Option<String>, GcError> {
        let ns = node.namespace.as_deref();
        match self.api(&node.kind, ns).patch_metadata(&node.name, &PatchParams::default(), &Patch::Merge(patch)).await {
            Ok(o) => Ok(Some(o.metadata.resource_version.unwrap_or_default())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => {
                let what = describe(&node.kind, ns, &node.name);
                if is_conflict(&source) {
                    tracing::debug!(controller = NAME, object = %what, "changed meanwhile; will retry");
                }
                Err(GcError::PatchFailed { what, source })
            }
        }
    }
}
