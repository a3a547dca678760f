//! Pod sandboxes made for real (root): namespaces, veth pairs on a bridge, addresses, files.
//! Each test re-runs itself through `nsenter --net` inside a network namespace it creates, so
//! the bridge, the forwarding sysctls and every veth live there and never on the host; the
//! parent removes the namespace and unmounts everything under the test's directory afterwards,
//! also when the child failed or died.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k3rs::kubelet::network::{NetConfig, NetError, PodNetwork, Sandbox, SandboxRequest};
use k3rs::server::layout::DataDir;

const CHILD_ENV: &str = "K3RS_PODNET_CHILD";
const DIR_ENV: &str = "K3RS_PODNET_DIR";

/// Deletes the test network namespace (and with it the bridge and the veth host ends).
struct NetnsGuard(String);

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Unmounts every mount under the directory (deepest first), then removes it.
struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        // Holders a failed test left running.
        if let Ok(rd) = std::fs::read_dir(self.0.join("data/agent/run/sandboxes")) {
            for e in rd.flatten() {
                if let Some(h) = k3rs::kubelet::network::netns::Holder::read(&e.path()) {
                    h.kill();
                }
            }
        }
        let mut mounts = mounts_under(&self.0);
        mounts.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for m in mounts {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines().filter_map(|l| l.split(' ').nth(4)).map(PathBuf::from).filter(|p| p.starts_with(dir)).collect()
}

