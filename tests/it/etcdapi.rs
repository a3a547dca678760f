//! The etcd API served over the SQLite store, driven by real clients: Debian's `etcdctl`
//! (etcd 3.4) and the gRPC clients generated from etcd's API (`k3rs::etcdproto`), both over
//! the unix socket.
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k3rs::etcdapi::{serve_with, EtcdApiError, ServeOptions, ETCD_VERSION, MEMBER_ID};
use k3rs::etcdproto::etcdserverpb::compare::{CompareResult, CompareTarget};
use k3rs::etcdproto::etcdserverpb::range_request::{SortOrder, SortTarget};
use k3rs::etcdproto::etcdserverpb::watch_create_request::FilterType;
use k3rs::etcdproto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest,
};
use k3rs::etcdproto::mvccpb::event::EventType;
use k3rs::etcdproto::{
    KvClient, LeaseClient, PbCompactionRequest, PbCompare, PbDeleteRequest, PbDeleteResponse, PbPutRequest,
    PbPutResponse, PbRangeRequest, PbRangeResponse, PbResponseHeader, PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse,
    PbTxnRequest, PbTxnRequestOp, PbTxnResponse, PbWatchRequest, PbWatchRequestUnion, PbWatchResponse, WatchClient,
};
use k3rs::store::etcd::{EtcdOptions, EtcdStore};
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use k3rs::store::Store;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use crate::common;
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
        Client {
            kv: KvClient::new(channel.clone()),
            watch: WatchClient::new(channel.clone()),
            lease: LeaseClient::new(channel),
        }
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

/// The etcd services the tests call, over one connection to the socket.
struct Client {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    lease: LeaseClient<Channel>,
}

impl Client {
    async fn put(&mut self, key: &str, value: impl Into<Vec<u8>>) -> Result<PbPutResponse, Status> {
        self.put_with(put(key, value)).await
    }

    async fn put_with(&mut self, req: PbPutRequest) -> Result<PbPutResponse, Status> {
        Ok(self.kv.put(req).await?.into_inner())
    }

    async fn get(&mut self, req: PbRangeRequest) -> Result<PbRangeResponse, Status> {
        Ok(self.kv.range(req).await?.into_inner())
    }

    async fn delete(&mut self, key: &str) -> Result<PbDeleteResponse, Status> {
        Ok(self.kv.delete_range(PbDeleteRequest { key: key.into(), ..Default::default() }).await?.into_inner())
    }

    async fn txn(&mut self, req: PbTxnRequest) -> Result<PbTxnResponse, Status> {
        Ok(self.kv.txn(req).await?.into_inner())
    }

    async fn compact(&mut self, revision: i64) -> Result<(), Status> {
        self.kv.compact(PbCompactionRequest { revision, physical: false }).await.map(|_| ())
    }

    /// Opens a watch stream with one watch on it.
    async fn watch(&mut self, create: WatchCreateRequest) -> Result<Watcher, Status> {
        let (requests, rx) = mpsc::channel(16);
        let watcher = Watcher { requests, responses: None };
        watcher.send(PbWatchRequestUnion::CreateRequest(create)).await;
        let responses = self.watch.watch(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Watcher { responses: Some(responses), ..watcher })
    }

    async fn lease_grant(&mut self, ttl: i64, id: i64) -> Result<k3rs::etcdproto::PbLeaseGrantResponse, Status> {
        Ok(self.lease.lease_grant(LeaseGrantRequest { ttl, id }).await?.into_inner())
    }

    /// Opens a keep-alive stream: renewals go in through the sender.
    async fn lease_keep_alive(
        &mut self,
    ) -> Result<(mpsc::Sender<LeaseKeepAliveRequest>, Streaming<LeaseKeepAliveResponse>), Status> {
        let (keeper, rx) = mpsc::channel(16);
        let answers = self.lease.lease_keep_alive(ReceiverStream::new(rx)).await?.into_inner();
        Ok((keeper, answers))
    }
}

