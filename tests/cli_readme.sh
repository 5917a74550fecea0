#!/usr/bin/env bash
# Docs are code: every command of README.md's "Commands" section runs, in order, shortened by limits, on small
# files named as the README names them, and must exit 0. A command that fails as written fails this test.
#   usage: cli_readme.sh REWIND README.md TEXT [mpi]
# The shortening, and only it: --max-updates 3 (added to train commands without a limit), --epochs 1,
# --steps 24, --lags 8, --k lists 2,4, --seq 10,20, --length 20; ./libmycell.so is the built-in rnn plugin;
# --png only with Graphviz; the mpirun line only with [mpi] (as root, with --allow-run-as-root).
set -euo pipefail
rewind=$1 readme=$(realpath "$2") text=$(realpath "$3") mpi=${4:-}
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"

# The files the commands name; data/ is the repository's, as from its top directory.
ln -s "$(dirname "$text")" data
head -c 30000 "$text" > my.txt
head -c 20000 "$text" | tail -c 5000 > held_out.txt
head -n 1500 "$text" > train.txt
sed -n 1501,1800p "$text" > valid.txt
sed -n 1801,2100p "$text" > test.txt
{
  echo "temp,load,new_day"
  for i in $(seq 1 300); do echo "$((i % 24)).$((i % 7)),$((i % 5)),$((i % 24 == 0 ? 1 : 0))"; done
} > series.csv
mkdir other
"$rewind" train --data my.txt --hidden 8 --max-updates 3 --sample-length 0 --metrics other/metrics.jsonl > /dev/null
# awk reads to the end: exiting early would break the pipe while rewind still writes (SIGPIPE, 141).
rnn_plugin=$("$rewind" plugins |
             awk '$1 == "model" && $2 == "rnn" { found = 1 } found && !done && $1 == "file:" { print $2; done = 1 }')
[ -f "$rnn_plugin" ] || fail "no rnn plugin file in: $("$rewind" plugins)"

# The Commands section's code block, continuation lines joined, comments dropped.
commands=$(awk '/^## Commands/ { on = 1; next } on && /^```sh/ { block = 1; next } block && /^```/ { exit }
                block { print }' "$readme" |
           sed -e ':a' -e '/\\$/N; s/\\\n[[:space:]]*/ /; ta' | sed -E 's/[[:space:]]+#.*$//')
[ "$(wc -l <<< "$commands")" -ge 10 ] || fail "README.md: no Commands block found"

count=0
while IFS= read -r line; do
  [ -n "$line" ] || continue
  command=$(sed -E -e "s#\./build/bin/rewind#$rewind#" -e 's/--max-updates [0-9]+/--max-updates 3/' \
                   -e 's/--epochs [0-9]+/--epochs 1/' -e 's/--steps [0-9]+/--steps 24/' -e 's/--lags [0-9]+/--lags 8/' \
                   -e 's/--k [0-9]+(,[0-9]+)+/--k 2,4/' -e 's/--seq [0-9,]+/--seq 10,20/' \
                   -e 's/--length [0-9]+/--length 20/' -e "s#\./libmycell\.so#$rnn_plugin#" \
                   -e 's/--model mycell/--model rnn/' <<< "$line")
  if [[ $command == mpirun* ]]; then
    [ "$mpi" = mpi ] || { echo "skipped (no MPI): $line"; continue; }
    [ "$(id -u)" = 0 ] && command=${command/mpirun /mpirun --allow-run-as-root --oversubscribe }
    # Open MPI keeps allocations until exit by design: not leaks of rewind's (under the sanitizer build).
    command="ASAN_OPTIONS=\${ASAN_OPTIONS:-}:detect_leaks=0 $command"
  fi
  if [[ $command == *" train "* ]] && [[ $command != *--max-updates* ]] && [[ $command != *--epochs* ]]; then
    command="$command --max-updates 3"
  fi
  command -v dot > /dev/null || command=${command/ --png/}
  count=$((count + 1))
  if ! out=$(eval "$command" 2>&1 < /dev/null); then
    fail "README command failed: $line
ran: $command
$(tail -5 <<< "$out")"
  fi
done <<< "$commands"
echo "all $count README commands checked"
