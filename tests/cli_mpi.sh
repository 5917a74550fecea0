#!/usr/bin/env bash
# Data parallelism (issue 14): two MPI ranks with B/2 streams each train to the parameters of one process with
# B streams (to float rounding; the gradient is summed in another order), for the truncated, full,
# checkpointed and artbp trainers on text and on a CSV series; two runs with the same ranks are bitwise identical;
# checkpoints resume across 1 <-> 2 ranks; a batch the ranks cannot share is refused by every rank without a
# hang.
set -euo pipefail
rewind=$1 compare=$2 text=$3 series=$4
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"
mpi=(mpirun --allow-run-as-root --oversubscribe -np 2)
export REWIND_NUM_THREADS=1
# Open MPI keeps allocations until exit by design: not leaks of rewind's (under the sanitizer build).
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=0"
head -c 40000 "$text" > corpus.txt
same() {  # same <label> <rewind train arguments>...: one process and two ranks agree
  local label=$1
  shift
  "$rewind" train "$@" --sample-length 0 --save "one_$label" > "one_$label.log"
  "${mpi[@]}" "$rewind" train "$@" --sample-length 0 --save "two_$label" > "two_$label.log" 2>&1 ||
    fail "$label under mpirun: $(tail -5 "two_$label.log")"
  grep -q "^MPI: 2 ranks" "two_$label.log" || fail "$label: not run as 2 ranks: $(head -5 "two_$label.log")"
  "$compare" "one_$label/model.safetensors" "two_$label/model.safetensors" 1e-5 ||
    fail "$label: 2 ranks differ from 1 process"
  # Validation is shared by the ranks and combined: the same loss to rounding.
  local one two
  one=$(sed -nE 's/^validation \(final\): loss ([0-9.]+).*/\1/p' "one_$label.log")
  two=$(sed -nE 's/^validation \(final\): loss ([0-9.]+).*/\1/p' "two_$label.log")
  holds 'a > 0 && (a - b) / a < 1e-5 && (b - a) / a < 1e-5' "$one" "$two" ||
    fail "$label: validation loss $one with 1 process, $two with 2 ranks"
}
text_run=(--data corpus.txt --hidden 24 --batch 8 --eval-every 10 --max-updates 30 --clip 1)
same truncated "${text_run[@]}" --trainer truncated --k1 8 --k2 16
same full --data corpus.txt --hidden 16 --batch 16 --trainer full --epochs 3 --eval-every 0
same checkpointed --data corpus.txt --hidden 16 --batch 16 --trainer checkpointed --segment 40 --epochs 3 \
  --eval-every 0
same accumulate "${text_run[@]}" --trainer truncated --k 8 --accumulate 3
same csv --data "$series" --hidden 8 --batch 2 --k 5 --max-updates 20 --eval-every 0
# ARTBP's updates weigh by their normalizer (its expected count), in the group and between the ranks.
same artbp "${text_run[@]}" --trainer artbp --trainer-option c=0.2 --accumulate 2

"${mpi[@]}" "$rewind" train "${text_run[@]}" --k 16 --sample-length 0 --save again > again.log 2>&1
"${mpi[@]}" "$rewind" train "${text_run[@]}" --k 16 --sample-length 0 --save again2 > again2.log 2>&1
cmp -s again/model.safetensors again2/model.safetensors || fail "two runs with 2 ranks are not bitwise equal"

out=$("${mpi[@]}" "$rewind" train --data corpus.txt --batch 5 --max-updates 1 2>&1) && fail "batch 5 was accepted"
grep -q "(rank [01] of 2): --batch 5 cannot be shared evenly by 2 ranks" <<< "$out" || fail "batch 5: $out"
out=$("${mpi[@]}" "$rewind" train --data corpus.txt --trainer adaptive --max-updates 1 2>&1) &&
  fail "the adaptive trainer was accepted"
grep -q "adaptive is not available under MPI yet" <<< "$out" || fail "adaptive: $out"

