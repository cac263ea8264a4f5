#!/usr/bin/env bash
# Regenerates every generated file (never edit them by hand; tests fail when one is stale):
#   crds/                                  the CRDs, from the API types
#   charts/network-operator/crds/          the same CRDs, for Helm
#   charts/network-operator/charts/*/files/rbac.yaml   each controller's RBAC rules
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p nicctl -- crds --dir crds
rm -f charts/network-operator/crds/*.yaml
cp crds/*.yaml charts/network-operator/crds/
cargo run -q -p nicctl -- rbac --dir charts/network-operator/charts
