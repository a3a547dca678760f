//! The embedded backend: the whole store in one SQLite file, `<data-dir>/server/db/state.db`.
//!
//! k3rs owns the file from one process, which shapes the design (see STYLE.md on kine):
//! - one writer thread ([`writer`]) batches concurrent writes into group commits, each
//!   durable (WAL, `synchronous = FULL`) before any caller hears "done";
//! - the latest value of every live key is kept in memory, so reads at the current
//!   revision and compare-and-swap checks never touch SQLite; only reads of older
//!   revisions and watch replays query the file, on read-only connections that never block
//!   the writer;
//! - watchers are told of each commit in process, through a bounded broadcast: no polling.
//!   A watcher that falls behind re-reads what it missed from the file instead of holding
//!   writers back;
//! - compaction runs inside the writer a chunk at a time, and free pages are returned to the
//!   file system and the WAL truncated when it is idle, so the file stays bounded by the live
//!   data under steady churn.

mod read;
mod schema;
pub mod snapshot;
mod watch;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::Connection;
use tokio::sync::{broadcast, oneshot};

use super::{
    Deleted, Event, KeyRange, KeyValue, LeaseGrant, LeaseId, LeaseStatus, RangeEnd, RangeOptions, RangeResult, Result,
    Revision, Store, StoreError, StoreStatus, Watch, WriteOutcome,
};
use writer::{Op, Reply, Request};

pub use schema::{APPLICATION_ID, SCHEMA_VERSION};

/// Tuning for [`SqliteStore`]; the defaults are what `k3rs server` uses.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Most writes one group commit takes.
    pub max_batch: usize,
    /// How many commits a watcher may fall behind the writer before it re-reads history
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

/// The latest state, as of the last commit.
pub(crate) struct State {
    pub rev: Revision,
    pub compact_rev: Revision,
    pub kvs: BTreeMap<Bytes, KeyValue>,
}

pub(crate) struct LeaseEntry {
    pub ttl: i64,
    pub deadline: Instant,
}

/// The events of one group commit, published to watchers.
pub(crate) struct Committed {
    /// The revision of the last write in the commit.
    pub revision: Revision,
    pub events: Vec<Event>,
}

/// What the writer, the readers and the watchers share.
pub(crate) struct Shared {
    path: PathBuf,
    state: RwLock<State>,
    leases: Mutex<HashMap<LeaseId, LeaseEntry>>,
    events: Mutex<Option<broadcast::Sender<Arc<Committed>>>>,
    readers: Mutex<Vec<Connection>>,
    closed: AtomicBool,
}

impl Shared {
    pub fn state(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn state_mut(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn leases(&self) -> MutexGuard<'_, HashMap<LeaseId, LeaseEntry>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn events(&self) -> MutexGuard<'_, Option<broadcast::Sender<Arc<Committed>>>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn broadcast(&self, c: Arc<Committed>) {
        if let Some(tx) = self.events().as_ref() {
            // No receivers is fine: nobody is watching.
            let _ = tx.send(c);
        }
    }

    pub fn subscribe(&self) -> Option<broadcast::Receiver<Arc<Committed>>> {
        self.events().as_ref().map(|tx| tx.subscribe())
    }

    /// Ends every watch: their streams report [`StoreError::Closed`].
    pub fn close_watchers(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.events().take();
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(StoreError::Closed)
        } else {
            Ok(())
        }
    }

    /// Runs `f` on a pooled read-only connection. Blocking: call from `spawn_blocking`.
    pub fn with_reader<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match conn {
            Some(c) => c,
            None => schema::open_reader(&self.path)?,
        };
        let out = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < 8 {
            pool.push(conn);
        }
        out
    }
}

