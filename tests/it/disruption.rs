//! Disruption budgets, eviction and resource quotas in a real server started in process,
//! driven through kube-rs' typed client: the disruption controller's status, the
//! `pods/eviction` subresource honouring it, and quota admission refusing what would exceed
//! a quota with upstream's words. Readiness is written by the test, as a kubelet would.

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, EvictParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::controllers::{auto_ready, cluster, live_pods, make_namespace, within, Cluster};

fn replicaset(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
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
    .unwrap()
}

fn budget(name: &str, app: &str, spec: serde_json::Value) -> PodDisruptionBudget {
    let mut s = spec;
    s["selector"] = json!({"matchLabels": {"app": app}});
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": s})).unwrap()
}

/// Waits until the budget's status, for its current generation, satisfies `f`.
async fn status_where(
    c: &Cluster,
    ns: &str,
    name: &str,
    what: &str,
    f: impl Fn(&k8s_openapi::api::policy::v1::PodDisruptionBudgetStatus) -> bool,
) -> PodDisruptionBudget {
    let api: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), ns);
    within(Duration::from_secs(20), what, || async {
        let b = api.get(name).await.ok()?;
        let s = b.status.as_ref()?;
        (s.observed_generation == b.metadata.generation && f(s)).then_some(b)
    })
    .await
}

#[tokio::test]
async fn budget_status_follows_the_pods_and_the_controllers_scale() {
    let c = cluster().await;
    make_namespace(&c, "pdb").await;
    let _kubelet = auto_ready(&c, "pdb");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "pdb");
    rss.create(&PostParams::default(), &replicaset("web", 3)).await.expect("rs");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "pdb");
    pdbs.create(&PostParams::default(), &budget("web", "web", json!({"minAvailable": 2}))).await.expect("pdb");

    let b = status_where(&c, "pdb", "web", "3 healthy of 2", |s| s.current_healthy == 3).await;
    let s = b.status.unwrap();
    assert_eq!((s.expected_pods, s.desired_healthy, s.disruptions_allowed), (3, 2, 1));
    let cond = s.conditions.unwrap().into_iter().find(|c| c.type_ == "DisruptionAllowed").expect("condition");
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("True", "SufficientPods"));
    assert_eq!(cond.observed_generation, Some(1));

    // maxUnavailable as a percentage of the ReplicaSet's scale, rounded up.
    let patch = json!({"spec": {"minAvailable": null, "maxUnavailable": "30%"}});
    pdbs.patch("web", &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch");
    let b = status_where(&c, "pdb", "web", "generation 2 seen", |s| s.observed_generation == Some(2)).await;
    let s = b.status.unwrap();
    // 30% of 3 rounds up to 1 unavailable.
    assert_eq!((s.expected_pods, s.desired_healthy, s.disruptions_allowed), (3, 2, 1));

    // Scaled to 4, the percentage follows the new scale.
    rss.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 4}}))).await.expect("scale");
    let b = status_where(&c, "pdb", "web", "4 expected", |s| s.expected_pods == 4 && s.current_healthy == 4).await;
    // 30% of 4 rounds up to 2.
    assert_eq!(b.status.unwrap().desired_healthy, 2);

    // maxUnavailable 0: nothing may go.
    let patch = json!({"spec": {"maxUnavailable": 0}});
    pdbs.patch("web", &PatchParams::default(), &Patch::Merge(patch)).await.expect("patch");
    let b = status_where(&c, "pdb", "web", "no disruption", |s| s.desired_healthy == 4).await;
    let s = b.status.unwrap();
    assert_eq!(s.disruptions_allowed, 0);
    let cond = s.conditions.unwrap().into_iter().find(|c| c.type_ == "DisruptionAllowed").expect("condition");
    assert_eq!((cond.status.as_str(), cond.reason.as_str()), ("False", "InsufficientPods"));
}

