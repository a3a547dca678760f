//! The disruption controller: keeps each PodDisruptionBudget's status (healthy, desired and
//! expected pods, how many disruptions are allowed, the `DisruptionAllowed` condition and
//! the evictions still in flight) for the eviction subresource and `kubectl drain` to act on.
//!
//! [`sync`] decides, with no I/O; this module feeds it from the informers (pods, budgets and
//! the pods' controllers for their scale) and writes the status it decided.

pub mod sync;

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;

use self::sync::{Scale, Scales};
use super::runtime::owner::{controller_of, refers_to};
use super::runtime::{self, is_not_found, Clock, Context, Informer, Notice, ReconcileError};

pub async fn run(ctx: Context) {
    let pdbs = ctx.informers.get::<PodDisruptionBudget>();
    let pods = ctx.informers.get::<Pod>();
    let this = Arc::new(Controller {
        client: ctx.client.clone(),
        pods: pods.clone(),
        owners: Owners {
            rss: ctx.informers.get::<ReplicaSet>(),
            deployments: ctx.informers.get::<Deployment>(),
            statefulsets: ctx.informers.get::<StatefulSet>(),
            rcs: ctx.informers.get::<ReplicationController>(),
        },
        recorder: ctx.recorder("disruption-controller"),
        clock: ctx.clock.clone(),
    });
    let triggers = futures::stream::select(runtime::own_triggers(&pdbs), pod_triggers(&pods, pdbs.store().clone()));
    runtime::run("disruption", pdbs.store().clone(), triggers, ctx.stop.clone(), move |pdb| {
        let this = this.clone();
        async move { this.reconcile(pdb).await }
    })
    .await
}

/// The budget's selector as the controller reads it: none selects nothing, an empty one
/// every pod of the namespace (policy/v1).
fn selector_of(pdb: &PodDisruptionBudget) -> Option<Selector> {
    let s = pdb.spec.as_ref()?.selector.clone()?;
    Selector::try_from(s).ok()
}

fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    let empty = Default::default();
    pdb.metadata.namespace == pod.metadata.namespace
        && selector_of(pdb).is_some_and(|s| s.matches(pod.metadata.labels.as_ref().unwrap_or(&empty)))
}

/// A pod added, changed or deleted wakes the budgets that select it.
fn pod_triggers(
    pods: &Informer<Pod>,
    pdbs: Store<PodDisruptionBudget>,
) -> impl futures::Stream<Item = ObjectRef<PodDisruptionBudget>> + Send + 'static {
    pods.subscribe().flat_map(move |n| {
        let refs = match n {
            Notice::Changed(p) | Notice::Deleted(p) => {
                pdbs.state().iter().filter(|b| selects(b, &p)).map(|b| ObjectRef::from_obj(&**b)).collect()
            }
            Notice::Resynced => runtime::all(&pdbs),
        };
        futures::stream::iter(refs)
    })
}

/// The pods' controllers, from the informers.
struct Owners {
    rss: Informer<ReplicaSet>,
    deployments: Informer<Deployment>,
    statefulsets: Informer<StatefulSet>,
    rcs: Informer<ReplicationController>,
}

fn same<K: Resource>(found: Option<Arc<K>>, uid: &str) -> Option<Arc<K>> {
    found.filter(|o| o.meta().uid.as_deref() == Some(uid))
}

impl Scales for Owners {
    fn scale_of(&self, r: &OwnerReference, ns: &str) -> Option<Scale> {
        if refers_to::<ReplicationController>(r) {
            let rc = same(self.rcs.get(Some(ns), &r.name), &r.uid)?;
            let replicas = rc.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            return Some(Scale { uid: r.uid.clone(), replicas });
        }
        if refers_to::<ReplicaSet>(r) {
            let rs = same(self.rss.get(Some(ns), &r.name), &r.uid)?;
            // A Deployment's ReplicaSet counts at the Deployment's scale.
            return match controller_of(&rs.metadata) {
                Some(d) if refers_to::<Deployment>(d) => {
                    let dep = same(self.deployments.get(Some(ns), &d.name), &d.uid)?;
                    let replicas = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    Some(Scale { uid: d.uid.clone(), replicas })
                }
                _ => {
                    let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    Some(Scale { uid: r.uid.clone(), replicas })
                }
            };
        }
        if refers_to::<StatefulSet>(r) {
            let ss = same(self.statefulsets.get(Some(ns), &r.name), &r.uid)?;
            let replicas = ss.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            return Some(Scale { uid: r.uid.clone(), replicas });
        }
        None
    }
}

struct Controller {
    client: kube::Client,
    pods: Informer<Pod>,
    owners: Owners,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
}

impl Controller {
    async fn reconcile(&self, pdb: Arc<PodDisruptionBudget>) -> Result<Action, ReconcileError> {
        let ns = pdb.metadata.namespace.clone().unwrap_or_default();
        let name = pdb.metadata.name.clone().unwrap_or_default();
        let all = self.pods.store().state();
        let pods: Vec<&Pod> = all.iter().map(|p| &**p).filter(|p| selects(&pdb, p)).collect();
        let reference = pdb.object_ref(&());
        if pods.is_empty() {
            self.event(&reference, EventType::Normal, "NoPods", "No matching pods found".into()).await;
        }
        let out = sync::sync(&pdb, &pods, &self.owners, self.clock.now());
        if let Some(e) = &out.error {
            self.event(
                &reference,
                EventType::Warning,
                "CalculateExpectedPodCountFailed",
                format!("Failed to calculate the number of expected pods: {e}"),
            )
            .await;
        }
        if !out.unmanaged.is_empty() {
            let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
            self.event(
                &reference,
                EventType::Warning,
                "UnmanagedPods",
                format!(
                    "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, \
                     the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To \
                     account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
                    selector.map(|s| format!("{s:?}")).unwrap_or_else(|| "nil".into())
                ),
            )
            .await;
        }
        if let Some(status) = out.status {
            let api: Api<PodDisruptionBudget> = Api::namespaced(self.client.clone(), &ns);
            let mut updated = (*pdb).clone();
            updated.status = Some(status);
            // Guarded by the resourceVersion read: an eviction may have taken a disruption since.
            match api.replace_status(&name, &PostParams::default(), &updated).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(e) = out.error {
            return Err(ReconcileError::Other(e));
        }
        Ok(out.recheck.map_or_else(Action::await_change, Action::requeue))
    }

    async fn event(
        &self,
        reference: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let ev = Event { type_, reason: reason.into(), note: Some(note), action: "Sync".into(), secondary: None };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::debug!(error = %e, "cannot record event");
        }
    }
}

#[cfg(test)]
mod tests;
