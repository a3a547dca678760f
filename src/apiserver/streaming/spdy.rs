//! The SPDY/3.1 side of exec and attach, as kubectl before 1.30 speaks it: after the
//! upgrade the client opens one stream per standard stream (`SYN_STREAM` with a
//! `streamtype` header: error, stdin, stdout, stderr, resize), the server replies to each,
//! and data frames carry the bytes; a FIN ends a direction. Only what these sessions use is
//! implemented: no server-initiated streams, no flow control (the client has none either).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::remotecommand::{Channel, Inbound, Outbound};
use super::zlib::{HeaderDeflater, HeaderInflater};
use super::StreamOptions;

/// The stream protocol versions served, newest first.
pub const PROTOCOLS: &[&str] = &["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io"];

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const FLAG_FIN: u8 = 0x01;
const RST_REFUSED_STREAM: u32 = 3;
/// Frames larger than this are refused: session data comes in pieces of at most 32 KiB.
const MAX_FRAME: usize = 1 << 20;

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Control { kind: u16, flags: u8, data: Bytes },
    Data { stream: u32, flags: u8, data: Bytes },
}

/// Reads frames off the connection.
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        FrameReader { io, buf: BytesMut::with_capacity(16 * 1024) }
    }

    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        while self.buf.len() < 8 {
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
        let len = u32::from_be_bytes([0, self.buf[5], self.buf[6], self.buf[7]]) as usize;
        if len > MAX_FRAME {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "SPDY frame too large"));
        }
        while self.buf.len() < 8 + len {
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
        let head = self.buf.split_to(8);
        let data = self.buf.split_to(len).freeze();
        let flags = head[4];
        Ok(Some(if head[0] & 0x80 != 0 {
            Frame::Control { kind: u16::from_be_bytes([head[2], head[3]]), flags, data }
        } else {
            Frame::Data { stream: u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff, flags, data }
        }))
    }
}

fn control(kind: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&[0x80, 0x03]);
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(data);
    out
}

