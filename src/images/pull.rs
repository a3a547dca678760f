//! Pulls images from registries speaking the OCI distribution API: mirrors first (with
//! their rewrites), then the registry itself; Bearer tokens (the `WWW-Authenticate`
//! challenge's realm, service and scope) and Basic auth, with credentials from pods'
//! `imagePullSecrets` or `registries.yaml`; OCI indexes and Docker manifest lists (this
//! machine's platform is picked), OCI and Docker schema 2 manifests; every blob checked
//! against its digest.
//!
//! Blobs are downloaded into a private directory under `tmp/` and moved into the store,
//! and the layers unpacked, under the store's lock, so a concurrent `remove` never
//! collects a blob between download and use.

use std::path::{Path, PathBuf};
use std::time::Instant;

use base64::Engine;
use http_body_util::BodyExt;
use hyper::StatusCode;
use oci_spec::image::ImageManifest;
use ring::digest::{Context, SHA256};
use tokio::io::AsyncWriteExt;

use super::archive::repo_digests;
use super::digest::{hex_part, sha256};
use super::http::{read_body, HttpClient, NetError};
use super::manifest::{self, Document};
use super::registries::{Endpoint, RegistriesConfig};
use super::{Image, ImageError, ImageRef, ImageStore};

const MANIFEST_LIMIT: usize = 8 << 20;
const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Credentials for one registry, as an `imagePullSecret` gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// A registry host (`docker.io`, `registry.example.com:5000`); a URL such as
    /// `https://index.docker.io/v1/` is accepted too.
    pub registry: String,
    pub username: String,
    pub password: String,
}

/// How to pull: the node's registries config and any credentials from the pod.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    pub registries: RegistriesConfig,
    pub credentials: Vec<Credential>,
}

/// Why a request failed, before it is worded for the caller.
enum Failure {
    NotFound(String),
    Unauthorized(String),
    Network(String),
    Other(String),
}

impl From<NetError> for Failure {
    fn from(e: NetError) -> Self {
        Failure::Network(e.0)
    }
}

impl Failure {
    fn into_error(self, reference: &str) -> ImageError {
        let reference = reference.to_string();
        match self {
            Failure::NotFound(detail) => ImageError::PullNotFound { reference, detail },
            Failure::Unauthorized(detail) => ImageError::PullUnauthorized { reference, detail },
            Failure::Network(detail) => ImageError::PullNetwork { reference, detail },
            Failure::Other(detail) => ImageError::PullFailed { reference, detail },
        }
    }

    fn prefixed(self, prefix: &str) -> Failure {
        match self {
            Failure::NotFound(d) => Failure::NotFound(format!("{prefix}: {d}")),
            Failure::Unauthorized(d) => Failure::Unauthorized(format!("{prefix}: {d}")),
            Failure::Network(d) => Failure::Network(format!("{prefix}: {d}")),
            Failure::Other(d) => Failure::Other(format!("{prefix}: {d}")),
        }
    }
}

/// One endpoint's session: its client, repository (after rewrites) and auth state.
struct Session {
    endpoint: Endpoint,
    repository: String,
    client: HttpClient,
    basic: Option<String>,
    /// The registry the image belongs to, told to mirrors.
    ns: String,
    /// The `Authorization` header that worked last.
    auth: Option<String>,
}

impl Session {
    fn new(endpoint: Endpoint, r: &ImageRef, opts: &PullOptions) -> Result<Session, Failure> {
        let config = opts.registries.config_for(&endpoint.host, &r.registry);
        let client = HttpClient::new(config.and_then(|c| c.tls.as_ref()))
            .map_err(|e| Failure::Other(format!("tls config for {}: {e}", endpoint.host)))?;
        let mut basic = None;
        // Credentials from the pod win over the node's.
        if let Some(c) = opts.credentials.iter().find(|c| credential_matches(&c.registry, &endpoint.host, &r.registry))
        {
            basic = Some(basic_header(&c.username, &c.password));
        } else if let Some(auth) = config.and_then(|c| c.auth.as_ref()) {
            if let (Some(u), Some(p)) = (&auth.username, &auth.password) {
                basic = Some(basic_header(u, p));
            } else if let Some(a) = &auth.auth {
                basic = Some(format!("Basic {a}"));
            }
        }
        let repository = endpoint.repository(&r.repository);
        Ok(Session { endpoint, repository, client, basic, ns: r.registry.clone(), auth: None })
    }

    fn url(&self, kind: &str, object: &str) -> String {
        let mut url = format!("{}/v2/{}/{kind}/{object}", self.endpoint.base_url(), self.repository);
        // containerd's convention for mirrors: tell the mirror which registry is meant.
        if !self.endpoint.upstream {
            url.push_str("?ns=");
            url.push_str(&self.ns);
        }
        url
    }

