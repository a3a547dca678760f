//! The pod printer: READY, STATUS and RESTARTS summarise the containers the way
//! `kubectl get pods` always has.
//!
//! STATUS starts from the phase (or `status.reason`), then the init containers speak
//! (`Init:1/3`, `Init:CrashLoopBackOff`, `Init:ExitCode:1`) until the pod is initialized,
//! then the regular containers, last first (`ContainerCreating`, `CrashLoopBackOff`,
//! `Completed`, `Error`, `Signal:9`). A pod being deleted reads `Terminating`, or `Unknown`
//! when its node was lost. Sidecars (init containers with `restartPolicy: Always`) count
//! as containers once started.

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::{col, s, wide, Column, Cx, Printer, Row, AGE, NAME};
use crate::apiserver::table::fields::{age, at, boolean, int, list, name, since, text, timestamp};

pub(crate) const POD: Printer = Printer { group: "", kind: "Pod", columns: COLUMNS, row };

static COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", "Ready containers out of all containers of the pod."),
    col("Status", "string", "A summary of the pod's phase and the states of its containers."),
    col("Restarts", "string", "Container restarts, and how long ago the last one was."),
    AGE,
    wide("IP", "string", "The pod's first IP address."),
    wide("Node", "string", "The node the pod is bound to."),
    wide("Nominated Node", "string", "The node the scheduler nominated for this pod after preemption."),
    wide("Readiness Gates", "string", "Readiness gates that are true out of all readiness gates."),
];

/// Whether the container is an init container run as a sidecar.
fn restartable(init: &[Value], container_name: &str) -> bool {
    init.iter().any(|c| text(c, &["name"]) == container_name && text(c, &["restartPolicy"]) == "Always")
}

/// `when`, if it is later than `latest`.
fn later(latest: &mut Option<OffsetDateTime>, when: Option<OffsetDateTime>) {
    if let Some(t) = when {
        if latest.is_none_or(|l| l < t) {
            *latest = Some(t);
        }
    }
}

fn last_termination(status: &Value) -> Option<OffsetDateTime> {
    let terminated = at(status, &["lastState", "terminated"]).filter(|t| t.is_object())?;
    timestamp(terminated, &["finishedAt"])
}

fn state<'a>(status: &'a Value, which: &str) -> Option<&'a Value> {
    at(status, &["state", which]).filter(|v| v.is_object())
}

fn condition_true(o: &Value, kind: &str) -> bool {
    list(o, &["status", "conditions"])
        .iter()
        .find(|c| text(c, &["type"]) == kind)
        .is_some_and(|c| text(c, &["status"]) == "True")
}

fn has_ready_condition(o: &Value) -> bool {
    list(o, &["status", "conditions"]).iter().any(|c| text(c, &["type"]) == "Ready" && text(c, &["status"]) == "True")
}

/// Why a terminated container stopped, when it gave no reason.
fn exit_description(terminated: &Value) -> String {
    let signal = int(terminated, &["signal"]);
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!("ExitCode:{}", int(terminated, &["exitCode"]))
    }
}

