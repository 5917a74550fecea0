#!/usr/bin/env bash
# What a run saves, keeps and removes (issue 22): --keep-checkpoints removes only the numbered checkpoints the
# run wrote; --resume goes on saving into its directory with the run's output options; a non-finite stop
# keeps the last finite parameters; --save-every-seconds counts from the last save; --early-stop counts across a
# resume; metrics come every --log-every updates.
set -euo pipefail
rewind=$1 text=$2
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"
head -c 20000 "$text" > small.txt
small=(--data small.txt --hidden 8 --batch 2 --sample-length 0 --eval-every 0)

# Files in the save directory that rewind did not write survive --keep-checkpoints, even one named like a
# numbered checkpoint (which the run then does not number).
mkdir sv
echo notes > sv/checkpoint-1-notes.txt
echo backup > sv/checkpoint-0.safetensors.bak
echo mine > sv/checkpoint-2.safetensors
"$rewind" train "${small[@]}" --max-updates 6 --save sv --save-every 1 --keep-checkpoints 2 > sv.log 2> sv.err
[ "$(cat sv/checkpoint-1-notes.txt)" = notes ] || fail "--keep-checkpoints removed checkpoint-1-notes.txt"
[ "$(cat sv/checkpoint-0.safetensors.bak)" = backup ] || fail "--keep-checkpoints removed checkpoint-0.safetensors.bak"
[ "$(cat sv/checkpoint-2.safetensors)" = mine ] || fail "--keep-checkpoints replaced the user's checkpoint-2.safetensors"
grep -q "checkpoint-2.safetensors' exists and was not written by this run" sv.err || fail "no warning: $(cat sv.err)"
kept=$(cd sv && ls checkpoint-[0-9]*.safetensors | sort -t- -k2 -n | tr '\n' ' ')
[ "$kept" = "checkpoint-2.safetensors checkpoint-5.safetensors checkpoint-6.safetensors " ] || fail "kept: $kept"

# --resume without --save saves into the run's directory, with its --save-every, --keep-checkpoints and
# --metrics, says so first, and appends to the metrics file.
"$rewind" train "${small[@]}" --max-updates 4 --save run --save-every 2 --keep-checkpoints 2 \
  --metrics run/metrics.jsonl --log-every 1 > /dev/null
"$rewind" train --resume run --max-updates 8 > resumed.log
grep -q "^saving into run (the run's), every 2 updates (the run's), keeping 2 checkpoints (the run's); metrics appended to .*run/metrics.jsonl (the run's)" resumed.log ||
  fail "the resumed run does not say where it saves: $(head -4 resumed.log)"
grep -q "saved run .* at update 8" resumed.log || fail "the resumed run did not save: $(tail -3 resumed.log)"
[ "$(grep -c '"loss"' run/metrics.jsonl)" = 8 ] || fail "the metrics hold $(grep -c '"loss"' run/metrics.jsonl) updates, not 8"
kept=$(cd run && ls checkpoint-*.safetensors | sort -t- -k2 -n | tr '\n' ' ')
[ "$kept" = "checkpoint-6.safetensors checkpoint-8.safetensors " ] || fail "the resumed run kept: $kept"
# The same run in one go: bitwise the same files (the output options are the same).
"$rewind" train "${small[@]}" --max-updates 8 --save once --save-every 2 --keep-checkpoints 2 \
  --metrics once.jsonl --log-every 1 > /dev/null
cmp -s once/model.safetensors run/model.safetensors || fail "the resumed run differs from the run in one go"
# Options given again replace the run's; --no-save saves nothing.
"$rewind" train --resume run --max-updates 9 --save-every 3 > again.log
grep -q "every 3 updates," again.log && ! grep -q "every 3 updates (the run's)" again.log ||
  fail "--save-every given again: $(head -4 again.log)"
