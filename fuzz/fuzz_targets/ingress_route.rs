#![no_main]
//! The ingress' host and path matching over arbitrary hosts and paths: an Ingress whose rule
//! host and path come from the input is built into a route table, and arbitrary requests
//! are looked up in it (routes and certificates). Whatever the strings, nothing panics.

use std::sync::Arc;

use k3rs::ingress::routes::{self, Inputs, PathKind, Table};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\n');
    let (rule_host, rule_path, kind, req_host, req_path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    for k in [PathKind::Exact, PathKind::Prefix] {
        let _ = routes::path_matches(k, rule_path, req_path);
    }
    let _ = routes::wildcard_suffix(req_host);
    let class = serde_json::json!({"metadata": {"name": k3rs::ingress::CLASS_NAME},
        "spec": {"controller": k3rs::ingress::CONTROLLER}});
    let ingress = serde_json::json!({
        "metadata": {"name": "fuzz", "namespace": "default"},
        "spec": {"ingressClassName": k3rs::ingress::CLASS_NAME, "rules": [{"host": rule_host, "http": {"paths": [
            {"path": rule_path, "pathType": kind, "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
    });
    let (Ok(class), Ok(ingress)) = (serde_json::from_value(class), serde_json::from_value(ingress)) else {
        return;
    };
    let inputs = Inputs { ingresses: vec![Arc::new(ingress)], classes: vec![Arc::new(class)], ..Default::default() };
    let table = Table::build(&inputs, |_| Err("no certificates here".into()));
    let _ = table.find(&routes::normalize_host(req_host), req_path);
    let _ = table.cert(req_host);
});
