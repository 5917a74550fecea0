#!/usr/bin/env bash
# rewind eval: a loss below chance (ln V for the V characters of the file), the same number as bits per
# character and perplexity, an accuracy in [0, 1], and one target per character after the first.
set -euo pipefail
rewind=$1 checkpoint=$2 data=$3
fail() { echo "FAILED: $*"; exit 1; }
holds() { awk -v a="$2" -v b="${3:-0}" -v c="${4:-0}" "BEGIN { exit !($1) }"; }
out=$("$rewind" eval --checkpoint "$checkpoint" --data "$data")
echo "$out"
read -r loss bits perplexity accuracy count < <(sed -E 's/.*: loss ([0-9.]+) nats per character, ([0-9.]+) bits per character, perplexity ([0-9.]+), accuracy ([0-9.]+) \(([0-9]+) characters, batch 1\)$/\1 \2 \3 \4 \5/' <<< "$out")
vocab=$(od -An -v -tu1 "$data" | tr -s ' ' '\n' | grep . | sort -un | wc -l)
size=$(wc -c < "$data")
holds 'a > 0 && a < log(b)' "$loss" "$vocab" || fail "loss $loss is not in (0, ln $vocab)"
holds 'a / log(2) - b < 0.0006 && b - a / log(2) < 0.0006' "$loss" "$bits" || fail "$bits bits != $loss nats / ln 2"
holds 'exp(a) / b < 1.001 && b / exp(a) < 1.001' "$loss" "$perplexity" || fail "perplexity $perplexity != e^$loss"
holds 'a >= 0 && a <= 1' "$accuracy" || fail "accuracy $accuracy"
# --batch 1 (the default): every character but the first is a target, once, whatever the training batch.
holds 'a == b - 1' "$count" "$size" || fail "$count characters counted in a file of $size"
echo "eval values checked"
