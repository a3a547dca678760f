//! The etcd v3 gRPC API over any [`Store`](crate::store::Store), like kine: KV, Watch, Lease
//! and Maintenance on a unix socket, so `etcdctl` and etcd clients work against the embedded
//! datastore.
use std::future::Future;
use std::path::Path;
use std::sync::Arc;

use crate::store::Store;

/// Serves the etcd API for `store` on the unix socket `path` (created with mode 0600) until
/// `shutdown` completes.
pub async fn serve(
    _store: Arc<dyn Store>,
    _path: &Path,
    _shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    unimplemented!("in progress")
}
