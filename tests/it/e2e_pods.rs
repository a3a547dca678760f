//! End to end on the node: `k3rs server` (the real binary, as root) in its own network
//! namespace runs pods as real containers; the real kubectl runs, logs, execs into and
//! deletes them. The test image is built from Debian's busybox-static and dropped into the
//! air-gap directory before the server starts.

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::Cluster;

const IMAGE: &str = "docker.io/library/busybox:1.36";

fn cluster(tag: &str) -> Cluster {
    Cluster::start_with(tag, &[], |data| {
        let drop_dir = data.join("agent/images");
        std::fs::create_dir_all(&drop_dir).unwrap();
        common::busybox::oci_archive(&drop_dir, IMAGE);
    })
}

fn running(c: &Cluster, pod: &str) {
    c.wait_for(&["pod", pod], "{.status.phase}", Duration::from_secs(60), |p| p == "Running");
}

fn apply(c: &Cluster, manifest: &str) {
    c.ok(Path::new("kubectl"), &["apply", "-f", "-"], Some(manifest));
}

#[test]
fn pods_run_log_exec_and_delete() {
    let c = cluster("pods");
    // kubectl run → Running, with an address from the pod CIDR.
    let t0 = Instant::now();
    c.k(&["run", "sleeper", "--image=busybox:1.36", "--", "sleep", "3600"]);
    running(&c, "sleeper");
    eprintln!("kubectl run → Running in {:?}", t0.elapsed());
    let ip = c.k(&["get", "pod", "sleeper", "-o", "jsonpath={.status.podIP}"]);
    assert!(ip.starts_with("10.42."), "pod IP {ip}");
    let wide = c.k(&["get", "pods", "-o", "wide"]);
    assert!(wide.contains("sleeper") && wide.contains("Running") && wide.contains("e2e-node"), "{wide}");

    // exec: output, stdin, exit codes.
    assert_eq!(c.k(&["exec", "sleeper", "--", "echo", "hi"]), "hi\n");
    let out = c.ok(Path::new("kubectl"), &["exec", "-i", "sleeper", "--", "cat"], Some("from stdin\n"));
    assert_eq!(out, "from stdin\n");
    let out = c.kubectl(&["exec", "sleeper", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(c.k(&["exec", "sleeper", "--", "hostname"]), "sleeper\n");
    let resolv = c.k(&["exec", "sleeper", "--", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("nameserver 10.43.0.10") && resolv.contains("search default.svc.cluster.local"),
        "{resolv}"
    );

    // Logs.
    apply(
        &c,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: talker}\nspec:\n  containers:\n  - {name: c, image: 'busybox:1.36', command: [sh, -c, 'for i in 1 2 3; do echo line $i; done; sleep 3600']}\n",
    );
    running(&c, "talker");
    let start = Instant::now();
    loop {
        let logs = c.k(&["logs", "talker"]);
        if logs == "line 1\nline 2\nline 3\n" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "logs: {logs:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(c.k(&["logs", "talker", "--tail=1"]), "line 3\n");
    let ts = c.k(&["logs", "talker", "--timestamps"]);
    assert!(ts.lines().all(|l| l.len() > 30 && l.contains("Z line")), "{ts}");

    // A pod whose namespace holder dies gets a new sandbox, with the same address, and its
    // container starts again in it (upstream's SandboxChanged).
    let uid = c.k(&["get", "pod", "talker", "-o", "jsonpath={.metadata.uid}"]);
    let ip = c.k(&["get", "pod", "talker", "-o", "jsonpath={.status.podIP}"]);
    let sandbox = c.data_dir().join("agent/run/sandboxes").join(&uid);
    let holder = k3rs::kubelet::network::netns::Holder::read(&sandbox).expect("the pod's holder file");
    assert!(holder.alive());
    // SAFETY: kill sends a signal to the holder's PID; no memory is involved.
    unsafe { libc::kill(holder.pid, libc::SIGKILL) };
    c.wait_for(&["pod", "talker"], "{.status.containerStatuses[0].restartCount}", Duration::from_secs(30), |n| {
        n == "1"
    });
    running(&c, "talker");
    assert_eq!(c.k(&["get", "pod", "talker", "-o", "jsonpath={.status.podIP}"]), ip, "the address is kept");
    let again = k3rs::kubelet::network::netns::Holder::read(&sandbox).expect("a new holder");
    assert!(again.alive() && again != holder);
    assert_eq!(c.k(&["exec", "talker", "--", "hostname"]), "talker\n");
    let events =
        c.k(&["get", "events", "--field-selector", "involvedObject.name=talker", "-o", "jsonpath={.items[*].reason}"]);
    assert!(events.contains("SandboxChanged"), "{events}");

    // Graceful deletion: sleep as PID 1 ignores SIGTERM, so the grace period runs out.
    let t0 = Instant::now();
    c.k(&["delete", "pod", "sleeper", "--grace-period=3"]);
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(3 + 5), "delete took {took:?}");
    let gone = c.kubectl(&["get", "pod", "sleeper"]);
    assert!(!gone.status.success());
}

#[test]
fn probes_gate_readiness_and_restart_an_unhealthy_container() {
    let c = cluster("probes");
    apply(
        &c,
        "apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  containers:
  - name: web
    image: 'busybox:1.36'
    command: [sh, -c, 'mkdir -p /www && touch /tmp/healthy && exec httpd -f -p 8080 -h /www']
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1, failureThreshold: 1}
    livenessProbe: {exec: {command: [cat, /tmp/healthy]}, periodSeconds: 1, failureThreshold: 2}
",
    );
    running(&c, "probed");
    let events = |c: &Cluster| {
        c.k(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=probed",
            "-o",
            "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
        ])
    };
    // Nothing at /ready: running, not ready, and upstream's event.
    c.wait_for(&["pod", "probed"], "{.status.conditions[?(@.type==\"Ready\")].reason}", Duration::from_secs(20), |r| {
        r == "ContainersNotReady"
    });
    assert_eq!(c.k(&["get", "pod", "probed", "-o", "jsonpath={.status.containerStatuses[0].ready}"]), "false");
    let start = Instant::now();
    while !events(&c).contains("Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 404") {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", events(&c));
        std::thread::sleep(Duration::from_millis(200));
    }
    // Serving /ready: Ready.
    c.k(&["exec", "probed", "--", "touch", "/www/ready"]);
    c.wait_for(&["pod", "probed"], "{.status.conditions[?(@.type==\"Ready\")].status}", Duration::from_secs(20), |s| {
        s == "True"
    });
    // Unhealthy: two failed liveness probes, then the container is restarted.
    c.k(&["exec", "probed", "--", "rm", "/tmp/healthy"]);
    c.wait_for(&["pod", "probed"], "{.status.containerStatuses[0].restartCount}", Duration::from_secs(60), |n| {
        n == "1"
    });
    let said = events(&c);
    assert!(
        said.contains("Unhealthy: Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory"),
        "{said}"
    );
    assert!(said.contains("Killing: Container web failed liveness probe, will be restarted"), "{said}");
    running(&c, "probed");
}

