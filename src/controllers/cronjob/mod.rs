//! The CronJob controller (upstream's `cronjob-controller`, its v2): makes a Job for each
//! due schedule time, named `<cronjob>-<scheduled time in minutes since the epoch>` so that
//! a time is never run twice, honouring `timeZone`, `startingDeadlineSeconds`, `suspend`
//! and the concurrency policy; keeps `status.active`, `lastScheduleTime` and
//! `lastSuccessfulTime`; deletes the oldest finished Jobs past the history limits. It looks
//! again when the next time comes. A schedule or zone it cannot use gets a warning Event and
//! that CronJob is left alone until it changes.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::Resource;

use super::job::is_finished;
use super::runtime::owner::{controller_of, dependent_triggers};
use super::runtime::{self, api_code, is_not_found, Clock, Context, Informer, ReconcileError};
use crate::domain::cron::{self, Schedule};

/// The annotation with a Job's scheduled time (RFC 3339 in the CronJob's zone).
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream looks again this long after a schedule time, so the time has surely come.
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
/// More missed start times than this get a warning.
pub const TOO_MANY_MISSED: i64 = 100;

/// The CronJob controller.
pub async fn run(ctx: Context) {
    let cronjobs = ctx.informers.get::<CronJob>();
    let jobs = ctx.informers.get::<Job>();
    let sync = Arc::new(CronSync {
        client: ctx.client.clone(),
        jobs: jobs.clone(),
        recorder: ctx.recorder("cronjob-controller"),
        clock: ctx.clock.clone(),
    });
    let triggers = futures::stream::select(
        runtime::own_triggers(&cronjobs),
        // A CronJob adopts nothing: only the Jobs it controls wake it.
        dependent_triggers(&jobs, cronjobs.store().clone(), |_, _| Vec::new()),
    );
    runtime::run("cronjob", cronjobs.store().clone(), triggers, ctx.stop.clone(), move |cj| {
        let sync = sync.clone();
        async move { sync.reconcile(cj).await }
    })
    .await
}

/// The name of the Job for `scheduled` (upstream's `getJobName`).
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

fn add_secs(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(secs)).unwrap_or(if secs < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// The schedule and the zone it runs in.
pub struct Timing {
    pub schedule: Schedule,
    pub tz: TimeZone,
}

impl Timing {
    fn next(&self, t: Timestamp) -> Option<Timestamp> {
        self.schedule.next(t, &self.tz)
    }
}

/// The most recent schedule time not yet run at `now`, and roughly how many were missed
/// (upstream's `mostRecentScheduleTime`), counted from the last schedule time or the
/// creation, or, with `deadline`, no earlier than startingDeadlineSeconds ago.
pub fn most_recent(
    cj: &CronJob,
    now: Timestamp,
    timing: &Timing,
    deadline: bool,
) -> Result<(Option<Timestamp>, i64), String> {
    let created = cj.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let mut earliest = cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map_or(created, |t| t.0);
    if deadline {
        if let Some(d) = cj.spec.as_ref().and_then(|s| s.starting_deadline_seconds) {
            earliest = earliest.max(add_secs(now, -d));
        }
    }
    // A schedule that never fires (robfig gives the zero time for it) reads as two fire
    // times less than a second apart, as upstream reports it.
    let never = || "time difference between two schedules is less than 1 second".to_string();
    let t1 = timing.next(earliest).ok_or_else(never)?;
    if now < t1 {
        return Ok((None, 0));
    }
    let t2 = timing.next(t1).ok_or_else(never)?;
    if now < t2 {
        return Ok((Some(t1), 1));
    }
    let between = (t2.as_millisecond() - t1.as_millisecond() + 500) / 1000;
    if between < 1 {
        return Err(never());
    }
    let elapsed = (now.as_millisecond() - t1.as_millisecond()) / 1000;
    let missed = elapsed / between + 1;
    // Start near the end (rounded for irregular schedules) and walk to now.
    let mut t = timing.next(add_secs(t1, (missed - 2) * between));
    let mut recent = None;
    while let Some(x) = t.filter(|x| *x <= now) {
        recent = Some(x);
        t = timing.next(x);
    }
    Ok((recent.or(Some(t1)), missed))
}

/// How long until the schedule time after the most recent one, plus upstream's margin
/// (`nextScheduleTimeDuration`).
pub fn next_requeue(cj: &CronJob, now: Timestamp, timing: &Timing) -> Option<Duration> {
    let created = cj.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let earliest = cj.status.as_ref().and_then(|s| s.last_schedule_time.as_ref()).map_or(created, |t| t.0);
    let recent = match most_recent(cj, now, timing, false) {
        Ok((r, _)) => r.unwrap_or(earliest),
        Err(_) => return None,
    };
    let next = timing.next(recent)?;
    Some(cron::until(now, next) + NEXT_SCHEDULE_DELTA)
}

/// The Job for `scheduled` (upstream's `getJobFromTemplate2`).
pub fn job_for(cj: &CronJob, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut annotations = meta.annotations.unwrap_or_default();
    annotations.insert(SCHEDULED_TIMESTAMP.into(), cron::rfc3339_in(scheduled, tz));
    Job {
        metadata: ObjectMeta {
            name: Some(job_name(cj.metadata.name.as_deref().unwrap_or(""), scheduled)),
            namespace: cj.metadata.namespace.clone(),
            labels: meta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![runtime::owner::controller_ref(cj)]),
            ..Default::default()
        },
        spec: Some(template.spec.unwrap_or_default()),
        status: None,
    }
}

