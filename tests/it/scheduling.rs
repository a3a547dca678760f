//! The scheduler in a real server started in process on a temp dir (as `k3rs server`
//! starts its control plane, without a node): Node objects are made by the test, and the
//! pods' kubelet's part (finishing a deletion) is played by the test too.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use crate::controllers::{cluster, make_namespace, within, Cluster};

async fn make_node(c: &Cluster, name: &str, cpu: &str) {
    let nodes: Api<Node> = Api::all(c.client.clone());
    let node = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    });
    nodes.create(&PostParams::default(), &serde_json::from_value(node.clone()).unwrap()).await.expect("node");
    // The status as its kubelet reports it (a create may not keep it).
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": node["status"]})))
        .await
        .expect("node status");
}

fn pod(name: &str, labels: Value, spec: Value) -> Pod {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "busybox", "resources": spec["resources"].take()}]);
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec})).unwrap()
}

async fn node_of(pods: &Api<Pod>, name: &str) -> Option<String> {
    let p = pods.get(name).await.ok()?;
    let node = p.spec.as_ref()?.node_name.clone();
    if node.is_none() {
        // What the scheduler said, for a test that times out.
        let said = p.status.and_then(|s| s.conditions).unwrap_or_default();
        eprintln!("{name}: {:?}", said.iter().map(|c| c.message.clone()).collect::<Vec<_>>());
    }
    node
}

/// The message of the pod's PodScheduled=False condition, once it has one.
async fn unschedulable(pods: &Api<Pod>, name: &str) -> String {
    within(Duration::from_secs(30), &format!("{name} marked unschedulable"), || async {
        let p = pods.get(name).await.ok()?;
        let cond = p.status?.conditions?.into_iter().find(|c| c.type_ == "PodScheduled")?;
        (cond.status == "False" && cond.reason.as_deref() == Some("Unschedulable")).then_some(cond.message?)
    })
    .await
}

async fn events(c: &Cluster, ns: &str, about: &str, reason: &str) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(c.client.clone(), ns);
    let list = api.list(&ListParams::default()).await.expect("events");
    list.items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(about) && e.reason.as_deref() == Some(reason))
        .collect()
}

#[tokio::test]
async fn required_anti_affinity_spreads_pods_and_refuses_a_second_on_one_node() {
    let c = cluster().await;
    make_namespace(&c, "aa").await;
    make_node(&c, "n1", "4").await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "aa");
    let spec = json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}});
    pods.create(&PostParams::default(), &pod("web-1", json!({"app": "web"}), spec.clone())).await.expect("web-1");
    let first = within(Duration::from_secs(30), "web-1 bound", || node_of(&pods, "web-1")).await;
    assert_eq!(first, "n1");

    pods.create(&PostParams::default(), &pod("web-2", json!({"app": "web"}), spec)).await.expect("web-2");
    let msg = unschedulable(&pods, "web-2").await;
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
    );
    let failed = within(Duration::from_secs(30), "FailedScheduling event", || async {
        events(&c, "aa", "web-2", "FailedScheduling").await.into_iter().next()
    })
    .await;
    assert_eq!(failed.message.as_deref(), Some(msg.as_str()));

    // A pod the rules are not about still goes beside web-1.
    let db_spec = json!({});
    pods.create(&PostParams::default(), &pod("other", json!({"app": "db"}), db_spec)).await.expect("other");
    assert_eq!(within(Duration::from_secs(30), "other bound", || node_of(&pods, "other")).await, "n1");

    // A second node appears: the waiting pod goes there, woken by the node and not by the
    // 5-minute retry (the window is wide for a loaded machine).
    make_node(&c, "n2", "4").await;
    let second = within(Duration::from_secs(30), "web-2 bound", || node_of(&pods, "web-2")).await;
    assert_eq!(second, "n2");
}

