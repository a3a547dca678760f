//! The netlink side of the pod network: the node's bridge, each pod's veth pair (host end a
//! bridge port with hairpin, pod end `eth0` inside the pod's namespace), addresses and the
//! pod's default route, and the forwarding sysctls. The requests themselves are the [`Netlink`]
//! trait: [`RtNetlink`] makes them through rtnetlink, on a handle whose socket lives in the
//! namespace being changed; the functions here build the pod network's steps on top of it.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::Duration;

use futures::TryStreamExt;

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

/// One link as the pod network looks at it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// Operationally up: carrier on and queue attached, so packets pass.
    pub up: bool,
    /// A bridge port in the forwarding state.
    pub forwarding: bool,
    /// The index of the bridge it is a port of.
    pub controller: Option<u32>,
}

/// The netlink requests (and the forwarding sysctls) the pod network makes in one network
/// namespace, the node's or a pod's: the side effects of this module, behind a trait so the
/// logic built on them is tested against an in-memory fake (`fake::FakeNetlink`). Requests that only repeat
/// what is there already (a link or address that exists, a link that is gone) succeed.
#[async_trait::async_trait]
pub trait Netlink: Send + Sync {
    /// The link called `name`, if there is one.
    async fn link(&self, name: &str) -> Result<Option<Link>, LinkError>;
    /// Every link of the namespace.
    async fn links(&self) -> Result<Vec<Link>, LinkError>;
    /// Creates a bridge with a fixed MAC address and MTU; false if `name` exists already.
    async fn add_bridge(&self, name: &str, mac: [u8; 6], mtu: u32) -> Result<bool, LinkError>;
    /// Creates the veth pair in one request: `host_name` here, already a port of `bridge` and
    /// up, and `eth0` directly inside the namespace `pod_netns` refers to (so no rename step
    /// and no name clash on the node; it cannot be brought up in the same request, the kernel
    /// configures it before the pair is joined). One request instead of several matters when
    /// many pods start at once: every link change takes the kernel's one RTNL lock.
    async fn add_veth(&self, host_name: &str, pod_netns: RawFd, mtu: u32, bridge: u32) -> Result<(), LinkError>;
    async fn add_address(&self, link: &Link, ip: IpAddr, prefix: u8) -> Result<(), LinkError>;
    /// Brings the link up, setting its MTU first when given.
    async fn set_up(&self, link: &Link, mtu: Option<u32>) -> Result<(), LinkError>;
    /// Turns on hairpin on a bridge port.
    async fn set_hairpin(&self, link: &Link) -> Result<(), LinkError>;
    async fn add_default_route(&self, gateway: Ipv4Addr, link: &Link) -> Result<(), LinkError>;
    async fn delete_link(&self, link: &Link) -> Result<(), LinkError>;
    /// Turns on IPv4 forwarding, globally and on `bridge`.
    async fn enable_forwarding(&self, bridge: &str) -> Result<(), LinkError>;
}

/// [`Netlink`] through rtnetlink, on a handle whose socket lives in the namespace changed.
pub struct RtNetlink {
    handle: Handle,
}

impl RtNetlink {
    pub fn new(handle: Handle) -> RtNetlink {
        RtNetlink { handle }
    }
}

fn to_link(msg: LinkMessage) -> Link {
    let mut link = Link { index: msg.header.index, ..Link::default() };
    for a in msg.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::OperState(State::Up) => link.up = true,
            LinkAttribute::Controller(i) => link.controller = Some(i),
            LinkAttribute::LinkInfo(infos) => {
                link.forwarding |= infos.iter().any(|i| match i {
                    LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                        port.iter().any(|p| matches!(p, InfoBridgePort::State(BridgePortState::Forwarding)))
                    }
                    _ => false,
                })
            }
            _ => {}
        }
    }
    link
}

