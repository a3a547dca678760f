//! The sync run in memory: a set, its pods and claims, a kubelet played by the test (pods
//! are made Ready or finish terminating when the test says) and a fixed clock.

use k8s_openapi::api::apps::v1::{
    RollingUpdateStatefulSetStrategy, StatefulSetOrdinals, StatefulSetPersistentVolumeClaimRetentionPolicy,
    StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaimSpec, PodSpec, PodStatus, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::sync::*;
use super::*;
use std::time::Duration;

use k8s_openapi::api::core::v1::Volume;

use crate::controllers::podutil;
use crate::controllers::podutil::testing::make_ready;

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta { labels: Some([("app".into(), "db".into())].into()), ..Default::default() }),
        spec: Some(PodSpec {
            containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }],
            ..Default::default()
        }),
    }
}

fn set(replicas: i32, policy: &str) -> StatefulSet {
    StatefulSet {
        metadata: ObjectMeta {
            name: Some("db".into()),
            namespace: Some("ns".into()),
            uid: Some("set-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            pod_management_policy: Some(policy.into()),
            service_name: Some("db-svc".into()),
            selector: LabelSelector { match_labels: Some([("app".into(), "db".into())].into()), ..Default::default() },
            template: template("busybox:1"),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateStatefulSetStrategy { partition: Some(0), max_unavailable: None }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// An in-memory cluster: the set, its pods and claims, and the two revisions.
struct World {
    set: StatefulSet,
    pods: Vec<Pod>,
    claims: Vec<PersistentVolumeClaim>,
    now: i64,
    uids: usize,
    current: (String, PodTemplateSpec),
    update: (String, PodTemplateSpec),
}

impl World {
    fn new(set: StatefulSet) -> Self {
        let t = set.spec.as_ref().unwrap().template.clone();
        World {
            set,
            pods: vec![],
            claims: vec![],
            now: 1_000_000,
            uids: 0,
            current: ("db-r1".into(), t.clone()),
            update: ("db-r1".into(), t),
        }
    }

    fn uid(&mut self) -> String {
        self.uids += 1;
        format!("uid-{}", self.uids)
    }

    fn step(&mut self) -> Step {
        let step = sync(Input {
            set: &self.set,
            pods: self.pods.iter().collect(),
            current: Revision { name: &self.current.0, template: &self.current.1 },
            update: Revision { name: &self.update.0, template: &self.update.1 },
            collision_count: 0,
            claims: self.claims.iter().collect(),
            now: Timestamp::from_second(self.now).unwrap(),
        });
        for c in step.create.iter().flat_map(|c| c.claims.iter()).chain(step.claims.iter().map(|(_, c)| c)) {
            let mut c = c.clone();
            c.metadata.uid = Some(self.uid());
            self.claims.push(c);
        }
        for c in &step.create {
            let mut p = c.pod.clone();
            p.metadata.uid = Some(self.uid());
            p.status = Some(PodStatus { phase: Some("Pending".into()), ..Default::default() });
            self.pods.push(p);
        }
        for (claim, refs) in &step.claim_owners {
            let c = self.claims.iter_mut().find(|c| c.metadata.name == claim.metadata.name).unwrap();
            c.metadata.owner_references = Some(refs.clone());
        }
        for (pod, labels) in &step.relabel {
            self.pod_mut(pod.metadata.name.as_deref().unwrap()).metadata.labels = Some(labels.clone());
        }
        for (pod, _) in &step.delete {
            self.pod_mut(pod.metadata.name.as_deref().unwrap()).metadata.deletion_timestamp =
                Some(Time(Timestamp::from_second(self.now).unwrap()));
        }
        self.set.status = Some(step.status.clone());
        step
    }

    fn pod_mut(&mut self, name: &str) -> &mut Pod {
        self.pods.iter_mut().find(|p| p.metadata.name.as_deref() == Some(name)).unwrap()
    }

    fn ready(&mut self, name: &str) {
        let t = Timestamp::from_second(self.now).unwrap();
        make_ready(self.pod_mut(name), t);
    }

    /// Readies every pod; whether any was not.
    fn ready_all(&mut self) -> bool {
        let names: Vec<String> = self.pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
        let mut changed = false;
        for n in names {
            if !podutil::is_ready(self.pod_mut(&n)) {
                self.ready(&n);
                changed = true;
            }
        }
        changed
    }

    /// Pods being deleted go away, as their kubelet and the API server finish them; whether
    /// any was.
    fn finish_terminating(&mut self) -> bool {
        let before = self.pods.len();
        self.pods.retain(|p| p.metadata.deletion_timestamp.is_none());
        before != self.pods.len()
    }

    fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        n.sort();
        n
    }

    fn revision(&self, name: &str) -> String {
        let p = self.pods.iter().find(|p| p.metadata.name.as_deref() == Some(name)).unwrap();
        p.metadata.labels.as_ref().unwrap()[crate::controllers::history::REVISION_LABEL].clone()
    }

    /// Steps, finishing deletions and readying pods, until a step does nothing.
    fn settle(&mut self) {
        for _ in 0..100 {
            let step = self.step();
            let gone = self.finish_terminating();
            let readied = self.ready_all();
            if !step.acts() && !gone && !readied {
                return;
            }
        }
        panic!("no steady state");
    }

    fn new_revision(&mut self, image: &str) {
        self.set.spec.as_mut().unwrap().template = template(image);
        self.update = ("db-r2".into(), template(image));
    }
}

fn created(step: &Step) -> Vec<String> {
    step.create.iter().map(|c| c.pod.metadata.name.clone().unwrap()).collect()
}

fn deleted(step: &Step) -> Vec<String> {
    step.delete.iter().map(|(p, _)| p.metadata.name.clone().unwrap()).collect()
}

#[test]
fn ordinals_are_parsed_from_pod_names_of_the_set_only() {
    let cases = [
        ("db-0", Some(0)),
        ("db-12", Some(12)),
        ("db-", None),
        ("db-x", None),
        ("db-1a", None),
        ("dbx-1", None),
        ("other-1", None),
        ("db-web-1", None),
    ];
    for (name, want) in cases {
        assert_eq!(ordinal_of("db", name), want, "{name}");
    }
}

#[test]
fn ordered_ready_creates_each_pod_once_the_previous_is_running_and_ready() {
    let mut w = World::new(set(3, "OrderedReady"));
    assert_eq!(created(&w.step()), ["db-0"]);
    // db-0 Pending: nothing more.
    assert!(!w.step().acts());
    w.ready("db-0");
    assert_eq!(created(&w.step()), ["db-1"]);
    assert!(!w.step().acts());
    w.ready("db-1");
    let s = w.step();
    assert_eq!(created(&s), ["db-2"]);
    assert_eq!((s.status.replicas, s.status.ready_replicas), (3, Some(2)));
    w.ready("db-2");
    let s = w.step();
    assert!(!s.acts());
    assert_eq!(s.status.ready_replicas, Some(3));
    assert_eq!(s.status.available_replicas, Some(3));
    assert_eq!(s.status.current_revision.as_deref(), Some("db-r1"));
    assert_eq!(s.status.observed_generation, Some(1));

    // The identity a pod gets.
    let p = &w.pods[1];
    assert_eq!(p.metadata.name.as_deref(), Some("db-1"));
    let spec = p.spec.as_ref().unwrap();
    assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("db-1"), Some("db-svc")));
    let labels = p.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[POD_NAME_LABEL], "db-1");
    assert_eq!(labels[POD_INDEX_LABEL], "1");
    assert_eq!(labels["controller-revision-hash"], "db-r1");
    assert_eq!(labels["app"], "db");
    let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("StatefulSet", "set-uid", Some(true)));
}

