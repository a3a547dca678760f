//! Property tests of the patch functions and the selector parsers: arbitrary documents,
//! patches and strings never make them panic, and the patch types keep their defining
//! properties (merge patch is idempotent, an empty strategic patch changes nothing, and
//! strategic merge equals merge patch where no list or directive is involved).

use proptest::prelude::*;
use serde_json::{Map, Value};

use k3rs::apiserver::patch::{
    apply_json_patch, apply_merge_patch, apply_patch, apply_strategic_merge_patch, strategic_schema, PatchType,
};
use k3rs::apiserver::selector::{FieldSelector, LabelSelector, SelectableFields};

/// Keys that exercise the strategic machinery: real merge-keyed fields, directives and
/// malformed directives, and a few arbitrary names.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("name".to_string()),
        Just("metadata".to_string()),
        Just("spec".to_string()),
        Just("template".to_string()),
        Just("containers".to_string()),
        Just("env".to_string()),
        Just("ports".to_string()),
        Just("containerPort".to_string()),
        Just("finalizers".to_string()),
        Just("ownerReferences".to_string()),
        Just("uid".to_string()),
        Just("$patch".to_string()),
        Just("$retainKeys".to_string()),
        Just("$setElementOrder/containers".to_string()),
        Just("$setElementOrder/finalizers".to_string()),
        Just("$deleteFromPrimitiveList/finalizers".to_string()),
        Just("$deleteFromPrimitiveList".to_string()),
        Just("$setElementOrder".to_string()),
        "[a-z]{1,3}",
    ]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..300).prop_map(Value::from),
        (-1e3f64..1e3).prop_map(Value::from),
        prop_oneof![
            Just("replace"),
            Just("delete"),
            Just("merge"),
            Just("name"),
            Just("a"),
            Just("b"),
            Just("containers")
        ]
        .prop_map(Value::from),
        "[a-z]{0,4}".prop_map(Value::from),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 96, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(key(), json(), 0..6).prop_map(|m| Value::Object(m.into_iter().collect()))
}

