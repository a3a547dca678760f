//! NodeAffinity: the pod's `nodeSelector` labels and its required node affinity (terms
//! ORed, each term's expressions ANDed) must match the node.

use serde_json::{Map, Value};

use crate::scheduler::framework::{FilterPlugin, NodeInfo, PodInfo, Unfit};

pub struct NodeAffinity;

const REASON: &str = "node(s) didn't match Pod's node affinity/selector";

/// One `NodeSelectorRequirement` against a value looked up by key.
fn requirement_matches(req: &Value, lookup: impl Fn(&str) -> Option<String>) -> bool {
    let key = req.get("key").and_then(Value::as_str).unwrap_or("");
    let values: Vec<&str> =
        req.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let actual = lookup(key);
    let number = |s: &str| s.parse::<i64>().ok();
    match req.get("operator").and_then(Value::as_str).unwrap_or("") {
        "In" => actual.is_some_and(|a| values.contains(&a.as_str())),
        "NotIn" => !actual.is_some_and(|a| values.contains(&a.as_str())),
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        "Gt" => {
            matches!((actual.as_deref().and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(v)) if a > v)
        }
        "Lt" => {
            matches!((actual.as_deref().and_then(number), values.first().and_then(|v| number(v))), (Some(a), Some(v)) if a < v)
        }
        _ => false,
    }
}

fn term_matches(term: &Value, labels: Option<&Map<String, Value>>, node_name: &str) -> bool {
    let exprs = term.get("matchExpressions").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let fields = term.get("matchFields").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    // A term with no requirements selects nothing, as upstream.
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str).map(str::to_string);
    let field = |k: &str| (k == "metadata.name").then(|| node_name.to_string());
    exprs.iter().all(|r| requirement_matches(r, label)) && fields.iter().all(|r| requirement_matches(r, field))
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, pod: &PodInfo, node: &NodeInfo) -> Result<(), Unfit> {
        let labels = node.labels();
        for (k, v) in pod.spec("nodeSelector").and_then(Value::as_object).into_iter().flatten() {
            if labels.and_then(|l| l.get(k)) != Some(v) {
                return Err(Unfit::unresolvable(REASON));
            }
        }
        let required = pod
            .spec("affinity")
            .and_then(|a| a.pointer("/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution"));
        if let Some(terms) = required.and_then(|r| r.get("nodeSelectorTerms")).and_then(Value::as_array) {
            if !terms.iter().any(|t| term_matches(t, labels, &node.name)) {
                return Err(Unfit::unresolvable(REASON));
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

    fn gpu_node() -> NodeInfo {
        node("g1", json!({"metadata": {"labels": {"accel": "gpu", "cores": "16"}}}))
    }

    #[test]
    fn node_selector_labels_must_all_match() {
        assert_eq!(NodeAffinity.filter(&pod(json!({"nodeSelector": {"accel": "gpu"}})), &gpu_node()), Ok(()));
        assert_eq!(
            NodeAffinity.filter(&pod(json!({"nodeSelector": {"accel": "gpu", "zone": "a"}})), &gpu_node()),
            Err(Unfit::unresolvable(REASON))
        );
        assert_eq!(
            NodeAffinity.filter(&pod(json!({"nodeSelector": {"accel": "tpu"}})), &gpu_node()),
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
        assert_eq!(NodeAffinity.filter(&ok, &n), Ok(()));
        let no = affinity(
            json!([{"matchExpressions": [{"key": "accel", "operator": "Exists"}, {"key": "cores", "operator": "Lt", "values": ["8"]}]}]),
        );
        assert!(NodeAffinity.filter(&no, &n).is_err());
        let not_in = affinity(
            json!([{"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}, {"key": "accel", "operator": "NotIn", "values": ["tpu"]}]}]),
        );
        assert_eq!(NodeAffinity.filter(&not_in, &n), Ok(()));
        let by_name =
            affinity(json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["g1"]}]}]));
        assert_eq!(NodeAffinity.filter(&by_name, &n), Ok(()));
        assert!(NodeAffinity.filter(&affinity(json!([{}])), &n).is_err());
    }
}
