#!/usr/bin/env bash
# Failover times of a local cluster with several masters (`blobctl dev up --masters 3`):
#   1. kill -9 the leader: time until another master holds the lease (cluster status shows a
#      higher term), and until the new leader has finished a repair pass;
#   2. kill -9 a follower: time for a client that lists it first to get its first answer.
# Usage: Benchmarks/failover.sh [BLOBCTL]   (default: .build/release/blobctl)
set -euo pipefail
blobctl=${1:-.build/release/blobctl}
dir=$(mktemp -d /tmp/blob-failover.XXXXXX)
trap '"$blobctl" dev down --dir "$dir" --purge >/dev/null 2>&1 || true' EXIT
"$blobctl" dev up --dir "$dir" --masters 3 --port 19500 >/dev/null
masters=$(python3 -c "import json;print(json.load(open('$dir/cluster.json'))['masterURL'])")
export BLOBCTL_MASTER=$masters BLOBCTL_SECRET_FILE=$dir/secret
status() { "$blobctl" cluster status --json; }
now() { date +%s.%N; }
pid_of() { python3 -c "import json,sys;print([m['pid'] for m in json.load(open('$dir/cluster.json'))['members'] if m['address']==sys.argv[1]][0])" "$1"; }

leader=$(status | python3 -c "import json,sys;print(json.load(sys.stdin)['leader']['address'])")
term=$(status | python3 -c "import json,sys;print(json.load(sys.stdin)['leader']['term'])")
kill -9 "$(pid_of "$leader")"
start=$(now)
for _ in $(seq 1 600); do
  if status | python3 -c "import json,sys;s=json.load(sys.stdin);sys.exit(0 if s['leader']['term']>$term and s['leader']['expires_in_seconds']>0 else 1)" 2>/dev/null; then break; fi
  sleep 0.05
done
took=$(echo "$(now) - $start" | bc)
echo "leader killed: a new leader holds the lease after ${took} s"
# A follower runs no repair pass; the new leader's count becomes 1 when its first pass is done.
new_leader=$(status | python3 -c "import json,sys;print(json.load(sys.stdin)['leader']['address'])")
new_leader_id=$(status | python3 -c "import json,sys;print(json.load(sys.stdin)['leader']['id'])")
for _ in $(seq 1 600); do
  if BLOBCTL_MASTER="http://$new_leader" status | python3 -c "import json,sys;s=json.load(sys.stdin);sys.exit(0 if s['answered_by']=='$new_leader_id' and s['repair']['passes']>=1 else 1)" 2>/dev/null; then break; fi
  sleep 0.05
done
took=$(echo "$(now) - $start" | bc)
echo "leader killed: the new leader ($new_leader) finished its first repair pass after ${took} s"
survivors=$(echo "$masters" | tr ',' '\n' | grep -v "$leader" | paste -sd,)
follower=$(echo "$survivors" | cut -d, -f1 | sed 's|http://||')
kill -9 "$(pid_of "$follower")"
start=$(now)
BLOBCTL_MASTER="http://$follower,$survivors" "$blobctl" ls >/dev/null
took=$(echo "$(now) - $start" | bc)
echo "follower killed: a client listing it first answered after ${took} s (one blobctl ls, process start included)"
