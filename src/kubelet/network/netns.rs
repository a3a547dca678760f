//! A pod's network, IPC and UTS namespaces, held by a tiny process of their own (upstream's
//! pause container; here the monitor program run as `k3rs-holder`): a short-lived thread
//! unshares them, names the UTS namespace after the pod and starts the holder, which stays in
//! them after the thread exits. Containers join them as `/proc/<holder>/ns/{net,ipc,uts}`.
//! The holder is in a session of its own and not k3rs' child for long (it forks away), so it
//! and the pod's namespaces outlive k3rs; a new k3rs finds it from the `holder` file (PID and
//! start time, so a reused PID is never mistaken for it).
//!
//! Earlier versions pinned the namespaces as bind mounts of their nsfs files in the sandbox
//! directory: every pod added three lines to the node's mount table, which libcontainer reads
//! in full several times for every container it starts. Such pins are still recognised and
//! removed.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{umount2, MntFlags};
use nix::sched::{unshare, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("unshare the pod's namespaces: {0}")]
    Unshare(nix::Error),
    #[error("set the pod's hostname {hostname:?}: {source}")]
    SetHostname { hostname: String, source: nix::Error },
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("{op} {}: {source}", path.display())]
    Mount { op: &'static str, path: PathBuf, source: nix::Error },
    #[error("open a netlink socket inside the pod's network namespace: {0}")]
    NetlinkSocket(io::Error),
    #[error("the namespace thread ended without an answer")]
    ThreadLost,
    #[error("start the pod's namespace holder: {0}")]
    Holder(String),
}

/// Which namespaces a sandbox gets of its own (the others are the node's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
}

impl Wanted {
    pub fn any(&self) -> bool {
        self.net || self.ipc || self.uts
    }
}

/// The kinds in the order they are made and removed, with their `/proc/*/ns` names.
pub const KINDS: [&str; 3] = ["net", "ipc", "uts"];

/// The process holding a pod's namespaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    pub pid: i32,
    /// Its start time (clock ticks after boot, `/proc/<pid>/stat` field 22).
    pub start_time: u64,
}

/// The file in the sandbox directory naming its holder.
pub const HOLDER_FILE: &str = "holder";

impl Holder {
    /// Where containers find the holder's namespace of `kind` (`net`, `ipc`, `uts`).
    pub fn ns_path(&self, kind: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/{kind}", self.pid))
    }

    /// True while the process that was started as the holder runs (a zombie waiting for
    /// its new parent to reap it holds nothing any more).
    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((state, start)) if start == self.start_time && state != 'Z' && state != 'X')
    }

    /// Kills the holder (if it still is the process it was); its namespaces go once no
    /// container is left in them.
    pub fn kill(&self) {
        if self.alive() {
            // SAFETY: a plain signal to a process we verified by its start time.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }

    fn write(&self, dir: &Path) -> Result<(), NsError> {
        let path = dir.join(HOLDER_FILE);
        super::replace_file(&path, format!("{} {}\n", self.pid, self.start_time).as_bytes())
            .map_err(|source| NsError::Io { op: "write", path, source })
    }

    /// The holder recorded in the sandbox directory `dir`, if any.
    pub fn read(dir: &Path) -> Option<Holder> {
        let text = fs::read_to_string(dir.join(HOLDER_FILE)).ok()?;
        let mut it = text.split_whitespace();
        Some(Holder { pid: it.next()?.parse().ok()?, start_time: it.next()?.parse().ok()? })
    }
}

/// A process's state and start time from `/proc/<pid>/stat` (fields 3 and 22, after the
/// parenthesised name).
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(22 - 4)?.parse().ok()?))
}

/// Creates the wanted namespaces, held by a holder process recorded in `dir`, and, with a
/// network namespace, returns a netlink handle whose socket lives inside it (its connection
/// runs on `rt`).
pub async fn create(
    dir: &Path,
    wanted: Wanted,
    hostname: &str,
    rt: tokio::runtime::Handle,
) -> Result<(Option<Holder>, Option<rtnetlink::Handle>), NsError> {
    if !wanted.any() {
        return Ok((None, None));
    }
    fs::create_dir_all(dir).map_err(|source| NsError::Io { op: "create directory", path: dir.into(), source })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let dir = dir.to_path_buf();
    let hostname = hostname.to_string();
    // A thread of its own: it leaves the node's namespaces and must never run anything else.
    let spawned = std::thread::Builder::new().name("k3rs-sandbox-ns".into()).spawn(move || {
        let _ = tx.send(unshare_and_hold(&dir, wanted, &hostname, &rt));
    });
    if let Err(source) = spawned {
        return Err(NsError::Io {
            op: "spawn namespace thread for",
            path: PathBuf::from("/proc/thread-self/ns"),
            source,
        });
    }
    rx.await.map_err(|_| NsError::ThreadLost)?
}