#[test]
fn parallel_creates_and_deletes_all_at_once() {
    let mut w = World::new(set(3, "Parallel"));
    assert_eq!(created(&w.step()), ["db-0", "db-1", "db-2"]);
    w.set.spec.as_mut().unwrap().replicas = Some(1);
    assert_eq!(deleted(&w.step()), ["db-2", "db-1"]);
}

#[test]
fn ordered_scale_down_goes_from_the_highest_ordinal_waiting_for_each_to_end() {
    let mut w = World::new(set(3, "OrderedReady"));
    w.settle();
    w.set.spec.as_mut().unwrap().replicas = Some(1);
    assert_eq!(deleted(&w.step()), ["db-2"]);
    // db-2 still terminating: db-1 waits.
    assert!(!w.step().acts());
    w.finish_terminating();
    assert_eq!(deleted(&w.step()), ["db-1"]);
    w.finish_terminating();
    assert!(!w.step().acts());
    assert_eq!(w.names(), ["db-0"]);
}

#[test]
fn ordered_scale_down_waits_for_the_kept_pods_to_be_ready() {
    let mut w = World::new(set(3, "OrderedReady"));
    w.settle();
    w.set.spec.as_mut().unwrap().replicas = Some(1);
    // db-0, which stays, is not ready: nothing is removed.
    w.pod_mut("db-0").status.as_mut().unwrap().conditions = None;
    assert!(!w.step().acts());
    w.ready("db-0");
    // An unready condemned pod is the first unhealthy one: it may go.
    w.pod_mut("db-2").status.as_mut().unwrap().conditions = None;
    assert_eq!(deleted(&w.step()), ["db-2"]);
}

