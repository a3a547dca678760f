//! The request handler hickory-server calls for each query (UDP or TCP): the cluster zone
//! from the current [`Index`], everything else forwarded through the cache.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::sync::watch;

use super::answer::{self, Outcome, Route};
use super::index::Index;
use super::upstream::Forwarder;

/// The largest UDP answer offered to EDNS clients (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// See the module documentation.
pub struct Handler {
    index: watch::Receiver<Arc<Index>>,
    forwarder: Arc<Forwarder>,
    /// The node's upstream resolvers (the ConfigMap's `upstreamNameservers` replace them).
    upstreams: Vec<SocketAddr>,
}

/// A response before it is encoded.
#[derive(Debug, Default)]
pub struct Reply {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub recursion_available: bool,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Handler {
    pub fn new(index: watch::Receiver<Arc<Index>>, forwarder: Arc<Forwarder>, upstreams: Vec<SocketAddr>) -> Handler {
        Handler { index, forwarder, upstreams }
    }

    /// The reply to one question.
    pub async fn reply(&self, name: &Name, qtype: RecordType, qclass: DNSClass) -> Reply {
        let index = self.index.borrow().clone();
        if qclass != DNSClass::IN {
            return Reply { rcode: ResponseCode::NotImp, ..Reply::default() };
        }
        match answer::route(&index, name, qtype) {
            Route::Local(outcome) => self.local(&index, name, qtype, outcome).await,
            Route::Forward => self.forward(&index, name, qtype).await,
        }
    }

    async fn local(&self, index: &Index, name: &Name, qtype: RecordType, outcome: Outcome) -> Reply {
        let mut reply = Reply { authoritative: true, ..Reply::default() };
        match outcome {
            Outcome::Records { answers, additionals } => {
                reply.answers = answers;
                reply.additionals = additionals;
                if matches!(qtype, RecordType::A | RecordType::AAAA) {
                    self.chase(index, qtype, &mut reply).await;
                }
            }
            Outcome::NoData => reply.authorities.push(answer::soa(index)),
            Outcome::NxDomain => {
                reply.rcode = ResponseCode::NXDomain;
                reply.authorities.push(answer::soa(index));
            }
        }
        // The SOA only belongs to names of the cluster zone (not to custom hosts or PTRs).
        if !index.zone.zone_of(&name.to_lowercase()) {
            reply.authorities.clear();
        }
        reply
    }

    /// An ExternalName's CNAME: its target's addresses are added, from the cluster zone or
    /// upstream, as CoreDNS does. A target that cannot be resolved leaves the CNAME alone.
    async fn chase(&self, index: &Index, qtype: RecordType, reply: &mut Reply) {
        let Some(target) = reply.answers.iter().find_map(|r| match &r.data {
            hickory_proto::rr::RData::CNAME(c) => Some(c.0.clone()),
            _ => None,
        }) else {
            return;
        };
        match answer::route(index, &target, qtype) {
            Route::Local(Outcome::Records { answers, .. }) => reply.answers.extend(answers),
            Route::Local(_) => {}
            Route::Forward => {
                if let Ok(a) = self.forwarder.resolve(self.servers_for(index, &target), &target, qtype).await {
                    reply.answers.extend(a.answers);
                }
            }
        }
    }

    /// The servers a name is forwarded to: its stub domain's, else the configured upstreams.
    fn servers_for<'a>(&'a self, index: &'a Index, name: &Name) -> &'a [SocketAddr] {
        let text = name.to_lowercase().to_ascii();
        let text = text.trim_end_matches('.');
        for (domain, servers) in &index.custom.stub_domains {
            if text == domain || text.strip_suffix(domain.as_str()).is_some_and(|p| p.ends_with('.')) {
                return servers;
            }
        }
        if index.custom.upstream.is_empty() {
            &self.upstreams
        } else {
            &index.custom.upstream
        }
    }

    async fn forward(&self, index: &Index, name: &Name, qtype: RecordType) -> Reply {
        match self.forwarder.resolve(self.servers_for(index, name), name, qtype).await {
            Ok(a) => Reply {
                rcode: a.rcode,
                recursion_available: true,
                answers: a.answers,
                authorities: a.authorities,
                ..Reply::default()
            },
            Err(e) => {
                tracing::debug!(name = %name, error = %e, "cannot forward");
                Reply { rcode: ResponseCode::ServFail, recursion_available: true, ..Reply::default() }
            }
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|_| {
            let mut e = Edns::new();
            e.set_max_payload(EDNS_PAYLOAD);
            e
        });
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let reply = if request.metadata.message_type != MessageType::Query || request.metadata.op_code != OpCode::Query
        {
            Reply { rcode: ResponseCode::NotImp, ..Reply::default() }
        } else {
            match request.request_info() {
                Ok(info) => {
                    let q = info.query;
                    self.reply(q.original().name(), q.query_type(), q.query_class()).await
                }
                // Not exactly one question.
                Err(_) => Reply { rcode: ResponseCode::FormErr, ..Reply::default() },
            }
        };
        metadata.response_code = reply.rcode;
        metadata.authoritative = reply.authoritative;
        metadata.recursion_available = reply.recursion_available;
        let message = builder.build(
            metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        match response.send_response(message).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(src = %request.src(), protocol = ?request.protocol(), error = %e, "cannot send a DNS response");
                let mut h = hickory_proto::op::Header {
                    metadata: Metadata::response_from_request(&request.metadata),
                    counts: Default::default(),
                };
                h.metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(h)
            }
        }
    }
}

