//! The static table of built-in resources, as a Kubernetes 1.33 apiserver with its default
//! feature gates and API versions reports them: plural and singular names, kinds, scope, verbs,
//! short names, categories and subresources, grouped by API group and version.
//!
//! The facts come from upstream's discovery output; the order of groups is upstream's
//! priority order (the order `/apis` lists them in), the first version of a group is its
//! preferred version, and resources and subresources are kept in the byte order of their
//! names, which is the order upstream serves them in.

/// The verbs of a resource with full CRUD and watch.
pub const VERBS_ALL: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
/// Namespaces cannot be deleted as a collection.
pub const VERBS_NO_DELETECOLLECTION: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
/// Review resources and action subresources (binding, eviction, token): create only.
pub const VERBS_CREATE: &[&str] = &["create"];
/// Read-only listing without watch (componentstatuses).
pub const VERBS_GET_LIST: &[&str] = &["get", "list"];
/// Status, scale, approval, ephemeralcontainers and resize subresources.
pub const VERBS_GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];
/// Streaming subresources (exec, attach, portforward): the POST and the websocket GET.
pub const VERBS_CREATE_GET: &[&str] = &["create", "get"];
/// Proxy subresources take every HTTP method.
pub const VERBS_PROXY: &[&str] = &["create", "delete", "get", "patch", "update"];

/// A subresource of a resource, such as `pods/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubresourceInfo {
    /// The subresource's name after the slash, e.g. `status`.
    pub name: &'static str,
    /// The kind it takes and returns, e.g. `Pod` for `pods/status`, `Scale` for `deployments/scale`.
    pub kind: &'static str,
    /// The group of `kind` when it is not the parent resource's group (`autoscaling` for
    /// `Scale`, `policy` for `Eviction`); `None` means the parent's group.
    pub group: Option<&'static str>,
    /// The version of `kind` when it is not the parent resource's version.
    pub version: Option<&'static str>,
    /// The verbs the subresource accepts.
    pub verbs: &'static [&'static str],
}

/// A built-in resource in one group version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; `""` is the core (legacy) group served under `/api`.
    pub group: &'static str,
    /// API version, e.g. `v1`.
    pub version: &'static str,
    /// Plural name, the path segment: `pods`.
    pub plural: &'static str,
    /// Singular name: `pod`.
    pub singular: &'static str,
    /// Kind of the objects: `Pod`.
    pub kind: &'static str,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Verbs of the resource itself (not of its subresources).
    pub verbs: &'static [&'static str],
    /// Short names kubectl accepts, e.g. `po`.
    pub short_names: &'static [&'static str],
    /// Categories, e.g. `all` (what `kubectl get all` lists).
    pub categories: &'static [&'static str],
    /// Subresources, sorted by name, served or not: see [`ResourceInfo::subresources`].
    all_subresources: &'static [SubresourceInfo],
}

impl ResourceInfo {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        group_version_string(self.group, self.version)
    }

    /// The kind of a list of these objects, e.g. `PodList`.
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// The served subresources, sorted by name.
    pub fn subresources(&self) -> impl Iterator<Item = &'static SubresourceInfo> + 'static {
        let (group, plural) = (self.group, self.plural);
        self.all_subresources.iter().filter(move |s| served(group, plural, Some(s.name)))
    }

    /// The served subresource with this name (`status`, `scale`, ...), if the resource has it.
    pub fn subresource(&self, name: &str) -> Option<&'static SubresourceInfo> {
        self.subresources().find(|s| s.name == name)
    }

    /// Whether the resource itself accepts `verb` (`get`, `list`, `watch`, ...).
    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.contains(&verb)
    }

    const fn new(
        group: &'static str,
        version: &'static str,
        plural: &'static str,
        singular: &'static str,
        kind: &'static str,
        namespaced: bool,
    ) -> Self {
        ResourceInfo {
            group,
            version,
            plural,
            singular,
            kind,
            namespaced,
            verbs: VERBS_ALL,
            short_names: &[],
            categories: &[],
            all_subresources: &[],
        }
    }

    const fn verbs(mut self, verbs: &'static [&'static str]) -> Self {
        self.verbs = verbs;
        self
    }

    const fn short(mut self, short_names: &'static [&'static str]) -> Self {
        self.short_names = short_names;
        self
    }

    const fn categories(mut self, categories: &'static [&'static str]) -> Self {
        self.categories = categories;
        self
    }

    const fn sub(mut self, subresources: &'static [SubresourceInfo]) -> Self {
        self.all_subresources = subresources;
        self
    }
}

