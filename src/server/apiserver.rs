//! Starting the API server inside `k3rs server`: PKI, the admin kubeconfig, boot-time
//! objects, the HTTPS listener, the controllers and the scheduler.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use super::config::ServerConfig;
use crate::apiserver::listener::{self, CertIdentity};
use crate::apiserver::{ApiOptions, ApiServer, Identity};
use crate::client::Client;
use crate::controllers::ControllerContext;
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
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
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
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `addrs` with a list we walk read-only and free once.
    unsafe {
        if libc::getifaddrs(&mut addrs) != 0 {
            return None;
        }
        let mut found = None;
        let mut cur = addrs;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
            let lo = ifa.ifa_flags & (libc::IFF_LOOPBACK as u32) != 0;
            if up && !lo && !ifa.ifa_addr.is_null() && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                found = Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
                break;
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(addrs);
        found
    }
}

/// Makes or loads the PKI, writes the admin kubeconfig, creates the boot-time objects and
/// starts serving HTTPS and the controllers until `stop` resolves.
pub async fn start<F, S>(config: &ServerConfig, store: Arc<dyn Store>, stop: S) -> Result<Started, ApiStartError>
where
    S: Fn() -> F,
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
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(listener::serve(
        listener,
        api.router(),
        pki.server_tls_config(),
        identify,
        stop(),
        Duration::from_secs(5),
    )));
    let controller_identity = Identity::new("system:kube-controller-manager", &["system:authenticated"]);
    for (name, run) in crate::controllers::CONTROLLERS {
        tracing::debug!(controller = name, "starting");
        let ctx = ControllerContext {
            client: Client::new(api.clone(), controller_identity.clone()),
            ca_pem: pki.server_ca_pem().to_string(),
        };
        tasks.push(tokio::spawn(run(ctx, Box::pin(stop()))));
    }
    let scheduler = Client::new(api.clone(), Identity::new("system:kube-scheduler", &["system:authenticated"]));
    tasks.push(tokio::spawn(crate::scheduler::run(scheduler, stop())));
    Ok(Started { api, url, tasks })
}
