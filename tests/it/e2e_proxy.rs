//! End to end through the service proxy: the real `k3rs server` in its own network namespace,
//! a Deployment of busybox httpd pods behind a Service, and traffic from a pod and from the
//! node to the ClusterIP, the NodePort and the LoadBalancer address (ServiceLB).

use crate::common;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{Cluster, Netns};

const IMAGE: &str = "docker.io/library/busybox:1.36";

fn cluster(tag: &str) -> Cluster {
    Cluster::start_with(tag, &[], |data| {
        let drop_dir = data.join("agent/images");
        std::fs::create_dir_all(&drop_dir).unwrap();
        common::busybox::oci_archive(&drop_dir, IMAGE);
    })
}

/// An HTTP GET from the node's network namespace (a thread of our own moved into it).
fn node_get(ns: &Netns, addr: SocketAddr) -> std::io::Result<String> {
    let path = format!("/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let f = std::fs::File::open(path)?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out.split("\r\n\r\n").nth(1).unwrap_or_default().trim().to_string())
    })
    .join()
    .expect("the node thread")
}

/// The hostnames that `n` GETs of `url` from inside `pod` returned.
fn seen_from(c: &Cluster, pod: &str, url: &str, n: u32) -> BTreeSet<String> {
    // busybox-static's `wget -T` crashes (SIGSEGV): `timeout` bounds it instead.
    let script = format!("for i in $(seq {n}); do timeout 3 wget -qO- {url}; done");
    let out = c.kubectl(&["exec", pod, "--", "sh", "-c", &script]);
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn endpoints(c: &Cluster, svc: &str) -> usize {
    c.k(&["get", "endpoints", svc, "-o", "jsonpath={.subsets[*].addresses[*].ip}"]).split_whitespace().count()
}

fn wait_endpoints(c: &Cluster, svc: &str, n: usize) {
    let start = Instant::now();
    while endpoints(c, svc) != n {
        assert!(start.elapsed() < Duration::from_secs(90), "{svc} never had {n} endpoints: {}", c.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_service_reaches_its_pods_by_cluster_ip_node_port_and_load_balancer() {
    let c = cluster("proxy");
    // A node has a default route; without one, a Service address is unroutable before any
    // filter hook sees it (ENETUNREACH) instead of rejected. The gateway need not exist.
    let ok = std::process::Command::new("ip")
        .args(["-n", &c.ns.name, "route", "add", "default", "via", "192.168.77.254"])
        .status()
        .unwrap();
    assert!(ok.success());
    c.ok(
        Path::new("kubectl"),
        &["apply", "-f", "-"],
        Some(
            "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: 'busybox:1.36'
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
        ports: [{name: http, containerPort: 8080}]
",
        ),
    );
    c.k(&["run", "client", "--image=busybox:1.36", "--", "sleep", "3600"]);
    c.k(&["expose", "deployment", "web", "--port=80", "--target-port=http", "--type=NodePort"]);
    c.k(&["expose", "deployment", "web", "--name=web-lb", "--port=8081", "--target-port=http", "--type=LoadBalancer"]);
    c.wait_for(&["pod", "client"], "{.status.phase}", Duration::from_secs(60), |p| p == "Running");
    wait_endpoints(&c, "web", 3);
    let pods: BTreeSet<String> = c
        .k(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].metadata.name}"])
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(pods.len(), 3);

    // ClusterIP from a pod: every backend answers in turn.
    let ip = c.k(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let url = format!("http://{ip}/");
    let start = Instant::now();
    let mut seen = BTreeSet::new();
    while seen != pods {
        seen.extend(seen_from(&c, "client", &url, 12));
        assert!(seen.is_subset(&pods), "answers from outside the Service: {seen:?}");
        assert!(start.elapsed() < Duration::from_secs(60), "only {seen:?} of {pods:?} answered: {}", c.log());
    }

    // Hairpin: a backend reaching itself through its own Service.
    let me = pods.iter().next().unwrap().clone();
    let start = Instant::now();
    while !seen_from(&c, &me, &url, 12).contains(&me) {
        assert!(start.elapsed() < Duration::from_secs(60), "{me} never reached itself through {url}");
    }

    // NodePort, from the node, on the node's address.
    let node_port = c.k(&["get", "service", "web", "-o", "jsonpath={.spec.ports[0].nodePort}"]);
    let addr: SocketAddr = format!("192.168.77.1:{node_port}").parse().unwrap();
    let answer = node_get(&c.ns, addr).expect("the NodePort answers from the node");
    assert!(pods.contains(&answer), "{answer:?}");

    // LoadBalancer: ServiceLB gives the node's address, and the port answers there.
    c.wait_for(&["service", "web-lb"], "{.status.loadBalancer.ingress[0].ip}", Duration::from_secs(30), |ip| {
        ip == "192.168.77.1"
    });
    let answer = node_get(&c.ns, "192.168.77.1:8081".parse().unwrap()).expect("the LoadBalancer port answers");
    assert!(pods.contains(&answer), "{answer:?}");
    let wide = c.k(&["get", "service", "web-lb"]);
    assert!(wide.contains("192.168.77.1") && wide.contains("8081:"), "{wide}");

    // Scaled to nothing: refused at once, not a time-out. Terminating pods that still serve
    // get traffic while no endpoint is ready (upstream since 1.28), so wait until they are gone.
    c.k(&["scale", "deployment", "web", "--replicas=0"]);
    wait_endpoints(&c, "web", 0);
    c.k(&["wait", "--for=delete", "pod", "-l", "app=web", "--timeout=60s"]);
    let start = Instant::now();
    while !c
        .k(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={.items[*].endpoints[*].addresses[*]}",
        ])
        .is_empty()
    {
        assert!(start.elapsed() < Duration::from_secs(30), "the slice kept its endpoints");
        std::thread::sleep(Duration::from_millis(200));
    }
    let start = Instant::now();
    let out = c.kubectl(&["exec", "client", "--", "timeout", "10", "wget", "-O-", &url]);
    let took = start.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("refused"), "{err:?} {}", c.log());
    assert!(took < Duration::from_secs(5), "a Service without endpoints took {took:?} to refuse");
    let err = node_get(&c.ns, addr).expect_err("a NodePort without endpoints refuses");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}
