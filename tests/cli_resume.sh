#!/usr/bin/env bash
# rewind train: a run interrupted (by its update limit, or by SIGTERM) and resumed ends bitwise equal to an
# uninterrupted one; a corrupt checkpoint is refused with a clear message and left as it was.
set -euo pipefail
rewind=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
run=(--task recall:10 --task-steps 100 --hidden 16 --trainer truncated --k1 5 --k2 15 --optimizer adam --lr 0.01
     --clip 1 --sample-length 0 --eval-every 0)

"$rewind" train "${run[@]}" --max-updates 70 --save whole > whole.log
"$rewind" train "${run[@]}" --max-updates 33 --save split > split.log
"$rewind" train --resume split --max-updates 70 --save split > resumed.log
cmp whole/model.safetensors split/model.safetensors
cmp whole/checkpoint.safetensors split/checkpoint.safetensors
echo "resume after --max-updates: bitwise equal"

# The online trainers carry what they need in the checkpoint (RTRL and SnAp-1 their influence, UORO s~ and
# theta~; UORO draws its signs from (seed, step)): a resume is bitwise too.
for trainer in rtrl uoro snap1; do
  online=(--task recall:5 --task-steps 40 --hidden 6 --batch 4 --trainer "$trainer" --trainer-option k=4
          --optimizer adam --lr 0.01 --sample-length 0 --eval-every 0)
  "$rewind" train "${online[@]}" --max-updates 20 --save "${trainer}_whole" > "${trainer}_whole.log"
  "$rewind" train "${online[@]}" --max-updates 9 --save "${trainer}_split" > "${trainer}_split.log"
  "$rewind" train --resume "${trainer}_split" --max-updates 20 --save "${trainer}_split" > "${trainer}_resumed.log"
  cmp "${trainer}_whole/checkpoint.safetensors" "${trainer}_split/checkpoint.safetensors"
  echo "$trainer resume: bitwise equal"
done

# SIGTERM during the run: the run saves and exits cleanly, and resuming reaches the same parameters. The
# signal goes out once the first progress line is in the log, thousands of updates before the run would end.
limit=(--max-updates 10000)
"$rewind" train "${run[@]}" "${limit[@]}" --log-every 1 --save full > full.log
"$rewind" train "${run[@]}" "${limit[@]}" --log-every 1 --save term > term.log &
pid=$!
for _ in $(seq 1000); do
  grep -q '^update' term.log && break
  sleep 0.01
done
kill -TERM "$pid" 2>/dev/null || true
wait "$pid"
if ! grep -q "interrupted at update" term.log; then
  echo "the run was not interrupted: it ended before the signal arrived"
  tail -3 term.log
  exit 1
fi
grep -q "saved term" term.log
"$rewind" train --resume term "${limit[@]}" --save term > term_resumed.log
grep -q "trained .* (to update 10000)" term_resumed.log
cmp full/model.safetensors term/model.safetensors
cmp full/checkpoint.safetensors term/checkpoint.safetensors
echo "resume after SIGTERM: bitwise equal ($(grep -o 'interrupted at update [0-9]*' term.log))"

# A truncated checkpoint: refused by name, and the file is not touched.
head -c 200 whole/checkpoint.safetensors > whole/cut && mv whole/cut whole/checkpoint.safetensors
before=$(md5sum whole/checkpoint.safetensors)
if "$rewind" train --resume whole --max-updates 80 --save whole > corrupt.log 2>&1; then
  echo "a corrupt checkpoint was accepted"; exit 1
fi
grep -q "checkpoint.safetensors'" corrupt.log
[ "$before" = "$(md5sum whole/checkpoint.safetensors)" ]
echo "corrupt checkpoint refused: $(tail -1 corrupt.log)"
