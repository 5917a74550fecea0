#!/usr/bin/env bash
# A cold full-BPTT pass: the first update of a run records a tape of about 690 MiB (LSTM 256, batch 32, rows of
# 3,125 steps: 100,000 characters of the bundled text) into memory the process has never touched, so it pays
# a page fault per page of it; the second update reuses the arena's blocks. Prints, as the median of REPEATS
# runs, the first and the second update's seconds and the run's minor page faults. To compare two builds of
# the autodiff library, run it with LD_LIBRARY_PATH pointing at the other one's lib directory.
#
#   bash bench/cold_tape.sh [build/bin/rewind]        (REPEATS=3)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rewind=$(realpath "${1:-$here/../build/bin/rewind}")
repeats=${REPEATS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head -c 100000 "$here/../data/tinyshakespeare.txt" > "$work/text.txt"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(getconf _NPROCESSORS_ONLN) cores;" \
  "transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2> /dev/null || echo unknown);" \
  "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}; $(date -u +%F)"
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
first=() second=() faults=() tape=()
for ((i = 0; i < repeats; i++)); do
  rm -f "$work/m.jsonl"
  /usr/bin/time -f '%R' -o "$work/faults" "$rewind" train --data "$work/text.txt" --trainer full --batch 32 \
    --hidden 256 --max-updates 2 --log-every 1 --eval-every 0 --sample-length 0 --val-fraction 0 \
    --metrics "$work/m.jsonl" > /dev/null
  read -r s1 s2 bytes < <(python3 -c '
import json, sys
u = [json.loads(l) for l in open(sys.argv[1]) if "\"grad_norm\"" in l]
print(u[0]["seconds"], u[1]["seconds"] - u[0]["seconds"], u[1]["tape_peak_bytes"])' "$work/m.jsonl")
  first+=("$s1") second+=("$s2") faults+=("$(cat "$work/faults")") tape+=("$bytes")
done
printf 'tape %.0f MiB; first update %.3f s, second %.3f s; minor page faults %s (medians of %d)\n' \
  "$(($(printf '%s\n' "${tape[@]}" | median) / 1048576))" "$(printf '%s\n' "${first[@]}" | median)" \
  "$(printf '%s\n' "${second[@]}" | median)" "$(printf '%s\n' "${faults[@]}" | median)" "$repeats"
