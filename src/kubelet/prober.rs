//! Container probes, as upstream's kubelet runs them: startup, readiness and liveness
//! probes with exec, httpGet, tcpSocket and grpc actions, their timing
//! (initialDelaySeconds, periodSeconds, timeoutSeconds) and thresholds
//! (successThreshold, failureThreshold).
//!
//! Network probes are made by k3rs itself, from the node to the pod's address (the pod
//! network is routed on the node), so a probe costs no process; exec probes run in the
//! container through its shim. [`Tracker`] is the pure part: when a probe is due and what
//! its results add up to.

use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::{Container, ContainerPort, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The three kinds of probe, in the order upstream's worker consults them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Startup,
    Readiness,
    Liveness,
}

impl Kind {
    /// As events name it: `Readiness probe failed: ...`.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Readiness => "Readiness",
            Kind::Liveness => "Liveness",
        }
    }

    /// The container's probe of this kind.
    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Startup => c.startup_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
            Kind::Liveness => c.liveness_probe.as_ref(),
        }
    }
}

/// What one run of a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Failed, with upstream's wording of why (the event's text after `... probe failed: `).
    Failure(String),
}

fn seconds(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
}

/// How long one run may take (timeoutSeconds, default 1 s).
pub fn timeout_of(p: &Probe) -> Duration {
    seconds(p.timeout_seconds, 1).max(Duration::from_secs(1))
}

/// One probe of one container attempt: when it is due and its current result.
#[derive(Clone, Debug)]
pub struct Tracker {
    kind: Kind,
    successes: i32,
    failures: i32,
    last_run: Option<Instant>,
    /// The result the kubelet acts on: `None` until the thresholds decide (upstream's
    /// initial results: not ready, live, not started).
    result: Option<bool>,
}

impl Tracker {
    pub fn new(kind: Kind) -> Tracker {
        Tracker { kind, successes: 0, failures: 0, last_run: None, result: None }
    }

    /// The result to act on now.
    pub fn passing(&self) -> bool {
        match self.result {
            Some(r) => r,
            // Live until shown otherwise; not ready, not started until shown.
            None => self.kind == Kind::Liveness,
        }
    }

    /// When the probe is next due, for a container that started at `started`.
    pub fn due_at(&self, p: &Probe, started: Instant) -> Instant {
        match self.last_run {
            None => started + seconds(p.initial_delay_seconds, 0),
            Some(last) => last + seconds(p.period_seconds, 10).max(Duration::from_secs(1)),
        }
    }

