//! What a request is about: parsed from its method, path and query the way upstream's
//! request-info factory does, before authorization and dispatch.

use axum::http::Method;

/// A resource request (`/api/...` or `/apis/...` below a group version).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceRequest {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: &'static str,
    /// Empty for the core group.
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Any request the API server answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestInfo {
    Resource(ResourceRequest),
    /// Anything else (`/healthz`, `/api`, `/apis/apps`, `/version`, ...), with its verb
    /// (`get`, `post`, ...), for non-resource authorization.
    NonResource {
        verb: String,
        path: String,
    },
}

/// Splits a path into non-empty segments.
fn segments(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

/// Whether the query asks for a watch (`watch=true` or `watch=1`).
pub fn wants_watch(query: Option<&str>) -> bool {
    query.is_some_and(|q| {
        q.split('&').any(|kv| {
            let mut it = kv.splitn(2, '=');
            it.next() == Some("watch") && matches!(it.next(), Some("true") | Some("1"))
        })
    })
}

pub fn parse(method: &Method, path: &str, query: Option<&str>) -> RequestInfo {
    let non_resource =
        || RequestInfo::NonResource { verb: method.as_str().to_ascii_lowercase(), path: path.to_string() };
    let parts = segments(path);
    let (group, version, rest) = match parts.as_slice() {
        ["api", version, rest @ ..] if !rest.is_empty() => (String::new(), version.to_string(), rest),
        ["apis", group, version, rest @ ..] if !rest.is_empty() => (group.to_string(), version.to_string(), rest),
        _ => return non_resource(),
    };
    let mut rest: Vec<&str> = rest.to_vec();
    let mut watch_path = false;
    if rest.first() == Some(&"watch") {
        watch_path = true;
        rest.remove(0);
    }
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        // `namespaces/<name>/status` and `/finalize` are the namespace's own subresources;
        // `namespaces/<ns>/<resource>...` is a resource in that namespace.
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest.drain(..2);
        } else {
            namespace = None;
        }
    }
    if rest.is_empty() {
        return non_resource();
    }
    let resource = rest[0].to_string();
    let name = rest.get(1).map(|s| s.to_string());
    let subresource = if rest.len() > 2 { Some(rest[2..].join("/")) } else { None };
    // A namespace's own subresources name it as `name`, not as its namespace.
    let verb: &'static str = match *method {
        Method::GET | Method::HEAD => {
            if watch_path || wants_watch(query) {
                "watch"
            } else if name.is_some() {
                "get"
            } else {
                "list"
            }
        }
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => {
            if name.is_some() {
                "delete"
            } else {
                "deletecollection"
            }
        }
        _ => return non_resource(),
    };
    RequestInfo::Resource(ResourceRequest { verb, group, version, namespace, resource, name, subresource })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(method: Method, path: &str, query: Option<&str>) -> ResourceRequest {
        match parse(&method, path, query) {
            RequestInfo::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_and_cluster_resources() {
        let r = res(Method::GET, "/api/v1/namespaces/default/configmaps/foo", None);
        assert_eq!(
            (r.verb, r.namespace.as_deref(), r.resource.as_str(), r.name.as_deref()),
            ("get", Some("default"), "configmaps", Some("foo"))
        );
        let r = res(Method::GET, "/apis/apps/v1/deployments", None);
        assert_eq!((r.verb, r.group.as_str(), r.namespace, r.resource.as_str()), ("list", "apps", None, "deployments"));
        let r = res(Method::GET, "/api/v1/namespaces/kube-system", None);
        assert_eq!(
            (r.verb, r.namespace, r.resource.as_str(), r.name.as_deref()),
            ("get", None, "namespaces", Some("kube-system"))
        );
        let r = res(Method::PUT, "/api/v1/namespaces/foo/finalize", None);
        assert_eq!(
            (r.verb, r.resource.as_str(), r.name.as_deref(), r.subresource.as_deref()),
            ("update", "namespaces", Some("foo"), Some("finalize"))
        );
        let r = res(Method::GET, "/api/v1/namespaces", None);
        assert_eq!((r.verb, r.resource.as_str()), ("list", "namespaces"));
    }

    #[test]
    fn verbs_and_subresources() {
        assert_eq!(res(Method::GET, "/api/v1/pods", Some("watch=true")).verb, "watch");
        assert_eq!(res(Method::GET, "/api/v1/watch/namespaces/a/pods", None).verb, "watch");
        assert_eq!(res(Method::DELETE, "/api/v1/namespaces/a/pods", None).verb, "deletecollection");
        let r = res(Method::PATCH, "/apis/apps/v1/namespaces/a/deployments/web/scale", None);
        assert_eq!((r.verb, r.subresource.as_deref()), ("patch", Some("scale")));
        let r = res(Method::GET, "/api/v1/namespaces/a/pods/p/log", None);
        assert_eq!(r.subresource.as_deref(), Some("log"));
    }

    #[test]
    fn non_resource_paths() {
        for p in ["/healthz", "/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/version", "/openapi/v2"] {
            assert!(matches!(parse(&Method::GET, p, None), RequestInfo::NonResource { .. }), "{p}");
        }
    }
}
