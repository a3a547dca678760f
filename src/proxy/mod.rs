//! The service proxy: Services and EndpointSlices into nftables rules on the node, as
//! kube-proxy's nftables mode does (ClusterIP, NodePort, externalIPs, LoadBalancer addresses,
//! ClientIP affinity, internal and external traffic policies, hairpin, masquerade, and an
//! immediate reject for Services without endpoints), plus the load-balancer status of
//! LoadBalancer Services on this one node, as k3s' ServiceLB gives it ([`loadbalancer`]).
//!
//! The rules are a pure function of the objects ([`model`], [`render`]); the first sync and a
//! periodic one replace the whole table in one transaction, every other sync renders and
//! applies only the service ports that changed, also in one transaction. The rules live in
//! the kernel: they outlive k3rs, which finds them again on start and replaces them. nft and
//! conntrack are behind traits.
//!
//! The rules are written as nft's own text, piped to `nft -f` as one transaction, which is
//! also how kube-proxy's nftables mode (through knftables) talks to nft. The `nftables` crate
//! would pipe the same transaction as JSON to the same binary (`nft -j -f`): the same
//! atomicity and the same cache read per transaction, with about twice the bytes to parse
//! (`nft -j list ruleset` of 1,000 Services × 10 endpoints: 1.5 MB; as text: 0.78 MB), and
//! a golden file that no longer reads as rules.

pub mod loadbalancer;
pub mod model;
pub mod nodeports;
pub mod render;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::controllers::runtime::{informer, Context};
use crate::kubelet::network::guard::Nft;
use model::{Proto, ServicePort};

/// What the proxy needs to know about the node.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The node's name: endpoints on it are local.
    pub node_name: String,
    /// The whole pod network: traffic from elsewhere to a cluster IP is masqueraded.
    pub cluster_cidr: String,
    /// How often the whole table is rewritten (kube-proxy's nftables mode: hourly).
    pub full_sync_period: Duration,
}

/// Deletes connection-tracking entries, so that UDP clients stop using an endpoint that is
/// gone (TCP connections end by themselves; UDP "connections" would live on).
pub trait Conntrack: Send + Sync {
    /// Forgets UDP flows to `vip:port`, only those answered by `endpoint` when given.
    fn flush_udp(&self, vip: Ipv4Addr, port: u16, endpoint: Option<Ipv4Addr>);
}

/// The `conntrack` command (Debian's `conntrack` package).
#[derive(Default)]
pub struct ConntrackCommand {
    missing: AtomicBool,
}

impl Conntrack for ConntrackCommand {
    fn flush_udp(&self, vip: Ipv4Addr, port: u16, endpoint: Option<Ipv4Addr>) {
        if self.missing.load(Ordering::Relaxed) {
            return;
        }
        let mut cmd = Command::new("conntrack");
        cmd.args(["-D", "-p", "udp", "--orig-dst", &vip.to_string(), "--orig-port-dst", &port.to_string()]);
        if let Some(ep) = endpoint {
            cmd.args(["--reply-src", &ep.to_string()]);
        }
        match cmd.stdout(Stdio::null()).stderr(Stdio::null()).status() {
            // 1: nothing matched.
            Ok(_) => {}
            Err(e) => {
                self.missing.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "cannot run conntrack: stale UDP flows to removed endpoints are not flushed");
            }
        }
    }
}

