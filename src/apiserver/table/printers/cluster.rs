//! Printers of the remaining groups: networking, RBAC bindings, storage, scheduling, node,
//! coordination, discovery, certificates and admission registration.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{b, col, n, s, Column, Printer, Row, AGE, NAME};
use crate::apiserver::table::fields::{
    age, annotation, at, format_label_selector, human_duration, int, list, name, opt_bool, opt_int, opt_text, text,
};
use crate::apiserver::table::printers::core::load_balancer_addresses;
use crate::apiserver::table::quantity;

/// Up to three hosts of the rules, `*` when no rule names one.
fn ingress_hosts(rules: &[Value]) -> String {
    const MAX: usize = 3;
    let mut hosts = Vec::new();
    let mut more = false;
    for rule in rules {
        if hosts.len() == MAX {
            more = true;
        }
        let host = text(rule, &["host"]);
        if !more && !host.is_empty() {
            hosts.push(host);
        }
    }
    if hosts.is_empty() {
        return "*".to_string();
    }
    let joined = hosts.join(",");
    if more {
        format!("{joined} + {} more...", rules.len() - MAX)
    } else {
        joined
    }
}

pub(crate) const INGRESS: Printer = Printer {
    group: "networking.k8s.io",
    kind: "Ingress",
    columns: &[
        NAME,
        col("Class", "string", "The ingress class that handles this ingress."),
        col("Hosts", "string", "Hosts the rules match."),
        col("Address", "string", "Addresses of the load balancer serving the ingress."),
        col("Ports", "string", "Ports the ingress is served on."),
        AGE,
    ],
    row: |o, cx| {
        let class = opt_text(o, &["spec", "ingressClassName"]).unwrap_or("<none>");
        let ports = if list(o, &["spec", "tls"]).is_empty() { "80" } else { "80, 443" };
        Row::new(vec![
            s(name(o)),
            s(class),
            s(ingress_hosts(list(o, &["spec", "rules"]))),
            s(load_balancer_addresses(at(o, &["status", "loadBalancer"]))),
            s(ports),
            s(age(o, cx.now)),
        ])
    },
};

pub(crate) const INGRESS_CLASS: Printer = Printer {
    group: "networking.k8s.io",
    kind: "IngressClass",
    columns: &[
        NAME,
        col("Controller", "string", "The controller that implements the class."),
        col("Parameters", "string", "The object holding the class's parameters."),
        AGE,
    ],
    row: |o, cx| {
        let parameters = match at(o, &["spec", "parameters"]).filter(|p| p.is_object()) {
            Some(p) => {
                let group = opt_text(p, &["apiGroup"]).map(|g| format!(".{g}")).unwrap_or_default();
                format!("{}{group}/{}", text(p, &["kind"]), text(p, &["name"]))
            }
            None => "<none>".to_string(),
        };
        Row::new(vec![s(name(o)), s(text(o, &["spec", "controller"])), s(parameters), s(age(o, cx.now))])
    },
};

pub(crate) const NETWORK_POLICY: Printer = Printer {
    group: "networking.k8s.io",
    kind: "NetworkPolicy",
    columns: &[NAME, col("Pod-Selector", "string", "The pods the policy applies to."), AGE],
    row: |o, cx| {
        Row::new(vec![s(name(o)), s(format_label_selector(at(o, &["spec", "podSelector"]))), s(age(o, cx.now))])
    },
};

pub(crate) const SERVICE_CIDR: Printer = Printer {
    group: "networking.k8s.io",
    kind: "ServiceCIDR",
    columns: &[NAME, col("CIDRs", "string", "The ranges service IPs are taken from."), AGE],
    row: |o, cx| {
        let cidrs: Vec<&str> = list(o, &["spec", "cidrs"]).iter().filter_map(Value::as_str).collect();
        Row::new(vec![s(name(o)), s(cidrs.join(",")), s(age(o, cx.now))])
    },
};

