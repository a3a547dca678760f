//! Certificates and keys: making the two CAs and the certificates they sign with rcgen,
//! reading them back with x509-parser, and deciding, from what a certificate says and what
//! the configuration asks for, whether it can be kept, must be re-issued, or is an error.
//!
//! A leaf keeps its key across re-issues: only the certificate file changes, in one atomic
//! rename, so a crash mid-renewal never leaves a certificate that does not match its key.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::files::{self, KEY_MODE, PUBLIC_MODE};
use super::{IssueReason, Issued, PkiError, UserInfo};

/// CAs are made for ten years.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// Leaf certificates are issued for a year (or until their CA expires, if sooner).
pub const LEAF_VALIDITY: Duration = Duration::days(365);
/// A certificate with this little time left is renewed at start (a CA is an error).
pub const RENEW_BEFORE: Duration = Duration::days(90);
/// Certificates start this long before they are made, so a peer whose clock is a little
/// behind does not reject a certificate made a moment ago.
const BACKDATE: Duration = Duration::hours(1);

/// What a certificate says, as far as the PKI cares.
#[derive(Clone, Debug)]
pub(crate) struct CertInfo {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub subject: UserInfo,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub is_ca: bool,
    /// The subject public key's bits (the point, for EC keys).
    pub public_key: Vec<u8>,
}

/// Reads the fields of a DER certificate.
pub(crate) fn inspect(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let subject = subject_of(&cert)?;
    let mut dns_names = Vec::new();
    let mut ips = Vec::new();
    let san = cert.subject_alternative_name().map_err(|e| format!("bad subjectAltName extension: {e}"))?;
    for name in san.iter().flat_map(|ext| ext.value.general_names.iter()) {
        match name {
            GeneralName::DNSName(dns) => dns_names.push(dns.to_ascii_lowercase()),
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    ips.push(IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    ips.push(IpAddr::from(v6));
                }
            }
            _ => {}
        }
    }
    let is_ca = cert.basic_constraints().ok().flatten().is_some_and(|bc| bc.value.ca);
    Ok(CertInfo {
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        subject,
        dns_names,
        ips,
        is_ca,
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

/// The common name and organizations of a certificate's subject.
pub(crate) fn subject_of(cert: &X509Certificate<'_>) -> Result<UserInfo, String> {
    let text = |attr: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        attr.as_str().map(str::to_string).map_err(|e| format!("subject attribute is not a string: {e}"))
    };
    let name = match cert.subject().iter_common_name().next() {
        Some(cn) => text(cn)?,
        None => String::new(),
    };
    let groups = cert.subject().iter_organization().map(text).collect::<Result<Vec<_>, _>>()?;
    Ok(UserInfo { name, groups })
}

/// True when `ca_der` signed `der` (the issuer name matches and the signature verifies).
pub(crate) fn signed_by(der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (X509Certificate::from_der(der), X509Certificate::from_der(ca_der)) else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// The first certificate of a PEM file.
pub(crate) fn parse_cert_pem(path: &Path, bytes: &[u8]) -> Result<CertificateDer<'static>, PkiError> {
    match CertificateDer::pem_slice_iter(bytes).next() {
        Some(Ok(der)) => Ok(der),
        Some(Err(e)) => {
            Err(PkiError::NotPem { path: path.to_path_buf(), expected: "CERTIFICATE", detail: e.to_string() })
        }
        None => Err(PkiError::NotPem {
            path: path.to_path_buf(),
            expected: "CERTIFICATE",
            detail: "no CERTIFICATE block".into(),
        }),
    }
}

/// A private key from a PEM file (PKCS#8: `BEGIN PRIVATE KEY`).
pub(crate) fn parse_key_pem(path: &Path, bytes: &[u8]) -> Result<KeyPair, PkiError> {
    let der = PrivateKeyDer::from_pem_slice(bytes).map_err(|e| PkiError::NotPem {
        path: path.to_path_buf(),
        expected: "PRIVATE KEY",
        detail: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block".into(),
            e => e.to_string(),
        },
    })?;
    KeyPair::try_from(&der).map_err(|e| PkiError::BadKey {
        path: path.to_path_buf(),
        detail: format!("{e} (k3rs reads unencrypted PKCS#8 \"BEGIN PRIVATE KEY\" ECDSA, Ed25519 or RSA keys)"),
    })
}

/// The key as rustls wants it.
pub(crate) fn rustls_key(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// A certificate authority, ready to sign.
pub(crate) struct Ca {
    pub cert_path: PathBuf,
    pub pem: String,
    pub der: CertificateDer<'static>,
    pub not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

/// Which of the two CAs; names its files and its subject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CaKind {
    Server,
    Client,
}

impl CaKind {
    fn stem(self) -> &'static str {
        match self {
            CaKind::Server => "server-ca",
            CaKind::Client => "client-ca",
        }
    }
}

