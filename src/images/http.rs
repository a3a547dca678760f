//! A small HTTP(S) client for registries: one HTTP/1.1 connection per request (a pull makes
//! a handful), TLS through rustls with the system CA bundle plus an endpoint's `ca_file`,
//! optional client certificates and `insecure_skip_verify`, and redirects followed (blob
//! downloads are commonly redirected to a CDN; credentials are not sent to another host).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::registries::TlsConfig;

/// The CA bundle Debian's `ca-certificates` maintains.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_REDIRECTS: usize = 5;

/// A transport failure (nothing usable came back), as opposed to an HTTP error status.
#[derive(Debug)]
pub struct NetError(pub String);

/// A client for one endpoint's TLS settings.
#[derive(Clone)]
pub struct HttpClient {
    tls: Arc<rustls::ClientConfig>,
}

impl HttpClient {
    pub fn new(tls: Option<&TlsConfig>) -> Result<HttpClient, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let mut files = vec![std::path::PathBuf::from(SYSTEM_CA_BUNDLE)];
        if let Some(ca) = tls.and_then(|t| t.ca_file.clone()) {
            files.push(ca);
        }
        for (i, file) in files.iter().enumerate() {
            let certs = match CertificateDer::pem_file_iter(file) {
                Ok(iter) => iter.collect::<Result<Vec<_>, _>>().map_err(|e| format!("{}: {e}", file.display()))?,
                // The system bundle may be absent (a minimal host); a configured ca_file may not.
                Err(_) if i == 0 => Vec::new(),
                Err(e) => return Err(format!("ca_file {}: {e}", file.display())),
            };
            roots.add_parsable_certificates(certs);
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = if tls.is_some_and(|t| t.insecure_skip_verify) {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
        } else {
            builder.with_root_certificates(roots)
        };
        let config = match tls.and_then(|t| t.cert_file.clone().zip(t.key_file.clone())) {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_file_iter(&cert)
                    .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("cert_file {}: {e}", cert.display()))?;
                let key = PrivateKeyDer::from_pem_file(&key).map_err(|e| format!("key_file {}: {e}", key.display()))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| format!("client certificate: {e}"))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(HttpClient { tls: Arc::new(config) })
    }

    /// Sends a GET (or HEAD) to `url`, following redirects. `auth` goes only to `url`'s host.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&str, String)],
        auth: Option<&str>,
        head: bool,
    ) -> Result<Response<Incoming>, NetError> {
        let mut current: Uri = url.parse().map_err(|e| NetError(format!("invalid URL {url:?}: {e}")))?;
        let origin = current.authority().map(|a| a.to_string());
        for _ in 0..=MAX_REDIRECTS {
            let same_host = current.authority().map(|a| a.to_string()) == origin;
            let resp = self.send(&current, headers, if same_host { auth } else { None }, head).await?;
            if resp.status().is_redirection() {
                if let Some(loc) = resp.headers().get(hyper::header::LOCATION).and_then(|v| v.to_str().ok()) {
                    current = resolve(&current, loc)?;
                    continue;
                }
            }
            return Ok(resp);
        }
        Err(NetError(format!("GET {url:?}: too many redirects")))
    }

    async fn send(
        &self,
        uri: &Uri,
        headers: &[(&str, String)],
        auth: Option<&str>,
        head: bool,
    ) -> Result<Response<Incoming>, NetError> {
        let failed = |e: &dyn std::fmt::Display| {
            NetError(format!("failed to do request: {} {:?}: {e}", if head { "HEAD" } else { "GET" }, uri.to_string()))
        };
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(failed(&"unsupported scheme")),
        };
        let host = uri.host().ok_or_else(|| failed(&"no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| failed(&format!("dial tcp {host}:{port}: i/o timeout")))?
            .map_err(|e| failed(&format!("dial tcp {host}:{port}: connect: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
        let mut req = Request::builder()
            .method(if head { "HEAD" } else { "GET" })
            .uri(path)
            .header(hyper::header::HOST, authority);
        req = req.header(hyper::header::USER_AGENT, concat!("k3rs/", env!("CARGO_PKG_VERSION")));
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(a) = auth {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let req = req.body(Empty::<Bytes>::new()).map_err(|e| failed(&e))?;
        let exchange = async {
            if https {
                let name = ServerName::try_from(host.clone()).map_err(|e| failed(&e))?;
                let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| failed(&format!("tls: {e}")))?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| failed(&e))?;
                tokio::spawn(conn);
                sender.send_request(req).await.map_err(|e| failed(&e))
            } else {
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| failed(&e))?;
                tokio::spawn(conn);
                sender.send_request(req).await.map_err(|e| failed(&e))
            }
        };
        tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
            .await
            .map_err(|_| failed(&"timeout awaiting response headers"))?
    }
}

/// Reads a whole (small) body, refusing more than `limit` bytes.
pub async fn read_body(resp: Response<Incoming>, limit: usize) -> Result<Vec<u8>, NetError> {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| NetError(format!("read response: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(NetError(format!("response larger than {limit} bytes")));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

fn resolve(base: &Uri, location: &str) -> Result<Uri, NetError> {
    if location.contains("://") {
        return location.parse().map_err(|e| NetError(format!("invalid redirect {location:?}: {e}")));
    }
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    let path = if location.starts_with('/') {
        location.to_string()
    } else {
        let dir = base.path().rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        format!("{dir}/{location}")
    };
    format!("{scheme}://{authority}{path}").parse().map_err(|e| NetError(format!("invalid redirect {location:?}: {e}")))
}

/// A TLS client configuration that accepts any server certificate, as upstream's kubelet
/// makes HTTPS probes.
pub fn insecure_client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerify(provider))).with_no_client_auth(),
    ))
}

/// `insecure_skip_verify`: any certificate is accepted (signatures are still checked, so
/// the handshake itself is sound).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
