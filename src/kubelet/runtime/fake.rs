//! An in-memory [`Runtime`] for the pod worker's unit tests: containers are records whose
//! state tests drive with [`FakeRuntime::exit`]; every call is recorded in order.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::{
    AttachRequest, ContainerInfo, ContainerState, ContainerStatus, CreateRequest, ExecRequest, ExecSession, Runtime,
    RuntimeError,
};

#[derive(Default)]
pub struct FakeRuntime {
    containers: Mutex<BTreeMap<String, (CreateRequest, ContainerStatus)>>,
    calls: Mutex<Vec<String>>,
    next_pid: Mutex<i32>,
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        FakeRuntime::default()
    }

    /// The calls made so far, as `verb id` strings.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The request a container was created with.
    pub fn request(&self, id: &str) -> Option<CreateRequest> {
        self.containers.lock().ok()?.get(id).map(|(r, _)| r.clone())
    }

    /// Makes a container exit with `code` (and `reason`, e.g. `OOMKilled`).
    pub fn exit(&self, id: &str, code: i32, reason: Option<&str>) {
        if let Ok(mut m) = self.containers.lock() {
            if let Some((_, st)) = m.get_mut(id) {
                st.state = ContainerState::Exited;
                st.exit_code = Some(code);
                st.finished_at = Some("2026-01-01T00:00:01Z".into());
                st.reason = Some(
                    reason
                        .map(str::to_string)
                        .unwrap_or_else(|| if code == 0 { "Completed" } else { "Error" }.to_string()),
                );
            }
        }
    }

    fn record(&self, call: String) {
        if let Ok(mut c) = self.calls.lock() {
            c.push(call);
        }
    }

    fn with<T>(&self, id: &str, f: impl FnOnce(&mut ContainerStatus) -> T) -> Result<T, RuntimeError> {
        let mut m = self.containers.lock().map_err(|e| RuntimeError::Join(e.to_string()))?;
        let (_, st) = m.get_mut(id).ok_or_else(|| RuntimeError::NotFound(id.to_string()))?;
        Ok(f(st))
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    async fn create(&self, req: &CreateRequest) -> Result<(), RuntimeError> {
        self.record(format!("create {}", req.id));
        let mut m = self.containers.lock().map_err(|e| RuntimeError::Join(e.to_string()))?;
        if m.contains_key(&req.id) {
            return Err(RuntimeError::AlreadyExists(req.id.clone()));
        }
        let pid = {
            let mut p = self.next_pid.lock().map_err(|e| RuntimeError::Join(e.to_string()))?;
            *p += 1;
            1000 + *p
        };
        let st = ContainerStatus {
            state: ContainerState::Created,
            pid: Some(pid),
            created_at: Some("2026-01-01T00:00:00Z".into()),
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            message: None,
        };
        m.insert(req.id.clone(), (req.clone(), st));
        Ok(())
    }

    async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.record(format!("start {id}"));
        self.with(id, |st| {
            st.state = ContainerState::Running;
            st.started_at = Some("2026-01-01T00:00:00Z".into());
        })
    }

    async fn stop(&self, id: &str, signal: i32, _grace: Duration) -> Result<(), RuntimeError> {
        self.record(format!("stop {id} {signal}"));
        let running = self.with(id, |st| st.state != ContainerState::Exited)?;
        if running {
            self.exit(id, 128 + signal, None);
        }
        Ok(())
    }

    async fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        self.record(format!("kill {id} {signal}"));
        let running = self.with(id, |st| st.state != ContainerState::Exited)?;
        if running && signal == libc::SIGKILL {
            self.exit(id, 137, None);
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.record(format!("remove {id}"));
        let mut m = self.containers.lock().map_err(|e| RuntimeError::Join(e.to_string()))?;
        m.remove(id).map(|_| ()).ok_or_else(|| RuntimeError::NotFound(id.to_string()))
    }

    async fn status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        self.with(id, |st| st.clone())
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let m = self.containers.lock().map_err(|e| RuntimeError::Join(e.to_string()))?;
        Ok(m.iter()
            .map(|(id, (req, st))| ContainerInfo { id: id.clone(), labels: req.labels.clone(), status: st.clone() })
            .collect())
    }

    async fn exec(&self, id: &str, req: &ExecRequest) -> Result<ExecSession, RuntimeError> {
        self.record(format!("exec {id} {}", req.cmd.join(" ")));
        self.with(id, |_| ())?;
        let (out_w, out_r) = tokio::io::duplex(1024);
        drop(out_w);
        Ok(ExecSession {
            stdin: None,
            stdout: Some(Box::pin(out_r)),
            stderr: None,
            resize: None,
            exit: Box::pin(async { Ok(0) }),
        })
    }

    async fn attach(&self, id: &str, _req: &AttachRequest) -> Result<ExecSession, RuntimeError> {
        self.record(format!("attach {id}"));
        self.with(id, |_| ())?;
        Ok(ExecSession { stdin: None, stdout: None, stderr: None, resize: None, exit: Box::pin(async { Ok(0) }) })
    }
}
