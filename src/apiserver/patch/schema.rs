//! Strategic-merge metadata of the built-in types: for each struct on a path to a field
//! with a patch strategy, the field's strategy (`merge`, `retainKeys`, `replace`) and merge
//! key, as the `patchStrategy`/`patchMergeKey` struct tags of upstream's API types declare
//! them. Fields not listed have no strategy: maps are merged key by key and lists replaced.
//!
//! The same table can feed the `x-kubernetes-patch-strategy` and
//! `x-kubernetes-patch-merge-key` extensions of the OpenAPI documents.

/// A field's patch strategy; several may combine (`merge,retainKeys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PatchStrategy {
    /// Lists are merged (by merge key for lists of objects, as a set for lists of scalars).
    pub merge: bool,
    /// Clients may send `$retainKeys` for this field (it only changes how patches are made:
    /// the directive is honoured wherever it appears).
    pub retain_keys: bool,
    /// The object is replaced whole, never merged.
    pub replace: bool,
}

impl PatchStrategy {
    const NONE: PatchStrategy = PatchStrategy { merge: false, retain_keys: false, replace: false };
    const MERGE: PatchStrategy = PatchStrategy { merge: true, retain_keys: false, replace: false };
    const MERGE_RETAIN: PatchStrategy = PatchStrategy { merge: true, retain_keys: true, replace: false };
    const RETAIN: PatchStrategy = PatchStrategy { merge: false, retain_keys: true, replace: false };
    const REPLACE: PatchStrategy = PatchStrategy { merge: false, retain_keys: false, replace: true };

    /// The value of `x-kubernetes-patch-strategy`, or `None` when the field has none.
    pub fn as_extension(&self) -> Option<&'static str> {
        match (self.merge, self.retain_keys, self.replace) {
            (true, true, _) => Some("merge,retainKeys"),
            (true, false, _) => Some("merge"),
            (false, true, _) => Some("retainKeys"),
            (false, false, true) => Some("replace"),
            (false, false, false) => None,
        }
    }
}

/// One field of a [`TypeSchema`].
#[derive(Debug)]
pub struct FieldSchema {
    /// The JSON field name.
    pub name: &'static str,
    /// How the field is patched.
    pub strategy: PatchStrategy,
    /// The key identifying list elements when a list of objects is merged.
    pub merge_key: Option<&'static str>,
    /// The field's type (for a list, its element type) when something inside it has a
    /// strategy; `None` otherwise.
    pub schema: Option<&'static TypeSchema>,
}

/// A struct type, listing only the fields that matter to strategic merge.
#[derive(Debug)]
pub struct TypeSchema {
    /// Upstream's type name, for messages and OpenAPI.
    pub name: &'static str,
    /// The fields with a strategy or leading to one.
    pub fields: &'static [FieldSchema],
}

impl TypeSchema {
    /// The metadata of field `name`, if it has any.
    pub fn field(&self, name: &str) -> Option<&'static FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }
}

const fn merge(name: &'static str, key: &'static str) -> FieldSchema {
    FieldSchema { name, strategy: PatchStrategy::MERGE, merge_key: Some(key), schema: None }
}

const fn merge_of(name: &'static str, key: &'static str, schema: &'static TypeSchema) -> FieldSchema {
    FieldSchema { name, strategy: PatchStrategy::MERGE, merge_key: Some(key), schema: Some(schema) }
}

const fn merge_retain(name: &'static str, key: &'static str) -> FieldSchema {
    FieldSchema { name, strategy: PatchStrategy::MERGE_RETAIN, merge_key: Some(key), schema: None }
}

/// A list of scalars merged as a set.
const fn set(name: &'static str) -> FieldSchema {
    FieldSchema { name, strategy: PatchStrategy::MERGE, merge_key: None, schema: None }
}

const fn nested(name: &'static str, schema: &'static TypeSchema) -> FieldSchema {
    FieldSchema { name, strategy: PatchStrategy::NONE, merge_key: None, schema: Some(schema) }
}

const fn conditions() -> FieldSchema {
    merge("conditions", "type")
}

pub static OBJECT_META: TypeSchema =
    TypeSchema { name: "ObjectMeta", fields: &[set("finalizers"), merge("ownerReferences", "uid")] };

const CONTAINER_FIELDS: &[FieldSchema] = &[
    merge("ports", "containerPort"),
    merge("env", "name"),
    merge("volumeMounts", "mountPath"),
    merge("volumeDevices", "devicePath"),
];

pub static CONTAINER: TypeSchema = TypeSchema { name: "Container", fields: CONTAINER_FIELDS };

pub static EPHEMERAL_CONTAINER: TypeSchema = TypeSchema { name: "EphemeralContainer", fields: CONTAINER_FIELDS };

