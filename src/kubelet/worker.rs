//! One pod's worker: brings what runs on the node in line with the pod (sandbox, volumes,
//! init containers one by one, app containers with their restart policy and back-off),
//! reports the status, and on deletion stops everything within the grace period and
//! completes the delete. Each call to [`Worker::sync`] is one level-triggered pass; the
//! caller runs it on every change of the pod and on the interval it returns.
//!
//! Probes run as a step of `sync` (see `prober`); lifecycle hooks and the rest of the pod
//! API slot in as more steps.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, PodStatus, Service};

use super::backend::{Backend, ContainerRecord, CreateContainer, CreateError};
use super::backoff::Backoff;
use super::prober::{self, Kind, Outcome, Tracker};
use super::status::{pod_status, Attempt, AttemptState, ContainerView, PodView, Terminated};
use super::volumes::{self, Sources};
use crate::apiserver::status::ApiError;
use crate::domain::duration::go_duration_std;
use crate::domain::time::now_rfc3339;

/// The API calls a worker makes, behind a trait so the worker is tested without a server.
/// Failures are the API server's own errors (a status code and reason to match on); the
/// worker logs their message.
#[async_trait::async_trait]
pub trait PodApi: Send + Sync {
    /// Writes `status` (as a merge patch of `pods/status`: fields it leaves out stay).
    async fn patch_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ApiError>;
    /// The kubelet's final delete (grace period 0, uid precondition); a pod already gone or
    /// replaced by another of its name is no error.
    async fn delete_final(&self, pod: &Pod) -> Result<(), ApiError>;
    /// The ConfigMaps and Secrets the pod refers to that exist.
    async fn sources(&self, pod: &Pod) -> Result<Sources, ApiError>;
    /// The services of a namespace.
    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError>;
}

/// Where the node's components record events.
pub trait EventSink: Send + Sync {
    fn event(&self, involved: &Pod, warning: bool, reason: &str, message: &str);
}

/// What a sync pass asks of its caller.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Sync again after this long, or sooner when the pod changes.
    After(Duration),
    /// The pod is gone and everything of it on the node is cleaned up.
    Done,
}

/// How often volumes of configMaps and secrets are refreshed.
const VOLUME_RESYNC: Duration = Duration::from_secs(30);
/// How often a pod with running containers is looked at (container exits).
const RESYNC_RUNNING: Duration = Duration::from_millis(1000);

