//! The per-resource strategies: upstream's defaulting and validation rules, each small.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::meta::{meta_mut, meta_str};
use super::Strategy;
use crate::apiserver::status::Cause;

fn is_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && !k.starts_with("..")
        && k.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

fn string_map<'a>(obj: &'a Value, field: &str, out: &mut Vec<Cause>) -> Option<&'a Map<String, Value>> {
    match obj.get(field) {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if !v.is_string() {
                    out.push(Cause::invalid(format!("{field}[{k}]"), "", "must be a string"));
                }
            }
            Some(m)
        }
        Some(_) => {
            out.push(Cause::invalid(field, "", "must be a map of strings"));
            None
        }
    }
}

/// ConfigMaps: keys must be config keys, unique across data and binaryData, and the whole
/// under 1 MiB.
pub struct ConfigMapStrategy;

#[async_trait::async_trait]
impl Strategy for ConfigMapStrategy {
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let data = string_map(obj, "data", &mut out);
        let binary = string_map(obj, "binaryData", &mut out);
        let mut total = 0usize;
        for (field, map) in [("data", data), ("binaryData", binary)] {
            for (k, v) in map.into_iter().flatten() {
                if !is_config_key(k) {
                    out.push(Cause::invalid(format!("{field}[{k}]"), k, CONFIG_KEY_MSG));
                }
                total += k.len() + v.as_str().map_or(0, str::len);
                if field == "binaryData" {
                    if let Some(s) = v.as_str() {
                        if base64::engine::general_purpose::STANDARD.decode(s).is_err() {
                            out.push(Cause::invalid(format!("binaryData[{k}]"), "", "illegal base64 data"));
                        }
                    }
                }
            }
        }
        if let (Some(d), Some(b)) = (data, binary) {
            for k in d.keys().filter(|k| b.contains_key(*k)) {
                out.push(Cause::invalid(format!("data[{k}]"), k, "duplicate of key present in binaryData"));
            }
        }
        if total > 1024 * 1024 {
            out.push(Cause {
                reason: "FieldValueTooLong",
                field: String::new(),
                message: "Too long: must have at most 1048576 bytes".into(),
            });
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = immutable_when_set(new, old, &["data", "binaryData"]);
        out.extend(self.validate(new));
        out
    }
}

/// The rule of an object created with `immutable: true` (ConfigMaps and Secrets): it may
/// not become mutable again, and the listed fields may not change. Field errors as
/// upstream's, in its order.
fn immutable_when_set(new: &Value, old: &Value, fields: &[&str]) -> Vec<Cause> {
    const MSG: &str = "field is immutable when `immutable` is set";
    let mut out = Vec::new();
    if old.get("immutable") != Some(&json!(true)) {
        return out;
    }
    if new.get("immutable") != Some(&json!(true)) {
        out.push(Cause::forbidden("immutable", MSG));
    }
    // Upstream compares these with reflect.DeepEqual: an absent map and a null one are alike.
    let present = |v: &Value, f: &str| v.get(f).filter(|x| !x.is_null()).cloned();
    for f in fields {
        if present(new, f) != present(old, f) {
            out.push(Cause::forbidden(*f, MSG));
        }
    }
    out
}

/// Secrets: `stringData` is folded into `data` on every write; type defaults to Opaque and
/// may not change.
pub struct SecretStrategy;

fn fold_string_data(obj: &mut Value) {
    let Some(o) = obj.as_object_mut() else { return };
    let Some(Value::Object(sd)) = o.remove("stringData") else { return };
    if !o.get("data").is_some_and(Value::is_object) {
        o.insert("data".into(), Value::Object(Map::new()));
    }
    if let Some(Value::Object(data)) = o.get_mut("data") {
        for (k, v) in sd {
            if let Some(s) = v.as_str() {
                data.insert(k, json!(base64::engine::general_purpose::STANDARD.encode(s)));
            }
        }
    }
}

