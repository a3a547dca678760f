//! The air-gap directory (`<data-dir>/agent/images/`): archives found there at start and
//! dropped there later are imported, each content once (the store remembers archive
//! digests, so a restart imports nothing again, and each file's metadata, so a restart does
//! not even read a file it imported before unless the file changed).
//!
//! The directory is polled every second. A file counts as complete when its size and mtime
//! did not change since the previous look, or when it was last written more than two seconds
//! ago (files present at start are imported at once); a file still being copied in is left
//! alone until it settles. A file that fails to import is tried again only once it changes.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Image, ImageStore};

const POLL: Duration = Duration::from_secs(1);
const SETTLED: Duration = Duration::from_secs(2);

/// What a file looked like: size and mtime.
type Stamp = (u64, SystemTime);

#[derive(Default)]
struct Seen {
    /// The stamp at the previous poll.
    last: HashMap<PathBuf, Stamp>,
    /// The stamp a file had when it was handled (imported, skipped or failed).
    handled: HashMap<PathBuf, Stamp>,
}

/// Imports the archives in `dir` now and returns the images imported.
pub async fn import_dir_once(store: Arc<ImageStore>, dir: PathBuf) -> Vec<Image> {
    let mut seen = Seen::default();
    scan(&store, &dir, &mut seen, true).await
}

/// Imports what is in `dir` at start, then every new or changed file, until `shutdown`.
pub async fn watch_import_dir(store: Arc<ImageStore>, dir: PathBuf, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut seen = Seen::default();
    loop {
        scan(&store, &dir, &mut seen, false).await;
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn scan(store: &Arc<ImageStore>, dir: &Path, seen: &mut Seen, all: bool) -> Vec<Image> {
    let mut imported = Vec::new();
    let files = match list(dir) {
        Ok(files) => files,
        Err(e) => {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot read the image import directory");
            }
            return imported;
        }
    };
    let now = SystemTime::now();
    seen.last.retain(|p, _| files.iter().any(|(f, _)| f == p));
    seen.handled.retain(|p, _| files.iter().any(|(f, _)| f == p));
    for (path, stamp) in files {
        let previous = seen.last.insert(path.clone(), stamp);
        if seen.handled.get(&path) == Some(&stamp) {
            continue;
        }
        let old_enough = now.duration_since(stamp.1).is_ok_and(|age| age >= SETTLED);
        if !(all || old_enough || previous == Some(stamp)) {
            continue;
        }
        seen.handled.insert(path.clone(), stamp);
        let store = Arc::clone(store);
        let p = path.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<Option<Vec<Image>>, super::ImageError> {
            if store.unchanged_since_import(&p) {
                return Ok(None);
            }
            let digest = ImageStore::archive_digest(&p)?;
            if store.was_imported(&digest) {
                store.remember_file(&p, &digest);
                return Ok(None);
            }
            store.import_digested_archive(&p, &digest).map(Some)
        })
        .await;
        match result {
            Ok(Ok(Some(images))) => imported.extend(images),
            Ok(Ok(None)) => tracing::debug!(archive = %path.display(), "archive imported before"),
            Ok(Err(e)) => tracing::error!(archive = %path.display(), error = %e, "image import failed"),
            Err(e) => tracing::error!(archive = %path.display(), error = %e, "image import task failed"),
        }
    }
    imported
}

/// Regular files in `dir` that could be archives (hidden files are someone's work in progress).
fn list(dir: &Path) -> std::io::Result<Vec<(PathBuf, Stamp)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        // Follow symlinks: an archive may be linked in from elsewhere.
        let Ok(meta) = std::fs::metadata(entry.path()) else { continue };
        if !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        out.push((entry.path(), (meta.len(), mtime)));
    }
    out.sort();
    Ok(out)
}
