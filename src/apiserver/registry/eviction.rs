//! `pods/<name>/eviction` (policy/v1 Eviction): deletes a pod unless that would break the
//! PodDisruptionBudget covering it, as upstream's `EvictionREST`. An allowed eviction takes
//! one disruption from the budget (recording the pod in `disruptedPods` for the disruption
//! controller); the pod is then marked with the DisruptionTarget condition and deleted with
//! the Eviction's `deleteOptions`.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::{check_preconditions, parse_rv, DeleteOptions, ListOptions, Registry, ResourceType, WriteOptions};
use crate::apiserver::selector::LabelSelector;
use crate::apiserver::status::{ApiError, Cause, Reason};
use crate::domain::disruption::{check_and_decrement, is_pod_ready, unready_pod_may_go, Refusal};
use crate::store::Revision;

/// How often a conflicting write is retried (upstream's `EvictionsRetry` steps).
const RETRIES: usize = 20;

const REFUSED: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn too_many_requests(message: String, retry_after: Option<u64>) -> ApiError {
    let mut e = ApiError::new(Reason::TooManyRequests, REFUSED);
    e.details.causes = vec![Cause { reason: "DisruptionBudget", field: String::new(), message }];
    e.details.retry_after = retry_after;
    e
}

/// The budget is newer than the controller's last look at it.
fn not_processed(pdb: &str) -> ApiError {
    too_many_requests(format!("The disruption budget {pdb} is still being processed by the server."), Some(10))
}

fn refusal_error(pdb: &str, r: Refusal) -> ApiError {
    match r {
        Refusal::NotProcessed => not_processed(pdb),
        Refusal::Negative => {
            ApiError::forbidden_because("policy", "poddisruptionbudget", pdb, "pdb disruptions allowed is negative")
        }
        Refusal::TooManyDisrupted => ApiError::forbidden_because(
            "policy",
            "poddisruptionbudget",
            pdb,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ),
        Refusal::Budget { desired, current } => too_many_requests(
            format!("The disruption budget {pdb} needs {desired} healthy pods and has {current} currently"),
            None,
        ),
    }
}

/// Terminal, pending or already terminating: its eviction disrupts nothing more.
fn can_ignore_budgets(pod: &Value) -> bool {
    matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed" | "Pending"))
        || is_terminating(pod)
}

fn is_terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null())
}

fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

