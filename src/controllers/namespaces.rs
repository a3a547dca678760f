//! The shape shared by controllers that keep one object in every active namespace (the
//! `default` ServiceAccount, the `kube-root-ca.crt` ConfigMap): a controller of namespaces,
//! triggered by namespaces and by the kept objects (watched by name only), so a new
//! namespace gets its object within a watch round trip and a deleted or altered object is
//! put back.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Resource;

use super::runtime::{self, api_code, Context, Informer, Notice, Object, ReconcileError};

/// Builds the object a namespace must hold.
pub(crate) type Desired<K> = Box<dyn Fn(&str) -> K + Send + Sync>;
/// The object restored, if it drifted.
pub(crate) type Repair<K> = Box<dyn Fn(&K) -> Option<K> + Send + Sync>;

/// One object kept in every active namespace.
pub(crate) struct Kept<K> {
    /// The controller's name, for logs.
    pub controller: &'static str,
    /// The kept object's name.
    pub name: &'static str,
    /// The object as it must be in a namespace.
    pub desired: Desired<K>,
    /// The object brought back to what it must be, if it drifted.
    pub repair: Repair<K>,
}

fn is_terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

impl<K> Kept<K>
where
    K: Object + Resource<Scope = NamespaceResourceScope> + serde::Serialize,
{
    /// Runs until the context's stop.
    pub(crate) async fn run(self, ctx: Context) {
        let namespaces = ctx.informers.get::<Namespace>();
        let kept: Informer<K> = ctx
            .informers
            .get_filtered(self.name, watcher::Config::default().fields(&format!("metadata.name={}", self.name)));
        let all_namespaces = namespaces.store().clone();
        let from_kept = kept.subscribe().flat_map(move |n| {
            futures::stream::iter(match n {
                Notice::Changed(o) | Notice::Deleted(o) => {
                    o.meta().namespace.iter().map(|ns| ObjectRef::<Namespace>::new(ns)).collect()
                }
                Notice::Resynced => runtime::all(&all_namespaces),
            })
        });
        let triggers = futures::stream::select(runtime::own_triggers(&namespaces), from_kept);
        let this = Arc::new(self);
        let client = ctx.client.clone();
        runtime::run(this.controller, namespaces.store().clone(), triggers, ctx.stop.clone(), move |ns| {
            let (this, client, kept) = (this.clone(), client.clone(), kept.clone());
            async move { this.ensure(&client, &kept, &ns).await }
        })
        .await
    }

    /// Makes the namespace hold the object as it must be; a terminating one is left alone.
    async fn ensure(
        &self,
        client: &kube::Client,
        kept: &Informer<K>,
        ns: &Namespace,
    ) -> Result<Action, ReconcileError> {
        if is_terminating(ns) {
            return Ok(Action::await_change());
        }
        let name = ns.metadata.name.clone().unwrap_or_default();
        let api: Api<K> = Api::namespaced(client.clone(), &name);
        match kept.get(Some(&name), self.name) {
            Some(current) => {
                if let Some(updated) = (self.repair)(&current) {
                    match api.replace(self.name, &PostParams::default(), &updated).await {
                        Ok(_) => {
                            tracing::info!(controller = self.controller, object = %format!("{name}/{}", self.name), "restored")
                        }
                        // Changed again or gone meanwhile: the watch brings the next version.
                        Err(e) if matches!(api_code(&e), Some(404 | 409)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            None => match api.create(&PostParams::default(), &(self.desired)(&name)).await {
                Ok(_) => {
                    tracing::debug!(controller = self.controller, object = %format!("{name}/{}", self.name), "created")
                }
                // Created meanwhile, or the namespace began terminating or went.
                Err(e) if matches!(api_code(&e), Some(403 | 404 | 409)) => {}
                Err(e) => return Err(e.into()),
            },
        }
        Ok(Action::await_change())
    }
}
