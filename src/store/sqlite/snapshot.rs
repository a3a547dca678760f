//! Snapshots of the embedded database: an online copy of the live file, and the restore that
//! puts one back in its place.
//!
//! A copy is made with SQLite's backup API from a read-only connection of its own, so it
//! works from any process while the server runs: in WAL mode a reader never blocks the
//! writer, and the whole copy is one step under one read transaction, so it is a single
//! point in the store's history. The revision travels with it, since it is the log's last
//! row id (or the compaction revision, when compaction outran every write). The backup API
//! was measured against `VACUUM INTO` on a 200 MB file of 50,000 keys: 0.3 s against 1.1 s,
//! and it keeps the page layout (page size, auto-vacuum) as it is.
//!
//! A snapshot is a complete database in rollback-journal mode (no `-wal` beside it), checked
//! page by page before it gets its final name; half-written ones carry a dot name
//! (`.NAME.part`) and are removed on failure.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::schema;
use crate::store::{Revision, StoreError};

/// How many times a copy step that found the database busy is tried again, and how long
/// it waits in between: WAL readers are only held off while a crashed writer's log is being
/// recovered, which is quick.
const BUSY_RETRIES: u32 = 200;
const BUSY_PAUSE: Duration = Duration::from_millis(25);

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("no datastore at {0} (is this the server's data dir?)")]
    NoDatastore(PathBuf),
    #[error("snapshot {0} already exists")]
    Exists(PathBuf),
    #[error("snapshot {0}: no such file")]
    NotFound(PathBuf),
    #[error("cannot read the datastore {path}: {source}")]
    Source {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("copying {from} to {to} failed: {reason}")]
    Copy { from: PathBuf, to: PathBuf, reason: String },
    #[error("snapshot {path} is not usable: {reason}")]
    Unusable { path: PathBuf, reason: String },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io { op, path: path.to_path_buf(), source }
}

/// A snapshot as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub path: PathBuf,
    /// The store's revision in the snapshot.
    pub revision: Revision,
    /// Bytes.
    pub size: u64,
}

/// Copies the database at `db` to a new file `dest`, consistently, while it may be in use.
pub fn save(db: &Path, dest: &Path) -> Result<Saved, SnapshotError> {
    if !db.is_file() {
        return Err(SnapshotError::NoDatastore(db.to_path_buf()));
    }
    if dest.symlink_metadata().is_ok() {
        return Err(SnapshotError::Exists(dest.to_path_buf()));
    }
    let part = part_path(dest);
    // Left by a copy that crashed: start clean (its journal too, or SQLite would replay it).
    remove_part(&part);
    let result = copy_to(db, &part).and_then(|revision| {
        sync_file(&part)?;
        // A snapshot never replaces another: hard-link the finished file to its name, which
        // fails if something took the name meanwhile, then drop the part name.
        std::fs::hard_link(&part, dest).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => SnapshotError::Exists(dest.to_path_buf()),
            _ => SnapshotError::Io { op: "name the snapshot", path: dest.to_path_buf(), source: e },
        })?;
        Ok(revision)
    });
    remove_part(&part);
    let revision = result?;
    if let Some(dir) = dest.parent() {
        sync_dir(dir)?;
    }
    let size = std::fs::metadata(dest).map_err(io("stat", dest))?.len();
    Ok(Saved { path: dest.to_path_buf(), revision, size })
}

/// `DIR/.NAME.part` for `DIR/NAME`: hidden from listings while it is written.
fn part_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.part"))
}

fn remove_part(part: &Path) {
    let _ = std::fs::remove_file(part);
    let mut journal = part.as_os_str().to_owned();
    journal.push("-journal");
    let _ = std::fs::remove_file(PathBuf::from(journal));
}

/// Copies `db` into the new file `to` and checks the copy; returns its revision.
fn copy_to(db: &Path, to: &Path) -> Result<Revision, SnapshotError> {
    let source_err = |source| SnapshotError::Source { path: db.to_path_buf(), source };
    let src = schema::open_reader(db).map_err(source_err)?;
    schema::check_identity(db, &src).map_err(source_err)?;
    let copy_err = |reason: String| SnapshotError::Copy { from: db.to_path_buf(), to: to.to_path_buf(), reason };
    let mut dst = Connection::open_with_flags(
        to,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| copy_err(format!("cannot create the copy: {e}")))?;
    {
        use std::os::unix::fs::PermissionsExt;
        // The store holds secrets: the snapshot is as private as the database.
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).map_err(io("restrict", to))?;
    }
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst).map_err(|e| copy_err(e.to_string()))?;
        let mut tries = 0;
        loop {
            // Every page in one step: one read transaction, so one point in time.
            match backup.step(-1).map_err(|e| copy_err(e.to_string()))? {
                rusqlite::backup::StepResult::Done => break,
                rusqlite::backup::StepResult::More => {}
                // Busy or locked: another connection holds the file for a moment.
                _ => {
                    tries += 1;
                    if tries > BUSY_RETRIES {
                        return Err(copy_err("the database stayed busy".into()));
                    }
                    // A blocking thread (callers run this off the async runtime).
                    #[allow(clippy::disallowed_methods)]
                    std::thread::sleep(BUSY_PAUSE);
                }
            }
        }
    }
    drop(src);
    // The copied header says WAL; a snapshot is one self-contained file.
    dst.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .map_err(|e| copy_err(format!("cannot leave WAL mode: {e}")))?;
    let revision = check(to, &dst).map_err(|e| copy_err(format!("the copy does not check out: {e}")))?;
    dst.close().map_err(|(_, e)| copy_err(format!("cannot close the copy: {e}")))?;
    Ok(revision)
}

