# Builds the workspace's binaries (static executables) and ships one of them in a minimal non-root image.
#   docker build --build-arg BINARY=rdma-dp-controller -t network-operator/rdma-dp .
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Static, non-PIE, small: see hack/build-release.sh.
RUN bin="$(hack/build-release.sh)" \
    && mkdir /out \
    && find "$bin" -maxdepth 1 -type f -executable -exec cp {} /out/ \;

FROM gcr.io/distroless/cc-debian12:nonroot
ARG BINARY=nicctl
COPY --from=build /out/${BINARY} /usr/local/bin/app
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/app"]
