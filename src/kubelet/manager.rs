//! The kubelet's pod manager: watches the pods bound to this node, runs one [`Worker`] task
//! per pod, hands each the containers a previous k3rs process left running (so nothing
//! restarts across a k3rs restart), and removes containers whose pod is gone.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference, Pod, PodStatus, Secret, Service, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde_json::json;
use tokio::sync::mpsc;

use super::api_error;
use super::backend::{Backend, ContainerRecord};
use super::static_pods;
use super::tokens::{Issued, TokenCache, TokenFor};
use super::volumes::{token_requests, Sources, TokenKey};
use super::worker::{EventSink, Next, PodApi, Worker};
use crate::apiserver::status::ApiError;
use crate::client::Client;

/// The API as the node's identity sees it, and the tokens it got for the node's pods.
pub struct ClientApi {
    client: Client,
    tokens: TokenCache,
}

impl ClientApi {
    pub fn new(client: Client) -> Self {
        ClientApi { client, tokens: TokenCache::default() }
    }

    /// A token for one of the pod's projected volumes: the held one, or a new one bound to
    /// the pod (TokenRequest).
    async fn token(&self, pod: &Pod, (audience, lifetime): &TokenKey) -> Result<String, ApiError> {
        let account = pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default();
        let key = TokenFor {
            namespace: namespace_of(pod).to_string(),
            service_account: account.clone(),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            audience: audience.clone(),
            lifetime: *lifetime,
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if let Some(t) = self.tokens.fresh(&key, now) {
            return Ok(t);
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: if audience.is_empty() { Vec::new() } else { vec![audience.clone()] },
                expiration_seconds: Some(*lifetime),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: pod.metadata.name.clone(),
                    uid: pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.typed(), namespace_of(pod));
        let got = accounts.create_token_request(&account, &PostParams::default(), &request).await.map_err(api_error)?;
        let status = got.status.ok_or_else(|| ApiError::internal("TokenRequest without a status"))?;
        let expires = status.expiration_timestamp.0.as_second();
        self.tokens.keep(key, Issued { token: status.token.clone(), expires });
        Ok(status.token)
    }
}

fn namespace_of(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}

fn name_of(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or("")
}

/// Deletes with grace period 0 on the condition that the object still has `uid`.
fn delete_now(uid: Option<String>) -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions { uid, resource_version: None }),
        ..Default::default()
    }
}

impl ClientApi {
    fn pods(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(self.client.typed(), namespace_of(pod))
    }
}

#[async_trait::async_trait]
impl PodApi for ClientApi {
    async fn patch_status(&self, pod: &Pod, status: &PodStatus) -> Result<(), ApiError> {
        // A merge patch: the fields the kubelet leaves out (`None`) keep what the API has.
        let body = json!({ "status": status });
        self.pods(pod)
            .patch_status(name_of(pod), &PatchParams::default(), &Patch::Merge(&body))
            .await
            .map(|_| ())
            .map_err(api_error)
    }

