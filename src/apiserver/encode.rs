//! JSON as upstream's encoder writes it. Upstream serializes Go structs, so an object's keys
//! come in struct order (`kind`, `apiVersion`, `metadata`, then the rest) rather than
//! sorted, and every response body ends in a newline. k3rs keeps objects as
//! [`serde_json::Value`] (whose maps are sorted); this writes the keys clients look at in
//! upstream's order and leaves everything below them in the map's own order, so the cost
//! over a plain `serde_json::to_vec` is a few key look-ups per object.
//!
//! Ordered as upstream: the top level of every object (`kind`, `apiVersion`, `metadata`),
//! `ObjectMeta` and `ListMeta`, the items of a list, `Status` with its details and causes,
//! and watch events (`type`, `object`, written by [`watch_event`]).

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Serialize, Serializer};
use serde_json::Value;

/// The keys of an object, first ones first.
const OBJECT: &[&str] = &["kind", "apiVersion", "metadata"];
/// `metav1.Status`.
const STATUS: &[&str] = &["kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"];
/// `metav1.StatusDetails`.
const DETAILS: &[&str] = &["name", "group", "kind", "uid", "causes", "retryAfterSeconds"];
/// `metav1.StatusCause`.
const CAUSE: &[&str] = &["reason", "message", "field"];
/// `metav1.ObjectMeta`, then `metav1.ListMeta`'s own fields (its `selfLink` and
/// `resourceVersion` come first in both).
const META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "continue",
    "remainingItemCount",
];

/// What a JSON value is, for the order of its keys.
#[derive(Clone, Copy)]
enum Shape {
    Object,
    Meta,
    Details,
    Cause,
    /// A list of objects (a list's `items`).
    Objects,
    /// A list of causes.
    Causes,
    /// Anything else: written as the map has it.
    Plain,
}

struct Ordered<'a>(&'a Value, Shape);

impl Shape {
    fn keys(self, v: &serde_json::Map<String, Value>) -> &'static [&'static str] {
        match self {
            Shape::Object if v.get("kind").and_then(Value::as_str) == Some("Status") => STATUS,
            Shape::Object => OBJECT,
            Shape::Meta => META,
            Shape::Details => DETAILS,
            Shape::Cause => CAUSE,
            Shape::Objects | Shape::Causes | Shape::Plain => &[],
        }
    }

    /// The shape of the value under `key` of a value of this shape.
    fn child(self, key: &str) -> Shape {
        match (self, key) {
            (Shape::Object, "metadata") => Shape::Meta,
            (Shape::Object, "items") => Shape::Objects,
            (Shape::Object, "details") => Shape::Details,
            (Shape::Details, "causes") => Shape::Causes,
            _ => Shape::Plain,
        }
    }
}

impl Serialize for Ordered<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.0, self.1) {
            (Value::Array(items), Shape::Objects | Shape::Causes) => {
                let each = if matches!(self.1, Shape::Causes) { Shape::Cause } else { Shape::Object };
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Ordered(item, each))?;
                }
                seq.end()
            }
            (Value::Object(m), shape) if !matches!(shape, Shape::Plain) => {
                let first = shape.keys(m);
                let mut map = s.serialize_map(Some(m.len()))?;
                for key in first {
                    if let Some(v) = m.get(*key) {
                        map.serialize_entry(key, &Ordered(v, shape.child(key)))?;
                    }
                }
                for (key, v) in m.iter().filter(|(k, _)| !first.contains(&k.as_str())) {
                    map.serialize_entry(key, &Ordered(v, shape.child(key)))?;
                }
                map.end()
            }
            (v, _) => v.serialize(s),
        }
    }
}

/// Appends `obj` (an API object, list or `Status`) in upstream's key order.
pub fn write_object(out: &mut Vec<u8>, obj: &Value) {
    // Writing a Value into a Vec cannot fail: every key is a string.
    let _ = serde_json::to_writer(out, &Ordered(obj, Shape::Object));
}

/// Appends an `ObjectMeta` or `ListMeta` in upstream's key order.
pub fn write_meta(out: &mut Vec<u8>, meta: &Value) {
    let _ = serde_json::to_writer(out, &Ordered(meta, Shape::Meta));
}

/// `obj` in upstream's key order.
pub fn object(obj: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_object(&mut out, obj);
    out
}

/// A response body: `obj` in upstream's key order, and the newline upstream's encoder ends
/// every body with.
pub fn body(obj: &Value) -> Vec<u8> {
    let mut out = object(obj);
    out.push(b'\n');
    out
}

/// One line of a watch: `{"type":...,"object":...}` and a newline.
pub fn watch_event(kind: &str, object: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"type\":");
    let _ = serde_json::to_writer(&mut out, kind);
    out.extend_from_slice(b",\"object\":");
    write_object(&mut out, object);
    out.extend_from_slice(b"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(v: &Value) -> String {
        String::from_utf8(body(v)).unwrap()
    }

    #[test]
    fn objects_put_type_and_metadata_first() {
        let cm = json!({"data": {"b": "2", "a": "1"}, "metadata": {"uid": "u", "name": "x", "namespace": "default", "annotations": {}, "resourceVersion": "5", "creationTimestamp": "t"}, "apiVersion": "v1", "kind": "ConfigMap"});
        assert_eq!(
            text(&cm),
            "{\"kind\":\"ConfigMap\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"x\",\"namespace\":\"default\",\"uid\":\"u\",\"resourceVersion\":\"5\",\"creationTimestamp\":\"t\",\"annotations\":{}},\"data\":{\"a\":\"1\",\"b\":\"2\"}}\n"
        );
    }

    #[test]
    fn status_keys_follow_go_struct_order() {
        let st = json!({"code": 422, "details": {"causes": [{"field": "data", "message": "m", "reason": "FieldValueForbidden"}], "kind": "ConfigMap", "name": "x"}, "reason": "Invalid", "message": "bad", "status": "Failure", "metadata": {}, "apiVersion": "v1", "kind": "Status"});
        assert_eq!(
            text(&st),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"bad\",\"reason\":\"Invalid\",\"details\":{\"name\":\"x\",\"kind\":\"ConfigMap\",\"causes\":[{\"reason\":\"FieldValueForbidden\",\"message\":\"m\",\"field\":\"data\"}]},\"code\":422}\n"
        );
    }

    #[test]
    fn lists_order_their_items_and_watch_events_their_object() {
        let list = json!({"items": [{"metadata": {"name": "a"}, "kind": "Pod"}], "metadata": {"continue": "c", "resourceVersion": "9"}, "kind": "PodList", "apiVersion": "v1"});
        assert_eq!(
            text(&list),
            "{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"9\",\"continue\":\"c\"},\"items\":[{\"kind\":\"Pod\",\"metadata\":{\"name\":\"a\"}}]}\n"
        );
        let line = watch_event("ADDED", &json!({"spec": {}, "kind": "Pod"}));
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Pod\",\"spec\":{}}}\n"
        );
        // Nested objects keep the map's order: only known shapes are reordered.
        let nested = json!({"kind": "X", "spec": {"metadata": {"uid": "u", "labels": {}}}});
        assert_eq!(text(&nested), "{\"kind\":\"X\",\"spec\":{\"metadata\":{\"labels\":{},\"uid\":\"u\"}}}\n");
    }
}
