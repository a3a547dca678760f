//! The on-disk store: content-addressed blobs, unpacked layers, the image index and the
//! garbage collection that ties them together.
//!
//! Two processes use a store at once (the server and `k3rs images ...`), so every change to
//! the index, and everything that must not race with garbage collection, happens under an
//! exclusive `flock` on `<root>/lock`. Reads take no lock: every file is replaced by rename,
//! so a reader sees the old or the new version, never half of one. Blobs and layers are
//! written to `tmp/` first and renamed into place, so a crash never leaves something
//! half-written under a name that looks complete.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::digest::{hex_part, HashingReader};
use super::reference::validate_digest;
use super::{unpack, Image, ImageError, ImageRef};

/// Leftovers in `tmp/` older than this belong to a process that died.
const STALE_TMP: Duration = Duration::from_secs(3600);

/// The node's image store.
pub struct ImageStore {
    pub(crate) root: PathBuf,
    /// Set once the containers directory is known to be a private mount point.
    pub(crate) private_containers: std::sync::OnceLock<()>,
}

/// An exclusive lock on the store, released on drop.
pub(crate) struct StoreLock {
    _file: File,
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Index {
    pub images: Vec<Image>,
}

impl ImageStore {
    /// Opens (creating as needed) the store rooted at `root`, normally
    /// `DataDir::image_store()`.
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        let store = ImageStore { root: root.to_path_buf(), private_containers: std::sync::OnceLock::new() };
        for dir in [
            store.blobs_dir(),
            store.layers_dir(),
            store.index_dir(),
            store.imported_dir(),
            store.tmp_dir(),
            store.containers_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(ImageError::io("create directory", &dir))?;
        }
        store.clean_stale_tmp();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }
    pub(crate) fn blob_path(&self, digest: &str) -> PathBuf {
        self.blobs_dir().join(hex_part(digest))
    }
    pub(crate) fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }
    /// The unpacked layer named by its chain ID.
    pub fn layer_path(&self, chain_id: &str) -> PathBuf {
        self.layers_dir().join(hex_part(chain_id))
    }
    fn index_dir(&self) -> PathBuf {
        self.root.join("images")
    }
    fn index_path(&self) -> PathBuf {
        self.index_dir().join("index.json")
    }
    pub(crate) fn imported_dir(&self) -> PathBuf {
        self.root.join("imported")
    }
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }
    pub(crate) fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// Takes the store's write lock, waiting for another holder.
    pub(crate) fn lock(&self) -> Result<StoreLock, ImageError> {
        let path = self.root.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| ImageError::Lock { path: path.clone(), source })?;
        loop {
            // SAFETY: flock on a descriptor we own; no memory effects.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(StoreLock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(ImageError::Lock { path, source: err });
            }
        }
    }

    /// A fresh path under `tmp/`, unique across processes.
    pub(crate) fn tmp_path(&self, what: &str) -> PathBuf {
        self.tmp_dir().join(format!("{what}-{}-{:016x}", std::process::id(), fastrand::u64(..)))
    }

    fn clean_stale_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else { return };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > STALE_TMP);
            if old {
                let path = entry.path();
                let _ = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            }
        }
    }

    // ---- blobs ----

    pub(crate) fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Copies `content` into the blob store, verifying it against `expected` when given.
    /// Returns its digest and size.
    pub(crate) fn put_blob(&self, content: impl Read, expected: Option<&str>) -> Result<(String, u64), ImageError> {
        if let Some(d) = expected {
            validate_digest(d).map_err(|reason| ImageError::InvalidImage { image: d.to_string(), reason })?;
        }
        let tmp = self.tmp_path("blob");
        let result = (|| {
            let mut file = File::create(&tmp).map_err(ImageError::io("create", &tmp))?;
            let mut reader = HashingReader::new(content);
            std::io::copy(&mut reader, &mut file).map_err(ImageError::io("write", &tmp))?;
            let (digest, size) = reader.finish().map_err(ImageError::io("write", &tmp))?;
            if let Some(expected) = expected {
                if expected != digest {
                    return Err(ImageError::DigestMismatch {
                        what: expected.to_string(),
                        expected: expected.to_string(),
                        actual: digest,
                    });
                }
            }
            file.sync_all().map_err(ImageError::io("sync", &tmp))?;
            let dest = self.blob_path(&digest);
            fs::rename(&tmp, &dest).map_err(ImageError::io("store blob", &dest))?;
            Ok((digest, size))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    pub(crate) fn put_blob_bytes(&self, content: &[u8]) -> Result<String, ImageError> {
        Ok(self.put_blob(content, None)?.0)
    }

    pub(crate) fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(ImageError::io("read blob", &path))
    }

    // ---- layers ----

    /// Unpacks the layer blob `blob` as `chain_id` unless already there; checks that its
    /// uncompressed content is `diff_id`.
    pub(crate) fn ensure_layer(&self, chain_id: &str, diff_id: &str, blob: &str) -> Result<(), ImageError> {
        let dest = self.layer_path(chain_id);
        if dest.is_dir() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let tmp = self.tmp_path("layer");
        let fail = |reason: String| ImageError::UnpackLayer { layer: blob.to_string(), reason };
        let result = (|| {
            fs::create_dir(&tmp).map_err(ImageError::io("create directory", &tmp))?;
            let path = self.blob_path(blob);
            let file = File::open(&path).map_err(ImageError::io("open blob", &path))?;
            let actual = unpack::unpack_layer(file, &tmp).map_err(fail)?;
            if actual != diff_id {
                return Err(ImageError::DigestMismatch {
                    what: format!("uncompressed layer {blob}"),
                    expected: diff_id.to_string(),
                    actual,
                });
            }
            match fs::rename(&tmp, &dest) {
                Ok(()) => Ok(()),
                // Another process unpacked the same layer meanwhile: theirs is as good.
                Err(_) if dest.is_dir() => {
                    let _ = fs::remove_dir_all(&tmp);
                    Ok(())
                }
                Err(e) => Err(ImageError::io("store layer", &dest)(e)),
            }
        })();
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        } else {
            tracing::debug!(
                layer = blob,
                chain_id,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "layer unpacked"
            );
        }
        result
    }

    // ---- the index ----

    pub(crate) fn load_index(&self) -> Result<Index, ImageError> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(data) => {
                serde_json::from_slice(&data).map_err(|e| ImageError::CorruptRecord { path, reason: e.to_string() })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(ImageError::io("read", &path)(e)),
        }
    }

    pub(crate) fn save_index(&self, index: &Index, _lock: &StoreLock) -> Result<(), ImageError> {
        let data = serde_json::to_vec_pretty(index)
            .map_err(|e| ImageError::CorruptRecord { path: self.index_path(), reason: e.to_string() })?;
        write_atomic(&self.index_path(), &data, &self.tmp_path("index"))
    }

    /// Adds `image` under its names: a name held by another image moves to this one; an image
    /// with the same ID gains the names.
    pub(crate) fn add_image(&self, index: &mut Index, image: Image) {
        for other in index.images.iter_mut().filter(|i| i.id != image.id) {
            other.names.retain(|n| !image.names.contains(n));
            other.repo_digests.retain(|d| !image.repo_digests.contains(d));
        }
        match index.images.iter_mut().find(|i| i.id == image.id) {
            Some(existing) => {
                for n in image.names {
                    if !existing.names.contains(&n) {
                        existing.names.push(n);
                    }
                }
                for d in image.repo_digests {
                    if !existing.repo_digests.contains(&d) {
                        existing.repo_digests.push(d);
                    }
                }
            }
            None => index.images.push(image),
        }
    }

    // ---- queries ----

    /// Every image, by name.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let mut images = self.load_index()?.images;
        images.sort_by(|a, b| a.names.first().cmp(&b.names.first()).then(a.id.cmp(&b.id)));
        Ok(images)
    }

    /// Finds an image by normalised name, ID (`sha256:<hex>` or the bare hex), a unique
    /// prefix of at least 3 digits of its ID, or a repo digest.
    pub fn resolve(&self, reference: &str) -> Result<Option<Image>, ImageError> {
        Ok(find(&self.load_index()?.images, reference).cloned())
    }

    /// Removes `reference`. By name, only that name goes (the image stays while it has
    /// others); by ID or digest, the whole image. Blobs and layers no image uses any more are
    /// deleted. An image a container's root filesystem uses is not removed.
    pub fn remove(&self, reference: &str) -> Result<Image, ImageError> {
        let lock = self.lock()?;
        let mut index = self.load_index()?;
        let image =
            find(&index.images, reference).cloned().ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        let by_name = ImageRef::parse(reference).ok().map(|r| r.to_string()).filter(|n| image.names.contains(n));
        let goes_away = match &by_name {
            Some(_) => image.names.len() <= 1,
            None => true,
        };
        if goes_away {
            if let Some(container) = self.users(&image.id)?.into_iter().next() {
                return Err(ImageError::InUse {
                    image: image.names.first().cloned().unwrap_or_else(|| image.id.clone()),
                    container,
                });
            }
        }
        let entry = index
            .images
            .iter_mut()
            .find(|i| i.id == image.id)
            .ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        match &by_name {
            Some(name) if !goes_away => {
                entry.names.retain(|n| n != name);
                let repo = name_without_tag(name);
                if !entry.names.iter().any(|n| name_without_tag(n) == repo) {
                    entry.repo_digests.retain(|d| d.split('@').next() != Some(repo.as_str()));
                }
            }
            _ => {
                entry.names.clear();
                entry.repo_digests.clear();
            }
        }
        self.gc(&mut index, &lock)?;
        self.save_index(&index, &lock)?;
        tracing::info!(image = reference, id = %image.id, "image removed");
        Ok(image)
    }

    /// Keys of the containers whose root filesystem uses image `id`.
    pub(crate) fn users(&self, id: &str) -> Result<Vec<String>, ImageError> {
        let dir = self.containers_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ImageError::io("read directory", &dir)(e)),
        };
        let mut keys = Vec::new();
        for entry in entries.flatten() {
            if let Ok(used) = fs::read_to_string(entry.path().join("image")) {
                if used.trim() == id {
                    keys.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Drops images without names that no container uses, then every blob and layer no
    /// remaining image refers to. Runs under the lock.
    pub(crate) fn gc(&self, index: &mut Index, _lock: &StoreLock) -> Result<(), ImageError> {
        let mut used_ids = BTreeSet::new();
        for img in &index.images {
            if img.names.is_empty() && !self.users(&img.id)?.is_empty() {
                used_ids.insert(img.id.clone());
            }
        }
        index.images.retain(|i| !i.names.is_empty() || used_ids.contains(&i.id));
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for img in &index.images {
            blobs.insert(hex_part(&img.id).to_string());
            blobs.insert(hex_part(&img.manifest_digest).to_string());
            blobs.extend(img.layer_digests.iter().map(|d| hex_part(d).to_string()));
            blobs.extend(img.extra_blobs.iter().map(|d| hex_part(d).to_string()));
            layers.extend(img.layers.iter().map(|d| hex_part(d).to_string()));
        }
        let mut removed = BTreeMap::from([("blobs", 0u32), ("layers", 0u32)]);
        for (dir, keep, what) in [(self.blobs_dir(), &blobs, "blobs"), (self.layers_dir(), &layers, "layers")] {
            let entries = fs::read_dir(&dir).map_err(ImageError::io("read directory", &dir))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) {
                    continue;
                }
                let path = entry.path();
                let res = if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
                match res {
                    Ok(()) => *removed.entry(what).or_default() += 1,
                    Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot delete unused image content"),
                }
            }
        }
        if removed.values().any(|n| *n > 0) {
            tracing::debug!(blobs = removed["blobs"], layers = removed["layers"], "unused image content deleted");
        }
        Ok(())
    }
}

