//! TLS termination: certificates from `kubernetes.io/tls` Secrets chosen by SNI from the
//! current route table, and a self-signed default certificate for every other name (as
//! ingress-nginx and Traefik serve one). HTTP/2 and HTTP/1.1 are offered by ALPN.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::Shared;

/// The common name of the default certificate.
pub const DEFAULT_CERT_CN: &str = "K3RS INGRESS DEFAULT CERT";

/// The certificate and key of a `kubernetes.io/tls` Secret, or what is wrong with it.
pub fn certified_key(secret: &Secret) -> Result<Arc<CertifiedKey>, String> {
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if type_ != "kubernetes.io/tls" {
        return Err(format!("type is {type_}, not kubernetes.io/tls"));
    }
    let field =
        |name: &str| secret.data.as_ref().and_then(|d| d.get(name)).map(|b| b.0.clone()).filter(|b| !b.is_empty());
    let crt = field("tls.crt").ok_or("tls.crt is missing")?;
    let key = field("tls.key").ok_or("tls.key is missing")?;
    let certs = CertificateDer::pem_slice_iter(&crt)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.crt is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err("tls.crt holds no certificate".into());
    }
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| format!("tls.key is not a PEM private key: {e}"))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("tls.key is not a usable private key: {e}"))?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match().map_err(|e| format!("tls.key does not match tls.crt: {e}"))?;
    Ok(Arc::new(ck))
}

/// A fresh self-signed certificate for names no Secret covers.
pub fn default_certificate() -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec!["ingress.local".to_string()]).map_err(|e| e.to_string())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, DEFAULT_CERT_CN);
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "k3rs");
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(365);
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der).map_err(|e| e.to_string())?;
    Ok(Arc::new(CertifiedKey::new(vec![cert.der().clone()], signer)))
}

/// Chooses the certificate by SNI from the table in force at the handshake.
#[derive(Debug)]
pub struct Resolver {
    shared: Arc<Shared>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello.server_name().and_then(|n| self.shared.table().cert(n));
        Some(chosen.unwrap_or_else(|| self.default.clone()))
    }
}

/// The server's TLS configuration.
pub fn server_config(shared: Arc<Shared>, default: Arc<CertifiedKey>) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver { shared, default }));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    fn secret(type_: &str, crt: &[u8], key: &[u8]) -> Secret {
        let mut s: Secret =
            serde_json::from_value(json!({"metadata": {"name": "s", "namespace": "default"}, "type": type_}))
                .expect("secret");
        s.data = Some(
            [("tls.crt".to_string(), ByteString(crt.to_vec())), ("tls.key".to_string(), ByteString(key.to_vec()))]
                .into_iter()
                .collect(),
        );
        s
    }

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let cert =
            rcgen::CertificateParams::new(vec![name.to_string()]).expect("params").self_signed(&key).expect("cert");
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_good_secret_parses_and_bad_ones_say_why() {
        let (crt, key) = pair("a.example.com");
        assert!(certified_key(&secret("kubernetes.io/tls", crt.as_bytes(), key.as_bytes())).is_ok());
        let err = |s: Secret| certified_key(&s).expect_err("bad secret");
        assert!(err(secret("Opaque", crt.as_bytes(), key.as_bytes())).contains("not kubernetes.io/tls"));
        assert!(err(secret("kubernetes.io/tls", b"garbage", key.as_bytes())).contains("tls.crt"));
        assert!(err(secret("kubernetes.io/tls", crt.as_bytes(), b"garbage")).contains("tls.key"));
        let (_, other_key) = pair("b.example.com");
        assert!(err(secret("kubernetes.io/tls", crt.as_bytes(), other_key.as_bytes())).contains("does not match"));
        assert!(err(secret("kubernetes.io/tls", b"", b"")).contains("missing"));
    }

    #[test]
    fn the_default_certificate_is_self_signed_with_our_name() {
        let ck = default_certificate().expect("default certificate");
        let der = ck.end_entity_cert().expect("leaf");
        let (_, cert) = x509_parser::parse_x509_certificate(der).expect("parses");
        assert!(cert.subject().to_string().contains(DEFAULT_CERT_CN));
        assert_eq!(cert.subject(), cert.issuer());
        assert!(ck.keys_match().is_ok());
    }
}
