//! The WebSocket side of exec and attach (RFC 6455 over an HTTP/1.1 upgrade), with the
//! Kubernetes channel subprotocols: every binary message starts with a channel byte
//! (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize); `v5.channel.k8s.io` adds
//! `[255, n]`, "the client closed channel n", which is how stdin reaches its end.

use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::remotecommand::{Channel, Inbound, Outbound};

/// The subprotocols served, the client's first acceptable one is chosen.
pub const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// The largest message accepted from a client: stdin arrives in small pieces, and a
/// bigger frame is a broken or hostile client.
const MAX_MESSAGE: usize = 16 << 20;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// The `Sec-WebSocket-Accept` answer to a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let digest =
        ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, format!("{}{GUID}", key.trim()).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The subprotocol to answer with, from the client's `Sec-WebSocket-Protocol` values.
pub fn choose_protocol<'a>(offered: impl Iterator<Item = &'a str>) -> Option<&'static str> {
    let offered: Vec<&str> = offered.flat_map(|v| v.split(',')).map(str::trim).collect();
    offered.iter().find_map(|o| PROTOCOLS.iter().find(|p| *p == o).copied())
}

/// One unmasked server frame with FIN set.
pub fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// A binary message on a channel.
fn channel_message(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(data.len() + 1);
    payload.push(channel);
    payload.extend_from_slice(data);
    frame(OP_BINARY, &payload)
}

/// A frame as read: FIN, opcode, unmasked payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Bytes,
}

/// Reads frames from a client (whose frames are masked, as RFC 6455 requires).
pub struct FrameReader<R> {
    io: R,
    buf: BytesMut,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(io: R) -> Self {
        FrameReader { io, buf: BytesMut::with_capacity(8192) }
    }

    async fn fill(&mut self, n: usize) -> std::io::Result<bool> {
        while self.buf.len() < n {
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The next frame, or `None` at the end of the connection.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        let invalid = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        if !self.fill(2).await? {
            return Ok(None);
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let masked = b1 & 0x80 != 0;
        let (len, mut header) = match b1 & 0x7f {
            126 => {
                if !self.fill(4).await? {
                    return Ok(None);
                }
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as u64, 4)
            }
            127 => {
                if !self.fill(10).await? {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (n as u64, 2),
        };
        if len > MAX_MESSAGE as u64 {
            return Err(invalid("websocket frame too large"));
        }
        let len = len as usize;
        let mut mask = [0u8; 4];
        if masked {
            if !self.fill(header + 4).await? {
                return Ok(None);
            }
            mask.copy_from_slice(&self.buf[header..header + 4]);
            header += 4;
        }
        if !self.fill(header + len).await? {
            return Ok(None);
        }
        self.buf.advance(header);
        let mut payload = self.buf.split_to(len);
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        Ok(Some(Frame { fin: b0 & 0x80 != 0, opcode: b0 & 0x0f, payload: payload.freeze() }))
    }
}

/// Reads the client's messages into `inbound` until the connection ends; pings are
/// answered through `out`. `v5` enables the close-channel message.
pub async fn read_loop<R: AsyncRead + Unpin>(
    io: R,
    v5: bool,
    inbound: mpsc::Sender<Inbound>,
    out: mpsc::Sender<Outbound>,
) {
    let mut reader = FrameReader::new(io);
    let mut message: Option<BytesMut> = None;
    loop {
        let frame = match reader.next().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "websocket read failed");
                break;
            }
        };
        let whole = match frame.opcode {
            OP_PING => {
                let _ = out.send(Outbound::Raw(Bytes::from(super::websocket::frame(OP_PONG, &frame.payload)))).await;
                continue;
            }
            OP_PONG => continue,
            OP_CLOSE => {
                let _ = out
                    .send(Outbound::Raw(Bytes::from(super::websocket::frame(
                        OP_CLOSE,
                        &frame.payload[..frame.payload.len().min(2)],
                    ))))
                    .await;
                break;
            }
            OP_TEXT | OP_BINARY if frame.fin => frame.payload,
            OP_TEXT | OP_BINARY => {
                message = Some(BytesMut::from(&frame.payload[..]));
                continue;
            }
            OP_CONTINUATION => {
                let Some(m) = message.as_mut() else { continue };
                if m.len() + frame.payload.len() > MAX_MESSAGE {
                    break;
                }
                m.extend_from_slice(&frame.payload);
                if !frame.fin {
                    continue;
                }
                match message.take() {
                    Some(m) => m.freeze(),
                    None => continue,
                }
            }
            _ => continue,
        };
        let Some((&channel, data)) = whole.split_first() else { continue };
        let event = match channel {
            0 => Inbound::Stdin(whole.slice(1..)),
            4 => Inbound::Resize(whole.slice(1..)),
            255 if v5 && data.first() == Some(&0) => Inbound::StdinEnd,
            _ => continue,
        };
        if inbound.send(event).await.is_err() {
            break;
        }
    }
    let _ = inbound.send(Inbound::Gone).await;
}

