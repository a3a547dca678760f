//! PKI made on first boot: certificate authorities, serving and client certificates, the
//! service-account signing key and the admin kubeconfig.
//!
//! [`ensure`] is called once at start with a [`PkiConfig`]. On first boot it makes, under
//! `<data-dir>/server/tls/` (0700, keys 0600): a server CA and a client CA (ECDSA P-256, ten
//! years), the API server's serving certificate signed by the server CA, one client
//! certificate per built-in identity ([`ClientIdentity`]) signed by the client CA (a year
//! each), and the service-account key. Everything is made in a directory beside the target
//! and renamed into place, so a crash during first boot leaves nothing half made.
//!
//! Later starts reuse the files. A leaf certificate is re-issued from its CA, keeping its
//! key, when it is within [`RENEW_BEFORE`] of expiry, no longer covers the configured names
//! and addresses, names another subject, or was not signed by the current CA; the reason is
//! logged and listed in [`Pki::issued`]. A CA is never replaced (clients trust it): a CA near
//! its end is an error that says what to do. A file that cannot be read, is not PEM, or
//! does not match its key is an error naming the file, and is left as it is.
//!
//! ```text
//! <data-dir>/server/tls/
//!   server-ca.crt, server-ca.key              signs the serving certificate
//!   client-ca.crt, client-ca.key              signs client certificates
//!   serving-kube-apiserver.crt/.key           the API server's HTTPS certificate
//!   client-admin.crt/.key                     system:admin in system:masters
//!   client-kube-controller-manager.crt/.key   system:kube-controller-manager
//!   client-kube-scheduler.crt/.key            system:kube-scheduler
//!   client-kubelet.crt/.key                   system:node:<node> in system:nodes
//!   client-kube-proxy.crt/.key                system:kube-proxy
//!   client-kube-apiserver.crt/.key            system:kube-apiserver (to call kubelets)
//!   service.key, service.pub                  service-account token signing key
//! ```

mod cert;
mod files;
mod kubeconfig;
mod tls;
mod token;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::SubjectPublicKeyInfoDer;
use time::OffsetDateTime;

pub use cert::{CA_VALIDITY, LEAF_VALIDITY, RENEW_BEFORE};
pub use tls::{identity_from_cert, ALPN_PROTOCOLS};
pub use token::{
    issuer_for, service_account_user, KubernetesClaims, ObjectRef, ServiceAccountTokens, TokenClaims, TokenError,
    LEGACY_ISSUER,
};

use cert::{CaKind, LeafSpec, Usage};
use files::{DIR_MODE, KEY_MODE, PUBLIC_MODE};

/// What the PKI is made for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiConfig {
    /// `<data-dir>/server/tls`.
    pub dir: PathBuf,
    pub cluster_domain: String,
    /// The node's name; a name of the serving certificate and in the kubelet's identity.
    pub node_name: String,
    pub node_ip: IpAddr,
    /// The first address of the service network: the `kubernetes` service's.
    pub service_ip: IpAddr,
    /// Extra names of the serving certificate (`--tls-san`): DNS names or IP addresses.
    pub tls_sans: Vec<String>,
    /// The time to judge certificates by and issue them from (the clock, except in tests).
    pub now: OffsetDateTime,
}

/// An authenticated user as Kubernetes sees it: a client certificate's common name and
/// organizations, or a service account's name and groups.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

/// The identities that get a client certificate from the client CA.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientIdentity {
    /// `system:admin` in `system:masters`: the admin kubeconfig.
    Admin,
    ControllerManager,
    Scheduler,
    /// `system:node:<node>` in `system:nodes`.
    Kubelet,
    KubeProxy,
    /// The API server calling kubelets (logs, exec).
    ApiServer,
}

impl ClientIdentity {
    pub const ALL: [ClientIdentity; 6] = [
        ClientIdentity::Admin,
        ClientIdentity::ControllerManager,
        ClientIdentity::Scheduler,
        ClientIdentity::Kubelet,
        ClientIdentity::KubeProxy,
        ClientIdentity::ApiServer,
    ];

