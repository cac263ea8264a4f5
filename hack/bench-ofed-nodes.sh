#!/usr/bin/env bash
# Measures the memory the OFED controller's Node watch costs: the release binary's resident
# memory at rest with no NIC node, then with 5,000 NIC nodes (60 NFD labels each, 50 kernels),
# against the real control plane of ../shared/k8s (or NETOP_E2E_KUBECONFIG's cluster: it creates
# 5,000 Nodes named bench-*, and deletes them at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${NETOP_E2E_KUBECONFIG:-}" ]; then
  export NETOP_K8S_DIR="${TMPDIR:-/tmp}/netop-k8s-bench-$$"
  trap '../shared/k8s/down >/dev/null 2>&1 || true; rm -rf "$NETOP_K8S_DIR"' EXIT
  eval "$(../shared/k8s/up)"
fi
export KUBECONFIG=$NETOP_E2E_KUBECONFIG
PATH="$(hack/install-helm.sh):$PATH"
cargo build -q --release -p ofed --bin ofed-controller
nodes=$(mktemp --suffix=.json)
python3 - "$nodes" <<'PY'
import json, sys
items = []
for i in range(5000):
    labels = {"feature.node.kubernetes.io/pci-15b3.present": "true", "feature.node.kubernetes.io/system-os_release.ID": "ubuntu",
              "feature.node.kubernetes.io/system-os_release.VERSION_ID": "22.04",
              "feature.node.kubernetes.io/kernel-version.full": "5.15.0-%d-generic" % (i % 50), "kubernetes.io/arch": "amd64"}
    labels.update({"feature.node.kubernetes.io/cpu-cpuid.FEATURE%d" % l: "true" for l in range(60)})
    items.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "bench-%05d" % i, "labels": labels,
                  "annotations": {"nfd.node.kubernetes.io/feature-labels": "x" * 600}}})
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, open(sys.argv[1], "w"))
PY
kubectl create namespace bench-ofed >/dev/null 2>&1 || true
measure() { # label
  OPERANDS_NAMESPACE=bench-ofed METRICS_ADDR=127.0.0.1:18089 CLUSTER_TYPE=kubernetes LOG_FORMAT=text \
    target/release/ofed-controller >/dev/null 2>&1 & local pid=$!
  until curl -sf 127.0.0.1:18089/readyz >/dev/null; do sleep 0.5; done
  sleep 3
  echo "$1: $(awk '/VmRSS|VmHWM/ {printf "%s %.1f MiB  ", $1, $2/1024}' /proc/$pid/status)"
  kill $pid; wait $pid 2>/dev/null || true
}
measure "no NIC node"
kubectl create -f "$nodes" >/dev/null
measure "5000 NIC nodes"
kubectl delete nodes -l feature.node.kubernetes.io/pci-15b3.present=true --wait=false >/dev/null
rm -f "$nodes"
