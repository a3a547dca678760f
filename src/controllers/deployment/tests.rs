//! The sync run in memory against ReplicaSets whose pods become available at once, as a
//! ReplicaSet controller and kubelet would make them, with a fake clock.

use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStrategy, ReplicaSetStatus, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use super::sync::{sync, Input, Step};
use super::util::*;
use super::*;

fn deployment(replicas: i32, image: &str, strategy: &str) -> Deployment {
    let labels = Some([("app".to_string(), "web".to_string())].into());
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            namespace: Some("ns".into()),
            uid: Some("d-uid".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector { match_labels: labels.clone(), match_expressions: None },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels, ..Default::default() }),
                spec: Some(PodSpec {
                    containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }],
                    ..Default::default()
                }),
            },
            strategy: Some(DeploymentStrategy {
                type_: Some(strategy.into()),
                rolling_update: (strategy == "RollingUpdate").then(|| RollingUpdateDeployment {
                    max_surge: Some(IntOrString::String("25%".into())),
                    max_unavailable: Some(IntOrString::String("25%".into())),
                }),
            }),
            revision_history_limit: Some(2),
            progress_deadline_seconds: Some(600),
            ..Default::default()
        }),
        status: None,
    }
}

/// An in-memory cluster: the deployment and its ReplicaSets.
struct World {
    d: Deployment,
    rss: Vec<ReplicaSet>,
    now: i64,
    created: usize,
    /// Pods of old ReplicaSets still running (Recreate).
    running_old: bool,
}

impl World {
    fn new(d: Deployment) -> Self {
        World { d, rss: Vec::new(), now: 1_000_000, created: 0, running_old: false }
    }

    fn step(&mut self) -> Step {
        let running = self.running_old;
        let step = sync(Input {
            d: &self.d,
            owned: self.rss.clone(),
            old_pods_running: &|old| running && old.iter().any(|rs| rs.status.as_ref().is_some_and(|s| s.replicas > 0)),
            now: Timestamp::from_second(self.now).unwrap(),
        });
        if let Some(mut rs) = step.create.clone() {
            self.created += 1;
            rs.metadata.uid = Some(format!("rs-{}", self.created));
            rs.metadata.creation_timestamp = Some(Time(Timestamp::from_second(self.now).unwrap()));
            self.rss.push(rs);
        }
        for s in &step.update {
            let i = self.rss.iter().position(|r| r.metadata.name == s.rs.metadata.name).unwrap();
            let status = self.rss[i].status.clone();
            self.rss[i] = s.rs.clone();
            self.rss[i].status = status;
        }
        for d in &step.delete {
            self.rss.retain(|r| r.metadata.name != d.metadata.name);
        }
        if let Some(rev) = &step.revision {
            self.d.metadata.annotations.get_or_insert_with(Default::default).insert(REVISION.into(), rev.clone());
        }
        if let Some(s) = &step.status {
            self.d.status = Some(s.clone());
        }
        self.now += 1;
        step
    }

    /// The ReplicaSet controller and kubelets catch up: every replica exists and is available.
    fn settle_pods(&mut self) {
        for rs in &mut self.rss {
            let n = rs_replicas(rs);
            rs.status = Some(ReplicaSetStatus {
                replicas: n,
                ready_replicas: Some(n),
                available_replicas: Some(n),
                observed_generation: rs.metadata.generation,
                ..Default::default()
            });
        }
    }

    fn total(&self) -> i32 {
        self.rss.iter().map(rs_replicas).sum()
    }

    fn available(&self) -> i32 {
        self.rss.iter().map(rs_available).sum()
    }

    /// Runs steps and pod settling until nothing changes; checks the rolling-update bounds
    /// on the way.
    fn converge(&mut self, bounds: Option<(i32, i32)>) {
        for _ in 0..200 {
            let step = self.step();
            if let Some((max_total, min_available)) = bounds {
                assert!(self.total() <= max_total, "{} replicas exceed {max_total}", self.total());
                assert!(self.available() >= min_available, "{} available, under {min_available}", self.available());
            }
            let quiet =
                step.create.is_none() && step.update.is_empty() && step.delete.is_empty() && step.status.is_none();
            let before: Vec<_> = self.rss.iter().map(|r| r.status.clone()).collect();
            self.settle_pods();
            let after: Vec<_> = self.rss.iter().map(|r| r.status.clone()).collect();
            if quiet && before == after {
                return;
            }
        }
        panic!("did not converge");
    }

