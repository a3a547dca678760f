//! PodDisruptionBudget rules that the disruption controller and the apiserver's eviction
//! subresource both apply: the `DisruptionAllowed` condition (upstream's `pdbhelper`), and
//! the check-and-decrement an eviction makes on a budget. Both sides hold the budget as a
//! typed `k8s-openapi` object so that the rule is written once.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The condition type a budget reports.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";
/// `unhealthyPodEvictionPolicy` that lets a not-ready pod go whatever the budget says.
pub const ALWAYS_ALLOW: &str = "AlwaysAllow";

/// How long an approved eviction may take before the controller stops counting the pod
/// as disrupted (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);

/// Above this many unconfirmed evictions, a budget refuses more (upstream's
/// `MaxDisruptedPodSize`).
pub const MAX_DISRUPTED_PODS: usize = 2000;

/// Ready=True (upstream's `IsPodReady`).
pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Sets a condition as upstream's `meta.SetStatusCondition`: the transition time moves only
/// when the status changes.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(c) => {
            if c.status != new.status {
                c.status = new.status;
                c.last_transition_time = new.last_transition_time;
            }
            c.reason = new.reason;
            c.message = new.message;
            c.observed_generation = new.observed_generation;
        }
        None => conditions.push(new),
    }
}

/// `DisruptionAllowed` from `disruptionsAllowed`: True/SufficientPods above zero,
/// False/InsufficientPods otherwise.
pub fn update_disruption_allowed(status: &mut PodDisruptionBudgetStatus, now: Timestamp) {
    let (value, reason) =
        if status.disruptions_allowed > 0 { ("True", SUFFICIENT_PODS) } else { ("False", INSUFFICIENT_PODS) };
    let generation = status.observed_generation;
    set_condition(
        status.conditions.get_or_insert_with(Vec::new),
        Condition {
            type_: DISRUPTION_ALLOWED.into(),
            status: value.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: generation,
            last_transition_time: Time(now),
        },
    );
}

/// Whether the condition says what `disruptionsAllowed` says, for the current generation.
pub fn conditions_up_to_date(pdb: &PodDisruptionBudget) -> bool {
    let Some(status) = &pdb.status else { return false };
    let Some(c) = status.conditions.iter().flatten().find(|c| c.type_ == DISRUPTION_ALLOWED) else { return false };
    if status.observed_generation != pdb.metadata.generation {
        return false;
    }
    if status.disruptions_allowed > 0 {
        c.status == "True" && c.reason == SUFFICIENT_PODS
    } else {
        c.status == "False" && c.reason == INSUFFICIENT_PODS
    }
}

/// Why a budget refuses an eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The controller has not seen the budget's current generation yet.
    NotProcessed,
    /// `disruptionsAllowed` is negative.
    Negative,
    /// Too many evictions not yet confirmed by the controller.
    TooManyDisrupted,
    /// No disruption allowed now.
    Budget { desired: i32, current: i32 },
}

/// Whether a not-ready pod may go without using up the budget: the `AlwaysAllow` policy,
/// or (by default, `IfHealthyBudget`) a budget that is met without it.
pub fn unready_pod_may_go(pdb: &PodDisruptionBudget) -> bool {
    let policy = pdb.spec.as_ref().and_then(|s| s.unhealthy_pod_eviction_policy.as_deref());
    if policy == Some(ALWAYS_ALLOW) {
        return true;
    }
    let s = pdb.status.clone().unwrap_or_default();
    s.current_healthy >= s.desired_healthy && s.desired_healthy > 0
}

