//! `/metrics`: request counts and latencies by verb, resource and code, in the Prometheus
//! text format, under upstream's metric names.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Latency bucket bounds in seconds, as upstream's `apiserver_request_duration_seconds`.
const BUCKETS: [f64; 14] = [0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 4.0, 60.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    total: u64,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// (verb, group, version, resource, code) → count
    requests: BTreeMap<(String, String, String, String, u16), u64>,
    /// (verb, group, version, resource) → latency
    durations: BTreeMap<(String, String, String, String), Histogram>,
}

impl Metrics {
    pub fn observe(&self, verb: &str, group: &str, version: &str, resource: &str, code: u16, took: Duration) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let verb = verb.to_ascii_uppercase();
        *inner.requests.entry((verb.clone(), group.into(), version.into(), resource.into(), code)).or_default() += 1;
        // Watches last as long as the client wants: their duration says nothing.
        if verb != "WATCH" {
            let h = inner.durations.entry((verb, group.into(), version.into(), resource.into())).or_default();
            let secs = took.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.total += 1;
        }
    }

    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, group, version, resource and HTTP response code.\n# TYPE apiserver_request_total counter\n");
        for ((verb, group, version, resource, code), n) in &inner.requests {
            let _ = writeln!(out, "apiserver_request_total{{code=\"{code}\",group=\"{group}\",resource=\"{resource}\",verb=\"{verb}\",version=\"{version}\"}} {n}");
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, group, version and resource.\n# TYPE apiserver_request_duration_seconds histogram\n");
        for ((verb, group, version, resource), h) in &inner.durations {
            let labels = format!("group=\"{group}\",resource=\"{resource}\",verb=\"{verb}\",version=\"{version}\"");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ =
                    writeln!(out, "apiserver_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}", h.counts[i]);
            }
            let _ = writeln!(out, "apiserver_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", h.total);
            let _ = writeln!(out, "apiserver_request_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "apiserver_request_duration_seconds_count{{{labels}}} {}", h.total);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets() {
        let m = Metrics::default();
        m.observe("list", "", "v1", "pods", 200, Duration::from_millis(3));
        m.observe("list", "", "v1", "pods", 200, Duration::from_millis(300));
        m.observe("watch", "", "v1", "pods", 200, Duration::from_secs(100));
        let text = m.render();
        assert!(
            text.contains(
                "apiserver_request_total{code=\"200\",group=\"\",resource=\"pods\",verb=\"LIST\",version=\"v1\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"0.4\"} 2"));
        assert!(text.contains(
            "apiserver_request_duration_seconds_count{group=\"\",resource=\"pods\",verb=\"LIST\",version=\"v1\"} 2"
        ));
        assert!(!text.contains("verb=\"WATCH\",version=\"v1\"} 1\napiserver_request_duration"));
    }
}
