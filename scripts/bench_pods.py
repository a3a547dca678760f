#!/usr/bin/env python3
"""`scripts/bench.sh pods`: 100 busybox pods on a real k3rs node.

Runs the release `k3rs server` as root inside a network namespace this script makes (a veth
pair inside it is the node's interface), with a busybox image (built here from Debian's
busybox-static as an OCI archive) in the air-gap directory. Then, through the official
Python client from inside that namespace:

  - creates 10 pods one at a time, each after the previous is Running: create -> Running of
    a pod on an idle node (the pipeline's own latency, without queueing behind other pods);
  - creates 100 pods at once (16 client threads) and watches them: create -> Running per pod
    (from the start of its create call to the watch event showing it Running), p50/p99, and
    the time until all are Running;

The client is kept light so that it measures the node, not itself: watch events are read as
JSON lines and responses are not turned into model objects (the Python client's models cost
more CPU per event than the server spends on it).
  - k3rs' RSS with the 100 pods running, and the RSS (and PSS) of each container's shim;
  - deletes them all at once (grace period 0 is not used: the kubelet stops each container
    and completes the delete) and the time until all are gone.

Targets are printed beside the figures; a missed target is not a failure. Environment:
K3RS_BIN (default target/release/k3rs), BENCH_PODS (default 100), BENCH_SERVER_LOG (the
server's RUST_LOG, default warn; `k3rs::kubelet::timing=debug` logs each pod's stages),
BENCH_PERF (a file: `perf record -a -g` of the 100-pod burst is written there).
"""

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

PODS = int(os.environ.get("BENCH_PODS", "100"))
IMAGE = "docker.io/library/busybox:bench"
APPLETS = ["sh", "sleep", "echo", "cat", "true"]


def blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def busybox_archive(path, image=IMAGE):
    """An OCI image-layout tar with one layer: /bin/busybox and applet symlinks, named `image`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for d in ["bin", "tmp", "etc", "proc", "sys", "dev"]:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            t.addfile(info)
        t.add("/bin/busybox", arcname="bin/busybox")
        for a in APPLETS:
            info = tarfile.TarInfo("bin/" + a)
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            t.addfile(info)
    layer = buf.getvalue()
    with tempfile.TemporaryDirectory() as layout:
        os.makedirs(os.path.join(layout, "blobs", "sha256"))
        ldesc = blob(layout, layer)
        config = json.dumps({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [ldesc["digest"]]},
        }).encode()
        cdesc = blob(layout, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": dict(cdesc, mediaType="application/vnd.oci.image.config.v1+json"),
            "layers": [dict(ldesc, mediaType="application/vnd.oci.image.layer.v1.tar")],
        }).encode()
        mdesc = blob(layout, manifest)
        index = {"schemaVersion": 2, "manifests": [dict(mdesc, mediaType="application/vnd.oci.image.manifest.v1+json",
                 annotations={"io.containerd.image.name": image, "org.opencontainers.image.ref.name": image.rsplit(":", 1)[1]})]}
        with open(os.path.join(layout, "index.json"), "w") as f:
            json.dump(index, f)
        with open(os.path.join(layout, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        with tarfile.open(path, "w") as t:
            for name in ["oci-layout", "index.json", "blobs"]:
                t.add(os.path.join(layout, name), arcname=name)


def rss_kib(pid, field="VmRSS"):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def shims():
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and (argv[0].endswith(b"k3rs") or argv[0].endswith(b"k3rs-shim")) and argv[1] == b"shim":
            out.append(int(d))
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def verdict(ok):
    return "met" if ok else "MISSED"


def inner(kubeconfig, server_pid):
    from kubernetes import client, config

    config.load_kube_config(config_file=kubeconfig)
    api = client.CoreV1Api()
    # Wait for the node.
    deadline = time.time() + 60
    while time.time() < deadline:
        nodes = api.list_node().items
        if nodes and any(c.type == "Ready" and c.status == "True" for c in nodes[0].status.conditions or []):
            break
        time.sleep(0.2)
    names = [f"bench-{i}" for i in range(PODS)]
    solo = [f"solo-{i}" for i in range(10)]
    started, running = {}, {}
    done = threading.Event()
    expect = set()
    rv = api.list_namespaced_pod("default").metadata.resource_version

    def body(n):
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n},
                "spec": {"terminationGracePeriodSeconds": 2,
                         "containers": [{"name": "c", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                                         "command": ["sleep", "3600"]}]}}

    def events(rv):
        """Watch events of pods in `default` as (type, object) dicts, without model objects."""
        resp = api.list_namespaced_pod("default", watch=True, resource_version=rv, timeout_seconds=300,
                                       allow_watch_bookmarks=False, _preload_content=False)
        buf = b""
        for chunk in resp.stream(65536, decode_content=False):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if line.strip():
                    yield json.loads(line)

    def watcher():
        for ev in events(rv):
            p = ev["object"]
            name = p["metadata"]["name"]
            if p.get("status", {}).get("phase") == "Running" and name not in running:
                running[name] = time.time()
                if expect and expect <= running.keys():
                    done.set()

    wt = threading.Thread(target=watcher, daemon=True)
    wt.start()
    time.sleep(0.3)

    # One at a time on an idle node.
    for n in solo:
        expect.clear()
        expect.add(n)
        done.clear()
        started[n] = time.time()
        api.create_namespaced_pod("default", body(n), _preload_content=False)
        done.wait(30)
    solo_lat = [(running[n] - started[n]) * 1000 for n in solo if n in running]
    for n in solo:
        api.delete_namespaced_pod(n, "default", grace_period_seconds=0, _preload_content=False)
    print(f"one pod at a time ({len(solo)} pods): create->Running p50 {pct(solo_lat, 50):.0f} ms, "
          f"max {max(solo_lat):.0f} ms" if solo_lat else "one pod at a time: none Running")
    time.sleep(3)

    expect.clear()
    expect.update(names)
    done.clear()
    perf = None
    if os.environ.get("BENCH_PERF"):
        # A system-wide profile of the burst alone, for `perf report -i $BENCH_PERF`.
        perf = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "997", "-o", os.environ["BENCH_PERF"]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
    t0 = time.time()

    def create(chunk):
        for n in chunk:
            started[n] = time.time()
            api.create_namespaced_pod("default", body(n), _preload_content=False)

    threads = [threading.Thread(target=create, args=(names[i::16],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = time.time() - t0
    ok = done.wait(120)
    all_running = time.time() - t0
    if perf:
        perf.send_signal(signal.SIGINT)
        perf.wait()
    lat = [(running[n] - started[n]) * 1000 for n in names if n in running]
    n_running = sum(1 for n in names if n in running)
    print(f"pods: {PODS} created at once (the creates took {created:.2f} s), {n_running} Running")
    if lat:
        p50, p99 = pct(lat, 50), pct(lat, 99)
        print(f"  create->Running p50 {p50:.0f} ms (target <= 100 ms: {verdict(p50 <= 100)}), "
              f"p99 {p99:.0f} ms (target <= 300 ms: {verdict(p99 <= 300)})")
    print(f"  all Running after {all_running:.2f} s (target <= 5 s: {verdict(ok and all_running <= 5)})")
    time.sleep(2)
    k_rss = rss_kib(server_pid)
    s = shims()
    s_rss = [rss_kib(p) for p in s]
    s_pss = [pss_kib(p) for p in s]
    print(f"  k3rs RSS with {n_running} pods: {k_rss / 1024:.1f} MiB (target <= 100 MB: {verdict(k_rss * 1024 <= 100e6)})")
    if s_rss:
        print(f"  shims: {len(s)}; RSS per shim median {pct(s_rss, 50)} KiB, max {max(s_rss)} KiB "
              f"(target <= 1 MB: {verdict(pct(s_rss, 50) <= 1024)}); PSS median {pct(s_pss, 50)} KiB")

    gone = set()
    all_gone = threading.Event()
    rv = api.list_namespaced_pod("default").metadata.resource_version

    def delete_watcher():
        for ev in events(rv):
            if ev["type"] == "DELETED":
                gone.add(ev["object"]["metadata"]["name"])
                if set(names) <= gone:
                    all_gone.set()
                    return

    dw = threading.Thread(target=delete_watcher, daemon=True)
    dw.start()
    time.sleep(0.3)
    t0 = time.time()

    def delete(chunk):
        for n in chunk:
            api.delete_namespaced_pod(n, "default", _preload_content=False)

    threads = [threading.Thread(target=delete, args=(names[i::16],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_gone.wait(120)
    print(f"  all {len(gone & set(names))} gone {time.time() - t0:.2f} s after the deletes began "
          f"(sleep as PID 1 ignores SIGTERM: each waits out its 2 s grace period)")
    return 0 if n_running == PODS and set(names) <= gone else 1


def main(script=None, images=(IMAGE,)):
    """Runs `script --inner <kubeconfig> <server pid>` (this file by default) inside the
    network namespace of a release k3rs node that has `images` in its air-gap directory."""
    if script is None and len(sys.argv) > 1 and sys.argv[1] == "--inner":
        sys.exit(inner(sys.argv[2], int(sys.argv[3])))
    script = script or __file__
    if os.geteuid() != 0:
        sys.exit(f"{os.path.basename(script)} must run as root (it runs a node)")
    k3rs = os.path.abspath(os.environ.get("K3RS_BIN", "target/release/k3rs"))
    ns = f"k3rs-bench-{os.getpid()}"
    work = tempfile.mkdtemp(prefix="k3rs-bench-pods-")
    data = os.path.join(work, "data")
    os.makedirs(os.path.join(data, "agent", "images"))
    for i, image in enumerate(images):
        busybox_archive(os.path.join(data, "agent", "images", f"busybox-{i}.tar"), image)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    server = None
    try:
        for args in (["link", "set", "lo", "up"], ["link", "add", "k3rs-n0", "type", "veth", "peer", "name", "k3rs-n1"],
                     ["addr", "add", "192.168.78.1/24", "dev", "k3rs-n0"], ["link", "set", "k3rs-n0", "up"],
                     ["link", "set", "k3rs-n1", "up"]):
            subprocess.run(["ip", "-n", ns] + args, check=True)
        kubeconfig = os.path.join(work, "kubeconfig")
        log = open(os.path.join(work, "server.log"), "w")
        server = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns}", "--", k3rs, "server", "--data-dir", data,
                                   "--write-kubeconfig", kubeconfig, "--node-ip", "192.168.78.1", "--node-name", "bench"],
                                  stdout=subprocess.DEVNULL, stderr=log, env=dict(os.environ, RUST_LOG=os.environ.get("BENCH_SERVER_LOG", "warn")))
        deadline = time.time() + 30
        while not os.path.exists(kubeconfig) and time.time() < deadline:
            time.sleep(0.05)
        code = subprocess.run(["nsenter", f"--net=/run/netns/{ns}", "--", sys.executable, os.path.abspath(script),
                               "--inner", kubeconfig, str(server.pid)]).returncode
        if code != 0:
            print(f"bench failed; server log: {os.path.join(work, 'server.log')}")
        if os.environ.get("BENCH_SERVER_LOG"):
            shutil.copy(os.path.join(work, "server.log"), "/tmp/k3rs-bench-server.log")
            print("server log: /tmp/k3rs-bench-server.log")
        return code
    finally:
        if server:
            server.send_signal(signal.SIGKILL)
            server.wait()
        # Whatever is left of the node: container processes, mounts under the data dir.
        for d in os.listdir(os.path.join(data, "agent", "containers")) if os.path.isdir(os.path.join(data, "agent", "containers")) else []:
            try:
                cfg = json.load(open(os.path.join(data, "agent", "containers", d, "config.json")))
                path = cfg.get("linux", {}).get("cgroupsPath", "").lstrip("/")
                for ctl in ("pids", "memory", "freezer"):
                    procs = os.path.join("/sys/fs/cgroup", ctl, path, "cgroup.procs")
                    if os.path.exists(procs):
                        for pid in open(procs).read().split():
                            os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        # The pods' namespace holders: `<sandbox>/holder` is "<pid> <start time>".
        sandboxes = os.path.join(data, "agent", "run", "sandboxes")
        for d in os.listdir(sandboxes) if os.path.isdir(sandboxes) else []:
            try:
                pid, start = open(os.path.join(sandboxes, d, "holder")).read().split()
                stat = open(f"/proc/{pid}/stat").read()
                if stat[stat.rindex(")") + 2:].split()[19] == start:
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        time.sleep(0.3)
        with open("/proc/self/mountinfo") as f:
            points = [l.split()[4] for l in f if l.split()[4].startswith(work)]
        for p in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", p], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
