//! Per-container root filesystems: an overlay of the image's unpacked layers (read-only
//! lowerdirs, topmost first) with an upper and work directory of the container's own, mounted
//! at `containers/<key>/rootfs`.
//!
//! `containers/<key>/image` names the image, which keeps it from being removed. The kubelet
//! has each container's shim mount the overlay in the container's own mount namespace
//! ([`RootfsMount`]); [`ImageStore::create_rootfs`] mounts it in the caller's, reusing an
//! existing mount rather than stacking one (`statx` says whether the path is a mount root).
//! Overlay's mount data must fit in a page; naming each lowerdir by its full path would limit
//! an image to a few dozen layers, so the mount is made from a thread whose working directory
//! (unshared from the rest of the process) is the layer directory, and lowerdirs are named by
//! their short relative names (upper and work directories by theirs, `../containers/<key>/…`).

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::digest::hex_part;
use super::{Image, ImageError, ImageStore};

const PAGE: usize = 4096;

impl ImageStore {
    /// Where container `key`'s root filesystem is mounted.
    pub fn rootfs_path(&self, key: &str) -> PathBuf {
        self.containers_dir().join(key).join("rootfs")
    }

    /// Prepares container `key`'s root filesystem over `image` (its directories and the
    /// marker that keeps the image from being removed) and returns how to mount it, without
    /// mounting it. The shim mounts it in the container's own mount namespace, so the node's
    /// mount table does not grow with every container (see [`RootfsMount`]).
    pub fn prepare_rootfs(&self, image: &Image, key: &str) -> Result<RootfsMount, ImageError> {
        validate_key(key)?;
        let dir = self.containers_dir().join(key);
        let target = dir.join("rootfs");
        let mount_err = |reason: String| ImageError::Mount { key: key.to_string(), target: target.clone(), reason };
        let _lock = self.lock()?;
        // Under the lock: the image must still exist, and from now on `remove` sees the user.
        let index = self.load_index()?;
        if !index.images.iter().any(|i| i.id == image.id) {
            return Err(ImageError::NotFound(image.names.first().cloned().unwrap_or_else(|| image.id.clone())));
        }
        for sub in ["upper", "work", "rootfs"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(ImageError::io("create directory", &p))?;
        }
        let marker = dir.join("image");
        match fs::read_to_string(&marker) {
            Ok(existing) if existing.trim() != image.id => {
                return Err(mount_err(format!("it already holds image {}", existing.trim())));
            }
            Ok(_) => {}
            Err(_) => fs::write(&marker, &image.id).map_err(ImageError::io("write", &marker))?,
        }
        for layer in &image.layers {
            if !self.layer_path(layer).is_dir() {
                return Err(mount_err(format!("layer {layer} is not unpacked")));
            }
        }
        // overlay needs at least one lowerdir; an image without layers gets an empty one.
        let mut lowers: Vec<String> = image.layers.iter().rev().map(|l| hex_part(l).to_string()).collect();
        if lowers.is_empty() {
            let empty = dir.join("empty");
            fs::create_dir_all(&empty).map_err(ImageError::io("create directory", &empty))?;
            lowers.push(empty.to_string_lossy().into_owned());
        }
        debug_assert_eq!(self.layers_dir().parent(), self.containers_dir().parent());
        if self.private_containers.get().is_none() {
            self.ensure_private_containers_dir()?;
            let _ = self.private_containers.set(());
        }
        // upper and work are named relative to the layer directory too: the kernel keeps the
        // option strings as given and prints them in every read of the mount table.
        let data = format!(
            "lowerdir={},upperdir=../containers/{key}/upper,workdir=../containers/{key}/work",
            lowers.join(":")
        );
        if data.len() >= PAGE {
            return Err(mount_err(format!("{} layers do not fit overlay's mount options", image.layers.len())));
        }
        Ok(RootfsMount { cwd: self.layers_dir(), target, data, private_parent: self.containers_dir() })
    }

    /// Mounts (or finds already mounted) the overlay root filesystem of container `key`
    /// over `image` in this process's mount namespace, and returns its path.
    pub fn create_rootfs(&self, image: &Image, key: &str) -> Result<PathBuf, ImageError> {
        let plan = self.prepare_rootfs(image, key)?;
        let _lock = self.lock()?;
        if is_mounted(&plan.target)? {
            return Ok(plan.target);
        }
        plan.mount().map_err(|reason| ImageError::Mount {
            key: key.to_string(),
            target: plan.target.clone(),
            reason,
        })?;
        tracing::debug!(container = key, image = %image.id, layers = image.layers.len(), "root filesystem mounted");
        Ok(plan.target)
    }

