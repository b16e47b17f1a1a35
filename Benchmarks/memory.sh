#!/usr/bin/env bash
# Peak memory of a large put and get: the client's peak RSS (/usr/bin/time) and every server's
# (VmHWM), for a file streamed from a generator through standard input and read back to
# /dev/null, so no local copy is needed. Target: each process under 256 MiB at 4 GiB.
#
#   bash Benchmarks/memory.sh            # SIZE=4G
#   SIZE=1G bash Benchmarks/memory.sh
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared/bench}"
SIZE="${SIZE:-4G}"; PORT="${PORT:-19500}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/blob-memory.XXXXXX")"
B="$ROOT/.build/release/blobctl"
export BLOBCTL_CONFIG="$WORK/config.json"
trap '"$B" dev down --dir "$WORK/cluster" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
(cd "$ROOT" && swift build -c release --static-swift-stdlib --product blobctl >/dev/null)
"$B" dev up --dir "$WORK/cluster" --port "$PORT" >/dev/null
hwm() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
for kind in random logs; do
  start=$(date +%s.%N)
  python3 "$SHARED/data/gen.py" "$kind" "$SIZE" /dev/stdout --seed 7 2>/dev/null |
    /usr/bin/time -f "%M" -o "$WORK/put.rss" "$B" put - "memory/$kind" >/dev/null
  put_s=$(echo "$(date +%s.%N) - $start" | bc)
  start=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$WORK/get.rss" "$B" get "memory/$kind" - > /dev/null
  get_s=$(echo "$(date +%s.%N) - $start" | bc)
  echo "$kind $SIZE: put ${put_s%.*} s, client peak RSS $(( $(cat "$WORK/put.rss") / 1024 )) MiB; get ${get_s%.*} s, client peak RSS $(( $(cat "$WORK/get.rss") / 1024 )) MiB"
done
python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); [print(m["name"], m["pid"]) for m in c["members"]]' "$WORK/cluster/cluster.json" |
  while read -r name pid; do echo "server $name peak RSS $(hwm "$pid") MiB"; done
