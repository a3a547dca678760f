//! OpenAPI: the `/openapi/v2` and `/openapi/v3` documents kubectl downloads to explain
//! types, to compute client-side apply patches (the `x-kubernetes-patch-*` extensions) and to
//! learn that the server validates fields itself (the `fieldValidation` parameter of each
//! kind's PATCH operation), and the strict field validation (`fieldValidation=Strict|Warn`)
//! the same schemas drive.
//!
//! Pure functions over embedded data, no I/O. The schemas are k8s-openapi's (generated into
//! `definitions.json.deflate` by `scripts/openapi-gen.sh`, with upstream's descriptions);
//! [`extensions`] adds the `x-kubernetes-*` facts they lack. Documents are rendered on first
//! request and kept. The router mounts [`respond`], which speaks upstream's HTTP semantics
//! (content negotiation, ETags, hashed immutable v3 URLs); [`v2_document`], [`v3_index`]
//! and [`v3_document`] give the bodies alone. Request handlers call [`strict_errors`] on the
//! raw JSON body to report unknown and duplicate fields as upstream does.
//!
//! Known differences from upstream's documents: fields carry no `enum` lists (so `kubectl
//! explain` prints no `enum:` lines and no "Possible enum values") and no `default` values,
//! as k8s-openapi's schemas have neither; the v3 documents exist in JSON only; the
//! `api`, `apis`, `apis/<group>` and `version` documents of upstream's v3 index are not
//! served; streaming and proxy subresources are not described.

mod documents;
pub mod extensions;
mod paths;
pub mod proto;
mod schemas;
mod serve;
mod strict;

use bytes::Bytes;

pub use documents::hash;
pub use paths::SERVER_SIDE_APPLY;
pub use serve::respond;
pub use strict::{
    duplicate_fields, join as join_strict_errors, strict_errors, unknown_fields, StrictError, StrictErrorKind,
};

/// Why a document could not be produced: a defect of the embedded data or of the renderer,
/// never of the request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OpenApiError {
    /// The embedded definitions could not be inflated or parsed.
    #[error("loading the OpenAPI definitions failed: {0}")]
    LoadFailed(String),
    /// A document could not be serialized.
    #[error("encoding an OpenAPI document failed: {0}")]
    EncodeFailed(String),
    /// A thread panicked while holding the document cache.
    #[error("the OpenAPI document cache is poisoned")]
    Poisoned,
}

/// Logs a rendering failure: it is a defect of the embedded data or of the renderer (the
/// unit tests render every document), so the infallible accessors below answer empty.
fn logged<T>(r: Result<T, OpenApiError>, what: &str) -> Option<T> {
    r.map_err(|e| tracing::error!(error = %e, document = what, "OpenAPI document unavailable")).ok()
}

/// The Swagger 2.0 document (JSON) of every served group version: what
/// `GET /openapi/v2` returns with `Accept: application/json`.
pub fn v2_document() -> Bytes {
    logged(documents::CACHE.v2_json().map(|json| json.body.clone()), "v2").unwrap_or_default()
}

/// The same document in gnostic's protobuf encoding, what client-go (kubectl) asks for.
pub fn v2_protobuf() -> Bytes {
    logged(documents::CACHE.v2_protobuf().map(|pb| pb.body.clone()), "v2").unwrap_or_default()
}

/// The `GET /openapi/v3` index:
/// `{"paths": {"api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=<SHA-512>"}, ...}}`.
/// The URLs are server-relative, as upstream's, so no address is needed.
pub fn v3_index() -> Bytes {
    logged(documents::CACHE.v3_index().map(|(index, _)| index.body.clone()), "v3 index").unwrap_or_default()
}

/// The OpenAPI 3.0 document of one group version, `path` as in the index (`api/v1`,
/// `apis/apps/v1`; a leading `/openapi/v3/` is accepted), or `None` when it is not served.
pub fn v3_document(path: &str) -> Option<Bytes> {
    let gv = path.trim_start_matches("/openapi/v3/").trim_start_matches('/');
    logged(documents::CACHE.v3(gv), gv).flatten().map(|r| r.body)
}

/// The group versions with a v3 document, as index keys (`api/v1`, `apis/apps/v1`, ...).
pub fn v3_group_versions() -> Vec<String> {
    documents::v3_group_versions()
}
