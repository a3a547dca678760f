//! Upstream's bootstrap RBAC policy: the user-facing roles (cluster-admin, admin, edit,
//! view and their aggregation), the `system:*` roles and their bindings (the controllers'
//! `system:controller:*` roles too), created at the
//! first start and reconciled at every start as kube-apiserver's `rbac/bootstrap-roles`
//! hook does: a role or binding whose `rbac.authorization.kubernetes.io/autoupdate`
//! annotation is not `"false"` gets back the rules, aggregation selectors, subjects,
//! labels and annotations it lacks; what a user added is kept.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::ObjectMeta;
use serde_json::Value;

use super::rules::{policy_rule, uncovered};
use crate::apiserver::registry::WriteOptions;
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiServer;

pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
pub const BOOTSTRAPPING_LABEL: &str = "kubernetes.io/bootstrapping";
pub const AGGREGATE_TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
pub const AGGREGATE_TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
pub const AGGREGATE_TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";
const GROUP: &str = "rbac.authorization.k8s.io";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const EVENTS: &[&str] = &["create", "patch", "update"];

fn r(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    policy_rule(verbs, groups, resources, &[], &[])
}

fn named(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    policy_rule(verbs, groups, resources, names, &[])
}

fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
    policy_rule(verbs, &[], &[], &[], urls)
}

fn meta(name: &str, namespace: Option<&str>, labels: &[(&str, &str)]) -> ObjectMeta {
    let mut l: BTreeMap<String, String> = [(BOOTSTRAPPING_LABEL.to_string(), "rbac-defaults".to_string())].into();
    l.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(str::to_string),
        labels: Some(l),
        annotations: Some([(AUTOUPDATE.to_string(), "true".to_string())].into()),
        ..Default::default()
    }
}

fn cluster_role(name: &str, labels: &[(&str, &str)], rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole { metadata: meta(name, None, labels), rules: Some(rules), aggregation_rule: None }
}

fn aggregated(name: &str, labels: &[(&str, &str)], selector: &str) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, None, labels),
        rules: None,
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some([(selector.to_string(), "true".to_string())].into()),
                match_expressions: None,
            }]),
        }),
    }
}

fn signer_approver(name: &str, signer: &str) -> ClusterRole {
    cluster_role(name, &[], vec![named(&["approve"], &["certificates.k8s.io"], &["signers"], &[signer])])
}

