//! Writes the base OpenAPI definitions k3rs embeds: every type reachable from the kinds
//! k3rs serves, as k8s-openapi's `schemars` impls describe them (types, formats, required
//! fields and upstream's descriptions), plus the group/version/kind of each top-level kind.
//!
//! The output is one JSON object, deflate-compressed:
//! `{"definitions": {"io.k8s.api.apps.v1.Deployment": {...}, ...},
//!   "kinds": [{"group": "apps", "version": "v1", "kind": "Deployment",
//!              "definition": "io.k8s.api.apps.v1.Deployment"}, ...]}`
//! with references written `#/definitions/<name>`. The `x-kubernetes-*` extensions, list
//! kinds and paths are added by k3rs at run time (src/apiserver/openapi/).
//!
//! Usage: `k3rs-openapi-gen OUT.deflate [--json OUT.json]` (the JSON copy is for reviewing a
//! change, not committed).

use std::collections::BTreeMap;

use k8s_openapi::Resource;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{json, Value};

struct Roots {
    generator: SchemaGenerator,
    kinds: Vec<Value>,
}

impl Roots {
    fn kind<T: Resource + JsonSchema>(&mut self) {
        self.generator.subschema_for::<T>();
        self.kinds.push(json!({
            "group": T::GROUP,
            "version": T::VERSION,
            "kind": T::KIND,
            "definition": T::schema_name(),
        }));
    }

    fn other<T: JsonSchema>(&mut self) {
        self.generator.subschema_for::<T>();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(out) = args.get(1) else {
        eprintln!("usage: {} OUT.deflate [--json OUT.json]", args[0]);
        std::process::exit(2);
    };
    let json_out = match (args.get(2).map(String::as_str), args.get(3)) {
        (Some("--json"), Some(p)) => Some(p.clone()),
        (None, _) => None,
        _ => {
            eprintln!("usage: {} OUT.deflate [--json OUT.json]", args[0]);
            std::process::exit(2);
        }
    };

    let settings = SchemaSettings::draft07().with(|s| {
        s.definitions_path = "/definitions".into();
        s.meta_schema = None;
    });
    let mut roots = Roots { generator: settings.into_generator(), kinds: Vec::new() };

    macro_rules! kinds {
        ($($t:ty),* $(,)?) => { $(roots.kind::<$t>();)* };
    }
    use k8s_openapi::api::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    kinds!(
        core::v1::Binding, core::v1::ComponentStatus, core::v1::ConfigMap, core::v1::Endpoints, core::v1::Event,
        core::v1::LimitRange, core::v1::Namespace, core::v1::Node, core::v1::PersistentVolumeClaim,
        core::v1::PersistentVolume, core::v1::Pod, core::v1::PodTemplate, core::v1::ReplicationController,
        core::v1::ResourceQuota, core::v1::Secret, core::v1::ServiceAccount, core::v1::Service,
        apps::v1::ControllerRevision, apps::v1::DaemonSet, apps::v1::Deployment, apps::v1::ReplicaSet,
        apps::v1::StatefulSet,
        events::v1::Event,
        authentication::v1::SelfSubjectReview, authentication::v1::TokenReview, authentication::v1::TokenRequest,
        authorization::v1::LocalSubjectAccessReview, authorization::v1::SelfSubjectAccessReview,
        authorization::v1::SelfSubjectRulesReview, authorization::v1::SubjectAccessReview,
        autoscaling::v1::HorizontalPodAutoscaler, autoscaling::v1::Scale, autoscaling::v2::HorizontalPodAutoscaler,
        batch::v1::CronJob, batch::v1::Job,
        certificates::v1::CertificateSigningRequest,
        networking::v1::IngressClass, networking::v1::Ingress, networking::v1::IPAddress,
        networking::v1::NetworkPolicy, networking::v1::ServiceCIDR,
        policy::v1::PodDisruptionBudget, policy::v1::Eviction,
        rbac::v1::ClusterRoleBinding, rbac::v1::ClusterRole, rbac::v1::RoleBinding, rbac::v1::Role,
        storage::v1::CSIDriver, storage::v1::CSINode, storage::v1::CSIStorageCapacity, storage::v1::StorageClass,
        storage::v1::VolumeAttachment,
        apiext::CustomResourceDefinition,
        scheduling::v1::PriorityClass,
        coordination::v1::Lease,
        node::v1::RuntimeClass,
        discovery::v1::EndpointSlice,
    );
    // The meta types every group version's document carries (request and response bodies of
    // the generic operations and of discovery).
    roots.other::<meta::DeleteOptions>();
    roots.other::<meta::Status>();
    roots.other::<meta::WatchEvent<k8s_openapi::apimachinery::pkg::runtime::RawExtension>>();
    roots.other::<meta::Patch>();
    roots.other::<meta::APIResourceList>();
    roots.other::<meta::APIGroupList>();
    roots.other::<meta::APIGroup>();
    roots.other::<meta::APIVersions>();
    roots.other::<k8s_openapi::apimachinery::pkg::version::Info>();

    let definitions: BTreeMap<String, Value> = roots
        .generator
        .take_definitions(true)
        .into_iter()
        .map(|(name, schema)| (name, normalize(schema)))
        .collect();
    let doc = json!({ "definitions": definitions, "kinds": roots.kinds });
    let bytes = serde_json::to_vec(&doc).expect("serializing a serde_json::Value cannot fail");
    let compressed = miniz_oxide::deflate::compress_to_vec(&bytes, 10);
    std::fs::write(out, &compressed).unwrap_or_else(|e| panic!("writing {out}: {e}"));
    if let Some(p) = json_out {
        let pretty = serde_json::to_vec_pretty(&doc).expect("serializing a serde_json::Value cannot fail");
        std::fs::write(&p, pretty).unwrap_or_else(|e| panic!("writing {p}: {e}"));
    }
    eprintln!(
        "{} definitions, {} kinds: {} bytes of JSON, {} compressed",
        definitions_len(&doc),
        roots.kinds.len(),
        bytes.len(),
        compressed.len()
    );
}

fn definitions_len(doc: &Value) -> usize {
    doc["definitions"].as_object().map_or(0, |m| m.len())
}

/// Drops what schemars adds beyond the types' own schemas (`$schema`, `title`), so the
/// output holds only what k8s-openapi generated from upstream.
fn normalize(mut schema: Value) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
    }
    schema
}
