#!/usr/bin/env bash
# Packages the umbrella chart as one archive (dist/network-operator-<version>.tgz), every shared
# file (the library chart, the values schema) copied in. Installing from the checkout makes Helm
# print "found symbolic link in path" once per shared file; installing the package prints none:
#   helm install network-operator dist/network-operator-*.tgz -n nvidia-network-operator --create-namespace
set -euo pipefail
cd "$(dirname "$0")/.."
PATH="$(hack/install-helm.sh):$PATH"
mkdir -p dist
helm package charts/network-operator -d dist 2> >(grep -v 'found symbolic link in path' >&2)
