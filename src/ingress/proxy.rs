//! The request path: match the request against the table in force, pick the canary or the
//! main backend, and forward to an endpoint over HTTP/1.1 connections kept open for the
//! client connection ([`Upstreams`]), trying the next endpoint when a connect fails. Bodies
//! stream both ways; `Connection: Upgrade` requests (WebSocket and others) become a byte
//! tunnel once the backend answers 101.
//!
//! A retry after a failed connect is safe with a streamed body because the body is handed to
//! the client through a slot it takes from only when it starts sending, which is after the
//! connection is up: if the slot is still full, nothing was sent and the next endpoint gets
//! the same body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;

use super::canary::cookie_value;
use super::routes::normalize_host;
use super::Shared;

/// What the ingress answers with.
pub type ResponseBody = BoxBody<Bytes, hyper::Error>;

/// The connection a request came in on.
#[derive(Clone, Debug)]
pub struct Conn {
    pub peer: SocketAddr,
    /// The listener's port (X-Forwarded-Port).
    pub port: u16,
    pub tls: bool,
}

/// Forwards requests to backends.
pub struct Proxy {
    shared: Arc<Shared>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

/// A connection's future, driven by the task of the client connection it serves.
type Driver = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The backend connections of one client connection, kept open between its requests and
/// driven by that connection's own task ([`Upstreams::drive`]): a request and its response
/// never cross tasks or threads, and a connection serves one client only (nginx' keep-alive
/// pool, kept per client connection instead of per worker).
pub struct Upstreams {
    /// Open connections by endpoint, idle or busy (a busy one is not ready).
    open: Mutex<Vec<(SocketAddr, http1::SendRequest<SlotBody>)>>,
    drivers: tokio::sync::mpsc::UnboundedSender<Driver>,
}

impl Upstreams {
    /// The connections' pool, and the loop that drives them (to run with the client
    /// connection; it never ends by itself).
    pub fn new() -> (Upstreams, impl std::future::Future<Output = ()> + Send) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Upstreams { open: Mutex::new(Vec::new()), drivers: tx }, Upstreams::drive(rx))
    }

    async fn drive(mut rx: tokio::sync::mpsc::UnboundedReceiver<Driver>) {
        use futures::stream::{FuturesUnordered, StreamExt};
        let mut running = FuturesUnordered::new();
        loop {
            tokio::select! {
                biased;
                Some(()) = running.next(), if !running.is_empty() => {}
                Some(d) = rx.recv() => running.push(d),
                else => std::future::pending::<()>().await,
            }
        }
    }

    /// An open connection to `target` that can take a request now.
    fn take(&self, target: SocketAddr) -> Option<http1::SendRequest<SlotBody>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|(_, s)| !s.is_closed());
        let i = open.iter().position(|(a, s)| *a == target && s.is_ready())?;
        Some(open.swap_remove(i).1)
    }

    fn put(&self, target: SocketAddr, sender: http1::SendRequest<SlotBody>) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).push((target, sender));
    }
}

/// Why a request did not reach a backend.
enum SendError {
    /// No connection: the next endpoint is tried.
    Connect { timed_out: bool, message: String },
    /// The backend failed after the request went out.
    Failed(String),
}

/// Headers that concern one connection only (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

impl Proxy {
    pub fn new(shared: Arc<Shared>, connect_timeout: Duration, response_timeout: Duration) -> Proxy {
        Proxy { shared, connect_timeout, response_timeout }
    }

