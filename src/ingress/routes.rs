//! The route table: a pure function of the Ingresses, IngressClasses, Services,
//! EndpointSlices and TLS Secrets the informers hold, and the matching a request goes
//! through (host, then path, then canary). Rebuilt whole on every change and swapped in
//! atomically by the caller; nothing here does I/O.
//!
//! Precedence is the `networking.k8s.io/v1` API's, with ingress-nginx where the API leaves
//! it open: an exact host before a wildcard one (`*.foo.com` covers exactly one label) and
//! both before rules without a host; within a host the longest matching path wins, Exact
//! before Prefix on a tie; of two Ingresses claiming the same host and path the older one
//! wins; a request no path matches goes to the default backend.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, IngressServiceBackend};
use kube::Resource;
use rustls::sign::CertifiedKey;

use super::canary::CanaryPolicy;

/// The IngressClass k3rs creates at boot and serves.
pub const CLASS_NAME: &str = "k3rs";
/// The `spec.controller` of IngressClasses this ingress serves.
pub const CONTROLLER: &str = "k3rs.io/ingress";
/// Marks an IngressClass as the one Ingresses without a class get.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The annotation that named a class before `spec.ingressClassName`, still honoured.
pub const LEGACY_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
/// The label tying an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// How a path rule compares with a request's path.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathKind {
    /// The whole path, case-sensitively.
    Exact,
    /// Element by element: `/foo` matches `/foo` and `/foo/bar`, not `/foobar`.
    Prefix,
}

impl PathKind {
    /// The kind of a `pathType`; ImplementationSpecific (and anything unknown) is Prefix.
    pub fn from_api(path_type: &str) -> PathKind {
        if path_type == "Exact" {
            PathKind::Exact
        } else {
            PathKind::Prefix
        }
    }
}

/// Whether `path` (a request's path, without query) matches the rule `rule` of `kind`.
pub fn path_matches(kind: PathKind, rule: &str, path: &str) -> bool {
    match kind {
        PathKind::Exact => rule == path,
        PathKind::Prefix => {
            let rule = rule.trim_end_matches('/');
            if rule.is_empty() {
                return path.starts_with('/') || path.is_empty();
            }
            match path.strip_prefix(rule) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => false,
            }
        }
    }
}

/// A request's host as rules compare it: the `Host` header or `:authority` without the
/// port, lower case, without a trailing dot.
pub fn normalize_host(raw: &str) -> String {
    let raw = raw.trim();
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // An IPv6 literal: keep the brackets' content.
        rest.split(']').next().unwrap_or("")
    } else {
        raw.rsplit_once(':').map_or(raw, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { raw })
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The suffix a wildcard rule `*.<suffix>` would need to cover `host`: everything after
/// its first label, if that label is not empty.
pub fn wildcard_suffix(host: &str) -> Option<&str> {
    let (label, rest) = host.split_once('.')?;
    (!label.is_empty() && !rest.is_empty()).then_some(rest)
}

/// Where requests are sent: one Service port's ready endpoints, tried round robin.
#[derive(Debug)]
pub struct Upstream {
    /// `namespace/service:port`, for messages.
    pub name: String,
    /// The endpoints, or why there are none (the 503's text).
    pub targets: Result<Vec<SocketAddr>, String>,
    next: AtomicUsize,
}

impl Upstream {
    pub fn new(name: String, targets: Result<Vec<SocketAddr>, String>) -> Upstream {
        Upstream { name, targets, next: AtomicUsize::new(0) }
    }

    /// The endpoints in the order one request tries them: each request starts one further
    /// along than the last.
    pub fn order(&self) -> Vec<SocketAddr> {
        match &self.targets {
            Ok(t) if !t.is_empty() => {
                let start = self.next.fetch_add(1, Ordering::Relaxed) % t.len();
                t[start..].iter().chain(&t[..start]).copied().collect()
            }
            _ => Vec::new(),
        }
    }
}

/// A second backend for a route, chosen per request by [`CanaryPolicy`].
#[derive(Debug)]
pub struct Canary {
    pub policy: CanaryPolicy,
    pub upstream: Arc<Upstream>,
}

/// One path of one host.
#[derive(Debug)]
pub struct Route {
    pub kind: PathKind,
    pub path: String,
    pub upstream: Arc<Upstream>,
    pub canary: Option<Canary>,
    /// `namespace/name` of the Ingress it came from.
    pub ingress: String,
}

impl Route {
    fn rank(&self) -> (std::cmp::Reverse<usize>, PathKind) {
        let len = match self.kind {
            PathKind::Exact => self.path.len(),
            PathKind::Prefix => self.path.trim_end_matches('/').len(),
        };
        (std::cmp::Reverse(len), self.kind)
    }
}

/// Something wrong with an Ingress or what it names, reported as a Warning Event on it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    /// `namespace/name` of the Ingress.
    pub ingress: String,
    pub reason: &'static str,
    pub message: String,
}

