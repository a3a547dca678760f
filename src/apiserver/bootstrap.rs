//! Objects every cluster has from its first start: the namespaces `default`, `kube-system`,
//! `kube-public` and `kube-node-lease`, and the `kubernetes` service in `default` (the first
//! service IP, port 443) with its Endpoints and EndpointSlice pointing at this server, and
//! the built-in PriorityClasses `system-node-critical` and `system-cluster-critical`, and
//! the IngressClass `k3rs` of the in-process ingress, as the default class, and upstream's
//! bootstrap RBAC policy (`super::rbac::bootstrap`).

use serde_json::json;

use super::registry::WriteOptions;
use super::status::ApiError;
use super::ApiServer;

pub const SYSTEM_NAMESPACES: [&str; 4] = ["default", "kube-system", "kube-public", "kube-node-lease"];

impl ApiServer {
    /// Creates whatever of the boot-time objects is missing; leaves existing ones alone.
    pub async fn bootstrap(&self) -> Result<(), ApiError> {
        let Some(ns) = self.resource_type("", "v1", "namespaces") else { return Ok(()) };
        for name in SYSTEM_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            match self.registry.create(&ns, None, obj, &WriteOptions::default()).await {
                Ok(_) => tracing::info!(namespace = name, "created namespace"),
                Err(e) if e.is_already_exists() => {}
                Err(e) => return Err(e),
            }
        }
        self.bootstrap_rbac().await?;
        self.bootstrap_priority_classes().await?;
        self.bootstrap_ingress_class().await?;
        self.bootstrap_kubernetes_service().await
    }

    async fn bootstrap_priority_classes(&self) -> Result<(), ApiError> {
        let Some(rt) = self.resource_type("scheduling.k8s.io", "v1", "priorityclasses") else { return Ok(()) };
        let classes = [
            ("system-node-critical", 2_000_001_000, "Used for system critical pods that must not be moved from their current node."),
            (
                "system-cluster-critical",
                2_000_000_000,
                "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
            ),
        ];
        for (name, value, description) in classes {
            let obj = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                "value": value, "description": description, "preemptionPolicy": "PreemptLowerPriority"});
            match self.registry.create(&rt, None, obj, &WriteOptions::default()).await {
                Ok(_) => tracing::info!(priority_class = name, "created priority class"),
                Err(e) if e.is_already_exists() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The class of `crate::ingress`. An existing one is left as the user made it (they may
    /// have taken away its default mark).
    async fn bootstrap_ingress_class(&self) -> Result<(), ApiError> {
        let Some(rt) = self.resource_type("networking.k8s.io", "v1", "ingressclasses") else { return Ok(()) };
        let obj = json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
            "metadata": {"name": crate::ingress::CLASS_NAME,
                         "annotations": {crate::ingress::DEFAULT_CLASS_ANNOTATION: "true"}},
            "spec": {"controller": crate::ingress::CONTROLLER}});
        match self.registry.create(&rt, None, obj, &WriteOptions::default()).await {
            Ok(_) => tracing::info!(ingress_class = crate::ingress::CLASS_NAME, "created ingress class"),
            Err(e) if e.is_already_exists() => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    async fn bootstrap_kubernetes_service(&self) -> Result<(), ApiError> {
        let ip = self.opts.service_cidr.nth(1).map(|i| i.to_string()).unwrap_or_default();
        let node = self.opts.advertise.ip().to_string();
        let port = self.opts.advertise.port();
        let labels = json!({"component": "apiserver", "provider": "kubernetes"});
        let objects = [
            (
                ("", "services"),
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "labels": labels},
                "spec": {"type": "ClusterIP", "clusterIP": ip, "sessionAffinity": "None",
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}}),
            ),
            (
                ("", "endpoints"),
                json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": [{"addresses": [{"ip": node}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}),
            ),
            (
                ("discovery.k8s.io", "endpointslices"),
                json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
                "addressType": if self.opts.advertise.is_ipv4() { "IPv4" } else { "IPv6" },
                "endpoints": [{"addresses": [node], "conditions": {"ready": true, "serving": true, "terminating": false}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}),
            ),
        ];
        for ((group, plural), obj) in objects {
            let Some(rt) = self.resource_type(group, "v1", plural) else { continue };
            match self.registry.create(&rt, Some("default"), obj.clone(), &WriteOptions::default()).await {
                Ok(_) => {}
                Err(e) if e.is_already_exists() && plural != "services" => {
                    // The node's address may have changed since the last start.
                    let desired = obj.clone();
                    self.registry
                        .guaranteed_update(&rt, Some("default"), "kubernetes", false, &WriteOptions::default(), |cur| {
                            let mut next = cur.clone();
                            for f in ["subsets", "endpoints", "ports", "addressType"] {
                                if let Some(v) = desired.get(f) {
                                    next[f] = v.clone();
                                }
                            }
                            Ok(next)
                        })
                        .await?;
                }
                Err(e) if e.is_already_exists() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
