#!/usr/bin/env bash
# Benchmarks of k3rs on this machine (`store` compares it with etcd in the same run):
#   scripts/bench.sh store     the datastore through the etcd API, k3rs vs etcd 3.4
#   scripts/bench.sh startup   exec -> /readyz on first and warm boots; memory after 30 s idle
#   scripts/bench.sh api       creates, patches, lists and watches over HTTPS, 16 clients
#   scripts/bench.sh pods      100 busybox pods on a real node (root); runtime vs runc
#   scripts/bench.sh controllers  Deployments of 100 pods on a real node (root): rollout times, RSS
#   scripts/bench.sh net-ingress  the ingress vs nginx proxying to one backend (root): wrk, HTTP and HTTPS
#   scripts/bench.sh net-proxy    the service proxy's sync at 10 and 1,000 Services (root): latency, cost
#   scripts/bench.sh net-dns      the cluster DNS vs unbound (root): dnsperf, cluster and forwarded names
#   scripts/bench.sh net          the three above
# Environment: BENCH_CHURN_OPS (default 1000000) shortens the churn run; BENCH_DELETE_KEYS
# (default 300000) sizes the prefix delete.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}

release_k3rs() {
  cargo build --release --bin k3rs
  target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  export K3RS_BIN="$target_dir/release/k3rs"
}

case "$what" in
  store)
    scripts/install-deps.sh
    release_k3rs
    cargo bench --bench store
    ;;
  startup | api)
    release_k3rs
    cargo bench --bench api -- "$what"
    ;;
  pods)
    scripts/install-deps.sh
    release_k3rs
    "${K3RS_TEST_PYTHON:-${K3RS_PYTHON_VENV:-/var/cache/k3rs/python}/bin/python3}" scripts/bench_pods.py
    if [ -f benches/runtime.rs ]; then cargo bench --bench runtime; fi
    ;;
  controllers)
    scripts/install-deps.sh
    release_k3rs
    "${K3RS_TEST_PYTHON:-${K3RS_PYTHON_VENV:-/var/cache/k3rs/python}/bin/python3}" scripts/bench_controllers.py
    ;;
  net-ingress)
    scripts/install-deps.sh --bench
    if [ -z "${K3RS_BIN:-}" ]; then release_k3rs; fi
    scripts/bench_ingress.sh
    ;;
  net-dns)
    scripts/install-deps.sh --bench
    if [ -z "${K3RS_BIN:-}" ]; then release_k3rs; fi
    scripts/bench_dns.sh
    ;;
  net-proxy)
    scripts/install-deps.sh
    cargo bench --bench proxy
    ;;
  net)
    "$0" net-proxy
    "$0" net-ingress
    "$0" net-dns
    ;;
  *)
    echo "usage: scripts/bench.sh store|startup|api|pods|controllers|net|net-proxy|net-ingress|net-dns" >&2
    exit 2
    ;;
esac
