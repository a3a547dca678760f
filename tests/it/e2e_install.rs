//! End to end: scripts/install.sh piped into `sh` as `curl ... | sh -` would, installing into
//! a temporary root (INSTALL_K3RS_ROOT) with the binary already there
//! (INSTALL_K3RS_SKIP_DOWNLOAD) and no service started. The test starts the installed server
//! itself, as the unit would (its environment file, the unit's command line), inside a network
//! namespace of its own, runs a pod, upgrades in place (new binary, installer again, server
//! restarted: the pod's container keeps running), then runs k3rs-killall.sh and
//! k3rs-uninstall.sh and checks that no process, mount, cgroup, network link, nft table or
//! file is left behind. A second test covers the OpenRC service and the download with its
//! sha256 check, from a file:// release.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cluster::Netns;

const NODE_ARGS: [&str; 4] = ["--node-ip", "192.168.77.1", "--node-name", "e2e-node"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// PATH for everything the test runs: the system's (kubectl, nft, ip, umount, ...).
fn system_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into())
}

/// Runs install.sh the way `curl -sfL .../install.sh | sh -s - ARGS` does (the script on
/// stdin, nothing else of the repository at hand), with a clean environment plus `env`.
fn install(root: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let script = std::fs::read(repo().join("scripts/install.sh")).expect("scripts/install.sh");
    let mut child = Command::new("sh")
        .args(["-s", "-"])
        .args(args)
        .env_clear()
        .env("PATH", system_path())
        .env("INSTALL_K3RS_ROOT", root)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sh");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&script).unwrap();
    child.wait_with_output().unwrap()
}

#[track_caller]
fn ok(out: Output, what: &str) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what} failed ({}):\n{text}", out.status);
    text
}

/// Every file, link and directory below `dir`, relative to it.
fn tree(dir: &Path) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            out.push((e.path().strip_prefix(dir).unwrap().display().to_string(), is_dir));
            if is_dir {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

fn files_left(dir: &Path) -> Vec<String> {
    tree(dir).into_iter().filter(|(_, is_dir)| !is_dir).map(|(p, _)| p).collect()
}

/// Mount points at or below `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| *m == prefix || m.starts_with(&format!("{prefix}/")))
        .map(str::to_string)
        .collect()
}

/// Processes whose binary lies below `dir` or whose command line names a path below it
/// (k3rs itself, shims naming their container's directory).
fn processes_under(dir: &Path) -> Vec<String> {
    let prefix = dir.display().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let exe = std::fs::read_link(e.path().join("exe")).map(|p| p.display().to_string()).unwrap_or_default();
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if exe.starts_with(&prefix) || cmdline.contains(&prefix) {
            found.push(format!("{pid}: {exe}: {cmdline}"));
        }
    }
    found
}

/// The installed systemd unit, with what the installer fills in taken out, is
/// packaging/systemd/k3rs.service without its header: the two do not drift apart.
fn assert_unit_matches_packaging(installed: &str, env_file: &Path) {
    let packaged = std::fs::read_to_string(repo().join("packaging/systemd/k3rs.service")).unwrap();
    let body = |text: &str| -> Vec<String> {
        text.lines()
            .skip_while(|l| l.starts_with('#'))
            .filter(|l| *l != format!("EnvironmentFile=-{}", env_file.display()))
            .map(|l| if l.starts_with("ExecStart=") { "ExecStart=…".to_string() } else { l.to_string() })
            .collect()
    };
    assert_eq!(body(installed), body(&packaged), "the installed unit differs from packaging/systemd/k3rs.service");
}

/// The same for the OpenRC service and packaging/openrc/k3rs.
fn assert_openrc_matches_packaging(installed: &str) {
    let packaged = std::fs::read_to_string(repo().join("packaging/openrc/k3rs")).unwrap();
    let body = |text: &str| -> Vec<String> {
        let mut lines: Vec<String> = text
            .lines()
            .skip_while(|l| l.starts_with('#') && !l.starts_with("# Configure"))
            .map(|l| {
                for key in ["command=", "command_args="] {
                    if l.starts_with(key) {
                        return format!("{key}…");
                    }
                }
                l.to_string()
            })
            .collect();
        // The environment file the installer adds.
        if let Some(i) = lines.iter().position(|l| l == "set -o allexport") {
            lines.drain(i..i + 4);
        }
        lines
    };
    assert_eq!(body(installed), body(&packaged), "the installed service differs from packaging/openrc/k3rs");
}

