//! Reads: the latest state from memory, older revisions and watch history from the file.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use bytes::Bytes;
use rusqlite::{params_from_iter, Connection};

use super::schema::{self, kv_from_row, name_condition, KV_COLUMNS};
use super::State;
use crate::store::{
    Event, EventKind, KeyRange, KeyValue, LeaseId, RangeEnd, RangeOptions, RangeResult, Result, Revision, StoreError,
};

/// What [`load`] reads at open.
pub struct Loaded {
    pub rev: Revision,
    pub compact_rev: Revision,
    pub compacted_through: i64,
    pub kvs: BTreeMap<Bytes, KeyValue>,
    pub leases: HashMap<LeaseId, i64>,
}

pub fn load(conn: &Connection) -> rusqlite::Result<Loaded> {
    let rev = schema::revision(conn)?;
    let compact_rev = schema::meta_get(conn, "compact_rev")?.unwrap_or(0);
    let compacted_through = schema::meta_get(conn, "compacted_through")?.unwrap_or(0);
    let mut kvs = BTreeMap::new();
    let mut st = conn.prepare(&format!(
        "SELECT {KV_COLUMNS} FROM kv k JOIN (SELECT max(id) AS mid FROM kv GROUP BY name) m ON k.id = m.mid
         WHERE k.deleted = 0"
    ))?;
    let mut rows = st.query([])?;
    while let Some(row) = rows.next()? {
        let kv = kv_from_row(row, 0)?;
        kvs.insert(kv.key.clone(), kv);
    }
    let mut leases = HashMap::new();
    let mut st = conn.prepare("SELECT id, ttl FROM lease")?;
    let mut rows = st.query([])?;
    while let Some(row) = rows.next()? {
        leases.insert(LeaseId(row.get(0)?), row.get(1)?);
    }
    Ok(Loaded { rev, compact_rev: Revision(compact_rev), compacted_through, kvs, leases })
}

fn shape(kv: &KeyValue, opts: &RangeOptions) -> KeyValue {
    let mut kv = kv.clone();
    if opts.keys_only {
        kv.value = Bytes::new();
    }
    kv
}

/// A range at the current revision, from memory.
pub fn range_latest(state: &State, range: &KeyRange, opts: &RangeOptions) -> RangeResult {
    let mut out = RangeResult { revision: state.rev, kvs: Vec::new(), more: false, count: 0 };
    if range.is_empty() {
        return out;
    }
    let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let mut take = |kv: &KeyValue| {
        out.count += 1;
        if opts.count_only {
            return;
        }
        if out.kvs.len() < limit {
            out.kvs.push(shape(kv, opts));
        } else {
            out.more = true;
        }
    };
    match &range.end {
        RangeEnd::Single => {
            if let Some(kv) = state.kvs.get(&range.start[..]) {
                take(kv);
            }
        }
        RangeEnd::Unbounded => {
            for kv in state.kvs.range::<[u8], _>((Bound::Included(&range.start[..]), Bound::Unbounded)).map(|(_, v)| v)
            {
                take(kv);
            }
        }
        RangeEnd::Before(end) => {
            for kv in state
                .kvs
                .range::<[u8], _>((Bound::Included(&range.start[..]), Bound::Excluded(&end[..])))
                .map(|(_, v)| v)
            {
                take(kv);
            }
        }
    }
    out
}

fn sql_err(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}

/// A range as of an older revision, from the file.
pub fn range_at(conn: &Connection, range: &KeyRange, at: Revision, opts: &RangeOptions) -> Result<RangeResult> {
    let mut out = RangeResult { revision: at, kvs: Vec::new(), more: false, count: 0 };
    if range.is_empty() {
        return Ok(out);
    }
    let (cond, mut args) = name_condition(range);
    let sql = format!(
        "SELECT {KV_COLUMNS} FROM kv k JOIN
           (SELECT max(k.id) AS mid FROM kv k WHERE {cond} AND k.id <= {at} GROUP BY k.name) m ON k.id = m.mid
         WHERE k.deleted = 0 ORDER BY k.name",
        at = at.0
    );
    let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let err = sql_err("read an older revision");
    let mut st = conn.prepare_cached(&sql).map_err(&err)?;
    let mut rows = st.query(params_from_iter(args.drain(..))).map_err(&err)?;
    while let Some(row) = rows.next().map_err(&err)? {
        out.count += 1;
        if opts.count_only {
            continue;
        }
        if out.kvs.len() < limit {
            let kv = kv_from_row(row, 0).map_err(&err)?;
            out.kvs.push(shape(&kv, opts));
        } else {
            out.more = true;
        }
    }
    Ok(out)
}

