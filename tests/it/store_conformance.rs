//! The store conformance suite: every case is written once against `Arc<dyn Store>` and runs
//! against both backends, `sqlite_<case>` on a fresh database file and `etcd_<case>` on a
//! fresh etcd 3.4 server (keys under a prefix, to exercise its stripping).
//!
//! Run one backend with `cargo test --test store_conformance sqlite_` (or `etcd_`).

use crate::common;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use k3rs::store::etcd::{EtcdOptions, EtcdStore};
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use k3rs::store::{
    Event, EventKind, KeyRange, KeyValue, LeaseId, RangeOptions, Revision, Store, StoreError, Watch, WatchItem,
    WriteOutcome,
};

use common::etcd::EtcdServer;

/// No single wait in a case may take longer than this.
const STEP: Duration = Duration::from_secs(15);
/// No case may take longer than this.
const CASE: Duration = Duration::from_secs(100);

/// A store under test and what must outlive it (its directory or its etcd server).
struct Backend {
    store: Arc<dyn Store>,
    _keep: Box<dyn Send>,
}

fn sqlite_backend() -> Backend {
    sqlite_backend_with(SqliteOptions::default())
}

fn sqlite_backend_with(opts: SqliteOptions) -> Backend {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let store = SqliteStore::open(&dir.path().join("state.db"), opts).expect("open the SQLite store");
    Backend { store: Arc::new(store), _keep: Box::new(dir) }
}

async fn etcd_backend() -> Backend {
    let server = EtcdServer::start().await;
    let opts =
        EtcdOptions { endpoints: vec![server.endpoint.clone()], prefix: b"/k3rs-test/".to_vec(), ..Default::default() };
    let store = EtcdStore::connect(opts).await.expect("connect to etcd");
    Backend { store: Arc::new(store), _keep: Box::new(server) }
}

async fn run_case<F: Future<Output = ()>>(backend: Backend, case: impl FnOnce(Arc<dyn Store>) -> F) {
    let store = backend.store.clone();
    if tokio::time::timeout(CASE, case(store)).await.is_err() {
        panic!("the case did not finish within {CASE:?}");
    }
    drop(backend);
}

/// One test per (backend, case).
macro_rules! conformance {
    ($($case:ident => $sqlite:ident, $etcd:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $sqlite() {
                run_case(sqlite_backend(), cases::$case).await;
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn $etcd() {
                run_case(etcd_backend().await, cases::$case).await;
            }
        )*
    };
}

conformance! {
    revisions => sqlite_revisions, etcd_revisions;
    write_semantics => sqlite_write_semantics, etcd_write_semantics;
    range => sqlite_range, etcd_range;
    watch_replay_from_every_revision => sqlite_watch_replay_from_every_revision, etcd_watch_replay_from_every_revision;
    ordering_under_concurrent_writers => sqlite_ordering_under_concurrent_writers, etcd_ordering_under_concurrent_writers;
    slow_watcher_does_not_block_writers => sqlite_slow_watcher_does_not_block_writers, etcd_slow_watcher_does_not_block_writers;
    compaction => sqlite_compaction, etcd_compaction;
    leases => sqlite_leases, etcd_leases;
    lease_expiry => sqlite_lease_expiry, etcd_lease_expiry;
    progress => sqlite_progress, etcd_progress;
    status => sqlite_status, etcd_status;
    close => sqlite_close, etcd_close;
    delete_range => sqlite_delete_range, etcd_delete_range;
}

/// The slow-watcher case again with the smallest watch buffer, so the watcher certainly
/// falls behind the writer and must catch up from history.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_slow_watcher_small_buffer() {
    let backend = sqlite_backend_with(SqliteOptions { watch_buffer: 16, ..Default::default() });
    run_case(backend, cases::slow_watcher_does_not_block_writers).await;
}

/// Two etcd stores with different prefixes on one cluster do not see each other's keys.
#[tokio::test(flavor = "multi_thread")]
async fn etcd_prefix_isolation() {
    let server = EtcdServer::start().await;
    let connect = |prefix: &str| {
        EtcdStore::connect(EtcdOptions {
            endpoints: vec![server.endpoint.clone()],
            prefix: prefix.as_bytes().to_vec(),
            ..Default::default()
        })
    };
    let one = connect("/one/").await.expect("connect");
    let two = connect("/two/").await.expect("connect");
    let mut watch_two = two.watch(KeyRange::prefix(""), None).await.expect("watch");
    applied(one.put(b("k"), b("from one"), None).await);
    applied(two.put(b("k"), b("from two"), None).await);
    let lease = one.lease_grant(None, 60).await.expect("grant");
    applied(one.put(b("leased"), b("x"), Some(lease.id)).await);

    let all_one = one.range(&KeyRange::prefix(""), RangeOptions::default()).await.expect("range");
    let keys: Vec<_> = all_one.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b("k"), b("leased")], "keys come back without the prefix, and only ours");
    assert_eq!(one.get(b"k", None).await.expect("get").1.expect("present").value, b("from one"));
    assert_eq!(two.get(b"k", None).await.expect("get").1.expect("present").value, b("from two"));
    let status = one.lease_status(lease.id).await.expect("lease status").expect("lease exists");
    assert_eq!(status.keys, vec![b("leased")]);

    let events = next_events(&mut watch_two, 1).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kv.key, b("k"));
    assert_eq!(events[0].kv.value, b("from two"));
    assert_quiet(&mut watch_two, Duration::from_millis(300)).await;
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The revision and previous value of an applied write; panics on anything else.
#[track_caller]
fn applied(outcome: Result<WriteOutcome, StoreError>) -> (Revision, Option<KeyValue>) {
    match outcome {
        Ok(WriteOutcome::Applied { revision, prev }) => (revision, prev),
        other => panic!("expected the write to apply, got {other:?}"),
    }
}

/// The current value reported by a write whose guard failed; panics on anything else.
#[track_caller]
fn failed(outcome: Result<WriteOutcome, StoreError>) -> Option<KeyValue> {
    match outcome {
        Ok(WriteOutcome::Failed { current }) => current,
        other => panic!("expected the write to fail its guard, got {other:?}"),
    }
}

async fn next_item(watch: &mut Watch) -> Result<WatchItem, StoreError> {
    match tokio::time::timeout(STEP, watch.stream.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("the watch ended"),
        Err(_) => panic!("the watch delivered nothing within {STEP:?}"),
    }
}

/// Reads events (skipping progress) until at least `n` have arrived.
async fn next_events(watch: &mut Watch, n: usize) -> Vec<Event> {
    let mut events = Vec::new();
    while events.len() < n {
        match next_item(watch).await {
            Ok(WatchItem::Events(batch)) => {
                assert!(!batch.is_empty(), "a watch delivered an empty batch");
                events.extend(batch);
            }
            Ok(WatchItem::Progress(_)) => {}
            Err(err) => panic!("the watch failed after {} of {n} events: {err}", events.len()),
        }
    }
    events
}

