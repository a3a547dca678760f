//! What the proxy must do, from Services and EndpointSlices: one [`ServicePort`] per port of
//! every Service with a cluster IP, external IPs, load-balancer addresses or a node port,
//! with the endpoints kube-proxy would pick for it. A pure function of typed objects.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::controllers::endpointslice::desired::SERVICE_NAME_LABEL;

/// A transport protocol the proxy handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn parse(s: Option<&str>) -> Option<Proto> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Proto::Tcp),
            "UDP" => Some(Proto::Udp),
            "SCTP" => Some(Proto::Sctp),
            _ => None,
        }
    }

    /// nft's name.
    pub fn nft(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One endpoint of a service port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// On this node.
    pub local: bool,
}

/// One port of one Service, as the proxy serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// `namespace/name:port` (the port's name, or its number when unnamed), then protocol:
    /// stable across syncs, it names the port's chains.
    pub id: String,
    pub protocol: Proto,
    pub port: u16,
    pub cluster_ip: Option<Ipv4Addr>,
    /// spec.externalIPs and status.loadBalancer.ingress addresses.
    pub external_ips: Vec<Ipv4Addr>,
    pub node_port: Option<u16>,
    /// ClientIP affinity with this timeout, in seconds.
    pub affinity: Option<u32>,
    /// Endpoints for traffic to the cluster IP (internalTrafficPolicy applied).
    pub cluster_endpoints: Vec<Endpoint>,
    /// Endpoints for traffic to node ports, external and load-balancer addresses
    /// (externalTrafficPolicy applied).
    pub external_endpoints: Vec<Endpoint>,
    /// externalTrafficPolicy Local: the client's address is kept.
    pub external_local: bool,
}

impl ServicePort {
    pub fn has_external(&self) -> bool {
        self.node_port.is_some() || !self.external_ips.is_empty()
    }
}

fn ipv4(s: &str) -> Option<Ipv4Addr> {
    s.parse().ok()
}

/// The endpoints of one Service port from its slices, as kube-proxy categorises them: the
/// ready ones, or when none is ready the serving terminating ones (so that a rolling update
/// or a shutdown does not drop traffic); with `local_only` only those on `node`.
fn pick(all: &[(Endpoint, bool, bool, bool)], local_only: bool) -> Vec<Endpoint> {
    let candidates: Vec<&(Endpoint, bool, bool, bool)> = all.iter().filter(|e| !local_only || e.0.local).collect();
    let ready: Vec<Endpoint> = candidates.iter().filter(|e| e.1).map(|e| e.0.clone()).collect();
    let mut out =
        if ready.is_empty() { candidates.iter().filter(|e| e.2 && e.3).map(|e| e.0.clone()).collect() } else { ready };
    out.sort();
    out.dedup();
    out
}

