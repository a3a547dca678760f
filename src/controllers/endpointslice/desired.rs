//! What a Service's endpoints should be, from its pods: upstream's pod-to-endpoint rules,
//! shared by the Endpoints and EndpointSlice controllers (which pods count, their ports by
//! number or by name, their conditions and hostnames). Pure functions of typed objects.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service, ServicePort};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointHints, EndpointPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::controllers::podutil;

/// The label naming the Service a slice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The label set on a headless Service's Endpoints and slices.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// The annotation with the time of the newest pod change a write reflects.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

/// The Service's pod selector when it has one the controllers act on: a Service without a
/// selector (or with an empty one, which the API drops) and an ExternalName Service get no
/// endpoints from them.
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether `pod`'s labels carry every pair of `selector`.
pub fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.metadata.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Headless: `clusterIP: None`.
pub fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Whether the pod belongs in the endpoints at all (upstream's `ShouldPodBeInEndpoints`): it
/// has an address and is not finished; a terminating pod only if `include_terminating`.
pub fn counts(pod: &Pod, include_terminating: bool) -> bool {
    let has_ip = pod.status.as_ref().is_some_and(|s| {
        s.pod_ip.as_deref().is_some_and(|ip| !ip.is_empty()) || s.pod_ips.as_ref().is_some_and(|ips| !ips.is_empty())
    });
    has_ip && !podutil::is_terminal(pod) && (include_terminating || pod.metadata.deletion_timestamp.is_none())
}

/// The pod's address of `family` ("IPv4" or "IPv6").
pub fn address(pod: &Pod, family: &str) -> Option<String> {
    let status = pod.status.as_ref()?;
    let all = status.pod_ips.iter().flatten().map(|p| p.ip.as_str()).chain(status.pod_ip.as_deref());
    let want_v6 = family == "IPv6";
    all.filter(|ip| !ip.is_empty()).find(|ip| ip.contains(':') == want_v6).map(str::to_string)
}

/// The pod's port for `sp` (upstream's `FindPort`): a number as it is, a name looked up among
/// the containers' (and restartable init containers') ports of the same protocol.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    let protocol = sp.protocol.as_deref().unwrap_or("TCP");
    match sp.target_port.as_ref() {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            // A numeric string is a number (intstr from YAML such as "8080").
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            let sidecars =
                spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers.iter().chain(sidecars).flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
                (p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                    .then_some(p.container_port)
            })
        }
    }
}

