//! The DaemonSet controller: one pod on every node the set's pod fits (nodeSelector, node
//! affinity, taints against its tolerations), pinned there by node affinity for the
//! scheduler to bind; replaced node by node within maxUnavailable or maxSurge
//! (RollingUpdate) or when deleted (OnDelete); the template history kept in
//! ControllerRevisions, and the status `kubectl rollout status ds/...` reads.
//!
//! [`sync`] decides, with no I/O; this module finds the revision, feeds the decision from
//! the informers and applies it.

pub mod sync;

use std::sync::Arc;

use futures::future::join_all;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use serde_json::json;

use super::deployment::util::template_hash;
use super::history::{self, HistoryError, REVISION_LABEL};
use super::runtime::expectations::{Expectations, Seen, Written};
use super::runtime::owner::{claim, controller_ref, controller_selector, dependent_triggers, set_owners, Claim};
use super::runtime::{self, is_not_found, Clock, Context, Informer, ReconcileError};

/// At most this many pods are created or deleted in one sync (upstream's burstReplicas).
const BURST: usize = 250;

pub async fn run(ctx: Context) {
    let sets = ctx.informers.get::<DaemonSet>();
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let this = Arc::new(Controller {
        client: ctx.client.clone(),
        pods: pods.clone(),
        nodes: nodes.clone(),
        revisions: ctx.informers.get::<ControllerRevision>(),
        expectations: Expectations::default(),
        recorder: ctx.recorder("daemonset-controller"),
        clock: ctx.clock.clone(),
        failed_backoff: Default::default(),
    });
    // A node that comes, goes or changes its labels or taints may change where every set runs.
    let store = sets.store().clone();
    let node_triggers = nodes.subscribe().flat_map(move |_| futures::stream::iter(runtime::all(&store)));
    let triggers = futures::stream::select(
        futures::stream::select(
            runtime::own_triggers(&sets),
            dependent_triggers(&pods, sets.store().clone(), orphan_claimants),
        ),
        node_triggers,
    );
    runtime::run("daemonset", sets.store().clone(), triggers, ctx.stop.clone(), move |ds| {
        let this = this.clone();
        async move { this.reconcile(ds).await }
    })
    .await
}

/// The set's selector; none if empty or unusable (it selects nothing).
fn selector_of(ds: &DaemonSet) -> Option<Selector> {
    controller_selector(ds.spec.as_ref()?.selector.clone())
}

fn orphan_claimants(pod: &Pod, sets: &Store<DaemonSet>) -> Vec<ObjectRef<DaemonSet>> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sets.state()
        .iter()
        .filter(|s| s.metadata.namespace == pod.metadata.namespace)
        .filter(|s| selector_of(s).is_some_and(|sel| sel.matches(&labels)))
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

struct Controller {
    client: kube::Client,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    revisions: Informer<ControllerRevision>,
    expectations: Expectations<ObjectRef<DaemonSet>>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
    failed_backoff: std::sync::Mutex<sync::FailedPodBackoff>,
}

impl Controller {
    fn seen(&self, namespace: &str, name: &str) -> Seen {
        Seen::of(self.pods.get(Some(namespace), name).as_deref())
    }

