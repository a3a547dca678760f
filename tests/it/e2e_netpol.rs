//! End to end through NetworkPolicy enforcement: the real `k3rs server` in its own network
//! namespace, busybox httpd pods and clients in three namespaces, the real `kubectl`.
//! Reachable before any policy; a default deny cuts a server off; allows by pod label and by
//! namespace label let those clients alone back in; egress to an ipBlock with an exception;
//! and a pod started under a policy is never reachable before its rules are in force.

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::Cluster;

const IMAGE: &str = "docker.io/library/busybox:1.36";
const HTTPD: &str = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www";

fn cluster(tag: &str) -> Cluster {
    Cluster::start_with(tag, &[], |data| {
        let drop_dir = data.join("agent/images");
        std::fs::create_dir_all(&drop_dir).unwrap();
        common::busybox::oci_archive(&drop_dir, IMAGE);
    })
}

fn apply(c: &Cluster, yaml: &str) {
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(yaml));
}

fn server(ns: &str, name: &str, app: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{app: {app}}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: 'busybox:1.36'
    command: [sh, -c, '{HTTPD}']
    ports: [{{name: http, containerPort: 8080}}]
---
"
    )
}

fn client(ns: &str, name: &str, labels: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: sh
    image: 'busybox:1.36'
    command: [sleep, '3600']
---
"
    )
}

fn ip_of(c: &Cluster, ns: &str, pod: &str) -> String {
    c.wait_for(&["-n", ns, "pod", pod], "{.status.phase}", Duration::from_secs(90), |p| p == "Running");
    c.k(&["-n", ns, "get", "pod", pod, "-o", "jsonpath={.status.podIP}"])
}

/// Whether `from` (namespace/pod) gets `to`'s page within three seconds.
fn reaches(c: &Cluster, from: (&str, &str), to: &str, name: &str) -> bool {
    // busybox-static's `wget -T` crashes (SIGSEGV): `timeout` bounds it instead.
    let out =
        c.kubectl(&["exec", "-n", from.0, from.1, "--", "sh", "-c", &format!("timeout 3 wget -qO- http://{to}:8080/")]);
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == name
}

/// Waits until `reaches` says `want`, for up to 20 s.
fn settle(c: &Cluster, from: (&str, &str), to: &str, name: &str, want: bool) {
    let start = Instant::now();
    while reaches(c, from, to, name) != want {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}/{} -> {name} ({to}) stayed {}: {}",
            from.0,
            from.1,
            if want { "cut off" } else { "reachable" },
            c.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The IPAM's hint file: the next pod gets an address after the one it names.
fn last_reserved(dir: &Path) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "last_reserved_ip") {
            return Some(p);
        }
        if p.is_dir() && !p.is_symlink() {
            if let Some(found) = last_reserved(&p) {
                return Some(found);
            }
        }
    }
    None
}

#[test]
fn policies_isolate_pods_and_allow_what_they_say() {
    let c = cluster("netpol");
    apply(
        &c,
        &[
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: ops, labels: {team: ops}}\n---\n".to_string(),
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: other}\n---\n".to_string(),
            server("default", "web", "web"),
            client("default", "friend", "role: client"),
            client("default", "stranger", "role: none"),
            client("ops", "prom", "app: prom"),
            client("other", "outsider", "app: outsider"),
            server("other", "near", "near"),
            server("other", "far", "far"),
        ]
        .concat(),
    );
    let web = ip_of(&c, "default", "web");
    let near = ip_of(&c, "other", "near");
    let far = ip_of(&c, "other", "far");
    for (ns, p) in [("default", "friend"), ("default", "stranger"), ("ops", "prom"), ("other", "outsider")] {
        ip_of(&c, ns, p);
    }

    // No policy: everyone gets in.
    for from in [("default", "friend"), ("default", "stranger"), ("ops", "prom"), ("other", "outsider")] {
        settle(&c, from, &web, "web", true);
    }

    // Default deny for ingress in `default`: web is cut off from everyone.
    apply(
        &c,
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
",
    );
    for from in [("default", "friend"), ("default", "stranger"), ("ops", "prom"), ("other", "outsider")] {
        settle(&c, from, &web, "web", false);
    }

    // Allowed by pod label (in web's namespace) and by namespace label: those alone get in,
    // on the named port.
    apply(
        &c,
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-allow, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from:
    - podSelector: {matchLabels: {role: client}}
    - namespaceSelector: {matchLabels: {team: ops}}
    ports: [{port: http}]
",
    );
    settle(&c, ("default", "friend"), &web, "web", true);
    settle(&c, ("ops", "prom"), &web, "web", true);
    for from in [("default", "stranger"), ("other", "outsider")] {
        assert!(!reaches(&c, from, &web, "web"), "{from:?} got in: {}", c.log());
    }

    // Egress to an ipBlock with an exception: the outsider reaches `near`, not `far`.
    settle(&c, ("other", "outsider"), &far, "far", true);
    apply(
        &c,
        &format!(
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: outsider-out, namespace: other}}
spec:
  podSelector: {{matchLabels: {{app: outsider}}}}
  policyTypes: [Egress]
  egress:
  - to: [{{ipBlock: {{cidr: 10.42.0.0/16, except: [{far}/32]}}}}]
    ports: [{{protocol: TCP, port: 8000, endPort: 8100}}]
