//! Expectations: what a controller has just created or deleted and its informer has not
//! shown yet. Until the store reflects its own writes, a controller must not act on it
//! again (it would see too few pods and create more), as upstream's controllers do with
//! their `ControllerExpectations`.
//!
//! Here an expectation is checked against the store itself: a created object is seen once
//! the store holds it, a deleted one once the store no longer holds it alive. So the order in
//! which the create's answer and the watch event arrive does not matter, and a lost event
//! cannot leave an expectation hanging past [`EXPECTATION_TTL`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// After this long, expectations are dropped as upstream's are: a controller that heard
/// nothing for five minutes relists and acts on what it sees.
pub const EXPECTATION_TTL: Duration = Duration::from_secs(300);

/// An object a controller wrote: namespace, name and the UID it got (creates) or had (deletes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

#[derive(Default)]
struct Pending {
    creates: Vec<Written>,
    deletes: Vec<Written>,
    since: Option<Instant>,
}

/// What the store says about one written object.
pub enum Seen {
    /// The store holds an object of that name with this UID, alive (no deletionTimestamp).
    Alive(String),
    /// It holds one with this UID, being deleted.
    Terminating(String),
    /// It holds none.
    Absent,
}

impl Seen {
    /// What a store lookup found.
    pub fn of<K: kube::Resource>(found: Option<&K>) -> Seen {
        match found.map(|o| o.meta()) {
            Some(m) if m.deletion_timestamp.is_some() => Seen::Terminating(m.uid.clone().unwrap_or_default()),
            Some(m) => Seen::Alive(m.uid.clone().unwrap_or_default()),
            None => Seen::Absent,
        }
    }
}

/// Per owner (`O`, e.g. a ReplicaSet's key), the creates and deletes not yet seen.
pub struct Expectations<O> {
    pending: Mutex<HashMap<O, Pending>>,
}

impl<O: Eq + Hash + Clone> Default for Expectations<O> {
    fn default() -> Self {
        Expectations { pending: Mutex::new(HashMap::new()) }
    }
}

impl<O: Eq + Hash + Clone> Expectations<O> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<O, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `owner` created `obj`.
    pub fn created(&self, owner: &O, obj: Written, now: Instant) {
        let mut map = self.lock();
        let p = map.entry(owner.clone()).or_default();
        p.since.get_or_insert(now);
        p.creates.push(obj);
    }

    /// `owner` deleted `obj`.
    pub fn deleted(&self, owner: &O, obj: Written, now: Instant) {
        let mut map = self.lock();
        let p = map.entry(owner.clone()).or_default();
        p.since.get_or_insert(now);
        p.deletes.push(obj);
    }

    /// Whether the store shows everything `owner` wrote; what it shows is forgotten. `seen`
    /// looks an object up by namespace and name.
    pub fn satisfied(&self, owner: &O, now: Instant, seen: impl Fn(&str, &str) -> Seen) -> bool {
        let mut map = self.lock();
        let Some(p) = map.get_mut(owner) else { return true };
        if p.since.is_some_and(|s| now.duration_since(s) >= EXPECTATION_TTL) {
            map.remove(owner);
            return true;
        }
        p.creates.retain(|w| match seen(&w.namespace, &w.name) {
            Seen::Alive(uid) | Seen::Terminating(uid) => uid != w.uid,
            Seen::Absent => true,
        });
        p.deletes.retain(|w| match seen(&w.namespace, &w.name) {
            Seen::Alive(uid) => uid == w.uid,
            Seen::Terminating(_) | Seen::Absent => false,
        });
        if p.creates.is_empty() && p.deletes.is_empty() {
            map.remove(owner);
            return true;
        }
        false
    }

    /// Forgets `owner` (it is gone).
    pub fn forget(&self, owner: &O) {
        self.lock().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(name: &str, uid: &str) -> Written {
        Written { namespace: "ns".into(), name: name.into(), uid: uid.into() }
    }

    #[test]
    fn creates_are_satisfied_once_the_store_holds_them() {
        let e = Expectations::<&str>::default();
        let t = Instant::now();
        assert!(e.satisfied(&"rs", t, |_, _| Seen::Absent));
        e.created(&"rs", w("a", "u1"), t);
        e.created(&"rs", w("b", "u2"), t);
        assert!(!e.satisfied(&"rs", t, |_, n| if n == "a" { Seen::Alive("u1".into()) } else { Seen::Absent }));
        // `a` was forgotten when seen: its later deletion does not matter.
        assert!(e.satisfied(&"rs", t, |_, n| if n == "b" { Seen::Alive("u2".into()) } else { Seen::Absent }));
    }

    #[test]
    fn a_recreated_name_with_another_uid_does_not_count() {
        let e = Expectations::<&str>::default();
        let t = Instant::now();
        e.created(&"rs", w("a", "u1"), t);
        assert!(!e.satisfied(&"rs", t, |_, _| Seen::Alive("old".into())));
    }

    #[test]
    fn deletes_are_satisfied_once_terminating_or_gone() {
        let e = Expectations::<&str>::default();
        let t = Instant::now();
        e.deleted(&"rs", w("a", "u1"), t);
        e.deleted(&"rs", w("b", "u2"), t);
        assert!(!e.satisfied(&"rs", t, |_, n| if n == "a" {
            Seen::Terminating("u1".into())
        } else {
            Seen::Alive("u2".into())
        }));
        assert!(e.satisfied(&"rs", t, |_, _| Seen::Absent));
    }

    #[test]
    fn expectations_expire() {
        let e = Expectations::<&str>::default();
        let t = Instant::now();
        e.created(&"rs", w("a", "u1"), t);
        assert!(!e.satisfied(&"rs", t + Duration::from_secs(10), |_, _| Seen::Absent));
        assert!(e.satisfied(&"rs", t + EXPECTATION_TTL, |_, _| Seen::Absent));
    }
}
