//! The errors of the image store. Pull failures come in three kinds a kubelet treats
//! differently (not found, unauthorized, network) plus the rest, each worded like
//! containerd's `failed to pull and unpack image "<ref>": ...`.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot lock the image store {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt image store record {path}: {reason}")]
    CorruptRecord { path: PathBuf, reason: String },
    #[error("content {what} has digest {actual}, expected {expected}")]
    DigestMismatch { what: String, expected: String, actual: String },
    #[error("cannot import {path}: {reason}")]
    InvalidArchive { path: PathBuf, reason: String },
    #[error("invalid image {image}: {reason}")]
    InvalidImage { image: String, reason: String },
    #[error("cannot unpack layer {layer}: {reason}")]
    UnpackLayer { layer: String, reason: String },
    #[error("image {image} is in use by container {container}")]
    InUse { image: String, container: String },
    #[error("failed to pull and unpack image \"{reference}\": {detail}")]
    PullNotFound { reference: String, detail: String },
    #[error("failed to pull and unpack image \"{reference}\": {detail}")]
    PullUnauthorized { reference: String, detail: String },
    #[error("failed to pull and unpack image \"{reference}\": {detail}")]
    PullNetwork { reference: String, detail: String },
    #[error("failed to pull and unpack image \"{reference}\": {detail}")]
    PullFailed { reference: String, detail: String },
    #[error("invalid registries config {path}: {reason}")]
    RegistriesConfig { path: PathBuf, reason: String },
    #[error("cannot mount the root filesystem of container {key} at {target}: {reason}")]
    Mount { key: String, target: PathBuf, reason: String },
    #[error("cannot unmount the root filesystem of container {key} at {target}: {source}")]
    Unmount {
        key: String,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("invalid container key {0:?}: use letters, digits, '-', '_' and '.'")]
    InvalidKey(String),
}

impl ImageError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { action, path, source }
    }
}
