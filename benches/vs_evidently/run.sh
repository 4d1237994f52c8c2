#!/usr/bin/env bash
# driftdb against Evidently 0.7's DataDriftPreset on the same rows, run alternately.
#
#   bash benches/vs_evidently/run.sh [RUNS]        (default 3; ROWS=1000000 REF=50000)
#
# Installs Evidently in a venv under target/, generates the data with pandas/pyarrow (once),
# builds driftdb if needed, starts `driftdb serve` on a temp dir, then RUNS times: driftdb from
# Parquet, driftdb from JSONL, Evidently. Prints medians and ratios; raw runs go to
# target/vs-evidently-data/results.jsonl. See BENCHMARKS.md, "File ingest and the Evidently
# comparison".
set -euo pipefail
source "$(dirname "$0")/setup.sh"
exec "$VENV/bin/python" "$ROOT/benches/vs_evidently/run.py" "$ROOT" "$DATA" "${1:-3}"
