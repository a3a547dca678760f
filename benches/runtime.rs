//! `cargo bench --bench runtime` (root): container create + start + wait + delete of `true`
//! through `LibcontainerRuntime` (the shim path k3rs uses) against `runc run` on the same
//! bundle, N times each in one run, printing mean/p50/p99 side by side; then the resident
//! memory of idle shims (VmRSS and Pss from smaps_rollup, alone and with 10 running).
//!
//! Environment: `K3RS_BIN` (the k3rs binary used as the shim; default: the one cargo built
//! with this bench), `RUNC_BIN` (default `runc` on PATH), `BENCH_N` (default 50).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k3rs::images::ImageConfig;
use k3rs::kubelet::runtime::{CreateRequest, LibcontainerRuntime, Runtime};
use k3rs::kubelet::spec::{container_spec, EnvSources, SandboxPaths, SpecInput};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir rootfs");
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy /bin/busybox (busybox-static)");
    let out = Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
        }
    }
}

fn spec(dir: &Path, cgroup: &str, cmd: &[&str]) -> oci_spec::runtime::Spec {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "bench", "namespace": "default", "uid": "b"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "command": cmd}], "enableServiceLinks": false},
    }))
    .expect("pod");
    let container = pod.spec.as_ref().expect("spec").containers[0].clone();
    let image = ImageConfig { env: vec!["PATH=/bin".into()], ..Default::default() };
    let volumes = BTreeMap::new();
    let sources = EnvSources::default();
    container_spec(&SpecInput {
        pod: &pod,
        container: &container,
        image: &image,
        rootfs: dir.join("rootfs"),
        sandbox: SandboxPaths {
            hosts: dir.join("hosts"),
            hostname: dir.join("hostname"),
            resolv_conf: dir.join("resolv.conf"),
            ..Default::default()
        },
        volumes: &volumes,
        env_sources: &sources,
        cgroups_path: cgroup.to_string(),
        termination_message_path: None,
    })
    .expect("container_spec")
}

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len().max(1) as f64;
    let pct = |p: f64| ms(v[((v.len() as f64 * p).ceil() as usize).saturating_sub(1).min(v.len() - 1)]);
    (mean, pct(0.50), pct(0.99))
}

fn mem_kb(pid: i32) -> (u64, u64) {
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (field(&status, "VmRSS:"), field(&rollup, "Pss:"))
}

fn main() {
    let n: usize = std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let k3rs_bin = std::env::var("K3RS_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_k3rs").to_string());
    let runc = std::env::var("RUNC_BIN").unwrap_or_else(|_| "runc".into());
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    busybox_rootfs(&dir.join("rootfs"));
    for f in ["hosts", "hostname", "resolv.conf"] {
        std::fs::write(dir.join(f), "\n").expect("sandbox file");
    }
    let cg = format!("/k3rs-bench-{}", std::process::id());
    let rt = LibcontainerRuntime::new(dir.join("containers"), dir.join("run")).with_shim_binary(&k3rs_bin);
    let tokio_rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio");

    // One bundle for runc, the same spec k3rs runs.
    let runc_bundle = dir.join("runc-bundle");
    std::fs::create_dir_all(&runc_bundle).expect("bundle");

    let mut k3rs_times = Vec::with_capacity(n);
    let mut runc_times = Vec::with_capacity(n);
    for i in 0..n {
        // Interleaved, so both see the same machine load.
        let id = format!("bench-{i}");
        let req = CreateRequest {
            id: id.clone(),
            bundle: dir.join("bundles").join(&id),
            spec: spec(&dir, &format!("{cg}/{id}"), &["true"]),
            log_path: dir.join("logs").join(format!("{id}.log")),
            stdin: false,
            stdin_once: false,
            tty: false,
            labels: BTreeMap::new(),
            rootfs_mount: None,
        };
        let t = Instant::now();
        tokio_rt.block_on(async {
            rt.create(&req).await.expect("create");
            rt.start(&id).await.expect("start");
            let st = rt.wait(&id).await.expect("wait");
            assert_eq!(st.exit_code, Some(0), "k3rs container failed: {st:?}");
            rt.remove(&id).await.expect("remove");
        });
        k3rs_times.push(t.elapsed());

        let rid = format!("runc-bench-{}-{i}", std::process::id());
        spec(&dir, &format!("{cg}/{rid}"), &["true"]).save(runc_bundle.join("config.json")).expect("save spec");
        let t = Instant::now();
        let st = Command::new(&runc)
            .args(["--root", &dir.join("runc-root").to_string_lossy(), "run", "--bundle"])
            .arg(&runc_bundle)
            .arg(&rid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .status()
            .expect("run runc (apt-get install runc)");
        runc_times.push(t.elapsed());
        assert!(st.success(), "runc run failed: {st}");
    }
    let (km, k50, k99) = stats(k3rs_times);
    let (rm, r50, r99) = stats(runc_times);
    println!("container create+start+wait+delete of `true`, N={n}");
    println!("{:<28}{:>10}{:>10}{:>10}", "", "mean ms", "p50 ms", "p99 ms");
    println!("{:<28}{km:>10.1}{k50:>10.1}{k99:>10.1}", "k3rs (libcontainer + shim)");
    println!("{:<28}{rm:>10.1}{r50:>10.1}{r99:>10.1}", "runc run");

    // Idle shims' memory.
    let ids: Vec<String> = (0..10).map(|i| format!("idle-{i}")).collect();
    let mut shim_pids = Vec::new();
    tokio_rt.block_on(async {
        for id in &ids {
            let req = CreateRequest {
                id: id.clone(),
                bundle: dir.join("bundles").join(id),
                spec: spec(&dir, &format!("{cg}/{id}"), &["sleep", "1000"]),
                log_path: dir.join("logs").join(format!("{id}.log")),
                stdin: false,
                stdin_once: false,
                tty: false,
                labels: BTreeMap::new(),
                rootfs_mount: None,
            };
            rt.create(&req).await.expect("create idle");
            rt.start(id).await.expect("start idle");
            let pid: i32 = std::fs::read_to_string(dir.join("containers").join(id).join("shim.pid"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .expect("shim pid");
            shim_pids.push(pid);
        }
    });
    #[allow(clippy::disallowed_methods)] // a benchmark's main thread, not a runtime worker
    std::thread::sleep(Duration::from_millis(300));
    let mems: Vec<(u64, u64)> = shim_pids.iter().map(|p| mem_kb(*p)).collect();
    let rss = mems.iter().map(|m| m.0).sum::<u64>() / mems.len().max(1) as u64;
    let pss = mems.iter().map(|m| m.1).sum::<u64>() / mems.len().max(1) as u64;
    println!("idle shim memory with {} running: VmRSS {rss} kB, Pss {pss} kB (mean per shim)", mems.len());
    tokio_rt.block_on(async {
        for id in &ids {
            let _ = rt.remove(id).await;
        }
    });
    let _ = k3rs::kubelet::runtime::cgroup::remove_cgroup_at(Path::new("/sys/fs/cgroup"), &cg);
}
