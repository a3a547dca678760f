//! Pod address allocation from the node's podCIDR, persisted as one file per address (named by
//! the address, holding the pod uid). A file appears atomically with its content (hard link of
//! a fully written temporary file, which fails if the name exists, like `O_EXCL`), so two pods
//! never get one address, not even across crashes, and a crash leaves no half-written entry.
//! Allocation continues after the last address handed out, so a released address is not
//! reused at once (a client still talking to the old pod does not reach the new one).

use std::fs;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::util::cidr::Cidr;

/// Holds the hint where the next search starts; not part of the allocation state.
const LAST_RESERVED: &str = "last_reserved_ip";

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no free address left in the pod network {cidr} ({used} of {usable} in use)")]
    Exhausted { cidr: Cidr, used: usize, usable: u128 },
    #[error("pod network {0} has no usable address besides the gateway")]
    TooSmall(Cidr),
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: io::Error },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IpamError + 'a {
    move |source| IpamError::Io { op, path: path.to_path_buf(), source }
}

/// The allocator of one node's pod addresses.
pub struct Ipam {
    dir: PathBuf,
    cidr: Cidr,
    /// Serialises allocations of this process so the scan-then-claim sequence sees its own
    /// claims; the link below still guards against any other writer.
    lock: Mutex<()>,
}

impl Ipam {
    /// An allocator keeping its state in `dir` (created if missing).
    pub fn open(dir: PathBuf, cidr: Cidr) -> Result<Ipam, IpamError> {
        if cidr.host_bits() < 2 {
            return Err(IpamError::TooSmall(cidr));
        }
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let ipam = Ipam { dir, cidr, lock: Mutex::new(()) };
        ipam.remove_stale_entries()?;
        Ok(ipam)
    }

    /// The gateway: the first address of the network (the bridge's address).
    pub fn gateway(&self) -> IpAddr {
        gateway(self.cidr)
    }

    /// The address held by `uid`, or a new one. Calling it again for the same uid (after a
    /// restart too) returns the same address.
    pub fn allocate(&self, uid: &str) -> Result<IpAddr, IpamError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ip) = self.lookup_locked(uid)? {
            return Ok(ip);
        }
        let usable = usable_count(self.cidr);
        let start = self.read_last_reserved();
        let mut used = 0usize;
        for candidate in candidates(self.cidr, start) {
            match self.claim(candidate, uid)? {
                true => {
                    self.write_last_reserved(candidate);
                    return Ok(candidate);
                }
                false => used += 1,
            }
        }
        Err(IpamError::Exhausted { cidr: self.cidr, used, usable })
    }

    /// The address `uid` holds, if any.
    pub fn lookup(&self, uid: &str) -> Result<Option<IpAddr>, IpamError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.lookup_locked(uid)
    }

    /// Frees every address `uid` holds; nothing held is fine.
    pub fn release(&self, uid: &str) -> Result<(), IpamError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        for (ip, owner) in self.entries()? {
            if owner == uid {
                let path = self.dir.join(ip.to_string());
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove", &path)(e)),
                }
            }
        }
        Ok(())
    }

    /// Every allocated address and its owner.
    pub fn entries(&self) -> Result<Vec<(IpAddr, String)>, IpamError> {
        let mut out = Vec::new();
        let rd = fs::read_dir(&self.dir).map_err(io_err("read directory", &self.dir))?;
        for entry in rd {
            let entry = entry.map_err(io_err("read directory", &self.dir))?;
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse::<IpAddr>().ok()) else {
                continue;
            };
            let path = entry.path();
            match fs::read_to_string(&path) {
                Ok(owner) => out.push((ip, owner.trim().to_string())),
                // Released between the listing and the read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("read", &path)(e)),
            }
        }
        out.sort();
        Ok(out)
    }

    fn lookup_locked(&self, uid: &str) -> Result<Option<IpAddr>, IpamError> {
        Ok(self.entries()?.into_iter().find(|(ip, owner)| owner == uid && self.cidr.contains(*ip)).map(|(ip, _)| ip))
    }

    /// Claims `ip` for `uid`: true if it was free.
    fn claim(&self, ip: IpAddr, uid: &str) -> Result<bool, IpamError> {
        let tmp = self.dir.join(format!(".tmp-{}-{}", std::process::id(), ip));
        {
            let mut f = fs::File::create(&tmp).map_err(io_err("create", &tmp))?;
            f.write_all(uid.as_bytes()).map_err(io_err("write", &tmp))?;
        }
        let target = self.dir.join(ip.to_string());
        let linked = fs::hard_link(&tmp, &target);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(io_err("link", &target)(e)),
        }
    }

    fn read_last_reserved(&self) -> Option<IpAddr> {
        let text = fs::read_to_string(self.dir.join(LAST_RESERVED)).ok()?;
        text.trim().parse().ok().filter(|ip| self.cidr.contains(*ip))
    }

    fn write_last_reserved(&self, ip: IpAddr) {
        // Only a hint for where to search next: losing it costs a longer scan, nothing else.
        let path = self.dir.join(LAST_RESERVED);
        if let Err(e) = fs::write(&path, ip.to_string()) {
            tracing::debug!(path = %path.display(), error = %e, "could not record last reserved pod address");
        }
    }

    fn remove_stale_entries(&self) -> Result<(), IpamError> {
        let rd = fs::read_dir(&self.dir).map_err(io_err("read directory", &self.dir))?;
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // An entry without an owner can only come from a power loss before the data
            // reached the disk (the link publishes complete files); no pod can be using it.
            let ownerless = name.parse::<IpAddr>().is_ok() && entry.metadata().map(|m| m.len() == 0).unwrap_or(false);
            if name.starts_with(".tmp-") || ownerless {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }
}

