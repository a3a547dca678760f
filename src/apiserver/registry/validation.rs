//! Upstream's validation rules and messages for the resources without a strategy of their
//! own (Ingress, RBAC, StorageClass, PodDisruptionBudget, PriorityClass, Lease,
//! ServiceAccount, Endpoints, EndpointSlice, CertificateSigningRequest), and the selector,
//! replicas and Job rules the workload strategies call. Each function returns the causes
//! of a 422, worded as upstream's field errors.

use serde_json::{json, Value};

use super::meta::{meta_str, validate_name, NameRule};
use super::Strategy;
use crate::apiserver::status::Cause;
use crate::domain::names::{
    dns1035_label_error, dns1123_subdomain_error, is_dns1035_label, is_dns1123_subdomain,
    wildcard_dns1123_subdomain_error,
};

const PORT_RANGE_MSG: &str = "must be between 1 and 65535, inclusive";
const IMMUTABLE: &str = "field is immutable";

/// An `Invalid value` whose value upstream prints bare (numbers, Go structs).
pub fn invalid_raw(field: impl Into<String>, shown: impl std::fmt::Display, detail: &str) -> Cause {
    Cause { reason: "FieldValueInvalid", field: field.into(), message: format!("Invalid value: {shown}: {detail}") }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn non_empty<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    str_at(v, ptr).filter(|s| !s.is_empty())
}

fn array<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

fn int_at(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(Value::as_i64)
}

fn changed(new: &Value, old: &Value, ptr: &str) -> bool {
    new.pointer(ptr).filter(|v| !v.is_null()) != old.pointer(ptr).filter(|v| !v.is_null())
}

/// A value with Go's empty forms dropped: nulls, empty lists and empty maps, at any depth.
/// Upstream compares fields with `apiequality.Semantic`, to which a nil and an empty slice
/// or map are the same, and JSON's `null` and an absent field decode alike.
fn semantic(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Array(a) => Some(Value::Array(a.iter().map(|x| semantic(x).unwrap_or(Value::Null)).collect())),
        Value::Object(m) => {
            let kept: serde_json::Map<String, Value> =
                m.iter().filter_map(|(k, x)| semantic(x).map(|x| (k.clone(), x))).collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        other => Some(other.clone()),
    }
}

/// Whether two values are equal as upstream's `apiequality.Semantic.DeepEqual` sees them.
pub fn semantically_equal(a: Option<&Value>, b: Option<&Value>) -> bool {
    a.and_then(semantic) == b.and_then(semantic)
}

/// The 422 cause of a changed immutable field: `Invalid value: <shown>: field is immutable`.
pub fn immutable(field: impl Into<String>, shown: impl std::fmt::Display) -> Cause {
    invalid_raw(field, shown, IMMUTABLE)
}

/// Go's `%v` of an optional integer field (`*int32`): the number, or `null` when unset.
pub fn go_optional_int(v: Option<&Value>) -> String {
    v.and_then(Value::as_i64).map_or_else(|| "null".to_string(), |n| n.to_string())
}

/// Go's `%#v` of a `map[string]string`, keys sorted as Go prints them.
fn go_string_map(v: Option<&Value>) -> String {
    match v.and_then(Value::as_object) {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let mut pairs: Vec<String> =
                m.iter().map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or(""))).collect();
            pairs.sort();
            format!("map[string]string{{{}}}", pairs.join(", "))
        }
    }
}

/// Go's `%#v` of a `metav1.LabelSelector`, as upstream prints one in a field error.
pub fn go_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| !s.is_null()) else { return "null".to_string() };
    let exprs = array(sel, "/matchExpressions");
    let exprs = if sel.get("matchExpressions").is_none_or(Value::is_null) {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        let items: Vec<String> = exprs
            .iter()
            .map(|e| {
                format!(
                    "v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:{}}}",
                    str_at(e, "/key").unwrap_or(""),
                    str_at(e, "/operator").unwrap_or(""),
                    match e.get("values").filter(|v| !v.is_null()) {
                        None => "[]string(nil)".to_string(),
                        Some(_) => go_strings_literal(array(e, "/values")),
                    }
                )
            })
            .collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    };
    format!("v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}", go_string_map(sel.get("matchLabels")))
}

/// Go's `%#v` of a non-nil string slice: `[]string{"a", "b"}` (`[]string{}` when empty).
fn go_strings_literal(list: &[Value]) -> String {
    let items: Vec<String> = list.iter().map(|v| format!("{:?}", v.as_str().unwrap_or(""))).collect();
    format!("[]string{{{}}}", items.join(", "))
}

/// Go's `%v` of a string list, as upstream prints slices in field errors: `[]string{"a"}`.
pub fn go_strings(list: &[Value]) -> String {
    let items: Vec<String> = list.iter().map(|v| format!("{:?}", v.as_str().unwrap_or(""))).collect();
    if list.is_empty() {
        "[]string(nil)".to_string()
    } else {
        format!("[]string{{{}}}", items.join(", "))
    }
}

fn check_port(field: &str, v: Option<i64>, out: &mut Vec<Cause>) {
    match v {
        Some(p) if (1..=65535).contains(&p) => {}
        Some(p) => out.push(invalid_raw(field, p, PORT_RANGE_MSG)),
        None => out.push(invalid_raw(field, 0, PORT_RANGE_MSG)),
    }
}

fn check_protocol(field: &str, v: Option<&str>, out: &mut Vec<Cause>) {
    match v {
        None | Some("") => out.push(Cause::required(field, "")),
        Some("TCP" | "UDP" | "SCTP") => {}
        Some(p) => out.push(Cause::not_supported(field, p, &["SCTP", "TCP", "UDP"])),
    }
}

// ---------------------------------------------------------------- networking.k8s.io/v1

fn ingress_backend(b: &Value, at: &str, out: &mut Vec<Cause>) {
    let service = b.get("service").filter(|v| !v.is_null());
    let resource = b.get("resource").filter(|v| !v.is_null());
    match (service, resource) {
        (Some(_), Some(_)) => out.push(Cause::invalid(at, "", "cannot set both resource and service backends")),
        (None, Some(r)) => {
            if non_empty(r, "/kind").is_none() {
                out.push(Cause::required(format!("{at}.resource.kind"), ""));
            }
            if non_empty(r, "/name").is_none() {
                out.push(Cause::required(format!("{at}.resource.name"), ""));
            }
        }
        (Some(s), None) => {
            match non_empty(s, "/name") {
                None => out.push(Cause::required(format!("{at}.service.name"), "")),
                Some(n) if !is_dns1035_label(n) => {
                    out.push(Cause::invalid(format!("{at}.service.name"), n, &dns1035_label_error()))
                }
                Some(_) => {}
            }
            let name = non_empty(s, "/port/name");
            let number = int_at(s, "/port/number").filter(|n| *n != 0);
            match (name, number) {
                (Some(_), Some(_)) => out.push(Cause::invalid(at, "", "cannot set both port name & port number")),
                (None, Some(n)) => check_port(&format!("{at}.service.port.number"), Some(n), out),
                (Some(_), None) => {}
                (None, None) => {
                    out.push(Cause::required(format!("{at}.service.port"), "port name or number is required"))
                }
            }
        }
        (None, None) => out.push(Cause::invalid(at, "", "resource or service backend is required")),
    }
}

