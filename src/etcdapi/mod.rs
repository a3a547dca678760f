//! The etcd v3 gRPC API over any [`Store`], like kine: KV, Watch, Lease, Maintenance and
//! Cluster on a unix socket, so `etcdctl` and etcd clients work against the embedded datastore.
//!
//! The store is simpler than etcd: every write changes one key at one revision. Requests
//! that fit that model are answered exactly as etcd answers them (same fields, same error
//! codes and texts, which etcd clients match on); requests that do not — a transaction over
//! several keys, say — get a gRPC error naming what is not supported, never a wrong answer.
//! Two deliberate differences: a DeleteRange over several keys gives each deleted key its own
//! revision (all written in one store request), and the cluster is always this one member.
//!
//! Go clients (etcdctl, kube-apiserver) put the socket path in the HTTP/2 `:authority`,
//! which the HTTP/2 server would reject; the `authority` module rewrites it on the way in.

mod authority;
mod cluster;
mod kv;
mod lease;
mod maintenance;
mod txn;
mod watch;

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;
use tonic::Status;

use crate::etcdproto::{
    PbClusterServer, PbKeyValue, PbKvServer, PbLeaseServer, PbMaintenanceServer, PbResponseHeader, PbWatchServer,
};
use crate::store::{KeyValue, Revision, Store, StoreError};

/// The cluster id in every response header. etcd derives it from its member URLs; any stable
/// non-zero value serves, clients only compare it between responses.
pub const CLUSTER_ID: u64 = 0x6b33_7273_0000_0001;
/// The id of the one member, reported as leader by Status and listed by MemberList.
pub const MEMBER_ID: u64 = 0x6b33_7273_0000_0002;
/// There is no raft; a constant term tells clients that leadership never changed.
pub const RAFT_TERM: u64 = 2;
/// The etcd version reported by Status. Clients gate features on it: kube-apiserver uses
/// watch progress requests only from 3.5.13 (3.4.31) on, and both are implemented here.
pub const ETCD_VERSION: &str = "3.5.16";