struct Inner {
    shared: Arc<Shared>,
    tx: std::sync::mpsc::Sender<Request>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// See the module documentation.
pub struct SqliteStore {
    inner: Arc<Inner>,
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`. Must be called inside a tokio runtime.
    ///
    /// A file that is not a k3rs database, is corrupt, or was written by a newer k3rs is
    /// refused with [`StoreError::Open`] and left exactly as it was.
    pub fn open(path: &Path, opts: SqliteOptions) -> Result<SqliteStore> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| StoreError::InvalidArgument("SqliteStore::open needs a tokio runtime".into()))?;
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                    path: path.display().to_string(),
                    reason: format!("cannot create its directory: {e}"),
                })?;
            }
        }
        let conn = schema::open_writer(path)?;
        let loaded = read::load(&conn).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            reason: format!("cannot read it back ({e}); the file may be damaged; it was not modified"),
        })?;
        let now = Instant::now();
        let leases = loaded
            .leases
            .into_iter()
            .map(|(id, ttl)| (id, LeaseEntry { ttl, deadline: now + Duration::from_secs(ttl as u64) }))
            .collect();
        let (events, _) = broadcast::channel(opts.watch_buffer.max(16));
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            state: RwLock::new(State { rev: loaded.rev, compact_rev: loaded.compact_rev, kvs: loaded.kvs }),
            leases: Mutex::new(leases),
            events: Mutex::new(Some(events)),
            readers: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        });
        tracing::info!(
            path = %path.display(),
            rev = loaded.rev.0,
            compacted = loaded.compact_rev.0,
            "datastore opened"
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let w = writer::Writer::new(conn, shared.clone(), opts.max_batch.max(1), loaded.compacted_through);
        let handle =
            std::thread::Builder::new().name("k3rs-store-writer".into()).spawn(move || w.run(rx)).map_err(|e| {
                StoreError::Open { path: path.display().to_string(), reason: format!("cannot start the writer: {e}") }
            })?;
        let inner = Arc::new(Inner { shared, tx, writer: Mutex::new(Some(handle)) });
        runtime.spawn(expire_leases(Arc::downgrade(&inner), opts.lease_check_interval));
        Ok(SqliteStore { inner })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }

    async fn request(&self, op: Op) -> Result<Reply> {
        self.inner.shared.check_open()?;
        send(&self.inner.tx, op).await
    }

    async fn write(&self, op: Op) -> Result<WriteOutcome> {
        match self.request(op).await? {
            Reply::Write(w) => Ok(w),
            _ => Err(StoreError::InvalidArgument("writer answered a write with something else".into())),
        }
    }
}

async fn send(tx: &std::sync::mpsc::Sender<Request>, op: Op) -> Result<Reply> {
    let (reply, rx) = oneshot::channel();
    tx.send(Request { op, reply }).map_err(|_| StoreError::Closed)?;
    rx.await.map_err(|_| StoreError::Closed)?
}

/// Revokes leases past their deadline, deleting their keys, until the store goes away.
async fn expire_leases(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        if inner.shared.check_open().is_err() {
            return;
        }
        let now = Instant::now();
        let expired: Vec<LeaseId> =
            inner.shared.leases().iter().filter(|(_, l)| l.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            match send(&inner.tx, Op::LeaseRevoke { id, only_if_expired: true }).await {
                Ok(_) | Err(StoreError::LeaseNotFound(_)) => tracing::debug!(lease = %id, "lease expired"),
                Err(StoreError::Closed) => return,
                Err(e) => tracing::warn!(lease = %id, error = %e, "revoking an expired lease failed"),
            }
        }
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn current_revision(&self) -> Result<Revision> {
        self.inner.shared.check_open()?;
        Ok(self.inner.shared.state().rev)
    }

    async fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        let shared = &self.inner.shared;
        shared.check_open()?;
        let at = {
            let state = shared.state();
            let at = match opts.revision {
                Some(r) if r.0 > 0 => r,
                _ => state.rev,
            };
            if at > state.rev {
                return Err(StoreError::FutureRevision { requested: at, current: state.rev });
            }
            if at < state.compact_rev {
                return Err(StoreError::Compacted { requested: at, compacted: state.compact_rev });
            }
            if at == state.rev {
                return Ok(read::range_latest(&state, range, &opts));
            }
            at
        };
        let shared2 = shared.clone();
        let range2 = range.clone();
        let res =
            tokio::task::spawn_blocking(move || shared2.with_reader(|conn| read::range_at(conn, &range2, at, &opts)))
                .await
                .map_err(|e| StoreError::InvalidArgument(format!("read task failed: {e}")))??;
        // Compaction may have removed rows this read needed while it ran.
        let compacted = shared.state().compact_rev;
        if at < compacted {
            return Err(StoreError::Compacted { requested: at, compacted });
        }
        Ok(res)
    }

    async fn create(&self, key: Bytes, value: Bytes, lease: Option<LeaseId>) -> Result<WriteOutcome> {
        check_key(&key)?;
        self.write(Op::Create { key, value, lease }).await
    }

    async fn update(
        &self,
        key: Bytes,
        value: Bytes,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<WriteOutcome> {
        check_key(&key)?;
        self.write(Op::Update { key, value, expected, lease }).await
    }

    async fn put(&self, key: Bytes, value: Bytes, lease: Option<LeaseId>) -> Result<WriteOutcome> {
        check_key(&key)?;
        self.write(Op::Put { key, value, lease }).await
    }

    async fn delete(&self, key: Bytes, expected: Option<Revision>) -> Result<WriteOutcome> {
        check_key(&key)?;
        self.write(Op::Delete { key, expected }).await
    }

    async fn delete_range(&self, range: &KeyRange) -> Result<Deleted> {
        if range.end == RangeEnd::Single {
            check_key(&range.start)?;
        }
        match self.request(Op::DeleteRange { range: range.clone() }).await? {
            Reply::Deleted(d) => Ok(d),
            _ => Err(StoreError::InvalidArgument("writer answered a range delete with something else".into())),
        }
    }

    async fn watch(&self, range: KeyRange, start: Option<Revision>) -> Result<Watch> {
        let shared = &self.inner.shared;
        shared.check_open()?;
        let next = {
            let state = shared.state();
            match start {
                Some(r) if r.0 > 0 => {
                    if r < state.compact_rev {
                        return Err(StoreError::Compacted { requested: r, compacted: state.compact_rev });
                    }
                    r
                }
                _ => state.rev.next(),
            }
        };
        Ok(watch::start(shared.clone(), range, next))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.request(Op::Compact { revision }).await.map(|_| ())
    }

    async fn compact_revision(&self) -> Result<Revision> {
        self.inner.shared.check_open()?;
        Ok(self.inner.shared.state().compact_rev)
    }

    async fn lease_grant(&self, id: Option<LeaseId>, ttl: i64) -> Result<LeaseGrant> {
        match self.request(Op::LeaseGrant { id, ttl }).await? {
            Reply::Lease(l) => Ok(l),
            _ => Err(StoreError::InvalidArgument("writer answered a lease grant with something else".into())),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.request(Op::LeaseRevoke { id, only_if_expired: false }).await.map(|_| ())
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64> {
        let shared = &self.inner.shared;
        shared.check_open()?;
        let mut leases = shared.leases();
        let now = Instant::now();
        match leases.get_mut(&id) {
            Some(l) if l.deadline > now => {
                l.deadline = now + Duration::from_secs(l.ttl as u64);
                Ok(l.ttl)
            }
            _ => Err(StoreError::LeaseNotFound(id)),
        }
    }

    async fn lease_status(&self, id: LeaseId) -> Result<Option<LeaseStatus>> {
        let shared = &self.inner.shared;
        shared.check_open()?;
        let (granted_ttl, left) = {
            let leases = shared.leases();
            let Some(l) = leases.get(&id) else { return Ok(None) };
            let left = l.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            (l.ttl, left.as_secs() as i64)
        };
        let keys = shared.state().kvs.values().filter(|kv| kv.lease == Some(id)).map(|kv| kv.key.clone()).collect();
        Ok(Some(LeaseStatus { id, granted_ttl, ttl: left, keys }))
    }

    async fn leases(&self) -> Result<Vec<LeaseId>> {
        let shared = &self.inner.shared;
        shared.check_open()?;
        let mut ids: Vec<LeaseId> = shared.leases().keys().copied().collect();
        ids.sort();
        Ok(ids)
    }

    async fn status(&self) -> Result<StoreStatus> {
        let shared = self.inner.shared.clone();
        shared.check_open()?;
        let (revision, compact_revision) = {
            let s = shared.state();
            (s.rev, s.compact_rev)
        };
        let (db_size, db_size_in_use) =
            tokio::task::spawn_blocking(move || shared.with_reader(read::sizes))
                .await
                .map_err(|e| StoreError::InvalidArgument(format!("status task failed: {e}")))??;
        Ok(StoreStatus {
            revision,
            compact_revision,
            db_size,
            db_size_in_use,
            backend: format!("sqlite {}", rusqlite::version()),
        })
    }

    async fn close(&self) -> Result<()> {
        if self.inner.shared.check_open().is_err() {
            return Ok(());
        }
        let res = send(&self.inner.tx, Op::Close).await;
        self.inner.shared.close_watchers();
        let handle = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        match res {
            Ok(_) | Err(StoreError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn check_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::InvalidArgument("key is not provided".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