/// Finished Jobs past `limit`, oldest first by start time then name (upstream's
/// `removeOldestJobs` order).
pub fn oldest_past_limit<'a>(finished: &[&'a Job], limit: i32) -> Vec<&'a Job> {
    let extra = finished.len().saturating_sub(limit.max(0) as usize);
    let mut sorted = finished.to_vec();
    let start = |j: &Job| j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    sorted.sort_by(|a, b| match (start(a), start(b)) {
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (x, y) if x == y => a.metadata.name.cmp(&b.metadata.name),
        (x, y) => x.cmp(&y),
    });
    sorted.truncate(extra);
    sorted
}

fn succeeded(job: &Job) -> bool {
    let conditions = job.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "Complete" && c.status == "True"))
}

fn finished_type(job: &Job) -> &'static str {
    if succeeded(job) {
        "Complete"
    } else {
        "Failed"
    }
}

struct CronSync {
    client: kube::Client,
    jobs: Informer<Job>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
}

impl CronSync {
    async fn reconcile(&self, obj: Arc<CronJob>) -> Result<Action, ReconcileError> {
        let mut cj = (*obj).clone();
        let ns = cj.metadata.namespace.clone().unwrap_or_default();
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let now = self.clock.now();
        let all = self.jobs.store().state();
        let children: Vec<&Job> = all
            .iter()
            .map(|j| &**j)
            .filter(|j| j.metadata.namespace.as_deref() == Some(&ns))
            .filter(|j| controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let (requeue, result) = self.sync(&mut cj, &children, now).await;
        self.clean_up_history(&mut cj, &children).await;
        if cj.status != obj.status {
            let api: Api<CronJob> = Api::namespaced(self.client.clone(), &ns);
            let name = cj.metadata.name.clone().unwrap_or_default();
            match api.replace_status(&name, &PostParams::default(), &cj).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
                Err(e) => return Err(e.into()),
            }
        }
        match requeue {
            Some(d) => Ok(Action::requeue(d)),
            None => result.map(|()| Action::await_change()),
        }
    }

