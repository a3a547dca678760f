//! The scheduler's Events (Scheduled, FailedScheduling), written as core/v1 Events in the
//! shape upstream's recorder produces, with repeats of the same message folded into one
//! Event's count.
//
// The shared EventRecorder (src/client/events.rs) replaces this once it is merged.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::apiserver::registry::meta::now_rfc3339;
use crate::client::Client;

/// The component name events are reported under.
pub const COMPONENT: &str = "default-scheduler";

/// Remembers each pod's last event so a repeat bumps its count instead of adding another.
#[derive(Default)]
pub struct Events {
    last: HashMap<(String, String), (String, String)>,
}

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

fn event_name(pod: &str) -> String {
    format!("{pod}.{:016x}", fastrand::u64(..))
}

impl Events {
    /// Records `reason`/`message` about `pod`.
    pub async fn record(&mut self, client: &Client, pod: &Value, kind: &str, reason: &str, action: &str, message: &str) {
        let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default").to_string();
        let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
        let now = now_rfc3339();
        let key = (ns.clone(), name.clone());
        if let Some((event, last)) = self.last.get(&key) {
            if last == &format!("{reason}\n{message}") {
                let path = format!("/api/v1/namespaces/{ns}/events/{event}");
                if let Ok(mut ev) = client.get(&path).await {
                    ev["count"] = json!(ev["count"].as_i64().unwrap_or(1) + 1);
                    ev["lastTimestamp"] = json!(now);
                    if client.put(&path, &ev).await.is_ok() {
                        return;
                    }
                }
            }
        }
        let event = event_name(&name);
        let body = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": event, "namespace": ns},
            "involvedObject": {
                "apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name,
                "uid": pod.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
                "resourceVersion": pod.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
            },
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": COMPONENT},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "action": action,
            "reportingComponent": COMPONENT,
            "reportingInstance": format!("{COMPONENT}-{}", hostname()),
        });
        match client.post(&format!("/api/v1/namespaces/{ns}/events"), &body).await {
            Ok(_) => {
                self.last.insert(key, (event, format!("{reason}\n{message}")));
            }
            Err(e) => tracing::warn!(component = COMPONENT, object = %format!("{ns}/{name}"), error = %e, "recording an event failed"),
        }
    }

    /// Forgets a pod that is gone or placed.
    pub fn forget(&mut self, ns: &str, name: &str) {
        self.last.remove(&(ns.to_string(), name.to_string()));
    }
}
