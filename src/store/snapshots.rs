//! The embedded datastore's snapshot files, as k3s keeps its etcd snapshots: one directory
//! (`<data-dir>/server/db/snapshots` unless `--etcd-snapshot-dir` names another, which must
//! exist), files named `<prefix>-<node name>-<unix time>`, listed with their size and
//! creation time, pruned to the newest N of a prefix, and taken on a cron schedule by the
//! server ([`run_schedule`]). The copy itself is [`crate::store::sqlite::snapshot`].

use std::future::Future;
use std::path::{Path, PathBuf};

use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;

use crate::domain::cron::{self, Schedule};
use crate::store::sqlite::snapshot::{self, Saved, SnapshotError};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotsError {
    #[error("snapshot directory {0} does not exist (create it, or leave etcd-snapshot-dir unset for the default)")]
    NoDir(PathBuf),
    #[error("snapshot directory {0} is not a directory")]
    NotADir(PathBuf),
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// Where snapshots go and what they are called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The live database.
    pub db: PathBuf,
    pub dir: PathBuf,
    /// The default directory is made when missing; one the user named must exist.
    pub create_dir: bool,
    /// The name prefix.
    pub name: String,
    pub node_name: String,
}

/// One snapshot file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    pub name: String,
    pub path: PathBuf,
    /// Bytes.
    pub size: u64,
    /// Unix seconds: the time the name ends with, else the file's modification time.
    pub created: i64,
}

/// `<prefix>-<node>-<unix time>`, k3s' name for a snapshot.
pub fn snapshot_name(prefix: &str, node_name: &str, unix: i64) -> String {
    format!("{prefix}-{node_name}-{unix}")
}

/// The unix time after a name's last `-`, as k3s reads it back.
fn name_time(name: &str) -> Option<i64> {
    name.rsplit_once('-').and_then(|(_, t)| t.parse().ok())
}

/// Whether `name` can name a snapshot file in the directory (and nothing outside it).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a snapshot name must not be empty".into());
    }
    if name.contains('/') || name.contains('\0') {
        return Err(format!("{name:?} is not a snapshot name: names are file names in the snapshot directory"));
    }
    if name.starts_with('.') {
        return Err(format!("{name:?} is not a snapshot name: names do not start with '.'"));
    }
    Ok(())
}

/// Makes sure the directory exists (creating the default one, mode 0700).
pub fn ensure_dir(dir: &Path, create: bool) -> Result<(), SnapshotsError> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(SnapshotsError::NotADir(dir.to_path_buf())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|source| SnapshotsError::Io {
                op: "create",
                path: dir.to_path_buf(),
                source,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SnapshotsError::NoDir(dir.to_path_buf())),
        Err(source) => Err(SnapshotsError::Io { op: "read", path: dir.to_path_buf(), source }),
    }
}

/// Takes a snapshot now. Blocking: call from `spawn_blocking` in async code.
pub fn take(target: &Target, now: i64) -> Result<Saved, SnapshotsError> {
    ensure_dir(&target.dir, target.create_dir)?;
    let path = target.dir.join(snapshot_name(&target.name, &target.node_name, now));
    Ok(snapshot::save(&target.db, &path)?)
}

/// The snapshots in `dir`, oldest first: its regular files, without dot files (copies in
/// progress).
pub fn list(dir: &Path) -> Result<Vec<SnapshotFile>, SnapshotsError> {
    let fail = |source| SnapshotsError::Io { op: "list", path: dir.to_path_buf(), source };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(fail)? {
        let entry = entry.map_err(fail)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        // A file removed since the listing began is simply not listed.
        let Ok(meta) = std::fs::metadata(entry.path()) else { continue };
        if !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
        let created = name_time(&name).unwrap_or_else(|| mtime.map_or(0, |d| d.as_secs() as i64));
        out.push(SnapshotFile { path: entry.path(), name, size: meta.len(), created });
    }
    out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(out)
}

/// The snapshots that retention removes: those whose name starts with `prefix`, past the
/// newest `keep`. Zero keeps every one (k3s: retention below 1 prunes nothing).
pub fn retention_victims<'a>(files: &'a [SnapshotFile], prefix: &str, keep: u32) -> Vec<&'a SnapshotFile> {
    if keep == 0 {
        return Vec::new();
    }
    let mut matching: Vec<&SnapshotFile> = files.iter().filter(|f| f.name.starts_with(prefix)).collect();
    // Newest first; the name breaks ties so the choice does not depend on listing order.
    matching.sort_by(|a, b| (b.created, &b.name).cmp(&(a.created, &a.name)));
    matching.into_iter().skip(keep as usize).collect()
}