/// The installation under test: its paths, the server it runs, and a sweep on drop should
/// the test fail halfway.
struct Installed {
    ns: Netns,
    root: tempfile::TempDir,
    /// Logs and kubectl's cache: outside the root, which must end up empty.
    work: tempfile::TempDir,
    server: Option<Child>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let _ = s.kill();
            let _ = s.wait();
        }
        common::cluster::sweep_node(&self.data_dir());
    }
}

impl Installed {
    fn bin(&self, name: &str) -> PathBuf {
        self.root.path().join("usr/local/bin").join(name)
    }

    fn data_dir(&self) -> PathBuf {
        self.root.path().join("var/lib/k3rs")
    }

    fn env_file(&self) -> PathBuf {
        self.root.path().join("etc/systemd/system/k3rs.service.env")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.path().join("server.log")).unwrap_or_default()
    }

    /// Starts the installed server as its unit would: the environment file, then ExecStart.
    fn start(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.work.path().join("server.log")).unwrap();
        let server = self
            .ns
            .command("sh")
            .arg("-c")
            .arg("set -a; . \"$0\"; set +a; exec \"$@\"")
            .arg(self.env_file())
            .arg(self.bin("k3rs"))
            .arg("server")
            .args(NODE_ARGS)
            .env_clear()
            .env("PATH", system_path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the installed k3rs");
        self.server = Some(server);
        let start = Instant::now();
        while !self.kubectl(&["get", "--raw", "/readyz"]).status.success() {
            assert!(start.elapsed() < Duration::from_secs(30), "server not ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, as `systemctl restart` sends it; the server drains and exits.
    fn stop(&mut self) {
        let mut s = self.server.take().expect("a running server");
        // SAFETY: a signal to our own child (nsenter exec'd sh, which exec'd k3rs).
        unsafe { libc::kill(s.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while s.try_wait().unwrap().is_none() {
            assert!(start.elapsed() < Duration::from_secs(30), "k3rs did not stop on SIGTERM:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The installed `kubectl` link to k3rs, with no --kubeconfig: k3rs gives it the admin
    /// kubeconfig the server was configured (by the environment file) to write.
    fn kubectl_with(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let path = format!("{}:{}", self.bin("").display(), system_path());
        let mut cmd = self.ns.command(self.bin("kubectl"));
        cmd.args(args)
            .env_clear()
            .env("PATH", path)
            .env("HOME", self.work.path())
            .env("KUBECACHEDIR", self.work.path().join("kube-cache"))
            .env("K3RS_WRITE_KUBECONFIG", self.root.path().join("etc/k3rs/k3rs.yaml"));
        common::cluster::run_with_stdin(&mut cmd, stdin)
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(args, None)
    }

    #[track_caller]
    fn k(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}\n--- server log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_running(&self, pod: &str) {
        let start = Instant::now();
        loop {
            let phase = self.kubectl(&["get", "pod", pod, "-o", "jsonpath={.status.phase}"]);
            if String::from_utf8_lossy(&phase.stdout) == "Running" {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{pod} is not Running:\n{}\n--- server log ---\n{}",
                self.k(&["get", "pod", pod, "-o", "yaml"]),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs one of the installed scripts inside the test's network namespace (so the links
    /// and nft tables it removes are the test's, never the host's).
    fn script(&self, name: &str) -> String {
        let out = self.ns.command(self.bin(name)).env_clear().env("PATH", system_path()).output().unwrap();
        ok(out, name)
    }
}

const POD: &str = "apiVersion: v1
kind: Pod
metadata: {name: sleeper}
spec:
  containers:
  - {name: c, image: 'busybox:1.36', command: [sleep, '3600'], volumeMounts: [{name: mem, mountPath: /mem}]}
  volumes:
  - {name: mem, emptyDir: {medium: Memory}}
";

#[test]
fn install_run_a_pod_upgrade_killall_and_uninstall_leave_nothing_behind() {
    let t0 = Instant::now();
    let mut it = Installed {
        ns: Netns::new("install"),
        root: tempfile::tempdir().unwrap(),
        work: tempfile::tempdir().unwrap(),
        server: None,
    };
    let root = it.root.path().to_path_buf();
    // An air-gap install: the binary is in place, and so is the pod's image.
    std::fs::create_dir_all(it.bin("")).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_k3rs"), it.bin("k3rs")).unwrap();
    let images = it.data_dir().join("agent/images");
    std::fs::create_dir_all(&images).unwrap();
    common::busybox::oci_archive(&images, "docker.io/library/busybox:1.36");

    let env = [
        ("INSTALL_K3RS_SKIP_DOWNLOAD", "true"),
        ("INSTALL_K3RS_SKIP_START", "true"),
        ("INSTALL_K3RS_INIT", "systemd"),
        ("INSTALL_K3RS_SYMLINK", "force"),
        ("INSTALL_K3RS_EXEC", "server --node-ip 192.168.77.1"),
        ("K3RS_KUBECONFIG_MODE", "640"),
        ("K3RS_TOKEN", "it's a secret"),
    ];
    let args = ["--node-name", "e2e-node"];
    let out = ok(install(&root, &env, &args), "install.sh");
    assert!(out.contains("Skipping the download"), "{out}");

    // What it wrote.
    let link = std::fs::read_link(it.bin("kubectl")).expect("the kubectl link");
    assert_eq!(link, Path::new("k3rs"));
    for script in ["k3rs-killall.sh", "k3rs-uninstall.sh"] {
        let mode = std::fs::metadata(it.bin(script)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{script}");
    }
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/k3rs.service")).unwrap();
    let exec =
        format!("ExecStart='{}' server '--node-ip' '192.168.77.1' '--node-name' 'e2e-node'", it.bin("k3rs").display());
    assert!(unit.lines().any(|l| l == exec), "no {exec:?} in\n{unit}");
    assert_unit_matches_packaging(&unit, &it.env_file());
    let env_text = std::fs::read_to_string(it.env_file()).unwrap();
    assert_eq!(std::fs::metadata(it.env_file()).unwrap().permissions().mode() & 0o777, 0o600);
    for line in [
        "K3RS_KUBECONFIG_MODE='640'".to_string(),
        "K3RS_TOKEN='it'\\''s a secret'".to_string(),
        format!("K3RS_DATA_DIR='{}'", it.data_dir().display()),
        format!("K3RS_WRITE_KUBECONFIG='{}'", root.join("etc/k3rs/k3rs.yaml").display()),
    ] {
        assert!(env_text.lines().any(|l| l == line), "no {line:?} in\n{env_text}");
    }

    // The installed server, a pod, `kubectl` through the link.
    it.start();
    let kubeconfig_mode = std::fs::metadata(root.join("etc/k3rs/k3rs.yaml")).unwrap().permissions().mode();
    assert_eq!(kubeconfig_mode & 0o777, 0o640, "K3RS_KUBECONFIG_MODE reaches the server");
    let nodes = it.k(&["get", "nodes"]);
    assert!(nodes.contains("e2e-node"), "{nodes}");
    let out = it.kubectl_with(&["apply", "-f", "-"], Some(POD));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    it.wait_running("sleeper");
    let uid = it.k(&["get", "pod", "sleeper", "-o", "jsonpath={.metadata.uid}"]);
    let container = it.k(&["get", "pod", "sleeper", "-o", "jsonpath={.status.containerStatuses[0].containerID}"]);
    let holder = k3rs::kubelet::network::netns::Holder::read(&it.data_dir().join("agent/run/sandboxes").join(&uid))
        .expect("the pod's namespace holder");
    assert!(holder.alive());
    assert!(!mounts_under(&it.data_dir()).is_empty(), "the pod's memory volume is a mount under the data dir");
    let started = Instant::now();

    // Upgrade in place: a new binary renamed over the old one, the installer again, the
    // server restarted. The pod's container keeps running through it.
    std::fs::copy(env!("CARGO_BIN_EXE_k3rs"), it.bin("k3rs.new")).unwrap();
    std::fs::rename(it.bin("k3rs.new"), it.bin("k3rs")).unwrap();
    // (k3s' other spelling of the air-gap switch this time.)
    let mut upgrade_env = env;
    upgrade_env[0] = ("INSTALL_K3RS_SKIP_DOWNLOAD", "binary");
    let out = ok(install(&root, &upgrade_env, &args), "install.sh (upgrade)");
    assert!(out.contains("Skipping the download"), "{out}");
    assert_eq!(std::fs::read_to_string(root.join("etc/systemd/system/k3rs.service")).unwrap(), unit);
    it.stop();
    assert!(holder.alive(), "the pod outlives k3rs");
    it.start();
    assert_eq!(it.k(&["exec", "sleeper", "--", "echo", "still here"]), "still here\n");
    let after = it.k(&["get", "pod", "sleeper", "-o", "jsonpath={.status.containerStatuses[0].containerID}"]);
    assert_eq!(after, container, "the same container");
    let restarts = it.k(&["get", "pod", "sleeper", "-o", "jsonpath={.status.containerStatuses[0].restartCount}"]);
    assert_eq!(restarts, "0");
    assert!(holder.alive());
    eprintln!("pod ran through the upgrade ({:?})", started.elapsed());

    // killall: nothing of k3rs runs, nothing is mounted, no pod cgroup, link or table is left.
    let ns_links = || {
        let out = Command::new("ip").args(["-n", &it.ns.name, "-o", "link", "show"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_string()))
            .collect::<Vec<_>>()
    };
    let nft_tables = || {
        let out = Command::new("ip").args(["netns", "exec", &it.ns.name, "nft", "list", "tables"]).output().unwrap();
        assert!(out.status.success(), "nft list tables: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(ns_links().iter().any(|l| l == "k3rs0"), "{:?}", ns_links());
    let tables = nft_tables();
    for table in ["ip k3rs-proxy", "ip k3rs-netpol", "inet k3rs-podnet"] {
        assert!(tables.contains(table), "{table} missing before killall:\n{tables}");
    }
    let t_killall = Instant::now();
    let out = it.script("k3rs-killall.sh");
    eprintln!("killall took {:?}:\n{out}", t_killall.elapsed());
    // The server is gone (killall stopped it): reap it.
    let mut server = it.server.take().unwrap();
    let start = Instant::now();
    while server.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(5), "killall left the server running");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!holder.alive(), "the pod's namespace holder is gone");
    assert_eq!(processes_under(&root), Vec::<String>::new(), "processes left");
    assert_eq!(mounts_under(&root), Vec::<String>::new(), "mounts left");
    let mut links = ns_links();
    links.sort();
    assert_eq!(links, ["k3rs-n0", "k3rs-n1", "lo"], "links left");
    let tables = nft_tables();
    assert!(!tables.contains("k3rs"), "tables left:\n{tables}");
    let cg_uid = uid.replace('-', "_");
    for e in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for qos in ["", "burstable/", "besteffort/"] {
            let p = e.path().join(format!("kubepods/{qos}pod{cg_uid}"));
            assert!(!p.exists(), "{} left", p.display());
        }
    }
    let pod_logs: Vec<_> = std::fs::read_dir("/var/log/pods")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(&uid))
        .collect();
    assert_eq!(pod_logs.len(), 1, "the pod's logs stay until uninstall");

    // uninstall: every file goes (directories that held the installation may stay empty).
    let out = it.script("k3rs-uninstall.sh");
    assert!(out.contains("removing"), "{out}");
    assert_eq!(files_left(&root), Vec::<String>::new(), "files left");
    assert!(!it.data_dir().exists() && !root.join("etc/k3rs").exists());
    let pod_logs = std::fs::read_dir("/var/log/pods")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(&uid))
        .count();
    assert_eq!(pod_logs, 0, "the pod's logs are removed");
    assert_eq!(processes_under(&root), Vec::<String>::new());
    eprintln!("install → uninstall in {:?}", t0.elapsed());
}

#[test]
fn openrc_service_and_a_checked_download_then_uninstall_leave_nothing_behind() {
    // The scripts run in a network namespace of the test's: killall removes k3rs' links and
    // tables wherever it runs.
    let ns = Netns::new("openrc");
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    // A release as the installer expects it, served from a file:// URL.
    let release = tempfile::tempdir().unwrap();
    let arch = if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" };
    let dir = release.path().join("v9.9.9");
    std::fs::create_dir_all(&dir).unwrap();
    let binary = b"#!/bin/sh\necho stand-in k3rs\n";
    std::fs::write(dir.join(format!("k3rs-{arch}")), binary).unwrap();
    let sum: String =
        ring::digest::digest(&ring::digest::SHA256, binary).as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let url = format!("file://{}", release.path().display());
    let env = |extra: &[(&'static str, &'static str)]| {
        let mut v: Vec<(&str, String)> = vec![
            ("INSTALL_K3RS_RELEASE_URL", url.clone()),
            ("INSTALL_K3RS_VERSION", "v9.9.9".into()),
            ("INSTALL_K3RS_INIT", "openrc".into()),
            ("INSTALL_K3RS_SYMLINK", "skip".into()),
        ];
        v.extend(extra.iter().map(|(k, val)| (*k, val.to_string())));
        v
    };
    let run = |extra: &[(&'static str, &'static str)], args: &[&str]| {
        let e = env(extra);
        let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        install(root, &pairs, args)
    };

    // A checksum that does not match: refused, nothing installed.
    std::fs::write(dir.join("sha256sum.txt"), format!("{}  dist/k3rs-{arch}\n", "0".repeat(64))).unwrap();
    let out = run(&[], &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&format!("k3rs-{arch} has sha256 {sum}")), "{err}");
    assert_eq!(files_left(root), Vec::<String>::new());
    // No sha256 for this architecture at all.
    std::fs::write(dir.join("sha256sum.txt"), format!("{sum}  k3rs-other\n")).unwrap();
    let out = run(&[], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("has no sha256 for k3rs-{arch}")));

    // The right one: installed, with the service, the scripts and the flags quoted through.
    std::fs::write(dir.join("sha256sum.txt"), format!("{sum}  dist/k3rs-{arch}\n{}  dist/k3rs-x\n", "1".repeat(64)))
        .unwrap();
    let out = ok(run(&[("INSTALL_K3RS_EXEC", "--disable ingress")], &["--tls-san", "a b$x\"y'z"]), "install.sh");
    assert!(out.contains("Installed k3rs v9.9.9"), "{out}");
    assert_eq!(std::fs::read(root.join("usr/local/bin/k3rs")).unwrap(), binary);
    assert!(!root.join("usr/local/bin/kubectl").exists(), "INSTALL_K3RS_SYMLINK=skip");
    let service = std::fs::read_to_string(root.join("etc/init.d/k3rs")).unwrap();
    assert_openrc_matches_packaging(&service);
    // The service's command line, as OpenRC reads it (it sources the file, then evaluates
    // command_args), gives back every argument as it was.
    let words = Command::new("sh")
        .arg("-c")
        .arg(". \"$0\"; eval \"set -- $command_args\"; printf '%s\\n' \"$command\" \"$@\"")
        .arg(root.join("etc/init.d/k3rs"))
        .env_clear()
        .env("PATH", system_path())
        .output()
        .unwrap();
    let want =
        format!("{}\nserver\n--disable\ningress\n--tls-san\na b$x\"y'z\n", root.join("usr/local/bin/k3rs").display());
    assert_eq!(String::from_utf8_lossy(&words.stdout), want);
    // Installed already: a second run keeps the binary and says so.
    let out = ok(run(&[], &[]), "install.sh (again)");
    assert!(out.contains("is already k3rs v9.9.9"), "{out}");

    // The installer and the scripts it writes are shellcheck-clean (when shellcheck is here;
    // CI does not need it).
    let shellcheck = Command::new("shellcheck")
        .args(["-s", "sh"])
        .arg(repo().join("scripts/install.sh"))
        .arg(root.join("usr/local/bin/k3rs-killall.sh"))
        .arg(root.join("usr/local/bin/k3rs-uninstall.sh"))
        .output();
    match shellcheck {
        Ok(out) => assert!(out.status.success(), "shellcheck:\n{}", String::from_utf8_lossy(&out.stdout)),
        Err(e) => eprintln!("shellcheck not run: {e}"),
    }

    let out = ns.command(root.join("usr/local/bin/k3rs-uninstall.sh")).env_clear().env("PATH", system_path()).output();
    ok(out.unwrap(), "k3rs-uninstall.sh");
    assert_eq!(files_left(root), Vec::<String>::new(), "files left");
}
