#!/usr/bin/env bash
# Issue 27, the character LM: tinyshakespeare (the bundled text), LSTM 128, batch 32, Adam 0.002, equal
# updates of 20 steps each: truncated BPTT(20), SnAp-1 and UORO (an update every 20 steps, nothing truncated),
# their validation bits per character, time per step and tape peak (SnAp-1's influence, 2 numbers per cell
# parameter and stream, is held beside the tape: 32 MiB here).
#   usage: bench/online_charlm.sh [path/to/rewind] [updates]
set -euo pipefail
rewind=${1:-build/bin/rewind} updates=${2:-2000}
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
printf '%-16s %10s %16s %14s\n' trainer "val bpc" "steps x batch/s" "tape peak MiB"
for trainer in "truncated --k 20" "snap1 --trainer-option k=20" "uoro --trainer-option k=20"; do
  log=$("$rewind" train --hidden 128 --batch 32 --trainer $trainer --max-updates "$updates" \
        --eval-every "$updates" --sample-length 0 --log-every "$updates")
  bpc=$(sed -nE 's/^validation \(final\): .*, ([0-9.]+) bits per character.*/\1/p' <<< "$log")
  rate=$(sed -nE 's/^trained .* ([0-9]+) time steps x batch per second/\1/p' <<< "$log")
  peak=$(grep -oE 'tape +[0-9.]+ MiB' <<< "$log" | tail -1 | grep -oE '[0-9.]+')
  printf '%-16s %10s %16s %14s\n' "${trainer%% *}" "$bpc" "$rate" "$peak"
done