# Checkpoints hold every stream's carried state: a run resumes with another number of ranks (1 -> 2, 2 -> 1)
# and ends where one process does; with the same number it ends bitwise where an uninterrupted run does.
resume_run=(--data corpus.txt --hidden 24 --batch 8 --eval-every 10 --clip 1 --k 16 --sample-length 0)
"$rewind" train "${resume_run[@]}" --max-updates 40 --save whole > /dev/null
"$compare" one_truncated/checkpoint.safetensors two_truncated/checkpoint.safetensors 1e-5 > /dev/null ||
  fail "the checkpoints of 1 process and 2 ranks differ"
"$rewind" train "${resume_run[@]}" --max-updates 20 --save up > /dev/null
"${mpi[@]}" "$rewind" train --resume up --max-updates 40 --save up > up.log 2>&1 || fail "1 -> 2: $(tail -3 up.log)"
"$compare" whole/model.safetensors up/model.safetensors 1e-5 || fail "resumed 1 -> 2 ranks: differs"
"${mpi[@]}" "$rewind" train "${resume_run[@]}" --max-updates 20 --save down > /dev/null 2>&1
"$rewind" train --resume down --max-updates 40 --save down > /dev/null
"$compare" whole/model.safetensors down/model.safetensors 1e-5 || fail "resumed 2 -> 1 rank: differs"
"${mpi[@]}" "$rewind" train "${resume_run[@]}" --max-updates 40 --save both > /dev/null 2>&1
"${mpi[@]}" "$rewind" train "${resume_run[@]}" --max-updates 20 --save split > /dev/null 2>&1
"${mpi[@]}" "$rewind" train --resume split --max-updates 40 --save split > /dev/null 2>&1
cmp -s both/checkpoint.safetensors split/checkpoint.safetensors || fail "resumed 2 -> 2 ranks: not bitwise equal"

# A held-out test file is shared by the ranks as validation is (5 of its 10 streams on rank 0) and combined to
# the loss of one process.
head -c 8000 corpus.txt > held.txt
same test "${text_run[@]}" --k 8 --test-data held.txt
grep -q "^MPI: 2 ranks, 4 streams each, validation 5 streams on rank 0, test 5 streams on rank 0" two_test.log ||
  fail "the test set is not shared: $(grep '^MPI' two_test.log)"
one=$(sed -nE 's/^test: loss ([0-9.]+).*/\1/p' one_test.log)
two=$(sed -nE 's/^test: loss ([0-9.]+).*/\1/p' two_test.log)
holds 'a > 0 && (a - b) / a < 1e-5 && (b - a) / a < 1e-5' "$one" "$two" || fail "test loss $one with 1 process, $two with 2"

# Three ranks: the ring allreduce's chunks cannot be equal when the parameter count is not a multiple of 3,
# and the validation streams split unevenly (3, 3, 4), so the ranks' losses must be weighed by their counts.
mpi3=(mpirun --allow-run-as-root --oversubscribe -np 3)
three=(--data corpus.txt --hidden 7 --batch 6 --k 8 --eval-every 10 --max-updates 20 --clip 1 --sample-length 0)
"$rewind" train "${three[@]}" --save one_three > one_three.log
"${mpi3[@]}" "$rewind" train "${three[@]}" --save three > three.log 2>&1 || fail "3 ranks: $(tail -5 three.log)"
grep -q "^MPI: 3 ranks, 2 streams each, validation 3 streams on rank 0" three.log || fail "$(grep '^MPI' three.log)"
header=$(od -An -tu8 -N8 three/model.safetensors | tr -d ' ')
elements=$((($(stat -c %s three/model.safetensors) - 8 - header) / 4))
[ $((elements % 3)) -ne 0 ] || fail "$elements parameters divide by 3: the test would not exercise uneven chunks"
"$compare" one_three/model.safetensors three/model.safetensors 1e-5 || fail "3 ranks differ from 1 process"
one=$(sed -nE 's/^validation \(final\): loss ([0-9.]+).*/\1/p' one_three.log)
two=$(sed -nE 's/^validation \(final\): loss ([0-9.]+).*/\1/p' three.log)
holds 'a > 0 && (a - b) / a < 1e-5 && (b - a) / a < 1e-5' "$one" "$two" ||
  fail "validation loss $one with 1 process, $two with 3 ranks"
echo "1 process and 2 or 3 ranks checked: $(cat one_*.log | grep -c '^saved') runs each"
