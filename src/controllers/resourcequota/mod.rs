//! The resource quota controller: keeps each ResourceQuota's `status.hard` (its spec) and
//! `status.used` (what the namespace's objects use) for quota admission, which charges
//! creates as they come and relies on this recount for what goes away.
//!
//! [`sync`] counts, with no I/O; this module lists the kinds a quota needs through the
//! client and is woken by changes to the commonly quota'd kinds, with upstream's 5-minute
//! resync for the others.

pub mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as K8sQuantity;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::Value;

use self::sync::Kind;
use super::runtime::{self, is_not_found, Context, Informer, Notice, Object, ReconcileError};
use crate::domain::quantity::Quantity;
use crate::domain::quota::Usage;

/// Upstream's default `--resource-quota-sync-period`.
const RESYNC: Duration = Duration::from_secs(300);

pub async fn run(ctx: Context) {
    let quotas = ctx.informers.get::<ResourceQuota>();
    let store = quotas.store().clone();
    let triggers = futures::stream::select_all([
        quota_triggers(&quotas).boxed(),
        namespace_triggers(&ctx.informers.get::<Pod>(), store.clone()).boxed(),
        namespace_triggers(&ctx.informers.get::<Service>(), store.clone()).boxed(),
        namespace_triggers(&ctx.informers.get::<ConfigMap>(), store.clone()).boxed(),
        namespace_triggers(&ctx.informers.get::<Secret>(), store.clone()).boxed(),
        namespace_triggers(&ctx.informers.get::<PersistentVolumeClaim>(), store.clone()).boxed(),
    ]);
    let client = ctx.client.clone();
    runtime::run("resourcequota", store, triggers, ctx.stop.clone(), move |q| {
        let client = client.clone();
        async move { reconcile(&client, q).await }
    })
    .await
}

/// A quota is recounted when its status does not cover its spec (new, or hard limits
/// changed). Its other changes are admission's charges: recounting on those would race the
/// creates they are for.
fn quota_triggers(
    quotas: &Informer<ResourceQuota>,
) -> impl futures::Stream<Item = ObjectRef<ResourceQuota>> + Send + 'static {
    let store = quotas.store().clone();
    quotas.subscribe().flat_map(move |n| {
        let refs = match n {
            Notice::Changed(q) if needs_count(&q) => vec![ObjectRef::from_obj(&*q)],
            Notice::Changed(_) | Notice::Deleted(_) => vec![],
            Notice::Resynced => runtime::all(&store),
        };
        futures::stream::iter(refs)
    })
}

fn needs_count(q: &ResourceQuota) -> bool {
    let hard = hard_of(q);
    let status = q.status.clone().unwrap_or_default();
    let used = status.used.unwrap_or_default();
    !same(status.hard.as_ref(), &hard) || hard.keys().any(|k| !used.contains_key(k))
}

/// What gives quota back wakes the quotas of its namespace (upstream's replenishment): an
/// object deleted, or a pod finished. Creates are charged by admission instead.
fn namespace_triggers<K: Object + serde::Serialize>(
    informer: &Informer<K>,
    quotas: Store<ResourceQuota>,
) -> impl futures::Stream<Item = ObjectRef<ResourceQuota>> + Send + 'static {
    informer.subscribe().flat_map(move |n| {
        let released = match &n {
            Notice::Deleted(_) => true,
            Notice::Changed(o) => {
                K::kind(&()) == "Pod" && serde_json::to_value(&**o).is_ok_and(|v| !crate::domain::quota::pod_counts(&v))
            }
            Notice::Resynced => false,
        };
        let refs = match n {
            Notice::Changed(o) | Notice::Deleted(o) if released => {
                let ns = o.meta().namespace.clone();
                quotas
                    .state()
                    .iter()
                    .filter(|q| q.metadata.namespace == ns)
                    .map(|q| ObjectRef::from_obj(&**q))
                    .collect()
            }
            Notice::Changed(_) | Notice::Deleted(_) => vec![],
            Notice::Resynced => runtime::all(&quotas),
        };
        futures::stream::iter(refs)
    })
}

/// The served version of a kind, for listing it.
fn api_resource(group: &str, plural: &str) -> Option<ApiResource> {
    let info = crate::apiserver::discovery::preferred_resources().find(|i| i.group == group && i.plural == plural)?;
    let api_version = if group.is_empty() { info.version.to_string() } else { format!("{group}/{}", info.version) };
    Some(ApiResource {
        group: group.to_string(),
        version: info.version.to_string(),
        api_version,
        kind: info.kind.to_string(),
        plural: plural.to_string(),
    })
}

fn hard_of(q: &ResourceQuota) -> Usage {
    q.spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.0.trim().parse::<Quantity>().ok()?)))
        .collect()
}

fn as_map(u: &Usage) -> BTreeMap<String, K8sQuantity> {
    u.iter().map(|(k, v)| (k.clone(), K8sQuantity(v.to_string()))).collect()
}

/// Same amounts, whatever their spelling (`1000m` is `1`).
fn same(a: Option<&BTreeMap<String, K8sQuantity>>, b: &Usage) -> bool {
    let a: Usage =
        a.into_iter().flatten().filter_map(|(k, v)| Some((k.clone(), v.0.trim().parse::<Quantity>().ok()?))).collect();
    a.len() == b.len() && a.iter().zip(b.iter()).all(|((ka, va), (kb, vb))| ka == kb && va == vb)
}

async fn reconcile(client: &kube::Client, q: Arc<ResourceQuota>) -> Result<Action, ReconcileError> {
    let ns = q.metadata.namespace.clone().unwrap_or_default();
    let name = q.metadata.name.clone().unwrap_or_default();
    let hard = hard_of(&q);
    let mut objects: BTreeMap<Kind, Vec<Value>> = BTreeMap::new();
    for (group, plural) in sync::kinds_needed(&hard) {
        // A kind this server does not serve has nothing to count.
        let Some(ar) = api_resource(&group, &plural) else { continue };
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ar);
        let list = api.list(&ListParams::default()).await?;
        let items = list.items.iter().filter_map(|o| serde_json::to_value(o).ok()).collect();
        objects.insert((group, plural), items);
    }
    let used = sync::used(&hard, &objects);
    let status = q.status.clone().unwrap_or_default();
    if !(same(status.hard.as_ref(), &hard) && same(status.used.as_ref(), &used)) {
        let api: Api<ResourceQuota> = Api::namespaced(client.clone(), &ns);
        // Replaced, not merged: a resource dropped from the spec goes from the status too.
        let mut fresh = (*q).clone();
        fresh.status = Some(ResourceQuotaStatus { hard: Some(as_map(&hard)), used: Some(as_map(&used)) });
        match api.replace_status(&name, &Default::default(), &fresh).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) if runtime::is_conflict(&e) => {
                // Admission charged it meanwhile: count again.
                return Ok(Action::requeue(Duration::from_millis(10)));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Action::requeue(RESYNC))
}