pub struct Worker {
    pod: Pod,
    host_ip: String,
    backend: Arc<dyn Backend>,
    api: Arc<dyn PodApi>,
    events: Arc<dyn EventSink>,
    views: BTreeMap<String, ContainerView>,
    ids: BTreeMap<String, String>,
    backoff: Backoff,
    sandbox_ip: Option<Option<String>>,
    volumes: Option<(BTreeMap<String, PathBuf>, Instant)>,
    /// The pod's labels or annotations changed: its downward API files are to be written again.
    volumes_stale: bool,
    /// Probe state per container and kind: the attempt it is about, when it was first seen
    /// running, and the tracker.
    probes: BTreeMap<(String, Kind), (String, Instant, Tracker)>,
    start_time: Option<String>,
    written: Option<PodStatus>,
    /// Events already emitted, so a waiting container does not repeat them every pass.
    said: HashSet<String>,
    /// Attempts whose exit has been counted in the back-off.
    counted: HashMap<String, u32>,
    /// The pod object is gone from the API (force-deleted): clean up without a final delete.
    vanished: bool,
    /// Slots for setting up sandboxes and starting containers, shared by the node's workers.
    starts: Option<Arc<tokio::sync::Semaphore>>,
    /// The slot this pass holds, from its first sandbox or container start to its end.
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

fn name_of(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

fn namespace_of(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("")
}

/// The pod's init containers (`init`) or app containers.
fn containers_of(pod: &Pod, init: bool) -> Vec<Container> {
    match pod.spec.as_ref() {
        Some(s) if init => s.init_containers.clone().unwrap_or_default(),
        Some(s) => s.containers.clone(),
        None => Vec::new(),
    }
}

impl Worker {
    pub fn new(
        pod: Pod,
        host_ip: String,
        backend: Arc<dyn Backend>,
        api: Arc<dyn PodApi>,
        events: Arc<dyn EventSink>,
    ) -> Worker {
        let start_time = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).map(super::status::time_str);
        Worker {
            pod,
            host_ip,
            backend,
            api,
            events,
            views: BTreeMap::new(),
            ids: BTreeMap::new(),
            backoff: Backoff::default(),
            sandbox_ip: None,
            volumes: None,
            volumes_stale: false,
            probes: BTreeMap::new(),
            start_time,
            written: None,
            said: HashSet::new(),
            counted: HashMap::new(),
            vanished: false,
            starts: None,
            slot: None,
        }
    }

    /// Shares `starts` with the node's other workers: a sandbox set up or a container started
    /// needs one of its permits, held until the end of that pass (not while an image is
    /// pulled). Handed out first come, first served, so when many pods arrive at once the
    /// first ones start first instead of all of them sharing the CPU and finishing late.
    pub fn with_start_slots(mut self, starts: Arc<tokio::sync::Semaphore>) -> Worker {
        self.starts = Some(starts);
        self
    }

    async fn hold_slot(&mut self) {
        if self.slot.is_none() {
            if let Some(s) = &self.starts {
                self.slot = s.clone().acquire_owned().await.ok();
            }
        }
    }

    pub fn uid(&self) -> String {
        uid_of(&self.pod)
    }

    /// The newest version of the pod. When its status is not what this worker last wrote
    /// (someone else wrote it, or the object was recreated), the status is written again.
    pub fn update(&mut self, pod: Pod) {
        if let (Some(w), Some(s)) = (&self.written, pod.status.as_ref()) {
            let differs = w.phase != s.phase
                || w.pod_ip != s.pod_ip
                || w.container_statuses != s.container_statuses
                || w.init_container_statuses != s.init_container_statuses;
            if differs && pod.metadata.resource_version.is_some() {
                self.written = None;
            }
        }
        if pod.metadata.labels != self.pod.metadata.labels || pod.metadata.annotations != self.pod.metadata.annotations
        {
            self.volumes_stale = true;
        }
        self.pod = pod;
    }

    /// Forgets what was written, so the next pass writes the status again.
    pub fn rewrite(&mut self) {
        self.written = None;
    }

    /// The pod was removed from the API without the kubelet's final delete.
    pub fn vanish(&mut self) {
        self.vanished = true;
    }

    /// Takes over containers a previous k3rs process started for this pod.
    pub fn adopt(&mut self, mut records: Vec<ContainerRecord>) {
        records.sort_by_key(|r| r.attempt);
        for r in records {
            let view = self.views.entry(r.container.clone()).or_default();
            if let Some(cur) = view.current.take() {
                if let AttemptState::Exited(t) = cur.state {
                    view.previous = Some(t);
                }
            }
            self.ids.insert(r.container.clone(), r.id.clone());
            view.current = Some(Attempt {
                container_id: r.id,
                attempt: r.attempt,
                image: r.image,
                image_id: r.image_id,
                state: r.state,
            });
            // Its exit (if any) was already counted by the previous process.
            self.counted.insert(r.container, r.attempt);
        }
        if !self.views.is_empty() {
            // Containers exist, so the sandbox did: setting it up again is idempotent.
            self.start_time.get_or_insert_with(now_rfc3339);
        }
    }

    fn key(&self, what: &str) -> String {
        format!("{}/{what}", self.uid())
    }

    fn say_once(&mut self, id: String, warning: bool, reason: &str, message: &str) {
        if self.said.insert(id) {
            self.events.event(&self.pod, warning, reason, message);
        }
    }

    /// The pod's terminationGracePeriodSeconds (30 s unless it says otherwise).
    fn grace_seconds(&self) -> u64 {
        let s = self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        u64::try_from(s).unwrap_or(0)
    }

    fn pod_ref(&self) -> String {
        format!("{}_{}({})", name_of(&self.pod), namespace_of(&self.pod), self.uid())
    }

    /// One pass.
    pub async fn sync(&mut self) -> Next {
        let next = self.pass().await;
        self.slot = None;
        next
    }

    async fn pass(&mut self) -> Next {
        self.refresh_states().await;
        if self.vanished || self.pod.metadata.deletion_timestamp.is_some() {
            return self.terminate().await;
        }
        let phase = self.written.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("");
        if phase == "Succeeded" || phase == "Failed" {
            // Finished: the sandbox goes, the containers stay for their logs until deletion.
            if self.sandbox_ip.is_some() {
                let _ = self.backend.sandbox_down(&self.uid()).await;
                self.sandbox_ip = None;
            }
            return Next::After(Duration::from_secs(30));
        }
        let mut next = RESYNC_RUNNING;
        if self.start_time.is_none() {
            self.start_time = Some(now_rfc3339());
        }
        if self.sandbox_ip.is_some() && !self.backend.sandbox_alive(&self.uid()).await {
            // As upstream: the pod's containers go with the sandbox and start again in a new one.
            self.events.event(
                &self.pod,
                false,
                "SandboxChanged",
                "Pod sandbox changed, it will be killed and re-created.",
            );
            self.kill_running().await;
            self.sandbox_ip = None;
        }
        if self.sandbox_ip.is_none() {
            self.hold_slot().await;
            let t = Instant::now();
            let up = self.backend.sandbox_up(&self.pod).await;
            tracing::debug!(target: "k3rs::kubelet::timing", pod = %self.pod_ref(), ms = t.elapsed().as_secs_f64() * 1e3, "sandbox");
            match up {
                Ok(s) => self.sandbox_ip = Some(s.ip),
                Err(e) => {
                    self.events.event(
                        &self.pod,
                        true,
                        "FailedCreatePodSandBox",
                        &format!("Failed to create pod sandbox: {e}"),
                    );
                    self.write_status().await;
                    return Next::After(Duration::from_secs(5));
                }
            }
        }
        let volumes_due =
            self.volumes_stale || self.volumes.as_ref().is_none_or(|(_, at)| at.elapsed() >= VOLUME_RESYNC);
        let mut sources = Sources::default();
        if volumes_due || self.needs_start() {
            let t = Instant::now();
            let got = self.api.sources(&self.pod).await;
            tracing::debug!(target: "k3rs::kubelet::timing", pod = %self.pod_ref(), ms = t.elapsed().as_secs_f64() * 1e3, "sources");
            sources = match got {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(pod = %self.pod_ref(), error = %e.message, "cannot read the pod's configmaps and secrets");
                    return Next::After(Duration::from_secs(2));
                }
            };
        }
        if volumes_due {
            let pod_dir = self.backend.pods_dir().join(self.uid());
            match volumes::prepare(&pod_dir, &self.pod, &sources, self.backend.mounter()) {
                Ok(v) => {
                    self.volumes = Some((v, Instant::now()));
                    self.volumes_stale = false;
                }
                Err(e) => {
                    let name = failing_volume(&self.pod, &e);
                    self.events.event(
                        &self.pod,
                        true,
                        "FailedMount",
                        &format!("MountVolume.SetUp failed for volume \"{name}\" : {e}"),
                    );
                    if self.volumes.is_none() {
                        self.write_status().await;
                        return Next::After(Duration::from_secs(2));
                    }
                }
            }
        }

        // Init containers in order, each to success.
        let inits = containers_of(&self.pod, true);
        let policy = self.pod.spec.as_ref().and_then(|s| s.restart_policy.clone()).unwrap_or_default();
        let mut initialized = true;
        for c in &inits {
            let name = c.name.clone();
            match self.views.get(&name).and_then(|v| v.current.as_ref()).map(|a| a.state.clone()) {
                Some(AttemptState::Exited(t)) if t.exit_code == 0 => continue,
                Some(AttemptState::Exited(t)) => {
                    initialized = false;
                    if policy != "Never" {
                        if let Some(d) = self.restart(c, true, &t, &sources).await {
                            next = next.min(d);
                        }
                    }
                    break;
                }
                Some(AttemptState::Created) => {
                    initialized = false;
                    if let Some(d) = self.replace_unstarted(c, true, &sources).await {
                        next = next.min(d);
                    }
                    break;
                }
                Some(_) => {
                    initialized = false;
                    break;
                }
                None => {
                    initialized = false;
                    if let Some(d) = self.start(c, true, 0, &sources).await {
                        next = next.min(d);
                    }
                    break;
                }
            }
        }
        if initialized {
            let apps = containers_of(&self.pod, false);
            for c in &apps {
                let name = c.name.clone();
                match self.views.get(&name).and_then(|v| v.current.as_ref()).map(|a| a.state.clone()) {
                    None => {
                        if let Some(d) = self.start(c, false, 0, &sources).await {
                            next = next.min(d);
                        }
                    }
                    Some(AttemptState::Exited(t)) => {
                        let again = match policy.as_str() {
                            "Never" => false,
                            "OnFailure" => t.exit_code != 0,
                            _ => true,
                        };
                        if again {
                            if let Some(d) = self.restart(c, false, &t, &sources).await {
                                next = next.min(d);
                            }
                        }
                    }
                    Some(AttemptState::Created) => {
                        if let Some(d) = self.replace_unstarted(c, false, &sources).await {
                            next = next.min(d);
                        }
                    }
                    Some(_) => {}
                }
            }
            next = next.min(self.probe().await);
        }
        let t = Instant::now();
        self.write_status().await;
        tracing::debug!(target: "k3rs::kubelet::timing", pod = %self.pod_ref(), ms = t.elapsed().as_secs_f64() * 1e3, "status");
        Next::After(next)
    }