#[async_trait::async_trait]
impl Strategy for SecretStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        fold_string_data(obj);
        if obj.get("type").and_then(Value::as_str).unwrap_or("").is_empty() {
            obj["type"] = json!("Opaque");
        }
    }
    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        fold_string_data(new);
        if new.get("type").and_then(Value::as_str).unwrap_or("").is_empty() {
            new["type"] = json!("Opaque");
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let mut total = 0;
        for (k, v) in string_map(obj, "data", &mut out).into_iter().flatten() {
            if !is_config_key(k) {
                out.push(Cause::invalid(format!("data[{k}]"), k, CONFIG_KEY_MSG));
            }
            if let Some(s) = v.as_str() {
                match base64::engine::general_purpose::STANDARD.decode(s) {
                    Ok(b) => total += b.len(),
                    Err(_) => out.push(Cause::invalid(format!("data[{k}]"), "", "illegal base64 data")),
                }
            }
        }
        if total > 1024 * 1024 {
            out.push(Cause {
                reason: "FieldValueTooLong",
                field: "data".into(),
                message: "Too long: must have at most 1048576 bytes".into(),
            });
        }
        let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
        let data = obj.get("data").and_then(Value::as_object);
        let need = |key: &str, out: &mut Vec<Cause>| {
            if !data.is_some_and(|d| d.contains_key(key)) {
                out.push(Cause::required(format!("data[{key}]"), ""));
            }
        };
        match ty {
            "kubernetes.io/tls" => {
                need("tls.crt", &mut out);
                need("tls.key", &mut out);
            }
            "kubernetes.io/dockerconfigjson" => need(".dockerconfigjson", &mut out),
            "kubernetes.io/dockercfg" => need(".dockercfg", &mut out),
            "kubernetes.io/basic-auth"
                if !data.is_some_and(|d| d.contains_key("username") || d.contains_key("password")) =>
            {
                out.push(Cause::required("data[username]", ""));
            }
            "kubernetes.io/ssh-auth" => need("ssh-privatekey", &mut out),
            "kubernetes.io/service-account-token" => {
                let annotated = obj.pointer("/metadata/annotations/kubernetes.io~1service-account.name").is_some();
                if !annotated {
                    out.push(Cause::required("metadata.annotations[kubernetes.io/service-account.name]", ""));
                }
            }
            _ => {}
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        if new.get("type") != old.get("type") {
            out.push(Cause::invalid(
                "type",
                new.get("type").and_then(Value::as_str).unwrap_or(""),
                "field is immutable",
            ));
        }
        out.extend(immutable_when_set(new, old, &["data"]));
        out.extend(self.validate(new));
        out
    }
}

/// Namespaces: the `kubernetes` finalizer, phase Active, and the name label.
pub struct NamespaceStrategy;

fn name_label(obj: &mut Value) {
    let name = meta_str(obj, "name").unwrap_or("").to_string();
    let m = meta_mut(obj);
    if !m.get("labels").is_some_and(Value::is_object) {
        m.insert("labels".into(), Value::Object(Map::new()));
    }
    if let Some(Value::Object(l)) = m.get_mut("labels") {
        l.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
}

#[async_trait::async_trait]
impl Strategy for NamespaceStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        name_label(obj);
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
        obj["status"] = json!({"phase": "Active"});
    }
    fn prepare_update(&self, new: &mut Value, old: &Value) {
        name_label(new);
        // spec.finalizers only change through the finalize subresource.
        new["spec"] = old.get("spec").cloned().unwrap_or(json!({}));
    }
    fn holds_deletion(&self, obj: &mut Value) -> bool {
        let held = obj.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
        if held {
            obj["status"] = json!({"phase": "Terminating"});
        }
        held
    }
}

/// Whether a delete of this resource answers with the deleted object, as upstream's storage
/// does for these (`ReturnDeletedObject`, or a REST `Delete` of its own that returns it);
/// the others answer with a `Success` Status.
pub fn returns_deleted_object(group: &str, plural: &str) -> bool {
    matches!(
        (group, plural),
        (
            "",
            "namespaces"
                | "pods"
                | "services"
                | "serviceaccounts"
                | "persistentvolumes"
                | "persistentvolumeclaims"
                | "resourcequotas"
        ) | ("storage.k8s.io", "storageclasses" | "volumeattachments" | "csidrivers" | "csinodes")
            | ("apiextensions.k8s.io", "customresourcedefinitions")
    )
}