    /// Upstream's `syncCronJob`: the status kept in `cj`, when to look again.
    async fn sync(
        &self,
        cj: &mut CronJob,
        children: &[&Job],
        now: Timestamp,
    ) -> (Option<Duration>, Result<(), ReconcileError>) {
        let reference = cj.object_ref(&());
        let status = cj.status.get_or_insert_with(Default::default);
        let mut active: Vec<ObjectReference> = status.active.take().unwrap_or_default();
        for j in children {
            let juid = j.metadata.uid.clone();
            let listed = active.iter().any(|r| r.uid == juid);
            let name = j.metadata.name.clone().unwrap_or_default();
            if !listed && !is_finished(j) {
                let note = format!("Saw a job that the controller did not create or forgot: {name}");
                self.event(&reference, EventType::Warning, "UnexpectedJob", "Sync", note).await;
            } else if listed && is_finished(j) {
                active.retain(|r| r.uid != juid);
                let note = format!("Saw completed job: {name}, condition: {}", finished_type(j));
                self.event(&reference, EventType::Normal, "SawCompletedJob", "Sync", note).await;
            } else if succeeded(j) {
                let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                if let Some(t) = done {
                    if status.last_successful_time.as_ref().is_none_or(|l| t.0 > l.0) {
                        status.last_successful_time = Some(t);
                    }
                }
            }
        }
        // An active Job gone from the store may only be slow to show: the API decides.
        let mut kept = Vec::new();
        for r in active {
            if children.iter().any(|j| j.metadata.uid == r.uid) {
                kept.push(r);
                continue;
            }
            let api: Api<Job> = Api::namespaced(self.client.clone(), r.namespace.as_deref().unwrap_or(""));
            match api.get_opt(r.name.as_deref().unwrap_or("")).await {
                Ok(None) => {
                    let note = format!("Active job went missing: {}", r.name.as_deref().unwrap_or(""));
                    self.event(&reference, EventType::Normal, "MissingJob", "Sync", note).await;
                }
                Ok(Some(_)) => kept.push(r),
                Err(e) => {
                    kept.push(r);
                    status.active = Some(kept);
                    return (None, Err(e.into()));
                }
            }
        }
        status.active = (!kept.is_empty()).then_some(kept);
        if cj.metadata.deletion_timestamp.is_some() {
            return (None, Ok(()));
        }
        let spec = cj.spec.clone().unwrap_or_default();
        let mut zone = spec.time_zone.clone();
        let schedule = match Schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                let note = format!("unparseable schedule: {:?} : {e}", spec.schedule);
                self.event(&reference, EventType::Warning, "UnparseableSchedule", "Sync", note).await;
                return (None, Ok(()));
            }
        };
        if zone.is_none() {
            if let Some(z) = schedule.zone.clone() {
                let note = format!(
                    "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
                    spec.schedule
                );
                self.event(&reference, EventType::Warning, "UnsupportedSchedule", "Sync", note).await;
                zone = Some(z);
            }
        }
        let tz = match crate::util::tz::load(zone.as_deref().unwrap_or("")) {
            Ok(tz) => tz,
            Err(e) => {
                let note = format!("invalid timeZone: {:?}: {e}", zone.unwrap_or_default());
                self.event(&reference, EventType::Warning, "UnknownTimeZone", "Sync", note).await;
                return (None, Ok(()));
            }
        };
        if spec.suspend == Some(true) {
            return (None, Ok(()));
        }
        let timing = Timing { schedule, tz };
        let scheduled = match most_recent(cj, now, &timing, true) {
            Ok((t, missed)) => {
                if t.is_some() && missed > TOO_MANY_MISSED {
                    let note = format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew");
                    self.event(&reference, EventType::Warning, "TooManyMissedTimes", "Sync", note).await;
                }
                t
            }
            Err(e) => {
                let note = format!("invalid schedule: {} : {e}", spec.schedule);
                self.event(&reference, EventType::Warning, "InvalidSchedule", "Sync", note).await;
                return (None, Ok(()));
            }
        };
        let next = next_requeue(cj, now, &timing);
        let Some(scheduled) = scheduled else { return (next, Ok(())) };
        if let Some(d) = spec.starting_deadline_seconds {
            if add_secs(scheduled, d) < now {
                let when = cron::rfc3339_in(scheduled, &TimeZone::UTC);
                let note = format!("Missed scheduled time to start a job: {when}");
                self.event(&reference, EventType::Warning, "MissSchedule", "Sync", note).await;
                return (next, Ok(()));
            }
        }
        let name = job_name(cj.metadata.name.as_deref().unwrap_or(""), scheduled);
        let status = cj.status.get_or_insert_with(Default::default);
        let done_already = status.active.iter().flatten().any(|r| r.name.as_deref() == Some(&name))
            || status.last_schedule_time.as_ref().is_some_and(|t| t.0.as_second() == scheduled.as_second());
        if done_already {
            return (next, Ok(()));
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        if policy == "Forbid" && status.active.as_ref().is_some_and(|a| !a.is_empty()) {
            let note = "Not starting job because prior execution is running and concurrency policy is Forbid";
            self.event(&reference, EventType::Normal, "JobAlreadyActive", "Sync", note.into()).await;
            return (next, Ok(()));
        }
        if policy == "Replace" {
            for r in status.active.clone().unwrap_or_default() {
                if let Err(e) = self.delete_job(cj, &reference, r.name.as_deref().unwrap_or("")).await {
                    return (None, Err(e));
                }
            }
        }
        let job = job_for(cj, scheduled, &timing.tz);
        let api: Api<Job> = Api::namespaced(self.client.clone(), cj.metadata.namespace.as_deref().unwrap_or(""));
        let made = match api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                let note = format!("Created job {name}");
                self.event(&reference, EventType::Normal, "SuccessfulCreate", "Create", note).await;
                j
            }
            Err(e) if api_code(&e) == Some(409) => match api.get(&name).await {
                // Someone (this controller, before a restart) made it already.
                Ok(j) => j,
                Err(e) => return (None, Err(e.into())),
            },
            Err(e) => {
                let note = format!("Error creating job: {e}");
                self.event(&reference, EventType::Warning, "FailedCreate", "Create", note).await;
                return (None, Err(e.into()));
            }
        };
        let status = cj.status.get_or_insert_with(Default::default);
        status.active.get_or_insert_with(Vec::new).push(made.object_ref(&()));
        status.last_schedule_time = Some(Time(scheduled));
        (next_requeue(cj, now, &timing), Ok(()))
    }

    /// Deletes a Job (Background) and takes it off the active list.
    async fn delete_job(
        &self,
        cj: &mut CronJob,
        reference: &ObjectReference,
        name: &str,
    ) -> Result<(), ReconcileError> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), cj.metadata.namespace.as_deref().unwrap_or(""));
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                let note = format!("Deleted job: {e}");
                self.event(reference, EventType::Warning, "FailedDelete", "Delete", note).await;
                return Err(e.into());
            }
        }
        if let Some(a) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
            a.retain(|r| r.name.as_deref() != Some(name));
        }
        if let Some(s) = cj.status.as_mut() {
            if s.active.as_ref().is_some_and(|a| a.is_empty()) {
                s.active = None;
            }
        }
        self.event(reference, EventType::Normal, "SuccessfulDelete", "Delete", format!("Deleted job {name}")).await;
        Ok(())
    }

    /// Deletes the oldest finished Jobs past the history limits.
    async fn clean_up_history(&self, cj: &mut CronJob, children: &[&Job]) {
        let spec = cj.spec.clone().unwrap_or_default();
        let reference = cj.object_ref(&());
        let done: Vec<&Job> = children.iter().copied().filter(|j| is_finished(j)).collect();
        let (ok, failed): (Vec<&Job>, Vec<&Job>) = done.into_iter().partition(|j| succeeded(j));
        for (list, limit) in [(ok, spec.successful_jobs_history_limit), (failed, spec.failed_jobs_history_limit)] {
            let Some(limit) = limit else { continue };
            for j in oldest_past_limit(&list, limit) {
                let name = j.metadata.name.clone().unwrap_or_default();
                if let Err(e) = self.delete_job(cj, &reference, &name).await {
                    tracing::debug!(controller = "cronjob", error = %e, job = %name, "cannot delete an old job");
                }
            }
        }
    }

    async fn event(&self, reference: &ObjectReference, type_: EventType, reason: &str, action: &str, note: String) {
        crate::controllers::runtime::publish(&self.recorder, reference, type_, reason, action, note).await;
    }
}

#[cfg(test)]
mod tests;
