#!/usr/bin/env bash
# rewind plot and rewind train --plot: the curves' data follow the metrics (a resume from an earlier checkpoint
# replaces the updates it repeats), the best validation is marked, and bad metrics are refused by line.
set -euo pipefail
rewind=$1 text=$2
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"
head -c 30000 "$text" > corpus.txt
run=(--data corpus.txt --hidden 16 --batch 4 --k 16 --eval-every 10 --sample-length 0 --log-every 1)
"$rewind" train "${run[@]}" --max-updates 40 --save a --metrics a.jsonl --plot a.png > a.log
grep -q '^wrote a.png' a.log || fail "train --plot wrote nothing: $(cat a.log)"
[ "$(head -c 4 a.png | od -An -c | tr -d ' ')" = '211PNG' ] || fail "a.png is not a PNG"
# 40 update rows, and 5 validation rows (4 periodic, 1 final) after the header.
# Update rows have no validation loss (column 6); validation rows have one.
update_rows() { awk -F, 'NR > 1 && $6 == "nan"' "$1"; }
[ "$(update_rows a.png.0.csv | wc -l)" -eq 40 ] || fail "a.png.0.csv: $(update_rows a.png.0.csv | wc -l) update rows"
[ "$(awk -F, 'NR > 1 && $6 != "nan"' a.png.0.csv | wc -l)" -eq 5 ] || fail "a.png.0.csv: validation rows $(cat a.png.0.csv)"
best=$(grep '"eval_loss"' a.jsonl | sed -E 's/.*"eval_loss":([0-9.e+-]+).*"update":([0-9]+).*/\2 \1/' |
       sort -s -k2,2g | head -1 | cut -d' ' -f1)
[ "$(sed -n 2p a.png.best.csv | cut -d, -f1)" = "$best" ] || fail "best marked at $(cat a.png.best.csv), not $best"

# b resumes from an earlier checkpoint of its own: updates 21-30 are in its metrics twice, once in the plot.
"$rewind" train "${run[@]}" --max-updates 20 --save b --metrics b.jsonl > /dev/null
cp -r b b20
"$rewind" train --resume b --max-updates 30 --metrics b.jsonl > /dev/null
"$rewind" train --resume b20 --max-updates 40 --metrics b.jsonl > /dev/null
"$rewind" plot b.jsonl --compare a.jsonl --out both.png > /dev/null
updates=$(update_rows both.png.0.csv | cut -d, -f1)
[ "$updates" = "$(seq 1 40)" ] || fail "b's update rows are not 1..40 once each: $(tr '\n' ' ' <<< "$updates")"
awk -F, 'NR > 1 && $2 < last { exit 1 } NR > 1 { last = $2 }' both.png.0.csv || fail "b's time runs backwards"
[ -s both.png.1.csv ] && [ -s both.png ] || fail "the compared run is missing"

printf '{"update":1,"loss":2.0,"seconds":0.1}\nnot json\n' > bad.jsonl
refused "^rewind plot: metrics file 'bad.jsonl', line 2: not a metrics record" plot bad.jsonl --out x.png
refused "^rewind plot: cannot open metrics file 'missing.jsonl'" plot missing.jsonl --out x.png
: > empty.jsonl
refused "^rewind plot: metrics file 'empty.jsonl' holds no updates" plot empty.jsonl --out x.png
refused "^rewind plot: --out PNG is required" plot a.jsonl
refused "^rewind train: --plot draws from the run's metrics: give --metrics FILE too" train "${run[@]}" --plot x.png
echo "plot data checked"
