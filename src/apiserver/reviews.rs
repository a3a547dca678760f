//! The review APIs: TokenReview and SelfSubjectReview (authentication.k8s.io/v1),
//! SubjectAccessReview, SelfSubjectAccessReview, LocalSubjectAccessReview and
//! SelfSubjectRulesReview (authorization.k8s.io/v1). Each is create-only and never stored:
//! the answer is the request with its `status` filled in by the real authenticator and
//! authorizer.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::authz::{Attributes, Decision, ResourceAttributes};
use super::handlers::{decode_body, json_response};
use super::request::ResourceRequest;
use super::status::{ApiError, Cause, Reason};
use super::{ApiServer, Identity};

const AUTHN: &str = "authentication.k8s.io";
const AUTHZ: &str = "authorization.k8s.io";

/// The kind served at a review resource, if `r` names one.
pub fn review_kind(r: &ResourceRequest) -> Option<&'static str> {
    if r.version != "v1" {
        return None;
    }
    Some(match (r.group.as_str(), r.resource.as_str()) {
        (AUTHN, "tokenreviews") => "TokenReview",
        (AUTHN, "selfsubjectreviews") => "SelfSubjectReview",
        (AUTHZ, "subjectaccessreviews") => "SubjectAccessReview",
        (AUTHZ, "selfsubjectaccessreviews") => "SelfSubjectAccessReview",
        (AUTHZ, "localsubjectaccessreviews") => "LocalSubjectAccessReview",
        (AUTHZ, "selfsubjectrulesreviews") => "SelfSubjectRulesReview",
        _ => return None,
    })
}

