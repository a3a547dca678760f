//! The namespace controller: when a namespace is deleted, deletes everything in it, then
//! removes the `kubernetes` finalizer so the namespace itself goes.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};

use crate::apiserver::status::ApiError;
use crate::client::Client;

/// How soon a namespace whose content is not gone yet is looked at again.
const RETRY: Duration = Duration::from_secs(2);

pub async fn run(client: Client, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let watch = client.watch("/api/v1/namespaces?watch=1").await;
        let mut events = match watch {
            Ok(w) => Box::pin(w),
            Err(e) => {
                tracing::warn!(controller = "namespace", error = %e, "watch failed");
                tokio::select! { _ = &mut shutdown => return, _ = tokio::time::sleep(RETRY) => continue }
            }
        };
        let mut retry = tokio::time::interval(RETRY);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                ev = events.next() => match ev {
                    Some(ev) => {
                        if let Some(ns) = ev["object"]["metadata"]["name"].as_str() {
                            if ev["type"] != "DELETED" && is_terminating(&ev["object"]) {
                                finish(&client, ns).await;
                            }
                        }
                    }
                    None => break,
                },
                _ = retry.tick() => {
                    // Namespaces whose content was still going when last looked at.
                    if let Ok(list) = client.get("/api/v1/namespaces").await {
                        for ns in list["items"].as_array().into_iter().flatten().filter(|n| is_terminating(n)) {
                            if let Some(name) = ns["metadata"]["name"].as_str() {
                                finish(&client, name).await;
                            }
                        }
                    }
                }
            }
        }
    }
}

fn is_terminating(ns: &Value) -> bool {
    ns.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
        && ns.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| f.iter().any(|v| v == "kubernetes"))
}

/// Deletes the namespace's content; once none is left, releases the namespace.
async fn finish(client: &Client, ns: &str) {
    match delete_content(client, ns).await {
        Ok(0) => {
            let body =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}, "spec": {"finalizers": []}});
            match client.put(&format!("/api/v1/namespaces/{ns}/finalize"), &body).await {
                Ok(_) => tracing::info!(
                    controller = "namespace",
                    object = ns,
                    "namespace content deleted; namespace released"
                ),
                Err(e) if e.is_not_found() => {}
                Err(e) => tracing::warn!(controller = "namespace", object = ns, error = %e, "finalizing failed"),
            }
        }
        Ok(left) => tracing::debug!(controller = "namespace", object = ns, left, "waiting for namespace content to go"),
        Err(e) => {
            tracing::warn!(controller = "namespace", object = ns, error = %e, "deleting namespace content failed")
        }
    }
}

/// Deletes every namespaced object in `ns`; returns how many are still there.
async fn delete_content(client: &Client, ns: &str) -> Result<usize, ApiError> {
    let mut left = 0;
    for rt in client.api().namespaced_types() {
        let prefix = if rt.group.is_empty() {
            format!("/api/{}", rt.version)
        } else {
            format!("/apis/{}/{}", rt.group, rt.version)
        };
        let path = format!("{prefix}/namespaces/{ns}/{}", rt.plural);
        let list = client.get(&path).await?;
        for item in list["items"].as_array().into_iter().flatten() {
            let Some(name) = item["metadata"]["name"].as_str() else { continue };
            left += 1;
            match client.delete(&format!("{path}/{name}")).await {
                Ok(v) if v["kind"] == "Status" => left -= 1,
                Ok(_) | Err(_) => {}
            }
        }
    }
    Ok(left)
}
