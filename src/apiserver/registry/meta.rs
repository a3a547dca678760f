//! Object metadata: name rules, uids, timestamps and the fields every object shares.

use serde_json::{Map, Value};

use crate::apiserver::status::Cause;
use crate::domain::names;

/// How a resource's names are validated.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// RFC 1123 subdomain: most resources.
    Subdomain,
    /// RFC 1123 label: namespaces, services.
    Label,
    /// Anything that is a valid path segment: RBAC objects.
    PathSegment,
}

/// Problems with `name` under `rule`, as causes on `field`.
pub fn validate_name(rule: NameRule, name: &str, field: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    match rule {
        NameRule::Subdomain => {
            for e in names::dns1123_subdomain_errors(name) {
                out.push(Cause::invalid(field, name, &e));
            }
        }
        NameRule::Label => {
            if name.len() > names::LABEL_MAX_LEN {
                out.push(Cause::invalid(field, name, &names::max_len_error(names::LABEL_MAX_LEN)));
            }
            if !names::matches_dns1123_label(name) {
                out.push(Cause::invalid(field, name, &names::dns1123_label_error()));
            }
        }
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                out.push(Cause::invalid(field, name, &format!("may not be '{name}'")));
            }
            for bad in ["/", "%"] {
                if name.contains(bad) {
                    out.push(Cause::invalid(field, name, &format!("may not contain '{bad}'")));
                }
            }
        }
    }
    out
}

/// A name made from `base` as upstream's `SimpleNameGenerator` makes it (generateName):
/// the base, cut to leave room, then five random characters of an alphabet without vowels
/// or look-alikes, so the result is at most 63 characters.
pub fn generate_name(base: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    const RANDOM: usize = 5;
    const MAX_BASE: usize = 63 - RANDOM;
    let mut cut = base.len().min(MAX_BASE);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    let suffix: String = (0..RANDOM).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect();
    format!("{}{suffix}", &base[..cut])
}

/// A random (version 4) UUID.
pub fn new_uid() -> String {
    let mut b = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `obj.metadata`, created if missing (the object must be a JSON object).
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    match obj.get_mut("metadata") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Labels of an object, as string pairs (absent or malformed labels are none).
pub fn labels(obj: &Value) -> Vec<(&str, &str)> {
    obj.get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str(), v.as_str()?))).collect())
        .unwrap_or_default()
}

/// Checks the types of the metadata fields clients may set, so later code can rely on them.
pub fn validate_meta_shape(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let Some(meta) = obj.get("metadata") else { return out };
    let Some(meta) = meta.as_object() else {
        out.push(Cause::invalid("metadata", "", "must be an object"));
        return out;
    };
    for f in ["labels", "annotations"] {
        match meta.get(f) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) => {
                for (k, v) in m {
                    if !v.is_string() {
                        out.push(Cause::invalid(format!("metadata.{f}"), k, "values must be strings"));
                    }
                }
            }
            Some(_) => out.push(Cause::invalid(format!("metadata.{f}"), "", "must be a map of strings")),
        }
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (k, v) in labels {
            out.extend(validate_qualified_name(k, "metadata.labels"));
            if let Some(v) = v.as_str() {
                if !names::is_label_value(v) {
                    out.push(Cause::invalid("metadata.labels", v, &names::label_value_error()));
                }
            }
        }
    }
    if let Some(ann) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (k, v) in ann {
            out.extend(validate_qualified_name(k, "metadata.annotations"));
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            out.push(Cause {
                reason: "FieldValueTooLong",
                field: "metadata.annotations".into(),
                message: "Too long: must have at most 262144 bytes".into(),
            });
        }
    }
    for f in ["finalizers"] {
        match meta.get(f) {
            None | Some(Value::Null) => {}
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
                for v in a.iter().filter_map(Value::as_str) {
                    out.extend(validate_qualified_name(v, "metadata.finalizers"));
                }
            }
            Some(_) => out.push(Cause::invalid(format!("metadata.{f}"), "", "must be a list of strings")),
        }
    }
    out
}

/// `prefix/name` keys of labels and annotations.
pub fn validate_qualified_name(key: &str, field: &str) -> Vec<Cause> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut out = Vec::new();
    if name.len() > names::LABEL_MAX_LEN || !names::matches_qualified_name(name) {
        out.push(Cause::invalid(field, key, &format!("name part {}", names::qualified_name_error())));
    }
    if let Some(p) = prefix {
        if !names::is_dns1123_subdomain(p) {
            out.push(Cause::invalid(field, key, &format!("prefix part {}", names::DNS1123_SUBDOMAIN_ERR)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_keep_the_base_and_fit_63_characters() {
        let n = generate_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
        assert!(n[4..].bytes().all(|c| b"bcdfghjklmnpqrstvwxz2456789".contains(&c)), "{n}");
        let long = "x".repeat(70);
        let n = generate_name(&long);
        assert_eq!(n.len(), 63);
        assert!(n.starts_with(&"x".repeat(58)));
    }

    #[test]
    fn names() {
        assert!(validate_name(NameRule::Subdomain, "a.b-c", "metadata.name").is_empty());
        assert!(!validate_name(NameRule::Subdomain, "Bad_Name", "metadata.name").is_empty());
        assert!(!validate_name(NameRule::Label, "a.b", "metadata.name").is_empty());
        assert!(validate_name(NameRule::PathSegment, "system:admin", "metadata.name").is_empty());
        assert!(!validate_name(NameRule::PathSegment, "a/b", "metadata.name").is_empty());
    }

    #[test]
    fn uids_are_v4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
    }

    #[test]
    fn label_keys_and_values() {
        let obj = serde_json::json!({"metadata": {"labels": {"app.kubernetes.io/name": "web", "bad key": "x", "ok": "-bad"}}});
        let causes = validate_meta_shape(&obj);
        assert_eq!(causes.len(), 2, "{causes:?}");
    }
}
