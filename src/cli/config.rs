//! Builds the [`ServerConfig`] of `k3rs server` from its four sources and validates it.
//!
//! Every setting is a flag name (`data-dir`, `https-listen-port`, ...), and can come from, in
//! rising precedence: the default, the config file (`/etc/k3rs/config.yaml`), the drop-in
//! files beside it (`config.yaml.d/*.yaml`, in lexical order, later overriding earlier), the
//! environment (`K3RS_DATA_DIR`, ...), and the command line. Every value is checked in the
//! source it came from, even when a higher source overrides it, so a typo in a file never
//! waits for the day the override is removed. The first problem becomes a [`ConfigError`]
//! that names the source and the key; nothing has been bound or written by then.
//!
//! Reading files and the process environment is kept apart from [`resolve`], which is a
//! pure function of its inputs and is tested with plain data.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::server::components::{self, Component, Disabled};
use crate::server::config::{
    ApiServerConfig, DatastoreConfig, EtcdConfig, IngressPorts, NetworkConfig, NodeConfig, ServerConfig,
    SnapshotConfig, DEFAULT_BIND_ADDRESS, DEFAULT_CLUSTER_CIDR, DEFAULT_CLUSTER_DOMAIN, DEFAULT_DATA_DIR,
    DEFAULT_ETCD_SNAPSHOT_NAME, DEFAULT_ETCD_SNAPSHOT_RETENTION, DEFAULT_HTTPS_LISTEN_PORT, DEFAULT_INGRESS_HTTPS_PORT,
    DEFAULT_INGRESS_HTTP_PORT, DEFAULT_PRIVATE_REGISTRY, DEFAULT_SERVICE_CIDR, DEFAULT_WRITE_KUBECONFIG,
    DEFAULT_WRITE_KUBECONFIG_MODE,
};
use crate::server::layout::DataDir;
use crate::util::cidr::Cidr;

/// The config file read when neither `--config` nor `K3RS_CONFIG_FILE` names one.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/k3rs/config.yaml";
/// The environment variable that names the config file.
pub const CONFIG_FILE_ENV: &str = "K3RS_CONFIG_FILE";
/// Every environment variable k3rs reads starts with this.
pub const ENV_PREFIX: &str = "K3RS_";
/// Other names of settings in the environment: k3s' names for its kubeconfig flags
/// (`K3S_KUBECONFIG_MODE`, `K3S_KUBECONFIG_OUTPUT`), which its installer and users set. The
/// setting's own `K3RS_<FLAG>` wins over its alias.
pub const ENV_ALIASES: [(&str, Key); 2] =
    [("K3RS_KUBECONFIG_MODE", Key::WriteKubeconfigMode), ("K3RS_KUBECONFIG_OUTPUT", Key::WriteKubeconfig)];

/// Where a setting came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    /// The environment variable's name.
    Env(String),
    CommandLine,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(path) => write!(f, "{}", path.display()),
            Source::Env(name) => f.write_str(name),
            Source::CommandLine => f.write_str("command line"),
        }
    }
}

/// A configuration problem: `<source>: <key>: <problem>`, always one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub origin: Source,
    /// The setting's name; `None` for problems with a whole file.
    pub key: Option<String>,
    pub problem: String,
}

impl ConfigError {
    fn new(origin: &Source, key: Option<&str>, problem: impl Into<String>) -> Self {
        ConfigError { origin: origin.clone(), key: key.map(str::to_string), problem: problem.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match &self.key {
            Some(key) => format!("{}: {}: {}", self.origin, key, self.problem),
            None => format!("{}: {}", self.origin, self.problem),
        };
        // Messages embed text from files and libraries; the contract is one line.
        f.write_str(&one_line(&text))
    }
}

impl std::error::Error for ConfigError {}

fn one_line(text: &str) -> String {
    text.split(['\n', '\r']).map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The settings of `k3rs server`. The flag, config-file key and environment variable of
/// each are derived from [`Key::name`].
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    DataDir,
    HttpsListenPort,
    BindAddress,
    NodeIp,
    NodeName,
    WriteKubeconfig,
    WriteKubeconfigMode,
    TlsSan,
    ClusterCidr,
    ServiceCidr,
    ClusterDns,
    ClusterDomain,
    ResolvConf,
    PrivateRegistry,
    Disable,
    DatastoreEndpoint,
    DatastoreCafile,
    DatastoreCertfile,
    DatastoreKeyfile,
    DisableAgent,
    DisableNetworkPolicy,
    KubeControllerManagerArg,
    IngressHttpPort,
    IngressHttpsPort,
    EtcdDisableSnapshots,
    EtcdSnapshotScheduleCron,
    EtcdSnapshotRetention,
    EtcdSnapshotDir,
    EtcdSnapshotName,
    ClusterReset,
    ClusterResetRestorePath,
    Debug,
}

impl Key {
    pub const ALL: [Key; 32] = [
        Key::DataDir,
        Key::HttpsListenPort,
        Key::BindAddress,
        Key::NodeIp,
        Key::NodeName,
        Key::WriteKubeconfig,
        Key::WriteKubeconfigMode,
        Key::TlsSan,
        Key::ClusterCidr,
        Key::ServiceCidr,
        Key::ClusterDns,
        Key::ClusterDomain,
        Key::ResolvConf,
        Key::PrivateRegistry,
        Key::Disable,
        Key::DatastoreEndpoint,
        Key::DatastoreCafile,
        Key::DatastoreCertfile,
        Key::DatastoreKeyfile,
        Key::DisableAgent,
        Key::DisableNetworkPolicy,
        Key::KubeControllerManagerArg,
        Key::IngressHttpPort,
        Key::IngressHttpsPort,
        Key::EtcdDisableSnapshots,
        Key::EtcdSnapshotScheduleCron,
        Key::EtcdSnapshotRetention,
        Key::EtcdSnapshotDir,
        Key::EtcdSnapshotName,
        Key::ClusterReset,
        Key::ClusterResetRestorePath,
        Key::Debug,
    ];

    /// The flag name without dashes, which is also the config-file key.
    pub fn name(self) -> &'static str {
        match self {
            Key::DataDir => "data-dir",
            Key::HttpsListenPort => "https-listen-port",
            Key::BindAddress => "bind-address",
            Key::NodeIp => "node-ip",
            Key::NodeName => "node-name",
            Key::WriteKubeconfig => "write-kubeconfig",
            Key::WriteKubeconfigMode => "write-kubeconfig-mode",
            Key::TlsSan => "tls-san",
            Key::ClusterCidr => "cluster-cidr",
            Key::ServiceCidr => "service-cidr",
            Key::ClusterDns => "cluster-dns",
            Key::ClusterDomain => "cluster-domain",
            Key::ResolvConf => "resolv-conf",
            Key::PrivateRegistry => "private-registry",
            Key::Disable => "disable",
            Key::DatastoreEndpoint => "datastore-endpoint",
            Key::DatastoreCafile => "datastore-cafile",
            Key::DatastoreCertfile => "datastore-certfile",
            Key::DatastoreKeyfile => "datastore-keyfile",
            Key::DisableAgent => "disable-agent",
            Key::DisableNetworkPolicy => "disable-network-policy",
            Key::KubeControllerManagerArg => "kube-controller-manager-arg",
            Key::IngressHttpPort => "ingress-http-port",
            Key::IngressHttpsPort => "ingress-https-port",
            Key::EtcdDisableSnapshots => "etcd-disable-snapshots",
            Key::EtcdSnapshotScheduleCron => "etcd-snapshot-schedule-cron",
            Key::EtcdSnapshotRetention => "etcd-snapshot-retention",
            Key::EtcdSnapshotDir => "etcd-snapshot-dir",
            Key::EtcdSnapshotName => "etcd-snapshot-name",
            Key::ClusterReset => "cluster-reset",
            Key::ClusterResetRestorePath => "cluster-reset-restore-path",
            Key::Debug => "debug",
        }
    }

    /// `K3RS_` and the name in upper snake case.
    pub fn env_var(self) -> String {
        env_var_for(self.name())
    }

    pub fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Settings that take several values: a list in a config file, repeated or
    /// comma-separated elsewhere.
    pub fn is_list(self) -> bool {
        matches!(self, Key::Disable | Key::TlsSan | Key::KubeControllerManagerArg)
    }
}

fn env_var_for(name: &str) -> String {
    format!("{ENV_PREFIX}{}", name.to_ascii_uppercase().replace('-', "_"))
}

/// A value as a source gave it, before it is parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Raw {
    Text(String),
    List(Vec<String>),
    Bool(bool),
}

/// One config file's name and contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub text: String,
}

/// Facts about the machine that defaults depend on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// `None` when it could not be read.
    pub hostname: Option<String>,
    /// Relative paths are taken from here.
    pub cwd: PathBuf,
}

/// A validated configuration and what is worth a warning once logging is up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub config: ServerConfig,
    pub warnings: Vec<String>,
}

/// The environment variables that start with [`ENV_PREFIX`].
pub type Env = BTreeMap<String, OsString>;

/// The process environment, filtered to k3rs' variables.
pub fn process_env() -> Env {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v)))
        .filter(|(k, _)| k.starts_with(ENV_PREFIX))
        .collect()
}

/// The config file to read, and who chose it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigLocation {
    pub path: PathBuf,
    /// [`Source::Default`] when nobody named a file: then a missing file is fine.
    pub origin: Source,
}

