//! [`LibcontainerRuntime`]: containers created by the shim through libcontainer, started,
//! signalled and deleted from this process through libcontainer's state in `run_dir`.
//!
//! Each container has a directory `<containers_dir>/<id>/` that outlives k3rs: `meta.json`
//! (labels, log path, creation time), `pid` (the container's init), `started` (start time),
//! `shim.pid`, `shim.log` (the shim's own errors), `attach.sock`, and `exit` (written by the
//! shim once, atomically: `<code> <signal> <oom 0|1> <unix ns>`). Everything `status` and
//! `list` report comes from these files, so a new k3rs process sees what the last one did.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::shim::{self, ShimConfig};
use super::{
    valid_id, AttachRequest, ContainerInfo, ContainerState, ContainerStatus, CreateRequest, ExecRequest, ExecSession,
    Runtime, RuntimeError, TermSize,
};

/// What the runtime keeps about a container besides libcontainer's state.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Meta {
    labels: BTreeMap<String, String>,
    log_path: PathBuf,
    bundle: PathBuf,
    created_at: String,
    tty: bool,
    stdin: bool,
}

/// The exit record the shim writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ExitRecord {
    code: i32,
    signal: i32,
    oom: bool,
    at_ns: i64,
}

impl ExitRecord {
    fn parse(s: &str) -> Option<ExitRecord> {
        let mut it = s.split_whitespace();
        Some(ExitRecord {
            code: it.next()?.parse().ok()?,
            signal: it.next()?.parse().ok()?,
            oom: it.next()? == "1",
            at_ns: it.next()?.parse().ok()?,
        })
    }
}

/// The runtime over libcontainer and the shim.
#[derive(Clone, Debug)]
pub struct LibcontainerRuntime {
    containers_dir: PathBuf,
    run_dir: PathBuf,
    shim_binary: PathBuf,
}

/// Now with nine fraction digits, as the container states record times.
fn now_rfc3339() -> String {
    crate::domain::time::format(time::OffsetDateTime::now_utc(), crate::domain::time::Precision::Nanos)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| RuntimeError::Join(e.to_string()))
}

fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

impl LibcontainerRuntime {
    /// `containers_dir` holds the per-container shim files, `run_dir` libcontainer's state.
    /// The shim is this executable re-run as `k3rs shim`.
    pub fn new(containers_dir: impl Into<PathBuf>, run_dir: impl Into<PathBuf>) -> LibcontainerRuntime {
        LibcontainerRuntime {
            containers_dir: containers_dir.into(),
            run_dir: run_dir.into(),
            shim_binary: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
        }
    }

    /// Uses another `k3rs` binary as the shim (tests, where the current executable is the
    /// test harness).
    pub fn with_shim_binary(mut self, path: impl Into<PathBuf>) -> LibcontainerRuntime {
        self.shim_binary = path.into();
        self
    }

    fn dir(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        if !valid_id(id) {
            return Err(RuntimeError::InvalidId(id.to_string()));
        }
        Ok(self.containers_dir.join(id))
    }

    fn existing_dir(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        let d = self.dir(id)?;
        if !d.join("meta.json").exists() {
            return Err(RuntimeError::NotFound(id.to_string()));
        }
        Ok(d)
    }

    fn meta(&self, id: &str, dir: &Path) -> Result<Meta, RuntimeError> {
        let b = std::fs::read(dir.join("meta.json")).map_err(|_| RuntimeError::NotFound(id.to_string()))?;
        serde_json::from_slice(&b).map_err(|e| RuntimeError::State { id: id.to_string(), message: e.to_string() })
    }

    fn read_pid(dir: &Path, file: &str) -> Option<i32> {
        std::fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
    }

    fn exit_record(dir: &Path) -> Option<ExitRecord> {
        ExitRecord::parse(&std::fs::read_to_string(dir.join(shim::EXIT_FILE)).ok()?)
    }

