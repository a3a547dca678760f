//! Patches of stored objects: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//! Kubernetes strategic merge patch, each over `serde_json::Value`.
//!
//! Every function takes the current object and the request body and returns the patched
//! object, leaving the input untouched. Failures are [`PatchError`]s whose text is what
//! upstream says and whose [`PatchError::status_code`] is the HTTP status upstream answers
//! with, so the handler can build the `Status` directly.

mod gofmt;
pub mod schema;
mod strategic;

use serde_json::{Map, Value};

use crate::apiserver::status::Reason;

pub use schema::{strategic_schema, FieldSchema, PatchStrategy, TypeSchema};

/// Upstream's cap on the operations of one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

const BUILT_IN_MEDIA_TYPES: &str = "application/json-patch+json, application/merge-patch+json, \
     application/strategic-merge-patch+json, application/apply-patch+yaml";
const CUSTOM_RESOURCE_MEDIA_TYPES: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

/// The kind of patch a PATCH request carries, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatchType {
    /// `application/json-patch+json`
    Json,
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json`
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply)
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value (parameters and case ignored).
    pub fn from_content_type(content_type: &str) -> Result<Self, PatchError> {
        let media = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        match media.as_str() {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Ok(PatchType::Apply),
            _ => Err(PatchError::UnsupportedMediaType { built_in: true }),
        }
    }

    /// The media type naming this patch type.
    pub fn media_type(&self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// A patch that could not be applied. The message is meant for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The body is not a patch of its type: not JSON, or the wrong shape (400 BadRequest).
    #[error("{0}")]
    DecodePatch(String),
    /// A JSON patch has more operations than [`MAX_JSON_PATCH_OPERATIONS`] (413).
    #[error("The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {0}")]
    TooManyOperations(usize),
    /// A JSON patch operation does not apply to the object, e.g. a missing path or a failed
    /// `test` (422).
    #[error("{0}")]
    JsonPatchNotApplicable(String),
    /// A strategic merge patch breaks the patch format's rules (400 BadRequest).
    #[error("{0}")]
    StrategicMergeBadPatch(String),
    /// A strategic merge patch cannot apply to this object (422).
    #[error("{0}")]
    StrategicMergeNotApplicable(String),
    /// A strategic merge patch failed in a way upstream does not classify (it answers 500).
    #[error("{0}")]
    StrategicMergeFailed(String),
    /// Strategic merge patch of a kind the server does not build in: custom resources have
    /// no merge keys, so upstream refuses the media type (415).
    #[error("the body of the request was in an unknown format - accepted media types include: {CUSTOM_RESOURCE_MEDIA_TYPES}")]
    StrategicMergeUnsupported,
    /// The `Content-Type` is not a patch type (415).
    #[error("the body of the request was in an unknown format - accepted media types include: {}", if *.built_in { BUILT_IN_MEDIA_TYPES } else { CUSTOM_RESOURCE_MEDIA_TYPES })]
    UnsupportedMediaType {
        /// Whether the target is a built-in kind (whose accepted types include strategic merge).
        built_in: bool,
    },
    /// Server-side apply is not served yet (415).
    #[error("server-side apply (application/apply-patch+yaml) is not supported by this server yet; use kubectl apply --server-side=false, or a json, merge or strategic patch")]
    ApplyNotSupported,
    /// The stored object is not a JSON object: a server fault, not the client's (500).
    #[error("the object to patch is not a JSON object")]
    NotAnObject,
}

impl PatchError {
    /// The `reason` of the `Status` upstream answers with (unknown where it has none).
    pub fn reason(&self) -> Reason {
        match self {
            PatchError::DecodePatch(_) | PatchError::StrategicMergeBadPatch(_) => Reason::BadRequest,
            PatchError::TooManyOperations(_) => Reason::RequestEntityTooLarge,
            PatchError::JsonPatchNotApplicable(_) | PatchError::StrategicMergeNotApplicable(_) => Reason::Invalid,
            PatchError::StrategicMergeUnsupported
            | PatchError::UnsupportedMediaType { .. }
            | PatchError::ApplyNotSupported => Reason::UnsupportedMediaType,
            PatchError::StrategicMergeFailed(_) => Reason::Unknown,
            PatchError::NotAnObject => Reason::InternalError,
        }
    }

    /// The HTTP status upstream answers with: the reason's own.
    pub fn status_code(&self) -> u16 {
        self.reason().code()
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("error decoding patch: {e}"))
}

/// Apply a JSON patch (RFC 6902: add, remove, replace, move, copy, test).
pub fn apply_json_patch(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let raw = parse_json(patch).map_err(PatchError::DecodePatch)?;
    let Value::Array(ops) = &raw else {
        return Err(PatchError::DecodePatch(format!(
            "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
            json_kind(&raw)
        )));
    };
    if ops.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations(ops.len()));
    }
    let ops: json_patch::Patch =
        serde_json::from_value(raw).map_err(|e| PatchError::DecodePatch(format!("invalid JSON patch: {e}")))?;
    // Work on a copy and drop it on failure: json_patch::patch's own rollback panics when it
    // cannot undo some operation sequences (a move into a descendant after other changes).
    let mut out = doc.clone();
    json_patch::patch_unsafe(&mut out, &ops).map_err(|e| {
        let op = ops.0.get(e.operation);
        PatchError::JsonPatchNotApplicable(json_patch_message(op, &e))
    })?;
    Ok(out)
}

/// Upstream's wording for a JSON patch operation that does not apply.
fn json_patch_message(op: Option<&json_patch::PatchOperation>, e: &json_patch::PatchError) -> String {
    use json_patch::{PatchErrorKind, PatchOperation};
    let path = e.path.to_string();
    match (op, &e.kind) {
        (Some(PatchOperation::Test(_)), PatchErrorKind::TestFailed) => {
            format!("testing value {path} failed: test failed")
        }
        (Some(PatchOperation::Add(_)), _) => {
            format!("add operation does not apply: doc is missing path: \"{path}\": missing value")
        }
        (Some(PatchOperation::Remove(_)), _) => {
            format!("remove operation does not apply: doc is missing path: \"{path}\": missing value")
        }
        (Some(PatchOperation::Replace(_)), _) => {
            format!("replace operation does not apply: doc is missing key: {path}: missing value")
        }
        (Some(PatchOperation::Move(m)), PatchErrorKind::InvalidFromPointer) => {
            format!("move operation does not apply: doc is missing from path: {}: missing value", m.from)
        }
        (Some(PatchOperation::Copy(c)), PatchErrorKind::InvalidFromPointer) => {
            format!("copy operation does not apply: doc is missing from path: {}: missing value", c.from)
        }
        (Some(PatchOperation::Test(_)), _) => format!("testing value {path} failed: missing value"),
        (_, kind) => format!("operation {} on {path} does not apply: {kind}", e.operation),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Apply a JSON merge patch (RFC 7386): objects merge recursively, `null` deletes, anything
/// else replaces. A patch that is an array replaces the document, as upstream's library does.
pub fn apply_merge_patch(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let patch =
        serde_json::from_slice::<Value>(patch).map_err(|_| PatchError::DecodePatch("Invalid JSON Patch".into()))?;
    match patch {
        Value::Object(p) => {
            let mut out = doc.clone();
            merge_into(&mut out, p);
            Ok(out)
        }
        Value::Array(mut a) => {
            a.iter_mut().for_each(prune_nulls);
            Ok(Value::Array(a))
        }
        _ => Err(PatchError::DecodePatch("Invalid JSON Patch".into())),
    }
}

fn merge_into(doc: &mut Value, patch: Map<String, Value>) {
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Value::Object(target) = doc else {
        return;
    };
    for (k, v) in patch {
        match v {
            Value::Null => {
                target.remove(&k);
            }
            Value::Object(p) => {
                let slot = target.entry(k).or_insert(Value::Null);
                merge_into(slot, p);
            }
            mut other => {
                prune_nulls(&mut other);
                target.insert(k, other);
            }
        }
    }
}

/// Remove `null` members of objects at any depth (arrays keep their null elements).
fn prune_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(prune_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(prune_nulls),
        _ => {}
    }
}

/// Apply a strategic merge patch to an object of the type `schema` describes (see
/// [`strategic_schema`] for the built-in kinds).
pub fn apply_strategic_merge_patch(
    doc: &Value,
    patch: &[u8],
    schema: &'static TypeSchema,
) -> Result<Value, PatchError> {
    let patch = parse_json(patch).map_err(PatchError::DecodePatch)?;
    let Value::Object(patch) = patch else {
        return Err(PatchError::DecodePatch(format!(
            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
            json_kind(&patch)
        )));
    };
    let Value::Object(original) = doc.clone() else {
        return Err(PatchError::NotAnObject);
    };
    strategic::merge_object(original, patch, schema).map(Value::Object).map_err(|e| match e {
        strategic::SmpError::BadRequest(m) => PatchError::StrategicMergeBadPatch(m),
        strategic::SmpError::Unprocessable(m) => PatchError::StrategicMergeNotApplicable(m),
        strategic::SmpError::Failed(m) => PatchError::StrategicMergeFailed(m),
    })
}

/// Apply a patch of any type to an object of API group `group` ("" for core) and `kind`,
/// refusing strategic merge for kinds that are not built in, as upstream does for custom
/// resources.
pub fn apply_patch(
    doc: &Value,
    patch_type: PatchType,
    patch: &[u8],
    group: &str,
    kind: &str,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => apply_json_patch(doc, patch),
        PatchType::Merge => apply_merge_patch(doc, patch),
        PatchType::StrategicMerge => match strategic_schema(group, kind) {
            Some(schema) => apply_strategic_merge_patch(doc, patch, schema),
            None => Err(PatchError::StrategicMergeUnsupported),
        },
        PatchType::Apply => Err(PatchError::ApplyNotSupported),
    }
}

#[cfg(test)]
mod tests;
