//! Tests of [`ensure`] with an injected clock: what first boot makes, what later starts
//! reuse, renew or refuse.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;

use time::Duration;

use super::cert::{inspect, signed_by, CertInfo};
use super::*;

fn t0() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap()
}

fn config(dir: &Path, now: OffsetDateTime) -> PkiConfig {
    PkiConfig {
        dir: dir.join("server/tls"),
        cluster_domain: "cluster.local".into(),
        node_name: "edge-1".into(),
        node_ip: "192.168.5.4".parse().unwrap(),
        service_ip: "10.43.0.1".parse().unwrap(),
        tls_sans: vec!["k3rs.example.com".into(), "203.0.113.7".into()],
        now,
    }
}

/// Every file of the PKI directory and its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap())
        })
        .collect()
}

fn cert_info(path: &Path) -> CertInfo {
    let der = cert::parse_cert_pem(path, &fs::read(path).unwrap()).unwrap();
    inspect(&der).unwrap()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn leaf_stems() -> Vec<&'static str> {
    let mut stems = vec!["serving-kube-apiserver"];
    stems.extend(ClientIdentity::ALL.iter().map(|i| i.file_stem()));
    stems
}

fn reasons(pki: &Pki) -> BTreeMap<String, IssueReason> {
    pki.issued()
        .iter()
        .map(|i| (i.path.file_name().unwrap().to_string_lossy().into_owned(), i.reason.clone()))
        .collect()
}

#[test]
fn first_boot_makes_every_file_with_its_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), t0());
    let pki = ensure(&cfg).unwrap();
    assert_eq!(pki.dir(), cfg.dir);
    assert_eq!(mode(&cfg.dir), 0o700);
    let mut want: Vec<String> = ["server-ca", "client-ca"]
        .iter()
        .chain(leaf_stems().iter())
        .flat_map(|s| [format!("{s}.crt"), format!("{s}.key")])
        .collect();
    want.extend(["service.key".to_string(), "service.pub".to_string()]);
    want.sort();
    let have: Vec<String> = snapshot(&cfg.dir).into_keys().collect();
    assert_eq!(have, want);
    for name in &have {
        let want_mode = if name.ends_with(".key") { 0o600 } else { 0o644 };
        assert_eq!(mode(&cfg.dir.join(name)), want_mode, "{name}");
    }
    // Made in a staging directory that is gone now.
    let leftovers: Vec<_> = fs::read_dir(cfg.dir.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, ["tls"]);
    // Every certificate and the service key were created, and the paths point at the final dir.
    assert_eq!(pki.issued().len(), 2 + leaf_stems().len() + 1);
    assert!(pki.issued().iter().all(|i| i.reason == IssueReason::Created && i.path.starts_with(&cfg.dir)));
}

#[test]
fn certificates_say_what_kubernetes_expects() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), t0());
    ensure(&cfg).unwrap();
    let server_ca = cert_info(&cfg.dir.join("server-ca.crt"));
    let client_ca = cert_info(&cfg.dir.join("client-ca.crt"));
    for ca in [&server_ca, &client_ca] {
        assert!(ca.is_ca);
        assert_eq!(ca.not_after, t0() + CA_VALIDITY);
    }
    assert!(server_ca.subject.name.starts_with("k3rs-server-ca@"));
    assert!(client_ca.subject.name.starts_with("k3rs-client-ca@"));

    let serving_path = cfg.dir.join("serving-kube-apiserver.crt");
    let serving = cert_info(&serving_path);
    assert!(!serving.is_ca);
    assert_eq!(serving.not_after, t0() + LEAF_VALIDITY);
    for dns in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "edge-1",
        "k3rs.example.com",
    ] {
        assert!(serving.dns_names.iter().any(|d| d == dns), "missing {dns}: {:?}", serving.dns_names);
    }
    for ip in ["127.0.0.1", "192.168.5.4", "10.43.0.1", "203.0.113.7"] {
        assert!(serving.ips.contains(&ip.parse().unwrap()), "missing {ip}: {:?}", serving.ips);
    }
    let ca_der = |name: &str| cert::parse_cert_pem(Path::new(name), &fs::read(cfg.dir.join(name)).unwrap()).unwrap();
    let der = |stem: &str| ca_der(&format!("{stem}.crt"));
    assert!(signed_by(&der("serving-kube-apiserver"), &ca_der("server-ca.crt")));
    assert!(!signed_by(&der("serving-kube-apiserver"), &ca_der("client-ca.crt")));

    for identity in ClientIdentity::ALL {
        let info = cert_info(&cfg.dir.join(format!("{}.crt", identity.file_stem())));
        assert_eq!(info.subject, identity.user_info("edge-1"));
        assert_eq!(identity_from_cert(&der(identity.file_stem())).unwrap(), identity.user_info("edge-1"));
        assert!(signed_by(&der(identity.file_stem()), &ca_der("client-ca.crt")));
        assert_eq!(info.not_after, t0() + LEAF_VALIDITY);
    }
    let admin = identity_from_cert(&der("client-admin")).unwrap();
    assert_eq!(admin, UserInfo { name: "system:admin".into(), groups: vec!["system:masters".into()] });
    let kubelet = identity_from_cert(&der("client-kubelet")).unwrap();
    assert_eq!(kubelet, UserInfo { name: "system:node:edge-1".into(), groups: vec!["system:nodes".into()] });
}

