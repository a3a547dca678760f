//! Controllers: each in its own folder, registered by name in [`CONTROLLERS`] so the server
//! starts them from the table.
//!
//! A controller gets a [`ControllerContext`]: its API client and the few cluster facts that
//! are not API objects (the server CA a pod must trust).

pub mod namespace;
pub mod rootca;
pub mod serviceaccount;

mod namespaces;

use std::future::Future;
use std::pin::Pin;

use crate::client::Client;

/// What every controller is started with.
#[derive(Clone)]
pub struct ControllerContext {
    /// The in-process client, with the controller manager's identity.
    pub client: Client,
    /// The cluster (server) CA certificate, PEM: what pods trust for the API server.
    pub ca_pem: String,
}

/// How a controller is told to stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A controller's entry point: runs until the shutdown future resolves.
pub type Start = fn(ControllerContext, Shutdown) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every controller, by name.
pub const CONTROLLERS: &[(&str, Start)] = &[
    ("namespace", |c, s| Box::pin(namespace::run(c.client, s))),
    ("serviceaccount", |c, s| Box::pin(serviceaccount::run(c.client, s))),
    ("root-ca-cert-publisher", |c, s| Box::pin(rootca::run(c.client, c.ca_pem, s))),
];
