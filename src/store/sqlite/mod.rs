//! The embedded backend: the whole store in one SQLite file, `<data-dir>/server/db/state.db`.
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Tuning for [`SqliteStore`]; the defaults are what `k3rs server` uses.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Most writes one group commit takes.
    pub max_batch: usize,
    /// How many events a watcher may fall behind the writer before it re-reads history
    /// from the database.
    pub watch_buffer: usize,
    /// How often leases are checked for expiry.
    pub lease_check_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { max_batch: 1024, watch_buffer: 4096, lease_check_interval: Duration::from_millis(500) }
    }
}

/// See the module documentation.
pub struct SqliteStore {
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`. Must be called inside a tokio runtime.
    pub fn open(path: &Path, _opts: SqliteOptions) -> super::Result<SqliteStore> {
        let _ = path;
        unimplemented!("in progress")
    }
}
