//! The etcd API served over the SQLite store, driven by real clients: Debian's `etcdctl`
//! (etcd 3.4) and the `etcd-client` crate, both over the unix socket.
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use k3rs::etcdapi::{serve_with, EtcdApiError, ServeOptions, ETCD_VERSION, MEMBER_ID};
use k3rs::store::etcd::{EtcdOptions, EtcdStore};
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use k3rs::store::Store;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

mod common;
use common::etcd::EtcdServer;

struct Server {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    store: Arc<dyn Store>,
    /// Keeps an external backend (a throwaway etcd) alive as long as the server.
    _backend: Option<EtcdServer>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), EtcdApiError>>>,
}

impl Server {
    async fn start() -> Server {
        Self::start_with(ServeOptions::default()).await
    }

    async fn start_with(opts: ServeOptions) -> Server {
        Self::start_on(SqliteOptions::default(), opts).await
    }

    async fn start_on(store_opts: SqliteOptions, opts: ServeOptions) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("state.db"), store_opts).expect("open store"));
        Self::serve(dir, store, None, opts).await
    }

    /// The API over the etcd backend, itself over a throwaway etcd 3.4.
    async fn start_over_etcd() -> Server {
        let etcd = EtcdServer::start().await;
        let opts =
            EtcdOptions { endpoints: vec![etcd.endpoint.clone()], prefix: b"/k3rs/".to_vec(), ..Default::default() };
        let store = Arc::new(EtcdStore::connect(opts).await.expect("connect to etcd"));
        let dir = tempfile::tempdir().expect("tempdir");
        Self::serve(dir, store, Some(etcd), ServeOptions::default()).await
    }

    async fn serve(
        dir: tempfile::TempDir,
        store: Arc<dyn Store>,
        backend: Option<EtcdServer>,
        opts: ServeOptions,
    ) -> Server {
        let sock = dir.path().join("etcd.sock");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = {
            let store = store.clone();
            let sock = sock.clone();
            tokio::spawn(async move {
                serve_with(
                    store,
                    &sock,
                    async move {
                        let _ = stopped.await;
                    },
                    opts,
                )
                .await
            })
        };
        for _ in 0..200 {
            if tokio::net::UnixStream::connect(&sock).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Server { _dir: dir, sock, store, _backend: backend, stop: Some(stop), task: Some(task) }
    }

    async fn client(&self) -> Client {
        let path = self.sock.clone();
        let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
            .expect("endpoint")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
                }
            }))
            .await
            .expect("connect");
        Client::from_channel(etcd_client::Channel::Tonic(channel), None).await.expect("client")
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }

    /// Runs etcdctl against the socket; returns success, stdout and stderr.
    async fn etcdctl(&self, args: &[&str]) -> (bool, String, String) {
        self.etcdctl_stdin(args, None).await
    }

    async fn etcdctl_stdin(&self, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
        let mut cmd = tokio::process::Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=unix://{}", self.sock.display()))
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn etcdctl");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).await.expect("write stdin");
            drop(pipe);
        }
        let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .expect("etcdctl finished in time")
            .expect("etcdctl output");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs etcdctl and expects success; returns stdout.
    async fn ctl(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.etcdctl(args).await;
        assert!(ok, "etcdctl {args:?} failed: {err}{out}");
        out
    }

    async fn ctl_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-w", "json"]);
        let out = self.ctl(&all).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("etcdctl {args:?} printed no JSON ({e}): {out}"))
    }

    async fn revision(&self) -> i64 {
        self.store.current_revision().await.expect("revision").0
    }
}

fn b64(v: &Value) -> String {
    String::from_utf8(base64_decode(v.as_str().expect("base64 string"))).expect("utf8")
}

