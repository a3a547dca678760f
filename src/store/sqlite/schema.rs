//! Opening the database file: refusing files that are not ours, creating the schema, and
//! the SQL that reads rows back.
//!
//! The history is one append-only table, `kv`: a row per write, its row id the revision.
//! A row records the key, whether it is a deletion, the key's create revision and version,
//! its lease, its value and `prev_revision`, the row it replaced. `UNIQUE(name,
//! prev_revision)` makes compare-and-swap a constraint: two writes that both claim to
//! replace the same row cannot both be stored.

use std::path::Path;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};

use crate::store::{KeyValue, LeaseId, Revision, StoreError};

/// `PRAGMA application_id` of a k3rs database: "k3rs" in ASCII.
pub const APPLICATION_ID: i32 = 0x6b33_7273;
/// The schema this build reads and writes.
pub const SCHEMA_VERSION: i32 = 1;

const SCHEMA: &str = "
CREATE TABLE kv (
    id INTEGER PRIMARY KEY,
    name BLOB NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    version INTEGER NOT NULL,
    lease INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE UNIQUE INDEX kv_name_prev ON kv (name, prev_revision);
CREATE INDEX kv_name_id ON kv (name, id);
CREATE TABLE lease (id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
";

fn open_error(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Open { path: path.display().to_string(), reason: reason.into() }
}

/// Opens the writer connection, creating the file and schema when there is none, and
/// refusing (without writing a byte) a file that is corrupt, foreign or from a newer k3rs.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let existing = match std::fs::metadata(path) {
        Ok(m) if m.len() > 0 => true,
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(open_error(path, format!("cannot stat: {e}"))),
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| open_error(path, format!("cannot open: {e}")))?;
    if existing {
        check_identity(path, &conn)?;
        check_integrity(path, &conn)?;
    } else {
        // Secrets will live here: only the owner may read it. SQLite gives the -wal and
        // -shm files the database's mode.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| open_error(path, format!("cannot restrict its permissions: {e}")))?;
    }
    // Only now may anything be written: the file is ours or new.
    let pragmas = "PRAGMA journal_mode = WAL;
        PRAGMA synchronous = FULL;
        PRAGMA journal_size_limit = 8388608;
        PRAGMA foreign_keys = OFF;
        PRAGMA cache_size = -8192;";
    if !existing {
        // auto_vacuum must be chosen before the first table exists.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; PRAGMA page_size = 4096;")
            .map_err(|e| open_error(path, format!("cannot initialise: {e}")))?;
    }
    conn.execute_batch(pragmas).map_err(|e| open_error(path, format!("cannot configure: {e}")))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| open_error(path, format!("cannot read journal mode: {e}")))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_error(path, format!("cannot switch to WAL journaling (journal mode is {mode})")));
    }
    if !existing {
        let init = format!(
            "BEGIN IMMEDIATE; {SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        );
        conn.execute_batch(&init).map_err(|e| open_error(path, format!("cannot create the schema: {e}")))?;
    }
    Ok(conn)
}

pub(super) fn check_identity(path: &Path, conn: &Connection) -> Result<(), StoreError> {
    let read = |pragma: &str| -> Result<i32, StoreError> {
        conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
            .map_err(|e| open_error(path, format!("not a readable SQLite database ({e}); refusing to touch it")))
    };
    let app = read("application_id")?;
    let version = read("user_version")?;
    if app != APPLICATION_ID {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| open_error(path, format!("not a readable SQLite database ({e}); refusing to touch it")))?;
        return Err(open_error(
            path,
            format!("not a k3rs database (application id {app:#x}, {tables} schema objects); refusing to touch it"),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(open_error(
            path,
            format!("written by a newer k3rs (schema {version}, this build knows {SCHEMA_VERSION}); upgrade k3rs"),
        ));
    }
    if version < 1 {
        return Err(open_error(path, format!("unknown k3rs schema version {version}")));
    }
    Ok(())
}

/// Reads every page once (`PRAGMA quick_check`), so a damaged file is refused at start
/// with a clear message rather than failing some later read. The file is bounded by the
/// live data, so this costs milliseconds.
pub(super) fn check_integrity(path: &Path, conn: &Connection) -> Result<(), StoreError> {
    let damaged = |detail: String| {
        open_error(path, format!("the database is damaged ({detail}); refusing to touch it: restore it from a backup"))
    };
    let mut st = conn.prepare("PRAGMA quick_check(5)").map_err(|e| damaged(e.to_string()))?;
    let found: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| damaged(e.to_string()))?;
    if found.len() == 1 && found[0] == "ok" {
        return Ok(());
    }
    Err(damaged(found.join("; ")))
}

/// Opens a read-only connection for historical reads.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| StoreError::Sqlite { op: "open a reader", source: e })?;
    conn.execute_batch("PRAGMA cache_size = -2048;")
        .map_err(|e| StoreError::Sqlite { op: "configure a reader", source: e })?;
    Ok(conn)
}

/// The store's revision as the file records it: the last write's row id, or the compaction
/// revision when compaction went past every write (at least 1, a fresh store's).
pub fn revision(conn: &Connection) -> rusqlite::Result<crate::store::Revision> {
    let max_id: i64 = conn.query_row("SELECT coalesce(max(id), 0) FROM kv", [], |r| r.get(0))?;
    let compact_rev = meta_get(conn, "compact_rev")?.unwrap_or(0);
    Ok(Revision(max_id.max(compact_rev).max(1)))
}

/// Reads an integer from `meta`.
pub fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()
}

pub fn meta_set(conn: &Connection, key: &str, value: i64) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        rusqlite::params![key, value],
    )?;
    Ok(())
}

pub fn lease_of(raw: i64) -> Option<LeaseId> {
    (raw != 0).then_some(LeaseId(raw))
}

/// The columns [`kv_from_row`] reads, for a table aliased `k`.
pub const KV_COLUMNS: &str = "k.id, k.name, k.create_revision, k.version, k.lease, k.value";

/// Decodes the [`KV_COLUMNS`] starting at column `at`.
pub fn kv_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        mod_revision: Revision(row.get(at)?),
        key: Bytes::from(row.get::<_, Vec<u8>>(at + 1)?),
        create_revision: Revision(row.get(at + 2)?),
        version: row.get(at + 3)?,
        lease: lease_of(row.get(at + 4)?),
        value: Bytes::from(row.get::<_, Vec<u8>>(at + 5)?),
    })
}

/// The SQL condition selecting `k.name` in a key range, with its parameters.
pub fn name_condition(range: &crate::store::KeyRange) -> (String, Vec<Vec<u8>>) {
    use crate::store::RangeEnd;
    match &range.end {
        RangeEnd::Single => ("k.name = ?".into(), vec![range.start.to_vec()]),
        RangeEnd::Unbounded => ("k.name >= ?".into(), vec![range.start.to_vec()]),
        RangeEnd::Before(end) => ("k.name >= ? AND k.name < ?".into(), vec![range.start.to_vec(), end.to_vec()]),
    }
}
