//! Escalation prevention, as upstream's RBAC storage has it: a user may write a Role or
//! ClusterRole only with rules they hold themselves (or with the `escalate` verb on it),
//! and bind a role only when they hold its rules (or have the `bind` verb on it).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};
use serde_json::Value;

use super::cache::PolicyCache;
use super::rules::{compact, uncovered};
use crate::apiserver::authz::{is_privileged, Attributes, Authorizer, ResourceAttributes};
use crate::apiserver::registry::{Admit, ResourceType, WriteAttributes};
use crate::apiserver::status::ApiError;
use crate::apiserver::Identity;

const GROUP: &str = "rbac.authorization.k8s.io";

/// The check for one user's writes.
pub struct Escalation {
    pub authorizer: Arc<dyn Authorizer>,
    pub cache: Arc<PolicyCache>,
    pub user: Identity,
}

/// Rules that differ only in verbs merged into one, as upstream's `CompactRules`, so that
/// the error lists `Verbs:["create" "delete"]` once per resource.
fn compact_rules(pieces: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for p in pieces {
        let same = out.iter_mut().find(|o| {
            o.api_groups == p.api_groups
                && o.resources == p.resources
                && o.resource_names == p.resource_names
                && o.non_resource_urls == p.non_resource_urls
        });
        match same {
            Some(o) => {
                for v in p.verbs {
                    if !o.verbs.contains(&v) {
                        o.verbs.push(v);
                    }
                }
            }
            None => out.push(p),
        }
    }
    out
}

/// The error upstream gives when `user` lacks some of `wanted`.
pub fn not_held(user: &Identity, missing: Vec<PolicyRule>, resolution_errors: &[String]) -> String {
    let mut lines: Vec<String> = compact_rules(missing).iter().map(compact).collect();
    lines.sort();
    lines.dedup();
    let groups = user.groups.iter().map(|g| format!("{g:?}")).collect::<Vec<_>>().join(" ");
    let mut msg = format!(
        "user {:?} (groups=[{groups}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.user,
        lines.join("\n")
    );
    if !resolution_errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", resolution_errors.join(" ")));
    }
    msg
}

fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    obj.get("rules").cloned().and_then(|r| serde_json::from_value(r).ok()).unwrap_or_default()
}

impl Escalation {
    /// Whether the authorizer gives the user `verb` on the role named by `role_ref`.
    async fn may(&self, verb: &str, kind: &str, name: &str, namespace: &str) -> bool {
        let resource = if kind == "ClusterRole" { "clusterroles" } else { "roles" };
        let attrs = Attributes::Resource(ResourceAttributes {
            namespace: namespace.to_string(),
            verb: verb.into(),
            group: GROUP.into(),
            version: String::new(),
            resource: resource.into(),
            subresource: String::new(),
            name: name.into(),
        });
        self.authorizer.authorize(&self.user, &attrs).await.allowed()
    }

    /// Fails unless the user holds every rule of `wanted` in `namespace`.
    async fn confirm_held(
        &self,
        rt: &ResourceType,
        name: &str,
        namespace: &str,
        wanted: &[PolicyRule],
    ) -> Result<(), ApiError> {
        self.cache.catch_up(Duration::from_millis(500)).await;
        let mut errors = Vec::new();
        let mut owned = Vec::new();
        self.cache.policy().visit(&self.user, namespace, &mut errors, |s| {
            owned.extend(s.role.policy.iter().cloned());
            false
        });
        let missing = uncovered(&owned, wanted);
        if missing.is_empty() {
            return Ok(());
        }
        Err(ApiError::forbidden_because(rt.group, rt.plural, name, &not_held(&self.user, missing, &errors)))
    }
}

#[async_trait::async_trait]
impl Admit for Escalation {
    async fn admit(&self, a: &WriteAttributes<'_>) -> Result<(), ApiError> {
        let (rt, new, old) = (a.rt, a.new, a.old);
        if rt.group != GROUP || is_privileged(&self.user) {
            return Ok(());
        }
        let name = new.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        let namespace = new.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
        // Writes that only change what the garbage collector needs pass, as upstream.
        if let Some(old) = old {
            let strip = |v: &Value| {
                let mut v = v.clone();
                if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                    for f in ["ownerReferences", "finalizers", "resourceVersion", "managedFields"] {
                        m.remove(f);
                    }
                }
                v
            };
            if strip(new) == strip(old) {
                return Ok(());
            }
        }
        match rt.plural {
            "roles" | "clusterroles" => {
                let kind = if rt.plural == "roles" { "Role" } else { "ClusterRole" };
                if self.may("escalate", kind, name, namespace).await {
                    return Ok(());
                }
                self.confirm_held(rt, name, namespace, &rules_of(new)).await
            }
            "rolebindings" | "clusterrolebindings" => {
                let Some(role_ref) =
                    new.get("roleRef").cloned().and_then(|r| serde_json::from_value::<RoleRef>(r).ok())
                else {
                    return Ok(());
                };
                if self.may("bind", &role_ref.kind, &role_ref.name, namespace).await {
                    return Ok(());
                }
                self.cache.catch_up(Duration::from_millis(500)).await;
                let Some(role) = self.cache.policy().role(&role_ref, namespace) else {
                    let what = format!("{}.{GROUP} {:?} not found", role_ref.kind.to_lowercase(), role_ref.name);
                    return Err(ApiError::forbidden_because(rt.group, rt.plural, name, &what));
                };
                self.confirm_held(rt, name, namespace, &role.policy).await
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::rbac::rules::policy_rule;

    #[test]
    fn the_message_lists_missing_rules_compacted_and_sorted() {
        let user = Identity::new("alice", &["system:authenticated", "devs"]);
        let missing = vec![
            policy_rule(&["delete"], &[""], &["pods"], &[], &[]),
            policy_rule(&["create"], &["apps"], &["deployments"], &[], &[]),
            policy_rule(&["create"], &[""], &["pods"], &[], &[]),
        ];
        assert_eq!(
            not_held(&user, missing, &[]),
            "user \"alice\" (groups=[\"system:authenticated\" \"devs\"]) is attempting to grant RBAC permissions not currently held:\n\
             {APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\" \"create\"]}\n\
             {APIGroups:[\"apps\"], Resources:[\"deployments\"], Verbs:[\"create\"]}"
        );
    }
}
