#!/usr/bin/env bash
# Builds the tests under ThreadSanitizer into build-tsan/ (or $BUILD_DIR) and runs the ones tagged [threads]:
# code that docs/threads.md says may run on several threads at once (two tapes reading one Parameter).
# Extra arguments go to CMake's configure step.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build_dir=${BUILD_DIR:-build-tsan}
cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREWIND_SANITIZE=thread -DREWIND_WERROR=OFF \
  -DREWIND_BUILD_BENCH=OFF "$@"
cmake --build "$build_dir" -j "$(nproc)" --target rewind_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" "$build_dir/bin/rewind_tests" "[threads]"
