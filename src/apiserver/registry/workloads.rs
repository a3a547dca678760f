//! Upstream's defaulting for pods and the workloads that template them.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::{decode, parse_rv, Registry, ResourceType, Strategy, WriteOptions};
use crate::apiserver::status::{ApiError, Cause, Reason, Subject};
use crate::domain::names::{dns1123_label_error, is_dns1123_label};
use crate::domain::pod::{default_spec, qos_class_of_spec, update_condition};
use crate::domain::time::now_rfc3339;
use crate::store::{KeyRange, RangeOptions, Store};

fn obj_mut<'a>(v: &'a mut Value, field: &str) -> &'a mut Map<String, Value> {
    if !v.get(field).is_some_and(Value::is_object) {
        v[field] = json!({});
    }
    match v.get_mut(field) {
        Some(Value::Object(m)) => m,
        _ => unreachable!("just made an object"),
    }
}

fn default(m: &mut Map<String, Value>, key: &str, value: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), value);
    }
}

fn default_template(template: &mut Value) {
    default_spec(template.pointer_mut("/spec").unwrap_or(&mut Value::Null));
}

fn template_spec_causes(obj: &Value, at: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    let spec = obj.pointer(at);
    let containers = spec.and_then(|s| s.get("containers")).and_then(Value::as_array);
    match containers {
        Some(cs) if !cs.is_empty() => {
            let field = at.trim_start_matches('/').replace('/', ".");
            let mut names = std::collections::HashSet::new();
            for (i, c) in cs.iter().enumerate() {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    out.push(Cause::required(format!("{field}.containers[{i}].name"), ""));
                } else if !is_dns1123_label(name) {
                    out.push(Cause::invalid(format!("{field}.containers[{i}].name"), name, &dns1123_label_error()));
                } else if !names.insert(name) {
                    out.push(Cause::duplicate(format!("{field}.containers[{i}].name"), name));
                }
                if c.get("image").and_then(Value::as_str).unwrap_or("").trim().is_empty() {
                    out.push(Cause::required(format!("{field}.containers[{i}].image"), ""));
                }
            }
            if let Some(rp) = spec.and_then(|s| s.get("restartPolicy")).and_then(Value::as_str) {
                if !matches!(rp, "Always" | "OnFailure" | "Never") {
                    out.push(Cause::not_supported(
                        format!("{field}.restartPolicy"),
                        rp,
                        &["Always", "Never", "OnFailure"],
                    ));
                }
            }
        }
        _ => out.push(Cause::required(format!("{}.containers", at.trim_start_matches('/').replace('/', ".")), "")),
    }
    out
}

pub struct PodStrategy;

/// The annotation the kubelet puts on the API copy of a static pod.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// The account a pod runs as when it names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations").and_then(|a| a.get(MIRROR_ANNOTATION)).is_some()
}

/// Upstream's ServiceAccount admission, mutating half: a pod that is not a mirror pod runs
/// as `default` unless it names an account, and the deprecated `serviceAccount` repeats it.
fn default_service_account(pod: &mut Value) {
    if is_mirror(pod) {
        return;
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let named = spec.get("serviceAccountName").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string);
    let sa = named.unwrap_or_else(|| DEFAULT_SERVICE_ACCOUNT.to_string());
    spec.insert("serviceAccountName".into(), json!(sa));
    spec.insert("serviceAccount".into(), json!(sa));
}

/// 403 as upstream's admission plugins refuse a pod.
fn pod_forbidden(name: &str, reason: String) -> ApiError {
    let mut e = ApiError::new(Reason::Forbidden, format!("pods \"{name}\" is forbidden: {reason}"));
    e.details.subject = Some(Subject { group: String::new(), kind: "pods".into(), name: name.into() });
    e
}

/// Upstream's ServiceAccount admission, on pod creates: the pod's account must exist (a
/// mirror pod may name none: the kubelet cannot give it one). Then, as upstream, the pod
/// takes the account's image pull secrets when it names none, and, unless the pod or else
/// the account sets `automountServiceAccountToken: false`, gets the API access volume.
async fn admit_service_account(store: &Arc<dyn Store>, pod: &mut Value) -> Result<(), ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let sa = pod.pointer("/spec/serviceAccountName").and_then(Value::as_str).unwrap_or("");
    if is_mirror(pod) {
        if !sa.is_empty() {
            return Err(pod_forbidden(name, "a mirror pod may not reference service accounts".into()));
        }
        return Ok(());
    }
    let ns = pod.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
    let (_, found) = store.get(format!("/registry/serviceaccounts/{ns}/{sa}").as_bytes(), None).await?;
    let Some(kv) = found else {
        return Err(pod_forbidden(
            name,
            format!("error looking up service account {ns}/{sa}: serviceaccount \"{sa}\" not found"),
        ));
    };
    let account: Value = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    let has_pull_secrets = spec.get("imagePullSecrets").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    if !has_pull_secrets {
        if let Some(secrets) = account.get("imagePullSecrets").and_then(Value::as_array).filter(|a| !a.is_empty()) {
            spec.insert("imagePullSecrets".into(), Value::Array(secrets.clone()));
        }
    }
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| account.get("automountServiceAccountToken").and_then(Value::as_bool))
        .unwrap_or(true);
    if automount {
        mount_api_access(spec);
    }
    Ok(())
}

