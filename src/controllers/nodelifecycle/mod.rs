//! The node lifecycle controller: watches every node's status and its Lease in
//! `kube-node-lease`; a node silent for the grace period turns Ready=Unknown and gets the
//! `unreachable` taints, one reporting Ready=False the `not-ready` ones (the taint eviction
//! controller then evicts what does not tolerate them), its pods turn not Ready, and the
//! taints come off when it is healthy again.
//!
//! [`monitor`] decides, with no I/O, in passes over all nodes (the zones' disruption states
//! need them all); this module runs a pass when a node, a lease or a pod's node changes and
//! at the latest when a grace period runs out, and writes what the pass decided.

pub mod monitor;

use std::collections::HashSet;
use std::sync::Arc;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeStatus, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::Resource;

pub use self::monitor::Config;
use self::monitor::{Monitor, NodeAction, Observed};
use super::runtime::{is_conflict, is_not_found, Clock, Context, Informer, Notice};
use crate::kubelet::node::LEASE_NAMESPACE;

/// Why a pass could not be written.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error("cannot update the status of node {node}: {source}")]
    UpdateNodeStatus { node: String, source: kube::Error },
    #[error("cannot update the taints of node {node}: {source}")]
    UpdateNodeTaints { node: String, source: kube::Error },
    #[error("cannot mark pod {pod} not ready: {source}")]
    MarkPodNotReady { pod: String, source: kube::Error },
}

/// What wakes the loop.
enum Change {
    Any,
    /// A pod seen on a node for the first time.
    PodAssigned(Arc<Pod>),
}

pub async fn run(ctx: Context) {
    let nodes = ctx.informers.get::<Node>();
    let leases = ctx.informers.get::<Lease>();
    let pods = ctx.informers.get::<Pod>();
    let mut stop = ctx.stop.wait();
    let ready = async {
        crate::controllers::runtime::informer::ready(nodes.store()).await;
        crate::controllers::runtime::informer::ready(leases.store()).await;
        crate::controllers::runtime::informer::ready(pods.store()).await;
    };
    tokio::select! {
        () = &mut stop => return,
        () = ready => {}
    }
    let this = Controller {
        client: ctx.client.clone(),
        pods: pods.clone(),
        recorder: ctx.recorder("node-controller"),
        clock: ctx.clock.clone(),
    };
    let mut assigned = HashSet::new();
    let node_changes = nodes.subscribe().map(|_| Change::Any);
    let lease_changes = leases
        .subscribe()
        .filter(|n| {
            let ours = match n {
                Notice::Changed(l) | Notice::Deleted(l) => l.metadata.namespace.as_deref() == Some(LEASE_NAMESPACE),
                Notice::Resynced => true,
            };
            futures::future::ready(ours)
        })
        .map(|_| Change::Any);
    let pod_changes = pods.subscribe().filter_map(move |n| {
        let change = match n {
            Notice::Changed(p) => {
                let on_node = p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
                let uid = p.metadata.uid.clone().unwrap_or_default();
                (on_node && assigned.insert(uid)).then_some(Change::PodAssigned(p))
            }
            Notice::Deleted(p) => {
                assigned.remove(p.metadata.uid.as_deref().unwrap_or_default());
                None
            }
            Notice::Resynced => None,
        };
        futures::future::ready(change)
    });
    let changes = futures::stream::select(futures::stream::select(node_changes, lease_changes), pod_changes);
    let mut changes = std::pin::pin!(changes);
    let mut monitor = Monitor::new(ctx.node_lifecycle);
    tracing::debug!(controller = "node-lifecycle", "started");
    loop {
        let pass = {
            let all = nodes.store().state();
            let observed: Vec<Observed<'_>> = all
                .iter()
                .map(|n| {
                    let name = n.metadata.name.as_deref().unwrap_or_default();
                    let lease = leases.get(Some(LEASE_NAMESPACE), name);
                    Observed {
                        node: n,
                        lease_renewed: lease.and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)),
                    }
                })
                .collect();
            monitor.pass(&observed, ctx.clock.now())
        };
        for action in pass.actions {
            this.apply(&nodes, action, &mut monitor).await;
        }
        let mut assigned_pods = Vec::new();
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(pass.next) => {}
            change = changes.next() => match change {
                None => return,
                Some(Change::PodAssigned(p)) => assigned_pods.push(p),
                Some(Change::Any) => {}
            },
        }
        // Whatever else is already waiting goes into the same pass.
        while let Some(Some(change)) = changes.next().now_or_never() {
            if let Change::PodAssigned(p) = change {
                assigned_pods.push(p);
            }
        }
        for pod in assigned_pods {
            this.pod_assigned(&nodes, &pod).await;
        }
    }
}

