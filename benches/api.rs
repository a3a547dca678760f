//! `scripts/bench.sh startup` and `scripts/bench.sh api`: the release `k3rs server` as a
//! process, measured from outside over HTTPS the way kubectl reaches it.
//!
//! `startup`: five first boots (fresh data dir, so the PKI is generated) and five warm boots
//! (the same data dir again), each timed from spawning the process to the first `GET /readyz`
//! answering `ok`. The probe opens a fresh TCP + TLS connection every 5 ms, speaks HTTP/1.1
//! (as kubelet probes and curl do) and verifies the server certificate against the CA in the
//! admin kubeconfig, which it polls for too: the server writes it during startup, so the
//! time includes everything a client needs before its first call. Then the memory of the
//! last server after 30 s idle.
//!
//! `api`: one server, 16 client connections, each an HTTP/2 connection (hyper's
//! `client::conn::http2`, as kubectl negotiates h2) over tokio-rustls (ring) presenting the
//! admin client certificate; one connection per client so that 16 clients are 16 TLS
//! sessions, like 16 kubectl processes. Workloads: (a) ConfigMap creates for 10 s or 20k;
//! (b) merge and strategic merge patches at a fixed 500/s open-loop rate for 10 s, latency
//! taken from each request's scheduled start so that a stalled server cannot hide its queue;
//! (c) unpaginated and `limit=500` lists of 10k ConfigMaps; (d) 100 watchers (one connection
//! each) from a list's resourceVersion, then 1,000 writes, checking every watcher saw every
//! event in order and measuring delivery latency; (g) RBAC's cost: creates as a user (a client
//! certificate the bench signs with the server's client CA) whose permission comes through the
//! last of 1,000 RoleBindings, against creates as the cluster admin.
//!
//! Targets are printed beside the figures; a missed target is not a failure. The exit status
//! is non-zero only on a functional failure: an HTTP error, a wrong item count, a watcher
//! missing or reordering events, a server that does not start.
//!
//! Environment: `K3RS_BIN` (default `target/release/k3rs`). Arguments: `startup`, `api`
//! (both when neither is given).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

const CLIENTS: usize = 16;
const BOOTS: usize = 5;
const PROBE_EVERY: Duration = Duration::from_millis(5);
const START_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE: Duration = Duration::from_secs(30);
const CREATE_FOR: Duration = Duration::from_secs(10);
const CREATE_MAX: usize = 20_000;
const PATCH_RATE: u64 = 500;
/// (g): RoleBindings of the bound user, and how long each create run lasts.
const AUTHZ_BINDINGS: usize = 1_000;
const AUTHZ_FOR: Duration = Duration::from_secs(5);
const PATCH_FOR: Duration = Duration::from_secs(10);
const PATCH_OBJECTS: usize = 500;
const LIST_OBJECTS: usize = 10_000;
const LIST_RUNS: usize = 10;
const PAGE: usize = 500;
const WATCHERS: usize = 100;
const WATCH_WRITES: usize = 1_000;
/// How long watchers may lag behind the last write before missing events count as lost.
const WATCH_DRAIN: Duration = Duration::from_secs(30);
/// ConfigMap data of about 200 bytes, as the brief's "small" objects.
const PAYLOAD_LEN: usize = 193;

// ---------------------------------------------------------------------------------------
// The server process

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

/// Where one server keeps its files; the data dir survives restarts for warm boots.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Result<Sandbox, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("create a temp dir: {e}"))?;
        // An empty config file keeps the host's /etc/k3rs out of the measurement.
        std::fs::write(dir.path().join("config.yaml"), "").map_err(|e| format!("write config.yaml: {e}"))?;
        Ok(Sandbox { dir })
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    fn spawn(&self, port: u16) -> Result<Child, String> {
        let bin = std::env::var("K3RS_BIN").unwrap_or_else(|_| "target/release/k3rs".into());
        let mut cmd = Command::new(&bin);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("K3RS_") {
                cmd.env_remove(name);
            }
        }
        cmd.arg("server")
            .arg("--disable-agent")
            .arg("--config")
            .arg(self.dir.path().join("config.yaml"))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args(["--bind-address", "127.0.0.1", "--https-listen-port", &port.to_string()])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {bin}: {e}"))
    }
}

/// SIGTERM, then SIGKILL if the server has not exited within 10 s; a warm boot needs the
/// previous server gone from the data dir.
fn stop(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        #[allow(clippy::disallowed_methods)] // a plain thread polling its child, not a runtime worker
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("server did not stop on SIGTERM within 10 s; killing it");
    let _ = child.kill();
    let _ = child.wait();
}

/// A field of /proc/PID/status in KiB, summed over the process and its descendants.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let own = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    own + children(pid).into_iter().map(|c| memory_kib(c, field)).sum::<u64>()
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<u32>>())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Credentials and TLS

