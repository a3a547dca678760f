//! Starting the node inside `k3rs server` (unless `--disable-agent`): the image store and
//! the air-gap directory, the pod network, the libcontainer runtime, node registration with
//! its heartbeat and lease, the kubelet's pod manager — all through the API server in
//! process, as `system:node:<name>` — and, on the controllers' shared informers, the service
//! proxy, NetworkPolicy enforcement (unless `--disable-network-policy`) and the ingress on
//! the node's ports 80 and 443.

use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use super::config::ServerConfig;
use crate::apiserver::ApiServer;
use crate::client::Client;
use crate::controllers::runtime::Context;
use crate::images::{ImageStore, RegistriesConfig};
use crate::kubelet::manager::{self, ClientApi, RecorderSink};
use crate::kubelet::network::{NetConfig, PodNetwork};
use crate::kubelet::node::{self, NodeConditions, NodeSpecInput};
use crate::kubelet::node_backend::{NodeBackend, NodeInfo};
use crate::kubelet::runtime::LibcontainerRuntime;

/// Container logs, where upstream's kubelet writes them.
pub const POD_LOG_ROOT: &str = "/var/log/pods";

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot open the image store: {0}")]
    Images(String),
    #[error("cannot read {path}: {reason}")]
    Registries { path: String, reason: String },
    #[error("cannot set up the pod network: {0}")]
    Network(String),
    #[error("cannot register the node: {0}")]
    Register(String),
    #[error("cannot start the ingress: {0}")]
    Ingress(String),
    #[error("cannot start the cluster DNS server: {0}")]
    Dns(String),
}

