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
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV="$ROOT/target/vs-evidently-venv"
DATA="$ROOT/target/vs-evidently-data"
export ROWS=${ROWS:-1000000} REF=${REF:-50000}
if ! "$VENV/bin/python" -c "import evidently, pyarrow" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "evidently==0.7.23" "pandas>=2.2,<3" pyarrow
fi
if [ ! -f "$DATA/current.parquet" ] || [ "$(cat "$DATA/rows" 2>/dev/null)" != "$ROWS/$REF" ]; then
    "$VENV/bin/python" "$ROOT/benches/vs_evidently/gen.py" "$DATA"
    echo "$ROWS/$REF" > "$DATA/rows"
fi
if [ ! -x "$ROOT/target/release/driftdb" ]; then
    (cd "$ROOT" && cargo build --release --workspace --all-targets)
fi
exec "$VENV/bin/python" "$ROOT/benches/vs_evidently/report.py" "$ROOT" "$DATA" "${1:-3}"
