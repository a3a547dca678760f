//! The OCI runtime spec of a pod's container: a pure function of the pod, the container, the
//! image config and what the node resolved for it (env sources, volumes, sandbox paths).
//!
//! Nothing here touches the system: the pod worker gathers ConfigMaps, Secrets, Services,
//! volume directories and sandbox files first, and `container_spec` only combines them the
//! way the kubelet and containerd's CRI plugin do (command/args with `$(VAR)` expansion, the
//! environment in the kubelet's order, mounts, namespaces, security context, cgroup
//! resources under the kubepods hierarchy). The spec is built as JSON in the OCI layout and
//! decoded into `oci_spec`'s types, which keeps it readable next to the runtime-spec text.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Service};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{json, Value};

use crate::domain::quantity;
use crate::images::ImageConfig;

/// Sandbox files and namespaces the pod's containers share.
#[derive(Clone, Debug, Default)]
pub struct SandboxPaths {
    /// The pod's network namespace (`/proc/<holder>/ns/net` of its namespace holder); `None`
    /// gives the container a private one (or the host's with `hostNetwork`).
    pub netns: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// The pod's shared `/dev/shm` directory (shared IPC); `None` gives a private tmpfs.
    pub shm: Option<PathBuf>,
    pub hosts: PathBuf,
    pub hostname: PathBuf,
    pub resolv_conf: PathBuf,
}

/// Everything the environment may refer to, resolved by the caller.
#[derive(Clone, Debug, Default)]
pub struct EnvSources {
    /// ConfigMaps of the pod's namespace that exist (name → data).
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Secrets of the pod's namespace that exist (name → data).
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// The namespace's Services, for the docker-link style variables.
    pub services: Vec<Service>,
    pub node_name: String,
    pub node_ip: String,
    pub pod_ip: String,
    /// All pod IPs (`status.podIPs`); empty means `[pod_ip]`.
    pub pod_ips: Vec<String>,
    pub service_account_name: String,
    /// The `kubernetes` service of the `default` namespace: (cluster IP, port).
    pub kubernetes_service: (String, u16),
    /// Node allocatable (`cpu`, `memory`, `ephemeral-storage`): what a `resourceFieldRef`
    /// on an unset limit resolves to, and the memory base of Burstable OOM scores.
    pub node_allocatable: BTreeMap<String, Quantity>,
}

/// Input of [`container_spec`].
#[derive(Clone, Debug)]
pub struct SpecInput<'a> {
    pub pod: &'a Pod,
    /// An app or init container of `pod`.
    pub container: &'a Container,
    pub image: &'a ImageConfig,
    /// The container's root filesystem (an overlay prepared by the image store).
    pub rootfs: PathBuf,
    pub sandbox: SandboxPaths,
    /// Pod volume name → host directory (or file) prepared by the caller.
    pub volumes: &'a BTreeMap<String, PathBuf>,
    pub env_sources: &'a EnvSources,
    /// The container's cgroup (see [`container_cgroup_path`]).
    pub cgroups_path: String,
    /// Host file bind-mounted at the container's `terminationMessagePath`.
    pub termination_message_path: Option<PathBuf>,
}

/// Why a container's spec cannot be made. The `Display` of the env and user variants is what
/// upstream shows as the message of `CreateContainerConfigError`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("configmap \"{0}\" not found")]
    ConfigMapNotFound(String),
    #[error("secret \"{0}\" not found")]
    SecretNotFound(String),
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound { key: String, namespace: String, name: String },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound { key: String, namespace: String, name: String },
    #[error("unsupported fieldPath: {0}")]
    UnsupportedFieldPath(String),
    #[error("unsupported container resource: {0}")]
    UnsupportedResource(String),
    #[error("invalid quantity {0:?}")]
    InvalidQuantity(String),
    #[error("container has runAsNonRoot and image will run as root (pod: \"{pod}\", container: {container})")]
    RunAsNonRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: \"{pod}\", container: {container})")]
    NonNumericUser { user: String, pod: String, container: String },
    #[error("image user {0:?} is not numeric; named users are not resolved yet")]
    NamedUser(String),
    #[error("no command specified")]
    NoCommand,
    #[error("volume {0:?} of a volumeMount is not prepared")]
    VolumeNotFound(String),
    #[error("invalid subPath {0:?}: must be relative and must not contain '..'")]
    InvalidSubPath(String),
    #[error("building the OCI spec: {0}")]
    BuildSpec(String),
}

/// The QoS class is the apiserver's rule too, so it lives in [`crate::domain::pod`]; the
/// cgroup code names it from here.
use crate::domain::pod::{qos_class, QosClass};

/// The pod's cgroup under the kubepods hierarchy.
pub fn pod_cgroup_path(qos: QosClass, uid: &str) -> String {
    let uid = uid.replace('-', "_");
    match qos {
        QosClass::Guaranteed => format!("/kubepods/pod{uid}"),
        QosClass::Burstable => format!("/kubepods/burstable/pod{uid}"),
        QosClass::BestEffort => format!("/kubepods/besteffort/pod{uid}"),
    }
}

/// A container's cgroup: a child of its pod's.
pub fn container_cgroup_path(qos: QosClass, uid: &str, container_id: &str) -> String {
    format!("{}/{}", pod_cgroup_path(qos, uid), container_id)
}

/// Pod-level cgroup limits: the sum of the containers' limits when every container sets one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodResources {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
}

const CPU_PERIOD: u64 = 100_000;
const MIN_SHARES: u64 = 2;
const MIN_QUOTA: i64 = 1_000;

/// The pod cgroup's limits, as the kubelet's pod-level resource config computes them.
pub fn pod_resources(pod: &Pod) -> PodResources {
    let containers: &[Container] = pod.spec.as_ref().map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let mut shares_millis = 0i64;
    let mut cpu_limit: Option<i64> = Some(0);
    let mut mem_limit: Option<i64> = Some(0);
    for c in containers {
        let (req, lim) = requests_limits(c);
        shares_millis += req.get("cpu").or(lim.get("cpu")).and_then(|q| cpu_millis(q).ok()).unwrap_or(0);
        cpu_limit = match (cpu_limit, lim.get("cpu").and_then(|q| cpu_millis(q).ok())) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        mem_limit = match (mem_limit, lim.get("memory").and_then(|q| bytes(q).ok())) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
    }
    let qos = qos_class(pod);
    let cpu_shares = if qos == QosClass::BestEffort { MIN_SHARES } else { millis_to_shares(shares_millis) };
    let cpu_quota = cpu_limit.filter(|_| !containers.is_empty()).map(millis_to_quota);
    PodResources {
        cpu_shares: Some(cpu_shares),
        cpu_quota,
        cpu_period: cpu_quota.map(|_| CPU_PERIOD),
        memory_limit: mem_limit.filter(|_| !containers.is_empty()),
    }
}

