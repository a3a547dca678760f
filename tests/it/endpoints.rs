//! The Endpoints, EndpointSlice and mirroring controllers in a real server started in
//! process: Services and pods are written through the typed client, pod addresses and
//! readiness by the test as a kubelet would write them.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::controllers::{cluster, make_namespace, within, Cluster};

const WAIT: Duration = Duration::from_secs(30);

async fn pod(c: &Cluster, ns: &str, name: &str, app: &str, ip: &str, ready: bool, http_port: i32) {
    let api: Api<Pod> = Api::namespaced(c.client.clone(), ns);
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox",
            "ports": [{"name": "http", "containerPort": http_port}]}]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &p).await.expect("pod");
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.expect("pod status");
}

async fn slices(c: &Cluster, ns: &str, svc: &str) -> Vec<EndpointSlice> {
    let api: Api<EndpointSlice> = Api::namespaced(c.client.clone(), ns);
    api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"))).await.expect("slices").items
}

/// (address, ready, serving, terminating) of every endpoint of the Service's slices.
async fn endpoints_of(c: &Cluster, ns: &str, svc: &str) -> Vec<(String, bool, bool, bool)> {
    let mut out: Vec<_> = slices(c, ns, svc)
        .await
        .iter()
        .flat_map(|s| s.endpoints.clone())
        .map(|e| {
            let cond = e.conditions.unwrap_or_default();
            (
                e.addresses[0].clone(),
                cond.ready == Some(true),
                cond.serving == Some(true),
                cond.terminating == Some(true),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn slices_and_endpoints_follow_the_pods_of_a_service() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    let c = cluster().await;
    make_namespace(&c, "ep").await;
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), "ep");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"team": "a"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.expect("service");

    // No pods yet: one placeholder slice, and empty Endpoints.
    let placeholder = within(WAIT, "a placeholder slice", || async {
        let s = slices(&c, "ep", "web").await;
        (s.len() == 1).then(|| s[0].clone())
    })
    .await;
    assert!(placeholder.endpoints.is_empty());
    let labels = placeholder.metadata.labels.clone().unwrap();
    assert_eq!(labels["endpointslice.kubernetes.io/managed-by"], "endpointslice-controller.k8s.io");
    assert_eq!(labels["team"], "a");
    assert!(placeholder.metadata.name.as_deref().unwrap().starts_with("web-"));
    let eps: Api<Endpoints> = Api::namespaced(c.client.clone(), "ep");
    within(WAIT, "the Endpoints", || async { eps.get_opt("web").await.ok().flatten() }).await;

    pod(&c, "ep", "a", "web", "10.42.0.10", true, 8080).await;
    pod(&c, "ep", "b", "web", "10.42.0.11", false, 8080).await;
    pod(&c, "ep", "c", "web", "10.42.0.12", true, 9090).await;
    pod(&c, "ep", "other", "db", "10.42.0.13", true, 8080).await;
    let want = vec![
        ("10.42.0.10".to_string(), true, true, false),
        ("10.42.0.11".to_string(), false, false, false),
        ("10.42.0.12".to_string(), true, true, false),
    ];
    within(WAIT, "three endpoints", || async { (endpoints_of(&c, "ep", "web").await == want).then_some(()) }).await;
    // The named port resolved per pod: two port sets, two slices, and no placeholder.
    let s = slices(&c, "ep", "web").await;
    let mut ports: Vec<i32> = s.iter().map(|s| s.ports.as_ref().unwrap()[0].port.unwrap()).collect();
    ports.sort();
    assert_eq!(ports, [8080, 9090], "{s:#?}");
    let a = s.iter().flat_map(|s| &s.endpoints).find(|e| e.addresses[0] == "10.42.0.10").unwrap();
    assert_eq!(a.target_ref.as_ref().unwrap().name.as_deref(), Some("a"));
    assert_eq!(a.node_name.as_deref(), Some("node-a"));

    // Endpoints: ready and not-ready addresses, one subset per port set.
    let e = within(WAIT, "Endpoints with the pods", || async {
        let e = eps.get("web").await.ok()?;
        let n: usize = e.subsets.iter().flatten().map(|s| s.addresses.iter().flatten().count()).sum();
        (n == 2).then_some(e)
    })
    .await;
    let subsets = e.subsets.unwrap();
    assert_eq!(subsets.len(), 2, "{subsets:#?}");
    let not_ready: Vec<_> =
        subsets.iter().flat_map(|s| s.not_ready_addresses.iter().flatten()).map(|a| a.ip.as_str()).collect();
    assert_eq!(not_ready, ["10.42.0.11"]);
    assert_eq!(e.metadata.labels.unwrap()["team"], "a");

    // A pod relabelled away leaves; a pod being deleted (with a grace period, as a kubelet
    // would still be stopping it) is terminating in the slice and gone from the Endpoints.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "ep");
    pods.patch("c", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}})))
        .await
        .unwrap();
    pods.delete("a", &DeleteParams { grace_period_seconds: Some(30), ..Default::default() }).await.unwrap();
    let want = vec![("10.42.0.10".to_string(), false, true, true), ("10.42.0.11".to_string(), false, false, false)];
    within(WAIT, "the relabelled pod gone, the deleted one terminating", || async {
        (endpoints_of(&c, "ep", "web").await == want).then_some(())
    })
    .await;
    within(WAIT, "Endpoints without the terminating pod", || async {
        let e = eps.get("web").await.ok()?;
        let n: usize = e.subsets.iter().flatten().map(|s| s.addresses.iter().flatten().count()).sum();
        (n == 0).then_some(())
    })
    .await;

    // A slice deleted by hand is made again.
    let sapi: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "ep");
    for s in slices(&c, "ep", "web").await {
        sapi.delete(s.metadata.name.as_deref().unwrap(), &DeleteParams::default()).await.unwrap();
    }
    within(WAIT, "slices made again", || async { (endpoints_of(&c, "ep", "web").await == want).then_some(()) }).await;

    // The Service deleted: its Endpoints and slices go.
    svcs.delete("web", &DeleteParams::default()).await.unwrap();
    within(WAIT, "Endpoints and slices gone", || async {
        (eps.get_opt("web").await.ok()?.is_none() && slices(&c, "ep", "web").await.is_empty()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_hundred_and_fifty_pods_make_two_slices() {
    let c = cluster().await;
    make_namespace(&c, "big").await;
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), "big");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "many"},
        "spec": {"selector": {"app": "many"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.expect("service");
    for i in 0..150 {
        pod(&c, "big", &format!("p{i}"), "many", &format!("10.42.{}.{}", i / 100 + 1, i % 100 + 2), true, 8080).await;
    }
    let sizes = within(Duration::from_secs(60), "150 endpoints", || async {
        let s = slices(&c, "big", "many").await;
        let mut sizes: Vec<usize> = s.iter().map(|s| s.endpoints.len()).collect();
        sizes.sort();
        (sizes.iter().sum::<usize>() == 150).then_some(sizes)
    })
    .await;
    assert!(sizes.iter().all(|n| *n <= 100), "{sizes:?}");
    assert_eq!(sizes.len(), 2, "{sizes:?}");
}

#[tokio::test]
async fn endpoints_of_a_service_without_selector_are_mirrored() {
    let c = cluster().await;
    make_namespace(&c, "mirror").await;
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), "mirror");
    let svc: Service =
        serde_json::from_value(json!({"metadata": {"name": "ext"}, "spec": {"ports": [{"name": "db", "port": 5432}]}}))
            .unwrap();
    svcs.create(&PostParams::default(), &svc).await.expect("service");
    let eps: Api<Endpoints> = Api::namespaced(c.client.clone(), "mirror");
    let ep: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "ext", "labels": {"team": "b"}},
        "subsets": [{"addresses": [{"ip": "192.168.5.1"}], "notReadyAddresses": [{"ip": "192.168.5.2"}],
                     "ports": [{"name": "db", "port": 5432}]}]
    }))
    .unwrap();
    eps.create(&PostParams::default(), &ep).await.expect("endpoints");
    let s = within(WAIT, "a mirrored slice", || async {
        let s = slices(&c, "mirror", "ext").await;
        (s.len() == 1 && s[0].endpoints.len() == 2).then(|| s[0].clone())
    })
    .await;
    let l = s.metadata.labels.unwrap();
    assert_eq!(l["endpointslice.kubernetes.io/managed-by"], "endpointslicemirroring-controller.k8s.io");
    assert_eq!(l["team"], "b");
    let ready: Vec<_> =
        s.endpoints.iter().map(|e| (e.addresses[0].as_str(), e.conditions.as_ref().unwrap().ready)).collect();
    assert_eq!(ready, [("192.168.5.1", Some(true)), ("192.168.5.2", Some(false))]);
    assert_eq!(s.metadata.owner_references.unwrap()[0].kind, "Endpoints");

    // skip-mirror: the mirrored slice goes.
    eps.patch(
        "ext",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}}})),
    )
    .await
    .unwrap();
    within(WAIT, "the mirrored slice gone", || async { slices(&c, "mirror", "ext").await.is_empty().then_some(()) })
        .await;

    // The API server's own `kubernetes` Service keeps its one slice, unmirrored.
    let k = slices(&c, "default", "kubernetes").await;
    assert_eq!(k.len(), 1, "{k:#?}");
}
