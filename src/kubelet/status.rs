//! A pod's status as the kubelet reports it: a pure function of the pod and what the node
//! knows of its containers (phase, conditions and container statuses by upstream's rules),
//! so every rule is unit-tested without running anything.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus,
    HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// How a container ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminated {
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, ...
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub container_id: String,
}

/// The state of one attempt at running a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptState {
    /// Created, not started yet.
    Created,
    Running {
        started_at: String,
    },
    Exited(Terminated),
}

/// One attempt at running a container (the runtime's view).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub container_id: String,
    /// 0 for the first attempt; becomes restartCount.
    pub attempt: u32,
    pub image: String,
    pub image_id: String,
    pub state: AttemptState,
}

/// What the node knows of one container of the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerView {
    /// The newest attempt.
    pub current: Option<Attempt>,
    /// The attempt before it, if it ended (lastState).
    pub previous: Option<Terminated>,
    /// Why the container is not running now, when it is not (ContainerCreating,
    /// ErrImagePull, CrashLoopBackOff, CreateContainerConfigError, PodInitializing...).
    pub waiting: Option<(String, String)>,
    /// The startup probe's verdict on the running attempt (`None`: it has none).
    pub started: Option<bool>,
    /// The readiness probe's verdict on the running attempt (`None`: it has none).
    pub ready: Option<bool>,
}

/// Everything the status is computed from, besides the pod itself.
#[derive(Clone, Debug, Default)]
pub struct PodView {
    pub containers: BTreeMap<String, ContainerView>,
    /// The sandbox (namespaces, network) is ready.
    pub sandbox_ready: bool,
    pub pod_ip: Option<String>,
    pub host_ip: String,
    pub start_time: Option<String>,
    /// The pod was refused or ended by the kubelet itself (e.g. a static pod's error).
    pub failure: Option<(String, String)>,
}

/// The runtime's prefix of container IDs (`containerd://…` on containerd nodes).
pub const CONTAINER_ID_PREFIX: &str = "libcontainer://";

/// An RFC 3339 time as metav1.Time (`None` for what does not parse). Truncated to whole
/// seconds, as metav1.Time is written: a status compares equal to itself read back.
pub fn time(s: &str) -> Option<Time> {
    let t = s.parse::<k8s_openapi::jiff::Timestamp>().ok()?;
    k8s_openapi::jiff::Timestamp::from_second(t.as_second()).ok().map(Time)
}

/// A metav1.Time as it is written (RFC 3339, whole seconds, UTC).
pub fn time_str(t: &Time) -> String {
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", t.0).unwrap_or_default()
}

fn spec_containers(pod: &Pod, init: bool) -> &[Container] {
    match pod.spec.as_ref() {
        Some(s) if init => s.init_containers.as_deref().unwrap_or_default(),
        Some(s) => &s.containers,
        None => &[],
    }
}

fn terminated_state(t: &Terminated) -> ContainerState {
    ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: t.exit_code,
            reason: Some(t.reason.clone()),
            message: t.message.clone().filter(|m| !m.is_empty()),
            started_at: t.started_at.as_deref().and_then(time),
            finished_at: t.finished_at.as_deref().and_then(time),
            container_id: Some(format!("{CONTAINER_ID_PREFIX}{}", t.container_id)),
            signal: None,
        }),
        ..Default::default()
    }
}

fn waiting_state(reason: &str, message: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: Some(message.to_string()).filter(|m| !m.is_empty()),
        }),
        ..Default::default()
    }
}

/// Counts of app containers by state, as upstream's phase computation counts them.
#[derive(Default)]
struct Counts {
    waiting: usize,
    running: usize,
    stopped: usize,
    succeeded: usize,
}

