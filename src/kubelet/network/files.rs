//! The pod's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`, rendered as pure functions of
//! the pod's DNS settings and the node's own files, in the formats the upstream kubelet and its
//! container runtime write them (so tools that parse them inside containers see what they expect).

use std::net::IpAddr;

use k8s_openapi::api::core::v1::{HostAlias, PodDNSConfig};

/// First line of a hosts file the kubelet generates for a pod with its own network.
pub const MANAGED_HOSTS_HEADER: &str = "# Kubernetes-managed hosts file.\n";
/// First line of a hosts file copied from the node for a `hostNetwork` pod.
pub const MANAGED_HOSTS_HEADER_HOST_NETWORK: &str = "# Kubernetes-managed hosts file (host network).\n";

/// The search list upstream applies (ExpandedDNSConfig, on by default since 1.28).
const MAX_SEARCH_PATHS: usize = 32;
const MAX_SEARCH_LIST_CHARS: usize = 2048;
const MAX_NAMESERVERS: usize = 3;
/// Longest DNS-1123 subdomain; glibc aborts on longer search entries, so upstream drops them.
const MAX_SEARCH_ENTRY: usize = 253;

/// The hosts file of a pod with its own network namespace: localhost entries, the pod's own
/// addresses under its hostname (and FQDN when the pod has a subdomain), then hostAliases.
/// `domain` is `<subdomain>.<namespace>.svc.<cluster-domain>` or empty.
pub fn managed_hosts(pod_ips: &[IpAddr], hostname: &str, domain: &str, aliases: &[HostAlias]) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER);
    out.push_str("127.0.0.1\tlocalhost\n");
    out.push_str("::1\tlocalhost ip6-localhost ip6-loopback\n");
    out.push_str("fe00::0\tip6-localnet\n");
    out.push_str("fe00::0\tip6-mcastprefix\n");
    out.push_str("fe00::1\tip6-allnodes\n");
    out.push_str("fe00::2\tip6-allrouters\n");
    for ip in pod_ips {
        if domain.is_empty() {
            out.push_str(&format!("{ip}\t{hostname}\n"));
        } else {
            out.push_str(&format!("{ip}\t{hostname}.{domain}\t{hostname}\n"));
        }
    }
    out.push_str(&host_alias_entries(aliases));
    out
}

/// The hosts file of a `hostNetwork` pod: the node's own hosts file under a header, then
/// hostAliases.
pub fn host_network_hosts(node_hosts: &str, aliases: &[HostAlias]) -> String {
    let mut out = String::from(MANAGED_HOSTS_HEADER_HOST_NETWORK);
    out.push_str(node_hosts);
    out.push_str(&host_alias_entries(aliases));
    out
}

fn host_alias_entries(aliases: &[HostAlias]) -> String {
    if aliases.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n# Entries added by HostAliases.\n");
    for alias in aliases {
        for name in alias.hostnames.iter().flatten() {
            out.push_str(&format!("{}\t{}\n", alias.ip, name));
        }
    }
    out
}

/// The FQDN suffix of a pod with `spec.subdomain`: `<subdomain>.<namespace>.svc.<domain>`.
pub fn pod_domain(subdomain: Option<&str>, namespace: &str, cluster_domain: &str) -> String {
    match subdomain {
        Some(sub) if !sub.is_empty() => format!("{sub}.{namespace}.svc.{cluster_domain}"),
        _ => String::new(),
    }
}

/// `/etc/hostname`: the name and a newline.
pub fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// A resolver configuration: what `/etc/resolv.conf` says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsSettings {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// Reads a resolv.conf the way upstream does: nameservers accumulate, the last `search` and the
/// last `options` line win, `#` comments are skipped, and trailing dots of search domains are
/// dropped (a lone `.` is no domain).
pub fn parse_resolv_conf(text: &str) -> DnsSettings {
    let mut out = DnsSettings::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => {
                if let Some(server) = fields.next() {
                    out.nameservers.push(server.to_string());
                }
            }
            Some("search") => {
                out.searches = fields.filter(|s| *s != ".").map(|s| s.trim_end_matches('.').to_string()).collect();
            }
            Some("options") => out.options = fields.map(str::to_string).collect(),
            _ => {}
        }
    }
    out
}

