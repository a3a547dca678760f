//! The scheduler: places pods that name no node on a node where they fit, through the
//! `pods/binding` subresource, as upstream's `default-scheduler` does.
//!
//! It lists and then watches pods and nodes into a local cache. Each pending pod (no
//! node, `schedulerName: default-scheduler`, not terminating, no scheduling gates) runs
//! through the Filter plugins ([`plugins::default_filters`]) against every node; among the
//! nodes that fit, the least allocated wins. A pod that fits nowhere gets PodScheduled=False
//! (reason Unschedulable) with upstream's diagnosis and a FailedScheduling event, and is
//! tried again when nodes or placed pods change, and at least every 30 s. As upstream does,
//! a pod is assumed on its node as soon as it is chosen and the binding is written in the
//! background, so a burst of pods is placed at the API server's pace rather than one write
//! round trip after another; Events go through the queued [`EventRecorder`]. The stages are
//! shaped like upstream's framework so scoring plugins, affinity, spreading and preemption
//! slot in as more plugins.

pub mod framework;
pub mod plugins;
pub mod resources;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use serde_json::{json, Value};

use self::framework::{fit_error, preemption_message, run_filters, str_at, FilterPlugin, NodeInfo, PodInfo, NO_NODES};
use crate::apiserver::status::ApiError;
use crate::client::events::{EventRecorder, EventType, NewEvent};
use crate::client::Client;
use crate::domain::pod::update_condition;
use crate::domain::time::now_rfc3339;

/// The `schedulerName` this scheduler serves.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// The longest an unschedulable pod waits before it is tried again.
const RETRY_UNSCHEDULABLE: Duration = Duration::from_secs(30);
/// How soon the cache is rebuilt after a watch fails.
const RELIST: Duration = Duration::from_secs(1);
/// How often pending pods are looked at without any event.
const TICK: Duration = Duration::from_secs(1);
/// Most bindings written at once.
const BINDS_IN_FLIGHT: usize = 64;

type Key = (String, String);

fn key_of(obj: &Value) -> Key {
    (str_at(obj, "/metadata/namespace").to_string(), str_at(obj, "/metadata/name").to_string())
}

fn is_terminal(pod: &Value) -> bool {
    matches!(str_at(pod, "/status/phase"), "Succeeded" | "Failed")
}

/// Whether this scheduler should place `pod`.
pub fn wants_scheduling(pod: &Value) -> bool {
    str_at(pod, "/spec/nodeName").is_empty()
        && str_at(pod, "/spec/schedulerName") == SCHEDULER_NAME
        && pod.pointer("/metadata/deletionTimestamp").is_none_or(Value::is_null)
        && !is_terminal(pod)
        && pod.pointer("/spec/schedulingGates").and_then(Value::as_array).is_none_or(Vec::is_empty)
}

/// The last try of a pod that did not fit.
struct Attempt {
    spec: Value,
    at: Instant,
    generation: u64,
}

/// The cache: nodes, pods, and the unschedulable pods' last tries.
#[derive(Default)]
struct Cache {
    nodes: BTreeMap<String, Value>,
    pods: HashMap<Key, Value>,
    /// Bumped whenever something that could let a pod fit changes (a node, a placed pod
    /// going away or finishing).
    generation: u64,
    attempts: HashMap<Key, Attempt>,
    /// Pods chosen for a node whose binding is still being written.
    assumed: HashMap<Key, String>,
}

impl Cache {
    fn apply_node(&mut self, ev: &Value) {
        let obj = &ev["object"];
        let name = str_at(obj, "/metadata/name").to_string();
        if name.is_empty() {
            return;
        }
        match ev["type"].as_str() {
            Some("ADDED" | "MODIFIED") => {
                self.nodes.insert(name, obj.clone());
            }
            Some("DELETED") => {
                self.nodes.remove(&name);
            }
            _ => return,
        }
        self.generation += 1;
    }

