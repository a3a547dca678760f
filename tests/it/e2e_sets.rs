//! End to end with StatefulSets and DaemonSets: `k3rs server` (the real binary, as root) in
//! its own network namespace, driven by the real kubectl: create, `rollout status`, `set
//! image`, `rollout history`, scale; the claims of a volumeClaimTemplate (left Pending: there
//! is no provisioner).

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::Cluster;

fn cluster(tag: &str) -> Cluster {
    Cluster::start_with(tag, &[], |data| {
        let drop_dir = data.join("agent/images");
        std::fs::create_dir_all(&drop_dir).unwrap();
        common::busybox::oci_archive(&drop_dir, "docker.io/library/busybox:1.36");
        common::busybox::oci_archive(&drop_dir, "docker.io/library/busybox:1.37");
    })
}

/// A pod spec whose container stops at once on SIGTERM.
const POD: &str = "    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: main\n        image: busybox:1.36\n        command: [sh, -c, 'trap \"exit 0\" TERM; sleep 3600 & wait']\n";

fn statefulset(name: &str, replicas: u32, extra: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  serviceName: {name}\n  selector: {{matchLabels: {{app: {name}}}}}\n{extra}  template:\n    metadata: {{labels: {{app: {name}}}}}\n{POD}"
    )
}

fn daemonset(name: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: {name}}}\nspec:\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n{POD}"
    )
}

fn rollout_status(c: &Cluster, what: &str) -> String {
    let out = c.k(&["rollout", "status", what, "--timeout=120s"]);
    assert!(
        out.contains("successfully rolled out") || out.contains("roll out complete") || out.contains("update complete"),
        "{out}"
    );
    out
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn images(c: &Cluster, selector: &str) -> Vec<String> {
    let out = c.k(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.spec.containers[0].image} {end}",
    ]);
    let mut v: Vec<String> = out.split_whitespace().map(str::to_string).collect();
    v.sort();
    v
}

#[test]
fn a_statefulset_rolls_out_and_scales_with_kubectl() {
    let c = cluster("sts");
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(&statefulset("web", 3, "")));
    let t0 = Instant::now();
    rollout_status(&c, "statefulset/web");
    eprintln!("create → rolled out (3 ordered replicas) in {:?}", t0.elapsed());
    assert_eq!(images(&c, "app=web"), ["web-0=busybox:1.36", "web-1=busybox:1.36", "web-2=busybox:1.36"]);
    let ready = c.k(&["get", "sts", "web", "-o", "jsonpath={.status.readyReplicas}/{.status.currentReplicas}"]);
    assert_eq!(ready, "3/3");
    let hostname = c.k(&["exec", "web-1", "--", "hostname"]);
    assert_eq!(hostname.trim(), "web-1");

    c.k(&["set", "image", "statefulset/web", "main=busybox:1.37"]);
    rollout_status(&c, "statefulset/web");
    wait_until("every pod at the new image", Duration::from_secs(60), || {
        images(&c, "app=web") == ["web-0=busybox:1.37", "web-1=busybox:1.37", "web-2=busybox:1.37"]
    });
    let revs = c.k(&["get", "sts", "web", "-o", "jsonpath={.status.currentRevision} {.status.updateRevision}"]);
    let (current, update) = revs.split_once(' ').unwrap();
    assert_eq!(current, update, "{revs}");
    let history = c.k(&["rollout", "history", "statefulset/web"]);
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");
    assert_eq!(c.k(&["get", "controllerrevisions", "-l", "app=web", "-o", "name"]).lines().count(), 2);

    // Undo: the first template again, as revision 3.
    c.k(&["rollout", "undo", "statefulset/web"]);
    rollout_status(&c, "statefulset/web");
    wait_until("the old image back", Duration::from_secs(60), || {
        images(&c, "app=web") == ["web-0=busybox:1.36", "web-1=busybox:1.36", "web-2=busybox:1.36"]
    });

    c.k(&["scale", "statefulset/web", "--replicas=1"]);
    wait_until("one pod", Duration::from_secs(60), || images(&c, "app=web").len() == 1);
    assert_eq!(images(&c, "app=web"), ["web-0=busybox:1.36"]);
    let events =
        c.k(&["get", "events", "--field-selector", "involvedObject.name=web", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("SuccessfulCreate") && events.contains("SuccessfulDelete"), "{events}");
}

#[test]
fn a_statefulset_makes_the_claims_of_its_templates() {
    let c = cluster("stspvc");
    let claims = "  volumeClaimTemplates:\n  - metadata: {name: data}\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources: {requests: {storage: 1Gi}}\n";
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(&statefulset("db", 2, claims)));
    // No provisioner: the claim stays Pending and so does web-0; the next pod waits for it.
    c.wait_for(&["pvc", "data-db-0"], "{.metadata.name}", Duration::from_secs(30), |v| v == "data-db-0");
    let volume = c.k(&[
        "get",
        "pod",
        "db-0",
        "-o",
        "jsonpath={.spec.volumes[?(@.name==\"data\")].persistentVolumeClaim.claimName}",
    ]);
    assert_eq!(volume, "data-db-0");
    std::thread::sleep(Duration::from_secs(1));
    assert!(c.kubectl(&["get", "pod", "db-1"]).status.code() != Some(0), "db-1 waits for db-0");
}

#[test]
fn a_daemonset_rolls_out_with_kubectl() {
    let c = cluster("ds");
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(&daemonset("agent")));
    rollout_status(&c, "daemonset/agent");
    let counts = c.k(&[
        "get",
        "ds",
        "agent",
        "-o",
        "jsonpath={.status.desiredNumberScheduled}/{.status.currentNumberScheduled}/{.status.numberReady}/{.status.numberAvailable}",
    ]);
    assert_eq!(counts, "1/1/1/1");
    let node = c.k(&["get", "pods", "-l", "app=agent", "-o", "jsonpath={.items[0].spec.nodeName}"]);
    assert!(!node.is_empty(), "the scheduler bound it");
    c.k(&["set", "image", "daemonset/agent", "main=busybox:1.37"]);
    rollout_status(&c, "daemonset/agent");
    wait_until("the new image", Duration::from_secs(60), || {
        let i = images(&c, "app=agent");
        i.len() == 1 && i[0].ends_with("=busybox:1.37")
    });
    let history = c.k(&["rollout", "history", "daemonset/agent"]);
    assert!(history.contains("1 ") && history.contains("2 "), "{history}");
}
