//! `k3rs server`: takes the data-dir lock, opens the datastore and starts the components in
//! order (the compactor, the etcd API socket, the Kubernetes API server with its controllers
//! and scheduler ([`apiserver`]), then the node ([`agent`])), and on shutdown stops
//! accepting, drains them within a grace period, closes the datastore and releases the lock.
//!
//! The configuration arrives validated ([`config::ServerConfig`]); nothing here parses
//! user input. Every failure is a [`ServerError`] naming what failed; nothing panics.

pub mod agent;
pub mod apiserver;
pub mod components;
pub mod config;
pub mod layout;
pub mod reset;

use std::future::Future;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use self::config::{DatastoreConfig, ServerConfig};
use crate::store::compactor::{self, CompactorConfig};
use crate::store::etcd::{EtcdOptions, EtcdStore};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{Store, StoreError};
use crate::util::lockfile::{LockError, LockFile};

/// How long components get to finish in-flight work after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the etcd API may take to accept connections after start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("data dir {data_dir} is in use by another k3rs process{}; lock file {lock}", pid_suffix(*.pid))]
    DataDirInUse { data_dir: PathBuf, lock: PathBuf, pid: Option<u32> },
    #[error("cannot take the data-dir lock: {0}")]
    Lock(#[source] LockError),
    #[error("cannot open the datastore ({datastore}): {source}")]
    OpenDatastore {
        datastore: String,
        #[source]
        source: StoreError,
    },
    #[error("opening the datastore stopped unexpectedly")]
    OpenDatastoreAborted,
    #[error("cannot remove stale socket {path}: {source}")]
    RemoveSocket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("etcd API on {path} failed: {reason}")]
    EtcdApi { path: PathBuf, reason: String },
    #[error("etcd API on {path} did not accept connections within {}s", READY_TIMEOUT.as_secs())]
    EtcdApiNotReady { path: PathBuf },
    #[error("{name} stopped unexpectedly: {reason}")]
    ComponentStopped { name: String, reason: String },
    #[error("the compactor stopped unexpectedly: {reason}")]
    CompactorStopped { reason: String },
    #[error("the API server could not start: {0}")]
    ApiServer(String),
    #[error("the node could not start: {0}")]
    Agent(String),
    #[error("closing the datastore failed: {0}")]
    CloseDatastore(#[source] StoreError),
    #[error("cluster reset failed: {0}")]
    Restore(#[source] crate::store::sqlite::snapshot::SnapshotError),
}

fn pid_suffix(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

/// Runs the server until `shutdown` resolves (or a component fails), then stops it cleanly.
pub async fn run(config: ServerConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
    let layout = &config.data_dir;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), data_dir = %layout.root().display(), "starting k3rs server");
    let lock = lock_data_dir(layout)?;

    let mut shutdown = std::pin::pin!(shutdown);
    let mut open = std::pin::pin!(open_datastore(&config));
    let store = tokio::select! {
        store = &mut open => store?,
        () = &mut shutdown => {
            // Connecting to etcd may wait on the network: give up. Opening the embedded
            // database is bounded disk work on a file the lock protects: finish and close it
            // before the lock goes.
            if config.datastore == DatastoreConfig::Embedded {
                if let Ok(store) = open.await {
                    let _ = store.close().await;
                }
            }
            tracing::info!("stopped before the datastore was open");
            return Ok(());
        }
    };
    let result = serve(&config, store.clone(), shutdown).await;
    let closed = store.close().await.map_err(ServerError::CloseDatastore);
    if config.datastore == DatastoreConfig::Embedded {
        // Nothing listens on it any more; a leftover socket only misleads clients.
        let _ = std::fs::remove_file(layout.etcd_socket());
    }
    drop(lock);
    result.and(closed)?;
    tracing::info!("k3rs server stopped");
    Ok(())
}