#[tokio::test]
async fn eviction_is_refused_with_429_then_allowed_after_scaling() {
    let c = cluster().await;
    make_namespace(&c, "evict").await;
    let kubelet = auto_ready(&c, "evict");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "evict");
    rss.create(&PostParams::default(), &replicaset("web", 2)).await.expect("rs");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "evict");
    pdbs.create(&PostParams::default(), &budget("web", "web", json!({"minAvailable": 2}))).await.expect("pdb");
    status_where(&c, "evict", "web", "2 healthy", |s| s.current_healthy == 2).await;

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "evict");
    let victim = live_pods(&c, "evict", "app=web").await[0].metadata.name.clone().unwrap();
    let err = pods.evict(&victim, &EvictParams::default()).await.expect_err("the budget refuses");
    let kube::Error::Api(status) = err else { panic!("not an API error: {err:?}") };
    assert_eq!(status.code, 429);
    assert_eq!(status.reason, "TooManyRequests");
    assert_eq!(status.message, "Cannot evict pod as it would violate the pod's disruption budget.");
    let causes = status.details.expect("details").causes;
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].reason, "DisruptionBudget");
    assert_eq!(causes[0].message, "The disruption budget web needs 2 healthy pods and has 2 currently");
    assert!(pods.get(&victim).await.is_ok(), "the pod stays");

    rss.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await.expect("scale");
    status_where(&c, "evict", "web", "one disruption allowed", |s| s.disruptions_allowed == 1).await;
    let done = pods.evict(&victim, &EvictParams::default()).await.expect("evicted");
    assert!(done.is_success(), "{done:?}");
    within(Duration::from_secs(10), "the evicted pod gone", || async {
        pods.get_opt(&victim).await.ok()?.is_none().then_some(())
    })
    .await;
    // The ReplicaSet replaces it, and a second budget over the same pods makes eviction
    // unsupported (500), as upstream.
    status_where(&c, "evict", "web", "3 healthy again", |s| s.current_healthy == 3).await;
    pdbs.create(&PostParams::default(), &budget("web2", "web", json!({"maxUnavailable": 1}))).await.expect("pdb");
    // A Running pod: a Pending one (a replacement the fake kubelet has not marked yet) is
    // evicted without any budget, as upstream does, and would not show the two budgets.
    let other = live_pods(&c, "evict", "app=web")
        .await
        .into_iter()
        .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .and_then(|p| p.metadata.name)
        .expect("a running pod");
    let err = pods.evict(&other, &EvictParams::default()).await.expect_err("two budgets");
    let kube::Error::Api(status) = err else { panic!("not an API error: {err:?}") };
    assert_eq!(status.code, 500);
    assert_eq!(
        status.message,
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );

    // A pod no budget covers (pending, here) is simply deleted.
    let lone: Pod = serde_json::from_value(json!({
        "metadata": {"name": "lone"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &lone).await.expect("pod");
    pods.evict("lone", &EvictParams::default()).await.expect("evicted");
    assert!(pods.get_opt("lone").await.expect("get").is_none());

    // An evicted pod is marked as a disruption target before it goes (seen here because a
    // finalizer holds it). The fake kubelet stops first: its status merge patch, from a list
    // taken before the eviction, would replace the conditions list, the new one with it.
    kubelet.abort();
    let _ = kubelet.await;
    let held: Pod = serde_json::from_value(json!({
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &held).await.expect("pod");
    pods.evict("held", &EvictParams::default()).await.expect("evicted");
    let going = pods.get("held").await.expect("held by its finalizer");
    assert!(going.metadata.deletion_timestamp.is_some());
    let conditions = going.status.and_then(|s| s.conditions).unwrap_or_default();
    let target = conditions.iter().find(|c| c.type_ == "DisruptionTarget").expect("a DisruptionTarget condition");
    assert_eq!(
        (target.status.as_str(), target.reason.as_deref(), target.message.as_deref()),
        ("True", Some("EvictionByEvictionAPI"), Some("Eviction API: evicting"))
    );
    pods.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}})))
        .await
        .expect("release");
}

fn quota(name: &str, hard: serde_json::Value) -> ResourceQuota {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"hard": hard}})).unwrap()
}

/// Waits until the quota controller has filled `status.used` for every hard resource.
async fn quota_counted(c: &Cluster, ns: &str, name: &str, resource: &str, used: &str) -> ResourceQuota {
    let api: Api<ResourceQuota> = Api::namespaced(c.client.clone(), ns);
    within(Duration::from_secs(20), &format!("{resource} used {used}"), || async {
        let q = api.get(name).await.ok()?;
        let s = q.status.as_ref()?;
        (s.used.as_ref()?.get(resource)?.0 == used).then_some(q)
    })
    .await
}

fn plain_pod(name: &str, resources: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]},
    }))
    .unwrap()
}