/// The UDP flows to flush between two states: per cluster or external address and port,
/// the endpoints that went away, and services that had no endpoint and now have one (a
/// client's packets may be tracked with the reject).
pub fn stale_udp(
    old: &BTreeMap<String, ServicePort>,
    new: &BTreeMap<String, ServicePort>,
) -> Vec<(Ipv4Addr, u16, Option<Ipv4Addr>)> {
    let mut out = Vec::new();
    for (id, o) in old.iter().filter(|(_, o)| o.protocol == Proto::Udp) {
        let n = new.get(id);
        let vips: Vec<Ipv4Addr> = o.cluster_ip.iter().chain(&o.external_ips).copied().collect();
        for e in o.cluster_endpoints.iter().chain(&o.external_endpoints) {
            let kept = n.is_some_and(|n| n.cluster_endpoints.iter().chain(&n.external_endpoints).any(|x| x.ip == e.ip));
            if !kept {
                out.extend(vips.iter().map(|v| (*v, o.port, Some(e.ip))));
            }
        }
    }
    for (id, n) in new.iter().filter(|(_, n)| n.protocol == Proto::Udp) {
        let had = old.get(id).is_some_and(|o| !o.cluster_endpoints.is_empty());
        if !had && !n.cluster_endpoints.is_empty() {
            out.extend(n.cluster_ip.iter().map(|v| (*v, n.port, None)));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Removes the proxy's rules (the clean-up path).
pub fn cleanup(nft: &dyn Nft) -> Result<(), crate::kubelet::network::GuardError> {
    nft.apply(&render::cleanup())
}

/// Runs the proxy until the context's stop.
pub async fn run(ctx: Context, cfg: ProxyConfig, nft: Arc<dyn Nft>, conntrack: Arc<dyn Conntrack>) {
    let services = ctx.informers.get::<Service>();
    let slices = ctx.informers.get::<EndpointSlice>();
    let changes = futures::stream::select(services.subscribe().map(|_| ()), slices.subscribe().map(|_| ()));
    let mut changes = std::pin::pin!(changes);
    let stop = ctx.stop.wait();
    let mut stop = std::pin::pin!(stop);
    tokio::select! {
        () = async { informer::ready(services.store()).await; informer::ready(slices.store()).await } => {}
        () = &mut stop => return,
    }
    let mut rules = render::Rules::new(&cfg.cluster_cidr);
    let mut applied = false;
    let mut last_ports: BTreeMap<String, ServicePort> = BTreeMap::new();
    let mut last_full = Instant::now();
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let ports = model::build(&services.store().state(), &slices.store().state(), &cfg.node_name);
        let full_due = !applied || last_full.elapsed() >= cfg.full_sync_period;
        let tx = rules.update(&ports);
        let tx = if full_due { Some(render::full(rules.ruleset())) } else { tx };
        let mut retry = None;
        if let Some(tx) = tx {
            let size = tx.len();
            match crate::kubelet::network::guard::apply_blocking(&nft, tx, &mut failures, "proxy").await {
                Ok(()) => {
                    if full_due {
                        last_full = Instant::now();
                    }
                    applied = true;
                    tracing::debug!(ports = ports.len(), full = full_due, bytes = size, took = ?started.elapsed(), "proxy rules synced");
                    let ct = conntrack.clone();
                    let stale = stale_udp(&last_ports, &ports);
                    if !stale.is_empty() {
                        let _ = tokio::task::spawn_blocking(move || {
                            for (vip, port, ep) in stale {
                                ct.flush_udp(vip, port, ep);
                            }
                        })
                        .await;
                    }
                    last_ports = ports;
                }
                Err(wait) => {
                    applied = false;
                    retry = Some(wait);
                }
            }
        }
        let until_full = cfg.full_sync_period.saturating_sub(last_full.elapsed());
        let wait = retry.unwrap_or(until_full);
        tokio::select! {
            () = &mut stop => return,
            n = changes.next() => {
                if n.is_none() {
                    return;
                }
                // Take in everything that came meanwhile: one sync for a burst.
                while let Some(Some(())) = changes.next().now_or_never() {}
            }
            () = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::Endpoint;

    fn sp(id: &str, proto: Proto, eps: &[&str]) -> ServicePort {
        let eps: Vec<Endpoint> =
            eps.iter().map(|ip| Endpoint { ip: ip.parse().unwrap(), port: 53, local: true }).collect();
        ServicePort {
            id: id.into(),
            protocol: proto,
            port: 53,
            cluster_ip: Some("10.43.0.10".parse().unwrap()),
            external_ips: vec![],
            node_port: None,
            affinity: None,
            cluster_endpoints: eps.clone(),
            external_endpoints: eps,
            external_local: false,
        }
    }

    #[test]
    fn stale_udp_flows_of_removed_endpoints_and_of_services_that_got_one() {
        let old: BTreeMap<_, _> = [
            ("d".to_string(), sp("d", Proto::Udp, &["10.42.0.5", "10.42.0.6"])),
            ("t".to_string(), sp("t", Proto::Tcp, &["10.42.0.9"])),
        ]
        .into();
        let new: BTreeMap<_, _> = [("d".to_string(), sp("d", Proto::Udp, &["10.42.0.6"]))].into();
        let vip: Ipv4Addr = "10.43.0.10".parse().unwrap();
        assert_eq!(stale_udp(&old, &new), [(vip, 53, Some("10.42.0.5".parse().unwrap()))]);
        let none: BTreeMap<_, _> = [("d".to_string(), sp("d", Proto::Udp, &[]))].into();
        assert_eq!(stale_udp(&none, &new), [(vip, 53, None)]);
    }
}
