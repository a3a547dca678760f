//! The pod garbage collector (upstream's `pod-garbage-collector-controller`): every 20 s it
//! deletes, with no grace period, the terminated pods beyond `--terminated-pod-gc-threshold`
//! (oldest first, evicted ones before the rest), the terminating pods of nodes out of service,
//! the pods bound to nodes that no longer exist (once a node has been missing for the 40 s
//! quarantine and a live lookup confirms it is gone), and the terminating pods never
//! scheduled. A pod not yet terminal is first marked Failed, as upstream does, so that its
//! controller counts it as finished.
//!
//! What to delete is decided by pure functions over the informers' pods and nodes ([`plan`]);
//! the quarantine reads the controller's clock, so tests move time by hand.

pub mod plan;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use serde_json::json;

pub use self::plan::Quarantine;
use super::podutil;
use super::runtime::{is_conflict, is_not_found, Clock, Context};

const NAME: &str = "pod-garbage-collector-controller";

/// Upstream's `--terminated-pod-gc-threshold` default.
pub const DEFAULT_TERMINATED_POD_GC_THRESHOLD: usize = 12500;

/// How often pods are swept (upstream's gcCheckPeriod).
pub const GC_CHECK_PERIOD: Duration = Duration::from_secs(20);

/// The pod garbage collector's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Terminated pods kept before the oldest are deleted; 0 keeps them all.
    pub terminated_pod_gc_threshold: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { terminated_pod_gc_threshold: DEFAULT_TERMINATED_POD_GC_THRESHOLD }
    }
}

/// Runs the pod garbage collector with the context's settings until its stop.
pub async fn run(ctx: Context) {
    let options = ctx.settings.podgc;
    run_with(ctx, options).await
}

pub async fn run_with(ctx: Context, options: Options) {
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let mut stop = ctx.stop.wait();
    let synced = async {
        crate::controllers::runtime::informer::ready(pods.store()).await;
        crate::controllers::runtime::informer::ready(nodes.store()).await;
    };
    tokio::select! {
        () = &mut stop => return,
        () = synced => {}
    }
    let mut gc =
        PodGc { client: ctx.client.clone(), clock: ctx.clock.clone(), options, quarantine: Quarantine::default() };
    loop {
        gc.sweep(&pods.store().state(), &nodes.store().state()).await;
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(GC_CHECK_PERIOD) => {}
        }
    }
}

/// One sweep's worth of state kept between sweeps: the nodes in quarantine.
pub struct PodGc {
    pub client: kube::Client,
    pub clock: Arc<dyn Clock>,
    pub options: Options,
    pub quarantine: Quarantine,
}

impl PodGc {
    /// One pass over the pods and nodes as the informers hold them.
    pub async fn sweep(&mut self, pods: &[Arc<Pod>], nodes: &[Arc<Node>]) {
        let pods: Vec<&Pod> = pods.iter().map(|p| &**p).collect();
        let by_name: HashMap<&str, &Node> =
            nodes.iter().filter_map(|n| n.metadata.name.as_deref().map(|name| (name, &**n))).collect();
        // Each pod once, for the first reason that finds it.
        let mut doomed: Vec<(&Pod, Option<PodCondition>)> = Vec::new();
        let mut seen = HashSet::new();
        let mut push = |p: &Pod| seen.insert(p.metadata.uid.clone().unwrap_or_default());
        for p in plan::terminated_over_threshold(&pods, self.options.terminated_pod_gc_threshold) {
            if push(p) {
                doomed.push((p, None));
            }
        }
        for p in plan::terminating_out_of_service(&pods, &by_name) {
            if push(p) {
                doomed.push((p, None));
            }
        }
        let missing = plan::missing_nodes(&pods, &by_name);
        let due = self.quarantine.due(missing, self.clock.instant());
        let mut deleted = HashSet::new();
        for name in due {
            if self.node_is_gone(&name).await {
                deleted.insert(name);
            }
        }
        let now = self.clock.now();
        for p in plan::on_deleted_nodes(&pods, &deleted) {
            if push(p) {
                doomed.push((p, Some(plan::node_gone_condition(now))));
            }
        }
        for p in plan::unscheduled_terminating(&pods) {
            if push(p) {
                doomed.push((p, None));
            }
        }
        if !doomed.is_empty() {
            tracing::info!(controller = NAME, pods = doomed.len(), "garbage collecting pods");
        }
        for (p, condition) in doomed {
            self.mark_failed_and_delete(p, condition).await;
        }
    }

    /// Whether a live lookup confirms the node is gone (an error is no confirmation).
    async fn node_is_gone(&self, name: &str) -> bool {
        let api: Api<Node> = Api::all(self.client.clone());
        match api.get_metadata_opt(name).await {
            Ok(found) => found.is_none(),
            Err(e) => {
                tracing::warn!(controller = NAME, node = name, error = %e, "looking up a missing node failed");
                false
            }
        }
    }

    async fn mark_failed_and_delete(&self, pod: &Pod, condition: Option<PodCondition>) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        if !podutil::is_terminal(pod) {
            let mut status = json!({"phase": "Failed"});
            if let Some(c) = condition {
                status["conditions"] = json!(plan::with_condition(pod, c));
            }
            let patch = json!({"metadata": {"uid": pod.metadata.uid}, "status": status});
            match api.patch_status(name, &PatchParams::default(), &Patch::Merge(patch)).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) || is_conflict(&e) => return,
                Err(e) => {
                    tracing::warn!(controller = NAME, object = %format!("{ns}/{name}"), error = %e, "marking the pod failed failed");
                    return;
                }
            }
        }
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => tracing::info!(controller = NAME, object = %format!("{ns}/{name}"), "deleted the pod"),
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(e) => {
                tracing::warn!(controller = NAME, object = %format!("{ns}/{name}"), error = %e, "deleting the pod failed")
            }
        }
    }
}
