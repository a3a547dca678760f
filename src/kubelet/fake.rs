//! An in-memory node and API for the kubelet's unit tests: [`FakeBackend`] keeps containers,
//! images and sandboxes as records the tests inspect and change (a container exits, a
//! sandbox's holder dies, a sandbox set-up fails), [`FakeApi`] records what a worker writes,
//! [`Events`] the events it emits. The pod worker's and the pod manager's tests share them.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus, Service};

use super::backend::*;
use super::runtime::RuntimeError;
use super::spec::SpecError;
use super::status::{AttemptState, Terminated};
use super::volumes::{Mounter, Sources};
use super::worker::{EventSink, PodApi};
use crate::apiserver::status::ApiError;
use crate::images::ImageError;

/// What the fake node has, and what was asked of it.
#[derive(Default)]
pub struct Node {
    pub containers: Vec<ContainerRecord>,
    pub images: Vec<String>,
    pub stopped: Vec<(String, Duration)>,
    pub removed: Vec<String>,
    /// Every sandbox set up, in order (a pod set up twice is here twice).
    pub sandboxes: Vec<String>,
    /// Sandboxes whose holder died.
    pub dead_sandboxes: Vec<String>,
    /// Pods whose sandbox was torn down, in order.
    pub torn_down: Vec<String>,
    /// How many of the next sandbox set-ups fail.
    pub failing_sandboxes: u32,
    /// Every container start fails with a configuration error: this ConfigMap is missing.
    pub missing_config_map: Option<String>,
    pub next_id: u32,
    /// Exec probes fail (exit 1, "unhealthy") while this is set.
    pub exec_failing: bool,
    /// Every exec probe run: container id and command.
    pub execs: Vec<(String, Vec<String>)>,
}

pub struct FakeBackend {
    pub node: Mutex<Node>,
    dir: tempfile::TempDir,
}