struct Controller {
    client: kube::Client,
    pods: Informer<Pod>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
}

impl Controller {
    /// Writes one node's action: status, then taints, then its pods; a failure is logged and
    /// the next pass decides again.
    async fn apply(&self, nodes: &Informer<Node>, action: NodeAction, monitor: &mut Monitor) {
        let reference = match nodes.get(None, &action.name) {
            Some(node) => node.object_ref(&()),
            None => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(action.name.clone()),
                ..Default::default()
            },
        };
        for (reason, message) in &action.events {
            self.event(&reference, EventType::Normal, reason, message.clone()).await;
        }
        if let Err(e) = self.write_node(nodes, &action).await {
            match &e {
                WriteError::UpdateNodeStatus { source, .. } | WriteError::UpdateNodeTaints { source, .. }
                    if is_conflict(source) || is_not_found(source) =>
                {
                    tracing::debug!(controller = "node-lifecycle", error = %e, "node changed meanwhile")
                }
                _ => tracing::warn!(controller = "node-lifecycle", error = %e, "node update failed"),
            }
            return;
        }
        if action.mark_pods_not_ready {
            let on_node: Vec<Arc<Pod>> = self
                .pods
                .store()
                .state()
                .into_iter()
                .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(action.name.as_str()))
                .collect();
            for pod in on_node {
                if let Err(e) = self.mark_not_ready(&pod).await {
                    tracing::warn!(controller = "node-lifecycle", error = %e, "marking pods not ready failed");
                    monitor.mark_failed(&action.name);
                }
            }
        }
    }

    async fn write_node(&self, nodes: &Informer<Node>, action: &NodeAction) -> Result<(), WriteError> {
        let api: Api<Node> = Api::all(self.client.clone());
        let Some(current) = nodes.get(None, &action.name) else { return Ok(()) };
        let mut node = (*current).clone();
        if let Some(conditions) = &action.conditions {
            node.status.get_or_insert_with(NodeStatus::default).conditions = Some(conditions.clone());
            node = api
                .replace_status(&action.name, &PostParams::default(), &node)
                .await
                .map_err(|source| WriteError::UpdateNodeStatus { node: action.name.clone(), source })?;
        }
        if let Some(taints) = &action.taints {
            node.spec.get_or_insert_with(Default::default).taints = (!taints.is_empty()).then(|| taints.clone());
            api.replace(&action.name, &PostParams::default(), &node)
                .await
                .map_err(|source| WriteError::UpdateNodeTaints { node: action.name.clone(), source })?;
        }
        Ok(())
    }

    /// A pod newly on a node that is not Ready is marked not ready at once (upstream's
    /// `processPod`).
    async fn pod_assigned(&self, nodes: &Informer<Node>, pod: &Pod) {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).and_then(|n| nodes.get(None, n)) else {
            return;
        };
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
        if ready.is_some_and(|c| c.status != "True") {
            if let Err(e) = self.mark_not_ready(pod).await {
                tracing::warn!(controller = "node-lifecycle", error = %e, "marking a pod not ready failed");
            }
        }
    }

    /// Upstream's MarkPodsNotReady for one pod: its Ready condition, if it has one, turns
    /// False; a Warning event says why.
    async fn mark_not_ready(&self, pod: &Pod) -> Result<(), WriteError> {
        let Some(updated) = not_ready(pod, self.clock.now()) else { return Ok(()) };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        match api.replace_status(&name, &PostParams::default(), &updated).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(source) => return Err(WriteError::MarkPodNotReady { pod: format!("{ns}/{name}"), source }),
        }
        self.event(&pod.object_ref(&()), EventType::Warning, "NodeNotReady", "Node is not ready".into()).await;
        Ok(())
    }

    async fn event(&self, reference: &ObjectReference, type_: EventType, reason: &str, note: String) {
        let ev =
            Event { type_, reason: reason.into(), note: Some(note), action: "NodeLifecycle".into(), secondary: None };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::debug!(error = %e, "cannot record event");
        }
    }
}

/// The pod with its Ready condition False, or `None` if it has none or it already is.
pub fn not_ready(pod: &Pod, now: k8s_openapi::jiff::Timestamp) -> Option<Pod> {
    let mut pod = pod.clone();
    let c = pod.status.as_mut()?.conditions.as_mut()?.iter_mut().find(|c| c.type_ == "Ready")?;
    if c.status == "False" {
        return None;
    }
    c.status = "False".into();
    c.last_transition_time = Some(Time(now));
    Some(pod)
}

#[cfg(test)]
mod tests;
