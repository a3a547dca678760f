//! The Kubernetes API server: HTTPS, authentication, authorization, discovery, and one
//! generic registry serving every built-in resource over the [`Store`](crate::store::Store).
//!
//! [`ApiServer::router`] is a tower service: the HTTPS listener feeds it requests carrying
//! the caller's [`Identity`], and in-process components can call it directly with their
//! own identity, going through the same authorization, admission and validation without
//! a socket.

pub mod admission;
mod authn;
pub mod authz;
mod bootstrap;
pub mod discovery;
pub mod encode;
pub mod handlers;
pub mod impersonation;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod options;
pub mod patch;
pub mod protobuf;
pub mod rbac;
pub mod registry;
pub mod request;
pub mod reviews;
pub mod selector;
pub mod status;
pub mod streaming;
pub mod table;
pub mod tokenrequest;
pub mod watch;
pub mod watchcache;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use self::registry::{Registry, ResourceType};
use self::request::RequestInfo;
use self::status::{ApiError, Reason};
use crate::store::Store;

/// Who is calling: set by the listener from the client certificate or bearer token, or by
/// an in-process component.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    /// Empty when the authenticator has none (client certificates carry none).
    pub uid: String,
    /// Extra attributes (a service account token's pod name and uid, impersonated extras).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl Identity {
    pub fn new(user: impl Into<String>, groups: &[&str]) -> Self {
        Identity { user: user.into(), groups: groups.iter().map(|g| g.to_string()).collect(), ..Default::default() }
    }
}

/// Settings of the API server.
#[derive(Clone, Debug)]
pub struct ApiOptions {
    /// Where clients (and the `kubernetes` service's endpoints) reach this server.
    pub advertise: std::net::SocketAddr,
    /// Cluster IPs are allocated from here; its first address is the `kubernetes` service's.
    pub service_cidr: crate::util::cidr::Cidr,
    /// Verifies service-account bearer tokens (none: bearer tokens are refused).
    pub tokens: Option<Arc<crate::pki::ServiceAccountTokens>>,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            advertise: std::net::SocketAddr::from(([127, 0, 0, 1], 6443)),
            service_cidr: "10.43.0.0/16".parse().expect("a valid CIDR literal"),
            tokens: None,
        }
    }
}

/// The API server's state.
pub struct ApiServer {
    pub opts: ApiOptions,
    pub metrics: metrics::Metrics,
    pub registry: Registry,
    /// `host:port` clients should use, for the `/api` document.
    pub server_address: String,
    /// Decides every request after authentication (and impersonation).
    pub authorizer: Arc<dyn authz::Authorizer>,
    /// RBAC's policy copy, when RBAC decides: for escalation checks on RBAC writes.
    rbac: Option<Arc<rbac::cache::PolicyCache>>,
    types: HashMap<(String, String, String), Arc<ResourceType>>,
    /// The container side of `pods/log`, `pods/exec` and `pods/attach`.
    pod_streams: streaming::PodStreamsSlot,
}