/// `registry/repo` of a normalised `registry/repo:tag`.
fn name_without_tag(name: &str) -> String {
    ImageRef::parse(name).map(|r| r.name()).unwrap_or_else(|_| name.to_string())
}

pub(crate) fn find<'a>(images: &'a [Image], reference: &str) -> Option<&'a Image> {
    let reference = reference.trim();
    if reference.is_empty() {
        return None;
    }
    let bare = hex_part(reference);
    if let Some(i) = images.iter().find(|i| i.id == reference || hex_part(&i.id) == bare) {
        return Some(i);
    }
    if let Ok(r) = ImageRef::parse(reference) {
        let full = r.to_string();
        if let Some(i) = images.iter().find(|i| i.names.contains(&full) || i.repo_digests.contains(&full)) {
            return Some(i);
        }
        // A digest-pinned reference with a tag matches the repo digest without the tag.
        if let Some(d) = &r.digest {
            let pinned = format!("{}@{d}", r.name());
            if let Some(i) = images.iter().find(|i| i.repo_digests.contains(&pinned)) {
                return Some(i);
            }
        }
    }
    if bare.len() >= 3 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut matching = images.iter().filter(|i| hex_part(&i.id).starts_with(bare));
        if let (Some(one), None) = (matching.next(), matching.next()) {
            return Some(one);
        }
    }
    None
}

