//! Protobuf request bodies built from real Kubernetes objects: each object is encoded with
//! the k8s-pb prost structs (the Kubernetes .proto schema), wrapped in the `k8s\0` +
//! runtime.Unknown envelope, decoded by `decode_request`, and compared with the JSON of
//! the same object serialized by k8s-openapi or written out by hand.
//!
//! Go's protobuf encoder writes every non-pointer field even when zero; the bodies here do
//! the same where it matters (`Some("")`, `Some(0)`) to check that such zeros vanish while
//! zeros of pointer fields (`replicas: 0`, `privileged: false`) stay.

use k3rs::apiserver::protobuf::{decode_request, ProtobufError};
use k8s_openapi::api::core::v1 as oa;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as OaQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as oa_meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString as OaIntOrString;
use k8s_openapi::jiff::Timestamp;
use k8s_pb::api::core::v1 as pb;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{RawExtension, TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn body(api_version: &str, kind: &str, object: &impl Message) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta { api_version: s(api_version), kind: s(kind) }),
        raw: Some(object.encode_to_vec()),
        content_encoding: s(""),
        content_type: s(""),
    };
    let mut out = b"k8s\0".to_vec();
    unknown.encode(&mut out).expect("encode into a Vec");
    out
}

fn decode<M: Message + k8s_pb::Resource>(object: &M) -> Value {
    decode_request(&body(M::API_VERSION, M::KIND, object)).unwrap_or_else(|e| panic!("decoding {}: {e}", M::KIND))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn time(seconds: i64) -> meta::Time {
    meta::Time { seconds: Some(seconds), nanos: Some(0) }
}

fn int_or_string_int(v: i32) -> IntOrString {
    IntOrString { r#type: Some(0), int_val: Some(v), str_val: s("") }
}

fn int_or_string_str(v: &str) -> IntOrString {
    IntOrString { r#type: Some(1), int_val: Some(0), str_val: s(v) }
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

/// ObjectMeta as Go writes it: every non-pointer field present, zero or not.
fn go_meta(name: &str, namespace: &str) -> meta::ObjectMeta {
    meta::ObjectMeta {
        name: s(name),
        generate_name: s(""),
        namespace: s(namespace),
        self_link: s(""),
        uid: s(""),
        resource_version: s(""),
        generation: Some(0),
        creation_timestamp: Some(time(1_714_979_289)),
        ..Default::default()
    }
}

#[test]
fn pod_matches_k8s_openapi_serialization() {
    let container = pb::Container {
        name: s("app"),
        image: s("registry.local/app:1.2"),
        command: vec!["/bin/app".into()],
        args: vec!["--port=8080".into(), "--verbose".into()],
        working_dir: s(""),
        ports: vec![pb::ContainerPort {
            name: s("http"),
            host_port: Some(0),
            container_port: Some(8080),
            protocol: s("TCP"),
            host_ip: s(""),
        }],
        env: vec![
            pb::EnvVar { name: s("MODE"), value: s("prod"), value_from: None },
            pb::EnvVar {
                name: s("POD_IP"),
                value: s(""),
                value_from: Some(pb::EnvVarSource {
                    field_ref: Some(pb::ObjectFieldSelector { api_version: s("v1"), field_path: s("status.podIP") }),
                    ..Default::default()
                }),
            },
        ],
        resources: Some(pb::ResourceRequirements {
            limits: [("cpu".to_string(), quantity("500m")), ("memory".to_string(), quantity("128Mi"))].into(),
            requests: [("cpu".to_string(), quantity("100m"))].into(),
            claims: vec![],
        }),
        volume_mounts: vec![pb::VolumeMount {
            name: s("data"),
            read_only: Some(false),
            mount_path: s("/data"),
            sub_path: s(""),
            sub_path_expr: s(""),
            ..Default::default()
        }],
        liveness_probe: Some(pb::Probe {
            handler: Some(pb::ProbeHandler {
                http_get: Some(pb::HttpGetAction {
                    path: s("/healthz"),
                    port: Some(int_or_string_str("http")),
                    host: s(""),
                    scheme: s("HTTP"),
                    http_headers: vec![],
                }),
                ..Default::default()
            }),
            initial_delay_seconds: Some(3),
            timeout_seconds: Some(0),
            period_seconds: Some(10),
            success_threshold: Some(0),
            failure_threshold: Some(0),
            termination_grace_period_seconds: None,
        }),
        readiness_probe: Some(pb::Probe {
            handler: Some(pb::ProbeHandler {
                tcp_socket: Some(pb::TcpSocketAction { port: Some(int_or_string_int(8080)), host: s("") }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        termination_message_path: s("/dev/termination-log"),
        image_pull_policy: s(""),
        security_context: Some(pb::SecurityContext {
            capabilities: Some(pb::Capabilities { add: vec!["NET_ADMIN".into()], drop: vec!["ALL".into()] }),
            privileged: Some(false),
            run_as_user: Some(0),
            ..Default::default()
        }),
        stdin: Some(false),
        stdin_once: Some(false),
        tty: Some(false),
        termination_message_policy: s(""),
        ..Default::default()
    };
    let pod = pb::Pod {
        metadata: Some(meta::ObjectMeta {
            labels: map(&[("app", "web"), ("tier", "front")]),
            annotations: map(&[("note", "")]),
            owner_references: vec![meta::OwnerReference {
                api_version: s("apps/v1"),
                kind: s("ReplicaSet"),
                name: s("web-1"),
                uid: s("5f1c1d8e-0000-4000-8000-000000000001"),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }],
            finalizers: vec!["k3rs.io/test".into()],
            ..go_meta("web-1-abcde", "default")
        }),
        spec: Some(pb::PodSpec {
            volumes: vec![
                pb::Volume {
                    name: s("data"),
                    volume_source: Some(pb::VolumeSource {
                        empty_dir: Some(pb::EmptyDirVolumeSource { medium: s(""), size_limit: Some(quantity("1Gi")) }),
                        ..Default::default()
                    }),
                },
                pb::Volume {
                    name: s("creds"),
                    volume_source: Some(pb::VolumeSource {
                        secret: Some(pb::SecretVolumeSource {
                            secret_name: s("creds"),
                            items: vec![pb::KeyToPath { key: s("token"), path: s("token"), mode: Some(0o400) }],
                            default_mode: Some(0o644),
                            optional: Some(false),
                        }),
                        ..Default::default()
                    }),
                },
            ],
            containers: vec![container],
            restart_policy: s("Always"),
            termination_grace_period_seconds: Some(0),
            dns_policy: s(""),
            node_selector: map(&[("kubernetes.io/os", "linux")]),
            service_account_name: s(""),
            service_account: s(""),
            automount_service_account_token: Some(false),
            node_name: s(""),
            host_network: Some(true),
            host_pid: Some(false),
            host_ipc: Some(false),
            hostname: s(""),
            subdomain: s(""),
            scheduler_name: s(""),
            tolerations: vec![pb::Toleration {
                key: s("node.kubernetes.io/unreachable"),
                operator: s("Exists"),
                value: s(""),
                effect: s("NoExecute"),
                toleration_seconds: Some(300),
            }],
            priority_class_name: s(""),
            ..Default::default()
        }),
        status: Some(pb::PodStatus::default()),
    };

    let container = oa::Container {
        name: "app".into(),
        image: Some("registry.local/app:1.2".into()),
        command: Some(vec!["/bin/app".into()]),
        args: Some(vec!["--port=8080".into(), "--verbose".into()]),
        ports: Some(vec![oa::ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        env: Some(vec![
            oa::EnvVar { name: "MODE".into(), value: Some("prod".into()), value_from: None },
            oa::EnvVar {
                name: "POD_IP".into(),
                value: None,
                value_from: Some(oa::EnvVarSource {
                    field_ref: Some(oa::ObjectFieldSelector {
                        api_version: Some("v1".into()),
                        field_path: "status.podIP".into(),
                    }),
                    ..Default::default()
                }),
            },
        ]),
        resources: Some(oa::ResourceRequirements {
            limits: Some(
                [("cpu".to_string(), OaQuantity("500m".into())), ("memory".to_string(), OaQuantity("128Mi".into()))]
                    .into(),
            ),
            requests: Some([("cpu".to_string(), OaQuantity("100m".into()))].into()),
            claims: None,
        }),
        volume_mounts: Some(vec![oa::VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..Default::default()
        }]),
        liveness_probe: Some(oa::Probe {
            http_get: Some(oa::HTTPGetAction {
                path: Some("/healthz".into()),
                port: OaIntOrString::String("http".into()),
                scheme: Some("HTTP".into()),
                ..Default::default()
            }),
            initial_delay_seconds: Some(3),
            period_seconds: Some(10),
            ..Default::default()
        }),
        readiness_probe: Some(oa::Probe {
            tcp_socket: Some(oa::TCPSocketAction { port: OaIntOrString::Int(8080), host: None }),
            ..Default::default()
        }),
        termination_message_path: Some("/dev/termination-log".into()),
        security_context: Some(oa::SecurityContext {
            capabilities: Some(oa::Capabilities {
                add: Some(vec!["NET_ADMIN".into()]),
                drop: Some(vec!["ALL".into()]),
            }),
            privileged: Some(false),
            run_as_user: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    };
    let want = oa::Pod {
        metadata: oa_meta::ObjectMeta {
            name: Some("web-1-abcde".into()),
            namespace: Some("default".into()),
            creation_timestamp: Some(oa_meta::Time(Timestamp::from_second(1_714_979_289).expect("timestamp"))),
            labels: Some(map(&[("app", "web"), ("tier", "front")])),
            annotations: Some(map(&[("note", "")])),
            owner_references: Some(vec![oa_meta::OwnerReference {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web-1".into(),
                uid: "5f1c1d8e-0000-4000-8000-000000000001".into(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            finalizers: Some(vec!["k3rs.io/test".into()]),
            ..Default::default()
        },
        spec: Some(oa::PodSpec {
            volumes: Some(vec![
                oa::Volume {
                    name: "data".into(),
                    empty_dir: Some(oa::EmptyDirVolumeSource {
                        medium: None,
                        size_limit: Some(OaQuantity("1Gi".into())),
                    }),
                    ..Default::default()
                },
                oa::Volume {
                    name: "creds".into(),
                    secret: Some(oa::SecretVolumeSource {
                        secret_name: Some("creds".into()),
                        items: Some(vec![oa::KeyToPath {
                            key: "token".into(),
                            path: "token".into(),
                            mode: Some(0o400),
                        }]),
                        default_mode: Some(0o644),
                        optional: Some(false),
                    }),
                    ..Default::default()
                },
            ]),
            containers: vec![container],
            restart_policy: Some("Always".into()),
            termination_grace_period_seconds: Some(0),
            node_selector: Some(map(&[("kubernetes.io/os", "linux")])),
            automount_service_account_token: Some(false),
            host_network: Some(true),
            tolerations: Some(vec![oa::Toleration {
                key: Some("node.kubernetes.io/unreachable".into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(300),
                value: None,
            }]),
            ..Default::default()
        }),
        status: Some(oa::PodStatus::default()),
    };
    let want = serde_json::to_value(&want).expect("serialize k8s-openapi Pod");
    assert_eq!(decode(&pod), want);
}

#[test]
fn secret_bytes_are_base64_and_immutable_false_stays() {
    let secret = pb::Secret {
        metadata: Some(go_meta("creds", "")),
        immutable: Some(false),
        data: [("token".to_string(), b"s3cr\xffet".to_vec()), ("empty".to_string(), vec![])].into(),
        string_data: map(&[("user", "admin")]),
        r#type: s("Opaque"),
    };
    let want = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds", "creationTimestamp": "2024-05-06T07:08:09Z"},
        "immutable": false,
        "data": {"token": "czNjcv9ldA==", "empty": ""},
        "stringData": {"user": "admin"},
        "type": "Opaque",
    });
    assert_eq!(decode(&secret), want);
}

#[test]
fn scale_to_zero_reads_as_go_json_writes_it() {
    use k8s_pb::api::autoscaling::v1 as autoscaling;
    let scale = autoscaling::Scale {
        metadata: Some(go_meta("web", "default")),
        spec: Some(autoscaling::ScaleSpec { replicas: Some(0) }),
        status: Some(autoscaling::ScaleStatus { replicas: Some(0), selector: s("") }),
    };
    let got = decode_request(&body("autoscaling/v1", "Scale", &scale)).expect("decode Scale");
    // autoscaling/v1 ScaleSpec.replicas is a Go int32 tagged omitempty: a Go client sending
    // JSON leaves it out at zero, so a reader must take a missing value as 0 either way.
    assert_eq!(got["spec"], json!({}));
    // ScaleStatus.replicas has no omitempty in Go: it stays even at zero.
    assert_eq!(got["status"], json!({"replicas": 0}));
}

#[test]
fn certificate_approval_carries_conditions_and_request_bytes() {
    use k8s_pb::api::certificates::v1 as certificates;
    let csr = certificates::CertificateSigningRequest {
        metadata: Some(go_meta("node-csr", "")),
        spec: Some(certificates::CertificateSigningRequestSpec {
            request: Some(b"-----BEGIN CERTIFICATE REQUEST-----\n".to_vec()),
            signer_name: s("kubernetes.io/kube-apiserver-client-kubelet"),
            expiration_seconds: None,
            usages: vec!["digital signature".into(), "client auth".into()],
            username: s("system:node:n1"),
            uid: s(""),
            groups: vec!["system:nodes".into()],
            extra: [("scopes".to_string(), certificates::ExtraValue { items: vec!["a".into(), "b".into()] })].into(),
        }),
        status: Some(certificates::CertificateSigningRequestStatus {
            conditions: vec![certificates::CertificateSigningRequestCondition {
                r#type: s("Approved"),
                status: s("True"),
                reason: s("KubectlApprove"),
                message: s("This CSR was approved by kubectl certificate approve."),
                last_update_time: Some(time(1_714_979_300)),
                last_transition_time: Some(meta::Time::default()),
            }],
            certificate: None,
        }),
    };
    let want = json!({
        "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "node-csr", "creationTimestamp": "2024-05-06T07:08:09Z"},
        "spec": {
            "request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K",
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"],
            "username": "system:node:n1",
            "groups": ["system:nodes"],
            "extra": {"scopes": ["a", "b"]},
        },
        "status": {"conditions": [{
            "type": "Approved", "status": "True", "reason": "KubectlApprove",
            "message": "This CSR was approved by kubectl certificate approve.",
            "lastUpdateTime": "2024-05-06T07:08:20Z",
            "lastTransitionTime": null,
        }]},
    });
    assert_eq!(decode(&csr), want);
}

#[test]
fn lease_and_event_micro_times() {
    use k8s_pb::api::coordination::v1 as coordination;
    use k8s_pb::api::events::v1 as events;
    let lease = coordination::Lease {
        metadata: Some(go_meta("node-1", "kube-node-lease")),
        spec: Some(coordination::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(40),
            renew_time: Some(meta::MicroTime { seconds: Some(1_714_979_289), nanos: Some(5_000_999) }),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode(&lease)["spec"],
        json!({"holderIdentity": "node-1", "leaseDurationSeconds": 40,
               "renewTime": "2024-05-06T07:08:09.005000Z", "leaseTransitions": 0})
    );
    let event = events::Event {
        metadata: Some(go_meta("web.17c", "default")),
        event_time: Some(meta::MicroTime { seconds: Some(1_714_979_289), nanos: Some(0) }),
        series: Some(events::EventSeries {
            count: Some(2),
            last_observed_time: Some(meta::MicroTime { seconds: Some(1_714_979_299), nanos: Some(999_999_999) }),
        }),
        reporting_controller: s("k3rs"),
        reporting_instance: s("k3rs-1"),
        action: s("Scheduled"),
        reason: s("Scheduled"),
        regarding: Some(pb::ObjectReference { kind: s("Pod"), name: s("web"), ..Default::default() }),
        note: s(""),
        r#type: s("Normal"),
        deprecated_first_timestamp: Some(meta::Time::default()),
        deprecated_count: Some(0),
        ..Default::default()
    };
    let got = decode(&event);
    assert_eq!(got["eventTime"], json!("2024-05-06T07:08:09.000000Z"));
    assert_eq!(got["series"], json!({"count": 2, "lastObservedTime": "2024-05-06T07:08:19.999999Z"}));
    assert_eq!(got["regarding"], json!({"kind": "Pod", "name": "web"}));
    assert_eq!(got["deprecatedFirstTimestamp"], json!(null));
    assert!(got.get("note").is_none() && got.get("deprecatedCount").is_none(), "{got}");
}

#[test]
fn access_reviews_and_user_extra() {
    use k8s_pb::api::authorization::v1 as authorization;
    let review = authorization::SelfSubjectAccessReview {
        metadata: Some(meta::ObjectMeta { creation_timestamp: Some(meta::Time::default()), ..Default::default() }),
        spec: Some(authorization::SelfSubjectAccessReviewSpec {
            resource_attributes: Some(authorization::ResourceAttributes {
                namespace: s("default"),
                verb: s("create"),
                group: s(""),
                version: s(""),
                resource: s("pods"),
                subresource: s(""),
                name: s(""),
                ..Default::default()
            }),
            non_resource_attributes: None,
        }),
        status: Some(authorization::SubjectAccessReviewStatus {
            allowed: Some(false),
            denied: Some(false),
            reason: s(""),
            evaluation_error: s(""),
        }),
    };
    let want = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "metadata": {"creationTimestamp": null},
        "spec": {"resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}},
        "status": {"allowed": false},
    });
    assert_eq!(decode(&review), want);
}

#[test]
fn custom_resource_definition_schema_unions() {
    use k8s_pb::apiextensions_apiserver::pkg::apis::apiextensions::v1 as ext;
    let string_schema = |description: &str| ext::JsonSchemaProps {
        r#type: s("string"),
        description: s(description),
        ..Default::default()
    };
    let schema = ext::JsonSchemaProps {
        r#type: s("object"),
        required: vec!["spec".into()],
        properties: [
            (
                "spec".to_string(),
                ext::JsonSchemaProps {
                    r#type: s("object"),
                    properties: [
                        (
                            "tags".to_string(),
                            ext::JsonSchemaProps {
                                r#type: s("array"),
                                items: Some(Box::new(ext::JsonSchemaPropsOrArray {
                                    schema: Some(Box::new(string_schema("a tag"))),
                                    j_son_schemas: vec![],
                                })),
                                max_items: Some(0),
                                ..Default::default()
                            },
                        ),
                        (
                            "mode".to_string(),
                            ext::JsonSchemaProps {
                                r#type: s("string"),
                                r#enum: vec![ext::Json { raw: Some(br#""fast""#.to_vec()) }],
                                default: Some(ext::Json { raw: Some(br#""fast""#.to_vec()) }),
                                ..Default::default()
                            },
                        ),
                        (
                            "labels".to_string(),
                            ext::JsonSchemaProps {
                                r#type: s("object"),
                                additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
                                    allows: Some(true),
                                    schema: Some(Box::new(string_schema(""))),
                                })),
                                ..Default::default()
                            },
                        ),
                    ]
                    .into(),
                    additional_properties: Some(Box::new(ext::JsonSchemaPropsOrBool {
                        allows: Some(false),
                        schema: None,
                    })),
                    dependencies: [(
                        "mode".to_string(),
                        ext::JsonSchemaPropsOrStringArray { schema: None, property: vec!["tags".into()] },
                    )]
                    .into(),
                    x_kubernetes_preserve_unknown_fields: Some(true),
                    x_kubernetes_validations: vec![ext::ValidationRule {
                        rule: s("self.mode != 'slow'"),
                        message: s("no slow mode"),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ),
            ("status".to_string(), ext::JsonSchemaProps { r#ref: s("#/definitions/status"), ..Default::default() }),
        ]
        .into(),
        ..Default::default()
    };
    let crd = ext::CustomResourceDefinition {
        metadata: Some(meta::ObjectMeta { name: s("widgets.example.com"), ..Default::default() }),
        spec: Some(ext::CustomResourceDefinitionSpec {
            group: s("example.com"),
            names: Some(ext::CustomResourceDefinitionNames {
                plural: s("widgets"),
                singular: s("widget"),
                kind: s("Widget"),
                short_names: vec!["wd".into()],
                ..Default::default()
            }),
            scope: s("Namespaced"),
            versions: vec![ext::CustomResourceDefinitionVersion {
                name: s("v1"),
                served: Some(true),
                storage: Some(true),
                schema: Some(ext::CustomResourceValidation { open_apiv3_schema: Some(schema) }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: None,
    };
    let want = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {
            "group": "example.com",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "scope": "Namespaced",
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "required": ["spec"],
                "properties": {
                    "spec": {
                        "type": "object",
                        "properties": {
                            // maxItems is a Go *int64: 0 stays
                            "tags": {"type": "array", "items": {"type": "string", "description": "a tag"}, "maxItems": 0},
                            "mode": {"type": "string", "enum": ["fast"], "default": "fast"},
                            // description is a Go string tagged omitempty: "" goes
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                        "additionalProperties": false,
                        "dependencies": {"mode": ["tags"]},
                        "x-kubernetes-preserve-unknown-fields": true,
                        "x-kubernetes-validations": [{"rule": "self.mode != 'slow'", "message": "no slow mode"}],
                    },
                    "status": {"$ref": "#/definitions/status"},
                },
            }}}],
        },
    });
    assert_eq!(decode(&crd), want);
}

#[test]
fn controller_revision_embeds_raw_json() {
    use k8s_pb::api::apps::v1 as apps;
    let revision = apps::ControllerRevision {
        metadata: Some(meta::ObjectMeta { name: s("web-6d4cf56db6"), ..Default::default() }),
        data: Some(RawExtension { raw: Some(br#"{"spec":{"template":{"spec":{"containers":[]}}}}"#.to_vec()) }),
        revision: Some(3),
    };
    let want = json!({
        "apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": "web-6d4cf56db6"},
        "data": {"spec": {"template": {"spec": {"containers": []}}}},
        "revision": 3,
    });
    assert_eq!(decode(&revision), want);
}

#[test]
fn every_served_kind_decodes_its_empty_object() {
    let kinds: Vec<_> = k3rs::apiserver::protobuf::known_kinds().collect();
    assert!(kinds.len() > 80, "only {} kinds", kinds.len());
    for (api_version, kind) in kinds {
        let got = decode_request(&body(api_version, kind, &meta::ObjectMeta::default()))
            .unwrap_or_else(|e| panic!("{api_version} {kind}: {e}"));
        assert_eq!(got, json!({"apiVersion": api_version, "kind": kind}), "{api_version} {kind}");
    }
}

#[test]
fn unknown_kinds_are_refused() {
    let err = decode_request(&body("example.com/v1", "Widget", &meta::ObjectMeta::default())).expect_err("unknown");
    assert_eq!(err, ProtobufError::UnknownKind { api_version: "example.com/v1".into(), kind: "Widget".into() });
    assert!(err.to_string().contains("Widget"), "{err}");
}

#[test]
fn committed_table_is_what_the_generator_writes() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("table.rs");
    let run = std::process::Command::new("python3")
        .arg(root.join("scripts/gen-protobuf-table.py"))
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run python3 scripts/gen-protobuf-table.py");
    assert!(run.status.success(), "generator failed:\n{}", String::from_utf8_lossy(&run.stderr));
    let fresh = std::fs::read_to_string(&out).expect("read generated table");
    let committed = std::fs::read_to_string(root.join("src/apiserver/protobuf/table.rs")).expect("read table.rs");
    assert!(fresh == committed, "src/apiserver/protobuf/table.rs is stale: run scripts/gen-protobuf-table.py");
}