#[test]
fn post_start_and_pre_stop_hooks_run_in_the_container() {
    let c = cluster("hooks");
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().display().to_string();
    apply(
        &c,
        &format!(
            "apiVersion: v1
kind: Pod
metadata: {{name: hooked}}
spec:
  terminationGracePeriodSeconds: 10
  volumes: [{{name: out, hostPath: {{path: '{dir}'}}}}]
  containers:
  - name: c
    image: 'busybox:1.36'
    command: [sleep, '3600']
    volumeMounts: [{{name: out, mountPath: /out}}]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, 'echo started > /out/post-start']}}}}
      preStop: {{exec: {{command: [sh, -c, 'sleep 1; echo stopping > /out/pre-stop']}}}}
"
        ),
    );
    running(&c, "hooked");
    assert_eq!(std::fs::read_to_string(out.path().join("post-start")).unwrap(), "started\n");
    assert!(!out.path().join("pre-stop").exists());
    // sleep ignores SIGTERM as PID 1: the delete waits for the hook, then the rest of the grace period.
    let t0 = Instant::now();
    c.k(&["delete", "pod", "hooked"]);
    let took = t0.elapsed();
    assert_eq!(std::fs::read_to_string(out.path().join("pre-stop")).unwrap(), "stopping\n");
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(10 + 5), "delete took {took:?}");
}

