//! Impersonation: `Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` and
//! `Impersonate-Extra-<key>` headers make a request act as another identity, when the
//! caller may `impersonate` each part (users or serviceaccounts, groups, uids, userextras),
//! as upstream's impersonation filter decides.

use std::collections::BTreeMap;

use axum::http::HeaderMap;

use super::authz::{Attributes, ResourceAttributes};
use super::status::ApiError;
use super::{ApiServer, Identity};

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";

/// What the headers ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requested {
    pub user: Option<String>,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads the impersonation headers; `None` when there are none.
pub fn requested(headers: &HeaderMap) -> Result<Option<Requested>, ApiError> {
    let mut r = Requested::default();
    let mut any = false;
    for (name, value) in headers {
        let name = name.as_str();
        if !name.starts_with("impersonate-") {
            continue;
        }
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request(format!("invalid {name} header: not a string")))?
            .to_string();
        match name {
            USER => r.user = Some(value),
            GROUP => r.groups.push(value),
            UID => r.uid = Some(value),
            _ => match name.strip_prefix(EXTRA_PREFIX) {
                Some(key) => r.extra.entry(percent_decode(key).to_ascii_lowercase()).or_default().push(value),
                None => continue,
            },
        }
        any = true;
    }
    if !any {
        return Ok(None);
    }
    if r.user.as_deref().unwrap_or("").is_empty() {
        let mut asked = Vec::new();
        asked.extend(r.groups.iter().map(|g| format!("group {g:?}")));
        asked.extend(r.uid.iter().map(|u| format!("uid {u:?}")));
        asked.extend(r.extra.iter().map(|(k, v)| format!("extra {k}={v:?}")));
        return Err(ApiError::internal(format!("requested [{}] without impersonating a user", asked.join(", "))));
    }
    Ok(Some(r))
}

fn attrs(group: &str, resource: &str, subresource: &str, namespace: &str, name: &str) -> ResourceAttributes {
    ResourceAttributes {
        verb: "impersonate".into(),
        group: group.into(),
        resource: resource.into(),
        subresource: subresource.into(),
        namespace: namespace.into(),
        name: name.into(),
        version: String::new(),
    }
}

impl ApiServer {
    /// The identity a request acts as: `requester` itself without impersonation headers,
    /// else the impersonated one once `requester` is allowed each part of it.
    pub async fn impersonate(&self, requester: &Identity, headers: &HeaderMap) -> Result<Option<Identity>, ApiError> {
        let Some(req) = requested(headers)? else { return Ok(None) };
        let user = req.user.clone().unwrap_or_default();
        let mut checks = Vec::new();
        let mut groups = req.groups.clone();
        match user.strip_prefix("system:serviceaccount:").and_then(|rest| rest.split_once(':')) {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains(':') => {
                checks.push(attrs("", "serviceaccounts", "", ns, name));
                if groups.is_empty() {
                    groups = vec!["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{ns}")];
                }
            }
            _ => checks.push(attrs("", "users", "", "", &user)),
        }
        for g in &req.groups {
            checks.push(attrs("", "groups", "", "", g));
        }
        for (k, values) in &req.extra {
            for v in values {
                checks.push(attrs("authentication.k8s.io", "userextras", k, "", v));
            }
        }
        if let Some(uid) = &req.uid {
            checks.push(attrs("authentication.k8s.io", "uids", "", "", uid));
        }
        for a in checks {
            let decision = self.authorizer.authorize(requester, &Attributes::Resource(a.clone())).await;
            if !decision.allowed() {
                let ns = Some(a.namespace.as_str()).filter(|n| !n.is_empty());
                return Err(ApiError::forbidden_subresource(
                    &requester.user,
                    "impersonate",
                    &a.group,
                    &a.resource,
                    &a.subresource,
                    ns,
                    Some(&a.name),
                ));
            }
        }
        if user != "system:anonymous"
            && !groups.iter().any(|g| g == "system:authenticated" || g == "system:unauthenticated")
        {
            groups.push("system:authenticated".into());
        }
        Ok(Some(Identity { user, groups, uid: req.uid.unwrap_or_default(), extra: req.extra }))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn headers_are_read_as_upstream_sends_them() {
        let mut h = HeaderMap::new();
        assert_eq!(requested(&h).unwrap(), None);
        h.insert("Impersonate-User", HeaderValue::from_static("jane"));
        h.append("Impersonate-Group", HeaderValue::from_static("dev"));
        h.append("Impersonate-Group", HeaderValue::from_static("ops"));
        h.append("Impersonate-Extra-Example.com%2Fscopes", HeaderValue::from_static("view"));
        h.append("Impersonate-Extra-example.com%2fscopes", HeaderValue::from_static("edit"));
        let r = requested(&h).unwrap().unwrap();
        assert_eq!(r.user.as_deref(), Some("jane"));
        assert_eq!(r.groups, ["dev", "ops"]);
        assert_eq!(r.extra.get("example.com/scopes"), Some(&vec!["view".to_string(), "edit".to_string()]));
        let mut h = HeaderMap::new();
        h.insert("Impersonate-Group", HeaderValue::from_static("dev"));
        let e = requested(&h).unwrap_err();
        assert_eq!(e.code(), 500);
        assert!(e.is_internal_error());
        assert!(e.message.contains("without impersonating a user"), "{}", e.message);
        assert_eq!(percent_decode("a%2Fb%zz%"), "a/b%zz%");
    }
}
