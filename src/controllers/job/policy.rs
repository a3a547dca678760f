//! A Job's pod failure policy (what a failed pod means: fail the Job, fail its index,
//! ignore it, or count it against the back-off limit) and its success policy (which
//! succeeded indexes make the Job succeed early), as upstream evaluates them.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, SuccessPolicy};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use super::indexes::{self, Indexes};

/// What the first matching rule of a pod failure policy says about a failed pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailureAction {
    /// The Job fails, with this message.
    FailJob(String),
    /// The pod's index fails (backoffLimitPerIndex).
    FailIndex,
    /// The failure is not counted.
    Ignore,
    /// The failure counts, as without a policy.
    Count,
}

impl FailureAction {
    /// Whether the failure counts against the back-off limits.
    pub fn counts(&self) -> bool {
        *self != FailureAction::Ignore
    }
}

/// The action of the first rule that matches the failed `pod`; `None` if no rule does (the
/// failure then counts).
pub fn match_failure_policy(policy: &PodFailurePolicy, pod: &Pod) -> Option<FailureAction> {
    let status = pod.status.as_ref()?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod.metadata.name.as_deref().unwrap_or("");
    for (i, rule) in policy.rules.iter().enumerate() {
        let matched = if let Some(req) = &rule.on_exit_codes {
            let statuses =
                status.init_container_statuses.iter().flatten().chain(status.container_statuses.iter().flatten());
            statuses.filter(|c| req.container_name.as_deref().is_none_or(|n| n == c.name)).find_map(|c| {
                let code = exit_code(c).filter(|&code| code != 0)?;
                let listed = req.values.contains(&code);
                let hit = match req.operator.as_str() {
                    "In" => listed,
                    "NotIn" => !listed,
                    _ => false,
                };
                hit.then(|| {
                    format!(
                        "Container {} for pod {ns}/{name} failed with exit code {code} matching {} rule at index {i}",
                        c.name, rule.action
                    )
                })
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = status.conditions.iter().flatten();
            conditions.clone().find_map(|c| {
                patterns.iter().any(|p| p.type_ == c.type_ && p.status == c.status).then(|| {
                    format!("Pod {ns}/{name} has condition {} matching {} rule at index {i}", c.type_, rule.action)
                })
            })
        } else {
            None
        };
        if let Some(message) = matched {
            return Some(match rule.action.as_str() {
                "FailJob" => FailureAction::FailJob(message),
                "FailIndex" => FailureAction::FailIndex,
                "Ignore" => FailureAction::Ignore,
                _ => FailureAction::Count,
            });
        }
    }
    None
}

fn exit_code(c: &ContainerStatus) -> Option<i32> {
    c.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

/// The message of the success condition if a rule of `policy` is met by `succeeded`.
pub fn match_success_policy(policy: &SuccessPolicy, completions: i32, succeeded: &Indexes) -> Option<String> {
    if succeeded.is_empty() {
        return None;
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let met = match &rule.succeeded_indexes {
            Some(text) => {
                let required = indexes::parse(text, completions);
                if required.is_empty() {
                    continue;
                }
                let matched = required.intersection(succeeded).count();
                match rule.succeeded_count {
                    Some(n) => matched >= n.max(0) as usize,
                    None => matched == required.len(),
                }
            }
            None => rule.succeeded_count.is_some_and(|n| succeeded.len() >= n.max(0) as usize),
        };
        if met {
            return Some(format!("Matched rules at index {i}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::{
        PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
        SuccessPolicyRule,
    };
    use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn failed_pod(codes: &[(&str, i32)], conditions: &[(&str, &str)]) -> Pod {
        Pod {
            metadata: ObjectMeta { name: Some("p".into()), namespace: Some("ns".into()), ..Default::default() },
            spec: None,
            status: Some(PodStatus {
                phase: Some("Failed".into()),
                container_statuses: Some(
                    codes
                        .iter()
                        .map(|(n, code)| ContainerStatus {
                            name: n.to_string(),
                            state: Some(ContainerState {
                                terminated: Some(ContainerStateTerminated { exit_code: *code, ..Default::default() }),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .collect(),
                ),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(t, s)| PodCondition {
                            type_: t.to_string(),
                            status: s.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
        }
    }

    fn exit_rule(action: &str, container: Option<&str>, op: &str, values: &[i32]) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                container_name: container.map(Into::into),
                operator: op.into(),
                values: values.to_vec(),
            }),
            on_pod_conditions: None,
        }
    }

    fn condition_rule(action: &str, type_: &str) -> PodFailurePolicyRule {
        PodFailurePolicyRule {
            action: action.into(),
            on_exit_codes: None,
            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                type_: type_.into(),
                status: "True".into(),
            }]),
        }
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let policy = PodFailurePolicy {
            rules: vec![
                condition_rule("Ignore", "DisruptionTarget"),
                exit_rule("FailJob", Some("main"), "In", &[42]),
                exit_rule("FailIndex", None, "In", &[7]),
                exit_rule("Count", None, "NotIn", &[0, 1]),
            ],
        };
        let cases: Vec<(Pod, Option<FailureAction>)> = vec![
            (failed_pod(&[("main", 42)], &[("DisruptionTarget", "True")]), Some(FailureAction::Ignore)),
            (
                failed_pod(&[("main", 42)], &[]),
                Some(FailureAction::FailJob(
                    "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1".into(),
                )),
            ),
            // The rule names another container.
            (failed_pod(&[("side", 42)], &[]), Some(FailureAction::Count)),
            (failed_pod(&[("side", 7)], &[]), Some(FailureAction::FailIndex)),
            (failed_pod(&[("main", 1)], &[]), None),
            // Exit code 0 never matches, even NotIn.
            (failed_pod(&[("main", 0)], &[("DisruptionTarget", "False")]), None),
        ];
        for (pod, want) in cases {
            assert_eq!(match_failure_policy(&policy, &pod), want, "{:?}", pod.status);
        }
        let by_condition = PodFailurePolicy { rules: vec![condition_rule("FailJob", "ConfigIssue")] };
        assert_eq!(
            match_failure_policy(&by_condition, &failed_pod(&[], &[("ConfigIssue", "True")])),
            Some(FailureAction::FailJob("Pod ns/p has condition ConfigIssue matching FailJob rule at index 0".into()))
        );
    }

    fn rule(indexes: Option<&str>, count: Option<i32>) -> SuccessPolicyRule {
        SuccessPolicyRule { succeeded_indexes: indexes.map(Into::into), succeeded_count: count }
    }

    #[test]
    fn success_rules_match_on_indexes_and_counts() {
        let set = |v: &[i32]| v.iter().copied().collect::<Indexes>();
        let policy =
            SuccessPolicy { rules: vec![rule(Some("0,1"), None), rule(Some("2-5"), Some(2)), rule(None, Some(4))] };
        let cases: &[(&[i32], Option<&str>)] = &[
            (&[], None),
            (&[0], None),
            (&[0, 1], Some("Matched rules at index 0")),
            (&[3, 9], None),
            (&[3, 5], Some("Matched rules at index 1")),
            (&[0, 6, 7, 8], Some("Matched rules at index 2")),
        ];
        for (succeeded, want) in cases {
            assert_eq!(match_success_policy(&policy, 10, &set(succeeded)).as_deref(), *want, "{succeeded:?}");
        }
    }
}
