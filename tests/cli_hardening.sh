#!/usr/bin/env bash
# rewind train / sample / eval refuse what they would otherwise silently ignore or get wrong (issue 15): each
# case must exit non-zero with a message naming the option or file at fault, or behave as documented.
set -euo pipefail
rewind=$1 text=$2
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"
small=(--hidden 8 --batch 4 --sample-length 0 --eval-every 0)
head -c 6000 "$text" > corpus.txt
"$rewind" train --data corpus.txt "${small[@]}" --max-updates 3 --save run > /dev/null

# --resume: the saved run fixes everything but limits and outputs; a changed data file is noticed.
for option in "--lr 0.5" "--model gru" "--optimizer sgd" "--batch 7" "--data missing.txt" "--k 5" "--clip 1"; do
  # shellcheck disable=SC2086  # two words on purpose
  refused "^rewind train: ${option%% *} cannot be combined with --resume" train --resume run --max-updates 4 $option
done
mkdir elsewhere
(cd elsewhere && "$rewind" train --resume ../run --max-updates 4 --sample-length 0 > resumed.log) ||
  fail "resuming from another directory"
printf 'more' >> corpus.txt
refused "data file '.*corpus.txt' changed since the run was saved \\(6004 bytes" train --resume run --max-updates 5

# Hyperparameters that cannot train are refused, not reinterpreted.
refused "gamma must be > 0" train --lr-gamma -1 --max-updates 1
refused "--clip must be >= 0" train --clip -1 --max-updates 1
refused "momentum applies to sgd only" train --momentum 0.9 --max-updates 1
refused "--batch must be >= 1" train --batch 0 --max-updates 1
refused "learning rate must be finite and >= 0" train --lr -0.1 --max-updates 1
refused "--trainer-option 'k20' is not KEY=VALUE" train --trainer-option k20 --max-updates 1
refused "data file '.*' is a directory, not a regular file" train --data "$work" --max-updates 1
# Devices and FIFOs are refused before anything reads them (a FIFO read once for its hash hung the run).
refused "data file '/dev/null' is a character device, not a regular file; use rewind online" train --data /dev/null \
  --token-dtype uint16 --vocab-size 4 --max-updates 1
mkfifo fifo
code=0
out=$(timeout 60 "$rewind" train --data fifo --max-updates 1 2>&1) || code=$?
[ "$code" = 1 ] && grep -q "data file 'fifo' is a FIFO (named pipe), not a regular file; use rewind online" <<< "$out" ||
  fail "a FIFO as --data: exit $code, $out"
refused "validation file 'fifo' is a FIFO" train --data corpus.txt --val-data fifo --max-updates 1
refused "data file '-' \\(standard input\\) is a stream, not a regular file; use rewind online" train --data - \
  --max-updates 1
refused "task 'recall:12abc': expected NAME:NUMBER" train --task recall:12abc --max-updates 1
refused "pass 0 has no targets at all" train --task delay:200 --task-steps 100 --hidden 4 --max-updates 5

# The schedule is part of the run (its length is the --max-updates it started with): AdamW with a cosine
# schedule stopped early (--epochs) and resumed ends bitwise where the uninterrupted run does.
recipe=(--task delay:1 --task-steps 100 --hidden 8 --optimizer adamw --weight-decay 0.01 --lr 0.03
        --lr-schedule cosine --warmup 5 --lr-min 0.001 --sample-length 0 --eval-every 0 --max-updates 40)
"$rewind" train "${recipe[@]}" --save cosine_whole > /dev/null
"$rewind" train "${recipe[@]}" --epochs 2 --save cosine_split > split.log
grep -q "trained [1-9][0-9]* updates" split.log && ! grep -q "to update 40)" split.log || fail "--epochs 2 did not stop early"
"$rewind" train --resume cosine_split --max-updates 40 --save cosine_split > /dev/null
cmp -s cosine_whole/model.safetensors cosine_split/model.safetensors || fail "the resumed cosine/adamw run differs"
refused "--lr-schedule cannot be combined with --resume" train --resume cosine_whole --lr-schedule constant

# CSV: the extension in any case; CSV options on text data are an error.
printf 'temperature,load\n' > series.CSV
for i in $(seq 1 80); do echo "$((i % 7)).5,$((i % 3))" >> series.CSV; done
"$rewind" train --data series.CSV --inputs temperature,load --targets temperature --batch 2 --hidden 4 \
  --max-updates 3 > csv.log || fail "series.CSV: $(cat csv.log)"
grep -q "trained 3 updates" csv.log || fail "series.CSV was not read as CSV"
if grep -q " acc " csv.log; then fail "accuracy shown for real-valued targets"; fi
refused "--inputs applies to CSV data" train --data corpus.txt --inputs a --max-updates 1
# Too few rows: the message counts what validation took and how many rows are needed.
printf 'a\n1\n2\n' > two.csv
refused "'.*two.csv' has 2 rows, 1 of them held out for validation \\(--val-fraction 0.1\\): CSV: 1 rows are too few for 1 streams: each needs a step and the next row as its target, 2 rows at least" \
  train --data two.csv --batch 1 --max-updates 1