    fn apply_pod(&mut self, ev: &Value) {
        let obj = &ev["object"];
        let key = key_of(obj);
        if key.1.is_empty() {
            return;
        }
        let placed = !str_at(obj, "/spec/nodeName").is_empty();
        match ev["type"].as_str() {
            Some("ADDED" | "MODIFIED") => {
                let was_running = self.pods.get(&key).is_some_and(|p| !is_terminal(p));
                if placed && was_running && is_terminal(obj) {
                    self.generation += 1;
                }
                self.pods.insert(key, obj.clone());
            }
            Some("DELETED") => {
                self.pods.remove(&key);
                self.attempts.remove(&key);
                if placed || self.assumed.remove(&key).is_some() {
                    self.generation += 1;
                }
            }
            _ => {}
        }
    }

    /// Every node with the pods placed on it that still hold resources.
    fn node_infos(&self) -> Vec<NodeInfo> {
        let mut infos: BTreeMap<&str, NodeInfo> =
            self.nodes.iter().map(|(n, v)| (n.as_str(), NodeInfo::new(v.clone()))).collect();
        for (key, pod) in self.pods.iter().filter(|(_, p)| !is_terminal(p)) {
            let node = match str_at(pod, "/spec/nodeName") {
                "" => self.assumed.get(key).map(String::as_str).unwrap_or(""),
                n => n,
            };
            if let Some(info) = infos.get_mut(node) {
                info.add_pod(PodInfo::new(pod.clone()));
            }
        }
        infos.into_values().collect()
    }

    /// Pending pods due a try, highest priority first, then oldest.
    fn due(&self, now: Instant) -> Vec<Key> {
        let mut due: Vec<(&Key, &Value)> = self
            .pods
            .iter()
            .filter(|(k, p)| wants_scheduling(p) && !self.assumed.contains_key(*k))
            .filter(|(k, p)| match self.attempts.get(*k) {
                None => true,
                Some(a) => {
                    a.spec != p["spec"]
                        || a.generation != self.generation
                        || now.duration_since(a.at) >= RETRY_UNSCHEDULABLE
                }
            })
            .collect();
        due.sort_by(|(ka, a), (kb, b)| {
            let prio = |p: &Value| p.pointer("/spec/priority").and_then(Value::as_i64).unwrap_or(0);
            prio(b)
                .cmp(&prio(a))
                .then_with(|| str_at(a, "/metadata/creationTimestamp").cmp(str_at(b, "/metadata/creationTimestamp")))
                .then_with(|| ka.cmp(kb))
        });
        due.into_iter().map(|(k, _)| k.clone()).collect()
    }
}

/// Upstream's least-allocated score (0–100): the share of cpu and memory a node keeps
/// free after the pod, averaged; requests of zero count as upstream's defaults (100m cpu,
/// 200Mi memory) so empty pods still spread.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo) -> i64 {
    const DEFAULT_MILLI_CPU: i64 = 100;
    const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;
    let non_zero = |v: i64, d: i64| if v == 0 { d } else { v };
    let mut used_cpu = non_zero(pod.requests.milli_cpu, DEFAULT_MILLI_CPU);
    let mut used_mem = non_zero(pod.requests.memory, DEFAULT_MEMORY);
    for p in &node.pods {
        used_cpu += non_zero(p.requests.milli_cpu, DEFAULT_MILLI_CPU);
        used_mem += non_zero(p.requests.memory, DEFAULT_MEMORY);
    }
    let free = |have: i64, used: i64| if have <= 0 || used > have { 0 } else { (have - used) * 100 / have };
    (free(node.allocatable.milli_cpu, used_cpu) + free(node.allocatable.memory, used_mem)) / 2
}

/// Where a pod goes, or why it goes nowhere.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Node(String),
    Unschedulable(String),
}

/// One scheduling cycle for one pod over a snapshot of the nodes.
pub fn decide(filters: &[Box<dyn FilterPlugin>], pod: &PodInfo, nodes: &[NodeInfo]) -> Decision {
    if nodes.is_empty() {
        return Decision::Unschedulable(NO_NODES.to_string());
    }
    let verdicts: Vec<_> = nodes.iter().map(|n| run_filters(filters, pod, n)).collect();
    let best = nodes
        .iter()
        .zip(&verdicts)
        .filter(|(_, v)| v.is_ok())
        .map(|(n, _)| (least_allocated(pod, n), n))
        // Highest score; among equals the first by name.
        .fold(None::<(i64, &NodeInfo)>, |best, (s, n)| match best {
            Some((bs, _)) if bs >= s => best,
            _ => Some((s, n)),
        });
    if let Some((_, node)) = best {
        return Decision::Node(node.name.clone());
    }
    let statuses: Vec<_> = verdicts.into_iter().filter_map(Result::err).collect();
    let post = preemption_message(filters, pod, nodes, &statuses);
    Decision::Unschedulable(fit_error(nodes.len(), &statuses, Some(&post)))
}

