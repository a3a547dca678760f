//! The namespace controller: when a namespace is deleted, deletes everything in it (every
//! namespaced type the API server serves), then removes the `kubernetes` finalizer so the
//! namespace itself goes.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::controller::Action;

use super::runtime::{self, is_not_found, Context, ReconcileError};
use crate::apiserver::ApiServer;

/// How soon a namespace whose content is not gone yet is looked at again.
const RETRY: Duration = Duration::from_secs(2);

pub async fn run(ctx: Context) {
    let namespaces = ctx.informers.get::<Namespace>();
    let client = ctx.client.clone();
    let api = ctx.legacy.api().clone();
    runtime::run(
        "namespace",
        namespaces.store().clone(),
        runtime::own_triggers(&namespaces),
        ctx.stop.clone(),
        move |ns| {
            let (client, api) = (client.clone(), api.clone());
            async move { reconcile(&client, &api, ns).await }
        },
    )
    .await
}

fn is_terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        && ns.spec.as_ref().and_then(|s| s.finalizers.as_ref()).is_some_and(|f| f.iter().any(|f| f == "kubernetes"))
}

async fn reconcile(client: &kube::Client, api: &Arc<ApiServer>, ns: Arc<Namespace>) -> Result<Action, ReconcileError> {
    if !is_terminating(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.metadata.name.clone().unwrap_or_default();
    let left = delete_content(client, api, &name).await?;
    if left > 0 {
        tracing::debug!(controller = "namespace", object = %name, left, "waiting for namespace content to go");
        return Ok(Action::requeue(RETRY));
    }
    let released = Namespace {
        metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
        spec: Some(NamespaceSpec { finalizers: Some(vec![]) }),
        status: None,
    };
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.replace_subresource("finalize", &name, &PostParams::default(), &released).await {
        Ok(_) => {
            tracing::info!(controller = "namespace", object = %name, "namespace content deleted; namespace released")
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

/// Deletes every namespaced object in `ns`; returns how many are still there.
async fn delete_content(client: &kube::Client, api: &Arc<ApiServer>, ns: &str) -> Result<usize, ReconcileError> {
    let mut left = 0;
    for rt in api.namespaced_types() {
        let ar = ApiResource {
            group: rt.group.to_string(),
            version: rt.version.to_string(),
            api_version: rt.api_version(),
            kind: rt.kind.to_string(),
            plural: rt.plural.to_string(),
        };
        let objects: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let list = objects.list_metadata(&ListParams::default()).await?;
        for item in list.items {
            let Some(name) = item.metadata.name else { continue };
            match objects.delete(&name, &DeleteParams::background()).await {
                // Marked (finalizers or a grace period hold it), or gone at once.
                Ok(answer) => left += usize::from(answer.is_left()),
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    tracing::warn!(controller = "namespace", object = %format!("{ns}/{name}"), error = %e, "deleting namespace content failed");
                    left += 1;
                }
            }
        }
    }
    Ok(left)
}
