//! `k3rs server` as a process: it starts on a fresh data dir, serves the etcd API socket,
//! refuses a second server on the same data dir, stops cleanly on SIGTERM, and starts again
//! on the same data. Nothing here needs root.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const READY: &str = "k3rs server is ready";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        let sb = Sandbox { dir: tempfile::tempdir().expect("tempdir") };
        sb.write("config.yaml", "");
        sb
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write");
        path
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    /// `k3rs server` on this sandbox's config file and kubeconfig path, a free loopback
    /// port, with no K3RS_ variables from the test's own environment.
    fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_k3rs"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("K3RS_") || name == "RUST_LOG" {
                cmd.env_remove(name);
            }
        }
        // Outside a network namespace of its own: the control plane only.
        cmd.arg("server")
            .arg("--disable-agent")
            .arg("--config")
            .arg(self.path("config.yaml"))
            .arg("--write-kubeconfig")
            .arg(self.path("kubeconfig.yaml"))
            .args(["--bind-address", "127.0.0.1", "--https-listen-port", &free_port().to_string()]);
        cmd
    }

    fn start(&self, args: &[&str]) -> Server {
        let mut cmd = self.command();
        cmd.arg("--data-dir").arg(self.data()).args(args);
        Server::spawn(cmd)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A running server whose stderr is collected as it comes.
struct Server {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn spawn(mut cmd: Command) -> Server {
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("spawn k3rs");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = sink.lock().expect("log lock");
                log.push_str(&line);
                log.push('\n');
            }
        });
        Server { child, log, reader: Some(reader) }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Waits for a log line containing `text`; panics with the log if the server exits or
    /// the time runs out.
    fn wait_for_log(&mut self, text: &str) {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.log().contains(text) {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("server exited ({status}) before logging {text:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no {text:?} within {START_TIMEOUT:?}:\n{}", self.log());
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid()).expect("pid");
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill");
    }

    /// Waits for the process to exit; the full log is complete afterwards.
    fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            if Instant::now() > deadline {
                panic!("server still running {timeout:?} later:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(STOP_TIMEOUT)
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

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn etcdctl(socket: &Path, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=unix://{}", socket.display()))
        .arg("--dial-timeout=5s")
        .args(args)
        .output()
        .expect("run etcdctl (install etcd-client: scripts/install-deps.sh)");
    assert!(out.status.success(), "etcdctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn serves_the_etcd_socket_and_keeps_data_across_a_restart() {
    let sb = Sandbox::new();
    let mut server = sb.start(&[]);
    server.wait_for_log(READY);

    let socket = sb.data().join("server/db/etcd.sock");
    let meta = std::fs::metadata(&socket).expect("etcd.sock exists once ready");
    assert!(meta.file_type().is_socket());
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(&sb.data().join("server")), 0o700);
    assert_eq!(mode(&sb.data().join("server/db")), 0o700);
    assert!(sb.data().join("server/db/state.db").is_file());

    etcdctl(&socket, &["put", "/registry/test/a", "one"]);
    assert!(server.stop().success(), "{}", server.log());
    assert!(!socket.exists(), "socket left behind after a clean stop");

    let mut again = sb.start(&[]);
    again.wait_for_log(READY);
    assert_eq!(etcdctl(&socket, &["get", "/registry/test/a", "--print-value-only"]).trim(), "one");
    assert!(again.stop().success(), "{}", again.log());
    // The admin kubeconfig works with the real kubectl.
    let kubeconfig = sb.path("kubeconfig.yaml");
    assert_eq!(mode(&kubeconfig), 0o600);
    let mut again = sb.start(&[]);
    again.wait_for_log(READY);
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "namespaces", "-o", "name"])
        .output()
        .expect("run kubectl");
    let names = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "kubectl failed: {}", String::from_utf8_lossy(&out.stderr));
    for ns in ["namespace/default", "namespace/kube-system", "namespace/kube-public", "namespace/kube-node-lease"] {
        assert!(names.lines().any(|l| l == ns), "{ns} missing from {names}");
    }
    assert!(again.stop().success(), "{}", again.log());
}

