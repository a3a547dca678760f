//! The `x-kubernetes-*` extensions of upstream's OpenAPI documents that k8s-openapi's schemas
//! do not carry: per field, the strategic-merge patch strategy and merge key
//! (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`, which kubectl reads to
//! compute client-side apply and edit patches), the list semantics server-side apply uses
//! (`x-kubernetes-list-type`, `x-kubernetes-list-map-keys`) and map/struct atomicity
//! (`x-kubernetes-map-type`, on fields and on whole types).
//!
//! These are facts of the Kubernetes 1.33 API, read from the `patchStrategy`/`patchMergeKey`
//! struct tags and the `+listType`, `+listMapKey`, `+mapType` and `+structType` markers of the
//! API types of the groups k3rs serves (fields embedded inline, such as
//! `EphemeralContainerCommon` in `EphemeralContainer`, listed on the embedding type). Type
//! names are the definition names without their package prefix (see [`full_name`]).

use std::collections::HashMap;
use std::sync::LazyLock;

/// The extensions of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldExtensions {
    /// `x-kubernetes-list-type`: `atomic`, `set` or `map`.
    pub list_type: Option<&'static str>,
    /// `x-kubernetes-list-map-keys`, for `map` lists.
    pub list_map_keys: &'static [&'static str],
    /// `x-kubernetes-patch-strategy`: `merge`, `retainKeys`, `merge,retainKeys` or `replace`.
    pub patch_strategy: Option<&'static str>,
    /// `x-kubernetes-patch-merge-key`.
    pub patch_merge_key: Option<&'static str>,
    /// `x-kubernetes-map-type` on the field: `atomic` or `granular`.
    pub map_type: Option<&'static str>,
}

const NONE: FieldExtensions = FieldExtensions {
    list_type: None,
    list_map_keys: &[],
    patch_strategy: None,
    patch_merge_key: None,
    map_type: None,
};
const ATOMIC: FieldExtensions = NONE.list("atomic");
const SET: FieldExtensions = NONE.list("set");

const fn map(keys: &'static [&'static str]) -> FieldExtensions {
    FieldExtensions { list_type: Some("map"), list_map_keys: keys, ..NONE }
}

impl FieldExtensions {
    const fn list(mut self, list_type: &'static str) -> Self {
        self.list_type = Some(list_type);
        self
    }

    /// Merged by `key` (`patchStrategy:"merge" patchMergeKey:"<key>"`).
    const fn merge(mut self, key: &'static str) -> Self {
        self.patch_strategy = Some("merge");
        self.patch_merge_key = Some(key);
        self
    }

    const fn merge_key(mut self, key: &'static str) -> Self {
        self.patch_merge_key = Some(key);
        self
    }

    const fn strategy(mut self, strategy: &'static str) -> Self {
        self.patch_strategy = Some(strategy);
        self
    }

    const fn map_type(mut self, map_type: &'static str) -> Self {
        self.map_type = Some(map_type);
        self
    }
}

