//! The disruption controller's decision for one budget, with no I/O: from the pods it
//! selects and the scale of their controllers, the status upstream's `trySync` writes, or
//! on failure the fail-safe status that allows no disruption.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::controllers::deployment::util::scaled_value;
use crate::controllers::runtime::owner::controller_of;
use crate::domain::disruption::{
    conditions_up_to_date, is_pod_ready, set_condition, update_disruption_allowed, DELETION_TIMEOUT,
    DISRUPTION_ALLOWED, SYNC_FAILED,
};

/// A pod controller's identity and desired replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    pub uid: String,
    pub replicas: i32,
}

/// Finds the scale of a pod's controller (upstream's finders: ReplicationController,
/// Deployment through its ReplicaSet, ReplicaSet not owned by a Deployment, StatefulSet).
pub trait Scales {
    fn scale_of(&self, controller: &OwnerReference, namespace: &str) -> Option<Scale>;
}

/// What one sync decided.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The status to write; `None` when the stored one is current.
    pub status: Option<PodDisruptionBudgetStatus>,
    /// When a disrupted pod's grace runs out and the budget must be looked at again.
    pub recheck: Option<Duration>,
    /// Pods that no controller manages (they make percentages meaningless).
    pub unmanaged: Vec<String>,
    /// Why the status could not be computed (then `status` is the fail-safe one).
    pub error: Option<String>,
}

/// Upstream's `getExpectedScale`: the sum of the scales of the pods' controllers.
fn expected_scale(pods: &[&Pod], scales: &dyn Scales, unmanaged: &mut Vec<String>) -> Result<i32, String> {
    let mut seen: HashMap<String, i32> = HashMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(r) = controller_of(&pod.metadata) else {
            unmanaged.push(name);
            continue;
        };
        if seen.contains_key(&r.uid) {
            continue;
        }
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        match scales.scale_of(r, ns) {
            Some(s) => {
                seen.insert(s.uid, s.replicas);
            }
            None => return Err(format!("found no controllers for pod {name:?}")),
        }
    }
    Ok(seen.values().sum())
}

/// Upstream's `getExpectedPodCount`: `(expectedPods, desiredHealthy)`.
fn expected_and_desired(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    scales: &dyn Scales,
    unmanaged: &mut Vec<String>,
) -> Result<(i32, i32), String> {
    let spec = pdb.spec.clone().unwrap_or_default();
    if let Some(max) = &spec.max_unavailable {
        let expected = expected_scale(pods, scales, unmanaged)?;
        let max = scaled_value(max, expected, true)?;
        return Ok((expected, (expected - max).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((pods.len() as i32, *n)),
        Some(pct @ IntOrString::String(_)) => {
            let expected = expected_scale(pods, scales, unmanaged)?;
            Ok((expected, scaled_value(pct, expected, true)?))
        }
        None => Ok((0, 0)),
    }
}

fn plus(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d).ok().and_then(|d| t.checked_add(d).ok()).unwrap_or(t)
}

/// Upstream's `buildDisruptedPodMap`: the evictions still expected to complete, and when
/// the first of them times out.
fn disrupted_pods(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let mut out = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let Some(old) = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref()) else { return (out, None) };
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(at) = old.get(&name) else { continue };
        let expected = plus(at.0, DELETION_TIMEOUT);
        if expected >= now {
            recheck = Some(recheck.map_or(expected, |r| r.min(expected)));
            out.insert(name, at.clone());
        }
    }
    (out, recheck)
}

/// Upstream's `countHealthyPods`: ready pods neither being deleted nor about to be.
fn current_healthy(pods: &[&Pod], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let name = p.metadata.name.as_deref().unwrap_or("");
            disrupted.get(name).is_none_or(|at| plus(at.0, DELETION_TIMEOUT) <= now)
        })
        .filter(|p| is_pod_ready(p))
        .count() as i32
}

/// The sync of one budget over the pods its selector picks.
pub fn sync(pdb: &PodDisruptionBudget, pods: &[&Pod], scales: &dyn Scales, now: Timestamp) -> Outcome {
    let mut out = Outcome::default();
    let (expected, desired) = match expected_and_desired(pdb, pods, scales, &mut out.unmanaged) {
        Ok(v) => v,
        Err(e) => {
            out.status = Some(fail_safe(pdb, &e, now));
            out.error = Some(e);
            return out;
        }
    };
    let (disrupted, recheck) = disrupted_pods(pdb, pods, now);
    let healthy = current_healthy(pods, &disrupted, now);
    let mut allowed = healthy - desired;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    out.recheck = recheck.map(|r| r.duration_since(now).unsigned_abs());
    let old = pdb.status.clone().unwrap_or_default();
    let current = old.current_healthy == healthy
        && old.desired_healthy == desired
        && old.expected_pods == expected
        && old.disruptions_allowed == allowed
        && old.disrupted_pods.clone().unwrap_or_default() == disrupted
        && old.observed_generation == pdb.metadata.generation
        && conditions_up_to_date(pdb);
    if !current {
        let mut status = PodDisruptionBudgetStatus {
            current_healthy: healthy,
            desired_healthy: desired,
            expected_pods: expected,
            disruptions_allowed: allowed,
            disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
            observed_generation: pdb.metadata.generation,
            conditions: old.conditions,
        };
        update_disruption_allowed(&mut status, now);
        out.status = Some(status);
    }
    out
}

/// Upstream's `failSafe`: no disruption allowed, and the condition says why.
fn fail_safe(pdb: &PodDisruptionBudget, error: &str, now: Timestamp) -> PodDisruptionBudgetStatus {
    let mut s = pdb.status.clone().unwrap_or_default();
    s.disruptions_allowed = 0;
    let generation = s.observed_generation;
    set_condition(
        s.conditions.get_or_insert_with(Vec::new),
        Condition {
            type_: DISRUPTION_ALLOWED.into(),
            status: "False".into(),
            reason: SYNC_FAILED.into(),
            message: error.to_string(),
            observed_generation: generation,
            last_transition_time: Time(now),
        },
    );
    s
}
