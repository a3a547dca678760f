//! What the cluster zone answers, as CoreDNS' `kubernetes` plugin (with `pods insecure`) and
//! the Kubernetes DNS specification define it: a pure function of the [`Index`] and one
//! question.
//!
//! Names under the zone are never forwarded: a name that does not exist is NXDOMAIN, a name
//! that exists without records of the asked type is NODATA (NOERROR, empty answer), both with
//! the zone's SOA in the authority section. Wildcard queries (`*` labels) are not supported:
//! CoreDNS deprecated them, and here `*` is an ordinary label that matches nothing.

use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::index::{Endpoint, Index, Kind, Port};

/// The TTL of every record the cluster zone answers.
pub const TTL: u32 = 5;
/// The TTL of custom host entries (k3s' NodeHosts uses 60).
pub const HOSTS_TTL: u32 = 60;
/// The schema version the Kubernetes DNS specification says `dns-version.<zone>` holds.
pub const SCHEMA_VERSION: &str = "1.1.0";

/// An authoritative outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// NOERROR with records (additional records for SRV targets).
    Records { answers: Vec<Record>, additionals: Vec<Record> },
    /// NOERROR, no answer: the name exists, the type does not.
    NoData,
    /// The name does not exist.
    NxDomain,
}

/// What to do with a question.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Answered here.
    Local(Outcome),
    /// Not ours: to the upstream resolvers (or the stub domain's servers).
    Forward,
}

/// The answer to `name`/`qtype` (class IN): custom hosts first, then the cluster zone, then
/// reverse look-ups of cluster addresses; everything else is forwarded.
pub fn route(index: &Index, name: &Name, qtype: RecordType) -> Route {
    let lower = name.to_lowercase();
    let text = lower.to_ascii();
    let text = text.trim_end_matches('.');
    if let Some(outcome) = hosts(index, &lower, text, qtype) {
        return Route::Local(outcome);
    }
    if index.zone.zone_of(&lower) {
        let rest = if text.len() == index.domain.len() {
            ""
        } else {
            text.get(..text.len().saturating_sub(index.domain.len() + 1)).unwrap_or("")
        };
        let labels: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('.').collect() };
        return Route::Local(zone(index, &lower, &labels, qtype));
    }
    if qtype == RecordType::PTR {
        if let Some(names) = lower
            .parse_arpa_name()
            .ok()
            .filter(|n| n.prefix_len() == n.max_prefix_len())
            .and_then(|n| index.reverse.get(&n.addr()))
        {
            let answers = names.iter().map(|n| record(&lower, TTL, RData::PTR(PTR(n.clone())))).collect();
            return Route::Local(Outcome::Records { answers, additionals: Vec::new() });
        }
    }
    Route::Forward
}

/// The zone's SOA record, as CoreDNS shapes it.
pub fn soa(index: &Index) -> Record {
    let mname = index.fqdn(&["ns", "dns"]).unwrap_or_else(|_| index.zone.clone());
    let rname = index.fqdn(&["hostmaster"]).unwrap_or_else(|_| index.zone.clone());
    record(&index.zone, TTL, RData::SOA(SOA::new(mname, rname, index.serial, 7200, 1800, 86400, TTL)))
}

/// The custom hosts (k3s' NodeHosts): A/AAAA and PTR where they have them; otherwise the
/// question goes on to the next source, as the `hosts` plugin with `fallthrough` does.
fn hosts(index: &Index, name: &Name, text: &str, qtype: RecordType) -> Option<Outcome> {
    let answers: Vec<Record> = match qtype {
        RecordType::A | RecordType::AAAA => {
            index.custom.hosts.get(text)?.iter().filter_map(|ip| address(name, *ip, qtype, HOSTS_TTL)).collect()
        }
        RecordType::PTR => {
            let net = name.parse_arpa_name().ok().filter(|n| n.prefix_len() == n.max_prefix_len())?;
            let names = index.hosts_reverse.get(&net.addr())?;
            names.iter().map(|n| record(name, HOSTS_TTL, RData::PTR(PTR(n.clone())))).collect()
        }
        _ => return None,
    };
    (!answers.is_empty()).then_some(Outcome::Records { answers, additionals: Vec::new() })
}

