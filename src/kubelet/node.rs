//! The node object: registering this machine as a Node (labels, addresses, pod CIDR,
//! capacity, nodeInfo and conditions in upstream's and k3s' shape), keeping its status
//! current, and renewing its Lease in `kube-node-lease` so the control plane sees it alive.
//!
//! Facts about the host come from [`HostFacts`] (read once by [`HostFacts::read`], or given
//! by a test), so the Node object itself is a pure function ([`node_object`]) of the
//! input, the facts and the conditions.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};

use super::api_error;
use super::status::time;
use crate::apiserver::status::ApiError;
use crate::apiserver::Identity;
use crate::client::Client;
use crate::util::cidr::Cidr;

/// The runtime this node reports.
pub const CONTAINER_RUNTIME_VERSION: &str = "libcontainer://0.7.0";
/// The kubelet's port, as reported in `daemonEndpoints`.
pub const KUBELET_PORT: u16 = 10250;
/// Pods a node takes, as upstream's default.
pub const MAX_PODS: i64 = 110;
/// The namespace node leases live in.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How long a lease holds without renewal.
pub const LEASE_DURATION_SECONDS: i64 = 40;
/// Memory kept back from allocatable: k3s' (upstream's) hard eviction threshold.
const EVICTION_MEMORY: u64 = 100 * 1024 * 1024;
/// Share of the data dir's filesystem kept back from allocatable, as k3s' `nodefs.available<5%`.
const EVICTION_NODEFS_PERCENT: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot read node {name}: {source}")]
    ReadNode { name: String, source: ApiError },
    #[error("cannot create node {name}: {source}")]
    CreateNode { name: String, source: ApiError },
    #[error("cannot update node {name}: {source}")]
    UpdateNode { name: String, source: ApiError },
    #[error("cannot update the status of node {name}: {source}")]
    UpdateStatus { name: String, source: ApiError },
    #[error("cannot renew the lease of node {name}: {source}")]
    RenewLease { name: String, source: ApiError },
    #[error("cannot derive the pod CIDR from cluster CIDR {cluster_cidr}")]
    PodCidr { cluster_cidr: String },
}

/// Facts about the machine, as the Node reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    /// CPUs this process may use (affinity, limited by its cgroup's quota).
    pub cpus: u64,
    pub memory_bytes: u64,
    /// Size of the filesystem holding the data dir.
    pub ephemeral_storage_bytes: u64,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// `PRETTY_NAME` of an os-release file's text.
pub fn pretty_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
}

/// `MemTotal` of a meminfo text, in bytes.
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// CPUs a `cpu.max` line (`<quota> <period>` or `max <period>`) allows, rounded up.
pub fn cgroup_cpus(cpu_max: &str) -> Option<u64> {
    let mut parts = cpu_max.split_whitespace();
    let quota: u64 = parts.next()?.parse().ok()?;
    let period: u64 = parts.next()?.parse().ok().filter(|p| *p > 0)?;
    Some(quota.div_ceil(period).max(1))
}

fn affinity_cpus() -> u64 {
    match nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)) {
        Ok(set) => (0..nix::sched::CpuSet::count()).filter(|i| set.is_set(*i).unwrap_or(false)).count() as u64,
        Err(_) => std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1),
    }
}

/// The cgroup v2 `cpu.max` of this process's cgroup, if any.
fn own_cpu_max() -> Option<String> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    std::fs::read_to_string(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')).join("cpu.max")).ok()
}

impl HostFacts {
    /// Reads this machine's facts; `data_dir` is where pods' ephemeral storage lives.
    pub fn read(data_dir: &Path) -> HostFacts {
        let affinity = affinity_cpus().max(1);
        let cpus = own_cpu_max().and_then(|m| cgroup_cpus(&m)).map_or(affinity, |c| c.min(affinity));
        let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| mem_total(&m)).unwrap_or(0);
        let ephemeral_storage_bytes =
            nix::sys::statvfs::statvfs(data_dir).map(|s| s.blocks().saturating_mul(s.fragment_size())).unwrap_or(0);
        let machine_id = read_trimmed("/etc/machine-id");
        let system_uuid = Some(read_trimmed("/sys/class/dmi/id/product_uuid").to_lowercase())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| machine_id.clone());
        let kernel_version =
            nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
        let os_image = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| pretty_name(&t))
            .unwrap_or_else(|| "Linux".to_string());
        HostFacts {
            cpus,
            memory_bytes,
            ephemeral_storage_bytes,
            machine_id,
            system_uuid,
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
            kernel_version,
            os_image,
        }
    }
}

