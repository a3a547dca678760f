//! The single writer: one thread owns the write connection and turns queued requests into
//! group commits.
//!
//! It takes every request waiting in the queue (up to a bound), applies them in one
//! transaction, commits (an fsync of the WAL), and only then updates the in-memory view,
//! publishes the events to watchers and answers the callers. While one commit is being
//! synced the next requests queue up, so concurrent writers share fsyncs. Physical
//! compaction rides along in the same transactions, a chunk at a time, so it never costs an
//! extra sync and never holds the writer for long.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::{Committed, LeaseEntry, Shared};
use crate::store::{
    Deleted, Event, EventKind, KeyRange, KeyValue, LeaseGrant, LeaseId, RangeEnd, Revision, StoreError, WriteOutcome,
};

/// Revisions one compaction chunk covers.
const COMPACTION_CHUNK: i64 = 2000;

pub enum Op {
    Create {
        key: Bytes,
        value: Bytes,
        lease: Option<LeaseId>,
    },
    Update {
        key: Bytes,
        value: Bytes,
        expected: Revision,
        lease: Option<LeaseId>,
    },
    Put {
        key: Bytes,
        value: Bytes,
        lease: Option<LeaseId>,
    },
    Delete {
        key: Bytes,
        expected: Option<Revision>,
    },
    /// Delete every key in the range, each at its own revision, all in this one request
    /// (one transaction, one commit, one message to watchers).
    DeleteRange {
        range: KeyRange,
    },
    LeaseGrant {
        id: Option<LeaseId>,
        ttl: i64,
    },
    /// Revoke a lease; with `only_if_expired`, only when it is still past its deadline
    /// (a keep-alive may have arrived since the expiry check).
    LeaseRevoke {
        id: LeaseId,
        only_if_expired: bool,
    },
    Compact {
        revision: Revision,
    },
    Close,
}

pub enum Reply {
    Write(WriteOutcome),
    Deleted(Deleted),
    Lease(LeaseGrant),
    Done,
}

pub struct Request {
    pub op: Op,
    pub reply: oneshot::Sender<Result<Reply, StoreError>>,
}

/// State the writer carries between batches.
pub struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    max_batch: usize,
    /// Physical compaction has removed what compaction to this revision allows.
    compacted_through: i64,
    /// Set after compaction catches up, so the file is shrunk and the WAL truncated once
    /// the writer is idle.
    tidy_pending: bool,
}

/// What a batch changes, applied to the shared view only after the commit.
#[derive(Default)]
struct Pending {
    kvs: HashMap<Bytes, Option<KeyValue>>,
    granted: HashMap<LeaseId, i64>,
    revoked: Vec<LeaseId>,
    events: Vec<Event>,
    compact_to: Option<Revision>,
}

impl Writer {
    pub fn new(conn: Connection, shared: Arc<Shared>, max_batch: usize, compacted_through: i64) -> Self {
        Writer { conn, shared, max_batch, compacted_through, tidy_pending: false }
    }

    pub fn run(mut self, rx: Receiver<Request>) {
        loop {
            let first = if self.compaction_due() || self.tidy_pending {
                match rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                match rx.recv() {
                    Ok(r) => Some(r),
                    Err(_) => break,
                }
            };
            let Some(first) = first else {
                // Idle: do background work alone.
                if self.compaction_due() {
                    self.run_batch(Vec::new());
                } else {
                    self.tidy();
                }
                continue;
            };
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let close = batch.iter().position(|r| matches!(r.op, Op::Close));
            if let Some(i) = close {
                // Everything queued before the close is served; the close answers last.
                let rest = batch.split_off(i);
                self.run_batch(batch);
                self.shutdown(rest, rx);
                return;
            }
            self.run_batch(batch);
        }
        self.finish();
    }

    fn compaction_due(&self) -> bool {
        self.shared.state().compact_rev.0 > self.compacted_through
    }