    /// GET with auth: on a 401 the challenge is answered (a token fetched, or Basic
    /// credentials sent) and the request retried once.
    async fn get(
        &mut self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, Failure> {
        let headers: Vec<(&str, String)> = accept.map(|a| vec![("accept", a.to_string())]).unwrap_or_default();
        let resp = self.client.get(url, &headers, self.auth.as_deref(), false).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge =
            resp.headers().get(hyper::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = read_body(resp, 64 << 10).await.unwrap_or_default();
        let Some(challenge) = challenge else {
            return Err(Failure::Unauthorized(format!("401 Unauthorized: {}", server_message(&body))));
        };
        let (scheme, params) = parse_challenge(&challenge);
        self.auth = if scheme.eq_ignore_ascii_case("bearer") {
            Some(format!("Bearer {}", self.token(&params).await?))
        } else if scheme.eq_ignore_ascii_case("basic") {
            match &self.basic {
                Some(b) => Some(b.clone()),
                None => return Err(Failure::Unauthorized("pull access denied, repository does not exist or may require authorization: authorization failed: no basic auth credentials".to_string())),
            }
        } else {
            return Err(Failure::Unauthorized(format!("unsupported authentication scheme {scheme:?}")));
        };
        let resp = self.client.get(url, &headers, self.auth.as_deref(), false).await?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            let status = resp.status();
            let body = read_body(resp, 64 << 10).await.unwrap_or_default();
            return Err(Failure::Unauthorized(format!(
                "pull access denied, repository does not exist or may require authorization: {status}: {}",
                server_message(&body)
            )));
        }
        Ok(resp)
    }

    /// Fetches a token from the challenge's realm (sending Basic credentials when we have
    /// them, as the token protocol expects).
    async fn token(&self, params: &[(String, String)]) -> Result<String, Failure> {
        let param = |k: &str| params.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
        let realm = param("realm").ok_or_else(|| Failure::Unauthorized("bearer challenge without realm".into()))?;
        let scope = param("scope").unwrap_or_else(|| format!("repository:{}:pull", self.repository));
        let mut query = Vec::new();
        if let Some(service) = param("service") {
            query.push(("service", service));
        }
        query.push(("scope", scope));
        let q = serde_urlencoded::to_string(&query).map_err(|e| Failure::Other(e.to_string()))?;
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{q}");
        let resp = self.client.get(&url, &[], self.basic.as_deref(), false).await?;
        let status = resp.status();
        let body = read_body(resp, 1 << 20).await?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Failure::Unauthorized(format!(
                "failed to fetch anonymous token: {status}: {}",
                server_message(&body)
            )));
        }
        if !status.is_success() {
            return Err(Failure::Other(format!(
                "failed to fetch token from {realm}: {status}: {}",
                server_message(&body)
            )));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token =
            serde_json::from_slice(&body).map_err(|e| Failure::Other(format!("token response from {realm}: {e}")))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::Other(format!("token response from {realm} has no token")))
    }
}