#[tokio::test]
async fn a_high_priority_pod_preempts_a_low_priority_one_and_is_nominated() {
    let c = cluster().await;
    make_namespace(&c, "prio").await;
    make_node(&c, "n1", "2").await;
    let classes: Api<PriorityClass> = Api::all(c.client.clone());
    for (name, value) in [("low", 100), ("high", 1000)] {
        let pc = json!({"metadata": {"name": name}, "value": value});
        classes.create(&PostParams::default(), &serde_json::from_value(pc).unwrap()).await.expect("class");
    }
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "prio");
    let asking = |class: &str| json!({"priorityClassName": class, "resources": {"requests": {"cpu": "1500m"}}});

    let low = pods.create(&PostParams::default(), &pod("low", json!({}), asking("low"))).await.expect("low");
    assert_eq!(low.spec.as_ref().and_then(|s| s.priority), Some(100), "priority comes from the class");
    assert_eq!(within(Duration::from_secs(30), "low bound", || node_of(&pods, "low")).await, "n1");

    let high = pods.create(&PostParams::default(), &pod("high", json!({}), asking("high"))).await.expect("high");
    let high_uid = high.metadata.uid.clone().expect("uid");
    // The victim is being deleted; the preemptor waits for it, nominated to its node.
    let nominated = within(Duration::from_secs(30), "high nominated", || async {
        pods.get("high").await.ok()?.status?.nominated_node_name
    })
    .await;
    assert_eq!(nominated, "n1");
    let victim = pods.get("low").await.expect("low is still going");
    assert!(victim.metadata.deletion_timestamp.is_some(), "the victim is being deleted");
    // The preempting attempt's diagnosis has no preemption part; the tries after it, while
    // the victim is still going, say why they do not preempt again.
    let preempting = within(Duration::from_secs(30), "the preempting attempt's event", || async {
        let failed = events(&c, "prio", "high", "FailedScheduling").await;
        failed.into_iter().find(|e| e.message.as_deref() == Some("0/1 nodes are available: 1 Insufficient cpu."))
    })
    .await;
    assert_eq!(preempting.type_.as_deref(), Some("Warning"));
    let waiting = "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to a terminating pod on the nominated node.";
    within(Duration::from_secs(30), "high waiting for its victim", || async {
        (unschedulable(&pods, "high").await == waiting).then_some(())
    })
    .await;
    let preempted = within(Duration::from_secs(30), "Preempted event", || async {
        events(&c, "prio", "low", "Preempted").await.into_iter().next()
    })
    .await;
    assert_eq!(preempted.message, Some(format!("Preempted by pod {high_uid} on node n1")));

    // The node's kubelet finishes the deletion: the preemptor takes the room.
    pods.delete("low", &DeleteParams::default().grace_period(0)).await.expect("force delete");
    assert_eq!(within(Duration::from_secs(30), "high bound", || node_of(&pods, "high")).await, "n1");

    // A class that does not exist is refused as upstream's admission does.
    let err = pods.create(&PostParams::default(), &pod("lost", json!({}), asking("nope"))).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(
                (s.code, s.message.as_str()),
                (403, "pods \"lost\" is forbidden: no PriorityClass with name nope was found")
            )
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn gated_pods_wait_until_their_gates_are_removed() {
    let c = cluster().await;
    make_namespace(&c, "gates").await;
    make_node(&c, "n1", "2").await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "gates");
    let gated =
        pod("gated", json!({}), json!({"schedulingGates": [{"name": "example.com/a"}, {"name": "example.com/b"}]}));
    let made = pods.create(&PostParams::default(), &gated).await.expect("gated");
    let cond = made.status.and_then(|s| s.conditions).unwrap_or_default();
    let cond = cond.iter().find(|c| c.type_ == "PodScheduled").expect("a PodScheduled condition at once");
    assert_eq!(
        (cond.status.as_str(), cond.reason.as_deref(), cond.message.as_deref()),
        ("False", Some("SchedulingGated"), Some("Scheduling is blocked due to non-empty scheduling gates"))
    );

    // A gate may be taken away, never added.
    let add = json!({"spec": {"schedulingGates": [{"name": "example.com/a"}, {"name": "example.com/b"}, {"name": "example.com/c"}]}});
    let err = pods.patch("gated", &PatchParams::default(), &Patch::Merge(&add)).await.unwrap_err();
    match err {
        kube::Error::Api(s) => assert!(
            s.code == 422
                && s.message.contains("only deletion is allowed, but found new scheduling gate 'example.com/c'"),
            "{s:?}"
        ),
        other => panic!("unexpected {other:?}"),
    }
    let one_left = json!({"spec": {"schedulingGates": [{"name": "example.com/b"}]}});
    pods.patch("gated", &PatchParams::default(), &Patch::Merge(&one_left)).await.expect("remove one gate");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node_of(&pods, "gated").await, None, "one gate is still there");

    pods.patch("gated", &PatchParams::default(), &Patch::Merge(json!({"spec": {"schedulingGates": null}})))
        .await
        .expect("remove the last gate");
    assert_eq!(within(Duration::from_secs(30), "gated bound", || node_of(&pods, "gated")).await, "n1");
}

