//! The ingress in process against a real API server (started as `k3rs server` starts its
//! control plane): Ingresses, selector-less Services and hand-made EndpointSlices pointing at
//! small HTTP servers on 127.0.0.1 that answer with their own name; requests through the
//! ingress' plain and TLS listeners on ephemeral ports.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k3rs::apiserver::Identity;
use k3rs::controllers::runtime::{Context, Stop};
use k8s_openapi::api::core::v1::{Event, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::controllers::{cluster, within, Cluster};

const NODE_IP: &str = "192.0.2.10";
const WAIT: Duration = Duration::from_secs(10);

type Body = BoxBody<Bytes, hyper::Error>;

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).map_err(|never| match never {}).boxed()
}

/// A backend answering with its name (first line) and the headers the ingress set; `/slow`
/// waits 3 s, `/long` sends a line, waits, and sends another; `/echo` streams the request
/// body back; `/ws` upgrades and echoes bytes.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(name, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

async fn answer(name: &'static str, mut req: Request<Incoming>) -> Result<Response<Body>, hyper::Error> {
    match req.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Ok(Response::new(full(format!("{name}\n"))))
        }
        "/long" => {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, hyper::Error>>(2);
            tokio::spawn(async move {
                let _ = tx.send(Ok(Frame::data(Bytes::from(format!("{name} start\n"))))).await;
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let _ = tx.send(Ok(Frame::data(Bytes::from(format!("{name} end\n"))))).await;
            });
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            Ok(Response::new(StreamBody::new(stream).boxed()))
        }
        "/echo" => Ok(Response::new(req.into_body().boxed())),
        "/ws" => {
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut resp = Response::new(full(""));
            *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            resp.headers_mut().insert("connection", "upgrade".parse().expect("value"));
            resp.headers_mut().insert("upgrade", "echo".parse().expect("value"));
            Ok(resp)
        }
        _ => {
            let mut text = format!("{name}\n");
            for h in
                ["host", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-port", "x-real-ip"]
            {
                let v = req.headers().get(h).and_then(|v| v.to_str().ok()).unwrap_or("-");
                text.push_str(&format!("{h}: {v}\n"));
            }
            Ok(Response::new(full(text)))
        }
    }
}

/// A port nothing listens on.
async fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    l.local_addr().expect("addr")
}

struct Env {
    c: Cluster,
    http: SocketAddr,
    https: SocketAddr,
}

async fn env() -> Env {
    let c = cluster().await;
    let identity = Identity::new("system:kube-controller-manager", &["system:authenticated"]);
    let (ctx, _failed) = Context::in_process(&c.api, identity, Stop::never(), String::new());
    let mut cfg = k3rs::ingress::Config::new(0, 0, NODE_IP.parse().expect("ip"));
    cfg.http = "127.0.0.1:0".parse().expect("addr");
    cfg.https = "127.0.0.1:0".parse().expect("addr");
    cfg.response_timeout = Duration::from_secs(1);
    let started = k3rs::ingress::start(ctx, cfg).await.expect("ingress starts");
    Env { c, http: started.http, https: started.https }
}

