//! Owner references: the controller reference a controller puts on what it creates, and the
//! triggers that lead from a changed dependent to its controller.

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::Resource;

use super::informer::{Informer, Notice, Object};

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.iter().flatten().find(|r| r.controller == Some(true))
}

/// The controller reference to `owner`, blocking its foreground deletion, as upstream's
/// controllers set it.
pub fn controller_ref<O: Resource<DynamicType = ()>>(owner: &O) -> OwnerReference {
    let meta = owner.meta();
    OwnerReference {
        api_version: O::api_version(&()).into_owned(),
        kind: O::kind(&()).into_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Whether `r` points at an object of kind `O` (any version of its group).
pub fn refers_to<O: Resource<DynamicType = ()>>(r: &OwnerReference) -> bool {
    let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
    r.kind == O::kind(&()) && group == O::group(&())
}

/// The controller of `meta` as a trigger for `O`'s controller, if `O` is what controls it.
pub fn controller_trigger<O: Resource<DynamicType = ()>>(meta: &ObjectMeta) -> Option<ObjectRef<O>> {
    let r = controller_of(meta).filter(|r| refers_to::<O>(r))?;
    let mut o = ObjectRef::new(&r.name);
    if let Some(ns) = &meta.namespace {
        o = o.within(ns);
    }
    Some(o)
}

/// What an owner does with a candidate dependent.
pub enum Claim<T> {
    /// Ours and still matching.
    Keep(T),
    /// An orphan that matches: adopt it.
    Adopt(T),
    /// Ours but no longer matching: release it.
    Release(T),
}

/// Sorts candidates into what the owner with `owner_uid` keeps, adopts and releases
/// (upstream's `ControllerRefManager`): an orphan is adopted if the selector matches and
/// neither is being deleted; one of ours that stopped matching is released unless the owner
/// is being deleted. What another controller owns is left out, as are orphans that do not
/// match. An empty selector (`None`) matches nothing.
pub fn claim<R: Resource, T: std::ops::Deref<Target = R>>(
    owner_uid: &str,
    deleting: bool,
    selector: Option<&Selector>,
    candidates: impl IntoIterator<Item = T>,
) -> Vec<Claim<T>> {
    let mut out = Vec::new();
    for c in candidates {
        let meta = c.meta();
        let empty = Default::default();
        let matches = selector.is_some_and(|s| s.matches(meta.labels.as_ref().unwrap_or(&empty)));
        match controller_of(meta) {
            Some(r) if r.uid == owner_uid => {
                if matches || deleting {
                    out.push(Claim::Keep(c));
                } else {
                    out.push(Claim::Release(c));
                }
            }
            Some(_) => {}
            None => {
                if matches && !deleting && meta.deletion_timestamp.is_none() {
                    out.push(Claim::Adopt(c));
                }
            }
        }
    }
    out
}

/// Triggers for `O`'s controller from changes to its dependents `C`: the controller of each
/// changed or deleted dependent, and, for one with no controller, whatever `orphan` says
/// may adopt it. After a resync, every `O` in `owners`.
pub fn dependent_triggers<O: Object, C: Object>(
    dependents: &Informer<C>,
    owners: Store<O>,
    orphan: impl Fn(&C, &Store<O>) -> Vec<ObjectRef<O>> + Send + 'static,
) -> impl Stream<Item = ObjectRef<O>> + Send + 'static {
    dependents.subscribe().flat_map(move |n| {
        let refs = match n {
            Notice::Changed(c) | Notice::Deleted(c) => match controller_trigger::<O>(c.meta()) {
                Some(r) => vec![r],
                None if controller_of(c.meta()).is_none() => orphan(&c, &owners),
                None => vec![],
            },
            Notice::Resynced => super::all(&owners),
        };
        futures::stream::iter(refs)
    })
}

/// Replaces `obj`'s owner references (adoption, release, a claim's retention owners), guarded
/// by its UID and resourceVersion so that a stale copy is refused. False if it is gone.
pub async fn set_owners<K>(client: &kube::Client, obj: &K, refs: Vec<OwnerReference>) -> Result<bool, kube::Error>
where
    K: Object + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let meta = obj.meta();
    let api: kube::Api<K> = kube::Api::namespaced(client.clone(), meta.namespace.as_deref().unwrap_or(""));
    let patch = serde_json::json!({"metadata": {
        "ownerReferences": refs,
        "uid": meta.uid,
        "resourceVersion": meta.resource_version,
    }});
    match api
        .patch(meta.name.as_deref().unwrap_or(""), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if super::is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A controller's pod (or ReplicaSet) selector, if it selects anything: an empty selector
/// or one that does not convert selects nothing (upstream refuses both at validation).
pub fn controller_selector(selector: LabelSelector) -> Option<Selector> {
    let empty = selector.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && selector.match_expressions.as_ref().is_none_or(|m| m.is_empty());
    if empty {
        return None;
    }
    Selector::try_from(selector).ok()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::ReplicaSet;
    use k8s_openapi::api::batch::v1::Job;

    use super::*;

    #[test]
    fn controller_refs_name_the_kind_and_group() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let r = controller_ref(&rs);
        assert_eq!((r.api_version.as_str(), r.kind.as_str()), ("apps/v1", "ReplicaSet"));
        assert!(refers_to::<ReplicaSet>(&r));
        assert!(!refers_to::<Job>(&r));
        let pod = ObjectMeta { namespace: Some("ns".into()), owner_references: Some(vec![r]), ..Default::default() };
        let t = controller_trigger::<ReplicaSet>(&pod).unwrap();
        assert_eq!((t.name.as_str(), t.namespace.as_deref()), ("web", Some("ns")));
        assert!(controller_trigger::<Job>(&pod).is_none());
    }
}
