//! The PKI end to end: files made once and reused, real TLS handshakes against the server
//! configuration (admin certificate, no certificate, a foreign certificate), and the admin
//! kubeconfig read by the real kubectl, which also makes a request with it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use k3rs::pki::{self, ClientIdentity, Pki, PkiConfig, UserInfo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

fn config(dir: &Path) -> PkiConfig {
    PkiConfig {
        dir: dir.join("server/tls"),
        cluster_domain: "cluster.local".into(),
        node_name: "edge-1".into(),
        node_ip: "127.0.0.1".parse().unwrap(),
        service_ip: "10.43.0.1".parse().unwrap(),
        tls_sans: vec!["k3rs.test".into()],
        now: time::OffsetDateTime::now_utc(),
    }
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

fn key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting the server CA, presenting `identity` (certificate and key paths) if
/// given, speaking the given TLS versions and offering h2.
fn client(
    tls_dir: &Path,
    identity: Option<(&Path, &Path)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(cert(&tls_dir.join("server-ca.crt"))).unwrap();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((c, k)) => builder.with_client_auth_cert(vec![cert(c)], key(k)).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

/// What the server saw of one connection.
#[derive(Debug)]
struct Seen {
    identity: Option<UserInfo>,
    alpn: Option<Vec<u8>>,
    version: Option<rustls::ProtocolVersion>,
}

/// Accepts one connection with the PKI's server configuration, echoes one line, and
/// reports what the handshake established (or its error).
async fn serve_one(listener: TcpListener, pki: &Pki) -> Result<Seen, String> {
    let acceptor = TlsAcceptor::from(pki.server_tls_config());
    let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
    let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
    let (_, conn) = tls.get_ref();
    let identity = conn.peer_certificates().and_then(|c| c.first()).map(|c| pki::identity_from_cert(c).unwrap());
    let seen = Seen { identity, alpn: conn.alpn_protocol().map(<[u8]>::to_vec), version: conn.protocol_version() };
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    tls.write_all(&buf).await.map_err(|e| e.to_string())?;
    tls.shutdown().await.map_err(|e| e.to_string())?;
    Ok(seen)
}

/// Connects, sends "hello" and reads it back.
async fn talk(connector: TlsConnector, port: u16, name: &str) -> Result<(), String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
    let mut buf = [0u8; 5];
    tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    assert_eq!(&buf, b"hello");
    Ok(())
}

async fn handshake(pki: &Pki, connector: TlsConnector, name: &str) -> (Result<Seen, String>, Result<(), String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::join!(serve_one(listener, pki), talk(connector, port, name))
}

#[test]
fn ensure_twice_reuses_every_file_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path());
    let first = pki::ensure(&cfg).unwrap();
    assert!(!first.issued().is_empty());
    let before = snapshot(&cfg.dir);
    let second = pki::ensure(&config(tmp.path())).unwrap();
    assert!(second.issued().is_empty(), "{:?}", second.issued());
    assert_eq!(snapshot(&cfg.dir), before);
    assert_eq!(
        first.kubeconfig_for(ClientIdentity::Admin, "https://127.0.0.1:6443"),
        second.kubeconfig_for(ClientIdentity::Admin, "https://127.0.0.1:6443")
    );
}

#[tokio::test]
async fn the_admin_certificate_authenticates_as_system_admin() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki::ensure(&config(tmp.path())).unwrap();
    let dir = pki.dir().to_path_buf();
    let admin = (dir.join("client-admin.crt"), dir.join("client-admin.key"));
    let want = UserInfo { name: "system:admin".into(), groups: vec!["system:masters".into()] };

    for (versions, version) in [
        (&[&rustls::version::TLS13][..], rustls::ProtocolVersion::TLSv1_3),
        (&[&rustls::version::TLS12][..], rustls::ProtocolVersion::TLSv1_2),
    ] {
        for name in ["kubernetes.default.svc", "localhost", "127.0.0.1", "k3rs.test", "edge-1"] {
            let connector = client(&dir, Some((&admin.0, &admin.1)), versions);
            let (seen, talked) = handshake(&pki, connector, name).await;
            talked.unwrap();
            let seen = seen.unwrap();
            assert_eq!(seen.identity.as_ref(), Some(&want), "{name}");
            assert_eq!(seen.alpn.as_deref(), Some(&b"h2"[..]));
            assert_eq!(seen.version, Some(version));
        }
    }

    // Every component identity works the same way.
    let kubelet = (dir.join("client-kubelet.crt"), dir.join("client-kubelet.key"));
    let connector = client(&dir, Some((&kubelet.0, &kubelet.1)), rustls::DEFAULT_VERSIONS);
    let (seen, talked) = handshake(&pki, connector, "kubernetes").await;
    talked.unwrap();
    assert_eq!(seen.unwrap().identity, Some(pki.user_info(ClientIdentity::Kubelet)));
}