/// A name under the cluster zone; `labels` are those before the zone, leftmost first.
fn zone(index: &Index, name: &Name, labels: &[&str], qtype: RecordType) -> Outcome {
    match labels {
        [] => match qtype {
            RecordType::SOA => records(vec![soa(index)]),
            RecordType::NS => {
                let ns = index.fqdn(&["ns", "dns"]).unwrap_or_else(|_| index.zone.clone());
                let glue = address(&ns, index.dns_ip, glue_type(index.dns_ip), TTL);
                Outcome::Records {
                    answers: vec![record(name, TTL, RData::NS(NS(ns)))],
                    additionals: glue.into_iter().collect(),
                }
            }
            _ => Outcome::NoData,
        },
        ["dns-version"] => match qtype {
            RecordType::TXT => records(vec![record(name, TTL, RData::TXT(TXT::new(vec![SCHEMA_VERSION.into()])))]),
            _ => Outcome::NoData,
        },
        ["dns"] => Outcome::NoData,
        ["ns", "dns"] => or_nodata(address(name, index.dns_ip, qtype, TTL).into_iter().collect()),
        ["svc"] | ["pod"] => Outcome::NoData,
        [ns, "svc"] | [ns, "pod"] => {
            if index.namespaces.contains(*ns) {
                Outcome::NoData
            } else {
                Outcome::NxDomain
            }
        }
        [ip, ns, "pod"] => pod(index, name, ip, ns, qtype),
        [svc, ns, "svc"] => services(index, name, Request { ns, svc, endpoint: None, port: None }, qtype),
        [endpoint, svc, ns, "svc"] => {
            services(index, name, Request { ns, svc, endpoint: Some(endpoint), port: None }, qtype)
        }
        [port, proto, svc, ns, "svc"] => match (port.strip_prefix('_'), proto.strip_prefix('_')) {
            (Some(port), Some(proto)) => {
                services(index, name, Request { ns, svc, endpoint: None, port: Some((port, proto)) }, qtype)
            }
            _ => Outcome::NxDomain,
        },
        _ => Outcome::NxDomain,
    }
}

/// `a-b-c-d.<ns>.pod.<zone>`: with `pods insecure`, the address in the name, unchecked, in
/// any namespace that exists.
fn pod(index: &Index, name: &Name, label: &str, ns: &str, qtype: RecordType) -> Outcome {
    if !index.namespaces.contains(ns) {
        return Outcome::NxDomain;
    }
    let ip = if label.matches('-').count() == 3 {
        label.replace('-', ".").parse::<IpAddr>().ok().filter(IpAddr::is_ipv4)
    } else {
        label.replace('-', ":").parse::<IpAddr>().ok().filter(IpAddr::is_ipv6)
    };
    let Some(ip) = ip else { return Outcome::NxDomain };
    or_nodata(address(name, ip, qtype, TTL).into_iter().collect())
}

/// A query on a Service name, possibly narrowed to one endpoint or one named port.
struct Request<'a> {
    ns: &'a str,
    svc: &'a str,
    endpoint: Option<&'a str>,
    port: Option<(&'a str, &'a str)>,
}

/// One match: what the records of a name are made of (CoreDNS' `msg.Service`).
enum Target {
    Address {
        ip: IpAddr,
        port: Option<u16>,
        host: Name,
    },
    /// An ExternalName: a CNAME, or an SRV target when the port is known.
    Alias(Name, Option<u16>),
}

fn port_matches(want: Option<(&str, &str)>, port: &Port) -> bool {
    match want {
        None => true,
        Some((name, proto)) => port.name == name && port.protocol == proto,
    }
}

