//! The API server's TLS: its rustls configuration (TLS 1.2 and 1.3 on ring, HTTP/2 and
//! HTTP/1.1 by ALPN, client certificates from the client CA accepted but not required) and
//! the user a verified client certificate names.
//!
//! Client certificates are optional because bearer tokens authenticate too, and a request
//! with no credentials at all must still reach the server, which answers it with a 401 (or
//! serves `/healthz`). A certificate that is presented must verify against the client CA:
//! a bad one fails the handshake.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::cert::subject_of;
use super::{PkiError, UserInfo};

/// The ALPN protocols the API server speaks, preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The server configuration for the serving certificate and key, accepting client
/// certificates signed by `client_ca`.
pub(crate) fn server_config(
    serving_chain: Vec<CertificateDer<'static>>,
    serving_key: PrivateKeyDer<'static>,
    client_ca: CertificateDer<'static>,
) -> Result<Arc<ServerConfig>, PkiError> {
    let tls = |e: &dyn std::fmt::Display| PkiError::TlsConfig(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(client_ca).map_err(|e| tls(&e))?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| tls(&e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(serving_chain, serving_key)
        .map_err(|e| tls(&e))?;
    config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The user a client certificate names: the common name, and the organizations as groups,
/// as Kubernetes reads them. The certificate must already have been verified (by the TLS
/// handshake); this only reads it.
pub fn identity_from_cert(der: &[u8]) -> Result<UserInfo, PkiError> {
    let bad = |detail: String| PkiError::PeerCertificate(detail);
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    let user = subject_of(&cert).map_err(bad)?;
    if user.name.is_empty() {
        return Err(bad("the certificate's subject has no common name".into()));
    }
    Ok(user)
}
