//! The JSON documents of an image, read with `oci_spec::image`'s types: OCI image indexes
//! and Docker manifest lists (one manifest per platform), OCI and Docker schema 2 manifests
//! (config + layers), and the image config. Docker's schema 2 uses the OCI field names, so
//! the OCI types read both; only the media types differ, and oci-spec keeps Docker's as
//! `MediaType::Other`.

use oci_spec::image::{Arch, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType, Os};

use super::ImageConfig;

pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

/// A manifest or an index, as a tag or digest on a registry may name either.
#[derive(Clone, Debug)]
pub enum Document {
    // Boxed: both are hundreds of bytes, and a document is moved about before it is read.
    Index(Box<ImageIndex>),
    Manifest(Box<ImageManifest>),
}

/// Just enough of a document to tell which one it is before reading it whole.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Kind {
    #[serde(default)]
    media_type: Option<MediaType>,
    #[serde(default)]
    manifests: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    config: Option<serde::de::IgnoredAny>,
}

impl Document {
    /// Which one it is is told by `mediaType`, or, when that is absent (it is optional in
    /// OCI), by which list is present.
    pub fn parse(data: &[u8]) -> Result<Document, String> {
        let invalid = |e: serde_json::Error| format!("invalid manifest: {e}");
        let kind: Kind = serde_json::from_slice(data).map_err(invalid)?;
        if kind.media_type.as_ref().is_some_and(is_index_type) || (kind.manifests.is_some() && kind.config.is_none()) {
            serde_json::from_slice(data).map(|i| Document::Index(Box::new(i))).map_err(invalid)
        } else {
            parse_manifest(data).map(|m| Document::Manifest(Box::new(m)))
        }
    }
}

/// A platform's manifest (config + layers).
pub fn parse_manifest(data: &[u8]) -> Result<ImageManifest, String> {
    serde_json::from_slice(data).map_err(|e| format!("invalid manifest: {e}"))
}

pub fn is_index_type(media_type: &MediaType) -> bool {
    match media_type {
        MediaType::ImageIndex => true,
        MediaType::Other(m) => m == DOCKER_LIST,
        _ => false,
    }
}

/// A Docker media type in oci-spec's terms.
pub fn docker(media_type: &str) -> MediaType {
    MediaType::Other(media_type.to_string())
}

/// The architecture name OCI uses for this machine (Go's `GOARCH`).
pub fn host_arch() -> Arch {
    Arch::default()
}

/// Picks the manifest for linux on this machine's architecture (for arm, preferring v7 or
/// whatever variant is listed first).
pub fn pick_platform(manifests: &[Descriptor]) -> Option<&Descriptor> {
    let arch = host_arch();
    let matches =
        |d: &&Descriptor| d.platform().as_ref().is_some_and(|p| *p.os() == Os::Linux && *p.architecture() == arch);
    manifests.iter().find(matches).or_else(|| {
        // Single-platform indexes (what `skopeo copy` of one image writes) often carry no
        // platform at all.
        match manifests {
            [only] if only.platform().is_none() => Some(only),
            _ => None,
        }
    })
}

/// An image config.
pub fn parse_config(data: &[u8]) -> Result<ImageConfiguration, String> {
    serde_json::from_slice(data).map_err(|e| format!("invalid image config: {e}"))
}

