//! The cluster DNS server against a real API server started in process on a temp dir:
//! Services, EndpointSlices and the custom ConfigMap are written through the API, the DNS
//! server runs on 127.0.0.1:<ephemeral>, and hickory's client asks it over UDP and TCP.
//! Names outside the cluster go to small upstream DNS servers the test runs (hickory-server
//! on other loopback ports) that count what they are asked.

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_net::client::{Client, ClientHandle};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::udp::UdpClientStream;
use hickory_proto::op::{Message, Metadata, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::MessageResponseBuilder;
use k3rs::apiserver::Identity;
use k3rs::controllers::runtime::{Context, Stop};
use k3rs::dns::{self, DnsConfig};
use k3rs::server::config::ServerConfig;
use k3rs::store::sqlite::{SqliteOptions, SqliteStore};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// A tiny authoritative server: `name` → `ip` (TTL 60), NXDOMAIN for anything else; counts
/// the questions it gets.
pub(crate) struct Upstream {
    pub(crate) name: Name,
    pub(crate) ip: Ipv4Addr,
    pub(crate) asked: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl RequestHandler for Upstream {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        self.asked.fetch_add(1, Ordering::SeqCst);
        let mut meta = Metadata::response_from_request(&request.metadata);
        let mut answers = Vec::new();
        match request.request_info() {
            Ok(info) if *info.query.original().name() == self.name && info.query.query_type() == RecordType::A => {
                answers.push(Record::from_rdata(self.name.clone(), 60, RData::A(A(self.ip))));
            }
            _ => meta.response_code = ResponseCode::NXDomain,
        }
        meta.authoritative = true;
        let msg = MessageResponseBuilder::from_message_request(request).build(
            meta,
            answers.iter(),
            std::iter::empty(),
            std::iter::empty(),
            std::iter::empty(),
        );
        response.send_response(msg).await.expect("upstream answers")
    }
}

async fn upstream(name: &str, ip: Ipv4Addr) -> (SocketAddr, Arc<AtomicUsize>, Server<Upstream>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut server = Server::new(Upstream { name: Name::from_str(name).unwrap(), ip, asked: asked.clone() });
    server.register_socket(socket);
    (addr, asked, server)
}

/// Asks `server` over UDP or TCP.
async fn ask(server: SocketAddr, tcp: bool, name: &str, qtype: RecordType) -> Message {
    let name = Name::from_str(name).unwrap();
    let response = if tcp {
        let (connect, handle) = TcpClientStream::new(server, None, None, TokioRuntimeProvider::new());
        let (mut c, bg) = Client::<TokioRuntimeProvider>::new(connect.await.unwrap(), handle);
        tokio::spawn(bg);
        c.query(name, DNSClass::IN, qtype).await.unwrap()
    } else {
        let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default()).build();
        let (mut c, bg) = Client::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(bg);
        c.query(name, DNSClass::IN, qtype).await.unwrap()
    };
    response.into_message()
}

