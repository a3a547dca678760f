use k8s_openapi::api::batch::v1::{CronJobSpec, CronJobStatus, JobSpec, JobStatus, JobTemplateSpec};

use super::*;
use crate::controllers::runtime::FakeClock;

fn utc(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cronjob(schedule: &str, created: &str, last: Option<&str>, deadline: Option<i64>) -> CronJob {
    CronJob {
        metadata: ObjectMeta {
            name: Some("tick".into()),
            namespace: Some("ns".into()),
            uid: Some("cj-uid".into()),
            creation_timestamp: Some(Time(utc(created))),
            ..Default::default()
        },
        spec: Some(CronJobSpec {
            schedule: schedule.into(),
            starting_deadline_seconds: deadline,
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some([("app".to_string(), "tick".to_string())].into()),
                    ..Default::default()
                }),
                spec: Some(JobSpec { completions: Some(1), ..Default::default() }),
            },
            ..Default::default()
        }),
        status: last.map(|l| CronJobStatus { last_schedule_time: Some(Time(utc(l))), ..Default::default() }),
    }
}

fn utc_timing(schedule: &str) -> Timing {
    Timing { schedule: Schedule::parse(schedule).unwrap(), tz: TimeZone::UTC }
}

#[test]
fn the_most_recent_unmet_time_follows_the_clock() {
    let clock = FakeClock::at(utc("2024-03-01T10:00:30Z"));
    let cj = cronjob("*/5 * * * *", "2024-03-01T10:00:00Z", None, None);
    let timing = utc_timing("*/5 * * * *");
    // Nothing due yet; look again just after 10:05.
    assert_eq!(most_recent(&cj, clock.now(), &timing, true), Ok((None, 0)));
    assert_eq!(next_requeue(&cj, clock.now(), &timing), Some(Duration::from_millis(270_100)));
    let cases = [
        // (seconds on, most recent, missed)
        (270, Some("2024-03-01T10:05:00Z"), 1),
        (600, Some("2024-03-01T10:10:00Z"), 2),
        (3600, Some("2024-03-01T11:00:00Z"), 12),
    ];
    for (on, want, missed) in cases {
        let clock = FakeClock::at(utc("2024-03-01T10:00:30Z"));
        clock.advance(Duration::from_secs(on));
        assert_eq!(most_recent(&cj, clock.now(), &timing, true), Ok((want.map(utc), missed)), "+{on}s");
    }
}

#[test]
fn the_last_schedule_time_and_the_deadline_bound_the_search() {
    let timing = utc_timing("* * * * *");
    let now = utc("2024-03-01T12:00:10Z");
    // Run at 11:58: 11:59 and 12:00 are due, 12:00 is the one to run.
    let cj = cronjob("* * * * *", "2024-03-01T00:00:00Z", Some("2024-03-01T11:58:00Z"), None);
    assert_eq!(most_recent(&cj, now, &timing, true), Ok((Some(utc("2024-03-01T12:00:00Z")), 2)));
    // Created hours ago and never run: far more than 100 missed.
    let cj = cronjob("* * * * *", "2024-03-01T08:00:00Z", None, None);
    let (t, missed) = most_recent(&cj, now, &timing, true).unwrap();
    assert_eq!(t, Some(utc("2024-03-01T12:00:00Z")));
    assert!(missed > TOO_MANY_MISSED, "{missed}");
    // A starting deadline of 30 s only looks that far back.
    let cj = cronjob("* * * * *", "2024-03-01T08:00:00Z", None, Some(30));
    assert_eq!(most_recent(&cj, now, &timing, true), Ok((Some(utc("2024-03-01T12:00:00Z")), 1)));
    let later = utc("2024-03-01T12:00:50Z");
    let cj = cronjob("0 * * * *", "2024-03-01T08:00:00Z", None, Some(30));
    assert_eq!(most_recent(&cj, later, &utc_timing("0 * * * *"), true), Ok((None, 0)));
    // February 30th never comes.
    let cj = cronjob("0 0 30 2 *", "2024-03-01T08:00:00Z", None, None);
    let err = most_recent(&cj, later, &utc_timing("0 0 30 2 *"), true).unwrap_err();
    assert_eq!(err, "time difference between two schedules is less than 1 second");
}

#[test]
fn jobs_are_named_by_their_minute_and_carry_the_scheduled_time() {
    let cj = cronjob("0 9 * * *", "2024-03-01T00:00:00Z", None, None);
    let at = utc("2024-07-01T13:00:00Z");
    assert_eq!(job_name("tick", at), format!("tick-{}", at.as_second() / 60));
    let ny = TimeZone::posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
    let job = job_for(&cj, at, &ny);
    assert_eq!(job.metadata.name.as_deref(), Some("tick-28663980"));
    assert_eq!(job.metadata.annotations.as_ref().unwrap()[SCHEDULED_TIMESTAMP], "2024-07-01T09:00:00-04:00");
    assert_eq!(job.metadata.labels.as_ref().unwrap()["app"], "tick");
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("CronJob", "cj-uid", Some(true)));
    assert_eq!(job.spec.unwrap().completions, Some(1));
}

#[test]
fn the_oldest_finished_jobs_go_first() {
    let job = |name: &str, start: Option<&str>| Job {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: None,
        status: Some(JobStatus { start_time: start.map(|s| Time(utc(s))), ..Default::default() }),
    };
    let jobs = [
        job("c", Some("2024-03-01T10:00:00Z")),
        job("never-started", None),
        job("a", Some("2024-03-01T09:00:00Z")),
        job("b", Some("2024-03-01T09:00:00Z")),
    ];
    let refs: Vec<&Job> = jobs.iter().collect();
    let names =
        |limit| oldest_past_limit(&refs, limit).iter().map(|j| j.metadata.name.clone().unwrap()).collect::<Vec<_>>();
    assert_eq!(names(3), ["a"]);
    assert_eq!(names(1), ["a", "b", "c"]);
    assert_eq!(names(0), ["a", "b", "c", "never-started"]);
    assert!(names(5).is_empty());
}
