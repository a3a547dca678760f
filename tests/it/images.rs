//! The node image store against real inputs: busybox archives in both formats built from
//! Debian's busybox-static, layers with whiteouts seen through a real overlay mount, the
//! air-gap directory watcher, the `k3rs images` command, and pulls from Debian's
//! `docker-registry` on loopback (plain HTTP, HTTPS with a CA file, htpasswd Basic auth,
//! a docker.io mirror with a rewrite, and the three kinds of failure).

use crate::common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::busybox::{self, LayerBuilder};
use k3rs::images::{Credential, ImageError, ImageStore, PullOptions, RegistriesConfig};

fn store_in(dir: &Path) -> ImageStore {
    ImageStore::open(&dir.join("store")).expect("open store")
}

fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// Unmounts a container root filesystem even when the test fails.
struct RootfsGuard<'a>(&'a ImageStore, &'a str);

impl Drop for RootfsGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.remove_rootfs(self.1);
    }
}

fn mount_count(target: &Path) -> usize {
    let target = std::fs::canonicalize(target).unwrap_or_else(|_| target.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines().filter(|l| l.split(' ').nth(4) == Some(target.to_str().expect("utf-8"))).count()
}

#[test]
fn imports_oci_and_docker_archives_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path());
    let oci = busybox::oci_archive(dir.path(), "busybox:1.0");
    let docker = busybox::docker_archive(dir.path(), "example.com/tools/busybox:2.0");

    let t = Instant::now();
    let images = store.import_archive(&oci).expect("import OCI archive");
    eprintln!(
        "busybox OCI archive ({} bytes) imported in {:?}",
        std::fs::metadata(&oci).map(|m| m.len()).unwrap_or(0),
        t.elapsed()
    );
    assert_eq!(images.len(), 1);
    let a = &images[0];
    assert_eq!(a.names, ["docker.io/library/busybox:1.0"]);
    assert_eq!(a.config.cmd, ["sh"]);
    assert_eq!(a.config.env, [busybox::PATH_ENV]);
    assert_eq!(a.layers.len(), 1);
    assert!(a.repo_digests[0].starts_with("docker.io/library/busybox@sha256:"), "{:?}", a.repo_digests);
    let layer = store.layer_path(&a.layers[0]);
    let meta = std::fs::metadata(layer.join("bin/busybox")).expect("busybox unpacked");
    assert_eq!(meta.len(), std::fs::metadata(busybox::BUSYBOX).expect("stat").len());
    assert_eq!(std::fs::read_link(layer.join("bin/sh")).expect("sh applet"), Path::new("busybox"));

    // The same image saved by docker (same config, so the same image ID) adds its name.
    let t = Instant::now();
    let images = store.import_archive(&docker).expect("import docker archive");
    eprintln!("busybox docker archive imported in {:?}", t.elapsed());
    assert_eq!(images[0].id, a.id);
    assert_eq!(images[0].names, ["docker.io/library/busybox:1.0", "example.com/tools/busybox:2.0"]);
    assert_eq!(images[0].layers, a.layers);
    assert_eq!(count_entries(&dir.path().join("store/layers")), 1, "unpacked once");

    // Lookups by name (familiar or full), ID, short ID and repo digest.
    for r in [
        "busybox:1.0",
        "docker.io/library/busybox:1.0",
        "example.com/tools/busybox:2.0",
        &a.id,
        &a.id[7..19],
        &a.repo_digests[0],
    ] {
        assert_eq!(store.resolve(r).expect("resolve").map(|i| i.id), Some(a.id.clone()), "{r}");
    }
    assert_eq!(store.resolve("busybox:latest").expect("resolve"), None);
    assert_eq!(store.list().expect("list").len(), 1);

    // The same archive, and the same bytes under another file name, are not imported again.
    let imported = dir.path().join("store/imported");
    assert_eq!(count_entries(&imported), 2);
    let blobs_before = count_entries(&dir.path().join("store/blobs/sha256"));
    let copy = dir.path().join("renamed.tar");
    std::fs::copy(&oci, &copy).expect("copy");
    assert!(store.was_imported(&ImageStore::archive_digest(&copy).expect("digest")));
    let again = store.import_archive(&copy).expect("re-import");
    assert_eq!(again[0].id, a.id);
    assert_eq!(count_entries(&imported), 2);
    assert_eq!(count_entries(&dir.path().join("store/blobs/sha256")), blobs_before);

    // A changed file (another name inside) is imported.
    let changed = busybox::oci_archive(&dir.path().join("store/tmp"), "busybox:1.1");
    let c = store.import_archive(&changed).expect("import changed");
    assert_eq!(c[0].id, a.id, "same image, another name");
    assert_eq!(count_entries(&imported), 3);
    assert_eq!(store.resolve("busybox:1.0").expect("resolve").map(|i| i.names.len()), Some(3));

    // Removing by name drops that name only; by ID, the image and its content go.
    store.remove("busybox:1.1").expect("remove name");
    store.remove("docker.io/library/busybox:1.0").expect("remove name");
    assert!(matches!(store.remove("busybox:1.0"), Err(ImageError::NotFound(_))));
    let left = store.resolve(&a.id).expect("resolve").expect("still there under its other name");
    assert_eq!(left.names, ["example.com/tools/busybox:2.0"]);
    assert_eq!(left.repo_digests.len(), 1, "{:?}", left.repo_digests);
    assert_eq!(count_entries(&dir.path().join("store/layers")), 1);
    store.remove(&a.id[7..19]).expect("remove by short ID");
    assert_eq!(count_entries(&dir.path().join("store/layers")), 0);
    assert_eq!(count_entries(&dir.path().join("store/blobs/sha256")), 0);
    assert!(store.list().expect("list").is_empty());
    // Removed on purpose: an explicit import brings it back.
    assert_eq!(store.import_archive(&oci).expect("import again")[0].id, a.id);
}

