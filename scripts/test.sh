#!/usr/bin/env bash
# The whole test suite, exactly what CI runs (.ci/run calls this script).
# One cargo profile (release) for clippy, tests and benches so RocksDB's C++ compiles once.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test

step() { printf '\n== %s ==\n' "$*" >&2; }

step "rustfmt"
cargo fmt --all -- --check
step "clippy (all targets, warnings are errors)"
cargo clippy --release --workspace --all-targets --locked -- -D warnings
step "tests (unit, integration, property, golden, doc)"
cargo test --release --workspace --locked
step "benches compile"
cargo bench --workspace --locked --no-run
step "Python client (ruff, stubs, pytest against the driftdb binary built above)"
bash scripts/python.sh
