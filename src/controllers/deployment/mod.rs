//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets
//! (RollingUpdate within maxSurge/maxUnavailable, or Recreate), numbers revisions for
//! `kubectl rollout history|undo`, scales proportionally in the middle of a rollout, keeps
//! revisionHistoryLimit old ReplicaSets, and reports the Available and Progressing
//! conditions `kubectl rollout status` and Helm's `--wait` read.
//!
//! [`sync`] decides, with no I/O; this module feeds it from the informers and applies what
//! it decided.

pub mod sync;
pub mod util;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use serde_json::json;

use super::podutil;
use super::runtime::owner::{claim, controller_of, controller_selector, controller_trigger, dependent_triggers, Claim};
use super::runtime::{self, api_code, is_not_found, Clock, Context, Informer, Notice, ReconcileError};

pub async fn run(ctx: Context) {
    let deployments = ctx.informers.get::<Deployment>();
    let rss = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    let this = Arc::new(Controller {
        client: ctx.client.clone(),
        rss: rss.clone(),
        pods: pods.clone(),
        recorder: ctx.recorder("deployment-controller"),
        clock: ctx.clock.clone(),
    });
    let triggers = futures::stream::select(
        futures::stream::select(
            runtime::own_triggers(&deployments),
            dependent_triggers(&rss, deployments.store().clone(), orphan_claimants),
        ),
        pod_triggers(&pods, rss.clone(), deployments.store().clone()),
    );
    runtime::run("deployment", deployments.store().clone(), triggers, ctx.stop.clone(), move |d| {
        let this = this.clone();
        async move { this.reconcile(d).await }
    })
    .await
}

/// Recreate waits for old pods to go: a pod deleted or finished wakes the deployment of its
/// ReplicaSet.
fn pod_triggers(
    pods: &Informer<Pod>,
    rss: Informer<ReplicaSet>,
    deployments: Store<Deployment>,
) -> impl futures::Stream<Item = ObjectRef<Deployment>> + Send + 'static {
    use futures::StreamExt;
    pods.subscribe().flat_map(move |n| {
        let refs = match n {
            Notice::Deleted(p) => owner_deployment(&p, &rss),
            Notice::Changed(p) if podutil::is_terminal(&p) => owner_deployment(&p, &rss),
            Notice::Changed(_) => vec![],
            Notice::Resynced => runtime::all(&deployments),
        };
        futures::stream::iter(refs)
    })
}

fn owner_deployment(pod: &Pod, rss: &Informer<ReplicaSet>) -> Vec<ObjectRef<Deployment>> {
    let Some(rs) = controller_trigger::<ReplicaSet>(&pod.metadata) else { return vec![] };
    let Some(rs) = rss.store().get(&rs) else { return vec![] };
    controller_trigger::<Deployment>(&rs.metadata).into_iter().collect()
}

fn selector_of(d: &Deployment) -> Option<Selector> {
    controller_selector(d.spec.as_ref()?.selector.clone())
}

/// Deployments in an orphan ReplicaSet's namespace whose selector matches it.
fn orphan_claimants(rs: &ReplicaSet, deployments: &Store<Deployment>) -> Vec<ObjectRef<Deployment>> {
    let labels = rs.metadata.labels.clone().unwrap_or_default();
    deployments
        .state()
        .iter()
        .filter(|d| d.metadata.namespace == rs.metadata.namespace)
        .filter(|d| selector_of(d).is_some_and(|s| s.matches(&labels)))
        .map(|d| ObjectRef::from_obj(&**d))
        .collect()
}

struct Controller {
    client: kube::Client,
    rss: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
}

