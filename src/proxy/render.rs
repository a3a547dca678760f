//! The proxy's nftables ruleset, a pure function of the service ports (kube-proxy's nftables
//! mode is the model): verdict maps keyed by address, protocol and port send a new
//! connection to its service port's chain, which picks an endpoint chain at random (or the
//! one its client is bound to under ClientIP affinity) that DNATs. Services without
//! endpoints are in a map that rejects at once. Traffic from outside the pod network, and a
//! pod reaching itself through its Service (hairpin), is masqueraded.
//!
//! [`Ruleset`] is the dynamic part (per service port chains, affinity sets, map elements);
//! [`full`] renders everything as one transaction that replaces the table, and [`diff`] the
//! transaction that turns one ruleset into another touching only what changed, so the cost
//! of an update does not grow with the number of Services.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::model::{Endpoint, ServicePort};

/// The proxy's table.
pub const TABLE: &str = "k3rs-proxy";
/// The connection mark of traffic to masquerade (kube-proxy's bit).
const MASQ_MARK: &str = "0x4000";

/// The maps, in declaration order, with their key types.
const MAPS: [(&str, &str); 4] = [
    ("service-ips", "ipv4_addr . inet_proto . inet_service"),
    ("service-nodeports", "inet_proto . inet_service"),
    ("no-endpoint-services", "ipv4_addr . inet_proto . inet_service"),
    ("no-endpoint-nodeports", "inet_proto . inet_service"),
];

/// The per-service part of the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Chain name → its rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Set name → its declaration body.
    pub sets: BTreeMap<String, String>,
    /// Map name → key → verdict.
    pub elements: BTreeMap<&'static str, BTreeMap<String, String>>,
}

/// A short stable tag for a service port's chains.
fn tag(id: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    d.as_ref()[..5].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn ep_chain(t: &str, e: &Endpoint) -> String {
    format!("ep-{t}-{}-{}", e.ip.to_string().replace('.', "-"), e.port)
}

/// The rules choosing among `eps` (whose chains exist), with affinity first.
fn pick_rules(t: &str, eps: &[Endpoint], affinity: bool) -> Vec<String> {
    let mut rules = Vec::new();
    if affinity {
        for e in eps {
            let c = ep_chain(t, e);
            rules.push(format!("ip saddr @aff-{} goto {c}", &c[3..]));
        }
    }
    if eps.len() == 1 {
        rules.push(format!("goto {}", ep_chain(t, &eps[0])));
    } else {
        let arms: Vec<String> = eps.iter().enumerate().map(|(i, e)| format!("{i} : goto {}", ep_chain(t, e))).collect();
        rules.push(format!("numgen random mod {} vmap {{ {} }}", eps.len(), arms.join(", ")));
    }
    rules
}

/// The dynamic ruleset for `ports`; `cluster_cidr` is the pod network (traffic from
/// elsewhere to a cluster IP is masqueraded).
pub fn build<'a>(ports: impl IntoIterator<Item = &'a ServicePort>, cluster_cidr: &str) -> Ruleset {
    let mut r = Ruleset::default();
    for (name, _) in MAPS {
        r.elements.insert(name, BTreeMap::new());
    }
    for sp in ports {
        let t = tag(&sp.id);
        let proto = sp.protocol.nft();
        let mut endpoints: Vec<&Endpoint> = sp.cluster_endpoints.iter().chain(&sp.external_endpoints).collect();
        endpoints.sort();
        endpoints.dedup();
        for e in endpoints {
            let c = ep_chain(&t, e);
            let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", e.ip)];
            if let Some(timeout) = sp.affinity {
                let set = format!("aff-{}", &c[3..]);
                r.sets.insert(set.clone(), format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;"));
                rules.push(format!("update @{set} {{ ip saddr }}"));
            }
            rules.push(format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port));
            r.chains.insert(c, rules);
        }
        let svc_chain = format!("svc-{t}");
        let has_cluster_chain = !sp.cluster_endpoints.is_empty();
        if has_cluster_chain {
            let mut rules = vec![format!("ip saddr != {cluster_cidr} jump mark-for-masquerade comment \"{}\"", sp.id)];
            rules.extend(pick_rules(&t, &sp.cluster_endpoints, sp.affinity.is_some()));
            r.chains.insert(svc_chain.clone(), rules);
        }
        if let Some(ip) = sp.cluster_ip {
            let key = format!("{ip} . {proto} . {}", sp.port);
            if has_cluster_chain {
                r.elements.get_mut("service-ips").map(|m| m.insert(key, format!("goto {svc_chain}")));
            } else {
                r.elements.get_mut("no-endpoint-services").map(|m| m.insert(key, "goto reject-chain".into()));
            }
        }
        if !sp.has_external() {
            continue;
        }
        let (map_ips, map_ports, verdict) = if sp.external_endpoints.is_empty() {
            ("no-endpoint-services", "no-endpoint-nodeports", "goto reject-chain".to_string())
        } else {
            // Where external traffic goes: the cluster chain when it has the same endpoints and
            // the client's address need not be kept (that chain masquerades traffic from
            // outside the pod network), else a chain of its own over the external ones.
            let target = if has_cluster_chain && !sp.external_local && sp.external_endpoints == sp.cluster_endpoints {
                svc_chain.clone()
            } else {
                let c = format!("svcx-{t}");
                r.chains.insert(c.clone(), pick_rules(&t, &sp.external_endpoints, sp.affinity.is_some()));
                c
            };
            let mut rules = Vec::new();
            if sp.external_local {
                // Keep the client's address; only the node's own traffic is masqueraded, and
                // it may go to any endpoint.
                rules.push("fib saddr type local jump mark-for-masquerade".to_string());
                if has_cluster_chain {
                    rules.push(format!("fib saddr type local goto {svc_chain}"));
                }
            } else {
                rules.push("jump mark-for-masquerade".to_string());
            }
            rules.push(format!("goto {target}"));
            let ext = format!("ext-{t}");
            r.chains.insert(ext.clone(), rules);
            ("service-ips", "service-nodeports", format!("goto {ext}"))
        };
        for ip in &sp.external_ips {
            r.elements.get_mut(map_ips).map(|m| m.insert(format!("{ip} . {proto} . {}", sp.port), verdict.clone()));
        }
        if let Some(np) = sp.node_port {
            r.elements.get_mut(map_ports).map(|m| m.insert(format!("{proto} . {np}"), verdict.clone()));
        }
    }
    r
}

