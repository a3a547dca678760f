//! NodePorts: a pod's host ports must be free on the node.

use crate::scheduler::framework::{FilterPlugin, NodeInfo, PodInfo, Snapshot, Unfit};

pub struct NodePorts;

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<(), Unfit> {
        let taken = node.pods.iter().flat_map(|p| p.host_ports.iter());
        for used in taken {
            if pod.host_ports.iter().any(|want| want.conflicts(used)) {
                return Err(Unfit::unschedulable("node(s) didn't have free ports for the requested pod ports"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scheduler::plugins::testing::{node, pod};

    #[test]
    fn a_taken_host_port_refuses() {
        let web = |ip: &str| {
            pod(
                json!({"containers": [{"ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": ip, "protocol": "TCP"}]}]}),
            )
        };
        let mut n = node("n", json!({}));
        assert_eq!(NodePorts.filter(&web(""), &n, &Snapshot::default()), Ok(()));
        n.add_pod(web("127.0.0.1"));
        assert_eq!(
            NodePorts.filter(&web(""), &n, &Snapshot::default()),
            Err(Unfit::unschedulable("node(s) didn't have free ports for the requested pod ports"))
        );
        assert_eq!(NodePorts.filter(&web("127.0.0.2"), &n, &Snapshot::default()), Ok(()));
        // Without a host port nothing clashes.
        assert_eq!(
            NodePorts.filter(
                &pod(json!({"containers": [{"ports": [{"containerPort": 8080}]}]})),
                &n,
                &Snapshot::default()
            ),
            Ok(())
        );
    }
}
