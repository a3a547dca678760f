//! Helpers shared by the integration tests (`tests/it/main.rs` declares this module once;
//! each suite uses what it needs).
#![allow(dead_code)]

pub mod busybox;
pub mod cluster;
pub mod etcd;
pub mod kubectl_http;
pub mod tls;

/// The name by which the test harness knows `test` in the suite that calls this: suites
/// that re-run one of their own tests in a child process (`--exact`) name it with this,
/// since one binary holds every suite (`crash::crash_child`).
#[track_caller]
pub fn suite_test(test: &str) -> String {
    let file = std::panic::Location::caller().file();
    let suite = std::path::Path::new(file).file_stem().and_then(|s| s.to_str()).expect("a suite file");
    format!("{suite}::{test}")
}