type TypeFields = (&'static str, &'static [(&'static str, FieldExtensions)]);

/// Fields with extensions, by type.
static FIELDS: &[TypeFields] = &[
    ("apiextensions.v1.CustomResourceDefinitionNames", &[("categories", ATOMIC), ("shortNames", ATOMIC)]),
    ("apiextensions.v1.CustomResourceDefinitionSpec", &[("versions", ATOMIC)]),
    ("apiextensions.v1.CustomResourceDefinitionStatus", &[("conditions", map(&["type"])), ("storedVersions", ATOMIC)]),
    (
        "apiextensions.v1.CustomResourceDefinitionVersion",
        &[("additionalPrinterColumns", ATOMIC), ("selectableFields", ATOMIC)],
    ),
    (
        "apiextensions.v1.JSONSchemaProps",
        &[
            ("allOf", ATOMIC),
            ("anyOf", ATOMIC),
            ("enum", ATOMIC),
            ("oneOf", ATOMIC),
            ("required", ATOMIC),
            ("x-kubernetes-list-map-keys", ATOMIC),
            ("x-kubernetes-validations", map(&["rule"]).merge("rule")),
        ],
    ),
    ("apiextensions.v1.WebhookConversion", &[("conversionReviewVersions", ATOMIC)]),
    ("apps.v1.DaemonSetStatus", &[("conditions", map(&["type"]).merge("type"))]),
    ("apps.v1.DeploymentSpec", &[("strategy", NONE.strategy("retainKeys"))]),
    ("apps.v1.DeploymentStatus", &[("conditions", map(&["type"]).merge("type"))]),
    ("apps.v1.ReplicaSetStatus", &[("conditions", map(&["type"]).merge("type"))]),
    ("apps.v1.StatefulSetSpec", &[("volumeClaimTemplates", ATOMIC)]),
    ("apps.v1.StatefulSetStatus", &[("conditions", map(&["type"]).merge("type"))]),
    ("authentication.v1.TokenRequestSpec", &[("audiences", ATOMIC)]),
    ("authentication.v1.TokenReviewSpec", &[("audiences", ATOMIC)]),
    ("authentication.v1.TokenReviewStatus", &[("audiences", ATOMIC)]),
    ("authentication.v1.UserInfo", &[("groups", ATOMIC)]),
    ("authorization.v1.FieldSelectorAttributes", &[("requirements", ATOMIC)]),
    ("authorization.v1.LabelSelectorAttributes", &[("requirements", ATOMIC)]),
    ("authorization.v1.NonResourceRule", &[("nonResourceURLs", ATOMIC), ("verbs", ATOMIC)]),
    (
        "authorization.v1.ResourceRule",
        &[("apiGroups", ATOMIC), ("resourceNames", ATOMIC), ("resources", ATOMIC), ("verbs", ATOMIC)],
    ),
    ("authorization.v1.SubjectAccessReviewSpec", &[("groups", ATOMIC)]),
    ("authorization.v1.SubjectRulesReviewStatus", &[("nonResourceRules", ATOMIC), ("resourceRules", ATOMIC)]),
    ("autoscaling.v2.HPAScalingRules", &[("policies", ATOMIC)]),
    ("autoscaling.v2.HorizontalPodAutoscalerSpec", &[("metrics", ATOMIC)]),
    (
        "autoscaling.v2.HorizontalPodAutoscalerStatus",
        &[("conditions", map(&["type"]).merge("type")), ("currentMetrics", ATOMIC)],
    ),
    ("batch.v1.CronJobStatus", &[("active", ATOMIC)]),
    ("batch.v1.JobStatus", &[("conditions", ATOMIC.merge("type"))]),
    ("batch.v1.PodFailurePolicy", &[("rules", ATOMIC)]),
    ("batch.v1.PodFailurePolicyOnExitCodesRequirement", &[("values", SET)]),
    ("batch.v1.PodFailurePolicyRule", &[("onPodConditions", ATOMIC)]),
    ("batch.v1.SuccessPolicy", &[("rules", ATOMIC)]),
    ("batch.v1.UncountedTerminatedPods", &[("failed", SET), ("succeeded", SET)]),
    ("certificates.v1.CertificateSigningRequestSpec", &[("groups", ATOMIC), ("request", ATOMIC), ("usages", ATOMIC)]),
    ("certificates.v1.CertificateSigningRequestStatus", &[("certificate", ATOMIC), ("conditions", map(&["type"]))]),
    ("core.v1.Capabilities", &[("add", ATOMIC), ("drop", ATOMIC)]),
    ("core.v1.CephFSPersistentVolumeSource", &[("monitors", ATOMIC)]),
    ("core.v1.CephFSVolumeSource", &[("monitors", ATOMIC)]),
    ("core.v1.ComponentStatus", &[("conditions", map(&["type"]).merge("type"))]),
    ("core.v1.ConfigMapProjection", &[("items", ATOMIC)]),
    ("core.v1.ConfigMapVolumeSource", &[("items", ATOMIC)]),
    (
        "core.v1.Container",
        &[
            ("args", ATOMIC),
            ("command", ATOMIC),
            ("env", map(&["name"]).merge("name")),
            ("envFrom", ATOMIC),
            ("ports", map(&["containerPort", "protocol"]).merge("containerPort")),
            ("resizePolicy", ATOMIC),
            ("volumeDevices", map(&["devicePath"]).merge("devicePath")),
            ("volumeMounts", map(&["mountPath"]).merge("mountPath")),
        ],
    ),
    ("core.v1.ContainerImage", &[("names", ATOMIC)]),
    (
        "core.v1.ContainerStatus",
        &[
            ("allocatedResourcesStatus", map(&["name"]).merge("name")),
            ("volumeMounts", map(&["mountPath"]).merge("mountPath")),
        ],
    ),
    ("core.v1.DownwardAPIProjection", &[("items", ATOMIC)]),
    ("core.v1.DownwardAPIVolumeSource", &[("items", ATOMIC)]),
    ("core.v1.EndpointSubset", &[("addresses", ATOMIC), ("notReadyAddresses", ATOMIC), ("ports", ATOMIC)]),
    ("core.v1.Endpoints", &[("subsets", ATOMIC)]),
    (
        "core.v1.EphemeralContainer",
        &[
            ("args", ATOMIC),
            ("command", ATOMIC),
            ("env", map(&["name"]).merge("name")),
            ("envFrom", ATOMIC),
            ("ports", map(&["containerPort", "protocol"]).merge("containerPort")),
            ("resizePolicy", ATOMIC),
            ("volumeDevices", map(&["devicePath"]).merge("devicePath")),
            ("volumeMounts", map(&["mountPath"]).merge("mountPath")),
        ],
    ),
    ("core.v1.ExecAction", &[("command", ATOMIC)]),
    ("core.v1.FCVolumeSource", &[("targetWWNs", ATOMIC), ("wwids", ATOMIC)]),
    ("core.v1.HTTPGetAction", &[("httpHeaders", ATOMIC)]),
    ("core.v1.HostAlias", &[("hostnames", ATOMIC)]),
    ("core.v1.ISCSIPersistentVolumeSource", &[("portals", ATOMIC)]),
    ("core.v1.ISCSIVolumeSource", &[("portals", ATOMIC)]),
    ("core.v1.LimitRangeSpec", &[("limits", ATOMIC)]),
    ("core.v1.LinuxContainerUser", &[("supplementalGroups", ATOMIC)]),
    ("core.v1.LoadBalancerIngress", &[("ports", ATOMIC)]),
    ("core.v1.LoadBalancerStatus", &[("ingress", ATOMIC)]),
    ("core.v1.NamespaceSpec", &[("finalizers", ATOMIC)]),
    ("core.v1.NamespaceStatus", &[("conditions", map(&["type"]).merge("type"))]),
    ("core.v1.NodeAffinity", &[("preferredDuringSchedulingIgnoredDuringExecution", ATOMIC)]),
    ("core.v1.NodeSelector", &[("nodeSelectorTerms", ATOMIC)]),
    ("core.v1.NodeSelectorRequirement", &[("values", ATOMIC)]),
    ("core.v1.NodeSelectorTerm", &[("matchExpressions", ATOMIC), ("matchFields", ATOMIC)]),
    ("core.v1.NodeSpec", &[("podCIDRs", SET.strategy("merge")), ("taints", ATOMIC)]),
    (
        "core.v1.NodeStatus",
        &[
            ("addresses", map(&["type"]).merge("type")),
            ("conditions", map(&["type"]).merge("type")),
            ("images", ATOMIC),
            ("runtimeHandlers", ATOMIC),
            ("volumesAttached", ATOMIC),
            ("volumesInUse", ATOMIC),
        ],
    ),
    ("core.v1.PersistentVolumeClaimSpec", &[("accessModes", ATOMIC)]),
    (
        "core.v1.PersistentVolumeClaimStatus",
        &[
            ("accessModes", ATOMIC),
            ("allocatedResourceStatuses", NONE.map_type("granular")),
            ("conditions", map(&["type"]).merge("type")),
        ],
    ),
    (
        "core.v1.PersistentVolumeSpec",
        &[("accessModes", ATOMIC), ("claimRef", NONE.map_type("granular")), ("mountOptions", ATOMIC)],
    ),
    (
        "core.v1.PodAffinity",
        &[
            ("preferredDuringSchedulingIgnoredDuringExecution", ATOMIC),
            ("requiredDuringSchedulingIgnoredDuringExecution", ATOMIC),
        ],
    ),
    ("core.v1.PodAffinityTerm", &[("matchLabelKeys", ATOMIC), ("mismatchLabelKeys", ATOMIC), ("namespaces", ATOMIC)]),
    (
        "core.v1.PodAntiAffinity",
        &[
            ("preferredDuringSchedulingIgnoredDuringExecution", ATOMIC),
            ("requiredDuringSchedulingIgnoredDuringExecution", ATOMIC),
        ],
    ),
    ("core.v1.PodDNSConfig", &[("nameservers", ATOMIC), ("options", ATOMIC), ("searches", ATOMIC)]),
    ("core.v1.PodSecurityContext", &[("supplementalGroups", ATOMIC), ("sysctls", ATOMIC)]),
    (
        "core.v1.PodSpec",
        &[
            ("containers", map(&["name"]).merge("name")),
            ("ephemeralContainers", map(&["name"]).merge("name")),
            ("hostAliases", map(&["ip"]).merge("ip")),
            ("imagePullSecrets", map(&["name"]).merge("name")),
            ("initContainers", map(&["name"]).merge("name")),
            ("nodeSelector", NONE.map_type("atomic")),
            ("readinessGates", ATOMIC),
            ("resourceClaims", map(&["name"]).merge_key("name").strategy("merge,retainKeys")),
            ("schedulingGates", map(&["name"]).merge("name")),
            ("tolerations", ATOMIC),
            ("topologySpreadConstraints", map(&["topologyKey", "whenUnsatisfiable"]).merge("topologyKey")),
            ("volumes", map(&["name"]).merge_key("name").strategy("merge,retainKeys")),
        ],
    ),
    (
        "core.v1.PodStatus",
        &[
            ("conditions", map(&["type"]).merge("type")),
            ("containerStatuses", ATOMIC),
            ("ephemeralContainerStatuses", ATOMIC),
            ("hostIPs", ATOMIC.merge("ip")),
            ("initContainerStatuses", ATOMIC),
            ("podIPs", map(&["ip"]).merge("ip")),
            ("resourceClaimStatuses", map(&["name"]).merge_key("name").strategy("merge,retainKeys")),
        ],
    ),
    ("core.v1.ProjectedVolumeSource", &[("sources", ATOMIC)]),
    ("core.v1.RBDPersistentVolumeSource", &[("monitors", ATOMIC)]),
    ("core.v1.RBDVolumeSource", &[("monitors", ATOMIC)]),
    ("core.v1.ReplicationControllerSpec", &[("selector", NONE.map_type("atomic"))]),
    ("core.v1.ReplicationControllerStatus", &[("conditions", map(&["type"]).merge("type"))]),
    ("core.v1.ResourceQuotaSpec", &[("scopes", ATOMIC)]),
    ("core.v1.ResourceRequirements", &[("claims", map(&["name"]))]),
    ("core.v1.ResourceStatus", &[("resources", map(&["resourceID"]))]),
    ("core.v1.ScopeSelector", &[("matchExpressions", ATOMIC)]),
    ("core.v1.ScopedResourceSelectorRequirement", &[("values", ATOMIC)]),
    ("core.v1.SecretProjection", &[("items", ATOMIC)]),
    ("core.v1.SecretVolumeSource", &[("items", ATOMIC)]),
    ("core.v1.ServiceAccount", &[("imagePullSecrets", ATOMIC), ("secrets", map(&["name"]).merge("name"))]),
    (
        "core.v1.ServiceSpec",
        &[
            ("clusterIPs", ATOMIC),
            ("externalIPs", ATOMIC),
            ("ipFamilies", ATOMIC),
            ("loadBalancerSourceRanges", ATOMIC),
            ("ports", map(&["port", "protocol"]).merge("port")),
            ("selector", NONE.map_type("atomic")),
        ],
    ),
    ("core.v1.ServiceStatus", &[("conditions", map(&["type"]).merge("type"))]),
    ("core.v1.TopologySelectorLabelRequirement", &[("values", ATOMIC)]),
    ("core.v1.TopologySelectorTerm", &[("matchLabelExpressions", ATOMIC)]),
    ("core.v1.TopologySpreadConstraint", &[("matchLabelKeys", ATOMIC)]),
    ("discovery.v1.Endpoint", &[("addresses", SET)]),
    ("discovery.v1.EndpointHints", &[("forNodes", ATOMIC), ("forZones", ATOMIC)]),
    ("discovery.v1.EndpointSlice", &[("endpoints", ATOMIC), ("ports", ATOMIC)]),
    ("meta.v1.APIGroup", &[("serverAddressByClientCIDRs", ATOMIC), ("versions", ATOMIC)]),
    ("meta.v1.APIGroupList", &[("groups", ATOMIC)]),
    ("meta.v1.APIResource", &[("categories", ATOMIC), ("shortNames", ATOMIC)]),
    ("meta.v1.APIResourceList", &[("resources", ATOMIC)]),
    ("meta.v1.APIVersions", &[("serverAddressByClientCIDRs", ATOMIC), ("versions", ATOMIC)]),
    ("meta.v1.DeleteOptions", &[("dryRun", ATOMIC)]),
    ("meta.v1.FieldSelectorRequirement", &[("values", ATOMIC)]),
    ("meta.v1.LabelSelector", &[("matchExpressions", ATOMIC)]),
    ("meta.v1.LabelSelectorRequirement", &[("values", ATOMIC)]),
    (
        "meta.v1.ObjectMeta",
        &[
            ("finalizers", SET.strategy("merge")),
            ("managedFields", ATOMIC),
            ("ownerReferences", map(&["uid"]).merge("uid")),
        ],
    ),
    ("meta.v1.Status", &[("details", ATOMIC)]),
    ("meta.v1.StatusDetails", &[("causes", ATOMIC)]),
    ("networking.v1.HTTPIngressRuleValue", &[("paths", ATOMIC)]),
    ("networking.v1.IPBlock", &[("except", ATOMIC)]),
    ("networking.v1.IngressLoadBalancerIngress", &[("ports", ATOMIC)]),
    ("networking.v1.IngressLoadBalancerStatus", &[("ingress", ATOMIC)]),
    ("networking.v1.IngressSpec", &[("rules", ATOMIC), ("tls", ATOMIC)]),
    ("networking.v1.IngressTLS", &[("hosts", ATOMIC)]),
    ("networking.v1.NetworkPolicyEgressRule", &[("ports", ATOMIC), ("to", ATOMIC)]),
    ("networking.v1.NetworkPolicyIngressRule", &[("from", ATOMIC), ("ports", ATOMIC)]),
    ("networking.v1.NetworkPolicySpec", &[("egress", ATOMIC), ("ingress", ATOMIC), ("policyTypes", ATOMIC)]),
    ("networking.v1.ServiceCIDRSpec", &[("cidrs", ATOMIC)]),
    ("networking.v1.ServiceCIDRStatus", &[("conditions", map(&["type"]).merge("type"))]),
    ("node.v1.Scheduling", &[("nodeSelector", NONE.map_type("atomic")), ("tolerations", ATOMIC)]),
    ("policy.v1.PodDisruptionBudgetSpec", &[("selector", NONE.strategy("replace"))]),
    ("policy.v1.PodDisruptionBudgetStatus", &[("conditions", map(&["type"]).merge("type"))]),
    ("rbac.v1.AggregationRule", &[("clusterRoleSelectors", ATOMIC)]),
    ("rbac.v1.ClusterRole", &[("rules", ATOMIC)]),
    ("rbac.v1.ClusterRoleBinding", &[("subjects", ATOMIC)]),
    (
        "rbac.v1.PolicyRule",
        &[
            ("apiGroups", ATOMIC),
            ("nonResourceURLs", ATOMIC),
            ("resourceNames", ATOMIC),
            ("resources", ATOMIC),
            ("verbs", ATOMIC),
        ],
    ),
    ("rbac.v1.Role", &[("rules", ATOMIC)]),
    ("rbac.v1.RoleBinding", &[("subjects", ATOMIC)]),
    ("storage.v1.CSIDriverSpec", &[("tokenRequests", ATOMIC), ("volumeLifecycleModes", SET)]),
    ("storage.v1.CSINodeDriver", &[("topologyKeys", ATOMIC)]),
    ("storage.v1.CSINodeSpec", &[("drivers", map(&["name"]).merge("name"))]),
    ("storage.v1.StorageClass", &[("allowedTopologies", ATOMIC), ("mountOptions", ATOMIC)]),
];

/// Types whose values are replaced whole by server-side apply (`+structType=atomic`): their
/// definition carries `x-kubernetes-map-type: atomic`.
static ATOMIC_TYPES: &[&str] = &[
    "autoscaling.v1.CrossVersionObjectReference",
    "core.v1.ConfigMapKeySelector",
    "core.v1.EndpointAddress",
    "core.v1.EndpointPort",
    "core.v1.LocalObjectReference",
    "core.v1.NodeSelector",
    "core.v1.NodeSelectorTerm",
    "core.v1.ObjectFieldSelector",
    "core.v1.ObjectReference",
    "core.v1.ResourceFieldSelector",
    "core.v1.ScopeSelector",
    "core.v1.SecretKeySelector",
    "core.v1.SecretReference",
    "core.v1.TopologySelectorTerm",
    "core.v1.TypedLocalObjectReference",
    "discovery.v1.EndpointPort",
    "meta.v1.LabelSelector",
    "meta.v1.OwnerReference",
    "networking.v1.ServiceBackendPort",
    "rbac.v1.RoleRef",
    "rbac.v1.Subject",
];

/// The definition name of a short type name: `core.v1.PodSpec` →
/// `io.k8s.api.core.v1.PodSpec`, `meta.v1.ObjectMeta` →
/// `io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta`, `apiextensions.v1.JSONSchemaProps` →
/// `io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps`.
pub fn full_name(short: &str) -> String {
    if let Some(rest) = short.strip_prefix("meta.") {
        format!("io.k8s.apimachinery.pkg.apis.meta.{rest}")
    } else if let Some(rest) = short.strip_prefix("apiextensions.") {
        format!("io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{rest}")
    } else {
        format!("io.k8s.api.{short}")
    }
}

static BY_DEFINITION: LazyLock<HashMap<String, &'static [(&'static str, FieldExtensions)]>> =
    LazyLock::new(|| FIELDS.iter().map(|(short, fields)| (full_name(short), *fields)).collect());

/// The fields of definition `definition` that carry extensions.
pub fn fields(definition: &str) -> &'static [(&'static str, FieldExtensions)] {
    BY_DEFINITION.get(definition).copied().unwrap_or(&[])
}