    fn set_image(&mut self, image: &str) {
        let spec = self.d.spec.as_mut().unwrap();
        spec.template.spec.as_mut().unwrap().containers[0].image = Some(image.into());
        self.d.metadata.generation = Some(self.d.metadata.generation.unwrap() + 1);
    }

    fn condition(&self, t: &str) -> (String, String) {
        let c = condition(self.d.status.as_ref().unwrap(), t).unwrap();
        (c.status.clone(), c.reason.clone().unwrap_or_default())
    }
}

#[test]
fn a_new_deployment_gets_a_hashed_replica_set_at_full_size() {
    let mut w = World::new(deployment(3, "busybox:1", "RollingUpdate"));
    let step = w.step();
    let rs = step.create.expect("a new ReplicaSet");
    let hash = rs.metadata.labels.as_ref().unwrap()[POD_TEMPLATE_HASH].clone();
    assert_eq!(rs.metadata.name.as_deref(), Some(format!("web-{hash}").as_str()));
    assert_eq!(rs.spec.as_ref().unwrap().selector.match_labels.as_ref().unwrap()[POD_TEMPLATE_HASH], hash);
    assert_eq!(rs_replicas(&rs), 3);
    assert_eq!(revision(&rs), 1);
    assert_eq!(desired_replicas_annotation(&rs), Some(3));
    assert_eq!(max_replicas_annotation(&rs), Some(4));
    assert_eq!(rs.metadata.owner_references.as_ref().unwrap()[0].kind, "Deployment");
    assert_eq!(step.revision.as_deref(), Some("1"));
    assert_eq!(w.condition("Progressing"), ("True".into(), "NewReplicaSetCreated".into()));
    assert_eq!(w.condition("Available"), ("False".into(), "MinimumReplicasUnavailable".into()));
    w.converge(None);
    let s = w.d.status.clone().unwrap();
    assert_eq!((s.replicas, s.updated_replicas, s.available_replicas), (Some(3), Some(3), Some(3)));
    assert_eq!(w.condition("Progressing"), ("True".into(), "NewReplicaSetAvailable".into()));
    assert_eq!(w.condition("Available"), ("True".into(), "MinimumReplicasAvailable".into()));
    assert_eq!(w.rss.len(), 1);
}

#[test]
fn a_rolling_update_stays_within_surge_and_unavailability() {
    let mut w = World::new(deployment(10, "busybox:1", "RollingUpdate"));
    w.converge(None);
    w.set_image("busybox:2");
    // 25 %: at most 13 replicas, at least 8 available.
    w.converge(Some((13, 8)));
    assert_eq!(w.rss.len(), 2);
    let new = w.rss.iter().find(|r| revision(r) == 2).unwrap();
    assert_eq!(rs_replicas(new), 10);
    let old = w.rss.iter().find(|r| revision(r) == 1).unwrap();
    assert_eq!(rs_replicas(old), 0);
    assert_eq!(annotation(&w.d.metadata, REVISION), Some("2"));
    assert_eq!(w.condition("Progressing").1, "NewReplicaSetAvailable");
}

#[test]
fn undo_reuses_the_old_replica_set_with_the_next_revision_and_history_is_trimmed() {
    let mut w = World::new(deployment(2, "busybox:1", "RollingUpdate"));
    w.converge(None);
    for image in ["busybox:2", "busybox:3", "busybox:4"] {
        w.set_image(image);
        w.converge(None);
    }
    // revisionHistoryLimit 2: revision 1 went.
    let mut revs: Vec<i64> = w.rss.iter().map(revision).collect();
    revs.sort();
    assert_eq!(revs, [2, 3, 4]);
    // `kubectl rollout undo` writes revision 3's template back.
    w.set_image("busybox:3");
    w.converge(None);
    let back = w.rss.iter().find(|r| rs_replicas(r) == 2).unwrap();
    assert_eq!(revision(back), 5);
    assert_eq!(annotation(&back.metadata, REVISION_HISTORY), Some("3"));
    assert_eq!(w.rss.len(), 3);
}