    async fn delete_final(&self, pod: &Pod) -> Result<(), ApiError> {
        match self.pods(pod).delete(name_of(pod), &delete_now(pod.metadata.uid.clone())).await.map_err(api_error) {
            Ok(_) => Ok(()),
            // Already gone, or replaced by a pod of the same name: nothing of ours left.
            Err(e) if e.is_not_found() || e.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn sources(&self, pod: &Pod) -> Result<Sources, ApiError> {
        let ns = namespace_of(pod);
        let (cms, secrets) = super::volumes::referenced(pod);
        let mut out = Sources::default();
        let config_maps: Api<ConfigMap> = Api::namespaced(self.client.typed(), ns);
        for n in cms {
            if let Some(cm) = config_maps.get_opt(&n).await.map_err(api_error)? {
                out.config_maps.insert(n, cm);
            }
        }
        let secret_api: Api<Secret> = Api::namespaced(self.client.typed(), ns);
        for n in secrets {
            if let Some(s) = secret_api.get_opt(&n).await.map_err(api_error)? {
                out.secrets.insert(n, s);
            }
        }
        for key in token_requests(pod) {
            let token = self.token(pod, &key).await?;
            out.tokens.insert(key, token);
        }
        Ok(out)
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        let services: Api<Service> = Api::namespaced(self.client.typed(), namespace);
        Ok(services.list(&ListParams::default()).await.map_err(api_error)?.items)
    }
}

/// Events from the kubelet, through kube-runtime's recorder (`reportingController:
/// kubelet`, the node as the instance), published in order by one task.
///
/// A recorder folds every event of the same type and reason about an object into one
/// series, whatever its message; upstream's kubelet folds only events whose message is the
/// same too (its event correlator). So "Readiness probe failed: ..." and "Liveness probe
/// failed: ..." (both `Unhealthy`) stay two events: each distinct message has a recorder
/// of its own.
pub struct RecorderSink(mpsc::UnboundedSender<(ObjectReference, Event)>);

/// How many distinct messages keep their series; beyond, the oldest are forgotten and a
/// repeat starts a new event.
const RECORDERS_KEPT: usize = 1024;

impl RecorderSink {
    /// Starts the publishing task (it ends when the sink is dropped).
    pub fn new(client: kube::Client, reporter: Reporter) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<(ObjectReference, Event)>();
        tokio::spawn(async move {
            let mut recorders: HashMap<(bool, String, String), Recorder> = HashMap::new();
            let mut order: std::collections::VecDeque<(bool, String, String)> = std::collections::VecDeque::new();
            while let Some((reference, ev)) = rx.recv().await {
                let key = (ev.type_ == EventType::Warning, ev.reason.clone(), ev.note.clone().unwrap_or_default());
                if !recorders.contains_key(&key) {
                    if order.len() >= RECORDERS_KEPT {
                        if let Some(old) = order.pop_front() {
                            recorders.remove(&old);
                        }
                    }
                    order.push_back(key.clone());
                }
                let recorder = recorders.entry(key).or_insert_with(|| Recorder::new(client.clone(), reporter.clone()));
                if let Err(e) = recorder.publish(&ev, &reference).await {
                    tracing::debug!(error = %e, reason = %ev.reason, "cannot record event");
                }
            }
        });
        RecorderSink(tx)
    }
}

impl EventSink for RecorderSink {
    fn event(&self, involved: &Pod, warning: bool, reason: &str, message: &str) {
        let mut reference = involved.object_ref(&());
        reference.resource_version = None;
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(message.into()),
            action: reason.into(),
            secondary: None,
        };
        let _ = self.0.send((reference, ev));
    }
}

enum Msg {
    /// A newer version of the pod (boxed: a Pod is large next to the other messages).
    Update(Box<Pod>),
    /// The pod's status in the API was lost (a new mirror pod): write it again.
    Rewrite,
    Gone,
}

/// How often the static pod manifests and their mirror pods are looked at.
const STATIC_EVERY: Duration = Duration::from_secs(5);

/// The static pods the node runs, by uid, and their mirrors in the API.
struct Statics {
    dir: Option<PathBuf>,
    pods: HashMap<String, Pod>,
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

impl Statics {
    fn load(&self, node: &str) -> Vec<Pod> {
        match &self.dir {
            Some(d) => static_pods::load(d, node, &crate::domain::time::now_rfc3339()),
            None => Vec::new(),
        }
    }
}

/// Keeps a mirror pod in the API for every static pod: created when missing, replaced when
/// it belongs to an older version of the manifest or is being deleted. Returns the uids of
/// the static pods whose mirror is new (their status must be written again).
async fn sync_mirrors(client: &Client, node: &str, statics: &HashMap<String, Pod>, gone: &[Pod]) -> Vec<String> {
    let mut created = Vec::new();
    let kube = client.typed();
    let node_uid = Api::<Node>::all(kube.clone()).get(node).await.ok().and_then(|n| n.metadata.uid);
    for p in gone {
        let pods: Api<Pod> = Api::namespaced(kube.clone(), namespace_of(p));
        if let Ok(m) = pods.get(name_of(p)).await {
            if static_pods::is_mirror(&m) {
                let now = DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
                let _ = pods.delete(name_of(p), &now).await;
            }
        }
    }
    for (static_uid, p) in statics {
        let pods: Api<Pod> = Api::namespaced(kube.clone(), namespace_of(p));
        let path = format!("/api/v1/namespaces/{}/pods/{}", namespace_of(p), name_of(p));
        let want = p.metadata.uid.as_deref();
        match pods.get(name_of(p)).await.map_err(api_error) {
            Ok(m) => {
                let current = static_pods::mirror_hash(&m);
                let deleting = m.metadata.deletion_timestamp.is_some();
                if want.is_some() && current == want && !deleting {
                    continue;
                }
                tracing::debug!(pod = %path, ?current, deleting, "replacing the mirror pod");
                if let Err(e) = pods.delete(name_of(p), &delete_now(m.metadata.uid.clone())).await {
                    tracing::warn!(pod = %path, error = %api_error(e), "replacing a mirror pod failed");
                    continue;
                }
            }
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                tracing::warn!(pod = %path, error = %e, "reading a mirror pod failed");
                continue;
            }
        }
        match pods.create(&PostParams::default(), &static_pods::mirror_of(p, node_uid.as_deref())).await {
            Ok(_) => {
                tracing::debug!(pod = %path, "created the mirror pod");
                created.push(static_uid.clone());
            }
            Err(e) => tracing::warn!(pod = %path, error = %api_error(e), "creating a mirror pod failed"),
        }
    }
    created
}