/// Runs `body` in a child process inside a fresh network namespace; returns only in the
/// parent, after checking the child passed.
fn in_test_netns(test: &str, body: impl FnOnce(&Path)) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(test) {
        let dir = PathBuf::from(std::env::var(DIR_ENV).expect("test dir from the parent"));
        body(&dir);
        return;
    }
    let name = format!("k3rs-t-podnet-{}-{}", std::process::id(), &test[..test.len().min(12)]);
    let created = Command::new("ip").args(["netns", "add", &name]).status().expect("run ip netns add");
    assert!(created.success(), "ip netns add {name}");
    let _netns = NetnsGuard(name.clone());
    let dir = tempfile::Builder::new().prefix("k3rs-podnet-").tempdir().expect("tempdir").keep();
    let _dir = DirGuard(dir.clone());
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{name}"))
        .arg("--")
        .arg(exe)
        .args(["--exact", &crate::common::suite_test(test), "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, test)
        .env(DIR_ENV, &dir)
        .output()
        .expect("run the test inside the namespace");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the test failed inside netns {name}");
    assert!(stdout.contains("1 passed"), "the filter did not select exactly the test");
    // The pod network never appears on the host's own interfaces.
    let host_addrs = Command::new("ip").args(["-o", "addr"]).output().expect("ip addr");
    assert!(!String::from_utf8_lossy(&host_addrs.stdout).contains("10.42."), "pod addresses on the host");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
}

fn config(dir: &Path, pod_cidr: &str) -> NetConfig {
    let data = DataDir::new(dir.join("data"));
    let mut cfg = NetConfig::new(
        &data,
        pod_cidr.parse().unwrap(),
        "10.42.0.0/16".parse().unwrap(),
        "10.43.0.0/16".parse().unwrap(),
        "10.43.0.10".parse().unwrap(),
        "cluster.local",
    );
    // Fixed node files, so the rendered ones are known exactly.
    let resolv = dir.join("node-resolv.conf");
    std::fs::write(&resolv, "nameserver 192.168.1.1\nsearch lan\n").unwrap();
    let hosts = dir.join("node-hosts");
    std::fs::write(&hosts, "127.0.0.1\tlocalhost\n192.168.1.5\tnode1\n").unwrap();
    cfg.resolv_conf = resolv;
    cfg.hosts_file = hosts;
    cfg
}

fn request(uid: &str, name: &str) -> SandboxRequest {
    SandboxRequest {
        uid: uid.to_string(),
        namespace: "prod".to_string(),
        name: name.to_string(),
        hostname: name.to_string(),
        node_hostname: "node1".to_string(),
        ..Default::default()
    }
}

fn nsenter(ns_flag: &str, path: &Path, args: &[&str]) -> std::process::Output {
    Command::new("nsenter").arg(format!("{ns_flag}={}", path.display())).arg("--").args(args).output().expect("nsenter")
}

/// One echo request with a one-second wait: a sandbox carries traffic as soon as setup returns.
fn ping(from: &Sandbox, to: IpAddr) -> bool {
    let out = nsenter("--net", from.netns.as_ref().unwrap(), &["busybox", "ping", "-c1", "-W1", &to.to_string()]);
    out.status.success()
}

fn links() -> BTreeSet<String> {
    let out = Command::new("ip").args(["-o", "link"]).output().expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect()
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn sandboxes_reach_each_other_and_survive_a_restart() {
    in_test_netns("sandboxes_reach_each_other_and_survive_a_restart", |dir| {
        runtime().block_on(async {
            let cfg = config(dir, "10.42.0.0/24");
            let net = PodNetwork::new(cfg.clone()).await.unwrap();
            let a = net.setup(&request("uid-a", "pod-a")).await.unwrap();
            let mut req_b = request("uid-b", "pod-b");
            req_b.subdomain = Some("web".into());
            let b = net.setup(&req_b).await.unwrap();

            let (ip_a, ip_b) = (a.ip.unwrap(), b.ip.unwrap());
            assert_ne!(ip_a, ip_b);
            for ip in [ip_a, ip_b] {
                assert!(cfg.pod_cidr.contains(ip), "{ip} outside {}", cfg.pod_cidr);
                assert_ne!(ip, "10.42.0.1".parse::<IpAddr>().unwrap(), "the gateway is never a pod's");
            }
            let gateway: IpAddr = "10.42.0.1".parse().unwrap();
            assert!(ping(&a, ip_b), "a -> b");
            assert!(ping(&b, ip_a), "b -> a");
            assert!(ping(&a, gateway), "a -> gateway");
            assert!(ping(&a, ip_a), "a -> itself");

            // The pod's own namespaces: hostname, eth0 with its address and the route.
            let host = nsenter("--uts", a.uts.as_ref().unwrap(), &["busybox", "hostname"]);
            assert_eq!(String::from_utf8_lossy(&host.stdout).trim(), "pod-a");
            let addr = nsenter("--net", a.netns.as_ref().unwrap(), &["ip", "-o", "addr", "show", "dev", "eth0"]);
            assert!(String::from_utf8_lossy(&addr.stdout).contains(&format!("{ip_a}/24")));
            let route = nsenter("--net", a.netns.as_ref().unwrap(), &["ip", "route", "show", "default"]);
            assert!(String::from_utf8_lossy(&route.stdout).contains("default via 10.42.0.1 dev eth0"));
            assert!(a.ipc.is_some(), "own IPC namespace");

            // Files as the kubelet writes them.
            let hosts_b = std::fs::read_to_string(&b.hosts).unwrap();
            assert!(hosts_b.starts_with("# Kubernetes-managed hosts file.\n"), "{hosts_b}");
            assert!(hosts_b.ends_with(&format!("{ip_b}\tpod-b.web.prod.svc.cluster.local\tpod-b\n")), "{hosts_b}");
            assert_eq!(std::fs::read_to_string(&a.hostname).unwrap(), "pod-a\n");
            assert_eq!(
                std::fs::read_to_string(&a.resolv_conf).unwrap(),
                "search prod.svc.cluster.local svc.cluster.local cluster.local lan\nnameserver 10.43.0.10\noptions ndots:5\n"
            );

            // Setup again returns the same sandbox.
            assert_eq!(net.setup(&request("uid-a", "pod-a")).await.unwrap(), a);

            // A restart: a new PodNetwork finds both, returns them unchanged, pods still talk.
            drop(net);
            let net = PodNetwork::new(cfg.clone()).await.unwrap();
            let listed: Vec<String> = net.list().into_iter().map(|s| s.uid).collect();
            assert_eq!(listed, ["uid-a", "uid-b"]);
            assert_eq!(net.setup(&request("uid-a", "pod-a")).await.unwrap(), a);
            assert_eq!(net.setup(&req_b).await.unwrap(), b);
            assert!(ping(&a, ip_b), "a -> b after restart");

            // Teardown releases the address and removes everything of the pod.
            net.teardown("uid-a").await.unwrap();
            net.teardown("uid-a").await.unwrap();
            assert!(!ping(&b, ip_a), "a's address is gone");
            assert!(!a.netns.as_ref().unwrap().exists());
            assert!(!a.hosts.exists() && !a.resolv_conf.exists() && !a.hostname.exists());
            assert!(!dir_entries(&cfg.state_dir.join("ipam")).contains(&ip_a.to_string()));
            assert_eq!(net.list().len(), 1);
            assert!(!links().iter().any(|l| l == &k3rs::kubelet::network::link::host_veth_name("uid-a")));
            assert!(ping(&b, gateway), "b unaffected");
            net.teardown("uid-b").await.unwrap();
            assert!(mounts_under(dir).iter().all(|m| m.ends_with("sandboxes")), "{:?}", mounts_under(dir));
        });
    });
}

#[test]
fn host_network_and_host_ipc_pods() {
    in_test_netns("host_network_and_host_ipc_pods", |dir| {
        runtime().block_on(async {
            let cfg = config(dir, "10.42.0.0/24");
            let net = PodNetwork::new(cfg.clone()).await.unwrap();
            let mut req = request("uid-h", "pod-h");
            req.host_network = true;
            req.host_aliases = vec![k8s_openapi::api::core::v1::HostAlias {
                ip: "10.0.0.9".into(),
                hostnames: Some(vec!["db".into()]),
            }];
            let links_before = links();
            let h = net.setup(&req).await.unwrap();
            assert_eq!((h.ip, &h.netns, &h.uts), (None, &None, &None));
            assert!(h.ipc.is_some());
            assert_eq!(links(), links_before, "no veth for a host-network pod");
            assert_eq!(
                std::fs::read_to_string(&h.hosts).unwrap(),
                "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n192.168.1.5\tnode1\n\
                 \n# Entries added by HostAliases.\n10.0.0.9\tdb\n"
            );
            assert_eq!(std::fs::read_to_string(&h.hostname).unwrap(), "node1\n");
            // ClusterFirst on the host network falls back to the node's resolver.
            assert_eq!(std::fs::read_to_string(&h.resolv_conf).unwrap(), "search lan\nnameserver 192.168.1.1\n");

            let mut req2 = request("uid-i", "pod-i");
            req2.host_network = true;
            req2.host_ipc = true;
            req2.dns_policy = "ClusterFirstWithHostNet".into();
            let i = net.setup(&req2).await.unwrap();
            assert_eq!((i.ip, &i.netns, &i.ipc, &i.uts), (None, &None, &None, &None));
            assert!(std::fs::read_to_string(&i.resolv_conf).unwrap().contains("nameserver 10.43.0.10\n"));
            net.teardown("uid-h").await.unwrap();
            net.teardown("uid-i").await.unwrap();
            assert!(net.list().is_empty());
        });
    });
}

#[test]
fn exhaustion_and_crash_leftovers() {
    in_test_netns("exhaustion_and_crash_leftovers", |dir| {
        runtime().block_on(async {
            // A /29: network, gateway and broadcast leave five addresses.
            let cfg = config(dir, "10.42.0.0/29");
            let net = PodNetwork::new(cfg.clone()).await.unwrap();
            let links_empty = links();
            for i in 0..5 {
                net.setup(&request(&format!("uid-{i}"), &format!("pod-{i}"))).await.unwrap();
            }
            let err = net.setup(&request("uid-5", "pod-5")).await.unwrap_err();
            assert!(matches!(err, NetError::Address(_)), "{err}");
            assert!(err.to_string().contains("no free address left in the pod network 10.42.0.0/29"), "{err}");
            assert!(!cfg.run_dir.join("sandboxes/uid-5").exists(), "a failed setup leaves nothing");

            // A crash halfway through a setup: the record never got written.
            std::fs::remove_file(cfg.state_dir.join("sandboxes/uid-0.json")).unwrap();
            // Files of a sandbox that never got further, next to a pod directory of others.
            std::fs::create_dir_all(cfg.pods_dir.join("uid-x")).unwrap();
            std::fs::write(cfg.pods_dir.join("uid-x/etc-hosts"), "partial").unwrap();
            std::fs::create_dir_all(cfg.pods_dir.join("uid-y/volumes")).unwrap();
            drop(net);
            let net = PodNetwork::new(cfg.clone()).await.unwrap();
            assert_eq!(net.list().len(), 4);
            assert!(!links().contains(&k3rs::kubelet::network::link::host_veth_name("uid-0")));
            assert!(!cfg.run_dir.join("sandboxes/uid-0").exists());
            assert!(!cfg.pods_dir.join("uid-x").exists());
            assert!(cfg.pods_dir.join("uid-y/volumes").is_dir(), "others' pod directories stay");
            std::fs::remove_dir_all(cfg.pods_dir.join("uid-y")).unwrap();
            // Its address is free again.
            net.setup(&request("uid-5", "pod-5")).await.unwrap();

            // A sandbox whose namespace vanished (as after a reboot) is made again on setup,
            // with its address, though the allocator would hand out another one next.
            let s1 = net.list().into_iter().find(|s| s.uid == "uid-1").unwrap();
            let holder = s1.holder.expect("a holder");
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(holder.pid), nix::sys::signal::Signal::SIGKILL).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while holder.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            // Arrange that the allocator's next pick would be 10.42.0.2, not uid-1's .3.
            net.teardown("uid-4").await.unwrap();
            assert_eq!(net.setup(&request("uid-6", "pod-6")).await.unwrap().ip, Some("10.42.0.6".parse().unwrap()));
            net.teardown("uid-5").await.unwrap();
            assert_eq!(s1.ip, Some("10.42.0.3".parse().unwrap()));
            let again = net.setup(&request("uid-1", "pod-1")).await.unwrap();
            assert_eq!(again.ip, s1.ip, "the address is kept");
            assert_ne!(again.netns, None);
            assert!(std::fs::read_to_string(&again.hosts).unwrap().contains(&format!("{}\tpod-1\n", s1.ip.unwrap())));
            let other = net.list().into_iter().find(|s| s.uid == "uid-2").unwrap();
            assert!(ping(&again, other.ip.unwrap()));

            for s in net.list() {
                net.teardown(&s.uid).await.unwrap();
            }
            assert_eq!(links(), links_empty);
        });
    });
}

#[test]
fn hundred_setups_and_teardowns_leak_nothing() {
    in_test_netns("hundred_setups_and_teardowns_leak_nothing", |dir| {
        runtime().block_on(async {
            let cfg = config(dir, "10.42.0.0/24");
            let net = PodNetwork::new(cfg.clone()).await.unwrap();
            let links_before = links();
            let mounts_before = mounts_under(dir);
            let (mut setups, mut teardowns) = (Vec::new(), Vec::new());
            for i in 0..100 {
                let uid = format!("cycle-{i}");
                let t = Instant::now();
                let s = net.setup(&request(&uid, &format!("pod-{i}"))).await.unwrap();
                setups.push(t.elapsed());
                assert!(s.ip.is_some());
                let t = Instant::now();
                net.teardown(&uid).await.unwrap();
                teardowns.push(t.elapsed());
            }
            println!(
                "sandbox setup median {:.2} ms (max {:.2} ms), teardown median {:.2} ms (max {:.2} ms), 100 cycles",
                median(setups.clone()).as_secs_f64() * 1e3,
                setups.iter().max().unwrap().as_secs_f64() * 1e3,
                median(teardowns.clone()).as_secs_f64() * 1e3,
                teardowns.iter().max().unwrap().as_secs_f64() * 1e3,
            );

            // Fifty at once: distinct addresses, then all gone again.
            let t = Instant::now();
            let made = futures::future::join_all((0..50).map(|i| {
                let net = &net;
                async move { net.setup(&request(&format!("burst-{i}"), &format!("burst-{i}"))).await.unwrap() }
            }))
            .await;
            let burst = t.elapsed();
            let ips: BTreeSet<IpAddr> = made.iter().filter_map(|s| s.ip).collect();
            assert_eq!(ips.len(), 50);
            assert!(ping(&made[0], made[49].ip.unwrap()));
            let holders: Vec<_> = made.iter().map(|s| s.holder.expect("each pod's namespaces have a holder")).collect();
            assert!(holders.iter().all(|h| h.alive()));
            assert_eq!(holders.iter().map(|h| h.pid).collect::<BTreeSet<_>>().len(), 50);
            let t = Instant::now();
            futures::future::join_all(made.iter().map(|s| net.teardown(&s.uid)))
                .await
                .into_iter()
                .for_each(|r| r.unwrap());
            println!(
                "50 sandboxes at once: set up in {:.1} ms, torn down in {:.1} ms",
                burst.as_secs_f64() * 1e3,
                t.elapsed().as_secs_f64() * 1e3
            );

            assert_eq!(links(), links_before, "no leaked links");
            assert!(holders.iter().all(|h| !h.alive()), "no leaked holders");
            assert_eq!(mounts_under(dir), mounts_before, "no leaked mounts");
            assert!(dir_entries(&cfg.run_dir.join("sandboxes")).is_empty());
            assert!(dir_entries(&cfg.state_dir.join("sandboxes")).is_empty());
            assert_eq!(dir_entries(&cfg.state_dir.join("ipam")), ["last_reserved_ip"]);
            assert!(dir_entries(&cfg.pods_dir).is_empty());
            assert!(net.list().is_empty());
        });
    });
}

#[test]
fn pod_traffic_stays_on_the_node() {
    in_test_netns("pod_traffic_stays_on_the_node", |dir| {
        // A neighbour behind an "uplink" of the test node, with a route back to the pods: if
        // the node forwarded pod traffic, pings would go through both ways.
        let remote = format!("k3rs-t-podnet-rm-{}", std::process::id());
        let sh = |cmd: &str| {
            let st = Command::new("sh").args(["-c", cmd]).status().unwrap();
            assert!(st.success(), "{cmd}");
        };
        sh(&format!("ip netns add {remote}"));
        let _remote = NetnsGuard(remote.clone());
        sh(&format!("ip link add t-up0 type veth peer name t-up1 netns {remote}"));
        sh("ip addr add 192.168.77.1/24 dev t-up0 && ip link set t-up0 up");
        sh(&format!(
            "ip -n {remote} addr add 192.168.77.2/24 dev t-up1 && ip -n {remote} link set t-up1 up && \
             ip -n {remote} link set lo up && ip -n {remote} route add 10.42.0.0/16 via 192.168.77.1"
        ));
        runtime().block_on(async {
            let cfg = config(dir, "10.42.0.0/24");
            let net = PodNetwork::new(cfg.clone()).await.unwrap();
            let a = net.setup(&request("uid-a", "pod-a")).await.unwrap();
            let ip_a = a.ip.unwrap();
            let remote_path = PathBuf::from(format!("/run/netns/{remote}"));
            let remote_pings = |to: IpAddr| {
                nsenter("--net", &remote_path, &["busybox", "ping", "-c1", "-W1", &to.to_string()]).status.success()
            };
            assert!(ping(&a, "192.168.77.1".parse().unwrap()), "the node's own address is reachable");
            assert!(!ping(&a, "192.168.77.2".parse().unwrap()), "pod traffic must not be forwarded off the node");
            assert!(!remote_pings(ip_a), "outside traffic must not be forwarded to pods");

            // Traffic a DNAT rule sends to a pod (a node port, say) does get through.
            sh(&format!(
                "nft add table ip t-nat && \
                 nft add chain ip t-nat pre '{{ type nat hook prerouting priority dstnat; }}' && \
                 nft add rule ip t-nat pre iifname t-up0 icmp type echo-request dnat to {ip_a}"
            ));
            assert!(remote_pings("192.168.77.1".parse().unwrap()), "DNATed traffic reaches the pod and back");
            sh("nft delete table ip t-nat");
            assert!(!ping(&a, "192.168.77.2".parse().unwrap()), "still no forwarding of pod traffic");

            // Without the guard the same setup does forward: the checks above are meaningful.
            sh("nft delete table inet k3rs-podnet");
            assert!(ping(&a, "192.168.77.2".parse().unwrap()), "forwarding works without the guard");
            // A restart puts the guard back, leaving the running pod alone.
            drop(net);
            let net = PodNetwork::new(cfg.clone()).await.unwrap();
            assert!(!ping(&a, "192.168.77.2".parse().unwrap()));
            assert!(ping(&a, "10.42.0.1".parse().unwrap()));
            net.teardown("uid-a").await.unwrap();
        });
    });
}

#[test]
fn teardown_while_a_process_still_holds_the_pod_namespace() {
    in_test_netns("teardown_while_a_process_still_holds_the_pod_namespace", |dir| {
        runtime().block_on(async {
            let cfg = config(dir, "10.42.0.0/24");
            let net = PodNetwork::new(cfg.clone()).await.unwrap();
            let a = net.setup(&request("uid-a", "pod-a")).await.unwrap();
            // A straggler (a container not yet stopped) keeps the namespace alive.
            let mut straggler = Command::new("nsenter")
                .arg(format!("--net={}", a.netns.as_ref().unwrap().display()))
                .args(["--", "sleep", "60"])
                .spawn()
                .unwrap();
            let pid = straggler.id();
            // Until nsenter has joined, the namespace is not held yet.
            let ino = |p: &Path| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).ok();
            let held = PathBuf::from(format!("/proc/{pid}/ns/net"));
            let deadline = Instant::now() + Duration::from_secs(5);
            while ino(&held) != ino(a.netns.as_ref().unwrap()) {
                assert!(Instant::now() < deadline, "the straggler never joined the pod's namespace");
                std::thread::sleep(Duration::from_millis(5));
            }
            let t = Instant::now();
            net.teardown("uid-a").await.unwrap();
            let took = t.elapsed();
            println!("teardown with a held namespace took {took:?}");
            assert!(took >= Duration::from_secs(2), "the kernel cannot have removed a held namespace's link");
            // The pod end went with its pair: the straggler is off the bridge before the
            // address is handed out again.
            let inside = nsenter("--net", &held, &["ip", "-o", "link"]);
            let _ = straggler.kill();
            let _ = straggler.wait();
            assert!(inside.status.success());
            let inside = String::from_utf8_lossy(&inside.stdout).into_owned();
            assert!(inside.contains("lo:") && !inside.contains("eth0"), "{inside}");
            assert!(!links().contains(&k3rs::kubelet::network::link::host_veth_name("uid-a")));
            assert!(!dir_entries(&cfg.state_dir.join("ipam")).contains(&a.ip.unwrap().to_string()));
        });
    });
}