    /// The file name of its certificate, without `.crt`/`.key`.
    pub fn file_stem(self) -> &'static str {
        match self {
            ClientIdentity::Admin => "client-admin",
            ClientIdentity::ControllerManager => "client-kube-controller-manager",
            ClientIdentity::Scheduler => "client-kube-scheduler",
            ClientIdentity::Kubelet => "client-kubelet",
            ClientIdentity::KubeProxy => "client-kube-proxy",
            ClientIdentity::ApiServer => "client-kube-apiserver",
        }
    }

    /// The user its certificate names, on the node `node_name`.
    pub fn user_info(self, node_name: &str) -> UserInfo {
        let user = |name: &str, groups: &[&str]| UserInfo {
            name: name.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        };
        match self {
            ClientIdentity::Admin => user("system:admin", &["system:masters"]),
            ClientIdentity::ControllerManager => user("system:kube-controller-manager", &[]),
            ClientIdentity::Scheduler => user("system:kube-scheduler", &[]),
            ClientIdentity::Kubelet => user(&format!("system:node:{node_name}"), &["system:nodes"]),
            ClientIdentity::KubeProxy => user("system:kube-proxy", &[]),
            ClientIdentity::ApiServer => user("system:kube-apiserver", &["system:masters"]),
        }
    }
}

/// Why a certificate was (re-)issued at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssueReason {
    /// Made for the first time (a new CA, a new key).
    Created,
    /// The certificate file was missing; its key was kept.
    Missing,
    /// The key file was missing, so the key is new too.
    KeyMissing,
    /// Within [`RENEW_BEFORE`] of this expiry (or past it).
    Expiring { not_after: OffsetDateTime },
    /// Starts in the future: the clock was set back.
    NotYetValid { not_before: OffsetDateTime },
    /// The configuration asks for names or addresses the certificate lacks.
    NamesMissing { missing: Vec<String> },
    /// The certificate named another user (e.g. the node was renamed).
    SubjectChanged { was: UserInfo },
    /// Signed by something other than the current CA (e.g. a replaced CA).
    NotSignedByCa { ca: PathBuf },
}

impl fmt::Display for IssueReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssueReason::Created => f.write_str("new"),
            IssueReason::Missing => f.write_str("the certificate file was missing"),
            IssueReason::KeyMissing => f.write_str("the key file was missing; made a new key"),
            IssueReason::Expiring { not_after } => {
                write!(f, "it expires {} (renewed within 90 days)", not_after.date())
            }
            IssueReason::NotYetValid { not_before } => {
                write!(f, "it is not valid until {} (was the clock set back?)", not_before.date())
            }
            IssueReason::NamesMissing { missing } => write!(f, "it did not cover {}", missing.join(", ")),
            IssueReason::SubjectChanged { was } => write!(f, "it was for {} {:?}", was.name, was.groups),
            IssueReason::NotSignedByCa { ca } => write!(f, "it was not signed by {}", ca.display()),
        }
    }
}

