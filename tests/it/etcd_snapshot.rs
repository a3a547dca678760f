//! Snapshots of the embedded datastore (issue 15 §5): an online copy taken while writes go
//! on holds exactly the state at its revision, and a restore brings back every key and the
//! revision; end to end, `k3rs etcd-snapshot save` against a running `k3rs server`, `ls`,
//! and `k3rs server --cluster-reset --cluster-reset-restore-path`, checked through kubectl.
//! Nothing here needs root.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use k3rs::server::config::ServerConfig;
use k3rs::store::sqlite::snapshot;
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use k3rs::store::{KeyRange, KeyValue, RangeOptions, Revision, Store};

fn b(s: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(s.as_ref())
}

async fn everything(store: &SqliteStore, at: Option<Revision>) -> (Revision, Vec<KeyValue>) {
    let all = KeyRange::prefix(Bytes::new());
    let res = store.range(&all, RangeOptions { revision: at, ..Default::default() }).await.expect("range");
    assert!(!res.more);
    (res.revision, res.kvs)
}

/// Many keys, with history, deletes, a lease and a compaction; a snapshot taken while a
/// writer keeps writing; then creates, updates and deletes; then the restore. The restored
/// store must be exactly the live store as of the snapshot's revision: every key with its
/// value, create and mod revisions, version and lease, and the revision itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_online_snapshot_restores_every_key_and_the_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig::with_defaults(dir.path().join("data"), "node-a");
    let db = config.data_dir.state_db();
    let store = Arc::new(SqliteStore::open(&db, SqliteOptions::default()).expect("open"));

    let lease = store.lease_grant(None, 3600).await.expect("lease");
    for i in 0..400 {
        let key = format!("/registry/configmaps/ns-{}/cm-{i:03}", i % 7);
        let lease = (i % 50 == 0).then_some(lease.id);
        store.create(b(&key), b(format!("{{\"v\":0,\"i\":{i}}}")), lease).await.expect("create");
    }
    for round in 1..=3 {
        for i in (0..400).step_by(3) {
            let key = format!("/registry/configmaps/ns-{}/cm-{i:03}", i % 7);
            store.put(b(&key), b(format!("{{\"v\":{round},\"i\":{i}}}")), None).await.expect("update");
        }
    }
    for i in (0..400).step_by(11) {
        store.delete(b(format!("/registry/configmaps/ns-{}/cm-{i:03}", i % 7)), None).await.expect("delete");
    }
    let compact_to = store.current_revision().await.expect("rev");
    store.compact(compact_to).await.expect("compact");
    for i in 0..20 {
        store
            .create(b(format!("/registry/secrets/default/s-{i}")), b(vec![i as u8; 4096]), None)
            .await
            .expect("secret");
    }

    // A writer that keeps going while the snapshot is taken.
    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let (store, running) = (store.clone(), running.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                let key = format!("/registry/events/default/e-{}", n % 64);
                store.put(b(&key), b(format!("{n}")), None).await.expect("churn");
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let dest = dir.path().join("snap");
    let started = Instant::now();
    let saved = {
        let (db, dest) = (db.clone(), dest.clone());
        tokio::task::spawn_blocking(move || snapshot::save(&db, &dest)).await.expect("join").expect("save")
    };
    let took = started.elapsed();
    running.store(false, Ordering::Relaxed);
    let churned = writer.await.expect("writer");
    assert!(churned > 0, "the writer wrote nothing");
    let end = store.current_revision().await.expect("rev");
    assert!(saved.revision > compact_to && saved.revision <= end, "{saved:?} outside ({compact_to}, {end}]");
    eprintln!(
        "snapshot of {} keys at revision {} ({} bytes) in {took:?}, {churned} writes around it",
        everything(&store, Some(saved.revision)).await.1.len(),
        saved.revision,
        saved.size
    );

    // What the snapshot must hold: the live store's view at its revision.
    let (_, expected) = everything(&store, Some(saved.revision)).await;
    // 363 ConfigMaps left, 20 Secrets, and what the writer had written by then.
    assert!(expected.len() > 383, "{} keys", expected.len());

    // Change things after the snapshot: create, update, delete, revoke.
    store.create(b("/registry/configmaps/ns-0/new"), b("new"), None).await.expect("create");
    store.put(b("/registry/configmaps/ns-1/cm-001"), b("changed"), None).await.expect("update");
    store.delete(b("/registry/configmaps/ns-2/cm-002"), None).await.expect("delete");
    store.lease_revoke(lease.id).await.expect("revoke");
    let (after, changed) = everything(&store, None).await;
    assert_ne!(changed, expected);
    store.close().await.expect("close");

    // The restore the server runs for --cluster-reset, with the data-dir lock.
    let restored = {
        let (config, dest) = (config.clone(), dest.clone());
        tokio::task::spawn_blocking(move || k3rs::server::reset::cluster_reset(&config, &dest))
            .await
            .expect("join")
            .expect("restore")
    };
    assert_eq!(restored.revision, saved.revision);
    let old = restored.previous.expect("the old database was kept");
    assert!(old.starts_with(config.data_dir.db()), "{}", old.display());

    let store = SqliteStore::open(&db, SqliteOptions::default()).expect("reopen");
    assert_eq!(store.current_revision().await.expect("rev"), saved.revision);
    assert_eq!(store.compact_revision().await.expect("compact rev"), compact_to);
    let (rev, got) = everything(&store, None).await;
    assert_eq!(rev, saved.revision);
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e, "key {}", String::from_utf8_lossy(&e.key));
    }
    // The lease came back with its keys.
    let status = store.lease_status(lease.id).await.expect("lease status").expect("lease restored");
    assert_eq!(status.keys.len(), expected.iter().filter(|kv| kv.lease == Some(lease.id)).count());
    // History up to the snapshot is there too.
    let (_, at_compact) = everything(&store, Some(compact_to)).await;
    assert!(!at_compact.is_empty());
    // And writes go on from the snapshot's revision.
    let w = store.put(b("/registry/configmaps/ns-0/after"), b("x"), None).await.expect("write");
    assert!(matches!(w, k3rs::store::WriteOutcome::Applied { revision, .. } if revision == saved.revision.next()));
    store.close().await.expect("close");

    // Nothing was lost: the replaced database opens with the changes made after the snapshot.
    let previous = SqliteStore::open(&old.join("state.db"), SqliteOptions::default()).expect("open the old one");
    assert_eq!(everything(&previous, None).await, (after, changed));
    previous.close().await.expect("close");
}