/// Asserts the watch delivers no event for `wait`.
async fn assert_quiet(watch: &mut Watch, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, watch.stream.next()).await {
            Err(_) => return,
            Ok(Some(Ok(WatchItem::Progress(_)))) => {}
            Ok(other) => panic!("expected a quiet watch, got {other:?}"),
        }
    }
}

/// Asserts that watching `range` from `start` fails as compacted, at creation or as the
/// watch's first item, and returns the error's (requested, compacted).
async fn watch_compacted(store: &dyn Store, range: KeyRange, start: Revision) -> (Revision, Revision) {
    let err = match store.watch(range, Some(start)).await {
        Err(err) => err,
        Ok(mut watch) => match next_item(&mut watch).await {
            Err(err) => err,
            Ok(item) => panic!("a watch from compacted revision {start} delivered {item:?}"),
        },
    };
    match err {
        StoreError::Compacted { requested, compacted } => (requested, compacted),
        other => panic!("a watch from compacted revision {start} failed with {other:?}"),
    }
}

fn deleted_kv(key: &Bytes, revision: Revision) -> KeyValue {
    KeyValue {
        key: key.clone(),
        value: Bytes::new(),
        create_revision: Revision(0),
        mod_revision: revision,
        version: 0,
        lease: None,
    }
}

/// What the store should hold and the events it should have produced, computed
/// independently of the store.
#[derive(Default)]
struct Model {
    revision: Revision,
    kvs: BTreeMap<Bytes, KeyValue>,
    events: Vec<Event>,
}

impl Model {
    fn put(&mut self, key: &Bytes, value: &Bytes, lease: Option<LeaseId>) -> Event {
        self.revision = self.revision.next();
        let prev = self.kvs.get(key).cloned();
        let kv = KeyValue {
            key: key.clone(),
            value: value.clone(),
            create_revision: prev.as_ref().map_or(self.revision, |p| p.create_revision),
            mod_revision: self.revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease,
        };
        self.kvs.insert(key.clone(), kv.clone());
        let event = Event { kind: EventKind::Put, kv, prev_kv: prev };
        self.events.push(event.clone());
        event
    }

    fn delete(&mut self, key: &Bytes) -> Event {
        self.revision = self.revision.next();
        let prev = self.kvs.remove(key);
        assert!(prev.is_some(), "the script deletes an absent key");
        let event = Event { kind: EventKind::Delete, kv: deleted_kv(key, self.revision), prev_kv: prev };
        self.events.push(event.clone());
        event
    }
}

mod cases {
    use super::*;

    pub async fn revisions(store: Arc<dyn Store>) {
        let store = &*store;
        assert_eq!(store.current_revision().await.expect("revision"), Revision(1), "a fresh store is at revision 1");

        let (rev, prev) = applied(store.create(b("a"), b("a1"), None).await);
        assert_eq!((rev, prev), (Revision(2), None), "the first write is revision 2");
        assert_eq!(store.current_revision().await.expect("revision"), Revision(2));
        assert_eq!(applied(store.put(b("a"), b("a2"), None).await).0, Revision(3));
        assert_eq!(applied(store.put(b("b"), b("b1"), None).await).0, Revision(4));

        // Failed guards write nothing and leave the revision alone.
        failed(store.create(b("a"), b("again"), None).await);
        failed(store.update(b("a"), b("stale"), Revision(2), None).await);
        failed(store.update(b("missing"), b("x"), Revision(3), None).await);
        failed(store.delete(b("a"), Some(Revision(2))).await);
        failed(store.delete(b("missing"), None).await);
        assert_eq!(store.current_revision().await.expect("revision"), Revision(4));

        assert_eq!(applied(store.update(b("a"), b("a3"), Revision(3), None).await).0, Revision(5));
        assert_eq!(applied(store.delete(b("b"), None).await).0, Revision(6));
        assert_eq!(store.current_revision().await.expect("revision"), Revision(6));

        // Reads in the past see the values of then.
        let at = |rev| async move { store.get(b"a", Some(Revision(rev))).await.expect("get").1.map(|kv| kv.value) };
        assert_eq!(at(1).await, None);
        assert_eq!(at(2).await, Some(b("a1")));
        assert_eq!(at(3).await, Some(b("a2")));
        assert_eq!(at(4).await, Some(b("a2")));
        assert_eq!(at(5).await, Some(b("a3")));
        let (rev, kv) = store.get(b"b", Some(Revision(5))).await.expect("get");
        assert_eq!(rev, Revision(5), "a read in the past reports the revision it was served at");
        assert_eq!(kv.expect("b existed at 5").value, b("b1"));
        assert_eq!(store.get(b"b", None).await.expect("get"), (Revision(6), None));

        match store.get(b"a", Some(Revision(7))).await {
            Err(StoreError::FutureRevision { requested, current }) => {
                assert_eq!((requested, current), (Revision(7), Revision(6)));
            }
            other => panic!("a read at a future revision gave {other:?}"),
        }
    }

