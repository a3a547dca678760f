//! `kubectl logs`, `exec` and `attach` through the API server's streaming subresources:
//! an in-process server over TLS (the same start-up `k3rs server` uses), real kubectl
//! binaries — 1.33 speaking WebSocket (`v5.channel.k8s.io`), 1.27 speaking SPDY/3.1 — and
//! a `PodStreams` that runs host processes (`sh -c`) in place of containers. The processes
//! are a stand-in for the runtime, which is tested on its own: what is tested here is the
//! transport (options in, bytes both ways, terminals, exit codes, errors out).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use k3rs::apiserver::status::ApiError;
use k3rs::apiserver::streaming::{
    ExitStatus, LogOptions, LogStream, PodStreams, StreamOptions, StreamSession, TerminalSize,
};
use k3rs::apiserver::{ApiServer, Identity};
use k3rs::client::Client;
use k3rs::server::config::ServerConfig;
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use k3rs::store::Store;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;

/// Containers as host processes: a container's `args[0]` is its shell script.
#[derive(Default)]
struct HostProcesses {
    /// The log options each `logs` call received, to check what kubectl's flags became.
    seen: Mutex<Vec<LogOptions>>,
}

fn script_of(pod: &Value, container: &str) -> Result<String, ApiError> {
    pod["spec"]["containers"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == container))
        .and_then(|c| c["args"][0].as_str())
        .map(str::to_string)
        .ok_or_else(|| ApiError::bad_request(format!("no script for {container}")))
}

fn exit_of(status: std::io::Result<std::process::ExitStatus>) -> ExitStatus {
    match status {
        Ok(s) => ExitStatus::Code(s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))),
        Err(e) => ExitStatus::Error(e.to_string()),
    }
}

/// Runs `argv` with pipes, or on a new terminal with `io.tty`.
fn spawn(argv: &[String], io: StreamOptions) -> Result<StreamSession, ApiError> {
    let Some((program, args)) = argv.split_first() else { return Err(ApiError::bad_request("empty command")) };
    let mut cmd = Command::new(program);
    cmd.args(args).kill_on_drop(true);
    if io.tty {
        let pty = nix::pty::openpty(None, None).map_err(|e| ApiError::internal(e.to_string()))?;
        let slave = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(|e| ApiError::internal(e.to_string()));
        cmd.stdin(slave(&pty.slave)?).stdout(slave(&pty.slave)?).stderr(slave(&pty.slave)?);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| ApiError::internal(format!("starting {program}: {e}")))?;
        drop(pty.slave);
        let master = Arc::new(pty.master);
        let file = |fd: &OwnedFd| fd.try_clone().map(|f| tokio::fs::File::from_std(std::fs::File::from(f)));
        let reader = file(&master).map_err(|e| ApiError::internal(e.to_string()))?;
        let writer = file(&master).map_err(|e| ApiError::internal(e.to_string()))?;
        let (resize_tx, mut resize_rx) = mpsc::channel::<TerminalSize>(4);
        let m = master.clone();
        tokio::spawn(async move {
            while let Some(s) = resize_rx.recv().await {
                let ws = libc::winsize { ws_row: s.height, ws_col: s.width, ws_xpixel: 0, ws_ypixel: 0 };
                // SAFETY: a valid winsize on a terminal master we own.
                unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
            }
        });
        return Ok(StreamSession {
            stdin: io.stdin.then(|| Box::new(writer) as _),
            stdout: Some(Box::new(reader)),
            stderr: None,
            resize: Some(resize_tx),
            exit: Box::pin(async move { exit_of(child.wait().await) }),
        });
    }
    let pipe = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    cmd.stdin(pipe(io.stdin)).stdout(pipe(io.stdout)).stderr(pipe(io.stderr));
    let mut child = cmd.spawn().map_err(|e| ApiError::internal(format!("starting {program}: {e}")))?;
    Ok(StreamSession {
        stdin: child.stdin.take().map(|s| Box::new(s) as _),
        stdout: child.stdout.take().map(|s| Box::new(s) as _),
        stderr: child.stderr.take().map(|s| Box::new(s) as _),
        resize: None,
        exit: Box::pin(async move { exit_of(child.wait().await) }),
    })
}

/// A log line as the kubelet writes it, with its time in front when asked.
fn stamp(timestamps: bool, line: String) -> String {
    if timestamps {
        let now =
            time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        format!("{now} {line}\n")
    } else {
        format!("{line}\n")
    }
}