/// What the admin kubeconfig holds.
struct Kubeconfig {
    ca: Vec<CertificateDer<'static>>,
    cert: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// The value of `key: value` on the first line carrying it; the kubeconfig has one cluster
/// and one user, so the first is the only one.
fn kubeconfig_field(text: &str, key: &str) -> Option<Vec<u8>> {
    let value = text.lines().find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))?;
    base64::engine::general_purpose::STANDARD.decode(value.trim().trim_matches('"')).ok()
}

fn read_kubeconfig(path: &Path) -> Result<Kubeconfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let field = |k: &str| kubeconfig_field(&text, k).ok_or_else(|| format!("{}: no {k}", path.display()));
    let certs = |pem: Vec<u8>, what: &str| -> Result<Vec<CertificateDer<'static>>, String> {
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: {what}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: {what}: no certificate", path.display()));
        }
        Ok(certs)
    };
    let ca = certs(field("certificate-authority-data")?, "certificate-authority-data")?;
    let cert = certs(field("client-certificate-data")?, "client-certificate-data")?;
    let key = PrivateKeyDer::from_pem_slice(&field("client-key-data")?)
        .map_err(|e| format!("{}: client-key-data: {e}", path.display()))?;
    Ok(Kubeconfig { ca, cert, key })
}

fn tls_config(kc: &Kubeconfig, client_cert: bool, alpn: &[u8]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in &kc.ca {
        roots.add(ca.clone()).map_err(|e| format!("server CA: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_root_certificates(roots);
    let mut config = if client_cert {
        builder
            .with_client_auth_cert(kc.cert.clone(), kc.key.clone_key())
            .map_err(|e| format!("client certificate: {e}"))?
    } else {
        builder.with_no_client_auth()
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

async fn connect_tls(port: u16, tls: &Arc<rustls::ClientConfig>) -> Result<TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await.map_err(|e| format!("TLS handshake: {e}"))
}

// ---------------------------------------------------------------------------------------
// HTTP

/// One client: one HTTP/2 connection, its requests multiplexed.
#[derive(Clone)]
struct Conn {
    send: hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    base: String,
}

enum Body<'a> {
    None,
    Json(&'a str, Vec<u8>),
}

impl Conn {
    async fn open(port: u16, tls: &Arc<rustls::ClientConfig>) -> Result<Conn, String> {
        let stream = connect_tls(port, tls).await?;
        // Go's HTTP/2 transport (kubectl) allows 4 MiB per stream and 1 GiB per connection;
        // hyper's smaller defaults would throttle the 5 MB list.
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(4 << 20)
            .initial_connection_window_size(1 << 30)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("HTTP/2 connection ended: {e}");
            }
        });
        Ok(Conn { send, base: format!("https://127.0.0.1:{port}") })
    }

    async fn start(&self, method: Method, path: &str, body: Body<'_>) -> Result<hyper::Response<Incoming>, String> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base))
            .header("accept", "application/json");
        let body = match body {
            Body::None => Full::new(Bytes::new()),
            Body::Json(ct, b) => {
                req = req.header("content-type", ct);
                Full::new(Bytes::from(b))
            }
        };
        let req = req.body(body).map_err(|e| format!("{method} {path}: {e}"))?;
        let mut send = self.send.clone();
        send.ready().await.map_err(|e| format!("{method} {path}: connection: {e}"))?;
        send.send_request(req).await.map_err(|e| format!("{method} {path}: {e}"))
    }

    /// Sends a request and reads the whole answer; a status other than `want` is an error.
    async fn call(&self, method: Method, path: &str, body: Body<'_>, want: StatusCode) -> Result<Bytes, String> {
        let resp = self.start(method.clone(), path, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(|e| format!("{method} {path}: body: {e}"))?.to_bytes();
        if status != want {
            return Err(format!(
                "{method} {path}: {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            ));
        }
        Ok(bytes)
    }
}

fn payload(i: usize) -> String {
    let mut p = format!("{i:08}-");
    p.extend(std::iter::repeat_n('v', PAYLOAD_LEN.saturating_sub(p.len())));
    p
}

fn configmap(name: &str, i: usize) -> Vec<u8> {
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "data": {"payload": payload(i)},
    });
    serde_json::to_vec(&cm).unwrap_or_default()
}

async fn create_namespace(c: &Conn, name: &str) -> Result<(), String> {
    let ns = serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}))
        .map_err(|e| e.to_string())?;
    c.call(Method::POST, "/api/v1/namespaces", Body::Json("application/json", ns), StatusCode::CREATED)
        .await
        .map(|_| ())
}

#[derive(Deserialize)]
struct Meta {
    #[serde(rename = "resourceVersion", default)]
    resource_version: Option<String>,
    #[serde(rename = "continue", default)]
    continue_token: Option<String>,
}

#[derive(Deserialize)]
struct Object {
    metadata: Meta,
}

#[derive(Deserialize)]
struct List {
    metadata: Meta,
    items: Vec<serde::de::IgnoredAny>,
}

fn rv_of(meta: &Meta) -> Result<u64, String> {
    meta.resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| "no numeric resourceVersion".to_string())
}