impl ImageStore {
    /// Pulls `reference` (normalised as upstream does) and returns the image, unpacked.
    pub async fn pull(&self, reference: &str, opts: &PullOptions) -> Result<Image, ImageError> {
        let r = ImageRef::parse(reference)?;
        let full = r.to_string();
        let started = Instant::now();
        tracing::info!(image = %full, "pulling image");
        let mut last: Option<Failure> = None;
        let mut resolved = None;
        for endpoint in opts.registries.endpoints(&r.registry) {
            let mut session = match Session::new(endpoint, &r, opts) {
                Ok(s) => s,
                Err(f) => return Err(f.into_error(&full)),
            };
            match resolve_manifest(&mut session, &r).await {
                Ok(found) => {
                    resolved = Some((session, found));
                    break;
                }
                Err(f) => {
                    if !session.endpoint.upstream {
                        tracing::warn!(image = %full, mirror = %session.endpoint.base_url(), error = %describe(&f), "mirror failed; trying the next endpoint");
                    }
                    last = Some(f);
                }
            }
        }
        let (mut session, (top_digest, manifest_digest, manifest_bytes, index_bytes)) = match resolved {
            Some(x) => x,
            None => {
                let f = last.unwrap_or_else(|| Failure::Other("no endpoint".into()));
                return Err(f.prefixed(&format!("failed to resolve reference \"{full}\"")).into_error(&full));
            }
        };
        let doc = manifest::parse_manifest(&manifest_bytes).map_err(|e| Failure::Other(e).into_error(&full))?;
        let staging = self.tmp_path("pull");
        tokio::fs::create_dir_all(&staging).await.map_err(ImageError::io("create directory", &staging))?;
        let result = async {
            let mut staged: Vec<String> = Vec::new();
            for (i, blob) in std::iter::once(doc.config()).chain(doc.layers()).enumerate() {
                let digest = blob.digest().as_ref();
                if self.has_blob(digest) {
                    continue;
                }
                let t = Instant::now();
                let bytes = fetch_blob(&mut session, digest, &staging)
                    .await
                    .map_err(|f| f.prefixed(&format!("failed to fetch {} {digest}", if i == 0 { "config" } else { "layer" })).into_error(&full))?;
                if i > 0 {
                    tracing::info!(image = %full, layer = %digest, bytes, elapsed_ms = t.elapsed().as_millis() as u64, "layer downloaded");
                }
                staged.push(digest.to_string());
            }
            for (digest, data) in [(Some(manifest_digest.clone()), Some(manifest_bytes.clone())), (Some(top_digest.clone()), index_bytes.clone())] {
                if let (Some(d), Some(data)) = (digest, data) {
                    std::fs::write(staging.join(hex_part(&d)), &data).map_err(ImageError::io("write", &staging))?;
                    staged.push(d);
                }
            }
            let store = ImageStore { root: self.root.clone(), private_containers: std::sync::OnceLock::new() };
            let names = vec![full.clone()];
            let repo = repo_digests(&names, &top_digest);
            let extra = if top_digest != manifest_digest { vec![top_digest.clone()] } else { Vec::new() };
            let staging2 = staging.clone();
            let full2 = full.clone();
            tokio::task::spawn_blocking(move || commit(&store, &staging2, &staged, &full2, &manifest_digest, &doc, names, repo, extra))
                .await
                .map_err(|e| ImageError::PullFailed { reference: full.clone(), detail: format!("unpack task: {e}") })?
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&staging).await;
        let image = result?;
        tracing::info!(image = %full, id = %image.id, size = image.size, elapsed_ms = started.elapsed().as_millis() as u64, "image pulled");
        Ok(image)
    }
}

/// Under the lock: moves the staged blobs into the store, unpacks the layers, records the image.
#[allow(clippy::too_many_arguments)]
fn commit(
    store: &ImageStore,
    staging: &Path,
    staged: &[String],
    name: &str,
    manifest_digest: &str,
    doc: &ImageManifest,
    names: Vec<String>,
    repo: Vec<String>,
    extra: Vec<String>,
) -> Result<Image, ImageError> {
    let lock = store.lock()?;
    for d in staged {
        let from = staging.join(hex_part(d));
        let to = store.blob_path(d);
        std::fs::rename(&from, &to).map_err(ImageError::io("store blob", &to))?;
    }
    let image = store.assemble(name, manifest_digest, doc, names, repo, extra, &lock)?;
    let mut index = store.load_index()?;
    store.add_image(&mut index, image.clone());
    store.gc(&mut index, &lock)?;
    store.save_index(&index, &lock)?;
    Ok(index.images.iter().find(|i| i.id == image.id).cloned().unwrap_or(image))
}

/// Resolves the reference on one endpoint to (top-level digest, platform manifest digest,
/// manifest, index when there was one).
async fn resolve_manifest(
    s: &mut Session,
    r: &ImageRef,
) -> Result<(String, String, Vec<u8>, Option<Vec<u8>>), Failure> {
    let (top, top_digest) = fetch_manifest(s, r.object(), r).await?;
    let Document::Index(index) = Document::parse(&top).map_err(Failure::Other)? else {
        return Ok((top_digest.clone(), top_digest, top, None));
    };
    let chosen = manifest::pick_platform(index.manifests()).ok_or_else(|| {
        Failure::NotFound(format!("no match for platform linux/{} in manifest {top_digest}", manifest::host_arch()))
    })?;
    let chosen = chosen.digest().as_ref();
    let (m, m_digest) = fetch_manifest(s, chosen, r).await?;
    if m_digest != chosen {
        return Err(Failure::Other(format!("manifest {chosen} has digest {m_digest}")));
    }
    Ok((top_digest, m_digest, m, Some(top)))
}