    /// A new connection to `target`; an upgrade's is driven by a task of its own, as it
    /// outlives the client connection's HTTP handling.
    async fn connect(
        &self,
        upstreams: &Upstreams,
        target: SocketAddr,
        upgrade: bool,
    ) -> Result<http1::SendRequest<SlotBody>, SendError> {
        let connect_error = |timed_out: bool, message: String| SendError::Connect { timed_out, message };
        let stream = match tokio::time::timeout(self.connect_timeout, tokio::net::TcpStream::connect(target)).await {
            Err(_) => return Err(connect_error(true, format!("{target}: connect timed out"))),
            Ok(Err(e)) => {
                return Err(connect_error(e.kind() == std::io::ErrorKind::TimedOut, format!("{target}: {e}")))
            }
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| connect_error(false, format!("{target}: {}", error_chain(&e))))?;
        if upgrade {
            tokio::spawn(async move {
                if let Err(e) = connection.with_upgrades().await {
                    tracing::debug!(%target, error = %e, "backend connection ended with an error");
                }
            });
        } else {
            let driver: Driver = Box::pin(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(%target, error = %e, "backend connection ended with an error");
                }
            });
            if upstreams.drivers.send(driver).is_err() {
                return Err(connect_error(false, format!("{target}: the client connection is closing")));
            }
        }
        Ok(sender)
    }

    /// Sends one request to `target`, on an open connection when there is one. A request
    /// that an idle connection lost (the backend closed it meanwhile) is sent again on a new
    /// one, if its body was not taken and it was never sent or may be repeated.
    async fn send(
        &self,
        upstreams: &Upstreams,
        target: SocketAddr,
        out: impl Fn() -> Option<Request<SlotBody>>,
        upgrade: bool,
        idempotent: bool,
    ) -> Result<Response<Incoming>, SendError> {
        let reused = if upgrade { None } else { upstreams.take(target) };
        let mut tries = if reused.is_some() { 2 } else { 1 };
        let mut sender = reused;
        loop {
            tries -= 1;
            let fresh = sender.is_none();
            let mut s = match sender.take() {
                Some(s) => s,
                None => self.connect(upstreams, target, upgrade).await?,
            };
            let Some(req) = out() else {
                return Err(SendError::Failed("the connection closed after the request body was sent".into()));
            };
            match s.send_request(req).await {
                Ok(resp) => {
                    if !upgrade {
                        upstreams.put(target, s);
                    }
                    return Ok(resp);
                }
                // Never sent; or, for a method that may be repeated, lost when the backend
                // closed the idle connection (nginx' proxy_next_upstream rule).
                Err(e) if !fresh && tries > 0 && (e.is_canceled() || (idempotent && e.is_incomplete_message())) => {
                    tracing::debug!(%target, error = %e, "an idle backend connection was closed, opening another");
                }
                Err(e) => return Err(SendError::Failed(error_chain(&e))),
            }
        }
    }

    /// Answers one request that came in on `conn`, forwarding over `upstreams`.
    pub async fn handle(
        &self,
        conn: &Conn,
        upstreams: &Upstreams,
        mut req: Request<Incoming>,
    ) -> Response<ResponseBody> {
        let host_raw = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .or_else(|| req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string))
            .unwrap_or_default();
        let host = normalize_host(&host_raw);
        let upstream = {
            let table = self.shared.table();
            let Some(route) = table.find(&host, req.uri().path()) else {
                return plain(
                    StatusCode::NOT_FOUND,
                    format!("no ingress rule for host {host:?} path {:?}", req.uri().path()),
                );
            };
            match &route.canary {
                Some(c) => {
                    let headers = req.headers();
                    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
                    let cookie = |name: &str| {
                        headers
                            .get_all(header::COOKIE)
                            .iter()
                            .filter_map(|v| v.to_str().ok())
                            .find_map(|v| cookie_value(v, name))
                    };
                    let roll = fastrand::u32(1..=c.policy.weight_total.max(1));
                    if c.policy.choose(header, cookie, roll) {
                        c.upstream.clone()
                    } else {
                        route.upstream.clone()
                    }
                }
                None => route.upstream.clone(),
            }
        };
        let targets = upstream.order();
        if targets.is_empty() {
            let why = upstream
                .targets
                .as_ref()
                .err()
                .cloned()
                .unwrap_or_else(|| format!("{} has no endpoints", upstream.name));
            return plain(StatusCode::SERVICE_UNAVAILABLE, why);
        }

        let upgrade = is_upgrade(req.headers()) && req.version() == Version::HTTP_11;
        let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let headers = forwarded_headers(&parts.headers, conn, &host_raw, upgrade);
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let slot = Arc::new(Mutex::new(Some(body)));
        let mut last_error = String::new();
        let mut timed_out = false;
        let Ok(path_and_query) = path.parse::<Uri>() else {
            return plain(StatusCode::BAD_REQUEST, format!("cannot forward the path {path:?}"));
        };
        let out = || {
            let body = SlotBody::new(&slot)?;
            let mut out = Request::new(body);
            *out.method_mut() = parts.method.clone();
            *out.uri_mut() = path_and_query.clone();
            *out.version_mut() = Version::HTTP_11;
            *out.headers_mut() = headers.clone();
            Some(out)
        };
        let idempotent = parts.method.is_idempotent();
        for &target in &targets {
            if SlotBody::new(&slot).is_none() {
                break;
            }
            let sent = self.send(upstreams, target, out, upgrade, idempotent);
            match tokio::time::timeout(self.response_timeout, sent).await {
                Err(_) => {
                    return plain(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!("{} ({target}) did not answer within {:?}", upstream.name, self.response_timeout),
                    )
                }
                Ok(Ok(resp)) => return respond(resp, downstream_upgrade),
                Ok(Err(SendError::Connect { timed_out: t, message })) => {
                    timed_out |= t;
                    tracing::debug!(upstream = %upstream.name, %target, error = %message, "connect failed, trying the next endpoint");
                    last_error = message;
                }
                Ok(Err(SendError::Failed(e))) => {
                    return plain(StatusCode::BAD_GATEWAY, format!("{} ({target}): {e}", upstream.name))
                }
            }
        }
        if timed_out {
            plain(
                StatusCode::GATEWAY_TIMEOUT,
                format!("no endpoint of {} answered in time ({last_error})", upstream.name),
            )
        } else {
            plain(
                StatusCode::BAD_GATEWAY,
                format!("cannot connect to any endpoint of {} ({last_error})", upstream.name),
            )
        }
    }
}

