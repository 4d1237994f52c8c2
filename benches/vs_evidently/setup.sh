# Sourced by run.sh and report.sh: Evidently 0.7.23 (with pandas < 3: Evidently 0.7 imports
# pandas internals that pandas 3 removed) in a venv under target/, the data generated once
# (ROWS current rows and a REF-row reference, Parquet and JSONL, written by pandas), and the
# release binary. Sets ROOT, VENV and DATA.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
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