fn unshare_and_hold(
    dir: &Path,
    wanted: Wanted,
    hostname: &str,
    rt: &tokio::runtime::Handle,
) -> Result<(Option<Holder>, Option<rtnetlink::Handle>), NsError> {
    let mut flags = CloneFlags::empty();
    flags.set(CloneFlags::CLONE_NEWNET, wanted.net);
    flags.set(CloneFlags::CLONE_NEWIPC, wanted.ipc);
    flags.set(CloneFlags::CLONE_NEWUTS, wanted.uts);
    // Only this thread moves: these three kinds may be unshared per thread.
    unshare(flags).map_err(NsError::Unshare)?;
    if wanted.uts {
        nix::unistd::sethostname(hostname)
            .map_err(|source| NsError::SetHostname { hostname: hostname.to_string(), source })?;
    }
    // A process started from this thread is born in its namespaces.
    let holder = spawn_holder()?;
    holder.write(dir)?;
    if !wanted.net {
        return Ok((Some(holder), None));
    }
    // The socket is bound to the namespace it is created in, whatever thread uses it later.
    let _enter = rt.enter();
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NsError::NetlinkSocket)?;
    rt.spawn(conn);
    Ok((Some(holder), Some(handle)))
}

/// The holder program in a memory file, written once per k3rs process.
fn holder_program() -> Result<&'static std::os::fd::OwnedFd, NsError> {
    static PROGRAM: std::sync::OnceLock<std::os::fd::OwnedFd> = std::sync::OnceLock::new();
    if let Some(fd) = PROGRAM.get() {
        return Ok(fd);
    }
    let fd = crate::kubelet::runtime::shim::monitor_program(c"k3rs-holder")
        .map_err(|e| NsError::Holder(format!("write the program into a memory file: {e}")))?;
    Ok(PROGRAM.get_or_init(|| fd))
}

/// Runs the holder program; it forks and reports the PID of the process that stays.
fn spawn_holder() -> Result<Holder, NsError> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let program = holder_program()?;
    let out = std::process::Command::new(format!("/proc/self/fd/{}", program.as_raw_fd()))
        .arg0("k3rs-holder")
        .arg("holder")
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| NsError::Holder(e.to_string()))?;
    let pid: i32 = std::str::from_utf8(&out.stdout)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|p| *p > 0 && out.status.success())
        .ok_or_else(|| {
            NsError::Holder(format!("it reported {:?} ({})", String::from_utf8_lossy(&out.stdout), out.status))
        })?;
    let (_, start_time) = proc_stat(pid).ok_or_else(|| NsError::Holder(format!("holder {pid} is gone at once")))?;
    Ok(Holder { pid, start_time })
}

/// Opens a namespace file (to pass its descriptor to netlink or `setns`).
pub fn open(path: &Path) -> Result<OwnedFd, NsError> {
    fs::File::open(path).map(OwnedFd::from).map_err(|source| NsError::Io {
        op: "open namespace file",
        path: path.into(),
        source,
    })
}

/// True when `path` is a live namespace pinned by a bind mount (as earlier versions made).
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC).unwrap_or(false)
}

/// Unmounts every mount stacked on `path` (an earlier version's pin) and removes the file; a
/// missing file is fine.
pub fn unpin(path: &Path) -> Result<(), NsError> {
    // A crash between two setups could stack mounts; a handful of rounds clears any of that.
    for _ in 0..8 {
        match umount2(path, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => break,
            Err(source) => return Err(NsError::Mount { op: "unmount namespace file", path: path.into(), source }),
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NsError::Io { op: "remove namespace file", path: path.into(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_known_by_its_start_time() {
        let me = std::process::id() as i32;
        let (state, start) = proc_stat(me).expect("our own stat");
        assert!(state == 'R' || state == 'S', "{state}");
        let h = Holder { pid: me, start_time: start };
        assert!(h.alive());
        assert!(!Holder { pid: me, start_time: start + 1 }.alive(), "a reused PID is another process");
        assert!(!Holder { pid: 0, start_time: start }.alive());
    }

    #[test]
    fn holder_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Holder::read(dir.path()), None);
        let h = Holder { pid: 42, start_time: 4242 };
        h.write(dir.path()).unwrap();
        assert_eq!(Holder::read(dir.path()), Some(h));
        assert_eq!(h.ns_path("net"), PathBuf::from("/proc/42/ns/net"));
    }
}
