//! Imports image archives: OCI image layouts (`oci-layout`, `index.json`, `blobs/`) and
//! `docker save` archives (`manifest.json` with `RepoTags`), as plain tar or gzip.
//!
//! One streaming pass copies every file of the archive into the blob store (files under
//! `blobs/sha256/` are verified against their names), then the index or manifest is read
//! from there. An archive is recorded by its sha256 under `imported/`, so the same content
//! is imported once whatever the file is called, and a changed file is imported again.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use oci_spec::image::{Descriptor, Digest, ImageIndex};

use super::digest::{hex_part, HashingReader};
use super::manifest::{self, Document};
use super::store::{write_atomic, ImageStore, StoreLock};
use super::{Image, ImageError, ImageRef};

const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What `imported/<archive digest>` records.
#[derive(serde::Serialize, serde::Deserialize)]
struct ImportRecord {
    source: PathBuf,
    images: Vec<String>,
    names: Vec<String>,
}

/// What identifies a file's version without reading it.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        })
    }
}

/// What `imported-files/<sha256 of the path>` records: the file's stamp when its content
/// (`digest`) was imported or found imported.
#[derive(serde::Serialize, serde::Deserialize)]
struct KnownFile {
    source: PathBuf,
    stamp: FileStamp,
    digest: String,
}

/// The files of an archive once in the blob store: path → digest, and symlinks.
struct Contents {
    files: BTreeMap<String, String>,
    links: BTreeMap<String, String>,
}

impl Contents {
    fn digest(&self, path: &str) -> Option<&String> {
        let mut path = normalise(path)?;
        // `docker save` links duplicate layers to the first copy.
        for _ in 0..16 {
            if let Some(d) = self.files.get(&path) {
                return Some(d);
            }
            let target = self.links.get(&path)?;
            path = target.clone();
        }
        None
    }
}

impl ImageStore {
    /// The sha256 of an archive file.
    pub fn archive_digest(path: &Path) -> Result<String, ImageError> {
        let file = File::open(path).map_err(ImageError::io("open", path))?;
        let (digest, _) = HashingReader::new(file).finish().map_err(ImageError::io("read", path))?;
        Ok(digest)
    }

    /// Whether an archive with this content was imported before.
    pub fn was_imported(&self, archive_digest: &str) -> bool {
        self.imported_dir().join(hex_part(archive_digest)).is_file()
    }

    /// Whether the file at `path` is, by its metadata (device, inode, size, change and
    /// modification times), the very file whose content was imported from there before:
    /// then it need not even be read again, which keeps a warm boot with large archives in
    /// the air-gap directory cheap.
    pub fn unchanged_since_import(&self, path: &Path) -> bool {
        let Some(stamp) = FileStamp::of(path) else { return false };
        let Ok(data) = fs::read(self.by_path_record(path)) else { return false };
        let Ok(known) = serde_json::from_slice::<KnownFile>(&data) else { return false };
        known.stamp == stamp && self.was_imported(&known.digest)
    }

    /// Records that the file at `path`, as it is now, has the content `archive_digest`.
    pub fn remember_file(&self, path: &Path, archive_digest: &str) {
        let Some(stamp) = FileStamp::of(path) else { return };
        let known = KnownFile { source: path.to_path_buf(), stamp, digest: archive_digest.to_string() };
        if let Ok(data) = serde_json::to_vec(&known) {
            let dir = self.imported_files_dir();
            let written = fs::create_dir_all(&dir)
                .map_err(ImageError::io("create directory", &dir))
                .and_then(|()| write_atomic(&self.by_path_record(path), &data, &self.tmp_path("by-path")));
            if let Err(e) = written {
                tracing::debug!(archive = %path.display(), error = %e, "cannot record the archive file");
            }
        }
    }

    fn by_path_record(&self, path: &Path) -> PathBuf {
        let key = super::digest::sha256(path.as_os_str().as_encoded_bytes());
        self.imported_files_dir().join(hex_part(&key))
    }

