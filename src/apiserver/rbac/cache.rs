//! The RBAC authorizer's copy of Roles, ClusterRoles and their bindings, fed by watches on
//! the store as upstream's authorizer is fed by informers, and indexed by subject so that
//! a decision costs a few map lookups however many bindings there are.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::rules::to_rules;
use crate::apiserver::authz::Rules;
use crate::apiserver::Identity;
use crate::store::{EventKind, KeyRange, RangeOptions, Revision, Store, WatchItem};

/// A role's rules, as stored and as evaluated.
#[derive(Debug)]
pub struct CachedRole {
    pub policy: Vec<PolicyRule>,
    pub rules: Rules,
}

/// What a subject is matched by.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
enum SubjectKey {
    User(String),
    Group(String),
}

/// One subject of one binding, with what the authorizer needs to explain a decision.
#[derive(Debug)]
pub struct Grant {
    /// `ClusterRoleBinding "name"` or `RoleBinding "name/namespace"`.
    pub binding: String,
    pub role_ref: RoleRef,
    /// Empty for a ClusterRoleBinding.
    pub namespace: String,
    /// `User "alice"`, `Group "g"`, `ServiceAccount "sa/ns"`.
    pub subject: String,
}

type Index = HashMap<SubjectKey, Vec<Arc<Grant>>>;

/// One consistent view of the policy.
#[derive(Default)]
pub struct Policy {
    cluster_roles: Arc<HashMap<String, Arc<CachedRole>>>,
    roles: Arc<HashMap<(String, String), Arc<CachedRole>>>,
    cluster_bindings: Arc<Index>,
    role_bindings: Arc<HashMap<String, Index>>,
}

/// Where a role's rules came from, passed to [`Policy::visit`]'s callback.
pub struct Source<'a> {
    pub grant: &'a Grant,
    pub role: &'a CachedRole,
}

impl Policy {
    /// Calls `f` with every role bound to `user` cluster-wide and, when `namespace` is not
    /// empty, in that namespace, until `f` returns true; roles that are referenced but do
    /// not exist are reported in `errors` as upstream words them.
    pub fn visit(
        &self,
        user: &Identity,
        namespace: &str,
        errors: &mut Vec<String>,
        mut f: impl FnMut(Source<'_>) -> bool,
    ) -> bool {
        let keys: Vec<SubjectKey> = std::iter::once(SubjectKey::User(user.user.clone()))
            .chain(user.groups.iter().map(|g| SubjectKey::Group(g.clone())))
            .collect();
        let mut walk = |index: &Index, namespace: &str| {
            for key in &keys {
                for grant in index.get(key).into_iter().flatten() {
                    match self.role(&grant.role_ref, namespace) {
                        Some(role) => {
                            if f(Source { grant, role: &role }) {
                                return true;
                            }
                        }
                        None => errors.push(format!(
                            "{}.rbac.authorization.k8s.io {:?} not found",
                            grant.role_ref.kind.to_lowercase(),
                            grant.role_ref.name
                        )),
                    }
                }
            }
            false
        };
        if walk(&self.cluster_bindings, "") {
            return true;
        }
        if !namespace.is_empty() {
            if let Some(index) = self.role_bindings.get(namespace) {
                return walk(index, namespace);
            }
        }
        false
    }

    /// The role a binding refers to.
    pub fn role(&self, role_ref: &RoleRef, namespace: &str) -> Option<Arc<CachedRole>> {
        match role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&role_ref.name).cloned(),
            "Role" => self.roles.get(&(namespace.to_string(), role_ref.name.clone())).cloned(),
            _ => None,
        }
    }
}

/// The objects as stored, per kind, by key.
#[derive(Default)]
struct Objects {
    cluster_roles: BTreeMap<String, ClusterRole>,
    roles: BTreeMap<String, Role>,
    cluster_bindings: BTreeMap<String, ClusterRoleBinding>,
    role_bindings: BTreeMap<String, RoleBinding>,
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    ClusterRoles,
    Roles,
    ClusterBindings,
    RoleBindings,
}

const KINDS: [(Kind, &str); 4] = [
    (Kind::ClusterRoles, "/registry/clusterroles/"),
    (Kind::Roles, "/registry/roles/"),
    (Kind::ClusterBindings, "/registry/clusterrolebindings/"),
    (Kind::RoleBindings, "/registry/rolebindings/"),
];

fn role_of(policy: Option<&Vec<PolicyRule>>) -> Arc<CachedRole> {
    let policy = policy.cloned().unwrap_or_default();
    Arc::new(CachedRole { rules: to_rules(&policy), policy })
}

/// A ServiceAccount subject's namespace: its own, or the binding's when it names none.
fn account_namespace<'a>(s: &'a Subject, binding_namespace: &'a str) -> &'a str {
    s.namespace.as_deref().filter(|n| !n.is_empty()).unwrap_or(binding_namespace)
}

fn describe(s: &Subject, binding_namespace: &str) -> String {
    if s.kind == "ServiceAccount" {
        let ns = account_namespace(s, binding_namespace);
        format!("{} {:?}", s.kind, format!("{}/{ns}", s.name))
    } else {
        format!("{} {:?}", s.kind, s.name)
    }
}