/// Takes one disruption from the budget for `pod` (upstream's `checkAndDecrement`): the
/// budget afterwards, with the pod recorded in `disruptedPods` unless `dry_run`.
pub fn check_and_decrement(
    pdb: &PodDisruptionBudget,
    pod: &str,
    now: Timestamp,
    dry_run: bool,
) -> Result<PodDisruptionBudget, Refusal> {
    let mut out = pdb.clone();
    let status = out.status.get_or_insert_with(Default::default);
    if status.observed_generation.unwrap_or(0) < pdb.metadata.generation.unwrap_or(0) {
        return Err(Refusal::NotProcessed);
    }
    if status.disruptions_allowed < 0 {
        return Err(Refusal::Negative);
    }
    if status.disrupted_pods.as_ref().is_some_and(|m| m.len() > MAX_DISRUPTED_PODS) {
        return Err(Refusal::TooManyDisrupted);
    }
    if status.disruptions_allowed == 0 {
        return Err(Refusal::Budget { desired: status.desired_healthy, current: status.current_healthy });
    }
    status.disruptions_allowed -= 1;
    if status.disruptions_allowed == 0 {
        update_disruption_allowed(status, now);
    }
    if !dry_run {
        status.disrupted_pods.get_or_insert_with(Default::default).insert(pod.to_string(), Time(now));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn budget(generation: i64, observed: i64, allowed: i32, desired: i32, current: i32) -> PodDisruptionBudget {
        PodDisruptionBudget {
            metadata: ObjectMeta { name: Some("b".into()), generation: Some(generation), ..Default::default() },
            spec: Some(PodDisruptionBudgetSpec::default()),
            status: Some(PodDisruptionBudgetStatus {
                observed_generation: Some(observed),
                disruptions_allowed: allowed,
                desired_healthy: desired,
                current_healthy: current,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn check_and_decrement_as_upstream() {
        struct Case {
            name: &'static str,
            pdb: PodDisruptionBudget,
            want: Result<i32, Refusal>,
        }
        let cases = [
            Case { name: "allowed", pdb: budget(1, 1, 2, 1, 3), want: Ok(1) },
            Case { name: "last one", pdb: budget(1, 1, 1, 2, 3), want: Ok(0) },
            Case {
                name: "exhausted",
                pdb: budget(1, 1, 0, 2, 2),
                want: Err(Refusal::Budget { desired: 2, current: 2 }),
            },
            Case { name: "stale generation", pdb: budget(2, 1, 5, 1, 6), want: Err(Refusal::NotProcessed) },
            Case { name: "negative", pdb: budget(1, 1, -1, 1, 0), want: Err(Refusal::Negative) },
        ];
        for c in cases {
            let got = check_and_decrement(&c.pdb, "p", t(0), false);
            let got = got.map(|b| {
                let s = b.status.unwrap();
                assert!(s.disrupted_pods.unwrap().contains_key("p"), "{}: pod recorded", c.name);
                s.disruptions_allowed
            });
            assert_eq!(got, c.want, "{}", c.name);
        }
        // A dry run decrements but records nothing.
        let dry = check_and_decrement(&budget(1, 1, 2, 1, 3), "p", t(0), true).unwrap();
        assert!(dry.status.unwrap().disrupted_pods.is_none());
    }

    #[test]
    fn the_last_disruption_turns_the_condition_false() {
        let mut pdb = budget(1, 1, 1, 2, 3);
        update_disruption_allowed(pdb.status.as_mut().unwrap(), t(0));
        assert!(conditions_up_to_date(&pdb));
        let after = check_and_decrement(&pdb, "p", t(5), false).unwrap();
        let c = &after.status.as_ref().unwrap().conditions.as_ref().unwrap()[0];
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", INSUFFICIENT_PODS));
        assert_eq!(c.last_transition_time, Time(t(5)));
        assert!(conditions_up_to_date(&after));
    }

    #[test]
    fn the_transition_time_moves_only_with_the_status() {
        let mut s = PodDisruptionBudgetStatus { disruptions_allowed: 1, ..Default::default() };
        update_disruption_allowed(&mut s, t(0));
        s.disruptions_allowed = 2;
        update_disruption_allowed(&mut s, t(10));
        assert_eq!(s.conditions.as_ref().unwrap()[0].last_transition_time, Time(t(0)));
        s.disruptions_allowed = 0;
        update_disruption_allowed(&mut s, t(20));
        assert_eq!(s.conditions.as_ref().unwrap()[0].last_transition_time, Time(t(20)));
    }

    #[test]
    fn unready_pods_go_by_the_policy() {
        let mut met = budget(1, 1, 0, 2, 2);
        assert!(unready_pod_may_go(&met));
        let unmet = budget(1, 1, 0, 3, 2);
        assert!(!unready_pod_may_go(&unmet));
        let mut always = unmet.clone();
        always.spec.as_mut().unwrap().unhealthy_pod_eviction_policy = Some(ALWAYS_ALLOW.into());
        assert!(unready_pod_may_go(&always));
        met.status.as_mut().unwrap().desired_healthy = 0;
        assert!(!unready_pod_may_go(&met), "a budget that wants nothing is not 'met'");
    }

    #[test]
    fn readiness_is_the_ready_condition() {
        let mut pod = Pod::default();
        assert!(!is_pod_ready(&pod));
        pod.status = Some(PodStatus {
            conditions: Some(vec![PodCondition { type_: "Ready".into(), status: "True".into(), ..Default::default() }]),
            ..Default::default()
        });
        assert!(is_pod_ready(&pod));
    }
}