    fn imported_files_dir(&self) -> PathBuf {
        self.imported_dir().with_file_name("imported-files")
    }

    /// Imports every image of an OCI image-layout or `docker save` archive (tar, tar.gz) and
    /// returns them. An archive with the same content imported before, whose images are all
    /// still here under their names, is not imported again.
    pub fn import_archive(&self, path: &Path) -> Result<Vec<Image>, ImageError> {
        let archive_digest = Self::archive_digest(path)?;
        self.import_digested_archive(path, &archive_digest)
    }

    /// [`import_archive`](Self::import_archive) of an archive whose digest is known.
    pub fn import_digested_archive(&self, path: &Path, archive_digest: &str) -> Result<Vec<Image>, ImageError> {
        let started = std::time::Instant::now();
        let lock = self.lock()?;
        if let Some(images) = self.previous_import(archive_digest)? {
            tracing::debug!(archive = %path.display(), "archive imported before; skipped");
            self.remember_file(path, archive_digest);
            return Ok(images);
        }
        let invalid = |reason: String| ImageError::InvalidArchive { path: path.to_path_buf(), reason };
        let contents = self.copy_into_blobs(path)?;
        let mut index = self.load_index()?;
        let found = if let Some(m) = contents.digest("manifest.json") {
            self.docker_images(&contents, m, &lock).map_err(|e| wrap(e, &invalid))?
        } else if let Some(i) = contents.digest("index.json") {
            self.oci_images(i, &lock).map_err(|e| wrap(e, &invalid))?
        } else {
            return Err(invalid("neither manifest.json (docker save) nor index.json (OCI image layout) found".into()));
        };
        if found.is_empty() {
            return Err(invalid("no named image in the archive".into()));
        }
        for image in &found {
            self.add_image(&mut index, image.clone());
        }
        self.gc(&mut index, &lock)?;
        self.save_index(&index, &lock)?;
        let own_names: Vec<String> = found.iter().flat_map(|i| i.names.clone()).collect();
        // Report the images as stored: an image already present has gained names.
        let found: Vec<Image> =
            found.into_iter().map(|f| index.images.iter().find(|i| i.id == f.id).cloned().unwrap_or(f)).collect();
        let record = ImportRecord {
            source: path.to_path_buf(),
            images: found.iter().map(|i| i.id.clone()).collect(),
            names: own_names,
        };
        let data = serde_json::to_vec(&record).map_err(|e| invalid(e.to_string()))?;
        write_atomic(&self.imported_dir().join(hex_part(archive_digest)), &data, &self.tmp_path("imported"))?;
        self.remember_file(path, archive_digest);
        for image in &found {
            tracing::info!(
                archive = %path.display(),
                image = image.names.first().map(String::as_str).unwrap_or(""),
                id = %image.id,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "image imported"
            );
        }
        Ok(found)
    }

    /// The images of an archive imported before, if all are still present under the names
    /// it gave them.
    fn previous_import(&self, archive_digest: &str) -> Result<Option<Vec<Image>>, ImageError> {
        let path = self.imported_dir().join(hex_part(archive_digest));
        let Ok(data) = fs::read(&path) else { return Ok(None) };
        let Ok(record) = serde_json::from_slice::<ImportRecord>(&data) else { return Ok(None) };
        let index = self.load_index()?;
        let mut out = Vec::new();
        for id in &record.images {
            match index.images.iter().find(|i| &i.id == id) {
                Some(img) => out.push(img.clone()),
                None => return Ok(None),
            }
        }
        let all_named = record.names.iter().all(|n| out.iter().any(|i| i.names.contains(n)));
        Ok(if all_named { Some(out) } else { None })
    }

