#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang under AddressSanitizer + UBSan into build-fuzz/ (or
# $BUILD_DIR) and runs each for SECONDS (default 30) from the seed corpus in tests/fuzz/corpus, in a scratch
# copy (the repository's corpus is not changed). A crash, leak or sanitizer report fails the run and leaves
# the input in build-fuzz/findings/. Usage: scripts/fuzz.sh [SECONDS] [TARGET...]. docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
missing=()
for p in clang libfuzzer-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
seconds=${1:-30}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(safetensors checkpoint csv stream text options)
build_dir=${BUILD_DIR:-build-fuzz}
CC=clang CXX=clang++ cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREWIND_FUZZ=ON \
  -DREWIND_SANITIZE=address,undefined -DREWIND_BUILD_TESTS=OFF -DREWIND_BUILD_BENCH=OFF -DREWIND_WERROR=OFF > /dev/null
cmake --build "$build_dir" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"
mkdir -p "$build_dir/findings"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for target in "${targets[@]}"; do
  corpus="$build_dir/corpus/$target"
  rm -rf "$corpus" && mkdir -p "$corpus" && cp tests/fuzz/corpus/"$target"/* "$corpus"/
  "$build_dir/bin/fuzz_$target" "$corpus" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=8192 \
    -artifact_prefix="$build_dir/findings/$target-" -print_final_stats=1 > "$build_dir/fuzz_$target.log" 2>&1 ||
    { tail -40 "$build_dir/fuzz_$target.log"; echo "fuzz_$target: failed (input in $build_dir/findings)"; exit 1; }
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$build_dir/fuzz_$target.log" | grep -o '[0-9]*$')
  echo "fuzz_$target: $runs runs in ${seconds} s, no failure"
done
