//! The Watch service: one bidirectional stream multiplexes any number of watches.
//!
//! A session task reads the client's requests (create, cancel, progress) and owns the
//! table of watches; each watch runs in its own task that turns the store's watch into
//! responses on the shared output channel, so a watch's events, its progress notifications
//! and its end are sent in order. Creation answers `created` before the watch's task starts,
//! and a cancel stops the task before answering `canceled`, so no event follows it.
//!
//! Progress follows etcd 3.5: a client-wide progress request is answered with one response
//! with watch id -1 and a header revision up to which every watch of the stream has sent
//! all its events (etcd answers only when all are synced; here the answer waits until they
//! are). A watch created with `progress_notify` gets its own progress response when it sent
//! no events for a whole interval. A watch the store cut off for lagging is re-opened where
//! the store says, invisibly to the client.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{header, msg, pb_kv, Api};
use crate::etcdproto::{PbEvent, PbWatchRequest, PbWatchRequestUnion, PbWatchResponse, PbWatchService};
use crate::store::{Event, EventKind, KeyRange, Revision, Store, StoreError, Watch, WatchItem};

/// Responses buffered per stream before watch tasks wait for the client.
const OUT_BUFFER: usize = 256;
/// etcd's default `--max-request-bytes`, the size a fragmented response is cut at.
const FRAGMENT_BYTES: usize = 1536 * 1024;
/// The watch id of a failed create, and of a progress response for the whole stream.
const INVALID_WATCH_ID: i64 = -1;
/// etcd's `WatchCreateRequest.FilterType` values.
const FILTER_NOPUT: i32 = 0;
const FILTER_NODELETE: i32 = 1;

const EMPTY_RANGE: &str = "mvcc: watcher range is empty";
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";

type Out = mpsc::Sender<Result<PbWatchResponse, Status>>;

/// The client stopped reading: the stream is over.
struct Gone;

pub(crate) struct WatchService {
    api: Api,
}

impl WatchService {
    pub(crate) fn new(api: Api) -> Self {
        WatchService { api }
    }
}

#[tonic::async_trait]
impl PbWatchService for WatchService {
    type WatchStream = ReceiverStream<Result<PbWatchResponse, Status>>;

