#!/usr/bin/env bash
# Installs the build in BUILD_DIR into a temporary prefix, builds examples/custom_cell out of tree against it
# with find_package(rewind), and gradient-checks the example cell with the installed CLI.
set -euo pipefail
build_dir=$(realpath "$1")
source_dir=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$source_dir/examples/custom_cell" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release > "$work/configure.log"
cmake --build "$work/example" > "$work/build.log"
# The installed CLI must find its built-in plugins by itself, and the example through --plugin.
grep -q "lstm" <<< "$("$work/prefix/bin/rewind" plugins)"
"$work/prefix/bin/rewind" gradcheck --plugin "$work/example/librewind_model_mgu.so" --model mgu --layers 2
