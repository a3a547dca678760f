//! End to end: `kubectl drain` (cordon, then eviction through `pods/eviction`) against the
//! real binary as root in its own network namespace, held back by a PodDisruptionBudget
//! until the budget is relaxed; and a ResourceQuota refusing a pod.

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::cluster::Cluster;

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: main\n        image: busybox:1.36\n        command: [sh, -c, 'trap \"exit 0\" TERM; sleep 3600 & wait']\n";

const BUDGET: &str =
    "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: web}\nspec:\n  minAvailable: 2\n  selector: {matchLabels: {app: web}}\n";

#[test]
fn drain_is_held_by_a_disruption_budget_until_it_is_relaxed() {
    let c = Cluster::start_with("drain", &[], |data| {
        let drop_dir = data.join("agent/images");
        std::fs::create_dir_all(&drop_dir).unwrap();
        common::busybox::oci_archive(&drop_dir, "docker.io/library/busybox:1.36");
    });
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(DEPLOYMENT));
    let out = c.k(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(BUDGET));
    c.wait_for(
        &["pdb", "web"],
        "{.status.currentHealthy}/{.status.desiredHealthy}/{.status.disruptionsAllowed}",
        Duration::from_secs(30),
        |s| s == "2/2/0",
    );
    let printed = c.k(&["get", "pdb", "web"]);
    assert!(printed.contains("ALLOWED DISRUPTIONS"), "{printed}");

    // Blocked: drain cordons the node, then retries the refused evictions until its timeout.
    let out = c.kubectl(&["drain", "e2e-node", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=5s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "drain should time out:\n{stderr}");
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}\n{}",
        c.log()
    );
    assert_eq!(c.k(&["get", "node", "e2e-node", "-o", "jsonpath={.spec.unschedulable}"]), "true");
    let running = c.k(&["get", "pods", "-l", "app=web", "--field-selector=status.phase=Running", "-o", "name"]);
    assert_eq!(running.lines().count(), 2, "{running}");
    let before = running;

    // Relaxed: the evictions go through and the drain completes.
    c.k(&["patch", "pdb", "web", "--type=merge", "-p", "{\"spec\":{\"minAvailable\":0}}"]);
    c.wait_for(&["pdb", "web"], "{.status.disruptionsAllowed}", Duration::from_secs(30), |s| s == "2");
    let out = c.kubectl(&["drain", "e2e-node", "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=120s"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}\n{}", String::from_utf8_lossy(&out.stderr), c.log());
    assert!(stdout.contains("evicted") && stdout.contains("node/e2e-node drained"), "{stdout}");
    // The pods drained are gone (their Deployment makes new ones).
    let now = c.k(&["get", "pods", "-l", "app=web", "-o", "name"]);
    for old in before.lines() {
        assert!(!now.lines().any(|l| l == old), "{old} survived the drain: {now}");
    }
    // The replacements wait: the only node is cordoned.
    c.wait_for(
        &["pods", "-l", "app=web"],
        "{range .items[*]}{.spec.nodeName}|{.status.conditions[?(@.type==\"PodScheduled\")].message};{end}",
        Duration::from_secs(30),
        |s| {
            let pods: Vec<&str> = s.split(';').filter(|p| !p.is_empty()).collect();
            pods.len() == 2
                && pods.iter().all(|p| p.starts_with("|0/1 nodes are available: 1 node(s) were unschedulable."))
        },
    );
    c.k(&["uncordon", "e2e-node"]);
    assert_eq!(c.k(&["get", "node", "e2e-node", "-o", "jsonpath={.spec.unschedulable}"]), "");
    let out = c.k(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");

    // A ResourceQuota refuses the pod that would exceed it, in upstream's words.
    c.k(&["create", "namespace", "small"]);
    c.k(&["create", "quota", "one-pod", "-n", "small", "--hard=pods=1"]);
    c.wait_for(&["quota", "one-pod", "-n", "small"], "{.status.used.pods}", Duration::from_secs(30), |s| s == "0");
    c.wait_for(&["serviceaccount", "default", "-n", "small"], "{.metadata.name}", Duration::from_secs(30), |s| {
        s == "default"
    });
    let run = |name: &str| {
        c.kubectl(&[
            "run",
            name,
            "-n",
            "small",
            "--image=busybox:1.36",
            "--restart=Never",
            "--command",
            "--",
            "sleep",
            "60",
        ])
    };
    let first = run("a");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let second = run("b");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        stderr.contains(
            "Error from server (Forbidden): pods \"b\" is forbidden: exceeded quota: one-pod, requested: pods=1, used: pods=1, limited: pods=1"
        ),
        "{stderr}"
    );
    c.wait_for(&["quota", "one-pod", "-n", "small"], "{.status.used.pods}", Duration::from_secs(30), |s| s == "1");
}
