//! A node port, or a port ServiceLB answers on the node's address, that a process on the node
//! already listens on: the proxy's rules take that port's new connections before the process
//! sees them, so the Service gets a Warning Event naming the port, rather than silence.
//!
//! Listeners are read from `/proc/net/{tcp,tcp6,udp,udp6}` (the node's network namespace):
//! listening TCP sockets and bound, unconnected UDP sockets, except those bound to loopback
//! only (node ports are not served on 127.0.0.0/8).

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::Resource;

use super::model::Proto;
use crate::controllers::runtime::{self, Context};

/// The ports processes on the node listen on.
pub trait Listeners: Send + Sync {
    fn listening(&self) -> BTreeSet<(Proto, u16)>;
}

/// The node's sockets, from procfs.
pub struct ProcNet;

impl Listeners for ProcNet {
    fn listening(&self) -> BTreeSet<(Proto, u16)> {
        let mut out = BTreeSet::new();
        for (file, proto) in [("tcp", Proto::Tcp), ("tcp6", Proto::Tcp), ("udp", Proto::Udp), ("udp6", Proto::Udp)] {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/net/{file}")) {
                out.extend(parse_proc_net(&text, proto).into_iter().map(|p| (proto, p)));
            }
        }
        out
    }
}

/// The ports of listening (TCP) or bound unconnected (UDP) sockets in one `/proc/net` table,
/// leaving out sockets bound to a loopback address.
pub fn parse_proc_net(text: &str, proto: Proto) -> Vec<u16> {
    // TCP_LISTEN is 0A; an unconnected UDP socket is in state 07 (TCP_CLOSE).
    let wanted = if proto == Proto::Tcp { "0A" } else { "07" };
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let mut fields = line.split_whitespace();
        let (Some(local), Some(_remote), Some(state)) = (fields.nth(1), fields.next(), fields.next()) else {
            continue;
        };
        if state != wanted {
            continue;
        }
        let Some((addr, port)) = local.split_once(':') else { continue };
        let Ok(port) = u16::from_str_radix(port, 16) else { continue };
        if is_loopback(addr) {
            continue;
        }
        out.push(port);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// A procfs address (hex, in the kernel's byte order per 32-bit word) on loopback.
fn is_loopback(hex: &str) -> bool {
    let word = |i: usize| hex.get(i * 8..i * 8 + 8).and_then(|w| u32::from_str_radix(w, 16).ok());
    match hex.len() {
        // IPv4: the first octet is the word's lowest byte.
        8 => word(0).is_some_and(|w| w.to_le_bytes()[0] == 127),
        32 => {
            let words: Option<Vec<u32>> = (0..4).map(word).collect();
            let Some(w) = words else { return false };
            let bytes: Vec<u8> = w.iter().flat_map(|w| w.to_le_bytes()).collect();
            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes.as_slice()).unwrap_or_default());
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
        _ => false,
    }
}

/// The ports of `svc` that the node serves (node ports, and with ServiceLB the Service's
/// ports on the node's address), each with the Event note for when a process holds it.
pub fn served_on_node(svc: &Service, servicelb: bool) -> Vec<((Proto, u16), String)> {
    let Some(spec) = svc.spec.as_ref() else { return Vec::new() };
    let lb = servicelb && super::loadbalancer::served(svc);
    let mut out = Vec::new();
    for p in spec.ports.iter().flatten() {
        let Some(proto) = Proto::parse(p.protocol.as_deref()) else { continue };
        let name = p.protocol.as_deref().unwrap_or("TCP");
        if let Some(np) = p.node_port.and_then(|n| u16::try_from(n).ok()).filter(|n| *n != 0) {
            out.push((
                (proto, np),
                format!("nodePort {np}/{name} is already in use by a process on the node; the Service takes its new connections"),
            ));
        }
        if let Some(port) = lb.then(|| u16::try_from(p.port).ok()).flatten() {
            out.push((
                (proto, port),
                format!("port {port}/{name} is already in use by a process on the node; the load balancer takes its new connections"),
            ));
        }
    }
    out
}

/// Of the ports the node serves (from [`served_on_node`]), the notes of those a process
/// already holds.
pub fn taken(served: Vec<((Proto, u16), String)>, listening: &BTreeSet<(Proto, u16)>) -> Vec<String> {
    served.into_iter().filter(|(p, _)| listening.contains(p)).map(|(_, note)| note).collect()
}

/// Checks each Service as it changes.
pub async fn run(ctx: Context, servicelb: bool, listeners: Arc<dyn Listeners>) {
    let services = ctx.informers.get::<Service>();
    let store = services.store().clone();
    let recorder = Arc::new(ctx.recorder("service-proxy"));
    runtime::run(
        "nodeport-check",
        store,
        runtime::own_triggers(&services),
        ctx.stop.clone(),
        move |svc: Arc<Service>| {
            let (recorder, listeners) = (recorder.clone(), listeners.clone());
            async move {
                let ports = served_on_node(&svc, servicelb);
                // The sockets are read only for Services the node serves a port of.
                if svc.metadata.deletion_timestamp.is_some() || ports.is_empty() {
                    return Ok(Action::await_change());
                }
                let listening = tokio::task::spawn_blocking(move || listeners.listening()).await.unwrap_or_default();
                for note in taken(ports, &listening) {
                    runtime::publish(
                        &recorder,
                        &svc.object_ref(&()),
                        EventType::Warning,
                        "PortInUse",
                        "SyncProxyRules",
                        note,
                    )
                    .await;
                }
                Ok(Action::await_change())
            }
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:7562 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 100 0 0 10 0
   2: 0101A8C0:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   3: 0101A8C0:9C40 0201A8C0:0050 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:7563 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1F91 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  1: 0100000A:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 7 2 0000000000000000 0
  2: 0101A8C0:A000 0801A8C0:0035 01 00000000:00000000 00:00000000 00000000     0        0 8 2 0000000000000000 0
";

    #[test]
    fn reads_listeners_but_not_loopback_or_connected_sockets() {
        // 0.0.0.0:30050 and 192.168.1.1:80 listen; 127.0.0.1:8080 is loopback; 40000 is a client.
        assert_eq!(parse_proc_net(TCP, Proto::Tcp), [80, 30050]);
        // [::]:30051 listens; [::1]:8081 is loopback.
        assert_eq!(parse_proc_net(TCP6, Proto::Tcp), [30051]);
        // 10.0.0.1:53 is bound; the connected socket is a client.
        assert_eq!(parse_proc_net(UDP, Proto::Udp), [53]);
    }

    #[test]
    fn a_taken_node_port_or_load_balancer_port_is_named() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [
                {"port": 80, "nodePort": 30050},
                {"port": 8443, "nodePort": 30443},
                {"port": 53, "protocol": "UDP", "nodePort": 30053}
            ]}
        }))
        .unwrap();
        let listening: BTreeSet<(Proto, u16)> =
            [(Proto::Tcp, 80), (Proto::Tcp, 30050), (Proto::Udp, 30443), (Proto::Tcp, 53)].into();
        assert_eq!(
            taken(served_on_node(&svc, true), &listening),
            [
                "nodePort 30050/TCP is already in use by a process on the node; the Service takes its new connections",
                "port 80/TCP is already in use by a process on the node; the load balancer takes its new connections",
            ]
        );
        // Without ServiceLB the Service's port is not served on the node.
        assert_eq!(taken(served_on_node(&svc, false), &listening).len(), 1);
    }
}
