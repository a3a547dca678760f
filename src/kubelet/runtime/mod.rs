//! Containers through youki's `libcontainer`, each held by a shim process (`k3rs` re-executed
//! to create it, then a tiny monitor program for its life) that owns its stdio, writes its
//! log, reaps it and records its exit status, so containers keep running when k3rs stops and
//! are re-adopted when it starts again.
//!
//! [`Runtime`] is what the node backend drives; [`LibcontainerRuntime`] is the real one (the
//! pod worker's unit tests fake the node one level up, as a `Backend`). The shim itself lives
//! in [`shim`] and is entered from `main` before anything else runs.

pub mod cgroup;
mod libcontainer;
#[path = "monitor/logic.rs"]
pub mod monitor_logic;
pub mod shim;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

pub use self::cgroup::{ensure_pod_cgroup, remove_pod_cgroup, PodCgroups, SysCgroups};
pub use self::libcontainer::LibcontainerRuntime;

/// A container to create (not start).
#[derive(Clone, Debug)]
pub struct CreateRequest {
    /// The container ID (64 hex characters by convention; `[A-Za-z0-9_.-]+`).
    pub id: String,
    /// Where `config.json` is written; the spec's root path may point elsewhere.
    pub bundle: PathBuf,
    pub spec: oci_spec::runtime::Spec,
    /// The CRI log file the shim appends to (created with its parent directories).
    pub log_path: PathBuf,
    /// Keep the container's stdin open for `attach`.
    pub stdin: bool,
    /// Close stdin after the first attach session ends.
    pub stdin_once: bool,
    /// Run on a pseudo-terminal (the spec's `process.terminal` must agree).
    pub tty: bool,
    /// Kept with the container and returned by `list()` (pod uid, container name, …).
    pub labels: BTreeMap<String, String>,
    /// The root filesystem to mount in the container's own mount namespace before it is
    /// created (the spec's root path is its target); None when the root is already there.
    pub rootfs_mount: Option<crate::images::RootfsMount>,
}

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// A container's status, as the pod worker turns it into a `ContainerStatus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerStatus {
    pub state: ContainerState,
    /// The container's init process, as seen from the host.
    pub pid: Option<i32>,
    /// RFC 3339 timestamps.
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The exit code, 128 + signal for a killed process.
    pub exit_code: Option<i32>,
    /// `Completed` (exit 0), `Error`, `OOMKilled`.
    pub reason: Option<String>,
    pub message: Option<String>,
}

/// A container known to the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub status: ContainerStatus,
}

/// A command to run in a running container.
#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
}

/// Which streams of a container's main process to attach to.
#[derive(Clone, Debug, Default)]
pub struct AttachRequest {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A terminal size, columns × rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermSize {
    pub cols: u16,
    pub rows: u16,
}

pub type BoxedWrite = Pin<Box<dyn AsyncWrite + Send>>;
pub type BoxedRead = Pin<Box<dyn AsyncRead + Send>>;

/// Streams of an exec or attach session. With a tty, everything comes on `stdout`.
pub struct ExecSession {
    pub stdin: Option<BoxedWrite>,
    pub stdout: Option<BoxedRead>,
    pub stderr: Option<BoxedRead>,
    /// Terminal size changes (tty sessions).
    pub resize: Option<tokio::sync::mpsc::Sender<TermSize>>,
    /// Resolves to the process's exit code (exec) or when the container exits (attach).
    pub exit: Pin<Box<dyn Future<Output = Result<i32, RuntimeError>> + Send>>,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {0:?} not found")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    #[error("invalid container id {0:?}")]
    InvalidId(String),
    #[error("writing the bundle of {id}: {source}")]
    WriteBundle { id: String, source: std::io::Error },
    #[error("spawning the shim of {id}: {source}")]
    SpawnShim { id: String, source: std::io::Error },
    #[error("creating container {id}: {message}")]
    Create { id: String, message: String },
    #[error("starting container {id}: {message}")]
    Start { id: String, message: String },
    #[error("signalling container {id}: {message}")]
    Kill { id: String, message: String },
    #[error("removing container {id}: {message}")]
    Remove { id: String, message: String },
    #[error("reading the state of {id}: {message}")]
    State { id: String, message: String },
    #[error("exec in {id}: {message}")]
    Exec { id: String, message: String },
    #[error("attach to {id}: {message}")]
    Attach { id: String, message: String },
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("cgroup {path}: {message}")]
    Cgroup { path: String, message: String },
    #[error("a runtime task failed: {0}")]
    Join(String),
}

/// The container runtime the pod worker drives.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync {
    /// Creates the container (its init waits for `start`); the shim holds it from here on.
    async fn create(&self, req: &CreateRequest) -> Result<(), RuntimeError>;
    async fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// Sends `signal`, waits up to `grace` for the exit, then SIGKILLs and waits for it.
    async fn stop(&self, id: &str, signal: i32, grace: Duration) -> Result<(), RuntimeError>;
    async fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError>;
    /// Kills what is left, removes the state and frees the cgroup.
    async fn remove(&self, id: &str) -> Result<(), RuntimeError>;
    async fn status(&self, id: &str) -> Result<ContainerStatus, RuntimeError>;
    /// Every container, including those created by an earlier k3rs process.
    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError>;
    async fn exec(&self, id: &str, req: &ExecRequest) -> Result<ExecSession, RuntimeError>;
    async fn attach(&self, id: &str, req: &AttachRequest) -> Result<ExecSession, RuntimeError>;
}

/// The shape of a container ID runc and libcontainer accept; also keeps IDs path-safe.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}
