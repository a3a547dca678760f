//! The taint eviction controller (upstream's TaintEvictionController, once the node
//! lifecycle controller's taint manager): a pod on a node with a NoExecute taint it does
//! not tolerate is deleted at once; one that tolerates it for tolerationSeconds is deleted
//! when that time has passed since the controller saw it under the taint, unless the taint
//! goes first. Each deletion marks the pod DisruptionTarget and is announced by a
//! `TaintManagerEviction` event.
//!
//! [`plan`] decides, with no I/O; this module keeps the scheduled evictions, requeues each
//! pod for its time and deletes.

pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::{ObjectRef, Store};

use self::plan::{Plan, Scheduled};
use super::nodelifecycle::monitor::until;
use super::runtime::{self, is_not_found, Clock, Context, Informer, Notice, ReconcileError};

pub async fn run(ctx: Context) {
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let this = Arc::new(Controller {
        client: ctx.client.clone(),
        nodes: nodes.clone(),
        recorder: ctx.recorder("taint-eviction-controller"),
        clock: ctx.clock.clone(),
        scheduled: Mutex::new(HashMap::new()),
    });
    let triggers =
        futures::stream::select(pod_triggers(&pods, this.clone()), node_triggers(&nodes, pods.store().clone()));
    runtime::run("taint-eviction", pods.store().clone(), triggers, ctx.stop.clone(), move |p| {
        let this = this.clone();
        async move { this.reconcile(p).await }
    })
    .await
}

/// Each changed pod; a deleted one has its scheduled eviction cancelled.
fn pod_triggers(
    pods: &Informer<Pod>,
    this: Arc<Controller>,
) -> impl futures::Stream<Item = ObjectRef<Pod>> + Send + 'static {
    let store = pods.store().clone();
    pods.subscribe().flat_map(move |n| {
        futures::stream::iter(match n {
            Notice::Changed(p) => vec![ObjectRef::from_obj(&*p)],
            Notice::Deleted(p) => {
                let this = this.clone();
                tokio::spawn(async move { this.cancel(&p).await });
                vec![]
            }
            Notice::Resynced => runtime::all(&store),
        })
    })
}

fn no_execute(node: &Node) -> Vec<Taint> {
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_ref());
    taints.into_iter().flatten().filter(|t| t.effect == "NoExecute").cloned().collect()
}

fn node_of(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("")
}

/// The pods of a node whose NoExecute taints changed (or that went).
fn node_triggers(
    nodes: &Informer<Node>,
    pods: Store<Pod>,
) -> impl futures::Stream<Item = ObjectRef<Pod>> + Send + 'static {
    let mut known: HashMap<String, Vec<Taint>> = HashMap::new();
    nodes.subscribe().flat_map(move |n| {
        let on = |name: &str| -> Vec<ObjectRef<Pod>> {
            pods.state().iter().filter(|p| node_of(p) == name).map(|p| ObjectRef::from_obj(&**p)).collect()
        };
        futures::stream::iter(match n {
            Notice::Changed(node) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                let taints = no_execute(&node);
                if known.get(&name) == Some(&taints) {
                    vec![]
                } else {
                    known.insert(name.clone(), taints);
                    on(&name)
                }
            }
            Notice::Deleted(node) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                known.remove(&name);
                on(&name)
            }
            Notice::Resynced => {
                known.clear();
                runtime::all(&pods)
            }
        })
    })
}

struct Controller {
    client: kube::Client,
    nodes: Informer<Node>,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
    /// Scheduled evictions by `namespace/name`.
    scheduled: Mutex<HashMap<String, Scheduled>>,
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""))
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        ..Default::default()
    }
}

impl Controller {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Scheduled>> {
        self.scheduled.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn reconcile(&self, pod: Arc<Pod>) -> Result<Action, ReconcileError> {
        // Already going: nothing to add.
        if pod.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let taints = match self.nodes.get(None, node_of(&pod)) {
            Some(node) => no_execute(&node),
            None => vec![],
        };
        let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
        let k = key(&pod);
        let now = self.clock.now();
        let scheduled = self.lock().get(&k).copied();
        match plan::plan(&taints, &tolerations, scheduled, now) {
            Plan::Keep => {
                self.cancel(&pod).await;
                Ok(Action::await_change())
            }
            Plan::Wait(s) => {
                if scheduled.is_none() {
                    tracing::debug!(controller = "taint-eviction", object = %k, at = %s.at, "eviction scheduled");
                }
                self.lock().insert(k, s);
                Ok(Action::requeue(until(now, s.at)))
            }
            Plan::Evict => {
                self.evict(&pod).await?;
                self.lock().remove(&k);
                Ok(Action::await_change())
            }
        }
    }

    /// Drops a scheduled eviction, saying so if there was one.
    async fn cancel(&self, pod: &Pod) {
        if self.lock().remove(&key(pod)).is_some() {
            let note = format!("Cancelling deletion of Pod {}", key(pod));
            self.event(&pod_ref(pod), note).await;
        }
    }

    /// Marks the pod DisruptionTarget and deletes it.
    async fn evict(&self, pod: &Pod) -> Result<(), ReconcileError> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        tracing::info!(controller = "taint-eviction", object = %key(pod), "deleting pod");
        self.event(&pod_ref(pod), format!("Marking for deletion Pod {}", key(pod))).await;
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let fresh = match api.get(&name).await {
            Ok(p) => p,
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if let Some(marked) = disruption_target(&fresh, self.clock.now()) {
            match api.replace_status(&name, &PostParams::default(), &marked).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn event(&self, reference: &ObjectReference, note: String) {
        let ev = Event {
            type_: EventType::Normal,
            reason: "TaintManagerEviction".into(),
            note: Some(note),
            action: "Delete".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::debug!(error = %e, "cannot record event");
        }
    }
}

/// The pod with the DisruptionTarget condition upstream sets before deleting it, or `None`
/// if it has it already.
pub fn disruption_target(pod: &Pod, now: k8s_openapi::jiff::Timestamp) -> Option<Pod> {
    let mut pod = pod.clone();
    let conditions = pod.status.get_or_insert_with(Default::default).conditions.get_or_insert_with(Vec::new);
    let reason = "DeletionByTaintManager";
    let message = "Taint manager: deleting due to NoExecute taint";
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == "DisruptionTarget") {
        if c.status == "True" && c.reason.as_deref() == Some(reason) && c.message.as_deref() == Some(message) {
            return None;
        }
        if c.status != "True" {
            c.last_transition_time = Some(Time(now));
        }
        c.status = "True".into();
        c.reason = Some(reason.into());
        c.message = Some(message.into());
    } else {
        conditions.push(PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_transition_time: Some(Time(now)),
            ..Default::default()
        });
    }
    Some(pod)
}

#[cfg(test)]
mod tests;
