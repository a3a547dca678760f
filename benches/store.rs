//! `scripts/bench.sh store`: the same workload through the etcd v3 API with the same client
//! (the gRPC clients generated from etcd's API, `k3rs::etcdproto`), against `k3rs server`'s embedded store (its etcd socket) and
//! against Debian's etcd 3.4, both durable (fsync on commit), in one run.
//!
//! Workloads: single-writer puts, 16 concurrent writers, ranges over 10k keys, watch
//! fan-out to 100 watchers, a churn of updates over 1k keys with periodic compaction
//! (1M updates by default; `BENCH_CHURN_OPS` changes it), and last, one DeleteRange of a
//! prefix holding 300k keys, as `etcdctl check perf` ends (`BENCH_DELETE_KEYS` changes the
//! count). Prints ops/s and p50/p99 latency per side (for the delete: keys/s and its time),
//! the k3rs/etcd ratios, the database size after churn against the live data, and each
//! server's memory.
//!
//! Environment: `K3RS_BIN` (default `target/release/k3rs`), `ETCD_BIN` (default
//! `/usr/bin/etcd`), `BENCH_SIDES` (default `k3rs,etcd`), `BENCH_CHURN_OPS`,
//! `BENCH_DELETE_KEYS`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k3rs::etcdproto::etcdserverpb::compare::{CompareResult, CompareTarget};
use k3rs::etcdproto::etcdserverpb::WatchCreateRequest;
use k3rs::etcdproto::{
    KvClient, MaintenanceClient, PbCompactionRequest, PbCompare, PbDeleteRequest, PbPutRequest, PbRangeRequest,
    PbResponseHeader, PbStatusRequest, PbTargetUnion, PbTxnOpRequest, PbTxnRequest, PbTxnRequestOp, PbWatchRequest,
    PbWatchRequestUnion, WatchClient,
};
use tokio::sync::Barrier;
use tonic::transport::Channel;

/// The etcd services over one connection.
struct Client {
    channel: Channel,
}

impl Client {
    fn kv_client(&self) -> KvClient<Channel> {
        KvClient::new(self.channel.clone())
    }

    fn watch_client(&self) -> WatchClient<Channel> {
        WatchClient::new(self.channel.clone())
    }
}

fn put(key: String, value: Vec<u8>) -> PbPutRequest {
    PbPutRequest { key: key.into_bytes(), value, ..Default::default() }
}

fn get(key: &str) -> PbRangeRequest {
    PbRangeRequest { key: key.into(), ..Default::default() }
}

fn get_prefix(prefix: &str) -> PbRangeRequest {
    PbRangeRequest {
        key: prefix.into(),
        range_end: k3rs::etcdproto::prefix_range_end(prefix.as_bytes()),
        ..Default::default()
    }
}

fn compact(revision: i64) -> PbCompactionRequest {
    PbCompactionRequest { revision, physical: false }
}

fn header_rev(header: Option<&PbResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision)
}

const VALUE_SIZE: usize = 1024;
const WRITERS: usize = 16;

struct Server {
    name: &'static str,
    child: Child,
    /// Where its database lives, for the size after churn.
    db_files: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn rss_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn db_bytes(&self) -> u64 {
        self.db_files.iter().map(|p| dir_or_file_size(p)).sum()
    }
}

fn dir_or_file_size(p: &Path) -> u64 {
    match std::fs::metadata(p) {
        Ok(m) if m.is_dir() => {
            std::fs::read_dir(p).map(|rd| rd.flatten().map(|e| dir_or_file_size(&e.path())).sum()).unwrap_or(0)
        }
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_k3rs() -> (Server, Client) {
    let bin = std::env::var("K3RS_BIN").unwrap_or_else(|_| "target/release/k3rs".into());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let child = Command::new(&bin)
        .args(["server", "--disable-agent", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let sock = data.join("server/db/etcd.sock");
    let start = Instant::now();
    while !sock.exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "k3rs did not create {}", sock.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let client = connect_unix(&sock).await;
    let db = data.join("server/db");
    let server = Server {
        name: "k3rs",
        child,
        db_files: vec![db.join("state.db"), db.join("state.db-wal"), db.join("state.db-shm")],
        _dir: dir,
    };
    (server, client)
}

async fn connect_unix(sock: &Path) -> Client {
    let sock = sock.to_path_buf();
    let channel = tonic::transport::Endpoint::try_from("http://[::1]:2379")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(sock).await?))
            }
        }))
        .await
        .expect("connect to the k3rs etcd socket");
    Client { channel }
}

