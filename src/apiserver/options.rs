//! Glue from request options to the selector and patch libraries: a list or watch's
//! selectors become one predicate, a PATCH body becomes the desired object; their errors
//! become `Status` answers.

use serde_json::Value;

use super::patch::{self, PatchError, PatchType};
use super::registry::ObjectFilter;
use super::selector::{FieldSelector, LabelSelector, SelectableFields};
use super::status::ApiError;

/// The predicate of a list or watch's label and field selectors (`None`: everything).
pub fn object_filter(
    group: &str,
    kind: &str,
    labels: Option<&str>,
    fields: Option<&str>,
) -> Result<Option<ObjectFilter>, ApiError> {
    let labels = LabelSelector::parse(labels.unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let fields = FieldSelector::parse(fields.unwrap_or("")).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if labels.is_everything() && fields.is_everything() {
        return Ok(None);
    }
    let fields =
        SelectableFields::for_kind(group, kind).bind(&fields).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Some(std::sync::Arc::new(move |obj: &Value| labels.matches_object(obj) && fields.matches(obj))))
}

fn patch_error(e: PatchError) -> ApiError {
    ApiError::new(e.reason(), e.to_string())
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
pub fn apply_patch(
    patch_type: PatchType,
    group: &str,
    kind: &str,
    current: &Value,
    body: &[u8],
) -> Result<Value, ApiError> {
    patch::apply_patch(current, patch_type, body, group, kind).map_err(patch_error)
}

/// Applies a patch to `current` (an object of `group/version` `kind`) and checks the
/// result as `fieldValidation` asks (`Strict`: an error, `Warn` (the default): warnings,
/// `Ignore`): duplicate fields of a merge or strategic merge patch body, and fields the
/// patched object's schema does not know, worded as for create and update.
pub fn apply_patch_validated(
    patch_type: PatchType,
    group: &str,
    version: &str,
    kind: &str,
    current: &Value,
    body: &[u8],
    field_validation: Option<&str>,
) -> Result<(Value, Vec<String>), ApiError> {
    let mode = field_validation.unwrap_or("Warn");
    if !matches!(mode, "Strict" | "Warn" | "Ignore" | "") {
        return Err(ApiError::bad_request(format!(
            "fieldValidation must be one of \"Ignore\", \"Warn\" or \"Strict\", got {mode:?}"
        )));
    }
    let patched = apply_patch(patch_type, group, kind, current, body)?;
    if mode == "Ignore" {
        return Ok((patched, Vec::new()));
    }
    let mut errors: Vec<String> = Vec::new();
    if matches!(patch_type, PatchType::Merge | PatchType::StrategicMerge) {
        errors.extend(super::openapi::duplicate_fields(body).into_iter().map(|path| {
            super::openapi::StrictError { kind: super::openapi::StrictErrorKind::Duplicate, path }.to_string()
        }));
    }
    let raw = serde_json::to_vec(&patched).map_err(|e| ApiError::internal(e.to_string()))?;
    errors.extend(
        super::openapi::strict_errors(group, version, kind, &raw)
            .into_iter()
            .filter(|e| e.kind == super::openapi::StrictErrorKind::Unknown)
            .map(|e| e.to_string()),
    );
    if errors.is_empty() {
        return Ok((patched, Vec::new()));
    }
    if mode == "Strict" {
        return Err(ApiError::bad_request(format!("strict decoding error: {}", errors.join(", "))));
    }
    Ok((patched, errors))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn cm() -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "d"}, "data": {"a": "1"}})
    }

    #[test]
    fn strict_patches_report_unknown_and_duplicate_fields() {
        let body = br#"{"data":{"b":"2"},"bogus":1,"metadata":{"labels":{"x":"1"},"labels":{"y":"2"}}}"#;
        let e =
            apply_patch_validated(PatchType::Merge, "", "v1", "ConfigMap", &cm(), body, Some("Strict")).unwrap_err();
        assert_eq!(
            (e.code(), e.message.as_str()),
            (400, r#"strict decoding error: duplicate field "metadata.labels", unknown field "bogus""#)
        );
        let (obj, warnings) =
            apply_patch_validated(PatchType::StrategicMerge, "", "v1", "ConfigMap", &cm(), br#"{"bogus":1}"#, None)
                .unwrap();
        assert_eq!((obj["bogus"].as_i64(), warnings), (Some(1), vec![r#"unknown field "bogus""#.to_string()]));
        let (_, warnings) = apply_patch_validated(
            PatchType::Json,
            "",
            "v1",
            "ConfigMap",
            &cm(),
            br#"[{"op":"add","path":"/data/b","value":"2"}]"#,
            Some("Strict"),
        )
        .unwrap();
        assert!(warnings.is_empty());
        let e = apply_patch_validated(
            PatchType::Json,
            "",
            "v1",
            "ConfigMap",
            &cm(),
            br#"[{"op":"add","path":"/spec","value":{}}]"#,
            Some("Strict"),
        )
        .unwrap_err();
        assert_eq!(e.message, r#"strict decoding error: unknown field "spec""#);
        assert!(apply_patch_validated(
            PatchType::Merge,
            "",
            "v1",
            "ConfigMap",
            &cm(),
            br#"{"bogus":1}"#,
            Some("Ignore")
        )
        .unwrap()
        .1
        .is_empty());
    }
}