impl SubresourceInfo {
    const fn new(name: &'static str, kind: &'static str, verbs: &'static [&'static str]) -> Self {
        SubresourceInfo { name, kind, group: None, version: None, verbs }
    }

    const fn in_group(mut self, group: &'static str, version: &'static str) -> Self {
        self.group = Some(group);
        self.version = Some(version);
        self
    }
}

/// The resources of one group version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupVersionInfo {
    /// API group; `""` for core.
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Resources, sorted by plural name, served or not: see [`GroupVersionInfo::resources`].
    all: &'static [ResourceInfo],
}

impl GroupVersionInfo {
    /// `v1` for the core group, `group/version` otherwise.
    pub fn group_version(&self) -> String {
        group_version_string(self.group, self.version)
    }

    /// The served resources, sorted by plural name.
    pub fn resources(&self) -> impl Iterator<Item = &'static ResourceInfo> + 'static {
        self.all.iter().filter(|r| served(r.group, r.plural, None))
    }

    /// The served resource with this plural name.
    pub fn resource(&self, plural: &str) -> Option<&'static ResourceInfo> {
        self.resources().find(|r| r.plural == plural)
    }
}

/// An API group and the versions it serves, preferred version first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupInfo {
    /// Group name; `""` for core.
    pub name: &'static str,
    /// Served versions in descending preference; never empty.
    pub versions: &'static [GroupVersionInfo],
}

impl GroupInfo {
    /// The preferred version (the first one listed).
    pub fn preferred(&self) -> &'static GroupVersionInfo {
        // The table is static and every group in it has at least one version (a unit test
        // checks it), so indexing cannot fail.
        &self.versions[0]
    }

    /// The served version with this name.
    pub fn version(&self, version: &str) -> Option<&'static GroupVersionInfo> {
        self.versions.iter().find(|v| v.version == version)
    }
}

