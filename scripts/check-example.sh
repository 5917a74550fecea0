#!/usr/bin/env bash
# Installs the build in BUILD_DIR into a temporary prefix and builds the examples out of tree against it with
# find_package(rewind): gradient-checks the example cell and the cell zoo with the installed CLI, and runs the
# programs of a user's own (examples/forecast, examples/online) against the CLI's predict and online.
set -euo pipefail
build_dir=$(realpath "$1")
source_dir=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build_dir" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$source_dir/examples/custom_cell" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release > "$work/configure.log"
cmake --build "$work/example" > "$work/build.log"
# The installed CLI must find its built-in plugins by itself, and the example through --plugin.
grep -q "lstm" <<< "$("$work/prefix/bin/rewind" plugins)"
"$work/prefix/bin/rewind" gradcheck --plugin "$work/example/librewind_model_mgu.so" --model mgu --layers 2

# The cell zoo, built out of tree the same way: every cell passes the gradient check with 2 layers in both
# modes (reverse, and forward through Tape::jvp) and learns on the bundled text (the mean loss of the last 5
# of 40 updates well below the first).
cmake -S "$source_dir/examples/cells" -B "$work/cells" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release > "$work/cells-configure.log"
cmake --build "$work/cells" -j "$(nproc)" > "$work/cells-build.log"
for cell in min_gru ind_rnn peephole_lstm layer_norm_lstm mogrifier_lstm sru zoneout_gru; do
  plugin="$work/cells/librewind_model_$cell.so"
  "$work/prefix/bin/rewind" gradcheck --plugin "$plugin" --model "$cell" --layers 2 > "$work/$cell.gradcheck" ||
    { cat "$work/$cell.gradcheck"; echo "$cell: gradcheck failed"; exit 1; }
  "$work/prefix/bin/rewind" gradcheck --plugin "$plugin" --model "$cell" --layers 2 --mode forward \
    > "$work/$cell.forward" || { cat "$work/$cell.forward"; echo "$cell: forward-mode check failed"; exit 1; }
  REWIND_NUM_THREADS=1 "$work/prefix/bin/rewind" train --plugin "$plugin" --model "$cell" --hidden 32 --batch 8 \
    --k 20 --lr 0.01 --max-updates 40 --eval-every 0 --sample-length 0 --metrics "$work/$cell.jsonl" \
    --log-every 1 --save "$work/$cell.run" > /dev/null
  losses=$(grep -o '"loss":[0-9.e+-]*' "$work/$cell.jsonl" | cut -d: -f2)
  first=$(head -1 <<< "$losses")
  last=$(tail -5 <<< "$losses" | awk '{ s += $1 } END { print s / NR }')
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a - 0.3) }' || { echo "$cell: loss $first -> $last"; exit 1; }
  echo "$cell: gradcheck passed in both modes, loss $first -> $last"
done

# RTRL on a zoo cell, through nothing but the Cell interface and the engine's forward mode: its gradient at
# fixed parameters is full BPTT's (the analysis runs in f64; the rtrl row's relative error, column 7).
"$work/prefix/bin/rewind" analyze truncation --plugin "$work/cells/librewind_model_peephole_lstm.so" \
  --model peephole_lstm --task recall:4 --hidden 6 --batch 4 --steps 8 --segments 2 --k 8 --trainers rtrl \
  --csv "$work/rtrl.csv" > /dev/null
rtrl_error=$(awk -F, '$NF == "rtrl" && $3 == 0 { print $7 }' "$work/rtrl.csv")
awk -v e="$rtrl_error" 'BEGIN { exit !(e != "" && e < 1e-10) }' ||
  { echo "rtrl on peephole_lstm: relative error '$rtrl_error' against full BPTT"; exit 1; }
echo "rtrl on peephole_lstm: relative error $rtrl_error against full BPTT"

# SnAp-1 on IndRNN, whose units read only their own past: nothing falls outside its pattern, so the cell's
# gradients are full BPTT's (the embedding's, a dense pattern, gets its step's part only). Generic path.
"$work/prefix/bin/rewind" analyze truncation --plugin "$work/cells/librewind_model_ind_rnn.so" \
  --model ind_rnn --task recall:4 --hidden 6 --batch 4 --steps 8 --segments 2 --k 8 --trainers snap1 \
  --csv "$work/snap1.csv" > /dev/null
snap1_error=$(awk -F, '$NF == "snap1" && $4 ~ /^rnn\./ { if ($7 > e) e = $7 } END { print e }' "$work/snap1.csv")
awk -v e="$snap1_error" 'BEGIN { exit !(e != "" && e < 1e-10) }' ||
  { echo "snap1 on ind_rnn: relative error '$snap1_error' of the cell's gradients against full BPTT"; exit 1; }
echo "snap1 on ind_rnn: relative error $snap1_error of the cell's gradients against full BPTT"
# The zoneout GRU has the built-in GRU's parameters but another step: snap1's closed form refuses it.
if "$work/prefix/bin/rewind" analyze truncation --plugin "$work/cells/librewind_model_zoneout_gru.so" \
  --model zoneout_gru --task recall:4 --hidden 6 --batch 4 --steps 8 --segments 2 --k 8 --trainers snap1 \
  > /dev/null 2> "$work/zoneout.err"; then
  echo "snap1 on zoneout_gru: the closed form was not refused"; exit 1
