//! The PodSecurity admission plug-in, as kube-apiserver has it: each namespace's
//! `pod-security.kubernetes.io/{enforce,audit,warn}[-version]` labels choose a Pod Security
//! Standard (privileged, baseline, restricted) as of a Kubernetes version, and pods are
//! judged against it.
//!
//! - enforce: a pod that violates the level is refused with upstream's 403
//!   (`violates PodSecurity "restricted:latest": ...`); pods made by controllers too, since
//!   they are created through the API as the controller's identity.
//! - warn: the write succeeds with a `Warning` (`would violate PodSecurity ...`), for pods
//!   and for every resource with a pod template (Deployments, Jobs, ...).
//! - audit: k3rs has no audit log with annotations; violations go to the `k3rs::audit`
//!   tracing target at debug level instead.
//!
//! Namespace writes are checked too: unreadable labels are refused on create (and on an
//! update that changes them), and raising the enforce level warns about the existing pods
//! that would now be refused. Unlabelled namespaces, kube-system included, are
//! `privileged` as upstream's default configuration has them; exemptions (users, runtime
//! classes, namespaces) from an AdmissionConfiguration are not supported.

pub mod checks;
pub mod policy;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::PodSpec;
use serde::Deserialize;
use serde_json::Value;

use self::checks::{evaluate, Annotations, Verdict};
use self::policy::{LabelError, Level, LevelVersion, Policy};
use crate::apiserver::registry::{Admit, WriteAttributes};
use crate::apiserver::status::ApiError;
use crate::store::{KeyRange, RangeOptions, Store};

/// At most this many existing pods are checked when a namespace's enforce level rises...
const NAMESPACE_MAX_PODS_TO_CHECK: usize = 3000;
/// ...and for no longer than this.
const NAMESPACE_POD_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Pod subresources whose writes cannot change what the checks look at.
const IGNORED_POD_SUBRESOURCES: &[&str] =
    &["exec", "attach", "binding", "eviction", "log", "portforward", "proxy", "status"];

/// The plug-in, reading namespaces and pods from the store.
pub struct PodSecurity {
    store: Arc<dyn Store>,
    /// How many existing pods a rising enforce level is checked against.
    max_pods_to_check: usize,
}

#[async_trait::async_trait]
impl Admit for PodSecurity {
    async fn admit(&self, a: &WriteAttributes<'_>) -> Result<(), ApiError> {
        match (a.rt.group, a.rt.plural) {
            ("", "namespaces") => self.validate_namespace(a).await,
            ("", "pods") => self.validate_pod(a).await,
            (group, plural) => match template_path(group, plural) {
                Some(path) => self.validate_pod_controller(a, path).await,
                None => Ok(()),
            },
        }
    }
}

/// Where a resource with a pod template keeps it.
fn template_path(group: &str, plural: &str) -> Option<&'static str> {
    Some(match (group, plural) {
        ("", "replicationcontrollers") => "/spec/template",
        ("", "podtemplates") => "/template",
        ("apps", "replicasets" | "deployments" | "statefulsets" | "daemonsets") => "/spec/template",
        ("batch", "jobs") => "/spec/template",
        ("batch", "cronjobs") => "/spec/jobTemplate/spec/template",
        _ => return None,
    })
}

/// What the checks read of a pod or a pod template: its annotations and its spec.
struct PodParts {
    annotations: Annotations,
    spec: PodSpec,
}

impl PodParts {
    /// From a pod (or template) object: `metadata` and `spec`.
    fn of(obj: &Value) -> Result<PodParts, serde_json::Error> {
        let annotations = match obj.pointer("/metadata/annotations") {
            Some(v) => Option::<Annotations>::deserialize(v)?.unwrap_or_default(),
            None => Annotations::new(),
        };
        let spec = match obj.get("spec") {
            Some(v) => PodSpec::deserialize(v)?,
            None => PodSpec::default(),
        };
        Ok(PodParts { annotations, spec })
    }

    fn judge(&self, lv: LevelVersion) -> Verdict {
        Verdict(evaluate(lv, &self.annotations, &self.spec))
    }
}

/// An object's labels (those with string values).
fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

impl PodSecurity {
    pub fn new(store: Arc<dyn Store>) -> Self {
        PodSecurity { store, max_pods_to_check: NAMESPACE_MAX_PODS_TO_CHECK }
    }