# A non-finite stop keeps the last finite parameters: a target of 3e38 overflows the squared error (in the
# data's units: --normalize none).
printf 'a,b\n' > overflow.csv
for i in $(seq 1 60); do if [ "$i" = 10 ]; then echo "$i,3e38"; else echo "$i,0.5"; fi; done >> overflow.csv
refused "the loss is inf.*parameters after update 0 \\(the last finite one\\) are saved" \
  train --data overflow.csv --inputs a --targets b --normalize none --batch 2 --hidden 4 --max-updates 5 --save nan
[ -s nan/model.safetensors ] || fail "no model.safetensors after a non-finite stop"

# --on-nonfinite skip discards such updates, counts them, and stops after --max-skips in a row.
out=$("$rewind" train --data overflow.csv --inputs a --targets b --normalize none --batch 2 --hidden 4 --max-updates 6 \
  --on-nonfinite skip --log-every 1 --metrics skip.jsonl 2>&1) || fail "--on-nonfinite skip: $out"
grep -Eq "skipped [1-9][0-9]* non-finite update" <<< "$out" || fail "no skipped update reported: $out"
grep -q '"skipped_nonfinite":1' skip.jsonl || fail "the metrics do not count the skipped update"
printf 'a,b\n' > all_overflow.csv
for i in $(seq 1 60); do echo "$i,3e38"; done >> all_overflow.csv
refused "4 non-finite updates in a row, more than --max-skips 3" \
  train --data all_overflow.csv --inputs a --targets b --normalize none --batch 2 --hidden 4 --k 5 --max-updates 20 \
  --on-nonfinite skip --max-skips 3

# --save is checked before training.
refused "--save: cannot create directory '/proc/rewind/run'" train --save /proc/rewind/run --max-updates 1

# The vocabulary is stored as bytes 0-255 (Python's bytes() takes it), not as signed chars.
printf 'caf\xc3\xa9 au lait, caf\xc3\xa9 noir. %.0s' $(seq 1 40) > utf8.txt
"$rewind" train --data utf8.txt --hidden 4 --batch 2 --max-updates 1 --sample-length 0 --save utf8 > /dev/null
vocabulary=$(grep -ao 'vocabulary\\":\[[-0-9,]*\]' utf8/model.safetensors)
grep -q '195' <<< "$vocabulary" || fail "no byte 195 in the stored vocabulary: $vocabulary"
if grep -q -- '-' <<< "$vocabulary"; then fail "negative bytes in the stored vocabulary: $vocabulary"; fi

# Validation does not depend on the training batch: with lr 0 the weights stay the seed's, whatever --batch.
for batch in 4 9; do
  "$rewind" train --data corpus.txt --hidden 8 --batch $batch --lr 0 --max-updates 1 --sample-length 0 \
    --eval-every 0 | grep "validation (final)" > "validation.$batch"
done
cmp -s validation.4 validation.9 || fail "validation differs with --batch: $(cat validation.4 validation.9)"

# sample and eval.
refused "--length must be >= 0" sample --checkpoint run --length -5
refused "--temperature must be > 0" sample --checkpoint run --temperature 0
refused "unrecognised option '--option'|unrecognized option '--option'" sample --checkpoint run --option x=1
"$rewind" sample --checkpoint run/checkpoint.safetensors --length 10 > /dev/null || fail "sample from a checkpoint file"
head -c 24 corpus.txt > tiny.txt
grep -q "(23 characters, batch 1)" <<< "$("$rewind" eval --checkpoint run --data tiny.txt)" ||
  fail "eval of a 24-character file does not score 23 characters"
printf '%s~' "$(head -c 100 corpus.txt)" > foreign.txt
refused "is not in the model's vocabulary" eval --checkpoint run --data foreign.txt
grep -q "skipped 1 characters" <<< "$("$rewind" eval --checkpoint run --data foreign.txt --unknown skip)" ||
  fail "eval --unknown skip"

refused "--seq: 'abc' is not an integer" bench-memory --seq abc
# Whole outputs first: grep -q would stop reading early and, under pipefail, fail the writer with SIGPIPE.
commands=$("$rewind" --help)
grep -q "^  bench-memory  memory" <<< "$commands" || fail "the command list runs into its column"
train_help=$("$rewind" train --help)
grep -q -- "--lr arg (=0.002)" <<< "$train_help" || fail "defaults print in full precision"
# Help lists the plugins installed and the data kinds --data takes; defaults print as typed.
help_text=$(tr -s ' \n' ' ' <<< "$train_help")  # one line: the help wraps its columns
grep -q "trainer plugin: adaptive, artbp, checkpointed, full, rtrl, snap1, truncated, uoro" <<< "$help_text" ||
  fail "train --help does not list the trainers found: $(grep -A2 -- --trainer <<< "$train_help")"
grep -q "model plugin: gru, lstm, rnn" <<< "$help_text" || fail "train --help does not list the models found"
grep -q "token file (with --token-dtype) or CSV time series" <<< "$help_text" || fail "--data help: $help_text"
grep -q -- "--rtol arg (=1e-06)" <<< "$("$rewind" gradcheck --help)" || fail "gradcheck --rtol prints in full precision"
grep -q -- "--trainer-option k1=" <<< "$("$rewind" plugins)" || fail "rewind plugins shows trainer options as --option"
echo "hardening cases checked"