/// Removes the snapshots past the newest `keep` with this prefix; returns their names.
pub fn prune(dir: &Path, prefix: &str, keep: u32) -> Result<Vec<String>, SnapshotsError> {
    let files = list(dir)?;
    let mut removed = Vec::new();
    for f in retention_victims(&files, prefix, keep) {
        std::fs::remove_file(&f.path).map_err(|source| SnapshotsError::Io {
            op: "remove",
            path: f.path.clone(),
            source,
        })?;
        tracing::info!(snapshot = %f.path.display(), "removed snapshot (retention {keep})");
        removed.push(f.name.clone());
    }
    Ok(removed)
}

/// k3s' `etcd-snapshot ls` table: Name, Location, Size, Created (RFC 3339 in `tz`), columns
/// aligned with at least one space between them.
pub fn table(files: &[SnapshotFile], tz: &TimeZone) -> String {
    let mut rows = vec![["Name".to_string(), "Location".into(), "Size".into(), "Created".into()]];
    for f in files {
        let created = Timestamp::from_second(f.created)
            .map(|t| cron::rfc3339_in(t, tz))
            .unwrap_or_else(|_| f.created.to_string());
        rows.push([f.name.clone(), format!("file://{}", f.path.display()), f.size.to_string(), created]);
    }
    let mut widths = [0usize; 4];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 1));
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The schedule of `k3rs server`'s snapshots.
#[derive(Clone, Debug)]
pub struct Scheduled {
    pub target: Target,
    pub schedule: Schedule,
    /// Snapshots with the target's prefix to keep; 0 keeps all.
    pub retention: u32,
}