#[test]
fn a_second_start_reuses_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), t0());
    let first = ensure(&cfg).unwrap();
    let before = snapshot(&cfg.dir);
    let second = ensure(&config(tmp.path(), t0() + Duration::days(30))).unwrap();
    assert_eq!(snapshot(&cfg.dir), before);
    assert!(second.issued().is_empty(), "{:?}", second.issued());
    assert_eq!(first.server_ca_pem(), second.server_ca_pem());
    assert_eq!(first.service_account_tokens().key_id(), second.service_account_tokens().key_id());
}

#[test]
fn leaves_are_renewed_within_90_days_of_expiry_keeping_their_keys() {
    let tmp = tempfile::tempdir().unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    let dir = tmp.path().join("server/tls");
    let before = snapshot(&dir);
    let expiry = t0() + LEAF_VALIDITY;

    let at_91 = ensure(&config(tmp.path(), expiry - Duration::days(91))).unwrap();
    assert!(at_91.issued().is_empty());
    assert_eq!(snapshot(&dir), before);

    let now = expiry - Duration::days(89);
    let at_89 = ensure(&config(tmp.path(), now)).unwrap();
    let got = reasons(&at_89);
    let want: BTreeMap<String, IssueReason> =
        leaf_stems().iter().map(|s| (format!("{s}.crt"), IssueReason::Expiring { not_after: expiry })).collect();
    assert_eq!(got, want);
    let after = snapshot(&dir);
    for stem in leaf_stems() {
        assert_ne!(after[&format!("{stem}.crt")], before[&format!("{stem}.crt")], "{stem}");
        assert_eq!(after[&format!("{stem}.key")], before[&format!("{stem}.key")], "{stem}");
        let info = cert_info(&dir.join(format!("{stem}.crt")));
        assert_eq!(info.not_after, now + LEAF_VALIDITY);
    }
    for unchanged in ["server-ca.crt", "server-ca.key", "client-ca.crt", "client-ca.key", "service.key"] {
        assert_eq!(after[unchanged], before[unchanged], "{unchanged}");
    }
    // The renewed serving certificate is the one TLS serves.
    let serving_der = cert::parse_cert_pem(&dir, &after["serving-kube-apiserver.crt"]).unwrap();
    assert!(signed_by(&serving_der, &cert::parse_cert_pem(&dir, &after["server-ca.crt"]).unwrap()));
}

#[test]
fn an_expired_leaf_is_renewed_too() {
    let tmp = tempfile::tempdir().unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    let pki = ensure(&config(tmp.path(), t0() + Duration::days(400))).unwrap();
    assert_eq!(pki.issued().len(), leaf_stems().len());
}

#[test]
fn a_san_change_reissues_the_serving_certificate_only() {
    let tmp = tempfile::tempdir().unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    let dir = tmp.path().join("server/tls");
    let before = snapshot(&dir);

    let mut cfg = config(tmp.path(), t0() + Duration::days(1));
    cfg.tls_sans.push("API.Example.org".into());
    cfg.node_ip = "192.168.5.9".parse().unwrap();
    let pki = ensure(&cfg).unwrap();
    let want = IssueReason::NamesMissing { missing: vec!["api.example.org".into(), "192.168.5.9".into()] };
    assert_eq!(reasons(&pki), BTreeMap::from([("serving-kube-apiserver.crt".to_string(), want)]));
    let info = cert_info(&dir.join("serving-kube-apiserver.crt"));
    assert!(info.dns_names.contains(&"api.example.org".to_string()));
    assert!(info.ips.contains(&"192.168.5.9".parse().unwrap()));
    let after = snapshot(&dir);
    for (name, bytes) in &before {
        if name != "serving-kube-apiserver.crt" {
            assert_eq!(&after[name], bytes, "{name}");
        }
    }

    // A name no longer asked for is not a reason to re-issue.
    let mut cfg = config(tmp.path(), t0() + Duration::days(2));
    cfg.tls_sans.clear();
    cfg.node_ip = "192.168.5.9".parse().unwrap();
    assert!(ensure(&cfg).unwrap().issued().is_empty());
}

