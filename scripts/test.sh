#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, checks formatting and lints, then
# runs every unit, integration and doc test. Extra arguments go to the unit and integration
# run (e.g. a test name filter). `--unit` (first) runs only the unit tests, with no lint
# gate (scripts/check-fresh-machine.sh uses it). Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

unit_only=false
if [[ ${1:-} == --unit ]]; then
  unit_only=true
  shift
fi

scripts/install-deps.sh
# The Python with the Kubernetes client (a virtual environment made by install-deps.sh).
export K3RS_TEST_PYTHON=${K3RS_TEST_PYTHON:-${K3RS_PYTHON_VENV:-/var/cache/k3rs/python}/bin/python3}

if $unit_only; then
  cargo test --lib --bins "$@"
  exit 0
fi

# The lint and format gate (Cargo.toml's [lints] table, clippy.toml's banned APIs).
cargo fmt --check
cargo clippy --all-targets -- -D warnings

# Everything must compile, benchmarks included. Benchmarks are only built here: they are
# long runs against a release binary, started by scripts/bench.sh.
cargo test --all-targets --no-run
cargo test --doc
cargo test --lib --bins --tests "$@"