fn data(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

/// Polls until the answer to `name` satisfies `ok` (the index follows the API a moment later).
async fn until(server: SocketAddr, name: &str, qtype: RecordType, ok: impl Fn(&Message) -> bool) -> Message {
    let start = Instant::now();
    loop {
        let m = ask(server, false, name, qtype).await;
        if ok(&m) {
            return m;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{name} {qtype}: still {m:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_cluster_zone_and_forwards_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::with_defaults(dir.path().join("data"), "node-a");
    config.apiserver.bind_address = "127.0.0.1".parse().unwrap();
    config.apiserver.https_listen_port = 0;
    config.apiserver.write_kubeconfig = dir.path().join("kubeconfig.yaml");
    config.controllers.clear();
    let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|v| *v).await;
        }
    };
    let started = k3rs::server::apiserver::start(&config, Arc::new(store), stopped.clone()).await.unwrap();
    let admin = k3rs::client::kube_client(
        &started.api,
        Identity::new("system:admin", &["system:masters", "system:authenticated"]),
    );

    let (up_addr, up_asked, mut up_server) = upstream("outside.example.", Ipv4Addr::new(203, 0, 113, 7)).await;
    let (stub_addr, _stub_asked, mut stub_server) = upstream("host.acme.local.", Ipv4Addr::new(198, 51, 100, 1)).await;

    let (ctx, _failed) = Context::in_process(
        &started.api,
        Identity::new("system:kube-controller-manager", &["system:authenticated"]),
        Stop::new(stopped.clone()),
        String::new(),
    );
    let dns = dns::start(
        ctx.client.clone(),
        &ctx.informers,
        DnsConfig {
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            domain: "cluster.local".into(),
            cluster_dns: "10.43.0.10".parse().unwrap(),
            upstreams: vec![up_addr],
            publish_service: true,
        },
        Stop::new(stopped.clone()),
    )
    .await
    .unwrap();
    let srv = dns.addresses[0];

    // kube-dns exists, as k3s' CoreDNS Service, with endpoints naming the listen address.
    let kube_dns = Api::<Service>::namespaced(admin.clone(), "kube-system").get("kube-dns").await.unwrap();
    let spec = kube_dns.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.43.0.10"));
    assert_eq!(spec.selector, None);
    assert_eq!(kube_dns.metadata.labels.unwrap()["k8s-app"], "kube-dns");
    let eps = Api::<Endpoints>::namespaced(admin.clone(), "kube-system").get("kube-dns").await.unwrap();
    let subset = &eps.subsets.unwrap()[0];
    assert_eq!(subset.addresses.as_ref().unwrap()[0].ip, "127.0.0.1");
    assert_eq!(subset.ports.as_ref().unwrap()[0].port, i32::from(srv.port()));
    assert_eq!(eps.metadata.labels.unwrap()["endpointslice.kubernetes.io/skip-mirror"], "true");
    let slice = Api::<EndpointSlice>::namespaced(admin.clone(), "kube-system").get("kube-dns").await.unwrap();
    assert_eq!(slice.endpoints[0].addresses, ["127.0.0.1"]);
    let m = until(srv, "kube-dns.kube-system.svc.cluster.local.", RecordType::A, |m| !m.answers.is_empty()).await;
    assert_eq!(data(&m), ["10.43.0.10"]);

    // Objects through the API.
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap())
        .await
        .unwrap();
    let services = Api::<Service>::namespaced(admin.clone(), "shop");
    let slices = Api::<EndpointSlice>::namespaced(admin.clone(), "shop");
    for svc in [
        json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.43.7.7",
            "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
        json!({"metadata": {"name": "db"}, "spec": {"clusterIP": "None",
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}}),
        json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "outside.example"}}),
    ] {
        services.create(&PostParams::default(), &serde_json::from_value(svc).unwrap()).await.unwrap();
    }
    slices
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "db-abc", "labels": {"kubernetes.io/service-name": "db",
                    "endpointslice.kubernetes.io/managed-by": "dnsserver-test"}},
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": ["10.42.0.11"], "hostname": "db-0", "conditions": {"ready": true}},
                    {"addresses": ["10.42.0.12"], "hostname": "db-1", "conditions": {"ready": true}},
                    {"addresses": ["10.42.0.13"], "hostname": "db-2", "conditions": {"ready": false}},
                ],
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}))
            .unwrap(),
        )
        .await
        .unwrap();

    // A for a ClusterIP Service, over UDP and TCP, authoritative, TTL 5.
    let m = until(srv, "web.shop.svc.cluster.local.", RecordType::A, |m| !m.answers.is_empty()).await;
    assert_eq!(data(&m), ["10.43.7.7"]);
    assert!(m.metadata.authoritative);
    assert_eq!(m.answers[0].ttl, 5);
    let m = ask(srv, true, "web.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&m), ["10.43.7.7"]);

    // Headless: the ready endpoints; and each endpoint's hostname.
    let m = until(srv, "db.shop.svc.cluster.local.", RecordType::A, |m| m.answers.len() == 2).await;
    assert_eq!(data(&m), ["10.42.0.11", "10.42.0.12"]);
    let m = ask(srv, false, "db-1.db.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&m), ["10.42.0.12"]);

    // SRV for named ports, over TCP too.
    let m = ask(srv, true, "_http._tcp.web.shop.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(data(&m), ["0 100 80 web.shop.svc.cluster.local."]);
    assert_eq!(m.additionals.iter().filter(|r| r.record_type() == RecordType::A).count(), 1);
    let m = ask(srv, false, "_pg._tcp.db.shop.svc.cluster.local.", RecordType::SRV).await;
    assert_eq!(data(&m), ["0 50 5432 db-0.db.shop.svc.cluster.local.", "0 50 5432 db-1.db.shop.svc.cluster.local."]);

    // ExternalName: the CNAME, followed upstream.
    let m = ask(srv, false, "ext.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(data(&m), ["outside.example.", "203.0.113.7"]);

    // PTR of a Service address and of an endpoint.
    let m = ask(srv, false, "7.7.43.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(data(&m), ["web.shop.svc.cluster.local."]);
    let m = ask(srv, false, "11.0.42.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(data(&m), ["db-0.db.shop.svc.cluster.local."]);

    // NXDOMAIN versus NODATA, both with the zone's SOA.
    let m = ask(srv, false, "nope.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    let m = ask(srv, true, "web.shop.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(
        m.authorities[0].data.to_string().split(' ').take(2).collect::<Vec<_>>(),
        ["ns.dns.cluster.local.", "hostmaster.cluster.local."]
    );
    let m = ask(srv, false, "shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!((m.metadata.response_code, m.answers.len()), (ResponseCode::NoError, 0));
    let m = ask(srv, false, "nowhere.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = ask(srv, false, "10-42-0-99.shop.pod.cluster.local.", RecordType::A).await;
    assert_eq!(data(&m), ["10.42.0.99"]);

    // Forwarded, then answered from the cache.
    let before = up_asked.load(Ordering::SeqCst);
    let m = ask(srv, false, "outside.example.", RecordType::A).await;
    assert_eq!(data(&m), ["203.0.113.7"]);
    assert!(m.metadata.recursion_available && !m.metadata.authoritative);
    let m = ask(srv, true, "outside.example.", RecordType::A).await;
    assert_eq!(data(&m), ["203.0.113.7"]);
    assert!(m.answers[0].ttl <= 30, "capped at 30 s: {}", m.answers[0].ttl);
    assert_eq!(up_asked.load(Ordering::SeqCst), before, "the ExternalName chase already cached it");
    let m = ask(srv, false, "missing.example.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(up_asked.load(Ordering::SeqCst), before + 1);

    // The custom ConfigMap: hosts and a stub domain, applied when it changes.
    let m = ask(srv, false, "host.acme.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "before the stub domain: the upstream's answer");
    let cms = Api::<ConfigMap>::namespaced(admin.clone(), "kube-system");
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "k3rs-dns-custom"}, "data": {
            "hosts": "192.168.50.5 registry.lan\n",
            "stubDomains": format!("{{\"acme.local\": [\"{stub_addr}\"]}}"),
        }}))
        .unwrap(),
    )
    .await
    .unwrap();
    let m = until(srv, "registry.lan.", RecordType::A, |m| !m.answers.is_empty()).await;
    assert_eq!(data(&m), ["192.168.50.5"]);
    let m = until(srv, "other.acme.local.", RecordType::A, |_| true).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    let m = ask(srv, false, "host.acme.local.", RecordType::A).await;
    // The upstream's NXDOMAIN is cached for want of an SOA? No: without an SOA it is not kept.
    assert_eq!(data(&m), ["198.51.100.1"]);
    let m = ask(srv, false, "50.168.192.in-addr.arpa.", RecordType::PTR).await;
    assert_ne!(m.metadata.response_code, ResponseCode::NoError, "not a host address: forwarded");
    cms.patch(
        "k3rs-dns-custom",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"hosts": "192.168.50.6 registry.lan\n"}})),
    )
    .await
    .unwrap();
    until(srv, "registry.lan.", RecordType::A, |m| data(m) == ["192.168.50.6"]).await;

    // An update: the Service deleted → NXDOMAIN.
    services.delete("web", &DeleteParams::default()).await.unwrap();
    let m = until(srv, "web.shop.svc.cluster.local.", RecordType::A, |m| {
        m.metadata.response_code == ResponseCode::NXDomain
    })
    .await;
    assert!(m.answers.is_empty());
    let m = ask(srv, false, "7.7.43.10.in-addr.arpa.", RecordType::PTR).await;
    assert!(m.answers.is_empty());

    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), dns.task).await;
    up_server.shutdown_gracefully().await.ok();
    stub_server.shutdown_gracefully().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queries_get_formerr_or_nothing() {
    use tokio::net::UdpSocket;
    let (tx, _rx) =
        tokio::sync::watch::channel(Arc::new(dns::Index::empty("cluster.local", "10.43.0.10".parse().unwrap())));
    let forwarder = Arc::new(dns::Forwarder::new(Box::new(dns::HickoryExchange::default()), 16));
    let mut server = Server::new(dns::Handler::new(tx.subscribe(), forwarder, vec![]));
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    server.register_socket(socket);
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut buf = [0u8; 512];
    // A header that claims a question which is not there: FORMERR.
    let bad = [0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x05, b'a'];
    client.send_to(&bad, addr).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(2), client.recv(&mut buf)).await.unwrap().unwrap();
    let reply = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(reply.metadata.id, 0x1234);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    // Three bytes: no header, no reply; the server still answers the next query.
    client.send_to(&[1, 2, 3], addr).await.unwrap();
    let m = ask(addr, false, "cluster.local.", RecordType::SOA).await;
    assert_eq!(m.answers[0].record_type(), RecordType::SOA);
    server.shutdown_gracefully().await.ok();
}
