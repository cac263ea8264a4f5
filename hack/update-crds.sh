#!/usr/bin/env bash
# Regenerates crds/ from the API types (never edit crds/ by hand).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p nicctl -- crds --dir crds