impl ConfigLocation {
    /// `--config` (when given) over `K3RS_CONFIG_FILE` over the default.
    pub fn choose(cli: Option<&Path>, env: &Env) -> Result<ConfigLocation, ConfigError> {
        if let Some(path) = cli {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::new(&Source::CommandLine, Some("config"), "must not be empty"));
            }
            return Ok(ConfigLocation { path: path.to_path_buf(), origin: Source::CommandLine });
        }
        if let Some(value) = env.get(CONFIG_FILE_ENV).filter(|v| !v.is_empty()) {
            return Ok(ConfigLocation { path: PathBuf::from(value), origin: Source::Env(CONFIG_FILE_ENV.into()) });
        }
        Ok(ConfigLocation { path: PathBuf::from(DEFAULT_CONFIG_FILE), origin: Source::Default })
    }

    /// The drop-in directory: the file's name with `.d` appended, beside it.
    pub fn dropin_dir(&self) -> PathBuf {
        let mut dir: OsString = self.path.as_os_str().to_owned();
        dir.push(".d");
        PathBuf::from(dir)
    }

    /// Reads the config file and then the drop-ins (`*.yaml`, `*.yml`) in lexical order.
    /// A missing file is fine unless it was named explicitly; a missing drop-in directory
    /// is always fine.
    pub fn load(&self) -> Result<Vec<ConfigFile>, ConfigError> {
        let mut files = Vec::new();
        match std::fs::read_to_string(&self.path) {
            Ok(text) => files.push(ConfigFile { path: self.path.clone(), text }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.origin == Source::Default => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::new(
                    &self.origin,
                    Some("config"),
                    format!("{}: no such file", self.path.display()),
                ));
            }
            Err(e) => {
                return Err(ConfigError::new(&Source::File(self.path.clone()), None, format!("cannot read: {e}")));
            }
        }
        let dir = self.dropin_dir();
        let dir_err =
            |e: std::io::Error| ConfigError::new(&Source::File(dir.clone()), None, format!("cannot read: {e}"));
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(files),
            Err(e) => return Err(dir_err(e)),
        };
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry.map_err(dir_err)?.path();
            let is_yaml = matches!(path.extension().and_then(OsStr::to_str), Some("yaml" | "yml"));
            // Follows symlinks, so a linked-in file counts and a dangling link is reported.
            if is_yaml && !path.is_dir() {
                paths.push(path);
            }
        }
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError::new(&Source::File(path.clone()), None, format!("cannot read: {e}")))?;
            files.push(ConfigFile { path, text });
        }
        Ok(files)
    }
}

/// Builds and validates the configuration from the config files (in order, lowest
/// precedence first), the `K3RS_*` environment and the command-line settings.
pub fn resolve(files: &[ConfigFile], env: &Env, cli: &[(Key, Raw)], host: &Host) -> Result<Resolved, ConfigError> {
    let mut settings = Settings::default();
    let mut warnings = Vec::new();
    for file in files {
        let origin = Source::File(file.path.clone());
        for (key, raw) in parse_file(file)? {
            settings.set(key, raw, &origin)?;
        }
    }
    for (name, value) in env {
        if name == CONFIG_FILE_ENV {
            continue;
        }
        let origin = Source::Env(name.clone());
        let Some(key) = env_key(name) else {
            if name.starts_with(ENV_PREFIX) {
                warnings.push(format!("ignoring {name}: k3rs has no such setting{}", suggest_env(name)));
            }
            continue;
        };
        if &key.env_var() != name && env.get(&key.env_var()).is_some_and(|v| !v.is_empty()) {
            // An alias, and the setting's own variable is set too: that one wins.
            continue;
        }
        // An empty variable counts as unset, as shells and unit files make them easily.
        if value.is_empty() {
            continue;
        }
        let text = value
            .to_str()
            .ok_or_else(|| ConfigError::new(&origin, Some(key.name()), "is not valid UTF-8"))?
            .to_string();
        settings.set(key, Raw::Text(text), &origin)?;
    }
    for (key, raw) in cli {
        settings.set(*key, raw.clone(), &Source::CommandLine)?;
    }
    let config = settings.build(host)?;
    Ok(Resolved { config, warnings })
}

/// The setting an environment variable names: `K3RS_<FLAG>` or an alias.
fn env_key(name: &str) -> Option<Key> {
    Key::ALL
        .into_iter()
        .find(|k| k.env_var() == name)
        .or_else(|| ENV_ALIASES.iter().find(|(alias, _)| *alias == name).map(|(_, k)| *k))
}

/// The admin kubeconfig that `k3rs server` writes as configured outside its command line:
/// the environment, else the config files, else the default; relative to `cwd` as the
/// server takes it. Nothing else is validated, and a config file that does not parse is
/// passed over (the server itself reports the problem).
pub fn configured_kubeconfig(env: &Env, cwd: &Path) -> PathBuf {
    // The setting's own variable, then its aliases (as `resolve` ranks them).
    let own = Key::WriteKubeconfig.env_var();
    let aliases = ENV_ALIASES.iter().filter(|(_, k)| *k == Key::WriteKubeconfig).map(|(name, _)| *name);
    let from_env = std::iter::once(own.as_str())
        .chain(aliases)
        .find_map(|name| env.get(name).filter(|v| !v.is_empty()).map(PathBuf::from));
    let from_files = || {
        let files = ConfigLocation::choose(None, env).and_then(|l| l.load()).ok()?;
        files.iter().rev().find_map(|f| {
            parse_file(f).ok()?.into_iter().rev().find_map(|(key, raw)| match (key, raw) {
                (Key::WriteKubeconfig, Raw::Text(t)) if !t.is_empty() => Some(PathBuf::from(t)),
                _ => None,
            })
        })
    };
    absolute_in(cwd, from_env.or_else(from_files).unwrap_or_else(|| PathBuf::from(DEFAULT_WRITE_KUBECONFIG)))
}

/// `path`, taken relative to `cwd` unless it is absolute.
fn absolute_in(cwd: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        cwd.join(path)
    }
}

/// Reads a config file into settings; null values are left out (unset in this file).
fn parse_file(file: &ConfigFile) -> Result<Vec<(Key, Raw)>, ConfigError> {
    let origin = Source::File(file.path.clone());
    let options = serde_saphyr::options! {
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        underscored_numbers_as_strings: true,
        with_snippet: false,
    };
    let map: Option<BTreeMap<String, serde_json::Value>> = serde_saphyr::from_str_with_options(&file.text, options)
        .map_err(|e| ConfigError::new(&origin, None, format!("not a YAML mapping of settings: {e}")))?;
    let mut out = Vec::new();
    for (name, value) in map.unwrap_or_default() {
        let key = Key::from_name(&name)
            .ok_or_else(|| ConfigError::new(&origin, Some(&name), format!("unknown key{}", suggest_key(&name))))?;
        let wrong_type =
            |found: &str| ConfigError::new(&origin, Some(&name), format!("expected {}, found {found}", expected(key)));
        let raw = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::Bool(b) => Raw::Bool(b),
            serde_json::Value::String(s) => Raw::Text(s),
            serde_json::Value::Number(n) if key == Key::WriteKubeconfigMode => {
                // A mode is octal digits; YAML read them as a number (or as octal `0o644`),
                // so take the scalar's own spelling instead.
                Raw::Text(scalar_text(&file.text, key.name()).unwrap_or_else(|| n.to_string()))
            }
            serde_json::Value::Number(n) => Raw::Text(n.to_string()),
            serde_json::Value::Array(_) if !key.is_list() => return Err(wrong_type("a list")),
            serde_json::Value::Array(items) => {
                let mut list = Vec::new();
                for item in items {
                    match item {
                        serde_json::Value::String(s) => list.push(s),
                        serde_json::Value::Number(n) => list.push(n.to_string()),
                        _ => return Err(wrong_type("a list with an item that is not a string")),
                    }
                }
                Raw::List(list)
            }
            serde_json::Value::Object(_) => return Err(wrong_type("a mapping")),
        };
        out.push((key, raw));
    }
    Ok(out)
}

/// The text of one top-level scalar as written, read back as a string.
fn scalar_text(yaml: &str, key: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct One {
        #[serde(rename = "write-kubeconfig-mode")]
        value: Option<String>,
    }
    debug_assert_eq!(key, Key::WriteKubeconfigMode.name());
    let one: One = serde_saphyr::from_str(yaml).ok()?;
    one.value
}

fn expected(key: Key) -> &'static str {
    match key {
        Key::Disable => "a component name or a list of them",
        Key::TlsSan => "a DNS name or IP address, or a list of them",
        Key::KubeControllerManagerArg => "a name=value flag or a list of them",
        Key::Debug | Key::DisableAgent | Key::DisableNetworkPolicy | Key::EtcdDisableSnapshots | Key::ClusterReset => {
            "true or false"
        }
        _ => "a single value",
    }
}

/// " (did you mean X?)" when a known name is close to `name`.
fn suggest_key(name: &str) -> String {
    let normalized = name.to_ascii_lowercase().replace('_', "-");
    let best = Key::ALL
        .into_iter()
        .map(|k| (strsim::levenshtein(&normalized, k.name()), k.name()))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, _)| *d <= 2);
    match best {
        Some((_, known)) => format!(" (did you mean {known}?)"),
        None => String::new(),
    }
}

fn suggest_env(name: &str) -> String {
    let best = Key::ALL
        .into_iter()
        .map(|k| k.env_var())
        .chain([CONFIG_FILE_ENV.to_string()])
        .map(|v| (strsim::levenshtein(name, &v), v))
        .min_by_key(|(d, _)| *d)
        .filter(|(d, _)| *d <= 2);
    match best {
        Some((_, known)) => format!(" (did you mean {known}?)"),
        None => String::new(),
    }
}

/// A value and the source that gave it.
#[derive(Clone, Debug)]
struct Sourced<T> {
    value: T,
    origin: Source,
}

