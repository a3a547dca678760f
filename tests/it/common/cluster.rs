//! A real `k3rs server` (the built binary, as root) inside a network namespace the test makes
//! — a veth pair inside it is the node's interface — driven by the real kubectl. Pod and
//! service addresses exist only inside that namespace. On drop: the cluster's pods are
//! deleted through the API, the server is killed, and anything of the node left behind
//! (container processes, cgroups, mounts under the data dir) is swept.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Moves the calling thread into the network namespace `name` (`/run/netns/<name>`), for good:
/// call it first thing on a thread of its own.
pub fn enter_netns(name: &str) -> std::io::Result<()> {
    let f = std::fs::File::open(format!("/run/netns/{name}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)?;
    Ok(())
}

/// A network namespace with a node address, deleted on drop.
pub struct Netns {
    pub name: String,
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("k3rs-e2e-{tag}-{}-{n}", std::process::id());
        let run = |args: &[&str]| {
            let ok = Command::new("ip").args(args).status().expect("run ip");
            assert!(ok.success(), "ip {args:?} failed: these tests need root");
        };
        run(&["netns", "add", &name]);
        let ns = Netns { name };
        run(&["-n", &ns.name, "link", "set", "lo", "up"]);
        run(&["-n", &ns.name, "link", "add", "k3rs-n0", "type", "veth", "peer", "name", "k3rs-n1"]);
        run(&["-n", &ns.name, "addr", "add", "192.168.77.1/24", "dev", "k3rs-n0"]);
        run(&["-n", &ns.name, "link", "set", "k3rs-n0", "up"]);
        run(&["-n", &ns.name, "link", "set", "k3rs-n1", "up"]);
        ns
    }

    /// A command run inside the namespace (network only: cgroups and mounts stay the host's).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.name)).arg("--").arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

pub struct Cluster {
    pub ns: Netns,
    pub server: Option<Child>,
    pub dir: tempfile::TempDir,
    args: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.server.is_some() {
            // Let the node stop its pods the normal way first.
            let _ = self.kubectl(&["delete", "pods", "--all", "--all-namespaces", "--grace-period=1", "--timeout=30s"]);
        }
        self.kill();
        sweep_node(&self.data_dir());
    }
}

pub fn kubectl_dir() -> PathBuf {
    let real = std::fs::canonicalize(which("kubectl")).expect("kubectl on PATH");
    real.parent().expect("kubectl's folder").to_path_buf()
}

pub fn which(cmd: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(cmd)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("{cmd} is not on PATH"))
}

impl Cluster {
    pub fn start(tag: &str) -> Cluster {
        Self::start_with(tag, &[], |_| {})
    }

