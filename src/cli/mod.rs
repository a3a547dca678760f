//! The `k3rs` command line: parses the arguments, builds and validates the configuration of
//! the chosen command ([`config`]), sets up logging and the runtime, and turns the outcome
//! into an exit code: 0 on success, 2 for a usage or configuration error (reported as one
//! line, before anything is bound or written), 1 when the command fails while running.

pub mod config;
mod etcd_snapshot;
mod images;
pub mod kubectl;

use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand};

use self::config::{ConfigLocation, Host, Key, Raw, Resolved};

/// Exit code for usage and configuration errors.
const EXIT_USAGE: u8 = 2;
/// Exit code for failures while running.
const EXIT_FAILURE: u8 = 1;

/// What `k3rs --version` prints after the name, as `k3s --version` has it: the version and
/// the git commit (build.rs), then the build date and the compiler.
const VERSION: &str = concat!("version v", env!("CARGO_PKG_VERSION"), " (", env!("K3RS_GIT_COMMIT"), ")");
const LONG_VERSION: &str = concat!(
    "version v",
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("K3RS_GIT_COMMIT"),
    ")\nbuild date ",
    env!("K3RS_BUILD_DATE"),
    "\n",
    env!("K3RS_RUSTC_VERSION")
);

#[derive(Debug, Parser)]
#[command(
    name = "k3rs",
    version = VERSION,
    long_version = LONG_VERSION,
    about = "k3rs: a k3s-style Kubernetes distribution in one binary",
    propagate_version = true,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: the datastore (embedded SQLite or external etcd) with the etcd API
    /// over it, the Kubernetes API server, the scheduler and controllers, and (unless
    /// --disable-agent) the node that runs this machine's pods.
    Server(Box<ServerArgs>),
    /// Manage the node's images: import archives, list, remove, pull.
    Images(images::ImagesArgs),
    /// Snapshots of the embedded datastore: save one now (also while the server runs), list,
    /// delete, prune. Restore one with `k3rs server --cluster-reset
    /// --cluster-reset-restore-path=FILE`.
    EtcdSnapshot(Box<etcd_snapshot::EtcdSnapshotArgs>),
    /// Run kubectl: the first on PATH that is not k3rs (none is bundled yet), with KUBECONFIG
    /// defaulting to the admin kubeconfig. A link named kubectl to k3rs does the same.
    #[command(disable_help_flag = true, disable_version_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Flags of `k3rs server`. Values are kept as given and parsed by [`config`], so a bad value