/// The first address of the network: the bridge's address and the pods' default gateway.
pub fn gateway(cidr: Cidr) -> IpAddr {
    // host_bits >= 2 is checked where it matters; /32 would have no gateway at all.
    cidr.nth(1).unwrap_or(cidr.network())
}

/// Addresses pods may get: all but the network address, the gateway and (IPv4) broadcast.
fn usable_count(cidr: Cidr) -> u128 {
    let bits = u32::from(cidr.host_bits());
    let total = if bits >= 128 { u128::MAX } else { 1u128 << bits };
    let reserved = if cidr.is_ipv4() { 3 } else { 2 };
    total.saturating_sub(reserved)
}

/// Every usable address once, starting after `last` and wrapping around.
fn candidates(cidr: Cidr, last: Option<IpAddr>) -> impl Iterator<Item = IpAddr> {
    let first = 2u128;
    let usable = usable_count(cidr);
    let end = first.saturating_add(usable); // exclusive
    let start = last.and_then(|ip| offset(cidr, ip)).filter(|o| *o >= first && *o < end).map_or(first, |o| {
        if o + 1 >= end {
            first
        } else {
            o + 1
        }
    });
    (0..usable).filter_map(move |i| {
        let o = first + (start - first).wrapping_add(i) % usable;
        cidr.nth(o)
    })
}

