//! The real [`Backend`]: images from the node's image store, sandboxes from the pod network,
//! containers through the libcontainer runtime with specs from [`super::spec`]. Also the
//! [`PodStreams`] the API server's `pods/log`, `pods/exec` and `pods/attach` use.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::Value;

use super::backend::*;
use super::network::{PodNetwork, Sandbox, SandboxRequest};
use super::policy::{NoPolicy, PolicyGate};
use super::runtime::{self, ContainerState, CreateRequest, PodCgroups, Runtime, SysCgroups};
use super::spec::{self, EnvSources, SandboxPaths, SpecInput};
use super::status::{AttemptState, Terminated};
use super::volumes::Sources;
use super::volumes::{Mounter, SysMounter};
use crate::apiserver::status::ApiError;
use crate::apiserver::streaming::{self, ExitStatus, LogOptions, PodStreams, StreamOptions, StreamSession};
use crate::images::{Credential, Image, ImageRef, ImageStore, PullOptions, RegistriesConfig};

/// The node's identity and addresses, as containers see them.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub name: String,
    pub ip: IpAddr,
    pub hostname: String,
    /// The `kubernetes` service's address and port (KUBERNETES_SERVICE_HOST/_PORT).
    pub kubernetes_service: (String, u16),
    pub log_root: PathBuf,
    pub pods_dir: PathBuf,
    pub containers_dir: PathBuf,
}

pub struct NodeBackend {
    pub node: NodeInfo,
    pub runtime: Arc<dyn Runtime>,
    pub images: Arc<ImageStore>,
    pub network: Arc<PodNetwork>,
    pub registries: RegistriesConfig,
    pub cgroups: Arc<dyn PodCgroups>,
    /// Waited on between a sandbox's network and its containers.
    pub policy: Arc<dyn PolicyGate>,
    sandboxes: Mutex<HashMap<String, Sandbox>>,
}

/// The stored pod the API server's streaming handlers pass, as a `Pod`.
fn decode_pod(v: &Value) -> Result<Pod, ApiError> {
    serde_json::from_value(v.clone()).map_err(|e| ApiError::internal(format!("the pod cannot be read: {e}")))
}

/// The uid the node runs `pod` under: a mirror pod's is its static pod's, which the mirror
/// annotation holds.
fn running_uid(pod: &Pod) -> &str {
    super::static_pods::mirror_hash(pod).or(pod.metadata.uid.as_deref()).unwrap_or("")
}

fn find_container(pod: &Pod, name: &str, init: bool) -> Option<Container> {
    let spec = pod.spec.as_ref()?;
    let list = if init { spec.init_containers.as_ref()? } else { &spec.containers };
    list.iter().find(|c| c.name == name).cloned()
}

fn new_id() -> String {
    let mut b = [0u8; 32];
    for x in b.iter_mut() {
        *x = fastrand::u8(..);
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Registry credentials from an imagePullSecret's `.dockerconfigjson` (or legacy
/// `.dockercfg`): per registry, a username and password or a base64 `auth`.
pub fn docker_credentials(secret: &BTreeMap<String, Vec<u8>>) -> Vec<Credential> {
    use base64::Engine;
    let mut out = Vec::new();
    let auths = if let Some(j) = secret.get(".dockerconfigjson") {
        serde_json::from_slice::<Value>(j).ok().and_then(|v| v.get("auths").cloned())
    } else {
        secret.get(".dockercfg").and_then(|j| serde_json::from_slice::<Value>(j).ok())
    };
    for (registry, entry) in auths.as_ref().and_then(Value::as_object).into_iter().flatten() {
        let mut user = entry.get("username").and_then(Value::as_str).unwrap_or("").to_string();
        let mut pass = entry.get("password").and_then(Value::as_str).unwrap_or("").to_string();
        if let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) {
            if let Some((u, p)) = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| s.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())))
            {
                user = u;
                pass = p;
            }
        }
        let host = registry
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or("")
            .to_string();
        if !host.is_empty() && !user.is_empty() {
            out.push(Credential { registry: host, username: user, password: pass });
        }
    }
    out
}

fn image_info(img: &Image, name: &str) -> ImageInfo {
    ImageInfo {
        name: name.to_string(),
        id: img.repo_digests.first().cloned().unwrap_or_else(|| img.id.clone()),
        size: img.size,
    }
}

