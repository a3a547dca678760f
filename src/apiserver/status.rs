//! API errors as Kubernetes `Status` objects: every failure a client sees carries the HTTP
//! code, the `reason` and the message wording upstream uses, so kubectl and client
//! libraries react to it as they would against Kubernetes.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::store::StoreError;

mod reason;
pub use reason::Reason;

/// One field-level problem of an invalid object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl Cause {
    pub fn invalid(field: impl Into<String>, value: impl std::fmt::Display, detail: &str) -> Self {
        Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: \"{value}\": {detail}"),
        }
    }
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message =
            if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
        Cause { reason: "FieldValueRequired", field: field.into(), message }
    }
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Cause { reason: "FieldValueForbidden", field: field.into(), message: format!("Forbidden: {detail}") }
    }
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list = supported.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ");
        Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!("Unsupported value: \"{value}\": supported values: {list}"),
        }
    }
    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Cause { reason: "FieldValueDuplicate", field: field.into(), message: format!("Duplicate value: \"{value}\"") }
    }
}

/// Which object an error is about, for `Status.details`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub group: String,
    /// The resource (plural) for most errors, the kind for `Invalid`.
    pub kind: String,
    pub name: String,
}

/// An error answered as a `Status`. Its HTTP code follows from its reason unless built
/// with [`ApiError::with_code`], so the two cannot disagree by accident.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub reason: Reason,
    code: u16,
    pub message: String,
    /// Kept behind a box so results carrying an `ApiError` stay small.
    pub details: Box<Details>,
}

/// The optional parts of an [`ApiError`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Details {
    pub subject: Option<Subject>,
    pub causes: Vec<Cause>,
    /// Seconds the client should wait before retrying (`Retry-After`).
    pub retry_after: Option<u64>,
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

