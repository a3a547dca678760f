//! The service proxy's sync costs (`scripts/bench.sh net-proxy`, as root): an API server and
//! the proxy run in process, in a network namespace of their own, with the real `nft`.
//!
//! At 10 and then 1,000 Services of 10 endpoints each it prints:
//! - change → rule in force: from an EndpointSlice update sent to the API until the `nft`
//!   transaction holding the new endpoint has returned, p50/p99 over 100 changes;
//! - the cost of one such update: the transaction's size and `nft`'s time, p50/p99;
//! - a full resync: rendering every rule and replacing the table in one transaction.
//!
//! kube-proxy's default minSyncPeriod is 1 s; the target here is p99 ≤ 100 ms at 1,000.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k3rs::apiserver::Identity;
use k3rs::kubelet::network::guard::{GuardError, Nft, NftCommand};
use k3rs::proxy::{self, ProxyConfig};
use k3rs::server::config::ServerConfig;
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

const ENDPOINTS: usize = 10;
const CHANGES: usize = 100;

/// The real nft, timed: each transaction's size and duration, and when the first one holding
/// each awaited text returned.
#[derive(Default)]
struct TimedNft {
    applied: Mutex<Vec<(usize, Duration)>>,
    awaited: Mutex<HashMap<String, Option<Instant>>>,
}

impl Nft for TimedNft {
    fn apply(&self, ruleset: &str) -> Result<(), GuardError> {
        let t0 = Instant::now();
        NftCommand.apply(ruleset)?;
        let took = t0.elapsed();
        let done = Instant::now();
        self.applied.lock().unwrap().push((ruleset.len(), took));
        for (needle, at) in self.awaited.lock().unwrap().iter_mut() {
            if at.is_none() && ruleset.contains(needle.as_str()) {
                *at = Some(done);
            }
        }
        Ok(())
    }
}

impl TimedNft {
    fn expect(&self, needle: String) {
        self.awaited.lock().unwrap().insert(needle, None);
    }

