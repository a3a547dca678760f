//! Controllers: each in its own folder, registered by name in [`CONTROLLERS`] so the server
//! starts them from the table.

pub mod namespace;

use std::future::Future;
use std::pin::Pin;

use crate::client::Client;

/// A controller's entry point: runs until `shutdown` resolves.
pub type Start = fn(Client, Pin<Box<dyn Future<Output = ()> + Send>>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every controller, by name.
pub const CONTROLLERS: &[(&str, Start)] = &[("namespace", |c, s| Box::pin(namespace::run(c, s)))];
