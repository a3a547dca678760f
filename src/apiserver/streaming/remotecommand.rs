//! (in progress)
use std::sync::Arc;

use axum::http::request::Parts;
use axum::response::Response;

use super::ExitStatus;
use crate::apiserver::request::ResourceRequest;
use crate::apiserver::status::ApiError;
use crate::apiserver::ApiServer;

pub const EXEC_WEBSOCKET_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];
pub const SPDY_STREAM_PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
}

pub fn exit_status_json(_status: &ExitStatus) -> Vec<u8> {
    Vec::new()
}

pub(super) async fn serve(_api: &Arc<ApiServer>, _r: &ResourceRequest, _parts: Parts, _query: Option<&str>, _kind: Kind) -> Result<Response, ApiError> {
    Err(ApiError::new(501, "NotImplemented", "not yet"))
}
