//! Decoder behaviour on hand-built wire bytes and on bodies captured from kubectl 1.32.

use serde_json::json;

use super::*;

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out
}

fn var_field(tag: u32, v: u64) -> Vec<u8> {
    let mut out = varint(u64::from(tag) << 3);
    out.extend(varint(v));
    out
}

fn len_field(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = varint(u64::from(tag) << 3 | 2);
    out.extend(varint(bytes.len() as u64));
    out.extend_from_slice(bytes);
    out
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = cat(&[len_field(1, api_version.as_bytes()), len_field(2, kind.as_bytes())]);
    let mut out = MAGIC.to_vec();
    out.extend(cat(&[len_field(1, &type_meta), len_field(2, raw), len_field(3, b""), len_field(4, b"")]));
    out
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

/// `kubectl create configmap demo --from-literal=a=b` (kubectl 1.32.4), byte for byte.
const KUBECTL_CONFIGMAP: &str =
    "6b3873000a0f0a0276311209436f6e6669674d6170121e0a140a0464656d6f12001a0022002a0032003800\
420012060a01611201621a002200";

/// `kubectl create deployment web --image=nginx --replicas=2` (kubectl 1.32.4).
const KUBECTL_DEPLOYMENT: &str = "6b3873000a150a07617070732f7631120a4465706c6f796d656e7412ab010a1f0a0377656212001a0022\
002a003200380042005a0a0a036170701203776562127a0802120c0a0a0a0361707012037765621a600a1c0a0012001a0022002a0032003800\
42005a0a0a036170701203776562124012220a056e67696e7812056e67696e782a0042006a007200800100880100900100a201001a0032004200\
4a0052005800600068008201008a01009a0100c2010022020a00280038001a0c0800100018002000280038001a002200";

#[test]
fn kubectl_configmap_body_decodes_to_its_dry_run_json() {
    let got = decode_request(&hex(KUBECTL_CONFIGMAP)).expect("decode");
    let want = json!({
        "kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {"name": "demo", "creationTimestamp": null},
        "data": {"a": "b"},
    });
    assert_eq!(got, want);
}

#[test]
fn kubectl_deployment_body_decodes_to_its_dry_run_json() {
    let got = decode_request(&hex(KUBECTL_DEPLOYMENT)).expect("decode");
    // `kubectl create deployment web --image=nginx --replicas=2 --dry-run=client -o json`
    let want = json!({
        "kind": "Deployment", "apiVersion": "apps/v1",
        "metadata": {"name": "web", "creationTimestamp": null, "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx", "resources": {}}]}
            },
            "strategy": {}
        },
        "status": {}
    });
    assert_eq!(got, want);
}

#[test]
fn envelope_errors_are_typed() {
    assert_eq!(decode_request(b""), Err(ProtobufError::MissingMagic));
    assert_eq!(decode_request(b"{\"kind\":\"ConfigMap\"}"), Err(ProtobufError::MissingMagic));
    assert!(matches!(decode_request(b"k8s\0\x0a\x05\x0a"), Err(ProtobufError::EnvelopeMalformed(_))));
    assert_eq!(decode_request(b"k8s\0"), Err(ProtobufError::TypeMetaMissing));
    assert_eq!(
        decode_request(&body("v1", "Widget", b"")),
        Err(ProtobufError::UnknownKind { api_version: "v1".into(), kind: "Widget".into() })
    );
    let mut gz = body("v1", "ConfigMap", b"");
    gz.extend(len_field(3, b"gzip"));
    assert_eq!(decode_request(&gz), Err(ProtobufError::ContentEncodingUnsupported("gzip".into())));
    let mut js = body("v1", "ConfigMap", b"");
    js.extend(len_field(4, b"application/json"));
    assert_eq!(decode_request(&js), Err(ProtobufError::ContentTypeUnsupported("application/json".into())));
    let typemeta_varint = cat(&[MAGIC.to_vec(), var_field(1, 7)]);
    assert!(matches!(decode_request(&typemeta_varint), Err(ProtobufError::EnvelopeMalformed(_))));
}

