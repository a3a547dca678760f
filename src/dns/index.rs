//! The records the DNS server answers from, as plain maps: a pure function of the Services,
//! EndpointSlices, Namespaces and the custom ConfigMap, rebuilt whenever one of them
//! changes, so that answering a query is a few hash look-ups and never touches the API.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use hickory_proto::rr::Name;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A port as DNS names it: `_<name>._<protocol>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    /// Lowercase; empty for an unnamed port (which no SRV name can select).
    pub name: String,
    /// Lowercase (`tcp`, `udp`, `sctp`).
    pub protocol: String,
    /// `None`: a slice with no ports (a headless Service without ports still has addresses).
    pub number: Option<u16>,
}

/// How a Service is answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Its cluster IPs.
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: its endpoints' addresses.
    Headless,
    /// `type: ExternalName`: a CNAME to this name.
    External(Name),
}

/// One address behind a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: IpAddr,
    /// Its DNS label: the endpoint's `hostname`, or the address with `.`/`:` as `-`.
    pub label: String,
    pub ports: Vec<Port>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEntry {
    pub kind: Kind,
    pub ports: Vec<Port>,
    /// Ready endpoints (all of them with `publishNotReadyAddresses`), one per address.
    pub endpoints: Vec<Endpoint>,
}

/// What the `kube-system/k3rs-dns-custom` ConfigMap adds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Custom {
    /// `hosts`: lowercase names without the trailing dot, and their addresses in file order.
    pub hosts: HashMap<String, Vec<IpAddr>>,
    /// `stubDomains`: lowercase domains (no trailing dot) and the servers that answer them.
    pub stub_domains: Vec<(String, Vec<SocketAddr>)>,
    /// `upstreamNameservers`: used instead of the node's resolv.conf when not empty.
    pub upstream: Vec<SocketAddr>,
    /// What could not be read, for the log.
    pub problems: Vec<String>,
}

/// The answerable state of the cluster.
#[derive(Clone, Debug)]
pub struct Index {
    /// The cluster domain, lowercase, no trailing dot (`cluster.local`).
    pub domain: String,
    /// The same as a fully qualified name.
    pub zone: Name,
    /// The cluster DNS Service address: `ns.dns.<domain>` answers with it.
    pub dns_ip: IpAddr,
    pub namespaces: HashSet<String>,
    /// Namespace → Service name → entry.
    pub services: HashMap<String, HashMap<String, ServiceEntry>>,
    /// Address → the names whose records hold it (Service cluster IPs and endpoints).
    pub reverse: HashMap<IpAddr, Vec<Name>>,
    /// Address → names, from the custom hosts.
    pub hosts_reverse: HashMap<IpAddr, Vec<Name>>,
    pub custom: Custom,
    /// The SOA serial: bumped on every rebuild, as CoreDNS reports its last change.
    pub serial: u32,
}

impl Index {
    /// An index with nothing in it.
    pub fn empty(domain: &str, dns_ip: IpAddr) -> Index {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let zone = Name::from_ascii(format!("{domain}.")).unwrap_or_else(|_| Name::root());
        Index {
            domain,
            zone,
            dns_ip,
            namespaces: HashSet::new(),
            services: HashMap::new(),
            reverse: HashMap::new(),
            hosts_reverse: HashMap::new(),
            custom: Custom::default(),
            serial: 0,
        }
    }

    /// Builds the index from the objects.
    pub fn build<'a>(
        domain: &str,
        dns_ip: IpAddr,
        namespaces: impl IntoIterator<Item = &'a Namespace>,
        services: impl IntoIterator<Item = &'a Service>,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        custom: Custom,
        serial: u32,
    ) -> Index {
        let mut index = Index::empty(domain, dns_ip);
        index.serial = serial;
        index.namespaces = namespaces.into_iter().filter_map(|n| n.metadata.name.clone()).collect();
        // Slices by (namespace, service), in a stable order so that answers are too.
        let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
        for s in slices {
            let (Some(ns), Some(svc)) =
                (s.metadata.namespace.as_ref(), s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)))
            else {
                continue;
            };
            by_service.entry((ns.clone(), svc.clone())).or_default().push(s);
        }
        for svc in services {
            let (Some(ns), Some(name)) = (svc.metadata.namespace.as_ref(), svc.metadata.name.as_ref()) else {
                continue;
            };
            let Some(entry) = service_entry(svc, by_service.get(&(ns.clone(), name.clone())).map(Vec::as_slice)) else {
                continue;
            };
            if let Ok(fqdn) = index.fqdn(&[name, ns, "svc"]) {
                if let Kind::ClusterIp(ips) = &entry.kind {
                    for ip in ips {
                        index.reverse.entry(*ip).or_default().push(fqdn.clone());
                    }
                }
                for ep in &entry.endpoints {
                    if let Ok(n) = index.fqdn(&[&ep.label, name, ns, "svc"]) {
                        index.reverse.entry(ep.ip).or_default().push(n);
                    }
                }
            }
            index.services.entry(ns.clone()).or_default().insert(name.clone(), entry);
        }
        for (host, ips) in &custom.hosts {
            if let Ok(n) = Name::from_ascii(format!("{host}.")) {
                for ip in ips {
                    index.hosts_reverse.entry(*ip).or_default().push(n.clone());
                }
            }
        }
        index.custom = custom;
        index
    }

    /// `labels` + the cluster domain, as a fully qualified name.
    pub fn fqdn(&self, labels: &[&str]) -> Result<Name, hickory_proto::ProtoError> {
        let mut text = String::new();
        for l in labels {
            text.push_str(l);
            text.push('.');
        }
        text.push_str(&self.domain);
        text.push('.');
        Name::from_ascii(text)
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&ServiceEntry> {
        self.services.get(namespace)?.get(name)
    }
}

