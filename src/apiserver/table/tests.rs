//! Tests of the Table as a whole: its envelope, the attached objects, the default table,
//! watch rows, and that no object, however malformed, makes a printer panic.

use super::*;
use proptest::prelude::*;
use serde_json::json;
use time::format_description::well_known::Rfc3339;

fn now() -> OffsetDateTime {
    OffsetDateTime::parse("2025-03-01T12:00:00Z", &Rfc3339).unwrap()
}

fn pod(name: &str, namespace: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": namespace, "uid": "u-1", "resourceVersion": "42",
            "labels": {"app": "web"}, "creationTimestamp": "2025-03-01T11:59:00Z"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}], "nodeName": "n1"},
        "status": {"phase": "Running", "podIP": "10.42.0.7",
            "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]},
    })
}

#[test]
fn a_list_of_pods() {
    let list_meta = json!({"resourceVersion": "77", "continue": "abc", "remainingItemCount": 3, "selfLink": "x"});
    let t = render(
        "",
        "v1",
        "Pod",
        &[pod("a", "default"), pod("b", "kube-system")],
        &list_meta,
        IncludeObject::Metadata,
        now(),
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], json!({"resourceVersion": "77", "continue": "abc", "remainingItemCount": 3}));
    let names: Vec<&str> =
        t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node", "Readiness Gates"]
    );
    let priorities: Vec<i64> =
        t["columnDefinitions"].as_array().unwrap().iter().map(|c| c["priority"].as_i64().unwrap()).collect();
    assert_eq!(priorities, [0, 0, 0, 0, 0, 1, 1, 1, 1]);
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    assert_eq!(t["columnDefinitions"][1]["format"], "");
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["cells"], json!(["a", "1/1", "Running", "0", "60s", "10.42.0.7", "n1", "<none>", "<none>"]));
    assert!(rows[0].get("conditions").is_none());
    assert_eq!(
        rows[1]["object"],
        json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": pod("b", "kube-system")["metadata"]})
    );
}

#[test]
fn attached_objects_follow_include_object() {
    let p = pod("a", "default");
    let full = render("", "v1", "Pod", std::slice::from_ref(&p), &json!({}), IncludeObject::Object, now());
    let attached = &full["rows"][0]["object"];
    assert_eq!(attached["apiVersion"], "v1");
    assert_eq!(attached["kind"], "Pod");
    assert_eq!(attached["spec"], p["spec"]);
    let none = render("", "v1", "Pod", std::slice::from_ref(&p), &json!({}), IncludeObject::None, now());
    assert!(none["rows"][0]["object"].is_null());
    assert_eq!(none["metadata"], json!({}));

    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {}});
    let t = render("apps", "v1", "Deployment", std::slice::from_ref(&deploy), &json!({}), IncludeObject::Object, now());
    assert_eq!(t["rows"][0]["object"], deploy);
    let beta = TableOptions { version: TableVersion::V1Beta1, ..TableOptions::default() };
    let t = render_with("apps", "v1", "Deployment", &[deploy], &json!({}), beta, now());
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1beta1");
    assert_eq!(t["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1beta1");

    assert_eq!(IncludeObject::parse(None), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse(Some("")), Ok(IncludeObject::Metadata));
    assert_eq!(IncludeObject::parse(Some("Object")), Ok(IncludeObject::Object));
    assert_eq!(IncludeObject::parse(Some("None")), Ok(IncludeObject::None));
    let err = IncludeObject::parse(Some("object")).unwrap_err();
    assert_eq!(err.to_string(), "unrecognized includeObject value: \"object\"");
}

#[test]
fn finished_pods_carry_a_completed_condition() {
    let mut p = pod("done", "default");
    p["status"] = json!({"phase": "Succeeded"});
    let t = render("", "v1", "Pod", &[p], &json!({}), IncludeObject::None, now());
    assert_eq!(t["rows"][0]["conditions"][0]["type"], "Completed");
    assert_eq!(t["rows"][0]["conditions"][0]["status"], "True");
    assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");
}