    /// Runs the app containers' probes that are due (startup first; readiness and liveness
    /// once it passed) and acts on them, as upstream's prober: a readiness verdict becomes
    /// the container's `ready`; a failed liveness or startup probe stops the container, for
    /// its restart policy to restart it. Returns how soon a probe is next due.
    async fn probe(&mut self) -> Duration {
        let mut next = Duration::from_secs(3600);
        let pod_ip = self.sandbox_ip.clone().flatten().unwrap_or_default();
        let now = Instant::now();
        for c in containers_of(&self.pod, false) {
            let name = c.name.clone();
            let running = match self.views.get(&name).and_then(|v| v.current.as_ref()) {
                Some(a) if matches!(a.state, AttemptState::Running { .. }) => Some(a.container_id.clone()),
                _ => None,
            };
            let Some(id) = running else {
                self.probes.retain(|(n, _), _| *n != name);
                continue;
            };
            let mut failed: Option<Kind> = None;
            for kind in [Kind::Startup, Kind::Readiness, Kind::Liveness] {
                let Some(p) = kind.of(&c).cloned() else { continue };
                let started = self.probes.get(&(name.clone(), Kind::Startup)).is_none_or(|(_, _, t)| t.passing());
                if kind != Kind::Startup && c.startup_probe.is_some() && !started {
                    continue;
                }
                let entry =
                    self.probes.entry((name.clone(), kind)).or_insert_with(|| (id.clone(), now, Tracker::new(kind)));
                if entry.0 != id {
                    *entry = (id.clone(), now, Tracker::new(kind));
                }
                // A startup probe that passed is done.
                if kind == Kind::Startup && entry.2.decided() == Some(true) {
                    continue;
                }
                let due = entry.2.due_at(&p, entry.1);
                if due > now {
                    next = next.min(due - now);
                    continue;
                }
                let exec = ExecIn { backend: self.backend.as_ref(), id: &id };
                let outcome = prober::run(&p, &c, &pod_ip, &exec).await;
                let ok = outcome == Outcome::Success;
                let Some(entry) = self.probes.get_mut(&(name.clone(), kind)) else { continue };
                entry.2.record(&p, ok, Instant::now());
                let verdict = entry.2.decided();
                next = next.min(entry.2.due_at(&p, entry.1).saturating_duration_since(Instant::now()));
                if let Outcome::Failure(why) = &outcome {
                    self.events.event(&self.pod, true, "Unhealthy", &format!("{} probe failed: {why}", kind.title()));
                }
                if kind != Kind::Readiness && verdict == Some(false) {
                    failed = Some(kind);
                    break;
                }
            }
            let view = self.views.entry(name.clone()).or_default();
            let verdict = |k: Kind| self.probes.get(&(name.clone(), k)).map(|(_, _, t)| t.passing());
            view.started = c.startup_probe.as_ref().map(|_| verdict(Kind::Startup).unwrap_or(false));
            view.ready = c.readiness_probe.as_ref().map(|_| verdict(Kind::Readiness).unwrap_or(false));
            if let Some(kind) = failed {
                let what = if kind == Kind::Liveness { "liveness" } else { "startup" };
                self.events.event(
                    &self.pod,
                    false,
                    "Killing",
                    &format!("Container {name} failed {what} probe, will be restarted"),
                );
                let p = kind.of(&c);
                let grace = p
                    .and_then(|p| p.termination_grace_period_seconds)
                    .or_else(|| self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
                    .unwrap_or(30);
                let grace = Duration::from_secs(u64::try_from(grace).unwrap_or(0));
                let pod_ip = self.sandbox_ip.clone().flatten().unwrap_or_default();
                let (b, ev) = (self.backend.clone(), self.events.clone());
                if let Err(e) = stop_with_pre_stop(b, ev, &self.pod, &pod_ip, Some(&c), &id, grace).await {
                    tracing::warn!(pod = %self.pod_ref(), container = %name, error = %e, "stopping a container that failed its probe");
                }
                self.probes.retain(|(n, _), _| *n != name);
                next = Duration::ZERO;
            }
        }
        next.max(Duration::from_millis(50))
    }

    fn needs_start(&self) -> bool {
        let all =
            self.pod.spec.as_ref().map_or(0, |s| s.init_containers.as_ref().map_or(0, Vec::len) + s.containers.len());
        self.views
            .values()
            .filter(|v| matches!(v.current.as_ref().map(|a| &a.state), Some(AttemptState::Running { .. })))
            .count()
            < all
    }

    /// Reads the state of every current container from the runtime.
    async fn refresh_states(&mut self) {
        if self.ids.is_empty() {
            return;
        }
        for (name, id) in self.ids.clone() {
            let running_or_new = self
                .views
                .get(&name)
                .and_then(|v| v.current.as_ref())
                .is_none_or(|a| !matches!(a.state, AttemptState::Exited(_)));
            if !running_or_new {
                continue;
            }
            if let Ok(state) = self.backend.state(&id).await {
                if let Some(a) = self.views.get_mut(&name).and_then(|v| v.current.as_mut()) {
                    a.state = state;
                }
            }
        }
    }

    /// Kills the pod's running containers at once (their sandbox is gone) and notes their exit.
    async fn kill_running(&mut self) {
        let running: Vec<(String, String)> = self
            .views
            .iter()
            .filter_map(|(name, v)| v.current.as_ref().map(|a| (name, a)))
            .filter(|(_, a)| !matches!(a.state, AttemptState::Exited(_)))
            .map(|(name, a)| (name.clone(), a.container_id.clone()))
            .collect();
        for (name, id) in running {
            self.events.event(&self.pod, false, "Killing", &format!("Stopping container {name}"));
            if let Err(e) = self.backend.stop_container(&id, Duration::ZERO).await {
                tracing::warn!(pod = %self.pod_ref(), container = %name, error = %e, "stopping a container failed");
            }
        }
        self.refresh_states().await;
    }

    /// A container that exited and should run again: now, or after its back-off.
    async fn restart(&mut self, c: &Container, init: bool, t: &Terminated, sources: &Sources) -> Option<Duration> {
        let name = c.name.clone();
        let key = self.key(&format!("c/{name}"));
        let attempt = self.views.get(&name).and_then(|v| v.current.as_ref()).map(|a| a.attempt).unwrap_or(0);
        let now = Instant::now();
        if let Some((delay, left)) = self.backoff.waiting(&key, now) {
            let msg = format!(
                "back-off {} restarting failed container={} pod={}",
                go_duration_std(delay),
                name,
                self.pod_ref()
            );
            if let Some(v) = self.views.get_mut(&name) {
                v.waiting = Some(("CrashLoopBackOff".into(), msg));
            }
            let ev = format!("Back-off restarting failed container {} in pod {}", name, self.pod_ref());
            self.say_once(format!("backoff/{name}/{attempt}"), true, "BackOff", &ev);
            return Some(left.max(Duration::from_millis(50)));
        }
        if self.counted.get(&name) != Some(&(attempt + 1)) {
            let ran = ran_for(t);
            self.backoff.failed(&key, now, ran);
            self.counted.insert(name.clone(), attempt + 1);
        }
        // The previous container goes; its log file stays for `kubectl logs --previous`.
        if let Some(old) = self.views.get(&name).and_then(|v| v.current.as_ref()).map(|a| a.container_id.clone()) {
            let _ = self.backend.remove_container(&old).await;
        }
        if let Some(v) = self.views.get_mut(&name) {
            v.previous = Some(t.clone());
        }
        self.start(c, init, attempt + 1, sources).await
    }

    /// A container created and never started (k3rs stopped between the two, and the
    /// worker found it afterwards) goes, and a new attempt starts at once: as upstream's
    /// kubelet, which always restarts a container in the created state.
    async fn replace_unstarted(&mut self, c: &Container, init: bool, sources: &Sources) -> Option<Duration> {
        let name = c.name.clone();
        let Some(current) = self.views.get(&name).and_then(|v| v.current.clone()) else {
            return self.start(c, init, 0, sources).await;
        };
        tracing::info!(pod = %self.pod_ref(), container = %name, id = %current.container_id, "replacing a container that was created but never started");
        if let Err(e) = self.backend.remove_container(&current.container_id).await {
            tracing::warn!(pod = %self.pod_ref(), container = %name, error = %e, "cannot remove the unstarted container");
        }
        self.start(c, init, current.attempt + 1, sources).await
    }

    /// Pulls the image and runs one attempt of the container. Returns how soon to look
    /// again when the container could not start.
    async fn start(&mut self, c: &Container, init: bool, attempt: u32, sources: &Sources) -> Option<Duration> {
        let name = c.name.clone();
        let image = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| "IfNotPresent".into());
        let pull_key = self.key(&format!("img/{name}"));
        let now = Instant::now();
        if self.backoff.waiting(&pull_key, now).is_some() {
            let msg = format!("Back-off pulling image \"{image}\"");
            self.set_waiting(&name, "ImagePullBackOff", &msg);
            self.say_once(format!("pullbackoff/{name}/{attempt}"), false, "BackOff", &msg);
            return Some(Duration::from_secs(1));
        }
        let present = if policy == "Always" { None } else { self.backend.image_present(&image).await };
        let image_info = match present {
            Some(info) => {
                self.say_once(
                    format!("present/{name}/{attempt}"),
                    false,
                    "Pulled",
                    &format!("Container image \"{image}\" already present on machine"),
                );
                info
            }
            None if policy == "Never" => {
                let msg = format!("Container image \"{image}\" is not present with pull policy of Never");
                self.set_waiting(&name, "ErrImageNeverPull", &msg);
                self.say_once(format!("neverpull/{name}"), true, "ErrImageNeverPull", &msg);
                self.say_once(format!("neverpull-err/{name}"), true, "Failed", "Error: ErrImageNeverPull");
                return Some(Duration::from_secs(5));
            }
            None => {
                self.slot = None;
                self.events.event(&self.pod, false, "Pulling", &format!("Pulling image \"{image}\""));
                let started = Instant::now();
                match self.backend.pull_image(&image, &self.pod, sources).await {
                    Ok(info) => {
                        self.backoff.clear(&pull_key);
                        let took = started.elapsed().as_secs_f64();
                        self.events.event(
                            &self.pod,
                            false,
                            "Pulled",
                            &format!("Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting). Image size: {} bytes.", info.size),
                        );
                        info
                    }
                    Err(e) => {
                        self.backoff.failed(&pull_key, now, None);
                        let msg = format!("Failed to pull image \"{image}\": {e}");
                        self.set_waiting(&name, "ErrImagePull", &msg);
                        self.events.event(&self.pod, true, "Failed", &msg);
                        self.events.event(&self.pod, true, "Failed", "Error: ErrImagePull");
                        return Some(Duration::from_secs(1));
                    }
                }
            }
        };
        let t = Instant::now();
        let services = self.api.services(namespace_of(&self.pod)).await.unwrap_or_default();
        tracing::debug!(target: "k3rs::kubelet::timing", pod = %self.pod_ref(), ms = t.elapsed().as_secs_f64() * 1e3, "services");
        let uid = self.uid();
        let log_path = self
            .backend
            .log_root()
            .join(format!("{}_{}_{}", namespace_of(&self.pod), name_of(&self.pod), uid))
            .join(&name)
            .join(format!("{attempt}.log"));
        let req = CreateContainer {
            pod: self.pod.clone(),
            container: name.clone(),
            init,
            attempt,
            image: image_info.clone(),
            volumes: self.volumes.as_ref().map(|(v, _)| v.clone()).unwrap_or_default(),
            sources: sources.clone(),
            services,
            pod_ip: self.sandbox_ip.clone().flatten(),
            log_path,
        };
        self.hold_slot().await;
        let t = Instant::now();
        let ran = self.backend.run_container(req).await;
        tracing::debug!(target: "k3rs::kubelet::timing", pod = %self.pod_ref(), container = %name, ms = t.elapsed().as_secs_f64() * 1e3, "run container");
        match ran {
            Ok(id) => {
                self.said.retain(|k| !k.ends_with(&format!("/{name}/{attempt}")) && !k.ends_with(&format!("/{name}")));
                self.events.event(&self.pod, false, "Created", &format!("Created container: {name}"));
                self.events.event(&self.pod, false, "Started", &format!("Started container {name}"));
                self.ids.insert(name.clone(), id.clone());
                if let Some(hook) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
                    // As upstream: the container counts as started only once its postStart
                    // hook returned; a failed hook kills it, for its restart policy to act.
                    let pod_ip = self.sandbox_ip.clone().flatten().unwrap_or_default();
                    let limit = Duration::from_secs(self.grace_seconds());
                    if let Err(msg) =
                        run_hook(self.backend.as_ref(), &self.pod_ref(), &pod_ip, c, &id, hook, limit).await
                    {
                        self.events.event(&self.pod, true, "FailedPostStartHook", &msg);
                        let (b, ev) = (self.backend.clone(), self.events.clone());
                        let _ = stop_with_pre_stop(b, ev, &self.pod, &pod_ip, None, &id, limit).await;
                    }
                }
                let state =
                    self.backend.state(&id).await.unwrap_or(AttemptState::Running { started_at: now_rfc3339() });
                let v = self.views.entry(name).or_default();
                v.waiting = None;
                v.current =
                    Some(Attempt { container_id: id, attempt, image: image_info.name, image_id: image_info.id, state });
                None
            }
            Err(CreateError::Config(e)) => {
                let msg = e.to_string();
                self.set_waiting(&name, "CreateContainerConfigError", &msg);
                self.say_once(format!("config/{name}/{msg}"), true, "Failed", &format!("Error: {msg}"));
                Some(Duration::from_secs(2))
            }
            Err(CreateError::Runtime(e)) => {
                let msg = e.to_string();
                self.set_waiting(&name, "CreateContainerError", &msg);
                self.events.event(&self.pod, true, "Failed", &format!("Error: {msg}"));
                Some(Duration::from_secs(5))
            }
        }
    }

    fn set_waiting(&mut self, name: &str, reason: &str, msg: &str) {
        let v = self.views.entry(name.to_string()).or_default();
        v.waiting = Some((reason.to_string(), msg.to_string()));
    }

    async fn write_status(&mut self) {
        let view = PodView {
            containers: self.views.clone(),
            sandbox_ready: self.sandbox_ip.is_some(),
            pod_ip: match &self.sandbox_ip {
                Some(Some(ip)) => Some(ip.clone()),
                Some(None) => Some(self.host_ip.clone()),
                None => self.written.as_ref().and_then(|s| s.pod_ip.clone()),
            },
            host_ip: self.host_ip.clone(),
            start_time: self.start_time.clone(),
            failure: None,
        };
        let mut base = self.pod.clone();
        if let Some(w) = &self.written {
            // Transition times come from what was last written, not a possibly older cache;
            // conditions only the API has (PodScheduled...) are kept.
            let mut conds = w.conditions.clone().unwrap_or_default();
            let status = base.status.get_or_insert_with(Default::default);
            for c in status.conditions.iter().flatten() {
                if !conds.iter().any(|x| x.type_ == c.type_) {
                    conds.push(c.clone());
                }
            }
            status.conditions = Some(conds);
        }
        let status = pod_status(&base, &view, &now_rfc3339());
        if self.written.as_ref() == Some(&status) {
            return;
        }
        match self.api.patch_status(&self.pod, &status).await {
            Ok(()) => self.written = Some(status),
            Err(e) => {
                tracing::warn!(pod = %self.pod_ref(), error = %e.message, "status update failed; retrying on the next pass")
            }
        }
    }

    /// Stops the pod's containers within its grace period, cleans up, and completes the
    /// delete.
    async fn terminate(&mut self) -> Next {
        let grace = self
            .pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| self.pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
            .max(0) as u64;
        let uid = self.uid();
        let mine: Vec<ContainerRecord> =
            self.backend.containers().await.unwrap_or_default().into_iter().filter(|r| r.pod_uid == uid).collect();
        let specs =
            containers_of(&self.pod, false).into_iter().chain(containers_of(&self.pod, true)).collect::<Vec<_>>();
        let pod_ip = self.sandbox_ip.clone().flatten().unwrap_or_default();
        let mut stops = Vec::new();
        for r in &mine {
            if matches!(r.state, AttemptState::Running { .. } | AttemptState::Created) {
                self.events.event(&self.pod, false, "Killing", &format!("Stopping container {}", r.container));
                let (b, ev) = (self.backend.clone(), self.events.clone());
                let (pod, pod_ip, id) = (&self.pod, pod_ip.as_str(), r.id.clone());
                // Only a running container runs its preStop hook.
                let spec = specs
                    .iter()
                    .find(|c| c.name == r.container)
                    .filter(|_| matches!(r.state, AttemptState::Running { .. }));
                stops.push(async move {
                    stop_with_pre_stop(b, ev, pod, pod_ip, spec, &id, Duration::from_secs(grace)).await
                });
            }
        }
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r {
                tracing::warn!(pod = %self.pod_ref(), error = %e, "stopping a container failed");
            }
        }
        self.refresh_states().await;
        self.write_status().await;
        for r in &mine {
            match self.backend.remove_container(&r.id).await {
                // Gone since it was listed: nothing is left to remove.
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(pod = %self.pod_ref(), container = %r.container, error = %e, "removing a container failed")
                }
                Ok(()) => {}
            }
        }
        if let Err(e) = self.backend.sandbox_down(&uid).await {
            tracing::warn!(pod = %self.pod_ref(), error = %e, "removing the sandbox failed");
        }
        let pod_dir = self.backend.pods_dir().join(&uid);
        if let Err(e) = volumes::cleanup(&pod_dir, self.backend.mounter()) {
            tracing::warn!(pod = %self.pod_ref(), error = %e, "removing the pod's volumes failed");
        }
        if !self.vanished {
            if let Err(e) = self.api.delete_final(&self.pod).await {
                tracing::warn!(pod = %self.pod_ref(), error = %e.message, "completing the delete failed; retrying");
                return Next::After(Duration::from_secs(1));
            }
        }
        let log_dir =
            self.backend.log_root().join(format!("{}_{}_{}", namespace_of(&self.pod), name_of(&self.pod), uid));
        let _ = std::fs::remove_dir_all(log_dir);
        self.backoff.clear_prefix(&format!("{uid}/"));
        Next::Done
    }
}

