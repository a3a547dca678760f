//! Input splitting shared by the patch targets: the bytes before the first newline are the
//! object to patch (a sample pod when they are not a JSON object), the rest is the patch.

use serde_json::{json, Value};

pub fn split(data: &[u8]) -> (Value, &[u8]) {
    let (doc, patch) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&b""[..], data),
    };
    let doc = match serde_json::from_slice::<Value>(doc) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "1"}, "finalizers": ["x", "y"]},
            "spec": {"containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}],
                 "ports": [{"containerPort": 80}]},
                {"name": "side", "image": "side:1"}
            ]}
        }),
    };
    (doc, patch)
}
