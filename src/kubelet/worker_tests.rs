//! The pod worker's state machine against a fake node and a fake API.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::backend::*;
use super::fake::{exited, Events, FakeApi, FakeBackend};
use super::status::{time, AttemptState};
use super::worker::*;

struct Rig {
    backend: Arc<FakeBackend>,
    api: Arc<FakeApi>,
    events: Arc<Events>,
    worker: Worker,
}

fn rig(pod: Pod, images: &[&str]) -> Rig {
    let backend = Arc::new(FakeBackend::new(images));
    let api = Arc::new(FakeApi::default());
    let events = Arc::new(Events::default());
    let worker = Worker::new(pod, "10.0.0.1".into(), backend.clone(), api.clone(), events.clone());
    Rig { backend, api, events, worker }
}

fn pod(policy: &str, inits: &[&str], apps: &[&str], pull: &str) -> Pod {
    let c = |n: &&str| Container {
        name: n.to_string(),
        image: Some("busybox:1".into()),
        image_pull_policy: Some(pull.into()),
        ..Default::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            uid: Some("u1".into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            node_name: Some("n".into()),
            termination_grace_period_seconds: Some(30),
            init_containers: Some(inits.iter().map(c).collect()),
            containers: apps.iter().map(c).collect(),
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn phase(s: &PodStatus) -> &str {
    s.phase.as_deref().unwrap_or("")
}

/// The status of app container `i`.
fn app(s: &PodStatus, i: usize) -> &ContainerStatus {
    &s.container_statuses.as_ref().expect("containerStatuses")[i]
}

/// The reason and message a container waits with.
fn waiting(c: &ContainerStatus) -> (&str, &str) {
    let w = c.state.as_ref().and_then(|s| s.waiting.as_ref()).expect("a waiting container");
    (w.reason.as_deref().unwrap_or(""), w.message.as_deref().unwrap_or(""))
}

/// The exit code and reason of a container that ended.
fn terminated(c: &ContainerStatus) -> (i32, &str) {
    let t = c.state.as_ref().and_then(|s| s.terminated.as_ref()).expect("a terminated container");
    (t.exit_code, t.reason.as_deref().unwrap_or(""))
}

/// The exit code of the container's last attempt.
fn last_exit(c: &ContainerStatus) -> i32 {
    c.last_state.as_ref().and_then(|s| s.terminated.as_ref()).expect("a last state").exit_code
}

impl Rig {
    fn last_status(&self) -> PodStatus {
        self.api.statuses.lock().unwrap().last().cloned().expect("a status was written")
    }
    fn exit(&self, container: &str, code: i32) {
        let mut n = self.backend.node.lock().unwrap();
        for c in n.containers.iter_mut().filter(|c| c.container == container) {
            c.state = exited(code);
        }
    }
    fn reasons(&self) -> Vec<String> {
        self.events.reasons()
    }
}

#[tokio::test]
async fn a_pod_runs_and_reports_running_with_its_ip() {
    let mut r = rig(pod("Always", &[], &["a", "b"], "IfNotPresent"), &["busybox:1"]);
    assert_eq!(r.worker.sync().await, Next::After(Duration::from_millis(1000)));
    let s = r.last_status();
    assert_eq!(phase(&s), "Running");
    assert_eq!(s.pod_ip.as_deref(), Some("10.42.0.7"));
    let started = app(&s, 1).state.as_ref().and_then(|s| s.running.as_ref()).and_then(|r| r.started_at.as_ref());
    assert_eq!(started, time("2026-01-01T00:00:00Z").as_ref());
    assert_eq!(r.backend.node.lock().unwrap().containers.len(), 2);
    assert!(r.reasons().starts_with(&["Pulled".to_string(), "Created".to_string(), "Started".to_string()]));
    // Nothing changed: no new write, no new containers.
    let writes = r.api.statuses.lock().unwrap().len();
    r.worker.sync().await;
    assert_eq!(r.api.statuses.lock().unwrap().len(), writes);
    assert_eq!(r.backend.node.lock().unwrap().containers.len(), 2);
}

#[tokio::test]
async fn a_crashing_container_restarts_then_backs_off() {
    let mut r = rig(pod("Always", &[], &["a"], "IfNotPresent"), &["busybox:1"]);
    r.worker.sync().await;
    r.exit("a", 1);
    r.worker.sync().await;
    // First failure: restarted at once.
    let s = r.last_status();
    assert_eq!(app(&s, 0).restart_count, 1);
    assert_eq!(last_exit(app(&s, 0)), 1);
    assert_eq!(r.backend.node.lock().unwrap().removed.len(), 1, "the old container is removed");
    r.exit("a", 1);
    let next = r.worker.sync().await;
    let s = r.last_status();
    let (reason, message) = waiting(app(&s, 0));
    assert_eq!(reason, "CrashLoopBackOff");
    assert!(message.starts_with("back-off 10s restarting failed container=a pod=p_default(u1)"), "{message}");
    assert!(matches!(next, Next::After(_)));
    r.worker.sync().await;
    assert_eq!(r.backend.node.lock().unwrap().containers.len(), 1, "no restart while backing off");
    assert_eq!(app(&r.last_status(), 0).restart_count, 1);
    assert!(r.reasons().contains(&"BackOff".to_string()));
    assert_eq!(phase(&s), "Running");
}

#[tokio::test]
async fn on_failure_and_never_policies() {
    let mut r = rig(pod("OnFailure", &[], &["a"], "IfNotPresent"), &["busybox:1"]);
    r.worker.sync().await;
    r.exit("a", 0);
    r.worker.sync().await;
    assert_eq!(phase(&r.last_status()), "Succeeded");
    assert_eq!(r.backend.node.lock().unwrap().containers.len(), 1, "not restarted");
    let mut r = rig(pod("Never", &[], &["a"], "IfNotPresent"), &["busybox:1"]);
    r.worker.sync().await;
    r.exit("a", 3);
    r.worker.sync().await;
    assert_eq!(phase(&r.last_status()), "Failed");
    assert_eq!(terminated(app(&r.last_status(), 0)), (3, "Error"));
    r.worker.sync().await;
    assert!(r.backend.node.lock().unwrap().sandboxes.is_empty(), "a finished pod's sandbox goes");
}

#[tokio::test]
async fn init_containers_run_first_one_by_one() {
    let mut r = rig(pod("Always", &["i1", "i2"], &["a"], "IfNotPresent"), &["busybox:1"]);
    r.worker.sync().await;
    let names =
        |r: &Rig| r.backend.node.lock().unwrap().containers.iter().map(|c| c.container.clone()).collect::<Vec<_>>();
    assert_eq!(names(&r), vec!["i1"]);
    assert_eq!(phase(&r.last_status()), "Pending");
    r.exit("i1", 0);
    r.worker.sync().await;
    assert_eq!(names(&r), vec!["i1", "i2"]);
    r.exit("i2", 0);
    r.worker.sync().await;
    assert_eq!(names(&r), vec!["i1", "i2", "a"]);
    let s = r.last_status();
    assert_eq!(phase(&s), "Running");
    assert_eq!(terminated(&s.init_container_statuses.as_ref().unwrap()[1]), (0, "Completed"));
}

#[tokio::test]
async fn a_missing_image_with_never_waits_with_err_image_never_pull() {
    let mut r = rig(pod("Always", &[], &["a"], "Never"), &[]);
    r.worker.sync().await;
    assert_eq!(
        waiting(app(&r.last_status(), 0)),
        ("ErrImageNeverPull", "Container image \"busybox:1\" is not present with pull policy of Never")
    );
    r.worker.sync().await;
    assert_eq!(r.reasons().iter().filter(|x| *x == "ErrImageNeverPull").count(), 1, "the event is not repeated");
}

#[tokio::test]
async fn a_failed_pull_backs_off() {
    let mut r = rig(pod("Always", &[], &["a"], "IfNotPresent"), &[]);
    r.worker.sync().await;
    assert_eq!(waiting(app(&r.last_status(), 0)).0, "ErrImagePull");
    r.worker.sync().await;
    assert_eq!(waiting(app(&r.last_status(), 0)), ("ImagePullBackOff", "Back-off pulling image \"busybox:1\""));
}

#[tokio::test]
async fn config_errors_wait_and_then_start() {
    let mut r = rig(pod("Always", &[], &["a"], "IfNotPresent"), &["busybox:1"]);
    r.backend.node.lock().unwrap().missing_config_map = Some("cfg".into());
    r.worker.sync().await;
    assert_eq!(waiting(app(&r.last_status(), 0)), ("CreateContainerConfigError", "configmap \"cfg\" not found"));
    r.backend.node.lock().unwrap().missing_config_map = None;
    r.worker.sync().await;
    assert_eq!(phase(&r.last_status()), "Running");
}

#[tokio::test]
async fn deletion_stops_within_the_grace_period_and_completes_the_delete() {
    let mut p = pod("Always", &[], &["a"], "IfNotPresent");
    let mut r = rig(p.clone(), &["busybox:1"]);
    r.worker.sync().await;
    p.metadata.deletion_timestamp = time("2026-01-01T00:00:00Z");
    p.metadata.deletion_grace_period_seconds = Some(7);
    r.worker.update(p);
    assert_eq!(r.worker.sync().await, Next::Done);
    let n = r.backend.node.lock().unwrap();
    assert_eq!(n.stopped[0].1, Duration::from_secs(7));
    assert!(n.containers.is_empty() && n.sandboxes.is_empty());
    assert!(*r.api.deleted.lock().unwrap());
    assert!(r.events.0.lock().unwrap().iter().any(|e| e.1 == "Killing" && e.2 == "Stopping container a"));
}

#[tokio::test]
async fn adopted_containers_are_not_started_again() {
    let mut r = rig(pod("Always", &[], &["a"], "IfNotPresent"), &["busybox:1"]);
    let rec = ContainerRecord {
        id: "old".into(),
        pod_uid: "u1".into(),
        container: "a".into(),
        attempt: 2,
        image: "busybox:1".into(),
        image_id: "x".into(),
        state: AttemptState::Running { started_at: "2026-01-01T00:00:00Z".into() },
    };
    r.backend.node.lock().unwrap().containers.push(rec.clone());
    r.worker.adopt(vec![rec]);
    r.worker.sync().await;
    assert_eq!(r.backend.node.lock().unwrap().containers.len(), 1);
    let s = r.last_status();
    assert_eq!(app(&s, 0).restart_count, 2);
    assert_eq!(app(&s, 0).container_id.as_deref(), Some("libcontainer://old"));
    assert_eq!(phase(&s), "Running");
}

#[tokio::test]
async fn an_adopted_container_that_never_started_is_replaced() {
    // k3rs stopped between creating the container and starting it.
    let mut r = rig(pod("Always", &[], &["a"], "IfNotPresent"), &["busybox:1"]);
    let rec = ContainerRecord {
        id: "stale".into(),
        pod_uid: "u1".into(),
        container: "a".into(),
        attempt: 0,
        image: "busybox:1".into(),
        image_id: "x".into(),
        state: AttemptState::Created,
    };
    r.backend.node.lock().unwrap().containers.push(rec.clone());
    r.worker.adopt(vec![rec]);
    r.worker.sync().await;
    {
        let node = r.backend.node.lock().unwrap();
        assert_eq!(node.removed, ["stale"]);
        assert_eq!(node.containers.len(), 1);
        assert_ne!(node.containers[0].id, "stale");
        assert!(matches!(node.containers[0].state, AttemptState::Running { .. }));
    }
    let s = r.last_status();
    assert_eq!(phase(&s), "Running");
    assert_eq!(app(&s, 0).restart_count, 1, "the unstarted container was an attempt");
}

#[tokio::test]
async fn starting_waits_for_a_start_slot_and_gives_it_back() {
    let slots = Arc::new(tokio::sync::Semaphore::new(1));
    let mut r = rig(pod("Always", &[], &["a"], "IfNotPresent"), &["busybox:1"]);
    r.worker = r.worker.with_start_slots(slots.clone());
    let taken = slots.clone().acquire_owned().await.unwrap();
    // Every slot is busy: the pass waits before making the sandbox.
    assert!(tokio::time::timeout(Duration::from_millis(50), r.worker.sync()).await.is_err());
    assert!(r.backend.node.lock().unwrap().containers.is_empty());
    drop(taken);
    r.worker.sync().await;
    assert_eq!(phase(&r.last_status()), "Running");
    // The slot is free again once the pass is over.
    assert_eq!(slots.available_permits(), 1);
}

#[tokio::test]
async fn a_pod_whose_sandbox_died_gets_a_new_one_and_its_containers_restart_in_it() {
    let mut r = rig(pod("Always", &[], &["a"], "IfNotPresent"), &["busybox:1"]);
    r.worker.sync().await;
    let first = r.backend.node.lock().unwrap().containers[0].id.clone();
    r.backend.node.lock().unwrap().dead_sandboxes.push("u1".into());
    r.worker.sync().await;
    let n = r.backend.node.lock().unwrap();
    assert_eq!(n.stopped, [(first.clone(), Duration::ZERO)], "the container in the dead sandbox is killed");
    assert_eq!(n.sandboxes, ["u1", "u1"], "a new sandbox is made");
    assert!(n.dead_sandboxes.is_empty());
    assert!(n.containers.iter().any(|c| c.id != first && matches!(c.state, AttemptState::Running { .. })));
    drop(n);
    assert!(r.reasons().contains(&"SandboxChanged".to_string()));
    let s = r.last_status();
    assert_eq!(phase(&s), "Running");
    assert_eq!(app(&s, 0).restart_count, 1);
    assert_eq!(last_exit(app(&s, 0)), 137);
}

/// A pod whose container `a` has exec readiness and liveness probes every second.
fn probed_pod() -> Pod {
    let mut p = pod("Always", &[], &["a"], "IfNotPresent");
    let c = &mut p.spec.as_mut().unwrap().containers[0];
    let probe = |failures: i32| {
        serde_json::from_value(
            serde_json::json!({"exec": {"command": ["check"]}, "periodSeconds": 1, "failureThreshold": failures}),
        )
        .unwrap()
    };
    c.readiness_probe = Some(probe(1));
    c.liveness_probe = Some(probe(2));
    p
}

fn event_messages(r: &Rig) -> Vec<String> {
    r.events.0.lock().unwrap().iter().map(|e| format!("{} {}", e.1, e.2)).collect()
}

#[tokio::test]
async fn readiness_gates_ready_and_a_failed_liveness_probe_restarts_the_container() {
    let mut r = rig(probed_pod(), &["busybox:1"]);
    r.worker.sync().await;
    let s = r.last_status();
    assert!(app(&s, 0).ready, "the first readiness probe passed in the same pass");
    assert_eq!(r.backend.node().execs.len(), 2, "one readiness and one liveness run");
    let cond = |s: &PodStatus, t: &str| {
        s.conditions.iter().flatten().find(|c| c.type_ == t).map(|c| c.status.clone()).unwrap_or_default()
    };
    assert_eq!(cond(&s, "Ready"), "True");

    // Failing: one readiness failure makes it unready; one liveness failure is not enough.
    r.backend.node().exec_failing = true;
    tokio::time::sleep(Duration::from_millis(1050)).await;
    r.worker.sync().await;
    let s = r.last_status();
    assert!(!app(&s, 0).ready);
    assert_eq!(cond(&s, "Ready"), "False");
    assert!(r.backend.node().stopped.is_empty(), "still live");
    let said = event_messages(&r);
    assert!(said.contains(&"Unhealthy Readiness probe failed: unhealthy\n".to_string()), "{said:?}");
    assert!(said.contains(&"Unhealthy Liveness probe failed: unhealthy\n".to_string()), "{said:?}");

    // The second liveness failure: stopped with the pod's grace period, then restarted.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    r.worker.sync().await;
    assert_eq!(r.backend.node().stopped.len(), 1);
    assert_eq!(r.backend.node().stopped[0].1, Duration::from_secs(30));
    assert!(event_messages(&r).contains(&"Killing Container a failed liveness probe, will be restarted".to_string()));
    r.backend.node().exec_failing = false;
    r.worker.sync().await;
    let s = r.last_status();
    assert_eq!(app(&s, 0).restart_count, 1);
    assert!(app(&s, 0).ready, "the new attempt's first probe passed");
}

#[tokio::test]
async fn a_startup_probe_holds_the_others_back_until_it_passes() {
    let mut p = probed_pod();
    let c = &mut p.spec.as_mut().unwrap().containers[0];
    c.startup_probe = Some(
        serde_json::from_value(
            serde_json::json!({"exec": {"command": ["started"]}, "periodSeconds": 1, "failureThreshold": 30}),
        )
        .unwrap(),
    );
    let mut r = rig(p, &["busybox:1"]);
    r.backend.node().exec_failing = true;
    r.worker.sync().await;
    let s = r.last_status();
    assert_eq!((app(&s, 0).started, app(&s, 0).ready), (Some(false), false));
    let runs: Vec<String> = r.backend.node().execs.iter().map(|(_, c)| c[0].clone()).collect();
    assert_eq!(runs, ["started"], "only the startup probe runs");
    r.backend.node().exec_failing = false;
    tokio::time::sleep(Duration::from_millis(1050)).await;
    r.worker.sync().await;
    let s = r.last_status();
    assert_eq!((app(&s, 0).started, app(&s, 0).ready), (Some(true), true));
    let runs: Vec<String> = r.backend.node().execs.iter().map(|(_, c)| c[0].clone()).collect();
    assert_eq!(runs, ["started", "started", "check", "check"]);
    assert!(r.backend.node().stopped.is_empty());
}

#[tokio::test]
async fn the_pre_stop_hook_runs_before_the_stop_and_uses_up_the_grace_period() {
    let mut p = pod("Always", &[], &["a"], "IfNotPresent");
    p.spec.as_mut().unwrap().containers[0].lifecycle = Some(
        serde_json::from_value(serde_json::json!({"preStop": {"exec": {"command": ["sh", "-c", "drain"]}}})).unwrap(),
    );
    let mut r = rig(p.clone(), &["busybox:1"]);
    r.worker.sync().await;
    let id = r.backend.node().containers[0].id.clone();
    p.metadata.deletion_timestamp = time("2026-01-01T00:00:00Z");
    p.metadata.deletion_grace_period_seconds = Some(7);
    r.worker.update(p);
    assert_eq!(r.worker.sync().await, Next::Done);
    let n = r.backend.node();
    assert_eq!(n.execs, [(id.clone(), vec!["sh".to_string(), "-c".into(), "drain".into()])]);
    // The hook took (almost) nothing: the stop gets what is left of the 7 s.
    assert_eq!(n.stopped.len(), 1);
    assert!(n.stopped[0].1 <= Duration::from_secs(7) && n.stopped[0].1 > Duration::from_secs(6), "{:?}", n.stopped);
}

#[tokio::test]
async fn a_failed_post_start_hook_is_reported_and_the_container_stopped() {
    let mut p = pod("Always", &[], &["a"], "IfNotPresent");
    p.spec.as_mut().unwrap().containers[0].lifecycle =
        Some(serde_json::from_value(serde_json::json!({"postStart": {"exec": {"command": ["setup"]}}})).unwrap());
    let mut r = rig(p, &["busybox:1"]);
    r.backend.node().exec_failing = true;
    r.worker.sync().await;
    let said = event_messages(&r);
    assert!(
        said.contains(&"FailedPostStartHook Exec lifecycle hook ([setup]) for Container \"a\" in Pod \"p_default(u1)\" failed - error: command 'setup' exited with 1: , message: \"unhealthy\\n\"".to_string()),
        "{said:?}"
    );
    assert_eq!(r.backend.node().stopped.len(), 1, "the container is stopped");
    // Its restart policy brings it back, and a passing hook lets it run.
    r.backend.node().exec_failing = false;
    r.worker.sync().await;
    assert_eq!(app(&r.last_status(), 0).restart_count, 1);
    assert_eq!(r.backend.node().stopped.len(), 1);
}
