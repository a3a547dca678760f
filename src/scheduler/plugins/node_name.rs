//! NodeName: a pod that names its node fits only there.

use crate::scheduler::framework::{FilterPlugin, NodeInfo, PodInfo, Snapshot, Unfit};

pub struct NodeName;

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<(), Unfit> {
        match pod.pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
            Some(n) if !n.is_empty() && n != node.name => {
                Err(Unfit::unresolvable("node(s) didn't match the requested node name"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scheduler::plugins::testing::{node, pod};

    #[test]
    fn only_the_named_node_fits() {
        let p = pod(json!({"nodeName": "a"}));
        assert_eq!(NodeName.filter(&p, &node("a", json!({})), &Snapshot::default()), Ok(()));
        assert_eq!(
            NodeName.filter(&p, &node("b", json!({})), &Snapshot::default()),
            Err(Unfit::unresolvable("node(s) didn't match the requested node name"))
        );
        assert_eq!(NodeName.filter(&pod(json!({})), &node("b", json!({})), &Snapshot::default()), Ok(()));
    }
}
