//! Streaming subresources of pods: `pods/log`, `pods/exec` and `pods/attach`.
//!
//! The API server does not know containers; whoever runs them (the kubelet) plugs in a
//! [`PodStreams`] with [`ApiServer::set_pod_streams`]. The handlers here load the pod,
//! pick and check the container with upstream's wording, validate the options, and carry
//! the bytes: logs as a chunked `text/plain` body, exec and attach over the WebSocket
//! channel protocol (`v5.channel.k8s.io`, kubectl 1.30+) or the SPDY/3.1 upgrade older
//! clients use (`v4.channel.k8s.io` and older stream versions).

mod logs;
mod remotecommand;
mod spdy;
mod websocket;
mod zlib;

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::request::ResourceRequest;
use super::status::{ApiError, Reason};
use super::ApiServer;

/// What `kubectl logs` asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep the stream open and send new lines as they are written.
    pub follow: bool,
    /// The previous, terminated instance of the container.
    pub previous: bool,
    /// Only the last N lines.
    pub tail_lines: Option<i64>,
    /// Only lines newer than this many seconds (at least 1).
    pub since_seconds: Option<i64>,
    /// Only lines at or after this time (never together with `since_seconds`).
    pub since_time: Option<time::OffsetDateTime>,
    /// Prefix each line with its RFC 3339 (nanosecond) timestamp.
    pub timestamps: bool,
    /// Stop after this many bytes (at least 1). The API server also cuts the stream there,
    /// so an implementation may ignore it.
    pub limit_bytes: Option<i64>,
}

/// Which standard streams an exec or attach session carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    /// Never set together with `tty` (a terminal merges stderr into stdout).
    pub stderr: bool,
    pub tty: bool,
}

/// A terminal size sent by the client (`{"Width":80,"Height":24}` on the wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// How an exec'd process (or an attached container) ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code (a process killed by signal N is 128 + N, as upstream).
    Code(i32),
    /// It could not be run or waited for; the message is shown to the user.
    Error(String),
}

/// A running exec or attach session: the process' standard streams as far as
/// [`StreamOptions`] asked for them, where terminal resizes go, and its end.
///
/// Dropping the session (the client went away) closes stdin and stops reading; whether the
/// process is then killed is the implementation's choice.
pub struct StreamSession {
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    pub stdout: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Only with a tty.
    pub resize: Option<mpsc::Sender<TerminalSize>>,
    /// Resolves when the process has exited. For exec, a non-zero code becomes kubectl's
    /// exit code; for attach, only an error is reported.
    pub exit: BoxFuture<'static, ExitStatus>,
}

/// A log as it is read: chunks of text, ending when the log does (or, following, when the
/// container stops and everything was sent).
pub type LogStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Containers of pods, as the API server's streaming subresources need them. The pod is
/// the stored object; `container` has been checked to be one of its containers.
#[async_trait]
pub trait PodStreams: Send + Sync {
    async fn logs(&self, pod: &Value, container: &str, opts: LogOptions) -> Result<LogStream, ApiError>;
    async fn exec(
        &self,
        pod: &Value,
        container: &str,
        command: Vec<String>,
        io: StreamOptions,
    ) -> Result<StreamSession, ApiError>;
    async fn attach(&self, pod: &Value, container: &str, io: StreamOptions) -> Result<StreamSession, ApiError>;
}

/// Where the API server keeps its [`PodStreams`], set once the node is up.
#[derive(Default)]
pub struct PodStreamsSlot(RwLock<Option<Arc<dyn PodStreams>>>);

impl PodStreamsSlot {
    fn get(&self) -> Result<Arc<dyn PodStreams>, ApiError> {
        let slot = self.0.read().unwrap_or_else(|e| e.into_inner());
        slot.clone().ok_or_else(|| {
            // Upstream answers this way when it cannot reach the node's kubelet.
            ApiError::unavailable(
                "the server is currently unable to handle the request: no node is serving pod streams",
            )
        })
    }
}

impl ApiServer {
    /// Plugs in the container side of `pods/log`, `pods/exec` and `pods/attach`; replaces
    /// any earlier one.
    pub fn set_pod_streams(&self, streams: Arc<dyn PodStreams>) {
        *self.pod_streams.0.write().unwrap_or_else(|e| e.into_inner()) = Some(streams);
    }
}

