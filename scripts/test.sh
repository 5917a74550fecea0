#!/usr/bin/env bash
# Sets up, builds and runs every test (unit tests, gradient checks, CLI smoke tests). Extra arguments go to
# CMake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh "$@"
# A test that hangs fails with its name after 20 minutes (the longest takes about 2 under the sanitizers)
# instead of running into CI's limit with nothing said; tests with their own TIMEOUT keep it.
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure -j "$(nproc)" --timeout 1200
