//! k3rs: a k3s-style Kubernetes distribution in one binary.
//!
//! The module tree is the architecture: `store` is the datastore (the only thing the
//! apiserver will read and write), `etcdapi` serves the etcd v3 gRPC API over a `Store`,
//! `server` wires the components of `k3rs server` together, and `cli` is the command line.
pub mod apiserver;
pub mod cli;
pub mod client;
pub mod controllers;
pub mod etcdapi;
pub mod etcdproto;
pub mod images;
pub mod kubelet;
pub mod pki;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod util;
