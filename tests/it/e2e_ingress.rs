//! End to end through the ingress: `k3rs server` (the real binary, as root, default ingress
//! ports 80 and 443) in its own network namespace runs busybox httpd pods serving their
//! hostnames; selector-less Services with hand-made EndpointSlices point at the pods (the
//! EndpointSlice controller is not on this branch yet); curl, inside the namespace, reaches
//! the pods through the node address by host name over HTTP and HTTPS (with a Secret's
//! certificate chosen by SNI), and a canary takes its share.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::Cluster;

const IMAGE: &str = "docker.io/library/busybox:1.36";
const NODE_IP: &str = "192.168.77.1";

fn apply(c: &Cluster, manifest: &str) {
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(manifest));
}

/// curl inside the cluster's namespace with `--resolve host:port:<node ip>` and `extra`
/// arguments: the body, a newline and the status code.
fn curl(c: &Cluster, scheme: &str, host: &str, path: &str, extra: &[&str]) -> String {
    let port = if scheme == "https" { 443 } else { 80 };
    let out =
        c.ns.command("curl")
            .args(["-s", "--max-time", "5", "--resolve", &format!("{host}:{port}:{NODE_IP}")])
            .args(["-w", "\n%{http_code}"])
            .args(extra)
            .arg(format!("{scheme}://{host}{path}"))
            .output()
            .expect("run curl (apt-get install curl)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn eventually(c: &Cluster, scheme: &str, host: &str, extra: &[&str], want: &str) {
    let start = Instant::now();
    loop {
        let got = curl(c, scheme, host, "/", extra);
        if got == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{scheme}://{host}/ {extra:?}: {got:?}, want {want:?}\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A busybox httpd pod serving its hostname on port 80, and a selector-less Service of the
/// same name with an EndpointSlice pointing at it.
fn httpd_behind_a_service(c: &Cluster, name: &str) {
    apply(
        c,
        &format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  containers:\n  - {{name: httpd, image: 'busybox:1.36', command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www']}}\n"),
    );
    c.wait_for(&["pod", name], "{.status.phase}", Duration::from_secs(60), |p| p == "Running");
    let ip = c.k(&["get", "pod", name, "-o", "jsonpath={.status.podIP}"]);
    assert!(ip.starts_with("10.42."), "pod IP {ip}");
    let manifest = r#"
apiVersion: v1
kind: Service
metadata: {name: NAME}
spec:
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: NAME-1, labels: {kubernetes.io/service-name: NAME}}
addressType: IPv4
endpoints: [{addresses: ['POD_IP'], conditions: {ready: true}}]
ports: [{name: http, port: 80, protocol: TCP}]
"#;
    apply(c, &manifest.replace("NAME", name).replace("POD_IP", &ip));
}

#[test]
fn ingress_routes_to_pods_by_host_over_http_and_https_with_a_canary() {
    let c = Cluster::start_with("ingress", &[], |data| {
        let drop_dir = data.join("agent/images");
        std::fs::create_dir_all(&drop_dir).unwrap();
        common::busybox::oci_archive(&drop_dir, IMAGE);
    });
    assert_eq!(c.k(&["get", "ingressclass", "k3rs", "-o", "jsonpath={.spec.controller}"]), "k3rs.io/ingress");
    httpd_behind_a_service(&c, "web");
    apply(
        &c,
        r#"
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
"#,
    );
    eventually(&c, "http", "web.example.com", &[], "web\n\n200");
    // No Secret named: the default certificate, which curl accepts only with -k.
    eventually(&c, "https", "web.example.com", &["-k"], "web\n\n200");
    // No rule for another host and no default backend.
    let other = curl(&c, "http", "other.example.com", "/", &[]);
    assert!(other.ends_with("\n404") && other.contains("no ingress rule"), "{other:?}");
    c.wait_for(&["ingress", "web"], "{.status.loadBalancer.ingress[0].ip}", Duration::from_secs(30), |ip| {
        ip == NODE_IP
    });

    // A TLS Secret for the host: curl verifies the certificate chosen by SNI against it.
    let (crt, key) = (c.dir.path().join("web.crt"), c.dir.path().join("web.key"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=web.example.com", "-addext", "subjectAltName=DNS:web.example.com"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let cert_arg = format!("--cert={}", crt.display());
    let key_arg = format!("--key={}", key.display());
    c.k(&["create", "secret", "tls", "web-tls", &cert_arg, &key_arg]);
    c.k(&[
        "patch",
        "ingress",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"tls":[{"hosts":["web.example.com"],"secretName":"web-tls"}]}}"#,
    ]);
    let cacert = crt.display().to_string();
    eventually(&c, "https", "web.example.com", &["--cacert", &cacert], "web\n\n200");

    // A canary of weight 20: 20 % ± 5 % of 1,000 requests, and a header that forces it.
    httpd_behind_a_service(&c, "web2");
    apply(
        &c,
        r#"
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web-canary
  annotations: {ingress.k3rs.io/canary: "true", ingress.k3rs.io/canary-weight: "20", ingress.k3rs.io/canary-by-header: X-Canary}
spec:
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web2, port: {name: http}}}}
"#,
    );
    eventually(&c, "http", "web.example.com", &["-H", "X-Canary: always"], "web2\n\n200");
    eventually(&c, "http", "web.example.com", &["-H", "X-Canary: never"], "web\n\n200");
    // One curl, 1,000 requests over a kept-alive connection.
    let config = "url = \"http://web.example.com/\"\n".repeat(1000);
    let cfg_file = c.dir.path().join("urls.cfg");
    std::fs::write(&cfg_file, config).unwrap();
    let out =
        c.ns.command("curl")
            .args(["-s", "--max-time", "120", "--resolve", &format!("web.example.com:80:{NODE_IP}"), "-K"])
            .arg(&cfg_file)
            .output()
            .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let (canary, stable) =
        (text.lines().filter(|l| *l == "web2").count(), text.lines().filter(|l| *l == "web").count());
    assert_eq!(canary + stable, 1000, "{}", String::from_utf8_lossy(&out.stderr));
    assert!((150..=250).contains(&canary), "{canary} of 1000 went to the canary");
}
