//! The root-CA publisher: every active namespace has a `kube-root-ca.crt` ConfigMap whose
//! `ca.crt` is the cluster's server CA, so pods can verify the API server; it is put back
//! when deleted or changed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use super::namespaces::Kept;
use super::runtime::Context;

/// The ConfigMap's name.
pub const CONFIG_MAP: &str = "kube-root-ca.crt";
/// Upstream's annotation on it.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
/// Upstream's description.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

fn ca_data(ca_pem: &str) -> BTreeMap<String, String> {
    [("ca.crt".to_string(), ca_pem.to_string())].into()
}

/// The ConfigMap as it must be in `ns`.
pub fn desired(ns: &str, ca_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(CONFIG_MAP.into()),
            namespace: Some(ns.into()),
            annotations: Some([(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string())].into()),
            ..Default::default()
        },
        data: Some(ca_data(ca_pem)),
        ..Default::default()
    }
}

/// `current` restored, if its data is not exactly the CA or the description annotation is
/// missing; other annotations and labels are kept, as upstream keeps them.
pub fn repair(current: &ConfigMap, ca_pem: &str) -> Option<ConfigMap> {
    let data = ca_data(ca_pem);
    let described = current
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .is_some_and(|d| !d.is_empty());
    if current.data.as_ref() == Some(&data) && current.binary_data.is_none() && described {
        return None;
    }
    let mut updated = current.clone();
    updated.data = Some(data);
    updated.binary_data = None;
    if !described {
        updated
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    }
    Some(updated)
}

pub async fn run(ctx: Context) {
    let (for_desired, for_repair) = (ctx.ca_pem.clone(), ctx.ca_pem.clone());
    Kept {
        controller: "root-ca-cert-publisher",
        name: CONFIG_MAP,
        desired: Box::new(move |ns| desired(ns, &for_desired)),
        repair: Box::new(move |cur| repair(cur, &for_repair)),
    }
    .run(ctx)
    .await
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
        let data = cm.data.as_mut().unwrap();
        data.insert("ca.crt".into(), "other".into());
        data.insert("extra".into(), "x".into());
        cm.metadata.annotations.as_mut().unwrap().insert("team".into(), "a".into());
        let fixed = repair(&cm, "PEM").expect("needs repair");
        assert_eq!(fixed.data, Some(ca_data("PEM")));
        let annotations = fixed.metadata.annotations.unwrap();
        assert_eq!(annotations["team"], "a");
        assert_eq!(annotations[DESCRIPTION_ANNOTATION], DESCRIPTION);
    }

    #[test]
    fn a_missing_description_is_put_back() {
        let mut cm = desired("a", "PEM");
        cm.metadata.annotations = None;
        let fixed = repair(&cm, "PEM").expect("needs repair");
        assert_eq!(fixed.metadata.annotations.unwrap()[DESCRIPTION_ANNOTATION], DESCRIPTION);
    }
}
