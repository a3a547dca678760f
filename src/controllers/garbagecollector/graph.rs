//! The ownership graph (upstream's `GraphBuilder`): every object of every watched type as a
//! node, with its owner references and the deletion states the collector acts on, and the
//! reverse index from an owner's UID to its dependents. Owners that were never observed
//! (absent, or of a type not watched) are only keys of that index. Feeding the graph a change
//! says what work it makes: dependents to check when an owner goes, owners to orphan or to
//! finish deleting in the foreground.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The finalizer of a foreground deletion: the owner waits for its blocking dependents.
pub const FOREGROUND: &str = "foregroundDeletion";
/// The finalizer of an orphaning deletion: the owner waits for its dependents to be freed.
pub const ORPHAN: &str = "orphan";

/// A served type the collector watches or resolves owners to.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Kind {
    pub resource: kube::api::ApiResource,
    pub namespaced: bool,
}

/// What the graph keeps of an object: its identity, its owners and its deletion state.
#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Arc<Kind>,
    pub namespace: Option<String>,
    pub name: String,
    pub owners: Vec<OwnerReference>,
    /// It has a deletionTimestamp.
    pub deleting: bool,
    /// Being deleted with the foreground finalizer: waits for its blocking dependents.
    pub deleting_dependents: bool,
    /// Being deleted with the orphan finalizer: waits for its dependents to be freed.
    pub orphaning: bool,
}

impl Node {
    pub fn new(kind: Arc<Kind>, meta: &ObjectMeta) -> Self {
        let deleting = meta.deletion_timestamp.is_some();
        let has = |f: &str| meta.finalizers.iter().flatten().any(|x| x == f);
        Node {
            kind,
            namespace: meta.namespace.clone().filter(|n| !n.is_empty()),
            name: meta.name.clone().unwrap_or_default(),
            owners: meta.owner_references.clone().unwrap_or_default(),
            deleting,
            deleting_dependents: deleting && has(FOREGROUND),
            orphaning: deleting && has(ORPHAN),
        }
    }

    /// Its reference to `owner`, if it has one.
    pub fn owner_ref(&self, owner: &str) -> Option<&OwnerReference> {
        self.owners.iter().find(|r| r.uid == owner)
    }
}

/// Work the graph asks of the collector, by object UID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Work {
    /// Check the object's owners: delete it if all are gone, drop references to the gone
    /// ones, or (an owner deleting in the foreground) finish that deletion.
    AttemptToDelete(String),
    /// Free the dependents of an owner being deleted with the orphan finalizer.
    AttemptToOrphan(String),
}

