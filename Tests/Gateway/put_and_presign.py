"""Puts FILE at s3://BUCKET/KEY through a gateway and prints a presigned GET URL of it.

Usage: put_and_presign.py ENDPOINT ACCESS_KEY_ID SECRET BUCKET KEY FILE
"""
import sys

import boto3
from botocore.config import Config

endpoint, key_id, secret, bucket, key, path = sys.argv[1:7]
s3 = boto3.client(
    "s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
    region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
with open(path, "rb") as f:
    s3.put_object(Bucket=bucket, Key=key, Body=f.read())
print(s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600))