/// Where containers find their service-account token, CA and namespace.
pub const API_ACCESS_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The name prefix of the volume that holds them.
const API_ACCESS_VOLUME_PREFIX: &str = "kube-api-access-";
/// The token's lifetime in the volume: a value the API server recognises, to issue a
/// longer-lived token that says when to renew (upstream's WarnOnlyBoundTokenExpirationSeconds).
pub const API_ACCESS_TOKEN_SECONDS: i64 = 3607;

/// Upstream's mounting of the API access volume: each container and init container without
/// a mount at [`API_ACCESS_MOUNT_PATH`] mounts it read-only, and the pod gets the projected
/// volume (token, `kube-root-ca.crt`'s `ca.crt`, the namespace) unless it has one already.
fn mount_api_access(spec: &mut Map<String, Value>) {
    let existing = spec.get("volumes").and_then(Value::as_array).and_then(|vols| {
        vols.iter()
            .filter_map(|v| v.get("name").and_then(Value::as_str))
            .find(|n| n.starts_with(API_ACCESS_VOLUME_PREFIX))
            .map(str::to_string)
    });
    let volume = existing.clone().unwrap_or_else(|| super::meta::generate_name(API_ACCESS_VOLUME_PREFIX));
    let mount = json!({"name": volume, "readOnly": true, "mountPath": API_ACCESS_MOUNT_PATH});
    let mut needed = false;
    for list in ["initContainers", "containers"] {
        for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else { continue };
            if mounts.iter().any(|m| m.get("mountPath").and_then(Value::as_str) == Some(API_ACCESS_MOUNT_PATH)) {
                continue;
            }
            mounts.push(mount.clone());
            needed = true;
        }
    }
    if existing.is_some() || !needed {
        return;
    }
    let vols = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(vols) = vols.as_array_mut() {
        vols.push(json!({
            "name": volume,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": API_ACCESS_TOKEN_SECONDS, "path": "token"}},
                    {"configMap": {"name": crate::controllers::rootca::CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            },
        }));
    }
}

/// How long a pod stays on a node that went not-ready or unreachable, unless it says
/// otherwise (upstream's `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Upstream's DefaultTolerationSeconds admission, on pod creates and updates: a pod that
/// does not tolerate `node.kubernetes.io/not-ready:NoExecute`, or the same for
/// `unreachable`, gets a toleration of it for 300 s. A toleration with that key or no key,
/// and effect NoExecute or none, counts whatever its operator, value or seconds.
pub fn default_toleration_seconds(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return };
    let existing = spec.get("tolerations").and_then(Value::as_array).cloned().unwrap_or_default();
    let tolerated = |taint: &str| {
        existing.iter().any(|t| {
            let field = |f: &str| t.get(f).and_then(Value::as_str).unwrap_or("");
            (field("key") == taint || field("key").is_empty()) && matches!(field("effect"), "NoExecute" | "")
        })
    };
    let mut added = Vec::new();
    for taint in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        if !tolerated(taint) {
            added.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_TOLERATION_SECONDS}));
        }
    }
    if added.is_empty() {
        return;
    }
    let mut all = existing;
    all.extend(added);
    spec.insert("tolerations".into(), Value::Array(all));
}
/// What a pod gets when no PriorityClass says otherwise.
const DEFAULT_PREEMPTION_POLICY: &str = "PreemptLowerPriority";

/// The PriorityClass a pod naming none gets: the global default (the lowest value if
/// several claim to be), or none (priority 0).
async fn default_priority_class(store: &Arc<dyn Store>) -> Result<Option<Value>, ApiError> {
    let range = KeyRange::prefix("/registry/priorityclasses/");
    let found = store.range(&range, RangeOptions::default()).await?;
    let classes = found.kvs.iter().filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok());
    Ok(classes
        .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0)))
}

/// Upstream's Priority admission: a pod's priority and preemption policy come from its
/// PriorityClass (or the global default one); a pod may not state others itself.
async fn admit_priority(store: &Arc<dyn Store>, pod: &mut Value) -> Result<(), ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let named = pod.pointer("/spec/priorityClassName").and_then(Value::as_str).unwrap_or("").to_string();
    let class = if named.is_empty() {
        default_priority_class(store).await?
    } else {
        let (_, found) = store.get(format!("/registry/priorityclasses/{named}").as_bytes(), None).await?;
        match found {
            Some(kv) => Some(serde_json::from_slice::<Value>(&kv.value).unwrap_or(Value::Null)),
            None => return Err(pod_forbidden(&name, format!("no PriorityClass with name {named} was found"))),
        }
    };
    let priority = class.as_ref().and_then(|c| c.get("value")).and_then(Value::as_i64).unwrap_or(0);
    let policy = class
        .as_ref()
        .and_then(|c| c.get("preemptionPolicy"))
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_PREEMPTION_POLICY)
        .to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else { return Ok(()) };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64).filter(|g| *g != priority) {
        return Err(pod_forbidden(
            &name,
            format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"),
        ));
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str).filter(|g| *g != policy) {
        return Err(pod_forbidden(
            &name,
            format!("the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"),
        ));
    }
    if let Some(c) = class.as_ref().and_then(|c| c.pointer("/metadata/name")) {
        spec.insert("priorityClassName".into(), c.clone());
    }
    spec.insert("priority".into(), json!(priority));
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}

