"""In-cluster access as an operator has it: the official client's in-cluster configuration
(KUBERNETES_SERVICE_HOST/PORT from the environment, the token and CA files the pod got),
run in the pod's network namespace. Prints the status of a refused list, or the pods."""
import json
import sys

from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.config.incluster_config import InClusterConfigLoader

token_file, ca_file, namespace = sys.argv[1:4]
InClusterConfigLoader(token_filename=token_file, cert_filename=ca_file).load_and_set()
api = client.CoreV1Api()
try:
    pods = api.list_namespaced_pod(namespace)
except ApiException as e:
    print(f"status={e.status}")
    print(json.loads(e.body)["message"])
    sys.exit(0)
print("pods=" + ",".join(sorted(p.metadata.name for p in pods.items)))
