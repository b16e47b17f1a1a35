#!/usr/bin/env python3
"""Random S3 requests signed by botocore (S3SigV4Auth, the signer boto3 and the aws CLI use), for the
gateway's verifier to check: a signature made by another implementation against our verification.

    python3 Tests/Gateway/sigv4_cases.py SEED COUNT

Prints one JSON object per request: method, raw path and query as they go on the wire, headers
(names lowercased), the access key and secret, and the signing time (Unix seconds).
"""
import hashlib
import json
import random
import sys
import urllib.parse

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

seed, count = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed)
alphabet = "abcXYZ019-_.~ +=!*'()$&,;:@%/€é日本\u00a0"


def word(n_max=12):
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, n_max)))


for _ in range(count):
    method = rng.choice(["GET", "PUT", "HEAD", "DELETE", "POST"])
    bucket = "".join(rng.choice("abcdefghij0123456789-") for _ in range(rng.randint(3, 12))).strip("-") or "bkt"
    key = "/".join(word() for _ in range(rng.randint(1, 4)))
    path = "/" + bucket + "/" + urllib.parse.quote(key, safe="/~")
    query = []
    for _ in range(rng.randint(0, 4)):
        name = rng.choice(["uploadId", "partNumber", "prefix", "delimiter", "max-keys", "x-id", word(6)])
        query.append((name, rng.choice(["", word(), str(rng.randint(0, 10_000))])))
    raw_query = urllib.parse.urlencode(query, quote_via=urllib.parse.quote, safe="~")
    body = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
    headers = {}
    for _ in range(rng.randint(0, 3)):
        headers["x-amz-meta-" + "".join(rng.choice("abcxyz-") for _ in range(5))] = rng.choice(
            ["v", "two  spaces", " padded ", "a,b", "x=1;y=2", "".join(rng.choice("abc XYZ09-_.") for _ in range(9))])
    if rng.random() < 0.5:
        headers["Content-Type"] = rng.choice(["application/octet-stream", "text/plain; charset=utf-8"])
    url = "http://127.0.0.1:9000" + path + ("?" + raw_query if raw_query else "")
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    request.context["payload_signing_enabled"] = True
    secret = "".join(rng.choice("ABCDEFabcdef0123456789/+") for _ in range(40))
    S3SigV4Auth(Credentials("AKIDEXAMPLE", secret), "s3", "us-east-1").add_auth(request)
    sent = {k.lower(): v for k, v in request.headers.items()}
    sent["host"] = "127.0.0.1:9000"
    print(json.dumps({
        "method": method, "rawPath": path, "rawQuery": raw_query, "headers": sent,
        "accessKey": "AKIDEXAMPLE", "secret": secret,
        "payloadSHA256": hashlib.sha256(body).hexdigest(),
    }))