#[test]
fn imports_a_docker_archive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path());
    let docker = busybox::docker_archive(dir.path(), "busybox:2.0");
    let image = store.import_archive(&docker).expect("import").remove(0);
    assert_eq!(image.names, ["docker.io/library/busybox:2.0"]);
    assert_eq!(image.config.cmd, ["sh"]);
    let layer = store.layer_path(&image.layers[0]);
    assert!(layer.join("bin/busybox").is_file());
    assert_eq!(std::fs::read_link(layer.join("bin/wget")).expect("wget applet"), Path::new("busybox"));
    let tmp = std::fs::metadata(layer.join("tmp")).expect("tmp");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&tmp.permissions()) & 0o7777, 0o1777);
    // docker save has no registry manifest; the store writes one, so a repo digest exists.
    assert!(image.repo_digests[0].starts_with("docker.io/library/busybox@sha256:"));
}

#[test]
fn refuses_broken_archives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path());
    let junk = dir.path().join("junk.tar");
    let mut b = LayerBuilder::new();
    b.file("hello", 0o644, b"x");
    std::fs::write(&junk, b.finish()).expect("write");
    let err = store.import_archive(&junk).expect_err("no image in it");
    assert!(matches!(err, ImageError::InvalidArchive { .. }), "{err}");
    // A blob whose content does not match its name.
    let mut b = LayerBuilder::new();
    b.file(&format!("blobs/sha256/{}", "0".repeat(64)), 0o644, b"not that");
    b.file("index.json", 0o644, b"{}");
    let bad = dir.path().join("bad.tar");
    std::fs::write(&bad, b.finish()).expect("write");
    let err = store.import_archive(&bad).expect_err("digest mismatch");
    assert!(err.to_string().contains("expected sha256:0000"), "{err}");
    assert!(store.list().expect("list").is_empty());
}