pub(crate) fn group_version_string(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Upstream's resources and subresources that k3rs does not serve (yet): left out of
/// discovery, OpenAPI and the registry, so that what clients are told exists answers.
/// Serving one is deleting its line here. `None` is the resource itself.
///
/// ComponentStatus is deprecated upstream and would need health reports from the
/// scheduler and controllers that k3rs does not keep; the proxy subresources,
/// port-forward, ephemeral containers, resize and CSR approval are not built yet.
const NOT_SERVED: &[(&str, &str, Option<&str>)] = &[
    ("", "componentstatuses", None),
    ("", "nodes", Some("proxy")),
    ("", "pods", Some("ephemeralcontainers")),
    ("", "pods", Some("portforward")),
    ("", "pods", Some("proxy")),
    ("", "pods", Some("resize")),
    ("", "services", Some("proxy")),
    ("certificates.k8s.io", "certificatesigningrequests", Some("approval")),
];

/// Whether k3rs serves this resource (`None`) or subresource: see [`NOT_SERVED`].
fn served(group: &str, plural: &str, subresource: Option<&str>) -> bool {
    !NOT_SERVED.contains(&(group, plural, subresource))
}

const NS: bool = true;
const CLUSTER: bool = false;
const ALL: &[&str] = &["all"];
const API_EXTENSIONS: &[&str] = &["api-extensions"];

const fn status(kind: &'static str) -> SubresourceInfo {
    SubresourceInfo::new("status", kind, VERBS_GET_PATCH_UPDATE)
}

/// Every `*/scale` subresource speaks `autoscaling/v1` `Scale`, whatever the parent's group.
const SCALE: SubresourceInfo =
    SubresourceInfo::new("scale", "Scale", VERBS_GET_PATCH_UPDATE).in_group("autoscaling", "v1");

const fn core(plural: &'static str, singular: &'static str, kind: &'static str, namespaced: bool) -> ResourceInfo {
    ResourceInfo::new("", "v1", plural, singular, kind, namespaced)
}

static CORE_V1: &[ResourceInfo] = &[
    core("bindings", "binding", "Binding", NS).verbs(VERBS_CREATE),
    core("componentstatuses", "componentstatus", "ComponentStatus", CLUSTER).verbs(VERBS_GET_LIST).short(&["cs"]),
    core("configmaps", "configmap", "ConfigMap", NS).short(&["cm"]),
    core("endpoints", "endpoints", "Endpoints", NS).short(&["ep"]),
    core("events", "event", "Event", NS).short(&["ev"]),
    core("limitranges", "limitrange", "LimitRange", NS).short(&["limits"]),
    core("namespaces", "namespace", "Namespace", CLUSTER)
        .verbs(VERBS_NO_DELETECOLLECTION)
        .short(&["ns"])
        .sub(&[SubresourceInfo::new("finalize", "Namespace", &["update"]), status("Namespace")]),
    core("nodes", "node", "Node", CLUSTER)
        .short(&["no"])
        .sub(&[SubresourceInfo::new("proxy", "NodeProxyOptions", VERBS_PROXY), status("Node")]),
    core("persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", NS)
        .short(&["pvc"])
        .sub(&[status("PersistentVolumeClaim")]),
    core("persistentvolumes", "persistentvolume", "PersistentVolume", CLUSTER)
        .short(&["pv"])
        .sub(&[status("PersistentVolume")]),
    core("pods", "pod", "Pod", NS).short(&["po"]).categories(ALL).sub(&[
        SubresourceInfo::new("attach", "PodAttachOptions", VERBS_CREATE_GET),
        SubresourceInfo::new("binding", "Binding", VERBS_CREATE),
        SubresourceInfo::new("ephemeralcontainers", "Pod", VERBS_GET_PATCH_UPDATE),
        SubresourceInfo::new("eviction", "Eviction", VERBS_CREATE).in_group("policy", "v1"),
        SubresourceInfo::new("exec", "PodExecOptions", VERBS_CREATE_GET),
        SubresourceInfo::new("log", "Pod", &["get"]),
        SubresourceInfo::new("portforward", "PodPortForwardOptions", VERBS_CREATE_GET),
        SubresourceInfo::new("proxy", "PodProxyOptions", VERBS_PROXY),
        // Served since 1.32; 1.33 turns its feature gate (InPlacePodVerticalScaling) on.
        SubresourceInfo::new("resize", "Pod", VERBS_GET_PATCH_UPDATE),
        status("Pod"),
    ]),
    core("podtemplates", "podtemplate", "PodTemplate", NS),
    core("replicationcontrollers", "replicationcontroller", "ReplicationController", NS)
        .short(&["rc"])
        .categories(ALL)
        .sub(&[SCALE, status("ReplicationController")]),
    core("resourcequotas", "resourcequota", "ResourceQuota", NS).short(&["quota"]).sub(&[status("ResourceQuota")]),
    core("secrets", "secret", "Secret", NS),
    core("serviceaccounts", "serviceaccount", "ServiceAccount", NS).short(&["sa"]).sub(&[SubresourceInfo::new(
        "token",
        "TokenRequest",
        VERBS_CREATE,
    )
    .in_group("authentication.k8s.io", "v1")]),
    core("services", "service", "Service", NS)
        .short(&["svc"])
        .categories(ALL)
        .sub(&[SubresourceInfo::new("proxy", "ServiceProxyOptions", VERBS_PROXY), status("Service")]),
];

const fn apps(plural: &'static str, singular: &'static str, kind: &'static str) -> ResourceInfo {
    ResourceInfo::new("apps", "v1", plural, singular, kind, NS)
}

static APPS_V1: &[ResourceInfo] = &[
    apps("controllerrevisions", "controllerrevision", "ControllerRevision"),
    apps("daemonsets", "daemonset", "DaemonSet").short(&["ds"]).categories(ALL).sub(&[status("DaemonSet")]),
    apps("deployments", "deployment", "Deployment")
        .short(&["deploy"])
        .categories(ALL)
        .sub(&[SCALE, status("Deployment")]),
    apps("replicasets", "replicaset", "ReplicaSet").short(&["rs"]).categories(ALL).sub(&[SCALE, status("ReplicaSet")]),
    apps("statefulsets", "statefulset", "StatefulSet")
        .short(&["sts"])
        .categories(ALL)
        .sub(&[SCALE, status("StatefulSet")]),
];

static EVENTS_V1: &[ResourceInfo] =
    &[ResourceInfo::new("events.k8s.io", "v1", "events", "event", "Event", NS).short(&["ev"])];

const fn authn(plural: &'static str, singular: &'static str, kind: &'static str) -> ResourceInfo {
    ResourceInfo::new("authentication.k8s.io", "v1", plural, singular, kind, CLUSTER).verbs(VERBS_CREATE)
}

static AUTHENTICATION_V1: &[ResourceInfo] = &[
    authn("selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview"),
    authn("tokenreviews", "tokenreview", "TokenReview"),
];

const fn authz(plural: &'static str, singular: &'static str, kind: &'static str, namespaced: bool) -> ResourceInfo {
    ResourceInfo::new("authorization.k8s.io", "v1", plural, singular, kind, namespaced).verbs(VERBS_CREATE)
}

static AUTHORIZATION_V1: &[ResourceInfo] = &[
    authz("localsubjectaccessreviews", "localsubjectaccessreview", "LocalSubjectAccessReview", NS),
    authz("selfsubjectaccessreviews", "selfsubjectaccessreview", "SelfSubjectAccessReview", CLUSTER),
    authz("selfsubjectrulesreviews", "selfsubjectrulesreview", "SelfSubjectRulesReview", CLUSTER),
    authz("subjectaccessreviews", "subjectaccessreview", "SubjectAccessReview", CLUSTER),
];

const HPA_SUBRESOURCES: &[SubresourceInfo] = &[status("HorizontalPodAutoscaler")];

const fn hpa(version: &'static str) -> ResourceInfo {
    ResourceInfo::new(
        "autoscaling",
        version,
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "HorizontalPodAutoscaler",
        NS,
    )
    .short(&["hpa"])
    .categories(ALL)
    .sub(HPA_SUBRESOURCES)
}

static AUTOSCALING_V2: &[ResourceInfo] = &[hpa("v2")];
static AUTOSCALING_V1: &[ResourceInfo] = &[hpa("v1")];

static BATCH_V1: &[ResourceInfo] = &[
    ResourceInfo::new("batch", "v1", "cronjobs", "cronjob", "CronJob", NS)
        .short(&["cj"])
        .categories(ALL)
        .sub(&[status("CronJob")]),
    ResourceInfo::new("batch", "v1", "jobs", "job", "Job", NS).categories(ALL).sub(&[status("Job")]),
];

static CERTIFICATES_V1: &[ResourceInfo] = &[ResourceInfo::new(
    "certificates.k8s.io",
    "v1",
    "certificatesigningrequests",
    "certificatesigningrequest",
    "CertificateSigningRequest",
    CLUSTER,
)
.short(&["csr"])
.sub(&[
    SubresourceInfo::new("approval", "CertificateSigningRequest", VERBS_GET_PATCH_UPDATE),
    status("CertificateSigningRequest"),
])];

const fn networking(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> ResourceInfo {
    ResourceInfo::new("networking.k8s.io", "v1", plural, singular, kind, namespaced)
}

static NETWORKING_V1: &[ResourceInfo] = &[
    networking("ingressclasses", "ingressclass", "IngressClass", CLUSTER),
    networking("ingresses", "ingress", "Ingress", NS).short(&["ing"]).sub(&[status("Ingress")]),
    // IPAddress and ServiceCIDR reached networking.k8s.io/v1 (GA) in 1.33.
    networking("ipaddresses", "ipaddress", "IPAddress", CLUSTER).short(&["ip"]),
    networking("networkpolicies", "networkpolicy", "NetworkPolicy", NS).short(&["netpol"]),
    networking("servicecidrs", "servicecidr", "ServiceCIDR", CLUSTER).sub(&[status("ServiceCIDR")]),
];

static POLICY_V1: &[ResourceInfo] =
    &[ResourceInfo::new("policy", "v1", "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", NS)
        .short(&["pdb"])
        .sub(&[status("PodDisruptionBudget")])];

const fn rbac(plural: &'static str, singular: &'static str, kind: &'static str, namespaced: bool) -> ResourceInfo {
    ResourceInfo::new("rbac.authorization.k8s.io", "v1", plural, singular, kind, namespaced)
}

static RBAC_V1: &[ResourceInfo] = &[
    rbac("clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", CLUSTER),
    rbac("clusterroles", "clusterrole", "ClusterRole", CLUSTER),
    rbac("rolebindings", "rolebinding", "RoleBinding", NS),
    rbac("roles", "role", "Role", NS),
];

const fn storage(plural: &'static str, singular: &'static str, kind: &'static str, namespaced: bool) -> ResourceInfo {
    ResourceInfo::new("storage.k8s.io", "v1", plural, singular, kind, namespaced)
}

static STORAGE_V1: &[ResourceInfo] = &[
    storage("csidrivers", "csidriver", "CSIDriver", CLUSTER),
    storage("csinodes", "csinode", "CSINode", CLUSTER),
    storage("csistoragecapacities", "csistoragecapacity", "CSIStorageCapacity", NS),
    storage("storageclasses", "storageclass", "StorageClass", CLUSTER).short(&["sc"]),
    storage("volumeattachments", "volumeattachment", "VolumeAttachment", CLUSTER).sub(&[status("VolumeAttachment")]),
];

static APIEXTENSIONS_V1: &[ResourceInfo] = &[ResourceInfo::new(
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    "customresourcedefinition",
    "CustomResourceDefinition",
    CLUSTER,
)
.short(&["crd", "crds"])
.categories(API_EXTENSIONS)
.sub(&[status("CustomResourceDefinition")])];

static SCHEDULING_V1: &[ResourceInfo] =
    &[ResourceInfo::new("scheduling.k8s.io", "v1", "priorityclasses", "priorityclass", "PriorityClass", CLUSTER)
        .short(&["pc"])];

static COORDINATION_V1: &[ResourceInfo] =
    &[ResourceInfo::new("coordination.k8s.io", "v1", "leases", "lease", "Lease", NS)];

static NODE_V1: &[ResourceInfo] =
    &[ResourceInfo::new("node.k8s.io", "v1", "runtimeclasses", "runtimeclass", "RuntimeClass", CLUSTER)];

static DISCOVERY_V1: &[ResourceInfo] =
    &[ResourceInfo::new("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", NS)];

const fn gv(group: &'static str, version: &'static str, resources: &'static [ResourceInfo]) -> GroupVersionInfo {
    GroupVersionInfo { group, version, all: resources }
}

/// Core first, then the named groups in upstream's priority order (the order of `/apis`).
/// Upstream also serves apiregistration.k8s.io (first of the named groups),
/// admissionregistration.k8s.io (after storage) and flowcontrol.apiserver.k8s.io (after
/// discovery); k3rs does not serve them.
static GROUPS: &[GroupInfo] = &[
    GroupInfo { name: "", versions: &[gv("", "v1", CORE_V1)] },
    GroupInfo { name: "apps", versions: &[gv("apps", "v1", APPS_V1)] },
    GroupInfo { name: "events.k8s.io", versions: &[gv("events.k8s.io", "v1", EVENTS_V1)] },
    GroupInfo { name: "authentication.k8s.io", versions: &[gv("authentication.k8s.io", "v1", AUTHENTICATION_V1)] },
    GroupInfo { name: "authorization.k8s.io", versions: &[gv("authorization.k8s.io", "v1", AUTHORIZATION_V1)] },
    GroupInfo {
        name: "autoscaling",
        versions: &[gv("autoscaling", "v2", AUTOSCALING_V2), gv("autoscaling", "v1", AUTOSCALING_V1)],
    },
    GroupInfo { name: "batch", versions: &[gv("batch", "v1", BATCH_V1)] },
    GroupInfo { name: "certificates.k8s.io", versions: &[gv("certificates.k8s.io", "v1", CERTIFICATES_V1)] },
    GroupInfo { name: "networking.k8s.io", versions: &[gv("networking.k8s.io", "v1", NETWORKING_V1)] },
    GroupInfo { name: "policy", versions: &[gv("policy", "v1", POLICY_V1)] },
    GroupInfo { name: "rbac.authorization.k8s.io", versions: &[gv("rbac.authorization.k8s.io", "v1", RBAC_V1)] },
    GroupInfo { name: "storage.k8s.io", versions: &[gv("storage.k8s.io", "v1", STORAGE_V1)] },
    GroupInfo { name: "apiextensions.k8s.io", versions: &[gv("apiextensions.k8s.io", "v1", APIEXTENSIONS_V1)] },
    GroupInfo { name: "scheduling.k8s.io", versions: &[gv("scheduling.k8s.io", "v1", SCHEDULING_V1)] },
    GroupInfo { name: "coordination.k8s.io", versions: &[gv("coordination.k8s.io", "v1", COORDINATION_V1)] },
    GroupInfo { name: "node.k8s.io", versions: &[gv("node.k8s.io", "v1", NODE_V1)] },
    GroupInfo { name: "discovery.k8s.io", versions: &[gv("discovery.k8s.io", "v1", DISCOVERY_V1)] },
];

/// Every served group, core (`""`) first, then the named groups in priority order.
pub fn groups() -> &'static [GroupInfo] {
    GROUPS
}

/// The named groups (everything under `/apis`), in priority order.
pub fn named_groups() -> impl Iterator<Item = &'static GroupInfo> {
    GROUPS.iter().filter(|g| !g.name.is_empty())
}

