//! Unit tests of the SQLite backend's own behaviour: the file, reopening, compaction's
//! effect on size. The semantics shared with etcd are in tests/store_conformance.rs.

use futures::StreamExt;

use super::*;
use crate::store::{EventKind, WatchItem};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).expect("open")
}

#[tokio::test]
async fn writes_survive_reopen_with_revisions_and_leases() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    assert_eq!(s.current_revision().await.unwrap(), Revision(1));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("state.db")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "state.db must be private");
    let lease = s.lease_grant(None, 60).await.unwrap();
    assert!(s.create(b("/a"), b("1"), None).await.unwrap().is_applied());
    assert!(s.put(b("/b"), b("2"), Some(lease.id)).await.unwrap().is_applied());
    assert!(s.update(b("/a"), b("3"), Revision(2), None).await.unwrap().is_applied());
    assert!(s.delete(b("/b"), None).await.unwrap().is_applied());
    assert!(s.create(b("/b"), b("4"), None).await.unwrap().is_applied());
    assert_eq!(s.current_revision().await.unwrap(), Revision(6));
    s.close().await.unwrap();
    assert!(matches!(s.current_revision().await, Err(StoreError::Closed)));

    let s = open(&dir).await;
    assert_eq!(s.current_revision().await.unwrap(), Revision(6));
    let (_, a) = s.get(b"/a", None).await.unwrap();
    let a = a.unwrap();
    assert_eq!(
        (a.value.as_ref(), a.version, a.create_revision, a.mod_revision),
        (&b"3"[..], 2, Revision(2), Revision(4))
    );
    let (_, old_b) = s.get(b"/b", Some(Revision(3))).await.unwrap();
    assert_eq!(old_b.unwrap().lease, Some(lease.id));
    let (_, new_b) = s.get(b"/b", None).await.unwrap();
    assert_eq!(new_b.unwrap().version, 1);
    assert_eq!(s.leases().await.unwrap(), vec![lease.id]);
    let mut w = s.watch(KeyRange::prefix(b("/")), Some(Revision(2))).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 5 {
        match w.stream.next().await.unwrap().unwrap() {
            WatchItem::Events(evs) => got.extend(evs),
            WatchItem::Progress(_) => {}
        }
    }
    let kinds: Vec<_> = got.iter().map(|e| (e.kind, e.kv.mod_revision.0)).collect();
    assert_eq!(
        kinds,
        vec![
            (EventKind::Put, 2),
            (EventKind::Put, 3),
            (EventKind::Put, 4),
            (EventKind::Delete, 5),
            (EventKind::Put, 6)
        ]
    );
    assert_eq!(got[2].prev_kv.as_ref().unwrap().value, b("1"));
    assert_eq!(got[3].prev_kv.as_ref().unwrap().value, b("2"));
    assert!(got[4].prev_kv.is_none());
    s.close().await.unwrap();
}

#[tokio::test]
async fn foreign_and_newer_files_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, b"this is not a database, just some text that is long enough").unwrap();
    let before = std::fs::read(&junk).unwrap();
    let err = SqliteStore::open(&junk, SqliteOptions::default()).err().expect("refused");
    assert!(err.to_string().contains("refusing"), "{err}");
    assert_eq!(std::fs::read(&junk).unwrap(), before);

    let foreign = dir.path().join("foreign.db");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
    }
    let before = std::fs::read(&foreign).unwrap();
    let err = SqliteStore::open(&foreign, SqliteOptions::default()).err().expect("refused");
    assert!(err.to_string().contains("not a k3rs database"), "{err}");
    assert_eq!(std::fs::read(&foreign).unwrap(), before);

    let newer = dir.path().join("newer.db");
    {
        let s = SqliteStore::open(&newer, SqliteOptions::default()).unwrap();
        s.close().await.unwrap();
        let c = rusqlite::Connection::open(&newer).unwrap();
        c.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1)).unwrap();
    }
    let err = SqliteStore::open(&newer, SqliteOptions::default()).err().expect("refused");
    assert!(err.to_string().contains("newer k3rs"), "{err}");
}

#[tokio::test]
async fn churn_with_compaction_keeps_the_file_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let value = Bytes::from(vec![b'x'; 512]);
    let keys = 100;
    for round in 0..60 {
        let mut tasks = Vec::new();
        for k in 0..keys {
            let key = b(&format!("/churn/{k:04}"));
            tasks.push(s.put(key, value.clone(), None));
        }
        for t in futures::future::join_all(tasks).await {
            assert!(t.unwrap().is_applied());
        }
        if round % 10 == 9 {
            let rev = s.current_revision().await.unwrap();
            s.compact(rev).await.unwrap();
        }
    }
    // Let the idle writer finish compacting and tidy the file.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let st = s.status().await.unwrap();
    let db = std::fs::metadata(dir.path().join("state.db")).unwrap().len();
    let wal = std::fs::metadata(dir.path().join("state.db-wal")).map(|m| m.len()).unwrap_or(0);
    eprintln!("status {st:?} db {db} wal {wal}");
    let live = (keys * (512 + 16)) as i64;
    assert!(st.db_size_in_use < 4 * live + 64 * 1024, "in use {} vs live {live}", st.db_size_in_use);
    assert!(st.db_size < 8 * live + 256 * 1024, "on disk {} vs live {live}", st.db_size);
    let all = s.range(&KeyRange::prefix(b("/churn/")), RangeOptions::default()).await.unwrap();
    assert_eq!(all.count, keys as i64);
    s.close().await.unwrap();
}

