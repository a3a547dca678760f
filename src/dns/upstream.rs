//! Names outside the cluster: which resolvers to ask (the node's resolv.conf, chosen as k3s
//! chooses it), asking them (behind the [`Exchange`] trait, with hickory's client as the real
//! one) and remembering their answers (a bounded cache that honours TTLs).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// Where upstream's nameservers are read from.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of the real upstream servers, used when /etc/resolv.conf names
/// only its loopback stub (127.0.0.53).
pub const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
/// The longest a forwarded answer is kept (k3s' Corefile: `cache 30`).
pub const MAX_CACHE_TTL: u32 = 30;
/// How many answers the cache holds (CoreDNS' default capacity is of this order).
pub const CACHE_CAPACITY: usize = 10_000;
/// How long one upstream server is given to answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The resolvers to forward to, and the file they came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstreams {
    /// `None`: no file had a usable nameserver; the fallback servers are used.
    pub path: Option<PathBuf>,
    pub servers: Vec<SocketAddr>,
}

/// A nameserver a node can forward to: not loopback (a local stub would loop or be
/// unreachable from pods), not multicast or unspecified.
fn usable(ip: &IpAddr) -> bool {
    !(ip.is_loopback() || ip.is_multicast() || ip.is_unspecified())
}

fn servers_in(text: &str) -> Vec<SocketAddr> {
    crate::kubelet::network::files::parse_resolv_conf(text)
        .nameservers
        .iter()
        .filter_map(|s| s.split('%').next()?.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

/// Chooses the resolv.conf as k3s does: the one given (`--resolv-conf`), taken as it is;
/// otherwise /etc/resolv.conf when it names a usable nameserver, else systemd-resolved's
/// upstream list when that does, else Google's public resolvers. `read` reads a file.
pub fn choose(given: Option<&Path>, read: impl Fn(&Path) -> Option<String>) -> Upstreams {
    if let Some(path) = given {
        let servers = read(path).map(|t| servers_in(&t)).unwrap_or_default();
        return Upstreams { path: Some(path.to_path_buf()), servers };
    }
    for path in [HOST_RESOLV_CONF, SYSTEMD_RESOLV_CONF] {
        let path = Path::new(path);
        if let Some(text) = read(path) {
            let servers: Vec<SocketAddr> = servers_in(&text).into_iter().filter(|s| usable(&s.ip())).collect();
            if !servers.is_empty() {
                return Upstreams { path: Some(path.to_path_buf()), servers };
            }
        }
    }
    Upstreams {
        path: None,
        servers: vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), 53),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888)), 53),
        ],
    }
}

/// An upstream's answer, as much of it as is passed on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream nameserver is configured")]
    NoServers,
    #[error("no upstream nameserver answered: {0}")]
    Unanswered(String),
}

/// Asking one server one question: the side effect, behind a trait so that the cache and
/// the handler are tested without a network.
#[async_trait::async_trait]
pub trait Exchange: Send + Sync + 'static {
    async fn exchange(&self, server: SocketAddr, name: &Name, qtype: RecordType) -> Result<Answer, String>;
}

/// The real exchange: hickory's client over UDP, one multiplexed client per server, and a
/// fresh TCP connection when an answer comes back truncated.
#[derive(Default)]
pub struct HickoryExchange {
    clients: tokio::sync::Mutex<HashMap<SocketAddr, Client<TokioRuntimeProvider>>>,
}

impl HickoryExchange {
    async fn udp_client(&self, server: SocketAddr) -> Client<TokioRuntimeProvider> {
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&server) {
            return c.clone();
        }
        let stream =
            UdpClientStream::builder(server, TokioRuntimeProvider::default()).with_timeout(Some(QUERY_TIMEOUT)).build();
        let (client, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(bg);
        clients.insert(server, client.clone());
        client
    }
}

