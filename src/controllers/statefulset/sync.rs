//! One sync of a StatefulSet, with no I/O (upstream's `updateStatefulSet`): from the set, the
//! pods it controls, its current and update revisions and the claims that exist, which pods
//! and claims to create, which pods to delete, which claims' owners to change for the
//! retention policy, and the status. The controller applies the [`Step`] in order: claims
//! before the pod that mounts them, owner changes before deletions.
//!
//! Pods are slots by ordinal: `start..start+replicas` are wanted, any other ordinal is
//! condemned. OrderedReady (monotonic) stops at the first slot that is not Running, Ready and
//! available, creates one pod at a time, and removes the condemned one at a time from the
//! highest ordinal; Parallel does everything at once. A rolling update then replaces, from
//! the highest ordinal down to the partition, pods of another revision.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;

use crate::controllers::deployment::util::scaled_value;
use crate::controllers::history::REVISION_LABEL;
use crate::controllers::podutil;
use crate::controllers::runtime::owner::controller_ref;

/// The label naming the pod (what a per-pod Service selects).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label carrying the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// A revision of the set's template.
#[derive(Clone, Copy)]
pub struct Revision<'a> {
    pub name: &'a str,
    pub template: &'a PodTemplateSpec,
}

/// The inputs of one sync.
pub struct Input<'a> {
    pub set: &'a StatefulSet,
    /// The pods the set controls (after adoption and release).
    pub pods: Vec<&'a Pod>,
    /// The revision the older pods are at, and the one the template is at now.
    pub current: Revision<'a>,
    pub update: Revision<'a>,
    pub collision_count: i32,
    /// The claims in the set's namespace.
    pub claims: Vec<&'a PersistentVolumeClaim>,
    pub now: Timestamp,
}

/// Why a pod is deleted (its event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// It failed: it is deleted so that its slot gets a new pod.
    Failed,
    /// It succeeded, which a StatefulSet's pods must not.
    Succeeded,
    /// Its ordinal is beyond the replicas.
    ScaleDown,
    /// It is of another revision than the update one.
    Update,
}

/// A pod to create, after the claims it mounts that do not exist yet.
#[derive(Clone, Debug)]
pub struct Create {
    pub claims: Vec<PersistentVolumeClaim>,
    pub pod: Pod,
}

/// What one sync decided.
#[derive(Clone, Debug, Default)]
pub struct Step {
    pub create: Vec<Create>,
    /// Claims missing under pods that exist (a claim deleted while its pod was Pending),
    /// with the pod's name.
    pub claims: Vec<(String, PersistentVolumeClaim)>,
    /// Pods whose identity labels to restore: the full label set to write.
    pub relabel: Vec<(Pod, BTreeMap<String, String>)>,
    /// Claims whose owner references to replace, for the retention policy.
    pub claim_owners: Vec<(PersistentVolumeClaim, Vec<OwnerReference>)>,
    pub delete: Vec<(Pod, Why)>,
    pub status: StatefulSetStatus,
    /// When to look again without an event (pods turning available after minReadySeconds).
    pub requeue: Option<Duration>,
}

impl Step {
    /// Whether the step writes anything but the status.
    pub fn acts(&self) -> bool {
        !(self.create.is_empty()
            && self.claims.is_empty()
            && self.relabel.is_empty()
            && self.claim_owners.is_empty()
            && self.delete.is_empty())
    }
}

/// The ordinal of a pod named `<set>-<n>`; none for another name.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The first ordinal (`spec.ordinals.start`).
pub fn start_ordinal(spec: &StatefulSetSpec) -> i32 {
    spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0)
}

fn set_name(set: &StatefulSet) -> &str {
    set.metadata.name.as_deref().unwrap_or("")
}

/// The name of the claim from `template` for the pod of `ordinal`.
pub fn claim_name(template: &PersistentVolumeClaim, set: &str, ordinal: i32) -> String {
    format!("{}-{set}-{ordinal}", template.metadata.name.as_deref().unwrap_or(""))
}

/// The claims the pod of `ordinal` mounts, by template name (upstream's
/// `getPersistentVolumeClaims`): each template named for the pod, with the set's selector
/// labels.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let Some(spec) = set.spec.as_ref() else { return vec![] };
    let selector_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let mut claim = t.clone();
            claim.metadata = ObjectMeta {
                name: Some(claim_name(t, set_name(set), ordinal)),
                namespace: set.metadata.namespace.clone(),
                labels: Some({
                    let mut l = t.metadata.labels.clone().unwrap_or_default();
                    l.extend(selector_labels.clone());
                    l
                }),
                annotations: t.metadata.annotations.clone(),
                ..Default::default()
            };
            claim.status = None;
            (t.metadata.name.clone().unwrap_or_default(), claim)
        })
        .collect()
}