#[test]
fn whiteouts_and_opaque_dirs_through_the_overlay_rootfs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path());
    let mut l1 = LayerBuilder::new();
    l1.dir("opt", 0o755).file("opt/keep", 0o644, b"keep\n").file("opt/gone", 0o644, b"gone\n");
    l1.dir("var/old", 0o755).file("var/old/x", 0o644, b"x\n");
    let mut l2 = LayerBuilder::new();
    l2.whiteout("opt/gone").whiteout("bin/cat");
    l2.dir("var/old", 0o755).opaque("var/old").file("var/old/y", 0o644, b"y\n");
    let archive = busybox::oci_archive_with_layers(
        dir.path(),
        "layered:1",
        &[busybox::busybox_layer(), l1.finish(), l2.finish()],
        &["sh"],
    );
    let image = store.import_archive(&archive).expect("import").remove(0);
    assert_eq!(image.layers.len(), 3);

    let key = "pod1_c1";
    let _guard = RootfsGuard(&store, key);
    let rootfs = store.create_rootfs(&image, key).expect("create rootfs");
    assert_eq!(store.create_rootfs(&image, key).expect("again"), rootfs, "idempotent");
    assert_eq!(mount_count(&rootfs), 1, "mounted once");

    assert!(rootfs.join("opt/keep").exists());
    assert!(!rootfs.join("opt/gone").exists(), "whiteout hides the lower file");
    assert!(!rootfs.join("bin/cat").exists(), "whiteout hides the applet");
    assert!(rootfs.join("bin/ls").exists());
    assert!(!rootfs.join("var/old/x").exists(), "opaque dir hides the lower content");
    assert!(rootfs.join("var/old/y").exists());
    // The busybox of the image really runs from the overlay.
    let out = Command::new("chroot")
        .arg(&rootfs)
        .args(["/bin/sh", "-c", "ls /opt /var/old; head -n1 /etc/passwd; echo written > /opt/new"])
        .output()
        .expect("chroot");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/opt:\nkeep\n\n/var/old:\ny\nroot:x:0:0:root:/root:/bin/sh\n");
    let upper = dir.path().join("store/containers").join(key).join("upper");
    assert_eq!(std::fs::read_to_string(upper.join("opt/new")).expect("write lands in upper"), "written\n");
    assert!(!store.layer_path(&image.layers[1]).join("opt/new").exists(), "layers stay untouched");

    // In use: not removable; the error names the container.
    let err = store.remove("layered:1").expect_err("in use");
    assert!(matches!(&err, ImageError::InUse { container, .. } if container == key), "{err}");
    store.remove_rootfs(key).expect("remove rootfs");
    assert_eq!(mount_count(&rootfs), 0);
    assert!(!dir.path().join("store/containers").join(key).exists());
    store.remove("layered:1").expect("remove after use");
    assert_eq!(count_entries(&dir.path().join("store/layers")), 0);
}

#[test]
fn many_layers_fit_the_overlay_mount() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path());
    let mut layers = vec![busybox::busybox_layer()];
    for i in 0..50 {
        let mut l = LayerBuilder::new();
        l.dir("layers", 0o755).file(&format!("layers/{i}"), 0o644, format!("{i}\n").as_bytes());
        layers.push(l.finish());
    }
    let archive = busybox::oci_archive_with_layers(dir.path(), "tall:1", &layers, &["sh"]);
    let image = store.import_archive(&archive).expect("import").remove(0);
    let key = "tall";
    let _guard = RootfsGuard(&store, key);
    let rootfs = store.create_rootfs(&image, key).expect("51 layers mount");
    assert_eq!(count_entries(&rootfs.join("layers")), 50);
}