impl NodeBackend {
    pub fn new(
        node: NodeInfo,
        runtime: Arc<dyn Runtime>,
        images: Arc<ImageStore>,
        network: Arc<PodNetwork>,
        registries: RegistriesConfig,
    ) -> NodeBackend {
        NodeBackend {
            node,
            runtime,
            images,
            network,
            registries,
            cgroups: Arc::new(SysCgroups),
            policy: Arc::new(NoPolicy),
            sandboxes: Mutex::new(HashMap::new()),
        }
    }

    fn sandbox(&self, uid: &str) -> Option<Sandbox> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner()).get(uid).cloned()
    }

    /// The container of `pod` named `container`: the newest attempt, or the one before it.
    /// A mirror pod stands for its static pod, whose containers it finds (as upstream).
    async fn find(&self, pod: &Pod, container: &str, previous: bool) -> Result<(String, u32), ApiError> {
        let uid = running_uid(pod);
        let pod_name = pod.metadata.name.as_deref().unwrap_or("");
        let mut mine: Vec<(u32, String)> = self
            .runtime
            .list()
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .into_iter()
            .filter(|c| {
                c.labels.get(LABEL_POD_UID).map(String::as_str) == Some(uid)
                    && c.labels.get(LABEL_CONTAINER).map(String::as_str) == Some(container)
            })
            .map(|c| (c.labels.get(LABEL_ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0), c.id))
            .collect();
        mine.sort();
        let (attempt, id) = mine.pop().ok_or_else(|| {
            ApiError::bad_request(format!("container \"{container}\" in pod \"{pod_name}\" is not available"))
        })?;
        if previous {
            if attempt == 0 {
                return Err(ApiError::bad_request(format!(
                    "previous terminated container \"{container}\" in pod \"{pod_name}\" not found"
                )));
            }
            return Ok((id, attempt - 1));
        }
        Ok((id, attempt))
    }
}

fn to_state(id: &str, s: &runtime::ContainerStatus) -> AttemptState {
    match s.state {
        ContainerState::Created => AttemptState::Created,
        ContainerState::Running => AttemptState::Running { started_at: s.started_at.clone().unwrap_or_default() },
        ContainerState::Exited => AttemptState::Exited(Terminated {
            exit_code: s.exit_code.unwrap_or(0),
            reason: s.reason.clone().unwrap_or_else(|| {
                if s.exit_code == Some(0) {
                    "Completed".into()
                } else {
                    "Error".into()
                }
            }),
            message: s.message.clone(),
            started_at: s.started_at.clone(),
            finished_at: s.finished_at.clone(),
            container_id: id.to_string(),
        }),
        ContainerState::Unknown => AttemptState::Exited(Terminated {
            exit_code: 137,
            reason: "ContainerStatusUnknown".into(),
            message: Some("The container could not be located when the pod was terminated".into()),
            started_at: s.started_at.clone(),
            finished_at: s.finished_at.clone(),
            container_id: id.to_string(),
        }),
    }
}

#[async_trait]
impl Backend for NodeBackend {
    async fn image_present(&self, image: &str) -> Option<ImageInfo> {
        let name = ImageRef::parse(image).ok()?.to_string();
        let img = self.images.resolve(&name).ok().flatten()?;
        Some(image_info(&img, &name))
    }

    async fn pull_image(&self, image: &str, pod: &Pod, sources: &Sources) -> Result<ImageInfo, BackendError> {
        let name = ImageRef::parse(image)?.to_string();
        let mut credentials = Vec::new();
        for s in pod.spec.as_ref().and_then(|s| s.image_pull_secrets.as_ref()).into_iter().flatten() {
            let Some(secret) = sources.secret_data(&s.name) else {
                continue;
            };
            credentials.extend(docker_credentials(&secret));
        }
        let opts = PullOptions { registries: self.registries.clone(), credentials };
        let img = self.images.pull(&name, &opts).await?;
        Ok(image_info(&img, &name))
    }

