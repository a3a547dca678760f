//! The kubelet's side of network policy: before any container of a pod starts, the pod's
//! isolation (and its place in other pods' peer sets) must be in force, or a pod that
//! policy isolates would be reachable for the moment between its start and the policy
//! engine's next sync — and a pod whose status carries its IP only once it runs would be
//! found by the engine only after that. So the pod worker, once the sandbox has its address,
//! hands the pod and the address to a [`PolicyGate`] and waits until it returns; a gate that
//! cannot say "in force" fails the sandbox, which is torn down and retried: a pod never runs
//! unfiltered. Without a policy engine (`--disable-network-policy`) the gate is [`NoPolicy`].

use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Pod;

#[derive(Debug, thiserror::Error)]
#[error("network policy for the pod is not in force: {0}")]
pub struct PolicyError(pub String);

/// What the kubelet tells the policy engine about its pods' sandboxes.
#[async_trait::async_trait]
pub trait PolicyGate: Send + Sync {
    /// The pod's sandbox has `ip`; returns once the rules that concern the pod are applied.
    async fn sandbox_ready(&self, pod: &Pod, ip: Ipv4Addr) -> Result<(), PolicyError>;
    /// The pod's sandbox is gone: its address may be given to another pod.
    fn sandbox_gone(&self, pod_uid: &str);
}

/// No policy engine: nothing to wait for.
pub struct NoPolicy;

#[async_trait::async_trait]
impl PolicyGate for NoPolicy {
    async fn sandbox_ready(&self, _pod: &Pod, _ip: Ipv4Addr) -> Result<(), PolicyError> {
        Ok(())
    }
    fn sandbox_gone(&self, _pod_uid: &str) {}
}
