#!/usr/bin/env bash
# What metrics and request logging cost: the same gateway workload on a local cluster with
# request observation on (metrics, one info event per request on every server, a scrape of
# every process every 5 s, as dev up's Prometheus configuration does) and off (--no-observe-requests, warnings only), in
# alternating rounds of one run (ABBA...), so the machine's drift hits both arms alike.
#
#   bash Benchmarks/observability_overhead.sh            # ROUNDS=4 RANGES=3000 PUTS=3000
#
# Prints a table of medians: requests/s and server CPU seconds per 1,000 requests, for 1 MiB
# ranged GETs (4 threads) and 16 KiB PUTs (8 threads) through the gateway.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${ROUNDS:-4}"; RANGES="${RANGES:-3000}"; PUTS="${PUTS:-3000}"; PORT="${PORT:-19700}"
ARMS="${ARMS:-on off}"   # `metrics`: observation on, request events not logged (warnings only)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/blob-overhead.XXXXXX")"
B="$ROOT/.build/release/blobctl"
export BLOBCTL_CONFIG="$WORK/config.json"
scraper=""
cleanup() {
  [ -n "$scraper" ] && kill "$scraper" 2>/dev/null || true
  "$B" dev down --dir "$WORK/cluster" >/dev/null 2>&1 || true
  rm -rf "$WORK/cluster"
}
trap cleanup EXIT
log() { echo "[overhead $(date +%H:%M:%S)] $*" >&2; }

log "building blobctl (release)"
(cd "$ROOT" && swift build -c release --static-swift-stdlib --product blobctl >/dev/null)

arm() { # $1 = on|off|metrics (on, but request events not logged), $2 = round
  local flags=(--server-log-level info)
  [ "$1" = off ] && flags=(--server-log-level warning --no-observe-requests)
  [ "$1" = metrics ] && flags=(--server-log-level warning)
  "$B" dev up --dir "$WORK/cluster" --port "$PORT" "${flags[@]}" >/dev/null
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1]+"/cluster.json")); [print(m["name"], m["pid"]) for m in c["members"]]' "$WORK/cluster" > "$WORK/pids"
  read -r GW KEY SECRET < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]+"/cluster.json")); print(c["gatewayURL"], c["accessKeyID"], c["secretAccessKey"])' "$WORK/cluster")
  if [ "$1" != off ]; then
    # What Prometheus does with dev up's configuration: scrape every process every 5 s.
    mapfile -t targets < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]+"/cluster.json")); [print(m["metricsAddress"]) for m in c["members"] if m.get("metricsAddress")]' "$WORK/cluster")
    ( while true; do for t in "${targets[@]}"; do curl -s -o /dev/null "http://$t/metrics"; done; sleep 5; done ) &
    scraper=$!
  fi
  python3 "$ROOT/Benchmarks/observability_overhead.py" "$GW" "$KEY" "$SECRET" "$WORK/pids" "$WORK/$1-$2.json" \
    --ranges "$RANGES" --puts "$PUTS" >&2
  if [ -n "$scraper" ]; then kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; scraper=""; fi
  "$B" dev down --dir "$WORK/cluster" >/dev/null
  rm -rf "$WORK/cluster"
}

read -r -a arms <<< "$ARMS"
for round in $(seq 1 "$ROUNDS"); do
  # Alternate the order each round, so drift hits every arm alike.
  if [ $((round % 2)) = 1 ]; then order=("${arms[@]}"); else order=(); for ((i=${#arms[@]}-1; i>=0; i--)); do order+=("${arms[$i]}"); done; fi
  for mode in "${order[@]}"; do log "round $round: observation $mode"; arm "$mode" "$round"; done
done

python3 - "$WORK" "$ROUNDS" $ARMS <<'PY'
import json, statistics, sys
work, rounds, arms = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def med(mode, key):
    return statistics.median(json.load(open(f"{work}/{mode}-{r}.json"))[key] for r in range(1, rounds + 1))
rows = [("1 MiB ranged GETs, requests/s", "ranged_per_s", True),
        ("1 MiB ranged GETs, server CPU s per 1,000", "ranged_cpu_per_1000", False),
        ("16 KiB PUTs, requests/s", "put_per_s", True),
        ("16 KiB PUTs, server CPU s per 1,000", "put_cpu_per_1000", False)]
others = [a for a in arms if a != "off"]
print(f"| measure (median of {rounds} rounds) | " + " | ".join(others) + " | off | " + " | ".join(f"cost of {a}" for a in others) + " |")
print("|---|" + "---:|" * (2 * len(others) + 1))
for name, key, higher_better in rows:
    off = med("off", key)
    values = [med(a, key) for a in others]
    costs = [(off / v - 1) if higher_better else (v / off - 1) for v in values]
    print(f"| {name} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {off:.2f} | " + " | ".join(f"{c * 100:+.1f}%" for c in costs) + " |")
PY