/// The DNS policy of a pod, as `spec.dnsPolicy` names it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum DnsKind {
    Cluster,
    Host,
    None,
}

/// Input of [`pod_dns`]: the pod's DNS fields and the node's settings.
pub struct DnsInput<'a> {
    pub dns_policy: &'a str,
    pub host_network: bool,
    pub dns_config: Option<&'a PodDNSConfig>,
    pub namespace: &'a str,
    pub cluster_dns: Option<IpAddr>,
    pub cluster_domain: &'a str,
    /// The node's resolver configuration (its `/etc/resolv.conf`, parsed).
    pub host: &'a DnsSettings,
}

/// The pod's resolver settings, following upstream's rules: ClusterFirst (and
/// ClusterFirstWithHostNet) use only the cluster DNS server with the cluster search domains
/// before the node's and `ndots:5`; ClusterFirst on the host network and Default use the
/// node's settings; None starts empty. `dnsConfig` is then merged in (nameservers and searches
/// appended without duplicates, options overriding by name) and the limits applied.
pub fn pod_dns(input: &DnsInput<'_>) -> DnsSettings {
    let kind = match input.dns_policy {
        "None" => DnsKind::None,
        "Default" => DnsKind::Host,
        "ClusterFirstWithHostNet" => DnsKind::Cluster,
        "ClusterFirst" | "" if input.host_network => DnsKind::Host,
        // Unknown values cannot pass API validation; upstream falls back to ClusterFirst.
        _ => DnsKind::Cluster,
    };
    let mut dns = match (kind, input.cluster_dns) {
        (DnsKind::None, _) => DnsSettings::default(),
        (DnsKind::Cluster, Some(server)) => {
            let mut searches = Vec::new();
            if !input.cluster_domain.is_empty() {
                let domain = input.cluster_domain;
                searches.push(format!("{}.svc.{domain}", input.namespace));
                searches.push(format!("svc.{domain}"));
                searches.push(domain.to_string());
            }
            searches.extend(input.host.searches.iter().cloned());
            DnsSettings {
                nameservers: vec![server.to_string()],
                searches: dedup(searches),
                options: vec!["ndots:5".to_string()],
            }
        }
        // Without a cluster DNS address upstream falls back to the node's settings.
        (DnsKind::Cluster, None) | (DnsKind::Host, _) => input.host.clone(),
    };
    if let Some(cfg) = input.dns_config {
        dns.nameservers.extend(cfg.nameservers.iter().flatten().cloned());
        dns.nameservers = dedup(std::mem::take(&mut dns.nameservers));
        dns.searches.extend(cfg.searches.iter().flatten().cloned());
        dns.searches = dedup(std::mem::take(&mut dns.searches));
        for opt in cfg.options.iter().flatten() {
            let Some(name) = opt.name.as_deref() else { continue };
            let rendered = match opt.value.as_deref() {
                Some(v) if !v.is_empty() => format!("{name}:{v}"),
                _ => name.to_string(),
            };
            // Upstream merges through a map (so order is unspecified); keeping the first
            // position of a name makes the file deterministic.
            match dns.options.iter_mut().find(|o| option_name(o) == name) {
                Some(existing) => *existing = rendered,
                None => dns.options.push(rendered),
            }
        }
    }
    dns.nameservers.truncate(MAX_NAMESERVERS);
    dns.searches = fit_search_limits(std::mem::take(&mut dns.searches));
    dns
}

