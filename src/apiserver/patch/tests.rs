//! Behaviour of the three patch types, with cases from upstream's documented behaviour
//! ("Update API Objects in Place Using kubectl patch") and its strategic-merge rules.

use serde_json::{json, Value};

use super::*;

fn smp(group: &str, kind: &str, doc: Value, patch: Value) -> Result<Value, PatchError> {
    apply_patch(&doc, PatchType::StrategicMerge, patch.to_string().as_bytes(), group, kind)
}

fn smp_ok(group: &str, kind: &str, doc: Value, patch: Value) -> Value {
    smp(group, kind, doc, patch).unwrap_or_else(|e| panic!("strategic merge failed: {e}"))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| a.iter().map(|c| c["name"].as_str().unwrap_or("?").to_string()).collect())
        .unwrap_or_default()
}

fn patch_demo() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "patch-demo", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "containers": [{"name": "patch-demo-ctr", "image": "nginx"}],
                    "tolerations": [{"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}]
                }
            }
        }
    })
}

#[test]
fn docs_strategic_patch_merges_containers_by_name() {
    let out = smp_ok(
        "apps",
        "Deployment",
        patch_demo(),
        json!({"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]}}}}),
    );
    let containers = &out["spec"]["template"]["spec"]["containers"];
    // The patch's element first, the server's after it: upstream's order.
    assert_eq!(names(containers), ["patch-demo-ctr-2", "patch-demo-ctr"]);
    assert_eq!(containers[0]["image"], "redis");
    assert_eq!(containers[1]["image"], "nginx");
    assert_eq!(out["spec"]["replicas"], 2);
    assert_eq!(out["metadata"]["labels"]["app"], "nginx");
}

#[test]
fn docs_tolerations_are_replaced_not_merged() {
    let out = smp_ok(
        "apps",
        "Deployment",
        patch_demo(),
        json!({"spec": {"template": {"spec": {"tolerations": [{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]}}}}),
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["tolerations"],
        json!([{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}])
    );
}

#[test]
fn docs_merge_patch_replaces_the_containers_list() {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "patch-demo-ctr-3", "image": "gcr.io/google-samples/hello-app:2.0"}]}}}});
    let out = apply_merge_patch(&patch_demo(), patch.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(names(&out["spec"]["template"]["spec"]["containers"]), ["patch-demo-ctr-3"]);
    assert_eq!(out["spec"]["template"]["spec"]["tolerations"][0]["key"], "dedicated");
}