fn millis_to_shares(millis: i64) -> u64 {
    if millis <= 0 {
        return MIN_SHARES;
    }
    ((millis as u64) * 1024 / 1000).max(MIN_SHARES)
}

fn millis_to_quota(millis: i64) -> i64 {
    (millis * CPU_PERIOD as i64 / 1000).max(MIN_QUOTA)
}

fn requests_limits(c: &Container) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let r = c.resources.as_ref();
    (r.and_then(|r| r.requests.clone()).unwrap_or_default(), r.and_then(|r| r.limits.clone()).unwrap_or_default())
}

/// A quantity of the pod spec, exactly (`100m`, `16Mi`, `1e3`); surrounding spaces are
/// allowed, as upstream's JSON decoding trims them.
fn parse_quantity(q: &Quantity) -> Result<quantity::Quantity, SpecError> {
    let s = q.0.trim();
    s.parse().map_err(|_| SpecError::InvalidQuantity(s.to_string()))
}

/// Millicores, rounded up (upstream's `MilliValue`).
fn cpu_millis(q: &Quantity) -> Result<i64, SpecError> {
    Ok(parse_quantity(q)?.milli_value())
}

/// Whole units (bytes for memory and storage), rounded up (upstream's `Value`).
fn bytes(q: &Quantity) -> Result<i64, SpecError> {
    Ok(parse_quantity(q)?.value())
}

/// `⌈a / b⌉` for a positive `b`, without overflow.
fn ceil_div(a: i64, b: i64) -> i64 {
    let (a, b) = (i128::from(a), i128::from(b));
    let q = a.div_euclid(b) + i128::from(a.rem_euclid(b) != 0);
    i64::try_from(q).unwrap_or(if q < 0 { i64::MIN } else { i64::MAX })
}

/// Expands `$(VAR)` references the way upstream does: unknown references stay as written,
/// `$$` is an escaped `$`, and any other `$` is literal.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(a) = after.strip_prefix('(') {
            match a.find(')') {
                Some(end) => {
                    let name = &a[..end];
                    match lookup(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &a[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = a;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// An ordered environment where a later definition replaces an earlier one in place.
#[derive(Default, Debug, Clone)]
struct Env(Vec<(String, String)>);

impl Env {
    fn set(&mut self, k: String, v: String) {
        match self.0.iter_mut().find(|(n, _)| *n == k) {
            Some(e) => e.1 = v,
            None => self.0.push((k, v)),
        }
    }
    fn get(&self, k: &str) -> Option<String> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }
}

fn env_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

fn push_service_env(env: &mut Env, name: &str, ip: &str, ports: &[(Option<String>, i32, String)]) {
    let n = env_name(name);
    env.set(format!("{n}_SERVICE_HOST"), ip.to_string());
    let Some((_, first_port, first_proto)) = ports.first() else { return };
    env.set(format!("{n}_SERVICE_PORT"), first_port.to_string());
    for (pname, port, _) in ports {
        if let Some(pname) = pname.as_deref().filter(|p| !p.is_empty()) {
            env.set(format!("{n}_SERVICE_PORT_{}", env_name(pname)), port.to_string());
        }
    }
    env.set(format!("{n}_PORT"), format!("{}://{ip}:{first_port}", first_proto.to_lowercase()));
    for (_, port, proto) in ports {
        let p = format!("{n}_PORT_{port}_{}", proto.to_uppercase());
        let lp = proto.to_lowercase();
        env.set(p.clone(), format!("{lp}://{ip}:{port}"));
        env.set(format!("{p}_PROTO"), lp);
        env.set(format!("{p}_PORT"), port.to_string());
        env.set(format!("{p}_ADDR"), ip.to_string());
    }
}

/// The service variables: `kubernetes` always, the namespace's services unless service
/// links are off. Services without a cluster IP (headless) give none.
fn service_env(input: &SpecInput<'_>) -> Env {
    let mut env = Env::default();
    let spec = input.pod.spec.as_ref();
    let links = spec.and_then(|s| s.enable_service_links).unwrap_or(true);
    let ns = input.pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut services: Vec<&Service> = Vec::new();
    if links {
        services = input.env_sources.services.iter().collect();
        services.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    }
    let (khost, kport) = &input.env_sources.kubernetes_service;
    if !khost.is_empty() {
        push_service_env(&mut env, "kubernetes", khost, &[(Some("https".into()), i32::from(*kport), "TCP".into())]);
    }
    for s in services {
        let name = s.metadata.name.as_deref().unwrap_or_default();
        if ns == "default" && name == "kubernetes" {
            continue;
        }
        let Some(sp) = s.spec.as_ref() else { continue };
        let ip = sp.cluster_ip.as_deref().unwrap_or_default();
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let ports: Vec<_> = sp
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.port, p.protocol.clone().unwrap_or_else(|| "TCP".into())))
            .collect();
        push_service_env(&mut env, name, ip, &ports);
    }
    env
}

fn is_env_var_name(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join("\n")
}

/// A `fieldRef` on the pod's metadata (name, namespace, uid, labels, annotations, or one
/// label or annotation as `metadata.labels['k']`): what env and downward API volumes share.
/// `None` for other paths.
pub fn metadata_field(meta: &ObjectMeta, path: &str) -> Option<String> {
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['"))
            .and_then(|r| r.strip_suffix("']"))
            .map(str::to_string)
    };
    if let Some(k) = subscript("metadata.labels") {
        return Some(meta.labels.as_ref().and_then(|l| l.get(&k).cloned()).unwrap_or_default());
    }
    if let Some(k) = subscript("metadata.annotations") {
        return Some(meta.annotations.as_ref().and_then(|l| l.get(&k).cloned()).unwrap_or_default());
    }
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(&meta.labels.clone().unwrap_or_default()),
        "metadata.annotations" => format_map(&meta.annotations.clone().unwrap_or_default()),
        _ => return None,
    })
}