/// Creates the data dir's server side and takes its lock, so no other server uses it.
fn lock_data_dir(layout: &layout::DataDir) -> Result<LockFile, ServerError> {
    create_dir(layout.root(), None)?;
    create_dir(&layout.server(), Some(0o700))?;
    let lock = LockFile::acquire(&layout.lock_file()).map_err(|e| match e {
        LockError::Held { pid, path } => {
            ServerError::DataDirInUse { data_dir: layout.root().to_path_buf(), lock: path, pid }
        }
        other => ServerError::Lock(other),
    })?;
    tracing::debug!(lock = %lock.path().display(), "data dir locked");
    create_dir(&layout.db(), Some(0o700))?;
    Ok(lock)
}

/// Creates `path` (and its parents) if missing, and makes sure it has `mode` if one is given.
fn create_dir(path: &Path, mode: Option<u32>) -> Result<(), ServerError> {
    let fail = |source| ServerError::CreateDir { path: path.to_path_buf(), source };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    if let Some(mode) = mode {
        builder.mode(mode);
    }
    builder.create(path).map_err(fail)?;
    if let Some(mode) = mode {
        // An existing directory keeps its mode through `create`; private ones must be private.
        let meta = std::fs::metadata(path).map_err(fail)?;
        if meta.permissions().mode() & 0o777 != mode {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(fail)?;
        }
    }
    Ok(())
}

fn describe_datastore(config: &ServerConfig) -> String {
    match &config.datastore {
        DatastoreConfig::Embedded => format!("sqlite {}", config.data_dir.state_db().display()),
        DatastoreConfig::Etcd(etcd) => format!("etcd {}", etcd.endpoints.join(",")),
    }
}

async fn open_datastore(config: &ServerConfig) -> Result<Arc<dyn Store>, ServerError> {
    let datastore = describe_datastore(config);
    tracing::info!(datastore = %datastore, "opening the datastore");
    let opened: Result<Arc<dyn Store>, StoreError> = match &config.datastore {
        DatastoreConfig::Embedded => {
            let path = config.data_dir.state_db();
            // Opening may recover a WAL: disk work that must not stall the runtime's workers.
            tokio::task::spawn_blocking(move || SqliteStore::open(&path, SqliteOptions::default()))
                .await
                .map_err(|_| ServerError::OpenDatastoreAborted)?
                .map(|s| Arc::new(s) as Arc<dyn Store>)
        }
        DatastoreConfig::Etcd(etcd) => EtcdStore::connect(EtcdOptions {
            endpoints: etcd.endpoints.clone(),
            ca_file: etcd.ca_file.clone(),
            cert_file: etcd.cert_file.clone(),
            key_file: etcd.key_file.clone(),
            ..Default::default()
        })
        .await
        .map(|s| Arc::new(s) as Arc<dyn Store>),
    };
    opened.map_err(|source| ServerError::OpenDatastore { datastore, source })
}

/// A running component: its task's result (a panic is an `Err` of the join).
type EtcdTask = JoinHandle<anyhow::Result<()>>;

/// A supervised long-running task and its name: if it ends before shutdown (returns or
/// panics), the server stops with an error naming it.
pub type Task = (String, JoinHandle<()>);