/// One container's status entry, whether it runs, and whether it exited 0.
fn container_status(spec: &Container, view: Option<&ContainerView>, init: bool) -> (ContainerStatus, bool, bool) {
    let image = spec.image.as_deref().unwrap_or("");
    let view = view.cloned().unwrap_or_default();
    let (state, running, exited_ok) = match (&view.current, &view.waiting) {
        (Some(Attempt { state: AttemptState::Running { started_at }, .. }), _) => {
            let running = ContainerStateRunning { started_at: time(started_at) };
            (ContainerState { running: Some(running), ..Default::default() }, true, false)
        }
        (Some(Attempt { state: AttemptState::Exited(t), .. }), None) => (terminated_state(t), false, t.exit_code == 0),
        (_, Some((reason, message))) => (waiting_state(reason, message), false, false),
        (Some(Attempt { state: AttemptState::Created, .. }), None) | (None, None) => {
            let reason = if init { "PodInitializing" } else { "ContainerCreating" };
            (waiting_state(reason, ""), false, false)
        }
    };
    // A container waiting to restart shows the attempt that ended as lastState.
    let last = match (&view.current, &view.waiting) {
        (Some(Attempt { state: AttemptState::Exited(t), .. }), Some(_)) => Some(t.clone()),
        _ => view.previous.clone(),
    };
    let (img, img_id) = view
        .current
        .as_ref()
        .map(|a| (a.image.clone(), a.image_id.clone()))
        .unwrap_or_else(|| (image.to_string(), String::new()));
    let status = ContainerStatus {
        name: spec.name.clone(),
        state: Some(state),
        // `{}` when there was no earlier attempt, as upstream writes it.
        last_state: Some(last.as_ref().map(terminated_state).unwrap_or_default()),
        // As upstream: started once the startup probe (if any) passed; ready once started
        // and the readiness probe (if any) passes.
        ready: running && !init && view.started.unwrap_or(true) && view.ready.unwrap_or(true),
        restart_count: view.current.as_ref().map_or(0, |a| i32::try_from(a.attempt).unwrap_or(i32::MAX)),
        image: img,
        image_id: img_id,
        container_id: view.current.as_ref().map(|a| format!("{CONTAINER_ID_PREFIX}{}", a.container_id)),
        started: Some(running && view.started.unwrap_or(true)),
        ..Default::default()
    };
    (status, running, exited_ok)
}