#[test]
fn a_second_server_on_the_same_data_dir_refuses_at_once() {
    let sb = Sandbox::new();
    let mut first = sb.start(&["--disable", "etcd-api"]);
    first.wait_for_log(READY);
    let lock = sb.data().join("server/k3rs.lock");
    assert_eq!(std::fs::read_to_string(&lock).expect("lock file").trim(), first.pid().to_string());

    let started = Instant::now();
    let mut cmd = sb.command();
    let out = cmd.arg("--data-dir").arg(sb.data()).arg("--disable=etcd-api").output().expect("run second k3rs");
    assert!(started.elapsed() < STOP_TIMEOUT, "the second server took {:?} to give up", started.elapsed());
    assert!(!out.status.success());
    assert_ne!(out.status.code(), Some(2), "a held lock is not a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let error =
        stderr.lines().find(|l| l.starts_with("k3rs: error: ")).unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(error.contains(&sb.data().display().to_string()), "{error}");
    assert!(error.contains(&format!("pid {}", first.pid())), "{error}");

    // The first server was not disturbed.
    assert!(first.child.try_wait().expect("try_wait").is_none());
    assert!(first.stop().success());
}

#[test]
fn sigterm_stops_cleanly_and_releases_the_lock() {
    let sb = Sandbox::new();
    let mut server = sb.start(&["--disable", "etcd-api"]);
    server.wait_for_log(READY);
    let status = server.stop();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(server.log().contains("k3rs server stopped"), "{}", server.log());
    assert_eq!(std::fs::read_to_string(sb.data().join("server/k3rs.lock")).expect("lock file"), "");

    // SIGINT does the same, and the data dir can be taken again each time.
    let mut server = sb.start(&["--disable", "etcd-api"]);
    server.wait_for_log(READY);
    server.signal(libc::SIGINT);
    assert_eq!(server.wait_exit(STOP_TIMEOUT).code(), Some(0), "{}", server.log());
    let mut server = sb.start(&["--disable", "etcd-api"]);
    server.wait_for_log(READY);
    assert!(server.stop().success());
}

/// Precedence seen through its effect: the data dir the server actually locks.
#[test]
fn command_line_beats_environment_beats_config_files() {
    let sb = Sandbox::new();
    let dir = |name: &str| sb.path(name);
    sb.write("config.yaml", &format!("data-dir: {}\ndisable: [etcd-api]\n", dir("from-file").display()));
    sb.write("config.yaml.d/10.yaml", &format!("data-dir: {}\n", dir("from-dropin").display()));

    let locked = |server: &mut Server, name: &str| {
        server.wait_for_log(READY);
        let lock = dir(name).join("server/k3rs.lock");
        assert_eq!(std::fs::read_to_string(&lock).expect("lock").trim(), server.pid().to_string(), "{name}");
        assert!(server.stop().success());
    };

    let mut s = Server::spawn(sb.command());
    locked(&mut s, "from-dropin");
    assert!(!dir("from-file").exists());

    let mut cmd = sb.command();
    cmd.env("K3RS_DATA_DIR", dir("from-env"));
    let mut s = Server::spawn(cmd);
    locked(&mut s, "from-env");

    let mut cmd = sb.command();
    cmd.env("K3RS_DATA_DIR", dir("from-env")).arg("--data-dir").arg(dir("from-cli"));
    let mut s = Server::spawn(cmd);
    locked(&mut s, "from-cli");
    // The disable from the config file held throughout: no socket anywhere.
    for name in ["from-dropin", "from-env", "from-cli"] {
        assert!(!dir(name).join("server/db/etcd.sock").exists(), "{name}");
    }
}

#[test]
fn debug_flag_and_rust_log_set_the_log_level() {
    let sb = Sandbox::new();
    let mut server = sb.start(&["--disable", "etcd-api", "--debug"]);
    server.wait_for_log(READY);
    assert!(server.stop().success());
    assert!(server.log().contains("DEBUG"), "{}", server.log());

    let mut cmd = sb.command();
    cmd.arg("--data-dir").arg(sb.data()).args(["--disable", "etcd-api", "--debug"]).env("RUST_LOG", "warn");
    let mut server = Server::spawn(cmd);
    // Nothing is logged at info or below, so wait for the lock the ready server holds.
    let lock = sb.data().join("server/k3rs.lock");
    let deadline = Instant::now() + START_TIMEOUT;
    while std::fs::read_to_string(&lock).map(|t| t.trim() != server.pid().to_string()).unwrap_or(true) {
        assert!(Instant::now() < deadline, "server did not lock its data dir");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.stop().success());
    let log = server.log();
    assert!(!log.contains("INFO") && !log.contains("DEBUG"), "{log}");
}

/// The library entry point, in process: what later in-process integration tests build on.
#[test]
fn runs_in_process_until_told_to_stop() {
    let sb = Sandbox::new();
    let mut config = k3rs::server::config::ServerConfig::with_defaults(sb.data(), "test-node");
    config.disabled = k3rs::server::components::Disabled::new([k3rs::server::components::ETCD_API]);
    config.disable_agent = true;
    config.apiserver.write_kubeconfig = sb.path("kubeconfig.yaml");
    config.apiserver.bind_address = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    config.apiserver.https_listen_port = free_port();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(k3rs::server::run(config, async move {
        let _ = stopped.await;
    }));
    let lock = sb.data().join("server/k3rs.lock");
    let deadline = Instant::now() + START_TIMEOUT;
    while std::fs::read_to_string(&lock).map(|t| t.trim() != std::process::id().to_string()).unwrap_or(true) {
        assert!(Instant::now() < deadline, "the in-process server did not lock its data dir");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Held in this process, the lock still turns away a second server.
    let mut cmd = sb.command();
    let out = cmd.arg("--data-dir").arg(sb.data()).output().expect("run k3rs");
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("pid {}", std::process::id())));

    stop.send(()).expect("server still running");
    let result = runtime.block_on(server).expect("server task");
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(std::fs::read_to_string(&lock).expect("lock file"), "");
}