/// Starts the components, waits for `shutdown` or a failure, then drains them.
async fn serve(
    config: &ServerConfig,
    store: Arc<dyn Store>,
    mut shutdown: Pin<&mut (impl Future<Output = ()> + Send)>,
) -> Result<(), ServerError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = move || {
        let mut rx = stop_rx.clone();
        async move {
            // A dropped sender also means stop.
            let _ = rx.wait_for(|stopped| *stopped).await;
        }
    };

    let mut compactor = tokio::spawn(compactor::run(store.clone(), CompactorConfig::default(), stop()));

    let socket = config.data_dir.etcd_socket();
    let mut etcd_api: Option<EtcdTask> = None;
    let mut failure = None;
    // Set once `shutdown` has resolved: it must not be polled again.
    let mut stopping = false;
    let wants_etcd_api = !config.disabled.contains(components::ETCD_API);
    match (&config.datastore, wants_etcd_api) {
        (DatastoreConfig::Embedded, true) => {
            // We hold the data-dir lock, so a socket file left here is from a process gone.
            match std::fs::remove_file(&socket) {
                Ok(()) => tracing::debug!(path = %socket.display(), "removed stale etcd API socket"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => failure = Some(ServerError::RemoveSocket { path: socket.clone(), source }),
            }
            if failure.is_none() {
                let path = socket.clone();
                let api_store = store.clone();
                let stopped = stop();
                etcd_api = Some(tokio::spawn(async move { crate::etcdapi::serve(api_store, &path, stopped).await }));
                match wait_until_accepting(&socket, &mut etcd_api, shutdown.as_mut()).await {
                    Ok(Startup::Ready) => {}
                    Ok(Startup::ShutdownRequested) => stopping = true,
                    Err(e) => failure = Some(e),
                }
            }
        }
        (DatastoreConfig::Embedded, false) => tracing::info!("etcd API disabled"),
        (DatastoreConfig::Etcd(_), _) => {
            tracing::info!("etcd API not served: the datastore is an external etcd, which clients can reach directly")
        }
    }

    let mut api_tasks = Vec::new();
    let mut api_url = String::new();
    if failure.is_none() && !stopping {
        match apiserver::start(config, store.clone(), stop.clone()).await {
            Ok(started) => {
                api_tasks = started.tasks;
                api_url = started.url;
                if !config.disable_agent {
                    match agent::start(
                        config,
                        started.api.clone(),
                        &started.ctx,
                        apiserver::node_ip(config),
                        stop.clone(),
                    )
                    .await
                    {
                        Ok(tasks) => api_tasks.extend(tasks),
                        Err(e) => failure = Some(ServerError::Agent(e.to_string())),
                    }
                }
            }
            Err(e) => failure = Some(ServerError::ApiServer(e.to_string())),
        }
    }

    if failure.is_none() && !stopping {
        if let Some(task) = snapshot_schedule(config, stop()) {
            api_tasks.push(task);
        }
    }

    if failure.is_none() && !stopping {
        tracing::info!(
            api = %api_url,
            datastore = %describe_datastore(config),
            etcd_api = %etcd_api.as_ref().map_or_else(|| "off".to_string(), |_| socket.display().to_string()),
            "k3rs server is ready"
        );
        tokio::select! {
            () = &mut shutdown => {}
            res = join_optional(&mut etcd_api) => {
                etcd_api = None;
                let reason = match res {
                    Ok(Ok(())) => "stopped unexpectedly".to_string(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(e) => format!("task failed: {e}"),
                };
                failure = Some(ServerError::EtcdApi { path: socket.clone(), reason });
            }
            (name, res) = first_exit(&mut api_tasks) => {
                let reason = match res {
                    Ok(()) => "it returned".to_string(),
                    Err(e) => format!("task failed: {e}"),
                };
                failure = Some(ServerError::ComponentStopped { name, reason });
            }
            res = &mut compactor => {
                let reason = match res {
                    Ok(()) => "it returned".to_string(),
                    Err(e) => format!("task failed: {e}"),
                };
                failure = Some(ServerError::CompactorStopped { reason });
            }
        }
    }
    if let Some(e) = &failure {
        tracing::error!(error = %e, "stopping after a failure");
    }

    // Stop accepting and drain, within the grace period.
    let _ = stop_tx.send(true);
    let drain = async {
        if let Some(api) = etcd_api.as_mut() {
            match api.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = format_args!("{e:#}"), "etcd API stopped with an error"),
                Err(e) => tracing::warn!(error = %e, "etcd API task failed"),
            }
        }
        if !compactor.is_finished() {
            let _ = (&mut compactor).await;
        }
        for (name, t) in api_tasks.iter_mut() {
            if tokio::time::timeout(Duration::from_secs(1), &mut *t).await.is_err() {
                tracing::warn!(component = %name, "still stopping after 1 s");
                let _ = t.await;
            }
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!(grace_secs = SHUTDOWN_GRACE.as_secs(), "components did not stop within the grace period");
    }
    if let Some(api) = etcd_api {
        api.abort();
    }
    compactor.abort();
    for (_, t) in &api_tasks {
        t.abort();
    }
    failure.map_or(Ok(()), Err)
}