#[test]
fn a_renamed_node_gets_a_new_kubelet_identity() {
    let tmp = tempfile::tempdir().unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    let mut cfg = config(tmp.path(), t0());
    cfg.node_name = "edge-2".into();
    let pki = ensure(&cfg).unwrap();
    let got = reasons(&pki);
    assert_eq!(
        got["client-kubelet.crt"],
        IssueReason::SubjectChanged { was: ClientIdentity::Kubelet.user_info("edge-1") }
    );
    assert_eq!(got["serving-kube-apiserver.crt"], IssueReason::NamesMissing { missing: vec!["edge-2".into()] });
    assert_eq!(got.len(), 2);
    let kubelet = cert_info(&cfg.dir.join("client-kubelet.crt"));
    assert_eq!(kubelet.subject.name, "system:node:edge-2");
    assert_eq!(pki.user_info(ClientIdentity::Kubelet).name, "system:node:edge-2");
}

#[test]
fn a_ca_near_expiry_is_an_error_that_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    let dir = tmp.path().join("server/tls");
    let before = snapshot(&dir);
    let ca_expiry = t0() + CA_VALIDITY;

    let e = ensure(&config(tmp.path(), ca_expiry - Duration::days(89))).unwrap_err();
    match &e {
        PkiError::CaExpiring { path, days_left, .. } => {
            assert_eq!(path, &dir.join("server-ca.crt"));
            assert_eq!(*days_left, 89);
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains("server-ca.crt") && msg.contains("in 89 days") && msg.contains("move"), "{msg}");
    assert!(msg.contains("server-ca.key"), "{msg}");
    let e = ensure(&config(tmp.path(), ca_expiry + Duration::days(1))).unwrap_err();
    assert!(e.to_string().contains("expired on"), "{e}");
    assert_eq!(snapshot(&dir), before, "an error leaves the files alone");

    // At 91 days the CA is fine; leaves issued then end with the CA, not after it.
    let now = ca_expiry - Duration::days(91);
    let pki = ensure(&config(tmp.path(), now)).unwrap();
    assert_eq!(pki.issued().len(), leaf_stems().len());
    assert_eq!(cert_info(&dir.join("client-admin.crt")).not_after, ca_expiry);
}

#[test]
fn a_ca_from_the_future_means_a_wrong_clock() {
    let tmp = tempfile::tempdir().unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    let e = ensure(&config(tmp.path(), t0() - Duration::days(1))).unwrap_err();
    assert!(matches!(e, PkiError::CaNotYetValid { .. }), "{e:?}");
    assert!(e.to_string().contains("check the system clock"));
}