#[test]
fn kubectl_cp_copies_files_and_directories_both_ways() {
    let c = cluster("cp");
    c.k(&["run", "box", "--image=busybox:1.36", "--", "sleep", "3600"]);
    running(&c, "box");
    let local = tempfile::tempdir().unwrap();
    let tree = local.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("a.txt"), "alpha\n").unwrap();
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(tree.join("sub/blob.bin"), &blob).unwrap();
    // In: kubectl runs `tar xmf -` in the container and streams the archive through exec.
    c.k(&["cp", &tree.display().to_string(), "box:/tmp/tree"]);
    assert_eq!(c.k(&["exec", "box", "--", "cat", "/tmp/tree/a.txt"]), "alpha\n");
    assert_eq!(
        c.k(&["exec", "box", "--", "wc", "-c", "/tmp/tree/sub/blob.bin"]).split_whitespace().next(),
        Some("200000")
    );
    // Out: `tar cf -` in the container; a file and the whole directory.
    c.k(&["exec", "box", "--", "sh", "-c", "echo made-inside > /tmp/tree/new.txt"]);
    let back = local.path().join("back");
    c.k(&["cp", "box:/tmp/tree", &back.display().to_string()]);
    assert_eq!(std::fs::read_to_string(back.join("new.txt")).unwrap(), "made-inside\n");
    assert_eq!(std::fs::read(back.join("sub/blob.bin")).unwrap(), blob);
    let single = local.path().join("one.txt");
    c.k(&["cp", "box:/tmp/tree/a.txt", &single.display().to_string()]);
    assert_eq!(std::fs::read_to_string(&single).unwrap(), "alpha\n");
    // A path that does not exist: tar's error reaches the user (kubectl prints the remote
    // stderr on its stdout) and nothing is written. kubectl itself exits 0 here, against
    // upstream servers too (kubernetes/kubectl#980), so the status is not checked.
    let out = c.kubectl(&["cp", "box:/tmp/nope", &local.path().join("nope").display().to_string()]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("tar: /tmp/nope: No such file or directory"), "{said}");
    assert!(!local.path().join("nope").exists());
}