/// The objects a table is built from.
#[derive(Default)]
pub struct Inputs {
    pub ingresses: Vec<Arc<Ingress>>,
    pub classes: Vec<Arc<IngressClass>>,
    pub services: Vec<Arc<Service>>,
    pub slices: Vec<Arc<EndpointSlice>>,
    pub secrets: Vec<Arc<Secret>>,
}

/// Routes by host, certificates by host, and what was wrong building them.
#[derive(Default)]
pub struct Table {
    hosts: HashMap<String, Vec<Route>>,
    wildcards: HashMap<String, Vec<Route>>,
    any_host: Vec<Route>,
    default: Option<Route>,
    certs: HashMap<String, Arc<CertifiedKey>>,
    wildcard_certs: HashMap<String, Arc<CertifiedKey>>,
    /// The Ingresses this table serves: references for their status and events.
    pub served: Vec<ObjectReference>,
    pub problems: Vec<Problem>,
}

impl Table {
    /// The route for a request to `host` (normalized) and `path`: the host's rules, else
    /// the default backend.
    pub fn find(&self, host: &str, path: &str) -> Option<&Route> {
        let routes = match self.hosts.get(host) {
            Some(r) => r,
            None => match wildcard_suffix(host).and_then(|s| self.wildcards.get(s)) {
                Some(r) => r,
                None => &self.any_host,
            },
        };
        routes.iter().find(|r| path_matches(r.kind, &r.path, path)).or(self.default.as_ref())
    }

    /// The certificate for a TLS server name, if an Ingress names one for it.
    pub fn cert(&self, server_name: &str) -> Option<Arc<CertifiedKey>> {
        let name = server_name.trim_end_matches('.').to_ascii_lowercase();
        self.certs.get(&name).or_else(|| wildcard_suffix(&name).and_then(|s| self.wildcard_certs.get(s))).cloned()
    }

    /// Builds the table; `parse_cert` turns a TLS Secret into a certificate (or says why
    /// it cannot).
    pub fn build(inputs: &Inputs, parse_cert: impl Fn(&Secret) -> Result<Arc<CertifiedKey>, String>) -> Table {
        let mut b = Builder { inputs, upstreams: HashMap::new(), table: Table::default() };
        let mut ingresses: Vec<&Arc<Ingress>> = inputs
            .ingresses
            .iter()
            .filter(|i| serves(i, &inputs.classes) && i.metadata.deletion_timestamp.is_none())
            .collect();
        // Older first, so that on a conflict the older Ingress wins (ingress-nginx).
        ingresses.sort_by(|a, b| {
            let key = |i: &Ingress| (i.metadata.creation_timestamp.clone().map(|t| t.0), key_of(i));
            key(a).cmp(&key(b))
        });
        let (canaries, mains): (Vec<_>, Vec<_>) = ingresses.into_iter().partition(|i| {
            i.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(&super::canary::annotation("canary")))
                .map(|v| v.as_str())
                == Some("true")
        });
        for ing in &mains {
            b.add_main(ing);
            b.add_tls(ing, &parse_cert);
        }
        for ing in &canaries {
            b.add_canary(ing);
        }
        let mut t = b.table;
        for routes in t.hosts.values_mut().chain(t.wildcards.values_mut()).chain([&mut t.any_host]) {
            routes.sort_by_key(|r| r.rank());
        }
        t.problems.sort();
        t.problems.dedup();
        t
    }
}

/// Whether this ingress serves `ing`: its class (by `spec.ingressClassName`, or the
/// legacy annotation) is one of ours, or it has none and ours is the default.
pub fn serves(ing: &Ingress, classes: &[Arc<IngressClass>]) -> bool {
    let ours = |c: &IngressClass| c.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER);
    let named =
        ing.spec.as_ref().and_then(|s| s.ingress_class_name.as_deref()).or_else(|| {
            ing.metadata.annotations.as_ref().and_then(|a| a.get(LEGACY_CLASS_ANNOTATION)).map(|s| s.as_str())
        });
    match named {
        Some(name) => classes.iter().any(|c| c.metadata.name.as_deref() == Some(name) && ours(c)),
        None => classes.iter().any(|c| {
            ours(c)
                && c.metadata.annotations.as_ref().and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION)).map(|s| s.as_str())
                    == Some("true")
        }),
    }
}

