#!/usr/bin/env python3
"""Builds the side-by-side table of Benchmarks/compare.sh from the driver's JSON results."""
import datetime
import json
import re
import sys

out_dir, size, small, days, series_size = sys.argv[1:6]


def summary(name):
    data = json.load(open(f"{out_dir}/{name}.json"))
    return {row["metric"]: row["median"] for row in data["summary"]}


ours, theirs = summary("blobstore"), summary("seaweedfs")


def peak(results, prefix):
    values = [v for k, v in results.items() if k.startswith(prefix + ".peak_rss_MiB.")]
    return max(values) if values else None


# (label, our value, their value, higher is better, target ratio or None, unit)
rows = []
for data in ("random", "logs"):
    p = f"native.{data}"
    rows.append((f"{size} {data}: upload", ours.get(p + ".upload_MBps"), theirs.get(p + ".upload_MBps"), True,
                 1.5 if data == "logs" else 1.0, "MB/s"))
    rows.append((f"{size} {data}: download", ours.get(p + ".download_MBps"), theirs.get(p + ".download_MBps"), True, 1.0, "MB/s"))
    rows.append((f"{size} {data}: 1 MiB range in the middle, time to first byte", ours.get(p + ".range1MiB_middle_ttfb_ms"),
                 theirs.get(p + ".range1MiB_middle_ttfb_ms"), False, 1.0, "ms"))
    rows.append((f"{size} {data}: bytes on disk per byte (all replicas)", ours.get(p + ".disk_bytes_per_logical_byte"),
                 theirs.get(p + ".disk_bytes_per_logical_byte"), False, 0.85 if data == "logs" else None, ""))
    rows.append((f"{size} {data}: largest server peak RSS", peak(ours, p), peak(theirs, p), False, None, "MiB"))
    rows.append((f"{size} {data}: all servers' peak RSS", ours.get(p + ".sum_rss_peak_MiB"), theirs.get(p + ".sum_rss_peak_MiB"),
                 False, None, "MiB"))
p = "native.small"
rows.append((f"{small} small files (4-64 KiB, 8 parallel): upload", ours.get(p + ".upload_files_per_s"),
             theirs.get(p + ".upload_files_per_s"), True, 1.0, "files/s"))
rows.append((f"{small} small files: download", ours.get(p + ".download_files_per_s"), theirs.get(p + ".download_files_per_s"),
             True, 1.0, "files/s"))
rows.append((f"{small} small files: bytes on disk per byte", ours.get(p + ".disk_bytes_per_logical_byte"),
             theirs.get(p + ".disk_bytes_per_logical_byte"), False, None, ""))
try:
    tree = json.load(open(f"{out_dir}/blobstore-put-recursive.json"))
    rows.append((f"{small} small files: upload by one `blobctl put --recursive` (no SeaweedFS counterpart in the driver)",
                 tree["file_count"] / tree["seconds"], None, True, None, "files/s"))
except (OSError, KeyError, ValueError):
    pass

series = json.load(open(f"{out_dir}/blobstore-series.json"))
text = open(f"{out_dir}/seaweedfs-series.txt").read()
m = re.search(r"([\d.]+) per logical byte", text)
theirs_series = float(m.group(1)) if m else None
rows.append((f"log archive, {days} days of {series_size} put in turn: bytes on disk per byte", series["disk"] / series["logical"],
             theirs_series, False, 0.35, ""))


def fmt(v):
    if v is None:
        return "n/a"
    return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"


print(f"`bash Benchmarks/compare.sh` on {datetime.date.today().isoformat()}, one run, same machine, 3 copies each "
      f"(Blobstore: `blobctl dev up`, `blobctl put/get`; SeaweedFS 4.48: master, 3 volume servers and filer, curl "
      f"against the filer). Ratio = Blobstore / SeaweedFS; \"better\" says which way is good.\n")
print("| measure | Blobstore | SeaweedFS | ratio | better | target | met |")
print("|---|---:|---:|---:|---|---:|---|")
for label, a, b, higher, target, unit in rows:
    ratio = a / b if a is not None and b not in (None, 0) else None
    met = ""
    if target is not None and ratio is not None:
        met = "yes" if (ratio >= target if higher else ratio <= target) else "**no**"
    tgt = "" if target is None else (f">= {target}x" if higher else f"<= {target}x")
    print(f"| {label}{' (' + unit + ')' if unit else ''} | {fmt(a)} | {fmt(b)} | {fmt(ratio) + 'x' if ratio else 'n/a'} | "
          f"{'higher' if higher else 'lower'} | {tgt} | {met} |")
print()
