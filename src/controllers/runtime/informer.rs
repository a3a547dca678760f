//! Shared informers: one watch and one reflector store per resource type, whatever number of
//! controllers read it. Each informer keeps kube-runtime's [`Store`] current and tells its
//! subscribers what changed ([`Notice`]), deletions included, which kube-runtime's own
//! shared streams do not report and owner-triggered controllers need (a deleted pod must
//! wake its ReplicaSet).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use super::Stop;

/// How many notices a subscriber may fall behind before it is told to resync instead.
const NOTICE_BUFFER: usize = 8192;

/// What a resource type must be to have an informer.
pub trait Object: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static {}
impl<T: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static> Object for T {}

/// One change an informer saw, after its store has taken it in.
#[derive(Debug)]
pub enum Notice<K> {
    /// Added or modified: the object as the store now holds it.
    Changed(Arc<K>),
    /// Deleted: its last state.
    Deleted(Arc<K>),
    /// The store was (re)filled from a list, or this subscriber fell behind: anything may
    /// have changed, deletions unseen.
    Resynced,
}

impl<K> Clone for Notice<K> {
    fn clone(&self) -> Self {
        match self {
            Notice::Changed(o) => Notice::Changed(o.clone()),
            Notice::Deleted(o) => Notice::Deleted(o.clone()),
            Notice::Resynced => Notice::Resynced,
        }
    }
}

/// A shared informer's read side: the store and a way to hear of changes.
pub struct Informer<K: Object> {
    store: Store<K>,
    tx: broadcast::Sender<Notice<K>>,
}

impl<K: Object> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer { store: self.store.clone(), tx: self.tx.clone() }
    }
}

impl<K: Object> Informer<K> {
    /// An informer fed by hand (tests): the writer applies watcher events and the notices go out.
    pub fn manual() -> (Self, ManualFeed<K>) {
        let writer = Writer::default();
        let (tx, _) = broadcast::channel(NOTICE_BUFFER);
        (Informer { store: writer.as_reader(), tx: tx.clone() }, ManualFeed { writer, tx })
    }

    /// The reflector store (complete once [`ready`] resolves).
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Changes from now on. A subscriber that falls more than a buffer behind gets
    /// [`Notice::Resynced`] in place of what it missed.
    pub fn subscribe(&self) -> impl Stream<Item = Notice<K>> + Send + 'static {
        BroadcastStream::new(self.tx.subscribe()).map(|r| match r {
            Ok(n) => n,
            Err(BroadcastStreamRecvError::Lagged(_)) => Notice::Resynced,
        })
    }

    /// The object as the store holds it.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        let mut r = ObjectRef::new(name);
        if let Some(ns) = namespace {
            r = r.within(ns);
        }
        self.store.get(&r)
    }
}

/// Feeds an informer from watcher events: what the watch loop does, and what tests do by hand.
pub struct ManualFeed<K: Object> {
    writer: Writer<K>,
    tx: broadcast::Sender<Notice<K>>,
}

impl<K: Object> ManualFeed<K> {
    /// Applies one watcher event to the store, then tells the subscribers.
    pub fn apply(&mut self, event: Event<K>) {
        self.writer.apply_watcher_event(&event);
        let notice = match event {
            Event::Apply(obj) => {
                let stored = self.writer.as_reader().get(&ObjectRef::from_obj(&obj));
                Notice::Changed(stored.unwrap_or_else(|| Arc::new(obj)))
            }
            Event::Delete(obj) => Notice::Deleted(Arc::new(obj)),
            Event::InitDone => Notice::Resynced,
            Event::Init | Event::InitApply(_) => return,
        };
        // No subscriber is not an error: the store is still current.
        let _ = self.tx.send(notice);
    }

    /// Fills the store with `objects` as an initial list does.
    pub fn fill(&mut self, objects: impl IntoIterator<Item = K>) {
        self.apply(Event::Init);
        for o in objects {
            self.apply(Event::InitApply(o));
        }
        self.apply(Event::InitDone);
    }
}

/// Resolves once `store` is filled. Use this, not [`Store::wait_until_ready`] alone: that
/// one keeps only the waker of whoever polled it last (a one-shot receiver shared by every
/// clone of the store), so of several tasks waiting on one shared store at once all but one
/// may never be woken. Re-polling on a short timer makes every waiter see the store ready.
pub async fn ready<K: Object>(store: &Store<K>) {
    loop {
        if let Ok(r) = tokio::time::timeout(std::time::Duration::from_millis(20), store.wait_until_ready()).await {
            if r.is_err() {
                // The writer is gone (shutdown): nothing will fill the store.
                std::future::pending::<()>().await;
            }
            return;
        }
    }
}