fn key_of(ing: &Ingress) -> String {
    format!("{}/{}", ing.metadata.namespace.as_deref().unwrap_or(""), ing.metadata.name.as_deref().unwrap_or(""))
}

struct Builder<'a> {
    inputs: &'a Inputs,
    upstreams: HashMap<String, Arc<Upstream>>,
    table: Table,
}

/// The paths of one rule (or the default backend: `host` None, one Prefix `/` path).
struct RulePath<'i> {
    host: Option<&'i str>,
    kind: PathKind,
    path: String,
    backend: Option<&'i IngressServiceBackend>,
    /// The backend is a `resource`, which this ingress does not serve.
    resource: bool,
}

fn rule_paths(ing: &Ingress) -> (Vec<RulePath<'_>>, Option<RulePath<'_>>) {
    let Some(spec) = ing.spec.as_ref() else { return (Vec::new(), None) };
    let mut out = Vec::new();
    for rule in spec.rules.iter().flatten() {
        let host = rule.host.as_deref().filter(|h| !h.is_empty());
        for p in rule.http.iter().flat_map(|h| &h.paths) {
            out.push(RulePath {
                host,
                kind: PathKind::from_api(&p.path_type),
                path: p.path.clone().filter(|p| !p.is_empty()).unwrap_or_else(|| "/".into()),
                backend: p.backend.service.as_ref(),
                resource: p.backend.resource.is_some(),
            });
        }
    }
    let default = spec.default_backend.as_ref().map(|b| RulePath {
        host: None,
        kind: PathKind::Prefix,
        path: "/".into(),
        backend: b.service.as_ref(),
        resource: b.resource.is_some(),
    });
    (out, default)
}