/// Removes the hop-by-hop headers: the fixed set, and those the Connection header names.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in HOP_BY_HOP.iter().chain(&named) {
        h.remove(name);
    }
}

/// The headers sent upstream: the client's, less hop-by-hop ones, with Host kept (or made
/// from `:authority`) and the X-Forwarded-* set ingress-nginx sends.
fn forwarded_headers(from: &HeaderMap, conn: &Conn, host_raw: &str, upgrade: bool) -> HeaderMap {
    let mut h = from.clone();
    strip_hop_by_hop(&mut h);
    if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(u) = from.get(header::UPGRADE) {
            h.insert(header::UPGRADE, u.clone());
        }
    } else {
        h.remove(header::UPGRADE);
    }
    if !h.contains_key(header::HOST) {
        if let Ok(v) = HeaderValue::from_str(host_raw) {
            h.insert(header::HOST, v);
        }
    }
    let peer = conn.peer.ip().to_string();
    let prior: Vec<&str> = from.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    let xff = if prior.is_empty() { peer.clone() } else { format!("{}, {peer}", prior.join(", ")) };
    let set = |h: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set(&mut h, "x-forwarded-for", &xff);
    set(&mut h, "x-real-ip", &peer);
    set(&mut h, "x-forwarded-proto", if conn.tls { "https" } else { "http" });
    set(&mut h, "x-forwarded-host", host_raw);
    set(&mut h, "x-forwarded-port", &conn.port.to_string());
    h
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// The backend's response for the client; a 101 to an upgrade request starts the tunnel.
fn respond(mut resp: Response<Incoming>, downstream: Option<hyper::upgrade::OnUpgrade>) -> Response<ResponseBody> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(downstream) = downstream {
            let upstream = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                match tokio::try_join!(downstream, upstream) {
                    Ok((d, u)) => {
                        let (mut d, mut u) = (TokioIo::new(d), TokioIo::new(u));
                        if let Err(e) = tokio::io::copy_bidirectional(&mut d, &mut u).await {
                            tracing::debug!(error = %e, "upgraded connection ended");
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
            return resp.map(|b| b.boxed());
        }
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(header::UPGRADE);
    Response::from_parts(parts, body.boxed())
}

/// A short plain-text answer from the ingress itself.
pub fn plain(status: StatusCode, message: String) -> Response<ResponseBody> {
    let body = Full::new(Bytes::from(format!("{message}\n"))).map_err(|never: Infallible| match never {}).boxed();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The request body as the client sends it: taken from the shared slot on the first poll,
/// that is once a connection is up.
pub struct SlotBody {
    slot: Arc<Mutex<Option<Incoming>>>,
    inner: Option<Incoming>,
    end: bool,
    hint: SizeHint,
}

impl SlotBody {
    /// A body over the slot, if it still holds the request's body.
    fn new(slot: &Arc<Mutex<Option<Incoming>>>) -> Option<SlotBody> {
        let guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        let b = guard.as_ref()?;
        Some(SlotBody { slot: slot.clone(), inner: None, end: b.is_end_stream(), hint: b.size_hint() })
    }
}

impl Body for SlotBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        if this.inner.is_none() {
            this.inner = this.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
        match this.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().map_or(self.end, |b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map_or_else(|| self.hint, |b| b.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        Conn { peer: "192.0.2.7:5555".parse().expect("addr"), port: 443, tls: true }
    }

    #[test]
    fn forwarded_headers_append_and_drop_hop_by_hop() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("web.example.com"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        let out = forwarded_headers(&h, &conn(), "web.example.com", false);
        assert_eq!(out["x-forwarded-for"], "10.1.1.1, 192.0.2.7");
        assert_eq!(out["x-real-ip"], "192.0.2.7");
        assert_eq!(out["x-forwarded-proto"], "https");
        assert_eq!(out["x-forwarded-host"], "web.example.com");
        assert_eq!(out["x-forwarded-port"], "443");
        assert_eq!(out[header::HOST], "web.example.com");
        assert_eq!(out["x-app"], "kept");
        for gone in ["connection", "x-secret", "te"] {
            assert!(!out.contains_key(gone), "{gone} forwarded");
        }
    }

    #[test]
    fn upgrades_keep_their_headers_and_http2_gets_a_host() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        let out = forwarded_headers(&h, &conn(), "a.example.com:8443", true);
        assert_eq!(out[header::CONNECTION], "upgrade");
        assert_eq!(out[header::UPGRADE], "websocket");
        assert_eq!(out[header::HOST], "a.example.com:8443");
        let plain_req = forwarded_headers(&h, &conn(), "a", false);
        assert!(!plain_req.contains_key(header::UPGRADE));
        assert!(!is_upgrade(&HeaderMap::new()));
    }
}