/// The group with this name (`""` for core).
pub fn group(name: &str) -> Option<&'static GroupInfo> {
    GROUPS.iter().find(|g| g.name == name)
}

/// The served group version, e.g. `("apps", "v1")` or `("", "v1")`.
pub fn group_version(group_name: &str, version: &str) -> Option<&'static GroupVersionInfo> {
    group(group_name)?.version(version)
}

/// The resource served at `group/version/plural`.
pub fn lookup(group_name: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    group_version(group_name, version)?.resource(plural)
}

/// The resource of `kind` in this group version (kinds are unique within one).
pub fn lookup_kind(group_name: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    group_version(group_name, version)?.resources().find(|r| r.kind == kind)
}

/// The resource with this short name (`po`, `deploy`, ...), in the preferred version of its
/// group. When two groups share a short name (`ev`: core and events.k8s.io), the group
/// listed first in priority order wins, which is core.
pub fn lookup_short_name(short_name: &str) -> Option<&'static ResourceInfo> {
    preferred_resources().find(|r| r.short_names.contains(&short_name))
}

/// Every resource of every served group version (both autoscaling versions included).
pub fn resources() -> impl Iterator<Item = &'static ResourceInfo> {
    GROUPS.iter().flat_map(|g| g.versions.iter()).flat_map(|gv| gv.resources())
}