pub static POD_SPEC: TypeSchema = TypeSchema {
    name: "PodSpec",
    fields: &[
        merge_retain("volumes", "name"),
        merge_of("initContainers", "name", &CONTAINER),
        merge_of("containers", "name", &CONTAINER),
        merge_of("ephemeralContainers", "name", &EPHEMERAL_CONTAINER),
        merge("imagePullSecrets", "name"),
        merge("hostAliases", "ip"),
        merge("topologySpreadConstraints", "topologyKey"),
        merge("schedulingGates", "name"),
        merge_retain("resourceClaims", "name"),
    ],
};

pub static POD_STATUS: TypeSchema = TypeSchema {
    name: "PodStatus",
    fields: &[
        conditions(),
        merge("hostIPs", "ip"),
        merge("podIPs", "ip"),
        merge_retain("resourceClaimStatuses", "name"),
    ],
};

pub static POD: TypeSchema = TypeSchema {
    name: "Pod",
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &POD_SPEC), nested("status", &POD_STATUS)],
};

pub static POD_TEMPLATE_SPEC: TypeSchema =
    TypeSchema { name: "PodTemplateSpec", fields: &[nested("metadata", &OBJECT_META), nested("spec", &POD_SPEC)] };

pub static POD_TEMPLATE: TypeSchema = TypeSchema {
    name: "PodTemplate",
    fields: &[nested("metadata", &OBJECT_META), nested("template", &POD_TEMPLATE_SPEC)],
};

/// The status of the many kinds whose only strategic status field is `conditions` by type.
static CONDITIONS_STATUS: TypeSchema = TypeSchema { name: "Status", fields: &[conditions()] };

/// The spec of workloads whose only strategic spec field is the pod template.
static TEMPLATED_SPEC: TypeSchema = TypeSchema { name: "Spec", fields: &[nested("template", &POD_TEMPLATE_SPEC)] };

/// A kind whose strategic fields are its metadata, the pod template in its spec and the
/// conditions in its status.
static TEMPLATED_WORKLOAD: TypeSchema = TypeSchema {
    name: "Workload",
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &TEMPLATED_SPEC), nested("status", &CONDITIONS_STATUS)],
};

static DEPLOYMENT_SPEC: TypeSchema = TypeSchema {
    name: "DeploymentSpec",
    fields: &[
        nested("template", &POD_TEMPLATE_SPEC),
        FieldSchema { name: "strategy", strategy: PatchStrategy::RETAIN, merge_key: None, schema: None },
    ],
};

pub static DEPLOYMENT: TypeSchema = TypeSchema {
    name: "Deployment",
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &DEPLOYMENT_SPEC), nested("status", &CONDITIONS_STATUS)],
};

static JOB_TEMPLATE_SPEC: TypeSchema = TypeSchema {
    name: "JobTemplateSpec",
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &TEMPLATED_SPEC)],
};

static CRON_JOB_SPEC: TypeSchema =
    TypeSchema { name: "CronJobSpec", fields: &[nested("jobTemplate", &JOB_TEMPLATE_SPEC)] };

pub static CRON_JOB: TypeSchema =
    TypeSchema { name: "CronJob", fields: &[nested("metadata", &OBJECT_META), nested("spec", &CRON_JOB_SPEC)] };

static SERVICE_SPEC: TypeSchema = TypeSchema { name: "ServiceSpec", fields: &[merge("ports", "port")] };

pub static SERVICE: TypeSchema = TypeSchema {
    name: "Service",
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &SERVICE_SPEC), nested("status", &CONDITIONS_STATUS)],
};

pub static SERVICE_ACCOUNT: TypeSchema =
    TypeSchema { name: "ServiceAccount", fields: &[nested("metadata", &OBJECT_META), merge("secrets", "name")] };

static NODE_SPEC: TypeSchema = TypeSchema { name: "NodeSpec", fields: &[set("podCIDRs")] };

static NODE_STATUS: TypeSchema = TypeSchema { name: "NodeStatus", fields: &[conditions(), merge("addresses", "type")] };

pub static NODE: TypeSchema = TypeSchema {
    name: "Node",
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &NODE_SPEC), nested("status", &NODE_STATUS)],
};

/// A kind whose strategic fields are its metadata and the conditions in its status.
static CONDITIONED: TypeSchema =
    TypeSchema { name: "Object", fields: &[nested("metadata", &OBJECT_META), nested("status", &CONDITIONS_STATUS)] };

pub static COMPONENT_STATUS: TypeSchema =
    TypeSchema { name: "ComponentStatus", fields: &[nested("metadata", &OBJECT_META), conditions()] };

static PDB_SPEC: TypeSchema = TypeSchema {
    name: "PodDisruptionBudgetSpec",
    fields: &[FieldSchema { name: "selector", strategy: PatchStrategy::REPLACE, merge_key: None, schema: None }],
};

pub static POD_DISRUPTION_BUDGET: TypeSchema = TypeSchema {
    name: "PodDisruptionBudget",
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &PDB_SPEC), nested("status", &CONDITIONS_STATUS)],
};

static CSI_NODE_SPEC: TypeSchema = TypeSchema { name: "CSINodeSpec", fields: &[merge("drivers", "name")] };