#[tokio::test]
async fn quota_refuses_the_third_pod_with_upstreams_message() {
    let c = cluster().await;
    make_namespace(&c, "quota").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(c.client.clone(), "quota");
    quotas
        .create(
            &PostParams::default(),
            &quota("q", json!({"pods": "2", "configmaps": "10", "count/deployments.apps": "5"})),
        )
        .await
        .expect("quota");
    let q = quota_counted(&c, "quota", "q", "pods", "0").await;
    let s = q.status.unwrap();
    assert_eq!(s.hard.unwrap().get("pods").map(|q| q.0.as_str()), Some("2"));
    // The namespace's root CA ConfigMap already counts.
    assert!(s.used.unwrap().contains_key("configmaps"));

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "quota");
    pods.create(&PostParams::default(), &plain_pod("a", json!({}))).await.expect("first");
    pods.create(&PostParams::default(), &plain_pod("b", json!({}))).await.expect("second");
    // Charged at admission, before the controller recounts.
    let err = pods.create(&PostParams::default(), &plain_pod("x", json!({}))).await.expect_err("third");
    let kube::Error::Api(status) = err else { panic!("not an API error: {err:?}") };
    assert_eq!(status.code, 403);
    assert_eq!(status.reason, "Forbidden");
    assert_eq!(
        status.message,
        "pods \"x\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
    );
    quota_counted(&c, "quota", "q", "pods", "2").await;

    // A pod that goes gives its place back once the controller recounts.
    pods.delete("a", &Default::default()).await.expect("delete");
    quota_counted(&c, "quota", "q", "pods", "1").await;
    pods.create(&PostParams::default(), &plain_pod("x", json!({}))).await.expect("fits again");

    // Quota'd compute resources must be specified by every container.
    quotas
        .create(&PostParams::default(), &quota("compute", json!({"limits.cpu": "1", "requests.memory": "1Gi"})))
        .await
        .expect("quota");
    quota_counted(&c, "quota", "compute", "limits.cpu", "0").await;
    pods.delete("x", &Default::default()).await.expect("delete");
    quota_counted(&c, "quota", "q", "pods", "1").await;
    let err = pods
        .create(&PostParams::default(), &plain_pod("y", json!({"requests": {"cpu": "100m"}})))
        .await
        .expect_err("unspecified");
    let kube::Error::Api(status) = err else { panic!("not an API error: {err:?}") };
    assert_eq!(status.code, 403);
    assert_eq!(
        status.message,
        "pods \"y\" is forbidden: failed quota: compute: must specify limits.cpu for: c; requests.memory for: c"
    );
    let err = pods
        .create(&PostParams::default(), &plain_pod("z", json!({"limits": {"cpu": "2", "memory": "64Mi"}})))
        .await
        .expect_err("too much cpu");
    let kube::Error::Api(status) = err else { panic!("not an API error: {err:?}") };
    assert_eq!(
        status.message,
        "pods \"z\" is forbidden: exceeded quota: compute, requested: limits.cpu=2, used: limits.cpu=0, limited: limits.cpu=1"
    );
    pods.create(&PostParams::default(), &plain_pod("ok", json!({"limits": {"cpu": "500m", "memory": "64Mi"}})))
        .await
        .expect("fits");
    let q = quota_counted(&c, "quota", "compute", "limits.cpu", "500m").await;
    assert_eq!(q.status.unwrap().used.unwrap().get("requests.memory").map(|q| q.0.as_str()), Some("64Mi"));
}

#[tokio::test]
async fn a_replicaset_whose_pods_the_quota_refuses_reports_replica_failure() {
    let c = cluster().await;
    make_namespace(&c, "rsq").await;
    let quotas: Api<ResourceQuota> = Api::namespaced(c.client.clone(), "rsq");
    quotas.create(&PostParams::default(), &quota("q", json!({"pods": "1"}))).await.expect("quota");
    quota_counted(&c, "rsq", "q", "pods", "0").await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "rsq");
    rss.create(&PostParams::default(), &replicaset("web", 3)).await.expect("rs");
    let cond = within(Duration::from_secs(20), "ReplicaFailure", || async {
        let s = rss.get("web").await.ok()?.status?;
        s.conditions?.into_iter().find(|c| c.type_ == "ReplicaFailure")
    })
    .await;
    assert_eq!((cond.status.as_str(), cond.reason.as_deref()), ("True", Some("FailedCreate")));
    let message = cond.message.unwrap_or_default();
    assert!(message.starts_with("pods \"web-"), "{message}");
    assert!(
        message.ends_with("\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=1, limited: pods=1"),
        "{message}"
    );
    assert_eq!(live_pods(&c, "rsq", "app=web").await.len(), 1);
}
