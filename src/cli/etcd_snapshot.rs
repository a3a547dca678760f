//! `k3rs etcd-snapshot save|ls|delete|prune`: snapshots of the embedded datastore, named and
//! kept as k3s keeps its etcd snapshots. The data dir, node name, snapshot directory and
//! datastore follow the same rules as `k3rs server` (flag, `K3RS_*`, the config files, the
//! default), so the commands find what the server uses.
//!
//! `save` reads the live database itself, from this process, while the server runs: SQLite's
//! WAL lets a reader take a consistent copy without the server's help, and asking the server
//! instead would make a snapshot impossible exactly when it is most wanted (the server
//! stopped or failing). No lock is taken: the server's data-dir lock is for writers, and
//! `save` only reads the database and writes a new file. With an external etcd datastore the
//! commands refuse: those snapshots belong to the etcd cluster.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::config::{self, ConfigLocation, Host, Key, Raw};
use super::{error_chain, hostname, EXIT_FAILURE, EXIT_USAGE};
use crate::server::config::{DatastoreConfig, DEFAULT_ETCD_SNAPSHOT_RETENTION, DEFAULT_ON_DEMAND_SNAPSHOT_NAME};
use crate::store::snapshots::{self, SnapshotsError, Target};

#[derive(Debug, Args)]
pub(super) struct EtcdSnapshotArgs {
    /// Directory for all state [default: /var/lib/k3rs]
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<String>,

    /// The node's name, part of a snapshot's name [default: the hostname, lowercased]
    #[arg(long, value_name = "NAME", global = true)]
    node_name: Option<String>,

    /// Directory of the snapshots [default: <data-dir>/server/db/snapshots]
    #[arg(long = "dir", visible_alias = "etcd-snapshot-dir", value_name = "DIR", global = true)]
    dir: Option<String>,

    /// Name prefix of the snapshots, followed by -<node name>-<unix time> [default: on-demand]
    #[arg(long, value_name = "NAME", global = true)]
    name: Option<String>,

    /// Config file, read as `k3rs server` reads it [default: /etc/k3rs/config.yaml]
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,

    /// Debug logging (RUST_LOG, when set, overrides)
    #[arg(long, global = true)]
    debug: bool,

    #[command(subcommand)]
    command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Take a snapshot of the embedded datastore now (the server may be running)
    Save,
    /// List the snapshots
    #[command(visible_aliases = ["list", "l"])]
    Ls,
    /// Delete snapshots by name
    Delete {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
    /// Remove the snapshots with the --name prefix beyond the newest --snapshot-retention
    Prune {
        /// How many snapshots to keep; 0 keeps all [default: 5]
        #[arg(long, value_name = "N")]
        snapshot_retention: Option<String>,
    },
}

/// A command with its arguments checked.
enum Action {
    Save,
    Ls,
    Delete(Vec<String>),
    Prune(u32),
}

pub(super) fn run(args: EtcdSnapshotArgs) -> ExitCode {
    let checked = action(&args.command).and_then(|action| Ok((action, target(&args)?)));
    let (action, target) = match checked {
        Ok(c) => c,
        Err(e) => {
            eprintln!("k3rs: error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    super::init_logging(args.debug);
    match execute(action, &target) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("k3rs: error: {}", error_chain(&e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn action(command: &SnapshotCommand) -> Result<Action, String> {
    Ok(match command {
        SnapshotCommand::Save => Action::Save,
        SnapshotCommand::Ls => Action::Ls,
        SnapshotCommand::Delete { names } => {
            for name in names {
                snapshots::check_name(name).map_err(|e| format!("command line: {e}"))?;
            }
            Action::Delete(names.clone())
        }
        SnapshotCommand::Prune { snapshot_retention: None } => Action::Prune(DEFAULT_ETCD_SNAPSHOT_RETENTION),
        SnapshotCommand::Prune { snapshot_retention: Some(text) } => {
            Action::Prune(config::parse_retention(text).map_err(|e| format!("command line: snapshot-retention: {e}"))?)
        }
    })
}

/// Where the snapshots go: the server's settings with this command's flags over them. An
/// external etcd datastore is refused.
fn target(args: &EtcdSnapshotArgs) -> Result<Target, String> {
    let env = config::process_env();
    let location = ConfigLocation::choose(args.config.as_deref(), &env).map_err(|e| e.to_string())?;
    let files = location.load().map_err(|e| e.to_string())?;
    let host = Host { hostname: hostname(), cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")) };
    let mut cli: Vec<(Key, Raw)> = Vec::new();
    let flags = [(Key::DataDir, &args.data_dir), (Key::NodeName, &args.node_name), (Key::EtcdSnapshotDir, &args.dir)];
    for (key, value) in flags {
        if let Some(v) = value {
            cli.push((key, Raw::Text(v.clone())));
        }
    }
    let resolved = config::resolve(&files, &env, &cli, &host).map_err(|e| e.to_string())?;
    let c = resolved.config;
    if c.datastore != DatastoreConfig::Embedded {
        return Err("etcd-snapshot: the datastore is an external etcd (datastore-endpoint): its snapshots belong to the etcd cluster; take them with etcdctl snapshot save".into());
    }
    let name = args.name.clone().unwrap_or_else(|| DEFAULT_ON_DEMAND_SNAPSHOT_NAME.to_string());
    snapshots::check_name(&name).map_err(|e| format!("command line: name: {e}"))?;
    Ok(Target {
        db: c.data_dir.state_db(),
        dir: c.snapshots.dir_in(&c.data_dir),
        create_dir: c.snapshots.dir.is_none(),
        name,
        node_name: c.node.name,
    })
}

fn now_unix() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn execute(action: Action, target: &Target) -> anyhow::Result<ExitCode> {
    match action {
        Action::Save => {
            let started = std::time::Instant::now();
            let saved = snapshots::take(target, now_unix())?;
            tracing::info!(
                revision = saved.revision.0,
                size = saved.size,
                took = ?started.elapsed(),
                "Saved snapshot {}",
                saved.path.display()
            );
        }
        Action::Ls => {
            let files = match snapshots::list(&target.dir) {
                // Nothing saved yet: an empty list, as k3s shows it.
                Err(SnapshotsError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound && target.create_dir =>
                {
                    Vec::new()
                }
                other => other?,
            };
            print!("{}", snapshots::table(&files, &crate::util::tz::local()));
        }
        Action::Delete(names) => {
            let mut failed = false;
            for name in &names {
                let path = target.dir.join(name);
                match std::fs::remove_file(&path) {
                    Ok(()) => tracing::info!("Removed snapshot {}", path.display()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        eprintln!("k3rs: error: snapshot {name} not found in {}", target.dir.display());
                        failed = true;
                    }
                    Err(e) => {
                        eprintln!("k3rs: error: cannot remove snapshot {}: {e}", path.display());
                        failed = true;
                    }
                }
            }
            if failed {
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
        }
        Action::Prune(keep) => {
            let removed = snapshots::prune(&target.dir, &target.name, keep)?;
            tracing::info!(
                "Applied retention {keep} to snapshots named {}* in {}: {} removed",
                target.name,
                target.dir.display(),
                removed.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
