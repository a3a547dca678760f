//! The watch cache over a real etcd: lists through the API server are answered from memory
//! and still see every write that finished before them — the API server's own, and ones
//! made directly in etcd by someone else — with pagination, selectors and deletes.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use k3rs::apiserver::watchcache::WatchCache;
use k3rs::apiserver::{ApiServer, Identity};
use k3rs::client::Client;
use k3rs::store::etcd::{EtcdOptions, EtcdStore};
use k3rs::store::{KeyRange, RangeOptions, Store};
use serde_json::{json, Value};

use common::etcd::EtcdServer;

fn names(list: &Value) -> Vec<String> {
    list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_come_from_memory_and_miss_no_write() {
    let server = EtcdServer::start().await;
    let connect = || EtcdStore::connect(EtcdOptions { endpoints: vec![server.endpoint.clone()], ..Default::default() });
    let etcd: Arc<dyn Store> = Arc::new(connect().await.expect("connect to etcd"));
    let cache = Arc::new(WatchCache::new(etcd.clone()));
    let api = ApiServer::new(cache.clone());
    api.bootstrap().await.unwrap();
    let c = Client::new(api, Identity::new("system:admin", &["system:masters", "system:authenticated"]));

    for i in 0..30 {
        c.post(
            "/api/v1/namespaces/default/configmaps",
            &json!({"metadata": {"name": format!("cm-{i:02}"), "labels": {"even": (i % 2 == 0).to_string()}}}),
        )
        .await
        .unwrap();
    }
    let list = c.get("/api/v1/namespaces/default/configmaps").await.unwrap();
    assert_eq!(names(&list).len(), 30);
    // Every write is seen by the very next list.
    for i in 30..40 {
        c.post("/api/v1/namespaces/default/configmaps", &json!({"metadata": {"name": format!("cm-{i:02}")}}))
            .await
            .unwrap();
        let list = c.get("/api/v1/namespaces/default/configmaps").await.unwrap();
        assert_eq!(names(&list).len(), i + 1);
    }
    c.delete("/api/v1/namespaces/default/configmaps/cm-05").await.unwrap();
    let list = c.get("/api/v1/configmaps?labelSelector=even%3Dfalse").await.unwrap();
    assert_eq!(names(&list).len(), 14, "{:?}", names(&list));
    assert!(!names(&list).contains(&"cm-05".to_string()));

    // Pages: the first from memory, the rest at its revision.
    let mut seen = Vec::new();
    let mut uri = "/api/v1/namespaces/default/configmaps?limit=7".to_string();
    loop {
        let page = c.get(&uri).await.unwrap();
        seen.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(t) if !t.is_empty() => uri = format!("/api/v1/namespaces/default/configmaps?limit=7&continue={t}"),
            _ => break,
        }
    }
    assert_eq!(seen.len(), 39);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));

    // A write straight into etcd by another client is seen by the next list.
    let other = connect().await.expect("connect to etcd");
    let raw = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "outside", "namespace": "default", "uid": "u-outside"}});
    other
        .put(
            Bytes::from_static(b"/registry/configmaps/default/outside"),
            Bytes::from(serde_json::to_vec(&raw).unwrap()),
            None,
        )
        .await
        .unwrap();
    let list = c.get("/api/v1/namespaces/default/configmaps").await.unwrap();
    assert!(names(&list).contains(&"outside".to_string()), "{:?}", names(&list));
    let rv: i64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    assert!(rv >= etcd.current_revision().await.unwrap().0);
}