/// The key a subject is matched by; a service account is the user it authenticates as.
fn subject_key(s: &Subject, binding_namespace: &str) -> Option<SubjectKey> {
    match s.kind.as_str() {
        "User" => Some(SubjectKey::User(s.name.clone())),
        "Group" => Some(SubjectKey::Group(s.name.clone())),
        "ServiceAccount" => {
            let ns = account_namespace(s, binding_namespace);
            (!ns.is_empty()).then(|| SubjectKey::User(format!("system:serviceaccount:{ns}:{}", s.name)))
        }
        _ => None,
    }
}

fn index_binding(index: &mut Index, binding: String, namespace: &str, role_ref: &RoleRef, subjects: &[Subject]) {
    for s in subjects {
        let Some(key) = subject_key(s, namespace) else { continue };
        index.entry(key).or_default().push(Arc::new(Grant {
            binding: binding.clone(),
            role_ref: role_ref.clone(),
            namespace: namespace.to_string(),
            subject: describe(s, namespace),
        }));
    }
}

impl Objects {
    /// Rebuilds the part of `policy` that `kind` feeds.
    fn rebuild(&self, kind: Kind, policy: &mut Policy) {
        match kind {
            Kind::ClusterRoles => {
                policy.cluster_roles = Arc::new(
                    self.cluster_roles
                        .values()
                        .map(|r| (r.metadata.name.clone().unwrap_or_default(), role_of(r.rules.as_ref())))
                        .collect(),
                )
            }
            Kind::Roles => {
                policy.roles = Arc::new(
                    self.roles
                        .values()
                        .map(|r| {
                            let key = (
                                r.metadata.namespace.clone().unwrap_or_default(),
                                r.metadata.name.clone().unwrap_or_default(),
                            );
                            (key, role_of(r.rules.as_ref()))
                        })
                        .collect(),
                )
            }
            Kind::ClusterBindings => {
                let mut index = Index::new();
                for b in self.cluster_bindings.values() {
                    let name = b.metadata.name.clone().unwrap_or_default();
                    let subjects = b.subjects.as_deref().unwrap_or(&[]);
                    index_binding(&mut index, format!("ClusterRoleBinding {name:?}"), "", &b.role_ref, subjects);
                }
                policy.cluster_bindings = Arc::new(index);
            }
            Kind::RoleBindings => {
                let mut by_ns: HashMap<String, Index> = HashMap::new();
                for b in self.role_bindings.values() {
                    let ns = b.metadata.namespace.clone().unwrap_or_default();
                    let name = b.metadata.name.clone().unwrap_or_default();
                    let subjects = b.subjects.as_deref().unwrap_or(&[]);
                    let index = by_ns.entry(ns.clone()).or_default();
                    index_binding(
                        index,
                        format!("RoleBinding {:?}", format!("{name}/{ns}")),
                        &ns,
                        &b.role_ref,
                        subjects,
                    );
                }
                policy.role_bindings = Arc::new(by_ns);
            }
        }
    }

    fn apply(&mut self, kind: Kind, key: String, value: Option<&[u8]>) {
        fn put<T: DeserializeOwned>(map: &mut BTreeMap<String, T>, key: String, value: Option<&[u8]>) {
            match value.map(serde_json::from_slice::<T>) {
                Some(Ok(obj)) => {
                    map.insert(key, obj);
                }
                Some(Err(e)) => {
                    tracing::warn!(key, error = %e, "RBAC: an object the authorizer cannot read is ignored");
                    map.remove(&key);
                }
                None => {
                    map.remove(&key);
                }
            }
        }
        match kind {
            Kind::ClusterRoles => put(&mut self.cluster_roles, key, value),
            Kind::Roles => put(&mut self.roles, key, value),
            Kind::ClusterBindings => put(&mut self.cluster_bindings, key, value),
            Kind::RoleBindings => put(&mut self.role_bindings, key, value),
        }
    }

    fn clear(&mut self, kind: Kind) {
        match kind {
            Kind::ClusterRoles => self.cluster_roles.clear(),
            Kind::Roles => self.roles.clear(),
            Kind::ClusterBindings => self.cluster_bindings.clear(),
            Kind::RoleBindings => self.role_bindings.clear(),
        }
    }
}

/// Asks a watch for a progress notification.
type Progress = Arc<dyn Fn() + Send + Sync>;

/// See the module documentation.
pub struct PolicyCache {
    store: Arc<dyn Store>,
    objects: Mutex<Objects>,
    current: RwLock<Arc<Policy>>,
    /// Per kind: the revision its copy is current to.
    revisions: Vec<watch::Sender<Revision>>,
    /// Per kind: asks its watch for a progress notification.
    progress: Mutex<Vec<Option<Progress>>>,
}