/// Whether this request is one of the streaming subresources served here.
pub fn handles(r: &ResourceRequest) -> bool {
    r.group.is_empty()
        && r.version == "v1"
        && r.resource == "pods"
        && r.namespace.is_some()
        && r.name.is_some()
        && match r.subresource.as_deref() {
            Some("log") => r.verb == "get",
            Some("exec") | Some("attach") => matches!(r.verb, "get" | "create"),
            _ => false,
        }
}

/// Serves a request [`handles`] accepted.
pub async fn serve(api: &Arc<ApiServer>, r: ResourceRequest, parts: Parts) -> Response {
    let query = parts.uri.query().map(str::to_string);
    let result = match r.subresource.as_deref() {
        Some("log") => logs::serve(api, &r, query.as_deref()).await,
        Some("exec") => remotecommand::serve(api, &r, parts, query.as_deref(), remotecommand::Kind::Exec).await,
        Some("attach") => remotecommand::serve(api, &r, parts, query.as_deref(), remotecommand::Kind::Attach).await,
        _ => Err(ApiError::new(Reason::NotFound, "the server could not find the requested resource")),
    };
    result.unwrap_or_else(|e| e.into_response())
}

/// The pod a request is about.
async fn load_pod(api: &ApiServer, r: &ResourceRequest) -> Result<Value, ApiError> {
    let rt = api
        .resource_type("", "v1", "pods")
        .ok_or_else(|| ApiError::new(Reason::NotFound, "the server could not find the requested resource"))?;
    api.registry.get(&rt, r.namespace.as_deref(), r.name.as_deref().unwrap_or("")).await
}

fn names_of(pod: &Value, field: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The container a request names, or the pod's default one, with upstream's refusals.
/// Besides upstream's single-container default, the `kubectl.kubernetes.io/default-container`
/// annotation names the default of a pod with several.
pub fn pick_container(pod: &Value, asked: Option<&str>) -> Result<String, ApiError> {
    let name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let init = names_of(pod, "initContainers");
    let main = names_of(pod, "containers");
    let ephemeral = names_of(pod, "ephemeralContainers");
    match asked.filter(|c| !c.is_empty()) {
        Some(c) => {
            if main.iter().chain(&init).chain(&ephemeral).any(|n| n == c) {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}")))
            }
        }
        None => {
            if main.len() == 1 {
                return Ok(main[0].clone());
            }
            let annotated = pod
                .pointer("/metadata/annotations/kubectl.kubernetes.io~1default-container")
                .and_then(Value::as_str)
                .filter(|c| main.iter().any(|n| n == c));
            if let Some(c) = annotated {
                return Ok(c.to_string());
            }
            if main.is_empty() {
                return Err(ApiError::bad_request(format!("a container name must be specified for pod {name}")));
            }
            let all: Vec<String> = init.into_iter().chain(main).chain(ephemeral).collect();
            Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                all.join(" ")
            )))
        }
    }
}

/// The status of a container, from whichever list holds it.
fn container_status<'a>(pod: &'a Value, container: &str) -> Option<&'a Value> {
    ["containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"].iter().find_map(|list| {
        pod.pointer(&format!("/status/{list}"))
            .and_then(Value::as_array)
            .and_then(|ss| ss.iter().find(|s| s["name"].as_str() == Some(container)))
    })
}

/// Whether the container has a log to read, in the kubelet's words when it has none.
pub fn check_log_available(pod: &Value, container: &str, previous: bool) -> Result<(), ApiError> {
    let pod_name = pod.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let waiting = |reason: &str| {
        let detail = match reason {
            "ErrImagePull" => "image can't be pulled".to_string(),
            "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            other => other.to_string(),
        };
        ApiError::bad_request(format!("container {container:?} in pod {pod_name:?} is waiting to start: {detail}"))
    };
    let Some(status) = container_status(pod, container) else {
        // No status yet: the pod has not reached the node, or the kubelet has not
        // reported; upstream says what it is waiting for.
        let phase_pending = pod.pointer("/status/phase").and_then(Value::as_str).is_none_or(|p| p == "Pending");
        let is_init = names_of(pod, "initContainers").iter().any(|n| n == container);
        let has_init = !names_of(pod, "initContainers").is_empty();
        return Err(if phase_pending && has_init && !is_init {
            waiting("PodInitializing")
        } else {
            waiting("ContainerCreating")
        });
    };
    let state = &status["state"];
    let last_terminated = status.pointer("/lastState/terminated").is_some_and(Value::is_object);
    if previous {
        return if last_terminated {
            Ok(())
        } else {
            Err(ApiError::bad_request(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            )))
        };
    }
    if state["running"].is_object() || state["terminated"].is_object() || last_terminated {
        return Ok(());
    }
    if state["waiting"].is_object() {
        return Err(waiting(state.pointer("/waiting/reason").and_then(Value::as_str).unwrap_or("")));
    }
    Err(ApiError::bad_request(format!("container {container:?} in pod {pod_name:?} is waiting to start - no logs yet")))
}