#[async_trait::async_trait]
impl Netlink for RtNetlink {
    async fn link(&self, name: &str) -> Result<Option<Link>, LinkError> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(msg) => Ok(msg.map(to_link)),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(nl("look up link", name)(e)),
        }
    }

    async fn links(&self) -> Result<Vec<Link>, LinkError> {
        let mut out = Vec::new();
        let mut links = self.handle.link().get().execute();
        while let Some(msg) = links.try_next().await.map_err(nl("list", "links"))? {
            out.push(to_link(msg));
        }
        Ok(out)
    }

    async fn add_bridge(&self, name: &str, mac: [u8; 6], mtu: u32) -> Result<bool, LinkError> {
        let msg = LinkBridge::new(name).address(mac.to_vec()).mtu(mtu).build();
        match self.handle.link().add(msg).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(false),
            Err(e) => Err(nl("create bridge", name)(e)),
        }
    }

    async fn add_veth(&self, host_name: &str, pod_netns: RawFd, mtu: u32, bridge: u32) -> Result<(), LinkError> {
        let peer: LinkMessage =
            LinkMessageBuilder::<LinkUnspec>::new().name(POD_IFNAME).mtu(mtu).setns_by_fd(pod_netns).build();
        let msg = LinkVeth::new(host_name, POD_IFNAME)
            .mtu(mtu)
            .controller(bridge)
            .up()
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .build();
        self.handle.link().add(msg).execute().await.map_err(nl("create veth pair", host_name))
    }

    async fn add_address(&self, link: &Link, ip: IpAddr, prefix: u8) -> Result<(), LinkError> {
        match self.handle.address().add(link.index, ip, prefix).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => {
                // The two addresses this module adds, named as its errors always named them.
                let op = if link.name == POD_IFNAME { "add pod address to" } else { "add gateway address to" };
                Err(nl(op, link.name.clone())(e))
            }
        }
    }

    async fn set_up(&self, link: &Link, mtu: Option<u32>) -> Result<(), LinkError> {
        let mut msg = LinkUnspec::new_with_index(link.index);
        if let Some(mtu) = mtu {
            msg = msg.mtu(mtu);
        }
        self.handle.link().set(msg.up().build()).execute().await.map_err(nl("bring up", link.name.clone()))
    }

    async fn set_hairpin(&self, link: &Link) -> Result<(), LinkError> {
        self.handle
            .link()
            .set_port(LinkBridgePort::new(link.index).hairpin(true).build())
            .execute()
            .await
            .map_err(nl("enable hairpin on", link.name.clone()))
    }

    async fn add_default_route(&self, gateway: Ipv4Addr, link: &Link) -> Result<(), LinkError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(gateway).output_interface(link.index).build();
        self.handle.route().add(route).execute().await.map_err(nl("add default route in", "pod"))
    }

    async fn delete_link(&self, link: &Link) -> Result<(), LinkError> {
        match self.handle.link().del(link.index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            Err(e) => Err(nl("delete link", link.name.clone())(e)),
        }
    }

    async fn enable_forwarding(&self, bridge: &str) -> Result<(), LinkError> {
        for path in
            ["/proc/sys/net/ipv4/ip_forward".to_string(), format!("/proc/sys/net/ipv4/conf/{bridge}/forwarding")]
        {
            let path = PathBuf::from(path);
            if std::fs::read_to_string(&path).map(|v| v.trim() == "1").unwrap_or(false) {
                continue;
            }
            std::fs::write(&path, "1").map_err(|source| LinkError::Sysctl { path, source })?;
        }
        Ok(())
    }
}

/// The link called `name`, or the error that it is missing.
async fn existing(nl: &dyn Netlink, name: &str) -> Result<Link, LinkError> {
    nl.link(name).await?.ok_or_else(|| LinkError::Missing(name.to_string()))
}

/// The index of the link called `name`, if there is one.
pub async fn index_of(nl: &dyn Netlink, name: &str) -> Result<Option<u32>, LinkError> {
    Ok(nl.link(name).await?.map(|l| l.index))
}

/// Makes sure the bridge exists with `gateway/prefix` on it, the MTU and up; returns its index.
/// Existing bridges are left as they are apart from that, so restarts do not disturb pods.
pub async fn ensure_bridge(
    nl: &dyn Netlink,
    name: &str,
    mac: [u8; 6],
    mtu: u32,
    gateway: IpAddr,
    prefix: u8,
) -> Result<u32, LinkError> {
    if nl.link(name).await?.is_none() {
        // A fixed address: otherwise the bridge takes the lowest port address, which changes
        // as pods come and go and leaves pods with a stale gateway entry in their ARP cache.
        nl.add_bridge(name, mac, mtu).await?;
    }
    let bridge = existing(nl, name).await?;
    nl.add_address(&bridge, gateway, prefix).await?;
    nl.set_up(&bridge, Some(mtu)).await?;
    Ok(bridge.index)
}

