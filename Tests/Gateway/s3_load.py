"""S3 load through one endpoint until a stop file appears (HATopologyTests).

Usage: s3_load.py ENDPOINT KEY_ID SECRET BUCKET WORKDIR

Four threads each put an object of its own (deterministic bytes), read it back and compare,
head it and list the bucket, over and over. Each finished operation bumps WORKDIR/progress.
boto3 retries with its standard mode (5 attempts), and reads go through s3transfer's download
(which also retries a body cut off mid-stream): the test allows those retries and nothing more. When WORKDIR/stop exists (or after 300 s) the threads finish their current operation;
then every acknowledged object is read back once more and the summary is printed as JSON:
{"operations", "failures": [..], "acknowledged", "mismatched": [..]}.
"""
import hashlib, io, json, os, sys, threading, time

import boto3
from botocore.config import Config

endpoint, key_id, secret, bucket, work = sys.argv[1:6]
s3 = boto3.client(
    "s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
    region_name="us-east-1",
    config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=5, read_timeout=60),
)
stop_file = os.path.join(work, "stop")
deadline = time.monotonic() + 300
lock = threading.Lock()
state = {"operations": 0, "failures": [], "acknowledged": {}}


def body(client, i):
    seed = f"{client}-{i}".encode()
    size = 1000 + (i % 7) * 37_000
    block = hashlib.sha256(seed).digest()
    return (block * (size // len(block) + 1))[:size]


def done(n=1):
    with lock:
        state["operations"] += n
        with open(os.path.join(work, "progress.tmp"), "w") as f:
            f.write(str(state["operations"]))
        os.replace(os.path.join(work, "progress.tmp"), os.path.join(work, "progress"))


def worker(client):
    i = 0
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        key = f"load/c{client}/{i}"
        data = body(client, i)
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=data)
            with lock:
                state["acknowledged"][key] = (client, i)
            done()
            # download_fileobj, as `aws s3 cp` and boto3's download_file: s3transfer also retries
            # a body cut off mid-stream (the gateway serving it was killed), which get_object's
            # caller would have to retry itself.
            received = io.BytesIO()
            s3.download_fileobj(bucket, key, received)
            got = received.getvalue()
            if got != data:
                with lock:
                    state["failures"].append(f"get {key}: different bytes")
            done()
            s3.head_object(Bucket=bucket, Key=key)
            s3.list_objects_v2(Bucket=bucket, Prefix=f"load/c{client}/", MaxKeys=50)
            done(2)
        except Exception as error:  # a failure beyond boto3's own retries
            with lock:
                state["failures"].append(f"{key}: {error!r}")
        i += 1


s3.create_bucket(Bucket=bucket)
threads = [threading.Thread(target=worker, args=(c,)) for c in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
mismatched = []
for key, (client, i) in sorted(state["acknowledged"].items()):
    if s3.get_object(Bucket=bucket, Key=key)["Body"].read() != body(client, i):
        mismatched.append(key)
print(json.dumps({
    "operations": state["operations"], "failures": state["failures"],
    "acknowledged": len(state["acknowledged"]), "mismatched": mismatched,
}))
