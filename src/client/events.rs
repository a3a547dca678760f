//! Recording core/v1 Events for k3rs' own components, as upstream's event recorder does:
//! the caller hands over what happened to which object and goes on; a background task
//! writes the Event through the API server. The same event (same object, type, reason,
//! message and source) seen again within ten minutes bumps `count` and `lastTimestamp` of
//! the Event already written instead of making another, and a source that keeps reporting
//! on one object is throttled, so a crash-looping pod cannot flood the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use super::Client;
use crate::domain::time::rfc3339;

/// How many events may wait for the writer; more are dropped (and logged), as upstream's
/// broadcaster does, so recording never blocks a controller.
const QUEUE: usize = 1000;
/// Identical events within this window are folded into one Event with a count.
const DEDUP_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How many distinct events are remembered for folding (upstream's LRU size).
const REMEMBERED: usize = 4096;
/// Per source and object: a burst of this many events, then one per [`REFILL`].
const BURST: f64 = 25.0;
const REFILL: Duration = Duration::from_secs(5 * 60);

/// `type` of an Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// What happened, with the optional parts of an Event.
#[derive(Clone, Debug)]
pub struct NewEvent<'a> {
    pub type_: EventType,
    /// Short, UpperCamelCase, machine-readable (`Scheduled`, `FailedMount`).
    pub reason: &'a str,
    pub message: &'a str,
    /// What the component did or failed to do (`Binding`, `Pulling`).
    pub action: Option<&'a str>,
    /// The part of the object this is about (`spec.containers{web}`).
    pub field_path: Option<&'a str>,
}

/// The time, for folding events within the window; tests move it.
pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

enum Msg {
    Record(Box<Pending>),
    Flush(oneshot::Sender<()>),
}

struct Pending {
    involved: Map<String, Value>,
    type_: EventType,
    reason: String,
    message: String,
    action: Option<String>,
    /// When it was recorded: the writer may get to it later.
    at: OffsetDateTime,
}

/// Records Events about objects on behalf of one component on one host. Cloning is cheap;
/// clones share the queue and the writer.
#[derive(Clone)]
pub struct EventRecorder {
    tx: mpsc::Sender<Msg>,
    clock: Arc<dyn Clock>,
}

impl EventRecorder {
    /// A recorder writing through `client` as `component` (`source.component`,
    /// `reportingComponent`) on `host` (`source.host`, `reportingInstance`). Spawns its
    /// writer on the current tokio runtime; the writer ends when every clone is dropped.
    pub fn new(client: Client, component: &str, host: &str) -> Self {
        Self::with_clock(client, component, host, Arc::new(SystemClock))
    }

    pub fn with_clock(client: Client, component: &str, host: &str, clock: Arc<dyn Clock>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            client,
            component: component.to_string(),
            host: host.to_string(),
            seen: HashMap::new(),
            buckets: HashMap::new(),
            last_nanos: 0,
        };
        tokio::spawn(writer.run(rx));
        EventRecorder { tx, clock }
    }

    /// Records an event about `involved` (an object, or an ObjectReference). Never waits:
    /// when the queue is full the event is dropped and logged.
    pub async fn record(&self, involved: &Value, type_: EventType, reason: &str, message: &str) {
        self.record_event(involved, NewEvent { type_, reason, message, action: None, field_path: None }).await
    }

    /// [`EventRecorder::record`] with an action and a field path.
    pub async fn record_event(&self, involved: &Value, ev: NewEvent<'_>) {
        let mut reference = reference_of(involved);
        if let Some(fp) = ev.field_path {
            reference.insert("fieldPath".into(), json!(fp));
        }
        let pending = Pending {
            involved: reference,
            type_: ev.type_,
            reason: ev.reason.to_string(),
            message: ev.message.to_string(),
            action: ev.action.map(str::to_string),
            at: self.clock.now(),
        };
        if let Err(e) = self.tx.try_send(Msg::Record(Box::new(pending))) {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "the event queue is full",
                mpsc::error::TrySendError::Closed(_) => "the event writer has stopped",
            };
            tracing::warn!(reason = ev.reason, "dropped an event: {why}");
        }
    }

    /// Waits until everything recorded before this call is written (or given up).
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

