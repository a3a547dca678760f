//! Toleration matching and eviction times, with the time passed in.

use std::time::Duration;

use k8s_openapi::api::core::v1::Toleration;
use k8s_openapi::jiff::Timestamp;

use super::plan::*;
use super::*;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn taint(key: &str, value: &str, effect: &str) -> Taint {
    Taint { key: key.into(), value: (!value.is_empty()).then(|| value.into()), effect: effect.into(), time_added: None }
}

fn tol(key: &str, op: &str, value: &str, effect: &str, seconds: Option<i64>) -> Toleration {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_string());
    Toleration { key: opt(key), operator: opt(op), value: opt(value), effect: opt(effect), toleration_seconds: seconds }
}

#[test]
fn toleration_matching_as_upstream() {
    let t = taint("k", "v", "NoExecute");
    let cases = [
        ("equal key, value and effect", tol("k", "Equal", "v", "NoExecute", None), true),
        ("no operator means Equal", tol("k", "", "v", "NoExecute", None), true),
        ("other value", tol("k", "Equal", "w", "NoExecute", None), false),
        ("Exists ignores the value", tol("k", "Exists", "", "NoExecute", None), true),
        ("no effect matches any", tol("k", "Exists", "", "", None), true),
        ("other effect", tol("k", "Exists", "", "NoSchedule", None), false),
        ("no key with Exists matches any", tol("", "Exists", "", "", None), true),
        ("other key", tol("j", "Exists", "", "NoExecute", None), false),
        ("unknown operator", tol("k", "Gt", "v", "NoExecute", None), false),
    ];
    for (what, toleration, want) in cases {
        assert_eq!(tolerates(&toleration, &t), want, "{what}");
    }
}

#[test]
fn the_first_matching_toleration_of_each_taint_sets_the_time() {
    let unreachable = taint("node.kubernetes.io/unreachable", "", "NoExecute");
    let not_ready = taint("node.kubernetes.io/not-ready", "", "NoExecute");
    let default_300 = |k: &str| tol(k, "Exists", "", "NoExecute", Some(300));
    /// What, the taints, the tolerations, how long they hold (`None`: not tolerated; then
    /// `None`: for ever).
    type Case<'a> = (&'a str, Vec<Taint>, Vec<Toleration>, Option<Option<Duration>>);
    let cases: Vec<Case<'_>> = vec![
        ("no toleration", vec![unreachable.clone()], vec![], None),
        (
            "the defaults",
            vec![unreachable.clone()],
            vec![default_300("node.kubernetes.io/not-ready"), default_300("node.kubernetes.io/unreachable")],
            Some(Some(Duration::from_secs(300))),
        ),
        (
            "for ever",
            vec![unreachable.clone()],
            vec![tol("node.kubernetes.io/unreachable", "Exists", "", "", None)],
            Some(None),
        ),
        (
            "the shortest of those used",
            vec![unreachable.clone(), not_ready.clone()],
            vec![
                default_300("node.kubernetes.io/unreachable"),
                tol("node.kubernetes.io/not-ready", "Exists", "", "NoExecute", Some(60)),
            ],
            Some(Some(Duration::from_secs(60))),
        ),
        (
            "a later, shorter match is not used",
            vec![unreachable.clone()],
            vec![tol("", "Exists", "", "", None), tol("node.kubernetes.io/unreachable", "Exists", "", "", Some(5))],
            Some(None),
        ),
        (
            "zero seconds",
            vec![unreachable.clone()],
            vec![tol("node.kubernetes.io/unreachable", "Exists", "", "", Some(0))],
            Some(Some(Duration::ZERO)),
        ),
        (
            "negative seconds",
            vec![unreachable.clone()],
            vec![tol("node.kubernetes.io/unreachable", "Exists", "", "", Some(-3))],
            Some(Some(Duration::ZERO)),
        ),
        (
            "one taint untolerated",
            vec![unreachable.clone(), taint("x", "", "NoExecute")],
            vec![default_300("node.kubernetes.io/unreachable")],
            None,
        ),
    ];
    for (what, taints, tolerations, want) in cases {
        let got = matching(&taints, &tolerations).map(|used| min_toleration(&used));
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn evictions_are_planned_from_when_the_taint_was_first_seen() {
    let taints = [taint("node.kubernetes.io/unreachable", "", "NoExecute")];
    let default_300 = [tol("node.kubernetes.io/unreachable", "Exists", "", "NoExecute", Some(300))];
    let forever = [tol("node.kubernetes.io/unreachable", "Exists", "", "NoExecute", None)];

    assert_eq!(plan(&[], &[], None, at(0)), Plan::Keep, "no taints");
    assert_eq!(plan(&taints, &[], None, at(0)), Plan::Evict, "not tolerated");
    assert_eq!(plan(&taints, &forever, None, at(0)), Plan::Keep, "tolerated for ever");

    // Tolerated for 300 s: scheduled at first sight, kept as time passes, due at 300 s.
    let first = plan(&taints, &default_300, None, at(10));
    let Plan::Wait(s) = first else { panic!("{first:?}") };
    assert_eq!(s, Scheduled { since: at(10), at: at(310) });
    assert_eq!(until(at(10), s.at), Duration::from_secs(300), "the requeue");
    assert_eq!(plan(&taints, &default_300, Some(s), at(200)), Plan::Wait(s));
    assert_eq!(until(at(200), s.at), Duration::from_secs(110), "the requeue after a change");
    assert_eq!(plan(&taints, &default_300, Some(s), at(309)), Plan::Wait(s));
    assert_eq!(plan(&taints, &default_300, Some(s), at(310)), Plan::Evict);

    // A change of taints keeps the time; a taint not tolerated makes it now; no taints
    // cancel it (and the next one starts afresh).
    let swapped = [taint("node.kubernetes.io/not-ready", "", "NoExecute")];
    let both = [default_300[0].clone(), tol("node.kubernetes.io/not-ready", "Exists", "", "NoExecute", Some(30))];
    assert_eq!(plan(&swapped, &both, Some(s), at(100)), Plan::Wait(s));
    assert_eq!(plan(&swapped, &default_300, Some(s), at(100)), Plan::Evict);
    assert_eq!(plan(&[], &default_300, Some(s), at(100)), Plan::Keep);
    assert_eq!(plan(&taints, &forever, Some(s), at(100)), Plan::Keep);
}

#[test]
fn the_disruption_target_condition_is_set_once() {
    let pod = Pod::default();
    let marked = disruption_target(&pod, at(3)).expect("set");
    let c = &marked.status.as_ref().unwrap().conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
        (
            "DisruptionTarget",
            "True",
            Some("DeletionByTaintManager"),
            Some("Taint manager: deleting due to NoExecute taint")
        )
    );
    assert_eq!(c.last_transition_time, Some(Time(at(3))));
    assert!(disruption_target(&marked, at(4)).is_none());
}
