#!/usr/bin/env bash
# Training and evaluation give bit-identical losses, gradient norms and validation losses whatever the number
# of threads (docs/threads.md): sizes large enough that GEMMs and recurrences are split, a batch that splits
# unevenly; every trainer, 1 and 2 layers. Then rewind eval and rewind sample of one saved model.
set -euo pipefail
rewind=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Full precision: the JSON lines carry every digit of the doubles.
fields() { grep -o '"grad_norm":[^,]*,"loss":[^,]*\|"eval_loss":[^,}]*' "$1"; }
for model in lstm gru rnn; do
  for trainer in "--trainer full" "--trainer truncated --k 7" "--trainer checkpointed" \
    "--trainer truncated --k 7 --layers 2" "--trainer checkpointed --layers 2"; do
    for threads in 1 2 3; do
      # shellcheck disable=SC2086  # $trainer is several words on purpose
      REWIND_NUM_THREADS=$threads "$rewind" train --model "$model" $trainer --task recall:10 --task-steps 120 \
        --hidden 64 --batch 31 --max-updates 3 --eval-every 1 --log-every 1 --metrics "$dir/$threads.jsonl" > /dev/null
    done
    if [ "$(grep -c '"eval_loss"' "$dir/1.jsonl")" -lt 3 ] || [ "$(grep -c '"loss"' "$dir/1.jsonl")" -lt 3 ]; then
      echo "$model $trainer: expected 3 updates and 3 evaluations in the metrics"
      exit 1
    fi
    for threads in 2 3; do
      if ! diff <(fields "$dir/1.jsonl") <(fields "$dir/$threads.jsonl"); then
        echo "$model $trainer: $threads threads differ from 1"
        exit 1
      fi
    done
    rm -f "$dir"/*.jsonl
  done
done
echo "identical losses and gradient norms with 1, 2 and 3 threads"

# rewind eval and rewind sample of a saved text model.
head -c 40000 "$2" > "$dir/text.txt"
"$rewind" train --data "$dir/text.txt" --hidden 64 --layers 2 --batch 31 --max-updates 3 --sample-length 0 \
  --eval-every 0 --save "$dir/model" > /dev/null
for threads in 1 2 3; do
  REWIND_NUM_THREADS=$threads "$rewind" eval --checkpoint "$dir/model" --data "$dir/text.txt" > "$dir/eval$threads"
  REWIND_NUM_THREADS=$threads "$rewind" sample --checkpoint "$dir/model" --length 200 > "$dir/sample$threads"
done
for threads in 2 3; do
  cmp "$dir/eval1" "$dir/eval$threads"
  cmp "$dir/sample1" "$dir/sample$threads"
done
cat "$dir/eval1"
echo "identical evaluations and samples with 1, 2 and 3 threads"
