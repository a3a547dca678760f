//! Real containers through `LibcontainerRuntime` and the `k3rs shim` (needs root): a busybox
//! root filesystem made from the host's `/bin/busybox`, specs from `container_spec` on real
//! Pod values, no network namespace path (each container gets a private one).
//!
//! Every test removes its containers and its cgroup tree (`/k3rs-rt-test-<pid>-<n>`) in a
//! Drop guard, so a failing assertion leaves nothing behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k3rs::images::ImageConfig;
use k3rs::kubelet::runtime::{ContainerState, CreateRequest, ExecRequest, LibcontainerRuntime, Runtime};
use k3rs::kubelet::spec::{container_spec, EnvSources, SandboxPaths, SpecInput};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A busybox root filesystem: the static binary and one symlink per applet.
fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "data"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir rootfs");
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy busybox");
    let out = std::process::Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
        }
    }
}

/// One test's world: directories, a runtime, and cleanup of whatever it created.
struct World {
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    rt: LibcontainerRuntime,
    cgroup_root: String,
    ids: std::sync::Mutex<Vec<String>>,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        busybox_rootfs(&dir.join("rootfs"));
        for f in ["hosts", "hostname", "resolv.conf"] {
            std::fs::write(dir.join(f), format!("# {f}\n")).expect("sandbox file");
        }
        std::fs::write(dir.join("hostname"), "web\n").expect("hostname");
        let rt = Self::runtime(&dir);
        let cgroup_root = format!("/k3rs-rt-test-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        World { dir, _tmp: Some(tmp), rt, cgroup_root, ids: Default::default() }
    }

    fn runtime(dir: &Path) -> LibcontainerRuntime {
        LibcontainerRuntime::new(dir.join("containers"), dir.join("run")).with_shim_binary(env!("CARGO_BIN_EXE_k3rs"))
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    fn request(
        &self,
        id: &str,
        pod: serde_json::Value,
        sources: &EnvSources,
        volumes: &BTreeMap<String, PathBuf>,
    ) -> CreateRequest {
        let pod: Pod = serde_json::from_value(pod).expect("pod");
        let container = pod.spec.as_ref().expect("spec").containers[0].clone();
        let image = ImageConfig {
            cmd: vec!["sh".into()],
            env: vec!["PATH=/bin".into(), "FROM_IMAGE=1".into()],
            ..Default::default()
        };
        let input = SpecInput {
            pod: &pod,
            container: &container,
            image: &image,
            rootfs: self.path("rootfs"),
            sandbox: SandboxPaths {
                hosts: self.path("hosts"),
                hostname: self.path("hostname"),
                resolv_conf: self.path("resolv.conf"),
                ..Default::default()
            },
            volumes,
            env_sources: sources,
            cgroups_path: format!("{}/{id}", self.cgroup_root),
            termination_message_path: None,
        };
        let spec = container_spec(&input).expect("container_spec");
        self.ids.lock().expect("ids").push(id.to_string());
        CreateRequest {
            id: id.to_string(),
            bundle: self.path(&format!("containers/{id}/bundle")),
            spec,
            log_path: self.path(&format!("logs/{id}/0.log")),
            stdin: container.stdin.unwrap_or(false),
            stdin_once: container.stdin_once.unwrap_or(false),
            tty: container.tty.unwrap_or(false),
            labels: BTreeMap::from([("io.kubernetes.container.name".to_string(), container.name.clone())]),
            rootfs_mount: None,
        }
    }

    fn simple(&self, id: &str, cmd: &str) -> CreateRequest {
        self.request(
            id,
            pod_with(json!({"name": "c", "image": "busybox", "command": ["sh", "-c", cmd]})),
            &EnvSources::default(),
            &BTreeMap::new(),
        )
    }

    async fn run(&self, req: &CreateRequest) {
        self.rt.create(req).await.expect("create");
        self.rt.start(&req.id).await.expect("start");
    }

    async fn wait_exit(&self, id: &str, timeout: Duration) -> k3rs::kubelet::runtime::ContainerStatus {
        tokio::time::timeout(timeout, self.rt.wait(id)).await.expect("container exits in time").expect("wait")
    }

    fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.path(&format!("logs/{id}/0.log"))).unwrap_or_default()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let ids = self.ids.lock().map(|i| i.clone()).unwrap_or_default();
        let rt = Self::runtime(&self.dir);
        let handle = std::thread::spawn(move || {
            let Ok(r) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            r.block_on(async {
                for id in ids {
                    let _ = rt.remove(&id).await;
                }
            });
        });
        let _ = handle.join();
        let _ = k3rs::kubelet::runtime::cgroup::remove_cgroup_at(Path::new("/sys/fs/cgroup"), &self.cgroup_root);
    }
}