    fn status_of(&self, id: &str, dir: &Path) -> Result<ContainerStatus, RuntimeError> {
        let meta = self.meta(id, dir)?;
        let pid = Self::read_pid(dir, "pid");
        let started_at = std::fs::read_to_string(dir.join("started")).ok().map(|s| s.trim().to_string());
        let mut st = ContainerStatus {
            state: ContainerState::Unknown,
            pid,
            created_at: Some(meta.created_at),
            started_at: started_at.clone(),
            finished_at: None,
            exit_code: None,
            reason: None,
            message: None,
        };
        if let Some(exit) = Self::exit_record(dir) {
            st.state = ContainerState::Exited;
            st.finished_at = Some(crate::domain::time::rfc3339_nanos(exit.at_ns));
            st.exit_code = Some(exit.code);
            st.reason = Some(
                if exit.oom {
                    "OOMKilled"
                } else if exit.code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .to_string(),
            );
            return Ok(st);
        }
        let shim_alive = Self::read_pid(dir, shim::SHIM_PID_FILE).is_some_and(pid_alive);
        if pid.is_some_and(pid_alive) && shim_alive {
            st.state = if started_at.is_some() { ContainerState::Running } else { ContainerState::Created };
        } else if pid.is_none() && shim_alive {
            // The shim made the container but no one recorded it (k3rs stopped in between):
            // it was never started.
            st.state = ContainerState::Created;
        } else if shim_alive {
            // Exited; the shim is still draining output before it writes the record.
            st.state = ContainerState::Running;
        } else {
            st.message = Some("the container's shim is gone without an exit record".into());
        }
        Ok(st)
    }

    /// Waits until the exit record exists (or the deadline passes).
    async fn wait_exit(&self, dir: &Path, timeout: Duration) -> Option<ExitRecord> {
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(1);
        loop {
            if let Some(e) = Self::exit_record(dir) {
                return Some(e);
            }
            // A shim that died cannot write the record any more.
            if !Self::read_pid(dir, shim::SHIM_PID_FILE).is_some_and(pid_alive) {
                return Self::exit_record(dir);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(20));
        }
    }

    /// Waits for the container to exit and returns its status.
    pub async fn wait(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let dir = self.existing_dir(id)?;
        self.wait_exit(&dir, Duration::from_secs(u64::MAX / 4)).await;
        self.status_of(id, &dir)
    }