/// The records of a Service name, following CoreDNS' `findServices`: headless Services (and
/// names of one endpoint) give one match per ready endpoint and port, ExternalName ones an
/// alias, others one match per cluster IP and port. No match at all is NXDOMAIN.
fn services(index: &Index, name: &Name, req: Request<'_>, qtype: RecordType) -> Outcome {
    if !index.namespaces.contains(req.ns) {
        return Outcome::NxDomain;
    }
    let Some(entry) = index.service(req.ns, req.svc) else { return Outcome::NxDomain };
    let mut found = Vec::new();
    match &entry.kind {
        _ if matches!(entry.kind, Kind::Headless) || req.endpoint.is_some() => {
            for ep in entry.endpoints.iter().filter(|e| req.endpoint.is_none_or(|want| e.label == want)) {
                for p in ep.ports.iter().filter(|p| port_matches(req.port, p)) {
                    found.push(endpoint_target(index, &req, ep, p));
                }
            }
        }
        Kind::External(target) => {
            for p in entry.ports.iter().filter(|p| port_matches(req.port, p)) {
                found.push(Target::Alias(target.clone(), p.number));
            }
            if req.port.is_none() && entry.ports.is_empty() {
                found.push(Target::Alias(target.clone(), None));
            }
        }
        Kind::ClusterIp(ips) => {
            // The Service's own name is an SRV target; other answers are about `name` alone.
            let host = if qtype == RecordType::SRV {
                index.fqdn(&[req.svc, req.ns, "svc"]).unwrap_or_else(|_| name.clone())
            } else {
                name.clone()
            };
            for p in entry.ports.iter().filter(|p| port_matches(req.port, p)) {
                for ip in ips {
                    found.push(Target::Address { ip: *ip, port: p.number, host: host.clone() });
                }
            }
        }
        Kind::Headless => {}
    }
    if found.is_empty() {
        return Outcome::NxDomain;
    }
    let mut answers: Vec<Record> = Vec::new();
    let mut additionals: Vec<Record> = Vec::new();
    match qtype {
        RecordType::A | RecordType::AAAA | RecordType::CNAME => {
            for t in &found {
                let r = match t {
                    Target::Address { ip, .. } if qtype != RecordType::CNAME => address(name, *ip, qtype, TTL),
                    Target::Alias(to, _) => Some(record(name, TTL, RData::CNAME(CNAME(to.clone())))),
                    Target::Address { .. } => None,
                };
                if let Some(r) = r {
                    if !answers.contains(&r) {
                        answers.push(r);
                    }
                }
            }
        }
        RecordType::SRV => {
            let with_port: Vec<(&Name, u16, Option<IpAddr>)> = found
                .iter()
                .filter_map(|t| match t {
                    Target::Address { ip, port: Some(port), host } => Some((host, *port, Some(*ip))),
                    Target::Alias(to, Some(port)) => Some((to, *port, None)),
                    Target::Address { port: None, .. } | Target::Alias(_, None) => None,
                })
                .collect();
            // All at priority 0, sharing a weight of 100 as CoreDNS does.
            let weight = u16::try_from(100 / with_port.len().max(1)).unwrap_or(100);
            for (host, port, ip) in with_port {
                let r = record(name, TTL, RData::SRV(SRV::new(0, weight, port, host.clone())));
                if !answers.contains(&r) {
                    answers.push(r);
                }
                if let Some(a) = ip.and_then(|ip| address(host, ip, glue_type(ip), TTL)) {
                    if !additionals.contains(&a) {
                        additionals.push(a);
                    }
                }
            }
        }
        _ => {}
    }
    if answers.is_empty() {
        return Outcome::NoData;
    }
    Outcome::Records { answers, additionals }
}

fn endpoint_target(index: &Index, req: &Request<'_>, ep: &Endpoint, port: &Port) -> Target {
    let host = index.fqdn(&[&ep.label, req.svc, req.ns, "svc"]).unwrap_or_else(|_| index.zone.clone());
    Target::Address { ip: ep.ip, port: port.number, host }
}

fn glue_type(ip: IpAddr) -> RecordType {
    if ip.is_ipv4() {
        RecordType::A
    } else {
        RecordType::AAAA
    }
}

