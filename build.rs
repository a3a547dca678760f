//! Builds the container monitor (src/kubelet/runtime/monitor/main.rs): a `no_std` program of
//! a few KiB that each container's shim becomes once the container exists. The k3rs binary
//! carries it (`include_bytes!`) and runs it from memory, so k3rs stays one file while the
//! process that lives beside every container stays tiny.
//!
//! Also compiles etcd's v3 API definitions (proto/) into Rust messages, gRPC clients and
//! gRPC servers for `src/etcdproto.rs`, in pure Rust: protox parses the files, so building
//! k3rs needs no `protoc` (nor the `descriptor.proto` that Debian ships apart from it).
//!
//! And records what `k3rs --version` prints besides the crate version: the git commit
//! (`K3RS_GIT_COMMIT` from the environment overrides it, e.g. for a build from a source
//! archive; "unknown" without either), the build date (from `SOURCE_DATE_EPOCH` when set, for
//! reproducible builds) and the compiler's version.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    build_monitor();
    compile_etcd_api();
    provenance();
}

fn provenance() {
    println!("cargo:rerun-if-env-changed=K3RS_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).output().ok().filter(|o| o.status.success())?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string()).filter(|s| !s.is_empty())
    };
    let commit = match std::env::var("K3RS_GIT_COMMIT") {
        Ok(c) if !c.is_empty() => c,
        _ => git(&["rev-parse", "--short=8", "HEAD"]).unwrap_or_else(|| "unknown".into()),
    };
    // Run again when HEAD moves: HEAD itself, the branch it names and the packed refs. Only
    // files that exist are named (cargo would otherwise run this every time).
    if let (Some(git_dir), Some(common)) = (git(&["rev-parse", "--git-dir"]), git(&["rev-parse", "--git-common-dir"])) {
        let mut watch = vec![PathBuf::from(&git_dir).join("HEAD"), PathBuf::from(&common).join("packed-refs")];
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(PathBuf::from(&common).join(branch));
        }
        for path in watch.iter().filter(|p| p.exists()) {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let epoch =
        std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.trim().parse::<i64>().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
        });
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "rustc (unknown version)".into());
    println!("cargo:rustc-env=K3RS_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=K3RS_BUILD_DATE={}", utc_date(epoch));
    println!("cargo:rustc-env=K3RS_RUSTC_VERSION={rustc_version}");
}

/// Seconds since the epoch as RFC 3339 in UTC (`YYYY-MM-DDTHH:MM:SSZ`).
fn utc_date(epoch: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(epoch)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// The etcd API files k3rs serves and speaks; their imports are found under `proto/`.
const ETCD_PROTOS: &[&str] =
    &["proto/etcd/api/etcdserverpb/rpc.proto", "proto/etcd/api/mvccpb/kv.proto", "proto/etcd/api/authpb/auth.proto"];

fn compile_etcd_api() {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = match protox::compile(ETCD_PROTOS, ["proto"]) {
        Ok(set) => set,
        Err(err) => panic!("parsing the etcd API definitions in proto/ failed: {err:?}"),
    };
    if let Err(err) = tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(descriptors) {
        panic!("generating the etcd API code failed: {err}");
    }
}

fn build_monitor() {
    let src = "src/kubelet/runtime/monitor/main.rs";
    println!("cargo:rerun-if-changed=src/kubelet/runtime/monitor");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("k3rs-monitor");
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" && arch != "aarch64" {
        panic!("the container monitor is written for x86_64 and aarch64 Linux, not {target}");
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args(["--edition", "2021", "--crate-type", "bin", "--crate-name", "k3rs_monitor", "--target", &target])
        .args(["-C", "opt-level=s", "-C", "panic=abort", "-C", "debuginfo=0", "-C", "strip=symbols"])
        // A static, position-dependent executable: no loader, no relocations to apply.
        .args(["-C", "relocation-model=static", "-C", "target-feature=+crt-static"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib", "-C", "link-arg=-Wl,--build-id=none"])
        .arg("-o")
        .arg(&out)
        .arg(src)
        // Flags meant for k3rs itself (and a wrapper's) must not reach this program.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS");
    let linker_var = format!("CARGO_TARGET_{}_LINKER", target.to_uppercase().replace('-', "_"));
    if let Ok(linker) = std::env::var(&linker_var) {
        cmd.arg("-C").arg(format!("linker={linker}"));
    }
    let status = cmd.status().expect("running rustc for the container monitor");
    if !status.success() {
        panic!("building the container monitor ({src}) failed");
    }
}
