//! `pods/exec` and `pods/attach`: the options, the upgrade (WebSocket or SPDY), and the
//! session pump shared by both transports — client stdin and resizes into the process,
//! its stdout and stderr out, then the exit status on the error channel in upstream's
//! words (`metav1.Status` JSON from stream protocol v4 on, plain text before).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{
    load_pod, parse_bool, pick_container, query_pairs, ExitStatus, StreamOptions, StreamSession, TerminalSize,
};
use crate::apiserver::request::ResourceRequest;
use crate::apiserver::status::{ApiError, Reason};
use crate::apiserver::ApiServer;

/// How long the client may take, once the connection is upgraded, to open its streams or
/// to close after the status was sent.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);
const CLOSE_GRACE: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Exec,
    Attach,
}

/// The server's output channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Stdout,
    Stderr,
    Error,
}

/// What the client sent, as the transport decoded it.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    Stdin(Bytes),
    /// The client has no more stdin.
    StdinEnd,
    /// Part of the resize stream: JSON terminal sizes, one after the other.
    Resize(Bytes),
    /// The connection is gone.
    Gone,
}

/// What goes to the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Outbound {
    Data(Channel, Bytes),
    /// A transport frame, already encoded (pongs, replies).
    Raw(Bytes),
    /// Everything was sent: end the streams and the connection.
    Finish,
}

/// How the status goes on the error channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFormat {
    /// `metav1.Status` JSON, success included (v4 and v5).
    Json,
    /// The error text only, nothing on success (v2, v3).
    Text,
}

/// The error-channel message for how the session ended, or `None` for nothing.
pub fn status_message(status: &ExitStatus, kind: Kind, command: &[String], format: StatusFormat) -> Option<Bytes> {
    let value = match status {
        ExitStatus::Code(0) => json!({"metadata": {}, "status": "Success"}),
        // Upstream reports only failures to attach, not the container's own exit code.
        ExitStatus::Code(_) if kind == Kind::Attach => json!({"metadata": {}, "status": "Success"}),
        ExitStatus::Code(code) => json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
                command.join(" ")
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        ExitStatus::Error(message) => {
            let what = if kind == Kind::Exec {
                "error executing command in container"
            } else {
                "error attaching to container"
            };
            let detail = format!("{what}: {message}");
            json!({
                "metadata": {},
                "status": "Failure",
                "message": format!("Internal error occurred: {detail}"),
                "reason": "InternalError",
                "details": {"causes": [{"message": detail}]},
                "code": 500,
            })
        }
    };
    match format {
        StatusFormat::Json => serde_json::to_vec(&value).ok().map(Bytes::from),
        StatusFormat::Text if value["status"] == "Success" => None,
        StatusFormat::Text => value["message"].as_str().map(|m| Bytes::from(m.to_string())),
    }
}

/// An exec or attach request's query.
#[derive(Debug, Default, PartialEq, Eq)]
struct Request {
    container: Option<String>,
    command: Vec<String>,
    io: StreamOptions,
}

fn parse(raw: Option<&str>, kind: Kind) -> Result<Request, ApiError> {
    let mut req = Request::default();
    for (k, v) in query_pairs(raw)? {
        match k.as_str() {
            "container" => req.container = Some(v),
            "command" => req.command.push(v),
            "stdin" => req.io.stdin = parse_bool(&k, &v)?,
            "stdout" => req.io.stdout = parse_bool(&k, &v)?,
            "stderr" => req.io.stderr = parse_bool(&k, &v)?,
            "tty" => req.io.tty = parse_bool(&k, &v)?,
            _ => {}
        }
    }
    if kind == Kind::Exec && req.command.is_empty() {
        return Err(ApiError::bad_request("you must specify at least one command for the container"));
    }
    if req.io.tty && req.io.stderr {
        // A terminal has one output; upstream drops stderr the same way.
        req.io.stderr = false;
    }
    if !req.io.stdin && !req.io.stdout && !req.io.stderr {
        return Err(ApiError::bad_request("you must specify at least 1 of stdin, stdout, stderr"));
    }
    Ok(req)
}

