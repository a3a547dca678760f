//! An exclusive, advisory lock on a file, held for the life of a process.
//!
//! `k3rs server` takes `<data-dir>/server/k3rs.lock` before touching anything else in the
//! data dir, so two servers never share a database. The lock is `flock(2)`: the kernel drops
//! it when the holder exits however it exits, so a crash never leaves a stale lock behind.
//! The holder's pid is written into the file so the loser can say who holds it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open lock file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is locked by another process{}", holder_suffix(*.pid))]
    Held { path: PathBuf, pid: Option<u32> },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write our pid into lock file {path}: {source}")]
    WritePid {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn holder_suffix(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!(" (pid {pid})"),
        None => String::new(),
    }
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct LockFile {
    file: File,
    path: PathBuf,
}

impl LockFile {
    /// Takes the lock on `path` (created with mode 0600 if missing) without waiting, and
    /// writes the current pid into it.
    pub fn acquire(path: &Path) -> Result<LockFile, LockError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|source| LockError::Open { path: path.to_path_buf(), source })?;
        // SAFETY: flock on a descriptor we own; it has no memory effects.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(LockError::Held { path: path.to_path_buf(), pid: read_pid(&mut file) });
            }
            return Err(LockError::Lock { path: path.to_path_buf(), source: err });
        }
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())?;
            file.sync_data()
        };
        write_pid(&mut file).map_err(|source| LockError::WritePid { path: path.to_path_buf(), source })?;
        Ok(LockFile { file, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Releases the lock (as dropping does).
    pub fn release(self) {}
}

impl Drop for LockFile {
    fn drop(&mut self) {
        // Clear the pid first so nobody reads a stale one; the file itself stays, because
        // removing it would let a waiter lock an unlinked inode while a newcomer locks a new
        // file of the same name. Failures here are harmless: closing the descriptor below
        // releases the lock regardless.
        let _ = self.file.set_len(0);
        // SAFETY: as in `acquire`.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_naming_the_holder_then_granted_after_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k3rs.lock");
        let held = LockFile::acquire(&path).expect("first lock");
        let text = std::fs::read_to_string(&path).expect("read lock file");
        assert_eq!(text.trim(), std::process::id().to_string());

        // flock locks belong to open file descriptions, so a second open in the same
        // process contends exactly as another process would.
        match LockFile::acquire(&path) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        let msg = LockFile::acquire(&path).unwrap_err().to_string();
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");

        held.release();
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "");
        let again = LockFile::acquire(&path).expect("lock after release");
        assert_eq!(again.path(), path);
    }

    #[test]
    fn lock_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("k3rs.lock");
        let _held = LockFile::acquire(&path).expect("lock");
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn missing_directory_is_an_open_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = LockFile::acquire(&dir.path().join("nope/k3rs.lock")).unwrap_err();
        assert!(matches!(err, LockError::Open { .. }), "{err:?}");
    }
}
