#!/usr/bin/env bash
# --option dropout=P: training with dropout is bitwise repeatable and resumes exactly (masks come from the
# seed, the update and the window), changes the result, learns, and is off in evaluation.
set -euo pipefail
rewind=$1 text=$2
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"
head -c 30000 "$text" > corpus.txt
for locked in false true; do
  run=(--data corpus.txt --model lstm --layers 2 --hidden 32 --batch 8 --k 20 --lr 0.01 --sample-length 0
       --eval-every 0 --option dropout=0.3 --option "locked_dropout=$locked")
  "$rewind" train "${run[@]}" --max-updates 60 --save whole --metrics whole.jsonl --log-every 1 > whole.log
  "$rewind" train "${run[@]}" --max-updates 60 --save again > /dev/null
  cmp -s whole/model.safetensors again/model.safetensors || fail "locked=$locked: two runs differ"
  "$rewind" train "${run[@]}" --max-updates 25 --save split > /dev/null
  "$rewind" train --resume split --max-updates 60 --save split > /dev/null
  cmp -s whole/model.safetensors split/model.safetensors || fail "locked=$locked: the resumed run differs"
  # Learns: the mean loss of the last 10 updates is well below the first update's.
  first=$(head -1 whole.jsonl | grep -o '"loss":[0-9.e+-]*' | cut -d: -f2)
  last=$(tail -10 whole.jsonl | grep -o '"loss":[0-9.e+-]*' | cut -d: -f2 | awk '{ s += $1 } END { print s / NR }')
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.5) }' || fail "locked=$locked: loss $first -> $last"
  # Evaluation runs in evaluation mode: no dropout, the same figure every time.
  one=$("$rewind" eval --checkpoint whole --data corpus.txt)
  two=$("$rewind" eval --checkpoint whole --data corpus.txt)
  [ "$one" = "$two" ] || fail "locked=$locked: eval is not deterministic: $one / $two"
  rm -rf whole again split whole.jsonl
done
"$rewind" train --data corpus.txt --model lstm --layers 2 --hidden 32 --batch 8 --k 20 --lr 0.01 --sample-length 0 \
  --eval-every 0 --max-updates 60 --save plain > /dev/null
"$rewind" train --data corpus.txt --model lstm --layers 2 --hidden 32 --batch 8 --k 20 --lr 0.01 --sample-length 0 \
  --eval-every 0 --max-updates 60 --save dropped --option dropout=0.3 > /dev/null
if cmp -s plain/model.safetensors dropped/model.safetensors; then fail "dropout=0.3 changed nothing"; fi
if "$rewind" train --data corpus.txt --option dropout=1.5 --max-updates 1 > bad.log 2>&1; then fail "dropout=1.5 accepted"; fi
grep -q "dropout must be in \[0, 1)" bad.log || fail "dropout=1.5: $(cat bad.log)"
echo "dropout runs checked: repeatable, exact on resume, learning, off in evaluation"
