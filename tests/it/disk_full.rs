//! A full disk: writes to the embedded store fail with an error, nothing that failed is
//! visible (to reads or watchers), everything acknowledged stays, and once space is freed
//! the same running store writes again. Runs on a small tmpfs the test mounts, so it needs
//! root, as the end-to-end tests do.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use k3rs::store::{KeyRange, RangeOptions, Store, StoreError, WatchItem};

struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(dir: &'a Path, size: &str) -> Self {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "k3rs-test-tmpfs"])
            .arg(dir)
            .status()
            .expect("run mount");
        assert!(ok.success(), "mounting a tmpfs failed: this test needs root");
        Tmpfs(dir)
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(self.0).status().unwrap();
        assert!(ok.success(), "remount failed");
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_fails_writes_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(dir.path(), "512k");
    let db = dir.path().join("state.db");
    let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
    let mut watch = store.watch(KeyRange::prefix("/full/"), None).await.unwrap();

    let value = Bytes::from(vec![b'x'; 4096]);
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..1000 {
        let key = Bytes::from(format!("/full/{i:05}"));
        match store.put(key.clone(), value.clone(), None).await {
            Ok(o) => {
                assert!(o.is_applied());
                acked.push(key);
            }
            Err(e) => {
                failure = Some((key, e));
                break;
            }
        }
    }
    let (failed_key, err) = failure.expect("a 512 KiB file system must fill up");
    assert!(matches!(err, StoreError::Sqlite { .. }), "unexpected error kind: {err}");
    assert!(err.to_string().contains("full"), "error should say the disk is full: {err}");
    assert!(!acked.is_empty());

    // Failing again does not corrupt anything or panic.
    assert!(store.put(failed_key.clone(), value.clone(), None).await.is_err());

    // Reads and watchers see exactly the acknowledged writes.
    let all = store.range(&KeyRange::prefix("/full/"), RangeOptions::default()).await.unwrap();
    assert_eq!(all.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), acked);
    let mut seen = Vec::new();
    while seen.len() < acked.len() {
        match tokio::time::timeout(Duration::from_secs(5), watch.stream.next()).await.expect("watch stalled") {
            Some(Ok(WatchItem::Events(evs))) => seen.extend(evs.into_iter().map(|e| e.kv.key)),
            Some(Ok(WatchItem::Progress(_))) => {}
            other => panic!("watch ended: {other:?}"),
        }
    }
    assert_eq!(seen, acked);
    watch.request_progress();
    match tokio::time::timeout(Duration::from_secs(5), watch.stream.next()).await.unwrap() {
        Some(Ok(WatchItem::Progress(_))) => {}
        other => panic!("a failed write reached the watcher: {other:?}"),
    }

    // Space comes back: the same store writes again.
    fs.resize("8m");
    let r = store.put(failed_key.clone(), value.clone(), None).await.expect("write after space was freed");
    assert!(r.is_applied());
    acked.push(failed_key);
    store.close().await.unwrap();

    let store = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
    let all = store.range(&KeyRange::prefix("/full/"), RangeOptions::default()).await.unwrap();
    assert_eq!(all.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(), acked);
    store.close().await.unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok");
}