/// Decodes standard base64 (etcdctl's JSON output encodes keys and values).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c) << (18 - 6 * i);
        }
        let n = chunk.len() * 6 / 8;
        for i in 0..n {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

fn json_keys(v: &Value) -> Vec<String> {
    v["kvs"].as_array().map(|kvs| kvs.iter().map(|kv| b64(&kv["key"])).collect()).unwrap_or_default()
}

#[tokio::test]
async fn socket_is_private_and_removed_on_shutdown() {
    let server = Server::start().await;
    let mode = std::fs::metadata(&server.sock).expect("socket").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // Open streams do not hold the shutdown: they are ended, and the client sees it.
    let mut c = server.client().await;
    let mut w = c.watch("/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
    assert!(w.message().await.expect("message").expect("created").created());
    let sock = server.sock.clone();
    tokio::time::timeout(Duration::from_secs(3), server.shutdown()).await.expect("prompt shutdown");
    assert!(!sock.exists(), "socket removed on exit");
    let end = tokio::time::timeout(Duration::from_secs(3), w.message()).await.expect("stream ended in time");
    assert!(!matches!(end, Ok(Some(_))), "no more responses after shutdown: {end:?}");
}

#[tokio::test]
async fn a_watcher_that_reads_late_misses_nothing() {
    // A tiny store-side buffer: the watcher falls behind the writer and catches up from
    // the database, while its client reads nothing at all.
    let store_opts = SqliteOptions { watch_buffer: 16, ..Default::default() };
    let server = Server::start_on(store_opts, ServeOptions::default()).await;
    let mut c = server.client().await;
    let from = server.revision().await + 1;
    let mut w = c.watch("/load/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
    assert!(w.message().await.expect("message").expect("created").created());
    let mut writers = Vec::new();
    for t in 0..4 {
        let mut c = server.client().await;
        writers.push(tokio::spawn(async move {
            for i in 0..500 {
                c.put(format!("/load/{t}/{}", i % 50), vec![b'x'; 512], None).await.expect("put");
            }
        }));
    }
    for wr in writers {
        wr.await.expect("writer");
    }
    let to = server.revision().await;
    let mut next = from;
    while next <= to {
        let resp = tokio::time::timeout(Duration::from_secs(10), w.message()).await.expect("in time").expect("message");
        for ev in resp.expect("events").events() {
            assert_eq!(ev.kv().expect("kv").mod_revision(), next, "no gap, no duplicate");
            next += 1;
        }
    }
    assert_eq!(next, to + 1);
    server.shutdown().await;
}

#[tokio::test]
async fn etcdctl_put_get_prefix_keys_only_and_delete() {
    let server = Server::start().await;
    assert_eq!(server.ctl(&["put", "/registry/pods/a", "one"]).await.trim(), "OK");
    server.ctl(&["put", "/registry/pods/b", "two"]).await;
    server.ctl(&["put", "/registry/services/c", "three"]).await;
    server.ctl(&["put", "/other", "x"]).await;

    assert_eq!(server.ctl(&["get", "/registry/pods/a"]).await, "/registry/pods/a\none\n");
    let keys = server.ctl(&["get", "--prefix", "/registry", "--keys-only"]).await;
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(keys, ["/registry/pods/a", "/registry/pods/b", "/registry/services/c"]);

    let v = server.ctl_json(&["get", "--prefix", "/registry/", "--limit", "2"]).await;
    assert_eq!(json_keys(&v), ["/registry/pods/a", "/registry/pods/b"]);
    assert_eq!((v["count"].as_i64(), v["more"].as_bool()), (Some(3), Some(true)));
    assert_eq!(v["header"]["revision"].as_i64(), Some(server.revision().await));
    assert_eq!(v["header"]["member_id"].as_u64(), Some(MEMBER_ID));

    let v = server.ctl_json(&["get", "--prefix", "/registry/", "--order", "DESCEND", "--sort-by", "KEY"]).await;
    assert_eq!(json_keys(&v), ["/registry/services/c", "/registry/pods/b", "/registry/pods/a"]);

    let v = server.ctl_json(&["get", "", "--from-key"]).await;
    assert_eq!(json_keys(&v).len(), 4);

    assert_eq!(server.ctl(&["del", "--prefix", "/registry/pods/"]).await.trim(), "2");
    assert_eq!(server.ctl(&["del", "/nothing"]).await.trim(), "0");
    let keys = server.ctl(&["get", "--prefix", "", "--keys-only"]).await;
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(keys, ["/other", "/registry/services/c"]);

    let (ok, _, err) = server.etcdctl(&["put", "", "v"]).await;
    assert!(!ok);
    assert!(err.contains("key is not provided"), "{err}");
    server.shutdown().await;
}

/// A DeleteRange over thousands of keys is one store request: the answer counts and returns
/// every key, and a watcher with prev_kv gets every delete, the last at the header revision.
#[tokio::test(flavor = "multi_thread")]
async fn a_prefix_delete_of_many_keys_answers_and_notifies_every_key() {
    const KEYS: usize = 3000;
    let server = Server::start().await;
    let mut c = server.client().await;
    let puts: Vec<_> = (0..KEYS)
        .map(|i| {
            let mut kv = c.kv_client();
            async move { kv.put(format!("/many/{i:05}"), format!("v{i}"), None).await.expect("put") }
        })
        .collect();
    futures::future::join_all(puts).await;
    let mut w = c.watch("/many/", Some(WatchOptions::new().with_prefix().with_prev_key())).await.expect("watch");
    let created = w.message().await.expect("message").expect("created");
    assert!(created.created());

    let resp = c.delete("/many/", Some(DeleteOptions::new().with_prefix().with_prev_key())).await.expect("delete");
    assert_eq!((resp.deleted(), resp.prev_kvs().len()), (KEYS as i64, KEYS));
    let revision = resp.header().expect("header").revision();
    assert_eq!(revision, server.revision().await);
    for (i, kv) in resp.prev_kvs().iter().enumerate() {
        assert_eq!(
            (kv.key_str().expect("utf8"), kv.value_str().expect("utf8")),
            (&*format!("/many/{i:05}"), &*format!("v{i}"))
        );
    }
    let mut seen = 0;
    let mut last = 0;
    while seen < KEYS {
        let resp = w.message().await.expect("message").expect("events");
        for ev in resp.events() {
            assert_eq!(ev.event_type(), EventType::Delete);
            let prev = ev.prev_kv().expect("prev_kv");
            assert_eq!(prev.key_str().expect("utf8"), format!("/many/{seen:05}"));
            last = ev.kv().expect("kv").mod_revision();
            seen += 1;
        }
    }
    assert_eq!(last, revision);
    let left = c.get("/many/", Some(GetOptions::new().with_prefix().with_count_only())).await.expect("count");
    assert_eq!(left.count(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn etcdctl_txn_from_stdin() {
    let server = Server::start().await;
    // Create if absent: the compare holds, the put runs, the get sees it.
    let script = "mod(\"/t/key\") = \"0\"\n\nput /t/key created\nget /t/key\n\nget /t/key\n\n";
    let (ok, out, err) = server.etcdctl_stdin(&["txn"], Some(script)).await;
    assert!(ok, "{err}");
    assert_eq!(out, "SUCCESS\n\nOK\n\n/t/key\ncreated\n");
    // Again: the key exists now, so the failure branch answers.
    let (ok, out, err) = server.etcdctl_stdin(&["txn"], Some(script)).await;
    assert!(ok, "{err}");
    assert_eq!(out, "FAILURE\n\n/t/key\ncreated\n");
    // A value compare takes the read-check-write path.
    let script = "value(\"/t/key\") = \"created\"\n\nput /t/key updated\n\n\n";
    let (ok, out, err) = server.etcdctl_stdin(&["txn"], Some(script)).await;
    assert!(ok, "{err}");
    assert_eq!(out, "SUCCESS\n\nOK\n");
    assert_eq!(server.ctl(&["get", "/t/key", "--print-value-only"]).await, "updated\n");
    // Two keys in one transaction cannot be made atomic here: refused, nothing written.
    let script = "mod(\"/t/key\") > \"0\"\n\nput /t/other x\n\n\n";
    let (ok, _, err) = server.etcdctl_stdin(&["txn"], Some(script)).await;
    assert!(!ok);
    assert!(err.contains("not supported"), "{err}");
    assert_eq!(server.ctl(&["get", "/t/other"]).await, "");
    server.shutdown().await;
}

#[tokio::test]
async fn etcdctl_watch_prefix_sees_writes_in_order() {
    let server = Server::start().await;
    server.ctl(&["put", "/w/before", "0"]).await;
    let from = server.revision().await + 1;
    let mut child = tokio::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=unix://{}", server.sock.display()))
        .args(["watch", "--prefix", "/w/", "--prev-kv", "--rev", &from.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn etcdctl watch");
    server.ctl(&["put", "/w/a", "1"]).await;
    server.ctl(&["put", "/other", "x"]).await;
    server.ctl(&["put", "/w/a", "2"]).await;
    server.ctl(&["del", "/w/before"]).await;
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut got = Vec::new();
    while got.len() < 13 {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("watch output in time")
            .expect("read")
            .expect("watch still running");
        got.push(line);
    }
    // With --prev-kv etcdctl prints the previous key-value before the new one.
    assert_eq!(got, ["PUT", "/w/a", "1", "PUT", "/w/a", "1", "/w/a", "2", "DELETE", "/w/before", "0", "/w/before", ""]);
    child.kill().await.expect("kill watch");
    server.shutdown().await;
}

#[tokio::test]
async fn etcdctl_leases() {
    let server = Server::start().await;
    let out = server.ctl(&["lease", "grant", "60"]).await;
    // "lease 694d7a5b8d2e1b05 granted with TTL(60s)"
    let id = out.split_whitespace().nth(1).expect("lease id").to_string();
    assert!(out.contains("granted with TTL(60s)"), "{out}");
    server.ctl(&["put", "--lease", &id, "/l/a", "1"]).await;
    server.ctl(&["put", "--lease", &id, "/l/b", "2"]).await;
    let out = server.ctl(&["lease", "timetolive", &id, "--keys"]).await;
    assert!(out.contains("granted with TTL(60s)") && out.contains("attached keys([/l/a /l/b])"), "{out}");
    let out = server.ctl(&["lease", "list"]).await;
    assert!(out.contains("found 1 leases") && out.contains(&id), "{out}");
    let out = server.ctl(&["lease", "keep-alive", "--once", &id]).await;
    assert!(out.contains("keepalived with TTL(60)"), "{out}");
    let out = server.ctl(&["lease", "revoke", &id]).await;
    assert!(out.contains("revoked"), "{out}");
    assert_eq!(server.ctl(&["get", "--prefix", "/l/"]).await, "");
    let out = server.ctl(&["lease", "timetolive", &id]).await;
    assert!(out.contains("already expired"), "{out}");
    let (ok, _, err) = server.etcdctl(&["lease", "revoke", &id]).await;
    assert!(!ok && err.contains("requested lease not found"), "{err}");
    let (ok, _, err) = server.etcdctl(&["put", "--lease", "1234abcd", "/l/c", "3"]).await;
    assert!(!ok && err.contains("requested lease not found"), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn etcdctl_status_members_health_and_compaction() {
    let server = Server::start().await;
    for i in 0..5 {
        server.ctl(&["put", "/c/k", &i.to_string()]).await;
    }
    let rev = server.revision().await;
    let v = server.ctl_json(&["endpoint", "status"]).await;
    let st = &v[0]["Status"];
    assert_eq!(st["version"].as_str(), Some(ETCD_VERSION));
    assert_eq!(st["leader"].as_u64(), Some(MEMBER_ID));
    assert_eq!(st["header"]["revision"].as_i64(), Some(rev));
    assert!(st["dbSize"].as_i64().is_some_and(|s| s > 0), "{st}");
    assert_eq!(st["raftIndex"].as_i64(), Some(rev));

    let out = server.ctl(&["member", "list"]).await;
    assert!(out.contains(&format!("{MEMBER_ID:x}")), "{out}");
    assert!(out.contains(&format!("unix://{}", server.sock.display())), "{out}");
    let (ok, out, err) = server.etcdctl(&["endpoint", "health"]).await;
    assert!(ok && format!("{out}{err}").contains("is healthy"), "{out}{err}");

    assert_eq!(server.ctl(&["get", "/c/k", "--rev", &(rev - 2).to_string(), "--print-value-only"]).await, "2\n");
    let out = server.ctl(&["compaction", &(rev - 1).to_string()]).await;
    assert!(out.contains(&format!("compacted revision {}", rev - 1)), "{out}");
    let (ok, _, err) = server.etcdctl(&["get", "/c/k", "--rev", &(rev - 2).to_string()]).await;
    assert!(!ok && err.contains("required revision has been compacted"), "{err}");
    let (ok, _, err) = server.etcdctl(&["get", "/c/k", "--rev", &(rev + 10).to_string()]).await;
    assert!(!ok && err.contains("required revision is a future revision"), "{err}");
    let (ok, _, err) = server.etcdctl(&["defrag"]).await;
    assert!(!ok && err.contains("not supported"), "{err}");
    server.shutdown().await;
}

fn status_of(err: etcd_client::Error) -> tonic::Status {
    match err {
        etcd_client::Error::GRpcStatus(status) => status,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}

fn header_rev(h: Option<&etcd_client::ResponseHeader>) -> i64 {
    h.expect("header").revision()
}

#[tokio::test]
async fn kubernetes_shaped_transactions() {
    let server = Server::start().await;
    kubernetes_transactions(&server).await;
    server.shutdown().await;
}

#[tokio::test]
async fn kubernetes_transactions_and_watches_over_the_etcd_backend() {
    let server = Server::start_over_etcd().await;
    kubernetes_transactions(&server).await;
    watch_old_revision_then_live(&server).await;
    server.shutdown().await;
}

async fn kubernetes_transactions(server: &Server) {
    let mut c = server.client().await;
    let key = "/registry/configmaps/default/cm";
    let create =
        || Txn::new().when([Compare::mod_revision(key, CompareOp::Equal, 0)]).and_then([TxnOp::put(key, "v1", None)]);
    // Create: the key is absent, the put runs at the next revision.
    let before = server.revision().await;
    let resp = c.txn(create()).await.expect("create");
    assert!(resp.succeeded());
    let rev1 = header_rev(resp.header());
    assert_eq!(rev1, before + 1);
    match resp.op_responses().as_slice() {
        [TxnOpResponse::Put(p)] => assert_eq!(header_rev(p.header()), rev1),
        other => panic!("unexpected responses {other:?}"),
    }
    // Creating again fails and, with no Else, answers nothing more.
    let resp = c.txn(create()).await.expect("create again");
    assert!(!resp.succeeded());
    assert!(resp.op_responses().is_empty());
    assert_eq!(header_rev(resp.header()), rev1);

    // Guarded update with the Else Get kube-apiserver uses to refresh a stale object.
    let update = |rev: i64, value: &str| {
        Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
            .and_then([TxnOp::put(key, value, Some(PutOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key, None)])
    };
    let resp = c.txn(update(rev1, "v2")).await.expect("update");
    assert!(resp.succeeded());
    let rev2 = header_rev(resp.header());
    match resp.op_responses().as_slice() {
        [TxnOpResponse::Put(p)] => {
            let prev = p.prev_key().expect("prev kv");
            assert_eq!((prev.value(), prev.mod_revision()), (&b"v1"[..], rev1));
        }
        other => panic!("unexpected responses {other:?}"),
    }
    let resp = c.txn(update(rev1, "stale")).await.expect("stale update");
    assert!(!resp.succeeded());
    assert_eq!(header_rev(resp.header()), rev2);
    match resp.op_responses().as_slice() {
        [TxnOpResponse::Get(g)] => {
            let kv = &g.kvs()[0];
            assert_eq!(
                (kv.value(), kv.mod_revision(), kv.create_revision(), kv.version()),
                (&b"v2"[..], rev2, rev1, 2)
            );
            assert_eq!(header_rev(g.header()), rev2);
        }
        other => panic!("unexpected responses {other:?}"),
    }

    // Guarded delete, stale then current.
    let delete = |rev: i64| {
        Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, rev)])
            .and_then([TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()))])
            .or_else([TxnOp::get(key, None)])
    };
    let resp = c.txn(delete(rev1)).await.expect("stale delete");
    assert!(!resp.succeeded());
    let resp = c.txn(delete(rev2)).await.expect("delete");
    assert!(resp.succeeded());
    match resp.op_responses().as_slice() {
        [TxnOpResponse::Delete(d)] => {
            assert_eq!(d.deleted(), 1);
            assert_eq!(d.prev_kvs()[0].value(), b"v2");
        }
        other => panic!("unexpected responses {other:?}"),
    }
    let resp = c.txn(delete(rev2)).await.expect("delete again");
    assert!(!resp.succeeded());
    match resp.op_responses().as_slice() {
        [TxnOpResponse::Get(g)] => assert_eq!((g.kvs().len(), g.count()), (0, 0)),
        other => panic!("unexpected responses {other:?}"),
    }

    // kube-apiserver's compaction bookkeeping compares the version of one key.
    let bump = |version: i64, value: &str| {
        Txn::new()
            .when([Compare::version("compact_rev_key", CompareOp::Equal, version)])
            .and_then([TxnOp::put("compact_rev_key", value, None)])
            .or_else([TxnOp::get("compact_rev_key", None)])
    };
    assert!(c.txn(bump(0, "10")).await.expect("first").succeeded());
    assert!(c.txn(bump(1, "20")).await.expect("second").succeeded());
    let resp = c.txn(bump(1, "30")).await.expect("lost race");
    assert!(!resp.succeeded());
    match resp.op_responses().as_slice() {
        [TxnOpResponse::Get(g)] => assert_eq!((g.kvs()[0].version(), g.kvs()[0].value()), (2, &b"20"[..])),
        other => panic!("unexpected responses {other:?}"),
    }

    // Reads without compares are answered at one revision.
    c.put("/r/a", "1", None).await.expect("put");
    c.put("/r/b", "2", None).await.expect("put");
    let resp = c
        .txn(Txn::new().and_then([TxnOp::get("/r/", Some(GetOptions::new().with_prefix())), TxnOp::get("/r/a", None)]))
        .await
        .expect("reads");
    assert!(resp.succeeded());
    let now = server.revision().await;
    assert_eq!(header_rev(resp.header()), now);
    match resp.op_responses().as_slice() {
        [TxnOpResponse::Get(all), TxnOpResponse::Get(one)] => {
            assert_eq!((all.count(), one.count()), (2, 1));
            assert_eq!((header_rev(all.header()), header_rev(one.header())), (now, now));
        }
        other => panic!("unexpected responses {other:?}"),
    }
}

#[tokio::test]
async fn unsupported_transactions_are_refused_with_a_clear_error() {
    let server = Server::start().await;
    let mut c = server.client().await;
    c.put("/a", "1", None).await.expect("put");
    let before = server.revision().await;
    let txns = [
        Txn::new().when([Compare::mod_revision("/a", CompareOp::Greater, 0)]).and_then([TxnOp::put("/b", "x", None)]),
        Txn::new()
            .when([Compare::value("/a", CompareOp::Equal, "1"), Compare::value("/b", CompareOp::Equal, "1")])
            .and_then([TxnOp::put("/a", "2", None)]),
        Txn::new().and_then([TxnOp::put("/a", "2", None), TxnOp::put("/b", "2", None)]),
        Txn::new()
            .when([Compare::version("/a", CompareOp::Equal, 1)])
            .and_then([TxnOp::delete("/", Some(DeleteOptions::new().with_prefix()))]),
    ];
    for txn in txns {
        let status = status_of(c.txn(txn).await.expect_err("refused"));
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
        assert!(status.message().contains("not supported"), "{}", status.message());
    }
    assert_eq!(server.revision().await, before, "nothing was written");
    let status = status_of(
        c.txn(Txn::new().and_then([TxnOp::put("/a", "2", None), TxnOp::put("/a", "3", None)])).await.expect_err("dup"),
    );
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::InvalidArgument, "etcdserver: duplicate key given in txn request")
    );
    server.shutdown().await;
}

#[tokio::test]
async fn concurrent_read_check_write_transactions_are_linearizable() {
    let server = Server::start().await;
    let mut c = server.client().await;
    c.put("/counter", "0", None).await.expect("put");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 10 {
                let cur = c.get("/counter", None).await.expect("get").kvs()[0].value_str().expect("utf8").to_string();
                let next = (cur.parse::<i64>().expect("number") + 1).to_string();
                // A value compare: served by reading, checking and writing guarded.
                let txn = Txn::new()
                    .when([Compare::value("/counter", CompareOp::Equal, cur)])
                    .and_then([TxnOp::put("/counter", next, None)]);
                if c.txn(txn).await.expect("txn").succeeded() {
                    done += 1;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let resp = c.get("/counter", None).await.expect("get");
    assert_eq!(resp.kvs()[0].value_str().expect("utf8"), "80");
    assert_eq!(resp.kvs()[0].version(), 81);
    server.shutdown().await;
}

#[tokio::test]
async fn range_options_match_etcd() {
    let server = Server::start().await;
    let mut c = server.client().await;
    for (k, v) in [("/s/c", "1"), ("/s/a", "3"), ("/s/b", "2")] {
        c.put(k, v, None).await.expect("put");
    }
    let first = server.revision().await - 2;
    c.put("/s/c", "4", None).await.expect("put");
    let keys = |r: &etcd_client::GetResponse| {
        r.kvs().iter().map(|kv| kv.key_str().expect("utf8").to_string()).collect::<Vec<_>>()
    };

    let r = c.get("/s/", Some(GetOptions::new().with_prefix().with_limit(2))).await.expect("get");
    assert_eq!((keys(&r), r.more(), r.count()), (vec!["/s/a".to_string(), "/s/b".to_string()], true, 3));
    let r = c.get("/s/", Some(GetOptions::new().with_prefix().with_count_only())).await.expect("get");
    assert_eq!((r.kvs().len(), r.count(), r.more()), (0, 3, false));
    let r = c
        .get("/s/", Some(GetOptions::new().with_prefix().with_sort(SortTarget::Value, SortOrder::Descend)))
        .await
        .expect("get");
    assert_eq!(keys(&r), ["/s/c", "/s/a", "/s/b"]);
    let r = c
        .get(
            "/s/",
            Some(GetOptions::new().with_prefix().with_sort(SortTarget::Create, SortOrder::Ascend).with_limit(1)),
        )
        .await
        .expect("get");
    assert_eq!((keys(&r), r.more()), (vec!["/s/c".to_string()], true));
    let r = c.get("/s/", Some(GetOptions::new().with_prefix().with_min_mod_revision(first + 2))).await.expect("get");
    assert_eq!((keys(&r), r.count()), (vec!["/s/b".to_string(), "/s/c".to_string()], 3));
    let r = c.get("/s/", Some(GetOptions::new().with_prefix().with_keys_only())).await.expect("get");
    assert!(r.kvs().iter().all(|kv| kv.value().is_empty()) && r.kvs().len() == 3);
    let r = c.get("/s/c", Some(GetOptions::new().with_revision(first))).await.expect("get");
    assert_eq!(r.kvs()[0].value(), b"1");
    assert_eq!(r.header().expect("header").revision(), server.revision().await, "etcd stamps past reads with now");

    // ignore_value keeps the value, and needs the key to exist.
    let lease = c.lease_grant(60, None).await.expect("lease").id();
    c.put("/s/a", "", Some(PutOptions::new().with_ignore_value().with_lease(lease))).await.expect("ignore value");
    let kv = c.get("/s/a", None).await.expect("get").kvs()[0].clone();
    assert_eq!((kv.value(), kv.lease()), (&b"3"[..], lease));
    let status =
        status_of(c.put("/s/none", "", Some(PutOptions::new().with_ignore_value())).await.expect_err("absent"));
    assert_eq!(status.message(), "etcdserver: key not found");
    let status = status_of(c.get("", None).await.expect_err("empty key"));
    assert_eq!((status.code(), status.message()), (tonic::Code::InvalidArgument, "etcdserver: key is not provided"));
    server.shutdown().await;
}

#[tokio::test]
async fn watch_from_an_old_revision_with_prev_kv_then_live() {
    let server = Server::start().await;
    watch_old_revision_then_live(&server).await;
    server.shutdown().await;
}

async fn watch_old_revision_then_live(server: &Server) {
    let mut c = server.client().await;
    let r1 = c.put("/pods/a", "1", None).await.expect("put").header().expect("header").revision();
    c.put("/pods/a", "2", None).await.expect("put");
    c.put("/other", "x", None).await.expect("put");
    c.delete("/pods/a", None).await.expect("delete");

    let mut w = c
        .watch("/pods/", Some(WatchOptions::new().with_prefix().with_start_revision(r1).with_prev_key()))
        .await
        .expect("watch");
    let created = w.message().await.expect("message").expect("created");
    assert!(created.created());
    let id = created.watch_id();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let resp = w.message().await.expect("message").expect("events");
        assert_eq!(resp.watch_id(), id);
        for ev in resp.events() {
            let kv = ev.kv().expect("kv");
            let prev = ev.prev_kv().map(|p| p.value_str().expect("utf8").to_string());
            seen.push((ev.event_type(), kv.value_str().expect("utf8").to_string(), kv.mod_revision() - r1, prev));
        }
    }
    assert_eq!(
        seen,
        [
            (EventType::Put, "1".to_string(), 0, None),
            (EventType::Put, "2".to_string(), 1, Some("1".to_string())),
            (EventType::Delete, String::new(), 3, Some("2".to_string())),
        ]
    );
    c.put("/pods/b", "live", None).await.expect("put");
    let resp = w.message().await.expect("message").expect("live event");
    assert_eq!(resp.events()[0].kv().expect("kv").key(), b"/pods/b");
    assert!(resp.events()[0].prev_kv().is_none());

    // A client-wide progress request: one response with watch id -1 at the current revision.
    w.request_progress().await.expect("progress");
    let resp = w.message().await.expect("message").expect("progress");
    assert_eq!((resp.watch_id(), resp.events().len()), (-1, 0));
    assert_eq!(resp.header().expect("header").revision(), server.revision().await);

    // Filters and a second watch on the same stream.
    w.watch("/pods/", Some(WatchOptions::new().with_prefix().with_filters([etcd_client::WatchFilterType::NoPut])))
        .await
        .expect("second watch");
    let created = w.message().await.expect("message").expect("created");
    assert!(created.created() && created.watch_id() != id);
    let id2 = created.watch_id();
    c.put("/pods/c", "1", None).await.expect("put");
    c.delete("/pods/c", None).await.expect("delete");
    let mut got = Vec::new();
    while got.len() < 3 {
        let resp = w.message().await.expect("message").expect("events");
        for ev in resp.events() {
            got.push((resp.watch_id(), ev.event_type()));
        }
    }
    got.sort_by_key(|(id, _)| *id);
    assert_eq!(got, [(id, EventType::Put), (id, EventType::Delete), (id2, EventType::Delete)]);

    w.cancel(id).await.expect("cancel");
    let resp = w.message().await.expect("message").expect("canceled");
    assert!(resp.canceled() && resp.watch_id() == id);
    c.put("/pods/d", "1", None).await.expect("put");
    c.delete("/pods/d", None).await.expect("delete");
    let resp = w.message().await.expect("message").expect("only the second watch remains");
    assert_eq!((resp.watch_id(), resp.events()[0].event_type()), (id2, EventType::Delete));
}

#[tokio::test]
async fn compacted_revisions_fail_reads_and_watches() {
    let server = Server::start().await;
    let mut c = server.client().await;
    let old = c.put("/k", "1", None).await.expect("put").header().expect("header").revision();
    c.put("/k", "2", None).await.expect("put");
    let compact_to = c.put("/k", "3", None).await.expect("put").header().expect("header").revision();
    c.compact(compact_to, None).await.expect("compact");

    let status = status_of(c.get("/k", Some(GetOptions::new().with_revision(old))).await.expect_err("compacted"));
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted")
    );
    let status = status_of(c.compact(old, None).await.expect_err("compacting again"));
    assert_eq!(status.message(), "etcdserver: mvcc: required revision has been compacted");
    let status = status_of(c.compact(compact_to + 100, None).await.expect_err("future"));
    assert_eq!(status.message(), "etcdserver: mvcc: required revision is a future revision");

    let mut w = c.watch("/k", Some(WatchOptions::new().with_start_revision(old))).await.expect("watch");
    let created = w.message().await.expect("message").expect("created");
    assert!(created.created());
    let resp = w.message().await.expect("message").expect("compacted");
    assert!(resp.canceled());
    assert_eq!((resp.watch_id(), resp.compact_revision()), (created.watch_id(), compact_to));
    // From the compaction revision on, history is still there.
    let mut w = c.watch("/k", Some(WatchOptions::new().with_start_revision(compact_to))).await.expect("watch");
    assert!(w.message().await.expect("message").expect("created").created());
    let resp = w.message().await.expect("message").expect("event");
    assert_eq!(resp.events()[0].kv().expect("kv").value(), b"3");
    server.shutdown().await;
}

#[tokio::test]
async fn progress_notify_reports_quiet_watches() {
    let opts = ServeOptions { progress_notify_interval: Duration::from_millis(200), ..Default::default() };
    let server = Server::start_with(opts).await;
    let mut c = server.client().await;
    c.put("/p/x", "1", None).await.expect("put");
    let mut w = c.watch("/p/", Some(WatchOptions::new().with_prefix().with_progress_notify())).await.expect("watch");
    let created = w.message().await.expect("message").expect("created");
    c.put("/unrelated", "1", None).await.expect("put");
    let now = server.revision().await;
    // Ticks keep coming while the watch stays quiet; one after the unrelated write
    // reports its revision (a slow machine may fit an earlier tick in before it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = tokio::time::timeout_at(deadline, w.message())
            .await
            .expect("progress at the current revision in time")
            .expect("message")
            .expect("progress");
        assert_eq!((resp.watch_id(), resp.events().len()), (created.watch_id(), 0));
        let rev = resp.header().expect("header").revision();
        assert!(rev <= now, "progress {rev} beyond the store's revision {now}");
        if rev == now {
            break;
        }
    }
    server.shutdown().await;
}

#[tokio::test]
async fn leases_through_the_client() {
    let server = Server::start().await;
    let mut c = server.client().await;
    let g = c.lease_grant(1, None).await.expect("grant");
    assert_eq!(g.ttl(), 2, "etcd's minimum TTL");
    let g =
        c.lease_grant(30, Some(etcd_client::LeaseGrantOptions::new().with_id(0x1234))).await.expect("grant with id");
    assert_eq!((g.id(), g.ttl()), (0x1234, 30));
    let status = status_of(
        c.lease_grant(30, Some(etcd_client::LeaseGrantOptions::new().with_id(0x1234))).await.expect_err("exists"),
    );
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::FailedPrecondition, "etcdserver: lease already exists")
    );
    c.put("/lease/k", "v", Some(PutOptions::new().with_lease(0x1234))).await.expect("put");
    let (mut keeper, mut stream) = c.lease_keep_alive(0x1234).await.expect("keep alive");
    keeper.keep_alive().await.expect("send");
    let resp = stream.message().await.expect("message").expect("response");
    assert_eq!((resp.id(), resp.ttl()), (0x1234, 30));
    let ttl =
        c.lease_time_to_live(0x1234, Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys())).await.expect("ttl");
    assert_eq!((ttl.granted_ttl(), ttl.keys()), (30, &[b"/lease/k".to_vec()][..]));
    let leases: Vec<i64> = c.leases().await.expect("leases").leases().iter().map(|l| l.id()).collect();
    assert_eq!(leases.len(), 2);
    assert!(leases.contains(&0x1234));
    c.lease_revoke(0x1234).await.expect("revoke");
    keeper.keep_alive().await.expect("send");
    let resp = stream.message().await.expect("message").expect("response");
    assert_eq!(resp.ttl(), 0, "a revoked lease keeps alive with TTL 0");
    assert!(c.get("/lease/k", None).await.expect("get").kvs().is_empty());
    server.shutdown().await;
}
