//! A pod's status as the kubelet reports it: a pure function of the pod and what the node
//! knows of its containers (phase, conditions and container statuses by upstream's rules),
//! so every rule is unit-tested without running anything.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

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

fn spec_containers<'a>(pod: &'a Value, list: &str) -> Vec<&'a Value> {
    pod.pointer(&format!("/spec/{list}")).and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}

fn name_of(c: &Value) -> &str {
    c.get("name").and_then(Value::as_str).unwrap_or("")
}

fn terminated_json(t: &Terminated) -> Value {
    let mut m = Map::new();
    m.insert("exitCode".into(), json!(t.exit_code));
    m.insert("reason".into(), json!(t.reason));
    if let Some(msg) = t.message.as_deref().filter(|m| !m.is_empty()) {
        m.insert("message".into(), json!(msg));
    }
    m.insert("startedAt".into(), t.started_at.clone().map(Value::String).unwrap_or(Value::Null));
    m.insert("finishedAt".into(), t.finished_at.clone().map(Value::String).unwrap_or(Value::Null));
    m.insert("containerID".into(), json!(format!("{CONTAINER_ID_PREFIX}{}", t.container_id)));
    json!({ "terminated": Value::Object(m) })
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
fn container_status(spec: &Value, view: Option<&ContainerView>, init: bool) -> (Value, bool, bool) {
    let name = name_of(spec);
    let image = spec.get("image").and_then(Value::as_str).unwrap_or("");
    let view = view.cloned().unwrap_or_default();
    let (state, running, exited_ok) = match (&view.current, &view.waiting) {
        (Some(Attempt { state: AttemptState::Running { started_at }, .. }), _) => {
            (json!({"running": {"startedAt": started_at}}), true, false)
        }
        (Some(Attempt { state: AttemptState::Exited(t), .. }), None) => (terminated_json(t), false, t.exit_code == 0),
        (_, Some((reason, message))) => {
            let mut w = json!({"reason": reason});
            if !message.is_empty() {
                w["message"] = json!(message);
            }
            (json!({ "waiting": w }), false, false)
        }
        (Some(Attempt { state: AttemptState::Created, .. }), None) | (None, None) => {
            let reason = if init { "PodInitializing" } else { "ContainerCreating" };
            (json!({"waiting": {"reason": reason}}), false, false)
        }
    };
    // A container waiting to restart shows the attempt that ended as lastState.
    let last = match (&view.current, &view.waiting) {
        (Some(Attempt { state: AttemptState::Exited(t), .. }), Some(_)) => Some(t.clone()),
        _ => view.previous.clone(),
    };
    let mut s = Map::new();
    s.insert("name".into(), json!(name));
    s.insert("state".into(), state);
    s.insert("lastState".into(), last.as_ref().map(terminated_json).unwrap_or_else(|| json!({})));
    s.insert("ready".into(), json!(running && !init));
    let restart_count = view.current.as_ref().map(|a| a.attempt).unwrap_or(0);
    s.insert("restartCount".into(), json!(restart_count));
    let (img, img_id) = view
        .current
        .as_ref()
        .map(|a| (a.image.clone(), a.image_id.clone()))
        .unwrap_or_else(|| (image.to_string(), String::new()));
    s.insert("image".into(), json!(img));
    s.insert("imageID".into(), json!(img_id));
    if let Some(a) = &view.current {
        s.insert("containerID".into(), json!(format!("{CONTAINER_ID_PREFIX}{}", a.container_id)));
    }
    s.insert("started".into(), json!(running));
    (Value::Object(s), running, exited_ok)
}

/// The pod's status as the kubelet would write it through `pods/status`. Keeps
/// `PodScheduled` and any condition the kubelet does not own from `pod.status`.
pub fn pod_status(pod: &Value, view: &PodView, now: &str) -> Value {
    let restart_policy = pod.pointer("/spec/restartPolicy").and_then(Value::as_str).unwrap_or("Always");
    let inits = spec_containers(pod, "initContainers");
    let apps = spec_containers(pod, "containers");

    // Init containers: done in order; the first not done holds the rest.
    let mut init_statuses = Vec::new();
    let mut pending_init: Vec<String> = Vec::new();
    let mut init_failed = false;
    for c in &inits {
        let v = view.containers.get(name_of(c));
        let (status, _running, ok) = container_status(c, v, true);
        let done = ok && v.is_some_and(|v| v.waiting.is_none());
        if !done {
            pending_init.push(name_of(c).to_string());
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
    for c in &apps {
        let v = view.containers.get(name_of(c));
        let (status, running, ok) = container_status(c, v, false);
        let exited = status.pointer("/state/terminated").is_some();
        let restarting =
            status.pointer("/state/waiting").is_some() && status.pointer("/lastState/terminated").is_some();
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
        if !running {
            unready.push(name_of(c).to_string());
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

    let old_conditions: Vec<Value> =
        pod.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut conditions = Vec::new();
    let mut set = |type_: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let old = old_conditions.iter().find(|c| c["type"] == type_);
        let transition = match old {
            Some(o) if o["status"] == status => o["lastTransitionTime"].clone(),
            _ => json!(now),
        };
        let mut c = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": transition});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
        conditions.push(c);
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
    for c in &old_conditions {
        if !owned.iter().any(|o| c["type"] == *o) {
            conditions.push(c.clone());
        }
    }
    let order = |c: &Value| match c["type"].as_str().unwrap_or("") {
        "PodReadyToStartContainers" => 0,
        "Initialized" => 1,
        "Ready" => 2,
        "ContainersReady" => 3,
        "PodScheduled" => 4,
        _ => 5,
    };
    conditions.sort_by_key(order);

    let mut status = Map::new();
    status.insert("phase".into(), json!(phase));
    status.insert("conditions".into(), Value::Array(conditions));
    if let Some((reason, message)) = &view.failure {
        status.insert("reason".into(), json!(reason));
        status.insert("message".into(), json!(message));
    }
    status.insert("hostIP".into(), json!(view.host_ip));
    status.insert("hostIPs".into(), json!([{"ip": view.host_ip}]));
    if let Some(ip) = &view.pod_ip {
        status.insert("podIP".into(), json!(ip));
        status.insert("podIPs".into(), json!([{"ip": ip}]));
    }
    if let Some(t) = &view.start_time {
        status.insert("startTime".into(), json!(t));
    }
    if !inits.is_empty() {
        status.insert("initContainerStatuses".into(), Value::Array(init_statuses));
    }
    status.insert("containerStatuses".into(), Value::Array(statuses));
    if let Some(q) = pod.pointer("/status/qosClass") {
        status.insert("qosClass".into(), q.clone());
    }
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(policy: &str, inits: &[&str], apps: &[&str]) -> Value {
        let c = |n: &&str| json!({"name": n, "image": "docker.io/library/busybox:1.36"});
        json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"restartPolicy": policy, "initContainers": inits.iter().map(c).collect::<Vec<_>>(), "containers": apps.iter().map(c).collect::<Vec<_>>()},
            "status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z", "lastProbeTime": null}]}
        })
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

    fn cond<'a>(s: &'a Value, t: &str) -> &'a Value {
        s["conditions"].as_array().unwrap().iter().find(|c| c["type"] == t).unwrap()
    }

    #[test]
    fn a_new_pod_is_pending_with_container_creating() {
        let p = pod("Always", &[], &["a"]);
        let s = pod_status(&p, &view(&[]), "2026-01-01T00:00:05Z");
        assert_eq!(s["phase"], "Pending");
        assert_eq!(s["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating");
        assert_eq!(s["containerStatuses"][0]["ready"], false);
        assert_eq!(cond(&s, "Ready")["message"], "containers with unready status: [a]");
        assert_eq!(cond(&s, "PodScheduled")["status"], "True", "PodScheduled is kept");
        assert_eq!(s["podIP"], "10.42.0.5");
    }

    #[test]
    fn running_containers_make_a_ready_running_pod() {
        let p = pod("Always", &[], &["a", "b"]);
        let v = ContainerView { current: Some(attempt(0, running())), ..Default::default() };
        let s = pod_status(&p, &view(&[("a", v.clone()), ("b", v)]), "2026-01-01T00:00:05Z");
        assert_eq!(s["phase"], "Running");
        assert_eq!(cond(&s, "Ready")["status"], "True");
        assert_eq!(cond(&s, "ContainersReady")["status"], "True");
        assert_eq!(s["containerStatuses"][1]["started"], true);
        assert_eq!(s["containerStatuses"][0]["containerID"], "libcontainer://c0");
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
        };
        let s = pod_status(&p, &view(&[("a", v)]), "2026-01-01T00:00:05Z");
        assert_eq!(s["phase"], "Running", "restartPolicy Always keeps a crashing pod Running");
        let c = &s["containerStatuses"][0];
        assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(c["restartCount"], 3);
    }

    #[test]
    fn phases_of_finished_pods_follow_the_restart_policy() {
        let ok = ContainerView { current: Some(attempt(0, exited(0))), ..Default::default() };
        let bad = ContainerView { current: Some(attempt(0, exited(2))), ..Default::default() };
        assert_eq!(pod_status(&pod("Never", &[], &["a"]), &view(&[("a", ok.clone())]), "t")["phase"], "Succeeded");
        assert_eq!(pod_status(&pod("OnFailure", &[], &["a"]), &view(&[("a", ok)]), "t")["phase"], "Succeeded");
        assert_eq!(pod_status(&pod("Never", &[], &["a"]), &view(&[("a", bad.clone())]), "t")["phase"], "Failed");
        let s = pod_status(&pod("Never", &[], &["a"]), &view(&[("a", bad)]), "t");
        assert_eq!(s["containerStatuses"][0]["state"]["terminated"]["reason"], "Error");
        assert_eq!(cond(&s, "Ready")["reason"], "PodCompleted");
    }

    #[test]
    fn init_containers_hold_the_pod_in_pending() {
        let p = pod("Always", &["i1", "i2"], &["a"]);
        let done = ContainerView { current: Some(attempt(0, exited(0))), ..Default::default() };
        let run = ContainerView { current: Some(attempt(0, running())), ..Default::default() };
        let s = pod_status(&p, &view(&[("i1", done.clone()), ("i2", run)]), "t");
        assert_eq!(s["phase"], "Pending");
        assert_eq!(cond(&s, "Initialized")["message"], "containers with incomplete status: [i2]");
        assert_eq!(s["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
        assert_eq!(s["containerStatuses"][0]["state"]["waiting"]["reason"], "ContainerCreating");
        let s = pod_status(&p, &view(&[("i1", done.clone()), ("i2", done)]), "t");
        assert_eq!(cond(&s, "Initialized")["status"], "True");
    }

    #[test]
    fn a_failed_init_container_fails_a_never_restart_pod() {
        let p = pod("Never", &["i1"], &["a"]);
        let bad = ContainerView { current: Some(attempt(0, exited(1))), ..Default::default() };
        assert_eq!(pod_status(&p, &view(&[("i1", bad)]), "t")["phase"], "Failed");
    }

    #[test]
    fn transition_times_change_only_with_the_status() {
        let mut p = pod("Always", &[], &["a"]);
        let s1 = pod_status(&p, &view(&[]), "2026-01-01T00:00:05Z");
        p["status"] = s1;
        let s2 = pod_status(&p, &view(&[]), "2026-01-01T00:09:00Z");
        assert_eq!(cond(&s2, "Ready")["lastTransitionTime"], "2026-01-01T00:00:05Z");
        let v = ContainerView { current: Some(attempt(0, running())), ..Default::default() };
        let s3 = pod_status(&p, &view(&[("a", v)]), "2026-01-01T00:10:00Z");
        assert_eq!(cond(&s3, "Ready")["lastTransitionTime"], "2026-01-01T00:10:00Z");
    }
}
