//! ControllerRevisions, the template history of StatefulSets and DaemonSets (upstream's
//! `controller/history`): a revision holds the owner's pod template as the patch that would
//! restore it, numbered in order; the owner finds the revision equal to its template (or
//! makes one, probing past hash collisions), reads old templates back from their revisions,
//! and prunes what neither a pod nor its status refers to beyond revisionHistoryLimit.
//!
//! Sorting, matching and pruning are pure; [`create`] and [`renumber`] are the writes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::runtime::is_conflict;

/// The label a pod carries naming the revision it was made from (upstream's
/// `ControllerRevisionHashLabelKey`); DaemonSets' revisions carry it too.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// The label a StatefulSet's revisions carry with their hash.
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// Characters that cannot spell a word, as upstream's `rand.SafeEncodeString` uses.
const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// FNV-32 of `bytes` and the collision count in decimal, spelled with [`SAFE`] characters
/// (upstream's `HashControllerRevision`).
pub fn hash(bytes: &[u8], collision_count: Option<i32>) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h = h.wrapping_mul(0x0100_0193);
            h ^= u32::from(*b);
        }
    };
    feed(bytes);
    if let Some(c) = collision_count {
        feed(c.to_string().as_bytes());
    }
    h.to_string().bytes().map(|b| SAFE[usize::from(b) % SAFE.len()] as char).collect()
}