/// A certificate issued by [`ensure`], and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    pub path: PathBuf,
    pub reason: IssueReason,
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName { what: &'static str, value: String, reason: String },
    #[error("cannot create {}: {source}", .path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot read {}: {source}", .path.display())]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", .path.display())]
    WriteFile { path: PathBuf, source: std::io::Error },
    #[error("{} is not a PEM {expected} file: {detail}", .path.display())]
    NotPem { path: PathBuf, expected: &'static str, detail: String },
    #[error("{} is not a usable private key: {detail}", .path.display())]
    BadKey { path: PathBuf, detail: String },
    #[error("{} is not a usable certificate: {detail}", .path.display())]
    BadCertificate { path: PathBuf, detail: String },
    #[error("{} does not match its private key {}", .file.display(), .key.display())]
    KeyMismatch { file: PathBuf, key: PathBuf },
    #[error(
        "{} exists but {} does not: restore it from a backup (k3rs does not make a new CA \
         while part of the old one is there, since clients may trust it)",
        .present.display(), .missing.display()
    )]
    CaIncomplete { present: PathBuf, missing: PathBuf },
    #[error("{} is not a CA certificate", .path.display())]
    NotACa { path: PathBuf },
    #[error("the CA certificate {} is not valid until {not_before}: check the system clock", .path.display())]
    CaNotYetValid { path: PathBuf, not_before: OffsetDateTime },
    #[error("{}", ca_expiring(.path, .key, .not_after, *.days_left))]
    CaExpiring { path: PathBuf, key: PathBuf, not_after: OffsetDateTime, days_left: i64 },
    #[error("cannot issue {}: {detail}", .path.display())]
    Issue { path: PathBuf, detail: String },
    #[error("cannot build the TLS configuration: {0}")]
    TlsConfig(String),
    #[error("unusable client certificate: {0}")]
    PeerCertificate(String),
    #[error("{}: {source}", .path.display())]
    ServiceKey { path: PathBuf, source: TokenError },
}

fn ca_expiring(path: &Path, key: &Path, not_after: &OffsetDateTime, days_left: i64) -> String {
    let when = if days_left < 0 {
        format!("expired on {}", not_after.date())
    } else {
        format!("expires on {} (in {days_left} days)", not_after.date())
    };
    format!(
        "the CA certificate {} {when}; k3rs does not replace a CA by itself because every client \
         trusts it. To make a new one: stop k3rs, move {} and {} out of {}, and start k3rs: it makes \
         a new CA and re-issues the certificates it signed. Then give clients the new CA (the \
         admin kubeconfig is rewritten at start)",
        path.display(),
        path.display(),
        key.display(),
        path.parent().unwrap_or(Path::new(".")).display(),
    )
}

/// Checks and normalizes a `--tls-san` value: an IP address (printed canonically) or a DNS
/// name (lowercased; a leading `*.` label is allowed).
pub fn check_tls_san(value: &str) -> Result<String, String> {
    let value = value.trim();
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let name = value.to_ascii_lowercase();
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 253 {
        return Err(format!("{value:?} is longer than 253 characters"));
    }
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    // A DNS name: every label, not only the whole, within DNS's limits.
    if !rest.split('.').all(crate::domain::names::is_dns1123_label) {
        return Err(format!("{value:?} is neither an IP address nor a DNS name"));
    }
    Ok(name)
}

/// The PKI, loaded: what the API server and the in-process components need from it.
#[derive(Clone)]
pub struct Pki {
    dir: PathBuf,
    node_name: String,
    server_ca_pem: String,
    client_ca_pem: String,
    clients: BTreeMap<ClientIdentity, (String, String)>,
    server_tls: Arc<rustls::ServerConfig>,
    tokens: ServiceAccountTokens,
    issued: Vec<Issued>,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki").field("dir", &self.dir).field("issued", &self.issued).finish_non_exhaustive()
    }
}

