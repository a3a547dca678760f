//! `k3rs server --cluster-reset --cluster-reset-restore-path=FILE`: puts a snapshot in place
//! of the embedded datastore while no server runs. As k3s does, the server does not start:
//! it restores, says so, and exits, and the next start (without the flags) serves the
//! restored state. The database it replaces is moved aside, not deleted.

use std::path::Path;

use super::config::ServerConfig;
use super::ServerError;
use crate::store::sqlite::snapshot::{self, Restored};

/// Restores `snapshot` into the config's data dir under the data-dir lock, so a running
/// server makes it fail (with the server's pid) rather than change a database in use.
pub fn cluster_reset(config: &ServerConfig, snapshot: &Path) -> Result<Restored, ServerError> {
    let layout = &config.data_dir;
    let _lock = super::lock_data_dir(layout)?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    tracing::info!(snapshot = %snapshot.display(), db = %layout.state_db().display(), "restoring the datastore");
    snapshot::restore(snapshot, &layout.state_db(), stamp).map_err(ServerError::Restore)
}