/// Lists `path` and watches it from the list's revision.
async fn list_watch(
    client: &Client,
    path: &str,
) -> Result<(Vec<Value>, impl Stream<Item = Value> + Send + 'static), ApiError> {
    let list = client.get(path).await?;
    let rv = str_at(&list, "/metadata/resourceVersion").to_string();
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let watch = client.watch(&format!("{path}?watch=1&resourceVersion={rv}&allowWatchBookmarks=true")).await?;
    Ok((items, watch))
}

/// How a binding written in the background ended.
struct Bound {
    key: Key,
    pod: Value,
    node: String,
    result: Result<(), ApiError>,
}

struct Scheduler {
    client: Client,
    filters: Vec<Box<dyn FilterPlugin>>,
    cache: Cache,
    events: EventRecorder,
    binds: Arc<tokio::sync::Semaphore>,
    bound_tx: tokio::sync::mpsc::UnboundedSender<Bound>,
}

impl Scheduler {
    /// Tries every pending pod that is due.
    async fn schedule_due(&mut self) {
        let due = self.cache.due(Instant::now());
        if due.is_empty() {
            return;
        }
        let mut nodes = self.cache.node_infos();
        for key in due {
            let Some(pod) = self.cache.pods.get(&key).cloned() else { continue };
            let info = PodInfo::new(pod.clone());
            match decide(&self.filters, &info, &nodes) {
                Decision::Node(node) => {
                    if let Some(n) = nodes.iter_mut().find(|n| n.name == node) {
                        n.add_pod(info);
                    }
                    self.assume_and_bind(key, pod, node).await;
                }
                Decision::Unschedulable(message) => self.unschedulable(&pod, &message).await,
            }
        }
    }

    /// Counts the pod on `node` from now on and writes its binding in the background.
    async fn assume_and_bind(&mut self, key: Key, pod: Value, node: String) {
        self.cache.assumed.insert(key.clone(), node.clone());
        let Ok(permit) = self.binds.clone().acquire_owned().await else { return };
        let (client, tx) = (self.client.clone(), self.bound_tx.clone());
        tokio::spawn(async move {
            let (ns, name) = &key;
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": pod.pointer("/metadata/uid").cloned().unwrap_or(Value::Null)},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            let result = client.post(&format!("/api/v1/namespaces/{ns}/pods/{name}/binding"), &binding).await.map(drop);
            drop(permit);
            let _ = tx.send(Bound { key, pod, node, result });
        });
    }

    /// A binding written in the background has ended.
    async fn bound(&mut self, b: Bound) {
        let (ns, name) = &b.key;
        self.cache.assumed.remove(&b.key);
        match b.result {
            Ok(()) => {
                tracing::info!(component = SCHEDULER_NAME, object = %format!("{ns}/{name}"), node = %b.node, "bound");
                // Placed until the watch brings the pod back with its node.
                if let Some(p) = self.cache.pods.get_mut(&b.key) {
                    p["spec"]["nodeName"] = json!(b.node);
                }
                self.cache.attempts.remove(&b.key);
                let message = format!("Successfully assigned {ns}/{name} to {}", b.node);
                let ev = NewEvent {
                    type_: EventType::Normal,
                    reason: "Scheduled",
                    message: &message,
                    action: Some("Binding"),
                    field_path: None,
                };
                self.events.record_event(&b.pod, ev).await;
            }
            // Placed by someone else, being deleted, or gone: the watch brings the news.
            Err(e) if e.is_not_found() || e.is_conflict() => {}
            Err(e) => {
                tracing::warn!(component = SCHEDULER_NAME, object = %format!("{ns}/{name}"), node = %b.node, error = %e, "binding failed");
            }
        }
    }

