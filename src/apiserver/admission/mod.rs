//! Validating admission plug-ins, run in upstream's order on every write a client (or an
//! in-process component with its own identity) makes, after defaulting and validation and
//! before the store. The server's own writes carry no admission.

pub mod podsecurity;

use std::sync::Arc;

use super::registry::{Admit, WriteAttributes};
use super::status::ApiError;

/// Plug-ins run one after another; the first refusal ends the write.
pub struct Chain(pub Vec<Arc<dyn Admit>>);

#[async_trait::async_trait]
impl Admit for Chain {
    async fn admit(&self, a: &WriteAttributes<'_>) -> Result<(), ApiError> {
        for plugin in &self.0 {
            plugin.admit(a).await?;
        }
        Ok(())
    }
}
