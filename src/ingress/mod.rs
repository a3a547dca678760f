//! The ingress: an HTTP(S) reverse proxy inside k3rs serving `networking.k8s.io/v1`
//! Ingresses of the class `k3rs` (created at boot as the default class), as k3s ships
//! Traefik. It listens on the node's ports 80 and 443, routes by host and path to the ready
//! endpoints of Services ([`routes`]), terminates TLS with Secrets chosen by SNI ([`tls`]),
//! splits traffic to canaries ([`canary`]) and forwards with streamed bodies and upgrades
//! ([`proxy`]).
//!
//! The route table is a pure function of the informers' objects, rebuilt on every change and
//! swapped in whole ([`Shared`]): a request uses the table in force when it arrived, so a
//! reload never drops a connection or a request in flight.

pub mod canary;
pub mod proxy;
pub mod routes;
mod sync;
pub mod tls;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::controllers::runtime::{Context, Stop};
use proxy::{Conn, Proxy, Upstreams};
use routes::Table;

pub use routes::{CLASS_NAME, CONTROLLER, DEFAULT_CLASS_ANNOTATION};

/// The ingress' settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where plain HTTP is served (port 0: any free port).
    pub http: SocketAddr,
    /// Where HTTPS is served.
    pub https: SocketAddr,
    /// The address written to the Ingresses' `status.loadBalancer`.
    pub node_ip: IpAddr,
    /// How long a connect to one endpoint may take before the next is tried (ingress-nginx'
    /// proxy-connect-timeout).
    pub connect_timeout: Duration,
    /// How long a backend may take to start its response (ingress-nginx' proxy-read-timeout).
    pub response_timeout: Duration,
}

impl Config {
    /// Ports on all addresses, with ingress-nginx' default time-outs.
    pub fn new(http_port: u16, https_port: u16, node_ip: IpAddr) -> Config {
        let any = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
        Config {
            http: SocketAddr::new(any, http_port),
            https: SocketAddr::new(any, https_port),
            node_ip,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot make the default TLS certificate: {0}")]
    DefaultCertificate(String),
    #[error("cannot configure TLS: {0}")]
    Tls(String),
}

/// The running ingress.
pub struct Started {
    /// The bound addresses (the real ports when 0 was asked for).
    pub http: SocketAddr,
    pub https: SocketAddr,
    /// Its long-running tasks, by name: none ends before `stop`.
    pub tasks: Vec<(String, tokio::task::JoinHandle<()>)>,
}

/// The table in force, read by every request and TLS handshake, replaced whole by the sync
/// loop.
pub struct Shared {
    table: RwLock<Arc<Table>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ingress::Shared")
    }
}

impl Shared {
    fn new() -> Shared {
        Shared { table: RwLock::new(Arc::new(Table::default())) }
    }

    /// The table in force.
    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn swap(&self, table: Table) {
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
    }
}

/// Binds both listeners, then serves until `ctx.stop`. The informers it reads (Ingresses,
/// IngressClasses, Services, EndpointSlices, Secrets) are `ctx`'s shared ones.
pub async fn start(ctx: Context, config: Config) -> Result<Started, IngressError> {
    let http =
        TcpListener::bind(config.http).await.map_err(|source| IngressError::Listen { addr: config.http, source })?;
    let https =
        TcpListener::bind(config.https).await.map_err(|source| IngressError::Listen { addr: config.https, source })?;
    let http_addr = http.local_addr().unwrap_or(config.http);
    let https_addr = https.local_addr().unwrap_or(config.https);
    let shared = Arc::new(Shared::new());
    let default_cert = tokio::task::spawn_blocking(tls::default_certificate)
        .await
        .map_err(|e| IngressError::DefaultCertificate(e.to_string()))?
        .map_err(IngressError::DefaultCertificate)?;
    let tls_config = tls::server_config(shared.clone(), default_cert).map_err(IngressError::Tls)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls_config));
    let proxy = Arc::new(Proxy::new(shared.clone(), config.connect_timeout, config.response_timeout));
    let tasks = vec![
        ("ingress sync".to_string(), tokio::spawn(sync::run(ctx.clone(), shared, config.node_ip))),
        ("ingress http".to_string(), tokio::spawn(serve(http, proxy.clone(), None, ctx.stop.clone()))),
        ("ingress https".to_string(), tokio::spawn(serve(https, proxy, Some(acceptor), ctx.stop.clone()))),
    ];
    tracing::info!(http = %http_addr, https = %https_addr, "ingress is serving");
    Ok(Started { http: http_addr, https: https_addr, tasks })
}

/// How long connections may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

async fn serve(listener: TcpListener, proxy: Arc<Proxy>, tls: Option<TlsAcceptor>, stop: Stop) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let stopped = stop.wait();
    tokio::pin!(stopped);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, port, "ingress accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopped => break,
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn { peer, port, tls: tls.is_some() });
        let proxy = proxy.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // The backend connections of this client connection, driven by this task.
            let (upstreams, drive) = Upstreams::new();
            let upstreams = Arc::new(upstreams);
            let service = hyper::service::service_fn(move |req| {
                let (proxy, conn, upstreams) = (proxy.clone(), conn.clone(), upstreams.clone());
                async move { Ok::<_, Infallible>(proxy.handle(&conn, &upstreams, req).await) }
            });
            let builder = auto::Builder::new(TokioExecutor::new());
            let served = async move {
                match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(s) => {
                            watcher
                                .watch(builder.serve_connection_with_upgrades(TokioIo::new(s), service).into_owned())
                                .await
                        }
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                    },
                    None => {
                        watcher
                            .watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned())
                            .await
                    }
                }
            };
            // The backend connections close with the client's.
            let result = tokio::select! {
                r = served => r,
                () = drive => Ok(()),
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "ingress connection ended with an error");
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::debug!(port, "ingress connections still open at shutdown"),
    }
}