#[test]
fn failed_pods_are_deleted_and_made_again() {
    let mut w = World::new(set(2, "OrderedReady"));
    w.settle();
    w.pod_mut("db-0").status.as_mut().unwrap().phase = Some("Failed".into());
    let s = w.step();
    assert_eq!(
        s.delete.iter().map(|(p, why)| (p.metadata.name.clone().unwrap(), *why)).collect::<Vec<_>>(),
        [("db-0".to_string(), Why::Failed)]
    );
    w.finish_terminating();
    assert_eq!(created(&w.step()), ["db-0"]);
}

#[test]
fn ordinals_start_where_the_spec_says() {
    let mut s = set(2, "Parallel");
    s.spec.as_mut().unwrap().ordinals = Some(StatefulSetOrdinals { start: Some(5) });
    let mut w = World::new(s);
    assert_eq!(created(&w.step()), ["db-5", "db-6"]);
    w.ready_all();
    w.set.spec.as_mut().unwrap().ordinals = Some(StatefulSetOrdinals { start: Some(6) });
    let s = w.step();
    assert_eq!(deleted(&s), ["db-5"]);
    assert_eq!(created(&s), ["db-7"]);
}

/// (revision, healthy, terminating) per slot.
fn slots(spec: &str) -> Vec<(String, bool, bool)> {
    spec.split_whitespace()
        .map(|s| {
            let rev = if s.starts_with('n') { "new" } else { "old" };
            (rev.to_string(), !s.contains('!') && !s.contains('~'), s.contains('~'))
        })
        .collect()
}

#[test]
fn rolling_update_picks_the_highest_stale_ordinal_above_the_partition() {
    // (slots: o=old n=new, !=unhealthy, ~=terminating; partition; maxUnavailable) → deleted
    let cases: &[(&str, usize, Option<i32>, &[usize])] = &[
        ("o o o", 0, None, &[2]),
        ("o o n", 0, None, &[1]),
        ("o o n!", 0, None, &[]),
        ("o o~ n", 0, None, &[]),
        ("o o o", 2, None, &[2]),
        ("o o n", 2, None, &[]),
        ("o o n", 3, None, &[]),
        ("n n n", 0, None, &[]),
        ("o o o o", 0, Some(2), &[3, 2]),
        ("o o o! o", 0, Some(2), &[3]),
        ("o o! o! o", 0, Some(2), &[]),
        ("o o o o", 2, Some(3), &[3, 2]),
        ("o! o o o", 0, Some(1), &[]),
    ];
    for (spec, partition, max, want) in cases {
        assert_eq!(
            update_plan(&slots(spec), "new", *partition, *max),
            *want,
            "{spec} partition {partition} max {max:?}"
        );
    }
}

