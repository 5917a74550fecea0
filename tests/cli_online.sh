#!/usr/bin/env bash
# rewind online (issue 24): on a finite file it takes the updates of rewind train --trainer truncated (batch 1,
# one pass); standard input, a named pipe, a growing file and a TCP client all give that same model; kill -9
# and a restart fed the rows from the last save on equal an uninterrupted run bitwise; malformed and overlong
# rows are reported by line and stop (after saving) or are skipped; trainers that need the whole sequence are
# refused by name.
set -euo pipefail
rewind=$1 compare=$2
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"

# A noisy sine with a reset column (a second sequence from row 700): 1 + 4 * 250 rows, so that the steps
# (rows - 1) are a multiple of k1 and a pass of rewind train ends on an update as the stream does.
awk 'BEGIN { print "t,x,y,start"; srand(3)
  for (i = 0; i <= 1000; i++) printf "%d,%.6f,%.6f,%d\n", i, sin(0.1 * i) + 0.05 * (rand() - 0.5),
    cos(0.07 * i), (i == 700) }' > rows.csv
model=(--hidden 12 --inputs x,y --targets x --key-columns t --reset-column start --seed 4)
"$rewind" train --data rows.csv "${model[@]}" --trainer truncated --k1 4 --k2 9 --batch 1 --epochs 1 \
  --val-fraction 0 --normalize none --eval-every 0 --save trained > train.log
"$rewind" online --data rows.csv "${model[@]}" --k1 4 --k2 9 --save file --out file.csv 2> file.log
grep -q "the stream ended at row 1001: 250 updates" file.log || fail "online on a file: $(cat file.log)"
[ "$(head -1 file.csv)" = "t,row,origin,step,x,x_predicted" ] || fail "predictions header: $(head -1 file.csv)"
[ "$(wc -l < file.csv)" = 1002 ] || fail "one prediction per row: $(wc -l < file.csv) lines"

# Exactness: the same parameters, to 1e-6.
"$compare" trained/model.safetensors file/model.safetensors 1e-6 || fail "online vs train --trainer truncated"

# The same rows through standard input, a named pipe, a file that grows and a TCP client: the same model.
same_model() {  # bitwise
  "$compare" file/model.safetensors "$1/model.safetensors" 0 > /dev/null || fail "$2: another model than from the file"
}
online=("$rewind" online "${model[@]}" --k1 4 --k2 9)
"${online[@]}" --out /dev/null --data - --save stdin < rows.csv 2> stdin.log
same_model stdin "standard input"

mkfifo pipe
"${online[@]}" --out /dev/null --data pipe --save fifo 2> fifo.log &
pid=$!
sleep 0.3  # the reader waits for its writer
cat rows.csv > pipe
wait "$pid" || fail "FIFO: $(cat fifo.log)"
same_model fifo "a named pipe"

wait_for() {  # wait_for <condition> <what>: up to 60 s
  for _ in $(seq 600); do eval "$1" 2> /dev/null && return 0; sleep 0.1; done
  fail "timed out waiting for $2"
}
head -501 rows.csv > growing.csv
"${online[@]}" --data growing.csv --follow --save follow --out follow.csv 2> follow.log &
pid=$!
wait_for '[ "$(wc -l < follow.csv 2> /dev/null)" = 501 ]' "the first 500 rows of the growing file"
tail -n +502 rows.csv >> growing.csv
wait_for '[ "$(wc -l < follow.csv)" = 1002 ]' "the rows appended to the growing file"
kill -TERM "$pid"
wait "$pid" || fail "--follow, SIGTERM: $(cat follow.log)"
grep -q "stopped by a signal at row 1001" follow.log || fail "--follow: $(cat follow.log)"
same_model follow "a growing file"

