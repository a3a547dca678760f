//! The Job controller (upstream's `job-controller`): runs a Job's pods to completion.
//! NonIndexed and Indexed completion modes, parallelism, the back-off limits (Job-wide and
//! per index) with the pod-recreation back-off, activeDeadlineSeconds, the pod failure and
//! success policies, suspension and podReplacementPolicy.
//!
//! Finished pods are counted exactly once, across restarts, as upstream counts them: each
//! pod the controller makes carries the `batch.kubernetes.io/job-tracking` finalizer; a
//! finished pod's UID is first written to `status.uncountedTerminatedPods`, then its
//! finalizer is removed, then the UID moves into the `succeeded`/`failed` counters. A
//! failing or succeeding Job first gets the interim FailureTarget/SuccessCriteriaMet
//! condition, and Failed/Complete once no pod is left uncounted or terminating.

pub mod backoff;
pub mod indexes;
pub mod pods;
pub mod policy;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::controller::Action;
use kube::runtime::events::{EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;
use serde_json::json;

use self::indexes::Indexes;
use self::pods::{completion_index, has_tracking_finalizer, is_indexed, IndexFailures, TRACKING_FINALIZER};
use self::policy::{match_failure_policy, match_success_policy, FailureAction};
use super::podutil;
use super::runtime::expectations::{Expectations, Seen, Written};
use super::runtime::owner::{
    claim, controller_of, controller_selector, controller_trigger, dependent_triggers, refers_to, Claim,
};
use super::runtime::{self, is_not_found, Clock, Context, Informer, Notice, ReconcileError};

/// The `spec.managedBy` value of Jobs this controller runs (or none).
pub const MANAGED_BY: &str = "kubernetes.io/job-controller";
/// At most this many pods are created or deleted in one sync (upstream's
/// MaxPodCreateDeletePerSync).
const MAX_POD_CREATE_DELETE: usize = 500;
/// At most this many UIDs wait in `uncountedTerminatedPods` (upstream's MaxUncountedPods).
const MAX_UNCOUNTED: usize = 500;

/// The Job controller.
pub async fn run(ctx: Context) {
    let jobs = ctx.informers.get::<Job>();
    let pods = ctx.informers.get::<Pod>();
    let sync = Arc::new(JobSync {
        client: ctx.client.clone(),
        pods: pods.clone(),
        expectations: Expectations::default(),
        removing: Mutex::new(HashMap::new()),
        backoff: Mutex::new(HashMap::new()),
        recorder: ctx.recorder("job-controller"),
        clock: ctx.clock.clone(),
    });
    let triggers = futures::stream::select(
        runtime::own_triggers(&jobs),
        dependent_triggers(&pods, jobs.store().clone(), orphan_claimants),
    );
    let orphans = tokio::spawn(release_orphans(sync.clone(), jobs.clone(), ctx.stop.clone()));
    let reconciler = sync.clone();
    runtime::run("job", jobs.store().clone(), triggers, ctx.stop.clone(), move |obj| {
        let sync = reconciler.clone();
        async move { sync.reconcile(obj).await }
    })
    .await;
    orphans.abort();
}

/// Jobs in the pod's namespace whose selector matches an orphan pod.
fn orphan_claimants(pod: &Pod, jobs: &Store<Job>) -> Vec<ObjectRef<Job>> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    jobs.state()
        .iter()
        .filter(|j| j.metadata.namespace == pod.metadata.namespace)
        .filter(|j| selector_of(j).is_some_and(|s| s.matches(&labels)))
        .map(|j| ObjectRef::from_obj(&**j))
        .collect()
}

/// The Job's selector; none if empty or unusable (it selects nothing).
pub fn selector_of(job: &Job) -> Option<Selector> {
    controller_selector(job.spec.as_ref()?.selector.clone()?)
}

fn condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_ && c.status == "True")
}

/// Complete or Failed (upstream's `IsJobFinished`).
pub fn is_finished(job: &Job) -> bool {
    condition(job, "Complete").is_some() || condition(job, "Failed").is_some()
}

/// When the Job finished, if it has.
pub fn finish_time(job: &Job) -> Option<Timestamp> {
    let c = condition(job, "Complete").or_else(|| condition(job, "Failed"))?;
    c.last_transition_time.as_ref().map(|t| t.0)
}

