//! Pod sandboxes and their network: per pod a network, IPC and UTS namespace (held by a tiny
//! holder process that outlives k3rs, see `netns`), a veth into the node's bridge, an address
//! from the node's podCIDR that is persisted (never two pods on one IP, kept across restarts,
//! released on deletion), and the pod's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.
//!
//! Pod traffic stays on the node: the bridge carries the node's podCIDR with the gateway
//! address, pods reach each other over the bridge and the node through the gateway, no route,
//! masquerade or uplink port is ever added, and an nftables guard (`guard`) drops whatever the
//! node would otherwise forward between the bridge and its other interfaces. Everything a sandbox consists of is found
//! again from the pod uid alone (the holder file, the veth name, the address file, the record),
//! so setup after a restart returns the same sandbox and teardown is idempotent and safe after
//! a crash halfway through setup.
//!
//! The node's side effects go through narrow traits with in-memory fakes for the unit tests:
//! netlink and the forwarding sysctls (`link::Netlink`), and nft (`guard::Nft`).
//!
//! Layout: `<run>/sandboxes/<uid>/holder` (the holder's PID and start time), `<state>/ipam/<ip>` (address
//! owners), `<state>/sandboxes/<uid>.json` (records of finished setups),
//! `<pods>/<uid>/{etc-hosts,etc-hostname,resolv.conf}` (files the containers bind-mount).

pub mod files;
pub mod guard;
pub mod ipam;
pub mod link;
pub mod netns;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{HostAlias, Pod, PodDNSConfig};
use serde::{Deserialize, Serialize};

use crate::server::layout::DataDir;
use crate::util::cidr::Cidr;

pub use guard::GuardError;
pub use ipam::IpamError;
pub use link::LinkError;
pub use netns::NsError;

/// How long setup waits for a new pod link to carry traffic.
const LINK_READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long teardown lets the kernel remove a dead namespace's veth before deleting it itself.
const VETH_GONE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The files written into `<pods>/<uid>/`: hosts, hostname, resolver configuration.
const POD_FILES: [&str; 3] = ["etc-hosts", "etc-hostname", "resolv.conf"];

/// Default name of the node's pod bridge.
pub const DEFAULT_BRIDGE: &str = "k3rs0";

/// What the pod network needs to know about the node; validated by [`PodNetwork::new`].
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// The bridge the pods are attached to (a Linux interface name, at most 15 bytes).
    pub bridge: String,
    /// The node's podCIDR: pod addresses come from it, its first address is the gateway.
    pub pod_cidr: Cidr,
    /// The whole cluster's pod network; `pod_cidr` must lie inside it.
    pub cluster_cidr: Cidr,
    /// The service network; it must not overlap the pods'.
    pub service_cidr: Cidr,
    /// The cluster DNS service address written into ClusterFirst pods' resolv.conf.
    pub cluster_dns: IpAddr,
    /// The cluster domain (`cluster.local`).
    pub cluster_domain: String,
    /// Persistent state: address allocations and sandbox records (`DataDir::network()`).
    pub state_dir: PathBuf,
    /// Where namespace files are mounted (`DataDir::run()`).
    pub run_dir: PathBuf,
    /// Per-pod directories receiving etc-hosts, etc-hostname and resolv.conf (`DataDir::pods()`).
    pub pods_dir: PathBuf,
    /// MTU of the bridge and both veth ends.
    pub mtu: u32,
    /// The node's resolver configuration used by Default and host-network pods (the kubelet's
    /// `--resolv-conf`).
    pub resolv_conf: PathBuf,
    /// The node's hosts file that host-network pods get.
    pub hosts_file: PathBuf,
}

impl NetConfig {
    /// The configuration with the usual defaults for a node whose data lives in `data`.
    pub fn new(
        data: &DataDir,
        pod_cidr: Cidr,
        cluster_cidr: Cidr,
        service_cidr: Cidr,
        cluster_dns: IpAddr,
        cluster_domain: &str,
    ) -> NetConfig {
        NetConfig {
            bridge: DEFAULT_BRIDGE.to_string(),
            pod_cidr,
            cluster_cidr,
            service_cidr,
            cluster_dns,
            cluster_domain: cluster_domain.to_string(),
            state_dir: data.network(),
            run_dir: data.run(),
            pods_dir: data.pods(),
            mtu: 1500,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            hosts_file: PathBuf::from("/etc/hosts"),
        }
    }

