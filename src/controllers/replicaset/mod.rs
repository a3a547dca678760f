//! The ReplicaSet controller, and the ReplicationController one, which upstream runs as the
//! same code over ReplicationControllers seen as ReplicaSets: keeps `replicas` pods that
//! match the selector, adopting orphans and releasing pods that stopped matching, deletes
//! the surplus in upstream's order ([`rank`]), and reports status (ready and available
//! replicas, the ReplicaFailure condition when pods cannot be made).

pub mod rank;
mod replicated;

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::json;

pub use self::replicated::Replicated;
use super::podutil;
use super::runtime::expectations::{Expectations, Seen, Written};
use super::runtime::owner::{claim, controller_of, controller_selector, dependent_triggers, Claim};
use super::runtime::{self, is_not_found, Clock, Context, Informer, ReconcileError};

/// At most this many pods are created or deleted in one sync (upstream's burstReplicas).
pub const BURST_REPLICAS: usize = 500;

/// The ReplicaSet controller.
pub async fn run_replicasets(ctx: Context) {
    run::<ReplicaSet>(ctx, "replicaset", "replicaset-controller").await
}

/// The ReplicationController controller.
pub async fn run_replication_controllers(ctx: Context) {
    run::<ReplicationController>(ctx, "replicationcontroller", "replication-controller").await
}

/// What one controller of `K` keeps between reconciles.
pub struct Sync<K: Replicated> {
    pub client: kube::Client,
    pub pods: Informer<Pod>,
    pub expectations: Expectations<ObjectRef<K>>,
    pub recorder: Recorder,
    pub clock: Arc<dyn Clock>,
}

async fn run<K: Replicated>(ctx: Context, name: &'static str, reporter: &str) {
    let owners = ctx.informers.get::<K>();
    let pods = ctx.informers.get::<Pod>();
    let sync = Arc::new(Sync::<K> {
        client: ctx.client.clone(),
        pods: pods.clone(),
        expectations: Expectations::default(),
        recorder: ctx.recorder(reporter),
        clock: ctx.clock.clone(),
    });
    let triggers = futures::stream::select(
        runtime::own_triggers(&owners),
        dependent_triggers(&pods, owners.store().clone(), orphan_claimants::<K>),
    );
    runtime::run(name, owners.store().clone(), triggers, ctx.stop.clone(), move |obj| {
        let sync = sync.clone();
        async move { sync.reconcile(obj).await }
    })
    .await
}

/// The owners in the pod's namespace whose selector matches an orphan pod: they may adopt it.
fn orphan_claimants<K: Replicated>(pod: &Pod, owners: &Store<K>) -> Vec<ObjectRef<K>> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    owners
        .state()
        .iter()
        .filter(|o| o.meta().namespace == pod.metadata.namespace)
        .filter(|o| o.view().ok().and_then(|v| selector_of(&v)).is_some_and(|s| s.matches(&labels)))
        .map(|o| ObjectRef::from_obj(&**o))
        .collect()
}

/// The ReplicaSet's selector; none if it is empty or unusable (then it selects nothing, as
/// upstream treats it).
pub fn selector_of(rs: &ReplicaSet) -> Option<Selector> {
    controller_selector(rs.spec.as_ref()?.selector.clone())
}