fn field_ref(input: &SpecInput<'_>, path: &str) -> Result<String, SpecError> {
    if let Some(v) = metadata_field(&input.pod.metadata, path) {
        return Ok(v);
    }
    let src = input.env_sources;
    let spec = input.pod.spec.as_ref();
    Ok(match path {
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_else(|| src.node_name.clone()),
        "spec.serviceAccountName" => {
            spec.and_then(|s| s.service_account_name.clone()).unwrap_or_else(|| src.service_account_name.clone())
        }
        "status.hostIP" | "status.hostIPs" => src.node_ip.clone(),
        "status.podIP" => src.pod_ip.clone(),
        "status.podIPs" => {
            if src.pod_ips.is_empty() {
                src.pod_ip.clone()
            } else {
                src.pod_ips.join(",")
            }
        }
        other => return Err(SpecError::UnsupportedFieldPath(other.to_string())),
    })
}

fn resource_field_ref(
    input: &SpecInput<'_>,
    r: &k8s_openapi::api::core::v1::ResourceFieldSelector,
) -> Result<String, SpecError> {
    resource_field(input.pod, Some(input.container), r, &input.env_sources.node_allocatable)
}

/// A `resourceFieldRef`: the named container's (else `current`'s) request or limit of cpu,
/// memory or ephemeral-storage, divided by the divisor and rounded up, as upstream. An
/// unset limit is the node's `allocatable`.
pub fn resource_field(
    pod: &Pod,
    current: Option<&Container>,
    r: &k8s_openapi::api::core::v1::ResourceFieldSelector,
    allocatable: &BTreeMap<String, Quantity>,
) -> Result<String, SpecError> {
    let named = r.container_name.as_deref().filter(|n| !n.is_empty()).and_then(|name| {
        pod.spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .find(|c| c.name == name)
    });
    let Some(c) = named.or(current) else {
        return Err(SpecError::UnsupportedResource(format!(
            "{}: no container {:?}",
            r.resource,
            r.container_name.as_deref().unwrap_or("")
        )));
    };
    let (req, lim) = requests_limits(c);
    let (map, res, is_limit) = match r.resource.split_once('.') {
        Some(("limits", res)) => (&lim, res, true),
        Some(("requests", res)) => (&req, res, false),
        _ => return Err(SpecError::UnsupportedResource(r.resource.clone())),
    };
    if !matches!(res, "cpu" | "memory" | "ephemeral-storage") {
        return Err(SpecError::UnsupportedResource(r.resource.clone()));
    }
    // Upstream divides millicores for cpu and whole units for the rest.
    let cpu = res == "cpu";
    let amount = |q: &Quantity| if cpu { cpu_millis(q) } else { bytes(q) };
    let value = match map.get(res) {
        Some(q) => amount(q)?,
        // An unset limit is the node's allocatable, as upstream resolves it.
        None if is_limit => allocatable.get(res).map(amount).transpose()?.unwrap_or(0),
        None => 0,
    };
    let divisor = r.divisor.as_ref().map(amount).transpose()?.filter(|d| *d > 0).unwrap_or(if cpu { 1000 } else { 1 });
    Ok(format!("{}", ceil_div(value, divisor).max(i64::from(cpu && value > 0))))
}

/// The container's environment, without the image's: service variables, then `envFrom`,
/// then `env` (each `$(VAR)`-expanded against what precedes it).
pub fn container_env(input: &SpecInput<'_>) -> Result<Vec<(String, String)>, SpecError> {
    let ns = input.pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let services = service_env(input);
    let mut env = Env::default();
    let src = input.env_sources;
    for from in input.container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match src.config_maps.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        let k = format!("{prefix}{k}");
                        if is_env_var_name(&k) {
                            env.set(k, v.clone());
                        }
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(SpecError::ConfigMapNotFound(r.name.clone())),
            }
        }
        if let Some(r) = &from.secret_ref {
            match src.secrets.get(&r.name) {
                Some(data) => {
                    for (k, v) in data {
                        let k = format!("{prefix}{k}");
                        if is_env_var_name(&k) {
                            env.set(k, String::from_utf8_lossy(v).into_owned());
                        }
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(SpecError::SecretNotFound(r.name.clone())),
            }
        }
    }
    for e in input.container.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            let lookup = |n: &str| env.get(n).or_else(|| services.get(n));
            expand(v, &lookup)
        } else if let Some(vf) = &e.value_from {
            if let Some(f) = &vf.field_ref {
                field_ref(input, &f.field_path)?
            } else if let Some(r) = &vf.resource_field_ref {
                resource_field_ref(input, r)?
            } else if let Some(r) = &vf.config_map_key_ref {
                let optional = r.optional == Some(true);
                match src.config_maps.get(&r.name).map(|d| d.get(&r.key)) {
                    Some(Some(v)) => v.clone(),
                    _ if optional => continue,
                    Some(None) => {
                        return Err(SpecError::ConfigMapKeyNotFound {
                            key: r.key.clone(),
                            namespace: ns,
                            name: r.name.clone(),
                        })
                    }
                    None => return Err(SpecError::ConfigMapNotFound(r.name.clone())),
                }
            } else if let Some(r) = &vf.secret_key_ref {
                let optional = r.optional == Some(true);
                match src.secrets.get(&r.name).map(|d| d.get(&r.key)) {
                    Some(Some(v)) => String::from_utf8_lossy(v).into_owned(),
                    _ if optional => continue,
                    Some(None) => {
                        return Err(SpecError::SecretKeyNotFound {
                            key: r.key.clone(),
                            namespace: ns,
                            name: r.name.clone(),
                        })
                    }
                    None => return Err(SpecError::SecretNotFound(r.name.clone())),
                }
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        env.set(e.name.clone(), value);
    }
    let mut out = services;
    for (k, v) in env.0 {
        out.0.retain(|(n, _)| *n != k);
        out.0.push((k, v));
    }
    Ok(out.0)
}