impl Registry {
    /// Evicts pod `name`: `(HTTP code, Status)` of the answer, or the error. A pod two
    /// budgets cover is answered 500, as upstream does.
    pub async fn evict_pod(
        &self,
        pods: &ResourceType,
        pdbs: &ResourceType,
        namespace: &str,
        name: &str,
        eviction: &Value,
        dry_run: bool,
    ) -> Result<(u16, Value), ApiError> {
        if eviction.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("") != name {
            return Err(ApiError::bad_request("name in URL does not match name in Eviction object"));
        }
        let mut original = DeleteOptions { dry_run, ..Default::default() };
        if let Some(d) = eviction.get("deleteOptions").filter(|d| d.is_object()) {
            original.merge_json(d);
        }
        let rv_set = original.precondition_resource_version.is_some();

        // Pods whose eviction needs no budget go at once.
        let mut pod = Value::Null;
        for attempt in 0..RETRIES {
            pod = self.get(pods, Some(namespace), name).await?;
            if !can_ignore_budgets(&pod) {
                break;
            }
            let mut opts = original.clone();
            let terminal = matches!(pod.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
            if !terminal && !is_terminating(&pod) && !rv_set {
                // Not racing a pod that turns Running (and so budgeted) meanwhile.
                opts.precondition_resource_version =
                    pod.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
            }
            match self.mark_and_delete(pods, namespace, name, opts).await {
                Ok(_) => return Ok((201, success())),
                Err(e) if e.is_conflict() && !rv_set && attempt + 1 < RETRIES => continue,
                Err(e) => return Err(e),
            }
        }

        let labels = pod.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
        let list = self.list(pdbs, Some(namespace), &ListOptions::default()).await?;
        let covering: Vec<Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| {
                // A budget with no usable or an empty selector covers nothing here.
                LabelSelector::from_metav1_json(b.pointer("/spec/selector"))
                    .is_ok_and(|s| !s.is_everything() && s.matches(&labels))
            })
            .cloned()
            .collect();
        if covering.len() > 1 {
            return Ok((
                500,
                json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                    "code": 500,
                }),
            ));
        }
        let mut opts = original.clone();
        let mut budget_name = String::new();
        if let Some(budget) = covering.into_iter().next() {
            let mut pdb: PodDisruptionBudget =
                serde_json::from_value(budget).map_err(|e| ApiError::internal(format!("stored budget: {e}")))?;
            budget_name = pdb.metadata.name.clone().unwrap_or_default();
            let typed: Pod =
                serde_json::from_value(pod.clone()).map_err(|e| ApiError::internal(format!("stored pod: {e}")))?;
            if !is_pod_ready(&typed) && unready_pod_may_go(&pdb) {
                // An unready pod does not count as healthy: no disruption is taken, but the
                // pod must still be unready when it is deleted.
                opts.precondition_resource_version =
                    pod.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
            } else {
                self.take_disruption(pdbs, namespace, name, &mut pdb, opts.dry_run).await?;
            }
        }
        let unready_guard = opts.precondition_resource_version != original.precondition_resource_version;
        match self.mark_and_delete(pods, namespace, name, opts).await {
            Ok(_) => Ok((201, success())),
            Err(e) if e.is_conflict() && unready_guard => Err(not_processed(&budget_name)),
            Err(e) => Err(e),
        }
    }

    /// Marks the pod as a disruption target (condition DisruptionTarget, reason
    /// EvictionByEvictionAPI) through its status, then deletes it, as upstream's eviction:
    /// the delete's preconditions are checked against the latest pod before it is marked,
    /// and a resourceVersion precondition then names the marked pod.
    async fn mark_and_delete(
        &self,
        pods: &ResourceType,
        namespace: &str,
        name: &str,
        mut opts: DeleteOptions,
    ) -> Result<(), ApiError> {
        if !opts.dry_run {
            let mut marked = None;
            for _ in 0..RETRIES {
                let (mut pod, rv) = self.get_with_revision(pods, namespace, name).await?;
                check_preconditions(pods, name, &pod, rv, &opts)?;
                add_disruption_condition(&mut pod);
                match self.update(pods, Some(namespace), name, pod, true, &WriteOptions::default()).await {
                    Ok(updated) => {
                        marked = Some(updated);
                        break;
                    }
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(e),
                }
            }
            let Some(marked) = marked else {
                return Err(ApiError::timeout(format!("couldn't update pod {name:?} due to conflicts")));
            };
            if opts.precondition_resource_version.is_some() {
                opts.precondition_resource_version =
                    marked.pointer("/metadata/resourceVersion").and_then(Value::as_str).map(str::to_string);
            }
        }
        self.delete(pods, Some(namespace), name, &opts).await.map(drop)
    }

    /// The pod and the revision it was stored at.
    async fn get_with_revision(
        &self,
        pods: &ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<(Value, Revision), ApiError> {
        let pod = self.get(pods, Some(namespace), name).await?;
        let rv = parse_rv(pod.pointer("/metadata/resourceVersion").and_then(Value::as_str).unwrap_or("0"))?;
        Ok((pod, rv))
    }

    /// Takes one disruption from `pdb` for the pod, re-reading the budget on conflicts.
    async fn take_disruption(
        &self,
        pdbs: &ResourceType,
        namespace: &str,
        pod: &str,
        pdb: &mut PodDisruptionBudget,
        dry_run: bool,
    ) -> Result<(), ApiError> {
        let name = pdb.metadata.name.clone().unwrap_or_default();
        for attempt in 0..RETRIES {
            if attempt > 0 {
                let fresh = self.get(pdbs, Some(namespace), &name).await?;
                *pdb = serde_json::from_value(fresh).map_err(|e| ApiError::internal(format!("stored budget: {e}")))?;
            }
            let updated = check_and_decrement(pdb, pod, now_seconds(), dry_run).map_err(|r| refusal_error(&name, r))?;
            if dry_run {
                return Ok(());
            }
            let body = serde_json::to_value(&updated).map_err(|e| ApiError::internal(e.to_string()))?;
            match self.update(pdbs, Some(namespace), &name, body, true, &WriteOptions::default()).await {
                Ok(_) => return Ok(()),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::timeout(format!("couldn't update PodDisruptionBudget {name:?} due to conflicts")))
    }
}

/// Sets the pod's DisruptionTarget condition as upstream's `UpdatePodCondition` does: the
/// transition time moves only when the status changes.
fn add_disruption_condition(pod: &mut Value) {
    let now = json!(now_seconds().to_string());
    let new = json!({
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting",
        "lastProbeTime": null,
        "lastTransitionTime": now,
    });
    let status = &mut pod["status"];
    if !status.is_object() {
        *status = json!({});
    }
    let conditions = &mut status["conditions"];
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let Some(list) = conditions.as_array_mut() else { return };
    match list.iter_mut().find(|c| c["type"] == "DisruptionTarget") {
        Some(old) => {
            let kept = (old["status"] == "True").then(|| old["lastTransitionTime"].clone());
            *old = new;
            if let Some(t) = kept {
                old["lastTransitionTime"] = t;
            }
        }
        None => list.push(new),
    }
}

/// Now, in whole seconds as upstream's `metav1.Time` is written.
fn now_seconds() -> Timestamp {
    let now = Timestamp::now();
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_upstreams_statuses() {
        let s = refusal_error("web", Refusal::Budget { desired: 2, current: 2 }).to_status();
        assert_eq!(
            s,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Cannot evict pod as it would violate the pod's disruption budget.",
                "reason": "TooManyRequests", "code": 429,
                "details": {"causes": [{
                    "reason": "DisruptionBudget",
                    "message": "The disruption budget web needs 2 healthy pods and has 2 currently",
                }]},
            })
        );
        let s = refusal_error("web", Refusal::NotProcessed).to_status();
        assert_eq!(s["details"]["retryAfterSeconds"], 10);
        assert_eq!(
            s["details"]["causes"][0]["message"],
            "The disruption budget web is still being processed by the server."
        );
        let s = refusal_error("web", Refusal::Negative).to_status();
        assert_eq!(s["code"], 403);
        assert_eq!(
            s["message"],
            "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative"
        );
    }

    #[test]
    fn pending_terminal_and_terminating_pods_skip_the_budget() {
        for (pod, skip) in [
            (json!({"status": {"phase": "Pending"}}), true),
            (json!({"status": {"phase": "Succeeded"}}), true),
            (json!({"status": {"phase": "Failed"}}), true),
            (json!({"status": {"phase": "Running"}}), false),
            (json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}}), true),
        ] {
            assert_eq!(can_ignore_budgets(&pod), skip, "{pod}");
        }
    }
}