/// Paths anyone may read, as upstream's `system:public-info-viewer`.
fn is_public(path: &str) -> bool {
    matches!(path, "/healthz" | "/livez" | "/readyz" | "/version" | "/version/")
        || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

impl ApiServer {
    pub fn new(store: Arc<dyn Store>) -> Arc<Self> {
        Self::with_options(store, ApiOptions::default())
    }

    /// An API server whose requests RBAC decides, from a copy of the policy that follows
    /// `store` (started here: call within a tokio runtime).
    pub fn with_options(store: Arc<dyn Store>, opts: ApiOptions) -> Arc<Self> {
        let rbac = rbac::RbacAuthorizer::start(store.clone());
        let cache = rbac.cache.clone();
        Self::build(store, opts, Arc::new(rbac), Some(cache))
    }

    /// An API server whose requests `authorizer` decides, with no RBAC escalation checks.
    pub fn with_authorizer(
        store: Arc<dyn Store>,
        opts: ApiOptions,
        authorizer: Arc<dyn authz::Authorizer>,
    ) -> Arc<Self> {
        Self::build(store, opts, authorizer, None)
    }

    fn build(
        store: Arc<dyn Store>,
        opts: ApiOptions,
        authorizer: Arc<dyn authz::Authorizer>,
        rbac: Option<Arc<rbac::cache::PolicyCache>>,
    ) -> Arc<Self> {
        let mut types = HashMap::new();
        for rt in registry::strategies::resource_types(opts.service_cidr) {
            types.insert((rt.group.to_string(), rt.version.to_string(), rt.plural.to_string()), Arc::new(rt));
        }
        Arc::new(ApiServer {
            registry: Registry::new(store),
            server_address: opts.advertise.to_string(),
            opts,
            metrics: Default::default(),
            authorizer,
            rbac,
            types,
            pod_streams: Default::default(),
        })
    }

    /// `opts` with the admission checks of writes made by `caller`: RBAC's escalation
    /// check (part of RBAC's storage upstream, so first), then the validating plug-ins.
    pub(crate) fn admitted(&self, mut opts: registry::WriteOptions, caller: &Identity) -> registry::WriteOptions {
        let mut chain: Vec<Arc<dyn registry::Admit>> = Vec::with_capacity(2);
        if let Some(cache) = &self.rbac {
            chain.push(Arc::new(rbac::escalation::Escalation {
                authorizer: self.authorizer.clone(),
                cache: cache.clone(),
                user: caller.clone(),
            }));
        }
        chain.push(Arc::new(admission::podsecurity::PodSecurity::new(self.registry.store.clone())));
        opts.admit = Some(Arc::new(admission::Chain(chain)));
        opts
    }

    /// The resource type served at group/version/plural.
    pub fn resource_type(&self, group: &str, version: &str, plural: &str) -> Option<Arc<ResourceType>> {
        self.types.get(&(group.to_string(), version.to_string(), plural.to_string())).cloned()
    }

    /// Every namespaced resource type served in its storage version (one per storage
    /// prefix), for walking a namespace's content.
    pub fn namespaced_types(&self) -> Vec<Arc<ResourceType>> {
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<Arc<ResourceType>> = self
            .types
            .values()
            .filter(|t| t.namespaced && t.conversion.is_none() && seen.insert(t.storage.clone()))
            .cloned()
            .collect();
        out.sort_by_key(|t| t.plural);
        out
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new().fallback(handle).with_state(self.clone())
    }

    /// Label and field selectors of a list or watch, as one predicate.
    fn filter(&self, rt: &ResourceType, q: &handlers::Query) -> Result<Option<registry::ObjectFilter>, ApiError> {
        options::object_filter(rt.group, rt.kind, q.label_selector.as_deref(), q.field_selector.as_deref())
    }
}

async fn handle(State(api): State<Arc<ApiServer>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let mut identity = parts.extensions.get::<Identity>().cloned();
    if identity.is_none() {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        if let Some(token) = bearer {
            identity = api.authenticate_token(token).await;
            if identity.is_none() && !is_public(&path) {
                return ApiError::unauthorized().into_response();
            }
        }
    }
    if let Some(requester) = identity.as_ref() {
        match api.impersonate(requester, &parts.headers).await {
            Ok(Some(acting)) => identity = Some(acting),
            Ok(None) => {}
            Err(e) => return e.into_response(),
        }
    }
    let info = request::parse(&parts.method, &path, query.as_deref());
    if !is_public(&path) {
        let Some(id) = identity.as_ref() else { return ApiError::unauthorized().into_response() };
        if let Err(e) = api.authorize(id, &info).await {
            return e.into_response();
        }
    }
    match info {
        RequestInfo::Resource(r) if streaming::handles(&r) => streaming::serve(&api, r, parts).await,
        RequestInfo::Resource(r) if reviews::review_kind(&r).is_some() => {
            let kind = reviews::review_kind(&r).unwrap_or_default();
            let caller = identity.unwrap_or_default();
            match axum::body::to_bytes(body, handlers::MAX_BODY).await {
                Ok(body) => api.serve_review(&r, kind, &caller, &parts.headers, body).await,
                Err(_) => ApiError::too_large("the request body is larger than 3145728 bytes").into_response(),
            }
        }
        RequestInfo::Resource(r) => {
            let started = std::time::Instant::now();
            let (verb, group, version, resource) = (r.verb, r.group.clone(), r.version.clone(), r.resource.clone());
            let gzip = verb != "watch" && accepts_gzip(&parts.headers);
            if !matches!(verb, "get" | "list" | "watch") {
                tracing::debug!(target: "k3rs::audit", verb, path = %parts.uri.path(), user = %identity.as_ref().map(|i| i.user.as_str()).unwrap_or(""), "request");
            }
            let resp = match axum::body::to_bytes(body, handlers::MAX_BODY).await {
                Ok(body) => {
                    let caller = identity.clone().unwrap_or_default();
                    api.serve_resource(&caller, r, &parts.headers, query.as_deref(), body).await
                }
                Err(_) => ApiError::too_large("the request body is larger than 3145728 bytes").into_response(),
            };
            let resp = if gzip { compress(resp).await } else { resp };
            api.metrics.observe(verb, &group, &version, &resource, resp.status().as_u16(), started.elapsed());
            resp
        }
        RequestInfo::NonResource { .. } => non_resource(&api, &parts.method, &path, query.as_deref(), &parts.headers),
    }
}

impl ApiServer {
    /// Asks the authorizer about a request; a denial is upstream's 403.
    async fn authorize(&self, id: &Identity, info: &RequestInfo) -> Result<(), ApiError> {
        let attrs = match info {
            RequestInfo::Resource(r) => authz::Attributes::Resource(authz::ResourceAttributes {
                namespace: r.namespace.clone().unwrap_or_default(),
                verb: r.verb.to_string(),
                group: r.group.clone(),
                version: r.version.clone(),
                resource: r.resource.clone(),
                subresource: r.subresource.clone().unwrap_or_default(),
                name: r.name.clone().unwrap_or_default(),
            }),
            RequestInfo::NonResource { verb, path } => {
                authz::Attributes::NonResource { verb: verb.clone(), path: path.clone() }
            }
        };
        let reason = match self.authorizer.authorize(id, &attrs).await {
            authz::Decision::Allow { .. } => return Ok(()),
            authz::Decision::Deny { reason } => reason,
        };
        let mut e = match info {
            RequestInfo::Resource(r) => ApiError::forbidden_subresource(
                &id.user,
                r.verb,
                &r.group,
                &r.resource,
                r.subresource.as_deref().unwrap_or(""),
                r.namespace.as_deref(),
                r.name.as_deref(),
            ),
            RequestInfo::NonResource { verb, path } => {
                let mut e = ApiError::new(
                    Reason::Forbidden,
                    format!("forbidden: User \"{}\" cannot {verb} path \"{path}\"", id.user),
                );
                e.details.subject = None;
                e
            }
        };
        if !reason.is_empty() {
            e.message = format!("{}: {reason}", e.message);
        }
        Err(e)
    }
}

/// Responses at least this large are compressed for clients that accept gzip, as upstream
/// does (kubectl asks for it): small ones are not worth the CPU.
const GZIP_THRESHOLD: usize = 128 * 1024;

fn accepts_gzip(headers: &axum::http::HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |enc| {
            let mut parts = enc.split(';');
            let name = parts.next().unwrap_or("").trim();
            // `gzip;q=0` refuses it.
            let refused = parts.any(
                |p| matches!(p.trim().strip_prefix("q="), Some(q) if q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0)),
            );
            name.eq_ignore_ascii_case("gzip") && !refused
        },
    )
}