fn ran_for(t: &Terminated) -> Option<Duration> {
    let parse = |s: &Option<String>| {
        s.as_deref().and_then(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok())
    };
    match (parse(&t.started_at), parse(&t.finished_at)) {
        (Some(a), Some(b)) if b > a => Some((b - a).unsigned_abs()),
        _ => None,
    }
}

/// The volume a preparation error is about (for the FailedMount message).
/// Runs a lifecycle hook of container `c` (attempt `id`): exec in the container, httpGet
/// (or the deprecated tcpSocket) from the node, or sleep; within `limit`. On failure, the
/// message upstream's kubelet records with FailedPostStartHook / FailedPreStopHook.
async fn run_hook(
    backend: &dyn Backend,
    pod_ref: &str,
    pod_ip: &str,
    c: &Container,
    id: &str,
    h: &LifecycleHandler,
    limit: Duration,
) -> Result<(), String> {
    let limit = limit.max(Duration::from_secs(1));
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(u64::try_from(s.seconds).unwrap_or(0)).min(limit)).await;
        return Ok(());
    }
    if let Some(e) = &h.exec {
        let command = e.command.clone().unwrap_or_default();
        let shown = format!("[{}]", command.join(" "));
        let joined = command.join(" ");
        return match backend.exec_probe(id, command, limit).await {
            Ok((0, _)) => Ok(()),
            Ok((code, output)) => Err(format!(
                "Exec lifecycle hook ({shown}) for Container {:?} in Pod {pod_ref:?} failed - error: command '{joined}' exited with {code}: , message: {output:?}",
                c.name
            )),
            Err(err) => Err(format!(
                "Exec lifecycle hook ({shown}) for Container {:?} in Pod {pod_ref:?} failed - error: {err}, message: \"\"",
                c.name
            )),
        };
    }
    if let Some(g) = &h.http_get {
        let path = g.path.clone().unwrap_or_default();
        return prober::http_hook(g, c, pod_ip, limit).await.map_err(|err| {
            format!("HTTP lifecycle hook ({path}) for Container {:?} in Pod {pod_ref:?} failed - error: {err}", c.name)
        });
    }
    if let Some(t) = &h.tcp_socket {
        // Deprecated and never run by upstream's kubelet: accepted and ignored, as there.
        let _ = t;
        return Ok(());
    }
    Err(format!("Invalid handler for Container {:?} in Pod {pod_ref:?}", c.name))
}

