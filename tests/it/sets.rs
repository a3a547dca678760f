//! The StatefulSet and DaemonSet controllers in a real server started in process, driven
//! through kube-rs' typed client. Readiness is written by the test, as a kubelet would; the
//! DaemonSet's nodes are Node objects the test makes (with no capacity, so the pods stay
//! unbound and are deleted at once, as pods no kubelet runs are).

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::controllers::{auto_ready, cluster, live_pods, make_namespace, make_ready, within};

fn names(pods: &[Pod]) -> Vec<String> {
    let mut n: Vec<String> = pods.iter().map(|p| p.metadata.name.clone().unwrap()).collect();
    n.sort();
    n
}

fn revision_label(p: &Pod) -> String {
    p.metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone()
}

#[tokio::test]
async fn statefulset_pods_come_in_order_with_their_claims_and_update_above_the_partition() {
    let c = cluster().await;
    make_namespace(&c, "sts").await;
    let sets: Api<StatefulSet> = Api::namespaced(c.client.clone(), "sts");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "sts");
    let revisions: Api<ControllerRevision> = Api::namespaced(c.client.clone(), "sts");
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {
            "replicas": 3,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    }))
    .unwrap();
    let created = sets.create(&PostParams::default(), &set).await.expect("create sts");

    // One at a time: each pod only after the one before is Ready.
    for i in 0..3 {
        let want: Vec<String> = (0..=i).map(|o| format!("db-{o}")).collect();
        let pods = within(Duration::from_secs(10), &format!("pods {want:?}"), || async {
            let p = live_pods(&c, "sts", "app=db").await;
            (names(&p) == want).then_some(p)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(names(&live_pods(&c, "sts", "app=db").await), want, "no pod before db-{i} is Ready");
        let newest = pods.iter().find(|p| p.metadata.name.as_deref() == Some(&format!("db-{i}"))).unwrap();
        make_ready(&c, newest).await;
    }
    let pods = live_pods(&c, "sts", "app=db").await;
    for p in &pods {
        let name = p.metadata.name.clone().unwrap();
        let spec = p.spec.as_ref().unwrap();
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some(name.as_str()), Some("db")));
        let labels = p.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["statefulset.kubernetes.io/pod-name"], name);
        assert_eq!(labels["apps.kubernetes.io/pod-index"], name.trim_start_matches("db-"));
        let claim = spec.volumes.as_ref().unwrap().iter().find(|v| v.name == "data").unwrap();
        assert_eq!(claim.persistent_volume_claim.as_ref().unwrap().claim_name, format!("data-{name}"));
        let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("StatefulSet", created.metadata.uid.as_deref().unwrap())
        );
    }
    let mut claim_names: Vec<String> = claims
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    claim_names.sort();
    assert_eq!(claim_names, ["data-db-0", "data-db-1", "data-db-2"]);

    let status = within(Duration::from_secs(10), "3 ready replicas", || async {
        let s = sets.get("db").await.ok()?.status?;
        (s.ready_replicas == Some(3) && s.available_replicas == Some(3) && s.observed_generation == Some(1))
            .then_some(s)
    })
    .await;
    let first = status.update_revision.clone().unwrap();
    assert_eq!(status.current_revision.as_deref(), Some(first.as_str()));
    assert_eq!((status.replicas, status.current_replicas, status.updated_replicas), (3, Some(3), Some(3)));
    let revs = revisions.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(revs.len(), 1);
    assert_eq!((revs[0].metadata.name.as_deref(), revs[0].revision), (Some(first.as_str()), 1));
    assert!(first.starts_with("db-"));
    assert!(pods.iter().all(|p| revision_label(p) == first));

    // A new template above partition 2: only db-2 is replaced.
    let kubelet = auto_ready(&c, "sts");
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}},
            "template": {"spec": {"containers": [{"name": "c", "image": "busybox:2",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
        }})),
    )
    .await
    .expect("update");
    let status = within(Duration::from_secs(20), "the partitioned update", || async {
        let s = sets.get("db").await.ok()?.status?;
        (s.observed_generation == Some(2) && s.updated_replicas == Some(1) && s.ready_replicas == Some(3)).then_some(s)
    })
    .await;
    let second = status.update_revision.clone().unwrap();
    assert_ne!(second, first);
    assert_eq!(status.current_revision.as_deref(), Some(first.as_str()));
    assert_eq!(status.current_replicas, Some(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pods = live_pods(&c, "sts", "app=db").await;
    let by_name = |n: &str| pods.iter().find(|p| p.metadata.name.as_deref() == Some(n)).map(revision_label);
    assert_eq!(
        (by_name("db-0"), by_name("db-1"), by_name("db-2")),
        (Some(first.clone()), Some(first.clone()), Some(second.clone()))
    );
    let revs = revisions.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(revs.iter().find(|r| r.metadata.name.as_deref() == Some(&second)).unwrap().revision, 2);

    // Partition 0 finishes it; the current revision follows.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})),
    )
    .await
    .expect("partition 0");
    within(Duration::from_secs(30), "the update complete", || async {
        let s = sets.get("db").await.ok()?.status?;
        (s.current_revision.as_deref() == Some(second.as_str())
            && s.updated_replicas == Some(3)
            && s.ready_replicas == Some(3))
        .then_some(())
    })
    .await;
    assert!(live_pods(&c, "sts", "app=db").await.iter().all(|p| revision_label(p) == second));

    // Scaled down, the highest ordinals go; their claims stay (Retain).
    sets.patch("db", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await.expect("scale");
    within(Duration::from_secs(20), "one pod", || async {
        (names(&live_pods(&c, "sts", "app=db").await) == ["db-0"]).then_some(())
    })
    .await;
    assert_eq!(claims.list(&ListParams::default()).await.unwrap().items.len(), 3);
    kubelet.abort();
}

async fn make_node(c: &crate::controllers::Cluster, name: &str, taint: Option<&str>) {
    let nodes: Api<Node> = Api::all(c.client.clone());
    let taints = taint.map(|k| json!([{"key": k, "effect": "NoSchedule"}])).unwrap_or(json!([]));
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {"taints": taints},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.expect("node");
}

/// The node a daemon pod is pinned to by its affinity.
fn pinned_node(p: &Pod) -> String {
    let a = p.spec.as_ref().unwrap().affinity.as_ref().unwrap();
    let terms =
        &a.node_affinity.as_ref().unwrap().required_during_scheduling_ignored_during_execution.as_ref().unwrap();
    terms.node_selector_terms[0].match_fields.as_ref().unwrap()[0].values.as_ref().unwrap()[0].clone()
}

#[tokio::test]
async fn daemonset_puts_one_pod_on_each_node_and_rolls_them() {
    let c = cluster().await;
    make_namespace(&c, "ds").await;
    make_node(&c, "n1", None).await;
    make_node(&c, "n2", None).await;
    make_node(&c, "n3", Some("dedicated")).await;
    let kubelet = auto_ready(&c, "ds");
    let sets: Api<DaemonSet> = Api::namespaced(c.client.clone(), "ds");
    let revisions: Api<ControllerRevision> = Api::namespaced(c.client.clone(), "ds");
    let ds: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
            },
        },
    }))
    .unwrap();
    sets.create(&PostParams::default(), &ds).await.expect("create ds");
    let done = |generation: i64| {
        let sets = sets.clone();
        async move {
            let d = sets.get("agent").await.ok()?;
            let s = d.status?;
            (s.observed_generation == Some(generation)
                && s.desired_number_scheduled == 2
                && s.current_number_scheduled == 2
                && s.number_ready == 2
                && s.number_available == Some(2)
                && s.updated_number_scheduled == Some(2)
                && s.number_unavailable == Some(0)
                && s.number_misscheduled == 0)
                .then_some(())
        }
    };
    within(Duration::from_secs(20), "2 daemon pods ready", || done(1)).await;
    let pods = live_pods(&c, "ds", "app=agent").await;
    let mut on: Vec<String> = pods.iter().map(pinned_node).collect();
    on.sort();
    assert_eq!(on, ["n1", "n2"], "none on the tainted node");
    let revs = revisions.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(revs.len(), 1);
    let first = revs[0].metadata.labels.as_ref().unwrap()["controller-revision-hash"].clone();
    assert_eq!(revs[0].metadata.name.as_deref(), Some(format!("agent-{first}").as_str()));
    assert!(pods.iter().all(|p| revision_label(p) == first));
    let tolerations = pods[0].spec.as_ref().unwrap().tolerations.clone().unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t.key.as_deref() == Some("node.kubernetes.io/not-ready") && t.effect.as_deref() == Some("NoExecute")));

    // A new template rolls out node by node.
    sets.patch(
        "agent",
        &PatchParams::default(),
        &Patch::Strategic(
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}}),
        ),
    )
    .await
    .expect("update");
    within(Duration::from_secs(30), "the rollout", || async {
        done(2).await?;
        let pods = live_pods(&c, "ds", "app=agent").await;
        (pods.len() == 2 && pods.iter().all(|p| revision_label(p) != first)).then_some(())
    })
    .await;
    assert_eq!(revisions.list(&ListParams::default()).await.unwrap().items.len(), 2);

    // A new node gets a pod.
    make_node(&c, "n4", None).await;
    within(Duration::from_secs(20), "a pod on n4", || async {
        let pods = live_pods(&c, "ds", "app=agent").await;
        pods.iter().any(|p| pinned_node(p) == "n4").then_some(())
    })
    .await;
    kubelet.abort();
}