/// `strconv.ParseBool`, as upstream reads boolean query parameters.
fn parse_bool(name: &str, v: &str) -> Result<bool, ApiError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Ok(false),
        other => Err(ApiError::bad_request(format!("{name}: strconv.ParseBool: parsing {other:?}: invalid syntax"))),
    }
}

/// The query as name/value pairs, repeated names kept (`command=sh&command=-c`).
fn query_pairs(raw: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| ApiError::bad_request(format!("invalid query: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], init: &[&str], annotation: Option<&str>) -> Value {
        let mut p = json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {
                "containers": containers.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(),
                "initContainers": init.iter().map(|c| json!({"name": c})).collect::<Vec<_>>(),
            }
        });
        if let Some(a) = annotation {
            p["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/default-container": a});
        }
        p
    }

    #[test]
    fn container_choice_follows_upstream() {
        assert_eq!(pick_container(&pod(&["a"], &[], None), None).unwrap(), "a");
        assert_eq!(pick_container(&pod(&["a", "b"], &["i"], None), Some("i")).unwrap(), "i");
        let e = pick_container(&pod(&["a", "b"], &["i"], None), None).unwrap_err();
        assert_eq!(
            (e.code(), e.message.as_str()),
            (400, "a container name must be specified for pod p, choose one of: [i a b]")
        );
        let e = pick_container(&pod(&["a"], &[], None), Some("x")).unwrap_err();
        assert_eq!(e.message, "container x is not valid for pod p");
        assert_eq!(pick_container(&pod(&["a", "b"], &[], Some("b")), None).unwrap(), "b");
        // An annotation naming no container is ignored.
        assert!(pick_container(&pod(&["a", "b"], &[], Some("zz")), None).is_err());
    }

    #[test]
    fn logs_of_containers_that_have_not_started_are_refused_as_the_kubelet_does() {
        let mut p = pod(&["app"], &["init"], None);
        p["status"] = json!({"phase": "Pending"});
        let e = check_log_available(&p, "app", false).unwrap_err();
        assert_eq!(e.message, "container \"app\" in pod \"p\" is waiting to start: PodInitializing");
        p["status"]["containerStatuses"] =
            json!([{"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}}]);
        let e = check_log_available(&p, "app", false).unwrap_err();
        assert_eq!(e.message, "container \"app\" in pod \"p\" is waiting to start: ContainerCreating");
        p["status"]["containerStatuses"][0]["state"] = json!({"waiting": {"reason": "ErrImagePull"}});
        assert!(check_log_available(&p, "app", false).unwrap_err().message.ends_with("image can't be pulled"));
        p["status"]["containerStatuses"][0]["state"] = json!({"running": {"startedAt": "2025-01-01T00:00:00Z"}});
        assert!(check_log_available(&p, "app", false).is_ok());
        let e = check_log_available(&p, "app", true).unwrap_err();
        assert_eq!(e.message, "previous terminated container \"app\" in pod \"p\" not found");
        p["status"]["containerStatuses"][0]["lastState"] = json!({"terminated": {"exitCode": 1}});
        assert!(check_log_available(&p, "app", true).is_ok());
    }

    #[test]
    fn booleans_parse_as_go_does() {
        assert!(parse_bool("follow", "true").unwrap());
        assert!(parse_bool("follow", "1").unwrap());
        assert!(!parse_bool("follow", "False").unwrap());
        assert_eq!(parse_bool("follow", "yes").unwrap_err().code(), 400);
    }
}