fn user_info(id: &Identity) -> Value {
    let mut u = json!({"username": id.user, "groups": id.groups});
    if !id.uid.is_empty() {
        u["uid"] = json!(id.uid);
    }
    if !id.extra.is_empty() {
        u["extra"] = json!(id.extra);
    }
    u
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn strings_at(v: &Value, ptr: &str) -> Vec<String> {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The attributes of a SubjectAccessReview spec, after upstream's validation of its shape.
fn spec_attributes(kind: &str, spec: &Value, namespace: Option<&str>) -> Result<Attributes, ApiError> {
    let res = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    let mut causes = Vec::new();
    match (res, non) {
        (None, None) => causes.push(Cause::required(
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        (Some(_), Some(_)) => causes.push(Cause::invalid(
            "spec.nonResourceAttributes",
            non.cloned().unwrap_or(Value::Null),
            "cannot be specified in combination with resourceAttributes",
        )),
        _ => {}
    }
    if kind != "SelfSubjectAccessReview"
        && spec.get("user").and_then(Value::as_str).unwrap_or("").is_empty()
        && strings_at(spec, "/groups").is_empty()
    {
        causes.push(Cause::invalid("spec.user", "", "at least one of user or group must be specified"));
    }
    if kind == "LocalSubjectAccessReview" {
        if non.is_some() {
            causes.push(Cause::invalid(
                "spec.nonResourceAttributes",
                non.cloned().unwrap_or(Value::Null),
                "disallowed on this kind of request",
            ));
        }
        if let Some(r) = res {
            let ns = r.get("namespace").and_then(Value::as_str).unwrap_or("");
            if ns != namespace.unwrap_or("") {
                causes.push(Cause::invalid("spec.resourceAttributes.namespace", ns, "must match metadata.namespace"));
            }
        }
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid(AUTHZ, kind, "", causes));
    }
    Ok(match (res, non) {
        (Some(r), _) => Attributes::Resource(ResourceAttributes {
            namespace: str_at(r, "/namespace").into(),
            verb: str_at(r, "/verb").into(),
            group: str_at(r, "/group").into(),
            version: str_at(r, "/version").into(),
            resource: str_at(r, "/resource").into(),
            subresource: str_at(r, "/subresource").into(),
            name: str_at(r, "/name").into(),
        }),
        (None, Some(n)) => Attributes::NonResource { verb: str_at(n, "/verb").into(), path: str_at(n, "/path").into() },
        // Refused by the validation above.
        (None, None) => return Err(ApiError::invalid(AUTHZ, kind, "", vec![])),
    })
}

fn subject_of(spec: &Value) -> Identity {
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_array()
                            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
                            .unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Identity {
        user: str_at(spec, "/user").into(),
        groups: strings_at(spec, "/groups"),
        uid: str_at(spec, "/uid").into(),
        extra,
    }
}

fn access_status(d: &Decision) -> Value {
    match d {
        Decision::Allow { reason } if reason.is_empty() => json!({"allowed": true}),
        Decision::Allow { reason } => json!({"allowed": true, "reason": reason}),
        Decision::Deny { reason } if reason.is_empty() => json!({"allowed": false}),
        Decision::Deny { reason } => json!({"allowed": false, "reason": reason}),
    }
}

impl ApiServer {
    /// Answers a request to a review resource (see [`review_kind`]) for `caller`.
    pub(crate) async fn serve_review(
        &self,
        r: &ResourceRequest,
        kind: &'static str,
        caller: &Identity,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        match self.review(r, kind, caller, headers, body).await {
            Ok(v) => json_response(StatusCode::CREATED, &v),
            Err(e) => axum::response::IntoResponse::into_response(e),
        }
    }

    async fn review(
        &self,
        r: &ResourceRequest,
        kind: &'static str,
        caller: &Identity,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Value, ApiError> {
        let namespaced = kind == "LocalSubjectAccessReview";
        if r.verb != "create" || r.name.is_some() || (namespaced && r.namespace.is_none()) {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ));
        }
        let group = r.group.as_str();
        let mut obj = decode_body(headers, &body)?;
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let expected = format!("{group}/v1");
        if !av.is_empty() && av != expected {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({expected})"
            )));
        }
        let k = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if !k.is_empty() && k != kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({kind})"
            )));
        }
        obj["apiVersion"] = json!(expected);
        obj["kind"] = json!(kind);
        let mut meta = obj.get("metadata").and_then(Value::as_object).cloned().unwrap_or_default();
        if namespaced {
            let ns = r.namespace.clone().unwrap_or_default();
            match meta.get("namespace").and_then(Value::as_str) {
                Some(n) if !n.is_empty() && n != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        }
        meta.insert(
            "creationTimestamp".into(),
            if kind == "SelfSubjectReview" { json!(crate::domain::time::now_rfc3339()) } else { Value::Null },
        );
        obj["metadata"] = Value::Object(meta);
        let spec = obj.get("spec").cloned().unwrap_or(json!({}));
        let status = match kind {
            "SelfSubjectReview" => json!({"userInfo": user_info(caller)}),
            "TokenReview" => self.token_review(&spec).await?,
            "SubjectAccessReview" | "LocalSubjectAccessReview" => {
                let attrs = spec_attributes(kind, &spec, r.namespace.as_deref())?;
                access_status(&self.authorizer.authorize(&subject_of(&spec), &attrs).await)
            }
            "SelfSubjectAccessReview" => {
                let attrs = spec_attributes(kind, &spec, None)?;
                // The spec names the caller, whatever the client put there.
                let mut spec = spec.clone();
                if let Some(m) = spec.as_object_mut() {
                    for k in ["user", "groups", "uid", "extra"] {
                        m.remove(k);
                    }
                }
                obj["spec"] = spec;
                access_status(&self.authorizer.authorize(caller, &attrs).await)
            }
            "SelfSubjectRulesReview" => {
                let ns = str_at(&spec, "/namespace");
                if ns.is_empty() {
                    return Err(ApiError::bad_request("no namespace on request"));
                }
                let rules = self.authorizer.rules_for(caller, ns).await;
                let mut st = Map::new();
                st.insert("resourceRules".into(), Value::Array(rules.resource.iter().map(|r| r.to_json()).collect()));
                st.insert(
                    "nonResourceRules".into(),
                    Value::Array(rules.non_resource.iter().map(|r| r.to_json()).collect()),
                );
                st.insert("incomplete".into(), json!(rules.incomplete));
                if !rules.evaluation_error.is_empty() {
                    st.insert("evaluationError".into(), json!(rules.evaluation_error));
                }
                Value::Object(st)
            }
            _ => return Err(ApiError::new(Reason::NotFound, "the server could not find the requested resource")),
        };
        obj["status"] = status;
        Ok(obj)
    }

    async fn token_review(&self, spec: &Value) -> Result<Value, ApiError> {
        let token = str_at(spec, "/token");
        if token.is_empty() {
            return Err(ApiError::bad_request("token is required for TokenReview in authentication"));
        }
        let wanted = strings_at(spec, "/audiences");
        let api_audiences: Vec<String> = self.opts.tokens.as_ref().map(|t| t.audiences().to_vec()).unwrap_or_default();
        let refused = |why: &str| json!({"user": {}, "error": why});
        // The token is checked for the audiences asked for and the API server's own: one
        // for the API server alone is then refused below, saying why.
        let accepted: Vec<String> = wanted.iter().chain(&api_audiences).cloned().collect();
        let Some((id, token_audiences)) = self.authenticate_token_for(token, Some(&accepted)).await else {
            return Ok(refused("[invalid bearer token, token lookup failed]"));
        };
        // Legacy tokens name no audience: they are good for the API server's own.
        let token_audiences = if token_audiences.is_empty() { api_audiences.clone() } else { token_audiences };
        let audiences: Vec<String> = if wanted.is_empty() {
            token_audiences.iter().filter(|a| api_audiences.contains(a)).cloned().collect()
        } else {
            token_audiences.iter().filter(|a| wanted.contains(a)).cloned().collect()
        };
        if audiences.is_empty() {
            return Ok(refused(&format!("[invalid bearer token, token audiences {token_audiences:?} is invalid for the target audiences {wanted:?}]")));
        }
        Ok(json!({"authenticated": true, "user": user_info(&id), "audiences": audiences}))
    }
}