    async fn reconcile(&self, ds: Arc<DaemonSet>) -> Result<Action, ReconcileError> {
        let key = ObjectRef::from_obj(&*ds);
        if !self.expectations.satisfied(&key, self.clock.instant(), |ns, n| self.seen(ns, n)) {
            return Ok(Action::await_change());
        }
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let name = ds.metadata.name.clone().unwrap_or_default();
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let deleting = ds.metadata.deletion_timestamp.is_some();
        let selector = selector_of(&ds);
        let owner = controller_ref(&*ds);

        let all = self.pods.store().state();
        let candidates = all.iter().filter(|p| p.metadata.namespace.as_deref() == Some(&ns)).cloned();
        let mut mine: Vec<Arc<Pod>> = Vec::new();
        let mut can_adopt = None;
        for c in claim(&uid, deleting, selector.as_ref(), candidates) {
            match c {
                Claim::Keep(p) => mine.push(p),
                Claim::Adopt(p) => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.can_adopt(&ds).await?);
                    }
                    if can_adopt == Some(true) {
                        let mut refs = p.metadata.owner_references.clone().unwrap_or_default();
                        refs.push(owner.clone());
                        if set_owners(&self.client, &*p, refs).await? {
                            mine.push(p);
                        }
                    }
                }
                Claim::Release(p) => {
                    let refs = p.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
                    set_owners(&self.client, &*p, refs).await?;
                }
            }
        }

        // The revision of the template (upstream's `constructHistory`).
        let rev_api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), &ns);
        let rev_candidates = self
            .revisions
            .store()
            .state()
            .into_iter()
            .filter(|r| r.metadata.namespace.as_deref() == Some(&ns))
            .collect();
        let mut revs =
            history::claim_revisions(&self.client, owner.clone(), deleting, selector.as_ref(), rev_candidates).await?;
        let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let patch = history::template_patch(&template);
        let mut collision_count = ds.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
        let next = revs.iter().filter(|r| !history::stores(r, &patch)).map(|r| r.revision).max().unwrap_or(0) + 1;
        let current = match revs.iter().rposition(|r| history::stores(r, &patch)) {
            Some(i) if revs[i].revision >= next => revs[i].clone(),
            Some(i) => {
                let renumbered = history::renumber(&rev_api, &revs[i], next)
                    .await
                    .map_err(|e| ReconcileError::Other(e.to_string()))?;
                revs[i] = renumbered.clone();
                renumbered
            }
            None => {
                let created = loop {
                    let hash = template_hash(&template, Some(collision_count));
                    let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
                    labels.insert(REVISION_LABEL.into(), hash.clone());
                    let rev = history::new_revision(
                        history::name(&name, &hash),
                        Some(ns.clone()),
                        owner.clone(),
                        labels,
                        patch.clone(),
                        next,
                    );
                    match history::create(&rev_api, &rev).await {
                        Ok(r) => break r,
                        Err(HistoryError::Collision(_)) if collision_count < i32::MAX => collision_count += 1,
                        Err(e) => return Err(ReconcileError::Other(e.to_string())),
                    }
                };
                revs.push(created.clone());
                created
            }
        };
        history::sort(&mut revs);
        let hash = current
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(REVISION_LABEL).cloned())
            .unwrap_or_else(|| template_hash(&template, Some(collision_count)));

        let nodes = self.nodes.store().state();
        let mut step = sync::sync(sync::Input {
            ds: &ds,
            nodes: nodes.iter().map(|n| &**n).collect(),
            pods: mine.iter().map(|p| &**p).collect(),
            hash: &hash,
            now: self.clock.now(),
            failed_backoff: &mut self.failed_backoff.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        });
        for (pod, node) in &step.failed {
            let note = format!("Found failed daemon pod {pod} on node {node}, will try to kill it");
            self.event(&ds.object_ref(&()), EventType::Warning, "FailedDaemonPod", "Delete", note).await;
        }
        step.status.collision_count = Some(collision_count);

        let failure = self.apply(&ds, &key, &step).await;
        if ds.status.as_ref() != Some(&step.status) {
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), &ns);
            match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": step.status}))).await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(f) = failure {
            return Err(f);
        }

        // Old revisions no pod is at, beyond revisionHistoryLimit.
        let limit = ds.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
        let live_hashes: Vec<&str> = mine
            .iter()
            .filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_LABEL))
            .map(String::as_str)
            .chain([hash.as_str()])
            .collect();
        let live: Vec<&str> = revs
            .iter()
            .filter(|r| {
                r.metadata.name == current.metadata.name
                    || r.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(REVISION_LABEL))
                        .is_some_and(|h| live_hashes.contains(&h.as_str()))
            })
            .filter_map(|r| r.metadata.name.as_deref())
            .collect();
        for r in history::prune(&revs, &live, limit) {
            match rev_api.delete(r.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(step.requeue.map_or_else(Action::await_change, Action::requeue))
    }

    /// Creates and deletes what the step decided (deletes first, as upstream's `syncNodes`);
    /// the first failure is returned once all were tried.
    async fn apply(&self, ds: &DaemonSet, key: &ObjectRef<DaemonSet>, step: &sync::Step) -> Option<ReconcileError> {
        let ns = ds.metadata.namespace.clone().unwrap_or_default();
        let reference = ds.object_ref(&());
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let mut failure = None;
        let deletes = join_all(step.delete.iter().take(BURST).map(|p| {
            let api = api.clone();
            async move {
                let dp = DeleteParams {
                    preconditions: Some(kube::api::Preconditions {
                        uid: p.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..Default::default()
                };
                (p, api.delete(p.metadata.name.as_deref().unwrap_or(""), &dp).await)
            }
        }))
        .await;
        for (p, r) in deletes {
            let pod_name = p.metadata.name.clone().unwrap_or_default();
            match r {
                Ok(_) => {
                    self.expectations.deleted(
                        key,
                        Written {
                            namespace: ns.clone(),
                            name: pod_name.clone(),
                            uid: p.metadata.uid.clone().unwrap_or_default(),
                        },
                        self.clock.instant(),
                    );
                    self.event(
                        &reference,
                        EventType::Normal,
                        "SuccessfulDelete",
                        "Delete",
                        format!("Deleted pod: {pod_name}"),
                    )
                    .await;
                }
                Err(e) if is_not_found(&e) || runtime::is_conflict(&e) => {}
                Err(e) => {
                    let note = format!("Error deleting: {e}");
                    self.event(&reference, EventType::Warning, "FailedDelete", "Delete", note).await;
                    failure.get_or_insert(ReconcileError::from(e));
                }
            }
        }
        let pp = PostParams::default();
        let creates = join_all(step.create.iter().take(BURST).map(|p| api.create(&pp, p))).await;
        for r in creates {
            match r {
                Ok(p) => {
                    let pod_name = p.metadata.name.clone().unwrap_or_default();
                    self.expectations.created(
                        key,
                        Written {
                            namespace: ns.clone(),
                            name: pod_name.clone(),
                            uid: p.metadata.uid.unwrap_or_default(),
                        },
                        self.clock.instant(),
                    );
                    self.event(
                        &reference,
                        EventType::Normal,
                        "SuccessfulCreate",
                        "Create",
                        format!("Created pod: {pod_name}"),
                    )
                    .await;
                }
                Err(e) => {
                    let message = match &e {
                        kube::Error::Api(s) => s.message.clone(),
                        other => other.to_string(),
                    };
                    let note = format!("Error creating: {message}");
                    self.event(&reference, EventType::Warning, "FailedCreate", "Create", note).await;
                    failure.get_or_insert(ReconcileError::from(e));
                }
            }
        }
        failure
    }

    async fn can_adopt(&self, ds: &DaemonSet) -> Result<bool, ReconcileError> {
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ds.metadata.namespace.as_deref().unwrap_or(""));
        match api.get(ds.metadata.name.as_deref().unwrap_or("")).await {
            Ok(fresh) => Ok(fresh.metadata.uid == ds.metadata.uid && fresh.metadata.deletion_timestamp.is_none()),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn event(&self, reference: &ObjectReference, type_: EventType, reason: &str, action: &str, note: String) {
        crate::controllers::runtime::publish(&self.recorder, reference, type_, reason, action, note).await;
    }
}

#[cfg(test)]
mod tests;