"${online[@]}" --listen 0 --save socket --out socket.csv 2> socket.log &
pid=$!
wait_for 'grep -q "listening on" socket.log' "the socket"
port=$(sed -n 's/^listening on 127.0.0.1:\([0-9]*\)$/\1/p' socket.log)
# Two clients in turn, each starting with the header: the second continues the stream.
head -401 rows.csv > /dev/tcp/127.0.0.1/"$port"
{ head -1 rows.csv; tail -n +402 rows.csv; } > /dev/tcp/127.0.0.1/"$port"
wait_for '[ "$(wc -l < socket.csv)" = 1002 ]' "the socket's rows"
kill -INT "$pid"
wait "$pid" || fail "socket: $(cat socket.log)"
same_model socket "two TCP clients"

# kill -9 after a save, then a restart fed the rows from the saved row on: bitwise the uninterrupted run.
"${online[@]}" --out /dev/null --data - --save uninterrupted --save-every-rows 100 < rows.csv 2> /dev/null
mkfifo feed
"${online[@]}" --out /dev/null --data feed --save killed --save-every-rows 100 2> killed.log &
pid=$!
exec 3<> feed  # held open: the stream does not end while the test decides when to kill
head -620 rows.csv >&3
# The rows a save has read, from its metadata (a JSON string within the JSON header, so quotes escaped).
saved_rows() { head -c 100000 "$1/online.safetensors" | grep -ao 'rows\\":[0-9]*' | head -1 | cut -d: -f2; }
wait_for '[ -f killed/online.safetensors ] && [ "$(saved_rows killed)" = 600 ]' "the save at row 600"
kill -9 "$pid"
wait "$pid" 2> /dev/null || true
exec 3>&-
rows=$(saved_rows killed)
{ head -1 rows.csv; tail -n +$((rows + 2)) rows.csv; } |
  "$rewind" online --out /dev/null --data - --resume killed 2> resumed.log
grep -q "resumed at row 600" resumed.log || fail "resume: $(cat resumed.log)"
for f in model online; do  # the parameters, and the optimizer's moments, the ring of rows and every state
  "$compare" "uninterrupted/$f.safetensors" "killed/$f.safetensors" 0 || fail "kill -9 and resume: another $f"
done

# Malformed rows: reported by line; stop after saving, or skipped and counted.
awk -F, -v OFS=, 'NR == 300 { $2 = "abc" } 1' rows.csv > bad.csv
code=0
"${online[@]}" --out /dev/null --data bad.csv --save bad 2> bad.log || code=$?
[ "$code" = 1 ] && grep -q "'bad.csv' line 300, column 'x': 'abc' is not a finite number (row 298)" bad.log ||
  fail "a malformed row: exit $code, $(cat bad.log)"
[ "$(saved_rows bad)" = 298 ] || fail "the rows before a malformed one are saved: $(saved_rows bad)"
"${online[@]}" --out /dev/null --data bad.csv --bad-rows skip 2> skip.log || fail "--bad-rows skip: $(cat skip.log)"
grep -q "at row 1000: .* 1 malformed rows skipped" skip.log || fail "--bad-rows skip: $(cat skip.log)"
{ head -50 rows.csv; printf '1,%0200d,1,0\n' 0; tail -n +51 rows.csv; } > long.csv
refused "'long.csv' line 51 is longer than 100 bytes: refused" online --data long.csv "${model[@]}" --max-line 100

# What cannot work is refused by name.
refused "trainer 'full' cannot learn online: it needs the whole sequence" online --data rows.csv --trainer full
refused "--hidden describes a new model: the checkpoint fixes it" online --data rows.csv --checkpoint trained \
  --hidden 3
refused "--k1 cannot be combined with --resume" online --data rows.csv --resume file --k1 2
refused "--save 'trained/' is the --checkpoint run's directory: the online model would replace the trained one" \
  online --data rows.csv --checkpoint trained --save trained/
"$rewind" online --data rows.csv --checkpoint trained --k1 4 --k2 9 --out /dev/null 2> unsaved.log
grep -q "not saved: what the 250 updates learnt is gone (--save DIR keeps it)" unsaved.log ||
  fail "a run without --save: $(tail -2 unsaved.log)"
refused "the stream's header' has no column 'z' \\(columns: t, x, y, start\\)" online --data rows.csv --inputs z
echo "online: exact, every input kind, bitwise resume, bad rows: checked"