    async fn unschedulable(&mut self, pod: &Value, message: &str) {
        let key = key_of(pod);
        let (ns, name) = (&key.0, &key.1);
        tracing::debug!(component = SCHEDULER_NAME, object = %format!("{ns}/{name}"), message, "unschedulable");
        self.cache.attempts.insert(
            key.clone(),
            Attempt { spec: pod["spec"].clone(), at: Instant::now(), generation: self.cache.generation },
        );
        let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
        let condition =
            json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message});
        for _ in 0..3 {
            let Ok(mut current) = self.client.get(&path).await else { return };
            if !wants_scheduling(&current) {
                return;
            }
            if !update_condition(&mut current, condition.clone(), &now_rfc3339()) {
                break;
            }
            match self.client.put(&format!("{path}/status"), &current).await {
                Ok(_) => break,
                Err(e) if e.is_conflict() => continue,
                Err(e) => {
                    tracing::warn!(component = SCHEDULER_NAME, object = %format!("{ns}/{name}"), error = %e, "updating the pod's status failed");
                    break;
                }
            }
        }
        let ev = NewEvent {
            type_: EventType::Warning,
            reason: "FailedScheduling",
            message,
            action: Some("Scheduling"),
            field_path: None,
        };
        self.events.record_event(pod, ev).await;
    }
}

