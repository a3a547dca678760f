#![no_main]
//! The cluster DNS server's request handler over arbitrary datagrams: whatever arrives, the
//! handler answers or drops it, and never panics.

use std::sync::{Arc, OnceLock};

use k3rs::dns::{Forwarder, Handler, HickoryExchange, Index};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime"))
}

/// The handler, and the sender that keeps its index channel open.
type Held = (Handler, tokio::sync::watch::Sender<Arc<Index>>);

fn handler() -> &'static Handler {
    static H: OnceLock<Held> = OnceLock::new();
    &H.get_or_init(|| {
        let mut index = Index::empty("cluster.local", "10.43.0.10".parse().expect("ip"));
        index.namespaces.insert("default".into());
        index.custom.hosts.insert("registry.lan".into(), vec!["192.168.1.5".parse().expect("ip")]);
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(index));
        let forwarder = Arc::new(Forwarder::new(Box::new(HickoryExchange::default()), 64));
        // No upstream: forwarded names fail at once (SERVFAIL) instead of waiting on a network.
        (Handler::new(rx, forwarder, Vec::new()), tx)
    })
    .0
}

fuzz_target!(|data: &[u8]| {
    let _ = runtime().block_on(k3rs::dns::handler::handle_bytes(handler(), data));
});