/// Makes the PKI on first boot, or loads it and renews what needs renewing.
pub fn ensure(config: &PkiConfig) -> Result<Pki, PkiError> {
    let serving = serving_spec(config)?;
    for (what, value) in [("cluster domain", &config.cluster_domain), ("node name", &config.node_name)] {
        if value.is_empty() {
            return Err(PkiError::InvalidName { what, value: value.clone(), reason: "must not be empty".into() });
        }
    }
    let fresh = match std::fs::symlink_metadata(&config.dir) {
        Ok(_) => false,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(source) => return Err(PkiError::ReadFile { path: config.dir.clone(), source }),
    };
    if !fresh {
        files::create_dir(&config.dir, DIR_MODE)?;
        return populate(&config.dir, config, &serving);
    }
    // First boot: make everything beside the target and rename it into place whole.
    let name = config.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "tls".into());
    let staging = config.dir.with_file_name(format!(".{name}.new"));
    match std::fs::remove_dir_all(&staging) {
        Ok(()) => tracing::info!(path = %staging.display(), "removed the leftovers of an interrupted first boot"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(PkiError::WriteFile { path: staging, source }),
    }
    files::create_dir(&staging, DIR_MODE)?;
    let mut pki = populate(&staging, config, &serving)?;
    std::fs::rename(&staging, &config.dir)
        .and_then(|()| files::sync_parent(&config.dir))
        .map_err(|source| PkiError::WriteFile { path: config.dir.clone(), source })?;
    pki.dir = config.dir.clone();
    for issued in &mut pki.issued {
        if let Ok(rest) = issued.path.strip_prefix(&staging) {
            issued.path = config.dir.join(rest);
        }
    }
    tracing::info!(path = %config.dir.display(), "made the cluster PKI");
    Ok(pki)
}

fn populate(dir: &Path, config: &PkiConfig, serving: &LeafSpec) -> Result<Pki, PkiError> {
    let now = config.now;
    let mut issued = Vec::new();
    let server_ca = cert::ensure_ca(dir, CaKind::Server, now, &mut issued)?;
    let client_ca = cert::ensure_ca(dir, CaKind::Client, now, &mut issued)?;
    let serving = cert::ensure_leaf(dir, serving, &server_ca, now, &mut issued)?;
    let mut clients = BTreeMap::new();
    for identity in ClientIdentity::ALL {
        let spec = LeafSpec {
            stem: identity.file_stem().to_string(),
            subject: identity.user_info(&config.node_name),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usage: Usage::Client,
        };
        let leaf = cert::ensure_leaf(dir, &spec, &client_ca, now, &mut issued)?;
        clients.insert(identity, (leaf.cert_pem, leaf.key_pem));
    }
    let tokens = ensure_service_key(dir, &config.cluster_domain, &mut issued)?;
    let server_tls = tls::server_config(vec![serving.cert_der], serving.key, client_ca.der.clone())?;
    Ok(Pki {
        dir: dir.to_path_buf(),
        node_name: config.node_name.clone(),
        server_ca_pem: server_ca.pem,
        client_ca_pem: client_ca.pem,
        clients,
        server_tls,
        tokens,
        issued,
    })
}

/// The serving certificate's names: the `kubernetes` service's names, localhost, the node,
/// the service address, and `--tls-san`.
fn serving_spec(config: &PkiConfig) -> Result<LeafSpec, PkiError> {
    let domain = &config.cluster_domain;
    let mut dns_names: Vec<String> = vec![
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{domain}"),
        "localhost".into(),
        config.node_name.to_ascii_lowercase(),
    ];
    let mut ips =
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST), config.node_ip, config.service_ip];
    for san in &config.tls_sans {
        let normalized = check_tls_san(san).map_err(|reason| PkiError::InvalidName {
            what: "tls-san",
            value: san.clone(),
            reason,
        })?;
        match normalized.parse::<IpAddr>() {
            Ok(ip) => ips.push(ip),
            Err(_) => dns_names.push(normalized),
        }
    }
    for name in &dns_names {
        check_tls_san(name).map_err(|reason| PkiError::InvalidName {
            what: "DNS name",
            value: name.clone(),
            reason,
        })?;
    }
    let mut seen = std::collections::HashSet::new();
    dns_names.retain(|d| seen.insert(d.clone()));
    let mut seen = std::collections::HashSet::new();
    ips.retain(|ip| seen.insert(*ip));
    Ok(LeafSpec {
        stem: "serving-kube-apiserver".into(),
        subject: UserInfo { name: "kube-apiserver".into(), groups: Vec::new() },
        dns_names,
        ips,
        usage: Usage::Server,
    })
}

