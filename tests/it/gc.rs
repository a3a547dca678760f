//! The garbage collectors in a real server started in process: the three propagation
//! policies on a ReplicaSet and its pods, ownership across other types (a ConfigMap owned by
//! a Secret), a dependent with two owners; and the pod GC's terminated-pod threshold.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::rbac::v1::ClusterRole;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::controllers::{cluster, cluster_with, live_pods, make_namespace, within, Cluster};

const LIMIT: Duration = Duration::from_secs(20);

async fn replicaset_with_pods(c: &Cluster, ns: &str, name: &str, replicas: usize) -> (ReplicaSet, Vec<Pod>) {
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), ns);
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))
    .unwrap();
    let rs = rss.create(&PostParams::default(), &rs).await.expect("create rs");
    let selector = format!("app={name}");
    let pods = within(LIMIT, "the replicas", || async {
        let p = live_pods(c, ns, &selector).await;
        (p.len() == replicas).then_some(p)
    })
    .await;
    (rs, pods)
}

/// Every pod with the label, terminating or not.
async fn all_pods(c: &Cluster, ns: &str, selector: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(c.client.clone(), ns);
    api.list(&ListParams::default().labels(selector)).await.expect("list pods").items
}

fn owner_ref(kind: &str, name: &str, uid: &str, block: bool) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: None,
        block_owner_deletion: Some(block),
    }
}

async fn secret(c: &Cluster, ns: &str, name: &str) -> Secret {
    let api: Api<Secret> = Api::namespaced(c.client.clone(), ns);
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": {"k": "v"}})).unwrap();
    api.create(&PostParams::default(), &s).await.expect("create secret")
}

async fn config_map(c: &Cluster, ns: &str, name: &str, owners: Vec<OwnerReference>) -> ConfigMap {
    let api: Api<ConfigMap> = Api::namespaced(c.client.clone(), ns);
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": name, "ownerReferences": owners}, "data": {"k": "v"}}))
            .unwrap();
    api.create(&PostParams::default(), &cm).await.expect("create configmap")
}

fn uid<K: kube::Resource>(o: &K) -> String {
    o.meta().uid.clone().expect("uid")
}

#[tokio::test]
async fn background_deletion_takes_the_pods() {
    let c = cluster().await;
    make_namespace(&c, "bg").await;
    replicaset_with_pods(&c, "bg", "web", 3).await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "bg");
    rss.delete("web", &DeleteParams::background()).await.expect("delete rs");
    // The ReplicaSet goes at once; the collector takes its pods after.
    assert!(rss.get_opt("web").await.expect("get rs").is_none());
    within(LIMIT, "the pods to go", || async { all_pods(&c, "bg", "app=web").await.is_empty().then_some(()) }).await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_the_pods() {
    let c = cluster().await;
    make_namespace(&c, "fg").await;
    let (rs, pods) = replicaset_with_pods(&c, "fg", "web", 2).await;
    // One pod is held by a finalizer of its own, so the ReplicaSet's wait can be seen.
    let pod_api: Api<Pod> = Api::namespaced(c.client.clone(), "fg");
    let held = pods[0].metadata.name.clone().unwrap();
    pod_api
        .patch(&held, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})))
        .await
        .expect("hold a pod");

    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "fg");
    rss.delete("web", &DeleteParams::foreground()).await.expect("delete rs");
    within(LIMIT, "the free pod to go and the held one to be deleting", || async {
        let left = all_pods(&c, "fg", "app=web").await;
        (left.len() == 1
            && left[0].metadata.name.as_deref() == Some(&held)
            && left[0].metadata.deletion_timestamp.is_some())
        .then_some(())
    })
    .await;
    // The owner waits, marked, with its finalizer, as long as a blocking dependent is there.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = rss.get("web").await.expect("the ReplicaSet waits");
    assert_eq!(waiting.metadata.uid, rs.metadata.uid);
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert!(waiting.metadata.finalizers.unwrap_or_default().contains(&"foregroundDeletion".to_string()));

    pod_api
        .patch(&held, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .expect("release the pod");
    within(LIMIT, "the ReplicaSet to go", || async { rss.get_opt("web").await.ok()?.is_none().then_some(()) }).await;
    assert!(all_pods(&c, "fg", "app=web").await.is_empty());
}