/// The settings seen so far; each `set` overrides what a lower source gave.
#[derive(Default)]
struct Settings {
    data_dir: Option<Sourced<PathBuf>>,
    https_listen_port: Option<Sourced<u16>>,
    ingress_http_port: Option<Sourced<u16>>,
    ingress_https_port: Option<Sourced<u16>>,
    bind_address: Option<Sourced<IpAddr>>,
    node_ip: Option<Sourced<Option<IpAddr>>>,
    node_name: Option<Sourced<String>>,
    write_kubeconfig: Option<Sourced<PathBuf>>,
    write_kubeconfig_mode: Option<Sourced<u32>>,
    tls_san: Option<Sourced<Vec<String>>>,
    cluster_cidr: Option<Sourced<Cidr>>,
    service_cidr: Option<Sourced<Cidr>>,
    cluster_dns: Option<Sourced<IpAddr>>,
    cluster_domain: Option<Sourced<String>>,
    resolv_conf: Option<Sourced<PathBuf>>,
    private_registry: Option<Sourced<PathBuf>>,
    disable: Option<Sourced<Vec<Component>>>,
    /// Empty: the embedded datastore.
    datastore_endpoint: Option<Sourced<Vec<String>>>,
    datastore_cafile: Option<Sourced<PathBuf>>,
    datastore_certfile: Option<Sourced<PathBuf>>,
    datastore_keyfile: Option<Sourced<PathBuf>>,
    debug: Option<Sourced<bool>>,
    disable_agent: Option<Sourced<bool>>,
    disable_network_policy: Option<Sourced<bool>>,
    etcd_disable_snapshots: Option<Sourced<bool>>,
    etcd_snapshot_schedule_cron: Option<Sourced<(crate::domain::cron::Schedule, String)>>,
    etcd_snapshot_retention: Option<Sourced<u32>>,
    etcd_snapshot_dir: Option<Sourced<PathBuf>>,
    etcd_snapshot_name: Option<Sourced<String>>,
    cluster_reset: Option<Sourced<bool>>,
    cluster_reset_restore_path: Option<Sourced<PathBuf>>,
    /// The controllers that run and their settings.
    controller_manager: Option<Sourced<(Vec<&'static str>, crate::controllers::Settings)>>,
}

impl Settings {
    /// Parses `raw` as `key` and records it as coming from `origin`.
    fn set(&mut self, key: Key, raw: Raw, origin: &Source) -> Result<(), ConfigError> {
        let fail = |problem: String| ConfigError::new(origin, Some(key.name()), problem);
        let text = |raw: Raw| match raw {
            Raw::Text(t) => Ok(t),
            Raw::List(_) => Err(fail(format!("expected {}, found a list", expected(key)))),
            Raw::Bool(_) => Err(fail(format!("expected {}, found a boolean", expected(key)))),
        };
        fn at<T>(value: T, origin: &Source) -> Option<Sourced<T>> {
            Some(Sourced { value, origin: origin.clone() })
        }
        match key {
            Key::DataDir => self.data_dir = at(parse_path(&text(raw)?).map_err(fail)?, origin),
            Key::HttpsListenPort => self.https_listen_port = at(parse_port(&text(raw)?).map_err(fail)?, origin),
            Key::IngressHttpPort => self.ingress_http_port = at(parse_port_or_any(&text(raw)?).map_err(fail)?, origin),
            Key::IngressHttpsPort => {
                self.ingress_https_port = at(parse_port_or_any(&text(raw)?).map_err(fail)?, origin)
            }
            Key::BindAddress => self.bind_address = at(parse_ip(&text(raw)?).map_err(fail)?, origin),
            Key::NodeIp => {
                let t = text(raw)?;
                // Empty: choose from the interfaces, overriding an address a lower source set.
                let ip = if t.is_empty() { None } else { Some(parse_node_ip(&t).map_err(fail)?) };
                self.node_ip = at(ip, origin);
            }
            Key::NodeName => self.node_name = at(parse_dns_subdomain(&text(raw)?).map_err(fail)?, origin),
            Key::WriteKubeconfig => self.write_kubeconfig = at(parse_path(&text(raw)?).map_err(fail)?, origin),
            Key::WriteKubeconfigMode => self.write_kubeconfig_mode = at(parse_mode(&text(raw)?).map_err(fail)?, origin),
            Key::ClusterCidr => self.cluster_cidr = at(parse_cluster_cidr(&text(raw)?).map_err(fail)?, origin),
            Key::ServiceCidr => self.service_cidr = at(parse_service_cidr(&text(raw)?).map_err(fail)?, origin),
            Key::ClusterDns => self.cluster_dns = at(parse_ip(&text(raw)?).map_err(fail)?, origin),
            Key::ClusterDomain => self.cluster_domain = at(parse_dns_subdomain(&text(raw)?).map_err(fail)?, origin),
            Key::ResolvConf => self.resolv_conf = at(parse_path(&text(raw)?).map_err(fail)?, origin),
            Key::PrivateRegistry => self.private_registry = at(parse_path(&text(raw)?).map_err(fail)?, origin),
            Key::Disable => {
                let items = match raw {
                    Raw::Text(t) => vec![t],
                    Raw::List(items) => items,
                    Raw::Bool(_) => return Err(fail(format!("expected {}, found a boolean", expected(key)))),
                };
                self.disable = at(parse_components(&items).map_err(fail)?, origin);
            }
            Key::TlsSan => {
                let items = match raw {
                    Raw::Text(t) => vec![t],
                    Raw::List(items) => items,
                    Raw::Bool(_) => return Err(fail(format!("expected {}, found a boolean", expected(key)))),
                };
                self.tls_san = at(parse_tls_sans(&items).map_err(fail)?, origin);
            }
            Key::KubeControllerManagerArg => {
                let items = match raw {
                    Raw::Text(t) => vec![t],
                    Raw::List(items) => items,
                    Raw::Bool(_) => return Err(fail(format!("expected {}, found a boolean", expected(key)))),
                };
                self.controller_manager = at(parse_controller_manager_args(&items).map_err(fail)?, origin);
            }
            Key::DatastoreEndpoint => self.datastore_endpoint = at(parse_datastore(&text(raw)?).map_err(fail)?, origin),
            Key::DatastoreCafile => self.datastore_cafile = at(parse_path(&text(raw)?).map_err(fail)?, origin),
            Key::DatastoreCertfile => self.datastore_certfile = at(parse_path(&text(raw)?).map_err(fail)?, origin),
            Key::DatastoreKeyfile => self.datastore_keyfile = at(parse_path(&text(raw)?).map_err(fail)?, origin),
            Key::DisableAgent => {
                let on = match raw {
                    Raw::Bool(b) => b,
                    Raw::Text(t) => parse_bool(&t).map_err(fail)?,
                    Raw::List(_) => return Err(fail(format!("expected {}, found a list", expected(key)))),
                };
                self.disable_agent = at(on, origin);
            }
            Key::DisableNetworkPolicy | Key::EtcdDisableSnapshots | Key::ClusterReset => {
                let on = match raw {
                    Raw::Bool(b) => b,
                    Raw::Text(t) => parse_bool(&t).map_err(fail)?,
                    Raw::List(_) => return Err(fail(format!("expected {}, found a list", expected(key)))),
                };
                let slot = match key {
                    Key::DisableNetworkPolicy => &mut self.disable_network_policy,
                    Key::EtcdDisableSnapshots => &mut self.etcd_disable_snapshots,
                    _ => &mut self.cluster_reset,
                };
                *slot = at(on, origin);
            }
            Key::EtcdSnapshotScheduleCron => {
                let t = text(raw)?;
                let schedule = crate::domain::cron::Schedule::parse(&t)
                    .map_err(|e| fail(format!("{t:?} is not a cron schedule: {e}")))?;
                self.etcd_snapshot_schedule_cron = at((schedule, t), origin);
            }
            Key::EtcdSnapshotRetention => {
                self.etcd_snapshot_retention = at(parse_retention(&text(raw)?).map_err(fail)?, origin)
            }
            Key::EtcdSnapshotDir => self.etcd_snapshot_dir = at(parse_path(&text(raw)?).map_err(fail)?, origin),
            Key::EtcdSnapshotName => {
                let t = text(raw)?;
                crate::store::snapshots::check_name(&t).map_err(fail)?;
                self.etcd_snapshot_name = at(t, origin);
            }
            Key::ClusterResetRestorePath => {
                self.cluster_reset_restore_path = at(parse_path(&text(raw)?).map_err(fail)?, origin)
            }
            Key::Debug => {
                let on = match raw {
                    Raw::Bool(b) => b,
                    Raw::Text(t) => parse_bool(&t).map_err(fail)?,
                    Raw::List(_) => return Err(fail(format!("expected {}, found a list", expected(key)))),
                };
                self.debug = at(on, origin);
            }
        }
        Ok(())
    }

    /// Fills in defaults and checks the settings against each other.
    fn build(self, host: &Host) -> Result<ServerConfig, ConfigError> {
        let absolute = |p: PathBuf| absolute_in(&host.cwd, p);
        let data_dir = absolute(self.data_dir.map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), |s| s.value));

        let node_name = match self.node_name {
            Some(s) => s.value,
            None => default_node_name(host)?,
        };

        let default_cidr = |text: &str| {
            text.parse::<Cidr>().map(|c| Sourced { value: c, origin: Source::Default }).map_err(|e| {
                ConfigError::new(&Source::Default, None, format!("built-in default {text} is invalid: {e}"))
            })
        };
        let cluster_cidr = match self.cluster_cidr {
            Some(s) => s,
            None => default_cidr(DEFAULT_CLUSTER_CIDR)?,
        };
        let service_cidr = match self.service_cidr {
            Some(s) => s,
            None => default_cidr(DEFAULT_SERVICE_CIDR)?,
        };
        check_networks(&cluster_cidr, &service_cidr)?;
        let cluster_dns = match self.cluster_dns {
            Some(dns) => {
                check_cluster_dns(dns.value, service_cidr.value)
                    .map_err(|p| ConfigError::new(&dns.origin, Some(Key::ClusterDns.name()), p))?;
                dns.value
            }
            // As k3s does: the tenth address of the service network, whatever it is.
            None => service_cidr.value.nth(10).ok_or_else(|| {
                ConfigError::new(
                    &service_cidr.origin,
                    Some(Key::ServiceCidr.name()),
                    "has no room for the cluster DNS address",
                )
            })?,
        };

