#!/usr/bin/env python3
"""`scripts/bench.sh controllers`: the workload controllers on a real k3rs node.

Runs the release `k3rs server` as root in a network namespace (as bench_pods.py does, whose
node set-up this reuses) with two tags of a busybox image, and through the official Python
client from inside that namespace measures:

  (d) the controllers' own share: a Deployment of 100 replicas whose pods no node can take
      (a nodeSelector nothing matches) created -> its 100 Pod objects exist;
  (a) a Deployment of 100 replicas created -> all 100 Available, and per pod create -> Ready
      (first watch event of the pod to the event showing Ready=True) p50/p99;
  (b) a rolling update of those 100 (image changed, maxSurge 25 %) -> complete;
  (c) 100 Deployments x 1 replica created at once -> all Available;
  (e) k3rs' RSS with the pods running, and its CPU seconds per pod over the run.

Targets are printed beside the figures; a missed target is not a failure. Environment:
K3RS_BIN (default target/release/k3rs), BENCH_SERVER_LOG (the server's RUST_LOG).
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_pods  # noqa: E402

IMAGES = ("docker.io/library/busybox:bench", "docker.io/library/busybox:bench2")
REPLICAS = 100
NS = "default"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def deployment(name, replicas, image, node_selector=None):
    spec = {
        "terminationGracePeriodSeconds": 2,
        "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", 'trap "exit 0" TERM; sleep 3600 & wait']}],
    }
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def watch_lines(call, **kw):
    """Watch events as dicts (no model objects: they would cost more than the server)."""
    resp = call(NS, watch=True, timeout_seconds=600, _preload_content=False, **kw)
    buf = b""
    for chunk in resp.stream(65536, decode_content=False):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


def complete(d, replicas):
    s = d.get("status") or {}
    return (s.get("observedGeneration", 0) >= d["metadata"].get("generation", 0)
            and s.get("updatedReplicas") == replicas and s.get("replicas") == replicas
            and s.get("availableReplicas") == replicas)


def inner(kubeconfig, server_pid):
    from kubernetes import client, config

    config.load_kube_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(), client.AppsV1Api()
    deadline = time.time() + 60
    while time.time() < deadline:
        nodes = core.list_node().items
        if nodes and any(c.type == "Ready" and c.status == "True" for c in nodes[0].status.conditions or []):
            break
        time.sleep(0.2)
    cpu0 = cpu_seconds(server_pid)
    verdict = bench_pods.verdict

    # Pod events: first seen and Ready, by name.
    seen, ready, gone = {}, {}, set()
    lock = threading.Condition()
    rv = core.list_namespaced_pod(NS).metadata.resource_version

    def pod_watcher():
        for ev in watch_lines(core.list_namespaced_pod, resource_version=rv, allow_watch_bookmarks=False):
            p = ev["object"]
            name = p["metadata"]["name"]
            now = time.time()
            with lock:
                if ev["type"] == "DELETED":
                    gone.add(name)
                seen.setdefault(name, now)
                conds = (p.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                    ready.setdefault(name, now)
                lock.notify_all()

    deployments = {}
    drv = apps.list_namespaced_deployment(NS).metadata.resource_version

    def deployment_watcher():
        for ev in watch_lines(apps.list_namespaced_deployment, resource_version=drv, allow_watch_bookmarks=False):
            d = ev["object"]
            with lock:
                deployments[d["metadata"]["name"]] = d
                lock.notify_all()

    for f in (pod_watcher, deployment_watcher):
        threading.Thread(target=f, daemon=True).start()
    time.sleep(0.3)

    def wait(pred, timeout):
        end = time.time() + timeout
        with lock:
            while not pred():
                left = end - time.time()
                if left <= 0:
                    return False
                lock.wait(left)
        return True

    def prefix(p):
        return lambda: [n for n in seen if n.startswith(p)]

    # (d) The controllers alone: pods that no node takes.
    t0 = time.time()
    apps.create_namespaced_deployment(NS, deployment("unplaced", REPLICAS, IMAGES[0], {"bench": "nowhere"}),
                                      _preload_content=False)
    ok = wait(lambda: len(prefix("unplaced-")()) >= REPLICAS, 60)
    d_ms = (time.time() - t0) * 1000
    print(f"(d) Deployment created -> its {REPLICAS} Pod objects exist: {d_ms:.0f} ms "
          f"(target <= 300 ms: {verdict(ok and d_ms <= 300)})")
    apps.delete_namespaced_deployment("unplaced", NS, propagation_policy="Background", _preload_content=False)
    wait(lambda: False, 3)

    # (a) 100 replicas to Available.
    t0 = time.time()
    apps.create_namespaced_deployment(NS, deployment("web", REPLICAS, IMAGES[0]), _preload_content=False)
    ok = wait(lambda: "web" in deployments and complete(deployments["web"], REPLICAS), 120)
    a_s = time.time() - t0
    with lock:
        lat = [(ready[n] - seen[n]) * 1000 for n in seen if n.startswith("web-") and n in ready]
    print(f"(a) Deployment of {REPLICAS} created -> all Available: {a_s:.2f} s (target <= 4 s: {verdict(ok and a_s <= 4)})")
    if lat:
        print(f"    pod create -> Ready p50 {bench_pods.pct(lat, 50):.0f} ms, p99 {bench_pods.pct(lat, 99):.0f} ms")
    time.sleep(1)
    rss = bench_pods.rss_kib(server_pid)
    print(f"(e) k3rs RSS with {REPLICAS} pods: {rss / 1024:.1f} MiB (target <= 128 MiB: {verdict(rss <= 128 * 1024)})")

    # (b) Rolling update.
    t0 = time.time()
    apps.patch_namespaced_deployment("web", NS, {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": IMAGES[1]}]}}}})
    ok = wait(lambda: complete(deployments["web"], REPLICAS)
              and deployments["web"]["spec"]["template"]["spec"]["containers"][0]["image"] == IMAGES[1], 180)
    b_s = time.time() - t0
    print(f"(b) rolling update of {REPLICAS} (maxSurge 25 %) -> complete: {b_s:.2f} s (target <= 10 s: {verdict(ok and b_s <= 10)})")
    apps.delete_namespaced_deployment("web", NS, propagation_policy="Background", _preload_content=False)
    # (c) starts on an empty node: the old pods hold their room until they are gone.
    wait(lambda: all(n in gone for n in seen if n.startswith("web-") or n.startswith("unplaced-")), 120)

    # (c) 100 Deployments of 1.
    names = [f"one-{i}" for i in range(REPLICAS)]
    t0 = time.time()

    def create(chunk):
        for n in chunk:
            apps.create_namespaced_deployment(NS, deployment(n, 1, IMAGES[0]), _preload_content=False)

    threads = [threading.Thread(target=create, args=(names[i::16],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ok = wait(lambda: all(n in deployments and complete(deployments[n], 1) for n in names), 120)
    c_s = time.time() - t0
    print(f"(c) {REPLICAS} Deployments x 1 replica -> all Available: {c_s:.2f} s (target <= 5 s: {verdict(ok and c_s <= 5)})")

    cpu = cpu_seconds(server_pid) - cpu0
    with lock:
        pods = len(seen)
    rss = bench_pods.rss_kib(server_pid)
    print(f"(e) k3rs RSS at the end: {rss / 1024:.1f} MiB; CPU {cpu:.1f} s for {pods} pods "
          f"({cpu / max(pods, 1) * 1000:.0f} ms per pod)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--inner":
        sys.exit(inner(sys.argv[2], int(sys.argv[3])))
    sys.exit(bench_pods.main(os.path.abspath(__file__), IMAGES))
