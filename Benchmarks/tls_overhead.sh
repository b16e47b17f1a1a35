#!/usr/bin/env bash
# What TLS costs on large transfers: a 1 GiB random file put and got with blobctl, and put and got
# through the gateway with the aws CLI, on a `dev up` cluster (master, 3 chunk servers, gateway;
# R=3) over plain HTTP and over HTTPS (`dev up --tls`), the two arms alternating for ROUNDS rounds
# in one run. Prints MB/s per arm and transfer, and the servers' CPU seconds (user + system, from
# /proc) per transfer. Target (issue 23): HTTPS within 15% of HTTP on put and get.
#
#   bash Benchmarks/tls_overhead.sh              # SIZE=1G ROUNDS=2
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared/bench}"
SIZE="${SIZE:-1G}"; ROUNDS="${ROUNDS:-2}"; PORT="${PORT:-19600}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/blob-tls.XXXXXX")"
B="$ROOT/.build/release/blobctl"
export BLOBCTL_CONFIG="$WORK/config.json"
trap '"$B" dev down --dir "$WORK/plain" >/dev/null 2>&1 || true; "$B" dev down --dir "$WORK/tls" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
(cd "$ROOT" && swift build -c release --static-swift-stdlib --product blobctl >/dev/null)

# Sum of user+system clock ticks of the cluster's servers.
server_ticks() {
  python3 - "$1/cluster.json" <<'EOF'
import json, os, sys
total = 0
for m in json.load(open(sys.argv[1]))["members"]:
    try:
        fields = open("/proc/%d/stat" % m["pid"]).read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    except OSError:
        pass
print(total)
EOF
}
hz=$(getconf CLK_TCK)

# One timed transfer: prints "MB/s server-CPU-seconds".
timed() {
  local dir=$1; shift
  local t0 c0 t1 c1
  c0=$(server_ticks "$dir"); t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N); c1=$(server_ticks "$dir")
  python3 -c "import sys; b,t0,t1,c0,c1,hz=map(float,sys.argv[1:]); print('%.1f %.2f' % (b/(t1-t0)/1e6, (c1-c0)/hz))" \
    "$(stat -c %s "$WORK/a")" "$t0" "$t1" "$c0" "$c1" "$hz"
}

port=$PORT
for arm in plain tls; do
  flags=(); [ "$arm" = tls ] && flags=(--tls)
  "$B" dev up --dir "$WORK/$arm" --port "$port" "${flags[@]}" --server-log-level warning --json > "$WORK/$arm.json"
  port=$((port + 10))
done

echo "round arm transfer MB/s server_cpu_s"
for round in $(seq "$ROUNDS"); do
  # Fresh bytes each round, one file for blobctl and one for the aws CLI, so no put is deduplicated
  # against an earlier one; both arms get the same two files.
  python3 "$SHARED/data/gen.py" random "$SIZE" "$WORK/a" --seed $((round * 2)) 2>/dev/null
  python3 "$SHARED/data/gen.py" random "$SIZE" "$WORK/b" --seed $((round * 2 + 1)) 2>/dev/null
  order="plain tls"; [ $((round % 2)) -eq 0 ] && order="tls plain"
  for arm in $order; do
    dir="$WORK/$arm"
    eval "$(python3 - "$WORK/$arm.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print("master=%s gateway=%s id=%s secret='%s' ca='%s'" % (d["master_url"], d["gateway_url"], d["access_key_id"],
      d["secret_access_key"], d.get("tls_ca") or ""))
EOF
)"
    client=(env BLOBCTL_MASTER="$master" BLOBCTL_SECRET_FILE="$dir/secret" BLOBCTL_TLS_CA="$ca" "$B")
    aws=(env AWS_ACCESS_KEY_ID="$id" AWS_SECRET_ACCESS_KEY="$secret" AWS_DEFAULT_REGION=us-east-1 AWS_CA_BUNDLE="$ca"
      aws --endpoint-url "$gateway")
    echo "$round $arm blobctl-put $(timed "$dir" "${client[@]}" put "$WORK/a" "bench/r$round")"
    echo "$round $arm blobctl-get $(timed "$dir" "${client[@]}" get "bench/r$round" -)"
    "${aws[@]}" s3 mb "s3://tls$round" >/dev/null 2>&1 || true
    echo "$round $arm aws-put $(timed "$dir" "${aws[@]}" s3 cp --only-show-errors "$WORK/b" "s3://tls$round/b")"
    echo "$round $arm aws-get $(timed "$dir" "${aws[@]}" s3 cp --only-show-errors "s3://tls$round/b" -)"
  done
done
