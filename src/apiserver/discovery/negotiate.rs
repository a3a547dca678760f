//! Content negotiation and rendering: which discovery path was asked for, which media type the
//! client's `Accept` header allows, and the response body in that media type.
//!
//! kubectl 1.30+ sends
//! `application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json`
//! and kubectl 1.26–1.29 the same without the v2 entry; a client that gets plain JSON back
//! from `/api` or `/apis` falls back to fetching every group version's document.

use std::collections::HashMap;
use std::sync::OnceLock;

use bytes::Bytes;
use serde::Serialize;

use super::aggregated::{aggregated_discovery, AggregatedVersion, Root};
use super::documents::{api_group, api_group_list, api_resource_list, api_versions};
use super::table;

/// The `Content-Type` of every unaggregated discovery document.
pub const CONTENT_TYPE_JSON: &str = "application/json";

const DISCOVERY_GROUP: &str = "apidiscovery.k8s.io";
const DISCOVERY_LIST_KIND: &str = "APIGroupDiscoveryList";

/// A discovery endpoint, parsed from a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryPath<'a> {
    /// `/api`
    Api,
    /// `/apis`
    Apis,
    /// `/apis/<group>`
    Group(&'a str),
    /// `/api/<version>` (group `""`) or `/apis/<group>/<version>`
    GroupVersion {
        /// API group; `""` for core.
        group: &'a str,
        /// API version.
        version: &'a str,
    },
}

impl<'a> DiscoveryPath<'a> {
    /// Recognizes the discovery paths; a trailing slash is accepted. Deeper paths
    /// (`/api/v1/pods`) are resource requests and give `None`.
    pub fn parse(path: &'a str) -> Option<Self> {
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        let mut parts = trimmed.strip_prefix('/')?.split('/');
        let root = parts.next()?;
        let rest: Vec<&str> = parts.collect();
        if rest.iter().any(|p| p.is_empty()) {
            return None;
        }
        match (root, rest.as_slice()) {
            ("api", []) => Some(DiscoveryPath::Api),
            ("api", [version]) => Some(DiscoveryPath::GroupVersion { group: "", version }),
            ("apis", []) => Some(DiscoveryPath::Apis),
            ("apis", [group]) => Some(DiscoveryPath::Group(group)),
            ("apis", [group, version]) => Some(DiscoveryPath::GroupVersion { group, version }),
            _ => None,
        }
    }

    /// Whether the answer depends on `Accept` (aggregated or not): the response must then
    /// carry `Vary: Accept` so caches keep the two apart.
    pub fn varies_with_accept(&self) -> bool {
        matches!(self, DiscoveryPath::Api | DiscoveryPath::Apis)
    }
}

/// The media type chosen for a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The unaggregated document as plain `application/json`.
    Json,
    /// The aggregated `APIGroupDiscoveryList` in this version.
    Aggregated(AggregatedVersion),
}

impl Format {
    /// The response `Content-Type` for this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => CONTENT_TYPE_JSON,
            Format::Aggregated(v) => v.content_type(),
        }
    }
}

/// A rendered discovery response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The `Content-Type` header value.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

/// Why a discovery request gets no document.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// No such group or group version (404).
    #[error("the server could not find the requested resource")]
    NotFound {
        /// The requested path, for logs.
        path: String,
    },
    /// Nothing in `Accept` can be served (406).
    #[error(
        "only the following media types are accepted: application/json, \
         application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList, \
         application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList (Accept was {accept:?})"
    )]
    NotAcceptable {
        /// The client's `Accept` header.
        accept: String,
    },
    /// Serializing a document failed (a bug, not a client error: 500).
    #[error("encoding the discovery document failed: {0}")]
    EncodeFailed(String),
}

struct MediaRange<'a> {
    main: &'a str,
    sub: &'a str,
    q: f32,
    group: Option<&'a str>,
    version: Option<&'a str>,
    kind: Option<&'a str>,
}

fn parse_range(item: &str) -> Option<MediaRange<'_>> {
    let mut pieces = item.split(';');
    let (main, sub) = pieces.next()?.trim().split_once('/')?;
    let mut range = MediaRange { main: main.trim(), sub: sub.trim(), q: 1.0, group: None, version: None, kind: None };
    if range.main.is_empty() || range.sub.is_empty() {
        return None;
    }
    for param in pieces {
        let Some((key, value)) = param.split_once('=') else { continue };
        let value = value.trim().trim_matches('"');
        match key.trim().to_ascii_lowercase().as_str() {
            // An unparsable weight makes the whole range unusable rather than preferred.
            "q" => range.q = value.parse().unwrap_or(0.0),
            "g" => range.group = Some(value),
            "v" => range.version = Some(value),
            "as" => range.kind = Some(value),
            _ => {}
        }
    }
    Some(range)
}

