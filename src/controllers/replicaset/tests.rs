use k8s_openapi::api::apps::v1::ReplicaSetSpec;
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use super::*;
use crate::controllers::podutil::testing::make_ready;

fn labels(pairs: &[(&str, &str)]) -> Option<std::collections::BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("rs-uid".into()),
            generation: Some(3),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: Some(min_ready),
            selector: LabelSelector { match_labels: labels(&[("app", "web")]), match_expressions: None },
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: labels(&[("app", "web"), ("tier", "front")]),
                    ..Default::default()
                }),
                spec: Some(PodSpec::default()),
            }),
        }),
        status: None,
    }
}

fn pod(name: &str, pairs: &[(&str, &str)], owner: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            uid: Some(format!("{name}-uid")),
            labels: labels(pairs),
            owner_references: owner.map(|uid| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "x".into(),
                    uid: uid.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn names(claims: &[Claim<&Pod>]) -> Vec<String> {
    claims
        .iter()
        .map(|c| match c {
            Claim::Keep(p) => format!("keep {}", p.metadata.name.as_deref().unwrap()),
            Claim::Adopt(p) => format!("adopt {}", p.metadata.name.as_deref().unwrap()),
            Claim::Release(p) => format!("release {}", p.metadata.name.as_deref().unwrap()),
        })
        .collect()
}

#[test]
fn claims_adopt_orphans_release_strays_and_leave_others_alone() {
    let rs = rs(3, 0);
    let sel = selector_of(&rs).unwrap();
    let pods = [
        pod("mine", &[("app", "web")], Some("rs-uid")),
        pod("stray", &[("app", "db")], Some("rs-uid")),
        pod("orphan", &[("app", "web")], None),
        pod("other-orphan", &[("app", "db")], None),
        pod("theirs", &[("app", "web")], Some("other-uid")),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    assert_eq!(
        names(&claim("rs-uid", false, Some(&sel), refs.clone())),
        ["keep mine", "release stray", "adopt orphan"]
    );
    // Being deleted: keeps what it has, adopts nothing.
    assert_eq!(names(&claim("rs-uid", true, Some(&sel), refs.clone())), ["keep mine", "keep stray"]);
    // An empty selector selects nothing.
    assert_eq!(names(&claim("rs-uid", false, None, refs)), ["release mine", "release stray"]);
}

#[test]
fn status_counts_labels_readiness_and_availability() {
    let now = Timestamp::from_second(2_000_000).unwrap();
    let rs = rs(3, 30);
    let mut ready_long = pod("a", &[("app", "web"), ("tier", "front")], Some("rs-uid"));
    make_ready(&mut ready_long, Timestamp::from_second(1_000_000).unwrap());
    let mut ready_now = pod("b", &[("app", "web")], Some("rs-uid"));
    make_ready(&mut ready_now, now);
    let pending = pod("c", &[("app", "web"), ("tier", "front")], Some("rs-uid"));
    let s = calculate_status(&rs, &[&ready_long, &ready_now, &pending], None, false, now);
    assert_eq!(s.replicas, 3);
    assert_eq!(s.fully_labeled_replicas, Some(2));
    assert_eq!(s.ready_replicas, Some(2));
    assert_eq!(s.available_replicas, Some(1));
    assert_eq!(s.observed_generation, Some(3));
    assert!(s.conditions.is_none());
}

#[test]
fn replica_failure_condition_comes_and_goes() {
    let now = Timestamp::from_second(2_000_000).unwrap();
    let mut rs = rs(3, 0);
    let s = calculate_status(&rs, &[], Some("pods \"web-x\" is forbidden: exceeded quota"), true, now);
    let c = &s.conditions.as_ref().unwrap()[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_deref()),
        ("ReplicaFailure", "True", Some("FailedCreate"))
    );
    assert!(status_changed(None, &s));
    rs.status = Some(s.clone());
    // Still failing: the condition stays as it was (its time too).
    let again = calculate_status(&rs, &[], Some("other"), true, Timestamp::from_second(2_000_100).unwrap());
    assert_eq!(again.conditions, s.conditions);
    assert!(!status_changed(rs.status.as_ref(), &again));
    let fixed = calculate_status(&rs, &[], None, true, now);
    assert!(fixed.conditions.is_none());
    assert!(status_changed(rs.status.as_ref(), &fixed));
}

#[test]
fn pods_from_the_template_are_controlled_by_the_owner() {
    let rs = rs(1, 0);
    let p = pod_from_template(&rs, runtime::owner::controller_ref(&rs));
    assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
    assert_eq!(p.metadata.namespace.as_deref(), Some("ns"));
    assert_eq!(p.metadata.labels, labels(&[("app", "web"), ("tier", "front")]));
    let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("ReplicaSet", "rs-uid", Some(true)));
}

#[test]
fn replication_controllers_are_seen_as_replica_sets() {
    use k8s_openapi::api::core::v1::ReplicationControllerSpec;
    let rc = ReplicationController {
        metadata: ObjectMeta { name: Some("rc".into()), ..Default::default() },
        spec: Some(ReplicationControllerSpec {
            replicas: Some(2),
            selector: None,
            template: Some(PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: labels(&[("app", "rc")]), ..Default::default() }),
                spec: None,
            }),
            ..Default::default()
        }),
        status: None,
    };
    let v = rc.view().unwrap();
    assert!(selector_of(&v).unwrap().matches(&labels(&[("app", "rc")]).unwrap()));
    let back = rc.with_status(ReplicaSetStatus { replicas: 2, ready_replicas: Some(1), ..Default::default() });
    assert_eq!(back.status.unwrap().ready_replicas, Some(1));
}
