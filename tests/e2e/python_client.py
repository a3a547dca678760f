"""The official Kubernetes Python client against k3rs: list namespaces, create a
ConfigMap, and watch it change. Run by tests/it/e2e_kubectl.rs inside the test's network
namespace with KUBECONFIG set; exits non-zero with a message on any mismatch."""
import sys
import threading

from kubernetes import client, config, watch

config.load_kube_config()
v1 = client.CoreV1Api()

names = [ns.metadata.name for ns in v1.list_namespace().items]
for want in ("default", "kube-system", "kube-public", "kube-node-lease"):
    if want not in names:
        sys.exit(f"namespace {want} missing from {names}")

cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"from": "python"}), data={"k": "v1"})
created = v1.create_namespaced_config_map("default", cm)
rv = created.metadata.resource_version

seen = []
def watch_it():
    w = watch.Watch()
    for ev in w.stream(v1.list_namespaced_config_map, "default", label_selector="from=python",
                       resource_version=rv, timeout_seconds=20):
        seen.append((ev["type"], ev["object"].data.get("k")))
        if ev["type"] == "MODIFIED":
            w.stop()

t = threading.Thread(target=watch_it)
t.start()
patched = v1.patch_namespaced_config_map("py-cm", "default", {"data": {"k": "v2"}})
t.join(30)
if ("MODIFIED", "v2") not in seen:
    sys.exit(f"watch did not see the change: {seen}")
got = v1.read_namespaced_config_map("py-cm", "default")
if got.data["k"] != "v2" or got.metadata.uid != created.metadata.uid:
    sys.exit(f"unexpected object after patch: {got}")
v1.delete_namespaced_config_map("py-cm", "default")
print("python client: ok")