    async fn watch(&self, request: Request<Streaming<PbWatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let (out, rx) = mpsc::channel(OUT_BUFFER);
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let session = Session {
            api: self.api.clone(),
            out,
            watches: HashMap::new(),
            next_auto_id: 0,
            next_serial: 0,
            reports,
            round: ProgressRound::default(),
        };
        tokio::spawn(session.run(request.into_inner(), reports_rx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// A watch as the session knows it. `serial` tells apart watches that reuse an id.
type WatchKey = (i64, u64);

struct Handle {
    serial: u64,
    task: JoinHandle<()>,
    /// Asks the task for its progress on behalf of a client-wide progress request.
    progress: mpsc::UnboundedSender<()>,
}

/// What watch tasks tell their session.
#[derive(Debug)]
enum Report {
    /// Every event of the watch up to `revision` has been sent.
    Progress { key: WatchKey, revision: Revision },
    /// The watch ended by itself (compaction, store error) and said so to the client.
    Ended { key: WatchKey },
}

/// A client-wide progress request being answered: the watches still to report and the
/// lowest revision reported so far.
#[derive(Debug, Default)]
struct ProgressRound {
    waiting: Option<HashSet<WatchKey>>,
    lowest: Option<Revision>,
    /// Another request came while this round ran: start one more when it completes, so
    /// the client gets a revision at least as new as its request.
    again: bool,
}

impl ProgressRound {
    fn active(&self) -> bool {
        self.waiting.is_some()
    }

    fn waiting(&self) -> Vec<WatchKey> {
        self.waiting.iter().flatten().copied().collect()
    }

    fn begin(&mut self, watches: impl IntoIterator<Item = WatchKey>) {
        self.waiting = Some(watches.into_iter().collect());
        self.lowest = None;
    }

    /// A watch created during the round must be synced too before the round answers.
    fn join(&mut self, key: WatchKey) {
        if let Some(w) = &mut self.waiting {
            w.insert(key);
        }
    }

    fn report(&mut self, key: WatchKey, revision: Revision) {
        if let Some(w) = &mut self.waiting {
            if w.remove(&key) {
                self.lowest = Some(self.lowest.map_or(revision, |l| l.min(revision)));
            }
        }
    }

    fn forget(&mut self, key: WatchKey) {
        if let Some(w) = &mut self.waiting {
            w.remove(&key);
        }
    }

    /// When every watch has reported, ends the round and returns the revision to announce
    /// (`None` inside when all its watches went away instead).
    fn complete(&mut self) -> Option<Option<Revision>> {
        match &self.waiting {
            Some(w) if w.is_empty() => {
                self.waiting = None;
                Some(self.lowest.take())
            }
            _ => None,
        }
    }
}

/// A create request, taken apart.
struct CreateSpec {
    key: Vec<u8>,
    range_end: Vec<u8>,
    start_revision: i64,
    progress_notify: bool,
    filters: Vec<i32>,
    prev_kv: bool,
    watch_id: i64,
    fragment: bool,
}

struct Session {
    api: Api,
    out: Out,
    watches: HashMap<i64, Handle>,
    next_auto_id: i64,
    next_serial: u64,
    reports: mpsc::UnboundedSender<Report>,
    round: ProgressRound,
}

impl Session {
    async fn run(mut self, mut input: Streaming<PbWatchRequest>, mut reports: mpsc::UnboundedReceiver<Report>) {
        let mut stop = self.api.stop.clone();
        let mut input_open = true;
        loop {
            let step = tokio::select! {
                req = input.message(), if input_open => match req {
                    Ok(Some(req)) => self.handle(req).await,
                    // A half-closed stream still delivers events, as in etcd.
                    Ok(None) => {
                        input_open = false;
                        Ok(())
                    }
                    Err(_) => Err(Gone),
                },
                Some(report) = reports.recv() => self.on_report(report).await,
                _ = self.out.closed() => Err(Gone),
                _ = stop.wait() => {
                    let _ = self.out.send(Err(Status::unavailable(msg::STOPPED))).await;
                    Err(Gone)
                }
            };
            if step.is_err() {
                break;
            }
        }
        for (_, h) in self.watches.drain() {
            h.task.abort();
        }
    }

    async fn send(&self, resp: PbWatchResponse) -> Result<(), Gone> {
        self.out.send(Ok(resp)).await.map_err(|_| Gone)
    }

    async fn now(&self) -> Revision {
        match self.api.store.current_revision().await {
            Ok(rev) => rev,
            Err(err) => {
                tracing::warn!(%err, "reading the current revision for a watch response");
                Revision(0)
            }
        }
    }

    async fn handle(&mut self, req: PbWatchRequest) -> Result<(), Gone> {
        match req.request_union {
            Some(PbWatchRequestUnion::CreateRequest(c)) => {
                let spec = CreateSpec {
                    key: c.key,
                    range_end: c.range_end,
                    start_revision: c.start_revision,
                    progress_notify: c.progress_notify,
                    filters: c.filters,
                    prev_kv: c.prev_kv,
                    watch_id: c.watch_id,
                    fragment: c.fragment,
                };
                self.create(spec).await
            }
            Some(PbWatchRequestUnion::CancelRequest(c)) => self.cancel(c.watch_id).await,
            Some(PbWatchRequestUnion::ProgressRequest(_)) => {
                if !self.round.active() {
                    self.begin_round();
                } else {
                    self.round.again = true;
                    // A store may drop a progress request made while a watch was catching
                    // up (etcd does); the client asking again is the cue to ask again.
                    for key in self.round.waiting() {
                        if let Some(h) = self.watches.get(&key.0) {
                            let _ = h.progress.send(());
                        }
                    }
                }
                Ok(())
            }
            // etcd ignores requests it does not understand rather than ending the stream.
            None => Ok(()),
        }
    }

    async fn create(&mut self, spec: CreateSpec) -> Result<(), Gone> {
        let store = self.api.store.clone();
        let current = self.now().await;
        let refuse = |reason: &str| PbWatchResponse {
            header: header(current),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        if spec.start_revision < 0 {
            return self.send(refuse(msg::COMPACTED)).await;
        }
        // As in etcd, an empty key means the smallest key.
        let key = if spec.key.is_empty() { vec![0] } else { spec.key };
        let range = KeyRange::from_etcd(&key, &spec.range_end);
        if range.is_empty() {
            return self.send(refuse(EMPTY_RANGE)).await;
        }
        let id = if spec.watch_id != 0 {
            if self.watches.contains_key(&spec.watch_id) {
                return self.send(refuse(DUPLICATE_ID)).await;
            }
            spec.watch_id
        } else {
            while self.watches.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            self.next_auto_id += 1;
            self.next_auto_id - 1
        };
        let start = if spec.start_revision > 0 { Revision(spec.start_revision) } else { current.next() };
        let created = PbWatchResponse { header: header(current), watch_id: id, created: true, ..Default::default() };
        let watch = match open_watch(&*store, &range, start).await {
            Ok(watch) => watch,
            Err(StoreError::Compacted { compacted, .. }) => {
                self.send(created).await?;
                return self.send(compacted_response(id, compacted, current)).await;
            }
            Err(err) => {
                tracing::warn!(%err, "opening a watch");
                return self.send(refuse(&format!("etcdserver: {err}"))).await;
            }
        };
        self.send(created).await?;

        let serial = self.next_serial;
        self.next_serial += 1;
        let (progress, progress_rx) = mpsc::unbounded_channel();
        let task = WatchTask {
            emitter: Emitter {
                id,
                start,
                prev_kv: spec.prev_kv,
                no_put: spec.filters.contains(&FILTER_NOPUT),
                no_delete: spec.filters.contains(&FILTER_NODELETE),
                fragment: spec.fragment,
                out: self.out.clone(),
            },
            serial,
            range,
            progress_every: spec.progress_notify.then_some(self.api.opts.progress_notify_interval),
            store,
            progress: progress_rx,
            reports: self.reports.clone(),
        };
        let task = tokio::spawn(task.run(watch));
        if self.round.active() {
            self.round.join((id, serial));
            let _ = progress.send(());
        }
        self.watches.insert(id, Handle { serial, task, progress });
        Ok(())
    }

    async fn cancel(&mut self, id: i64) -> Result<(), Gone> {
        // Canceling a watch that does not exist is silently ignored, as in etcd.
        let Some(h) = self.watches.remove(&id) else {
            return Ok(());
        };
        h.task.abort();
        let _ = h.task.await;
        self.round.forget((id, h.serial));
        let current = self.now().await;
        self.send(PbWatchResponse { header: header(current), watch_id: id, canceled: true, ..Default::default() })
            .await?;
        self.finish_round().await
    }

    fn begin_round(&mut self) {
        // With no watches etcd sends nothing: there is nobody to report progress to.
        if self.watches.is_empty() {
            return;
        }
        self.round.begin(self.watches.iter().map(|(id, h)| (*id, h.serial)));
        for h in self.watches.values() {
            let _ = h.progress.send(());
        }
    }

    async fn finish_round(&mut self) -> Result<(), Gone> {
        if let Some(lowest) = self.round.complete() {
            if let Some(revision) = lowest {
                self.send(progress_response(INVALID_WATCH_ID, revision)).await?;
            }
            if std::mem::take(&mut self.round.again) {
                self.begin_round();
            }
        }
        Ok(())
    }

    async fn on_report(&mut self, report: Report) -> Result<(), Gone> {
        match report {
            Report::Progress { key, revision } => self.round.report(key, revision),
            Report::Ended { key } => {
                if self.watches.get(&key.0).is_some_and(|h| h.serial == key.1) {
                    self.watches.remove(&key.0);
                }
                self.round.forget(key);
            }
        }
        self.finish_round().await
    }
}

/// Opens a store watch from `start`. A start beyond the store's revision is legal in
/// etcd (the watch waits for it): watch from the current revision instead, and let the
/// [`Emitter`] drop what comes before `start`.
async fn open_watch(store: &dyn Store, range: &KeyRange, start: Revision) -> Result<Watch, StoreError> {
    match store.watch(range.clone(), Some(start)).await {
        Err(StoreError::FutureRevision { current, .. }) => {
            store.watch(range.clone(), Some(current.max(Revision(1)))).await
        }
        other => other,
    }
}

fn progress_response(watch_id: i64, revision: Revision) -> PbWatchResponse {
    PbWatchResponse { header: header(revision), watch_id, ..Default::default() }
}

fn compacted_response(watch_id: i64, compacted: Revision, current: Revision) -> PbWatchResponse {
    PbWatchResponse {
        header: header(current),
        watch_id,
        canceled: true,
        compact_revision: compacted.0,
        cancel_reason: msg::COMPACTED.to_string(),
        ..Default::default()
    }
}

/// Turns one watch's events into its responses.
struct Emitter {
    id: i64,
    /// Events before this revision are not the client's (see [`open_watch`]).
    start: Revision,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    fragment: bool,
    out: Out,
}

impl Emitter {
    /// The responses for one batch of events: none when every event was filtered out.
    fn responses(&self, events: Vec<Event>) -> Vec<PbWatchResponse> {
        let Some(last) = events.last().map(Event::revision) else {
            return Vec::new();
        };
        let events: Vec<PbEvent> = events
            .into_iter()
            .filter(|ev| ev.revision() >= self.start)
            .filter(|ev| match ev.kind {
                EventKind::Put => !self.no_put,
                EventKind::Delete => !self.no_delete,
            })
            .map(|ev| PbEvent {
                r#type: match ev.kind {
                    EventKind::Put => 0,
                    EventKind::Delete => 1,
                },
                kv: Some(pb_kv(ev.kv)),
                prev_kv: if self.prev_kv { ev.prev_kv.map(pb_kv) } else { None },
            })
            .collect();
        if events.is_empty() {
            return Vec::new();
        }
        let resp = PbWatchResponse { header: header(last), watch_id: self.id, events, ..Default::default() };
        if self.fragment {
            fragments(resp, FRAGMENT_BYTES)
        } else {
            vec![resp]
        }
    }

    async fn send(&self, resp: PbWatchResponse) -> Result<(), Gone> {
        self.out.send(Ok(resp)).await.map_err(|_| Gone)
    }
}

/// Splits a response whose encoding reaches `limit` bytes into responses under it (one
/// event may exceed it alone), all but the last marked `fragment`, as etcd does for
/// watches that ask for it.
fn fragments(resp: PbWatchResponse, limit: usize) -> Vec<PbWatchResponse> {
    if resp.encoded_len() < limit || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut shell = resp.clone();
    shell.events = Vec::new();
    shell.fragment = true;
    let base = shell.encoded_len();
    let mut out = Vec::new();
    let mut cur = shell.clone();
    let mut size = base;
    for ev in resp.events {
        let len = prost::encoding::message::encoded_len(11, &ev);
        if !cur.events.is_empty() && size + len >= limit {
            out.push(std::mem::replace(&mut cur, shell.clone()));
            size = base;
        }
        size += len;
        cur.events.push(ev);
    }
    cur.fragment = false;
    out.push(cur);
    out
}

struct WatchTask {
    emitter: Emitter,
    serial: u64,
    range: KeyRange,
    progress_every: Option<Duration>,
    store: Arc<dyn Store>,
    progress: mpsc::UnboundedReceiver<()>,
    reports: mpsc::UnboundedSender<Report>,
}

impl WatchTask {
    async fn run(mut self, mut watch: Watch) {
        let key = (self.emitter.id, self.serial);
        // A client-wide progress request awaits this watch's progress.
        let mut for_stream = false;
        // This watch's own progress notification is due.
        let mut for_self = false;
        // No events were sent since the last progress tick.
        let mut quiet = true;
        let period = self.progress_every.unwrap_or(Duration::from_secs(3600));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = watch.stream.next() => match item {
                    Some(Ok(WatchItem::Events(events))) => {
                        for resp in self.emitter.responses(events) {
                            quiet = false;
                            if self.emitter.send(resp).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Ok(WatchItem::Progress(revision))) => {
                        // A watch from a future revision is "caught up" with revisions the
                        // store has not reached; etcd never reports progress past its own
                        // revision, and neither do we.
                        let revision = match self.store.current_revision().await {
                            Ok(current) => revision.min(current),
                            Err(err) => return self.end(err).await,
                        };
                        if std::mem::take(&mut for_stream) {
                            let _ = self.reports.send(Report::Progress { key, revision });
                        }
                        if std::mem::take(&mut for_self)
                            && self.emitter.send(progress_response(self.emitter.id, revision)).await.is_err()
                        {
                            return;
                        }
                    }
                    Some(Err(StoreError::WatchLagged { resume_from })) => {
                        tracing::debug!(watch_id = self.emitter.id, rev = %resume_from, "watch lagged; resuming");
                        match open_watch(&*self.store, &self.range, resume_from).await {
                            Ok(resumed) => {
                                watch = resumed;
                                if for_stream || for_self {
                                    watch.request_progress();
                                }
                            }
                            Err(err) => return self.end(err).await,
                        }
                    }
                    Some(Err(err)) => return self.end(err).await,
                    None => return self.end(StoreError::Closed).await,
                },
                asked = self.progress.recv() => match asked {
                    Some(()) => {
                        for_stream = true;
                        watch.request_progress();
                    }
                    None => return,
                },
                _ = ticker.tick(), if self.progress_every.is_some() => {
                    // Asked again even when the last request is unanswered: a store may
                    // drop requests made while the watch was catching up.
                    if quiet {
                        for_self = true;
                        watch.request_progress();
                    }
                    quiet = true;
                }
                _ = self.emitter.out.closed() => return,
            }
        }
    }

    /// Tells the client the watch is over, and why, and the session that it is gone.
    async fn end(self, err: StoreError) {
        let current = self.store.current_revision().await.unwrap_or_default();
        let resp = match err {
            StoreError::Compacted { compacted, .. } => compacted_response(self.emitter.id, compacted, current),
            other => {
                tracing::warn!(watch_id = self.emitter.id, err = %other, "watch ended by the store");
                PbWatchResponse {
                    header: header(current),
                    watch_id: self.emitter.id,
                    canceled: true,
                    cancel_reason: format!("etcdserver: {other}"),
                    ..Default::default()
                }
            }
        };
        let _ = self.emitter.send(resp).await;
        let _ = self.reports.send(Report::Ended { key: (self.emitter.id, self.serial) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyValue;

    fn emitter(start: i64) -> (Emitter, mpsc::Receiver<Result<PbWatchResponse, Status>>) {
        let (out, rx) = mpsc::channel(1);
        let e = Emitter {
            id: 7,
            start: Revision(start),
            prev_kv: false,
            no_put: false,
            no_delete: false,
            fragment: false,
            out,
        };
        (e, rx)
    }

    fn event(kind: EventKind, key: &str, rev: i64, value_len: usize) -> Event {
        let kv = KeyValue {
            key: key.to_string().into(),
            value: vec![b'x'; value_len].into(),
            create_revision: Revision(2),
            mod_revision: Revision(rev),
            version: 1,
            lease: None,
        };
        Event { kind, prev_kv: Some(KeyValue { mod_revision: Revision(rev - 1), ..kv.clone() }), kv }
    }

    #[test]
    fn events_are_batched_filtered_and_stripped() {
        let (mut e, _rx) = emitter(5);
        let batch = || {
            vec![
                event(EventKind::Put, "a", 4, 1),
                event(EventKind::Put, "a", 5, 1),
                event(EventKind::Delete, "b", 6, 0),
                event(EventKind::Put, "c", 7, 1),
            ]
        };
        let resps = e.responses(batch());
        assert_eq!(resps.len(), 1);
        let r = &resps[0];
        assert_eq!((r.watch_id, r.header.as_ref().map(|h| h.revision)), (7, Some(7)));
        let revs: Vec<i64> = r.events.iter().map(|ev| ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)).collect();
        assert_eq!(revs, [5, 6, 7], "events before the start revision are dropped");
        assert!(r.events.iter().all(|ev| ev.prev_kv.is_none()), "prev_kv only when asked");
        assert_eq!(r.events[1].r#type, 1);

        e.prev_kv = true;
        e.no_put = true;
        let resps = e.responses(batch());
        assert_eq!(resps[0].events.len(), 1);
        assert_eq!(resps[0].events[0].r#type, 1);
        assert!(resps[0].events[0].prev_kv.is_some());

        e.no_put = false;
        e.no_delete = true;
        assert_eq!(e.responses(batch())[0].events.len(), 2);
        assert!(e.responses(vec![event(EventKind::Delete, "b", 9, 0)]).is_empty());
        assert!(e.responses(Vec::new()).is_empty());
    }

    #[test]
    fn large_responses_fragment_only_when_asked() {
        let (mut e, _rx) = emitter(0);
        let big: Vec<Event> = (0..5).map(|i| event(EventKind::Put, &format!("k{i}"), 10 + i, 700 * 1024)).collect();
        assert_eq!(e.responses(big.clone()).len(), 1);
        e.fragment = true;
        let parts = e.responses(big);
        assert!(parts.len() >= 3, "{} parts", parts.len());
        let flags: Vec<bool> = parts.iter().map(|p| p.fragment).collect();
        assert!(flags[..flags.len() - 1].iter().all(|f| *f) && !flags[flags.len() - 1], "{flags:?}");
        let total: usize = parts.iter().map(|p| p.events.len()).sum();
        assert_eq!(total, 5);
        assert!(parts.iter().all(|p| p.encoded_len() < FRAGMENT_BYTES || p.events.len() == 1));
        let small = e.responses(vec![event(EventKind::Put, "a", 3, 10)]);
        assert_eq!((small.len(), small[0].fragment), (1, false));
    }

    #[test]
    fn a_progress_round_reports_the_lowest_revision_once_all_watches_answered() {
        let mut round = ProgressRound::default();
        assert!(!round.active());
        round.begin([(0, 0), (1, 1)]);
        assert!(round.active());
        round.report((1, 1), Revision(12));
        assert_eq!(round.waiting(), [(0, 0)]);
        assert_eq!(round.complete(), None);
        round.join((2, 2));
        round.report((0, 0), Revision(10));
        // A report from a watch outside the round does not count.
        round.report((5, 9), Revision(3));
        assert_eq!(round.complete(), None);
        round.report((2, 2), Revision(11));
        assert_eq!(round.complete(), Some(Some(Revision(10))));
        assert!(!round.active());

        round.begin([(0, 0)]);
        round.forget((0, 0));
        assert_eq!(round.complete(), Some(None));
    }
}
