//! End to end: `k3rs server` (the real binary, as root, in its own network namespace) serves
//! cluster DNS on the pod bridge's gateway, and a real pod resolves Services with busybox's
//! nslookup: a short name through the pod's search path, SRV, ExternalName, PTR, and a
//! headless Service's endpoints. The kube-dns Service exists as k3s names it.
//!
//! The pods ask what their resolv.conf names, 10.43.0.10 (the kube-dns Service's cluster IP,
//! which the service proxy sends to the gateway), and once the gateway directly.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::Cluster;

const IMAGE: &str = "docker.io/library/busybox:1.36";

fn cluster(tag: &str) -> Cluster {
    let resolv = upstream_resolv_conf();
    std::fs::write(&resolv, "nameserver 192.168.77.1\n").unwrap();
    Cluster::start_with(tag, &["--resolv-conf", &resolv], |data| {
        let drop_dir = data.join("agent/images");
        std::fs::create_dir_all(&drop_dir).unwrap();
        common::busybox::oci_archive(&drop_dir, IMAGE);
    })
}

/// The node's resolvers, for the test: the upstream below, on the node's address.
fn upstream_resolv_conf() -> String {
    format!("{}/k3rs-e2e-dns-{}.resolv.conf", std::env::temp_dir().display(), std::process::id())
}

/// A small DNS server on the node's address, port 53, in the node's network namespace,
/// answering `outside.example` (the `dnsserver` suite's upstream); stops when dropped.
struct NodeResolver {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    asked: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl NodeResolver {
    fn start(ns: &str) -> NodeResolver {
        let ns = ns.to_string();
        let asked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let counter = asked.clone();
        std::thread::spawn(move || {
            common::cluster::enter_netns(&ns).expect("the node's namespace");
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let socket = tokio::net::UdpSocket::bind("192.168.77.1:53").await.expect("bind :53");
                let mut server = hickory_server::server::Server::new(crate::dnsserver::Upstream {
                    name: "outside.example.".parse().unwrap(),
                    ip: std::net::Ipv4Addr::new(203, 0, 113, 7),
                    asked: counter,
                });
                server.register_socket(socket);
                ready_tx.send(()).unwrap();
                let _ = rx.await;
                let _ = server.shutdown_gracefully().await;
            });
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("the node's resolver starts");
        NodeResolver { stop: Some(tx), asked }
    }
}

impl Drop for NodeResolver {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs nslookup in the pod until its output satisfies `ok` (the index follows the API).
fn nslookup(c: &Cluster, args: &[&str], ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let mut argv = vec!["exec", "client", "--", "nslookup"];
        argv.extend_from_slice(args);
        let out = c.kubectl(&argv);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if ok(&text) {
            return text;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "nslookup {args:?}: {text}\n{}", c.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn pods_resolve_services_through_the_cluster_dns() {
    let c = cluster("dns");
    let resolver = NodeResolver::start(&c.ns.name);
    // kube-dns, as k3s' CoreDNS Service.
    // (Published by the node once it is up, as k3s' CoreDNS manifest is applied after start.)
    let start = Instant::now();
    while !c.kubectl(&["get", "svc", "-n", "kube-system", "kube-dns"]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(30), "no kube-dns Service: {}", c.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let svc = c.k(&[
        "get",
        "svc",
        "-n",
        "kube-system",
        "kube-dns",
        "-o",
        "jsonpath={.spec.clusterIP} {.metadata.labels.k8s-app}",
    ]);
    assert_eq!(svc, "10.43.0.10 kube-dns");
    let cidr = c.k(&["get", "node", "e2e-node", "-o", "jsonpath={.spec.podCIDR}"]);
    let net: k3rs::util::cidr::Cidr = cidr.parse().expect("pod CIDR");
    let gateway = net.nth(1).expect("gateway").to_string();
    let eps =
        c.k(&["get", "endpoints", "-n", "kube-system", "kube-dns", "-o", "jsonpath={.subsets[0].addresses[0].ip}"]);
    assert_eq!(eps, gateway);

    c.ok(
        Path::new("kubectl"),
        &["apply", "-f", "-"],
        Some(
            r#"
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
  - {name: c, image: "busybox:1.36", command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: srv, labels: {app: srv}}
spec:
  containers:
  - name: c
    image: "busybox:1.36"
    command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
---
apiVersion: v1
kind: Service
metadata: {name: srv}
spec:
  selector: {app: srv}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: 10.43.99.9
  ports: [{name: http, port: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {type: ExternalName, externalName: outside.example}
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  ports: [{name: pg, port: 5432}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: db-e2e
  labels: {kubernetes.io/service-name: db, endpointslice.kubernetes.io/managed-by: e2e-test}
addressType: IPv4
endpoints:
- {addresses: ["10.42.0.200"], hostname: db-0}
ports: [{name: pg, port: 5432, protocol: TCP}]
"#,
        ),
    );
    c.wait_for(&["pod", "client"], "{.status.phase}", Duration::from_secs(60), |p| p == "Running");

    // The short name, through the pod's search path (default.svc.cluster.local).
    let out = nslookup(&c, &["web"], |t| t.contains("10.43.99.9"));
    assert!(out.contains("10.43.0.10"), "not asked through the kube-dns Service: {out}");
    let out = nslookup(&c, &["web.default.svc.cluster.local", &gateway], |t| t.contains("10.43.99.9"));
    assert!(out.contains("web.default.svc.cluster.local"), "{out}");
    // Headless: the endpoint, and its hostname.
    nslookup(&c, &["db"], |t| t.contains("10.42.0.200"));
    nslookup(&c, &["db-0.db.default.svc.cluster.local"], |t| t.contains("10.42.0.200"));
    // SRV.
    nslookup(&c, &["-type=srv", "_http._tcp.web.default.svc.cluster.local"], |t| {
        t.contains("0 100 80 web.default.svc.cluster.local")
    });
    // ExternalName.
    nslookup(&c, &["-type=cname", "ext.default.svc.cluster.local"], |t| t.contains("canonical name = outside.example"));
    // PTR of the Service address.
    nslookup(&c, &["10.43.99.9"], |t| t.contains("web.default.svc.cluster.local"));
    // A name that does not exist.
    nslookup(&c, &["nope.default.svc.cluster.local"], |t| t.contains("NXDOMAIN"));
    // A name outside the cluster: forwarded to the node's resolver (from --resolv-conf).
    nslookup(&c, &["outside.example"], |t| t.contains("203.0.113.7"));
    assert!(resolver.asked.load(std::sync::atomic::Ordering::SeqCst) >= 1);

    // wget by the Service's short name: the search path, DNS and the proxy together.
    c.wait_for(&["pod", "srv"], "{.status.phase}", Duration::from_secs(60), |p| p == "Running");
    let start = Instant::now();
    loop {
        let out = c.kubectl(&["exec", "client", "--", "timeout", "3", "wget", "-qO-", "http://srv/"]);
        if String::from_utf8_lossy(&out.stdout).trim() == "srv" {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "wget http://srv/: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn disable_coredns_turns_the_dns_server_off() {
    let c = Cluster::start_with("nodns", &["--disable", "coredns"], |_| {});
    // The node publishes kube-dns once it is up (within moments of Ready when enabled).
    c.wait_for(
        &["node", "e2e-node"],
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        Duration::from_secs(30),
        |s| s == "True",
    );
    std::thread::sleep(Duration::from_secs(2));
    let out = c.kubectl(&["get", "svc", "-n", "kube-system", "kube-dns"]);
    assert!(!out.status.success(), "kube-dns exists with DNS disabled");
}