impl FakeBackend {
    /// A node that has `images` and nothing else.
    pub fn new(images: &[&str]) -> FakeBackend {
        FakeBackend {
            node: Mutex::new(Node { images: images.iter().map(|s| s.to_string()).collect(), ..Default::default() }),
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The fake node's records; a test that panicked while holding them still sees them.
    pub fn node(&self) -> std::sync::MutexGuard<'_, Node> {
        self.node.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct NoMounts;
impl Mounter for NoMounts {
    fn tmpfs(&self, _: &std::path::Path, _: Option<u64>) -> std::io::Result<()> {
        Ok(())
    }
    fn unmount(&self, _: &std::path::Path) -> std::io::Result<()> {
        Ok(())
    }
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

#[async_trait::async_trait]
impl Backend for FakeBackend {
    async fn image_present(&self, image: &str) -> Option<ImageInfo> {
        let n = self.node();
        n.images.iter().any(|i| i == image).then(|| ImageInfo {
            name: image.to_string(),
            id: format!("{image}@sha256:00"),
            size: 1,
        })
    }
    async fn pull_image(&self, image: &str, _pod: &Pod, _sources: &Sources) -> Result<ImageInfo, BackendError> {
        let n = self.node();
        if n.images.iter().any(|i| i == image) {
            Ok(ImageInfo { name: image.to_string(), id: format!("{image}@sha256:00"), size: 1 })
        } else {
            Err(ImageError::NotFound(image.to_string()).into())
        }
    }
    async fn sandbox_up(&self, pod: &Pod) -> Result<SandboxInfo, BackendError> {
        let uid = uid_of(pod);
        let mut n = self.node();
        if n.failing_sandboxes > 0 {
            n.failing_sandboxes -= 1;
            return Err(
                RuntimeError::Cgroup { path: format!("/kubepods/pod{uid}"), message: "no space left".into() }.into()
            );
        }
        n.dead_sandboxes.retain(|s| s != &uid);
        n.sandboxes.push(uid);
        Ok(SandboxInfo { ip: Some("10.42.0.7".into()) })
    }
    async fn sandbox_down(&self, uid: &str) -> Result<(), BackendError> {
        let mut n = self.node();
        n.sandboxes.retain(|s| s != uid);
        n.torn_down.push(uid.to_string());
        Ok(())
    }
    async fn sandbox_alive(&self, uid: &str) -> bool {
        !self.node().dead_sandboxes.iter().any(|s| s == uid)
    }
    async fn run_container(&self, req: CreateContainer) -> Result<String, CreateError> {
        let mut n = self.node();
        if let Some(name) = n.missing_config_map.clone() {
            return Err(CreateError::Config(SpecError::ConfigMapNotFound(name)));
        }
        n.next_id += 1;
        let id = format!("id{}", n.next_id);
        n.containers.push(ContainerRecord {
            id: id.clone(),
            pod_uid: uid_of(&req.pod),
            container: req.container,
            attempt: req.attempt,
            image: req.image.name,
            image_id: req.image.id,
            state: AttemptState::Running { started_at: "2026-01-01T00:00:00Z".into() },
        });
        Ok(id)
    }
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), BackendError> {
        let mut n = self.node();
        n.stopped.push((id.to_string(), grace));
        for c in n.containers.iter_mut().filter(|c| c.id == id) {
            c.state = exited(137);
        }
        Ok(())
    }
    async fn remove_container(&self, id: &str) -> Result<(), BackendError> {
        let mut n = self.node();
        n.removed.push(id.to_string());
        n.containers.retain(|c| c.id != id);
        Ok(())
    }
    async fn state(&self, id: &str) -> Result<AttemptState, BackendError> {
        self.node()
            .containers
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.state.clone())
            .ok_or_else(|| RuntimeError::NotFound(id.to_string()).into())
    }
    async fn containers(&self) -> Result<Vec<ContainerRecord>, BackendError> {
        Ok(self.node().containers.clone())
    }
    async fn exec_probe(&self, id: &str, command: Vec<String>, _timeout: Duration) -> Result<(i32, String), String> {
        let mut n = self.node();
        n.execs.push((id.to_string(), command));
        Ok(if n.exec_failing { (1, "unhealthy\n".into()) } else { (0, String::new()) })
    }
    fn pods_dir(&self) -> PathBuf {
        self.dir.path().join("pods")
    }
    fn log_root(&self) -> PathBuf {
        self.dir.path().join("logs")
    }
    fn mounter(&self) -> &dyn Mounter {
        &NoMounts
    }
}

/// The state of a container that exited with `code`.
pub fn exited(code: i32) -> AttemptState {
    AttemptState::Exited(Terminated {
        exit_code: code,
        reason: if code == 0 { "Completed".into() } else { "Error".into() },
        message: None,
        started_at: Some("2026-01-01T00:00:00Z".into()),
        finished_at: Some("2026-01-01T00:00:01Z".into()),
        container_id: String::new(),
    })
}

/// Records the statuses written and whether the final delete was made.
#[derive(Default)]
pub struct FakeApi {
    pub statuses: Mutex<Vec<PodStatus>>,
    pub deleted: Mutex<bool>,
}

#[async_trait::async_trait]
impl PodApi for FakeApi {
    async fn patch_status(&self, _pod: &Pod, status: &PodStatus) -> Result<(), ApiError> {
        self.statuses.lock().unwrap_or_else(|p| p.into_inner()).push(status.clone());
        Ok(())
    }
    async fn delete_final(&self, _pod: &Pod) -> Result<(), ApiError> {
        *self.deleted.lock().unwrap_or_else(|p| p.into_inner()) = true;
        Ok(())
    }
    async fn sources(&self, _pod: &Pod) -> Result<Sources, ApiError> {
        Ok(Sources::default())
    }
    async fn services(&self, _ns: &str) -> Result<Vec<Service>, ApiError> {
        Ok(Vec::new())
    }
}

/// Events as (warning, reason, message).
#[derive(Default)]
pub struct Events(pub Mutex<Vec<(bool, String, String)>>);

impl Events {
    pub fn reasons(&self) -> Vec<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|e| e.1.clone()).collect()
    }
}

impl EventSink for Events {
    fn event(&self, _involved: &Pod, warning: bool, reason: &str, message: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push((warning, reason.into(), message.into()));
    }
}
