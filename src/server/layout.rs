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
//!       snapshots/             datastore snapshots (`k3rs etcd-snapshot`, the schedule), 0700
//!       state-old-<time>/      the database a `--cluster-reset` restore replaced
//!   agent/                     the node's side
//!     images/                  air-gap drop directory: image archives imported once each
//!     image-store/             blobs, unpacked layers, image records, container overlays
//!     pod-manifests/           static pods
//!     pods/<uid>/              per-pod files: volumes, etc-hosts, hostname, resolv.conf
//!     containers/<id>/         per-container bundle (config.json) and the shim's state
//!     run/                     libcontainer state and sandbox namespace files
//!     network/                 persisted pod address allocations
//! /var/log/pods/<ns>_<pod>_<uid>/<container>/<restart>.log   container logs (CRI format)
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

    /// The default snapshot directory.
    pub fn snapshots(&self) -> PathBuf {
        self.db().join("snapshots")
    }

    /// State that belongs to the node (agent) side.
    pub fn agent(&self) -> PathBuf {
        self.0.join("agent")
    }

    /// The air-gap directory: archives dropped here are imported.
    pub fn images_import_dir(&self) -> PathBuf {
        self.agent().join("images")
    }

    pub fn image_store(&self) -> PathBuf {
        self.agent().join("image-store")
    }

    pub fn pod_manifests(&self) -> PathBuf {
        self.agent().join("pod-manifests")
    }

    pub fn pods(&self) -> PathBuf {
        self.agent().join("pods")
    }

    pub fn containers(&self) -> PathBuf {
        self.agent().join("containers")
    }

    /// libcontainer's state root and the sandboxes' namespace files.
    pub fn run(&self) -> PathBuf {
        self.agent().join("run")
    }

    pub fn network(&self) -> PathBuf {
        self.agent().join("network")
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
        assert_eq!(d.snapshots(), Path::new("/var/lib/k3rs/server/db/snapshots"));
    }
}
