//! A throwaway etcd server for one test: Debian's `/usr/bin/etcd` (3.4) on free loopback
//! ports with its data in a temporary directory (on tmpfs when `/dev/shm` exists, so fsync
//! costs nothing), killed and removed when the [`EtcdServer`] is dropped.
//!
//! It runs with a 10 ms heartbeat and a 100 ms election timeout: a single member elects
//! itself within about 100 ms of starting, and etcd's minimum lease TTL, which is 1.5
//! election timeouts rounded up to whole seconds (2 s with the default 1 s timeout),
//! becomes 1 s.
//!
//! Many servers may run at once, one per test: ports are picked by binding port 0 and
//! releasing it, and a start that loses its ports to another process is retried on new ones.
//!
//! [`EtcdServer::start_tls`] serves clients over https instead, with a server certificate
//! from a [`TestPki`] and client certificates required (`--client-cert-auth`). Members
//! still talk to each other over plain http: a single member has no peers.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k3rs::etcdproto::{KvClient, PbRangeRequest};
use tempfile::TempDir;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::tls::TestPki;

const ETCD: &str = "/usr/bin/etcd";
/// Starts whose ports were taken before etcd bound them are retried this many times.
const ATTEMPTS: usize = 8;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running etcd; see the module documentation.
pub struct EtcdServer {
    child: Child,
    /// `http://127.0.0.1:PORT` (`https://` for [`EtcdServer::start_tls`]), the client URL.
    pub endpoint: String,
    dir: TempDir,
    /// How the readiness probe reaches a TLS server: the CA and the client certificate.
    probe_tls: Option<ClientTlsConfig>,
}

impl EtcdServer {
    /// Starts a fresh single-member cluster and waits until it serves requests.
    ///
    /// Panics (failing the test) when etcd cannot be started, with its log in the message.
    pub async fn start() -> EtcdServer {
        Self::launch(None).await
    }

    /// Like [`EtcdServer::start`], serving clients over https with `pki`'s server
    /// certificate and accepting only clients whose certificate `pki`'s CA signed.
    pub async fn start_tls(pki: &TestPki) -> EtcdServer {
        Self::launch(Some(pki)).await
    }

    async fn launch(pki: Option<&TestPki>) -> EtcdServer {
        let probe_tls = pki.map(|pki| {
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read_file(&pki.ca_file)))
                .identity(Identity::from_pem(read_file(&pki.client_cert_file), read_file(&pki.client_key_file)))
        });
        let scheme = if pki.is_some() { "https" } else { "http" };
        let mut last_log = String::new();
        for _ in 0..ATTEMPTS {
            let dir = temp_dir();
            let [client_port, peer_port] = free_ports();
            let endpoint = format!("{scheme}://127.0.0.1:{client_port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let log_path = dir.path().join("etcd.log");
            let log = File::create(&log_path).expect("create the etcd log file");
            let log_err = log.try_clone().expect("clone the etcd log file");
            let mut cmd = Command::new(ETCD);
            cmd.arg("--name=test")
                .arg(format!("--data-dir={}", dir.path().join("data").display()))
                .arg(format!("--listen-client-urls={endpoint}"))
                .arg(format!("--advertise-client-urls={endpoint}"))
                .arg(format!("--listen-peer-urls={peer}"))
                .arg(format!("--initial-advertise-peer-urls={peer}"))
                .arg(format!("--initial-cluster=test={peer}"))
                .arg("--initial-cluster-state=new")
                .arg("--heartbeat-interval=10")
                .arg("--election-timeout=100")
                .arg("--logger=zap")
                .arg("--log-outputs=stderr")
                .arg("--log-level=warn")
                .args(pki.map(tls_args).unwrap_or_default())
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err);
            // SAFETY: prctl is async-signal-safe and touches nothing of the parent. It makes
            // the kernel kill etcd if the test process dies without running Drop.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            let child = cmd.spawn().unwrap_or_else(|e| panic!("start {ETCD}: {e}"));
            let mut server = EtcdServer { child, endpoint, dir, probe_tls: probe_tls.clone() };
            match server.wait_ready().await {
                Ok(()) => return server,
                Err(exited) => {
                    last_log = read_log(&log_path);
                    let lost_port = last_log.contains("address already in use");
                    drop(server);
                    if !(exited && lost_port) {
                        panic!("etcd did not become ready; its log:\n{last_log}");
                    }
                }
            }
        }
        panic!("etcd lost its ports {ATTEMPTS} times in a row; last log:\n{last_log}");
    }

    /// The data directory's parent (holds `etcd.log` and `data/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until etcd answers a read. `Err(true)` when it exited, `Err(false)` on timeout.
    async fn wait_ready(&mut self) -> Result<(), bool> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Err(true);
            }
            // etcd accepts connections before it has a leader and answers them only once
            // it has one, so each probe gets a short deadline.
            let probe = async {
                let mut endpoint = Endpoint::from_shared(self.endpoint.clone()).ok()?;
                if let Some(tls) = self.probe_tls.clone() {
                    endpoint = endpoint.tls_config(tls).ok()?;
                }
                let mut client = KvClient::new(endpoint.connect().await.ok()?);
                client.range(PbRangeRequest { key: b"ready-probe".to_vec(), ..Default::default() }).await.ok()
            };
            if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(500), probe).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(false)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcd's flags for serving clients over TLS and requiring their certificates.
fn tls_args(pki: &TestPki) -> Vec<String> {
    vec![
        format!("--cert-file={}", pki.server_cert_file.display()),
        format!("--key-file={}", pki.server_key_file.display()),
        format!("--trusted-ca-file={}", pki.ca_file.display()),
        "--client-cert-auth".to_string(),
    ]
}

fn read_file(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn temp_dir() -> TempDir {
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("k3rs-etcd-");
        b
    };
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = builder.tempdir_in(shm) {
            return dir;
        }
    }
    builder.tempdir().expect("create a temporary directory for etcd")
}

/// Two distinct ports nothing listens on right now (they may be taken again before etcd
/// binds them). Both are held until both are known, so they differ.
fn free_ports() -> [u16; 2] {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let held = [bind(), bind()];
    held.map(|l| l.local_addr().expect("read the bound address").port())
}

fn read_log(path: &Path) -> String {
    let mut log = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut log);
    }
    log
}