    /// A namespace's labels; none when it does not exist (namespace lifecycle refuses the
    /// write then).
    async fn namespace_labels(&self, namespace: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        let key = format!("/registry/namespaces/{namespace}");
        let (_, found) = self.store.get(key.as_bytes(), None).await.map_err(|e| e.to_string())?;
        let Some(kv) = found else { return Ok(None) };
        let ns: Value = serde_json::from_slice(&kv.value).map_err(|e| e.to_string())?;
        Ok(Some(labels_of(&ns)))
    }

    async fn validate_namespace(&self, a: &WriteAttributes<'_>) -> Result<(), ApiError> {
        if a.subresource.is_some() {
            return Ok(());
        }
        let (new_policy, new_errors) = Policy::from_labels(&labels_of(a.new));
        let invalid = |errors: &[LabelError]| {
            ApiError::invalid("", "Namespace", a.name(), errors.iter().map(LabelError::cause).collect())
        };
        let Some(old) = a.old else {
            return if new_errors.is_empty() { Ok(()) } else { Err(invalid(&new_errors)) };
        };
        let (old_policy, old_errors) = Policy::from_labels(&labels_of(old));
        // Labels that were already unreadable (and did not change) do not block updates.
        if !new_errors.is_empty() && (old_errors.is_empty() || new_errors != old_errors) {
            return Err(invalid(&new_errors));
        }
        let (new, old) = (new_policy.enforce, old_policy.enforce);
        if new == old || new.level == Level::Privileged || (new.version == old.version && new.level <= old.level) {
            return Ok(());
        }
        for w in self.check_existing_pods(a.name(), new).await {
            a.warnings.add(w);
        }
        Ok(())
    }

    async fn validate_pod(&self, a: &WriteAttributes<'_>) -> Result<(), ApiError> {
        if a.subresource.is_some_and(|s| IGNORED_POD_SUBRESOURCES.contains(&s)) {
            return Ok(());
        }
        let namespace = a.namespace();
        let labels = match self.namespace_labels(namespace).await {
            Ok(Some(labels)) => labels,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(namespace, error = %e, "PodSecurity could not read the pod's namespace");
                return Err(ApiError::internal(format!("failed to lookup namespace {namespace:?}")));
            }
        };
        let (policy, errors) = Policy::from_labels(&labels);
        if errors.is_empty() && policy.fully_privileged() {
            return Ok(());
        }
        let pod = PodParts::of(a.new).map_err(|_| ApiError::bad_request("failed to decode pod"))?;
        if let Some(old) = a.old {
            let old = PodParts::of(old).map_err(|_| ApiError::bad_request("failed to decode old pod"))?;
            if !significant_update(&pod.spec, &old.spec) {
                return Ok(());
            }
        }
        judge(a, &policy, &errors, &pod, true)
    }

    async fn validate_pod_controller(&self, a: &WriteAttributes<'_>, template: &str) -> Result<(), ApiError> {
        if a.subresource.is_some() {
            return Ok(());
        }
        // Nothing here refuses a write: what cannot be read is let through, as upstream.
        let namespace = a.namespace();
        let labels = match self.namespace_labels(namespace).await {
            Ok(Some(labels)) => labels,
            Ok(None) => return Ok(()),
            Err(e) => {
                tracing::warn!(namespace, error = %e, "PodSecurity could not read the namespace");
                return Ok(());
            }
        };
        let (policy, errors) = Policy::from_labels(&labels);
        if errors.is_empty() && policy.warn.level == Level::Privileged && policy.audit.level == Level::Privileged {
            return Ok(());
        }
        let Some(template) = a.new.pointer(template) else { return Ok(()) };
        match PodParts::of(template) {
            Ok(pod) => judge(a, &policy, &errors, &pod, false),
            Err(e) => {
                tracing::debug!(error = %e, "PodSecurity could not read a pod template");
                Ok(())
            }
        }
    }

    /// Upstream's warnings when a namespace's enforce level rises: the existing pods that
    /// the new level would refuse, one line per distinct set of reasons.
    async fn check_existing_pods(&self, namespace: &str, enforce: LevelVersion) -> Vec<String> {
        let deadline = Instant::now() + NAMESPACE_POD_CHECK_TIMEOUT;
        let range = KeyRange::prefix(format!("/registry/pods/{namespace}/"));
        let listed = match self.store.range(&range, RangeOptions::default()).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(namespace, error = %e, "PodSecurity could not list the namespace's pods");
                return vec!["failed to list pods while checking new PodSecurity enforce level".to_string()];
            }
        };
        let pods: Vec<ExistingPod> = listed
            .kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .filter_map(|v| ExistingPod::of(&v))
            .collect();
        let mut pods = prioritize(pods);
        let total = pods.len();
        pods.truncate(self.max_pods_to_check);
        let mut checked = pods.len();
        // Each distinct reason list, in the order first seen, with the lexically first pod
        // name and the number of pods giving it.
        let mut reasons: Vec<String> = Vec::new();
        let mut seen: HashMap<String, (String, usize)> = HashMap::new();
        for (i, pod) in pods.iter().enumerate() {
            let verdict = pod.parts.judge(enforce);
            if !verdict.allowed() {
                let reason = verdict.reasons();
                match seen.get_mut(&reason) {
                    Some((first, count)) => {
                        if pod.name < *first {
                            first.clone_from(&pod.name);
                        }
                        *count += 1;
                    }
                    None => {
                        seen.insert(reason.clone(), (pod.name.clone(), 1));
                        reasons.push(reason);
                    }
                }
            }
            if Instant::now() >= deadline {
                checked = i + 1;
                break;
            }
        }
        let mut warnings = Vec::new();
        if checked < total {
            warnings.push(format!(
                "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
            ));
        }
        if !reasons.is_empty() {
            warnings.push(format!(
                "existing pods in namespace {namespace:?} violate the new PodSecurity enforce level \"{enforce}\""
            ));
        }
        let mut lines: Vec<String> = reasons
            .into_iter()
            .map(|reason| {
                let (first, count) = &seen[&reason];
                match count {
                    1 => format!("{first}: {reason}"),
                    2 => format!("{first} (and 1 other pod): {reason}"),
                    n => format!("{first} (and {} other pods): {reason}", n - 1),
                }
            })
            .collect();
        lines.sort();
        warnings.extend(lines);
        warnings
    }
}