    fn run_batch(&mut self, batch: Vec<Request>) {
        let mut pending = Pending::default();
        let base_rev = self.shared.state().rev;
        let mut rev = base_rev;
        let mut answers: Vec<Result<Reply, StoreError>> = Vec::with_capacity(batch.len());
        let mut compacted_through = self.compacted_through;
        let result = (|| -> Result<(), StoreError> {
            self.conn
                .execute_batch("BEGIN IMMEDIATE")
                .map_err(|e| StoreError::Sqlite { op: "begin a write transaction", source: e })?;
            for req in &batch {
                let answer = self.apply(&req.op, &mut rev, &mut pending)?;
                answers.push(answer);
            }
            compacted_through = self.compaction_chunk(pending.compact_to)?;
            self.conn.execute_batch("COMMIT").map_err(|e| StoreError::Sqlite { op: "commit", source: e })?;
            Ok(())
        })();
        if let Err(err) = result {
            let _ = self.conn.execute_batch("ROLLBACK");
            tracing::error!(error = %err, writes = batch.len(), "write batch failed; nothing in it was applied");
            let msg = err.to_string();
            let mut err = Some(err);
            for req in batch {
                // The first caller gets the error itself, the rest a copy of its text.
                let e = err.take().unwrap_or_else(|| StoreError::InvalidArgument(format!("batch failed: {msg}")));
                let _ = req.reply.send(Err(e));
            }
            return;
        }
        let target = pending.compact_to.unwrap_or(self.shared.state().compact_rev).0;
        if compacted_through > self.compacted_through && compacted_through >= target {
            // Compaction has caught up: shrink the file once the writer is idle.
            self.tidy_pending = true;
        }
        self.compacted_through = compacted_through;
        self.publish(rev, pending);
        for (req, answer) in batch.into_iter().zip(answers) {
            let _ = req.reply.send(answer);
        }
    }

