#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (installs packages as root) and builds rewind into build/ (or $BUILD_DIR).
# Extra arguments go to CMake's configure step. Warnings are errors when CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build_dir=${BUILD_DIR:-build}
werror=OFF
[ "${CI:-}" = true ] && werror=ON
cmake -S . -B "$build_dir" -DREWIND_WERROR="$werror" "$@"
cmake --build "$build_dir" -j "$(nproc)"