/// Which upgrade the client asked for.
enum Transport {
    WebSocket { protocol: &'static str, accept: String },
    Spdy { protocol: &'static str },
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok())
}

fn negotiate(headers: &HeaderMap) -> Result<Transport, ApiError> {
    let connection_upgrade = header_values(headers, "connection")
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !connection_upgrade || upgrade.is_empty() {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    if upgrade.eq_ignore_ascii_case("websocket") {
        let key = headers.get("sec-websocket-key").and_then(|v| v.to_str().ok()).ok_or_else(|| {
            ApiError::bad_request("websocket: not a websocket handshake: 'Sec-WebSocket-Key' header is missing")
        })?;
        let offered: Vec<&str> = header_values(headers, "sec-websocket-protocol").collect();
        let protocol = super::websocket::choose_protocol(offered.iter().copied()).ok_or_else(|| {
            ApiError::new(
                Reason::Forbidden,
                format!(
                    "unable to upgrade: requested protocol(s) are not supported: {offered:?}; supports {:?}",
                    super::websocket::PROTOCOLS
                ),
            )
        })?;
        return Ok(Transport::WebSocket { protocol, accept: super::websocket::accept_key(key) });
    }
    if upgrade.eq_ignore_ascii_case("SPDY/3.1") {
        let offered: Vec<&str> =
            header_values(headers, "x-stream-protocol-version").flat_map(|v| v.split(',')).map(str::trim).collect();
        let protocol = offered.iter().find_map(|o| super::spdy::PROTOCOLS.iter().find(|p| *p == o).copied()).ok_or_else(|| {
            ApiError::new(
                Reason::Forbidden,
                format!(
                    "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {:?}",
                    super::spdy::PROTOCOLS
                ),
            )
        })?;
        return Ok(Transport::Spdy { protocol });
    }
    Err(ApiError::bad_request(format!("unable to upgrade: unsupported upgrade {upgrade:?}")))
}

pub(super) async fn serve(
    api: &Arc<ApiServer>,
    r: &ResourceRequest,
    mut parts: Parts,
    query: Option<&str>,
    kind: Kind,
) -> Result<Response, ApiError> {
    let req = parse(query, kind)?;
    let pod = load_pod(api, r).await?;
    let container = pick_container(&pod, req.container.as_deref())?;
    let name = r.name.as_deref().unwrap_or("");
    if pod.pointer("/spec/nodeName").and_then(|v| v.as_str()).unwrap_or("").is_empty() {
        return Err(ApiError::bad_request(format!("pod {name} does not have a host assigned")));
    }
    if let Some(phase @ ("Succeeded" | "Failed")) = pod.pointer("/status/phase").and_then(|v| v.as_str()) {
        let verb = if kind == Kind::Exec { "exec into" } else { "attach to" };
        return Err(ApiError::bad_request(format!(
            "cannot {verb} a container in a completed pod; current phase is {phase}"
        )));
    }
    let transport = negotiate(&parts.headers)?;
    // Only an HTTP/1.1 connection can be upgraded (HTTP/2 has no `Upgrade`).
    let on_upgrade = parts
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| ApiError::bad_request("unable to upgrade: the connection cannot be upgraded (use HTTP/1.1)"))?;
    let streams = api.pod_streams.get()?;
    // Start it before answering, so that a refusal (no such container, not running)
    // reaches the client as an HTTP error as upstream's kubelet gives it.
    let session = match kind {
        Kind::Exec => streams.exec(&pod, &container, req.command.clone(), req.io).await?,
        Kind::Attach => streams.attach(&pod, &container, req.io).await?,
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let command = req.command;
    let io = req.io;
    let target = format!("{}/{name}/{container}", r.namespace.as_deref().unwrap_or(""));
    match transport {
        Transport::WebSocket { protocol, accept } => {
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
            if let Ok(v) = HeaderValue::from_str(&accept) {
                h.insert("sec-websocket-accept", v);
            }
            tokio::spawn(async move {
                let upgraded = match on_upgrade.await {
                    Ok(u) => u,
                    Err(e) => return tracing::debug!(error = %e, "upgrade to websocket failed"),
                };
                tracing::debug!(target = %target, protocol, "websocket stream started");
                let (rd, wr) = tokio::io::split(TokioIo::new(upgraded));
                let (itx, irx) = mpsc::channel(16);
                let (otx, orx) = mpsc::channel(16);
                let v5 = protocol.starts_with("v5.");
                let reader = tokio::spawn(super::websocket::read_loop(rd, v5, itx, otx.clone()));
                let writer = tokio::spawn(super::websocket::write_loop(wr, orx));
                // Upstream's first message tells old clients the streams are ready.
                let first = if io.stdout {
                    Channel::Stdout
                } else if io.stderr {
                    Channel::Stderr
                } else {
                    Channel::Error
                };
                let _ = otx.send(Outbound::Data(first, Bytes::new())).await;
                drive(session, kind, &command, StatusFormat::Json, irx, otx).await;
                let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
                reader.abort();
            });
        }
        Transport::Spdy { protocol } => {
            h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
            h.insert("x-stream-protocol-version", HeaderValue::from_static(protocol));
            let format = if protocol == "v4.channel.k8s.io" { StatusFormat::Json } else { StatusFormat::Text };
            // Resizing arrived with v3.
            let expect_resize = io.tty && protocol != "v2.channel.k8s.io";
            tokio::spawn(async move {
                let upgraded = match on_upgrade.await {
                    Ok(u) => u,
                    Err(e) => return tracing::debug!(error = %e, "upgrade to SPDY failed"),
                };
                tracing::debug!(target = %target, protocol, "SPDY stream started");
                let (rd, wr) = tokio::io::split(TokioIo::new(upgraded));
                let Some((conn, streams)) =
                    super::spdy::accept_streams(rd, wr, io, expect_resize, STREAM_TIMEOUT).await
                else {
                    return;
                };
                let (itx, irx) = mpsc::channel(16);
                let (otx, orx) = mpsc::channel(16);
                let (mut reader, writer) = conn.spawn(streams, itx, otx.clone(), orx);
                drive(session, kind, &command, format, irx, otx).await;
                let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
                // Everything is sent; the client closes once it has handled it.
                let _ = tokio::time::timeout(CLOSE_GRACE, &mut reader).await;
                reader.abort();
            });
        }
    }
    Ok(resp)
}

/// Copies one output of the process to the client until it ends.
async fn copy_out(src: Option<Box<dyn AsyncRead + Send + Unpin>>, channel: Channel, out: mpsc::Sender<Outbound>) {
    let Some(mut src) = src else { return };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match src.read(&mut buf).await {
            // A terminal's master side reports EIO once the process is gone: that is its end too.
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if out.send(Outbound::Data(channel, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs a session over a transport: feeds what the client sends into the process, sends
/// its output, then its status, then finishes. Returns early, dropping the session, if the
/// client goes away.
pub async fn drive(
    session: StreamSession,
    kind: Kind,
    command: &[String],
    format: StatusFormat,
    mut inbound: mpsc::Receiver<Inbound>,
    out: mpsc::Sender<Outbound>,
) {
    let StreamSession { stdin, stdout, stderr, resize, exit } = session;
    let feed = async move {
        let mut stdin = stdin;
        let mut pending = Vec::new();
        while let Some(event) = inbound.recv().await {
            match event {
                Inbound::Stdin(data) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&data).await.is_err() || w.flush().await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Inbound::StdinEnd => {
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                Inbound::Resize(data) => {
                    pending.extend_from_slice(&data);
                    let mut it = serde_json::Deserializer::from_slice(&pending).into_iter::<TerminalSize>();
                    let mut sizes = Vec::new();
                    let mut used = 0;
                    loop {
                        match it.next() {
                            Some(Ok(size)) => {
                                sizes.push(size);
                                used = it.byte_offset();
                            }
                            Some(Err(e)) if e.is_eof() => break,
                            Some(Err(_)) => {
                                // Not a size: drop what was buffered rather than stall.
                                used = pending.len();
                                break;
                            }
                            None => {
                                used = pending.len();
                                break;
                            }
                        }
                    }
                    pending.drain(..used);
                    if let Some(tx) = &resize {
                        for s in sizes {
                            let _ = tx.send(s).await;
                        }
                    }
                }
                Inbound::Gone => return,
            }
        }
    };
    let run = async {
        let (_, _, status) = tokio::join!(
            copy_out(stdout, Channel::Stdout, out.clone()),
            copy_out(stderr, Channel::Stderr, out.clone()),
            exit
        );
        status
    };
    tokio::select! {
        status = run => {
            tracing::debug!(?status, "stream session ended");
            if let Some(msg) = status_message(&status, kind, command, format) {
                let _ = out.send(Outbound::Data(Channel::Error, msg)).await;
            }
            let _ = out.send(Outbound::Finish).await;
        }
        _ = feed => {
            tracing::debug!("stream client went away");
            let _ = out.send(Outbound::Finish).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_upstream_writes_them() {
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        let ok = status_message(&ExitStatus::Code(0), Kind::Exec, &cmd, StatusFormat::Json).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&ok).unwrap(),
            json!({"metadata": {}, "status": "Success"})
        );
        let three = status_message(&ExitStatus::Code(3), Kind::Exec, &cmd, StatusFormat::Json).unwrap();
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&three).unwrap(),
            json!({"metadata": {}, "status": "Failure",
                   "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
                   "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}})
        );
        assert_eq!(status_message(&ExitStatus::Code(0), Kind::Exec, &cmd, StatusFormat::Text), None);
        let text =
            status_message(&ExitStatus::Error("no such file".into()), Kind::Exec, &cmd, StatusFormat::Text).unwrap();
        assert_eq!(&text[..], b"Internal error occurred: error executing command in container: no such file");
        let attach = status_message(&ExitStatus::Code(1), Kind::Attach, &[], StatusFormat::Json).unwrap();
        assert!(std::str::from_utf8(&attach).unwrap().contains("Success"));
    }

    #[test]
    fn exec_query_parses_as_upstream() {
        let r = parse(
            Some("command=sh&command=-c&command=echo+hi&container=c&stdin=true&stdout=true&stderr=true&tty=true"),
            Kind::Exec,
        )
        .unwrap();
        assert_eq!(r.command, vec!["sh", "-c", "echo hi"]);
        assert_eq!(r.io, StreamOptions { stdin: true, stdout: true, stderr: false, tty: true });
        assert_eq!(r.container.as_deref(), Some("c"));
        assert_eq!(
            parse(Some("stdout=true"), Kind::Exec).unwrap_err().message,
            "you must specify at least one command for the container"
        );
        assert_eq!(
            parse(Some("command=ls"), Kind::Exec).unwrap_err().message,
            "you must specify at least 1 of stdin, stdout, stderr"
        );
        assert!(parse(Some("stdout=1"), Kind::Attach).is_ok());
    }

    #[tokio::test]
    async fn drive_feeds_stdin_and_resizes_and_reports_the_exit() {
        let (to_proc_w, to_proc_r) = tokio::io::duplex(1024);
        let (from_proc_w, from_proc_r) = tokio::io::duplex(1024);
        let (rtx, mut rrx) = mpsc::channel(4);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<i32>();
        let session = StreamSession {
            stdin: Some(Box::new(to_proc_w)),
            stdout: Some(Box::new(from_proc_r)),
            stderr: None,
            resize: Some(rtx),
            exit: Box::pin(async move { ExitStatus::Code(done_rx.await.unwrap_or(-1)) }),
        };
        // The "process": echoes its stdin upper-cased, exits 7 at the end of stdin.
        tokio::spawn(async move {
            let mut r = to_proc_r;
            let mut w = from_proc_w;
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).await.unwrap();
            w.write_all(&buf.to_ascii_uppercase()).await.unwrap();
            drop(w);
            let _ = done_tx.send(7);
        });
        let (itx, irx) = mpsc::channel(8);
        let (otx, mut orx) = mpsc::channel(8);
        itx.send(Inbound::Resize(Bytes::from_static(br#"{"Width":80,"#))).await.unwrap();
        itx.send(Inbound::Resize(Bytes::from_static(br#""Height":24}{"Width":100,"Height":30}"#))).await.unwrap();
        itx.send(Inbound::Stdin(Bytes::from_static(b"hi\n"))).await.unwrap();
        itx.send(Inbound::StdinEnd).await.unwrap();
        let cmd = vec!["x".to_string()];
        drive(session, Kind::Exec, &cmd, StatusFormat::Json, irx, otx).await;
        assert_eq!(rrx.recv().await, Some(TerminalSize { width: 80, height: 24 }));
        assert_eq!(rrx.recv().await, Some(TerminalSize { width: 100, height: 30 }));
        assert_eq!(orx.recv().await, Some(Outbound::Data(Channel::Stdout, Bytes::from_static(b"HI\n"))));
        match orx.recv().await {
            Some(Outbound::Data(Channel::Error, b)) => {
                assert!(std::str::from_utf8(&b).unwrap().contains("exit code 7"))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(orx.recv().await, Some(Outbound::Finish));
    }
}
