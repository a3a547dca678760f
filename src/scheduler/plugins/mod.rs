//! The Filter and Score plugins, in upstream's default order. Each is small and tested
//! beside its code; [`default_profile`] is what the scheduler runs.

mod inter_pod_affinity;
mod node_affinity;
mod node_name;
mod node_ports;
mod node_resources_fit;
mod node_unschedulable;
mod pod_topology_spread;
mod taint_toleration;
mod volume_binding;

pub use inter_pod_affinity::InterPodAffinity;
pub use node_affinity::{matches_node_affinity, matches_node_selector, NodeAffinity};
pub use node_name::NodeName;
pub use node_ports::NodePorts;
pub use node_resources_fit::{LeastAllocated, NodeResourcesFit};
pub use node_unschedulable::NodeUnschedulable;
pub use pod_topology_spread::PodTopologySpread;
pub use taint_toleration::{tolerates, TaintToleration};
pub use volume_binding::{claims_to_provision, unbound_delayed_claims, VolumeBinding, SELECTED_NODE};

use super::framework::Profile;

/// Upstream's default plugins that k3rs has, in upstream's order.
pub fn default_profile() -> Profile {
    Profile {
        filters: vec![
            Box::new(NodeUnschedulable),
            Box::new(NodeName),
            Box::new(TaintToleration),
            Box::new(NodeAffinity),
            Box::new(NodePorts),
            Box::new(NodeResourcesFit),
            Box::new(VolumeBinding),
            Box::new(PodTopologySpread),
            Box::new(InterPodAffinity),
        ],
        scores: vec![Box::new(LeastAllocated), Box::new(PodTopologySpread), Box::new(InterPodAffinity)],
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use crate::scheduler::framework::{NodeInfo, PodInfo};

    /// A pod `p` in `default` with this spec (containers named for the API's sake).
    pub fn pod(spec: Value) -> PodInfo {
        pod_with(json!({"name": "p", "namespace": "default"}), spec)
    }

    /// A pod with this metadata and spec.
    pub fn pod_with(metadata: Value, mut spec: Value) -> PodInfo {
        if spec.get("containers").is_none() {
            spec["containers"] = json!([]);
        }
        for list in ["containers", "initContainers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for (i, c) in cs.iter_mut().enumerate() {
                    if c.get("name").is_none() {
                        c["name"] = json!(format!("c{i}"));
                    }
                }
            }
        }
        let pod = serde_json::from_value(json!({"metadata": metadata, "spec": spec})).expect("a pod");
        PodInfo::new(Arc::new(pod))
    }

    pub fn node(name: &str, extra: Value) -> NodeInfo {
        let mut n = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "10Gi"}},
        });
        merge(&mut n, extra);
        NodeInfo::new(Arc::new(serde_json::from_value(n).expect("a node")))
    }

    fn merge(a: &mut Value, b: Value) {
        match (a, b) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }
}
