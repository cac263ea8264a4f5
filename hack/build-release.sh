#!/usr/bin/env bash
# Builds the shipped binaries (the Dockerfile and the benchmark use this; plain
# `cargo build --release` gives the same code without the two link-time savings below) and
# prints the directory they are in. Extra arguments go to cargo (e.g. `--timings`).
#
# The release profile (Cargo.toml) makes the code small: opt-level "z", fat LTO, one codegen
# unit, panic = "abort", stripped. These flags cannot live in a profile, and must not reach the
# debug and test builds (tests unwind), so they are set here, for the target only (`--target`
# keeps them off build scripts and proc-macros):
#   -C target-feature=+crt-static   a static executable: no dynamic loader, no libc.so, libm,
#                                   libgcc_s mapped into every process (glibc >= 2.34 has the
#                                   files and dns name services built in, so lookups still work);
#   -C relocation-model=static      not position-independent: no relocations to apply at start,
#                                   so no page of pointers is copied and written per process;
#   -C force-unwind-tables=no       no unwind tables for our code (nothing unwinds with abort).
# Measured effect on idle resident memory: docs/performance.md.
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static -C force-unwind-tables=no" \
    NETOP_COMMIT="${NETOP_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" \
    cargo build --release --locked --target "$target" --workspace --bins "$@" >&2
echo "$PWD/target/$target/release"
