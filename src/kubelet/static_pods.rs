//! Static pods: pod manifests in `<data-dir>/agent/pod-manifests/` that the node runs
//! without the API server deciding anything, as upstream's kubelet does with its file
//! source. Each is named `<name>-<node>`, gets a uid derived from its file's content (so an
//! edit is a new pod), and is shown in the API as a mirror pod carrying the
//! `kubernetes.io/config.mirror` annotation; deleting the mirror does not stop the pod (the
//! kubelet puts it back), removing the file does.

use std::path::Path;

use serde_json::{json, Value};

pub const ANN_MIRROR: &str = "kubernetes.io/config.mirror";
pub const ANN_HASH: &str = "kubernetes.io/config.hash";
pub const ANN_SOURCE: &str = "kubernetes.io/config.source";
pub const ANN_SEEN: &str = "kubernetes.io/config.seen";

/// Whether an API pod is a mirror of a static pod.
pub fn is_mirror(pod: &Value) -> bool {
    pod.pointer(&format!("/metadata/annotations/{}", ANN_MIRROR.replace('/', "~1"))).is_some()
}

fn hash(content: &[u8], node: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(content);
    ctx.update(b"\0");
    ctx.update(node.as_bytes());
    ctx.finish().as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// The static pod a manifest describes, as the node runs it; `Err` says what is wrong.
pub fn from_manifest(content: &[u8], node: &str, seen: &str) -> Result<Value, String> {
    let text = std::str::from_utf8(content).map_err(|_| "the file is not UTF-8".to_string())?;
    let mut pod: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if pod.get("kind").and_then(Value::as_str) != Some("Pod") {
        return Err("only kind: Pod is supported in a static pod manifest".into());
    }
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name is required")?
        .to_string();
    let uid = hash(content, node);
    let meta = pod["metadata"].as_object_mut().ok_or("metadata must be an object")?;
    meta.insert("name".into(), json!(format!("{name}-{node}")));
    if meta.get("namespace").and_then(Value::as_str).is_none_or(str::is_empty) {
        meta.insert("namespace".into(), json!("default"));
    }
    meta.insert("uid".into(), json!(uid));
    let ann = meta.entry("annotations").or_insert_with(|| json!({}));
    if !ann.is_object() {
        *ann = json!({});
    }
    ann[ANN_HASH] = json!(uid);
    ann[ANN_SOURCE] = json!("file");
    ann[ANN_SEEN] = json!(seen);
    if !pod.get("spec").is_some_and(Value::is_object) {
        return Err("spec is required".into());
    }
    crate::domain::pod::default_spec(&mut pod["spec"]);
    pod["spec"]["nodeName"] = json!(node);
    pod["status"] =
        json!({"phase": "Pending", "qosClass": crate::domain::pod::qos_class_of_spec(&pod["spec"]).as_str()});
    Ok(pod)
}

/// Every valid manifest in `dir` (`*.yaml`, `*.yml`, `*.json`), sorted by file name; bad
/// files are logged and skipped.
pub fn load(dir: &Path, node: &str, seen: &str) -> Vec<Value> {
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
pub fn mirror_of(pod: &Value, node_uid: Option<&str>) -> Value {
    let mut m = pod.clone();
    let hash = pod.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    if let Some(meta) = m["metadata"].as_object_mut() {
        meta.remove("uid");
        meta.remove("resourceVersion");
        meta["annotations"][ANN_MIRROR] = hash;
        if let Some(uid) = node_uid {
            meta.insert(
                "ownerReferences".into(),
                json!([{"apiVersion": "v1", "kind": "Node", "name": pod["spec"]["nodeName"], "uid": uid, "controller": true}]),
            );
        }
    }
    m.as_object_mut().map(|o| o.remove("status"));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, labels: {app: w}}\nspec:\n  containers: [{name: c, image: busybox}]\n";

    #[test]
    fn manifests_become_node_pods_with_content_uids() {
        let p = from_manifest(MANIFEST.as_bytes(), "n1", "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(p["metadata"]["name"], "web-n1");
        assert_eq!(p["metadata"]["namespace"], "default");
        assert_eq!(p["spec"]["nodeName"], "n1");
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(p["spec"]["containers"][0]["imagePullPolicy"], "Always", "upstream's default for :latest");
        let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
        assert_eq!(p["metadata"]["annotations"][ANN_HASH], uid.as_str());
        let again = from_manifest(MANIFEST.as_bytes(), "n1", "later").unwrap();
        assert_eq!(again["metadata"]["uid"], uid.as_str(), "same content, same pod");
        let edited = from_manifest(MANIFEST.replace("busybox", "busybox:1").as_bytes(), "n1", "t").unwrap();
        assert_ne!(edited["metadata"]["uid"], uid.as_str());
    }

    #[test]
    fn bad_manifests_are_refused() {
        assert!(from_manifest(b"kind: Service\nmetadata: {name: x}\n", "n", "t").is_err());
        assert!(from_manifest(b"kind: Pod\nmetadata: {}\nspec: {}\n", "n", "t").is_err());
        assert!(from_manifest(b"{{{", "n", "t").is_err());
    }

    #[test]
    fn mirrors_carry_the_annotation_and_no_uid() {
        let p = from_manifest(MANIFEST.as_bytes(), "n1", "t").unwrap();
        let m = mirror_of(&p, Some("node-uid"));
        assert!(is_mirror(&m));
        assert!(!is_mirror(&p));
        assert!(m["metadata"].get("uid").is_none());
        assert_eq!(m["metadata"]["annotations"][ANN_MIRROR], p["metadata"]["uid"]);
        assert_eq!(m["metadata"]["ownerReferences"][0]["kind"], "Node");
        assert!(m.get("status").is_none());
    }
}