#[async_trait::async_trait]
impl Strategy for PodStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        default_spec(obj.get_mut("spec").unwrap_or(&mut Value::Null));
        default_service_account(obj);
        let qos = qos_class_of_spec(obj.get("spec").unwrap_or(&Value::Null));
        obj["status"] = json!({"phase": "Pending", "qosClass": qos.as_str()});
        // A gated pod says so from the start (upstream's applySchedulingGatedCondition).
        if obj.pointer("/spec/schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty()) {
            obj["status"]["conditions"] = json!([{
                "type": "PodScheduled",
                "status": "False",
                "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
                "lastProbeTime": null,
                "lastTransitionTime": crate::domain::time::now_rfc3339(),
            }]);
        }
        default_toleration_seconds(obj);
    }
    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        default_toleration_seconds(new);
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        template_spec_causes(obj, "/spec")
    }
    /// Admission that needs other objects: the pod's service account must exist, and its
    /// priority comes from its PriorityClass.
    async fn allocate(&self, store: &Arc<dyn Store>, obj: &mut Value, _dry_run: bool) -> Result<(), ApiError> {
        admit_service_account(store, obj).await?;
        admit_priority(store, obj).await
    }
    /// A pod on a node gets its grace period (the request's, else its own, else 30 s) for
    /// the kubelet to stop it; an unscheduled pod goes at once.
    fn deletion_grace(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        let scheduled = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        if !scheduled {
            return None;
        }
        Some(
            requested
                .or_else(|| obj.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
                .unwrap_or(30)
                .max(0),
        )
    }
    /// While a scheduled pod's grace period runs, only the kubelet's final delete removes it.
    fn holds_deletion(&self, obj: &mut Value) -> bool {
        let scheduled = obj.pointer("/spec/nodeName").and_then(Value::as_str).is_some_and(|n| !n.is_empty());
        scheduled && obj.pointer("/metadata/deletionGracePeriodSeconds").and_then(Value::as_i64).is_some_and(|g| g > 0)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = self.validate(new);
        // Only images and a few fields of a pod's spec may change.
        let strip = |v: &Value| {
            let mut s = v.get("spec").cloned().unwrap_or(Value::Null);
            if let Some(cs) = s.get_mut("containers").and_then(Value::as_array_mut) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
            if let Some(m) = s.as_object_mut() {
                for f in [
                    "activeDeadlineSeconds",
                    "tolerations",
                    "terminationGracePeriodSeconds",
                    "nodeName",
                    "schedulingGates",
                ] {
                    m.remove(f);
                }
            }
            s
        };
        // Scheduling gates may only be taken away.
        let gates = |v: &Value| -> Vec<String> {
            let gates = v.pointer("/spec/schedulingGates").and_then(Value::as_array).into_iter().flatten();
            gates.filter_map(|g| g.get("name").and_then(Value::as_str).map(str::to_string)).collect()
        };
        let before = gates(old);
        if let Some(added) = gates(new).into_iter().find(|g| !before.contains(g)) {
            out.push(Cause::forbidden(
                "spec.schedulingGates",
                &format!("only deletion is allowed, but found new scheduling gate '{added}'"),
            ));
        }
        if strip(new) != strip(old) {
            out.push(Cause::forbidden("spec", "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"));
        }
        out
    }
}

/// What a Binding asks: the pod (by name, with optional preconditions) and the node.
fn binding_causes(binding: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let kind = binding.pointer("/target/kind").and_then(Value::as_str).unwrap_or("");
    if !kind.is_empty() && kind != "Node" {
        out.push(Cause::not_supported("target.kind", kind, &["Node", "<empty>"]));
    }
    if binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("").is_empty() {
        out.push(Cause::required("target.name", ""));
    }
    out
}

