//! `serviceaccounts/<name>/token` (authentication.k8s.io/v1 TokenRequest): issues a bound
//! service-account token, as `kubectl create token` and the kubelet's projected volumes ask
//! for one. As upstream: the audiences default to the API server's, the lifetime to an hour
//! (at least 10 minutes), and a token may be bound to a Pod, Secret or Node of the account's
//! namespace whose uid, when given, must match; a token bound to a pod also names the pod's
//! node. The token dies with its account and with the object it is bound to (authentication
//! checks both, see `authn`).

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::handlers::{decode_body, json_response};
use super::registry::workloads::API_ACCESS_TOKEN_SECONDS;
use super::request::ResourceRequest;
use super::status::{ApiError, Cause, Reason};
use super::ApiServer;
use crate::pki::ObjectRef;

/// The lifetime of a token when the request names none.
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
const MIN_EXPIRATION_SECONDS: i64 = 600;
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// How long an extended API access token is valid (upstream's ExpirationExtensionSeconds).
const EXTENDED_EXPIRATION_SECONDS: i64 = 365 * 24 * 60 * 60;

/// What a TokenRequest asks for, defaulted and validated.
#[derive(Debug, PartialEq, Eq)]
pub struct Wanted {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    /// Kind, name and uid (empty: any) of the object the token is bound to.
    pub bound: Option<(String, String, String)>,
}

/// Reads the request's spec: defaults (the API server's `audiences`, an hour) and upstream's
/// validation, as a 422 naming the TokenRequest `name` or a 400 for an unbindable kind.
pub fn wanted(request: &Value, name: &str, audiences: &[String]) -> Result<Wanted, ApiError> {
    let spec = request.get("spec").cloned().unwrap_or(Value::Null);
    let mut causes = Vec::new();
    let asked: Vec<String> = match spec.get("audiences") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    };
    let audiences = if asked.is_empty() { audiences.to_vec() } else { asked };
    let expiration_seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => match v.as_i64() {
            Some(n) => n,
            None => {
                causes.push(Cause::invalid("spec.expirationSeconds", v, "must be an integer"));
                DEFAULT_EXPIRATION_SECONDS
            }
        },
    };
    let invalid_duration = |detail: &str| Cause {
        reason: "FieldValueInvalid",
        field: "spec.expirationSeconds".into(),
        message: format!("Invalid value: {expiration_seconds}: {detail}"),
    };
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        causes.push(invalid_duration("may not specify a duration less than 10 minutes"));
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        causes.push(invalid_duration("may not specify a duration larger than 2^32 seconds"));
    }
    let bound = match spec.get("boundObjectRef") {
        None | Some(Value::Null) => None,
        Some(r) => {
            let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let (kind, api_version, name) = (text("kind"), text("apiVersion"), text("name"));
            if name.is_empty() {
                causes.push(Cause::required("spec.boundObjectRef.name", ""));
            }
            if !matches!(kind.as_str(), "Pod" | "Secret" | "Node") || !matches!(api_version.as_str(), "v1" | "") {
                let gvk = if api_version.is_empty() {
                    format!(", Kind={kind}")
                } else {
                    format!("{api_version}, Kind={kind}")
                };
                return Err(ApiError::bad_request(format!("cannot bind token to object of type {gvk}")));
            }
            Some((kind, name, text("uid")))
        }
    };
    if !causes.is_empty() {
        return Err(ApiError::invalid("authentication.k8s.io", "TokenRequest", name, causes));
    }
    Ok(Wanted { audiences, expiration_seconds, bound })
}