fn matches_json(range: &MediaRange<'_>) -> bool {
    let main_ok = range.main == "*" || range.main.eq_ignore_ascii_case("application");
    let sub_ok = range.sub == "*" || range.sub.eq_ignore_ascii_case("json");
    // "*/json" is not a valid range.
    main_ok && sub_ok && !(range.main == "*" && range.sub != "*")
}

fn format_of(range: &MediaRange<'_>, aggregated_allowed: bool) -> Option<Format> {
    if range.q <= 0.0 || !matches_json(range) {
        return None;
    }
    match (range.group, range.version, range.kind) {
        (None, None, None) => Some(Format::Json),
        (Some(DISCOVERY_GROUP), Some(version), Some(DISCOVERY_LIST_KIND)) if aggregated_allowed => match version {
            "v2" => Some(Format::Aggregated(AggregatedVersion::V2)),
            "v2beta1" => Some(Format::Aggregated(AggregatedVersion::V2Beta1)),
            _ => None,
        },
        // A conversion to some other kind (e.g. as=Table) is not something discovery offers.
        _ => None,
    }
}

/// Picks the format for a response from the `Accept` header: the client's most preferred
/// range we can serve (higher `q` first, then more specific, then the client's order).
/// `aggregated_allowed` is true only for `/api` and `/apis`. No header, or an empty one,
/// means plain JSON. `None` when nothing acceptable is listed (answer 406).
pub fn negotiate(accept: Option<&str>, aggregated_allowed: bool) -> Option<Format> {
    let accept = match accept.map(str::trim) {
        None | Some("") => return Some(Format::Json),
        Some(a) => a,
    };
    let mut ranges: Vec<MediaRange<'_>> = accept.split(',').filter_map(parse_range).collect();
    // Stable: ties keep the client's order, which is how kubectl ranks v2 above v2beta1.
    ranges.sort_by(|a, b| {
        b.q.total_cmp(&a.q)
            .then_with(|| (b.main != "*").cmp(&(a.main != "*")))
            .then_with(|| (b.sub != "*").cmp(&(a.sub != "*")))
    });
    ranges.iter().find_map(|r| format_of(r, aggregated_allowed))
}

/// Documents that do not depend on the request, encoded once.
struct Rendered {
    aggregated: HashMap<(Root, AggregatedVersion), Bytes>,
    group_list: Bytes,
    groups: HashMap<&'static str, Bytes>,
    resource_lists: HashMap<(&'static str, &'static str), Bytes>,
}

/// JSON with the newline upstream's encoder ends every body with.
fn encode<T: Serialize>(value: &T) -> Result<Bytes, DiscoveryError> {
    let mut out = serde_json::to_vec(value).map_err(|e| DiscoveryError::EncodeFailed(e.to_string()))?;
    out.push(b'\n');
    Ok(Bytes::from(out))
}

/// Upstream's core-group documents (`/api`, `/api/v1`) are written without `apiVersion`;
/// k8s-openapi always writes it, so it is taken out again.
fn encode_without_api_version<T: Serialize>(value: &T) -> Result<Bytes, DiscoveryError> {
    let mut json = serde_json::to_value(value).map_err(|e| DiscoveryError::EncodeFailed(e.to_string()))?;
    if let Some(object) = json.as_object_mut() {
        object.remove("apiVersion");
    }
    encode(&json)
}

fn render() -> Result<Rendered, DiscoveryError> {
    let mut aggregated = HashMap::new();
    for root in [Root::Api, Root::Apis] {
        for version in [AggregatedVersion::V2, AggregatedVersion::V2Beta1] {
            aggregated.insert((root, version), encode(&aggregated_discovery(root, version))?);
        }
    }
    let mut groups = HashMap::new();
    let mut resource_lists = HashMap::new();
    for group in table::groups() {
        if let Some(doc) = api_group(group.name) {
            groups.insert(group.name, encode(&doc)?);
        }
        for gv in group.versions {
            let Some(list) = api_resource_list(gv.group, gv.version) else { continue };
            let body = if gv.group.is_empty() { encode_without_api_version(&list)? } else { encode(&list)? };
            resource_lists.insert((gv.group, gv.version), body);
        }
    }
    Ok(Rendered { aggregated, group_list: encode(&api_group_list())?, groups, resource_lists })
}

fn rendered() -> Result<&'static Rendered, DiscoveryError> {
    static RENDERED: OnceLock<Result<Rendered, String>> = OnceLock::new();
    RENDERED
        .get_or_init(|| render().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| DiscoveryError::EncodeFailed(e.clone()))
}

