//! End to end: the real `k3rs server` binary, run as root inside a network namespace this
//! test makes (a veth pair inside it is the node's interface), driven by the real kubectl
//! (the default one, 1.27 and 1.33) and the official Python client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A network namespace with a node address, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("k3rs-e2e-{tag}-{}", std::process::id());
        let run = |args: &[&str]| {
            let ok = Command::new("ip").args(args).status().expect("run ip");
            assert!(ok.success(), "ip {args:?} failed: these tests need root");
        };
        run(&["netns", "add", &name]);
        let ns = Netns { name };
        run(&["-n", &ns.name, "link", "set", "lo", "up"]);
        run(&["-n", &ns.name, "link", "add", "k3rs0", "type", "veth", "peer", "name", "k3rs1"]);
        run(&["-n", &ns.name, "addr", "add", "192.168.77.1/24", "dev", "k3rs0"]);
        run(&["-n", &ns.name, "link", "set", "k3rs0", "up"]);
        run(&["-n", &ns.name, "link", "set", "k3rs1", "up"]);
        ns
    }

    /// A command run inside the namespace (network only: cgroups and mounts stay the host's).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
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

struct Cluster {
    ns: Netns,
    server: Child,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn kubectl_dir() -> PathBuf {
    let real = std::fs::canonicalize(which("kubectl")).expect("kubectl on PATH");
    real.parent().expect("kubectl's folder").to_path_buf()
}

fn which(cmd: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join(cmd)).find(|p| p.is_file()))
        .unwrap_or_else(|| panic!("{cmd} is not on PATH"))
}

impl Cluster {
    fn start(tag: &str) -> Cluster {
        let ns = Netns::new(tag);
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let server = ns
            .command(env!("CARGO_BIN_EXE_k3rs"))
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--write-kubeconfig")
            .arg(dir.path().join("kubeconfig"))
            .args(["--node-ip", "192.168.77.1", "--node-name", "e2e-node"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start k3rs");
        let c = Cluster { ns, server, dir };
        let start = Instant::now();
        loop {
            let out = c.kubectl(&["get", "--raw", "/readyz"]);
            if out.status.success() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "server not ready: {}", c.log());
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    fn kubectl_with(&self, binary: &Path, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = self.ns.command(binary);
        cmd.arg("--kubeconfig").arg(self.kubeconfig()).args(args);
        cmd.env("HOME", self.dir.path()).env("KUBECACHEDIR", self.dir.path().join(format!("cache-{}", binary.display().to_string().replace('/', "_"))));
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(Path::new("kubectl"), args, None)
    }

    /// Runs kubectl and returns stdout, failing the test with stderr and the server log.
    fn ok(&self, binary: &Path, args: &[&str], stdin: Option<&str>) -> String {
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
}

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
  labels: {app: web, tier: front}
data:
  greeting: hello
";

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: [sleep, '3600']
        env: [{name: A, value: '1'}]
";

/// The smoke flow every kubectl version must pass.
fn smoke(c: &Cluster, kubectl: &Path) {
    let k = |args: &[&str]| c.ok(kubectl, args, None);
    let ki = |args: &[&str], input: &str| c.ok(kubectl, args, Some(input));
    ki(&["apply", "-f", "-"], CONFIGMAP);
    let uid = k(&["get", "configmap", "app-config", "-o", "jsonpath={.metadata.uid}"]);
    assert!(!uid.is_empty());
    let changed = CONFIGMAP.replace("hello", "bonjour");
    ki(&["apply", "-f", "-"], &changed);
    assert_eq!(k(&["get", "cm", "app-config", "-o", "jsonpath={.data.greeting}"]), "bonjour");
    assert_eq!(k(&["get", "cm", "app-config", "-o", "jsonpath={.metadata.uid}"]), uid, "apply must patch in place");
    let json = k(&["get", "cm", "-l", "tier=front", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    k(&["label", "cm", "app-config", "color=blue"]);
    k(&["annotate", "cm", "app-config", "note=checked"]);
    let yaml = k(&["get", "cm", "app-config", "-o", "yaml"]);
    assert!(yaml.contains("color: blue") && yaml.contains("note: checked"), "{yaml}");
    k(&["patch", "cm", "app-config", "--type=merge", "-p", r#"{"data":{"m":"1"}}"#]);
    k(&["patch", "cm", "app-config", "--type=json", "-p", r#"[{"op":"add","path":"/data/j","value":"2"}]"#]);
    assert_eq!(k(&["get", "cm", "app-config", "-o", "jsonpath={.data.m}{.data.j}"]), "12");

    ki(&["apply", "-f", "-"], DEPLOYMENT);
    k(&["patch", "deployment", "web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"busybox:1.37"}]}}}}"#]);
    let dep = k(&["get", "deploy", "web", "-o", "json"]);
    let d: serde_json::Value = serde_json::from_str(&dep).unwrap();
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["image"], "busybox:1.37");
    assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"], "A", "strategic merge keeps the other fields");
    assert_eq!(d["metadata"]["generation"], 2);
    k(&["delete", "deploy", "web"]);
    k(&["delete", "cm", "app-config"]);
    let gone = c.kubectl_with(kubectl, &["get", "cm", "app-config"], None);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"), "{}", String::from_utf8_lossy(&gone.stderr));
}

#[test]
fn kubectl_smoke_flow_on_every_version() {
    let c = Cluster::start("smoke");
    let dir = kubectl_dir();
    smoke(&c, Path::new("kubectl"));
    for v in ["kubectl.1.27", "kubectl.1.33"] {
        smoke(&c, &dir.join(v));
    }
}

#[test]
fn python_client_lists_creates_and_watches() {
    let c = Cluster::start("python");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/python_client.py");
    let out = c.ns.command("python3").arg(script).env("KUBECONFIG", c.kubeconfig()).output().expect("run python3");
    assert!(
        out.status.success(),
        "python client failed:\n{}\n{}\n--- server log ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
}
