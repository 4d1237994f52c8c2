"""Evidently 0.7's DataDriftPreset over the comparison's rows: reads the Parquet files into
pandas, then Report([DataDriftPreset()]).run(current, reference) over 12 columns (8 numeric
features, the score, 2 categorical features and the region). Prints one JSON line with the
times of both steps and how many columns Evidently found drifted. With `--html PATH` the
report is also saved as HTML (`save_html`, timed as a third step; its size is printed)."""

import os

import json
import sys
import time

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

data = sys.argv[1]
html = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--html" else None
NUM = [f"f{i}" for i in range(8)] + ["score"]
CAT = ["c0", "c1", "region"]
COLS = NUM + CAT

t0 = time.perf_counter()
cpu0 = time.process_time()
cur = pd.read_parquet(f"{data}/current.parquet", columns=COLS)
ref = pd.read_parquet(f"{data}/reference.parquet", columns=COLS)
t1 = time.perf_counter()
definition = DataDefinition(numerical_columns=NUM, categorical_columns=CAT)
snapshot = Report([DataDriftPreset()]).run(
    Dataset.from_pandas(cur, data_definition=definition),
    Dataset.from_pandas(ref, data_definition=definition),
)
result = snapshot.dict()
t2 = time.perf_counter()
html_s = html_bytes = None
if html:
    snapshot.save_html(html)
    html_s = time.perf_counter() - t2
    html_bytes = os.path.getsize(html)
    t2 = time.perf_counter()
cpu = time.process_time() - cpu0
drifted = None
methods = set()
for m in result.get("metrics", []):
    name = str(m.get("metric_name", ""))
    if name.startswith("DriftedColumnsCount"):
        drifted = float(m["value"]["count"])
    elif name.startswith("ValueDrift"):
        methods.add(str(m.get("config", {}).get("method")))
print(
    json.dumps(
        {
            "read_s": t1 - t0,
            "report_s": t2 - t1,
            "total_s": t2 - t0,
            "cpu_s": cpu,
            "rows": len(cur),
            "reference_rows": len(ref),
            "columns": len(COLS),
            "drifted_columns": drifted,
            "methods": sorted(methods),
            "html_s": html_s,
            "html_bytes": html_bytes,
        }
    )
)