    fn validate(&self) -> Result<(), NetError> {
        let bad = |m: String| Err(NetError::InvalidConfig(m));
        if self.bridge.is_empty()
            || self.bridge.len() > 15
            || !self.bridge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return bad(format!(
                "bridge name {:?} is not a valid interface name (1-15 of [A-Za-z0-9._-])",
                self.bridge
            ));
        }
        if !self.pod_cidr.is_ipv4() {
            return bad(format!("pod CIDR {} is not IPv4; only IPv4 pod networks are supported", self.pod_cidr));
        }
        if self.pod_cidr.host_bits() < 2 {
            return bad(format!("pod CIDR {} has no room for pods besides the gateway", self.pod_cidr));
        }
        if !self.cluster_cidr.contains(self.pod_cidr.network())
            || self.cluster_cidr.prefix_len() > self.pod_cidr.prefix_len()
        {
            return bad(format!("pod CIDR {} is not inside the cluster CIDR {}", self.pod_cidr, self.cluster_cidr));
        }
        if self.service_cidr.overlaps(&self.cluster_cidr) {
            return bad(format!("service CIDR {} overlaps the cluster CIDR {}", self.service_cidr, self.cluster_cidr));
        }
        if !(68..=65535).contains(&self.mtu) {
            return bad(format!("MTU {} is outside 68..=65535", self.mtu));
        }
        Ok(())
    }
}

/// What a pod's sandbox is made from: the pod's identity and its namespace and DNS settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SandboxRequest {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// `spec.hostname`, or the pod name (truncated as upstream does, see [`pod_hostname`]).
    pub hostname: String,
    pub subdomain: Option<String>,
    pub host_network: bool,
    pub host_ipc: bool,
    /// `spec.dnsPolicy`; empty means ClusterFirst.
    pub dns_policy: String,
    pub dns_config: Option<PodDNSConfig>,
    pub host_aliases: Vec<HostAlias>,
    /// The node's hostname: a host-network pod's hostname.
    pub node_hostname: String,
}

impl SandboxRequest {
    /// The request for `pod` on the node called `node_hostname`.
    pub fn from_pod(pod: &Pod, node_hostname: &str) -> SandboxRequest {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let name = meta.name.clone().unwrap_or_default();
        SandboxRequest {
            uid: meta.uid.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_else(|| "default".to_string()),
            hostname: pod_hostname(spec.and_then(|s| s.hostname.as_deref()), &name),
            name,
            subdomain: spec.and_then(|s| s.subdomain.clone()).filter(|s| !s.is_empty()),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            host_ipc: spec.and_then(|s| s.host_ipc).unwrap_or(false),
            dns_policy: spec.and_then(|s| s.dns_policy.clone()).unwrap_or_default(),
            dns_config: spec.and_then(|s| s.dns_config.clone()),
            host_aliases: spec.and_then(|s| s.host_aliases.clone()).unwrap_or_default(),
            node_hostname: node_hostname.to_string(),
        }
    }
}

/// A pod's hostname: `spec.hostname` if set, else the pod name cut to 63 bytes (a hostname
/// label's limit) without trailing `-` or `.`, as upstream does.
pub fn pod_hostname(spec_hostname: Option<&str>, pod_name: &str) -> String {
    if let Some(h) = spec_hostname.filter(|h| !h.is_empty()) {
        return h.to_string();
    }
    let mut cut = pod_name;
    if cut.len() > 63 {
        let mut end = 63;
        while !cut.is_char_boundary(end) {
            end -= 1;
        }
        cut = cut[..end].trim_end_matches(['-', '.']);
    }
    cut.to_string()
}