#[test]
fn a_partitioned_rolling_update_leaves_the_lower_ordinals_at_the_current_revision() {
    let mut w = World::new(set(4, "OrderedReady"));
    w.settle();
    w.set.spec.as_mut().unwrap().update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().partition = Some(2);
    w.new_revision("busybox:2");
    // The highest ordinal goes first, then one at a time.
    assert_eq!(deleted(&w.step()), ["db-3"]);
    w.finish_terminating();
    let s = w.step();
    assert_eq!(created(&s), ["db-3"]);
    assert_eq!(s.create[0].pod.spec.as_ref().unwrap().containers[0].image.as_deref(), Some("busybox:2"));
    w.settle();
    let revs: Vec<String> = ["db-0", "db-1", "db-2", "db-3"].iter().map(|n| w.revision(n)).collect();
    assert_eq!(revs, ["db-r1", "db-r1", "db-r2", "db-r2"]);
    let st = w.set.status.clone().unwrap();
    assert_eq!((st.current_replicas, st.updated_replicas), (Some(2), Some(2)));
    assert_eq!(st.current_revision.as_deref(), Some("db-r1"));
    assert_eq!(st.update_revision.as_deref(), Some("db-r2"));
    // A recreated low ordinal keeps the current revision.
    w.pods.retain(|p| p.metadata.name.as_deref() != Some("db-0"));
    let s = w.step();
    assert_eq!(s.create[0].pod.metadata.labels.as_ref().unwrap()["controller-revision-hash"], "db-r1");
    // Partition 0 finishes the rollout; the current revision becomes the update one.
    w.set.spec.as_mut().unwrap().update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().partition = Some(0);
    w.settle();
    let st = w.set.status.clone().unwrap();
    assert_eq!(st.current_revision.as_deref(), Some("db-r2"));
    assert_eq!((st.current_replicas, st.updated_replicas, st.ready_replicas), (Some(4), Some(4), Some(4)));
}

#[test]
fn on_delete_only_replaces_what_is_deleted() {
    let mut s = set(2, "OrderedReady");
    s.spec.as_mut().unwrap().update_strategy =
        Some(StatefulSetUpdateStrategy { type_: Some("OnDelete".into()), rolling_update: None });
    let mut w = World::new(s);
    w.settle();
    w.new_revision("busybox:2");
    assert!(!w.step().acts());
    w.pods.retain(|p| p.metadata.name.as_deref() != Some("db-1"));
    let s = w.step();
    assert_eq!(s.create[0].pod.metadata.labels.as_ref().unwrap()["controller-revision-hash"], "db-r2");
}

fn with_claims(s: &mut StatefulSet, when_deleted: &str, when_scaled: &str) {
    let spec = s.spec.as_mut().unwrap();
    spec.volume_claim_templates = Some(vec![PersistentVolumeClaim {
        metadata: ObjectMeta { name: Some("data".into()), ..Default::default() },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            ..Default::default()
        }),
        status: None,
    }]);
    spec.persistent_volume_claim_retention_policy = Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
        when_deleted: Some(when_deleted.into()),
        when_scaled: Some(when_scaled.into()),
    });
    spec.template.spec.as_mut().unwrap().volumes =
        Some(vec![Volume { name: "data".into(), empty_dir: Some(Default::default()), ..Default::default() }]);
}

