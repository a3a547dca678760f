//! One sync of a Deployment, with no I/O: from the deployment and the ReplicaSets it owns,
//! what to create, scale, delete and report (upstream's `syncDeployment` with its rolling,
//! recreate, scaling and status steps). The controller applies the [`Step`]; tests run it
//! against in-memory ReplicaSets.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::jiff::Timestamp;

use super::util::*;
use crate::controllers::runtime::owner::controller_ref;

/// A ReplicaSet scaled or re-annotated, with its replicas before.
#[derive(Clone, Debug)]
pub struct Scaled {
    pub rs: ReplicaSet,
    pub from: i32,
}

/// What one sync decided.
#[derive(Clone, Debug, Default)]
pub struct Step {
    /// The new ReplicaSet to create (its replicas set).
    pub create: Option<ReplicaSet>,
    /// Existing ReplicaSets to write (replicas, annotations or minReadySeconds changed).
    pub update: Vec<Scaled>,
    /// Old ReplicaSets beyond revisionHistoryLimit.
    pub delete: Vec<ReplicaSet>,
    /// The deployment's revision annotation, if it changes.
    pub revision: Option<String>,
    /// The status, if it changes.
    pub status: Option<DeploymentStatus>,
    /// Warnings to record on the deployment: (reason, message).
    pub warnings: Vec<(String, String)>,
    /// When to look again without a change (a progress deadline).
    pub requeue: Option<Duration>,
}

/// The inputs of one sync.
pub struct Input<'a> {
    pub d: &'a Deployment,
    /// The ReplicaSets the deployment controls.
    pub owned: Vec<ReplicaSet>,
    /// Whether pods of these (old) ReplicaSets are still running, by ReplicaSet UID: Recreate
    /// waits for them.
    pub old_pods_running: &'a dyn Fn(&[&ReplicaSet]) -> bool,
    pub now: Timestamp,
}

/// The sync's working state: the ReplicaSets as they will be once the step is applied.
struct Sync<'a> {
    d: &'a Deployment,
    now: Timestamp,
    /// Sorted oldest first; `new` indexes the one whose template is the deployment's.
    rss: Vec<ReplicaSet>,
    from: Vec<Option<i32>>,
    new: Option<usize>,
    creating: bool,
    status: DeploymentStatus,
    revision: Option<String>,
    warnings: Vec<(String, String)>,
    delete: Vec<ReplicaSet>,
}

