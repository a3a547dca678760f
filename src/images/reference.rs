//! Image references as a pod spec or `k3rs images` names them, normalised the way the
//! Docker reference grammar does: a first component is a registry only when it looks like a
//! host (has a `.` or a `:`, is `localhost`, or has an uppercase letter), `docker.io` is the
//! default registry, single-component names on `docker.io` live under `library/`, and a
//! reference with neither tag nor digest means `:latest`. The grammar itself is
//! `oci_spec::distribution::Reference`'s; this module adds what oci-spec 0.10 leaves out
//! (IPv6 and uppercase hosts, the 255-character limit on the whole name, ASCII-only tags,
//! `_` refused in hosts) and the store's sha256-only digests.

use std::fmt;

use oci_spec::distribution::Reference;

use super::ImageError;

/// The registry a reference without one names.
pub const DEFAULT_REGISTRY: &str = "docker.io";
const MAX_NAME_LEN: usize = 255;

/// A reference normalised the way upstream does: `busybox` → `docker.io/library/busybox:latest`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// e.g. `docker.io`, `localhost:5000`.
    pub registry: String,
    /// e.g. `library/busybox`.
    pub repository: String,
    /// Absent when only a digest was given.
    pub tag: Option<String>,
    /// `sha256:<hex>` when pinned.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses and normalises a reference as a pod spec or `k3rs images` names it.
    pub fn parse(s: &str) -> Result<ImageRef, ImageError> {
        let invalid = |reason: &str| ImageError::InvalidReference { reference: s.to_string(), reason: reason.into() };
        let parse = |s: &str| Reference::try_from(s).map_err(|e| invalid(&e.to_string()));
        // oci-spec's host grammar has no IPv6 literal: check it here and parse the rest under
        // `localhost`, a host that is taken as one and never gets `library/`.
        let (r, host) = match s.split_once('/') {
            Some((host, rest)) if host.starts_with('[') => {
                if !valid_ipv6_host(host) {
                    return Err(invalid("invalid registry host"));
                }
                (parse(&format!("localhost/{rest}"))?, Some(host))
            }
            _ => (parse(s)?, None),
        };
        let (registry, repository) = match (host, r.repository().split_once('/')) {
            (Some(host), _) => (host, r.repository()),
            // Docker takes an uppercase first component as a host, oci-spec's split does not
            // (its regex has already checked it as a host, since paths are lowercase).
            (None, Some((first, path)))
                if r.registry() == DEFAULT_REGISTRY && first.contains(|c: char| c.is_ascii_uppercase()) =>
            {
                (first, path)
            }
            // A path component with `_` but also a `.` is split off as a host although no host may have one.
            (None, _) if r.registry().contains('_') => return Err(invalid("invalid registry host")),
            (None, _) => (r.registry(), r.repository()),
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid("repository name must not be more than 255 characters"));
        }
        // oci-spec's `\w` is Unicode; Docker's is ASCII.
        if r.tag().is_some_and(|t| !t.is_ascii()) {
            return Err(invalid("invalid tag format"));
        }
        if let Some(digest) = r.digest() {
            validate_digest(digest).map_err(|e| invalid(&e))?;
        }
        Ok(ImageRef {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: r.tag().map(str::to_string),
            digest: r.digest().map(str::to_string),
        })
    }

    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What to ask a registry's manifest endpoint for: the digest when pinned, else the tag.
    pub fn object(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

/// `sha256:<64 lowercase hex>`; other algorithms are refused since the store verifies with
/// sha256 only.
pub(crate) fn validate_digest(digest: &str) -> Result<(), String> {
    let Some((algo, hex)) = digest.split_once(':') else {
        return Err("invalid digest: missing algorithm".into());
    };
    if algo != "sha256" {
        return Err(format!("unsupported digest algorithm {algo:?}"));
    }
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err("invalid digest: expected 64 lowercase hex digits".into());
    }
    Ok(())
}

/// `[addr]` or `[addr]:port`.
fn valid_ipv6_host(host: &str) -> bool {
    let Some((addr, after)) = host.strip_prefix('[').and_then(|rest| rest.split_once(']')) else {
        return false;
    };
    let port_ok = match after.strip_prefix(':') {
        Some(port) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
        None => after.is_empty(),
    };
    port_ok && addr.parse::<std::net::Ipv6Addr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).to_string()
    }

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_upstream() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(norm("foo/bar/baz:v1"), "docker.io/foo/bar/baz:v1");
        assert_eq!(norm("docker.io/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("index.docker.io/library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(norm("127.0.0.1:5000/a/b:c"), "127.0.0.1:5000/a/b:c");
        assert_eq!(norm("registry.k8s.io/pause:3.10"), "registry.k8s.io/pause:3.10");
        assert_eq!(norm("[::1]:5000/x"), "[::1]:5000/x:latest");
        assert_eq!(norm("[fe80::1]/a/b:v1"), "[fe80::1]/a/b:v1");
        // An uppercase first component is a host (Docker's rule, not oci-spec's split).
        assert_eq!(norm("Registry/app"), "Registry/app:latest");
        assert_eq!(norm("busybox:Upper_case-1.0"), "docker.io/library/busybox:Upper_case-1.0");
        assert_eq!(norm("my_repo/with-dash__and.dot"), "docker.io/my_repo/with-dash__and.dot:latest");
        assert_eq!(norm(&format!("busybox@{D}")), format!("docker.io/library/busybox@{D}"));
        assert_eq!(norm(&format!("busybox:1@{D}")), format!("docker.io/library/busybox:1@{D}"));
    }

    #[test]
    fn parts_and_object() {
        let r = ImageRef::parse("localhost:5000/team/app:v2").expect("parse");
        assert_eq!(r.registry, "localhost:5000");
        assert_eq!(r.repository, "team/app");
        assert_eq!(r.tag.as_deref(), Some("v2"));
        assert_eq!(r.name(), "localhost:5000/team/app");
        assert_eq!(r.object(), "v2");
        let r = ImageRef::parse(&format!("x:1@{D}")).expect("parse");
        assert_eq!(r.object(), D);
        // A normalised reference parses to itself.
        assert_eq!(ImageRef::parse(&r.to_string()).expect("reparse"), r);
    }

    #[test]
    fn refuses_invalid_references() {
        for bad in [
            "",
            "Busybox",
            "foo/Bar",
            "busybox:",
            "busybox:-x",
            "busybox@sha256:abc",
            "busybox@md5:0123",
            &format!("busybox@{}", D.to_uppercase().replace("SHA256", "sha256")),
            "/busybox",
            "busybox/",
            "a//b",
            "foo..bar",
            "-foo",
            "foo-",
            "localhost:x/y",
            "exa_mple.com/x",
            "[::1/x",
            "[::1]x/y",
            "[zz::1]/x",
            "[::1]:/x",
            "busybox:caf\u{e9}",
            "Registry/App",
            ":tag",
            "a b",
            &format!("x:{}", "t".repeat(129)),
            &format!("example.com/{}", "a".repeat(250)),
        ] {
            assert!(
                matches!(ImageRef::parse(bad), Err(ImageError::InvalidReference { .. })),
                "{bad:?} should be refused, got {:?}",
                ImageRef::parse(bad)
            );
        }
    }
}