#[async_trait]
impl PodStreams for HostProcesses {
    async fn logs(&self, pod: &Value, container: &str, opts: LogOptions) -> Result<LogStream, ApiError> {
        self.seen.lock().unwrap().push(opts.clone());
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script_of(pod, container)?)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let stdout = child.stdout.take().ok_or_else(|| ApiError::internal("no stdout"))?;
        let timestamps = opts.timestamps;
        let mut lines = BufReader::new(stdout).lines();
        if opts.follow {
            // Each line as the process writes it; the child lives as long as the stream.
            let s = futures::stream::unfold(Some((lines, child)), move |state| async move {
                let (mut lines, mut child) = state?;
                match lines.next_line().await {
                    Ok(Some(l)) => Some((Ok(Bytes::from(stamp(timestamps, l))), Some((lines, child)))),
                    Ok(None) => {
                        let _ = child.wait().await;
                        None
                    }
                    Err(e) => Some((Err(e), None)),
                }
            });
            return Ok(s.boxed());
        }
        let mut all = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push(l);
        }
        let _ = child.wait().await;
        let skip = match opts.tail_lines {
            Some(n) => all.len().saturating_sub(n as usize),
            None => 0,
        };
        let text: String = all.into_iter().skip(skip).map(|l| stamp(timestamps, l)).collect();
        Ok(futures::stream::once(async move { Ok(Bytes::from(text)) }).boxed())
    }

    async fn exec(
        &self,
        _pod: &Value,
        _container: &str,
        command: Vec<String>,
        io: StreamOptions,
    ) -> Result<StreamSession, ApiError> {
        spawn(&command, io)
    }

    async fn attach(&self, pod: &Value, container: &str, io: StreamOptions) -> Result<StreamSession, ApiError> {
        spawn(&["sh".to_string(), "-c".to_string(), script_of(pod, container)?], io)
    }
}

struct Cluster {
    dir: tempfile::TempDir,
    api: Arc<ApiServer>,
    streams: Arc<HostProcesses>,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Cluster {
    async fn start() -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::with_defaults(dir.path().join("data"), "node1");
        config.apiserver.https_listen_port = 0;
        config.apiserver.bind_address = "127.0.0.1".parse().unwrap();
        config.apiserver.write_kubeconfig = dir.path().join("kubeconfig");
        config.node.ip = Some("127.0.0.1".parse().unwrap());
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap());
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop = move || {
            let mut rx = stop_rx.clone();
            async move {
                let _ = rx.changed().await;
            }
        };
        let started = k3rs::server::apiserver::start(&config, store, stop).await.expect("start the API server");
        let streams = Arc::new(HostProcesses::default());
        started.api.set_pod_streams(streams.clone());
        default_service_account(&Client::new(started.api.clone(), Identity::new("system:admin", &["system:masters"])))
            .await;
        Cluster { dir, api: started.api, streams, _stop: stop_tx }
    }

    fn client(&self) -> Client {
        Client::new(self.api.clone(), Identity::new("system:admin", &["system:masters"]))
    }

    /// A pod on node1 whose containers (name, script) run, with status saying so.
    async fn running_pod(&self, name: &str, containers: &[(&str, &str)]) {
        let c = self.client();
        let specs: Vec<Value> = containers
            .iter()
            .map(|(n, script)| json!({"name": n, "image": "busybox", "command": ["sh", "-c"], "args": [script]}))
            .collect();
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                         "spec": {"nodeName": "node1", "containers": specs}});
        let mut pod = c.post("/api/v1/namespaces/default/pods", &pod).await.expect("create the pod");
        let now = "2025-01-01T00:00:00Z";
        pod["status"] = json!({
            "phase": "Running",
            "startTime": now,
            "containerStatuses": containers.iter().map(|(n, _)| json!({
                "name": n, "image": "busybox", "imageID": "", "ready": true, "started": true, "restartCount": 0,
                "state": {"running": {"startedAt": now}}})).collect::<Vec<_>>(),
        });
        c.put(&format!("/api/v1/namespaces/default/pods/{name}/status"), &pod).await.expect("write the pod's status");
    }

    fn kubectl(&self, binary: &Path, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(binary);
        // Flags first: everything after `--` goes to the remote command.
        cmd.arg("--cache-dir")
            .arg(self.dir.path().join(format!("cache-{}", binary.file_name().and_then(|n| n.to_str()).unwrap_or("x"))))
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path());
        cmd
    }

    /// `script` running a kubectl command line on a terminal it makes.
    fn on_terminal(&self, command_line: &str) -> std::process::Command {
        let mut cmd = std::process::Command::new("script");
        cmd.args(["-qec", command_line, "/dev/null"])
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs kubectl to its end (off the runtime's threads), with `stdin` as its input.
    async fn run(&self, binary: &Path, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = self.kubectl(binary, args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let input = stdin.map(str::to_string);
        let what = format!("{} {args:?}", binary.display());
        tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
            if let Some(text) = input {
                use std::io::Write;
                let mut w = child.stdin.take().unwrap();
                w.write_all(text.as_bytes()).unwrap();
            }
            let out = child.wait_with_output().unwrap();
            Out {
                code: out.status.code(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                what,
            }
        })
        .await
        .unwrap()
    }
}

/// Pods need their service account; the controller that makes it may not have run yet.
async fn default_service_account(c: &Client) {
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
    match c.post("/api/v1/namespaces/default/serviceaccounts", &sa).await {
        Ok(_) => {}
        Err(e) if e.is_already_exists() => {}
        Err(e) => panic!("create the default service account: {e}"),
    }
}

#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    what: String,
}