/// A pod's sandbox: what its containers join and mount. Containers name the namespace files
/// as `path`s of their OCI `linux.namespaces` entries (none given: the node's namespace) and
/// bind-mount the three files onto `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    pub uid: String,
    /// The pod's address; None for hostNetwork pods (their address is the node's).
    pub ip: Option<IpAddr>,
    /// Network namespace file; None for hostNetwork pods.
    pub netns: Option<PathBuf>,
    /// IPC namespace file; None for hostIPC pods.
    pub ipc: Option<PathBuf>,
    /// UTS namespace file (hostname = the pod's); None for hostNetwork pods.
    pub uts: Option<PathBuf>,
    /// The process holding the namespaces (None when the pod has none of its own, and in
    /// records of earlier versions, whose namespaces were pinned by bind mounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<netns::Holder>,
    /// To be bind-mounted on the containers' `/etc/hosts`.
    pub hosts: PathBuf,
    /// To be bind-mounted on the containers' `/etc/hostname`.
    pub hostname: PathBuf,
    /// To be bind-mounted on the containers' `/etc/resolv.conf`.
    pub resolv_conf: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid pod network configuration: {0}")]
    InvalidConfig(String),
    #[error("pod uid {0:?} is not usable as a path component")]
    InvalidUid(String),
    #[error("open a netlink socket in the node's network namespace: {0}")]
    NetlinkSocket(io::Error),
    #[error("allocate pod address: {0}")]
    Address(#[source] IpamError),
    #[error(transparent)]
    Namespace(#[from] NsError),
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Guard(#[from] GuardError),
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
    #[error("sandbox record {}: {source}", path.display())]
    Record { path: PathBuf, source: serde_json::Error },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> NetError + 'a {
    move |source| NetError::Io { op, path: path.to_path_buf(), source }
}

/// The node's pod network: makes and removes sandboxes.
pub struct PodNetwork {
    cfg: NetConfig,
    /// Netlink in the node's network namespace (the one `new` ran in).
    host: Arc<dyn link::Netlink>,
    bridge_index: u32,
    ipam: ipam::Ipam,
    records: Mutex<BTreeMap<String, Sandbox>>,
    /// One lock per pod uid: setup and teardown of one pod never interleave.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl PodNetwork {
    /// Prepares the node: the bridge with the gateway address, forwarding, the state
    /// directories; loads the records of existing sandboxes and removes what a crash halfway
    /// through a setup left behind. Idempotent: running sandboxes are not touched.
    pub async fn new(cfg: NetConfig) -> Result<PodNetwork, NetError> {
        // Before anything is opened: a bad configuration is reported as such.
        cfg.validate()?;
        let (conn, host, _) = rtnetlink::new_connection().map_err(NetError::NetlinkSocket)?;
        tokio::spawn(conn);
        PodNetwork::with(cfg, Arc::new(link::RtNetlink::new(host)), &guard::NftCommand).await
    }

    /// [`PodNetwork::new`] with the node's netlink and nftables given.
    pub async fn with(
        cfg: NetConfig,
        host: Arc<dyn link::Netlink>,
        nft: &dyn guard::Nft,
    ) -> Result<PodNetwork, NetError> {
        cfg.validate()?;
        for dir in [cfg.state_dir.join("sandboxes"), cfg.pods_dir.clone()] {
            std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        }
        std::fs::create_dir_all(cfg.run_dir.join("sandboxes"))
            .map_err(io_err("create directory", &cfg.run_dir.join("sandboxes")))?;
        let gateway = ipam::gateway(cfg.pod_cidr);
        let mac = link::bridge_mac(&cfg.bridge, &cfg.pod_cidr.to_string());
        let bridge_index =
            link::ensure_bridge(host.as_ref(), &cfg.bridge, mac, cfg.mtu, gateway, cfg.pod_cidr.prefix_len()).await?;
        // The guard goes first: forwarding is never on without it.
        guard::install(nft, &cfg.bridge)?;
        host.enable_forwarding(&cfg.bridge).await?;
        let ipam = ipam::Ipam::open(cfg.state_dir.join("ipam"), cfg.pod_cidr).map_err(NetError::Address)?;
        let net = PodNetwork {
            cfg,
            host,
            bridge_index,
            ipam,
            records: Mutex::new(BTreeMap::new()),
            locks: Mutex::new(HashMap::new()),
        };
        net.load_records()?;
        net.remove_leftovers().await?;
        tracing::info!(bridge = %net.cfg.bridge, pod_cidr = %net.cfg.pod_cidr, sandboxes = net.list().len(), "pod network ready");
        Ok(net)
    }

    /// The configuration in use.
    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// Makes the pod's sandbox, or returns it if it exists already and is intact (after a
    /// restart too). A broken or partial one (after a reboot, say) is made again with the
    /// address it had.
    pub async fn setup(&self, req: &SandboxRequest) -> Result<Sandbox, NetError> {
        check_uid(&req.uid)?;
        let lock = self.lock_for(&req.uid);
        let _held = lock.lock().await;
        if let Some(existing) = self.record(&req.uid) {
            if self.intact(&existing).await {
                return Ok(existing);
            }
            tracing::warn!(uid = %req.uid, "sandbox is no longer intact; making it again");
        }
        self.remove(&req.uid, Address::Keep).await?;
        let started = std::time::Instant::now();
        match self.make(req).await {
            Ok(sandbox) => {
                tracing::debug!(uid = %req.uid, pod = %format!("{}/{}", req.namespace, req.name), ip = ?sandbox.ip,
                    elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "sandbox set up");
                Ok(sandbox)
            }
            Err(e) => {
                if let Err(cleanup) = self.remove(&req.uid, Address::Release).await {
                    tracing::warn!(uid = %req.uid, error = %cleanup, "cleaning up a failed sandbox setup failed");
                }
                Err(e)
            }
        }
    }

    /// Removes everything of the pod's sandbox: the veth, the namespaces, the address, the
    /// files. Nothing there is fine.
    pub async fn teardown(&self, pod_uid: &str) -> Result<(), NetError> {
        check_uid(pod_uid)?;
        let lock = self.lock_for(pod_uid);
        let result = {
            let _held = lock.lock().await;
            self.remove(pod_uid, Address::Release).await
        };
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Only forget the lock if nobody else is waiting on it.
        if Arc::strong_count(&lock) <= 2 {
            locks.remove(pod_uid);
        }
        result
    }

    /// Every sandbox whose setup finished (for re-adoption and garbage collection).
    pub fn list(&self) -> Vec<Sandbox> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    fn lock_for(&self, uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().unwrap_or_else(|p| p.into_inner()).entry(uid.to_string()).or_default().clone()
    }

    fn record(&self, uid: &str) -> Option<Sandbox> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).get(uid).cloned()
    }

    fn sandbox_dir(&self, uid: &str) -> PathBuf {
        self.cfg.run_dir.join("sandboxes").join(uid)
    }

    fn record_path(&self, uid: &str) -> PathBuf {
        self.cfg.state_dir.join("sandboxes").join(format!("{uid}.json"))
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        self.cfg.pods_dir.join(uid)
    }

    async fn make(&self, req: &SandboxRequest) -> Result<Sandbox, NetError> {
        let uid = req.uid.as_str();
        let mut steps = Steps::new(uid);
        let wanted = netns::Wanted { net: !req.host_network, ipc: !req.host_ipc, uts: !req.host_network };
        let ip = if wanted.net { Some(self.ipam.allocate(uid).map_err(NetError::Address)?) } else { None };
        let dir = self.sandbox_dir(uid);
        steps.done("ipam");
        let (holder, pod_handle) =
            netns::create(&dir, wanted, &req.hostname, tokio::runtime::Handle::current()).await?;
        steps.done("netns");
        let ns_path = |kind: &str, want: bool| if want { holder.map(|h| h.ns_path(kind)) } else { None };
        if let (Some(ip), Some(pod)) = (ip, pod_handle.map(link::RtNetlink::new)) {
            let veth = link::host_veth_name(uid);
            {
                let fd = netns::open(
                    &ns_path("net", true)
                        .ok_or_else(|| NsError::Holder("no holder for the network namespace".into()))?,
                )?;
                self.host.add_veth(&veth, fd.as_raw_fd(), self.cfg.mtu, self.bridge_index).await?;
            }
            steps.done("veth");
            link::set_hairpin(self.host.as_ref(), &veth).await?;
            steps.done("hairpin");
            link::configure_pod(&pod, ip, self.cfg.pod_cidr.prefix_len(), self.ipam.gateway()).await?;
            steps.done("configure");
            // A sandbox is handed out when it carries traffic; a slow kernel only delays that,
            // so past the deadline the pod starts anyway and its first packets may be retried.
            if !link::wait_ready(self.host.as_ref(), &pod, &veth, &self.cfg.bridge, LINK_READY_TIMEOUT).await? {
                tracing::warn!(uid, link = %veth, "pod link not forwarding yet after {LINK_READY_TIMEOUT:?}; continuing");
            }
            steps.done("ready");
        }
        let pod_dir = self.pod_dir(uid);
        std::fs::create_dir_all(&pod_dir).map_err(io_err("create directory", &pod_dir))?;
        let (hosts, hostname, resolv) = self.render_files(req, ip)?;
        let sandbox = Sandbox {
            uid: uid.to_string(),
            ip,
            netns: ns_path("net", wanted.net),
            ipc: ns_path("ipc", wanted.ipc),
            uts: ns_path("uts", wanted.uts),
            holder,
            hosts: pod_dir.join(POD_FILES[0]),
            hostname: pod_dir.join(POD_FILES[1]),
            resolv_conf: pod_dir.join(POD_FILES[2]),
        };
        write_atomic(&sandbox.hosts, hosts.as_bytes())?;
        write_atomic(&sandbox.hostname, hostname.as_bytes())?;
        write_atomic(&sandbox.resolv_conf, resolv.as_bytes())?;
        // The record comes last: its presence means the sandbox is complete.
        let path = self.record_path(uid);
        let json =
            serde_json::to_vec_pretty(&sandbox).map_err(|source| NetError::Record { path: path.clone(), source })?;
        write_atomic(&path, &json)?;
        self.records.lock().unwrap_or_else(|p| p.into_inner()).insert(uid.to_string(), sandbox.clone());
        Ok(sandbox)
    }

    /// The contents of etc-hosts, etc-hostname and resolv.conf for the pod.
    fn render_files(&self, req: &SandboxRequest, ip: Option<IpAddr>) -> Result<(String, String, String), NetError> {
        let hosts = match ip {
            Some(ip) => {
                let domain = files::pod_domain(req.subdomain.as_deref(), &req.namespace, &self.cfg.cluster_domain);
                files::managed_hosts(&[ip], &req.hostname, &domain, &req.host_aliases)
            }
            None => {
                let path = &self.cfg.hosts_file;
                let node = std::fs::read_to_string(path).map_err(io_err("read the node's hosts file", path))?;
                files::host_network_hosts(&node, &req.host_aliases)
            }
        };
        let hostname = files::hostname_file(if req.host_network { &req.node_hostname } else { &req.hostname });
        let host_dns = match std::fs::read_to_string(&self.cfg.resolv_conf) {
            Ok(text) => files::parse_resolv_conf(&text),
            // No resolver configuration on the node means the libc default; nothing to copy.
            Err(e) if e.kind() == io::ErrorKind::NotFound => files::DnsSettings::default(),
            Err(e) => return Err(io_err("read the node's resolver configuration", &self.cfg.resolv_conf)(e)),
        };
        let dns = files::pod_dns(&files::DnsInput {
            dns_policy: &req.dns_policy,
            host_network: req.host_network,
            dns_config: req.dns_config.as_ref(),
            namespace: &req.namespace,
            cluster_dns: Some(self.cfg.cluster_dns),
            cluster_domain: &self.cfg.cluster_domain,
            host: &host_dns,
        });
        Ok((hosts, hostname, files::resolv_conf(&dns)))
    }

    /// True when everything the record names is still there (after a reboot the holder and
    /// the links are gone).
    async fn intact(&self, sandbox: &Sandbox) -> bool {
        let namespaces_ok = match sandbox.holder {
            Some(h) => h.alive(),
            None => [&sandbox.netns, &sandbox.ipc, &sandbox.uts].into_iter().flatten().all(|p| netns::is_pinned(p)),
        };
        let files_ok = [&sandbox.hosts, &sandbox.hostname, &sandbox.resolv_conf].iter().all(|p| p.is_file());
        if !namespaces_ok || !files_ok {
            return false;
        }
        let Some(ip) = sandbox.ip else { return true };
        let address_ok = matches!(self.ipam.lookup(&sandbox.uid), Ok(Some(owned)) if owned == ip);
        let veth_ok =
            matches!(link::index_of(self.host.as_ref(), &link::host_veth_name(&sandbox.uid)).await, Ok(Some(_)));
        address_ok && veth_ok
    }

    /// Removes whatever exists of the uid's sandbox, in an order that leaves it findable if
    /// interrupted (the record last).
    async fn remove(&self, uid: &str, address: Address) -> Result<(), NetError> {
        let dir = self.sandbox_dir(uid);
        // The holder named by the record or, after a crash halfway through setup, the file.
        let recorded = self.record(uid).and_then(|s| s.holder);
        for h in recorded.into_iter().chain(netns::Holder::read(&dir)) {
            h.kill();
        }
        // Pins of earlier versions: each unmount waits for an RCU grace period, so off the
        // async threads, where many teardowns at once overlap their waits.
        let unpinned = tokio::task::spawn_blocking(move || -> Result<(), NetError> {
            remove_file_if_exists(&dir.join(netns::HOLDER_FILE))?;
            for kind in netns::KINDS {
                netns::unpin(&dir.join(kind))?;
            }
            remove_dir_if_exists(&dir)
        })
        .await;
        match unpinned {
            Ok(result) => result?,
            Err(e) => {
                return Err(NetError::Io {
                    op: "unmount namespaces of",
                    path: self.sandbox_dir(uid),
                    source: io::Error::other(e),
                })
            }
        }
        // Once unheld, the namespace dies and takes the veth pair with it; the kernel does
        // that in batches, far cheaper than deleting links one by one. The address is only
        // released once the link is gone: if something still held the namespace, the link is
        // deleted here so no pod is left on the bridge with an address handed out again.
        let veth = link::host_veth_name(uid);
        if !link::wait_gone(self.host.as_ref(), &veth, VETH_GONE_TIMEOUT).await? {
            tracing::warn!(uid, link = %veth, "pod namespace still held after teardown; deleting its link");
            link::delete(self.host.as_ref(), &veth).await?;
        }
        if address == Address::Release {
            self.ipam.release(uid).map_err(NetError::Address)?;
        }
        let pod_dir = self.pod_dir(uid);
        for name in POD_FILES {
            remove_file_if_exists(&pod_dir.join(name))?;
        }
        // The pod directory may still hold volumes owned by others; only an empty one goes.
        let _ = std::fs::remove_dir(&pod_dir);
        remove_file_if_exists(&self.record_path(uid))?;
        self.records.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
        Ok(())
    }

    fn load_records(&self) -> Result<(), NetError> {
        let dir = self.cfg.state_dir.join("sandboxes");
        let rd = std::fs::read_dir(&dir).map_err(io_err("read directory", &dir))?;
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        for entry in rd {
            let entry = entry.map_err(io_err("read directory", &dir))?;
            let path = entry.path();
            let Some(uid) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let parsed = std::fs::read(&path).map_err(io_err("read", &path)).and_then(|b| {
                serde_json::from_slice::<Sandbox>(&b).map_err(|source| NetError::Record { path: path.clone(), source })
            });
            match parsed {
                Ok(sandbox) if sandbox.uid == uid => {
                    records.insert(uid.to_string(), sandbox);
                }
                // Unreadable: treated as a leftover and removed with the rest of that uid.
                Ok(_) => tracing::warn!(path = %path.display(), "sandbox record names another uid; ignoring it"),
                Err(e) => tracing::warn!(error = %e, "unreadable sandbox record; ignoring it"),
            }
        }
        Ok(())
    }

    /// Removes the parts of sandboxes whose setup never finished (no record): namespace
    /// directories, addresses, and veth ports on the bridge that belong to no known pod.
    async fn remove_leftovers(&self) -> Result<(), NetError> {
        let known: std::collections::HashSet<String> =
            self.records.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        let mut orphans: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let ns_root = self.cfg.run_dir.join("sandboxes");
        if let Ok(rd) = std::fs::read_dir(&ns_root) {
            orphans.extend(rd.flatten().filter_map(|e| e.file_name().to_str().map(str::to_string)));
        }
        orphans.extend(self.ipam.entries().map_err(NetError::Address)?.into_iter().map(|(_, owner)| owner));
        // Pod directories belong to the kubelet too (volumes); only our files there count.
        if let Ok(rd) = std::fs::read_dir(&self.cfg.pods_dir) {
            orphans.extend(
                rd.flatten()
                    .filter(|e| POD_FILES.iter().any(|f| e.path().join(f).exists()))
                    .filter_map(|e| e.file_name().to_str().map(str::to_string)),
            );
        }
        for uid in orphans.into_iter().filter(|u| !known.contains(u)) {
            if check_uid(&uid).is_err() {
                continue;
            }
            tracing::info!(uid = %uid, "removing the remains of an unfinished sandbox setup");
            self.remove(&uid, Address::Release).await?;
        }
        let wanted: std::collections::HashSet<String> = known.iter().map(|u| link::host_veth_name(u)).collect();
        for port in link::ports(self.host.as_ref(), self.bridge_index).await? {
            if port.starts_with("veth") && !wanted.contains(&port) {
                tracing::info!(link = %port, "removing a pod veth that belongs to no sandbox");
                link::delete(self.host.as_ref(), &port).await?;
            }
        }
        Ok(())
    }
}

