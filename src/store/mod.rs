//! The datastore: a key-value store with the etcd semantics Kubernetes relies on.
//!
//! The [`Store`] trait is the only way the rest of k3rs reaches persistent state. It has a
//! global [`Revision`] that every write advances by one; reads at the latest or any retained
//! revision; create-if-absent and compare-and-swap updates and deletes guarded by a key's
//! modification revision; watches that replay history from any retained revision and then
//! follow live writes, in revision order with no gap and no duplicate; compaction; and leases
//! whose expiry deletes their keys with ordinary delete events.
//!
//! Two backends implement it: [`sqlite::SqliteStore`], embedded in the k3rs process, and
//! [`etcd::EtcdStore`], a client of a real etcd cluster. [`compactor`] applies the
//! kube-apiserver compaction policy to either. [`snapshots`] keeps the embedded store's
//! snapshot files (`k3rs etcd-snapshot`, the server's schedule).

pub mod compactor;
pub mod etcd;
pub mod snapshots;
pub mod sqlite;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::Stream;

/// A point in the store's history. Every applied write gets the next revision; a fresh store
/// is at revision 1, as etcd is, so the first write is revision 2.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub i64);

impl Revision {
    /// The revision right after this one.
    pub fn next(self) -> Revision {
        Revision(self.0 + 1)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The identity of a lease. Zero is never a valid lease id (etcd uses it for "no lease").
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeaseId(pub i64);

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// One key's value as of some revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Bytes,
    pub value: Bytes,
    /// Revision of the write that created this incarnation of the key.
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation: 1 after the create.
    pub version: i64,
    pub lease: Option<LeaseId>,
}

/// Where a [`KeyRange`] ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RangeEnd {
    /// The range is the start key alone.
    Single,
    /// Keys up to, not including, this key.
    Before(Bytes),
    /// Every key from the start on.
    Unbounded,
}

/// A set of keys: one key, or a half-open interval `[start, end)` in byte order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    pub start: Bytes,
    pub end: RangeEnd,
}

impl KeyRange {
    /// Just `key`.
    pub fn key(key: impl Into<Bytes>) -> Self {
        KeyRange { start: key.into(), end: RangeEnd::Single }
    }

    /// Every key that starts with `prefix` (every key at all for an empty prefix).
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        let start: Bytes = prefix.into();
        let end = match prefix_end(&start) {
            Some(end) => RangeEnd::Before(end),
            None => RangeEnd::Unbounded,
        };
        KeyRange { start, end }
    }

    /// Keys in `[start, end)`.
    pub fn between(start: impl Into<Bytes>, end: impl Into<Bytes>) -> Self {
        KeyRange { start: start.into(), end: RangeEnd::Before(end.into()) }
    }

    /// Builds a range from etcd's encoding: an empty `range_end` is the key alone, `"\0"` is
    /// every key from `key` on, anything else is the exclusive end.
    pub fn from_etcd(key: &[u8], range_end: &[u8]) -> Self {
        let start = Bytes::copy_from_slice(key);
        let end = match range_end {
            [] => RangeEnd::Single,
            [0] => RangeEnd::Unbounded,
            end => RangeEnd::Before(Bytes::copy_from_slice(end)),
        };
        KeyRange { start, end }
    }

    /// The etcd encoding of the range end (see [`KeyRange::from_etcd`]).
    pub fn etcd_range_end(&self) -> Vec<u8> {
        match &self.end {
            RangeEnd::Single => Vec::new(),
            RangeEnd::Unbounded => vec![0],
            RangeEnd::Before(end) => end.to_vec(),
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            RangeEnd::Single => key == &self.start[..],
            RangeEnd::Unbounded => key >= &self.start[..],
            RangeEnd::Before(end) => key >= &self.start[..] && key < &end[..],
        }
    }

    /// True when no key can be in the range (`end <= start`).
    pub fn is_empty(&self) -> bool {
        matches!(&self.end, RangeEnd::Before(end) if end[..] <= self.start[..])
    }

    /// The rest of this range after `last_key`: where a paginated read continues.
    pub fn after(&self, last_key: &[u8]) -> KeyRange {
        let mut start = last_key.to_vec();
        start.push(0);
        KeyRange { start: start.into(), end: self.end.clone() }
    }
}

