#!/usr/bin/env bash
# Drift (issue 24): a sine whose frequency doubles at row 6000. A model that keeps learning online is back to
# its error before the change within RECOVERY rows; the same model frozen at the change is not, ever.
# Usage: cli_online_drift.sh REWIND [OUT_DIR]: with OUT_DIR, the metrics and docs/online.md's figure
# (online_drift.png) are kept there.
set -euo pipefail
rewind=$1 keep=${2:+$(realpath "$2")}
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"
export REWIND_NUM_THREADS=1
change=6000 every=100 recovery=1500
awk -v change=$change 'BEGIN { print "t,x"; pi = atan2(0, -1)
  for (i = 0; i < 2 * change; i++) { phase += 2 * pi / (i < change ? 40 : 20); printf "%d,%.6f\n", i, sin(phase) } }' \
  > drift.csv
head -$((change + 1)) drift.csv > before.csv
{ head -1 drift.csv; tail -n +$((change + 2)) drift.csv; } > after.csv
"$rewind" online --data before.csv --key-columns t --hidden 16 --k1 5 --k2 40 --lr 0.005 --save learning \
  --report-every $every --metrics learning.jsonl --out /dev/null 2> before.log
cp -r learning frozen
cp learning.jsonl frozen.jsonl
"$rewind" online --data after.csv --resume learning --report-every $every --metrics learning.jsonl --out /dev/null \
  2> learning.log
"$rewind" online --data after.csv --resume frozen --no-learn --report-every $every --metrics frozen.jsonl \
  --out /dev/null 2> frozen.log

# The prequential RMSE of each report (rows [row - every, row)), by row.
rmse() { sed -nE 's/.*"columns":\{"x":\{"count":[0-9]+,"mae":[^,]+,"rmse":([^}]+)\}.*"row":([0-9]+).*/\2 \1/p' "$1"; }
level=$(rmse learning.jsonl | awk -v c=$change '$1 == c { print $2 }')
[ -n "$level" ] || fail "no report at row $change: $(tail -2 learning.jsonl)"
back=$(rmse learning.jsonl | awk -v c=$change -v l="$level" '$1 > c && $2 <= 2 * l { print $1 - c; exit }')
[ -n "$back" ] && holds 'a <= b' "$back" $recovery ||
  fail "learning online: not back to 2x its RMSE before the change ($level) within $recovery rows ($back)"
frozen_best=$(rmse frozen.jsonl | awk -v c=$change '$1 > c && (m == "" || $2 < m) { m = $2 } END { print m }')
holds 'a > 10 * b' "$frozen_best" "$level" ||
  fail "the frozen model came back to the level before the change: best RMSE $frozen_best against $level"
# rewind plot reads the reports of both runs (their prequential RMSE over rows, latencies, throughput).
if command -v gnuplot > /dev/null; then
  "$rewind" plot learning.jsonl --compare frozen.jsonl --out drift.png > plot.log ||
    fail "rewind plot of online metrics: $(cat plot.log)"
  [ -s drift.png ] && grep -q "prequential RMSE of x" drift.png.gp || fail "rewind plot drew no online figure"
  [ "$(wc -l < drift.png.0.csv)" = $((2 * change / every + 1)) ] || fail "plot data: $(wc -l < drift.png.0.csv) lines"
fi
if [ -n "$keep" ]; then
  mkdir -p "$keep"
  cp learning.jsonl frozen.jsonl "$keep"/
  (cd "$keep" && "$rewind" plot learning.jsonl --compare frozen.jsonl --out online_drift.png > /dev/null)
fi
echo "drift checked: RMSE $level before the change at row $change; learning online, back to 2x that $back rows" \
  "after it; frozen, never below $frozen_best"