/// Whether removing a sandbox frees its address or keeps it for the same pod's next setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Address {
    Release,
    Keep,
}

/// Pod uids name files and directories: refuse anything that could escape them.
fn check_uid(uid: &str) -> Result<(), NetError> {
    let ok = !uid.is_empty()
        && uid.len() <= 128
        && uid != "."
        && uid != ".."
        && uid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(NetError::InvalidUid(uid.to_string()))
    }
}

/// Writes through a temporary file and a rename, so a crash never leaves half a file.
fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), NetError> {
    replace_file(path, contents).map_err(io_err("write", path))
}

/// [`write_atomic`] for callers with errors of their own.
fn replace_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

fn remove_file_if_exists(path: &Path) -> Result<(), NetError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove", path)(e)),
        _ => Ok(()),
    }
}

fn remove_dir_if_exists(path: &Path) -> Result<(), NetError> {
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("remove directory", path)(e)),
        _ => Ok(()),
    }
}

/// Debug timing of a sandbox's setup steps (`RUST_LOG=k3rs::kubelet::timing=debug`).
struct Steps<'a> {
    uid: &'a str,
    at: std::time::Instant,
}

impl<'a> Steps<'a> {
    fn new(uid: &'a str) -> Self {
        Steps { uid, at: std::time::Instant::now() }
    }