/// The smallest key greater than every key starting with `prefix`, or `None` when there is
/// none (the prefix is empty or all 0xff).
pub fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end.into());
        }
    }
    None
}

/// How to read a range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// Read as of this revision; `None` reads the latest.
    pub revision: Option<Revision>,
    /// At most this many keys; `None` for all of them.
    pub limit: Option<usize>,
    /// Leave values empty.
    pub keys_only: bool,
    /// Return no key-values, only the count.
    pub count_only: bool,
}

/// What a range read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResult {
    /// The revision the read was served at: pass it back to read the next page at the same
    /// point in history.
    pub revision: Revision,
    /// The key-values in key order, at most `limit` of them.
    pub kvs: Vec<KeyValue>,
    /// True when more keys in the range were left out by the limit.
    pub more: bool,
    /// How many keys the whole range holds at that revision.
    pub count: i64,
}

/// The result of a guarded write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The write was applied.
    Applied {
        revision: Revision,
        /// The key's value before the write (`None` when it did not exist).
        prev: Option<KeyValue>,
    },
    /// The guard did not hold and nothing was written. `current` is the key's value now
    /// (`None` when it does not exist).
    Failed { current: Option<KeyValue> },
}

impl WriteOutcome {
    pub fn is_applied(&self) -> bool {
        matches!(self, WriteOutcome::Applied { .. })
    }
}

/// What [`Store::delete_range`] removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// The revision of the last delete; the current revision when nothing was deleted.
    pub revision: Revision,
    /// The deleted keys' values just before their delete, in key order.
    pub prev: Vec<KeyValue>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change to one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// For a put, the new value. For a delete, the key with `mod_revision` set to the
    /// revision of the delete and everything else empty, as etcd reports it.
    pub kv: KeyValue,
    /// The value before the change; `None` for the put that creates a key.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Something a watch delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchItem {
    /// Events in revision order; never empty.
    Events(Vec<Event>),
    /// Every event in the watched range up to and including this revision has been
    /// delivered. Sent after [`Watch::request_progress`].
    Progress(Revision),
}

pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchItem, StoreError>> + Send>>;

/// A running watch. Dropping it cancels the watch.
pub struct Watch {
    pub stream: WatchStream,
    progress: Arc<dyn Fn() + Send + Sync>,
}

impl Watch {
    pub fn new(stream: WatchStream, progress: Arc<dyn Fn() + Send + Sync>) -> Self {
        Watch { stream, progress }
    }

    /// Asks for a [`WatchItem::Progress`] once the watch has caught up with the store.
    pub fn request_progress(&self) {
        (self.progress)()
    }

    /// A handle that requests progress without borrowing the watch.
    pub fn progress_handle(&self) -> Arc<dyn Fn() + Send + Sync> {
        self.progress.clone()
    }
}

/// A lease as granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseGrant {
    pub id: LeaseId,
    /// Seconds.
    pub ttl: i64,
}

/// A lease's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseStatus {
    pub id: LeaseId,
    /// Seconds the lease was granted for.
    pub granted_ttl: i64,
    /// Seconds left before it expires.
    pub ttl: i64,
    /// Keys attached to it, in key order.
    pub keys: Vec<Bytes>,
}

