//! The root-CA publisher: every active namespace has a `kube-root-ca.crt` ConfigMap whose
//! `ca.crt` is the cluster's server CA, so pods can verify the API server; it is put back
//! when deleted or changed.

use std::future::Future;

use serde_json::{json, Value};

use super::namespaces::Kept;
use crate::client::Client;

/// The ConfigMap's name.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
/// Upstream's annotation on it.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Upstream's description.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// The ConfigMap as it must be in `ns`.
pub fn desired(ns: &str, ca_pem: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CONFIG_MAP, "namespace": ns, "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
        "data": {"ca.crt": ca_pem},
    })
}

/// The update restoring `current`, if its data is not exactly the CA or the description
/// annotation is missing; other annotations and labels are kept, as upstream keeps them.
pub fn repair(current: &Value, ca_pem: &str) -> Option<Value> {
    let data = json!({"ca.crt": ca_pem});
    let described = current
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .and_then(Value::as_str)
        .is_some_and(|d| !d.is_empty());
    if current.get("data") == Some(&data) && described {
        return None;
    }
    let mut updated = current.clone();
    updated["data"] = data;
    let meta = updated.get_mut("metadata").and_then(Value::as_object_mut)?;
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    if !described {
        annotations[DESCRIPTION_ANNOTATION] = json!(DESCRIPTION);
    }
    Some(updated)
}

pub async fn run(client: Client, ca_pem: String, shutdown: impl Future<Output = ()>) {
    let for_desired = ca_pem.clone();
    let kept = Kept {
        controller: "root-ca-cert-publisher",
        plural: "configmaps",
        name: CONFIG_MAP,
        desired: Box::new(move |ns| desired(ns, &for_desired)),
        repair: Box::new(move |cur| repair(cur, &ca_pem)),
    };
    kept.run(client, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_intact_config_map_needs_nothing() {
        assert_eq!(repair(&desired("a", "PEM"), "PEM"), None);
    }

    #[test]
    fn changed_data_is_restored_and_other_annotations_kept() {
        let mut cm = desired("a", "PEM");
        cm["data"]["ca.crt"] = json!("other");
        cm["data"]["extra"] = json!("x");
        cm["metadata"]["annotations"]["team"] = json!("a");
        let fixed = repair(&cm, "PEM").expect("needs repair");
        assert_eq!(fixed["data"], json!({"ca.crt": "PEM"}));
        assert_eq!(fixed["metadata"]["annotations"]["team"], "a");
        assert_eq!(fixed["metadata"]["annotations"][DESCRIPTION_ANNOTATION], DESCRIPTION);
    }

    #[test]
    fn a_missing_description_is_put_back() {
        let mut cm = desired("a", "PEM");
        cm["metadata"].as_object_mut().unwrap().remove("annotations");
        let fixed = repair(&cm, "PEM").expect("needs repair");
        assert_eq!(fixed["metadata"]["annotations"][DESCRIPTION_ANNOTATION], DESCRIPTION);
    }
}