    async fn sandbox_up(&self, pod: &Pod) -> Result<SandboxInfo, BackendError> {
        let req = SandboxRequest::from_pod(pod, &self.node.hostname);
        let qos = crate::domain::pod::qos_class(pod);
        runtime::ensure_pod_cgroup(self.cgroups.as_ref(), qos, &req.uid, &spec::pod_resources(pod)).await?;
        let sb = self.network.setup(&req).await?;
        if let Some(IpAddr::V4(v4)) = sb.ip {
            // No container of the pod runs before its network policy is in force.
            if let Err(e) = self.policy.sandbox_ready(pod, v4).await {
                self.policy.sandbox_gone(&req.uid);
                if let Err(t) = self.network.teardown(&req.uid).await {
                    tracing::warn!(pod = %req.uid, error = %t, "cannot tear down the sandbox network policy refused");
                }
                return Err(e.into());
            }
        }
        let ip = sb.ip.map(|i| i.to_string());
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner()).insert(req.uid.clone(), sb);
        Ok(SandboxInfo { ip })
    }

    async fn sandbox_down(&self, pod_uid: &str) -> Result<(), BackendError> {
        self.sandboxes.lock().unwrap_or_else(|e| e.into_inner()).remove(pod_uid);
        self.network.teardown(pod_uid).await?;
        self.policy.sandbox_gone(pod_uid);
        runtime::remove_pod_cgroup(self.cgroups.as_ref(), pod_uid).await;
        Ok(())
    }

    async fn sandbox_alive(&self, pod_uid: &str) -> bool {
        self.sandbox(pod_uid).is_none_or(|s| s.holder.is_none_or(|h| h.alive()))
    }

    async fn run_container(&self, req: CreateContainer) -> Result<String, CreateError> {
        let pod = &req.pod;
        let c = find_container(pod, &req.container, req.init)
            .ok_or_else(|| CreateError::Runtime(BackendError::NoContainer(req.container.clone())))?;
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let sandbox = self.sandbox(&uid).ok_or(CreateError::Runtime(BackendError::NoSandbox))?;
        // Its namespaces are named by the holder's PID: never by a PID that is someone else's now.
        if sandbox.holder.is_some_and(|h| !h.alive()) {
            return Err(CreateError::Runtime(BackendError::SandboxGone));
        }
        let image = self
            .images
            .resolve(&req.image.name)
            .ok()
            .flatten()
            .ok_or_else(|| CreateError::Runtime(BackendError::ImageGone(req.image.name.clone())))?;
        let id = new_id();
        let rootfs_mount =
            self.images.prepare_rootfs(&image, &id).map_err(|e| CreateError::Runtime(BackendError::Image(e)))?;
        let rootfs = rootfs_mount.target.clone();
        let env_sources = EnvSources {
            config_maps: req
                .sources
                .config_maps
                .keys()
                .filter_map(|n| {
                    req.sources.config_map_data(n).map(|d| {
                        (n.clone(), d.into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect())
                    })
                })
                .collect(),
            secrets: req
                .sources
                .secrets
                .keys()
                .filter_map(|n| req.sources.secret_data(n).map(|d| (n.clone(), d)))
                .collect(),
            services: req.services.clone(),
            node_name: self.node.name.clone(),
            node_ip: self.node.ip.to_string(),
            pod_ip: req.pod_ip.clone().unwrap_or_else(|| self.node.ip.to_string()),
            pod_ips: vec![req.pod_ip.clone().unwrap_or_else(|| self.node.ip.to_string())],
            service_account_name: pod.spec.as_ref().and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
            kubernetes_service: self.node.kubernetes_service.clone(),
            node_allocatable: BTreeMap::new(),
        };
        let term_dir = self.node.pods_dir.join(&uid).join("containers").join(&req.container);
        let term_file = term_dir.join(format!("{}-termination-log", req.attempt));
        let _ = std::fs::create_dir_all(&term_dir).and_then(|_| std::fs::write(&term_file, b""));
        let qos = crate::domain::pod::qos_class(pod);
        let input = SpecInput {
            pod,
            container: &c,
            image: &image.config,
            rootfs,
            sandbox: SandboxPaths {
                netns: sandbox.netns.clone(),
                ipc: sandbox.ipc.clone(),
                uts: sandbox.uts.clone(),
                shm: None,
                hosts: sandbox.hosts.clone(),
                hostname: sandbox.hostname.clone(),
                resolv_conf: sandbox.resolv_conf.clone(),
            },
            volumes: &req.volumes,
            env_sources: &env_sources,
            cgroups_path: spec::container_cgroup_path(qos, &uid, &id),
            termination_message_path: Some(term_file),
        };
        let oci = match spec::container_spec(&input) {
            Ok(s) => s,
            Err(e) => {
                let _ = self.images.remove_rootfs(&id);
                return Err(CreateError::Config(e));
            }
        };
        let mut labels = BTreeMap::new();
        labels.insert(LABEL_POD_UID.to_string(), uid.clone());
        labels.insert(LABEL_POD_NAME.to_string(), pod.metadata.name.clone().unwrap_or_default());
        labels.insert(LABEL_POD_NAMESPACE.to_string(), pod.metadata.namespace.clone().unwrap_or_default());
        labels.insert(LABEL_CONTAINER.to_string(), req.container.clone());
        labels.insert(LABEL_ATTEMPT.to_string(), req.attempt.to_string());
        labels.insert(LABEL_IMAGE.to_string(), req.image.name.clone());
        labels.insert(LABEL_IMAGE_ID.to_string(), req.image.id.clone());
        let create = CreateRequest {
            id: id.clone(),
            bundle: self.node.containers_dir.join(&id),
            spec: oci,
            log_path: req.log_path.clone(),
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
            tty: c.tty.unwrap_or(false),
            labels,
            rootfs_mount: Some(rootfs_mount),
        };
        let t = std::time::Instant::now();
        let created = self.runtime.create(&create).await;
        tracing::debug!(target: "k3rs::kubelet::timing", id = %id, ms = t.elapsed().as_secs_f64() * 1e3, "runtime create");
        if let Err(e) = created {
            let _ = self.runtime.remove(&id).await;
            let _ = self.images.remove_rootfs(&id);
            return Err(CreateError::Runtime(e.into()));
        }
        tracing::debug!(id = %id, "starting the container");
        let t = std::time::Instant::now();
        let started = self.runtime.start(&id).await;
        tracing::debug!(target: "k3rs::kubelet::timing", id = %id, ms = t.elapsed().as_secs_f64() * 1e3, "runtime start");
        if let Err(e) = started {
            let _ = self.runtime.remove(&id).await;
            let _ = self.images.remove_rootfs(&id);
            return Err(CreateError::Runtime(e.into()));
        }
        Ok(id)
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), BackendError> {
        Ok(self.runtime.stop(id, libc::SIGTERM, grace).await?)
    }

    async fn remove_container(&self, id: &str) -> Result<(), BackendError> {
        let r = self.runtime.remove(id).await;
        let _ = self.images.remove_rootfs(id);
        Ok(r?)
    }

    async fn state(&self, id: &str) -> Result<AttemptState, BackendError> {
        let s = self.runtime.status(id).await?;
        Ok(to_state(id, &s))
    }

    async fn exec_probe(&self, id: &str, command: Vec<String>, timeout: Duration) -> Result<(i32, String), String> {
        use tokio::io::AsyncReadExt;
        /// Upstream keeps this much of a probe's output.
        const MAX_OUTPUT: u64 = 10 * 1024;
        let shown = format!("{:?}", command.join(" "));
        let req = runtime::ExecRequest { cmd: command, tty: false, stdin: false };
        let run = async {
            let sess = self.runtime.exec(id, &req).await.map_err(|e| e.to_string())?;
            let read = |r: Option<runtime::BoxedRead>| async move {
                let mut buf = Vec::new();
                if let Some(r) = r {
                    let _ = r.take(MAX_OUTPUT).read_to_end(&mut buf).await;
                }
                buf
            };
            let (mut out, err) = futures::join!(read(sess.stdout), read(sess.stderr));
            out.extend(err);
            out.truncate(MAX_OUTPUT as usize);
            let code = sess.exit.await.map_err(|e| e.to_string())?;
            Ok((code, String::from_utf8_lossy(&out).into_owned()))
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => Err(format!("command {shown} timed out")),
        }
    }

    async fn containers(&self) -> Result<Vec<ContainerRecord>, BackendError> {
        let all = self.runtime.list().await?;
        Ok(all
            .into_iter()
            .filter_map(|c| {
                let l = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
                let pod_uid = c.labels.get(LABEL_POD_UID)?.clone();
                Some(ContainerRecord {
                    state: to_state(&c.id, &c.status),
                    pod_uid,
                    container: l(LABEL_CONTAINER),
                    attempt: l(LABEL_ATTEMPT).parse().unwrap_or(0),
                    image: l(LABEL_IMAGE),
                    image_id: l(LABEL_IMAGE_ID),
                    id: c.id,
                })
            })
            .collect())
    }

    fn pods_dir(&self) -> PathBuf {
        self.node.pods_dir.clone()
    }

    fn log_root(&self) -> PathBuf {
        self.node.log_root.clone()
    }

    fn mounter(&self) -> &dyn Mounter {
        &SysMounter
    }
}

