//! The etcd backend over TLS: a real etcd 3.4 serving https on loopback with certificates
//! made for the test, requiring client certificates (`--client-cert-auth`), as a k3s
//! `--datastore-endpoint https://…` with `--datastore-cafile/certfile/keyfile` would meet.
//!
//! The cases that a store must refuse are checked for the error a person would need to
//! fix the setup: the kind of error and the file or endpoint it names.

use crate::common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use k3rs::store::etcd::{EtcdOptions, EtcdStore};
use k3rs::store::{EventKind, KeyRange, RangeOptions, Revision, Store, StoreError, WatchItem, WriteOutcome};

use common::etcd::EtcdServer;
use common::tls::TestPki;

/// No single wait in a case may take longer than this.
const STEP: Duration = Duration::from_secs(15);

/// Options reaching `server` with `pki`'s CA and client certificate.
fn tls_options(server: &EtcdServer, pki: &TestPki) -> EtcdOptions {
    EtcdOptions {
        endpoints: vec![server.endpoint.clone()],
        prefix: b"/k3rs-tls".to_vec(),
        connect_timeout: Some(STEP),
        ca_file: Some(pki.ca_file.clone()),
        cert_file: Some(pki.client_cert_file.clone()),
        key_file: Some(pki.client_key_file.clone()),
    }
}

async fn connect_err(opts: EtcdOptions) -> StoreError {
    match tokio::time::timeout(STEP, EtcdStore::connect(opts)).await {
        Ok(Ok(_)) => panic!("the store connected; it should have been refused"),
        Ok(Err(err)) => err,
        Err(_) => panic!("connect neither succeeded nor failed within {STEP:?}"),
    }
}

fn assert_mentions(err: &StoreError, parts: &[&str]) {
    let text = err.to_string();
    for part in parts {
        assert!(text.contains(part), "error {text:?} does not mention {part:?}");
    }
}

fn path_text(path: &Path) -> String {
    path.display().to_string()
}

#[tokio::test]
async fn tls_store_with_client_certificate_puts_gets_and_watches() {
    let pki = TestPki::generate();
    let server = EtcdServer::start_tls(&pki).await;
    assert!(server.endpoint.starts_with("https://"), "endpoint {}", server.endpoint);
    let store = EtcdStore::connect(tls_options(&server, &pki)).await.expect("connect to etcd over TLS");

    let mut watch = store.watch(KeyRange::prefix("/registry/"), None).await.expect("start a watch");
    let created = match store.create(Bytes::from("/registry/a"), Bytes::from("one"), None).await {
        Ok(WriteOutcome::Applied { revision, prev: None }) => revision,
        other => panic!("create: {other:?}"),
    };
    let updated = match store.update(Bytes::from("/registry/a"), Bytes::from("two"), created, None).await {
        Ok(WriteOutcome::Applied { revision, prev: Some(prev) }) => {
            assert_eq!(prev.value, Bytes::from("one"));
            revision
        }
        other => panic!("update: {other:?}"),
    };
    assert!(updated > created);

    let read = store.range(&KeyRange::prefix("/registry/"), RangeOptions::default()).await.expect("range");
    assert_eq!(read.revision, updated);
    assert_eq!(read.kvs.len(), 1);
    assert_eq!(read.kvs[0].key, Bytes::from("/registry/a"));
    assert_eq!(read.kvs[0].value, Bytes::from("two"));
    assert_eq!(read.kvs[0].create_revision, created);
    assert_eq!(read.kvs[0].mod_revision, updated);

    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(STEP, watch.stream.next()).await {
            Ok(Some(Ok(WatchItem::Events(events)))) => seen.extend(events),
            Ok(Some(Ok(WatchItem::Progress(_)))) => {}
            other => panic!("watch: {other:?}"),
        }
    }
    let got: Vec<(EventKind, Revision, Bytes)> =
        seen.iter().map(|e| (e.kind, e.revision(), e.kv.value.clone())).collect();
    assert_eq!(got, vec![(EventKind::Put, created, Bytes::from("one")), (EventKind::Put, updated, Bytes::from("two"))]);
    assert_eq!(seen[1].prev_kv.as_ref().map(|kv| kv.value.clone()), Some(Bytes::from("one")));

    // The keys went to etcd under the prefix, over the same TLS setup.
    let other = EtcdStore::connect(EtcdOptions { prefix: Vec::new(), ..tls_options(&server, &pki) })
        .await
        .expect("connect a second store without prefix");
    let raw = other.range(&KeyRange::key("/k3rs-tls/registry/a"), RangeOptions::default()).await.expect("range");
    assert_eq!(raw.kvs.iter().map(|kv| kv.value.clone()).collect::<Vec<_>>(), vec![Bytes::from("two")]);
    store.close().await.expect("close");
}

#[tokio::test]
async fn tls_without_client_certificate_is_refused() {
    let pki = TestPki::generate();
    let server = EtcdServer::start_tls(&pki).await;
    let opts = EtcdOptions { cert_file: None, key_file: None, ..tls_options(&server, &pki) };
    let err = connect_err(opts).await;
    assert!(matches!(err, StoreError::Etcd { op: "connect", .. }), "{err:?}");
    assert_mentions(&err, &[&server.endpoint, "requires a client certificate"]);
}