    /// Applies one request inside the open transaction. An `Err` aborts the whole batch (an
    /// I/O failure); a refused request is an `Ok` carrying the refusal.
    fn apply(&mut self, op: &Op, rev: &mut Revision, p: &mut Pending) -> Result<Result<Reply, StoreError>, StoreError> {
        match op {
            Op::Create { key, value, lease } => {
                if let Some(current) = self.current(key, p) {
                    return Ok(Ok(Reply::Write(WriteOutcome::Failed { current: Some(current) })));
                }
                if let Some(refusal) = self.check_lease(*lease, p) {
                    return Ok(Err(refusal));
                }
                self.write(key, value, *lease, None, rev, p).map(|o| Ok(Reply::Write(o)))
            }
            Op::Update { key, value, expected, lease } => {
                let current = self.current(key, p);
                match current {
                    Some(cur) if cur.mod_revision == *expected => {
                        if let Some(refusal) = self.check_lease(*lease, p) {
                            return Ok(Err(refusal));
                        }
                        self.write(key, value, *lease, Some(cur), rev, p).map(|o| Ok(Reply::Write(o)))
                    }
                    current => Ok(Ok(Reply::Write(WriteOutcome::Failed { current }))),
                }
            }
            Op::Put { key, value, lease } => {
                if let Some(refusal) = self.check_lease(*lease, p) {
                    return Ok(Err(refusal));
                }
                let current = self.current(key, p);
                self.write(key, value, *lease, current, rev, p).map(|o| Ok(Reply::Write(o)))
            }
            Op::Delete { key, expected } => match self.current(key, p) {
                Some(cur) if expected.is_none_or(|e| e == cur.mod_revision) => {
                    self.delete(cur, rev, p).map(|o| Ok(Reply::Write(o)))
                }
                current => Ok(Ok(Reply::Write(WriteOutcome::Failed { current }))),
            },
            Op::DeleteRange { range } => {
                let doomed = self.in_range(range, p);
                let mut prev = Vec::with_capacity(doomed.len());
                for kv in doomed {
                    if let WriteOutcome::Applied { prev: Some(kv), .. } = self.delete(kv, rev, p)? {
                        prev.push(kv);
                    }
                }
                Ok(Ok(Reply::Deleted(Deleted { revision: *rev, prev })))
            }
            Op::LeaseGrant { id, ttl } => {
                if *ttl <= 0 {
                    return Ok(Err(StoreError::InvalidArgument(format!("lease TTL must be positive, got {ttl}"))));
                }
                let id = match id {
                    Some(id) if id.0 <= 0 => {
                        return Ok(Err(StoreError::InvalidArgument(format!("lease id must be positive, got {}", id.0))))
                    }
                    Some(id) => {
                        if self.lease_exists(*id, p) {
                            return Ok(Err(StoreError::LeaseExists(*id)));
                        }
                        *id
                    }
                    None => loop {
                        let candidate = LeaseId(fastrand::i64(1..i64::MAX));
                        if !self.lease_exists(candidate, p) {
                            break candidate;
                        }
                    },
                };
                self.conn
                    .execute("INSERT INTO lease (id, ttl) VALUES (?1, ?2)", params![id.0, ttl])
                    .map_err(|e| StoreError::Sqlite { op: "store a lease", source: e })?;
                p.granted.insert(id, *ttl);
                Ok(Ok(Reply::Lease(LeaseGrant { id, ttl: *ttl })))
            }
            Op::LeaseRevoke { id, only_if_expired } => {
                if !self.lease_exists(*id, p) {
                    return Ok(Err(StoreError::LeaseNotFound(*id)));
                }
                if *only_if_expired && !p.granted.contains_key(id) {
                    let leases = self.shared.leases();
                    if leases.get(id).is_some_and(|l| l.deadline > Instant::now()) {
                        return Ok(Ok(Reply::Done));
                    }
                }
                for kv in self.attached(*id, p) {
                    self.delete(kv, rev, p)?;
                }
                self.conn
                    .execute("DELETE FROM lease WHERE id = ?1", [id.0])
                    .map_err(|e| StoreError::Sqlite { op: "delete a lease", source: e })?;
                p.granted.remove(id);
                p.revoked.push(*id);
                Ok(Ok(Reply::Done))
            }
            Op::Compact { revision } => {
                let (current_compact, _) = {
                    let s = self.shared.state();
                    (p.compact_to.unwrap_or(s.compact_rev), s.rev)
                };
                if *revision <= current_compact {
                    return Ok(Err(StoreError::Compacted { requested: *revision, compacted: current_compact }));
                }
                if *revision > *rev {
                    return Ok(Err(StoreError::FutureRevision { requested: *revision, current: *rev }));
                }
                super::schema::meta_set(&self.conn, "compact_rev", revision.0)
                    .map_err(|e| StoreError::Sqlite { op: "record the compaction", source: e })?;
                p.compact_to = Some(*revision);
                Ok(Ok(Reply::Done))
            }
            Op::Close => Ok(Ok(Reply::Done)),
        }
    }

    /// The key's value as of the requests applied so far.
    fn current(&self, key: &Bytes, p: &Pending) -> Option<KeyValue> {
        match p.kvs.get(key) {
            Some(v) => v.clone(),
            None => self.shared.state().kvs.get(key).cloned(),
        }
    }

    fn lease_exists(&self, id: LeaseId, p: &Pending) -> bool {
        if p.granted.contains_key(&id) {
            return true;
        }
        !p.revoked.contains(&id) && self.shared.leases().contains_key(&id)
    }

    fn check_lease(&self, lease: Option<LeaseId>, p: &Pending) -> Option<StoreError> {
        let id = lease?;
        (!self.lease_exists(id, p)).then_some(StoreError::LeaseNotFound(id))
    }