fn not_found(path: &DiscoveryPath<'_>) -> DiscoveryError {
    let path = match path {
        DiscoveryPath::Api => "/api".to_string(),
        DiscoveryPath::Apis => "/apis".to_string(),
        DiscoveryPath::Group(g) => format!("/apis/{g}"),
        DiscoveryPath::GroupVersion { group: "", version } => format!("/api/{version}"),
        DiscoveryPath::GroupVersion { group, version } => format!("/apis/{group}/{version}"),
    };
    DiscoveryError::NotFound { path }
}

/// Answers a discovery request: the body for `path` in the best format `accept` allows.
/// `server_address` (`host:port` clients should use) goes into the unaggregated `/api`
/// document. Unknown groups and versions are `NotFound` whatever the `Accept` header says,
/// as upstream checks the path first.
pub fn respond(
    path: &DiscoveryPath<'_>,
    accept: Option<&str>,
    server_address: &str,
) -> Result<Negotiated, DiscoveryError> {
    let docs = rendered()?;
    let (format, body) = match *path {
        DiscoveryPath::Api | DiscoveryPath::Apis => {
            let root = if *path == DiscoveryPath::Api { Root::Api } else { Root::Apis };
            let format = negotiate(accept, true).ok_or_else(|| not_acceptable(accept))?;
            let body = match (format, root) {
                (Format::Aggregated(v), _) => docs.aggregated.get(&(root, v)).cloned(),
                (Format::Json, Root::Api) => Some(encode_without_api_version(&api_versions(server_address))?),
                (Format::Json, Root::Apis) => Some(docs.group_list.clone()),
            };
            (format, body)
        }
        DiscoveryPath::Group(group) => {
            let body = docs.groups.get(group).cloned().ok_or_else(|| not_found(path))?;
            (negotiate(accept, false).ok_or_else(|| not_acceptable(accept))?, Some(body))
        }
        DiscoveryPath::GroupVersion { group, version } => {
            let body = docs.resource_lists.get(&(group, version)).cloned().ok_or_else(|| not_found(path))?;
            (negotiate(accept, false).ok_or_else(|| not_acceptable(accept))?, Some(body))
        }
    };
    let body = body.ok_or_else(|| DiscoveryError::EncodeFailed(format!("no rendered document for {path:?}")))?;
    Ok(Negotiated { content_type: format.content_type(), body })
}