#[async_trait::async_trait]
impl Exchange for HickoryExchange {
    async fn exchange(&self, server: SocketAddr, name: &Name, qtype: RecordType) -> Result<Answer, String> {
        let mut client = self.udp_client(server).await;
        let mut response = match client.query(name.clone(), DNSClass::IN, qtype).await {
            Ok(r) => r.into_message(),
            Err(e) => {
                // A broken client (e.g. its socket failed) is replaced on the next query.
                self.clients.lock().await.remove(&server);
                return Err(e.to_string());
            }
        };
        if response.metadata.truncation {
            let (connect, handle) =
                TcpClientStream::new(server, None, Some(QUERY_TIMEOUT), TokioRuntimeProvider::new());
            let stream = connect.await.map_err(|e| e.to_string())?;
            let (mut tcp, bg) = Client::<TokioRuntimeProvider>::with_timeout(stream, handle, QUERY_TIMEOUT);
            let bg = tokio::spawn(bg);
            let r = tcp.query(name.clone(), DNSClass::IN, qtype).await;
            bg.abort();
            response = r.map_err(|e| e.to_string())?.into_message();
        }
        Ok(Answer {
            rcode: response.metadata.response_code,
            answers: response.answers,
            authorities: response.authorities,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    name: Name,
    qtype: RecordType,
}

struct Entry {
    answer: Answer,
    stored: Instant,
    ttl: u32,
}

/// A bounded cache of upstream answers: kept for their smallest TTL (negative answers for
/// the SOA's minimum), at most [`MAX_CACHE_TTL`]; handed out with TTLs counted down.
pub struct Cache {
    entries: Mutex<HashMap<Key, Entry>>,
    capacity: usize,
}

impl Cache {
    pub fn new(capacity: usize) -> Cache {
        Cache { entries: Mutex::new(HashMap::new()), capacity: capacity.max(1) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, name: &Name, qtype: RecordType, now: Instant) -> Option<Answer> {
        let key = Key { name: name.to_lowercase(), qtype };
        let mut entries = self.lock();
        let entry = entries.get(&key)?;
        let age = u32::try_from(now.saturating_duration_since(entry.stored).as_secs()).unwrap_or(u32::MAX);
        if age >= entry.ttl {
            entries.remove(&key);
            return None;
        }
        let mut answer = entry.answer.clone();
        for r in answer.answers.iter_mut().chain(answer.authorities.iter_mut()) {
            r.ttl = r.ttl.min(entry.ttl).saturating_sub(age).max(1);
        }
        Some(answer)
    }

    pub fn put(&self, name: &Name, qtype: RecordType, answer: &Answer, now: Instant) {
        let Some(ttl) = cache_ttl(answer) else { return };
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            entries.retain(|_, e| now.saturating_duration_since(e.stored).as_secs() < u64::from(e.ttl));
            if entries.len() >= self.capacity {
                // Still full of live answers: drop one, whichever the map yields first.
                if let Some(k) = entries.keys().next().cloned() {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(Key { name: name.to_lowercase(), qtype }, Entry { answer: answer.clone(), stored: now, ttl });
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How long an answer may be cached: `None` for answers that are not (errors, TTL 0).
fn cache_ttl(answer: &Answer) -> Option<u32> {
    let ttl = match answer.rcode {
        ResponseCode::NoError if !answer.answers.is_empty() => answer.answers.iter().map(|r| r.ttl).min(),
        ResponseCode::NoError | ResponseCode::NXDomain => answer.authorities.iter().find_map(|r| match &r.data {
            RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
            _ => None,
        }),
        _ => None,
    }?;
    (ttl > 0).then_some(ttl.min(MAX_CACHE_TTL))
}

/// Forwarding with the cache in front: each server in turn until one answers.
pub struct Forwarder {
    exchange: Box<dyn Exchange>,
    pub cache: Cache,
}

impl Forwarder {
    pub fn new(exchange: Box<dyn Exchange>, capacity: usize) -> Forwarder {
        Forwarder { exchange, cache: Cache::new(capacity) }
    }

    pub async fn resolve(
        &self,
        servers: &[SocketAddr],
        name: &Name,
        qtype: RecordType,
    ) -> Result<Answer, ForwardError> {
        if let Some(hit) = self.cache.get(name, qtype, Instant::now()) {
            return Ok(hit);
        }
        if servers.is_empty() {
            return Err(ForwardError::NoServers);
        }
        let mut errors = Vec::new();
        for server in servers {
            match self.exchange.exchange(*server, name, qtype).await {
                Ok(mut answer) => {
                    // As CoreDNS' cache does, the reply's TTLs are capped to how long the
                    // cache keeps it, so a client never sees a TTL fall back.
                    if let Some(ttl) = cache_ttl(&answer) {
                        for r in answer.answers.iter_mut().chain(answer.authorities.iter_mut()) {
                            r.ttl = r.ttl.min(ttl);
                        }
                    }
                    self.cache.put(name, qtype, &answer, Instant::now());
                    return Ok(answer);
                }
                Err(e) => errors.push(format!("{server}: {e}")),
            }
        }
        Err(ForwardError::Unanswered(errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA};
    use std::str::FromStr;

    fn name(s: &str) -> Name {
        Name::from_str(s).unwrap()
    }

    #[test]
    fn chooses_resolv_conf_as_k3s_does() {
        let files = |etc: &'static str, systemd: Option<&'static str>| {
            move |p: &Path| match p.to_str() {
                Some(HOST_RESOLV_CONF) => Some(etc.to_string()),
                Some(SYSTEMD_RESOLV_CONF) => systemd.map(str::to_string),
                Some("/given") => Some("nameserver 127.0.0.1\n".to_string()),
                _ => None,
            }
        };
        let u = choose(None, files("nameserver 192.168.1.1\nnameserver 127.0.0.53\n", None));
        assert_eq!(u.path.as_deref(), Some(Path::new(HOST_RESOLV_CONF)));
        assert_eq!(u.servers, ["192.168.1.1:53".parse().unwrap()]);
        let u = choose(None, files("nameserver 127.0.0.53\n", Some("nameserver 10.0.0.2\n")));
        assert_eq!(u.path.as_deref(), Some(Path::new(SYSTEMD_RESOLV_CONF)));
        assert_eq!(u.servers, ["10.0.0.2:53".parse().unwrap()]);
        let u = choose(None, files("nameserver 127.0.0.53\n", Some("nameserver ::1\n")));
        assert_eq!(u.path, None);
        assert_eq!(u.servers[0], "8.8.8.8:53".parse().unwrap());
        // A file given on the command line is taken as it is, loopback included.
        let u = choose(Some(Path::new("/given")), files("", None));
        assert_eq!(u.servers, ["127.0.0.1:53".parse().unwrap()]);
    }

    #[test]
    fn cache_honours_ttls_and_capacity() {
        let cache = Cache::new(2);
        let t0 = Instant::now();
        let a = |ttl| Answer {
            rcode: ResponseCode::NoError,
            answers: vec![Record::from_rdata(name("a.example."), ttl, RData::A(A::new(1, 2, 3, 4)))],
            authorities: vec![],
        };
        cache.put(&name("A.example."), RecordType::A, &a(10), t0);
        let hit = cache.get(&name("a.EXAMPLE."), RecordType::A, t0 + Duration::from_secs(4)).unwrap();
        assert_eq!(hit.answers[0].ttl, 6);
        assert!(cache.get(&name("a.example."), RecordType::AAAA, t0).is_none());
        assert!(cache.get(&name("a.example."), RecordType::A, t0 + Duration::from_secs(10)).is_none());
        // Capped at 30 s; TTL 0 and SERVFAIL are not kept.
        cache.put(&name("b.example."), RecordType::A, &a(3600), t0);
        assert_eq!(cache.get(&name("b.example."), RecordType::A, t0).unwrap().answers[0].ttl, 30);
        assert!(cache.get(&name("b.example."), RecordType::A, t0 + Duration::from_secs(31)).is_none());
        cache.put(&name("c.example."), RecordType::A, &a(0), t0);
        let fail = Answer { rcode: ResponseCode::ServFail, answers: vec![], authorities: vec![] };
        cache.put(&name("d.example."), RecordType::A, &fail, t0);
        assert!(cache.is_empty());
        // Negative answers live for the SOA minimum.
        let soa = SOA::new(name("ns.example."), name("h.example."), 1, 1, 1, 1, 7);
        let nx = Answer {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authorities: vec![Record::from_rdata(name("example."), 300, RData::SOA(soa))],
        };
        cache.put(&name("nx.example."), RecordType::A, &nx, t0);
        assert!(cache.get(&name("nx.example."), RecordType::A, t0 + Duration::from_secs(6)).is_some());
        assert!(cache.get(&name("nx.example."), RecordType::A, t0 + Duration::from_secs(7)).is_none());
        for i in 0..5 {
            cache.put(&name(&format!("{i}.example.")), RecordType::A, &a(10), t0);
        }
        assert!(cache.len() <= 2);
    }
}
