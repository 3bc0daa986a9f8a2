#!/usr/bin/env bash
# One command that installs everything spoofscope and its tests need on a fresh machine.
# The pinned CPU wheel of torch goes first: an unpinned torch would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet "torch==2.13.0"
python3 -m pip install --quiet -e ".[dev]"
