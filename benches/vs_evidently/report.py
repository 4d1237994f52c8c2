"""Runs the report comparison (see report.sh): `driftdb report` offline (reference and current
Parquet files folded in the CLI's process, HTML written) and Evidently's DataDriftPreset with
save_html, alternately, RUNS times each. Wall and CPU seconds of each whole command, and the
size of each HTML file."""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

root, data, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
D = os.path.join(root, "target/release/driftdb")
PY = sys.executable
tmp = tempfile.mkdtemp(prefix="vs-evidently-report-")
out = open(f"{data}/report-results.jsonl", "a")


def children_cpu():
    t = os.times()
    return t.children_user + t.children_system


def driftdb_job(i):
    html = f"{tmp}/driftdb-{i}.html"
    c0, t0 = children_cpu(), time.perf_counter()
    r = subprocess.run(
        [D, "report", "--model", f"{data}/model.json", "--reference",
         f"{data}/reference.parquet", "--current", f"{data}/current.parquet", "-o", html],
        capture_output=True, text=True,
    )
    took, cpu = time.perf_counter() - t0, children_cpu() - c0
    if r.returncode != 0:
        sys.exit(f"driftdb report failed: {r.stderr}")
    jr = f"{tmp}/driftdb-{i}.json"
    subprocess.run(
        [D, "report", "--model", f"{data}/model.json", "--reference",
         f"{data}/reference.parquet", "--current", f"{data}/current.parquet", "--format",
         "json", "-o", jr], check=True, capture_output=True,
    )
    v = json.load(open(jr))["verdict"]
    return {"tool": "driftdb", "run": i, "total_s": took, "cpu_s": cpu,
            "html_bytes": os.path.getsize(html), "drifted": v["drifted"],
            "features": v["features"]}


def evidently_job(i):
    html = f"{tmp}/evidently-{i}.html"
    c0, t0 = children_cpu(), time.perf_counter()
    r = subprocess.run(
        [PY, os.path.join(root, "benches/vs_evidently/evidently_report.py"), data, "--html", html],
        capture_output=True, text=True,
    )
    took, cpu = time.perf_counter() - t0, children_cpu() - c0
    if r.returncode != 0:
        sys.exit(f"evidently failed: {r.stderr}")
    inner = json.loads(r.stdout.strip().splitlines()[-1])
    return {"tool": "evidently", "run": i, "total_s": took, "cpu_s": cpu, **{
        k: inner[k] for k in ("read_s", "report_s", "html_s", "html_bytes", "drifted_columns")}}


results = []
for i in range(runs):
    for job in (driftdb_job, evidently_job):
        r = job(i)
        r["load"] = os.getloadavg()[0]
        print(json.dumps(r), flush=True)
        out.write(json.dumps(r) + "\n")
        results.append(r)

med = lambda tool, k: statistics.median(r[k] for r in results if r["tool"] == tool)
d, e = med("driftdb", "total_s"), med("evidently", "total_s")
print(f"\n{runs} runs each, medians (machine: {os.cpu_count()} cores)")
print(f"driftdb report (offline, Parquet): {d:.2f} s, {med('driftdb', 'cpu_s'):.2f} CPU-s, "
      f"{med('driftdb', 'html_bytes') / 1e3:.0f} kB")
print(f"evidently DataDriftPreset + save_html: {e:.2f} s (read {med('evidently', 'read_s'):.2f}"
      f" + report {med('evidently', 'report_s'):.2f} + html {med('evidently', 'html_s'):.2f}), "
      f"{med('evidently', 'cpu_s'):.2f} CPU-s, {med('evidently', 'html_bytes') / 1e6:.1f} MB")
print(f"driftdb is {e / d:.1f}x faster ({med('evidently', 'cpu_s') / med('driftdb', 'cpu_s'):.1f}x"
      f" less CPU); report {med('evidently', 'html_bytes') / med('driftdb', 'html_bytes'):.0f}x"
      f" smaller")
