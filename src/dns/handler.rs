//! The request handler hickory-server calls for each query (UDP or TCP): the cluster zone
//! from the current [`Index`], everything else forwarded through the cache.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Edns, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
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

/// A response handler that keeps the encoded response (for [`handle_bytes`]).
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
        let mut bytes = Vec::new();
        let mut encoder = hickory_proto::serialize::binary::BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response.destructive_emit(&mut encoder)?;
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
        Ok(info)
    }
}

/// One datagram through the handler, as the server passes it: `None` when hickory cannot
/// read a request out of the bytes (the server then answers FORMERR if it can read the
/// header, and drops the datagram if not). For the fuzz target and the property test.
pub async fn handle_bytes(handler: &Handler, bytes: &[u8]) -> Option<Vec<u8>> {
    let src = SocketAddr::from(([127, 0, 0, 1], 5353));
    let request = Request::from_bytes(bytes.to_vec(), src, hickory_server::net::xfer::Protocol::Udp).ok()?;
    let capture = Capture::default();
    handler.handle_request::<_, hickory_server::net::runtime::TokioTime>(&request, capture.clone()).await;
    let out = capture.0.lock().unwrap_or_else(|p| p.into_inner()).take();
    out
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
