//! The typed configuration of `k3rs server`, one part per component, built and validated by
//! the command line (`crate::cli::config`) before the server touches anything. Values here
//! are always valid: components take them as they are.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use super::components::Disabled;
use super::layout::DataDir;
use crate::util::cidr::Cidr;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/k3rs";
pub const DEFAULT_HTTPS_LISTEN_PORT: u16 = 6443;
pub const DEFAULT_BIND_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
pub const DEFAULT_WRITE_KUBECONFIG: &str = "/etc/k3rs/k3rs.yaml";
/// The kubeconfig holds admin credentials: readable by its owner only unless asked.
pub const DEFAULT_WRITE_KUBECONFIG_MODE: u32 = 0o600;
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";
pub const DEFAULT_CLUSTER_DNS: &str = "10.43.0.10";
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
pub const DEFAULT_INGRESS_HTTP_PORT: u16 = 80;
pub const DEFAULT_INGRESS_HTTPS_PORT: u16 = 443;
/// Registry mirrors and credentials, in k3s' `registries.yaml` format.
pub const DEFAULT_PRIVATE_REGISTRY: &str = "/etc/k3rs/registries.yaml";
/// k3s' snapshot schedule: twice a day, at midnight and noon.
pub const DEFAULT_ETCD_SNAPSHOT_SCHEDULE_CRON: &str = "0 */12 * * *";
/// How many scheduled snapshots are kept.
pub const DEFAULT_ETCD_SNAPSHOT_RETENTION: u32 = 5;
/// The name prefix of scheduled snapshots.
pub const DEFAULT_ETCD_SNAPSHOT_NAME: &str = "etcd-snapshot";
/// The name prefix of `k3rs etcd-snapshot save`'s snapshots (k3s' `--name` default).
pub const DEFAULT_ON_DEMAND_SNAPSHOT_NAME: &str = "on-demand";

/// Everything `k3rs server` was configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    pub data_dir: DataDir,
    /// Debug logging (unless `RUST_LOG` says otherwise).
    pub debug: bool,
    /// Only the control plane: no kubelet on this machine.
    pub disable_agent: bool,
    /// No NetworkPolicy enforcement on the node (k3s' `--disable-network-policy`).
    pub disable_network_policy: bool,
    pub datastore: DatastoreConfig,
    pub disabled: Disabled,
    pub apiserver: ApiServerConfig,
    pub network: NetworkConfig,
    pub node: NodeConfig,
    /// The registries file (`--private-registry`); a missing file configures nothing.
    pub private_registry: PathBuf,
    /// The in-process ingress' ports (unless `--disable ingress`).
    pub ingress: IngressPorts,
    /// The controllers that run, by name (`--kube-controller-manager-arg=controllers=...`).
    pub controllers: Vec<&'static str>,
    /// The node lifecycle controller's grace periods and rates.
    pub node_lifecycle: crate::controllers::nodelifecycle::Config,
    /// The controllers' settings (`--kube-controller-manager-arg=terminated-pod-gc-threshold=...`).
    pub controller_settings: crate::controllers::Settings,
    /// Snapshots of the embedded datastore.
    pub snapshots: SnapshotConfig,
    /// `--cluster-reset`: replace the embedded datastore with this snapshot and exit.
    pub cluster_reset_restore_path: Option<PathBuf>,
}

impl ServerConfig {
    /// The defaults, for a data dir and node name; what `k3rs server` runs with when given
    /// nothing else.
    pub fn with_defaults(data_dir: impl Into<PathBuf>, node_name: impl Into<String>) -> ServerConfig {
        ServerConfig {
            data_dir: DataDir::new(data_dir),
            debug: false,
            disable_agent: false,
            disable_network_policy: false,
            datastore: DatastoreConfig::Embedded,
            disabled: Disabled::default(),
            apiserver: ApiServerConfig::default(),
            network: NetworkConfig::default(),
            node: NodeConfig { name: node_name.into(), ip: None },
            private_registry: PathBuf::from(DEFAULT_PRIVATE_REGISTRY),
            ingress: IngressPorts::default(),
            controllers: crate::controllers::CONTROLLERS.iter().map(|r| r.name).collect(),
            node_lifecycle: Default::default(),
            controller_settings: crate::controllers::Settings::default(),
            snapshots: SnapshotConfig::default(),
            cluster_reset_restore_path: None,
        }
    }
}

/// Snapshots of the embedded datastore: where they go and the server's schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// No scheduled snapshots (`--etcd-disable-snapshots`).
    pub disabled: bool,
    pub schedule: crate::domain::cron::Schedule,
    /// The schedule as given, for logs.
    pub schedule_text: String,
    /// Scheduled snapshots to keep; 0 keeps all.
    pub retention: u32,
    /// `--etcd-snapshot-dir`; `None`: `<data-dir>/server/db/snapshots`.
    pub dir: Option<PathBuf>,
    /// Name prefix of scheduled snapshots.
    pub name: String,
}