fn offset(cidr: Cidr, ip: IpAddr) -> Option<u128> {
    match (cidr.network(), ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(a).checked_sub(u32::from(n)).map(u128::from),
        (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(a).checked_sub(u128::from(n)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn skips_network_gateway_and_broadcast_then_exhausts() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path().join("ipam"), cidr("10.42.0.0/29")).unwrap();
        assert_eq!(ipam.gateway(), ip("10.42.0.1"));
        let got: Vec<IpAddr> = (0..5).map(|i| ipam.allocate(&format!("pod-{i}")).unwrap()).collect();
        assert_eq!(got, ["10.42.0.2", "10.42.0.3", "10.42.0.4", "10.42.0.5", "10.42.0.6"].map(ip));
        let err = ipam.allocate("pod-5").unwrap_err();
        assert!(matches!(err, IpamError::Exhausted { used: 5, usable: 5, .. }), "{err}");
        assert!(err.to_string().contains("no free address left in the pod network 10.42.0.0/29"), "{err}");
    }

    #[test]
    fn same_uid_gets_same_address_also_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam");
        let first = Ipam::open(path.clone(), cidr("10.42.0.0/24")).unwrap().allocate("a").unwrap();
        let ipam = Ipam::open(path, cidr("10.42.0.0/24")).unwrap();
        assert_eq!(ipam.allocate("a").unwrap(), first);
        assert_eq!(ipam.lookup("a").unwrap(), Some(first));
        assert_ne!(ipam.allocate("b").unwrap(), first);
    }

    #[test]
    fn release_frees_and_the_next_allocation_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::open(dir.path().join("ipam"), cidr("10.42.0.0/29")).unwrap();
        let a = ipam.allocate("a").unwrap();
        ipam.allocate("b").unwrap();
        ipam.release("a").unwrap();
        ipam.release("a").unwrap();
        assert_eq!(ipam.lookup("a").unwrap(), None);
        // Not reused at once: the search continues after the last address handed out.
        let c = ipam.allocate("c").unwrap();
        assert_eq!(c, ip("10.42.0.4"));
        // Wrapping around finds the released one once the rest is taken.
        ipam.allocate("d").unwrap();
        ipam.allocate("e").unwrap();
        assert_eq!(ipam.allocate("f").unwrap(), a);
        let owners: Vec<String> = ipam.entries().unwrap().into_iter().map(|(_, o)| o).collect();
        assert_eq!(owners, ["f", "b", "c", "d", "e"]);
    }

    #[test]
    fn an_existing_file_is_never_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam");
        fs::create_dir_all(&path).unwrap();
        // Another writer (or a previous run) holds .2; stale temporaries from a crash go away.
        fs::write(path.join("10.42.0.2"), "other").unwrap();
        fs::write(path.join(".tmp-1-10.42.0.3"), "half").unwrap();
        fs::write(path.join("10.42.0.4"), "").unwrap();
        let ipam = Ipam::open(path.clone(), cidr("10.42.0.0/24")).unwrap();
        assert_eq!(ipam.allocate("mine").unwrap(), ip("10.42.0.3"));
        assert_eq!(fs::read_to_string(path.join("10.42.0.2")).unwrap(), "other");
        assert!(!path.join(".tmp-1-10.42.0.3").exists());
        assert!(!path.join("10.42.0.4").exists(), "an ownerless entry is a crash leftover");
        assert_eq!(ipam.allocate("next").unwrap(), ip("10.42.0.4"));
    }

    #[test]
    fn concurrent_allocations_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = std::sync::Arc::new(Ipam::open(dir.path().join("ipam"), cidr("10.42.0.0/24")).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|t| {
                let ipam = ipam.clone();
                std::thread::spawn(move || {
                    (0..20).map(|i| ipam.allocate(&format!("{t}-{i}")).unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<IpAddr> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 160);
    }

    #[test]
    fn too_small_networks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(Ipam::open(dir.path().join("x"), cidr("10.42.0.0/31")), Err(IpamError::TooSmall(_))));
    }

    #[test]
    fn candidates_wrap_after_last() {
        let c = cidr("10.42.0.0/29");
        let got: Vec<IpAddr> = candidates(c, Some(ip("10.42.0.5"))).collect();
        assert_eq!(got, ["10.42.0.6", "10.42.0.2", "10.42.0.3", "10.42.0.4", "10.42.0.5"].map(ip));
        let got: Vec<IpAddr> = candidates(c, Some(ip("10.42.0.6"))).collect();
        assert_eq!(got[0], ip("10.42.0.2"));
        assert_eq!(usable_count(cidr("10.42.0.0/24")), 253);
    }
}
