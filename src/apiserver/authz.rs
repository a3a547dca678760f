//! Authorization: whether an identity may do a verb on a resource or a non-resource path,
//! and which rules it holds (for SelfSubjectRulesReview and `kubectl auth can-i --list`).
//!
//! [`Authorizer`] is the seam the authorizers slot into: RBAC (`super::rbac`) decides the
//! API server's requests.

use serde_json::{json, Value};

use super::Identity;

/// What a request wants to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub namespace: String,
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attributes {
    Resource(ResourceAttributes),
    NonResource { verb: String, path: String },
}

impl Attributes {
    pub fn verb(&self) -> &str {
        match self {
            Attributes::Resource(r) => &r.verb,
            Attributes::NonResource { verb, .. } => verb,
        }
    }
}

/// The answer of an authorizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow {
        reason: String,
    },
    /// No rule allows it (upstream's "no opinion" of the last authorizer is a denial too).
    Deny {
        reason: String,
    },
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }
}

/// An RBAC-shaped rule on resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

/// An RBAC-shaped rule on non-resource URLs (`/healthz`, `/apis/*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NonResourceRule {
    pub verbs: Vec<String>,
    pub urls: Vec<String>,
}

/// Everything an identity may do in a namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    pub resource: Vec<ResourceRule>,
    pub non_resource: Vec<NonResourceRule>,
    /// Some rules could not be evaluated (or the authorizer cannot list them).
    pub incomplete: bool,
    pub evaluation_error: String,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

impl ResourceRule {
    pub fn new(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Self {
        ResourceRule {
            verbs: strings(verbs),
            api_groups: strings(groups),
            resources: strings(resources),
            resource_names: Vec::new(),
        }
    }

    /// Whether the rule covers the attributes, with RBAC's matching: `*` matches any verb,
    /// group or resource (subresources too); `*/scale` any resource's scale. As upstream,
    /// `pods/*` is no wildcard.
    pub fn matches(&self, a: &ResourceAttributes) -> bool {
        let any = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        if !any(&self.verbs, &a.verb) || !any(&self.api_groups, &a.group) {
            return false;
        }
        let resource_ok = if a.subresource.is_empty() {
            self.resources.iter().any(|r| r == "*" || *r == a.resource)
        } else {
            self.resources.iter().any(|r| {
                r == "*"
                    || r.strip_prefix("*/") == Some(a.subresource.as_str())
                    || r.split_once('/') == Some((a.resource.as_str(), a.subresource.as_str()))
            })
        };
        resource_ok && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"verbs": self.verbs, "apiGroups": self.api_groups, "resources": self.resources});
        if !self.resource_names.is_empty() {
            v["resourceNames"] = json!(self.resource_names);
        }
        v
    }
}

impl NonResourceRule {
    pub fn new(verbs: &[&str], urls: &[&str]) -> Self {
        NonResourceRule { verbs: strings(verbs), urls: strings(urls) }
    }

    /// RBAC's matching: an exact path, or a prefix ending in `*`.
    pub fn matches(&self, verb: &str, path: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
            && self.urls.iter().any(|u| match u.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => u == path,
            })
    }

    pub fn to_json(&self) -> Value {
        json!({"verbs": self.verbs, "nonResourceURLs": self.urls})
    }
}

impl Rules {
    pub fn allows(&self, a: &Attributes) -> bool {
        match a {
            Attributes::Resource(r) => self.resource.iter().any(|rule| rule.matches(r)),
            Attributes::NonResource { verb, path } => self.non_resource.iter().any(|rule| rule.matches(verb, path)),
        }
    }
}

/// Decides requests. Async so that an implementation may read its policy (Roles and
/// bindings) through the store.
#[async_trait::async_trait]
pub trait Authorizer: Send + Sync {
    async fn authorize(&self, user: &Identity, attrs: &Attributes) -> Decision;
    /// The rules `user` holds in `namespace` (cluster-wide ones included).
    async fn rules_for(&self, user: &Identity, namespace: &str) -> Rules;
}

/// The identities allowed everything in front of RBAC: cluster admins (`system:masters`,
/// as upstream) and, for now, the k3rs components that do more than their upstream
/// counterpart's role allows (the controller manager's client also serves the in-process
/// proxy, DNS and ingress; the kubelet awaits the Node authorizer). The scheduler holds
/// only upstream's `system:kube-scheduler` and `system:volume-scheduler`.
pub fn is_privileged(id: &Identity) -> bool {
    id.groups.iter().any(|g| g == "system:masters" || g == "system:nodes")
        || matches!(id.user.as_str(), "system:kube-controller-manager" | "system:kube-proxy" | "system:kube-apiserver")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes::Resource(ResourceAttributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            ..Default::default()
        })
    }

    #[test]
    fn rbac_style_matching() {
        let rule = ResourceRule::new(&["get", "list"], &["", "apps"], &["pods", "deployments/scale", "*/status"]);
        let a = |verb: &str, group: &str, resource: &str, sub: &str| match res(verb, group, resource, sub, "") {
            Attributes::Resource(r) => rule.matches(&r),
            _ => unreachable!(),
        };
        assert!(a("get", "", "pods", ""));
        assert!(!a("delete", "", "pods", ""));
        assert!(!a("get", "batch", "jobs", ""));
        assert!(!a("get", "", "pods", "log"), "a resource does not cover its subresources");
        assert!(a("get", "apps", "deployments", "scale"));
        assert!(!a("get", "apps", "deployments", ""));
        assert!(a("list", "apps", "replicasets", "status"));
        let named = ResourceRule { resource_names: vec!["a".into()], ..ResourceRule::new(&["*"], &["*"], &["*"]) };
        let Attributes::Resource(ra) = res("get", "", "pods", "", "a") else { unreachable!() };
        let Attributes::Resource(rb) = res("get", "", "pods", "", "b") else { unreachable!() };
        assert!(named.matches(&ra) && !named.matches(&rb));
        let nr = NonResourceRule::new(&["get"], &["/apis/*", "/healthz"]);
        assert!(nr.matches("get", "/apis/apps/v1") && nr.matches("get", "/healthz"));
        assert!(
            !nr.matches("get", "/healthz/etcd") && !nr.matches("post", "/healthz") && !nr.matches("get", "/metrics")
        );
    }
}
