//! Starting the API server inside `k3rs server`: PKI, the admin kubeconfig, boot-time
//! objects, the HTTPS listener, the controllers and the scheduler.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use nix::ifaddrs::InterfaceAddress;
use nix::net::if_::InterfaceFlags;

use super::config::ServerConfig;
use crate::apiserver::listener::{self, CertIdentity};
use crate::apiserver::{ApiOptions, ApiServer, Identity};
use crate::controllers::runtime::{Context, Stop};
use crate::pki::{self, PkiConfig};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum ApiStartError {
    #[error("cannot set up the PKI in {dir}: {reason}")]
    Pki { dir: String, reason: String },
    #[error("cannot write the kubeconfig {path}: {reason}")]
    Kubeconfig { path: String, reason: String },
    #[error("cannot create the boot-time objects: {0}")]
    Bootstrap(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The running API server's parts the rest of the server needs.
pub struct Started {
    pub api: Arc<ApiServer>,
    pub url: String,
    /// Its long-running tasks, by name: none may end before shutdown.
    pub tasks: Vec<super::Task>,
    /// The controllers' context, whose shared informers the node's in-process components
    /// (the ingress) read too.
    pub ctx: Context,
}

/// The node's address: the configured one, else the first address of an interface that is
/// up and not loopback, else loopback.
pub fn node_ip(config: &ServerConfig) -> IpAddr {
    if let Some(ip) = config.node.ip {
        return ip;
    }
    interface_ipv4().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn interface_ipv4() -> Option<IpAddr> {
    first_up_ipv4(nix::ifaddrs::getifaddrs().ok()?)
}

/// The first IPv4 address of an interface that is up and not loopback, in the kernel's order.
fn first_up_ipv4(addrs: impl IntoIterator<Item = InterfaceAddress>) -> Option<IpAddr> {
    addrs.into_iter().find_map(|a| {
        let usable = a.flags.contains(InterfaceFlags::IFF_UP) && !a.flags.contains(InterfaceFlags::IFF_LOOPBACK);
        let sin = a.address.as_ref()?.as_sockaddr_in()?;
        usable.then(|| IpAddr::V4(sin.ip()))
    })
}

/// Makes or loads the PKI, writes the admin kubeconfig, creates the boot-time objects and
/// starts serving HTTPS and the controllers until `stop` resolves.
pub async fn start<F, S>(config: &ServerConfig, store: Arc<dyn Store>, stop: S) -> Result<Started, ApiStartError>
where
    S: Fn() -> F + Send + Sync + 'static + Clone,
    F: Future<Output = ()> + Send + 'static,
{
    let api_cfg = &config.apiserver;
    let ip = node_ip(config);
    let service_ip = config.network.service_cidr.nth(1).unwrap_or(IpAddr::V4(Ipv4Addr::new(10, 43, 0, 1)));
    let pki_cfg = PkiConfig {
        dir: config.data_dir.server().join("tls"),
        cluster_domain: config.network.cluster_domain.clone(),
        node_name: config.node.name.clone(),
        node_ip: ip,
        service_ip,
        tls_sans: api_cfg.tls_san.clone(),
        now: time::OffsetDateTime::now_utc(),
    };
    let dir = pki_cfg.dir.display().to_string();
    let pki = tokio::task::spawn_blocking(move || pki::ensure(&pki_cfg))
        .await
        .map_err(|e| ApiStartError::Pki { dir: dir.clone(), reason: e.to_string() })?
        .map_err(|e| ApiStartError::Pki { dir: dir.clone(), reason: e.to_string() })?;
    for issued in pki.issued() {
        tracing::info!(file = %issued.path.display(), reason = ?issued.reason, "issued certificate");
    }

    let addr = SocketAddr::new(api_cfg.bind_address, api_cfg.https_listen_port);
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|source| ApiStartError::Listen { addr, source })?;
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(api_cfg.https_listen_port);
    let url = format!("https://127.0.0.1:{port}");

    let tokens = Some(Arc::new(pki.service_account_tokens().clone()));
    // A remote datastore's lists are served from the API server's watch cache; SQLite is
    // read in process.
    let store: Arc<dyn Store> = match &config.datastore {
        super::config::DatastoreConfig::Etcd(_) => Arc::new(crate::apiserver::watchcache::WatchCache::new(store)),
        super::config::DatastoreConfig::Embedded => store,
    };
    let api = ApiServer::with_options(
        store,
        ApiOptions { advertise: SocketAddr::new(ip, port), service_cidr: config.network.service_cidr, tokens },
    );
    api.bootstrap().await.map_err(|e| ApiStartError::Bootstrap(e.message))?;

    let kubeconfig = api_cfg.write_kubeconfig.clone();
    pki.write_kubeconfig(&kubeconfig, api_cfg.write_kubeconfig_mode, &url)
        .map_err(|e| ApiStartError::Kubeconfig { path: kubeconfig.display().to_string(), reason: e.to_string() })?;
    tracing::info!(path = %kubeconfig.display(), "wrote the admin kubeconfig");

    let identify: CertIdentity = Arc::new(|der: &[u8]| {
        pki::identity_from_cert(der).ok().map(|u| {
            let mut groups = u.groups;
            groups.push("system:authenticated".into());
            Identity { user: u.name, groups, ..Default::default() }
        })
    });
    let mut tasks: Vec<super::Task> = Vec::new();
    tasks.push((
        "API listener".into(),
        tokio::spawn(listener::serve(
            listener,
            api.router(),
            pki.server_tls_config(),
            identify,
            stop(),
            Duration::from_secs(5),
        )),
    ));
    let controller_identity = Identity::new("system:kube-controller-manager", &["system:authenticated"]);
    let (mut ctx, mut failed) =
        Context::in_process(&api, controller_identity, Stop::new(stop.clone()), pki.server_ca_pem().to_string());
    let informers_stop = stop();
    tasks.push((
        "informers".into(),
        tokio::spawn(async move {
            tokio::select! {
                () = informers_stop => {}
                Some(f) = failed.recv() => {
                    tracing::error!(resource = f.resource, reason = %f.reason, "an informer stopped");
                }
            }
        }),
    ));
    ctx.node_lifecycle = config.node_lifecycle;
    ctx.settings = config.controller_settings;
    for r in crate::controllers::CONTROLLERS.iter().filter(|r| config.controllers.contains(&r.name)) {
        tracing::debug!(controller = r.name, "starting");
        tasks.push((format!("controller {}", r.name), tokio::spawn((r.start)(ctx.clone()))));
    }
    let controllers = ctx;
    // The scheduler has its own identity, so its own client and informers.
    let scheduler_identity = Identity::new("system:kube-scheduler", &["system:authenticated"]);
    let (scheduler, mut scheduler_failed) =
        Context::in_process(&api, scheduler_identity, Stop::new(stop.clone()), pki.server_ca_pem().to_string());
    let scheduler_stop = stop();
    tasks.push((
        "scheduler".into(),
        tokio::spawn(async move {
            tokio::select! {
                () = scheduler_stop => {}
                () = crate::scheduler::run(scheduler) => {}
                Some(f) = scheduler_failed.recv() => {
                    tracing::error!(component = "scheduler", resource = f.resource, reason = %f.reason, "an informer stopped");
                }
            }
        }),
    ));
    Ok(Started { api, url, tasks, ctx: controllers })
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use nix::sys::socket::SockaddrStorage;

    use super::*;

    fn iface(name: &str, flags: InterfaceFlags, address: Option<SockaddrStorage>) -> InterfaceAddress {
        InterfaceAddress {
            interface_name: name.into(),
            flags,
            address,
            netmask: None,
            broadcast: None,
            destination: None,
        }
    }

    fn v4(a: [u8; 4]) -> Option<SockaddrStorage> {
        Some(SocketAddrV4::new(Ipv4Addr::from(a), 0).into())
    }

    #[test]
    fn picks_the_first_ipv4_of_an_up_non_loopback_interface() {
        let up = InterfaceFlags::IFF_UP;
        let v6: SockaddrStorage = std::net::SocketAddrV6::new(std::net::Ipv6Addr::LOCALHOST, 0, 0, 0).into();
        let addrs = vec![
            iface("lo", up | InterfaceFlags::IFF_LOOPBACK, v4([127, 0, 0, 1])),
            iface("eth0", InterfaceFlags::empty(), v4([10, 0, 0, 1])),
            iface("eth1", up, None),
            iface("eth1", up, Some(v6)),
            iface("eth1", up, v4([192, 168, 1, 2])),
            iface("eth2", up, v4([192, 168, 2, 2])),
        ];
        assert_eq!(first_up_ipv4(addrs), Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2))));
        assert_eq!(first_up_ipv4(vec![iface("lo", up | InterfaceFlags::IFF_LOOPBACK, v4([127, 0, 0, 1]))]), None);
    }
}