pub(crate) const IP_ADDRESS: Printer = Printer {
    group: "networking.k8s.io",
    kind: "IPAddress",
    columns: &[NAME, col("ParentRef", "string", "The object the address is allocated to.")],
    row: |o, _| {
        let parent = match at(o, &["spec", "parentRef"]).filter(|p| p.is_object()) {
            Some(p) => {
                let group = text(p, &["group"]);
                let resource = text(p, &["resource"]);
                let mut out = if group.is_empty() {
                    resource.to_lowercase()
                } else {
                    format!("{resource}.{group}").to_lowercase()
                };
                let namespace = text(p, &["namespace"]);
                if !namespace.is_empty() {
                    out = format!("{out}/{namespace}");
                }
                format!("{out}/{}", text(p, &["name"]))
            }
            None => "<none>".to_string(),
        };
        Row::new(vec![s(name(o)), s(parent)])
    },
};

const BINDING_COLUMNS: &[Column] = &[
    NAME,
    col("Role", "string", "The role granted, as Kind/name."),
    AGE,
    super::wide("Users", "string", "Users the binding grants the role to."),
    super::wide("Groups", "string", "Groups the binding grants the role to."),
    super::wide("ServiceAccounts", "string", "Service accounts the binding grants the role to, as namespace/name."),
];

fn binding_row(o: &Value, cx: &super::Cx) -> Row {
    let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in list(o, &["subjects"]) {
        let subject_name = text(subject, &["name"]);
        match text(subject, &["kind"]) {
            "ServiceAccount" => accounts.push(format!("{}/{subject_name}", text(subject, &["namespace"]))),
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            _ => {}
        }
    }
    Row::new(vec![
        s(name(o)),
        s(format!("{}/{}", text(o, &["roleRef", "kind"]), text(o, &["roleRef", "name"]))),
        s(age(o, cx.now)),
        s(users.join(", ")),
        s(groups.join(", ")),
        s(accounts.join(", ")),
    ])
}

pub(crate) const ROLE_BINDING: Printer =
    Printer { group: "rbac.authorization.k8s.io", kind: "RoleBinding", columns: BINDING_COLUMNS, row: binding_row };

pub(crate) const CLUSTER_ROLE_BINDING: Printer = Printer {
    group: "rbac.authorization.k8s.io",
    kind: "ClusterRoleBinding",
    columns: BINDING_COLUMNS,
    row: binding_row,
};

pub(crate) const STORAGE_CLASS: Printer = Printer {
    group: "storage.k8s.io",
    kind: "StorageClass",
    columns: &[
        NAME,
        col("Provisioner", "string", "The volume plugin that provisions volumes of the class."),
        col("ReclaimPolicy", "string", "What happens to a provisioned volume when its claim is released."),
        col("VolumeBindingMode", "string", "When volumes are bound: Immediate or WaitForFirstConsumer."),
        col("AllowVolumeExpansion", "string", "Whether claims of the class may grow."),
        AGE,
    ],
    row: |o, cx| {
        let is_default =
            ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"]
                .iter()
                .any(|k| annotation(o, k) == Some("true"));
        let shown = if is_default { format!("{} (default)", name(o)) } else { name(o).to_string() };
        Row::new(vec![
            s(shown),
            s(text(o, &["provisioner"])),
            s(opt_text(o, &["reclaimPolicy"]).unwrap_or("Delete")),
            s(opt_text(o, &["volumeBindingMode"]).unwrap_or("Immediate")),
            b(opt_bool(o, &["allowVolumeExpansion"]).unwrap_or(false)),
            s(age(o, cx.now)),
        ])
    },
};

pub(crate) const VOLUME_ATTACHMENT: Printer = Printer {
    group: "storage.k8s.io",
    kind: "VolumeAttachment",
    columns: &[
        NAME,
        col("Attacher", "string", "The volume driver that attaches the volume."),
        col("PV", "string", "The persistent volume attached."),
        col("Node", "string", "The node the volume is attached to."),
        col("Attached", "boolean", "Whether the attach operation succeeded."),
        AGE,
    ],
    row: |o, cx| {
        Row::new(vec![
            s(name(o)),
            s(text(o, &["spec", "attacher"])),
            s(text(o, &["spec", "source", "persistentVolumeName"])),
            s(text(o, &["spec", "nodeName"])),
            b(opt_bool(o, &["status", "attached"]).unwrap_or(false)),
            s(age(o, cx.now)),
        ])
    },
};