/// The slice ports of `pod` for the Service: one per Service port the pod has (a named port
/// it lacks is left out, as upstream does).
pub fn endpoint_ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref());
    let mut out: Vec<EndpointPort> = ports
        .into_iter()
        .flatten()
        .filter_map(|sp| {
            Some(EndpointPort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(find_port(pod, sp)?),
                protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect();
    sort_ports(&mut out);
    out
}

/// Ports in a canonical order, so that equal sets compare equal.
pub fn sort_ports(ports: &mut [EndpointPort]) {
    ports.sort_by(|a, b| (&a.name, &a.protocol, a.port).cmp(&(&b.name, &b.protocol, b.port)));
}

/// The hostname a pod publishes under the Service: its `spec.hostname` when its
/// `spec.subdomain` names the Service (StatefulSet pods, `hostname.subdomain`).
pub fn hostname(svc: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same_ns = svc.metadata.namespace == pod.metadata.namespace;
    (same_ns && spec.subdomain.as_deref() == svc.metadata.name.as_deref()).then(|| hostname.to_string())
}

/// The reference from an endpoint to its pod.
pub fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The pod as a slice endpoint of the Service (upstream's `podToEndpoint`): serving when
/// Ready (or when the Service publishes not-ready addresses), ready when serving and not
/// terminating (or when publishing not-ready addresses).
pub fn endpoint(svc: &Service, pod: &Pod, address: String, zone: Option<String>) -> Endpoint {
    let publish = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let serving = publish || podutil::is_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish || (serving && !terminating);
    Endpoint {
        addresses: vec![address],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        hostname: hostname(svc, pod),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
        target_ref: Some(pod_ref(pod)),
        zone,
        hints: None::<EndpointHints>,
        deprecated_topology: None,
    }
}

/// The Service's address family for slices: its first `ipFamilies` entry, IPv4 by default.
pub fn address_type(svc: &Service) -> String {
    svc.spec
        .as_ref()
        .and_then(|s| s.ip_families.as_ref())
        .and_then(|f| f.first().cloned())
        .unwrap_or_else(|| "IPv4".into())
}

/// The endpoints the Service should have, grouped by their port sets (pods whose named ports
/// resolve differently land in different slices), each group sorted by address.
pub fn desired<'a>(
    svc: &Service,
    pods: impl IntoIterator<Item = &'a Pod>,
    zone_of: impl Fn(&str) -> Option<String>,
) -> BTreeMap<PortsKey, Vec<Endpoint>> {
    let family = address_type(svc);
    let mut out: BTreeMap<PortsKey, Vec<Endpoint>> = BTreeMap::new();
    let Some(sel) = selector(svc) else { return out };
    for pod in pods {
        if pod.metadata.namespace != svc.metadata.namespace || !selects(sel, pod) || !counts(pod, true) {
            continue;
        }
        let Some(ip) = address(pod, &family) else { continue };
        let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("");
        let zone = if node.is_empty() { None } else { zone_of(node) };
        let ports = endpoint_ports(svc, pod);
        out.entry(PortsKey(ports)).or_default().push(endpoint(svc, pod, ip, zone));
    }
    for eps in out.values_mut() {
        eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        eps.dedup_by(|a, b| a.addresses == b.addresses);
    }
    out
}

/// A set of slice ports in canonical order: slices are grouped by it.
#[derive(Clone, Debug)]
pub struct PortsKey(pub Vec<EndpointPort>);

impl PartialEq for PortsKey {
    fn eq(&self, other: &Self) -> bool {
        self.tuple() == other.tuple()
    }
}

impl Eq for PortsKey {}

/// A slice port's name, protocol, number and app protocol, in the order they sort by.
type PortTuple<'a> = (&'a Option<String>, &'a Option<String>, Option<i32>, &'a Option<String>);

impl PortsKey {
    /// The key of ports as a slice holds them.
    pub fn of(ports: Option<&Vec<EndpointPort>>) -> PortsKey {
        let mut p = ports.cloned().unwrap_or_default();
        sort_ports(&mut p);
        PortsKey(p)
    }

    fn tuple(&self) -> Vec<PortTuple<'_>> {
        self.0.iter().map(|p| (&p.name, &p.protocol, p.port, &p.app_protocol)).collect()
    }
}