#[test]
fn scaling_in_the_middle_of_a_rollout_is_proportional() {
    let mut w = World::new(deployment(10, "busybox:1", "RollingUpdate"));
    w.converge(None);
    w.set_image("busybox:2");
    // One step: the new set surges to 3 (13 in all) and nothing is available yet.
    w.step();
    w.step();
    let sizes = |w: &World| {
        let mut v: Vec<(i64, i32)> = w.rss.iter().map(|r| (revision(r), rs_replicas(r))).collect();
        v.sort();
        v
    };
    let before = sizes(&w);
    assert_eq!(before.iter().map(|x| x.1).sum::<i32>(), 13, "{before:?}");
    w.d.spec.as_mut().unwrap().replicas = Some(20);
    w.step();
    let after = sizes(&w);
    // 20 + 5 surge = 25, shared in proportion to each set's size.
    assert_eq!(after.iter().map(|x| x.1).sum::<i32>(), 25, "{after:?}");
    assert!(after[0].1 > before[0].1 && after[1].1 > before[1].1, "{before:?} -> {after:?}");
    w.converge(None);
    assert_eq!(sizes(&w).last().unwrap().1, 20);
}

#[test]
fn recreate_stops_every_old_pod_before_starting_new_ones() {
    let mut w = World::new(deployment(3, "busybox:1", "Recreate"));
    w.converge(None);
    w.set_image("busybox:2");
    w.running_old = true;
    let step = w.step();
    assert!(step.create.is_none());
    assert_eq!(w.total(), 0, "the old set went to 0 first");
    w.settle_pods();
    // Its pods are still running (terminating): no new set yet.
    w.rss[0].status.as_mut().unwrap().replicas = 3;
    assert!(w.step().create.is_none());
    w.running_old = false;
    w.settle_pods();
    let step = w.step();
    assert_eq!(step.create.as_ref().map(rs_replicas), Some(3));
    w.converge(None);
    assert_eq!(w.condition("Progressing").1, "NewReplicaSetAvailable");
}

#[test]
fn pausing_and_resuming_show_in_the_progressing_condition() {
    let mut w = World::new(deployment(2, "busybox:1", "RollingUpdate"));
    w.converge(None);
    w.d.spec.as_mut().unwrap().paused = Some(true);
    w.set_image("busybox:2");
    w.converge(None);
    assert_eq!(w.condition("Progressing"), ("Unknown".into(), "DeploymentPaused".into()));
    assert_eq!(w.rss.len(), 1, "no rollout while paused");
    // Scaling still works while paused.
    w.d.spec.as_mut().unwrap().replicas = Some(4);
    w.converge(None);
    assert_eq!(w.total(), 4);
    w.d.spec.as_mut().unwrap().paused = Some(false);
    // Resumed, the rollout starts in the same sync.
    let step = w.step();
    assert!(step.create.is_some());
    assert_eq!(w.condition("Progressing").1, "NewReplicaSetCreated");
    w.converge(None);
    assert_eq!(w.rss.len(), 2);
    assert_eq!(w.condition("Progressing").1, "NewReplicaSetAvailable");
}

#[test]
fn no_progress_within_the_deadline_is_reported() {
    let mut w = World::new(deployment(2, "busybox:1", "RollingUpdate"));
    w.d.spec.as_mut().unwrap().progress_deadline_seconds = Some(30);
    let step = w.step();
    assert_eq!(step.requeue, Some(std::time::Duration::from_secs(30)));
    // Pods never become available.
    w.now += 31;
    w.step();
    let (status, reason) = w.condition("Progressing");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "ProgressDeadlineExceeded"));
    let c = condition(w.d.status.as_ref().unwrap(), "Progressing").unwrap();
    assert!(c.message.as_deref().unwrap().ends_with("has timed out progressing."));
}

#[test]
fn an_empty_selector_is_refused_with_a_warning() {
    let mut d = deployment(1, "busybox:1", "RollingUpdate");
    d.spec.as_mut().unwrap().selector = LabelSelector::default();
    let mut w = World::new(d);
    let step = w.step();
    assert!(step.create.is_none());
    assert_eq!(step.warnings[0].0, "SelectingAll");
}
