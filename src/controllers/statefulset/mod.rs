//! The StatefulSet controller: pods with stable names and ordinals (`<set>-<n>`), each with
//! its own claims from the volumeClaimTemplates, made and removed in order (OrderedReady) or
//! all at once (Parallel), updated from the highest ordinal down to the partition
//! (RollingUpdate) or when deleted (OnDelete), with the template history kept in
//! ControllerRevisions and the status `kubectl rollout status sts/...` reads.
//!
//! [`sync`] decides, with no I/O; this module finds the revisions, feeds the decision from
//! the informers and applies it.

pub mod sync;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{ObjectReference, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use serde_json::json;

use self::sync::{Revision, Why};
use super::history::{self, HistoryError};
use super::runtime::expectations::{Expectations, Seen, Written};
use super::runtime::owner::{claim, controller_ref, controller_selector, dependent_triggers, set_owners, Claim};
use super::runtime::{self, api_code, is_not_found, Clock, Context, Informer, ReconcileError};

pub async fn run(ctx: Context) {
    let sets = ctx.informers.get::<StatefulSet>();
    let pods = ctx.informers.get::<Pod>();
    let this = Arc::new(Controller {
        client: ctx.client.clone(),
        pods: pods.clone(),
        revisions: ctx.informers.get::<ControllerRevision>(),
        claims: ctx.informers.get::<PersistentVolumeClaim>(),
        expectations: Expectations::default(),
        recorder: ctx.recorder("statefulset-controller"),
        clock: ctx.clock.clone(),
    });
    let triggers = futures::stream::select(
        runtime::own_triggers(&sets),
        dependent_triggers(&pods, sets.store().clone(), orphan_claimants),
    );
    runtime::run("statefulset", sets.store().clone(), triggers, ctx.stop.clone(), move |s| {
        let this = this.clone();
        async move { this.reconcile(s).await }
    })
    .await
}

/// The set's selector; none if empty or unusable (it selects nothing).
fn selector_of(set: &StatefulSet) -> Option<Selector> {
    controller_selector(set.spec.as_ref()?.selector.clone())
}

/// Sets in an orphan pod's namespace whose selector matches it and whose pod it is by name.
fn orphan_claimants(pod: &Pod, sets: &Store<StatefulSet>) -> Vec<ObjectRef<StatefulSet>> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    sets.state()
        .iter()
        .filter(|s| s.metadata.namespace == pod.metadata.namespace && is_member(s, pod))
        .filter(|s| selector_of(s).is_some_and(|sel| sel.matches(&labels)))
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

/// Whether the pod is named as one of the set's (upstream's `isMemberOf`).
fn is_member(set: &StatefulSet, pod: &Pod) -> bool {
    sync::ordinal_of(set.metadata.name.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or("")).is_some()
}

fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Whether a status write would change what is reported.
fn status_changed(old: Option<&StatefulSetStatus>, new: &StatefulSetStatus) -> bool {
    old != Some(new)
}

struct Controller {
    client: kube::Client,
    pods: Informer<Pod>,
    revisions: Informer<ControllerRevision>,
    claims: Informer<PersistentVolumeClaim>,
    expectations: Expectations<ObjectRef<StatefulSet>>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
}

impl Controller {
    fn seen(&self, namespace: &str, name: &str) -> Seen {
        Seen::of(self.pods.get(Some(namespace), name).as_deref())
    }