/// A watch stream: requests go in through `requests`, answers come from `responses`.
struct Watcher {
    requests: mpsc::Sender<PbWatchRequest>,
    responses: Option<Streaming<PbWatchResponse>>,
}

impl Watcher {
    async fn send(&self, request: PbWatchRequestUnion) {
        self.requests.send(PbWatchRequest { request_union: Some(request) }).await.expect("watch stream open");
    }

    async fn message(&mut self) -> Result<Option<PbWatchResponse>, Status> {
        self.responses.as_mut().expect("stream opened").message().await
    }

    async fn watch(&self, create: WatchCreateRequest) {
        self.send(PbWatchRequestUnion::CreateRequest(create)).await
    }

    async fn cancel(&self, watch_id: i64) {
        self.send(PbWatchRequestUnion::CancelRequest(WatchCancelRequest { watch_id })).await
    }

    async fn request_progress(&self) {
        self.send(PbWatchRequestUnion::ProgressRequest(WatchProgressRequest {})).await
    }
}

/// The end of the range of keys starting with `prefix` (all keys for an empty prefix).
fn prefix_end(prefix: &str) -> Vec<u8> {
    k3rs::etcdproto::prefix_range_end(prefix.as_bytes())
}

/// A read of `key` alone.
fn get(key: &str) -> PbRangeRequest {
    PbRangeRequest { key: key.into(), ..Default::default() }
}

/// A read of every key starting with `prefix`.
fn get_prefix(prefix: &str) -> PbRangeRequest {
    PbRangeRequest { key: prefix.into(), range_end: prefix_end(prefix), ..Default::default() }
}

fn put(key: &str, value: impl Into<Vec<u8>>) -> PbPutRequest {
    PbPutRequest { key: key.into(), value: value.into(), ..Default::default() }
}

/// A watch of every key starting with `prefix`.
fn watch_prefix(prefix: &str) -> WatchCreateRequest {
    WatchCreateRequest { key: prefix.into(), range_end: prefix_end(prefix), ..Default::default() }
}

fn compare(key: &str, result: CompareResult, target: CompareTarget, value: PbTargetUnion) -> PbCompare {
    PbCompare {
        key: key.into(),
        result: result as i32,
        target: target as i32,
        target_union: Some(value),
        range_end: vec![],
    }
}

fn mod_revision_is(key: &str, result: CompareResult, revision: i64) -> PbCompare {
    compare(key, result, CompareTarget::Mod, PbTargetUnion::ModRevision(revision))
}

fn version_is(key: &str, version: i64) -> PbCompare {
    compare(key, CompareResult::Equal, CompareTarget::Version, PbTargetUnion::Version(version))
}

fn value_is(key: &str, value: impl Into<Vec<u8>>) -> PbCompare {
    compare(key, CompareResult::Equal, CompareTarget::Value, PbTargetUnion::Value(value.into()))
}

fn txn(compare: Vec<PbCompare>, success: Vec<PbTxnOpRequest>, failure: Vec<PbTxnOpRequest>) -> PbTxnRequest {
    let ops = |ops: Vec<PbTxnOpRequest>| ops.into_iter().map(|op| PbTxnRequestOp { request: Some(op) }).collect();
    PbTxnRequest { compare, success: ops(success), failure: ops(failure) }
}

/// The answers of a transaction's operations.
fn ops(resp: &PbTxnResponse) -> Vec<&PbTxnOpResponse> {
    resp.responses.iter().map(|r| r.response.as_ref().expect("an answer per operation")).collect()
}

