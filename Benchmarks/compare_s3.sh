#!/usr/bin/env bash
# Our S3 gateway and SeaweedFS's S3 gateway side by side, in one run, through the shared driver
# (../shared/bench/workload.py, S3 mode: aws CLI uploads and downloads, presigned curl and warm
# boto3 ranged GETs, boto3 small files with 8 threads). 3 copies each.
#
#   bash Benchmarks/compare_s3.sh                 # SIZE=1G SMALL=2000
#   SIZE=512M SMALL=1000 bash Benchmarks/compare_s3.sh
#
# Writes the table to docs/benchmarks.md (between the compare-s3 markers) and to $OUT_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="${SHARED:-$ROOT/../shared/bench}"
SIZE="${SIZE:-1G}"; SMALL="${SMALL:-2000}"; RUNS="${RUNS:-1}"; PORT="${PORT:-19600}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/blob-compare-s3.XXXXXX")"
OUT_DIR="${OUT_DIR:-$WORK/out}"; mkdir -p "$OUT_DIR"
PEER="$SHARED/peers/seaweedfs.sh"
B="$ROOT/.build/release/blobctl"
export BLOBCTL_CONFIG="$WORK/config.json"

log() { echo "[compare-s3 $(date +%H:%M:%S)] $*" >&2; }
cleanup() {
  "$B" dev down --dir "$WORK/blob" >/dev/null 2>&1 || true
  "$PEER" stop >/dev/null 2>&1 || true
  if [ "${KEEP_DATA:-0}" != 1 ]; then rm -rf "$WORK/blob" "$WORK/scratch"; fi
}
trap cleanup EXIT

log "building blobctl (release)"
(cd "$ROOT" && swift build -c release --static-swift-stdlib --product blobctl >/dev/null)
mkdir -p "$WORK/scratch"
common=(--cases big,small --runs "$RUNS" --size "$SIZE" --small-count "$SMALL" --par 8 --workdir "$WORK/scratch" --bucket bench)

log "Blobstore: dev up (master, 3 chunk servers, gateway; R=3)"
"$B" dev up --dir "$WORK/blob" --port "$PORT" >/dev/null
"$B" bucket create bench >/dev/null
python3 -c 'import json,sys; c=json.load(open(sys.argv[1]+"/cluster.json")); [print(m["name"], m["pid"]) for m in c["members"]]' "$WORK/blob" > "$WORK/blob/pids"
read -r GW KEY SECRET < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]+"/cluster.json")); print(c["gatewayURL"], c["accessKeyID"], c["secretAccessKey"])' "$WORK/blob")
AWS_ACCESS_KEY_ID="$KEY" AWS_SECRET_ACCESS_KEY="$SECRET" AWS_DEFAULT_REGION=us-east-1 \
  python3 "$SHARED/workload.py" "${common[@]}" --s3-endpoint "$GW" \
  --data-dirs "$WORK/blob/cs-1 $WORK/blob/cs-2 $WORK/blob/cs-3 $WORK/blob/master" --pids-file "$WORK/blob/pids" \
  --out-json "$OUT_DIR/blobstore-s3.json" --out-md "$OUT_DIR/blobstore-s3.md" >&2
"$B" dev down --dir "$WORK/blob" >/dev/null

log "SeaweedFS: start (master, 3 volume servers, filer, S3; replication 002)"
SWFS_WIPE=1 "$PEER" start >/dev/null
eval "$("$PEER" env)"
python3 "$SHARED/workload.py" "${common[@]}" --s3-endpoint "$S3_ENDPOINT" \
  --data-dirs "$STORE_DATA_DIRS" --pids-file "$STORE_PIDS_FILE" \
  --out-json "$OUT_DIR/seaweedfs-s3.json" --out-md "$OUT_DIR/seaweedfs-s3.md" >&2
"$PEER" stop >/dev/null

python3 - "$OUT_DIR" "$SIZE" "$SMALL" > "$OUT_DIR/compare-s3.md" <<'PY'
import datetime, json, sys
out, size, small = sys.argv[1:4]
def load(name):
    d = json.load(open(f"{out}/{name}.json"))
    summary = {r["metric"]: r["median"] for r in d["summary"]}
    ttfb = {}
    for run in d["runs"]:
        for r in run.get("range") or []:
            if len(r) > 1 and r[1] is not None:
                ttfb.setdefault(run.get("kind"), []).append(r[1] * 1000)
    return summary, ttfb
(ours, our_ttfb), (theirs, their_ttfb) = load("blobstore-s3"), load("seaweedfs-s3")
def pct(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else None
rows = []
for kind in ("random", "logs"):
    p = f"s3.{kind}"
    rows.append((f"{size} {kind}: upload (aws s3 cp)", ours.get(p + ".upload_MBps"), theirs.get(p + ".upload_MBps"), True, "MB/s"))
    rows.append((f"{size} {kind}: download (aws s3 cp)", ours.get(p + ".download_MBps"), theirs.get(p + ".download_MBps"), True, "MB/s"))
    rows.append((f"{size} {kind}: 1 MiB range, presigned curl, TTFB p50", pct(our_ttfb.get(kind, []), .5), pct(their_ttfb.get(kind, []), .5), False, "ms"))
    rows.append((f"{size} {kind}: 1 MiB range, presigned curl, TTFB p99", pct(our_ttfb.get(kind, []), .99), pct(their_ttfb.get(kind, []), .99), False, "ms"))
    rows.append((f"{size} {kind}: 1 MiB range, warm boto3 client, TTFB", ours.get(p + ".range1MiB_warm_client_ttfb_ms"), theirs.get(p + ".range1MiB_warm_client_ttfb_ms"), False, "ms"))
    rows.append((f"{size} {kind}: bytes on disk per byte", ours.get(p + ".disk_bytes_per_logical_byte"), theirs.get(p + ".disk_bytes_per_logical_byte"), False, ""))
rows.append((f"{small} small files, boto3 8 threads: upload", ours.get("s3.small.upload_files_per_s"), theirs.get("s3.small.upload_files_per_s"), True, "files/s"))
rows.append((f"{small} small files, boto3 8 threads: download", ours.get("s3.small.download_files_per_s"), theirs.get("s3.small.download_files_per_s"), True, "files/s"))
print(f"Run {datetime.date.today()} by `Benchmarks/compare_s3.sh` (SIZE={size}, SMALL={small}); ratio = ours / SeaweedFS's, "
      "oriented so that > 1 is better for us.\n")
print("| measure | Blobstore | SeaweedFS | ratio |\n|---|---:|---:|---:|")
for label, a, b, higher, unit in rows:
    if a is None or b is None:
        print(f"| {label} | {a if a is not None else 'n/a'} | {b if b is not None else 'n/a'} | n/a |")
        continue
    ratio = (a / b) if higher else (b / a if a else float("inf"))
    fmt = (lambda x: f"{x:.3f}") if unit == "" else (lambda x: f"{x:.1f}")
    print(f"| {label} | {fmt(a)} {unit} | {fmt(b)} {unit} | {ratio:.2f}x |")
PY
python3 "$ROOT/Benchmarks/write_section.py" "$ROOT/docs/benchmarks.md" compare-s3 "S3 gateways side by side with SeaweedFS (Benchmarks/compare_s3.sh)" "$OUT_DIR/compare-s3.md"
cat "$OUT_DIR/compare-s3.md"
log "table written to docs/benchmarks.md; raw results in $OUT_DIR"
