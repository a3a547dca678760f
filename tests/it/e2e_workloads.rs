//! End to end with workloads: `k3rs server` (the real binary, as root) in its own network
//! namespace, driven by the real kubectl through a Deployment's life: create, rollout
//! status, set image, history, undo, scale, pause/resume, restart, Recreate, and a SIGKILL of
//! k3rs in the middle of a rollout.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::Cluster;

fn cluster(tag: &str) -> Cluster {
    Cluster::start_with(tag, &[], |data| {
        let drop_dir = data.join("agent/images");
        std::fs::create_dir_all(&drop_dir).unwrap();
        // Two tags of one image, so that a rollout changes the template.
        common::busybox::oci_archive(&drop_dir, "docker.io/library/busybox:1.36");
        common::busybox::oci_archive(&drop_dir, "docker.io/library/busybox:1.37");
    })
}

/// A Deployment whose pods stop at once on SIGTERM (so that scaling down is quick).
fn deployment(name: &str, replicas: u32, strategy: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  strategy: {{type: {strategy}}}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: main\n        image: busybox:1.36\n        command: [sh, -c, 'trap \"exit 0\" TERM; sleep 3600 & wait']\n"
    )
}

fn rollout_status(c: &Cluster, name: &str) -> String {
    let out = c.kubectl(&["rollout", "status", &format!("deployment/{name}"), "--timeout=120s"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() || !stdout.contains("successfully rolled out") {
        // What the cluster looked like, to tell which part did not finish.
        let state = c.kubectl(&["get", "deploy,rs,pods", "-o", "wide"]);
        let statuses = c.kubectl(&[
            "get",
            "deploy,rs,pods",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name} {.status}{\"\\n\"}{end}",
        ]);
        panic!(
            "rollout status: {stdout}{}\n--- objects ---\n{}\n{}\n--- server log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&state.stdout),
            String::from_utf8_lossy(&statuses.stdout),
            c.log()
        );
    }
    stdout
}

/// Names of the live pods (not being deleted) with `selector`.
fn live_pods(c: &Cluster, selector: &str) -> Vec<String> {
    let out = c.k(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[?(@.metadata.deletionTimestamp)]}-{.metadata.name} {end}{range .items[*]}{.metadata.name} {end}",
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    let dying: Vec<&str> = words.iter().filter_map(|w| w.strip_prefix('-')).collect();
    words.iter().filter(|w| !w.starts_with('-') && !dying.contains(w)).map(|w| w.to_string()).collect()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_deployment_rolls_out_back_and_scales_with_kubectl() {
    let c = cluster("deploy");
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(&deployment("web", 3, "RollingUpdate")));
    let t0 = Instant::now();
    rollout_status(&c, "web");
    eprintln!("create → rolled out (3 replicas) in {:?}", t0.elapsed());
    let ready = c.k(&["get", "deploy", "web", "-o", "jsonpath={.status.readyReplicas}/{.status.availableReplicas}"]);
    assert_eq!(ready, "3/3");
    let conds = c.k(&["get", "deploy", "web", "-o", "jsonpath={range .status.conditions[*]}{.type}={.reason} {end}"]);
    assert!(conds.contains("Available=MinimumReplicasAvailable"), "{conds}");
    assert!(conds.contains("Progressing=NewReplicaSetAvailable"), "{conds}");

    // set image → a second revision.
    c.k(&["set", "image", "deployment/web", "main=busybox:1.37"]);
    rollout_status(&c, "web");
    let rs = c.k(&["get", "rs", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.replicas} {end}"]);
    let mut sizes: Vec<&str> = rs.split_whitespace().collect();
    sizes.sort();
    assert_eq!(sizes, ["0", "3"], "{rs}");
    let history = c.k(&["rollout", "history", "deployment/web"]);
    assert!(history.contains("REVISION") && history.contains("1 ") && history.contains("2 "), "{history}");
    let rev2 = c.k(&["rollout", "history", "deployment/web", "--revision=2"]);
    assert!(rev2.contains("busybox:1.37"), "{rev2}");

    // undo → the first template again, as revision 3.
    c.k(&["rollout", "undo", "deployment/web"]);
    rollout_status(&c, "web");
    let image = c.k(&["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);
    assert_eq!(image, "busybox:1.36");
    let rev =
        c.k(&["get", "deploy", "web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"]);
    assert_eq!(rev, "3");
    assert_eq!(c.k(&["get", "rs", "-l", "app=web", "-o", "name"]).lines().count(), 2, "the old set was reused");

    // scale 5 → 0.
    c.k(&["scale", "deployment/web", "--replicas=5"]);
    rollout_status(&c, "web");
    assert_eq!(live_pods(&c, "app=web").len(), 5);
    c.k(&["scale", "deployment/web", "--replicas=0"]);
    wait_until("no pods", Duration::from_secs(60), || live_pods(&c, "app=web").is_empty());
    c.k(&["scale", "deployment/web", "--replicas=2"]);
    rollout_status(&c, "web");

    // pause: a template change waits; resume: it rolls out.
    c.k(&["rollout", "pause", "deployment/web"]);
    c.k(&["set", "image", "deployment/web", "main=busybox:1.37"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.k(&["get", "rs", "-l", "app=web", "-o", "name"]).lines().count(), 2);
    let reason =
        c.k(&["get", "deploy", "web", "-o", "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}"]);
    assert_eq!(reason, "DeploymentPaused");
    c.k(&["rollout", "resume", "deployment/web"]);
    rollout_status(&c, "web");
    // restart: a new ReplicaSet with the restartedAt annotation.
    c.k(&["rollout", "restart", "deployment/web"]);
    rollout_status(&c, "web");
    assert_eq!(c.k(&["get", "rs", "-l", "app=web", "-o", "name"]).lines().count(), 3);
    let events =
        c.k(&["get", "events", "--field-selector", "involvedObject.name=web", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("ScalingReplicaSet"), "{events}");
}

#[test]
fn recreate_replaces_all_pods_at_once() {
    let c = cluster("recreate");
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(&deployment("db", 2, "Recreate")));
    rollout_status(&c, "db");
    let before = live_pods(&c, "app=db");
    c.k(&["set", "image", "deployment/db", "main=busybox:1.37"]);
    rollout_status(&c, "db");
    let after = live_pods(&c, "app=db");
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|p| !before.contains(p)), "{before:?} -> {after:?}");
}

#[test]
fn a_rollout_survives_a_sigkill_of_k3rs() {
    let mut c = cluster("deploykill");
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(&deployment("web", 4, "RollingUpdate")));
    rollout_status(&c, "web");
    c.k(&["set", "image", "deployment/web", "main=busybox:1.37"]);
    std::thread::sleep(Duration::from_millis(300));
    c.kill();
    c.launch();
    rollout_status(&c, "web");
    // No duplicates: exactly the replicas, all of the new template.
    wait_until("4 pods of the new template", Duration::from_secs(60), || {
        let pods = live_pods(&c, "app=web");
        let images =
            c.k(&["get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.containers[0].image} {end}"]);
        pods.len() == 4 && images.split_whitespace().all(|i| i == "busybox:1.37")
    });
    let ready = c.k(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.status.replicas}/{.status.updatedReplicas}/{.status.availableReplicas}",
    ]);
    assert_eq!(ready, "4/4/4");
}

#[test]
fn the_python_client_sees_upstreams_rollout_conditions() {
    let c = cluster("pyroll");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/python_rollout.py");
    let out =
        c.ns.command(crate::common::python())
            .arg(script)
            .env("KUBECONFIG", c.kubeconfig())
            .output()
            .expect("run python3");
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}\n--- server log ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}

