#!/usr/bin/env bash
# Issue 12, acceptance 2 and 5: what truncation costs in gradient on a trained model.
#   recall: LSTM 32 (forget bias 3) trained on recall:20 with TBPTT(5, 25), then analyze truncation with
#           k1 = 1 (every loss sees exactly k2 steps) and analyze horizon. About a minute.
#   text:   a 1 x 256 LSTM trained on the bundled text with TBPTT(64) for TRAIN_SECONDS (default 150, a short
#           check; docs/truncation.md quotes TRAIN_SECONDS=2400), keeping the checkpoint with the best
#           validation loss, then the bias-vs-k table and the horizon curve of that model.
# usage: [TRAIN_SECONDS=2400] [WORK_DIR=dir] bench/truncation_analysis.sh [path/to/rewind] [recall|text|all] [output dir]
set -euo pipefail
rewind=${1:-build/bin/rewind} which=${2:-all} out=${3:-bench/results}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
# WORK_DIR keeps the trained models there; by default they go with a temporary directory.
if [ -n "${WORK_DIR:-}" ]; then
  work=$WORK_DIR && mkdir -p "$work"
else
  work=$(mktemp -d) && trap 'rm -rf "$work"' EXIT
fi
if [ "$which" = recall ] || [ "$which" = all ]; then
  "$rewind" train --task recall:20 --task-steps 600 --batch 32 --hidden 32 --option forget_bias=3 --lr 0.01 \
    --trainer truncated --k1 5 --k2 25 --max-updates 1000 --eval-every 500 --log-every 500 --seed 1 \
    --sample-length 0 --save "$work/recall20" | tail -2
  "$rewind" analyze truncation --checkpoint "$work/recall20" --steps 80 --segments 8 --k1 1 \
    --k2 1,5,10,15,18,19,20,21,25,40 --csv "$out/truncation_recall20.csv" --plot "$out/truncation_recall20.png" |
    tee "$out/truncation_recall20.txt"
  for tolerance in 0.1 0.05; do
    "$rewind" analyze horizon --checkpoint "$work/recall20" --steps 80 --segments 8 --lags 40 \
      --tolerance "$tolerance" --csv "$out/horizon_recall20_$tolerance.csv" \
      --plot "$out/horizon_recall20_$tolerance.png" | tee "$out/horizon_recall20_$tolerance.txt"
  done
fi
if [ "$which" = text ] || [ "$which" = all ]; then
  "$rewind" train --data "$here/data/tinyshakespeare.txt" --hidden 256 --batch 32 --trainer truncated --k 64 \
    --lr 0.002 --time-limit "${TRAIN_SECONDS:-150}" --eval-every 250 --keep-best --early-stop 4 --log-every 1000 \
    --sample-length 0 --seed 1 --save "$work/text256" | grep -E '^validation|stopp|best' | tail -4
  model="$work/text256"
  [ -d "$model/best" ] && model="$model/best"  # the best validation loss, not an overfitted last state
  "$rewind" analyze truncation --checkpoint "$model" --batch 8 --steps 256 --segments 4 \
    --k 1,5,10,20,35,64,100,150,256 --csv "$out/truncation_text256.csv" --plot "$out/truncation_text256.png" |
    tee "$out/truncation_text256.txt"
  # Every loss unrolled exactly k2 steps: what the horizon analysis's bias bound speaks of.
  "$rewind" analyze truncation --checkpoint "$model" --batch 8 --steps 256 --segments 4 --k1 1 \
    --k2 1,5,10,20,29,35,45,64,100 --csv "$out/truncation_text256_k1.csv" --plot "$out/truncation_text256_k1.png" |
    tee "$out/truncation_text256_k1.txt"
  # k = 20 and 64 as the classic loop, and with k2 = k1 + 28 so that every loss is unrolled at least 29 steps,
  # the horizon analysis's k for tolerance 0.1 on this model.
  for k1 in 20 64; do
    "$rewind" analyze truncation --checkpoint "$model" --batch 8 --steps 256 --segments 4 --k1 "$k1" \
      --k2 "$k1,$((k1 + 28))"
  done | tee "$out/truncation_text256_recommended.txt"
  "$rewind" analyze horizon --checkpoint "$model" --batch 8 --steps 256 --segments 4 --lags 120 \
    --loss-steps 8 --csv "$out/horizon_text256.csv" --plot "$out/horizon_text256.png" |
    tee "$out/horizon_text256.txt"
fi