    fn done(&mut self, step: &str) {
        let ms = self.at.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(target: "k3rs::kubelet::timing", uid = self.uid, step, ms, "sandbox step");
        self.at = std::time::Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_that_escape_paths_are_refused() {
        assert!(check_uid("0b8f2a4e-1d2c-4b7e-9f00-123456789abc").is_ok());
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\0"] {
            assert!(check_uid(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hostname_is_spec_hostname_or_truncated_name() {
        assert_eq!(pod_hostname(Some("h"), "name"), "h");
        assert_eq!(pod_hostname(Some(""), "name"), "name");
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(pod_hostname(None, &long), "a".repeat(62));
    }

    #[test]
    fn request_from_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0", "namespace": "prod", "uid": "u-1"},
            "spec": {"containers": [], "subdomain": "web", "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet",
                     "hostAliases": [{"ip": "1.2.3.4", "hostnames": ["a"]}]}
        }))
        .unwrap();
        let req = SandboxRequest::from_pod(&pod, "node1");
        assert_eq!(req.uid, "u-1");
        assert_eq!(req.hostname, "web-0");
        assert_eq!(req.subdomain.as_deref(), Some("web"));
        assert!(req.host_network && !req.host_ipc);
        assert_eq!(req.dns_policy, "ClusterFirstWithHostNet");
        assert_eq!(req.host_aliases.len(), 1);
        assert_eq!(req.node_hostname, "node1");
    }