    fn signal(&self, id: &str, dir: &Path, signal: i32) -> Result<(), RuntimeError> {
        if Self::exit_record(dir).is_some() {
            return Ok(());
        }
        let pid = Self::read_pid(dir, "pid").ok_or_else(|| RuntimeError::NotRunning { id: id.to_string() })?;
        // SAFETY: kill sends a signal to a PID read from the shim's state; no memory is involved.
        if unsafe { libc::kill(pid, signal) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                return Err(RuntimeError::Kill { id: id.to_string(), message: e.to_string() });
            }
        }
        Ok(())
    }

    /// The shim's error lines (libcontainer logs its failures there), else its last lines.
    fn shim_log_tail(dir: &Path) -> String {
        let s = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
        let errors: Vec<&str> = s.lines().filter(|l| l.contains("ERROR")).take(5).collect();
        if !errors.is_empty() {
            return errors.join("; ");
        }
        let lines: Vec<&str> = s.lines().rev().take(3).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("; ")
    }

    fn delete_libcontainer_state(&self, id: &str) -> Result<(), RuntimeError> {
        let root = self.run_dir.join(id);
        if !root.exists() {
            return Ok(());
        }
        let rerr = |m: String| RuntimeError::Remove { id: id.to_string(), message: m };
        match libcontainer::container::Container::load(root.clone()) {
            Ok(mut c) => c.delete(true).map_err(|e| rerr(e.to_string()))?,
            Err(e) => tracing::warn!(id, error = %e, "libcontainer state unreadable; removing it"),
        }
        if root.exists() {
            std::fs::remove_dir_all(&root).map_err(|e| rerr(e.to_string()))?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Runtime for LibcontainerRuntime {
    async fn create(&self, req: &CreateRequest) -> Result<(), RuntimeError> {
        let dir = self.dir(&req.id)?;
        let id = req.id.clone();
        let werr = |e: std::io::Error| RuntimeError::WriteBundle { id: id.clone(), source: e };
        std::fs::create_dir_all(&self.containers_dir).map_err(werr)?;
        std::fs::create_dir_all(&self.run_dir).map_err(werr)?;
        if let Err(e) = std::fs::create_dir(&dir) {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(RuntimeError::AlreadyExists(id));
            }
            return Err(werr(e));
        }
        let result = self.create_in(req, &dir).await;
        if result.is_err() {
            let me = self.clone();
            let id2 = id.clone();
            let _ = blocking(move || me.delete_libcontainer_state(&id2)).await;
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.existing_dir(id)?;
        let root = self.run_dir.join(id);
        let id2 = id.to_string();
        // libcontainer reaches the container's notify socket by chdir-ing next to it: cwd is
        // per process, so two starts at once would send each other's start message (one
        // container started twice, the other never). A thread with its own filesystem
        // context (unshare CLONE_FS) keeps each start's chdir to itself.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let r = (|| {
                // SAFETY: unshare(CLONE_FS) only detaches this thread's cwd/root/umask.
                if unsafe { libc::unshare(libc::CLONE_FS) } != 0 {
                    return Err(RuntimeError::Start {
                        id: id2.clone(),
                        message: format!("unshare(CLONE_FS): {}", std::io::Error::last_os_error()),
                    });
                }
                let mut c = libcontainer::container::Container::load(root)
                    .map_err(|e| RuntimeError::Start { id: id2.clone(), message: e.to_string() })?;
                c.start().map_err(|e| RuntimeError::Start { id: id2.clone(), message: e.to_string() })
            })();
            let _ = tx.send(r);
        });
        rx.await.map_err(|e| RuntimeError::Join(e.to_string()))??;
        std::fs::write(dir.join("started"), now_rfc3339())
            .map_err(|e| RuntimeError::Start { id: id.to_string(), message: e.to_string() })
    }

    async fn stop(&self, id: &str, signal: i32, grace: Duration) -> Result<(), RuntimeError> {
        let dir = self.existing_dir(id)?;
        self.signal(id, &dir, signal)?;
        if self.wait_exit(&dir, grace).await.is_some() {
            return Ok(());
        }
        tracing::info!(id, ?grace, "container did not stop within its grace period; killing it");
        self.signal(id, &dir, libc::SIGKILL)?;
        match self.wait_exit(&dir, Duration::from_secs(10)).await {
            Some(_) => Ok(()),
            None => Err(RuntimeError::Kill { id: id.to_string(), message: "no exit 10 s after SIGKILL".into() }),
        }
    }

    async fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        let dir = self.existing_dir(id)?;
        self.signal(id, &dir, signal)
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.existing_dir(id)?;
        if Self::exit_record(&dir).is_none() {
            match self.signal(id, &dir, libc::SIGKILL) {
                Ok(()) => {
                    self.wait_exit(&dir, Duration::from_secs(10)).await;
                }
                // Never recorded as created: libcontainer's forced delete kills what is there.
                Err(RuntimeError::NotRunning { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let me = self.clone();
        let id2 = id.to_string();
        blocking(move || me.delete_libcontainer_state(&id2)).await??;
        // A shim whose container was killed by the forced delete (its pid was never
        // recorded) may still be writing the exit record: a removal that races it finds the
        // directory not empty, and is tried again for a little while.
        let mut tries = 0;
        loop {
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && tries < 40 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other.map_err(|e| RuntimeError::Remove { id: id.to_string(), message: e.to_string() }),
            }
        }
    }

    async fn status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let dir = self.existing_dir(id)?;
        self.status_of(id, &dir)
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let entries = match std::fs::read_dir(&self.containers_dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RuntimeError::State { id: String::new(), message: e.to_string() }),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if !valid_id(&id) || !e.path().join("meta.json").exists() {
                continue;
            }
            let Ok(meta) = self.meta(&id, &e.path()) else { continue };
            let Ok(status) = self.status_of(&id, &e.path()) else { continue };
            out.push(ContainerInfo { id, labels: meta.labels, status });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    async fn exec(&self, id: &str, req: &ExecRequest) -> Result<ExecSession, RuntimeError> {
        let dir = self.existing_dir(id)?;
        let xerr = |m: String| RuntimeError::Exec { id: id.to_string(), message: m };
        if self.status_of(id, &dir)?.state != ContainerState::Running {
            return Err(RuntimeError::NotRunning { id: id.to_string() });
        }
        if req.cmd.is_empty() {
            return Err(xerr("no command".into()));
        }
        let meta = self.meta(id, &dir)?;
        let spec = oci_spec::runtime::Spec::load(meta.bundle.join("config.json")).map_err(|e| xerr(e.to_string()))?;
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(req.cmd.clone()));
        process.set_terminal(Some(req.tty));
        let process_file = dir.join(format!("exec-{:016x}.json", fastrand::u64(..)));
        let json = serde_json::to_vec(&process).map_err(|e| xerr(e.to_string()))?;
        std::fs::write(&process_file, json).map_err(|e| xerr(e.to_string()))?;

        let mut cmd = tokio::process::Command::new(&self.shim_binary);
        cmd.arg("shim").arg("exec").arg(&self.run_dir).arg(id).arg(&process_file);
        cmd.stdin(if req.stdin { Stdio::piped() } else { Stdio::null() });
        cmd.stdout(Stdio::piped());
        cmd.stderr(Stdio::piped());
        let mut resize_tx = None;
        let mut ctl_keep = None;
        if req.tty {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| xerr(e.to_string()))?;
            let rfd = r.as_raw_fd();
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::dup2(rfd, 3) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            ctl_keep = Some(r);
            let (tx, mut rx) = tokio::sync::mpsc::channel::<TermSize>(4);
            let mut w = tokio::net::unix::pipe::Sender::from_owned_fd(w).map_err(|e| xerr(e.to_string()))?;
            tokio::spawn(async move {
                while let Some(sz) = rx.recv().await {
                    let mut b = [0u8; 4];
                    b[..2].copy_from_slice(&sz.cols.to_be_bytes());
                    b[2..].copy_from_slice(&sz.rows.to_be_bytes());
                    if w.write_all(&b).await.is_err() {
                        break;
                    }
                }
            });
            resize_tx = Some(tx);
        }
        let mut child = cmd.spawn().map_err(|e| xerr(e.to_string()))?;
        drop(ctl_keep);
        let stdin = child.stdin.take().map(|s| Box::pin(s) as super::BoxedWrite);
        let stdout = child.stdout.take().map(|s| Box::pin(s) as super::BoxedRead);
        let stderr = child.stderr.take().map(|s| Box::pin(s) as super::BoxedRead);
        let id2 = id.to_string();
        let exit = Box::pin(async move {
            let st = child.wait().await;
            let _ = std::fs::remove_file(&process_file);
            let st = st.map_err(|e| RuntimeError::Exec { id: id2, message: e.to_string() })?;
            use std::os::unix::process::ExitStatusExt;
            Ok(st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)))
        });
        Ok(ExecSession { stdin, stdout, stderr, resize: resize_tx, exit })
    }

    async fn attach(&self, id: &str, req: &AttachRequest) -> Result<ExecSession, RuntimeError> {
        let dir = self.existing_dir(id)?;
        let aerr = |m: String| RuntimeError::Attach { id: id.to_string(), message: m };
        let meta = self.meta(id, &dir)?;
        // Socket paths are limited to 108 bytes: reach the socket through an fd of its dir.
        let dfd = std::fs::File::open(&dir).map_err(|e| aerr(e.to_string()))?;
        let path = format!("/proc/self/fd/{}/{}", dfd.as_raw_fd(), shim::ATTACH_SOCKET);
        let sock = tokio::net::UnixStream::connect(&path).await.map_err(|e| aerr(e.to_string()))?;
        drop(dfd);
        let (mut rd, mut wr) = sock.into_split();
        let (out_w, out_r) = tokio::io::duplex(64 * 1024);
        let (err_w, err_r) = tokio::io::duplex(64 * 1024);
        let (exit_tx, exit_rx) = tokio::sync::oneshot::channel::<i32>();
        let (want_out, want_err) = (req.stdout, req.stderr && !meta.tty);
        // Dropping the write half shuts the socket down for writing, which the shim takes as
        // the client leaving: keep it until the reading side is done.
        let (reader_done_tx, reader_done_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _done = reader_done_tx;
            let (mut out_w, mut err_w) = (Some(out_w), Some(err_w));
            let mut hdr = [0u8; 5];
            while rd.read_exact(&mut hdr).await.is_ok() {
                let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
                let mut data = vec![0u8; len];
                if rd.read_exact(&mut data).await.is_err() {
                    break;
                }
                match hdr[0] {
                    1 if want_out => {
                        if let Some(w) = out_w.as_mut() {
                            if w.write_all(&data).await.is_err() {
                                out_w = None;
                            }
                        }
                    }
                    2 if want_err => {
                        if let Some(w) = err_w.as_mut() {
                            if w.write_all(&data).await.is_err() {
                                err_w = None;
                            }
                        }
                    }
                    3 if data.len() == 4 => {
                        let _ = exit_tx.send(i32::from_be_bytes([data[0], data[1], data[2], data[3]]));
                        break;
                    }
                    _ => {}
                }
            }
        });
        let (frames_tx, mut frames_rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(16);
        tokio::spawn(async move {
            while let Some((kind, data)) = frames_rx.recv().await {
                let mut f = Vec::with_capacity(5 + data.len());
                f.push(kind);
                f.extend_from_slice(&(data.len() as u32).to_be_bytes());
                f.extend_from_slice(&data);
                if wr.write_all(&f).await.is_err() {
                    break;
                }
            }
            let _ = reader_done_rx.await;
            drop(wr);
        });
        let mut stdin = None;
        if req.stdin && meta.stdin {
            let (in_w, mut in_r) = tokio::io::duplex(64 * 1024);
            let tx = frames_tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                loop {
                    match in_r.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            let _ = tx.send((2, Vec::new())).await;
                            break;
                        }
                        Ok(n) => {
                            if tx.send((0, buf[..n].to_vec())).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
            stdin = Some(Box::pin(in_w) as super::BoxedWrite);
        }
        let mut resize = None;
        if meta.tty {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<TermSize>(4);
            let ftx = frames_tx.clone();
            tokio::spawn(async move {
                while let Some(sz) = rx.recv().await {
                    let mut b = sz.cols.to_be_bytes().to_vec();
                    b.extend_from_slice(&sz.rows.to_be_bytes());
                    if ftx.send((1, b)).await.is_err() {
                        break;
                    }
                }
            });
            resize = Some(tx);
        }
        drop(frames_tx);
        let me = self.clone();
        let id2 = id.to_string();
        let exit = Box::pin(async move {
            match exit_rx.await {
                Ok(code) => Ok(code),
                // The session ended without the exit frame: ask the record.
                Err(_) => me.status(&id2).await.map(|s| s.exit_code.unwrap_or(-1)),
            }
        });
        Ok(ExecSession {
            stdin,
            stdout: if req.stdout { Some(Box::pin(out_r)) } else { None },
            stderr: if want_err { Some(Box::pin(err_r)) } else { None },
            resize,
            exit,
        })
    }
}