/// The pod's status as the kubelet would write it through `pods/status`. Keeps
/// `PodScheduled` and any condition the kubelet does not own from `pod.status`.
pub fn pod_status(pod: &Pod, view: &PodView, now: &str) -> PodStatus {
    let restart_policy = pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always");
    let inits = spec_containers(pod, true);
    let apps = spec_containers(pod, false);

    // Init containers: done in order; the first not done holds the rest.
    let mut init_statuses = Vec::new();
    let mut pending_init: Vec<String> = Vec::new();
    let mut init_failed = false;
    for c in inits {
        let v = view.containers.get(&c.name);
        let (status, _running, ok) = container_status(c, v, true);
        let done = ok && v.is_some_and(|v| v.waiting.is_none());
        if !done {
            pending_init.push(c.name.clone());
            let failed = v
                .and_then(|v| v.current.as_ref())
                .is_some_and(|a| matches!(&a.state, AttemptState::Exited(t) if t.exit_code != 0));
            if failed && restart_policy == "Never" {
                init_failed = true;
            }
        }
        init_statuses.push(status);
    }
    let initialized = pending_init.is_empty();

    let mut counts = Counts::default();
    let mut statuses = Vec::new();
    let mut unready = Vec::new();
    for c in apps {
        let v = view.containers.get(&c.name);
        let (status, running, ok) = container_status(c, v, false);
        let state = status.state.as_ref();
        let exited = state.is_some_and(|s| s.terminated.is_some());
        let restarting = state.is_some_and(|s| s.waiting.is_some())
            && status.last_state.as_ref().is_some_and(|s| s.terminated.is_some());
        if running {
            counts.running += 1;
        } else if exited || restarting {
            counts.stopped += 1;
            if exited && ok {
                counts.succeeded += 1;
            }
        } else {
            counts.waiting += 1;
        }
        if !status.ready {
            unready.push(c.name.clone());
        }
        statuses.push(status);
    }

    let phase = if view.failure.is_some() || init_failed {
        "Failed"
    } else if !initialized || counts.waiting > 0 {
        "Pending"
    } else if counts.running > 0 {
        "Running"
    } else if counts.stopped > 0 {
        match restart_policy {
            "Always" => "Running",
            _ if counts.stopped == counts.succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        }
    } else {
        "Pending"
    };

    let old_conditions: &[PodCondition] = pod.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let mut conditions = Vec::new();
    let mut set = |type_: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let old = old_conditions.iter().find(|c| c.type_ == type_);
        let transition = match old {
            Some(o) if o.status == status => o.last_transition_time.clone(),
            _ => time(now),
        };
        conditions.push(PodCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            last_probe_time: None,
            last_transition_time: transition,
            reason: reason.map(str::to_string),
            message,
            observed_generation: None,
        });
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    set("PodReadyToStartContainers", view.sandbox_ready && !terminal, None, None);
    let init_reason = if initialized {
        (None, None)
    } else {
        (
            Some("ContainersNotInitialized"),
            Some(format!("containers with incomplete status: [{}]", pending_init.join(" "))),
        )
    };
    set("Initialized", initialized, init_reason.0, init_reason.1);
    let ready = unready.is_empty() && initialized && !apps.is_empty();
    let (reason, message) = if ready {
        (None, None)
    } else if terminal {
        (Some("PodCompleted"), None)
    } else {
        (Some("ContainersNotReady"), Some(format!("containers with unready status: [{}]", unready.join(" "))))
    };
    set("Ready", ready, reason, message.clone());
    set("ContainersReady", ready, reason, message);
    // Conditions the kubelet does not own (PodScheduled, readiness gates' types...) stay.
    let owned = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"];
    for c in old_conditions {
        if !owned.contains(&c.type_.as_str()) {
            conditions.push(c.clone());
        }
    }
    let order = |c: &PodCondition| match c.type_.as_str() {
        "PodReadyToStartContainers" => 0,
        "Initialized" => 1,
        "Ready" => 2,
        "ContainersReady" => 3,
        "PodScheduled" => 4,
        _ => 5,
    };
    conditions.sort_by_key(order);

    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        reason: view.failure.as_ref().map(|(r, _)| r.clone()),
        message: view.failure.as_ref().map(|(_, m)| m.clone()),
        host_ip: Some(view.host_ip.clone()),
        host_ips: Some(vec![HostIP { ip: view.host_ip.clone() }]),
        pod_ip: view.pod_ip.clone(),
        pod_ips: view.pod_ip.as_ref().map(|ip| vec![PodIP { ip: ip.clone() }]),
        start_time: view.start_time.as_deref().and_then(time),
        init_container_statuses: (!inits.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        qos_class: pod.status.as_ref().and_then(|s| s.qos_class.clone()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(policy: &str, inits: &[&str], apps: &[&str]) -> Pod {
        let c = |n: &&str| Container {
            name: n.to_string(),
            image: Some("docker.io/library/busybox:1.36".into()),
            ..Default::default()
        };
        Pod {
            metadata: ObjectMeta { name: Some("p".into()), namespace: Some("default".into()), ..Default::default() },
            spec: Some(PodSpec {
                restart_policy: Some(policy.into()),
                init_containers: Some(inits.iter().map(c).collect()),
                containers: apps.iter().map(c).collect(),
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Pending".into()),
                qos_class: Some("BestEffort".into()),
                conditions: Some(vec![PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    last_transition_time: time("2026-01-01T00:00:00Z"),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    fn attempt(n: u32, state: AttemptState) -> Attempt {
        Attempt {
            container_id: format!("c{n}"),
            attempt: n,
            image: "docker.io/library/busybox:1.36".into(),
            image_id: "docker.io/library/busybox@sha256:ab".into(),
            state,
        }
    }

    fn exited(code: i32) -> AttemptState {
        AttemptState::Exited(Terminated {
            exit_code: code,
            reason: if code == 0 { "Completed".into() } else { "Error".into() },
            message: None,
            started_at: Some("2026-01-01T00:00:01Z".into()),
            finished_at: Some("2026-01-01T00:00:02Z".into()),
            container_id: "c0".into(),
        })
    }

    fn running() -> AttemptState {
        AttemptState::Running { started_at: "2026-01-01T00:00:01Z".into() }
    }

    fn view(cs: &[(&str, ContainerView)]) -> PodView {
        PodView {
            containers: cs.iter().map(|(n, v)| (n.to_string(), v.clone())).collect(),
            sandbox_ready: true,
            pod_ip: Some("10.42.0.5".into()),
            host_ip: "10.0.0.1".into(),
            start_time: Some("2026-01-01T00:00:00Z".into()),
            failure: None,
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions.as_ref().unwrap().iter().find(|c| c.type_ == t).unwrap()
    }

    fn phase(s: &PodStatus) -> &str {
        s.phase.as_deref().unwrap()
    }

    fn app(s: &PodStatus, i: usize) -> &ContainerStatus {
        &s.container_statuses.as_ref().unwrap()[i]
    }

    fn state(c: &ContainerStatus) -> &ContainerState {
        c.state.as_ref().unwrap()
    }

    fn waiting_reason(c: &ContainerStatus) -> &str {
        state(c).waiting.as_ref().unwrap().reason.as_deref().unwrap()
    }

    fn terminated(c: &ContainerStatus) -> &ContainerStateTerminated {
        state(c).terminated.as_ref().unwrap()
    }

    #[test]
    fn a_new_pod_is_pending_with_container_creating() {
        let p = pod("Always", &[], &["a"]);
        let s = pod_status(&p, &view(&[]), "2026-01-01T00:00:05Z");
        assert_eq!(phase(&s), "Pending");
        assert_eq!(waiting_reason(app(&s, 0)), "ContainerCreating");
        assert!(!app(&s, 0).ready);
        assert_eq!(cond(&s, "Ready").message.as_deref(), Some("containers with unready status: [a]"));
        assert_eq!(cond(&s, "PodScheduled").status, "True", "PodScheduled is kept");
        assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.5"));
    }

    #[test]
    fn running_containers_make_a_ready_running_pod() {
        let p = pod("Always", &[], &["a", "b"]);
        let v = ContainerView { current: Some(attempt(0, running())), ..Default::default() };
        let s = pod_status(&p, &view(&[("a", v.clone()), ("b", v)]), "2026-01-01T00:00:05Z");
        assert_eq!(phase(&s), "Running");
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        assert_eq!(app(&s, 1).started, Some(true));
        assert_eq!(app(&s, 0).container_id.as_deref(), Some("libcontainer://c0"));
    }

    #[test]
    fn crash_loop_shows_last_state_and_counts_as_stopped() {
        let p = pod("Always", &[], &["a"]);
        let v = ContainerView {
            current: Some(attempt(3, exited(1))),
            previous: None,
            waiting: Some((
                "CrashLoopBackOff".into(),
                "back-off 40s restarting failed container=a pod=p_default(u)".into(),
            )),
            ..Default::default()
        };
        let s = pod_status(&p, &view(&[("a", v)]), "2026-01-01T00:00:05Z");
        assert_eq!(phase(&s), "Running", "restartPolicy Always keeps a crashing pod Running");
        let c = app(&s, 0);
        assert_eq!(waiting_reason(c), "CrashLoopBackOff");
        assert_eq!(c.last_state.as_ref().unwrap().terminated.as_ref().unwrap().exit_code, 1);
        assert_eq!(c.restart_count, 3);
    }

    #[test]
    fn phases_of_finished_pods_follow_the_restart_policy() {
        let ok = ContainerView { current: Some(attempt(0, exited(0))), ..Default::default() };
        let bad = ContainerView { current: Some(attempt(0, exited(2))), ..Default::default() };
        assert_eq!(phase(&pod_status(&pod("Never", &[], &["a"]), &view(&[("a", ok.clone())]), "t")), "Succeeded");
        assert_eq!(phase(&pod_status(&pod("OnFailure", &[], &["a"]), &view(&[("a", ok)]), "t")), "Succeeded");
        assert_eq!(phase(&pod_status(&pod("Never", &[], &["a"]), &view(&[("a", bad.clone())]), "t")), "Failed");
        let s = pod_status(&pod("Never", &[], &["a"]), &view(&[("a", bad)]), "t");
        assert_eq!(terminated(app(&s, 0)).reason.as_deref(), Some("Error"));
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
    }

    #[test]
    fn init_containers_hold_the_pod_in_pending() {
        let p = pod("Always", &["i1", "i2"], &["a"]);
        let done = ContainerView { current: Some(attempt(0, exited(0))), ..Default::default() };
        let run = ContainerView { current: Some(attempt(0, running())), ..Default::default() };
        let s = pod_status(&p, &view(&[("i1", done.clone()), ("i2", run)]), "t");
        assert_eq!(phase(&s), "Pending");
        assert_eq!(cond(&s, "Initialized").message.as_deref(), Some("containers with incomplete status: [i2]"));
        let init0 = &s.init_container_statuses.as_ref().unwrap()[0];
        assert_eq!(terminated(init0).reason.as_deref(), Some("Completed"));
        assert_eq!(waiting_reason(app(&s, 0)), "ContainerCreating");
        let s = pod_status(&p, &view(&[("i1", done.clone()), ("i2", done)]), "t");
        assert_eq!(cond(&s, "Initialized").status, "True");
    }

    #[test]
    fn a_failed_init_container_fails_a_never_restart_pod() {
        let p = pod("Never", &["i1"], &["a"]);
        let bad = ContainerView { current: Some(attempt(0, exited(1))), ..Default::default() };
        assert_eq!(phase(&pod_status(&p, &view(&[("i1", bad)]), "t")), "Failed");
    }

    #[test]
    fn transition_times_change_only_with_the_status() {
        let mut p = pod("Always", &[], &["a"]);
        let s1 = pod_status(&p, &view(&[]), "2026-01-01T00:00:05Z");
        p.status = Some(s1);
        let s2 = pod_status(&p, &view(&[]), "2026-01-01T00:09:00Z");
        assert_eq!(cond(&s2, "Ready").last_transition_time, time("2026-01-01T00:00:05Z"));
        let v = ContainerView { current: Some(attempt(0, running())), ..Default::default() };
        let s3 = pod_status(&p, &view(&[("a", v)]), "2026-01-01T00:10:00Z");
        assert_eq!(cond(&s3, "Ready").last_transition_time, time("2026-01-01T00:10:00Z"));
    }

    /// The runtime's times carry nanoseconds; the status holds them as they are written and
    /// read back (whole seconds), so a status read back from the API equals the one written.
    #[test]
    fn times_are_whole_seconds() {
        assert_eq!(time("2016-10-06T00:07:09.669794202Z"), time("2016-10-06T00:07:09Z"));
        assert_eq!(time_str(&time("2016-10-06T00:07:09.669794202Z").unwrap()), "2016-10-06T00:07:09Z");
        assert_eq!(time("soon"), None);
    }

    /// The JSON written through `pods/status` keeps the fields the kubelet always sent: an
    /// empty `lastState`, `ready` and `started` when false, no `podIP` when there is none.
    #[test]
    fn the_written_json_keeps_upstreams_shape() {
        let p = pod("Always", &[], &["a"]);
        let mut v = view(&[]);
        v.pod_ip = None;
        let s = serde_json::to_value(pod_status(&p, &v, "2026-01-01T00:00:05Z")).unwrap();
        let c = &s["containerStatuses"][0];
        assert_eq!(c["lastState"], serde_json::json!({}));
        assert_eq!(c["ready"], false);
        assert_eq!(c["started"], false);
        assert_eq!(c["restartCount"], 0);
        assert_eq!(c["imageID"], "");
        assert!(s.get("podIP").is_none() && s.get("initContainerStatuses").is_none());
        assert_eq!(s["hostIPs"], serde_json::json!([{"ip": "10.0.0.1"}]));
        assert_eq!(s["startTime"], "2026-01-01T00:00:00Z");
        assert_eq!(s["qosClass"], "BestEffort");
    }
}
