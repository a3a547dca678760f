//! The ClusterRole aggregation controller: a ClusterRole with an `aggregationRule` gets
//! the rules of every other ClusterRole its selectors match, in name order, each rule once,
//! and keeps them current as those roles change (how `admin`, `edit` and `view` gain
//! permissions for custom resources).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Patch, PatchParams};
use kube::core::SelectorExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Api;
use serde_json::json;

use super::runtime::informer::Notice;
use super::runtime::{self, is_not_found, Context, ReconcileError};

/// The rules `role` aggregates from `all` (None: it aggregates nothing).
pub fn aggregated_rules(role: &ClusterRole, all: &[Arc<ClusterRole>]) -> Option<Vec<PolicyRule>> {
    let selectors = role.aggregation_rule.as_ref()?.cluster_role_selectors.clone().unwrap_or_default();
    let selectors: Vec<kube::core::Selector> =
        selectors.into_iter().filter_map(|s| kube::core::Selector::try_from(s).ok()).collect();
    let own = role.metadata.name.as_deref();
    let mut matched: Vec<&Arc<ClusterRole>> = all
        .iter()
        .filter(|r| r.metadata.name.as_deref() != own)
        .filter(|r| {
            let labels = r.metadata.labels.clone().unwrap_or_default();
            selectors.iter().any(|s| s.matches(&labels))
        })
        .collect();
    matched.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for r in matched {
        for rule in r.rules.iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

async fn reconcile(
    client: &kube::Client,
    store: &Store<ClusterRole>,
    role: Arc<ClusterRole>,
) -> Result<Action, ReconcileError> {
    let Some(rules) = aggregated_rules(&role, &store.state()) else { return Ok(Action::await_change()) };
    if role.rules.clone().unwrap_or_default() == rules {
        return Ok(Action::await_change());
    }
    let name = role.metadata.name.as_deref().unwrap_or("");
    let api: Api<ClusterRole> = Api::all(client.clone());
    let patch = json!({"rules": rules});
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(e.into()),
    }
}

pub async fn run(ctx: Context) {
    let roles = ctx.informers.get::<ClusterRole>();
    let store = roles.store().clone();
    // Any ClusterRole's change may change what an aggregating one gathers: each change
    // looks at every aggregating role, as upstream enqueues them all.
    let for_triggers = store.clone();
    let aggregating = move || -> Vec<ObjectRef<ClusterRole>> {
        for_triggers
            .state()
            .iter()
            .filter(|r| r.aggregation_rule.is_some())
            .map(|r| ObjectRef::from_obj(&**r))
            .collect()
    };
    let changes = roles.subscribe().flat_map(move |n: Notice<ClusterRole>| {
        let _ = n;
        futures::stream::iter(aggregating())
    });
    let triggers = futures::stream::select(runtime::own_triggers(&roles), changes);
    let client = ctx.client.clone();
    let for_reconcile = store.clone();
    runtime::run("clusterrole-aggregation", store, triggers, ctx.stop.clone(), move |role| {
        let (client, store) = (client.clone(), for_reconcile.clone());
        async move { reconcile(&client, &store, role).await }
    })
    .await
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::rbac::v1::AggregationRule;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use kube::api::ObjectMeta;

    use super::*;

    fn role(name: &str, labels: &[(&str, &str)], verbs: &[&str]) -> Arc<ClusterRole> {
        Arc::new(ClusterRole {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
                ..Default::default()
            },
            rules: Some(vec![PolicyRule {
                verbs: verbs.iter().map(|s| s.to_string()).collect(),
                api_groups: Some(vec!["".into()]),
                resources: Some(vec!["pods".into()]),
                ..Default::default()
            }]),
            aggregation_rule: None,
        })
    }

    #[test]
    fn gathers_matching_roles_in_name_order_each_rule_once() {
        let mut view = (*role("view", &[], &[])).clone();
        view.rules = None;
        view.aggregation_rule = Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some([("agg".to_string(), "true".to_string())].into()),
                match_expressions: None,
            }]),
        });
        let all = vec![
            role("z-late", &[("agg", "true")], &["list"]),
            role("a-early", &[("agg", "true")], &["get"]),
            role("dup", &[("agg", "true")], &["get"]),
            role("other", &[("agg", "false")], &["delete"]),
        ];
        let rules = aggregated_rules(&view, &all).unwrap();
        let verbs: Vec<&str> = rules.iter().map(|r| r.verbs[0].as_str()).collect();
        assert_eq!(verbs, vec!["get", "list"]);
        assert_eq!(aggregated_rules(&all[0], &all), None, "a role without an aggregation rule gathers nothing");
    }
}
