#!/usr/bin/env bash
# Issue 27, recall:L: on recall:20 with 4 symbols (LSTM 16, forget bias 3, Adam 1e-2, batch 8, an update
# every 5 steps), the updates each trainer needs until validation accuracy on the recalled symbol is 1.000
# (checked every 50 updates), its final accuracy, its tape peak and its time. RTRL, SnAp-1 and UORO keep no history:
# their memory per step does not depend on L; truncated(5, 5) sees 5 steps, truncated(5, 25) more than L.
# usage: bench/online_recall.sh [path/to/rewind] [max updates] [seed]
set -euo pipefail
rewind=${1:-build/bin/rewind} max=${2:-2000} seed=${3:-1}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
common=(--task recall:20:4 --task-steps 600 --batch 8 --hidden 16 --option forget_bias=3 --lr 0.01
        --max-updates "$max" --eval-every 50 --log-every 1 --sample-length 0 --seed "$seed")
printf '%-22s %16s %10s %14s %10s\n' trainer "updates to 100%" "final acc" "tape peak MiB" seconds
run() {
  local name=$1; shift
  local start=$SECONDS
  "$rewind" train "${common[@]}" "$@" --metrics "$dir/$name.jsonl" > "$dir/$name.log"
  local first final peak
  first=$(awk '/^validation: / { n += 50; if ($NF == "1.000" && !done) { print n; done = 1 } } END { if (!done) print "never" }' "$dir/$name.log")
  final=$(sed -nE 's/^validation \(final\): .*accuracy ([0-9.]+).*/\1/p' "$dir/$name.log")
  peak=$(grep -o '"tape_peak_bytes":[0-9]*' "$dir/$name.jsonl" | cut -d: -f2 | sort -n | tail -1)
  printf '%-22s %16s %10s %14.3f %10d\n' "$name" "$first" "$final" \
    "$(awk -v b="$peak" 'BEGIN { print b / 1048576 }')" $((SECONDS - start))
}
run "truncated(5,5)" --trainer truncated --k1 5 --k2 5
run "truncated(5,25)" --trainer truncated --k1 5 --k2 25
run "uoro(k 5)" --trainer uoro --trainer-option k=5
run "rtrl(k 5)" --trainer rtrl --trainer-option k=5
run "snap1(k 5)" --trainer snap1 --trainer-option k=5