fn new_condition(type_: &str, status: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets the condition of `type_` (upstream's `ensureJobConditionStatus`): an existing one is
/// replaced if anything differs, a missing one added unless it would be False. True if the
/// list changed.
fn ensure_condition(list: &mut Vec<JobCondition>, new: JobCondition) -> bool {
    if let Some(c) = list.iter_mut().find(|c| c.type_ == new.type_) {
        if c.status != new.status || c.reason != new.reason || c.message != new.message {
            *c = new;
            return true;
        }
        return false;
    }
    if new.status != "False" {
        list.push(new);
        return true;
    }
    false
}

/// Whether a pod counts as failed (upstream's `isPodFailed`): phase Failed, or, when
/// terminating pods are replaced right away (no pod failure policy and
/// podReplacementPolicy TerminatingOrFailed), a pod being deleted that did not succeed.
pub fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    let phase = podutil::phase(pod);
    if phase == "Failed" {
        return true;
    }
    if only_replace_failed(job) {
        return false;
    }
    pod.metadata.deletion_timestamp.is_some() && phase != "Succeeded"
}

/// A pod is replaced only once it has failed, not while it terminates.
fn only_replace_failed(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// With restartPolicy OnFailure, the restarts of running pods count against backoffLimit
/// (upstream's `pastBackoffLimitOnFailure`).
fn past_backoff_limit_on_failure(job: &Job, pods: &[&Pod]) -> bool {
    let spec = job.spec.as_ref();
    let restart = spec.and_then(|s| s.template.spec.as_ref()).and_then(|s| s.restart_policy.as_deref());
    if restart != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(podutil::phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten()))
        .map(|c| c.restart_count)
        .sum();
    let limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6);
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// How long until the Job's activeDeadlineSeconds passes (zero if it has); none without a
/// deadline, a start time, or while suspended.
pub fn deadline_left(job: &Job, now: Timestamp) -> Option<Duration> {
    let deadline = job.spec.as_ref()?.active_deadline_seconds?;
    let start = job.status.as_ref()?.start_time.as_ref()?.0;
    if is_suspended(job) {
        return None;
    }
    let end = start.as_second().saturating_add(deadline);
    let left_ms = end.saturating_mul(1000).saturating_sub(now.as_millisecond());
    Some(Duration::from_millis(left_ms.max(0) as u64))
}

/// The delete order of surplus active pods (upstream's `activePodsForRemoval`): for an
/// Indexed Job, pods with no valid index, an index out of range, an already succeeded
/// index or a duplicate index go first; then the lowest-ranked by upstream's pod ranking.
fn pods_for_removal<'a>(
    job: &Job,
    active: &[&'a Pod],
    at_least: usize,
    succeeded: &Indexes,
    now: Timestamp,
) -> Vec<&'a Pod> {
    let mut rest: Vec<&Pod> = active.to_vec();
    let mut out = Vec::new();
    if is_indexed(job) {
        let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
        let mut by_index: HashMap<i32, Vec<&Pod>> = HashMap::new();
        let mut keep = Vec::new();
        for p in rest.drain(..) {
            match completion_index(p) {
                Some(i) if i < completions && !succeeded.contains(&i) => by_index.entry(i).or_default().push(p),
                _ => out.push(p),
            }
        }
        for (_, mut same) in by_index {
            // One pod per index stays: the best-ranked (deleted last).
            same.sort_by_key(|p| p.metadata.name.clone());
            super::replicaset::rank::sort_for_deletion(&mut same, &[], now);
            if let Some(best) = same.pop() {
                keep.push(best);
            }
            out.extend(same);
        }
        rest = keep;
    }
    if out.len() < at_least {
        rest.sort_by_key(|p| p.metadata.name.clone());
        super::replicaset::rank::sort_for_deletion(&mut rest, &[], now);
        let n = (at_least - out.len()).min(rest.len());
        out.extend(rest.drain(..n));
    }
    out.truncate(MAX_POD_CREATE_DELETE);
    out
}

/// The lowest `count` indexes below `completions` not in `taken`.
fn first_pending_indexes(taken: &HashSet<i32>, count: usize, completions: i32) -> Vec<i32> {
    (0..completions.max(0)).filter(|i| !taken.contains(i)).take(count).collect()
}

/// Whether a failed pod fails its index (upstream's `isIndexFailed`).
fn is_index_failed(job: &Job, pod: &Pod) -> bool {
    let Some(limit) = job.spec.as_ref().and_then(|s| s.backoff_limit_per_index) else { return false };
    if !is_pod_failed(pod, job) {
        return false;
    }
    let counted = match job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref()) {
        Some(policy) => match match_failure_policy(policy, pod) {
            Some(FailureAction::FailIndex) => return true,
            Some(a) => a.counts(),
            None => true,
        },
        None => true,
    };
    counted && pods::index_failure_count(pod) >= limit
}

/// What one sync knows about an Indexed Job with backoffLimitPerIndex: per index, the last
/// failed pod whose finalizer is held until its index is replaced (its failure counts travel
/// to the replacement).
fn delayed_deletion_per_index<'a>(
    job: &Job,
    pods: &[&'a Pod],
    active_indexes: &HashSet<i32>,
    succeeded: &Indexes,
    failed: &Indexes,
    now: Timestamp,
) -> HashMap<i32, &'a Pod> {
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    let mut out: HashMap<i32, &Pod> = HashMap::new();
    for p in pods.iter().copied().filter(|p| is_pod_failed(p, job)) {
        let Some(ix) = completion_index(p).filter(|i| *i < completions) else { continue };
        if succeeded.contains(&ix) || failed.contains(&ix) || active_indexes.contains(&ix) {
            continue;
        }
        let absolute = |p: &Pod| pods::index_failure_count(p) + pods::index_ignored_failure_count(p);
        match out.get(&ix) {
            Some(last)
                if !(absolute(last) <= absolute(p)
                    && backoff::finish_time(p, now) >= backoff::finish_time(last, now)) => {}
            _ => {
                out.insert(ix, p);
            }
        }
    }
    out
}

