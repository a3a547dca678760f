//! NodeResourcesFit: the pod's requests must fit in what the node's allocatable leaves
//! after the pods already on it, and the node must take one more pod. A request larger
//! than the whole node is unresolvable (no preemption could help), as upstream.

use crate::scheduler::framework::{Code, FilterPlugin, NodeInfo, PodInfo, ScorePlugin, Snapshot, Unfit};

pub struct NodeResourcesFit;

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<(), Unfit> {
        let mut reasons = Vec::new();
        let mut unresolvable = false;
        if node.pods.len() as i64 + 1 > node.allowed_pods {
            reasons.push("Too many pods".to_string());
        }
        let (want, used, have) = (&pod.requests, &node.requested, &node.allocatable);
        let mut check = |name: &str, want: i64, used: i64, have: i64| {
            if want > 0 && want > have - used {
                reasons.push(format!("Insufficient {name}"));
                unresolvable |= want > have;
            }
        };
        check("cpu", want.milli_cpu, used.milli_cpu, have.milli_cpu);
        check("memory", want.memory, used.memory, have.memory);
        check("ephemeral-storage", want.ephemeral_storage, used.ephemeral_storage, have.ephemeral_storage);
        for (name, q) in &want.scalar {
            check(name, *q, used.scalar(name), have.scalar(name));
        }
        if reasons.is_empty() {
            return Ok(());
        }
        let code = if unresolvable { Code::UnschedulableAndUnresolvable } else { Code::Unschedulable };
        Err(Unfit { code, reasons })
    }
}

/// Upstream's least-allocated score (0–100): the share of cpu and memory a node keeps
/// free after the pod, averaged; requests of zero count as upstream's defaults (100m cpu,
/// 200Mi memory) so empty pods still spread.
pub struct LeastAllocated;

impl ScorePlugin for LeastAllocated {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    fn weight(&self) -> i64 {
        1
    }

    fn score(&self, pod: &PodInfo, node: &NodeInfo, _: &[&NodeInfo]) -> i64 {
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
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scheduler::plugins::testing::{node, pod};

    fn asking(cpu: &str, memory: &str) -> PodInfo {
        pod(json!({"containers": [{"resources": {"requests": {"cpu": cpu, "memory": memory}}}]}))
    }

    #[test]
    fn requests_must_fit_what_is_left() {
        let mut n = node("n", json!({}));
        assert_eq!(NodeResourcesFit.filter(&asking("1500m", "1Gi"), &n, &Snapshot::default()), Ok(()));
        n.add_pod(asking("1", "3Gi"));
        let err = NodeResourcesFit.filter(&asking("1500m", "2Gi"), &n, &Snapshot::default()).unwrap_err();
        assert_eq!(
            err,
            Unfit { code: Code::Unschedulable, reasons: vec!["Insufficient cpu".into(), "Insufficient memory".into()] }
        );
        // Larger than the whole node: no eviction would help.
        let err = NodeResourcesFit.filter(&asking("3", "1Mi"), &n, &Snapshot::default()).unwrap_err();
        assert_eq!(err.code, Code::UnschedulableAndUnresolvable);
        assert_eq!(err.reasons, ["Insufficient cpu"]);
    }

    #[test]
    fn pod_count_and_extended_resources() {
        let mut n = node("n", json!({"status": {"allocatable": {"pods": "1", "example.com/dongle": "1"}}}));
        let dongle = pod(json!({"containers": [{"resources": {"requests": {"example.com/dongle": "2"}}}]}));
        assert_eq!(
            NodeResourcesFit.filter(&dongle, &n, &Snapshot::default()).unwrap_err().reasons,
            ["Insufficient example.com/dongle"]
        );
        n.add_pod(asking("1m", "1"));
        assert_eq!(
            NodeResourcesFit.filter(&pod(json!({})), &n, &Snapshot::default()).unwrap_err(),
            Unfit::unschedulable("Too many pods")
        );
    }
}
