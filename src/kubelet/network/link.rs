//! The netlink side of the pod network: the node's bridge, each pod's veth pair (host end a
//! bridge port with hairpin, pod end `eth0` inside the pod's namespace), addresses and the
//! pod's default route, and the forwarding sysctls. All through rtnetlink, on a handle whose
//! socket lives in the namespace being changed.

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;

use futures::TryStreamExt;
use std::time::Duration;

use rtnetlink::packet_route::link::{
    BridgePortState, InfoBridgePort, InfoData, InfoPortData, InfoVeth, LinkAttribute, LinkInfo, LinkMessage, State,
};
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

/// The interface name of the pod's end of its veth pair.
pub const POD_IFNAME: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{op} {target}: {source}")]
    Netlink { op: &'static str, target: String, source: rtnetlink::Error },
    #[error("link {0} does not exist")]
    Missing(String),
    #[error("only IPv4 pod networks are supported, got {0}")]
    NotIpv4(IpAddr),
    #[error("write sysctl {}: {source}", path.display())]
    Sysctl { path: PathBuf, source: io::Error },
}

fn nl(op: &'static str, target: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let target = target.into();
    move |source| LinkError::Netlink { op, target, source }
}

/// The errno a netlink request failed with, if it was a kernel error.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => Some(m.raw_code().abs()),
        _ => None,
    }
}

/// The index of the link called `name`, if there is one.
pub async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>, LinkError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(msg)) => Ok(Some(msg.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl("look up link", name)(e)),
    }
}

/// Makes sure the bridge exists with `gateway/prefix` on it, the MTU and up; returns its index.
/// Existing bridges are left as they are apart from that, so restarts do not disturb pods.
pub async fn ensure_bridge(
    handle: &Handle,
    name: &str,
    mac: [u8; 6],
    mtu: u32,
    gateway: IpAddr,
    prefix: u8,
) -> Result<u32, LinkError> {
    if index_of(handle, name).await?.is_none() {
        // A fixed address: otherwise the bridge takes the lowest port address, which changes
        // as pods come and go and leaves pods with a stale gateway entry in their ARP cache.
        let msg = LinkBridge::new(name).address(mac.to_vec()).mtu(mtu).build();
        match handle.link().add(msg).execute().await {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(libc::EEXIST) => {}
            Err(e) => return Err(nl("create bridge", name)(e)),
        }
    }
    let index = index_of(handle, name).await?.ok_or_else(|| LinkError::Missing(name.to_string()))?;
    match handle.address().add(index, gateway, prefix).execute().await {
        Ok(()) => {}
        Err(e) if errno(&e) == Some(libc::EEXIST) => {}
        Err(e) => return Err(nl("add gateway address to", name)(e)),
    }
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
        .execute()
        .await
        .map_err(nl("bring up", name))?;
    Ok(index)
}

/// Creates the veth pair in one request: `host_name` in the handle's namespace, already a port
/// of `bridge` and up, and `eth0` directly inside the namespace `pod_netns` refers to (so no
/// rename step and no name clash on the node; it cannot be brought up in the same request,
/// the kernel configures it before the pair is joined). One request instead of several matters
/// when many pods start at once: every link change takes the kernel's one RTNL lock.
pub async fn add_veth(
    handle: &Handle,
    host_name: &str,
    pod_netns: RawFd,
    mtu: u32,
    bridge: u32,
) -> Result<(), LinkError> {
    let peer: LinkMessage =
        LinkMessageBuilder::<LinkUnspec>::new().name(POD_IFNAME).mtu(mtu).setns_by_fd(pod_netns).build();
    let msg = LinkVeth::new(host_name, POD_IFNAME)
        .mtu(mtu)
        .controller(bridge)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    handle.link().add(msg).execute().await.map_err(nl("create veth pair", host_name))
}

/// Turns on hairpin on the host end's bridge port (a pod reaching itself through a service
/// address comes back out of the same port). Port options apply only to an existing port,
/// hence a request of its own.
pub async fn set_hairpin(handle: &Handle, host_name: &str) -> Result<(), LinkError> {
    let index = index_of(handle, host_name).await?.ok_or_else(|| LinkError::Missing(host_name.to_string()))?;
    handle
        .link()
        .set_port(LinkBridgePort::new(index).hairpin(true).build())
        .execute()
        .await
        .map_err(nl("enable hairpin on", host_name))
}

/// Inside the pod: loopback up, `eth0` with its address up, default route via the gateway.
pub async fn configure_pod(handle: &Handle, ip: IpAddr, prefix: u8, gateway: IpAddr) -> Result<(), LinkError> {
    let IpAddr::V4(gw) = gateway else { return Err(LinkError::NotIpv4(gateway)) };
    let lo = index_of(handle, "lo").await?.ok_or_else(|| LinkError::Missing("lo".into()))?;
    handle.link().set(LinkUnspec::new_with_index(lo).up().build()).execute().await.map_err(nl("bring up", "lo"))?;
    let eth0 = index_of(handle, POD_IFNAME).await?.ok_or_else(|| LinkError::Missing(POD_IFNAME.into()))?;
    handle.address().add(eth0, ip, prefix).execute().await.map_err(nl("add pod address to", POD_IFNAME))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(eth0).up().build())
        .execute()
        .await
        .map_err(nl("bring up", POD_IFNAME))?;
    let route = RouteMessageBuilder::<std::net::Ipv4Addr>::new().gateway(gw).output_interface(eth0).build();
    handle.route().add(route).execute().await.map_err(nl("add default route in", "pod"))
}