/// How often the node reports itself.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    /// How often conditions are checked and posted when they changed.
    pub status_every: Duration,
    /// The longest the status goes unposted even when nothing changed.
    pub report_every: Duration,
    /// How often the lease is renewed.
    pub lease_every: Duration,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat {
            status_every: Duration::from_secs(10),
            report_every: Duration::from_secs(300),
            lease_every: Duration::from_secs(10),
        }
    }
}

/// What the node registers as.
#[derive(Clone, Debug)]
pub struct NodeSpecInput {
    /// `--node-name`.
    pub name: String,
    /// `--node-ip` or the detected address.
    pub ip: IpAddr,
    /// `--cluster-cidr`; this single node takes its first /24 (/64 for IPv6).
    pub cluster_cidr: Cidr,
    /// The data dir, whose filesystem is the node's ephemeral storage.
    pub data_dir: PathBuf,
    /// The kubelet's version: the apiserver's gitVersion.
    pub version: String,
    /// Facts about the host; `None` reads them from this machine.
    pub facts: Option<HostFacts>,
    pub heartbeat: Heartbeat,
}

impl NodeSpecInput {
    /// A node named `name` at `ip`, with this build's version and the real host's facts.
    pub fn new(name: impl Into<String>, ip: IpAddr, cluster_cidr: Cidr, data_dir: impl Into<PathBuf>) -> NodeSpecInput {
        NodeSpecInput {
            name: name.into(),
            ip,
            cluster_cidr,
            data_dir: data_dir.into(),
            version: crate::apiserver::discovery::git_version(),
            facts: None,
            heartbeat: Heartbeat::default(),
        }
    }

    fn facts(&self) -> HostFacts {
        self.facts.clone().unwrap_or_else(|| HostFacts::read(&self.data_dir))
    }

    /// The node's pod CIDR: the first /24 (IPv4) or /64 (IPv6) of the cluster CIDR.
    pub fn pod_cidr(&self) -> Result<Cidr, NodeError> {
        let want = if self.cluster_cidr.is_ipv4() { 24 } else { 64 };
        let prefix = self.cluster_cidr.prefix_len().max(want);
        Cidr::new(self.cluster_cidr.network(), prefix)
            .map_err(|_| NodeError::PodCidr { cluster_cidr: self.cluster_cidr.to_string() })
    }
}

/// The identity a node's client carries: `system:node:<name>` in `system:nodes`.
pub fn node_identity(name: &str) -> Identity {
    Identity::new(format!("system:node:{name}"), &["system:nodes", "system:authenticated"])
}

/// The state the conditions report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConditions {
    /// `Err(message)` when the node is not ready, with why.
    pub ready: Result<(), String>,
    pub memory_pressure: bool,
    pub disk_pressure: bool,
    pub pid_pressure: bool,
}

impl Default for NodeConditions {
    fn default() -> Self {
        NodeConditions { ready: Ok(()), memory_pressure: false, disk_pressure: false, pid_pressure: false }
    }
}

impl NodeConditions {
    /// `(type, status, reason, message)` in upstream's order and words.
    pub fn rows(&self) -> [(&'static str, &'static str, &'static str, String); 4] {
        let pressure =
            |on: bool, t: &'static str, yes: (&'static str, &'static str), no: (&'static str, &'static str)| {
                let (reason, message) = if on { yes } else { no };
                (t, if on { "True" } else { "False" }, reason, message.to_string())
            };
        [
            pressure(
                self.memory_pressure,
                "MemoryPressure",
                ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
                ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ),
            pressure(
                self.disk_pressure,
                "DiskPressure",
                ("KubeletHasDiskPressure", "kubelet has disk pressure"),
                ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ),
            pressure(
                self.pid_pressure,
                "PIDPressure",
                ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
                ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ),
            match &self.ready {
                Ok(()) => ("Ready", "True", "KubeletReady", "kubelet is posting ready status".to_string()),
                Err(why) => ("Ready", "False", "KubeletNotReady", why.clone()),
            },
        ]
    }
}

/// Go's architecture name.
fn arch() -> String {
    crate::apiserver::discovery::platform().rsplit('/').next().unwrap_or("amd64").to_string()
}

