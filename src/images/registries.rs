//! Registry mirrors, rewrites and per-endpoint settings from k3s' `registries.yaml` format:
//!
//! ```yaml
//! mirrors:
//!   docker.io:                       # or "*" for every registry without its own entry
//!     endpoint: ["https://mirror.example.com:5000", "http://10.0.0.1:5000"]
//!     rewrite: {"^library/(.*)": "mirrored/$1"}
//! configs:
//!   mirror.example.com:5000:         # an endpoint's host[:port], a registry name, or "*"
//!     auth: {username: u, password: p}   # or auth: <base64 user:pass>, or identitytoken
//!     tls: {ca_file: /etc/ssl/mirror.pem, insecure_skip_verify: false}
//! ```
//!
//! Mirrors are tried in order, then the registry itself. Rewrites apply to mirrors only.
//! A missing file is an empty config; a file that does not parse is an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::ImageError;

/// Registry mirrors and credentials, k3s' `/etc/k3rs/registries.yaml`.
#[derive(Clone, Debug, Default)]
pub struct RegistriesConfig {
    pub mirrors: BTreeMap<String, Mirror>,
    pub configs: BTreeMap<String, RegistryConfig>,
}

#[derive(Clone, Debug, Default)]
pub struct Mirror {
    /// Base URLs, e.g. `https://mirror.example.com:5000` (a URL without a scheme is https).
    pub endpoints: Vec<String>,
    /// Repository rewrites, in file order: (pattern, replacement with `$1`...).
    pub rewrites: Vec<(regex::Regex, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    pub auth: Option<AuthConfig>,
    pub tls: Option<TlsConfig>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    pub username: Option<String>,
    pub password: Option<String>,
    /// base64 of `username:password`.
    pub auth: Option<String>,
    pub identitytoken: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct FileFormat {
    mirrors: BTreeMap<String, MirrorFormat>,
    configs: BTreeMap<String, RegistryConfig>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct MirrorFormat {
    endpoint: Vec<String>,
    rewrite: indexmap_like::OrderedMap,
}

/// Rewrites keep their file order (the first match wins), so a plain map won't do.
mod indexmap_like {
    use serde::de::{MapAccess, Visitor};

    #[derive(Default)]
    pub struct OrderedMap(pub Vec<(String, String)>);

    impl<'de> serde::Deserialize<'de> for OrderedMap {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = OrderedMap;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a map of pattern to replacement")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<OrderedMap, A::Error> {
                    let mut out = Vec::new();
                    while let Some((k, v)) = m.next_entry::<String, String>()? {
                        out.push((k, v));
                    }
                    Ok(OrderedMap(out))
                }
                fn visit_unit<E>(self) -> Result<OrderedMap, E> {
                    Ok(OrderedMap::default())
                }
            }
            d.deserialize_any(V)
        }
    }
}

/// One place to pull from: a base URL and, for mirrors, the rewrites to apply.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub host: String,
    /// Path prefix before `/v2/` (usually empty).
    pub prefix: String,
    /// True for the registry itself (not a mirror).
    pub upstream: bool,
    pub rewrites: Vec<(regex::Regex, String)>,
}

impl Endpoint {
    /// The repository to ask this endpoint for.
    pub fn repository(&self, repository: &str) -> String {
        for (pattern, replacement) in &self.rewrites {
            if pattern.is_match(repository) {
                return pattern.replace(repository, replacement.as_str()).into_owned();
            }
        }
        repository.to_string()
    }

    pub fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.host, self.prefix)
    }
}

impl RegistriesConfig {
    /// Reads `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<RegistriesConfig, ImageError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                Self::parse(&text).map_err(|reason| ImageError::RegistriesConfig { path: path.to_path_buf(), reason })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesConfig::default()),
            Err(e) => Err(ImageError::RegistriesConfig { path: path.to_path_buf(), reason: e.to_string() }),
        }
    }

    pub fn parse(text: &str) -> Result<RegistriesConfig, String> {
        if text.trim().is_empty() {
            return Ok(RegistriesConfig::default());
        }
        let file: FileFormat = serde_saphyr::from_str(text).map_err(|e| one_line(&e.to_string()))?;
        let mut mirrors = BTreeMap::new();
        for (registry, m) in file.mirrors {
            for e in &m.endpoint {
                parse_endpoint(e).map_err(|r| format!("mirrors.{registry}.endpoint {e:?}: {r}"))?;
            }
            let mut rewrites = Vec::new();
            for (pattern, replacement) in m.rewrite.0 {
                let re = regex::Regex::new(&pattern)
                    .map_err(|e| format!("mirrors.{registry}.rewrite {pattern:?}: {}", one_line(&e.to_string())))?;
                rewrites.push((re, replacement));
            }
            mirrors.insert(registry, Mirror { endpoints: m.endpoint, rewrites });
        }
        Ok(RegistriesConfig { mirrors, configs: file.configs })
    }

    /// Where to pull an image of `registry` from, in order: its mirrors (or those of `*`),
    /// then the registry itself.
    pub fn endpoints(&self, registry: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        if let Some(m) = self.mirrors.get(registry).or_else(|| self.mirrors.get("*")) {
            for e in &m.endpoints {
                if let Ok((scheme, host, prefix)) = parse_endpoint(e) {
                    out.push(Endpoint { scheme, host, prefix, upstream: false, rewrites: m.rewrites.clone() });
                }
            }
        }
        let upstream = upstream_endpoint(registry);
        // A mirror that is the registry itself adds nothing.
        if !out.iter().any(|e| e.host == upstream.host && e.prefix.is_empty() && e.rewrites.is_empty()) {
            out.push(upstream);
        }
        out
    }

    /// The settings for an endpoint host, falling back to the registry's name, then `*`.
    pub fn config_for(&self, host: &str, registry: &str) -> Option<&RegistryConfig> {
        self.configs.get(host).or_else(|| self.configs.get(registry)).or_else(|| self.configs.get("*"))
    }
}

