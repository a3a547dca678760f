//! The delay before a Job replaces failed pods (upstream's pod failure back-off): 10 s
//! after the first failure since the last success, doubling with each further one, capped
//! at upstream's `MaxJobPodFailureBackOff` (10 minutes in the controller's code; the
//! documentation's "six minutes" is older). A success resets it.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// The first delay.
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(10);
/// The longest delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// The failures of one Job since its last success.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub failures_after_last_success: u32,
    pub last_failure: Option<Timestamp>,
}

impl Record {
    /// The record after pods finished: `succeeded` and `failed` with their finish times.
    pub fn with_finished(&self, succeeded: &[Timestamp], failed: &[Timestamp]) -> Record {
        let last_success = succeeded.iter().max().copied();
        let mut out = self.clone();
        if let Some(s) = last_success {
            out.failures_after_last_success = 0;
            out.last_failure = None;
            let later: Vec<Timestamp> = failed.iter().copied().filter(|f| *f > s).collect();
            out.failures_after_last_success = later.len() as u32;
            out.last_failure = later.iter().max().copied();
        } else if !failed.is_empty() {
            out.failures_after_last_success += failed.len() as u32;
            out.last_failure = out.last_failure.into_iter().chain(failed.iter().copied()).max();
        }
        out
    }

    /// How long from `now` until a replacement may be made.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self.last_failure.filter(|_| self.failures_after_last_success > 0) else {
            return Duration::ZERO;
        };
        delay_after(self.failures_after_last_success, last, now)
    }
}

/// What is left at `now` of the back-off after `failures` failures, the last at `last`.
pub fn delay_after(failures: u32, last: Timestamp, now: Timestamp) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let backoff = DEFAULT_BACKOFF
        .checked_mul(1u32.checked_shl(failures - 1).unwrap_or(u32::MAX))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF);
    let elapsed = now.duration_since(last);
    let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
    backoff.saturating_sub(elapsed)
}

/// When a pod finished (upstream's `getFinishedTime`): the last of its containers'
/// termination times, else when it stopped being Ready, else when its deletion began,
/// else `now`.
pub fn finish_time(pod: &Pod, now: Timestamp) -> Timestamp {
    let status = pod.status.as_ref();
    let containers = status
        .into_iter()
        .flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()))
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max();
    let not_ready = || {
        status?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "Ready" && c.status == "False")?
            .last_transition_time
            .as_ref()
            .map(|t| t.0)
    };
    containers.or_else(not_ready).or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn the_delay_doubles_from_10s_and_is_capped() {
        let cases = [(0, 0, 0), (1, 0, 10), (1, 4, 6), (1, 10, 0), (2, 0, 20), (3, 5, 35), (7, 0, 600), (30, 0, 600)];
        for (failures, elapsed, left) in cases {
            assert_eq!(delay_after(failures, at(0), at(elapsed)), Duration::from_secs(left), "{failures} {elapsed}");
        }
    }

    #[test]
    fn a_success_resets_the_count() {
        let r = Record::default().with_finished(&[], &[at(1), at(5)]);
        assert_eq!(r, Record { failures_after_last_success: 2, last_failure: Some(at(5)) });
        assert_eq!(r.remaining(at(10)), Duration::from_secs(15));
        let r = r.with_finished(&[at(20)], &[at(30), at(10)]);
        assert_eq!(r, Record { failures_after_last_success: 1, last_failure: Some(at(30)) });
        let r = r.with_finished(&[at(40)], &[]);
        assert_eq!(r.remaining(at(40)), Duration::ZERO);
    }
}
