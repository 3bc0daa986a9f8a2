#!/usr/bin/env bash
# One command that installs everything spoofscope and its tests need on a fresh machine.
# 1. Debian's chromium, for the browser test of the service's web page (skipped without root).
# 2. The pinned CPU wheel of torch: an unpinned torch would pull a multi-GB CUDA build.
# 3. spoofscope itself with its dev extras (tests, lint, ONNX Runtime, the service).
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    if ! command -v chromium >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
else
    echo "setup: not root or no apt-get; skipping chromium (the web-page test will be skipped)"
fi
python3 -m pip install --quiet "torch==2.13.0"
python3 -m pip install --quiet -e ".[dev]"