/// The failure counts a replacement for the index of `last_failed` carries.
fn next_index_failures(job: &Job, last_failed: Option<&Pod>) -> IndexFailures {
    let Some(p) = last_failed else { return IndexFailures::default() };
    let mut f = IndexFailures { failed: pods::index_failure_count(p), ignored: pods::index_ignored_failure_count(p) };
    let action =
        job.spec.as_ref().and_then(|s| s.pod_failure_policy.as_ref()).and_then(|pol| match_failure_policy(pol, p));
    if action == Some(FailureAction::Ignore) {
        f.ignored += 1;
    } else {
        f.failed += 1;
    }
    f
}

/// What the controller keeps between reconciles.
pub struct JobSync {
    client: kube::Client,
    pods: Informer<Pod>,
    expectations: Expectations<ObjectRef<Job>>,
    /// Per Job, the UIDs of pods whose finalizer it removed and the store may still show
    /// (upstream's finalizer expectations): such a pod must not be counted again.
    removing: Mutex<HashMap<ObjectRef<Job>, HashSet<String>>>,
    backoff: Mutex<HashMap<ObjectRef<Job>, backoff::Record>>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
}

/// One sync's view of the pods it counts.
struct Counted {
    uncounted_succeeded: Vec<String>,
    uncounted_failed: Vec<String>,
}

impl JobSync {
    fn seen(&self, namespace: &str, name: &str) -> Seen {
        Seen::of(self.pods.get(Some(namespace), name).as_deref())
    }

