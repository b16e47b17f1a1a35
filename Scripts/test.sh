#!/usr/bin/env bash
# Builds everything once (debug) and runs the whole test suite without building again.
# Fails if our own sources compile with warnings (dependencies' warnings are not ours to fix).
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/bootstrap.sh
bash Scripts/test-tools.sh
bash Scripts/lint.sh
log="$(mktemp)"
# A throw-away PostgreSQL for the metadata conformance suite and the end-to-end PostgreSQL
# test: its own directory and port, stopped by its PID when this script ends however it ends.
source Scripts/postgres.sh
trap 'postgres_stop; rm -f "$log"' EXIT
postgres_start
export BLOB_TEST_POSTGRES_URL="$POSTGRES_URL"
swift build --build-tests 2>&1 | tee "$log"
if grep -E "^$(pwd)/(Sources|Tests)/.*: warning:" "$log" >/dev/null; then
  echo "test.sh: our sources compile with warnings (listed above); fix them" >&2
  exit 1
fi

# One run of every suite. Test helpers never block a thread of Swift's cooperative pool (child
# processes are awaited by polling, their output goes to files), so suites that start many
# processes share the run with the rest.
# Every suite in one run, but for the ones that kill whole database nodes under load: they run
# last, on their own, so their load and their minutes of failover do not starve the in-process
# clusters of the other suites (two cores).
last="PostgresFailoverTests|HATopologyTests"
swift test --skip-build --disable-xctest --skip "$last"
swift test --skip-build --disable-xctest --filter "$last"