fn ingress_path(p: &Value, at: &str, out: &mut Vec<Cause>) {
    let path = str_at(p, "/path").unwrap_or("");
    match str_at(p, "/pathType") {
        None | Some("") => out.push(Cause::required(format!("{at}.pathType"), "pathType must be specified")),
        Some("Exact" | "Prefix") => {
            if !path.starts_with('/') {
                out.push(Cause::invalid(format!("{at}.path"), path, "must be an absolute path"));
            }
            for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                if path.contains(bad) {
                    out.push(Cause::invalid(format!("{at}.path"), path, &format!("must not contain '{bad}'")));
                }
            }
            for bad in ["/..", "/."] {
                if path.ends_with(bad) {
                    out.push(Cause::invalid(format!("{at}.path"), path, &format!("cannot end with '{bad}'")));
                }
            }
        }
        Some("ImplementationSpecific") => {
            if !path.is_empty() && !path.starts_with('/') {
                out.push(Cause::invalid(format!("{at}.path"), path, "must be an absolute path"));
            }
        }
        Some(t) => {
            out.push(Cause::not_supported(format!("{at}.pathType"), t, &["Exact", "ImplementationSpecific", "Prefix"]))
        }
    }
    match p.get("backend").filter(|b| !b.is_null()) {
        Some(b) => ingress_backend(b, &format!("{at}.backend"), out),
        None => out.push(Cause::invalid(format!("{at}.backend"), "", "resource or service backend is required")),
    }
}

fn ingress_host(host: &str, field: &str, out: &mut Vec<Cause>) {
    if host.parse::<std::net::IpAddr>().is_ok() {
        out.push(Cause::invalid(field, host, "must be a DNS name, not an IP address"));
        return;
    }
    match host.strip_prefix("*.") {
        Some(rest) if is_dns1123_subdomain(rest) => {}
        Some(_) => out.push(Cause::invalid(field, host, &wildcard_dns1123_subdomain_error())),
        None if is_dns1123_subdomain(host) => {}
        None => out.push(Cause::invalid(field, host, &dns1123_subdomain_error())),
    }
}