    /// The finalizer removals of `key` the store does not show yet.
    fn still_removing(&self, key: &ObjectRef<Job>, ns: &str) -> HashSet<String> {
        let mut map = self.removing.lock().unwrap_or_else(|p| p.into_inner());
        let Some(uids) = map.get_mut(key) else { return HashSet::new() };
        let shown: HashMap<String, bool> = self
            .pods
            .store()
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns))
            .filter_map(|p| Some((p.metadata.uid.clone()?, has_tracking_finalizer(p))))
            .collect();
        uids.retain(|u| shown.get(u) == Some(&true));
        let out = uids.clone();
        if uids.is_empty() {
            map.remove(key);
        }
        out
    }

    async fn reconcile(&self, obj: Arc<Job>) -> Result<Action, ReconcileError> {
        let managed_by = obj.spec.as_ref().and_then(|s| s.managed_by.as_deref());
        if managed_by.is_some_and(|m| m != MANAGED_BY) {
            return Ok(Action::await_change());
        }
        let key = ObjectRef::from_obj(&*obj);
        let mut job = (*obj).clone();
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let now = self.clock.now();
        let owned = self.claim_pods(&job).await?;
        let pods: Vec<&Pod> = owned.iter().map(|p| &**p).collect();

        if is_finished(&job) {
            // A backstop: a finished Job's pods keep no finalizer.
            let left: Vec<&Pod> = pods.iter().copied().filter(|p| has_tracking_finalizer(p)).collect();
            self.remove_finalizers(&key, &left).await.1?;
            self.backoff.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
            return Ok(Action::await_change());
        }

        let spec = job.spec.clone().unwrap_or_default();
        let indexed = is_indexed(&job);
        let completions = spec.completions;
        let comp = completions.unwrap_or(0);
        let suspended = is_suspended(&job);
        let satisfied = self.expectations.satisfied(&key, self.clock.instant(), |ns, n| self.seen(ns, n));
        let removing = self.still_removing(&key, &ns);
        let tracked =
            |p: &Pod| has_tracking_finalizer(p) && !removing.contains(p.metadata.uid.as_deref().unwrap_or(""));
        let uid_of = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();

        let mut status = job.status.clone().unwrap_or_default();
        let uncounted = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let unc_s: HashSet<String> = uncounted.succeeded.iter().flatten().cloned().collect();
        let unc_f: HashSet<String> = uncounted.failed.iter().flatten().cloned().collect();
        let active: Vec<&Pod> = pods.iter().copied().filter(|p| podutil::is_active(p)).collect();
        let mut terminating =
            pods.iter().filter(|p| p.metadata.deletion_timestamp.is_some() && !podutil::is_terminal(p)).count();
        let mut ready = active.iter().filter(|p| podutil::is_ready(p)).count();
        let new_succeeded: Vec<&Pod> = pods
            .iter()
            .copied()
            .filter(|p| tracked(p) && podutil::phase(p) == "Succeeded" && !unc_s.contains(&uid_of(p)))
            .collect();
        let new_failed: Vec<&Pod> = pods
            .iter()
            .copied()
            .filter(|p| tracked(p) && is_pod_failed(p, &job) && !unc_f.contains(&uid_of(p)))
            .collect();
        let failure_policy = spec.pod_failure_policy.as_ref();
        let action_of = |p: &Pod| failure_policy.and_then(|pol| match_failure_policy(pol, p));
        let new_counted_failures = new_failed.iter().filter(|p| action_of(p).is_none_or(|a| a.counts())).count();
        let mut succeeded = status.succeeded.unwrap_or(0) as usize + unc_s.len() + new_succeeded.len();
        let failed = status.failed.unwrap_or(0) as usize + unc_f.len() + new_counted_failures;
        if status.start_time.is_none() && !suspended {
            status.start_time = Some(Time(now));
            job.status = Some(status.clone());
        }
        let record = {
            let mut map = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
            let r = map.entry(key.clone()).or_default();
            let times = |ps: &[&Pod]| ps.iter().map(|p| backoff::finish_time(p, now)).collect::<Vec<_>>();
            *r = r.with_finished(&times(&new_succeeded), &times(&new_failed));
            r.clone()
        };

        let mut requeue: Option<Duration> = None;
        let mut finished: Option<JobCondition> = None;
        let backoff_limit = spec.backoff_limit.unwrap_or(6).max(0) as usize;
        // A condition an earlier sync reached stands: success first, as upstream orders it.
        // (A success already reached stays SuccessCriteriaMet here: pods still running then are
        // not failures; it turns into Complete below.)
        if let Some(sc) = condition(&job, "SuccessCriteriaMet") {
            finished = Some(sc.clone());
        } else if let Some(ft) = condition(&job, "FailureTarget") {
            let (r, m) = (ft.reason.clone().unwrap_or_default(), ft.message.clone().unwrap_or_default());
            finished = Some(new_condition("Failed", "True", &r, &m, now));
        } else if let Some(message) = pods.iter().filter(|p| is_pod_failed(p, &job)).find_map(|p| match action_of(p) {
            Some(FailureAction::FailJob(m)) => Some(m),
            _ => None,
        }) {
            finished = Some(new_condition("FailureTarget", "True", "PodFailurePolicy", &message, now));
        } else if failed > backoff_limit || past_backoff_limit_on_failure(&job, &pods) {
            let m = "Job has reached the specified backoff limit";
            finished = Some(new_condition("FailureTarget", "True", "BackoffLimitExceeded", m, now));
        } else if let Some(left) = deadline_left(&job, now) {
            if left.is_zero() {
                let m = "Job was active longer than specified deadline";
                finished = Some(new_condition("FailureTarget", "True", "DeadlineExceeded", m, now));
            } else {
                requeue = Some(left);
            }
        }

        let prev_succeeded_indexes = indexes::parse(status.completed_indexes.as_deref().unwrap_or(""), comp);
        let mut succeeded_indexes = prev_succeeded_indexes.clone();
        let mut failed_indexes: Option<Indexes> = None;
        let mut delayed: HashMap<i32, &Pod> = HashMap::new();
        if indexed {
            for p in pods.iter().filter(|p| tracked(p) && podutil::phase(p) == "Succeeded") {
                if let Some(i) = completion_index(p).filter(|i| *i < comp) {
                    succeeded_indexes.insert(i);
                }
            }
            succeeded = succeeded_indexes.len();
            if spec.backoff_limit_per_index.is_some() {
                let mut fi = indexes::parse(status.failed_indexes.as_deref().unwrap_or(""), comp);
                for p in pods.iter().filter(|p| is_index_failed(&job, p)) {
                    if let Some(i) = completion_index(p).filter(|i| *i < comp) {
                        fi.insert(i);
                    }
                }
                if finished.is_none() {
                    if spec.max_failed_indexes.is_some_and(|m| fi.len() > m.max(0) as usize) {
                        let m = "Job has exceeded the specified maximal number of failed indexes";
                        finished = Some(new_condition("FailureTarget", "True", "MaxFailedIndexesExceeded", m, now));
                    } else if !fi.is_empty() && fi.len() + succeeded_indexes.len() >= comp.max(0) as usize {
                        let m = "Job has failed indexes";
                        finished = Some(new_condition("FailureTarget", "True", "FailedIndexes", m, now));
                    }
                }
                let active_indexes: HashSet<i32> = active.iter().filter_map(|p| completion_index(p)).collect();
                delayed = delayed_deletion_per_index(&job, &pods, &active_indexes, &succeeded_indexes, &fi, now);
                failed_indexes = Some(fi);
            }
            if finished.is_none() {
                if let Some(m) =
                    spec.success_policy.as_ref().and_then(|sp| match_success_policy(sp, comp, &succeeded_indexes))
                {
                    finished = Some(new_condition("SuccessCriteriaMet", "True", "SuccessPolicy", &m, now));
                }
            }
        }

        let mut active_count = active.len();
        if finished.is_some() {
            let (deleted, deleted_ready) = self.delete_pods(&key, &job, &active, false).await;
            if deleted != active.len() || !satisfied {
                // Pods may remain that the store does not show yet.
                finished = None;
            }
            active_count -= deleted;
            terminating += deleted;
            ready -= deleted_ready.min(ready);
        } else {
            let mut managed = false;
            if satisfied && job.metadata.deletion_timestamp.is_none() {
                let view = Manage {
                    active: &active,
                    succeeded,
                    terminating,
                    succeeded_indexes: &succeeded_indexes,
                    failed_indexes: failed_indexes.as_ref(),
                    delayed: &delayed,
                    record: &record,
                    now,
                };
                let (n, wait) = self.manage(&key, &job, view).await?;
                active_count = n;
                requeue = min_some(requeue, wait);
                managed = true;
            }
            let complete = match completions {
                None => succeeded > 0 && active_count == 0,
                Some(c) => succeeded >= c.max(0) as usize && active_count == 0,
            };
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            if complete {
                let m = "Reached expected number of succeeded pods";
                finished = Some(new_condition("SuccessCriteriaMet", "True", "CompletionsReached", m, now));
            } else if managed {
                let reference = job.object_ref(&());
                if suspended {
                    let c = new_condition("Suspended", "True", "JobSuspended", "Job suspended", now);
                    if ensure_condition(conditions, c) {
                        self.event(&reference, EventType::Normal, "Suspended", "Suspend", "Job suspended".into()).await;
                    }
                } else {
                    let c = new_condition("Suspended", "False", "JobResumed", "Job resumed", now);
                    if ensure_condition(conditions, c) {
                        self.event(&reference, EventType::Normal, "Resumed", "Resume", "Job resumed".into()).await;
                        // activeDeadlineSeconds counts continuous activity: it starts over.
                        status.start_time = Some(Time(now));
                    }
                }
            }
            if status.conditions.as_ref().is_some_and(|c| c.is_empty()) {
                status.conditions = None;
            }
        }
        status.active = Some(active_count as i32);
        status.ready = Some(ready as i32);
        status.terminating = Some(terminating as i32);
        if record.remaining(now) > Duration::ZERO && finished.is_none() {
            requeue = min_some(requeue, Some(record.remaining(now)));
        }

        // Count the finished pods: their UIDs go to uncountedTerminatedPods first.
        let mut counted = Counted {
            uncounted_succeeded: uncounted.succeeded.clone().unwrap_or_default(),
            uncounted_failed: uncounted.failed.clone().unwrap_or_default(),
        };
        let failing = finished.as_ref().is_some_and(|c| c.type_ != "SuccessCriteriaMet");
        let mut release: Vec<&Pod> = Vec::new();
        let mut reached_max = false;
        for p in pods.iter().copied().filter(|p| tracked(p)) {
            let uid = uid_of(p);
            let considered_failed = is_pod_failed(p, &job);
            let held = spec.backoff_limit_per_index.is_some()
                && completion_index(p).and_then(|i| delayed.get(&i)).is_some_and(|d| d.metadata.uid == p.metadata.uid);
            let removable = job.metadata.deletion_timestamp.is_some()
                || finished.is_some()
                || podutil::phase(p) == "Succeeded"
                || (considered_failed && !held);
            if !removable {
                continue;
            }
            release.push(p);
            if podutil::phase(p) == "Succeeded" && !unc_f.contains(&uid) {
                if indexed {
                    if let Some(i) = completion_index(p).filter(|i| *i < comp && !prev_succeeded_indexes.contains(i)) {
                        succeeded_indexes.insert(i);
                    }
                } else if !unc_s.contains(&uid) {
                    counted.uncounted_succeeded.push(uid);
                }
            } else if (considered_failed || failing)
                && !unc_f.contains(&uid)
                && (!indexed || completion_index(p).is_some_and(|i| i < comp))
                && action_of(p).is_none_or(|a| a.counts())
            {
                counted.uncounted_failed.push(uid);
            }
            let pending = counted.uncounted_succeeded.len() + counted.uncounted_failed.len();
            if pending + succeeded_indexes.len() - prev_succeeded_indexes.len() >= MAX_UNCOUNTED {
                reached_max = true;
                break;
            }
        }
        if indexed {
            status.succeeded = Some(succeeded_indexes.len() as i32);
            status.completed_indexes = Some(indexes::format(&succeeded_indexes));
            status.failed_indexes = failed_indexes.as_ref().map(indexes::format);
        }
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods {
            succeeded: Some(counted.uncounted_succeeded),
            failed: Some(counted.uncounted_failed),
        });
        // The interim condition is written before any finalizer goes; the terminal one after.
        if let Some(c) = finished.take() {
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            finished = Some(match c.type_.as_str() {
                "FailureTarget" => {
                    conditions.push(c.clone());
                    new_condition(
                        "Failed",
                        "True",
                        c.reason.as_deref().unwrap_or(""),
                        c.message.as_deref().unwrap_or(""),
                        now,
                    )
                }
                "SuccessCriteriaMet" => {
                    if !conditions.iter().any(|x| x.type_ == "SuccessCriteriaMet") {
                        conditions.push(c.clone());
                    }
                    new_condition(
                        "Complete",
                        "True",
                        c.reason.as_deref().unwrap_or(""),
                        c.message.as_deref().unwrap_or(""),
                        now,
                    )
                }
                _ => c,
            });
        }
        job.status = Some(status);
        if job.status != obj.status {
            job = self.write_status(&job).await?;
        }

        // The finalizers go; what no longer has one moves from uncounted to the counters.
        let (removed, removal) = self.remove_finalizers(&key, &release).await;
        let with_finalizer: HashSet<String> =
            pods.iter().filter(|p| tracked(p)).map(|p| uid_of(p)).filter(|u| !removed.contains(u)).collect();
        let mut status = job.status.clone().unwrap_or_default();
        let before = status.clone();
        let mut unc = status.uncounted_terminated_pods.clone().unwrap_or_default();
        let (s_left, s_done): (Vec<String>, Vec<String>) =
            unc.succeeded.take().unwrap_or_default().into_iter().partition(|u| with_finalizer.contains(u));
        let (f_left, f_done): (Vec<String>, Vec<String>) =
            unc.failed.take().unwrap_or_default().into_iter().partition(|u| with_finalizer.contains(u));
        if !indexed {
            status.succeeded = Some(status.succeeded.unwrap_or(0) + s_done.len() as i32);
        }
        status.failed = Some(status.failed.unwrap_or(0) + f_done.len() as i32);
        let uncounted_empty = s_left.is_empty() && f_left.is_empty();
        status.uncounted_terminated_pods =
            Some(UncountedTerminatedPods { succeeded: Some(s_left), failed: Some(f_left) });
        if let Err(e) = removal {
            if status != before {
                job.status = Some(status);
                self.write_status(&job).await?;
            }
            return Err(e);
        }
        let mut enacted = None;
        if let Some(c) = finished.filter(|_| !reached_max && uncounted_empty && terminating == 0) {
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            ensure_condition(conditions, c.clone());
            if c.type_ == "Complete" {
                status.completion_time = c.last_transition_time.clone();
            }
            enacted = Some(c);
        }
        if status != before {
            job.status = Some(status);
            job = self.write_status(&job).await?;
        }
        if let Some(c) = enacted {
            self.record_finished(&job, &c).await;
            return Ok(Action::await_change());
        }
        if reached_max {
            return Ok(Action::requeue(Duration::from_millis(100)));
        }
        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
    }

    async fn record_finished(&self, job: &Job, c: &JobCondition) {
        let reference = job.object_ref(&());
        if c.type_ == "Complete" {
            let spec = job.spec.as_ref();
            let succeeded = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
            if spec.and_then(|s| s.completions).is_some_and(|c| succeeded > c) {
                let m = "Too many succeeded pods running after completion count reached";
                self.event(&reference, EventType::Warning, "TooManySucceededPods", "Complete", m.into()).await;
            }
            self.event(&reference, EventType::Normal, "Completed", "Complete", "Job completed".into()).await;
        } else {
            let reason = c.reason.clone().unwrap_or_default();
            let message = c.message.clone().unwrap_or_default();
            self.event(&reference, EventType::Warning, &reason, "Fail", message).await;
        }
    }

    async fn write_status(&self, job: &Job) -> Result<Job, ReconcileError> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), job.metadata.namespace.as_deref().unwrap_or(""));
        let name = job.metadata.name.as_deref().unwrap_or("");
        Ok(api.replace_status(name, &PostParams::default(), job).await?)
    }

    /// Creates, deletes or waits so that the right number of pods run (upstream's
    /// `manageJob`). The active count after it, and when to look again.
    async fn manage(
        &self,
        key: &ObjectRef<Job>,
        job: &Job,
        v: Manage<'_>,
    ) -> Result<(usize, Option<Duration>), ReconcileError> {
        let spec = job.spec.clone().unwrap_or_default();
        let active = v.active.len();
        if is_suspended(job) {
            let (deleted, _) = self.delete_pods(key, job, v.active, true).await;
            return Ok((active - deleted, None));
        }
        let parallelism = spec.parallelism.unwrap_or(1).max(0) as usize;
        let want = match spec.completions {
            None if v.succeeded > 0 => active,
            None => parallelism,
            Some(c) => (c.max(0) as usize).saturating_sub(v.succeeded).min(parallelism),
        };
        let doomed = pods_for_removal(job, v.active, active.saturating_sub(want), v.succeeded_indexes, v.now);
        if !doomed.is_empty() {
            let (deleted, _) = self.delete_pods(key, job, &doomed, true).await;
            return Ok((active - deleted, None));
        }
        let terminating = if only_replace_failed(job) { v.terminating } else { 0 };
        if active + terminating >= want {
            return Ok((active, None));
        }
        let wait = v.record.remaining(v.now);
        if !wait.is_zero() {
            return Ok((active, Some(wait)));
        }
        let mut count = (want - terminating - active).min(MAX_POD_CREATE_DELETE);
        let mut plan: Vec<(Option<i32>, Option<IndexFailures>)> = Vec::new();
        let mut requeue = None;
        if is_indexed(job) {
            let mut taken: HashSet<i32> = v.active.iter().filter_map(|p| completion_index(p)).collect();
            taken.extend(v.succeeded_indexes.iter().copied());
            taken.extend(v.failed_indexes.into_iter().flatten().copied());
            // Indexes still backing off after a failure (backoffLimitPerIndex) wait.
            for (i, p) in v.delayed {
                let failures = next_index_failures(job, Some(p));
                let left = backoff::delay_after(failures.failed as u32, backoff::finish_time(p, v.now), v.now);
                if !left.is_zero() {
                    taken.insert(*i);
                    requeue = min_some(requeue, Some(left));
                }
            }
            let with_per_index = spec.backoff_limit_per_index.is_some();
            for i in first_pending_indexes(&taken, count, spec.completions.unwrap_or(0)) {
                let failures = with_per_index.then(|| next_index_failures(job, v.delayed.get(&i).copied()));
                plan.push((Some(i), failures));
            }
            count = plan.len();
        } else {
            plan = vec![(None, None); count];
        }
        let made = self.create_pods(key, job, &plan).await;
        let active = active + made.created;
        if let Some(f) = made.failure {
            return Err(ReconcileError::Other(f));
        }
        debug_assert!(made.created <= count);
        Ok((active, requeue))
    }

    /// Creates the planned pods in upstream's slow-start batches (1, 2, 4, ...), stopping
    /// after a batch with a failure.
    async fn create_pods(
        &self,
        key: &ObjectRef<Job>,
        job: &Job,
        plan: &[(Option<i32>, Option<IndexFailures>)],
    ) -> Created {
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let owner = runtime::owner::controller_ref(job);
        let reference = job.object_ref(&());
        let mut out = Created { created: 0, failure: None };
        let mut rest = plan;
        let mut batch = 1;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            rest = later;
            batch *= 2;
            let pp = PostParams::default();
            let results = join_all(now.iter().map(|(index, failures)| {
                let pod = pods::pod_for(job, owner.clone(), *index, *failures);
                let (api, pp) = (api.clone(), &pp);
                async move { api.create(pp, &pod).await }
            }))
            .await;
            for r in results {
                match r {
                    Ok(pod) => {
                        out.created += 1;
                        let name = pod.metadata.name.clone().unwrap_or_default();
                        let uid = pod.metadata.uid.clone().unwrap_or_default();
                        let w = Written { namespace: ns.clone(), name: name.clone(), uid };
                        self.expectations.created(key, w, self.clock.instant());
                        let note = format!("Created pod: {name}");
                        self.event(&reference, EventType::Normal, "SuccessfulCreate", "Create", note).await;
                    }
                    Err(e) => {
                        let message = match &e {
                            kube::Error::Api(s) => s.message.clone(),
                            other => other.to_string(),
                        };
                        let note = format!("Error creating: {message}");
                        self.event(&reference, EventType::Warning, "FailedCreate", "Create", note).await;
                        out.failure.get_or_insert(message);
                    }
                }
            }
            if out.failure.is_some() {
                break;
            }
        }
        out
    }

    /// Deletes pods; with `uncount`, their finalizer goes first so that they are not
    /// counted as failures (a suspended Job's, or surplus pods). The number deleted, and
    /// how many of those were ready.
    async fn delete_pods(&self, key: &ObjectRef<Job>, job: &Job, doomed: &[&Pod], uncount: bool) -> (usize, usize) {
        if uncount {
            let with: Vec<&Pod> = doomed.iter().copied().filter(|p| has_tracking_finalizer(p)).collect();
            if self.remove_finalizers(key, &with).await.1.is_err() {
                return (0, 0);
            }
        }
        let reference = job.object_ref(&());
        let results = join_all(doomed.iter().map(|p| async move {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), p.metadata.namespace.as_deref().unwrap_or(""));
            (p, api.delete(p.metadata.name.as_deref().unwrap_or(""), &DeleteParams::background()).await)
        }))
        .await;
        let (mut deleted, mut ready) = (0, 0);
        for (p, r) in results {
            let name = p.metadata.name.clone().unwrap_or_default();
            match r {
                Ok(_) => {
                    deleted += 1;
                    ready += usize::from(podutil::is_ready(p));
                    let w = Written {
                        namespace: p.metadata.namespace.clone().unwrap_or_default(),
                        name: name.clone(),
                        uid: p.metadata.uid.clone().unwrap_or_default(),
                    };
                    self.expectations.deleted(key, w, self.clock.instant());
                    let note = format!("Deleted pod: {name}");
                    self.event(&reference, EventType::Normal, "SuccessfulDelete", "Delete", note).await;
                }
                Err(e) if is_not_found(&e) => deleted += 1,
                Err(e) => {
                    let note = format!("Error deleting: {e}");
                    self.event(&reference, EventType::Warning, "FailedDelete", "Delete", note).await;
                }
            }
        }
        (deleted, ready)
    }

    /// Removes the tracking finalizer from `pods` (guarded by their UID), remembering each
    /// removal until the store shows it. The UIDs done (or gone), and the first error.
    async fn remove_finalizers(
        &self,
        key: &ObjectRef<Job>,
        pods: &[&Pod],
    ) -> (HashSet<String>, Result<(), ReconcileError>) {
        let results = join_all(pods.iter().map(|p| remove_finalizer(&self.client, p))).await;
        let mut done = HashSet::new();
        let mut err = Ok(());
        for (p, r) in pods.iter().zip(results) {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            match r {
                Ok(()) => {
                    done.insert(uid);
                }
                Err(e) => {
                    if err.is_ok() {
                        err = Err(e);
                    }
                }
            }
        }
        if !done.is_empty() {
            let mut map = self.removing.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().extend(done.iter().cloned());
        }
        (done, err)
    }

    /// The Job's pods: its own that still match, and orphans it adopts; those that stopped
    /// matching are released, their finalizer removed.
    async fn claim_pods(&self, job: &Job) -> Result<Vec<Arc<Pod>>, ReconcileError> {
        let ns = job.metadata.namespace.clone().unwrap_or_default();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let deleting = job.metadata.deletion_timestamp.is_some();
        let selector = selector_of(job);
        let candidates: Vec<Arc<Pod>> =
            self.pods.store().state().into_iter().filter(|p| p.metadata.namespace.as_deref() == Some(&ns)).collect();
        let owner = runtime::owner::controller_ref(job);
        let mut mine = Vec::new();
        let mut can_adopt = None;
        for c in claim(&uid, deleting, selector.as_ref(), candidates) {
            match c {
                Claim::Keep(p) => mine.push(p),
                Claim::Adopt(p) => {
                    if can_adopt.is_none() {
                        can_adopt = Some(self.can_adopt(job).await?);
                    }
                    if can_adopt == Some(true) {
                        let mut refs = p.metadata.owner_references.clone().unwrap_or_default();
                        refs.push(owner.clone());
                        if self.patch_owners(&p, refs, false).await? {
                            mine.push(p);
                        }
                    }
                }
                Claim::Release(p) => {
                    let refs: Vec<OwnerReference> =
                        p.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
                    self.patch_owners(&p, refs, true).await?;
                }
            }
        }
        Ok(mine)
    }

    async fn can_adopt(&self, job: &Job) -> Result<bool, ReconcileError> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), job.metadata.namespace.as_deref().unwrap_or(""));
        match api.get(job.metadata.name.as_deref().unwrap_or("")).await {
            Ok(fresh) => Ok(fresh.metadata.uid == job.metadata.uid && fresh.metadata.deletion_timestamp.is_none()),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn patch_owners(&self, pod: &Pod, refs: Vec<OwnerReference>, release: bool) -> Result<bool, ReconcileError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or(""));
        let mut meta = json!({
            "ownerReferences": refs,
            "uid": pod.metadata.uid,
            "resourceVersion": pod.metadata.resource_version,
        });
        if release {
            let left: Vec<&String> =
                pod.metadata.finalizers.iter().flatten().filter(|f| *f != TRACKING_FINALIZER).collect();
            meta["finalizers"] = json!(left);
        }
        let name = pod.metadata.name.as_deref().unwrap_or("");
        match api.patch(name, &PatchParams::default(), &Patch::Merge(json!({ "metadata": meta }))).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn event(&self, reference: &ObjectReference, type_: EventType, reason: &str, action: &str, note: String) {
        crate::controllers::runtime::publish(&self.recorder, reference, type_, reason, action, note).await;
    }
}

