#!/usr/bin/env bash
# Training gives bit-identical losses and gradient norms whatever the number of threads (docs/threads.md):
# sizes large enough that GEMMs and recurrences are split, a batch that splits unevenly.
set -euo pipefail
rewind=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fields() { grep -o '"grad_norm":[^,]*,"loss":[^,]*' "$1"; }
for model in lstm gru rnn; do
  for trainer in "--trainer full" "--trainer truncated --k 7"; do
    for threads in 1 2 3; do
      # shellcheck disable=SC2086  # $trainer is two or three words on purpose
      REWIND_NUM_THREADS=$threads "$rewind" train --model "$model" $trainer --task recall:10 --task-steps 120 \
        --hidden 64 --batch 31 --max-updates 3 --metrics "$dir/$threads.jsonl" > /dev/null
    done
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