#[test]
fn a_mismatched_key_is_an_error_and_nothing_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    let dir = tmp.path().join("server/tls");
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap().serialize_pem();
    for stem in ["client-admin", "server-ca"] {
        let key_path = dir.join(format!("{stem}.key"));
        let original = fs::read(&key_path).unwrap();
        fs::write(&key_path, &other).unwrap();
        let before = snapshot(&dir);
        let e = ensure(&config(tmp.path(), t0())).unwrap_err();
        match &e {
            PkiError::KeyMismatch { file, key } => {
                assert_eq!(file, &dir.join(format!("{stem}.crt")));
                assert_eq!(key, &key_path);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(e.to_string().contains(&format!("{stem}.crt does not match its private key")), "{e}");
        assert_eq!(snapshot(&dir), before);
        fs::write(&key_path, original).unwrap();
    }
    assert!(ensure(&config(tmp.path(), t0())).unwrap().issued().is_empty());
}

#[test]
fn unreadable_or_non_pem_files_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    let dir = tmp.path().join("server/tls");

    // A directory where a key should be: reading fails (root reads files whatever their mode).
    let key = dir.join("client-ca.key");
    let saved = fs::read(&key).unwrap();
    fs::remove_file(&key).unwrap();
    fs::create_dir(&key).unwrap();
    let e = ensure(&config(tmp.path(), t0())).unwrap_err();
    assert!(matches!(&e, PkiError::ReadFile { path, .. } if path == &key), "{e:?}");
    assert!(e.to_string().starts_with(&format!("cannot read {}", key.display())), "{e}");
    assert!(key.is_dir(), "left as it was");
    fs::remove_dir(&key).unwrap();
    fs::write(&key, saved).unwrap();

    for (name, text, expected) in [
        ("serving-kube-apiserver.crt", "not a certificate\n", "CERTIFICATE"),
        ("client-admin.key", "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n", "PRIVATE KEY"),
        ("server-ca.crt", "", "CERTIFICATE"),
    ] {
        let path = dir.join(name);
        let saved = fs::read(&path).unwrap();
        fs::write(&path, text).unwrap();
        let e = ensure(&config(tmp.path(), t0())).unwrap_err();
        assert!(matches!(&e, PkiError::NotPem { path: p, expected: x, .. } if p == &path && *x == expected), "{e:?}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        assert_eq!(fs::read(&path).unwrap(), text.as_bytes(), "left as it was");
        fs::write(&path, saved).unwrap();
    }

    // PEM, but not a certificate inside.
    let path = dir.join("client-kube-proxy.crt");
    fs::write(&path, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
    let e = ensure(&config(tmp.path(), t0())).unwrap_err();
    assert!(matches!(&e, PkiError::BadCertificate { path: p, .. } if p == &path), "{e:?}");
}

#[test]
fn loose_permissions_are_tightened() {
    let tmp = tempfile::tempdir().unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    let dir = tmp.path().join("server/tls");
    for name in ["server-ca.key", "client-kubelet.key", "service.key"] {
        fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o644)).unwrap();
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for name in ["server-ca.key", "client-kubelet.key", "service.key"] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
}

#[test]
fn half_a_ca_is_an_error_and_a_removed_ca_is_remade() {
    let tmp = tempfile::tempdir().unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    let dir = tmp.path().join("server/tls");
    let saved = fs::read(dir.join("server-ca.key")).unwrap();
    fs::remove_file(dir.join("server-ca.key")).unwrap();
    let e = ensure(&config(tmp.path(), t0())).unwrap_err();
    assert!(matches!(&e, PkiError::CaIncomplete { missing, .. } if missing == &dir.join("server-ca.key")), "{e:?}");
    fs::write(dir.join("server-ca.key"), saved).unwrap();

    // Removing both (what the CA-expiry message tells) makes a new CA; what it signed is
    // re-issued, with the same keys; what the other CA signed is untouched.
    let before = snapshot(&dir);
    fs::remove_file(dir.join("server-ca.key")).unwrap();
    fs::remove_file(dir.join("server-ca.crt")).unwrap();
    let pki = ensure(&config(tmp.path(), t0() + Duration::days(1))).unwrap();
    let got = reasons(&pki);
    assert_eq!(got["server-ca.crt"], IssueReason::Created);
    assert_eq!(got["serving-kube-apiserver.crt"], IssueReason::NotSignedByCa { ca: dir.join("server-ca.crt") });
    assert_eq!(got.len(), 2);
    let after = snapshot(&dir);
    assert_ne!(after["server-ca.crt"], before["server-ca.crt"]);
    assert_eq!(after["serving-kube-apiserver.key"], before["serving-kube-apiserver.key"]);
    assert_eq!(after["client-admin.crt"], before["client-admin.crt"]);
}

#[test]
fn a_missing_leaf_file_is_remade() {
    let tmp = tempfile::tempdir().unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    let dir = tmp.path().join("server/tls");
    let key_before = fs::read(dir.join("client-kube-scheduler.key")).unwrap();
    fs::remove_file(dir.join("client-kube-scheduler.crt")).unwrap();
    fs::remove_file(dir.join("client-kube-proxy.key")).unwrap();
    let pki = ensure(&config(tmp.path(), t0())).unwrap();
    let got = reasons(&pki);
    assert_eq!(got["client-kube-scheduler.crt"], IssueReason::Missing);
    assert_eq!(got["client-kube-proxy.crt"], IssueReason::KeyMissing);
    assert_eq!(got.len(), 2);
    assert_eq!(fs::read(dir.join("client-kube-scheduler.key")).unwrap(), key_before);
    assert_eq!(mode(&dir.join("client-kube-proxy.key")), 0o600);
    assert!(ensure(&config(tmp.path(), t0())).unwrap().issued().is_empty());
}

#[test]
fn an_interrupted_first_boot_starts_over() {
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("server/.tls.new");
    fs::create_dir_all(&staging).unwrap();
    fs::write(staging.join("server-ca.key"), "half").unwrap();
    let cfg = config(tmp.path(), t0());
    ensure(&cfg).unwrap();
    assert!(!staging.exists());
    assert!(cfg.dir.join("server-ca.crt").exists());
}

#[test]
fn the_service_key_and_its_public_half() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ensure(&config(tmp.path(), t0())).unwrap();
    let dir = tmp.path().join("server/tls");
    let tokens = pki.service_account_tokens();
    assert_eq!(tokens.issuer(), "https://kubernetes.default.svc.cluster.local");
    assert_eq!(fs::read_to_string(dir.join("service.pub")).unwrap(), tokens.public_key_pem());
    // The private key is PKCS#8 PEM.
    assert!(fs::read_to_string(dir.join("service.key")).unwrap().starts_with("-----BEGIN PRIVATE KEY-----"));

    // A missing public key is written again; one that is not ours is an error.
    fs::remove_file(dir.join("service.pub")).unwrap();
    ensure(&config(tmp.path(), t0())).unwrap();
    assert_eq!(fs::read_to_string(dir.join("service.pub")).unwrap(), tokens.public_key_pem());
    let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap().public_key_pem();
    fs::write(dir.join("service.pub"), other).unwrap();
    let e = ensure(&config(tmp.path(), t0())).unwrap_err();
    assert!(matches!(&e, PkiError::KeyMismatch { file, .. } if file == &dir.join("service.pub")), "{e:?}");

    // An RSA or P-384 service key is refused, naming the file.
    let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap().serialize_pem();
    fs::write(dir.join("service.key"), p384).unwrap();
    let e = ensure(&config(tmp.path(), t0())).unwrap_err();
    assert!(matches!(&e, PkiError::ServiceKey { path, .. } if path == &dir.join("service.key")), "{e:?}");
}