/// Starts the node; returns its tasks. Pods keep running when they end.
pub async fn start<F, S>(
    config: &ServerConfig,
    api: Arc<ApiServer>,
    controllers: &Context,
    node_ip: IpAddr,
    stop: S,
) -> Result<Vec<super::Task>, AgentError>
where
    S: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let data = &config.data_dir;
    let name = config.node.name.clone();
    let client = Client::new(api.clone(), node::node_identity(&name));

    let info = NodeSpecInput::new(name.clone(), node_ip, config.network.cluster_cidr, data.root());
    let pod_cidr = info.pod_cidr().map_err(|e| AgentError::Network(e.to_string()))?;

    let images = Arc::new(ImageStore::open(&data.image_store()).map_err(|e| AgentError::Images(e.to_string()))?);
    let registries = RegistriesConfig::load(&config.private_registry).map_err(|e| AgentError::Registries {
        path: config.private_registry.display().to_string(),
        reason: e.to_string(),
    })?;

    // The node's resolvers, chosen as k3s chooses them: for Default-policy pods and as the
    // cluster DNS server's upstreams.
    let upstreams =
        crate::dns::upstream::choose(config.network.resolv_conf.as_deref(), |p| std::fs::read_to_string(p).ok());
    let mut net_cfg = NetConfig::new(
        data,
        pod_cidr,
        config.network.cluster_cidr,
        config.network.service_cidr,
        config.network.cluster_dns,
        &config.network.cluster_domain,
    );
    if let Some(path) = &upstreams.path {
        net_cfg.resolv_conf = path.clone();
    }
    let network = Arc::new(PodNetwork::new(net_cfg).await.map_err(|e| AgentError::Network(e.to_string()))?);
    let runtime = Arc::new(LibcontainerRuntime::new(data.containers(), data.run()));
    let service_ip = config.network.service_cidr.nth(1).map(|i| i.to_string()).unwrap_or_else(|| "10.43.0.1".into());
    let hostname = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| name.clone());
    // The NetworkPolicy engine, unless disabled; the kubelet waits on it before starting a
    // pod's containers (see `crate::netpol`).
    let nft: Arc<dyn crate::kubelet::network::guard::Nft> = Arc::new(crate::kubelet::network::guard::NftCommand);
    let netpol = (!config.disable_network_policy).then(|| crate::netpol::Engine::new(name.clone()));
    let mut backend = NodeBackend::new(
        NodeInfo {
            name: name.clone(),
            ip: node_ip,
            hostname,
            kubernetes_service: (service_ip, 443),
            log_root: Path::new(POD_LOG_ROOT).to_path_buf(),
            pods_dir: data.pods(),
            containers_dir: data.containers(),
        },
        runtime,
        images.clone(),
        network,
        registries,
    );
    match &netpol {
        Some(engine) => backend.policy = engine.clone(),
        // Rules a previous run left would isolate pods no engine keeps up to date.
        None => {
            if let Err(e) = crate::netpol::cleanup(nft.as_ref()) {
                tracing::warn!(error = %e, "cannot remove the network policy table");
            }
        }
    }
    let backend = Arc::new(backend);
    api.set_pod_streams(backend.clone());

    node::register(&client, &info).await.map_err(|e| AgentError::Register(e.to_string()))?;
    let mut tasks = Vec::new();
    tasks.push((
        "node heartbeat".to_string(),
        tokio::spawn(node::run_heartbeat(client.clone(), info, NodeConditions::default, stop())),
    ));
    // Archives already in the air-gap directory are in before any pod starts, as k3s does.
    crate::images::import_dir_once(images.clone(), data.images_import_dir()).await;
    tasks.push((
        "image import".to_string(),
        tokio::spawn(crate::images::watch_import_dir(images, data.images_import_dir(), stop())),
    ));
    let reporter = kube::runtime::events::Reporter { controller: "kubelet".into(), instance: Some(name.clone()) };
    tasks.push((
        "kubelet".to_string(),
        tokio::spawn(manager::run(
            client.clone(),
            name,
            node_ip.to_string(),
            backend.clone(),
            Arc::new(ClientApi::new(client.clone())),
            Arc::new(RecorderSink::new(client.typed(), reporter)),
            Some(data.pod_manifests()),
            stop(),
        )),
    ));
    // The service proxy and ServiceLB share the controllers' informers (one watch of Services
    // and EndpointSlices for the whole process).
    let proxy_cfg = crate::proxy::ProxyConfig {
        node_name: config.node.name.clone(),
        cluster_cidr: config.network.cluster_cidr.to_string(),
        full_sync_period: std::time::Duration::from_secs(3600),
    };
    let proxy_stop = stop();
    let proxy_ctx = controllers.clone();
    let servicelb = !config.disabled.contains(super::components::SERVICELB);
    let lb = servicelb.then(|| proxy_ctx.clone());
    tasks.push((
        "node port check".to_string(),
        tokio::spawn(crate::proxy::nodeports::run(
            proxy_ctx.clone(),
            servicelb,
            Arc::new(crate::proxy::nodeports::ProcNet),
        )),
    ));
    tasks.push((
        "service proxy".to_string(),
        tokio::spawn(async move {
            tokio::select! {
                () = proxy_stop => {}
                () = crate::proxy::run(proxy_ctx, proxy_cfg, Arc::new(crate::kubelet::network::guard::NftCommand), Arc::new(crate::proxy::ConntrackCommand::default())) => {}
            }
        }),
    ));
    if let Some(engine) = netpol {
        tasks.push((
            "network policy".to_string(),
            tokio::spawn(crate::netpol::run(engine, controllers.clone(), nft.clone())),
        ));
    }
    if let Some(ctx) = lb {
        tasks.push(("servicelb".to_string(), tokio::spawn(crate::proxy::loadbalancer::run(ctx, node_ip))));
    }
    if !config.disabled.contains(super::components::INGRESS) {
        let cfg = crate::ingress::Config::new(config.ingress.http, config.ingress.https, node_ip);
        let started =
            crate::ingress::start(controllers.clone(), cfg).await.map_err(|e| AgentError::Ingress(e.to_string()))?;
        tasks.extend(started.tasks);
    }
    if !config.disabled.contains(super::components::DNS) {
        tasks.push(start_dns(config, controllers, pod_cidr, upstreams.servers, stop).await?);
    }
    tracing::info!(node = %config.node.name, pod_cidr = %pod_cidr, "node is up");
    Ok(tasks)
}

/// The cluster DNS server on the pod bridge's gateway address, port 53 (as k3s runs CoreDNS
/// on the node), on the controllers' shared informers.
async fn start_dns<F, S>(
    config: &ServerConfig,
    controllers: &Context,
    pod_cidr: crate::util::cidr::Cidr,
    upstreams: Vec<std::net::SocketAddr>,
    stop: S,
) -> Result<super::Task, AgentError>
where
    S: Fn() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let gateway = pod_cidr.nth(1).ok_or_else(|| AgentError::Dns(format!("pod CIDR {pod_cidr} has no gateway")))?;
    let dns = crate::dns::start(
        controllers.client.clone(),
        &controllers.informers,
        crate::dns::DnsConfig {
            listen: vec![std::net::SocketAddr::new(gateway, 53)],
            domain: config.network.cluster_domain.clone(),
            cluster_dns: config.network.cluster_dns,
            upstreams,
            publish_service: true,
        },
        controllers.stop.clone(),
    )
    .await
    .map_err(|e| AgentError::Dns(e.to_string()))?;
    let stopped = stop();
    let task = tokio::spawn(async move {
        stopped.await;
        let _ = dns.task.await;
    });
    Ok(("cluster DNS".to_string(), task))
}
