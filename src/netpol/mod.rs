//! NetworkPolicy enforcement on the node, as k3s does it with kube-router's policy
//! controller: NetworkPolicies, pods and namespaces (the controllers' shared informers) into
//! an nftables table of our own ([`model`], [`render`]), replaced in one transaction on every
//! change and at start (the rules outlive k3rs; whatever a previous run left is replaced).
//!
//! **No gap at pod start.** The informers learn a pod's IP from its status, which the
//! kubelet writes once the pod runs, so a pod that a policy isolates would be open to all
//! until the sync after that. Instead the kubelet awaits [`Engine::sandbox_ready`] (its
//! [`PolicyGate`]) between setting up the sandbox's network and starting any container: the
//! engine takes the pod and its address from the kubelet, applies a ruleset that includes
//! them (the pod's own chains and its place in other pods' peer sets) and only then lets
//! the kubelet go on. If the rules cannot be applied in time the sandbox fails and is retried,
//! so no container of a pod ever runs before its isolation is in force. An address the
//! kubelet gave up ([`PolicyGate::sandbox_gone`]) leaves the engine's pending pods.
//!
//! Bridged pod-to-pod traffic reaches the forward hook through br_netfilter
//! (`net.bridge.bridge-nf-call-iptables`, on by default and turned on at start if off).

pub mod model;
pub mod render;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use tokio::sync::{watch, Notify};

use crate::controllers::runtime::{informer, Context};
use crate::kubelet::network::guard::Nft;
use crate::kubelet::network::GuardError;
use crate::kubelet::policy::{PolicyError, PolicyGate};

/// How long the kubelet waits for a pod's rules before it fails the sandbox.
pub const GATE_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the table is rewritten when nothing changes.
const FULL_SYNC_PERIOD: Duration = Duration::from_secs(3600);

/// Where br_netfilter is switched on for this network namespace.
const BRIDGE_NF_CALL: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// Pods the kubelet announced, by UID, with a generation counting the announcements.
#[derive(Default)]
struct Pending {
    generation: u64,
    pods: BTreeMap<String, (Arc<Pod>, Ipv4Addr)>,
}

/// The policy engine's shared state: what the kubelet announced, and how far the applied
/// rules have caught up with it.
pub struct Engine {
    node_name: String,
    pending: Mutex<Pending>,
    kick: Notify,
    applied: watch::Sender<u64>,
}