/// The store's state at a glance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreStatus {
    pub revision: Revision,
    pub compact_revision: Revision,
    /// Bytes the store occupies on disk.
    pub db_size: i64,
    /// Bytes of it that hold data (the rest is free space kept for reuse).
    pub db_size_in_use: i64,
    /// A short name and version of the backend, for humans.
    pub backend: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("required revision {requested} has been compacted (compacted revision is {compacted})")]
    Compacted { requested: Revision, compacted: Revision },
    #[error("required revision {requested} is a future revision (current revision is {current})")]
    FutureRevision { requested: Revision, current: Revision },
    #[error("requested lease {0} not found")]
    LeaseNotFound(LeaseId),
    #[error("lease {0} already exists")]
    LeaseExists(LeaseId),
    #[error("invalid request: {0}")]
    InvalidArgument(String),
    #[error("watch fell behind and was cut off; resume it from revision {resume_from}")]
    WatchLagged { resume_from: Revision },
    #[error("the store is closed")]
    Closed,
    #[error("database {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("sqlite failed to {op}: {source}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("etcd failed to {op}: {source}")]
    Etcd {
        op: &'static str,
        #[source]
        source: etcd::EtcdError,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The datastore. See the module documentation for the semantics.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The latest revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// Reads the keys in `range`, in key order.
    ///
    /// Fails with [`StoreError::Compacted`] below the compacted revision and
    /// [`StoreError::FutureRevision`] above the current one.
    async fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult>;

    /// Reads one key at the latest revision (or `revision`).
    async fn get(&self, key: &[u8], revision: Option<Revision>) -> Result<(Revision, Option<KeyValue>)> {
        let res = self
            .range(&KeyRange::key(Bytes::copy_from_slice(key)), RangeOptions { revision, ..Default::default() })
            .await?;
        Ok((res.revision, res.kvs.into_iter().next()))
    }

    /// Writes `key` only if it does not exist.
    async fn create(&self, key: Bytes, value: Bytes, lease: Option<LeaseId>) -> Result<WriteOutcome>;

    /// Writes `key` only if it exists and was last modified at `expected`.
    async fn update(
        &self,
        key: Bytes,
        value: Bytes,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<WriteOutcome>;

    /// Writes `key` whatever its state.
    async fn put(&self, key: Bytes, value: Bytes, lease: Option<LeaseId>) -> Result<WriteOutcome>;

    /// Deletes `key` if it exists and, when `expected` is given, was last modified then.
    async fn delete(&self, key: Bytes, expected: Option<Revision>) -> Result<WriteOutcome>;

    /// Deletes every key in `range`, unguarded, with a delete event for each.
    ///
    /// A backend may apply the deletes at one revision (etcd) or at one revision per key
    /// (SQLite: a row is one write); either way a watcher sees every delete, in key order.
    /// This default deletes page by page with one [`Store::delete`] per key, which is correct
    /// on any backend but pays a round trip (and a commit) per key: backends override it.
    async fn delete_range(&self, range: &KeyRange) -> Result<Deleted> {
        const PAGE: usize = 512;
        let mut prev = Vec::new();
        let mut last_write = None;
        let mut record = |outcome: WriteOutcome| {
            if let WriteOutcome::Applied { revision, prev: Some(kv) } = outcome {
                last_write = Some(revision);
                prev.push(kv);
            }
        };
        if range.end == RangeEnd::Single {
            record(self.delete(range.start.clone(), None).await?);
        } else {
            let mut rest = range.clone();
            loop {
                let opts = RangeOptions { limit: Some(PAGE), keys_only: true, ..Default::default() };
                let page = self.range(&rest, opts).await?;
                let Some(last) = page.kvs.last().map(|kv| kv.key.clone()) else { break };
                for kv in page.kvs {
                    // Whatever the key holds by now is what the delete removes.
                    record(self.delete(kv.key, None).await?);
                }
                if !page.more {
                    break;
                }
                rest = range.after(&last);
            }
        }
        let revision = match last_write {
            Some(rev) => rev,
            None => self.current_revision().await?,
        };
        Ok(Deleted { revision, prev })
    }

    /// Watches `range`: events from revision `start` on (history first, then live writes);
    /// `None` watches from the next write on.
    async fn watch(&self, range: KeyRange, start: Option<Revision>) -> Result<Watch>;

    /// Discards history before `revision`: reads and watches below it fail with
    /// [`StoreError::Compacted`] from now on.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision below which history is gone.
    async fn compact_revision(&self) -> Result<Revision>;

    /// Grants a lease of `ttl` seconds; `id` picks its id, `None` lets the store choose.
    async fn lease_grant(&self, id: Option<LeaseId>, ttl: i64) -> Result<LeaseGrant>;

    /// Revokes a lease, deleting every key attached to it.
    async fn lease_revoke(&self, id: LeaseId) -> Result<()>;

    /// Renews a lease to its full TTL; returns that TTL.
    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64>;

    /// A lease's state, `None` if it does not exist (or expired).
    async fn lease_status(&self, id: LeaseId) -> Result<Option<LeaseStatus>>;

    /// The ids of all live leases.
    async fn leases(&self) -> Result<Vec<LeaseId>>;

    /// Revision, compaction and size.
    async fn status(&self) -> Result<StoreStatus>;

    /// Finishes pending work and releases the backend. Later calls fail with
    /// [`StoreError::Closed`].
    async fn close(&self) -> Result<()>;
}