impl Controller {
    async fn reconcile(&self, d: Arc<Deployment>) -> Result<Action, ReconcileError> {
        let ns = d.metadata.namespace.clone().unwrap_or_default();
        let name = d.metadata.name.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let deleting = d.metadata.deletion_timestamp.is_some();
        let selector = selector_of(&d);
        let rs_api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), &ns);

        // The ReplicaSets it controls, adopting and releasing by selector.
        let candidates: Vec<Arc<ReplicaSet>> =
            self.rss.store().state().into_iter().filter(|rs| rs.metadata.namespace.as_deref() == Some(&ns)).collect();
        let mut owned: Vec<ReplicaSet> = Vec::new();
        let mut can_adopt = None;
        for c in claim(&uid, deleting, selector.as_ref(), candidates) {
            match c {
                Claim::Keep(rs) => owned.push((*rs).clone()),
                Claim::Adopt(rs) => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.can_adopt(&d).await?);
                    }
                    if can_adopt == Some(true) {
                        let mut refs = rs.metadata.owner_references.clone().unwrap_or_default();
                        refs.push(runtime::owner::controller_ref(&*d));
                        if self.patch_owners(&rs_api, &rs, refs).await? {
                            owned.push((*rs).clone());
                        }
                    }
                }
                Claim::Release(rs) => {
                    let refs =
                        rs.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
                    self.patch_owners(&rs_api, &rs, refs).await?;
                }
            }
        }

        let pods = self.pods.store().state();
        let old_pods_running = |old: &[&ReplicaSet]| {
            pods.iter().any(|p| {
                p.metadata.namespace.as_deref() == Some(&ns)
                    && !podutil::is_terminal(p)
                    && controller_of(&p.metadata)
                        .is_some_and(|r| old.iter().any(|rs| rs.metadata.uid.as_deref() == Some(&r.uid)))
            })
        };
        let step = sync::sync(sync::Input { d: &d, owned, old_pods_running: &old_pods_running, now: self.clock.now() });
        let reference = d.object_ref(&());

        for (reason, message) in &step.warnings {
            self.event(&reference, EventType::Warning, reason, "Sync", message.clone()).await;
        }
        let mut status = step.status.clone();
        if let Some(rs) = &step.create {
            match rs_api.create(&PostParams::default(), rs).await {
                Ok(created) => {
                    let n = util::rs_replicas(rs);
                    let rs_name = created.metadata.name.unwrap_or_default();
                    self.event(
                        &reference,
                        EventType::Normal,
                        "ScalingReplicaSet",
                        "Scale",
                        format!("Scaled up replica set {rs_name} from 0 to {n}"),
                    )
                    .await;
                }
                Err(e) if api_code(&e) == Some(409) => {
                    // A ReplicaSet of that name exists. If it is not ours or not this template,
                    // the hash collided: count it, so that the next name differs.
                    let existing = rs_api.get(rs.metadata.name.as_deref().unwrap_or("")).await?;
                    let same = controller_of(&existing.metadata).is_some_and(|r| r.uid == uid)
                        && existing
                            .spec
                            .as_ref()
                            .and_then(|s| s.template.as_ref())
                            .zip(rs.spec.as_ref().and_then(|s| s.template.as_ref()))
                            .is_some_and(|(a, b)| util::equal_ignore_hash(a, b));
                    if !same {
                        let mut s = d.status.clone().unwrap_or_default();
                        s.collision_count = Some(s.collision_count.unwrap_or(0) + 1);
                        self.write_status(&ns, &name, &s).await?;
                    }
                    return Ok(Action::requeue(std::time::Duration::from_millis(10)));
                }
                Err(e) => {
                    // The condition carries the cause; the status is written before retrying.
                    let mut s = status.clone().unwrap_or_else(|| d.status.clone().unwrap_or_default());
                    let c = util::new_condition(
                        "ReplicaFailure",
                        "True",
                        "FailedCreate",
                        match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            other => other.to_string(),
                        },
                        self.clock.now(),
                    );
                    util::set_condition(&mut s, c);
                    self.write_status(&ns, &name, &s).await?;
                    return Err(e.into());
                }
            }
        }
        for scaled in &step.update {
            let rs_name = scaled.rs.metadata.name.clone().unwrap_or_default();
            match rs_api.replace(&rs_name, &PostParams::default(), &scaled.rs).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(e.into()),
            }
            let to = util::rs_replicas(&scaled.rs);
            if to != scaled.from {
                let dir = if to > scaled.from { "up" } else { "down" };
                self.event(
                    &reference,
                    EventType::Normal,
                    "ScalingReplicaSet",
                    "Scale",
                    format!("Scaled {dir} replica set {rs_name} from {} to {to}", scaled.from),
                )
                .await;
            }
        }
        for rs in &step.delete {
            let rs_name = rs.metadata.name.clone().unwrap_or_default();
            match rs_api.delete(&rs_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(rev) = &step.revision {
            let api: Api<Deployment> = Api::namespaced(self.client.clone(), &ns);
            let patch = json!({"metadata": {"annotations": {util::REVISION: rev}}});
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(s) = status.take() {
            self.write_status(&ns, &name, &s).await?;
        }
        Ok(step.requeue.map_or_else(Action::await_change, Action::requeue))
    }

    async fn write_status(
        &self,
        ns: &str,
        name: &str,
        s: &k8s_openapi::api::apps::v1::DeploymentStatus,
    ) -> Result<(), ReconcileError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        match api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": s}))).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn can_adopt(&self, d: &Deployment) -> Result<bool, ReconcileError> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), d.metadata.namespace.as_deref().unwrap_or(""));
        match api.get(d.metadata.name.as_deref().unwrap_or("")).await {
            Ok(fresh) => Ok(fresh.metadata.uid == d.metadata.uid && fresh.metadata.deletion_timestamp.is_none()),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn patch_owners(
        &self,
        api: &Api<ReplicaSet>,
        rs: &ReplicaSet,
        refs: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
    ) -> Result<bool, ReconcileError> {
        let patch = json!({"metadata": {
            "ownerReferences": refs,
            "uid": rs.metadata.uid,
            "resourceVersion": rs.metadata.resource_version,
        }});
        match api.patch(rs.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(patch)).await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn event(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        crate::controllers::runtime::publish(&self.recorder, reference, type_, reason, action, note).await;
    }
}

#[cfg(test)]
mod tests;
