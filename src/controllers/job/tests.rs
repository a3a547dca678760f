use k8s_openapi::api::batch::v1::{
    JobSpec, JobStatus, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec, PodStatus, PodTemplateSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::controllers::podutil::testing::make_ready;
use crate::controllers::runtime::FakeClock;

fn at(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap()
}

fn job(edit: impl FnOnce(&mut JobSpec)) -> Job {
    let mut spec = JobSpec {
        template: PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec { restart_policy: Some("Never".into()), ..Default::default() }),
        },
        ..Default::default()
    };
    edit(&mut spec);
    Job {
        metadata: ObjectMeta { name: Some("j".into()), namespace: Some("ns".into()), ..Default::default() },
        spec: Some(spec),
        status: None,
    }
}

fn pod(name: &str, phase: &str, deleting: bool, index: Option<i32>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("{name}-uid")),
            deletion_timestamp: deleting.then(|| Time(at(0))),
            annotations: index.map(|i| [(pods::COMPLETION_INDEX.to_string(), i.to_string())].into()),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus { phase: Some(phase.into()), ..Default::default() }),
    }
}

fn with_exit(mut p: Pod, code: i32) -> Pod {
    p.status.get_or_insert_with(Default::default).container_statuses = Some(vec![ContainerStatus {
        name: "c".into(),
        state: Some(ContainerState {
            terminated: Some(ContainerStateTerminated { exit_code: code, ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    p
}

#[test]
fn which_pods_count_as_failed() {
    let plain = job(|_| {});
    let failed_only = job(|s| s.pod_replacement_policy = Some("Failed".into()));
    let with_policy = job(|s| s.pod_failure_policy = Some(PodFailurePolicy { rules: vec![] }));
    let cases = [
        ("Failed", false, &plain, true),
        ("Running", false, &plain, false),
        // A pod being deleted before it finished counts as failed at once...
        ("Running", true, &plain, true),
        ("Succeeded", true, &plain, false),
        // ...unless pods are replaced only once they reach Failed.
        ("Running", true, &failed_only, false),
        ("Running", true, &with_policy, false),
        ("Failed", true, &with_policy, true),
    ];
    for (phase, deleting, j, want) in cases {
        assert_eq!(is_pod_failed(&pod("p", phase, deleting, None), j), want, "{phase} deleting={deleting}");
    }
}

#[test]
fn the_active_deadline_follows_the_clock() {
    let clock = FakeClock::at(at(0));
    let mut j = job(|s| s.active_deadline_seconds = Some(30));
    assert_eq!(deadline_left(&j, clock.now()), None, "not started");
    j.status = Some(JobStatus { start_time: Some(Time(clock.now())), ..Default::default() });
    let cases = [(0, 30_000), (10, 20_000), (29, 1_000), (30, 0), (100, 0)];
    for (after, left_ms) in cases {
        let clock = FakeClock::at(at(0));
        clock.advance(Duration::from_secs(after));
        assert_eq!(deadline_left(&j, clock.now()), Some(Duration::from_millis(left_ms)), "{after}s");
    }
    j.spec.as_mut().unwrap().suspend = Some(true);
    assert_eq!(deadline_left(&j, at(100)), None, "a suspended Job has no deadline running");
}

#[test]
fn conditions_change_only_when_something_differs() {
    let mut list = Vec::new();
    assert!(!ensure_condition(&mut list, new_condition("Suspended", "False", "JobResumed", "Job resumed", at(0))));
    assert!(list.is_empty(), "a False condition is not added");
    assert!(ensure_condition(&mut list, new_condition("Suspended", "True", "JobSuspended", "Job suspended", at(1))));
    assert!(!ensure_condition(&mut list, new_condition("Suspended", "True", "JobSuspended", "Job suspended", at(2))));
    assert_eq!(list[0].last_transition_time, Some(Time(at(1))));
    assert!(ensure_condition(&mut list, new_condition("Suspended", "False", "JobResumed", "Job resumed", at(3))));
    assert_eq!((list.len(), list[0].status.as_str()), (1, "False"));
}

#[test]
fn surplus_indexed_pods_go_first() {
    let j = job(|s| {
        s.completion_mode = Some("Indexed".into());
        s.completions = Some(3);
    });
    let succeeded: Indexes = [0].into();
    let mut ready = pod("b1", "Running", false, Some(1));
    make_ready(&mut ready, at(0));
    let pods = [
        pod("a0", "Running", false, Some(0)),
        pod("b0", "Pending", false, Some(1)),
        ready,
        pod("c", "Running", false, Some(2)),
        pod("d", "Running", false, Some(7)),
        pod("e", "Running", false, None),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let mut doomed: Vec<&str> = pods_for_removal(&j, &refs, 0, &succeeded, at(10))
        .iter()
        .map(|p| p.metadata.name.as_deref().unwrap())
        .collect();
    doomed.sort();
    // Index 0 already succeeded, 7 is out of range, e has none, and of index 1 the
    // not-ready duplicate goes.
    assert_eq!(doomed, ["a0", "b0", "d", "e"]);
    let plain = job(|_| {});
    let two: Vec<&Pod> = pods[1..3].iter().collect();
    let doomed = pods_for_removal(&plain, &two, 1, &Indexes::new(), at(10));
    assert_eq!(doomed.iter().map(|p| p.metadata.name.as_deref().unwrap()).collect::<Vec<_>>(), ["b0"]);
}

#[test]
fn pending_indexes_are_the_lowest_free_ones() {
    let taken: HashSet<i32> = [0, 2, 3].into();
    let cases = [(1, 6, vec![1]), (3, 6, vec![1, 4, 5]), (5, 6, vec![1, 4, 5]), (2, 2, vec![1]), (1, 0, vec![])];
    for (count, completions, want) in cases {
        assert_eq!(first_pending_indexes(&taken, count, completions), want, "{count} of {completions}");
    }
}

#[test]
fn restarts_count_against_the_limit_with_on_failure() {
    let restarted = |n: i32| {
        let mut p = pod("p", "Running", false, None);
        p.status.as_mut().unwrap().container_statuses =
            Some(vec![ContainerStatus { name: "c".into(), restart_count: n, ..Default::default() }]);
        p
    };
    let on_failure = |limit: i32| {
        job(|s| {
            s.backoff_limit = Some(limit);
            s.template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
        })
    };
    let cases = [(0, 0, false), (0, 1, true), (2, 1, false), (2, 2, true)];
    for (limit, restarts, want) in cases {
        let p = restarted(restarts);
        assert_eq!(past_backoff_limit_on_failure(&on_failure(limit), &[&p]), want, "limit {limit} restarts {restarts}");
    }
    assert!(!past_backoff_limit_on_failure(&job(|s| s.backoff_limit = Some(0)), &[&restarted(3)]));
}

#[test]
fn per_index_failures_carry_over_and_fail_the_index() {
    let policy = PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: None,
                    operator: "In".into(),
                    values: vec![9],
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "FailIndex".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: None,
                    operator: "In".into(),
                    values: vec![42],
                }),
                on_pod_conditions: None,
            },
        ],
    };
    let j = job(|s| {
        s.completion_mode = Some("Indexed".into());
        s.completions = Some(2);
        s.backoff_limit_per_index = Some(1);
        s.pod_failure_policy = Some(policy);
    });
    let with_count = |code: i32, before: i32| {
        let mut p = with_exit(pod("p", "Failed", false, Some(0)), code);
        p.metadata.annotations.as_mut().unwrap().insert(pods::INDEX_FAILURE_COUNT.into(), before.to_string());
        p
    };
    let cases = [
        // (exit code, failures before, index failed, the replacement's counts)
        (1, 0, false, IndexFailures { failed: 1, ignored: 0 }),
        (1, 1, true, IndexFailures { failed: 2, ignored: 0 }),
        (9, 1, false, IndexFailures { failed: 1, ignored: 1 }),
        (42, 0, true, IndexFailures { failed: 1, ignored: 0 }),
    ];
    for (code, before, failed, next) in cases {
        let p = with_count(code, before);
        assert_eq!(is_index_failed(&j, &p), failed, "code {code} before {before}");
        assert_eq!(next_index_failures(&j, Some(&p)), next, "code {code} before {before}");
    }
    assert_eq!(next_index_failures(&j, None), IndexFailures::default());
}
