#!/usr/bin/env bash
# Runs the scale and memory benchmark (tests/bench) with release binaries:
#
# - with NETOP_E2E_KUBECONFIG set, against that cluster;
# - otherwise against a fresh control plane from ../shared/k8s, stopped on every exit path.
#
# BENCH_NODES (default 500; e.g. 100,500,1000), BENCH_STEADY_SECONDS (default 300),
# BENCH_INSTALL (split: one process per controller, the default; all-in-one: one process),
# BENCH_POLICY (default the every-section example) and BENCH_OUT (default
# target/bench/results.md) are passed on. Not part of the test suite or CI.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${NETOP_E2E_KUBECONFIG:-}" ]; then
  k8s=../shared/k8s
  if [ ! -x "$k8s/up" ]; then
    echo "no API server: set NETOP_E2E_KUBECONFIG, or provide $k8s/up" >&2
    exit 1
  fi
  export NETOP_K8S_DIR="${TMPDIR:-/tmp}/netop-k8s-bench-$$"
  trap '"$k8s/down" >/dev/null 2>&1 || true; rm -rf "$NETOP_K8S_DIR"' EXIT
  eval "$("$k8s/up")"
fi

NETOP_BIN_DIR="$(hack/build-release.sh)"
export NETOP_BIN_DIR
started=$(date +%s)
"$NETOP_BIN_DIR/bench"
echo "benchmark: $(($(date +%s) - started)) s"
