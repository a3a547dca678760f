#!/usr/bin/env bash
# Regenerates src/apiserver/openapi/definitions.json.deflate from k8s-openapi's schemas (the
# generator lives in scripts/openapi-gen/, a cargo project of its own so the k3rs build never
# compiles schemars). Pass --json FILE to also write the uncompressed document for review.
# Honours CARGO_TARGET_DIR (the generator's build goes to its `openapi-gen` subdirectory).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}/openapi-gen"
CARGO_TARGET_DIR="$target" cargo run --quiet --release --manifest-path scripts/openapi-gen/Cargo.toml -- \
    src/apiserver/openapi/definitions.json.deflate "$@"
