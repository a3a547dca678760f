//! The policy engine's nftables table, a pure function of the local pods' rules
//! ([`super::model`]).
//!
//! One base chain on the forward hook at filter priority, which runs after the proxy's DNAT
//! (nat prerouting at dstnat, -100), so service traffic is judged by the pod it was sent to.
//! Replies of allowed connections pass first; then two verdict maps keyed by pod IP jump to
//! the chain of the sending pod (if isolated for egress) and of the receiving pod (if
//! isolated for ingress), so a packet meets at most two short chains however many pods there
//! are. A pod chain `return`s what a rule allows (an `accept` there would end the forward
//! chain and skip the other direction's check) and drops the rest. The pods a selector chose
//! are a named set per policy rule, shared by every pod the policy selects.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::net::Ipv4Addr;

use super::model::{Allow, Direction, PodRules, PortMatch};

/// The table, separate from the proxy's (`ip k3rs-proxy`) and the pod network's guard
/// (`inet k3rs-podnet`).
pub const TABLE: &str = "k3rs-netpol";

/// The dynamic part of the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// Peer sets by name.
    pub sets: BTreeMap<String, BTreeSet<Ipv4Addr>>,
    /// Pod chains by name, with their rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// Pod IP → its ingress chain.
    pub ingress: BTreeMap<Ipv4Addr, String>,
    /// Pod IP → its egress chain.
    pub egress: BTreeMap<Ipv4Addr, String>,
}

fn tag(id: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, id.as_bytes());
    d.as_ref()[..5].iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn dashed(ip: Ipv4Addr) -> String {
    ip.to_string().replace('.', "-")
}

fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

fn allow_rules(a: &Allow, dir: Direction, sets: &mut BTreeMap<String, BTreeSet<Ipv4Addr>>) -> Vec<String> {
    let field = match dir {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    };
    let mut peers = Vec::new();
    // Named egress ports carry their destinations: their rules need no peer set.
    let named_only = !a.ports.is_empty() && a.ports.iter().all(|p| matches!(p, PortMatch::Named(..)));
    if a.peers.any || named_only {
        peers.push(String::new());
    } else {
        if a.peers.has_selectors {
            let set = format!("peers-{}", tag(&a.id));
            sets.entry(set.clone()).or_insert_with(|| a.peers.pods.clone());
            peers.push(format!("ip {field} @{set}"));
        }
        for (net, except) in &a.peers.blocks {
            let mut m = format!("ip {field} {net}");
            if !except.is_empty() {
                let _ = write!(m, " ip {field} != {{ {} }}", list(except));
            }
            peers.push(m);
        }
    }
    let mut out = Vec::new();
    let comment = format!("comment \"{}\"", a.id);
    let mut push = |parts: &[&str]| {
        let body: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
        out.push(format!("{} return {comment}", body.join(" ")).trim_start().to_string());
    };
    if a.ports.is_empty() {
        for p in &peers {
            push(&[p]);
        }
    }
    for port in &a.ports {
        match port {
            PortMatch::AnyPort(proto) => {
                let m = format!("meta l4proto {}", proto.nft());
                peers.iter().for_each(|p| push(&[p, &m]));
            }
            PortMatch::Range(proto, start, end) => {
                let range = if start == end { start.to_string() } else { format!("{start}-{end}") };
                let m = format!("meta l4proto {} th dport {range}", proto.nft());
                peers.iter().for_each(|p| push(&[p, &m]));
            }
            // The destinations already are the rule's peers that have the port.
            PortMatch::Named(proto, dests) => {
                let elems = list(dests.iter().map(|(ip, port)| format!("{ip} . {port}")));
                push(&[&format!("meta l4proto {} ip daddr . th dport {{ {elems} }}", proto.nft())]);
            }
        }
    }
    out
}

/// The ruleset of the local pods' rules.
pub fn build(rules: &BTreeMap<Ipv4Addr, PodRules>) -> Ruleset {
    let mut r = Ruleset::default();
    for (ip, pod) in rules {
        for (dir, allows) in [(Direction::Ingress, &pod.ingress), (Direction::Egress, &pod.egress)] {
            let Some(allows) = allows else { continue };
            let (name, own, map) = match dir {
                Direction::Ingress => (format!("ingress-{}", dashed(*ip)), format!("ip saddr {ip}"), &mut r.ingress),
                Direction::Egress => (format!("egress-{}", dashed(*ip)), format!("ip daddr {ip}"), &mut r.egress),
            };
            map.insert(*ip, name.clone());
            // A pod cannot cut itself off (through its own Service, say).
            let mut chain = vec![format!("{own} return comment \"the pod itself\"")];
            for a in allows {
                chain.extend(allow_rules(a, dir, &mut r.sets));
            }
            chain.push("counter drop comment \"isolated: no policy allows it\"".to_string());
            r.chains.insert(name, chain);
        }
    }
    r
}

/// One transaction that replaces the whole table with `r`.
pub fn full(r: &Ruleset) -> String {
    // Declaring the table first makes the delete succeed also when it does not exist yet.
    let mut out = format!("table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n");
    // Sets, then the chains using them, then the maps jumping to those.
    for (name, ips) in &r.sets {
        let _ = write!(out, "\tset {name} {{\n\t\ttype ipv4_addr;\n");
        if !ips.is_empty() {
            let _ = writeln!(out, "\t\telements = {{ {} }}", list(ips));
        }
        out.push_str("\t}\n");
    }
    for (name, rules) in &r.chains {
        let _ = writeln!(out, "\tchain {name} {{");
        for rule in rules {
            let _ = writeln!(out, "\t\t{rule}");
        }
        out.push_str("\t}\n");
    }
    for (name, map) in [("ingress-pods", &r.ingress), ("egress-pods", &r.egress)] {
        let _ = write!(out, "\tmap {name} {{\n\t\ttype ipv4_addr : verdict;\n");
        if !map.is_empty() {
            let _ =
                writeln!(out, "\t\telements = {{ {} }}", list(map.iter().map(|(ip, c)| format!("{ip} : jump {c}"))));
        }
        out.push_str("\t}\n");
    }
    out.push_str(
        "\tchain forward {\n\
         \t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tct state established,related accept comment \"replies of allowed connections\"\n\
         \t\tip saddr vmap @egress-pods\n\
         \t\tip daddr vmap @ingress-pods\n\
         \t}\n}\n",
    );
    out
}

/// The transaction that removes the table.
pub fn cleanup() -> String {
    format!("table ip {TABLE}\ndelete table ip {TABLE}\n")
}