pub(crate) const CSI_NODE: Printer = Printer {
    group: "storage.k8s.io",
    kind: "CSINode",
    columns: &[NAME, col("Drivers", "integer", "Number of CSI drivers registered on the node."), AGE],
    row: |o, cx| Row::new(vec![s(name(o)), n(list(o, &["spec", "drivers"]).len() as i64), s(age(o, cx.now))]),
};

pub(crate) const CSI_DRIVER: Printer = Printer {
    group: "storage.k8s.io",
    kind: "CSIDriver",
    columns: &[
        NAME,
        col("AttachRequired", "boolean", "Whether volumes need an attach operation."),
        col("PodInfoOnMount", "boolean", "Whether the driver gets pod information on mount."),
        col("StorageCapacity", "boolean", "Whether the scheduler considers reported storage capacity."),
        col("TokenRequests", "string", "Audiences of the service account tokens the driver receives."),
        col("RequiresRepublish", "boolean", "Whether volumes are republished periodically."),
        col("Modes", "string", "Volume lifecycle modes the driver supports."),
        AGE,
    ],
    row: |o, cx| {
        // Unset fields read as upstream defaults them.
        let modes: Vec<&str> = match at(o, &["spec", "volumeLifecycleModes"]).and_then(Value::as_array) {
            Some(m) if !m.is_empty() => m.iter().filter_map(Value::as_str).collect(),
            _ => vec!["Persistent"],
        };
        let tokens = match at(o, &["spec", "tokenRequests"]).and_then(Value::as_array) {
            Some(t) => t.iter().map(|r| text(r, &["audience"])).collect::<Vec<_>>().join(","),
            None => "<unset>".to_string(),
        };
        Row::new(vec![
            s(name(o)),
            b(opt_bool(o, &["spec", "attachRequired"]).unwrap_or(true)),
            b(opt_bool(o, &["spec", "podInfoOnMount"]).unwrap_or(false)),
            b(opt_bool(o, &["spec", "storageCapacity"]).unwrap_or(false)),
            s(tokens),
            b(opt_bool(o, &["spec", "requiresRepublish"]).unwrap_or(false)),
            s(modes.join(",")),
            s(age(o, cx.now)),
        ])
    },
};

pub(crate) const CSI_STORAGE_CAPACITY: Printer = Printer {
    group: "storage.k8s.io",
    kind: "CSIStorageCapacity",
    columns: &[
        NAME,
        col("StorageClassName", "string", "The storage class the capacity is for."),
        col("Capacity", "string", "Capacity available for new volumes."),
    ],
    row: |o, _| {
        let capacity = match at(o, &["capacity"]).filter(|c| !c.is_null()) {
            Some(c) => quantity::canonical(Some(c)),
            None => "<unset>".to_string(),
        };
        Row::new(vec![s(name(o)), s(text(o, &["storageClassName"])), s(capacity)])
    },
};

pub(crate) const PRIORITY_CLASS: Printer = Printer {
    group: "scheduling.k8s.io",
    kind: "PriorityClass",
    columns: &[
        NAME,
        col("Value", "integer", "The priority of pods of the class."),
        col("Global-Default", "boolean", "Whether pods without a class get this one."),
        AGE,
        col("PreemptionPolicy", "string", "Whether pods of the class may preempt lower-priority pods."),
    ],
    row: |o, cx| {
        Row::new(vec![
            s(name(o)),
            n(int(o, &["value"])),
            b(opt_bool(o, &["globalDefault"]).unwrap_or(false)),
            s(age(o, cx.now)),
            s(opt_text(o, &["preemptionPolicy"]).unwrap_or("PreemptLowerPriority")),
        ])
    },
};

