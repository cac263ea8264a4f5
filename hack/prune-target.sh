#!/usr/bin/env bash
# Keeps a reused target/ (CI machines keep it between runs) from filling the disk.
#
# Cargo never deletes stale artifacts: every change of code or lock file leaves the previous build
# beside the new one. This removes the incremental caches (CI builds with CARGO_INCREMENTAL=0, so
# they are dead weight) and, when target/ still holds more than TARGET_BUDGET_MB (default 10000,
# about 1.5 times what one full CI run from an empty target/ leaves), starts again from an empty
# target/: the disk then holds at most that budget plus one run.
set -euo pipefail
cd "$(dirname "$0")/.."
budget=${TARGET_BUDGET_MB:-10000}
[ -d target ] || exit 0
rm -rf target/debug/incremental target/release/incremental
used=$(du -sm target | cut -f1)
if [ "$used" -gt "$budget" ]; then
  echo "target/ holds $used MB (budget $budget MB): cargo clean"
  cargo clean
else
  echo "target/ holds $used MB (budget $budget MB): kept"
fi
echo "disk: $(df -h . | awk 'NR==2 {print $4 " free of " $2}')"
