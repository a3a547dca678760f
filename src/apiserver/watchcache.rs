//! The API server's watch cache for a remote datastore (etcd): lists of the latest state of
//! a resource type are answered from memory instead of reading every object over the
//! network again. One watch per resource type (`/registry/<resource>/`) keeps its copy
//! current; a list first learns the datastore's current revision and waits until the copy
//! has caught up with it (asking the watch for a progress notification), so a list never
//! misses a write that finished before it began, as upstream's consistent reads from
//! cache guarantee. Everything else (gets, writes, watches, reads at older revisions)
//! goes to the datastore.
//!
//! [`WatchCache`] is itself a [`Store`], wrapped around the datastore's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{watch, Mutex};

use crate::store::{
    Deleted, EventKind, KeyRange, KeyValue, LeaseGrant, LeaseId, LeaseStatus, RangeEnd, RangeOptions, RangeResult,
    Result, Revision, Store, StoreStatus, Watch, WatchItem, WriteOutcome,
};

/// How long a list waits for its resource type's copy to catch up before it reads the
/// datastore instead.
const CATCH_UP: Duration = Duration::from_secs(3);
const PREFIX: &[u8] = b"/registry/";

/// One resource type's copy.
struct Cache {
    prefix: Bytes,
    state: RwLock<State>,
    /// The revision the copy is current to, for waiters.
    revision: watch::Sender<Revision>,
    progress: Arc<dyn Fn() + Send + Sync>,
}

#[derive(Default)]
struct State {
    items: BTreeMap<Bytes, KeyValue>,
    /// Set when the watch ended: the copy is no longer kept current.
    broken: bool,
}

/// See the module documentation.
pub struct WatchCache {
    inner: Arc<dyn Store>,
    caches: Mutex<HashMap<Bytes, Arc<Cache>>>,
}

/// The resource type prefix (`/registry/<resource>/`) a range lies within, if any.
fn cache_prefix(range: &KeyRange) -> Option<Bytes> {
    let rest = range.start.strip_prefix(PREFIX)?;
    let slash = rest.iter().position(|b| *b == b'/')?;
    if slash == 0 {
        return None;
    }
    let prefix = Bytes::copy_from_slice(&range.start[..PREFIX.len() + slash + 1]);
    let end = crate::store::prefix_end(&prefix)?;
    let inside = match &range.end {
        RangeEnd::Before(e) => e[..] <= end[..],
        // Single keys are gets: the datastore answers them.
        RangeEnd::Single | RangeEnd::Unbounded => false,
    };
    inside.then_some(prefix)
}

impl WatchCache {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        WatchCache { inner, caches: Mutex::new(HashMap::new()) }
    }

    /// The copy of a resource type, made (listed, then watched) on first use.
    async fn cache(&self, prefix: &Bytes) -> Result<Arc<Cache>> {
        let mut caches = self.caches.lock().await;
        if let Some(c) = caches.get(prefix) {
            if !c.state.read().map(|s| s.broken).unwrap_or(true) {
                return Ok(c.clone());
            }
        }
        let list = self.inner.range(&KeyRange::prefix(prefix.clone()), RangeOptions::default()).await?;
        let w = self.inner.watch(KeyRange::prefix(prefix.clone()), Some(list.revision.next())).await?;
        let (tx, _) = watch::channel(list.revision);
        let cache = Arc::new(Cache {
            prefix: prefix.clone(),
            state: RwLock::new(State {
                items: list.kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect(),
                broken: false,
            }),
            revision: tx,
            progress: w.progress_handle(),
        });
        tokio::spawn(follow(Arc::downgrade(&cache), w));
        tracing::debug!(prefix = %String::from_utf8_lossy(prefix), rev = list.revision.0, "watch cache started");
        caches.insert(prefix.clone(), cache.clone());
        Ok(cache)
    }

    /// A latest-state range from memory, once the copy is current to the datastore's
    /// revision; `None` when it cannot be (the caller reads the datastore).
    async fn cached_range(&self, prefix: &Bytes, range: &KeyRange, opts: &RangeOptions) -> Result<Option<RangeResult>> {
        let cache = self.cache(prefix).await?;
        let target = match opts.revision {
            Some(r) => r,
            None => self.inner.current_revision().await?,
        };
        let mut rx = cache.revision.subscribe();
        if *rx.borrow() < target {
            if opts.revision.is_some() {
                // An exact older or newer revision: only the datastore has it.
                return Ok(None);
            }
            (cache.progress)();
            let caught_up = tokio::time::timeout(CATCH_UP, rx.wait_for(|r| *r >= target)).await;
            if !matches!(caught_up, Ok(Ok(_))) {
                tracing::debug!(prefix = %String::from_utf8_lossy(&cache.prefix), "watch cache behind: reading the datastore");
                return Ok(None);
            }
        }
        let Ok(state) = cache.state.read() else { return Ok(None) };
        if state.broken {
            return Ok(None);
        }
        let at = *cache.revision.borrow();
        if opts.revision.is_some_and(|r| r != at) {
            return Ok(None);
        }
        let end = match &range.end {
            RangeEnd::Before(e) => e.clone(),
            _ => return Ok(None),
        };
        let mut kvs = Vec::new();
        let mut count = 0i64;
        let mut more = false;
        for (_, kv) in state.items.range(range.start.clone()..end) {
            count += 1;
            if opts.count_only {
                continue;
            }
            if opts.limit.is_some_and(|l| kvs.len() >= l) {
                more = true;
                continue;
            }
            let mut kv = kv.clone();
            if opts.keys_only {
                kv.value = Bytes::new();
            }
            kvs.push(kv);
        }
        Ok(Some(RangeResult { revision: at, kvs, more, count }))
    }
}

/// Applies the watch's changes to the copy until the watch (or the copy) goes away.
async fn follow(cache: std::sync::Weak<Cache>, mut w: Watch) {
    while let Some(item) = w.stream.next().await {
        let Some(c) = cache.upgrade() else { return };
        let rev = match item {
            Ok(WatchItem::Events(events)) => {
                let Ok(mut state) = c.state.write() else { return };
                let mut last = Revision(0);
                for ev in events {
                    last = ev.kv.mod_revision;
                    match ev.kind {
                        EventKind::Put => {
                            state.items.insert(ev.kv.key.clone(), ev.kv);
                        }
                        EventKind::Delete => {
                            state.items.remove(&ev.kv.key);
                        }
                    }
                }
                last
            }
            Ok(WatchItem::Progress(r)) => r,
            Err(e) => {
                tracing::warn!(prefix = %String::from_utf8_lossy(&c.prefix), error = %e, "watch cache stopped: lists read the datastore until it restarts");
                break;
            }
        };
        c.revision.send_if_modified(|cur| {
            if rev > *cur {
                *cur = rev;
                true
            } else {
                false
            }
        });
    }
    if let Some(c) = cache.upgrade() {
        if let Ok(mut s) = c.state.write() {
            s.broken = true;
        }
    }
}

#[async_trait::async_trait]
impl Store for WatchCache {
    async fn current_revision(&self) -> Result<Revision> {
        self.inner.current_revision().await
    }

    async fn range(&self, range: &KeyRange, opts: RangeOptions) -> Result<RangeResult> {
        if let Some(prefix) = cache_prefix(range) {
            match self.cached_range(&prefix, range, &opts).await {
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "watch cache unavailable: reading the datastore"),
            }
        }
        self.inner.range(range, opts).await
    }

    async fn get(&self, key: &[u8], revision: Option<Revision>) -> Result<(Revision, Option<KeyValue>)> {
        self.inner.get(key, revision).await
    }

    async fn create(&self, key: Bytes, value: Bytes, lease: Option<LeaseId>) -> Result<WriteOutcome> {
        self.inner.create(key, value, lease).await
    }

    async fn update(
        &self,
        key: Bytes,
        value: Bytes,
        expected: Revision,
        lease: Option<LeaseId>,
    ) -> Result<WriteOutcome> {
        self.inner.update(key, value, expected, lease).await
    }

    async fn put(&self, key: Bytes, value: Bytes, lease: Option<LeaseId>) -> Result<WriteOutcome> {
        self.inner.put(key, value, lease).await
    }

    async fn delete(&self, key: Bytes, expected: Option<Revision>) -> Result<WriteOutcome> {
        self.inner.delete(key, expected).await
    }

    async fn delete_range(&self, range: &KeyRange) -> Result<Deleted> {
        self.inner.delete_range(range).await
    }

    async fn watch(&self, range: KeyRange, start: Option<Revision>) -> Result<Watch> {
        self.inner.watch(range, start).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn compact_revision(&self) -> Result<Revision> {
        self.inner.compact_revision().await
    }

    async fn lease_grant(&self, id: Option<LeaseId>, ttl: i64) -> Result<LeaseGrant> {
        self.inner.lease_grant(id, ttl).await
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<()> {
        self.inner.lease_revoke(id).await
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64> {
        self.inner.lease_keep_alive(id).await
    }

    async fn lease_status(&self, id: LeaseId) -> Result<Option<LeaseStatus>> {
        self.inner.lease_status(id).await
    }

    async fn leases(&self) -> Result<Vec<LeaseId>> {
        self.inner.leases().await
    }

    async fn status(&self) -> Result<StoreStatus> {
        self.inner.status().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ranges_within_one_resource_type_are_cached() {
        let p = |r: KeyRange| cache_prefix(&r).map(|b| String::from_utf8_lossy(&b).into_owned());
        assert_eq!(p(KeyRange::prefix(&b"/registry/configmaps/"[..])).as_deref(), Some("/registry/configmaps/"));
        assert_eq!(
            p(KeyRange::prefix(&b"/registry/configmaps/default/"[..])).as_deref(),
            Some("/registry/configmaps/")
        );
        assert_eq!(
            p(KeyRange::prefix(&b"/registry/configmaps/default/"[..]).after(b"/registry/configmaps/default/a"))
                .as_deref(),
            Some("/registry/configmaps/")
        );
        assert_eq!(p(KeyRange::key(&b"/registry/configmaps/default/a"[..])), None);
        assert_eq!(p(KeyRange::prefix(&b"/registry/"[..])), None);
        assert_eq!(p(KeyRange::prefix(&b"/other/x/"[..])), None);
        assert_eq!(p(KeyRange::between(&b"/registry/a/"[..], &b"/registry/z/"[..])), None);
    }
}
