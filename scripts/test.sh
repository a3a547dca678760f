#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need, then every unit, integration and
# doc test. Extra arguments go to the unit and integration run (e.g. a test name filter).
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# Everything must compile, benchmarks included. Benchmarks are only built here: they are
# long runs against a release binary, started by scripts/bench.sh.
cargo test --all-targets --no-run
cargo test --doc
cargo test --lib --bins --tests "$@"