impl PartialOrd for PortsKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PortsKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.tuple().cmp(&other.tuple())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodIP, PodSpec, PodStatus, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;
    use crate::controllers::podutil::testing::make_ready;

    pub fn svc(name: &str, selector: &[(&str, &str)], ports: Vec<ServicePort>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(selector.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ports: Some(ports),
                cluster_ip: Some("10.43.0.20".into()),
                ..Default::default()
            }),
            status: None,
        }
    }

    pub fn port(name: &str, port: i32, target: IntOrString) -> ServicePort {
        ServicePort {
            name: Some(name.into()),
            port,
            target_port: Some(target),
            protocol: Some("TCP".into()),
            ..Default::default()
        }
    }

    pub fn pod(name: &str, ip: &str, labels: &[(&str, &str)], ready: bool) -> Pod {
        let mut p = Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node1".into()),
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                ..Default::default()
            }),
        };
        if ready {
            make_ready(&mut p, k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        }
        p
    }

    #[test]
    fn ports_by_number_and_by_name() {
        let s = svc("web", &[("app", "web")], vec![]);
        let p = pod("a", "10.42.0.5", &[("app", "web")], true);
        assert_eq!(find_port(&p, &port("x", 80, IntOrString::Int(9000))), Some(9000));
        assert_eq!(find_port(&p, &port("x", 80, IntOrString::String("http".into()))), Some(8080));
        assert_eq!(find_port(&p, &port("x", 80, IntOrString::String("nope".into()))), None);
        let mut udp = port("x", 80, IntOrString::String("http".into()));
        udp.protocol = Some("UDP".into());
        assert_eq!(find_port(&p, &udp), None, "a named port must match the protocol too");
        let mut no_target = port("x", 80, IntOrString::Int(0));
        no_target.target_port = None;
        assert_eq!(find_port(&p, &no_target), Some(80));
        let _ = s;
    }

    #[test]
    fn conditions_as_upstream() {
        let mut s = svc("web", &[("app", "web")], vec![port("http", 80, IntOrString::String("http".into()))]);
        let ready = pod("a", "10.42.0.5", &[("app", "web")], true);
        let unready = pod("b", "10.42.0.6", &[("app", "web")], false);
        let mut terminating = pod("c", "10.42.0.7", &[("app", "web")], true);
        terminating.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let c = |s: &Service, p: &Pod| {
            let c = endpoint(s, p, "x".into(), None).conditions.unwrap();
            (c.ready.unwrap(), c.serving.unwrap(), c.terminating.unwrap())
        };
        assert_eq!(c(&s, &ready), (true, true, false));
        assert_eq!(c(&s, &unready), (false, false, false));
        assert_eq!(c(&s, &terminating), (false, true, true));
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        assert_eq!(c(&s, &unready), (true, true, false));
        assert_eq!(c(&s, &terminating), (true, true, true));
    }

    #[test]
    fn desired_groups_by_resolved_ports_and_skips_what_does_not_count() {
        let s = svc("web", &[("app", "web")], vec![port("http", 80, IntOrString::String("http".into()))]);
        let a = pod("a", "10.42.0.5", &[("app", "web")], true);
        let mut b = pod("b", "10.42.0.6", &[("app", "web")], true);
        b.spec.as_mut().unwrap().containers[0].ports.as_mut().unwrap()[0].container_port = 9090;
        let other = pod("c", "10.42.0.7", &[("app", "db")], true);
        let mut done = pod("d", "10.42.0.8", &[("app", "web")], true);
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut no_ip = pod("e", "", &[("app", "web")], true);
        no_ip.status.as_mut().unwrap().pod_ips = None;
        let d = desired(&s, [&a, &b, &other, &done, &no_ip], |_| Some("z1".into()));
        assert_eq!(d.len(), 2);
        let ports: Vec<i32> = d.keys().map(|k| k.0[0].port.unwrap()).collect();
        assert_eq!(ports, [8080, 9090]);
        let all: Vec<&str> = d.values().flatten().map(|e| e.addresses[0].as_str()).collect();
        assert_eq!(all, ["10.42.0.5", "10.42.0.6"]);
        let e = &d.values().next().unwrap()[0];
        assert_eq!(e.zone.as_deref(), Some("z1"));
        assert_eq!(e.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
        assert_eq!(e.node_name.as_deref(), Some("node1"));
    }

    #[test]
    fn hostnames_only_under_the_subdomain_service() {
        let s = svc("db", &[("app", "db")], vec![]);
        let mut p = pod("db-0", "10.42.0.5", &[("app", "db")], true);
        p.spec.as_mut().unwrap().hostname = Some("db-0".into());
        assert_eq!(hostname(&s, &p), None);
        p.spec.as_mut().unwrap().subdomain = Some("db".into());
        assert_eq!(hostname(&s, &p).as_deref(), Some("db-0"));
    }

    #[test]
    fn no_selector_or_external_name_selects_nothing() {
        let mut s = svc("web", &[], vec![]);
        assert!(selector(&s).is_none());
        s.spec.as_mut().unwrap().selector = None;
        assert!(selector(&s).is_none());
        let mut e = svc("web", &[("a", "b")], vec![]);
        e.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        assert!(selector(&e).is_none());
    }
}