/// Runs the pods bound to `node` — from the API and from the static pod directory — until
/// `shutdown` resolves. Containers keep running when it returns: stopping k3rs never stops
/// pods.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    node: String,
    host_ip: String,
    backend: Arc<dyn Backend>,
    api: Arc<dyn PodApi>,
    events: Arc<dyn EventSink>,
    static_dir: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let deps = Deps {
        host_ip: host_ip.clone(),
        backend: backend.clone(),
        api: api.clone(),
        events: events.clone(),
        starts: Arc::new(tokio::sync::Semaphore::new(start_slots())),
    };
    let mut workers: HashMap<String, mpsc::UnboundedSender<Msg>> = HashMap::new();
    let mut statics = Statics { dir: static_dir, pods: HashMap::new() };
    let mut adopted = false;
    // This node's pods, through kube-runtime's watcher: it lists, watches, and lists again
    // (with back-off) when the watch breaks or its revision expires.
    let pods_api: Api<Pod> = Api::all(client.typed());
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut events = std::pin::pin!(watcher(pods_api, config).default_backoff());
    // A (re)list in progress: the pods seen so far.
    let mut listing: Option<Vec<Pod>> = None;
    let mut listed = false;
    let mut static_tick = tokio::time::interval(STATIC_EVERY);
    static_tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = static_tick.tick(), if listed => {
                let loaded = statics.load(&node);
                let now: HashMap<String, Pod> = loaded.into_iter().map(|p| (uid_of(&p), p)).collect();
                let mut gone = Vec::new();
                for (uid, p) in &statics.pods {
                    if !now.contains_key(uid) {
                        if let Some(tx) = workers.remove(uid) {
                            let _ = tx.send(Msg::Gone);
                        }
                        // A mirror of the same name that a new version replaces is handled below.
                        if !now.values().any(|n| n.metadata.name == p.metadata.name && n.metadata.namespace == p.metadata.namespace) {
                            gone.push(p.clone());
                        }
                    }
                }
                for (uid, p) in &now {
                    if !statics.pods.contains_key(uid) {
                        dispatch(&mut workers, p.clone(), Vec::new(), &deps);
                    }
                }
                statics.pods = now;
                for uid in sync_mirrors(&client, &node, &statics.pods, &gone).await {
                    if let Some(tx) = workers.get(&uid) {
                        let _ = tx.send(Msg::Rewrite);
                    }
                }
            }
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::Init)) => listing = Some(Vec::new()),
                Some(Ok(watcher::Event::InitApply(pod))) => {
                    if let Some(l) = listing.as_mut() {
                        l.push(pod);
                    }
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    let pods = listing.take().unwrap_or_default();
                    relisted(pods, &mut workers, &mut statics, &mut adopted, &client, &node, &backend, &deps).await;
                    listed = true;
                }
                Some(Ok(watcher::Event::Apply(pod))) => {
                    if !static_pods::is_mirror(&pod) {
                        dispatch(&mut workers, pod, Vec::new(), &deps);
                    }
                }
                Some(Ok(watcher::Event::Delete(pod))) => {
                    if let Some(tx) = pod.metadata.uid.as_ref().and_then(|uid| workers.remove(uid)) {
                        let _ = tx.send(Msg::Gone);
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "watching this node's pods failed; retrying"),
                // The watcher retries for ever: it ends only if the runtime is going away.
                None => return,
            },
        }
    }
}