/// The ObjectReference of an object (or of a reference, passed through).
fn reference_of(involved: &Value) -> Map<String, Value> {
    let mut r = Map::new();
    let meta = involved.get("metadata");
    let field = |k: &str| -> Option<Value> {
        let v = match meta {
            Some(m) => m.get(k),
            None => involved.get(k),
        };
        v.filter(|v| v.as_str().is_some_and(|s| !s.is_empty())).cloned()
    };
    for k in ["apiVersion", "kind"] {
        if let Some(v) = involved.get(k).filter(|v| v.as_str().is_some_and(|s| !s.is_empty())) {
            r.insert(k.into(), v.clone());
        }
    }
    for k in ["namespace", "name", "uid", "resourceVersion"] {
        if let Some(v) = field(k) {
            r.insert(k.into(), v);
        }
    }
    if meta.is_none() {
        if let Some(fp) = involved.get("fieldPath").filter(|v| v.is_string()) {
            r.insert("fieldPath".into(), fp.clone());
        }
    }
    r
}

/// What makes two events the same for folding: source, object, type, reason, message.
#[derive(Clone, PartialEq, Eq, Hash)]
struct EventKey(String);

struct Seen {
    name: String,
    namespace: String,
    count: i64,
    first_timestamp: String,
    last: OffsetDateTime,
}

struct Bucket {
    tokens: f64,
    at: OffsetDateTime,
}

struct Writer {
    client: Client,
    component: String,
    host: String,
    seen: HashMap<EventKey, Seen>,
    buckets: HashMap<String, Bucket>,
    /// The suffix of the last new Event's name: names stay unique when two events of one
    /// object come within a clock tick.
    last_nanos: u128,
}