impl ApiError {
    /// An error answered with the code upstream gives `reason`.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self::with_code(reason, reason.code(), message)
    }

    /// An error whose code is not its reason's own: a `Status` read from the wire, or a
    /// reason upstream sends with another code.
    pub fn with_code(reason: Reason, code: u16, message: impl Into<String>) -> Self {
        ApiError { reason, code, message: message.into(), details: Box::default() }
    }

    /// The HTTP code, also written as `Status.code`.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// Whether this error counts as `reason` by upstream's rules (see [`Reason::matches`]):
    /// what callers ask instead of comparing codes.
    pub fn is(&self, reason: Reason) -> bool {
        reason.matches(self.reason, self.code)
    }

    pub fn is_not_found(&self) -> bool {
        self.is(Reason::NotFound)
    }

    pub fn is_already_exists(&self) -> bool {
        self.is(Reason::AlreadyExists)
    }

    /// A lost optimistic-concurrency race or a failed precondition; not a taken name.
    pub fn is_conflict(&self) -> bool {
        self.is(Reason::Conflict)
    }

    pub fn is_gone(&self) -> bool {
        self.is(Reason::Gone)
    }

    /// A resource version or continue token too old to serve: relist.
    pub fn is_expired(&self) -> bool {
        self.is(Reason::Expired)
    }

    pub fn is_invalid(&self) -> bool {
        self.is(Reason::Invalid)
    }

    pub fn is_bad_request(&self) -> bool {
        self.is(Reason::BadRequest)
    }

    pub fn is_unauthorized(&self) -> bool {
        self.is(Reason::Unauthorized)
    }

    pub fn is_forbidden(&self) -> bool {
        self.is(Reason::Forbidden)
    }

    pub fn is_too_many_requests(&self) -> bool {
        self.is(Reason::TooManyRequests)
    }

    pub fn is_service_unavailable(&self) -> bool {
        self.is(Reason::ServiceUnavailable)
    }

    pub fn is_timeout(&self) -> bool {
        self.is(Reason::Timeout)
    }

    pub fn is_internal_error(&self) -> bool {
        self.is(Reason::InternalError)
    }

    fn about(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details.subject = Some(Subject { group: group.into(), kind: kind.into(), name: name.into() });
        self
    }

    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(Reason::NotFound, format!("{} \"{name}\" not found", qualified(group, resource)))
            .about(group, resource, name)
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(Reason::AlreadyExists, format!("{} \"{name}\" already exists", qualified(group, resource)))
            .about(group, resource, name)
    }

    pub fn conflict(group: &str, resource: &str, name: &str, detail: &str) -> Self {
        Self::new(
            Reason::Conflict,
            format!("Operation cannot be fulfilled on {} \"{name}\": {detail}", qualified(group, resource)),
        )
        .about(group, resource, name)
    }

    /// The optimistic-concurrency conflict.
    pub fn stale(group: &str, resource: &str, name: &str) -> Self {
        Self::conflict(
            group,
            resource,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422: `Kind "name" is invalid: field: message, field: message`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let list = causes
            .iter()
            .map(|c| if c.field.is_empty() { c.message.clone() } else { format!("{}: {}", c.field, c.message) })
            .collect::<Vec<_>>();
        let joined = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
        let qualified_kind = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let mut e = Self::new(Reason::Invalid, format!("{qualified_kind} \"{name}\" is invalid: {joined}"))
            .about(group, kind, name);
        e.details.causes = causes;
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Reason::BadRequest, message)
    }

    pub fn unauthorized() -> Self {
        Self::new(Reason::Unauthorized, "Unauthorized")
    }

    /// 403 in upstream's words.
    pub fn forbidden(
        user: &str,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Self {
        Self::forbidden_subresource(user, verb, group, resource, "", namespace, name)
    }

    /// [`ApiError::forbidden`] of a subresource: the user "cannot get resource "pods/log"".
    pub fn forbidden_subresource(
        user: &str,
        verb: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Self {
        let what = qualified(group, resource);
        let full = if subresource.is_empty() { resource.to_string() } else { format!("{resource}/{subresource}") };
        let subject = match name {
            Some(n) if !n.is_empty() => format!("{what} \"{n}\""),
            _ => what.clone(),
        };
        let scope = match namespace {
            Some(ns) if !ns.is_empty() => format!(" in the namespace \"{ns}\""),
            _ => " at the cluster scope".to_string(),
        };
        Self::new(
            Reason::Forbidden,
            format!("{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{full}\" in API group \"{group}\"{scope}"),
        )
        .about(group, resource, name.unwrap_or(""))
    }

    /// 403 for a reason other than authorization (admission, a budget):
    /// `resource.group "name" is forbidden: reason`.
    pub fn forbidden_because(group: &str, resource: &str, name: &str, reason: &str) -> Self {
        Self::new(Reason::Forbidden, format!("{} \"{name}\" is forbidden: {reason}", qualified(group, resource)))
            .about(group, resource, name)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(Reason::MethodNotAllowed, message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(Reason::NotAcceptable, message)
    }

    /// 406 for a conversion the object cannot take (a list asked for as one object's
    /// metadata): upstream's generic server response, whose details are there but empty.
    pub fn conversion_not_acceptable(message: impl Into<String>) -> Self {
        Self::new(Reason::NotAcceptable, message).about("", "", "")
    }

    /// 410 `Expired`: a resource version or continue token older than the store keeps.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(Reason::Expired, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(Reason::RequestEntityTooLarge, message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(Reason::UnsupportedMediaType, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Reason::InternalError, format!("Internal error occurred: {}", message.into()))
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        let mut e = Self::new(Reason::ServiceUnavailable, message);
        e.details.retry_after = Some(1);
        e
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(Reason::Timeout, message)
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason.as_str(),
            "code": self.code,
        });
        if self.details.subject.is_some() || !self.details.causes.is_empty() || self.details.retry_after.is_some() {
            let mut details = serde_json::Map::new();
            if let Some(s) = &self.details.subject {
                insert_details(&mut details, &s.name, &s.group, &s.kind, "");
            }
            if !self.details.causes.is_empty() {
                let causes: Vec<Value> = self
                    .details
                    .causes
                    .iter()
                    .map(|c| {
                        // Upstream omits an empty field (a budget's cause names none).
                        let mut v = json!({"reason": c.reason, "message": c.message});
                        if !c.field.is_empty() {
                            v["field"] = json!(c.field);
                        }
                        v
                    })
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            if let Some(s) = self.details.retry_after {
                details.insert("retryAfterSeconds".into(), json!(s));
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// `StatusDetails`' identifying fields; upstream leaves out each that is empty (`group` for
/// the core group, for one).
fn insert_details(details: &mut serde_json::Map<String, Value>, name: &str, group: &str, kind: &str, uid: &str) {
    for (key, value) in [("name", name), ("group", group), ("kind", kind), ("uid", uid)] {
        if !value.is_empty() {
            details.insert(key.into(), json!(value));
        }
    }
}

/// The `Success` Status of a delete that removed the object at once, for resources whose
/// delete does not return the object: `details.kind` is the resource (plural), as upstream.
pub fn success(name: &str, group: &str, resource: &str, uid: &str) -> Value {
    let mut details = serde_json::Map::new();
    insert_details(&mut details, name, group, resource, uid);
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = super::encode::body(&self.to_status());
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (code, body).into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(s) = self.details.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted { requested, compacted } => {
                ApiError::expired(format!("too old resource version: {requested} ({compacted})"))
            }
            StoreError::FutureRevision { requested, current } => {
                let mut e = ApiError::timeout(format!("Too large resource version: {requested}, current: {current}"));
                e.details.retry_after = Some(1);
                e
            }
            StoreError::Closed => ApiError::unavailable("the server is shutting down"),
            other => ApiError::internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_like_upstream() {
        let s = ApiError::not_found("apps", "deployments", "web").to_status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"], json!({"name": "web", "group": "apps", "kind": "deployments"}));
    }

    #[test]
    fn core_group_details_leave_the_group_out() {
        let s = ApiError::not_found("", "configmaps", "x").to_status();
        assert_eq!(s["details"], json!({"name": "x", "kind": "configmaps"}));
        let body = String::from_utf8(crate::apiserver::encode::body(&s)).unwrap();
        assert_eq!(
            body,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"configmaps \\\"x\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"x\",\"kind\":\"configmaps\"},\"code\":404}\n"
        );
        assert_eq!(
            success("web", "apps", "deployments", "u-1"),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": "web", "group": "apps", "kind": "deployments", "uid": "u-1"}})
        );
        assert_eq!(
            success("x", "", "configmaps", "u")["details"],
            json!({"name": "x", "kind": "configmaps", "uid": "u"})
        );
    }

    #[test]
    fn invalid_lists_causes() {
        let e = ApiError::invalid(
            "",
            "ConfigMap",
            "Bad_Name",
            vec![Cause::invalid(
                "metadata.name",
                "Bad_Name",
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters",
            )],
        );
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert!(s["message"]
            .as_str()
            .unwrap()
            .starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""));
        assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
    }

    #[test]
    fn forbidden_names_user_verb_and_scope() {
        let e = ApiError::forbidden("bob", "list", "", "configmaps", Some("default"), None);
        assert_eq!(
            e.message,
            "configmaps is forbidden: User \"bob\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\""
        );
    }

    #[test]
    fn compacted_is_410_expired() {
        let e: ApiError =
            StoreError::Compacted { requested: crate::store::Revision(5), compacted: crate::store::Revision(9) }.into();
        assert_eq!((e.code(), e.reason), (410, Reason::Expired));
        assert!(e.is_expired() && !e.is_gone());
        assert_eq!(e.message, "too old resource version: 5 (9)");
    }

    #[test]
    fn codes_follow_reasons() {
        assert_eq!(ApiError::not_found("", "pods", "p").code(), 404);
        assert_eq!(ApiError::already_exists("", "pods", "p").code(), 409);
        assert_eq!(ApiError::stale("", "pods", "p").code(), 409);
        assert_eq!(ApiError::invalid("", "Pod", "p", vec![]).code(), 422);
        assert_eq!(ApiError::expired("old").code(), 410);
        assert_eq!(ApiError::too_large("big").code(), 413);
        assert_eq!(ApiError::unavailable("down").code(), 503);
        assert_eq!(ApiError::timeout("slow").code(), 504);
        assert_eq!(ApiError::internal("bug").code(), 500);
        let e = ApiError::with_code(Reason::ServerTimeout, 500, "retry");
        assert_eq!(e.into_response().status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn the_unknown_reason_is_written_empty() {
        let s = ApiError::new(Reason::Unknown, "plain").to_status();
        assert_eq!(
            s,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": "plain", "reason": "", "code": 500})
        );
        let s = ApiError::with_code(Reason::Unknown, 418, "teapot").to_status();
        assert_eq!((s["code"].as_u64(), s["reason"].as_str()), (Some(418), Some("")));
    }

    #[test]
    fn predicates_follow_upstream() {
        let taken = ApiError::already_exists("", "pods", "p");
        assert!(taken.is_already_exists() && !taken.is_conflict());
        let stale = ApiError::stale("", "pods", "p");
        assert!(stale.is_conflict() && !stale.is_already_exists());
        assert!(ApiError::not_found("", "pods", "p").is_not_found());
        assert!(ApiError::forbidden("u", "get", "", "pods", None, None).is_forbidden());
        assert!(ApiError::invalid("", "Pod", "p", vec![]).is_invalid());
        assert!(ApiError::bad_request("no").is_bad_request());
        assert!(ApiError::unauthorized().is_unauthorized());
        assert!(ApiError::unavailable("down").is_service_unavailable());
        assert!(ApiError::timeout("slow").is_timeout());
        assert!(ApiError::internal("bug").is_internal_error());
        assert!(ApiError::new(Reason::TooManyRequests, "slow down").is_too_many_requests());
        assert!(ApiError::new(Reason::Gone, "gone").is_gone());
        // A reason-less error counts by its code, as upstream's predicates do.
        assert!(ApiError::with_code(Reason::Unknown, 404, "").is_not_found());
        assert!(ApiError::with_code(Reason::Unknown, 410, "").is_gone());
        assert!(!ApiError::with_code(Reason::Unknown, 410, "").is_expired());
        assert!(!ApiError::with_code(Reason::InternalError, 404, "").is_not_found());
    }
}
