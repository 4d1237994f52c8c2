"""Runs the comparison (see run.sh): driftdb from Parquet, driftdb from JSONL and Evidently,
alternately, RUNS times each, against one `driftdb serve`. For driftdb the time is the whole
user-visible job: `reference load` of the 50k-row reference, `ingest` of the 1M rows, and the
drift report (psi, ks, js over every feature, chi2 over the categorical ones: four DriftQL
queries over the hour). Each driftdb run uses a fresh model, so nothing is deduplicated.
The server's and the CLI's CPU seconds are read from /proc for the breakdown."""

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
HOUR = "from 2026-03-01T00:00:00Z to 2026-03-01T01:00:00Z"
TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def run(args, url):
    t = time.perf_counter()
    r = subprocess.run([D, "--server", url, *args], capture_output=True, text=True)
    took = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"driftdb {' '.join(args)} failed: {r.stdout}{r.stderr}")
    return r.stdout, took


tmp = tempfile.mkdtemp(prefix="vs-evidently-")
with open(f"{tmp}/config.json", "w") as f:
    json.dump({"retention": "3650d"}, f)
server = subprocess.Popen(
    [D, "serve", "--data", f"{tmp}/data", "--config", f"{tmp}/config.json",
     "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0", "--insecure-no-auth"],
    stdout=subprocess.PIPE, stderr=open(f"{tmp}/serve.log", "w"), text=True,
)
ready = server.stdout.readline()
url = "http://" + ready.split("grpc=")[1].split()[0]
model = json.load(open(f"{data}/model.json"))
results = []
out = open(f"{data}/results.jsonl", "a")


def driftdb_job(i, fmt):
    mid = f"m{i}_{fmt}_{int(time.time())}"
    path = f"{tmp}/{mid}.json"
    json.dump({**model, "id": mid}, open(path, "w"))
    run(["model", "create", "--file", path], url)
    c0 = cpu(server.pid)
    c_cli0 = os.times().children_user + os.times().children_system
    t0 = time.perf_counter()
    _, ref_s = run(["reference", "load", "--model", mid, "--version", "v1",
                    f"{data}/reference.parquet"], url)
    o, ingest_s = run(["ingest", "--json", "--model", mid, f"{data}/current.{fmt}"], url)
    summary = json.loads(o)
    assert summary["accepted"] == summary["read"], summary
    c1 = cpu(server.pid)
    q_s = 0.0
    for m in ["psi", "ks", "js", "chi2"]:
        _, s = run(["query", "--json", f"{m}({mid}.*) {HOUR}"], url)
        q_s += s
    total = time.perf_counter() - t0
    c2 = cpu(server.pid)
    c_cli1 = os.times().children_user + os.times().children_system
    return {
        "tool": f"driftdb-{fmt}", "run": i, "total_s": total, "reference_s": ref_s,
        "ingest_s": ingest_s, "query_s": q_s, "rows": summary["read"],
        "server_cpu_s_ref_ingest": c1 - c0, "cli_cpu_s": c_cli1 - c_cli0,
        "cpu_s": (c2 - c0) + (c_cli1 - c_cli0),
        "feature_values_per_s_ingest": summary["read"] * 11 / ingest_s,
    }


def evidently_job(i):
    r = subprocess.run([PY, os.path.join(root, "benches/vs_evidently/evidently_report.py"), data],
                       capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"evidently failed: {r.stderr}")
    return {"tool": "evidently", "run": i, **json.loads(r.stdout.strip().splitlines()[-1])}


try:
    for i in range(runs):
        for job in (lambda: driftdb_job(i, "parquet"), lambda: driftdb_job(i, "jsonl"),
                    lambda: evidently_job(i)):
            r = job()
            r["load"] = os.getloadavg()[0]
            print(json.dumps(r), flush=True)
            out.write(json.dumps(r) + "\n")
            results.append(r)
finally:
    server.terminate()
    server.wait()

med = lambda tool, k: statistics.median(r[k] for r in results if r["tool"] == tool)
ev = med("evidently", "total_s")
ev_report = med("evidently", "report_s")
print(f"\n{runs} runs each, medians (machine: {os.cpu_count()} cores)")
ev_cpu = med("evidently", "cpu_s")
print(f"evidently DataDriftPreset: {ev:.2f} s (read {med('evidently', 'read_s'):.2f} s + report "
      f"{ev_report:.2f} s), {ev_cpu:.2f} CPU-s")
for fmt in ("parquet", "jsonl"):
    t = f"driftdb-{fmt}"
    tot = med(t, "total_s")
    print(f"driftdb from {fmt}: {tot:.2f} s (reference {med(t, 'reference_s'):.2f} + ingest "
          f"{med(t, 'ingest_s'):.2f} + 4 queries {med(t, 'query_s'):.2f}); ingest "
          f"{med(t, 'feature_values_per_s_ingest') / 1e6:.2f} M feature-values/s; server CPU "
          f"{med(t, 'server_cpu_s_ref_ingest'):.2f} s, CLI CPU {med(t, 'cli_cpu_s'):.2f} s; "
          f"{ev / tot:.1f}x faster than Evidently; {med(t, 'cpu_s'):.2f} CPU-s in all, "
          f"{ev_cpu / med(t, 'cpu_s'):.1f}x less CPU")
