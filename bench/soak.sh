#!/usr/bin/env bash
# Long-run soak: UPDATES (default 10^6) truncated updates of a small LSTM on a synthetic task, with the process's
# resident memory sampled every second and the tape arena's reserve and block count read from the metrics every
# 10^4 updates. After warm-up all three must stay flat (<= 1% growth); the table goes to bench/README.md.
# Usage: [REWIND=path/to/rewind] bench/soak.sh [UPDATES] (default ./build/bin/rewind).
set -euo pipefail
cd "$(dirname "$0")/.."
updates=${1:-1000000}
rewind=${REWIND:-./build/bin/rewind}  # or an installed copy, so that a rebuild cannot disturb the run
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} REWIND_NUM_THREADS=${REWIND_NUM_THREADS:-default}"
"$rewind" train --model lstm --task recall:20 --task-steps 200 --hidden 32 --batch 16 --trainer truncated --k1 5 \
  --k2 25 --lr 0.003 --clip 1 --max-updates "$updates" --eval-every 0 --log-every 10000 --sample-length 0 \
  --metrics "$work/metrics.jsonl" > "$work/train.log" &
pid=$!
: > "$work/rss"
while kill -0 "$pid" 2>/dev/null; do
  rss=$(ps -o rss= -p "$pid" 2>/dev/null || true)
  [ -n "$rss" ] && echo "$SECONDS $rss" >> "$work/rss"
  sleep 1
done
wait "$pid"
tail -2 "$work/train.log"
echo "update  tape_reserved_bytes  arena_block_allocations"
field() { grep -o "\"$1\":[0-9]*" | cut -d: -f2; }
paste -d' ' <(field update < "$work/metrics.jsonl") <(field tape_reserved_bytes < "$work/metrics.jsonl") \
  <(field arena_block_allocations < "$work/metrics.jsonl") |
  awk '$1 % 10000 == 0 { printf "%7d  %19d  %23d\n", $1, $2, $3 }' | tee "$work/arena" | awk 'NR == 1 || NR % 10 == 0'
echo "seconds  rss_kib (every 10th sample)"
awk 'NR % 10 == 1' "$work/rss"
# Flat after warm-up: from the second sample on, nothing grows by more than 1% over its first value.
awk 'NR == 2 { r = $2; b = $3 } NR > 2 && ($2 > r * 1.01 || $3 > b) { bad = 1 } END { exit bad }' "$work/arena" &&
  echo "arena: flat after warm-up" || { echo "arena: GROWS"; exit 1; }
n=$(wc -l < "$work/rss")
awk -v n="$n" 'NR == int(n / 10) + 1 { r = $2 } NR > int(n / 10) + 1 && $2 > r * 1.01 { bad = 1; last = $2 } END {
  if (bad) { print "rss: GROWS to " last " KiB from " r; exit 1 } print "rss: flat after warm-up (" r " KiB)" }' "$work/rss"