    /// Starts a server with extra flags after `prepare` has seen the (empty) data dir.
    pub fn start_with(tag: &str, extra: &[&str], prepare: impl FnOnce(&Path)) -> Cluster {
        let ns = Netns::new(tag);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        prepare(&dir.path().join("data"));
        let mut c = Cluster { ns, server: None, dir, args: extra.iter().map(|s| s.to_string()).collect() };
        c.launch();
        c
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server process and waits until it answers /readyz.
    pub fn launch(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("server.log")).unwrap();
        let server = self
            .ns
            .command(env!("CARGO_BIN_EXE_k3rs"))
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--write-kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .args(["--node-ip", "192.168.77.1", "--node-name", "e2e-node"])
            .args(&self.args)
            // E2E_SERVER_LOG (a RUST_LOG filter) turns up the server's logging for a failing test.
            .env("RUST_LOG", std::env::var("E2E_SERVER_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start k3rs");
        self.server = Some(server);
        let start = Instant::now();
        loop {
            let out = self.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "server not ready: {}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILLs the server (containers are meant to survive this).
    pub fn kill(&mut self) {
        if let Some(mut s) = self.server.take() {
            // nsenter execs the server, so this is the server's own pid.
            let _ = s.kill();
            let _ = s.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn kubectl_with(&self, binary: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.ns.command(binary);
        cmd.arg("--kubeconfig").arg(self.kubeconfig()).args(args);
        cmd.env("HOME", self.dir.path()).env(
            "KUBECACHEDIR",
            self.dir.path().join(format!("cache-{}", binary.display().to_string().replace('/', "_"))),
        );
        run_with_stdin(&mut cmd, stdin)
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(Path::new("kubectl"), args, None)
    }

    /// Runs kubectl and returns stdout, failing the test with stderr and the server log.
    pub fn ok(&self, binary: &Path, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_with(binary, args, stdin);
        assert!(
            out.status.success(),
            "{} {args:?} failed:\n{}\n--- server log ---\n{}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl` with the default binary, returning stdout; fails the test on error.
    pub fn k(&self, args: &[&str]) -> String {
        self.ok(Path::new("kubectl"), args, None)
    }

    /// Polls a jsonpath of an object until `want` holds (or fails after `timeout`).
    pub fn wait_for(&self, what: &[&str], jsonpath: &str, timeout: Duration, want: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut args: Vec<&str> = vec!["get"];
        args.extend_from_slice(what);
        let jp = format!("jsonpath={jsonpath}");
        args.extend_from_slice(&["-o", &jp]);
        let mut last = String::new();
        while start.elapsed() < timeout {
            let out = self.kubectl(&args);
            last = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && want(&last) {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let describe = self.kubectl(&[&["describe"], what].concat());
        let yaml = self.kubectl(&[&["get"], what, &["-o", "yaml"]].concat());
        panic!(
            "timed out waiting on {what:?} {jsonpath} (last: {last:?})\n{}\n{}\n--- server log ---\n{}",
            String::from_utf8_lossy(&describe.stdout),
            String::from_utf8_lossy(&yaml.stdout),
            self.log()
        );
    }
}

/// Kills what a node under `data` left behind (containers whose bundles live there, the pods'
/// namespace holders), removes
/// their cgroups and unmounts everything mounted under `data`.
pub fn sweep_node(data: &Path) {
    let containers = data.join("agent/containers");
    let mut cgroup_paths = Vec::new();
    for e in std::fs::read_dir(&containers).into_iter().flatten().flatten() {
        if let Ok(cfg) = std::fs::read_to_string(e.path().join("config.json")) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&cfg) {
                if let Some(p) = v.pointer("/linux/cgroupsPath").and_then(|p| p.as_str()) {
                    cgroup_paths.push(p.trim_start_matches('/').to_string());
                }
            }
        }
    }
    for p in &cgroup_paths {
        for controller in [
            "pids",
            "memory",
            "cpu,cpuacct",
            "cpu",
            "cpuacct",
            "freezer",
            "devices",
            "blkio",
            "cpuset",
            "systemd",
            "unified",
        ] {
            let procs = Path::new("/sys/fs/cgroup").join(controller).join(p).join("cgroup.procs");
            for pid in std::fs::read_to_string(&procs).unwrap_or_default().lines() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
    }
    // The pods' namespace holders.
    for e in std::fs::read_dir(data.join("agent/run/sandboxes")).into_iter().flatten().flatten() {
        if let Some(h) = k3rs::kubelet::network::netns::Holder::read(&e.path()) {
            h.kill();
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    // Shims exit once their container is gone; anything still holding the data dir goes too.
    let prefix = data.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_string)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").args(["-l", &p]).status();
    }
    for p in &cgroup_paths {
        for controller in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let mut dir = controller.path().join(p);
            // The container's cgroup, then its pod's if empty.
            for _ in 0..2 {
                let _ = std::fs::remove_dir(&dir);
                if !dir.pop() {
                    break;
                }
            }
        }
    }
}

/// Runs `cmd` to its end with `stdin` (or nothing) as its input, capturing its output.
pub fn run_with_stdin(cmd: &mut Command, stdin: Option<&str>) -> Output {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run the command");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}
