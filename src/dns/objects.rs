//! The `kube-system/kube-dns` Service, as k3s' CoreDNS manifest names it (so that tools
//! looking for the cluster DNS find it), with no selector, and its Endpoints and
//! EndpointSlice naming the address this process listens on; refreshed at every start, the
//! way the API server keeps the `kubernetes` Service's.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, PostParams};
use kube::Resource;

pub const NAMESPACE: &str = "kube-system";
pub const NAME: &str = "kube-dns";

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn meta(l: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta { name: Some(NAME.into()), namespace: Some(NAMESPACE.into()), labels: labels(l), ..Default::default() }
}

/// The Service: k3s' CoreDNS labels, `dns` 53/UDP and `dns-tcp` 53/TCP, the cluster DNS IP.
pub fn service(cluster_dns: IpAddr, target_port: u16) -> Service {
    let port = |name: &str, protocol: &str| ServicePort {
        name: Some(name.into()),
        port: 53,
        protocol: Some(protocol.into()),
        target_port: Some(IntOrString::Int(i32::from(target_port))),
        ..Default::default()
    };
    Service {
        metadata: meta(&[
            ("k8s-app", "kube-dns"),
            ("kubernetes.io/cluster-service", "true"),
            ("kubernetes.io/name", "CoreDNS"),
        ]),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(cluster_dns.to_string()),
            cluster_ips: Some(vec![cluster_dns.to_string()]),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Endpoints: `addr`, with the mirroring controller told to leave them alone.
pub fn endpoints(addr: SocketAddr) -> Endpoints {
    let port = |name: &str, protocol: &str| EndpointPort {
        name: Some(name.into()),
        port: i32::from(addr.port()),
        protocol: Some(protocol.into()),
        ..Default::default()
    };
    Endpoints {
        metadata: meta(&[("endpointslice.kubernetes.io/skip-mirror", "true"), ("k8s-app", "kube-dns")]),
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress { ip: addr.ip().to_string(), ..Default::default() }]),
            ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
            ..Default::default()
        }]),
    }
}

/// The EndpointSlice: `addr`, ready.
pub fn endpoint_slice(addr: SocketAddr) -> EndpointSlice {
    let port = |name: &str, protocol: &str| k8s_openapi::api::discovery::v1::EndpointPort {
        name: Some(name.into()),
        port: Some(i32::from(addr.port())),
        protocol: Some(protocol.into()),
        ..Default::default()
    };
    EndpointSlice {
        metadata: meta(&[
            ("kubernetes.io/service-name", NAME),
            ("endpointslice.kubernetes.io/managed-by", "k3rs-dns"),
            ("k8s-app", "kube-dns"),
        ]),
        address_type: if addr.is_ipv4() { "IPv4".into() } else { "IPv6".into() },
        endpoints: vec![Endpoint {
            addresses: vec![addr.ip().to_string()],
            conditions: Some(EndpointConditions { ready: Some(true), serving: Some(true), terminating: Some(false) }),
            ..Default::default()
        }],
        ports: Some(vec![port("dns", "UDP"), port("dns-tcp", "TCP")]),
    }
}

/// Creates the three objects, or brings existing ones up to date (the Service's user
/// changes are kept: only a missing one is created).
pub async fn ensure(client: &kube::Client, cluster_dns: IpAddr, addr: SocketAddr) -> Result<(), kube::Error> {
    let services: Api<Service> = Api::namespaced(client.clone(), NAMESPACE);
    create_or_keep(&services, service(cluster_dns, addr.port())).await?;
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), NAMESPACE);
    create_or_replace(&eps, endpoints(addr)).await?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), NAMESPACE);
    create_or_replace(&slices, endpoint_slice(addr)).await?;
    Ok(())
}

async fn create_or_keep<K>(api: &Api<K>, obj: K) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(e) if crate::controllers::runtime::is_conflict(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn create_or_replace<K>(api: &Api<K>, mut obj: K) -> Result<(), kube::Error>
where
    K: Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(e) if crate::controllers::runtime::is_conflict(&e) => {
            let current = api.get(NAME).await?;
            obj.meta_mut().resource_version = current.meta().resource_version.clone();
            api.replace(NAME, &PostParams::default(), &obj).await.map(|_| ())
        }
        Err(e) => Err(e),
    }
}
