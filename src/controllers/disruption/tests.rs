//! The budget sync over pods in memory, table-driven: expected pods by upstream's rules for
//! integer and percentage budgets, evictions in flight, and the fail-safe.

use std::collections::BTreeMap;

use k8s_openapi::api::policy::v1::{PodDisruptionBudgetSpec, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::sync::{sync, Scale, Scales};
use super::*;
use crate::controllers::podutil::testing::make_ready;
use crate::domain::disruption::{conditions_up_to_date, INSUFFICIENT_PODS, SUFFICIENT_PODS, SYNC_FAILED};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap()
}

/// Controllers by UID: `rs-<n>` has scale n.
struct FakeScales;
impl Scales for FakeScales {
    fn scale_of(&self, r: &OwnerReference, _ns: &str) -> Option<Scale> {
        let n = r.uid.strip_prefix("rs-")?.parse().ok()?;
        Some(Scale { uid: r.uid.clone(), replicas: n })
    }
}

fn pod(name: &str, owner: Option<&str>, ready: bool) -> Pod {
    let mut p = Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            labels: Some([("app".to_string(), "web".to_string())].into()),
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: uid.into(),
                    uid: uid.into(),
                    controller: Some(true),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    if ready {
        make_ready(&mut p, t(-100));
    }
    p
}

fn budget(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some("b".into()),
            namespace: Some("ns".into()),
            generation: Some(2),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: min,
            max_unavailable: max,
            selector: Some(LabelSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                match_expressions: None,
            }),
            unhealthy_pod_eviction_policy: None,
        }),
        status: None,
    }
}

