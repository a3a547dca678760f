//! Cluster DNS, in process: what CoreDNS' `kubernetes` plugin serves in a k3s cluster,
//! on hickory-server, from the shared informers.
//!
//! - [`index`]: the records, a pure function of Services, EndpointSlices, Namespaces and the
//!   `kube-system/k3rs-dns-custom` ConfigMap, rebuilt when one of them changes;
//! - [`answer`]: the cluster zone's answers (NXDOMAIN vs NODATA, SOA, SRV, PTR, pods);
//! - [`upstream`]: the node's resolvers, forwarding and the answer cache;
//! - [`handler`]: the request handler tying them together, served by hickory-server over TCP
//!   and by threads of k3rs' own over UDP, one per core (each query answered where it was
//!   received);
//! - [`objects`]: the `kube-system/kube-dns` Service and its endpoints.
//!
//! The server listens on the node's pod-bridge gateway (UDP and TCP port 53); the
//! `kube-dns` Service's cluster IP (10.43.0.10) reaches it through the service proxy.

pub mod answer;
pub mod handler;
pub mod index;
pub mod objects;
pub mod upstream;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use hickory_server::server::Server;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::controllers::runtime::{Informer, Informers, Stop};

pub use handler::Handler;
pub use index::Index;
pub use upstream::{Forwarder, HickoryExchange};

/// The ConfigMap with custom hosts and stub domains.
pub const CUSTOM_CONFIGMAP: (&str, &str) = ("kube-system", "k3rs-dns-custom");
/// How long a TCP client may stay idle between queries.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(10);

/// The DNS server's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConfig {
    /// Where to listen, UDP and TCP on each (port 0: one ephemeral port shared by both).
    pub listen: Vec<SocketAddr>,
    /// The cluster domain (`cluster.local`).
    pub domain: String,
    /// The kube-dns Service's cluster IP (the `--cluster-dns` address).
    pub cluster_dns: IpAddr,
    /// The resolvers names outside the cluster go to.
    pub upstreams: Vec<SocketAddr>,
    /// Whether to create and refresh `kube-system/kube-dns` with endpoints on the first
    /// listen address.
    pub publish_service: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Listen { addr: SocketAddr, proto: &'static str, source: std::io::Error },
    #[error("cannot write the kube-dns objects: {0}")]
    Objects(#[from] kube::Error),
}

/// A running DNS server.
pub struct Started {
    /// The addresses bound (with the ephemeral ports filled in).
    pub addresses: Vec<SocketAddr>,
    /// Ends when the server has stopped.
    pub task: tokio::task::JoinHandle<()>,
}

/// Binds the sockets, publishes kube-dns, and serves until `stop`.
pub async fn start(
    client: kube::Client,
    informers: &Informers,
    config: DnsConfig,
    stop: Stop,
) -> Result<Started, DnsError> {
    let mut sockets = Vec::new();
    for addr in &config.listen {
        sockets.push(bind(*addr).await?);
    }
    let addresses: Vec<SocketAddr> = sockets
        .iter()
        .map(|(u, _)| u.local_addr())
        .collect::<Result<_, _>>()
        .map_err(|source| DnsError::Listen { addr: config.listen[0], proto: "udp", source })?;
    if config.publish_service {
        if let Some(addr) = addresses.first() {
            objects::ensure(&client, config.cluster_dns, *addr).await?;
        }
    }

    let sources = Sources {
        namespaces: informers.get::<Namespace>(),
        services: informers.get::<Service>(),
        slices: informers.get::<EndpointSlice>(),
        custom: informers.get_filtered::<ConfigMap>(
            "k3rs-dns-custom",
            watcher::Config::default().fields(&format!("metadata.name={}", CUSTOM_CONFIGMAP.1)),
        ),
    };
    let (tx, rx) = watch::channel(Arc::new(Index::empty(&config.domain, config.cluster_dns)));
    let maintain = tokio::spawn(maintain(sources, config.domain.clone(), config.cluster_dns, tx));

    let forwarder = Arc::new(Forwarder::new(Box::new(HickoryExchange::default()), upstream::CACHE_CAPACITY));
    let handler = Arc::new(Handler::new(rx, forwarder, config.upstreams.clone()));
    // UDP on threads of k3rs' own (handler::serve_udp), TCP through hickory's server.
    let mut server = Server::new(handler::Shared(handler.clone()));
    let mut udp_loops = Vec::new();
    for (udp, tcp) in sockets {
        let stop = stop.clone();
        udp_loops.push(tokio::spawn(handler::serve_udp(udp, handler.clone(), async move { stop.wait().await })));
        server.register_listener(tcp, TCP_TIMEOUT, 64);
    }
    tracing::info!(addresses = ?addresses, domain = %config.domain, upstreams = ?config.upstreams, "cluster DNS is serving");
    let task = tokio::spawn(async move {
        stop.wait().await;
        maintain.abort();
        for l in udp_loops {
            let _ = l.await;
        }
        if let Err(e) = server.shutdown_gracefully().await {
            tracing::debug!(error = %e, "DNS server stopped with an error");
        }
    });
    Ok(Started { addresses, task })
}

/// A UDP socket and a TCP listener on one address (one ephemeral port for both when the
/// port is 0).
async fn bind(addr: SocketAddr) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener), DnsError> {
    let mut attempt = 0;
    loop {
        let udp = tokio::net::UdpSocket::bind(addr).await.map_err(|source| DnsError::Listen {
            addr,
            proto: "udp",
            source,
        })?;
        let port = udp.local_addr().map_err(|source| DnsError::Listen { addr, proto: "udp", source })?.port();
        match tokio::net::TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // The ephemeral UDP port may be taken for TCP: try another.
            Err(_) if addr.port() == 0 && attempt < 10 => attempt += 1,
            Err(source) => return Err(DnsError::Listen { addr, proto: "tcp", source }),
        }
    }
}