    /// Adds one run's outcome; returns true when the result the kubelet acts on changed.
    pub fn record(&mut self, p: &Probe, ok: bool, at: Instant) -> bool {
        self.last_run = Some(at);
        let before = self.passing();
        if ok {
            self.successes += 1;
            self.failures = 0;
            // Liveness and startup probes must have a success threshold of 1 (validation).
            if self.successes >= p.success_threshold.unwrap_or(1).max(1) {
                self.result = Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= p.failure_threshold.unwrap_or(3).max(1) {
                self.result = Some(false);
            }
        }
        before != self.passing()
    }

    /// Whether the thresholds have decided yet (a startup probe stops once they have said yes).
    pub fn decided(&self) -> Option<bool> {
        self.result
    }
}

/// Runs an exec action in the container: the command's exit code and output.
#[async_trait::async_trait]
pub trait Exec: Send + Sync {
    async fn exec(&self, command: Vec<String>, timeout: Duration) -> Result<(i32, String), String>;
}

/// Runs the probe's action once against a container of the pod at `pod_ip`.
pub async fn run(p: &Probe, c: &Container, pod_ip: &str, exec: &dyn Exec) -> Outcome {
    let timeout = timeout_of(p);
    if let Some(e) = &p.exec {
        let command = e.command.clone().unwrap_or_default();
        return match exec.exec(command.clone(), timeout).await {
            Ok((0, _)) => Outcome::Success,
            Ok((_, output)) => Outcome::Failure(output),
            Err(e) => Outcome::Failure(e),
        };
    }
    if let Some(h) = &p.http_get {
        return http_get(h, c, pod_ip, timeout).await;
    }
    if let Some(t) = &p.tcp_socket {
        let host = t.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_string());
        let port = match resolve_port(&t.port, c) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        let addr = join_host_port(&host, port);
        return match tokio::time::timeout(timeout, TcpStream::connect(&addr)).await {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {}", dial_error(&e))),
            Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if let Some(g) = &p.grpc {
        let service = g.service.clone().unwrap_or_default();
        return grpc(pod_ip, g.port, &service, timeout).await;
    }
    Outcome::Failure("probe has no action".into())
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A connect error as Go words it (`connect: connection refused`).
fn dial_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::HostUnreachable => "connect: no route to host".into(),
        std::io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".into(),
        _ => format!("connect: {e}"),
    }
}

/// A probe's port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => {
            u16::try_from(*n).ok().filter(|n| *n > 0).ok_or_else(|| format!("invalid port number: {n}"))
        }
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<u16>() {
                return Ok(n);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p: &&ContainerPort| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in {}", c.name))
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Where an httpGet action goes: scheme, host (the pod's address unless named), port and
/// path (with its leading slash).
fn http_target(h: &HTTPGetAction, c: &Container, pod_ip: &str) -> Result<(String, String, u16, String), String> {
    let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_ascii_lowercase();
    let host = h.host.clone().filter(|h| !h.is_empty()).unwrap_or_else(|| pod_ip.to_string());
    let port = resolve_port(&h.port, c)?;
    let mut path = h.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    Ok((scheme, host, port, path))
}

async fn http_get(h: &HTTPGetAction, c: &Container, pod_ip: &str, timeout: Duration) -> Outcome {
    let (scheme, host, port, path) = match http_target(h, c, pod_ip) {
        Ok(t) => t,
        Err(e) => return Outcome::Failure(e),
    };
    match http_request(h, &scheme, &host, port, &path, timeout).await {
        Ok(code) if (200..400).contains(&code) => Outcome::Success,
        Ok(code) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Err(e) => Outcome::Failure(e),
    }
}

/// An httpGet lifecycle hook: as upstream, any answer will do (the status is not looked
/// at); the error of a request that got none.
pub async fn http_hook(h: &HTTPGetAction, c: &Container, pod_ip: &str, timeout: Duration) -> Result<(), String> {
    let (scheme, host, port, path) = http_target(h, c, pod_ip)?;
    http_request(h, &scheme, &host, port, &path, timeout).await.map(|_| ())
}

/// One GET; its status code, or the error as Go's client words it.
async fn http_request(
    h: &HTTPGetAction,
    scheme: &str,
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> Result<u16, String> {
    let addr = join_host_port(host, port);
    let url = format!("{scheme}://{addr}{path}");
    match tokio::time::timeout(timeout, http_status(scheme, host, &addr, path, h)).await {
        Ok(Ok(code)) => Ok(code),
        Ok(Err(e)) => Err(format!("Get \"{url}\": {e}")),
        Err(_) => {
            Err(format!("Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"))
        }
    }
}

async fn http_status(scheme: &str, host: &str, addr: &str, path: &str, h: &HTTPGetAction) -> Result<u16, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| format!("dial tcp {addr}: {}", dial_error(&e)))?;
    let io: Box<dyn Io> = if scheme == "https" {
        // As upstream: the certificate is not verified.
        let config = crate::images::http::insecure_client_config()?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.map_err(|e| e.to_string())?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await.map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = hyper::Request::get(path);
    let mut has_host = false;
    let mut has_agent = false;
    let mut has_accept = false;
    for hd in h.http_headers.iter().flatten() {
        match hd.name.to_ascii_lowercase().as_str() {
            "host" => has_host = true,
            "user-agent" => has_agent = true,
            "accept" => has_accept = true,
            _ => {}
        }
        req = req.header(hd.name.as_str(), hd.value.as_str());
    }
    if !has_host {
        req = req.header(hyper::header::HOST, addr);
    }
    if !has_agent {
        req = req.header(hyper::header::USER_AGENT, "kube-probe/1.33");
    }
    if !has_accept {
        req = req.header(hyper::header::ACCEPT, "*/*");
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let code = resp.status().as_u16();
    // Upstream reads (at most 10 KiB of) the body before answering.
    let _ = resp.into_body().collect().await;
    Ok(code)
}

/// The standard gRPC health check (`grpc.health.v1.Health/Check`).
async fn grpc(pod_ip: &str, port: i32, service: &str, timeout: Duration) -> Outcome {
    #[derive(Clone, PartialEq, prost::Message)]
    struct HealthCheckRequest {
        #[prost(string, tag = "1")]
        service: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct HealthCheckResponse {
        #[prost(int32, tag = "1")]
        status: i32,
    }
    const SERVING: i32 = 1;
    let addr = join_host_port(pod_ip, u16::try_from(port).unwrap_or(0));
    let call = async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(timeout)
            .connect()
            .await
            .map_err(|_| {
                format!(
                    "timeout: failed to connect service {addr:?} within {}s: context deadline exceeded",
                    timeout.as_secs()
                )
            })?;
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.map_err(|e| e.to_string())?;
        let path = hyper::http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        let resp = client
            .unary(tonic::Request::new(HealthCheckRequest { service: service.to_string() }), path, codec)
            .await
            .map_err(|s| format!("error: health rpc failed: {}", s.message()))?;
        Ok::<i32, String>(resp.into_inner().status)
    };
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(SERVING)) => Outcome::Success,
        Ok(Ok(status)) => {
            Outcome::Failure(format!("service unhealthy (responded with \"{}\")", grpc_status_name(status)))
        }
        Ok(Err(e)) => Outcome::Failure(e),
        Err(_) => Outcome::Failure(format!("timeout: health rpc did not complete within {}s", timeout.as_secs())),
    }
}

fn grpc_status_name(status: i32) -> &'static str {
    match status {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "UNKNOWN",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    struct NoExec;
    #[async_trait::async_trait]
    impl Exec for NoExec {
        async fn exec(&self, command: Vec<String>, _timeout: Duration) -> Result<(i32, String), String> {
            match command.first().map(String::as_str) {
                Some("true") => Ok((0, String::new())),
                _ => Ok((1, "cat: can't open '/tmp/healthy': No such file or directory\n".into())),
            }
        }
    }

    #[test]
    fn thresholds_decide_and_initial_results_are_upstreams() {
        let p =
            probe(json!({"periodSeconds": 2, "initialDelaySeconds": 5, "failureThreshold": 2, "successThreshold": 2}));
        let t0 = Instant::now();
        let mut ready = Tracker::new(Kind::Readiness);
        assert!(!ready.passing());
        assert!(Tracker::new(Kind::Liveness).passing());
        assert!(!Tracker::new(Kind::Startup).passing());
        assert_eq!(ready.due_at(&p, t0), t0 + Duration::from_secs(5));
        // Two successes to be ready.
        assert!(!ready.record(&p, true, t0 + Duration::from_secs(5)));
        assert_eq!(ready.due_at(&p, t0), t0 + Duration::from_secs(7));
        assert!(ready.record(&p, true, t0 + Duration::from_secs(7)));
        assert!(ready.passing());
        // One failure is not enough to be unready; two are; a success in between resets.
        assert!(!ready.record(&p, false, t0 + Duration::from_secs(9)));
        assert!(!ready.record(&p, true, t0 + Duration::from_secs(11)));
        assert!(!ready.record(&p, false, t0 + Duration::from_secs(13)));
        assert!(ready.record(&p, false, t0 + Duration::from_secs(15)));
        assert!(!ready.passing());
        // Defaults: period 10 s, failure threshold 3.
        let d = probe(json!({}));
        let mut live = Tracker::new(Kind::Liveness);
        assert_eq!(live.due_at(&d, t0), t0);
        live.record(&d, false, t0);
        assert_eq!(live.due_at(&d, t0), t0 + Duration::from_secs(10));
        live.record(&d, false, t0);
        assert!(live.passing());
        assert!(live.record(&d, false, t0));
        assert_eq!(live.decided(), Some(false));
    }

    #[test]
    fn ports_resolve_by_number_or_name() {
        let c = container(json!({"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}));
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(resolve_port(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(resolve_port(&IntOrString::String("9090".into()), &c), Ok(9090));
        assert_eq!(
            resolve_port(&IntOrString::String("admin".into()), &c),
            Err("couldn't find port: admin in app".into())
        );
        assert_eq!(resolve_port(&IntOrString::Int(0), &c), Err("invalid port number: 0".into()));
    }

    #[tokio::test]
    async fn network_and_exec_actions_succeed_and_fail_in_upstreams_words() {
        let c = container(json!({"name": "app"}));
        // A listener that answers /ok with 200, everything else with 503.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else { return };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                        let code = if req.uri().path() == "/ok" && req.headers()["user-agent"] == "kube-probe/1.33" {
                            200
                        } else {
                            503
                        };
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder().status(code).body(Empty::<Bytes>::new()).unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        let http = |path: &str| probe(json!({"httpGet": {"path": path, "port": port}}));
        assert_eq!(run(&http("/ok"), &c, "127.0.0.1", &NoExec).await, Outcome::Success);
        assert_eq!(
            run(&http("/bad"), &c, "127.0.0.1", &NoExec).await,
            Outcome::Failure("HTTP probe failed with statuscode: 503".into())
        );
        let tcp = probe(json!({"tcpSocket": {"port": port}}));
        assert_eq!(run(&tcp, &c, "127.0.0.1", &NoExec).await, Outcome::Success);
        // A closed port: refused, as Go says it.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        assert_eq!(
            run(&probe(json!({"tcpSocket": {"port": closed}})), &c, "127.0.0.1", &NoExec).await,
            Outcome::Failure(format!("dial tcp 127.0.0.1:{closed}: connect: connection refused"))
        );
        assert_eq!(
            run(&probe(json!({"httpGet": {"path": "/ok", "port": closed}})), &c, "127.0.0.1", &NoExec).await,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{closed}/ok\": dial tcp 127.0.0.1:{closed}: connect: connection refused"
            ))
        );
        // exec: exit code 0 passes; otherwise the output is the message.
        assert_eq!(run(&probe(json!({"exec": {"command": ["true"]}})), &c, "", &NoExec).await, Outcome::Success);
        assert_eq!(
            run(&probe(json!({"exec": {"command": ["cat", "/tmp/healthy"]}})), &c, "", &NoExec).await,
            Outcome::Failure("cat: can't open '/tmp/healthy': No such file or directory\n".into())
        );
    }
}
