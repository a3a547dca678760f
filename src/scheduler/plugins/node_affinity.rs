//! NodeAffinity: the pod's `nodeSelector` labels and its required node affinity (terms
//! ORed, each term's expressions ANDed) must match the node.

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

use crate::scheduler::framework::{FilterPlugin, Labels, NodeInfo, PodInfo, Snapshot, Unfit};

pub struct NodeAffinity;

const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// One `NodeSelectorRequirement` against a value looked up by key.
fn requirement_matches(req: &NodeSelectorRequirement, lookup: impl Fn(&str) -> Option<String>) -> bool {
    let values: &[String] = req.values.as_deref().unwrap_or(&[]);
    let actual = lookup(&req.key);
    let number = |s: &str| s.parse::<i64>().ok();
    let first = values.first().and_then(|v| number(v));
    match req.operator.as_str() {
        "In" => actual.is_some_and(|a| values.contains(&a)),
        "NotIn" => !actual.is_some_and(|a| values.contains(&a)),
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        "Gt" => matches!((actual.as_deref().and_then(number), first), (Some(a), Some(v)) if a > v),
        "Lt" => matches!((actual.as_deref().and_then(number), first), (Some(a), Some(v)) if a < v),
        _ => false,
    }
}

fn term_matches(term: &NodeSelectorTerm, labels: Option<&Labels>, node_name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    // A term with no requirements selects nothing, as upstream.
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let label = |k: &str| labels.and_then(|l| l.get(k)).cloned();
    let field = |k: &str| (k == "metadata.name").then(|| node_name.to_string());
    exprs.iter().all(|r| requirement_matches(r, label)) && fields.iter().all(|r| requirement_matches(r, field))
}

/// Whether the node matches a required node selector (its terms ORed), as a
/// PersistentVolume's node affinity states one.
pub fn matches_node_selector(selector: &NodeSelector, node: &NodeInfo) -> bool {
    selector.node_selector_terms.iter().any(|t| term_matches(t, node.labels(), &node.name))
}

/// Whether the node passes the pod's `nodeSelector` and required node affinity.
pub fn matches_node_affinity(pod: &PodInfo, node: &NodeInfo) -> bool {
    let labels = node.labels();
    let spec = pod.pod.spec.as_ref();
    for (k, v) in spec.and_then(|s| s.node_selector.as_ref()).into_iter().flatten() {
        if labels.and_then(|l| l.get(k)) != Some(v) {
            return false;
        }
    }
    let required = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| a.required_during_scheduling_ignored_during_execution.as_ref());
    match required {
        Some(r) => r.node_selector_terms.iter().any(|t| term_matches(t, labels, &node.name)),
        None => true,
    }
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo, _: &Snapshot) -> Result<(), Unfit> {
        if matches_node_affinity(pod, node) {
            Ok(())
        } else {
            Err(Unfit::unresolvable(REASON))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::scheduler::plugins::testing::{node, pod};

    fn gpu_node() -> NodeInfo {
        node("g1", json!({"metadata": {"labels": {"accel": "gpu", "cores": "16"}}}))
    }

    #[test]
    fn node_selector_labels_must_all_match() {
        assert_eq!(
            NodeAffinity.filter(&pod(json!({"nodeSelector": {"accel": "gpu"}})), &gpu_node(), &Snapshot::default()),
            Ok(())
        );
        assert_eq!(
            NodeAffinity.filter(
                &pod(json!({"nodeSelector": {"accel": "gpu", "zone": "a"}})),
                &gpu_node(),
                &Snapshot::default()
            ),
            Err(Unfit::unresolvable(REASON))
        );
        assert_eq!(
            NodeAffinity.filter(&pod(json!({"nodeSelector": {"accel": "tpu"}})), &gpu_node(), &Snapshot::default()),
            Err(Unfit::unresolvable(REASON))
        );
    }

    #[test]
    fn required_affinity_terms_are_ored_and_expressions_anded() {
        let affinity = |terms: serde_json::Value| {
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
            )
        };
        let n = gpu_node();
        let ok = affinity(json!([
            {"matchExpressions": [{"key": "accel", "operator": "In", "values": ["tpu"]}]},
            {"matchExpressions": [{"key": "accel", "operator": "In", "values": ["gpu"]}, {"key": "cores", "operator": "Gt", "values": ["8"]}]},
        ]));
        assert_eq!(NodeAffinity.filter(&ok, &n, &Snapshot::default()), Ok(()));
        let no = affinity(
            json!([{"matchExpressions": [{"key": "accel", "operator": "Exists"}, {"key": "cores", "operator": "Lt", "values": ["8"]}]}]),
        );
        assert!(NodeAffinity.filter(&no, &n, &Snapshot::default()).is_err());
        let not_in = affinity(
            json!([{"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}, {"key": "accel", "operator": "NotIn", "values": ["tpu"]}]}]),
        );
        assert_eq!(NodeAffinity.filter(&not_in, &n, &Snapshot::default()), Ok(()));
        let by_name =
            affinity(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["g1"]}]}]));
        assert_eq!(NodeAffinity.filter(&by_name, &n, &Snapshot::default()), Ok(()));
        assert!(NodeAffinity.filter(&affinity(json!([{}])), &n, &Snapshot::default()).is_err());
    }
}