/// Checks that `conn` is a whole k3rs database this build can open; returns its revision.
fn check(path: &Path, conn: &Connection) -> Result<Revision, StoreError> {
    schema::check_identity(path, conn)?;
    schema::check_integrity(path, conn)?;
    schema::revision(conn).map_err(|source| StoreError::Sqlite { op: "read the revision", source })
}

/// What [`restore`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The store's revision now.
    pub revision: Revision,
    /// Where the database it replaced was moved, if there was one.
    pub previous: Option<PathBuf>,
}

/// Replaces the database at `db` with the snapshot `snapshot`. The current database (with
/// its `-wal` and `-shm`) is moved, not deleted, into `<db dir>/<stem>-old-<stamp>/`.
///
/// The snapshot is copied beside the database and checked before anything else is touched,
/// so a missing, foreign or damaged file changes nothing. The caller must hold the data-dir
/// lock: no server may have the database open.
pub fn restore(snapshot: &Path, db: &Path, stamp: i64) -> Result<Restored, SnapshotError> {
    let unusable = |reason: String| SnapshotError::Unusable { path: snapshot.to_path_buf(), reason };
    match std::fs::metadata(snapshot) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(unusable("not a regular file".into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(SnapshotError::NotFound(snapshot.to_path_buf()))
        }
        Err(e) => return Err(unusable(e.to_string())),
    }
    let dir = db.parent().unwrap_or_else(|| Path::new("."));
    let file_name = db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "state.db".into());
    let staged = dir.join(format!(".{file_name}.restore"));
    let _ = std::fs::remove_file(&staged);
    let result = stage(snapshot, &staged).and_then(|revision| {
        let previous = move_aside(db, &file_name, dir, stamp)?;
        std::fs::rename(&staged, db).map_err(io("put the snapshot in place as", db))?;
        sync_dir(dir)?;
        Ok(Restored { revision, previous })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&staged);
    }
    result
}

/// Copies the snapshot to `staged` (ours to change) and checks it there; returns its revision.
fn stage(snapshot: &Path, staged: &Path) -> Result<Revision, SnapshotError> {
    let unusable = |reason: String| SnapshotError::Unusable { path: snapshot.to_path_buf(), reason };
    std::fs::copy(snapshot, staged).map_err(|e| unusable(format!("cannot copy it to {}: {e}", staged.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(staged, std::fs::Permissions::from_mode(0o600)).map_err(io("restrict", staged))?;
    }
    let conn = Connection::open_with_flags(staged, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| unusable(format!("cannot open it: {e}")))?;
    // Messages name the copy; the user knows the file by the name they gave.
    let reason = |e: StoreError| match e {
        StoreError::Open { reason, .. } => reason,
        other => other.to_string(),
    };
    let revision = check(staged, &conn).map_err(|e| unusable(reason(e)))?;
    // A raw copy of a live database may say WAL: make it one self-contained file.
    conn.query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()))
        .map_err(|e| unusable(format!("cannot read it as a database: {e}")))?;
    conn.close().map_err(|(_, e)| unusable(format!("cannot close it: {e}")))?;
    sync_file(staged)?;
    Ok(revision)
}

/// Moves `db` and its `-wal`/`-shm` (those that exist) into a new directory
/// `<stem>-old-<stamp>` beside it; `None` when there was no database.
fn move_aside(db: &Path, file_name: &str, dir: &Path, stamp: i64) -> Result<Option<PathBuf>, SnapshotError> {
    let files: Vec<String> = ["", "-wal", "-shm"]
        .iter()
        .map(|suffix| format!("{file_name}{suffix}"))
        .filter(|name| dir.join(name).symlink_metadata().is_ok())
        .collect();
    if files.is_empty() {
        return Ok(None);
    }
    let stem = db.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "state".into());
    let old = dir.join(format!("{stem}-old-{stamp}"));
    std::fs::create_dir(&old).map_err(io("create the backup directory", &old))?;
    // The database first: should a later rename fail, the WAL left behind belongs to no
    // database, and SQLite ignores a WAL without its database.
    for name in &files {
        std::fs::rename(dir.join(name), old.join(name)).map_err(io("move the old database to", &old))?;
    }
    sync_dir(&old)?;
    Ok(Some(old))
}