// ---------------------------------------------------------------------------------------
// Figures

#[derive(Default)]
struct Lat(Vec<Duration>);

impl Lat {
    fn pct(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let mut l = self.0.clone();
        l.sort();
        l[((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1]
    }
    fn max(&self) -> Duration {
        self.0.iter().copied().max().unwrap_or_default()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

/// Functional failures seen so far; any of them makes the exit status non-zero.
#[derive(Default, Clone)]
struct Failures(Arc<Mutex<Vec<String>>>);

impl Failures {
    fn add(&self, what: String) {
        eprintln!("FAILURE: {what}");
        if let Ok(mut f) = self.0.lock() {
            f.push(what);
        }
    }
    fn count(&self) -> usize {
        self.0.lock().map(|f| f.len()).unwrap_or(1)
    }
}

// ---------------------------------------------------------------------------------------
// Startup

/// One `GET /readyz` over a fresh connection, the server certificate verified.
async fn probe(port: u16, tls: &Arc<rustls::ClientConfig>) -> Result<(), String> {
    let stream = connect_tls(port, tls).await?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("HTTP/1.1: {e}"))?;
    let conn = tokio::spawn(conn);
    let req = Request::get("/readyz")
        .header("host", format!("127.0.0.1:{port}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| format!("GET /readyz: {e}"))?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| format!("GET /readyz: {e}"))?.to_bytes();
    conn.abort();
    if status == StatusCode::OK && body.as_ref() == b"ok" {
        Ok(())
    } else {
        Err(format!("GET /readyz: {status} {}", String::from_utf8_lossy(&body)))
    }
}

/// Spawns the server and polls until `/readyz` answers; returns the time from spawn.
async fn boot(sb: &Sandbox, port: u16) -> Result<(Child, Duration), String> {
    let start = Instant::now();
    let mut child = sb.spawn(port)?;
    let mut tls = None;
    let mut last_err = String::from("no kubeconfig yet");
    loop {
        if tls.is_none() {
            // Absent or (in principle) half written: try again next round.
            if let Ok(kc) = read_kubeconfig(&sb.kubeconfig()) {
                tls = Some(tls_config(&kc, false, b"http/1.1")?);
            }
        }
        if let Some(tls) = &tls {
            match tokio::time::timeout(Duration::from_secs(1), probe(port, tls)).await {
                Ok(Ok(())) => return Ok((child, start.elapsed())),
                Ok(Err(e)) => last_err = e,
                Err(_) => last_err = "probe timed out".into(),
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("server exited ({status}) before /readyz answered; last probe: {last_err}"));
        }
        if start.elapsed() > START_TIMEOUT {
            stop(&mut child);
            return Err(format!("/readyz not ok within {START_TIMEOUT:?}; last probe: {last_err}"));
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

async fn startup(failures: &Failures) {
    let mut first = Lat::default();
    let mut warm = Lat::default();
    let mut memory = None;
    for run in 0..BOOTS {
        let sb = match Sandbox::new() {
            Ok(sb) => sb,
            Err(e) => return failures.add(e),
        };
        for (kind, lat) in [("first", &mut first), ("warm", &mut warm)] {
            let port = free_port();
            match boot(&sb, port).await {
                Ok((mut child, took)) => {
                    eprintln!("run {}: {kind} boot ready in {} ms", run + 1, ms(took));
                    lat.0.push(took);
                    if run + 1 == BOOTS && kind == "warm" {
                        eprintln!("idling {} s before reading memory", IDLE.as_secs());
                        tokio::time::sleep(IDLE).await;
                        memory = Some((memory_kib(child.id(), "VmRSS:"), memory_kib(child.id(), "VmHWM:")));
                    }
                    stop(&mut child);
                }
                Err(e) => failures.add(format!("run {}: {kind} boot: {e}", run + 1)),
            }
        }
    }

    println!("\nstartup benchmark: exec -> first GET /readyz ok ({BOOTS} runs each; probe every 5 ms, fresh TCP+TLS connection, HTTP/1.1, server certificate verified against the kubeconfig's CA)");
    println!("{:<44} {:>10} {:>10} {:>12} {:>8}", "measure", "median", "max", "target", "");
    for (name, lat, target) in
        [("first boot (fresh data dir, PKI generated)", &first, 1000.0), ("warm boot (same data dir)", &warm, 300.0)]
    {
        if lat.0.is_empty() {
            println!("{name:<44} {:>10}", "failed");
            continue;
        }
        let med = lat.pct(0.5);
        println!(
            "{name:<44} {:>7} ms {:>7} ms {:>9} ms {:>8}",
            ms(med),
            ms(lat.max()),
            format!("<= {target:.0}"),
            verdict(med.as_secs_f64() * 1000.0 <= target && lat.max().as_secs_f64() * 1000.0 <= target)
        );
    }
    match memory {
        Some((rss, hwm)) => println!(
            "{:<44} {:>7.1} MiB (VmRSS), peak {:.1} MiB (VmHWM); target <= 40 MB: {}",
            format!("memory after {} s idle (warm boot)", IDLE.as_secs()),
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            verdict(rss * 1024 <= 40_000_000)
        ),
        None => println!("memory after {} s idle: not measured (boot failed)", IDLE.as_secs()),
    }
}

// ---------------------------------------------------------------------------------------
// API workloads

/// Creates `names` (from a shared ticket counter) across the connections until `until`.
async fn create_many(
    conns: &[Conn],
    ns: &str,
    prefix: &str,
    max: usize,
    until: Option<Duration>,
) -> (usize, Duration, Lat, Vec<String>) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in conns {
        let (c, next, ns, prefix) = (c.clone(), next.clone(), ns.to_string(), prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = Vec::new();
            let path = format!("/api/v1/namespaces/{ns}/configmaps");
            loop {
                if until.is_some_and(|u| start.elapsed() >= u) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max {
                    break;
                }
                let body = configmap(&format!("{prefix}{i:05}"), i);
                let t = Instant::now();
                match c.call(Method::POST, &path, Body::Json("application/json", body), StatusCode::CREATED).await {
                    Ok(_) => lat.push(t.elapsed()),
                    Err(e) => errors.push(e),
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Lat::default();
    let mut errors = Vec::new();
    for t in tasks {
        match t.await {
            Ok((l, e)) => {
                lat.0.extend(l);
                errors.extend(e);
            }
            Err(e) => errors.push(format!("client task: {e}")),
        }
    }
    (lat.0.len(), start.elapsed(), lat, errors)
}

/// Patches at a fixed rate regardless of how fast answers come (open loop).
/// Returns the run time, latencies from the scheduled starts and from the sends, errors.
async fn patch_open_loop(conns: &[Conn], ns: &str, prefix: &str) -> (Duration, Lat, Lat, Vec<String>) {
    let total = (PATCH_RATE * PATCH_FOR.as_secs()) as usize;
    let interval = Duration::from_nanos(1_000_000_000 / PATCH_RATE);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let results = Arc::new(Mutex::new((Vec::with_capacity(total), Vec::new())));
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due).await;
        let c = conns[i % conns.len()].clone();
        let results = results.clone();
        let path = format!("/api/v1/namespaces/{ns}/configmaps/{prefix}{:05}", i % PATCH_OBJECTS);
        tasks.push(tokio::spawn(async move {
            // kubectl patch defaults to strategic merge; controllers often send merge patches.
            let ct = if i % 2 == 0 { "application/merge-patch+json" } else { "application/strategic-merge-patch+json" };
            let body = serde_json::to_vec(
                &json!({"data": {"payload": payload(i)}, "metadata": {"annotations": {"bench/seq": i.to_string()}}}),
            )
            .unwrap_or_default();
            let sent = Instant::now();
            let r = c.call(Method::PATCH, &path, Body::Json(ct, body), StatusCode::OK).await;
            // From the scheduled start, not the send: queueing in a lagging client counts.
            // The time from the send is kept too, to tell a lagging client from the server.
            let took = (due.elapsed(), sent.elapsed());
            if let Ok(mut res) = results.lock() {
                match r {
                    Ok(_) => res.0.push(took),
                    Err(e) => res.1.push(e),
                }
            }
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        if let Err(e) = t.await {
            errors.push(format!("patch task: {e}"));
        }
    }
    let elapsed = start.elapsed();
    let (lat, errs) = match results.lock() {
        Ok(mut r) => (std::mem::take(&mut r.0), std::mem::take(&mut r.1)),
        Err(_) => (Vec::new(), vec!["results lock poisoned".into()]),
    };
    errors.extend(errs);
    let (scheduled, sent) = lat.into_iter().unzip();
    (elapsed, Lat(scheduled), Lat(sent), errors)
}

/// Full lists, unpaginated and paged; the latency of a full walk, items counted.
async fn lists(c: &Conn, ns: &str, want: usize, page: Option<usize>, failures: &Failures) -> (Lat, usize, usize) {
    let mut lat = Lat::default();
    let mut bytes = 0;
    let mut requests = 0;
    // One unmeasured walk first, so every measured one sees the same warm caches.
    for run in 0..=LIST_RUNS {
        let t = Instant::now();
        let mut items = 0;
        let mut bodies = Vec::new();
        let mut cont: Option<String> = None;
        requests = 0;
        loop {
            let mut path = format!("/api/v1/namespaces/{ns}/configmaps");
            if let Some(limit) = page {
                path.push_str(&format!("?limit={limit}"));
                if let Some(tok) = &cont {
                    let q: String = serde_urlencoded::to_string([("continue", tok)]).unwrap_or_default();
                    path.push('&');
                    path.push_str(&q);
                }
            }
            requests += 1;
            let body = match c.call(Method::GET, &path, Body::None, StatusCode::OK).await {
                Ok(b) => b,
                Err(e) => {
                    failures.add(format!("list: {e}"));
                    return (lat, bytes, requests);
                }
            };
            // Parsing is the client's cost, not the server's: only the paging token is read
            // inside the timed walk.
            cont = if page.is_some() {
                match serde_json::from_slice::<Object>(&body) {
                    Ok(o) => o.metadata.continue_token.filter(|t| !t.is_empty()),
                    Err(e) => {
                        failures.add(format!("list page: {e}"));
                        return (lat, bytes, requests);
                    }
                }
            } else {
                None
            };
            bodies.push(body);
            if cont.is_none() {
                break;
            }
        }
        let took = t.elapsed();
        bytes = bodies.iter().map(|b| b.len()).sum();
        for b in &bodies {
            match serde_json::from_slice::<List>(b) {
                Ok(l) => items += l.items.len(),
                Err(e) => failures.add(format!("list body: {e}")),
            }
        }
        if items != want {
            failures.add(format!("list returned {items} items, want {want}"));
        }
        if run > 0 {
            lat.0.push(took);
        }
    }
    (lat, bytes, requests)
}

struct WatchOutcome {
    delivered: usize,
    complete: usize,
    lat: Lat,
}

/// Reads one watch stream into `got` as (resourceVersion, type, arrival) until it has
/// `want` events; what was read stays in `got` if the caller gives up waiting.
async fn read_watch(body: &mut Incoming, got: &mut Vec<(u64, String, Instant)>, want: usize) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(rename = "type")]
        kind: String,
        object: Object,
    }
    let mut buf: Vec<u8> = Vec::new();
    while got.len() < want {
        let frame = match body.frame().await {
            None => return Err(format!("stream ended after {} events", got.len())),
            Some(Err(e)) => return Err(format!("stream broke after {} events: {e}", got.len())),
            Some(Ok(f)) => f,
        };
        let now = Instant::now();
        let Ok(data) = frame.into_data() else { continue };
        buf.extend_from_slice(&data);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let l: Line = serde_json::from_slice(&line)
                .map_err(|e| format!("watch line: {e}: {}", String::from_utf8_lossy(&line)))?;
            match l.kind.as_str() {
                "BOOKMARK" => {}
                "ERROR" => return Err(format!("watch ERROR event: {}", String::from_utf8_lossy(&line))),
                _ => got.push((rv_of(&l.object.metadata)?, l.kind, now)),
            }
        }
    }
    Ok(())
}

async fn watch_fanout(
    port: u16,
    tls: &Arc<rustls::ClientConfig>,
    writer: &Conn,
    ns: &str,
    failures: &Failures,
) -> WatchOutcome {
    let mut outcome = WatchOutcome { delivered: 0, complete: 0, lat: Lat::default() };
    let path = format!("/api/v1/namespaces/{ns}/configmaps");
    let rv = match writer.call(Method::GET, &path, Body::None, StatusCode::OK).await.and_then(|b| {
        let l: List = serde_json::from_slice(&b).map_err(|e| format!("list: {e}"))?;
        rv_of(&l.metadata)
    }) {
        Ok(rv) => rv,
        Err(e) => {
            failures.add(format!("watch: list for its resourceVersion: {e}"));
            return outcome;
        }
    };
    // Every watcher's response headers are in before the first write, so all of them are
    // established; starting from the list's revision they would see the writes regardless.
    let mut bodies = Vec::new();
    for w in 0..WATCHERS {
        let opened = async {
            let c = Conn::open(port, tls).await?;
            let resp = c.start(Method::GET, &format!("{path}?watch=1&resourceVersion={rv}"), Body::None).await?;
            if resp.status() != StatusCode::OK {
                return Err(format!("watch: {}", resp.status()));
            }
            Ok::<_, String>((c, resp.into_body()))
        };
        match opened.await {
            Ok(b) => bodies.push(b),
            Err(e) => failures.add(format!("watcher {w}: {e}")),
        }
    }
    // Readers wait without limit while the writes go on; once they are done, for at most
    // WATCH_DRAIN more.
    let (tx, rx) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
    let mut readers = Vec::new();
    for (c, mut body) in bodies {
        let mut rx = rx.clone();
        readers.push(tokio::spawn(async move {
            let _keep = c;
            let mut got = Vec::with_capacity(WATCH_WRITES);
            let drained = async {
                loop {
                    if let Some(d) = *rx.borrow_and_update() {
                        return d;
                    }
                    if rx.changed().await.is_err() {
                        return tokio::time::Instant::now();
                    }
                }
            };
            let r = {
                let read = read_watch(&mut body, &mut got, WATCH_WRITES);
                tokio::pin!(read);
                tokio::select! {
                    r = &mut read => r,
                    d = drained => tokio::time::timeout_at(d, &mut read).await.unwrap_or(Ok(())),
                }
            };
            (got, r)
        }));
    }

    // Half creates, half patches of the created: ADDED and MODIFIED events.
    let mut sent: HashMap<u64, (Instant, &'static str)> = HashMap::with_capacity(WATCH_WRITES);
    for i in 0..WATCH_WRITES {
        let n = i % (WATCH_WRITES / 2);
        let t = Instant::now();
        let r = if i < WATCH_WRITES / 2 {
            writer
                .call(
                    Method::POST,
                    &path,
                    Body::Json("application/json", configmap(&format!("w-{n:05}"), i)),
                    StatusCode::CREATED,
                )
                .await
        } else {
            let patch = serde_json::to_vec(&json!({"data": {"payload": payload(i)}})).unwrap_or_default();
            writer
                .call(
                    Method::PATCH,
                    &format!("{path}/w-{n:05}"),
                    Body::Json("application/merge-patch+json", patch),
                    StatusCode::OK,
                )
                .await
        };
        let kind = if i < WATCH_WRITES / 2 { "ADDED" } else { "MODIFIED" };
        match r
            .and_then(|b| serde_json::from_slice::<Object>(&b).map_err(|e| e.to_string()))
            .and_then(|o| rv_of(&o.metadata))
        {
            Ok(rv) => {
                sent.insert(rv, (t, kind));
            }
            Err(e) => failures.add(format!("watch write {i}: {e}")),
        }
    }
    let _ = tx.send(Some(tokio::time::Instant::now() + WATCH_DRAIN));

    for (w, r) in readers.into_iter().enumerate() {
        let got = match r.await {
            Ok((got, Ok(()))) => got,
            Ok((got, Err(e))) => {
                failures.add(format!("watcher {w}: {e}"));
                got
            }
            Err(e) => {
                failures.add(format!("watcher {w}: task: {e}"));
                continue;
            }
        };
        outcome.delivered += got.len();
        // The first problem of each watcher is reported; the rest would repeat it.
        let mut problem = None;
        let mut prev = rv;
        for (rv, kind, at) in &got {
            if *rv <= prev {
                problem.get_or_insert_with(|| format!("resourceVersion {rv} after {prev}"));
            }
            prev = *rv;
            match sent.get(rv) {
                Some((t, k)) if k == kind => outcome.lat.0.push(at.saturating_duration_since(*t)),
                Some((_, k)) => {
                    problem.get_or_insert_with(|| format!("event {rv} is {kind}, the write was {k}"));
                }
                None => {
                    problem.get_or_insert_with(|| format!("event {rv} ({kind}) matches no write"));
                }
            }
        }
        if got.len() != sent.len() {
            problem.get_or_insert_with(|| format!("{} of {} events", got.len(), sent.len()));
        }
        let ok = problem.is_none();
        if let Some(p) = problem {
            failures.add(format!("watcher {w}: {p}"));
        }
        if ok {
            outcome.complete += 1;
        }
    }
    outcome
}

/// A client certificate for `user`, signed by the server's client CA (read from its data
/// dir), with the admin kubeconfig's CA to trust the server.
fn user_credentials(sb: &Sandbox, user: &str) -> Result<Kubeconfig, String> {
    let tls = sb.dir.path().join("data/server/tls");
    let read = |f: &str| std::fs::read_to_string(tls.join(f)).map_err(|e| format!("read {f}: {e}"));
    let ca_key = rcgen::KeyPair::from_pem(&read("client-ca.key")?).map_err(|e| format!("client CA key: {e}"))?;
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&read("client-ca.crt")?, ca_key).map_err(|e| format!("client CA: {e}"))?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| format!("key: {e}"))?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, user);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).map_err(|e| format!("sign: {e}"))?;
    let admin = read_kubeconfig(&sb.kubeconfig())?;
    Ok(Kubeconfig {
        ca: admin.ca,
        cert: vec![cert.der().clone()],
        key: PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| format!("key: {e}"))?,
    })
}

async fn post(c: &Conn, path: &str, obj: serde_json::Value) -> Result<(), String> {
    let body = serde_json::to_vec(&obj).map_err(|e| e.to_string())?;
    c.call(Method::POST, path, Body::Json("application/json", body), StatusCode::CREATED).await.map(|_| ())
}

/// (g) RBAC's cost: ConfigMap creates as a user whose permission comes through the last
/// of 1,000 RoleBindings (each to its own Role) against creates as the cluster admin
/// (allowed before RBAC is asked), alternated twice. Returns (admin/s, user/s).
async fn authz_cost(sb: &Sandbox, port: u16, admin: &[Conn], failures: &Failures) -> Option<(f64, f64)> {
    let ns = "bench-authz";
    if let Err(e) = create_namespace(&admin[0], ns).await {
        failures.add(format!("namespace {ns}: {e}"));
        return None;
    }
    let rbac = format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}");
    for i in 0..AUTHZ_BINDINGS {
        // Bindings are evaluated in name order: the one that allows creates comes last.
        let (role, rules) = if i + 1 == AUTHZ_BINDINGS {
            ("zz-create".to_string(), json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]))
        } else {
            let name = format!("role-{i:04}");
            let rules =
                json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": [name]}]);
            (name, rules)
        };
        let r = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": role}, "rules": rules});
        let b = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bench-user"}]});
        let c = &admin[i % admin.len()];
        if let Err(e) =
            post(c, &format!("{rbac}/roles"), r).await.and(post(c, &format!("{rbac}/rolebindings"), b).await)
        {
            failures.add(format!("RBAC objects: {e}"));
            return None;
        }
    }
    let tls = match user_credentials(sb, "bench-user").and_then(|kc| tls_config(&kc, true, b"h2")) {
        Ok(t) => t,
        Err(e) => {
            failures.add(format!("bench-user credentials: {e}"));
            return None;
        }
    };
    let mut users = Vec::new();
    for _ in 0..CLIENTS {
        match Conn::open(port, &tls).await {
            Ok(c) => users.push(c),
            Err(e) => {
                failures.add(format!("bench-user connection: {e}"));
                return None;
            }
        }
    }
    let (mut admin_ops, mut admin_time, mut user_ops, mut user_time) = (0, Duration::ZERO, 0, Duration::ZERO);
    for round in 0..2 {
        let (n, t, _, errs) = create_many(admin, ns, &format!("a{round}-"), CREATE_MAX, Some(AUTHZ_FOR)).await;
        errs.into_iter().for_each(|e| failures.add(format!("admin create: {e}")));
        (admin_ops, admin_time) = (admin_ops + n, admin_time + t);
        let (n, t, _, errs) = create_many(&users, ns, &format!("u{round}-"), CREATE_MAX, Some(AUTHZ_FOR)).await;
        errs.into_iter().for_each(|e| failures.add(format!("bench-user create: {e}")));
        (user_ops, user_time) = (user_ops + n, user_time + t);
    }
    Some((admin_ops as f64 / admin_time.as_secs_f64(), user_ops as f64 / user_time.as_secs_f64()))
}

async fn api(failures: &Failures) {
    let sb = match Sandbox::new() {
        Ok(sb) => sb,
        Err(e) => return failures.add(e),
    };
    let port = free_port();
    let mut child = match boot(&sb, port).await {
        Ok((child, _)) => child,
        Err(e) => return failures.add(format!("server: {e}")),
    };
    let tls = match read_kubeconfig(&sb.kubeconfig()).and_then(|kc| tls_config(&kc, true, b"h2")) {
        Ok(t) => t,
        Err(e) => {
            stop(&mut child);
            return failures.add(e);
        }
    };
    let mut conns = Vec::new();
    for _ in 0..CLIENTS {
        match Conn::open(port, &tls).await {
            Ok(c) => conns.push(c),
            Err(e) => {
                stop(&mut child);
                return failures.add(format!("client connection: {e}"));
            }
        }
    }
    for ns in ["bench-create", "bench-patch", "bench-list", "bench-watch"] {
        if let Err(e) = create_namespace(&conns[0], ns).await {
            stop(&mut child);
            return failures.add(format!("namespace {ns}: {e}"));
        }
    }

    eprintln!("(a) creates: {CLIENTS} clients, {} s or {CREATE_MAX}", CREATE_FOR.as_secs());
    let (creates, create_time, create_lat, errs) =
        create_many(&conns, "bench-create", "c-", CREATE_MAX, Some(CREATE_FOR)).await;
    errs.into_iter().for_each(|e| failures.add(format!("create: {e}")));
    let create_rate = creates as f64 / create_time.as_secs_f64();

    eprintln!("(b) patches: {PATCH_RATE}/s for {} s over {PATCH_OBJECTS} objects", PATCH_FOR.as_secs());
    let (_, _, _, errs) = create_many(&conns, "bench-patch", "p-", PATCH_OBJECTS, None).await;
    errs.into_iter().for_each(|e| failures.add(format!("seed patch objects: {e}")));
    let (patch_time, patch_lat, patch_sent_lat, errs) = patch_open_loop(&conns, "bench-patch", "p-").await;
    let patches = patch_lat.0.len();
    errs.into_iter().for_each(|e| failures.add(format!("patch: {e}")));

    eprintln!("(c) lists: seeding {LIST_OBJECTS} configmaps");
    let (_, seed_time, _, errs) = create_many(&conns, "bench-list", "l-", LIST_OBJECTS, None).await;
    errs.into_iter().for_each(|e| failures.add(format!("seed list objects: {e}")));
    eprintln!("    seeded in {:.1} s", seed_time.as_secs_f64());
    let (full_lat, full_bytes, _) = lists(&conns[0], "bench-list", LIST_OBJECTS, None, failures).await;
    let (paged_lat, _, pages) = lists(&conns[0], "bench-list", LIST_OBJECTS, Some(PAGE), failures).await;

    eprintln!("(d) watch: {WATCHERS} watchers, {WATCH_WRITES} writes");
    let watch = watch_fanout(port, &tls, &conns[0], "bench-watch", failures).await;

    eprintln!("(g) authorization: {AUTHZ_BINDINGS} RoleBindings, creates as their user vs as admin");
    let authz = authz_cost(&sb, port, &conns, failures).await;

    let (rss, hwm) = (memory_kib(child.id(), "VmRSS:"), memory_kib(child.id(), "VmHWM:"));
    stop(&mut child);

    println!("\napi benchmark: k3rs server (release) over HTTPS with the admin client certificate; client: hyper 1 HTTP/2 (client::conn::http2) over tokio-rustls (ring), {CLIENTS} connections, one per client; ConfigMaps with {} B of data", PAYLOAD_LEN + "payload".len());
    println!("{:<46} {:>9} {:>9} {:>9} {:>22} {:>7}", "workload", "ops/s", "p50 ms", "p99 ms", "target", "");
    println!(
        "{:<46} {:>9.0} {:>9} {:>9} {:>22} {:>7}",
        format!("(a) create, {CLIENTS} clients ({creates} in {:.1} s)", create_time.as_secs_f64()),
        create_rate,
        ms(create_lat.pct(0.5)),
        ms(create_lat.pct(0.99)),
        ">= 2000 creates/s",
        verdict(create_rate >= 2000.0)
    );
    let p99 = patch_lat.pct(0.99);
    println!(
        "{:<46} {:>9.0} {:>9} {:>9} {:>22} {:>7}",
        format!("(b) patch, open loop {PATCH_RATE}/s ({patches} ops)"),
        patches as f64 / patch_time.as_secs_f64(),
        ms(patch_lat.pct(0.5)),
        ms(p99),
        "p99 <= 20 ms",
        verdict(!patch_lat.0.is_empty() && p99 <= Duration::from_millis(20))
    );
    let full_p50 = full_lat.pct(0.5);
    println!(
        "{:<46} {:>9.1} {:>9} {:>9} {:>22} {:>7}",
        format!("(c) list {LIST_OBJECTS}, unpaginated ({:.1} MB)", full_bytes as f64 / 1e6),
        LIST_RUNS as f64 / full_lat.0.iter().sum::<Duration>().as_secs_f64().max(1e-9),
        ms(full_p50),
        ms(full_lat.pct(0.99)),
        "p50 <= 100 ms",
        verdict(!full_lat.0.is_empty() && full_p50 <= Duration::from_millis(100))
    );
    println!(
        "{:<46} {:>9.1} {:>9} {:>9} {:>22} {:>7}",
        format!("(c) list {LIST_OBJECTS}, limit={PAGE} ({pages} requests)"),
        LIST_RUNS as f64 / paged_lat.0.iter().sum::<Duration>().as_secs_f64().max(1e-9),
        ms(paged_lat.pct(0.5)),
        ms(paged_lat.pct(0.99)),
        "",
        ""
    );
    println!(
        "{:<46} {:>9} {:>9} {:>9} {:>22} {:>7}",
        format!("(d) watch delivery, {WATCHERS} watchers x {WATCH_WRITES}"),
        "",
        ms(watch.lat.pct(0.5)),
        ms(watch.lat.pct(0.99)),
        "every event",
        verdict(watch.complete == WATCHERS)
    );
    println!(
        "    watchers complete and in order: {}/{WATCHERS}; events delivered {}/{}",
        watch.complete,
        watch.delivered,
        WATCHERS * WATCH_WRITES
    );
    println!(
        "    (b) from the send instead of the schedule: p50 {} ms, p99 {} ms; max from the schedule {} ms",
        ms(patch_sent_lat.pct(0.5)),
        ms(patch_sent_lat.pct(0.99)),
        ms(patch_lat.max())
    );
    if let Some((admin_rate, user_rate)) = authz {
        let ratio = user_rate / admin_rate;
        println!(
            "{:<46} {:>9.0} {:>9} {:>9} {:>22} {:>7}",
            format!("(g) create as a user of {AUTHZ_BINDINGS} RoleBindings"),
            user_rate,
            "",
            "",
            ">= 0.9x admin",
            verdict(ratio >= 0.9)
        );
        println!("    (g) admin {admin_rate:.0} creates/s, bound user {user_rate:.0} creates/s: {ratio:.2}x ({} s each, twice, alternated)", AUTHZ_FOR.as_secs());
    }
    println!(
        "    server memory at the end: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    println!("    (c) latency: request sent to last body byte received, JSON decoding excluded; (b) from each request's scheduled start; (d) from the write being sent");
}

fn main() -> std::process::ExitCode {
    // `cargo bench` adds `--bench`; the words name the parts to run.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let all = !args.iter().any(|a| a == "startup" || a == "api");
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let failures = Failures::default();
    if all || args.iter().any(|a| a == "startup") {
        rt.block_on(startup(&failures));
    }
    if all || args.iter().any(|a| a == "api") {
        rt.block_on(api(&failures));
    }
    let n = failures.count();
    if n > 0 {
        println!("\n{n} functional failure(s); see the FAILURE lines above");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
