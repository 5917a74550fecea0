#!/usr/bin/env bash
# rewind sample: the output is the prime and --length characters; a seed repeats a sample exactly and another
# seed gives another sample; near temperature 0 the sample is the argmax path, the same for every seed.
set -euo pipefail
rewind=$1 checkpoint=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAILED: $*"; exit 1; }
sample() { "$rewind" sample --checkpoint "$checkpoint" --prime ROMEO --length 20 "$@"; }

sample --seed 1 > "$dir/a"
cat "$dir/a"
[ "$(head -c 5 "$dir/a")" = "ROMEO" ] || fail "the sample does not start with the prime"
[ "$(wc -c < "$dir/a")" -eq $((5 + 20 + 1)) ] || fail "not the prime and 20 characters"
sample --seed 1 > "$dir/again"
cmp -s "$dir/a" "$dir/again" || fail "the same seed gave another sample"
sample --seed 2 > "$dir/b"
! cmp -s "$dir/a" "$dir/b" || fail "seeds 1 and 2 gave the same 20 characters"
sample --seed 1 --temperature 1e-4 > "$dir/cold1"
sample --seed 2 --temperature 1e-4 > "$dir/cold2"
cmp -s "$dir/cold1" "$dir/cold2" || fail "near temperature 0 the seed changed the sample"
echo "sample values checked"
