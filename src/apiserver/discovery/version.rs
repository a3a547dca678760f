//! The `/version` document: the Kubernetes version k3rs speaks (1.33) with a `+k3rsN` build
//! suffix, in the shape `kubectl version` and client libraries read.
//!
//! Build facts come from environment variables read at compile time, so a release build can
//! record them (a build script or the packaging sets them): `K3RS_GIT_COMMIT`,
//! `K3RS_GIT_TREE_STATE` (`clean`/`dirty`), `K3RS_BUILD_DATE` (RFC 3339) and
//! `K3RS_RUSTC_VERSION` (e.g. `rustc 1.95.0`). Unset ones get neutral values, never invented ones.

use k8s_openapi::apimachinery::pkg::version::Info;

/// Kubernetes major version served.
pub const KUBERNETES_MAJOR: u32 = 1;
/// Kubernetes minor version served.
pub const KUBERNETES_MINOR: u32 = 33;
/// Kubernetes patch version served.
pub const KUBERNETES_PATCH: u32 = 0;
/// k3rs's release counter for this Kubernetes version, as k3s's `+k3s1`.
pub const K3RS_RELEASE: u32 = 1;

/// `v1.33.0+k3rs1`.
pub fn git_version() -> String {
    format!("v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.{KUBERNETES_PATCH}+k3rs{K3RS_RELEASE}")
}

/// Go's name for a CPU architecture, which is what `platform` carries.
fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// `linux/amd64` and the like.
pub fn platform() -> String {
    format!("{}/{}", std::env::consts::OS, go_arch(std::env::consts::ARCH))
}

/// The `/version` document.
pub fn version_info() -> Info {
    Info {
        major: KUBERNETES_MAJOR.to_string(),
        minor: KUBERNETES_MINOR.to_string(),
        // 1.33 reports the version it emulates and the oldest it stays compatible with.
        emulation_major: Some(KUBERNETES_MAJOR.to_string()),
        emulation_minor: Some(KUBERNETES_MINOR.to_string()),
        min_compatibility_major: Some(KUBERNETES_MAJOR.to_string()),
        min_compatibility_minor: Some((KUBERNETES_MINOR - 1).to_string()),
        git_version: git_version(),
        git_commit: option_env!("K3RS_GIT_COMMIT").unwrap_or_default().to_string(),
        git_tree_state: option_env!("K3RS_GIT_TREE_STATE").unwrap_or_default().to_string(),
        // Upstream's value for a build that did not record its date.
        build_date: option_env!("K3RS_BUILD_DATE").unwrap_or("1970-01-01T00:00:00Z").to_string(),
        go_version: option_env!("K3RS_RUSTC_VERSION").unwrap_or("rustc (version not recorded)").to_string(),
        compiler: "rustc".to_string(),
        platform: platform(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_document() {
        let info = version_info();
        assert_eq!(info.git_version, "v1.33.0+k3rs1");
        assert_eq!((info.major.as_str(), info.minor.as_str()), ("1", "33"));
        assert_eq!(info.min_compatibility_minor.as_deref(), Some("32"));
        assert_eq!(info.compiler, "rustc");
        let json = serde_json::to_value(&info).unwrap_or_default();
        assert_eq!(json["gitVersion"], "v1.33.0+k3rs1");
        assert_eq!(json["emulationMinor"], "33");
        assert!(json["goVersion"].as_str().is_some_and(|v| v.starts_with("rustc")));
    }

    #[test]
    fn platform_uses_go_names() {
        assert_eq!(go_arch("x86_64"), "amd64");
        assert_eq!(go_arch("aarch64"), "arm64");
        assert_eq!(go_arch("riscv64"), "riscv64");
        let p = platform();
        assert!(p.starts_with(std::env::consts::OS) && !p.contains("x86_64"), "{p}");
    }
}
