//! TaintToleration: a node's NoSchedule and NoExecute taints keep off pods that do not
//! tolerate them.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::scheduler::framework::{FilterPlugin, NodeInfo, PodInfo, Snapshot, Unfit};

pub struct TaintToleration;

/// Whether one of `tolerations` tolerates `taint`, by upstream's matching: an empty effect
/// or key matches any; `Exists` ignores the value; `Equal` (the default) compares it.
pub fn tolerates(tolerations: Option<&[Toleration]>, taint: &Taint) -> bool {
    let s = |v: &Option<String>| v.as_deref().unwrap_or("").to_string();
    tolerations.into_iter().flatten().any(|t| {
        let (t_effect, t_key) = (s(&t.effect), s(&t.key));
        if !t_effect.is_empty() && t_effect != taint.effect || !t_key.is_empty() && t_key != taint.key {
            return false;
        }
        match t.operator.as_deref().unwrap_or("") {
            "" | "Equal" => s(&t.value) == s(&taint.value),
            "Exists" => true,
            _ => false,
        }
    })
}

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<(), Unfit> {
        let tolerations = pod.pod.spec.as_ref().and_then(|s| s.tolerations.as_deref());
        let taints = node.node.spec.as_ref().and_then(|s| s.taints.as_ref()).into_iter().flatten();
        for taint in taints {
            if !matches!(taint.effect.as_str(), "NoSchedule" | "NoExecute") || tolerates(tolerations, taint) {
                continue;
            }
            let value = taint.value.as_deref().unwrap_or("");
            return Err(Unfit::unresolvable(format!("node(s) had untolerated taint {{{}: {value}}}", taint.key)));
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
    fn untolerated_no_schedule_and_no_execute_taints_refuse() {
        let n = node(
            "n",
            json!({"spec": {"taints": [
                {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                {"key": "dedicated", "value": "gpu", "effect": "NoExecute"},
            ]}}),
        );
        let err = TaintToleration.filter(&pod(json!({})), &n, &Snapshot::default()).unwrap_err();
        assert_eq!(err, Unfit::unresolvable("node(s) had untolerated taint {node.kubernetes.io/not-ready: }"));

        let partly = pod(json!({"tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]}));
        let err = TaintToleration.filter(&partly, &n, &Snapshot::default()).unwrap_err();
        assert_eq!(err.reasons, ["node(s) had untolerated taint {dedicated: gpu}"]);

        let all = pod(json!({"tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "operator": "Equal", "value": "gpu"},
        ]}));
        assert_eq!(TaintToleration.filter(&all, &n, &Snapshot::default()), Ok(()));
        let wrong_value = pod(
            json!({"tolerations": [{"operator": "Exists", "effect": "NoSchedule"}, {"key": "dedicated", "value": "cpu"}]}),
        );
        assert!(TaintToleration.filter(&wrong_value, &n, &Snapshot::default()).is_err());
        let everything = pod(json!({"tolerations": [{"operator": "Exists"}]}));
        assert_eq!(TaintToleration.filter(&everything, &n, &Snapshot::default()), Ok(()));
    }

    #[test]
    fn prefer_no_schedule_does_not_filter() {
        let n = node("n", json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]}}));
        assert_eq!(TaintToleration.filter(&pod(json!({})), &n, &Snapshot::default()), Ok(()));
    }
}