/// A selector-less Service `name` (port 80, named `http`) with one EndpointSlice per target.
async fn service(c: &Cluster, name: &str, targets: &[SocketAddr]) {
    let svc: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let s = json!({"metadata": {"name": name}, "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}});
    svc.create(&PostParams::default(), &serde_json::from_value(s).expect("service")).await.expect("create service");
    let slices: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    for (i, t) in targets.iter().enumerate() {
        let s = json!({"metadata": {"name": format!("{name}-{i}"), "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [t.ip().to_string()], "conditions": {"ready": true}}],
            "ports": [{"name": "http", "port": t.port(), "protocol": "TCP"}]});
        slices.create(&PostParams::default(), &serde_json::from_value(s).expect("slice")).await.expect("create slice");
    }
}

async fn create_ingress(c: &Cluster, v: serde_json::Value) {
    let api: Api<Ingress> = Api::namespaced(c.client.clone(), "default");
    api.create(&PostParams::default(), &serde_json::from_value(v).expect("ingress")).await.expect("create ingress");
}

fn rule(host: &str, paths: &[(&str, &str, &str)]) -> serde_json::Value {
    let paths: Vec<_> = paths
        .iter()
        .map(|(p, kind, svc)| {
            json!({"path": p, "pathType": kind, "backend": {"service": {"name": svc, "port": {"name": "http"}}}})
        })
        .collect();
    let mut r = json!({"http": {"paths": paths}});
    if !host.is_empty() {
        r["host"] = json!(host);
    }
    r
}

/// One request on a fresh HTTP/1.1 connection: status and body.
async fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let stream = TcpStream::connect(addr).await.expect("connect to the ingress");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder().uri(path).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send.send_request(req.body(Empty::<Bytes>::new()).expect("request")).await.expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// The name of the backend that answered (its first line), or the status and body.
async fn who(addr: SocketAddr, host: &str, path: &str) -> String {
    let (status, body) = get(addr, host, path, &[]).await;
    if status == StatusCode::OK {
        body.lines().next().unwrap_or("").to_string()
    } else {
        format!("{} {}", status.as_u16(), body.trim())
    }
}

async fn wait_for(addr: SocketAddr, host: &str, path: &str, want: &str) {
    within(WAIT, &format!("{host}{path} -> {want}"), || async {
        let got = who(addr, host, path).await;
        (got == want).then_some(())
    })
    .await;
}

async fn warnings(c: &Cluster, ingress: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let list = api.list(&ListParams::default()).await.expect("events");
    list.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(ingress) && e.type_.as_deref() == Some("Warning"))
        .map(|e| e.message.unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routes_by_host_and_path_with_upstream_precedence_and_errors() {
    let e = env().await;
    let c = &e.c;
    // The boot-time class is there, and the default.
    let classes: Api<IngressClass> = Api::all(c.client.clone());
    let class = classes.get("k3rs").await.expect("IngressClass k3rs");
    assert_eq!(class.spec.and_then(|s| s.controller).as_deref(), Some("k3rs.io/ingress"));

    for (name, b) in [("a", "a"), ("b", "b"), ("c", "c"), ("d", "d"), ("w", "w"), ("def", "def")] {
        service(c, name, &[backend(b).await]).await;
    }
    service(c, "dead", &[dead_port().await]).await;
    service(c, "rr", &[backend("rr1").await, dead_port().await, backend("rr2").await]).await;
    create_ingress(
        c,
        json!({"metadata": {"name": "main"}, "spec": {
            "defaultBackend": {"service": {"name": "def", "port": {"number": 80}}},
            "rules": [
                rule("app.example.com", &[("/", "Prefix", "a"), ("/api", "Prefix", "b"), ("/api", "Exact", "c"), ("/api/v2", "ImplementationSpecific", "d")]),
                rule("*.example.com", &[("/", "Prefix", "w")]),
                rule("err.example.com", &[("/missing", "Prefix", "nosuch"), ("/dead", "Prefix", "dead"), ("/rr", "Prefix", "rr"), ("/slow", "Prefix", "a")]),
            ]}}),
    )
    .await;
    create_ingress(
        c,
        json!({"metadata": {"name": "other-class"}, "spec": {"ingressClassName": "nginx",
            "rules": [rule("nginx.test", &[("/", "Prefix", "a")])]}}),
    )
    .await;
    let h = e.http;
    wait_for(h, "app.example.com", "/", "a").await;
    // Longest prefix; Exact over Prefix on a tie; element-wise prefixes.
    assert_eq!(who(h, "app.example.com", "/api").await, "c");
    assert_eq!(who(h, "app.example.com", "/api/").await, "b");
    assert_eq!(who(h, "app.example.com", "/api/x").await, "b");
    assert_eq!(who(h, "app.example.com", "/apix").await, "a");
    assert_eq!(who(h, "app.example.com", "/api/v2/items").await, "d");
    assert_eq!(who(h, "APP.example.com:80", "/").await, "a");
    // Exact host over the wildcard; the wildcard covers one label only.
    assert_eq!(who(h, "other.example.com", "/x").await, "w");
    assert_eq!(who(h, "deep.other.example.com", "/x").await, "def");
    // No rule for the host: the default backend. An Ingress of another class is not ours.
    assert_eq!(who(h, "unknown.test", "/").await, "def");
    assert_eq!(who(h, "nginx.test", "/").await, "def");

    // 503 naming the missing Service, with a Warning Event on the Ingress.
    let got = who(h, "err.example.com", "/missing").await;
    assert!(got.starts_with("503 ") && got.contains("service default/nosuch not found"), "{got}");
    let events = within(WAIT, "a warning event", || async {
        let w = warnings(c, "main").await;
        w.iter().any(|m| m.contains("default/nosuch")).then_some(w)
    })
    .await;
    assert!(!events.is_empty());
    // 502 when no endpoint accepts a connection.
    let got = who(h, "err.example.com", "/dead").await;
    assert!(got.starts_with("502 ") && got.contains("default/dead"), "{got}");
    // A failed connect moves on to the next endpoint; requests go round robin.
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(who(h, "err.example.com", "/rr").await);
    }
    assert!(seen.iter().all(|s| s == "rr1" || s == "rr2"), "{seen:?}");
    assert!(seen.contains(&"rr1".to_string()) && seen.contains(&"rr2".to_string()), "{seen:?}");
    // 504 when the backend does not answer in time (1 s here).
    let got = who(h, "err.example.com", "/slow").await;
    assert!(got.starts_with("504 "), "{got}");

    // X-Forwarded-* as ingress-nginx sets them, Host passed through.
    let (status, body) = get(h, "app.example.com", "/", &[("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(status, StatusCode::OK);
    let port = h.port().to_string();
    for line in [
        "host: app.example.com".to_string(),
        "x-forwarded-for: 203.0.113.9, 127.0.0.1".to_string(),
        "x-forwarded-proto: http".to_string(),
        "x-forwarded-host: app.example.com".to_string(),
        format!("x-forwarded-port: {port}"),
        "x-real-ip: 127.0.0.1".to_string(),
    ] {
        assert!(body.lines().any(|l| l == line), "missing {line:?} in {body}");
    }

    // No rule and no default backend: 404.
    let api: Api<Ingress> = Api::namespaced(c.client.clone(), "default");
    api.patch("main", &PatchParams::default(), &Patch::Merge(json!({"spec": {"defaultBackend": null}})))
        .await
        .expect("drop the default backend");
    within(WAIT, "404 without a default backend", || async {
        who(h, "unknown.test", "/").await.starts_with("404 ").then_some(())
    })
    .await;

    // status.loadBalancer carries the node address.
    within(WAIT, "status.loadBalancer", || async {
        let ing = api.get("main").await.ok()?;
        let ip = ing.status?.load_balancer?.ingress?.first()?.ip.clone()?;
        (ip == NODE_IP).then_some(())
    })
    .await;
    let other = api.get("other-class").await.expect("ingress");
    assert!(other.status.and_then(|s| s.load_balancer).and_then(|l| l.ingress).is_none());

    // A route change while a long response is in flight: the response completes, and new
    // requests take the new route.
    let stream = TcpStream::connect(h).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let req =
        Request::builder().uri("/long").header("host", "app.example.com").body(Empty::<Bytes>::new()).expect("req");
    let resp = send.send_request(req).await.expect("long response");
    let mut body = resp.into_body();
    let first = body.frame().await.expect("a frame").expect("data").into_data().expect("data");
    assert_eq!(&first[..], b"a start\n");
    let patched = rule("app.example.com", &[("/", "Prefix", "b")]);
    api.patch("main", &PatchParams::default(), &Patch::Merge(json!({"spec": {"rules": [patched]}})))
        .await
        .expect("change the route");
    wait_for(h, "app.example.com", "/", "b").await;
    let rest = body.collect().await.expect("rest of the long body").to_bytes();
    assert_eq!(&rest[..], b"a end\n");
}

/// Accepts any server certificate and keeps none: the test reads the one it got.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One HTTPS request with `sni`: the server's leaf certificate, the HTTP version used, the
/// status and the body.
async fn tls_get(addr: SocketAddr, sni: &str, path: &str, alpn: &[&[u8]]) -> (Vec<u8>, Version, StatusCode, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).expect("server name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.expect("TLS handshake");
    let leaf = tls.get_ref().1.peer_certificates().expect("certificates")[0].to_vec();
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let resp = if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await.expect("h2 handshake");
        tokio::spawn(conn);
        let req = Request::builder().uri(format!("https://{sni}{path}")).body(Empty::<Bytes>::new()).expect("req");
        send.send_request(req).await.expect("h2 response")
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("handshake");
        tokio::spawn(conn);
        let req = Request::builder().uri(path).header("host", sni).body(Empty::<Bytes>::new()).expect("req");
        send.send_request(req).await.expect("response")
    };
    let version = resp.version();
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (leaf, version, status, String::from_utf8_lossy(&body).into_owned())
}

fn tls_secret(name: &str, host: &str) -> (serde_json::Value, Vec<u8>) {
    use base64::Engine;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let cert = rcgen::CertificateParams::new(vec![host.to_string()]).expect("params").self_signed(&key).expect("cert");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let v = json!({"metadata": {"name": name}, "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(&cert.pem()), "tls.key": b64(&key.serialize_pem())}});
    (v, cert.der().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn terminates_tls_by_sni_with_a_default_certificate_and_speaks_http2() {
    let e = env().await;
    let c = &e.c;
    service(c, "one", &[backend("one").await]).await;
    service(c, "two", &[backend("two").await]).await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "default");
    let (s1, der1) = tls_secret("one-tls", "one.example.com");
    let (s2, der2) = tls_secret("two-tls", "two.example.com");
    for s in [s1, s2] {
        secrets
            .create(&PostParams::default(), &serde_json::from_value(s).expect("secret"))
            .await
            .expect("create secret");
    }
    let bad = json!({"metadata": {"name": "bad-tls"}, "type": "kubernetes.io/tls",
        "data": {"tls.crt": "bm90IGEgY2VydA==", "tls.key": "bm90IGEga2V5"}});
    secrets
        .create(&PostParams::default(), &serde_json::from_value(bad).expect("secret"))
        .await
        .expect("create bad secret");
    create_ingress(
        c,
        json!({"metadata": {"name": "tls"}, "spec": {
            "tls": [{"hosts": ["one.example.com"], "secretName": "one-tls"},
                    {"hosts": ["two.example.com"], "secretName": "two-tls"},
                    {"hosts": ["three.example.com"], "secretName": "bad-tls"}],
            "rules": [rule("one.example.com", &[("/", "Prefix", "one")]),
                      rule("two.example.com", &[("/", "Prefix", "two")]),
                      rule("three.example.com", &[("/", "Prefix", "one")])]}}),
    )
    .await;
    let s = e.https;
    let (leaf, _, _, _) = within(WAIT, "the certificate of one.example.com", || async {
        let r = tls_get(s, "one.example.com", "/", &[b"http/1.1"]).await;
        (r.0 == der1).then_some(r)
    })
    .await;
    assert_eq!(leaf, der1);
    let (leaf, version, status, body) = tls_get(s, "two.example.com", "/", &[b"http/1.1"]).await;
    assert_eq!((leaf == der2, version, status), (true, Version::HTTP_11, StatusCode::OK));
    assert!(body.starts_with("two\n") && body.contains("x-forwarded-proto: https"), "{body}");
    // HTTP/2 by ALPN.
    let (leaf, version, status, body) = tls_get(s, "one.example.com", "/", &[b"h2", b"http/1.1"]).await;
    assert_eq!((leaf == der1, version, status), (true, Version::HTTP_2, StatusCode::OK));
    assert!(body.starts_with("one\n") && body.contains("host: one.example.com"), "{body}");
    // Any other name, and the host whose Secret is malformed, get the default certificate.
    for name in ["nothing.example.com", "three.example.com"] {
        let (leaf, _, _, _) = tls_get(s, name, "/", &[b"http/1.1"]).await;
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf).expect("certificate");
        assert!(cert.subject().to_string().contains("K3RS INGRESS DEFAULT CERT"), "{name}: {}", cert.subject());
    }
    within(WAIT, "a warning about the malformed Secret", || async {
        warnings(c, "tls").await.iter().any(|m| m.contains("default/bad-tls")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tunnels_upgrades_and_streams_bodies_both_ways() {
    let e = env().await;
    let c = &e.c;
    service(c, "echo", &[backend("echo").await]).await;
    create_ingress(c, json!({"metadata": {"name": "echo"}, "spec": {"rules": [rule("echo.example.com", &[("/", "Prefix", "echo")])]}}))
        .await;
    wait_for(e.http, "echo.example.com", "/", "echo").await;

    // An upgrade: the 101 comes back and bytes flow both ways.
    let mut s = TcpStream::connect(e.http).await.expect("connect");
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: echo.example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
        .await
        .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).await.expect("read the response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: echo"), "{head}");
    for msg in [&b"hello"[..], b"and again"] {
        s.write_all(msg).await.expect("write through the tunnel");
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).await.expect("read the echo");
        assert_eq!(back, msg);
    }

    // A request body streamed through and echoed back a chunk at a time: the second chunk is
    // sent only after the first came back, which a proxy buffering whole bodies would hang on.
    let stream = TcpStream::connect(e.http).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
    let req = Request::builder()
        .method("POST")
        .uri("/echo")
        .header("host", "echo.example.com")
        .body(StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
        .expect("request");
    tx.send(Ok(Frame::data(Bytes::from_static(b"first")))).await.expect("send");
    let resp = tokio::time::timeout(WAIT, send.send_request(req)).await.expect("in time").expect("response");
    let mut body = resp.into_body();
    let chunk = tokio::time::timeout(WAIT, body.frame()).await.expect("in time").expect("frame").expect("data");
    assert_eq!(chunk.into_data().expect("data"), Bytes::from_static(b"first"));
    tx.send(Ok(Frame::data(Bytes::from_static(b"second")))).await.expect("send");
    drop(tx);
    let rest = tokio::time::timeout(WAIT, body.collect()).await.expect("in time").expect("rest").to_bytes();
    assert_eq!(&rest[..], b"second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn canary_by_weight_header_and_cookie() {
    let e = env().await;
    let c = &e.c;
    service(c, "stable", &[backend("stable").await]).await;
    service(c, "canary", &[backend("canary").await]).await;
    create_ingress(c, json!({"metadata": {"name": "web"}, "spec": {"rules": [rule("web.example.com", &[("/", "Prefix", "stable")])]}}))
        .await;
    create_ingress(
        c,
        json!({"metadata": {"name": "web-canary", "annotations": {
                "ingress.k3rs.io/canary": "true", "ingress.k3rs.io/canary-weight": "20",
                "ingress.k3rs.io/canary-by-header": "X-Canary", "ingress.k3rs.io/canary-by-cookie": "canary"}},
            "spec": {"rules": [rule("web.example.com", &[("/", "Prefix", "canary")])]}}),
    )
    .await;
    let h = e.http;
    within(WAIT, "the canary in force", || async {
        get(h, "web.example.com", "/", &[("x-canary", "always")]).await.1.starts_with("canary\n").then_some(())
    })
    .await;
    // Weight 20 of 100: 20 % ± 5 % of 1,000 requests, over keep-alive connections.
    let mut canary = 0;
    let stream = TcpStream::connect(h).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    for _ in 0..1000 {
        send.ready().await.expect("connection ready");
        let req =
            Request::builder().uri("/").header("host", "web.example.com").body(Empty::<Bytes>::new()).expect("req");
        let resp = send.send_request(req).await.expect("response");
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        if body.starts_with(b"canary\n") {
            canary += 1;
        }
    }
    assert!((150..=250).contains(&canary), "{canary} of 1000 went to the canary");
    // Header before cookie before weight; "never" keeps a request on the stable backend.
    let first = |r: (StatusCode, String)| r.1.lines().next().unwrap_or("").to_string();
    for _ in 0..20 {
        assert_eq!(
            first(get(h, "web.example.com", "/", &[("x-canary", "always"), ("cookie", "canary=never")]).await),
            "canary"
        );
        assert_eq!(
            first(get(h, "web.example.com", "/", &[("x-canary", "never"), ("cookie", "canary=always")]).await),
            "stable"
        );
        assert_eq!(first(get(h, "web.example.com", "/", &[("cookie", "a=b; canary=always")]).await), "canary");
        assert_eq!(first(get(h, "web.example.com", "/", &[("cookie", "canary=never")]).await), "stable");
    }
}

/// A raw HTTP/1.1 backend that counts its connections and answers the first `answered`
/// requests of each with its connection number, then reads the next request's head and
/// closes the connection without a word (a keep-alive connection closed under a request).
async fn counting_backend(answered: usize) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::spawn(async move {
                let mut served = 0;
                loop {
                    // The request head (the tests send no bodies that must be read).
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    if served == answered {
                        return;
                    }
                    served += 1;
                    let body = format!("conn {n}\n");
                    let resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                    if stream.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, count)
}

/// Sends `method path` on an open client connection: status and body.
async fn on_conn(
    send: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
    method: &str,
    body: &'static str,
) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri("/")
        .header("host", host)
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("request");
    tokio::time::timeout(WAIT, send.ready()).await.expect("in time").expect("the client connection is open");
    let resp = tokio::time::timeout(WAIT, send.send_request(req)).await.expect("in time").expect("response");
    let status = resp.status();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn client_conn(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let stream = TcpStream::connect(addr).await.expect("connect to the ingress");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    send
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keeps_backend_connections_per_client_and_repeats_only_safe_requests() {
    use std::sync::atomic::Ordering;
    let e = env().await;
    let c = &e.c;
    let (steady, steady_conns) = counting_backend(usize::MAX).await;
    let (flaky, flaky_conns) = counting_backend(1).await;
    service(c, "steady", &[steady]).await;
    service(c, "flaky", &[flaky]).await;
    create_ingress(
        c,
        json!({"metadata": {"name": "keepalive"}, "spec": {"rules": [
            rule("steady.example.com", &[("/", "Prefix", "steady")]),
            rule("flaky.example.com", &[("/", "Prefix", "flaky")]),
        ]}}),
    )
    .await;
    within(WAIT, "the route", || async {
        (who(e.http, "steady.example.com", "/").await.starts_with("conn ")).then_some(())
    })
    .await;

    // Requests on one client connection share one backend connection; another client gets
    // its own.
    let before = steady_conns.load(Ordering::SeqCst);
    let mut first = client_conn(e.http).await;
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let (status, body) = on_conn(&mut first, "steady.example.com", "GET", "").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        bodies.push(body);
    }
    assert!(bodies.iter().all(|b| b == &bodies[0]), "one backend connection: {bodies:?}");
    assert_eq!(steady_conns.load(Ordering::SeqCst), before + 1);
    let mut second = client_conn(e.http).await;
    let (status, other) = on_conn(&mut second, "steady.example.com", "GET", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(other, bodies[0]);
    assert_eq!(steady_conns.load(Ordering::SeqCst), before + 2);

    // The flaky backend drops each connection under its second request. A GET lost that way
    // is sent again on a new connection; a POST is not repeated: 502.
    let mut client = client_conn(e.http).await;
    let (status, one) = on_conn(&mut client, "flaky.example.com", "GET", "").await;
    assert_eq!((status, one.as_str()), (StatusCode::OK, "conn 1\n"));
    let (status, two) = on_conn(&mut client, "flaky.example.com", "GET", "").await;
    assert_eq!((status, two.as_str()), (StatusCode::OK, "conn 2\n"), "the GET was repeated on a new connection");
    let (status, post) = on_conn(&mut client, "flaky.example.com", "POST", "x").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{post}");
    assert!(post.contains("default/flaky"), "{post}");
    assert_eq!(flaky_conns.load(Ordering::SeqCst), 2);
}