#[test]
fn decode_errors_name_the_field_path() {
    // spec.replicas sent as a string
    let raw = len_field(2, &len_field(1, b"x"));
    let err = decode_request(&body("apps/v1", "Deployment", &raw)).expect_err("wrong wire type");
    let ProtobufError::DecodeFailed { path, reason, kind, .. } = &err else { panic!("{err:?}") };
    assert_eq!((path.as_str(), kind.as_str()), ("spec.replicas", "Deployment"));
    assert_eq!(reason, &DecodeReason::WrongWireType("int32"));
    assert!(err.to_string().contains("apps/v1 Deployment") && err.to_string().contains("spec.replicas"), "{err}");

    // spec.template.spec.containers[1].name truncated
    // deployment spec(2) > template(3) > spec(2) > containers(2) > name(1)
    let in_pod_spec = |container: &[u8]| len_field(2, &len_field(3, &len_field(2, &len_field(2, container))));
    let mut truncated = len_field(1, b"abc");
    truncated.pop();
    let bad = cat(&[in_pod_spec(&len_field(1, b"ok")), in_pod_spec(&truncated)]);
    let err = decode_request(&body("apps/v1", "Deployment", &bad)).expect_err("truncated");
    let ProtobufError::DecodeFailed { path, reason, .. } = err else { panic!() };
    // both containers records merge into one template spec; the second holds the bad one
    assert_eq!(path, "spec.template.spec.containers[1]");
    assert_eq!(reason, DecodeReason::Wire(WireError::TruncatedBytes));
}

#[test]
fn non_pointer_zero_scalars_are_dropped_and_pointer_zeros_kept() {
    // Deployment spec: replicas (pointer) 0, minReadySeconds (value, omitempty) 0,
    // paused (value, omitempty) false, progressDeadlineSeconds (pointer) 0.
    let spec = cat(&[var_field(1, 0), var_field(5, 0), var_field(7, 0), var_field(9, 0)]);
    let got = decode_request(&body("apps/v1", "Deployment", &len_field(2, &spec))).expect("decode");
    assert_eq!(got["spec"], json!({"replicas": 0, "progressDeadlineSeconds": 0}));
    // ContainerPort.containerPort has no omitempty: a zero stays.
    let port = len_field(6, &var_field(3, 0));
    let container = len_field(2, &cat(&[len_field(1, b"c"), port]));
    let pod = len_field(2, &container);
    let got = decode_request(&body("v1", "Pod", &pod)).expect("decode");
    assert_eq!(got["spec"]["containers"][0]["ports"], json!([{"containerPort": 0}]));
}

#[test]
fn wire_semantics_follow_protobuf() {
    // ObjectMeta sent twice merges; name sent twice keeps the last; unknown field 99 skipped.
    let meta1 = cat(&[len_field(1, b"first"), len_field(11, &cat(&[len_field(1, b"a"), len_field(2, b"1")]))]);
    let meta2 = cat(&[len_field(1, b"second"), len_field(3, b"ns")]);
    let raw = cat(&[len_field(1, &meta1), len_field(99, b"junk"), var_field(98, 5), len_field(1, &meta2)]);
    let got = decode_request(&body("v1", "ConfigMap", &raw)).expect("decode");
    assert_eq!(got["metadata"], json!({"name": "second", "namespace": "ns", "labels": {"a": "1"}}));

    // SecurityContext... supplementalGroups is repeated int64: packed and unpacked both read.
    let packed = len_field(4, &cat(&[varint(1), varint(2)]));
    let unpacked = cat(&[var_field(4, 3)]);
    let psc = len_field(14, &cat(&[packed, unpacked]));
    let got = decode_request(&body("v1", "Pod", &len_field(2, &psc))).expect("decode");
    assert_eq!(got["spec"]["securityContext"]["supplementalGroups"], json!([1, 2, 3]));

    // A negative int32 travels as a ten-byte varint.
    let spec = var_field(1, (-3i64) as u64);
    let got = decode_request(&body("apps/v1", "Deployment", &len_field(2, &spec))).expect("decode");
    assert_eq!(got["spec"]["replicas"], json!(-3));

    // Invalid UTF-8 in a string becomes U+FFFD, as Go's JSON encoder writes it.
    let meta = len_field(1, b"a\xffb");
    let got = decode_request(&body("v1", "ConfigMap", &len_field(1, &meta))).expect("decode");
    assert_eq!(got["metadata"]["name"], json!("a\u{fffd}b"));
}

