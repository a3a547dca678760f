//! The proxy's nftables ruleset, a pure function of the service ports (kube-proxy's nftables
//! mode is the model): verdict maps keyed by address, protocol and port send a new
//! connection to its service port's chain, which DNATs to an endpoint picked at random.
//! Under ClientIP affinity the pick goes through per-endpoint chains that remember the
//! client. Services without endpoints are in a map that rejects at once. Traffic from
//! outside the pod network, and a pod reaching itself through its Service (hairpin, found
//! after DNAT in a set of `endpoint . endpoint` pairs), is masqueraded.
//!
//! Unlike kube-proxy, a Service without affinity has no per-endpoint chains: `nft` reads
//! every chain of the table before each transaction (nftables 1.0.6), so their count, not
//! the transaction's size, set the cost of an update (1,000 Services × 10 endpoints: 11,000
//! chains, ~1 MB read per update; without them ~220 KB).
//!
//! [`Rules`] keeps the rules of every service port between syncs and renders only the ports
//! that changed, as one transaction; [`full`] renders everything as one transaction that
//! replaces the table. So neither the work in k3rs nor the transaction of an update grows
//! with the number of Services.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use super::model::{Endpoint, ServicePort};

/// The proxy's table.
pub const TABLE: &str = "k3rs-proxy";
/// The connection mark of traffic to masquerade (kube-proxy's bit).
const MASQ_MARK: &str = "0x4000";
/// The set of `endpoint . endpoint` address pairs: a connection DNATed back to its own
/// source is a hairpin, masqueraded so that the answer comes back through the node.
const HAIRPIN: &str = "hairpin";

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
    /// Map (or the hairpin set) name → key → verdict (empty for a set).
    pub elements: BTreeMap<&'static str, BTreeMap<String, String>>,
}

/// What one service port adds to the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortRules {
    pub chains: Vec<(String, Vec<String>)>,
    pub sets: Vec<(String, String)>,
    /// (map or set, key, verdict): keys may be shared (an endpoint behind two Services) or
    /// claimed twice (two Services on one external address and port).
    pub elements: Vec<(&'static str, String, String)>,
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

/// The affinity set of an endpoint chain; its timeout is in the name, so a changed timeout
/// is a new set rather than a set to redefine under the rules that use it.
fn affinity_set(chain: &str, timeout: u32) -> String {
    format!("aff-{}-{timeout}", &chain[3..])
}

/// The rules sending a connection to one of `eps`: under affinity through the endpoints'
/// chains (whose sets remember the client), else one DNAT to a random endpoint.
fn pick_rules(t: &str, sp: &ServicePort, eps: &[Endpoint]) -> Vec<String> {
    let mut rules = Vec::new();
    if let Some(timeout) = sp.affinity {
        for e in eps {
            let c = ep_chain(t, e);
            rules.push(format!("ip saddr @{} goto {c}", affinity_set(&c, timeout)));
        }
        if eps.len() == 1 {
            rules.push(format!("goto {}", ep_chain(t, &eps[0])));
        } else {
            let arms: Vec<String> =
                eps.iter().enumerate().map(|(i, e)| format!("{i} : goto {}", ep_chain(t, e))).collect();
            rules.push(format!("numgen random mod {} vmap {{ {} }}", eps.len(), arms.join(", ")));
        }
        return rules;
    }
    let proto = sp.protocol.nft();
    if eps.len() == 1 {
        rules.push(format!("meta l4proto {proto} dnat to {}:{}", eps[0].ip, eps[0].port));
    } else {
        let arms: Vec<String> = eps.iter().enumerate().map(|(i, e)| format!("{i} : {} . {}", e.ip, e.port)).collect();
        rules.push(format!(
            "meta l4proto {proto} dnat ip addr . port to numgen random mod {} map {{ {} }}",
            eps.len(),
            arms.join(", ")
        ));
    }
    rules
}

/// The rules of one service port; `cluster_cidr` is the pod network (traffic from elsewhere
/// to a cluster IP is masqueraded).
pub fn port_rules(sp: &ServicePort, cluster_cidr: &str) -> PortRules {
    let mut r = PortRules::default();
    let t = tag(&sp.id);
    let proto = sp.protocol.nft();
    let mut endpoints: Vec<&Endpoint> = sp.cluster_endpoints.iter().chain(&sp.external_endpoints).collect();
    endpoints.sort();
    endpoints.dedup();
    let mut addrs: Vec<_> = endpoints.iter().map(|e| e.ip).collect();
    addrs.dedup();
    for ip in addrs {
        r.elements.push((HAIRPIN, format!("{ip} . {ip}"), String::new()));
    }
    if let Some(timeout) = sp.affinity {
        for e in endpoints {
            let c = ep_chain(&t, e);
            let set = affinity_set(&c, timeout);
            let rules = vec![
                format!("update @{set} {{ ip saddr }}"),
                format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port),
            ];
            r.sets.push((set, format!("type ipv4_addr; flags dynamic,timeout; timeout {timeout}s;")));
            r.chains.push((c, rules));
        }
    }
    let svc_chain = format!("svc-{t}");
    let has_cluster_chain = !sp.cluster_endpoints.is_empty();
    if has_cluster_chain {
        let mut rules = vec![format!("ip saddr != {cluster_cidr} jump mark-for-masquerade comment \"{}\"", sp.id)];
        rules.extend(pick_rules(&t, sp, &sp.cluster_endpoints));
        r.chains.push((svc_chain.clone(), rules));
    }
    if let Some(ip) = sp.cluster_ip {
        let key = format!("{ip} . {proto} . {}", sp.port);
        if has_cluster_chain {
            r.elements.push(("service-ips", key, format!("goto {svc_chain}")));
        } else {
            r.elements.push(("no-endpoint-services", key, "goto reject-chain".into()));
        }
    }
    if !sp.has_external() {
        return r;
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
            r.chains.push((c.clone(), pick_rules(&t, sp, &sp.external_endpoints)));
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
        r.chains.push((ext.clone(), rules));
        ("service-ips", "service-nodeports", format!("goto {ext}"))
    };
    for ip in &sp.external_ips {
        r.elements.push((map_ips, format!("{ip} . {proto} . {}", sp.port), verdict.clone()));
    }
    if let Some(np) = sp.node_port {
        r.elements.push((map_ports, format!("{proto} . {np}"), verdict.clone()));
    }
    r
}