    /// Makes the directory of container root filesystems a mount point of its own with
    /// private propagation (idempotent). A shim that mounts a root filesystem in a mount
    /// namespace of its own, copied from the node's, then mounts under a private mount: the
    /// mount stays in that namespace instead of propagating back to the node's.
    pub fn ensure_private_containers_dir(&self) -> Result<PathBuf, ImageError> {
        let dir = self.containers_dir();
        fs::create_dir_all(&dir).map_err(ImageError::io("create directory", &dir))?;
        let dir = fs::canonicalize(&dir).map_err(ImageError::io("resolve", &dir))?;
        let failed = |op: &str, e: nix::Error| ImageError::Mount {
            key: String::new(),
            target: dir.clone(),
            reason: format!("{op}: {e}"),
        };
        if !is_mounted(&dir)? {
            nix::mount::mount(
                Some(&dir),
                &dir,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| failed("bind-mount onto itself", e))?;
        }
        nix::mount::mount(None::<&str>, &dir, None::<&str>, nix::mount::MsFlags::MS_PRIVATE, None::<&str>)
            .map_err(|e| failed("make private", e))?;
        Ok(dir)
    }

    /// Unmounts container `key`'s root filesystem and deletes its directories.
    pub fn remove_rootfs(&self, key: &str) -> Result<(), ImageError> {
        validate_key(key)?;
        let dir = self.containers_dir().join(key);
        let target = dir.join("rootfs");
        let _lock = self.lock()?;
        while is_mounted(&target)? {
            if let Err(e) = nix::mount::umount2(&target, nix::mount::MntFlags::empty()) {
                // Something still has it open: detach now, the kernel frees it when unused.
                if e != nix::errno::Errno::EBUSY {
                    return Err(ImageError::Unmount { key: key.to_string(), target, source: e });
                }
                nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH)
                    .map_err(|source| ImageError::Unmount { key: key.to_string(), target: target.clone(), source })?;
            }
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::io("delete", &dir)(e)),
        }
    }
}

fn validate_key(key: &str) -> Result<(), ImageError> {
    let ok = !key.is_empty()
        && key.len() <= 128
        && key != "."
        && key != ".."
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ImageError::InvalidKey(key.to_string()))
    }
}

/// How to mount a container's root filesystem: overlay with `data` at `target`, its relative
/// directory names resolved against `cwd`.
///
/// The shim mounts it inside a mount namespace of its own (unshared from the node's) after
/// making its copy of `private_parent` private, so the mount is seen by the container it is
/// made for and nowhere else, and goes away with the last process of that namespace. The
/// node's mount table then stays the same size however many containers run, which matters:
/// libcontainer reads the whole table several times for every container it starts.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RootfsMount {
    pub cwd: PathBuf,
    pub target: PathBuf,
    pub data: String,
    /// A mount point with private propagation above `target`
    /// ([`ImageStore::ensure_private_containers_dir`]).
    pub private_parent: PathBuf,
}

impl RootfsMount {
    /// Mounts the overlay in the calling thread's mount namespace.
    pub fn mount(&self) -> Result<(), String> {
        mount_overlay_from(&self.cwd, &self.target, &self.data)
    }

    /// Moves the calling process into a mount namespace of its own and mounts the overlay
    /// there only. The process must be single-threaded (unshare of the mount namespace
    /// requires it).
    pub fn mount_privately(&self) -> Result<(), String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
            .map_err(|e| format!("unshare the mount namespace: {e}"))?;
        // Our copy of the parent leaves its peer group: nothing mounted below it propagates
        // to the node's namespace. It must already be a mount point there.
        nix::mount::mount(
            None::<&str>,
            &self.private_parent,
            None::<&str>,
            nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| format!("make {} private (is it a mount point?): {e}", self.private_parent.display()))?;
        self.mount()
    }
}

/// Mounts overlay at `target` with `data`, resolving relative lowerdirs against `cwd`. The
/// working directory is process-wide, so the mount happens on a thread that first unshares
/// its filesystem attributes; the rest of the process never sees the `chdir`.
fn mount_overlay_from(cwd: &Path, target: &Path, data: &str) -> Result<(), String> {
    let cwd = CString::new(cwd.as_os_str().as_bytes()).map_err(|_| "path contains NUL".to_string())?;
    let target_c = CString::new(target.as_os_str().as_bytes()).map_err(|_| "path contains NUL".to_string())?;
    let data_c = CString::new(data).map_err(|_| "mount options contain NUL".to_string())?;
    let handle = std::thread::spawn(move || -> Result<(), String> {
        // SAFETY: plain syscalls on NUL-terminated strings we own. unshare(CLONE_FS) only
        // affects this thread, which ends right after the mount.
        unsafe {
            if libc::unshare(libc::CLONE_FS) != 0 {
                return Err(format!("unshare(CLONE_FS): {}", std::io::Error::last_os_error()));
            }
            if libc::chdir(cwd.as_ptr()) != 0 {
                return Err(format!("chdir: {}", std::io::Error::last_os_error()));
            }
            let fstype = c"overlay";
            if libc::mount(fstype.as_ptr(), target_c.as_ptr(), fstype.as_ptr(), 0, data_c.as_ptr().cast()) != 0 {
                return Err(format!("mount overlay: {}", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    });
    handle.join().map_err(|_| "mount thread panicked".to_string())?
}

/// Whether something is mounted at `target`.
pub(crate) fn is_mounted(target: &Path) -> Result<bool, ImageError> {
    crate::util::mountinfo::is_mount_root(target).map_err(ImageError::io("stat", target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("pod-1_c.2").is_ok());
        for bad in ["", "..", "a/b", "a b"] {
            assert!(validate_key(bad).is_err(), "{bad}");
        }
    }
}