impl Builder<'_> {
    fn problem(&mut self, ing: &Ingress, reason: &'static str, message: String) {
        self.table.problems.push(Problem { ingress: key_of(ing), reason, message });
    }

    fn upstream(&mut self, ing: &Ingress, rp: &RulePath<'_>) -> Arc<Upstream> {
        let ns = ing.metadata.namespace.clone().unwrap_or_default();
        let Some(backend) = rp.backend else {
            let why = if rp.resource {
                "a resource backend, which the k3rs ingress does not serve"
            } else {
                "no service backend"
            };
            let msg = format!("ingress {} path {}: {why}", key_of(ing), rp.path);
            self.problem(ing, "UnsupportedBackend", msg.clone());
            return Arc::new(Upstream::new(format!("{ns}/?"), Err(msg)));
        };
        let port = backend.port.as_ref();
        let port_text = match port {
            Some(p) => p.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| p.number.unwrap_or(0).to_string()),
            None => "?".into(),
        };
        let name = format!("{ns}/{}:{port_text}", backend.name);
        if let Some(u) = self.upstreams.get(&name).cloned() {
            if let Err(msg) = &u.targets {
                self.problem(ing, "BackendUnavailable", msg.clone());
            }
            return u;
        }
        let targets = resolve(self.inputs, &ns, backend);
        if let Err(msg) = &targets {
            self.problem(ing, "BackendUnavailable", msg.clone());
        }
        let u = Arc::new(Upstream::new(name.clone(), targets));
        self.upstreams.insert(name, u.clone());
        u
    }

    fn add_main(&mut self, ing: &Arc<Ingress>) {
        self.table.served.push(ing.object_ref(&()));
        let (paths, default) = rule_paths(ing);
        for rp in paths {
            let upstream = self.upstream(ing, &rp);
            let route = Route { kind: rp.kind, path: rp.path, upstream, canary: None, ingress: key_of(ing) };
            let list = match rp.host {
                Some(h) => match h.strip_prefix("*.") {
                    Some(suffix) => self.table.wildcards.entry(suffix.to_ascii_lowercase()).or_default(),
                    None => self.table.hosts.entry(h.to_ascii_lowercase()).or_default(),
                },
                None => &mut self.table.any_host,
            };
            // The older Ingress keeps a host and path both claim.
            if !list.iter().any(|r| r.kind == route.kind && r.path == route.path) {
                list.push(route);
            }
        }
        if let Some(rp) = default {
            if self.table.default.is_none() {
                let upstream = self.upstream(ing, &rp);
                self.table.default =
                    Some(Route { kind: rp.kind, path: rp.path, upstream, canary: None, ingress: key_of(ing) });
            }
        }
    }

    fn add_canary(&mut self, ing: &Arc<Ingress>) {
        let policy = match CanaryPolicy::from_annotations(ing.metadata.annotations.as_ref()) {
            Ok(p) => p,
            Err(msg) => {
                self.problem(ing, "InvalidCanary", msg);
                return;
            }
        };
        self.table.served.push(ing.object_ref(&()));
        let (paths, default) = rule_paths(ing);
        for rp in paths.into_iter().chain(default) {
            let upstream = self.upstream(ing, &rp);
            let main = match rp.host {
                Some(h) => match h.strip_prefix("*.") {
                    Some(suffix) => self.table.wildcards.get_mut(&suffix.to_ascii_lowercase()),
                    None => self.table.hosts.get_mut(&h.to_ascii_lowercase()),
                }
                .and_then(|l| l.iter_mut().find(|r| r.path == rp.path)),
                None if rp.backend.is_some() && rp.path == "/" && rp.kind == PathKind::Prefix => {
                    match self.table.any_host.iter_mut().find(|r| r.path == rp.path) {
                        Some(r) => Some(r),
                        None => self.table.default.as_mut(),
                    }
                }
                None => self.table.any_host.iter_mut().find(|r| r.path == rp.path),
            };
            match main {
                Some(route) if route.canary.is_none() => {
                    route.canary = Some(Canary { policy: policy.clone(), upstream });
                }
                Some(_) => {}
                None => {
                    let msg = format!(
                        "canary ingress {}: no other ingress serves host {:?} path {}",
                        key_of(ing),
                        rp.host.unwrap_or("*"),
                        rp.path
                    );
                    self.problem(ing, "CanaryWithoutMain", msg);
                }
            }
        }
    }

    fn add_tls(&mut self, ing: &Arc<Ingress>, parse_cert: &impl Fn(&Secret) -> Result<Arc<CertifiedKey>, String>) {
        let Some(spec) = ing.spec.as_ref() else { return };
        let ns = ing.metadata.namespace.as_deref().unwrap_or("");
        for tls in spec.tls.iter().flatten() {
            let Some(secret_name) = tls.secret_name.as_deref().filter(|s| !s.is_empty()) else { continue };
            let secret = self.inputs.secrets.iter().find(|s| {
                s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(secret_name)
            });
            let cert = match secret {
                None => Err(format!("TLS secret {ns}/{secret_name} not found; serving the default certificate")),
                Some(s) => parse_cert(s)
                    .map_err(|e| format!("TLS secret {ns}/{secret_name}: {e}; serving the default certificate")),
            };
            let cert = match cert {
                Ok(c) => c,
                Err(msg) => {
                    self.problem(ing, "InvalidTLSSecret", msg);
                    continue;
                }
            };
            // No hosts: the certificate covers the Ingress' own rule hosts.
            let hosts: BTreeSet<String> = match tls.hosts.as_ref().filter(|h| !h.is_empty()) {
                Some(h) => h.iter().map(|h| h.to_ascii_lowercase()).collect(),
                None => spec
                    .rules
                    .iter()
                    .flatten()
                    .filter_map(|r| r.host.as_ref())
                    .map(|h| h.to_ascii_lowercase())
                    .collect(),
            };
            for h in hosts {
                match h.strip_prefix("*.") {
                    Some(s) => self.table.wildcard_certs.entry(s.to_string()).or_insert_with(|| cert.clone()),
                    None => self.table.certs.entry(h).or_insert_with(|| cert.clone()),
                };
            }
        }
    }
}

