//! The shape of the generated message table (`table.rs`): for each Kubernetes protobuf
//! message, its fields' tags, JSON names, wire types and how Go's JSON encoder treats them,
//! plus the (apiVersion, kind) index of top-level objects.

use super::table::{KINDS, MESSAGES, META_KINDS};

/// What a field holds on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ty {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    /// Index into [`MESSAGES`].
    Message(u16),
}

/// One field of a message. For maps, `ty` is the value type; keys are always strings.
#[derive(Debug)]
pub(super) struct Field {
    pub tag: u32,
    /// The JSON name; empty for inline fields, whose message's fields join the parent object.
    pub json: &'static str,
    pub ty: Ty,
    pub flags: u8,
}

impl Field {
    pub const REPEATED: u8 = 1;
    pub const MAP: u8 = 2;
    /// A non-pointer Go scalar tagged `omitempty`: Go's protobuf encoder always writes it,
    /// Go's JSON encoder drops it when zero, so a zero value here means "not set".
    pub const OMIT_ZERO: u8 = 4;
    /// A Go struct embedded with `json:",inline"`.
    pub const INLINE: u8 = 8;

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// How a message turns into JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Form {
    /// An object of its fields.
    Fields,
    /// meta/v1 Time: RFC 3339 in seconds, `null` when zero.
    Time,
    /// meta/v1 MicroTime: RFC 3339 with microseconds, `null` when zero.
    MicroTime,
    /// meta/v1 Duration: Go's duration string ("1h2m3s"). No served 1.33 type has such a
    /// field today; a regenerated table may.
    #[allow(dead_code)]
    Duration,
    /// RawExtension, FieldsV1, apiextensions JSON: field 1 holds JSON text.
    EmbeddedJson,
    /// resource.Quantity: its string.
    Quantity,
    /// intstr.IntOrString: a number or a string.
    IntOrString,
    /// A Go named `[]string` (ExtraValue, Verbs): an array.
    StringList,
    /// apiextensions JSONSchemaPropsOrArray: a schema or an array of schemas.
    SchemaOrArray,
    /// apiextensions JSONSchemaPropsOrBool: a schema or a boolean.
    SchemaOrBool,
    /// apiextensions JSONSchemaPropsOrStringArray: a schema or an array of strings.
    SchemaOrStringArray,
}

#[derive(Debug)]
pub(super) struct Message {
    /// Proto full name, e.g. `k8s.io.api.core.v1.ConfigMap` (for tests and debugging).
    #[cfg_attr(not(test), allow(dead_code))]
    pub name: &'static str,
    pub form: Form,
    /// Sorted by tag.
    pub fields: &'static [Field],
}

impl Message {
    pub fn field(&self, tag: u32) -> Option<(usize, &'static Field)> {
        let i = self.fields.binary_search_by_key(&tag, |f| f.tag).ok()?;
        Some((i, &self.fields[i]))
    }
}

pub(super) fn message(index: u16) -> &'static Message {
    // The generator only writes indexes of the table it writes; a bad one is a bug there.
    &MESSAGES[usize::from(index)]
}

/// The message of a top-level object, by its apiVersion and kind.
pub(super) fn message_for_kind(api_version: &str, kind: &str) -> Option<&'static Message> {
    if let Ok(i) = KINDS.binary_search_by(|(v, k, _)| (*v, *k).cmp(&(api_version, kind))) {
        return Some(message(KINDS[i].2));
    }
    // Go clients register meta/v1 option kinds in every group version they talk to.
    META_KINDS.iter().find(|(k, _)| *k == kind).map(|(_, m)| message(*m))
}

/// Every (apiVersion, kind) the decoder knows, for diagnostics and tests.
pub fn known_kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    KINDS.iter().map(|(v, k, _)| (*v, *k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, m) in MESSAGES.iter().enumerate() {
            assert!(m.fields.windows(2).all(|w| w[0].tag < w[1].tag), "{} fields not sorted", m.name);
            for f in m.fields {
                if let Ty::Message(j) = f.ty {
                    assert!(usize::from(j) < MESSAGES.len(), "{}.{} points past the table", m.name, f.json);
                }
                if f.has(Field::INLINE) {
                    assert!(matches!(f.ty, Ty::Message(_)) && f.json.is_empty(), "{} inline field", m.name);
                } else if m.form == Form::Fields {
                    assert!(!f.json.is_empty(), "{} field {} has no JSON name", m.name, f.tag);
                }
            }
            if i > 0 {
                assert!(MESSAGES[i - 1].name < m.name, "messages not sorted at {}", m.name);
            }
        }
        assert!(KINDS.windows(2).all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)), "kinds not sorted");
    }

    #[test]
    fn kinds_resolve_to_their_messages() {
        let m = message_for_kind("v1", "ConfigMap").map(|m| m.name);
        assert_eq!(m, Some("k8s.io.api.core.v1.ConfigMap"));
        let m = message_for_kind("apps/v1", "Deployment").map(|m| m.name);
        assert_eq!(m, Some("k8s.io.api.apps.v1.Deployment"));
        let m = message_for_kind("apps/v1", "DeleteOptions").map(|m| m.name);
        assert_eq!(m, Some("k8s.io.apimachinery.pkg.apis.meta.v1.DeleteOptions"));
        assert!(message_for_kind("v1", "NoSuchKind").is_none());
        assert!(message_for_kind("apps/v1", "ConfigMap").is_none());
    }
}