/// Upstream's evaluation of a pod (or template) against a namespace's policy: enforce
/// (pods only) refuses, audit logs, warn warns, each level judged once.
fn judge(
    a: &WriteAttributes<'_>,
    policy: &Policy,
    label_errors: &[LabelError],
    pod: &PodParts,
    enforce: bool,
) -> Result<(), ApiError> {
    let mut verdicts: HashMap<LevelVersion, Verdict> = HashMap::new();
    let mut refusal = None;
    if enforce {
        let verdict = pod.judge(policy.enforce);
        if !verdict.allowed() {
            refusal = Some(ApiError::forbidden_because(
                a.rt.group,
                a.rt.plural,
                a.name(),
                &format!("violates PodSecurity \"{}\": {}", policy.enforce, verdict.details()),
            ));
        }
        verdicts.insert(policy.enforce, verdict);
    }
    let audit = verdicts.entry(policy.audit).or_insert_with(|| pod.judge(policy.audit));
    if !audit.allowed() || !label_errors.is_empty() {
        let parse_errors: Vec<String> =
            label_errors.iter().map(|e| format!("{}: {}", e.cause().field, e.cause().message)).collect();
        tracing::debug!(
            target: "k3rs::audit",
            resource = a.rt.plural,
            namespace = a.namespace(),
            name = a.name(),
            violations = %if audit.allowed() { String::new() } else {
                format!("would violate PodSecurity \"{}\": {}", policy.audit, audit.details())
            },
            policy_errors = %parse_errors.join(", "),
            "pod-security.kubernetes.io/audit-violations"
        );
    }
    if let Some(refused) = refusal {
        // No warnings on a write that is refused anyway.
        return Err(refused);
    }
    let warn = verdicts.entry(policy.warn).or_insert_with(|| pod.judge(policy.warn));
    if !warn.allowed() {
        a.warnings.add(format!("would violate PodSecurity \"{}\": {}", policy.warn, warn.details()));
    }
    Ok(())
}

/// A stored pod, as the namespace check reads it.
struct ExistingPod {
    name: String,
    /// The uid of the controller that owns it, if any.
    controller: Option<String>,
    parts: PodParts,
}

impl ExistingPod {
    fn of(obj: &Value) -> Option<ExistingPod> {
        let name = obj.pointer("/metadata/name")?.as_str()?.to_string();
        let controller = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| refs.iter().find(|r| r.get("controller").and_then(Value::as_bool) == Some(true)))
            .and_then(|r| r.get("uid")?.as_str().map(str::to_string));
        Some(ExistingPod { name, controller, parts: PodParts::of(obj).ok()? })
    }
}

