//! Objects every cluster has from its first start: the namespaces `default`, `kube-system`,
//! `kube-public` and `kube-node-lease`.

use serde_json::json;

use super::registry::WriteOptions;
use super::status::ApiError;
use super::ApiServer;

pub const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

impl ApiServer {
    /// Creates whatever of the boot-time objects is missing; leaves existing ones alone.
    pub async fn bootstrap(&self) -> Result<(), ApiError> {
        let Some(ns) = self.resource_type("", "v1", "namespaces") else { return Ok(()) };
        for name in SYSTEM_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            match self.registry.create(&ns, None, obj, &WriteOptions::default()).await {
                Ok(_) => tracing::info!(namespace = name, "created namespace"),
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