/// The process arguments: `command` replaces the image entrypoint (and then the image cmd is
/// ignored), `args` replaces the image cmd; `$(VAR)` refers to the container's environment.
pub fn container_args(
    container: &Container,
    image: &ImageConfig,
    env: &[(String, String)],
) -> Result<Vec<String>, SpecError> {
    let lookup = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let command: Vec<String> = container.command.iter().flatten().map(|c| expand(c, &lookup)).collect();
    let args: Vec<String> = container.args.iter().flatten().map(|c| expand(c, &lookup)).collect();
    let mut out = if command.is_empty() { image.entrypoint.clone() } else { command.clone() };
    if !args.is_empty() {
        out.extend(args);
    } else if command.is_empty() {
        out.extend(image.cmd.iter().cloned());
    }
    if out.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(out)
}

/// Kubernetes' (containerd's) default capability set: Docker's, including `CAP_NET_RAW`.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const ALL_CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_CONTROL",
    "CAP_AUDIT_READ",
    "CAP_AUDIT_WRITE",
    "CAP_BLOCK_SUSPEND",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_KILL",
    "CAP_LEASE",
    "CAP_LINUX_IMMUTABLE",
    "CAP_MAC_ADMIN",
    "CAP_MAC_OVERRIDE",
    "CAP_MKNOD",
    "CAP_NET_ADMIN",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_RAW",
    "CAP_PERFMON",
    "CAP_SETGID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_CHROOT",
    "CAP_SYS_MODULE",
    "CAP_SYS_NICE",
    "CAP_SYS_PACCT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
];

fn cap_name(c: &str) -> String {
    let c = c.to_uppercase();
    if c.starts_with("CAP_") {
        c
    } else {
        format!("CAP_{c}")
    }
}

/// Add/drop applied as containerd does: `ALL` first, then the named ones. Unknown names are
/// ignored (the kernel would refuse them).
fn capabilities(add: &[String], drop: &[String]) -> Vec<String> {
    let mut caps: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    if add.iter().any(|a| a.eq_ignore_ascii_case("ALL")) {
        caps = ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect();
    }
    if drop.iter().any(|a| a.eq_ignore_ascii_case("ALL")) {
        caps.clear();
    }
    for a in add.iter().filter(|a| !a.eq_ignore_ascii_case("ALL")).map(|a| cap_name(a)) {
        if ALL_CAPABILITIES.contains(&a.as_str()) && !caps.contains(&a) {
            caps.push(a);
        }
    }
    for d in drop.iter().filter(|a| !a.eq_ignore_ascii_case("ALL")).map(|a| cap_name(a)) {
        caps.retain(|c| *c != d);
    }
    caps
}

const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const DEFAULT_READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.uid.as_deref().unwrap_or_default()
    )
}

fn bind(dest: &str, source: &Path, ro: bool, propagation: &str) -> Value {
    let mut opts = vec!["rbind", propagation];
    if ro {
        opts.push("ro");
    }
    json!({"destination": dest, "type": "bind", "source": source, "options": opts})
}

