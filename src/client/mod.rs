//! A client for k3rs' own components that calls the API server's router in process: same
//! authentication identity, authorization, admission and validation as a remote client,
//! without a socket.

mod inprocess;
mod status;

pub use inprocess::{kube_client, InProcess};

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, Response};
use futures::{Stream, StreamExt};
use serde_json::Value;
use tower::ServiceExt;

use crate::apiserver::status::ApiError;
use crate::apiserver::{ApiServer, Identity};

#[derive(Clone)]
pub struct Client {
    api: Arc<ApiServer>,
    identity: Identity,
}

impl Client {
    pub fn new(api: Arc<ApiServer>, identity: Identity) -> Self {
        Client { api, identity }
    }

    /// kube-rs' typed client over the same router, with the same identity.
    pub fn typed(&self) -> kube::Client {
        kube_client(&self.api, self.identity.clone())
    }

    /// The API server this client calls.
    pub fn api(&self) -> &Arc<ApiServer> {
        &self.api
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Response<Body>, ApiError> {
        let body = match body {
            Some(v) => Body::from(serde_json::to_vec(v).map_err(|e| ApiError::internal(e.to_string()))?),
            None => Body::empty(),
        };
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header("content-type", content_type)
            .body(body)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        req.extensions_mut().insert(self.identity.clone());
        let resp = self.api.router().oneshot(req).await.map_err(|e| ApiError::internal(e.to_string()))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.map_err(|e| ApiError::internal(e.to_string()))?;
        Err(status::error_from_response(&method, parts.status, &parts.headers, &bytes))
    }

    /// A request answered with one JSON document; a non-2xx answer is the `Status` as an error
    /// with its reason.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let body = self.send(method, path, content_type, body).await?.into_body();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.request(Method::GET, path, "application/json", None).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ApiError> {
        self.request(Method::DELETE, path, "application/json", None).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.request(Method::PUT, path, "application/json", Some(body)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.request(Method::POST, path, "application/json", Some(body)).await
    }

    /// A watch: each event as `{"type": ..., "object": ...}`; the stream ends with the watch.
    /// A watch the server refuses (e.g. `Expired`: the resource version is compacted) is the
    /// `Status` as an error.
    pub async fn watch(&self, path: &str) -> Result<impl Stream<Item = Value> + Send + 'static, ApiError> {
        let chunks = self.send(Method::GET, path, "application/json", None).await?.into_body().into_data_stream();
        Ok(futures::stream::unfold((chunks, Vec::<u8>::new()), |(mut chunks, mut buf)| async move {
            loop {
                if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                        return Some((v, (chunks, buf)));
                    }
                    continue;
                }
                match chunks.next().await {
                    Some(Ok(c)) => buf.extend_from_slice(&c),
                    _ => return None,
                }
            }
        }))
    }
}