    async fn reconcile(&self, set: Arc<StatefulSet>) -> Result<Action, ReconcileError> {
        let key = ObjectRef::from_obj(&*set);
        if !self.expectations.satisfied(&key, self.clock.instant(), |ns, n| self.seen(ns, n)) {
            // The pod events still to come bring the set back.
            return Ok(Action::await_change());
        }
        let ns = set.metadata.namespace.clone().unwrap_or_default();
        let name = set.metadata.name.clone().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let deleting = set.metadata.deletion_timestamp.is_some();
        let selector = selector_of(&set);
        let owner = controller_ref(&*set);

        // The pods: every one in the namespace (failed and terminating ones matter), claimed
        // by selector and by name.
        let all = self.pods.store().state();
        let candidates = all.iter().filter(|p| p.metadata.namespace.as_deref() == Some(&ns));
        let mut mine: Vec<Arc<Pod>> = Vec::new();
        let mut can_adopt = None;
        for c in claim(&uid, deleting, selector.as_ref(), candidates.cloned()) {
            match c {
                Claim::Keep(p) if is_member(&set, &p) => mine.push(p),
                Claim::Keep(p) | Claim::Release(p) => {
                    let refs = p.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
                    set_owners(&self.client, &*p, refs).await?;
                }
                Claim::Adopt(p) if is_member(&set, &p) => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.can_adopt(&set).await?);
                    }
                    if can_adopt == Some(true) {
                        let mut refs = p.metadata.owner_references.clone().unwrap_or_default();
                        refs.push(owner.clone());
                        if set_owners(&self.client, &*p, refs).await? {
                            mine.push(p);
                        }
                    }
                }
                Claim::Adopt(_) => {}
            }
        }

        // The revisions: the update one is the template's (made or renumbered if needed).
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
        let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let patch = history::template_patch(&template);
        let mut collision_count = set.status.as_ref().and_then(|s| s.collision_count).unwrap_or(0);
        let update = match revs.iter().rposition(|r| history::stores(r, &patch)) {
            Some(i) if i + 1 == revs.len() => revs[i].clone(),
            Some(i) => {
                let renumbered = history::renumber(&rev_api, &revs[i], history::next_number(&revs))
                    .await
                    .map_err(|e| ReconcileError::Other(e.to_string()))?;
                revs[i] = renumbered.clone();
                renumbered
            }
            None => {
                let next = history::next_number(&revs);
                let mut labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
                let bytes = serde_json::to_vec(&patch).unwrap_or_default();
                let created = loop {
                    let hash = history::hash(&bytes, Some(collision_count));
                    labels.insert(history::HASH_LABEL.into(), hash.clone());
                    let rev = history::new_revision(
                        history::name(&name, &hash),
                        Some(ns.clone()),
                        owner.clone(),
                        labels.clone(),
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
        let update_name = update.metadata.name.clone().unwrap_or_default();
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.clone());
        let current = current_name.and_then(|n| revs.iter().find(|r| r.metadata.name.as_deref() == Some(&n)).cloned());
        let current = current.unwrap_or_else(|| update.clone());
        let current_template = history::template_of(&current).unwrap_or_else(|| template.clone());
        let current_name = current.metadata.name.clone().unwrap_or_default();

        let claims = self.claims.store().state();
        let step = sync::sync(sync::Input {
            set: &set,
            pods: mine.iter().map(|p| &**p).collect(),
            current: Revision { name: &current_name, template: &current_template },
            update: Revision { name: &update_name, template: &template },
            collision_count,
            claims: claims.iter().filter(|c| c.metadata.namespace.as_deref() == Some(&ns)).map(|c| &**c).collect(),
            now: self.clock.now(),
        });

        let failure = self.apply(&set, &key, &step).await;
        if status_changed(set.status.as_ref(), &step.status) {
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), &ns);
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

        // History beyond revisionHistoryLimit that no pod is at.
        let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
        let mut live: Vec<&str> = vec![&current_name, &update_name];
        live.extend(
            mine.iter().filter_map(|p| p.metadata.labels.as_ref()?.get(history::REVISION_LABEL)).map(String::as_str),
        );
        for r in history::prune(&revs, &live, limit) {
            match rev_api.delete(r.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(step.requeue.map_or_else(Action::await_change, Action::requeue))
    }

    /// Writes what the step decided, in order; the first failure stops it and is returned
    /// (the status is still written).
    async fn apply(
        &self,
        set: &StatefulSet,
        key: &ObjectRef<StatefulSet>,
        step: &sync::Step,
    ) -> Option<ReconcileError> {
        let ns = set.metadata.namespace.clone().unwrap_or_default();
        let set_name = set.metadata.name.clone().unwrap_or_default();
        let reference = set.object_ref(&());
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &ns);

        for (claim, refs) in &step.claim_owners {
            if let Err(e) = set_owners(&self.client, claim, refs.clone()).await {
                return Some(e.into());
            }
        }
        for (pod_name, claim) in &step.claims {
            if let Err(e) = self.create_claim(&claims, claim, pod_name, &set_name, &reference).await {
                return Some(e);
            }
        }
        for c in &step.create {
            let pod_name = c.pod.metadata.name.clone().unwrap_or_default();
            for claim in &c.claims {
                if let Err(e) = self.create_claim(&claims, claim, &pod_name, &set_name, &reference).await {
                    return Some(e);
                }
            }
            match pods.create(&PostParams::default(), &c.pod).await {
                Ok(p) => {
                    self.expectations.created(
                        key,
                        Written {
                            namespace: ns.clone(),
                            name: pod_name.clone(),
                            uid: p.metadata.uid.unwrap_or_default(),
                        },
                        self.clock.instant(),
                    );
                    let note = format!("create Pod {pod_name} in StatefulSet {set_name} successful");
                    self.event(&reference, EventType::Normal, "SuccessfulCreate", "Create", note).await;
                }
                // It exists: the informer has not shown it yet.
                Err(e) if api_code(&e) == Some(409) => {}
                Err(e) => {
                    let note =
                        format!("create Pod {pod_name} in StatefulSet {set_name} failed error: {}", api_message(&e));
                    self.event(&reference, EventType::Warning, "FailedCreate", "Create", note).await;
                    return Some(e.into());
                }
            }
        }
        for (pod, labels) in &step.relabel {
            let patch = json!({"metadata": {"labels": labels, "resourceVersion": pod.metadata.resource_version}});
            let pod_name = pod.metadata.name.as_deref().unwrap_or("");
            match pods.patch(pod_name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Some(e.into()),
            }
        }
        for (pod, why) in &step.delete {
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            match why {
                Why::Failed => {
                    let note = format!("StatefulSet {ns}/{set_name} is recreating failed Pod {pod_name}");
                    self.event(&reference, EventType::Warning, "RecreatingFailedPod", "Delete", note).await;
                }
                Why::Succeeded => {
                    let note = format!("StatefulSet {ns}/{set_name} is recreating terminated Pod {pod_name}");
                    self.event(&reference, EventType::Warning, "RecreatingTerminatedPod", "Delete", note).await;
                }
                Why::ScaleDown | Why::Update => {}
            }
            // Guarded by UID: a pod replaced meanwhile under the same name is not touched.
            let dp = DeleteParams {
                preconditions: Some(kube::api::Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
                ..Default::default()
            };
            match pods.delete(&pod_name, &dp).await {
                Ok(_) => {
                    self.expectations.deleted(
                        key,
                        Written {
                            namespace: ns.clone(),
                            name: pod_name.clone(),
                            uid: pod.metadata.uid.clone().unwrap_or_default(),
                        },
                        self.clock.instant(),
                    );
                    let note = format!("delete Pod {pod_name} in StatefulSet {set_name} successful");
                    self.event(&reference, EventType::Normal, "SuccessfulDelete", "Delete", note).await;
                }
                Err(e) if is_not_found(&e) || api_code(&e) == Some(409) => {}
                Err(e) => {
                    let note =
                        format!("delete Pod {pod_name} in StatefulSet {set_name} failed error: {}", api_message(&e));
                    self.event(&reference, EventType::Warning, "FailedDelete", "Delete", note).await;
                    return Some(e.into());
                }
            }
        }
        None
    }

    async fn create_claim(
        &self,
        api: &Api<PersistentVolumeClaim>,
        claim: &PersistentVolumeClaim,
        pod: &str,
        set_name: &str,
        reference: &ObjectReference,
    ) -> Result<(), ReconcileError> {
        let claim_name = claim.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), claim).await {
            Ok(_) => {
                let note = format!("create Claim {claim_name} Pod {pod} in StatefulSet {set_name} success");
                self.event(reference, EventType::Normal, "SuccessfulCreate", "Create", note).await;
                Ok(())
            }
            Err(e) if api_code(&e) == Some(409) => Ok(()),
            Err(e) => {
                let note = format!(
                    "create Claim {claim_name} for Pod {pod} in StatefulSet {set_name} failed error: {}",
                    api_message(&e)
                );
                self.event(reference, EventType::Warning, "FailedCreate", "Create", note).await;
                Err(e.into())
            }
        }
    }

    /// Upstream re-reads the set before adopting: one gone, replaced or being deleted must
    /// not take pods.
    async fn can_adopt(&self, set: &StatefulSet) -> Result<bool, ReconcileError> {
        let api: Api<StatefulSet> =
            Api::namespaced(self.client.clone(), set.metadata.namespace.as_deref().unwrap_or(""));
        match api.get(set.metadata.name.as_deref().unwrap_or("")).await {
            Ok(fresh) => Ok(fresh.metadata.uid == set.metadata.uid && fresh.metadata.deletion_timestamp.is_none()),
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