pub fn data_frame(stream: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(data);
    out
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// An inflated header block as name/value pairs (names lower case, as SPDY/3 requires;
/// several values of one name are NUL-separated).
pub fn parse_headers(block: &[u8]) -> Option<Vec<(String, String)>> {
    let n = be32(block, 0)? as usize;
    let mut at = 4;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let nlen = be32(block, at)? as usize;
        let name = block.get(at + 4..at + 4 + nlen)?;
        at += 4 + nlen;
        let vlen = be32(block, at)? as usize;
        let value = block.get(at + 4..at + 4 + vlen)?;
        at += 4 + vlen;
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        for v in value.split(|b| *b == 0) {
            out.push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    Some(out)
}

pub fn encode_headers(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = (headers.len() as u32).to_be_bytes().to_vec();
    for (n, v) in headers {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n.as_bytes());
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out
}

/// The kinds of stream a session has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamType {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

impl StreamType {
    fn parse(s: &str) -> Option<StreamType> {
        Some(match s {
            "error" => StreamType::Error,
            "stdin" => StreamType::Stdin,
            "stdout" => StreamType::Stdout,
            "stderr" => StreamType::Stderr,
            "resize" => StreamType::Resize,
            _ => return None,
        })
    }
}

/// The client's streams by kind.
#[derive(Debug, Default)]
pub struct Streams {
    pub ids: HashMap<StreamType, u32>,
    /// Data that arrived while the streams were being set up.
    early: Vec<Frame>,
}

/// An upgraded SPDY connection.
pub struct Conn<R, W> {
    reader: FrameReader<R>,
    wr: W,
    inflater: HeaderInflater,
}

/// Waits (up to `timeout`) for the client to open the streams a session with `io` needs,
/// replying to each. `None` if it does not, or the connection fails.
pub async fn accept_streams<R, W>(
    rd: R,
    mut wr: W,
    io: StreamOptions,
    resize: bool,
    timeout: Duration,
) -> Option<(Conn<R, W>, Streams)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let expected = 1 + io.stdin as usize + io.stdout as usize + io.stderr as usize + resize as usize;
    let mut reader = FrameReader::new(rd);
    let mut inflater = HeaderInflater::default();
    let mut deflater = HeaderDeflater::default();
    let mut streams = Streams::default();
    let setup = async {
        while streams.ids.len() < expected {
            let frame = match reader.next().await {
                Ok(Some(f)) => f,
                Ok(None) => return false,
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY read failed");
                    return false;
                }
            };
            tracing::trace!(?frame, "SPDY frame during setup");
            match frame {
                Frame::Control { kind: TYPE_SYN_STREAM, data, .. } => {
                    let (Some(id), Some(block)) = (be32(&data, 0), data.get(10..)) else { return false };
                    let id = id & 0x7fff_ffff;
                    let headers = match inflater.inflate(block) {
                        Ok(h) => parse_headers(&h).unwrap_or_default(),
                        Err(e) => {
                            tracing::debug!(error = %e, "SPDY header block");
                            return false;
                        }
                    };
                    let kind = headers.iter().find(|(n, _)| n == "streamtype").and_then(|(_, v)| StreamType::parse(v));
                    tracing::trace!(id, ?headers, ?kind, "SPDY stream opened");
                    let reply = match kind {
                        Some(k) if !streams.ids.contains_key(&k) => {
                            streams.ids.insert(k, id);
                            let mut payload = id.to_be_bytes().to_vec();
                            payload.extend(deflater.deflate(&encode_headers(&[])));
                            control(TYPE_SYN_REPLY, 0, &payload)
                        }
                        _ => {
                            tracing::debug!(?headers, "SPDY stream of an unexpected type refused");
                            let mut payload = id.to_be_bytes().to_vec();
                            payload.extend_from_slice(&RST_REFUSED_STREAM.to_be_bytes());
                            control(TYPE_RST_STREAM, 0, &payload)
                        }
                    };
                    if wr.write_all(&reply).await.is_err() || wr.flush().await.is_err() {
                        return false;
                    }
                }
                Frame::Control { kind: TYPE_SYN_REPLY | TYPE_HEADERS, data, .. } => {
                    // Keep the compression context in step even for blocks not needed.
                    if let Some(block) = data.get(4..) {
                        if inflater.inflate(block).is_err() {
                            return false;
                        }
                    }
                }
                Frame::Control { kind: TYPE_PING, data, .. } => {
                    if wr.write_all(&control(TYPE_PING, 0, &data)).await.is_err() {
                        return false;
                    }
                }
                Frame::Control { kind: TYPE_GOAWAY, .. } => return false,
                f @ Frame::Data { .. } => streams.early.push(f),
                Frame::Control { .. } => {}
            }
        }
        true
    };
    match tokio::time::timeout(timeout, setup).await {
        Ok(true) => Some((Conn { reader, wr, inflater }, streams)),
        Ok(false) => None,
        Err(_) => {
            tracing::debug!("timed out waiting for client to create streams");
            None
        }
    }
}