    use super::guard::FakeNft;
    use super::link::fake::FakeNetlink;

    fn config_in(dir: &Path) -> NetConfig {
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        let mut cfg = NetConfig::new(
            &DataDir::new(dir),
            c("10.42.0.0/24"),
            c("10.42.0.0/16"),
            c("10.43.0.0/16"),
            "10.43.0.10".parse().unwrap(),
            "cluster.local",
        );
        cfg.resolv_conf = dir.join("resolv.conf");
        cfg.hosts_file = dir.join("hosts");
        cfg
    }

    #[tokio::test]
    async fn a_new_node_gets_its_bridge_guard_and_forwarding() {
        let dir = tempfile::tempdir().unwrap();
        let nl = Arc::new(FakeNetlink::default());
        let nft = FakeNft::default();
        let net = PodNetwork::with(config_in(dir.path()), nl.clone(), &nft).await.unwrap();
        assert!(net.list().is_empty());
        assert_eq!(*nft.applied.lock().unwrap(), [guard::ruleset(DEFAULT_BRIDGE)]);
        let st = nl.state();
        assert!(st.links[DEFAULT_BRIDGE].up);
        assert_eq!(st.mtu[DEFAULT_BRIDGE], 1500);
        assert!(st.addresses.contains(&(DEFAULT_BRIDGE.to_string(), "10.42.0.1".parse().unwrap(), 24)));
        assert!(st.forwarding.contains(DEFAULT_BRIDGE));
    }

