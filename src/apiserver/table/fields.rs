//! Reading stored JSON objects leniently and formatting the values printers show: ages in
//! upstream's human duration style, label maps, label selectors, container lists.
//!
//! Every reader falls back to the zero value of the field (empty string, 0, empty list),
//! as Go's decoding into typed structs does, so a printer never fails on a sparse object.

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The value at `path` below `v`.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, key| cur.get(key))
}

/// The string at `path`, or `""`.
pub(crate) fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

/// The string at `path` when it is set (Go's `*string`).
pub(crate) fn opt_text<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(Value::as_str)
}

/// The integer at `path` when it is set; floats with no fraction count, as JSON numbers do.
pub(crate) fn opt_int(v: &Value, path: &[&str]) -> Option<i64> {
    let n = at(v, path)?;
    n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18).map(|f| f as i64))
}

/// The integer at `path`, or 0.
pub(crate) fn int(v: &Value, path: &[&str]) -> i64 {
    opt_int(v, path).unwrap_or(0)
}

/// The boolean at `path` when it is set.
pub(crate) fn opt_bool(v: &Value, path: &[&str]) -> Option<bool> {
    at(v, path).and_then(Value::as_bool)
}

/// The boolean at `path`, or false.
pub(crate) fn boolean(v: &Value, path: &[&str]) -> bool {
    opt_bool(v, path).unwrap_or(false)
}

/// The list at `path`, or an empty one.
pub(crate) fn list<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// The map at `path` when it is one.
pub(crate) fn map<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Map<String, Value>> {
    at(v, path).and_then(Value::as_object)
}

/// How many entries the map at `path` has.
pub(crate) fn map_len(v: &Value, path: &[&str]) -> usize {
    map(v, path).map_or(0, Map::len)
}

/// `metadata.name`.
pub(crate) fn name(o: &Value) -> &str {
    text(o, &["metadata", "name"])
}

/// Whether `metadata.deletionTimestamp` is set.
pub(crate) fn deleting(o: &Value) -> bool {
    at(o, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null())
}

/// `metadata.annotations[key]`.
pub(crate) fn annotation<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    map(o, &["metadata", "annotations"]).and_then(|m| m.get(key)).and_then(Value::as_str)
}

/// A Kubernetes timestamp (RFC 3339, `Time` or `MicroTime`).
pub(crate) fn timestamp(v: &Value, path: &[&str]) -> Option<OffsetDateTime> {
    opt_text(v, path).and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

/// Time since `t` as upstream prints it; an unset time reads `<unknown>`.
pub(crate) fn since(t: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    match t {
        Some(t) => human_duration(now - t),
        None => "<unknown>".to_string(),
    }
}

/// The age of the object: time since `metadata.creationTimestamp`.
pub(crate) fn age(o: &Value, now: OffsetDateTime) -> String {
    since(timestamp(o, &["metadata", "creationTimestamp"]), now)
}

/// A duration with two or three significant figures, the way `kubectl get` shows ages:
/// `45s`, `5m10s`, `15m`, `3h20m`, `10h`, `2d3h`, `30d`, `2y45d`, `9y`. Clocks a second
/// apart still read `0s`; anything further in the future reads `<invalid>`.
pub fn human_duration(d: time::Duration) -> String {
    let seconds = d.whole_seconds();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{days}d") } else { format!("{days}d{h}h") };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let d = days % 365;
        return if d == 0 { format!("{years}y") } else { format!("{years}y{d}d") };
    }
    format!("{years}y")
}

/// A time as the default table prints `Created At`: RFC 3339 in UTC, whole seconds. An
/// unset time prints as Go's zero time does.
pub(crate) fn rfc3339_seconds(t: Option<OffsetDateTime>) -> String {
    crate::domain::time::rfc3339(t.unwrap_or(crate::domain::time::GO_ZERO_TIME))
}