impl Out {
    fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "{} failed:\n{}\n{}", self.what, self.stdout, self.stderr);
        self.stdout
    }
}

fn kubectl_dir() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let kubectl =
        std::env::split_paths(&path).map(|d| d.join("kubectl")).find(|p| p.is_file()).expect("kubectl on PATH");
    std::fs::canonicalize(kubectl).unwrap().parent().unwrap().to_path_buf()
}

/// kubectl 1.33 (WebSocket) and 1.27 (SPDY, which it only speaks).
fn kubectls() -> Vec<PathBuf> {
    let dir = kubectl_dir();
    vec![dir.join("kubectl.1.33"), dir.join("kubectl.1.27")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_logs_with_options_and_follow() {
    let c = Cluster::start().await;
    c.running_pod("lines", &[("app", "for i in 1 2 3 4 5; do echo line$i; done")]).await;
    c.running_pod("slow", &[("app", "echo first; sleep 2; echo second")]).await;
    for k in kubectls() {
        let k = k.as_path();
        assert_eq!(c.run(k, &["logs", "lines"], None).await.ok(), "line1\nline2\nline3\nline4\nline5\n");
        assert_eq!(c.run(k, &["logs", "lines", "--tail=2"], None).await.ok(), "line4\nline5\n");
        let stamped = c.run(k, &["logs", "lines", "--timestamps", "--since=1h", "-c", "app"], None).await.ok();
        let first = stamped.lines().next().unwrap_or_default();
        let (ts, rest) = first.split_once(' ').unwrap_or_default();
        assert!(time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).is_ok(), "{stamped}");
        assert_eq!(rest, "line1");
        let seen = c.streams.seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!((seen.timestamps, seen.since_seconds, seen.follow), (true, Some(3600), false));
        assert_eq!(c.run(k, &["logs", "lines", "--limit-bytes=8"], None).await.ok(), "line1\nli");

        // -f: the first line arrives while the process still runs, the command ends with it.
        let mut child = tokio::process::Command::from(c.kubectl(k, &["logs", "-f", "slow"]));
        let mut child = child.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let started = Instant::now();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), out.read_line(&mut line)).await.unwrap().unwrap();
        assert_eq!(line, "first\n");
        assert!(
            started.elapsed() < Duration::from_millis(1900),
            "the first line waited for the second: {:?}",
            started.elapsed()
        );
        let mut rest = String::new();
        tokio::time::timeout(Duration::from_secs(10), out.read_to_string(&mut rest)).await.unwrap().unwrap();
        assert_eq!(rest, "second\n");
        assert!(child.wait().await.unwrap().success());
        assert!(c.streams.seen.lock().unwrap().last().unwrap().follow);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_refusals_are_upstreams() {
    let c = Cluster::start().await;
    c.running_pod("two", &[("a", "echo a"), ("b", "echo b")]).await;
    let k = &kubectls()[0];
    let out = c.run(k, &["logs", "two", "-c", "nope"], None).await;
    assert!(out.stderr.contains("container nope is not valid for pod two"), "{out:?}");
    // Raw API: kubectl picks a container itself, so ask the server directly.
    let c2 = c.client();
    let e = c2.get("/api/v1/namespaces/default/pods/two/log").await.unwrap_err();
    assert_eq!(
        (e.code(), e.message.as_str()),
        (400, "a container name must be specified for pod two, choose one of: [a b]")
    );
    let e = c2.get("/api/v1/namespaces/default/pods/missing/log").await.unwrap_err();
    assert_eq!((e.code(), e.message.as_str()), (404, "pods \"missing\" not found"));

    // A pod whose container is still being created.
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waiting"},
                     "spec": {"nodeName": "node1", "containers": [{"name": "app", "image": "busybox"}]}});
    let mut pod = c2.post("/api/v1/namespaces/default/pods", &pod).await.unwrap();
    pod["status"] = json!({"phase": "Pending", "containerStatuses": [{"name": "app", "image": "busybox", "imageID": "",
        "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]});
    c2.put("/api/v1/namespaces/default/pods/waiting/status", &pod).await.unwrap();
    let out = c.run(k, &["logs", "waiting"], None).await;
    assert!(
        out.stderr.contains("container \"app\" in pod \"waiting\" is waiting to start: ContainerCreating"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_node_streams_are_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap());
    let api = ApiServer::new(store);
    api.bootstrap().await.unwrap();
    let c = Client::new(api, Identity::new("system:admin", &["system:masters"]));
    default_service_account(&c).await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                     "spec": {"nodeName": "node1", "containers": [{"name": "app", "image": "busybox"}]}});
    let mut pod = c.post("/api/v1/namespaces/default/pods", &pod).await.unwrap();
    pod["status"] = json!({"phase": "Running", "containerStatuses": [{"name": "app", "image": "busybox", "imageID": "",
        "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}]});
    c.put("/api/v1/namespaces/default/pods/p/status", &pod).await.unwrap();
    let e = c.get("/api/v1/namespaces/default/pods/p/log").await.unwrap_err();
    assert_eq!(e.code(), 503);
    assert!(e.message.contains("no node is serving pod streams"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_exec_exit_codes_stdin_and_errors() {
    let c = Cluster::start().await;
    c.running_pod("p", &[("app", "sleep 1000")]).await;
    for k in kubectls() {
        let k = k.as_path();
        assert_eq!(c.run(k, &["exec", "p", "--", "sh", "-c", "echo out; echo err >&2"], None).await.ok(), "out\n");
        let out = c.run(k, &["exec", "p", "--", "sh", "-c", "echo bye; exit 3"], None).await;
        assert_eq!((out.code, out.stdout.as_str()), (Some(3), "bye\n"), "{out:?}");
        assert!(out.stderr.contains("command terminated with exit code 3"), "{out:?}");
        assert_eq!(c.run(k, &["exec", "-i", "p", "--", "cat"], Some("hi\n")).await.ok(), "hi\n");
        // Much more than one frame or pipe buffer, both ways.
        let big: String = (0..20000).map(|i| format!("{i:08}\n")).collect();
        assert_eq!(c.run(k, &["exec", "-i", "p", "--", "sh", "-c", "cat; cat /dev/null"], Some(&big)).await.ok(), big);
        let out = c.run(k, &["exec", "p", "--", "no-such-binary-k3rs"], None).await;
        assert_ne!(out.code, Some(0));
        assert!(out.stderr.contains("no-such-binary-k3rs"), "{out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_exec_with_a_terminal_and_attach() {
    let c = Cluster::start().await;
    c.running_pod("p", &[("app", "while read l; do echo \"got $l\"; done; echo done")]).await;
    for k in kubectls() {
        // `script` gives kubectl a terminal of a known size; the size must reach the
        // process' terminal through the resize channel.
        let inner = format!(
            "stty cols 91 rows 37; {} exec -it p -- sh -c 'sleep 1; stty size; test -t 0 && echo tty; exit 4'",
            k.display()
        );
        let mut cmd = c.on_terminal(&inner);
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("37 91"), "{}: {stdout} {}", k.display(), String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("tty"), "{stdout}");
        assert_eq!(out.status.code(), Some(4), "{stdout}");

        let out = c.run(&k, &["attach", "-i", "p"], Some("one\ntwo\n")).await.ok();
        assert!(out.contains("got one\ngot two\ndone\n"), "{}: {out:?}", k.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_kubectl_speaks_the_protocol_we_claim() {
    let c = Cluster::start().await;
    c.running_pod("p", &[("app", "sleep 1000")]).await;
    let ks = kubectls();
    let ws = c.run(&ks[0], &["exec", "p", "-v=4", "--", "true"], None).await;
    assert!(ws.stderr.contains("The subprotocol is v5.channel.k8s.io"), "1.33 did not use WebSocket v5: {}", ws.stderr);
    assert_eq!(ws.code, Some(0));
    // 1.33 told not to use WebSockets falls back to SPDY, as 1.27 always does.
    let mut cmd = c.kubectl(&ks[0], &["exec", "p", "-v=7", "--", "sh", "-c", "exit 5"]);
    cmd.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false").stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // SPDY offers its versions in `X-Stream-Protocol-Version`; no WebSocket subprotocol is chosen.
    assert!(stderr.contains("X-Stream-Protocol-Version: v4.channel.k8s.io"), "{stderr}");
    assert!(!stderr.contains("The subprotocol is"), "{stderr}");
    assert_eq!(out.status.code(), Some(5), "{stderr}");
}
