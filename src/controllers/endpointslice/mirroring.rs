//! EndpointSlice mirroring (upstream's `endpointslicemirroring-controller`): the Endpoints
//! of a Service without a selector, written by hand or by another controller, mirrored into
//! EndpointSlices so that slice readers (the proxy, DNS, the ingress) see them too. Ready
//! addresses become ready endpoints, not-ready ones not ready; at most 1000 addresses of
//! each subset are mirrored; an Endpoints labelled `endpointslice.kubernetes.io/skip-mirror:
//! "true"` is not mirrored.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};

use super::desired::{sort_ports, PortsKey, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use super::slices::{prefix, Template};
use crate::controllers::runtime::owner;

/// Who manages mirrored slices.
pub const MANAGED_BY: &str = "endpointslicemirroring-controller.k8s.io";
/// The label that keeps an Endpoints from being mirrored.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Upstream's cap on mirrored addresses per subset.
pub const MAX_PER_SUBSET: usize = 1000;

/// Whether the Endpoints asks not to be mirrored.
pub fn skips(ep: &Endpoints) -> bool {
    ep.metadata.labels.as_ref().and_then(|l| l.get(SKIP_MIRROR_LABEL)).is_some_and(|v| v == "true")
}

/// The slices' template: the Endpoints' labels and annotations (but for the reserved and
/// the last-applied ones), owned by the Endpoints.
pub fn template(ep: &Endpoints) -> Template {
    let name = ep.metadata.name.clone().unwrap_or_default();
    let mut labels: BTreeMap<String, String> = ep
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| ![SERVICE_NAME_LABEL, MANAGED_BY_LABEL].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let annotations: BTreeMap<String, String> = ep
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "endpoints.kubernetes.io/last-change-trigger-time" | "kubectl.kubernetes.io/last-applied-configuration"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Template {
        namespace: ep.metadata.namespace.clone(),
        generate_name: prefix(&name),
        labels,
        annotations: Some(annotations),
        owner: owner::controller_ref(ep),
        placeholder: false,
    }
}

/// The mirrored endpoints by address type ("IPv4"/"IPv6") and port set.
pub fn desired(ep: &Endpoints) -> BTreeMap<String, BTreeMap<PortsKey, Vec<Endpoint>>> {
    let mut out: BTreeMap<String, BTreeMap<PortsKey, Vec<Endpoint>>> = BTreeMap::new();
    for subset in ep.subsets.iter().flatten() {
        let mut ports: Vec<EndpointPort> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| EndpointPort {
                name: Some(p.name.clone().unwrap_or_default()),
                port: Some(p.port),
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
            .collect();
        sort_ports(&mut ports);
        let key = PortsKey(ports);
        let ready = subset.addresses.iter().flatten().map(|a| (a, true));
        let not_ready = subset.not_ready_addresses.iter().flatten().map(|a| (a, false));
        for (a, ready) in ready.chain(not_ready).take(MAX_PER_SUBSET) {
            let Ok(ip) = a.ip.parse::<std::net::IpAddr>() else { continue };
            let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            let e = Endpoint {
                addresses: vec![a.ip.clone()],
                conditions: Some(EndpointConditions { ready: Some(ready), serving: None, terminating: None }),
                hostname: a.hostname.clone(),
                node_name: a.node_name.clone(),
                target_ref: a.target_ref.clone(),
                ..Default::default()
            };
            out.entry(family.into()).or_default().entry(key.clone()).or_default().push(e);
        }
    }
    for groups in out.values_mut() {
        for eps in groups.values_mut() {
            eps.sort_by(|a, b| a.addresses.cmp(&b.addresses));
            eps.dedup_by(|a, b| a.addresses == b.addresses);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort as CorePort, EndpointSubset};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::super::slices::plan;
    use super::*;

    fn eps(labels: &[(&str, &str)]) -> Endpoints {
        Endpoints {
            metadata: ObjectMeta {
                name: Some("ext".into()),
                namespace: Some("ns".into()),
                uid: Some("ep-uid".into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                annotations: Some(
                    [
                        ("kubectl.kubernetes.io/last-applied-configuration".to_string(), "{}".to_string()),
                        ("a".to_string(), "b".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            subsets: Some(vec![EndpointSubset {
                addresses: Some(vec![
                    EndpointAddress { ip: "192.168.1.10".into(), ..Default::default() },
                    EndpointAddress { ip: "fd00::1".into(), ..Default::default() },
                ]),
                not_ready_addresses: Some(vec![EndpointAddress { ip: "192.168.1.11".into(), ..Default::default() }]),
                ports: Some(vec![CorePort { name: Some("http".into()), port: 80, ..Default::default() }]),
            }]),
        }
    }

    #[test]
    fn mirrors_by_family_with_ready_conditions_labels_and_annotations() {
        let e = eps(&[("team", "x")]);
        assert!(!skips(&e));
        assert!(skips(&eps(&[(SKIP_MIRROR_LABEL, "true")])));
        let d = desired(&e);
        assert_eq!(d.keys().collect::<Vec<_>>(), ["IPv4", "IPv6"]);
        let v4: Vec<_> = d["IPv4"]
            .values()
            .flatten()
            .map(|e| (e.addresses[0].as_str(), e.conditions.as_ref().unwrap().ready))
            .collect();
        assert_eq!(v4, [("192.168.1.10", Some(true)), ("192.168.1.11", Some(false))]);
        let t = template(&e);
        assert_eq!(t.labels[SERVICE_NAME_LABEL], "ext");
        assert_eq!(t.labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert_eq!(t.labels["team"], "x");
        assert_eq!(t.annotations.as_ref().unwrap().len(), 1);
        assert_eq!((t.owner.kind.as_str(), t.owner.uid.as_str()), ("Endpoints", "ep-uid"));
        let p = plan(&t, "IPv4", &d["IPv4"], &[], 100);
        assert_eq!(p.create.len(), 1);
        assert_eq!(p.create[0].ports.as_ref().unwrap()[0].port, Some(80));
        // Nothing to mirror: no placeholder, existing slices go.
        let mut created = p.create[0].clone();
        created.metadata.name = Some("ext-abc".into());
        let p = plan(&t, "IPv4", &BTreeMap::new(), &[created], 100);
        assert_eq!((p.create.len(), p.delete.len()), (0, 1));
    }
}
