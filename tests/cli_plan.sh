#!/usr/bin/env bash
# Exact BPTT within a memory budget from the command line: rewind plan prints the plan's cost without
# training and refuses a budget below the least one, stating it; rewind train --memory-budget trains, stays
# within the budget, resumes bitwise, and a resume may plan again with another budget (the gradient is the
# same), which other trainers refuse.
set -euo pipefail
rewind=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

"$rewind" plan --model lstm --hidden 16 --batch 4 --seq 200 --memory-budget 10% --json plan.json > plan.txt
grep -q "full BPTT" plan.txt
grep -q "the plan: .* recomputed steps" plan.txt
python3 - plan.json <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["plans"][0]
assert p["plan"]["peak_bytes"] <= p["budget_bytes"] < p["full_tape_bytes"], p
assert p["steps"] < p["plan"]["forward_steps"] < 3 * p["steps"], p
PY
if "$rewind" plan --hidden 16 --batch 4 --seq 200 --memory-budget 1000 > small.txt 2>&1; then
  echo "a budget below the least one was accepted"; exit 1
fi
grep -q "is below the least plan's .* of full BPTT's tape" small.txt

run=(--task recall:10 --task-steps 120 --hidden 16 --trainer checkpointed --memory-budget 25% --optimizer adam
     --lr 0.01 --sample-length 0 --eval-every 0)
"$rewind" train "${run[@]}" --max-updates 6 --save whole > whole.log
"$rewind" train "${run[@]}" --max-updates 3 --save split > split.log
"$rewind" train --resume split --max-updates 6 --save split > resumed.log
cmp whole/model.safetensors split/model.safetensors
"$rewind" train "${run[@]}" --max-updates 3 --save other > other.log
"$rewind" train --resume other --max-updates 6 --memory-budget 60% --save other > other_resumed.log
grep -q "trained .* (to update 6)" other_resumed.log
grep -q 'memory_budget[^,]*60%' other/model.safetensors
if "$rewind" train --resume other --max-updates 7 --memory-budget 10 > tiny.log 2>&1; then
  echo "a resume with a budget below the least one was accepted"; exit 1
fi
grep -q "below the minimum" tiny.log
"$rewind" train --task recall:10 --task-steps 120 --hidden 16 --trainer checkpointed --segment 10 --max-updates 2 \
  --sample-length 0 --eval-every 0 --save segments > segments.log
"$rewind" train --resume segments --max-updates 3 --memory-budget 40% > segments_resumed.log
grep -q "trained .* (to update 3)" segments_resumed.log
"$rewind" train --task recall:10 --task-steps 120 --hidden 16 --trainer truncated --k 10 --max-updates 2 \
  --sample-length 0 --eval-every 0 --save trunc > trunc.log
if "$rewind" train --resume trunc --max-updates 3 --memory-budget 5% > refused.log 2>&1; then
  echo "--memory-budget was accepted on the resume of a truncated run"; exit 1
fi
grep -q "applies to the checkpointed trainer" refused.log
echo "plan and budget training checked: resume bitwise equal, $(grep -o '[0-9]* recomputed steps' plan.txt)"