/// Waits for `ready` (store readiness) unless `stop` comes first; false when it did. A store
/// whose informer stopped never becomes ready, so a wait that ignores the stop holds up
/// shutdown.
pub async fn ready_or_stop(stop: &super::Stop, ready: impl std::future::Future<Output = ()>) -> bool {
    tokio::select! {
        () = stop.wait() => false,
        () = ready => true,
    }
}

/// A watch loop that ended, and why.
#[derive(Debug)]
pub struct InformerStopped {
    pub resource: &'static str,
    pub reason: String,
}

/// An `Informer<K>` of some `K`.
type AnyInformer = Box<dyn Any + Send + Sync>;

/// Every informer of one server, made on first use and shared after that.
pub struct Informers {
    client: kube::Client,
    stop: Stop,
    map: Mutex<HashMap<(TypeId, &'static str), AnyInformer>>,
    failed: mpsc::UnboundedSender<InformerStopped>,
}

impl Informers {
    /// Informers that watch through `client` until `stop`; a watch loop that ends before
    /// that is reported on the returned channel.
    pub fn new(client: kube::Client, stop: Stop) -> (Arc<Self>, mpsc::UnboundedReceiver<InformerStopped>) {
        let (failed, rx) = mpsc::unbounded_channel();
        (Arc::new(Informers { client, stop, map: Mutex::new(HashMap::new()), failed }), rx)
    }

    /// The informer of every `K`, started if it was not.
    pub fn get<K: Object>(&self) -> Informer<K> {
        self.start("", watcher::Config::default())
    }

    /// An informer of the `K`s a field or label selector picks (`config`), shared by those
    /// who ask with the same `key`: for controllers that need a few objects of a type that
    /// may be numerous (one ConfigMap per namespace, not all ConfigMaps).
    pub fn get_filtered<K: Object>(&self, key: &'static str, config: watcher::Config) -> Informer<K> {
        self.start(key, config)
    }

    fn start<K: Object>(&self, key: &'static str, config: watcher::Config) -> Informer<K> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let id = (TypeId::of::<K>(), key);
        if let Some(i) = map.get(&id).and_then(|b| b.downcast_ref::<Informer<K>>()) {
            return i.clone();
        }
        let (informer, feed) = Informer::<K>::manual();
        map.insert(id, Box::new(informer.clone()));
        let api: Api<K> = Api::all(self.client.clone());
        let stop = self.stop.clone();
        let resource = std::any::type_name::<K>().rsplit("::").next().unwrap_or("object");
        let watch = tokio::spawn(drive(api, config, feed, stop));
        let failed = self.failed.clone();
        tokio::spawn(async move {
            let reason = match watch.await {
                Ok(true) => return,
                Ok(false) => "the watch stream ended".to_string(),
                Err(e) => format!("the watch task failed: {e}"),
            };
            let _ = failed.send(InformerStopped { resource, reason });
        });
        informer
    }
}

/// The watch loop: list, then watch, relisting on expiry, with kube-runtime's back-off on
/// errors. True when it ended because of `stop`.
async fn drive<K: Object>(api: Api<K>, config: watcher::Config, mut feed: ManualFeed<K>, stop: Stop) -> bool {
    let events = watcher(api, config).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut stopped = std::pin::pin!(stop.wait());
    loop {
        tokio::select! {
            () = &mut stopped => return true,
            ev = events.next() => match ev {
                Some(Ok(ev)) => feed.apply(ev),
                Some(Err(e)) => tracing::debug!(resource = std::any::type_name::<K>(), error = %e, "watch error; retrying"),
                None => return false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::ObjectMeta;

    use super::*;

    fn pod(name: &str, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn notices_follow_the_store_and_report_deletions() {
        let (informer, mut feed) = Informer::<Pod>::manual();
        let mut notices = Box::pin(informer.subscribe());
        feed.fill([pod("a", "1")]);
        assert!(matches!(notices.next().await, Some(Notice::Resynced)));
        assert_eq!(informer.store().state().len(), 1);
        feed.apply(Event::Apply(pod("b", "2")));
        match notices.next().await {
            Some(Notice::Changed(p)) => {
                assert_eq!(p.metadata.name.as_deref(), Some("b"));
                // The notice shares the store's copy.
                assert!(Arc::ptr_eq(&p, &informer.get(Some("ns"), "b").unwrap()));
            }
            other => panic!("unexpected {other:?}"),
        }
        feed.apply(Event::Delete(pod("a", "3")));
        assert!(matches!(notices.next().await, Some(Notice::Deleted(p)) if p.metadata.name.as_deref() == Some("a")));
        assert!(informer.get(Some("ns"), "a").is_none());
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_to_resync() {
        let (informer, mut feed) = Informer::<Pod>::manual();
        let mut notices = Box::pin(informer.subscribe());
        for i in 0..NOTICE_BUFFER + 5 {
            feed.apply(Event::Apply(pod(&format!("p{i}"), &i.to_string())));
        }
        assert!(matches!(notices.next().await, Some(Notice::Resynced)));
    }
}