fn not_acceptable(accept: Option<&str>) -> DiscoveryError {
    DiscoveryError::NotAcceptable { accept: accept.unwrap_or_default().to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Request headers printed by `kubectl.1.27 --v=9` (client v1.27.16) and
    /// `kubectl.1.33 --v=9` (client v1.33.1) when listing api-resources.
    const KUBECTL_1_27: &str =
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    const KUBECTL_1_33: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    /// What client-go sends for an unaggregated group-version document.
    const LEGACY: &str = "application/json, */*";

    fn json(n: &Negotiated) -> Value {
        serde_json::from_slice(&n.body).unwrap_or(Value::Null)
    }

    #[test]
    fn kubectl_1_27_gets_v2beta1() {
        for (path, items) in [(DiscoveryPath::Api, 1), (DiscoveryPath::Apis, table::named_groups().count())] {
            let r = respond(&path, Some(KUBECTL_1_27), "127.0.0.1:6443").map_err(|e| e.to_string());
            let r = r.as_ref().map(|n| (n.content_type, json(n)));
            let (content_type, doc) = r.unwrap_or(("", Value::Null));
            assert_eq!(content_type, "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList");
            assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2beta1");
            assert_eq!(doc["kind"], "APIGroupDiscoveryList");
            assert_eq!(doc["items"].as_array().map(Vec::len), Some(items));
        }
    }

    #[test]
    fn kubectl_1_33_gets_v2() {
        let r = respond(&DiscoveryPath::Apis, Some(KUBECTL_1_33), "127.0.0.1:6443").map_err(|e| e.to_string());
        let n = r.as_ref().map(|n| (n.content_type, json(n)));
        let (content_type, doc) = n.unwrap_or(("", Value::Null));
        assert_eq!(content_type, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(doc["items"][0]["metadata"]["name"], "apps");
    }

    #[test]
    fn plain_json_gets_the_unaggregated_documents() {
        let api = respond(&DiscoveryPath::Api, Some("application/json"), "10.1.2.3:6443").map_err(|e| e.to_string());
        let doc = api.as_ref().map(json).unwrap_or(Value::Null);
        assert_eq!(api.as_ref().map(|n| n.content_type).ok(), Some("application/json"));
        assert_eq!(
            doc,
            serde_json::json!({
                "kind": "APIVersions",
                "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.1.2.3:6443"}]
            })
        );
        let apis = respond(&DiscoveryPath::Apis, None, "x").map(|n| json(&n)).unwrap_or(Value::Null);
        assert_eq!(apis["kind"], "APIGroupList");
        assert_eq!(apis["apiVersion"], "v1");
        let core = respond(&DiscoveryPath::GroupVersion { group: "", version: "v1" }, Some(LEGACY), "x")
            .map(|n| json(&n))
            .unwrap_or(Value::Null);
        assert_eq!(core["kind"], "APIResourceList");
        assert_eq!(core["groupVersion"], "v1");
        assert!(core.get("apiVersion").is_none(), "upstream's /api/v1 has no apiVersion");
        let apps = respond(&DiscoveryPath::GroupVersion { group: "apps", version: "v1" }, Some(LEGACY), "x")
            .map(|n| json(&n))
            .unwrap_or(Value::Null);
        assert_eq!(apps["apiVersion"], "v1");
        assert_eq!(apps["groupVersion"], "apps/v1");
        let group = respond(&DiscoveryPath::Group("autoscaling"), None, "x").map(|n| json(&n)).unwrap_or(Value::Null);
        assert_eq!(group["kind"], "APIGroup");
        assert_eq!(group["preferredVersion"]["version"], "v2");
    }

    #[test]
    fn aggregated_is_only_for_the_roots() {
        // A group-version document asked for only as aggregated cannot be served...
        let r = respond(&DiscoveryPath::GroupVersion { group: "apps", version: "v1" }, Some(KUBECTL_1_33), "x");
        assert_eq!(r.map(|n| n.content_type).ok(), Some("application/json"), "falls back to the json entry");
        let only_aggregated = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
        let r = respond(&DiscoveryPath::GroupVersion { group: "apps", version: "v1" }, Some(only_aggregated), "x");
        assert!(matches!(r, Err(DiscoveryError::NotAcceptable { .. })));
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in [
            DiscoveryPath::Group("example.com"),
            DiscoveryPath::GroupVersion { group: "apps", version: "v1beta1" },
            DiscoveryPath::GroupVersion { group: "", version: "v2" },
            DiscoveryPath::Group(""),
        ] {
            assert!(matches!(respond(&path, None, "x"), Err(DiscoveryError::NotFound { .. })), "{path:?}");
        }
    }

    #[test]
    fn negotiation_follows_weights_and_wildcards() {
        assert_eq!(negotiate(None, true), Some(Format::Json));
        assert_eq!(negotiate(Some("  "), true), Some(Format::Json));
        assert_eq!(negotiate(Some("*/*"), true), Some(Format::Json));
        assert_eq!(negotiate(Some("application/*"), true), Some(Format::Json));
        assert_eq!(negotiate(Some("application/json; charset=utf-8"), true), Some(Format::Json));
        assert_eq!(negotiate(Some("text/html"), true), None);
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf"), true), None);
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf, */*"), true), Some(Format::Json));
        assert_eq!(negotiate(Some("application/json;q=0"), true), None);
        assert_eq!(negotiate(Some("application/json;as=Table;v=v1;g=meta.k8s.io"), true), None);
        // The weight beats the order.
        let weighted = "application/json;q=0.5, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
        assert_eq!(negotiate(Some(weighted), true), Some(Format::Aggregated(AggregatedVersion::V2)));
        // Parameters may be spaced, quoted and in any order.
        let loose = "application/json; as=\"APIGroupDiscoveryList\"; v=v2beta1; g=apidiscovery.k8s.io";
        assert_eq!(negotiate(Some(loose), true), Some(Format::Aggregated(AggregatedVersion::V2Beta1)));
        assert_eq!(negotiate(Some(loose), false), None);
        // An unknown discovery version is skipped for the next acceptable entry.
        let future = "application/json;g=apidiscovery.k8s.io;v=v3;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(Some(future), true), Some(Format::Json));
        assert_eq!(negotiate(Some("garbage, ,/,a/"), true), None);
    }

    #[test]
    fn paths() {
        assert_eq!(DiscoveryPath::parse("/api"), Some(DiscoveryPath::Api));
        assert_eq!(DiscoveryPath::parse("/api/"), Some(DiscoveryPath::Api));
        assert_eq!(DiscoveryPath::parse("/apis"), Some(DiscoveryPath::Apis));
        assert_eq!(DiscoveryPath::parse("/api/v1"), Some(DiscoveryPath::GroupVersion { group: "", version: "v1" }));
        assert_eq!(DiscoveryPath::parse("/apis/apps"), Some(DiscoveryPath::Group("apps")));
        assert_eq!(
            DiscoveryPath::parse("/apis/apps/v1/"),
            Some(DiscoveryPath::GroupVersion { group: "apps", version: "v1" })
        );
        for other in ["/api/v1/pods", "/apis/apps/v1/deployments", "/", "", "/version", "/apis//v1", "api", "/apix"] {
            assert_eq!(DiscoveryPath::parse(other), None, "{other:?}");
        }
        assert!(DiscoveryPath::Api.varies_with_accept());
        assert!(!DiscoveryPath::Group("apps").varies_with_accept());
    }
}
