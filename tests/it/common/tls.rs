//! Throwaway certificates for TLS tests: a CA, a server certificate for `127.0.0.1` and a
//! client certificate, both signed by that CA, written as PEM files to a temporary
//! directory that lives as long as the [`TestPki`].
//!
//! Keys are ECDSA P-256, made with `rcgen` on the ring provider, so generating a set takes
//! milliseconds. Two sets share nothing: a certificate of one does not verify against the
//! other's CA, which is how tests present a wrong CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tempfile::TempDir;

/// A CA and the certificates it signed, as files; see the module documentation.
pub struct TestPki {
    dir: TempDir,
    /// The CA certificate.
    pub ca_file: PathBuf,
    /// The server certificate (subject alternative name `127.0.0.1`) and its key.
    pub server_cert_file: PathBuf,
    pub server_key_file: PathBuf,
    /// The client certificate (common name `k3rs-test-client`) and its key.
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
}

impl TestPki {
    /// Generates a fresh CA, server and client certificate.
    pub fn generate() -> TestPki {
        let dir = tempfile::Builder::new().prefix("k3rs-pki-").tempdir().expect("create a directory for certificates");

        let mut ca_params = CertificateParams::new(Vec::new()).expect("CA parameters");
        ca_params.distinguished_name.push(DnType::CommonName, "k3rs-test-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("generate the CA key"))
            .expect("self-sign the CA certificate");

        // etcd dials its own client port for its HTTP gateway with the server certificate,
        // so that certificate must also be good for client authentication.
        let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("server parameters");
        server_params.distinguished_name.push(DnType::CommonName, "k3rs-test-etcd");
        server_params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let server_key = KeyPair::generate().expect("generate the server key");
        let server_cert = server_params.signed_by(&server_key, &ca).expect("sign the server certificate");

        let mut client_params = CertificateParams::new(Vec::new()).expect("client parameters");
        client_params.distinguished_name.push(DnType::CommonName, "k3rs-test-client");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_key = KeyPair::generate().expect("generate the client key");
        let client_cert = client_params.signed_by(&client_key, &ca).expect("sign the client certificate");

        let pki = TestPki {
            ca_file: dir.path().join("ca.pem"),
            server_cert_file: dir.path().join("server.pem"),
            server_key_file: dir.path().join("server-key.pem"),
            client_cert_file: dir.path().join("client.pem"),
            client_key_file: dir.path().join("client-key.pem"),
            dir,
        };
        write(&pki.ca_file, &ca.pem());
        write(&pki.server_cert_file, &server_cert.pem());
        write(&pki.server_key_file, &server_key.serialize_pem());
        write(&pki.client_cert_file, &client_cert.pem());
        write(&pki.client_key_file, &client_key.serialize_pem());
        pki
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn write(path: &Path, pem: &str) {
    std::fs::write(path, pem).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}
