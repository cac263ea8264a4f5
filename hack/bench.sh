#!/usr/bin/env bash
# Runs the scale and memory benchmark (tests/bench) with release binaries:
#
# - with NETOP_E2E_KUBECONFIG set, against that cluster;
# - otherwise each run against a fresh control plane from ../shared/k8s, stopped on every exit path.
#
# BENCH_NODES (default 500; e.g. 100,1000), BENCH_INSTALL (split: one process per controller, the
# default; all-in-one: one process; original: the original v24.7.0 from ../shared/original),
# BENCH_COMPARE=1 (original, split and all-in-one one after the other at each N, each on a fresh
# control plane), BENCH_STEADY_SECONDS (default 300), BENCH_CHANGES (version changes, default 3),
# BENCH_POLICY (default the every-section example). Each run is kept in target/bench/runs/; the
# side-by-side report of every kept run goes to BENCH_OUT (default target/bench/results.md).
# Not part of the test suite or CI.
set -euo pipefail
cd "$(dirname "$0")/.."

installs=("${BENCH_INSTALL:-split}")
if [ "${BENCH_COMPARE:-0}" = 1 ]; then
  installs=(original split all-in-one)
fi
sizes=${BENCH_NODES:-500}
k8s=../shared/k8s
if [ -z "${NETOP_E2E_KUBECONFIG:-}" ] && [ ! -x "$k8s/up" ]; then
  echo "no API server: set NETOP_E2E_KUBECONFIG, or provide $k8s/up" >&2
  exit 1
fi

NETOP_BIN_DIR="$(hack/build-release.sh)"
export NETOP_BIN_DIR
# kubectl, for the original's run script.
PATH="$(hack/install-helm.sh):$PATH"
export PATH
started=$(date +%s)
for n in ${sizes//,/ }; do
  for install in "${installs[@]}"; do
    run_started=$(date +%s)
    if [ -n "${NETOP_E2E_KUBECONFIG:-}" ]; then
      BENCH_INSTALL=$install BENCH_NODES=$n "$NETOP_BIN_DIR/bench"
    else
      (
        export NETOP_K8S_DIR="${TMPDIR:-/tmp}/netop-k8s-bench-$$-$install-$n"
        trap '"$k8s/down" >/dev/null 2>&1 || true; rm -rf "$NETOP_K8S_DIR"' EXIT
        eval "$("$k8s/up")"
        BENCH_INSTALL=$install BENCH_NODES=$n "$NETOP_BIN_DIR/bench"
      )
    fi
    echo "benchmark run $install at N = $n: $(($(date +%s) - run_started)) s"
  done
done
"$NETOP_BIN_DIR/bench" report
echo "benchmark: $(($(date +%s) - started)) s"