"
        ),
    );
    settle(&c, ("other", "outsider"), &far, "far", false);
    settle(&c, ("other", "outsider"), &near, "near", true);
    let listed = c.k(&["get", "networkpolicies", "-A"]);
    assert!(listed.contains("default-deny") && listed.contains("outsider-out"), "{listed}");

    // No gap at pod start: a pod started under the default deny is never reachable from a
    // client probing the next addresses the node will give, as fast as it can, while it
    // starts; once running, the policy that lets friends in applies to it too.
    let hint = last_reserved(&c.data_dir()).expect("the IPAM's last_reserved_ip file");
    let last: std::net::Ipv4Addr = std::fs::read_to_string(&hint).unwrap().trim().parse().unwrap();
    let next: Vec<String> = (1..=3).map(|i| std::net::Ipv4Addr::from(u32::from(last) + i).to_string()).collect();
    let probe = format!(
        "end=$(( $(date +%s) + 30 )); n=0
         for ip in {ips} {ips}; do
           ( while [ $(date +%s) -lt $end ]; do timeout 1 wget -qO- http://$ip:8080/ 2>/dev/null && echo HIT $ip; done ) &
         done
         while [ $(date +%s) -lt $end ]; do sleep 1; done; wait; echo DONE",
        ips = next.join(" ")
    );
    let (late, out) = std::thread::scope(|s| {
        let prober = s.spawn(|| c.kubectl(&["exec", "-n", "default", "stranger", "--", "sh", "-c", &probe]));
        std::thread::sleep(Duration::from_secs(2));
        apply(&c, &server("default", "late", "web"));
        let late = ip_of(&c, "default", "late");
        (late, prober.join().unwrap())
    });
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("DONE"), "the probe did not run to its end: {said} {}", String::from_utf8_lossy(&out.stderr));
    assert!(next.contains(&late), "late got {late}, not one of the probed {next:?}");
    assert!(!said.contains("HIT"), "the new pod was reachable before its policy applied: {said}");
    settle(&c, ("default", "friend"), &late, "late", true);
    assert!(!reaches(&c, ("default", "stranger"), &late, "late"));

    // Policies gone: open again.
    c.k(&["delete", "networkpolicy", "default-deny", "web-allow"]);
    settle(&c, ("default", "stranger"), &web, "web", true);
}

#[test]
fn disable_network_policy_enforces_nothing() {
    let c = Cluster::start_with("netpol-off", &["--disable-network-policy"], |data| {
        let drop_dir = data.join("agent/images");
        std::fs::create_dir_all(&drop_dir).unwrap();
        common::busybox::oci_archive(&drop_dir, IMAGE);
    });
    apply(
        &c,
        &[
            server("default", "web", "web"),
            client("default", "stranger", "role: none"),
            "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: default}
spec:
  podSelector: {}
  policyTypes: [Ingress]
"
            .to_string(),
        ]
        .concat(),
    );
    let web = ip_of(&c, "default", "web");
    ip_of(&c, "default", "stranger");
    settle(&c, ("default", "stranger"), &web, "web", true);
    let listed = c.ns.command("nft").args(["list", "tables"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("k3rs-netpol"));
}