/// The string form of a scalar JSON value (labels and selector values are strings, but a
/// hand-written object may hold a number).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A label map as `k1=v1,k2=v2`, keys sorted; `<none>` when empty.
pub(crate) fn format_labels(m: Option<&Value>) -> String {
    let Some(m) = m.and_then(Value::as_object) else { return "<none>".to_string() };
    if m.is_empty() {
        return "<none>".to_string();
    }
    let mut pairs: Vec<(&String, String)> = m.iter().map(|(k, v)| (k, scalar(v))).collect();
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Why a label selector cannot be turned into a selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadSelector;

/// A `LabelSelector` in selector syntax (`app=web,tier in (a,b),!legacy`), requirements
/// sorted by key. An absent or empty selector gives `""`.
pub(crate) fn selector_string(sel: Option<&Value>) -> Result<String, BadSelector> {
    let Some(sel) = sel.filter(|s| !s.is_null()) else { return Ok(String::new()) };
    let mut reqs: Vec<(String, String)> = Vec::new();
    if let Some(labels) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            reqs.push((k.clone(), format!("{k}={}", scalar(v))));
        }
    }
    for expr in sel.get("matchExpressions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        let key = text(expr, &["key"]);
        let mut values: Vec<String> = list(expr, &["values"]).iter().map(scalar).collect();
        let rendered = match text(expr, &["operator"]) {
            op @ ("In" | "NotIn") => {
                if values.is_empty() {
                    return Err(BadSelector);
                }
                values.sort();
                let word = if op == "In" { "in" } else { "notin" };
                format!("{key} {word} ({})", values.join(","))
            }
            "Exists" if values.is_empty() => key.to_string(),
            "DoesNotExist" if values.is_empty() => format!("!{key}"),
            _ => return Err(BadSelector),
        };
        reqs.push((key.to_string(), rendered));
    }
    // Requirements are ordered by key; the sort is stable so equal keys keep their order.
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(reqs.into_iter().map(|(_, r)| r).collect::<Vec<_>>().join(","))
}

/// A `LabelSelector` for display: `<none>` when it selects by nothing, `<error>` when it
/// is malformed.
pub(crate) fn format_label_selector(sel: Option<&Value>) -> String {
    match selector_string(sel) {
        Ok(s) if s.is_empty() => "<none>".to_string(),
        Ok(s) => s,
        Err(BadSelector) => "<error>".to_string(),
    }
}

/// Container names and images, each comma-separated in container order.
pub(crate) fn containers_and_images(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| text(c, &["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// `True`, `False`, or `<unset>` for a `*bool`.
pub(crate) fn bool_ptr(b: Option<bool>) -> String {
    match b {
        Some(true) => "True".to_string(),
        Some(false) => "False".to_string(),
        None => "<unset>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::Duration;

    #[test]
    fn human_durations_keep_two_or_three_figures() {
        let cases: &[(i64, &str)] = &[
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (45, "45s"),
            (119, "119s"),
            (120, "2m"),
            (310, "5m10s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 20 * 60 + 5, "3h20m"),
            (8 * 3600, "8h"),
            (47 * 3600 + 3599, "47h"),
            (48 * 3600, "2d"),
            (51 * 3600, "2d3h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (775 * 86400, "2y45d"),
            (5 * 365 * 86400, "5y"),
            (9 * 365 * 86400 + 100 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::seconds(*secs)), *want, "{secs}s");
        }
        // Sub-second parts are dropped, not rounded.
        assert_eq!(human_duration(Duration::milliseconds(119_999)), "119s");
        assert_eq!(human_duration(Duration::milliseconds(-1_999)), "0s");
    }

    #[test]
    fn ages_come_from_the_creation_timestamp() {
        let now = OffsetDateTime::parse("2025-03-01T12:00:00Z", &Rfc3339).unwrap();
        let o = json!({"metadata": {"creationTimestamp": "2025-03-01T11:54:50Z"}});
        assert_eq!(age(&o, now), "5m10s");
        assert_eq!(age(&json!({"metadata": {}}), now), "<unknown>");
        let micro = json!({"t": "2025-03-01T11:59:59.500000Z"});
        assert_eq!(since(timestamp(&micro, &["t"]), now), "0s");
    }

    #[test]
    fn labels_and_selectors() {
        assert_eq!(format_labels(Some(&json!({"b": "2", "a": "1"}))), "a=1,b=2");
        assert_eq!(format_labels(Some(&json!({}))), "<none>");
        assert_eq!(format_labels(None), "<none>");
        let sel = json!({
            "matchLabels": {"tier": "web", "app": "x"},
            "matchExpressions": [
                {"key": "env", "operator": "In", "values": ["prod", "dev"]},
                {"key": "zz", "operator": "DoesNotExist"},
                {"key": "canary", "operator": "Exists"},
                {"key": "b", "operator": "NotIn", "values": ["q"]},
            ],
        });
        assert_eq!(format_label_selector(Some(&sel)), "app=x,b notin (q),canary,env in (dev,prod),tier=web,!zz");
        assert_eq!(format_label_selector(Some(&json!({}))), "<none>");
        assert_eq!(format_label_selector(None), "<none>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]});
        assert_eq!(format_label_selector(Some(&bad)), "<error>");
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]});
        assert_eq!(selector_string(Some(&bad)), Err(BadSelector));
    }

    #[test]
    fn created_at_is_utc_seconds() {
        let t = OffsetDateTime::parse("2025-03-01T13:04:05.25+01:00", &Rfc3339).ok();
        assert_eq!(rfc3339_seconds(t), "2025-03-01T12:04:05Z");
        assert_eq!(rfc3339_seconds(None), "0001-01-01T00:00:00Z");
    }
}
