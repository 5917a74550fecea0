#!/usr/bin/env bash
# rewind train on text: the reported validation figures are a loss below chance (ln V for the V characters of
# the file) and the same number as bits per character (loss / ln 2) and perplexity (e^loss); the sample at
# the end is the prime extended by exactly --sample-length characters.
set -euo pipefail
rewind=$1 save=$2 data=$3
log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$rewind" train --data "$data" --hidden 16 --max-updates 10 --sample-length 40 --prime "ROMEO:" --save "$save" \
  > "$log"
cat "$log"
fail() { echo "FAILED: $*"; exit 1; }
holds() { awk -v a="$2" -v b="${3:-0}" -v c="${4:-0}" "BEGIN { exit !($1) }"; }

vocab=$(od -An -v -tu1 "$data" | tr -s ' ' '\n' | grep . | sort -un | wc -l)
line=$(grep '^validation (final): ' "$log") || fail "no final validation line"
read -r loss bits perplexity < <(sed -E 's/.*loss ([0-9.]+), ([0-9.]+) bits per character, perplexity ([0-9.]+).*/\1 \2 \3/' <<< "$line")
holds 'a > 0 && a < log(b)' "$loss" "$vocab" || fail "loss $loss is not in (0, ln $vocab)"
holds 'a / log(2) - b < 0.0006 && b - a / log(2) < 0.0006' "$loss" "$bits" || fail "$bits bits != $loss nats / ln 2"
holds 'exp(a) / b < 1.001 && b / exp(a) < 1.001' "$loss" "$perplexity" || fail "perplexity $perplexity != e^$loss"

# Everything after the sample's header: "ROMEO:", 40 sampled characters (newlines among them), a newline.
sed -n '/^sample (temperature 0.80):$/,$p' "$log" | tail -n +2 > "$log.sample"
trap 'rm -f "$log" "$log.sample"' EXIT
[ "$(head -c 6 "$log.sample")" = "ROMEO:" ] || fail "the sample does not start with the prime"
[ "$(wc -c < "$log.sample")" -eq $((6 + 40 + 1)) ] || fail "the sample is not the prime and 40 characters"
echo "values checked: loss $loss < ln $vocab, bits and perplexity agree, sample of 40 characters"