/// Events in `range` with revisions in `[from, to]`, oldest first, at most `max` of them.
/// Returns the events and the revision the next read should start from.
pub fn history(
    conn: &Connection,
    range: &KeyRange,
    from: Revision,
    to: Revision,
    max: usize,
) -> Result<(Vec<Event>, Revision)> {
    let (cond, args) = name_condition(range);
    let sql = format!(
        "SELECT k.id, k.name, k.deleted, k.create_revision, k.version, k.lease, k.value,
                p.id, p.deleted, p.create_revision, p.version, p.lease, p.value
         FROM kv k LEFT JOIN kv p ON p.id = k.prev_revision
         WHERE k.id >= {from} AND k.id <= {to} AND {cond}
         ORDER BY k.id LIMIT {max}",
        from = from.0,
        to = to.0
    );
    let err = sql_err("replay history");
    let mut st = conn.prepare_cached(&sql).map_err(&err)?;
    let mut rows = st.query(params_from_iter(args)).map_err(&err)?;
    let mut events = Vec::new();
    let mut last = None;
    while let Some(row) = rows.next().map_err(&err)? {
        let decode = || -> rusqlite::Result<Event> {
            let id = Revision(row.get(0)?);
            let key = Bytes::from(row.get::<_, Vec<u8>>(1)?);
            let deleted: bool = row.get(2)?;
            let create_revision = Revision(row.get(3)?);
            // A create's previous row is a tombstone (or nothing): no previous value.
            let prev_id: Option<i64> = row.get(7)?;
            let prev_kv = match prev_id {
                Some(pid) if !row.get::<_, bool>(8)? && (deleted || create_revision != id) => Some(KeyValue {
                    key: key.clone(),
                    mod_revision: Revision(pid),
                    create_revision: Revision(row.get(9)?),
                    version: row.get(10)?,
                    lease: schema::lease_of(row.get(11)?),
                    value: Bytes::from(row.get::<_, Vec<u8>>(12)?),
                }),
                _ => None,
            };
            let (kind, kv) = if deleted {
                (
                    EventKind::Delete,
                    KeyValue {
                        key,
                        value: Bytes::new(),
                        create_revision: Revision(0),
                        mod_revision: id,
                        version: 0,
                        lease: None,
                    },
                )
            } else {
                (
                    EventKind::Put,
                    KeyValue {
                        key,
                        create_revision,
                        mod_revision: id,
                        version: row.get(4)?,
                        lease: schema::lease_of(row.get(5)?),
                        value: Bytes::from(row.get::<_, Vec<u8>>(6)?),
                    },
                )
            };
            Ok(Event { kind, kv, prev_kv })
        };
        let ev = decode().map_err(&err)?;
        last = Some(ev.kv.mod_revision);
        events.push(ev);
    }
    let next = match last {
        Some(r) if events.len() >= max => r.next(),
        _ => to.next(),
    };
    Ok((events, next))
}

/// (bytes on disk including the WAL, bytes holding data).
pub fn sizes(conn: &Connection) -> Result<(i64, i64)> {
    let err = sql_err("measure the database");
    let get =
        |pragma: &str| -> Result<i64> { conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0)).map_err(&err) };
    let page = get("page_size")?;
    let pages = get("page_count")?;
    let free = get("freelist_count")?;
    let path = conn.path().map(|p| p.to_string()).unwrap_or_default();
    let file = |p: &str| std::fs::metadata(p).map(|m| m.len() as i64).unwrap_or(0);
    let on_disk = file(&path) + file(&format!("{path}-wal"));
    Ok((on_disk.max(page * pages), page * (pages - free)))
}
