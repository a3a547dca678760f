//! The OCI runtime spec of a pod's container: a pure function of the pod, the container, the
//! image config and what the node resolved for it (env sources, volumes, sandbox paths).