        let datastore = datastore_config(
            self.datastore_endpoint,
            [self.datastore_cafile, self.datastore_certfile, self.datastore_keyfile]
                .map(|f| f.map(|s| Sourced { value: absolute(s.value), origin: s.origin })),
        )?;
        let cluster_reset_restore_path = cluster_reset(
            self.cluster_reset,
            self.cluster_reset_restore_path.map(|s| Sourced { value: absolute(s.value), origin: s.origin }),
            &datastore,
        )?;
        let mut snapshots = SnapshotConfig {
            disabled: self.etcd_disable_snapshots.is_some_and(|s| s.value),
            retention: self.etcd_snapshot_retention.map_or(DEFAULT_ETCD_SNAPSHOT_RETENTION, |s| s.value),
            dir: self.etcd_snapshot_dir.map(|s| absolute(s.value)),
            name: self.etcd_snapshot_name.map_or_else(|| DEFAULT_ETCD_SNAPSHOT_NAME.to_string(), |s| s.value),
            ..SnapshotConfig::default()
        };
        if let Some(s) = self.etcd_snapshot_schedule_cron {
            (snapshots.schedule, snapshots.schedule_text) = s.value;
        }
        let (controllers, controller_settings) = match self.controller_manager {
            Some(s) => s.value,
            None => (
                crate::controllers::CONTROLLERS.iter().map(|r| r.name).collect(),
                crate::controllers::Settings::default(),
            ),
        };
        Ok(ServerConfig {
            data_dir: DataDir::new(data_dir),
            debug: self.debug.is_some_and(|s| s.value),
            disable_agent: self.disable_agent.is_some_and(|s| s.value),
            disable_network_policy: self.disable_network_policy.is_some_and(|s| s.value),
            datastore,
            disabled: Disabled::new(self.disable.map(|s| s.value).unwrap_or_default()),
            controllers,
            node_lifecycle: controller_settings.node_lifecycle,
            controller_settings,
            apiserver: ApiServerConfig {
                https_listen_port: self.https_listen_port.map_or(DEFAULT_HTTPS_LISTEN_PORT, |s| s.value),
                bind_address: self.bind_address.map_or(DEFAULT_BIND_ADDRESS, |s| s.value),
                write_kubeconfig: absolute(
                    self.write_kubeconfig.map_or_else(|| PathBuf::from(DEFAULT_WRITE_KUBECONFIG), |s| s.value),
                ),
                write_kubeconfig_mode: self.write_kubeconfig_mode.map_or(DEFAULT_WRITE_KUBECONFIG_MODE, |s| s.value),
                tls_san: self.tls_san.map(|s| s.value).unwrap_or_default(),
            },
            network: NetworkConfig {
                cluster_cidr: cluster_cidr.value,
                service_cidr: service_cidr.value,
                cluster_dns,
                cluster_domain: self.cluster_domain.map_or_else(|| DEFAULT_CLUSTER_DOMAIN.to_string(), |s| s.value),
                resolv_conf: self.resolv_conf.map(|s| absolute(s.value)),
            },
            node: NodeConfig { name: node_name, ip: self.node_ip.and_then(|s| s.value) },
            private_registry: absolute(
                self.private_registry.map_or_else(|| PathBuf::from(DEFAULT_PRIVATE_REGISTRY), |s| s.value),
            ),
            ingress: IngressPorts {
                http: self.ingress_http_port.map_or(DEFAULT_INGRESS_HTTP_PORT, |s| s.value),
                https: self.ingress_https_port.map_or(DEFAULT_INGRESS_HTTPS_PORT, |s| s.value),
            },
            snapshots,
            cluster_reset_restore_path,
        })
    }
}

/// The datastore: embedded without endpoints; otherwise etcd, with the TLS files its scheme
/// calls for and no others.
fn datastore_config(
    endpoints: Option<Sourced<Vec<String>>>,
    [ca, cert, key]: [Option<Sourced<PathBuf>>; 3],
) -> Result<DatastoreConfig, ConfigError> {
    let files = [(Key::DatastoreCafile, &ca), (Key::DatastoreCertfile, &cert), (Key::DatastoreKeyfile, &key)];
    let endpoints = endpoints.filter(|e| !e.value.is_empty());
    let https = endpoints.as_ref().is_some_and(|e| e.value.iter().all(|u| u.starts_with("https://")));
    if !https {
        if let Some((k, Some(file))) = files.iter().find(|(_, f)| f.is_some()) {
            return Err(ConfigError::new(
                &file.origin,
                Some(k.name()),
                "is only used with an https:// datastore-endpoint (an external etcd with TLS)",
            ));
        }
    }
    let Some(endpoints) = endpoints else { return Ok(DatastoreConfig::Embedded) };
    if https {
        if ca.is_none() {
            return Err(ConfigError::new(
                &endpoints.origin,
                Some(Key::DatastoreEndpoint.name()),
                "https:// endpoints need datastore-cafile, the CA that signed etcd's certificate",
            ));
        }
        match (&cert, &key) {
            (Some(c), None) => {
                return Err(ConfigError::new(&c.origin, Some(Key::DatastoreCertfile.name()), "needs datastore-keyfile"))
            }
            (None, Some(k)) => {
                return Err(ConfigError::new(&k.origin, Some(Key::DatastoreKeyfile.name()), "needs datastore-certfile"))
            }
            _ => {}
        }
    }
    Ok(DatastoreConfig::Etcd(EtcdConfig {
        endpoints: endpoints.value,
        ca_file: ca.map(|s| s.value),
        cert_file: cert.map(|s| s.value),
        key_file: key.map(|s| s.value),
    }))
}

/// `--cluster-reset` restores a snapshot into the embedded datastore, so it needs one, and
/// an embedded datastore (an external etcd is restored with etcd's tools; SQLite has no
/// cluster membership to reset without a snapshot). The restore path alone is k3s' "invalid
/// flag use".
fn cluster_reset(
    reset: Option<Sourced<bool>>,
    path: Option<Sourced<PathBuf>>,
    datastore: &DatastoreConfig,
) -> Result<Option<PathBuf>, ConfigError> {
    let reset = reset.filter(|s| s.value);
    match (reset, path) {
        (None, None) => Ok(None),
        (None, Some(p)) => Err(ConfigError::new(
            &p.origin,
            Some(Key::ClusterResetRestorePath.name()),
            "invalid flag use: needs cluster-reset",
        )),
        (Some(r), _) if *datastore != DatastoreConfig::Embedded => Err(ConfigError::new(
            &r.origin,
            Some(Key::ClusterReset.name()),
            "the datastore is an external etcd (datastore-endpoint): its snapshots belong to the etcd cluster; restore them with etcdutl snapshot restore",
        )),
        (Some(r), None) => Err(ConfigError::new(
            &r.origin,
            Some(Key::ClusterReset.name()),
            "the embedded datastore has no cluster membership to reset; give cluster-reset-restore-path, the snapshot to restore",
        )),
        (Some(_), Some(p)) => Ok(Some(p.value)),
    }
}

/// The hostname, lowercased as Kubernetes node names must be.
fn default_node_name(host: &Host) -> Result<String, ConfigError> {
    let key = Some(Key::NodeName.name());
    let hostname = host
        .hostname
        .as_deref()
        .ok_or_else(|| ConfigError::new(&Source::Default, key, "cannot read the hostname; set --node-name"))?;
    parse_dns_subdomain(&hostname.to_ascii_lowercase()).map_err(|p| {
        ConfigError::new(&Source::Default, key, format!("the hostname is not a valid node name ({p}); set --node-name"))
    })
}

/// The two networks must be one family and disjoint. The blame goes to the one the user set
/// (the service network when both or neither were).
fn check_networks(cluster: &Sourced<Cidr>, service: &Sourced<Cidr>) -> Result<(), ConfigError> {
    let blame_cluster = service.origin == Source::Default && cluster.origin != Source::Default;
    let (blamed, key, other, other_key) = if blame_cluster {
        (cluster, Key::ClusterCidr, service, Key::ServiceCidr)
    } else {
        (service, Key::ServiceCidr, cluster, Key::ClusterCidr)
    };
    let fail = |problem: String| Err(ConfigError::new(&blamed.origin, Some(key.name()), problem));
    if blamed.value.is_ipv4() != other.value.is_ipv4() {
        let family = |c: &Cidr| if c.is_ipv4() { "IPv4" } else { "IPv6" };
        return fail(format!(
            "{} is {} but {} {} is {}; both must be the same family",
            blamed.value,
            family(&blamed.value),
            other_key.name(),
            other.value,
            family(&other.value)
        ));
    }
    if blamed.value.overlaps(&other.value) {
        return fail(format!("{} overlaps {} {}", blamed.value, other_key.name(), other.value));
    }
    Ok(())
}

/// The DNS address must be a usable address of the service network, not the one the
/// `kubernetes` service takes (the first).
fn check_cluster_dns(dns: IpAddr, service: Cidr) -> Result<(), String> {
    if !service.contains(dns) {
        return Err(format!("{dns} is outside service-cidr {service}"));
    }
    if dns == service.network() || (service.is_ipv4() && dns == service.last()) {
        return Err(format!("{dns} is not a usable address of service-cidr {service}"));
    }
    if Some(dns) == service.nth(1) {
        return Err(format!("{dns} is reserved for the kubernetes service (the first address of {service})"));
    }
    Ok(())
}

fn parse_path(text: &str) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(PathBuf::from(text))
}

fn parse_port(text: &str) -> Result<u16, String> {
    let bad = || format!("{text:?} is not a port number (1-65535)");
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

/// A port, or 0 for any free one.
fn parse_port_or_any(text: &str) -> Result<u16, String> {
    if text == "0" {
        return Ok(0);
    }
    parse_port(text).map_err(|_| format!("{text:?} is not a port number (0-65535)"))
}

fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse().map_err(|_| format!("{text:?} is not an IP address"))
}

fn parse_node_ip(text: &str) -> Result<IpAddr, String> {
    let ip = parse_ip(text)?;
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!("{ip} cannot be a node's address"));
    }
    Ok(ip)
}

fn parse_cluster_cidr(text: &str) -> Result<Cidr, String> {
    let cidr: Cidr = text.parse().map_err(|e| format!("{e}"))?;
    // Each node takes a /24 (IPv4) or /64 (IPv6) of it for its pods.
    let node_prefix = if cidr.is_ipv4() { 24 } else { 64 };
    if cidr.prefix_len() > node_prefix {
        return Err(format!("{cidr} is smaller than one node's pod network (/{node_prefix})"));
    }
    Ok(cidr)
}