/// The resources of each group's preferred version: what `kubectl api-resources` lists.
pub fn preferred_resources() -> impl Iterator<Item = &'static ResourceInfo> {
    GROUPS.iter().flat_map(|g| g.preferred().resources())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::Resource;

    #[test]
    fn every_group_has_a_version_and_consistent_entries() {
        let mut names = std::collections::HashSet::new();
        for g in groups() {
            assert!(!g.versions.is_empty(), "group {:?} has no version", g.name);
            assert!(names.insert(g.name), "group {:?} listed twice", g.name);
            for v in g.versions {
                assert_eq!(v.group, g.name);
                assert!(v.resources().next().is_some(), "{} serves nothing", v.group_version());
                for r in v.resources() {
                    assert_eq!(
                        (r.group, r.version),
                        (v.group, v.version),
                        "{} filed under the wrong version",
                        r.plural
                    );
                    assert!(!r.verbs.is_empty());
                }
            }
        }
    }

    #[test]
    fn resources_and_subresources_are_in_served_order() {
        for gv in groups().iter().flat_map(|g| g.versions) {
            let plurals: Vec<_> = gv.resources().map(|r| r.plural).collect();
            let mut sorted = plurals.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(plurals, sorted, "{} resources out of order or repeated", gv.group_version());
            for r in gv.resources() {
                let subs: Vec<_> = r.subresources().map(|s| s.name).collect();
                let mut sorted = subs.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(subs, sorted, "{} subresources out of order or repeated", r.plural);
            }
        }
    }

    #[test]
    fn verbs_are_sorted_as_upstream_serves_them() {
        for r in resources() {
            let mut sorted = r.verbs.to_vec();
            sorted.sort_unstable();
            assert_eq!(r.verbs, sorted.as_slice(), "{}", r.plural);
            for s in r.subresources() {
                let mut sorted = s.verbs.to_vec();
                sorted.sort_unstable();
                assert_eq!(s.verbs, sorted.as_slice(), "{}/{}", r.plural, s.name);
            }
        }
    }

    /// k8s-openapi is generated from upstream's 1.33 OpenAPI document: each of its top-level
    /// types must appear in the table with the same plural, group, version and scope.
    fn agrees_with_openapi<T: Resource>(namespaced: bool) {
        let info = lookup(T::GROUP, T::VERSION, T::URL_PATH_SEGMENT)
            .unwrap_or_else(|| panic!("{} {} missing from the table", T::API_VERSION, T::URL_PATH_SEGMENT));
        assert_eq!(info.kind, T::KIND);
        assert_eq!(info.namespaced, namespaced, "{} scope", T::KIND);
        assert_eq!(info.api_version(), T::API_VERSION);
        assert_eq!(lookup_kind(T::GROUP, T::VERSION, T::KIND).map(|r| r.plural), Some(T::URL_PATH_SEGMENT));
    }

    #[test]
    fn table_matches_the_openapi_types() {
        use k8s_openapi::api::*;
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
        macro_rules! check {
            (ns: $($t:ty),* ; cluster: $($c:ty),* $(,)?) => {{
                $(agrees_with_openapi::<$t>(true);)*
                $(agrees_with_openapi::<$c>(false);)*
                [$(<$t>::URL_PATH_SEGMENT,)* $(<$c>::URL_PATH_SEGMENT,)*].len()
            }};
        }
        let checked = check!(
            ns: core::v1::Binding, core::v1::ConfigMap, core::v1::Endpoints, core::v1::Event,
                core::v1::LimitRange, core::v1::PersistentVolumeClaim, core::v1::Pod, core::v1::PodTemplate,
                core::v1::ReplicationController, core::v1::ResourceQuota, core::v1::Secret,
                core::v1::ServiceAccount, core::v1::Service,
                apps::v1::ControllerRevision, apps::v1::DaemonSet, apps::v1::Deployment, apps::v1::ReplicaSet,
                apps::v1::StatefulSet, events::v1::Event, authorization::v1::LocalSubjectAccessReview,
                autoscaling::v1::HorizontalPodAutoscaler, autoscaling::v2::HorizontalPodAutoscaler,
                batch::v1::CronJob, batch::v1::Job, networking::v1::Ingress, networking::v1::NetworkPolicy,
                policy::v1::PodDisruptionBudget, rbac::v1::RoleBinding, rbac::v1::Role,
                storage::v1::CSIStorageCapacity, coordination::v1::Lease, discovery::v1::EndpointSlice;
            cluster: core::v1::Namespace, core::v1::Node, core::v1::PersistentVolume,
                authentication::v1::SelfSubjectReview, authentication::v1::TokenReview,
                authorization::v1::SelfSubjectAccessReview, authorization::v1::SelfSubjectRulesReview,
                authorization::v1::SubjectAccessReview, certificates::v1::CertificateSigningRequest,
                networking::v1::IngressClass, networking::v1::IPAddress, networking::v1::ServiceCIDR,
                rbac::v1::ClusterRoleBinding, rbac::v1::ClusterRole, storage::v1::CSIDriver, storage::v1::CSINode,
                storage::v1::StorageClass, storage::v1::VolumeAttachment, apiext::CustomResourceDefinition,
                scheduling::v1::PriorityClass, node::v1::RuntimeClass,
        );
        // Nothing in the table beyond what the OpenAPI types cover.
        assert_eq!(checked, resources().count());
    }

    #[test]
    fn what_is_not_served_is_in_the_table_and_out_of_every_lookup() {
        for (group, plural, sub) in NOT_SERVED {
            let entry = GROUPS
                .iter()
                .flat_map(|g| g.versions)
                .flat_map(|gv| gv.all)
                .find(|r| r.group == *group && r.plural == *plural)
                .unwrap_or_else(|| panic!("{plural} is not in the table"));
            match sub {
                None => {
                    assert!(lookup(group, entry.version, plural).is_none());
                    assert!(resources().all(|r| r.plural != *plural || r.group != *group));
                }
                Some(s) => {
                    assert!(entry.all_subresources.iter().any(|x| x.name == *s), "{plural}/{s} is not in the table");
                    assert!(entry.subresource(s).is_none() && entry.subresources().all(|x| x.name != *s));
                }
            }
        }
        let pods = lookup("", "v1", "pods").map(|p| p.subresources().map(|s| s.name).collect::<Vec<_>>());
        assert_eq!(pods, Some(vec!["attach", "binding", "eviction", "exec", "log", "status"]));
    }

    #[test]
    fn subresource_kinds_in_other_groups_match_the_openapi_types() {
        use k8s_openapi::api::{authentication::v1::TokenRequest, autoscaling::v1::Scale, policy::v1::Eviction};
        let eviction = lookup("", "v1", "pods").and_then(|p| p.subresource("eviction"));
        assert_eq!(
            eviction.map(|s| (s.group, s.version, s.kind)),
            Some((Some(Eviction::GROUP), Some(Eviction::VERSION), Eviction::KIND))
        );
        let token = lookup("", "v1", "serviceaccounts").and_then(|p| p.subresource("token"));
        assert_eq!(
            token.map(|s| (s.group, s.version, s.kind)),
            Some((Some(TokenRequest::GROUP), Some(TokenRequest::VERSION), TokenRequest::KIND))
        );
        for r in resources() {
            if let Some(scale) = r.subresource("scale") {
                assert_eq!(
                    (scale.group, scale.version, scale.kind),
                    (Some(Scale::GROUP), Some(Scale::VERSION), Scale::KIND)
                );
            }
        }
    }

    #[test]
    fn lookups() {
        let deploy = lookup("apps", "v1", "deployments").map(|r| r.kind);
        assert_eq!(deploy, Some("Deployment"));
        assert!(lookup("apps", "v1beta1", "deployments").is_none());
        assert!(lookup("", "v1", "deployments").is_none());
        assert_eq!(lookup_kind("", "v1", "Namespace").map(|r| r.plural), Some("namespaces"));
        assert_eq!(lookup_short_name("deploy").map(|r| r.plural), Some("deployments"));
        assert_eq!(lookup_short_name("crds").map(|r| r.group), Some("apiextensions.k8s.io"));
        // core wins over events.k8s.io for the shared short name
        assert_eq!(lookup_short_name("ev").map(|r| r.group), Some(""));
        assert_eq!(lookup_short_name("hpa").map(|r| r.version), Some("v2"));
        assert!(lookup_short_name("nope").is_none());
        assert_eq!(group("autoscaling").map(|g| g.preferred().version), Some("v2"));
        let pods = lookup("", "v1", "pods");
        assert_eq!(pods.map(|p| p.supports("watch")), Some(true));
        assert_eq!(lookup("", "v1", "namespaces").map(|p| p.supports("deletecollection")), Some(false));
        assert_eq!(pods.and_then(|p| p.subresource("log")).map(|s| s.verbs), Some(&["get"][..]));
        assert_eq!(pods.map(|p| p.list_kind()), Some("PodList".to_string()));
        assert_eq!(named_groups().count(), groups().len() - 1);
    }
}
