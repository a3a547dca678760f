//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount,
//! created within a watch round trip of the namespace and recreated if deleted, as pods
//! default to it and admission refuses pods whose account is missing.

use std::future::Future;

use serde_json::json;

use super::namespaces::Kept;
use crate::client::Client;

/// The account every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

fn kept() -> Kept {
    Kept {
        controller: "serviceaccount",
        plural: "serviceaccounts",
        name: DEFAULT_SERVICE_ACCOUNT,
        desired: Box::new(
            |ns| json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT_SERVICE_ACCOUNT, "namespace": ns}}),
        ),
        // Upstream only recreates the account; its content is the users' to change.
        repair: Box::new(|_| None),
    }
}

pub async fn run(client: Client, shutdown: impl Future<Output = ()>) {
    kept().run(client, shutdown).await
}