#[tokio::test]
async fn watcher_imports_files_present_at_start_and_dropped_later() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(store_in(dir.path()));
    let drop_dir = dir.path().join("agent-images");
    std::fs::create_dir(&drop_dir).expect("mkdir");
    let early = busybox::oci_archive(&drop_dir, "early:1");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(k3rs::images::watch_import_dir(Arc::clone(&store), drop_dir.clone(), async move {
        let _ = stopped.await;
    }));
    wait_for(&store, "early:1", Duration::from_secs(10)).await;
    let _ = early;

    // A file written in two parts, slowly, is imported whole once it settles.
    let staged = busybox::docker_archive(dir.path(), "late:1");
    let bytes = std::fs::read(&staged).expect("read");
    let target = drop_dir.join("late.tar");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&target).expect("create");
        f.write_all(&bytes[..bytes.len() / 2]).expect("write");
        f.flush().expect("flush");
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(store.resolve("late:1").expect("resolve").is_none());
        f.write_all(&bytes[bytes.len() / 2..]).expect("write");
    }
    wait_for(&store, "late:1", Duration::from_secs(10)).await;
    // The record is written just after the index, which `wait_for` watched.
    let deadline = Instant::now() + Duration::from_secs(5);
    while count_entries(&dir.path().join("store/imported")) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records: Vec<String> = std::fs::read_dir(dir.path().join("store/imported"))
        .expect("imported")
        .map(|e| std::fs::read_to_string(e.expect("entry").path()).expect("record"))
        .collect();
    assert_eq!(records.len(), 2, "each archive recorded once: {records:?}");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(5), watcher).await.expect("watcher stops").expect("watcher task");

    // A restart imports nothing again, and the records say so.
    let again = k3rs::images::import_dir_once(Arc::clone(&store), drop_dir).await;
    assert!(again.is_empty(), "{again:?}");
}

