//! The pods a Job makes (upstream's template handling): the tracking finalizer on each,
//! and for an Indexed Job the completion index as annotation, label, `JOB_COMPLETION_INDEX`
//! in every container and the hostname `<job>-<index>`; plus what the controller reads
//! back from a pod (its index, its index's failure counts).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The finalizer that keeps a finished pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// An Indexed Job's pod's index (annotation and label).
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Failures of the index before this pod (backoffLimitPerIndex).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// Failures of the index before this pod that the pod failure policy ignored.
pub const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// The environment variable with the index.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// Upstream's limit on a generateName prefix (63 less the random suffix).
const MAX_GENERATED_NAME: usize = 58;

pub fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// The pod's completion index, if it has a valid one.
pub fn completion_index(pod: &Pod) -> Option<i32> {
    let v = pod.metadata.annotations.as_ref()?.get(COMPLETION_INDEX)?;
    v.parse::<i32>().ok().filter(|i| *i >= 0)
}

fn annotation_count(pod: &Pod, key: &str) -> i32 {
    let v = pod.metadata.annotations.as_ref().and_then(|a| a.get(key));
    v.and_then(|v| v.parse::<i32>().ok()).unwrap_or(0).max(0)
}

/// Failures of the pod's index before it (its annotation).
pub fn index_failure_count(pod: &Pod) -> i32 {
    annotation_count(pod, INDEX_FAILURE_COUNT)
}

/// Ignored failures of the pod's index before it.
pub fn index_ignored_failure_count(pod: &Pod) -> i32 {
    annotation_count(pod, INDEX_IGNORED_FAILURE_COUNT)
}

/// The generateName of a pod: `<job>-`, or `<job>-<index>-` cut to fit.
pub fn generate_name(job_name: &str, index: Option<i32>) -> String {
    match index {
        None => format!("{job_name}-"),
        Some(i) => {
            let tail = format!("-{i}-");
            let keep = MAX_GENERATED_NAME.saturating_sub(tail.len());
            let head: String = job_name.chars().take(keep).collect();
            format!("{head}{tail}")
        }
    }
}

/// Index failure counts a new pod carries (backoffLimitPerIndex).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexFailures {
    pub failed: i32,
    pub ignored: i32,
}

/// A new pod of `job` (index `index` for an Indexed Job), controlled by `owner`.
pub fn pod_for(job: &Job, owner: OwnerReference, index: Option<i32>, failures: Option<IndexFailures>) -> Pod {
    let name = job.metadata.name.clone().unwrap_or_default();
    let template = job.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut spec = template.spec.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let mut labels = tmeta.labels.unwrap_or_default();
    let mut finalizers = tmeta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(TRACKING_FINALIZER.into());
    }
    if let Some(i) = index {
        annotations.insert(COMPLETION_INDEX.into(), i.to_string());
        labels.insert(COMPLETION_INDEX.into(), i.to_string());
        spec.hostname = Some(format!("{name}-{i}"));
        let env = EnvVar {
            name: COMPLETION_INDEX_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    api_version: None,
                    field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                }),
                ..Default::default()
            }),
        };
        let containers = spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut());
        for c in containers {
            let vars = c.env.get_or_insert_with(Vec::new);
            if !vars.iter().any(|v| v.name == COMPLETION_INDEX_ENV) {
                vars.push(env.clone());
            }
        }
        if let Some(f) = failures {
            annotations.insert(INDEX_FAILURE_COUNT.into(), f.failed.to_string());
            if f.ignored > 0 {
                annotations.insert(INDEX_IGNORED_FAILURE_COUNT.into(), f.ignored.to_string());
            }
        }
    }
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(generate_name(&name, index)),
            namespace: job.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            finalizers: Some(finalizers),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Whether the pod carries the tracking finalizer.
pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING_FINALIZER)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};

    use super::*;

    fn job(mode: &str) -> Job {
        Job {
            metadata: ObjectMeta { name: Some("pi".into()), namespace: Some("ns".into()), ..Default::default() },
            spec: Some(JobSpec {
                completion_mode: Some(mode.into()),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "pi".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        init_containers: Some(vec![Container { name: "init".into(), ..Default::default() }]),
                        containers: vec![Container { name: "main".into(), ..Default::default() }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn indexed_pods_carry_their_index_everywhere() {
        let pod =
            pod_for(&job("Indexed"), OwnerReference::default(), Some(3), Some(IndexFailures { failed: 2, ignored: 0 }));
        let meta = &pod.metadata;
        assert_eq!(meta.generate_name.as_deref(), Some("pi-3-"));
        assert_eq!(meta.annotations.as_ref().unwrap()[COMPLETION_INDEX], "3");
        assert_eq!(meta.annotations.as_ref().unwrap()[INDEX_FAILURE_COUNT], "2");
        assert_eq!(meta.labels.as_ref().unwrap()[COMPLETION_INDEX], "3");
        assert_eq!(meta.labels.as_ref().unwrap()["app"], "pi");
        assert_eq!(meta.finalizers.as_deref(), Some(&[TRACKING_FINALIZER.to_string()][..]));
        let spec = pod.spec.unwrap();
        assert_eq!(spec.hostname.as_deref(), Some("pi-3"));
        for c in spec.init_containers.unwrap().iter().chain(spec.containers.iter()) {
            let env = c.env.as_ref().unwrap();
            assert_eq!(env.len(), 1, "{}", c.name);
            let path = &env[0].value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path;
            assert_eq!(
                (env[0].name.as_str(), path.as_str()),
                ("JOB_COMPLETION_INDEX", "metadata.annotations['batch.kubernetes.io/job-completion-index']")
            );
        }
        assert_eq!(completion_index(&Pod { metadata: pod.metadata.clone(), ..Default::default() }), Some(3));
    }

    #[test]
    fn non_indexed_pods_only_get_the_finalizer() {
        let pod = pod_for(&job("NonIndexed"), OwnerReference::default(), None, None);
        assert_eq!(pod.metadata.generate_name.as_deref(), Some("pi-"));
        assert!(pod.metadata.annotations.is_none());
        assert!(has_tracking_finalizer(&pod));
        assert!(pod.spec.unwrap().hostname.is_none());
    }

    #[test]
    fn long_names_are_cut_before_the_index() {
        let long = "j".repeat(70);
        let g = generate_name(&long, Some(12));
        assert_eq!(g.len(), MAX_GENERATED_NAME);
        assert!(g.ends_with("j-12-"));
    }
}