    pub async fn write_semantics(store: Arc<dyn Store>) {
        let store = &*store;
        let k = b("k");
        let (r1, prev) = applied(store.create(k.clone(), b("v1"), None).await);
        assert_eq!(prev, None);
        let kv1 = store.get(&k, None).await.expect("get").1.expect("created");
        assert_eq!(
            kv1,
            KeyValue { key: k.clone(), value: b("v1"), create_revision: r1, mod_revision: r1, version: 1, lease: None }
        );

        // A create of an existing key returns its current value.
        assert_eq!(failed(store.create(k.clone(), b("other"), None).await), Some(kv1.clone()));

        let (r2, prev) = applied(store.update(k.clone(), b("v2"), r1, None).await);
        assert_eq!(prev, Some(kv1.clone()), "an update returns the value it replaced");
        let kv2 = store.get(&k, None).await.expect("get").1.expect("present");
        assert_eq!((kv2.version, kv2.create_revision, kv2.mod_revision), (2, r1, r2));

        // A stale update returns the current value, not the expected one.
        assert_eq!(failed(store.update(k.clone(), b("lost"), r1, None).await), Some(kv2.clone()));
        assert_eq!(failed(store.update(b("absent"), b("x"), r1, None).await), None);
        assert_eq!(store.get(b"absent", None).await.expect("get").1, None, "a failed update creates nothing");

        let (r3, prev) = applied(store.put(k.clone(), b("v3"), None).await);
        assert_eq!(prev, Some(kv2.clone()));
        let kv3 = store.get(&k, None).await.expect("get").1.expect("present");
        assert_eq!((kv3.version, kv3.create_revision, kv3.mod_revision), (3, r1, r3));
        let (rn, prev) = applied(store.put(b("new"), b("n"), None).await);
        assert_eq!(prev, None, "a put of a new key has no previous value");
        let new = store.get(b"new", None).await.expect("get").1.expect("present");
        assert_eq!((new.version, new.create_revision, new.mod_revision), (1, rn, rn));

        // Guarded delete.
        assert_eq!(failed(store.delete(k.clone(), Some(r2)).await), Some(kv3.clone()));
        let (r4, prev) = applied(store.delete(k.clone(), Some(r3)).await);
        assert_eq!(prev, Some(kv3.clone()), "a delete returns the value it removed");
        assert_eq!(store.get(&k, None).await.expect("get"), (r4, None));
        assert_eq!(failed(store.delete(k.clone(), None).await), None);
        assert_eq!(failed(store.delete(k.clone(), Some(r3)).await), None);

        // A re-created key starts over: version 1, a new create revision.
        let (r5, prev) = applied(store.create(k.clone(), b("again"), None).await);
        assert_eq!(prev, None);
        let kv5 = store.get(&k, None).await.expect("get").1.expect("present");
        assert_eq!((kv5.version, kv5.create_revision, kv5.mod_revision), (1, r5, r5));
        // The old incarnation is still readable in the past.
        let old = store.get(&k, Some(r3)).await.expect("get").1.expect("present at r3");
        assert_eq!(old, kv3);

        // An unguarded delete of an existing key applies.
        let (r6, prev) = applied(store.delete(b("new"), None).await);
        assert_eq!(prev, Some(new));
        assert_eq!(r6, r5.next());

        // The lease field.
        let lease = store.lease_grant(None, 60).await.expect("grant");
        applied(store.create(b("leased"), b("x"), Some(lease.id)).await);
        let kv = store.get(b"leased", None).await.expect("get").1.expect("present");
        assert_eq!(kv.lease, Some(lease.id));
        let (_, prev) = applied(store.update(b("leased"), b("y"), kv.mod_revision, None).await);
        assert_eq!(prev.expect("previous value").lease, Some(lease.id));
        assert_eq!(store.get(b"leased", None).await.expect("get").1.expect("present").lease, None);
    }

    pub async fn range(store: Arc<dyn Store>) {
        let store = &*store;
        for key in ["a", "b", "b/1", "b/2", "b/3", "c", "d"] {
            applied(store.put(b(key), b(&format!("{key}-value")), None).await);
        }
        let keys =
            |kvs: &[KeyValue]| kvs.iter().map(|kv| String::from_utf8_lossy(&kv.key).into_owned()).collect::<Vec<_>>();
        let all = RangeOptions::default();

        let res = store.range(&KeyRange::prefix("b/"), all.clone()).await.expect("range");
        assert_eq!(keys(&res.kvs), ["b/1", "b/2", "b/3"]);
        assert_eq!((res.more, res.count), (false, 3));
        assert_eq!(res.kvs[0].value, b("b/1-value"));

        let res = store.range(&KeyRange::key("c"), all.clone()).await.expect("range");
        assert_eq!(keys(&res.kvs), ["c"]);
        assert_eq!(res.count, 1);
        let res = store.range(&KeyRange::key("b/"), all.clone()).await.expect("range");
        assert!(res.kvs.is_empty(), "a single-key range is not a prefix");
        assert_eq!(res.count, 0);

        let res = store.range(&KeyRange::between("b", "c"), all.clone()).await.expect("range");
        assert_eq!(keys(&res.kvs), ["b", "b/1", "b/2", "b/3"], "[b, c) includes b and excludes c");
        let res = store.range(&KeyRange::between("c", "b"), all.clone()).await.expect("range");
        assert!(res.kvs.is_empty() && res.count == 0, "an empty interval holds nothing");

        let from = KeyRange { start: b("b/2"), end: k3rs::store::RangeEnd::Unbounded };
        let res = store.range(&from, all.clone()).await.expect("range");
        assert_eq!(keys(&res.kvs), ["b/2", "b/3", "c", "d"]);

        let everything = KeyRange::prefix("");
        let full = store.range(&everything, all.clone()).await.expect("range");
        assert_eq!(keys(&full.kvs), ["a", "b", "b/1", "b/2", "b/3", "c", "d"]);
        assert_eq!((full.more, full.count), (false, 7));
        assert_eq!(full.revision, store.current_revision().await.expect("revision"));

        // Limits.
        let limited = |n| RangeOptions { limit: Some(n), ..Default::default() };
        let res = store.range(&everything, limited(2)).await.expect("range");
        assert_eq!(keys(&res.kvs), ["a", "b"]);
        assert_eq!((res.more, res.count), (true, 7));
        let res = store.range(&everything, limited(7)).await.expect("range");
        assert_eq!((res.kvs.len(), res.more, res.count), (7, false, 7));
        let res = store.range(&everything, limited(100)).await.expect("range");
        assert_eq!((res.kvs.len(), res.more, res.count), (7, false, 7));
        let res = store.range(&KeyRange::prefix("b/"), limited(1)).await.expect("range");
        assert_eq!(keys(&res.kvs), ["b/1"]);
        assert_eq!((res.more, res.count), (true, 3));

        // Keys only: the same metadata, no values.
        let res =
            store.range(&everything, RangeOptions { keys_only: true, ..Default::default() }).await.expect("range");
        assert_eq!(keys(&res.kvs), keys(&full.kvs));
        for (got, want) in res.kvs.iter().zip(&full.kvs) {
            assert!(got.value.is_empty(), "keys_only returned a value for {:?}", got.key);
            assert_eq!(
                (got.create_revision, got.mod_revision, got.version),
                (want.create_revision, want.mod_revision, want.version)
            );
        }

        // Count only.
        let res =
            store.range(&everything, RangeOptions { count_only: true, ..Default::default() }).await.expect("range");
        assert!(res.kvs.is_empty());
        assert_eq!(res.count, 7);
        let res = store
            .range(&KeyRange::prefix("b"), RangeOptions { count_only: true, ..Default::default() })
            .await
            .expect("range");
        assert_eq!(res.count, 4);

        // Pagination at a fixed revision while writes happen between pages.
        let page = |range: KeyRange, revision: Option<Revision>| async move {
            store.range(&range, RangeOptions { limit: Some(3), revision, ..Default::default() }).await.expect("page")
        };
        let first = page(everything.clone(), None).await;
        assert_eq!(keys(&first.kvs), ["a", "b", "b/1"]);
        assert_eq!((first.more, first.count), (true, 7));
        let at = first.revision;
        applied(store.put(b("b/15"), b("new"), None).await);
        applied(store.delete(b("b/2"), None).await);
        applied(store.put(b("c"), b("changed"), None).await);
        applied(store.put(b("e"), b("new"), None).await);

        let second = page(everything.after(b"b/1"), Some(at)).await;
        assert_eq!(second.revision, at, "a page read in the past is served at that revision");
        assert_eq!(keys(&second.kvs), ["b/2", "b/3", "c"], "the second page must not see later writes");
        assert_eq!(second.kvs[2].value, b("c-value"));
        assert_eq!((second.more, second.count), (true, 4));
        let third = page(everything.after(b"c"), Some(at)).await;
        assert_eq!(keys(&third.kvs), ["d"]);
        assert_eq!((third.more, third.count), (false, 1));

        let now = store.range(&everything, all.clone()).await.expect("range");
        assert_eq!(keys(&now.kvs), ["a", "b", "b/1", "b/15", "b/3", "c", "d", "e"]);
        assert_eq!(now.kvs[5].value, b("changed"));
        assert_eq!(now.revision, Revision(at.0 + 4));
    }