/// Gzips a complete (non-streaming) response body of [`GZIP_THRESHOLD`] bytes or more;
/// other responses are returned as they are.
async fn compress(resp: Response) -> Response {
    use std::io::Write;

    use axum::body::HttpBody;
    // Streams (logs that follow, exec, attach, upgrades) pass untouched: only a body whose
    // whole size is known is in memory already.
    match resp.body().size_hint().exact() {
        Some(n) if n as usize >= GZIP_THRESHOLD => {}
        _ => return resp,
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return ApiError::internal("reading the response body").into_response();
    };
    if bytes.len() < GZIP_THRESHOLD || parts.headers.contains_key(header::CONTENT_ENCODING) {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(bytes.len() / 4), flate2::Compression::fast());
    let zipped = match enc.write_all(&bytes).and_then(|_| enc.finish()) {
        Ok(z) => z,
        Err(e) => {
            tracing::warn!(error = %e, "could not compress a response; sending it plain");
            return Response::from_parts(parts, axum::body::Body::from(bytes));
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts.headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    Response::from_parts(parts, axum::body::Body::from(zipped))
}

fn non_resource(
    api: &ApiServer,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &axum::http::HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return ApiError::method_not_allowed("the server does not allow this method on the requested resource")
            .into_response();
    }
    let path = if path.len() > 1 { path.trim_end_matches('/') } else { path };
    if let Some(r) = openapi::respond(path, query, headers, std::time::SystemTime::now()) {
        return r.map(axum::body::Body::from).into_response();
    }
    if let Some(dpath) = discovery::DiscoveryPath::parse(path) {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
        return match discovery::respond(&dpath, accept, &api.server_address) {
            Ok(n) => {
                let mut resp = (StatusCode::OK, n.body).into_response();
                resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(n.content_type));
                if dpath.varies_with_accept() {
                    resp.headers_mut().insert(header::VARY, HeaderValue::from_static("Accept"));
                }
                resp
            }
            Err(discovery::DiscoveryError::NotFound { .. }) => {
                ApiError::new(Reason::NotFound, "the server could not find the requested resource").into_response()
            }
            Err(discovery::DiscoveryError::NotAcceptable { accept }) => {
                ApiError::not_acceptable(format!("only the following media types are accepted: application/json, application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList (asked for {accept})")).into_response()
            }
            Err(e) => ApiError::internal(e.to_string()).into_response(),
        };
    }
    match path {
        "/healthz" | "/livez" | "/readyz" => (StatusCode::OK, "ok").into_response(),
        "/metrics" => {
            let mut resp = (StatusCode::OK, api.metrics.render()).into_response();
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
            resp
        }
        "/version" => handlers::json_response(
            StatusCode::OK,
            &serde_json::to_value(discovery::version_info()).unwrap_or_default(),
        ),
        _ => ApiError::new(Reason::NotFound, "the server could not find the requested resource").into_response(),
    }
}
