//! IP address ranges in CIDR notation (`10.42.0.0/16`, `fd00::/64`), as the cluster and
//! service networks are configured.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// A network: an address whose host bits are zero, and a prefix length.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("{0:?} is not in CIDR notation (address/prefix, e.g. 10.42.0.0/16)")]
    NotCidr(String),
    #[error("{0:?} is not an IP address")]
    BadAddress(String),
    #[error("prefix length {prefix:?} is not a number from 0 to {max}")]
    BadPrefix { prefix: String, max: u8 },
    #[error("{given} has host bits set; the network is {network}")]
    HostBitsSet { given: String, network: Cidr },
}

impl Cidr {
    /// A network from an address and prefix length; the address must have no host bits set.
    pub fn new(addr: IpAddr, prefix: u8) -> Result<Cidr, CidrError> {
        let max = max_prefix(addr);
        if prefix > max {
            return Err(CidrError::BadPrefix { prefix: prefix.to_string(), max });
        }
        let network = Cidr { network: mask(addr, prefix), prefix };
        if network.network != addr {
            return Err(CidrError::HostBitsSet { given: format!("{addr}/{prefix}"), network });
        }
        Ok(network)
    }

    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    pub fn is_ipv4(&self) -> bool {
        self.network.is_ipv4()
    }

    /// Number of host bits: 32 or 128 minus the prefix length.
    pub fn host_bits(&self) -> u8 {
        max_prefix(self.network) - self.prefix
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.network.is_ipv4() && mask(addr, self.prefix) == self.network
    }

    /// True when the two networks share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        // Two aligned blocks either nest or are disjoint: the shorter prefix decides.
        let shorter = if self.prefix <= other.prefix { self } else { other };
        let longer = if self.prefix <= other.prefix { other } else { self };
        shorter.contains(longer.network)
    }

    /// The address `n` places after the network address, if it is inside the network.
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        let bits = self.host_bits();
        if bits < 128 && n >> bits != 0 {
            return None;
        }
        Some(match self.network {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a).checked_add(u32::try_from(n).ok()?)?).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a).checked_add(n)?).into()),
        })
    }

    /// The last address of the network (the broadcast address for IPv4).
    pub fn last(&self) -> IpAddr {
        let bits = u32::from(self.host_bits());
        match self.network {
            IpAddr::V4(a) => {
                let host = u32::MAX.checked_shr(32 - bits).unwrap_or(0);
                IpAddr::V4((u32::from(a) | host).into())
            }
            IpAddr::V6(a) => {
                let host = u128::MAX.checked_shr(128 - bits).unwrap_or(0);
                IpAddr::V6((u128::from(a) | host).into())
            }
        }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (addr, prefix) = s.split_once('/').ok_or_else(|| CidrError::NotCidr(s.to_string()))?;
        let addr: IpAddr = addr.parse().map_err(|_| CidrError::BadAddress(addr.to_string()))?;
        let max = max_prefix(addr);
        let bad_prefix = || CidrError::BadPrefix { prefix: prefix.to_string(), max };
        // `u8::from_str` accepts a leading '+', which CIDR notation does not.
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_prefix());
        }
        let prefix: u8 = prefix.parse().map_err(|_| bad_prefix())?;
        if prefix > max {
            return Err(bad_prefix());
        }
        Cidr::new(addr, prefix).map_err(|e| match e {
            CidrError::HostBitsSet { network, .. } => CidrError::HostBitsSet { given: s.to_string(), network },
            other => other,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().expect(s)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect(s)
    }

    #[test]
    fn parses_and_displays_both_families() {
        assert_eq!(c("10.42.0.0/16").to_string(), "10.42.0.0/16");
        assert_eq!(c("0.0.0.0/0").host_bits(), 32);
        assert_eq!(c("fd00:42::/56").to_string(), "fd00:42::/56");
        assert_eq!(c("192.168.1.7/32").prefix_len(), 32);
    }

    #[test]
    fn rejects_malformed_input() {
        assert!(matches!("10.42.0.0".parse::<Cidr>(), Err(CidrError::NotCidr(_))));
        assert!(matches!("10.42.0/16".parse::<Cidr>(), Err(CidrError::BadAddress(_))));
        assert!(matches!("10.42.0.0/33".parse::<Cidr>(), Err(CidrError::BadPrefix { max: 32, .. })));
        assert!(matches!("10.42.0.0/+8".parse::<Cidr>(), Err(CidrError::BadPrefix { .. })));
        assert!(matches!("10.42.0.0/".parse::<Cidr>(), Err(CidrError::BadPrefix { .. })));
        assert!(matches!("::/129".parse::<Cidr>(), Err(CidrError::BadPrefix { max: 128, .. })));
    }

    #[test]
    fn host_bits_are_refused_with_the_network_named() {
        let err = "10.42.1.0/16".parse::<Cidr>().unwrap_err();
        assert_eq!(err, CidrError::HostBitsSet { given: "10.42.1.0/16".into(), network: c("10.42.0.0/16") });
        assert!(err.to_string().contains("10.42.0.0/16"));
    }

    #[test]
    fn containment_and_overlap() {
        let svc = c("10.43.0.0/16");
        assert!(svc.contains(ip("10.43.0.10")));
        assert!(svc.contains(ip("10.43.255.255")));
        assert!(!svc.contains(ip("10.44.0.0")));
        assert!(!svc.contains(ip("::ffff:10.43.0.10")));
        assert!(!c("10.42.0.0/16").overlaps(&svc));
        assert!(c("10.0.0.0/8").overlaps(&svc));
        assert!(svc.overlaps(&c("10.0.0.0/8")));
        assert!(svc.overlaps(&c("10.43.7.0/24")));
        assert!(c("0.0.0.0/0").overlaps(&svc));
        assert!(!c("::/0").overlaps(&svc));
    }

    #[test]
    fn nth_and_last_addresses() {
        let svc = c("10.43.0.0/16");
        assert_eq!(svc.nth(1), Some(ip("10.43.0.1")));
        assert_eq!(svc.nth(65_535), Some(ip("10.43.255.255")));
        assert_eq!(svc.nth(65_536), None);
        assert_eq!(svc.last(), ip("10.43.255.255"));
        assert_eq!(c("0.0.0.0/0").last(), ip("255.255.255.255"));
        assert_eq!(c("10.1.2.3/32").last(), ip("10.1.2.3"));
        assert_eq!(c("fd00::/64").nth(10), Some(ip("fd00::a")));
        assert_eq!(c("fd00::/64").last(), ip("fd00::ffff:ffff:ffff:ffff"));
        assert_eq!(c("::/0").nth(u128::MAX), Some(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
    }
}