pub(crate) const RUNTIME_CLASS: Printer = Printer {
    group: "node.k8s.io",
    kind: "RuntimeClass",
    columns: &[NAME, col("Handler", "string", "The container runtime handler the class selects."), AGE],
    row: |o, cx| Row::new(vec![s(name(o)), s(text(o, &["handler"])), s(age(o, cx.now))]),
};

pub(crate) const LEASE: Printer = Printer {
    group: "coordination.k8s.io",
    kind: "Lease",
    columns: &[NAME, col("Holder", "string", "Who holds the lease."), AGE],
    row: |o, cx| Row::new(vec![s(name(o)), s(text(o, &["spec", "holderIdentity"])), s(age(o, cx.now))]),
};

/// Up to three items, then `+ N more...`; `<unset>` when there are none.
fn up_to_three(items: Vec<String>) -> String {
    const MAX: usize = 3;
    if items.is_empty() {
        return "<unset>".to_string();
    }
    if items.len() > MAX {
        format!("{} + {} more...", items[..MAX].join(","), items.len() - MAX)
    } else {
        items.join(",")
    }
}

pub(crate) const ENDPOINT_SLICE: Printer = Printer {
    group: "discovery.k8s.io",
    kind: "EndpointSlice",
    columns: &[
        NAME,
        col("AddressType", "string", "IPv4, IPv6 or FQDN."),
        col("Ports", "string", "Ports of the endpoints."),
        col("Endpoints", "string", "Addresses of the endpoints."),
        AGE,
    ],
    row: |o, cx| {
        let ports = list(o, &["ports"])
            .iter()
            .map(|p| match (opt_int(p, &["port"]), opt_text(p, &["name"])) {
                (Some(port), _) => port.to_string(),
                (None, Some(port_name)) => port_name.to_string(),
                (None, None) => "*".to_string(),
            })
            .collect();
        let addresses = list(o, &["endpoints"])
            .iter()
            .flat_map(|e| list(e, &["addresses"]).iter().map(|a| a.as_str().unwrap_or("").to_string()))
            .collect();
        Row::new(vec![
            s(name(o)),
            s(text(o, &["addressType"])),
            s(up_to_three(ports)),
            s(up_to_three(addresses)),
            s(age(o, cx.now)),
        ])
    },
};

/// `Approved,Issued`, `Denied`, `Pending`, `Approved,Failed`.
fn csr_condition(o: &Value) -> String {
    let kinds: BTreeSet<&str> = list(o, &["status", "conditions"]).iter().map(|c| text(c, &["type"])).collect();
    let mut status = if kinds.contains("Denied") {
        "Denied"
    } else if kinds.contains("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if kinds.contains("Failed") {
        status.push_str(",Failed");
    }
    if !text(o, &["status", "certificate"]).is_empty() {
        status.push_str(",Issued");
    }
    status
}

pub(crate) const CSR: Printer = Printer {
    group: "certificates.k8s.io",
    kind: "CertificateSigningRequest",
    columns: &[
        NAME,
        AGE,
        col("SignerName", "string", "The signer asked to sign the request."),
        col("Requestor", "string", "The user who made the request."),
        col("RequestedDuration", "string", "The validity the requestor asked for."),
        col("Condition", "string", "Whether the request is approved, denied, failed or issued."),
    ],
    row: |o, cx| {
        let signer = opt_text(o, &["spec", "signerName"]).filter(|s| !s.is_empty()).unwrap_or("<none>");
        let duration = match opt_int(o, &["spec", "expirationSeconds"]) {
            Some(secs) => human_duration(time::Duration::seconds(secs)),
            None => "<none>".to_string(),
        };
        Row::new(vec![
            s(name(o)),
            s(age(o, cx.now)),
            s(signer),
            s(text(o, &["spec", "username"])),
            s(duration),
            s(csr_condition(o)),
        ])
    },
};

const WEBHOOK_COLUMNS: &[Column] = &[NAME, col("Webhooks", "integer", "Number of webhooks in the configuration."), AGE];

