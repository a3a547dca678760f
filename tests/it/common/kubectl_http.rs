//! A test API served over plain HTTP on 127.0.0.1, and the real kubectl run against it with
//! a private kubeconfig, home and cache, for tests of one piece of the API server (discovery,
//! OpenAPI, Tables, protobuf bodies) without TLS or a whole server.

use std::path::{Path, PathBuf};

use axum::Router;
use k3rs::apiserver::Identity;

/// The cluster admin, as the admin kubeconfig authenticates.
pub fn admin() -> Identity {
    Identity::new("system:admin", &["system:masters", "system:authenticated"])
}

/// An installed kubectl version (`kubectl.1.27`...) beside the one on PATH.
pub fn kubectl(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).map(|d| d.join("kubectl")).find(|p| p.is_file());
    let default =
        std::fs::canonicalize(found.expect("kubectl must be on PATH for this test")).expect("resolve kubectl");
    let path = default.parent().expect("kubectl has a parent folder").join(name);
    assert!(path.is_file(), "{} is not installed", path.display());
    path
}

pub struct KubectlHttp {
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// Each kubectl binary gets a cache of its own: versions must not share cached documents.
    cache_per_binary: bool,
}

/// What a kubectl run printed.
pub struct KubectlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlHttp {
    /// Binds a free port, builds the app from the address clients use (`127.0.0.1:PORT`),
    /// serves it, and writes a kubeconfig for it (namespace `default`; a token keeps kubectl
    /// from prompting for a user name, nothing checks it).
    pub async fn serve(cache_per_binary: bool, app: impl FnOnce(String) -> Router) -> KubectlHttp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let port = listener.local_addr().expect("local address").port();
        let app = app(format!("127.0.0.1:{port}"));
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("test server stopped: {e}");
            }
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: k3rs\n  cluster:\n    server: http://127.0.0.1:{port}\n\
             contexts:\n- name: k3rs\n  context:\n    cluster: k3rs\n    namespace: default\n    user: test\n\
             current-context: k3rs\nusers:\n- name: test\n  user:\n    token: unused\n"
        );
        std::fs::write(dir.path().join("kubeconfig"), kubeconfig).expect("write kubeconfig");
        KubectlHttp { port, dir, cache_per_binary }
    }

    fn cache(&self, binary: &Path) -> PathBuf {
        if self.cache_per_binary {
            self.dir.path().join(format!("cache-{}", binary.file_name().and_then(|n| n.to_str()).unwrap_or("x")))
        } else {
            self.dir.path().join("cache")
        }
    }

    /// Runs a kubectl binary against the server.
    pub async fn run(&self, binary: &Path, args: &[&str]) -> KubectlOutput {
        let output = tokio::process::Command::new(binary)
            .args(args)
            .arg("--cache-dir")
            .arg(self.cache(binary))
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()));
        KubectlOutput {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Runs kubectl and returns its stdout; a failure fails the test with its output.
    pub async fn kubectl(&self, binary: &Path, args: &[&str]) -> String {
        let out = self.run(binary, args).await;
        assert!(
            out.success,
            "{} {args:?} against port {} failed\nstdout:\n{}\nstderr:\n{}",
            binary.display(),
            self.port,
            out.stdout,
            out.stderr
        );
        out.stdout
    }
}

/// Serves `api` over plain HTTP with every caller taken for `who` (kubectl sends no
/// credentials over HTTP, so each port stands for one caller).
pub async fn serve_as(api: &std::sync::Arc<k3rs::apiserver::ApiServer>, who: Identity) -> KubectlHttp {
    let served = api.clone();
    KubectlHttp::serve(false, move |_| {
        served.router().layer(axum::middleware::map_request(move |mut req: axum::extract::Request| {
            let who = who.clone();
            async move {
                req.extensions_mut().insert(who);
                req
            }
        }))
    })
    .await
}

/// One JSON request through the API server's router as `who`: the status and the body
/// (parsed, or as a string when it is not JSON).
pub async fn call(
    api: &std::sync::Arc<k3rs::apiserver::ApiServer>,
    who: Identity,
    method: axum::http::Method,
    uri: &str,
    body: serde_json::Value,
) -> (axum::http::StatusCode, serde_json::Value) {
    use tower::ServiceExt;
    let body = if body.is_null() {
        axum::body::Body::empty()
    } else {
        axum::body::Body::from(serde_json::to_vec(&body).expect("JSON"))
    };
    let mut req = axum::extract::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body)
        .expect("a request");
    req.extensions_mut().insert(who);
    let resp = api.router().oneshot(req).await.expect("the router answers");
    let code = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("the body");
    (code, serde_json::from_slice(&bytes).unwrap_or_else(|_| serde_json::json!(String::from_utf8_lossy(&bytes))))
}
