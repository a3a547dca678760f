//! The parts of `k3rs server` that `--disable` can switch off, in one table, so adding a
//! component adds a row here and nowhere else in the command line.

use std::collections::BTreeSet;
use std::fmt;

/// A component that can be disabled.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Component {
    /// The name `--disable` takes.
    pub name: &'static str,
    /// One line for `--help` and error messages.
    pub description: &'static str,
    /// Other names `--disable` takes for it (k3s' names for its counterparts).
    pub aliases: &'static [&'static str],
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The etcd v3 gRPC API on `<data-dir>/server/db/etcd.sock` (embedded datastore only).
pub const ETCD_API: Component =
    Component { name: "etcd-api", description: "the etcd v3 API on <data-dir>/server/db/etcd.sock", aliases: &[] };

/// The in-process ingress on the node's ports 80 and 443 (k3s ships Traefik instead).
pub const INGRESS: Component =
    Component { name: "ingress", description: "the HTTP(S) ingress on ports 80 and 443", aliases: &["traefik"] };

/// The load-balancer status of LoadBalancer Services on the node's address (k3s' ServiceLB).
pub const SERVICELB: Component = Component {
    name: "servicelb",
    description: "LoadBalancer Services answered on the node's address (k3s' ServiceLB)",
    aliases: &[],
};

/// The cluster DNS server (CoreDNS' part in k3s).
pub const DNS: Component =
    Component { name: "dns", description: "the cluster DNS server (k3s: coredns)", aliases: &["coredns"] };

/// Every component that can be disabled.
pub const DISABLEABLE: &[Component] = &[ETCD_API, DNS, INGRESS, SERVICELB];

/// Finds a disable-able component by name or alias.
pub fn lookup(name: &str) -> Option<Component> {
    DISABLEABLE.iter().copied().find(|c| c.name == name || c.aliases.contains(&name))
}

/// The names of all disable-able components, comma-separated, for messages.
pub fn names() -> String {
    DISABLEABLE.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

/// The set of components the user disabled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disabled(BTreeSet<Component>);

impl Disabled {
    pub fn new(components: impl IntoIterator<Item = Component>) -> Self {
        Disabled(components.into_iter().collect())
    }

    pub fn contains(&self, component: Component) -> bool {
        self.0.contains(&component)
    }

    pub fn iter(&self) -> impl Iterator<Item = Component> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_every_row_and_nothing_else() {
        for c in DISABLEABLE {
            assert_eq!(lookup(c.name), Some(*c));
        }
        for c in DISABLEABLE {
            for alias in c.aliases {
                assert_eq!(lookup(alias), Some(*c));
            }
        }
        assert_eq!(lookup("coredns"), Some(DNS));
        assert_eq!(lookup("etcd"), None);
        assert_eq!(lookup("traefik"), Some(INGRESS));
        assert_eq!(lookup("ETCD-API"), None);
        assert!(names().contains("etcd-api"));
    }

    #[test]
    fn disabled_set_deduplicates() {
        let d = Disabled::new([ETCD_API, ETCD_API]);
        assert!(d.contains(ETCD_API));
        assert_eq!(d.iter().count(), 1);
        assert!(Disabled::default().is_empty());
    }
}