fn option_name(opt: &str) -> &str {
    opt.split_once(':').map_or(opt, |(name, _)| name)
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn fit_search_limits(mut searches: Vec<String>) -> Vec<String> {
    searches.truncate(MAX_SEARCH_PATHS);
    searches.retain(|s| s.len() <= MAX_SEARCH_ENTRY);
    // Drop from the end until the joined line fits, as upstream does.
    while !searches.is_empty() && searches.join(" ").len() > MAX_SEARCH_LIST_CHARS {
        searches.pop();
    }
    searches
}

/// `/etc/resolv.conf` as the container runtime writes it from the settings: `search`, then one
/// `nameserver` line per server, then `options`. Empty settings give an empty file (no
/// resolver configured: the libc default of a local server applies).
pub fn resolv_conf(dns: &DnsSettings) -> String {
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.nameservers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodDNSConfigOption;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn alias(ip: &str, names: &[&str]) -> HostAlias {
        HostAlias { ip: ip.to_string(), hostnames: Some(names.iter().map(|s| s.to_string()).collect()) }
    }

    #[test]
    fn managed_hosts_without_subdomain() {
        let got = managed_hosts(&[ip("10.42.0.7")], "web-0", "", &[]);
        assert_eq!(
            got,
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             10.42.0.7\tweb-0\n"
        );
    }

    #[test]
    fn managed_hosts_with_subdomain_and_aliases() {
        let domain = pod_domain(Some("web"), "prod", "cluster.local");
        assert_eq!(domain, "web.prod.svc.cluster.local");
        let got = managed_hosts(
            &[ip("10.42.0.7")],
            "web-0",
            &domain,
            &[alias("1.2.3.4", &["foo", "foo.local"]), alias("::5", &["bar"])],
        );
        let tail = "10.42.0.7\tweb-0.web.prod.svc.cluster.local\tweb-0\n\n# Entries added by HostAliases.\n\
                    1.2.3.4\tfoo\n1.2.3.4\tfoo.local\n::5\tbar\n";
        assert!(got.ends_with(tail), "{got}");
        assert!(got.starts_with(MANAGED_HOSTS_HEADER));
    }

    #[test]
    fn no_pod_domain_without_subdomain() {
        assert_eq!(pod_domain(None, "prod", "cluster.local"), "");
        assert_eq!(pod_domain(Some(""), "prod", "cluster.local"), "");
    }

    #[test]
    fn host_network_hosts_copies_node_file() {
        let node = "127.0.0.1 localhost\n192.168.1.5 node1\n";
        assert_eq!(
            host_network_hosts(node, &[]),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n192.168.1.5 node1\n"
        );
        assert_eq!(
            host_network_hosts(node, &[alias("10.0.0.1", &["db"])]),
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1 localhost\n192.168.1.5 node1\n\
             \n# Entries added by HostAliases.\n10.0.0.1\tdb\n"
        );
    }

    #[test]
    fn parses_resolv_conf_like_upstream() {
        let host = parse_resolv_conf(
            "# comment\nnameserver 1.1.1.1\nsearch old.example\nnameserver 8.8.8.8\n\
             search example.com. corp .\noptions rotate\noptions ndots:2 timeout:1\nnameserver\n",
        );
        assert_eq!(host.nameservers, ["1.1.1.1", "8.8.8.8"]);
        assert_eq!(host.searches, ["example.com", "corp"]);
        assert_eq!(host.options, ["ndots:2", "timeout:1"]);
    }

    fn host() -> DnsSettings {
        DnsSettings {
            nameservers: vec!["192.168.1.1".into()],
            searches: vec!["lan".into(), "cluster.local".into()],
            options: vec!["edns0".into()],
        }
    }

    fn input<'a>(
        policy: &'a str,
        host_network: bool,
        cfg: Option<&'a PodDNSConfig>,
        h: &'a DnsSettings,
    ) -> DnsInput<'a> {
        DnsInput {
            dns_policy: policy,
            host_network,
            dns_config: cfg,
            namespace: "prod",
            cluster_dns: Some(ip("10.43.0.10")),
            cluster_domain: "cluster.local",
            host: h,
        }
    }

    #[test]
    fn cluster_first_uses_cluster_dns_then_host_searches() {
        let h = host();
        let dns = pod_dns(&input("ClusterFirst", false, None, &h));
        assert_eq!(
            resolv_conf(&dns),
            "search prod.svc.cluster.local svc.cluster.local cluster.local lan\nnameserver 10.43.0.10\noptions ndots:5\n"
        );
        // An empty policy is the API default, ClusterFirst.
        assert_eq!(pod_dns(&input("", false, None, &h)), dns);
        assert_eq!(pod_dns(&input("ClusterFirstWithHostNet", true, None, &h)), dns);
    }

    #[test]
    fn host_network_cluster_first_and_default_use_the_node() {
        let h = host();
        assert_eq!(pod_dns(&input("ClusterFirst", true, None, &h)), h);
        assert_eq!(pod_dns(&input("Default", false, None, &h)), h);
        assert_eq!(resolv_conf(&h), "search lan cluster.local\nnameserver 192.168.1.1\noptions edns0\n");
    }

    #[test]
    fn cluster_first_without_cluster_dns_falls_back_to_node() {
        let h = host();
        let mut i = input("ClusterFirst", false, None, &h);
        i.cluster_dns = None;
        assert_eq!(pod_dns(&i), h);
    }

    #[test]
    fn none_uses_only_dns_config_and_merges_options() {
        let h = host();
        let cfg = PodDNSConfig {
            nameservers: Some(vec!["1.1.1.1".into(), "1.1.1.1".into(), "9.9.9.9".into()]),
            searches: Some(vec!["my.dns.search.suffix".into()]),
            options: Some(vec![
                PodDNSConfigOption { name: Some("ndots".into()), value: Some("2".into()) },
                PodDNSConfigOption { name: Some("edns0".into()), value: None },
            ]),
        };
        let dns = pod_dns(&input("None", false, Some(&cfg), &h));
        assert_eq!(
            resolv_conf(&dns),
            "search my.dns.search.suffix\nnameserver 1.1.1.1\nnameserver 9.9.9.9\noptions ndots:2 edns0\n"
        );
        assert_eq!(resolv_conf(&pod_dns(&input("None", false, None, &h))), "");
    }

    #[test]
    fn dns_config_overrides_options_in_place_and_appends_the_rest() {
        let h = host();
        let cfg = PodDNSConfig {
            nameservers: Some(vec!["10.43.0.10".into(), "1.1.1.1".into(), "2.2.2.2".into(), "3.3.3.3".into()]),
            searches: Some(vec!["svc.cluster.local".into(), "extra".into()]),
            options: Some(vec![
                PodDNSConfigOption { name: Some("single-request".into()), value: None },
                PodDNSConfigOption { name: Some("ndots".into()), value: Some("1".into()) },
            ]),
        };
        let dns = pod_dns(&input("ClusterFirst", false, Some(&cfg), &h));
        // Duplicates removed, then at most three nameservers.
        assert_eq!(dns.nameservers, ["10.43.0.10", "1.1.1.1", "2.2.2.2"]);
        assert_eq!(dns.searches, ["prod.svc.cluster.local", "svc.cluster.local", "cluster.local", "lan", "extra"]);
        assert_eq!(dns.options, ["ndots:1", "single-request"]);
    }

    #[test]
    fn search_limits_drop_long_and_excess_entries() {
        let long = "a".repeat(254);
        let mut many: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        many.insert(1, long.clone());
        let got = fit_search_limits(many);
        assert_eq!(got.len(), 31, "32 kept, then the overlong one dropped");
        assert!(!got.contains(&long));
        let wide: Vec<String> = (0..20).map(|i| format!("{i}{}", "x".repeat(200))).collect();
        let got = fit_search_limits(wide);
        assert!(got.join(" ").len() <= MAX_SEARCH_LIST_CHARS);
        assert_eq!(got.len(), 10);
    }

    #[test]
    fn hostname_file_has_newline() {
        assert_eq!(hostname_file("web-0"), "web-0\n");
    }
}
