#!/usr/bin/env bash
# Issue 12, acceptance 3: on recall:30 with 8 symbols (LSTM 32, forget bias 3, Adam 1e-2), the updates each
# trainer needs until validation accuracy on the recalled symbol is 1.000 (checked every 25 updates), its
# final accuracy and its tape peak. The adaptive trainer is not told L: only k1, [k_min, k_max], tolerance.
# usage: bench/truncation_recall.sh [path/to/rewind] [max updates] [seed]   (about a minute on one core)
set -euo pipefail
rewind=${1:-build/bin/rewind} max=${2:-1000} seed=${3:-1}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
common=(--task recall:30:8 --task-steps 600 --batch 32 --hidden 32 --option forget_bias=3 --lr 0.01
        --max-updates "$max" --eval-every 25 --log-every 1 --sample-length 0 --seed "$seed")
printf '%-44s %18s %14s %15s\n' trainer "updates to 100%" "final acc" "tape peak MiB"
run() {
  local name=$1; shift
  "$rewind" train "${common[@]}" "$@" --metrics "$dir/$name.jsonl" > "$dir/$name.log"
  local first final peak
  first=$(awk '/^validation: / { n += 25; if ($NF == "1.000" && !done) { print n; done = 1 } } END { if (!done) print "never" }' "$dir/$name.log")
  final=$(sed -nE 's/^validation \(final\): .*accuracy ([0-9.]+).*/\1/p' "$dir/$name.log")
  peak=$(grep -o '"tape_peak_bytes":[0-9]*' "$dir/$name.jsonl" | cut -d: -f2 | sort -n | tail -1)
  printf '%-44s %18s %14s %15.2f\n' "$name" "$first" "$final" "$(awk -v b="$peak" 'BEGIN { print b / 1048576 }')"
}
run "truncated(5,5)" --trainer truncated --k1 5 --k2 5
run "truncated(5,35)" --trainer truncated --k1 5 --k2 35
run "truncated(5,60)" --trainer truncated --k1 5 --k2 60
run "adaptive(k1 5, k in [5,100], tol 0.01)" --trainer adaptive --trainer-option k1=5 --trainer-option k_min=5 \
  --trainer-option k_max=100 --trainer-option every=25 --trainer-option tolerance=0.01
