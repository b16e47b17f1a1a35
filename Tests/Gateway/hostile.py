#!/usr/bin/env python3
"""Hostile requests against a running cluster's master, a chunk server and the gateway, on raw
sockets: each gets a 4xx answer with a JSON (master, chunk server) or S3 XML (gateway) body, or,
when no answer can be given (a body that never ends, a connection that trickles), the server
closes the connection in bounded time. Nothing stored changes, and the server answers the next
request.

    python3 Tests/Gateway/hostile.py MASTER CHUNKSERVER GATEWAY SECRET_FILE ACCESS_KEY SECRET_KEY

MASTER, CHUNKSERVER and GATEWAY are HOST:PORT. The last line printed is "hostile input checks passed".
"""
import hashlib
import hmac
import json
import socket
import sys
import time
import urllib.parse

master, chunkserver, gateway, secret_file, access_key, secret_key = sys.argv[1:7]
secret = open(secret_file, "rb").read().strip()
started = time.time()


def check(name):
    print("ok: %s (%.1f s)" % (name, time.time() - started), flush=True)


def token(role, method, path, expiry=None):
    expiry = int(time.time()) + 300 if expiry is None else expiry
    message = "v1\n%s\n%d\n%s\n%s" % (role, expiry, method, path)
    signature = hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()
    return "BlobToken v1:%s:%d:%s" % (role, expiry, signature)


