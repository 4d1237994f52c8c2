#!/usr/bin/env bash
# Regenerates the protobuf/gRPC stubs of python/src/driftdb/_proto from proto/driftdb/v1/*.proto.
#
#   bash python/scripts/gen_stubs.sh           # write them into the package
#   bash python/scripts/gen_stubs.sh --check   # generate into a temp dir and diff; exit 1 on a difference
#
# The generator is pinned: grpcio-tools 1.62.3 bundles protoc 25.x, whose Python output imports
# under protobuf 4.25 through 7.x (newer generators stamp a runtime-version check that refuses
# older protobuf runtimes). It runs from its own venv ($DRIFTDB_STUBGEN_VENV, default
# target/py-stubgen-venv), made with $PYTHON (default python3) when missing.
set -euo pipefail
GRPCIO_TOOLS_VERSION=1.62.3

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
pkg="$repo/python/src/driftdb/_proto"
venv="${DRIFTDB_STUBGEN_VENV:-$repo/target/py-stubgen-venv}"
check=0
case "${1:-}" in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if ! "$venv/bin/python" -c "import grpc_tools, importlib.metadata as m, sys; sys.exit(m.version('grpcio-tools') != '$GRPCIO_TOOLS_VERSION')" 2>/dev/null; then
  echo "gen_stubs: creating $venv with grpcio-tools==$GRPCIO_TOOLS_VERSION" >&2
  rm -rf "$venv"
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install --quiet "grpcio-tools==$GRPCIO_TOOLS_VERSION"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
out="$tmp/_proto"
mkdir -p "$out"
(cd "$repo/proto" && "$venv/bin/python" -m grpc_tools.protoc -I . \
  --python_out="$out" --grpc_python_out="$out" driftdb/v1/*.proto)

# The generated modules import each other as `driftdb.v1.*`; inside this package they live at
# `driftdb._proto.driftdb.v1.*`.
for f in "$out"/driftdb/v1/*.py; do
  sed -i \
    -e 's/^from driftdb\.v1 import /from driftdb._proto.driftdb.v1 import /' \
    -e "s/'driftdb\.v1\.\([a-z_]*_pb2\)'/'driftdb._proto.driftdb.v1.\1'/" \
    "$f"
done
printf '"""Generated protobuf and gRPC modules (python/scripts/gen_stubs.sh); do not edit."""\n' \
  > "$out/__init__.py"
: > "$out/driftdb/__init__.py"
: > "$out/driftdb/v1/__init__.py"

if [ "$check" = 1 ]; then
  if diff -ru --exclude=__pycache__ "$pkg" "$out"; then
    echo "gen_stubs: checked-in stubs match proto/ (grpcio-tools $GRPCIO_TOOLS_VERSION)"
  else
    echo "gen_stubs: the checked-in stubs differ from proto/; run bash python/scripts/gen_stubs.sh" >&2
    exit 1
  fi
else
  rm -rf "$pkg"
  cp -r "$out" "$pkg"
  echo "gen_stubs: wrote $pkg"
fi