/// The pod of `ordinal` from `template` at `revision` (upstream's `newVersionedStatefulSetPod`):
/// named `<set>-<ordinal>`, its own hostname under the set's service, the identity and
/// revision labels, and volumes for its claims in place of any of the same name.
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, revision: &str, ordinal: i32) -> Pod {
    let name = format!("{}-{ordinal}", set_name(set));
    let tmeta = template.metadata.clone().unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    labels.extend(identity_labels(&name, ordinal));
    labels.insert(REVISION_LABEL.into(), revision.into());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set.spec.as_ref().and_then(|s| s.service_name.clone()).filter(|s| !s.is_empty());
    let claims = claims_for(set, ordinal);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(volume, claim)| Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    volumes.extend(spec.volumes.take().into_iter().flatten().filter(|v| !claims.iter().any(|(n, _)| *n == v.name)));
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn identity_labels(name: &str, ordinal: i32) -> [(String, String); 2] {
    [(POD_NAME_LABEL.into(), name.into()), (POD_INDEX_LABEL.into(), ordinal.to_string())]
}

fn revision_of(pod: &Pod) -> &str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)).map_or("", String::as_str)
}

fn running_and_ready(pod: &Pod) -> bool {
    podutil::phase(pod) == "Running" && podutil::is_ready(pod)
}

/// What the retention policy says a claim's owners are: the set (`whenDeleted: Delete`,
/// while its pod is not condemned) and the pod (`whenScaled: Delete`, once it is), as
/// upstream's `updateClaimOwnerRefForSetAndPod` sets them. `None` when they are right.
fn retention_owners(
    set: &StatefulSet,
    claim: &PersistentVolumeClaim,
    pod: &Pod,
    condemned: bool,
) -> Option<Vec<OwnerReference>> {
    let policy = set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.is_some_and(|v| v == "Delete");
    let when_deleted = delete(policy.and_then(|p| p.when_deleted.as_ref()));
    let when_scaled = delete(policy.and_then(|p| p.when_scaled.as_ref()));
    let set_uid = set.metadata.uid.as_deref().unwrap_or("");
    let pod_uid = pod.metadata.uid.as_deref().unwrap_or("");
    let old = claim.metadata.owner_references.clone().unwrap_or_default();
    let mut refs: Vec<OwnerReference> =
        old.iter().filter(|r| r.uid != set_uid && (pod_uid.is_empty() || r.uid != pod_uid)).cloned().collect();
    let pod_owns = when_scaled && condemned;
    if when_deleted && !pod_owns {
        refs.push(controller_ref(set));
    }
    if pod_owns && !pod_uid.is_empty() {
        refs.push(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod_uid.into(),
            controller: None,
            block_owner_deletion: None,
        });
    }
    let key = |v: &[OwnerReference]| {
        let mut k: Vec<String> = v.iter().map(|r| format!("{}/{}/{:?}", r.uid, r.kind, r.controller)).collect();
        k.sort();
        k
    };
    (key(&refs) != key(&old)).then_some(refs)
}