#[test]
fn docs_retain_keys_clears_the_rolling_update_of_a_recreate_strategy() {
    let doc = json!({
        "metadata": {"name": "retainkeys-demo"},
        "spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "30%"}}}
    });
    let plain = smp_ok("apps", "Deployment", doc.clone(), json!({"spec": {"strategy": {"type": "Recreate"}}}));
    assert_eq!(plain["spec"]["strategy"], json!({"type": "Recreate", "rollingUpdate": {"maxSurge": "30%"}}));
    let retained =
        smp_ok("apps", "Deployment", doc, json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}));
    assert_eq!(retained["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn retain_keys_must_list_every_key_the_patch_sets() {
    let doc = json!({"spec": {"strategy": {"type": "RollingUpdate"}}});
    let err =
        smp("apps", "Deployment", doc, json!({"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}));
    assert_eq!(err, Err(PatchError::StrategicMergeBadPatch("invalid patch format of retainKeys".into())));
    assert_eq!(err.err().map(|e| e.status_code()), Some(400));
}

fn pod() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"],
                     "ownerReferences": [{"uid": "u1", "name": "rs1", "kind": "ReplicaSet", "apiVersion": "apps/v1"}]},
        "spec": {
            "containers": [{
                "name": "app",
                "image": "app:1",
                "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
            }, {"name": "side", "image": "side:1"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
            "imagePullSecrets": [{"name": "reg"}]
        }
    })
}

#[test]
fn nested_lists_merge_by_their_own_keys() {
    let out = smp_ok(
        "",
        "Pod",
        pod(),
        json!({"spec": {"containers": [{
            "name": "app",
            "env": [{"name": "B", "value": "two"}, {"name": "C", "value": "3"}],
            "ports": [{"containerPort": 8080}],
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}]
        }]}}),
    );
    let app = &out["spec"]["containers"][0];
    assert_eq!(app["image"], "app:1");
    assert_eq!(
        app["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "two"}, {"name": "C", "value": "3"}])
    );
    assert_eq!(app["ports"], json!([{"containerPort": 8080}, {"containerPort": 80, "protocol": "TCP"}]));
    assert_eq!(app["volumeMounts"], json!([{"name": "data", "mountPath": "/data", "readOnly": true}]));
    assert_eq!(names(&out["spec"]["containers"]), ["app", "side"]);
}

#[test]
fn null_deletes_a_map_key_and_new_values_lose_their_nulls() {
    let out = smp_ok(
        "",
        "Pod",
        pod(),
        json!({"metadata": {"labels": {"a": null, "c": "3"}, "annotations": {"x": "1", "y": null}}}),
    );
    assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
    assert_eq!(out["metadata"]["annotations"], json!({"x": "1"}));
}

#[test]
fn delete_and_replace_directives() {
    let out = smp_ok("", "Pod", pod(), json!({"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}));
    assert_eq!(names(&out["spec"]["containers"]), ["app"]);

    let out = smp_ok(
        "",
        "Pod",
        pod(),
        json!({"spec": {"containers": [{"name": "only", "image": "o:1"}, {"$patch": "replace"}]}}),
    );
    assert_eq!(out["spec"]["containers"], json!([{"name": "only", "image": "o:1"}]));

    let out = smp_ok("", "Pod", pod(), json!({"metadata": {"labels": {"$patch": "replace", "z": "9"}}}));
    assert_eq!(out["metadata"]["labels"], json!({"z": "9"}));

    // Upstream leaves an empty map where a map is deleted by directive.
    let out = smp_ok("", "Pod", pod(), json!({"metadata": {"labels": {"$patch": "delete"}}}));
    assert_eq!(out["metadata"]["labels"], json!({}));

    // A new field whose value is a directive map is not created.
    let out = smp_ok("", "Pod", pod(), json!({"metadata": {"annotations": {"$patch": "delete"}}}));
    assert!(out["metadata"].get("annotations").is_none());
}

#[test]
fn directive_errors_read_like_upstream() {
    let e = smp("", "Pod", pod(), json!({"spec": {"containers": [{"name": "app", "$patch": "merge"}]}}));
    assert_eq!(e, Err(PatchError::StrategicMergeFailed("merging lists cannot yet be specified in the patch".into())));
    let e = smp("", "Pod", pod(), json!({"metadata": {"$patch": "merge"}}));
    assert_eq!(e, Err(PatchError::StrategicMergeFailed("unknown patch type: merge in map: map[$patch:merge]".into())));
    let e = smp("", "Pod", pod(), json!({"spec": {"containers": [{"image": "x"}]}}));
    assert_eq!(
        e,
        Err(PatchError::StrategicMergeFailed("map: map[image:x] does not contain declared merge key: name".into()))
    );
    assert_eq!(e.err().map(|e| e.status_code()), Some(500));
    let e = smp("", "Pod", json!({"metadata": {"finalizers": []}}), json!({"metadata": {"finalizers": [[1]]}}));
    assert_eq!(e, Err(PatchError::StrategicMergeNotApplicable("lists of lists are not supported".into())));
    assert_eq!(e.err().map(|e| e.status_code()), Some(422));
    let e = smp("", "Pod", pod(), json!({"metadata": {"finalizers": [1]}}));
    assert_eq!(e, Err(PatchError::StrategicMergeFailed("list element types are not identical: [[x y] [1]]".into())));
    let e = smp("", "Pod", pod(), json!({"$deleteFromPrimitiveListX/finalizers": ["x"]}));
    assert_eq!(e, Err(PatchError::StrategicMergeBadPatch("invalid patch format of primitive list".into())));
    let e = smp("", "Pod", pod(), json!({"metadata": {"$setElementOrder": []}}));
    assert_eq!(e, Err(PatchError::StrategicMergeBadPatch("invalid patch format of setElementOrder list".into())));
}

#[test]
fn primitive_lists_with_merge_strategy_are_unioned() {
    // x stays before y, where the server had it; z, new, comes right after the patch's y.
    let out = smp_ok("", "Pod", pod(), json!({"metadata": {"finalizers": ["y", "z"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["x", "y", "z"]));
    // A value the server does not have goes first: nothing orders it after server-only ones.
    let out = smp_ok("", "Pod", pod(), json!({"metadata": {"finalizers": ["z"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["z", "x", "y"]));
    let out = smp_ok("", "Pod", pod(), json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["y"]));
    let out = smp_ok(
        "",
        "Pod",
        pod(),
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"], "finalizers": ["w"]}}),
    );
    assert_eq!(out["metadata"]["finalizers"], json!(["w", "y"]));
    // A list without the merge strategy is replaced.
    let doc = json!({"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}});
    let out = smp_ok("", "Pod", doc, json!({"spec": {"containers": [{"name": "a", "args": ["3"]}]}}));
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["3"]));
}

#[test]
fn set_element_order_reorders_merged_lists() {
    let out =
        smp_ok("", "Pod", pod(), json!({"spec": {"$setElementOrder/containers": [{"name": "side"}, {"name": "app"}]}}));
    assert_eq!(names(&out["spec"]["containers"]), ["side", "app"]);
    let out = smp_ok(
        "",
        "Pod",
        pod(),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "new"}, {"name": "side"}],
            "containers": [{"name": "new", "image": "n:1"}]
        }}),
    );
    assert_eq!(names(&out["spec"]["containers"]), ["app", "new", "side"]);
    let e = smp(
        "",
        "Pod",
        pod(),
        json!({"spec": {
            "$setElementOrder/containers": [{"name": "app"}, {"name": "side"}],
            "containers": [{"name": "side", "image": "s:2"}, {"name": "app", "image": "a:2"}]
        }}),
    );
    match e {
        Err(PatchError::StrategicMergeFailed(m)) => {
            assert!(m.starts_with("The order in patch list:\n"), "{m}");
            assert!(m.contains("doesn't match $setElementOrder list:"), "{m}");
        }
        other => panic!("expected an order mismatch, got {other:?}"),
    }
}

#[test]
fn server_only_items_keep_their_place_relative_to_patched_ones() {
    let doc = json!({"metadata": {"finalizers": ["a", "b", "c", "d"]}});
    let out = smp_ok("", "ConfigMap", doc, json!({"metadata": {"finalizers": ["c", "e"]}}));
    assert_eq!(out["metadata"]["finalizers"], json!(["a", "b", "c", "e", "d"]));
}

#[test]
fn owner_references_merge_by_uid() {
    let out = smp_ok(
        "",
        "Pod",
        pod(),
        json!({"metadata": {"ownerReferences": [{"uid": "u1", "controller": true}, {"uid": "u2", "name": "x", "kind": "Job", "apiVersion": "batch/v1"}]}}),
    );
    let refs = &out["metadata"]["ownerReferences"];
    assert_eq!(refs.as_array().map(Vec::len), Some(2));
    assert_eq!(refs[0]["name"], "rs1");
    assert_eq!(refs[0]["controller"], true);
    assert_eq!(refs[1]["uid"], "u2");
}

#[test]
fn service_ports_merge_by_port_even_across_protocols() {
    // Upstream's quirk: the merge key is the port number alone, so a UDP port patched in
    // with the number of an existing TCP port overwrites that entry.
    let svc =
        json!({"spec": {"ports": [{"name": "dns", "port": 53, "protocol": "TCP"}, {"name": "http", "port": 80}]}});
    let out =
        smp_ok("", "Service", svc, json!({"spec": {"ports": [{"name": "dns-udp", "port": 53, "protocol": "UDP"}]}}));
    assert_eq!(
        out["spec"]["ports"],
        json!([{"name": "dns-udp", "port": 53, "protocol": "UDP"}, {"name": "http", "port": 80}])
    );
}

#[test]
fn pod_templates_of_workloads_are_strategic() {
    let template = |containers: Value| json!({"template": {"spec": {"containers": containers}}});
    let base = json!([{"name": "a", "image": "a:1"}]);
    let patch = json!([{"name": "a", "image": "a:2"}, {"name": "b", "image": "b:1"}]);
    for (group, kind, wrap) in [
        ("apps", "ReplicaSet", json!({"spec": template(base.clone())})),
        ("apps", "StatefulSet", json!({"spec": template(base.clone())})),
        ("apps", "DaemonSet", json!({"spec": template(base.clone())})),
        ("batch", "Job", json!({"spec": template(base.clone())})),
        ("", "ReplicationController", json!({"spec": template(base.clone())})),
        ("", "PodTemplate", template(base.clone())),
        ("batch", "CronJob", json!({"spec": {"jobTemplate": {"spec": template(base.clone())}}})),
    ] {
        let patch_doc = match kind {
            "PodTemplate" => template(patch.clone()),
            "CronJob" => json!({"spec": {"jobTemplate": {"spec": template(patch.clone())}}}),
            _ => json!({"spec": template(patch.clone())}),
        };
        let out = smp_ok(group, kind, wrap, patch_doc);
        let containers = match kind {
            "PodTemplate" => &out["template"]["spec"]["containers"],
            "CronJob" => &out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"],
            _ => &out["spec"]["template"]["spec"]["containers"],
        };
        assert_eq!(names(containers), ["a", "b"], "{kind}");
        assert_eq!(containers[0]["image"], "a:2", "{kind}");
    }
}

#[test]
fn node_addresses_and_conditions_merge_by_type() {
    let node = json!({"status": {
        "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}, {"type": "Hostname", "address": "n1"}],
        "conditions": [{"type": "Ready", "status": "False"}]
    }});
    let out = smp_ok(
        "",
        "Node",
        node,
        json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.2"}], "conditions": [{"type": "Ready", "status": "True"}]}}),
    );
    assert_eq!(out["status"]["addresses"][0]["address"], "10.0.0.2");
    assert_eq!(out["status"]["addresses"][1]["address"], "n1");
    assert_eq!(out["status"]["conditions"], json!([{"type": "Ready", "status": "True"}]));
}

#[test]
fn pdb_selector_is_replaced_whole() {
    let pdb = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}});
    let out = smp_ok("policy", "PodDisruptionBudget", pdb, json!({"spec": {"selector": {"matchExpressions": []}}}));
    assert_eq!(out["spec"]["selector"], json!({"matchExpressions": []}));
}

#[test]
fn custom_resources_refuse_strategic_merge() {
    let e = smp("example.com", "Widget", json!({"spec": {}}), json!({"spec": {"a": 1}}));
    assert_eq!(e, Err(PatchError::StrategicMergeUnsupported));
    let e = PatchError::StrategicMergeUnsupported;
    assert_eq!(e.status_code(), 415);
    assert_eq!(e.reason(), Reason::UnsupportedMediaType);
    assert_eq!(
        e.to_string(),
        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
    // The other patch types still work on them.
    let out =
        apply_patch(&json!({"spec": {"a": 1}}), PatchType::Merge, br#"{"spec":{"b":2}}"#, "example.com", "Widget");
    assert_eq!(out, Ok(json!({"spec": {"a": 1, "b": 2}})));
}

#[test]
fn strategic_patch_body_must_be_a_json_object() {
    let e = apply_strategic_merge_patch(&pod(), b"[1]", &schema::POD);
    assert_eq!(
        e,
        Err(PatchError::DecodePatch(
            "json: cannot unmarshal array into Go value of type map[string]interface {}".into()
        ))
    );
    let e = apply_strategic_merge_patch(&pod(), b"{", &schema::POD);
    assert!(matches!(e, Err(PatchError::DecodePatch(ref m)) if m.starts_with("error decoding patch: ")), "{e:?}");
    assert_eq!(apply_strategic_merge_patch(&json!([1]), b"{}", &schema::POD), Err(PatchError::NotAnObject));
}

#[test]
fn content_types() {
    assert_eq!(PatchType::from_content_type("application/strategic-merge-patch+json"), Ok(PatchType::StrategicMerge));
    assert_eq!(PatchType::from_content_type("Application/Merge-Patch+JSON; charset=utf-8"), Ok(PatchType::Merge));
    assert_eq!(PatchType::from_content_type("application/json-patch+json"), Ok(PatchType::Json));
    assert_eq!(PatchType::from_content_type("application/apply-patch+yaml"), Ok(PatchType::Apply));
    let e = PatchType::from_content_type("application/json");
    assert_eq!(e, Err(PatchError::UnsupportedMediaType { built_in: true }));
    assert_eq!(e.err().map(|e| e.status_code()), Some(415));
    assert_eq!(apply_patch(&pod(), PatchType::Apply, b"{}", "", "Pod").err().map(|e| e.status_code()), Some(415));
}

#[test]
fn json_patch_operations() {
    let doc = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"list": [1, 2]}});
    let patch = br#"[
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "replace", "path": "/metadata/labels/a", "value": "one"},
        {"op": "add", "path": "/spec/list/-", "value": 3},
        {"op": "remove", "path": "/spec/list/0"},
        {"op": "copy", "from": "/metadata/labels/b", "path": "/metadata/labels/c"},
        {"op": "move", "from": "/metadata/labels/c", "path": "/metadata/labels/d"},
        {"op": "test", "path": "/metadata/labels/d", "value": "2"}
    ]"#;
    let out = apply_json_patch(&doc, patch).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out, json!({"metadata": {"labels": {"a": "one", "b": "2", "d": "2"}}, "spec": {"list": [2, 3]}}));
}

