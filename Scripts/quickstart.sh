#!/usr/bin/env bash
# A running local cluster from a fresh clone: system packages, a release build, `blobctl dev up`,
# then one put and one get to show it works. Safe to run again (the cluster is reused).
set -euo pipefail
cd "$(dirname "$0")/.."

bash Scripts/bootstrap.sh
swift build -c release --static-swift-stdlib --product blobctl
blobctl=.build/release/blobctl

"$blobctl" dev up "$@"

sample=$(mktemp)
trap 'rm -f "$sample" "$sample.copy"' EXIT
cp README.md "$sample"
"$blobctl" put "$sample" examples/README.md
"$blobctl" get examples/README.md "$sample.copy"
cmp "$sample" "$sample.copy"
echo "put and get of examples/README.md: identical bytes"
"$blobctl" ls -l examples/
cat <<TEXT

The cluster keeps running in the background. Next:
  $blobctl put FILE PATH        store a file (or - for standard input)
  $blobctl get PATH FILE        read it back (or - for standard output; --range=START-END)
  $blobctl ls -l / stat PATH / rm PATH / cluster status
  $blobctl dev down             stop it (data stays for the next dev up)
TEXT