/// A ReplicaSet of `n` pods labelled `app=<name>`, for the cascade tests.
fn replicaset(name: &str, n: u32) -> String {
    format!(
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {{name: {name}}}\nspec:\n  replicas: {n}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: main\n        image: busybox:1.36\n        command: [sh, -c, 'trap \"exit 0\" TERM; sleep 3600 & wait']\n"
    )
}

#[test]
fn cascading_deletes_follow_the_propagation_policy() {
    let c = cluster("cascade");
    let apply = |m: &str| c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(m));
    for name in ["bg", "fg", "orphan"] {
        apply(&replicaset(name, 2));
    }
    for name in ["bg", "fg", "orphan"] {
        wait_until(&format!("2 pods of {name}"), Duration::from_secs(60), || {
            live_pods(&c, &format!("app={name}")).len() == 2
        });
    }
    c.k(&["delete", "rs", "bg", "--cascade=background"]);
    wait_until("bg's pods gone", Duration::from_secs(60), || live_pods(&c, "app=bg").is_empty());

    // Foreground: kubectl waits until the pods are gone, then the ReplicaSet goes.
    c.k(&["delete", "rs", "fg", "--cascade=foreground", "--timeout=60s"]);
    assert!(live_pods(&c, "app=fg").is_empty());
    assert!(!c.kubectl(&["get", "rs", "fg"]).status.success(), "the owner is gone after its dependents");

    // Orphan: the pods stay, without an owner.
    c.k(&["delete", "rs", "orphan", "--cascade=orphan"]);
    std::thread::sleep(Duration::from_secs(2));
    let pods = live_pods(&c, "app=orphan");
    assert_eq!(pods.len(), 2);
    for p in pods {
        let owners = c.k(&["get", "pod", &p, "-o", "jsonpath={.metadata.ownerReferences}"]);
        assert!(owners.is_empty() || owners == "[]", "{p} still has owners: {owners}");
    }

    // A Deployment deleted as kubectl does it by default takes its ReplicaSets and pods.
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(&deployment("dep", 2, "RollingUpdate")));
    rollout_status(&c, "dep");
    c.k(&["delete", "deployment", "dep"]);
    wait_until("the deployment's pods gone", Duration::from_secs(60), || live_pods(&c, "app=dep").is_empty());
    assert!(c.k(&["get", "rs", "-l", "app=dep", "-o", "name"]).is_empty());
}

