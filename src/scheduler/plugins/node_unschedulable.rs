//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate
//! the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use super::tolerates;
use crate::scheduler::framework::{FilterPlugin, NodeInfo, PodInfo, Snapshot, Unfit};

pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<(), Unfit> {
        if node.node.spec.as_ref().and_then(|s| s.unschedulable) != Some(true) {
            return Ok(());
        }
        let taint =
            Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Taint::default() };
        if tolerates(pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()), &taint) {
            return Ok(());
        }
        Err(Unfit::unresolvable("node(s) were unschedulable"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scheduler::plugins::testing::{node, pod};

    #[test]
    fn cordoned_nodes_refuse_unless_tolerated() {
        let cordoned = node("n", json!({"spec": {"unschedulable": true}}));
        assert_eq!(
            NodeUnschedulable.filter(&pod(json!({})), &cordoned, &Snapshot::default()),
            Err(Unfit::unresolvable("node(s) were unschedulable"))
        );
        let tolerant = pod(
            json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert_eq!(NodeUnschedulable.filter(&tolerant, &cordoned, &Snapshot::default()), Ok(()));
        assert_eq!(NodeUnschedulable.filter(&pod(json!({})), &node("m", json!({})), &Snapshot::default()), Ok(()));
    }
}