#[tokio::test]
async fn orphan_deletion_frees_the_pods() {
    let c = cluster().await;
    make_namespace(&c, "orphan").await;
    let (_, pods) = replicaset_with_pods(&c, "orphan", "web", 2).await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "orphan");
    rss.delete("web", &DeleteParams::orphan()).await.expect("delete rs");
    within(LIMIT, "the ReplicaSet to go", || async { rss.get_opt("web").await.ok()?.is_none().then_some(()) }).await;
    let left = live_pods(&c, "orphan", "app=web").await;
    let mut names: Vec<_> = left.iter().map(|p| p.metadata.name.clone()).collect();
    let mut before: Vec<_> = pods.iter().map(|p| p.metadata.name.clone()).collect();
    names.sort();
    before.sort();
    assert_eq!(names, before, "the same pods stay");
    for p in &left {
        assert!(p.metadata.owner_references.as_deref().unwrap_or_default().is_empty(), "{:?}", p.metadata);
    }
}

#[tokio::test]
async fn a_config_map_goes_with_the_secret_that_owns_it() {
    let c = cluster().await;
    make_namespace(&c, "types").await;
    let s = secret(&c, "types", "owner").await;
    config_map(&c, "types", "owned", vec![owner_ref("Secret", "owner", &uid(&s), false)]).await;
    // A reference to a namesake with another UID is a reference to an owner that is gone.
    config_map(&c, "types", "stale", vec![owner_ref("Secret", "owner", "not-its-uid", false)]).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "types");
    within(LIMIT, "the stale reference's dependent to go", || async {
        cms.get_opt("stale").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(cms.get_opt("owned").await.expect("get").is_some(), "its owner is there");

    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "types");
    secrets.delete("owner", &DeleteParams::default()).await.expect("delete secret");
    within(LIMIT, "the ConfigMap to go", || async { cms.get_opt("owned").await.ok()?.is_none().then_some(()) }).await;

    // A cluster-scoped owner of another API group.
    let roles: Api<ClusterRole> = Api::all(c.client.clone());
    let role: ClusterRole = serde_json::from_value(json!({"metadata": {"name": "gc-owner"}, "rules": []})).unwrap();
    let role = roles.create(&PostParams::default(), &role).await.expect("create clusterrole");
    let mut r = owner_ref("ClusterRole", "gc-owner", &uid(&role), false);
    r.api_version = "rbac.authorization.k8s.io/v1".into();
    config_map(&c, "types", "cluster-owned", vec![r]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cms.get_opt("cluster-owned").await.expect("get").is_some(), "its owner is there");
    roles.delete("gc-owner", &DeleteParams::default()).await.expect("delete clusterrole");
    within(LIMIT, "the ClusterRole's ConfigMap to go", || async {
        cms.get_opt("cluster-owned").await.ok()?.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_dependent_with_two_owners_outlives_one() {
    let c = cluster().await;
    make_namespace(&c, "two").await;
    let a = secret(&c, "two", "a").await;
    let b = secret(&c, "two", "b").await;
    config_map(
        &c,
        "two",
        "shared",
        vec![owner_ref("Secret", "a", &uid(&a), true), owner_ref("Secret", "b", &uid(&b), false)],
    )
    .await;
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), "two");
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "two");
    secrets.delete("a", &DeleteParams::background()).await.expect("delete a");
    // The reference to the owner that is gone is removed; the other keeps the dependent.
    let left = within(LIMIT, "the dangling reference to go", || async {
        let cm = cms.get("shared").await.ok()?;
        let refs = cm.metadata.owner_references.unwrap_or_default();
        (refs.len() == 1).then_some(refs)
    })
    .await;
    assert_eq!(left[0].uid, uid(&b));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(cms.get_opt("shared").await.expect("get").is_some(), "one owner remains");

    secrets.delete("b", &DeleteParams::background()).await.expect("delete b");
    within(LIMIT, "the ConfigMap to go", || async { cms.get_opt("shared").await.ok()?.is_none().then_some(()) }).await;
}

#[tokio::test]
async fn terminated_pods_beyond_the_threshold_go_evicted_first_then_oldest() {
    let c = cluster_with(|config| config.controller_settings.podgc.terminated_pod_gc_threshold = 1).await;
    make_namespace(&c, "podgc").await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "podgc");
    for (name, phase, reason) in
        [("a-old", "Succeeded", None), ("b-new", "Failed", None), ("c-evicted", "Failed", Some("Evicted"))]
    {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": "done"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &p).await.expect("create pod");
        let status = json!({"status": {"phase": phase, "reason": reason}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.expect("pod status");
        // Creation times a second apart: oldest first is then plain to see.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // A running pod never counts.
    let running: Pod = serde_json::from_value(json!({
        "metadata": {"name": "running", "labels": {"app": "done"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &running).await.expect("create pod");
    // The collector sweeps every 20 s.
    let left = within(Duration::from_secs(45), "two terminated pods to go", || async {
        let left = all_pods(&c, "podgc", "app=done").await;
        (left.len() == 2).then_some(left)
    })
    .await;
    let mut names: Vec<_> = left.iter().filter_map(|p| p.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["b-new", "running"]);
}
