#!/usr/bin/env bash
# Formatting: the toolchain's swift-format with the repository's .swift-format, strict (a warning
# fails), over every Swift file of ours, and no line over 120 columns. Fix with:
#   swift format --in-place --recursive Sources Tests Package.swift
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
if ! swift format lint --strict --recursive Sources Tests Package.swift; then
  echo "lint.sh: swift-format found the violations above; run: swift format --in-place --recursive Sources Tests Package.swift" >&2
  status=1
fi
long="$(git ls-files 'Sources/*.swift' 'Tests/*.swift' Package.swift | xargs awk 'length > 120 { print FILENAME ":" FNR ": " length " columns" }')"
if [ -n "$long" ]; then
  echo "$long" >&2
  echo "lint.sh: the lines above are longer than 120 columns; split them" >&2
  status=1
fi
exit $status