/// A pod-shaped document, so merge keys and nested strategies are reached often.
fn pod_like() -> impl Strategy<Value = Value> {
    (object(), prop::collection::vec(object(), 0..4), prop::collection::vec(scalar(), 0..4)).prop_map(
        |(extra, containers, finalizers)| {
            let mut spec = Map::new();
            spec.insert("containers".into(), Value::Array(containers));
            let mut meta = Map::new();
            meta.insert("finalizers".into(), Value::Array(finalizers));
            let mut root = match extra {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            root.insert("spec".into(), Value::Object(spec));
            root.insert("metadata".into(), Value::Object(meta));
            Value::Object(root)
        },
    )
}

/// Objects of maps and scalars only, with plain keys: no list and no directive.
fn plain_object() -> impl Strategy<Value = Value> {
    let plain_key = prop_oneof![Just("metadata".to_string()), Just("name".to_string()), "[a-c]{1,2}"];
    let value = scalar().prop_recursive(4, 48, 5, move |inner| {
        prop::collection::btree_map(plain_key.clone(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect()))
    });
    prop::collection::btree_map("[a-c]{1,2}", value, 0..5).prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn json_patch_op() -> impl Strategy<Value = Value> {
    let segment =
        prop_oneof![Just("spec"), Just("metadata"), Just("0"), Just("-"), Just("name"), Just("a~1b"), Just("x")];
    let path = prop::collection::vec(segment, 0..4).prop_map(|s| s.iter().map(|x| format!("/{x}")).collect::<String>());
    let op = prop_oneof![
        Just("add"),
        Just("remove"),
        Just("replace"),
        Just("move"),
        Just("copy"),
        Just("test"),
        Just("nope")
    ];
    (op, path.clone(), path, json())
        .prop_map(|(op, path, from, value)| serde_json::json!({"op": op, "path": path, "from": from, "value": value}))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn strategic_merge_never_panics(doc in pod_like(), patch in object()) {
        let bytes = patch.to_string();
        for (group, kind) in [("", "Pod"), ("apps", "Deployment"), ("", "ConfigMap"), ("", "Service")] {
            if let Some(schema) = strategic_schema(group, kind) {
                let _ = apply_strategic_merge_patch(&doc, bytes.as_bytes(), schema);
            }
        }
    }

    #[test]
    fn strategic_merge_never_panics_on_nested_patches(doc in pod_like(), containers in prop::collection::vec(json(), 0..4)) {
        let patch = serde_json::json!({"spec": {"containers": containers.clone(), "$setElementOrder/containers": containers}});
        let _ = apply_patch(&doc, PatchType::StrategicMerge, patch.to_string().as_bytes(), "", "Pod");
    }

    #[test]
    fn patches_never_panic_on_arbitrary_bytes(doc in pod_like(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        for t in [PatchType::Json, PatchType::Merge, PatchType::StrategicMerge, PatchType::Apply] {
            let _ = apply_patch(&doc, t, &bytes, "", "Pod");
        }
    }

    #[test]
    fn empty_strategic_patch_changes_nothing(doc in pod_like()) {
        let schema = strategic_schema("", "Pod");
        prop_assert!(schema.is_some());
        if let Some(schema) = schema {
            // Whatever the object holds, an empty patch leaves it as it was.
            prop_assert_eq!(apply_strategic_merge_patch(&doc, b"{}", schema), Ok(doc.clone()));
        }
    }

    #[test]
    fn merge_patch_is_idempotent(doc in json(), patch in object()) {
        let bytes = patch.to_string();
        let once = apply_merge_patch(&doc, bytes.as_bytes());
        prop_assert!(once.is_ok());
        if let Ok(once) = once {
            prop_assert_eq!(apply_merge_patch(&once, bytes.as_bytes()), Ok(once.clone()));
        }
    }

    #[test]
    fn strategic_equals_merge_patch_without_lists_or_directives(doc in plain_object(), patch in plain_object()) {
        let bytes = patch.to_string();
        let schema = strategic_schema("", "ConfigMap");
        prop_assert!(schema.is_some());
        if let Some(schema) = schema {
            let strategic = apply_strategic_merge_patch(&doc, bytes.as_bytes(), schema);
            prop_assert_eq!(strategic, apply_merge_patch(&doc, bytes.as_bytes()));
        }
    }

    #[test]
    fn json_patch_never_panics_and_failures_leave_no_trace(doc in pod_like(), ops in prop::collection::vec(json_patch_op(), 0..6)) {
        let before = doc.clone();
        let _ = apply_json_patch(&doc, Value::Array(ops).to_string().as_bytes());
        prop_assert_eq!(doc, before);
    }

    #[test]
    fn label_selectors_reparse_to_themselves(s in "[a-z!=(), \\t/.<>-]{0,24}|[ -~]{0,24}") {
        if let Ok(sel) = LabelSelector::parse(&s) {
            let printed = sel.to_string();
            prop_assert_eq!(LabelSelector::parse(&printed), Ok(sel), "printed as {:?}", printed);
        }
    }

    #[test]
    fn field_selectors_reparse_to_equivalent_selectors(s in "[a-z.=!,\\\\ ]{0,24}|[ -~]{0,24}") {
        if let Ok(sel) = FieldSelector::parse(&s) {
            let printed = sel.to_string();
            let again = FieldSelector::parse(&printed);
            prop_assert!(again.is_ok(), "{:?} printed as {:?}", s, printed);
            if let Ok(again) = again {
                // The same requirements. Their order may differ: parsing sorts the terms as
                // written, and `==` prints as `=`, which sorts elsewhere (upstream alike);
                // the AND of the terms is the same.
                let terms = |f: &FieldSelector| {
                    let mut t: Vec<String> = f.requirements().iter().map(|r| r.to_string()).collect();
                    t.sort();
                    t
                };
                prop_assert_eq!(terms(&again), terms(&sel), "{:?} printed as {:?}", s, printed);
                for r in sel.requirements() {
                    prop_assert!(
                        again.requirements().iter().any(|a| a.field == r.field && a.value == r.value),
                        "{:?} lost {:?}", s, r
                    );
                }
            }
            let _ = SelectableFields::for_kind("", "Pod").bind(&sel);
        }
    }
}

/// A case the property above found: `==` prints as `=`, which sorts before `=.`, so the
/// reprinted selector lists the same two terms the other way round.
#[test]
fn a_reprinted_field_selector_may_reorder_its_terms() {
    let sel = FieldSelector::parse("=.,==").unwrap();
    let printed = sel.to_string();
    assert_eq!(printed, "=.,=");
    let again = FieldSelector::parse(&printed).unwrap();
    assert_eq!(again.to_string(), "=,=.");
    assert_eq!(FieldSelector::parse(&again.to_string()).unwrap(), again);
}
