#!/usr/bin/env bash
# The validation-driven parts of a training recipe (issue 11): the plateau schedule, --keep-best and
# --early-stop, each resumed bitwise like an uninterrupted run.
set -euo pipefail
rewind=$1 text=$2
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"
head -c 60000 "$text" > corpus.txt
# A rate high enough that the validation loss stalls now and then, validated every 4 updates.
base=(--data corpus.txt --hidden 16 --batch 8 --k 16 --lr 1 --val-fraction 0.05 --eval-every 4 --sample-length 0
      --log-every 1)
run=("${base[@]}" --lr-schedule plateau --patience 0 --lr-gamma 0.5)

"$rewind" train "${run[@]}" --max-updates 60 --keep-best --save whole --metrics whole.jsonl > whole.log
reductions=$(grep -c '^plateau: learning rate reduced' whole.log) || true
[ "$reductions" -ge 2 ] || fail "expected at least two plateau reductions, got $reductions: $(cat whole.log)"
# Every reduction halves the rate the next updates use, and nothing else changes it.
lrs=$(grep -o '"lr":[0-9.e+-]*' whole.jsonl | cut -d: -f2 | uniq | tr '\n' ' ')
awk -v n="$reductions" '{ if (NF < n || $1 != 1) exit 1; for (i = 2; i <= NF; ++i) if ($i != $(i - 1) / 2) exit 1 }' \
  <<< "$lrs" || fail "$reductions reductions, rates in use: $lrs"

# The schedule's memory and the best loss are in the checkpoint: a split run ends bitwise where whole did,
# with the same best model kept.
"$rewind" train "${run[@]}" --max-updates 30 --keep-best --save split > /dev/null
"$rewind" train --resume split --max-updates 60 --keep-best --save split > /dev/null
cmp -s whole/model.safetensors split/model.safetensors || fail "the resumed plateau run differs"
cmp -s whole/best/model.safetensors split/best/model.safetensors || fail "the resumed run kept another best"

# DIR/best holds the run at its best validation: the model a run stopped at that update saves.
best_update=$(grep '"eval_loss"' whole.jsonl | sed -E 's/.*"eval_loss":([0-9.e+-]+).*"update":([0-9]+).*/\1 \2/' |
              sort -s -k1,1g | head -1 | cut -d' ' -f2)
"$rewind" train "${run[@]}" --max-updates "$best_update" --save at_best > /dev/null
cmp -s at_best/model.safetensors whole/best/model.safetensors ||
  fail "best/model.safetensors is not the model of update $best_update, the best validation"
"$rewind" train --resume whole/best --max-updates "$((best_update + 4))" --sample-length 0 --no-save > /dev/null ||
  fail "the best checkpoint does not resume"

# Early stop: after N validation runs without a new best, and it says so.
out=$("$rewind" train "${base[@]}" --max-updates 60 --early-stop 1)
grep -Eq '^early stop at update [0-9]+: 1 validation runs without improvement \(best loss' <<< "$out" ||
  fail "no early stop: $out"
stop=$(sed -nE 's/^early stop at update ([0-9]+).*/\1/p' <<< "$out")
[ "$stop" -lt 60 ] && [ $((stop % 4)) -eq 0 ] || fail "stopped at update $stop"

refused '^rewind train: --keep-best needs --save' train "${run[@]}" --keep-best
refused '^rewind train: --early-stop needs validation runs' train --data corpus.txt --max-updates 1 --early-stop 2 \
  --eval-every 0
refused '^rewind train: --lr-schedule plateau needs validation runs' train --data corpus.txt --max-updates 1 \
  --lr-schedule plateau --val-fraction 0
refused "^rewind train: optimizer: warm-up applies to the cosine schedule only" train "${run[@]}" --warmup 3
refused "^rewind train: optimizer: schedule 'linear' is not constant, step, cosine or plateau" \
  train "${base[@]}" --lr-schedule linear
refused "^rewind train: optimizer: the plateau schedule's factor gamma must be < 1" train "${base[@]}" --lr-schedule plateau --lr-gamma 2

# Tied weights: one tensor, saved once under embedding.weight; the run resumes, evaluates and samples.
tied=(--data corpus.txt --hidden 16 --batch 8 --k 16 --eval-every 0 --sample-length 20 --tie-weights)
"$rewind" train "${tied[@]}" --embedding 16 --max-updates 10 --save tied > /dev/null
grep -aq '"embedding.weight"' tied/model.safetensors || fail "no embedding.weight in the tied model"
! grep -aq '"head.weight"' tied/model.safetensors || fail "the tied model saved a head.weight of its own"
"$rewind" train --resume tied --max-updates 12 --save tied > /dev/null || fail "the tied run does not resume"
"$rewind" eval --checkpoint tied --data corpus.txt > /dev/null || fail "the tied model does not evaluate"
refused '^rewind train: model: tie_weights needs the embedding size \(8\) to equal the hidden size \(16\)' \
  train "${tied[@]}" --embedding 8 --max-updates 1
refused '^rewind train: accumulate: windows per update must be >= 1, got 0' train "${base[@]}" --accumulate 0
# Accumulated runs resume bitwise too (checkpoints fall between updates, never inside one).
"$rewind" train "${base[@]}" --accumulate 3 --max-updates 12 --save acc_whole > /dev/null
"$rewind" train "${base[@]}" --accumulate 3 --max-updates 5 --save acc_split > /dev/null
"$rewind" train --resume acc_split --max-updates 12 --save acc_split > /dev/null
cmp -s acc_whole/checkpoint.safetensors acc_split/checkpoint.safetensors || fail "an accumulated run resumed differs"
echo "plateau, keep-best, early stop, tied weights and accumulation checked"