fn utf8(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes).expect("utf8")
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
    let mut w = c.watch(watch_prefix("/")).await.expect("watch");
    assert!(w.message().await.expect("message").expect("created").created);
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
    let mut w = c.watch(watch_prefix("/load/")).await.expect("watch");
    assert!(w.message().await.expect("message").expect("created").created);
    let mut writers = Vec::new();
    for t in 0..4 {
        let mut c = server.client().await;
        writers.push(tokio::spawn(async move {
            for i in 0..500 {
                c.put(&format!("/load/{t}/{}", i % 50), vec![b'x'; 512]).await.expect("put");
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
        for ev in resp.expect("events").events {
            assert_eq!(ev.kv.expect("kv").mod_revision, next, "no gap, no duplicate");
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
    // 64 puts in flight: the subject is the delete, not how many streams one connection holds.
    futures::stream::iter(0..KEYS)
        .map(|i| {
            let mut kv = c.kv.clone();
            async move { kv.put(put(&format!("/many/{i:05}"), format!("v{i}"))).await.expect("put") }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    let mut w = c.watch(WatchCreateRequest { prev_kv: true, ..watch_prefix("/many/") }).await.expect("watch");
    let created = w.message().await.expect("message").expect("created");
    assert!(created.created);

    let range = get_prefix("/many/");
    let delete = PbDeleteRequest { key: range.key, range_end: range.range_end, prev_kv: true };
    let resp = c.kv.delete_range(delete).await.expect("delete").into_inner();
    assert_eq!((resp.deleted, resp.prev_kvs.len()), (KEYS as i64, KEYS));
    let revision = header_rev(resp.header.as_ref());
    assert_eq!(revision, server.revision().await);
    for (i, kv) in resp.prev_kvs.iter().enumerate() {
        assert_eq!((utf8(&kv.key), utf8(&kv.value)), (&*format!("/many/{i:05}"), &*format!("v{i}")));
    }
    let mut seen = 0;
    let mut last = 0;
    while seen < KEYS {
        let resp = w.message().await.expect("message").expect("events");
        for ev in &resp.events {
            assert_eq!(ev.r#type(), EventType::Delete);
            let prev = ev.prev_kv.as_ref().expect("prev_kv");
            assert_eq!(utf8(&prev.key), format!("/many/{seen:05}"));
            last = ev.kv.as_ref().expect("kv").mod_revision;
            seen += 1;
        }
    }
    assert_eq!(last, revision);
    let left = c.get(PbRangeRequest { count_only: true, ..get_prefix("/many/") }).await.expect("count");
    assert_eq!(left.count, 0);
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

fn header_rev(h: Option<&PbResponseHeader>) -> i64 {
    h.expect("header").revision
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
    let create = || {
        txn(
            vec![mod_revision_is(key, CompareResult::Equal, 0)],
            vec![PbTxnOpRequest::RequestPut(put(key, "v1"))],
            vec![],
        )
    };
    // Create: the key is absent, the put runs at the next revision.
    let before = server.revision().await;
    let resp = c.txn(create()).await.expect("create");
    assert!(resp.succeeded);
    let rev1 = header_rev(resp.header.as_ref());
    assert_eq!(rev1, before + 1);
    match ops(&resp).as_slice() {
        [PbTxnOpResponse::ResponsePut(p)] => assert_eq!(header_rev(p.header.as_ref()), rev1),
        other => panic!("unexpected responses {other:?}"),
    }
    // Creating again fails and, with no Else, answers nothing more.
    let resp = c.txn(create()).await.expect("create again");
    assert!(!resp.succeeded);
    assert!(ops(&resp).is_empty());
    assert_eq!(header_rev(resp.header.as_ref()), rev1);

    // Guarded update with the Else Get kube-apiserver uses to refresh a stale object.
    let update = |rev: i64, value: &str| {
        txn(
            vec![mod_revision_is(key, CompareResult::Equal, rev)],
            vec![PbTxnOpRequest::RequestPut(PbPutRequest { prev_kv: true, ..put(key, value) })],
            vec![PbTxnOpRequest::RequestRange(get(key))],
        )
    };
    let resp = c.txn(update(rev1, "v2")).await.expect("update");
    assert!(resp.succeeded);
    let rev2 = header_rev(resp.header.as_ref());
    match ops(&resp).as_slice() {
        [PbTxnOpResponse::ResponsePut(p)] => {
            let prev = p.prev_kv.as_ref().expect("prev kv");
            assert_eq!((&prev.value[..], prev.mod_revision), (&b"v1"[..], rev1));
        }
        other => panic!("unexpected responses {other:?}"),
    }
    let resp = c.txn(update(rev1, "stale")).await.expect("stale update");
    assert!(!resp.succeeded);
    assert_eq!(header_rev(resp.header.as_ref()), rev2);
    match ops(&resp).as_slice() {
        [PbTxnOpResponse::ResponseRange(g)] => {
            let kv = &g.kvs[0];
            assert_eq!((&kv.value[..], kv.mod_revision, kv.create_revision, kv.version), (&b"v2"[..], rev2, rev1, 2));
            assert_eq!(header_rev(g.header.as_ref()), rev2);
        }
        other => panic!("unexpected responses {other:?}"),
    }

    // Guarded delete, stale then current.
    let delete = |rev: i64| {
        txn(
            vec![mod_revision_is(key, CompareResult::Equal, rev)],
            vec![PbTxnOpRequest::RequestDeleteRange(PbDeleteRequest {
                key: key.into(),
                prev_kv: true,
                ..Default::default()
            })],
            vec![PbTxnOpRequest::RequestRange(get(key))],
        )
    };
    let resp = c.txn(delete(rev1)).await.expect("stale delete");
    assert!(!resp.succeeded);
    let resp = c.txn(delete(rev2)).await.expect("delete");
    assert!(resp.succeeded);
    match ops(&resp).as_slice() {
        [PbTxnOpResponse::ResponseDeleteRange(d)] => {
            assert_eq!(d.deleted, 1);
            assert_eq!(d.prev_kvs[0].value, b"v2");
        }
        other => panic!("unexpected responses {other:?}"),
    }
    let resp = c.txn(delete(rev2)).await.expect("delete again");
    assert!(!resp.succeeded);
    match ops(&resp).as_slice() {
        [PbTxnOpResponse::ResponseRange(g)] => assert_eq!((g.kvs.len(), g.count), (0, 0)),
        other => panic!("unexpected responses {other:?}"),
    }

    // kube-apiserver's compaction bookkeeping compares the version of one key.
    let bump = |version: i64, value: &str| {
        txn(
            vec![version_is("compact_rev_key", version)],
            vec![PbTxnOpRequest::RequestPut(put("compact_rev_key", value))],
            vec![PbTxnOpRequest::RequestRange(get("compact_rev_key"))],
        )
    };
    assert!(c.txn(bump(0, "10")).await.expect("first").succeeded);
    assert!(c.txn(bump(1, "20")).await.expect("second").succeeded);
    let resp = c.txn(bump(1, "30")).await.expect("lost race");
    assert!(!resp.succeeded);
    match ops(&resp).as_slice() {
        [PbTxnOpResponse::ResponseRange(g)] => assert_eq!((g.kvs[0].version, &g.kvs[0].value[..]), (2, &b"20"[..])),
        other => panic!("unexpected responses {other:?}"),
    }

    // Reads without compares are answered at one revision.
    c.put("/r/a", "1").await.expect("put");
    c.put("/r/b", "2").await.expect("put");
    let reads = vec![PbTxnOpRequest::RequestRange(get_prefix("/r/")), PbTxnOpRequest::RequestRange(get("/r/a"))];
    let resp = c.txn(txn(vec![], reads, vec![])).await.expect("reads");
    assert!(resp.succeeded);
    let now = server.revision().await;
    assert_eq!(header_rev(resp.header.as_ref()), now);
    match ops(&resp).as_slice() {
        [PbTxnOpResponse::ResponseRange(all), PbTxnOpResponse::ResponseRange(one)] => {
            assert_eq!((all.count, one.count), (2, 1));
            assert_eq!((header_rev(all.header.as_ref()), header_rev(one.header.as_ref())), (now, now));
        }
        other => panic!("unexpected responses {other:?}"),
    }
}

#[tokio::test]
async fn unsupported_transactions_are_refused_with_a_clear_error() {
    let server = Server::start().await;
    let mut c = server.client().await;
    c.put("/a", "1").await.expect("put");
    let before = server.revision().await;
    let put_op = |key: &str, value: &str| PbTxnOpRequest::RequestPut(put(key, value));
    let txns = [
        txn(vec![mod_revision_is("/a", CompareResult::Greater, 0)], vec![put_op("/b", "x")], vec![]),
        txn(vec![value_is("/a", "1"), value_is("/b", "1")], vec![put_op("/a", "2")], vec![]),
        txn(vec![], vec![put_op("/a", "2"), put_op("/b", "2")], vec![]),
        txn(
            vec![version_is("/a", 1)],
            vec![PbTxnOpRequest::RequestDeleteRange(PbDeleteRequest {
                key: "/".into(),
                range_end: prefix_end("/"),
                ..Default::default()
            })],
            vec![],
        ),
    ];
    for t in txns {
        let status = c.txn(t).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
        assert!(status.message().contains("not supported"), "{}", status.message());
    }
    assert_eq!(server.revision().await, before, "nothing was written");
    let status = c.txn(txn(vec![], vec![put_op("/a", "2"), put_op("/a", "3")], vec![])).await.expect_err("dup");
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
    c.put("/counter", "0").await.expect("put");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut c = server.client().await;
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while done < 10 {
                let cur = utf8(&c.get(get("/counter")).await.expect("get").kvs[0].value).to_string();
                let next = (cur.parse::<i64>().expect("number") + 1).to_string();
                // A value compare: served by reading, checking and writing guarded.
                let t = txn(
                    vec![value_is("/counter", cur)],
                    vec![PbTxnOpRequest::RequestPut(put("/counter", next))],
                    vec![],
                );
                if c.txn(t).await.expect("txn").succeeded {
                    done += 1;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let resp = c.get(get("/counter")).await.expect("get");
    assert_eq!(utf8(&resp.kvs[0].value), "80");
    assert_eq!(resp.kvs[0].version, 81);
    server.shutdown().await;
}

#[tokio::test]
async fn range_options_match_etcd() {
    let server = Server::start().await;
    let mut c = server.client().await;
    for (k, v) in [("/s/c", "1"), ("/s/a", "3"), ("/s/b", "2")] {
        c.put(k, v).await.expect("put");
    }
    let first = server.revision().await - 2;
    c.put("/s/c", "4").await.expect("put");
    let keys = |r: &PbRangeResponse| r.kvs.iter().map(|kv| utf8(&kv.key).to_string()).collect::<Vec<_>>();

    let r = c.get(PbRangeRequest { limit: 2, ..get_prefix("/s/") }).await.expect("get");
    assert_eq!((keys(&r), r.more, r.count), (vec!["/s/a".to_string(), "/s/b".to_string()], true, 3));
    let r = c.get(PbRangeRequest { count_only: true, ..get_prefix("/s/") }).await.expect("get");
    assert_eq!((r.kvs.len(), r.count, r.more), (0, 3, false));
    let sorted = |target: SortTarget, order: SortOrder| PbRangeRequest {
        sort_target: target as i32,
        sort_order: order as i32,
        ..get_prefix("/s/")
    };
    let r = c.get(sorted(SortTarget::Value, SortOrder::Descend)).await.expect("get");
    assert_eq!(keys(&r), ["/s/c", "/s/a", "/s/b"]);
    let r = c.get(PbRangeRequest { limit: 1, ..sorted(SortTarget::Create, SortOrder::Ascend) }).await.expect("get");
    assert_eq!((keys(&r), r.more), (vec!["/s/c".to_string()], true));
    let r = c.get(PbRangeRequest { min_mod_revision: first + 2, ..get_prefix("/s/") }).await.expect("get");
    assert_eq!((keys(&r), r.count), (vec!["/s/b".to_string(), "/s/c".to_string()], 3));
    let r = c.get(PbRangeRequest { keys_only: true, ..get_prefix("/s/") }).await.expect("get");
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()) && r.kvs.len() == 3);
    let r = c.get(PbRangeRequest { revision: first, ..get("/s/c") }).await.expect("get");
    assert_eq!(r.kvs[0].value, b"1");
    assert_eq!(header_rev(r.header.as_ref()), server.revision().await, "etcd stamps past reads with now");

    // ignore_value keeps the value, and needs the key to exist.
    let lease = c.lease_grant(60, 0).await.expect("lease").id;
    c.put_with(PbPutRequest { ignore_value: true, lease, ..put("/s/a", "") }).await.expect("ignore value");
    let kv = c.get(get("/s/a")).await.expect("get").kvs[0].clone();
    assert_eq!((&kv.value[..], kv.lease), (&b"3"[..], lease));
    let status = c.put_with(PbPutRequest { ignore_value: true, ..put("/s/none", "") }).await.expect_err("absent");
    assert_eq!(status.message(), "etcdserver: key not found");
    let status = c.get(get("")).await.expect_err("empty key");
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
    let r1 = header_rev(c.put("/pods/a", "1").await.expect("put").header.as_ref());
    c.put("/pods/a", "2").await.expect("put");
    c.put("/other", "x").await.expect("put");
    c.delete("/pods/a").await.expect("delete");

    let mut w = c
        .watch(WatchCreateRequest { start_revision: r1, prev_kv: true, ..watch_prefix("/pods/") })
        .await
        .expect("watch");
    let created = w.message().await.expect("message").expect("created");
    assert!(created.created);
    let id = created.watch_id;
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let resp = w.message().await.expect("message").expect("events");
        assert_eq!(resp.watch_id, id);
        for ev in &resp.events {
            let kv = ev.kv.as_ref().expect("kv");
            let prev = ev.prev_kv.as_ref().map(|p| utf8(&p.value).to_string());
            seen.push((ev.r#type(), utf8(&kv.value).to_string(), kv.mod_revision - r1, prev));
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
    c.put("/pods/b", "live").await.expect("put");
    let resp = w.message().await.expect("message").expect("live event");
    assert_eq!(resp.events[0].kv.as_ref().expect("kv").key, b"/pods/b");
    assert!(resp.events[0].prev_kv.is_none());

    // A client-wide progress request: one response with watch id -1 at the current revision.
    w.request_progress().await;
    let resp = w.message().await.expect("message").expect("progress");
    assert_eq!((resp.watch_id, resp.events.len()), (-1, 0));
    assert_eq!(header_rev(resp.header.as_ref()), server.revision().await);

    // Filters and a second watch on the same stream.
    w.watch(WatchCreateRequest { filters: vec![FilterType::Noput as i32], ..watch_prefix("/pods/") }).await;
    let created = w.message().await.expect("message").expect("created");
    assert!(created.created && created.watch_id != id);
    let id2 = created.watch_id;
    c.put("/pods/c", "1").await.expect("put");
    c.delete("/pods/c").await.expect("delete");
    let mut got = Vec::new();
    while got.len() < 3 {
        let resp = w.message().await.expect("message").expect("events");
        for ev in &resp.events {
            got.push((resp.watch_id, ev.r#type()));
        }
    }
    got.sort_by_key(|(id, _)| *id);
    assert_eq!(got, [(id, EventType::Put), (id, EventType::Delete), (id2, EventType::Delete)]);

    w.cancel(id).await;
    let resp = w.message().await.expect("message").expect("canceled");
    assert!(resp.canceled && resp.watch_id == id);
    c.put("/pods/d", "1").await.expect("put");
    c.delete("/pods/d").await.expect("delete");
    let resp = w.message().await.expect("message").expect("only the second watch remains");
    assert_eq!((resp.watch_id, resp.events[0].r#type()), (id2, EventType::Delete));
}

#[tokio::test]
async fn compacted_revisions_fail_reads_and_watches() {
    let server = Server::start().await;
    let mut c = server.client().await;
    let old = header_rev(c.put("/k", "1").await.expect("put").header.as_ref());
    c.put("/k", "2").await.expect("put");
    let compact_to = header_rev(c.put("/k", "3").await.expect("put").header.as_ref());
    c.compact(compact_to).await.expect("compact");

    let status = c.get(PbRangeRequest { revision: old, ..get("/k") }).await.expect_err("compacted");
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted")
    );
    let status = c.compact(old).await.expect_err("compacting again");
    assert_eq!(status.message(), "etcdserver: mvcc: required revision has been compacted");
    let status = c.compact(compact_to + 100).await.expect_err("future");
    assert_eq!(status.message(), "etcdserver: mvcc: required revision is a future revision");

    let watch_k = |start_revision: i64| WatchCreateRequest { key: "/k".into(), start_revision, ..Default::default() };
    let mut w = c.watch(watch_k(old)).await.expect("watch");
    let created = w.message().await.expect("message").expect("created");
    assert!(created.created);
    let resp = w.message().await.expect("message").expect("compacted");
    assert!(resp.canceled);
    assert_eq!((resp.watch_id, resp.compact_revision), (created.watch_id, compact_to));
    // From the compaction revision on, history is still there.
    let mut w = c.watch(watch_k(compact_to)).await.expect("watch");
    assert!(w.message().await.expect("message").expect("created").created);
    let resp = w.message().await.expect("message").expect("event");
    assert_eq!(resp.events[0].kv.as_ref().expect("kv").value, b"3");
    server.shutdown().await;
}

#[tokio::test]
async fn progress_notify_reports_quiet_watches() {
    let opts = ServeOptions { progress_notify_interval: Duration::from_millis(200), ..Default::default() };
    let server = Server::start_with(opts).await;
    let mut c = server.client().await;
    c.put("/p/x", "1").await.expect("put");
    let mut w = c.watch(WatchCreateRequest { progress_notify: true, ..watch_prefix("/p/") }).await.expect("watch");
    let created = w.message().await.expect("message").expect("created");
    c.put("/unrelated", "1").await.expect("put");
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
        assert_eq!((resp.watch_id, resp.events.len()), (created.watch_id, 0));
        let rev = header_rev(resp.header.as_ref());
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
    let g = c.lease_grant(1, 0).await.expect("grant");
    assert_eq!(g.ttl, 2, "etcd's minimum TTL");
    let g = c.lease_grant(30, 0x1234).await.expect("grant with id");
    assert_eq!((g.id, g.ttl), (0x1234, 30));
    let status = c.lease_grant(30, 0x1234).await.expect_err("exists");
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::FailedPrecondition, "etcdserver: lease already exists")
    );
    c.put_with(PbPutRequest { lease: 0x1234, ..put("/lease/k", "v") }).await.expect("put");
    let (keeper, mut stream) = c.lease_keep_alive().await.expect("keep alive");
    keeper.send(LeaseKeepAliveRequest { id: 0x1234 }).await.expect("send");
    let resp = stream.message().await.expect("message").expect("response");
    assert_eq!((resp.id, resp.ttl), (0x1234, 30));
    let ttl = c.lease.lease_time_to_live(LeaseTimeToLiveRequest { id: 0x1234, keys: true }).await.expect("ttl");
    let ttl = ttl.into_inner();
    assert_eq!((ttl.granted_ttl, &ttl.keys[..]), (30, &[b"/lease/k".to_vec()][..]));
    let leases = c.lease.lease_leases(LeaseLeasesRequest {}).await.expect("leases").into_inner();
    let leases: Vec<i64> = leases.leases.iter().map(|l| l.id).collect();
    assert_eq!(leases.len(), 2);
    assert!(leases.contains(&0x1234));
    c.lease.lease_revoke(LeaseRevokeRequest { id: 0x1234 }).await.expect("revoke");
    keeper.send(LeaseKeepAliveRequest { id: 0x1234 }).await.expect("send");
    let resp = stream.message().await.expect("message").expect("response");
    assert_eq!(resp.ttl, 0, "a revoked lease keeps alive with TTL 0");
    assert!(c.get(get("/lease/k")).await.expect("get").kvs.is_empty());
    server.shutdown().await;
}