    pub async fn watch_replay_from_every_revision(store: Arc<dyn Store>) {
        let store = &*store;
        let mut model = Model { revision: store.current_revision().await.expect("revision"), ..Default::default() };
        let outside = |model: &mut Model| {
            // A write outside the watched range takes a revision but makes no event there.
            model.revision = model.revision.next();
            model.revision
        };
        let (a, bk, c) = (b("w/a"), b("w/b"), b("w/c"));

        let ev = model.put(&a, &b("a1"), None);
        assert_eq!(applied(store.create(a.clone(), b("a1"), None).await), (ev.kv.mod_revision, None));
        let ev = model.put(&bk, &b("b1"), None);
        assert_eq!(applied(store.create(bk.clone(), b("b1"), None).await), (ev.kv.mod_revision, None));
        let rev = outside(&mut model);
        assert_eq!(applied(store.put(b("x"), b("x1"), None).await).0, rev);
        let expected = model.kvs[&a].mod_revision;
        let ev = model.put(&a, &b("a2"), None);
        assert_eq!(applied(store.update(a.clone(), b("a2"), expected, None).await), (ev.kv.mod_revision, ev.prev_kv));
        let ev = model.put(&c, &b("c1"), None);
        assert_eq!(applied(store.put(c.clone(), b("c1"), None).await), (ev.kv.mod_revision, ev.prev_kv));
        failed(store.create(c.clone(), b("no"), None).await);
        let expected = model.kvs[&bk].mod_revision;
        let ev = model.delete(&bk);
        assert_eq!(applied(store.delete(bk.clone(), Some(expected)).await), (ev.kv.mod_revision, ev.prev_kv));
        let ev = model.put(&a, &b("a3"), None);
        assert_eq!(applied(store.put(a.clone(), b("a3"), None).await), (ev.kv.mod_revision, ev.prev_kv));
        let ev = model.put(&bk, &b("b2"), None);
        assert_eq!(applied(store.create(bk.clone(), b("b2"), None).await), (ev.kv.mod_revision, None));
        let ev = model.delete(&a);
        assert_eq!(applied(store.delete(a.clone(), None).await), (ev.kv.mod_revision, ev.prev_kv));
        let expected = model.kvs[&c].mod_revision;
        let ev = model.put(&c, &b("c2"), None);
        assert_eq!(applied(store.update(c.clone(), b("c2"), expected, None).await), (ev.kv.mod_revision, ev.prev_kv));
        let rev = outside(&mut model);
        assert_eq!(applied(store.put(b("x"), b("x2"), None).await).0, rev);
        let ev = model.put(&bk, &b("b3"), None);
        assert_eq!(applied(store.put(bk.clone(), b("b3"), None).await), (ev.kv.mod_revision, ev.prev_kv));
        let ev = model.put(&a, &b("a4"), None);
        assert_eq!(applied(store.create(a.clone(), b("a4"), None).await), (ev.kv.mod_revision, None));

        let current = store.current_revision().await.expect("revision");
        assert_eq!(current, model.revision);
        let range = KeyRange::prefix("w/");

        // From every revision, history from there on in order, nothing else.
        let mut watches = Vec::new();
        for r in 1..=current.0 + 1 {
            let mut watch = store.watch(range.clone(), Some(Revision(r))).await.expect("watch");
            let want: Vec<Event> = model.events.iter().filter(|e| e.revision().0 >= r).cloned().collect();
            let got = next_events(&mut watch, want.len()).await;
            assert_eq!(got, want, "replay of a watch from revision {r}");
            watches.push((Some(r), watch));
        }
        watches.push((None, store.watch(range.clone(), None).await.expect("watch")));

        // Then live events, the same for every watch.
        let live = model.put(&b("w/live"), &b("l"), None);
        assert_eq!(applied(store.put(b("w/live"), b("l"), None).await).0, live.kv.mod_revision);
        for (start, watch) in &mut watches {
            let got = next_events(watch, 1).await;
            assert_eq!(got, vec![live.clone()], "the live event of a watch from {start:?}");
        }
        for (start, watch) in &mut watches {
            let _ = start;
            assert_quiet(watch, Duration::from_millis(100)).await;
        }
    }