/// A Service backend's ready endpoints: the Service's port (by name or number), then the
/// port of the same name in each of its EndpointSlices.
fn resolve(inputs: &Inputs, ns: &str, backend: &IngressServiceBackend) -> Result<Vec<SocketAddr>, String> {
    let svc_name = &backend.name;
    let service = inputs
        .services
        .iter()
        .find(|s| s.metadata.namespace.as_deref() == Some(ns) && s.metadata.name.as_deref() == Some(svc_name))
        .ok_or_else(|| format!("service {ns}/{svc_name} not found"))?;
    let spec = service.spec.as_ref();
    if spec.and_then(|s| s.type_.as_deref()) == Some("ExternalName") {
        return Err(format!("service {ns}/{svc_name} is of type ExternalName, which the k3rs ingress does not serve"));
    }
    let wanted = backend.port.as_ref();
    let ports = spec.and_then(|s| s.ports.as_ref()).map(|p| p.as_slice()).unwrap_or_default();
    let port = ports
        .iter()
        .find(|p| match wanted {
            Some(w) => match (&w.name, w.number) {
                (Some(n), _) if !n.is_empty() => p.name.as_deref() == Some(n.as_str()),
                (_, Some(num)) => p.port == num,
                _ => false,
            },
            None => ports.len() == 1,
        })
        .ok_or_else(|| {
            let what = wanted
                .map(|w| w.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| w.number.unwrap_or(0).to_string()))
                .unwrap_or_else(|| "(none given)".into());
            format!("service {ns}/{svc_name} has no port {what}")
        })?;
    if port.protocol.as_deref().is_some_and(|p| p != "TCP") {
        return Err(format!("service {ns}/{svc_name} port {} is not TCP", port.port));
    }
    let port_name = port.name.as_deref().unwrap_or("");
    let mut targets = BTreeSet::new();
    for slice in &inputs.slices {
        let ours = slice.metadata.namespace.as_deref() == Some(ns)
            && slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) == Some(svc_name);
        if !ours || !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
            continue;
        }
        let Some(slice_port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref().unwrap_or("") == port_name && p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &slice.endpoints {
            // An unset condition means ready (upstream).
            if ep.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    targets.insert(SocketAddr::new(ip, slice_port));
                }
            }
        }
    }
    if targets.is_empty() {
        return Err(format!("service {ns}/{svc_name} has no ready endpoints for port {}", port.port));
    }
    Ok(targets.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
        Arc::new(serde_json::from_value(v).expect("valid object"))
    }

    fn class(name: &str, default: bool) -> Arc<IngressClass> {
        obj(json!({"metadata": {"name": name, "annotations": {DEFAULT_CLASS_ANNOTATION: default.to_string()}},
            "spec": {"controller": CONTROLLER}}))
    }

    fn service(name: &str, port: i32, port_name: &str) -> Arc<Service> {
        obj(json!({"metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}}))
    }

    fn slice(svc: &str, port_name: &str, port: i32, ready: &[(&str, Option<bool>)]) -> Arc<EndpointSlice> {
        let eps: Vec<_> = ready
            .iter()
            .map(|(a, r)| match r {
                Some(r) => json!({"addresses": [a], "conditions": {"ready": r}}),
                None => json!({"addresses": [a]}),
            })
            .collect();
        obj(
            json!({"metadata": {"name": format!("{svc}-x"), "namespace": "default", "labels": {SERVICE_NAME_LABEL: svc}},
            "addressType": "IPv4", "endpoints": eps, "ports": [{"name": port_name, "port": port, "protocol": "TCP"}]}),
        )
    }

    fn ingress(name: &str, created: &str, spec: serde_json::Value) -> Arc<Ingress> {
        obj(json!({"metadata": {"name": name, "namespace": "default", "creationTimestamp": created}, "spec": spec}))
    }

    fn path(p: &str, kind: &str, svc: &str) -> serde_json::Value {
        json!({"path": p, "pathType": kind, "backend": {"service": {"name": svc, "port": {"number": 80}}}})
    }

    fn no_cert(_: &Secret) -> Result<Arc<CertifiedKey>, String> {
        Err("no certificates in unit tests".into())
    }

    /// Services a..e, each with one ready endpoint 10.0.0.<n>:8080.
    fn inputs(ingresses: Vec<Arc<Ingress>>) -> Inputs {
        let names = ["a", "b", "c", "d", "e", "f"];
        Inputs {
            ingresses,
            classes: vec![class(CLASS_NAME, true), class("other", false)],
            services: names.iter().map(|n| service(n, 80, "http")).collect(),
            slices: names
                .iter()
                .enumerate()
                .map(|(i, n)| slice(n, "http", 8080, &[(&format!("10.0.0.{}", i + 1), Some(true))]))
                .collect(),
            secrets: Vec::new(),
        }
    }

    fn backend(t: &Table, host: &str, path: &str) -> Option<String> {
        t.find(host, path).map(|r| r.upstream.name.clone())
    }

    #[test]
    fn prefix_matches_element_wise() {
        assert!(path_matches(PathKind::Prefix, "/foo", "/foo"));
        assert!(path_matches(PathKind::Prefix, "/foo", "/foo/"));
        assert!(path_matches(PathKind::Prefix, "/foo", "/foo/bar"));
        assert!(!path_matches(PathKind::Prefix, "/foo", "/foobar"));
        assert!(path_matches(PathKind::Prefix, "/foo/", "/foo"));
        assert!(path_matches(PathKind::Prefix, "/", "/anything"));
        assert!(path_matches(PathKind::Prefix, "/aaa/bbb", "/aaa/bbb/ccc"));
        assert!(!path_matches(PathKind::Prefix, "/aaa/bbb", "/aaa/bbbxyz"));
        assert!(path_matches(PathKind::Exact, "/foo", "/foo"));
        assert!(!path_matches(PathKind::Exact, "/foo", "/foo/"));
        assert!(!path_matches(PathKind::Exact, "/foo", "/FOO"));
    }

    #[test]
    fn hosts_are_normalized() {
        assert_eq!(normalize_host("Foo.Example.COM:8080"), "foo.example.com");
        assert_eq!(normalize_host("foo.example.com."), "foo.example.com");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("10.0.0.1"), "10.0.0.1");
        assert_eq!(wildcard_suffix("a.foo.com"), Some("foo.com"));
        assert_eq!(wildcard_suffix("foo"), None);
        assert_eq!(wildcard_suffix(".foo.com"), None);
    }

    #[test]
    fn exact_host_before_wildcard_before_hostless_and_wildcard_covers_one_label() {
        let t = Table::build(
            &inputs(vec![ingress(
                "i",
                "2026-01-01T00:00:00Z",
                json!({"rules": [
                    {"host": "a.foo.com", "http": {"paths": [path("/", "Prefix", "a")]}},
                    {"host": "*.foo.com", "http": {"paths": [path("/", "Prefix", "b")]}},
                    {"http": {"paths": [path("/", "Prefix", "c")]}},
                ]}),
            )]),
            no_cert,
        );
        assert_eq!(backend(&t, "a.foo.com", "/x").as_deref(), Some("default/a:80"));
        assert_eq!(backend(&t, "b.foo.com", "/x").as_deref(), Some("default/b:80"));
        assert_eq!(backend(&t, "x.b.foo.com", "/x").as_deref(), Some("default/c:80"));
        assert_eq!(backend(&t, "foo.com", "/").as_deref(), Some("default/c:80"));
        assert_eq!(backend(&t, "other", "/").as_deref(), Some("default/c:80"));
        assert!(t.problems.is_empty(), "{:?}", t.problems);
    }

    #[test]
    fn longest_path_wins_and_exact_beats_prefix_on_a_tie() {
        let t = Table::build(
            &inputs(vec![ingress(
                "i",
                "2026-01-01T00:00:00Z",
                json!({"rules": [{"host": "h", "http": {"paths": [
                    path("/", "Prefix", "a"),
                    path("/foo", "Prefix", "b"),
                    path("/foo", "Exact", "c"),
                    path("/foo/bar", "ImplementationSpecific", "d"),
                ]}}]}),
            )]),
            no_cert,
        );
        assert_eq!(backend(&t, "h", "/foo").as_deref(), Some("default/c:80"));
        assert_eq!(backend(&t, "h", "/foo/").as_deref(), Some("default/b:80"));
        assert_eq!(backend(&t, "h", "/foo/bar/baz").as_deref(), Some("default/d:80"));
        assert_eq!(backend(&t, "h", "/foobar").as_deref(), Some("default/a:80"));
        // No rule for the host, no default backend: nothing.
        assert!(t.find("elsewhere", "/").is_none());
    }

    #[test]
    fn ingresses_for_one_host_merge_and_the_older_wins_a_conflict() {
        let t = Table::build(
            &inputs(vec![
                ingress(
                    "new",
                    "2026-01-02T00:00:00Z",
                    json!({"rules": [{"host": "h", "http": {"paths": [path("/api", "Prefix", "b"), path("/x", "Prefix", "d")]}}]}),
                ),
                ingress(
                    "old",
                    "2026-01-01T00:00:00Z",
                    json!({"rules": [{"host": "h", "http": {"paths": [path("/api", "Prefix", "a")]}}]}),
                ),
            ]),
            no_cert,
        );
        assert_eq!(backend(&t, "h", "/api").as_deref(), Some("default/a:80"));
        assert_eq!(backend(&t, "h", "/x").as_deref(), Some("default/d:80"));
        assert_eq!(t.served.len(), 2);
    }

    #[test]
    fn default_backend_takes_what_no_rule_matches() {
        let t = Table::build(
            &inputs(vec![ingress(
                "i",
                "2026-01-01T00:00:00Z",
                json!({"defaultBackend": {"service": {"name": "e", "port": {"name": "http"}}},
                    "rules": [{"host": "h", "http": {"paths": [path("/api", "Prefix", "a")]}}]}),
            )]),
            no_cert,
        );
        assert_eq!(backend(&t, "h", "/api").as_deref(), Some("default/a:80"));
        assert_eq!(backend(&t, "h", "/other").as_deref(), Some("default/e:http"));
        assert_eq!(backend(&t, "nohost", "/").as_deref(), Some("default/e:http"));
        let targets = t.find("h", "/other").map(|r| r.upstream.targets.clone());
        assert_eq!(targets, Some(Ok(vec!["10.0.0.5:8080".parse().expect("addr")])));
    }

    #[test]
    fn classes_decide_what_is_served() {
        let mk = |name: &str, class: Option<&str>| {
            let mut spec = json!({"rules": [{"host": name, "http": {"paths": [path("/", "Prefix", "a")]}}]});
            if let Some(c) = class {
                spec["ingressClassName"] = json!(c);
            }
            ingress(name, "2026-01-01T00:00:00Z", spec)
        };
        let mut i = inputs(vec![mk("mine", Some(CLASS_NAME)), mk("theirs", Some("other-class")), mk("none", None)]);
        let t = Table::build(&i, no_cert);
        assert!(t.find("mine", "/").is_some());
        assert!(t.find("theirs", "/").is_none());
        assert!(t.find("none", "/").is_some());
        // Not the default class any more: Ingresses without a class are not ours.
        i.classes = vec![class(CLASS_NAME, false)];
        let t = Table::build(&i, no_cert);
        assert!(t.find("mine", "/").is_some());
        assert!(t.find("none", "/").is_none());
    }

    #[test]
    fn backends_resolve_through_service_ports_to_ready_endpoints() {
        let mut i = inputs(vec![ingress(
            "i",
            "2026-01-01T00:00:00Z",
            json!({"rules": [{"host": "h", "http": {"paths": [
                path("/missing", "Prefix", "nosuch"),
                {"path": "/byname", "pathType": "Prefix", "backend": {"service": {"name": "multi", "port": {"name": "web"}}}},
                {"path": "/bynumber", "pathType": "Prefix", "backend": {"service": {"name": "multi", "port": {"number": 9000}}}},
                {"path": "/noport", "pathType": "Prefix", "backend": {"service": {"name": "multi", "port": {"number": 1}}}},
                path("/none", "Prefix", "empty"),
            ]}}]}),
        )]);
        i.services.push(obj(json!({"metadata": {"name": "multi", "namespace": "default"},
            "spec": {"ports": [{"name": "web", "port": 80}, {"name": "admin", "port": 9000}]}})));
        i.services.push(service("empty", 80, ""));
        i.slices.push(slice(
            "multi",
            "web",
            8080,
            &[("10.1.0.1", Some(true)), ("10.1.0.2", None), ("10.1.0.3", Some(false))],
        ));
        i.slices.push(slice("multi", "admin", 9090, &[("10.1.0.1", Some(true))]));
        i.slices.push(slice("empty", "", 80, &[("10.1.0.9", Some(false))]));
        let t = Table::build(&i, no_cert);
        let targets = |p: &str| t.find("h", p).map(|r| r.upstream.targets.clone()).expect("route");
        let addr = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert_eq!(targets("/byname"), Ok(vec![addr("10.1.0.1:8080"), addr("10.1.0.2:8080")]));
        assert_eq!(targets("/bynumber"), Ok(vec![addr("10.1.0.1:9090")]));
        assert_eq!(targets("/missing"), Err("service default/nosuch not found".into()));
        assert_eq!(targets("/noport"), Err("service default/multi has no port 1".into()));
        assert_eq!(targets("/none"), Err("service default/empty has no ready endpoints for port 80".into()));
        let reasons: Vec<_> = t.problems.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
    }

    #[test]
    fn round_robin_moves_on_per_request() {
        let u = Upstream::new(
            "x".into(),
            Ok(vec![
                "10.0.0.1:1".parse().expect("a"),
                "10.0.0.2:1".parse().expect("a"),
                "10.0.0.3:1".parse().expect("a"),
            ]),
        );
        let firsts: Vec<_> = (0..6).map(|_| u.order()[0].ip().to_string()).collect();
        assert_eq!(firsts, ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(u.order().len(), 3);
        assert!(Upstream::new("y".into(), Err("none".into())).order().is_empty());
    }

    #[test]
    fn canary_attaches_to_the_main_route_of_its_host_and_path() {
        let canary = obj(
            json!({"metadata": {"name": "canary", "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {"ingress.k3rs.io/canary": "true", "ingress.k3rs.io/canary-weight": "20"}},
            "spec": {"rules": [{"host": "h", "http": {"paths": [path("/", "Prefix", "b")]}},
                               {"host": "lonely", "http": {"paths": [path("/", "Prefix", "b")]}}]}}),
        );
        let main = ingress(
            "main",
            "2026-01-02T00:00:00Z",
            json!({"rules": [{"host": "h", "http": {"paths": [path("/", "Prefix", "a")]}}]}),
        );
        let t = Table::build(&inputs(vec![canary, main]), no_cert);
        let r = t.find("h", "/").expect("route");
        assert_eq!(r.upstream.name, "default/a:80");
        let c = r.canary.as_ref().expect("canary");
        assert_eq!(c.upstream.name, "default/b:80");
        assert_eq!(c.policy.weight, 20);
        // A canary alone serves nothing.
        assert!(t.find("lonely", "/").is_none());
        assert_eq!(t.problems.iter().filter(|p| p.reason == "CanaryWithoutMain").count(), 1);
    }

    #[test]
    fn tls_certificates_by_host_and_wildcard_and_bad_secrets_are_problems() {
        let mut i = inputs(vec![ingress(
            "i",
            "2026-01-01T00:00:00Z",
            json!({"tls": [{"hosts": ["a.example.com"], "secretName": "good"},
                           {"hosts": ["*.wild.com"], "secretName": "good"},
                           {"hosts": ["b.example.com"], "secretName": "bad"},
                           {"hosts": ["c.example.com"], "secretName": "absent"}],
                "rules": [{"host": "a.example.com", "http": {"paths": [path("/", "Prefix", "a")]}}]}),
        )]);
        for name in ["good", "bad"] {
            i.secrets
                .push(obj(json!({"metadata": {"name": name, "namespace": "default"}, "type": "kubernetes.io/tls"})));
        }
        let cert = super::super::tls::default_certificate().expect("default certificate");
        let t = Table::build(&i, |s| {
            if s.metadata.name.as_deref() == Some("good") {
                Ok(cert.clone())
            } else {
                Err("malformed".into())
            }
        });
        assert!(t.cert("a.example.com").is_some());
        assert!(t.cert("A.Example.com.").is_some());
        assert!(t.cert("x.wild.com").is_some());
        assert!(t.cert("x.y.wild.com").is_none());
        assert!(t.cert("b.example.com").is_none());
        let tls_problems: Vec<_> = t.problems.iter().filter(|p| p.reason == "InvalidTLSSecret").collect();
        assert_eq!(tls_problems.len(), 2, "{tls_problems:?}");
    }

    proptest::proptest! {
        /// The matcher never panics, and its answers agree with element-wise comparison.
        #[test]
        fn matcher_agrees_with_element_comparison(rule in "(/[a-z]{0,3}){0,4}/?", req in "(/[a-z]{0,3}){0,5}/?", host in "\\PC{0,40}") {
            let elems = |s: &str| s.split('/').filter(|e| !e.is_empty()).map(str::to_string).collect::<Vec<_>>();
            let (r, p) = (elems(&rule), elems(&req));
            // Empty elements (`//`) aside, Prefix is element-wise.
            if !rule.contains("//") && !req.contains("//") && req.starts_with('/') {
                proptest::prop_assert_eq!(path_matches(PathKind::Prefix, &rule, &req), p.starts_with(&r));
            }
            let _ = normalize_host(&host);
            let _ = wildcard_suffix(&normalize_host(&host));
            let t = Table::build(&inputs(vec![ingress("i", "2026-01-01T00:00:00Z",
                json!({"rules": [{"host": "*.foo.com", "http": {"paths": [path("/x", "Exact", "a")]}}]}))]), no_cert);
            let _ = t.find(&normalize_host(&host), &req);
        }

        /// Any host and path: no panic, and what is found really matches (or is the default
        /// backend, the only route that may take a path no rule matches).
        #[test]
        fn find_answers_only_with_matching_routes(host in "\\PC{0,30}", req in "\\PC{0,30}") {
            let t = Table::build(&inputs(vec![ingress("i", "2026-01-01T00:00:00Z", json!({
                "defaultBackend": {"service": {"name": "f", "port": {"number": 80}}},
                "rules": [rule_json("*.foo.com", &[("/x", "Exact", "a"), ("/", "Prefix", "b")]),
                          rule_json("a.foo.com", &[("/a/b", "Prefix", "c")]),
                          rule_json("", &[("/", "Prefix", "d"), ("/e", "ImplementationSpecific", "e")])]}))]), no_cert);
            let host = normalize_host(&host);
            if let Some(r) = t.find(&host, &req) {
                proptest::prop_assert!(path_matches(r.kind, &r.path, &req) || r.upstream.name == "default/f:80");
            }
        }
    }

    fn rule_json(host: &str, paths: &[(&str, &str, &str)]) -> serde_json::Value {
        let paths: Vec<_> = paths.iter().map(|(p, k, s)| path(p, k, s)).collect();
        if host.is_empty() {
            json!({"http": {"paths": paths}})
        } else {
            json!({"host": host, "http": {"paths": paths}})
        }
    }
}
