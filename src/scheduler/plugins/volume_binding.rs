//! VolumeBinding, the basics: every PersistentVolumeClaim a pod mounts must exist and not
//! be going away, and be bound unless its StorageClass binds `WaitForFirstConsumer`. Such a
//! delayed claim is provisioned where the pod lands: before binding the pod, the scheduler
//! names the node on the claim (`volume.kubernetes.io/selected-node`), as upstream's
//! PreBind, and binds the pod only once the claims are bound. The refusals about the claims
//! themselves happen before any node is looked at (upstream's PreFilter); a node that the
//! volume of a bound claim may not be used on is refused by Filter.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use super::matches_node_selector;
use crate::scheduler::framework::{FilterPlugin, NodeInfo, PodInfo, Snapshot, Unfit};

/// The annotation that asks a provisioner for a volume on a node.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const NODE_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const PV_NOT_EXIST: &str = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

pub struct VolumeBinding;

/// The claims a pod mounts: `(name, made for an ephemeral volume)`.
fn claims_of(pod: &PodInfo) -> impl Iterator<Item = (String, bool)> + '_ {
    let volumes = pod.pod.spec.as_ref().and_then(|s| s.volumes.as_ref()).into_iter().flatten();
    volumes.filter_map(move |v| {
        if let Some(c) = &v.persistent_volume_claim {
            Some((c.claim_name.clone(), false))
        } else {
            v.ephemeral.as_ref().map(|_| (format!("{}-{}", pod.name, v.name), true))
        }
    })
}

fn is_bound(c: &PersistentVolumeClaim) -> bool {
    c.spec.as_ref().and_then(|s| s.volume_name.as_deref()).is_some_and(|v| !v.is_empty())
}

