//! `cargo bench --bench encode`: what writing JSON bodies in upstream's key order costs
//! (`k3rs::apiserver::encode`) against serde_json's own writer of the same `Value`, which
//! is what the API server used before (sorted keys, no trailing newline). A Pod as a GET
//! answers it, and a list of 500 ConfigMaps as the list path decodes them for a selector.

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn pod(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("web-{i}"), "namespace": "default", "uid": "6d1c1f38-6a5e-4a4c-9b1e-2f1f6f0c1a2b",
            "resourceVersion": "12345", "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"app": "web", "pod-template-hash": "5d4f8c7b9"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4f8c7b9", "uid": "u", "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80, "protocol": "TCP"}],
            "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
            "nodeName": "node-a", "schedulerName": "default-scheduler", "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]},
        "status": {"phase": "Running", "podIP": "10.42.0.7", "hostIP": "192.168.1.10", "qosClass": "BestEffort", "startTime": "2025-01-01T00:00:01Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:03Z"}],
            "containerStatuses": [{"name": "web", "ready": true, "restartCount": 0, "image": "nginx:1.27", "imageID": "sha256:abc", "started": true,
                "state": {"running": {"startedAt": "2025-01-01T00:00:02Z"}}}]}
    })
}

/// Nanoseconds per call of `f`, the best of five runs of `n` calls.
fn per_call(n: usize, mut f: impl FnMut() -> usize) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let mut bytes = 0;
        for _ in 0..n {
            bytes += f();
        }
        black_box(bytes);
        best = best.min(start.elapsed());
    }
    best.as_nanos() as f64 / n as f64
}

fn main() {
    let one = pod(0);
    let list = json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "9"},
        "items": (0..500).map(|i| json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("cm-{i}"), "namespace": "default", "uid": "u", "resourceVersion": "9", "creationTimestamp": "2025-01-01T00:00:00Z"},
            "data": {"key": "x".repeat(64)}})).collect::<Vec<_>>()});
    for (what, v, n) in [("Pod", &one, 200_000), ("ConfigMapList of 500", &list, 500)] {
        let before = per_call(n, || serde_json::to_vec(black_box(v)).map(|b| b.len()).unwrap_or(0));
        let after = per_call(n, || k3rs::apiserver::encode::body(black_box(v)).len());
        println!(
            "{what:<22} serde_json::to_vec {:>10.0} ns   encode::body {:>10.0} ns   ratio {:.2}",
            before,
            after,
            after / before
        );
    }
}