/// A response handler that keeps the response, encoded for UDP as hickory's server encodes
/// it: at most the response's EDNS payload size (512 bytes without EDNS), truncated beyond.
#[derive(Clone, Default)]
struct Capture(Arc<std::sync::Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: hickory_server::zone_handler::MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let id = response.metadata().id;
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = hickory_proto::serialize::binary::BinEncoder::new(&mut bytes);
        encoder.set_max_size(response.edns().map_or(512, |e| e.max_payload()));
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "cannot encode a DNS response");
                bytes.clear();
                let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = hickory_proto::op::Header { metadata, counts: Default::default() };
                let mut encoder = hickory_proto::serialize::binary::BinEncoder::new(&mut bytes);
                header.emit(&mut encoder)?;
                ResponseInfo::from(header)
            }
        };
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        Ok(info)
    }
}

/// One UDP datagram from `src` through the handler, as hickory's server takes it: the
/// response to send, FORMERR when only the header can be read, nothing when not even that
/// or when the datagram is itself a response (no reflection).
pub async fn handle_datagram(handler: &Handler, bytes: Vec<u8>, src: SocketAddr) -> Option<Vec<u8>> {
    let header =
        hickory_proto::op::Header::read(&mut hickory_proto::serialize::binary::BinDecoder::new(&bytes)).ok()?;
    let request = match Request::from_bytes(bytes, src, hickory_server::net::xfer::Protocol::Udp) {
        Ok(r) => r,
        Err(_) => {
            let mut m = hickory_proto::op::Message::error_msg(
                header.metadata.id,
                header.metadata.op_code,
                ResponseCode::FormErr,
            );
            m.metadata.recursion_desired = header.metadata.recursion_desired;
            return m.to_vec().ok();
        }
    };
    if request.metadata.message_type == MessageType::Response {
        return None;
    }
    let capture = Capture::default();
    handler.handle_request::<_, hickory_server::net::runtime::TokioTime>(&request, capture.clone()).await;
    let out = capture.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    out
}

/// [`handle_datagram`] from a fixed source, for the fuzz target and the property test.
pub async fn handle_bytes(handler: &Handler, bytes: &[u8]) -> Option<Vec<u8>> {
    handle_datagram(handler, bytes.to_vec(), SocketAddr::from(([127, 0, 0, 1], 5353))).await
}

/// Serves UDP on `socket` until `stop`, from threads of its own (one per core) that block in
/// `recvfrom`: each datagram is answered there when the answer is at hand (the cluster zone, the
/// forwarder's cache), so the common query costs one receive and one send, with no task
/// hand-over and no wake-up of the runtime's workers; a query that must wait for an upstream
/// continues as a task on the runtime. (hickory's own UDP server spawns a task per query
/// and sends every response through a channel back to the socket's task.)
pub async fn serve_udp(
    socket: tokio::net::UdpSocket,
    handler: Arc<Handler>,
    stop: impl std::future::Future<Output = ()>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    /// Tells the threads to end when the server stops, or when this future is dropped.
    struct Stopper(Arc<AtomicBool>);
    impl Drop for Stopper {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stopped = Stopper(Arc::new(AtomicBool::new(false)));
    let socket = match socket.into_std().and_then(|s| {
        s.set_nonblocking(false)?;
        // How soon the threads see the stop.
        s.set_read_timeout(Some(std::time::Duration::from_millis(200)))?;
        Ok(s)
    }) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            tracing::error!(error = %e, "DNS: cannot set up the UDP socket");
            return;
        }
    };
    let rt = tokio::runtime::Handle::current();
    // One thread per core, all blocking on the one socket: the kernel hands each datagram to
    // one waiting thread, so the cores share the load as unbound's threads do.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut joins = Vec::with_capacity(threads);
    for i in 0..threads {
        let (rt, flag, socket, handler) = (rt.clone(), stopped.0.clone(), socket.clone(), handler.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("k3rs-dns-udp-{i}"))
            .spawn(move || udp_thread(&rt, &flag, &socket, &handler));
        match spawned {
            Ok(t) => joins.push(t),
            Err(e) => tracing::error!(error = %e, "DNS: cannot start a UDP thread"),
        }
    }
    if joins.is_empty() {
        return;
    }
    stop.await;
    drop(stopped);
    let _ = tokio::task::spawn_blocking(move || joins.into_iter().for_each(|t| drop(t.join()))).await;
}