/// The scheduled snapshots of the embedded datastore, unless disabled or the datastore is
/// an external etcd (whose snapshots belong to the etcd cluster).
fn snapshot_schedule(config: &ServerConfig, stop: impl Future<Output = ()> + Send + 'static) -> Option<Task> {
    let snapshots = &config.snapshots;
    if config.datastore != DatastoreConfig::Embedded {
        tracing::info!("scheduled snapshots off: the datastore is an external etcd; snapshot it with etcd's tools");
        return None;
    }
    if snapshots.disabled {
        tracing::info!("scheduled snapshots are disabled");
        return None;
    }
    let scheduled = crate::store::snapshots::Scheduled {
        target: crate::store::snapshots::Target {
            db: config.data_dir.state_db(),
            dir: snapshots.dir_in(&config.data_dir),
            create_dir: snapshots.dir.is_none(),
            name: snapshots.name.clone(),
            node_name: config.node.name.clone(),
        },
        schedule: snapshots.schedule.clone(),
        retention: snapshots.retention,
    };
    tracing::info!(
        schedule = %snapshots.schedule_text,
        retention = snapshots.retention,
        dir = %scheduled.target.dir.display(),
        "scheduled snapshots on"
    );
    Some(("etcd-snapshot schedule".to_string(), tokio::spawn(crate::store::snapshots::run_schedule(scheduled, stop))))
}

enum Startup {
    Ready,
    ShutdownRequested,
}

/// Waits until the etcd API's socket accepts a connection; fails if the task ends first
/// (then `api` is taken: a finished task must not be awaited again) or takes too long.
async fn wait_until_accepting(
    socket: &Path,
    api: &mut Option<EtcdTask>,
    mut shutdown: Pin<&mut (impl Future<Output = ()> + Send)>,
) -> Result<Startup, ServerError> {
    let probe = async {
        loop {
            if tokio::net::UnixStream::connect(socket).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        () = probe => Ok(Startup::Ready),
        res = join_optional(api) => {
            *api = None;
            Err(ServerError::EtcdApi {
                path: socket.to_path_buf(),
                reason: match res {
                    Ok(Ok(())) => "stopped before accepting connections".into(),
                    Ok(Err(e)) => format!("{e:#}"),
                    Err(e) => format!("task failed: {e}"),
                },
            })
        }
        () = tokio::time::sleep(READY_TIMEOUT) => Err(ServerError::EtcdApiNotReady { path: socket.to_path_buf() }),
        () = shutdown.as_mut() => Ok(Startup::ShutdownRequested),
    }
}

/// The first of `tasks` to end, taken out of the list; never, if there are none.
async fn first_exit(tasks: &mut Vec<Task>) -> (String, Result<(), tokio::task::JoinError>) {
    if tasks.is_empty() {
        return std::future::pending().await;
    }
    let (res, i, _) = futures::future::select_all(tasks.iter_mut().map(|(_, h)| h)).await;
    let (name, _) = tasks.remove(i);
    (name, res)
}

async fn join_optional(task: &mut Option<EtcdTask>) -> Result<anyhow::Result<()>, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_task_to_end_is_named_with_how_it_ended() {
        let mut tasks: Vec<Task> = vec![
            ("forever".into(), tokio::spawn(std::future::pending())),
            ("crashes".into(), tokio::spawn(async { panic!("boom") })),
        ];
        let (name, res) = first_exit(&mut tasks).await;
        assert_eq!(name, "crashes");
        assert!(res.unwrap_err().is_panic());
        assert_eq!(tasks.len(), 1, "the ended task is taken out, so it is never awaited again");
        tasks.push(("returns".into(), tokio::spawn(async {})));
        let (name, res) = first_exit(&mut tasks).await;
        assert_eq!(name, "returns");
        assert!(res.is_ok());
        tasks[0].1.abort();
    }
}