/// The fixed part: base chains hooked into netfilter and the helper chains.
fn base_chains() -> Vec<(&'static str, Vec<String>)> {
    let s = |v: &[&str]| v.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    vec![
        (
            "filter-input",
            s(&[
                "type filter hook input priority -110; policy accept;",
                "ct state new jump nodeport-endpoints-check",
                "ct state new jump service-endpoints-check",
            ]),
        ),
        (
            "filter-forward",
            s(&["type filter hook forward priority -110; policy accept;", "ct state new jump service-endpoints-check"]),
        ),
        (
            "filter-output",
            s(&[
                "type filter hook output priority -110; policy accept;",
                "ct state new jump service-endpoints-check",
                "ct state new jump nodeport-endpoints-check",
            ]),
        ),
        ("service-endpoints-check", s(&["ip daddr . meta l4proto . th dport vmap @no-endpoint-services"])),
        (
            "nodeport-endpoints-check",
            s(&["fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports"]),
        ),
        ("reject-chain", s(&["reject"])),
        ("nat-prerouting", s(&["type nat hook prerouting priority dstnat; policy accept;", "jump services"])),
        ("nat-output", s(&["type nat hook output priority -100; policy accept;", "jump services"])),
        ("nat-postrouting", s(&["type nat hook postrouting priority srcnat; policy accept;", "jump masquerading"])),
        (
            "masquerading",
            vec![
                format!("meta mark & {MASQ_MARK} == 0 return"),
                format!("meta mark set meta mark ^ {MASQ_MARK}"),
                "masquerade fully-random".into(),
            ],
        ),
        ("mark-for-masquerade", vec![format!("meta mark set meta mark | {MASQ_MARK}")]),
        (
            "services",
            s(&[
                "ip daddr . meta l4proto . th dport vmap @service-ips",
                "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
            ]),
        ),
    ]
}