pub fn sync(input: Input<'_>) -> Step {
    let d = input.d;
    let mut rss = input.owned;
    rss.sort_by(|a, b| {
        let t = |r: &ReplicaSet| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
        t(a).cmp(&t(b)).then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let n = rss.len();
    let mut s = Sync {
        d,
        now: input.now,
        rss,
        from: vec![None; n],
        new: None,
        creating: false,
        status: d.status.clone().unwrap_or_default(),
        revision: None,
        warnings: Vec::new(),
        delete: Vec::new(),
    };
    let selector_empty = d.spec.as_ref().is_none_or(|sp| {
        sp.selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && sp.selector.match_expressions.as_ref().is_none_or(|m| m.is_empty())
    });
    let mut requeue = None;
    if selector_empty {
        s.warnings.push((
            "SelectingAll".into(),
            "This deployment is selecting all pods. A non-empty selector is required.".into(),
        ));
        s.status.observed_generation = d.metadata.generation;
    } else if d.metadata.deletion_timestamp.is_some() {
        s.find_new(false);
        s.status = s.calculate_status();
    } else {
        s.check_paused();
        let paused = d.spec.as_ref().and_then(|sp| sp.paused).unwrap_or(false);
        if paused || s.is_scaling_event() {
            s.find_new(false);
            s.scale();
            if paused {
                s.cleanup();
            }
            s.status = s.calculate_status();
        } else if is_recreate(d) {
            s.recreate(input.old_pods_running);
            requeue = s.rollout_status();
        } else {
            s.rolling();
            requeue = s.rollout_status();
        }
    }
    s.into_step(requeue)
}

impl Sync<'_> {
    fn replicas(&self) -> i32 {
        replicas(self.d)
    }

    fn set_scale(&mut self, i: usize, n: i32) {
        let desired = self.replicas();
        let max = desired + max_surge(self.d);
        let rs = &mut self.rss[i];
        let before = rs_replicas(rs);
        let size = before != n;
        let annotations = replicas_annotations_need_update(rs, desired, max);
        if !size && !annotations {
            return;
        }
        if self.from[i].is_none() {
            self.from[i] = Some(before);
        }
        set_rs_replicas(rs, n);
        set_replicas_annotations(rs, desired, max);
    }

    fn old(&self) -> Vec<usize> {
        (0..self.rss.len()).filter(|i| Some(*i) != self.new).collect()
    }

    fn template(&self) -> k8s_openapi::api::core::v1::PodTemplateSpec {
        self.d.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default()
    }

    /// Finds the new ReplicaSet (the oldest whose template is the deployment's), gives it
    /// the next revision, and with `create` makes it if there is none (upstream's
    /// `getAllReplicaSetsAndSyncRevision`).
    fn find_new(&mut self, create: bool) {
        let template = self.template();
        self.new = self.rss.iter().position(|rs| {
            rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, &template))
        });
        let max_old = self.old().iter().map(|i| revision(&self.rss[*i])).max().unwrap_or(0);
        let new_revision = max_old + 1;
        let d = self.d;
        if let Some(i) = self.new {
            let rs = &mut self.rss[i];
            let mut changed = set_new_rs_annotations(d, rs, new_revision, true);
            let min_ready = d.spec.as_ref().and_then(|s| s.min_ready_seconds);
            let spec = rs.spec.get_or_insert_with(Default::default);
            if spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0) {
                spec.min_ready_seconds = min_ready;
                changed = true;
            }
            if changed && self.from[i].is_none() {
                self.from[i] = Some(rs_replicas(rs));
            }
            let rev = annotation(&rs.metadata, REVISION).map(String::from);
            let name = rs.metadata.name.clone().unwrap_or_default();
            self.set_revision(rev);
            if has_progress_deadline(d) && condition(&self.status, "Progressing").is_none() {
                let c = new_condition(
                    "Progressing",
                    "True",
                    "FoundNewReplicaSet",
                    format!("Found new replica set {name:?}"),
                    self.now,
                );
                set_condition(&mut self.status, c);
            }
            return;
        }
        if !create {
            return;
        }
        let collisions = self.status.collision_count;
        let hash = template_hash(&template, collisions);
        let mut template = template;
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector: LabelSelector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
        selector.match_labels.get_or_insert_with(BTreeMap::new).insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let name = format!("{}-{hash}", d.metadata.name.as_deref().unwrap_or(""));
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: d.metadata.namespace.clone(),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                owner_references: Some(vec![controller_ref(d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: d.spec.as_ref().and_then(|s| s.min_ready_seconds),
                selector,
                template: Some(template),
            }),
            status: None,
        };
        set_new_rs_annotations(d, &mut rs, new_revision, false);
        self.rss.push(rs);
        self.from.push(None);
        let i = self.rss.len() - 1;
        self.new = Some(i);
        self.creating = true;
        let n = self.new_rs_replicas();
        set_rs_replicas(&mut self.rss[i], n);
        self.set_revision(Some(new_revision.to_string()));
        if has_progress_deadline(d) {
            let c = new_condition(
                "Progressing",
                "True",
                "NewReplicaSetCreated",
                format!("Created new replica set {name:?}"),
                self.now,
            );
            set_condition(&mut self.status, c);
        }
    }

    fn set_revision(&mut self, rev: Option<String>) {
        if let Some(rev) = rev {
            if annotation(&self.d.metadata, REVISION) != Some(rev.as_str()) {
                self.revision = Some(rev);
            }
        }
    }

    /// How many replicas the new ReplicaSet should have now (upstream's `NewRSNewReplicas`).
    fn new_rs_replicas(&self) -> i32 {
        let Some(i) = self.new else { return 0 };
        let desired = self.replicas();
        if is_recreate(self.d) {
            return desired;
        }
        let current = rs_replicas(&self.rss[i]);
        let total: i32 = self.rss.iter().map(rs_replicas).sum();
        let max_total = desired + max_surge(self.d);
        if total >= max_total {
            return current;
        }
        current + (max_total - total).min(desired - current).max(0)
    }

    fn active(&self) -> Vec<usize> {
        (0..self.rss.len()).filter(|i| rs_replicas(&self.rss[*i]) > 0).collect()
    }

    /// Whether some active ReplicaSet was sized for another replica count: a scale, not a
    /// rollout.
    fn is_scaling_event(&mut self) -> bool {
        self.find_new(false);
        let desired = self.replicas();
        self.active().iter().any(|i| desired_replicas_annotation(&self.rss[*i]).is_some_and(|n| n != desired))
    }

    /// Scales to the deployment's replicas: all to the one active set, or, during a rolling
    /// update, proportionally to each set's size (upstream's `scale`).
    fn scale(&mut self) {
        let desired = self.replicas();
        let active = self.active();
        let only = match active.len() {
            0 => self.new.or_else(|| self.rss.len().checked_sub(1)),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = only {
            self.set_scale(i, desired);
            return;
        }
        if let Some(n) = self.new {
            let rs = &self.rss[n];
            if rs_replicas(rs) == desired
                && desired_replicas_annotation(rs) == Some(desired)
                && rs_available(rs) == desired
            {
                for i in self.old() {
                    if rs_replicas(&self.rss[i]) > 0 {
                        self.set_scale(i, 0);
                    }
                }
                return;
            }
        }
        if is_recreate(self.d) {
            return;
        }
        let surge = max_surge(self.d);
        let total: i32 = active.iter().map(|i| rs_replicas(&self.rss[*i])).sum();
        let allowed = if desired > 0 { desired + surge } else { 0 };
        let to_add = allowed - total;
        let mut order = active.clone();
        let created = |r: &ReplicaSet| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
        order.sort_by(|a, b| {
            let (ra, rb) = (&self.rss[*a], &self.rss[*b]);
            let by_size = rs_replicas(rb).cmp(&rs_replicas(ra));
            // Growing: the larger and newer first; shrinking: the larger and older first.
            let by_age = if to_add > 0 { created(rb).cmp(&created(ra)) } else { created(ra).cmp(&created(rb)) };
            by_size.then(by_age).then_with(|| ra.metadata.name.cmp(&rb.metadata.name))
        });
        let mut added = 0;
        let mut sizes: Vec<(usize, i32)> = Vec::new();
        for &i in &order {
            let rs = &self.rss[i];
            let proportion = if to_add != 0 { self.proportion(rs, to_add, added) } else { 0 };
            sizes.push((i, rs_replicas(rs) + proportion));
            added += proportion;
        }
        if let Some(first) = sizes.first_mut() {
            if to_add != 0 {
                first.1 = (first.1 + to_add - added).max(0);
            }
        }
        for (i, n) in sizes {
            self.set_scale(i, n);
        }
    }

    fn proportion(&self, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
        if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
            return 0;
        }
        let fraction = self.fraction(rs);
        let allowed = to_add - added;
        if to_add > 0 {
            fraction.min(allowed)
        } else {
            fraction.max(allowed)
        }
    }

    fn fraction(&self, rs: &ReplicaSet) -> i32 {
        let desired = self.replicas();
        if desired == 0 {
            return -rs_replicas(rs);
        }
        let target = desired + max_surge(self.d);
        let annotated =
            max_replicas_annotation(rs).unwrap_or_else(|| self.d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
        if annotated == 0 {
            return 0;
        }
        let size = f64::from(rs_replicas(rs)) * f64::from(target) / f64::from(annotated);
        size.round() as i32 - rs_replicas(rs)
    }

    fn rolling(&mut self) {
        self.find_new(true);
        if self.reconcile_new() {
            return;
        }
        if self.reconcile_old() {
            return;
        }
        let status = self.calculate_status();
        if deployment_complete(self.d, &status) {
            self.cleanup();
        }
    }

    /// Grows or shrinks the new ReplicaSet toward the deployment's replicas within maxSurge.
    fn reconcile_new(&mut self) -> bool {
        let Some(i) = self.new else { return false };
        let desired = self.replicas();
        let current = rs_replicas(&self.rss[i]);
        if current == desired {
            return false;
        }
        let n = if current > desired { desired } else { self.new_rs_replicas() };
        self.set_scale(i, n);
        current != n
    }

    /// Shrinks old ReplicaSets while at least replicas - maxUnavailable stay available:
    /// first their unhealthy pods, then healthy ones, oldest sets first.
    fn reconcile_old(&mut self) -> bool {
        let old: Vec<usize> = self.old().into_iter().filter(|i| rs_replicas(&self.rss[*i]) > 0).collect();
        let old_count: i32 = old.iter().map(|i| rs_replicas(&self.rss[*i])).sum();
        if old_count == 0 {
            return false;
        }
        let all: i32 = self.rss.iter().map(rs_replicas).sum();
        let min_available = self.replicas() - max_unavailable(self.d);
        let new_unavailable = self.new.map_or(0, |i| rs_replicas(&self.rss[i]) - rs_available(&self.rss[i]));
        let max_scaled_down = all - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        // Unhealthy replicas first: they count against nothing.
        let mut cleaned = 0;
        for &i in &old {
            if cleaned >= max_scaled_down {
                break;
            }
            let rs = &self.rss[i];
            let (n, available) = (rs_replicas(rs), rs_available(rs));
            if n == 0 || n <= available {
                continue;
            }
            let down = (max_scaled_down - cleaned).min(n - available);
            self.set_scale(i, n - down);
            cleaned += down;
        }
        // Then healthy ones, as long as enough stay available.
        let available: i32 = self.rss.iter().map(rs_available).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &old {
                if scaled >= total {
                    break;
                }
                let n = rs_replicas(&self.rss[i]);
                if n == 0 {
                    continue;
                }
                let down = n.min(total - scaled);
                self.set_scale(i, n - down);
                scaled += down;
            }
        }
        cleaned + scaled > 0
    }

    fn recreate(&mut self, old_pods_running: &dyn Fn(&[&ReplicaSet]) -> bool) {
        self.find_new(false);
        let mut scaled = false;
        for i in self.old() {
            if rs_replicas(&self.rss[i]) > 0 {
                self.set_scale(i, 0);
                scaled = true;
            }
        }
        if scaled {
            return;
        }
        let old: Vec<&ReplicaSet> = self.old().into_iter().map(|i| &self.rss[i]).collect();
        if old_pods_running(&old) {
            return;
        }
        if self.new.is_none() {
            self.find_new(true);
        }
        if let Some(i) = self.new {
            let desired = self.replicas();
            self.set_scale(i, desired);
        }
        let status = self.calculate_status();
        if deployment_complete(self.d, &status) {
            self.cleanup();
        }
    }

    /// Deletes the oldest old ReplicaSets beyond revisionHistoryLimit that have no pods.
    fn cleanup(&mut self) {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else { return };
        let mut cleanable: Vec<usize> =
            self.old().into_iter().filter(|i| self.rss[*i].metadata.deletion_timestamp.is_none()).collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return;
        }
        cleanable
            .sort_by_key(|i| (revision(&self.rss[*i]), self.rss[*i].metadata.creation_timestamp.as_ref().map(|t| t.0)));
        for &i in cleanable.iter().take(excess as usize) {
            let rs = &self.rss[i];
            let st = rs.status.clone().unwrap_or_default();
            if st.replicas != 0 || rs_replicas(rs) != 0 || rs.metadata.generation > st.observed_generation {
                continue;
            }
            self.delete.push(rs.clone());
        }
    }

    /// The status the ReplicaSets give, with the Available condition (upstream's
    /// `calculateStatus`).
    fn calculate_status(&self) -> DeploymentStatus {
        let sum = |f: &dyn Fn(&ReplicaSet) -> i32| -> i32 { self.rss.iter().map(f).sum() };
        let st = |rs: &ReplicaSet| rs.status.clone().unwrap_or_default();
        let available = sum(&|rs| rs_available(rs));
        let total = sum(&|rs| rs_replicas(rs));
        let mut s = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: Some(sum(&|rs| st(rs).replicas)),
            updated_replicas: Some(self.new.map_or(0, |i| st(&self.rss[i]).replicas)),
            ready_replicas: Some(sum(&|rs| st(rs).ready_replicas.unwrap_or(0))),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            collision_count: self.status.collision_count,
            conditions: self.status.conditions.clone(),
            terminating_replicas: None,
        };
        if available >= self.replicas() - max_unavailable(self.d) {
            let c = new_condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                self.now,
            );
            set_condition(&mut s, c);
        } else {
            let c = new_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                self.now,
            );
            set_condition(&mut s, c);
        }
        s
    }

    /// The status with the Progressing and ReplicaFailure conditions; when to look again for
    /// a progress deadline (upstream's `syncRolloutStatus`).
    fn rollout_status(&mut self) -> Option<Duration> {
        let mut s = self.calculate_status();
        let d = self.d;
        if !has_progress_deadline(d) {
            remove_condition(&mut s, "Progressing");
        }
        let current = condition(&s, "Progressing").cloned();
        let complete = s.replicas == s.updated_replicas
            && current.as_ref().is_some_and(|c| c.reason.as_deref() == Some("NewReplicaSetAvailable"));
        let name = self.new.map(|i| self.rss[i].metadata.name.clone().unwrap_or_default());
        if has_progress_deadline(d) && !complete {
            if deployment_complete(d, &s) {
                let msg = match &name {
                    Some(n) => format!("ReplicaSet {n:?} has successfully progressed."),
                    None => "Deployment has successfully progressed.".into(),
                };
                set_condition(&mut s, new_condition("Progressing", "True", "NewReplicaSetAvailable", msg, self.now));
            } else if deployment_progressing(d, &s) {
                let msg = match &name {
                    Some(n) => format!("ReplicaSet {n:?} is progressing."),
                    None => "Deployment is progressing.".into(),
                };
                let mut c = new_condition("Progressing", "True", "ReplicaSetUpdated", msg, self.now);
                if let Some(cur) = current.as_ref().filter(|c| c.status == "True") {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut s, "Progressing");
                set_condition(&mut s, c);
            } else if deployment_timed_out(d, &s, self.now) {
                let msg = match &name {
                    Some(n) => format!("ReplicaSet {n:?} has timed out progressing."),
                    None => "Deployment has timed out progressing.".into(),
                };
                set_condition(&mut s, new_condition("Progressing", "False", "ProgressDeadlineExceeded", msg, self.now));
            }
        }
        // A ReplicaSet that cannot make pods: the new one first.
        let mut failing = self.new.into_iter().chain(self.old());
        let failure = failing.find_map(|i| {
            self.rss[i].status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == "ReplicaFailure").cloned()
        });
        match failure {
            Some(f) => set_condition(
                &mut s,
                k8s_openapi::api::apps::v1::DeploymentCondition {
                    type_: "ReplicaFailure".into(),
                    status: f.status,
                    reason: f.reason,
                    message: f.message,
                    last_update_time: f.last_transition_time.clone(),
                    last_transition_time: f.last_transition_time,
                },
            ),
            None => remove_condition(&mut s, "ReplicaFailure"),
        }
        self.status = s;
        // Look again when the deadline would pass, if nothing else happens first.
        let c = condition(&self.status, "Progressing")?;
        if !has_progress_deadline(d)
            || matches!(c.reason.as_deref(), Some("NewReplicaSetAvailable" | "ProgressDeadlineExceeded"))
        {
            return None;
        }
        let deadline = i64::from(d.spec.as_ref()?.progress_deadline_seconds?);
        let at = c.last_update_time.as_ref()?.0.as_second() + deadline;
        let after = at - self.now.as_second();
        Some(Duration::from_secs(after.max(1) as u64))
    }

    /// Sets or clears the Progressing condition's paused reasons.
    fn check_paused(&mut self) {
        if !has_progress_deadline(self.d) {
            return;
        }
        let paused = self.d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false);
        let reason = condition(&self.status, "Progressing").and_then(|c| c.reason.clone());
        if paused && reason.as_deref() != Some("DeploymentPaused") {
            let c =
                new_condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into(), self.now);
            set_condition(&mut self.status, c);
        } else if !paused && reason.as_deref() == Some("DeploymentPaused") {
            let c =
                new_condition("Progressing", "Unknown", "DeploymentResumed", "Deployment is resumed".into(), self.now);
            set_condition(&mut self.status, c);
        }
    }

    fn into_step(self, requeue: Option<Duration>) -> Step {
        let mut step = Step {
            revision: self.revision,
            warnings: self.warnings,
            delete: self.delete,
            requeue,
            ..Default::default()
        };
        for (i, rs) in self.rss.into_iter().enumerate() {
            if self.creating && Some(i) == self.new {
                step.create = Some(rs);
            } else if let Some(from) = self.from[i] {
                step.update.push(Scaled { rs, from });
            }
        }
        if status_differs(self.d.status.as_ref(), &self.status) {
            step.status = Some(self.status);
        }
        step
    }
}

/// Whether the status changed in anything but the conditions' times.
fn status_differs(old: Option<&DeploymentStatus>, new: &DeploymentStatus) -> bool {
    old != Some(new)
}
