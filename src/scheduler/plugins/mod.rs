//! The Filter plugins, in upstream's default order. Each is small and tested beside its
//! code; [`default_filters`] is the profile the scheduler runs.

mod node_affinity;
mod node_name;
mod node_ports;
mod node_resources_fit;
mod node_unschedulable;
mod taint_toleration;

pub use node_affinity::NodeAffinity;
pub use node_name::NodeName;
pub use node_ports::NodePorts;
pub use node_resources_fit::NodeResourcesFit;
pub use node_unschedulable::NodeUnschedulable;
pub use taint_toleration::{tolerates, TaintToleration};

use super::framework::FilterPlugin;

/// Upstream's default filters that k3rs has, in upstream's order.
pub fn default_filters() -> Vec<Box<dyn FilterPlugin>> {
    vec![
        Box::new(NodeUnschedulable),
        Box::new(NodeName),
        Box::new(TaintToleration),
        Box::new(NodeAffinity),
        Box::new(NodePorts),
        Box::new(NodeResourcesFit),
    ]
}

#[cfg(test)]
pub(crate) mod testing {
    use serde_json::{json, Value};

    use crate::scheduler::framework::{NodeInfo, PodInfo};

    pub fn pod(spec: Value) -> PodInfo {
        PodInfo::new(json!({"metadata": {"name": "p", "namespace": "default"}, "spec": spec}))
    }

    pub fn node(name: &str, extra: Value) -> NodeInfo {
        let mut n = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110", "ephemeral-storage": "10Gi"}},
        });
        merge(&mut n, extra);
        NodeInfo::new(n)
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
