#!/usr/bin/env bash
# One command that installs everything spoofscope and its tests need on a fresh machine.
# 1. Debian's chromium (the browser tests of the service's web page), PostgreSQL (the tests of
#    the shared audit trail start their own server from its binaries) and nginx (the replicas
#    test runs deploy/nginx.conf); skipped without root.
# 2. The pinned CPU wheel of torch: an unpinned torch would pull a multi-GB CUDA build.
# 3. spoofscope itself with its dev extras (tests, lint, ONNX Runtime, the service).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    need=()
    command -v chromium >/dev/null 2>&1 || need+=(chromium)
    ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || need+=(postgresql)
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
else
    echo "setup: not root or no apt-get; skipping chromium, postgresql, nginx (their tests skip)"
fi
python3 -m pip install --quiet "torch==2.13.0"
python3 -m pip install --quiet -e ".[dev]"