/// A Service's entry, or `None` for one DNS does not publish (no cluster IP yet).
fn service_entry(svc: &Service, slices: Option<&[&EndpointSlice]>) -> Option<ServiceEntry> {
    let spec = svc.spec.as_ref()?;
    let ports = spec
        .ports
        .iter()
        .flatten()
        .map(|p| Port {
            name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
            protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
            number: u16::try_from(p.port).ok(),
        })
        .collect();
    let kind = if spec.type_.as_deref() == Some("ExternalName") {
        let target = spec.external_name.as_deref()?.trim_end_matches('.');
        Kind::External(Name::from_ascii(format!("{target}.")).ok()?)
    } else if spec.cluster_ip.as_deref() == Some("None") {
        Kind::Headless
    } else {
        let mut ips: Vec<IpAddr> = spec.cluster_ips.iter().flatten().filter_map(|s| s.parse().ok()).collect();
        if ips.is_empty() {
            ips.extend(spec.cluster_ip.as_deref().and_then(|s| s.parse::<IpAddr>().ok()));
        }
        if ips.is_empty() {
            return None;
        }
        Kind::ClusterIp(ips)
    };
    let publish_all = spec.publish_not_ready_addresses == Some(true);
    let mut endpoints: Vec<Endpoint> = Vec::new();
    let mut seen = HashSet::new();
    for slice in slices.into_iter().flatten() {
        let ports: Vec<Port> = match slice.ports.as_deref() {
            Some(ps) if !ps.is_empty() => ps
                .iter()
                .map(|p| Port {
                    name: p.name.clone().unwrap_or_default().to_ascii_lowercase(),
                    protocol: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                    number: p.port.and_then(|n| u16::try_from(n).ok()),
                })
                .collect(),
            _ => vec![Port { name: String::new(), protocol: String::new(), number: None }],
        };
        for ep in &slice.endpoints {
            // Ready unless said otherwise, as the API defines a missing condition.
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready && !publish_all {
                continue;
            }
            for addr in &ep.addresses {
                let Ok(ip) = IpAddr::from_str(addr) else { continue };
                if !seen.insert(ip) {
                    continue;
                }
                let label = match ep.hostname.as_deref() {
                    Some(h) if !h.is_empty() => h.to_ascii_lowercase(),
                    _ => dashed(ip),
                };
                endpoints.push(Endpoint { ip, label, ports: ports.clone() });
            }
        }
    }
    Some(ServiceEntry { kind, ports, endpoints })
}

/// An address as one DNS label: `10.42.0.5` → `10-42-0-5`, `fd00::1` → `fd00--1`.
pub fn dashed(ip: IpAddr) -> String {
    ip.to_string().replace(['.', ':'], "-")
}

