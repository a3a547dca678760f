//! Static pods: pod manifests in `<data-dir>/agent/pod-manifests/` that the node runs
//! without the API server deciding anything, as upstream's kubelet does with its file
//! source. Each is named `<name>-<node>`, gets a uid derived from its file's content (so an
//! edit is a new pod), and is shown in the API as a mirror pod carrying the
//! `kubernetes.io/config.mirror` annotation; deleting the mirror does not stop the pod (the
//! kubelet puts it back), removing the file does.

use std::path::Path;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::Value;

pub const ANN_MIRROR: &str = "kubernetes.io/config.mirror";
pub const ANN_HASH: &str = "kubernetes.io/config.hash";
pub const ANN_SOURCE: &str = "kubernetes.io/config.source";
pub const ANN_SEEN: &str = "kubernetes.io/config.seen";

/// Whether an API pod is a mirror of a static pod.
pub fn is_mirror(pod: &Pod) -> bool {
    mirror_hash(pod).is_some()
}

/// The mirror annotation of a pod: the uid of the static pod it stands for.
pub fn mirror_hash(pod: &Pod) -> Option<&str> {
    pod.metadata.annotations.as_ref().and_then(|a| a.get(ANN_MIRROR)).map(String::as_str)
}

fn hash(content: &[u8], node: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(content);
    ctx.update(b"\0");
    ctx.update(node.as_bytes());
    ctx.finish().as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The static pod a manifest describes, as the node runs it; `Err` says what is wrong.
pub fn from_manifest(content: &[u8], node: &str, seen: &str) -> Result<Pod, String> {
    let text = std::str::from_utf8(content).map_err(|_| "the file is not UTF-8".to_string())?;
    // The manifest as written (YAML or JSON), to check its kind and give the spec upstream's
    // defaults before it is read as a Pod.
    let mut doc: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if doc.get("kind").and_then(Value::as_str) != Some("Pod") {
        return Err("only kind: Pod is supported in a static pod manifest".into());
    }
    if let Some(spec) = doc.get_mut("spec") {
        crate::domain::pod::default_spec(spec);
    }
    let mut pod: Pod = serde_json::from_value(doc).map_err(|e| format!("not a valid Pod: {e}"))?;
    let name = pod.metadata.name.clone().filter(|n| !n.is_empty()).ok_or("metadata.name is required")?;
    let Some(spec) = pod.spec.as_mut() else { return Err("spec is required".into()) };
    spec.node_name = Some(node.to_string());
    let uid = hash(content, node);
    let meta = &mut pod.metadata;
    meta.name = Some(format!("{name}-{node}"));
    if meta.namespace.as_deref().is_none_or(str::is_empty) {
        meta.namespace = Some("default".into());
    }
    meta.uid = Some(uid.clone());
    let ann = meta.annotations.get_or_insert_with(Default::default);
    ann.insert(ANN_HASH.into(), uid);
    ann.insert(ANN_SOURCE.into(), "file".into());
    ann.insert(ANN_SEEN.into(), seen.into());
    let qos = crate::domain::pod::qos_class(&pod);
    pod.status =
        Some(PodStatus { phase: Some("Pending".into()), qos_class: Some(qos.as_str().into()), ..Default::default() });
    Ok(pod)
}

/// Every valid manifest in `dir` (`*.yaml`, `*.yml`, `*.json`), sorted by file name; bad
/// files are logged and skipped.
pub fn load(dir: &Path, node: &str, seen: &str) -> Vec<Pod> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        match std::fs::read(&f).map_err(|e| e.to_string()).and_then(|c| from_manifest(&c, node, seen)) {
            Ok(p) => out.push(p),
            Err(e) => tracing::warn!(file = %f.display(), error = %e, "skipping a static pod manifest"),
        }
    }
    out
}

/// The mirror pod to create in the API for a static pod.
pub fn mirror_of(pod: &Pod, node_uid: Option<&str>) -> Pod {
    let mut m = pod.clone();
    let meta = &mut m.metadata;
    let hash = meta.uid.take().unwrap_or_default();
    meta.resource_version = None;
    meta.annotations.get_or_insert_with(Default::default).insert(ANN_MIRROR.into(), hash);
    if let Some(uid) = node_uid {
        meta.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
            uid: uid.into(),
            controller: Some(true),
            block_owner_deletion: None,
        }]);
    }
    m.status = None;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: w}}\nspec:\n  containers: [{name: c, image: busybox}]\n";

    fn annotation<'a>(p: &'a Pod, key: &str) -> Option<&'a str> {
        p.metadata.annotations.as_ref()?.get(key).map(String::as_str)
    }

    #[test]
    fn manifests_become_node_pods_with_content_uids() {
        let p = from_manifest(MANIFEST.as_bytes(), "n1", "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web-n1"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("n1"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.containers[0].image_pull_policy.as_deref(), Some("Always"), "upstream's default for :latest");
        assert_eq!(p.status.as_ref().unwrap().qos_class.as_deref(), Some("BestEffort"));
        let uid = p.metadata.uid.clone().unwrap();
        assert_eq!(annotation(&p, ANN_HASH), Some(uid.as_str()));
        assert_eq!(annotation(&p, ANN_SEEN), Some("2026-01-01T00:00:00Z"));
        let again = from_manifest(MANIFEST.as_bytes(), "n1", "later").unwrap();
        assert_eq!(again.metadata.uid.as_deref(), Some(uid.as_str()), "same content, same pod");
        let edited = from_manifest(MANIFEST.replace("busybox", "busybox:1").as_bytes(), "n1", "t").unwrap();
        assert_ne!(edited.metadata.uid.as_deref(), Some(uid.as_str()));
    }

    #[test]
    fn bad_manifests_are_refused() {
        assert!(from_manifest(b"kind: Service\nmetadata: {name: x}\n", "n", "t").is_err());
        assert!(from_manifest(b"kind: Pod\nmetadata: {}\nspec: {}\n", "n", "t").is_err());
        assert!(from_manifest(b"{{{", "n", "t").is_err());
        assert_eq!(from_manifest(b"kind: Pod\nmetadata: {name: x}\n", "n", "t").unwrap_err(), "spec is required");
        let e = from_manifest(b"kind: Pod\nmetadata: {name: x}\nspec: {containers: 3}\n", "n", "t").unwrap_err();
        assert!(e.starts_with("not a valid Pod: "), "{e}");
    }

    #[test]
    fn mirrors_carry_the_annotation_and_no_uid() {
        let p = from_manifest(MANIFEST.as_bytes(), "n1", "t").unwrap();
        let m = mirror_of(&p, Some("node-uid"));
        assert!(is_mirror(&m));
        assert!(!is_mirror(&p));
        assert!(m.metadata.uid.is_none());
        assert_eq!(mirror_hash(&m), p.metadata.uid.as_deref());
        let owner = &m.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("Node", "n1", "node-uid"));
        assert!(m.status.is_none());
    }
}
