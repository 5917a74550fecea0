#!/usr/bin/env bash
# Online gradients (issue 27): the time per time step of an update of uoro, snap1 and rtrl beside
# truncated(1, 1) and truncated(20), as `rewind bench-memory` times a trainer's updates. LSTM, input 64,
# hidden 64 and 256 at batch 32, hidden 64 and 256 at batch 1 (the online setting: one stream), and RTRL on
# a model small enough for its p forward-mode passes per step (hidden 8, input 8, batch 8). snap1:20 updates
# every 20 steps, as truncated(20) does. Configurations alternate within each of ROUNDS rounds; the table
# gives medians, and each trainer's time per step over truncated(1, 1)'s and truncated(20)'s in the same
# round (medians).
#   usage: bench/online_gradients.sh REWIND [OUT_DIR] [ROUNDS]
set -euo pipefail
rewind=$1 out=${2:-bench/results} rounds=${3:-3}
mkdir -p "$out"
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}" \
     "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
run() {  # name, trainers of one round, model options...
  local name=$1 round=$2
  shift 2
  local list=$round
  for _ in $(seq 2 "$rounds"); do list+=",$round"; done
  "$rewind" bench-memory --model lstm "$@" --seq 400 --trainers "$list" --passes 1 \
    --json "$out/online_gradients_$name.json" > /dev/null
}
run h64_b32 truncated:1,uoro,truncated:20 --hidden 64 --input 64 --batch 32
run h256_b32 truncated:1,uoro,truncated:20,snap1:20 --hidden 256 --input 64 --batch 32
run h64_b1 truncated:1,uoro,truncated:20 --hidden 64 --input 64 --batch 1
run h256_b1 truncated:1,uoro,truncated:20,snap1:20 --hidden 256 --input 64 --batch 1
run h8_b8 truncated:1,rtrl,uoro,snap1 --hidden 8 --input 8 --batch 8
/usr/bin/python3 - "$out" <<'PY'
import collections, json, statistics, sys
out = sys.argv[1]
print(f"{'model':<10}{'trainer':<14}{'us/step':>10}{'/ truncated(1,1)':>18}{'/ truncated(20)':>17}")
for name in ("h64_b32", "h256_b32", "h64_b1", "h256_b1", "h8_b8"):
    by = collections.OrderedDict()
    for r in json.load(open(f"{out}/online_gradients_{name}.json")):
        by.setdefault(r["trainer"], []).append(r)
    def ratio(rs, base):
        if base not in by:
            return ""
        return f"{statistics.median(r['us_per_step'] / b['us_per_step'] for r, b in zip(rs, by[base])):.2f}"
    for trainer, rs in by.items():
        print(f"{name:<10}{trainer:<14}{statistics.median(r['us_per_step'] for r in rs):>10.1f}"
              f"{ratio(rs, 'truncated:1'):>18}{ratio(rs, 'truncated:20'):>17}")
PY