/// Loads a CA from `<stem>.crt`/`<stem>.key` in `dir`, or makes it when neither exists.
/// A CA is never replaced: clients trust it, so every problem with one is an error.
pub(crate) fn ensure_ca(dir: &Path, kind: CaKind, now: OffsetDateTime, log: &mut Vec<Issued>) -> Result<Ca, PkiError> {
    let cert_path = dir.join(format!("{}.crt", kind.stem()));
    let key_path = dir.join(format!("{}.key", kind.stem()));
    let cert_bytes = files::read_optional(&cert_path)?;
    let key_bytes = files::read_optional(&key_path)?;
    let (pem, key) = match (cert_bytes, key_bytes) {
        (None, None) => {
            let key = new_key(&key_path)?;
            let pem = new_ca_cert(kind, &key, now).map_err(|e| issue_failed(&cert_path, e))?;
            files::write_atomic(&cert_path, pem.as_bytes(), PUBLIC_MODE)?;
            tracing::info!(path = %cert_path.display(), "made a new certificate authority");
            log.push(Issued { path: cert_path.clone(), reason: IssueReason::Created });
            (pem, key)
        }
        (Some(cert), Some(key_bytes)) => {
            let key = parse_key_pem(&key_path, &key_bytes)?;
            files::restrict_mode(&key_path, KEY_MODE)?;
            let pem = String::from_utf8(cert).map_err(|_| PkiError::NotPem {
                path: cert_path.clone(),
                expected: "CERTIFICATE",
                detail: "not text".into(),
            })?;
            (pem, key)
        }
        (Some(_), None) => return Err(PkiError::CaIncomplete { present: cert_path, missing: key_path }),
        (None, Some(_)) => return Err(PkiError::CaIncomplete { present: key_path, missing: cert_path }),
    };
    let der = parse_cert_pem(&cert_path, pem.as_bytes())?;
    let info = inspect(&der).map_err(|detail| PkiError::BadCertificate { path: cert_path.clone(), detail })?;
    if info.public_key != key.public_key_raw() {
        return Err(PkiError::KeyMismatch { file: cert_path, key: key_path });
    }
    if !info.is_ca {
        return Err(PkiError::NotACa { path: cert_path });
    }
    if info.not_before > now {
        return Err(PkiError::CaNotYetValid { path: cert_path, not_before: info.not_before });
    }
    if info.not_after - now <= RENEW_BEFORE {
        return Err(PkiError::CaExpiring {
            path: cert_path,
            key: key_path,
            not_after: info.not_after,
            days_left: (info.not_after - now).whole_days(),
        });
    }
    let issuer = Issuer::from_ca_cert_der(&der, key)
        .map_err(|e| PkiError::BadCertificate { path: cert_path.clone(), detail: e.to_string() })?;
    Ok(Ca { cert_path, pem, der, not_after: info.not_after, issuer })
}

