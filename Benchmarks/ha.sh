#!/usr/bin/env bash
# The highly available topology (`blobctl dev up --ha`) measured on this machine:
#   1. time for `dev up --ha` to bring up etcd, Patroni x3, masters, servers, gateways, HAProxy;
#   2. commits/s and read plans/s (8 clients, one master) with synchronous replication, the
#      primary alone answering reads; the same with the two standbys answering read plans
#      (--metadata-replicas; each plan carries a write's position); then asynchronous
#      replication (Patroni's synchronous_mode switched off through its REST API);
#   3. kill -9 the PostgreSQL primary's node (Patroni and postmaster): time to the first
#      successful `blobctl put` after it (one put every 100 ms);
#   4. small objects through HAProxy with two gateways, then with one (8 boto3 threads).
# Usage: Benchmarks/ha.sh [BLOBCTL]   (default: .build/release/blobctl)
set -euo pipefail
blobctl=$(realpath "${1:-.build/release/blobctl}")
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/blob-ha.XXXXXX)
chmod 755 "$dir"
export BLOBCTL_CONFIG=$dir/config.json BLOBCTL_DEV_DIR=$dir/c
trap '"$blobctl" dev down --purge >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
port=19600
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }
pg() { /usr/lib/postgresql/15/bin/psql -X -q -At -h 127.0.0.1 -p "$1" -U postgres -d postgres -c "$2"; }
duty_port() {  # the PostgreSQL port of the node whose duty starts with $1
  "$blobctl" dev status --json | python3 -c "import json,sys;print([p['address'].split(':')[1] for p in json.load(sys.stdin)['processes'] if (p.get('duty') or '').startswith('$1')][0])"
}
hosts="127.0.0.1:$((port - 8)),127.0.0.1:$((port - 7)),127.0.0.1:$((port - 6))"

start=$(now)
"$blobctl" dev up --ha --port $port >/dev/null
echo "dev up --ha: a working cluster after $(since "$start") s"

primary=$(duty_port primary)
for mode in sync standbys async; do
  if [ "$mode" = async ]; then
    curl -fsS -XPATCH -d '{"synchronous_mode": false}' "http://127.0.0.1:$((port - 5))/config" >/dev/null
    for _ in $(seq 1 100); do
      [ -z "$(pg "$primary" 'SHOW synchronous_standby_names')" ] && break
      sleep 0.1
    done
  fi
  pg "$primary" "CREATE DATABASE bench_$mode"
  replicas=()
  [ "$mode" = standbys ] && replicas=(--metadata-replicas "postgres://postgres@$hosts/bench_$mode")
  "$blobctl" bench metadata --files 20000 --chunk-refs 20000 --chunks-per-file 100 --commits 5000 --clients 8 \
    --metadata "postgres://postgres@$hosts/bench_$mode" "${replicas[@]}" --dir "$dir/bench-$mode" >"$dir/$mode.txt" 2>&1
  echo "$mode, 8 clients, 1 master: $(grep -E '^(commits|read plans):' "$dir/$mode.txt" | tr '\n' ' ')"
done
curl -fsS -XPATCH -d '{"synchronous_mode": true}' "http://127.0.0.1:$((port - 5))/config" >/dev/null
for _ in $(seq 1 100); do
  [ -n "$(pg "$primary" 'SHOW synchronous_standby_names')" ] && break
  sleep 0.1
done

# Failover: the primary's whole node dies.
head -c 10000 /dev/urandom >"$dir/probe"
"$blobctl" put "$dir/probe" probe/0 >/dev/null
node=$("$blobctl" dev status --json | python3 -c "import json,sys;print([p['name'] for p in json.load(sys.stdin)['processes'] if (p.get('duty') or '').startswith('primary')][0])")
patroni=$("$blobctl" dev status --json | python3 -c "import json,sys;print([p['pid'] for p in json.load(sys.stdin)['processes'] if p['name']=='$node'][0])")
postmaster=$(head -1 "$dir/c/ha/$node/data/postmaster.pid")
kill -9 "$patroni" "$postmaster"
start=$(now)
i=1
for _ in $(seq 1 600); do
  if timeout 20 "$blobctl" put "$dir/probe" "probe/$i" >/dev/null 2>&1; then break; fi
  i=$((i + 1))
  sleep 0.1
done
echo "kill -9 of the PostgreSQL primary's node ($node): first successful put after $(since "$start") s"

# Small objects through HAProxy: two gateways, then one.
front=$(python3 -c "import json;print(json.load(open('$dir/c/cluster.json'))['gatewayURL'])")
key=$(python3 -c "import json;c=json.load(open('$dir/c/cluster.json'));print(c['accessKeyID'], c['secretAccessKey'])")
for gateways in 2 1; do
  if [ "$gateways" = 1 ]; then
    kill "$("$blobctl" dev status --json | python3 -c "import json,sys;print([p['pid'] for p in json.load(sys.stdin)['processes'] if p['name']=='gateway-2'][0])")"
    sleep 2  # HAProxy marks it down within 1 s (fall 2, inter 500 ms)
  fi
  python3 "$here/ha_small_objects.py" "$front" $key "small-$gateways" 2000 8
done
