//! The unaggregated discovery documents, on the k8s-openapi metav1 types: `/api`
//! (APIVersions), `/apis` (APIGroupList), `/apis/<group>` (APIGroup), and `/api/v1` and
//! `/apis/<group>/<version>` (APIResourceList, subresources listed as `pods/status` entries).
//! Clients older than aggregated discovery, and newer ones when the server declines it, walk
//! these.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, APIVersions, GroupVersionForDiscovery,
    ServerAddressByClientCIDR,
};

use super::table::{self, GroupInfo, GroupVersionInfo, ResourceInfo, SubresourceInfo};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn non_empty(items: &[&str]) -> Option<Vec<String>> {
    (!items.is_empty()).then(|| strings(items))
}

/// `/api`: the core versions and the address clients should use, for every client network.
pub fn api_versions(server_address: &str) -> APIVersions {
    APIVersions {
        server_address_by_client_cidrs: vec![ServerAddressByClientCIDR {
            client_cidr: "0.0.0.0/0".to_string(),
            server_address: server_address.to_string(),
        }],
        versions: table::group("")
            .map(|g| g.versions.iter().map(|v| v.version.to_string()).collect())
            .unwrap_or_default(),
    }
}

fn discovery_version(v: &GroupVersionInfo) -> GroupVersionForDiscovery {
    GroupVersionForDiscovery { group_version: v.group_version(), version: v.version.to_string() }
}

fn api_group_of(g: &GroupInfo) -> APIGroup {
    APIGroup {
        name: g.name.to_string(),
        preferred_version: Some(discovery_version(g.preferred())),
        server_address_by_client_cidrs: None,
        versions: g.versions.iter().map(discovery_version).collect(),
    }
}

/// `/apis`: the named groups in priority order, each with its versions (preferred first).
pub fn api_group_list() -> APIGroupList {
    APIGroupList { groups: table::named_groups().map(api_group_of).collect() }
}

/// `/apis/<group>`; `None` for the core group (it has no such path) and unknown groups.
pub fn api_group(name: &str) -> Option<APIGroup> {
    table::named_groups().find(|g| g.name == name).map(api_group_of)
}

fn resource_entry(r: &ResourceInfo) -> APIResource {
    APIResource {
        categories: non_empty(r.categories),
        group: None,
        kind: r.kind.to_string(),
        name: r.plural.to_string(),
        namespaced: r.namespaced,
        short_names: non_empty(r.short_names),
        singular_name: r.singular.to_string(),
        storage_version_hash: None,
        verbs: strings(r.verbs),
        version: None,
    }
}

fn subresource_entry(r: &ResourceInfo, s: &SubresourceInfo) -> APIResource {
    APIResource {
        categories: None,
        group: s.group.map(str::to_string),
        kind: s.kind.to_string(),
        name: format!("{}/{}", r.plural, s.name),
        namespaced: r.namespaced,
        short_names: None,
        // Upstream leaves the singular name of subresources empty.
        singular_name: String::new(),
        storage_version_hash: None,
        verbs: strings(s.verbs),
        version: s.version.map(str::to_string),
    }
}

/// `/api/v1` (group `""`) or `/apis/<group>/<version>`: every resource and subresource of
/// the group version, sorted by name as upstream serves them.
pub fn api_resource_list(group: &str, version: &str) -> Option<APIResourceList> {
    let gv = table::group_version(group, version)?;
    let mut resources = Vec::new();
    for r in gv.resources() {
        resources.push(resource_entry(r));
        resources.extend(r.subresources().map(|s| subresource_entry(r, s)));
    }
    // The table keeps resources in name order and each one's subresources after it;
    // "pods/x" sorts between "pods" and "podtemplates" because '/' is below every letter, so
    // this only guards the invariant.
    resources.sort_by(|a, b| a.name.cmp(&b.name));
    Some(APIResourceList { group_version: gv.group_version(), resources })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_versions_carry_the_server_address() {
        let doc = api_versions("10.0.0.5:6443");
        assert_eq!(doc.versions, ["v1"]);
        assert_eq!(doc.server_address_by_client_cidrs.len(), 1);
        assert_eq!(doc.server_address_by_client_cidrs[0].client_cidr, "0.0.0.0/0");
        assert_eq!(doc.server_address_by_client_cidrs[0].server_address, "10.0.0.5:6443");
    }

    #[test]
    fn group_list_prefers_autoscaling_v2() {
        let list = api_group_list();
        assert!(list.groups.iter().all(|g| !g.name.is_empty()));
        let autoscaling = list.groups.iter().find(|g| g.name == "autoscaling");
        let preferred = autoscaling.and_then(|g| g.preferred_version.as_ref()).map(|v| v.group_version.as_str());
        assert_eq!(preferred, Some("autoscaling/v2"));
        let versions: Vec<_> =
            autoscaling.map(|g| g.versions.iter().map(|v| v.group_version.as_str()).collect()).unwrap_or_default();
        assert_eq!(versions, ["autoscaling/v2", "autoscaling/v1"]);
        assert_eq!(api_group("autoscaling").as_ref(), autoscaling);
        assert!(api_group("").is_none());
        assert!(api_group("example.com").is_none());
    }

    #[test]
    fn resource_list_interleaves_subresources() {
        let list = api_resource_list("", "v1").map(|l| l.resources).unwrap_or_default();
        let names: Vec<_> = list.iter().map(|r| r.name.as_str()).collect();
        let pods = names.iter().position(|n| *n == "pods").unwrap_or(usize::MAX);
        assert_eq!(
            names.get(pods..pods + 8),
            Some(
                &[
                    "pods",
                    "pods/attach",
                    "pods/binding",
                    "pods/eviction",
                    "pods/exec",
                    "pods/log",
                    "pods/status",
                    "podtemplates"
                ][..]
            )
        );
        let eviction = list.iter().find(|r| r.name == "pods/eviction");
        assert_eq!(eviction.and_then(|r| r.group.as_deref()), Some("policy"));
        assert_eq!(eviction.and_then(|r| r.version.as_deref()), Some("v1"));
        assert_eq!(eviction.map(|r| r.singular_name.as_str()), Some(""));
        let scale = api_resource_list("apps", "v1")
            .and_then(|l| l.resources.into_iter().find(|r| r.name == "deployments/scale"));
        assert_eq!(
            scale.map(|r| (r.group, r.version, r.kind)),
            Some((Some("autoscaling".into()), Some("v1".into()), "Scale".into()))
        );
        assert!(api_resource_list("apps", "v2").is_none());
    }
}