/// GETs a manifest by tag or digest and checks a digest-addressed one.
async fn fetch_manifest(s: &mut Session, object: &str, r: &ImageRef) -> Result<(Vec<u8>, String), Failure> {
    let url = s.url("manifests", object);
    let resp = s.get(&url, Some(ACCEPT_MANIFESTS)).await?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND {
        return Err(Failure::NotFound(format!("{r}: not found")));
    }
    if status == StatusCode::FORBIDDEN {
        let body = read_body(resp, 64 << 10).await.unwrap_or_default();
        return Err(Failure::Unauthorized(format!("403 Forbidden: {}", server_message(&body))));
    }
    if !status.is_success() {
        let body = read_body(resp, 64 << 10).await.unwrap_or_default();
        return Err(Failure::Other(format!(
            "unexpected status from GET request to {url}: {status}: {}",
            server_message(&body)
        )));
    }
    let body = read_body(resp, MANIFEST_LIMIT).await?;
    let digest = sha256(&body);
    if object.starts_with("sha256:") && digest != object {
        return Err(Failure::Other(format!("manifest {object} has digest {digest}")));
    }
    Ok((body, digest))
}

/// Downloads blob `digest` into `dir/<hex>`, verifying it. Returns its size.
async fn fetch_blob(s: &mut Session, digest: &str, dir: &Path) -> Result<u64, Failure> {
    let url = s.url("blobs", digest);
    let resp = s.get(&url, None).await?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND {
        return Err(Failure::NotFound("not found".into()));
    }
    if !status.is_success() {
        let body = read_body(resp, 64 << 10).await.unwrap_or_default();
        return Err(Failure::Other(format!("unexpected status {status}: {}", server_message(&body))));
    }
    let path: PathBuf = dir.join(hex_part(digest));
    let mut file =
        tokio::fs::File::create(&path).await.map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
    let mut ctx = Context::new(&SHA256);
    let mut size = 0u64;
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Network(format!("read response: {e}")))?;
        if let Ok(data) = frame.into_data() {
            ctx.update(&data);
            size += data.len() as u64;
            file.write_all(&data).await.map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
        }
    }
    file.sync_all().await.map_err(|e| Failure::Other(format!("{}: {e}", path.display())))?;
    let actual = format!("sha256:{}", ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>());
    if actual != digest {
        return Err(Failure::Other(format!("content has digest {actual}, expected {digest}")));
    }
    Ok(size)
}

fn describe(f: &Failure) -> &str {
    match f {
        Failure::NotFound(d) | Failure::Unauthorized(d) | Failure::Network(d) | Failure::Other(d) => d,
    }
}

fn basic_header(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// Whether a credential's registry names this endpoint or registry (`index.docker.io`,
/// `registry-1.docker.io` and Docker's `https://index.docker.io/v1/` all mean docker.io).
fn credential_matches(cred: &str, endpoint_host: &str, registry: &str) -> bool {
    let host = cred.split_once("://").map_or(cred, |(_, rest)| rest);
    let host = host.split('/').next().unwrap_or(host);
    let canonical = |h: &str| -> String {
        match h {
            "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".to_string(),
            other => other.to_string(),
        }
    };
    let host = canonical(host);
    host == canonical(endpoint_host) || host == canonical(registry)
}

/// `Bearer realm="...",service="...",scope="..."` → ("Bearer", [(realm, ...), ...]).
pub(crate) fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_string();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect::<String>().trim().to_string();
        }
        params.push((key, value));
    }
    (scheme.to_string(), params)
}

/// The registry's error message (`{"errors":[{"code":..,"message":..}]}`) or the raw text.
fn server_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let parts: Vec<String> =
            e.errors.iter().map(|x| format!("{}: {}", x.code.to_ascii_lowercase(), x.message)).collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(scheme, "Bearer");
        assert_eq!(
            params,
            vec![
                ("realm".to_string(), "https://auth.docker.io/token".to_string()),
                ("service".to_string(), "registry.docker.io".to_string()),
                ("scope".to_string(), "repository:library/busybox:pull,push".to_string()),
            ]
        );
        let (scheme, params) = parse_challenge(r#"Basic realm="Registry Realm""#);
        assert_eq!((scheme.as_str(), params[0].1.as_str()), ("Basic", "Registry Realm"));
        let (_, params) = parse_challenge("Bearer realm=x, service=y");
        assert_eq!(params[1], ("service".to_string(), "y".to_string()));
    }

    #[test]
    fn credentials_match_registry_names() {
        assert!(credential_matches("https://index.docker.io/v1/", "registry-1.docker.io", "docker.io"));
        assert!(credential_matches("docker.io", "registry-1.docker.io", "docker.io"));
        assert!(credential_matches("127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000"));
        assert!(credential_matches("mirror:5000", "mirror:5000", "docker.io"));
        assert!(!credential_matches("quay.io", "registry-1.docker.io", "docker.io"));
        assert_eq!(
            server_message(br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#),
            "manifest_unknown: manifest unknown"
        );
        assert_eq!(basic_header("u", "p"), "Basic dTpw");
    }
}
