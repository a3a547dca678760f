//! The Job, TTL-after-finished and CronJob controllers in a real server started in process
//! (see [`super::controllers`]). There is no kubelet: the test finishes pods by writing their
//! status, as a kubelet would.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::controllers::{cluster, live_pods, make_namespace, within, Cluster};

const TRACKING: &str = "batch.kubernetes.io/job-tracking";

fn job(name: &str, spec: serde_json::Value) -> Job {
    let mut j = json!({
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    });
    for (k, v) in spec.as_object().unwrap() {
        j["spec"][k] = v.clone();
    }
    serde_json::from_value(j).unwrap()
}

/// Ends a pod as its kubelet would: the phase, and its container terminated with `code`.
async fn finish(c: &Cluster, pod: &Pod, code: i32) {
    let api: Api<Pod> = Api::namespaced(c.client.clone(), pod.metadata.namespace.as_deref().unwrap());
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "containerStatuses": [{
            "name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                "startedAt": now, "finishedAt": now}},
        }],
    }});
    api.patch_status(pod.metadata.name.as_deref().unwrap(), &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("pod status");
}

/// The Job's pods that are neither finished nor being deleted.
async fn running(c: &Cluster, ns: &str, name: &str) -> Vec<Pod> {
    let pods = live_pods(c, ns, &format!("batch.kubernetes.io/job-name={name}")).await;
    pods.into_iter()
        .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .collect()
}

fn condition(job: &Job, type_: &str) -> Option<(String, String, String)> {
    let c = job.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default()))
}