#[test]
fn jobs_run_to_completion_or_to_their_backoff_limit() {
    let c = cluster("jobs");
    let apply = |m: &str| c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(m));
    apply("apiVersion: batch/v1\nkind: Job\nmetadata: {name: five}\nspec:\n  completions: 5\n  parallelism: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: main, image: 'busybox:1.36', command: [sh, -c, 'sleep 1']}]\n");
    apply("apiVersion: batch/v1\nkind: Job\nmetadata: {name: doomed}\nspec:\n  backoffLimit: 1\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: main, image: 'busybox:1.36', command: [sh, -c, 'exit 3']}]\n");
    apply("apiVersion: batch/v1\nkind: Job\nmetadata: {name: indexed}\nspec:\n  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: main, image: 'busybox:1.36', command: [sh, -c, 'echo index $JOB_COMPLETION_INDEX']}]\n");
    // At most 2 at once: sampled while it runs.
    let start = Instant::now();
    let mut most = 0;
    loop {
        let active = c.k(&["get", "job", "five", "-o", "jsonpath={.status.active}"]);
        most = most.max(active.parse::<u32>().unwrap_or(0));
        let succeeded = c.k(&["get", "job", "five", "-o", "jsonpath={.status.succeeded}"]);
        if succeeded == "5" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "five: {succeeded} succeeded");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(most <= 2, "{most} active at once");
    c.k(&["wait", "--for=condition=Complete", "job/five", "--timeout=60s"]);
    c.k(&["wait", "--for=condition=Failed", "job/doomed", "--timeout=120s"]);
    let reason = c.k(&["get", "job", "doomed", "-o", "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}"]);
    assert_eq!(reason, "BackoffLimitExceeded");
    c.k(&["wait", "--for=condition=Complete", "job/indexed", "--timeout=60s"]);
    assert_eq!(c.k(&["get", "job", "indexed", "-o", "jsonpath={.status.completedIndexes}"]), "0-2");
    let logs = c.k(&["logs", "-l", "job-name=indexed", "--tail=1"]);
    for i in 0..3 {
        assert!(logs.contains(&format!("index {i}")), "{logs}");
    }
    // ttlSecondsAfterFinished: 0 deletes the finished Job.
    apply("apiVersion: batch/v1\nkind: Job\nmetadata: {name: brief}\nspec:\n  ttlSecondsAfterFinished: 0\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: main, image: 'busybox:1.36', command: ['true']}]\n");
    wait_until("the brief job deleted", Duration::from_secs(60), || {
        !c.kubectl(&["get", "job", "brief"]).status.success()
    });
}

#[test]
fn a_cronjob_makes_jobs_on_schedule_and_keeps_its_history() {
    let c = cluster("cron");
    c.ok(
        Path::new("kubectl"),
        &["apply", "-f", "-"],
        Some("apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: tick}\nspec:\n  schedule: '*/1 * * * *'\n  successfulJobsHistoryLimit: 1\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers: [{name: main, image: 'busybox:1.36', command: ['true']}]\n"),
    );
    // By hand, as kubectl can: a Job from the CronJob's template.
    c.k(&["create", "job", "tick-manual", "--from=cronjob/tick"]);
    c.k(&["wait", "--for=condition=Complete", "job/tick-manual", "--timeout=60s"]);
    // On schedule: within the next minute boundary (and a margin).
    wait_until("a scheduled job", Duration::from_secs(100), || {
        c.k(&["get", "cronjob", "tick", "-o", "jsonpath={.status.lastScheduleTime}"]).len() > 10
    });
    wait_until("a successful run", Duration::from_secs(60), || {
        c.k(&["get", "cronjob", "tick", "-o", "jsonpath={.status.lastSuccessfulTime}"]).len() > 10
    });
    let jobs = c.k(&[
        "get",
        "jobs",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.ownerReferences[0].kind}\n{end}",
    ]);
    assert!(jobs.lines().any(|l| l.starts_with("tick-") && l.ends_with("CronJob") && !l.contains("manual")), "{jobs}");
    // successfulJobsHistoryLimit 1: of the two finished Jobs it owns, one is kept.
    wait_until("the history trimmed to 1", Duration::from_secs(60), || {
        let owned = c.k(&[
            "get",
            "jobs",
            "-o",
            "jsonpath={range .items[?(@.metadata.ownerReferences[0].kind==\"CronJob\")]}{.metadata.name}\n{end}",
        ]);
        owned.lines().count() == 1
    });
}
