#!/usr/bin/env bash
# Builds driftdb and runs the main job: `driftdb demo` (the README's first command), an embedded
# server on a temp dir with simulated traffic, rules, alerts and webhooks; it exits by itself.
# Extra arguments are passed to `driftdb demo` (e.g. --windows 24 --rows 5000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked --workspace --bin driftdb
exec target/release/driftdb demo "$@"
