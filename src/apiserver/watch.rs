//! Watches over HTTP: a stream of `{"type": ..., "object": ...}` lines, as upstream sends
//! them, from the store's watch of a resource's key range.
//!
//! An object that stops matching the client's selectors is reported DELETED, one that starts
//! matching ADDED, as upstream's watch cache does. Bookmarks carry the revision the watch has
//! caught up with, so clients can resume without relisting.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};

use super::registry::{parse_rv, ObjectFilter, ResourceType};
use super::status::ApiError;
use crate::store::{Event, EventKind, KeyRange, RangeOptions, Revision, Store, StoreError, WatchItem};

/// What a watch request asked for.
#[derive(Clone, Default)]
pub struct WatchRequest {
    pub resource_version: Option<String>,
    pub allow_bookmarks: bool,
    pub send_initial_events: bool,
    pub timeout: Option<Duration>,
    pub filter: Option<ObjectFilter>,
    /// Turns each event's object into what the client asked for (a Table row).
    pub render: Option<Render>,
}

/// See [`WatchRequest::render`].
pub type Render = Arc<dyn Fn(&Value) -> Value + Send + Sync>;

/// How often a watch with bookmarks asks the store how far it has caught up.
const BOOKMARK_EVERY: Duration = Duration::from_secs(10);

/// An event line, its object rendered as the client asked.
fn event_line(kind: &str, object: &Value, render: Option<&Render>) -> Bytes {
    match render {
        Some(r) => line(kind, &r(object)),
        None => line(kind, object),
    }
}

fn line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(super::encode::watch_event(kind, object))
}

fn error_line(e: &ApiError) -> Bytes {
    line("ERROR", &e.to_status())
}

fn bookmark(rt: &ResourceType, rev: Revision, initial_end: bool) -> Bytes {
    let mut meta = json!({ "resourceVersion": rev.0.to_string() });
    if initial_end {
        meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    line("BOOKMARK", &json!({ "kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta }))
}

/// Translates one store event into the watch line the client should see, if any.
fn translate(
    rt: &ResourceType,
    ev: &Event,
    filter: Option<&(dyn Fn(&Value) -> bool + Send + Sync)>,
    render: Option<&Render>,
) -> Option<Bytes> {
    let rev = ev.kv.mod_revision;
    let prev = ev.prev_kv.as_ref().and_then(|p| rt.decode(&p.value, p.mod_revision).ok());
    let passes = |o: &Value| filter.is_none_or(|f| f(o));
    match ev.kind {
        EventKind::Put => {
            let obj = rt.decode(&ev.kv.value, rev).ok()?;
            let now = passes(&obj);
            let before = prev.as_ref().is_some_and(&passes);
            match (prev.is_some(), before, now) {
                (false, _, true) => Some(event_line("ADDED", &obj, render)),
                (true, true, true) => Some(event_line("MODIFIED", &obj, render)),
                (true, false, true) => Some(event_line("ADDED", &obj, render)),
                (true, true, false) => Some(event_line("DELETED", &obj, render)),
                _ => None,
            }
        }
        EventKind::Delete => {
            let mut obj = prev?;
            if !passes(&obj) {
                return None;
            }
            obj["metadata"]["resourceVersion"] = json!(rev.0.to_string());
            Some(event_line("DELETED", &obj, render))
        }
    }
}

/// Starts a watch; the stream ends at the timeout, when the store closes, or with an ERROR
/// line (410 Expired when the requested revision is compacted).
pub async fn start(
    store: Arc<dyn Store>,
    rt: Arc<ResourceType>,
    range: KeyRange,
    req: WatchRequest,
) -> Result<futures::stream::BoxStream<'static, Result<Bytes, std::convert::Infallible>>, ApiError> {
    let rv = req.resource_version.clone().unwrap_or_default();
    // Unset or "0": the current state as ADDED events first, then changes after it.
    let (initial, start) = if rv.is_empty() || rv == "0" || req.send_initial_events {
        let page = store.range(&range, RangeOptions::default()).await?;
        let mut lines = Vec::new();
        for kv in &page.kvs {
            let obj = rt.decode(&kv.value, kv.mod_revision)?;
            if req.filter.as_ref().is_none_or(|f| f(&obj)) {
                lines.push(event_line("ADDED", &obj, req.render.as_ref()));
            }
        }
        if req.send_initial_events && req.allow_bookmarks {
            lines.push(bookmark(&rt, page.revision, true));
        }
        (lines, page.revision.next())
    } else {
        (Vec::new(), parse_rv(&rv)?.next())
    };
    let watch = match store.watch(range, Some(start)).await {
        Ok(w) => w,
        Err(StoreError::Compacted { requested, compacted }) => {
            let e = ApiError::expired(format!("too old resource version: {} ({})", requested.0 - 1, compacted.0));
            return Ok(futures::stream::iter(vec![Ok(error_line(&e))]).boxed());
        }
        Err(e) => return Err(e.into()),
    };
    let progress = watch.progress_handle();
    let events = watch.stream;
    let deadline =
        tokio::time::Instant::now() + req.timeout.unwrap_or(Duration::from_secs(1800 + fastrand::u64(0..1800)));
    let filter = req.filter.clone();
    let render = req.render.clone();
    let allow_bookmarks = req.allow_bookmarks;
    struct St {
        events: crate::store::WatchStream,
        pending: std::collections::VecDeque<Bytes>,
        tick: tokio::time::Interval,
        done: bool,
    }
    let mut tick = tokio::time::interval(BOOKMARK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let st = St { events, pending: initial.into(), tick, done: false };
    let stream = futures::stream::unfold(st, move |mut st| {
        let filter = filter.clone();
        let render = render.clone();
        let rt = rt.clone();
        let progress = progress.clone();
        async move {
            loop {
                if let Some(b) = st.pending.pop_front() {
                    return Some((Ok(b), st));
                }
                if st.done {
                    return None;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return None,
                    _ = st.tick.tick(), if allow_bookmarks => progress(),
                    item = st.events.next() => match item {
                        Some(Ok(WatchItem::Events(evs))) => {
                            for ev in &evs {
                                if let Some(l) = translate(&rt, ev, filter.as_deref(), render.as_ref()) {
                                    st.pending.push_back(l);
                                }
                            }
                        }
                        Some(Ok(WatchItem::Progress(rev))) => {
                            if allow_bookmarks {
                                st.pending.push_back(bookmark(&rt, rev, false));
                            }
                        }
                        Some(Err(StoreError::Compacted { requested, compacted })) => {
                            let e = ApiError::expired(format!("too old resource version: {} ({})", requested.0 - 1, compacted.0));
                            st.pending.push_back(error_line(&e));
                            st.done = true;
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "watch ended");
                            st.done = true;
                        }
                        None => st.done = true,
                    }
                }
            }
        }
    });
    Ok(stream.boxed())
}
