//! Printers of the core (`v1`) kinds other than pods, and of `events.k8s.io` events.
//!
//! Where upstream's apiserver always defaults a field the printer reads (a service's type,
//! a port's protocol, a namespace's phase, a secret's type), the printer shows that
//! default for an object stored without it, so the table reads as upstream's would.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{col, n, s, wide, Column, Cx, Printer, Row, AGE, CONTAINERS, IMAGES, NAME};
use crate::apiserver::table::fields::{
    age, annotation, at, containers_and_images, deleting, format_labels, int, list, map, map_len, name, opt_int,
    opt_text, since, text, timestamp,
};
use crate::apiserver::table::quantity;

pub(crate) const POD_TEMPLATE: Printer = Printer {
    group: "",
    kind: "PodTemplate",
    columns: &[
        NAME,
        col("Containers", "string", "Names of the containers in the template."),
        col("Images", "string", "Images of the containers in the template."),
        col("Pod Labels", "string", "Labels of the pods made from the template."),
    ],
    row: |o, _| {
        let (names, images) = containers_and_images(list(o, &["template", "spec", "containers"]));
        Row::new(vec![s(name(o)), s(names), s(images), s(format_labels(at(o, &["template", "metadata", "labels"])))])
    },
};

pub(crate) const REPLICATION_CONTROLLER: Printer = Printer {
    group: "",
    kind: "ReplicationController",
    columns: &[
        NAME,
        col("Desired", "integer", "Desired number of pods."),
        col("Current", "integer", "Number of pods the controller has."),
        col("Ready", "integer", "Number of ready pods."),
        AGE,
        CONTAINERS,
        IMAGES,
        wide("Selector", "string", "Labels the controller's pods are selected by."),
    ],
    row: |o, cx| {
        let (names, images) = containers_and_images(list(o, &["spec", "template", "spec", "containers"]));
        Row::new(vec![
            s(name(o)),
            n(opt_int(o, &["spec", "replicas"]).unwrap_or(1)),
            n(int(o, &["status", "replicas"])),
            n(int(o, &["status", "readyReplicas"])),
            s(age(o, cx.now)),
            s(names),
            s(images),
            s(format_labels(at(o, &["spec", "selector"]))),
        ])
    },
};

pub(crate) const SERVICE: Printer = Printer {
    group: "",
    kind: "Service",
    columns: &[
        NAME,
        col("Type", "string", "How the service is exposed: ClusterIP, NodePort, LoadBalancer or ExternalName."),
        col("Cluster-IP", "string", "The service's cluster IP."),
        col("External-IP", "string", "Addresses the service is reachable at from outside the cluster."),
        col("Port(s)", "string", "Service ports, with node ports, and protocols."),
        AGE,
        wide("Selector", "string", "Labels of the pods the service routes to."),
    ],
    row: service_row,
};

/// The ingress points of a load balancer status, sorted and without repeats.
pub(crate) fn load_balancer_addresses(status: Option<&Value>) -> String {
    let ingress = status.and_then(|s| s.get("ingress")).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let set: BTreeSet<&str> = ingress
        .iter()
        .filter_map(|i| [text(i, &["ip"]), text(i, &["hostname"])].into_iter().find(|a| !a.is_empty()))
        .collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}