impl Registry {
    /// `pods/<name>/binding` (and the `bindings` collection): assigns an unassigned pod to a
    /// node, merges the Binding's annotations into the pod and marks it PodScheduled, as
    /// upstream's BindingREST; answers upstream's `Status` of success.
    pub async fn bind_pod(
        &self,
        pods: &ResourceType,
        namespace: &str,
        url_name: Option<&str>,
        binding: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let name = binding.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
        if url_name.is_some_and(|n| n != name) {
            return Err(ApiError::bad_request("name in URL does not match name in Binding object"));
        }
        if binding
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty() && n != namespace)
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let causes = binding_causes(binding);
        if !causes.is_empty() {
            // Upstream returns these as a plain error, which its handler answers with 500.
            let list: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
            let message = if list.len() == 1 { list[0].clone() } else { format!("[{}]", list.join(", ")) };
            return Err(ApiError::new(Reason::Unknown, message));
        }
        let node = binding.pointer("/target/name").and_then(Value::as_str).unwrap_or("");
        let uid = binding.pointer("/metadata/uid").and_then(Value::as_str).filter(|s| !s.is_empty());
        let rv = binding.pointer("/metadata/resourceVersion").and_then(Value::as_str).filter(|s| !s.is_empty());
        let annotations =
            binding.pointer("/metadata/annotations").and_then(Value::as_object).cloned().unwrap_or_default();
        let refused = |detail: String| ApiError::conflict("", "pods/binding", name, &detail);
        let key = pods.key(Some(namespace), name);
        for _ in 0..16 {
            let (_, current) = self.store.get(key.as_bytes(), None).await?;
            let current = current.ok_or_else(|| ApiError::not_found("", "pods", name))?;
            let mut pod = decode(&current.value, current.mod_revision)?;
            if let Some(uid) = uid {
                let actual = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
                if actual != uid {
                    return Err(refused(format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                    )));
                }
            }
            if let Some(rv) = rv {
                if parse_rv(rv)? != current.mod_revision {
                    return Err(ApiError::stale("", "pods", name));
                }
            }
            if pod.pointer("/metadata/deletionTimestamp").is_some_and(|v| !v.is_null()) {
                return Err(refused(format!("pod {name} is being deleted, cannot be assigned to a host")));
            }
            let assigned = pod.pointer("/spec/nodeName").and_then(Value::as_str).unwrap_or("");
            if !assigned.is_empty() {
                return Err(refused(format!("pod {name} is already assigned to node {assigned:?}")));
            }
            if pod.pointer("/spec/schedulingGates").and_then(Value::as_array).is_some_and(|g| !g.is_empty()) {
                return Err(refused(format!("pod {name} has non-empty .spec.schedulingGates")));
            }
            pod["spec"]["nodeName"] = json!(node);
            if !annotations.is_empty() {
                if !pod.pointer("/metadata/annotations").is_some_and(Value::is_object) {
                    pod["metadata"]["annotations"] = json!({});
                }
                for (k, v) in &annotations {
                    pod["metadata"]["annotations"][k] = v.clone();
                }
            }
            update_condition(&mut pod, json!({"type": "PodScheduled", "status": "True"}), &now_rfc3339());
            let success =
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201});
            if opts.dry_run {
                return Ok(success);
            }
            match self.write_update(pods, name, key.clone(), pod, current.mod_revision).await {
                Ok(_) => return Ok(success),
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::stale("", "pods", name))
    }
}

/// Deployments, ReplicaSets, StatefulSets, DaemonSets, ReplicationControllers, Jobs,
/// CronJobs and PodTemplates: their own defaults and those of their pod template.
pub struct WorkloadStrategy {
    pub kind: &'static str,
}

fn percent_or(m: &mut Map<String, Value>, key: &str, v: Value) {
    default(m, key, v);
}

