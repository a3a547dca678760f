//! LoadBalancer Services on one node, as k3s' ServiceLB serves them: the Service's
//! `status.loadBalancer.ingress` is the node's address, and the proxy answers its ports there.
//! Two LoadBalancer Services cannot both take one port and protocol on the node: the one
//! that came later gets no address and a Warning Event saying which Service holds the port,
//! until that one goes. Services with a `loadBalancerClass` belong to another implementation.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{LoadBalancerIngress, LoadBalancerStatus, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::Resource;

use crate::controllers::runtime::{self, Context, Notice, ReconcileError};

/// Whether ServiceLB serves the Service.
pub fn served(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_ref()).is_none()
}

/// Which served Service holds each (protocol, port): the oldest (then by namespace/name).
pub fn owners(services: &[Arc<Service>]) -> BTreeMap<(String, i32), (String, String)> {
    let mut lbs: Vec<&Arc<Service>> =
        services.iter().filter(|s| served(s) && s.metadata.deletion_timestamp.is_none()).collect();
    lbs.sort_by_key(|s| {
        (
            s.metadata.creation_timestamp.as_ref().map(|t| t.0),
            s.metadata.namespace.clone().unwrap_or_default(),
            s.metadata.name.clone().unwrap_or_default(),
        )
    });
    let mut out = BTreeMap::new();
    for s in lbs {
        let key = (s.metadata.namespace.clone().unwrap_or_default(), s.metadata.name.clone().unwrap_or_default());
        let ports: Vec<(String, i32)> = s
            .spec
            .iter()
            .flat_map(|sp| sp.ports.iter().flatten())
            .map(|p| (p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.port))
            .collect();
        // A Service gets its ports all or none.
        if ports.iter().any(|p| out.get(p).is_some_and(|o| o != &key)) {
            continue;
        }
        for p in ports {
            out.insert(p, key.clone());
        }
    }
    out
}

/// The status the Service should have, and the conflicting holder when it gets none.
pub fn desired(
    svc: &Service,
    owners: &BTreeMap<(String, i32), (String, String)>,
    node_ip: IpAddr,
) -> (Option<LoadBalancerStatus>, Option<String>) {
    if !served(svc) {
        return (None, None);
    }
    let key = (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
    for p in svc.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
        let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        if let Some(holder) = owners.get(&(proto.clone(), p.port)).filter(|h| **h != key) {
            return (
                None,
                Some(format!(
                    "port {}/{proto} is already used on the node by Service {}/{}",
                    p.port, holder.0, holder.1
                )),
            );
        }
    }
    let status = LoadBalancerStatus {
        ingress: Some(vec![LoadBalancerIngress {
            ip: Some(node_ip.to_string()),
            ip_mode: Some("VIP".into()),
            ..Default::default()
        }]),
    };
    (Some(status), None)
}

/// Keeps the load-balancer status of the Services.
pub async fn run(ctx: Context, node_ip: IpAddr) {
    let services = ctx.informers.get::<Service>();
    let store = services.store().clone();
    // A Service's port freed or taken decides others': every change triggers every
    // LoadBalancer Service (there are few).
    let all_store = store.clone();
    let triggers = futures::stream::select(
        runtime::own_triggers(&services),
        services.subscribe().flat_map(move |n| {
            let refs: Vec<ObjectRef<Service>> = match n {
                Notice::Changed(_) | Notice::Deleted(_) | Notice::Resynced => {
                    all_store.state().iter().filter(|s| served(s)).map(|s| ObjectRef::from_obj(&**s)).collect()
                }
            };
            futures::stream::iter(refs)
        }),
    );
    let recorder = Arc::new(ctx.recorder("service-lb-controller"));
    let client = ctx.client.clone();
    runtime::run("servicelb", store.clone(), triggers, ctx.stop.clone(), move |svc: Arc<Service>| {
        let (client, store, recorder) = (client.clone(), store.clone(), recorder.clone());
        async move {
            let owners = owners(&store.state());
            let (want, conflict) = desired(&svc, &owners, node_ip);
            let has = svc
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.clone())
                .filter(|l| l.ingress.as_ref().is_some_and(|i| !i.is_empty()));
            if let Some(why) = &conflict {
                runtime::publish(
                    &recorder,
                    &svc.object_ref(&()),
                    EventType::Warning,
                    "PortConflict",
                    "Allocate",
                    why.clone(),
                )
                .await;
            }
            // Only what ServiceLB set is taken back (another implementation's status stays).
            let ours = |l: &LoadBalancerStatus| {
                l.ingress.iter().flatten().all(|i| i.ip.as_deref() == Some(&node_ip.to_string()))
            };
            let patch = match (&want, &has) {
                (Some(w), h) if h.as_ref() != Some(w) => serde_json::json!({"status": {"loadBalancer": w}}),
                (None, Some(h))
                    if ours(h)
                        && (conflict.is_some()
                            || svc.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer")) =>
                {
                    serde_json::json!({"status": {"loadBalancer": {"ingress": null}}})
                }
                _ => return Ok(Action::await_change()),
            };
            let ns = svc.metadata.namespace.as_deref().unwrap_or("");
            let api: Api<Service> = Api::namespaced(client, ns);
            match api
                .patch_status(svc.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(patch))
                .await
            {
                Ok(_) => Ok(Action::await_change()),
                Err(e) if runtime::is_not_found(&e) => Ok(Action::await_change()),
                Err(e) => Err(ReconcileError::from(e)),
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lb(name: &str, port: i32, created: i64) -> Arc<Service> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "ns", "creationTimestamp": format!("2026-01-01T00:00:{created:02}Z")},
                "spec": {"type": "LoadBalancer", "ports": [{"port": port}]}
            }))
            .unwrap(),
        )
    }

    #[test]
    fn the_first_service_on_a_port_gets_the_node_address_the_second_an_event() {
        let ip: IpAddr = "192.168.1.2".parse().unwrap();
        let all = [lb("b", 80, 5), lb("a", 80, 9), lb("c", 81, 1)];
        let o = owners(&all);
        let (s, c) = desired(&all[0], &o, ip);
        assert_eq!(s.unwrap().ingress.unwrap()[0].ip.as_deref(), Some("192.168.1.2"));
        assert!(c.is_none());
        let (s, c) = desired(&all[1], &o, ip);
        assert!(s.is_none());
        assert_eq!(c.unwrap(), "port 80/TCP is already used on the node by Service ns/b");
        assert!(desired(&all[2], &o, ip).0.is_some());
        // b gone: a gets the port.
        let o = owners(&all[1..]);
        assert!(desired(&all[1], &o, ip).0.is_some());
    }
}
