//! Aggregated discovery (`apidiscovery.k8s.io`): every group, version and resource in one
//! document, which kubectl 1.26+ asks for at `/api` and `/apis` instead of fetching one
//! document per group version. k8s-openapi does not carry these types, so they are defined
//! here with upstream's JSON field names; v2 and v2beta1 differ only in `apiVersion`.

use serde::{Deserialize, Serialize};

use super::table::{GroupInfo, GroupVersionInfo, ResourceInfo, SubresourceInfo};

/// Which version of the aggregated discovery API to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregatedVersion {
    /// `apidiscovery.k8s.io/v2`, asked for by kubectl 1.30 and later.
    V2,
    /// `apidiscovery.k8s.io/v2beta1`, the only one kubectl 1.26–1.29 know; 1.33 still serves it.
    V2Beta1,
}

impl AggregatedVersion {
    /// The `v=` parameter of the media type: `v2` or `v2beta1`.
    pub fn as_str(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => "v2",
            AggregatedVersion::V2Beta1 => "v2beta1",
        }
    }

    /// The document's `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => "apidiscovery.k8s.io/v2",
            AggregatedVersion::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }

    /// The response `Content-Type` upstream sends for this version.
    pub fn content_type(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            AggregatedVersion::V2Beta1 => "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
        }
    }
}

/// Which of the two aggregated documents: the core group (`/api`) or the named groups (`/apis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Root {
    /// `/api`: the core group only.
    Api,
    /// `/apis`: every named group in priority order.
    Apis,
}

/// `APIGroupDiscoveryList`: the body of an aggregated `/api` or `/apis` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct APIGroupDiscoveryList {
    /// `APIGroupDiscoveryList`.
    pub kind: String,
    /// `apidiscovery.k8s.io/v2` or `apidiscovery.k8s.io/v2beta1`.
    pub api_version: String,
    /// Always empty: the document has no resourceVersion.
    pub metadata: ListMeta,
    /// Groups in priority order.
    pub items: Vec<APIGroupDiscovery>,
}

/// Empty list metadata, serialized as `{}` as upstream does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMeta {}

/// One API group and its versions, preferred first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct APIGroupDiscovery {
    /// Only `name` is set (absent for the core group).
    pub metadata: GroupMeta,
    /// Versions in descending preference.
    pub versions: Vec<APIVersionDiscovery>,
}

/// The object metadata of an [`APIGroupDiscovery`]. Upstream serializes a full ObjectMeta
/// whose only set field is the name, so `creationTimestamp` appears as `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupMeta {
    /// The group's name; `None` for the core group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Always `null`.
    #[serde(default)]
    pub creation_timestamp: Option<String>,
}

/// One version of a group and its resources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct APIVersionDiscovery {
    /// e.g. `v1`.
    pub version: String,
    /// Resources sorted by name.
    #[serde(default)]
    pub resources: Vec<APIResourceDiscovery>,
    /// `Current` or `Stale`; built-in groups are always current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<Freshness>,
}

/// Whether a version's information is up to date (aggregated servers can go stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Freshness {
    /// Up to date.
    Current,
    /// Last known data of an unreachable aggregated server.
    Stale,
}

/// Whether a resource is namespaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceScope {
    /// Objects live in a namespace.
    Namespaced,
    /// Objects are cluster-wide.
    Cluster,
}

/// The kind a resource or subresource answers with. Empty group and version mean "the
/// group version this resource is listed under".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionKind {
    /// API group of the kind.
    pub group: String,
    /// API version of the kind.
    pub version: String,
    /// The kind.
    pub kind: String,
}

/// One resource of a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct APIResourceDiscovery {
    /// Plural name.
    pub resource: String,
    /// The kind returned; clients reject a resource without one.
    pub response_kind: Option<GroupVersionKind>,
    /// Namespaced or cluster-scoped.
    pub scope: ResourceScope,
    /// Singular name.
    pub singular_resource: String,
    /// Verbs, sorted.
    pub verbs: Vec<String>,
    /// Short names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub short_names: Vec<String>,
    /// Categories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Subresources sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subresources: Vec<APISubresourceDiscovery>,
}

/// One subresource of a resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct APISubresourceDiscovery {
    /// Name after the slash, e.g. `status`.
    pub subresource: String,
    /// The kind returned.
    pub response_kind: Option<GroupVersionKind>,
    /// Kinds accepted in requests, when they differ from the response kind (never for built-ins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_types: Vec<GroupVersionKind>,
    /// Verbs, sorted.
    pub verbs: Vec<String>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn resource(r: &ResourceInfo) -> APIResourceDiscovery {
    APIResourceDiscovery {
        resource: r.plural.to_string(),
        response_kind: Some(GroupVersionKind {
            group: String::new(),
            version: String::new(),
            kind: r.kind.to_string(),
        }),
        scope: if r.namespaced { ResourceScope::Namespaced } else { ResourceScope::Cluster },
        singular_resource: r.singular.to_string(),
        verbs: strings(r.verbs),
        short_names: strings(r.short_names),
        categories: strings(r.categories),
        subresources: r.subresources().map(subresource).collect(),
    }
}

