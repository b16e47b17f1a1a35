#!/usr/bin/env bash
# Rebalance and recovery figures (docs/benchmarks.md, "Rebalance and recovery").
#
#   bash Benchmarks/operations.sh                  # 4 GiB, throttle 50M for 15 s
#   SIZE=1G FILES=8 bash Benchmarks/operations.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
(cd "$ROOT" && swift build -c release --static-swift-stdlib --product blobctl >/dev/null)
exec python3 "$ROOT/Benchmarks/operations.py"
