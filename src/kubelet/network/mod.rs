//! Pod sandboxes and their network: per pod a network, IPC and UTS namespace (bind-mounted
//! files, so they need no process to hold them), a veth into the node's bridge, an address
//! from the node's podCIDR that is persisted (never two pods on one IP, kept across restarts,
//! released on deletion), and the pod's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`.