fn parse_service_cidr(text: &str) -> Result<Cidr, String> {
    let cidr: Cidr = text.parse().map_err(|e| format!("{e}"))?;
    // kube-apiserver allocates service addresses from a bitmap of at most 2^20 entries.
    if cidr.host_bits() > 20 {
        return Err(format!(
            "{cidr} is too large: at most 20 host bits (/{} or longer)",
            cidr.prefix_len() + cidr.host_bits() - 20
        ));
    }
    // Room for the network address, the kubernetes service and the DNS service at .10.
    if cidr.host_bits() < 4 {
        return Err(format!("{cidr} is too small: at least 4 host bits"));
    }
    Ok(cidr)
}

/// Octal permission bits: `644`, `0644`, `0o644`.
fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    let bad = || format!("{text:?} is not an octal file mode such as 0600 or 644");
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(bad());
    }
    let mode = u32::from_str_radix(digits, 8).map_err(|_| bad())?;
    if mode > 0o777 {
        return Err(format!("{text:?} sets bits beyond the permissions (at most 0777)"));
    }
    Ok(mode)
}

/// Lowercase RFC 1123 DNS subdomain, as node names and the cluster domain must be.
fn parse_dns_subdomain(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty".into());
    }
    if text.len() > 253 {
        return Err(format!("{text:?} is longer than 253 characters"));
    }
    // Every label within DNS's limits too: these names are looked up and written to files.
    if !text.split('.').all(crate::domain::names::is_dns1123_label) {
        return Err(format!("{text:?} is not a lowercase DNS name (labels of a-z, 0-9 and '-', separated by '.')"));
    }
    Ok(text.to_string())
}

/// Component names, each item possibly comma-separated; unknown names are an error.
fn parse_components(items: &[String]) -> Result<Vec<Component>, String> {
    let mut out = Vec::new();
    for name in items.iter().flat_map(|i| i.split(',')).map(str::trim).filter(|n| !n.is_empty()) {
        let c = components::lookup(name)
            .ok_or_else(|| format!("unknown component {name:?} (can disable: {})", components::names()))?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// `--kube-controller-manager-arg` items, `name=value` as k3s passes them on: the
/// controllers that run, from upstream's `controllers=` list (`*`, `name`, `-name`), and
/// the controllers' settings (`terminated-pod-gc-threshold=`, `node-monitor-grace-period=`,
/// `node-startup-grace-period=`, `node-monitor-period=`); the controller manager's
/// other flags have no meaning here and are refused by name.
fn parse_controller_manager_args(
    items: &[String],
) -> Result<(Vec<&'static str>, crate::controllers::Settings), String> {
    let mut list: Vec<String> = Vec::new();
    let mut settings = crate::controllers::Settings::default();
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        let item = item.trim_start_matches('-');
        match item.split_once('=') {
            Some(("controllers", value)) => {
                list = value.split(',').map(str::trim).filter(|v| !v.is_empty()).map(String::from).collect()
            }
            Some((name @ ("node-monitor-grace-period" | "node-startup-grace-period" | "node-monitor-period"), value)) => {
                let d = crate::domain::duration::parse_go_duration(value.trim())
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| format!("{name}: {value:?} is not a positive duration (e.g. 40s, 1m)"))?;
                let lifecycle = &mut settings.node_lifecycle;
                match name {
                    "node-monitor-grace-period" => lifecycle.node_monitor_grace_period = d,
                    "node-startup-grace-period" => lifecycle.node_startup_grace_period = d,
                    _ => lifecycle.node_monitor_period = d,
                }
            }
            Some(("terminated-pod-gc-threshold", value)) => {
                let n: i32 = value.trim().parse().map_err(|_| format!("terminated-pod-gc-threshold: {value:?} is not an integer"))?;
                // As upstream: zero or less keeps every terminated pod.
                settings.podgc.terminated_pod_gc_threshold = n.max(0) as usize;
            }
            Some((name, _)) => {
                return Err(format!(
                    "unsupported kube-controller-manager argument {name:?} (supported: controllers, terminated-pod-gc-threshold, node-monitor-grace-period, node-startup-grace-period, node-monitor-period)"
                ))
            }
            None => return Err(format!("{item:?}: expected name=value")),
        }
    }
    let selected = crate::controllers::select(&list)?;
    Ok((selected.iter().map(|r| r.name).collect(), settings))
}

/// Extra serving-certificate names, each item possibly comma-separated; normalized
/// (lowercase names, canonical addresses) and without duplicates.
fn parse_tls_sans(items: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for value in items.iter().flat_map(|i| i.split(',')).map(str::trim).filter(|v| !v.is_empty()) {
        let san = crate::pki::check_tls_san(value)?;
        if !out.contains(&san) {
            out.push(san);
        }
    }
    Ok(out)
}

/// A count of snapshots to keep; 0 keeps all.
pub(super) fn parse_retention(text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a number of snapshots to keep (0 keeps all)"));
    }
    text.parse().map_err(|_| format!("{text:?} is too large"))
}

fn parse_bool(text: &str) -> Result<bool, String> {
    match text {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{text:?} is not true or false")),
    }
}

