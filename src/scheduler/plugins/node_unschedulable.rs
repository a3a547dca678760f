//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate
//! the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use serde_json::{json, Value};

use super::tolerates;
use crate::scheduler::framework::{FilterPlugin, NodeInfo, PodInfo, Unfit};

pub struct NodeUnschedulable;

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        if node.node.pointer("/spec/unschedulable").and_then(Value::as_bool) != Some(true) {
            return Ok(());
        }
        let taint = json!({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"});
        if tolerates(pod.spec("tolerations"), &taint) {
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
            NodeUnschedulable.filter(&pod(json!({})), &cordoned),
            Err(Unfit::unresolvable("node(s) were unschedulable"))
        );
        let tolerant = pod(
            json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert_eq!(NodeUnschedulable.filter(&tolerant, &cordoned), Ok(()));
        assert_eq!(NodeUnschedulable.filter(&pod(json!({})), &node("m", json!({}))), Ok(()));
    }
}
