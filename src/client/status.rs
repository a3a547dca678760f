//! Reads an error response into an [`ApiError`] the way upstream's client does: a `Status`
//! body keeps its own reason and code, so callers can tell `Expired` from `Gone` or
//! `AlreadyExists` from `Conflict`; any other body gets the reason upstream infers from the
//! HTTP code alone, and its text as the message.

use axum::http::{header, HeaderMap, Method, StatusCode};
use serde_json::Value;

use crate::apiserver::status::{ApiError, Reason, Subject};

/// The error an unsuccessful response stands for.
pub fn error_from_response(method: &Method, code: StatusCode, headers: &HeaderMap, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if is_failure_status(&v) => from_status(&v, code),
        _ => generic(method, code, headers, body),
    }
}

/// A `Status` object reporting a failure: anything else is not the server's own answer.
fn is_failure_status(v: &Value) -> bool {
    v.get("kind").and_then(Value::as_str) == Some("Status")
        && matches!(v.get("apiVersion").and_then(Value::as_str), Some("v1" | "meta.k8s.io/v1"))
        && v.get("status").and_then(Value::as_str) == Some("Failure")
}

fn from_status(v: &Value, http: StatusCode) -> ApiError {
    let reason = Reason::from_wire(v.get("reason").and_then(Value::as_str).unwrap_or(""));
    // `Status.code` is only a suggestion upstream; a missing or nonsensical one yields to
    // the code the response came with.
    let code = v
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (100..=599).contains(c))
        .unwrap_or(http.as_u16());
    let message = v.get("message").and_then(Value::as_str).unwrap_or("");
    let mut e = ApiError::with_code(reason, code, message);
    if let Some(d) = v.get("details").and_then(Value::as_object) {
        let field = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let subject = Subject { group: field("group"), kind: field("kind"), name: field("name") };
        if subject != Subject::default() {
            e.details.subject = Some(subject);
        }
        e.details.retry_after = d.get("retryAfterSeconds").and_then(Value::as_u64).filter(|s| *s > 0);
    }
    e
}

/// A body that is no `Status` (a proxy's page, a plain-text rejection): the reason comes
/// from the code as upstream's client infers it.
fn generic(method: &Method, code: StatusCode, headers: &HeaderMap, body: &[u8]) -> ApiError {
    let reason = Reason::for_response(code.as_u16(), method == Method::POST);
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let message = if text.is_empty() {
        format!("the server responded with the status code {} but did not return more information", code.as_u16())
    } else {
        text.to_string()
    };
    let mut e = ApiError::with_code(reason, code.as_u16(), message);
    e.details.retry_after = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0);
    e
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn status(reason: &str, code: u16) -> Vec<u8> {
        let v = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": format!("a {reason}"), "reason": reason, "code": code,
        });
        serde_json::to_vec(&v).unwrap()
    }

    fn read(method: Method, code: u16, body: &[u8]) -> ApiError {
        error_from_response(&method, StatusCode::from_u16(code).unwrap(), &HeaderMap::new(), body)
    }

    #[test]
    fn every_upstream_reason_is_kept() {
        for r in Reason::ALL {
            let e = read(Method::GET, r.code(), &status(r.as_str(), r.code()));
            assert_eq!((e.reason, e.code()), (r, r.code()), "{r:?}");
            assert_eq!(e.message, format!("a {}", r.as_str()));
            assert!(e.is(r), "{r:?}");
        }
    }

    #[test]
    fn gone_expired_and_too_many_requests_are_told_apart() {
        let gone = read(Method::GET, 410, &status("Gone", 410));
        assert!(gone.is_gone() && !gone.is_expired());
        let expired = read(Method::GET, 410, &status("Expired", 410));
        assert!(expired.is_expired() && !expired.is_gone());
        let busy = read(Method::GET, 429, &status("TooManyRequests", 429));
        assert!(busy.is_too_many_requests() && !busy.is_service_unavailable());
        let taken = read(Method::POST, 409, &status("AlreadyExists", 409));
        assert!(taken.is_already_exists() && !taken.is_conflict());
        let stale = read(Method::PUT, 409, &status("Conflict", 409));
        assert!(stale.is_conflict() && !stale.is_already_exists());
    }

    #[test]
    fn a_status_keeps_its_own_code_and_details() {
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "no",
            "reason": "ServerTimeout", "code": 500,
            "details": {"name": "list", "group": "apps", "kind": "deployments", "retryAfterSeconds": 3},
        });
        let e = read(Method::GET, 503, &serde_json::to_vec(&body).unwrap());
        assert_eq!((e.reason, e.code()), (Reason::ServerTimeout, 500));
        assert_eq!(
            e.details.subject,
            Some(Subject { group: "apps".into(), kind: "deployments".into(), name: "list".into() })
        );
        assert_eq!(e.details.retry_after, Some(3));
    }

    #[test]
    fn an_unknown_reason_falls_back_to_the_code() {
        let e = read(Method::GET, 404, &status("SomethingNew", 404));
        assert_eq!(e.reason, Reason::Unknown);
        assert!(e.is_not_found());
        let e = read(Method::GET, 500, &status("", 500));
        assert_eq!((e.reason, e.code()), (Reason::Unknown, 500));
        assert!(e.is_internal_error() && !e.is_not_found());
    }

    #[test]
    fn a_status_without_a_usable_code_takes_the_responses() {
        let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound"});
        let e = read(Method::GET, 404, &serde_json::to_vec(&body).unwrap());
        assert_eq!((e.reason, e.code(), e.message.as_str()), (Reason::NotFound, 404, ""));
        let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Gone", "code": 70000});
        assert_eq!(read(Method::GET, 410, &serde_json::to_vec(&body).unwrap()).code(), 410);
    }

    #[test]
    fn a_body_that_is_no_failure_status_is_read_by_its_code() {
        // Plain text, other JSON, and a Status not reporting a failure.
        let e = read(Method::GET, 404, b"404 page not found\n");
        assert_eq!((e.reason, e.code(), e.message.as_str()), (Reason::NotFound, 404, "404 page not found"));
        let e = read(Method::PUT, 409, br#"{"message":"x"}"#);
        assert_eq!((e.reason, e.code()), (Reason::Conflict, 409));
        let e = read(Method::POST, 409, b"");
        assert_eq!((e.reason, e.code()), (Reason::AlreadyExists, 409));
        assert_eq!(e.message, "the server responded with the status code 409 but did not return more information");
        let success = json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "reason": "NotFound"});
        let e = read(Method::GET, 429, &serde_json::to_vec(&success).unwrap());
        assert_eq!((e.reason, e.code()), (Reason::TooManyRequests, 429));
        let e = read(Method::GET, 410, b"gone");
        assert_eq!((e.reason, e.code()), (Reason::Unknown, 410));
        assert!(e.is_gone() && !e.is_expired());
        let e = read(Method::GET, 502, b"bad gateway");
        assert_eq!((e.reason, e.code()), (Reason::InternalError, 502));
    }

    #[test]
    fn retry_after_of_a_bare_response_is_kept() {
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, "7".parse().unwrap());
        let e = error_from_response(&Method::GET, StatusCode::TOO_MANY_REQUESTS, &headers, b"slow down");
        assert_eq!((e.reason, e.details.retry_after), (Reason::TooManyRequests, Some(7)));
    }
}