/// Waits until the pod's `eth0`, the host end and the bridge are operationally up and the host
/// end is a forwarding bridge port. The kernel finishes bringing a link up asynchronously (its
/// queue is attached and the bridge told about the carrier from a work queue, for the bridge
/// itself with up to a second of delay when its first port appears), so right after the
/// netlink calls return, a pod's first packets, or the gateway's answers, can still be
/// dropped. Returns false if that does not happen within `timeout`.
pub async fn wait_ready(
    host: &Handle,
    pod: &Handle,
    host_name: &str,
    bridge: &str,
    timeout: Duration,
) -> Result<bool, LinkError> {
    let deadline = tokio::time::Instant::now() + timeout;
    // Short first pauses for the usual case; longer ones when many pods start at once, where
    // every query competes with the other pods' link changes for the RTNL lock.
    let mut pause = Duration::from_millis(1);
    loop {
        if link_ready(host, host_name, true).await?
            && link_ready(pod, POD_IFNAME, false).await?
            && link_ready(host, bridge, false).await?
        {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(16));
    }
}

async fn link_ready(handle: &Handle, name: &str, bridge_port: bool) -> Result<bool, LinkError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    let Some(msg) = links.try_next().await.map_err(nl("look up link", name))? else { return Ok(false) };
    let up = msg.attributes.iter().any(|a| matches!(a, LinkAttribute::OperState(State::Up)));
    let forwarding = !bridge_port
        || msg.attributes.iter().any(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().any(|i| match i {
                LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                    port.iter().any(|p| matches!(p, InfoBridgePort::State(BridgePortState::Forwarding)))
                }
                _ => false,
            }),
            _ => false,
        });
    Ok(up && forwarding)
}

/// Waits until no link called `name` exists; false if one still does after `timeout`.
pub async fn wait_gone(handle: &Handle, name: &str, timeout: Duration) -> Result<bool, LinkError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_micros(500);
    loop {
        if index_of(handle, name).await?.is_none() {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Deletes the link called `name` if it exists (deleting one end of a veth pair deletes both).
pub async fn delete(handle: &Handle, name: &str) -> Result<(), LinkError> {
    let Some(index) = index_of(handle, name).await? else { return Ok(()) };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
        Err(e) => Err(nl("delete link", name)(e)),
    }
}

/// Names of the links attached to the bridge with index `bridge`.
pub async fn ports(handle: &Handle, bridge: u32) -> Result<Vec<String>, LinkError> {
    let mut out = Vec::new();
    let mut links = handle.link().get().execute();
    while let Some(msg) = links.try_next().await.map_err(nl("list", "links"))? {
        let on_bridge = msg.attributes.iter().any(|a| matches!(a, LinkAttribute::Controller(i) if *i == bridge));
        if on_bridge {
            out.extend(msg.attributes.into_iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            }));
        }
    }
    Ok(out)
}

/// Enables IPv4 forwarding in the calling thread's network namespace, globally and on the
/// bridge (service traffic DNATed back onto the bridge is routed, not bridged).
pub fn enable_forwarding(bridge: &str) -> Result<(), LinkError> {
    for path in ["/proc/sys/net/ipv4/ip_forward".to_string(), format!("/proc/sys/net/ipv4/conf/{bridge}/forwarding")] {
        let path = PathBuf::from(path);
        if std::fs::read_to_string(&path).map(|v| v.trim() == "1").unwrap_or(false) {
            continue;
        }
        std::fs::write(&path, "1").map_err(|source| LinkError::Sysctl { path, source })?;
    }
    Ok(())
}

/// The host-side name of a pod's veth: stable per pod uid (teardown finds it without any
/// state), 15 characters at most as the kernel requires.
pub fn host_veth_name(uid: &str) -> String {
    // FNV-1a: stable across builds and platforms, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("veth{:011x}", h & 0x0fff_ffff_ffff)
}

/// A locally administered unicast MAC for the bridge derived from its name and network, so it
/// is the same after every restart.
pub fn bridge_mac(name: &str, network: &str) -> [u8; 6] {
    let h = host_veth_name(&format!("{name}/{network}"));
    let hex = &h[4..];
    let mut mac = [0x02u8, 0, 0, 0, 0, 0];
    for (i, byte) in mac.iter_mut().enumerate().skip(1) {
        *byte = u8::from_str_radix(&hex[(i - 1) * 2..(i - 1) * 2 + 2], 16).unwrap_or(0);
    }
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_short_and_stable() {
        let a = host_veth_name("0b8f2a4e-1d2c-4b7e-9f00-123456789abc");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with("veth"));
        assert_eq!(a, host_veth_name("0b8f2a4e-1d2c-4b7e-9f00-123456789abc"));
        assert_ne!(a, host_veth_name("0b8f2a4e-1d2c-4b7e-9f00-123456789abd"));
    }

    #[test]
    fn bridge_mac_is_local_unicast() {
        let mac = bridge_mac("k3rs0", "10.42.0.0/24");
        assert_eq!(mac[0] & 0x03, 0x02);
        assert_eq!(mac, bridge_mac("k3rs0", "10.42.0.0/24"));
        assert_ne!(mac, bridge_mac("k3rs0", "10.42.1.0/24"));
    }
}
