"""PUT then GET N small objects (16 KiB) with T boto3 threads; prints objects per second.

Usage: ha_small_objects.py ENDPOINT KEY_ID SECRET BUCKET N THREADS
"""
import os, sys, time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

endpoint, key_id, secret, bucket, count, threads = sys.argv[1:7]
count, threads = int(count), int(threads)
s3 = boto3.client(
    "s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
    region_name="us-east-1", config=Config(max_pool_connections=threads * 2))
s3.create_bucket(Bucket=bucket)
bodies = [os.urandom(16384) for _ in range(64)]


def put(i):
    s3.put_object(Bucket=bucket, Key=f"o/{i}", Body=bodies[i % 64])


def get(i):
    assert s3.get_object(Bucket=bucket, Key=f"o/{i}")["Body"].read() == bodies[i % 64]


for name, fn in (("PUT", put), ("GET", get)):
    start = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(fn, range(count)))
    took = time.monotonic() - start
    print(f"{bucket}: {name} {count} x 16 KiB, {threads} threads: {count / took:.0f} objects/s")