/// A revision's name: the owner's name (cut to leave room) and the hash.
pub fn name(owner: &str, hash: &str) -> String {
    let prefix: String = owner.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// The patch a revision stores: the template, replacing the owner's whole template when applied.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The template a revision restores, if its data holds one.
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(o) = t.as_object_mut() {
        o.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// Whether a revision stores `patch`.
pub fn stores(rev: &ControllerRevision, patch: &Value) -> bool {
    rev.data.as_ref().is_some_and(|d| &d.0 == patch)
}

/// A new revision of `owner`'s template.
pub fn new_revision(
    name: String,
    namespace: Option<String>,
    owner: OwnerReference,
    labels: BTreeMap<String, String>,
    patch: Value,
    revision: i64,
) -> ControllerRevision {
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(name),
            namespace,
            labels: Some(labels),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(RawExtension(patch)),
        revision,
    }
}

/// Oldest first: by revision number, then creation time, then name (upstream's
/// `SortControllerRevisions`).
pub fn sort(revs: &mut [ControllerRevision]) {
    revs.sort_by(|a, b| {
        let t = |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
        a.revision.cmp(&b.revision).then_with(|| t(a).cmp(&t(b))).then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// The number the next revision gets.
pub fn next_number(revs: &[ControllerRevision]) -> i64 {
    revs.iter().map(|r| r.revision).max().unwrap_or(0) + 1
}

/// The revisions to delete so that at most `limit` remain of those not `live` (upstream's
/// history truncation: live ones are kept whatever their number, the oldest others go
/// first). `revs` is sorted oldest first.
pub fn prune<'a>(revs: &'a [ControllerRevision], live: &[&str], limit: i32) -> Vec<&'a ControllerRevision> {
    let history: Vec<&ControllerRevision> =
        revs.iter().filter(|r| !live.contains(&r.metadata.name.as_deref().unwrap_or(""))).collect();
    let excess = history.len().saturating_sub(limit.max(0) as usize);
    history.into_iter().take(excess).collect()
}

/// The revisions the owner with `owner_uid` controls among `candidates` (its namespace's),
/// oldest first, adopting the orphans its selector matches and releasing those that stopped
/// matching, as upstream's `ControllerRevisionControllerRefManager` does.
pub async fn claim_revisions(
    client: &kube::Client,
    owner: OwnerReference,
    deleting: bool,
    selector: Option<&kube::core::Selector>,
    candidates: Vec<std::sync::Arc<ControllerRevision>>,
) -> Result<Vec<ControllerRevision>, kube::Error> {
    use super::runtime::owner::{claim, set_owners, Claim};
    let mut out = Vec::new();
    for c in claim(&owner.uid, deleting, selector, candidates) {
        match c {
            Claim::Keep(r) => out.push((*r).clone()),
            Claim::Adopt(r) => {
                let mut refs = r.metadata.owner_references.clone().unwrap_or_default();
                refs.push(owner.clone());
                if set_owners(client, &*r, refs).await? {
                    out.push((*r).clone());
                }
            }
            Claim::Release(r) => {
                let refs =
                    r.metadata.owner_references.iter().flatten().filter(|o| o.uid != owner.uid).cloned().collect();
                set_owners(client, &*r, refs).await?;
            }
        }
    }
    sort(&mut out);
    Ok(out)
}

/// Why a revision could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("creating ControllerRevision {name}: {source}")]
    CreateFailed { name: String, source: kube::Error },
    #[error("renumbering ControllerRevision {name}: {source}")]
    RenumberFailed { name: String, source: kube::Error },
    /// A revision of that name exists with another template: the owner must count a
    /// collision and try the next name.
    #[error("ControllerRevision {0} exists with another template (hash collision)")]
    Collision(String),
}

/// Creates `rev`; one that exists with the same data is returned as is (a create the informer
/// had not shown yet).
pub async fn create(
    api: &Api<ControllerRevision>,
    rev: &ControllerRevision,
) -> Result<ControllerRevision, HistoryError> {
    let name = rev.metadata.name.clone().unwrap_or_default();
    match api.create(&PostParams::default(), rev).await {
        Ok(r) => Ok(r),
        Err(e) if is_conflict(&e) => {
            let existing =
                api.get(&name).await.map_err(|source| HistoryError::CreateFailed { name: name.clone(), source })?;
            let same_owner = existing.metadata.owner_references == rev.metadata.owner_references;
            if same_owner && existing.data == rev.data {
                Ok(existing)
            } else {
                Err(HistoryError::Collision(name))
            }
        }
        Err(source) => Err(HistoryError::CreateFailed { name, source }),
    }
}

/// Gives an existing revision a new number (a template rolled back to becomes the newest).
pub async fn renumber(
    api: &Api<ControllerRevision>,
    rev: &ControllerRevision,
    revision: i64,
) -> Result<ControllerRevision, HistoryError> {
    let name = rev.metadata.name.clone().unwrap_or_default();
    api.patch(&name, &PatchParams::default(), &Patch::Merge(json!({"revision": revision})))
        .await
        .map_err(|source| HistoryError::RenumberFailed { name, source })
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    use super::*;

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta { labels: Some([("app".into(), "db".into())].into()), ..Default::default() }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }],
                ..Default::default()
            }),
        }
    }

    fn rev(name: &str, n: i64, image: &str) -> ControllerRevision {
        new_revision(
            name.into(),
            Some("ns".into()),
            OwnerReference::default(),
            BTreeMap::new(),
            template_patch(&template(image)),
            n,
        )
    }

    #[test]
    fn a_revision_restores_the_template_it_stores() {
        let t = template("busybox:1");
        let patch = template_patch(&t);
        assert_eq!(patch["spec"]["template"]["$patch"], "replace");
        let r = rev("db-1", 1, "busybox:1");
        assert!(stores(&r, &patch));
        assert!(!stores(&r, &template_patch(&template("busybox:2"))));
        assert_eq!(template_of(&r), Some(t));
    }

    #[test]
    fn hashes_are_stable_safe_and_move_with_collisions() {
        let a = hash(b"{}", None);
        assert_eq!(a, hash(b"{}", None));
        assert_ne!(hash(b"{}", Some(0)), hash(b"{}", Some(1)));
        assert_ne!(a, hash(b"{\"a\":1}", None));
        assert!(a.bytes().all(|b| SAFE.contains(&b)), "{a}");
        assert_eq!(name("web", &a), format!("web-{a}"));
        assert_eq!(name(&"x".repeat(300), "h").len(), 225);
    }

    #[test]
    fn pruning_keeps_the_live_and_the_newest() {
        let mut revs = vec![rev("r3", 3, "c"), rev("r1", 1, "a"), rev("r2", 2, "b"), rev("r4", 4, "d")];
        sort(&mut revs);
        assert_eq!(revs.iter().map(|r| r.revision).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(next_number(&revs), 5);
        let names =
            |v: Vec<&ControllerRevision>| v.iter().map(|r| r.metadata.name.clone().unwrap()).collect::<Vec<_>>();
        // (live, limit) → deleted
        let cases: &[(&[&str], i32, &[&str])] = &[
            (&["r4"], 10, &[]),
            (&["r4"], 1, &["r1", "r2"]),
            (&["r4", "r1"], 1, &["r2"]),
            (&["r4"], 0, &["r1", "r2", "r3"]),
            (&[], 2, &["r1", "r2"]),
        ];
        for (live, limit, want) in cases {
            assert_eq!(names(prune(&revs, live, *limit)), *want, "live {live:?} limit {limit}");
        }
    }
}