/// The registry's own endpoint: `docker.io` is served from `registry-1.docker.io`; loopback
/// registries speak plain HTTP (as containerd assumes for localhost), all others HTTPS.
fn upstream_endpoint(registry: &str) -> Endpoint {
    let host =
        if registry == super::DEFAULT_REGISTRY { "registry-1.docker.io".to_string() } else { registry.to_string() };
    let bare = host_without_port(&host);
    let loopback = bare == "localhost" || bare.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    Endpoint {
        scheme: if loopback { "http" } else { "https" }.into(),
        host,
        prefix: String::new(),
        upstream: true,
        rewrites: Vec::new(),
    }
}

pub(crate) fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// `(scheme, host[:port], path prefix)` of an endpoint URL; no scheme means https.
fn parse_endpoint(url: &str) -> Result<(String, String, String), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some((s, rest)) => (s.to_ascii_lowercase(), rest),
        None => ("https".to_string(), url),
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("unsupported scheme {scheme:?}"));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err("no host".into());
    }
    // `/v2` is what every client appends itself; a prefix ends before it.
    let prefix = path.trim_end_matches('/');
    let prefix = prefix.strip_suffix("/v2").unwrap_or(prefix);
    Ok((scheme, host.to_string(), prefix.to_string()))
}

fn one_line(s: &str) -> String {
    s.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_k3s_format() {
        let c = RegistriesConfig::parse(
            r#"
mirrors:
  docker.io:
    endpoint:
      - "https://mirror.example.com:5000/prefix/v2"
      - "http://10.0.0.1:5000"
    rewrite:
      "^library/(.*)": "mirrored/$1"
      "^(.*)": "other/$1"
  "*":
    endpoint: ["mirror.example.org"]
configs:
  "mirror.example.com:5000":
    auth:
      username: u
      password: p
    tls:
      ca_file: /etc/ssl/m.pem
      insecure_skip_verify: true
"#,
        )
        .expect("parse");
        let eps = c.endpoints("docker.io");
        let urls: Vec<String> = eps.iter().map(Endpoint::base_url).collect();
        assert_eq!(
            urls,
            ["https://mirror.example.com:5000/prefix", "http://10.0.0.1:5000", "https://registry-1.docker.io"]
        );
        assert_eq!(eps[0].repository("library/busybox"), "mirrored/busybox");
        assert_eq!(eps[0].repository("foo/bar"), "other/foo/bar");
        assert_eq!(eps[2].repository("library/busybox"), "library/busybox");
        assert!(eps[2].upstream && !eps[0].upstream);
        let q: Vec<String> = c.endpoints("quay.io").iter().map(Endpoint::base_url).collect();
        assert_eq!(q, ["https://mirror.example.org", "https://quay.io"]);
        let local: Vec<String> = c.endpoints("127.0.0.1:5000").iter().map(Endpoint::base_url).collect();
        assert_eq!(local, ["https://mirror.example.org", "http://127.0.0.1:5000"]);
        let cfg = c.config_for("mirror.example.com:5000", "docker.io").expect("config");
        assert_eq!(cfg.auth.as_ref().and_then(|a| a.username.as_deref()), Some("u"));
        assert!(cfg.tls.as_ref().is_some_and(|t| t.insecure_skip_verify));
        assert!(c.config_for("registry-1.docker.io", "docker.io").is_none());
    }

    #[test]
    fn missing_file_is_empty_and_bad_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = RegistriesConfig::load(&dir.path().join("none.yaml")).expect("missing is fine");
        assert!(c.mirrors.is_empty() && c.configs.is_empty());
        assert_eq!(c.endpoints("docker.io")[0].base_url(), "https://registry-1.docker.io");
        for bad in [
            "mirrors: [1, 2]",
            "mirrors:\n  x:\n    endpoint: ['ftp://x']",
            "mirrors:\n  x:\n    rewrite: {'(': 'y'}",
            "configs: {a: {tls: {insecure_skip_verify: maybe}}}",
        ] {
            let path = dir.path().join("bad.yaml");
            std::fs::write(&path, bad).expect("write");
            let err = RegistriesConfig::load(&path).expect_err(bad);
            assert!(matches!(err, ImageError::RegistriesConfig { .. }), "{err}");
            assert!(err.to_string().contains("bad.yaml"), "{err}");
        }
    }
}
