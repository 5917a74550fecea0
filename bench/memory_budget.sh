#!/usr/bin/env bash
# Exact BPTT within a memory budget (issue 26): the time per step of the optimal checkpoint plan at each
# budget, beside full BPTT, one-level checkpointing (segments of sqrt(T)) and truncated(20), for an LSTM of
# hidden 256, batch 32. Configurations alternate within each round; the table gives medians over rounds, and
# each budget's time over full BPTT's in the same round (median). Writes the curve of time per step against
# the memory held at its highest (tape and kept states) as a PNG.
#   usage: bench/memory_budget.sh REWIND [OUT_DIR] [ROUNDS]
set -euo pipefail
rewind=$1 out=${2:-bench/results} rounds=${3:-5}
mkdir -p "$out"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}" \
     "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
model=(--model lstm --hidden 256 --batch 32 --input 64)
declare -A budgets=([1000]="1.5%,2%,5%,10%,25%,50%" [10000]="1%,2%,5%,10%,25%")
declare -A passes=([1000]=5 [10000]=1)
for T in 1000 10000; do
  round="full,truncated:20,checkpointed"
  for b in ${budgets[$T]//,/ }; do round+=",checkpointed:$b"; done
  list=$round
  for _ in $(seq 2 "$rounds"); do list+=",$round"; done
  "$rewind" bench-memory "${model[@]}" --seq "$T" --trainers "$list" --passes "${passes[$T]}" \
    --json "$out/memory_budget_T$T.json" > /dev/null
done
/usr/bin/python3 - "$out" "${passes[1000]}" "${passes[10000]}" <<'PY'
import collections, json, statistics, sys
out, passes = sys.argv[1], {1000: int(sys.argv[2]), 10000: int(sys.argv[3])}
rows = []
for T in (1000, 10000):
    by = collections.OrderedDict()
    for r in json.load(open(f"{out}/memory_budget_T{T}.json")):
        by.setdefault(r["trainer"], []).append(r)
    full = by["full"]
    print(f"T = {T}, {passes[T]} pass(es) per configuration, medians of {len(full)} rounds")
    print(f"{'trainer':<20}{'held MiB':>10}{'fwd/step':>10}{'us/step':>10}{'/ full':>8}")
    for name, rs in by.items():
        ratio = statistics.median(r["us_per_step"] / f["us_per_step"] for r, f in zip(rs, full))
        us = statistics.median(r["us_per_step"] for r in rs)
        held = rs[0]["held_peak_bytes"] / 2**20
        forward = rs[0]["steps_recorded"] / (T * passes[T])
        rows.append((T, name, held, us, ratio))
        print(f"{name:<20}{held:>10.1f}{forward:>10.3f}{us:>10.1f}{ratio:>8.2f}")
    print()
with open(f"{out}/memory_budget.csv", "w") as f:
    f.write("T,trainer,held_mib,us_per_step,ratio_to_full\n")
    for r in rows:
        f.write(",".join(str(x) for x in r) + "\n")
PY
gnuplot <<GP
set terminal pngcairo size 1400,560
set output '$out/memory_budget.png'
set datafile separator ','
set multiplot layout 1,2 title 'LSTM hidden 256, batch 32: exact BPTT within a memory budget'
set logscale x
set grid
set key below
set xlabel 'tape and kept states at their highest (MiB)'
set ylabel 'time per step / full BPTT'
do for [T in "1000 10000"] {
  set title 'T = '.T
  plot '$out/memory_budget.csv' using (\$1 == T+0 && strstrt(strcol(2), '%') > 0 ? \$3 : 1/0):5 with linespoints lw 2 title 'optimal plan at each budget', \
       '' using (\$1 == T+0 && strcol(2) eq 'full' ? \$3 : 1/0):5 with points pt 7 ps 2 title 'full', \
       '' using (\$1 == T+0 && strcol(2) eq 'checkpointed' ? \$3 : 1/0):5 with points pt 5 ps 2 title 'checkpointed sqrt(T)', \
       '' using (\$1 == T+0 && strcol(2) eq 'truncated:20' ? \$3 : 1/0):5 with points pt 9 ps 2 title 'truncated(20) (not exact)'
}
unset multiplot
GP
echo "wrote $out/memory_budget.png"