/// Comma-separated etcd URLs, all with one scheme; empty for the embedded datastore.
fn parse_datastore(text: &str) -> Result<Vec<String>, String> {
    let endpoints = text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| check_etcd_url(e).map(|()| e.trim_end_matches('/').to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let https = endpoints.iter().filter(|e| e.starts_with("https://")).count();
    if https != 0 && https != endpoints.len() {
        return Err("mixes http:// and https:// endpoints; use one scheme for all".into());
    }
    Ok(endpoints)
}

fn check_etcd_url(url: &str) -> Result<(), String> {
    let usage =
        "expected http(s)://host:port of etcd (several comma-separated), or nothing for the embedded SQLite datastore";
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!("{url:?}: {usage}"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(format!("{url:?}: {scheme}:// datastores are not supported; {usage}"));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(format!("{url:?}: only scheme, host and port are allowed; {usage}"));
    }
    let (_host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, port) = v6.split_once("]:").ok_or_else(|| format!("{url:?}: missing port; {usage}"))?;
            addr.parse::<std::net::Ipv6Addr>().map_err(|_| format!("{url:?}: {addr:?} is not an IPv6 address"))?;
            (addr, port)
        }
        None => {
            let (host, port) = authority.rsplit_once(':').ok_or_else(|| format!("{url:?}: missing port; {usage}"))?;
            if host.is_empty() || host.contains(':') {
                return Err(format!("{url:?}: bad host (IPv6 addresses go in brackets); {usage}"));
            }
            (host, port)
        }
    };
    parse_port(port).map_err(|e| format!("{url:?}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::components::ETCD_API;

    fn host() -> Host {
        Host { hostname: Some("Edge-1".into()), cwd: PathBuf::from("/work/here") }
    }

    fn file(path: &str, text: &str) -> ConfigFile {
        ConfigFile { path: PathBuf::from(path), text: text.into() }
    }

    fn env(vars: &[(&str, &str)]) -> Env {
        vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect()
    }

    fn cli(args: &[(Key, &str)]) -> Vec<(Key, Raw)> {
        args.iter().map(|(k, v)| (*k, Raw::Text(v.to_string()))).collect()
    }

    fn ok(files: &[ConfigFile], e: &Env, c: &[(Key, Raw)]) -> ServerConfig {
        match resolve(files, e, c, &host()) {
            Ok(r) => r.config,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }

    fn err(files: &[ConfigFile], e: &Env, c: &[(Key, Raw)]) -> ConfigError {
        match resolve(files, e, c, &host()) {
            Ok(r) => panic!("expected an error, got {:?}", r.config),
            Err(e) => e,
        }
    }

    #[test]
    fn private_registry_defaults_as_k3s_and_is_taken_from_every_source() {
        assert_eq!(ok(&[], &Env::new(), &[]).private_registry, PathBuf::from("/etc/k3rs/registries.yaml"));
        let got = ok(&[], &Env::new(), &cli(&[(Key::PrivateRegistry, "mirrors.yaml")]));
        assert_eq!(got.private_registry, PathBuf::from("/work/here/mirrors.yaml"));
        let got = ok(&[], &env(&[("K3RS_PRIVATE_REGISTRY", "/srv/r.yaml")]), &[]);
        assert_eq!(got.private_registry, PathBuf::from("/srv/r.yaml"));
        let got = ok(&[file("/etc/k3rs/config.yaml", "private-registry: /opt/r.yaml\n")], &Env::new(), &[]);
        assert_eq!(got.private_registry, PathBuf::from("/opt/r.yaml"));
        let e = err(&[], &Env::new(), &cli(&[(Key::PrivateRegistry, "")]));
        assert!(e.to_string().contains("private-registry"), "{e}");
    }

    #[test]
    fn controller_manager_args_pick_controllers_and_settings() {
        let args = |items: &[&str]| {
            let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
            parse_controller_manager_args(&items)
        };
        let (on, settings) = args(&["controllers=*,-podgc", "terminated-pod-gc-threshold=100"]).unwrap();
        assert!(!on.contains(&"pod-garbage-collector-controller") && on.contains(&"garbage-collector-controller"));
        assert_eq!(settings.podgc.terminated_pod_gc_threshold, 100);
        let (on, settings) = args(&["--terminated-pod-gc-threshold=-1"]).unwrap();
        assert_eq!(on.len(), crate::controllers::CONTROLLERS.len());
        assert_eq!(settings.podgc.terminated_pod_gc_threshold, 0, "zero or less keeps them all");
        assert_eq!(args(&[]).unwrap().1.podgc.terminated_pod_gc_threshold, 12500);
        assert!(args(&["terminated-pod-gc-threshold=many"]).unwrap_err().contains("not an integer"));
        let (_, settings) = args(&["node-monitor-grace-period=20s", "node-startup-grace-period=1m30s"]).unwrap();
        assert_eq!(settings.node_lifecycle.node_monitor_grace_period, std::time::Duration::from_secs(20));
        assert_eq!(settings.node_lifecycle.node_startup_grace_period, std::time::Duration::from_secs(90));
        assert!(args(&["node-monitor-grace-period=soon"]).unwrap_err().contains("not a positive duration"));
        assert!(args(&["node-cidr-mask-size=24"]).unwrap_err().contains("unsupported"));
    }

    fn cli_err(key: Key, value: &str) -> String {
        err(&[], &Env::new(), &cli(&[(key, value)])).to_string()
    }

    #[test]
    fn snapshot_settings_come_from_every_source_and_are_checked() {
        let got = ok(&[], &Env::new(), &[]);
        assert_eq!(got.snapshots, SnapshotConfig::default());
        assert_eq!(got.snapshots.schedule_text, "0 */12 * * *");
        let text = "etcd-snapshot-schedule-cron: '*/5 * * * *'\netcd-snapshot-retention: 2\n\
                    etcd-disable-snapshots: true\netcd-snapshot-dir: snaps\netcd-snapshot-name: nightly\n";
        let got = ok(&[file("/f", text)], &env(&[("K3RS_ETCD_SNAPSHOT_RETENTION", "0")]), &[]);
        assert!(got.snapshots.disabled);
        assert_eq!(got.snapshots.schedule_text, "*/5 * * * *");
        assert_eq!(got.snapshots.schedule, crate::domain::cron::Schedule::parse("*/5 * * * *").unwrap());
        assert_eq!(got.snapshots.retention, 0, "the environment beats the file");
        assert_eq!(got.snapshots.dir, Some(PathBuf::from("/work/here/snaps")));
        assert_eq!(got.snapshots.dir_in(&got.data_dir), PathBuf::from("/work/here/snaps"));
        assert_eq!(got.snapshots.name, "nightly");
        let msg = cli_err(Key::EtcdSnapshotScheduleCron, "0 */12 * *");
        assert!(
            msg.starts_with("command line: etcd-snapshot-schedule-cron: \"0 */12 * *\" is not a cron schedule"),
            "{msg}"
        );
        let msg = cli_err(Key::EtcdSnapshotRetention, "-1");
        assert!(msg.contains("\"-1\" is not a number of snapshots to keep"), "{msg}");
        assert!(cli_err(Key::EtcdSnapshotName, "a/b").contains("is not a snapshot name"));
        assert!(cli_err(Key::EtcdDisableSnapshots, "maybe").contains("is not true or false"));
    }

    #[test]
    fn cluster_reset_needs_a_snapshot_and_the_embedded_datastore() {
        let reset = [(Key::ClusterReset, Raw::Bool(true)), (Key::ClusterResetRestorePath, Raw::Text("snap".into()))];
        assert_eq!(ok(&[], &Env::new(), &reset).cluster_reset_restore_path, Some(PathBuf::from("/work/here/snap")));
        assert_eq!(ok(&[], &Env::new(), &[]).cluster_reset_restore_path, None);
        // k3s' "invalid flag use": a restore path alone, e.g. left in a config file.
        let e = err(&[file("/f", "cluster-reset-restore-path: /s\n")], &Env::new(), &[]);
        assert_eq!(e.to_string(), "/f: cluster-reset-restore-path: invalid flag use: needs cluster-reset");
        let e = err(&[], &Env::new(), &[(Key::ClusterReset, Raw::Bool(true))]);
        assert!(
            e.to_string().starts_with("command line: cluster-reset: the embedded datastore has no cluster membership"),
            "{e}"
        );
        let mut etcd = reset.to_vec();
        etcd.push((Key::DatastoreEndpoint, Raw::Text("http://127.0.0.1:2379".into())));
        let e = err(&[], &Env::new(), &etcd);
        assert!(e.to_string().starts_with("command line: cluster-reset: the datastore is an external etcd"), "{e}");
        assert!(!e.to_string().contains('\n'));
        // Off is off, whatever the path says.
        let off = [(Key::ClusterReset, Raw::Bool(false))];
        assert_eq!(ok(&[], &Env::new(), &off).cluster_reset_restore_path, None);
    }

    #[test]
    fn nothing_given_means_the_defaults_and_the_lowercased_hostname() {
        let got = ok(&[], &Env::new(), &[]);
        assert_eq!(got, ServerConfig::with_defaults("/var/lib/k3rs", "edge-1"));
        assert_eq!(got.network.cluster_dns, "10.43.0.10".parse::<IpAddr>().unwrap());
        assert_eq!(got.apiserver.write_kubeconfig, PathBuf::from("/etc/k3rs/k3rs.yaml"));
    }

    #[test]
    fn command_line_beats_env_beats_dropins_beats_config_file() {
        let files = [
            file("/etc/k3rs/config.yaml", "data-dir: /a\nhttps-listen-port: 1001\nnode-name: from-main\ncluster-domain: main.local\ndebug: true\n"),
            file("/etc/k3rs/config.yaml.d/10.yaml", "data-dir: /b\nhttps-listen-port: 1002\nnode-name: from-10\n"),
            file("/etc/k3rs/config.yaml.d/20.yaml", "data-dir: /c\nhttps-listen-port: 1003\n"),
        ];
        let e = env(&[("K3RS_DATA_DIR", "/d"), ("K3RS_HTTPS_LISTEN_PORT", "1004")]);
        let c = cli(&[(Key::DataDir, "/e")]);
        let got = ok(&files, &e, &c);
        assert_eq!(got.data_dir.root(), Path::new("/e"));
        assert_eq!(got.apiserver.https_listen_port, 1004);
        assert_eq!(got.node.name, "from-10");
        assert_eq!(got.network.cluster_domain, "main.local");
        assert!(got.debug);

        let got = ok(&files, &Env::new(), &[]);
        assert_eq!(got.data_dir.root(), Path::new("/c"));
        assert_eq!(got.apiserver.https_listen_port, 1003);
    }

    #[test]
    fn a_list_from_a_higher_source_replaces_the_lower_one() {
        let files = [file("/etc/k3rs/config.yaml", "disable: [etcd-api]\n")];
        assert!(ok(&files, &Env::new(), &[]).disabled.contains(ETCD_API));
        // An empty value from the command line clears it.
        assert!(ok(&files, &Env::new(), &cli(&[(Key::Disable, "")])).disabled.is_empty());
        let c = vec![(Key::Disable, Raw::List(vec!["etcd-api".into(), "etcd-api,".into()]))];
        assert_eq!(ok(&[], &Env::new(), &c).disabled.iter().collect::<Vec<_>>(), vec![ETCD_API]);
        let e = env(&[("K3RS_DISABLE", " etcd-api ")]);
        assert!(ok(&[], &e, &[]).disabled.contains(ETCD_API));
        assert!(ok(&[file("/f", "disable: etcd-api")], &Env::new(), &[]).disabled.contains(ETCD_API));
    }

    #[test]
    fn tls_san_is_a_list_from_every_source() {
        let files = [file("/etc/k3rs/config.yaml", "tls-san:\n  - K3RS.example.com\n  - 10.0.0.5\n")];
        assert_eq!(ok(&files, &Env::new(), &[]).apiserver.tls_san, ["k3rs.example.com", "10.0.0.5"]);
        let one = [file("/f", "tls-san: lb.example.com\n")];
        assert_eq!(ok(&one, &Env::new(), &[]).apiserver.tls_san, ["lb.example.com"]);
        // The environment replaces the file's list; items are trimmed, normalized, deduplicated.
        let e = env(&[("K3RS_TLS_SAN", " fd00:0::1, *.apps.example.com,FD00::1 ")]);
        assert_eq!(ok(&files, &e, &[]).apiserver.tls_san, ["fd00::1", "*.apps.example.com"]);
        let c = vec![(Key::TlsSan, Raw::List(vec!["a.example.com".into(), "b.example.com,10.1.1.1".into()]))];
        assert_eq!(ok(&files, &e, &c).apiserver.tls_san, ["a.example.com", "b.example.com", "10.1.1.1"]);
        // An empty value clears a lower source's list.
        assert!(ok(&files, &Env::new(), &cli(&[(Key::TlsSan, "")])).apiserver.tls_san.is_empty());
        let e = err(&[file("/c.yaml", "tls-san: {a: b}\n")], &Env::new(), &[]);
        assert_eq!(
            e.to_string(),
            "/c.yaml: tls-san: expected a DNS name or IP address, or a list of them, found a mapping"
        );
        let e = err(&[file("/c.yaml", "tls-san: [ok.example.com, bad_name]\n")], &Env::new(), &[]);
        assert_eq!(e.to_string(), "/c.yaml: tls-san: \"bad_name\" is neither an IP address nor a DNS name");
    }

    #[test]
    fn a_bad_value_is_reported_even_when_a_higher_source_overrides_it() {
        let files = [file("/etc/k3rs/config.yaml.d/50-port.yaml", "https-listen-port: 99999\n")];
        let e = err(&files, &Env::new(), &cli(&[(Key::HttpsListenPort, "6443")]));
        assert_eq!(
            e.to_string(),
            "/etc/k3rs/config.yaml.d/50-port.yaml: https-listen-port: \"99999\" is not a port number (1-65535)"
        );
        let e = err(&[], &env(&[("K3RS_BIND_ADDRESS", "nope")]), &cli(&[(Key::BindAddress, "127.0.0.1")]));
        assert_eq!(e.to_string(), "K3RS_BIND_ADDRESS: bind-address: \"nope\" is not an IP address");
    }

    #[test]
    fn ingress_ports_default_to_80_and_443_and_take_0_for_any() {
        let got = ok(&[], &Env::new(), &[]);
        assert_eq!((got.ingress.http, got.ingress.https), (80, 443));
        let got = ok(
            &[file("/etc/k3rs/config.yaml", "ingress-https-port: 8443\n")],
            &Env::new(),
            &cli(&[(Key::IngressHttpPort, "0")]),
        );
        assert_eq!((got.ingress.http, got.ingress.https), (0, 8443));
        let e = err(&[], &Env::new(), &cli(&[(Key::IngressHttpsPort, "70000")]));
        assert_eq!(e.to_string(), "command line: ingress-https-port: \"70000\" is not a port number (0-65535)");
    }

    #[test]
    fn bad_values_name_the_source_and_key() {
        let cases: &[(Key, &str, &str)] = &[
            (Key::HttpsListenPort, "0", "is not a port number"),
            (Key::HttpsListenPort, "65536", "is not a port number"),
            (Key::HttpsListenPort, "+80", "is not a port number"),
            (Key::HttpsListenPort, "http", "is not a port number"),
            (Key::BindAddress, "localhost", "is not an IP address"),
            (Key::NodeIp, "10.0.0.300", "is not an IP address"),
            (Key::NodeIp, "0.0.0.0", "cannot be a node's address"),
            (Key::NodeName, "Node_1", "is not a lowercase DNS name"),
            (Key::NodeName, "-a", "is not a lowercase DNS name"),
            (Key::DataDir, "", "must not be empty"),
            (Key::WriteKubeconfig, "", "must not be empty"),
            (Key::WriteKubeconfigMode, "0999", "not an octal file mode"),
            (Key::WriteKubeconfigMode, "rw-r--r--", "not an octal file mode"),
            (Key::WriteKubeconfigMode, "4755", "at most 0777"),
            (Key::TlsSan, "k3rs_api", "\"k3rs_api\" is neither an IP address nor a DNS name"),
            (Key::TlsSan, "ok.example.com,https://x", "\"https://x\" is neither"),
            (Key::ClusterCidr, "10.42.0.0", "not in CIDR notation"),
            (Key::ClusterCidr, "10.42.0.0/25", "smaller than one node's pod network"),
            (Key::ClusterCidr, "10.42.3.0/16", "host bits set; the network is 10.42.0.0/16"),
            (Key::ServiceCidr, "10.0.0.0/8", "too large"),
            (Key::ServiceCidr, "10.43.0.0/29", "too small"),
            (Key::ClusterDns, "10.43.0.300", "is not an IP address"),
            (Key::ClusterDomain, "cluster.local.", "not a lowercase DNS name"),
            (
                Key::Disable,
                "etcd-api,bogus",
                "unknown component \"bogus\" (can disable: etcd-api, dns, ingress, servicelb)",
            ),
            (Key::DatastoreEndpoint, "sqlite:///var/lib/db", "sqlite:// datastores are not supported"),
            (Key::DatastoreEndpoint, "postgres://u@h:5432/db", "not supported"),
            (Key::DatastoreEndpoint, "http://127.0.0.1", "missing port"),
            (Key::DatastoreEndpoint, "http://127.0.0.1:2379/x", "only scheme, host and port"),
            (Key::DatastoreEndpoint, "http://127.0.0.1:0", "not a port number"),
            (Key::DatastoreEndpoint, "127.0.0.1:2379", "expected http(s)://host:port"),
            (Key::DatastoreEndpoint, "http://[::1:2379", "missing port"),
            (Key::DatastoreEndpoint, "http://a:1,https://b:2", "mixes http:// and https://"),
            (Key::DatastoreCafile, "", "must not be empty"),
            (Key::Debug, "yes", "is not true or false"),
        ];
        for (key, value, want) in cases {
            let msg = cli_err(*key, value);
            let prefix = format!("command line: {}: ", key.name());
            assert!(msg.starts_with(&prefix), "{key:?}={value:?}: {msg}");
            assert!(msg.contains(want), "{key:?}={value:?}: {msg:?} lacks {want:?}");
            assert!(!msg.contains('\n'));
        }
    }

    #[test]
    fn good_values_parse() {
        let c = cli(&[
            (Key::NodeIp, "192.168.5.4"),
            (Key::BindAddress, "::"),
            (Key::WriteKubeconfigMode, "644"),
            (Key::ClusterCidr, "10.244.0.0/16"),
            (Key::ServiceCidr, "10.96.0.0/12"),
            (Key::DatastoreEndpoint, "http://127.0.0.1:2379, http://[::1]:2379/"),
            (Key::DataDir, "rel/dir"),
            (Key::Debug, "1"),
        ]);
        let got = ok(&[], &Env::new(), &c);
        assert_eq!(got.node.ip, Some("192.168.5.4".parse().unwrap()));
        assert_eq!(got.apiserver.bind_address, "::".parse::<IpAddr>().unwrap());
        assert_eq!(got.apiserver.write_kubeconfig_mode, 0o644);
        // The DNS address follows the service network when not given.
        assert_eq!(got.network.cluster_dns, "10.96.0.10".parse::<IpAddr>().unwrap());
        assert_eq!(
            got.datastore,
            DatastoreConfig::Etcd(EtcdConfig {
                endpoints: vec!["http://127.0.0.1:2379".into(), "http://[::1]:2379".into()],
                ca_file: None,
                cert_file: None,
                key_file: None,
            })
        );
        assert_eq!(got.data_dir.root(), Path::new("/work/here/rel/dir"));
        assert!(got.debug);
        // An empty endpoint overrides a lower source back to the embedded datastore.
        let files = [file("/f", "datastore-endpoint: http://127.0.0.1:2379\nnode-ip: 10.1.1.1\n")];
        let got = ok(&files, &Env::new(), &cli(&[(Key::DatastoreEndpoint, ""), (Key::NodeIp, "")]));
        assert_eq!(got.datastore, DatastoreConfig::Embedded);
        assert_eq!(got.node.ip, None);
    }

    #[test]
    fn etcd_tls_files_go_with_https_endpoints_only() {
        let https = (Key::DatastoreEndpoint, "https://10.0.0.5:2379");
        let got = ok(
            &[],
            &Env::new(),
            &cli(&[
                https,
                (Key::DatastoreCafile, "ca.pem"),
                (Key::DatastoreCertfile, "/tls/c.pem"),
                (Key::DatastoreKeyfile, "/tls/k.pem"),
            ]),
        );
        assert_eq!(
            got.datastore,
            DatastoreConfig::Etcd(EtcdConfig {
                endpoints: vec!["https://10.0.0.5:2379".into()],
                ca_file: Some("/work/here/ca.pem".into()),
                cert_file: Some("/tls/c.pem".into()),
                key_file: Some("/tls/k.pem".into()),
            })
        );
        let e = err(&[], &Env::new(), &cli(&[https]));
        assert!(e
            .to_string()
            .starts_with("command line: datastore-endpoint: https:// endpoints need datastore-cafile"));
        let e = err(&[], &Env::new(), &cli(&[https, (Key::DatastoreCafile, "/ca"), (Key::DatastoreKeyfile, "/k")]));
        assert_eq!(e.to_string(), "command line: datastore-keyfile: needs datastore-certfile");
        // A TLS file for the embedded store or plain http would silently do nothing.
        let files = [file("/f", "datastore-cafile: /ca.pem\n")];
        let e = err(&files, &Env::new(), &[]);
        assert!(e.to_string().starts_with("/f: datastore-cafile: is only used with an https://"), "{e}");
        let e = err(&files, &Env::new(), &cli(&[(Key::DatastoreEndpoint, "http://h:2379")]));
        assert_eq!(e.key.as_deref(), Some("datastore-cafile"));
    }

    #[test]
    fn cluster_dns_must_be_a_usable_service_address() {
        let outside = err(&[], &Env::new(), &cli(&[(Key::ClusterDns, "10.42.0.10")]));
        assert_eq!(outside.to_string(), "command line: cluster-dns: 10.42.0.10 is outside service-cidr 10.43.0.0/16");
        let e = env(&[("K3RS_CLUSTER_DNS", "10.43.0.1")]);
        assert!(err(&[], &e, &[]).to_string().starts_with("K3RS_CLUSTER_DNS: cluster-dns: 10.43.0.1 is reserved"));
        for bad in ["10.43.0.0", "10.43.255.255"] {
            assert!(cli_err(Key::ClusterDns, bad).contains("not a usable address"), "{bad}");
        }
        // The file sets a service network the DNS default follows; the file's DNS is checked
        // against the final network.
        let files = [file("/f", "service-cidr: 172.20.0.0/16\ncluster-dns: 172.20.0.53\n")];
        assert_eq!(ok(&files, &Env::new(), &[]).network.cluster_dns, "172.20.0.53".parse::<IpAddr>().unwrap());
        let e = err(&files, &Env::new(), &cli(&[(Key::ServiceCidr, "10.43.0.0/16")]));
        assert_eq!(e.origin, Source::File(PathBuf::from("/f")));
        assert_eq!(e.key.as_deref(), Some("cluster-dns"));
    }

    #[test]
    fn networks_must_not_overlap_and_share_a_family() {
        let e = err(&[], &Env::new(), &cli(&[(Key::ClusterCidr, "10.43.0.0/16")]));
        assert_eq!(e.to_string(), "command line: cluster-cidr: 10.43.0.0/16 overlaps service-cidr 10.43.0.0/16");
        let e = err(&[], &env(&[("K3RS_SERVICE_CIDR", "10.42.128.0/20")]), &[]);
        assert_eq!(e.to_string(), "K3RS_SERVICE_CIDR: service-cidr: 10.42.128.0/20 overlaps cluster-cidr 10.42.0.0/16");
        let e = err(&[], &Env::new(), &cli(&[(Key::ServiceCidr, "fd00:43::/112")]));
        assert!(e.to_string().contains("both must be the same family"), "{e}");
        let v6 = cli(&[(Key::ServiceCidr, "fd00:43::/112"), (Key::ClusterCidr, "fd00:42::/56")]);
        assert_eq!(ok(&[], &Env::new(), &v6).network.cluster_dns, "fd00:43::a".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn config_files_reject_unknown_keys_and_wrong_types() {
        let e = err(&[file("/etc/k3rs/config.yaml", "data_dir: /x\n")], &Env::new(), &[]);
        assert_eq!(e.to_string(), "/etc/k3rs/config.yaml: data_dir: unknown key (did you mean data-dir?)");
        let e = err(&[file("/c.yaml", "token: abc\n")], &Env::new(), &[]);
        assert_eq!(e.to_string(), "/c.yaml: token: unknown key");
        let e = err(&[file("/c.yaml", "https-listen-port: [1, 2]\n")], &Env::new(), &[]);
        assert_eq!(e.to_string(), "/c.yaml: https-listen-port: expected a single value, found a list");
        let e = err(&[file("/c.yaml", "node-name: {a: b}\n")], &Env::new(), &[]);
        assert_eq!(e.to_string(), "/c.yaml: node-name: expected a single value, found a mapping");
        let e = err(&[file("/c.yaml", "node-name: true\n")], &Env::new(), &[]);
        assert_eq!(e.to_string(), "/c.yaml: node-name: expected a single value, found a boolean");
        let e = err(&[file("/c.yaml", "debug: [true]\n")], &Env::new(), &[]);
        assert_eq!(e.to_string(), "/c.yaml: debug: expected true or false, found a list");
        let e = err(&[file("/c.yaml", "disable: [[etcd-api]]\n")], &Env::new(), &[]);
        assert!(e.to_string().starts_with("/c.yaml: disable: expected a component name"), "{e}");
        let e = err(&[file("/c.yaml", "https-listen-port: 6443.5\n")], &Env::new(), &[]);
        assert!(e.to_string().starts_with("/c.yaml: https-listen-port: \"6443.5\" is not a port"), "{e}");
        // YAML 1.1 spellings are strings, not booleans, so `yes` is caught as a bad value.
        let e = err(&[file("/c.yaml", "debug: yes\n")], &Env::new(), &[]);
        assert_eq!(e.to_string(), "/c.yaml: debug: \"yes\" is not true or false");
    }

    #[test]
    fn malformed_files_are_one_line_errors() {
        for text in ["- a\n- b\n", "a: [\n", "data-dir: /a\ndata-dir: /b\n", "just text\n"] {
            let e = err(&[file("/c.yaml", text)], &Env::new(), &[]);
            let msg = e.to_string();
            assert!(msg.starts_with("/c.yaml: "), "{msg}");
            assert!(!msg.contains('\n'), "{msg:?}");
        }
        // Empty files and comments only are fine; null values leave the setting unset.
        let got = ok(&[file("/a", ""), file("/b", "# nothing\n"), file("/c", "data-dir:\n")], &Env::new(), &[]);
        assert_eq!(got.data_dir.root(), Path::new("/var/lib/k3rs"));
    }

    #[test]
    fn file_modes_keep_their_octal_spelling() {
        for text in ["644", "0644", "'644'", "\"0644\"", "0o644"] {
            let f = [file("/c.yaml", &format!("write-kubeconfig-mode: {text}\n"))];
            assert_eq!(ok(&f, &Env::new(), &[]).apiserver.write_kubeconfig_mode, 0o644, "{text}");
        }
        assert_eq!(
            ok(&[], &env(&[("K3RS_WRITE_KUBECONFIG_MODE", "0640")]), &[]).apiserver.write_kubeconfig_mode,
            0o640
        );
    }

    #[test]
    fn k3s_kubeconfig_variables_are_aliases_that_lose_to_the_own_names() {
        let got = ok(&[], &env(&[("K3RS_KUBECONFIG_MODE", "644"), ("K3RS_KUBECONFIG_OUTPUT", "/k.yaml")]), &[]);
        assert_eq!(got.apiserver.write_kubeconfig_mode, 0o644);
        assert_eq!(got.apiserver.write_kubeconfig, PathBuf::from("/k.yaml"));
        let both = env(&[("K3RS_KUBECONFIG_MODE", "644"), ("K3RS_WRITE_KUBECONFIG_MODE", "640")]);
        assert_eq!(ok(&[], &both, &[]).apiserver.write_kubeconfig_mode, 0o640);
        let e = err(&[], &env(&[("K3RS_KUBECONFIG_MODE", "rw")]), &[]);
        assert!(e.to_string().starts_with("K3RS_KUBECONFIG_MODE: write-kubeconfig-mode: "), "{e}");
        let r = resolve(&[], &env(&[("K3RS_KUBECONFIG_MODE", "600")]), &[], &host()).unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn the_configured_kubeconfig_comes_from_the_environment_then_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = Path::new("/work");
        let main = dir.path().join("config.yaml");
        let with_file = env(&[(CONFIG_FILE_ENV, main.to_str().unwrap())]);
        // A named config file that is missing: the default.
        assert_eq!(configured_kubeconfig(&with_file, cwd), PathBuf::from("/etc/k3rs/k3rs.yaml"));
        std::fs::write(&main, "write-kubeconfig: /from/main.yaml\n").unwrap();
        assert_eq!(configured_kubeconfig(&with_file, cwd), PathBuf::from("/from/main.yaml"));
        std::fs::create_dir(dir.path().join("config.yaml.d")).unwrap();
        std::fs::write(dir.path().join("config.yaml.d/10.yaml"), "write-kubeconfig: rel.yaml\n").unwrap();
        assert_eq!(configured_kubeconfig(&with_file, cwd), PathBuf::from("/work/rel.yaml"));
        let mut e = with_file.clone();
        e.insert("K3RS_KUBECONFIG_OUTPUT".into(), "/alias.yaml".into());
        assert_eq!(configured_kubeconfig(&e, cwd), PathBuf::from("/alias.yaml"));
        e.insert("K3RS_WRITE_KUBECONFIG".into(), "/own.yaml".into());
        assert_eq!(configured_kubeconfig(&e, cwd), PathBuf::from("/own.yaml"));
        // A file that does not parse is passed over.
        std::fs::remove_file(dir.path().join("config.yaml.d/10.yaml")).unwrap();
        std::fs::write(&main, "write-kubeconfig: [\n").unwrap();
        assert_eq!(configured_kubeconfig(&with_file, cwd), PathBuf::from("/etc/k3rs/k3rs.yaml"));
    }

    #[test]
    fn environment_rules() {
        // Empty counts as unset.
        let got = ok(&[], &env(&[("K3RS_NODE_NAME", "")]), &[]);
        assert_eq!(got.node.name, "edge-1");
        let mut e = Env::new();
        e.insert("K3RS_NODE_NAME".into(), {
            use std::os::unix::ffi::OsStringExt;
            OsString::from_vec(vec![0xff, 0xfe])
        });
        assert_eq!(err(&[], &e, &[]).to_string(), "K3RS_NODE_NAME: node-name: is not valid UTF-8");
        // Unknown K3RS_ variables are a warning, with a hint for a near miss.
        let r = resolve(&[], &env(&[("K3RS_DATADIR", "/x"), (CONFIG_FILE_ENV, "/y")]), &[], &host()).unwrap();
        assert_eq!(r.warnings, vec!["ignoring K3RS_DATADIR: k3rs has no such setting (did you mean K3RS_DATA_DIR?)"]);
        for key in Key::ALL {
            assert!(key.env_var().starts_with("K3RS_") && !key.env_var().contains('-'));
        }
        assert_eq!(Key::WriteKubeconfigMode.env_var(), "K3RS_WRITE_KUBECONFIG_MODE");
    }

    #[test]
    fn an_unusable_hostname_matters_only_without_node_name() {
        let h = Host { hostname: Some("my_laptop".into()), cwd: PathBuf::from("/") };
        let e = resolve(&[], &Env::new(), &[], &h).unwrap_err();
        assert!(e.to_string().starts_with("default: node-name: the hostname is not a valid node name"), "{e}");
        let r = resolve(&[], &Env::new(), &cli(&[(Key::NodeName, "laptop")]), &h).unwrap();
        assert_eq!(r.config.node.name, "laptop");
        let none = Host { hostname: None, cwd: PathBuf::from("/") };
        assert!(resolve(&[], &Env::new(), &[], &none).is_err());
    }

    #[test]
    fn config_location_precedence() {
        let e = env(&[(CONFIG_FILE_ENV, "/from/env.yaml")]);
        let loc = ConfigLocation::choose(Some(Path::new("/from/cli.yaml")), &e).unwrap();
        assert_eq!(loc, ConfigLocation { path: "/from/cli.yaml".into(), origin: Source::CommandLine });
        let loc = ConfigLocation::choose(None, &e).unwrap();
        assert_eq!(loc.origin, Source::Env(CONFIG_FILE_ENV.into()));
        assert_eq!(loc.dropin_dir(), PathBuf::from("/from/env.yaml.d"));
        let loc = ConfigLocation::choose(None, &Env::new()).unwrap();
        assert_eq!(loc.path, PathBuf::from(DEFAULT_CONFIG_FILE));
        assert_eq!(loc.dropin_dir(), PathBuf::from("/etc/k3rs/config.yaml.d"));
    }

    #[test]
    fn loading_reads_the_file_then_dropins_in_lexical_order() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("config.yaml");
        let dropins = dir.path().join("config.yaml.d");
        std::fs::create_dir(&dropins).unwrap();
        std::fs::write(&main, "data-dir: /main\n").unwrap();
        for (name, text) in [("20-b.yaml", "data-dir: /b\n"), ("10-a.yml", "data-dir: /a\n"), ("30-c.txt", "junk: [")] {
            std::fs::write(dropins.join(name), text).unwrap();
        }
        std::fs::create_dir(dropins.join("40-dir.yaml")).unwrap();
        let loc = ConfigLocation { path: main.clone(), origin: Source::CommandLine };
        let files = loc.load().unwrap();
        let names: Vec<_> = files.iter().map(|f| f.path.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(names, ["config.yaml", "10-a.yml", "20-b.yaml"]);
        assert_eq!(ok(&files, &Env::new(), &[]).data_dir.root(), Path::new("/b"));

        // Drop-ins apply even without the main file, when it was not named explicitly.
        std::fs::remove_file(&main).unwrap();
        let loc = ConfigLocation { path: main.clone(), origin: Source::Default };
        assert_eq!(loc.load().unwrap().len(), 2);
        let loc = ConfigLocation { path: main.clone(), origin: Source::Env(CONFIG_FILE_ENV.into()) };
        let e = loc.load().unwrap_err();
        assert_eq!(e.to_string(), format!("K3RS_CONFIG_FILE: config: {}: no such file", main.display()));
    }
}