/// The container's preStop hook, if it has one, within `grace`; then its stop, with what is
/// left of the grace period (at least 2 s, as upstream's minimum).
async fn stop_with_pre_stop(
    backend: Arc<dyn Backend>,
    events: Arc<dyn EventSink>,
    pod: &Pod,
    pod_ip: &str,
    c: Option<&Container>,
    id: &str,
    grace: Duration,
) -> Result<(), super::backend::BackendError> {
    let mut left = grace;
    if let Some((c, hook)) = c.and_then(|c| c.lifecycle.as_ref()?.pre_stop.as_ref().map(|h| (c, h))) {
        let pod_ref = format!("{}_{}({})", name_of(pod), namespace_of(pod), uid_of(pod));
        let t = Instant::now();
        if let Err(msg) = run_hook(backend.as_ref(), &pod_ref, pod_ip, c, id, hook, grace).await {
            events.event(pod, true, "FailedPreStopHook", &msg);
        }
        left = grace.saturating_sub(t.elapsed()).max(Duration::from_secs(2));
    }
    backend.stop_container(id, left).await
}

/// Exec probes of one container, through the node.
struct ExecIn<'a> {
    backend: &'a dyn Backend,
    id: &'a str,
}

#[async_trait::async_trait]
impl prober::Exec for ExecIn<'_> {
    async fn exec(&self, command: Vec<String>, timeout: Duration) -> Result<(i32, String), String> {
        self.backend.exec_probe(self.id, command, timeout).await
    }
}

fn failing_volume(pod: &Pod, e: &volumes::VolumeError) -> String {
    let wanted = match e {
        volumes::VolumeError::Missing { name, .. } => Some(name.as_str()),
        volumes::VolumeError::Io { volume, .. }
        | volumes::VolumeError::Unsupported { volume }
        | volumes::VolumeError::Token { volume, .. }
        | volumes::VolumeError::Downward { volume, .. } => return volume.clone(),
        _ => None,
    };
    for v in pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten() {
        let mut refs = vec![
            v.config_map.as_ref().map(|c| c.name.as_str()),
            v.secret.as_ref().and_then(|s| s.secret_name.as_deref()),
        ];
        for s in v.projected.as_ref().and_then(|p| p.sources.as_ref()).into_iter().flatten() {
            refs.push(s.config_map.as_ref().map(|c| c.name.as_str()));
            refs.push(s.secret.as_ref().map(|c| c.name.as_str()));
        }
        if refs.iter().flatten().any(|r| Some(*r) == wanted) {
            return v.name.clone();
        }
    }
    String::new()
}