impl LibcontainerRuntime {
    async fn create_in(&self, req: &CreateRequest, dir: &Path) -> Result<(), RuntimeError> {
        let id = req.id.clone();
        let werr = |e: std::io::Error| RuntimeError::WriteBundle { id: id.clone(), source: e };
        let cerr = |m: String| RuntimeError::Create { id: id.clone(), message: m };
        std::fs::create_dir_all(&req.bundle).map_err(werr)?;
        let mut spec = req.spec.clone();
        clamp_oom_score_adj(&mut spec);
        spec.save(req.bundle.join("config.json")).map_err(|e| werr(std::io::Error::other(e.to_string())))?;
        let meta = Meta {
            labels: req.labels.clone(),
            log_path: req.log_path.clone(),
            bundle: req.bundle.clone(),
            created_at: now_rfc3339(),
            tty: req.tty,
            stdin: req.stdin,
        };
        let json = serde_json::to_vec(&meta).map_err(|e| werr(std::io::Error::other(e)))?;
        std::fs::write(dir.join("meta.json"), json).map_err(werr)?;
        let cfg = ShimConfig {
            id: req.id.clone(),
            bundle: std::path::absolute(&req.bundle).map_err(werr)?,
            root: std::path::absolute(&self.run_dir).map_err(werr)?,
            state_dir: std::path::absolute(dir).map_err(werr)?,
            log_path: std::path::absolute(&req.log_path).map_err(werr)?,
            stdin: req.stdin,
            stdin_once: req.stdin_once,
            tty: req.tty,
            rootfs_mount: req.rootfs_mount.clone(),
        };
        let arg = serde_json::to_string(&cfg).map_err(|e| werr(std::io::Error::other(e)))?;
        let log = std::fs::File::create(dir.join("shim.log")).map_err(werr)?;
        let child = tokio::process::Command::new(&self.shim_binary)
            .arg("shim")
            .arg("create")
            .arg(arg)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| RuntimeError::SpawnShim { id: id.clone(), source: e })?;
        // The shim's first process exits at once; its child writes the result and closes
        // stdout when it becomes the monitor.
        let out = child.wait_with_output().await.map_err(|e| RuntimeError::SpawnShim { id: id.clone(), source: e })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().next().unwrap_or_default();
        match line.strip_prefix("ok ").and_then(|p| p.trim().parse::<i32>().ok()) {
            Some(pid) => {
                std::fs::write(dir.join("pid"), pid.to_string()).map_err(werr)?;
                tracing::debug!(id = %req.id, pid, "container created");
                Ok(())
            }
            None => {
                let msg = line.strip_prefix("error ").unwrap_or(line);
                let tail = Self::shim_log_tail(dir);
                Err(cerr(if tail.is_empty() { msg.to_string() } else { format!("{msg} ({tail})") }))
            }
        }
    }
}

/// Lowering `oom_score_adj` below our own needs CAP_SYS_RESOURCE, which a k3rs run inside
/// another container may lack; then the container gets ours instead of failing to start.
fn clamp_oom_score_adj(spec: &mut oci_spec::runtime::Spec) {
    let Some(process) = spec.process_mut().as_mut() else { return };
    let Some(want) = process.oom_score_adj() else { return };
    let own: i32 =
        std::fs::read_to_string("/proc/self/oom_score_adj").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    if want < own && !has_cap_sys_resource() {
        tracing::warn!(want, own, "no CAP_SYS_RESOURCE: container oom_score_adj raised to ours");
        process.set_oom_score_adj(Some(own));
    }
}

fn has_cap_sys_resource() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << 24) != 0) // bit 24: CAP_SYS_RESOURCE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_records_parse() {
        assert_eq!(
            ExitRecord::parse("137 9 1 1700000000000000000\n"),
            Some(ExitRecord { code: 137, signal: 9, oom: true, at_ns: 1_700_000_000_000_000_000 })
        );
        assert_eq!(ExitRecord::parse("3 0"), None);
    }
}