/// The graph.
#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// Owner UID → the UIDs of the observed objects that reference it.
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The UIDs of the objects that reference `owner`.
    pub fn dependents(&self, owner: &str) -> Vec<String> {
        let mut out: Vec<String> = self.dependents.get(owner).into_iter().flatten().cloned().collect();
        out.sort();
        out
    }

    /// The dependents whose reference to `owner` blocks its foreground deletion.
    pub fn blocking_dependents(&self, owner: &str) -> Vec<String> {
        self.dependents(owner)
            .into_iter()
            .filter(|d| {
                self.nodes.get(d).and_then(|n| n.owner_ref(owner)).is_some_and(|r| r.block_owner_deletion == Some(true))
            })
            .collect()
    }

    /// An object was added or changed.
    pub fn observe(&mut self, uid: &str, node: Node) -> Vec<Work> {
        let mut work = Vec::new();
        let old = self.nodes.remove(uid);
        let old_owners = old.as_ref().map(|o| o.owners.clone()).unwrap_or_default();
        for r in &old_owners {
            let kept = node.owner_ref(&r.uid);
            if kept.is_none() {
                self.unlink(&r.uid, uid);
            }
            // An owner deleting in the foreground may be waiting on this reference alone.
            let unblocked =
                r.block_owner_deletion == Some(true) && kept.is_none_or(|k| k.block_owner_deletion != Some(true));
            if unblocked && self.nodes.get(&r.uid).is_some_and(|o| o.deleting_dependents) {
                work.push(Work::AttemptToDelete(r.uid.clone()));
            }
        }
        let mut check_self = false;
        for r in &node.owners {
            self.dependents.entry(r.uid.clone()).or_default().insert(uid.to_string());
            match self.nodes.get(&r.uid) {
                // Never seen: maybe gone, maybe not watched, maybe not listed yet.
                None => check_self = true,
                Some(o) if o.deleting_dependents => check_self = true,
                Some(_) => {}
            }
        }
        let was_deleting_dependents = old.as_ref().is_some_and(|o| o.deleting_dependents);
        let was_orphaning = old.as_ref().is_some_and(|o| o.orphaning);
        if node.orphaning && !was_orphaning {
            work.push(Work::AttemptToOrphan(uid.to_string()));
        }
        if node.deleting_dependents && !was_deleting_dependents {
            work.extend(self.dependents(uid).into_iter().map(Work::AttemptToDelete));
            check_self = true;
        }
        if check_self {
            work.push(Work::AttemptToDelete(uid.to_string()));
        }
        self.nodes.insert(uid.to_string(), node);
        work
    }

    /// An object was deleted: its dependents are checked, and its owners that wait in the
    /// foreground may now be free.
    pub fn forget(&mut self, uid: &str) -> Vec<Work> {
        let Some(node) = self.nodes.remove(uid) else { return Vec::new() };
        let mut work = Vec::new();
        for r in &node.owners {
            self.unlink(&r.uid, uid);
            if self.nodes.get(&r.uid).is_some_and(|o| o.deleting_dependents) {
                work.push(Work::AttemptToDelete(r.uid.clone()));
            }
        }
        work.extend(self.dependents(uid).into_iter().map(Work::AttemptToDelete));
        work
    }

    /// A fresh list of `kind` saw only `present`: the others of that kind are gone.
    pub fn resync(&mut self, kind: &Kind, present: &HashSet<String>) -> Vec<Work> {
        let gone: Vec<String> = self
            .nodes
            .iter()
            .filter(|(uid, n)| *n.kind == *kind && !present.contains(*uid))
            .map(|(uid, _)| uid.clone())
            .collect();
        gone.iter().flat_map(|uid| self.forget(uid)).collect()
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::api::ApiResource;

    use super::*;

    fn kind(kind: &str) -> Arc<Kind> {
        let resource = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: kind.into(),
            plural: format!("{}s", kind.to_lowercase()),
        };
        Arc::new(Kind { resource, namespaced: true })
    }

    fn owner(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "v1".into(),
            kind: "Secret".into(),
            name: format!("n-{uid}"),
            uid: uid.into(),
            controller: None,
            block_owner_deletion: Some(block),
        }
    }

    fn node(owners: Vec<OwnerReference>, finalizers: &[&str], deleting: bool) -> Node {
        let meta = ObjectMeta {
            name: Some("x".into()),
            namespace: Some("ns".into()),
            owner_references: Some(owners),
            finalizers: Some(finalizers.iter().map(|f| f.to_string()).collect()),
            deletion_timestamp: deleting.then_some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            )),
            ..Default::default()
        };
        Node::new(kind("ConfigMap"), &meta)
    }

    fn del(uid: &str) -> Work {
        Work::AttemptToDelete(uid.into())
    }

    #[test]
    fn changes_make_the_work_upstream_does() {
        struct Case {
            name: &'static str,
            before: Vec<(&'static str, Node)>,
            change: (&'static str, Option<Node>),
            work: Vec<Work>,
        }
        let cases = [
            Case {
                name: "a dependent of an owner never seen is checked",
                before: vec![],
                change: ("d", Some(node(vec![owner("o", false)], &[], false))),
                work: vec![del("d")],
            },
            Case {
                name: "a dependent of an observed owner is left alone",
                before: vec![("o", node(vec![], &[], false))],
                change: ("d", Some(node(vec![owner("o", false)], &[], false))),
                work: vec![],
            },
            Case {
                name: "an owner's deletion checks its dependents",
                before: vec![("o", node(vec![], &[], false)), ("d", node(vec![owner("o", false)], &[], false))],
                change: ("o", None),
                work: vec![del("d")],
            },
            Case {
                name: "foreground deletion starts: every dependent and the owner are checked",
                before: vec![
                    ("o", node(vec![], &[], false)),
                    ("a", node(vec![owner("o", true)], &[], false)),
                    ("b", node(vec![owner("o", false)], &[], false)),
                ],
                change: ("o", Some(node(vec![], &[FOREGROUND], true))),
                work: vec![del("a"), del("b"), del("o")],
            },
            Case {
                name: "orphaning starts",
                before: vec![("o", node(vec![], &[], false))],
                change: ("o", Some(node(vec![], &[ORPHAN], true))),
                work: vec![Work::AttemptToOrphan("o".into())],
            },
            Case {
                name: "a finalizer without a deletionTimestamp is no deletion",
                before: vec![("o", node(vec![], &[], false))],
                change: ("o", Some(node(vec![], &[ORPHAN, FOREGROUND], false))),
                work: vec![],
            },
            Case {
                name: "a blocking dependent's deletion frees its foreground owner",
                before: vec![("o", node(vec![], &[FOREGROUND], true)), ("a", node(vec![owner("o", true)], &[], false))],
                change: ("a", None),
                work: vec![del("o")],
            },
            Case {
                name: "a blocking reference turned non-blocking frees its foreground owner",
                before: vec![("o", node(vec![], &[FOREGROUND], true)), ("a", node(vec![owner("o", true)], &[], false))],
                change: ("a", Some(node(vec![owner("o", false)], &[], false))),
                work: vec![del("o"), del("a")],
            },
            Case {
                name: "a reference dropped from a waiting owner frees it",
                before: vec![
                    ("o", node(vec![], &[FOREGROUND], true)),
                    ("p", node(vec![], &[], false)),
                    ("a", node(vec![owner("o", true), owner("p", false)], &[], false)),
                ],
                change: ("a", Some(node(vec![owner("p", false)], &[], false))),
                work: vec![del("o")],
            },
        ];
        for c in cases {
            let mut g = Graph::default();
            for (uid, n) in c.before {
                g.observe(uid, n);
            }
            let mut work = match c.change {
                (uid, Some(n)) => g.observe(uid, n),
                (uid, None) => g.forget(uid),
            };
            work.sort();
            let mut want = c.work;
            want.sort();
            assert_eq!(work, want, "{}", c.name);
        }
    }

    #[test]
    fn the_reverse_index_follows_owner_references() {
        let mut g = Graph::default();
        g.observe("a", node(vec![owner("o", true), owner("p", false)], &[], false));
        g.observe("b", node(vec![owner("o", false)], &[], false));
        assert_eq!(g.dependents("o"), ["a", "b"]);
        assert_eq!(g.blocking_dependents("o"), ["a"]);
        g.observe("a", node(vec![owner("p", false)], &[], false));
        assert_eq!(g.dependents("o"), ["b"]);
        assert!(g.blocking_dependents("o").is_empty());
        g.forget("b");
        assert!(g.dependents("o").is_empty());
        assert_eq!(g.dependents("p"), ["a"]);
    }

    #[test]
    fn a_relist_forgets_what_it_no_longer_holds() {
        let mut g = Graph::default();
        let cm = kind("ConfigMap");
        g.observe("o", node(vec![], &[], false));
        g.observe("d", node(vec![owner("o", false)], &[], false));
        let mut secret = node(vec![], &[], false);
        secret.kind = kind("Secret");
        g.observe("s", secret);
        let work = g.resync(&cm, &HashSet::from(["d".to_string()]));
        assert_eq!(work, [del("d")]);
        assert!(g.get("o").is_none());
        assert!(g.get("s").is_some(), "another kind's objects stay");
        assert_eq!(g.len(), 2);
    }
}
