//! Service endpoints, as upstream's three controllers keep them:
//! - `endpointslice-controller`: EndpointSlices of every Service with a selector, from its
//!   pods (ready, serving and terminating conditions, named ports resolved per pod, at most
//!   100 endpoints per slice, a placeholder slice when there are none);
//! - `endpoint-controller`: the same pods as the Service's core/v1 Endpoints;
//! - `endpointslice-mirroring-controller`: the Endpoints of Services without a selector,
//!   mirrored into slices.
//!
//! The `kubernetes` Service has no selector, and its Endpoints are marked not to be
//! mirrored: its objects stay the API server's (see `apiserver::bootstrap`).
//!
//! Each runs over the Services with kube-runtime's applier; pod changes trigger the Services
//! that select the pod now or did before (a relabelled pod leaves its old Service), and a
//! change to the written objects triggers their Service, so edits by others are undone.
//! A deleted Service's Endpoints (and mirrored slices) are deleted; its slices go with it
//! through their owner reference.

pub mod desired;
pub mod endpoints;
pub mod mirroring;
pub mod slices;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};

use self::desired::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use self::slices::{Plan, Template, MAX_ENDPOINTS_PER_SLICE};
use super::runtime::expectations::{Expectations, Seen, Written};
use super::runtime::{self, informer, is_conflict, is_not_found, Context, Informer, Notice, ReconcileError};

/// Who manages the EndpointSlice controller's slices.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

/// The Services that select `pod` (in its namespace).
fn selecting(services: &Store<Service>, pod: &Pod) -> Vec<ObjectRef<Service>> {
    services
        .state()
        .iter()
        .filter(|s| s.metadata.namespace == pod.metadata.namespace)
        .filter(|s| desired::selector(s).is_some_and(|sel| desired::selects(sel, pod)))
        .map(|s| ObjectRef::from_obj(&**s))
        .collect()
}

/// The Services that selected each pod (by namespace and name) at its last change.
type LastSelected = HashMap<(Option<String>, Option<String>), Vec<ObjectRef<Service>>>;

/// Triggers from pods: the Services that select a changed pod, and those that selected it
/// at its last change (so a pod relabelled away or deleted leaves them).
fn pod_triggers(
    pods: &Informer<Pod>,
    services: Store<Service>,
) -> impl Stream<Item = ObjectRef<Service>> + Send + 'static {
    let last: Arc<Mutex<LastSelected>> = Arc::default();
    pods.subscribe().flat_map(move |n| {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        let out = match n {
            Notice::Changed(p) => {
                let key = (p.metadata.namespace.clone(), p.metadata.name.clone());
                let now = selecting(&services, &p);
                let mut all = last.insert(key, now.clone()).unwrap_or_default();
                all.extend(now);
                all
            }
            Notice::Deleted(p) => {
                let key = (p.metadata.namespace.clone(), p.metadata.name.clone());
                let mut all = last.remove(&key).unwrap_or_default();
                all.extend(selecting(&services, &p));
                all
            }
            Notice::Resynced => runtime::all(&services),
        };
        futures::stream::iter(out)
    })
}

/// Triggers from objects named after their Service (Endpoints) or labelled with it (slices
/// with the given manager).
fn named_triggers<K: runtime::Object>(
    informer: &Informer<K>,
    services: Store<Service>,
    service_of: fn(&K) -> Option<String>,
) -> impl Stream<Item = ObjectRef<Service>> + Send + 'static {
    informer.subscribe().flat_map(move |n| {
        let out = match n {
            Notice::Changed(o) | Notice::Deleted(o) => service_of(&o)
                .map(|name| ObjectRef::new(&name).within(o.meta().namespace.as_deref().unwrap_or("")))
                .into_iter()
                .collect(),
            Notice::Resynced => runtime::all(&services),
        };
        futures::stream::iter(out)
    })
}

fn slice_service(managed_by: &'static str) -> impl Fn(&EndpointSlice) -> Option<String> {
    move |s| {
        let l = s.metadata.labels.as_ref()?;
        (l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(managed_by)).then(|| l.get(SERVICE_NAME_LABEL).cloned())?
    }
}

fn ours_slice(s: &EndpointSlice) -> Option<String> {
    slice_service(MANAGED_BY)(s)
}

fn mirrored_slice(s: &EndpointSlice) -> Option<String> {
    slice_service(mirroring::MANAGED_BY)(s)
}

fn endpoints_service(e: &Endpoints) -> Option<String> {
    e.metadata.name.clone()
}