/// One of [`serve_udp`]'s threads: receives, answers, sends, until `stop` is set.
fn udp_thread(
    rt: &tokio::runtime::Handle,
    stop: &std::sync::atomic::AtomicBool,
    socket: &Arc<std::net::UdpSocket>,
    handler: &Arc<Handler>,
) {
    use std::future::Future;
    use std::sync::atomic::Ordering;
    use std::task::Context;
    let _runtime = rt.enter();
    let mut buf = vec![0u8; u16::MAX as usize];
    while !stop.load(Ordering::Relaxed) {
        let (n, src) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            // E.g. an ICMP port unreachable for an earlier answer: the socket is fine.
            Err(e) => {
                tracing::debug!(error = %e, "DNS: receive error on the UDP socket");
                continue;
            }
        };
        // As hickory's server: nothing is sent to port 0.
        if src.port() == 0 {
            continue;
        }
        let (h, s, bytes) = (handler.clone(), socket.clone(), buf[..n].to_vec());
        let mut query = Box::pin(async move {
            if let Some(out) = handle_datagram(&h, bytes, src).await {
                // A UDP send waits only on a full socket buffer.
                if let Err(e) = s.send_to(&out, src) {
                    tracing::debug!(%src, error = %e, "cannot send a DNS response");
                }
            }
        });
        if query.as_mut().poll(&mut Context::from_waker(futures::task::noop_waker_ref())).is_pending() {
            // Polled again at once by the runtime, with a waker of its own.
            rt.spawn(query);
        }
    }
}

/// The handler shared between the UDP loop and hickory's TCP server.
pub struct Shared(pub Arc<Handler>);

#[async_trait::async_trait]
impl RequestHandler for Shared {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, response: R) -> ResponseInfo {
        self.0.handle_request::<R, T>(request, response).await
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use hickory_proto::op::{Message, Query};
    use proptest::prelude::*;

    use super::*;
    use crate::dns::upstream::{Answer, Exchange};

    /// An upstream that is never reachable.
    struct Unreachable;

    #[async_trait::async_trait]
    impl Exchange for Unreachable {
        async fn exchange(&self, _: SocketAddr, _: &Name, _: RecordType) -> Result<Answer, String> {
            Err("unreachable".into())
        }
    }

    fn handler() -> Handler {
        let (_tx, rx) = watch::channel(Arc::new(Index::empty("cluster.local", "10.43.0.10".parse().unwrap())));
        let forwarder = Arc::new(Forwarder::new(Box::new(Unreachable), 16));
        Handler::new(rx, forwarder, vec!["192.0.2.1:53".parse().unwrap()])
    }

    fn query(name: &str, qtype: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 7;
        m.add_query(Query::query(Name::from_str(name).unwrap(), qtype));
        m.to_vec().unwrap()
    }

    #[tokio::test]
    async fn answers_bytes_like_the_server() {
        let h = handler();
        let out = handle_bytes(&h, &query("ns.dns.cluster.local.", RecordType::A)).await.unwrap();
        let m = Message::from_vec(&out).unwrap();
        assert_eq!(m.metadata.id, 7);
        assert_eq!(m.answers[0].data.to_string(), "10.43.0.10");
        let out = handle_bytes(&h, &query("example.com.", RecordType::A)).await.unwrap();
        assert_eq!(Message::from_vec(&out).unwrap().metadata.response_code, ResponseCode::ServFail);
        // Two questions: FORMERR.
        let mut m = Message::query();
        m.add_query(Query::query(Name::from_str("a.").unwrap(), RecordType::A));
        m.add_query(Query::query(Name::from_str("b.").unwrap(), RecordType::A));
        let out = handle_bytes(&h, &m.to_vec().unwrap()).await.unwrap();
        assert_eq!(Message::from_vec(&out).unwrap().metadata.response_code, ResponseCode::FormErr);
        // A class other than IN: NOTIMP.
        let mut m = Message::query();
        let mut q = Query::query(Name::from_str("version.bind.").unwrap(), RecordType::TXT);
        q.set_query_class(DNSClass::CH);
        m.add_query(q);
        let out = handle_bytes(&h, &m.to_vec().unwrap()).await.unwrap();
        assert_eq!(Message::from_vec(&out).unwrap().metadata.response_code, ResponseCode::NotImp);
        assert_eq!(handle_bytes(&h, &[1, 2, 3]).await, None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random bytes, and valid queries with random bytes flipped: never a panic.
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                 flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
                                 name in "[a-z0-9.*_-]{0,80}") {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let h = handler();
            rt.block_on(async {
                let _ = handle_bytes(&h, &bytes).await;
                let n = Name::from_str(&format!("{name}.svc.cluster.local.")).unwrap_or_else(|_| Name::root());
                let mut q = query(&n.to_ascii(), RecordType::SRV);
                for (at, b) in &flips {
                    let len = q.len();
                    q[at % len] ^= b;
                }
                let _ = handle_bytes(&h, &q).await;
            });
        }
    }
}
