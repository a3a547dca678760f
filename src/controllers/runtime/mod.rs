//! The controller runtime: kube-runtime's watcher, reflector stores and applier, with what
//! upstream's controllers rely on and kube-runtime leaves to each user, written once here:
//! shared informers that report deletions ([`informer`]), expectations ([`expectations`]),
//! owner-based triggering ([`owner`]), a per-object rate-limited requeue on errors, and the
//! clock behind a trait so that time-driven logic is tested with a fake one.

pub mod expectations;
pub mod informer;
pub mod owner;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};

pub use self::informer::{Informer, Informers, Notice, Object};

/// How a component is told to stop: each call gives a future that resolves on shutdown.
#[derive(Clone)]
pub struct Stop(Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>);

impl Stop {
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Stop(Arc::new(move || Box::pin(f())))
    }

    /// Never stops (tests that drop the task instead).
    pub fn never() -> Self {
        Stop::new(std::future::pending)
    }

    /// Resolves on shutdown.
    pub fn wait(&self) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        (self.0)()
    }
}

/// The time, behind a trait so that tests move it.
pub trait Clock: Send + Sync {
    /// Wall-clock time, for timestamps written to objects.
    fn now(&self) -> Timestamp;
    /// Monotonic time, for durations measured in process.
    fn instant(&self) -> Instant;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told (tests): wall-clock and monotonic time advance
/// together.
pub struct FakeClock {
    state: Mutex<(Timestamp, Instant)>,
}

impl FakeClock {
    /// A clock showing `now`.
    pub fn at(now: Timestamp) -> Self {
        FakeClock { state: Mutex::new((now, Instant::now())) }
    }

    /// Moves the clock on by `d`.
    pub fn advance(&self, d: Duration) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let span = k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or(k8s_openapi::jiff::SignedDuration::MAX);
        s.0 = s.0.checked_add(span).unwrap_or(Timestamp::MAX);
        s.1 += d;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }
    fn instant(&self) -> Instant {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

/// Why a reconcile failed; the object is retried with back-off.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Other(String),
}

/// The HTTP status of an API error, if it is one.
pub fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

pub fn is_not_found(e: &kube::Error) -> bool {
    api_code(e) == Some(404)
}

pub fn is_conflict(e: &kube::Error) -> bool {
    api_code(e) == Some(409)
}

/// What every controller is started with.
#[derive(Clone)]
pub struct Context {
    /// The typed in-process client, with the controller manager's identity.
    pub client: kube::Client,
    /// The untyped in-process client, for the controllers not yet moved to the typed one.
    pub legacy: crate::client::Client,
    /// The shared informers.
    pub informers: Arc<Informers>,
    pub stop: Stop,
    pub clock: Arc<dyn Clock>,
    /// The cluster (server) CA certificate, PEM: what pods trust for the API server.
    pub ca_pem: String,
    /// The node lifecycle controller's settings.
    pub node_lifecycle: crate::controllers::nodelifecycle::Config,
    /// The controllers' own settings.
    pub settings: super::Settings,
}

impl Context {
    /// The context of controllers inside the API server's process: a typed client over its
    /// router with `identity`, and informers through it. An informer whose watch loop ends
    /// is reported on the returned channel.
    pub fn in_process(
        api: &Arc<crate::apiserver::ApiServer>,
        identity: crate::apiserver::Identity,
        stop: Stop,
        ca_pem: String,
    ) -> (Context, tokio::sync::mpsc::UnboundedReceiver<informer::InformerStopped>) {
        let client = crate::client::kube_client(api, identity.clone());
        let (informers, failed) = Informers::new(client.clone(), stop.clone());
        let ctx = Context {
            client,
            legacy: crate::client::Client::new(api.clone(), identity),
            informers,
            stop,
            clock: Arc::new(SystemClock),
            ca_pem,
            node_lifecycle: Default::default(),
            settings: Default::default(),
        };
        (ctx, failed)
    }

    /// An event recorder reporting as `controller` (e.g. `replicaset-controller`).
    pub fn recorder(&self, controller: &str) -> Recorder {
        Recorder::new(self.client.clone(), Reporter { controller: controller.into(), instance: None })
    }
}

/// Records an event on `reference` through `recorder`; an event that cannot be written is
/// logged and dropped (events are advisory: the reconcile goes on).
pub async fn publish(
    recorder: &Recorder,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
    type_: kube::runtime::events::EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let ev = kube::runtime::events::Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&ev, reference).await {
        tracing::debug!(error = %e, reason, "cannot record event");
    }
}

