//! The Kubernetes API server: HTTPS, authentication, authorization, discovery, and one
//! generic registry serving every built-in resource over the [`Store`](crate::store::Store).

pub mod discovery;
pub mod patch;
pub mod selector;