/// Every bootstrap ClusterRole, in upstream's order (by name).
pub fn cluster_roles() -> Vec<ClusterRole> {
    let core = &[""];
    vec![
        aggregated("admin", &[], AGGREGATE_TO_ADMIN),
        cluster_role("cluster-admin", &[], vec![r(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])]),
        aggregated("edit", &[(AGGREGATE_TO_ADMIN, "true")], AGGREGATE_TO_EDIT),
        cluster_role(
            "system:aggregate-to-admin",
            &[(AGGREGATE_TO_ADMIN, "true")],
            vec![
                r(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews"]),
                r(READ_WRITE, &[GROUP], &["rolebindings", "roles"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            &[(AGGREGATE_TO_EDIT, "true")],
            vec![
                r(
                    READ,
                    core,
                    &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"],
                ),
                r(&["impersonate"], core, &["serviceaccounts"]),
                r(WRITE, core, &["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"]),
                r(&["create"], core, &["pods/eviction"]),
                r(
                    WRITE,
                    core,
                    &[
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "services/proxy",
                    ],
                ),
                r(&["create"], core, &["serviceaccounts/token"]),
                r(
                    WRITE,
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                ),
                r(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
                r(WRITE, &["batch"], &["cronjobs", "jobs"]),
                r(
                    WRITE,
                    &["extensions"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/rollback",
                        "deployments/scale",
                        "ingresses",
                        "networkpolicies",
                        "replicasets",
                        "replicasets/scale",
                        "replicationcontrollers/scale",
                    ],
                ),
                r(WRITE, &["policy"], &["poddisruptionbudgets"]),
                r(WRITE, &["networking.k8s.io"], &["ingresses", "networkpolicies"]),
                r(READ_WRITE, &["coordination.k8s.io"], &["leases"]),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            &[(AGGREGATE_TO_VIEW, "true")],
            vec![
                r(
                    READ,
                    core,
                    &[
                        "configmaps",
                        "endpoints",
                        "persistentvolumeclaims",
                        "persistentvolumeclaims/status",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "serviceaccounts",
                        "services",
                        "services/status",
                    ],
                ),
                r(
                    READ,
                    core,
                    &[
                        "bindings",
                        "events",
                        "limitranges",
                        "namespaces/status",
                        "pods/log",
                        "pods/status",
                        "replicationcontrollers/status",
                        "resourcequotas",
                        "resourcequotas/status",
                    ],
                ),
                r(READ, core, &["namespaces"]),
                r(READ, &["discovery.k8s.io"], &["endpointslices"]),
                r(
                    READ,
                    &["apps"],
                    &[
                        "controllerrevisions",
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "statefulsets",
                        "statefulsets/scale",
                        "statefulsets/status",
                    ],
                ),
                r(READ, &["autoscaling"], &["horizontalpodautoscalers", "horizontalpodautoscalers/status"]),
                r(READ, &["batch"], &["cronjobs", "cronjobs/status", "jobs", "jobs/status"]),
                r(
                    READ,
                    &["extensions"],
                    &[
                        "daemonsets",
                        "daemonsets/status",
                        "deployments",
                        "deployments/scale",
                        "deployments/status",
                        "ingresses",
                        "ingresses/status",
                        "networkpolicies",
                        "replicasets",
                        "replicasets/scale",
                        "replicasets/status",
                        "replicationcontrollers/scale",
                    ],
                ),
                r(READ, &["policy"], &["poddisruptionbudgets", "poddisruptionbudgets/status"]),
                r(READ, &["networking.k8s.io"], &["ingresses", "ingresses/status", "networkpolicies"]),
            ],
        ),
        cluster_role(
            "system:auth-delegator",
            &[],
            vec![
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
            ],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                r(&["create"], &["authorization.k8s.io"], &["selfsubjectaccessreviews", "selfsubjectrulesreviews"]),
                r(&["create"], &["authentication.k8s.io"], &["selfsubjectreviews"]),
            ],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            &[],
            vec![r(&["create"], &["certificates.k8s.io"], &["certificatesigningrequests/nodeclient"])],
        ),
        cluster_role(
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            &[],
            vec![r(&["create"], &["certificates.k8s.io"], &["certificatesigningrequests/selfnodeclient"])],
        ),
        signer_approver(
            "system:certificates.k8s.io:kube-apiserver-client-approver",
            "kubernetes.io/kube-apiserver-client",
        ),
        signer_approver(
            "system:certificates.k8s.io:kube-apiserver-client-kubelet-approver",
            "kubernetes.io/kube-apiserver-client-kubelet",
        ),
        signer_approver("system:certificates.k8s.io:kubelet-serving-approver", "kubernetes.io/kubelet-serving"),
        signer_approver("system:certificates.k8s.io:legacy-unknown-approver", "kubernetes.io/legacy-unknown"),
        cluster_role(
            "system:discovery",
            &[],
            vec![urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:heapster",
            &[],
            vec![r(READ, core, &["events", "namespaces", "nodes", "pods"]), r(READ, &["extensions"], &["deployments"])],
        ),
        cluster_role("system:kube-aggregator", &[], vec![r(READ, core, &["endpoints", "services"])]),
        cluster_role(
            "system:kube-controller-manager",
            &[],
            vec![
                r(EVENTS, &["", "events.k8s.io"], &["events"]),
                r(&["create"], &["coordination.k8s.io"], &["leases"]),
                named(&["get", "update"], &["coordination.k8s.io"], &["leases"], &["kube-controller-manager"]),
                r(&["create"], core, &["secrets", "serviceaccounts"]),
                r(&["delete"], core, &["secrets"]),
                r(&["get"], core, &["configmaps", "namespaces", "secrets", "serviceaccounts"]),
                r(&["update"], core, &["secrets", "serviceaccounts"]),
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
                r(&["list", "watch"], &["*"], &["*"]),
                r(&["create"], core, &["serviceaccounts/token"]),
            ],
        ),
        cluster_role("system:kube-dns", &[], vec![r(&["list", "watch"], core, &["endpoints", "services"])]),
        cluster_role(
            "system:kube-scheduler",
            &[],
            vec![
                r(EVENTS, &["", "events.k8s.io"], &["events"]),
                r(&["create"], &["coordination.k8s.io"], &["leases"]),
                named(&["get", "update"], &["coordination.k8s.io"], &["leases"], &["kube-scheduler"]),
                r(READ, core, &["nodes"]),
                r(&["delete", "get", "list", "watch"], core, &["pods"]),
                r(&["create"], core, &["bindings", "pods/binding"]),
                r(&["patch", "update"], core, &["pods/status"]),
                r(READ, core, &["replicationcontrollers", "services"]),
                r(READ, &["apps", "extensions"], &["replicasets"]),
                r(READ, &["apps"], &["statefulsets"]),
                r(READ, &["policy"], &["poddisruptionbudgets"]),
                r(READ, core, &["persistentvolumeclaims", "persistentvolumes"]),
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
                r(READ, &["storage.k8s.io"], &["csinodes"]),
                r(READ, core, &["namespaces"]),
                r(READ, &["storage.k8s.io"], &["csidrivers"]),
                r(READ, &["storage.k8s.io"], &["csistoragecapacities"]),
            ],
        ),
        cluster_role(
            "system:kubelet-api-admin",
            &[],
            vec![
                r(READ, core, &["nodes"]),
                r(&["proxy"], core, &["nodes"]),
                r(&["*"], core, &["nodes/log", "nodes/metrics", "nodes/proxy", "nodes/stats"]),
            ],
        ),
        cluster_role(
            "system:monitoring",
            &[],
            vec![urls(
                &["get"],
                &["/healthz", "/healthz/*", "/livez", "/livez/*", "/metrics", "/metrics/slis", "/readyz", "/readyz/*"],
            )],
        ),
        cluster_role(
            "system:node",
            &[],
            vec![
                r(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                r(&["create"], &["authorization.k8s.io"], &["localsubjectaccessreviews", "subjectaccessreviews"]),
                r(READ, core, &["services"]),
                r(&["create", "get", "list", "watch"], core, &["nodes"]),
                r(&["patch", "update"], core, &["nodes/status"]),
                r(&["patch", "update"], core, &["nodes"]),
                r(EVENTS, core, &["events"]),
                r(READ, core, &["pods"]),
                r(&["create", "delete"], core, &["pods"]),
                r(&["patch", "update"], core, &["pods/status"]),
                r(&["create"], core, &["pods/eviction"]),
                r(READ, core, &["configmaps", "secrets"]),
                r(&["get"], core, &["persistentvolumeclaims", "persistentvolumes"]),
                r(&["get"], core, &["endpoints"]),
                r(&["create", "get", "list", "watch"], &["certificates.k8s.io"], &["certificatesigningrequests"]),
                r(&["create", "delete", "get", "patch", "update"], &["coordination.k8s.io"], &["leases"]),
                r(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
                r(&["create"], core, &["serviceaccounts/token"]),
                r(&["get", "patch", "update"], core, &["persistentvolumeclaims/status"]),
                r(READ, &["storage.k8s.io"], &["csidrivers"]),
                r(&["create", "delete", "get", "patch", "update"], &["storage.k8s.io"], &["csinodes"]),
                r(READ, &["node.k8s.io"], &["runtimeclasses"]),
            ],
        ),
        cluster_role(
            "system:node-bootstrapper",
            &[],
            vec![r(&["create", "get", "list", "watch"], &["certificates.k8s.io"], &["certificatesigningrequests"])],
        ),
        cluster_role(
            "system:node-problem-detector",
            &[],
            vec![
                r(&["get"], core, &["nodes"]),
                r(&["patch"], core, &["nodes/status"]),
                r(EVENTS, &["", "events.k8s.io"], &["events"]),
            ],
        ),
        cluster_role(
            "system:node-proxier",
            &[],
            vec![
                r(&["list", "watch"], core, &["endpoints", "services"]),
                r(READ, core, &["nodes"]),
                r(EVENTS, &["", "events.k8s.io"], &["events"]),
                r(&["list", "watch"], &["discovery.k8s.io"], &["endpointslices"]),
            ],
        ),
        cluster_role(
            "system:persistent-volume-provisioner",
            &[],
            vec![
                r(&["create", "delete", "get", "list", "watch"], core, &["persistentvolumes"]),
                r(&["get", "list", "update", "watch"], core, &["persistentvolumeclaims"]),
                r(READ, &["storage.k8s.io"], &["storageclasses"]),
                r(&["watch"], core, &["events"]),
                r(EVENTS, &["", "events.k8s.io"], &["events"]),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![urls(&["get"], &["/healthz", "/livez", "/readyz", "/version", "/version/"])],
        ),
        cluster_role(
            "system:service-account-issuer-discovery",
            &[],
            vec![urls(&["get"], &["/.well-known/openid-configuration", "/openid/v1/jwks"])],
        ),
        cluster_role(
            "system:volume-scheduler",
            &[],
            vec![
                r(&["get", "list", "patch", "update", "watch"], core, &["persistentvolumes"]),
                r(READ, &["storage.k8s.io"], &["storageclasses"]),
                r(&["get", "list", "patch", "update", "watch"], core, &["persistentvolumeclaims"]),
            ],
        ),
        aggregated("view", &[(AGGREGATE_TO_EDIT, "true")], AGGREGATE_TO_VIEW),
    ]
}

/// The events rule every controller role ends with.
fn events() -> PolicyRule {
    r(EVENTS, &["", "events.k8s.io"], &["events"])
}

fn controller(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    cluster_role(&format!("system:controller:{name}"), &[], rules)
}

/// The roles of the controller manager's controllers (`system:controller:<name>`), each
/// bound to the service account `kube-system/<name>` that upstream's controller manager
/// runs that controller as, in upstream's order (by name).
pub fn controller_roles() -> Vec<ClusterRole> {
    let core = &[""];
    let apps_ext = &["apps", "extensions"];
    let rw_all = &["create", "delete", "get", "list", "patch", "update", "watch"];
    vec![
        controller(
            "attachdetach-controller",
            vec![
                r(&["list", "watch"], core, &["persistentvolumeclaims", "persistentvolumes"]),
                r(READ, core, &["nodes"]),
                r(&["patch", "update"], core, &["nodes/status"]),
                r(&["list", "watch"], core, &["pods"]),
                events(),
                r(&["create", "delete", "get", "list", "watch"], &["storage.k8s.io"], &["volumeattachments"]),
                r(READ, &["storage.k8s.io"], &["csidrivers"]),
                r(READ, &["storage.k8s.io"], &["csinodes"]),
            ],
        ),
        controller(
            "certificate-controller",
            vec![
                r(&["delete", "get", "list", "watch"], &["certificates.k8s.io"], &["certificatesigningrequests"]),
                r(
                    &["update"],
                    &["certificates.k8s.io"],
                    &["certificatesigningrequests/approval", "certificatesigningrequests/status"],
                ),
                named(
                    &["approve"],
                    &["certificates.k8s.io"],
                    &["signers"],
                    &["kubernetes.io/kube-apiserver-client-kubelet"],
                ),
                named(
                    &["sign"],
                    &["certificates.k8s.io"],
                    &["signers"],
                    &[
                        "kubernetes.io/kube-apiserver-client",
                        "kubernetes.io/kube-apiserver-client-kubelet",
                        "kubernetes.io/kubelet-serving",
                        "kubernetes.io/legacy-unknown",
                    ],
                ),
                r(&["create"], &["authorization.k8s.io"], &["subjectaccessreviews"]),
                events(),
            ],
        ),
        controller(
            "clusterrole-aggregation-controller",
            vec![r(&["escalate", "get", "list", "patch", "update", "watch"], &[GROUP], &["clusterroles"])],
        ),
        controller(
            "cronjob-controller",
            vec![
                r(&["get", "list", "update", "watch"], &["batch"], &["cronjobs"]),
                r(rw_all, &["batch"], &["jobs"]),
                r(&["update"], &["batch"], &["cronjobs/status"]),
                r(&["update"], &["batch"], &["cronjobs/finalizers"]),
                r(&["delete", "list", "watch"], core, &["pods"]),
                events(),
            ],
        ),
        controller(
            "daemon-set-controller",
            vec![
                r(READ, apps_ext, &["daemonsets"]),
                r(&["update"], apps_ext, &["daemonsets/status"]),
                r(&["update"], apps_ext, &["daemonsets/finalizers"]),
                r(&["list", "watch"], core, &["nodes"]),
                r(&["create", "delete", "list", "patch", "watch"], core, &["pods"]),
                r(&["create"], core, &["pods/binding"]),
                r(rw_all, &["apps"], &["controllerrevisions"]),
                events(),
            ],
        ),
        controller(
            "deployment-controller",
            vec![
                r(&["get", "list", "update", "watch"], apps_ext, &["deployments"]),
                r(&["update"], apps_ext, &["deployments/status"]),
                r(&["update"], apps_ext, &["deployments/finalizers"]),
                r(rw_all, apps_ext, &["replicasets"]),
                r(&["get", "list", "update", "watch"], core, &["pods"]),
                events(),
            ],
        ),
        controller(
            "device-taint-eviction-controller",
            vec![
                r(&["delete", "get", "list", "watch"], core, &["pods"]),
                r(&["patch", "update"], core, &["pods/status"]),
                r(READ, &["resource.k8s.io"], &["resourceclaims"]),
                r(READ, &["resource.k8s.io"], &["resourceslices"]),
                r(READ, &["resource.k8s.io"], &["deviceclasses"]),
                events(),
            ],
        ),
        controller(
            "disruption-controller",
            vec![
                r(READ, apps_ext, &["deployments"]),
                r(READ, apps_ext, &["replicasets"]),
                r(READ, core, &["replicationcontrollers"]),
                r(READ, &["policy"], &["poddisruptionbudgets"]),
                r(READ, &["apps"], &["statefulsets"]),
                r(&["update"], &["policy"], &["poddisruptionbudgets/status"]),
                r(&["patch", "update"], core, &["pods/status"]),
                r(&["get"], &["*"], &["*/scale"]),
                events(),
            ],
        ),
        controller(
            "endpoint-controller",
            vec![
                r(READ, core, &["pods", "services"]),
                r(&["create", "delete", "get", "list", "update", "watch"], core, &["endpoints"]),
                r(&["create"], core, &["endpoints/restricted"]),
                events(),
            ],
        ),
        controller(
            "endpointslice-controller",
            vec![
                r(READ, core, &["nodes", "pods", "services"]),
                r(&["update"], core, &["services/finalizers"]),
                r(&["create", "delete", "get", "list", "update", "watch"], &["discovery.k8s.io"], &["endpointslices"]),
                events(),
            ],
        ),
        controller(
            "endpointslicemirroring-controller",
            vec![
                r(READ, core, &["endpoints", "services"]),
                r(&["update"], core, &["services/finalizers"]),
                r(&["update"], core, &["endpoints/finalizers"]),
                r(&["create", "delete", "get", "list", "update", "watch"], &["discovery.k8s.io"], &["endpointslices"]),
                events(),
            ],
        ),
        controller(
            "ephemeral-volume-controller",
            vec![
                r(READ, core, &["pods"]),
                r(&["update"], core, &["pods/finalizers"]),
                r(&["create", "get", "list", "watch"], core, &["persistentvolumeclaims"]),
                events(),
            ],
        ),
        controller(
            "expand-controller",
            vec![
                r(&["get", "list", "patch", "update", "watch"], core, &["persistentvolumes"]),
                r(&["patch", "update"], core, &["persistentvolumeclaims/status"]),
                r(READ, core, &["persistentvolumeclaims"]),
                events(),
            ],
        ),
        controller(
            "generic-garbage-collector",
            vec![r(&["delete", "get", "list", "patch", "update", "watch"], &["*"], &["*"]), events()],
        ),
        controller(
            "horizontal-pod-autoscaler",
            vec![
                r(READ, &["autoscaling"], &["horizontalpodautoscalers"]),
                r(&["update"], &["autoscaling"], &["horizontalpodautoscalers/status"]),
                r(&["get", "update"], &["*"], &["*/scale"]),
                r(&["list", "watch"], core, &["pods"]),
                r(&["list", "watch"], &["metrics.k8s.io"], &["pods"]),
                r(READ, &["custom.metrics.k8s.io"], &["*"]),
                r(READ, &["external.metrics.k8s.io"], &["*"]),
                events(),
            ],
        ),
        controller(
            "job-controller",
            vec![
                r(&["get", "list", "patch", "update", "watch"], &["batch"], &["jobs"]),
                r(&["update"], &["batch"], &["jobs/status"]),
                r(&["update"], &["batch"], &["jobs/finalizers"]),
                r(&["create", "delete", "list", "patch", "watch"], core, &["pods"]),
                events(),
            ],
        ),
        controller(
            "legacy-service-account-token-cleaner",
            vec![
                named(&["get"], core, &["configmaps"], &["kube-apiserver-legacy-service-account-token-tracking"]),
                r(&["delete", "patch"], core, &["secrets"]),
            ],
        ),
        controller(
            "namespace-controller",
            vec![
                r(&["delete", "get", "list", "watch"], core, &["namespaces"]),
                r(&["update"], core, &["namespaces/finalize", "namespaces/status"]),
                r(&["delete", "deletecollection", "get", "list", "watch"], &["*"], &["*"]),
            ],
        ),
        controller(
            "node-controller",
            vec![
                r(&["delete", "get", "list", "patch", "update", "watch"], core, &["nodes"]),
                r(&["patch", "update"], core, &["nodes/status"]),
                r(&["patch", "update"], core, &["pods/status"]),
                r(&["delete", "get", "list", "watch"], core, &["pods"]),
                events(),
            ],
        ),
        controller(
            "persistent-volume-binder",
            vec![
                r(&["create", "delete", "get", "list", "update", "watch"], core, &["persistentvolumes"]),
                r(&["update"], core, &["persistentvolumes/status"]),
                r(&["get", "list", "update", "watch"], core, &["persistentvolumeclaims"]),
                r(&["update"], core, &["persistentvolumeclaims/status"]),
                r(&["create", "delete", "get", "list", "watch"], core, &["pods"]),
                r(READ, &["storage.k8s.io"], &["storageclasses"]),
                r(&["list", "watch"], core, &["nodes"]),
                events(),
                r(&["watch"], core, &["events"]),
            ],
        ),
        controller(
            "pod-garbage-collector",
            vec![
                r(&["delete", "list", "watch"], core, &["pods"]),
                r(READ, core, &["nodes"]),
                r(&["patch"], core, &["pods/status"]),
            ],
        ),
        controller(
            "pv-protection-controller",
            vec![r(&["get", "list", "update", "watch"], core, &["persistentvolumes"]), events()],
        ),
        controller(
            "pvc-protection-controller",
            vec![
                r(&["get", "list", "update", "watch"], core, &["persistentvolumeclaims"]),
                r(&["update"], core, &["persistentvolumeclaims/status"]),
                r(READ, core, &["pods"]),
                events(),
            ],
        ),
        controller(
            "replicaset-controller",
            vec![
                r(&["get", "list", "update", "watch"], apps_ext, &["replicasets"]),
                r(&["update"], apps_ext, &["replicasets/status"]),
                r(&["update"], apps_ext, &["replicasets/finalizers"]),
                r(&["create", "delete", "list", "patch", "watch"], core, &["pods"]),
                events(),
            ],
        ),
        controller(
            "replication-controller",
            vec![
                r(&["get", "list", "update", "watch"], core, &["replicationcontrollers"]),
                r(&["update"], core, &["replicationcontrollers/status"]),
                r(&["update"], core, &["replicationcontrollers/finalizers"]),
                r(&["create", "delete", "list", "patch", "watch"], core, &["pods"]),
                events(),
            ],
        ),
        controller(
            "resource-claim-controller",
            vec![
                r(READ, core, &["pods"]),
                r(&["update"], core, &["pods/finalizers"]),
                r(&["create", "delete", "get", "list", "watch"], &["resource.k8s.io"], &["resourceclaims"]),
                r(&["patch", "update"], &["resource.k8s.io"], &["resourceclaims", "resourceclaims/status"]),
                r(&["patch", "update"], core, &["pods/status"]),
                events(),
                r(&["patch", "update"], &["resource.k8s.io"], &["resourceclaims/binding"]),
            ],
        ),
        controller(
            "resourcequota-controller",
            vec![r(&["list", "watch"], &["*"], &["*"]), r(&["update"], core, &["resourcequotas/status"]), events()],
        ),
        controller("root-ca-cert-publisher", vec![r(&["create", "update"], core, &["configmaps"]), events()]),
        controller(
            "route-controller",
            vec![r(&["list", "watch"], core, &["nodes"]), r(&["patch"], core, &["nodes/status"]), events()],
        ),
        controller(
            "selinux-warning-controller",
            vec![
                events(),
                r(READ, core, &["persistentvolumes"]),
                r(READ, core, &["persistentvolumeclaims"]),
                r(READ, core, &["pods"]),
                r(READ, &["storage.k8s.io"], &["csidrivers"]),
            ],
        ),
        controller("service-account-controller", vec![r(&["create"], core, &["serviceaccounts"]), events()]),
        controller(
            "service-cidrs-controller",
            vec![
                r(&["get", "list", "patch", "update", "watch"], &["networking.k8s.io"], &["servicecidrs"]),
                r(&["patch", "update"], &["networking.k8s.io"], &["servicecidrs/finalizers"]),
                r(&["patch", "update"], &["networking.k8s.io"], &["servicecidrs/status"]),
                r(READ, &["networking.k8s.io"], &["ipaddresses"]),
                events(),
            ],
        ),
        controller(
            "service-controller",
            vec![
                r(READ, core, &["services"]),
                r(&["patch", "update"], core, &["services/status"]),
                r(&["list", "watch"], core, &["nodes"]),
                events(),
            ],
        ),
        controller(
            "statefulset-controller",
            vec![
                r(&["list", "watch"], core, &["pods"]),
                r(READ, &["apps"], &["statefulsets"]),
                r(&["update"], &["apps"], &["statefulsets/status"]),
                r(&["update"], &["apps"], &["statefulsets/finalizers"]),
                r(&["create", "delete", "get", "patch", "update"], core, &["pods"]),
                r(rw_all, &["apps"], &["controllerrevisions"]),
                r(&["create", "get", "list", "watch"], core, &["persistentvolumeclaims"]),
                r(&["delete", "update"], core, &["persistentvolumeclaims"]),
                r(&["update"], core, &["pods/finalizers"]),
                events(),
            ],
        ),
        controller(
            "ttl-after-finished-controller",
            vec![r(&["delete", "get", "list", "watch"], &["batch"], &["jobs"]), events()],
        ),
        controller("ttl-controller", vec![r(&["list", "patch", "update", "watch"], core, &["nodes"]), events()]),
        controller(
            "validatingadmissionpolicy-status-controller",
            vec![
                r(READ, &["admissionregistration.k8s.io"], &["validatingadmissionpolicies"]),
                r(
                    &["get", "patch", "update"],
                    &["admissionregistration.k8s.io"],
                    &["validatingadmissionpolicies/status"],
                ),
                events(),
            ],
        ),
        controller(
            "volumeattributesclass-protection-controller",
            vec![
                r(READ, core, &["persistentvolumeclaims"]),
                r(READ, core, &["persistentvolumes"]),
                r(&["get", "list", "update", "watch"], &["storage.k8s.io"], &["volumeattributesclasses"]),
                events(),
            ],
        ),
    ]
}

/// Each controller role bound to its controller's service account in `kube-system`.
pub fn controller_role_bindings() -> Vec<ClusterRoleBinding> {
    controller_roles()
        .into_iter()
        .filter_map(|role| role.metadata.name)
        .map(|name| {
            let account = name.trim_start_matches("system:controller:").to_string();
            cluster_binding(&name, &[("ServiceAccount", &format!("kube-system/{account}"))])
        })
        .collect()
}

fn subject(kind: &str, name: &str) -> Subject {
    let (name, namespace) = match (kind, name.split_once('/')) {
        ("ServiceAccount", Some((ns, n))) => (n, Some(ns.to_string())),
        _ => (name, None),
    };
    Subject {
        kind: kind.into(),
        name: name.into(),
        namespace,
        api_group: (kind != "ServiceAccount").then(|| GROUP.to_string()),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef { api_group: GROUP.into(), kind: kind.into(), name: name.into() }
}

fn cluster_binding(name: &str, subjects: &[(&str, &str)]) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, None, &[]),
        role_ref: role_ref("ClusterRole", name),
        subjects: (!subjects.is_empty()).then(|| subjects.iter().map(|(k, n)| subject(k, n)).collect()),
    }
}

/// Every bootstrap ClusterRoleBinding, each named after its ClusterRole.
pub fn cluster_role_bindings() -> Vec<ClusterRoleBinding> {
    vec![
        cluster_binding("cluster-admin", &[("Group", "system:masters")]),
        cluster_binding("system:basic-user", &[("Group", "system:authenticated")]),
        cluster_binding("system:discovery", &[("Group", "system:authenticated")]),
        cluster_binding("system:kube-controller-manager", &[("User", "system:kube-controller-manager")]),
        cluster_binding("system:kube-dns", &[("ServiceAccount", "kube-system/kube-dns")]),
        cluster_binding("system:kube-scheduler", &[("User", "system:kube-scheduler")]),
        cluster_binding("system:monitoring", &[("Group", "system:monitoring")]),
        cluster_binding("system:node", &[]),
        cluster_binding("system:node-proxier", &[("User", "system:kube-proxy")]),
        cluster_binding(
            "system:public-info-viewer",
            &[("Group", "system:authenticated"), ("Group", "system:unauthenticated")],
        ),
        cluster_binding("system:service-account-issuer-discovery", &[("Group", "system:serviceaccounts")]),
        cluster_binding("system:volume-scheduler", &[("User", "system:kube-scheduler")]),
    ]
}

/// The bootstrap Roles of `kube-system` and `kube-public`.
pub fn namespace_roles() -> Vec<Role> {
    let role =
        |ns: &str, name: &str, rules: Vec<PolicyRule>| Role { metadata: meta(name, Some(ns), &[]), rules: Some(rules) };
    let leader_locking = |component: &str| {
        role(
            "kube-system",
            &format!("system::leader-locking-{component}"),
            vec![
                r(&["watch"], &[""], &["configmaps"]),
                named(&["get", "update"], &[""], &["configmaps"], &[component]),
            ],
        )
    };
    vec![
        role(
            "kube-public",
            "system:controller:bootstrap-signer",
            vec![
                r(READ, &[""], &["configmaps"]),
                named(&["update"], &[""], &["configmaps"], &["cluster-info"]),
                r(EVENTS, &["", "events.k8s.io"], &["events"]),
            ],
        ),
        role(
            "kube-system",
            "extension-apiserver-authentication-reader",
            vec![named(READ, &[""], &["configmaps"], &["extension-apiserver-authentication"])],
        ),
        leader_locking("kube-controller-manager"),
        leader_locking("kube-scheduler"),
        role("kube-system", "system:controller:bootstrap-signer", vec![r(READ, &[""], &["secrets"])]),
        role(
            "kube-system",
            "system:controller:cloud-provider",
            vec![r(&["create", "get", "list", "watch"], &[""], &["configmaps"])],
        ),
        role(
            "kube-system",
            "system:controller:token-cleaner",
            vec![
                r(&["delete", "get", "list", "watch"], &[""], &["secrets"]),
                r(EVENTS, &["", "events.k8s.io"], &["events"]),
            ],
        ),
    ]
}

/// The bootstrap RoleBindings of `kube-system` and `kube-public`.
pub fn namespace_role_bindings() -> Vec<RoleBinding> {
    let binding = |ns: &str, name: &str, role: &str, subjects: &[(&str, &str)]| RoleBinding {
        metadata: meta(name, Some(ns), &[]),
        role_ref: role_ref("Role", role),
        subjects: Some(subjects.iter().map(|(k, n)| subject(k, n)).collect()),
    };
    vec![
        binding(
            "kube-public",
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            &[("ServiceAccount", "kube-system/bootstrap-signer")],
        ),
        binding(
            "kube-system",
            "system::extension-apiserver-authentication-reader",
            "extension-apiserver-authentication-reader",
            &[("User", "system:kube-controller-manager"), ("User", "system:kube-scheduler")],
        ),
        binding(
            "kube-system",
            "system::leader-locking-kube-controller-manager",
            "system::leader-locking-kube-controller-manager",
            &[("ServiceAccount", "kube-system/kube-controller-manager")],
        ),
        binding(
            "kube-system",
            "system::leader-locking-kube-scheduler",
            "system::leader-locking-kube-scheduler",
            &[("ServiceAccount", "kube-system/kube-scheduler")],
        ),
        binding(
            "kube-system",
            "system:controller:bootstrap-signer",
            "system:controller:bootstrap-signer",
            &[("ServiceAccount", "kube-system/bootstrap-signer")],
        ),
        binding(
            "kube-system",
            "system:controller:cloud-provider",
            "system:controller:cloud-provider",
            &[("ServiceAccount", "kube-system/cloud-provider")],
        ),
        binding(
            "kube-system",
            "system:controller:token-cleaner",
            "system:controller:token-cleaner",
            &[("ServiceAccount", "kube-system/token-cleaner")],
        ),
    ]
}

fn autoupdate_off(m: &ObjectMeta) -> bool {
    m.annotations.as_ref().and_then(|a| a.get(AUTOUPDATE)).is_some_and(|v| v == "false")
}

/// Labels and annotations of `expected` that `existing` lacks (existing values win).
fn merge_meta(existing: &mut ObjectMeta, expected: &ObjectMeta) -> bool {
    let mut changed = false;
    for (have, want) in [(&mut existing.labels, &expected.labels), (&mut existing.annotations, &expected.annotations)] {
        for (k, v) in want.iter().flatten() {
            let map = have.get_or_insert_with(BTreeMap::new);
            if !map.contains_key(k) {
                map.insert(k.clone(), v.clone());
                changed = true;
            }
        }
    }
    changed
}

/// `existing` with what it lacks of `expected`'s rules and aggregation selectors, or
/// `None` when nothing is missing (or autoupdate is off).
pub fn reconcile_rules(
    meta: &mut ObjectMeta,
    rules: &mut Option<Vec<PolicyRule>>,
    aggregation: Option<&mut Option<AggregationRule>>,
    expected_meta: &ObjectMeta,
    expected_rules: &Option<Vec<PolicyRule>>,
    expected_aggregation: Option<&AggregationRule>,
) -> bool {
    if autoupdate_off(meta) {
        return false;
    }
    let mut changed = merge_meta(meta, expected_meta);
    match (aggregation, expected_aggregation) {
        (Some(have), Some(want)) => {
            let have = have.get_or_insert_with(Default::default);
            for sel in want.cluster_role_selectors.iter().flatten() {
                let list = have.cluster_role_selectors.get_or_insert_with(Vec::new);
                if !list.contains(sel) {
                    list.push(sel.clone());
                    changed = true;
                }
            }
        }
        _ => {
            // A rule not wholly covered is added whole, as upstream adds them.
            for rule in expected_rules.iter().flatten() {
                if !uncovered(rules.as_deref().unwrap_or(&[]), std::slice::from_ref(rule)).is_empty() {
                    rules.get_or_insert_with(Vec::new).push(rule.clone());
                    changed = true;
                }
            }
        }
    }
    changed
}

/// Adds the subjects and metadata `existing` lacks; `None` when the binding must be made
/// again (its roleRef changed, which cannot be updated) .
fn reconcile_subjects(
    meta: &mut ObjectMeta,
    subjects: &mut Option<Vec<Subject>>,
    role_ref: &RoleRef,
    expected_meta: &ObjectMeta,
    expected_subjects: &Option<Vec<Subject>>,
    expected_ref: &RoleRef,
) -> Option<bool> {
    if autoupdate_off(meta) {
        return Some(false);
    }
    if role_ref != expected_ref {
        return None;
    }
    let mut changed = merge_meta(meta, expected_meta);
    for s in expected_subjects.iter().flatten() {
        let list = subjects.get_or_insert_with(Vec::new);
        if !list.contains(s) {
            list.push(s.clone());
            changed = true;
        }
    }
    Some(changed)
}

fn to_value<T: serde::Serialize>(obj: &T, api_version: &str, kind: &str) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(obj).map_err(|e| ApiError::internal(e.to_string()))?;
    v["apiVersion"] = Value::String(api_version.into());
    v["kind"] = Value::String(kind.into());
    Ok(v)
}

/// What reconciling a stored bootstrap object found.
enum Reconciled {
    Current,
    Update(Value),
    /// A binding whose roleRef changed, which cannot be updated.
    Recreate,
}

fn updated<T: serde::Serialize>(changed: bool, obj: &T, api_version: &str, kind: &str) -> Result<Reconciled, ApiError> {
    Ok(if changed { Reconciled::Update(to_value(obj, api_version, kind)?) } else { Reconciled::Current })
}

fn from_value<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, ApiError> {
    serde_json::from_value(v.clone()).map_err(|e| ApiError::internal(e.to_string()))
}

impl ApiServer {
    /// Creates and reconciles the bootstrap policy (see the module documentation). The
    /// objects are independent: they are written concurrently, so that the store's group
    /// commits take many at once.
    pub async fn bootstrap_rbac(&self) -> Result<(), ApiError> {
        use futures::future::BoxFuture;
        let api_version = "rbac.authorization.k8s.io/v1";
        let mut work: Vec<BoxFuture<'_, Result<(), ApiError>>> = Vec::new();
        for role in cluster_roles().into_iter().chain(controller_roles()) {
            let desired = to_value(&role, api_version, "ClusterRole")?;
            work.push(Box::pin(self.ensure(None, "clusterroles", desired, move |cur| {
                let mut have: ClusterRole = from_value(cur)?;
                let changed = reconcile_rules(
                    &mut have.metadata,
                    &mut have.rules,
                    role.aggregation_rule.is_some().then_some(&mut have.aggregation_rule),
                    &role.metadata,
                    &role.rules,
                    role.aggregation_rule.as_ref(),
                );
                updated(changed, &have, api_version, "ClusterRole")
            })));
        }
        for role in namespace_roles() {
            let desired = to_value(&role, api_version, "Role")?;
            let ns = role.metadata.namespace.clone();
            work.push(Box::pin(async move {
                self.ensure(ns.as_deref(), "roles", desired, move |cur| {
                    let mut have: Role = from_value(cur)?;
                    let changed =
                        reconcile_rules(&mut have.metadata, &mut have.rules, None, &role.metadata, &role.rules, None);
                    updated(changed, &have, api_version, "Role")
                })
                .await
            }));
        }
        for b in cluster_role_bindings().into_iter().chain(controller_role_bindings()) {
            let desired = to_value(&b, api_version, "ClusterRoleBinding")?;
            work.push(Box::pin(self.ensure(None, "clusterrolebindings", desired, move |cur| {
                let mut have: ClusterRoleBinding = from_value(cur)?;
                let role_ref = have.role_ref.clone();
                match reconcile_subjects(
                    &mut have.metadata,
                    &mut have.subjects,
                    &role_ref,
                    &b.metadata,
                    &b.subjects,
                    &b.role_ref,
                ) {
                    None => Ok(Reconciled::Recreate),
                    Some(changed) => updated(changed, &have, api_version, "ClusterRoleBinding"),
                }
            })));
        }
        for b in namespace_role_bindings() {
            let desired = to_value(&b, api_version, "RoleBinding")?;
            let ns = b.metadata.namespace.clone();
            work.push(Box::pin(async move {
                self.ensure(ns.as_deref(), "rolebindings", desired, move |cur| {
                    let mut have: RoleBinding = from_value(cur)?;
                    let role_ref = have.role_ref.clone();
                    match reconcile_subjects(
                        &mut have.metadata,
                        &mut have.subjects,
                        &role_ref,
                        &b.metadata,
                        &b.subjects,
                        &b.role_ref,
                    ) {
                        None => Ok(Reconciled::Recreate),
                        Some(changed) => updated(changed, &have, api_version, "RoleBinding"),
                    }
                })
                .await
            }));
        }
        futures::future::try_join_all(work).await.map(drop)
    }

    /// Creates `desired`, or reconciles the stored object with `reconcile`.
    async fn ensure(
        &self,
        namespace: Option<&str>,
        plural: &str,
        desired: Value,
        reconcile: impl Fn(&Value) -> Result<Reconciled, ApiError>,
    ) -> Result<(), ApiError> {
        let Some(rt) = self.resource_type("rbac.authorization.k8s.io", "v1", plural) else { return Ok(()) };
        let name = desired.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let opts = WriteOptions::default();
        for _ in 0..4 {
            let current = match self.registry.get(&rt, namespace, &name).await {
                Ok(cur) => cur,
                Err(e) if e.is_not_found() => {
                    match self.registry.create(&rt, namespace, desired.clone(), &opts).await {
                        Ok(_) => {
                            tracing::debug!(plural, name, "created bootstrap RBAC object");
                            return Ok(());
                        }
                        Err(e) if e.is_already_exists() => continue,
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            };
            match reconcile(&current)? {
                Reconciled::Current => return Ok(()),
                Reconciled::Update(next) => {
                    tracing::info!(plural, name, "reconciled bootstrap RBAC object");
                    match self.registry.update(&rt, namespace, &name, next, false, &opts).await {
                        Err(e) if e.is_conflict() => continue,
                        other => return other.map(|_| ()),
                    }
                }
                Reconciled::Recreate => {
                    tracing::info!(plural, name, "bootstrap RBAC binding points at another role: making it again");
                    let del = crate::apiserver::registry::DeleteOptions::default();
                    match self.registry.delete(&rt, namespace, &name, &del).await {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(ApiError::internal(format!("could not reconcile {plural} {name:?}: it kept changing")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bootstrap_binding_names_a_bootstrap_role() {
        let roles: Vec<String> = cluster_roles().into_iter().filter_map(|r| r.metadata.name).collect();
        for b in cluster_role_bindings() {
            assert!(roles.contains(&b.role_ref.name), "{} has no role", b.role_ref.name);
        }
        let ns_roles: Vec<(String, String)> = namespace_roles()
            .into_iter()
            .map(|r| (r.metadata.namespace.unwrap_or_default(), r.metadata.name.unwrap_or_default()))
            .collect();
        for b in namespace_role_bindings() {
            let key = (b.metadata.namespace.clone().unwrap_or_default(), b.role_ref.name.clone());
            assert!(ns_roles.contains(&key), "{key:?} has no role");
        }
        let mut sorted = roles.clone();
        sorted.sort();
        assert_eq!(roles, sorted, "upstream's order is by name");
        let controllers: Vec<String> = controller_roles().into_iter().filter_map(|r| r.metadata.name).collect();
        let mut sorted = controllers.clone();
        sorted.sort();
        assert_eq!(controllers, sorted);
        let bindings = controller_role_bindings();
        assert_eq!(bindings.len(), controllers.len());
        let gc = bindings.iter().find(|b| b.role_ref.name == "system:controller:generic-garbage-collector").unwrap();
        let subject = &gc.subjects.as_ref().unwrap()[0];
        assert_eq!(
            (subject.kind.as_str(), subject.name.as_str(), subject.namespace.as_deref()),
            ("ServiceAccount", "generic-garbage-collector", Some("kube-system"))
        );
    }

    #[test]
    fn reconciling_adds_what_is_missing_and_keeps_what_users_added() {
        let expected =
            cluster_roles().into_iter().find(|r| r.metadata.name.as_deref() == Some("system:basic-user")).unwrap();
        let mut have = expected.clone();
        have.rules = Some(vec![
            r(&["create"], &["authorization.k8s.io"], &["selfsubjectaccessreviews"]),
            r(&["get"], &[""], &["pods"]),
        ]);
        have.metadata.labels = Some([("team".to_string(), "a".to_string())].into());
        let changed =
            reconcile_rules(&mut have.metadata, &mut have.rules, None, &expected.metadata, &expected.rules, None);
        assert!(changed);
        let rules = have.rules.unwrap();
        assert!(uncovered(&rules, expected.rules.as_deref().unwrap()).is_empty());
        assert!(rules.contains(&r(&["get"], &[""], &["pods"])), "a user's rule stays");
        assert_eq!(have.metadata.labels.unwrap()["team"], "a");
        // Reconciled again: nothing to do.
        let mut again = expected.clone();
        assert!(!reconcile_rules(
            &mut again.metadata,
            &mut again.rules,
            None,
            &expected.metadata,
            &expected.rules,
            None
        ));
        // autoupdate=false leaves it alone.
        let mut off = expected.clone();
        off.rules = None;
        off.metadata.annotations = Some([(AUTOUPDATE.to_string(), "false".to_string())].into());
        assert!(!reconcile_rules(&mut off.metadata, &mut off.rules, None, &expected.metadata, &expected.rules, None));
        assert!(off.rules.is_none());
    }

    #[test]
    fn bindings_get_missing_subjects_and_a_changed_role_ref_means_recreate() {
        let expected = cluster_role_bindings().into_iter().find(|b| b.role_ref.name == "system:discovery").unwrap();
        let mut have = expected.clone();
        have.subjects = Some(vec![subject("User", "alice")]);
        let rr = have.role_ref.clone();
        assert_eq!(
            reconcile_subjects(
                &mut have.metadata,
                &mut have.subjects,
                &rr,
                &expected.metadata,
                &expected.subjects,
                &expected.role_ref
            ),
            Some(true)
        );
        assert_eq!(have.subjects.as_ref().unwrap().len(), 2);
        let other = role_ref("ClusterRole", "view");
        assert_eq!(
            reconcile_subjects(
                &mut have.metadata,
                &mut have.subjects,
                &other,
                &expected.metadata,
                &expected.subjects,
                &expected.role_ref
            ),
            None
        );
    }
}
