//! Keeps the table in force: rebuilds it from the informers' stores whenever one of them
//! changes (a burst of changes is one rebuild), swaps it in, reports new problems as
//! Warning Events on their Ingress and writes `status.loadBalancer` where it differs.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::Resource;

use super::routes::{Inputs, Problem, Table};
use super::{tls, Shared};
use crate::controllers::runtime::{self, Context, Informer, Object};

/// The reporting name on the ingress' Events.
pub const REPORTER: &str = "k3rs-ingress";

/// Rebuilds at least this often, so that a status write that failed is retried.
const RESYNC: Duration = Duration::from_secs(30);

pub(super) async fn run(ctx: Context, shared: Arc<Shared>, node_ip: IpAddr) {
    let ingresses = ctx.informers.get::<Ingress>();
    let classes = ctx.informers.get::<IngressClass>();
    let services = ctx.informers.get::<Service>();
    let slices = ctx.informers.get::<EndpointSlice>();
    let secrets = ctx.informers.get::<Secret>();
    let mut changes = futures::stream::select_all([
        changes(&ingresses),
        changes(&classes),
        changes(&services),
        changes(&slices),
        changes(&secrets),
    ]);
    let stopped = ctx.stop.wait();
    tokio::pin!(stopped);
    let ready = async {
        let _ = ingresses.store().wait_until_ready().await;
        let _ = classes.store().wait_until_ready().await;
        let _ = services.store().wait_until_ready().await;
        let _ = slices.store().wait_until_ready().await;
        let _ = secrets.store().wait_until_ready().await;
    };
    tokio::select! {
        () = ready => {}
        () = &mut stopped => return,
    }
    let recorder = ctx.recorder(REPORTER);
    let mut reported: BTreeSet<Problem> = BTreeSet::new();
    loop {
        let inputs = Inputs {
            ingresses: ingresses.store().state(),
            classes: classes.store().state(),
            services: services.store().state(),
            slices: slices.store().state(),
            secrets: secrets.store().state(),
        };
        let table = Table::build(&inputs, tls::certified_key);
        let served = table.served.clone();
        let problems: BTreeSet<Problem> = table.problems.iter().cloned().collect();
        shared.swap(table);
        tracing::debug!(ingresses = served.len(), problems = problems.len(), "ingress routes reloaded");

        let refs: HashMap<String, ObjectReference> = inputs
            .ingresses
            .iter()
            .map(|i| {
                let key = format!(
                    "{}/{}",
                    i.metadata.namespace.as_deref().unwrap_or(""),
                    i.metadata.name.as_deref().unwrap_or("")
                );
                (key, i.object_ref(&()))
            })
            .collect();
        for p in problems.difference(&reported) {
            tracing::warn!(ingress = %p.ingress, reason = p.reason, "{}", p.message);
            if let Some(r) = refs.get(&p.ingress) {
                runtime::publish(&recorder, r, EventType::Warning, p.reason, "Sync", p.message.clone()).await;
            }
        }
        reported = problems;
        for r in &served {
            let current = inputs.ingresses.iter().find(|i| i.metadata.uid == r.uid);
            if let Some(ing) = current {
                write_status(&ctx.client, ing, node_ip).await;
            }
        }

        tokio::select! {
            next = changes.next() => if next.is_none() { return },
            () = tokio::time::sleep(RESYNC) => {}
            () = &mut stopped => return,
        }
        // Take in the rest of a burst before rebuilding.
        while let Some(Some(())) = changes.next().now_or_never() {}
    }
}

fn changes<K: Object>(informer: &Informer<K>) -> futures::stream::BoxStream<'static, ()> {
    informer.subscribe().map(|_| ()).boxed()
}

/// Writes `status.loadBalancer.ingress = [{ip: node_ip}]` unless it already says so.
async fn write_status(client: &kube::Client, ing: &Ingress, node_ip: IpAddr) {
    let ip = node_ip.to_string();
    let current: Vec<Option<&str>> = ing
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|l| l.iter().map(|i| i.ip.as_deref()).collect())
        .unwrap_or_default();
    if current == [Some(ip.as_str())] {
        return;
    }
    let (Some(ns), Some(name)) = (ing.metadata.namespace.as_deref(), ing.metadata.name.as_deref()) else { return };
    let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}});
    let api: Api<Ingress> = Api::namespaced(client.clone(), ns);
    if let Err(e) = api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        tracing::debug!(ingress = %format!("{ns}/{name}"), error = %e, "cannot write the ingress status");
    }
}