#[async_trait]
impl PodStreams for NodeBackend {
    async fn logs(&self, pod: &Value, container: &str, opts: LogOptions) -> Result<streaming::LogStream, ApiError> {
        let pod = decode_pod(pod)?;
        let (id, attempt) = self.find(&pod, container, opts.previous).await?;
        let meta = &pod.metadata;
        let path = super::logs::log_path(
            &self.node.log_root,
            meta.namespace.as_deref().unwrap_or(""),
            meta.name.as_deref().unwrap_or(""),
            running_uid(&pod),
            container,
            attempt,
        );
        let since = match (opts.since_time, opts.since_seconds) {
            (Some(t), _) => Some(t),
            (None, Some(secs)) => Some(time::OffsetDateTime::now_utc() - time::Duration::seconds(secs)),
            _ => None,
        };
        let klog = super::logs::LogOptions {
            follow: opts.follow && !opts.previous,
            tail_lines: opts.tail_lines.and_then(|n| usize::try_from(n).ok()),
            since_time: since.map(|t: time::OffsetDateTime| {
                t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
            }),
            timestamps: opts.timestamps,
            limit_bytes: opts.limit_bytes.and_then(|n| u64::try_from(n).ok()),
            stream: super::logs::LogStream::All,
        };
        // Following ends once the container has exited and its log is drained.
        let rt = self.runtime.clone();
        let done = async move {
            loop {
                match rt.status(&id).await {
                    Ok(s) if s.state == ContainerState::Running || s.state == ContainerState::Created => {}
                    _ => return,
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        Ok(super::logs::read_logs(path, klog, done).boxed())
    }

    async fn exec(
        &self,
        pod: &Value,
        container: &str,
        command: Vec<String>,
        io: StreamOptions,
    ) -> Result<StreamSession, ApiError> {
        let (id, _) = self.find(&decode_pod(pod)?, container, false).await?;
        let req = runtime::ExecRequest { cmd: command, tty: io.tty, stdin: io.stdin };
        let sess = self.runtime.exec(&id, &req).await.map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(to_session(sess, io))
    }

    async fn attach(&self, pod: &Value, container: &str, io: StreamOptions) -> Result<StreamSession, ApiError> {
        let (id, _) = self.find(&decode_pod(pod)?, container, false).await?;
        let req = runtime::AttachRequest { stdin: io.stdin, stdout: io.stdout, stderr: io.stderr };
        let sess = self.runtime.attach(&id, &req).await.map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(to_session(sess, io))
    }
}

fn to_session(s: runtime::ExecSession, io: StreamOptions) -> StreamSession {
    let resize = s.resize.map(|tx| {
        let (rtx, mut rrx) = tokio::sync::mpsc::channel::<streaming::TerminalSize>(4);
        tokio::spawn(async move {
            while let Some(sz) = rrx.recv().await {
                if tx.send(runtime::TermSize { cols: sz.width, rows: sz.height }).await.is_err() {
                    return;
                }
            }
        });
        rtx
    });
    StreamSession {
        stdin: if io.stdin {
            s.stdin.map(|w| Box::new(w) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>)
        } else {
            None
        },
        stdout: if io.stdout {
            s.stdout.map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>)
        } else {
            None
        },
        stderr: if io.stderr {
            s.stderr.map(|r| Box::new(r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>)
        } else {
            None
        },
        resize,
        exit: s
            .exit
            .map(|r| match r {
                Ok(code) => ExitStatus::Code(code),
                Err(e) => ExitStatus::Error(e.to_string()),
            })
            .boxed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_secrets_become_credentials() {
        let mut s = BTreeMap::new();
        s.insert(
            ".dockerconfigjson".to_string(),
            br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},"registry.test:5000":{"username":"a","password":"b"},"empty.test":{}}}"#.to_vec(),
        );
        let c = docker_credentials(&s);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].registry.as_str(), c[0].username.as_str(), c[0].password.as_str()),
            ("index.docker.io", "u", "p")
        );
        assert_eq!(
            (c[1].registry.as_str(), c[1].username.as_str(), c[1].password.as_str()),
            ("registry.test:5000", "a", "b")
        );
    }
}
