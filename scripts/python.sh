#!/usr/bin/env bash
# The Python client's checks: venv (target/py-venv, reused while it satisfies the package's
# requirements), stub check, linters, and the pytest suite against a real driftdb binary.
#
#   bash scripts/python.sh            # everything
#   DRIFTDB_BIN=/path/to/driftdb bash scripts/python.sh
#
# Exits non-zero on any failure; pytest collecting no test (exit code 5) is a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

step() { printf '\n== python: %s ==\n' "$*" >&2; }

PY="${PYTHON:-python3}"
venv="$repo/target/py-venv"
export DRIFTDB_BIN="${DRIFTDB_BIN:-$repo/target/release/driftdb}"

step "venv ($venv)"
if ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian ships venv/ensurepip separately.
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
  else
    echo "python: $PY lacks venv/ensurepip; install python3-venv" >&2
    exit 1
  fi
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$venv"
  "$PY" -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import setuptools, wheel' 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check "setuptools>=61" wheel
fi
# Installs what is missing (nothing, once the venv is complete) and the package itself, from
# the current sources.
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-build-isolation \
  "$repo/python[test,pandas,arrow,ui]"
rm -rf "$repo/python/build"

step "stubs match proto/ (grpcio-tools pinned in python/scripts/gen_stubs.sh)"
PYTHON="$PY" bash python/scripts/gen_stubs.sh --check

step "ruff check + ruff format --check"
"$venv/bin/ruff" check python
"$venv/bin/ruff" format --check python

step "pytest (server: $DRIFTDB_BIN)"
if [ ! -x "$DRIFTDB_BIN" ]; then
  echo "python: no driftdb binary at $DRIFTDB_BIN (build it with cargo build --release, or set DRIFTDB_BIN)" >&2
  exit 1
fi
set +e
(cd python && "$venv/bin/python" -m pytest -p no:cacheprovider -q tests)
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "python: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
