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
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV="$ROOT/target/vs-evidently-venv"
DATA="$ROOT/target/vs-evidently-data"
export ROWS=${ROWS:-1000000} REF=${REF:-50000}
if ! "$VENV/bin/python" -c "import evidently, pyarrow" 2>/dev/null; then
    python3 -m venv "$VENV"
    # Evidently 0.7 imports pandas internals that pandas 3 removed.
    "$VENV/bin/pip" install -q "evidently==0.7.23" "pandas>=2.2,<3" pyarrow
fi
if [ ! -f "$DATA/current.parquet" ] || [ "$(cat "$DATA/rows" 2>/dev/null)" != "$ROWS/$REF" ]; then
    "$VENV/bin/python" "$ROOT/benches/vs_evidently/gen.py" "$DATA"
    echo "$ROWS/$REF" > "$DATA/rows"
fi
if [ ! -x "$ROOT/target/release/driftdb" ]; then
    (cd "$ROOT" && cargo build --release --workspace --all-targets)
fi
exec "$VENV/bin/python" "$ROOT/benches/vs_evidently/run.py" "$ROOT" "$DATA" "${1:-3}"
