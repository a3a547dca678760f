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

/// The Python that has the official Kubernetes client: `K3RS_TEST_PYTHON` (scripts/test.sh
/// sets it to the virtual environment scripts/install-deps.sh makes), else that
/// environment's default place, else `python3` on PATH.
pub fn python() -> String {
    if let Some(p) = std::env::var_os("K3RS_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return p.to_string_lossy().into_owned();
    }
    let venv = "/var/cache/k3rs/python/bin/python3";
    if std::path::Path::new(venv).exists() {
        return venv.to_string();
    }
    "python3".to_string()
}
