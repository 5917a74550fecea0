#!/usr/bin/env bash
# Data parallelism on this machine: one process with 2 threads against 2 MPI ranks with 1 thread each, the same
# global batch (32), the LSTM on the bundled text under TBPTT(K), at hidden 256 and 1024; throughput and the
# gradient exchange's bytes and time per update (the time includes waiting for the slower rank).
# Usage: bench/mpi_scaling.sh [UPDATES] [K]   (from a build with MPI: ./build/bin/rewind; REWIND=path overrides)
set -euo pipefail
cd "$(dirname "$0")/.."
updates=${1:-60} k=${2:-20}
rewind=${REWIND:-./build/bin/rewind}
mpi=(mpirun --allow-run-as-root --oversubscribe -np 2 -x REWIND_NUM_THREADS=1)
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}; $(nproc) cores;" \
  "$updates updates, TBPTT($k), batch 32, the first run of each pair discarded as warm-up"
echo "| hidden | 1 process x 2 threads (steps x batch / s) | 2 ranks x 1 thread | ratio | bytes per update and rank | exchange ms per update |"
echo "|---:|---:|---:|---:|---:|---:|"
rate() { sed -nE 's/^trained .* ([0-9]+) time steps x batch per second$/\1/p'; }
for hidden in 256 1024; do
  run=(train --hidden "$hidden" --batch 32 --k "$k" --max-updates "$updates" --eval-every 0 --val-fraction 0
       --sample-length 0)
  REWIND_NUM_THREADS=2 "$rewind" "${run[@]}" > /dev/null  # warm caches and the page cache
  one=$(REWIND_NUM_THREADS=2 "$rewind" "${run[@]}" | rate)
  out=$("${mpi[@]}" "$rewind" "${run[@]}" 2>&1)
  two=$(rate <<< "$out")
  read -r bytes ms < <(sed -nE 's/^MPI gradient exchange: [0-9]+ updates, ([0-9]+) bytes sent per update and rank, ([0-9.]+) ms per update.*/\1 \2/p' <<< "$out")
  echo "| $hidden | $one | $two | $(awk -v a="$two" -v b="$one" 'BEGIN { printf "%.2f", a / b }') | $bytes | $ms |"
done
