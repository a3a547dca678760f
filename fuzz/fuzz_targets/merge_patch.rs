#![no_main]
//! `apply_merge_patch` over an arbitrary object and patch body: errors are fine, panics are not.

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let (doc, patch) = common::split(data);
    let _ = k3rs::apiserver::patch::apply_merge_patch(&doc, patch);
});
