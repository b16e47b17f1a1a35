#!/usr/bin/env bash
# Metadata reads from the PostgreSQL standbys against the primary alone, on `blobctl dev up --ha`
# (Patroni, synchronous replication): `blobctl bench metadata` (8 clients, one master) with and
# without --metadata-replicas, alternated ROUNDS times so that the machine's drift falls on both.
# With standbys, each read plan carries the position of a write made just before it.
# Usage: Benchmarks/ha_standby_reads.sh [ROUNDS] [BLOBCTL]   (default: 2, .build/release/blobctl)
set -euo pipefail
rounds=${1:-2}
blobctl=$(realpath "${2:-.build/release/blobctl}")
dir=$(mktemp -d /tmp/blob-hasr.XXXXXX)
chmod 755 "$dir"
export BLOBCTL_CONFIG=$dir/config.json BLOBCTL_DEV_DIR=$dir/c
trap '"$blobctl" dev down --purge >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
port=19600
pg() { /usr/lib/postgresql/15/bin/psql -X -q -At -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"; }
"$blobctl" dev up --ha --port $port >/dev/null
hosts="127.0.0.1:$((port - 8)),127.0.0.1:$((port - 7)),127.0.0.1:$((port - 6))"
primary=$("$blobctl" dev status --json | python3 -c "import json,sys;print([p['address'].split(':')[1] for p in json.load(sys.stdin)['processes'] if (p.get('duty') or '').startswith('primary')][0])")
for round in $(seq 1 "$rounds"); do
  for mode in primary standbys; do
    db=bench_${mode}_$round
    pg "$primary" "CREATE DATABASE $db"
    replicas=()
    [ "$mode" = standbys ] && replicas=(--metadata-replicas "postgres://postgres@$hosts/$db")
    "$blobctl" bench metadata --files 20000 --chunk-refs 20000 --chunks-per-file 100 --commits 5000 --clients 8 \
      --metadata "postgres://postgres@$hosts/$db" "${replicas[@]}" --dir "$dir/$db" >"$dir/$db.txt" 2>&1
    echo "round $round, reads from the $mode: $(grep -E '^(commits|read plans):' "$dir/$db.txt" | tr '\n' ' ')"
  done
done
