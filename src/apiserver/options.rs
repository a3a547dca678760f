//! Glue from request options to the selector and patch libraries.

use serde_json::Value;

use super::status::ApiError;
use super::PatchKind;

pub use super::registry::ObjectFilter as Filter;

/// The predicate of a list or watch's label and field selectors (`None`: everything).
pub fn object_filter(_plural: &str, labels: Option<&str>, fields: Option<&str>) -> Result<Option<Filter>, ApiError> {
    let labels = labels.unwrap_or("").trim();
    let fields = fields.unwrap_or("").trim();
    if labels.is_empty() && fields.is_empty() {
        return Ok(None);
    }
    Err(ApiError::bad_request("label and field selectors are not supported by this build"))
}

/// Applies a patch of `kind` to `current`.
pub fn apply_patch(kind: PatchKind, _type_kind: &str, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    let mut doc = current.clone();
    match kind {
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the patch is not a valid JSON patch: {e}")))?;
            json_patch::patch(&mut doc, &p).map_err(|e| ApiError::new(422, "Invalid", format!("the JSON patch could not be applied: {e}")))?;
        }
        PatchKind::Merge => {
            let p: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
            json_patch::merge(&mut doc, &p);
        }
        PatchKind::Strategic => {
            return Err(ApiError::unsupported_media_type("strategic merge patch is not supported by this build"));
        }
    }
    Ok(doc)
}