/// is reported the same way whatever its source.
#[derive(Debug, Args)]
#[command(after_help = "\
Every flag can also be given in the environment as K3RS_<FLAG> (e.g. K3RS_DATA_DIR) or as a key \
without the dashes in the config file (e.g. `data-dir: /srv/k3rs`): /etc/k3rs/config.yaml, then \
/etc/k3rs/config.yaml.d/*.yaml in lexical order. Precedence: command line, environment, \
config.yaml.d, config.yaml, defaults.")]
struct ServerArgs {
    /// Directory for all state [default: /var/lib/k3rs]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<String>,

    /// Port of the Kubernetes API (HTTPS) [default: 6443]
    #[arg(long, value_name = "PORT")]
    https_listen_port: Option<String>,

    /// Port of the ingress' plain HTTP; 0: any free port [default: 80]
    #[arg(long, value_name = "PORT")]
    ingress_http_port: Option<String>,

    /// Port of the ingress' HTTPS; 0: any free port [default: 443]
    #[arg(long, value_name = "PORT")]
    ingress_https_port: Option<String>,

    /// Address the Kubernetes API listens on [default: 0.0.0.0]
    #[arg(long, value_name = "IP")]
    bind_address: Option<String>,

    /// The node's IP address [default: chosen from the host's interfaces]
    #[arg(long, value_name = "IP")]
    node_ip: Option<String>,

    /// The node's name [default: the hostname, lowercased]
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,

    /// Where to write the admin kubeconfig [default: /etc/k3rs/k3rs.yaml]
    #[arg(long, value_name = "FILE")]
    write_kubeconfig: Option<String>,

    /// Permissions of the written kubeconfig, in octal (e.g. 644) [default: 600]
    #[arg(long, value_name = "MODE")]
    write_kubeconfig_mode: Option<String>,

    /// Extra DNS names or IP addresses for the API server's certificate; repeatable or
    /// comma-separated
    #[arg(long, value_name = "NAME|IP")]
    tls_san: Vec<String>,

    /// Network for pod addresses [default: 10.42.0.0/16]
    #[arg(long, value_name = "CIDR")]
    cluster_cidr: Option<String>,

    /// Network for service (ClusterIP) addresses [default: 10.43.0.0/16]
    #[arg(long, value_name = "CIDR")]
    service_cidr: Option<String>,

    /// Address of the cluster DNS service, inside --service-cidr [default: 10.43.0.10, the
    /// tenth address of --service-cidr]
    #[arg(long, value_name = "IP")]
    cluster_dns: Option<String>,

    /// Cluster domain [default: cluster.local]
    #[arg(long, value_name = "DOMAIN")]
    cluster_domain: Option<String>,

    /// The node's resolver configuration, for Default-policy pods and the cluster DNS
    /// server's upstreams [default: /etc/resolv.conf, or /run/systemd/resolve/resolv.conf
    /// when the former names only loopback servers]
    #[arg(long, value_name = "FILE")]
    resolv_conf: Option<String>,

    /// Registry mirrors and credentials, in k3s' registries.yaml format [default:
    /// /etc/k3rs/registries.yaml]
    #[arg(long, value_name = "FILE")]
    private_registry: Option<String>,

    /// Components not to run; repeatable or comma-separated. Components: etcd-api (the etcd
    /// API socket <data-dir>/server/db/etcd.sock), dns (alias coredns: the cluster DNS
    /// server), ingress (alias traefik: the ingress on ports 80 and 443), servicelb (the
    /// LoadBalancer Services' address on the node)
    #[arg(long, value_name = "COMPONENT")]
    disable: Vec<String>,

    /// A kube-controller-manager flag, name=value; repeatable. `controllers`,
    /// `terminated-pod-gc-threshold`, `node-monitor-grace-period`, `node-startup-grace-period`
    /// and `node-monitor-period` are meaningful: e.g. controllers=*,-replicaset leaves the
    /// ReplicaSet controller out
    #[arg(long, value_name = "NAME=VALUE")]
    kube_controller_manager_arg: Vec<String>,

    /// External etcd: http(s)://host:port, comma-separated for several [default: embedded
    /// SQLite in <data-dir>/server/db/state.db]
    #[arg(long, value_name = "URL")]
    datastore_endpoint: Option<String>,

    /// CA certificate (PEM) that signed the etcd server's certificate; required for https://
    /// endpoints
    #[arg(long, value_name = "FILE")]
    datastore_cafile: Option<String>,

    /// Client certificate (PEM) to present to etcd over https://
    #[arg(long, value_name = "FILE")]
    datastore_certfile: Option<String>,

    /// Key (PEM) of --datastore-certfile
    #[arg(long, value_name = "FILE")]
    datastore_keyfile: Option<String>,

    /// Do not run the node (kubelet): only the control plane
    #[arg(long)]
    disable_agent: bool,

    /// Take no scheduled snapshots of the embedded datastore
    #[arg(long)]
    etcd_disable_snapshots: bool,

    /// When to snapshot the embedded datastore: a five-field cron schedule in local time
    /// [default: 0 */12 * * *]
    #[arg(long, value_name = "SCHEDULE")]
    etcd_snapshot_schedule_cron: Option<String>,

    /// How many scheduled snapshots to keep; 0 keeps all [default: 5]
    #[arg(long, value_name = "N")]
    etcd_snapshot_retention: Option<String>,

    /// Directory for snapshots; must exist unless it is the default [default:
    /// <data-dir>/server/db/snapshots]
    #[arg(long, value_name = "DIR")]
    etcd_snapshot_dir: Option<String>,

    /// Name prefix of scheduled snapshots, followed by -<node name>-<unix time> [default:
    /// etcd-snapshot]
    #[arg(long, value_name = "NAME")]
    etcd_snapshot_name: Option<String>,

    /// Replace the embedded datastore with the snapshot --cluster-reset-restore-path (the
    /// old database is moved aside, not deleted), then exit; then start without these flags
    #[arg(long)]
    cluster_reset: bool,

    /// The snapshot --cluster-reset restores
    #[arg(long, value_name = "FILE")]
    cluster_reset_restore_path: Option<String>,

    /// Do not enforce NetworkPolicies on the node
    #[arg(long)]
    disable_network_policy: bool,

    /// Debug logging (RUST_LOG, when set, overrides)
    #[arg(long)]
    debug: bool,

    /// Config file; its drop-ins are read from <FILE>.d/ [env: K3RS_CONFIG_FILE] [default:
    /// /etc/k3rs/config.yaml]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ServerArgs {
    /// The settings given on the command line, in [`config`]'s terms.
    fn settings(&self) -> Vec<(Key, Raw)> {
        let text = [
            (Key::DataDir, &self.data_dir),
            (Key::HttpsListenPort, &self.https_listen_port),
            (Key::IngressHttpPort, &self.ingress_http_port),
            (Key::IngressHttpsPort, &self.ingress_https_port),
            (Key::BindAddress, &self.bind_address),
            (Key::NodeIp, &self.node_ip),
            (Key::NodeName, &self.node_name),
            (Key::WriteKubeconfig, &self.write_kubeconfig),
            (Key::WriteKubeconfigMode, &self.write_kubeconfig_mode),
            (Key::ClusterCidr, &self.cluster_cidr),
            (Key::ServiceCidr, &self.service_cidr),
            (Key::ClusterDns, &self.cluster_dns),
            (Key::ClusterDomain, &self.cluster_domain),
            (Key::ResolvConf, &self.resolv_conf),
            (Key::PrivateRegistry, &self.private_registry),
            (Key::DatastoreEndpoint, &self.datastore_endpoint),
            (Key::DatastoreCafile, &self.datastore_cafile),
            (Key::DatastoreCertfile, &self.datastore_certfile),
            (Key::DatastoreKeyfile, &self.datastore_keyfile),
            (Key::EtcdSnapshotScheduleCron, &self.etcd_snapshot_schedule_cron),
            (Key::EtcdSnapshotRetention, &self.etcd_snapshot_retention),
            (Key::EtcdSnapshotDir, &self.etcd_snapshot_dir),
            (Key::EtcdSnapshotName, &self.etcd_snapshot_name),
            (Key::ClusterResetRestorePath, &self.cluster_reset_restore_path),
        ];
        let mut out: Vec<(Key, Raw)> =
            text.into_iter().filter_map(|(k, v)| v.as_ref().map(|v| (k, Raw::Text(v.clone())))).collect();
        if !self.disable.is_empty() {
            out.push((Key::Disable, Raw::List(self.disable.clone())));
        }
        if !self.kube_controller_manager_arg.is_empty() {
            out.push((Key::KubeControllerManagerArg, Raw::List(self.kube_controller_manager_arg.clone())));
        }
        if !self.tls_san.is_empty() {
            out.push((Key::TlsSan, Raw::List(self.tls_san.clone())));
        }
        // A flag can only turn debugging on; off is the absence of the flag, so a lower
        // source's `debug: true` stays unless the command line has nothing to say.
        if self.debug {
            out.push((Key::Debug, Raw::Bool(true)));
        }
        if self.disable_agent {
            out.push((Key::DisableAgent, Raw::Bool(true)));
        }
        if self.disable_network_policy {
            out.push((Key::DisableNetworkPolicy, Raw::Bool(true)));
        }
        if self.etcd_disable_snapshots {
            out.push((Key::EtcdDisableSnapshots, Raw::Bool(true)));
        }
        if self.cluster_reset {
            out.push((Key::ClusterReset, Raw::Bool(true)));
        }
        out
    }
}