impl SnapshotConfig {
    /// The snapshot directory for this data dir.
    pub fn dir_in(&self, data_dir: &DataDir) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| data_dir.snapshots())
    }
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            disabled: false,
            // A fixed literal, covered by the tests below.
            schedule: crate::domain::cron::Schedule::parse(DEFAULT_ETCD_SNAPSHOT_SCHEDULE_CRON)
                .expect("default snapshot schedule"),
            schedule_text: DEFAULT_ETCD_SNAPSHOT_SCHEDULE_CRON.to_string(),
            retention: DEFAULT_ETCD_SNAPSHOT_RETENTION,
            dir: None,
            name: DEFAULT_ETCD_SNAPSHOT_NAME.to_string(),
        }
    }
}

/// Where the cluster state is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatastoreConfig {
    /// SQLite at `<data-dir>/server/db/state.db`.
    Embedded,
    /// An external etcd cluster.
    Etcd(EtcdConfig),
}

/// How to reach an external etcd. Invariants (checked when built from the command line):
/// all endpoints have one scheme; `https://` ones come with `ca_file`; the client
/// certificate and key come together; no TLS file is given for `http://`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http(s)://host:port` URLs.
    pub endpoints: Vec<String>,
    /// The CA that signed etcd's server certificate.
    pub ca_file: Option<PathBuf>,
    /// The client certificate to present, and its key.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// The Kubernetes API server: where it listens, and the admin kubeconfig it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiServerConfig {
    pub https_listen_port: u16,
    pub bind_address: IpAddr,
    pub write_kubeconfig: PathBuf,
    /// Permission bits of the written kubeconfig.
    pub write_kubeconfig_mode: u32,
    /// Extra names of the serving certificate: lowercase DNS names (a leading `*.` allowed)
    /// and IP addresses in canonical form, without duplicates.
    pub tls_san: Vec<String>,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            https_listen_port: DEFAULT_HTTPS_LISTEN_PORT,
            bind_address: DEFAULT_BIND_ADDRESS,
            write_kubeconfig: PathBuf::from(DEFAULT_WRITE_KUBECONFIG),
            write_kubeconfig_mode: DEFAULT_WRITE_KUBECONFIG_MODE,
            tls_san: Vec::new(),
        }
    }
}

/// Cluster networking. Invariants (checked when built from the command line): the two
/// networks do not overlap, and `cluster_dns` is a usable address in `service_cidr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Pod addresses.
    pub cluster_cidr: Cidr,
    /// Service (ClusterIP) addresses.
    pub service_cidr: Cidr,
    /// The cluster DNS service's address.
    pub cluster_dns: IpAddr,
    pub cluster_domain: String,
    /// The node's resolv.conf (`--resolv-conf`); `None`: chosen as k3s does
    /// ([`crate::dns::upstream::choose`]).
    pub resolv_conf: Option<PathBuf>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        // These literals are fixed and covered by the tests below.
        NetworkConfig {
            cluster_cidr: DEFAULT_CLUSTER_CIDR.parse().expect("default cluster CIDR"),
            service_cidr: DEFAULT_SERVICE_CIDR.parse().expect("default service CIDR"),
            cluster_dns: DEFAULT_CLUSTER_DNS.parse().expect("default cluster DNS"),
            cluster_domain: DEFAULT_CLUSTER_DOMAIN.to_string(),
            resolv_conf: None,
        }
    }
}

/// Where the ingress listens, on all addresses; 0 is any free port.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct IngressPorts {
    pub http: u16,
    pub https: u16,
}

impl Default for IngressPorts {
    fn default() -> Self {
        IngressPorts { http: DEFAULT_INGRESS_HTTP_PORT, https: DEFAULT_INGRESS_HTTPS_PORT }
    }
}

/// This machine as a Kubernetes node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub name: String,
    /// `None`: chosen from the host's interfaces when the node starts.
    pub ip: Option<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_consistent() {
        let n = NetworkConfig::default();
        assert!(n.service_cidr.contains(n.cluster_dns));
        assert!(!n.service_cidr.overlaps(&n.cluster_cidr));
        let c = ServerConfig::with_defaults("/tmp/x", "node-a");
        assert_eq!(c.data_dir.state_db(), PathBuf::from("/tmp/x/server/db/state.db"));
        assert_eq!(c.apiserver.https_listen_port, 6443);
        assert!(c.apiserver.tls_san.is_empty());
        assert_eq!(c.snapshots.dir_in(&c.data_dir), PathBuf::from("/tmp/x/server/db/snapshots"));
        assert_eq!(c.snapshots.retention, 5);
    }
}