/// A slot's pod: one that exists, or one this step creates.
#[derive(Clone, Copy)]
enum Slot<'a> {
    Pod(&'a Pod),
    Created(&'a str),
}

pub fn sync(input: Input<'_>) -> Step {
    let set = input.set;
    let spec = set.spec.clone().unwrap_or_default();
    let name = set_name(set);
    let start = start_ordinal(&spec);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let now = input.now;
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let on_delete = strategy.type_.as_deref() == Some("OnDelete");
    let claims: HashMap<&str, &PersistentVolumeClaim> =
        input.claims.iter().map(|c| (c.metadata.name.as_deref().unwrap_or(""), *c)).collect();
    let missing = |ordinal: i32| -> Vec<PersistentVolumeClaim> {
        claims_for(set, ordinal)
            .into_iter()
            .map(|(_, c)| c)
            .filter(|c| !claims.contains_key(c.metadata.name.as_deref().unwrap_or("")))
            .map(|mut c| {
                // A new claim starts with the owners the policy gives it (the set's, if any).
                let policy = set.spec.as_ref().and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
                if policy.and_then(|p| p.when_deleted.as_deref()) == Some("Delete") {
                    c.metadata.owner_references = Some(vec![controller_ref(set)]);
                }
                c
            })
            .collect()
    };

    let mut slots: Vec<Option<Slot<'_>>> = vec![None; replicas as usize];
    let mut condemned: Vec<(i32, &Pod)> = Vec::new();
    for p in &input.pods {
        match ordinal_of(name, p.metadata.name.as_deref().unwrap_or("")) {
            Some(o) if o >= start && o < start + replicas => slots[(o - start) as usize] = Some(Slot::Pod(p)),
            Some(o) => condemned.push((o, p)),
            None => {}
        }
    }
    condemned.sort_by_key(|(o, _)| std::cmp::Reverse(*o));
    let healthy = |p: &Pod| running_and_ready(p) && p.metadata.deletion_timestamp.is_none();
    let first_unhealthy = slots
        .iter()
        .filter_map(|s| match s {
            Some(Slot::Pod(p)) => Some(*p),
            _ => None,
        })
        .chain(condemned.iter().map(|(_, p)| *p))
        .find(|p| !healthy(p))
        .and_then(|p| p.metadata.name.clone());

    let mut step = Step::default();
    let mut doomed: Vec<String> = Vec::new();
    let terminating = |p: &Pod, doomed: &[String]| {
        p.metadata.deletion_timestamp.is_some() || doomed.iter().any(|d| Some(d) == p.metadata.name.as_ref())
    };
    // Below the partition new pods get the current revision (upstream's
    // `newVersionedStatefulSetPod`).
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let partition = strategy.rolling_update.as_ref().and_then(|r| r.partition).unwrap_or(0).max(0);
    let current_count = set.status.as_ref().and_then(|s| s.current_replicas).unwrap_or(0);
    let at_current = |i: i32| {
        rolling
            && match strategy.rolling_update.as_ref() {
                None => i < current_count,
                Some(_) => i < partition,
            }
    };

    let deleting = set.metadata.deletion_timestamp.is_some();
    'work: {
        if deleting {
            break 'work;
        }
        for i in 0..replicas {
            let ordinal = start + i;
            match slots[i as usize] {
                None => {
                    let rev = if at_current(i) { input.current } else { input.update };
                    let pod = new_pod(set, rev.template, rev.name, ordinal);
                    step.create.push(Create { claims: missing(ordinal), pod });
                    slots[i as usize] = Some(Slot::Created(rev.name));
                    if monotonic {
                        break 'work;
                    }
                }
                Some(Slot::Created(_)) => {}
                Some(Slot::Pod(p)) => {
                    if podutil::is_terminal(p) {
                        if p.metadata.deletion_timestamp.is_none() {
                            let why = if podutil::phase(p) == "Failed" { Why::Failed } else { Why::Succeeded };
                            step.delete.push((p.clone(), why));
                            doomed.push(p.metadata.name.clone().unwrap_or_default());
                        }
                        if monotonic {
                            break 'work;
                        }
                        continue;
                    }
                    if podutil::phase(p) == "Pending" && !terminating(p, &doomed) {
                        let pod_name = p.metadata.name.clone().unwrap_or_default();
                        step.claims.extend(missing(ordinal).into_iter().map(|c| (pod_name.clone(), c)));
                    }
                    if monotonic
                        && (terminating(p, &doomed)
                            || !running_and_ready(p)
                            || !podutil::is_available(p, min_ready, now))
                    {
                        break 'work;
                    }
                    let pod_name = p.metadata.name.clone().unwrap_or_default();
                    let mut labels = p.metadata.labels.clone().unwrap_or_default();
                    let before = labels.clone();
                    labels.extend(identity_labels(&pod_name, ordinal));
                    if labels != before {
                        step.relabel.push((p.clone(), labels));
                    }
                }
            }
        }
        for (_, p) in &condemned {
            if terminating(p, &doomed) {
                if monotonic {
                    break 'work;
                }
                continue;
            }
            if monotonic && !healthy(p) && first_unhealthy.as_ref() != p.metadata.name.as_ref() {
                break 'work;
            }
            step.delete.push(((*p).clone(), Why::ScaleDown));
            doomed.push(p.metadata.name.clone().unwrap_or_default());
            if monotonic {
                break 'work;
            }
        }
        if on_delete {
            break 'work;
        }
        let slot_revision = |s: &Slot<'_>| match s {
            Slot::Pod(p) => revision_of(p).to_string(),
            Slot::Created(r) => r.to_string(),
        };
        let slot_healthy = |s: &Slot<'_>, doomed: &[String]| match s {
            Slot::Pod(p) => healthy(p) && !terminating(p, doomed),
            Slot::Created(_) => false,
        };
        let slot_terminating = |s: &Slot<'_>, doomed: &[String]| match s {
            Slot::Pod(p) => terminating(p, doomed),
            Slot::Created(_) => false,
        };
        let filled: Vec<Slot<'_>> = slots.iter().flatten().copied().collect();
        let update_min = partition.min(filled.len() as i32) as usize;
        let candidates = update_plan(
            &filled
                .iter()
                .map(|s| (slot_revision(s), slot_healthy(s, &doomed), slot_terminating(s, &doomed)))
                .collect::<Vec<_>>(),
            input.update.name,
            update_min,
            strategy
                .rolling_update
                .as_ref()
                .and_then(|r| r.max_unavailable.as_ref())
                .map(|m| scaled_value(m, replicas, true).unwrap_or(1).max(1)),
        );
        for i in candidates {
            if let Slot::Pod(p) = filled[i] {
                step.delete.push((p.clone(), Why::Update));
                doomed.push(p.metadata.name.clone().unwrap_or_default());
            }
        }
    }

    // The retention policy, on the claims of every pod that exists.
    if !deleting {
        let in_range = slots.iter().flatten().filter_map(|s| match s {
            Slot::Pod(p) => Some((*p, false)),
            Slot::Created(_) => None,
        });
        for (p, condemned) in in_range.chain(condemned.iter().map(|(_, p)| (*p, true))) {
            let Some(ordinal) = ordinal_of(name, p.metadata.name.as_deref().unwrap_or("")) else { continue };
            for (_, c) in claims_for(set, ordinal) {
                let Some(existing) = claims.get(c.metadata.name.as_deref().unwrap_or("")) else { continue };
                if let Some(refs) = retention_owners(set, existing, p, condemned) {
                    step.claim_owners.push(((*existing).clone(), refs));
                }
            }
        }
    }

    // The status, counting the pods as this step leaves them.
    let mut status = set.status.clone().unwrap_or_default();
    let (mut total, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for p in &input.pods {
        total += 1;
        if running_and_ready(p) {
            ready += 1;
            if podutil::is_available(p, min_ready, now) {
                available += 1;
            }
        }
        if !terminating(p, &doomed) {
            current += i32::from(revision_of(p) == input.current.name);
            updated += i32::from(revision_of(p) == input.update.name);
        }
    }
    for c in &step.create {
        total += 1;
        let r = revision_of(&c.pod);
        current += i32::from(r == input.current.name);
        updated += i32::from(r == input.update.name);
    }
    status.observed_generation = set.metadata.generation;
    status.replicas = total;
    status.ready_replicas = Some(ready);
    status.available_replicas = Some(available);
    status.current_replicas = Some(current);
    status.updated_replicas = Some(updated);
    status.current_revision = Some(input.current.name.to_string());
    status.update_revision = Some(input.update.name.to_string());
    status.collision_count = Some(input.collision_count);
    // A rolling update is complete once every pod is updated and ready.
    if rolling && updated == total && ready == total {
        status.current_replicas = Some(updated);
        status.current_revision = Some(input.update.name.to_string());
    }
    step.status = status;
    if min_ready > 0 && ready != available {
        step.requeue = Some(Duration::from_secs(min_ready as u64));
    }
    step
}

/// Which slots a rolling update deletes now, given each slot's (revision, healthy,
/// terminating) in ordinal order: the highest ordinal at or above `update_min` not at
/// `update` and not terminating, once every slot above it is healthy. With `max_unavailable`
/// (upstream's MaxUnavailableStatefulSet), as many as leave at most that many unhealthy.
pub fn update_plan(
    slots: &[(String, bool, bool)],
    update: &str,
    update_min: usize,
    max_unavailable: Option<i32>,
) -> Vec<usize> {
    let stale = |i: usize| slots[i].0 != update && !slots[i].2;
    match max_unavailable {
        None => {
            for i in (update_min..slots.len()).rev() {
                if stale(i) {
                    return vec![i];
                }
                if !slots[i].1 {
                    return vec![];
                }
            }
            vec![]
        }
        Some(max) => {
            let unavailable = slots.iter().filter(|s| !s.1).count() as i32;
            let budget = (max - unavailable).max(0) as usize;
            (update_min..slots.len()).rev().filter(|i| stale(*i)).take(budget).collect()
        }
    }
}
