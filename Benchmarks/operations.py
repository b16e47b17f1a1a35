#!/usr/bin/env python3
"""Rebalance and recovery benchmarks (issue 7), on a release blobctl, all on 127.0.0.1.

Rebalance: a master and 3 chunk servers hold SIZE of logical data (random bytes, as video);
a fourth server joins. Reports the dry run's bytes against the ideal 1/4 of stored bytes, the
copy rate throttled (first THROTTLED_SECONDS at THROTTLE) and unthrottled (the rest), and the
latency of a foreground 1 MiB ranged get during the move against idle.

Recovery: one of the 4 servers is killed (-9); after the grace period the master re-replicates.
Reports the time from the master declaring it down to fsck finding no chunk below R, and the
rate in MB/s per surviving server.

Every process started here is stopped by its PID.
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("SHARED", os.path.join(ROOT, "..", "shared", "bench"))
B = os.path.join(ROOT, ".build", "release", "blobctl")
SIZE = os.environ.get("SIZE", "4G")
FILES = int(os.environ.get("FILES", "16"))
THROTTLE = os.environ.get("THROTTLE", "50M")
THROTTLED_SECONDS = float(os.environ.get("THROTTLED_SECONDS", "15"))
GRACE_MS = int(os.environ.get("GRACE_MS", "10000"))


def units(text):
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(text[:-1]) * scale[text[-1]]) if text[-1] in scale else int(text)


class Cluster:
    def __init__(self, work):
        self.work = work
        self.procs = []
        self.secret = os.path.join(work, "secret")
        with open(self.secret, "w") as f:
            f.write(os.urandom(24).hex())
        self.env = dict(os.environ, BLOBCTL_CONFIG=os.path.join(work, "config.json"))

    def spawn(self, args, name):
        log = open(os.path.join(self.work, name + ".log"), "w")
        p = subprocess.Popen([B] + args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def wait_file(self, path, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if os.path.exists(path) and open(path).read().strip():
                return open(path).read().strip()
            time.sleep(0.05)
        raise SystemExit(f"timed out waiting for {path}")

    def start_master(self):
        d = os.path.join(self.work, "master")
        self.spawn(["master", "--data", d, "--listen", "127.0.0.1:0", "--secret-file", self.secret,
                    "--heartbeat-interval", "500", "--suspect-after", "3000", "--down-after", str(GRACE_MS),
                    "--repair-interval", "1s", "--repair-rate", "0", "--log-level", "warning"], "master")
        self.master = "http://" + self.wait_file(os.path.join(d, "listen-address"))

    def start_server(self, i):
        d = os.path.join(self.work, f"cs{i}")
        p = self.spawn(["chunkserver", "--data", d, "--listen", "127.0.0.1:0", "--secret-file", self.secret,
                        "--master", self.master, "--zone", f"z{i}", "--scrub-rate", "0",
                        "--heartbeat-interval", "500", "--log-level", "warning"], f"cs{i}")
        self.wait_file(os.path.join(d, "listen-address"))
        sid = self.wait_file(os.path.join(d, "server-id"))
        return p, sid

    def ctl(self, args, check=True, stdout=subprocess.PIPE):
        r = subprocess.run([B] + args + ["--master", self.master, "--secret-file", self.secret],
                           env=self.env, stdout=stdout, stderr=subprocess.PIPE, text=stdout == subprocess.PIPE)
        if check and r.returncode != 0:
            raise SystemExit(f"blobctl {' '.join(args)} failed: {r.stderr}")
        return r

    def json(self, args, check=True):
        r = self.ctl(args + ["--json"], check=check)
        return json.loads(r.stdout) if r.stdout.strip() else {}

    def wait(self, condition, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if condition():
                return
            time.sleep(0.2)
        raise SystemExit(f"timed out: {what}")

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def ranged_get_ms(cluster, path, offset):
    start = time.perf_counter()
    cluster.ctl(["get", path, "-", f"--range={offset}-{offset + (1 << 20) - 1}"], stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main():
    work = tempfile.mkdtemp(prefix="blob-ops-bench.")
    cluster = Cluster(work)
    try:
        cluster.start_master()
        servers = [cluster.start_server(i) for i in range(3)]
        cluster.wait(lambda: sum(1 for s in cluster.json(["cluster", "status"])["servers"] if s["state"] == "alive") == 3,
                     60, "3 servers alive")
        per_file = units(SIZE) // FILES
        t0 = time.time()
        for i in range(FILES):
            gen = subprocess.Popen([sys.executable, os.path.join(SHARED, "data", "gen.py"), "random", str(per_file),
                                    "/dev/stdout", "--seed", str(40 + i)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            r = subprocess.run([B, "put", "-", f"media/file-{i:03d}", "--master", cluster.master, "--secret-file", cluster.secret],
                               stdin=gen.stdout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cluster.env, text=True)
            gen.wait()
            if r.returncode != 0:
                raise SystemExit(f"put failed: {r.stderr}")
        load_s = time.time() - t0
        print(f"loaded {SIZE} in {FILES} files: {load_s:.0f} s")

        # Idle foreground latency.
        paths = [f"media/file-{i:03d}" for i in range(FILES)]
        idle = [ranged_get_ms(cluster, paths[i % FILES], (i * 7919 * 4096) % (per_file - (1 << 20))) for i in range(30)]

        _, new_id = cluster.start_server(3)
        cluster.wait(lambda: sum(1 for s in cluster.json(["cluster", "status"])["servers"] if s["state"] == "alive" and s["in_ring"]) == 4,
                     60, "fourth server in the ring")
        plan = cluster.json(["rebalance", "--dry-run", "--max-bytes-per-sec", THROTTLE])
        ideal = plan["stored_bytes"] / 4
        print(f"plan: copy {plan['copy_bytes']} of {plan['stored_bytes']} stored bytes; ideal {ideal:.0f} "
              f"({plan['copy_bytes'] / ideal:.3f}x ideal); {plan['copy_chunks']} chunks; "
              f"expected {plan['expected_seconds']:.0f} s at {THROTTLE}/s")

        during = []
        stop = threading.Event()

        def foreground():
            i = 0
            while not stop.is_set():
                during.append(ranged_get_ms(cluster, paths[i % FILES], (i * 104729 * 4096) % (per_file - (1 << 20))))
                i += 1

        reader = threading.Thread(target=foreground)
        reader.start()
        t0 = time.time()
        cluster.json(["rebalance", "--max-bytes-per-sec", THROTTLE, "--detach"])
        time.sleep(THROTTLED_SECONDS)
        moved_throttled = cluster.json(["rebalance", "stop"])["moved_bytes"]
        throttled_s = time.time() - t0
        t1 = time.time()
        final = cluster.json(["rebalance"])
        unthrottled_s = time.time() - t1
        stop.set()
        reader.join()
        moved_rest = final["moved_bytes"] - moved_throttled
        print(f"throttled at {THROTTLE}/s: {moved_throttled / 1e6:.0f} MB in {throttled_s:.1f} s = "
              f"{moved_throttled / 1e6 / throttled_s:.1f} MB/s")
        print(f"unthrottled: {moved_rest / 1e6:.0f} MB in {unthrottled_s:.1f} s = {moved_rest / 1e6 / unthrottled_s:.1f} MB/s")
        print(f"moved in all {final['moved_bytes']} bytes = {final['moved_bytes'] / ideal:.3f}x ideal; "
              f"deleted {final['deleted_chunks']} surplus replicas; state {final['state']}")
        print(f"foreground 1 MiB ranged get: idle p50 {statistics.median(idle):.0f} ms p99 {percentile(idle, .99):.0f} ms "
              f"(n={len(idle)}); during the move p50 {statistics.median(during):.0f} ms p99 {percentile(during, .99):.0f} ms "
              f"(n={len(during)})")
        fsck = cluster.json(["fsck"], check=False)
        print(f"after: misplaced {fsck['misplaced']}, under-replicated {fsck['under_replicated']}")

        # Recovery: lose one of four.
        before = {s["id"]: s["used_bytes"] for s in cluster.json(["cluster", "status"])["servers"]}
        victim_proc, victim = servers[0]
        lost_bytes = before[victim]
        victim_proc.kill()
        victim_proc.wait()
        t_kill = time.time()
        cluster.wait(lambda: any(s["id"] == victim and s["state"] == "down" for s in cluster.json(["cluster", "status"])["servers"]),
                     GRACE_MS / 1000 + 60, "victim down")
        t_down = time.time()

        def restored():
            report = cluster.json(["fsck"], check=False)
            return report.get("under_replicated", 1) == 0 and report.get("lost", 1) == 0

        cluster.wait(restored, 1800, "R copies restored")
        t_done = time.time()
        after = {s["id"]: s["used_bytes"] for s in cluster.json(["cluster", "status"])["servers"]}
        copied = sum(after[k] - before[k] for k in after if k != victim)
        seconds = t_done - t_down
        print(f"recovery: lost server held {lost_bytes / 1e6:.0f} MB; down after {t_down - t_kill:.1f} s (grace "
              f"{GRACE_MS / 1000:.0f} s); R copies back {seconds:.1f} s later; {copied / 1e6:.0f} MB copied = "
              f"{copied / 1e6 / seconds:.1f} MB/s in all, {copied / 1e6 / seconds / 3:.1f} MB/s per surviving server")
    finally:
        cluster.stop()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