/// Reads the custom ConfigMap: `hosts` (/etc/hosts format), `stubDomains` (JSON object of
/// domain → list of servers) and `upstreamNameservers` (JSON list). A bad entry is skipped
/// and reported; the rest still applies.
pub fn parse_custom(cm: Option<&ConfigMap>) -> Custom {
    let mut custom = Custom::default();
    let Some(data) = cm.and_then(|c| c.data.as_ref()) else { return custom };
    if let Some(hosts) = data.get("hosts") {
        for line in hosts.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let Some(addr) = fields.next() else { continue };
            let Ok(ip) = IpAddr::from_str(addr) else {
                custom.problems.push(format!("hosts: {addr:?} is not an IP address"));
                continue;
            };
            for name in fields {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if Name::from_ascii(format!("{name}.")).is_err() {
                    custom.problems.push(format!("hosts: {name:?} is not a domain name"));
                    continue;
                }
                let ips = custom.hosts.entry(name).or_default();
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
    }
    if let Some(text) = data.get("stubDomains") {
        match serde_json::from_str::<BTreeMap<String, Vec<String>>>(text) {
            Ok(map) => {
                for (domain, servers) in map {
                    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
                    let servers = parse_servers(&servers, &mut custom.problems);
                    if !servers.is_empty() && Name::from_ascii(format!("{domain}.")).is_ok() {
                        custom.stub_domains.push((domain, servers));
                    }
                }
            }
            Err(e) => custom.problems.push(format!("stubDomains: {e}")),
        }
    }
    if let Some(text) = data.get("upstreamNameservers") {
        match serde_json::from_str::<Vec<String>>(text) {
            Ok(list) => custom.upstream = parse_servers(&list, &mut custom.problems),
            Err(e) => custom.problems.push(format!("upstreamNameservers: {e}")),
        }
    }
    // The longest domain first, so the most specific stub wins.
    custom.stub_domains.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
    custom
}

/// `1.2.3.4`, `1.2.3.4:5353`, `fd00::1` or `[fd00::1]:5353`.
pub fn parse_server(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(ip) = IpAddr::from_str(text) {
        return Some(SocketAddr::new(ip, 53));
    }
    SocketAddr::from_str(text).ok()
}

fn parse_servers(list: &[String], problems: &mut Vec<String>) -> Vec<SocketAddr> {
    list.iter()
        .filter_map(|s| {
            let addr = parse_server(s);
            if addr.is_none() {
                problems.push(format!("{s:?} is not a nameserver address"));
            }
            addr
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn service(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    pub fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).expect("slice")
    }

    #[test]
    fn endpoints_respect_readiness_and_publish_not_ready() {
        let svc = service(json!({"metadata": {"name": "db", "namespace": "ns"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}));
        let mut publish = svc.clone();
        publish.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        let s = slice(json!({"metadata": {"name": "db-1", "namespace": "ns", "labels": {SERVICE_NAME_LABEL: "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.42.0.5"], "hostname": "db-0", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.6"], "conditions": {"ready": false}},
                {"addresses": ["10.42.0.7"]},
            ],
            "ports": [{"name": "PG", "port": 5432, "protocol": "TCP"}]}));
        let idx = Index::build("cluster.local", "10.43.0.10".parse().unwrap(), [], [&svc], [&s], Custom::default(), 1);
        let e = idx.service("ns", "db").unwrap();
        assert_eq!(e.kind, Kind::Headless);
        let labels: Vec<_> = e.endpoints.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(labels, ["db-0", "10-42-0-7"]);
        assert_eq!(e.endpoints[0].ports[0], Port { name: "pg".into(), protocol: "tcp".into(), number: Some(5432) });
        let idx =
            Index::build("cluster.local", "10.43.0.10".parse().unwrap(), [], [&publish], [&s], Custom::default(), 1);
        assert_eq!(idx.service("ns", "db").unwrap().endpoints.len(), 3);
        assert_eq!(
            idx.reverse[&"10.42.0.5".parse::<IpAddr>().unwrap()],
            [Name::from_ascii("db-0.db.ns.svc.cluster.local.").unwrap()]
        );
    }

    #[test]
    fn custom_config_map_is_read_leniently() {
        let cm: ConfigMap = serde_json::from_value(json!({"data": {
            "hosts": "# comment\n10.0.0.1 a.example B.example.\nbad x\n\n10.0.0.2 a.example # trailing\n",
            "stubDomains": "{\"acme.local\": [\"1.2.3.4\", \"127.0.0.1:5353\", \"nope\"], \"x.acme.local\": [\"5.6.7.8\"]}",
            "upstreamNameservers": "[\"8.8.8.8\"]",
        }}))
        .unwrap();
        let c = parse_custom(Some(&cm));
        assert_eq!(c.hosts["a.example"], ["10.0.0.1".parse::<IpAddr>().unwrap(), "10.0.0.2".parse().unwrap()]);
        assert_eq!(c.hosts["b.example"], ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(c.stub_domains[0].0, "x.acme.local");
        assert_eq!(c.stub_domains[1].1, ["1.2.3.4:53".parse().unwrap(), "127.0.0.1:5353".parse().unwrap()]);
        assert_eq!(c.upstream, ["8.8.8.8:53".parse().unwrap()]);
        assert_eq!(c.problems.len(), 2, "{:?}", c.problems);
        assert_eq!(parse_custom(None), Custom::default());
    }
}