    pub async fn ordering_under_concurrent_writers(store: Arc<dyn Store>) {
        const WRITERS: usize = 8;
        const WRITES: usize = 100;
        let range = KeyRange::prefix("c/");
        let start = store.current_revision().await.expect("revision");
        let early = store.watch(range.clone(), None).await.expect("watch");

        let mut writers = Vec::new();
        for t in 0..WRITERS {
            let store = store.clone();
            writers.push(tokio::spawn(async move {
                let mut done = Vec::with_capacity(WRITES);
                for i in 0..WRITES {
                    let key = b(&format!("c/{t}/{}", i % 10));
                    let value = b(&format!("{t}-{i}"));
                    let (rev, _) = applied(store.put(key.clone(), value.clone(), None).await);
                    done.push((rev, key, value));
                    if i % 10 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                done
            }));
        }

        // Two watches join while the writers run: one live from "now", one from the past.
        let total = (WRITERS * WRITES) as i64;
        let wait_for = |rev: i64| {
            let store = store.clone();
            async move {
                let deadline = Instant::now() + STEP;
                while store.current_revision().await.expect("revision").0 < rev {
                    assert!(Instant::now() < deadline, "the writers did not reach revision {rev}");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        };
        wait_for(start.0 + total / 4).await;
        let middle = store.watch(range.clone(), None).await.expect("watch");
        let middle_floor = store.current_revision().await.expect("revision");
        wait_for(start.0 + total / 2).await;
        let past_start = Revision(start.0 + total / 8);
        let past = store.watch(range.clone(), Some(past_start)).await.expect("watch");

        let mut writes = BTreeMap::new();
        for w in writers {
            for (rev, key, value) in w.await.expect("writer task") {
                assert!(writes.insert(rev, (key, value)).is_none(), "two writes were given revision {rev}");
            }
        }
        let last = store.current_revision().await.expect("revision");
        assert_eq!(last.0, start.0 + total);
        let revs: Vec<i64> = writes.keys().map(|r| r.0).collect();
        assert_eq!(revs, (start.0 + 1..=last.0).collect::<Vec<_>>(), "every write got its own revision");
        let full = store.watch(range.clone(), Some(start.next())).await.expect("watch");

        // The previous write to each key, for prev_kv.
        let mut prev_of = HashMap::new();
        let mut latest: HashMap<Bytes, Revision> = HashMap::new();
        for (rev, (key, _)) in &writes {
            prev_of.insert(*rev, latest.insert(key.clone(), *rev));
        }

        let check = |name: &str, events: Vec<Event>, first: Option<Revision>| {
            let seen: Vec<Revision> = events.iter().map(|e| e.revision()).collect();
            assert!(seen.windows(2).all(|w| w[0] < w[1]), "{name}: revisions not strictly increasing");
            let from = seen.first().copied().unwrap_or(last.next());
            if let Some(first) = first {
                assert_eq!(from, first, "{name}: first event");
            }
            let want: Vec<Revision> = writes.keys().copied().filter(|r| *r >= from).collect();
            assert_eq!(seen, want, "{name}: a gap or a duplicate");
            for e in &events {
                let (key, value) = &writes[&e.revision()];
                assert_eq!(
                    (e.kind, &e.kv.key, &e.kv.value),
                    (EventKind::Put, key, value),
                    "{name}: event {}",
                    e.revision()
                );
                let prev = e.prev_kv.as_ref().map(|p| p.mod_revision);
                assert_eq!(prev, prev_of[&e.revision()], "{name}: prev_kv of event {}", e.revision());
            }
            from
        };
        let read_all = |mut watch: Watch| async move {
            let mut events: Vec<Event> = Vec::new();
            while events.last().is_none_or(|e| e.revision() < last) {
                match next_item(&mut watch).await {
                    Ok(WatchItem::Events(batch)) => events.extend(batch),
                    Ok(WatchItem::Progress(_)) => {}
                    Err(err) => panic!("a watch failed after {} events: {err}", events.len()),
                }
            }
            events
        };
        let (early, middle, past, full) =
            tokio::join!(read_all(early), read_all(middle), read_all(past), read_all(full));
        check("watch started before the writers", early, Some(start.next()));
        let from = check("watch started among the writers", middle, None);
        assert!(from <= middle_floor.next(), "the live watch missed writes made after it started");
        check("watch from a past revision", past, Some(past_start));
        check("watch replaying everything", full, Some(start.next()));
    }

    pub async fn slow_watcher_does_not_block_writers(store: Arc<dyn Store>) {
        const WRITERS: usize = 8;
        const WRITES: usize = 625;
        let range = KeyRange::prefix("s/");
        let start = store.current_revision().await.expect("revision");
        let mut watch = store.watch(range.clone(), None).await.expect("watch");

        let began = Instant::now();
        let mut writers = Vec::new();
        let payload = "x".repeat(200);
        for t in 0..WRITERS {
            let store = store.clone();
            let payload = payload.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..WRITES {
                    let value = b(&format!("{t}-{i}-{payload}"));
                    applied(store.put(b(&format!("s/{t}/{}", i % 50)), value, None).await);
                }
            }));
        }
        let join = futures::future::join_all(writers);
        let results =
            tokio::time::timeout(Duration::from_secs(60), join).await.expect("writers blocked by an idle watcher");
        for r in results {
            r.expect("writer task");
        }
        let took = began.elapsed();
        let last = store.current_revision().await.expect("revision");
        assert_eq!(last.0, start.0 + (WRITERS * WRITES) as i64);

        // Now the watcher reads: everything in order, or a lag error it can resume from.
        let mut next = start.next();
        let mut resumed = 0;
        while next <= last {
            match next_item(&mut watch).await {
                Ok(WatchItem::Events(batch)) => {
                    for e in batch {
                        assert_eq!(e.revision(), next, "gap or duplicate in a slow watcher's events");
                        next = next.next();
                    }
                }
                Ok(WatchItem::Progress(_)) => {}
                Err(StoreError::WatchLagged { resume_from }) => {
                    assert!(
                        resume_from <= next,
                        "lagged watch resumes from {resume_from}, after the undelivered {next}"
                    );
                    assert!(resume_from > start, "lagged watch resumes from {resume_from}, before it started");
                    resumed += 1;
                    assert!(resumed <= 10, "the watch keeps lagging while nothing is written");
                    watch = store.watch(range.clone(), Some(resume_from)).await.expect("resume the watch");
                    // Events before `next` were delivered already: skip them.
                    let mut skip = next.0 - resume_from.0;
                    while skip > 0 {
                        for e in next_events(&mut watch, 1).await {
                            assert!(skip > 0, "resumed watch skipped past {next}");
                            assert_eq!(e.revision(), Revision(next.0 - skip));
                            skip -= 1;
                        }
                    }
                }
                Err(err) => panic!("slow watcher failed: {err}"),
            }
        }
        eprintln!("slow watcher: {} writes took {took:?}; the watcher resumed {resumed} times", WRITERS * WRITES);
    }

