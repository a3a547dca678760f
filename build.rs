//! Builds the container monitor (src/kubelet/runtime/monitor/main.rs): a `no_std` program of
//! a few KiB that each container's shim becomes once the container exists. The k3rs binary
//! carries it (`include_bytes!`) and runs it from memory, so k3rs stays one file while the
//! process that lives beside every container stays tiny.
//!
//! Also compiles etcd's v3 API definitions (proto/) into Rust messages, gRPC clients and
//! gRPC servers for `src/etcdproto.rs`, in pure Rust: protox parses the files, so building
//! k3rs needs no `protoc` (nor the `descriptor.proto` that Debian ships apart from it).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    build_monitor();
    compile_etcd_api();
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
