//! The TTL-after-finished controller (upstream's `ttl-after-finished-controller`): deletes a
//! Job `spec.ttlSecondsAfterFinished` seconds after it finished (its Complete or Failed
//! condition's transition time), looking again exactly when that time comes. The Job is
//! re-read before the delete, which is guarded by its UID, so a TTL raised or a Job
//! recreated meanwhile is respected.
//!
//! Upstream deletes with Foreground propagation; k3rs has no garbage collector yet to finish
//! a foreground deletion, so the Job is deleted in the Background (its pods stay until one
//! exists).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::Action;

use super::job::finish_time;
use super::runtime::{self, is_conflict, is_not_found, Clock, Context, ReconcileError};

/// The TTL-after-finished controller.
pub async fn run(ctx: Context) {
    let jobs = ctx.informers.get::<Job>();
    let client = ctx.client.clone();
    let clock = ctx.clock.clone();
    runtime::run(
        "ttl-after-finished",
        jobs.store().clone(),
        runtime::own_triggers(&jobs),
        ctx.stop.clone(),
        move |job| {
            let (client, clock) = (client.clone(), clock.clone());
            async move { reconcile(&client, &*clock, job).await }
        },
    )
    .await
}

/// What to do with a Job at `now`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing: no TTL, not finished, or already being deleted.
    Keep,
    /// Its time comes after this long.
    Wait(Duration),
    /// Its time has come.
    Delete,
    /// Finished, but without a time to count from.
    NoFinishTime,
}

/// When the Job's TTL runs out (upstream's `processTTL`).
pub fn verdict(job: &Job, now: Timestamp) -> Verdict {
    let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else { return Verdict::Keep };
    if job.metadata.deletion_timestamp.is_some() || !super::job::is_finished(job) {
        return Verdict::Keep;
    }
    let Some(finished) = finish_time(job) else { return Verdict::NoFinishTime };
    let expire_ms = finished.as_millisecond().saturating_add(i64::from(ttl.max(0)) * 1000);
    let left = expire_ms.saturating_sub(now.as_millisecond());
    if left <= 0 {
        Verdict::Delete
    } else {
        Verdict::Wait(Duration::from_millis(left as u64))
    }
}

async fn reconcile(client: &kube::Client, clock: &dyn Clock, job: Arc<Job>) -> Result<Action, ReconcileError> {
    match verdict(&job, clock.now()) {
        Verdict::Keep => return Ok(Action::await_change()),
        Verdict::Wait(d) => return Ok(Action::requeue(d)),
        Verdict::NoFinishTime => {
            let name = job.metadata.name.as_deref().unwrap_or("");
            let ns = job.metadata.namespace.as_deref().unwrap_or("");
            return Err(ReconcileError::Other(format!("unable to find the time when the Job {ns}/{name} finished")));
        }
        Verdict::Delete => {}
    }
    let ns = job.metadata.namespace.as_deref().unwrap_or("");
    let name = job.metadata.name.as_deref().unwrap_or("");
    let api: Api<Job> = Api::namespaced(client.clone(), ns);
    // The informer's copy may be old: the TTL may have changed.
    let fresh = match api.get(name).await {
        Ok(j) => j,
        Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
        Err(e) => return Err(e.into()),
    };
    match verdict(&fresh, clock.now()) {
        Verdict::Delete => {}
        Verdict::Wait(d) => return Ok(Action::requeue(d)),
        _ => return Ok(Action::await_change()),
    }
    let dp = DeleteParams {
        preconditions: Some(Preconditions { uid: fresh.metadata.uid.clone(), resource_version: None }),
        ..DeleteParams::background()
    };
    tracing::debug!(controller = "ttl-after-finished", object = %format!("{ns}/{name}"), "deleting the finished Job");
    match api.delete(name, &dp).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::controllers::runtime::FakeClock;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    fn job(ttl: Option<i32>, finished: Option<(&str, Option<i64>)>, deleting: bool) -> Job {
        Job {
            metadata: kube::api::ObjectMeta {
                name: Some("j".into()),
                deletion_timestamp: deleting.then(|| Time(at(0))),
                ..Default::default()
            },
            spec: Some(JobSpec { ttl_seconds_after_finished: ttl, ..Default::default() }),
            status: finished.map(|(type_, t)| JobStatus {
                conditions: Some(vec![JobCondition {
                    type_: type_.into(),
                    status: "True".into(),
                    last_transition_time: t.map(|t| Time(at(t))),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_finished_job_goes_when_its_ttl_runs_out() {
        let cases = [
            (job(None, Some(("Complete", Some(0))), false), 100, Verdict::Keep),
            (job(Some(10), None, false), 100, Verdict::Keep),
            (job(Some(10), Some(("SuccessCriteriaMet", Some(0))), false), 100, Verdict::Keep),
            (job(Some(10), Some(("Complete", Some(0))), true), 100, Verdict::Keep),
            (job(Some(10), Some(("Complete", Some(0))), false), 4, Verdict::Wait(Duration::from_secs(6))),
            (job(Some(10), Some(("Failed", Some(0))), false), 10, Verdict::Delete),
            (job(Some(0), Some(("Complete", Some(5))), false), 5, Verdict::Delete),
            (job(Some(10), Some(("Complete", None)), false), 100, Verdict::NoFinishTime),
        ];
        for (i, (j, after, want)) in cases.into_iter().enumerate() {
            let clock = FakeClock::at(at(0));
            clock.advance(Duration::from_secs(after));
            assert_eq!(verdict(&j, clock.now()), want, "case {i}");
        }
    }
}
