#!/usr/bin/env bash
# Makes promtool (Prometheus's rule checker, Debian package `prometheus`) available: prints
# nothing and succeeds when it is on the PATH; otherwise installs the package when this user may
# (root with apt), else says how and fails.
set -euo pipefail
command -v promtool >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing promtool (Debian package prometheus)" >&2
    { apt-get install -y --no-install-recommends prometheus || { apt-get update && apt-get install -y --no-install-recommends prometheus; }; } >/dev/null
    command -v promtool >/dev/null && exit 0
fi
echo "promtool is missing: install Debian's prometheus package (apt-get install prometheus)" >&2
exit 1