#[tokio::test]
async fn statefulset_claims_carry_the_owners_of_their_retention_policy() {
    let c = cluster().await;
    make_namespace(&c, "keep").await;
    let kubelet = auto_ready(&c, "keep");
    let sets: Api<StatefulSet> = Api::namespaced(c.client.clone(), "keep");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "keep");
    let set: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "q"},
        "spec": {
            "replicas": 2,
            "podManagementPolicy": "Parallel",
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
            "selector": {"matchLabels": {"app": "q"}},
            "template": {
                "metadata": {"labels": {"app": "q"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "d"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    }))
    .unwrap();
    let created = sets.create(&PostParams::default(), &set).await.expect("create sts");
    let set_uid = created.metadata.uid.unwrap();
    let owners = |name: &'static str| {
        let claims = claims.clone();
        async move {
            let c = claims.get_opt(name).await.ok()??;
            Some(
                c.metadata
                    .owner_references
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| (r.kind, r.uid))
                    .collect::<Vec<_>>(),
            )
        }
    };
    for name in ["d-q-0", "d-q-1"] {
        within(Duration::from_secs(10), "the set owning the claim", || async {
            (owners(name).await? == [("StatefulSet".to_string(), set_uid.clone())]).then_some(())
        })
        .await;
    }
    within(Duration::from_secs(10), "2 ready", || async {
        (sets.get("q").await.ok()?.status?.ready_replicas == Some(2)).then_some(())
    })
    .await;
    // Scaled down, the condemned pod's claim is handed to the pod (to go with it).
    let pod_uid = Api::<Pod>::namespaced(c.client.clone(), "keep").get("q-1").await.unwrap().metadata.uid.unwrap();
    sets.patch("q", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await.expect("scale");
    // With the garbage collector running, the claim may already have gone with its pod,
    // which is where whenScaled: Delete leads.
    within(Duration::from_secs(10), "the pod owning the condemned claim, or the claim gone with it", || async {
        if claims.get_opt("d-q-1").await.ok()?.is_none() {
            return Some(());
        }
        let o = owners("d-q-1").await?;
        (o.contains(&("Pod".to_string(), pod_uid.clone())) && o.iter().all(|(k, _)| k != "StatefulSet")).then_some(())
    })
    .await;
    assert_eq!(owners("d-q-0").await.unwrap(), [("StatefulSet".to_string(), set_uid.clone())]);
    kubelet.abort();
}