// ---- end to end: the real binary ----

const READY: &str = "k3rs server is ready";
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn k3rs() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_k3rs"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("K3RS_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd
}

struct Sandbox {
    dir: tempfile::TempDir,
    port: u16,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config.yaml"), "").expect("config");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        Sandbox { dir, port }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// `k3rs <sub>` with this sandbox's config file, data dir and node name.
    fn k3rs(&self, sub: &[&str]) -> Command {
        let mut cmd = k3rs();
        cmd.args(sub)
            .arg("--config")
            .arg(self.path("config.yaml"))
            .arg("--data-dir")
            .arg(self.data())
            .args(["--node-name", "node-a"]);
        cmd
    }

    fn server(&self, extra: &[&str]) -> Command {
        let mut cmd = self.k3rs(&["server"]);
        cmd.arg("--disable-agent")
            .arg("--write-kubeconfig")
            .arg(self.path("kubeconfig.yaml"))
            .args(["--bind-address", "127.0.0.1", "--https-listen-port", &self.port.to_string()])
            .args(["--disable", "dns,ingress,servicelb"])
            .args(extra);
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.path("kubeconfig.yaml"))
            .args(args)
            .output()
            .expect("run kubectl");
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The ConfigMaps of namespace `snap` as (name, data, resourceVersion), sorted.
    fn configmaps(&self) -> Vec<(String, String, String)> {
        let text = self.kubectl(&["get", "configmaps", "-n", "snap", "-o", "json"]);
        let list: serde_json::Value = serde_json::from_str(&text).expect("json");
        let mut out: Vec<_> = list["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|cm| {
                (
                    cm["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                    cm["data"].to_string(),
                    cm["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }
}

struct Server {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(mut cmd: Command) -> Server {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().expect("log");
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut server = Server { child, log };
        let deadline = Instant::now() + START_TIMEOUT;
        while !server.log().contains(READY) {
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                panic!("server exited ({status}):\n{}", server.log());
            }
            assert!(Instant::now() < deadline, "not ready in {START_TIMEOUT:?}:\n{}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    fn stop(&mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "server did not stop:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn e2e_save_against_a_running_server_then_ls_then_cluster_reset() {
    let sb = Sandbox::new();
    let mut server = Server::start(sb.server(&[]));
    sb.kubectl(&["create", "namespace", "snap"]);
    for i in 0..20 {
        sb.kubectl(&["create", "configmap", &format!("cm-{i:02}"), "-n", "snap", &format!("--from-literal=i={i}")]);
    }
    let at_snapshot = sb.configmaps();
    assert_eq!(at_snapshot.len(), 21, "20 and kube-root-ca.crt: {at_snapshot:?}");

    // An online snapshot from a second process while the server runs.
    let out = sb.k3rs(&["etcd-snapshot", "save"]).output().expect("save");
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "save failed: {stderr}");
    assert!(stderr.contains("Saved snapshot"), "{stderr}");
    let snapshots = sb.data().join("server/db/snapshots");
    let names: Vec<String> = std::fs::read_dir(&snapshots)
        .expect("snapshot dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let name = names[0].clone();
    let time: i64 = name.strip_prefix("on-demand-node-a-").expect("k3s' name").parse().expect("unix time");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    assert!((now - 120..=now).contains(&time), "{name}");

    // ls: k3s' columns.
    let out = sb.k3rs(&["etcd-snapshot", "ls"]).env("TZ", "UTC").output().expect("ls");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "ls failed: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["Name", "Location", "Size", "Created"]);
    let cols: Vec<&str> = lines[1].split_whitespace().collect();
    let path = snapshots.join(&name);
    let size = std::fs::metadata(&path).expect("stat").len().to_string();
    assert_eq!(cols[..3], [name.as_str(), &format!("file://{}", path.display()), &size]);
    assert!(cols[3].ends_with('Z') && cols[3].len() == 20, "{}", cols[3]);

    // Changes after the snapshot: create, update, delete.
    sb.kubectl(&["create", "configmap", "late", "-n", "snap", "--from-literal=x=y"]);
    sb.kubectl(&["patch", "configmap", "cm-03", "-n", "snap", "-p", r#"{"data":{"i":"changed"}}"#]);
    sb.kubectl(&["delete", "configmap", "cm-07", "-n", "snap"]);
    let changed = sb.configmaps();
    assert_ne!(changed, at_snapshot);

    // A restore while the server runs is refused, and changes nothing.
    let out = sb.server(&["--cluster-reset", "--cluster-reset-restore-path"]).arg(&path).output().expect("reset");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("in use by another k3rs process"), "{stderr}");
    assert_eq!(sb.configmaps(), changed);
    server.stop();

    // A missing snapshot: a clear error, nothing touched.
    let out =
        sb.server(&["--cluster-reset", "--cluster-reset-restore-path"]).arg(sb.path("nope")).output().expect("reset");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let want = format!("k3rs: error: cluster reset failed: snapshot {}: no such file", sb.path("nope").display());
    assert!(stderr.lines().any(|l| l == want), "{stderr}");

    // The restore, as k3s does it: restore, say so, exit 0.
    let out = sb.server(&["--cluster-reset", "--cluster-reset-restore-path"]).arg(&path).output().expect("reset");
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("restart without --cluster-reset flag now"), "{stderr}");
    let kept: Vec<String> = std::fs::read_dir(sb.data().join("server/db"))
        .expect("db dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("state-old-"))
        .collect();
    assert_eq!(kept.len(), 1, "the replaced database is kept: {kept:?}");
    assert!(sb.data().join("server/db").join(&kept[0]).join("state.db").is_file());

    // The restarted server serves exactly the snapshot's objects, resource versions included.
    let mut server = Server::start(sb.server(&[]));
    assert_eq!(sb.configmaps(), at_snapshot);
    server.stop();
}

#[test]
fn external_etcd_refuses_snapshots_and_cluster_reset_as_usage_errors() {
    let sb = Sandbox::new();
    std::fs::write(sb.path("config.yaml"), "datastore-endpoint: http://127.0.0.1:2379\n").expect("config");
    for sub in [&["etcd-snapshot", "save"][..], &["etcd-snapshot", "ls"], &["etcd-snapshot", "prune"]] {
        let out = sb.k3rs(sub).output().expect("run");
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{sub:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("k3rs: error: etcd-snapshot: the datastore is an external etcd"), "{stderr}");
        assert!(stdout.is_empty());
    }
    let out = sb.server(&["--cluster-reset", "--cluster-reset-restore-path", "/x"]).output().expect("run");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("k3rs: error: command line: cluster-reset: the datastore is an external etcd"),
        "{stderr}"
    );
    assert!(!sb.data().exists(), "nothing may be written on a usage error");
}

#[test]
fn save_prune_and_delete_on_a_stopped_server_s_data_dir() {
    let sb = Sandbox::new();
    // A datastore as the server leaves it.
    {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            let s = SqliteStore::open(&sb.data().join("server/db/state.db"), SqliteOptions::default()).expect("open");
            s.create(b("/registry/a"), b("1"), None).await.expect("create");
            s.close().await.expect("close");
        });
    }
    let dir = sb.path("snaps");
    let d = dir.to_str().expect("utf-8 path");
    // A directory the user names must exist.
    let out = sb.k3rs(&["etcd-snapshot", "save", "--dir", d]).output().expect("save");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    std::fs::create_dir(&dir).expect("mkdir");
    // Three saves with distinct times (names carry whole seconds).
    for i in 0..3 {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(1100));
        }
        let out = sb.k3rs(&["etcd-snapshot", "save", "--name", "nightly", "--etcd-snapshot-dir", d]).output();
        let out = out.expect("save");
        assert!(out.status.success(), "{}", text(&out).1);
    }
    let list = |dir: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let saved = list(&dir);
    assert_eq!(saved.len(), 3, "{saved:?}");
    assert!(saved.iter().all(|n| n.starts_with("nightly-node-a-")), "{saved:?}");
    // A bad count is a usage error, before anything is read.
    let out = sb.k3rs(&["etcd-snapshot", "prune", "--snapshot-retention=-1", "--dir", d]).output().expect("prune");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.starts_with("k3rs: error: command line: snapshot-retention: \"-1\" is not a number"), "{stderr}");
    assert_eq!(list(&dir), saved);
    // Prune by prefix: another prefix is not touched.
    let out = sb.k3rs(&["etcd-snapshot", "prune", "--snapshot-retention", "1", "--dir", d]).output().expect("prune");
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(list(&dir), saved, "the default prefix (on-demand) matched nothing");
    let out = sb
        .k3rs(&["etcd-snapshot", "prune", "--snapshot-retention", "1", "--name", "nightly", "--dir", d])
        .output()
        .expect("prune");
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(list(&dir), saved[2..], "the newest is kept");
    // Delete: a missing name is an error naming it; a path is refused before anything goes.
    let out = sb.k3rs(&["etcd-snapshot", "delete", "../state.db", "--dir", d]).output().expect("delete");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    let out = sb.k3rs(&["etcd-snapshot", "delete", &saved[2], "gone", "--dir", d]).output().expect("delete");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("snapshot gone not found in"), "{stderr}");
    assert!(list(&dir).is_empty());
    assert!(sb.data().join("server/db/state.db").is_file());
}

#[test]
fn the_server_snapshots_on_its_schedule_and_keeps_the_retention() {
    let sb = Sandbox::new();
    // robfig's @every, which k3s' schedule also takes: no minute-long wait here.
    let args = ["--etcd-snapshot-schedule-cron", "@every 1s", "--etcd-snapshot-retention", "2"];
    let mut server = Server::start(sb.server(&args));
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.log().matches("scheduled snapshot saved").count() < 4 {
        assert!(Instant::now() < deadline, "no four scheduled snapshots:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Stopping waits for a snapshot under way and its pruning.
    server.stop();
    let dir = sb.data().join("server/db/snapshots");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "retention 2: {names:?}\n{}", server.log());
    for name in &names {
        assert!(name.starts_with("etcd-snapshot-node-a-"), "{name}");
        let header = std::fs::read(dir.join(name)).expect("read");
        assert_eq!(&header[..16], b"SQLite format 3\0", "{name}");
    }
    assert!(server.log().contains("scheduled snapshots on"), "{}", server.log());

    // Off is off.
    let mut server =
        Server::start(sb.server(&["--etcd-disable-snapshots", "--etcd-snapshot-schedule-cron", "@every 1s"]));
    std::thread::sleep(Duration::from_millis(2500));
    server.stop();
    assert!(server.log().contains("scheduled snapshots are disabled"), "{}", server.log());
    assert!(!server.log().contains("scheduled snapshot saved"), "{}", server.log());
}
