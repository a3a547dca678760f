//! Services: upstream's defaults, validation, and cluster IP / node port allocation.

use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{json, Value};

use super::allocator;
use super::meta::meta_str;
use super::Strategy;
use crate::apiserver::status::{ApiError, Cause};
use crate::store::Store;
use crate::util::cidr::Cidr;

pub struct ServiceStrategy {
    pub cidr: Cidr,
}

fn svc_type(obj: &Value) -> &str {
    obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP")
}

fn owner(obj: &Value) -> String {
    format!("{}/{}", meta_str(obj, "namespace").unwrap_or(""), meta_str(obj, "name").unwrap_or(""))
}

#[async_trait::async_trait]
impl Strategy for ServiceStrategy {
    fn prepare_create(&self, obj: &mut Value) {
        self.defaults(obj);
    }
    fn prepare_update(&self, new: &mut Value, old: &Value) {
        // Allocated values stay unless the client changes them (validated below).
        for f in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            if new.pointer(&format!("/spec/{f}")).is_none() {
                if let Some(v) = old.pointer(&format!("/spec/{f}")) {
                    new["spec"][f] = v.clone();
                }
            }
        }
        if let (Some(nps), Some(ops)) = (
            new.pointer_mut("/spec/ports").and_then(Value::as_array_mut),
            old.pointer("/spec/ports").and_then(Value::as_array),
        ) {
            for p in nps.iter_mut() {
                if p.get("nodePort").is_none() {
                    if let Some(op) = ops.iter().find(|op| {
                        op.get("port") == p.get("port")
                            && op.get("protocol") == p.get("protocol").or(Some(&json!("TCP")))
                    }) {
                        if let Some(np) = op.get("nodePort") {
                            p["nodePort"] = np.clone();
                        }
                    }
                }
            }
        }
        self.defaults(new);
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let ty = svc_type(obj);
        if !matches!(ty, "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName") {
            out.push(Cause::not_supported("spec.type", ty, &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]));
        }
        let ports = match obj.pointer("/spec/ports") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => {
                out.push(Cause::invalid("spec.ports", "", "must be a list"));
                Vec::new()
            }
        };
        let headless = obj.pointer("/spec/clusterIP").and_then(Value::as_str) == Some("None");
        if ports.is_empty() && ty != "ExternalName" && !headless {
            out.push(Cause::required("spec.ports", ""));
        }
        if ty == "ExternalName" && obj.pointer("/spec/externalName").and_then(Value::as_str).unwrap_or("").is_empty() {
            out.push(Cause::required("spec.externalName", ""));
        }
        let mut names = std::collections::HashSet::new();
        for (i, p) in ports.iter().enumerate() {
            if !p.is_object() {
                out.push(Cause::invalid(format!("spec.ports[{i}]"), "", "must be an object"));
                continue;
            }
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            if !(1..=65535).contains(&port) {
                out.push(Cause::invalid(
                    format!("spec.ports[{i}].port"),
                    port,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            let name = p.get("name").and_then(Value::as_str).unwrap_or("");
            if ports.len() > 1 && name.is_empty() {
                out.push(Cause::required(format!("spec.ports[{i}].name"), ""));
            } else if !name.is_empty() && !names.insert(name.to_string()) {
                out.push(Cause::duplicate(format!("spec.ports[{i}].name"), name));
            }
            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
            if !matches!(proto, "TCP" | "UDP" | "SCTP") {
                out.push(Cause::not_supported(format!("spec.ports[{i}].protocol"), proto, &["SCTP", "TCP", "UDP"]));
            }
            if ty == "ClusterIP" && p.get("nodePort").and_then(Value::as_i64).is_some_and(|n| n != 0) {
                out.push(Cause::forbidden(
                    format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
        if let Some(ip) = obj.pointer("/spec/clusterIP").and_then(Value::as_str) {
            if !ip.is_empty() && ip != "None" && ip.parse::<IpAddr>().is_err() {
                out.push(Cause::invalid(
                    "spec.clusterIPs[0]",
                    ip,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ));
            }
        }
        out
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut out = self.validate(new);
        let (n, o) = (new.pointer("/spec/clusterIP"), old.pointer("/spec/clusterIP"));
        if o.is_some() && n != o && svc_type(new) != "ExternalName" && svc_type(old) != "ExternalName" {
            // Upstream shows the new `clusterIPs`, which follow a changed `clusterIP`.
            let ip = n.cloned().unwrap_or(Value::Null);
            let ips = match new.pointer("/spec/clusterIPs").and_then(Value::as_array) {
                Some(ips) if ips.first() == Some(&ip) => ips.clone(),
                _ => vec![ip],
            };
            out.push(super::validation::invalid_raw(
                "spec.clusterIPs[0]",
                super::validation::go_strings(&ips),
                "may not change once set",
            ));
        }
        out
    }
    async fn allocate(&self, store: &Arc<dyn Store>, obj: &mut Value, dry_run: bool) -> Result<(), ApiError> {
        let ty = svc_type(obj).to_string();
        let who = owner(obj);
        if ty != "ExternalName" {
            let requested = obj.pointer("/spec/clusterIP").and_then(Value::as_str).unwrap_or("").to_string();
            if requested != "None" {
                let req_ip = if requested.is_empty() { None } else { requested.parse().ok() };
                let ip = allocator::allocate_ip(store, &self.cidr, req_ip, &who, dry_run).await?;
                obj["spec"]["clusterIP"] = json!(ip.to_string());
                obj["spec"]["clusterIPs"] = json!([ip.to_string()]);
            }
        }
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            let n = obj.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len);
            let mut got = Vec::new();
            for i in 0..n {
                let requested = obj["spec"]["ports"][i]
                    .get("nodePort")
                    .and_then(Value::as_u64)
                    .map(|p| p as u32)
                    .filter(|p| *p != 0);
                match allocator::allocate_node_port(
                    store,
                    requested,
                    &who,
                    &format!("spec.ports[{i}].nodePort"),
                    dry_run,
                )
                .await
                {
                    Ok(p) => {
                        got.push(p);
                        obj["spec"]["ports"][i]["nodePort"] = json!(p);
                    }
                    Err(e) => {
                        if !dry_run {
                            for p in got {
                                allocator::release(store, "nodeports", &p.to_string()).await;
                            }
                            self.release_ip(store, obj).await;
                        }
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }
    async fn release(&self, store: &Arc<dyn Store>, obj: &Value) {
        self.release_ip(store, obj).await;
        for p in obj.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten() {
            if let Some(np) = p.get("nodePort").and_then(Value::as_u64) {
                allocator::release(store, "nodeports", &np.to_string()).await;
            }
        }
    }
}

impl ServiceStrategy {
    fn defaults(&self, obj: &mut Value) {
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = json!({});
        }
        let ty = svc_type(obj).to_string();
        let spec = obj["spec"].as_object_mut().expect("spec is an object");
        let mut set = |k: &str, v: Value| {
            if spec.get(k).is_none_or(Value::is_null) {
                spec.insert(k.into(), v);
            }
        };
        set("type", json!(ty));
        set("sessionAffinity", json!("None"));
        if ty != "ExternalName" {
            set("ipFamilies", json!(["IPv4"]));
            set("ipFamilyPolicy", json!("SingleStack"));
            set("internalTrafficPolicy", json!("Cluster"));
        }
        if matches!(ty.as_str(), "NodePort" | "LoadBalancer") {
            set("externalTrafficPolicy", json!("Cluster"));
        }
        if ty == "LoadBalancer" {
            set("allocateLoadBalancerNodePorts", json!(true));
        }
        if spec.get("clusterIP").and_then(Value::as_str) == Some("None") {
            spec.insert("clusterIPs".into(), json!(["None"]));
        }
        if let Some(Value::Array(ports)) = spec.get_mut("ports") {
            for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                if p.get("protocol").is_none_or(Value::is_null) {
                    p.insert("protocol".into(), json!("TCP"));
                }
                if p.get("targetPort").is_none_or(Value::is_null) {
                    if let Some(port) = p.get("port").cloned() {
                        p.insert("targetPort".into(), port);
                    }
                }
            }
        }
        if obj.get("status").is_none() {
            obj["status"] = json!({"loadBalancer": {}});
        }
    }

    async fn release_ip(&self, store: &Arc<dyn Store>, obj: &Value) {
        if let Some(ip) = obj.pointer("/spec/clusterIP").and_then(Value::as_str) {
            if ip.parse::<IpAddr>().is_ok() {
                allocator::release(store, "serviceips", ip).await;
            }
        }
    }
}
