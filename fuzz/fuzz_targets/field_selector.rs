#![no_main]
//! Field selector parsing, binding to a kind and matching over arbitrary strings.

use k3rs::apiserver::selector::{FieldSelector, SelectableFields};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(sel) = FieldSelector::parse(s) {
        assert!(FieldSelector::parse(&sel.to_string()).is_ok());
        for (group, kind) in [("", "Pod"), ("", "Event"), ("batch", "Job"), ("apps", "ReplicaSet")] {
            if let Ok(bound) = SelectableFields::for_kind(group, kind).bind(&sel) {
                let _ = bound.matches(&serde_json::json!({"metadata": {"name": "a"}, "spec": {}}));
            }
        }
    }
});