#[test]
fn bad_names_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = config(tmp.path(), t0());
    cfg.tls_sans.push("bad_name!".into());
    let e = ensure(&cfg).unwrap_err();
    assert!(matches!(&e, PkiError::InvalidName { what: "tls-san", .. }), "{e:?}");
    assert!(!tmp.path().join("server").exists());
    assert_eq!(check_tls_san(" *.Apps.Example.com").unwrap(), "*.apps.example.com");
    assert_eq!(check_tls_san("::ffff:10.0.0.1").unwrap(), "::ffff:10.0.0.1");
    assert_eq!(check_tls_san("fd00:0::1").unwrap(), "fd00::1");
    for bad in ["", "a..b", "-a.b", "a.b-", "a.*.b", "http://x", &"a".repeat(64)] {
        assert!(check_tls_san(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn kubeconfigs_carry_the_identity_and_the_server_ca() {
    use base64::Engine;
    let tmp = tempfile::tempdir().unwrap();
    let pki = ensure(&config(tmp.path(), t0())).unwrap();
    for identity in ClientIdentity::ALL {
        let text = pki.kubeconfig_for(identity, "https://127.0.0.1:6443");
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let data =
            |v: &serde_json::Value| base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        let ca = data(&doc["clusters"][0]["cluster"]["certificate-authority-data"]);
        assert_eq!(ca, pki.server_ca_pem().as_bytes());
        let cert_pem = data(&doc["users"][0]["user"]["client-certificate-data"]);
        let der = cert::parse_cert_pem(Path::new("kubeconfig"), &cert_pem).unwrap();
        assert_eq!(identity_from_cert(&der).unwrap(), pki.user_info(identity));
        let key =
            cert::parse_key_pem(Path::new("kubeconfig"), &data(&doc["users"][0]["user"]["client-key-data"])).unwrap();
        assert_eq!(inspect(&der).unwrap().public_key, key.public_key_raw());
    }
    let path = tmp.path().join("etc/k3rs/k3rs.yaml");
    pki.write_kubeconfig(&path, 0o640, "https://127.0.0.1:6443").unwrap();
    assert_eq!(mode(&path), 0o640);
    assert_eq!(fs::read_to_string(&path).unwrap(), pki.kubeconfig_for(ClientIdentity::Admin, "https://127.0.0.1:6443"));
}

#[test]
fn the_tls_configuration_offers_h2_and_http1() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ensure(&config(tmp.path(), t0())).unwrap();
    let tls = pki.server_tls_config();
    assert_eq!(tls.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
}

#[test]
fn identity_needs_a_common_name() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:masters");
    let cert = params.self_signed(&key).unwrap();
    let e = identity_from_cert(cert.der()).unwrap_err();
    assert!(e.to_string().contains("no common name"), "{e}");
    assert!(matches!(identity_from_cert(b"junk"), Err(PkiError::PeerCertificate(_))));
}
