//! Images on the node: a content-addressed store of blobs, layers unpacked once (whiteouts
//! honoured), imports of OCI image-layout and `docker save` archives (the air-gap directory
//! `<data-dir>/agent/images/` is watched; each file imported once), pulls from OCI
//! registries configured in k3s' `registries.yaml` format, and an overlay root filesystem
//! per container.
//!
//! Layout under the store root (`<data-dir>/agent/image-store/`, see `server::layout`):
//! `blobs/sha256/<hex>` (manifests, configs, compressed layers), `layers/<chain-id>/` (one
//! unpacked layer each), `images/` (name → image records), `imported/` (archive digests
//! already imported), `containers/<key>/{upper,work,rootfs}` (per-container overlays).

use std::path::{Path, PathBuf};

/// A reference normalised the way upstream does: `busybox` → `docker.io/library/busybox:latest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// e.g. `docker.io`, `localhost:5000`.
    pub registry: String,
    /// e.g. `library/busybox`.
    pub repository: String,
    /// Absent when only a digest was given.
    pub tag: Option<String>,
    /// `sha256:<hex>` when pinned.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalises a reference as a pod spec or `k3rs images` names it.
    pub fn parse(s: &str) -> Result<ImageRef, ImageError> {
        let _ = s;
        Err(ImageError::InvalidReference { reference: s.to_string(), reason: "not implemented yet".into() })
    }
}

/// The parts of an image's config a container needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// An image present on the node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Image {
    /// `sha256:<config digest>` (what `imageID` and `crictl images` show).
    pub id: String,
    /// Normalised names (`docker.io/library/busybox:latest`).
    pub names: Vec<String>,
    /// `<registry>/<repository>@sha256:<manifest digest>`.
    pub repo_digests: Vec<String>,
    /// Compressed size of the layers, bytes.
    pub size: u64,
    pub config: ImageConfig,
    /// Chain IDs of the layers, lowest first.
    pub layers: Vec<String>,
}

/// Registry mirrors and credentials, k3s' `/etc/k3rs/registries.yaml`.
#[derive(Clone, Debug, Default)]
pub struct RegistriesConfig {}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {0:?} not found")]
    NotFound(String),
}

/// The node's image store.
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    pub fn open(root: &Path) -> Result<ImageStore, ImageError> {
        Ok(ImageStore { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}
