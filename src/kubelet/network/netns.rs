//! A pod's network, IPC and UTS namespaces, kept alive as bind mounts of their `nsfs` files so
//! that no process has to hold them: a short-lived thread unshares them, names the UTS
//! namespace after the pod, bind-mounts `/proc/thread-self/ns/*` onto files in the sandbox
//! directory and exits. Containers join them by path; after a restart of k3rs they are still
//! there. The directory holding them is made a mount point with shared propagation (as
//! iproute2 does for `/run/netns`): mount namespaces copied from ours later (a container being
//! set up) then see the unmount when a sandbox is torn down, instead of pinning the namespace.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
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

/// Creates the wanted namespaces as files `<dir>/{net,ipc,uts}` and, with a network namespace,
/// returns a netlink handle whose socket lives inside it (its connection runs on `rt`).
pub async fn create(
    dir: &Path,
    wanted: Wanted,
    hostname: &str,
    rt: tokio::runtime::Handle,
) -> Result<Option<rtnetlink::Handle>, NsError> {
    if !wanted.any() {
        return Ok(None);
    }
    fs::create_dir_all(dir).map_err(|source| NsError::Io { op: "create directory", path: dir.into(), source })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let dir = dir.to_path_buf();
    let hostname = hostname.to_string();
    // A thread of its own: it leaves the node's namespaces and must never run anything else.
    let spawned = std::thread::Builder::new().name("k3rs-sandbox-ns".into()).spawn(move || {
        let _ = tx.send(unshare_and_pin(&dir, wanted, &hostname, &rt));
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

fn unshare_and_pin(
    dir: &Path,
    wanted: Wanted,
    hostname: &str,
    rt: &tokio::runtime::Handle,
) -> Result<Option<rtnetlink::Handle>, NsError> {
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
    for (kind, want) in KINDS.iter().zip([wanted.net, wanted.ipc, wanted.uts]) {
        if want {
            pin(&format!("/proc/thread-self/ns/{kind}"), &dir.join(kind))?;
        }
    }
    if !wanted.net {
        return Ok(None);
    }
    // The socket is bound to the namespace it is created in, whatever thread uses it later.
    let _enter = rt.enter();
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NsError::NetlinkSocket)?;
    rt.spawn(conn);
    Ok(Some(handle))
}

fn pin(source: &str, target: &Path) -> Result<(), NsError> {
    fs::OpenOptions::new().write(true).create(true).truncate(false).open(target).map_err(|source| NsError::Io {
        op: "create namespace file",
        path: target.into(),
        source,
    })?;
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|source| NsError::Mount {
        op: "bind-mount namespace onto",
        path: target.into(),
        source,
    })
}

/// Opens a pinned namespace file (to pass its descriptor to netlink or `setns`).
pub fn open(path: &Path) -> Result<OwnedFd, NsError> {
    fs::File::open(path).map(OwnedFd::from).map_err(|source| NsError::Io {
        op: "open namespace file",
        path: path.into(),
        source,
    })
}

/// True when `path` is a live namespace (a mounted `nsfs` file), not a leftover plain file.
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC).unwrap_or(false)
}

/// Unmounts every mount stacked on `path` and removes the file; a missing file is fine.
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

/// Makes `dir` a mount point of its own with shared propagation (idempotent).
pub fn ensure_shared_mount(dir: &Path) -> Result<(), NsError> {
    fs::create_dir_all(dir).map_err(|source| NsError::Io { op: "create directory", path: dir.into(), source })?;
    let dir = fs::canonicalize(dir).map_err(|source| NsError::Io { op: "resolve", path: dir.into(), source })?;
    if !is_mount_point(&dir)? {
        mount(Some(&dir), &dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
            .map_err(|source| NsError::Mount { op: "bind-mount onto itself", path: dir.clone(), source })?;
    }
    mount(None::<&str>, &dir, None::<&str>, MsFlags::MS_SHARED, None::<&str>).map_err(|source| NsError::Mount {
        op: "make shared",
        path: dir.clone(),
        source,
    })
}

fn is_mount_point(dir: &Path) -> Result<bool, NsError> {
    crate::util::mountinfo::is_mount_root(dir).map_err(|source| NsError::Io { op: "stat", path: dir.into(), source })
}