#[test]
fn json_patch_failures() {
    let doc = json!({"metadata": {"name": "x"}});
    let e = apply_json_patch(&doc, br#"[{"op": "test", "path": "/metadata/name", "value": "y"}]"#);
    assert_eq!(e, Err(PatchError::JsonPatchNotApplicable("testing value /metadata/name failed: test failed".into())));
    assert_eq!(e.err().map(|e| e.status_code()), Some(422));
    let e = apply_json_patch(&doc, br#"[{"op": "remove", "path": "/spec/x"}]"#);
    assert_eq!(
        e,
        Err(PatchError::JsonPatchNotApplicable(
            "remove operation does not apply: doc is missing path: \"/spec/x\": missing value".into()
        ))
    );
    let e = apply_json_patch(&doc, br#"[{"op": "replace", "path": "/spec", "value": 1}]"#);
    assert!(
        matches!(e, Err(PatchError::JsonPatchNotApplicable(ref m)) if m.starts_with("replace operation does not apply"))
    );
    let e = apply_json_patch(&doc, br#"{"op": "add"}"#);
    assert_eq!(
        e,
        Err(PatchError::DecodePatch("json: cannot unmarshal object into Go value of type jsonpatch.Patch".into()))
    );
    let e = apply_json_patch(&doc, br#"[{"op": "frobnicate", "path": "/a"}]"#);
    assert!(matches!(e, Err(PatchError::DecodePatch(_))), "{e:?}");
    let many = format!("[{}]", vec![r#"{"op":"test","path":"/metadata","value":{"name":"x"}}"#; 10_001].join(","));
    let e = apply_json_patch(&doc, many.as_bytes());
    assert_eq!(e, Err(PatchError::TooManyOperations(10_001)));
    assert_eq!(
        e.err().map(|e| (e.status_code(), e.to_string())),
        Some((413, "The allowed maximum operations in a JSON patch is 10000, got 10001".into()))
    );
    // A move into its own descendant after another change fails cleanly (json-patch's own
    // rollback panics on this sequence).
    let e = apply_json_patch(
        &json!({"spec": {"a": 1}}),
        br#"[{"op": "add", "path": "/b", "value": 1}, {"op": "move", "from": "/spec", "path": "/spec/x"}]"#,
    );
    assert!(matches!(e, Err(PatchError::JsonPatchNotApplicable(_))), "{e:?}");
    // A failed patch leaves the input as it was.
    assert_eq!(doc, json!({"metadata": {"name": "x"}}));
}

#[test]
fn merge_patch_rules() {
    let doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "s": "x"});
    let out = apply_merge_patch(&doc, br#"{"a": {"b": null, "d": {"e": null, "f": 1}}, "l": [3], "s": null}"#);
    assert_eq!(out, Ok(json!({"a": {"c": 2, "d": {"f": 1}}, "l": [3]})));
    assert_eq!(apply_merge_patch(&doc, b"[1, {\"a\": null}]"), Ok(json!([1, {}])));
    for bad in [&b"null"[..], b"1", b"\"x\"", b"{"] {
        assert_eq!(apply_merge_patch(&doc, bad), Err(PatchError::DecodePatch("Invalid JSON Patch".into())));
    }
    let out = apply_merge_patch(&json!({"a": 1}), br#"{"a": {"b": null, "c": 1}}"#);
    assert_eq!(out, Ok(json!({"a": {"c": 1}})));
}

#[test]
fn schemas_expose_upstream_extensions() {
    let containers = schema::POD_SPEC.field("containers").unwrap_or_else(|| panic!("containers"));
    assert_eq!(containers.strategy.as_extension(), Some("merge"));
    assert_eq!(containers.merge_key, Some("name"));
    let volumes = schema::POD_SPEC.field("volumes").unwrap_or_else(|| panic!("volumes"));
    assert_eq!(volumes.strategy.as_extension(), Some("merge,retainKeys"));
    assert!(schema::POD_SPEC.field("tolerations").is_none());
    assert!(strategic_schema("apps", "Deployment").is_some());
    assert!(strategic_schema("stable.example.com", "CronTab").is_none());
}