fn row(o: &Value, cx: &Cx) -> Row {
    let phase = text(o, &["status", "phase"]);
    let mut reason = phase.to_string();
    let status_reason = text(o, &["status", "reason"]);
    if !status_reason.is_empty() {
        reason = status_reason.to_string();
    }
    if list(o, &["status", "conditions"])
        .iter()
        .any(|c| text(c, &["type"]) == "PodScheduled" && text(c, &["reason"]) == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let init_specs = list(o, &["spec", "initContainers"]);
    let mut total = list(o, &["spec", "containers"]).len();
    total += init_specs.iter().filter(|c| text(c, &["restartPolicy"]) == "Always").count();

    let mut ready = 0usize;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;
    let mut initializing = false;
    for (i, cs) in list(o, &["status", "initContainerStatuses"]).iter().enumerate() {
        let count = int(cs, &["restartCount"]);
        restarts += count;
        later(&mut last_restart, last_termination(cs));
        let sidecar = restartable(init_specs, text(cs, &["name"]));
        if sidecar {
            sidecar_restarts += count;
            later(&mut last_sidecar_restart, last_termination(cs));
        }
        let terminated = state(cs, "terminated");
        let waiting = state(cs, "waiting");
        if terminated.is_some_and(|t| int(t, &["exitCode"]) == 0) {
            continue;
        }
        if sidecar && boolean(cs, &["started"]) {
            if boolean(cs, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            let why = text(t, &["reason"]);
            reason = if why.is_empty() { format!("Init:{}", exit_description(t)) } else { format!("Init:{why}") };
        } else if let Some(w) = waiting.filter(|w| !matches!(text(w, &["reason"]), "" | "PodInitializing")) {
            reason = format!("Init:{}", text(w, &["reason"]));
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(o, "Initialized") {
        // Once initialized, only sidecars among the init containers still count.
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in list(o, &["status", "containerStatuses"]).iter().rev() {
            restarts += int(cs, &["restartCount"]);
            later(&mut last_restart, last_termination(cs));
            let waiting_reason = state(cs, "waiting").map(|w| text(w, &["reason"])).unwrap_or("");
            let terminated = state(cs, "terminated");
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if let Some(t) = terminated {
                let why = text(t, &["reason"]);
                reason = if why.is_empty() { exit_description(t) } else { why.to_string() };
            } else if boolean(cs, &["ready"]) && state(cs, "running").is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed while others still run is not complete.
        if reason == "Completed" && has_running {
            reason = if has_ready_condition(o) { "Running" } else { "NotReady" }.to_string();
        }
    }

    if crate::apiserver::table::fields::deleting(o) {
        if status_reason == "NodeLost" {
            reason = "Unknown".to_string();
        } else if !matches!(phase, "Succeeded" | "Failed") {
            reason = "Terminating".to_string();
        }
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), cx.now)),
        _ => restarts.to_string(),
    };

    let ip = [text(o, &["status", "podIP"]), list(o, &["status", "podIPs"]).first().map_or("", |p| text(p, &["ip"]))]
        .into_iter()
        .find(|ip| !ip.is_empty())
        .unwrap_or("<none>");
    let or_none = |v: &str| if v.is_empty() { "<none>".to_string() } else { v.to_string() };
    let gates = list(o, &["spec", "readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let met = gates
            .iter()
            .filter(|g| {
                let wanted = text(g, &["conditionType"]);
                list(o, &["status", "conditions"])
                    .iter()
                    .find(|c| text(c, &["type"]) == wanted)
                    .is_some_and(|c| text(c, &["status"]) == "True")
            })
            .count();
        format!("{met}/{}", gates.len())
    };

    let conditions = match phase {
        "Succeeded" => vec![json!({
            "type": "Completed", "status": "True", "reason": "Succeeded",
            "message": "All containers of the pod terminated successfully."
        })],
        "Failed" => vec![json!({
            "type": "Completed", "status": "True", "reason": "Failed",
            "message": "The pod terminated and at least one container failed."
        })],
        _ => Vec::new(),
    };
    Row {
        cells: vec![
            s(name(o)),
            s(format!("{ready}/{total}")),
            s(reason),
            s(restarts_cell),
            s(age(o, cx.now)),
            s(ip),
            s(or_none(text(o, &["spec", "nodeName"]))),
            s(or_none(text(o, &["status", "nominatedNodeName"]))),
            s(readiness_gates),
        ],
        conditions,
    }
}

/// The cells as strings (every pod cell is one).
#[cfg(test)]
fn cells(o: &Value, now: OffsetDateTime) -> Vec<String> {
    row(o, &Cx { now, group: "" }).cells.iter().map(|c| c.as_str().unwrap_or_default().to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;

    fn now() -> OffsetDateTime {
        OffsetDateTime::parse("2025-03-01T12:00:00Z", &Rfc3339).unwrap()
    }

    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "metadata": {"name": "p", "creationTimestamp": "2025-03-01T11:00:00Z"},
            "spec": spec,
            "status": status,
        })
    }

    fn two_containers() -> Value {
        json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]})
    }

    fn running(name: &str, ready: bool) -> Value {
        json!({"name": name, "ready": ready, "restartCount": 0, "state": {"running": {"startedAt": "2025-03-01T11:00:01Z"}}})
    }

    #[test]
    fn running_pod() {
        let p = pod(
            two_containers(),
            json!({"phase": "Running", "podIP": "10.42.0.5", "containerStatuses": [running("a", true), running("b", false)]}),
        );
        assert_eq!(cells(&p, now())[..5], ["p", "1/2", "Running", "0", "60m"]);
        let mut p = p;
        p["spec"]["nodeName"] = json!("node1");
        let c = cells(&p, now());
        assert_eq!(c[5..], ["10.42.0.5", "node1", "<none>", "<none>"]);
    }

    #[test]
    fn pending_pod_has_no_ip_or_node() {
        let p = pod(two_containers(), json!({"phase": "Pending"}));
        assert_eq!(cells(&p, now()), ["p", "0/2", "Pending", "0", "60m", "<none>", "<none>", "<none>", "<none>"]);
    }

    #[test]
    fn waiting_and_terminated_reasons() {
        let waiting = json!({"name": "a", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}});
        let p =
            pod(json!({"containers": [{"name": "a"}]}), json!({"phase": "Pending", "containerStatuses": [waiting]}));
        assert_eq!(cells(&p, now())[2], "ContainerCreating");

        let crash = json!({
            "name": "a", "ready": false, "restartCount": 5,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": "2025-03-01T11:55:00Z"}},
        });
        let p = pod(json!({"containers": [{"name": "a"}]}), json!({"phase": "Running", "containerStatuses": [crash]}));
        let c = cells(&p, now());
        assert_eq!(c[1..4], ["0/1", "CrashLoopBackOff", "5 (5m ago)"]);

        let killed = json!({"name": "a", "state": {"terminated": {"exitCode": 137, "signal": 9}}});
        let p = pod(json!({"containers": [{"name": "a"}]}), json!({"phase": "Running", "containerStatuses": [killed]}));
        assert_eq!(cells(&p, now())[2], "Signal:9");
        let failed = json!({"name": "a", "state": {"terminated": {"exitCode": 3}}});
        let p = pod(json!({"containers": [{"name": "a"}]}), json!({"phase": "Failed", "containerStatuses": [failed]}));
        assert_eq!(cells(&p, now())[2], "ExitCode:3");
        assert_eq!(row(&p, &Cx { now: now(), group: "" }).conditions[0]["reason"], "Failed");
    }

    #[test]
    fn completed_with_a_container_still_running() {
        let done = json!({"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let status = |ready: &str, statuses: Value| json!({"phase": "Running", "conditions": [{"type": "Ready", "status": ready}], "containerStatuses": statuses});
        let both = json!([done.clone(), running("b", true)]);
        assert_eq!(cells(&pod(two_containers(), status("True", both.clone())), now())[1..3], ["1/2", "Running"]);
        assert_eq!(cells(&pod(two_containers(), status("False", both)), now())[2], "NotReady");
        let reversed = json!([running("b", true), done.clone()]);
        assert_eq!(cells(&pod(two_containers(), status("True", reversed)), now())[2], "Running");
        let all_done = json!([done.clone(), done]);
        assert_eq!(cells(&pod(two_containers(), status("False", all_done)), now())[1..3], ["0/2", "Completed"]);
    }

    #[test]
    fn init_containers() {
        let spec = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}]});
        let ok = json!({"name": "i1", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}});
        let running_init = json!({"name": "i2", "state": {"running": {}}});
        let p = pod(spec.clone(), json!({"phase": "Pending", "initContainerStatuses": [ok, running_init]}));
        assert_eq!(cells(&p, now())[1..3], ["0/1", "Init:1/2"]);

        let waiting = json!({"name": "i1", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-03-01T11:58:00Z"}}});
        let p = pod(spec.clone(), json!({"phase": "Pending", "initContainerStatuses": [waiting]}));
        assert_eq!(cells(&p, now())[2..4], ["Init:CrashLoopBackOff", "3 (2m ago)"]);

        let initializing = json!({"name": "i1", "state": {"waiting": {"reason": "PodInitializing"}}});
        let p = pod(spec.clone(), json!({"phase": "Pending", "initContainerStatuses": [initializing]}));
        assert_eq!(cells(&p, now())[2], "Init:0/2");

        let failed = json!({"name": "i1", "state": {"terminated": {"exitCode": 2}}});
        let p = pod(spec.clone(), json!({"phase": "Pending", "initContainerStatuses": [failed]}));
        assert_eq!(cells(&p, now())[2], "Init:ExitCode:2");
        let failed = json!({"name": "i1", "state": {"terminated": {"exitCode": 2, "reason": "OOMKilled"}}});
        let p = pod(spec, json!({"phase": "Pending", "initContainerStatuses": [failed]}));
        assert_eq!(cells(&p, now())[2], "Init:OOMKilled");
    }

    #[test]
    fn sidecars_count_as_containers() {
        let spec = json!({
            "initContainers": [{"name": "proxy", "restartPolicy": "Always"}, {"name": "setup"}],
            "containers": [{"name": "a"}],
        });
        let proxy = json!({"name": "proxy", "started": true, "ready": true, "restartCount": 2,
            "lastState": {"terminated": {"exitCode": 1, "finishedAt": "2025-03-01T11:30:00Z"}},
            "state": {"running": {}}});
        let setup = json!({"name": "setup", "restartCount": 1, "state": {"terminated": {"exitCode": 0}}});
        let status = json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [proxy, setup],
            "containerStatuses": [running("a", true)],
        });
        let c = cells(&pod(spec, status), now());
        // The plain init container's restart no longer counts once the pod is initialized.
        assert_eq!(c[1..4], ["2/2", "Running", "2 (30m ago)"]);
    }

    #[test]
    fn deletion() {
        let mut p = pod(two_containers(), json!({"phase": "Running", "containerStatuses": [running("a", true)]}));
        p["metadata"]["deletionTimestamp"] = json!("2025-03-01T11:59:00Z");
        assert_eq!(cells(&p, now())[2], "Terminating");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells(&p, now())[2], "Unknown");
        let mut done = pod(two_containers(), json!({"phase": "Succeeded"}));
        done["metadata"]["deletionTimestamp"] = json!("2025-03-01T11:59:00Z");
        assert_eq!(cells(&done, now())[2], "Succeeded");
    }

    #[test]
    fn scheduling_gates_and_status_reason() {
        let gated = pod(
            two_containers(),
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}),
        );
        assert_eq!(cells(&gated, now())[2], "SchedulingGated");
        let evicted = pod(two_containers(), json!({"phase": "Failed", "reason": "Evicted"}));
        assert_eq!(cells(&evicted, now())[2], "Evicted");
    }

    #[test]
    fn readiness_gates_and_ips() {
        let spec = json!({"containers": [{"name": "a"}], "readinessGates": [{"conditionType": "x/one"}, {"conditionType": "x/two"}]});
        let status = json!({
            "phase": "Running", "podIPs": [{"ip": "fd00::5"}, {"ip": "10.0.0.5"}], "nominatedNodeName": "n2",
            "conditions": [{"type": "x/one", "status": "True"}, {"type": "x/two", "status": "False"}],
        });
        let c = cells(&pod(spec, status), now());
        assert_eq!(c[5..], ["fd00::5", "<none>", "n2", "1/2"]);
    }
}
