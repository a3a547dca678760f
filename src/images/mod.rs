//! Images on the node: a content-addressed store of blobs, layers unpacked once (whiteouts
//! honoured), imports of OCI image-layout and `docker save` archives (the air-gap directory
//! `<data-dir>/agent/images/` is watched; each file imported once), pulls from OCI
//! registries configured in k3s' `registries.yaml` format, and an overlay root filesystem
//! per container.
//!
//! Layout under the store root (`<data-dir>/agent/image-store/`, see `server::layout`):
//! `blobs/sha256/<hex>` (manifests, configs, compressed layers), `layers/<chain-id>/` (one
//! unpacked layer each), `images/` (name → image records), `imported/` (archive digests
//! already imported), `imported-files/` (each air-gap file's metadata when its content was
//! imported, so it is not read again), `containers/<key>/{upper,work,rootfs,image}` (per-container overlays), `tmp/` (work in
//! progress, renamed into place when complete), `lock` (held by whoever writes).

mod archive;
pub mod digest;
mod error;
pub(crate) mod http;
pub mod manifest;
mod pull;
mod reference;
mod registries;
mod rootfs;
mod store;
mod unpack;
mod watch;

pub use error::ImageError;
pub use http::SYSTEM_CA_BUNDLE;
pub use pull::{Credential, PullOptions};
pub use reference::{ImageRef, DEFAULT_REGISTRY};
pub use registries::{AuthConfig, Endpoint, Mirror, RegistriesConfig, RegistryConfig, TlsConfig};
pub use rootfs::RootfsMount;
pub use store::ImageStore;
pub use watch::{import_dir_once, watch_import_dir};

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
    /// The manifest of this platform (a blob in the store).
    #[serde(default)]
    pub manifest_digest: String,
    /// The layer blobs as the manifest lists them (compressed or not), lowest first.
    #[serde(default)]
    pub layer_digests: Vec<String>,
    /// Other blobs the image keeps, such as the multi-platform index it was chosen from.
    #[serde(default)]
    pub extra_blobs: Vec<String>,
}