/// Counts the datastore's range reads of many keys.
struct Counting {
    inner: Arc<dyn Store>,
    big_ranges: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_lists_do_not_read_the_datastore() {
    let server = EtcdServer::start().await;
    let etcd: Arc<dyn Store> = Arc::new(
        EtcdStore::connect(EtcdOptions { endpoints: vec![server.endpoint.clone()], ..Default::default() })
            .await
            .unwrap(),
    );
    let counting = Arc::new(Counting { inner: etcd, big_ranges: AtomicUsize::new(0) });
    let api = ApiServer::new(Arc::new(WatchCache::new(counting.clone())));
    api.bootstrap().await.unwrap();
    let c = Client::new(api, Identity::new("system:admin", &["system:masters", "system:authenticated"]));
    let payload = "x".repeat(1000);
    for i in 0..300 {
        c.post(
            "/api/v1/namespaces/default/configmaps",
            &json!({"metadata": {"name": format!("cm-{i:03}")}, "data": {"k": payload}}),
        )
        .await
        .unwrap();
    }
    c.get("/api/v1/namespaces/default/configmaps").await.unwrap();
    let before = counting.big_ranges.load(Ordering::SeqCst);
    let started = Instant::now();
    for _ in 0..20 {
        let list = c.get("/api/v1/namespaces/default/configmaps").await.unwrap();
        assert_eq!(list["items"].as_array().unwrap().len(), 300);
    }
    assert_eq!(counting.big_ranges.load(Ordering::SeqCst), before, "lists after the first came from memory");
    eprintln!("20 lists of 300 configmaps from the cache: {:?}", started.elapsed());
}

#[async_trait::async_trait]
impl Store for Counting {
    async fn current_revision(&self) -> k3rs::store::Result<k3rs::store::Revision> {
        self.inner.current_revision().await
    }
    async fn range(&self, range: &KeyRange, opts: RangeOptions) -> k3rs::store::Result<k3rs::store::RangeResult> {
        let r = self.inner.range(range, opts).await?;
        if r.kvs.len() > 1 {
            self.big_ranges.fetch_add(1, Ordering::SeqCst);
        }
        Ok(r)
    }
    async fn create(
        &self,
        key: Bytes,
        value: Bytes,
        lease: Option<k3rs::store::LeaseId>,
    ) -> k3rs::store::Result<k3rs::store::WriteOutcome> {
        self.inner.create(key, value, lease).await
    }
    async fn update(
        &self,
        key: Bytes,
        value: Bytes,
        expected: k3rs::store::Revision,
        lease: Option<k3rs::store::LeaseId>,
    ) -> k3rs::store::Result<k3rs::store::WriteOutcome> {
        self.inner.update(key, value, expected, lease).await
    }
    async fn put(
        &self,
        key: Bytes,
        value: Bytes,
        lease: Option<k3rs::store::LeaseId>,
    ) -> k3rs::store::Result<k3rs::store::WriteOutcome> {
        self.inner.put(key, value, lease).await
    }
    async fn delete(
        &self,
        key: Bytes,
        expected: Option<k3rs::store::Revision>,
    ) -> k3rs::store::Result<k3rs::store::WriteOutcome> {
        self.inner.delete(key, expected).await
    }
    async fn watch(
        &self,
        range: KeyRange,
        start: Option<k3rs::store::Revision>,
    ) -> k3rs::store::Result<k3rs::store::Watch> {
        self.inner.watch(range, start).await
    }
    async fn compact(&self, revision: k3rs::store::Revision) -> k3rs::store::Result<()> {
        self.inner.compact(revision).await
    }
    async fn compact_revision(&self) -> k3rs::store::Result<k3rs::store::Revision> {
        self.inner.compact_revision().await
    }
    async fn lease_grant(
        &self,
        id: Option<k3rs::store::LeaseId>,
        ttl: i64,
    ) -> k3rs::store::Result<k3rs::store::LeaseGrant> {
        self.inner.lease_grant(id, ttl).await
    }
    async fn lease_revoke(&self, id: k3rs::store::LeaseId) -> k3rs::store::Result<()> {
        self.inner.lease_revoke(id).await
    }
    async fn lease_keep_alive(&self, id: k3rs::store::LeaseId) -> k3rs::store::Result<i64> {
        self.inner.lease_keep_alive(id).await
    }
    async fn lease_status(&self, id: k3rs::store::LeaseId) -> k3rs::store::Result<Option<k3rs::store::LeaseStatus>> {
        self.inner.lease_status(id).await
    }
    async fn leases(&self) -> k3rs::store::Result<Vec<k3rs::store::LeaseId>> {
        self.inner.leases().await
    }
    async fn status(&self) -> k3rs::store::Result<k3rs::store::StoreStatus> {
        self.inner.status().await
    }
    async fn close(&self) -> k3rs::store::Result<()> {
        self.inner.close().await
    }
}