/// Writes `path` by writing `tmp` and renaming it over.
pub(crate) fn write_atomic(path: &Path, data: &[u8], tmp: &Path) -> Result<(), ImageError> {
    let result = (|| {
        let mut f = File::create(tmp).map_err(ImageError::io("create", tmp))?;
        f.write_all(data).map_err(ImageError::io("write", tmp))?;
        f.sync_all().map_err(ImageError::io("sync", tmp))?;
        fs::rename(tmp, path).map_err(ImageError::io("replace", path))
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

impl ImageStore {
    /// Builds the record of the image whose manifest (`manifest_digest`, already a blob)
    /// is `manifest`: reads its config, checks the layer blobs are present and unpacks
    /// each layer once. Runs under the lock so garbage collection cannot take the blobs away.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn assemble(
        &self,
        image_name: &str,
        manifest_digest: &str,
        manifest: &oci_spec::image::ImageManifest,
        names: Vec<String>,
        repo_digests: Vec<String>,
        extra_blobs: Vec<String>,
        _lock: &StoreLock,
    ) -> Result<Image, ImageError> {
        let invalid = |reason: String| ImageError::InvalidImage { image: image_name.to_string(), reason };
        let config_digest = manifest.config().digest().to_string();
        let layers = manifest.layers();
        let config = super::manifest::parse_config(&self.read_blob(&config_digest)?).map_err(invalid)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != layers.len() {
            return Err(invalid(format!("config lists {} layers, manifest {}", diff_ids.len(), layers.len())));
        }
        let chain = super::digest::chain_ids(diff_ids);
        for ((layer, diff_id), chain_id) in layers.iter().zip(diff_ids).zip(&chain) {
            validate_digest(diff_id).map_err(|r| invalid(format!("diff ID {diff_id}: {r}")))?;
            let digest = layer.digest().as_ref();
            if !self.has_blob(digest) {
                return Err(invalid(format!("layer {digest} is missing")));
            }
            self.ensure_layer(chain_id, diff_id, digest)?;
        }
        let size = layers.iter().map(|l| l.size()).sum();
        Ok(Image {
            id: config_digest,
            names,
            repo_digests,
            size,
            config: super::manifest::image_config(&config),
            layers: chain,
            manifest_digest: manifest_digest.to_string(),
            layer_digests: layers.iter().map(|l| l.digest().to_string()).collect(),
            extra_blobs,
        })
    }
}