fi
grep -q "its step is not theirs" "$work/zoneout.err" ||
  { echo "snap1 on zoneout_gru: unexpected error: $(cat "$work/zoneout.err")"; exit 1; }
echo "snap1 on zoneout_gru: the closed form refused ($(grep -o 'closed form.s influence on [^ ]*' "$work/zoneout.err"))"

# A saved run remembers its model plugin's file: sample and resume need no --plugin; when the file is gone,
# the error says to give --plugin FILE.
run="$work/min_gru.run"
"$work/prefix/bin/rewind" sample --checkpoint "$run" --length 20 > /dev/null
"$work/prefix/bin/rewind" train --resume "$run" --max-updates 42 --no-save > /dev/null
mv "$work/cells/librewind_model_min_gru.so" "$work/moved.so"
if out=$("$work/prefix/bin/rewind" sample --checkpoint "$run" --length 20 2>&1); then
  echo "a run whose plugin file is gone still sampled"; exit 1
fi
grep -q "model plugin 'min_gru' was loaded from '.*librewind_model_min_gru.so', which is gone; give --plugin FILE" \
  <<< "$out" || { echo "no advice to give --plugin: $out"; exit 1; }
"$work/prefix/bin/rewind" sample --checkpoint "$run" --length 20 --plugin "$work/moved.so" > /dev/null
echo "a saved plugin model's file is remembered"
# A program of the user's own: examples/forecast, built against the installed package, predicts rows read on
# standard input with a model the installed CLI trained; its predictions are rewind predict's.
# A program linking the libraries of a sanitizer build needs the sanitizer runtime itself, loaded first.
sanitize=()
sanitizers=$(sed -n 's/^REWIND_SANITIZE:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
[ -z "$sanitizers" ] ||
  sanitize=(-DCMAKE_CXX_FLAGS="-fsanitize=$sanitizers" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=$sanitizers")
cmake -S "$source_dir/examples/forecast" -B "$work/forecast" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release "${sanitize[@]}" > "$work/forecast-configure.log"
cmake --build "$work/forecast" > "$work/forecast-build.log"
grep -v ',$' "$source_dir/data/co2_weekly.csv" > "$work/rows.csv"  # the rows with a value
REWIND_NUM_THREADS=1 "$work/prefix/bin/rewind" train --data "$work/rows.csv" --key-columns date --targets co2 \
  --difference --hidden 8 --k 52 --batch 4 --max-updates 20 --eval-every 0 --save "$work/co2" > /dev/null
"$work/forecast/forecast" "$work/co2" < "$work/rows.csv" > "$work/forecast.csv"
"$work/prefix/bin/rewind" predict --checkpoint "$work/co2" --data "$work/rows.csv" > "$work/predict.csv"
# Row r of the program's output predicts row r + 1, as line r of predict's (both after their header; the
# last of each is the row past the end).
paste -d, <(tail -n +2 "$work/forecast.csv" | head -n -1 | cut -d, -f1) <(tail -n +2 "$work/predict.csv" | head -n -1 | cut -d, -f6) |
  awk -F, '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-5) { print "row " NR ": " $1 " against " $2; bad = 1 } }
           END { exit bad }' || { echo "examples/forecast differs from rewind predict"; exit 1; }
echo "examples/forecast: $(($(wc -l < "$work/forecast.csv") - 1)) rows predicted, as rewind predict does"
# A program that keeps learning: examples/online, built the same way, continues the co2 run on the rows read
# on standard input; its predictions are rewind online's with the same window, and its save resumes.
cmake -S "$source_dir/examples/online" -B "$work/online" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_BUILD_TYPE=Release "${sanitize[@]}" > "$work/online-configure.log"
cmake --build "$work/online" > "$work/online-build.log"
REWIND_NUM_THREADS=1 "$work/online/learn_online" "$work/co2" "$work/learnt" < "$work/rows.csv" > "$work/learnt.csv"
REWIND_NUM_THREADS=1 "$work/prefix/bin/rewind" online --data "$work/rows.csv" --checkpoint "$work/co2" --k1 1 --k2 52 \
  --out "$work/online.csv" 2> /dev/null
paste -d, <(tail -n +2 "$work/learnt.csv" | cut -d, -f1) <(tail -n +2 "$work/online.csv" | cut -d, -f6) |
  awk -F, '{ d = $1 - $2; if (d < 0) d = -d; if (d > 1e-9 * (1 + ($2 < 0 ? -$2 : $2))) { print "row " NR ": " $1 " against " $2; bad = 1 } }
           END { exit bad || NR < 2000 }' || { echo "examples/online differs from rewind online"; exit 1; }
{ head -1 "$work/rows.csv"; tail -5 "$work/rows.csv"; } |
  "$work/prefix/bin/rewind" online --data - --resume "$work/learnt" --out /dev/null 2> "$work/resumed.log"
grep -q "resumed at row $(($(wc -l < "$work/rows.csv") - 1))" "$work/resumed.log" ||
  { echo "the example's save does not resume: $(cat "$work/resumed.log")"; exit 1; }
echo "examples/online: $(($(wc -l < "$work/learnt.csv") - 1)) rows learnt from and predicted, as rewind online does"