/// The slices `managed_by` keeps for the Service `ns/name`.
fn slices_of(store: &Store<EndpointSlice>, ns: &str, name: &str, managed_by: &str) -> Vec<EndpointSlice> {
    store
        .state()
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
        .filter(|s| {
            let l = s.metadata.labels.as_ref();
            l.and_then(|l| l.get(SERVICE_NAME_LABEL)).map(String::as_str) == Some(name)
                && l.and_then(|l| l.get(MANAGED_BY_LABEL)).map(String::as_str) == Some(managed_by)
        })
        .map(|s| (**s).clone())
        .collect()
}

fn key_of(svc: &Service) -> (String, String) {
    (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default())
}

/// Writes a plan; creates and deletes are remembered until the slice store shows them.
async fn write(
    api: &Api<EndpointSlice>,
    plan: Plan,
    owner: &(String, String),
    expectations: &Expectations<(String, String)>,
    now: std::time::Instant,
) -> Result<(), ReconcileError> {
    for s in plan.delete {
        let name = s.metadata.name.clone().unwrap_or_default();
        let dp = DeleteParams {
            preconditions: Some(Preconditions { uid: s.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => expectations.deleted(
                owner,
                Written { namespace: owner.0.clone(), name, uid: s.metadata.uid.clone().unwrap_or_default() },
                now,
            ),
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for s in plan.update {
        let name = s.metadata.name.clone().unwrap_or_default();
        match api.replace(&name, &PostParams::default(), &s).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    for s in plan.create {
        let made = api.create(&PostParams::default(), &s).await?;
        expectations.created(
            owner,
            Written {
                namespace: owner.0.clone(),
                name: made.metadata.name.unwrap_or_default(),
                uid: made.metadata.uid.unwrap_or_default(),
            },
            now,
        );
    }
    Ok(())
}

/// The EndpointSlice controller.
pub async fn run_slices(ctx: Context) {
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let slices = ctx.informers.get::<EndpointSlice>();
    let nodes = ctx.informers.get::<Node>();
    let triggers = futures::stream::select(
        futures::stream::select(runtime::own_triggers(&services), pod_triggers(&pods, services.store().clone())),
        named_triggers(&slices, services.store().clone(), ours_slice),
    );
    let expectations = Arc::new(Expectations::<(String, String)>::default());
    let (client, clock) = (ctx.client.clone(), ctx.clock.clone());
    let (pods, slices, nodes) = (pods.store().clone(), slices.store().clone(), nodes.store().clone());
    if !informer::ready_or_stop(&ctx.stop, async {
        informer::ready(&pods).await;
        informer::ready(&slices).await;
    })
    .await
    {
        return;
    }
    runtime::run("endpointslice", services.store().clone(), triggers, ctx.stop.clone(), move |svc: Arc<Service>| {
        let (client, clock, expectations) = (client.clone(), clock.clone(), expectations.clone());
        let (pods, slices, nodes) = (pods.clone(), slices.clone(), nodes.clone());
        async move {
            if svc.metadata.deletion_timestamp.is_some() || desired::selector(&svc).is_none() {
                return Ok(Action::await_change());
            }
            let key = key_of(&svc);
            let now = clock.instant();
            let seen = |ns: &str, name: &str| {
                Seen::of(slices.get(&ObjectRef::new(name).within(ns)).as_deref())
            };
            if !expectations.satisfied(&key, now, seen) {
                // The slice store has not shown our last writes: their events trigger again.
                return Ok(Action::requeue(std::time::Duration::from_secs(1)));
            }
            let all_pods = pods.state();
            let zone_of = |node: &str| {
                nodes
                    .get(&ObjectRef::new(node))
                    .and_then(|n| n.metadata.labels.as_ref()?.get("topology.kubernetes.io/zone").cloned())
            };
            let want = desired::desired(&svc, all_pods.iter().map(|p| &**p), zone_of);
            let have = slices_of(&slices, &key.0, &key.1, MANAGED_BY);
            let plan = slices::plan(
                &Template::of_service(&svc, MANAGED_BY),
                &desired::address_type(&svc),
                &want,
                &have,
                MAX_ENDPOINTS_PER_SLICE,
            );
            if !plan.is_empty() {
                tracing::debug!(service = %format!("{}/{}", key.0, key.1), create = plan.create.len(), update = plan.update.len(), delete = plan.delete.len(), "endpoint slices");
                write(&Api::namespaced(client, &key.0), plan, &key, &expectations, now).await?;
            }
            Ok(Action::await_change())
        }
    })
    .await
}

/// The Endpoints controller.
pub async fn run_endpoints(ctx: Context) {
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let eps = ctx.informers.get::<Endpoints>();
    let triggers = futures::stream::select(
        futures::stream::select(runtime::own_triggers(&services), pod_triggers(&pods, services.store().clone())),
        named_triggers(&eps, services.store().clone(), endpoints_service),
    );
    let client = ctx.client.clone();
    let (pod_store, ep_store) = (pods.store().clone(), eps.store().clone());
    if !informer::ready_or_stop(&ctx.stop, async {
        informer::ready(&pod_store).await;
        informer::ready(&ep_store).await;
    })
    .await
    {
        return;
    }
    let cleanup = delete_leftovers(ctx.clone(), &services, eps.store().clone(), |_svc_store, ep| Some(ep.clone()));
    let sync =
        runtime::run("endpoint", services.store().clone(), triggers, ctx.stop.clone(), move |svc: Arc<Service>| {
            let (client, pods, eps) = (client.clone(), pod_store.clone(), ep_store.clone());
            async move {
                if svc.metadata.deletion_timestamp.is_some() || desired::selector(&svc).is_none() {
                    return Ok(Action::await_change());
                }
                let (ns, name) = key_of(&svc);
                let all_pods = pods.state();
                let (subsets, truncated) = endpoints::subsets(&svc, all_pods.iter().map(|p| &**p));
                let labels = endpoints::labels(&svc);
                let api: Api<Endpoints> = Api::namespaced(client, &ns);
                let current = eps.get(&ObjectRef::new(&name).within(&ns));
                let mut next = current.as_deref().cloned().unwrap_or_else(|| Endpoints {
                    metadata: kube::api::ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(ns.clone()),
                        ..Default::default()
                    },
                    subsets: None,
                });
                let capacity_ok = next
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(endpoints::OVER_CAPACITY_ANNOTATION))
                    .is_some()
                    == truncated;
                let want_subsets = (!subsets.is_empty()).then_some(subsets);
                let same = current.is_some()
                    && next.subsets.as_ref().filter(|s| !s.is_empty()) == want_subsets.as_ref()
                    && next.metadata.labels.clone().unwrap_or_default() == labels
                    && capacity_ok;
                if same {
                    return Ok(Action::await_change());
                }
                next.subsets = want_subsets;
                next.metadata.labels = Some(labels);
                let ann = next.metadata.annotations.get_or_insert_with(BTreeMap::new);
                if truncated {
                    ann.insert(endpoints::OVER_CAPACITY_ANNOTATION.into(), "truncated".into());
                } else {
                    ann.remove(endpoints::OVER_CAPACITY_ANNOTATION);
                }
                let res = if current.is_some() {
                    api.replace(&name, &PostParams::default(), &next).await.map(|_| ())
                } else {
                    match api.create(&PostParams::default(), &next).await {
                        // Our store lags: it exists; the next trigger updates it.
                        Err(e) if runtime::api_code(&e) == Some(409) => Ok(()),
                        r => r.map(|_| ()),
                    }
                };
                res?;
                Ok(Action::await_change())
            }
        });
    tokio::join!(sync, cleanup);
}

/// The EndpointSlice mirroring controller.
pub async fn run_mirroring(ctx: Context) {
    let services = ctx.informers.get::<Service>();
    let eps = ctx.informers.get::<Endpoints>();
    let slices = ctx.informers.get::<EndpointSlice>();
    let triggers = futures::stream::select(
        futures::stream::select(
            runtime::own_triggers(&services),
            named_triggers(&eps, services.store().clone(), endpoints_service),
        ),
        named_triggers(&slices, services.store().clone(), mirrored_slice),
    );
    let expectations = Arc::new(Expectations::<(String, String)>::default());
    let (client, clock) = (ctx.client.clone(), ctx.clock.clone());
    let (ep_store, slice_store) = (eps.store().clone(), slices.store().clone());
    if !informer::ready_or_stop(&ctx.stop, async {
        informer::ready(&ep_store).await;
        informer::ready(&slice_store).await;
    })
    .await
    {
        return;
    }
    let cleanup = delete_leftovers(ctx.clone(), &services, slices.store().clone(), |_s, slice: &EndpointSlice| {
        mirrored_slice(slice).map(|_| slice.clone())
    });
    let sync = runtime::run(
        "endpointslicemirroring",
        services.store().clone(),
        triggers,
        ctx.stop.clone(),
        move |svc: Arc<Service>| {
            let (client, clock, expectations) = (client.clone(), clock.clone(), expectations.clone());
            let (eps, slices) = (ep_store.clone(), slice_store.clone());
            async move {
                let key = key_of(&svc);
                let now = clock.instant();
                let seen = |ns: &str, name: &str| Seen::of(slices.get(&ObjectRef::new(name).within(ns)).as_deref());
                if !expectations.satisfied(&key, now, seen) {
                    return Ok(Action::requeue(std::time::Duration::from_secs(1)));
                }
                let have = slices_of(&slices, &key.0, &key.1, mirroring::MANAGED_BY);
                let ep = eps.get(&ObjectRef::new(&key.1).within(&key.0));
                let mirror = ep.as_deref().filter(|e| {
                    svc.spec.as_ref().and_then(|s| s.selector.as_ref()).is_none_or(|s| s.is_empty())
                        && !mirroring::skips(e)
                });
                let plan = match mirror {
                    None => Plan { delete: have, ..Default::default() },
                    Some(ep) => {
                        let template = mirroring::template(ep);
                        let want = mirroring::desired(ep);
                        let mut plan = Plan::default();
                        let (wanted, unwanted): (Vec<EndpointSlice>, Vec<EndpointSlice>) =
                            have.into_iter().partition(|s| want.contains_key(&s.address_type));
                        plan.delete.extend(unwanted);
                        for (family, groups) in &want {
                            let of_family: Vec<EndpointSlice> =
                                wanted.iter().filter(|s| &s.address_type == family).cloned().collect();
                            let p = slices::plan(&template, family, groups, &of_family, mirroring::MAX_PER_SUBSET);
                            plan.create.extend(p.create);
                            plan.update.extend(p.update);
                            plan.delete.extend(p.delete);
                        }
                        plan
                    }
                };
                if !plan.is_empty() {
                    write(&Api::namespaced(client, &key.0), plan, &key, &expectations, now).await?;
                }
                Ok(Action::await_change())
            }
        },
    );
    tokio::join!(sync, cleanup);
}

/// Deletes what a controller wrote for Services that no longer exist: at start (what it
/// left behind while not running) and whenever a Service is deleted. `pick` chooses, among
/// the objects in `store` named after (Endpoints) or labelled with (slices) a Service, those
/// to delete.
async fn delete_leftovers<K>(
    ctx: Context,
    services: &Informer<Service>,
    store: Store<K>,
    pick: fn(&Store<Service>, &K) -> Option<K>,
) where
    K: runtime::Object + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let svc_store = services.store().clone();
    let mut notices = Box::pin(services.subscribe());
    let service_name = |o: &K| -> String {
        let m = o.meta();
        m.labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL).cloned())
            .unwrap_or_else(|| m.name.clone().unwrap_or_default())
    };
    let sweep = |only: Option<(String, String)>| {
        let orphans: Vec<K> = store
            .state()
            .iter()
            .filter(|o| {
                let ns = o.meta().namespace.clone().unwrap_or_default();
                let svc = service_name(o);
                only.as_ref().is_none_or(|k| k == &(ns.clone(), svc.clone()))
                    && svc_store.get(&ObjectRef::new(&svc).within(&ns)).is_none()
            })
            .filter_map(|o| pick(&svc_store, o))
            .collect();
        orphans
    };
    let delete = |orphans: Vec<K>| {
        let client = ctx.client.clone();
        async move {
            for o in orphans {
                let m = o.meta();
                let api: Api<K> = Api::namespaced(client.clone(), m.namespace.as_deref().unwrap_or(""));
                let dp = DeleteParams {
                    preconditions: Some(Preconditions { uid: m.uid.clone(), resource_version: None }),
                    ..Default::default()
                };
                match api.delete(m.name.as_deref().unwrap_or(""), &dp).await {
                    Ok(_) => tracing::debug!(object = ?m.name, "deleted for a Service that is gone"),
                    Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                    Err(e) => tracing::warn!(object = ?m.name, error = %e, "cannot delete for a Service that is gone"),
                }
            }
        }
    };
    if !informer::ready_or_stop(&ctx.stop, informer::ready(&svc_store)).await {
        return;
    }
    delete(sweep(None)).await;
    let stop = ctx.stop.wait();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            n = notices.next() => match n {
                None => return,
                Some(Notice::Deleted(svc)) => delete(sweep(Some(key_of(&svc)))).await,
                Some(Notice::Resynced) => delete(sweep(None)).await,
                Some(Notice::Changed(_)) => {}
            },
        }
    }
}