/// The labels upstream's kubelet and k3s put on a server node.
pub fn node_labels(name: &str) -> BTreeMap<String, String> {
    let arch = arch();
    let os = std::env::consts::OS.to_string();
    BTreeMap::from([
        ("beta.kubernetes.io/arch".to_string(), arch.clone()),
        ("beta.kubernetes.io/os".to_string(), os.clone()),
        ("kubernetes.io/arch".to_string(), arch),
        ("kubernetes.io/hostname".to_string(), name.to_string()),
        ("kubernetes.io/os".to_string(), os),
        ("node-role.kubernetes.io/control-plane".to_string(), "true".to_string()),
        ("node-role.kubernetes.io/master".to_string(), "true".to_string()),
    ])
}

fn kib(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

fn quantities(amounts: [(&str, String); 6]) -> BTreeMap<String, Quantity> {
    amounts.into_iter().map(|(k, v)| (k.to_string(), Quantity(v))).collect()
}

/// The Node's status (without conditions, see [`merge_conditions`]).
pub fn node_status(input: &NodeSpecInput, facts: &HostFacts) -> NodeStatus {
    let capacity = quantities([
        ("cpu", facts.cpus.to_string()),
        ("ephemeral-storage", kib(facts.ephemeral_storage_bytes)),
        ("hugepages-1Gi", "0".into()),
        ("hugepages-2Mi", "0".into()),
        ("memory", kib(facts.memory_bytes)),
        ("pods", MAX_PODS.to_string()),
    ]);
    let reserved_storage = facts.ephemeral_storage_bytes / 1024 * 1024 * EVICTION_NODEFS_PERCENT / 100;
    let allocatable = quantities([
        ("cpu", facts.cpus.to_string()),
        (
            "ephemeral-storage",
            (facts.ephemeral_storage_bytes / 1024 * 1024).saturating_sub(reserved_storage).to_string(),
        ),
        ("hugepages-1Gi", "0".into()),
        ("hugepages-2Mi", "0".into()),
        ("memory", kib(facts.memory_bytes.saturating_sub(EVICTION_MEMORY))),
        ("pods", MAX_PODS.to_string()),
    ]);
    NodeStatus {
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: input.ip.to_string() },
            NodeAddress { type_: "Hostname".into(), address: input.name.clone() },
        ]),
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint { port: i32::from(KUBELET_PORT) }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: facts.machine_id.clone(),
            system_uuid: facts.system_uuid.clone(),
            boot_id: facts.boot_id.clone(),
            kernel_version: facts.kernel_version.clone(),
            os_image: facts.os_image.clone(),
            container_runtime_version: CONTAINER_RUNTIME_VERSION.into(),
            kubelet_version: input.version.clone(),
            kube_proxy_version: input.version.clone(),
            operating_system: std::env::consts::OS.into(),
            architecture: arch(),
            swap: None,
        }),
        ..Default::default()
    }
}