struct Sources {
    namespaces: Informer<Namespace>,
    services: Informer<Service>,
    slices: Informer<EndpointSlice>,
    custom: Informer<ConfigMap>,
}

/// Keeps the index current: rebuilt from the stores once they are filled, and again after
/// each burst of changes (notices that arrived meanwhile are taken in the same rebuild).
async fn maintain(s: Sources, domain: String, dns_ip: IpAddr, tx: watch::Sender<Arc<Index>>) {
    let changes = futures::stream::select_all([
        s.namespaces.subscribe().map(|_| ()).boxed(),
        s.services.subscribe().map(|_| ()).boxed(),
        s.slices.subscribe().map(|_| ()).boxed(),
        s.custom.subscribe().map(|_| ()).boxed(),
    ]);
    let mut changes = std::pin::pin!(changes.ready_chunks(4096));
    for ready in [
        s.namespaces.store().wait_until_ready().await.is_ok(),
        s.services.store().wait_until_ready().await.is_ok(),
        s.slices.store().wait_until_ready().await.is_ok(),
        s.custom.store().wait_until_ready().await.is_ok(),
    ] {
        if !ready {
            tracing::warn!("a DNS informer stopped before it was filled");
            return;
        }
    }
    let mut serial: u32 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let mut last_problems = Vec::new();
    loop {
        let cm = s.custom.get(Some(CUSTOM_CONFIGMAP.0), CUSTOM_CONFIGMAP.1);
        let custom = index::parse_custom(cm.as_deref());
        if custom.problems != last_problems {
            for p in &custom.problems {
                tracing::warn!(configmap = "kube-system/k3rs-dns-custom", problem = %p, "ignored a custom DNS entry");
            }
            last_problems = custom.problems.clone();
        }
        let (ns, svcs, slices) = (s.namespaces.store().state(), s.services.store().state(), s.slices.store().state());
        let idx = Index::build(
            &domain,
            dns_ip,
            ns.iter().map(|a| a.as_ref()),
            svcs.iter().map(|a| a.as_ref()),
            slices.iter().map(|a| a.as_ref()),
            custom,
            serial,
        );
        if tx.send(Arc::new(idx)).is_err() {
            return;
        }
        if changes.next().await.is_none() {
            return;
        }
        serial = serial.wrapping_add(1);
    }
}