/// Pods of no controller and the first pod of each controller first, then the other
/// replicas: when time or the limit runs out, each controller's pods were seen once.
fn prioritize(pods: Vec<ExistingPod>) -> Vec<ExistingPod> {
    let mut first = Vec::with_capacity(pods.len());
    let mut replicas = Vec::new();
    let mut controllers = HashSet::new();
    for pod in pods {
        match &pod.controller {
            Some(uid) if !controllers.insert(uid.clone()) => replicas.push(pod),
            _ => first.push(pod),
        }
    }
    first.extend(replicas);
    first
}

/// Whether a pod update can change the verdict: of its (mutable) fields only the images
/// matter, and an added ephemeral container.
fn significant_update(new: &PodSpec, old: &PodSpec) -> bool {
    let (new_init, old_init) =
        (new.init_containers.as_deref().unwrap_or_default(), old.init_containers.as_deref().unwrap_or_default());
    if new.containers.len() != old.containers.len() || new_init.len() != old_init.len() {
        return true;
    }
    let images_differ = |n: &[k8s_openapi::api::core::v1::Container], o: &[k8s_openapi::api::core::v1::Container]| {
        n.iter().zip(o).any(|(n, o)| n.image != o.image)
    };
    if images_differ(&new.containers, &old.containers) || images_differ(new_init, old_init) {
        return true;
    }
    let old_ephemeral = old.ephemeral_containers.as_deref().unwrap_or_default();
    new.ephemeral_containers.iter().flatten().any(|c| match old_ephemeral.iter().find(|o| o.name == c.name) {
        None => true,
        Some(o) => o.image != c.image,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::sqlite::{SqliteOptions, SqliteStore};

    fn pod(name: &str, owner: Option<&str>, security: Value) -> Value {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "team"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "securityContext": security}]},
        });
        if let Some(uid) = owner {
            p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                                                       "uid": uid, "controller": true}]);
        }
        p
    }

    async fn store_with(pods: &[Value]) -> (tempfile::TempDir, PodSecurity) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).expect("store"));
        for p in pods {
            let key = format!("/registry/pods/team/{}", p["metadata"]["name"].as_str().unwrap_or(""));
            store.put(key.into(), serde_json::to_vec(p).expect("JSON").into(), None).await.expect("put");
        }
        (dir, PodSecurity::new(store))
    }

    #[tokio::test]
    async fn raising_enforce_names_the_pods_it_would_refuse() {
        let privileged = json!({"privileged": true});
        let (_dir, ps) = store_with(&[
            pod("web-b", Some("rs-1"), privileged.clone()),
            pod("web-a", Some("rs-1"), privileged.clone()),
            pod("web-c", Some("rs-1"), privileged.clone()),
            pod("solo", None, privileged),
            pod("plain", None, json!({})),
            pod("fine", None, json!({})),
        ])
        .await;
        let baseline = LevelVersion { level: Level::Baseline, version: policy::Version::Latest };
        // `plain` and `fine` pass baseline; the three replicas and `solo` do not.
        assert_eq!(
            ps.check_existing_pods("team", baseline).await,
            [
                "existing pods in namespace \"team\" violate the new PodSecurity enforce level \"baseline:latest\"",
                "solo (and 3 other pods): privileged",
            ]
        );
        let restricted = LevelVersion { level: Level::Restricted, version: policy::Version::V1(30) };
        let warnings = ps.check_existing_pods("team", restricted).await;
        assert_eq!(
            warnings,
            [
                "existing pods in namespace \"team\" violate the new PodSecurity enforce level \"restricted:v1.30\"",
                "fine (and 1 other pod): allowPrivilegeEscalation != false, unrestricted capabilities, \
                 runAsNonRoot != true, seccompProfile",
                "solo (and 3 other pods): privileged, allowPrivilegeEscalation != false, unrestricted capabilities, \
                 runAsNonRoot != true, seccompProfile",
            ]
        );
        let (_empty_dir, empty) = store_with(&[]).await;
        assert!(empty.check_existing_pods("team", restricted).await.is_empty());
    }

    #[tokio::test]
    async fn a_namespace_with_more_pods_than_the_limit_says_how_many_were_checked() {
        let (_dir, mut ps) = store_with(&[
            pod("a", Some("rs-1"), json!({"privileged": true})),
            pod("b", Some("rs-1"), json!({"privileged": true})),
            pod("c", None, json!({"privileged": true})),
            pod("d", None, json!({})),
        ])
        .await;
        ps.max_pods_to_check = 2;
        let baseline = LevelVersion { level: Level::Baseline, version: policy::Version::Latest };
        // `a` and `c` are checked first (`b` is another replica of `a`'s controller).
        assert_eq!(
            ps.check_existing_pods("team", baseline).await,
            [
                "new PodSecurity enforce level only checked against the first 2 of 4 existing pods",
                "existing pods in namespace \"team\" violate the new PodSecurity enforce level \"baseline:latest\"",
                "a (and 1 other pod): privileged",
            ]
        );
    }

    #[tokio::test]
    async fn namespace_labels_already_unreadable_do_not_block_other_updates() {
        let (_dir, ps) = store_with(&[]).await;
        let types = crate::apiserver::registry::strategies::resource_types("10.43.0.0/16".parse().expect("a CIDR"));
        let rt = types.iter().find(|t| t.group.is_empty() && t.plural == "namespaces").expect("namespaces");
        let ns = |labels: Value| json!({"metadata": {"name": "old", "labels": labels}});
        let warnings = crate::apiserver::registry::Warnings::default();
        let update = |new: Value, old: Value| {
            let (ps, warnings) = (&ps, &warnings);
            async move {
                let a = WriteAttributes { rt, subresource: None, new: &new, old: Some(&old), warnings };
                ps.admit(&a).await.map_err(|e| (e.code(), e.message))
            }
        };
        let before = ns(json!({"pod-security.kubernetes.io/enforce": "bad"}));
        let relabelled = ns(json!({"pod-security.kubernetes.io/enforce": "bad", "team": "a"}));
        assert_eq!(update(relabelled, before.clone()).await, Ok(()));
        let worse = ns(json!({"pod-security.kubernetes.io/enforce": "worse"}));
        assert_eq!(
            update(worse.clone(), before.clone()).await,
            Err((
                422,
                "Namespace \"old\" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \
                 \"worse\": must be one of privileged, baseline, restricted"
                    .to_string()
            ))
        );
        // Fixing them is always allowed; a status write is not looked at.
        assert_eq!(update(ns(json!({"pod-security.kubernetes.io/enforce": "baseline"})), before.clone()).await, Ok(()));
        let status =
            WriteAttributes { rt, subresource: Some("status"), new: &worse, old: Some(&before), warnings: &warnings };
        assert!(ps.admit(&status).await.is_ok());
        assert!(warnings.take().is_empty());
    }

    #[test]
    fn replicas_of_one_controller_wait_behind_every_first_pod() {
        let parts = |name: &str, controller: Option<&str>| ExistingPod {
            name: name.into(),
            controller: controller.map(str::to_string),
            parts: PodParts { annotations: Annotations::new(), spec: PodSpec::default() },
        };
        let order: Vec<String> =
            prioritize(vec![parts("a1", Some("a")), parts("a2", Some("a")), parts("b1", Some("b")), parts("x", None)])
                .into_iter()
                .map(|p| p.name)
                .collect();
        assert_eq!(order, ["a1", "b1", "x", "a2"]);
    }

    #[test]
    fn only_image_changes_and_new_ephemeral_containers_are_judged_again() {
        let spec = |v: Value| PodSpec::deserialize(&v).expect("spec");
        let old = spec(
            json!({"containers": [{"name": "c", "image": "a"}], "ephemeralContainers": [{"name": "e", "image": "a"}]}),
        );
        assert!(!significant_update(&old, &old));
        let new_image = spec(
            json!({"containers": [{"name": "c", "image": "b"}], "ephemeralContainers": [{"name": "e", "image": "a"}]}),
        );
        assert!(significant_update(&new_image, &old));
        let debugged = spec(json!({"containers": [{"name": "c", "image": "a"}],
                                   "ephemeralContainers": [{"name": "e", "image": "a"}, {"name": "d", "image": "a"}]}));
        assert!(significant_update(&debugged, &old));
        let more = spec(json!({"containers": [{"name": "c", "image": "a"}, {"name": "d", "image": "a"}]}));
        assert!(significant_update(&more, &old));
    }

    #[test]
    fn templates_are_found_where_each_kind_keeps_them() {
        assert_eq!(template_path("apps", "deployments"), Some("/spec/template"));
        assert_eq!(template_path("batch", "cronjobs"), Some("/spec/jobTemplate/spec/template"));
        assert_eq!(template_path("", "podtemplates"), Some("/template"));
        assert_eq!(template_path("", "configmaps"), None);
        assert_eq!(template_path("apps", "controllerrevisions"), None);
    }
}