async fn start_etcd() -> (Server, Client) {
    let bin = std::env::var("ETCD_BIN").unwrap_or_else(|_| "/usr/bin/etcd".into());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("etcd");
    let (cport, pport) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{cport}");
    let peer_url = format!("http://127.0.0.1:{pport}");
    let child = Command::new(&bin)
        .args(["--name", "bench", "--data-dir"])
        .arg(&data)
        .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("bench={peer_url}")])
        .args(["--quota-backend-bytes", &(8u64 << 30).to_string(), "--log-level", "error"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let start = Instant::now();
    let client = loop {
        if let Ok(channel) = Channel::from_shared(client_url.clone()).expect("etcd URL").connect().await {
            if MaintenanceClient::new(channel.clone()).status(PbStatusRequest {}).await.is_ok() {
                break Client { channel };
            }
        }
        assert!(start.elapsed() < Duration::from_secs(20), "etcd did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let server = Server { name: "etcd", child, db_files: vec![data.join("member")], _dir: dir };
    (server, client)
}

/// Latencies of one workload.
struct Measured {
    ops: usize,
    elapsed: Duration,
    lat: Vec<Duration>,
}

impl Measured {
    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn pct(&self, p: f64) -> Duration {
        if self.lat.is_empty() {
            return Duration::ZERO;
        }
        let mut l = self.lat.clone();
        l.sort();
        l[((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1]
    }
}

fn value(i: usize) -> Vec<u8> {
    value_of(i, VALUE_SIZE)
}

fn value_of(i: usize, size: usize) -> Vec<u8> {
    let mut v = format!("{i:08}").into_bytes();
    v.resize(size, b'v');
    v
}

/// Values for the 10k-key range: the client refuses responses over 4 MiB.
const RANGE_VALUE_SIZE: usize = 256;

async fn puts(client: &Client, writers: usize, per_writer: usize, prefix: &str, size: usize) -> Measured {
    let barrier = Arc::new(Barrier::new(writers));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let mut kv = client.kv_client();
        let barrier = barrier.clone();
        let prefix = prefix.to_string();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut lat = Vec::with_capacity(per_writer);
            for i in 0..per_writer {
                let t = Instant::now();
                kv.put(put(format!("{prefix}{w:02}/{i:06}"), value_of(i, size))).await.expect("put");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    Measured { ops: writers * per_writer, elapsed: start.elapsed(), lat }
}

async fn ranges(client: &Client, prefix: &str, rounds: usize) -> (Measured, usize) {
    let mut kv = client.kv_client();
    let mut lat = Vec::new();
    let mut n = 0;
    let start = Instant::now();
    for _ in 0..rounds {
        let t = Instant::now();
        let r = kv.range(get_prefix(prefix)).await.expect("range").into_inner();
        lat.push(t.elapsed());
        n = r.kvs.len();
    }
    (Measured { ops: rounds, elapsed: start.elapsed(), lat }, n)
}

/// 100 watchers on one prefix; one writer puts `events` keys; latency is from the put
/// being sent to each watcher receiving its event.
async fn fanout(client: &Client, watchers: usize, events: usize) -> Measured {
    let prefix = "/bench/watch/";
    let mut handles = Vec::new();
    for _ in 0..watchers {
        let mut wc = client.watch_client();
        let create =
            WatchCreateRequest { key: prefix.into(), range_end: get_prefix(prefix).range_end, ..Default::default() };
        let request = PbWatchRequest { request_union: Some(PbWatchRequestUnion::CreateRequest(create)) };
        // The request side stays open: the watch lasts as long as the stream.
        let requests = futures::stream::iter([request]).chain(futures::stream::pending());
        let mut stream = wc.watch(requests).await.expect("watch").into_inner();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::with_capacity(events);
            while got.len() < events {
                let Some(resp) = stream.message().await.expect("watch stream") else { break };
                let now = Instant::now();
                for _ in resp.events {
                    got.push(now);
                }
            }
            got
        }));
    }
    // Let every watch register before writing.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut kv = client.kv_client();
    let mut sent = Vec::with_capacity(events);
    let start = Instant::now();
    for i in 0..events {
        sent.push(Instant::now());
        kv.put(put(format!("{prefix}{i:06}"), value(i))).await.expect("put");
    }
    let mut lat = Vec::new();
    let mut delivered = 0;
    for h in handles {
        let got = h.await.unwrap();
        delivered += got.len();
        for (i, t) in got.into_iter().enumerate() {
            lat.push(t.saturating_duration_since(sent[i]));
        }
    }
    Measured { ops: delivered, elapsed: start.elapsed(), lat }
}

/// Updates over `keys` keys by 16 writers, each a compare-and-swap like the apiserver's;
/// every 10k updates the history older than the newest 1000 revisions is compacted.
async fn churn(client: &Client, keys: usize, total: usize) -> Measured {
    let prefix = "/bench/churn/";
    let mut kv = client.kv_client();
    for k in 0..keys {
        kv.put(put(format!("{prefix}{k:04}"), value(0))).await.expect("seed");
    }
    let per_writer = total / WRITERS;
    let barrier = Arc::new(Barrier::new(WRITERS));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut kv = client.kv_client();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut lat = Vec::with_capacity(per_writer);
            // Each writer owns keys w, w+16, ...: compare-and-swap never conflicts.
            let mine: Vec<usize> = (w..keys).step_by(WRITERS).collect();
            let mut revs = vec![0i64; mine.len()];
            for i in 0..per_writer {
                let slot = i % mine.len();
                let key = format!("{prefix}{:04}", mine[slot]);
                let t = Instant::now();
                if revs[slot] == 0 {
                    let r = kv.range(get(&key)).await.expect("get").into_inner();
                    revs[slot] = r.kvs[0].mod_revision;
                }
                let txn = PbTxnRequest {
                    compare: vec![PbCompare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Mod as i32,
                        key: key.clone().into_bytes(),
                        range_end: Vec::new(),
                        target_union: Some(PbTargetUnion::ModRevision(revs[slot])),
                    }],
                    success: vec![PbTxnRequestOp {
                        request: Some(PbTxnOpRequest::RequestPut(put(key.clone(), value(i)))),
                    }],
                    failure: vec![PbTxnRequestOp { request: Some(PbTxnOpRequest::RequestRange(get(&key))) }],
                };
                let r = kv.txn(txn).await.expect("txn").into_inner();
                assert!(r.succeeded, "churn update conflicted");
                revs[slot] = header_rev(r.header.as_ref());
                lat.push(t.elapsed());
                if w == 0 && i % (10_000 / WRITERS) == 0 && i > 0 {
                    let rev = header_rev(r.header.as_ref());
                    if rev > 1000 {
                        let _ = kv.compact(compact(rev - 1000)).await;
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let m = Measured { ops: per_writer * WRITERS, elapsed: start.elapsed(), lat };
    let rev = kv.range(PbRangeRequest { count_only: true, ..get_prefix(prefix) }).await.unwrap().into_inner();
    let rev = header_rev(rev.header.as_ref());
    kv.compact(compact(rev)).await.expect("final compaction");
    m
}

/// Puts `keys` keys under one prefix, then deletes the prefix with one DeleteRange, as
/// `etcdctl check perf` does after its load; only the delete is timed.
async fn delete_prefix(client: &Client, keys: usize) -> Measured {
    let prefix = "/bench/delete/";
    let writers = 64;
    let per_writer = keys.div_ceil(writers);
    let _ = puts(client, writers, per_writer, prefix, RANGE_VALUE_SIZE).await;
    let mut kv = client.kv_client();
    let range = get_prefix(prefix);
    let delete = PbDeleteRequest { key: range.key, range_end: range.range_end, ..Default::default() };
    let start = Instant::now();
    let r = kv.delete_range(delete).await.expect("delete the prefix").into_inner();
    let elapsed = start.elapsed();
    assert_eq!(r.deleted, (writers * per_writer) as i64, "the prefix delete missed keys");
    Measured { ops: writers * per_writer, elapsed, lat: vec![elapsed] }
}

struct SideReport {
    name: &'static str,
    rows: Vec<(&'static str, Measured)>,
    db_after_churn: u64,
    live_bytes: u64,
    rss_kib: u64,
    hwm_kib: u64,
}

async fn run_side(name: &str, churn_ops: usize, delete_keys: usize) -> SideReport {
    let (server, client) = if name == "k3rs" { start_k3rs().await } else { start_etcd().await };
    eprintln!("== {} ==", server.name);
    let mut rows = Vec::new();
    let m = puts(&client, 1, 2000, "/bench/single/", VALUE_SIZE).await;
    eprintln!("single-writer puts: {:.0} ops/s", m.ops_per_sec());
    rows.push(("put, 1 writer", m));
    let m = puts(&client, WRITERS, 1000, "/bench/multi/", VALUE_SIZE).await;
    eprintln!("16-writer puts: {:.0} ops/s", m.ops_per_sec());
    rows.push(("put, 16 writers", m));
    let _ = puts(&client, WRITERS, 10_000 / WRITERS, "/bench/range/", RANGE_VALUE_SIZE).await;
    let (m, n) = ranges(&client, "/bench/range/", 30).await;
    assert_eq!(n, 10_000, "range returned {n} keys");
    eprintln!("range 10k: {:.1} ops/s", m.ops_per_sec());
    rows.push(("range 10k keys", m));
    let m = fanout(&client, 100, 1000).await;
    assert_eq!(m.ops, 100 * 1000, "watchers missed events");
    eprintln!("watch fan-out: {:.0} events/s", m.ops_per_sec());
    rows.push(("watch, 100 watchers (events)", m));
    let keys = 1000;
    let m = churn(&client, keys, churn_ops).await;
    eprintln!("churn: {:.0} ops/s", m.ops_per_sec());
    rows.push(("churn CAS updates", m));
    // Everything but the churn keys is removed, so the live data is the churn keys alone;
    // then give the server a moment to finish compacting in the background.
    let mut kv = client.kv_client();
    for p in ["/bench/single/", "/bench/multi/", "/bench/range/", "/bench/watch/"] {
        let range = get_prefix(p);
        let delete = PbDeleteRequest { key: range.key, range_end: range.range_end, ..Default::default() };
        kv.delete_range(delete).await.expect("cleanup");
    }
    let rev = header_rev(kv.range(get("/")).await.unwrap().into_inner().header.as_ref());
    kv.compact(compact(rev)).await.expect("compact after cleanup");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let live = kv.range(get_prefix("/bench/")).await.unwrap().into_inner();
    let live_bytes: u64 = live.kvs.iter().map(|kv| (kv.key.len() + kv.value.len()) as u64).sum();
    let (db_after_churn, rss_kib, hwm_kib) = (server.db_bytes(), server.rss_kib("VmRSS:"), server.rss_kib("VmHWM:"));
    // Last, so its 300k keys and their history weigh on none of the figures above.
    let m = delete_prefix(&client, delete_keys).await;
    eprintln!("prefix delete: {} keys in {:.2} s", m.ops, m.elapsed.as_secs_f64());
    rows.push(("prefix delete (keys)", m));
    SideReport { name: server.name, rows, db_after_churn, live_bytes, rss_kib, hwm_kib }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let sides: Vec<String> = std::env::var("BENCH_SIDES")
        .unwrap_or_else(|_| "k3rs,etcd".into())
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let churn_ops: usize = std::env::var("BENCH_CHURN_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let delete_keys: usize = std::env::var("BENCH_DELETE_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(300_000);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let reports: Vec<SideReport> = sides.iter().map(|s| rt.block_on(run_side(s, churn_ops, delete_keys))).collect();

    println!("\nstore benchmark: {VALUE_SIZE}-byte values ({RANGE_VALUE_SIZE} for the range), etcd v3 API, the same generated client on both sides");
    println!("{:<30} {:>6} {:>12} {:>10} {:>10}", "workload", "side", "ops/s", "p50 ms", "p99 ms");
    let names: Vec<&str> = reports[0].rows.iter().map(|(n, _)| *n).collect();
    for (i, wl) in names.iter().enumerate() {
        for r in &reports {
            let m = &r.rows[i].1;
            println!(
                "{:<30} {:>6} {:>12.0} {:>10} {:>10}",
                wl,
                r.name,
                m.ops_per_sec(),
                ms(m.pct(0.50)),
                ms(m.pct(0.99))
            );
        }
        if reports.len() == 2 {
            let (a, b) = (&reports[0].rows[i].1, &reports[1].rows[i].1);
            println!(
                "{:<30} {:>6} {:>11.2}x {:>10} {:>9.2}x",
                "",
                "ratio",
                a.ops_per_sec() / b.ops_per_sec(),
                "",
                a.pct(0.99).as_secs_f64() / b.pct(0.99).as_secs_f64().max(1e-9)
            );
        }
    }
    println!("\nafter churn ({churn_ops} updates over 1000 keys, compacted):");
    for r in &reports {
        println!(
            "{:>6}: database {:.2} MiB on disk, live data {:.2} MiB ({:.2}x); server RSS {:.1} MiB, peak {:.1} MiB",
            r.name,
            r.db_after_churn as f64 / 1048576.0,
            r.live_bytes as f64 / 1048576.0,
            r.db_after_churn as f64 / r.live_bytes.max(1) as f64,
            r.rss_kib as f64 / 1024.0,
            r.hwm_kib as f64 / 1024.0
        );
    }
}
