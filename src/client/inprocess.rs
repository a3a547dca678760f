//! kube-rs' [`kube::Client`] over the API server's router, in process: the typed client that
//! k3rs' own components (controllers, scheduler, kubelet) use. Each request carries the
//! component's [`Identity`], so it goes through the same authorization, admission and
//! validation as a remote client's, without TLS or a socket.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{Request, Response};
use tower::{Service, ServiceExt};

use crate::apiserver::{ApiServer, Identity};

/// The router as a tower `Service` that kube's client can send its requests through.
#[derive(Clone)]
pub struct InProcess {
    router: axum::Router,
    identity: Identity,
}

impl InProcess {
    pub fn new(api: &Arc<ApiServer>, identity: Identity) -> Self {
        InProcess { router: api.router(), identity }
    }
}

impl Service<Request<kube::client::Body>> for InProcess {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let (parts, body) = req.into_parts();
        let mut req = Request::from_parts(parts, Body::new(body));
        // Whatever the caller set, the component is who it is.
        req.extensions_mut().insert(self.identity.clone());
        let router = self.router.clone();
        Box::pin(async move { router.oneshot(req).await })
    }
}

/// A typed client with `identity`, whose default namespace is `default`.
pub fn kube_client(api: &Arc<ApiServer>, identity: Identity) -> kube::Client {
    kube::Client::new(InProcess::new(api, identity), "default")
}