/// The status the pods give (upstream's `calculateStatus`); `failure` is the error of this
/// sync's creates or deletes, `creating` whether it was making pods.
pub fn calculate_status(
    rs: &ReplicaSet,
    pods: &[&Pod],
    failure: Option<&str>,
    creating: bool,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let template_labels =
        spec.and_then(|s| s.template.as_ref()).and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone());
    let template_labels = template_labels.unwrap_or_default();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let fully_labeled = pods
        .iter()
        .filter(|p| {
            let labels = p.metadata.labels.as_ref();
            template_labels.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = pods.iter().filter(|p| podutil::is_ready(p)).count();
    let available = pods.iter().filter(|p| podutil::is_available(p, min_ready, now)).count();
    let old = rs.status.clone().unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> = old.conditions.clone().unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match failure {
        Some(message) if !has_failure => conditions.push(ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(if creating { "FailedCreate" } else { "FailedDelete" }.into()),
            message: Some(message.to_string()),
            last_transition_time: Some(Time(now)),
        }),
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    ReplicaSetStatus {
        replicas: pods.len() as i32,
        fully_labeled_replicas: Some(fully_labeled as i32),
        ready_replicas: Some(ready as i32),
        available_replicas: Some(available as i32),
        observed_generation: rs.metadata.generation.or(old.observed_generation),
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: old.terminating_replicas,
    }
}

/// Whether two statuses differ in what is reported (upstream compares all counters, the
/// generation and the conditions).
fn status_changed(old: Option<&ReplicaSetStatus>, new: &ReplicaSetStatus) -> bool {
    let old = old.cloned().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    old.replicas != new.replicas
        || n(old.fully_labeled_replicas) != n(new.fully_labeled_replicas)
        || n(old.ready_replicas) != n(new.ready_replicas)
        || n(old.available_replicas) != n(new.available_replicas)
        || old.observed_generation != new.observed_generation
        || old.conditions.unwrap_or_default() != new.conditions.clone().unwrap_or_default()
}

/// A new pod from the template, controlled by `owner` (upstream's `GetPodFromTemplate`).
pub fn pod_from_template(rs: &ReplicaSet, owner: OwnerReference) -> Pod {
    let template = rs.spec.as_ref().and_then(|s| s.template.clone()).unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let prefix = format!("{}-", rs.metadata.name.as_deref().unwrap_or("pod"));
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: rs.metadata.namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

impl<K: Replicated> Sync<K> {
    fn seen(&self, namespace: &str, name: &str) -> Seen {
        Seen::of(self.pods.get(Some(namespace), name).as_deref())
    }

    async fn reconcile(&self, obj: Arc<K>) -> Result<Action, ReconcileError> {
        let rs = obj.view().map_err(ReconcileError::Other)?;
        let key = ObjectRef::from_obj(&*obj);
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let deleting = rs.metadata.deletion_timestamp.is_some();
        let now = self.clock.now();
        let needs_sync = self.expectations.satisfied(&key, self.clock.instant(), |ns, n| self.seen(ns, n));

        let all = self.pods.store().state();
        let active: Vec<&Pod> = all
            .iter()
            .map(|p| &**p)
            .filter(|p| p.metadata.namespace.as_deref() == Some(&ns) && podutil::is_active(p))
            .collect();
        let selector = selector_of(&rs);
        let owner_ref = runtime::owner::controller_ref(&*obj);
        let mut mine: Vec<&Pod> = Vec::new();
        let mut can_adopt: Option<bool> = None;
        for c in claim(&uid, deleting, selector.as_ref(), active.iter().copied()) {
            match c {
                Claim::Keep(p) => mine.push(p),
                Claim::Adopt(p) => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.can_adopt(&rs).await?);
                    }
                    if can_adopt == Some(true) && self.adopt(p, &owner_ref).await? {
                        mine.push(p);
                    }
                }
                Claim::Release(p) => self.release(p, &uid).await?,
            }
        }

        let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
        let diff = mine.len() as i64 - replicas as i64;
        let mut failure: Option<String> = None;
        if needs_sync && !deleting {
            if diff < 0 {
                failure = self.create_pods(&obj, &rs, owner_ref.clone(), (-diff) as usize).await;
            } else if diff > 0 {
                failure = self.delete_pods(&obj, &mut mine, diff as usize, &all, &uid, now).await;
            }
        }

        let status = calculate_status(&rs, &mine, failure.as_deref(), diff < 0, now);
        let min_ready = rs.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
        if status_changed(rs.status.as_ref(), &status) {
            let api: Api<K> = Api::namespaced(self.client.clone(), &ns);
            let updated = obj.with_status(status.clone());
            match api.replace_status(rs.metadata.name.as_deref().unwrap_or(""), &PostParams::default(), &updated).await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(f) = failure {
            return Err(ReconcileError::Other(f));
        }
        // Pods that are ready but not yet available turn available on time, not on an event.
        let ready = status.ready_replicas.unwrap_or(0);
        if min_ready > 0 && ready as usize == replicas && status.available_replicas.unwrap_or(0) != ready {
            return Ok(Action::requeue(Duration::from_secs(min_ready as u64)));
        }
        Ok(Action::await_change())
    }

    /// Upstream re-reads the owner before adopting: one that is gone, replaced or being
    /// deleted must not take pods.
    async fn can_adopt(&self, rs: &ReplicaSet) -> Result<bool, ReconcileError> {
        let api: Api<K> = Api::namespaced(self.client.clone(), rs.metadata.namespace.as_deref().unwrap_or(""));
        match api.get(rs.metadata.name.as_deref().unwrap_or("")).await {
            Ok(fresh) => Ok(fresh.meta().uid == rs.metadata.uid && fresh.meta().deletion_timestamp.is_none()),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Sets the controller reference on an orphan, guarded by its UID and resourceVersion.
    /// False if the pod is gone.
    async fn adopt(&self, pod: &Pod, owner: &OwnerReference) -> Result<bool, ReconcileError> {
        let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
        refs.push(owner.clone());
        self.patch_owners(pod, refs).await
    }

    async fn release(&self, pod: &Pod, owner_uid: &str) -> Result<(), ReconcileError> {
        let refs: Vec<OwnerReference> =
            pod.metadata.owner_references.iter().flatten().filter(|r| r.uid != owner_uid).cloned().collect();
        self.patch_owners(pod, refs).await.map(|_| ())
    }

    async fn patch_owners(&self, pod: &Pod, refs: Vec<OwnerReference>) -> Result<bool, ReconcileError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or(""));
        let patch = json!({"metadata": {
            "ownerReferences": refs,
            "uid": pod.metadata.uid,
            "resourceVersion": pod.metadata.resource_version,
        }});
        match api.patch(pod.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(patch)).await
        {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates `count` pods in upstream's slow-start batches (1, 2, 4, ...), stopping at the
    /// first batch with a failure, whose message is returned.
    async fn create_pods(&self, obj: &K, rs: &ReplicaSet, owner: OwnerReference, count: usize) -> Option<String> {
        let key = ObjectRef::from_obj(obj);
        let ns = rs.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let template = pod_from_template(rs, owner);
        let reference = obj.object_ref(&());
        let mut left = count.min(BURST_REPLICAS);
        let mut batch = 1;
        while left > 0 {
            let n = batch.min(left);
            let pp = PostParams::default();
            let results = join_all((0..n).map(|_| api.create(&pp, &template))).await;
            let mut failure = None;
            for r in results {
                match r {
                    Ok(pod) => {
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        self.expectations.created(
                            &key,
                            Written {
                                namespace: ns.clone(),
                                name: name.clone(),
                                uid: pod.metadata.uid.clone().unwrap_or_default(),
                            },
                            self.clock.instant(),
                        );
                        self.event(
                            &reference,
                            EventType::Normal,
                            "SuccessfulCreate",
                            "Create",
                            format!("Created pod: {name}"),
                        )
                        .await;
                    }
                    Err(e) => {
                        let message = match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            other => other.to_string(),
                        };
                        self.event(
                            &reference,
                            EventType::Warning,
                            "FailedCreate",
                            "Create",
                            format!("Error creating: {message}"),
                        )
                        .await;
                        failure.get_or_insert(message);
                    }
                }
            }
            if let Some(f) = failure {
                return Some(f);
            }
            left -= n;
            batch *= 2;
        }
        None
    }

    /// Deletes the `count` pods that rank first for deletion among `mine` (removing them
    /// from it).
    async fn delete_pods(
        &self,
        obj: &K,
        mine: &mut Vec<&Pod>,
        count: usize,
        all: &[Arc<Pod>],
        uid: &str,
        now: Timestamp,
    ) -> Option<String> {
        let key = ObjectRef::from_obj(obj);
        let reference = obj.object_ref(&());
        // The family: pods controlled by this owner, for the same-node rank.
        let related: Vec<&Pod> =
            all.iter().map(|p| &**p).filter(|p| controller_of(&p.metadata).is_some_and(|r| r.uid == uid)).collect();
        mine.sort_by_key(|p| p.metadata.name.clone());
        rank::sort_for_deletion(mine, &related, now);
        let doomed: Vec<&Pod> = mine.drain(..count.min(BURST_REPLICAS).min(mine.len())).collect();
        let results = join_all(doomed.iter().map(|p| async move {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), p.metadata.namespace.as_deref().unwrap_or(""));
            (p, api.delete(p.metadata.name.as_deref().unwrap_or(""), &DeleteParams::default()).await)
        }))
        .await;
        let mut failure = None;
        for (p, r) in results {
            let name = p.metadata.name.clone().unwrap_or_default();
            match r {
                Ok(_) => {
                    self.expectations.deleted(
                        &key,
                        Written {
                            namespace: p.metadata.namespace.clone().unwrap_or_default(),
                            name: name.clone(),
                            uid: p.metadata.uid.clone().unwrap_or_default(),
                        },
                        self.clock.instant(),
                    );
                    self.event(
                        &reference,
                        EventType::Normal,
                        "SuccessfulDelete",
                        "Delete",
                        format!("Deleted pod: {name}"),
                    )
                    .await;
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    let message = e.to_string();
                    self.event(
                        &reference,
                        EventType::Warning,
                        "FailedDelete",
                        "Delete",
                        format!("Error deleting: {message}"),
                    )
                    .await;
                    failure.get_or_insert(message);
                }
            }
        }
        failure
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