impl<R, W> Conn<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    /// Starts the reader (client frames into `inbound`) and the writer (`out` to the client).
    pub fn spawn(
        self,
        streams: Streams,
        inbound: mpsc::Sender<Inbound>,
        replies: mpsc::Sender<Outbound>,
        out: mpsc::Receiver<Outbound>,
    ) -> (JoinHandle<()>, JoinHandle<()>) {
        let Conn { reader, wr, inflater } = self;
        let ids = streams.ids.clone();
        let reader = tokio::spawn(read_loop(reader, inflater, streams, inbound, replies));
        let writer = tokio::spawn(write_loop(wr, ids, out));
        (reader, writer)
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut reader: FrameReader<R>,
    mut inflater: HeaderInflater,
    streams: Streams,
    inbound: mpsc::Sender<Inbound>,
    replies: mpsc::Sender<Outbound>,
) {
    let stdin = streams.ids.get(&StreamType::Stdin).copied();
    let resize = streams.ids.get(&StreamType::Resize).copied();
    let data_events = |stream: u32, flags: u8, data: Bytes| {
        let mut events = Vec::new();
        if Some(stream) == stdin {
            if !data.is_empty() {
                events.push(Inbound::Stdin(data));
            }
            if flags & FLAG_FIN != 0 {
                events.push(Inbound::StdinEnd);
            }
        } else if Some(stream) == resize && !data.is_empty() {
            events.push(Inbound::Resize(data));
        }
        events
    };
    let mut pending: Vec<Inbound> = Vec::new();
    for f in streams.early {
        if let Frame::Data { stream, flags, data } = f {
            pending.extend(data_events(stream, flags, data));
        }
    }
    'outer: loop {
        for e in pending.drain(..) {
            if inbound.send(e).await.is_err() {
                break 'outer;
            }
        }
        let frame = match reader.next().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "SPDY read failed");
                break;
            }
        };
        match frame {
            Frame::Data { stream, flags, data } => pending.extend(data_events(stream, flags, data)),
            Frame::Control { kind: TYPE_SYN_STREAM, data, .. } => {
                // A stream after the session started: keep the header context, refuse it.
                if let Some(block) = data.get(10..) {
                    if inflater.inflate(block).is_err() {
                        break;
                    }
                }
                if let Some(id) = be32(&data, 0) {
                    let mut payload = (id & 0x7fff_ffff).to_be_bytes().to_vec();
                    payload.extend_from_slice(&RST_REFUSED_STREAM.to_be_bytes());
                    let _ = replies.send(Outbound::Raw(Bytes::from(control(TYPE_RST_STREAM, 0, &payload)))).await;
                }
            }
            Frame::Control { kind: TYPE_SYN_REPLY | TYPE_HEADERS, data, .. } => {
                if let Some(block) = data.get(4..) {
                    if inflater.inflate(block).is_err() {
                        break;
                    }
                }
            }
            Frame::Control { kind: TYPE_RST_STREAM, data, .. } => {
                if be32(&data, 0).map(|id| id & 0x7fff_ffff) == stdin && stdin.is_some() {
                    pending.push(Inbound::StdinEnd);
                }
            }
            Frame::Control { kind: TYPE_PING, data, .. } => {
                let _ = replies.send(Outbound::Raw(Bytes::from(control(TYPE_PING, 0, &data)))).await;
            }
            Frame::Control { kind: TYPE_GOAWAY, .. } => break,
            Frame::Control { .. } => {}
        }
    }
    let _ = inbound.send(Inbound::Gone).await;
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    ids: HashMap<StreamType, u32>,
    mut out: mpsc::Receiver<Outbound>,
) {
    let id_of = |c: Channel| {
        ids.get(&match c {
            Channel::Stdout => StreamType::Stdout,
            Channel::Stderr => StreamType::Stderr,
            Channel::Error => StreamType::Error,
        })
        .copied()
    };
    while let Some(o) = out.recv().await {
        let bytes = match o {
            Outbound::Data(c, data) => match id_of(c) {
                Some(id) if !data.is_empty() => data_frame(id, 0, &data),
                _ => continue,
            },
            Outbound::Raw(b) => b.to_vec(),
            Outbound::Finish => {
                let mut bytes = Vec::new();
                for c in [Channel::Stdout, Channel::Stderr, Channel::Error] {
                    if let Some(id) = id_of(c) {
                        bytes.extend(data_frame(id, FLAG_FIN, &[]));
                    }
                }
                let last = ids.values().copied().max().unwrap_or(0);
                let mut goaway = last.to_be_bytes().to_vec();
                goaway.extend_from_slice(&0u32.to_be_bytes());
                bytes.extend(control(TYPE_GOAWAY, 0, &goaway));
                // The connection stays open: the client drops frames it has queued but not
                // handled once the connection ends, so it is the one to close.
                let _ = wr.write_all(&bytes).await;
                let _ = wr.flush().await;
                return;
            }
        };
        if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn_stream(deflater: &mut HeaderDeflater, id: u32, streamtype: &str) -> Vec<u8> {
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        payload.extend(deflater.deflate(&encode_headers(&[("streamtype", streamtype)])));
        control(TYPE_SYN_STREAM, 0, &payload)
    }

    #[test]
    fn header_blocks_round_trip() {
        let block = encode_headers(&[("streamtype", "stdout"), ("x-multi", "a\0b")]);
        assert_eq!(
            parse_headers(&block).unwrap(),
            vec![
                ("streamtype".into(), "stdout".into()),
                ("x-multi".into(), "a".into()),
                ("x-multi".into(), "b".into())
            ]
        );
        assert_eq!(parse_headers(&block[..block.len() - 1]), None);
    }

    /// A whole session as a client would drive it: streams opened and replied to, stdin
    /// data and its FIN, a ping, output and the end of every stream with a GOAWAY.
    #[tokio::test]
    async fn sets_up_streams_then_carries_data_both_ways() {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let (srd, swr) = tokio::io::split(server);
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut d = HeaderDeflater::default();
        let mut hello = Vec::new();
        for (id, t) in [(1, "error"), (3, "stdin"), (5, "stdout")] {
            hello.extend(syn_stream(&mut d, id, t));
        }
        hello.extend(data_frame(3, 0, b"abc"));
        hello.extend(data_frame(3, FLAG_FIN, &[]));
        hello.extend(control(TYPE_PING, 0, &1u32.to_be_bytes()));
        cwr.write_all(&hello).await.unwrap();

        let io = StreamOptions { stdin: true, stdout: true, stderr: false, tty: false };
        let (conn, streams) = accept_streams(srd, swr, io, false, Duration::from_secs(5)).await.expect("streams");
        assert_eq!(streams.ids.len(), 3);
        let (itx, mut irx) = mpsc::channel(8);
        let (otx, orx) = mpsc::channel(8);
        let (_reader, writer) = conn.spawn(streams, itx, otx.clone(), orx);
        assert_eq!(irx.recv().await, Some(Inbound::Stdin(Bytes::from_static(b"abc"))));
        assert_eq!(irx.recv().await, Some(Inbound::StdinEnd));
        otx.send(Outbound::Data(Channel::Stdout, Bytes::from_static(b"out"))).await.unwrap();
        otx.send(Outbound::Data(Channel::Error, Bytes::from_static(b"{}"))).await.unwrap();
        otx.send(Outbound::Finish).await.unwrap();
        writer.await.unwrap();

        let mut r = FrameReader::new(&mut crd);
        let mut inflater = HeaderInflater::default();
        let mut replies = Vec::new();
        let mut got = Vec::new();
        while let Some(f) = r.next().await.unwrap() {
            match f {
                Frame::Control { kind: TYPE_SYN_REPLY, data, .. } => {
                    let block = inflater.inflate(&data[4..]).unwrap();
                    assert_eq!(parse_headers(&block).unwrap(), vec![]);
                    replies.push(be32(&data, 0).unwrap());
                }
                Frame::Control { kind, data, .. } => got.push(format!("control {kind} {:?}", &data[..])),
                Frame::Data { stream, flags, data } => {
                    got.push(format!("data {stream} {flags} {:?}", std::str::from_utf8(&data).unwrap()))
                }
            }
            if got.last().is_some_and(|l| l.starts_with("control 7")) {
                break;
            }
        }
        assert_eq!(replies, vec![1, 3, 5]);
        // The ping's answer may come anywhere among the data.
        let ping = got.iter().position(|l| l == "control 6 [0, 0, 0, 1]").expect("a ping reply");
        got.remove(ping);
        assert_eq!(
            got,
            vec![
                "data 5 0 \"out\"",
                "data 1 0 \"{}\"",
                "data 5 1 \"\"",
                "data 1 1 \"\"",
                "control 7 [0, 0, 0, 5, 0, 0, 0, 0]",
            ]
        );
    }
}