/// One transaction that replaces the whole table with `r`.
pub fn full(r: &Ruleset) -> String {
    let mut out = format!("table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
    for (name, key) in MAPS {
        let _ = writeln!(out, "\tmap {name} {{\n\t\ttype {key} : verdict;");
        let elems = r.elements.get(name).filter(|m| !m.is_empty());
        if let Some(m) = elems {
            let list: Vec<String> = m.iter().map(|(k, v)| format!("{k} : {v}")).collect();
            let _ = writeln!(out, "\t\telements = {{ {} }}", list.join(",\n\t\t\t"));
        }
        out.push_str("\t}\n");
    }
    for (name, body) in &r.sets {
        let _ = writeln!(out, "\tset {name} {{ {body} }}");
    }
    // Chains are declared before any rule jumps to them.
    for (name, rules) in base_chains() {
        match rules.first().filter(|r| r.starts_with("type ")) {
            Some(hook) => writeln!(out, "\tchain {name} {{ {hook} }}"),
            None => writeln!(out, "\tchain {name} {{ }}"),
        }
        .ok();
    }
    for name in r.chains.keys() {
        let _ = writeln!(out, "\tchain {name} {{ }}");
    }
    out.push_str("}\n");
    for (name, rules) in
        base_chains().iter().map(|(n, r)| (n.to_string(), r)).chain(r.chains.iter().map(|(n, r)| (n.clone(), r)))
    {
        // A base chain's hook is in its declaration above.
        for rule in rules.iter().filter(|r| !r.starts_with("type ")) {
            let _ = writeln!(out, "add rule ip {TABLE} {name} {rule}");
        }
    }
    out
}

/// The transaction that turns `old` into `new`, or `None` when they are the same.
pub fn diff(old: &Ruleset, new: &Ruleset) -> Option<String> {
    if old == new {
        return None;
    }
    let mut out = String::new();
    for (name, body) in &new.sets {
        if !old.sets.contains_key(name) {
            let _ = writeln!(out, "add set ip {TABLE} {name} {{ {body} }}");
        }
    }
    for name in new.chains.keys() {
        if !old.chains.contains_key(name) {
            let _ = writeln!(out, "add chain ip {TABLE} {name}");
        }
    }
    for (name, rules) in &new.chains {
        if old.chains.get(name) != Some(rules) {
            let _ = writeln!(out, "flush chain ip {TABLE} {name}");
            for rule in rules {
                let _ = writeln!(out, "add rule ip {TABLE} {name} {rule}");
            }
        }
    }
    let empty = BTreeMap::new();
    for (map, _) in MAPS {
        let (o, n) = (old.elements.get(map).unwrap_or(&empty), new.elements.get(map).unwrap_or(&empty));
        for (k, v) in o {
            if n.get(k) != Some(v) {
                let _ = writeln!(out, "delete element ip {TABLE} {map} {{ {k} }}");
            }
        }
        for (k, v) in n {
            if o.get(k) != Some(v) {
                let _ = writeln!(out, "add element ip {TABLE} {map} {{ {k} : {v} }}");
            }
        }
    }
    let gone: Vec<&String> = old.chains.keys().filter(|k| !new.chains.contains_key(*k)).collect();
    for name in &gone {
        let _ = writeln!(out, "flush chain ip {TABLE} {name}");
    }
    for name in &gone {
        let _ = writeln!(out, "delete chain ip {TABLE} {name}");
    }
    for name in old.sets.keys().filter(|k| !new.sets.contains_key(*k)) {
        let _ = writeln!(out, "delete set ip {TABLE} {name}");
    }
    Some(out)
}

/// The transaction that removes every rule of the proxy.
pub fn cleanup() -> String {
    format!("table ip {TABLE}\ndelete table ip {TABLE}\n")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;

    use super::super::model;
    use super::*;

    fn ports() -> BTreeMap<String, ServicePort> {
        let services: Vec<Service> = serde_json::from_value(serde_json::json!([
            {"metadata": {"name": "web", "namespace": "default"},
             "spec": {"type": "NodePort", "clusterIP": "10.43.0.20", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}},
            {"metadata": {"name": "sticky", "namespace": "default"},
             "spec": {"clusterIP": "10.43.0.21", "sessionAffinity": "ClientIP",
                      "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}, "ports": [{"port": 53, "protocol": "UDP"}]}},
            {"metadata": {"name": "local", "namespace": "default"},
             "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.22", "externalTrafficPolicy": "Local",
                      "ports": [{"port": 8443, "nodePort": 30443}]},
             "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.2"}]}}},
            {"metadata": {"name": "empty", "namespace": "default"},
             "spec": {"type": "NodePort", "clusterIP": "10.43.0.23", "ports": [{"port": 80, "nodePort": 30081}]}}
        ]))
        .unwrap();
        let slices: Vec<EndpointSlice> = serde_json::from_value(serde_json::json!([
            {"metadata": {"name": "web-a", "namespace": "default", "labels": {"kubernetes.io/service-name": "web"}},
             "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
             "endpoints": [{"addresses": ["10.42.0.5"], "nodeName": "n1", "conditions": {"ready": true}},
                           {"addresses": ["10.42.0.6"], "nodeName": "n1", "conditions": {"ready": true}}]},
            {"metadata": {"name": "sticky-a", "namespace": "default", "labels": {"kubernetes.io/service-name": "sticky"}},
             "addressType": "IPv4", "ports": [{"name": "", "port": 5353, "protocol": "UDP"}],
             "endpoints": [{"addresses": ["10.42.0.7"], "nodeName": "n1", "conditions": {"ready": true}}]},
            {"metadata": {"name": "local-a", "namespace": "default", "labels": {"kubernetes.io/service-name": "local"}},
             "addressType": "IPv4", "ports": [{"name": "", "port": 443, "protocol": "TCP"}],
             "endpoints": [{"addresses": ["10.42.0.8"], "nodeName": "n1", "conditions": {"ready": true}},
                           {"addresses": ["10.42.0.9"], "nodeName": "n2", "conditions": {"ready": true}}]}
        ]))
        .unwrap();
        let services: Vec<Arc<Service>> = services.into_iter().map(Arc::new).collect();
        let slices: Vec<Arc<EndpointSlice>> = slices.into_iter().map(Arc::new).collect();
        model::build(&services, &slices, "n1")
    }

    /// The ruleset of four Services is the golden file (`K3RS_UPDATE_GOLDEN=1` rewrites it).
    #[test]
    fn ruleset_matches_the_golden_file() {
        let r = build(ports().values(), "10.42.0.0/16");
        let text = full(&r);
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proxy/testdata/ruleset.nft");
        if std::env::var_os("K3RS_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let golden = std::fs::read_to_string(&path).expect("golden file");
        assert_eq!(text, golden, "the ruleset changed: review it, then K3RS_UPDATE_GOLDEN=1");
    }

    /// With every endpoint local, Local traffic still bypasses the cluster chain, which
    /// masquerades traffic from outside the pod network.
    #[test]
    fn local_policy_never_masquerades_outside_clients() {
        let ep = model::Endpoint { ip: "10.42.0.8".parse().unwrap(), port: 443, local: true };
        let sp = ServicePort {
            id: "default/only-local:443/tcp".into(),
            protocol: model::Proto::Tcp,
            port: 443,
            cluster_ip: Some("10.43.0.30".parse().unwrap()),
            external_ips: vec![],
            node_port: Some(30444),
            affinity: None,
            cluster_endpoints: vec![ep.clone()],
            external_endpoints: vec![ep],
            external_local: true,
        };
        let r = build([&sp], "10.42.0.0/16");
        let ext = r.elements["service-nodeports"]["tcp . 30444"].trim_start_matches("goto ").to_string();
        let target = r.chains[&ext].last().unwrap().trim_start_matches("goto ").to_string();
        assert!(target.starts_with("svcx-"), "{target}");
        assert!(r.chains[&target].iter().all(|rule| !rule.contains("masquerade")), "{:?}", r.chains[&target]);
    }

    #[test]
    fn no_endpoints_reject_and_local_policy_keeps_the_client() {
        let r = build(ports().values(), "10.42.0.0/16");
        let e = &r.elements;
        assert_eq!(e["no-endpoint-services"]["10.43.0.23 . tcp . 80"], "goto reject-chain");
        assert_eq!(e["no-endpoint-nodeports"]["tcp . 30081"], "goto reject-chain");
        let ext = e["service-ips"]["192.168.1.2 . tcp . 8443"].trim_start_matches("goto ").to_string();
        let rules = &r.chains[&ext];
        assert!(!rules.contains(&"jump mark-for-masquerade".to_string()), "{rules:?}");
        let local = rules.last().unwrap().trim_start_matches("goto ");
        assert_eq!(
            r.chains[local],
            [format!(
                "goto {}",
                ep_chain(
                    &tag("default/local:8443/tcp"),
                    &Endpoint { ip: "10.42.0.8".parse().unwrap(), port: 443, local: true }
                )
            )]
        );
    }

    #[test]
    fn a_small_change_is_a_small_transaction() {
        let mut p = ports();
        let before = build(p.values(), "10.42.0.0/16");
        assert_eq!(diff(&before, &before), None);
        // One endpoint of one Service goes.
        p.get_mut("default/web:http/tcp").unwrap().cluster_endpoints.pop();
        p.get_mut("default/web:http/tcp").unwrap().external_endpoints.pop();
        let after = build(p.values(), "10.42.0.0/16");
        let tx = diff(&before, &after).unwrap();
        let lines: Vec<&str> = tx.lines().collect();
        assert!(lines.iter().all(|l| !l.contains("sticky") && !l.contains("local")), "{tx}");
        assert!(
            lines.contains(
                &format!("delete chain ip {TABLE} ep-{}-10-42-0-6-8080", tag("default/web:http/tcp")).as_str()
            ),
            "{tx}"
        );
        assert!(lines.len() < 10, "{tx}");
        // The Service itself goes: its elements and chains.
        p.remove("default/web:http/tcp");
        let gone = build(p.values(), "10.42.0.0/16");
        let tx = diff(&after, &gone).unwrap();
        assert!(tx.contains("delete element ip k3rs-proxy service-ips { 10.43.0.20 . tcp . 80 }"), "{tx}");
        assert!(tx.contains("delete element ip k3rs-proxy service-nodeports { tcp . 30080 }"), "{tx}");
    }
}