impl PolicyCache {
    /// Starts following the store. Decisions made before the first lists finish see an
    /// empty policy (and wait for the lists when they would deny).
    pub fn start(store: Arc<dyn Store>) -> Arc<Self> {
        let cache = Arc::new(PolicyCache {
            store,
            objects: Mutex::new(Objects::default()),
            current: RwLock::new(Arc::new(Policy::default())),
            revisions: KINDS.iter().map(|_| watch::channel(Revision(0)).0).collect(),
            progress: Mutex::new(KINDS.iter().map(|_| None).collect()),
        });
        for (i, (kind, prefix)) in KINDS.iter().enumerate() {
            tokio::spawn(follow(Arc::downgrade(&cache), i, *kind, prefix));
        }
        cache
    }

    /// The policy as last seen.
    pub fn policy(&self) -> Arc<Policy> {
        self.current.read().map(|p| p.clone()).unwrap_or_default()
    }

    /// Waits (up to `limit`) until every kind's copy has seen the store's current revision,
    /// so that a decision reflects every RBAC write that finished before it was asked.
    pub async fn catch_up(&self, limit: Duration) {
        let Ok(target) = self.store.current_revision().await else { return };
        if self.revisions.iter().all(|r| *r.borrow() >= target) {
            return;
        }
        if let Ok(progress) = self.progress.lock() {
            for p in progress.iter().flatten() {
                p();
            }
        }
        let waits = self.revisions.iter().map(|r| {
            let mut rx = r.subscribe();
            async move {
                let _ = rx.wait_for(|rev| *rev >= target).await;
            }
        });
        let _ = tokio::time::timeout(limit, futures::future::join_all(waits)).await;
    }

    fn publish(&self, i: usize, kind: Kind, revision: Revision, changed: bool) {
        if changed {
            if let (Ok(objects), Ok(mut current)) = (self.objects.lock(), self.current.write()) {
                let mut next = Policy {
                    cluster_roles: current.cluster_roles.clone(),
                    roles: current.roles.clone(),
                    cluster_bindings: current.cluster_bindings.clone(),
                    role_bindings: current.role_bindings.clone(),
                };
                objects.rebuild(kind, &mut next);
                *current = Arc::new(next);
            }
        }
        self.revisions[i].send_if_modified(|cur| {
            let newer = revision > *cur;
            if newer {
                *cur = revision;
            }
            newer
        });
    }
}

fn key_string(key: &[u8]) -> String {
    String::from_utf8_lossy(key).into_owned()
}

/// Lists a kind, then applies its watch, listing again whenever the watch ends.
async fn follow(cache: std::sync::Weak<PolicyCache>, i: usize, kind: Kind, prefix: &'static str) {
    loop {
        let Some(c) = cache.upgrade() else { return };
        let range = KeyRange::prefix(prefix.as_bytes().to_vec());
        let listed = match c.store.range(&range, RangeOptions::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(prefix, error = %e, "RBAC: listing failed; retrying");
                drop(c);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Ok(mut objects) = c.objects.lock() {
            objects.clear(kind);
            for kv in &listed.kvs {
                objects.apply(kind, key_string(&kv.key), Some(&kv.value));
            }
        }
        c.publish(i, kind, listed.revision, true);
        let mut w = match c.store.watch(range, Some(listed.revision.next())).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(prefix, error = %e, "RBAC: watching failed; listing again");
                drop(c);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Ok(mut p) = c.progress.lock() {
            p[i] = Some(w.progress_handle());
        }
        drop(c);
        while let Some(item) = w.stream.next().await {
            let Some(c) = cache.upgrade() else { return };
            match item {
                Ok(WatchItem::Events(events)) => {
                    let mut last = Revision(0);
                    if let Ok(mut objects) = c.objects.lock() {
                        for ev in &events {
                            last = ev.kv.mod_revision;
                            let value = matches!(ev.kind, EventKind::Put).then_some(&ev.kv.value[..]);
                            objects.apply(kind, key_string(&ev.kv.key), value);
                        }
                    }
                    c.publish(i, kind, last, true);
                }
                Ok(WatchItem::Progress(r)) => c.publish(i, kind, r, false),
                Err(e) => {
                    tracing::warn!(prefix, error = %e, "RBAC: the watch ended; listing again");
                    break;
                }
            }
        }
        if let Some(c) = cache.upgrade() {
            if let Ok(mut p) = c.progress.lock() {
                p[i] = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
        Subject { kind: kind.into(), name: name.into(), namespace: namespace.map(str::to_string), api_group: None }
    }

    #[test]
    fn service_accounts_match_as_their_user_and_default_to_the_binding_namespace() {
        assert_eq!(
            subject_key(&subject("ServiceAccount", "default", None), "team"),
            Some(SubjectKey::User("system:serviceaccount:team:default".into()))
        );
        assert_eq!(
            subject_key(&subject("ServiceAccount", "sa", Some("other")), "team"),
            Some(SubjectKey::User("system:serviceaccount:other:sa".into()))
        );
        assert_eq!(
            subject_key(&subject("ServiceAccount", "sa", None), ""),
            None,
            "a cluster binding needs a namespace"
        );
        assert_eq!(describe(&subject("ServiceAccount", "sa", None), "team"), "ServiceAccount \"sa/team\"");
        assert_eq!(describe(&subject("Group", "g", None), ""), "Group \"g\"");
    }
}