/// Turns on hairpin on the host end's bridge port (a pod reaching itself through a service
/// address comes back out of the same port). Port options apply only to an existing port,
/// hence a request of its own.
pub async fn set_hairpin(nl: &dyn Netlink, host_name: &str) -> Result<(), LinkError> {
    nl.set_hairpin(&existing(nl, host_name).await?).await
}

/// Inside the pod: loopback up, `eth0` with its address up, default route via the gateway.
pub async fn configure_pod(nl: &dyn Netlink, ip: IpAddr, prefix: u8, gateway: IpAddr) -> Result<(), LinkError> {
    let IpAddr::V4(gw) = gateway else { return Err(LinkError::NotIpv4(gateway)) };
    nl.set_up(&existing(nl, "lo").await?, None).await?;
    let eth0 = existing(nl, POD_IFNAME).await?;
    nl.add_address(&eth0, ip, prefix).await?;
    nl.set_up(&eth0, None).await?;
    nl.add_default_route(gw, &eth0).await
}

/// Waits until the pod's `eth0`, the host end and the bridge are operationally up and the host
/// end is a forwarding bridge port. The kernel finishes bringing a link up asynchronously (its
/// queue is attached and the bridge told about the carrier from a work queue, for the bridge
/// itself with up to a second of delay when its first port appears), so right after the
/// netlink calls return, a pod's first packets, or the gateway's answers, can still be
/// dropped. Returns false if that does not happen within `timeout`.
pub async fn wait_ready(
    host: &dyn Netlink,
    pod: &dyn Netlink,
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

async fn link_ready(nl: &dyn Netlink, name: &str, bridge_port: bool) -> Result<bool, LinkError> {
    Ok(nl.link(name).await?.is_some_and(|l| l.up && (!bridge_port || l.forwarding)))
}

/// Waits until no link called `name` exists; false if one still does after `timeout`.
pub async fn wait_gone(nl: &dyn Netlink, name: &str, timeout: Duration) -> Result<bool, LinkError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_micros(500);
    loop {
        if nl.link(name).await?.is_none() {
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
pub async fn delete(nl: &dyn Netlink, name: &str) -> Result<(), LinkError> {
    match nl.link(name).await? {
        Some(link) => nl.delete_link(&link).await,
        None => Ok(()),
    }
}

/// Names of the links attached to the bridge with index `bridge`.
pub async fn ports(nl: &dyn Netlink, bridge: u32) -> Result<Vec<String>, LinkError> {
    Ok(nl.links().await?.into_iter().filter(|l| l.controller == Some(bridge)).map(|l| l.name).collect())
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

/// An in-memory [`Netlink`]: one namespace's links, addresses and routes.
#[cfg(test)]
pub mod fake {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::Mutex;

    use super::*;

    /// What the fake namespace holds; tests read and change it directly.
    #[derive(Debug, Default)]
    pub struct State {
        pub links: BTreeMap<String, Link>,
        pub mtu: BTreeMap<String, u32>,
        pub addresses: BTreeSet<(String, IpAddr, u8)>,
        pub hairpin: BTreeSet<String>,
        pub routes: Vec<(Ipv4Addr, String)>,
        pub forwarding: BTreeSet<String>,
        /// Links that report themselves up (and forwarding) only after this many more
        /// look-ups, as the kernel's asynchronous link set-up does.
        pub slow: BTreeMap<String, u32>,
        /// Links that are gone at their next look-up, as a veth is once the kernel has
        /// removed the namespace its other end was in.
        pub vanishing: BTreeSet<String>,
        /// Every request that changed something, as `verb name` strings.
        pub changes: Vec<String>,
        next_index: u32,
    }

    #[derive(Default)]
    pub struct FakeNetlink {
        pub state: Mutex<State>,
    }

    impl FakeNetlink {
        pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
            self.state.lock().unwrap_or_else(|p| p.into_inner())
        }

        /// Adds a link as something else (the kernel, another program) would.
        pub fn put(&self, name: &str, controller: Option<u32>) -> u32 {
            let mut st = self.state();
            st.next_index += 1;
            let index = st.next_index;
            let link = Link { index, name: name.to_string(), up: true, forwarding: true, controller };
            st.links.insert(name.to_string(), link);
            index
        }
    }

    impl State {
        fn add(&mut self, name: &str, controller: Option<u32>, up: bool) {
            self.next_index += 1;
            let link = Link { index: self.next_index, name: name.to_string(), up, forwarding: up, controller };
            self.links.insert(name.to_string(), link);
        }

        fn known(&self, link: &Link) -> Result<(), LinkError> {
            match self.links.get(&link.name) {
                Some(l) if l.index == link.index => Ok(()),
                _ => Err(LinkError::Missing(link.name.clone())),
            }
        }
    }

    #[async_trait::async_trait]
    impl Netlink for FakeNetlink {
        async fn link(&self, name: &str) -> Result<Option<Link>, LinkError> {
            let mut st = self.state();
            if st.vanishing.remove(name) {
                st.links.remove(name);
            }
            let Some(mut link) = st.links.get(name).cloned() else { return Ok(None) };
            if let Some(left) = st.slow.get_mut(name) {
                if *left > 0 {
                    *left -= 1;
                    link.up = false;
                    link.forwarding = false;
                }
            }
            Ok(Some(link))
        }

        async fn links(&self) -> Result<Vec<Link>, LinkError> {
            Ok(self.state().links.values().cloned().collect())
        }

        async fn add_bridge(&self, name: &str, _mac: [u8; 6], mtu: u32) -> Result<bool, LinkError> {
            let mut st = self.state();
            if st.links.contains_key(name) {
                return Ok(false);
            }
            st.add(name, None, false);
            st.mtu.insert(name.to_string(), mtu);
            st.changes.push(format!("add bridge {name}"));
            Ok(true)
        }

        async fn add_veth(&self, host_name: &str, _fd: RawFd, mtu: u32, bridge: u32) -> Result<(), LinkError> {
            let mut st = self.state();
            st.add(host_name, Some(bridge), true);
            st.mtu.insert(host_name.to_string(), mtu);
            st.changes.push(format!("add veth {host_name}"));
            Ok(())
        }

        async fn add_address(&self, link: &Link, ip: IpAddr, prefix: u8) -> Result<(), LinkError> {
            let mut st = self.state();
            st.known(link)?;
            if st.addresses.insert((link.name.clone(), ip, prefix)) {
                st.changes.push(format!("add address {} {ip}/{prefix}", link.name));
            }
            Ok(())
        }

        async fn set_up(&self, link: &Link, mtu: Option<u32>) -> Result<(), LinkError> {
            let mut st = self.state();
            st.known(link)?;
            if let Some(mtu) = mtu {
                st.mtu.insert(link.name.clone(), mtu);
            }
            if let Some(l) = st.links.get_mut(&link.name) {
                l.up = true;
                l.forwarding = true;
            }
            st.changes.push(format!("up {}", link.name));
            Ok(())
        }

        async fn set_hairpin(&self, link: &Link) -> Result<(), LinkError> {
            let mut st = self.state();
            st.known(link)?;
            st.hairpin.insert(link.name.clone());
            Ok(())
        }

        async fn add_default_route(&self, gateway: Ipv4Addr, link: &Link) -> Result<(), LinkError> {
            let mut st = self.state();
            st.known(link)?;
            st.routes.push((gateway, link.name.clone()));
            Ok(())
        }

        async fn delete_link(&self, link: &Link) -> Result<(), LinkError> {
            let mut st = self.state();
            if st.links.get(&link.name).is_some_and(|l| l.index == link.index) {
                st.links.remove(&link.name);
                st.changes.push(format!("delete {}", link.name));
            }
            Ok(())
        }

        async fn enable_forwarding(&self, bridge: &str) -> Result<(), LinkError> {
            self.state().forwarding.insert(bridge.to_string());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeNetlink;
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

    const GW: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 42, 0, 1));

    #[tokio::test]
    async fn a_bridge_is_made_once_and_kept_as_it_is_after() {
        let nl = FakeNetlink::default();
        let index = ensure_bridge(&nl, "k3rs0", [2, 0, 0, 0, 0, 1], 1400, GW, 24).await.unwrap();
        {
            let st = nl.state();
            assert_eq!(st.links["k3rs0"].index, index);
            assert!(st.links["k3rs0"].up);
            assert_eq!(st.mtu["k3rs0"], 1400);
            assert!(st.addresses.contains(&("k3rs0".into(), GW, 24)));
        }
        // A restart: same index, no second bridge, the address not added twice.
        let again = ensure_bridge(&nl, "k3rs0", [2, 0, 0, 0, 0, 1], 1400, GW, 24).await.unwrap();
        assert_eq!(again, index);
        let st = nl.state();
        assert_eq!(st.changes.iter().filter(|c| c.starts_with("add bridge")).count(), 1);
        assert_eq!(st.changes.iter().filter(|c| c.starts_with("add address")).count(), 1);
    }

    #[tokio::test]
    async fn the_pod_side_gets_loopback_its_address_and_a_default_route() {
        let pod = FakeNetlink::default();
        pod.put("lo", None);
        pod.put(POD_IFNAME, None);
        let ip: IpAddr = "10.42.0.7".parse().unwrap();
        configure_pod(&pod, ip, 24, GW).await.unwrap();
        {
            let st = pod.state();
            assert_eq!(st.changes, ["up lo", "add address eth0 10.42.0.7/24", "up eth0"]);
            assert_eq!(st.routes, [(Ipv4Addr::new(10, 42, 0, 1), POD_IFNAME.to_string())]);
        }
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert!(matches!(configure_pod(&pod, ip, 24, v6).await, Err(LinkError::NotIpv4(_))));
        let empty = FakeNetlink::default();
        assert!(matches!(configure_pod(&empty, ip, 24, GW).await, Err(LinkError::Missing(n)) if n == "lo"));
    }

    #[tokio::test]
    async fn ready_waits_for_every_link_to_come_up_and_gives_up_at_the_deadline() {
        let (host, pod) = (FakeNetlink::default(), FakeNetlink::default());
        let bridge = host.put("k3rs0", None);
        host.put("vethx", Some(bridge));
        pod.put(POD_IFNAME, None);
        host.state().slow.insert("vethx".into(), 3);
        pod.state().slow.insert(POD_IFNAME.into(), 2);
        assert!(wait_ready(&host, &pod, "vethx", "k3rs0", Duration::from_secs(5)).await.unwrap());
        assert_eq!(host.state().slow["vethx"], 0);
        host.state().slow.insert("k3rs0".into(), u32::MAX);
        let started = tokio::time::Instant::now();
        assert!(!wait_ready(&host, &pod, "vethx", "k3rs0", Duration::from_millis(50)).await.unwrap());
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn gone_links_stay_gone_and_only_existing_ones_are_deleted() {
        let nl = FakeNetlink::default();
        let bridge = nl.put("k3rs0", None);
        nl.put("veth1", Some(bridge));
        nl.put("veth2", Some(bridge));
        nl.put("eth9", None);
        let mut on_bridge = ports(&nl, bridge).await.unwrap();
        on_bridge.sort();
        assert_eq!(on_bridge, ["veth1", "veth2"]);
        assert!(!wait_gone(&nl, "veth1", Duration::from_millis(20)).await.unwrap());
        delete(&nl, "veth1").await.unwrap();
        delete(&nl, "veth1").await.unwrap();
        assert!(wait_gone(&nl, "veth1", Duration::from_millis(20)).await.unwrap());
        assert_eq!(nl.state().changes, ["delete veth1"]);
        // A link the kernel removes by itself (its namespace died) is waited for, not deleted.
        nl.state().vanishing.insert("veth2".into());
        assert!(wait_gone(&nl, "veth2", Duration::from_millis(20)).await.unwrap());
        assert_eq!(nl.state().changes, ["delete veth1"]);
        assert_eq!(index_of(&nl, "eth9").await.unwrap(), Some(bridge + 3));
    }
}
