#!/usr/bin/env bash
# Time series from the command line on the bundled co2_weekly.csv: train with gaps interpolated and
# differences learned, eval beside persistence, predict and forecast, plot the predictions; rewind predict
# agrees with eval; bad input is refused by name and leaves nothing behind.
set -euo pipefail
rewind=$1 co2=$2
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"
cp "$co2" co2.csv
run=(--data co2.csv --key-columns date --targets co2 --missing interpolate --difference --hidden 16 --k 52
     --batch 4 --epochs 4 --eval-every 0 --val-fraction 0.2 --lr 0.005)
"$rewind" train "${run[@]}" --save co2 > train.log
grep -q "^series: 2284 rows; inputs co2, targets co2 (the next row's), keys date; missing values: interpolate; normalize standard (fitted on the first 1827 rows), differenced" train.log ||
  fail "the first lines do not describe the series: $(head -3 train.log)"
# The final validation: one stream through the file, scored on the last 457 rows, persistence beside it.
line=$(grep "^validation (final):" train.log)
rmse=$(sed -nE 's/.*co2: RMSE ([0-9.e+-]+),.*/\1/p' <<< "$line")
persistence=$(sed -nE 's/.*persistence: RMSE ([0-9.e+-]+),.*/\1/p' <<< "$line")
grep -q "over 457 rows" <<< "$line" || fail "not 457 scored rows: $line"
holds 'a > 0.5 && a < 0.52' "$persistence" || fail "persistence's RMSE $persistence, not 0.51 ppm"
holds 'a > 0 && a < b' "$rmse" "$persistence" || fail "the model ($rmse) does no better than persistence ($persistence)"

# eval of the held-out rows as a file of their own, after a warm-up of 52 rows.
{ head -1 co2.csv; tail -n 509 co2.csv; } > tail.csv
out=$("$rewind" eval --checkpoint co2 --data tail.csv --warmup-rows 52)
grep -q "co2: RMSE [0-9.]*, MAE [0-9.]*, MSE [0-9.]* over 457 rows (persistence: RMSE" <<< "$out" || fail "eval: $out"

# predict: one step ahead for every row, then 52 weeks past the end; its errors are eval's.
"$rewind" predict --checkpoint co2 --data co2.csv --horizon 52 --out preds.csv 2> /dev/null
[ "$(head -1 preds.csv)" = "date,row,origin,step,co2,co2_predicted" ] || fail "header: $(head -1 preds.csv)"
[ "$(grep -c ',2283,[0-9]*,,' preds.csv)" = 52 ] || fail "not 52 forecast rows from the last row"
predicted=$(awk -F, 'NR > 1 && $4 == 1 && $5 != "" && $2 >= 1827 { n++; s += ($6 - $5) ^ 2 } END { printf "%.4g", sqrt(s / n) }' preds.csv)
eval_rmse=$("$rewind" eval --checkpoint co2 --data co2.csv | sed -nE 's/.*co2: RMSE ([0-9.e+-]+),.*/\1/p')
train_rmse=$(printf '%.4g' "$rmse")
[ "$predicted" = "$train_rmse" ] || fail "predict's RMSE on the last 20% is $predicted, training's validation $train_rmse"
[ -n "$eval_rmse" ] || fail "no eval RMSE"
# The whole file: 2283 predictions, less the 59 whose actual value was missing (filled in, not scored).
"$rewind" eval --checkpoint co2 --data co2.csv | grep -q "over 2224 rows" || fail "filled-in values were scored"
"$rewind" predict --checkpoint co2 --data - --horizon 3 < co2.csv | tail -1 | grep -q "^,2286,2283,3,," ||
  fail "predict from standard input"
"$rewind" plot --predictions preds.csv --out preds.png > /dev/null
[ "$(head -c 4 preds.png | od -An -c | tr -d ' ')" = '211PNG' ] || fail "preds.png is not a PNG"

# Rolling origins: forecasts of 10 steps after every 500 rows, within the data.
"$rewind" predict --checkpoint co2 --data co2.csv --horizon 10 --every 500 --out rolling.csv 2> /dev/null
[ "$(awk -F, '$3 == 499 && $4 > 1' rolling.csv | wc -l)" = 9 ] || fail "no 10-step forecast from row 499"

# Bad input: refused by name, nothing written.
printf 'date,co2\n1,2\n3\n' > ragged.csv
refused "ragged.csv' line 3: 1 values for 2 columns" train --data ragged.csv --save nothing
refused "co2.csv' line 8, column 'co2': the value is missing \\(--missing drop, ffill or interpolate" \
  train --data co2.csv --key-columns date --save nothing
refused "has no column 'when' \\(columns: date, co2\\)" train --data co2.csv --key-columns when --save nothing
awk -F, 'BEGIN { OFS = "," } NR == 1 { print $0, "season"; next } { print $0, NR % 52 }' co2.csv > exo.csv
"$rewind" train --data exo.csv --key-columns date --inputs co2,season --targets co2 --missing ffill --hidden 4 \
  --max-updates 2 --save exo > /dev/null
refused "--horizon 5: input column 'season' is not a target, so its values after the data are unknown: give --future FILE" \
  predict --checkpoint exo --data exo.csv --horizon 5 --out nothing.csv
printf 'date,season\n1,1\n2,2\n3,3\n4,4\n' > future.csv
"$rewind" predict --checkpoint exo --data exo.csv --horizon 5 --future future.csv --out exo.csv.preds 2> /dev/null ||
  fail "a forecast with --future"
head -c 3000 "$co2" > text.txt
"$rewind" train --data text.txt --hidden 4 --max-updates 2 --sample-length 0 --save text > /dev/null
refused "is a token model \\(bytes\\): it reads text, not the CSV file 'co2.csv'" eval --checkpoint text --data co2.csv
refused "is a token model \\(bytes\\): it reads text, not the CSV file 'co2.csv'" predict --checkpoint text --data co2.csv
refused "is a time series model: rewind predict forecasts it" sample --checkpoint co2
refused "--difference applies to next-step targets" train --data exo.csv --key-columns date --inputs season \
  --target-columns co2 --difference --missing ffill --save nothing
[ ! -e nothing ] && [ ! -e nothing.csv ] || fail "a refused command wrote files"
echo "time series checked: RMSE $rmse against persistence $persistence on the last 20%"