fn s<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Record(p) => self.write(*p).await,
                Msg::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    }

    /// Whether the source may report on this object now (a token bucket per object).
    fn allowed(&mut self, involved: &Map<String, Value>, now: OffsetDateTime) -> bool {
        let key = [
            &self.component,
            &self.host,
            s(involved, "kind"),
            s(involved, "namespace"),
            s(involved, "name"),
            s(involved, "uid"),
        ]
        .join("\u{0}");
        if self.buckets.len() >= REMEMBERED && !self.buckets.contains_key(&key) {
            // Full buckets carry no information: forget them first.
            let refill = REFILL.as_secs_f64();
            self.buckets.retain(|_, b| b.tokens + (now - b.at).as_seconds_f64() / refill < BURST);
            if self.buckets.len() >= REMEMBERED {
                self.buckets.clear();
            }
        }
        let b = self.buckets.entry(key).or_insert(Bucket { tokens: BURST, at: now });
        let elapsed = (now - b.at).as_seconds_f64().max(0.0);
        b.tokens = (b.tokens + elapsed / REFILL.as_secs_f64()).min(BURST);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    async fn write(&mut self, p: Pending) {
        let now = p.at;
        if !self.allowed(&p.involved, now) {
            tracing::debug!(reason = %p.reason, object = %s(&p.involved, "name"), "event throttled");
            return;
        }
        let key = EventKey(
            [
                self.component.as_str(),
                self.host.as_str(),
                s(&p.involved, "kind"),
                s(&p.involved, "namespace"),
                s(&p.involved, "name"),
                s(&p.involved, "uid"),
                s(&p.involved, "apiVersion"),
                s(&p.involved, "fieldPath"),
                p.type_.as_str(),
                p.reason.as_str(),
                p.message.as_str(),
            ]
            .join("\u{0}"),
        );
        let stamp = rfc3339(now);
        let window = time::Duration::try_from(DEDUP_WINDOW).unwrap_or(time::Duration::minutes(10));
        let repeat = self
            .seen
            .get(&key)
            .filter(|seen| now - seen.last < window)
            .map(|seen| (seen.name.clone(), seen.namespace.clone(), seen.count + 1, seen.first_timestamp.clone()));
        if let Some((name, namespace, count, first)) = repeat {
            let patch = json!({"count": count, "lastTimestamp": stamp, "message": p.message});
            let path = format!("/api/v1/namespaces/{namespace}/events/{name}");
            match self
                .client
                .request(Method::PATCH, &path, "application/strategic-merge-patch+json", Some(&patch))
                .await
            {
                Ok(_) => {
                    self.remember(key, name, namespace, count, first, now);
                    return;
                }
                // Deleted meanwhile (or expired): written anew under the same name, with
                // the count so far, as upstream does.
                Err(e) if e.is_not_found() => {
                    let ev = self.event(&p, &name, &namespace, count, &first, &stamp);
                    if self.create(&namespace, &ev).await {
                        self.remember(key, name, namespace, count, first, now);
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(event = %name, namespace = %namespace, error = %e.message, "could not update an event");
                    return;
                }
            }
        }
        let namespace = match s(&p.involved, "namespace") {
            "" => "default".to_string(),
            ns => ns.to_string(),
        };
        let nanos = (OffsetDateTime::now_utc().unix_timestamp_nanos().max(0) as u128).max(self.last_nanos + 1);
        self.last_nanos = nanos;
        let name = format!("{}.{nanos:x}", s(&p.involved, "name"));
        let ev = self.event(&p, &name, &namespace, 1, &stamp, &stamp);
        if self.create(&namespace, &ev).await {
            self.remember(key, name, namespace, 1, stamp, now);
        }
    }

    fn remember(
        &mut self,
        key: EventKey,
        name: String,
        namespace: String,
        count: i64,
        first_timestamp: String,
        now: OffsetDateTime,
    ) {
        if self.seen.len() >= REMEMBERED && !self.seen.contains_key(&key) {
            let window = time::Duration::try_from(DEDUP_WINDOW).unwrap_or(time::Duration::minutes(10));
            self.seen.retain(|_, s| now - s.last < window);
            if self.seen.len() >= REMEMBERED {
                // Still full of live entries: drop the oldest half rather than grow.
                let mut ages: Vec<OffsetDateTime> = self.seen.values().map(|s| s.last).collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                self.seen.retain(|_, s| s.last > cut);
            }
        }
        self.seen.insert(key, Seen { name, namespace, count, first_timestamp, last: now });
    }

    fn event(&self, p: &Pending, name: &str, namespace: &str, count: i64, first: &str, last: &str) -> Value {
        let mut ev = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": Value::Object(p.involved.clone()),
            "reason": p.reason,
            "message": p.message,
            "source": {"component": self.component, "host": self.host},
            "firstTimestamp": first,
            "lastTimestamp": last,
            "count": count,
            "type": p.type_.as_str(),
            "eventTime": null,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        });
        if let Some(a) = &p.action {
            ev["action"] = json!(a);
        }
        ev
    }

    async fn create(&self, namespace: &str, ev: &Value) -> bool {
        match self.client.post(&format!("/api/v1/namespaces/{namespace}/events"), ev).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(namespace = %namespace, reason = ev["reason"].as_str().unwrap_or(""), error = %e.message, "could not write an event");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::apiserver::{ApiServer, Identity};
    use crate::store::sqlite::{SqliteOptions, SqliteStore};

    struct FakeClock(Mutex<OffsetDateTime>);

    impl FakeClock {
        fn advance(&self, d: Duration) {
            if let Ok(mut t) = self.0.lock() {
                *t += d;
            }
        }
    }

    impl Clock for FakeClock {
        fn now(&self) -> OffsetDateTime {
            self.0.lock().map(|t| *t).unwrap_or_else(|_| OffsetDateTime::now_utc())
        }
    }

    async fn setup() -> (tempfile::TempDir, Client) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap();
        let api = ApiServer::new(Arc::new(store));
        api.bootstrap().await.unwrap();
        let client = Client::new(api, Identity::new("system:kube-scheduler", &["system:authenticated"]));
        (dir, client)
    }

    async fn events(client: &Client, selector: &str) -> Vec<Value> {
        let list = client.get(&format!("/api/v1/events?fieldSelector={selector}")).await.unwrap();
        list["items"].as_array().cloned().unwrap_or_default()
    }

    #[tokio::test]
    async fn an_event_names_its_object_and_source_like_upstream() {
        let (_dir, client) = setup().await;
        let cm =
            client.post("/api/v1/namespaces/default/configmaps", &json!({"metadata": {"name": "web"}})).await.unwrap();
        let rec = EventRecorder::new(client.clone(), "default-scheduler", "node-a");
        rec.record_event(
            &cm,
            NewEvent {
                type_: EventType::Warning,
                reason: "Failed",
                message: "it broke",
                action: Some("Binding"),
                field_path: Some("data"),
            },
        )
        .await;
        rec.flush().await;
        let got = events(&client, "involvedObject.name=web,involvedObject.kind=ConfigMap").await;
        assert_eq!(got.len(), 1, "{got:?}");
        let ev = &got[0];
        let name = ev["metadata"]["name"].as_str().unwrap();
        let (prefix, hex) = name.split_once('.').unwrap();
        assert_eq!(prefix, "web");
        assert!(u128::from_str_radix(hex, 16).is_ok(), "{name}");
        assert_eq!(ev["metadata"]["namespace"], "default");
        assert_eq!(ev["involvedObject"]["uid"], cm["metadata"]["uid"]);
        assert_eq!(ev["involvedObject"]["resourceVersion"], cm["metadata"]["resourceVersion"]);
        assert_eq!(ev["involvedObject"]["apiVersion"], "v1");
        assert_eq!(ev["involvedObject"]["fieldPath"], "data");
        assert_eq!(ev["source"], json!({"component": "default-scheduler", "host": "node-a"}));
        assert_eq!(
            (ev["reportingComponent"].as_str(), ev["reportingInstance"].as_str()),
            (Some("default-scheduler"), Some("node-a"))
        );
        assert_eq!(
            (ev["type"].as_str(), ev["reason"].as_str(), ev["action"].as_str()),
            (Some("Warning"), Some("Failed"), Some("Binding"))
        );
        assert_eq!(ev["count"], 1);
        assert_eq!(ev["firstTimestamp"], ev["lastTimestamp"]);
    }

    #[tokio::test]
    async fn repeats_within_ten_minutes_bump_the_count_and_later_ones_start_anew() {
        let (_dir, client) = setup().await;
        let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let clock = Arc::new(FakeClock(Mutex::new(start)));
        let rec = EventRecorder::with_clock(client.clone(), "kubelet", "n1", clock.clone());
        let pod =
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u-1"}});
        rec.record(&pod, EventType::Normal, "Pulled", "image pulled").await;
        clock.advance(Duration::from_secs(60));
        rec.record(&pod, EventType::Normal, "Pulled", "image pulled").await;
        clock.advance(Duration::from_secs(60));
        rec.record(&pod, EventType::Normal, "Pulled", "image pulled").await;
        // A different message is another event.
        rec.record(&pod, EventType::Normal, "Pulled", "other image pulled").await;
        rec.flush().await;
        let mut got = events(&client, "involvedObject.uid=u-1").await;
        got.sort_by_key(|e| e["count"].as_i64());
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[1]["count"], 3);
        assert_eq!(got[1]["firstTimestamp"], json!(rfc3339(start)));
        assert_eq!(got[1]["lastTimestamp"], json!(rfc3339(start + Duration::from_secs(120))));
        assert_eq!(got[0]["message"], "other image pulled");

        clock.advance(Duration::from_secs(11 * 60));
        rec.record(&pod, EventType::Normal, "Pulled", "image pulled").await;
        rec.flush().await;
        let got = events(&client, "involvedObject.uid=u-1,reason=Pulled").await;
        assert_eq!(got.len(), 3, "past the window a new Event is written: {got:?}");
    }

    #[tokio::test]
    async fn a_deleted_event_is_written_again_with_its_count() {
        let (_dir, client) = setup().await;
        let rec = EventRecorder::new(client.clone(), "c", "h");
        let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "uid": "u-n"}});
        rec.record(&node, EventType::Normal, "Ready", "node is ready").await;
        rec.flush().await;
        let got = events(&client, "involvedObject.name=n1").await;
        assert_eq!(got[0]["metadata"]["namespace"], "default", "cluster-scoped objects' events live in default");
        let name = got[0]["metadata"]["name"].as_str().unwrap().to_string();
        client.delete(&format!("/api/v1/namespaces/default/events/{name}")).await.unwrap();
        rec.record(&node, EventType::Normal, "Ready", "node is ready").await;
        rec.flush().await;
        let got = events(&client, "involvedObject.name=n1").await;
        assert_eq!(got.len(), 1);
        assert_eq!((got[0]["metadata"]["name"].as_str(), got[0]["count"].as_i64()), (Some(name.as_str()), Some(2)));
    }

    #[tokio::test]
    async fn one_object_cannot_flood_the_store() {
        let (_dir, client) = setup().await;
        let start = OffsetDateTime::now_utc();
        let clock = Arc::new(FakeClock(Mutex::new(start)));
        let rec = EventRecorder::with_clock(client.clone(), "c", "h", clock.clone());
        let pod = json!({"kind": "Pod", "metadata": {"name": "loop", "namespace": "default", "uid": "u-l"}});
        for i in 0..40 {
            rec.record(&pod, EventType::Warning, "BackOff", &format!("attempt {i}")).await;
        }
        rec.flush().await;
        assert_eq!(events(&client, "involvedObject.uid=u-l").await.len(), BURST as usize);
        clock.advance(REFILL);
        rec.record(&pod, EventType::Warning, "BackOff", "after a while").await;
        rec.flush().await;
        assert_eq!(events(&client, "involvedObject.uid=u-l").await.len(), BURST as usize + 1);
    }
}
