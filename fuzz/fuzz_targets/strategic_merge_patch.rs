#![no_main]
//! `apply_strategic_merge_patch` over an arbitrary object and patch body, with the schemas of
//! a few built-in kinds: errors are fine, panics are not.

use k3rs::apiserver::patch::{apply_strategic_merge_patch, strategic_schema};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (doc, patch) = common::split(data);
    for (group, kind) in [("", "Pod"), ("apps", "Deployment"), ("", "Service"), ("", "Node")] {
        if let Some(schema) = strategic_schema(group, kind) {
            let _ = apply_strategic_merge_patch(&doc, patch, schema);
        }
    }
});
