//! Glue from request options to the selector and patch libraries: a list or watch's
//! selectors become one predicate, a PATCH body becomes the desired object; their errors
//! become `Status` answers.

use serde_json::Value;

use super::patch::{self, PatchError, PatchType};
use super::registry::ObjectFilter;
use super::selector::{FieldSelector, LabelSelector, SelectableFields};
use super::status::ApiError;

/// The predicate of a list or watch's label and field selectors (`None`: everything).
pub fn object_filter(group: &str, kind: &str, labels: Option<&str>, fields: Option<&str>) -> Result<Option<ObjectFilter>, ApiError> {
    let labels = LabelSelector::parse(labels.unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = FieldSelector::parse(fields.unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if labels.is_everything() && fields.is_everything() {
        return Ok(None);
    }
    let fields = SelectableFields::for_kind(group, kind).bind(&fields).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Some(std::sync::Arc::new(move |obj: &Value| labels.matches_object(obj) && fields.matches(obj))))
}

fn patch_error(e: PatchError) -> ApiError {
    ApiError::new(e.status_code(), e.reason(), e.to_string())
}

/// The patch type of a PATCH request's `Content-Type`.
pub fn patch_type(content_type: &str) -> Result<PatchType, ApiError> {
    match PatchType::from_content_type(content_type).map_err(patch_error)? {
        PatchType::Apply => Err(ApiError::unsupported_media_type(
            "server-side apply is not supported by this server yet: use client-side `kubectl apply` (the default) or a JSON, merge or strategic merge patch",
        )),
        t => Ok(t),
    }
}

/// Applies a patch to `current`, an object of `group`/`kind`.
pub fn apply_patch(patch_type: PatchType, group: &str, kind: &str, current: &Value, body: &[u8]) -> Result<Value, ApiError> {
    patch::apply_patch(current, patch_type, body, group, kind).map_err(patch_error)
}
