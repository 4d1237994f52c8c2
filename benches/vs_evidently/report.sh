#!/usr/bin/env bash
# `driftdb report` straight from files against Evidently 0.7's DataDriftPreset + save_html on
# the same rows, run alternately (issue 20's target: ≥ 30× faster, report < 1 MB).
#
#   bash benches/vs_evidently/report.sh [RUNS]        (default 3; ROWS=1000000 REF=50000)
#
# Same venv and data as run.sh (Evidently 0.7.23, pandas < 3; 1 M current rows and a 50 k
# reference in Parquet, written by pandas). Prints medians, ratios and both report sizes; raw
# runs go to target/vs-evidently-data/report-results.jsonl. See BENCHMARKS.md, "Reports".
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec "$VENV/bin/python" "$ROOT/benches/vs_evidently/report.py" "$ROOT" "$DATA" "${1:-3}"