def exchange(address, raw, timeout=15.0, linger=0.0):
    """Sends raw bytes; returns (status, headers, body) of the first answer, or (0, {}, b"") when
    the server closed the connection without one. Bounded by `timeout`."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(raw)
        if linger:
            time.sleep(linger)
        s.settimeout(timeout)
        data = b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                piece = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not piece:
                break
            data += piece
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l)}
                length = int(headers.get("content-length", "0") or 0)
                if len(rest) >= length:
                    return int(lines[0].split(" ")[1]), headers, rest[:length]
        return 0, {}, b""


def request(method, path, headers=(), body=b"", extra=b""):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1"] + ["%s: %s" % h for h in headers]
    if body and not any(h[0].lower() in ("content-length", "transfer-encoding") for h in headers):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body + extra


def expect_4xx(address, raw, kind, what, allow_close=False):
    status, headers, body = exchange(address, raw)
    if status == 0 and allow_close:
        return
    assert 400 <= status < 500, "%s: expected a 4xx, got %s %r" % (what, status, body[:300])
    if kind == "json":
        assert body.startswith(b"{") and {"code", "message"} <= set(json.loads(body)), "%s: not the JSON error: %r" % (
            what, body[:300])
    elif kind == "xml":
        assert body.startswith(b"<?xml") and b"<Error>" in body and b"<Code>" in body, "%s: body is not S3 XML: %r" % (what, body[:300])


def healthy(address):
    status, _, body = exchange(address, request("GET", "/healthz"))
    assert status == 200, "%s does not answer /healthz after the hostile input: %s %r" % (address, status, body)


def snapshot():
    """What is stored: the master's listing and status counters, a chunk server's inventory."""
    def get(address, path, role="client"):
        status, _, body = exchange(address, request("GET", path, [("Authorization", token(role, "GET", path))]))
        assert status == 200, (address, path, status, body[:200])
        return body
    listing = get(master, "/v1/list?prefix=&recursive=true")
    inventory = get(chunkserver, "/v1/chunks?limit=10000", role="master")
    return listing, inventory


# A public-read bucket with one object, made with boto3, so unsigned reads of hostile keys reach
# the key checks rather than stopping at the signature.
import boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url="http://" + gateway, aws_access_key_id=access_key,
                  aws_secret_access_key=secret_key, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
s3.create_bucket(Bucket="hostile", ACL="public-read")
s3.put_object(Bucket="hostile", Key="kept.txt", Body=b"kept")

before = snapshot()
targets = [(master, "json", "master"), (chunkserver, "json", "chunk server")]

# Tokens: expired, for another path, for another method, for a role the route does not take,
# a changed signature, none. (A token is not single-use: it authorises one method on one path
# until it expires, and replays on other paths or methods are refused.)
path = "/v1/ring"
for address, kind, name in targets:
    probe = "/v1/ring" if address == master else "/v1/chunks?limit=1"
    good = token("client" if address == master else "master", "GET", probe)
    cases = {
        "expired": token("client", "GET", probe, expiry=int(time.time()) - 10),
        "another path": token("client", "GET", probe + "x"),
        "another method": token("client", "DELETE", probe),
        "changed signature": good[:-1] + ("0" if good[-1] != "0" else "1"),
        "far future": token("client", "GET", probe, expiry=int(time.time()) + 86400),
        "not a token": "Bearer abc",
    }
    for why, value in cases.items():
        expect_4xx(address, request("GET", probe, [("Authorization", value)]), kind, "%s: %s token" % (name, why))
    expect_4xx(address, request("GET", probe), kind, "%s: no token" % name)
# A client token on a chunk-server route only the master may use (delete).
some = "/v1/chunks/" + "ab" * 32
expect_4xx(chunkserver, request("DELETE", some, [("Authorization", token("client", "DELETE", some))]), "json",
           "chunk server: a client token on a master-only route")
check("expired, replayed elsewhere, wrong-role, altered and missing tokens refused")

# Chunk ids that are not 64 hex digits, and paths that climb, hold NUL, or are not UTF-8.
for bad in ["/v1/chunks/xyz", "/v1/chunks/" + "g" * 64, "/v1/chunks/" + "a" * 63, "/v1/chunks/" + "a" * 65,
            "/v1/chunks/..%2F..%2Fetc%2Fpasswd", "/v1/chunks/%00" + "a" * 63]:
    expect_4xx(chunkserver, request("GET", bad, [("Authorization", token("client", "GET", bad))]), "json",
               "chunk server: chunk id %r" % bad)
for raw_path in ["../../etc/passwd", "a/%00/b", "a/%C0%AF/b", "a/%FF%FE/b", "a/./b", "a//b", "%2E%2E/x"]:
    p = "/v1/files?path=" + raw_path
    expect_4xx(master, request("GET", p, [("Authorization", token("client", "GET", p))]), "json",
               "master: path %r" % raw_path)
    expect_4xx(gateway, request("GET", "/hostile/" + raw_path), "xml", "gateway: key %r" % raw_path)
for key in ["a\x00b", "../x", "a//b", "a/./b", "x" * 2000]:
    try:
        s3.put_object(Bucket="hostile", Key=key, Body=b"no")
        raise AssertionError("the gateway stored the key %r" % key)
    except s3.exceptions.ClientError as e:
        assert 400 <= e.response["ResponseMetadata"]["HTTPStatusCode"] < 500, (key, e.response)
check("non-hex chunk ids; paths and keys with .., NUL, overlong and invalid UTF-8 refused")

# Oversized and duplicated headers, a declared length that disagrees with the body.
def expect_answer(address, raw, status, marker, what):
    got, _, body = exchange(address, raw)
    assert got == status and marker in body, "%s: expected %d with %r, got %s %r" % (what, status, marker, got, body[:300])


for address, name in ((master, "master"), (chunkserver, "chunk server")):
    expect_answer(address, request("GET", "/healthz", [("X-Big", "a" * 200_000)]), 431, b'"http.headersTooLarge"',
                  "%s: a 200 KB header" % name)
    expect_answer(address, request("GET", "/healthz", [("X-H%d" % i, "v") for i in range(3000)]), 431,
                  b'"http.headersTooLarge"', "%s: 3,000 headers" % name)
    expect_answer(address, request("PUT", "/v1/chunks/" + "cd" * 32, [("Content-Length", "5"), ("Content-Length", "7")],
                                   body=b"12345"), 400, b'"http.malformed"', "%s: two Content-Lengths" % name)
expect_answer(gateway, request("GET", "/healthz", [("X-Big", "a" * 200_000)]), 400,
              b"<Code>RequestHeaderSectionTooLarge</Code>", "gateway: a 200 KB header")
expect_answer(gateway, request("GET", "/healthz", [("X-H%d" % i, "v") for i in range(3000)]), 400,
              b"<Code>RequestHeaderSectionTooLarge</Code>", "gateway: 3,000 headers")
expect_answer(gateway, request("PUT", "/hostile/x", [("Content-Length", "5"), ("Content-Length", "7")], body=b"12345"),
              400, b"<Code>BadRequest</Code>", "gateway: two Content-Lengths")
frame_path = "/v1/chunks/" + "ef" * 32
# Bytes after the declared body: the PUT is answered first (its frame is refused), then the rest.
longer = request("PUT", frame_path, [("Authorization", token("client", "PUT", frame_path)), ("Content-Length", "10")],
                 body=b"0123456789", extra=b"GARBAGE-AFTER-THE-BODY")
expect_4xx(chunkserver, longer, "json", "chunk server: a body longer than declared")

# A signed upload through the gateway whose body is cut off midway (chunked transfer encoding,
# no length declared, the payload unsigned): nothing is stored.
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials


class UnsignedPayload(S3SigV4Auth):
    def _should_sha256_sign_payload(self, request):
        return False


cut = AWSRequest(method="PUT", url="http://%s/hostile/cut-off.bin" % gateway, headers={"Transfer-Encoding": "chunked"})
UnsignedPayload(Credentials(access_key, secret_key), "s3", "us-east-1").add_auth(cut)
headers = [(k, v) for k, v in cut.headers.items()]
host, port = gateway.rsplit(":", 1)
with socket.create_connection((host, int(port)), timeout=15) as conn:
    conn.sendall(request("PUT", "/hostile/cut-off.bin", headers) + b"10000\r\n" + b"z" * 30_000)
    time.sleep(0.3)
try:
    s3.head_object(Bucket="hostile", Key="cut-off.bin")
    raise AssertionError("the gateway stored an upload whose body was cut off")
except s3.exceptions.ClientError as e:
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 404, e.response
check("oversized and repeated headers, a body longer than declared, a signed upload cut off midway")

# Slow loris on every server: a request whose headers trickle in. Each server answers it in its
# own format (408 JSON; the gateway S3's RequestTimeout) and closes, within its 30 s deadline
# for a request's head; the answer is read at the end, after the other checks.
lorises = []
for address in (master, chunkserver, gateway):
    h, p = address.rsplit(":", 1)
    conn = socket.create_connection((h, int(p)), timeout=60)
    conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
    lorises.append((address, conn, time.time(), True))
    # And one that connects and sends nothing at all.
    silent = socket.create_connection((h, int(p)), timeout=60)
    lorises.append((address, silent, time.time(), False))

# A body shorter than declared, cut off midway, and a slow-loris header: the server closes the
# connection in bounded time and keeps answering everyone else meanwhile.
host, port = chunkserver.rsplit(":", 1)
short = socket.create_connection((host, int(port)), timeout=10)
short.sendall(request("PUT", frame_path, [("Authorization", token("client", "PUT", frame_path)),
                                          ("Content-Length", "1000000")], body=b"x" * 1000))
loris = socket.create_connection((host, int(port)), timeout=10)
loris.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
for _ in range(5):
    loris.sendall(b"a")
    healthy(chunkserver)
    time.sleep(0.2)
short.close()  # cut off midway
healthy(chunkserver)
loris.close()
check("short, cut-off and slow-loris connections do not stop the server answering")

# The gateway: S3 errors in XML for unsigned, badly signed and malformed requests.
expect_4xx(gateway, request("PUT", "/media/x.bin", body=b"abc"), "xml", "gateway: unsigned PUT")
expect_4xx(gateway, request("GET", "/media/x.bin", [("Authorization", "AWS4-HMAC-SHA256 garbage")]), "xml",
           "gateway: malformed SigV4 header")
expect_4xx(gateway, request("GET", "/media/x.bin?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x"), "xml",
           "gateway: malformed presigned query")
check("the gateway answers bad S3 requests in XML")

for address, conn, opened, trickle in lorises:
    data = b""
    while True:
        try:
            if trickle:
                conn.sendall(b"a")  # a byte now and then, as a slow loris does
        except OSError:
            pass
        try:
            conn.settimeout(1)
            piece = conn.recv(65536)
        except socket.timeout:
            assert time.time() - opened < 45, "%s: a trickling request is still open after 45 s" % address
            continue
        except OSError:
            break
        if not piece:
            break
        data += piece
    conn.close()
    elapsed = time.time() - opened
    head, _, body = data.partition(b"\r\n\r\n")
    if address == gateway:
        assert head.startswith(b"HTTP/1.1 400") and b"<Code>RequestTimeout</Code>" in body, (address, data[:300])
    else:
        assert head.startswith(b"HTTP/1.1 408") and b'"http.headTimeout"' in body, (address, data[:300])
    assert 25 < elapsed < 45, "%s: closed the trickling request after %.1f s" % (address, elapsed)
check("a request whose headers trickle in, and a connection that sends nothing, are answered and closed at the deadline")

for address in (master, chunkserver, gateway):
    healthy(address)
after = snapshot()
assert s3.get_object(Bucket="hostile", Key="kept.txt")["Body"].read() == b"kept"
assert after == before, "stored state changed: listing %r -> %r; inventory %d -> %d bytes" % (
    before[0][:200], after[0][:200], len(before[1]), len(after[1]))
check("nothing stored changed; every server still answers")
print("hostile input checks passed")