#[async_trait::async_trait]
impl Strategy for WorkloadStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        self.defaults(obj);
        if self.kind == "Job" {
            generate_job_selector(obj);
        }
    }
    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        self.defaults(new);
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let at = match self.kind {
            "CronJob" => "/spec/jobTemplate/spec/template/spec",
            "PodTemplate" => "/template/spec",
            _ => "/spec/template/spec",
        };
        let mut out = template_spec_causes(obj, at);
        if matches!(self.kind, "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet") {
            let sel = obj.pointer("/spec/selector");
            let labels = obj.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
            match sel.and_then(|s| s.get("matchLabels")).and_then(Value::as_object) {
                None if sel.and_then(|s| s.get("matchExpressions")).is_none() => {
                    out.push(Cause::required("spec.selector", ""))
                }
                Some(ml) => {
                    let ok = ml.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
                    if !ok {
                        out.push(Cause::invalid(
                            "spec.template.metadata.labels",
                            labels.map(|l| Value::Object(l.clone())).unwrap_or(Value::Null),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
                None => {}
            }
        }
        if self.kind == "Job" {
            out.extend(job_selector_causes(obj));
            out.extend(super::validation::job_template(obj));
        }
        if self.kind == "CronJob" {
            let sched = obj.pointer("/spec/schedule").and_then(Value::as_str).unwrap_or("");
            if sched.trim().is_empty() {
                out.push(Cause::required("spec.schedule", ""));
            } else {
                out.extend(cron_causes(obj, sched));
            }
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        use super::validation::{go_label_selector, go_optional_int, immutable, semantically_equal};
        let mut out = self.validate(new);
        let same = |ptr: &str| semantically_equal(new.pointer(ptr), old.pointer(ptr));
        match self.kind {
            "Deployment" | "ReplicaSet" | "DaemonSet" if !same("/spec/selector") => {
                out.push(immutable("spec.selector", go_label_selector(new.pointer("/spec/selector"))));
            }
            "StatefulSet" => out.extend(statefulset_spec_update(new, old)),
            "Job" => {
                if !same("/spec/completions") {
                    let indexed = new.pointer("/spec/completionMode").and_then(Value::as_str) == Some("Indexed");
                    match new.pointer("/spec/completions").and_then(Value::as_i64) {
                        // Elastic Indexed Jobs: completions moves with parallelism.
                        Some(c) if indexed && Some(c) != new.pointer("/spec/parallelism").and_then(Value::as_i64) => {
                            out.push(super::validation::invalid_raw(
                                "spec.completions",
                                c,
                                "can only be modified in tandem with spec.parallelism",
                            ))
                        }
                        _ if indexed => {}
                        _ => out.push(immutable("spec.completions", go_optional_int(new.pointer("/spec/completions")))),
                    }
                }
                if !same("/spec/selector") {
                    out.push(immutable("spec.selector", go_label_selector(new.pointer("/spec/selector"))));
                }
                if !job_template_unchanged(new, old) {
                    // Upstream prints the whole internal PodTemplateSpec, Go struct and all;
                    // k3rs names its type and leaves the dump out.
                    out.push(immutable("spec.template", "core.PodTemplateSpec{...}"));
                }
                for f in ["completionMode", "podFailurePolicy", "backoffLimitPerIndex"] {
                    if !same(&format!("/spec/{f}")) {
                        let v = new.pointer(&format!("/spec/{f}"));
                        let shown = match v {
                            Some(Value::String(s)) => format!("{s:?}"),
                            Some(Value::Number(n)) => n.to_string(),
                            None | Some(Value::Null) => "null".to_string(),
                            Some(_) => "batch.PodFailurePolicy{...}".to_string(),
                        };
                        out.push(immutable(format!("spec.{f}"), shown));
                    }
                }
            }
            _ => {}
        }
        out
    }
}

impl WorkloadStrategy {
    fn defaults(&self, obj: &mut Value) {
        match self.kind {
            "PodTemplate" => {
                if let Some(t) = obj.get_mut("template") {
                    default_template(t);
                }
                return;
            }
            "CronJob" => {
                let spec = obj_mut(obj, "spec");
                default(spec, "concurrencyPolicy", json!("Allow"));
                default(spec, "suspend", json!(false));
                default(spec, "successfulJobsHistoryLimit", json!(3));
                default(spec, "failedJobsHistoryLimit", json!(1));
                if let Some(js) = obj.pointer_mut("/spec/jobTemplate/spec") {
                    job_defaults(js, false);
                }
                return;
            }
            "Job" => {
                if let Some(spec) = obj.get_mut("spec") {
                    job_defaults(spec, true);
                }
                return;
            }
            _ => {}
        }
        let kind = self.kind;
        let template_labels = obj.pointer("/spec/template/metadata/labels").cloned();
        let spec = obj_mut(obj, "spec");
        if kind != "DaemonSet" {
            default(spec, "replicas", json!(1));
        }
        if kind == "ReplicationController" {
            if let Some(l) = template_labels.clone() {
                default(spec, "selector", l);
            }
        }
        match kind {
            "Deployment" => {
                default(spec, "strategy", json!({}));
                if let Some(Value::Object(st)) = spec.get_mut("strategy") {
                    default(st, "type", json!("RollingUpdate"));
                    if st.get("type") == Some(&json!("RollingUpdate")) {
                        let ru = st.entry("rollingUpdate").or_insert_with(|| json!({}));
                        if let Some(ru) = ru.as_object_mut() {
                            percent_or(ru, "maxUnavailable", json!("25%"));
                            percent_or(ru, "maxSurge", json!("25%"));
                        }
                    }
                }
                default(spec, "revisionHistoryLimit", json!(10));
                default(spec, "progressDeadlineSeconds", json!(600));
            }
            "StatefulSet" => {
                default(spec, "podManagementPolicy", json!("OrderedReady"));
                default(spec, "updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
                default(spec, "revisionHistoryLimit", json!(10));
                default(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
            }
            "DaemonSet" => {
                default(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
                );
                default(spec, "revisionHistoryLimit", json!(10));
            }
            _ => {}
        }
        if let Some(t) = obj.pointer_mut("/spec/template") {
            default_template(t);
        }
    }
}

/// A StatefulSet's spec may change only in the fields upstream lists.
fn statefulset_spec_update(new: &Value, old: &Value) -> Vec<Cause> {
    const MUTABLE: &[&str] = &[
        "replicas",
        "ordinals",
        "template",
        "updateStrategy",
        "revisionHistoryLimit",
        "persistentVolumeClaimRetentionPolicy",
        "minReadySeconds",
    ];
    let fixed = |v: &Value| {
        let mut spec = v.get("spec").cloned().unwrap_or(Value::Null);
        if let Some(m) = spec.as_object_mut() {
            m.retain(|k, _| !MUTABLE.contains(&k.as_str()));
        }
        spec
    };
    if super::validation::semantically_equal(Some(&fixed(new)), Some(&fixed(old))) {
        return Vec::new();
    }
    vec![Cause::forbidden(
        "spec",
        "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
    )]
}

/// Whether a Job's pod template is unchanged as upstream judges it: while the Job is
/// suspended and has never started, its scheduling directives (node affinity, node
/// selector, tolerations, scheduling gates) and the template's labels and annotations may
/// change.
fn job_template_unchanged(new: &Value, old: &Value) -> bool {
    let suspended = new.pointer("/spec/suspend").and_then(Value::as_bool) == Some(true);
    let never_started = old.pointer("/status/startTime").is_none_or(Value::is_null);
    let relaxed = |t: Option<&Value>| {
        let mut t = t.cloned().unwrap_or(Value::Null);
        if suspended && never_started {
            if let Some(m) = t.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("labels");
                m.remove("annotations");
            }
            if let Some(spec) = t.get_mut("spec").and_then(Value::as_object_mut) {
                for f in ["nodeSelector", "tolerations", "schedulingGates"] {
                    spec.remove(f);
                }
                if let Some(a) = spec.get_mut("affinity").and_then(Value::as_object_mut) {
                    a.remove("nodeAffinity");
                }
            }
        }
        t
    };
    super::validation::semantically_equal(
        Some(&relaxed(new.pointer("/spec/template"))),
        Some(&relaxed(old.pointer("/spec/template"))),
    )
}

/// Upstream's CronJob rules: a schedule robfig/cron parses, no `TZ=` in it, and a
/// `timeZone` that names a known zone.
fn cron_causes(obj: &Value, sched: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    if let Err(e) = crate::domain::cron::Schedule::parse(sched) {
        out.push(Cause::invalid("spec.schedule", sched, &e.to_string()));
    }
    if sched.contains("TZ") {
        out.push(Cause::invalid(
            "spec.schedule",
            sched,
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    }
    if let Some(tz) = obj.pointer("/spec/timeZone").and_then(Value::as_str) {
        let bad_part = tz.split('/').any(|p| {
            p == "."
                || p == ".."
                || p.starts_with('-')
                || p.is_empty()
                || !p.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        });
        let problem = if tz.is_empty() {
            Some("timeZone must be nil or non-empty string".to_string())
        } else if bad_part {
            Some(format!("unknown time zone {tz}"))
        } else if tz.eq_ignore_ascii_case("Local") {
            Some("timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones".to_string())
        } else {
            crate::util::tz::load(tz).err().map(|e| e.to_string())
        };
        if let Some(p) = problem {
            out.push(Cause::invalid("spec.timeZone", tz, &p));
        }
    }
    out
}

/// The label a Job's pods carry with its UID, and its generated selector selects on.
pub const JOB_CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The label a Job's pods carry with its name.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Upstream's Job strategy gives a new Job, unless `spec.manualSelector` is true, a selector
/// on its own UID and puts that UID and the Job's name (in both the current and the legacy
/// unprefixed label keys) on its pod template. Labels the user already set are kept: a
/// conflicting one then fails validation, as upstream's does.
fn generate_job_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let name = obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null);
    let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    let spec = obj_mut(obj, "spec");
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if let Some(t) = template.as_object_mut() {
        let meta = t.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = meta.as_object_mut() {
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if !labels.is_object() {
                *labels = json!({});
            }
            if let Some(l) = labels.as_object_mut() {
                for (k, v) in [
                    ("job-name", &name),
                    (JOB_NAME_LABEL, &name),
                    ("controller-uid", &uid),
                    (JOB_CONTROLLER_UID_LABEL, &uid),
                ] {
                    l.entry(k).or_insert_with(|| v.clone());
                }
            }
        }
    }
    let selector = spec.entry("selector").or_insert_with(|| json!({}));
    if !selector.is_object() {
        *selector = json!({});
    }
    if let Some(s) = selector.as_object_mut() {
        let ml = s.entry("matchLabels").or_insert_with(|| json!({}));
        if !ml.is_object() {
            *ml = json!({});
        }
        if let Some(ml) = ml.as_object_mut() {
            ml.entry(JOB_CONTROLLER_UID_LABEL).or_insert(uid);
        }
    }
}

/// A Job's selector must be there and select its own template (upstream's `ValidateJob`).
fn job_selector_causes(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let Some(sel) = obj.pointer("/spec/selector").filter(|s| !s.is_null()) else {
        out.push(Cause::required("spec.selector", ""));
        return out;
    };
    let labels = obj.pointer("/spec/template/metadata/labels").and_then(Value::as_object);
    let empty = Map::new();
    let labels = labels.unwrap_or(&empty);
    let matches_labels = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|ml| ml.iter().all(|(k, v)| labels.get(k) == Some(v)));
    if !matches_labels {
        out.push(Cause::invalid(
            "spec.template.metadata.labels",
            Value::Object(labels.clone()),
            "`selector` does not match template `labels`",
        ));
    }
    out
}

fn job_defaults(spec: &mut Value, top: bool) {
    let Some(m) = spec.as_object_mut() else { return };
    default(m, "parallelism", json!(1));
    let completions_unset = m.get("completions").is_none_or(Value::is_null);
    if completions_unset && m.get("parallelism") == Some(&json!(1)) {
        m.insert("completions".into(), json!(1));
    }
    // With a per-index limit the Job-wide one is effectively off (upstream's default).
    let per_index = m.get("backoffLimitPerIndex").is_some_and(|v| !v.is_null());
    default(m, "backoffLimit", json!(if per_index { i32::MAX } else { 6 }));
    default(m, "completionMode", json!("NonIndexed"));
    default(m, "suspend", json!(false));
    default(m, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if top && m.get("manualSelector").is_some_and(Value::is_null) {
        m.remove("manualSelector");
    }
    if let Some(t) = spec.get_mut("template") {
        default_template(t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounted(spec: Value) -> Map<String, Value> {
        let Value::Object(mut spec) = spec else { panic!("not an object") };
        mount_api_access(&mut spec);
        spec
    }

    #[test]
    fn the_api_access_volume_is_mounted_in_every_container_as_upstream() {
        let spec = mounted(json!({
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}, {"name": "b"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }));
        let vols = spec["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 2);
        let name = vols[1]["name"].as_str().unwrap();
        assert!(name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5, "{name}");
        assert_eq!(
            vols[1]["projected"],
            json!({"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]})
        );
        let mount =
            json!({"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(spec["containers"][0]["volumeMounts"], json!([{"name": "data", "mountPath": "/data"}, mount]));
        assert_eq!(spec["containers"][1]["volumeMounts"], json!([mount]));
    }

    #[test]
    fn a_container_with_its_own_mount_at_the_path_keeps_it() {
        let own = json!({"name": "mine", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
        // Nobody needs the volume: none is added.
        let spec = mounted(
            json!({"containers": [{"name": "a", "volumeMounts": [own]}], "volumes": [{"name": "mine", "secret": {"secretName": "s"}}]}),
        );
        assert_eq!(spec["containers"][0]["volumeMounts"], json!([own]));
        assert_eq!(spec["volumes"].as_array().unwrap().len(), 1);
        // A pod that has the volume already (an update, a copy of a pod) gets no second one.
        let spec = mounted(json!({
            "containers": [{"name": "a"}],
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": []}}],
        }));
        assert_eq!(spec["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(spec["containers"][0]["volumeMounts"][0]["name"], "kube-api-access-abcde");
    }

    #[test]
    fn default_toleration_seconds_as_upstream() {
        let not_ready = json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
        let unreachable = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300});
        let cases = [
            ("none", json!(null), json!([not_ready, unreachable])),
            ("empty", json!([]), json!([not_ready, unreachable])),
            (
                "an unrelated toleration is kept first",
                json!([{"key": "foo", "operator": "Equal", "value": "bar", "effect": "NoSchedule"}]),
                json!([{"key": "foo", "operator": "Equal", "value": "bar", "effect": "NoSchedule"}, not_ready, unreachable]),
            ),
            (
                "its own not-ready seconds stay",
                json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]),
                json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}, unreachable]),
            ),
            (
                "unreachable for ever, no effect given",
                json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}]),
                json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists"}, not_ready]),
            ),
            (
                "an empty key tolerates both",
                json!([{"operator": "Exists", "effect": "NoExecute"}]),
                json!([{"operator": "Exists", "effect": "NoExecute"}]),
            ),
            ("tolerate everything", json!([{"operator": "Exists"}]), json!([{"operator": "Exists"}])),
            (
                "a NoSchedule toleration of the taint does not count",
                json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}]),
                json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoSchedule"}, not_ready, unreachable]),
            ),
        ];
        for (what, given, want) in cases {
            let mut pod = json!({"spec": {"containers": [{"name": "c", "image": "i"}]}});
            if !given.is_null() {
                pod["spec"]["tolerations"] = given;
            }
            PodStrategy.prepare_create(&mut pod);
            assert_eq!(pod["spec"]["tolerations"], want, "{what}");
            // An update adds nothing more: the pod already tolerates both.
            let mut again = pod.clone();
            PodStrategy.prepare_update(&mut again, &pod);
            assert_eq!(again["spec"]["tolerations"], want, "{what} (update)");
        }
    }

    #[test]
    fn deployment_defaults() {
        let mut d = json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        WorkloadStrategy { kind: "Deployment" }.prepare_create(&mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert!(WorkloadStrategy { kind: "Deployment" }.validate(&d).is_empty());
    }

    fn job(spec: Value) -> Value {
        let mut j = json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": spec});
        j["spec"]["template"]["spec"] =
            json!({"containers": [{"name": "c", "image": "perl"}], "restartPolicy": "Never"});
        j
    }

    #[test]
    fn a_job_gets_a_selector_on_its_uid_and_labelled_pods() {
        let s = WorkloadStrategy { kind: "Job" };
        let mut j = job(json!({"template": {"metadata": {"labels": {"app": "x"}}}}));
        s.prepare_create(&mut j);
        assert_eq!(j["spec"]["selector"], json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}));
        assert_eq!(
            j["spec"]["template"]["metadata"]["labels"],
            json!({
                "app": "x",
                "batch.kubernetes.io/controller-uid": "u-1",
                "controller-uid": "u-1",
                "batch.kubernetes.io/job-name": "pi",
                "job-name": "pi",
            })
        );
        assert!(s.validate(&j).is_empty(), "{:?}", s.validate(&j));
        // Updates keep what create generated.
        let mut again = j.clone();
        s.prepare_update(&mut again, &j);
        assert!(s.validate_update(&again, &j).is_empty());
    }

    fn fields(c: Vec<Cause>) -> Vec<(String, String)> {
        c.into_iter().map(|c| (c.field, c.message)).collect()
    }

    #[test]
    fn a_jobs_selector_template_and_completions_are_immutable() {
        let s = WorkloadStrategy { kind: "Job" };
        let mut j = job(json!({"template": {"metadata": {"labels": {"app": "x"}}}}));
        s.prepare_create(&mut j);
        let mut edited = j.clone();
        edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:2");
        edited["spec"]["completions"] = json!(3);
        assert_eq!(
            fields(s.validate_update(&edited, &j)),
            [
                ("spec.completions".to_string(), "Invalid value: 3: field is immutable".to_string()),
                (
                    "spec.template".to_string(),
                    "Invalid value: core.PodTemplateSpec{...}: field is immutable".to_string()
                ),
            ]
        );
        // Suspended and never started: scheduling directives and labels may change.
        j["spec"]["suspend"] = json!(true);
        let mut placed = j.clone();
        placed["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a"});
        placed["spec"]["template"]["metadata"]["labels"]["tier"] = json!("batch");
        assert!(s.validate_update(&placed, &j).is_empty());
        j["status"] = json!({"startTime": "2025-01-01T00:00:00Z"});
        assert_eq!(fields(s.validate_update(&placed, &j))[0].0, "spec.template");
    }

    #[test]
    fn workload_selectors_and_statefulset_specs_are_fixed() {
        let d = WorkloadStrategy { kind: "Deployment" };
        let old = json!({"spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web", "v": "2"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        let mut new = old.clone();
        new["spec"]["selector"]["matchLabels"]["v"] = json!("2");
        assert_eq!(
            fields(d.validate_update(&new, &old)),
            [("spec.selector".to_string(), "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable".to_string())]
        );
        let sts = WorkloadStrategy { kind: "StatefulSet" };
        let mut grown = old.clone();
        grown["spec"]["replicas"] = json!(3);
        grown["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert!(sts.validate_update(&grown, &old).is_empty());
        let mut claims = old.clone();
        claims["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "data"}}]);
        assert_eq!(
            fields(sts.validate_update(&claims, &old)),
            [("spec".to_string(), "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".to_string())]
        );
    }

    #[test]
    fn a_manual_selector_is_kept_and_must_match_the_template() {
        let s = WorkloadStrategy { kind: "Job" };
        let mut j = job(json!({
            "manualSelector": true,
            "selector": {"matchLabels": {"app": "x"}},
            "template": {"metadata": {"labels": {"app": "x"}}},
        }));
        s.prepare_create(&mut j);
        assert_eq!(j["spec"]["selector"], json!({"matchLabels": {"app": "x"}}));
        assert_eq!(j["spec"]["template"]["metadata"]["labels"], json!({"app": "x"}));
        assert!(s.validate(&j).is_empty());
        j["spec"]["selector"] = json!({"matchLabels": {"app": "y"}});
        assert!(!s.validate(&j).is_empty());
        j["spec"]["selector"] = Value::Null;
        assert!(!s.validate(&j).is_empty());
        // A conflicting user label keeps the generated selector from matching: rejected.
        let mut j = job(json!({"template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "other"}}}}));
        s.prepare_create(&mut j);
        assert!(!s.validate(&j).is_empty());
    }

    #[test]
    fn cronjob_schedules_and_zones_are_checked() {
        let s = WorkloadStrategy { kind: "CronJob" };
        let cj = |schedule: &str, tz: Option<&str>| {
            let mut c = json!({"metadata": {"name": "c"}, "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}}}});
            if let Some(tz) = tz {
                c["spec"]["timeZone"] = json!(tz);
            }
            c
        };
        let messages = |c: &Value| s.validate(c).iter().map(|c| format!("{c:?}")).collect::<Vec<_>>().join("; ");
        for (schedule, tz, want) in [
            ("*/5 * * * *", None, ""),
            ("@hourly", Some("UTC"), ""),
            ("61 * * * *", None, "end of range (61) above maximum (59): 61"),
            ("TZ=UTC * * * * *", None, "cannot use TZ or CRON_TZ in schedule"),
            ("* * * * *", Some(""), "timeZone must be nil or non-empty string"),
            ("* * * * *", Some("../x"), "unknown time zone ../x"),
            ("* * * * *", Some("local"), "explicit time zone"),
            ("* * * * *", Some("Mars/Olympus"), "unknown time zone Mars/Olympus"),
        ] {
            let m = messages(&cj(schedule, tz));
            if want.is_empty() {
                assert!(m.is_empty(), "{schedule} {tz:?}: {m}");
            } else {
                assert!(m.contains(want), "{schedule} {tz:?}: {m}");
            }
        }
    }
}