    fn copy_into_blobs(&self, path: &Path) -> Result<Contents, ImageError> {
        let invalid = |reason: String| ImageError::InvalidArchive { path: path.to_path_buf(), reason };
        let file = File::open(path).map_err(ImageError::io("open", path))?;
        let mut buffered = BufReader::with_capacity(256 * 1024, file);
        let head = buffered.fill_buf().map_err(ImageError::io("read", path))?;
        let stream: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
            Box::new(flate2::read::MultiGzDecoder::new(buffered))
        } else {
            Box::new(buffered)
        };
        let mut archive = tar::Archive::new(stream);
        let mut contents = Contents { files: BTreeMap::new(), links: BTreeMap::new() };
        let entries = archive.entries().map_err(|e| invalid(format!("read tar: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| invalid(format!("read tar: {e}")))?;
            let raw = entry.path().map_err(|e| invalid(format!("tar entry path: {e}")))?.to_string_lossy().into_owned();
            let Some(name) = normalise(&raw) else { continue };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let expected = name.strip_prefix("blobs/sha256/").map(|hex| format!("sha256:{hex}"));
                    let (digest, _) = self.put_blob(entry, expected.as_deref()).map_err(|e| match e {
                        ImageError::DigestMismatch { expected, actual, .. } => {
                            invalid(format!("{name}: content has digest {actual}, expected {expected}"))
                        }
                        other => other,
                    })?;
                    contents.files.insert(name, digest);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let Ok(Some(target)) = entry.link_name() else { continue };
                    let target = target.to_string_lossy().into_owned();
                    // Symlinks are relative to their directory; hard links to the archive root.
                    let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                        let dir =
                            Path::new(&name).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                        format!("{dir}/{target}")
                    } else {
                        target
                    };
                    if let Some(t) = normalise(&resolved) {
                        contents.links.insert(name, t);
                    }
                }
                _ => {}
            }
        }
        Ok(contents)
    }

    fn oci_images(&self, index_digest: &str, lock: &StoreLock) -> Result<Vec<Image>, ImageError> {
        let bad = |reason: String| ImageError::InvalidImage { image: "index.json".into(), reason };
        let index: ImageIndex =
            serde_json::from_slice(&self.read_blob(index_digest)?).map_err(|e| bad(format!("invalid index: {e}")))?;
        let mut out = Vec::new();
        for desc in index.manifests() {
            let names = descriptor_names(desc);
            if names.is_empty() {
                tracing::warn!(digest = %desc.digest(), "image in archive has no name annotation; skipped");
                continue;
            }
            out.push(self.import_descriptor(desc, names, lock)?);
        }
        Ok(out)
    }

    /// Imports the image a top-level descriptor names: a manifest, or an index from which
    /// this platform's manifest is taken.
    fn import_descriptor(&self, desc: &Descriptor, names: Vec<String>, lock: &StoreLock) -> Result<Image, ImageError> {
        let top = desc.digest().to_string();
        let label = names.first().cloned().unwrap_or_else(|| top.clone());
        let bad = |reason: String| ImageError::InvalidImage { image: label.clone(), reason };
        let no_platform = || bad(format!("no manifest for linux/{} in the image index", manifest::host_arch()));
        let (manifest_digest, doc, extra) = match Document::parse(&self.read_blob(&top)?).map_err(bad)? {
            Document::Index(index) => {
                let chosen = manifest::pick_platform(index.manifests()).ok_or_else(no_platform)?.digest().to_string();
                let doc = manifest::parse_manifest(&self.read_blob(&chosen)?).map_err(bad)?;
                (chosen, doc, vec![top.clone()])
            }
            // The descriptor promised an index: a manifest lists no platform to pick.
            Document::Manifest(_) if manifest::is_index_type(desc.media_type()) => return Err(no_platform()),
            Document::Manifest(doc) => (top.clone(), *doc, Vec::new()),
        };
        // The repo digest names what a registry would serve for the name: the top-level
        // descriptor (the index when there is one).
        let repo_digests = repo_digests(&names, &top);
        self.assemble(&label, &manifest_digest, &doc, names, repo_digests, extra, lock)
    }

    fn docker_images(
        &self,
        contents: &Contents,
        manifest_digest: &str,
        lock: &StoreLock,
    ) -> Result<Vec<Image>, ImageError> {
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(rename = "Config")]
            config: String,
            #[serde(rename = "RepoTags", default)]
            repo_tags: Option<Vec<String>>,
            #[serde(rename = "Layers", default)]
            layers: Vec<String>,
        }
        let bad = |reason: String| ImageError::InvalidImage { image: "manifest.json".into(), reason };
        let entries: Vec<Entry> =
            serde_json::from_slice(&self.read_blob(manifest_digest)?).map_err(|e| bad(e.to_string()))?;
        let mut out = Vec::new();
        for entry in entries {
            let mut names = Vec::new();
            for tag in entry.repo_tags.unwrap_or_default() {
                names.push(ImageRef::parse(&tag)?.to_string());
            }
            if names.is_empty() {
                tracing::warn!(config = %entry.config, "image in archive has no RepoTags; skipped");
                continue;
            }
            let blob = |media_type: &str, p: &str| -> Result<Descriptor, ImageError> {
                let digest = contents.digest(p).ok_or_else(|| bad(format!("{p} is not in the archive")))?;
                let path = self.blob_path(digest);
                let size = fs::metadata(&path).map_err(ImageError::io("stat", &path))?.len();
                let digest = Digest::try_from(digest.as_str()).map_err(|e| bad(format!("{p}: {e}")))?;
                Ok(Descriptor::new(manifest::docker(media_type), size, digest))
            };
            let config = blob(manifest::DOCKER_CONFIG, &entry.config)?;
            let mut layers = Vec::new();
            for l in &entry.layers {
                layers.push(blob(manifest::DOCKER_LAYER, l)?);
            }
            // The archive has no registry manifest: write the one a registry would serve.
            let synthetic = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": manifest::DOCKER_MANIFEST,
                "config": config,
                "layers": layers,
            });
            let data = serde_json::to_vec(&synthetic).map_err(|e| bad(e.to_string()))?;
            let digest = self.put_blob_bytes(&data)?;
            let doc = manifest::parse_manifest(&data).map_err(bad)?;
            let label = names[0].clone();
            let repo_digests = repo_digests(&names, &digest);
            out.push(self.assemble(&label, &digest, &doc, names, repo_digests, Vec::new(), lock)?);
        }
        Ok(out)
    }
}

