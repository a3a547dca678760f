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
    get_in(&ns.name, addr, "/")
}

/// An HTTP GET of `path` from a thread moved into the network namespace `ns`.
fn get_in(ns: &str, addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let ns = ns.to_string();
    let request = format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    std::thread::spawn(move || {
        common::cluster::enter_netns(&ns)?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.write_all(request.as_bytes())?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        // The body follows the first empty line (busybox httpd's CGI answers end lines in \n).
        let out = out.replace("\r\n", "\n");
        Ok(out.split_once("\n\n").map(|(_, body)| body).unwrap_or_default().trim().to_string())
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

    // ClientIP session affinity: one client, one backend.
    c.k(&[
        "expose",
        "deployment",
        "web",
        "--name=sticky",
        "--port=80",
        "--target-port=http",
        "--session-affinity=ClientIP",
    ]);
    wait_endpoints(&c, "sticky", 3);
    let sticky = c.k(&["get", "service", "sticky", "-o", "jsonpath={.spec.clusterIP}"]);
    let start = Instant::now();
    let answers = loop {
        let got = seen_from(&c, "client", &format!("http://{sticky}/"), 12);
        if !got.is_empty() {
            break got;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "sticky never answered");
    };
    assert_eq!(answers.len(), 1, "ClientIP affinity spread one client over {answers:?}");

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

    // A node port a process on the node already listens on: a Warning Event says so.
    let ns = c.ns.name.clone();
    let listener = std::thread::spawn(move || {
        common::cluster::enter_netns(&ns).unwrap();
        std::net::TcpListener::bind("0.0.0.0:30999").unwrap()
    })
    .join()
    .expect("a listener in the node's namespace");
    c.k(&["create", "service", "nodeport", "taken", "--tcp=80:8080", "--node-port=30999"]);
    let start = Instant::now();
    let note = loop {
        let got = c.k(&[
            "get",
            "events",
            "--field-selector=involvedObject.name=taken",
            "-o",
            "jsonpath={.items[?(@.reason==\"PortInUse\")].message}",
        ]);
        if !got.is_empty() {
            break got;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no PortInUse event: {}", c.log());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(note.contains("nodePort 30999/TCP is already in use"), "{note}");
    drop(listener);

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

/// A client outside the node: the node's veth peer moved into a namespace of its own, with
/// the node address as its gateway.
struct Outside {
    name: String,
}

impl Outside {
    fn new(node: &Netns) -> Outside {
        let name = format!("k3rs-e2e-out-{}", std::process::id());
        let run = |args: &[&str]| {
            let ok = std::process::Command::new("ip").args(args).status().expect("run ip");
            assert!(ok.success(), "ip {args:?}");
        };
        run(&["netns", "add", &name]);
        let out = Outside { name };
        run(&["-n", &node.name, "link", "set", "k3rs-n1", "netns", &out.name]);
        run(&["-n", &out.name, "addr", "add", "192.168.77.2/24", "dev", "k3rs-n1"]);
        run(&["-n", &out.name, "link", "set", "k3rs-n1", "up"]);
        run(&["-n", &out.name, "link", "set", "lo", "up"]);
        run(&["-n", &out.name, "route", "add", "default", "via", "192.168.77.1"]);
        out
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// GETs until an answer comes (the proxy follows the API within moments).
fn answer(ns: &str, addr: SocketAddr, path: &str) -> String {
    let start = Instant::now();
    loop {
        match get_in(ns, addr, path) {
            Ok(a) if !a.is_empty() => return a,
            r => assert!(start.elapsed() < Duration::from_secs(30), "{addr}{path}: {r:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn local_policy_keeps_the_client_address_and_the_rules_outlive_a_killed_server() {
    let mut c = cluster("proxy-local");
    let outside = Outside::new(&c.ns);
    c.ok(
        Path::new("kubectl"),
        &["apply", "-f", "-"],
        Some(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: 1
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: 'busybox:1.36'
        ports: [{name: http, containerPort: 8080}]
        command:
        - sh
        - -c
        - |
          mkdir -p /www/cgi-bin
          printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n' > /www/cgi-bin/ip
          chmod +x /www/cgi-bin/ip
          exec httpd -f -p 8080 -h /www
---
apiVersion: v1
kind: Service
metadata: {name: echo-local}
spec:
  type: NodePort
  externalTrafficPolicy: Local
  selector: {app: echo}
  ports: [{port: 80, targetPort: http, nodePort: 30180}]
---
apiVersion: v1
kind: Service
metadata: {name: echo-cluster}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{port: 80, targetPort: http, nodePort: 30181}]
"#,
        ),
    );
    wait_endpoints(&c, "echo-local", 1);
    let local: SocketAddr = "192.168.77.1:30180".parse().unwrap();
    let cluster_wide: SocketAddr = "192.168.77.1:30181".parse().unwrap();
    // Local: the pod sees the outside client's own address; Cluster: the node's (masqueraded).
    // (busybox httpd gives REMOTE_ADDR as an IPv4-mapped IPv6 address.)
    assert_eq!(answer(&outside.name, local, "/cgi-bin/ip"), "[::ffff:192.168.77.2]");
    let seen = answer(&outside.name, cluster_wide, "/cgi-bin/ip");
    assert!(seen.starts_with("[::ffff:10.42."), "Cluster policy should masquerade, the pod saw {seen}");

    // SIGKILL: the rules stay in force while k3rs is down, and again after it starts.
    c.kill();
    assert_eq!(answer(&outside.name, local, "/cgi-bin/ip"), "[::ffff:192.168.77.2]");
    c.launch();
    assert_eq!(answer(&outside.name, local, "/cgi-bin/ip"), "[::ffff:192.168.77.2]");
    // The restarted proxy follows changes: scaled to nothing, the NodePort refuses.
    c.k(&["scale", "deployment", "echo", "--replicas=0"]);
    c.k(&["wait", "--for=delete", "pod", "-l", "app=echo", "--timeout=60s"]);
    let start = Instant::now();
    loop {
        match get_in(&outside.name, cluster_wide, "/") {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            r => assert!(start.elapsed() < Duration::from_secs(30), "still {r:?}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
