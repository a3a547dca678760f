//! Printers of workloads and what scales them: apps (deployments, replica sets, stateful
//! sets, daemon sets, controller revisions), batch (jobs, cron jobs), autoscaling
//! (horizontal pod autoscalers in v1 and v2, scale) and policy (disruption budgets).

use serde_json::{json, Value};

use super::{col, n, s, Column, Cx, Printer, Row, AGE, CONTAINERS, IMAGES, NAME, SELECTOR};
use crate::apiserver::table::fields::{
    age, at, bool_ptr, containers_and_images, deleting, format_label_selector, format_labels, human_duration, int,
    list, name, opt_bool, opt_int, opt_text, selector_string, since, text, timestamp,
};
use crate::apiserver::table::quantity;

/// `spec.replicas`, which upstream defaults to 1.
fn replicas(o: &Value) -> i64 {
    opt_int(o, &["spec", "replicas"]).unwrap_or(1)
}

fn template_containers(o: &Value) -> (String, String) {
    containers_and_images(list(o, &["spec", "template", "spec", "containers"]))
}

pub(crate) const DEPLOYMENT: Printer = Printer {
    group: "apps",
    kind: "Deployment",
    columns: &[
        NAME,
        col("Ready", "string", "Ready pods out of desired pods."),
        col("Up-to-date", "string", "Pods running the latest pod template."),
        col("Available", "string", "Pods available to serve."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: |o, cx| {
        let (names, images) = template_containers(o);
        let selector = selector_string(at(o, &["spec", "selector"])).unwrap_or_else(|_| "<invalid>".to_string());
        Row::new(vec![
            s(name(o)),
            s(format!("{}/{}", int(o, &["status", "readyReplicas"]), replicas(o))),
            n(int(o, &["status", "updatedReplicas"])),
            n(int(o, &["status", "availableReplicas"])),
            s(age(o, cx.now)),
            s(names),
            s(images),
            s(selector),
        ])
    },
};

pub(crate) const REPLICA_SET: Printer = Printer {
    group: "apps",
    kind: "ReplicaSet",
    columns: &[
        NAME,
        col("Desired", "integer", "Desired number of pods."),
        col("Current", "integer", "Number of pods the replica set has."),
        col("Ready", "integer", "Number of ready pods."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: |o, cx| {
        let (names, images) = template_containers(o);
        Row::new(vec![
            s(name(o)),
            n(replicas(o)),
            n(int(o, &["status", "replicas"])),
            n(int(o, &["status", "readyReplicas"])),
            s(age(o, cx.now)),
            s(names),
            s(images),
            s(format_label_selector(at(o, &["spec", "selector"]))),
        ])
    },
};

pub(crate) const STATEFUL_SET: Printer = Printer {
    group: "apps",
    kind: "StatefulSet",
    columns: &[NAME, col("Ready", "string", "Ready pods out of desired pods."), AGE, CONTAINERS, IMAGES],
    row: |o, cx| {
        let (names, images) = template_containers(o);
        Row::new(vec![
            s(name(o)),
            s(format!("{}/{}", int(o, &["status", "readyReplicas"]), replicas(o))),
            s(age(o, cx.now)),
            s(names),
            s(images),
        ])
    },
};

pub(crate) const DAEMON_SET: Printer = Printer {
    group: "apps",
    kind: "DaemonSet",
    columns: &[
        NAME,
        col("Desired", "integer", "Nodes that should run the daemon pod."),
        col("Current", "integer", "Nodes running at least one daemon pod."),
        col("Ready", "integer", "Nodes whose daemon pod is ready."),
        col("Up-to-date", "integer", "Nodes running the latest daemon pod."),
        col("Available", "integer", "Nodes whose daemon pod is available."),
        col("Node Selector", "string", "Labels a node needs to run the daemon pod."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: |o, cx| {
        let (names, images) = template_containers(o);
        Row::new(vec![
            s(name(o)),
            n(int(o, &["status", "desiredNumberScheduled"])),
            n(int(o, &["status", "currentNumberScheduled"])),
            n(int(o, &["status", "numberReady"])),
            n(int(o, &["status", "updatedNumberScheduled"])),
            n(int(o, &["status", "numberAvailable"])),
            s(format_labels(at(o, &["spec", "template", "spec", "nodeSelector"]))),
            s(age(o, cx.now)),
            s(names),
            s(images),
            s(format_label_selector(at(o, &["spec", "selector"]))),
        ])
    },
};

/// `kind.group/name` of the object's controller, lower-cased (`daemonset.apps/fluentd`).
fn controller_of(o: &Value) -> String {
    let owners = list(o, &["metadata", "ownerReferences"]);
    let Some(owner) = owners.iter().find(|r| r.get("controller").and_then(Value::as_bool) == Some(true)) else {
        return "<none>".to_string();
    };
    let kind = text(owner, &["kind"]);
    let owner_name = text(owner, &["name"]);
    let group = text(owner, &["apiVersion"]).rsplit_once('/').map_or("", |(g, _)| g);
    match (kind.is_empty(), group.is_empty()) {
        (true, true) => owner_name.to_string(),
        (_, true) => format!("{}/{owner_name}", kind.to_lowercase()),
        (_, false) => format!("{}.{}/{owner_name}", kind.to_lowercase(), group.to_lowercase()),
    }
}

pub(crate) const CONTROLLER_REVISION: Printer = Printer {
    group: "apps",
    kind: "ControllerRevision",
    columns: &[
        NAME,
        col("Controller", "string", "The object that owns the revision."),
        col("Revision", "string", "The revision number."),
        AGE,
    ],
    row: |o, cx| Row::new(vec![s(name(o)), s(controller_of(o)), n(int(o, &["revision"])), s(age(o, cx.now))]),
};

/// Whether the job's first condition of this type is true.
fn job_condition(o: &Value, kind: &str) -> bool {
    list(o, &["status", "conditions"])
        .iter()
        .find(|c| text(c, &["type"]) == kind)
        .is_some_and(|c| text(c, &["status"]) == "True")
}

fn job_row(o: &Value, cx: &Cx) -> Row {
    let succeeded = int(o, &["status", "succeeded"]);
    let completions = match opt_int(o, &["spec", "completions"]) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match opt_int(o, &["spec", "parallelism"]).unwrap_or(1) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let duration = match (timestamp(o, &["status", "startTime"]), timestamp(o, &["status", "completionTime"])) {
        (None, _) => String::new(),
        (Some(start), None) => since(Some(start), cx.now),
        (Some(start), Some(done)) => human_duration(done - start),
    };
    let status = if job_condition(o, "Complete") {
        "Complete"
    } else if job_condition(o, "Failed") {
        "Failed"
    } else if deleting(o) {
        "Terminating"
    } else if job_condition(o, "Suspended") {
        "Suspended"
    } else if job_condition(o, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = template_containers(o);
    Row::new(vec![
        s(name(o)),
        s(status),
        s(completions),
        s(duration),
        s(age(o, cx.now)),
        s(names),
        s(images),
        s(format_label_selector(at(o, &["spec", "selector"]))),
    ])
}

pub(crate) const JOB: Printer = Printer {
    group: "batch",
    kind: "Job",
    columns: &[
        NAME,
        col("Status", "string", "Running, Complete, Failed, Suspended, FailureTarget or Terminating."),
        col("Completions", "string", "Succeeded pods out of the completions wanted."),
        col("Duration", "string", "How long the job ran, or has been running."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: job_row,
};

pub(crate) const CRON_JOB: Printer = Printer {
    group: "batch",
    kind: "CronJob",
    columns: &[
        NAME,
        col("Schedule", "string", "The cron schedule."),
        col("Timezone", "string", "The time zone of the schedule."),
        col("Suspend", "boolean", "Whether new runs are suspended."),
        col("Active", "integer", "Jobs running now."),
        col("Last Schedule", "string", "Time since a job was last scheduled."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    row: |o, cx| {
        let last = match timestamp(o, &["status", "lastScheduleTime"]) {
            Some(t) => since(Some(t), cx.now),
            None => "<none>".to_string(),
        };
        let template = at(o, &["spec", "jobTemplate", "spec"]).unwrap_or(&Value::Null);
        let (names, images) = containers_and_images(list(template, &["template", "spec", "containers"]));
        Row::new(vec![
            s(name(o)),
            s(text(o, &["spec", "schedule"])),
            s(opt_text(o, &["spec", "timeZone"]).unwrap_or("<none>")),
            // Upstream defaults suspend to false.
            s(bool_ptr(Some(opt_bool(o, &["spec", "suspend"]).unwrap_or(false)))),
            n(list(o, &["status", "active"]).len() as i64),
            s(last),
            s(age(o, cx.now)),
            s(names),
            s(images),
            s(format_label_selector(at(template, &["selector"]))),
        ])
    },
};

/// A quantity behind a Go pointer: `<nil>` when unset, as Go prints it.
fn qptr(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "<nil>".to_string(),
        some => quantity::canonical(some),
    }
}

/// The metrics of an autoscaler as `autoscaling/v2` spells them: a `v1` object's CPU
/// target and current utilisation become one resource metric, as upstream converts them.
fn hpa_metrics(o: &Value) -> (Vec<Value>, Vec<Value>) {
    if let Some(metrics) = at(o, &["spec", "metrics"]).and_then(Value::as_array) {
        return (metrics.clone(), list(o, &["status", "currentMetrics"]).to_vec());
    }
    let Some(target) = opt_int(o, &["spec", "targetCPUUtilizationPercentage"]) else {
        return (Vec::new(), Vec::new());
    };
    let spec = json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}});
    let status = match opt_int(o, &["status", "currentCPUUtilizationPercentage"]) {
        Some(current) => {
            vec![json!({"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}})]
        }
        None => Vec::new(),
    };
    (vec![spec], status)
}

/// One metric as `current/target`: `cpu: 50%/80%`, `1k/2k (avg)`, `<unknown>/10`.
fn hpa_metric(spec: &Value, status: Option<&Value>) -> String {
    let unknown = || "<unknown>".to_string();
    // The status entry for the same source, when the status has one at this index.
    let current = |source: &str| status.and_then(|st| st.get(source)).filter(|v| v.is_object());
    match text(spec, &["type"]) {
        source_type @ ("External" | "Object") => {
            let source = if source_type == "External" { "external" } else { "object" };
            let target = at(spec, &[source, "target"]).unwrap_or(&Value::Null);
            match target.get("averageValue").filter(|v| !v.is_null()) {
                Some(avg) => {
                    let cur = current(source)
                        .and_then(|c| at(c, &["current", "averageValue"]))
                        .filter(|v| !v.is_null())
                        .map_or_else(unknown, |v| quantity::canonical(Some(v)));
                    format!("{cur}/{} (avg)", quantity::canonical(Some(avg)))
                }
                None => {
                    let cur = current(source).map_or_else(unknown, |c| qptr(at(c, &["current", "value"])));
                    format!("{cur}/{}", qptr(target.get("value")))
                }
            }
        }
        "Pods" => {
            let cur = current("pods").map_or_else(unknown, |c| qptr(at(c, &["current", "averageValue"])));
            format!("{cur}/{}", qptr(at(spec, &["pods", "target", "averageValue"])))
        }
        source_type @ ("Resource" | "ContainerResource") => {
            let source = if source_type == "Resource" { "resource" } else { "containerResource" };
            let resource = text(spec, &[source, "name"]);
            let target = at(spec, &[source, "target"]).unwrap_or(&Value::Null);
            match target.get("averageValue").filter(|v| !v.is_null()) {
                Some(avg) => {
                    let cur = current(source).map_or_else(unknown, |c| qptr(at(c, &["current", "averageValue"])));
                    format!("{resource}: {cur}/{}", quantity::canonical(Some(avg)))
                }
                None => {
                    let cur = current(source)
                        .and_then(|c| opt_int(c, &["current", "averageUtilization"]))
                        .map_or_else(unknown, |u| format!("{u}%"));
                    let goal = opt_int(target, &["averageUtilization"])
                        .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                    format!("{resource}: {cur}/{goal}")
                }
            }
        }
        _ => "<unknown type>".to_string(),
    }
}

/// Up to two metrics, then `+ N more...`; `<none>` without metrics.
pub(crate) fn hpa_targets(o: &Value) -> String {
    const MAX: usize = 2;
    let (specs, statuses) = hpa_metrics(o);
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let all: Vec<String> = specs.iter().enumerate().map(|(i, spec)| hpa_metric(spec, statuses.get(i))).collect();
    if all.len() > MAX {
        format!("{} + {} more...", all[..MAX].join(", "), all.len() - MAX)
    } else {
        all.join(", ")
    }
}

pub(crate) const HPA: Printer = Printer {
    group: "autoscaling",
    kind: "HorizontalPodAutoscaler",
    columns: &[
        NAME,
        col("Reference", "string", "The object being scaled, as Kind/name."),
        col("Targets", "string", "Current and target values of the metrics scaled on."),
        col("MinPods", "string", "The fewest replicas the autoscaler keeps."),
        col("MaxPods", "string", "The most replicas the autoscaler sets."),
        col("Replicas", "string", "Replicas the target has now."),
        AGE,
    ],
    row: |o, cx| {
        let reference = format!(
            "{}/{}",
            text(o, &["spec", "scaleTargetRef", "kind"]),
            text(o, &["spec", "scaleTargetRef", "name"])
        );
        // Upstream defaults minReplicas to 1.
        let min = opt_int(o, &["spec", "minReplicas"]).unwrap_or(1);
        Row::new(vec![
            s(name(o)),
            s(reference),
            s(hpa_targets(o)),
            s(min.to_string()),
            n(int(o, &["spec", "maxReplicas"])),
            n(int(o, &["status", "currentReplicas"])),
            s(age(o, cx.now)),
        ])
    },
};

pub(crate) const SCALE: Printer = Printer {
    group: "autoscaling",
    kind: "Scale",
    columns: &[
        Column { format: "", ..NAME },
        col("Desired", "integer", "Desired replicas."),
        col("Available", "integer", "Replicas the object has."),
        AGE,
    ],
    row: |o, cx| {
        Row::new(vec![
            s(name(o)),
            n(int(o, &["spec", "replicas"])),
            n(int(o, &["status", "replicas"])),
            s(age(o, cx.now)),
        ])
    },
};

/// An int-or-string value; `N/A` when unset.
fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".to_string(),
    }
}

pub(crate) const PDB: Printer = Printer {
    group: "policy",
    kind: "PodDisruptionBudget",
    columns: &[
        NAME,
        col("Min Available", "string", "Pods that must stay available, as a number or a percentage."),
        col("Max Unavailable", "string", "Pods that may be unavailable, as a number or a percentage."),
        col("Allowed Disruptions", "integer", "Pods that may be disrupted now."),
        AGE,
    ],
    row: |o, cx| {
        Row::new(vec![
            s(name(o)),
            s(int_or_string(at(o, &["spec", "minAvailable"]))),
            s(int_or_string(at(o, &["spec", "maxUnavailable"]))),
            n(int(o, &["status", "disruptionsAllowed"])),
            s(age(o, cx.now)),
        ])
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    fn cx() -> Cx {
        Cx { now: OffsetDateTime::parse("2025-03-01T12:00:00Z", &Rfc3339).unwrap(), group: "apps" }
    }

    fn deployment(status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": "2025-03-01T11:59:15Z"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}, {"name": "log", "image": "busybox"}]}}},
            "status": status,
        })
    }

    #[test]
    fn deployment_readiness() {
        let rolling =
            deployment(json!({"replicas": 3, "readyReplicas": 2, "updatedReplicas": 1, "availableReplicas": 2}));
        assert_eq!(
            (DEPLOYMENT.row)(&rolling, &cx()).cells,
            [
                json!("web"),
                json!("2/3"),
                json!(1),
                json!(2),
                json!("45s"),
                json!("nginx,log"),
                json!("nginx:1.27,busybox"),
                json!("app=web")
            ]
        );
        let fresh = deployment(json!({}));
        assert_eq!((DEPLOYMENT.row)(&fresh, &cx()).cells[1..4], [json!("0/3"), json!(0), json!(0)]);
        let mut scaled_down = deployment(json!({}));
        scaled_down["spec"]["replicas"] = json!(0);
        assert_eq!((DEPLOYMENT.row)(&scaled_down, &cx()).cells[1], "0/0");
        let mut defaulted = deployment(json!({"readyReplicas": 1}));
        defaulted["spec"].as_object_mut().unwrap().remove("replicas");
        defaulted["spec"]["selector"] = json!({"matchExpressions": [{"key": "a", "operator": "Bogus"}]});
        let c = (DEPLOYMENT.row)(&defaulted, &cx()).cells;
        assert_eq!(c[1], "1/1");
        assert_eq!(c[7], "<invalid>");
        defaulted["spec"]["selector"] = json!({});
        assert_eq!((DEPLOYMENT.row)(&defaulted, &cx()).cells[7], "");
    }

    #[test]
    fn replica_and_stateful_and_daemon_sets() {
        let rs = deployment(json!({"replicas": 3, "readyReplicas": 1}));
        assert_eq!((REPLICA_SET.row)(&rs, &cx()).cells[1..5], [json!(3), json!(3), json!(1), json!("45s")]);
        let sts = deployment(json!({"readyReplicas": 3}));
        assert_eq!((STATEFUL_SET.row)(&sts, &cx()).cells[1], "3/3");
        let ds = json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"k": "v"}},
            "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "containers": []}}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1, "updatedNumberScheduled": 2, "numberAvailable": 1}});
        assert_eq!(
            (DAEMON_SET.row)(&ds, &cx()).cells,
            [
                json!("d"),
                json!(2),
                json!(2),
                json!(1),
                json!(2),
                json!(1),
                json!("kubernetes.io/os=linux"),
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!("k=v")
            ]
        );
    }

    #[test]
    fn controller_revisions_name_their_owner() {
        let cr = json!({"metadata": {"name": "d-7f", "ownerReferences": [
            {"apiVersion": "v1", "kind": "Pod", "name": "x"},
            {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "d", "controller": true}]}, "revision": 4});
        assert_eq!((CONTROLLER_REVISION.row)(&cr, &cx()).cells[1..3], [json!("daemonset.apps/d"), json!(4)]);
        let orphan = json!({"metadata": {"name": "o"}, "revision": 1});
        assert_eq!((CONTROLLER_REVISION.row)(&orphan, &cx()).cells[1], "<none>");
    }

    #[test]
    fn jobs() {
        let job = |spec: Value, status: Value| {
            let o = json!({"metadata": {"name": "j", "creationTimestamp": "2025-03-01T11:00:00Z"}, "spec": spec, "status": status});
            job_row(&o, &cx()).cells
        };
        let running = job(
            json!({"completions": 3, "parallelism": 1}),
            json!({"succeeded": 1, "startTime": "2025-03-01T11:00:05Z"}),
        );
        assert_eq!(running[1..5], [json!("Running"), json!("1/3"), json!("59m"), json!("60m")]);
        let done = job(
            json!({"completions": 1}),
            json!({"succeeded": 1, "startTime": "2025-03-01T11:00:00Z", "completionTime": "2025-03-01T11:00:42Z",
                "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(done[1..4], [json!("Complete"), json!("1/1"), json!("42s")]);
        let parallel = job(json!({"parallelism": 4}), json!({"conditions": [{"type": "Suspended", "status": "True"}]}));
        assert_eq!(parallel[1..4], [json!("Suspended"), json!("0/1 of 4"), json!("")]);
        let failing = job(json!({}), json!({"conditions": [{"type": "FailureTarget", "status": "True"}]}));
        assert_eq!(failing[1..3], [json!("FailureTarget"), json!("0/1")]);
        let failed = job(
            json!({}),
            json!({"conditions": [{"type": "Failed", "status": "True"}, {"type": "Complete", "status": "False"}]}),
        );
        assert_eq!(failed[1], "Failed");
    }

    #[test]
    fn cron_jobs() {
        let cj = json!({"metadata": {"name": "c"}, "spec": {"schedule": "*/5 * * * *", "suspend": true,
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "x", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "c-1"}], "lastScheduleTime": "2025-03-01T11:55:00Z"}});
        assert_eq!(
            (CRON_JOB.row)(&cj, &cx()).cells,
            [
                json!("c"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("True"),
                json!(1),
                json!("5m"),
                json!("<unknown>"),
                json!("x"),
                json!("busybox"),
                json!("<none>")
            ]
        );
        let never = json!({"metadata": {"name": "c"}, "spec": {"schedule": "@daily", "timeZone": "Etc/UTC"}});
        assert_eq!(
            (CRON_JOB.row)(&never, &cx()).cells[2..6],
            [json!("Etc/UTC"), json!("False"), json!(0), json!("<none>")]
        );
    }

    #[test]
    fn autoscaler_targets() {
        let v2 = json!({"spec": {"metrics": [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}},
            {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "1024Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1000"}}},
        ]}, "status": {"currentMetrics": [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 55}}},
        ]}});
        assert_eq!(hpa_targets(&v2), "cpu: 55%/80%, memory: <unknown>/1Gi + 1 more...");
        let ext = json!({"spec": {"metrics": [
            {"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "AverageValue", "averageValue": "30"}}},
            {"type": "Object", "object": {"metric": {"name": "r"}, "target": {"type": "Value", "value": "2k"}}},
        ]}, "status": {"currentMetrics": [
            {"type": "External", "external": {"current": {"averageValue": "12"}}},
            {"type": "Object", "object": {"current": {"value": "1500"}}},
        ]}});
        assert_eq!(hpa_targets(&ext), "12/30 (avg), 1500/2k");
        let v1 = json!({"metadata": {"name": "h"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "maxReplicas": 5, "targetCPUUtilizationPercentage": 50}, "status": {"currentReplicas": 2}});
        assert_eq!(
            (HPA.row)(&v1, &cx()).cells,
            [
                json!("h"),
                json!("Deployment/web"),
                json!("cpu: <unknown>/50%"),
                json!("1"),
                json!(5),
                json!(2),
                json!("<unknown>")
            ]
        );
        assert_eq!(hpa_targets(&json!({"spec": {}})), "<none>");
    }

    #[test]
    fn disruption_budgets() {
        let pdb =
            json!({"metadata": {"name": "p"}, "spec": {"minAvailable": "50%"}, "status": {"disruptionsAllowed": 1}});
        assert_eq!((PDB.row)(&pdb, &cx()).cells[1..4], [json!("50%"), json!("N/A"), json!(1)]);
        let pdb = json!({"metadata": {"name": "p"}, "spec": {"maxUnavailable": 1}});
        assert_eq!((PDB.row)(&pdb, &cx()).cells[1..4], [json!("N/A"), json!("1"), json!(0)]);
    }
}