/// Loads `service.key` (making it on first boot) and keeps `service.pub` beside it.
fn ensure_service_key(
    dir: &Path,
    cluster_domain: &str,
    issued: &mut Vec<Issued>,
) -> Result<ServiceAccountTokens, PkiError> {
    let key_path = dir.join("service.key");
    let pub_path = dir.join("service.pub");
    let key_pem = match files::read_optional(&key_path)? {
        Some(bytes) => {
            files::restrict_mode(&key_path, KEY_MODE)?;
            String::from_utf8(bytes).map_err(|_| PkiError::NotPem {
                path: key_path.clone(),
                expected: "PRIVATE KEY",
                detail: "not text".into(),
            })?
        }
        None => {
            let pem = cert::new_key(&key_path)?.serialize_pem();
            issued.push(Issued { path: key_path.clone(), reason: IssueReason::Created });
            pem
        }
    };
    let issuer = issuer_for(cluster_domain);
    let tokens = ServiceAccountTokens::from_pem(&key_pem, issuer.clone(), vec![issuer])
        .map_err(|source| PkiError::ServiceKey { path: key_path.clone(), source })?;
    match files::read_optional(&pub_path)? {
        // The public key is derived from the private one: only its absence is repaired.
        None => files::write_atomic(&pub_path, tokens.public_key_pem().as_bytes(), PUBLIC_MODE)?,
        Some(bytes) => {
            let spki = SubjectPublicKeyInfoDer::from_pem_slice(&bytes).map_err(|e| PkiError::NotPem {
                path: pub_path.clone(),
                expected: "PUBLIC KEY",
                detail: e.to_string(),
            })?;
            if spki.as_ref() != tokens.public_key_der() {
                return Err(PkiError::KeyMismatch { file: pub_path, key: key_path });
            }
        }
    }
    Ok(tokens)
}

impl Pki {
    /// The directory the files are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The API server's TLS configuration: TLS 1.2 and 1.3 (ring), ALPN `h2` and
    /// `http/1.1`, client certificates from the client CA optional.
    pub fn server_tls_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_tls.clone()
    }

    /// The CA that signed the serving certificate, PEM: what clients trust.
    pub fn server_ca_pem(&self) -> &str {
        &self.server_ca_pem
    }

    /// The CA whose client certificates are accepted, PEM.
    pub fn client_ca_pem(&self) -> &str {
        &self.client_ca_pem
    }

    /// The user an identity's certificate names.
    pub fn user_info(&self, identity: ClientIdentity) -> UserInfo {
        identity.user_info(&self.node_name)
    }

    /// The service-account token signer and verifier.
    pub fn service_account_tokens(&self) -> &ServiceAccountTokens {
        &self.tokens
    }

    /// What [`ensure`] issued or re-issued, and why; empty when everything was reused.
    pub fn issued(&self) -> &[Issued] {
        &self.issued
    }

    /// A kubeconfig for `identity` against `server_url` (e.g. `https://127.0.0.1:6443`),
    /// with the server CA and the identity's certificate and key embedded.
    pub fn kubeconfig_for(&self, identity: ClientIdentity, server_url: &str) -> String {
        let (cert_pem, key_pem) =
            self.clients.get(&identity).map(|(c, k)| (c.as_str(), k.as_str())).unwrap_or_default();
        kubeconfig::render(server_url, &self.server_ca_pem, cert_pem, key_pem)
    }

    /// Writes the admin kubeconfig to `path` with permission bits `mode`, creating its
    /// directory, replacing any previous file atomically.
    pub fn write_kubeconfig(&self, path: &Path, mode: u32, server_url: &str) -> Result<(), PkiError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|source| PkiError::CreateDir { path: parent.to_path_buf(), source })?;
        }
        let text = self.kubeconfig_for(ClientIdentity::Admin, server_url);
        files::write_atomic(path, text.as_bytes(), mode)?;
        tracing::info!(path = %path.display(), mode = format!("{mode:04o}"), "wrote the admin kubeconfig");
        Ok(())
    }
}
