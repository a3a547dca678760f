//! What the collector does with one object once each of its owners has been looked up live
//! (upstream's `attemptToDeleteItem` after `classifyReferences`): keep it, drop its
//! references to owners that are gone, or delete it, and with which propagation.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::graph::{FOREGROUND, ORPHAN};

/// An owner as the live lookup found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// Exists with the referenced UID and is not deleting in the foreground.
    Solid,
    /// Not found, or found with another UID (a namesake), or unusable (a namespaced owner
    /// of a cluster-scoped object).
    Dangling,
    /// Exists and is being deleted in the foreground: it waits for its dependents.
    WaitingForDependents,
}

/// A deletion's propagation policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

/// The collector's decision about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Some owner remains and nothing is to change.
    Keep,
    /// Some owner remains: drop the references to these owners (by UID), the dangling ones
    /// and those waiting for their dependents, which must not wait for this one.
    RemoveOwners(Vec<String>),
    /// No owner remains. `unblock` (owner UIDs) are first made non-blocking, so that an
    /// owner and a dependent both waiting in the foreground cannot wait on each other.
    Delete { propagation: Propagation, unblock: Vec<String> },
}

/// What is known of the object being decided on.
#[derive(Debug, Default, Clone, Copy)]
pub struct Subject<'a> {
    pub finalizers: &'a [String],
    /// It has dependents in the graph.
    pub has_dependents: bool,
    /// One of those dependents is itself deleting in the foreground.
    pub dependent_deleting_dependents: bool,
}

/// Decides from the object's references and their owners' states (in the same order).
pub fn decide(subject: Subject<'_>, owners: &[(&OwnerReference, OwnerState)]) -> Decision {
    let with =
        |s: OwnerState| -> Vec<&OwnerReference> { owners.iter().filter(|(_, st)| *st == s).map(|(r, _)| *r).collect() };
    let solid = with(OwnerState::Solid);
    let dangling = with(OwnerState::Dangling);
    let waiting = with(OwnerState::WaitingForDependents);
    if !solid.is_empty() {
        if dangling.is_empty() && waiting.is_empty() {
            return Decision::Keep;
        }
        return Decision::RemoveOwners(dangling.iter().chain(&waiting).map(|r| r.uid.clone()).collect());
    }
    if !waiting.is_empty() && subject.has_dependents {
        // Deleted in the foreground, so that its own dependents go before the owner that
        // waits for it.
        let unblock = if subject.dependent_deleting_dependents {
            owners.iter().filter(|(r, _)| r.block_owner_deletion == Some(true)).map(|(r, _)| r.uid.clone()).collect()
        } else {
            Vec::new()
        };
        return Decision::Delete { propagation: Propagation::Foreground, unblock };
    }
    // A deletion already asked for on the object itself is honoured.
    let has = |f: &str| subject.finalizers.iter().any(|x| x == f);
    let propagation = if has(ORPHAN) {
        Propagation::Orphan
    } else if has(FOREGROUND) {
        Propagation::Foreground
    } else {
        Propagation::Background
    };
    Decision::Delete { propagation, unblock: Vec::new() }
}

/// `finalizers` without `finalizer`, or `None` if it is not there (nothing to write).
pub fn without_finalizer(finalizers: &[String], finalizer: &str) -> Option<Vec<String>> {
    finalizers.iter().any(|f| f == finalizer).then(|| finalizers.iter().filter(|f| *f != finalizer).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use OwnerState::*;

    fn r(uid: &str, block: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: uid.into(),
            uid: uid.into(),
            controller: None,
            block_owner_deletion: Some(block),
        }
    }

    fn delete(p: Propagation) -> Decision {
        Decision::Delete { propagation: p, unblock: vec![] }
    }

    #[test]
    fn decisions_follow_upstream() {
        let (a, b, c) = (r("a", true), r("b", false), r("c", true));
        let fg = vec![FOREGROUND.to_string()];
        let orphan = vec![ORPHAN.to_string()];
        let none: Vec<String> = vec![];
        let plain = Subject { finalizers: &none, ..Default::default() };
        let parent = Subject { finalizers: &none, has_dependents: true, dependent_deleting_dependents: false };
        let cycle = Subject { finalizers: &none, has_dependents: true, dependent_deleting_dependents: true };
        type Case<'a> = (&'a str, Subject<'a>, Vec<(&'a OwnerReference, OwnerState)>, Decision);
        let cases: Vec<Case<'_>> = vec![
            ("one live owner", plain, vec![(&a, Solid)], Decision::Keep),
            ("the only owner is gone", plain, vec![(&a, Dangling)], delete(Propagation::Background)),
            ("all owners are gone", plain, vec![(&a, Dangling), (&b, Dangling)], delete(Propagation::Background)),
            (
                "one of two owners is gone",
                plain,
                vec![(&a, Dangling), (&b, Solid)],
                Decision::RemoveOwners(vec!["a".into()]),
            ),
            (
                "a live owner and one waiting in the foreground",
                plain,
                vec![(&a, WaitingForDependents), (&b, Solid), (&c, Dangling)],
                Decision::RemoveOwners(vec!["c".into(), "a".into()]),
            ),
            (
                "the owner waits; no dependents",
                plain,
                vec![(&a, WaitingForDependents)],
                delete(Propagation::Background),
            ),
            ("the owner waits; dependents", parent, vec![(&a, WaitingForDependents)], delete(Propagation::Foreground)),
            (
                "the owner waits; a dependent waits too",
                cycle,
                vec![(&a, WaitingForDependents), (&b, WaitingForDependents)],
                Decision::Delete { propagation: Propagation::Foreground, unblock: vec!["a".into()] },
            ),
            (
                "gone owner, its own orphan finalizer",
                Subject { finalizers: &orphan, ..plain },
                vec![(&a, Dangling)],
                delete(Propagation::Orphan),
            ),
            (
                "gone owner, its own foreground finalizer",
                Subject { finalizers: &fg, ..plain },
                vec![(&a, Dangling)],
                delete(Propagation::Foreground),
            ),
        ];
        for (name, subject, owners, want) in cases {
            assert_eq!(decide(subject, &owners), want, "{name}");
        }
    }

    #[test]
    fn only_the_named_finalizer_goes() {
        let s = |v: &[&str]| v.iter().map(|f| f.to_string()).collect::<Vec<_>>();
        let cases = [
            (s(&[FOREGROUND]), FOREGROUND, Some(s(&[]))),
            (s(&["example.com/keep", ORPHAN]), ORPHAN, Some(s(&["example.com/keep"]))),
            (s(&[ORPHAN, FOREGROUND]), FOREGROUND, Some(s(&[ORPHAN]))),
            (s(&["example.com/keep"]), ORPHAN, None),
            (s(&[]), FOREGROUND, None),
        ];
        for (finalizers, drop, want) in cases {
            assert_eq!(without_finalizer(&finalizers, drop), want, "{finalizers:?} - {drop}");
        }
    }
}