pub fn ingress(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let rules = array(obj, "/spec/rules");
    let default = obj.pointer("/spec/defaultBackend").filter(|v| !v.is_null());
    if rules.is_empty() && default.is_none() {
        out.push(invalid_raw(
            "spec.rules",
            "[]networking.IngressRule(nil)",
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(b) = default {
        ingress_backend(b, "spec.defaultBackend", &mut out);
    }
    for (i, rule) in rules.iter().enumerate() {
        if let Some(host) = non_empty(rule, "/host") {
            ingress_host(host, &format!("spec.rules[{i}].host"), &mut out);
        }
        if let Some(http) = rule.get("http").filter(|v| !v.is_null()) {
            let paths = array(http, "/paths");
            if paths.is_empty() {
                out.push(Cause::required(format!("spec.rules[{i}].http.paths"), ""));
            }
            for (j, p) in paths.iter().enumerate() {
                ingress_path(p, &format!("spec.rules[{i}].http.paths[{j}]"), &mut out);
            }
        }
    }
    for (i, tls) in array(obj, "/spec/tls").iter().enumerate() {
        for (j, h) in array(tls, "/hosts").iter().enumerate() {
            if let Some(h) = h.as_str() {
                ingress_host(h, &format!("spec.tls[{i}].hosts[{j}]"), &mut out);
            }
        }
    }
    if let Some(class) = non_empty(obj, "/spec/ingressClassName") {
        if !is_dns1123_subdomain(class) {
            out.push(Cause::invalid("spec.ingressClassName", class, &dns1123_subdomain_error()));
        }
    }
    out
}

// ---------------------------------------------------------------- rbac.authorization.k8s.io/v1

fn policy_rules(obj: &Value, namespaced: bool) -> Vec<Cause> {
    let mut out = Vec::new();
    for (i, rule) in array(obj, "/rules").iter().enumerate() {
        let at = format!("rules[{i}]");
        if array(rule, "/verbs").is_empty() {
            out.push(Cause::required(format!("{at}.verbs"), "verbs must contain at least one value"));
        }
        let urls = array(rule, "/nonResourceURLs");
        if !urls.is_empty() {
            if namespaced {
                out.push(invalid_raw(
                    format!("{at}.nonResourceURLs"),
                    go_strings(urls),
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if !array(rule, "/apiGroups").is_empty()
                || !array(rule, "/resources").is_empty()
                || !array(rule, "/resourceNames").is_empty()
            {
                out.push(invalid_raw(
                    format!("{at}.nonResourceURLs"),
                    go_strings(urls),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if array(rule, "/apiGroups").is_empty() {
            out.push(Cause::required(format!("{at}.apiGroups"), "resource rules must supply at least one api group"));
        }
        if array(rule, "/resources").is_empty() {
            out.push(Cause::required(format!("{at}.resources"), "resource rules must supply at least one resource"));
        }
    }
    out
}

pub fn role(obj: &Value) -> Vec<Cause> {
    policy_rules(obj, true)
}

pub fn cluster_role(obj: &Value) -> Vec<Cause> {
    // An aggregated ClusterRole's rules are the controller's to fill.
    if obj.pointer("/aggregationRule").is_some_and(|a| !a.is_null()) {
        let mut out = Vec::new();
        if array(obj, "/aggregationRule/clusterRoleSelectors").is_empty() {
            out.push(Cause::required(
                "aggregationRule.clusterRoleSelectors",
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            ));
        }
        return out;
    }
    policy_rules(obj, false)
}

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn binding(obj: &Value, cluster: bool) -> Vec<Cause> {
    let mut out = Vec::new();
    let group = str_at(obj, "/roleRef/apiGroup").unwrap_or("");
    if group != RBAC_GROUP {
        out.push(Cause::not_supported("roleRef.apiGroup", group, &[RBAC_GROUP]));
    }
    let kind = str_at(obj, "/roleRef/kind").unwrap_or("");
    let kinds: &[&str] = if cluster { &["ClusterRole"] } else { &["Role", "ClusterRole"] };
    if !kinds.contains(&kind) {
        out.push(Cause::not_supported("roleRef.kind", kind, kinds));
    }
    match non_empty(obj, "/roleRef/name") {
        None => out.push(Cause::required("roleRef.name", "")),
        Some(n) => out.extend(validate_name(NameRule::PathSegment, n, "roleRef.name")),
    }
    for (i, s) in array(obj, "/subjects").iter().enumerate() {
        let at = format!("subjects[{i}]");
        if non_empty(s, "/name").is_none() {
            out.push(Cause::required(format!("{at}.name"), ""));
        }
        let group = str_at(s, "/apiGroup").unwrap_or("");
        match str_at(s, "/kind").unwrap_or("") {
            "ServiceAccount" => {
                if let Some(name) = non_empty(s, "/name") {
                    out.extend(validate_name(NameRule::Subdomain, name, &format!("{at}.name")));
                }
                if !group.is_empty() {
                    out.push(Cause::not_supported(format!("{at}.apiGroup"), group, &[""]));
                }
                // In a RoleBinding an empty namespace is the binding's own.
                if cluster && non_empty(s, "/namespace").is_none() {
                    out.push(Cause::required(format!("{at}.namespace"), ""));
                }
            }
            "User" | "Group" => {
                if group != RBAC_GROUP {
                    out.push(Cause::not_supported(format!("{at}.apiGroup"), group, &[RBAC_GROUP]));
                }
            }
            other => out.push(Cause::not_supported(format!("{at}.kind"), other, &["ServiceAccount", "User", "Group"])),
        }
    }
    out
}

fn role_ref_go(obj: &Value) -> String {
    format!(
        "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
        str_at(obj, "/roleRef/apiGroup").unwrap_or(""),
        str_at(obj, "/roleRef/kind").unwrap_or(""),
        str_at(obj, "/roleRef/name").unwrap_or("")
    )
}

fn binding_update(new: &Value, old: &Value, cluster: bool) -> Vec<Cause> {
    let mut out = binding(new, cluster);
    if new.get("roleRef") != old.get("roleRef") {
        out.push(invalid_raw("roleRef", role_ref_go(new), "cannot change roleRef"));
    }
    out
}

// ---------------------------------------------------------------- core/v1 volumes

fn no_rules(_: &Value) -> Vec<Cause> {
    Vec::new()
}

/// A claim's spec is fixed once created, but for a volume name set once, a storage class
/// taken over from the beta annotation, and a bound claim's storage request and volume
/// attributes class (upstream's `ValidatePersistentVolumeClaimUpdate`).
fn persistent_volume_claim_update(new: &Value, old: &Value) -> Vec<Cause> {
    let spec = |v: &Value| v.get("spec").cloned().unwrap_or(json!({}));
    let (mut n, mut o) = (spec(new), spec(old));
    let (Some(nm), Some(om)) = (n.as_object_mut(), o.as_object_mut()) else { return Vec::new() };
    if non_empty(old, "/spec/volumeName").is_none() {
        nm.remove("volumeName");
        om.remove("volumeName");
    }
    let beta_class = str_at(old, "/metadata/annotations/volume.beta.kubernetes.io~1storage-class");
    if om.get("storageClassName").is_none_or(Value::is_null)
        && beta_class.is_some()
        && nm.get("storageClassName").and_then(Value::as_str) == beta_class
    {
        nm.remove("storageClassName");
    }
    if str_at(new, "/status/phase") == Some("Bound") {
        for m in [&mut *nm, &mut *om] {
            if let Some(req) = m.get_mut("resources").and_then(|r| r.get_mut("requests")).and_then(Value::as_object_mut)
            {
                req.remove("storage");
            }
        }
        if nm.get("volumeAttributesClassName").is_some_and(|v| !v.is_null()) {
            nm.remove("volumeAttributesClassName");
            om.remove("volumeAttributesClassName");
        }
    }
    if semantically_equal(Some(&n), Some(&o)) {
        return Vec::new();
    }
    vec![Cause::forbidden(
        "spec",
        "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
    )]
}

/// The fields of a PersistentVolume's spec that are not its volume source.
const PV_SPEC_FIELDS: &[&str] = &[
    "capacity",
    "accessModes",
    "claimRef",
    "persistentVolumeReclaimPolicy",
    "storageClassName",
    "mountOptions",
    "volumeMode",
    "nodeAffinity",
    "volumeAttributesClassName",
];

/// A volume's source and mode are fixed once created.
fn persistent_volume_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let source = |v: &Value| {
        let mut spec = v.get("spec").cloned().unwrap_or(json!({}));
        if let Some(m) = spec.as_object_mut() {
            m.retain(|k, _| !PV_SPEC_FIELDS.contains(&k.as_str()));
        }
        spec
    };
    if !semantically_equal(Some(&source(new)), Some(&source(old))) {
        // Upstream appends a Go diff of the two sources to this message; k3rs does not.
        out.push(Cause::forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        ));
    }
    if !semantically_equal(new.pointer("/spec/volumeMode"), old.pointer("/spec/volumeMode")) {
        // Upstream's path for this one is `volumeMode`, without `spec.`.
        let shown = str_at(new, "/spec/volumeMode").map_or_else(|| "null".to_string(), |m| format!("{m:?}"));
        out.push(immutable("volumeMode", shown));
    }
    out
}

// ---------------------------------------------------------------- networking.k8s.io/v1, node.k8s.io/v1

/// An IngressClass's controller is fixed once created.
fn ingress_class_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    if changed(new, old, "/spec/controller") {
        out.push(Cause::invalid("spec.controller", str_at(new, "/spec/controller").unwrap_or(""), IMMUTABLE));
    }
    out
}

/// A RuntimeClass's handler is fixed once created.
fn runtime_class_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    if changed(new, old, "/handler") {
        out.push(Cause::invalid("handler", str_at(new, "/handler").unwrap_or(""), IMMUTABLE));
    }
    out
}

// ---------------------------------------------------------------- storage.k8s.io/v1

pub fn storage_class(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    match non_empty(obj, "/provisioner") {
        None => out.push(Cause::required("provisioner", "")),
        Some(p) => {
            if p.len() > 63 {
                out.push(Cause {
                    reason: "FieldValueTooLong",
                    field: "provisioner".into(),
                    message: "Too long: may not be more than 63 bytes".into(),
                });
            }
            out.extend(super::meta::validate_qualified_name(p, "provisioner"));
        }
    }
    if let Some(p) = str_at(obj, "/reclaimPolicy") {
        if !matches!(p, "Delete" | "Retain") {
            out.push(Cause::not_supported("reclaimPolicy", p, &["Delete", "Retain"]));
        }
    }
    if let Some(m) = str_at(obj, "/volumeBindingMode") {
        if !matches!(m, "Immediate" | "WaitForFirstConsumer") {
            out.push(Cause::not_supported("volumeBindingMode", m, &["Immediate", "WaitForFirstConsumer"]));
        }
    }
    out
}

fn storage_class_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = storage_class(new);
    if changed(new, old, "/parameters") {
        out.push(Cause::forbidden("parameters", "updates to parameters are forbidden."));
    }
    if changed(new, old, "/provisioner") {
        out.push(Cause::forbidden("provisioner", "updates to provisioner are forbidden."));
    }
    if changed(new, old, "/reclaimPolicy") {
        out.push(Cause::forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden."));
    }
    if changed(new, old, "/volumeBindingMode") {
        out.push(Cause::invalid("volumeBindingMode", str_at(new, "/volumeBindingMode").unwrap_or(""), IMMUTABLE));
    }
    out
}

// ---------------------------------------------------------------- policy/v1

fn int_or_percent(v: &Value, field: &str, out: &mut Vec<Cause>) {
    match v {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                out.push(invalid_raw(field, n, "must be greater than or equal to 0"));
            }
        }
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            None => out.push(Cause::invalid(field, s, "must be an integer or percentage (e.g '5%')")),
            Some(p) if p < 0 => out.push(Cause::invalid(field, s, "must be greater than or equal to 0")),
            Some(p) if p > 100 => out.push(Cause::invalid(field, s, "must not be greater than 100%")),
            Some(_) => {}
        },
        _ => {}
    }
}

pub fn pod_disruption_budget(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let min = obj.pointer("/spec/minAvailable").filter(|v| !v.is_null());
    let max = obj.pointer("/spec/maxUnavailable").filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        out.push(invalid_raw(
            "spec",
            obj.get("spec").cloned().unwrap_or(json!({})),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    if let Some(m) = min {
        int_or_percent(m, "spec.minAvailable", &mut out);
    }
    if let Some(m) = max {
        int_or_percent(m, "spec.maxUnavailable", &mut out);
    }
    if let Some(p) = str_at(obj, "/spec/unhealthyPodEvictionPolicy") {
        if !matches!(p, "IfHealthyBudget" | "AlwaysAllow") {
            out.push(Cause::not_supported("spec.unhealthyPodEvictionPolicy", p, &["AlwaysAllow", "IfHealthyBudget"]));
        }
    }
    out
}

// ---------------------------------------------------------------- scheduling.k8s.io/v1

/// The largest value a PriorityClass of a user's may have.
pub const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;
const SYSTEM_CLASSES: &[(&str, i64)] =
    &[("system-node-critical", 2_000_001_000), ("system-cluster-critical", 2_000_000_000)];

pub fn priority_class(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let name = meta_str(obj, "name").unwrap_or("");
    let value = int_at(obj, "/value").unwrap_or(0);
    if name.starts_with("system-") {
        let known = SYSTEM_CLASSES.iter().find(|(n, _)| *n == name);
        let err = match known {
            None => Some(format!("{name} is not a known system priority class")),
            Some((_, v)) if *v != value => Some(format!("value of {name} PriorityClass must be {v}")),
            Some(_) if obj.get("globalDefault") == Some(&json!(true)) => {
                Some(format!("globalDefault of {name} PriorityClass must be false"))
            }
            Some(_) => None,
        };
        if let Some(e) = err {
            out.push(Cause::forbidden(
                "metadata.name",
                &format!("priority class names with 'system-' prefix are reserved for system use only. error: {e}"),
            ));
        }
    } else if value > HIGHEST_USER_PRIORITY {
        out.push(Cause::forbidden(
            "value",
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"),
        ));
    }
    if let Some(p) = str_at(obj, "/preemptionPolicy") {
        if !matches!(p, "Never" | "PreemptLowerPriority") {
            out.push(Cause::not_supported("preemptionPolicy", p, &["Never", "PreemptLowerPriority"]));
        }
    }
    out
}

fn priority_class_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = priority_class(new);
    if changed(new, old, "/value") {
        out.push(Cause::forbidden("value", "may not be changed in an update."));
    }
    if changed(new, old, "/preemptionPolicy") {
        out.push(Cause::invalid("preemptionPolicy", str_at(new, "/preemptionPolicy").unwrap_or(""), IMMUTABLE));
    }
    out
}

// ---------------------------------------------------------------- coordination.k8s.io/v1

pub fn lease(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    if let Some(d) = int_at(obj, "/spec/leaseDurationSeconds") {
        if d <= 0 {
            out.push(invalid_raw("spec.leaseDurationSeconds", d, "must be greater than 0"));
        }
    }
    if let Some(t) = int_at(obj, "/spec/leaseTransitions") {
        if t < 0 {
            out.push(invalid_raw("spec.leaseTransitions", t, "must be greater than or equal to 0"));
        }
    }
    out
}

// ---------------------------------------------------------------- core/v1

pub fn service_account(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    for (field, list) in [("secrets", "/secrets"), ("imagePullSecrets", "/imagePullSecrets")] {
        for (i, s) in array(obj, list).iter().enumerate() {
            if let Some(n) = non_empty(s, "/name") {
                out.extend(validate_name(NameRule::Subdomain, n, &format!("{field}[{i}].name")));
            }
        }
    }
    out
}

fn ip_ok(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

pub fn endpoints(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    for (i, ss) in array(obj, "/subsets").iter().enumerate() {
        let at = format!("subsets[{i}]");
        let ready = array(ss, "/addresses");
        let not_ready = array(ss, "/notReadyAddresses");
        if ready.is_empty() && not_ready.is_empty() {
            out.push(Cause::required(&at, "must specify `addresses` or `notReadyAddresses`"));
        }
        for (list, addrs) in [("addresses", ready), ("notReadyAddresses", not_ready)] {
            for (j, a) in addrs.iter().enumerate() {
                let ip = str_at(a, "/ip").unwrap_or("");
                if !ip_ok(ip) {
                    out.push(Cause::invalid(
                        format!("{at}.{list}[{j}].ip"),
                        ip,
                        "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                    ));
                }
            }
        }
        let ports = array(ss, "/ports");
        for (j, p) in ports.iter().enumerate() {
            let pat = format!("{at}.ports[{j}]");
            if ports.len() > 1 && non_empty(p, "/name").is_none() {
                out.push(Cause::required(format!("{pat}.name"), ""));
            }
            check_port(&format!("{pat}.port"), int_at(p, "/port"), &mut out);
            check_protocol(&format!("{pat}.protocol"), str_at(p, "/protocol"), &mut out);
        }
    }
    out
}

// ---------------------------------------------------------------- discovery.k8s.io/v1

pub fn endpoint_slice(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let family = str_at(obj, "/addressType").unwrap_or("");
    match family {
        "" => out.push(Cause::required("addressType", "")),
        "IPv4" | "IPv6" | "FQDN" => {}
        other => out.push(Cause::not_supported("addressType", other, &["FQDN", "IPv4", "IPv6"])),
    }
    let eps = array(obj, "/endpoints");
    if eps.len() > 1000 {
        out.push(Cause {
            reason: "FieldValueTooMany",
            field: "endpoints".into(),
            message: format!("Too many: {}: must have at most 1000 items", eps.len()),
        });
    }
    for (i, ep) in eps.iter().enumerate() {
        let addrs = array(ep, "/addresses");
        if addrs.is_empty() {
            out.push(Cause::required(format!("endpoints[{i}].addresses"), "must contain at least 1 address"));
        } else if addrs.len() > 100 {
            out.push(Cause {
                reason: "FieldValueTooMany",
                field: format!("endpoints[{i}].addresses"),
                message: format!("Too many: {}: must have at most 100 items", addrs.len()),
            });
        }
        for (j, a) in addrs.iter().enumerate() {
            let a = a.as_str().unwrap_or("");
            let field = format!("endpoints[{i}].addresses[{j}]");
            match family {
                "IPv4" if a.parse::<std::net::Ipv4Addr>().is_err() => {
                    out.push(Cause::invalid(field, a, "must be a valid IPv4 address"))
                }
                "IPv6" if a.parse::<std::net::Ipv6Addr>().is_err() => {
                    out.push(Cause::invalid(field, a, "must be a valid IPv6 address"))
                }
                "FQDN" if !is_dns1123_subdomain(a) => out.push(Cause::invalid(field, a, &dns1123_subdomain_error())),
                _ => {}
            }
        }
    }
    for (i, p) in array(obj, "/ports").iter().enumerate() {
        if let Some(n) = int_at(p, "/port") {
            check_port(&format!("ports[{i}].port"), Some(n), &mut out);
        }
        if let Some(proto) = str_at(p, "/protocol") {
            check_protocol(&format!("ports[{i}].protocol"), Some(proto), &mut out);
        }
    }
    out
}

fn endpoint_slice_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut out = endpoint_slice(new);
    if changed(new, old, "/addressType") {
        out.push(Cause::invalid("addressType", str_at(new, "/addressType").unwrap_or(""), IMMUTABLE));
    }
    out
}

// ---------------------------------------------------------------- certificates.k8s.io/v1

const KEY_USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

pub fn certificate_signing_request(obj: &Value) -> Vec<Cause> {
    use base64::Engine;
    let mut out = Vec::new();
    match non_empty(obj, "/spec/request") {
        None => out.push(Cause::required("spec.request", "")),
        Some(r) => {
            let pem = base64::engine::general_purpose::STANDARD
                .decode(r)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .unwrap_or_default();
            if !pem.contains("-----BEGIN CERTIFICATE REQUEST-----")
                && !pem.contains("-----BEGIN NEW CERTIFICATE REQUEST-----")
            {
                out.push(invalid_raw("spec.request", "[]byte{...}", "PEM block type must be CERTIFICATE REQUEST"));
            }
        }
    }
    match non_empty(obj, "/spec/signerName") {
        None => out.push(Cause::required("spec.signerName", "")),
        Some(s) => match s.split_once('/') {
            Some((domain, path)) if is_dns1123_subdomain(domain) && !path.is_empty() => {}
            Some(_) | None => out.push(Cause::invalid(
                "spec.signerName",
                s,
                "must be a fully qualified domain and path of the form 'example.com/signer-name'",
            )),
        },
    }
    let usages = array(obj, "/spec/usages");
    if usages.is_empty() {
        out.push(Cause::required("spec.usages", "usages must be provided"));
    }
    for (i, u) in usages.iter().enumerate() {
        let u = u.as_str().unwrap_or("");
        if !KEY_USAGES.contains(&u) {
            out.push(Cause::not_supported(format!("spec.usages[{i}]"), u, KEY_USAGES));
        }
    }
    if let Some(e) = int_at(obj, "/spec/expirationSeconds") {
        if e < 600 {
            out.push(invalid_raw(
                "spec.expirationSeconds",
                e,
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
    }
    out
}

// ---------------------------------------------------------------- workloads (apps/v1, batch/v1)

/// `spec.replicas` ≥ 0, a selector that is present, not empty, and matches the template's
/// labels: upstream's rules for Deployments, ReplicaSets, StatefulSets and DaemonSets
/// (`kind` words the empty-selector message).
pub fn workload_selector(obj: &Value, kind: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    if let Some(r) = int_at(obj, "/spec/replicas") {
        if r < 0 {
            out.push(invalid_raw("spec.replicas", r, "must be greater than or equal to 0"));
        }
    }
    let sel = obj.pointer("/spec/selector").filter(|v| !v.is_null());
    let Some(sel) = sel else {
        out.push(Cause::required("spec.selector", ""));
        return out;
    };
    let empty = sel.get("matchLabels").and_then(Value::as_object).is_none_or(|m| m.is_empty())
        && array(sel, "/matchExpressions").is_empty();
    if empty {
        out.push(invalid_raw(
            "spec.selector",
            "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}",
            &format!("empty selector is invalid for {}", kind.to_ascii_lowercase()),
        ));
        return out;
    }
    match crate::apiserver::selector::LabelSelector::from_metav1_json(Some(sel)) {
        Ok(s) => {
            let labels = obj.pointer("/spec/template/metadata/labels").cloned().unwrap_or(json!({}));
            let template = json!({"metadata": {"labels": labels}});
            if !s.matches_object(&template) {
                let shown = labels.as_object().map(|m| {
                    let mut pairs: Vec<String> =
                        m.iter().map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or(""))).collect();
                    pairs.sort();
                    format!("map[string]string{{{}}}", pairs.join(", "))
                });
                out.push(invalid_raw(
                    "spec.template.metadata.labels",
                    shown.unwrap_or_else(|| "map[string]string(nil)".into()),
                    "`selector` does not match template `labels`",
                ));
            }
        }
        Err(e) => out.push(Cause::invalid("spec.selector", "", &e.to_string())),
    }
    out
}

/// A Job's pods may only be restarted `OnFailure` or `Never`.
pub fn job_template(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    match str_at(obj, "/spec/template/spec/restartPolicy") {
        Some("OnFailure" | "Never") => {}
        other => out.push(Cause::not_supported(
            "spec.template.spec.restartPolicy",
            other.unwrap_or(""),
            &["OnFailure", "Never"],
        )),
    }
    for (field, min) in [("parallelism", 0), ("completions", 0), ("activeDeadlineSeconds", 1), ("backoffLimit", 0)] {
        if let Some(v) = int_at(obj, &format!("/spec/{field}")) {
            if v < min {
                let msg = if min == 0 { "must be greater than or equal to 0" } else { "must be greater than 0" };
                out.push(invalid_raw(format!("spec.{field}"), v, msg));
            }
        }
    }
    out
}

// ---------------------------------------------------------------- strategies

/// A strategy made of a validation function (and an update rule), for resources with
/// nothing else to do.
pub struct Validated {
    pub validate: fn(&Value) -> Vec<Cause>,
    pub validate_update: Option<fn(&Value, &Value) -> Vec<Cause>>,
    pub defaults: Option<fn(&mut Value)>,
}

#[async_trait::async_trait]
impl Strategy for Validated {
    fn prepare_create(&self, obj: &mut Value) {
        if let Some(d) = self.defaults {
            d(obj);
        }
    }
    fn prepare_update(&self, new: &mut Value, _old: &Value) {
        if let Some(d) = self.defaults {
            d(new);
        }
    }
    fn validate(&self, obj: &Value) -> Vec<Cause> {
        (self.validate)(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        match self.validate_update {
            Some(f) => f(new, old),
            None => (self.validate)(new),
        }
    }
}

fn storage_class_defaults(obj: &mut Value) {
    if str_at(obj, "/reclaimPolicy").is_none() {
        obj["reclaimPolicy"] = json!("Delete");
    }
    if str_at(obj, "/volumeBindingMode").is_none() {
        obj["volumeBindingMode"] = json!("Immediate");
    }
}

/// Endpoints ports are TCP unless they say otherwise.
fn endpoints_defaults(obj: &mut Value) {
    if let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) {
        for ports in subsets.iter_mut().filter_map(|s| s.get_mut("ports")).filter_map(Value::as_array_mut) {
            default_port_protocols(ports, false);
        }
    }
}

/// EndpointSlice ports are TCP and unnamed ("") unless they say otherwise.
fn endpoint_slice_defaults(obj: &mut Value) {
    if let Some(ports) = obj.get_mut("ports").and_then(Value::as_array_mut) {
        default_port_protocols(ports, true);
    }
}

fn default_port_protocols(ports: &mut [Value], name: bool) {
    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
        if p.get("protocol").is_none_or(Value::is_null) {
            p.insert("protocol".into(), json!("TCP"));
        }
        if name && p.get("name").is_none_or(Value::is_null) {
            p.insert("name".into(), json!(""));
        }
    }
}

fn priority_class_defaults(obj: &mut Value) {
    if str_at(obj, "/preemptionPolicy").is_none() {
        obj["preemptionPolicy"] = json!("PreemptLowerPriority");
    }
}

/// The validating strategy of a resource this module covers, if any.
pub fn strategy_for(group: &str, plural: &str) -> Option<Validated> {
    let v = |validate: fn(&Value) -> Vec<Cause>| Validated { validate, validate_update: None, defaults: None };
    Some(match (group, plural) {
        ("networking.k8s.io", "ingresses") => v(ingress),
        ("rbac.authorization.k8s.io", "roles") => v(role),
        ("rbac.authorization.k8s.io", "clusterroles") => v(cluster_role),
        ("rbac.authorization.k8s.io", "rolebindings") => {
            Validated { validate_update: Some(|n, o| binding_update(n, o, false)), ..v(|o| binding(o, false)) }
        }
        ("rbac.authorization.k8s.io", "clusterrolebindings") => {
            Validated { validate_update: Some(|n, o| binding_update(n, o, true)), ..v(|o| binding(o, true)) }
        }
        ("storage.k8s.io", "storageclasses") => Validated {
            validate_update: Some(storage_class_update),
            defaults: Some(storage_class_defaults),
            ..v(storage_class)
        },
        ("policy", "poddisruptionbudgets") => v(pod_disruption_budget),
        ("scheduling.k8s.io", "priorityclasses") => Validated {
            validate_update: Some(priority_class_update),
            defaults: Some(priority_class_defaults),
            ..v(priority_class)
        },
        ("coordination.k8s.io", "leases") => v(lease),
        ("", "serviceaccounts") => v(service_account),
        ("", "endpoints") => Validated { defaults: Some(endpoints_defaults), ..v(endpoints) },
        ("discovery.k8s.io", "endpointslices") => Validated {
            validate_update: Some(endpoint_slice_update),
            defaults: Some(endpoint_slice_defaults),
            ..v(endpoint_slice)
        },
        ("certificates.k8s.io", "certificatesigningrequests") => v(certificate_signing_request),
        ("", "persistentvolumeclaims") => {
            Validated { validate_update: Some(persistent_volume_claim_update), ..v(no_rules) }
        }
        ("", "persistentvolumes") => Validated { validate_update: Some(persistent_volume_update), ..v(no_rules) },
        ("networking.k8s.io", "ingressclasses") => {
            Validated { validate_update: Some(ingress_class_update), ..v(no_rules) }
        }
        ("node.k8s.io", "runtimeclasses") => Validated { validate_update: Some(runtime_class_update), ..v(no_rules) },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(field, reason, message)` of each cause.
    fn causes(c: Vec<Cause>) -> Vec<(String, &'static str, String)> {
        c.into_iter().map(|c| (c.field, c.reason, c.message)).collect()
    }

    fn one(c: Vec<Cause>) -> (String, &'static str, String) {
        let mut all = causes(c);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    fn t(field: &str, reason: &'static str, message: &str) -> (String, &'static str, String) {
        (field.to_string(), reason, message.to_string())
    }

    #[test]
    fn ingress_messages() {
        let svc = json!({"service": {"name": "web", "port": {"number": 80}}});
        let ok = json!({"spec": {"rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": svc}]}}]}});
        assert!(ingress(&ok).is_empty());
        let table: &[(Value, (String, &str, String))] = &[
            (json!({"spec": {}}), t("spec.rules", "FieldValueInvalid", "Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified")),
            (json!({"spec": {"rules": [{"http": {"paths": [{"path": "/", "backend": svc}]}}]}}), t("spec.rules[0].http.paths[0].pathType", "FieldValueRequired", "Required value: pathType must be specified")),
            (json!({"spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Regex", "backend": svc}]}}]}}), t("spec.rules[0].http.paths[0].pathType", "FieldValueNotSupported", "Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\"")),
            (json!({"spec": {"rules": [{"http": {"paths": [{"path": "api", "pathType": "Exact", "backend": svc}]}}]}}), t("spec.rules[0].http.paths[0].path", "FieldValueInvalid", "Invalid value: \"api\": must be an absolute path")),
            (json!({"spec": {"rules": [{"http": {"paths": []}}]}}), t("spec.rules[0].http.paths", "FieldValueRequired", "Required value")),
            (json!({"spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web"}}}]}}]}}), t("spec.rules[0].http.paths[0].backend.service.port", "FieldValueRequired", "Required value: port name or number is required")),
            (json!({"spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 70000}}}}]}}]}}), t("spec.rules[0].http.paths[0].backend.service.port.number", "FieldValueInvalid", "Invalid value: 70000: must be between 1 and 65535, inclusive")),
            (json!({"spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {}}]}}]}}), t("spec.rules[0].http.paths[0].backend", "FieldValueInvalid", "Invalid value: \"\": resource or service backend is required")),
            (json!({"spec": {"defaultBackend": svc, "rules": [{"host": "10.0.0.1"}]}}), t("spec.rules[0].host", "FieldValueInvalid", "Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address")),
        ];
        for (obj, want) in table {
            assert_eq!(&one(ingress(obj)), want, "{obj}");
        }
    }

    #[test]
    fn rbac_messages() {
        let r = json!({"rules": [{"apiGroups": [""], "resources": ["pods"]}]});
        assert_eq!(
            one(role(&r)),
            t("rules[0].verbs", "FieldValueRequired", "Required value: verbs must contain at least one value")
        );
        let r = json!({"rules": [{"verbs": ["get"]}]});
        assert_eq!(
            causes(role(&r)),
            [
                t(
                    "rules[0].apiGroups",
                    "FieldValueRequired",
                    "Required value: resource rules must supply at least one api group"
                ),
                t(
                    "rules[0].resources",
                    "FieldValueRequired",
                    "Required value: resource rules must supply at least one resource"
                ),
            ]
        );
        let r = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert_eq!(
            one(role(&r)),
            t(
                "rules[0].nonResourceURLs",
                "FieldValueInvalid",
                "Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs"
            )
        );
        assert!(cluster_role(&r).is_empty());

        let good = json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": "view"}, "subjects": [{"kind": "User", "name": "jane", "apiGroup": RBAC_GROUP}]});
        assert!(binding(&good, false).is_empty());
        assert_eq!(
            one(binding(&good, true)),
            t(
                "roleRef.kind",
                "FieldValueNotSupported",
                "Unsupported value: \"Role\": supported values: \"ClusterRole\""
            )
        );
        assert_eq!(
            one(binding(&json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role"}}), false)),
            t("roleRef.name", "FieldValueRequired", "Required value")
        );
        // A RoleBinding's service account without a namespace is in the binding's namespace;
        // a ClusterRoleBinding's must name one.
        let sa = json!({"roleRef": good["roleRef"], "subjects": [{"kind": "ServiceAccount", "name": "robot"}]});
        assert!(binding(&sa, false).is_empty(), "{:?}", binding(&sa, false));
        let cluster_sa = json!({"roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "view"}, "subjects": sa["subjects"]});
        assert_eq!(one(binding(&cluster_sa, true)), t("subjects[0].namespace", "FieldValueRequired", "Required value"));
        let bad_name = json!({"roleRef": good["roleRef"], "subjects": [{"kind": "ServiceAccount", "name": "Robot_1", "namespace": "default"}]});
        assert_eq!(one(binding(&bad_name, false)).0, "subjects[0].name");
        let mut moved = good.clone();
        moved["roleRef"]["name"] = json!("edit");
        assert_eq!(
            one(binding_update(&moved, &good, false)),
            t("roleRef", "FieldValueInvalid", "Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"Role\", Name:\"edit\"}: cannot change roleRef")
        );
    }

    #[test]
    fn immutable_volume_and_class_fields() {
        let pvc = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        let mut named = pvc.clone();
        named["spec"]["volumeName"] = json!("pv1");
        assert!(persistent_volume_claim_update(&named, &pvc).is_empty(), "a volume name may be set once");
        let mut renamed = named.clone();
        renamed["spec"]["volumeName"] = json!("pv2");
        let msg = "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";
        assert_eq!(one(persistent_volume_claim_update(&renamed, &named)), t("spec", "FieldValueForbidden", msg));
        let mut grown = named.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(one(persistent_volume_claim_update(&grown, &named)).0, "spec", "only a bound claim grows");
        grown["status"] = json!({"phase": "Bound"});
        assert!(persistent_volume_claim_update(&grown, &named).is_empty());

        let pv = json!({"spec": {"hostPath": {"path": "/a"}, "capacity": {"storage": "1Gi"}}});
        let mut moved = pv.clone();
        moved["spec"]["hostPath"]["path"] = json!("/b");
        moved["spec"]["capacity"]["storage"] = json!("2Gi");
        assert_eq!(
            one(persistent_volume_update(&moved, &pv)),
            t(
                "spec.persistentvolumesource",
                "FieldValueForbidden",
                "Forbidden: spec.persistentvolumesource is immutable after creation"
            )
        );
        let mut block = pv.clone();
        block["spec"]["volumeMode"] = json!("Block");
        assert_eq!(
            one(persistent_volume_update(&block, &pv)),
            t("volumeMode", "FieldValueInvalid", "Invalid value: \"Block\": field is immutable")
        );

        let ic = json!({"spec": {"controller": "k3rs.io/ingress"}});
        let other = json!({"spec": {"controller": "example.com/other"}});
        assert_eq!(
            one(ingress_class_update(&other, &ic)),
            t("spec.controller", "FieldValueInvalid", "Invalid value: \"example.com/other\": field is immutable")
        );
        assert_eq!(
            one(runtime_class_update(&json!({"handler": "b"}), &json!({"handler": "a"}))),
            t("handler", "FieldValueInvalid", "Invalid value: \"b\": field is immutable")
        );
    }

    #[test]
    fn go_forms_and_semantic_equality() {
        assert_eq!(
            go_label_selector(Some(&json!({"matchLabels": {"b": "2", "a": "1"}}))),
            "v1.LabelSelector{MatchLabels:map[string]string{\"a\":\"1\", \"b\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"
        );
        assert_eq!(
            go_label_selector(Some(&json!({"matchExpressions": [{"key": "k", "operator": "In", "values": ["x"]}]}))),
            "v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"k\", Operator:\"In\", Values:[]string{\"x\"}}}}"
        );
        assert_eq!(go_label_selector(None), "null");
        assert!(semantically_equal(Some(&json!({"a": [], "b": null, "c": {}})), None));
        assert!(semantically_equal(Some(&json!({"a": [1], "b": {}})), Some(&json!({"a": [1]}))));
        assert!(!semantically_equal(Some(&json!({"a": [1]})), Some(&json!({"a": [2]}))));
    }

    #[test]
    fn storage_class_messages() {
        assert_eq!(one(storage_class(&json!({}))), t("provisioner", "FieldValueRequired", "Required value"));
        let mut sc = json!({"provisioner": "rancher.io/local-path", "parameters": {"a": "1"}});
        storage_class_defaults(&mut sc);
        assert_eq!(
            (sc["reclaimPolicy"].as_str(), sc["volumeBindingMode"].as_str()),
            (Some("Delete"), Some("Immediate"))
        );
        assert!(storage_class(&sc).is_empty());
        let mut changed = sc.clone();
        changed["parameters"]["a"] = json!("2");
        changed["volumeBindingMode"] = json!("WaitForFirstConsumer");
        assert_eq!(
            causes(storage_class_update(&changed, &sc)),
            [
                t("parameters", "FieldValueForbidden", "Forbidden: updates to parameters are forbidden."),
                t(
                    "volumeBindingMode",
                    "FieldValueInvalid",
                    "Invalid value: \"WaitForFirstConsumer\": field is immutable"
                ),
            ]
        );
        let bad = json!({"provisioner": "x", "reclaimPolicy": "Recycle"});
        assert_eq!(
            one(storage_class(&bad)),
            t(
                "reclaimPolicy",
                "FieldValueNotSupported",
                "Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\""
            )
        );
    }

    #[test]
    fn pdb_priority_class_and_lease_messages() {
        assert_eq!(
            one(pod_disruption_budget(&json!({"spec": {"minAvailable": -1}}))),
            t("spec.minAvailable", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0")
        );
        assert_eq!(
            one(pod_disruption_budget(&json!({"spec": {"maxUnavailable": "120%"}}))),
            t("spec.maxUnavailable", "FieldValueInvalid", "Invalid value: \"120%\": must not be greater than 100%")
        );
        assert_eq!(
            one(pod_disruption_budget(&json!({"spec": {"maxUnavailable": "x"}}))),
            t(
                "spec.maxUnavailable",
                "FieldValueInvalid",
                "Invalid value: \"x\": must be an integer or percentage (e.g '5%')"
            )
        );
        assert!(pod_disruption_budget(&json!({"spec": {"minAvailable": 1, "maxUnavailable": 1}}))[0]
            .message
            .ends_with("minAvailable and maxUnavailable cannot be both set"));

        let pc = |name: &str, value: i64| json!({"metadata": {"name": name}, "value": value});
        assert!(priority_class(&pc("high", 1000)).is_empty());
        assert_eq!(
            one(priority_class(&pc("huge", 2_000_000_000))),
            t(
                "value",
                "FieldValueForbidden",
                "Forbidden: maximum allowed value of a user defined priority is 1000000000"
            )
        );
        assert_eq!(
            one(priority_class(&pc("system-mine", 1))),
            t("metadata.name", "FieldValueForbidden", "Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class")
        );
        assert!(priority_class(&pc("system-node-critical", 2_000_001_000)).is_empty());
        assert_eq!(
            one(priority_class_update(&pc("high", 5), &pc("high", 1000))),
            t("value", "FieldValueForbidden", "Forbidden: may not be changed in an update.")
        );

        assert_eq!(
            one(lease(&json!({"spec": {"leaseDurationSeconds": 0}}))),
            t("spec.leaseDurationSeconds", "FieldValueInvalid", "Invalid value: 0: must be greater than 0")
        );
        assert_eq!(
            one(lease(&json!({"spec": {"leaseTransitions": -2}}))),
            t("spec.leaseTransitions", "FieldValueInvalid", "Invalid value: -2: must be greater than or equal to 0")
        );
    }

    #[test]
    fn endpoints_slices_accounts_and_csr_messages() {
        assert_eq!(
            one(endpoints(&json!({"subsets": [{"ports": [{"port": 80, "protocol": "TCP"}]}]}))),
            t("subsets[0]", "FieldValueRequired", "Required value: must specify `addresses` or `notReadyAddresses`")
        );
        let bad = json!({"subsets": [{"addresses": [{"ip": "nope"}], "ports": [{"port": 0, "protocol": "TCP"}]}]});
        assert_eq!(
            causes(endpoints(&bad)),
            [
                t(
                    "subsets[0].addresses[0].ip",
                    "FieldValueInvalid",
                    "Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
                ),
                t(
                    "subsets[0].ports[0].port",
                    "FieldValueInvalid",
                    "Invalid value: 0: must be between 1 and 65535, inclusive"
                ),
            ]
        );
        assert_eq!(
            one(endpoint_slice(&json!({"endpoints": []}))),
            t("addressType", "FieldValueRequired", "Required value")
        );
        assert_eq!(
            one(endpoint_slice(&json!({"addressType": "IPv4", "endpoints": [{"addresses": ["::1"]}]}))),
            t("endpoints[0].addresses[0]", "FieldValueInvalid", "Invalid value: \"::1\": must be a valid IPv4 address")
        );
        assert_eq!(
            one(endpoint_slice(&json!({"addressType": "IPv4", "endpoints": [{"addresses": []}]}))),
            t("endpoints[0].addresses", "FieldValueRequired", "Required value: must contain at least 1 address")
        );
        assert_eq!(
            one(endpoint_slice_update(&json!({"addressType": "IPv6"}), &json!({"addressType": "IPv4"}))),
            t("addressType", "FieldValueInvalid", "Invalid value: \"IPv6\": field is immutable")
        );
        assert_eq!(one(service_account(&json!({"secrets": [{"name": "Bad_Name"}]}))).0, "secrets[0].name");

        let csr = json!({"spec": {"request": "bm90IGEgcGVt", "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"]}});
        assert_eq!(
            one(certificate_signing_request(&csr)),
            t(
                "spec.request",
                "FieldValueInvalid",
                "Invalid value: []byte{...}: PEM block type must be CERTIFICATE REQUEST"
            )
        );
        let csr = json!({"spec": {"request": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K", "signerName": "nodomain", "usages": ["flying"], "expirationSeconds": 60}});
        assert_eq!(
            causes(certificate_signing_request(&csr)).into_iter().map(|c| c.0).collect::<Vec<_>>(),
            ["spec.signerName", "spec.usages[0]", "spec.expirationSeconds"]
        );
    }

    #[test]
    fn workload_messages() {
        let d = |sel: Value, labels: Value, replicas: i64| json!({"spec": {"replicas": replicas, "selector": sel, "template": {"metadata": {"labels": labels}}}});
        assert!(workload_selector(
            &d(json!({"matchLabels": {"app": "web"}}), json!({"app": "web", "x": "y"}), 1),
            "Deployment"
        )
        .is_empty());
        assert_eq!(
            one(workload_selector(&d(json!({"matchLabels": {"app": "web"}}), json!({"app": "api"}), 1), "Deployment")),
            t(
                "spec.template.metadata.labels",
                "FieldValueInvalid",
                "Invalid value: map[string]string{\"app\":\"api\"}: `selector` does not match template `labels`"
            )
        );
        assert_eq!(
            one(workload_selector(&d(json!({"matchLabels": {"app": "web"}}), json!({"app": "web"}), -1), "Deployment")),
            t("spec.replicas", "FieldValueInvalid", "Invalid value: -1: must be greater than or equal to 0")
        );
        assert_eq!(
            one(workload_selector(&json!({"spec": {}}), "Deployment")),
            t("spec.selector", "FieldValueRequired", "Required value")
        );
        assert!(one(workload_selector(&d(json!({}), json!({"app": "web"}), 1), "Deployment"))
            .2
            .ends_with("empty selector is invalid for deployment"));
        assert_eq!(
            one(job_template(&json!({"spec": {"template": {"spec": {"restartPolicy": "Always"}}}}))),
            t(
                "spec.template.spec.restartPolicy",
                "FieldValueNotSupported",
                "Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
            )
        );
    }
}