impl ApiServer {
    /// `serviceaccounts/<name>/token`: see the module documentation.
    pub(super) async fn token_request(
        &self,
        r: &ResourceRequest,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Response, ApiError> {
        let not_served = || ApiError::new(Reason::NotFound, "the server could not find the requested resource");
        let tokens = self.opts.tokens.as_ref().ok_or_else(not_served)?;
        let ns = r.namespace.as_deref().ok_or_else(not_served)?;
        let name = r.name.as_deref().unwrap_or("");
        let request = decode_body(headers, body)?;
        let wanted = wanted(&request, name, tokens.audiences())?;

        let get = |plural: &'static str, namespaced: bool, object: String| async move {
            let rt = self.resource_type("", "v1", plural).ok_or_else(not_served)?;
            self.registry.get(&rt, namespaced.then_some(ns), &object).await
        };
        let uid_of = |v: &Value| v.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
        let account = get("serviceaccounts", true, name.to_string()).await?;
        let now = OffsetDateTime::now_utc();
        // As upstream's --service-account-extend-token-expiration (on by default): a pod's
        // API access token (3607 s) is valid for a year, and says when to renew, so that
        // pods keep working while their node cannot renew it.
        let extended = wanted.expiration_seconds == API_ACCESS_TOKEN_SECONDS
            && wanted.bound.as_ref().is_some_and(|(kind, _, _)| kind == "Pod");
        let lifetime = if extended { EXTENDED_EXPIRATION_SECONDS } else { wanted.expiration_seconds };
        let mut claims =
            tokens.bound_claims(ns, ObjectRef::new(name, uid_of(&account)), now, Duration::seconds(lifetime));
        if extended {
            if let Some(k) = claims.kubernetes.as_mut() {
                k.warnafter = Some(now.unix_timestamp() + wanted.expiration_seconds);
            }
        }
        claims.aud = wanted.audiences.clone();
        claims.jti = Some(super::registry::meta::new_uid());
        if let Some((kind, object, uid)) = &wanted.bound {
            let (plural, namespaced) = match kind.as_str() {
                "Pod" => ("pods", true),
                "Secret" => ("secrets", true),
                _ => ("nodes", false),
            };
            let found = get(plural, namespaced, object.clone()).await?;
            let found_uid = uid_of(&found);
            if !uid.is_empty() && *uid != found_uid {
                return Err(ApiError::conflict(
                    "",
                    kind,
                    object,
                    &format!("the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"),
                ));
            }
            let reference = ObjectRef::new(object.clone(), found_uid);
            claims = match kind.as_str() {
                "Pod" => {
                    let claims = claims.with_pod(reference);
                    // The pod's node, when it has one that exists.
                    match found.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                        Some(node) => match get("nodes", false, node.to_string()).await {
                            Ok(n) => claims.with_node(ObjectRef::new(node, uid_of(&n))),
                            Err(_) => claims,
                        },
                        None => claims,
                    }
                }
                "Secret" => claims.with_secret(reference),
                _ => claims.with_node(reference),
            };
        }
        let token = tokens.issue(&claims).map_err(|e| ApiError::internal(e.to_string()))?;
        let expires = (now + Duration::seconds(wanted.expiration_seconds)).format(&Rfc3339).unwrap_or_default();
        let bound = wanted.bound.as_ref().map(|(kind, object, uid)| {
            let mut b = json!({"kind": kind, "apiVersion": "v1", "name": object});
            if !uid.is_empty() {
                b["uid"] = json!(uid);
            }
            b
        });
        let out = json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": {"audiences": wanted.audiences, "expirationSeconds": wanted.expiration_seconds, "boundObjectRef": bound},
            "status": {"token": token, "expirationTimestamp": expires},
        });
        Ok(json_response(StatusCode::CREATED, &out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Vec<String> {
        vec!["https://kubernetes.default.svc.cluster.local".to_string(), "k3rs".to_string()]
    }

    #[test]
    fn defaults_to_the_servers_audiences_and_an_hour() {
        let w = wanted(&json!({"spec": {}}), "default", &api()).unwrap();
        assert_eq!(w, Wanted { audiences: api(), expiration_seconds: 3600, bound: None });
        let w =
            wanted(&json!({"spec": {"audiences": ["vault"], "expirationSeconds": 600}}), "default", &api()).unwrap();
        assert_eq!((w.audiences, w.expiration_seconds), (vec!["vault".to_string()], 600));
    }

    #[test]
    fn refuses_short_and_huge_lifetimes_in_upstreams_words() {
        let e = wanted(&json!({"spec": {"expirationSeconds": 60}}), "default", &api()).unwrap_err();
        assert!(e.is(Reason::Invalid));
        assert_eq!(
            e.message,
            "TokenRequest.authentication.k8s.io \"default\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        let e = wanted(&json!({"spec": {"expirationSeconds": 1i64 << 33}}), "default", &api()).unwrap_err();
        assert!(e.message.contains("may not specify a duration larger than 2^32 seconds"), "{}", e.message);
    }

    #[test]
    fn binds_to_pods_secrets_and_nodes_only() {
        let spec = |kind: &str| json!({"spec": {"boundObjectRef": {"kind": kind, "apiVersion": "v1", "name": "x", "uid": "u"}}});
        for kind in ["Pod", "Secret", "Node"] {
            let w = wanted(&spec(kind), "default", &api()).unwrap();
            assert_eq!(w.bound, Some((kind.to_string(), "x".to_string(), "u".to_string())));
        }
        let e = wanted(&spec("ConfigMap"), "default", &api()).unwrap_err();
        assert!(e.is(Reason::BadRequest));
        assert_eq!(e.message, "cannot bind token to object of type v1, Kind=ConfigMap");
        let e =
            wanted(&json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1"}}}), "d", &api()).unwrap_err();
        assert!(e.message.contains("spec.boundObjectRef.name: Required value"), "{}", e.message);
    }
}
