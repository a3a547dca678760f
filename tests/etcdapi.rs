//! The etcd API served over the SQLite store, driven by real clients: Debian's `etcdctl`
//! (etcd 3.4) and the `etcd-client` crate, both over the unix socket.
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, EventType, GetOptions, PutOptions, SortOrder, SortTarget, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use k3rs::etcdapi::{serve_with, EtcdApiError, ServeOptions, ETCD_VERSION, MEMBER_ID};
use k3rs::store::sqlite::SqliteStore;
use k3rs::store::Store;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    _dir: tempfile::TempDir,
    sock: PathBuf,
    store: Arc<SqliteStore>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), EtcdApiError>>>,
}

impl Server {
    async fn start() -> Server {
        Self::start_with(ServeOptions::default()).await
    }

    async fn start_with(opts: ServeOptions) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("state.db"), Default::default()).expect("open store"));
        let sock = dir.path().join("etcd.sock");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = {
            let store: Arc<dyn Store> = store.clone();
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
        Server { _dir: dir, sock, store, stop: Some(stop), task: Some(task) }
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
    use base64_decode as d;
    String::from_utf8(d(v.as_str().expect("base64 string"))).expect("utf8")
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
    let sock = server.sock.clone();
    server.shutdown().await;
    assert!(!sock.exists(), "socket removed on exit");
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
