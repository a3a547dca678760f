#!/usr/bin/env bash
# Benchmarks that compare k3rs with its peers on this machine, in one run.
#   scripts/bench.sh store   the datastore through the etcd API, k3rs vs etcd 3.4
# Environment: BENCH_CHURN_OPS (default 1000000) shortens the churn run.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-}
case "$what" in
  store)
    scripts/install-deps.sh
    cargo build --release --bin k3rs
    target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    K3RS_BIN="$target_dir/release/k3rs" cargo bench --bench store
    ;;
  *)
    echo "usage: scripts/bench.sh store" >&2
    exit 2
    ;;
esac
