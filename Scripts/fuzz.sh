#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/, a package of its own with its own .build) and runs one, or
# all, for a bounded time each, starting from the seed corpus in Fuzz/Corpus/TARGET.
#
#   bash Scripts/fuzz.sh TARGET SECONDS      # e.g. Scripts/fuzz.sh FuzzChunkFrame 600
#   bash Scripts/fuzz.sh all SECONDS         # every target in turn (CI: 40 s each)
#
# Fails on a crash (a Swift trap or a property a target checks), a sanitizer report, a hang
# (an input taking over 10 s) or running out of memory; the input is kept under
# $FUZZ_OUT (default .fuzz-out/TARGET/, ignored by git) as crash-*, timeout-* or oom-*, and
# `Fuzz/.build/debug/TARGET FILE` replays it. Inputs that found new coverage stay in
# .fuzz-out/TARGET/corpus (not in the seed corpus: copy one there by hand when it is worth
# keeping). The last lines give the run's executions, coverage (cov: edges) and features (ft:).
#
# Swift code gets AddressSanitizer as well as libFuzzer's coverage. SwiftPM's
# `--sanitize=fuzzer --sanitize=address` passes two -sanitize flags, and the second replaces the
# first, leaving Swift code without coverage; one `-sanitize=fuzzer,address` does both.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?usage: Scripts/fuzz.sh TARGET|all SECONDS}"
seconds="${2:?usage: Scripts/fuzz.sh TARGET|all SECONDS}"
all=(
  FuzzChunkFrame FuzzBlobPath FuzzRingJSON FuzzRequestToken
  FuzzSigV4 FuzzAwsChunked FuzzS3Headers FuzzS3XML FuzzPostForm FuzzPostPolicy
)
if [ "$target" = all ]; then targets=("${all[@]}"); else targets=("$target"); fi
for t in "${targets[@]}"; do
  [ -d "Fuzz/Corpus/$t" ] || { echo "fuzz.sh: no target $t (targets: ${all[*]})" >&2; exit 64; }
done

echo "fuzz.sh: building ${targets[*]} (libFuzzer + AddressSanitizer; Fuzz/.build)" >&2
build_log="$(mktemp)"
trap 'rm -f "$build_log"' EXIT
if ! swift build --package-path Fuzz --sanitize=fuzzer -Xswiftc -sanitize=fuzzer,address >"$build_log" 2>&1; then
  grep -v "Cannot export local symbol" "$build_log" | tail -40 >&2
  exit 1
fi

status=0
for t in "${targets[@]}"; do
  out="${FUZZ_OUT:-.fuzz-out}/$t"
  mkdir -p "$out/corpus"
  echo "== $t: ${seconds} s" >&2
  # The Swift runtime's backtracer would otherwise catch the trap before libFuzzer saves the
  # input; leak reports from the runtime's own allocations are noise here.
  set +e
  SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 "Fuzz/.build/debug/$t" "$out/corpus" "Fuzz/Corpus/$t" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="$out/" -print_final_stats=1 >"$out/log" 2>&1
  code=$?
  set -e
  grep -E "DONE|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" "$out/log" >&2 || true
  if [ $code -ne 0 ]; then
    echo "fuzz.sh: $t failed (exit $code); its input and log are in $out:" >&2
    ls "$out" | grep -E "^(crash|timeout|oom|leak)-" >&2 || true
    grep -E "ERROR|Fatal error|deadly signal|SUMMARY" "$out/log" | head -20 >&2 || true
    status=1
  fi
done
exit $status