fn pod_with(container: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "team", "uid": "0c1e7a52-0000-4000-8000-000000000001", "labels": {"app": "web"}},
        "spec": {"containers": [container], "enableServiceLinks": false},
    })
}

fn cri_line_ok(line: &str, stream: &str, text: &str) -> bool {
    let parts: Vec<&str> = line.splitn(4, ' ').collect();
    parts.len() == 4
        && parts[0].len() == 30
        && parts[0].ends_with('Z')
        && parts[0].as_bytes()[10] == b'T'
        && parts[1] == stream
        && parts[2] == "F"
        && parts[3] == text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_logs_a_cri_line_and_completes() {
    let w = World::new();
    let req = w.simple("echo-hi", "echo hi; echo oops >&2");
    w.run(&req).await;
    let st = w.wait_exit("echo-hi", Duration::from_secs(20)).await;
    assert_eq!(st.state, ContainerState::Exited);
    assert_eq!(st.exit_code, Some(0));
    assert_eq!(st.reason.as_deref(), Some("Completed"));
    assert!(st.started_at.is_some() && st.finished_at.is_some() && st.created_at.is_some());
    let log = w.log("echo-hi");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 2, "log: {log:?}");
    assert!(lines.iter().any(|l| cri_line_ok(l, "stdout", "hi")), "log: {log:?}");
    assert!(lines.iter().any(|l| cri_line_ok(l, "stderr", "oops")), "log: {log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonzero_exit_is_an_error() {
    let w = World::new();
    let req = w.simple("exit-3", "exit 3");
    w.run(&req).await;
    let st = w.wait_exit("exit-3", Duration::from_secs(20)).await;
    assert_eq!((st.exit_code, st.reason.as_deref()), (Some(3), Some("Error")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_over_its_limit_is_oom_killed() {
    let w = World::new();
    let pod = pod_with(json!({
        "name": "hog", "image": "busybox",
        "command": ["sh", "-c", "x=0123456789; while true; do x=$x$x; done"],
        "resources": {"limits": {"memory": "16Mi"}},
    }));
    let req = w.request("oom-hog", pod, &EnvSources::default(), &BTreeMap::new());
    w.run(&req).await;
    let st = w.wait_exit("oom-hog", Duration::from_secs(60)).await;
    assert_eq!((st.exit_code, st.reason.as_deref()), (Some(137), Some("OOMKilled")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_sends_sigterm_then_kills_after_the_grace_period() {
    let w = World::new();
    let polite = w.simple("polite", "trap 'echo term; exit 0' TERM; echo ready; while true; do sleep 0.05; done");
    let stubborn = w.simple("stubborn", "trap '' TERM; echo ready; while true; do sleep 0.05; done");
    w.run(&polite).await;
    w.run(&stubborn).await;
    for id in ["polite", "stubborn"] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !w.log(id).contains("ready") {
            assert!(Instant::now() < deadline, "{id} never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(w.rt.status(id).await.expect("status").state, ContainerState::Running);
    }
    let t = Instant::now();
    w.rt.stop("polite", libc::SIGTERM, Duration::from_secs(10)).await.expect("stop polite");
    assert!(t.elapsed() < Duration::from_secs(5));
    let st = w.rt.status("polite").await.expect("status");
    assert_eq!((st.exit_code, st.reason.as_deref()), (Some(0), Some("Completed")));
    assert!(w.log("polite").contains("stdout F term"));

    let t = Instant::now();
    w.rt.stop("stubborn", libc::SIGTERM, Duration::from_millis(500)).await.expect("stop stubborn");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(5), "took {took:?}");
    let st = w.rt.status("stubborn").await.expect("status");
    assert_eq!((st.exit_code, st.reason.as_deref()), (Some(137), Some("Error")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_stdin_returns_output_and_exit_code() {
    let w = World::new();
    let req = w.simple("exec-target", "echo started; exec sleep 1000");
    w.run(&req).await;
    let mut s =
        w.rt.exec(
            "exec-target",
            &ExecRequest {
                cmd: vec!["sh".into(), "-c".into(), "read x; echo got $x; echo err >&2; exit 7".into()],
                tty: false,
                stdin: true,
            },
        )
        .await
        .expect("exec");
    let mut stdin = s.stdin.take().expect("stdin");
    stdin.write_all(b"hello\n").await.expect("write stdin");
    drop(stdin);
    let mut out = String::new();
    s.stdout.take().expect("stdout").read_to_string(&mut out).await.expect("stdout");
    let mut err = String::new();
    s.stderr.take().expect("stderr").read_to_string(&mut err).await.expect("stderr");
    let code = tokio::time::timeout(Duration::from_secs(20), s.exit).await.expect("exit in time").expect("exit");
    assert_eq!((out.as_str(), err.as_str(), code), ("got hello\n", "err\n", 7));
    // The container itself is unaffected.
    assert_eq!(w.rt.status("exec-target").await.expect("status").state, ContainerState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_and_mounts_from_the_pod_are_applied() {
    let w = World::new();
    let vol = w.path("vol");
    std::fs::create_dir_all(vol.join("sub")).expect("vol");
    std::fs::write(vol.join("sub/f"), "from-volume").expect("vol file");
    let volumes = BTreeMap::from([("data".to_string(), vol)]);
    let sources = EnvSources {
        config_maps: BTreeMap::from([(
            "cfg".to_string(),
            BTreeMap::from([("greeting".to_string(), "hello".to_string())]),
        )]),
        pod_ip: "10.42.0.7".into(),
        ..Default::default()
    };
    let pod = pod_with(json!({
        "name": "app", "image": "busybox",
        "command": ["sh", "-c", "echo \"$GREETING $POD_NAME $POD_IP $FROM_IMAGE $(hostname)\"; cat /mnt/f; echo; id -u; touch /mnt/x 2>/dev/null || echo ro"],
        "env": [
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        ],
        "volumeMounts": [{"name": "data", "mountPath": "/mnt", "subPath": "sub", "readOnly": true}],
        "securityContext": {"runAsUser": 1234},
    }));
    let req = w.request("env-mounts", pod, &sources, &volumes);
    w.run(&req).await;
    let st = w.wait_exit("env-mounts", Duration::from_secs(20)).await;
    let log = w.log("env-mounts");
    assert_eq!(st.exit_code, Some(0), "log: {log}");
    let texts: Vec<&str> = log.lines().filter_map(|l| l.splitn(4, ' ').nth(3)).collect();
    assert_eq!(texts, vec!["hello web 10.42.0.7 1 web", "from-volume", "1234", "ro"], "log: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_runtime_instance_adopts_running_containers() {
    let w = World::new();
    let req = w.simple("adopt-me", "exec sleep 1000");
    w.run(&req).await;
    let pid = w.rt.status("adopt-me").await.expect("status").pid.expect("pid");
    let rt2 = World::runtime(&w.dir);
    let list = rt2.list().await.expect("list");
    let me = list.iter().find(|c| c.id == "adopt-me").expect("listed");
    assert_eq!(me.status.state, ContainerState::Running);
    assert_eq!(me.status.pid, Some(pid));
    assert_eq!(me.labels.get("io.kubernetes.container.name").map(String::as_str), Some("c"));
    rt2.kill("adopt-me", libc::SIGKILL).await.expect("kill");
    let st = tokio::time::timeout(Duration::from_secs(20), rt2.wait("adopt-me")).await.expect("in time").expect("wait");
    assert_eq!((st.exit_code, st.reason.as_deref()), (Some(137), Some("Error")));
}

/// A container created and never started (the k3rs that made it stopped before starting
/// it, maybe before recording its pid) is found as Created, and can be removed: the kubelet
/// replaces it with a new attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_created_but_never_started_reads_created_and_can_be_removed() {
    let w = World::new();
    let req = w.simple("unstarted", "echo never");
    w.rt.create(&req).await.expect("create");
    let rt2 = World::runtime(&w.dir);
    assert_eq!(rt2.status("unstarted").await.expect("status").state, ContainerState::Created);
    // As if k3rs died between the shim's answer and writing it down.
    let pid = rt2.status("unstarted").await.expect("status").pid.expect("pid");
    std::fs::remove_file(w.path("containers/unstarted/pid")).expect("forget the pid");
    let listed = rt2.list().await.expect("list");
    let me = listed.iter().find(|c| c.id == "unstarted").expect("listed");
    assert_eq!(me.status.state, ContainerState::Created);
    rt2.remove("unstarted").await.expect("remove");
    assert!(rt2.list().await.expect("list").iter().all(|c| c.id != "unstarted"));
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        // SAFETY: signal 0 only checks that the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the container's init {pid} is still there");
    assert!(!w.log("unstarted").contains("never"), "it never ran");
}

/// The parent role of `shim_survives_sigkill_of_the_process_that_created_it`: create and
/// start a container, say so, and wait to be killed.
async fn act_as_parent(dir: &Path, cgroup_root: &str) {
    let w = World {
        dir: dir.to_path_buf(),
        _tmp: None,
        rt: World::runtime(dir),
        cgroup_root: cgroup_root.into(),
        ids: Default::default(),
    };
    let req = w.simple("orphan", "echo one; sleep 1; echo two; exec sleep 1000");
    w.rt.create(&req).await.expect("create");
    w.rt.start("orphan").await.expect("start");
    println!("PARENT-READY");
    // Never dropped: dropping the world would delete the container this process must orphan.
    let _world = std::mem::ManuallyDrop::new(w);
    tokio::time::sleep(Duration::from_secs(3600)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shim_survives_sigkill_of_the_process_that_created_it() {
    if let Ok(dir) = std::env::var("K3RS_RT_TEST_PARENT_DIR") {
        let cg = std::env::var("K3RS_RT_TEST_CGROUP").unwrap_or_default();
        act_as_parent(Path::new(&dir), &cg).await;
        return;
    }
    let w = World::new();
    w.ids.lock().expect("ids").push("orphan".into());
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args([
            "--exact",
            &crate::common::suite_test("shim_survives_sigkill_of_the_process_that_created_it"),
            "--nocapture",
            "--test-threads=1",
        ])
        .env("K3RS_RT_TEST_PARENT_DIR", &w.dir)
        .env("K3RS_RT_TEST_CGROUP", &w.cgroup_root)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn parent");
    let mut out = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.contains("PARENT-READY") {
        let mut buf = [0u8; 256];
        let n =
            tokio::time::timeout_at(deadline.into(), out.read(&mut buf)).await.expect("parent reports").expect("read");
        assert!(n > 0, "parent exited early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let pid =
        w.rt.status("orphan")
            .await
            .unwrap_or_else(|e| panic!("status: {e}; parent said {seen}"))
            .pid
            .unwrap_or_else(|| panic!("no pid; parent said {seen}"));
    child.start_kill().expect("SIGKILL the parent");
    child.wait().await.expect("reap parent");
    // Output keeps flowing to the log after the parent is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !w.log("orphan").contains("stdout F two") {
        assert!(Instant::now() < deadline, "log stopped: {}", w.log("orphan"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = w.rt.status("orphan").await.expect("status");
    assert_eq!((st.state, st.pid), (ContainerState::Running, Some(pid)));
    w.rt.kill("orphan", libc::SIGKILL).await.expect("kill");
    let st = w.wait_exit("orphan", Duration::from_secs(20)).await;
    assert_eq!(st.exit_code, Some(137));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_feeds_stdin_and_streams_output() {
    use k3rs::kubelet::runtime::AttachRequest;
    let w = World::new();
    let pod = pod_with(json!({
        "name": "c", "image": "busybox", "stdin": true, "stdinOnce": true,
        "command": ["sh", "-c", "read x; echo got $x; read y || echo eof; exit 4"],
    }));
    let req = w.request("attach-me", pod, &EnvSources::default(), &BTreeMap::new());
    w.run(&req).await;
    let mut s =
        w.rt.attach("attach-me", &AttachRequest { stdin: true, stdout: true, stderr: true }).await.expect("attach");
    let mut stdin = s.stdin.take().expect("stdin");
    stdin.write_all(b"hello\n").await.expect("write");
    let mut stdout = s.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), stdout.read(&mut buf))
        .await
        .expect("output in time")
        .expect("read");
    assert_eq!(&buf[..n], b"got hello\n");
    // Closing stdin of a stdinOnce container closes the container's stdin.
    drop(stdin);
    let code = tokio::time::timeout(Duration::from_secs(10), s.exit).await.expect("exit in time").expect("exit");
    assert_eq!(code, 4);
    assert!(w.log("attach-me").contains("stdout F eof"));
}

/// A directory bind-mounted onto itself with private propagation, unmounted on drop.
struct PrivateMount(PathBuf);

impl PrivateMount {
    fn new(dir: PathBuf) -> PrivateMount {
        use nix::mount::{mount, MsFlags};
        std::fs::create_dir_all(&dir).expect("mkdir");
        mount(Some(&dir), &dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).expect("bind");
        mount(None::<&str>, &dir, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>).expect("make private");
        PrivateMount(dir)
    }
}

impl Drop for PrivateMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shim_mounts_the_root_filesystem_where_only_its_container_sees_it() {
    use k3rs::util::mountinfo::is_mount_root;
    let w = World::new();
    let parent = PrivateMount::new(w.path("overlays"));
    let c = parent.0.join("c1");
    for d in ["upper", "work", "rootfs"] {
        std::fs::create_dir_all(c.join(d)).expect("mkdir");
    }
    let plan = k3rs::images::RootfsMount {
        cwd: c.clone(),
        target: c.join("rootfs"),
        data: format!("lowerdir={},upperdir=upper,workdir=work", w.path("rootfs").display()),
        private_parent: parent.0.clone(),
    };
    let mut req = w.simple("private-root", "echo written > /tmp/note; cat /bin/../tmp/note; exec sleep 1000");
    let root =
        oci_spec::runtime::RootBuilder::default().path(plan.target.clone()).readonly(false).build().expect("root");
    req.spec.set_root(Some(root));
    req.rootfs_mount = Some(plan.clone());
    w.run(&req).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !w.log("private-root").contains("written") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(w.log("private-root").contains("written"), "log: {:?}", w.log("private-root"));
    // Not in this (the node's) mount table, but the container's writes land in its upper dir.
    assert!(!is_mount_root(&plan.target).expect("statx"), "the overlay leaked into the node's mount namespace");
    assert_eq!(std::fs::read_to_string(c.join("upper/tmp/note")).expect("upper dir").trim(), "written");
    w.rt.kill("private-root", libc::SIGKILL).await.expect("kill");
    w.wait_exit("private-root", Duration::from_secs(20)).await;
}

/// Removes a test's pod cgroup however the test ends.
struct PodCgroupGuard(String);

impl Drop for PodCgroupGuard {
    fn drop(&mut self) {
        let _ = k3rs::kubelet::runtime::cgroup::remove_cgroup_at(Path::new("/sys/fs/cgroup"), &self.0);
    }
}

#[test]
fn a_pod_cgroup_gets_the_pods_limits_and_goes_with_what_is_below_it() {
    use k3rs::kubelet::runtime::{PodCgroups, SysCgroups};
    use k3rs::kubelet::spec::PodResources;
    let guard = PodCgroupGuard(format!("/k3rs-rt-test-{}-pod", std::process::id()));
    let path = guard.0.trim_start_matches('/').to_string();
    let r =
        PodResources { cpu_shares: Some(512), cpu_quota: Some(50_000), cpu_period: None, memory_limit: Some(64 << 20) };
    SysCgroups.ensure(&guard.0, &r).expect("the pod cgroup");
    let root = Path::new("/sys/fs/cgroup");
    let read = |p: PathBuf| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let v2 = root.join("cgroup.controllers").exists();
    let container = if v2 {
        let dir = root.join(&path);
        assert_eq!(read(dir.join("memory.max")).trim(), "67108864");
        assert_eq!(read(dir.join("cpu.max")).trim(), "50000 100000");
        assert_eq!(read(dir.join("cpu.weight")).trim(), "20");
        dir.join("c1")
    } else {
        assert_eq!(read(root.join("memory").join(&path).join("memory.limit_in_bytes")).trim(), "67108864");
        let cpu = root.join("cpu").join(&path);
        assert_eq!(read(cpu.join("cpu.shares")).trim(), "512");
        assert_eq!(read(cpu.join("cpu.cfs_period_us")).trim(), "100000");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")).trim(), "50000");
        assert!(root.join("pids").join(&path).is_dir());
        root.join("memory").join(&path).join("c1")
    };
    // Ensuring again (a restarted kubelet) changes nothing and fails nothing.
    SysCgroups.ensure(&guard.0, &r).expect("the pod cgroup again");
    // A container's cgroup left below it goes with it.
    std::fs::create_dir(&container).expect("a child cgroup");
    SysCgroups.remove(&guard.0).expect("removing the pod cgroup");
    for c in ["memory", "cpu", "pids", ""] {
        assert!(!root.join(c).join(&path).exists(), "{c}");
    }
}