async fn wait_for(store: &ImageStore, reference: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while store.resolve(reference).expect("resolve").is_none() {
        assert!(Instant::now() < deadline, "{reference} was not imported within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn k3rs() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_k3rs"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("K3RS_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

#[test]
fn cli_imports_lists_and_removes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "").expect("config");
    let data = dir.path().join("data");
    let archive = busybox::oci_archive(dir.path(), "busybox:cli");
    let run = |args: &[&str]| {
        let out = k3rs()
            .args(["images", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .expect("run k3rs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["import", archive.to_str().expect("utf-8")]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("docker.io/library/busybox:cli"), "{out}");
    // The data dir from the environment, as `k3rs server` takes it.
    let out = k3rs().args(["images", "ls", "--config"]).arg(&config).env("K3RS_DATA_DIR", &data).output().expect("run");
    let ls = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["IMAGE", "TAG", "IMAGE", "ID", "SIZE"], "{ls}");
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..2], ["docker.io/library/busybox", "cli"], "{ls}");
    assert!(row[3].ends_with("MB"), "{ls}");
    let (code, _, err) = run(&["rm", "busybox:nope"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("not found"), "{err}");
    let (code, out, err) = run(&["rm", "busybox:cli"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Deleted: docker.io/library/busybox:cli"), "{out}");
    let (_, out, _) = run(&["ls", "-q"]);
    assert_eq!(out, "");
    let (code, _, err) = run(&["import", "/nonexistent.tar"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("/nonexistent.tar"), "{err}");
}

// ---- pulls from a real registry ----

/// Debian's `docker-registry` on a free loopback port, killed on drop.
struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

struct RegistryOptions<'a> {
    htpasswd: Option<(&'a str, &'a str)>,
    tls: Option<(&'a Path, &'a Path)>,
    /// Token auth: (realm URL, certificate bundle that signs the tokens).
    token: Option<(&'a str, &'a Path)>,
}

impl Registry {
    fn start(opts: RegistryOptions<'_>) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((cert, key)) = opts.tls {
            config.push_str(&format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display()));
        }
        if let Some((user, pass)) = opts.htpasswd {
            let out = Command::new("htpasswd").args(["-Bbn", user, pass]).output().expect("htpasswd (apache2-utils)");
            assert!(out.status.success());
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).expect("write htpasswd");
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: k3rs-test\n    path: {}\n", file.display()));
        }
        if let Some((realm, bundle)) = opts.token {
            config.push_str(&format!(
                "auth:\n  token:\n    realm: {realm}\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                bundle.display()
            ));
        }
        let cfg = dir.path().join("config.yml");
        std::fs::write(&cfg, config).expect("write config");
        // Its log (every 404 a client probes for is an "error") goes to a file, shown only
        // when it does not start.
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry (apt-get install docker-registry)");
        let registry = Registry { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Pushes an archive with skopeo to `<this registry>/<repo_tag>`.
    fn push(&self, archive: &Path, kind: &str, repo_tag: &str, creds: Option<&str>) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
        if let Some(c) = creds {
            cmd.args(["--dest-creds", c]);
        }
        let out = cmd
            .arg(format!("{kind}:{}", archive.display()))
            .arg(format!("docker://{}/{repo_tag}", self.host()))
            .output()
            .expect("run skopeo");
        assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_over_http_with_mirrors_and_reports_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path());
    let registry = Registry::start(RegistryOptions { htpasswd: None, tls: None, token: None });
    let oci = busybox::oci_archive(dir.path(), "busybox:1.0");
    registry.push(&oci, "oci-archive", "busybox:1.0", None);
    registry.push(&oci, "oci-archive", "mirrored/busybox:9", None);

    let reference = format!("{}/busybox:1.0", registry.host());
    let t = Instant::now();
    let image = store.pull(&reference, &PullOptions::default()).await.expect("pull");
    eprintln!("busybox pulled from the local registry in {:?}", t.elapsed());
    assert_eq!(image.names, std::slice::from_ref(&reference));
    assert_eq!(image.config.cmd, ["sh"]);
    assert!(image.repo_digests[0].starts_with(&format!("{}/busybox@sha256:", registry.host())));
    assert!(store.layer_path(&image.layers[0]).join("bin/busybox").is_file());
    // Pinned by digest: the manifest is checked against it.
    let digest = image.repo_digests[0].split('@').nth(1).expect("digest").to_string();
    let pinned = store
        .pull(&format!("{}/busybox@{digest}", registry.host()), &PullOptions::default())
        .await
        .expect("pull by digest");
    assert_eq!(pinned.id, image.id);
    assert!(store.resolve(&format!("{}/busybox@{digest}", registry.host())).expect("resolve").is_some());

    // The same through `k3rs images pull`, into another data dir.
    let data = dir.path().join("cli-data");
    let out = k3rs()
        .args(["images", "pull", &reference, "--config", "/dev/null", "--registries"])
        .arg(dir.path().join("none.yaml"))
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run k3rs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&image.id));
    assert!(ImageStore::open(&data.join("agent/image-store"))
        .expect("open")
        .resolve(&reference)
        .expect("resolve")
        .is_some());

    // docker.io through a mirror with a rewrite: nothing leaves the machine.
    let yaml = format!(
        "mirrors:\n  docker.io:\n    endpoint: [\"http://{}\"]\n    rewrite:\n      \"^library/(.*)\": \"mirrored/$1\"\n",
        registry.host()
    );
    let file = dir.path().join("registries.yaml");
    std::fs::write(&file, yaml).expect("write");
    let opts = PullOptions { registries: RegistriesConfig::load(&file).expect("load"), credentials: vec![] };
    let mirrored = store.pull("busybox:9", &opts).await.expect("pull through mirror");
    assert!(mirrored.names.contains(&"docker.io/library/busybox:9".to_string()), "{:?}", mirrored.names);
    assert_eq!(mirrored.id, image.id);

    // Not found.
    let missing = format!("{}/nope:1", registry.host());
    let err = store.pull(&missing, &PullOptions::default()).await.expect_err("missing");
    assert!(matches!(err, ImageError::PullNotFound { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("failed to pull and unpack image \"{missing}\": failed to resolve reference \"{missing}\": {missing}: not found")
    );
    // Nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let err = store.pull(&format!("127.0.0.1:{closed}/x:1"), &PullOptions::default()).await.expect_err("refused");
    assert!(matches!(err, ImageError::PullNetwork { .. }), "{err}");
    assert!(err.to_string().contains("connection refused") || err.to_string().contains("Connection refused"), "{err}");
    // Invalid reference.
    assert!(matches!(store.pull("Busybox", &PullOptions::default()).await, Err(ImageError::InvalidReference { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_over_https_with_basic_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path());
    let pki = common::tls::TestPki::generate();
    let registry = Registry::start(RegistryOptions {
        htpasswd: Some(("alice", "s3cret")),
        tls: Some((&pki.server_cert_file, &pki.server_key_file)),
        token: None,
    });
    let docker = busybox::docker_archive(dir.path(), "busybox:2.0");
    registry.push(&docker, "docker-archive", "private/busybox:2.0", Some("alice:s3cret"));

    let host = registry.host();
    let reference = format!("{host}/private/busybox:2.0");
    // Loopback registries default to plain HTTP: say it is HTTPS, and trust the test CA.
    let yaml = |auth: &str| {
        format!(
            "mirrors:\n  \"{host}\":\n    endpoint: [\"https://{host}\"]\nconfigs:\n  \"{host}\":\n    tls:\n      ca_file: {}\n{auth}",
            pki.ca_file.display()
        )
    };
    let no_auth = RegistriesConfig::parse(&yaml("")).expect("parse");
    let err = store
        .pull(&reference, &PullOptions { registries: no_auth.clone(), credentials: vec![] })
        .await
        .expect_err("needs auth");
    assert!(matches!(err, ImageError::PullUnauthorized { .. }), "{err}");

    // Credentials from an imagePullSecret.
    let wrong = Credential { registry: host.clone(), username: "alice".into(), password: "wrong".into() };
    let err = store
        .pull(&reference, &PullOptions { registries: no_auth.clone(), credentials: vec![wrong] })
        .await
        .expect_err("bad password");
    assert!(matches!(err, ImageError::PullUnauthorized { .. }), "{err}");
    let right = Credential { registry: host.clone(), username: "alice".into(), password: "s3cret".into() };
    let t = Instant::now();
    let image = store
        .pull(&reference, &PullOptions { registries: no_auth, credentials: vec![right] })
        .await
        .expect("pull with secret");
    eprintln!("busybox pulled over HTTPS with basic auth in {:?}", t.elapsed());
    assert_eq!(image.names, std::slice::from_ref(&reference));
    store.remove(&reference).expect("remove");

    // Credentials from registries.yaml.
    let with_auth =
        RegistriesConfig::parse(&yaml("    auth:\n      username: alice\n      password: s3cret\n")).expect("parse");
    store
        .pull(&reference, &PullOptions { registries: with_auth, credentials: vec![] })
        .await
        .expect("pull with config auth");

    // Without the CA the certificate is refused, unless verification is turned off.
    let untrusted = format!("mirrors:\n  \"{host}\":\n    endpoint: [\"https://{host}\"]\nconfigs:\n  \"{host}\":\n    auth:\n      username: alice\n      password: s3cret\n");
    let err = store
        .pull(
            &reference,
            &PullOptions { registries: RegistriesConfig::parse(&untrusted).expect("parse"), credentials: vec![] },
        )
        .await
        .expect_err("unknown CA");
    assert!(matches!(err, ImageError::PullNetwork { .. }), "{err}");
    let insecure = format!("{untrusted}    tls:\n      insecure_skip_verify: true\n");
    store
        .pull(
            &reference,
            &PullOptions { registries: RegistriesConfig::parse(&insecure).expect("parse"), credentials: vec![] },
        )
        .await
        .expect("pull without verification");
}

const TOKEN_SERVICE: &str = "k3rs-test-registry";
const TOKEN_ISSUER: &str = "k3rs-test-issuer";

/// A token server for the registry's token auth: every request gets one ES256 JWT granting
/// pull and push on `repo`, signed by a self-signed key whose certificate the registry
/// trusts (sent in the token's `x5c` header). The query strings it saw are kept.
struct TokenServer {
    url: String,
    bundle: std::path::PathBuf,
    seen: Arc<std::sync::Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl TokenServer {
    fn start(repo: &str) -> TokenServer {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let dir = tempfile::tempdir().expect("tempdir");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["k3rs-token-signer".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let bundle = dir.path().join("token-ca.pem");
        std::fs::write(&bundle, cert.pem()).expect("write bundle");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
        let header = serde_json::json!({
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(cert.der().as_ref())],
        });
        let claims = serde_json::json!({
            "iss": TOKEN_ISSUER, "sub": "k3rs", "aud": TOKEN_SERVICE,
            "exp": now + 3600, "nbf": now - 60, "iat": now - 60, "jti": "k3rs-test",
            "access": [{"type": "repository", "name": repo, "actions": ["pull", "push"]}],
        });
        let signing_input = format!("{}.{}", b64.encode(header.to_string()), b64.encode(claims.to_string()));
        let rng = ring::rand::SystemRandom::new();
        let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &rng,
        )
        .expect("signing key");
        let sig = signer.sign(&rng, signing_input.as_bytes()).expect("sign");
        let token = format!("{signing_input}.{}", b64.encode(sig.as_ref()));
        let body = serde_json::json!({"token": token, "expires_in": 3600}).to_string();

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/token", listener.local_addr().expect("addr"));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = std::io::BufReader::new(conn.try_clone().expect("clone"));
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                if let Ok(mut l) = log.lock() {
                    l.push(request_line.split(' ').nth(1).unwrap_or("").to_string());
                }
                let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
            }
        });
        TokenServer { url, bundle, seen, _dir: dir }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_with_bearer_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(dir.path());
    let tokens = TokenServer::start("busybox");
    let registry =
        Registry::start(RegistryOptions { htpasswd: None, tls: None, token: Some((&tokens.url, &tokens.bundle)) });
    let oci = busybox::oci_archive(dir.path(), "busybox:1.0");
    registry.push(&oci, "oci-archive", "busybox:1.0", None);
    tokens.seen.lock().expect("lock").clear();

    let reference = format!("{}/busybox:1.0", registry.host());
    let image = store.pull(&reference, &PullOptions::default()).await.expect("pull with a bearer token");
    assert_eq!(image.names, [reference]);
    let seen = tokens.seen.lock().expect("lock").clone();
    assert!(!seen.is_empty(), "no token was requested");
    assert!(
        seen.iter().all(|q| q.contains(&format!("service={TOKEN_SERVICE}")) && q.contains("scope=repository%3Abusybox%3Apull")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn a_warm_boot_does_not_read_archives_it_imported_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(store_in(dir.path()));
    let drop_dir = dir.path().join("images");
    std::fs::create_dir_all(&drop_dir).expect("mkdir");
    let archive = busybox::oci_archive(&drop_dir, "busybox:warm");
    assert!(!store.unchanged_since_import(&archive));
    let first = k3rs::images::import_dir_once(Arc::clone(&store), drop_dir.clone()).await;
    assert_eq!(first.len(), 1);
    // Known by its metadata now: the next boot skips it without hashing it.
    assert!(store.unchanged_since_import(&archive));
    assert!(k3rs::images::import_dir_once(Arc::clone(&store), drop_dir.clone()).await.is_empty());

    // The same bytes written again: read once more, found imported, remembered again.
    let bytes = std::fs::read(&archive).expect("read");
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&archive, &bytes).expect("rewrite");
    assert!(!store.unchanged_since_import(&archive));
    assert!(k3rs::images::import_dir_once(Arc::clone(&store), drop_dir.clone()).await.is_empty());
    assert!(store.unchanged_since_import(&archive));

    // Its image removed with `k3rs images rm`: a restart does not bring it back (each
    // archive content is imported once), and still does not read the file.
    store.remove("busybox:warm").expect("remove");
    assert!(store.unchanged_since_import(&archive));
    assert!(k3rs::images::import_dir_once(Arc::clone(&store), drop_dir).await.is_empty());
    assert!(store.resolve("busybox:warm").expect("resolve").is_none());
}
