//! End to end through the ingress: `k3rs server` (the real binary, as root, default ingress
//! ports 80 and 443) in its own network namespace runs a busybox httpd pod serving its
//! hostname; a selector-less Service with a hand-made EndpointSlice points at the pod (the
//! EndpointSlice controller is not on this branch yet); curl, inside the namespace, reaches
//! the pod through the node address by host name over HTTP and HTTPS.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::Cluster;

const IMAGE: &str = "docker.io/library/busybox:1.36";
const NODE_IP: &str = "192.168.77.1";

fn apply(c: &Cluster, manifest: &str) {
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(manifest));
}

/// curl inside the cluster's namespace with `--resolve host:port:<node ip>`: status and body.
fn curl(c: &Cluster, scheme: &str, host: &str, path: &str) -> String {
    let port = if scheme == "https" { 443 } else { 80 };
    let out =
        c.ns.command("curl")
            .args(["-sk", "--max-time", "5", "--resolve", &format!("{host}:{port}:{NODE_IP}")])
            .args(["-w", "\n%{http_code}"])
            .arg(format!("{scheme}://{host}{path}"))
            .output()
            .expect("run curl (apt-get install curl)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn eventually(c: &Cluster, scheme: &str, host: &str, path: &str, want: &str) {
    let start = Instant::now();
    loop {
        let got = curl(c, scheme, host, path);
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{scheme}://{host}{path}: {got:?}, want {want:?}\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn ingress_routes_to_a_pod_by_host_over_http_and_https() {
    let c = Cluster::start_with("ingress", &[], |data| {
        let drop_dir = data.join("agent/images");
        std::fs::create_dir_all(&drop_dir).unwrap();
        common::busybox::oci_archive(&drop_dir, IMAGE);
    });
    assert_eq!(c.k(&["get", "ingressclass", "k3rs", "-o", "jsonpath={.spec.controller}"]), "k3rs.io/ingress");
    apply(
        &c,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: web}}\nspec:\n  containers:\n  - {name: httpd, image: 'busybox:1.36', command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www']}\n",
    );
    c.wait_for(&["pod", "web"], "{.status.phase}", Duration::from_secs(60), |p| p == "Running");
    let ip = c.k(&["get", "pod", "web", "-o", "jsonpath={.status.podIP}"]);
    assert!(ip.starts_with("10.42."), "pod IP {ip}");
    let manifest = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
endpoints: [{addresses: ['POD_IP'], conditions: {ready: true}}]
ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  tls: [{hosts: [web.example.com]}]
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;
    apply(&c, &manifest.replace("POD_IP", &ip));
    eventually(&c, "http", "web.example.com", "/", "web\n\n200");
    eventually(&c, "https", "web.example.com", "/", "web\n\n200");
    // No rule for another host and no default backend.
    let other = curl(&c, "http", "other.example.com", "/");
    assert!(other.ends_with("\n404") && other.contains("no ingress rule"), "{other:?}");
    c.wait_for(&["ingress", "web"], "{.status.loadBalancer.ingress[0].ip}", Duration::from_secs(30), |ip| {
        ip == NODE_IP
    });
}
