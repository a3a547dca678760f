//! Crash safety of the embedded store: a child process writes and reports each write the
//! store acknowledged; it is killed with SIGKILL at a random moment; the store is reopened
//! and every acknowledged write must be there, in a file that passes SQLite's integrity
//! check. 100 trials on one file, so each open also recovers the previous crash.
//!
//! The child is this same test binary, re-executed with `K3RS_CRASH_CHILD` set.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use k3rs::store::{KeyRange, RangeOptions, Store, WriteOutcome};

const CHILD_ENV: &str = "K3RS_CRASH_CHILD";
const WRITERS: usize = 8;

/// The child: runs only when re-executed by `acknowledged_writes_survive_sigkill`.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let store = Arc::new(SqliteStore::open(Path::new(&path), SqliteOptions::default()).expect("open"));
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let trial = std::env::var("K3RS_CRASH_TRIAL").unwrap_or_default();
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = store.clone();
            let out = out.clone();
            let trial = trial.clone();
            tasks.push(tokio::spawn(async move {
                let counter = Bytes::from(format!("/crash/counter/{w}"));
                for n in 0.. {
                    // A fresh key per write...
                    let key = format!("/crash/keys/{trial}/{w}/{n}");
                    let r = store.create(Bytes::from(key.clone()), Bytes::from(format!("v{n}")), None).await;
                    if matches!(r, Ok(WriteOutcome::Applied { .. })) {
                        writeln!(out.lock().unwrap(), "ACK key {key} v{n}").unwrap();
                    }
                    // ...and a compare-and-swap counter per writer.
                    let (_, cur) = store.get(&counter, None).await.unwrap();
                    let value =
                        cur.as_ref().map_or(0, |kv| std::str::from_utf8(&kv.value).unwrap().parse::<u64>().unwrap())
                            + 1;
                    let r = match cur {
                        Some(kv) => {
                            store.update(counter.clone(), Bytes::from(value.to_string()), kv.mod_revision, None).await
                        }
                        None => store.create(counter.clone(), Bytes::from(value.to_string()), None).await,
                    };
                    if matches!(r, Ok(WriteOutcome::Applied { .. })) {
                        writeln!(out.lock().unwrap(), "ACK counter {w} {value}").unwrap();
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    let me = std::env::current_exe().unwrap();
    let mut acked_keys: HashMap<String, String> = HashMap::new();
    let mut acked_counters: HashMap<String, u64> = HashMap::new();
    let trials = 100;
    let mut total_acks = 0usize;
    for trial in 0..trials {
        let mut child = Command::new(&me)
            .args(["--exact", &crate::common::suite_test("crash_child"), "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &db)
            .env("K3RS_CRASH_TRIAL", trial.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let reader = {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if line.starts_with("ACK ") {
                        lines.lock().unwrap().push(line);
                    }
                }
            })
        };
        // Wait for the first acknowledgement, then kill at a random moment up to 150 ms on.
        let start = Instant::now();
        while lines.lock().unwrap().is_empty() {
            assert!(start.elapsed() < Duration::from_secs(30), "trial {trial}: child acknowledged nothing");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..150)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let lines = std::mem::take(&mut *lines.lock().unwrap());
        total_acks += lines.len();
        for line in lines {
            let parts: Vec<&str> = line.split(' ').collect();
            match parts[1] {
                "key" => {
                    acked_keys.insert(parts[2].to_string(), parts[3].to_string());
                }
                "counter" => {
                    let v: u64 = parts[3].parse().unwrap();
                    let e = acked_counters.entry(format!("/crash/counter/{}", parts[2])).or_default();
                    *e = (*e).max(v);
                }
                other => panic!("unexpected line kind {other}"),
            }
        }
        verify(&db, &acked_keys, &acked_counters, trial);
    }
    eprintln!("{trials} trials, {total_acks} acknowledged writes, all present after SIGKILL");
}

fn verify(db: &Path, keys: &HashMap<String, String>, counters: &HashMap<String, u64>, trial: usize) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(db, SqliteOptions::default())
            .unwrap_or_else(|e| panic!("trial {trial}: reopen failed: {e}"));
        let all = store.range(&KeyRange::prefix("/crash/"), RangeOptions::default()).await.unwrap();
        let found: HashMap<Vec<u8>, Bytes> = all.kvs.into_iter().map(|kv| (kv.key.to_vec(), kv.value)).collect();
        for (k, v) in keys {
            let got = found.get(k.as_bytes()).unwrap_or_else(|| panic!("trial {trial}: acknowledged key {k} lost"));
            assert_eq!(got.as_ref(), v.as_bytes(), "trial {trial}: key {k}");
        }
        for (k, v) in counters {
            let got = found.get(k.as_bytes()).unwrap_or_else(|| panic!("trial {trial}: counter {k} lost"));
            let got: u64 = std::str::from_utf8(got).unwrap().parse().unwrap();
            // A write may be durable without its acknowledgement having been printed.
            assert!(got >= *v, "trial {trial}: counter {k} went back from acknowledged {v} to {got}");
        }
        store.close().await.unwrap();
    });
    let conn = rusqlite::Connection::open(db).unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "trial {trial}: integrity check");
}