fn subresource(s: &SubresourceInfo) -> APISubresourceDiscovery {
    APISubresourceDiscovery {
        subresource: s.name.to_string(),
        response_kind: Some(GroupVersionKind {
            group: s.group.unwrap_or_default().to_string(),
            version: s.version.unwrap_or_default().to_string(),
            kind: s.kind.to_string(),
        }),
        accepted_types: Vec::new(),
        verbs: strings(s.verbs),
    }
}

fn version(v: &GroupVersionInfo) -> APIVersionDiscovery {
    APIVersionDiscovery {
        version: v.version.to_string(),
        resources: v.resources().map(resource).collect(),
        freshness: Some(Freshness::Current),
    }
}

fn group(g: &GroupInfo) -> APIGroupDiscovery {
    APIGroupDiscovery {
        metadata: GroupMeta { name: (!g.name.is_empty()).then(|| g.name.to_string()), creation_timestamp: None },
        versions: g.versions.iter().map(version).collect(),
    }
}

/// The aggregated discovery document for `/api` or `/apis`.
pub fn aggregated_discovery(root: Root, version: AggregatedVersion) -> APIGroupDiscoveryList {
    let items = match root {
        Root::Api => super::table::group("").into_iter().map(group).collect(),
        Root::Apis => super::table::named_groups().map(group).collect(),
    };
    APIGroupDiscoveryList {
        kind: "APIGroupDiscoveryList".to_string(),
        api_version: version.api_version().to_string(),
        metadata: ListMeta {},
        items,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn core_document_has_one_nameless_group() {
        let doc = serde_json::to_value(aggregated_discovery(Root::Api, AggregatedVersion::V2)).unwrap_or_default();
        assert_eq!(doc["kind"], "APIGroupDiscoveryList");
        assert_eq!(doc["apiVersion"], "apidiscovery.k8s.io/v2");
        assert_eq!(doc["metadata"], json!({}));
        let items = doc["items"].as_array().cloned().unwrap_or_default();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["metadata"], json!({"creationTimestamp": null}));
        assert_eq!(items[0]["versions"][0]["version"], "v1");
        assert_eq!(items[0]["versions"][0]["freshness"], "Current");
    }

    #[test]
    fn subresources_carry_their_kinds() {
        let doc = serde_json::to_value(aggregated_discovery(Root::Api, AggregatedVersion::V2)).unwrap_or_default();
        let resources = doc["items"][0]["versions"][0]["resources"].as_array().cloned().unwrap_or_default();
        let pods = resources.iter().find(|r| r["resource"] == "pods").cloned().unwrap_or_default();
        assert_eq!(pods["scope"], "Namespaced");
        assert_eq!(pods["singularResource"], "pod");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["responseKind"], json!({"group": "", "version": "", "kind": "Pod"}));
        let eviction = pods["subresources"].as_array().and_then(|s| s.iter().find(|s| s["subresource"] == "eviction"));
        assert_eq!(
            eviction.cloned(),
            Some(json!({
                "subresource": "eviction",
                "responseKind": {"group": "policy", "version": "v1", "kind": "Eviction"},
                "verbs": ["create"]
            }))
        );
        // No empty lists on the wire: upstream omits them.
        let secrets = resources.iter().find(|r| r["resource"] == "secrets").cloned().unwrap_or_default();
        assert!(secrets.get("shortNames").is_none() && secrets.get("subresources").is_none());
    }

    #[test]
    fn named_groups_keep_priority_and_preference_order() {
        let doc = aggregated_discovery(Root::Apis, AggregatedVersion::V2Beta1);
        assert_eq!(doc.api_version, "apidiscovery.k8s.io/v2beta1");
        let names: Vec<_> = doc.items.iter().filter_map(|g| g.metadata.name.as_deref()).collect();
        assert_eq!(names.len(), doc.items.len(), "every named group has a name");
        assert_eq!(&names[..3], &["apps", "events.k8s.io", "authentication.k8s.io"]);
        let autoscaling = doc.items.iter().find(|g| g.metadata.name.as_deref() == Some("autoscaling"));
        let versions: Vec<_> =
            autoscaling.map(|g| g.versions.iter().map(|v| v.version.as_str()).collect()).unwrap_or_default();
        assert_eq!(versions, ["v2", "v1"]);
    }

    #[test]
    fn round_trips_through_json() {
        let doc = aggregated_discovery(Root::Apis, AggregatedVersion::V2);
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let back: Result<APIGroupDiscoveryList, _> = serde_json::from_slice(&bytes);
        assert_eq!(back.ok(), Some(doc));
    }
}
