# Sourced by the network benchmarks (bench_ingress.sh, bench_dns.sh): a network namespace of
# their own with a veth pair inside (the node's interface and its peer), a work directory,
# servers started in the namespace, and a clean-up that stops them all and removes both.
#   bench_setup NAME NODE_IP   sets $ns, $work; the node interface has NODE_IP/24, the peer
#                              interface is $peer_if (addresses added by the caller)
#   bench_serve CMD...         starts a server in the namespace (killed at clean-up)
#   bench_k3rs NODE_IP ARGS... starts `k3rs server` there, waits until it is ready
#   in_ns CMD...               runs a command in the namespace

pids=()

in_ns() { ip netns exec "$ns" "$@"; }

bench_cleanup() {
  # Every server is its own process (`ip netns exec` execs it), so the work directory goes
  # only once they have all exited.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "${bench_extra_cleanup:-}" ]; then "$bench_extra_cleanup"; fi
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}

bench_setup() {
  ns=k3rs-bench-$1-$$
  work=$(mktemp -d)
  peer_if=k3rs-$1-p
  trap bench_cleanup EXIT
  ip netns add "$ns"
  in_ns ip link set lo up
  in_ns ip link add "k3rs-$1-n" type veth peer name "$peer_if"
  in_ns ip addr add "$2/24" dev "k3rs-$1-n"
  in_ns ip link set "k3rs-$1-n" up
  in_ns ip link set "$peer_if" up
}

bench_serve() {
  ip netns exec "$ns" "$@" &
  pids+=($!)
}

bench_k3rs() {
  local node_ip=$1
  shift
  mkdir -p "$work/data"
  ip netns exec "$ns" "$k3rs" server --data-dir "$work/data" --write-kubeconfig "$work/kubeconfig" \
    --node-ip "$node_ip" --node-name bench-node "$@" >"$work/server.log" 2>&1 &
  pids+=($!)
  export KUBECONFIG=$work/kubeconfig
  for _ in $(seq 300); do
    if in_ns kubectl get --raw /readyz >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "k3rs did not become ready" >&2
  cat "$work/server.log" >&2
  return 1
}
