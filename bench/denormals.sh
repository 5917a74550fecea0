#!/usr/bin/env bash
# Denormals in long full-BPTT runs, from small initial weights (--init-range 0.05) so that gradients flowing
# back through time decay below FLT_MIN (1.2e-38): text (rows of 9,500 steps: 40,000 characters of the bundled
# text, batch 4, LSTM 64) and adding:2000 (one loss at the end of 2,000 steps, batch 32), each with denormals
# flushed to zero (the default, autodiff::FlushDenormalsGuard) against --keep-denormals, alternating, the
# median of each, at 1 and 2 threads. Prints a table; writes nothing else. bench_autodiff's BM_Denormals
# measures the same on one elementwise op.
#
#   bash bench/denormals.sh [build/bin/rewind]        (REPEATS=5 UPDATES=6 by default)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rewind=$(realpath "${1:-$here/../build/bin/rewind}")
repeats=${REPEATS:-5} updates=${UPDATES:-6}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c 40000 "$here/../data/tinyshakespeare.txt" > "$work/text.txt"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(getconf _NPROCESSORS_ONLN) cores;" \
  "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}; $(date -u +%F)"
rate() {  # rate THREADS WORKLOAD [OPTION]: time steps x batch per second of one run
  local data=(--data "$work/text.txt" --batch 4 --val-fraction 0.05)
  [ "$2" = adding ] && data=(--task adding:2000 --batch 32)
  REWIND_NUM_THREADS=$1 "$rewind" train "${data[@]}" --trainer full --hidden 64 --init-range 0.05 \
    --max-updates "$updates" --eval-every 0 --sample-length 0 ${3:+"$3"} |
    sed -n 's/.*, \([0-9]*\) time steps x batch per second/\1/p'
}
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
printf '%-10s %-9s %22s %22s %8s\n' workload threads "flushed (steps x B/s)" "kept (steps x B/s)" speedup
for workload in text adding; do
  for threads in 1 2; do
    flushed=() kept=()
    for ((i = 0; i < repeats; i++)); do
      flushed+=("$(rate "$threads" "$workload")")
      kept+=("$(rate "$threads" "$workload" --keep-denormals)")
    done
    f=$(printf '%s\n' "${flushed[@]}" | median) k=$(printf '%s\n' "${kept[@]}" | median)
    printf '%-10s %-9s %22.0f %22.0f %7.2fx\n' "$workload" "$threads" "$f" "$k" \
      "$(awk -v a="$f" -v b="$k" 'BEGIN { print a / b }')"
  done
done
