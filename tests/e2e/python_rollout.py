"""The official Kubernetes Python client watching a Deployment roll out on k3rs: the
objects decode into the client's models, and the Progressing and Available conditions go
through upstream's transitions (NewReplicaSetCreated -> ReplicaSetUpdated ->
NewReplicaSetAvailable; MinimumReplicasUnavailable -> MinimumReplicasAvailable), again for an
image update. Run by tests/it/e2e_workloads.rs inside the test's network namespace with
KUBECONFIG set; exits non-zero with a message on any mismatch."""
import sys
import threading

from kubernetes import client, config, watch

config.load_kube_config()
apps = client.AppsV1Api()

NAME = "pyroll"
body = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME},
    "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": NAME}},
        "template": {"metadata": {"labels": {"app": NAME}}, "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{"name": "main", "image": "busybox:1.36",
                            "command": ["sh", "-c", 'trap "exit 0" TERM; sleep 3600 & wait']}]}},
    },
}

ORDER = ["NewReplicaSetCreated", "FoundNewReplicaSet", "ReplicaSetUpdated", "NewReplicaSetAvailable"]


def observe(rv, until_generation, out):
    """Records (Progressing reason, Available reason) each time either changes, until the
    rollout of `until_generation` is complete."""
    w = watch.Watch()
    last = None
    for ev in w.stream(apps.list_namespaced_deployment, "default", field_selector=f"metadata.name={NAME}",
                       resource_version=rv, timeout_seconds=120):
        d = ev["object"]
        if not isinstance(d, client.V1Deployment):
            sys.exit(f"the watch did not decode into V1Deployment: {type(d)}")
        status = d.status or client.V1DeploymentStatus()
        conds = {c.type: c for c in (status.conditions or [])}
        now = (conds["Progressing"].reason if "Progressing" in conds else None,
               conds["Available"].reason if "Available" in conds else None)
        if now != last:
            out.append(now)
            last = now
        if (d.metadata.generation == until_generation and (status.observed_generation or 0) >= until_generation
                and now == ("NewReplicaSetAvailable", "MinimumReplicasAvailable")):
            w.stop()


def check(seen, first, what):
    progressing = [p for p, _ in seen if p]
    if what == "update" and progressing[:1] == ["NewReplicaSetAvailable"]:
        # Where the previous rollout left it.
        progressing = progressing[1:]
    if not progressing or progressing[0] not in first or progressing[-1] != "NewReplicaSetAvailable":
        sys.exit(f"{what}: Progressing went {progressing}")
    ranks = [ORDER.index(p) for p in progressing if p in ORDER]
    if len(ranks) != len(progressing) or ranks != sorted(ranks):
        sys.exit(f"{what}: Progressing out of upstream's order: {progressing}")
    available = [a for _, a in seen if a]
    if available[-1] != "MinimumReplicasAvailable":
        sys.exit(f"{what}: Available went {available}")


rv = apps.list_namespaced_deployment("default").metadata.resource_version
seen = []
t = threading.Thread(target=observe, args=(rv, 1, seen))
t.start()
created = apps.create_namespaced_deployment("default", body)
t.join(150)
check(seen, ("NewReplicaSetCreated",), "create")
if ("NewReplicaSetCreated", "MinimumReplicasUnavailable") not in seen:
    sys.exit(f"create: no unavailable start: {seen}")

rv = apps.read_namespaced_deployment(NAME, "default").metadata.resource_version
update = []
t = threading.Thread(target=observe, args=(rv, 2, update))
t.start()
apps.patch_namespaced_deployment(NAME, "default", {"spec": {"template": {"spec": {"containers": [
    {"name": "main", "image": "busybox:1.37"}]}}}})
t.join(150)
check(update, ("NewReplicaSetCreated", "ReplicaSetUpdated"), "update")
if not any(p in ("NewReplicaSetCreated", "ReplicaSetUpdated") for p, _ in update):
    sys.exit(f"update: never progressing: {update}")
d = apps.read_namespaced_deployment(NAME, "default")
if d.metadata.annotations.get("deployment.kubernetes.io/revision") != "2":
    sys.exit(f"revision: {d.metadata.annotations}")
print(f"python rollout: ok; create {seen}; update {update}")