fn new_ca_cert(kind: CaKind, key: &KeyPair, now: OffsetDateTime) -> Result<String, rcgen::Error> {
    let mut params = CertificateParams::default();
    // The time in the name keeps a replacement CA's name apart from the one it replaces,
    // so a certificate signed by the old one is never taken for the new one's.
    params.distinguished_name = distinguished_name(&format!("k3rs-{}@{}", kind.stem(), now.unix_timestamp()), &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = seconds(now - BACKDATE);
    params.not_after = seconds(now + CA_VALIDITY);
    params.serial_number = Some(random_serial()?);
    Ok(params.self_signed(key)?.pem())
}

/// What a leaf certificate must say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LeafSpec {
    /// `<stem>.crt` and `<stem>.key`.
    pub stem: String,
    pub subject: UserInfo,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub usage: Usage,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Usage {
    Server,
    Client,
}

/// A leaf certificate and its key, in PEM and as rustls takes them.
pub(crate) struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

/// Loads a leaf certificate, re-issuing it from `ca` (with its key) when it is missing,
/// about to expire, not signed by `ca`, or no longer says what `spec` asks.
pub(crate) fn ensure_leaf(
    dir: &Path,
    spec: &LeafSpec,
    ca: &Ca,
    now: OffsetDateTime,
    log: &mut Vec<Issued>,
) -> Result<Leaf, PkiError> {
    let cert_path = dir.join(format!("{}.crt", spec.stem));
    let key_path = dir.join(format!("{}.key", spec.stem));
    let cert_bytes = files::read_optional(&cert_path)?;
    let key_bytes = files::read_optional(&key_path)?;
    let (key, reason) = match (cert_bytes, key_bytes) {
        (None, None) => (new_key(&key_path)?, IssueReason::Created),
        // A certificate is useless without its key, and leaves are ours to re-make.
        (Some(_), None) => (new_key(&key_path)?, IssueReason::KeyMissing),
        (None, Some(key_bytes)) => (leaf_key(&key_path, &key_bytes)?, IssueReason::Missing),
        (Some(bytes), Some(key_bytes)) => {
            let key = leaf_key(&key_path, &key_bytes)?;
            let der = parse_cert_pem(&cert_path, &bytes)?;
            let info = inspect(&der).map_err(|detail| PkiError::BadCertificate { path: cert_path.clone(), detail })?;
            if info.public_key != key.public_key_raw() {
                return Err(PkiError::KeyMismatch { file: cert_path, key: key_path });
            }
            match renewal_reason(&der, &info, spec, ca, now) {
                Some(reason) => (key, reason),
                None => {
                    let cert_pem = String::from_utf8(bytes).map_err(|_| PkiError::NotPem {
                        path: cert_path.clone(),
                        expected: "CERTIFICATE",
                        detail: "not text".into(),
                    })?;
                    let key_pem = String::from_utf8_lossy(&key_bytes).into_owned();
                    return Ok(Leaf { cert_pem, key_pem, cert_der: der, key: rustls_key(&key) });
                }
            }
        }
    };
    let cert_pem = issue_leaf(spec, &key, ca, now).map_err(|e| issue_failed(&cert_path, e))?;
    files::write_atomic(&cert_path, cert_pem.as_bytes(), PUBLIC_MODE)?;
    match reason {
        IssueReason::Created => tracing::debug!(path = %cert_path.display(), "issued certificate"),
        ref r => tracing::info!(path = %cert_path.display(), "re-issued certificate: {r}"),
    }
    log.push(Issued { path: cert_path.clone(), reason });
    let cert_der = parse_cert_pem(&cert_path, cert_pem.as_bytes())?;
    Ok(Leaf { cert_pem, key_pem: key.serialize_pem(), cert_der, key: rustls_key(&key) })
}

/// Why a leaf certificate must be re-issued, or `None` when it is fine.
fn renewal_reason(der: &[u8], info: &CertInfo, spec: &LeafSpec, ca: &Ca, now: OffsetDateTime) -> Option<IssueReason> {
    if !signed_by(der, &ca.der) {
        return Some(IssueReason::NotSignedByCa { ca: ca.cert_path.clone() });
    }
    if info.not_after - now <= RENEW_BEFORE {
        return Some(IssueReason::Expiring { not_after: info.not_after });
    }
    if info.not_before > now {
        return Some(IssueReason::NotYetValid { not_before: info.not_before });
    }
    let mut want_groups = spec.subject.groups.clone();
    let mut have_groups = info.subject.groups.clone();
    want_groups.sort();
    have_groups.sort();
    if info.subject.name != spec.subject.name || want_groups != have_groups {
        return Some(IssueReason::SubjectChanged { was: info.subject.clone() });
    }
    let missing: Vec<String> = spec
        .dns_names
        .iter()
        .filter(|d| !info.dns_names.iter().any(|h| h.eq_ignore_ascii_case(d)))
        .cloned()
        .chain(spec.ips.iter().filter(|ip| !info.ips.contains(ip)).map(IpAddr::to_string))
        .collect();
    if !missing.is_empty() {
        return Some(IssueReason::NamesMissing { missing });
    }
    None
}

fn issue_leaf(spec: &LeafSpec, key: &KeyPair, ca: &Ca, now: OffsetDateTime) -> Result<String, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(&spec.subject.name, &spec.subject.groups);
    params.subject_alt_names = spec
        .dns_names
        .iter()
        .map(|d| Ok(SanType::DnsName(d.clone().try_into()?)))
        .chain(spec.ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, rcgen::Error>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![match spec.usage {
        Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    params.not_before = seconds(now - BACKDATE);
    // A certificate that outlives its CA would only fail later, and more confusingly.
    params.not_after = seconds((now + LEAF_VALIDITY).min(ca.not_after));
    params.serial_number = Some(random_serial()?);
    Ok(params.signed_by(key, &ca.issuer)?.pem())
}

fn distinguished_name(common_name: &str, organizations: &[String]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in organizations {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    dn.push(DnType::CommonName, common_name);
    dn
}

fn leaf_key(path: &Path, bytes: &[u8]) -> Result<KeyPair, PkiError> {
    let key = parse_key_pem(path, bytes)?;
    files::restrict_mode(path, KEY_MODE)?;
    Ok(key)
}

/// A new ECDSA P-256 key, written to `path` (0600) before anything is signed for it.
pub(crate) fn new_key(path: &Path) -> Result<KeyPair, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| issue_failed(path, e))?;
    files::write_atomic(path, key.serialize_pem().as_bytes(), KEY_MODE)?;
    Ok(key)
}

/// Random serial numbers: rcgen's default (a hash of the public key) would repeat when a
/// certificate is re-issued for the same key.
fn random_serial() -> Result<SerialNumber, rcgen::Error> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| rcgen::Error::RingUnspecified)?;
    // Positive and without a leading zero byte, as DER integers must be.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Certificates carry whole seconds.
fn seconds(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

fn issue_failed(path: &Path, e: rcgen::Error) -> PkiError {
    PkiError::Issue { path: path.to_path_buf(), detail: e.to_string() }
}