#[test]
fn status_as_upstream_computes_it() {
    use IntOrString::{Int, String as Pct};
    struct Case {
        name: &'static str,
        min: Option<IntOrString>,
        max: Option<IntOrString>,
        /// (owner uid, ready) per pod
        pods: Vec<(Option<&'static str>, bool)>,
        /// (expected, desired, healthy, allowed)
        want: (i32, i32, i32, i32),
    }
    let three_ready = vec![(Some("rs-3"), true), (Some("rs-3"), true), (Some("rs-3"), true)];
    let cases = vec![
        Case { name: "minAvailable int", min: Some(Int(2)), max: None, pods: three_ready.clone(), want: (3, 2, 3, 1) },
        Case {
            name: "minAvailable int counts pods, not scale",
            min: Some(Int(2)),
            max: None,
            pods: vec![(Some("rs-5"), true), (None, true)],
            want: (2, 2, 2, 0),
        },
        Case {
            name: "minAvailable percent of the controller's scale, rounded up",
            min: Some(Pct("50%".into())),
            max: None,
            pods: vec![(Some("rs-5"), true), (Some("rs-5"), true), (Some("rs-5"), true), (Some("rs-5"), true)],
            want: (5, 3, 4, 1),
        },
        Case {
            name: "maxUnavailable int",
            min: None,
            max: Some(Int(1)),
            pods: three_ready.clone(),
            want: (3, 2, 3, 1),
        },
        Case {
            name: "maxUnavailable percent rounded up",
            min: None,
            max: Some(Pct("34%".into())),
            pods: three_ready.clone(),
            want: (3, 1, 3, 2),
        },
        Case {
            name: "maxUnavailable over the sum of two controllers",
            min: None,
            max: Some(Int(1)),
            pods: vec![(Some("rs-2"), true), (Some("rs-2"), true), (Some("rs-1"), false)],
            want: (3, 2, 2, 0),
        },
        Case {
            name: "unready pods are not healthy",
            min: Some(Int(1)),
            max: None,
            pods: vec![(Some("rs-3"), true), (Some("rs-3"), false), (Some("rs-3"), false)],
            want: (3, 1, 1, 0),
        },
        Case {
            name: "maxUnavailable 0 allows nothing",
            min: None,
            max: Some(Int(0)),
            pods: three_ready.clone(),
            want: (3, 3, 3, 0),
        },
        Case { name: "no pods", min: Some(Int(0)), max: None, pods: vec![], want: (0, 0, 0, 0) },
    ];
    for c in cases {
        let pods: Vec<Pod> = c.pods.iter().enumerate().map(|(i, (o, r))| pod(&format!("p{i}"), *o, *r)).collect();
        let refs: Vec<&Pod> = pods.iter().collect();
        let pdb = budget(c.min, c.max);
        let out = sync(&pdb, &refs, &FakeScales, t(0));
        assert!(out.error.is_none(), "{}: {:?}", c.name, out.error);
        let s = out.status.unwrap_or_else(|| panic!("{}: a new budget's status is written", c.name));
        assert_eq!(
            (s.expected_pods, s.desired_healthy, s.current_healthy, s.disruptions_allowed),
            c.want,
            "{}",
            c.name
        );
        assert_eq!(s.observed_generation, Some(2), "{}", c.name);
        let cond = &s.conditions.as_ref().unwrap()[0];
        let want = if c.want.3 > 0 { ("True", SUFFICIENT_PODS) } else { ("False", INSUFFICIENT_PODS) };
        assert_eq!((cond.status.as_str(), cond.reason.as_str()), want, "{}", c.name);
    }
}

#[test]
fn a_current_status_is_not_rewritten() {
    let pods = [pod("a", Some("rs-2"), true), pod("b", Some("rs-2"), true)];
    let refs: Vec<&Pod> = pods.iter().collect();
    let mut pdb = budget(Some(IntOrString::Int(1)), None);
    pdb.status = sync(&pdb, &refs, &FakeScales, t(0)).status;
    assert!(conditions_up_to_date(&pdb));
    assert!(sync(&pdb, &refs, &FakeScales, t(5)).status.is_none());
}

#[test]
fn evictions_in_flight_count_as_unhealthy_until_the_deletion_timeout() {
    let pods = [pod("a", Some("rs-3"), true), pod("b", Some("rs-3"), true), pod("c", Some("rs-3"), true)];
    let refs: Vec<&Pod> = pods.iter().collect();
    let mut pdb = budget(Some(IntOrString::Int(1)), None);
    let disrupted: BTreeMap<String, Time> = [("a".to_string(), Time(t(0))), ("gone".to_string(), Time(t(0)))].into();
    pdb.status = Some(PodDisruptionBudgetStatus { disrupted_pods: Some(disrupted), ..Default::default() });

    let out = sync(&pdb, &refs, &FakeScales, t(30));
    let s = out.status.unwrap();
    assert_eq!((s.current_healthy, s.disruptions_allowed), (2, 1));
    // Only pods that still exist stay in the map.
    assert_eq!(s.disrupted_pods.unwrap().keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(out.recheck, Some(std::time::Duration::from_secs(90)));

    // Not deleted two minutes on: healthy again, and forgotten.
    let out = sync(&pdb, &refs, &FakeScales, t(121));
    let s = out.status.unwrap();
    assert_eq!((s.current_healthy, s.disruptions_allowed), (3, 2));
    assert!(s.disrupted_pods.is_none());
    assert!(out.recheck.is_none());
}

#[test]
fn terminating_pods_are_not_healthy() {
    let mut gone = pod("a", Some("rs-2"), true);
    gone.metadata.deletion_timestamp = Some(Time(t(0)));
    let pods = [gone, pod("b", Some("rs-2"), true)];
    let refs: Vec<&Pod> = pods.iter().collect();
    let s = sync(&budget(None, Some(IntOrString::Int(1))), &refs, &FakeScales, t(1)).status.unwrap();
    assert_eq!((s.expected_pods, s.current_healthy, s.disruptions_allowed), (2, 1, 0));
}

#[test]
fn a_pod_without_a_known_controller_fails_safe() {
    let pods = [pod("a", Some("rs-x"), true), pod("b", Some("rs-x"), true)];
    let refs: Vec<&Pod> = pods.iter().collect();
    let mut pdb = budget(None, Some(IntOrString::Int(1)));
    pdb.status = Some(PodDisruptionBudgetStatus { disruptions_allowed: 3, ..Default::default() });
    let out = sync(&pdb, &refs, &FakeScales, t(0));
    assert_eq!(out.error.as_deref(), Some("found no controllers for pod \"a\""));
    let s = out.status.unwrap();
    assert_eq!(s.disruptions_allowed, 0);
    let c = &s.conditions.unwrap()[0];
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        ("False", SYNC_FAILED, "found no controllers for pod \"a\"")
    );
}

#[test]
fn unmanaged_pods_are_reported_with_percentages() {
    let pods = [pod("a", None, true), pod("b", Some("rs-1"), true)];
    let refs: Vec<&Pod> = pods.iter().collect();
    let out = sync(&budget(Some(IntOrString::String("100%".into())), None), &refs, &FakeScales, t(0));
    assert_eq!(out.unmanaged, ["a"]);
    let s = out.status.unwrap();
    assert_eq!((s.expected_pods, s.desired_healthy, s.current_healthy), (1, 1, 2));
}

#[test]
fn budgets_select_by_namespace_and_labels() {
    let pdb = budget(Some(IntOrString::Int(1)), None);
    let mut p = pod("a", None, true);
    assert!(selects(&pdb, &p));
    p.metadata.namespace = Some("other".into());
    assert!(!selects(&pdb, &p));
    let mut everything = pdb.clone();
    everything.spec.as_mut().unwrap().selector = Some(LabelSelector::default());
    assert!(selects(&everything, &pod("x", None, false)), "an empty selector selects every pod");
    let mut nothing = pdb;
    nothing.spec.as_mut().unwrap().selector = None;
    assert!(!selects(&nothing, &pod("x", None, false)));
}