before=$(md5sum < run/checkpoint.safetensors)
"$rewind" train --resume run --max-updates 12 --no-save > nosave.log
grep -q "^saving nothing (--no-save)" nosave.log || fail "--no-save: $(head -4 nosave.log)"
[ "$(md5sum < run/checkpoint.safetensors)" = "$before" ] || fail "--no-save saved"
refused "--no-save applies to --resume without --save" train "${small[@]}" --max-updates 1 --no-save

# A kept best model is resumed into a directory of its own, never over the run or its best.
data=(--data small.txt --hidden 8 --batch 2 --k 10 --sample-length 0 --val-fraction 0.2)
"$rewind" train "${data[@]}" --max-updates 6 --eval-every 2 --save withbest --keep-best > /dev/null
refused "is the best checkpoint kept by the run saved in '.*withbest': give --save DIR" \
  train --resume withbest/best --max-updates 8
"$rewind" train --resume withbest/best --max-updates 8 --save branch > /dev/null || fail "resuming the best into branch"

# A stop on a NaN loss (whose gradients are NaN too) saves the last finite parameters.
refused "the loss is .*nan.*the parameters after update [0-9]+ \\(the last finite one\\) are saved in nf/model.safetensors" \
  train --data small.txt --model rnn --tokens chars --hidden 8 --batch 2 --max-updates 20 --optimizer sgd --lr 1e38 \
  --save nf
[ -s nf/model.safetensors ] || fail "no model.safetensors after a NaN loss"

# --k sets k1 and k2: with either, refused.
refused "give --k \\(k1 = k2 = K\\) or --k1/--k2, not both" train "${small[@]}" --k 10 --k2 50 --max-updates 1
refused "give --k \\(k1 = k2 = K\\) or --k1/--k2, not both" train "${small[@]}" --k1 5 --trainer-option k=7 --max-updates 1

# --save-every-seconds counts from the last save: a 3-second run saving every second keeps at most 4.
"$rewind" train "${small[@]}" --time-limit 3 --save timed --save-every-seconds 1 --keep-checkpoints 100 > /dev/null
saves=$(ls timed/checkpoint-*.safetensors | wc -l)
[ "$saves" -ge 2 ] && [ "$saves" -le 5 ] || fail "--save-every-seconds 1 over 3 s saved $saves checkpoints"

# --early-stop: a run split by a resume stops at the update where the run in one go stops.
stop=(--data small.txt --hidden 8 --batch 2 --k 10 --lr 0.3 --sample-length 0 --val-fraction 0.2 --eval-every 2
      --early-stop 2)
"$rewind" train "${stop[@]}" --max-updates 400 --save es_whole > es_whole.log
at=$(sed -nE 's/^early stop at update ([0-9]+).*/\1/p' es_whole.log)
[ -n "$at" ] && [ "$at" -gt 6 ] || fail "the run did not stop early after update 6: $(tail -3 es_whole.log)"
"$rewind" train "${stop[@]}" --max-updates $((at - 2)) --save es_split > /dev/null
"$rewind" train --resume es_split --max-updates 400 > es_resumed.log
grep -q "^early stop at update $at:" es_resumed.log ||
  fail "the resumed run stopped elsewhere than update $at: $(grep -E 'early|trained' es_resumed.log)"

# Metrics: a line every --log-every updates with the mean loss over them, and the end of the run.
"$rewind" train "${small[@]}" --max-updates 25 --metrics every.jsonl --log-every 10 --plot every.png > plot.log
[ "$(grep -o '"update":[0-9]*' every.jsonl | cut -d: -f2 | tr '\n' ' ')" = "10 20 25 25 " ] ||
  fail "--log-every 10 wrote: $(cat every.jsonl)"
[ "$(grep -c '^wrote every.png' plot.log)" = 1 ] || fail "train --plot: $(grep wrote plot.log)"
"$rewind" train "${small[@]}" --max-updates 30 --metrics auto.jsonl > /dev/null
[ "$(grep -c '"loss"' auto.jsonl)" -le 4 ] || fail "the default wrote $(grep -c '"loss"' auto.jsonl) lines for 30 updates"
echo "saves, resumes, keeps and metrics checked"
