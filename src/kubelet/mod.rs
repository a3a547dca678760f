//! The node agent: registers the node, runs the pods bound to it as containers through
//! youki's `libcontainer`, and reports their status.
//!
//! `spec` turns a pod's container into an OCI runtime spec (a pure function); `runtime`
//! creates and supervises containers, each held by a shim (`k3rs shim create`, which then
//! becomes the 16 KiB monitor program k3rs carries) so containers outlive k3rs; `network`
//! makes each pod's sandbox (network, IPC and UTS namespaces held by a `k3rs-holder`
//! process, the pod's pause container) with an address on the node's bridge; `logs` reads
//! the CRI-format log files the shims write.

pub mod backend;
pub mod backoff;
#[cfg(test)]
mod fake;
pub mod logs;
pub mod manager;
pub mod network;
pub mod node;
pub mod node_backend;
pub mod policy;
pub mod prober;
pub mod runtime;
pub mod spec;
pub mod static_pods;
pub mod status;
pub mod tokens;
pub mod volumes;
pub mod worker;
#[cfg(test)]
mod worker_tests;

/// An error of kube's client as the API server's own [`ApiError`] (its reason, code and
/// message), for the kubelet's callers that match on it; a failure to reach the API at all
/// is an internal error.
pub(crate) fn api_error(e: kube::Error) -> crate::apiserver::status::ApiError {
    use crate::apiserver::status::{ApiError, Reason};
    match e {
        kube::Error::Api(s) => ApiError::with_code(Reason::from_wire(&s.reason), s.code, s.message),
        other => ApiError::internal(other.to_string()),
    }
}
