#!/usr/bin/env python3
"""S3 clients against a running gateway: boto3 and the aws CLI, as users run them.

    python3 Tests/Gateway/s3_clients.py ENDPOINT ACCESS_KEY SECRET_KEY WORKDIR

Every check raises on failure; the last line printed is "all S3 client checks passed".
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

endpoint, access, secret, work = sys.argv[1:5]


def client(key=access, secret_key=secret, **config):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key, aws_secret_access_key=secret_key,
                        region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, **config))


def expect_error(code, call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}: {e}"
        return
    raise AssertionError(f"expected {code}, the call succeeded")


started = time.time()


def check(name):
    print("ok: %s (%.1f s)" % (name, time.time() - started), flush=True)


s3 = client()
s3.create_bucket(Bucket="media")
expect_error("BucketAlreadyOwnedByYou", s3.create_bucket, Bucket="media")
assert "media" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
s3.head_bucket(Bucket="media")
check("create, list and head bucket")

# A large object through boto3's transfer manager: multipart (8 MiB parts), then ranged and whole reads.
big = os.path.join(work, "big.bin")
size = int(os.environ.get("BIG_MIB", "300")) << 20
with open(big, "wb") as f:
    f.write(os.urandom(size))
digest = hashlib.sha256(open(big, "rb").read()).hexdigest()
s3.upload_file(big, "media", "videos/big.bin")
head = s3.head_object(Bucket="media", Key="videos/big.bin")
assert head["ContentLength"] == size and head["ETag"].endswith('-%d"' % ((size + (8 << 20) - 1) // (8 << 20))), head["ETag"]
back = os.path.join(work, "back.bin")
s3.download_file("media", "videos/big.bin", back)
assert hashlib.sha256(open(back, "rb").read()).hexdigest() == digest
part = s3.get_object(Bucket="media", Key="videos/big.bin", Range="bytes=%d-%d" % (size // 2, size // 2 + (1 << 20) - 1))
with open(big, "rb") as f:
    f.seek(size // 2)
    assert part["Body"].read() == f.read(1 << 20)
assert part["ContentRange"] == "bytes %d-%d/%d" % (size // 2, size // 2 + (1 << 20) - 1, size)
# One GET of the whole object and one open-ended range: the gateway plans them a page (64 MiB)
# at a time as the stream gets there.
def streamed_sha256(response):
    h = hashlib.sha256()
    for piece in iter(lambda: response["Body"].read(8 << 20), b""):
        h.update(piece)
    return h.hexdigest()
assert streamed_sha256(s3.get_object(Bucket="media", Key="videos/big.bin")) == digest
tail_from = size // 3 + 12345
with open(big, "rb") as f:
    f.seek(tail_from)
    tail_digest = hashlib.sha256(f.read()).hexdigest()
tail = s3.get_object(Bucket="media", Key="videos/big.bin", Range="bytes=%d-" % tail_from)
assert tail["ContentRange"] == "bytes %d-%d/%d" % (tail_from, size - 1, size), tail["ContentRange"]
assert streamed_sha256(tail) == tail_digest
check("multipart upload of %d MiB, download, ranged reads, whole and open-ended GETs" % (size >> 20))

# Single PUT with Content-MD5, server-side copy (shares chunks), delete.
body = os.urandom(300_000)
s3.put_object(Bucket="media", Key="small.bin", Body=body, ContentType="video/mp4")
got = s3.get_object(Bucket="media", Key="small.bin")
assert got["Body"].read() == body and got["ContentType"] == "video/mp4"
s3.copy_object(Bucket="media", Key="copy.bin", CopySource={"Bucket": "media", "Key": "small.bin"})
assert s3.get_object(Bucket="media", Key="copy.bin")["Body"].read() == body
s3.delete_object(Bucket="media", Key="copy.bin")
expect_error("404", s3.head_object, Bucket="media", Key="copy.bin")
expect_error("NoSuchKey", s3.get_object, Bucket="media", Key="copy.bin")
check("put, get, copy, delete")

# Bodies up to 1 MiB are checked in memory, larger ones in a spool file: both store the same
# bytes, and a body that does not match its declared length stores nothing in either.
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
def signed_put(key, body, headers):
    request = AWSRequest(method="PUT", url=endpoint + "/media/" + key, data=body, headers=headers)
    SigV4Auth(Credentials(access, secret), "s3", "us-east-1").add_auth(request)
    raw = urllib.request.Request(request.url, data=body, method="PUT", headers=dict(request.headers))
    try:
        with urllib.request.urlopen(raw) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
for n in (1 << 20, (1 << 20) + 1, 3 << 20):
    data = os.urandom(n)
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    s3.put_object(Bucket="media", Key="sized-%d.bin" % n, Body=data, ContentMD5=md5)
    assert s3.get_object(Bucket="media", Key="sized-%d.bin" % n)["Body"].read() == data, n
for declared, sent in ((10, 20), (10, 5), (2 << 20, 20), (2 << 20, 3 << 20)):
    piece = os.urandom(sent)
    chunked = b"%x\r\n" % sent + piece + b"\r\n0\r\n\r\n"
    status, reply = signed_put("lying-%d-%d.bin" % (declared, sent), chunked, {
        "Content-Encoding": "aws-chunked", "X-Amz-Content-SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "X-Amz-Decoded-Content-Length": str(declared)})
    assert status == 400 and b"IncompleteBody" in reply, (declared, sent, status, reply)
    expect_error("404", s3.head_object, Bucket="media", Key="lying-%d-%d.bin" % (declared, sent))
piece = os.urandom(20)
status, reply = signed_put("honest.bin", b"14\r\n" + piece + b"\r\n0\r\n\r\n", {
    "Content-Encoding": "aws-chunked", "X-Amz-Content-SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "X-Amz-Decoded-Content-Length": "20"})
assert status == 200, (status, reply)
assert s3.get_object(Bucket="media", Key="honest.bin")["Body"].read() == piece
for key in ["honest.bin"] + ["sized-%d.bin" % n for n in (1 << 20, (1 << 20) + 1, 3 << 20)]:
    s3.delete_object(Bucket="media", Key=key)
check("bodies in memory and spooled store the same bytes; a body unlike its declared length stores nothing")

s3.put_object(Bucket="media", Key="meta.bin", Body=b"m", Metadata={"mtime": "1700000000", "owner": "films"})
assert s3.head_object(Bucket="media", Key="meta.bin")["Metadata"] == {"mtime": "1700000000", "owner": "films"}
s3.copy_object(Bucket="media", Key="meta-copy.bin", CopySource={"Bucket": "media", "Key": "meta.bin"})
assert s3.head_object(Bucket="media", Key="meta-copy.bin")["Metadata"] == {"mtime": "1700000000", "owner": "films"}
s3.copy_object(Bucket="media", Key="meta-copy.bin", CopySource={"Bucket": "media", "Key": "meta.bin"},
               MetadataDirective="REPLACE", Metadata={"owner": "music"}, ContentType="audio/flac")
replaced = s3.head_object(Bucket="media", Key="meta-copy.bin")
assert replaced["Metadata"] == {"owner": "music"} and replaced["ContentType"] == "audio/flac"
mp = s3.create_multipart_upload(Bucket="media", Key="meta-mp.bin", Metadata={"kind": "multipart"})
part = s3.upload_part(Bucket="media", Key="meta-mp.bin", UploadId=mp["UploadId"], PartNumber=1, Body=b"only part")
s3.complete_multipart_upload(Bucket="media", Key="meta-mp.bin", UploadId=mp["UploadId"],
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
assert s3.head_object(Bucket="media", Key="meta-mp.bin")["Metadata"] == {"kind": "multipart"}
assert s3.get_object(Bucket="media", Key="meta-mp.bin")["Body"].read() == b"only part"
expect_error("MetadataTooLarge", s3.put_object, Bucket="media", Key="big-meta", Body=b"x", Metadata={"a": "b" * 3000})
for k in ("meta.bin", "meta-copy.bin", "meta-mp.bin"):
    s3.delete_object(Bucket="media", Key=k)
check("user metadata (put, copy, replace, multipart)")

# Listing 2,500 keys: pages of 1,000, delimiters, prefixes, start-after, v1 markers.
keys = ["logs/%s/%04d.log" % ("a" if i % 2 else "b", i) for i in range(2500)]
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(8) as pool:
    list(pool.map(lambda k: s3.put_object(Bucket="media", Key=k, Body=k.encode()), keys))
listed = []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="media", Prefix="logs/"):
    assert page["KeyCount"] <= 1000
    listed += [c["Key"] for c in page.get("Contents", [])]
assert listed == sorted(keys), "v2 pages give every key once, in order"
top = s3.list_objects_v2(Bucket="media", Delimiter="/")
assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["logs/", "videos/"] and [c["Key"] for c in top["Contents"]] == ["small.bin"]
sub = s3.list_objects_v2(Bucket="media", Prefix="logs/", Delimiter="/")
assert [p["Prefix"] for p in sub["CommonPrefixes"]] == ["logs/a/", "logs/b/"] and "Contents" not in sub
after = s3.list_objects_v2(Bucket="media", Prefix="logs/b/", StartAfter="logs/b/2400.log")
assert [c["Key"] for c in after["Contents"]] == sorted(k for k in keys if k.startswith("logs/b/") and k > "logs/b/2400.log")
v1 = []
for page in s3.get_paginator("list_objects").paginate(Bucket="media", Prefix="logs/a/"):
    v1 += [c["Key"] for c in page.get("Contents", [])]
assert v1 == sorted(k for k in keys if k.startswith("logs/a/"))
check("listing 2,500 keys (v2 pages, delimiters, start-after, v1)")

gone = sorted(keys)[:10]
result = s3.delete_objects(Bucket="media", Delete={"Objects": [{"Key": k} for k in gone] + [{"Key": "logs/never-there"}]})
assert sorted(d["Key"] for d in result["Deleted"]) == sorted(gone + ["logs/never-there"]) and not result.get("Errors")
left = [c["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="media", Prefix="logs/") for c in page.get("Contents", [])]
assert left == sorted(keys)[10:]
check("delete objects")

# Presigned GET (SigV4 and the legacy default), and an expired one.
url = client(signature_version="s3v4").generate_presigned_url(
    "get_object", Params={"Bucket": "media", "Key": "small.bin"}, ExpiresIn=60)
assert urllib.request.urlopen(url).read() == body
assert urllib.request.urlopen(s3.generate_presigned_url("get_object", Params={"Bucket": "media", "Key": "small.bin"})).read() == body
expired = client(signature_version="s3v4").generate_presigned_url(
    "get_object", Params={"Bucket": "media", "Key": "small.bin"}, ExpiresIn=2)
# Valid while fresh, refused once it has expired: poll (bounded) for the refusal rather than
# sleeping past the expiry and trusting that the URL was ever good.
if urllib.request.urlopen(expired).read() != body:
    raise AssertionError("a fresh presigned URL did not read the object")
deadline = time.monotonic() + 20
refusal = None
while refusal is None:
    try:
        urllib.request.urlopen(expired).read()
    except urllib.error.HTTPError as e:
        refusal = (e.code, e.read())
        break
    if time.monotonic() > deadline:
        raise AssertionError("a presigned URL was still accepted 20 s after it expired")
    time.sleep(0.1)
if not (refusal[0] == 403 and b"AccessDenied" in refusal[1]):
    raise AssertionError(f"an expired presigned URL got {refusal}")
check("presigned URLs")

# Bad input: wrong key, wrong secret, invalid bucket name, parts out of order, not empty.
expect_error("InvalidAccessKeyId", client(key="BKNOSUCHKEY000000000").list_buckets)
expect_error("SignatureDoesNotMatch", client(secret_key="wrong" + secret[5:]).list_buckets)
expect_error("InvalidBucketName", s3.create_bucket, Bucket="Bad_Name")
expect_error("KeyTooLongError", s3.put_object, Bucket="media", Key="k" * 1025, Body=b"x")
expect_error("NoSuchBucket", s3.put_object, Bucket="nosuchbucket", Key="k", Body=b"x")
expect_error("NoSuchBucket", s3.get_object, Bucket="nosuchbucket", Key="k")
expect_error("NoSuchBucket", s3.get_object, Bucket="nosuchbucket", Key="k", Range="bytes=0-9")
up = s3.create_multipart_upload(Bucket="media", Key="order.bin")
p1 = s3.upload_part(Bucket="media", Key="order.bin", UploadId=up["UploadId"], PartNumber=1, Body=os.urandom(5 << 20))
p2 = s3.upload_part(Bucket="media", Key="order.bin", UploadId=up["UploadId"], PartNumber=2, Body=b"tail")
parts = s3.list_parts(Bucket="media", Key="order.bin", UploadId=up["UploadId"])["Parts"]
assert [p["PartNumber"] for p in parts] == [1, 2]
expect_error("InvalidPartOrder", s3.complete_multipart_upload, Bucket="media", Key="order.bin", UploadId=up["UploadId"],
             MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": p2["ETag"]}, {"PartNumber": 1, "ETag": p1["ETag"]}]})
expect_error("InvalidPart", s3.complete_multipart_upload, Bucket="media", Key="order.bin", UploadId=up["UploadId"],
             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p2["ETag"]}]})
expect_error("404", s3.head_object, Bucket="media", Key="order.bin")
s3.abort_multipart_upload(Bucket="media", Key="order.bin", UploadId=up["UploadId"])
expect_error("NoSuchUpload", s3.list_parts, Bucket="media", Key="order.bin", UploadId=up["UploadId"])
expect_error("BucketNotEmpty", s3.delete_bucket, Bucket="media")
expect_error("NoSuchBucket", s3.list_objects_v2, Bucket="nothere")
check("bad input gets the right S3 errors")

# S3's ETag is the MD5 of a PUT body; stored headers come back; folder markers are keys.
body = os.urandom(1000)
put = s3.put_object(Bucket="media", Key="etag.bin", Body=body, CacheControl="max-age=60",
                    ContentDisposition='attachment; filename="e.bin"', Metadata={"origin": "test"})
assert put["ETag"] == '"%s"' % hashlib.md5(body).hexdigest(), put["ETag"]
head = s3.head_object(Bucket="media", Key="etag.bin")
assert head["ETag"] == put["ETag"] and head["CacheControl"] == "max-age=60", head
assert head["ContentDisposition"] == 'attachment; filename="e.bin"' and head["Metadata"] == {"origin": "test"}, head
s3.put_object(Bucket="media", Key="folder/", Body=b"")
assert [c["Key"] for c in s3.list_objects_v2(Bucket="media", Prefix="folder")["Contents"]] == ["folder/"]
check("MD5 ETag, stored headers, folder marker")

# Conditional writes: If-None-Match: * only creates, If-Match only replaces that ETag, and a
# refused write leaves the object as it was.
expect_error("PreconditionFailed", s3.put_object, Bucket="media", Key="etag.bin", Body=b"other", IfNoneMatch="*")
expect_error("PreconditionFailed", s3.put_object, Bucket="media", Key="etag.bin", Body=b"other",
             IfMatch='"00000000000000000000000000000000"')
expect_error("NoSuchKey", s3.put_object, Bucket="media", Key="absent.bin", Body=b"other", IfMatch=put["ETag"])
assert s3.get_object(Bucket="media", Key="etag.bin")["Body"].read() == body
created = s3.put_object(Bucket="media", Key="once.bin", Body=b"first", IfNoneMatch="*")
replaced = s3.put_object(Bucket="media", Key="once.bin", Body=b"second", IfMatch=created["ETag"])
expect_error("PreconditionFailed", s3.put_object, Bucket="media", Key="once.bin", Body=b"third", IfMatch=created["ETag"])
assert s3.get_object(Bucket="media", Key="once.bin")["Body"].read() == b"second"
expect_error("NoSuchKey", s3.put_object, Bucket="media", Key="absent.bin", Body=b"other", IfMatch="*")
s3.put_object(Bucket="media", Key="once.bin", Body=b"second", IfMatch="*")
up = s3.create_multipart_upload(Bucket="media", Key="once.bin")
p1 = s3.upload_part(Bucket="media", Key="once.bin", UploadId=up["UploadId"], PartNumber=1, Body=b"mp")
expect_error("PreconditionFailed", s3.complete_multipart_upload, Bucket="media", Key="once.bin", UploadId=up["UploadId"],
             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}]}, IfNoneMatch="*")
s3.complete_multipart_upload(Bucket="media", Key="once.bin", UploadId=up["UploadId"],
                             MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": p1["ETag"]}]}, IfMatch=replaced["ETag"])
assert s3.get_object(Bucket="media", Key="once.bin")["Body"].read() == b"mp"
check("conditional writes (PUT and multipart completion)")

# Flexible checksums: verified on PUT (header or aws-chunked trailer), kept, returned on request;
# a wrong one stores nothing; a multipart upload's checksum is made from its parts'.
import base64
import zlib
def b64(data):
    return base64.b64encode(data).decode()
sha_put = s3.put_object(Bucket="media", Key="sum.bin", Body=body, ChecksumAlgorithm="SHA256")
assert sha_put["ChecksumSHA256"] == b64(hashlib.sha256(body).digest()), sha_put
assert "ChecksumSHA256" not in s3.head_object(Bucket="media", Key="sum.bin")
assert s3.head_object(Bucket="media", Key="sum.bin", ChecksumMode="ENABLED")["ChecksumSHA256"] == sha_put["ChecksumSHA256"]
crc_put = s3.put_object(Bucket="media", Key="crc.bin", Body=body, ChecksumCRC32=b64(zlib.crc32(body).to_bytes(4, "big")))
assert crc_put["ChecksumCRC32"] == b64(zlib.crc32(body).to_bytes(4, "big"))
expect_error("BadDigest", s3.put_object, Bucket="media", Key="badsum.bin", Body=body, ChecksumCRC32="AAAAAA==")
expect_error("404", s3.head_object, Bucket="media", Key="badsum.bin")
up = s3.create_multipart_upload(Bucket="media", Key="summed.bin", ChecksumAlgorithm="SHA256")
assert up["ChecksumAlgorithm"] == "SHA256"
pieces = [os.urandom(5 << 20), b"last"]
parts = []
for number, piece in enumerate(pieces, start=1):
    r = s3.upload_part(Bucket="media", Key="summed.bin", UploadId=up["UploadId"], PartNumber=number, Body=piece, ChecksumAlgorithm="SHA256")
    assert r["ChecksumSHA256"] == b64(hashlib.sha256(piece).digest())
    parts.append({"PartNumber": number, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]})
expect_error("BadDigest", s3.complete_multipart_upload, Bucket="media", Key="summed.bin", UploadId=up["UploadId"],
             MultipartUpload={"Parts": parts}, ChecksumSHA256=b64(hashlib.sha256(b"other").digest()))
done = s3.complete_multipart_upload(Bucket="media", Key="summed.bin", UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
composite = b64(hashlib.sha256(b"".join(hashlib.sha256(p).digest() for p in pieces)).digest()) + "-2"
assert done["ChecksumSHA256"] == composite, (done, composite)
assert s3.head_object(Bucket="media", Key="summed.bin", ChecksumMode="ENABLED")["ChecksumSHA256"] == composite
attrs = s3.get_object_attributes(Bucket="media", Key="summed.bin", ObjectAttributes=["ETag", "Checksum", "ObjectParts", "ObjectSize"])
assert attrs["ObjectSize"] == sum(len(p) for p in pieces) and attrs["Checksum"]["ChecksumSHA256"] == composite, attrs
assert [(p["PartNumber"], p["Size"]) for p in attrs["ObjectParts"]["Parts"]] == [(1, 5 << 20), (2, 4)], attrs
second = s3.get_object(Bucket="media", Key="summed.bin", PartNumber=2)
assert second["PartsCount"] == 2 and second["Body"].read() == b"last" and second["ETag"] == parts[1]["ETag"], second
assert s3.head_object(Bucket="media", Key="summed.bin", PartNumber=1)["ContentLength"] == 5 << 20
expect_error("InvalidPart", s3.get_object, Bucket="media", Key="summed.bin", PartNumber=3)
# Conditions by part number are on the object, as for a whole GET.
object_etag = s3.head_object(Bucket="media", Key="summed.bin")["ETag"]
expect_error("PreconditionFailed", s3.get_object, Bucket="media", Key="summed.bin", PartNumber=2, IfMatch='"nope"')
expect_error("304", s3.get_object, Bucket="media", Key="summed.bin", PartNumber=2, IfNoneMatch=object_etag)
assert s3.get_object(Bucket="media", Key="summed.bin", PartNumber=2, IfMatch=object_etag)["Body"].read() == b"last"
assert s3.get_object(Bucket="media", Key="sum.bin", PartNumber=1)["Body"].read() == body  # a single-part object is part 1
check("flexible checksums: PUT, bad digest refused, multipart composite; parts by number and in GetObjectAttributes")

# Conditional copies, and a copy onto itself without a change.
expect_error("PreconditionFailed", s3.copy_object, Bucket="media", Key="etag2.bin", CopySource="media/etag.bin",
             CopySourceIfMatch='"00000000000000000000000000000000"')
expect_error("PreconditionFailed", s3.copy_object, Bucket="media", Key="etag2.bin", CopySource="media/etag.bin",
             CopySourceIfNoneMatch=put["ETag"])
expect_error("404", s3.head_object, Bucket="media", Key="etag2.bin")
copied = s3.copy_object(Bucket="media", Key="etag2.bin", CopySource="media/etag.bin", CopySourceIfMatch=put["ETag"])
assert copied["CopyObjectResult"]["ETag"] == put["ETag"]
assert s3.get_object(Bucket="media", Key="etag2.bin")["Body"].read() == body
expect_error("InvalidRequest", s3.copy_object, Bucket="media", Key="etag.bin", CopySource="media/etag.bin")
check("conditional copy, copy onto itself refused")

# Multipart with ranged part copies: the S3 ETag (MD5 of the parts' MD5s), and a repeated
# completion answers the same.
up = s3.create_multipart_upload(Bucket="media", Key="ranged.bin")
ranges = [(0, (5 << 20) - 1), (10_000_000, 10_000_999)]
parts = []
for number, (first, last) in enumerate(ranges, start=1):
    r = s3.upload_part_copy(Bucket="media", Key="ranged.bin", UploadId=up["UploadId"], PartNumber=number,
                            CopySource="media/videos/big.bin", CopySourceRange="bytes=%d-%d" % (first, last))
    parts.append({"PartNumber": number, "ETag": r["CopyPartResult"]["ETag"]})
with open(big, "rb") as f:
    pieces = []
    for first, last in ranges:
        f.seek(first)
        pieces.append(f.read(last - first + 1))
for part, piece in zip(parts, pieces):
    assert part["ETag"] == '"%s"' % hashlib.md5(piece).hexdigest(), part
done = s3.complete_multipart_upload(Bucket="media", Key="ranged.bin", UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
again = s3.complete_multipart_upload(Bucket="media", Key="ranged.bin", UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
expected_etag = '"%s-2"' % hashlib.md5(b"".join(hashlib.md5(p).digest() for p in pieces)).hexdigest()
assert done["ETag"] == expected_etag and again["ETag"] == expected_etag, (done["ETag"], again["ETag"], expected_etag)
assert s3.get_object(Bucket="media", Key="ranged.bin")["Body"].read() == b"".join(pieces)
check("ranged UploadPartCopy, multipart ETag, repeated completion")

# Bucket ACLs: public-read lets anyone list and read; private again shuts them out.
def anonymous_status(url):
    try:
        return urllib.request.urlopen(url).status
    except urllib.error.HTTPError as e:
        return e.code
listing = endpoint + "/media?list-type=2&prefix=etag"
assert anonymous_status(listing) == 403
s3.put_bucket_acl(Bucket="media", ACL="public-read")
grants = s3.get_bucket_acl(Bucket="media")["Grants"]
assert any(g["Grantee"].get("URI", "").endswith("/AllUsers") and g["Permission"] == "READ" for g in grants), grants
assert b"<Key>etag.bin</Key>" in urllib.request.urlopen(listing).read()
assert urllib.request.urlopen(endpoint + "/media/etag.bin").read() == body
s3.put_bucket_acl(Bucket="media", ACL="private")
assert anonymous_status(listing) == 403 and anonymous_status(endpoint + "/media/etag.bin") == 403
check("bucket ACL public-read and back to private")

# Lifecycle configuration: kept and read back; unsupported actions refused, never ignored.
rules = [{"ID": "old-logs", "Filter": {"Prefix": "logs/"}, "Status": "Enabled", "Expiration": {"Days": 30},
          "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 2}}]
expect_error("NoSuchLifecycleConfiguration", s3.get_bucket_lifecycle_configuration, Bucket="media")
s3.put_bucket_lifecycle_configuration(Bucket="media", LifecycleConfiguration={"Rules": rules})
got = s3.get_bucket_lifecycle_configuration(Bucket="media")["Rules"]
assert got[0]["ID"] == "old-logs" and got[0]["Expiration"]["Days"] == 30 and got[0]["Filter"]["Prefix"] == "logs/", got
expect_error("NotImplemented", s3.put_bucket_lifecycle_configuration, Bucket="media", LifecycleConfiguration={"Rules": [
    {"ID": "cold", "Filter": {"Prefix": ""}, "Status": "Enabled", "Transitions": [{"Days": 30, "StorageClass": "GLACIER"}]}]})
assert s3.get_bucket_lifecycle_configuration(Bucket="media")["Rules"][0]["ID"] == "old-logs"
s3.delete_bucket_lifecycle(Bucket="media")
expect_error("NoSuchLifecycleConfiguration", s3.get_bucket_lifecycle_configuration, Bucket="media")
s3.head_bucket(Bucket="media")  # deleting the configuration left the bucket
check("bucket lifecycle configuration set, read, refused, deleted")

# POST Object: a browser form signed with a V4 policy (boto3 makes it), sent as a browser does.
def post_form(url, fields, filename, content):
    boundary = "----blobstore%d" % int(time.time() * 1000)
    out = b""
    for name, value in fields.items():
        out += b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (boundary.encode(), name.encode(), value.encode())
    out += (b"--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\nContent-Type: text/plain\r\n\r\n"
            % (boundary.encode(), filename.encode())) + content + b"\r\n--%s--\r\n" % boundary.encode()
    request = urllib.request.Request(url, data=out, method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=" + boundary})
    try:
        with urllib.request.urlopen(request) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
for version in ("s3", "s3v4"):  # boto3's default policy signature (V2), then V4
    form = client(signature_version=version).generate_presigned_post(
        "media", "forms/${filename}", Fields={"success_action_status": "201"},
        Conditions=[["content-length-range", 1, 1000], {"success_action_status": "201"}], ExpiresIn=300)
    signature = "signature" if version == "s3" else "x-amz-signature"
    assert signature in form["fields"], form["fields"]
    status, reply = post_form(form["url"], form["fields"], "note-%s.txt" % version, b"hello from a form")
    assert status == 201 and b"<Key>forms/note-%s.txt</Key>" % version.encode() in reply, (status, reply)
    assert s3.get_object(Bucket="media", Key="forms/note-%s.txt" % version)["Body"].read() == b"hello from a form"
    status, reply = post_form(form["url"], form["fields"], "big.txt", b"x" * 2000)
    assert status == 400 and b"EntityTooLarge" in reply, (status, reply)
    forged = dict(form["fields"])
    # Another value whatever the case (hex signatures compare case-insensitively).
    forged[signature] = ("0" if forged[signature][0] != "0" else "1") + forged[signature][1:]
    status, reply = post_form(form["url"], forged, "forged.txt", b"nope")
    assert status == 403 and b"SignatureDoesNotMatch" in reply, (status, reply)
expect_error("404", s3.head_object, Bucket="media", Key="forms/big.txt")
expect_error("404", s3.head_object, Bucket="media", Key="forms/forged.txt")
check("POST Object form uploads (V2 and V4 policies), too large and forged forms refused")

# Oversized header sections: S3's error while the parser accepts them, a bare 400 beyond; the
# object is not stored and the gateway goes on serving.
def put_with_header(size):
    request = urllib.request.Request(endpoint + "/media/huge-header.bin", data=b"x", method="PUT",
                                     headers={"X-Amz-Meta-Big": "a" * size})
    try:
        urllib.request.urlopen(request)
        return 200, b""
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (ConnectionError, urllib.error.URLError) as e:
        return 0, repr(e).encode()
status, reply = put_with_header(20_000)
assert status == 400 and b"RequestHeaderSectionTooLarge" in reply, (status, reply)
status, reply = put_with_header(200_000)
assert status in (400, 0), (status, reply)
expect_error("404", s3.head_object, Bucket="media", Key="huge-header.bin")
assert s3.get_object(Bucket="media", Key="etag.bin")["Body"].read() == body
check("oversized headers refused, gateway still serving")

# The aws CLI: copy up (multipart above 8 MiB) and down, list.
env = dict(os.environ, AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1")
aws = ["aws", "--endpoint-url", endpoint]
subprocess.run(aws + ["s3", "mb", "s3://cli"], env=env, check=True, stdout=subprocess.DEVNULL)
subprocess.run(aws + ["s3", "cp", big, "s3://cli/big.bin", "--only-show-errors"], env=env, check=True)
cli_back = os.path.join(work, "cli-back.bin")
subprocess.run(aws + ["s3", "cp", "s3://cli/big.bin", cli_back, "--only-show-errors"], env=env, check=True)
assert hashlib.sha256(open(cli_back, "rb").read()).hexdigest() == digest
ls = subprocess.run(aws + ["s3", "ls", "s3://cli/"], env=env, check=True, capture_output=True, text=True).stdout
assert "big.bin" in ls and str(size) in ls, ls
check("aws s3 cp up and down, ls")

# rclone: copy, check, sync (a change and a deletion), check again, check --download.
renv = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}  # rclone 1.60 fails on it over http
renv.update(RCLONE_CONFIG_BS_TYPE="s3", RCLONE_CONFIG_BS_PROVIDER="Other", RCLONE_CONFIG_BS_ENDPOINT=endpoint,
            RCLONE_CONFIG_BS_ACCESS_KEY_ID=access, RCLONE_CONFIG_BS_SECRET_ACCESS_KEY=secret, RCLONE_CONFIG_BS_FORCE_PATH_STYLE="true")
tree = os.path.join(work, "tree")
os.makedirs(os.path.join(tree, "sub"), exist_ok=True)
for name, n in (("a.bin", 3_000_000), ("sub/b.bin", 20_000_000), ("c.txt", 100)):
    with open(os.path.join(tree, name), "wb") as f:
        f.write(os.urandom(n))
def rclone(*args):
    subprocess.run(["rclone", "-q", "--retries", "1"] + list(args), env=renv, check=True, timeout=300)
rclone("mkdir", "bs:rcl")
rclone("copy", tree, "bs:rcl/tree")
rclone("check", tree, "bs:rcl/tree")
with open(os.path.join(tree, "c.txt"), "ab") as f:
    f.write(b"more")
os.remove(os.path.join(tree, "a.bin"))
rclone("sync", tree, "bs:rcl/tree")
rclone("check", tree, "bs:rcl/tree")
rclone("check", "--download", tree, "bs:rcl/tree")
remote = sorted(c["Key"] for c in s3.list_objects_v2(Bucket="rcl").get("Contents", []))
assert remote == ["tree/c.txt", "tree/sub/b.bin"], remote
check("rclone copy, sync, check")
print("all S3 client checks passed")