#[test]
fn kinds_without_a_printer_get_name_and_creation_time() {
    let role = json!({"metadata": {"name": "reader", "creationTimestamp": "2025-02-01T08:30:00Z"}, "rules": []});
    for (group, kind) in [
        ("rbac.authorization.k8s.io", "Role"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("", "LimitRange"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
    ] {
        let t = render(
            group,
            "v1",
            kind,
            std::slice::from_ref(&role),
            &json!({"resourceVersion": "9"}),
            IncludeObject::Metadata,
            now(),
        );
        assert_eq!(
            t["columnDefinitions"],
            json!([
                {"name": "Name", "type": "string", "format": "name", "description": columns(group, kind)[0].description, "priority": 0},
                {"name": "Created At", "type": "date", "format": "", "description": columns(group, kind)[1].description, "priority": 0},
            ]),
            "{kind}"
        );
        assert_eq!(t["rows"][0]["cells"], json!(["reader", "2025-02-01T08:30:00Z"]), "{kind}");
    }
    let empty = render("", "v1", "LimitRange", &[], &json!({}), IncludeObject::Metadata, now());
    assert!(empty["rows"].is_null());
    let empty_pods = render("", "v1", "Pod", &[], &json!({}), IncludeObject::Metadata, now());
    assert_eq!(empty_pods["rows"], json!([]));
}

#[test]
fn watch_rows_send_columns_once() {
    let p = pod("a", "default");
    let first = render_watch_row("", "v1", "Pod", &p, TableOptions::default(), now());
    assert_eq!(first["metadata"], json!({"resourceVersion": "42"}));
    assert_eq!(first["columnDefinitions"].as_array().map(Vec::len), Some(9));
    assert_eq!(first["rows"].as_array().map(Vec::len), Some(1));
    let later =
        render_watch_row("", "v1", "Pod", &p, TableOptions { headers: false, ..TableOptions::default() }, now());
    assert!(later["columnDefinitions"].is_null());
    assert_eq!(later["rows"], first["rows"]);
    let single = render_object("", "v1", "Pod", &p, IncludeObject::Metadata, TableVersion::V1, now());
    assert_eq!(single, first);
}

#[test]
fn every_kind_renders_a_sparse_object() {
    for p in printers::all() {
        let t = render(
            p.group,
            "v1",
            p.kind,
            &[json!({"metadata": {"name": "x"}})],
            &json!({}),
            IncludeObject::Metadata,
            now(),
        );
        let cells = t["rows"][0]["cells"].as_array().unwrap();
        assert_eq!(cells.len(), t["columnDefinitions"].as_array().unwrap().len(), "{}", p.kind);
        let name_col = p.columns.iter().position(|c| c.name == "Name").unwrap();
        assert_eq!(cells[name_col], "x", "{}", p.kind);
    }
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "[-+.0-9a-zA-Z:]{0,12}".prop_map(Value::String),
        Just(Value::from("2025-03-01T11:00:00Z")),
        Just(Value::from("1.5Gi")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("metadata".to_string()),
            Just("spec".to_string()),
            Just("status".to_string()),
            Just("name".to_string()),
            Just("containers".to_string()),
            Just("containerStatuses".to_string()),
            Just("initContainerStatuses".to_string()),
            Just("state".to_string()),
            Just("terminated".to_string()),
            Just("ports".to_string()),
            Just("metrics".to_string()),
            Just("selector".to_string()),
            Just("conditions".to_string()),
            Just("subsets".to_string()),
            Just("type".to_string()),
            "[a-z]{1,6}".prop_map(|s| s),
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn no_object_makes_a_printer_panic(object in arbitrary_json(), seconds in -10_000i64..10_000_000_000) {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(seconds);
        for p in printers::all() {
            let t = render(p.group, "v1", p.kind, std::slice::from_ref(&object), &object, IncludeObject::Object, now);
            prop_assert_eq!(t["rows"][0]["cells"].as_array().map(Vec::len), Some(p.columns.len()));
        }
        let _ = render("", "v1", "LimitRange", std::slice::from_ref(&object), &json!({}), IncludeObject::None, now);
    }

    #[test]
    fn no_accept_header_makes_negotiation_panic(accept in "[ -~]{0,80}") {
        let _ = wants_table(&accept);
    }

    #[test]
    fn no_quantity_makes_canonicalisation_panic(q in "[-+]?[0-9]{0,40}(\\.[0-9]{0,40})?([eE][-+]?[0-9]{1,12}|[numkMGTPE]|[KMGTPE]i)?") {
        let _ = quantity::canonical_str(&q);
    }
}
