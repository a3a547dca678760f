//! Role-based access control as upstream's RBAC authorizer: Roles and ClusterRoles hold
//! rules, RoleBindings and ClusterRoleBindings give them to users, groups and service
//! accounts, and a request is allowed when any rule bound to its user covers it.
//!
//! In front of RBAC, as kube-apiserver has it, the `system:masters` group may do
//! everything. k3rs' own components (the kubelet, the controller manager, the scheduler,
//! the proxy) are still allowed everything here too, until each holds only the roles
//! upstream gives its counterpart (the Node authorizer for the kubelet).

pub mod bootstrap;
pub mod cache;
pub mod escalation;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use self::cache::PolicyCache;
use super::authz::{is_privileged, Attributes, Authorizer, Decision, NonResourceRule, ResourceRule, Rules};
use super::Identity;
use crate::store::Store;

/// How long a decision that would deny waits for the policy copy to catch up with writes
/// that finished before it.
const CATCH_UP: Duration = Duration::from_millis(500);

/// See the module documentation.
pub struct RbacAuthorizer {
    pub cache: Arc<PolicyCache>,
}

impl RbacAuthorizer {
    pub fn start(store: Arc<dyn Store>) -> Self {
        RbacAuthorizer { cache: PolicyCache::start(store) }
    }

    /// Decides from the policy copy as it is now.
    fn decide(&self, user: &Identity, attrs: &Attributes) -> Decision {
        let namespace = match attrs {
            Attributes::Resource(r) => r.namespace.as_str(),
            Attributes::NonResource { .. } => "",
        };
        let mut errors = Vec::new();
        let mut allowed_by = String::new();
        let policy = self.cache.policy();
        let allowed = policy.visit(user, namespace, &mut errors, |s| {
            if s.role.rules.allows(attrs) {
                allowed_by = format!(
                    "{} of {} {:?} to {}",
                    s.grant.binding, s.grant.role_ref.kind, s.grant.role_ref.name, s.grant.subject
                );
                true
            } else {
                false
            }
        });
        if allowed {
            Decision::Allow { reason: format!("RBAC: allowed by {allowed_by}") }
        } else {
            Decision::Deny { reason: rbac_errors(&errors) }
        }
    }
}

/// Upstream's reason for a denial: empty, or the resolution errors aggregated.
fn rbac_errors(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [one] => format!("RBAC: {one}"),
        many => format!("RBAC: [{}]", many.join(", ")),
    }
}

/// Whether an identity is in front of RBAC: cluster admins, and k3rs' components for now.
fn bypasses_rbac(user: &Identity) -> bool {
    is_privileged(user)
}

#[async_trait::async_trait]
impl Authorizer for RbacAuthorizer {
    async fn authorize(&self, user: &Identity, attrs: &Attributes) -> Decision {
        if bypasses_rbac(user) {
            return Decision::Allow { reason: String::new() };
        }
        match self.decide(user, attrs) {
            Decision::Deny { .. } => {
                // A binding written just before this request may not have reached the copy.
                self.cache.catch_up(CATCH_UP).await;
                self.decide(user, attrs)
            }
            allow => allow,
        }
    }

    async fn rules_for(&self, user: &Identity, namespace: &str) -> Rules {
        let mut rules = Rules::default();
        if bypasses_rbac(user) {
            rules.resource.push(ResourceRule::new(&["*"], &["*"], &["*"]));
            rules.non_resource.push(NonResourceRule::new(&["*"], &["*"]));
        }
        self.cache.catch_up(CATCH_UP).await;
        let mut errors = Vec::new();
        self.cache.policy().visit(user, namespace, &mut errors, |s| {
            rules.resource.extend(s.role.rules.resource.iter().cloned());
            rules.non_resource.extend(s.role.rules.non_resource.iter().cloned());
            false
        });
        if !errors.is_empty() {
            rules.incomplete = true;
            rules.evaluation_error = errors.join(", ");
        }
        rules
    }
}
