//! k3rs: a k3s-style Kubernetes distribution in one binary.
//!
//! The module tree is the architecture:
//! - `store`: the datastore (embedded SQLite, or an external etcd), which only the apiserver
//!   reads and writes; `etcdapi` serves the etcd v3 gRPC API over the same `Store`.
//! - `apiserver`: the Kubernetes API (handlers, registry, admission, watch cache, tables,
//!   protobuf, streaming); `pki`: the certificates, keys and tokens made on first boot.
//! - `client`: the in-process client through which every other component calls the API
//!   server's full handler stack (authentication, authorization, admission, validation).
//! - `controllers` and `scheduler`: the control loops that run beside the API server.
//! - `kubelet`: the node (pod sandboxes, containers on youki's libcontainer, volumes, logs);
//!   `images`: the node's image store, air-gap import and registry pulls.
//! - `server`: wires the components of `k3rs server` together; `cli`: the command line.
//! - `domain`: the I/O-free Kubernetes rules (quantities, names, quoting, durations, times,
//!   pod helpers) that the apiserver, scheduler and kubelet share.
//! - `util`: small helpers with no Kubernetes meaning (CIDRs, the lock file, mount table).
pub mod apiserver;
pub mod cli;
pub mod client;
pub mod controllers;
pub mod dns;
pub mod domain;
pub mod etcdapi;
pub mod etcdproto;
pub mod images;
pub mod ingress;
pub mod kubelet;
pub mod netpol;
pub mod pki;
pub mod proxy;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod util;