/// Writes what the session produces as channel messages; after [`Outbound::Finish`] sends
/// a normal close, which is how the client learns the error channel is complete.
pub async fn write_loop<W: AsyncWrite + Unpin>(mut io: W, mut out: mpsc::Receiver<Outbound>) {
    while let Some(o) = out.recv().await {
        let bytes = match o {
            Outbound::Data(Channel::Stdout, b) => channel_message(1, &b),
            Outbound::Data(Channel::Stderr, b) => channel_message(2, &b),
            Outbound::Data(Channel::Error, b) => channel_message(3, &b),
            Outbound::Raw(b) => b.to_vec(),
            Outbound::Finish => {
                let _ = io.write_all(&frame(OP_CLOSE, &1000u16.to_be_bytes())).await;
                let _ = io.flush().await;
                let _ = io.shutdown().await;
                return;
            }
        };
        if io.write_all(&bytes).await.is_err() || io.flush().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn protocol_choice_prefers_the_clients_order_among_ours() {
        assert_eq!(choose_protocol(["v5.channel.k8s.io"].into_iter()), Some("v5.channel.k8s.io"));
        assert_eq!(
            choose_protocol(["base64.channel.k8s.io, v4.channel.k8s.io"].into_iter()),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(choose_protocol(["channel.k8s.io"].into_iter()), None);
    }

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[tokio::test]
    async fn reads_masked_fragmented_and_control_frames() {
        let big = vec![7u8; 300];
        let mut wire = masked(OP_BINARY, false, &[0, b'h']);
        wire.extend(masked(OP_PING, true, b"p"));
        wire.extend(masked(OP_CONTINUATION, true, b"i\n"));
        wire.extend(masked(OP_BINARY, true, &[&[0u8][..], &big].concat()));
        wire.extend(masked(OP_BINARY, true, &[4, b'{']));
        wire.extend(masked(OP_BINARY, true, &[255, 0]));
        wire.extend(masked(OP_CLOSE, true, &[3, 232]));
        let (itx, mut irx) = mpsc::channel(16);
        let (otx, mut orx) = mpsc::channel(16);
        read_loop(&wire[..], true, itx, otx).await;
        let mut got = Vec::new();
        while let Ok(e) = irx.try_recv() {
            got.push(e);
        }
        assert_eq!(
            got,
            vec![
                Inbound::Stdin(Bytes::from_static(b"hi\n")),
                Inbound::Stdin(Bytes::from(big)),
                Inbound::Resize(Bytes::from_static(b"{")),
                Inbound::StdinEnd,
                Inbound::Gone
            ]
        );
        assert_eq!(orx.try_recv().unwrap(), Outbound::Raw(Bytes::from(frame(OP_PONG, b"p"))));
        assert_eq!(orx.try_recv().unwrap(), Outbound::Raw(Bytes::from(frame(OP_CLOSE, &[3, 232]))));
    }

    #[tokio::test]
    async fn writes_channel_messages_then_a_normal_close() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Outbound::Data(Channel::Stdout, Bytes::from_static(b"out"))).await.unwrap();
        tx.send(Outbound::Data(Channel::Error, Bytes::from(vec![b'x'; 200]))).await.unwrap();
        tx.send(Outbound::Finish).await.unwrap();
        let mut wire = Vec::new();
        write_loop(&mut wire, rx).await;
        let mut r = FrameReader::new(&wire[..]);
        assert_eq!(r.next().await.unwrap().unwrap().payload, Bytes::from_static(b"\x01out"));
        let f = r.next().await.unwrap().unwrap();
        assert_eq!((f.opcode, f.payload.len(), f.payload[0]), (OP_BINARY, 201, 3));
        let f = r.next().await.unwrap().unwrap();
        assert_eq!((f.opcode, &f.payload[..]), (OP_CLOSE, &[3u8, 232][..]));
        assert!(r.next().await.unwrap().is_none());
    }
}