/// The extensions of one field, if it has any.
pub fn field(definition: &str, field: &str) -> Option<&'static FieldExtensions> {
    fields(definition).iter().find(|(name, _)| *name == field).map(|(_, ext)| ext)
}

/// Whether the definition is atomic as a whole (`x-kubernetes-map-type: atomic`).
pub fn is_atomic_type(definition: &str) -> bool {
    ATOMIC_TYPES.iter().any(|short| full_name(short) == definition)
}

/// Every definition the table names (for consistency tests).
pub fn definitions() -> impl Iterator<Item = String> {
    FIELDS.iter().map(|(short, _)| full_name(short)).chain(ATOMIC_TYPES.iter().map(|s| full_name(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_merge_by_name() {
        let c = field("io.k8s.api.core.v1.PodSpec", "containers").copied();
        assert_eq!(c.and_then(|e| e.patch_merge_key), Some("name"));
        assert_eq!(c.and_then(|e| e.patch_strategy), Some("merge"));
        assert_eq!(c.and_then(|e| e.list_type), Some("map"));
        let ports = field("io.k8s.api.core.v1.Container", "ports").copied();
        assert_eq!(ports.map(|e| e.list_map_keys), Some(&["containerPort", "protocol"][..]));
        assert_eq!(ports.and_then(|e| e.patch_merge_key), Some("containerPort"));
    }

    #[test]
    fn inline_fields_are_on_the_embedding_type() {
        // EphemeralContainer embeds EphemeralContainerCommon inline.
        let env = field("io.k8s.api.core.v1.EphemeralContainer", "env").copied();
        assert_eq!(env.and_then(|e| e.patch_merge_key), Some("name"));
    }

    #[test]
    fn strategies_without_lists() {
        let s = field("io.k8s.api.apps.v1.DeploymentSpec", "strategy").copied();
        assert_eq!(s.and_then(|e| e.patch_strategy), Some("retainKeys"));
        assert_eq!(s.and_then(|e| e.list_type), None);
        let v = field("io.k8s.api.core.v1.PodSpec", "volumes").copied();
        assert_eq!(v.and_then(|e| e.patch_strategy), Some("merge,retainKeys"));
        let f = field("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers").copied();
        assert_eq!((f.and_then(|e| e.list_type), f.and_then(|e| e.patch_merge_key)), (Some("set"), None));
        assert!(is_atomic_type("io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"));
        assert!(!is_atomic_type("io.k8s.api.core.v1.PodSpec"));
    }

    #[test]
    fn map_lists_name_their_keys_and_others_do_not() {
        for (ty, fields) in FIELDS {
            for (name, ext) in *fields {
                assert_eq!(
                    ext.list_type == Some("map"),
                    !ext.list_map_keys.is_empty(),
                    "{ty}.{name}: map lists and only they have keys"
                );
                if let Some(key) = ext.patch_merge_key {
                    assert!(ext.patch_strategy.is_some_and(|s| s.contains("merge")), "{ty}.{name}");
                    if ext.list_type == Some("map") {
                        assert!(ext.list_map_keys.contains(&key), "{ty}.{name}: merge key among the map keys");
                    }
                }
            }
        }
    }
}
