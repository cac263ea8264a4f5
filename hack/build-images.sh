#!/usr/bin/env bash
# Builds one container image per shipped binary, from the static release binaries
# (hack/build-release.sh): non-root (65532), the binary as entrypoint (/usr/local/bin/app, as the
# top-level Dockerfile has it), the host's CA certificates
# (the OFED controller lists registry tags over HTTPS), OCI labels (version, source, licence).
#
# With ../shared/k8s/mkimage beside the checkout, each image is a docker-archive tar in
# target/images/ (load it with `import-image`, `docker load` or `podman load`); otherwise, with
# docker, podman or buildah, it is built into that tool's store from the same files
# (hack/Dockerfile.image). The Dockerfile at the top builds from source, for users without a
# Rust toolchain, into the same layout.
#
#   IMAGE_REGISTRY  (default ghcr.io/nvidia-network-operator-rs: the charts' default)
#   IMAGE_TAG       (default the chart's appVersion, the charts' default tag)
#   IMAGE_OUT       (default target/images: where mkimage writes the tars)
# Install with the images: helm install ... --set global.image.registry=$IMAGE_REGISTRY
set -euo pipefail
cd "$(dirname "$0")/.."
registry="${IMAGE_REGISTRY:-ghcr.io/nvidia-network-operator-rs}"
tag="${IMAGE_TAG:-$(sed -n 's/^appVersion: *"*\([^"]*\)"*$/\1/p' charts/network-operator/Chart.yaml)}"
out="${IMAGE_OUT:-$PWD/target/images}"
binaries=(aggregator network-nads-controller ofed-controller rdma-dp-controller sriov-dp-controller
    nic-feature-discovery-controller doca-telemetry-controller ib-kubernetes-controller multus-controller
    cni-plugins-controller ipoib-controller whereabouts-controller nv-ipam-state-controller
    nic-configuration-controller spectrum-x-controller
    network-operator admission-webhook)
ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] || { echo "no CA bundle at $ca (Debian: apt-get install ca-certificates)" >&2; exit 1; }
bin="$(hack/build-release.sh)"
mkimage=../shared/k8s/mkimage
labels=(
    "org.opencontainers.image.version=$tag"
    "org.opencontainers.image.source=https://github.com/nvidia-network-operator-rs/network-operator"
    "org.opencontainers.image.licenses=Apache-2.0"
    "org.opencontainers.image.revision=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
)
mkdir -p "$out"
if [ -x "$mkimage" ]; then
    label_args=(); for l in "${labels[@]}"; do label_args+=(--label "$l"); done
    for b in "${binaries[@]}"; do
        "$mkimage" "$out/$b.tar" "$registry/$b:$tag" --file "$bin/$b:/usr/local/bin/app:0755" \
            --file "$ca:/etc/ssl/certs/ca-certificates.crt:0644" --entrypoint '["/usr/local/bin/app"]' \
            --user 65532:65532 --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
            --label "org.opencontainers.image.title=$b" "${label_args[@]}" >/dev/null
        printf '%s\t%s\t%s\n' "$registry/$b:$tag" "$(du -k "$out/$b.tar" | cut -f1) KiB" "$out/$b.tar"
    done
    exit 0
fi
tool="$(command -v docker || command -v podman || command -v buildah || true)"
[ -n "$tool" ] || { echo "neither ../shared/k8s/mkimage nor docker, podman or buildah is available" >&2; exit 1; }
context="$(mktemp -d)"; trap 'rm -rf "$context"' EXIT
cp "$ca" "$context/ca-certificates.crt"
label_args=(); for l in "${labels[@]}"; do label_args+=(--label "$l"); done
for b in "${binaries[@]}"; do
    cp "$bin/$b" "$context/app"
    case "$(basename "$tool")" in
        buildah) "$tool" bud -f hack/Dockerfile.image --build-arg "BINARY=$b" "${label_args[@]}" -t "$registry/$b:$tag" "$context" ;;
        *) "$tool" build -f hack/Dockerfile.image --build-arg "BINARY=$b" "${label_args[@]}" -t "$registry/$b:$tag" "$context" ;;
    esac
done