fn sync_file(path: &Path) -> Result<(), SnapshotError> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).map_err(io("sync", path))
}

fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io("sync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{SqliteOptions, SqliteStore};
    use crate::store::{KeyRange, RangeOptions, Store};
    use bytes::Bytes;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[tokio::test]
    async fn a_snapshot_is_a_checked_database_with_the_revision() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let s = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        s.create(b("/a"), b("1"), None).await.unwrap();
        s.put(b("/b"), b("2"), None).await.unwrap();
        let dest = dir.path().join("snap");
        let saved = tokio::task::spawn_blocking({
            let (db, dest) = (db.clone(), dest.clone());
            move || save(&db, &dest)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(saved.revision, Revision(3));
        assert_eq!(saved.size, std::fs::metadata(&dest).unwrap().len());
        // One self-contained file, private, no part left.
        let header = std::fs::read(&dest).unwrap();
        assert_eq!(&header[..16], b"SQLite format 3\0");
        assert_eq!((header[18], header[19]), (1, 1), "rollback-journal mode, not WAL");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(!names.iter().any(|n| n.to_string_lossy().ends_with(".part")), "{names:?}");
        // Never over another snapshot.
        let again = save(&db, &dest).unwrap_err();
        assert!(matches!(again, SnapshotError::Exists(_)), "{again}");
        s.close().await.unwrap();
        let missing = save(&dir.path().join("nope.db"), &dir.path().join("x")).unwrap_err();
        assert_eq!(
            missing.to_string(),
            format!("no datastore at {} (is this the server's data dir?)", dir.path().join("nope.db").display())
        );
    }

    #[tokio::test]
    async fn restore_replaces_the_database_and_keeps_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db/state.db");
        let s = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        s.create(b("/a"), b("1"), None).await.unwrap();
        let snap = dir.path().join("snap");
        let (db2, snap2) = (db.clone(), snap.clone());
        tokio::task::spawn_blocking(move || save(&db2, &snap2)).await.unwrap().unwrap();
        s.put(b("/a"), b("2"), None).await.unwrap();
        s.close().await.unwrap();

        let restored = restore(&snap, &db, 1700000000).unwrap();
        assert_eq!(restored.revision, Revision(2));
        let old = dir.path().join("db/state-old-1700000000");
        assert_eq!(restored.previous.as_deref(), Some(old.as_path()));
        assert!(old.join("state.db").is_file());
        let s = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        let (rev, a) = s.get(b"/a", None).await.unwrap();
        assert_eq!((rev, a.unwrap().value), (Revision(2), b("1")));
        s.close().await.unwrap();
        // The old database is whole: it opens with the write made after the snapshot.
        let o = SqliteStore::open(&old.join("state.db"), SqliteOptions::default()).unwrap();
        let all = o.range(&KeyRange::prefix(b("/")), RangeOptions::default()).await.unwrap();
        assert_eq!((all.revision, all.kvs[0].value.clone()), (Revision(3), b("2")));
        o.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_bad_snapshot_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let s = SqliteStore::open(&db, SqliteOptions::default()).unwrap();
        s.create(b("/a"), b("1"), None).await.unwrap();
        s.close().await.unwrap();
        let before = std::fs::read(&db).unwrap();

        let missing = restore(&dir.path().join("gone"), &db, 1).unwrap_err();
        assert_eq!(missing.to_string(), format!("snapshot {}: no such file", dir.path().join("gone").display()));
        let junk = dir.path().join("junk");
        std::fs::write(&junk, vec![7u8; 8192]).unwrap();
        let e = restore(&junk, &db, 1).unwrap_err().to_string();
        assert!(e.starts_with(&format!("snapshot {} is not usable: ", junk.display())), "{e}");
        assert!(!e.contains('\n'), "{e}");
        // A truncated snapshot: the header promises pages that are not there.
        let snap = dir.path().join("snap");
        save(&db, &snap).unwrap();
        let bytes = std::fs::read(&snap).unwrap();
        let cut = dir.path().join("cut");
        std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
        let e = restore(&cut, &db, 1).unwrap_err().to_string();
        assert!(e.contains("is not usable"), "{e}");
        let foreign = dir.path().join("foreign");
        Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
        let e = restore(&foreign, &db, 1).unwrap_err().to_string();
        assert!(e.contains("not a k3rs database"), "{e}");

        assert_eq!(std::fs::read(&db).unwrap(), before, "the database was touched");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("-old-") || n.ends_with(".restore")), "{names:?}");
    }
}