/// An A or AAAA record of `ip` when it is of the asked type.
fn address(name: &Name, ip: IpAddr, qtype: RecordType, ttl: u32) -> Option<Record> {
    match (ip, qtype) {
        (IpAddr::V4(v4), RecordType::A) => Some(record(name, ttl, RData::A(A(v4)))),
        (IpAddr::V6(v6), RecordType::AAAA) => Some(record(name, ttl, RData::AAAA(AAAA(v6)))),
        _ => None,
    }
}

fn record(name: &Name, ttl: u32, data: RData) -> Record {
    Record::from_rdata(name.clone(), ttl, data)
}

fn records(answers: Vec<Record>) -> Outcome {
    Outcome::Records { answers, additionals: Vec::new() }
}

fn or_nodata(answers: Vec<Record>) -> Outcome {
    if answers.is_empty() {
        Outcome::NoData
    } else {
        records(answers)
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use k8s_openapi::api::core::v1::Namespace;
    use serde_json::json;

    use super::*;
    use crate::dns::index::tests::{service, slice};
    use crate::dns::index::{parse_custom, SERVICE_NAME_LABEL};

    fn index() -> Index {
        let ns: Vec<Namespace> = ["default", "ns", "kube-system"]
            .iter()
            .map(|n| serde_json::from_value(json!({"metadata": {"name": n}})).unwrap())
            .collect();
        let svcs = [
            service(json!({"metadata": {"name": "web", "namespace": "ns"},
                "spec": {"clusterIP": "10.43.0.20", "clusterIPs": ["10.43.0.20"],
                         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"name": "dns", "port": 53, "protocol": "UDP"}]}})),
            service(json!({"metadata": {"name": "db", "namespace": "ns"},
                "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}})),
            service(json!({"metadata": {"name": "empty", "namespace": "ns"}, "spec": {"clusterIP": "None"}})),
            service(json!({"metadata": {"name": "ext", "namespace": "ns"},
                "spec": {"type": "ExternalName", "externalName": "web.ns.svc.cluster.local"}})),
            service(json!({"metadata": {"name": "six", "namespace": "ns"},
                "spec": {"clusterIP": "fd00::20", "ports": [{"port": 80}]}})),
        ];
        let slices =
            [slice(json!({"metadata": {"name": "db-x", "namespace": "ns", "labels": {SERVICE_NAME_LABEL: "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.42.0.5"], "hostname": "db-0"},
                {"addresses": ["10.42.0.6"], "hostname": "db-1"},
                {"addresses": ["10.42.0.7"], "conditions": {"ready": false}},
            ],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}))];
        let cm = serde_json::from_value(json!({"data": {"hosts": "192.168.5.5 registry.local\n"}})).unwrap();
        Index::build("cluster.local", "10.43.0.10".parse().unwrap(), &ns, &svcs, &slices, parse_custom(Some(&cm)), 42)
    }

    fn ask(idx: &Index, name: &str, qtype: RecordType) -> Outcome {
        match route(idx, &Name::from_str(name).unwrap(), qtype) {
            Route::Local(o) => o,
            Route::Forward => panic!("{name} was forwarded"),
        }
    }

    /// The answers' data as text, for short assertions.
    fn data(o: &Outcome) -> Vec<String> {
        match o {
            Outcome::Records { answers, .. } => answers.iter().map(|r| r.data.to_string()).collect(),
            other => panic!("no records: {other:?}"),
        }
    }

    #[test]
    fn cluster_ip_service_answers_a_and_nodata_for_aaaa() {
        let idx = index();
        let o = ask(&idx, "web.ns.svc.cluster.local.", RecordType::A);
        assert_eq!(data(&o), ["10.43.0.20"]);
        let Outcome::Records { answers, .. } = &o else { unreachable!() };
        assert_eq!(answers[0].ttl, TTL);
        assert_eq!(answers[0].name, Name::from_str("web.ns.svc.cluster.local.").unwrap());
        // Names are case-insensitive.
        assert_eq!(data(&ask(&idx, "WEB.Ns.SVC.cluster.LOCAL.", RecordType::A)), ["10.43.0.20"]);
        assert_eq!(ask(&idx, "web.ns.svc.cluster.local.", RecordType::AAAA), Outcome::NoData);
        assert_eq!(ask(&idx, "web.ns.svc.cluster.local.", RecordType::MX), Outcome::NoData);
        assert_eq!(data(&ask(&idx, "six.ns.svc.cluster.local.", RecordType::AAAA)), ["fd00::20"]);
        assert_eq!(ask(&idx, "six.ns.svc.cluster.local.", RecordType::A), Outcome::NoData);
    }

    #[test]
    fn nxdomain_versus_nodata() {
        let idx = index();
        assert_eq!(ask(&idx, "nope.ns.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
        assert_eq!(ask(&idx, "web.nope.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
        // A namespace that exists is an empty non-terminal; one that does not is not.
        assert_eq!(ask(&idx, "ns.svc.cluster.local.", RecordType::A), Outcome::NoData);
        assert_eq!(ask(&idx, "nope.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
        assert_eq!(ask(&idx, "svc.cluster.local.", RecordType::A), Outcome::NoData);
        assert_eq!(ask(&idx, "cluster.local.", RecordType::A), Outcome::NoData);
        assert_eq!(ask(&idx, "x.cluster.local.", RecordType::A), Outcome::NxDomain);
        assert_eq!(ask(&idx, "a.b.c.d.e.f.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
        // A headless Service without ready endpoints has no records at all: NXDOMAIN, as CoreDNS.
        assert_eq!(ask(&idx, "empty.ns.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
        // Wildcards are not supported.
        assert_eq!(ask(&idx, "*.ns.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
    }

    #[test]
    fn soa_and_ns_of_the_zone() {
        let idx = index();
        let soa_rec = soa(&idx);
        assert_eq!(soa_rec.data.to_string(), "ns.dns.cluster.local. hostmaster.cluster.local. 42 7200 1800 86400 5");
        assert_eq!(data(&ask(&idx, "cluster.local.", RecordType::SOA)), [soa_rec.data.to_string()]);
        let ns = ask(&idx, "cluster.local.", RecordType::NS);
        assert_eq!(data(&ns), ["ns.dns.cluster.local."]);
        assert_eq!(data(&ask(&idx, "ns.dns.cluster.local.", RecordType::A)), ["10.43.0.10"]);
        assert_eq!(data(&ask(&idx, "dns-version.cluster.local.", RecordType::TXT)), ["1.1.0"]);
    }

    #[test]
    fn headless_service_answers_ready_endpoints_and_their_hostnames() {
        let idx = index();
        assert_eq!(data(&ask(&idx, "db.ns.svc.cluster.local.", RecordType::A)), ["10.42.0.5", "10.42.0.6"]);
        assert_eq!(data(&ask(&idx, "db-1.db.ns.svc.cluster.local.", RecordType::A)), ["10.42.0.6"]);
        assert_eq!(ask(&idx, "db-9.db.ns.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
        // The not-ready endpoint has no name either.
        assert_eq!(ask(&idx, "10-42-0-7.db.ns.svc.cluster.local.", RecordType::A), Outcome::NxDomain);
    }

    #[test]
    fn srv_for_named_ports() {
        let idx = index();
        let o = ask(&idx, "_http._tcp.web.ns.svc.cluster.local.", RecordType::SRV);
        assert_eq!(data(&o), ["0 100 80 web.ns.svc.cluster.local."]);
        let Outcome::Records { additionals, .. } = &o else { unreachable!() };
        assert_eq!(additionals.len(), 1);
        assert_eq!(additionals[0].data.to_string(), "10.43.0.20");
        assert_eq!(ask(&idx, "_http._udp.web.ns.svc.cluster.local.", RecordType::SRV), Outcome::NxDomain);
        assert_eq!(ask(&idx, "http.tcp.web.ns.svc.cluster.local.", RecordType::SRV), Outcome::NxDomain);
        assert_eq!(
            data(&ask(&idx, "_dns._udp.web.ns.svc.cluster.local.", RecordType::SRV)),
            ["0 100 53 web.ns.svc.cluster.local."]
        );
        // The port name selects the Service's address records too.
        assert_eq!(data(&ask(&idx, "_http._tcp.web.ns.svc.cluster.local.", RecordType::A)), ["10.43.0.20"]);
        // SRV on the bare name: one per port.
        assert_eq!(
            data(&ask(&idx, "web.ns.svc.cluster.local.", RecordType::SRV)),
            ["0 50 80 web.ns.svc.cluster.local.", "0 50 53 web.ns.svc.cluster.local."]
        );
        // Headless: one target per endpoint.
        let o = ask(&idx, "_pg._tcp.db.ns.svc.cluster.local.", RecordType::SRV);
        assert_eq!(data(&o), ["0 50 5432 db-0.db.ns.svc.cluster.local.", "0 50 5432 db-1.db.ns.svc.cluster.local."]);
    }

    #[test]
    fn external_name_is_a_cname() {
        let idx = index();
        assert_eq!(data(&ask(&idx, "ext.ns.svc.cluster.local.", RecordType::A)), ["web.ns.svc.cluster.local."]);
        assert_eq!(data(&ask(&idx, "ext.ns.svc.cluster.local.", RecordType::CNAME)), ["web.ns.svc.cluster.local."]);
        assert_eq!(ask(&idx, "ext.ns.svc.cluster.local.", RecordType::TXT), Outcome::NoData);
    }

    #[test]
    fn pods_insecure() {
        let idx = index();
        assert_eq!(data(&ask(&idx, "10-42-0-9.ns.pod.cluster.local.", RecordType::A)), ["10.42.0.9"]);
        assert_eq!(ask(&idx, "10-42-0-9.ns.pod.cluster.local.", RecordType::AAAA), Outcome::NoData);
        assert_eq!(data(&ask(&idx, "fd00--9.ns.pod.cluster.local.", RecordType::AAAA)), ["fd00::9"]);
        assert_eq!(ask(&idx, "10-42-0-999.ns.pod.cluster.local.", RecordType::A), Outcome::NxDomain);
        assert_eq!(ask(&idx, "10-42-0-9.nope.pod.cluster.local.", RecordType::A), Outcome::NxDomain);
        assert_eq!(ask(&idx, "ns.pod.cluster.local.", RecordType::A), Outcome::NoData);
    }

    #[test]
    fn ptr_for_services_and_endpoints_else_forwarded() {
        let idx = index();
        assert_eq!(data(&ask(&idx, "20.0.43.10.in-addr.arpa.", RecordType::PTR)), ["web.ns.svc.cluster.local."]);
        assert_eq!(data(&ask(&idx, "5.0.42.10.in-addr.arpa.", RecordType::PTR)), ["db-0.db.ns.svc.cluster.local."]);
        assert_eq!(data(&ask(&idx, "5.5.168.192.in-addr.arpa.", RecordType::PTR)), ["registry.local."]);
        let six = Name::from(IpAddr::from_str("fd00::20").unwrap());
        assert_eq!(data(&ask(&idx, &six.to_ascii(), RecordType::PTR)), ["six.ns.svc.cluster.local."]);
        assert_eq!(route(&idx, &Name::from_str("1.1.168.192.in-addr.arpa.").unwrap(), RecordType::PTR), Route::Forward);
        assert_eq!(route(&idx, &Name::from_str("43.10.in-addr.arpa.").unwrap(), RecordType::PTR), Route::Forward);
    }

    #[test]
    fn custom_hosts_then_forwarding() {
        let idx = index();
        assert_eq!(data(&ask(&idx, "registry.local.", RecordType::A)), ["192.168.5.5"]);
        let Outcome::Records { answers, .. } = ask(&idx, "Registry.Local.", RecordType::A) else { unreachable!() };
        assert_eq!(answers[0].ttl, HOSTS_TTL);
        // No AAAA there: on to the next source, which forwards.
        assert_eq!(route(&idx, &Name::from_str("registry.local.").unwrap(), RecordType::AAAA), Route::Forward);
        assert_eq!(route(&idx, &Name::from_str("example.com.").unwrap(), RecordType::A), Route::Forward);
        assert_eq!(route(&idx, &Name::from_str("local.").unwrap(), RecordType::A), Route::Forward);
    }
}