#[tokio::test]
async fn a_damaged_file_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = open(&dir).await;
    let value = Bytes::from(vec![b'v'; 300]);
    let writes: Vec<_> = (0..2000).map(|i| s.put(b(&format!("/k/{i:05}")), value.clone(), None)).collect();
    for w in futures::future::join_all(writes).await {
        w.unwrap();
    }
    s.close().await.unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 40 * 4096, "expected a file of many pages, got {}", bytes.len());
    // Scribble over a stretch of pages in the middle of the file.
    let mid = bytes.len() / 2 / 4096 * 4096;
    for (i, byte) in bytes[mid..mid + 8 * 4096].iter_mut().enumerate() {
        *byte = (i * 7 + 13) as u8;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = SqliteStore::open(&path, SqliteOptions::default()).err().expect("a damaged file must be refused");
    assert!(err.to_string().contains("damaged"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "the damaged file was modified");
}

/// A range delete in the same group commit as writes to its range sees them: a key created
/// earlier in the batch is deleted along with the committed ones, in key order, a key created
/// later survives, and watchers hear the whole batch as one commit.
#[tokio::test]
async fn range_delete_sees_the_writes_queued_before_it_in_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let s = open(&dir).await;
    s.put(b("/p/b"), b("0"), None).await.unwrap();
    s.put(b("/q"), b("0"), None).await.unwrap();
    s.close().await.unwrap();

    // Drive a writer by hand: every request is queued before it runs, so they form one batch.
    let conn = schema::open_writer(&path).unwrap();
    let loaded = read::load(&conn).unwrap();
    let (events, _) = broadcast::channel(16);
    let shared = Arc::new(Shared {
        path: path.clone(),
        state: RwLock::new(State { rev: loaded.rev, compact_rev: loaded.compact_rev, kvs: loaded.kvs }),
        leases: Mutex::new(HashMap::new()),
        events: Mutex::new(Some(events)),
        readers: Mutex::new(Vec::new()),
        closed: AtomicBool::new(false),
    });
    let mut commits = shared.subscribe().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let queue = |op| {
        let (reply, answer) = oneshot::channel();
        tx.send(Request { op, reply }).unwrap();
        answer
    };
    let put_a = queue(Op::Put { key: b("/p/a"), value: b("1"), lease: None });
    let delete = queue(Op::DeleteRange { range: KeyRange::prefix(b("/p/")) });
    let put_c = queue(Op::Put { key: b("/p/c"), value: b("2"), lease: None });
    let close = queue(Op::Close);
    drop(tx);
    writer::Writer::new(conn, shared.clone(), 1024, 0).run(rx);

    assert!(matches!(put_a.await.unwrap(), Ok(Reply::Write(WriteOutcome::Applied { revision: Revision(4), .. }))));
    let Ok(Reply::Deleted(done)) = delete.await.unwrap() else { panic!("the range delete did not apply") };
    let prev: Vec<_> = done.prev.iter().map(|kv| (kv.key.clone(), kv.mod_revision.0)).collect();
    assert_eq!((done.revision, prev), (Revision(6), vec![(b("/p/a"), 4), (b("/p/b"), 2)]));
    assert!(matches!(put_c.await.unwrap(), Ok(Reply::Write(WriteOutcome::Applied { revision: Revision(7), .. }))));
    assert!(matches!(close.await.unwrap(), Ok(Reply::Done)));
    let commit = commits.try_recv().expect("one commit");
    let got: Vec<_> = commit.events.iter().map(|e| (e.kind, e.kv.key.clone(), e.kv.mod_revision.0)).collect();
    assert_eq!(
        got,
        vec![
            (EventKind::Put, b("/p/a"), 4),
            (EventKind::Delete, b("/p/a"), 5),
            (EventKind::Delete, b("/p/b"), 6),
            (EventKind::Put, b("/p/c"), 7)
        ]
    );
    assert_eq!(commit.revision, Revision(7));
    let keys: Vec<_> = shared.state().kvs.keys().cloned().collect();
    assert_eq!(keys, vec![b("/p/c"), b("/q")]);
}

/// A commit of thousands of deletes reaches a live watcher in pieces of bounded size, and a
/// progress request is answered only after the last piece.
#[tokio::test]
async fn a_large_range_delete_reaches_watchers_in_bounded_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir).await;
    let writes: Vec<_> = (0..2500).map(|i| s.put(b(&format!("/big/{i:05}")), b("v"), None)).collect();
    for w in futures::future::join_all(writes).await {
        assert!(w.unwrap().is_applied());
    }
    let before = s.current_revision().await.unwrap();
    let mut w = s.watch(KeyRange::prefix(b("/big/")), None).await.unwrap();
    // A first progress answer means the watch follows the live broadcast, not the file.
    w.request_progress();
    assert!(matches!(w.stream.next().await.unwrap().unwrap(), WatchItem::Progress(r) if r == before));
    let done = s.delete_range(&KeyRange::prefix(b("/big/"))).await.unwrap();
    assert_eq!(done.prev.len(), 2500);
    w.request_progress();
    let mut sizes = Vec::new();
    let mut seen = 0;
    loop {
        match w.stream.next().await.unwrap().unwrap() {
            WatchItem::Events(evs) => {
                for (ev, prev) in evs.iter().zip(&done.prev[seen..]) {
                    assert_eq!((ev.kind, &ev.kv.key, ev.prev_kv.as_ref()), (EventKind::Delete, &prev.key, Some(prev)));
                }
                seen += evs.len();
                sizes.push(evs.len());
            }
            WatchItem::Progress(rev) => {
                assert_eq!(rev, done.revision);
                break;
            }
        }
    }
    assert_eq!(sizes, vec![1000, 1000, 500]);
    assert!(s.range(&KeyRange::prefix(b("/big/")), RangeOptions::default()).await.unwrap().kvs.is_empty());
    s.close().await.unwrap();
}