/// What [`JobSync::manage`] works from.
struct Manage<'a> {
    active: &'a [&'a Pod],
    succeeded: usize,
    terminating: usize,
    succeeded_indexes: &'a Indexes,
    failed_indexes: Option<&'a Indexes>,
    delayed: &'a HashMap<i32, &'a Pod>,
    record: &'a backoff::Record,
    now: Timestamp,
}

struct Created {
    created: usize,
    failure: Option<String>,
}

fn min_some(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Removes the tracking finalizer from one pod, guarded by its UID; a pod that is gone, or
/// has no such finalizer, is done.
async fn remove_finalizer(client: &kube::Client, pod: &Pod) -> Result<(), ReconcileError> {
    let api: Api<Pod> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or(""));
    let patch = json!({"metadata": {
        "$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER],
        "uid": pod.metadata.uid,
    }});
    match api.patch(pod.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Strategic(patch)).await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) || runtime::is_conflict(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Pods with the tracking finalizer whose Job is gone (deleted before it counted them, or
/// never theirs) would never be freed: their finalizer is removed, as upstream's orphan
/// pod queue does.
async fn release_orphans(sync: Arc<JobSync>, jobs: Informer<Job>, stop: runtime::Stop) {
    let ready = async {
        crate::controllers::runtime::informer::ready(jobs.store()).await;
        crate::controllers::runtime::informer::ready(sync.pods.store()).await;
    };
    if !crate::controllers::runtime::informer::ready_or_stop(&stop, ready).await {
        return;
    }
    // A deleted Job, or a relist, means a scan of every pod.
    let job_notices = jobs.subscribe().filter_map(|n| async move {
        match n {
            Notice::Changed(_) => None,
            Notice::Deleted(_) | Notice::Resynced => Some(None),
        }
    });
    let notices = futures::stream::select(sync.pods.subscribe().map(Some), job_notices).take_until(stop.wait());
    let mut notices = std::pin::pin!(notices);
    let mut first = true;
    loop {
        let candidates: Vec<Arc<Pod>> = if first {
            first = false;
            sync.pods.store().state()
        } else {
            match notices.next().await {
                None => return,
                Some(Some(Notice::Changed(p))) => vec![p],
                Some(Some(Notice::Deleted(_))) => continue,
                Some(Some(Notice::Resynced)) | Some(None) => sync.pods.store().state(),
            }
        };
        for p in candidates.iter().filter(|p| has_tracking_finalizer(p)) {
            if !is_orphan(p, &jobs) {
                continue;
            }
            // The store may lag: the Job is looked up before the finalizer goes.
            if let Some(r) = controller_trigger::<Job>(&p.metadata) {
                let api: Api<Job> = Api::namespaced(sync.client.clone(), r.namespace.as_deref().unwrap_or(""));
                match api.get_opt(&r.name).await {
                    Ok(Some(j))
                        if controller_of(&p.metadata).is_some_and(|c| Some(&c.uid) == j.metadata.uid.as_ref()) =>
                    {
                        continue
                    }
                    Ok(_) => {}
                    Err(_) => continue,
                }
            }
            if let Err(e) = remove_finalizer(&sync.client, p).await {
                tracing::debug!(controller = "job", error = %e, "cannot free an orphan pod");
            }
        }
    }
}

/// A pod whose controller is not a Job this store holds (by UID), or that has no controller.
fn is_orphan(pod: &Pod, jobs: &Informer<Job>) -> bool {
    let Some(r) = controller_of(&pod.metadata) else { return true };
    if !refers_to::<Job>(r) {
        return false;
    }
    match jobs.get(pod.metadata.namespace.as_deref(), &r.name) {
        Some(j) => j.metadata.uid.as_deref() != Some(r.uid.as_str()),
        None => true,
    }
}

#[cfg(test)]
mod tests;