/// The Node as registered (status is written separately: it is a subresource).
pub fn node_object(input: &NodeSpecInput, pod_cidr: &Cidr) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(input.name.clone()),
            labels: Some(node_labels(&input.name)),
            annotations: Some(BTreeMap::from([
                ("node.alpha.kubernetes.io/ttl".to_string(), "0".to_string()),
                ("volumes.kubernetes.io/controller-managed-attach-detach".to_string(), "true".to_string()),
            ])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(pod_cidr.to_string()),
            pod_cidrs: Some(vec![pod_cidr.to_string()]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Sets the conditions on a status: heartbeat time now; transition time kept from the
/// previous condition of the same type unless its status changed.
pub fn merge_conditions(
    status: &mut NodeStatus,
    previous: Option<&[NodeCondition]>,
    conditions: &NodeConditions,
    now: &str,
) {
    let old = |t: &str| previous.and_then(|a| a.iter().find(|c| c.type_ == t));
    let rows = conditions
        .rows()
        .into_iter()
        .map(|(t, s, reason, message)| {
            let transition = match old(t) {
                Some(c) if c.status == s => c.last_transition_time.clone(),
                _ => time(now),
            };
            NodeCondition {
                type_: t.into(),
                status: s.into(),
                last_heartbeat_time: time(now),
                last_transition_time: transition,
                reason: Some(reason.into()),
                message: Some(message),
            }
        })
        .collect();
    status.conditions = Some(rows);
}

/// Whether the server's copy of the node reports other statuses than `conditions` (the node
/// lifecycle controller set them Unknown while this kubelet was out of reach): the kubelet
/// then posts again at once, as upstream's compares with the API server's node.
pub fn conditions_differ(node: &Node, conditions: &NodeConditions) -> bool {
    let posted = node.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    conditions.rows().iter().any(|(t, s, _, _)| {
        let server = posted.iter().find(|c| c.type_ == *t).map(|c| c.status.as_str());
        server != Some(*s)
    })
}

fn now() -> String {
    crate::domain::time::now_rfc3339()
}

/// Now as a lease's MicroTime (written in RFC 3339 with microseconds).
fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// The node's own status fields over what the server has: what others report there (images,
/// volumes) stays.
fn overlay(old: Option<NodeStatus>, ours: NodeStatus) -> NodeStatus {
    let mut status = old.unwrap_or_default();
    status.addresses = ours.addresses;
    status.capacity = ours.capacity;
    status.allocatable = ours.allocatable;
    status.daemon_endpoints = ours.daemon_endpoints;
    status.node_info = ours.node_info;
    status.conditions = ours.conditions;
    status
}

/// Registers the node, or brings an existing Node (from before a restart) up to date
/// without replacing it: its uid, taints, cordon and others' labels stay.
pub async fn register(client: &Client, info: &NodeSpecInput) -> Result<(), NodeError> {
    let pod_cidr = info.pod_cidr()?;
    let desired = node_object(info, &pod_cidr);
    let name = info.name.clone();
    let nodes: Api<Node> = Api::all(client.typed());
    for _ in 0..5 {
        match nodes.get(&name).await.map_err(api_error) {
            Err(e) if e.is_not_found() => match nodes.create(&PostParams::default(), &desired).await.map_err(api_error)
            {
                Ok(_) => {
                    tracing::info!(node = %name, "registered the node");
                    break;
                }
                Err(e) if e.is_already_exists() => continue,
                Err(source) => return Err(NodeError::CreateNode { name, source }),
            },
            Err(source) => return Err(NodeError::ReadNode { name, source }),
            Ok(mut current) => {
                let before = current.clone();
                current.metadata.labels.get_or_insert_with(Default::default).extend(node_labels(&name));
                let annotations = desired.metadata.annotations.clone().unwrap_or_default();
                current.metadata.annotations.get_or_insert_with(Default::default).extend(annotations);
                // A pod CIDR once given stays, as upstream.
                let spec = current.spec.get_or_insert_with(Default::default);
                if spec.pod_cidr.as_deref().unwrap_or("").is_empty() {
                    let want = desired.spec.as_ref();
                    spec.pod_cidr = want.and_then(|s| s.pod_cidr.clone());
                    spec.pod_cidrs = want.and_then(|s| s.pod_cidrs.clone());
                }
                if current == before {
                    break;
                }
                match nodes.replace(&name, &PostParams::default(), &current).await.map_err(api_error) {
                    Ok(_) => {
                        tracing::info!(node = %name, "updated the registered node");
                        break;
                    }
                    Err(e) if e.is_conflict() => continue,
                    Err(source) => return Err(NodeError::UpdateNode { name, source }),
                }
            }
        }
    }
    // Conditions a restarted node already has stay until the heartbeat has fresh ones, so
    // a restart does not flap the node to NotReady.
    post_status(client, info, None).await.map(|_| ())
}

/// Writes the node's status with `conditions` (`None`: keep the present ones, or report
/// "starting" if there are none); returns the node as written.
async fn post_status(
    client: &Client,
    info: &NodeSpecInput,
    conditions: Option<&NodeConditions>,
) -> Result<Node, NodeError> {
    let starting = NodeConditions {
        ready: Err("container runtime status check may not have completed yet".into()),
        ..Default::default()
    };
    let name = info.name.clone();
    let nodes: Api<Node> = Api::all(client.typed());
    let facts = info.facts();
    let mut last = None;
    for _ in 0..5 {
        let mut node =
            nodes.get(&name).await.map_err(|e| NodeError::ReadNode { name: name.clone(), source: api_error(e) })?;
        let mut status = node_status(info, &facts);
        let previous = node.status.as_ref().and_then(|s| s.conditions.as_deref()).filter(|c| !c.is_empty());
        match (conditions, previous) {
            (Some(c), _) => merge_conditions(&mut status, previous, c, &now()),
            (None, Some(kept)) => status.conditions = Some(kept.to_vec()),
            (None, None) => merge_conditions(&mut status, None, &starting, &now()),
        }
        // Keep what others report (images, volumes) beside ours.
        node.status = Some(overlay(node.status.take(), status));
        match nodes.replace_status(&name, &PostParams::default(), &node).await.map_err(api_error) {
            Ok(written) => return Ok(written),
            Err(e) if e.is_conflict() => last = Some(e),
            Err(source) => return Err(NodeError::UpdateStatus { name, source }),
        }
    }
    Err(NodeError::UpdateStatus { name, source: last.unwrap_or_else(|| ApiError::internal("conflicts")) })
}

/// Creates or renews the node's lease in `kube-node-lease`.
pub async fn renew_lease(client: &Client, info: &NodeSpecInput) -> Result<(), NodeError> {
    let name = info.name.clone();
    let err = |source| NodeError::RenewLease { name: name.clone(), source };
    let leases: Api<Lease> = Api::namespaced(client.typed(), LEASE_NAMESPACE);
    let duration = i32::try_from(LEASE_DURATION_SECONDS).ok();
    match leases.get(&name).await.map_err(api_error) {
        Ok(mut lease) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some(name.clone());
            spec.lease_duration_seconds = duration;
            spec.renew_time = Some(micro_now());
            leases.replace(&name, &PostParams::default(), &lease).await.map(|_| ()).map_err(|e| err(api_error(e)))
        }
        Err(e) if e.is_not_found() => {
            let node = Api::<Node>::all(client.typed()).get(&name).await.map_err(|e| err(api_error(e)))?;
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(LEASE_NAMESPACE.into()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: name.clone(),
                        uid: node.metadata.uid.unwrap_or_default(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(name.clone()),
                    lease_duration_seconds: duration,
                    renew_time: Some(micro_now()),
                    ..Default::default()
                }),
            };
            match leases.create(&PostParams::default(), &lease).await.map_err(api_error) {
                Ok(_) => Ok(()),
                Err(e) if e.is_already_exists() => Ok(()),
                Err(e) => Err(err(e)),
            }
        }
        Err(e) => Err(err(e)),
    }
}