#[tokio::test]
async fn tls_client_certificate_of_another_ca_is_refused() {
    let pki = TestPki::generate();
    let stranger = TestPki::generate();
    let server = EtcdServer::start_tls(&pki).await;
    let opts = EtcdOptions {
        cert_file: Some(stranger.client_cert_file.clone()),
        key_file: Some(stranger.client_key_file.clone()),
        ..tls_options(&server, &pki)
    };
    let err = connect_err(opts).await;
    assert!(matches!(err, StoreError::Etcd { op: "connect", .. }), "{err:?}");
    assert_mentions(
        &err,
        &[&server.endpoint, "refused the client certificate", &path_text(&stranger.client_cert_file)],
    );
}

#[tokio::test]
async fn tls_server_certificate_not_signed_by_the_ca_file_is_refused() {
    let pki = TestPki::generate();
    let stranger = TestPki::generate();
    let server = EtcdServer::start_tls(&pki).await;
    let opts = EtcdOptions { ca_file: Some(stranger.ca_file.clone()), ..tls_options(&server, &pki) };
    let err = connect_err(opts).await;
    assert!(matches!(err, StoreError::Etcd { op: "connect", .. }), "{err:?}");
    assert_mentions(&err, &[&server.endpoint, "invalid peer certificate", &path_text(&stranger.ca_file)]);
}

#[tokio::test]
async fn tls_key_of_another_certificate_is_refused() {
    let pki = TestPki::generate();
    let stranger = TestPki::generate();
    let opts = EtcdOptions {
        endpoints: vec!["https://127.0.0.1:1".into()],
        ca_file: Some(pki.ca_file.clone()),
        cert_file: Some(pki.client_cert_file.clone()),
        key_file: Some(stranger.client_key_file.clone()),
        ..Default::default()
    };
    let err = connect_err(opts).await;
    assert!(matches!(err, StoreError::InvalidArgument(_)), "{err:?}");
    assert_mentions(
        &err,
        &["does not belong", &path_text(&stranger.client_key_file), &path_text(&pki.client_cert_file)],
    );
}

/// Options that contradict each other are refused before any connection is tried (the
/// endpoint's port has no server), each with an error naming what to fix.
#[tokio::test]
async fn tls_options_that_do_not_fit_together_are_refused() {
    let pki = TestPki::generate();
    let https = EtcdOptions {
        endpoints: vec!["https://127.0.0.1:1".into()],
        ca_file: Some(pki.ca_file.clone()),
        cert_file: Some(pki.client_cert_file.clone()),
        key_file: Some(pki.client_key_file.clone()),
        ..Default::default()
    };
    let missing = pki.dir().join("missing.pem");
    let not_pem = pki.dir().join("not-pem.txt");
    std::fs::write(&not_pem, "not a certificate\n").expect("write a file that is not PEM");
    let ca = path_text(&pki.ca_file);
    let cert = path_text(&pki.client_cert_file);
    let key = path_text(&pki.client_key_file);

    let cases: Vec<(&str, EtcdOptions, Vec<String>)> = vec![
        (
            "certificate without key",
            EtcdOptions { key_file: None, ..https.clone() },
            vec![cert.clone(), "without its key file".into()],
        ),
        (
            "key without certificate",
            EtcdOptions { cert_file: None, ..https.clone() },
            vec![key.clone(), "without its certificate file".into()],
        ),
        ("https without CA", EtcdOptions { ca_file: None, ..https.clone() }, vec!["no CA file".into()]),
        (
            "http with TLS files",
            EtcdOptions { endpoints: vec!["http://127.0.0.1:1".into()], ..https.clone() },
            vec![ca.clone(), "not https://".into()],
        ),
        (
            "http with only a CA file",
            EtcdOptions {
                endpoints: vec!["http://127.0.0.1:1".into()],
                cert_file: None,
                key_file: None,
                ..https.clone()
            },
            vec![ca.clone(), "not https://".into()],
        ),
        (
            "https mixed with http",
            EtcdOptions { endpoints: vec!["https://127.0.0.1:1".into(), "http://127.0.0.1:2".into()], ..https.clone() },
            vec!["mix https://".into()],
        ),
        (
            "unreadable CA file",
            EtcdOptions { ca_file: Some(missing.clone()), ..https.clone() },
            vec![path_text(&missing), "No such file".into()],
        ),
        (
            "unreadable key file",
            EtcdOptions { key_file: Some(missing.clone()), ..https.clone() },
            vec![path_text(&missing), "key file".into()],
        ),
        (
            "CA file that is not PEM",
            EtcdOptions { ca_file: Some(not_pem.clone()), ..https.clone() },
            vec![path_text(&not_pem), "no PEM CERTIFICATE block".into()],
        ),
        (
            "key file holding a certificate",
            EtcdOptions { key_file: Some(pki.client_cert_file.clone()), ..https.clone() },
            vec![cert.clone(), "no PEM PRIVATE KEY block".into()],
        ),
    ];
    for (name, opts, parts) in cases {
        let err = connect_err(opts).await;
        assert!(matches!(err, StoreError::InvalidArgument(_)), "{name}: {err:?}");
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        assert_mentions(&err, &parts);
    }
}
