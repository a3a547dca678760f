use std::process::Command;

use super::model::{PodView, Proto};
use super::*;
use crate::kubelet::network::guard::FakeNft;

fn pod(ns: &str, name: &str, labels: &[(&str, &str)], ip: &str, ports: &[(&str, &str, i32)]) -> Pod {
    let labels: serde_json::Map<String, serde_json::Value> =
        labels.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect();
    let ports: Vec<serde_json::Value> =
        ports.iter().map(|(n, p, c)| serde_json::json!({"name": n, "protocol": p, "containerPort": c})).collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox", "ports": ports}]},
        "status": {"phase": "Running", "podIP": ip}
    }))
    .unwrap()
}

fn namespace(name: &str, labels: serde_json::Value) -> Arc<Namespace> {
    Arc::new(serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": labels}})).unwrap())
}

fn policy(v: serde_json::Value) -> Arc<NetworkPolicy> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn world() -> (Vec<Arc<NetworkPolicy>>, Vec<PodView>, Vec<Arc<Namespace>>) {
    let pods = [
        pod("default", "web", &[("app", "web")], "10.42.0.5", &[("http", "TCP", 8080)]),
        pod("default", "client", &[("role", "client")], "10.42.0.6", &[]),
        pod("default", "other", &[], "10.42.0.7", &[]),
        pod("prod", "api", &[("app", "api")], "10.42.0.8", &[("dns", "UDP", 5353)]),
        pod("monitoring", "prom", &[("app", "prom")], "10.42.0.9", &[]),
    ];
    let views = pods.iter().filter_map(|p| PodView::from_pod(p, "n1", None)).collect();
    let namespaces = vec![
        namespace("default", serde_json::json!({})),
        namespace("prod", serde_json::json!({"env": "prod"})),
        namespace("monitoring", serde_json::json!({"team": "ops"})),
    ];
    let policies = vec![
        // Web takes HTTP (by name) from clients of its namespace and anything from ops'
        // namespaces, and only that.
        policy(serde_json::json!({
            "metadata": {"name": "web-in", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                     "ingress": [
                        {"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                         "ports": [{"port": "http"}]},
                        {"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}},
                                   "podSelector": {"matchLabels": {"app": "prom"}}}]}]}
        })),
        // Everything in prod is isolated both ways; egress to a block minus a hole, on a
        // port range, and DNS by name to pods that call it so.
        policy(serde_json::json!({
            "metadata": {"name": "deny-all", "namespace": "prod"},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        })),
        policy(serde_json::json!({
            "metadata": {"name": "api-out", "namespace": "prod"},
            "spec": {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Egress"],
                     "egress": [
                        {"to": [{"ipBlock": {"cidr": "10.42.0.0/16", "except": ["10.42.0.7/32"]}}],
                         "ports": [{"protocol": "TCP", "port": 8000, "endPort": 8100}]},
                        {"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "UDP", "port": "dns"}]}]}
        })),
    ];
    (policies, views, namespaces)
}

#[test]
fn a_pod_no_policy_selects_is_not_isolated() {
    let (policies, views, namespaces) = world();
    let rules = model::build(&policies, &views, &namespaces);
    let isolated: Vec<String> = rules.keys().map(|ip| ip.to_string()).collect();
    assert_eq!(isolated, ["10.42.0.5", "10.42.0.8"]);
    let web = &rules[&"10.42.0.5".parse().unwrap()];
    assert!(web.egress.is_none(), "an Ingress policy does not isolate egress");
    let ingress = web.ingress.as_ref().unwrap();
    assert_eq!(ingress.len(), 2);
    // The named port resolves on web's container; the client alone is in the peers.
    assert_eq!(ingress[0].ports, [model::PortMatch::Range(Proto::Tcp, 8080, 8080)]);
    assert_eq!(ingress[0].peers.pods.iter().map(|i| i.to_string()).collect::<Vec<_>>(), ["10.42.0.6"]);
    // Both selectors in one peer: prom, in an ops namespace.
    assert_eq!(ingress[1].peers.pods.iter().map(|i| i.to_string()).collect::<Vec<_>>(), ["10.42.0.9"]);
}

#[test]
fn deny_all_isolates_with_no_rules_and_allows_add_up() {
    let (policies, views, namespaces) = world();
    let rules = model::build(&policies, &views, &namespaces);
    let api = &rules[&"10.42.0.8".parse().unwrap()];
    assert_eq!(api.ingress.as_ref().map(Vec::len), Some(0), "deny-all: isolated, nothing allowed in");
    let egress = api.egress.as_ref().unwrap();
    assert_eq!(egress.len(), 2, "api-out's rules add to deny-all's none");
    // An egress named port: the destinations that declare it, within the peers.
    let dns: Vec<model::PortMatch> = egress[1].ports.clone();
    assert_eq!(dns, [model::PortMatch::Named(Proto::Udp, vec![("10.42.0.8".parse().unwrap(), 5353)])]);
}

#[test]
fn without_policy_types_egress_counts_only_with_egress_rules() {
    let (_, views, namespaces) = world();
    let p = policy(serde_json::json!({
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"podSelector": {"matchLabels": {"role": "client"}}, "egress": [{}]}
    }));
    let rules = model::build(&[p], &views, &namespaces);
    let client = &rules[&"10.42.0.6".parse().unwrap()];
    assert_eq!(client.ingress.as_ref().map(Vec::len), Some(0));
    let egress = client.egress.as_ref().unwrap();
    assert!(egress[0].peers.any && egress[0].ports.is_empty(), "an empty rule allows everything");
}

#[test]
fn ip_blocks_clear_host_bits_and_skip_ipv6() {
    assert_eq!(model::Net::parse("10.42.0.5/16").unwrap().to_string(), "10.42.0.0/16");
    assert!(model::Net::parse("fd00::/64").is_none());
    assert!(model::Net::parse("10.0.0.0/0").unwrap().contains("192.168.1.1".parse().unwrap()));
}

/// The ruleset of the three policies is the golden file (`K3RS_UPDATE_GOLDEN=1` rewrites it).
#[test]
fn ruleset_matches_the_golden_file() {
    let (policies, views, namespaces) = world();
    let text = render::full(&render::build(&model::build(&policies, &views, &namespaces)));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/netpol/testdata/ruleset.nft");
    if std::env::var_os("K3RS_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let golden = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(text, golden, "the ruleset changed: review it, then K3RS_UPDATE_GOLDEN=1");
}

/// The golden ruleset and the clean-up load into the real nftables, in a throwaway network
/// namespace (root only; skipped elsewhere).
#[test]
fn ruleset_loads_with_the_real_nft() {
    let root = nix::unistd::geteuid().is_root();
    let tools = Command::new("nft").arg("--version").output().is_ok() && Command::new("ip").arg("-V").output().is_ok();
    if !root || !tools {
        eprintln!("skipped: needs root, nft and ip");
        return;
    }
    let ns = format!("k3rs-netpol-test-{}", std::process::id());
    assert!(Command::new("ip").args(["netns", "add", &ns]).status().unwrap().success());
    let load = |text: &str| {
        let file = std::env::temp_dir().join(format!("{ns}.nft"));
        std::fs::write(&file, text).unwrap();
        let out = Command::new("ip").args(["netns", "exec", &ns, "nft", "-f"]).arg(&file).output().unwrap();
        let _ = std::fs::remove_file(&file);
        out
    };
    let (policies, views, namespaces) = world();
    let text = render::full(&render::build(&model::build(&policies, &views, &namespaces)));
    let first = load(&text);
    // Twice: the second replaces the first.
    let second = load(&text);
    let listed = Command::new("ip").args(["netns", "exec", &ns, "nft", "list", "table", "ip", render::TABLE]).output();
    let empty = load(&render::full(&render::Ruleset::default()));
    let gone = load(&render::cleanup());
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    for (what, out) in [("first", &first), ("again", &second), ("empty", &empty), ("cleanup", &gone)] {
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let listed = String::from_utf8_lossy(&listed.unwrap().stdout).to_string();
    assert!(listed.contains("10.42.0.5 : jump ingress-10-42-0-5"), "{listed}");
}

#[tokio::test]
async fn the_gate_returns_once_a_sync_has_taken_the_pod_in() {
    let engine = Engine::new("n1");
    let p = pod("default", "late", &[], "", &[]);
    let gate = engine.clone();
    let waiting = tokio::spawn(async move { gate.sandbox_ready(&p, "10.42.0.20".parse().unwrap()).await });
    // The pod is known to the engine with the address the kubelet gave, though its status
    // has none yet.
    let views = loop {
        let (generation, views) = engine.pods(&[]);
        if generation == 1 {
            break views;
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(views.iter().map(|v| v.ip.to_string()).collect::<Vec<_>>(), ["10.42.0.20"]);
    assert!(!waiting.is_finished());
    engine.applied.send_replace(1);
    waiting.await.unwrap().unwrap();
    engine.sandbox_gone("uid-late");
    assert!(engine.pods(&[]).1.is_empty());
}

#[test]
fn cleanup_removes_the_table() {
    let nft = FakeNft::default();
    cleanup(&nft).unwrap();
    assert_eq!(*nft.applied.lock().unwrap(), ["table ip k3rs-netpol\ndelete table ip k3rs-netpol\n"]);
}