async fn event_reasons(c: &Cluster, ns: &str, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(c.client.clone(), ns);
    let list = events.list(&ListParams::default()).await.expect("events");
    list.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

#[tokio::test]
async fn completions_run_at_most_parallelism_pods_and_complete() {
    let c = cluster().await;
    make_namespace(&c, "jobs").await;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "jobs");
    let created = jobs
        .create(&PostParams::default(), &job("five", json!({"completions": 5, "parallelism": 2})))
        .await
        .expect("job");
    let uid = created.metadata.uid.clone().unwrap();
    let selector = created.spec.as_ref().unwrap().selector.clone().unwrap();
    assert_eq!(selector.match_labels.unwrap()["batch.kubernetes.io/controller-uid"], uid);

    let mut done = 0;
    while done < 5 {
        let active = within(Duration::from_secs(10), "an active pod", || async {
            let p = running(&c, "jobs", "five").await;
            (!p.is_empty()).then_some(p)
        })
        .await;
        assert!(active.len() <= 2, "{} pods active at once", active.len());
        let pod = &active[0];
        assert!(pod.metadata.finalizers.iter().flatten().any(|f| f == TRACKING), "{:?}", pod.metadata.finalizers);
        assert_eq!(pod.metadata.owner_references.as_ref().unwrap()[0].uid, uid);
        finish(&c, pod, 0).await;
        done += 1;
        // The success is counted before anything else is looked at.
        within(Duration::from_secs(10), "the success counted", || async {
            let s = jobs.get("five").await.ok()?.status?;
            (s.succeeded == Some(done)).then_some(())
        })
        .await;
        assert!(running(&c, "jobs", "five").await.len() <= 2);
    }
    let finished = within(Duration::from_secs(10), "Complete", || async {
        let j = jobs.get("five").await.ok()?;
        condition(&j, "Complete").map(|_| j)
    })
    .await;
    let s = finished.status.clone().unwrap();
    assert_eq!((s.succeeded, s.failed.unwrap_or(0), s.active.unwrap_or(0)), (Some(5), 0, 0));
    assert!(s.completion_time.is_some() && s.start_time.is_some());
    let reached =
        ("True".to_string(), "CompletionsReached".to_string(), "Reached expected number of succeeded pods".to_string());
    assert_eq!(condition(&finished, "Complete"), Some(reached.clone()));
    assert_eq!(condition(&finished, "SuccessCriteriaMet"), Some(reached));
    let uncounted = s.uncounted_terminated_pods.unwrap_or_default();
    assert!(uncounted.succeeded.unwrap_or_default().is_empty() && uncounted.failed.unwrap_or_default().is_empty());
    // Every pod was counted once and let go.
    let pods = live_pods(&c, "jobs", "batch.kubernetes.io/job-name=five").await;
    assert_eq!(pods.len(), 5);
    assert!(pods.iter().all(|p| !p.metadata.finalizers.iter().flatten().any(|f| f == TRACKING)));
    within(Duration::from_secs(10), "the Completed event", || async {
        let r = event_reasons(&c, "jobs", "five").await;
        (r.iter().any(|r| r == "Completed") && r.iter().filter(|r| *r == "SuccessfulCreate").count() >= 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_failing_job_stops_at_its_backoff_limit() {
    let c = cluster().await;
    make_namespace(&c, "fail").await;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "fail");
    let spec = json!({"completions": 3, "parallelism": 2, "backoffLimit": 1});
    jobs.create(&PostParams::default(), &job("bad", spec)).await.expect("job");
    let active = within(Duration::from_secs(10), "2 pods", || async {
        let p = running(&c, "fail", "bad").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    finish(&c, &active[0], 1).await;
    within(Duration::from_secs(10), "one failure counted", || async {
        (jobs.get("bad").await.ok()?.status?.failed == Some(1)).then_some(())
    })
    .await;
    // The replacement waits for the back-off (10 s after the first failure).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(running(&c, "fail", "bad").await.len(), 1, "no replacement during the back-off");
    let j = jobs.get("bad").await.expect("job");
    assert!(condition(&j, "Failed").is_none());

    finish(&c, &active[1], 2).await;
    let failed = within(Duration::from_secs(10), "Failed", || async {
        let j = jobs.get("bad").await.ok()?;
        condition(&j, "Failed").map(|_| j)
    })
    .await;
    let limit = (
        "True".to_string(),
        "BackoffLimitExceeded".to_string(),
        "Job has reached the specified backoff limit".to_string(),
    );
    assert_eq!(condition(&failed, "Failed"), Some(limit.clone()));
    assert_eq!(condition(&failed, "FailureTarget"), Some(limit));
    let s = failed.status.unwrap();
    assert_eq!((s.failed, s.succeeded.unwrap_or(0), s.active), (Some(2), 0, Some(0)));
    assert!(s.completion_time.is_none());
    within(Duration::from_secs(10), "the BackoffLimitExceeded event", || async {
        event_reasons(&c, "fail", "bad").await.iter().any(|r| r == "BackoffLimitExceeded").then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_indexed_job_runs_each_index_once() {
    let c = cluster().await;
    make_namespace(&c, "idx").await;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "idx");
    let spec = json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"});
    jobs.create(&PostParams::default(), &job("ix", spec)).await.expect("job");
    let mut pods = within(Duration::from_secs(10), "3 pods", || async {
        let p = running(&c, "idx", "ix").await;
        (p.len() == 3).then_some(p)
    })
    .await;
    pods.sort_by_key(|p| p.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"].clone());
    for (i, p) in pods.iter().enumerate() {
        let index = i.to_string();
        assert_eq!(p.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"], index);
        assert_eq!(p.metadata.labels.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"], index);
        assert!(p.metadata.name.as_deref().unwrap().starts_with(&format!("ix-{i}-")));
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.hostname.as_deref(), Some(format!("ix-{i}").as_str()));
        let env = spec.containers[0].env.as_ref().expect("env");
        let var = env.iter().find(|e| e.name == "JOB_COMPLETION_INDEX").expect("JOB_COMPLETION_INDEX");
        let field = var.value_from.as_ref().and_then(|v| v.field_ref.as_ref()).map(|f| f.field_path.as_str());
        assert_eq!(field, Some("metadata.annotations['batch.kubernetes.io/job-completion-index']"));
    }
    // Index 1 fails and is made again; 0 and 2 succeed.
    finish(&c, &pods[0], 0).await;
    finish(&c, &pods[2], 0).await;
    within(Duration::from_secs(10), "completedIndexes 0,2", || async {
        let s = jobs.get("ix").await.ok()?.status?;
        (s.completed_indexes.as_deref() == Some("0,2") && s.succeeded == Some(2)).then_some(())
    })
    .await;
    finish(&c, &pods[1], 3).await;
    // The replacement for index 1 comes after the 10 s back-off.
    let again = within(Duration::from_secs(20), "index 1 again", || async {
        let p = running(&c, "idx", "ix").await;
        p.into_iter().find(|p| p.metadata.uid != pods[1].metadata.uid)
    })
    .await;
    assert_eq!(again.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/job-completion-index"], "1");
    finish(&c, &again, 0).await;
    let done = within(Duration::from_secs(10), "Complete", || async {
        let j = jobs.get("ix").await.ok()?;
        condition(&j, "Complete").map(|_| j)
    })
    .await;
    let s = done.status.unwrap();
    assert_eq!((s.completed_indexes.as_deref(), s.succeeded, s.failed), (Some("0-2"), Some(3), Some(1)));
}

#[tokio::test]
async fn a_finished_job_with_ttl_zero_is_deleted() {
    let c = cluster().await;
    make_namespace(&c, "ttl").await;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "ttl");
    jobs.create(&PostParams::default(), &job("brief", json!({"ttlSecondsAfterFinished": 0}))).await.expect("job");
    let pod = within(Duration::from_secs(10), "a pod", || async { running(&c, "ttl", "brief").await.pop() }).await;
    finish(&c, &pod, 0).await;
    within(Duration::from_secs(10), "the Job deleted", || async {
        matches!(jobs.get_opt("brief").await, Ok(None)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_cronjob_makes_a_job_when_its_time_has_come() {
    let c = cluster().await;
    make_namespace(&c, "cron").await;
    let cronjobs: Api<CronJob> = Api::namespaced(c.client.clone(), "cron");
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "cron");
    let cj: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "* * * * *",
            "suspend": true,
            "jobTemplate": {
                "metadata": {"labels": {"from": "tick"}},
                "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}},
            },
        },
    }))
    .unwrap();
    cronjobs.create(&PostParams::default(), &cj).await.expect("cronjob");
    // It last ran five minutes ago: once resumed, this minute's run is due at once.
    let five_ago = k8s_openapi::jiff::Timestamp::now().as_second() - 300;
    let last = k8s_openapi::jiff::Timestamp::from_second(five_ago - five_ago.rem_euclid(60)).unwrap();
    cronjobs
        .patch_status(
            "tick",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"lastScheduleTime": last.to_string()}})),
        )
        .await
        .expect("status");
    let minute = k8s_openapi::jiff::Timestamp::now().as_second() / 60;
    cronjobs
        .patch("tick", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": false}})))
        .await
        .expect("resume");

    let made = within(Duration::from_secs(10), "the Job", || async {
        let list = jobs.list(&ListParams::default().labels("from=tick")).await.ok()?;
        list.items.into_iter().next()
    })
    .await;
    let name = made.metadata.name.clone().unwrap();
    let at: i64 = name.strip_prefix("tick-").and_then(|m| m.parse().ok()).expect("tick-<minute>");
    assert!(at == minute || at == minute + 1, "{name} for minute {minute}");
    let stamp = &made.metadata.annotations.as_ref().unwrap()["batch.kubernetes.io/cronjob-scheduled-timestamp"];
    assert_eq!(stamp, &k8s_openapi::jiff::Timestamp::from_second(at * 60).unwrap().to_string());
    assert_eq!(made.metadata.owner_references.as_ref().unwrap()[0].kind, "CronJob");
    let status = within(Duration::from_secs(10), "status.active", || async {
        let s = cronjobs.get("tick").await.ok()?.status?;
        s.active.as_ref().is_some_and(|a| a.iter().any(|r| r.name.as_deref() == Some(&name))).then_some(s)
    })
    .await;
    assert_eq!(status.last_schedule_time.unwrap().0.as_second(), at * 60);

    // The Job runs to completion: it leaves the active list, and the success is noted.
    let pod = within(Duration::from_secs(10), "its pod", || async { running(&c, "cron", &name).await.pop() }).await;
    finish(&c, &pod, 0).await;
    within(Duration::from_secs(10), "lastSuccessfulTime", || async {
        let s = cronjobs.get("tick").await.ok()?.status?;
        (s.active.unwrap_or_default().is_empty() && s.last_successful_time.is_some()).then_some(())
    })
    .await;
    within(Duration::from_secs(10), "the SuccessfulCreate event", || async {
        event_reasons(&c, "cron", "tick").await.iter().any(|r| r == "SuccessfulCreate").then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_schedule_that_never_fires_is_reported_not_run() {
    let c = cluster().await;
    make_namespace(&c, "never").await;
    let cronjobs: Api<CronJob> = Api::namespaced(c.client.clone(), "never");
    let cj = |schedule: &str| -> CronJob {
        serde_json::from_value(json!({
            "metadata": {"name": "feb30"},
            "spec": {
                "schedule": schedule,
                "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}},
            },
        }))
        .unwrap()
    };
    // What robfig/cron cannot parse is refused by the API.
    let refused = cronjobs.create(&PostParams::default(), &cj("61 * * * *")).await.expect_err("invalid");
    assert!(refused.to_string().contains("above maximum"), "{refused}");
    cronjobs.create(&PostParams::default(), &cj("0 0 30 2 *")).await.expect("cronjob");
    within(Duration::from_secs(10), "the InvalidSchedule event", || async {
        event_reasons(&c, "never", "feb30").await.iter().any(|r| r == "InvalidSchedule").then_some(())
    })
    .await;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "never");
    assert!(jobs.list(&ListParams::default()).await.expect("jobs").items.is_empty());
}

#[tokio::test]
async fn a_suspended_job_lets_its_pods_go_uncounted_and_resumes() {
    let c = cluster().await;
    make_namespace(&c, "susp").await;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "susp");
    jobs.create(&PostParams::default(), &job("nap", json!({"completions": 4, "parallelism": 2}))).await.expect("job");
    within(Duration::from_secs(10), "2 pods", || async { (running(&c, "susp", "nap").await.len() == 2).then_some(()) })
        .await;
    jobs.patch("nap", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": true}})))
        .await
        .expect("suspend");
    let suspended = within(Duration::from_secs(10), "Suspended", || async {
        let j = jobs.get("nap").await.ok()?;
        let c = condition(&j, "Suspended")?;
        (c.0 == "True" && j.status.as_ref()?.active == Some(0)).then_some(j)
    })
    .await;
    assert_eq!(
        condition(&suspended, "Suspended").unwrap(),
        ("True".into(), "JobSuspended".into(), "Job suspended".into())
    );
    within(Duration::from_secs(10), "the pods gone", || async {
        running(&c, "susp", "nap").await.is_empty().then_some(())
    })
    .await;
    // Pods removed for a suspension are not failures.
    assert_eq!(jobs.get("nap").await.unwrap().status.unwrap().failed.unwrap_or(0), 0);

    jobs.patch("nap", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": false}})))
        .await
        .expect("resume");
    within(Duration::from_secs(10), "resumed with 2 pods", || async {
        let j = jobs.get("nap").await.ok()?;
        let cond = condition(&j, "Suspended")?;
        (cond == ("False".into(), "JobResumed".into(), "Job resumed".into())
            && running(&c, "susp", "nap").await.len() == 2)
            .then_some(())
    })
    .await;
    within(Duration::from_secs(10), "the Suspended and Resumed events", || async {
        let r = event_reasons(&c, "susp", "nap").await;
        (r.iter().any(|r| r == "Suspended") && r.iter().any(|r| r == "Resumed")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_job_past_its_deadline_fails_and_its_pods_are_stopped() {
    let c = cluster().await;
    make_namespace(&c, "late").await;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "late");
    jobs.create(&PostParams::default(), &job("slow", json!({"activeDeadlineSeconds": 1}))).await.expect("job");
    let failed = within(Duration::from_secs(15), "Failed", || async {
        let j = jobs.get("slow").await.ok()?;
        condition(&j, "Failed").map(|_| j)
    })
    .await;
    let deadline = (
        "True".to_string(),
        "DeadlineExceeded".to_string(),
        "Job was active longer than specified deadline".to_string(),
    );
    assert_eq!(condition(&failed, "Failed"), Some(deadline));
    let s = failed.status.unwrap();
    // The running pod was stopped and counted as a failure.
    assert_eq!((s.active, s.failed, s.terminating), (Some(0), Some(1), Some(0)));
    assert!(running(&c, "late", "slow").await.is_empty());
}

#[tokio::test]
async fn a_pod_failure_policy_fails_the_job_on_a_listed_exit_code() {
    let c = cluster().await;
    make_namespace(&c, "pfp").await;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "pfp");
    let spec = json!({
        "completions": 2,
        "parallelism": 2,
        "backoffLimit": 6,
        "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [137]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
        ]},
    });
    jobs.create(&PostParams::default(), &job("strict", spec)).await.expect("job");
    let pods = within(Duration::from_secs(10), "2 pods", || async {
        let p = running(&c, "pfp", "strict").await;
        (p.len() == 2).then_some(p)
    })
    .await;
    // An ignored failure is let go without being counted.
    finish(&c, &pods[0], 137).await;
    let api: Api<Pod> = Api::namespaced(c.client.clone(), "pfp");
    within(Duration::from_secs(10), "the ignored pod let go", || async {
        let p = api.get(pods[0].metadata.name.as_deref().unwrap()).await.ok()?;
        (!p.metadata.finalizers.iter().flatten().any(|f| f == TRACKING)).then_some(())
    })
    .await;
    let s = jobs.get("strict").await.unwrap().status.unwrap();
    let uncounted = s.uncounted_terminated_pods.unwrap_or_default();
    assert_eq!((s.failed.unwrap_or(0), uncounted.failed.unwrap_or_default().len()), (0, 0));
    finish(&c, &pods[1], 42).await;
    let failed = within(Duration::from_secs(10), "Failed", || async {
        let j = jobs.get("strict").await.ok()?;
        condition(&j, "Failed").map(|_| j)
    })
    .await;
    let (status, reason, message) = condition(&failed, "Failed").unwrap();
    assert_eq!((status.as_str(), reason.as_str()), ("True", "PodFailurePolicy"));
    let name = pods[1].metadata.name.as_deref().unwrap();
    assert_eq!(
        message,
        format!("Container c for pod pfp/{name} failed with exit code 42 matching FailJob rule at index 1")
    );
    assert!(running(&c, "pfp", "strict").await.is_empty());
}
