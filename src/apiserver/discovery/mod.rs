//! Discovery: the built-in resources, their names, kinds, verbs and short names, and the
//! documents that publish them (`/api`, `/apis`, `/api/v1`, `/apis/<group>[/<version>]`,
//! aggregated discovery, `/version`), exactly as a Kubernetes 1.33 apiserver serves them.
//!
//! Pure data and rendering, no I/O: the router parses the path with [`DiscoveryPath::parse`]
//! and calls [`respond`] with the `Accept` header, which picks the media type (aggregated v2,
//! v2beta1 or plain JSON) and returns the `Content-Type` and body. Responses for
//! [`DiscoveryPath::Api`] and [`DiscoveryPath::Apis`] must carry `Vary: Accept`. The registry
//! uses [`lookup`], [`lookup_kind`] and [`ResourceInfo`] to know what a path names.

mod aggregated;
mod documents;
mod negotiate;
mod table;
mod version;

pub use aggregated::{
    aggregated_discovery, APIGroupDiscovery, APIGroupDiscoveryList, APIResourceDiscovery, APISubresourceDiscovery,
    APIVersionDiscovery, AggregatedVersion, Freshness, GroupMeta, GroupVersionKind, ListMeta, ResourceScope, Root,
};
pub use documents::{api_group, api_group_list, api_resource_list, api_versions};
pub use negotiate::{negotiate, respond, DiscoveryError, DiscoveryPath, Format, Negotiated, CONTENT_TYPE_JSON};
pub use table::{
    group, group_version, groups, lookup, lookup_kind, lookup_short_name, named_groups, preferred_resources, resources,
    GroupInfo, GroupVersionInfo, ResourceInfo, SubresourceInfo, VERBS_ALL, VERBS_CREATE, VERBS_CREATE_GET,
    VERBS_GET_LIST, VERBS_GET_PATCH_UPDATE, VERBS_NO_DELETECOLLECTION, VERBS_PROXY,
};
pub use version::{
    git_version, platform, version_info, K3RS_RELEASE, KUBERNETES_MAJOR, KUBERNETES_MINOR, KUBERNETES_PATCH,
};