/// The rules of every service port, kept between syncs.
#[derive(Debug)]
pub struct Rules {
    cluster_cidr: String,
    ports: HashMap<String, (ServicePort, PortRules)>,
    ruleset: Ruleset,
    /// (map, key) → claiming port → verdict; the first claim (by port id) is in force.
    claims: HashMap<(&'static str, String), BTreeMap<String, String>>,
}

/// A transaction in the order nft needs: what is used is made before it is referred to, and
/// what goes is unreferenced before it is deleted.
#[derive(Default)]
struct Tx {
    add_sets: String,
    add_chains: String,
    fill_chains: String,
    elements: String,
    flush_gone: String,
    delete_gone: String,
    delete_sets: String,
}

impl Rules {
    pub fn new(cluster_cidr: &str) -> Rules {
        let mut ruleset = Ruleset::default();
        for (name, _) in MAPS {
            ruleset.elements.insert(name, BTreeMap::new());
        }
        ruleset.elements.insert(HAIRPIN, BTreeMap::new());
        Rules { cluster_cidr: cluster_cidr.to_string(), ports: HashMap::new(), ruleset, claims: HashMap::new() }
    }

    /// Everything, for [`full`].
    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// Takes in the service ports as they are now and returns the transaction from the
    /// previous state, or `None` when nothing changed. Only ports that changed are rendered.
    pub fn update(&mut self, ports: &BTreeMap<String, ServicePort>) -> Option<String> {
        let mut tx = Tx::default();
        // (map, key) → the verdict in force before this update.
        let mut before: BTreeMap<(&'static str, String), Option<String>> = BTreeMap::new();
        let gone: Vec<String> = self.ports.keys().filter(|id| !ports.contains_key(*id)).cloned().collect();
        for id in gone {
            if let Some((_, old)) = self.ports.remove(&id) {
                self.change_port(&id, Some(&old), None, &mut tx, &mut before);
            }
        }
        for (id, sp) in ports {
            if self.ports.get(id).is_some_and(|(o, _)| o == sp) {
                continue;
            }
            let new = port_rules(sp, &self.cluster_cidr);
            let old = self.ports.remove(id).map(|(_, r)| r);
            self.change_port(id, old.as_ref(), Some(&new), &mut tx, &mut before);
            self.ports.insert(id.clone(), (sp.clone(), new));
        }
        for ((map, key), was) in before {
            let now = self.claims.get(&(map, key.clone())).and_then(|c| c.values().next()).cloned();
            if was == now {
                continue;
            }
            let elements = self.ruleset.elements.entry(map).or_default();
            if was.is_some() {
                let _ = writeln!(tx.elements, "delete element ip {TABLE} {map} {{ {key} }}");
                elements.remove(&key);
            }
            if let Some(v) = now {
                let _ = writeln!(tx.elements, "add element ip {TABLE} {map} {{ {} }}", element(&key, &v));
                elements.insert(key, v);
            }
        }
        let out =
            [tx.add_sets, tx.add_chains, tx.fill_chains, tx.elements, tx.flush_gone, tx.delete_gone, tx.delete_sets]
                .concat();
        (!out.is_empty()).then_some(out)
    }

    fn change_port(
        &mut self,
        id: &str,
        old: Option<&PortRules>,
        new: Option<&PortRules>,
        tx: &mut Tx,
        before: &mut BTreeMap<(&'static str, String), Option<String>>,
    ) {
        let empty = PortRules::default();
        let (old, new) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
        for (name, body) in &new.sets {
            if !old.sets.iter().any(|(n, _)| n == name) {
                let _ = writeln!(tx.add_sets, "add set ip {TABLE} {name} {{ {body} }}");
                self.ruleset.sets.insert(name.clone(), body.clone());
            }
        }
        for (name, rules) in &new.chains {
            let was = old.chains.iter().find(|(n, _)| n == name).map(|(_, r)| r);
            if was == Some(rules) {
                continue;
            }
            if was.is_none() {
                let _ = writeln!(tx.add_chains, "add chain ip {TABLE} {name}");
            }
            let _ = writeln!(tx.fill_chains, "flush chain ip {TABLE} {name}");
            for rule in rules {
                let _ = writeln!(tx.fill_chains, "add rule ip {TABLE} {name} {rule}");
            }
            self.ruleset.chains.insert(name.clone(), rules.clone());
        }
        for (name, _) in &old.chains {
            if !new.chains.iter().any(|(n, _)| n == name) {
                let _ = writeln!(tx.flush_gone, "flush chain ip {TABLE} {name}");
                let _ = writeln!(tx.delete_gone, "delete chain ip {TABLE} {name}");
                self.ruleset.chains.remove(name);
            }
        }
        for (name, _) in &old.sets {
            if !new.sets.iter().any(|(n, _)| n == name) {
                let _ = writeln!(tx.delete_sets, "delete set ip {TABLE} {name}");
                self.ruleset.sets.remove(name);
            }
        }
        let keys: BTreeSet<(&'static str, &String)> =
            old.elements.iter().chain(&new.elements).map(|(m, k, _)| (*m, k)).collect();
        for (map, key) in keys {
            let k = (map, key.clone());
            let claims = self.claims.entry(k.clone()).or_default();
            before.entry(k.clone()).or_insert_with(|| claims.values().next().cloned());
            claims.remove(id);
            if let Some((_, _, v)) = new.elements.iter().find(|(m, kk, _)| *m == map && kk == key) {
                claims.insert(id.to_string(), v.clone());
            }
            if claims.is_empty() {
                self.claims.remove(&k);
            }
        }
    }
}

/// A map element (`key : verdict`) or a set element (`key`).
fn element(key: &str, verdict: &str) -> String {
    if verdict.is_empty() {
        key.to_string()
    } else {
        format!("{key} : {verdict}")
    }
}

/// The whole ruleset of `ports` (for tests and the benchmark; the proxy keeps [`Rules`]).
pub fn build<'a>(ports: impl IntoIterator<Item = &'a ServicePort>, cluster_cidr: &str) -> Ruleset {
    let mut rules = Rules::new(cluster_cidr);
    let ports: BTreeMap<String, ServicePort> = ports.into_iter().map(|p| (p.id.clone(), p.clone())).collect();
    rules.update(&ports);
    rules.ruleset
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
        (
            "nat-postrouting",
            s(&[
                "type nat hook postrouting priority srcnat; policy accept;",
                "ct status dnat ip saddr . ip daddr @hairpin jump mark-for-masquerade",
                "jump masquerading",
            ]),
        ),
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
    let _ = writeln!(out, "\tset {HAIRPIN} {{\n\t\ttype ipv4_addr . ipv4_addr;");
    if let Some(m) = r.elements.get(HAIRPIN).filter(|m| !m.is_empty()) {
        let list: Vec<&str> = m.keys().map(String::as_str).collect();
        let _ = writeln!(out, "\t\telements = {{ {} }}", list.join(",\n\t\t\t"));
    }
    out.push_str("\t}\n");
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
        assert_eq!(r.chains[local], ["meta l4proto tcp dnat to 10.42.0.8:443"]);
    }

    #[test]
    fn a_small_change_is_a_small_transaction() {
        let mut p = ports();
        let mut rules = Rules::new("10.42.0.0/16");
        let first = rules.update(&p).unwrap();
        assert_eq!(rules.ruleset(), &build(p.values(), "10.42.0.0/16"));
        assert!(first.contains("add element ip k3rs-proxy hairpin { 10.42.0.5 . 10.42.0.5 }"), "{first}");
        assert_eq!(rules.update(&p), None);
        // One endpoint of one Service goes: one rule and its hairpin pair.
        p.get_mut("default/web:http/tcp").unwrap().cluster_endpoints.pop();
        p.get_mut("default/web:http/tcp").unwrap().external_endpoints.pop();
        let tx = rules.update(&p).unwrap();
        let svc = format!("svc-{}", tag("default/web:http/tcp"));
        assert_eq!(
            tx.lines().collect::<Vec<_>>(),
            [
                format!("flush chain ip {TABLE} {svc}"),
                format!("add rule ip {TABLE} {svc} ip saddr != 10.42.0.0/16 jump mark-for-masquerade comment \"default/web:http/tcp\""),
                format!("add rule ip {TABLE} {svc} meta l4proto tcp dnat to 10.42.0.5:8080"),
                format!("delete element ip {TABLE} hairpin {{ 10.42.0.6 . 10.42.0.6 }}"),
            ],
            "{tx}"
        );
        assert_eq!(rules.ruleset(), &build(p.values(), "10.42.0.0/16"));
        // The Service itself goes: its elements and chains.
        p.remove("default/web:http/tcp");
        let tx = rules.update(&p).unwrap();
        assert!(tx.contains("delete element ip k3rs-proxy service-ips { 10.43.0.20 . tcp . 80 }"), "{tx}");
        assert!(tx.contains("delete element ip k3rs-proxy service-nodeports { tcp . 30080 }"), "{tx}");
        assert!(tx.contains(&format!("delete chain ip k3rs-proxy {svc}")), "{tx}");
        assert_eq!(rules.ruleset(), &build(p.values(), "10.42.0.0/16"));
    }

    /// An endpoint behind two Services keeps its hairpin pair until both let it go, and two
    /// Services claiming one address and port resolve to one element, the same either way.
    #[test]
    fn shared_elements_follow_their_claims() {
        let mut p = ports();
        let mut twin = p["default/web:http/tcp"].clone();
        twin.id = "default/twin:http/tcp".into();
        twin.cluster_ip = Some("10.43.0.40".parse().unwrap());
        twin.node_port = Some(30080);
        p.insert(twin.id.clone(), twin);
        let mut rules = Rules::new("10.42.0.0/16");
        rules.update(&p);
        let nodeport = rules.ruleset().elements["service-nodeports"]["tcp . 30080"].clone();
        assert_eq!(nodeport, format!("goto ext-{}", tag("default/twin:http/tcp")));
        p.remove("default/twin:http/tcp");
        let tx = rules.update(&p).unwrap();
        assert!(!tx.contains("hairpin"), "the pairs are still claimed by web: {tx}");
        assert!(
            tx.contains(&format!(
                "add element ip k3rs-proxy service-nodeports {{ tcp . 30080 : goto ext-{} }}",
                tag("default/web:http/tcp")
            )),
            "{tx}"
        );
        assert_eq!(rules.ruleset(), &build(p.values(), "10.42.0.0/16"));
    }
}