/// Every service port to serve, by id.
pub fn build(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>], node: &str) -> BTreeMap<String, ServicePort> {
    // Slices by (namespace, service).
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        let Some(name) = s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
        if s.address_type != "IPv4" {
            continue;
        }
        by_service.entry((s.metadata.namespace.as_deref().unwrap_or(""), name.as_str())).or_default().push(s);
    }
    let mut out = BTreeMap::new();
    for svc in services {
        let Some(spec) = svc.spec.as_ref() else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let ns = svc.metadata.namespace.as_deref().unwrap_or("");
        let name = svc.metadata.name.as_deref().unwrap_or("");
        let cluster_ip = spec.cluster_ip.as_deref().and_then(ipv4);
        let mut external_ips: Vec<Ipv4Addr> = spec.external_ips.iter().flatten().filter_map(|s| ipv4(s)).collect();
        if spec.type_.as_deref() == Some("LoadBalancer") {
            let ingress = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
            external_ips.extend(ingress.into_iter().flatten().filter_map(|i| i.ip.as_deref().and_then(ipv4)));
        }
        external_ips.sort();
        external_ips.dedup();
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .map_or(10800, |t| t.clamp(1, 86400) as u32)
        });
        let internal_local = spec.internal_traffic_policy.as_deref() == Some("Local");
        let external_local = spec.external_traffic_policy.as_deref() == Some("Local");
        let slices = by_service.get(&(ns, name)).map(Vec::as_slice).unwrap_or(&[]);
        for sp in spec.ports.iter().flatten() {
            let Some(protocol) = Proto::parse(sp.protocol.as_deref()) else { continue };
            let Ok(port) = u16::try_from(sp.port) else { continue };
            let node_port = sp.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0);
            if cluster_ip.is_none() && external_ips.is_empty() && node_port.is_none() {
                continue;
            }
            let port_name = sp.name.clone().unwrap_or_default();
            // (endpoint, ready, serving, terminating)
            let mut eps: Vec<(Endpoint, bool, bool, bool)> = Vec::new();
            for slice in slices {
                let Some(slice_port) = slice.ports.iter().flatten().find(|p| {
                    p.name.as_deref().unwrap_or("") == port_name
                        && Proto::parse(p.protocol.as_deref()) == Some(protocol)
                }) else {
                    continue;
                };
                let Some(target) = slice_port.port.and_then(|p| u16::try_from(p).ok()) else { continue };
                for e in &slice.endpoints {
                    let Some(ip) = e.addresses.first().and_then(|a| ipv4(a)) else { continue };
                    let c = e.conditions.clone().unwrap_or_default();
                    // Unset conditions read as upstream reads them: ready and serving.
                    let ready = c.ready.unwrap_or(true);
                    let serving = c.serving.unwrap_or(ready);
                    let terminating = c.terminating.unwrap_or(false);
                    let local = e.node_name.as_deref() == Some(node);
                    eps.push((Endpoint { ip, port: target, local }, ready, serving, terminating));
                }
            }
            let label = if port_name.is_empty() { sp.port.to_string() } else { port_name.clone() };
            let id = format!("{ns}/{name}:{label}/{}", protocol.nft());
            out.insert(
                id.clone(),
                ServicePort {
                    id,
                    protocol,
                    port,
                    cluster_ip,
                    external_ips: external_ips.clone(),
                    node_port,
                    affinity,
                    cluster_endpoints: pick(&eps, internal_local),
                    external_endpoints: pick(&eps, external_local),
                    external_local,
                },
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(v: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn slice(v: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn ports_endpoints_and_policies() {
        let services = [svc(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.20", "externalIPs": ["192.0.2.9"],
                     "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"},
                               {"name": "dns", "port": 53, "protocol": "UDP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}
        }))];
        let slices = [slice(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.42.0.5"], "nodeName": "me", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.6"], "nodeName": "other", "conditions": {"ready": true}},
                {"addresses": ["10.42.0.7"], "nodeName": "me", "conditions": {"ready": false, "serving": true, "terminating": true}}
            ]
        }))];
        let m = build(&services, &slices, "me");
        assert_eq!(m.keys().collect::<Vec<_>>(), ["ns/web:dns/udp", "ns/web:http/tcp"]);
        let http = &m["ns/web:http/tcp"];
        assert_eq!(http.external_ips, ["192.0.2.1".parse::<Ipv4Addr>().unwrap(), "192.0.2.9".parse().unwrap()]);
        assert_eq!(http.node_port, Some(30080));
        assert_eq!(http.affinity, Some(10800));
        let ips = |v: &[Endpoint]| v.iter().map(|e| e.ip.to_string()).collect::<Vec<_>>();
        assert_eq!(ips(&http.cluster_endpoints), ["10.42.0.5", "10.42.0.6"]);
        assert_eq!(ips(&http.external_endpoints), ["10.42.0.5"], "Local: this node's only");
        assert_eq!(http.cluster_endpoints[0].port, 8080);
        assert!(m["ns/web:dns/udp"].cluster_endpoints.is_empty(), "no slice port for dns");
    }

    #[test]
    fn terminating_endpoints_serve_only_when_none_is_ready() {
        let e = |ip: &str| Endpoint { ip: ip.parse().unwrap(), port: 80, local: true };
        let all = vec![(e("10.0.0.1"), false, true, true), (e("10.0.0.2"), false, false, true)];
        assert_eq!(pick(&all, false), [e("10.0.0.1")]);
        let mut with_ready = all.clone();
        with_ready.push((e("10.0.0.3"), true, true, false));
        assert_eq!(pick(&with_ready, false), [e("10.0.0.3")]);
    }

    #[test]
    fn headless_and_external_name_services_are_not_proxied() {
        let services = [
            svc(
                serde_json::json!({"metadata": {"name": "h", "namespace": "ns"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
            ),
            svc(
                serde_json::json!({"metadata": {"name": "x", "namespace": "ns"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
            ),
        ];
        assert!(build(&services, &[], "me").is_empty());
    }
}