#[tokio::test]
async fn a_client_without_a_certificate_completes_the_handshake() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki::ensure(&config(tmp.path())).unwrap();
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let (seen, talked) = handshake(&pki, client(pki.dir(), None, versions), "kubernetes.default").await;
        talked.unwrap();
        assert_eq!(seen.unwrap().identity, None);
    }
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki::ensure(&config(tmp.path())).unwrap();
    // Another cluster's PKI: same names, different CAs.
    let other_tmp = tempfile::tempdir().unwrap();
    let other = pki::ensure(&config(other_tmp.path())).unwrap();
    let foreign = (other.dir().join("client-admin.crt"), other.dir().join("client-admin.key"));
    // Its server certificate is not trusted either; the client trusts ours.
    let connector = client(pki.dir(), Some((&foreign.0, &foreign.1)), rustls::DEFAULT_VERSIONS);
    let (seen, talked) = handshake(&pki, connector, "kubernetes").await;
    let err = seen.unwrap_err();
    assert!(err.contains("invalid peer certificate") || err.contains("UnknownIssuer"), "{err}");
    assert!(talked.is_err());

    // And the client refuses a server whose certificate another CA signed.
    let connector = client(other.dir(), None, rustls::DEFAULT_VERSIONS);
    let (seen, talked) = handshake(&pki, connector, "kubernetes").await;
    assert!(talked.unwrap_err().contains("invalid peer certificate"));
    assert!(seen.is_err());
}

fn kubectl(args: &[&str]) -> std::process::Output {
    std::process::Command::new("kubectl").args(args).output().expect("run kubectl (it is on PATH)")
}

#[test]
fn kubectl_reads_the_written_kubeconfig_and_the_mode_is_honoured() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = pki::ensure(&config(tmp.path())).unwrap();
    for (mode, server) in [(0o600, "https://127.0.0.1:6443"), (0o644, "https://[::1]:16443")] {
        let path = tmp.path().join("etc/k3rs/k3rs.yaml");
        pki.write_kubeconfig(&path, mode, server).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, mode);

        let out = kubectl(&["config", "view", "--kubeconfig", path.to_str().unwrap(), "--raw", "-o", "json"]);
        assert!(out.status.success(), "kubectl: {}", String::from_utf8_lossy(&out.stderr));
        let view: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(view["current-context"], "default");
        assert_eq!(view["clusters"][0]["name"], "default");
        assert_eq!(view["clusters"][0]["cluster"]["server"], server);
        assert_eq!(view["contexts"][0]["context"]["user"], "default");
        use base64::Engine;
        let b64 =
            |v: &serde_json::Value| base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        assert_eq!(b64(&view["clusters"][0]["cluster"]["certificate-authority-data"]), pki.server_ca_pem().as_bytes());
        let cert_pem = b64(&view["users"][0]["user"]["client-certificate-data"]);
        assert_eq!(cert_pem, fs::read(pki.dir().join("client-admin.crt")).unwrap());
        assert_eq!(
            b64(&view["users"][0]["user"]["client-key-data"]),
            fs::read(pki.dir().join("client-admin.key")).unwrap()
        );
    }
}

/// kubectl, with the written kubeconfig, trusts the serving certificate and presents the
/// admin certificate: a small HTTPS server on the PKI's configuration answers with the user
/// it authenticated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_talks_to_a_server_with_this_tls_configuration() {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let tmp = tempfile::tempdir().unwrap();
    let pki = pki::ensure(&config(tmp.path())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(pki.server_tls_config());
    let server = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let user = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| pki::identity_from_cert(c).unwrap());
                let protocol = tls.get_ref().1.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned());
                let service = service_fn(move |_req| {
                    let body = format!("{:?} {:?}", user, protocol);
                    async move { Ok::<_, std::convert::Infallible>(hyper::Response::new(body)) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });

    let path = tmp.path().join("kubeconfig");
    pki.write_kubeconfig(&path, 0o600, &format!("https://127.0.0.1:{port}")).unwrap();
    let kubeconfig = path.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || kubectl(&["--kubeconfig", &kubeconfig, "get", "--raw", "/whoami"]))
        .await
        .unwrap();
    server.abort();
    assert!(out.status.success(), "kubectl: {}", String::from_utf8_lossy(&out.stderr));
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains(r#"name: "system:admin", groups: ["system:masters"]"#), "{body}");
    assert!(body.contains(r#"Some("h2")"#), "kubectl speaks HTTP/2 over ALPN: {body}");
}