/// Runs the scheduler until `shutdown` resolves. `client` should carry the identity
/// `system:kube-scheduler`.
pub async fn run(client: Client, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let events = EventRecorder::new(client.clone(), SCHEDULER_NAME, &format!("{SCHEDULER_NAME}-{host}"));
    let (bound_tx, mut bound_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut s = Scheduler {
        client,
        filters: plugins::default_filters(),
        cache: Cache::default(),
        events,
        binds: Arc::new(tokio::sync::Semaphore::new(BINDS_IN_FLIGHT)),
        bound_tx,
    };
    loop {
        let opened = async {
            let (nodes, node_watch) = list_watch(&s.client, "/api/v1/nodes").await?;
            let (pods, pod_watch) = list_watch(&s.client, "/api/v1/pods").await?;
            Ok::<_, ApiError>((nodes, Box::pin(node_watch), pods, Box::pin(pod_watch)))
        };
        let (nodes, mut node_watch, pods, mut pod_watch) = match opened.await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(component = SCHEDULER_NAME, error = %e, "listing pods and nodes failed");
                tokio::select! { _ = &mut shutdown => return, _ = tokio::time::sleep(RELIST) => continue }
            }
        };
        let attempts = std::mem::take(&mut s.cache.attempts);
        let assumed = std::mem::take(&mut s.cache.assumed);
        s.cache = Cache { attempts, assumed, ..Cache::default() };
        for n in nodes {
            s.cache.apply_node(&json!({"type": "ADDED", "object": n}));
        }
        for p in pods {
            s.cache.apply_pod(&json!({"type": "ADDED", "object": p}));
        }
        s.schedule_due().await;
        let mut tick = tokio::time::interval(TICK);
        'watching: loop {
            tokio::select! {
                _ = &mut shutdown => return,
                ev = node_watch.next() => match ev {
                    Some(ev) => s.cache.apply_node(&ev),
                    None => break 'watching,
                },
                ev = pod_watch.next() => match ev {
                    Some(ev) => s.cache.apply_pod(&ev),
                    None => break 'watching,
                },
                Some(b) = bound_rx.recv() => s.bound(b).await,
                _ = tick.tick() => {}
            }
            // Take whatever else has arrived before deciding, so a burst is one cycle.
            loop {
                let mut got = false;
                while let Some(Some(ev)) = node_watch.next().now_or_never() {
                    s.cache.apply_node(&ev);
                    got = true;
                }
                while let Some(Some(ev)) = pod_watch.next().now_or_never() {
                    s.cache.apply_pod(&ev);
                    got = true;
                }
                while let Ok(b) = bound_rx.try_recv() {
                    s.bound(b).await;
                    got = true;
                }
                if !got {
                    break;
                }
            }
            s.schedule_due().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::plugins::testing::{node, pod};

    fn asking(cpu: &str) -> PodInfo {
        pod(json!({"containers": [{"resources": {"requests": {"cpu": cpu}}}]}))
    }

    #[test]
    fn an_assumed_pod_is_not_due_and_counts_on_its_node_until_bound() {
        let mut cache = Cache::default();
        let node =
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "110"}}});
        cache.apply_node(&json!({"type": "ADDED", "object": node}));
        let pod = json!({"metadata": {"name": "p", "namespace": "default"},
            "spec": {"schedulerName": SCHEDULER_NAME, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}});
        cache.apply_pod(&json!({"type": "ADDED", "object": pod.clone()}));
        let key = ("default".to_string(), "p".to_string());
        assert_eq!(cache.due(Instant::now()), vec![key.clone()]);
        cache.assumed.insert(key.clone(), "n".into());
        assert!(cache.due(Instant::now()).is_empty());
        assert_eq!(cache.node_infos()[0].pods.len(), 1);
        // A watch event for the still-unbound pod does not make it due again.
        cache.apply_pod(&json!({"type": "MODIFIED", "object": pod}));
        assert!(cache.due(Instant::now()).is_empty());
        // Deleted while its binding is written: nothing is left assumed.
        cache.apply_pod(&json!({"type": "DELETED", "object": {"metadata": {"name": "p", "namespace": "default"}}}));
        assert!(cache.assumed.is_empty() && cache.node_infos()[0].pods.is_empty());
    }

    #[test]
    fn the_least_allocated_fitting_node_wins() {
        let filters = plugins::default_filters();
        let mut busy = node("a", json!({}));
        busy.add_pod(asking("1"));
        let idle = node("b", json!({}));
        assert_eq!(decide(&filters, &asking("500m"), &[busy.clone(), idle]), Decision::Node("b".into()));
        assert_eq!(decide(&filters, &asking("500m"), &[busy]), Decision::Node("a".into()));
    }

    #[test]
    fn no_fit_gives_upstreams_diagnosis() {
        let filters = plugins::default_filters();
        let mut n = node("a", json!({}));
        n.add_pod(asking("1500m"));
        assert_eq!(
            decide(&filters, &asking("1"), &[n.clone()]),
            Decision::Unschedulable(
                "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.".into()
            )
        );
        assert_eq!(
            decide(&filters, &asking("3"), &[n.clone()]),
            Decision::Unschedulable(
                "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".into()
            )
        );
        let tainted =
            node("b", json!({"spec": {"taints": [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]}}));
        assert_eq!(
            decide(&filters, &asking("1"), &[n, tainted]),
            Decision::Unschedulable(
                "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.".into()
            )
        );
        assert_eq!(decide(&filters, &asking("1"), &[]), Decision::Unschedulable(NO_NODES.into()));
    }

    #[test]
    fn lower_priority_pods_make_the_preemption_message_name_what_still_blocks() {
        let filters = plugins::default_filters();
        let mut n = node("a", json!({}));
        n.add_pod(pod(json!({"priority": -5, "containers": [{"resources": {"requests": {"cpu": "1500m"}}}]})));
        n.add_pod(pod(json!({"priority": 20, "containers": [{"resources": {"requests": {"cpu": "400m"}}}]})));
        let urgent = pod(json!({"priority": 10, "containers": [{"resources": {"requests": {"cpu": "1700m"}}}]}));
        assert_eq!(
            decide(&filters, &urgent, &[n]),
            Decision::Unschedulable(
                "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 Insufficient cpu."
                    .into()
            )
        );
    }

    #[test]
    fn pending_pods_are_those_of_this_scheduler_without_a_node() {
        let p = |spec: Value| json!({"metadata": {"name": "p", "namespace": "d"}, "spec": spec, "status": {"phase": "Pending"}});
        assert!(wants_scheduling(&p(json!({"schedulerName": "default-scheduler"}))));
        assert!(!wants_scheduling(&p(json!({"schedulerName": "other"}))));
        assert!(!wants_scheduling(&p(json!({"schedulerName": "default-scheduler", "nodeName": "n"}))));
        assert!(!wants_scheduling(&p(
            json!({"schedulerName": "default-scheduler", "schedulingGates": [{"name": "g"}]})
        )));
        let mut deleting = p(json!({"schedulerName": "default-scheduler"}));
        deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        assert!(!wants_scheduling(&deleting));
    }
}