/// Runs `k3rs` with the process arguments and environment.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_error(e),
    };
    match cli.command {
        Command::Server(args) => server(*args),
        Command::Images(args) => images::run(args),
        Command::EtcdSnapshot(args) => etcd_snapshot::run(*args),
        // main() hands `k3rs kubectl` over before parsing; this is the same for callers of
        // this function.
        Command::Kubectl { args } => kubectl::run(&args),
    }
}

/// Help and version go out as clap renders them; every other parse error becomes one line.
fn clap_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE))
        }
        ErrorKind::UnknownArgument => {
            let arg = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(arg)) => arg.clone(),
                _ => String::from("?"),
            };
            let what = if arg.starts_with('-') { "unknown flag" } else { "unexpected argument" };
            eprintln!("k3rs: error: command line: {arg}: {what} (see --help)");
            ExitCode::from(EXIT_USAGE)
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("k3rs: error: command line: {first}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn server(args: ServerArgs) -> ExitCode {
    let resolved = match server_config(&args) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("k3rs: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    init_logging(resolved.config.debug);
    for warning in &resolved.warnings {
        tracing::warn!("{warning}");
    }
    if let Some(snapshot) = resolved.config.cluster_reset_restore_path.clone() {
        return cluster_reset(&resolved.config, &snapshot);
    }
    match run_server(resolved) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("k3rs: error: {}", error_chain(&e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `--cluster-reset`: restores the snapshot into the stopped server's data dir and exits,
/// asking for a restart without the flag, as k3s does.
fn cluster_reset(config: &crate::server::config::ServerConfig, snapshot: &std::path::Path) -> ExitCode {
    match crate::server::reset::cluster_reset(config, snapshot) {
        Ok(restored) => {
            tracing::info!(revision = restored.revision.0, "Datastore restored from snapshot {}", snapshot.display());
            if let Some(old) = &restored.previous {
                tracing::info!("The database it replaced was moved to {}", old.display());
            }
            tracing::info!("Embedded datastore has been reset, restart without --cluster-reset flag now");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("k3rs: error: {}", error_chain(&anyhow::Error::from(e)));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the message
/// already carries (most of ours name their cause).
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Reads the config files and environment and validates everything.
fn server_config(args: &ServerArgs) -> Result<Resolved, config::ConfigError> {
    let env = config::process_env();
    let location = ConfigLocation::choose(args.config.as_deref(), &env)?;
    let files = location.load()?;
    let host = Host { hostname: hostname(), cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")) };
    config::resolve(&files, &env, &args.settings(), &host)
}

fn run_server(resolved: Resolved) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("k3rs")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let shutdown = shutdown_signal().context("cannot install signal handlers")?;
        crate::server::run(resolved.config, shutdown).await.map_err(anyhow::Error::from)
    });
    // Blocking work (a datastore still opening when a signal came) gets a moment to finish.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed now, so a signal
/// that arrives during start-up is not lost.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutting down");
    })
}

/// Logs to stderr at info (debug with `--debug`); `RUST_LOG` overrides both.
fn init_logging(debug: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if debug { "debug" } else { "info" };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::try_new(&spec).unwrap_or_else(|e| {
            eprintln!("k3rs: warning: RUST_LOG={spec:?} is not a valid filter ({e}); using {default}");
            EnvFilter::new(default)
        }),
        _ => EnvFilter::new(default),
    };
    // Colour only for a person at a terminal, not for journald or a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).try_init();
}

/// The host's name, or `None` when it cannot be read.
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it or
    // fails, and we look for the NUL ourselves.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    String::from_utf8(buf[..end].to_vec()).ok().filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::config as defaults;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every setting has a flag of the same name, and the help shows the real defaults.
    #[test]
    fn flags_match_the_settings_and_the_defaults() {
        let cmd = Cli::command();
        let server = cmd.find_subcommand("server").expect("server subcommand");
        let longs: Vec<&str> = server.get_arguments().filter_map(|a| a.get_long()).collect();
        for key in Key::ALL {
            assert!(longs.contains(&key.name()), "no --{}", key.name());
        }
        let help = server.clone().term_width(1000).render_help().to_string();
        for default in [
            defaults::DEFAULT_DATA_DIR,
            &defaults::DEFAULT_HTTPS_LISTEN_PORT.to_string(),
            &defaults::DEFAULT_BIND_ADDRESS.to_string(),
            defaults::DEFAULT_WRITE_KUBECONFIG,
            &format!("{:o}", defaults::DEFAULT_WRITE_KUBECONFIG_MODE),
            defaults::DEFAULT_CLUSTER_CIDR,
            defaults::DEFAULT_SERVICE_CIDR,
            defaults::DEFAULT_CLUSTER_DNS,
            defaults::DEFAULT_CLUSTER_DOMAIN,
            defaults::DEFAULT_PRIVATE_REGISTRY,
            defaults::DEFAULT_ETCD_SNAPSHOT_SCHEDULE_CRON,
            &defaults::DEFAULT_ETCD_SNAPSHOT_RETENTION.to_string(),
            defaults::DEFAULT_ETCD_SNAPSHOT_NAME,
            config::DEFAULT_CONFIG_FILE,
        ] {
            assert!(help.contains(&format!("[default: {default}")), "help lacks default {default}");
        }
        for c in crate::server::components::DISABLEABLE {
            assert!(help.contains(c.name), "help lacks component {}", c.name);
        }
    }

    #[test]
    fn command_line_settings_are_passed_as_given() {
        let cli = Cli::try_parse_from([
            "k3rs",
            "server",
            "--data-dir",
            "/srv",
            "--disable",
            "etcd-api",
            "--disable=x,y",
            "--debug",
            "--https-listen-port=bad",
            "--tls-san",
            "k3rs.example.com",
            "--tls-san=10.0.0.5,lb.example.com",
        ])
        .expect("parse");
        let Command::Server(args) = cli.command else { panic!("parsed as server") };
        let got = args.settings();
        assert!(got.contains(&(Key::DataDir, Raw::Text("/srv".into()))));
        assert!(got.contains(&(Key::HttpsListenPort, Raw::Text("bad".into()))));
        assert!(got.contains(&(Key::Disable, Raw::List(vec!["etcd-api".into(), "x,y".into()]))));
        assert!(
            got.contains(&(Key::TlsSan, Raw::List(vec!["k3rs.example.com".into(), "10.0.0.5,lb.example.com".into()])))
        );
        assert!(got.contains(&(Key::Debug, Raw::Bool(true))));
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn etcd_snapshot_takes_k3s_subcommands_flags_and_aliases() {
        let parses = |argv: &[&str]| match Cli::try_parse_from(argv) {
            Ok(cli) => matches!(cli.command, Command::EtcdSnapshot(_)),
            Err(e) => panic!("{argv:?}: {e}"),
        };
        assert!(parses(&["k3rs", "etcd-snapshot", "save", "--name", "pre-upgrade", "--dir", "/s"]));
        assert!(parses(&["k3rs", "etcd-snapshot", "--etcd-snapshot-dir", "/s", "ls"]));
        assert!(parses(&["k3rs", "etcd-snapshot", "list", "--node-name", "n1"]));
        assert!(parses(&["k3rs", "etcd-snapshot", "l"]));
        assert!(parses(&["k3rs", "etcd-snapshot", "delete", "a", "b"]));
        assert!(parses(&["k3rs", "etcd-snapshot", "prune", "--snapshot-retention", "2", "--name", "etcd-snapshot"]));
        // delete needs names; save takes none.
        assert!(Cli::try_parse_from(["k3rs", "etcd-snapshot", "delete"]).is_err());
        assert!(Cli::try_parse_from(["k3rs", "etcd-snapshot", "save", "extra"]).is_err());
        let cli = Cli::try_parse_from(["k3rs", "server", "--cluster-reset", "--cluster-reset-restore-path=/s/x"])
            .expect("parse");
        let Command::Server(args) = cli.command else { panic!("parsed as server") };
        let got = args.settings();
        assert!(got.contains(&(Key::ClusterReset, Raw::Bool(true))));
        assert!(got.contains(&(Key::ClusterResetRestorePath, Raw::Text("/s/x".into()))));
    }

    #[test]
    fn error_chain_is_one_line_without_repeats() {
        #[derive(Debug, thiserror::Error)]
        #[error("open failed: {0}")]
        struct Named(#[source] std::io::Error);
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such thing");
        let e = anyhow::Error::from(Named(io()));
        assert_eq!(error_chain(&e), "open failed: no such thing");
        let e = anyhow::Error::from(io()).context("loading\nthe config");
        assert_eq!(error_chain(&e), "loading the config: no such thing");
    }

    #[test]
    fn hostname_is_readable_here() {
        assert!(hostname().is_some_and(|h| !h.is_empty()));
    }
}