fn service_external_ip(o: &Value, kind: &str) -> String {
    let external: Vec<&str> = list(o, &["spec", "externalIPs"]).iter().filter_map(Value::as_str).collect();
    match kind {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let lb = load_balancer_addresses(at(o, &["status", "loadBalancer"]));
            if !external.is_empty() {
                let mut all: Vec<&str> = if lb.is_empty() { Vec::new() } else { lb.split(',').collect() };
                all.extend(external);
                all.join(",")
            } else if !lb.is_empty() {
                lb
            } else {
                "<pending>".to_string()
            }
        }
        "ExternalName" => text(o, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `80/TCP,443:30443/TCP`.
pub(crate) fn service_ports(ports: &[Value]) -> String {
    ports
        .iter()
        .map(|p| {
            let port = int(p, &["port"]);
            let protocol = opt_text(p, &["protocol"]).unwrap_or("TCP");
            match int(p, &["nodePort"]) {
                node_port if node_port > 0 => format!("{port}:{node_port}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn service_row(o: &Value, cx: &Cx) -> Row {
    let kind = opt_text(o, &["spec", "type"]).unwrap_or("ClusterIP");
    let cluster_ip = [
        text(o, &["spec", "clusterIP"]),
        list(o, &["spec", "clusterIPs"]).first().and_then(Value::as_str).unwrap_or(""),
    ]
    .into_iter()
    .find(|ip| !ip.is_empty())
    .unwrap_or("<none>");
    let ports = service_ports(list(o, &["spec", "ports"]));
    Row::new(vec![
        s(name(o)),
        s(kind),
        s(cluster_ip),
        s(service_external_ip(o, kind)),
        s(if ports.is_empty() { "<none>".to_string() } else { ports }),
        s(age(o, cx.now)),
        s(format_labels(at(o, &["spec", "selector"]))),
    ])
}

/// `host:port`, with brackets around IPv6 hosts.
fn host_port(ip: &str, port: i64) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Up to three endpoints, then `+ N more...`; `<none>` without subsets.
pub(crate) fn format_endpoints(o: &Value) -> String {
    const MAX: usize = 3;
    let subsets = list(o, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut shown: Vec<String> = Vec::new();
    let mut count = 0;
    let mut more = false;
    for subset in subsets {
        let addresses = list(subset, &["addresses"]);
        let ports = list(subset, &["ports"]);
        if ports.is_empty() {
            // Headless services may have addresses without ports.
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(text(a, &["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if shown.len() == MAX {
                    more = true;
                    break;
                }
                shown.push(host_port(text(a, &["ip"]), int(port, &["port"])));
            }
        }
    }
    let joined = shown.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

pub(crate) const ENDPOINTS: Printer = Printer {
    group: "",
    kind: "Endpoints",
    columns: &[NAME, col("Endpoints", "string", "Addresses and ports of the endpoints."), AGE],
    row: |o, cx| Row::new(vec![s(name(o)), s(format_endpoints(o)), s(age(o, cx.now))]),
};

pub(crate) const NODE: Printer = Printer {
    group: "",
    kind: "Node",
    columns: &[
        NAME,
        col("Status", "string", "Whether the node is ready, and whether it takes new pods."),
        col("Roles", "string", "The node's roles, from its node-role labels."),
        AGE,
        col("Version", "string", "The kubelet's version."),
        wide("Internal-IP", "string", "The node's internal IP address."),
        wide("External-IP", "string", "The node's external IP address."),
        wide("OS-Image", "string", "The operating system image the node reports."),
        wide("Kernel-Version", "string", "The node's kernel version."),
        wide("Container-Runtime", "string", "The container runtime and its version."),
    ],
    row: node_row,
};

/// The node's roles: `node-role.kubernetes.io/<role>` label keys and the value of
/// `kubernetes.io/role`, sorted.
fn node_roles(o: &Value) -> String {
    let mut roles = BTreeSet::new();
    for (k, v) in map(o, &["metadata", "labels"]).into_iter().flatten() {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if k == "kubernetes.io/role" {
            if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                roles.insert(v.to_string());
            }
        }
    }
    if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    }
}

fn node_address(o: &Value, kind: &str) -> String {
    list(o, &["status", "addresses"])
        .iter()
        .find(|a| text(a, &["type"]) == kind)
        .map_or_else(|| "<none>".to_string(), |a| text(a, &["address"]).to_string())
}

fn node_row(o: &Value, cx: &Cx) -> Row {
    // A later condition of the same type overrides an earlier one.
    let ready = list(o, &["status", "conditions"]).iter().rfind(|c| text(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if text(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if at(o, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled");
    }
    let info = |field: &str| {
        let v = text(o, &["status", "nodeInfo", field]);
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    Row::new(vec![
        s(name(o)),
        s(status.join(",")),
        s(node_roles(o)),
        s(age(o, cx.now)),
        s(text(o, &["status", "nodeInfo", "kubeletVersion"])),
        s(node_address(o, "InternalIP")),
        s(node_address(o, "ExternalIP")),
        s(info("osImage")),
        s(info("kernelVersion")),
        s(info("containerRuntimeVersion")),
    ])
}

const EVENT_COLUMNS: &[Column] = &[
    col("Last Seen", "string", "Time since the event was last seen."),
    col("Type", "string", "Normal or Warning."),
    col("Reason", "string", "Why the event happened, in one word."),
    col("Object", "string", "The object the event is about."),
    wide("Subobject", "string", "The part of the object the event is about, such as a container."),
    wide("Source", "string", "The component, and host, that reported the event."),
    col("Message", "string", "What happened, for a person."),
    wide("First Seen", "string", "Time since the event was first seen."),
    wide("Count", "string", "How many times the event happened."),
    Column { priority: 1, ..NAME },
];

pub(crate) const EVENT: Printer = Printer { group: "", kind: "Event", columns: EVENT_COLUMNS, row: event_row };

pub(crate) const EVENT_V1: Printer =
    Printer { group: "events.k8s.io", kind: "Event", columns: EVENT_COLUMNS, row: event_row };

/// The field names of an event in `v1` and in `events.k8s.io/v1`.
struct EventFields {
    first: &'static str,
    last: &'static str,
    count: &'static str,
    regarding: &'static str,
    message: &'static str,
    source: &'static str,
    reporting_controller: &'static str,
}

const CORE_EVENT: EventFields = EventFields {
    first: "firstTimestamp",
    last: "lastTimestamp",
    count: "count",
    regarding: "involvedObject",
    message: "message",
    source: "source",
    reporting_controller: "reportingComponent",
};

const EVENTS_V1_EVENT: EventFields = EventFields {
    first: "deprecatedFirstTimestamp",
    last: "deprecatedLastTimestamp",
    count: "deprecatedCount",
    regarding: "regarding",
    message: "note",
    source: "deprecatedSource",
    reporting_controller: "reportingController",
};

fn event_row(o: &Value, cx: &Cx) -> Row {
    let f = if cx.group == "events.k8s.io" { &EVENTS_V1_EVENT } else { &CORE_EVENT };
    let first = match timestamp(o, &[f.first]) {
        Some(t) => since(Some(t), cx.now),
        None => since(timestamp(o, &["eventTime"]), cx.now),
    };
    let mut last = match timestamp(o, &[f.last]) {
        Some(t) => since(Some(t), cx.now),
        None => first.clone(),
    };
    let mut count = int(o, &[f.count]);
    if at(o, &["series"]).is_some_and(Value::is_object) {
        last = since(timestamp(o, &["series", "lastObservedTime"]), cx.now);
        count = int(o, &["series", "count"]);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }
    let kind = text(o, &[f.regarding, "kind"]).to_lowercase();
    let object_name = text(o, &[f.regarding, "name"]);
    let target = if object_name.is_empty() { kind } else { format!("{kind}/{object_name}") };
    let first_set = |a: &str, b: &str| if a.is_empty() { b.to_string() } else { a.to_string() };
    let component = first_set(text(o, &[f.source, "component"]), text(o, &[f.reporting_controller]));
    let host = first_set(text(o, &[f.source, "host"]), text(o, &["reportingInstance"]));
    let source = if host.is_empty() { component } else { format!("{component}, {host}") };
    Row::new(vec![
        s(last),
        s(text(o, &["type"])),
        s(text(o, &["reason"])),
        s(target),
        s(text(o, &[f.regarding, "fieldPath"])),
        s(source),
        s(text(o, &[f.message]).trim()),
        s(first),
        n(count),
        s(name(o)),
    ])
}

pub(crate) const NAMESPACE: Printer = Printer {
    group: "",
    kind: "Namespace",
    columns: &[NAME, col("Status", "string", "Active, or Terminating while the namespace is deleted."), AGE],
    row: |o, cx| {
        let phase = opt_text(o, &["status", "phase"]).filter(|p| !p.is_empty()).unwrap_or("Active");
        Row::new(vec![s(name(o)), s(phase), s(age(o, cx.now))])
    },
};

pub(crate) const SECRET: Printer = Printer {
    group: "",
    kind: "Secret",
    columns: &[
        NAME,
        col("Type", "string", "The secret's type, such as Opaque or kubernetes.io/tls."),
        col("Data", "string", "Number of keys in the secret."),
        AGE,
    ],
    row: |o, cx| {
        let kind = opt_text(o, &["type"]).filter(|t| !t.is_empty()).unwrap_or("Opaque");
        Row::new(vec![s(name(o)), s(kind), n(map_len(o, &["data"]) as i64), s(age(o, cx.now))])
    },
};

pub(crate) const SERVICE_ACCOUNT: Printer = Printer {
    group: "",
    kind: "ServiceAccount",
    columns: &[NAME, col("Secrets", "string", "Number of secrets listed for the account."), AGE],
    row: |o, cx| Row::new(vec![s(name(o)), n(list(o, &["secrets"]).len() as i64), s(age(o, cx.now))]),
};

/// Access modes as `RWO,ROX,RWX,RWOP`, each once, in that order.
pub(crate) fn access_modes(modes: &[Value]) -> String {
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(mode, _)| modes.iter().any(|m| m.as_str() == Some(mode)))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// The storage class: the old beta annotation wins over the field.
fn storage_class(o: &Value) -> String {
    annotation(o, "volume.beta.kubernetes.io/storage-class")
        .or_else(|| opt_text(o, &["spec", "storageClassName"]))
        .unwrap_or("")
        .to_string()
}

pub(crate) const PERSISTENT_VOLUME: Printer = Printer {
    group: "",
    kind: "PersistentVolume",
    columns: &[
        NAME,
        col("Capacity", "string", "The volume's storage capacity."),
        col("Access Modes", "string", "How the volume can be mounted: RWO, ROX, RWX, RWOP."),
        col("Reclaim Policy", "string", "What happens to the volume when its claim is released."),
        col("Status", "string", "The volume's phase."),
        col("Claim", "string", "The claim bound to the volume, as namespace/name."),
        col("StorageClass", "string", "The volume's storage class."),
        col("VolumeAttributesClass", "string", "The volume's attributes class."),
        col("Reason", "string", "Why the volume is in its phase."),
        AGE,
        wide("VolumeMode", "string", "Filesystem or Block."),
    ],
    row: |o, cx| {
        let claim = match at(o, &["spec", "claimRef"]).filter(|c| c.is_object()) {
            Some(c) => format!("{}/{}", text(c, &["namespace"]), text(c, &["name"])),
            None => String::new(),
        };
        let phase = if deleting(o) { "Terminating" } else { opt_text(o, &["status", "phase"]).unwrap_or("Pending") };
        Row::new(vec![
            s(name(o)),
            s(quantity::canonical(at(o, &["spec", "capacity", "storage"]))),
            s(access_modes(list(o, &["spec", "accessModes"]))),
            s(opt_text(o, &["spec", "persistentVolumeReclaimPolicy"]).unwrap_or("Retain")),
            s(phase),
            s(claim),
            s(storage_class(o)),
            s(opt_text(o, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")),
            s(text(o, &["status", "reason"])),
            s(age(o, cx.now)),
            s(opt_text(o, &["spec", "volumeMode"]).unwrap_or("Filesystem")),
        ])
    },
};

pub(crate) const PERSISTENT_VOLUME_CLAIM: Printer = Printer {
    group: "",
    kind: "PersistentVolumeClaim",
    columns: &[
        NAME,
        col("Status", "string", "The claim's phase."),
        col("Volume", "string", "The volume bound to the claim."),
        col("Capacity", "string", "The bound volume's capacity."),
        col("Access Modes", "string", "How the bound volume can be mounted: RWO, ROX, RWX, RWOP."),
        col("StorageClass", "string", "The claim's storage class."),
        col("VolumeAttributesClass", "string", "The claim's volume attributes class."),
        AGE,
        wide("VolumeMode", "string", "Filesystem or Block."),
    ],
    row: |o, cx| {
        let phase = if deleting(o) { "Terminating" } else { opt_text(o, &["status", "phase"]).unwrap_or("Pending") };
        let volume = text(o, &["spec", "volumeName"]);
        // Capacity and modes are the bound volume's, so they show only once bound.
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                quantity::canonical(at(o, &["status", "capacity", "storage"])),
                access_modes(list(o, &["status", "accessModes"])),
            )
        };
        let class = annotation(o, "volume.beta.kubernetes.io/storage-class")
            .or_else(|| opt_text(o, &["spec", "storageClassName"]))
            .unwrap_or("");
        Row::new(vec![
            s(name(o)),
            s(phase),
            s(volume),
            s(capacity),
            s(modes),
            s(class),
            s(opt_text(o, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>")),
            s(age(o, cx.now)),
            s(opt_text(o, &["spec", "volumeMode"]).unwrap_or("Filesystem")),
        ])
    },
};

pub(crate) const COMPONENT_STATUS: Printer = Printer {
    group: "",
    kind: "ComponentStatus",
    columns: &[
        NAME,
        col("Status", "string", "Healthy, Unhealthy or Unknown."),
        col("Message", "string", "The component's health message."),
        col("Error", "string", "The error of the health check, if any."),
    ],
    row: |o, _| {
        let healthy = list(o, &["conditions"]).iter().find(|c| text(c, &["type"]) == "Healthy");
        let (status, message, error) = match healthy {
            Some(c) => (
                if text(c, &["status"]) == "True" { "Healthy" } else { "Unhealthy" },
                text(c, &["message"]),
                text(c, &["error"]),
            ),
            None => ("Unknown", "", ""),
        };
        Row::new(vec![s(name(o)), s(status), s(message), s(error)])
    },
};

pub(crate) const CONFIG_MAP: Printer = Printer {
    group: "",
    kind: "ConfigMap",
    columns: &[NAME, col("Data", "string", "Number of keys in data and binaryData."), AGE],
    row: |o, cx| {
        let keys = map_len(o, &["data"]) + map_len(o, &["binaryData"]);
        Row::new(vec![s(name(o)), n(keys as i64), s(age(o, cx.now))])
    },
};

pub(crate) const RESOURCE_QUOTA: Printer = Printer {
    group: "",
    kind: "ResourceQuota",
    columns: &[
        NAME,
        col("Request", "string", "Used out of hard limits for requests and object counts."),
        col("Limit", "string", "Used out of hard limits for resource limits."),
        AGE,
    ],
    row: |o, cx| {
        let hard = map(o, &["status", "hard"]);
        let mut resources: Vec<&String> = hard.map(|h| h.keys().collect()).unwrap_or_default();
        resources.sort();
        let (mut requests, mut limits) = (Vec::new(), Vec::new());
        for r in resources {
            let used = quantity::canonical(at(o, &["status", "used", r]));
            let limit = quantity::canonical(hard.and_then(|h| h.get(r)));
            let entry = format!("{r}: {used}/{limit}");
            let mut pieces = r.split('.');
            if pieces.next() == Some("limits") && pieces.next().is_some() {
                limits.push(entry);
            } else {
                requests.push(entry);
            }
        }
        Row::new(vec![s(name(o)), s(requests.join(", ")), s(limits.join(", ")), s(age(o, cx.now))])
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    fn cx() -> Cx {
        Cx { now: OffsetDateTime::parse("2025-03-01T12:00:00Z", &Rfc3339).unwrap(), group: "" }
    }

    fn svc(spec: Value, status: Value) -> Vec<Value> {
        let o = json!({"metadata": {"name": "web", "creationTimestamp": "2025-03-01T09:00:00Z"}, "spec": spec, "status": status});
        service_row(&o, &cx()).cells
    }

    #[test]
    fn services() {
        let c = svc(
            json!({"type": "NodePort", "clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"],
                "ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "nodePort": 30443, "protocol": "TCP"}],
                "selector": {"app": "web"}}),
            json!({}),
        );
        assert_eq!(
            c,
            [
                json!("web"),
                json!("NodePort"),
                json!("10.43.0.10"),
                json!("<none>"),
                json!("80/TCP,443:30443/TCP"),
                json!("3h"),
                json!("app=web")
            ]
        );

        let lb = |status: Value, external: Value| {
            svc(
                json!({"type": "LoadBalancer", "clusterIP": "10.43.0.11", "externalIPs": external,
                "ports": [{"port": 53, "protocol": "UDP", "nodePort": 31000}]}),
                status,
            )
        };
        assert_eq!(lb(json!({}), json!([]))[3], "<pending>");
        let ingress = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}, {"hostname": "lb.example"}, {"ip": "192.0.2.1"}]}});
        assert_eq!(lb(ingress.clone(), json!([]))[3], "192.0.2.1,192.0.2.9,lb.example");
        assert_eq!(lb(ingress, json!(["203.0.113.4"]))[3], "192.0.2.1,192.0.2.9,lb.example,203.0.113.4");
        assert_eq!(lb(json!({}), json!(["203.0.113.4"]))[3], "203.0.113.4");
        assert_eq!(lb(json!({}), json!([]))[4], "53:31000/UDP");

        let headless = svc(json!({"clusterIP": "None", "selector": {}}), json!({}));
        assert_eq!(headless[1..5], [json!("ClusterIP"), json!("None"), json!("<none>"), json!("<none>")]);
        assert_eq!(headless[6], "<none>");
        let external = svc(json!({"type": "ExternalName", "externalName": "db.example.com"}), json!({}));
        assert_eq!(external[2..4], [json!("<none>"), json!("db.example.com")]);
        let external_ips = svc(
            json!({"type": "ClusterIP", "clusterIPs": ["fd00::1"], "externalIPs": ["1.2.3.4", "5.6.7.8"]}),
            json!({}),
        );
        assert_eq!(external_ips[2..4], [json!("fd00::1"), json!("1.2.3.4,5.6.7.8")]);
    }

    #[test]
    fn endpoints() {
        let o = json!({"subsets": [
            {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
            {"addresses": [{"ip": "fd00::3"}]},
        ]});
        assert_eq!(format_endpoints(&o), "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more...");
        let o = json!({"subsets": [{"addresses": [{"ip": "fd00::3"}], "ports": [{"port": 6443}]}]});
        assert_eq!(format_endpoints(&o), "[fd00::3]:6443");
        assert_eq!(format_endpoints(&json!({})), "<none>");
    }

    #[test]
    fn nodes() {
        let o = json!({
            "metadata": {"name": "n1", "creationTimestamp": "2025-02-27T09:00:00Z",
                "labels": {"node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/master": "true", "kubernetes.io/role": "edge"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.1.5"}],
                "nodeInfo": {"kubeletVersion": "v1.33.1+k3rs", "osImage": "Debian"}},
        });
        let c = node_row(&o, &cx()).cells;
        assert_eq!(
            c,
            [
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane,edge,master"),
                json!("2d3h"),
                json!("v1.33.1+k3rs"),
                json!("192.168.1.5"),
                json!("<none>"),
                json!("Debian"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
        let bare = node_row(&json!({"metadata": {"name": "n2"}}), &cx()).cells;
        assert_eq!(bare[1..4], [json!("Unknown"), json!("<none>"), json!("<unknown>")]);
    }

    #[test]
    fn events_in_both_groups() {
        let core = json!({
            "metadata": {"name": "web.17a"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "Pulled", "type": "Normal", "message": " pulled \n",
            "firstTimestamp": "2025-03-01T11:00:00Z", "lastTimestamp": "2025-03-01T11:59:00Z", "count": 4,
            "source": {"component": "kubelet", "host": "n1"},
        });
        let c = event_row(&core, &cx()).cells;
        assert_eq!(
            c,
            [
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{app}"),
                json!("kubelet, n1"),
                json!("pulled"),
                json!("60m"),
                json!(4),
                json!("web.17a")
            ]
        );

        let v1 = json!({
            "metadata": {"name": "x"}, "regarding": {"kind": "Node", "name": "n1"}, "note": "rebooted",
            "reason": "Rebooted", "type": "Warning", "eventTime": "2025-03-01T11:58:00.000000Z",
            "reportingController": "k3rs/kubelet", "reportingInstance": "n1",
            "series": {"count": 7, "lastObservedTime": "2025-03-01T11:59:30.000000Z"},
        });
        let c = event_row(&v1, &Cx { group: "events.k8s.io", ..cx() }).cells;
        assert_eq!(
            c,
            [
                json!("30s"),
                json!("Warning"),
                json!("Rebooted"),
                json!("node/n1"),
                json!(""),
                json!("k3rs/kubelet, n1"),
                json!("rebooted"),
                json!("2m"),
                json!(7),
                json!("x")
            ]
        );

        let singleton =
            json!({"metadata": {"name": "y"}, "involvedObject": {"kind": "Namespace"}, "reportingComponent": "ctl"});
        let c = event_row(&singleton, &cx()).cells;
        assert_eq!(c[..4], [json!("<unknown>"), json!(""), json!(""), json!("namespace")]);
        assert_eq!(c[5], "ctl");
        assert_eq!(c[8], 1);
    }

    #[test]
    fn volumes_and_claims() {
        let pv = json!({
            "metadata": {"name": "pv1", "annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
            "spec": {"capacity": {"storage": "1024Mi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce", "ReadWriteOnce"],
                "claimRef": {"namespace": "ns", "name": "data"}, "storageClassName": "local-path"},
            "status": {"phase": "Bound"},
        });
        let c = (PERSISTENT_VOLUME.row)(&pv, &cx()).cells;
        assert_eq!(
            c[1..9],
            [
                json!("1Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("ns/data"),
                json!("old"),
                json!("<unset>"),
                json!("")
            ]
        );
        assert_eq!(c[10], "Filesystem");

        let pending = json!({"metadata": {"name": "data"}, "spec": {"storageClassName": "local-path",
            "resources": {"requests": {"storage": "1Gi"}}}});
        let c = (PERSISTENT_VOLUME_CLAIM.row)(&pending, &cx()).cells;
        assert_eq!(c[1..6], [json!("Pending"), json!(""), json!(""), json!(""), json!("local-path")]);
        let bound = json!({"metadata": {"name": "data", "deletionTimestamp": "2025-03-01T11:00:00Z"},
            "spec": {"volumeName": "pv1", "volumeMode": "Block"},
            "status": {"phase": "Bound", "capacity": {"storage": "1.5Gi"}, "accessModes": ["ReadWriteOncePod"]}});
        let c = (PERSISTENT_VOLUME_CLAIM.row)(&bound, &cx()).cells;
        assert_eq!(c[1..6], [json!("Terminating"), json!("pv1"), json!("1536Mi"), json!("RWOP"), json!("")]);
        assert_eq!(c[8], "Block");
    }

    #[test]
    fn quotas_split_requests_and_limits() {
        let o = json!({"metadata": {"name": "q"}, "status": {
            "hard": {"pods": "10", "limits.cpu": "2", "requests.memory": "1Gi", "limits.memory": "2048Mi", "cpu": "1000m"},
            "used": {"pods": "3", "limits.cpu": "500m", "requests.memory": "512Mi"},
        }});
        let c = (RESOURCE_QUOTA.row)(&o, &cx()).cells;
        assert_eq!(c[1], "cpu: 0/1, pods: 3/10, requests.memory: 512Mi/1Gi");
        assert_eq!(c[2], "limits.cpu: 500m/2, limits.memory: 0/2Gi");
    }

    #[test]
    fn small_kinds() {
        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!((CONFIG_MAP.row)(&cm, &cx()).cells[1], 3);
        let secret = json!({"metadata": {"name": "s"}, "data": {"a": "MQ=="}});
        assert_eq!((SECRET.row)(&secret, &cx()).cells[1..3], [json!("Opaque"), json!(1)]);
        let ns = json!({"metadata": {"name": "kube-system"}});
        assert_eq!((NAMESPACE.row)(&ns, &cx()).cells[1], "Active");
        let rc = json!({"metadata": {"name": "rc"}, "spec": {"selector": {"app": "a"},
            "template": {"spec": {"containers": [{"name": "a", "image": "i:1"}, {"name": "b", "image": "j:2"}]}}}});
        let c = (REPLICATION_CONTROLLER.row)(&rc, &cx()).cells;
        assert_eq!(c[1], 1);
        assert_eq!(c[5..], [json!("a,b"), json!("i:1,j:2"), json!("app=a")]);
        let tmpl = json!({"metadata": {"name": "t"}, "template": {"metadata": {"labels": {"x": "y"}}, "spec": {"containers": [{"name": "a", "image": "i"}]}}});
        assert_eq!((POD_TEMPLATE.row)(&tmpl, &cx()).cells[1..], [json!("a"), json!("i"), json!("x=y")]);
        let cs = json!({"metadata": {"name": "etcd-0"}, "conditions": [{"type": "Healthy", "status": "True", "message": "ok"}]});
        assert_eq!((COMPONENT_STATUS.row)(&cs, &cx()).cells[1..], [json!("Healthy"), json!("ok"), json!("")]);
    }
}
