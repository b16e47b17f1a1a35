#!/usr/bin/env bash
# Installs the client tools the gateway tests drive, when missing: curl, rclone, ffmpeg, chromium and openssl (Debian
# packages; the TLS test signs a renewed certificate with openssl), and boto3 and the aws CLI (Python packages); and
# Prometheus (Debian's), which the metrics test starts.
set -euo pipefail
sudo=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then sudo="sudo"; fi
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v rclone >/dev/null 2>&1 || missing+=(rclone)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/bin/prometheus ] || missing+=(prometheus)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-tools: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}"
fi
pip=()
python3 -c "import boto3" 2>/dev/null || pip+=(boto3)
command -v aws >/dev/null 2>&1 || pip+=(awscli)
if [ ${#pip[@]} -gt 0 ]; then
  echo "test-tools: installing ${pip[*]} from PyPI" >&2
  python3 -m pip install --quiet "${pip[@]}" 2>/dev/null || python3 -m pip install --quiet --break-system-packages "${pip[@]}"
fi