    #[tokio::test]
    async fn an_invalid_configuration_touches_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config_in(dir.path());
        cfg.mtu = 10;
        let (nl, nft) = (Arc::new(FakeNetlink::default()), FakeNft::default());
        assert!(matches!(PodNetwork::with(cfg, nl.clone(), &nft).await, Err(NetError::InvalidConfig(_))));
        assert!(nl.state().changes.is_empty() && nft.applied.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_restart_keeps_finished_sandboxes_and_removes_what_unfinished_ones_left() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_in(dir.path());
        // A finished sandbox (its record), and the remains of one whose setup never finished:
        // its namespace directory, its address, its veth on the bridge.
        let kept = Sandbox {
            uid: "kept".into(),
            ip: Some("10.42.0.5".parse().unwrap()),
            netns: None,
            ipc: None,
            uts: None,
            holder: None,
            hosts: cfg.pods_dir.join("kept/etc-hosts"),
            hostname: cfg.pods_dir.join("kept/etc-hostname"),
            resolv_conf: cfg.pods_dir.join("kept/resolv.conf"),
        };
        std::fs::create_dir_all(cfg.state_dir.join("sandboxes")).unwrap();
        std::fs::write(cfg.state_dir.join("sandboxes/kept.json"), serde_json::to_vec(&kept).unwrap()).unwrap();
        std::fs::create_dir_all(cfg.run_dir.join("sandboxes/lost")).unwrap();
        let ipam = ipam::Ipam::open(cfg.state_dir.join("ipam"), cfg.pod_cidr).unwrap();
        let lost_ip = ipam.allocate("lost").unwrap();
        let nl = Arc::new(FakeNetlink::default());
        let bridge = nl.put(DEFAULT_BRIDGE, None);
        nl.put(&link::host_veth_name("kept"), Some(bridge));
        nl.put(&link::host_veth_name("lost"), Some(bridge));
        nl.put("veth-stray", Some(bridge));
        nl.put("tap0", Some(bridge));

        let net = PodNetwork::with(cfg.clone(), nl.clone(), &FakeNft::default()).await.unwrap();
        assert_eq!(net.list(), [kept]);
        let mut left: Vec<String> = nl.state().links.keys().cloned().collect();
        left.sort();
        let mut want = vec![DEFAULT_BRIDGE.to_string(), link::host_veth_name("kept"), "tap0".to_string()];
        want.sort();
        assert_eq!(left, want, "pod veths of no sandbox go, other ports stay");
        assert!(!cfg.run_dir.join("sandboxes/lost").exists());
        assert!(ipam.entries().unwrap().iter().all(|(ip, _)| *ip != lost_ip), "the address is free again");
        // Tearing down an unknown pod is fine; a finished one loses its link (with its
        // namespace: the kernel removes it) and its address.
        net.teardown("never-seen").await.unwrap();
        nl.state().vanishing.insert(link::host_veth_name("kept"));
        net.teardown("kept").await.unwrap();
        assert!(!nl.state().changes.iter().any(|c| c.contains(&link::host_veth_name("kept"))));
        assert!(net.list().is_empty());
        assert!(!nl.state().links.contains_key(&link::host_veth_name("kept")));
        assert!(!cfg.state_dir.join("sandboxes/kept.json").exists());
        assert!(matches!(net.teardown("../x").await, Err(NetError::InvalidUid(_))));
    }

    #[test]
    fn config_validation() {
        let data = DataDir::new("/tmp/x");
        let c = |s: &str| s.parse::<Cidr>().unwrap();
        let good = NetConfig::new(
            &data,
            c("10.42.0.0/24"),
            c("10.42.0.0/16"),
            c("10.43.0.0/16"),
            "10.43.0.10".parse().unwrap(),
            "cluster.local",
        );
        assert!(good.validate().is_ok());
        assert_eq!(good.state_dir, data.network());
        let mut bad = good.clone();
        bad.pod_cidr = c("10.44.0.0/24");
        assert!(bad.validate().is_err());
        let mut bad = good.clone();
        bad.service_cidr = c("10.42.128.0/20");
        assert!(bad.validate().is_err());
        let mut bad = good.clone();
        bad.bridge = "a-very-long-bridge-name".into();
        assert!(bad.validate().is_err());
        let mut bad = good;
        bad.pod_cidr = c("10.42.0.0/31");
        assert!(bad.validate().is_err());
    }
}