fn wrap(e: ImageError, invalid: &impl Fn(String) -> ImageError) -> ImageError {
    match e {
        ImageError::InvalidImage { image, reason } => invalid(format!("{image}: {reason}")),
        other => other,
    }
}

/// `<name>@<digest>` for each distinct repository among `names`.
pub(crate) fn repo_digests(names: &[String], digest: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in names {
        if let Ok(r) = ImageRef::parse(n) {
            let d = format!("{}@{digest}", r.name());
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

/// The normalised names an OCI index entry carries. `io.containerd.image.name` is a full
/// reference; `org.opencontainers.image.ref.name` is taken when it is one too (a bare tag
/// names no repository).
fn descriptor_names(desc: &Descriptor) -> Vec<String> {
    let mut names = Vec::new();
    let annotation = |key: &str| desc.annotations().as_ref().and_then(|a| a.get(key));
    if let Some(n) = annotation(CONTAINERD_NAME) {
        match ImageRef::parse(n) {
            Ok(r) => names.push(r.to_string()),
            Err(e) => tracing::warn!(error = %e, "ignoring image name annotation"),
        }
    }
    if let Some(n) = annotation(OCI_REF_NAME) {
        if n.contains(['/', ':', '@']) {
            if let Ok(r) = ImageRef::parse(n) {
                let s = r.to_string();
                if !names.contains(&s) {
                    names.push(s);
                }
            }
        }
    }
    names
}

/// An archive path without `./`, or `None` for the root; `..` is resolved inside the archive.
fn normalise(path: &str) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}
