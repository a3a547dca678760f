//! The shape shared by controllers that keep one object in every active namespace (the
//! `default` ServiceAccount, the `kube-root-ca.crt` ConfigMap): driven by two watches — the
//! namespaces and the kept objects — so a new namespace gets its object within a watch
//! round trip, a deleted or altered object is put back, and a periodic pass over all
//! namespaces covers anything a broken watch missed.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::apiserver::status::ApiError;
use crate::client::Client;

/// How soon watches are opened again after one failed.
const RETRY: Duration = Duration::from_secs(1);
/// How often every namespace is looked at even without events.
const RESYNC: Duration = Duration::from_secs(60);

/// Builds the object a namespace must hold.
pub(crate) type Desired = Box<dyn Fn(&str) -> Value + Send + Sync>;
/// The update restoring a drifted object, if it drifted.
pub(crate) type Repair = Box<dyn Fn(&Value) -> Option<Value> + Send + Sync>;

/// One object kept in every active namespace.
pub(crate) struct Kept {
    /// The controller's name, for logs.
    pub controller: &'static str,
    /// The kept objects' collection below a namespace, e.g. `/api/v1/namespaces/{ns}/` +
    /// `serviceaccounts`.
    pub plural: &'static str,
    /// The kept object's name.
    pub name: &'static str,
    /// The object as it must be in a namespace.
    pub desired: Desired,
    /// The update that brings an existing object back to what it must be, if it drifted.
    pub repair: Repair,
}

fn is_terminating(ns: &Value) -> bool {
    ns.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
        || ns.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating")
}

impl Kept {
    fn path(&self, ns: &str) -> String {
        format!("/api/v1/namespaces/{ns}/{}", self.plural)
    }

    /// Makes `ns` hold the object as it must be; a namespace that is gone or terminating is
    /// left alone.
    pub(crate) async fn ensure(&self, client: &Client, ns: &str) -> Result<(), ApiError> {
        match client.get(&format!("/api/v1/namespaces/{ns}")).await {
            Ok(obj) if is_terminating(&obj) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        }
        let path = format!("{}/{}", self.path(ns), self.name);
        match client.get(&path).await {
            Ok(current) => {
                if let Some(updated) = (self.repair)(&current) {
                    match client.put(&path, &updated).await {
                        Ok(_) => {
                            tracing::info!(controller = self.controller, object = %format!("{ns}/{}", self.name), "restored")
                        }
                        // Changed again meanwhile: the watch brings the next version.
                        Err(e) if e.is_conflict() || e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            Err(e) if e.is_not_found() => match client.post(&self.path(ns), &(self.desired)(ns)).await {
                Ok(_) => {
                    tracing::debug!(controller = self.controller, object = %format!("{ns}/{}", self.name), "created");
                    Ok(())
                }
                // Created meanwhile, or the namespace began terminating.
                Err(e) if e.is_already_exists() || e.is_forbidden() || e.is_not_found() => Ok(()),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn ensure_logged(&self, client: &Client, ns: &str) {
        if let Err(e) = self.ensure(client, ns).await {
            tracing::warn!(controller = self.controller, object = %format!("{ns}/{}", self.name), error = %e, "sync failed");
        }
    }

    async fn ensure_all(&self, client: &Client) {
        let Ok(list) = client.get("/api/v1/namespaces").await else { return };
        let names: BTreeSet<String> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| !is_terminating(n))
            .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string))
            .collect();
        for ns in names {
            self.ensure_logged(client, &ns).await;
        }
    }

    /// Runs until `shutdown` resolves.
    pub(crate) async fn run(&self, client: Client, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let kept_watch = format!("/api/v1/{}?watch=1&fieldSelector=metadata.name%3D{}", self.plural, self.name);
        loop {
            let watches = async {
                let namespaces = client.watch("/api/v1/namespaces?watch=1").await?;
                let kept = client.watch(&kept_watch).await?;
                Ok::<_, ApiError>((Box::pin(namespaces), Box::pin(kept)))
            };
            let (mut namespaces, mut kept) = match watches.await {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!(controller = self.controller, error = %e, "watch failed");
                    tokio::select! { _ = &mut shutdown => return, _ = tokio::time::sleep(RETRY) => continue }
                }
            };
            let mut resync = tokio::time::interval(RESYNC);
            resync.tick().await;
            loop {
                tokio::select! {
                    _ = &mut shutdown => return,
                    ev = namespaces.next() => match ev {
                        Some(ev) if ev["type"] == "ADDED" || ev["type"] == "MODIFIED" => {
                            if let Some(ns) = ev.pointer("/object/metadata/name").and_then(Value::as_str) {
                                if !is_terminating(&ev["object"]) {
                                    self.ensure_logged(&client, ns).await;
                                }
                            }
                        }
                        Some(_) => {}
                        None => break,
                    },
                    ev = kept.next() => match ev {
                        // The initial ADDED events need nothing: the namespace watch covers them.
                        Some(ev) if ev["type"] == "DELETED" || ev["type"] == "MODIFIED" => {
                            if let Some(ns) = ev.pointer("/object/metadata/namespace").and_then(Value::as_str) {
                                self.ensure_logged(&client, ns).await;
                            }
                        }
                        Some(_) => {}
                        None => break,
                    },
                    _ = resync.tick() => self.ensure_all(&client).await,
                }
            }
            // A watch ended: open both again (their initial events resync everything).
        }
    }
}
