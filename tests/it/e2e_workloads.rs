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
    let out = c.k(&["rollout", "status", &format!("deployment/{name}"), "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    out
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