fn safe_sub_path(p: &str) -> bool {
    let p = Path::new(p);
    !p.is_absolute() && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// The OCI runtime spec of `input.container`.
pub fn container_spec(input: &SpecInput<'_>) -> Result<oci_spec::runtime::Spec, SpecError> {
    let pod = input.pod;
    let c = input.container;
    let pspec = pod.spec.as_ref();
    let psc = pspec.and_then(|s| s.security_context.as_ref());
    let csc = c.security_context.as_ref();

    // Environment: the image's first, the pod's replacing same-named entries in place.
    let kenv = container_env(input)?;
    let mut env = Env::default();
    for kv in &input.image.env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        env.set(k.to_string(), v.to_string());
    }
    if env.get("PATH").is_none() {
        env.set("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    }
    for (k, v) in &kenv {
        env.set(k.clone(), v.clone());
    }
    let hostname = pspec
        .and_then(|s| s.hostname.clone())
        .or_else(|| pod.metadata.name.clone())
        .unwrap_or_default()
        .chars()
        .take(63)
        .collect::<String>();
    let host_network = pspec.and_then(|s| s.host_network).unwrap_or(false);
    if !host_network {
        env.set("HOSTNAME".into(), hostname.clone());
    }
    let args = container_args(c, input.image, &kenv)?;

    // User and groups: container over pod over image.
    let (image_user, image_group) = match input.image.user.split_once(':') {
        Some((u, g)) => (u.to_string(), Some(g.to_string())),
        None => (input.image.user.clone(), None),
    };
    let run_as_user = csc.and_then(|s| s.run_as_user).or(psc.and_then(|s| s.run_as_user));
    let non_root = csc.and_then(|s| s.run_as_non_root).or(psc.and_then(|s| s.run_as_non_root)).unwrap_or(false);
    let uid: i64 = match run_as_user {
        Some(u) => u,
        None if image_user.is_empty() || image_user == "root" => 0,
        None => match image_user.parse::<i64>() {
            Ok(u) => u,
            Err(_) if non_root => {
                return Err(SpecError::NonNumericUser {
                    user: image_user,
                    pod: pod_name(pod),
                    container: c.name.clone(),
                })
            }
            Err(_) => return Err(SpecError::NamedUser(image_user)),
        },
    };
    if non_root && uid == 0 {
        return Err(SpecError::RunAsNonRoot { pod: pod_name(pod), container: c.name.clone() });
    }
    let gid: i64 = match csc.and_then(|s| s.run_as_group).or(psc.and_then(|s| s.run_as_group)) {
        Some(g) => g,
        None => match &image_group {
            Some(g) if !g.is_empty() && g != "root" => {
                g.parse().map_err(|_| SpecError::NamedUser(input.image.user.clone()))?
            }
            _ => 0,
        },
    };
    let mut additional: Vec<i64> = psc.and_then(|s| s.supplemental_groups.clone()).unwrap_or_default();
    if let Some(fs) = psc.and_then(|s| s.fs_group) {
        if !additional.contains(&fs) {
            additional.push(fs);
        }
    }

    let privileged = csc.and_then(|s| s.privileged).unwrap_or(false);
    let caps = if privileged {
        ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect()
    } else {
        let cc = csc.and_then(|s| s.capabilities.as_ref());
        capabilities(
            &cc.and_then(|c| c.add.clone()).unwrap_or_default(),
            &cc.and_then(|c| c.drop.clone()).unwrap_or_default(),
        )
    };
    let no_new_privs = !privileged && csc.and_then(|s| s.allow_privilege_escalation) == Some(false);
    let read_only_root = csc.and_then(|s| s.read_only_root_filesystem).unwrap_or(false);

    // Mounts: the runtime defaults, then the sandbox files, then the volumes.
    let mut mounts: Vec<Value> = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if privileged { "rw" } else { "ro" }]}),
    ];
    match &input.sandbox.shm {
        Some(p) => mounts.push(bind("/dev/shm", p, false, "rprivate")),
        None => mounts.push(json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]})),
    }
    mounts.push(bind("/etc/hosts", &input.sandbox.hosts, read_only_root, "rprivate"));
    if !host_network {
        mounts.push(bind("/etc/hostname", &input.sandbox.hostname, read_only_root, "rprivate"));
    }
    mounts.push(bind("/etc/resolv.conf", &input.sandbox.resolv_conf, read_only_root, "rprivate"));
    if let Some(t) = &input.termination_message_path {
        let dest = c.termination_message_path.clone().unwrap_or_else(|| "/dev/termination-log".into());
        mounts.push(bind(&dest, t, false, "rprivate"));
    }
    let mut vmounts: Vec<(usize, Value)> = Vec::new();
    for vm in c.volume_mounts.iter().flatten() {
        let src = input.volumes.get(&vm.name).ok_or_else(|| SpecError::VolumeNotFound(vm.name.clone()))?;
        let src = match vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sp) if !safe_sub_path(sp) => return Err(SpecError::InvalidSubPath(sp.to_string())),
            Some(sp) => src.join(sp),
            None => src.clone(),
        };
        let propagation = match vm.mount_propagation.as_deref() {
            Some("HostToContainer") => "rslave",
            Some("Bidirectional") => "rshared",
            _ => "rprivate",
        };
        let depth = Path::new(&vm.mount_path).components().count();
        vmounts.push((depth, bind(&vm.mount_path, &src, vm.read_only.unwrap_or(false), propagation)));
    }
    // Parents before children, as containerd orders them, so a nested mount is not hidden.
    vmounts.sort_by_key(|(d, _)| *d);
    for (_, m) in vmounts {
        mounts.retain(|x| x["destination"] != m["destination"]);
        mounts.push(m);
    }

    // Namespaces.
    let ns = |typ: &str, path: &Option<PathBuf>| match path {
        Some(p) => json!({"type": typ, "path": p}),
        None => json!({"type": typ}),
    };
    let mut namespaces = vec![json!({"type": "mount"})];
    if !pspec.and_then(|s| s.host_pid).unwrap_or(false) {
        namespaces.push(json!({"type": "pid"}));
    }
    if !host_network {
        namespaces.push(ns("network", &input.sandbox.netns));
        namespaces.push(ns("uts", &input.sandbox.uts));
    }
    if !pspec.and_then(|s| s.host_ipc).unwrap_or(false) {
        namespaces.push(ns("ipc", &input.sandbox.ipc));
    }

    // Resources.
    let qos = qos_class(pod);
    let (req, lim) = requests_limits(c);
    let cpu_req = req.get("cpu").or(lim.get("cpu")).map(cpu_millis).transpose()?;
    let cpu_lim = lim.get("cpu").map(cpu_millis).transpose()?;
    let mem_lim = lim.get("memory").map(bytes).transpose()?;
    let mem_req = req.get("memory").or(lim.get("memory")).map(bytes).transpose()?;
    let mut cpu = json!({"shares": millis_to_shares(cpu_req.unwrap_or(0))});
    if let Some(l) = cpu_lim {
        cpu["quota"] = json!(millis_to_quota(l));
        cpu["period"] = json!(CPU_PERIOD);
    }
    let mut resources = json!({"cpu": cpu, "devices": devices(privileged)});
    if let Some(m) = mem_lim {
        resources["memory"] = json!({"limit": m});
    }
    let oom_score_adj: i64 = match qos {
        QosClass::Guaranteed => -997,
        QosClass::BestEffort => 1000,
        QosClass::Burstable => {
            let cap = input.env_sources.node_allocatable.get("memory").map(bytes).transpose()?.unwrap_or(0);
            match mem_req {
                Some(r) if cap > 0 => {
                    let share = i64::try_from(1000 * i128::from(r) / i128::from(cap)).unwrap_or(i64::MAX);
                    1000i64.saturating_sub(share).clamp(2, 999)
                }
                _ => 999,
            }
        }
    };

    let terminal = c.tty.unwrap_or(false);
    let mut process = json!({
        "terminal": terminal,
        "user": {"uid": uid, "gid": gid, "additionalGids": additional},
        "args": args,
        "env": env.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "cwd": c.working_dir.clone().filter(|w| !w.is_empty()).unwrap_or_else(|| if input.image.working_dir.is_empty() { "/".into() } else { input.image.working_dir.clone() }),
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": no_new_privs,
        "oomScoreAdj": oom_score_adj,
    });
    if uid != 0 {
        // A non-root process starts with no effective capabilities, as with execve(2).
        process["capabilities"]["effective"] = json!([]);
        process["capabilities"]["permitted"] = json!([]);
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": resources,
        "cgroupsPath": input.cgroups_path,
    });
    if !privileged {
        linux["maskedPaths"] = json!(DEFAULT_MASKED_PATHS);
        linux["readonlyPaths"] = json!(DEFAULT_READONLY_PATHS);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": input.rootfs, "readonly": read_only_root},
        "mounts": mounts,
        "linux": linux,
        "annotations": {
            "io.kubernetes.pod.name": pod.metadata.name.clone().unwrap_or_default(),
            "io.kubernetes.pod.namespace": pod.metadata.namespace.clone().unwrap_or_default(),
            "io.kubernetes.pod.uid": pod.metadata.uid.clone().unwrap_or_default(),
            "io.kubernetes.container.name": c.name.clone(),
        },
    });
    if !host_network {
        spec["hostname"] = json!(hostname);
    }
    serde_json::from_value(spec).map_err(|e| SpecError::BuildSpec(e.to_string()))
}

