//! End to end: PodSecurity in the real `k3rs server` binary over TLS, driven by the real
//! kubectl: `Error from server (Forbidden)` for a violating pod, `Warning:` for a
//! Deployment, and the ReplicaSet controller refused its pods.

use crate::common;

use std::time::Duration;

use common::cluster::Cluster;

/// What restricted says of a pod whose one container `c` sets nothing.
fn restricted_violations(c: &str) -> String {
    format!(
        "allowPrivilegeEscalation != false (container \"{c}\" must set securityContext.allowPrivilegeEscalation=false), \
         unrestricted capabilities (container \"{c}\" must set securityContext.capabilities.drop=[\"ALL\"]), \
         runAsNonRoot != true (pod or container \"{c}\" must set securityContext.runAsNonRoot=true), \
         seccompProfile (pod or container \"{c}\" must set securityContext.seccompProfile.type to \"RuntimeDefault\" \
         or \"Localhost\")"
    )
}

#[test]
fn enforce_and_warn_through_the_real_server() {
    let c = Cluster::start("psa");
    c.k(&["create", "namespace", "team"]);
    c.wait_for(&["serviceaccount", "default", "-n", "team"], "{.metadata.name}", Duration::from_secs(20), |n| {
        n == "default"
    });
    let out = c.kubectl(&["label", "namespace", "team", "pod-security.kubernetes.io/enforce=restricted"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let out = c.kubectl(&["run", "web", "-n", "team", "--image=busybox:1.36", "--restart=Never", "--", "sleep", "60"]);
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "Error from server (Forbidden): pods \"web\" is forbidden: violates PodSecurity \"restricted:latest\": {}\n",
            restricted_violations("web")
        )
    );

    let out = c.kubectl(&["create", "deployment", "web", "-n", "team", "--image=busybox:1.36"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("Warning: would violate PodSecurity \"restricted:latest\": {}\n", restricted_violations("busybox"))
    );
    let message = c.wait_for(
        &["replicaset", "-n", "team", "-l", "app=web"],
        "{.items[0].status.conditions[?(@.reason==\"FailedCreate\")].message}",
        Duration::from_secs(30),
        |m| !m.is_empty(),
    );
    assert!(
        message.starts_with("pods \"web-")
            && message.ends_with(&format!(
                "\" is forbidden: violates PodSecurity \"restricted:latest\": {}",
                restricted_violations("busybox")
            )),
        "{message}"
    );
}
