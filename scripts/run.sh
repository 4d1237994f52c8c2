#!/usr/bin/env bash
# Builds driftdb and runs the main job: `driftdb serve` on ./data (the README's first command).
# Extra arguments are passed to `driftdb serve` (e.g. --data /tmp/d --grpc 127.0.0.1:0).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p driftdb-server --bin driftdb
exec target/release/driftdb serve "$@"
