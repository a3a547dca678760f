//! What the pod worker needs from the node — images, sandboxes, containers — as one trait,
//! so the worker's state machine is tested against a fake and runs against the real image
//! store, pod network and libcontainer runtime.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};

use super::network::NetError;
use super::runtime::RuntimeError;
use super::spec::SpecError;
use super::status::AttemptState;
use super::volumes::Sources;
use crate::images::ImageError;

/// An image ready on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// The normalised name (`docker.io/library/busybox:1.36`).
    pub name: String,
    /// What `imageID` shows (`docker.io/library/busybox@sha256:…`, or `sha256:<config>`).
    pub id: String,
    pub size: u64,
}

/// A pod's sandbox as the backend made it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxInfo {
    /// None for hostNetwork pods (their IP is the node's).
    pub ip: Option<String>,
}

/// Everything needed to create one container of a pod.
#[derive(Clone, Debug)]
pub struct CreateContainer {
    pub pod: Pod,
    pub container: String,
    pub init: bool,
    /// 0 for the first attempt.
    pub attempt: u32,
    pub image: ImageInfo,
    /// Pod volume name → host path.
    pub volumes: BTreeMap<String, PathBuf>,
    pub sources: Sources,
    /// Services of the pod's namespace (for the service environment variables).
    pub services: Vec<Service>,
    pub pod_ip: Option<String>,
    pub log_path: PathBuf,
}

/// Why the node could not do what a pod worker asked. The `Display` of each variant is what
/// the pod's events and container statuses show (`Failed to create pod sandbox: …`,
/// CreateContainerError), so it is kept as the node's parts word it.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The container named in a request is not in the pod's spec.
    #[error("no container {0:?} in the pod")]
    NoContainer(String),
    /// A container was asked for before its pod's sandbox was set up.
    #[error("the pod's sandbox is not set up")]
    NoSandbox,
    /// The sandbox's namespace holder exited: its namespaces must not be joined by PID.
    #[error("the pod's sandbox is gone (its namespace holder exited)")]
    SandboxGone,
    /// The image was removed between pulling it and creating the container.
    #[error("image {0:?} is gone from the node")]
    ImageGone(String),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Network(#[from] NetError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Policy(#[from] super::policy::PolicyError),
}

impl BackendError {
    /// The container asked about does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        matches!(self, BackendError::Runtime(RuntimeError::NotFound(_)))
    }
}

/// Why a container could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The pod's configuration cannot be satisfied yet (a missing ConfigMap key...):
    /// the container waits with CreateContainerConfigError.
    #[error(transparent)]
    Config(SpecError),
    /// The node failed: CreateContainerError.
    #[error(transparent)]
    Runtime(BackendError),
}

/// One container the runtime has, with the labels it was created with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRecord {
    pub id: String,
    pub pod_uid: String,
    pub container: String,
    pub attempt: u32,
    pub image: String,
    pub image_id: String,
    pub state: AttemptState,
}

/// Labels every container carries so a restarted kubelet can map it back to its pod.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_CONTAINER: &str = "io.kubernetes.container.name";
pub const LABEL_ATTEMPT: &str = "io.kubernetes.container.attempt";
pub const LABEL_IMAGE: &str = "io.kubernetes.container.image";
pub const LABEL_IMAGE_ID: &str = "io.kubernetes.container.image-id";

#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// The image if the node has it.
    async fn image_present(&self, image: &str) -> Option<ImageInfo>;
    /// Pulls the image with the node's registry configuration and the pod's
    /// imagePullSecrets (found in `sources`).
    async fn pull_image(&self, image: &str, pod: &Pod, sources: &Sources) -> Result<ImageInfo, BackendError>;
    async fn sandbox_up(&self, pod: &Pod) -> Result<SandboxInfo, BackendError>;
    async fn sandbox_down(&self, pod_uid: &str) -> Result<(), BackendError>;
    /// False once the pod's sandbox set up by this process is gone (its namespaces' holder
    /// died): the pod's containers must not join what is left of it.
    async fn sandbox_alive(&self, pod_uid: &str) -> bool;
    /// Creates and starts the container; returns its id.
    async fn run_container(&self, req: CreateContainer) -> Result<String, CreateError>;
    /// SIGTERM (or the image's stop signal), up to `grace`, then SIGKILL.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), BackendError>;
    async fn remove_container(&self, id: &str) -> Result<(), BackendError>;
    /// The state of one container.
    async fn state(&self, id: &str) -> Result<AttemptState, BackendError>;
    /// Every container on the node.
    async fn containers(&self) -> Result<Vec<ContainerRecord>, BackendError>;
    /// Runs `command` in the running container `id` (an exec probe): its exit code and up to
    /// 10 KiB of its output, stdout then stderr; an error when it did not finish in `timeout`.
    async fn exec_probe(&self, id: &str, command: Vec<String>, timeout: Duration) -> Result<(i32, String), String>;
    /// The node's pods directory (`<data-dir>/agent/pods`).
    fn pods_dir(&self) -> PathBuf;
    /// Where container logs go (`/var/log/pods`).
    fn log_root(&self) -> PathBuf;
    fn mounter(&self) -> &dyn super::volumes::Mounter;
}
