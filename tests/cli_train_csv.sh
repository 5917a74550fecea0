#!/usr/bin/env bash
# rewind train on a CSV series: after 50 updates the validation loss (mean squared error of the next
# temperature) is below the variance of the temperature column, the error of predicting its mean.
set -euo pipefail
rewind=$1 csv=$2
fail() { echo "FAILED: $*"; exit 1; }
out=$("$rewind" train --data "$csv" --inputs temperature,load --targets temperature --reset-column new_day \
  --batch 4 --hidden 16 --max-updates 50 --lr 0.01)
echo "$out"
loss=$(sed -nE 's/^validation \(final\): loss ([0-9.]+)$/\1/p' <<< "$out")
[ -n "$loss" ] || fail "no final validation loss"
variance=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) if ($i == "temperature") c = i; next }
                    { n++; s += $c; q += $c * $c } END { printf "%.6f", q / n - (s / n) ^ 2 }' "$csv")
awk -v l="$loss" -v v="$variance" 'BEGIN { exit !(l >= 0 && l < v / 4) }' ||
  fail "validation loss $loss is not below a quarter of the variance $variance"
echo "values checked: validation loss $loss < variance of the target $variance / 4"