/// The parts of an image config a container starts from.
pub fn image_config(config: &ImageConfiguration) -> ImageConfig {
    let Some(c) = config.config() else { return ImageConfig::default() };
    ImageConfig {
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        env: c.env().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        user: c.user().clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn index(entries: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": entries,
        }))
        .unwrap()
    }

    fn entry(digest: &str, platform: Option<(&str, &str)>) -> serde_json::Value {
        let mut e = serde_json::json!({"mediaType": DOCKER_MANIFEST, "digest": digest, "size": 7});
        if let Some((os, arch)) = platform {
            e["platform"] = serde_json::json!({"os": os, "architecture": arch});
        }
        e
    }

    fn manifest(media_type: Option<&str>) -> serde_json::Value {
        let mut m = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": DOCKER_CONFIG, "digest": D1, "size": 3},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": D2, "size": 5}],
        });
        if let Some(t) = media_type {
            m["mediaType"] = t.into();
        }
        m
    }

    #[test]
    fn tells_indexes_from_manifests() {
        let bytes = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
        assert!(matches!(Document::parse(&index(serde_json::json!([]))), Ok(Document::Index(_))));
        let oci_index = bytes(serde_json::json!({"schemaVersion": 2, "manifests": [entry(D1, None)]}));
        assert!(matches!(Document::parse(&oci_index), Ok(Document::Index(_))));
        for m in [
            manifest(None),
            manifest(Some(DOCKER_MANIFEST)),
            manifest(Some("application/vnd.oci.image.manifest.v1+json")),
        ] {
            match Document::parse(&bytes(m)) {
                Ok(Document::Manifest(m)) => {
                    assert_eq!(m.config().digest().as_ref(), D1);
                    assert_eq!(m.layers().iter().map(|l| l.size()).sum::<u64>(), 5);
                }
                other => panic!("expected a manifest, got {other:?}"),
            }
        }
    }

    #[test]
    fn refuses_malformed_documents() {
        for bad in [
            &b"not json"[..],
            br#"{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:abc", "size": 1}, "layers": []}"#,
            br#"{"schemaVersion": 2, "layers": []}"#,
            br#"{"schemaVersion": 2, "manifests": [{"mediaType": "x", "digest": "sha256:../../etc", "size": 1}]}"#,
        ] {
            assert!(Document::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn picks_linux_on_this_architecture() {
        let arch = host_arch().to_string();
        let other = if arch == "amd64" { "arm64" } else { "amd64" };
        let Ok(Document::Index(i)) = Document::parse(&index(serde_json::json!([
            entry(D1, Some(("linux", other))),
            entry(D2, Some(("linux", &arch))),
            // What buildx adds for attestations.
            entry(D1, Some(("unknown", "unknown"))),
        ]))) else {
            panic!("index")
        };
        assert_eq!(pick_platform(i.manifests()).map(|d| d.digest().to_string()).as_deref(), Some(D2));
        assert!(pick_platform(&i.manifests()[..1]).is_none());
        let Ok(Document::Index(single)) = Document::parse(&index(serde_json::json!([entry(D1, None)]))) else {
            panic!("index")
        };
        assert_eq!(pick_platform(single.manifests()).map(|d| d.digest().to_string()).as_deref(), Some(D1));
        let Ok(Document::Index(two)) = Document::parse(&index(serde_json::json!([entry(D1, None), entry(D2, None)])))
        else {
            panic!("index")
        };
        assert!(pick_platform(two.manifests()).is_none());
    }

    #[test]
    fn reads_the_run_config_of_docker_and_oci_configs() {
        let docker = br#"{"architecture": "amd64", "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "Entrypoint": null, "WorkingDir": "/w", "User": "1000",
                       "ExposedPorts": {"80/tcp": {}}, "Labels": null, "Volumes": null, "StopSignal": "SIGTERM"},
            "container_config": {"Hostname": "x"},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:aa"]}}"#;
        let c = parse_config(docker).expect("docker config");
        assert_eq!(c.rootfs().diff_ids(), &["sha256:aa".to_string()]);
        let ic = image_config(&c);
        assert_eq!(
            (ic.env, ic.cmd, ic.entrypoint, ic.working_dir, ic.user),
            (vec!["PATH=/bin".to_string()], vec!["sh".to_string()], vec![], "/w".to_string(), "1000".to_string())
        );
        let bare =
            parse_config(br#"{"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}"#)
                .expect("config without a run config");
        assert_eq!(image_config(&bare).cmd, Vec::<String>::new());
        assert!(parse_config(b"[]").is_err());
    }
}
