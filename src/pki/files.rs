//! The PKI's files on disk: reading them with errors that name the file, and writing them
//! whole (a temporary file beside the target, flushed, then renamed over it) with their
//! permission bits set explicitly, so neither a crash nor the umask leaves a key half
//! written or readable by others.

use std::fs::{self, OpenOptions, Permissions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::PkiError;

/// Private keys: the owner only.
pub(crate) const KEY_MODE: u32 = 0o600;
/// Certificates and public keys are not secret.
pub(crate) const PUBLIC_MODE: u32 = 0o644;
/// The PKI directory: the owner only.
pub(crate) const DIR_MODE: u32 = 0o700;

/// The file's bytes, or `None` when it does not exist. Any other failure (a directory in
/// its place, no permission, an I/O error) is an error naming the file.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, PkiError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::ReadFile { path: path.to_path_buf(), source }),
    }
}

/// Replaces `path` with `bytes`, with permission bits `mode`, atomically: readers see the
/// old file or the new one, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let fail = |source| PkiError::WriteFile { path: path.to_path_buf(), source };
    let tmp = temp_path(path);
    // A stale temporary file from a crash would keep its old mode through `create`.
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e)),
    }
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        // The umask may have taken bits away that the caller asked for (a 0644 kubeconfig).
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// Flushes the directory entry of `path` so a rename survives a crash.
pub(crate) fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => fs::File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

/// Takes away permission bits beyond `mode` from an existing file or directory, logging
/// that it did: a key readable by others is a leak to close, not a reason to stop.
pub(crate) fn restrict_mode(path: &Path, mode: u32) -> Result<(), PkiError> {
    let meta = fs::metadata(path).map_err(|source| PkiError::ReadFile { path: path.to_path_buf(), source })?;
    let current = meta.permissions().mode() & 0o7777;
    if current & !mode != 0 {
        tracing::warn!(path = %path.display(), "permissions were {current:04o}; setting {mode:04o}");
        fs::set_permissions(path, Permissions::from_mode(mode))
            .map_err(|source| PkiError::WriteFile { path: path.to_path_buf(), source })?;
    }
    Ok(())
}

/// Creates `dir` and its missing parents; `dir` itself gets `mode`.
pub(crate) fn create_dir(dir: &Path, mode: u32) -> Result<(), PkiError> {
    let fail = |source| PkiError::CreateDir { path: dir.to_path_buf(), source };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(fail)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(fail(e)),
    }
    fs::set_permissions(dir, Permissions::from_mode(mode)).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn atomic_writes_set_the_mode_whatever_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.key");
        write_atomic(&path, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode_of(&path), 0o600);
        // A leftover temporary file with loose permissions does not leak them.
        let tmp = temp_path(&path);
        fs::write(&tmp, b"junk").unwrap();
        fs::set_permissions(&tmp, Permissions::from_mode(0o666)).unwrap();
        write_atomic(&path, b"two", 0o640).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(mode_of(&path), 0o640);
        assert!(!tmp.exists());
    }

    #[test]
    fn reading_tells_missing_from_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_optional(&dir.path().join("none")).unwrap().is_none());
        let e = read_optional(dir.path()).unwrap_err();
        assert!(matches!(&e, PkiError::ReadFile { path, .. } if path == dir.path()), "{e}");
    }

    #[test]
    fn restrict_mode_only_takes_bits_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(&path, b"k").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        restrict_mode(&path, 0o600).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        fs::set_permissions(&path, Permissions::from_mode(0o400)).unwrap();
        restrict_mode(&path, 0o600).unwrap();
        assert_eq!(mode_of(&path), 0o400);
    }

    #[test]
    fn create_dir_sets_the_mode_of_an_existing_dir() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("server/tls");
        create_dir(&tls, 0o700).unwrap();
        assert_eq!(mode_of(&tls), 0o700);
        fs::set_permissions(&tls, Permissions::from_mode(0o755)).unwrap();
        create_dir(&tls, 0o700).unwrap();
        assert_eq!(mode_of(&tls), 0o700);
    }
}
