#!/usr/bin/env bash
# rewind online against a PyTorch eager loop doing the same work (bench/online_torch.py), in one run: an LSTM of
# hidden 32 on one input, batch 1, one thread each, rows read from a CSV file, each prediction written and
# flushed to /dev/null. Then resident memory over 10^6 rows, and co2_weekly.csv continued online against the
# same model frozen. Prints the tables of docs/online.md; writes nothing else.
#
#   bash bench/online.sh [build/bin/rewind]        (ROWS=... to shorten; the acceptance runs use the defaults)
#
# Needs PyTorch for its column (apt-get install python3-torch); without it only rewind's figures are printed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rewind=$(realpath "${1:-$here/../build/bin/rewind}")
predict_rows=${PREDICT_ROWS:-400000} learn_rows=${LEARN_ROWS:-20000} torch_learn_rows=${TORCH_LEARN_ROWS:-3000}
memory_rows=${MEMORY_ROWS:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
export REWIND_NUM_THREADS=1 OMP_NUM_THREADS=1
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(getconf _NPROCESSORS_ONLN) cores;" \
  "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} OPENBLAS_L2_SIZE=${OPENBLAS_L2_SIZE:-unset}; $(date -u +%F)"

rows() {  # rows N FILE: a noisy sine, t,x
  awk -v n="$1" 'BEGIN { print "t,x"; srand(1); for (i = 0; i < n; i++) printf "%d,%.6f\n", i, sin(0.1 * i) + 0.1 * (rand() - 0.5) }' > "$2"
}
rows "$predict_rows" predict.csv
rows "$learn_rows" learn.csv
rows "$torch_learn_rows" torch_learn.csv
field() { python3 -c "import json, sys; d = json.loads(sys.stdin.readline()); print(eval(sys.argv[1], {}, d))" "$1"; }
# One report over the whole file: rows/s, and p50/p99/max of predicting a row and of an update.
ours() {  # ours FILE OPTIONS...
  local file=$1
  shift
  "$rewind" online --data "$file" --key-columns t --hidden 32 "$@" --report-every 100000000 --metrics m.jsonl \
    --out /dev/null 2> /dev/null
  tail -1 m.jsonl
  rm m.jsonl
}
theirs() {  # theirs FILE OPTIONS...
  python3 "$here/online_torch.py" "$@" 2> /dev/null | tail -1
}

printf '\n%-34s %14s %14s %8s %30s %30s\n' "LSTM 32, batch 1, 1 thread" "rewind rows/s" "PyTorch rows/s" "ratio" \
  "rewind predict p50/p99/max us" "PyTorch predict p50/p99/max us"
