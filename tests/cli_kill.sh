#!/usr/bin/env bash
# kill -9 at 20 seeded random moments of a run with --save-every, each followed by a resume: the final
# parameters are bitwise those of an uninterrupted run with the same update limit (issue 13). Also
# --keep-checkpoints keeps that many.
set -euo pipefail
rewind=$1
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"
updates=1500
run=(--task recall:10 --task-steps 400 --hidden 48 --batch 16 --trainer truncated --k1 5 --k2 15 --lr 0.01
     --clip 1 --sample-length 0 --eval-every 0)
"$rewind" train "${run[@]}" --max-updates $updates --save whole --save-every 3 > whole.log
RANDOM=2026  # the moments are random, and the same every run
interrupted=0
for attempt in $(seq 1 20); do
  if [ -f killed/checkpoint.safetensors ]; then
    args=(train --resume killed --max-updates $updates --save killed --save-every 3)
  else
    args=(train "${run[@]}" --max-updates $updates --save killed --save-every 3)
  fi
  "$rewind" "${args[@]}" > "attempt.$attempt.log" 2>&1 &
  pid=$!
  sleep "0.$(printf "%03d" $((RANDOM % 170 + 30)))"
  if kill -KILL "$pid" 2>/dev/null; then interrupted=$((interrupted + 1)); fi
  wait "$pid" 2>/dev/null || true
done
[ "$interrupted" -ge 10 ] || fail "only $interrupted of 20 runs were still going when killed: make the run longer"
if [ -f killed/checkpoint.safetensors ]; then
  "$rewind" train --resume killed --max-updates $updates --save killed > final.log
else
  "$rewind" train "${run[@]}" --max-updates $updates --save killed > final.log
fi
cmp -s whole/model.safetensors killed/model.safetensors || fail "the parameters differ after $interrupted kills"
cmp -s whole/checkpoint.safetensors killed/checkpoint.safetensors || fail "the checkpoints differ"

"$rewind" train "${run[@]}" --max-updates 30 --save kept --save-every 5 --keep-checkpoints 3 > /dev/null
kept=$(cd kept && ls checkpoint-*.safetensors | sort -t- -k2 -n | tr '\n' ' ')
[ "$kept" = "checkpoint-20.safetensors checkpoint-25.safetensors checkpoint-30.safetensors " ] ||
  fail "--keep-checkpoints 3 kept: $kept"
cmp -s kept/checkpoint.safetensors kept/checkpoint-30.safetensors || fail "the latest numbered checkpoint is not the latest"
echo "$interrupted runs killed with SIGKILL and resumed: bitwise equal to the uninterrupted run; --keep-checkpoints checked"
