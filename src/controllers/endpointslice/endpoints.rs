//! The Endpoints a Service's pods make (upstream's endpoints controller, `syncService` and
//! `RepackSubsets`): ready pods in `addresses`, the others in `notReadyAddresses` (all ready
//! when the Service publishes not-ready addresses, which also keeps terminating pods), one
//! subset per distinct port set, at most 1000 addresses with the over-capacity annotation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, Pod, Service};

use super::desired::{self, HEADLESS_LABEL};
use crate::controllers::podutil;

/// Upstream's cap on the addresses of one Endpoints object.
pub const MAX_CAPACITY: usize = 1000;
/// The annotation set when addresses were cut to [`MAX_CAPACITY`].
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";

type PortKey = (Option<String>, i32, Option<String>, Option<String>);

fn port_key(p: &EndpointPort) -> PortKey {
    (p.name.clone(), p.port, p.protocol.clone(), p.app_protocol.clone())
}

/// The subsets of the Service's Endpoints and whether they were cut to capacity.
pub fn subsets<'a>(svc: &Service, pods: impl IntoIterator<Item = &'a Pod>) -> (Vec<EndpointSubset>, bool) {
    let Some(sel) = desired::selector(svc) else { return (vec![], false) };
    let spec = svc.spec.clone().unwrap_or_default();
    let publish = spec.publish_not_ready_addresses.unwrap_or(false);
    let family = desired::address_type(svc);
    // (ip, ready) → address and its ports.
    let mut addrs: BTreeMap<(String, bool), (EndpointAddress, Vec<EndpointPort>)> = BTreeMap::new();
    for pod in pods {
        if pod.metadata.namespace != svc.metadata.namespace
            || !desired::selects(sel, pod)
            || !desired::counts(pod, publish)
        {
            continue;
        }
        let Some(ip) = desired::address(pod, &family) else { continue };
        let ports: Vec<EndpointPort> = match spec.ports.as_deref() {
            None | Some([]) if desired::is_headless(svc) => vec![],
            None | Some([]) => continue,
            Some(sps) => {
                let ports: Vec<EndpointPort> = sps
                    .iter()
                    .filter_map(|sp| {
                        Some(EndpointPort {
                            name: sp.name.clone(),
                            port: desired::find_port(pod, sp)?,
                            protocol: Some(sp.protocol.clone().unwrap_or_else(|| "TCP".into())),
                            app_protocol: sp.app_protocol.clone(),
                        })
                    })
                    .collect();
                if ports.is_empty() {
                    continue;
                }
                ports
            }
        };
        let ready = publish || podutil::is_ready(pod);
        let address = EndpointAddress {
            ip: ip.clone(),
            hostname: desired::hostname(svc, pod),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(desired::pod_ref(pod)),
        };
        let entry = addrs.entry((ip, ready)).or_insert_with(|| (address, vec![]));
        for p in ports {
            if !entry.1.iter().any(|q| port_key(q) == port_key(&p)) {
                entry.1.push(p);
            }
        }
    }
    // Capacity: ready addresses first.
    let total = addrs.len();
    let truncated = total > MAX_CAPACITY;
    let mut ordered: Vec<_> = addrs.into_iter().collect();
    ordered.sort_by_key(|((ip, ready), _)| (!*ready, ip.clone()));
    ordered.truncate(MAX_CAPACITY);

    // Repack: one subset per distinct port set.
    let mut groups: BTreeMap<Vec<PortKey>, EndpointSubset> = BTreeMap::new();
    for ((_, ready), (addr, mut ports)) in ordered {
        ports.sort_by_key(port_key);
        let key: Vec<PortKey> = ports.iter().map(port_key).collect();
        let subset = groups.entry(key).or_insert_with(|| EndpointSubset {
            addresses: None,
            not_ready_addresses: None,
            ports: (!ports.is_empty()).then(|| ports.clone()),
        });
        let list = if ready { &mut subset.addresses } else { &mut subset.not_ready_addresses };
        list.get_or_insert_with(Vec::new).push(addr);
    }
    let mut out: Vec<EndpointSubset> = groups.into_values().collect();
    for s in &mut out {
        for list in [&mut s.addresses, &mut s.not_ready_addresses].into_iter().flatten() {
            list.sort_by(|a, b| a.ip.cmp(&b.ip));
        }
    }
    (out, truncated)
}