#[test]
fn containers_of_a_pod_share_localhost_and_init_containers_run_first() {
    let c = cluster("shared");
    apply(
        &c,
        "apiVersion: v1
kind: Pod
metadata: {name: duo}
spec:
  initContainers:
  - {name: fill, image: 'busybox:1.36', command: [sh, -c, 'echo prepared > /work/flag'], volumeMounts: [{name: work, mountPath: /work}]}
  containers:
  - {name: server, image: 'busybox:1.36', command: [sh, -c, 'while true; do echo hello-from-server | nc -l -p 8080; done']}
  - {name: reader, image: 'busybox:1.36', command: [sh, -c, 'cat /work/flag; sleep 3600'], volumeMounts: [{name: work, mountPath: /work}]}
  volumes:
  - {name: work, emptyDir: {}}
",
    );
    running(&c, "duo");
    let start = Instant::now();
    loop {
        let out = c.kubectl(&["exec", "duo", "-c", "reader", "--", "sh", "-c", "nc 127.0.0.1 8080 </dev/null"]);
        if String::from_utf8_lossy(&out.stdout).contains("hello-from-server") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no answer on localhost: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(c.k(&["logs", "duo", "-c", "reader"]), "prepared\n");
    let init = c.k(&["get", "pod", "duo", "-o", "jsonpath={.status.initContainerStatuses[0].state.terminated.reason}"]);
    assert_eq!(init, "Completed");
}

#[test]
fn failures_show_as_upstream_shows_them() {
    let c = cluster("fail");
    apply(
        &c,
        "apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - {name: c, image: 'busybox:1.36', command: [sh, -c, 'exit 1']}
---
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: 'busybox:1.36'
    command: [sh, -c, 'dd if=/dev/zero of=/dev/null bs=96M count=1']
    resources: {limits: {memory: 32Mi}}
---
apiVersion: v1
kind: Pod
metadata: {name: needy}
spec:
  containers:
  - name: c
    image: 'busybox:1.36'
    command: [sh, -c, 'echo $GREETING; sleep 3600']
    env: [{name: GREETING, valueFrom: {configMapKeyRef: {name: later, key: greeting}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: ghost}
spec:
  containers:
  - {name: c, image: 'example.invalid/nothing:1', imagePullPolicy: Never}
",
    );
    c.wait_for(
        &["pod", "crasher"],
        "{.status.containerStatuses[0].state.waiting.reason}",
        Duration::from_secs(60),
        |r| r == "CrashLoopBackOff",
    );
    let restarts: u32 =
        c.k(&["get", "pod", "crasher", "-o", "jsonpath={.status.containerStatuses[0].restartCount}"]).parse().unwrap();
    assert!(restarts >= 1, "restartCount {restarts}");
    let code =
        c.k(&["get", "pod", "crasher", "-o", "jsonpath={.status.containerStatuses[0].lastState.terminated.exitCode}"]);
    assert_eq!(code, "1");
    let reason = c.wait_for(
        &["pod", "hog"],
        "{.status.containerStatuses[0].state.terminated.reason}",
        Duration::from_secs(60),
        |r| !r.is_empty(),
    );
    assert_eq!(reason, "OOMKilled");
    assert_eq!(
        c.k(&["get", "pod", "hog", "-o", "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}"]),
        "137"
    );
    c.wait_for(
        &["pod", "ghost"],
        "{.status.containerStatuses[0].state.waiting.reason}",
        Duration::from_secs(30),
        |r| r == "ErrImageNeverPull",
    );
    let waiting = c.wait_for(
        &["pod", "needy"],
        "{.status.containerStatuses[0].state.waiting.reason}",
        Duration::from_secs(30),
        |r| !r.is_empty(),
    );
    assert_eq!(waiting, "CreateContainerConfigError");
    let msg = c.k(&["get", "pod", "needy", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.message}"]);
    assert_eq!(msg, "configmap \"later\" not found");
    c.k(&["create", "configmap", "later", "--from-literal=greeting=finally"]);
    running(&c, "needy");
    let start = Instant::now();
    while c.k(&["logs", "needy"]) != "finally\n" {
        assert!(start.elapsed() < Duration::from_secs(10), "the late configmap's value is not in the environment");
        std::thread::sleep(Duration::from_millis(200));
    }
    let events = c.k(&["get", "events", "--field-selector", "involvedObject.name=crasher"]);
    assert!(events.contains("BackOff") && events.contains("Started"), "{events}");
}

/// The host pid of the process running `marker` (a unique command line).
fn pid_of(marker: &str) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.trim() == marker {
            return Some(pid);
        }
    }
    None
}

#[test]
fn containers_outlive_k3rs_and_are_adopted_after_restart() {
    let mut c = cluster("survive");
    apply(
        &c,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: steady}\nspec:\n  containers:\n  - {name: c, image: 'busybox:1.36', command: [sleep, '3671']}\n  - {name: counter, image: 'busybox:1.36', command: [sh, -c, 'i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done']}\n",
    );
    running(&c, "steady");
    let pid = pid_of("sleep 3671").expect("the container's process on the host");
    let cycles: usize = std::env::var("K3RS_E2E_RESTART_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    for cycle in 0..cycles {
        c.kill();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(pid_of("sleep 3671"), Some(pid), "cycle {cycle}: the container died with k3rs");
        c.launch();
        running(&c, "steady");
        let restarts = c.k(&["get", "pod", "steady", "-o", "jsonpath={.status.containerStatuses[*].restartCount}"]);
        assert_eq!(restarts, "0 0", "cycle {cycle}: containers were restarted");
    }
    assert_eq!(pid_of("sleep 3671"), Some(pid));
    // The log kept growing while k3rs was down, and following it still works.
    let mut follow =
        c.ns.command("kubectl")
            .arg("--kubeconfig")
            .arg(c.kubeconfig())
            .args(["logs", "-f", "steady", "-c", "counter", "--tail=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let mut out = follow.stdout.take().unwrap();
    let mut buf = Vec::new();
    let start = Instant::now();
    while buf.iter().filter(|b| **b == b'\n').count() < 3 && start.elapsed() < Duration::from_secs(10) {
        let mut chunk = [0u8; 256];
        use std::io::Read;
        let n = out.read(&mut chunk).unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let text = String::from_utf8_lossy(&buf);
    let ticks: Vec<u32> = text.lines().filter_map(|l| l.strip_prefix("tick ")).filter_map(|n| n.parse().ok()).collect();
    assert!(ticks.len() >= 3 && ticks.windows(2).all(|w| w[1] == w[0] + 1), "followed: {text:?}");
}

#[test]
fn an_archive_dropped_while_running_becomes_usable() {
    let c = Cluster::start_with("airgap", &[], |_| {});
    let drop_dir = c.data_dir().join("agent/images");
    std::fs::create_dir_all(&drop_dir).unwrap();
    // Written elsewhere, then moved in: the importer never sees half a file.
    let staging = c.dir.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let archive = common::busybox::oci_archive(&staging, "docker.io/library/busybox:airgap");
    std::fs::rename(&archive, drop_dir.join("busybox-airgap.tar")).unwrap();
    c.k(&["run", "late", "--image=busybox:airgap", "--image-pull-policy=IfNotPresent", "--", "sleep", "3600"]);
    running(&c, "late");
}

#[test]
fn a_pod_pulls_its_image_from_a_local_registry() {
    let c = Cluster::start("pull");
    // Debian's docker-registry inside the node's network namespace, on its loopback.
    let dir = c.dir.path().join("registry");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:5000\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    let mut registry =
        c.ns.command("docker-registry")
            .arg("serve")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(&mut registry);
    let archive = common::busybox::oci_archive(&dir, "docker.io/library/busybox:1.36");
    let start = Instant::now();
    loop {
        let out =
            c.ns.command("skopeo")
                .args(["copy", "--quiet", "--dest-tls-verify=false"])
                .arg(format!("oci-archive:{}", archive.display()))
                .arg("docker://127.0.0.1:5000/tools/busybox:pulled")
                .output()
                .expect("run skopeo");
        if out.status.success() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "push failed: {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
    c.k(&["run", "pulled", "--image=127.0.0.1:5000/tools/busybox:pulled", "--", "sleep", "3600"]);
    running(&c, "pulled");
    let id = c.k(&["get", "pod", "pulled", "-o", "jsonpath={.status.containerStatuses[0].imageID}"]);
    assert!(id.starts_with("127.0.0.1:5000/tools/busybox@sha256:"), "imageID {id}");
    let events = c.k(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=pulled",
        "-o",
        "jsonpath={range .items[*]}{.reason} {end}",
    ]);
    assert!(events.contains("Pulling") && events.contains("Pulled"), "{events}");
}

#[test]
fn static_pods_run_from_the_manifest_directory_with_a_mirror() {
    let c = Cluster::start_with("static", &[], |data| {
        let images = data.join("agent/images");
        std::fs::create_dir_all(&images).unwrap();
        common::busybox::oci_archive(&images, IMAGE);
        let manifests = data.join("agent/pod-manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::write(
            manifests.join("web.yaml"),
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: kube-system}\nspec:\n  containers: [{name: c, image: 'busybox:1.36', command: [sh, -c, 'echo static-hello; while sleep 1; do echo tick; done & exec sleep 3633']}]\n",
        )
        .unwrap();
    });
    c.wait_for(&["pod", "-n", "kube-system", "web-e2e-node"], "{.status.phase}", Duration::from_secs(60), |p| {
        p == "Running"
    });
    let ann = c.k(&[
        "get",
        "pod",
        "-n",
        "kube-system",
        "web-e2e-node",
        "-o",
        "jsonpath={.metadata.annotations.kubernetes\\.io/config\\.mirror}",
    ]);
    assert!(!ann.is_empty());
    // exec, logs and attach reach the static pod through its mirror, as upstream's kubelet
    // resolves a mirror pod to the static pod it stands for.
    let said = c.k(&["exec", "-n", "kube-system", "web-e2e-node", "--", "echo", "exec-ok"]);
    assert_eq!(said.trim(), "exec-ok");
    let logs = c.k(&["logs", "-n", "kube-system", "web-e2e-node"]);
    assert!(logs.starts_with("static-hello\n"), "{logs}");
    let attached =
        c.ns.command("timeout")
            .args(["4", "kubectl", "--kubeconfig"])
            .arg(c.kubeconfig())
            .args(["attach", "-n", "kube-system", "web-e2e-node", "-c", "c"])
            .env("KUBECACHEDIR", c.data_dir().join("attach-cache"))
            .output()
            .unwrap();
    let (out, err) = (String::from_utf8_lossy(&attached.stdout), String::from_utf8_lossy(&attached.stderr));
    assert!(out.contains("tick"), "attach printed {out:?}, {err}");
    // Deleting the mirror does not stop the pod: the node puts the mirror back.
    let old = c.k(&["get", "pod", "-n", "kube-system", "web-e2e-node", "-o", "jsonpath={.metadata.uid}"]);
    let pid = pid_of("sleep 3633");
    assert!(pid.is_some());
    c.k(&["delete", "pod", "-n", "kube-system", "web-e2e-node", "--wait=false"]);
    c.wait_for(&["pod", "-n", "kube-system", "web-e2e-node"], "{.metadata.uid}", Duration::from_secs(30), |u| {
        !u.is_empty() && u != old
    });
    c.wait_for(&["pod", "-n", "kube-system", "web-e2e-node"], "{.status.phase}", Duration::from_secs(30), |p| {
        p == "Running"
    });
    assert_eq!(pid_of("sleep 3633"), pid);
    // Removing the file stops it and removes the mirror.
    std::fs::remove_file(c.data_dir().join("agent/pod-manifests/web.yaml")).unwrap();
    let start = Instant::now();
    while c.kubectl(&["get", "pod", "-n", "kube-system", "web-e2e-node"]).status.success() {
        assert!(start.elapsed() < Duration::from_secs(30), "the mirror pod stayed");
        std::thread::sleep(Duration::from_millis(200));
    }
}