declare -A rate
for config in "predict only:--no-learn" "learn k1=1 k2=24:--k1 1 --k2 24" "learn k1=24 k2=24:--k1 24 --k2 24"; do
  name=${config%%:*} options=${config#*:}
  file=learn.csv torch_file=torch_learn.csv
  [ "$name" = "predict only" ] && file=predict.csv torch_file=predict.csv
  # shellcheck disable=SC2086  # options are words
  a=$(ours "$file" $options)
  # shellcheck disable=SC2086
  b=$(theirs "$torch_file" $options)
  ra=$(field rows_per_second <<< "$a")
  rate[$name]=$ra
  la=$(field '"%.1f/%.1f/%.0f" % (predict_us["p50"], predict_us["p99"], predict_us["max"])' <<< "$a")
  if [ -n "$b" ] && [ "${b:0:1}" = "{" ]; then
    rb=$(field rows_per_second <<< "$b")
    lb=$(field '"%.1f/%.1f/%.0f" % (predict_us["p50"], predict_us["p99"], predict_us["max"])' <<< "$b")
    printf '%-34s %14.0f %14.0f %7.1fx %30s %30s\n' "$name" "$ra" "$rb" "$(python3 -c "print($ra / $rb)")" "$la" "$lb"
  else
    printf '%-34s %14.0f %14s %8s %30s %30s\n' "$name" "$ra" "-" "-" "$la" "(no PyTorch)"
  fi
  lu=$(field '"%.1f/%.1f/%.0f (%d updates)" % (learn_us["p50"], learn_us["p99"], learn_us["max"], learn_us["count"])' <<< "$a")
  [ "$name" = "predict only" ] || echo "    rewind learn per update p50/p99/max us: $lu"
done
# The learn step's cost amortised per row at k1 = k2 = 24, against predicting alone.
python3 - "${rate[predict only]}" "${rate[learn k1=24 k2=24]}" <<'EOF'
import sys
predict, learn = (float(v) for v in sys.argv[1:])
per_row_predict, per_row_both = 1e6 / predict, 1e6 / learn
print(f"\nk1 = k2 = 24: {per_row_both:.2f} us per row with learning, {per_row_predict:.2f} us predicting only: "
      f"learning costs {(per_row_both - per_row_predict) / per_row_predict:.2f}x predict-only per row")
EOF

# Resident memory over a long stream: a report every 10^5 rows, learning at k1 = k2 = 24.
rows "$memory_rows" memory.csv
"$rewind" online --data memory.csv --key-columns t --hidden 32 --k1 24 --k2 24 --report-every 100000 \
  --metrics memory.jsonl --out /dev/null 2> /dev/null
python3 - memory.jsonl <<'EOF'
import json, sys
reports = [json.loads(line) for line in open(sys.argv[1])]
rss = [(r["row"], r["resident_bytes"]) for r in reports]
warm = rss[1][1]  # after the first 2 x 10^5 rows
print(f"\nresident memory, k1 = k2 = 24, {rss[-1][0]} rows: " +
      ", ".join(f"{row // 1000}k {b / 2**20:.2f} MiB" for row, b in rss))
print(f"growth from row {rss[1][0]} to row {rss[-1][0]}: {(rss[-1][1] - warm) / warm * 100:+.2f}%")
EOF

# co2_weekly.csv (the rows with a value): a model trained on the first 80% (rewind train, 20 passes), then the
# last 20% read online by the same model learning and frozen, both from a zero state at its first row. Two
# models: on the values (standardised; the last years lie above the training range) and on the weekly changes
# (--difference, as docs/timeseries.md trains it).
data="$here/../data/co2_weekly.csv"
grep -v ',$' "$data" > co2.csv
total=$(($(wc -l < co2.csv) - 1)) split=$((total * 8 / 10))
head -$((split + 1)) co2.csv > train.csv
{ head -1 co2.csv; tail -n +$((split + 2)) co2.csv; } > rest.csv
prequential() {  # prequential RUN OPTIONS...: the summary's RMSE
  local run=$1
  shift
  "$rewind" online --data rest.csv --checkpoint "$run" "$@" --out /dev/null 2>&1 |
    sed -nE 's/.*co2 prequential RMSE ([0-9.e+-]+), .*/\1/p'
}
echo
echo "co2_weekly.csv: trained on rows 0-$((split - 1)), then the last $((total - split)) rows (prequential RMSE, ppm):"
printf '  %-34s %10s %s\n' "model" "frozen" "learning online"
for model in "values:" "weekly changes:--difference"; do
  name=${model%%:*} options=${model#*:}
  # shellcheck disable=SC2086
  "$rewind" train --data train.csv --key-columns date --targets co2 $options --hidden 32 --k 52 --batch 4 \
    --epochs 20 --val-fraction 0 --eval-every 0 --seed 1 --save "co2 $name" > /dev/null
  line=$(printf '  %-34s %10s' "$name" "$(prequential "co2 $name" --no-learn)")
  for window in "--k1 1 --k2 52" "--k1 52 --k2 52" "--k1 52 --k2 52 --lr 0.001"; do
    # shellcheck disable=SC2086
    line="$line  TBPTT(${window}): $(prequential "co2 $name" $window)"
  done
  echo "$line"
done