impl Engine {
    pub fn new(node_name: impl Into<String>) -> Arc<Engine> {
        Arc::new(Engine {
            node_name: node_name.into(),
            pending: Mutex::new(Pending::default()),
            kick: Notify::new(),
            applied: watch::Sender::new(0),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The pods to build rules from: the informer's, with the kubelet's announced pods
    /// added (or their address filled in) when the status does not carry it yet.
    fn pods(&self, informed: &[Arc<Pod>]) -> (u64, Vec<model::PodView>) {
        let pending = self.pending();
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for pod in informed {
            let uid = pod.metadata.uid.as_deref().unwrap_or_default();
            let announced = pending.pods.get(uid).map(|(_, ip)| *ip);
            if announced.is_some() {
                seen.insert(uid.to_string());
            }
            let has_status_ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).is_some_and(|i| !i.is_empty());
            let ip = if has_status_ip { None } else { announced };
            out.extend(model::PodView::from_pod(pod, &self.node_name, ip));
        }
        for (uid, (pod, ip)) in &pending.pods {
            if !seen.contains(uid) {
                out.extend(model::PodView::from_pod(pod, &self.node_name, Some(*ip)));
            }
        }
        (pending.generation, out)
    }
}

#[async_trait::async_trait]
impl PolicyGate for Engine {
    async fn sandbox_ready(&self, pod: &Pod, ip: Ipv4Addr) -> Result<(), PolicyError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let wanted = {
            let mut p = self.pending();
            p.generation += 1;
            p.pods.insert(uid, (Arc::new(pod.clone()), ip));
            p.generation
        };
        let mut applied = self.applied.subscribe();
        self.kick.notify_one();
        let caught_up =
            tokio::time::timeout(GATE_TIMEOUT, async { applied.wait_for(|g| *g >= wanted).await.map(|_| ()) }).await;
        match caught_up {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(PolicyError("the policy engine stopped".into())),
            Err(_) => Err(PolicyError(format!("the rules were not applied within {GATE_TIMEOUT:?}"))),
        }
    }

    fn sandbox_gone(&self, pod_uid: &str) {
        if self.pending().pods.remove(pod_uid).is_some() {
            self.kick.notify_one();
        }
    }
}

/// Removes the engine's table (the clean-up path, and a start with policy disabled).
pub fn cleanup(nft: &dyn Nft) -> Result<(), GuardError> {
    nft.apply(&render::cleanup())
}

/// Turns br_netfilter on for this network namespace if it is off: without it traffic
/// between two pods on the bridge never reaches the forward hook.
fn ensure_bridge_netfilter() {
    match std::fs::read_to_string(BRIDGE_NF_CALL) {
        Ok(v) if v.trim() == "1" => {}
        Ok(_) => match std::fs::write(BRIDGE_NF_CALL, "1") {
            Ok(()) => tracing::info!("turned on {BRIDGE_NF_CALL} so bridged pod traffic is filtered"),
            Err(e) => {
                tracing::warn!(error = %e, "cannot turn on {BRIDGE_NF_CALL}: traffic between pods is not filtered")
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "no br_netfilter ({BRIDGE_NF_CALL}): traffic between pods is not filtered")
        }
    }
}

/// Runs the engine until the context's stop.
pub async fn run(engine: Arc<Engine>, ctx: Context, nft: Arc<dyn Nft>) {
    ensure_bridge_netfilter();
    let policies = ctx.informers.get::<NetworkPolicy>();
    let pods = ctx.informers.get::<Pod>();
    let namespaces = ctx.informers.get::<Namespace>();
    let changes = futures::stream::select(
        futures::stream::select(policies.subscribe().map(|_| ()), pods.subscribe().map(|_| ())),
        namespaces.subscribe().map(|_| ()),
    );
    let mut changes = std::pin::pin!(changes);
    let stop = ctx.stop.wait();
    let mut stop = std::pin::pin!(stop);
    tokio::select! {
        () = async {
            informer::ready(policies.store()).await;
            informer::ready(pods.store()).await;
            informer::ready(namespaces.store()).await;
        } => {}
        () = &mut stop => return,
    }
    let mut applied: Option<render::Ruleset> = None;
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let (generation, views) = engine.pods(&pods.store().state());
        let rules = model::build(&policies.store().state(), &views, &namespaces.store().state());
        let next = render::build(&rules);
        let mut retry = None;
        if applied.as_ref() == Some(&next) {
            engine.applied.send_replace(generation);
        } else {
            let tx = render::full(&next);
            match crate::kubelet::network::guard::apply_blocking(&nft, tx, &mut failures, "network policy").await {
                Ok(()) => {
                    tracing::debug!(isolated = rules.len(), took = ?started.elapsed(), "network policy rules synced");
                    applied = Some(next);
                    engine.applied.send_replace(generation);
                }
                Err(wait) => {
                    applied = None;
                    retry = Some(wait);
                }
            }
        }
        tokio::select! {
            () = &mut stop => return,
            n = changes.next() => {
                if n.is_none() {
                    return;
                }
                // Take in everything that came meanwhile: one sync for a burst.
                while let Some(Some(())) = changes.next().now_or_never() {}
            }
            () = engine.kick.notified() => {}
            () = tokio::time::sleep(retry.unwrap_or(FULL_SYNC_PERIOD)) => {
                // Rewrite the table even if nothing changed, in case someone else touched it.
                applied = None;
            }
        }
    }
}

#[cfg(test)]
mod tests;
