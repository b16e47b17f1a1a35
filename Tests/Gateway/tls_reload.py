#!/usr/bin/env python3
"""A server's certificate reloaded on SIGHUP, while a connection made before stays open.

    python3 Tests/Gateway/tls_reload.py HOST PORT PID CERT KEY CA_CERT CA_KEY LOG

HOST:PORT serves HTTPS with CERT and KEY (signed by CA_CERT, CA_KEY) as process PID, which logs to
LOG. Checks, each with a bounded wait:
  1. a broken key file and SIGHUP: the reload fails (logged), new connections still get the
     old certificate;
  2. a renewed certificate (openssl, same CA) and SIGHUP: new connections get it;
  3. the connection opened at the start, before both reloads, still answers, on the old
     certificate.
The last line printed is "certificate reload checks passed".
"""
import http.client
import os
import signal
import ssl
import subprocess
import sys
import tempfile
import time

host, port, pid, cert, key, ca_cert, ca_key, log = sys.argv[1:9]
port, pid = int(port), int(pid)
context = ssl.create_default_context(cafile=ca_cert)


def connect():
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=10)
    conn.request("GET", "/healthz")
    reply = conn.getresponse()
    reply.read()
    assert reply.status == 200, reply.status
    return conn, conn.sock.getpeercert()["serialNumber"]


def eventually(what, check, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("not within %d s: %s" % (seconds, what))


def log_text():
    with open(log, errors="replace") as f:
        return f.read()


first, serial = connect()
print("ok: serving certificate %s" % serial, flush=True)

# 1. A broken key: the reload fails and the server keeps its certificate.
original_key = open(key, "rb").read()
failures_before = log_text().count("reload failed")
with open(key + ".tmp", "w") as f:
    f.write("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
os.replace(key + ".tmp", key)
os.kill(pid, signal.SIGHUP)
eventually("the failed reload is logged", lambda: log_text().count("reload failed") > failures_before)
conn, now = connect()
conn.close()
assert now == serial, (now, serial)
with open(key + ".tmp", "wb") as f:
    f.write(original_key)
os.replace(key + ".tmp", key)
print("ok: a broken key file is refused, the old certificate stays", flush=True)

# 2. A renewed certificate for the same names, signed by the same CA.
with tempfile.TemporaryDirectory() as work:
    new_key, csr, new_cert, ext = (os.path.join(work, n) for n in ("new.key", "new.csr", "new.pem", "ext.cnf"))
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n"
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n")
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, timeout=60)
    run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", new_key)
    run("openssl", "req", "-new", "-key", new_key, "-subj", "/O=Blobstore/CN=renewed", "-out", csr)
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial", "-days", "30",
        "-extfile", ext, "-out", new_cert)
    with open(cert + ".tmp", "wb") as f:
        f.write(open(new_cert, "rb").read())
    with open(key + ".tmp", "wb") as f:
        f.write(open(new_key, "rb").read())
os.replace(key + ".tmp", key)
os.replace(cert + ".tmp", cert)
os.kill(pid, signal.SIGHUP)
renewed = []


def renewed_served():
    conn, now = connect()
    conn.close()
    if now != serial:
        renewed.append(now)
    return now != serial


eventually("new connections get the renewed certificate", renewed_served)
print("ok: new connections get the renewed certificate %s" % renewed[0], flush=True)

# 3. The first connection, open all along, still answers on its certificate.
first.request("GET", "/healthz")
reply = first.getresponse()
reply.read()
assert reply.status == 200, reply.status
assert first.sock.getpeercert()["serialNumber"] == serial
print("ok: the connection opened before both reloads still answers", flush=True)
print("certificate reload checks passed")