#[test]
fn claims_are_made_before_their_pod_and_mounted_by_it() {
    let mut s = set(1, "OrderedReady");
    with_claims(&mut s, "Retain", "Retain");
    let mut w = World::new(s);
    let step = w.step();
    let c = &step.create[0];
    assert_eq!(c.claims.len(), 1);
    let claim = &c.claims[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("data-db-0"));
    assert_eq!(claim.metadata.labels.as_ref().unwrap()["app"], "db");
    assert!(claim.metadata.owner_references.is_none(), "Retain: no owner");
    let volumes = c.pod.spec.as_ref().unwrap().volumes.as_ref().unwrap();
    assert_eq!(volumes.len(), 1, "the template's volume of that name is replaced");
    assert_eq!(volumes[0].persistent_volume_claim.as_ref().unwrap().claim_name, "data-db-0");
    // The claim deleted under a Pending pod is made again.
    w.claims.clear();
    let step = w.step();
    let remade: Vec<(String, String)> =
        step.claims.iter().map(|(pod, c)| (pod.clone(), c.metadata.name.clone().unwrap())).collect();
    assert_eq!(remade, [("db-0".to_string(), "data-db-0".to_string())]);
}

#[test]
fn the_retention_policy_sets_the_claims_owners() {
    let owners = |w: &World, claim: &str| -> Vec<String> {
        let c = w.claims.iter().find(|c| c.metadata.name.as_deref() == Some(claim)).unwrap();
        c.metadata.owner_references.iter().flatten().map(|r| format!("{}/{}", r.kind, r.name)).collect()
    };
    // (whenDeleted, whenScaled) → owners of a kept claim, then of a condemned pod's claim
    let cases: &[(&str, &str, &[&str], &[&str])] = &[
        ("Retain", "Retain", &[], &[]),
        ("Delete", "Retain", &["StatefulSet/db"], &["StatefulSet/db"]),
        ("Retain", "Delete", &[], &["Pod/db-1"]),
        ("Delete", "Delete", &["StatefulSet/db"], &["Pod/db-1"]),
    ];
    for (deleted, scaled, kept, condemned) in cases {
        let mut s = set(2, "Parallel");
        with_claims(&mut s, deleted, scaled);
        let mut w = World::new(s);
        w.settle();
        assert_eq!(owners(&w, "data-db-0"), *kept, "{deleted}/{scaled} kept");
        assert_eq!(owners(&w, "data-db-1"), *kept, "{deleted}/{scaled} before the scale-down");
        w.set.spec.as_mut().unwrap().replicas = Some(1);
        let s = w.step();
        assert_eq!(deleted_of(&s), ["db-1"]);
        assert_eq!(owners(&w, "data-db-1"), *condemned, "{deleted}/{scaled} condemned");
    }
}

fn deleted_of(step: &Step) -> Vec<String> {
    deleted(step)
}

#[test]
fn identity_labels_are_restored() {
    let mut w = World::new(set(1, "OrderedReady"));
    w.settle();
    w.pod_mut("db-0").metadata.labels.as_mut().unwrap().remove(POD_NAME_LABEL);
    let s = w.step();
    assert_eq!(s.relabel.len(), 1);
    assert_eq!(s.relabel[0].1[POD_NAME_LABEL], "db-0");
}

#[test]
fn min_ready_seconds_holds_availability_and_the_next_pod() {
    let mut s = set(2, "OrderedReady");
    s.spec.as_mut().unwrap().min_ready_seconds = Some(10);
    let mut w = World::new(s);
    w.step();
    w.ready("db-0");
    let s = w.step();
    assert!(s.create.is_empty(), "db-0 is not available yet");
    assert_eq!((s.status.ready_replicas, s.status.available_replicas), (Some(1), Some(0)));
    assert_eq!(s.requeue, Some(Duration::from_secs(10)));
    w.now += 11;
    assert_eq!(created(&w.step()), ["db-1"]);
}

#[test]
fn max_unavailable_replaces_several_at_once() {
    let mut w = World::new(set(4, "Parallel"));
    w.settle();
    w.set.spec.as_mut().unwrap().update_strategy.as_mut().unwrap().rolling_update.as_mut().unwrap().max_unavailable =
        Some(IntOrString::String("50%".into()));
    w.new_revision("busybox:2");
    assert_eq!(deleted(&w.step()), ["db-3", "db-2"]);
}