/// The cgroup device rules: everything for privileged containers, otherwise the usual
/// character devices a container needs.
fn devices(privileged: bool) -> Value {
    if privileged {
        return json!([{"allow": true, "access": "rwm"}]);
    }
    let allow = |typ: &str, major: Option<i64>, minor: Option<i64>, access: &str| json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access});
    json!([
        {"allow": false, "access": "rwm"},
        allow("c", None, None, "m"),
        allow("b", None, None, "m"),
        allow("c", Some(1), Some(3), "rwm"),
        allow("c", Some(1), Some(5), "rwm"),
        allow("c", Some(1), Some(7), "rwm"),
        allow("c", Some(1), Some(8), "rwm"),
        allow("c", Some(1), Some(9), "rwm"),
        allow("c", Some(5), Some(0), "rwm"),
        allow("c", Some(5), Some(1), "rwm"),
        allow("c", Some(5), Some(2), "rwm"),
        allow("c", Some(136), None, "rwm"),
        allow("c", Some(10), Some(200), "rwm"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    fn base_pod(container: Value) -> Pod {
        pod(json!({
            "metadata": {"name": "web", "namespace": "team", "uid": "u-1", "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {"containers": [container], "nodeName": "n1", "serviceAccountName": "sa"},
        }))
    }

    fn sources() -> EnvSources {
        EnvSources {
            config_maps: BTreeMap::from([(
                "cfg".into(),
                BTreeMap::from([("k".into(), "v".into()), ("bad key".into(), "x".into())]),
            )]),
            secrets: BTreeMap::from([("sec".into(), BTreeMap::from([("pw".into(), b"s3cret".to_vec())]))]),
            services: vec![serde_json::from_value(json!({
                "metadata": {"name": "redis-main"},
                "spec": {"clusterIP": "10.43.0.9", "ports": [{"name": "db", "port": 6379, "protocol": "TCP"}]},
            }))
            .expect("service")],
            node_name: "n1".into(),
            node_ip: "192.168.1.2".into(),
            pod_ip: "10.42.0.5".into(),
            kubernetes_service: ("10.43.0.1".into(), 443),
            ..Default::default()
        }
    }

    fn spec_for(
        p: &Pod,
        image: &ImageConfig,
        src: &EnvSources,
        vols: &BTreeMap<String, PathBuf>,
    ) -> Result<oci_spec::runtime::Spec, SpecError> {
        let c = &p.spec.as_ref().expect("spec").containers[0];
        container_spec(&SpecInput {
            pod: p,
            container: c,
            image,
            rootfs: "/rootfs".into(),
            sandbox: SandboxPaths {
                netns: Some("/run/netns/p".into()),
                hosts: "/pod/hosts".into(),
                hostname: "/pod/hostname".into(),
                resolv_conf: "/pod/resolv.conf".into(),
                ..Default::default()
            },
            volumes: vols,
            env_sources: src,
            cgroups_path: "/kubepods/besteffort/podu_1/c1".into(),
            termination_message_path: Some("/pod/term".into()),
        })
    }

    fn as_json(s: &oci_spec::runtime::Spec) -> Value {
        serde_json::to_value(s).expect("json")
    }

    fn env_of(s: &oci_spec::runtime::Spec) -> Vec<String> {
        s.process().as_ref().and_then(|p| p.env().clone()).unwrap_or_default()
    }

    #[test]
    fn expansion_follows_upstream_rules() {
        let lookup = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand("$(A)-$(B)-$$(A)-$A-$(A", &lookup), "x-$(B)-$(A)-$A-$(A");
        assert_eq!(expand("cost: $$5 $", &lookup), "cost: $5 $");
    }

    #[test]
    fn command_and_args_against_the_image() {
        let image = ImageConfig { entrypoint: vec!["/ep".into()], cmd: vec!["dflt".into()], ..Default::default() };
        let c = |v: Value| -> Container { serde_json::from_value(v).expect("container") };
        let env = vec![("X".to_string(), "1".to_string())];
        assert_eq!(container_args(&c(json!({"name": "a"})), &image, &env).expect("args"), vec!["/ep", "dflt"]);
        assert_eq!(
            container_args(&c(json!({"name": "a", "args": ["$(X)"]})), &image, &env).expect("args"),
            vec!["/ep", "1"]
        );
        assert_eq!(
            container_args(&c(json!({"name": "a", "command": ["sh"]})), &image, &env).expect("args"),
            vec!["sh"]
        );
        assert_eq!(
            container_args(&c(json!({"name": "a", "command": ["sh"], "args": ["-c", "$$(X) $(X)"]})), &image, &env)
                .expect("args"),
            vec!["sh", "-c", "$(X) 1"]
        );
        assert_eq!(container_args(&c(json!({"name": "a"})), &ImageConfig::default(), &env), Err(SpecError::NoCommand));
    }

    #[test]
    fn environment_in_the_kubelets_order() {
        let p = base_pod(json!({
            "name": "c", "command": ["sh"],
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CM_"}],
            "env": [
                {"name": "PATH", "value": "/override"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "LBL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "HOSTIP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
                {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": true}}},
                {"name": "REF", "value": "$(CM_k)-$(REDIS_MAIN_SERVICE_HOST)-$(MISSING)"},
            ],
        }));
        let image =
            ImageConfig { env: vec!["PATH=/img".into(), "IMG=1".into()], cmd: vec!["x".into()], ..Default::default() };
        let s = spec_for(&p, &image, &sources(), &BTreeMap::new()).expect("spec");
        let env = env_of(&s);
        let idx = |k: &str| {
            env.iter().position(|e| e.starts_with(&format!("{k}="))).unwrap_or_else(|| panic!("{k} missing: {env:?}"))
        };
        // Image env first, PATH replaced in place.
        assert_eq!(env[0], "PATH=/override");
        assert_eq!(env[1], "IMG=1");
        // Service variables before envFrom before env.
        assert!(idx("KUBERNETES_SERVICE_HOST") < idx("CM_k"));
        assert!(idx("REDIS_MAIN_SERVICE_HOST") < idx("CM_k"));
        assert!(idx("CM_k") < idx("POD"));
        for want in [
            "KUBERNETES_SERVICE_HOST=10.43.0.1",
            "KUBERNETES_SERVICE_PORT=443",
            "KUBERNETES_SERVICE_PORT_HTTPS=443",
            "KUBERNETES_PORT=tcp://10.43.0.1:443",
            "KUBERNETES_PORT_443_TCP=tcp://10.43.0.1:443",
            "KUBERNETES_PORT_443_TCP_ADDR=10.43.0.1",
            "REDIS_MAIN_SERVICE_PORT=6379",
            "REDIS_MAIN_SERVICE_PORT_DB=6379",
            "REDIS_MAIN_PORT_6379_TCP_PROTO=tcp",
            "CM_k=v",
            "POD=web",
            "LBL=web",
            "NODE=n1",
            "IP=10.42.0.5",
            "HOSTIP=192.168.1.2",
            "PW=s3cret",
            "REF=v-10.43.0.9-$(MISSING)",
            "HOSTNAME=web",
        ] {
            assert!(env.contains(&want.to_string()), "{want} not in {env:?}");
        }
        assert!(!env.iter().any(|e| e.starts_with("OPT=") || e.starts_with("CM_bad key")), "{env:?}");
    }

    #[test]
    fn service_links_can_be_turned_off() {
        let mut p = base_pod(json!({"name": "c", "command": ["sh"]}));
        p.spec.as_mut().expect("spec").enable_service_links = Some(false);
        let s = spec_for(&p, &ImageConfig::default(), &sources(), &BTreeMap::new()).expect("spec");
        let env = env_of(&s);
        assert!(env.iter().any(|e| e == "KUBERNETES_SERVICE_HOST=10.43.0.1"));
        assert!(!env.iter().any(|e| e.starts_with("REDIS_MAIN")), "{env:?}");
    }

    #[test]
    fn missing_references_give_upstreams_messages() {
        let cases = [
            (json!({"configMapKeyRef": {"name": "gone", "key": "k"}}), "configmap \"gone\" not found"),
            (json!({"configMapKeyRef": {"name": "cfg", "key": "zz"}}), "couldn't find key zz in ConfigMap team/cfg"),
            (json!({"secretKeyRef": {"name": "gone", "key": "k"}}), "secret \"gone\" not found"),
            (json!({"secretKeyRef": {"name": "sec", "key": "zz"}}), "couldn't find key zz in Secret team/sec"),
        ];
        for (vf, msg) in cases {
            let p = base_pod(json!({"name": "c", "command": ["sh"], "env": [{"name": "X", "valueFrom": vf}]}));
            let err = spec_for(&p, &ImageConfig::default(), &sources(), &BTreeMap::new()).expect_err("must fail");
            assert_eq!(err.to_string(), msg);
        }
        let p = base_pod(json!({"name": "c", "command": ["sh"], "envFrom": [{"secretRef": {"name": "gone"}}]}));
        assert_eq!(
            spec_for(&p, &ImageConfig::default(), &sources(), &BTreeMap::new()),
            Err(SpecError::SecretNotFound("gone".into()))
        );
    }

    #[test]
    fn mounts_namespaces_and_sandbox_files() {
        let p = base_pod(json!({
            "name": "c", "command": ["sh"],
            "volumeMounts": [
                {"name": "data", "mountPath": "/data/deep", "subPath": "sub"},
                {"name": "data", "mountPath": "/data", "readOnly": true},
            ],
        }));
        let vols = BTreeMap::from([("data".to_string(), PathBuf::from("/vol/data"))]);
        let s = as_json(&spec_for(&p, &ImageConfig::default(), &sources(), &vols).expect("spec"));
        let mounts = s["mounts"].as_array().expect("mounts");
        let find =
            |d: &str| mounts.iter().position(|m| m["destination"] == d).unwrap_or_else(|| panic!("{d} not mounted"));
        for d in [
            "/proc",
            "/dev",
            "/dev/pts",
            "/dev/shm",
            "/dev/mqueue",
            "/sys",
            "/sys/fs/cgroup",
            "/etc/hosts",
            "/etc/hostname",
            "/etc/resolv.conf",
            "/dev/termination-log",
        ] {
            find(d);
        }
        assert_eq!(mounts[find("/etc/resolv.conf")]["source"], "/pod/resolv.conf");
        assert!(find("/data") < find("/data/deep"), "parents first");
        assert_eq!(mounts[find("/data/deep")]["source"], "/vol/data/sub");
        assert!(mounts[find("/data")]["options"].as_array().expect("opts").contains(&json!("ro")));
        let ns = s["linux"]["namespaces"].as_array().expect("namespaces");
        assert!(ns.contains(&json!({"type": "network", "path": "/run/netns/p"})));
        assert!(ns.contains(&json!({"type": "pid"})) && ns.contains(&json!({"type": "mount"})));
        assert_eq!(s["hostname"], "web");
        assert_eq!(s["linux"]["cgroupsPath"], "/kubepods/besteffort/podu_1/c1");
        assert!(s["linux"]["maskedPaths"].as_array().expect("masked").contains(&json!("/proc/kcore")));

        let bad = base_pod(
            json!({"name": "c", "command": ["sh"], "volumeMounts": [{"name": "data", "mountPath": "/x", "subPath": "../etc"}]}),
        );
        assert_eq!(
            spec_for(&bad, &ImageConfig::default(), &sources(), &vols),
            Err(SpecError::InvalidSubPath("../etc".into()))
        );
        let missing =
            base_pod(json!({"name": "c", "command": ["sh"], "volumeMounts": [{"name": "other", "mountPath": "/x"}]}));
        assert_eq!(
            spec_for(&missing, &ImageConfig::default(), &sources(), &vols),
            Err(SpecError::VolumeNotFound("other".into()))
        );
    }

    #[test]
    fn security_context_user_capabilities_and_privileged() {
        let p = pod(json!({
            "metadata": {"name": "web", "namespace": "team", "uid": "u-1"},
            "spec": {
                "securityContext": {"runAsUser": 1000, "runAsGroup": 2000, "supplementalGroups": [5], "fsGroup": 7},
                "containers": [{"name": "c", "command": ["sh"], "securityContext": {
                    "runAsUser": 1001, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                    "capabilities": {"add": ["NET_ADMIN"], "drop": ["NET_RAW", "KILL"]},
                }}],
            },
        }));
        let s = as_json(&spec_for(&p, &ImageConfig::default(), &sources(), &BTreeMap::new()).expect("spec"));
        assert_eq!(s["process"]["user"], json!({"uid": 1001, "gid": 2000, "additionalGids": [5, 7]}));
        assert_eq!(s["root"]["readonly"], true);
        assert_eq!(s["process"]["noNewPrivileges"], true);
        let bounding = s["process"]["capabilities"]["bounding"].as_array().expect("caps");
        assert!(bounding.contains(&json!("CAP_NET_ADMIN")) && bounding.contains(&json!("CAP_CHOWN")));
        assert!(!bounding.contains(&json!("CAP_NET_RAW")) && !bounding.contains(&json!("CAP_KILL")));

        let default = base_pod(json!({"name": "c", "command": ["sh"]}));
        let s = as_json(
            &spec_for(
                &default,
                &ImageConfig { user: "33:44".into(), ..Default::default() },
                &sources(),
                &BTreeMap::new(),
            )
            .expect("spec"),
        );
        assert_eq!(s["process"]["user"]["uid"], 33);
        assert_eq!(s["process"]["user"]["gid"], 44);
        assert_eq!(s["process"]["noNewPrivileges"], false);
        let s = as_json(&spec_for(&default, &ImageConfig::default(), &sources(), &BTreeMap::new()).expect("spec"));
        let caps = s["process"]["capabilities"]["effective"].as_array().expect("caps").clone();
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
        assert!(caps.contains(&json!("CAP_NET_RAW")));

        let privileged = base_pod(json!({"name": "c", "command": ["sh"], "securityContext": {"privileged": true}}));
        let s = as_json(&spec_for(&privileged, &ImageConfig::default(), &sources(), &BTreeMap::new()).expect("spec"));
        assert!(s["process"]["capabilities"]["bounding"].as_array().expect("caps").contains(&json!("CAP_SYS_ADMIN")));
        assert!(s["linux"].get("maskedPaths").is_none_or(|m| m.as_array().is_none_or(|a| a.is_empty())));
        assert_eq!(s["linux"]["resources"]["devices"], json!([{"allow": true, "access": "rwm"}]));

        let non_root = base_pod(json!({"name": "c", "command": ["sh"], "securityContext": {"runAsNonRoot": true}}));
        let err = spec_for(&non_root, &ImageConfig::default(), &sources(), &BTreeMap::new()).expect_err("root refused");
        assert_eq!(
            err.to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"web_team(u-1)\", container: c)"
        );
    }

    #[test]
    fn resources_become_cgroup_settings() {
        let p = base_pod(json!({"name": "c", "command": ["sh"], "resources": {
            "requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}}}));
        let mut src = sources();
        src.node_allocatable.insert("memory".into(), Quantity("1Gi".into()));
        let s = as_json(&spec_for(&p, &ImageConfig::default(), &src, &BTreeMap::new()).expect("spec"));
        let r = &s["linux"]["resources"];
        assert_eq!(r["cpu"]["shares"], 256);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["cpu"]["period"], 100_000);
        assert_eq!(r["memory"]["limit"], 128 * 1024 * 1024);
        // Burstable: 1000 - 1000 * 64Mi / 1Gi.
        assert_eq!(s["process"]["oomScoreAdj"], 938);
        assert_eq!(qos_class(&p), QosClass::Burstable);

        let g =
            base_pod(json!({"name": "c", "command": ["sh"], "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}));
        assert_eq!(qos_class(&g), QosClass::Guaranteed);
        let s = as_json(&spec_for(&g, &ImageConfig::default(), &src, &BTreeMap::new()).expect("spec"));
        assert_eq!(s["process"]["oomScoreAdj"], -997);
        assert_eq!(s["linux"]["resources"]["cpu"]["shares"], 1024);
        assert_eq!(
            pod_resources(&g),
            PodResources {
                cpu_shares: Some(1024),
                cpu_quota: Some(100_000),
                cpu_period: Some(100_000),
                memory_limit: Some(1 << 30)
            }
        );
        let be = base_pod(json!({"name": "c", "command": ["sh"]}));
        assert_eq!(qos_class(&be), QosClass::BestEffort);
        assert_eq!(pod_resources(&be), PodResources { cpu_shares: Some(2), ..Default::default() });
    }

    #[test]
    fn resource_field_refs_use_divisors_and_node_allocatable() {
        let p = base_pod(
            json!({"name": "c", "command": ["sh"], "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "64Mi"}},
            "env": [
                {"name": "CPU_REQ", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                {"name": "MEM_LIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "CPU_LIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            ]}),
        );
        let mut src = sources();
        src.node_allocatable.insert("cpu".into(), Quantity("4".into()));
        let env = env_of(&spec_for(&p, &ImageConfig::default(), &src, &BTreeMap::new()).expect("spec"));
        for want in ["CPU_REQ=250", "MEM_LIM=64", "CPU_LIM=4"] {
            assert!(env.contains(&want.to_string()), "{want} not in {env:?}");
        }
    }

    /// Upstream divides whole millicores; in floating point 0.07 / 0.01 is just above 7
    /// and rounded up to 8.
    #[test]
    fn resource_field_refs_divide_exactly() {
        let p = base_pod(
            json!({"name": "c", "command": ["sh"], "resources": {"requests": {"cpu": "70m", "memory": "1.5"}},
            "env": [
                {"name": "CPU_TENS", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "10m"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory"}}},
            ]}),
        );
        let env = env_of(&spec_for(&p, &ImageConfig::default(), &sources(), &BTreeMap::new()).expect("spec"));
        for want in ["CPU_TENS=7", "MEM=2"] {
            assert!(env.contains(&want.to_string()), "{want} not in {env:?}");
        }
    }

    #[test]
    fn cgroup_paths_follow_the_kubepods_hierarchy() {
        assert_eq!(pod_cgroup_path(QosClass::Guaranteed, "a-b"), "/kubepods/poda_b");
        assert_eq!(pod_cgroup_path(QosClass::Burstable, "a-b"), "/kubepods/burstable/poda_b");
        assert_eq!(container_cgroup_path(QosClass::BestEffort, "a-b", "c1"), "/kubepods/besteffort/poda_b/c1");
    }

    #[test]
    fn quantities_parse() {
        assert_eq!(bytes(&Quantity("16Mi".into())), Ok(16 * 1024 * 1024));
        assert_eq!(cpu_millis(&Quantity("100m".into())), Ok(100));
        assert_eq!(bytes(&Quantity("1e3".into())), Ok(1000));
        assert_eq!(bytes(&Quantity(" 1P ".into())), Ok(1_000_000_000_000_000));
        assert!(parse_quantity(&Quantity("12xyz".into())).is_err());
        assert_eq!(ceil_div(1001, 1000), 2);
        assert_eq!(ceil_div(-1001, 1000), -1);
        assert_eq!(ceil_div(0, 7), 0);
    }
}
