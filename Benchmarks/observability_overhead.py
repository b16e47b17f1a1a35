#!/usr/bin/env python3
"""One arm of the observability overhead benchmark, against a running gateway.

  observability_overhead.py ENDPOINT KEY SECRET PIDS_FILE OUT_JSON [--ranges N] [--puts N]

1 MiB ranged GETs of a 256 MiB random object (4 threads, warm boto3 clients), then small PUTs
(16 KiB random, 8 threads). For each: requests per second and the server CPU seconds (every
process in PIDS_FILE, from /proc/PID/stat) per 1,000 requests.
"""
import argparse
import json
import os
import random
import threading
import time

import boto3
from botocore.config import Config

parser = argparse.ArgumentParser()
parser.add_argument("endpoint")
parser.add_argument("key")
parser.add_argument("secret")
parser.add_argument("pids_file")
parser.add_argument("out")
parser.add_argument("--ranges", type=int, default=3000)
parser.add_argument("--puts", type=int, default=3000)
args = parser.parse_args()

TICKS = os.sysconf("SC_CLK_TCK")


def server_cpu():
    total = 0.0
    for line in open(args.pids_file):
        pid = line.split()[1]
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
        except FileNotFoundError:
            pass
    return total


def client():
    return boto3.client(
        "s3", endpoint_url=args.endpoint, aws_access_key_id=args.key, aws_secret_access_key=args.secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=16, retries={"max_attempts": 1}))


def run(threads, count, work):
    """`work(client, i)` count times over `threads` threads; returns (seconds, cpu seconds)."""
    clients = [client() for _ in range(threads)]
    next_index = [0]
    lock = threading.Lock()
    errors = []

    def loop(c):
        while True:
            with lock:
                i = next_index[0]
                next_index[0] += 1
            if i >= count:
                return
            try:
                work(c, i)
            except Exception as e:  # counted, not hidden
                errors.append(repr(e))

    cpu0, t0 = server_cpu(), time.monotonic()
    workers = [threading.Thread(target=loop, args=(c,)) for c in clients]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    seconds, cpu = time.monotonic() - t0, server_cpu() - cpu0
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, first: {errors[0]}")
    return seconds, cpu


s3 = client()
bucket = "overhead"
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
size = 256 << 20
rng = random.Random(7)
s3.put_object(Bucket=bucket, Key="big", Body=b"".join(rng.randbytes(1 << 20) for _ in range(size >> 20)))
offsets = [random.Random(i).randrange(0, size - (1 << 20)) for i in range(args.ranges)]


def ranged(c, i):
    start = offsets[i]
    body = c.get_object(Bucket=bucket, Key="big", Range=f"bytes={start}-{start + (1 << 20) - 1}")["Body"].read()
    assert len(body) == 1 << 20


payload = random.Random(11).randbytes(16 << 10)


def small(c, i):
    c.put_object(Bucket=bucket, Key=f"small/{i}", Body=payload[: (16 << 10) - (i % 64)])


# A short warm-up of both, then the measured runs.
run(4, 100, ranged)
run(8, 100, small)
rs, rc = run(4, args.ranges, ranged)
ps, pc = run(8, args.puts, small)
json.dump(
    {"ranged_per_s": args.ranges / rs, "ranged_cpu_per_1000": rc / args.ranges * 1000,
     "put_per_s": args.puts / ps, "put_cpu_per_1000": pc / args.puts * 1000}, open(args.out, "w"))
print(json.dumps(json.load(open(args.out))))