pub static CSI_NODE: TypeSchema =
    TypeSchema { name: "CSINode", fields: &[nested("metadata", &OBJECT_META), nested("spec", &CSI_NODE_SPEC)] };

static WEBHOOK: TypeSchema = TypeSchema { name: "Webhook", fields: &[merge("matchConditions", "name")] };

pub static WEBHOOK_CONFIGURATION: TypeSchema = TypeSchema {
    name: "WebhookConfiguration",
    fields: &[nested("metadata", &OBJECT_META), merge_of("webhooks", "name", &WEBHOOK)],
};

static VALIDATING_ADMISSION_POLICY_SPEC: TypeSchema = TypeSchema {
    name: "ValidatingAdmissionPolicySpec",
    fields: &[merge("matchConditions", "name"), merge("variables", "name")],
};

pub static VALIDATING_ADMISSION_POLICY: TypeSchema = TypeSchema {
    name: "ValidatingAdmissionPolicy",
    fields: &[nested("metadata", &OBJECT_META), nested("spec", &VALIDATING_ADMISSION_POLICY_SPEC)],
};

/// Kinds whose only strategic field is in their metadata.
pub static OBJECT: TypeSchema = TypeSchema { name: "Object", fields: &[nested("metadata", &OBJECT_META)] };

/// The strategic-merge schema of a built-in kind, by API group ("" for core) and kind;
/// `None` for kinds the server does not build in (custom resources), which cannot be
/// strategically merged.
pub fn strategic_schema(group: &str, kind: &str) -> Option<&'static TypeSchema> {
    let schema: &'static TypeSchema = match (group, kind) {
        ("", "Pod") => &POD,
        ("", "PodTemplate") => &POD_TEMPLATE,
        ("", "ReplicationController") => &TEMPLATED_WORKLOAD,
        ("", "Service") => &SERVICE,
        ("", "ServiceAccount") => &SERVICE_ACCOUNT,
        ("", "Node") => &NODE,
        ("", "Namespace" | "PersistentVolumeClaim") => &CONDITIONED,
        ("", "ComponentStatus") => &COMPONENT_STATUS,
        (
            "",
            "ConfigMap" | "Secret" | "Endpoints" | "Event" | "LimitRange" | "ResourceQuota" | "PersistentVolume"
            | "Binding",
        ) => &OBJECT,
        ("apps", "Deployment") => &DEPLOYMENT,
        ("apps", "ReplicaSet" | "StatefulSet" | "DaemonSet") => &TEMPLATED_WORKLOAD,
        ("apps", "ControllerRevision") => &OBJECT,
        ("batch", "Job") => &TEMPLATED_WORKLOAD,
        ("batch", "CronJob") => &CRON_JOB,
        ("autoscaling", "HorizontalPodAutoscaler") => &CONDITIONED,
        ("autoscaling", "Scale") => &OBJECT,
        ("networking.k8s.io", "ServiceCIDR") => &CONDITIONED,
        ("networking.k8s.io", "Ingress" | "IngressClass" | "NetworkPolicy" | "IPAddress") => &OBJECT,
        ("policy", "PodDisruptionBudget") => &POD_DISRUPTION_BUDGET,
        ("policy", "Eviction") => &OBJECT,
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole" | "RoleBinding" | "ClusterRoleBinding") => &OBJECT,
        ("storage.k8s.io", "CSINode") => &CSI_NODE,
        (
            "storage.k8s.io",
            "StorageClass" | "VolumeAttachment" | "CSIDriver" | "CSIStorageCapacity" | "VolumeAttributesClass",
        ) => &OBJECT,
        ("coordination.k8s.io", "Lease" | "LeaseCandidate") => &OBJECT,
        ("discovery.k8s.io", "EndpointSlice") => &OBJECT,
        ("scheduling.k8s.io", "PriorityClass") => &OBJECT,
        ("events.k8s.io", "Event") => &OBJECT,
        ("node.k8s.io", "RuntimeClass") => &OBJECT,
        ("certificates.k8s.io", "CertificateSigningRequest" | "ClusterTrustBundle") => &OBJECT,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => &OBJECT,
        ("apiregistration.k8s.io", "APIService") => &CONDITIONED,
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration") => {
            &WEBHOOK_CONFIGURATION
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => &VALIDATING_ADMISSION_POLICY,
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => &OBJECT,
        ("flowcontrol.apiserver.k8s.io", "FlowSchema" | "PriorityLevelConfiguration") => &CONDITIONED,
        (
            "authentication.k8s.io" | "authorization.k8s.io",
            "TokenReview"
            | "TokenRequest"
            | "SelfSubjectReview"
            | "SubjectAccessReview"
            | "SelfSubjectAccessReview"
            | "LocalSubjectAccessReview"
            | "SelfSubjectRulesReview",
        ) => &OBJECT,
        _ => return None,
    };
    Some(schema)
}