    pub async fn compaction(store: Arc<dyn Store>) {
        let store = &*store;
        let base = store.current_revision().await.expect("revision");
        assert_eq!(base, Revision(1));
        for i in 1..=10 {
            applied(store.put(b("k"), b(&format!("v{i}")), None).await); // revisions 2..=11
        }
        applied(store.put(b("other"), b("o"), None).await); // 12
        let range = KeyRange::prefix("k");

        // A watcher that is caught up before the compaction.
        let mut before = store.watch(range.clone(), Some(Revision(2))).await.expect("watch");
        let events = next_events(&mut before, 10).await;
        assert_eq!(events.last().map(|e| e.revision()), Some(Revision(11)));

        store.compact(Revision(6)).await.expect("compact");
        assert_eq!(store.compact_revision().await.expect("compact revision"), Revision(6));
        assert_eq!(store.status().await.expect("status").compact_revision, Revision(6));
        assert_eq!(store.current_revision().await.expect("revision"), Revision(12), "compaction is not a write");

        // Below the compacted revision: gone.
        for rev in [2, 5] {
            match store.get(b"k", Some(Revision(rev))).await {
                Err(StoreError::Compacted { requested, compacted }) => {
                    assert_eq!((requested, compacted), (Revision(rev), Revision(6)));
                }
                other => panic!("a read at compacted revision {rev} gave {other:?}"),
            }
        }
        let res = store
            .range(&range, RangeOptions { revision: Some(Revision(3)), limit: Some(1), ..Default::default() })
            .await;
        assert!(matches!(res, Err(StoreError::Compacted { .. })), "a paginated read at 3 gave {res:?}");
        assert_eq!(watch_compacted(store, range.clone(), Revision(5)).await, (Revision(5), Revision(6)));
        assert!(watch_compacted(store, range.clone(), Revision(2)).await.0 == Revision(2));

        // At the compacted revision: still there.
        let (rev, kv) = store.get(b"k", Some(Revision(6))).await.expect("read at the compacted revision");
        assert_eq!(rev, Revision(6));
        assert_eq!(kv.expect("k at 6").value, b("v5"));
        assert_eq!(store.get(b"k", None).await.expect("get").1.expect("k").value, b("v10"));
        let mut at = store.watch(range.clone(), Some(Revision(6))).await.expect("watch at the compacted revision");
        let events = next_events(&mut at, 6).await;
        let revs: Vec<i64> = events.iter().map(|e| e.revision().0).collect();
        assert_eq!(revs, (6..=11).collect::<Vec<_>>());
        for e in &events {
            assert_eq!(e.kv.value, b(&format!("v{}", e.revision().0 - 1)));
        }
        // The value before revision 6 is compacted away; from 7 on prev_kv is known.
        for e in &events[1..] {
            let prev = e.prev_kv.as_ref().expect("prev_kv above the compacted revision");
            assert_eq!(prev.value, b(&format!("v{}", e.revision().0 - 2)));
        }

        // Compacting again to or below the compacted revision, or beyond the present, fails.
        match store.compact(Revision(6)).await {
            Err(StoreError::Compacted { requested, compacted }) => {
                assert_eq!((requested, compacted), (Revision(6), Revision(6)))
            }
            other => panic!("compacting to the compacted revision gave {other:?}"),
        }
        match store.compact(Revision(4)).await {
            Err(StoreError::Compacted { requested, compacted }) => {
                assert_eq!((requested, compacted), (Revision(4), Revision(6)))
            }
            other => panic!("compacting below the compacted revision gave {other:?}"),
        }
        match store.compact(Revision(100)).await {
            Err(StoreError::FutureRevision { requested, current }) => {
                assert_eq!((requested, current), (Revision(100), Revision(12)))
            }
            other => panic!("compacting to a future revision gave {other:?}"),
        }
        assert_eq!(store.compact_revision().await.expect("compact revision"), Revision(6));

        // Watchers that were caught up keep working, through a second compaction too.
        let (r13, _) = applied(store.put(b("k"), b("v11"), None).await);
        for watch in [&mut before, &mut at] {
            let got = next_events(watch, 1).await;
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].revision(), &got[0].kv.value), (r13, &b("v11")));
            assert_eq!(got[0].prev_kv.as_ref().map(|p| p.value.clone()), Some(b("v10")));
        }
        store.compact(r13).await.expect("compact to the current revision");
        assert_eq!(store.compact_revision().await.expect("compact revision"), r13);
        let (r14, _) = applied(store.delete(b("k"), None).await);
        let got = next_events(&mut before, 1).await;
        assert_eq!((got[0].kind, got[0].revision()), (EventKind::Delete, r14));
        assert_eq!(got[0].prev_kv.as_ref().map(|p| p.value.clone()), Some(b("v11")));
        assert_eq!(watch_compacted(store, range.clone(), Revision(12)).await, (Revision(12), r13));
    }

    pub async fn leases(store: Arc<dyn Store>) {
        let store = &*store;
        let lease = store.lease_grant(None, 60).await.expect("grant");
        assert_ne!(lease.id.0, 0, "0 is never a lease id");
        assert_eq!(lease.ttl, 60);
        let status = store.lease_status(lease.id).await.expect("lease status").expect("granted lease exists");
        assert_eq!((status.id, status.granted_ttl), (lease.id, 60));
        assert!(status.ttl > 50 && status.ttl <= 60, "a fresh lease has {} s left", status.ttl);
        assert!(status.keys.is_empty());

        let chosen = LeaseId(0x7e57_0001);
        let granted = store.lease_grant(Some(chosen), 30).await.expect("grant with an id");
        assert_eq!((granted.id, granted.ttl), (chosen, 30));
        match store.lease_grant(Some(chosen), 30).await {
            Err(StoreError::LeaseExists(id)) => assert_eq!(id, chosen),
            other => panic!("granting an existing lease id gave {other:?}"),
        }
        let mut ids = store.leases().await.expect("leases");
        ids.sort();
        let mut want = vec![lease.id, chosen];
        want.sort();
        assert_eq!(ids, want);

        // Keys attached to a lease.
        applied(store.put(b("l/b"), b("b"), Some(lease.id)).await);
        applied(store.create(b("l/a"), b("a"), Some(lease.id)).await);
        applied(store.put(b("l/c"), b("c"), Some(chosen)).await);
        let status = store.lease_status(lease.id).await.expect("lease status").expect("exists");
        assert_eq!(status.keys, vec![b("l/a"), b("l/b")]);
        assert_eq!(store.lease_keep_alive(lease.id).await.expect("keep alive"), 60);

        // Unknown leases.
        let unknown = LeaseId(0x0dea_d000);
        let rev = store.current_revision().await.expect("revision");
        for outcome in
            [store.put(b("l/x"), b("x"), Some(unknown)).await, store.create(b("l/x"), b("x"), Some(unknown)).await]
        {
            match outcome {
                Err(StoreError::LeaseNotFound(id)) => assert_eq!(id, unknown),
                other => panic!("a write with an unknown lease gave {other:?}"),
            }
        }
        assert_eq!(store.current_revision().await.expect("revision"), rev, "a refused write took a revision");
        assert_eq!(store.get(b"l/x", None).await.expect("get").1, None);
        assert!(matches!(store.lease_keep_alive(unknown).await, Err(StoreError::LeaseNotFound(id)) if id == unknown));
        assert!(matches!(store.lease_revoke(unknown).await, Err(StoreError::LeaseNotFound(id)) if id == unknown));
        assert_eq!(store.lease_status(unknown).await.expect("lease status"), None);

        // A key put again without a lease is detached from it.
        applied(store.put(b("l/b"), b("b2"), None).await);
        assert_eq!(store.get(b"l/b", None).await.expect("get").1.expect("l/b").lease, None);
        let status = store.lease_status(lease.id).await.expect("lease status").expect("exists");
        assert_eq!(status.keys, vec![b("l/a")]);

        // Revoking deletes the attached keys with ordinary delete events.
        let mut watch = store.watch(KeyRange::prefix("l/"), None).await.expect("watch");
        let before = store.current_revision().await.expect("revision");
        store.lease_revoke(lease.id).await.expect("revoke");
        let events = next_events(&mut watch, 1).await;
        assert_eq!(events.len(), 1);
        let ev = &events[0];
        assert_eq!((ev.kind, &ev.kv.key), (EventKind::Delete, &b("l/a")));
        assert!(ev.revision() > before);
        let prev = ev.prev_kv.as_ref().expect("prev_kv of a lease deletion");
        assert_eq!((&prev.value, prev.lease), (&b("a"), Some(lease.id)));
        assert_eq!(store.current_revision().await.expect("revision"), ev.revision());
        assert_eq!(store.get(b"l/a", None).await.expect("get").1, None);
        assert_eq!(store.get(b"l/b", None).await.expect("get").1.expect("detached key stays").value, b("b2"));
        assert_eq!(store.lease_status(lease.id).await.expect("lease status"), None);
        assert_eq!(store.leases().await.expect("leases"), vec![chosen]);
        assert!(matches!(store.lease_revoke(lease.id).await, Err(StoreError::LeaseNotFound(_))));
        assert!(matches!(store.lease_keep_alive(lease.id).await, Err(StoreError::LeaseNotFound(_))));
        assert!(matches!(store.put(b("l/z"), b("z"), Some(lease.id)).await, Err(StoreError::LeaseNotFound(_))));

        // Revoking a lease with several keys deletes them all.
        applied(store.put(b("l/d"), b("d"), Some(chosen)).await);
        store.lease_revoke(chosen).await.expect("revoke");
        let events = next_events(&mut watch, 3).await;
        let puts_then_deletes: Vec<(EventKind, Bytes)> = events.iter().map(|e| (e.kind, e.kv.key.clone())).collect();
        assert_eq!(puts_then_deletes[0], (EventKind::Put, b("l/d")));
        let mut deleted: Vec<Bytes> = puts_then_deletes[1..]
            .iter()
            .map(|(k, key)| {
                assert_eq!(*k, EventKind::Delete);
                key.clone()
            })
            .collect();
        deleted.sort();
        assert_eq!(deleted, vec![b("l/c"), b("l/d")]);
        assert!(events.windows(2).all(|w| w[0].revision() <= w[1].revision()));
        let left = store.range(&KeyRange::prefix("l/"), RangeOptions::default()).await.expect("range");
        assert_eq!(left.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), vec![b("l/b")]);
    }

    /// Expiry with the shortest TTL etcd 3.4 honours: 1 s, with the test server's 100 ms
    /// election timeout (see `common::etcd`).
    pub async fn lease_expiry(store: Arc<dyn Store>) {
        let kept = store.lease_grant(None, 1).await.expect("grant");
        let expiring = store.lease_grant(None, 1).await.expect("grant");
        assert_eq!((kept.ttl, expiring.ttl), (1, 1));
        let mut watch = store.watch(KeyRange::prefix("e/"), None).await.expect("watch");
        applied(store.put(b("e/kept"), b("k"), Some(kept.id)).await);
        let granted = Instant::now();
        applied(store.put(b("e/expiring"), b("x"), Some(expiring.id)).await);
        let puts = next_events(&mut watch, 2).await;
        assert_eq!(puts.len(), 2);

        let keeper = {
            let store = store.clone();
            tokio::spawn(async move {
                loop {
                    assert_eq!(store.lease_keep_alive(kept.id).await.expect("keep alive"), 1);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        };
        let events = next_events(&mut watch, 1).await;
        let waited = granted.elapsed();
        assert_eq!(events.len(), 1, "only the expired lease's key goes");
        let ev = &events[0];
        assert_eq!((ev.kind, &ev.kv.key), (EventKind::Delete, &b("e/expiring")));
        let prev = ev.prev_kv.as_ref().expect("prev_kv of an expiry");
        assert_eq!((&prev.value, prev.lease), (&b("x"), Some(expiring.id)));
        assert!(waited >= Duration::from_millis(900), "a 1 s lease expired after {waited:?}");
        assert_eq!(store.get(b"e/expiring", None).await.expect("get").1, None);
        assert_eq!(store.lease_status(expiring.id).await.expect("lease status"), None);
        assert!(!store.leases().await.expect("leases").contains(&expiring.id));

        // The lease kept alive outlives a few of its TTLs.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!keeper.is_finished(), "keep-alive failed");
        keeper.abort();
        assert!(store.get(b"e/kept", None).await.expect("get").1.is_some(), "a kept-alive lease expired");
        assert!(store.lease_status(kept.id).await.expect("lease status").is_some());
        assert_quiet(&mut watch, Duration::from_millis(100)).await;
    }

    pub async fn progress(store: Arc<dyn Store>) {
        let store = &*store;
        let mut watch = store.watch(KeyRange::prefix("p/"), None).await.expect("watch");
        let mut last = Revision(0);
        for i in 0..5 {
            last = applied(store.put(b(&format!("p/{i}")), b("v"), None).await).0;
        }
        let events = next_events(&mut watch, 5).await;
        assert_eq!(events.last().map(|e| e.revision()), Some(last));

        /// Asks until a progress at or after `at` arrives; no event may come meanwhile.
        async fn progress_at_least(watch: &mut Watch, request: &(dyn Fn() + Send + Sync), at: Revision) -> Revision {
            let deadline = Instant::now() + STEP;
            loop {
                assert!(Instant::now() < deadline, "no progress at or after {at}");
                request();
                match tokio::time::timeout(Duration::from_millis(300), watch.stream.next()).await {
                    Err(_) => continue,
                    Ok(Some(Ok(WatchItem::Progress(rev)))) if rev >= at => return rev,
                    Ok(Some(Ok(WatchItem::Progress(_)))) => continue,
                    Ok(other) => panic!("waiting for progress, got {other:?}"),
                }
            }
        }
        let handle = watch.progress_handle();
        let rev = progress_at_least(&mut watch, &*handle, last).await;
        assert!(rev <= store.current_revision().await.expect("revision"));

        // Writes outside the watched range still move progress forward.
        applied(store.put(b("q/1"), b("v"), None).await);
        let outside = applied(store.put(b("q/2"), b("v"), None).await).0;
        watch.request_progress();
        let rev = progress_at_least(&mut watch, &*handle, outside).await;
        assert!(rev >= outside);

        // After the progress, new events still arrive.
        let (r, _) = applied(store.put(b("p/new"), b("v"), None).await);
        let events = next_events(&mut watch, 1).await;
        assert_eq!(events.iter().map(|e| e.revision()).collect::<Vec<_>>(), vec![r]);
    }

    pub async fn status(store: Arc<dyn Store>) {
        let store = &*store;
        for i in 0..20 {
            applied(store.put(b(&format!("s/{i}")), Bytes::from(vec![b'x'; 1000]), None).await);
        }
        let status = store.status().await.expect("status");
        assert_eq!(status.revision, store.current_revision().await.expect("revision"));
        assert_eq!(status.revision, Revision(21));
        assert_eq!(status.compact_revision, store.compact_revision().await.expect("compact revision"));
        assert!(status.db_size > 0, "db_size {}", status.db_size);
        assert!(
            status.db_size_in_use > 0 && status.db_size_in_use <= status.db_size,
            "db_size_in_use {} of {}",
            status.db_size_in_use,
            status.db_size
        );
        assert!(!status.backend.is_empty());
    }

    /// A range delete of many keys: every key's previous value comes back in key order, every
    /// watcher (live and replaying) sees one delete event per key in key order, at revisions
    /// that never go down and end at the one the delete reports; keys outside stay.
    pub async fn delete_range(store: Arc<dyn Store>) {
        const KEYS: usize = 1500;
        let outside = applied(store.put(b("r0"), b("stays"), None).await).0;
        let mut puts = Vec::new();
        for i in 0..KEYS {
            let store = store.clone();
            puts.push(tokio::spawn(async move {
                let (key, value) = (b(&format!("r/{i:05}")), b(&format!("v{i}")));
                let (rev, _) = applied(store.put(key.clone(), value.clone(), None).await);
                (key, value, rev)
            }));
        }
        let mut written = Vec::with_capacity(KEYS);
        for p in puts {
            written.push(p.await.expect("put task"));
        }
        written.sort();
        let before = store.current_revision().await.expect("revision");
        let prefix_watch = store.watch(KeyRange::prefix("r/"), None).await.expect("watch");
        let all_watch = store.watch(KeyRange::prefix(""), None).await.expect("watch");

        let done = store.delete_range(&KeyRange::prefix("r/")).await.expect("delete the range");
        assert_eq!(done.prev.len(), KEYS);
        for (kv, (key, value, rev)) in done.prev.iter().zip(&written) {
            assert_eq!((&kv.key, &kv.value, kv.mod_revision, kv.version), (key, value, *rev, 1));
        }
        assert!(done.revision > before);
        assert_eq!(store.current_revision().await.expect("revision"), done.revision);
        let left = store.range(&KeyRange::prefix(""), RangeOptions::default()).await.expect("range");
        assert_eq!(
            left.kvs.iter().map(|kv| (kv.key.clone(), kv.mod_revision)).collect::<Vec<_>>(),
            [(b("r0"), outside)]
        );

        let replay = store.watch(KeyRange::prefix("r/"), Some(before.next())).await.expect("watch from history");
        for (name, mut watch) in [("prefix", prefix_watch), ("everything", all_watch), ("replay", replay)] {
            let events = next_events(&mut watch, KEYS).await;
            assert_eq!(events.len(), KEYS, "{name} watcher");
            let mut last = before;
            for (ev, prev) in events.iter().zip(&done.prev) {
                assert_eq!(ev.kind, EventKind::Delete, "{name} watcher");
                assert!(ev.revision() > before && ev.revision() >= last, "{name} watcher: {ev:?} after {last}");
                last = ev.revision();
                assert_eq!(ev.kv, deleted_kv(&prev.key, ev.revision()), "{name} watcher");
                assert_eq!(ev.prev_kv.as_ref(), Some(prev), "{name} watcher");
            }
            assert_eq!(last, done.revision, "{name} watcher");
            assert_quiet(&mut watch, Duration::from_millis(200)).await;
        }
        let mut prefix_watch = store.watch(KeyRange::prefix("r/"), None).await.expect("watch");
        let mut all_watch = store.watch(KeyRange::prefix(""), None).await.expect("watch");

        // Nothing left to delete: no write, the current revision, no event.
        let none = store.delete_range(&KeyRange::prefix("r/")).await.expect("delete an empty range");
        assert_eq!((none.revision, none.prev.len()), (done.revision, 0));
        let none = store.delete_range(&KeyRange::key(b("r/00000"))).await.expect("delete an absent key");
        assert_eq!((none.revision, none.prev.len()), (done.revision, 0));
        assert_quiet(&mut prefix_watch, Duration::from_millis(200)).await;
        // One key through the same call.
        let one = store.delete_range(&KeyRange::key(b("r0"))).await.expect("delete one key");
        assert_eq!((one.prev.len(), one.prev[0].mod_revision), (1, outside));
        assert_eq!(next_events(&mut all_watch, 1).await[0].kv, deleted_kv(&b("r0"), one.revision));
    }

    pub async fn close(store: Arc<dyn Store>) {
        applied(store.put(b("k"), b("v"), None).await);
        store.close().await.expect("close");
        assert!(matches!(store.current_revision().await, Err(StoreError::Closed)));
        assert!(matches!(store.put(b("k"), b("v2"), None).await, Err(StoreError::Closed)));
        assert!(matches!(store.get(b"k", None).await, Err(StoreError::Closed)));
        assert!(matches!(store.watch(KeyRange::prefix(""), None).await, Err(StoreError::Closed)));
    }
}

/// etcd does not report its compacted revision: a store learns a compaction made by another
/// client from the errors it runs into, exactly from a cancelled watch.
#[tokio::test(flavor = "multi_thread")]
async fn etcd_compact_revision_learned_from_errors() {
    let server = EtcdServer::start().await;
    let connect = || EtcdStore::connect(EtcdOptions { endpoints: vec![server.endpoint.clone()], ..Default::default() });
    let (compactor, other) = (connect().await.expect("connect"), connect().await.expect("connect"));
    for i in 0..10 {
        applied(compactor.put(b("k"), b(&format!("v{i}")), None).await); // revisions 2..=11
    }
    compactor.compact(Revision(8)).await.expect("compact");
    assert_eq!(compactor.compact_revision().await.expect("compact revision"), Revision(8));
    assert_eq!(other.compact_revision().await.expect("compact revision"), Revision(0), "nothing learned yet");

    // A failed read only proves that the compaction is above the revision read.
    match other.get(b"k", Some(Revision(3))).await {
        Err(StoreError::Compacted { requested, compacted }) => {
            assert_eq!(requested, Revision(3));
            assert!(compacted > Revision(3) && compacted <= Revision(8), "compacted {compacted}");
        }
        res => panic!("a read at a compacted revision gave {res:?}"),
    }
    // A watch is cancelled with the exact revision.
    assert_eq!(watch_compacted(&other, KeyRange::key("k"), Revision(5)).await, (Revision(5), Revision(8)));
    assert_eq!(other.compact_revision().await.expect("compact revision"), Revision(8));
}