#[test]
fn map_entries_without_key_or_value_hold_zero_values() {
    // ConfigMap data {"": "x", "k": ""}; binaryData {"b": base64("\x00\x01")}
    let raw = cat(&[
        len_field(2, &len_field(2, b"x")),
        len_field(2, &len_field(1, b"k")),
        len_field(3, &cat(&[len_field(1, b"b"), len_field(2, &[0, 1])])),
    ]);
    let got = decode_request(&body("v1", "ConfigMap", &raw)).expect("decode");
    assert_eq!(got["data"], json!({"": "x", "k": ""}));
    assert_eq!(got["binaryData"], json!({"b": "AAE="}));
    // A resource list entry without a quantity is the zero quantity.
    let limits = len_field(1, &len_field(1, b"cpu"));
    let container = len_field(2, &cat(&[len_field(1, b"c"), len_field(8, &limits)]));
    let got = decode_request(&body("v1", "Pod", &len_field(2, &container))).expect("decode");
    assert_eq!(got["spec"]["containers"][0]["resources"], json!({"limits": {"cpu": "0"}}));
}

#[test]
fn special_forms_render_as_go_does() {
    // Service port targetPort: IntOrString string; port: int.
    let port = cat(&[var_field(3, 80), len_field(4, &cat(&[var_field(1, 1), len_field(3, b"http")]))]);
    let got = decode_request(&body("v1", "Service", &len_field(2, &len_field(1, &port)))).expect("decode");
    assert_eq!(got["spec"]["ports"], json!([{"port": 80, "targetPort": "http"}]));
    let bad = cat(&[var_field(3, 80), len_field(4, &var_field(1, 7))]);
    let err = decode_request(&body("v1", "Service", &len_field(2, &len_field(1, &bad)))).expect_err("bad type");
    assert!(matches!(err, ProtobufError::DecodeFailed { ref path, .. } if path == "spec.ports[0].targetPort"), "{err}");

    // Event: eventTime (MicroTime), lastTimestamp (Time) empty -> null, count 0 kept (value
    // without omitempty? no: omitempty int32 -> dropped).
    let event_time = cat(&[var_field(1, 1_700_000_000), var_field(2, 123_456_789)]);
    let raw = cat(&[len_field(10, &event_time), len_field(7, b""), var_field(8, 0)]);
    let got = decode_request(&body("v1", "Event", &raw)).expect("decode");
    assert_eq!(got["eventTime"], json!("2023-11-14T22:13:20.123456Z"));
    assert_eq!(got["lastTimestamp"], json!(null));
    assert!(got.get("count").is_none(), "{got}");

    // ControllerRevision data: RawExtension holding JSON, then one holding a protobuf object.
    let raw = len_field(2, &len_field(1, br#"{"spec":{"x":[1,2]}}"#));
    let got = decode_request(&body("apps/v1", "ControllerRevision", &raw)).expect("decode");
    assert_eq!(got["data"], json!({"spec": {"x": [1, 2]}}));
    let inner = hex(KUBECTL_CONFIGMAP);
    let raw = len_field(2, &len_field(1, &inner));
    let got = decode_request(&body("apps/v1", "ControllerRevision", &raw)).expect("decode");
    assert_eq!(got["data"]["data"], json!({"a": "b"}));
    let raw = len_field(2, &len_field(1, b"{not json"));
    let err = decode_request(&body("apps/v1", "ControllerRevision", &raw)).expect_err("bad JSON");
    assert!(
        matches!(err, ProtobufError::DecodeFailed { ref path, reason: DecodeReason::EmbeddedJson(_), .. } if path == "data"),
        "{err}"
    );

    // managedFields[0].fieldsV1 is embedded JSON; time is a Time.
    let entry = cat(&[
        len_field(1, b"kubectl"),
        len_field(4, &var_field(1, 0)),
        len_field(6, b"FieldsV1"),
        len_field(7, &len_field(1, br#"{"f:data":{}}"#)),
    ]);
    let got = decode_request(&body("v1", "ConfigMap", &len_field(1, &len_field(17, &entry)))).expect("decode");
    assert_eq!(
        got["metadata"]["managedFields"],
        json!([{"manager": "kubectl", "time": "1970-01-01T00:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}}])
    );
}

#[test]
fn inline_structs_join_their_parent_object() {
    // Volume{name, VolumeSource{configMap{LocalObjectReference{name}, defaultMode}}}
    let cm = cat(&[len_field(1, &len_field(1, b"settings")), var_field(3, 0o644)]);
    let volume = cat(&[len_field(1, b"cfg"), len_field(2, &len_field(19, &cm))]);
    // Probe{ProbeHandler{httpGet{port: 8080}}, periodSeconds 5}
    let http_get = len_field(2, &var_field(2, 8080));
    let probe = cat(&[len_field(1, &len_field(2, &http_get)), var_field(4, 5)]);
    let container = len_field(2, &cat(&[len_field(1, b"c"), len_field(10, &probe)]));
    let spec = cat(&[len_field(1, &volume), container]);
    let got = decode_request(&body("v1", "Pod", &len_field(2, &spec))).expect("decode");
    assert_eq!(got["spec"]["volumes"], json!([{"name": "cfg", "configMap": {"name": "settings", "defaultMode": 420}}]));
    assert_eq!(got["spec"]["containers"][0]["livenessProbe"], json!({"httpGet": {"port": 8080}, "periodSeconds": 5}));
}

#[test]
fn delete_options_decode_under_any_group() {
    let raw = cat(&[var_field(1, 30), len_field(4, b"Foreground"), len_field(5, b"All")]);
    let got = decode_request(&body("apps/v1", "DeleteOptions", &raw)).expect("decode");
    assert_eq!(
        got,
        json!({"apiVersion": "apps/v1", "kind": "DeleteOptions", "gracePeriodSeconds": 30,
               "propagationPolicy": "Foreground", "dryRun": ["All"]})
    );
}

#[test]
fn hostile_nesting_is_refused_not_overflowed() {
    // JSONSchemaProps.not (field 28) nests without bound.
    let mut schema = Vec::new();
    for _ in 0..500 {
        schema = len_field(28, &schema);
    }
    let version = cat(&[len_field(1, b"v1"), len_field(4, &len_field(1, &schema))]);
    let spec = len_field(7, &version);
    let err = decode_request(&body("apiextensions.k8s.io/v1", "CustomResourceDefinition", &len_field(2, &spec)))
        .expect_err("too deep");
    assert!(matches!(err, ProtobufError::DecodeFailed { reason: DecodeReason::TooDeep, .. }), "{err}");
    // RawExtensions holding envelopes holding RawExtensions...
    let mut inner = hex(KUBECTL_CONFIGMAP);
    for _ in 0..200 {
        inner = body("apps/v1", "ControllerRevision", &len_field(2, &len_field(1, &inner)));
    }
    assert!(decode_request(&inner).is_err());
}

#[test]
fn non_finite_doubles_are_refused() {
    // JSONSchemaProps.maximum (tag 9) = NaN
    let mut nan = varint(9 << 3 | 1);
    nan.extend(f64::NAN.to_bits().to_le_bytes());
    let version = cat(&[len_field(1, b"v1"), len_field(4, &len_field(1, &nan))]);
    let raw = len_field(2, &len_field(7, &version));
    let err = decode_request(&body("apiextensions.k8s.io/v1", "CustomResourceDefinition", &raw)).expect_err("NaN");
    assert!(matches!(err, ProtobufError::DecodeFailed { reason: DecodeReason::InvalidValue(_), .. }), "{err}");
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(&bytes);
            let mut with_magic = MAGIC.to_vec();
            with_magic.extend(&bytes);
            let _ = decode_request(&with_magic);
        }

        #[test]
        fn arbitrary_objects_of_every_kind_never_panic(
            kind in 0usize..1000,
            raw in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            let kinds: Vec<_> = known_kinds().collect();
            let (api_version, kind) = kinds[kind % kinds.len()];
            let _ = decode_request(&body(api_version, kind, &raw));
        }

        #[test]
        fn mutated_kubectl_bodies_never_panic(
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut bytes = hex(KUBECTL_DEPLOYMENT);
            for (at, b) in edits {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            let _ = decode_request(&bytes);
            bytes.truncate(cut % (bytes.len() + 1));
            let _ = decode_request(&bytes);
        }
    }
}
