#!/usr/bin/env bash
# Installs what the build needs from the system, once. Idempotent: skips what is present.
#   - libclang (RocksDB's bindgen needs it at build time)
#   - a C++ compiler (librocksdb-sys builds RocksDB from source)
#   - OpenSSL's headers and pkg-config (librdkafka is built with TLS and SASL against them)
#   --test: what the test suite needs beyond the build: Debian's prometheus package (the
#           remote-read integration test runs the real `prometheus` and `promtool`), and
#           Python's venv module (python3-venv; the Python client's suite runs in a venv),
#           and Debian's Chromium (the browser tests of the report page and /ui drive it),
#           and the Kafka-protocol broker `tansu` (pinned below; built from crates.io into
#           target/tools/bin, which the Kafka tests run)
set -euo pipefail

want_test=0
for arg in "$@"; do
  case "$arg" in
    --test) want_test=1 ;;
    *) echo "setup.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done

need=()
have_libclang() {
  # libclang itself (libclang-NN.so or libclang.so), not libclang-cpp.
  compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null || compgen -G "/usr/lib/*/libclang-[0-9]*.so*" >/dev/null
}
have_libclang || need+=(libclang-dev)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
# librdkafka (the Kafka source) is built with TLS and SASL over the system's OpenSSL.
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
if [ "$want_test" -eq 1 ]; then
  { command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
fi

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup.sh: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  # The package starts a prometheus service on :9090 (driftdb's default HTTP port) where
  # systemd runs; the tests start their own on a free port, so stop the one we just installed.
  if [[ " ${need[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1 \
    && systemctl is-active --quiet prometheus 2>/dev/null; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi

# The Kafka tests' broker: tansu from crates.io (no Docker here, and Debian has no Kafka).
TANSU_VERSION=0.6.0
if [ "$want_test" -eq 1 ]; then
  root="$(cd "$(dirname "$0")/.." && pwd)"
  tools="$root/target/tools"
  if ! [ -f "$tools/tansu.features" ] || [ "$(cat "$tools/tansu.features")" != "$TANSU_VERSION dynostore debug" ] \
    || ! "$tools/bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    echo "setup.sh: building the Kafka-protocol broker tansu $TANSU_VERSION (about 5 minutes, once)" >&2
    # dynostore: the in-memory storage engine (memory://) the tests run it with.
    # --debug: unoptimised, it builds in 5 minutes instead of 12 on two cores; plenty for the
    # tests. `driftdb bench kafka` figures are taken against a release build (BENCHMARKS.md).
    cargo install --quiet --locked --force --debug --root "$tools" --features dynostore tansu --version "$TANSU_VERSION"
    echo "$TANSU_VERSION dynostore debug" > "$tools/tansu.features"
  fi
fi
