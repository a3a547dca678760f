//! Makes Go gRPC clients on the unix socket acceptable to the HTTP/2 server.
//!
//! etcd's Go client (etcdctl, kube-apiserver) sends the socket's path, `/…/etcd.sock`, as
//! the `:authority` of every request on a unix socket. That is not a valid URI authority,
//! and the HTTP/2 server under tonic rejects such a request as malformed (a stream reset
//! with PROTOCOL_ERROR) before any gRPC service sees it. This wrapper sits between the
//! socket and the server: it passes everything through, except that it re-encodes every
//! header block the client sends, replacing an invalid `:authority` with `localhost` (what
//! newer gRPC clients send on unix sockets). Header blocks are re-encoded as literals
//! without indexing, so the server's decoding table stays empty whatever the client's
//! encoder did; the client's own table is tracked by an HPACK decoder. Server to client
//! bytes are untouched.
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::codegen::http::uri::Authority;

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`, which opens every HTTP/2 connection.
const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;
/// Every HTTP/2 peer accepts frames this large, whatever it announced.
const MAX_FRAME: usize = 16_384;
const READ_CHUNK: usize = 16_384;
const REPLACEMENT: &[u8] = b"localhost";

/// A header block the client is still sending (HEADERS then CONTINUATION frames).
struct OpenBlock {
    stream: [u8; 4],
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// See the module documentation.
pub(crate) struct AuthorityFix<S> {
    inner: S,
    /// Bytes of the connection preface still to pass through.
    preface_left: usize,
    /// Client bytes not yet making up a whole frame.
    raw: BytesMut,
    /// Bytes ready for the server.
    ready: BytesMut,
    block: Option<OpenBlock>,
    decoder: loona_hpack::Decoder<'static>,
    scratch: Vec<u8>,
    eof: bool,
}

impl<S> AuthorityFix<S> {
    pub(crate) fn new(inner: S) -> Self {
        AuthorityFix {
            inner,
            preface_left: PREFACE_LEN,
            raw: BytesMut::new(),
            ready: BytesMut::new(),
            block: None,
            decoder: loona_hpack::Decoder::new(),
            scratch: vec![0; READ_CHUNK],
            eof: false,
        }
    }

    /// Moves every complete frame of `raw` to `ready`, rewriting header blocks.
    fn process(&mut self) -> io::Result<()> {
        if self.preface_left > 0 {
            let n = self.preface_left.min(self.raw.len());
            self.ready.extend_from_slice(&self.raw.split_to(n));
            self.preface_left -= n;
            if self.preface_left > 0 {
                return Ok(());
            }
        }
        while self.raw.len() >= FRAME_HEADER_LEN {
            let len = usize::from(self.raw[0]) << 16 | usize::from(self.raw[1]) << 8 | usize::from(self.raw[2]);
            if self.raw.len() < FRAME_HEADER_LEN + len {
                // Room for the rest of the frame, read in one go when it comes.
                self.raw.reserve(FRAME_HEADER_LEN + len - self.raw.len());
                return Ok(());
            }
            let frame = self.raw.split_to(FRAME_HEADER_LEN + len);
            let (kind, flags) = (frame[3], frame[4]);
            let stream = [frame[5], frame[6], frame[7], frame[8]];
            let payload = &frame[FRAME_HEADER_LEN..];
            match kind {
                TYPE_HEADERS => {
                    let block = open_block(stream, flags, payload)?;
                    if flags & FLAG_END_HEADERS != 0 {
                        self.emit(block)?;
                    } else {
                        self.block = Some(block);
                    }
                }
                TYPE_CONTINUATION if self.block.as_ref().is_some_and(|b| b.stream == stream) => {
                    if let Some(block) = self.block.as_mut() {
                        block.fragment.extend_from_slice(payload);
                    }
                    if flags & FLAG_END_HEADERS != 0 {
                        if let Some(block) = self.block.take() {
                            self.emit(block)?;
                        }
                    }
                }
                // Anything else, including frames the server will reject as out of
                // place, goes through unchanged for the server to judge.
                _ => self.ready.extend_from_slice(&frame),
            }
        }
        Ok(())
    }

    fn emit(&mut self, block: OpenBlock) -> io::Result<()> {
        let headers = self
            .decoder
            .decode(&block.fragment)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("undecodable HTTP/2 header block: {e}")))?;
        let mut encoded = Vec::with_capacity(block.fragment.len() + 64);
        for (name, value) in &headers {
            let value =
                if name == b":authority" && Authority::try_from(&value[..]).is_err() { REPLACEMENT } else { value };
            encode_literal(&mut encoded, name, value);
        }
        write_block(&mut self.ready, &block, &encoded);
        Ok(())
    }
}

fn malformed(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("malformed HTTP/2 HEADERS frame: {what}"))
}

/// Takes the header block fragment out of a HEADERS frame's payload.
fn open_block(stream: [u8; 4], flags: u8, mut payload: &[u8]) -> io::Result<OpenBlock> {
    let mut pad = 0;
    if flags & FLAG_PADDED != 0 {
        let (&p, rest) = payload.split_first().ok_or_else(|| malformed("no pad length"))?;
        pad = usize::from(p);
        payload = rest;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        let (p, rest) = payload.split_first_chunk::<5>().ok_or_else(|| malformed("short priority"))?;
        priority = Some(*p);
        payload = rest;
    }
    let end = payload.len().checked_sub(pad).ok_or_else(|| malformed("padding longer than the frame"))?;
    Ok(OpenBlock { stream, end_stream: flags & FLAG_END_STREAM != 0, priority, fragment: payload[..end].to_vec() })
}

/// Frames `encoded` as a HEADERS frame and as many CONTINUATION frames as it needs.
fn write_block(out: &mut BytesMut, block: &OpenBlock, encoded: &[u8]) {
    let prio_len = if block.priority.is_some() { 5 } else { 0 };
    let first_len = encoded.len().min(MAX_FRAME - prio_len);
    let (first, mut rest) = encoded.split_at(first_len);
    let mut flags = if block.end_stream { FLAG_END_STREAM } else { 0 };
    if block.priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    frame_header(out, prio_len + first.len(), TYPE_HEADERS, flags, block.stream);
    if let Some(p) = &block.priority {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let n = rest.len().min(MAX_FRAME);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let flags = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
        frame_header(out, chunk.len(), TYPE_CONTINUATION, flags, block.stream);
        out.extend_from_slice(chunk);
    }
}

fn frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: [u8; 4]) {
    out.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags]);
    out.extend_from_slice(&stream);
}

/// An HPACK integer with an `prefix`-bit prefix, the first byte's other bits `high`.
fn encode_int(out: &mut Vec<u8>, high: u8, prefix: u8, mut v: usize) {
    let max = (1usize << prefix) - 1;
    if v < max {
        out.push(high | v as u8);
        return;
    }
    out.push(high | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header as an HPACK "literal header field without indexing" with a new name and
/// plain (not Huffman-coded) strings.
fn encode_literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    encode_int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    encode_int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            if chunk.filled().is_empty() {
                this.eof = true;
                continue;
            }
            this.raw.extend_from_slice(chunk.filled());
            this.process()?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for AuthorityFix<tokio::net::UnixStream> {
    type ConnectInfo = tonic::transport::server::UdsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame_header(&mut out, payload.len(), kind, flags, stream.to_be_bytes());
        out.extend_from_slice(payload);
        out.to_vec()
    }

    /// Parses frames back: (type, flags, stream, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
            let stream = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]);
            out.push((bytes[3], bytes[4], stream, bytes[9..9 + len].to_vec()));
            bytes = &bytes[9 + len..];
        }
        out
    }

    async fn through(input: Vec<u8>) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut fixed = AuthorityFix::new(server);
        // Written in small pieces, so frames arrive split at every possible point.
        let writer = tokio::spawn(async move {
            for piece in input.chunks(7) {
                client.write_all(piece).await.expect("write");
            }
            client.shutdown().await.expect("shutdown");
        });
        let mut out = Vec::new();
        fixed.read_to_end(&mut out).await.expect("read");
        writer.await.expect("writer");
        out
    }

    #[tokio::test]
    async fn socket_path_authority_becomes_localhost_and_the_rest_is_kept() {
        let mut client_encoder = loona_hpack::Encoder::new();
        let request = |path: &'static [u8]| {
            vec![
                (&b":method"[..], &b"POST"[..]),
                (b":scheme", b"http"),
                (b":path", path),
                (b":authority", b"/tmp/x/etcd.sock"),
                (b"content-type", b"application/grpc"),
            ]
        };
        // The client's encoder indexes headers, so the second block refers to the first's.
        let first = client_encoder.encode(request(b"/etcdserverpb.KV/Range"));
        let second = client_encoder.encode(request(b"/etcdserverpb.KV/Put"));
        let data = frame(0x0, 0x1, 1, b"grpc-message-bytes");
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
                                             // The first block split over HEADERS (padded, with priority) and a CONTINUATION.
        let mut padded = vec![3u8];
        padded.extend([0, 0, 0, 0, 16]);
        padded.extend(&first[..4]);
        padded.extend([0, 0, 0]);
        input.extend(frame(TYPE_HEADERS, FLAG_PADDED | FLAG_PRIORITY, 1, &padded));
        input.extend(frame(TYPE_CONTINUATION, FLAG_END_HEADERS, 1, &first[4..]));
        input.extend(&data);
        input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3, &second));

        let out = through(input).await;
        assert_eq!(&out[..24], PREFACE);
        let got = frames(&out[24..]);
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0].0, 0x4);
        let mut server_decoder = loona_hpack::Decoder::new();

        let (kind, flags, stream, payload) = &got[1];
        assert_eq!((*kind, *flags, *stream), (TYPE_HEADERS, FLAG_PRIORITY | FLAG_END_HEADERS, 1));
        assert_eq!(&payload[..5], &[0, 0, 0, 0, 16]);
        let headers = server_decoder.decode(&payload[5..]).expect("decode");
        let mut want: Vec<(Vec<u8>, Vec<u8>)> =
            request(b"/etcdserverpb.KV/Range").into_iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        want[3].1 = b"localhost".to_vec();
        assert_eq!(headers, want);

        assert_eq!(got[2], (0x0, 0x1, 1, b"grpc-message-bytes".to_vec()));
        let (kind, flags, stream, payload) = &got[3];
        assert_eq!((*kind, *flags, *stream), (TYPE_HEADERS, FLAG_END_HEADERS | FLAG_END_STREAM, 3));
        let headers = server_decoder.decode(payload).expect("decode");
        assert_eq!(headers[2], (b":path".to_vec(), b"/etcdserverpb.KV/Put".to_vec()));
        assert_eq!(headers[3], (b":authority".to_vec(), b"localhost".to_vec()));
    }

    #[tokio::test]
    async fn valid_authorities_stay_and_large_blocks_are_split() {
        let mut enc = loona_hpack::Encoder::new();
        let big = vec![b'v'; 40_000];
        let block = enc.encode(vec![(&b":authority"[..], &b"localhost:2379"[..]), (b"x-big", &big[..])]);
        let mut input = PREFACE.to_vec();
        // As a client with a larger frame size would send it: in one HEADERS frame.
        input.extend(frame(TYPE_HEADERS, FLAG_END_HEADERS, 5, &block));
        let out = through(input).await;
        let got = frames(&out[24..]);
        assert_eq!(got.len(), 3, "40 kB of headers take three 16 kB frames");
        assert_eq!((got[0].0, got[0].1), (TYPE_HEADERS, 0));
        assert_eq!((got[1].0, got[1].1), (TYPE_CONTINUATION, 0));
        assert_eq!((got[2].0, got[2].1), (TYPE_CONTINUATION, FLAG_END_HEADERS));
        assert!(got.iter().all(|f| f.3.len() <= MAX_FRAME && f.2 == 5));
        let joined: Vec<u8> = got.iter().flat_map(|f| f.3.clone()).collect();
        let headers = loona_hpack::Decoder::new().decode(&joined).expect("decode");
        assert_eq!(headers[0], (b":authority".to_vec(), b"localhost:2379".to_vec()));
        assert_eq!(headers[1].1.len(), 40_000);
    }

    #[test]
    fn integers_use_the_hpack_prefix_encoding() {
        let mut out = Vec::new();
        encode_int(&mut out, 0, 5, 10);
        encode_int(&mut out, 0, 5, 1337);
        encode_int(&mut out, 0x80, 7, 127);
        // RFC 7541, C.1.1 and C.1.2; 127 with a 7-bit prefix needs a zero continuation.
        assert_eq!(out, [10, 31, 154, 10, 0x80 | 127, 0]);
    }
}