/// The resources this build stores and serves: every built-in resource of the discovery
/// table that can be read back (the review APIs, bindings and component statuses are not
/// stored objects), with its strategy. A resource served in more than one version is
/// stored in one (the group's preferred version, and core/v1 for events.k8s.io Events) and
/// converted for the others.
pub fn resource_types(service_cidr: crate::util::cidr::Cidr) -> Vec<super::ResourceType> {
    use std::sync::Arc;

    use super::meta::NameRule;
    use super::ResourceType;
    use crate::apiserver::discovery;

    let preferred: std::collections::HashSet<(&str, &str, &str)> =
        discovery::preferred_resources().map(|i| (i.group, i.version, i.plural)).collect();
    let mut out = Vec::new();
    for info in discovery::resources() {
        if !(info.supports("get") && info.supports("list") && info.supports("create")) {
            continue;
        }
        let conversion: Option<Arc<dyn super::Conversion>> = match (info.group, info.version, info.plural) {
            ("events.k8s.io", "v1", "events") => Some(Arc::new(super::conversion::EventsV1)),
            ("autoscaling", "v1", "horizontalpodautoscalers") => Some(Arc::new(super::conversion::HpaV1)),
            (g, v, p) if !preferred.contains(&(g, v, p)) => {
                tracing::warn!(group = g, version = v, resource = p, "no conversion to the stored version: not served");
                continue;
            }
            _ => None,
        };
        let strategy: Arc<dyn Strategy> = match (info.group, info.plural) {
            ("", "namespaces") => Arc::new(NamespaceStrategy),
            ("", "configmaps") => Arc::new(ConfigMapStrategy),
            ("", "secrets") => Arc::new(SecretStrategy),
            ("", "services") => Arc::new(super::services::ServiceStrategy { cidr: service_cidr }),
            ("", "pods") => Arc::new(super::workloads::PodStrategy),
            ("apps", "deployments" | "replicasets" | "statefulsets" | "daemonsets")
            | ("batch", "jobs" | "cronjobs")
            | ("", "replicationcontrollers" | "podtemplates") => {
                Arc::new(super::workloads::WorkloadStrategy { kind: info.kind })
            }
            (group, plural) => match super::validation::strategy_for(group, plural) {
                Some(v) => Arc::new(v),
                None => Arc::new(super::Plain),
            },
        };
        let name_rule = match (info.group, info.plural) {
            ("", "namespaces") | ("", "services") => NameRule::Label,
            ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
            _ => NameRule::Subdomain,
        };
        // Every version and group of a resource shares the plural's storage (events.k8s.io
        // Events are core Events).
        let storage = info.plural.to_string();
        let has_status = info.subresource("status").is_some();
        out.push(ResourceType {
            group: info.group,
            version: info.version,
            plural: info.plural,
            kind: info.kind,
            namespaced: info.namespaced,
            name_rule,
            has_status,
            // Upstream bumps generation for the API groups' spec-and-status objects; the
            // core group's objects do not carry one.
            tracks_generation: has_status && !info.group.is_empty(),
            storage,
            strategy,
            conversion,
            returns_deleted: returns_deleted_object(info.group, info.plural),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configmap_keys() {
        let ok = json!({"data": {"a.b": "1", "C_D": "2"}});
        assert!(ConfigMapStrategy.validate(&ok).is_empty());
        let bad = json!({"data": {"a/b": "1"}, "binaryData": {"x": "!!"}});
        let causes = ConfigMapStrategy.validate(&bad);
        assert_eq!(causes.len(), 2, "{causes:?}");
        assert_eq!(causes[0].field, "data[a/b]");
    }

    #[test]
    fn secret_string_data_is_folded_and_typed() {
        let mut s = json!({"metadata": {"name": "x"}, "stringData": {"user": "admin"}});
        SecretStrategy.prepare_create(&mut s);
        assert_eq!(s["data"]["user"], "YWRtaW4=");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
        let tls = json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        assert_eq!(SecretStrategy.validate(&tls)[0].field, "data[tls.key]");
    }

    #[test]
    fn immutable_configmaps_and_secrets_refuse_changes() {
        let msg = "Forbidden: field is immutable when `immutable` is set";
        let cm = json!({"immutable": true, "data": {"a": "1"}});
        assert!(ConfigMapStrategy.validate_update(&cm, &cm).is_empty());
        let changed = json!({"immutable": true, "data": {"a": "2"}, "binaryData": {"b": "eA=="}});
        let causes = ConfigMapStrategy.validate_update(&changed, &cm);
        let got: Vec<_> = causes.iter().map(|c| (c.field.as_str(), c.reason, c.message.as_str())).collect();
        assert_eq!(got, [("data", "FieldValueForbidden", msg), ("binaryData", "FieldValueForbidden", msg)]);
        let unlocked = json!({"immutable": false, "data": {"a": "1"}});
        let causes = ConfigMapStrategy.validate_update(&unlocked, &cm);
        assert_eq!(causes.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(), ["immutable"]);
        // A mutable one may change, and may be made immutable.
        let open = json!({"data": {"a": "1"}});
        assert!(ConfigMapStrategy.validate_update(&changed, &open).is_empty());

        let secret = json!({"type": "Opaque", "immutable": true, "data": {"a": "eA=="}});
        let edited = json!({"type": "Opaque", "data": {"a": "eQ=="}});
        let causes = SecretStrategy.validate_update(&edited, &secret);
        let got: Vec<_> = causes.iter().map(|c| (c.field.as_str(), c.message.as_str())).collect();
        assert_eq!(got, [("immutable", msg), ("data", msg)]);
    }

    #[test]
    fn namespace_defaults() {
        let mut ns = json!({"metadata": {"name": "team-a"}});
        NamespaceStrategy.prepare_create(&mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "team-a");
    }
}