fn webhook_row(o: &Value, cx: &super::Cx) -> Row {
    Row::new(vec![s(name(o)), n(list(o, &["webhooks"]).len() as i64), s(age(o, cx.now))])
}

pub(crate) const MUTATING_WEBHOOK: Printer = Printer {
    group: "admissionregistration.k8s.io",
    kind: "MutatingWebhookConfiguration",
    columns: WEBHOOK_COLUMNS,
    row: webhook_row,
};

pub(crate) const VALIDATING_WEBHOOK: Printer = Printer {
    group: "admissionregistration.k8s.io",
    kind: "ValidatingWebhookConfiguration",
    columns: WEBHOOK_COLUMNS,
    row: webhook_row,
};

pub(crate) const VALIDATING_ADMISSION_POLICY: Printer = Printer {
    group: "admissionregistration.k8s.io",
    kind: "ValidatingAdmissionPolicy",
    columns: &[
        NAME,
        col("Validations", "integer", "Number of validation rules in the policy."),
        col("ParamKind", "string", "The kind of the objects parameterizing the policy."),
        AGE,
    ],
    row: |o, cx| {
        let param_kind = match at(o, &["spec", "paramKind"]).filter(|p| p.is_object()) {
            Some(p) => format!("{}/{}", text(p, &["apiVersion"]), text(p, &["kind"])),
            None => "<unset>".to_string(),
        };
        Row::new(vec![s(name(o)), n(list(o, &["spec", "validations"]).len() as i64), s(param_kind), s(age(o, cx.now))])
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::table::printers::Cx;
    use serde_json::json;
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    fn cx() -> Cx {
        Cx { now: OffsetDateTime::parse("2025-03-01T12:00:00Z", &Rfc3339).unwrap(), group: "" }
    }

    #[test]
    fn ingresses() {
        let ing = json!({"metadata": {"name": "i"}, "spec": {"ingressClassName": "traefik",
            "rules": [{"host": "a.example"}, {}, {"host": "b.example"}, {"host": "c.example"}, {"host": "d.example"}],
            "tls": [{"hosts": ["a.example"]}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.5"}, {"hostname": "lb.local"}]}}});
        assert_eq!(
            (INGRESS.row)(&ing, &cx()).cells[..5],
            [
                json!("i"),
                json!("traefik"),
                json!("a.example,b.example,c.example + 2 more..."),
                json!("192.168.1.5,lb.local"),
                json!("80, 443")
            ]
        );
        let bare = json!({"metadata": {"name": "i"}, "spec": {"defaultBackend": {}}});
        assert_eq!((INGRESS.row)(&bare, &cx()).cells[1..5], [json!("<none>"), json!("*"), json!(""), json!("80")]);
        let class = json!({"metadata": {"name": "c"}, "spec": {"controller": "k3rs.io/ingress",
            "parameters": {"apiGroup": "k8s.example.com", "kind": "Params", "name": "p"}}});
        assert_eq!(
            (INGRESS_CLASS.row)(&class, &cx()).cells[1..3],
            [json!("k3rs.io/ingress"), json!("Params.k8s.example.com/p")]
        );
    }

    #[test]
    fn bindings_and_policies() {
        let rb = json!({"metadata": {"name": "rb"}, "roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "alice"}, {"kind": "Group", "name": "devs"}, {"kind": "User", "name": "bob"},
            {"kind": "ServiceAccount", "name": "default", "namespace": "ns"}]});
        assert_eq!(
            binding_row(&rb, &cx()).cells,
            [
                json!("rb"),
                json!("ClusterRole/view"),
                json!("<unknown>"),
                json!("alice, bob"),
                json!("devs"),
                json!("ns/default")
            ]
        );
        let np = json!({"metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
        assert_eq!((NETWORK_POLICY.row)(&np, &cx()).cells[1], "<none>");
        let np = json!({"metadata": {"name": "web"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}}}});
        assert_eq!((NETWORK_POLICY.row)(&np, &cx()).cells[1], "app=web");
    }

    #[test]
    fn storage_classes() {
        let sc = json!({"metadata": {"name": "local-path", "creationTimestamp": "2025-03-01T11:00:00Z",
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            (STORAGE_CLASS.row)(&sc, &cx()).cells,
            [
                json!("local-path (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("60m")
            ]
        );
        let other = json!({"metadata": {"name": "fast"}, "provisioner": "x", "reclaimPolicy": "Retain", "allowVolumeExpansion": true});
        assert_eq!(
            (STORAGE_CLASS.row)(&other, &cx()).cells[..5],
            [json!("fast"), json!("x"), json!("Retain"), json!("Immediate"), json!(true)]
        );
        let driver =
            json!({"metadata": {"name": "d"}, "spec": {"tokenRequests": [{"audience": "a"}, {"audience": "b"}]}});
        assert_eq!(
            (CSI_DRIVER.row)(&driver, &cx()).cells[1..7],
            [json!(true), json!(false), json!(false), json!("a,b"), json!(false), json!("Persistent")]
        );
        let cap = json!({"metadata": {"name": "c"}, "storageClassName": "sc", "capacity": "2048Mi"});
        assert_eq!((CSI_STORAGE_CAPACITY.row)(&cap, &cx()).cells[1..], [json!("sc"), json!("2Gi")]);
    }

    #[test]
    fn slices_leases_and_classes() {
        let slice = json!({"metadata": {"name": "kubernetes"}, "addressType": "IPv4",
            "ports": [{"name": "https", "port": 6443}, {"name": "dns"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2", "10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]});
        assert_eq!(
            (ENDPOINT_SLICE.row)(&slice, &cx()).cells[1..4],
            [json!("IPv4"), json!("6443,dns,*"), json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")]
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv6"});
        assert_eq!((ENDPOINT_SLICE.row)(&empty, &cx()).cells[2..4], [json!("<unset>"), json!("<unset>")]);
        let lease = json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1"}});
        assert_eq!((LEASE.row)(&lease, &cx()).cells[1], "n1");
        let pc = json!({"metadata": {"name": "system-node-critical"}, "value": 2000001000, "globalDefault": false});
        assert_eq!((PRIORITY_CLASS.row)(&pc, &cx()).cells[1..3], [json!(2000001000), json!(false)]);
        assert_eq!((PRIORITY_CLASS.row)(&pc, &cx()).cells[4], "PreemptLowerPriority");
        let rc = json!({"metadata": {"name": "gvisor"}, "handler": "runsc"});
        assert_eq!((RUNTIME_CLASS.row)(&rc, &cx()).cells[1], "runsc");
        let ip = json!({"metadata": {"name": "10.43.0.1"}, "spec": {"parentRef": {"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"}}});
        assert_eq!((IP_ADDRESS.row)(&ip, &cx()).cells[1], "services/default/kubernetes");
        let cidr = json!({"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.43.0.0/16", "fd00:43::/112"]}});
        assert_eq!((SERVICE_CIDR.row)(&cidr, &cx()).cells[1], "10.43.0.0/16,fd00:43::/112");
    }

    #[test]
    fn certificate_requests() {
        let csr = |conditions: Value, certificate: &str| {
            let o = json!({"metadata": {"name": "c"}, "spec": {"signerName": "kubernetes.io/kube-apiserver-client",
                "username": "alice", "expirationSeconds": 86400},
                "status": {"conditions": conditions, "certificate": certificate}});
            (CSR.row)(&o, &cx()).cells
        };
        assert_eq!(
            csr(json!([]), "")[2..],
            [json!("kubernetes.io/kube-apiserver-client"), json!("alice"), json!("24h"), json!("Pending")]
        );
        assert_eq!(csr(json!([{"type": "Approved"}]), "LS0t")[5], "Approved,Issued");
        assert_eq!(csr(json!([{"type": "Approved"}, {"type": "Denied"}, {"type": "Failed"}]), "")[5], "Denied,Failed");
    }
}
