#!/usr/bin/env bash
# rewind train on a CSV series: after 50 updates the validation error of the next temperature, in the data's
# units, is below half the temperature's standard deviation (the error of predicting its mean).
set -euo pipefail
rewind=$1 csv=$2
fail() { echo "FAILED: $*"; exit 1; }
out=$("$rewind" train --data "$csv" --inputs temperature,load --targets temperature --reset-column new_day \
  --batch 4 --hidden 16 --max-updates 50 --lr 0.01)
echo "$out"
mse=$(sed -nE 's/^validation \(final\): .*temperature: RMSE [0-9.e+-]+, MAE [0-9.e+-]+, MSE ([0-9.e+-]+) over.*/\1/p' <<< "$out")
[ -n "$mse" ] || fail "no final validation error of temperature"
variance=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) if ($i == "temperature") c = i; next }
                    { n++; s += $c; q += $c * $c } END { printf "%.6f", q / n - (s / n) ^ 2 }' "$csv")
awk -v l="$mse" -v v="$variance" 'BEGIN { exit !(l >= 0 && l < v / 4) }' ||
  fail "validation MSE $mse is not below a quarter of the variance $variance"
echo "values checked: validation MSE $mse < variance of the target $variance / 4"