/// Keeps the node's status and lease current until `shutdown` resolves: the lease every
/// `lease_every`; the status whenever `readiness` changes (checked every `status_every`)
/// and at least every `report_every`.
pub async fn run_heartbeat(
    client: Client,
    info: NodeSpecInput,
    readiness: impl Fn() -> NodeConditions,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut info = info;
    // Facts are read once; the boot ID and sizes do not change while k3rs runs.
    if info.facts.is_none() {
        let dir = info.data_dir.clone();
        info.facts = tokio::task::spawn_blocking(move || HostFacts::read(&dir)).await.ok();
    }
    let mut lease = tokio::time::interval(info.heartbeat.lease_every);
    let mut status = tokio::time::interval(info.heartbeat.status_every);
    let mut posted: Option<(NodeConditions, Instant)> = None;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = lease.tick() => {
                if let Err(e) = renew_lease(&client, &info).await {
                    tracing::warn!(node = %info.name, error = %e, "lease renewal failed");
                }
            }
            _ = status.tick() => {
                let now = readiness();
                let due = match &posted {
                    None => true,
                    Some((last, at)) => *last != now || at.elapsed() >= info.heartbeat.report_every || {
                        let node = Api::<Node>::all(client.typed()).get(&info.name).await;
                        node.is_ok_and(|n| conditions_differ(&n, &now))
                    },
                };
                if due {
                    match post_status(&client, &info, Some(&now)).await {
                        Ok(_) => posted = Some((now, Instant::now())),
                        Err(e) => tracing::warn!(node = %info.name, error = %e, "node status update failed"),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> NodeSpecInput {
        let mut i = NodeSpecInput::new("n1", "192.0.2.7".parse().unwrap(), "10.42.0.0/16".parse().unwrap(), "/tmp");
        i.version = "v1.33.0+k3rs1".into();
        i.facts = Some(facts());
        i
    }

    fn facts() -> HostFacts {
        HostFacts {
            cpus: 4,
            memory_bytes: 8 * 1024 * 1024 * 1024,
            ephemeral_storage_bytes: 100 * 1024 * 1024 * 1024,
            machine_id: "m".into(),
            system_uuid: "u".into(),
            boot_id: "b".into(),
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 13 (trixie)".into(),
        }
    }

    #[test]
    fn conditions_are_posted_again_when_the_server_disagrees() {
        let healthy = NodeConditions::default();
        let mut status = NodeStatus::default();
        merge_conditions(&mut status, None, &healthy, "2026-01-01T00:00:00Z");
        let node = Node { status: Some(status), ..Default::default() };
        assert!(!conditions_differ(&node, &healthy));
        let not_ready = NodeConditions { ready: Err("runtime down".into()), ..Default::default() };
        assert!(conditions_differ(&node, &not_ready));
        let mut unknown = node.clone();
        unknown.status.as_mut().unwrap().conditions.as_mut().unwrap()[3].status = "Unknown".into();
        assert!(conditions_differ(&unknown, &healthy), "set Unknown by the node lifecycle controller");
        assert!(conditions_differ(&Node::default(), &healthy), "no conditions at all");
    }

    #[test]
    fn host_file_parsers() {
        assert_eq!(
            pretty_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\n").as_deref(),
            Some("Debian GNU/Linux 13 (trixie)")
        );
        assert_eq!(mem_total("MemTotal:       16318480 kB\nMemFree: 1 kB\n"), Some(16318480 * 1024));
        assert_eq!(cgroup_cpus("150000 100000"), Some(2));
        assert_eq!(cgroup_cpus("max 100000"), None);
    }

    #[test]
    fn pod_cidr_is_the_first_24_of_the_cluster_cidr() {
        assert_eq!(input().pod_cidr().unwrap().to_string(), "10.42.0.0/24");
        let mut small = input();
        small.cluster_cidr = "10.42.0.0/26".parse().unwrap();
        assert_eq!(small.pod_cidr().unwrap().to_string(), "10.42.0.0/26");
    }

    #[test]
    fn node_object_and_status_as_upstream() {
        let i = input();
        let node = node_object(&i, &i.pod_cidr().unwrap());
        let labels = node.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["node-role.kubernetes.io/control-plane"], "true");
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(node.spec.as_ref().unwrap().pod_cidrs, Some(vec!["10.42.0.0/24".to_string()]));
        let st = node_status(&i, &facts());
        let amount = |list: &Option<BTreeMap<String, Quantity>>, k: &str| list.as_ref().unwrap()[k].0.clone();
        assert_eq!(amount(&st.capacity, "cpu"), "4");
        assert_eq!(amount(&st.capacity, "memory"), "8388608Ki");
        assert_eq!(amount(&st.allocatable, "memory"), "8286208Ki");
        assert_eq!(amount(&st.allocatable, "pods"), "110");
        assert_eq!(amount(&st.allocatable, "ephemeral-storage"), (100u64 * 1024 * 1024 * 1024 * 95 / 100).to_string());
        // As written: the wire names of the addresses and the kubelet's endpoint.
        let wire = serde_json::to_value(&st).unwrap();
        assert_eq!(
            wire["addresses"],
            serde_json::json!([{"type": "InternalIP", "address": "192.0.2.7"}, {"type": "Hostname", "address": "n1"}])
        );
        assert_eq!(wire["nodeInfo"]["containerRuntimeVersion"], "libcontainer://0.7.0");
        assert_eq!(wire["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
    }

    #[test]
    fn transition_time_moves_only_when_a_condition_changes() {
        let (t1, t2) = ("2026-01-01T00:00:01Z", "2026-01-01T00:00:02Z");
        let mut st = NodeStatus::default();
        merge_conditions(&mut st, None, &NodeConditions::default(), t1);
        let first = st.conditions.clone().unwrap();
        assert_eq!(
            serde_json::to_value(&first[3]).unwrap(),
            serde_json::json!({"type": "Ready", "status": "True", "lastHeartbeatTime": t1, "lastTransitionTime": t1, "reason": "KubeletReady", "message": "kubelet is posting ready status"})
        );
        assert_eq!(first[0].reason.as_deref(), Some("KubeletHasSufficientMemory"));
        let mut st2 = NodeStatus::default();
        let pressured = NodeConditions { disk_pressure: true, ..Default::default() };
        merge_conditions(&mut st2, Some(&first), &pressured, t2);
        let second = st2.conditions.unwrap();
        assert_eq!(second[3].last_transition_time, time(t1));
        assert_eq!(second[3].last_heartbeat_time, time(t2));
        assert_eq!(second[1].last_transition_time, time(t2));
        assert_eq!(second[1].reason.as_deref(), Some("KubeletHasDiskPressure"));
    }
}