/// The back-off of an object whose reconcile keeps failing: upstream's default controller
/// rate limiter, 5 ms doubling per failure up to 1000 s.
pub fn failure_backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(5);
    base.checked_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(Duration::MAX)
        .min(Duration::from_secs(1000))
}

/// Failures per object, reset by a success.
struct Failures<K: Object>(Mutex<HashMap<ObjectRef<K>, u32>>);

impl<K: Object> Failures<K>
where
    ObjectRef<K>: Hash + Eq,
{
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<K>, u32>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Runs a controller of `K` until `stop`: `reconcile` is called for each object `triggers`
/// names (never twice at once for one object, with triggers that arrive meanwhile merged
/// into one more run), once the store is filled. An error requeues the object with
/// [`failure_backoff`]; one object's failures never hold up the others.
pub async fn run<K, T, F, Fut>(name: &'static str, store: Store<K>, triggers: T, stop: Stop, reconcile: F)
where
    K: Object,
    T: Stream<Item = ObjectRef<K>> + Send + 'static,
    F: Fn(Arc<K>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Action, ReconcileError>> + Send + 'static,
{
    tracing::debug!(controller = name, "started");
    // The applier waits for the store too, with kube-runtime's wait that may miss its wake-up
    // when others wait on the same store (see `informer::ready`): only start it on a filled
    // store, or stop if told to first.
    tokio::select! {
        () = informer::ready(&store) => {}
        () = stop.wait() => return,
    }
    let failures = Arc::new(Failures::<K>(Mutex::new(HashMap::new())));
    let reconcile = Arc::new(reconcile);
    let on_error = failures.clone();
    let queue = triggers.take_until(stop.wait()).map(Ok::<_, Infallible>);
    let results = controller::applier(
        move |obj: Arc<K>, failures: Arc<Failures<K>>| {
            let reconcile = reconcile.clone();
            Box::pin(async move {
                let key = ObjectRef::from_obj(&*obj);
                let res = reconcile(obj).await;
                if res.is_ok() {
                    failures.lock().remove(&key);
                }
                res
            })
        },
        move |obj: Arc<K>, err: &ReconcileError, _| {
            let key = ObjectRef::from_obj(&*obj);
            let n = {
                let mut f = on_error.lock();
                let n = f.entry(key.clone()).or_insert(0);
                *n += 1;
                *n
            };
            let delay = failure_backoff(n - 1);
            tracing::warn!(controller = name, object = %key, error = %err, failures = n, retry_in = ?delay, "reconcile failed");
            Action::requeue(delay)
        },
        failures,
        store,
        queue,
        controller::Config::default(),
    );
    let all_done = results.for_each(|r| async move {
        if let Err(e) = r {
            // An object deleted before its turn, mostly.
            tracing::debug!(controller = name, error = %e, "not reconciled");
        }
    });
    // On stop the applier finishes the reconciles in flight; but one whose store never
    // filled (stopped during start-up) would wait for it for ever. Shutdown must not hang.
    let late = async {
        stop.wait().await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    tokio::select! {
        () = all_done => {}
        () = late => tracing::debug!(controller = name, "stopped with reconciles still in flight"),
    }
}

/// How long a stopping controller's reconciles in flight get to finish.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Every object in `store`, as triggers (after a resync).
pub fn all<K: Object>(store: &Store<K>) -> Vec<ObjectRef<K>> {
    store.state().iter().map(|o| ObjectRef::from_obj(&**o)).collect()
}

/// Triggers from the controller's own kind: every object once the store is ready (the
/// informer is shared, and its first list may have gone out before this controller
/// subscribed), each changed object, and all after a resync.
pub fn own_triggers<K: Object>(informer: &Informer<K>) -> impl Stream<Item = ObjectRef<K>> + Send + 'static {
    let store = informer.store().clone();
    let changes = informer.subscribe().flat_map(move |n| {
        futures::stream::iter(match n {
            Notice::Changed(o) => vec![ObjectRef::from_obj(&*o)],
            Notice::Deleted(_) => vec![],
            Notice::Resynced => all(&store),
        })
    });
    let store = informer.store().clone();
    let listed = futures::stream::once(Box::pin(async move {
        informer::ready(&store).await;
        futures::stream::iter(all(&store))
    }))
    .flatten();
    futures::stream::select(listed, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_5ms_up_to_1000s() {
        assert_eq!(failure_backoff(0), Duration::from_millis(5));
        assert_eq!(failure_backoff(1), Duration::from_millis(10));
        assert_eq!(failure_backoff(10), Duration::from_millis(5120));
        assert_eq!(failure_backoff(40), Duration::from_secs(1000));
    }
}
