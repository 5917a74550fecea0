#!/usr/bin/env bash
# A run trained with a model plugin from --plugin remembers the plugin's file (absolute path and hash): sample,
# eval and --resume need no --plugin; when the file is gone, the error names it and says to give --plugin FILE.
set -euo pipefail
rewind=$1 plugin=$2 text=$3
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"
head -c 6000 "$text" > corpus.txt
cp "$plugin" libmycell.so
small=(--data corpus.txt --hidden 8 --batch 2 --k 10 --sample-length 0 --eval-every 0)
"$rewind" train --plugin libmycell.so --model mgu "${small[@]}" --max-updates 3 --save run > /dev/null
grep -aq "$work/libmycell.so" run/model.safetensors || fail "the plugin's absolute path is not stored"
"$rewind" sample --checkpoint run --length 10 > /dev/null || fail "sample without --plugin"
"$rewind" eval --checkpoint run --data corpus.txt > /dev/null || fail "eval without --plugin"
"$rewind" train --resume run --max-updates 4 > /dev/null || fail "resume without --plugin"
mv libmycell.so moved.so
refused "model plugin 'mgu' was loaded from '$work/libmycell.so', which is gone; give --plugin FILE" \
  sample --checkpoint run --length 10
"$rewind" sample --checkpoint run --length 10 --plugin moved.so > /dev/null || fail "sample with --plugin moved.so"
echo "the plugin file of a saved run checked"