/// The labels of the Service's Endpoints: the Service's, with the headless label exactly
/// when it has no cluster IP.
pub fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l = svc.metadata.labels.clone().unwrap_or_default();
    let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).unwrap_or("");
    if ip.is_empty() || ip == "None" {
        l.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        l.remove(HEADLESS_LABEL);
    }
    l
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    use super::super::desired::tests::{pod, port, svc};
    use super::*;

    #[test]
    fn ready_and_not_ready_addresses_repacked_by_port_set() {
        let s = svc(
            "web",
            &[("app", "web")],
            vec![port("http", 80, IntOrString::String("http".into())), port("admin", 81, IntOrString::Int(9000))],
        );
        let a = pod("a", "10.42.0.5", &[("app", "web")], true);
        let b = pod("b", "10.42.0.6", &[("app", "web")], false);
        let mut c = pod("c", "10.42.0.7", &[("app", "web")], true);
        c.spec.as_mut().unwrap().containers[0].ports = None; // no "http": only the admin port
        let (subs, cut) = subsets(&s, [&c, &b, &a]);
        assert!(!cut);
        assert_eq!(subs.len(), 2, "{subs:#?}");
        let both = subs.iter().find(|s| s.ports.as_ref().unwrap().len() == 2).unwrap();
        assert_eq!(both.addresses.as_ref().unwrap()[0].ip, "10.42.0.5");
        assert_eq!(both.not_ready_addresses.as_ref().unwrap()[0].ip, "10.42.0.6");
        let admin = subs.iter().find(|s| s.ports.as_ref().unwrap().len() == 1).unwrap();
        assert_eq!(admin.addresses.as_ref().unwrap()[0].ip, "10.42.0.7");
        assert_eq!(admin.ports.as_ref().unwrap()[0].port, 9000);
    }

    #[test]
    fn terminating_pods_only_when_publishing_not_ready() {
        let mut s = svc("web", &[("app", "web")], vec![port("http", 80, IntOrString::Int(80))]);
        let mut p = pod("a", "10.42.0.5", &[("app", "web")], true);
        p.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert!(subsets(&s, [&p]).0.is_empty());
        s.spec.as_mut().unwrap().publish_not_ready_addresses = Some(true);
        assert_eq!(subsets(&s, [&p]).0[0].addresses.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn headless_without_ports_lists_addresses() {
        let mut s = svc("db", &[("app", "db")], vec![]);
        s.spec.as_mut().unwrap().cluster_ip = Some("None".into());
        let p = pod("a", "10.42.0.5", &[("app", "db")], true);
        let (subs, _) = subsets(&s, [&p]);
        assert_eq!(subs.len(), 1);
        assert!(subs[0].ports.is_none());
        assert!(labels(&s).contains_key(HEADLESS_LABEL));
    }

    #[test]
    fn capped_at_a_thousand_ready_first() {
        let s = svc("web", &[("app", "web")], vec![port("http", 80, IntOrString::Int(80))]);
        let pods: Vec<_> = (0..1005)
            .map(|i| pod(&format!("p{i}"), &format!("10.42.{}.{}", i / 250, i % 250 + 2), &[("app", "web")], i != 3))
            .collect();
        let (subs, cut) = subsets(&s, &pods);
        assert!(cut);
        let n: usize = subs.iter().map(|s| s.addresses.as_ref().map_or(0, Vec::len)).sum();
        assert_eq!(n, 1000);
        assert!(subs[0].not_ready_addresses.is_none(), "the not-ready one was cut first");
    }
}
