//! A real container image for tests, built from Debian's static busybox (`busybox-static`):
//! one layer with `/bin/busybox`, a symlink per applet it lists (sh, echo, cat, ls, sleep,
//! wget, nc, id, hostname, ...), `/etc/passwd` and `/etc/group`, and the usual empty
//! directories; the config runs `sh` with a standard PATH. Written as an OCI image-layout
//! archive or a `docker save` archive. Everything is deterministic (fixed mtimes, uncompressed
//! gzip headers without time), so the same inputs give byte-identical archives.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Where Debian's busybox-static installs the binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// The PATH the image's config sets.
pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const MTIME: u64 = 1_700_000_000;

/// The busybox layer as an uncompressed tar.
pub fn busybox_layer() -> Vec<u8> {
    let binary = std::fs::read(BUSYBOX).unwrap_or_else(|e| panic!("{BUSYBOX}: {e} (install busybox-static)"));
    let out = std::process::Command::new(BUSYBOX).arg("--list").output().expect("busybox --list");
    let applets: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_string)
        .collect();
    assert!(applets.iter().any(|a| a == "sh"), "busybox has no sh applet");
    let mut b = LayerBuilder::new();
    for dir in ["bin", "dev", "etc", "home", "proc", "root", "sys", "usr", "usr/bin", "var", "var/log"] {
        b.dir(dir, 0o755);
    }
    b.dir("tmp", 0o1777);
    b.file("bin/busybox", 0o755, &binary);
    for applet in &applets {
        b.symlink(&format!("bin/{applet}"), "busybox");
    }
    b.file("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n");
    b.file("etc/group", 0o644, b"root:x:0:\nnobody:x:65534:\n");
    b.finish()
}

/// Builds tar layers for tests: directories, files, symlinks and whiteouts.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

impl LayerBuilder {
    pub fn new() -> Self {
        let mut tar = tar::Builder::new(Vec::new());
        tar.mode(tar::HeaderMode::Complete);
        LayerBuilder { tar }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.tar.append_data(&mut h, format!("{path}/"), &[][..]).expect("tar dir");
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.tar.append_data(&mut h, path, data).expect("tar file");
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.tar.append_link(&mut h, path, target).expect("tar symlink");
        self
    }

    /// An OCI whiteout hiding `path` of the layers below.
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let p = Path::new(path);
        let name = p.file_name().expect("whiteout name").to_string_lossy();
        let wh = p.with_file_name(format!(".wh.{name}"));
        self.file(&wh.to_string_lossy(), 0o644, b"")
    }

    /// Marks directory `dir` opaque: nothing of the layers below shows through it.
    pub fn opaque(&mut self, dir: &str) -> &mut Self {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o644, b"")
    }

    pub fn finish(self) -> Vec<u8> {
        self.tar.into_inner().expect("tar")
    }
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// The image config JSON for uncompressed `layers`, running `cmd`.
pub fn config_json(layers: &[Vec<u8>], cmd: &[&str]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| format!("sha256:{}", sha256_hex(l))).collect();
    serde_json::to_vec(&serde_json::json!({
        "created": "2023-11-14T22:13:20Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [PATH_ENV], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": layers.iter().map(|_| serde_json::json!({"created": "2023-11-14T22:13:20Z", "created_by": "k3rs tests"})).collect::<Vec<_>>(),
    }))
    .expect("json")
}

/// A one-layer busybox image as an OCI image-layout archive `dir/<file-safe name>.oci.tar`,
/// named `name` (e.g. `busybox:1.0`, stored in the index annotations).
pub fn oci_archive(dir: &Path, name: &str) -> PathBuf {
    oci_archive_with_layers(dir, name, &[busybox_layer()], &["sh"])
}

/// A one-layer busybox image as a `docker save` archive `dir/<file-safe name>.docker.tar`.
pub fn docker_archive(dir: &Path, name: &str) -> PathBuf {
    let layer = busybox_layer();
    let config = config_json(std::slice::from_ref(&layer), &["sh"]);
    let config_name = format!("{}.json", sha256_hex(&config));
    let layer_dir = sha256_hex(&layer);
    let manifest = serde_json::json!([{
        "Config": config_name,
        "RepoTags": [name],
        "Layers": [format!("{layer_dir}/layer.tar")],
    }]);
    let (repo, tag) = name.rsplit_once(':').unwrap_or((name, "latest"));
    let repositories = serde_json::json!({ repo: { tag: layer_dir } });
    let mut b = LayerBuilder::new();
    b.dir(&layer_dir, 0o755);
    b.file(&format!("{layer_dir}/VERSION"), 0o644, b"1.0");
    b.file(&format!("{layer_dir}/layer.tar"), 0o644, &layer);
    b.file(&config_name, 0o644, &config);
    b.file("manifest.json", 0o644, &serde_json::to_vec(&manifest).expect("json"));
    b.file("repositories", 0o644, &serde_json::to_vec(&repositories).expect("json"));
    let path = dir.join(format!("{}.docker.tar", file_safe(name)));
    std::fs::write(&path, b.finish()).expect("write archive");
    path
}

/// An OCI image-layout archive of the given uncompressed layers (gzipped into blobs, lowest
/// first) with the busybox config running `cmd`.
pub fn oci_archive_with_layers(dir: &Path, name: &str, layers: &[Vec<u8>], cmd: &[&str]) -> PathBuf {
    let mut b = LayerBuilder::new();
    b.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#);
    b.dir("blobs", 0o755);
    b.dir("blobs/sha256", 0o755);
    let mut layer_descs = Vec::new();
    for layer in layers {
        let gz = gzip(layer);
        let hex = sha256_hex(&gz);
        b.file(&format!("blobs/sha256/{hex}"), 0o644, &gz);
        layer_descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": format!("sha256:{hex}"),
            "size": gz.len(),
        }));
    }
    let config = config_json(layers, cmd);
    let config_hex = sha256_hex(&config);
    b.file(&format!("blobs/sha256/{config_hex}"), 0o644, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_hex}"), "size": config.len()},
        "layers": layer_descs,
    }))
    .expect("json");
    let manifest_hex = sha256_hex(&manifest);
    b.file(&format!("blobs/sha256/{manifest_hex}"), 0o644, &manifest);
    let full = k3rs::images::ImageRef::parse(name).expect("image name").to_string();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_hex}"),
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": full,
                "org.opencontainers.image.ref.name": name,
            },
        }],
    });
    b.file("index.json", 0o644, &serde_json::to_vec(&index).expect("json"));
    let path = dir.join(format!("{}.oci.tar", file_safe(name)));
    std::fs::write(&path, b.finish()).expect("write archive");
    path
}

fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect()
}