/// Settings of the API server; the defaults are etcd's.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// How often a watch created with `progress_notify` that saw no events gets a progress
    /// response (etcd's default is 10 minutes).
    pub progress_notify_interval: Duration,
    /// How long a shutdown waits for clients to go away before dropping their connections.
    pub shutdown_grace: Duration,
    /// The member name reported by MemberList.
    pub member_name: String,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            progress_notify_interval: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(5),
            member_name: "k3rs".to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EtcdApiError {
    #[error("{path} exists and is not a unix socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("failed to remove the stale socket {path}: {source}")]
    RemoveStaleSocket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to prepare a private directory {path} to bind the socket in: {source}")]
    PrepareBindDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to bind the etcd API socket {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to make the etcd API socket {path} private (mode 0600): {source}")]
    SetPermissions {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to move the etcd API socket into place at {path}: {source}")]
    Publish {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the etcd API server on {path} failed: {source}")]
    Serve {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Serves the etcd API for `store` on the unix socket `path` (created with mode 0600) until
/// `shutdown` completes.
pub async fn serve(
    store: Arc<dyn Store>,
    path: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_with(store, path, shutdown, ServeOptions::default()).await?;
    Ok(())
}

/// [`serve`] with explicit [`ServeOptions`].
pub async fn serve_with(
    store: Arc<dyn Store>,
    path: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
    opts: ServeOptions,
) -> Result<(), EtcdApiError> {
    let listener = bind_private(path)?;
    let bound = std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
    tracing::info!(path = %path.display(), "etcd API listening");

    // Long-lived streams (watches, lease keep-alives) would hold a graceful shutdown open
    // forever, so they watch this signal and end themselves.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api =
        Api { store, stop: Stop(stop_rx), opts: Arc::new(opts), client_url: format!("unix://{}", path.display()) };
    let grace = api.opts.shutdown_grace;

    let server = tonic::transport::Server::builder()
        // etcd allows practically unlimited streams per connection, and clients such as
        // kube-apiserver multiplex many long-lived watch streams over one connection.
        .max_concurrent_streams(u32::MAX)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(PbKvServer::new(kv::KvService::new(api.clone())))
        .add_service(PbWatchServer::new(watch::WatchService::new(api.clone())))
        .add_service(PbLeaseServer::new(lease::LeaseService::new(api.clone())))
        .add_service(PbMaintenanceServer::new(maintenance::MaintenanceService::new(api.clone())))
        .add_service(PbClusterServer::new(cluster::ClusterService::new(api.clone())));

    let mut stopped = stop_tx.subscribe();
    let signal = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let incoming = UnixListenerStream::new(listener).map(|conn| conn.map(authority::AuthorityFix::new));
    let serving = server.serve_with_incoming_shutdown(incoming, signal);
    tokio::pin!(serving);
    let result = tokio::select! {
        res = &mut serving => res,
        _ = async {
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(path = %path.display(), "etcd API clients did not disconnect in time; dropping them");
            Ok(())
        }
    };

    // Only remove the socket if it is still ours: a newer server may have replaced it.
    let current = std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
    if current.is_some() && current == bound {
        if let Err(err) = std::fs::remove_file(path) {
            tracing::warn!(path = %path.display(), %err, "failed to remove the etcd API socket");
        }
    }
    tracing::info!(path = %path.display(), "etcd API stopped");
    result.map_err(|source| EtcdApiError::Serve { path: path.to_owned(), source })
}

/// Binds a listening socket at `path` that only the owner can connect to, with no moment
/// in which anyone else could: the socket is bound inside a fresh mode-0700 directory,
/// made 0600, and only then renamed into place.
fn bind_private(path: &Path) -> Result<UnixListener, EtcdApiError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path)
                .map_err(|source| EtcdApiError::RemoveStaleSocket { path: path.to_owned(), source })?;
        }
        Ok(_) => return Err(EtcdApiError::NotASocket { path: path.to_owned() }),
        Err(_) => {}
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let dir = parent.join(format!(".etcd-sock-{:08x}", fastrand::u32(..)));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|source| EtcdApiError::PrepareBindDir { path: dir.clone(), source })?;
    let result = (|| {
        let tmp = dir.join("s");
        let listener = UnixListener::bind(&tmp).map_err(|source| EtcdApiError::Bind { path: tmp.clone(), source })?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|source| EtcdApiError::SetPermissions { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, path).map_err(|source| EtcdApiError::Publish { path: path.to_owned(), source })?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// What every service needs.
#[derive(Clone)]
pub(crate) struct Api {
    store: Arc<dyn Store>,
    stop: Stop,
    opts: Arc<ServeOptions>,
    client_url: String,
}

/// Fires when the server shuts down.
#[derive(Clone)]
pub(crate) struct Stop(tokio::sync::watch::Receiver<bool>);

impl Stop {
    pub(crate) async fn wait(&mut self) {
        // An error means the server is gone altogether, which is a stop too.
        let _ = self.0.wait_for(|s| *s).await;
    }
}

/// A full response header at `revision`, as etcd puts on every top-level response.
pub(crate) fn header(revision: Revision) -> Option<PbResponseHeader> {
    Some(PbResponseHeader { cluster_id: CLUSTER_ID, member_id: MEMBER_ID, revision: revision.0, raft_term: RAFT_TERM })
}

/// The header etcd puts on the responses nested in a Txn response: the revision alone.
pub(crate) fn sub_header(revision: Revision) -> Option<PbResponseHeader> {
    Some(PbResponseHeader { revision: revision.0, ..Default::default() })
}

pub(crate) fn pb_kv(kv: KeyValue) -> PbKeyValue {
    PbKeyValue {
        key: kv.key.to_vec(),
        create_revision: kv.create_revision.0,
        mod_revision: kv.mod_revision.0,
        version: kv.version,
        value: kv.value.to_vec(),
        lease: kv.lease.map_or(0, |l| l.0),
    }
}

/// etcd's texts for the errors clients recognise by message.
pub(crate) mod msg {
    pub const EMPTY_KEY: &str = "etcdserver: key is not provided";
    pub const KEY_NOT_FOUND: &str = "etcdserver: key not found";
    pub const VALUE_PROVIDED: &str = "etcdserver: value is provided";
    pub const LEASE_PROVIDED: &str = "etcdserver: lease is provided";
    pub const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
    pub const DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";
    pub const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
    pub const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
    pub const LEASE_NOT_FOUND: &str = "etcdserver: requested lease not found";
    pub const LEASE_EXISTS: &str = "etcdserver: lease already exists";
    pub const LEASE_TTL_TOO_LARGE: &str = "etcdserver: too large lease TTL";
    pub const INVALID_SORT: &str = "etcdserver: invalid sort option";
    pub const STOPPED: &str = "etcdserver: server stopped";
}

pub(crate) fn empty_key() -> Status {
    Status::invalid_argument(msg::EMPTY_KEY)
}

/// A request etcd would accept but this server cannot answer correctly.
pub(crate) fn unsupported(what: impl std::fmt::Display) -> Status {
    Status::unimplemented(format!("k3rs etcd API: {what} is not supported"))
}

/// Maps a store error to the status etcd would send for it.
pub(crate) fn store_status(err: StoreError) -> Status {
    match err {
        StoreError::Compacted { .. } => Status::out_of_range(msg::COMPACTED),
        StoreError::FutureRevision { .. } => Status::out_of_range(msg::FUTURE_REV),
        StoreError::LeaseNotFound(_) => Status::not_found(msg::LEASE_NOT_FOUND),
        StoreError::LeaseExists(_) => Status::failed_precondition(msg::LEASE_EXISTS),
        StoreError::InvalidArgument(_) => Status::invalid_argument(format!("etcdserver: {err}")),
        StoreError::Closed => Status::unavailable(msg::STOPPED),
        StoreError::Etcd { .. } | StoreError::WatchLagged { .. } => Status::unavailable(format!("etcdserver: {err}")),
        StoreError::Open { .. } | StoreError::Sqlite { .. } => Status::internal(format!("etcdserver: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LeaseId;
    use tonic::Code;

    #[test]
    fn store_errors_map_to_etcd_statuses() {
        let s = store_status(StoreError::Compacted { requested: Revision(3), compacted: Revision(9) });
        assert_eq!(
            (s.code(), s.message()),
            (Code::OutOfRange, "etcdserver: mvcc: required revision has been compacted")
        );
        let s = store_status(StoreError::FutureRevision { requested: Revision(30), current: Revision(9) });
        assert_eq!(
            (s.code(), s.message()),
            (Code::OutOfRange, "etcdserver: mvcc: required revision is a future revision")
        );
        let s = store_status(StoreError::LeaseNotFound(LeaseId(7)));
        assert_eq!((s.code(), s.message()), (Code::NotFound, "etcdserver: requested lease not found"));
        let s = store_status(StoreError::LeaseExists(LeaseId(7)));
        assert_eq!((s.code(), s.message()), (Code::FailedPrecondition, "etcdserver: lease already exists"));
        let s = store_status(StoreError::InvalidArgument("bad ttl".into()));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().contains("bad ttl"), "{}", s.message());
        let s = store_status(StoreError::Closed);
        assert_eq!(s.code(), Code::Unavailable);
        let s = store_status(StoreError::Open { path: "/x/state.db".into(), reason: "not a database".into() });
        assert_eq!(s.code(), Code::Internal);
        assert!(s.message().contains("not a database"), "{}", s.message());
    }

    #[test]
    fn kv_conversion_keeps_every_field() {
        let kv = KeyValue {
            key: "a".into(),
            value: "v".into(),
            create_revision: Revision(4),
            mod_revision: Revision(6),
            version: 3,
            lease: Some(LeaseId(99)),
        };
        let pb = pb_kv(kv);
        assert_eq!(
            (pb.key, pb.value, pb.create_revision, pb.mod_revision, pb.version, pb.lease),
            (b"a".to_vec(), b"v".to_vec(), 4, 6, 3, 99)
        );
        assert_eq!(pb_kv(KeyValue { lease: None, ..kv_at(2) }).lease, 0);
    }

    fn kv_at(rev: i64) -> KeyValue {
        KeyValue {
            key: "k".into(),
            value: "v".into(),
            create_revision: Revision(rev),
            mod_revision: Revision(rev),
            version: 1,
            lease: None,
        }
    }

    #[tokio::test]
    async fn bind_replaces_a_stale_socket_and_refuses_other_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("etcd.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).expect("stale socket"));
        let listener = bind_private(&path).expect("bind over stale socket");
        let mode = std::fs::metadata(&path).expect("socket").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        tokio::net::UnixStream::connect(&path).await.expect("connect");
        let _ = listener.accept().await.expect("accept");
        // Nothing of the private bind directory is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("etcd.sock")]);

        let file = dir.path().join("plain");
        std::fs::write(&file, b"data").expect("write");
        assert!(matches!(bind_private(&file), Err(EtcdApiError::NotASocket { .. })));
        assert_eq!(std::fs::read(&file).expect("read"), b"data");
    }
}