    async fn applied_at(&self, needle: &str) -> Instant {
        let start = Instant::now();
        loop {
            if let Some(Some(at)) = self.awaited.lock().unwrap().get(needle) {
                return *at;
            }
            assert!(start.elapsed() < Duration::from_secs(60), "{needle} never applied");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn endpoint_ip(svc: usize, n: usize, generation: usize) -> String {
    // 10.<44 + change>.x.y: distinct per service, endpoint and change (at most 200 changes).
    let k = svc * ENDPOINTS + n;
    format!("10.{}.{}.{}", 44 + generation, k / 250, k % 250 + 1)
}

fn slice(svc: usize, generation: usize) -> EndpointSlice {
    let endpoints: Vec<_> = (0..ENDPOINTS)
        .map(|n| json!({"addresses": [endpoint_ip(svc, n, if n == 0 { generation } else { 0 })], "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("s{svc}-bench"), "labels": {
            "kubernetes.io/service-name": format!("s{svc}"),
            "endpointslice.kubernetes.io/managed-by": "bench"}},
        "addressType": "IPv4",
        "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .unwrap()
}

async fn add_services(client: &kube::Client, nft: &TimedNft, from: usize, to: usize) {
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    for i in from..to {
        let s: Service = serde_json::from_value(json!({
            "metadata": {"name": format!("s{i}")},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}]}
        }))
        .unwrap();
        svcs.create(&PostParams::default(), &s).await.expect("service");
        slices.create(&PostParams::default(), &slice(i, 0)).await.expect("slice");
    }
    let last = endpoint_ip(to - 1, ENDPOINTS - 1, 0);
    let needle = format!("{last} . 8080");
    nft.expect(needle.clone());
    nft.applied_at(&needle).await;
}

async fn measure(client: &kube::Client, nft: &TimedNft, services: usize, round: usize) {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    // Let the initial burst settle, then count only the changes' transactions.
    tokio::time::sleep(Duration::from_millis(500)).await;
    nft.applied.lock().unwrap().clear();
    let mut latencies = Vec::new();
    for c in 0..CHANGES {
        let svc = (c * 7919) % services;
        let generation = round * CHANGES + c + 1;
        let new_ip = endpoint_ip(svc, 0, generation);
        let needle = format!("{new_ip} . 8080");
        nft.expect(needle.clone());
        let t0 = Instant::now();
        slices
            .patch(&format!("s{svc}-bench"), &PatchParams::default(), &Patch::Merge(slice(svc, generation)))
            .await
            .expect("patch");
        latencies.push(nft.applied_at(&needle).await - t0);
    }
    latencies.sort();
    let mut sizes: Vec<usize> = nft.applied.lock().unwrap().iter().map(|(s, _)| *s).collect();
    let mut costs: Vec<Duration> = nft.applied.lock().unwrap().iter().map(|(_, d)| *d).collect();
    sizes.sort();
    costs.sort();
    println!(
        "{services:>5} services × {ENDPOINTS}: change → rule in force p50 {} p99 {}; per update: {} transactions, nft p50 {} p99 {}, {}–{} bytes",
        ms(pct(&latencies, 0.5)),
        ms(pct(&latencies, 0.99)),
        costs.len(),
        ms(pct(&costs, 0.5)),
        ms(pct(&costs, 0.99)),
        sizes.first().copied().unwrap_or(0),
        sizes.last().copied().unwrap_or(0),
    );
}

/// A full resync, as the proxy does at start and hourly: render everything, one transaction.
fn full_resync(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) {
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..5 {
        let t0 = Instant::now();
        let ports = proxy::model::build(services, slices, "bench-node");
        let rules = proxy::render::build(ports.values(), "10.42.0.0/16");
        let text = proxy::render::full(&rules);
        bytes = text.len();
        NftCommand.apply(&text).expect("full resync");
        times.push(t0.elapsed());
    }
    times.sort();
    println!(
        "{:>5} services × {ENDPOINTS}: full resync (render + one transaction) median {} ({} KiB)",
        services.len(),
        ms(times[2]),
        bytes / 1024
    );
}

fn enter_netns() -> String {
    let name = format!("k3rs-bench-proxy-{}", std::process::id());
    let ok = |args: &[&str]| {
        let st = std::process::Command::new("ip").args(args).status().expect("ip");
        assert!(st.success(), "ip {args:?}: this benchmark needs root");
    };
    ok(&["netns", "add", &name]);
    ok(&["-n", &name, "link", "set", "lo", "up"]);
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("netns");
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
    name
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return; // `cargo test --benches` builds and skips it
    }
    // Before any thread starts: every thread (and every nft child) lives in the namespace.
    let ns = enter_netns();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ServerConfig::with_defaults(dir.path().join("data"), "bench-node");
        config.apiserver.bind_address = "127.0.0.1".parse().unwrap();
        config.apiserver.https_listen_port = 0;
        config.apiserver.write_kubeconfig = dir.path().join("kubeconfig.yaml");
        config.controllers.clear();
        let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).expect("store");
        let (stop, rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|v| *v).await;
            }
        };
        let started = k3rs::server::apiserver::start(&config, Arc::new(store), stopped).await.expect("server");
        let client = k3rs::client::kube_client(
            &started.api,
            Identity::new("system:admin", &["system:masters", "system:authenticated"]),
        );
        let nft = Arc::new(TimedNft::default());
        let cfg = ProxyConfig {
            node_name: "bench-node".into(),
            cluster_cidr: "10.42.0.0/16".into(),
            full_sync_period: Duration::from_secs(3600),
        };
        let ctx = started.ctx.clone();
        tokio::spawn(proxy::run(ctx.clone(), cfg, nft.clone(), Arc::new(proxy::ConntrackCommand::default())));

        add_services(&client, &nft, 0, 10).await;
        measure(&client, &nft, 10, 0).await;
        full_resync(
            &ctx.informers.get::<Service>().store().state(),
            &ctx.informers.get::<EndpointSlice>().store().state(),
        );
        add_services(&client, &nft, 10, 1000).await;
        measure(&client, &nft, 1000, 1).await;
        full_resync(
            &ctx.informers.get::<Service>().store().state(),
            &ctx.informers.get::<EndpointSlice>().store().state(),
        );
        let _ = stop.send(true);
    });
    let _ = std::process::Command::new("ip").args(["netns", "del", &ns]).status();
}