/// Takes a snapshot at each time the schedule names (in its `CRON_TZ=` zone, else the
/// machine's local zone, as k3s' cron does) and prunes to the retention, until `stop`
/// resolves. A failed snapshot is logged and the schedule goes on, as in k3s.
pub async fn run_schedule(s: Scheduled, stop: impl Future<Output = ()>) {
    let tz = match s.schedule.zone.as_deref() {
        Some(zone) => crate::util::tz::load(zone).unwrap_or_else(|e| {
            tracing::warn!(zone, error = %e, "snapshot schedule: unknown zone; using the local zone");
            crate::util::tz::local()
        }),
        None => crate::util::tz::local(),
    };
    let mut stop = std::pin::pin!(stop);
    loop {
        let now = Timestamp::now();
        let Some(next) = s.schedule.next(now, &tz) else {
            tracing::warn!("the snapshot schedule names no time in the next five years; no snapshots will be taken");
            stop.as_mut().await;
            return;
        };
        tracing::debug!(next = %cron::rfc3339_in(next, &tz), "next scheduled snapshot");
        tokio::select! {
            () = stop.as_mut() => return,
            () = tokio::time::sleep(cron::until(now, next)) => {}
        }
        // Woken early by a clock step: wait for the real time.
        if Timestamp::now() < next {
            continue;
        }
        let job = s.clone();
        let result = tokio::task::spawn_blocking(move || {
            let saved = take(&job.target, next.as_second())?;
            let pruned = prune(&job.target.dir, &job.target.name, job.retention);
            Ok::<_, SnapshotsError>((saved, pruned))
        })
        .await;
        match result {
            Ok(Ok((saved, pruned))) => {
                tracing::info!(
                    snapshot = %saved.path.display(),
                    rev = saved.revision.0,
                    size = saved.size,
                    "scheduled snapshot saved"
                );
                if let Err(e) = pruned {
                    tracing::warn!(error = %e, "applying the snapshot retention failed");
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "scheduled snapshot failed"),
            Err(e) => tracing::error!(error = %e, "scheduled snapshot task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, created: i64) -> SnapshotFile {
        SnapshotFile { name: name.into(), path: PathBuf::from("/s").join(name), size: 1, created }
    }

    #[test]
    fn names_are_prefix_node_and_unix_time() {
        let name = snapshot_name("etcd-snapshot", "node-a", 1700000000);
        assert_eq!(name, "etcd-snapshot-node-a-1700000000");
        assert_eq!(name_time(&name), Some(1700000000));
        assert_eq!(name_time("my-backup"), None);
        assert_eq!(name_time("plain"), None);
        assert!(check_name(&name).is_ok());
        for bad in ["", "../state.db", "a/b", ".hidden", "."] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn retention_keeps_the_newest_of_the_prefix_only() {
        let files = [
            file("etcd-snapshot-n-100", 100),
            file("etcd-snapshot-n-300", 300),
            file("on-demand-n-50", 50),
            file("etcd-snapshot-n-200", 200),
            file("etcd-snapshot-n-400", 400),
        ];
        let names = |v: Vec<&SnapshotFile>| v.into_iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(retention_victims(&files, "etcd-snapshot", 2)),
            ["etcd-snapshot-n-200", "etcd-snapshot-n-100"]
        );
        assert_eq!(names(retention_victims(&files, "on-demand", 1)), Vec::<String>::new());
        assert_eq!(names(retention_victims(&files, "etcd-snapshot", 4)), Vec::<String>::new());
        // Zero keeps everything, as k3s' retention below 1 does.
        assert!(retention_victims(&files, "etcd-snapshot", 0).is_empty());
        // Same second: the name decides, so the choice is stable.
        let tied = [file("p-a-5", 5), file("p-b-5", 5)];
        assert_eq!(names(retention_victims(&tied, "p", 1)), ["p-a-5"]);
    }

    #[test]
    fn listing_reads_times_from_names_and_skips_partial_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("on-demand-n-1700000100"), b"12345").unwrap();
        std::fs::write(dir.path().join("etcd-snapshot-n-1700000000"), b"1").unwrap();
        std::fs::write(dir.path().join("mine"), b"xy").unwrap();
        std::fs::write(dir.path().join(".on-demand-n-1700000200.part"), b"half").unwrap();
        std::fs::create_dir(dir.path().join("subdir")).unwrap();
        let files = list(dir.path()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["etcd-snapshot-n-1700000000", "on-demand-n-1700000100", "mine"]);
        assert_eq!(files[1].size, 5);
        assert!(files[2].created > 1700000100, "mtime for a name without a time");

        let table = table(&files[..2], &TimeZone::UTC);
        let loc = |n: &str| format!("file://{}", dir.path().join(n).display());
        let (a, b) = ("etcd-snapshot-n-1700000000", "on-demand-n-1700000100");
        let w = loc(a).len() + 1;
        let want = [
            format!("{:<27}{:<w$}Size Created", "Name", "Location"),
            format!("{a:<27}{:<w$}{:<5}2023-11-14T22:13:20Z", loc(a), "1"),
            format!("{b:<27}{:<w$}{:<5}2023-11-14T22:15:00Z", loc(b), "5"),
        ];
        assert_eq!(table.lines().collect::<Vec<_>>(), want);

        // Prune removes the oldest of the prefix and leaves the rest.
        std::fs::write(dir.path().join("on-demand-n-1700000300"), b"3").unwrap();
        assert_eq!(prune(dir.path(), "on-demand", 1).unwrap(), ["on-demand-n-1700000100"]);
        let names: Vec<String> = list(dir.path()).unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["etcd-snapshot-n-1700000000", "on-demand-n-1700000300", "mine"]);
    }

    #[test]
    fn only_the_default_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let named = dir.path().join("mine");
        assert!(matches!(ensure_dir(&named, false), Err(SnapshotsError::NoDir(_))));
        assert!(!named.exists());
        let default = dir.path().join("db/snapshots");
        ensure_dir(&default, true).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&default).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::write(&named, b"").unwrap();
        assert!(matches!(ensure_dir(&named, false), Err(SnapshotsError::NotADir(_))));
    }

    #[test]
    fn the_default_schedule_fires_every_twelve_hours() {
        let s = Schedule::parse(crate::server::config::DEFAULT_ETCD_SNAPSHOT_SCHEDULE_CRON).unwrap();
        let t: Timestamp = "2024-03-01T05:30:00Z".parse().unwrap();
        let next = s.next(t, &TimeZone::UTC).unwrap();
        assert_eq!(next.to_string(), "2024-03-01T12:00:00Z");
        assert_eq!(s.next(next, &TimeZone::UTC).unwrap().to_string(), "2024-03-02T00:00:00Z");
    }
}
