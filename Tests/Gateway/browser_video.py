#!/usr/bin/env python3
"""A real browser plays a video from the gateway: headless Chromium loads a page whose <video>
points at VIDEO_URL, seeks to 3 s, plays, and reports what happened to a local HTTP server
started here. Prints the reports; exits 0 once playback went past 3.5 s, 1 otherwise.

    python3 Tests/Gateway/browser_video.py VIDEO_URL [TIMEOUT_SECONDS]
"""
import http.server
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

video = sys.argv[1]
timeout = float(sys.argv[2]) if len(sys.argv) > 2 else 60
reports = []
done = threading.Event()

PAGE = """<!doctype html><html><body><video id="v" muted preload="auto" src="%s"></video>
<script>
const v = document.getElementById('v');
const report = (m) => fetch('/report?m=' + encodeURIComponent(m));
let seeked = false;
v.addEventListener('loadedmetadata', () => { report('duration=' + v.duration); v.currentTime = 3; });
v.addEventListener('seeked', () => { if (!seeked) { seeked = true; report('seeked=' + v.currentTime.toFixed(2)); v.play().catch(e => report('playfail ' + e)); } });
v.addEventListener('timeupdate', () => { if (seeked && v.currentTime > 3.5) { report('played=' + v.currentTime.toFixed(2)); v.pause(); } });
v.addEventListener('error', () => report('error ' + (v.error && v.error.code)));
</script></body></html>""" % video


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/report"):
            message = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("m", [""])[0]
            reports.append(message)
            if message.startswith("played=") or message.startswith("error") or message.startswith("playfail"):
                done.set()
            body = b"ok"
        else:
            body = PAGE.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
profile = tempfile.mkdtemp(prefix="chromium-profile-")
browser = subprocess.Popen(
    ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
     "--user-data-dir=" + profile, "http://127.0.0.1:%d/page.html" % server.server_address[1]],
    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    done.wait(timeout)
finally:
    browser.terminate()
    try:
        browser.wait(timeout=10)
    except subprocess.TimeoutExpired:
        browser.kill()
    server.shutdown()
    subprocess.run(["rm", "-rf", profile])
for r in reports:
    print(r)
played = [r for r in reports if r.startswith("played=")]
sys.exit(0 if played and float(played[0].split("=")[1]) > 3.5 else 1)
