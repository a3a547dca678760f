#!/usr/bin/env bash
# Builds k3rs (release) and runs `k3rs server` as root; extra arguments go to the server,
# e.g. `scripts/server.sh --data-dir /srv/k3rs --debug`. `--build-only` (first) only builds.
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

build_only=false
if [[ ${1:-} == --build-only ]]; then
  build_only=true
  shift
fi

scripts/install-deps.sh
cargo build --release --bin k3rs
if $build_only; then
  exit 0
fi

target_dir=${CARGO_TARGET_DIR:-$(cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')}
bin="$target_dir/release/k3rs"

if [[ $(id -u) -eq 0 ]]; then
  exec "$bin" server "$@"
fi
exec sudo "$bin" server "$@"
