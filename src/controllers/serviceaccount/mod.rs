//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount,
//! created within a watch round trip of the namespace and recreated if deleted, as pods
//! default to it and admission refuses pods whose account is missing.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::ObjectMeta;

use super::namespaces::Kept;
use super::runtime::Context;

/// The account every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

pub async fn run(ctx: Context) {
    Kept {
        controller: "serviceaccount",
        name: DEFAULT_SERVICE_ACCOUNT,
        desired: Box::new(|ns| ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
                namespace: Some(ns.into()),
                ..Default::default()
            },
            ..Default::default()
        }),
        // Upstream only recreates the account; its content is the users' to change.
        repair: Box::new(|_| None),
    }
    .run(ctx)
    .await
}