    /// Live keys attached to a lease, as of the requests applied so far.
    fn attached(&self, id: LeaseId, p: &Pending) -> Vec<KeyValue> {
        let state = self.shared.state();
        let mut out: Vec<KeyValue> =
            state.kvs.values().filter(|kv| kv.lease == Some(id) && !p.kvs.contains_key(&kv.key)).cloned().collect();
        out.extend(p.kvs.values().flatten().filter(|kv| kv.lease == Some(id)).cloned());
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Live keys in `range`, in key order, as of the requests applied so far.
    fn in_range(&self, range: &KeyRange, p: &Pending) -> Vec<KeyValue> {
        if range.is_empty() {
            return Vec::new();
        }
        let state = self.shared.state();
        let bounds = (
            Bound::Included(&range.start[..]),
            match &range.end {
                RangeEnd::Single => Bound::Included(&range.start[..]),
                RangeEnd::Before(end) => Bound::Excluded(&end[..]),
                RangeEnd::Unbounded => Bound::Unbounded,
            },
        );
        let mut out: Vec<KeyValue> = state
            .kvs
            .range::<[u8], _>(bounds)
            .filter(|(key, _)| !p.kvs.contains_key(*key))
            .map(|(_, kv)| kv.clone())
            .collect();
        let from_state = out.len();
        out.extend(p.kvs.iter().filter(|(key, _)| range.contains(key)).filter_map(|(_, kv)| kv.clone()));
        if out.len() > from_state {
            out.sort_by(|a, b| a.key.cmp(&b.key));
        }
        out
    }

    /// The row a new write to an absent key replaces: its latest tombstone, if still stored.
    fn tombstone_of(&self, key: &Bytes) -> Result<i64, StoreError> {
        let row: Option<i64> = self
            .conn
            .query_row("SELECT max(id) FROM kv WHERE name = ?1", [key.as_ref()], |r| r.get(0))
            .optional()
            .map_err(|e| StoreError::Sqlite { op: "look up a key's history", source: e })?
            .flatten();
        Ok(row.unwrap_or(0))
    }

    fn write(
        &mut self,
        key: &Bytes,
        value: &Bytes,
        lease: Option<LeaseId>,
        prev: Option<KeyValue>,
        rev: &mut Revision,
        p: &mut Pending,
    ) -> Result<WriteOutcome, StoreError> {
        let id = rev.next();
        let (create_revision, version, prev_row) = match &prev {
            Some(cur) => (cur.create_revision, cur.version + 1, cur.mod_revision.0),
            // The transaction sees its own rows, so a delete earlier in this batch counts.
            None => (id, 1, self.tombstone_of(key)?),
        };
        self.conn
            .prepare_cached(
                "INSERT INTO kv (id, name, deleted, create_revision, prev_revision, version, lease, value)
                 VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    id.0,
                    key.as_ref(),
                    create_revision.0,
                    prev_row,
                    version,
                    lease.map_or(0, |l| l.0),
                    value.as_ref()
                ])
            })
            .map_err(|e| StoreError::Sqlite { op: "append a write", source: e })?;
        *rev = id;
        let kv = KeyValue { key: key.clone(), value: value.clone(), create_revision, mod_revision: id, version, lease };
        p.kvs.insert(key.clone(), Some(kv.clone()));
        p.events.push(Event { kind: EventKind::Put, kv, prev_kv: prev.clone() });
        Ok(WriteOutcome::Applied { revision: id, prev })
    }

    fn delete(&mut self, cur: KeyValue, rev: &mut Revision, p: &mut Pending) -> Result<WriteOutcome, StoreError> {
        let id = rev.next();
        self.conn
            .prepare_cached(
                "INSERT INTO kv (id, name, deleted, create_revision, prev_revision, version, lease, value)
                 VALUES (?1, ?2, 1, 0, ?3, 0, 0, x'')",
            )
            .and_then(|mut st| st.execute(params![id.0, cur.key.as_ref(), cur.mod_revision.0]))
            .map_err(|e| StoreError::Sqlite { op: "append a delete", source: e })?;
        *rev = id;
        p.kvs.insert(cur.key.clone(), None);
        let kv = KeyValue {
            key: cur.key.clone(),
            value: Bytes::new(),
            create_revision: Revision(0),
            mod_revision: id,
            version: 0,
            lease: None,
        };
        p.events.push(Event { kind: EventKind::Delete, kv, prev_kv: Some(cur.clone()) });
        Ok(WriteOutcome::Applied { revision: id, prev: Some(cur) })
    }

    /// Removes one chunk of history that compaction made unreachable; returns how far
    /// physical compaction has got.
    fn compaction_chunk(&mut self, newly: Option<Revision>) -> Result<i64, StoreError> {
        let target = newly.unwrap_or(self.shared.state().compact_rev).0;
        let lo = self.compacted_through;
        if target <= lo {
            return Ok(lo);
        }
        let hi = target.min(lo + COMPACTION_CHUNK);
        // Rows superseded by a write in (lo, hi]: nothing at or after the compaction point
        // can read them. Deletion markers are dropped one compaction later (below `hi`), so
        // a watch from exactly the compacted revision still sees a delete made there.
        self.conn
            .execute(
                "DELETE FROM kv WHERE id IN (SELECT prev_revision FROM kv WHERE id > ?1 AND id <= ?2 AND prev_revision > 0)",
                params![lo, hi],
            )
            .and_then(|_| {
                self.conn.execute(
                    "DELETE FROM kv WHERE id >= ?1 AND id < ?2 AND deleted = 1",
                    params![lo, hi],
                )
            })
            .and_then(|_| super::schema::meta_set(&self.conn, "compacted_through", hi))
            .map_err(|e| StoreError::Sqlite { op: "compact history", source: e })?;
        Ok(hi)
    }

    /// Gives free pages back to the file system and truncates the WAL, when idle.
    fn tidy(&mut self) {
        self.tidy_pending = false;
        let pages = |conn: &Connection, pragma: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0)).unwrap_or(0)
        };
        let free = pages(&self.conn, "freelist_count");
        let total = pages(&self.conn, "page_count");
        if free > 64 && free * 4 > total {
            // The pragma frees pages as it is stepped: run it to completion.
            let vacuum = self.conn.prepare("PRAGMA incremental_vacuum").and_then(|mut st| {
                let mut rows = st.query([])?;
                while rows.next()?.is_some() {}
                Ok(())
            });
            if let Err(e) = vacuum {
                tracing::warn!(error = %e, "returning free pages to the file system failed");
            }
        }
        if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }

    /// After a successful commit: update the in-memory view, then tell watchers.
    fn publish(&mut self, rev: Revision, p: Pending) {
        {
            let mut state = self.shared.state_mut();
            for (key, kv) in p.kvs {
                match kv {
                    Some(kv) => {
                        state.kvs.insert(key, kv);
                    }
                    None => {
                        state.kvs.remove(&key);
                    }
                }
            }
            state.rev = rev;
            if let Some(c) = p.compact_to {
                state.compact_rev = c;
            }
        }
        if !p.granted.is_empty() || !p.revoked.is_empty() {
            let mut leases = self.shared.leases();
            let now = Instant::now();
            for id in p.revoked {
                leases.remove(&id);
            }
            for (id, ttl) in p.granted {
                leases.insert(id, LeaseEntry { ttl, deadline: now + Duration::from_secs(ttl as u64) });
            }
        }
        if !p.events.is_empty() {
            self.shared.broadcast(Arc::new(Committed { revision: rev, events: p.events }));
        }
    }

    fn shutdown(mut self, rest: Vec<Request>, rx: Receiver<Request>) {
        self.finish();
        for req in rest.into_iter().chain(rx.try_iter()) {
            let answer = if matches!(req.op, Op::Close) { Ok(Reply::Done) } else { Err(StoreError::Closed) };
            let _ = req.reply.send(answer);
        }
    }

    fn finish(&mut self) {
        self.shared.close_watchers();
        if let Err(e) = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "final WAL checkpoint failed");
        }
        let _ = self.conn.execute_batch("PRAGMA optimize");
    }
}
