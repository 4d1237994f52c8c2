#!/usr/bin/env bash
# Installs what the build needs from the system, once. Idempotent: skips what is present.
#   - libclang (RocksDB's bindgen needs it at build time)
#   - a C++ compiler (librocksdb-sys builds RocksDB from source)
#   --test: what the test suite needs beyond the build (nothing more yet; the remote-read
#           tests will install Debian's prometheus here)
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
command -v pkg-config >/dev/null 2>&1 || true

if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "setup.sh: installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup.sh: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi
