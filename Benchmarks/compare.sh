#!/usr/bin/env bash
# Blobstore and SeaweedFS side by side, in one run, on this machine, through the shared
# peer-neutral driver (../shared/bench/workload.py) with each store's own command-line path:
# `blobctl put/get` for us, curl against the filer for SeaweedFS (3 copies each).
#
#   bash Benchmarks/compare.sh            # 1 GiB random + 1 GiB logs, 2,000 small files, ten-day log archive
#   SIZE=256M SMALL=500 bash Benchmarks/compare.sh   # a quicker pass
#
# Writes the table to docs/benchmarks.md (between the compare markers) and to $OUT_DIR.
# Environment: SIZE (1G), SMALL (2000), RUNS (1), SERIES_DAYS (10), SERIES_SIZE (64M),
# PORT (19400, ours), SHARED (../shared/bench), OUT_DIR (a temp dir), KEEP_DATA=1.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared/bench}"
SIZE="${SIZE:-1G}"; SMALL="${SMALL:-2000}"; RUNS="${RUNS:-1}"
SERIES_DAYS="${SERIES_DAYS:-10}"; SERIES_SIZE="${SERIES_SIZE:-64M}"; PORT="${PORT:-19400}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/blob-compare.XXXXXX")"
OUT_DIR="${OUT_DIR:-$WORK/out}"; mkdir -p "$OUT_DIR"
PEER="$SHARED/peers/seaweedfs.sh"
B="$ROOT/.build/release/blobctl"
export BLOBCTL_CONFIG="$WORK/config.json"   # never touch the user's own config

log() { echo "[compare $(date +%H:%M:%S)] $*" >&2; }
cleanup() {
  "$B" dev down --dir "$WORK/blob" >/dev/null 2>&1 || true
  "$B" dev down --dir "$WORK/series" >/dev/null 2>&1 || true
  "$PEER" stop >/dev/null 2>&1 || true
  if [ "${KEEP_DATA:-0}" != 1 ]; then rm -rf "$WORK/blob" "$WORK/series" "$WORK/days" "$WORK/scratch" "$WORK/tree"; fi
}
trap cleanup EXIT

log "building blobctl (release)"
(cd "$ROOT" && swift build -c release --static-swift-stdlib --product blobctl >/dev/null)

pids_file() {  # "name pid" lines for the workload driver's RSS/CPU sampling
  python3 -c 'import json,sys; c=json.load(open(sys.argv[1]+"/cluster.json")); [print(m["name"], m["pid"]) for m in c["members"]]' "$1" > "$1/pids"
}
disk_bytes() { du -sbc "$@" | tail -n1 | cut -f1; }

mkdir -p "$WORK/scratch"
common=(--cases big,small --runs "$RUNS" --size "$SIZE" --small-count "$SMALL" --par 8 --workdir "$WORK/scratch")

# --- Blobstore ---------------------------------------------------------------------------
log "Blobstore: dev up (master + 3 chunk servers, R=3)"
"$B" dev up --dir "$WORK/blob" --port "$PORT" >/dev/null
pids_file "$WORK/blob"
python3 "$SHARED/workload.py" "${common[@]}" \
  --put-cmd "$B put {src} {key}" \
  --get-cmd "$B get {key} {dst}" \
  --range-cmd "$B get {key} - --range={start}-{end}" \
  --delete-cmd "$B rm {key}" \
  --data-dirs "$WORK/blob/cs-1 $WORK/blob/cs-2 $WORK/blob/cs-3 $WORK/blob/master" \
  --pids-file "$WORK/blob/pids" \
  --out-json "$OUT_DIR/blobstore.json" --out-md "$OUT_DIR/blobstore.md" >&2
log "Blobstore: $SMALL small files (4-64 KiB) in one process, blobctl put --recursive"
python3 - "$WORK/tree" "$SMALL" <<'PY'
import os, random, sys
directory, count = sys.argv[1], int(sys.argv[2])
os.makedirs(directory, exist_ok=True)
rng = random.Random(7)
for i in range(count):
    with open(os.path.join(directory, "f%05d.bin" % i), "wb") as f:
        f.write(rng.randbytes(rng.randint(4096, 65536)))
PY
"$B" put --recursive "$WORK/tree" small-tree --json > "$OUT_DIR/blobstore-put-recursive.json"
"$B" dev down --dir "$WORK/blob" >/dev/null

# --- SeaweedFS ---------------------------------------------------------------------------
log "SeaweedFS: start (master, 3 volume servers, filer; replication 002)"
SWFS_WIPE=1 "$PEER" start >/dev/null
eval "$("$PEER" env)"
unset S3_ENDPOINT   # the filer's native path only: the same kind of path as ours
FILER="http://127.0.0.1:$((17888 + ${SWFS_PORT_OFFSET:-0}))"
python3 "$SHARED/workload.py" "${common[@]}" \
  --put-cmd "curl -sSf -o /dev/null -T {src} $FILER/native/{key}" \
  --get-cmd "curl -sSf -o {dst} $FILER/native/{key}" \
  --range-cmd "curl -sSf -r {start}-{end} $FILER/native/{key}" \
  --delete-cmd "curl -sSf -o /dev/null -X DELETE $FILER/native/{key}" \
  --data-dirs "$STORE_DATA_DIRS" --pids-file "$STORE_PIDS_FILE" \
  --out-json "$OUT_DIR/seaweedfs.json" --out-md "$OUT_DIR/seaweedfs.md" >&2
"$PEER" stop >/dev/null

# --- Ten-day log archive ----------------------------------------------------------------
log "log archive: $SERIES_DAYS days of $SERIES_SIZE (gen.py series)"
python3 "$SHARED/data/gen.py" series "$SERIES_DAYS" "$SERIES_SIZE" "$WORK/days" >/dev/null
"$B" dev up --dir "$WORK/series" --port "$((PORT + 10))" >/dev/null
series_dirs=("$WORK/series/cs-1" "$WORK/series/cs-2" "$WORK/series/cs-3")
before=$(disk_bytes "${series_dirs[@]}")
logical=0
first_day_disk=0
for f in "$WORK"/days/day-*.log; do
  "$B" put "$f" "archive/$(basename "$f")" >/dev/null
  logical=$((logical + $(stat -c %s "$f")))
  if [ "$first_day_disk" = 0 ]; then sync; first_day_disk=$(( $(disk_bytes "${series_dirs[@]}") - before )); first_day_logical=$logical; fi
done
sync
after=$(disk_bytes "${series_dirs[@]}")
"$B" dev down --dir "$WORK/series" >/dev/null
echo "{\"logical\": $logical, \"disk\": $((after - before)), \"first_logical\": $first_day_logical, \"first_disk\": $first_day_disk}" > "$OUT_DIR/blobstore-series.json"
log "SeaweedFS log archive"
"$SHARED/series-seaweedfs.sh" "$SERIES_DAYS" "$SERIES_SIZE" | tee "$OUT_DIR/seaweedfs-series.txt" >&2

python3 "$ROOT/Benchmarks/compare_report.py" "$OUT_DIR" "$SIZE" "$SMALL" "$SERIES_DAYS" "$SERIES_SIZE" > "$OUT_DIR/compare.md"
python3 "$ROOT/Benchmarks/write_section.py" "$ROOT/docs/benchmarks.md" compare "Side by side with SeaweedFS" "$OUT_DIR/compare.md"
cat "$OUT_DIR/compare.md"
log "table written to docs/benchmarks.md; raw results in $OUT_DIR"