/// Whether the claim's class binds when a pod first uses it.
fn binds_late(c: &PersistentVolumeClaim, snap: &Snapshot) -> bool {
    let class = c.spec.as_ref().and_then(|s| s.storage_class_name.as_deref()).unwrap_or("");
    snap.classes.get(class).and_then(|sc| sc.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// The pod's unbound `WaitForFirstConsumer` claims that do not yet name `node`.
pub fn claims_to_provision(pod: &PodInfo, snap: &Snapshot, node: &str) -> Vec<String> {
    claims_of(pod)
        .filter_map(|(name, _)| snap.claims.get(&(pod.namespace.clone(), name.clone())).map(|c| (name, c)))
        .filter(|(_, c)| !is_bound(c) && binds_late(c, snap))
        .filter(|(_, c)| {
            c.metadata.annotations.as_ref().and_then(|a| a.get(SELECTED_NODE)).map(String::as_str) != Some(node)
        })
        .map(|(name, _)| name)
        .collect()
}

/// The pod's claims that wait for a volume to be provisioned for them (unbound, of a
/// `WaitForFirstConsumer` class): the pod is bound only once they are (upstream's PreBind).
pub fn unbound_delayed_claims(pod: &PodInfo, snap: &Snapshot) -> Vec<String> {
    claims_of(pod)
        .filter(|(name, _)| {
            snap.claims.get(&(pod.namespace.clone(), name.clone())).is_some_and(|c| !is_bound(c) && binds_late(c, snap))
        })
        .map(|(name, _)| name)
        .collect()
}

impl FilterPlugin for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }

    fn pre_filter(&self, pod: &PodInfo, snap: &Snapshot) -> Result<(), Unfit> {
        let mut unbound_immediate = false;
        for (name, ephemeral) in claims_of(pod) {
            let Some(claim) = snap.claims.get(&(pod.namespace.clone(), name.clone())) else {
                return Err(Unfit::unresolvable(if ephemeral {
                    format!("waiting for ephemeral volume controller to create the persistentvolumeclaim \"{name}\"")
                } else {
                    format!("persistentvolumeclaim \"{name}\" not found")
                }));
            };
            if claim.metadata.deletion_timestamp.is_some() {
                return Err(Unfit::unresolvable(format!("persistentvolumeclaim \"{name}\" is being deleted")));
            }
            if !is_bound(claim) && !binds_late(claim, snap) {
                unbound_immediate = true;
            }
        }
        if unbound_immediate {
            return Err(Unfit::unresolvable(UNBOUND_IMMEDIATE));
        }
        Ok(())
    }

    /// Each bound claim's volume must exist and its node affinity take the node.
    fn filter(&self, pod: &PodInfo, node: &NodeInfo, snap: &Snapshot) -> Result<(), Unfit> {
        let bound = claims_of(pod)
            .filter_map(|(name, _)| snap.claims.get(&(pod.namespace.clone(), name)))
            .filter_map(|c| c.spec.as_ref().and_then(|s| s.volume_name.as_deref()).filter(|v| !v.is_empty()));
        for volume in bound {
            let Some(pv) = snap.volumes.get(volume) else { return Err(Unfit::unresolvable(PV_NOT_EXIST)) };
            let required = pv.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref());
            if required.is_some_and(|r| !matches_node_selector(r, node)) {
                return Err(Unfit::unresolvable(NODE_CONFLICT));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::*;
    use crate::scheduler::plugins::testing::pod_with;

    fn mounting(volumes: Value) -> PodInfo {
        pod_with(json!({"name": "p", "namespace": "default"}), json!({"volumes": volumes}))
    }

    fn claim(name: &str, extra: Value) -> ((String, String), Arc<PersistentVolumeClaim>) {
        let mut c = json!({"metadata": {"name": name, "namespace": "default"}, "spec": {}});
        for (k, v) in extra.as_object().into_iter().flatten() {
            c[k] = v.clone();
        }
        (("default".into(), name.into()), Arc::new(serde_json::from_value(c).unwrap()))
    }

    fn snapshot(claims: Vec<((String, String), Arc<PersistentVolumeClaim>)>) -> Snapshot {
        let late = serde_json::from_value(
            json!({"metadata": {"name": "local"}, "provisioner": "x", "volumeBindingMode": "WaitForFirstConsumer"}),
        )
        .unwrap();
        let now = serde_json::from_value(json!({"metadata": {"name": "fast"}, "provisioner": "x"})).unwrap();
        Snapshot {
            claims: claims.into_iter().collect(),
            classes: [("local".to_string(), Arc::new(late)), ("fast".to_string(), Arc::new(now))].into(),
            ..Snapshot::default()
        }
    }

    #[test]
    fn pre_filter_table() {
        let pvc = |name: &str| json!([{"name": "v", "persistentVolumeClaim": {"claimName": name}}]);
        let cases: Vec<(&str, PodInfo, Snapshot, Result<(), Unfit>)> = vec![
            ("no volumes", mounting(json!([])), snapshot(vec![]), Ok(())),
            (
                "a missing claim",
                mounting(pvc("data")),
                snapshot(vec![]),
                Err(Unfit::unresolvable("persistentvolumeclaim \"data\" not found")),
            ),
            (
                "a missing ephemeral claim",
                mounting(json!([{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}])),
                snapshot(vec![]),
                Err(Unfit::unresolvable(
                    "waiting for ephemeral volume controller to create the persistentvolumeclaim \"p-scratch\"",
                )),
            ),
            (
                "a claim being deleted",
                mounting(pvc("data")),
                snapshot(vec![claim(
                    "data",
                    json!({"metadata": {"name": "data", "namespace": "default", "deletionTimestamp": "2025-01-01T00:00:00Z"}}),
                )]),
                Err(Unfit::unresolvable("persistentvolumeclaim \"data\" is being deleted")),
            ),
            (
                "a bound claim",
                mounting(pvc("data")),
                snapshot(vec![claim("data", json!({"spec": {"volumeName": "pv1"}}))]),
                Ok(()),
            ),
            (
                "an unbound immediate claim",
                mounting(pvc("data")),
                snapshot(vec![claim("data", json!({"spec": {"storageClassName": "fast"}}))]),
                Err(Unfit::unresolvable(UNBOUND_IMMEDIATE)),
            ),
            (
                "an unbound claim without a class",
                mounting(pvc("data")),
                snapshot(vec![claim("data", json!({}))]),
                Err(Unfit::unresolvable(UNBOUND_IMMEDIATE)),
            ),
            (
                "an unbound WaitForFirstConsumer claim",
                mounting(pvc("data")),
                snapshot(vec![claim("data", json!({"spec": {"storageClassName": "local"}}))]),
                Ok(()),
            ),
        ];
        for (case, pod, snap, want) in cases {
            assert_eq!(VolumeBinding.pre_filter(&pod, &snap), want, "{case}");
        }
    }

    #[test]
    fn delayed_claims_are_given_the_chosen_node_once() {
        let pod = mounting(json!([
            {"name": "a", "persistentVolumeClaim": {"claimName": "late"}},
            {"name": "b", "persistentVolumeClaim": {"claimName": "bound"}},
        ]));
        let snap = snapshot(vec![
            claim("late", json!({"spec": {"storageClassName": "local"}})),
            claim("bound", json!({"spec": {"storageClassName": "local", "volumeName": "pv"}})),
        ]);
        assert_eq!(claims_to_provision(&pod, &snap, "n1"), ["late"]);
        let snap = snapshot(vec![claim(
            "late",
            json!({"metadata": {"name": "late", "namespace": "default", "annotations": {SELECTED_NODE: "n1"}}, "spec": {"storageClassName": "local"}}),
        )]);
        assert!(claims_to_provision(&pod, &snap, "n1").is_empty());
    }

    #[test]
    fn a_bound_claims_volume_must_take_the_node() {
        use crate::scheduler::plugins::testing::node;
        let pod = mounting(json!([{"name": "a", "persistentVolumeClaim": {"claimName": "data"}}]));
        let pv = |affinity: Value| {
            let pv = json!({"metadata": {"name": "pv1"}, "spec": {"nodeAffinity": affinity}});
            ("pv1".to_string(), Arc::new(serde_json::from_value(pv).unwrap()))
        };
        let on_n1 = json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}});
        let n = |name: &str| node(name, json!({"metadata": {"labels": {"kubernetes.io/hostname": name}}}));
        let mut snap = snapshot(vec![claim("data", json!({"spec": {"volumeName": "pv1"}}))]);
        assert_eq!(VolumeBinding.filter(&pod, &n("n1"), &snap), Err(Unfit::unresolvable(PV_NOT_EXIST)));
        snap.volumes = [pv(on_n1)].into();
        assert_eq!(VolumeBinding.filter(&pod, &n("n1"), &snap), Ok(()));
        assert_eq!(VolumeBinding.filter(&pod, &n("n2"), &snap), Err(Unfit::unresolvable(NODE_CONFLICT)));
        snap.volumes = [pv(Value::Null)].into();
        assert_eq!(VolumeBinding.filter(&pod, &n("n2"), &snap), Ok(()), "a volume usable anywhere");
        // A claim still waiting for its volume holds the binding back.
        let snap = snapshot(vec![claim("data", json!({"spec": {"storageClassName": "local"}}))]);
        assert_eq!(unbound_delayed_claims(&pod, &snap), ["data"]);
    }
}