/// After a (re)list: starts or updates a worker per pod (static pods included), hands each
/// the containers a previous k3rs left, stops workers whose pod went while the watch was
/// down, and removes containers of pods that no longer exist.
#[allow(clippy::too_many_arguments)]
async fn relisted(
    mut pods: Vec<Pod>,
    workers: &mut HashMap<String, mpsc::UnboundedSender<Msg>>,
    statics: &mut Statics,
    adopted: &mut bool,
    client: &Client,
    node: &str,
    backend: &Arc<dyn Backend>,
    deps: &Deps,
) {
    // Mirror pods stand for static pods; the node runs the static pods themselves.
    pods.retain(|p| !static_pods::is_mirror(p));
    let loaded = statics.load(node);
    statics.pods = loaded.iter().map(|p| (uid_of(p), p.clone())).collect();
    let _ = sync_mirrors(client, node, &statics.pods, &[]).await;
    pods.extend(loaded);
    let mut leftovers: HashMap<String, Vec<ContainerRecord>> = HashMap::new();
    if !*adopted {
        match backend.containers().await {
            Ok(all) => {
                for r in all {
                    leftovers.entry(r.pod_uid.clone()).or_default().push(r);
                }
                *adopted = true;
            }
            Err(e) => tracing::warn!(error = %e, "listing containers failed; none adopted"),
        }
    }
    let live: std::collections::HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
    for pod in pods {
        let uid = uid_of(&pod);
        let records = leftovers.remove(&uid).unwrap_or_default();
        dispatch(workers, pod, records, deps);
    }
    // Workers whose pod disappeared while the watch was down.
    workers.retain(|uid, tx| {
        if live.contains(uid) {
            return true;
        }
        let _ = tx.send(Msg::Gone);
        false
    });
    // Containers of pods that no longer exist.
    for (uid, records) in leftovers {
        tracing::info!(pod_uid = %uid, containers = records.len(), "removing containers of a pod that no longer exists");
        let b = backend.clone();
        tokio::spawn(async move {
            for r in records {
                let _ = b.stop_container(&r.id, Duration::from_secs(0)).await;
                let _ = b.remove_container(&r.id).await;
            }
            let _ = b.sandbox_down(&uid).await;
            let _ = super::volumes::cleanup(&b.pods_dir().join(&uid), b.mounter());
        });
    }
}

/// What every pod worker is made with.
struct Deps {
    host_ip: String,
    backend: Arc<dyn Backend>,
    api: Arc<dyn PodApi>,
    events: Arc<dyn EventSink>,
    starts: Arc<tokio::sync::Semaphore>,
}

/// How many pods set up sandboxes or start containers at once: two per core. Starting is
/// CPU work and kernel locks (RTNL, mounts) with some waiting between; more at once only
/// makes every pod of a burst late instead of the first ones early. Measured with 100 pods
/// at once on 2 cores (`scripts/bench.sh pods`): 1 slot p50 1.9 s, 2: 1.3 s, 4: 1.0 s,
/// 8: 1.1 s, unlimited: 1.6 s.
fn start_slots() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn dispatch(
    workers: &mut HashMap<String, mpsc::UnboundedSender<Msg>>,
    pod: Pod,
    records: Vec<ContainerRecord>,
    deps: &Deps,
) {
    let uid = uid_of(&pod);
    if uid.is_empty() {
        return;
    }
    if let Some(tx) = workers.get(&uid) {
        if tx.send(Msg::Update(Box::new(pod.clone()))).is_ok() {
            return;
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let mut worker =
        Worker::new(pod, deps.host_ip.clone(), deps.backend.clone(), deps.api.clone(), deps.events.clone())
            .with_start_slots(deps.starts.clone());
    worker.adopt(records);
    workers.insert(uid, tx);
    tokio::spawn(run_worker(worker, rx));
}

async fn run_worker(mut worker: Worker, mut rx: mpsc::UnboundedReceiver<Msg>) {
    loop {
        let next = worker.sync().await;
        let wait = match next {
            Next::Done => return,
            Next::After(d) => d,
        };
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(Msg::Update(p)) => {
                    worker.update(*p);
                    // Fold a burst of updates into one pass.
                    while let Ok(m) = rx.try_recv() {
                        match m {
                            Msg::Update(p) => worker.update(*p),
                            Msg::Rewrite => worker.rewrite(),
                            Msg::Gone => worker.vanish(),
                        }
                    }
                }
                Some(Msg::Rewrite) => worker.rewrite(),
                Some(Msg::Gone) => worker.vanish(),
                // The manager stopped (k3rs is shutting down): leave the pod running.
                None => return,
            },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