#[tokio::test]
async fn a_wait_for_first_consumer_claim_is_bound_before_its_pod_and_volumes_choose_the_node() {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    use k8s_openapi::api::storage::v1::StorageClass;
    let c = cluster().await;
    make_namespace(&c, "vols").await;
    make_node(&c, "n1", "2").await;
    make_node(&c, "n2", "2").await;
    let classes: Api<StorageClass> = Api::all(c.client.clone());
    let late = json!({"metadata": {"name": "local"}, "provisioner": "example.com/local", "volumeBindingMode": "WaitForFirstConsumer"});
    classes.create(&PostParams::default(), &serde_json::from_value(late).unwrap()).await.expect("class");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(c.client.clone(), "vols");
    let claim = |name: &str| {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"storageClassName": "local",
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}))
        .unwrap()
    };
    claims.create(&PostParams::default(), &claim("data")).await.expect("claim");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "vols");
    let mounting = |claim: &str| json!({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": claim}}]});
    pods.create(&PostParams::default(), &pod("user", json!({}), mounting("data"))).await.expect("user");

    // The scheduler names a node on the claim, and holds the pod until a volume is bound.
    let selected = within(Duration::from_secs(30), "the claim's selected node", || async {
        claims.get("data").await.ok()?.metadata.annotations?.get("volume.kubernetes.io/selected-node").cloned()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node_of(&pods, "user").await, None, "not bound before its claim");

    // The provisioner's part, played here: a volume on the selected node, bound to the claim.
    let volumes: Api<PersistentVolume> = Api::all(c.client.clone());
    let pv = |name: &str, node: &str, claim: &str| {
        serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
            "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local",
            "hostPath": {"path": format!("/tmp/{name}")},
            "claimRef": {"namespace": "vols", "name": claim},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}))
        .unwrap()
    };
    volumes.create(&PostParams::default(), &pv("pv-data", &selected, "data")).await.expect("pv");
    claims
        .patch("data", &PatchParams::default(), &Patch::Merge(json!({"spec": {"volumeName": "pv-data"}})))
        .await
        .expect("bind the claim");
    assert_eq!(within(Duration::from_secs(30), "user bound", || node_of(&pods, "user")).await, selected);

    // A claim already bound to a volume that lives on the other node takes its pod there.
    let other = if selected == "n1" { "n2" } else { "n1" };
    claims.create(&PostParams::default(), &claim("pinned")).await.expect("claim");
    volumes.create(&PostParams::default(), &pv("pv-pinned", other, "pinned")).await.expect("pv");
    claims
        .patch("pinned", &PatchParams::default(), &Patch::Merge(json!({"spec": {"volumeName": "pv-pinned"}})))
        .await
        .expect("bind the claim");
    pods.create(&PostParams::default(), &pod("follower", json!({}), mounting("pinned"))).await.expect("follower");
    assert_eq!(within(Duration::from_secs(30), "follower bound", || node_of(&pods, "follower")).await, other);

    // One whose volume fits no node is told so in upstream's words.
    claims.create(&PostParams::default(), &claim("nowhere")).await.expect("claim");
    volumes.create(&PostParams::default(), &pv("pv-nowhere", "n9", "nowhere")).await.expect("pv");
    claims
        .patch("nowhere", &PatchParams::default(), &Patch::Merge(json!({"spec": {"volumeName": "pv-nowhere"}})))
        .await
        .expect("bind the claim");
    pods.create(&PostParams::default(), &pod("stuck", json!({}), mounting("nowhere"))).await.expect("stuck");
    assert_eq!(
        unschedulable(&pods, "stuck").await,
        "0/2 nodes are available: 2 node(s) had volume node affinity conflict. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
}
