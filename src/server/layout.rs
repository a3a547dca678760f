//! Where things live under the data dir. Every path the server uses is named here, so the
//! layout documented in the README has one source.
//!
//! ```text
//! <data-dir>/                  (default /var/lib/k3rs)
//!   server/                    0700
//!     k3rs.lock                held by the running server; contains its pid
//!     db/                      0700
//!       state.db               the embedded SQLite datastore (+ -wal, -shm)
//!       etcd.sock              the etcd v3 API, mode 0600
//! ```

use std::path::{Path, PathBuf};

/// A data dir and the paths inside it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir(PathBuf);

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir(root.into())
    }

    pub fn root(&self) -> &Path {
        &self.0
    }

    /// State that belongs to the server (control plane) side.
    pub fn server(&self) -> PathBuf {
        self.0.join("server")
    }

    pub fn lock_file(&self) -> PathBuf {
        self.server().join("k3rs.lock")
    }

    pub fn db(&self) -> PathBuf {
        self.server().join("db")
    }

    pub fn state_db(&self) -> PathBuf {
        self.db().join("state.db")
    }

    pub fn etcd_socket(&self) -> PathBuf {
        self.db().join("etcd.sock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_documented_layout() {
        let d = DataDir::new("/var/lib/k3rs");
        assert_eq!(d.lock_file(), Path::new("/var/lib/k3rs/server/k3rs.lock"));
        assert_eq!(d.state_db(), Path::new("/var/lib/k3rs/server/db/state.db"));
        assert_eq!(d.etcd_socket(), Path::new("/var/lib/k3rs/server/db/etcd.sock"));
    }
}
