//! Typed pod facts the workload controllers share (upstream's `podutil`): readiness,
//! availability after minReadySeconds, and which pods still count.

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::jiff::Timestamp;

/// The pod's Ready condition, if it has one.
pub fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "Ready")
}

/// Ready=True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(c) = ready_condition(pod).filter(|c| c.status == "True") else { return false };
    if min_ready_seconds <= 0 {
        return true;
    }
    match &c.last_transition_time {
        Some(t) => t.0.as_second() + i64::from(min_ready_seconds) < now.as_second(),
        None => false,
    }
}

/// The pod's phase, empty if unset.
pub fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

/// Succeeded or Failed.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn is_failed(pod: &Pod) -> bool {
    phase(pod) == "Failed"
}

/// Neither terminal nor being deleted: what counts toward replicas (upstream's
/// `FilterActivePods`).
pub fn is_active(pod: &Pod) -> bool {
    !is_terminal(pod) && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod last turned Ready, if it is.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    ready_condition(pod).filter(|c| c.status == "True").and_then(|c| c.last_transition_time.as_ref()).map(|t| t.0)
}

#[cfg(test)]
pub(crate) mod testing {
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;

    /// Marks `pod` Running and Ready since `since`.
    pub fn make_ready(pod: &mut Pod, since: Timestamp) {
        let status = pod.status.get_or_insert_with(PodStatus::default);
        status.phase = Some("Running".into());
        status.conditions = Some(vec![PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            last_transition_time: Some(Time(since)),
            ..Default::default()
        }]);
    }
}

#[cfg(test)]
mod tests {
    use super::testing::make_ready;
    use super::*;

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let mut pod = Pod::default();
        assert!(!is_ready(&pod) && !is_available(&pod, 0, t0));
        make_ready(&mut pod, t0);
        assert!(is_available(&pod, 0, t0));
        assert!(!is_available(&pod, 10, Timestamp::from_second(1_000_010).unwrap()));
        assert!(is_available(&pod, 10, Timestamp::from_second(1_000_011).unwrap()));
        assert!(is_active(&pod));
        pod.status.as_mut().unwrap().phase = Some("Succeeded".into());
        assert!(!is_active(&pod));
    }
}
