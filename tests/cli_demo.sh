#!/usr/bin/env bash
# rewind demo on a small size: the initial loss is near chance, ln V for the V characters of the data; the
# cosine between the truncated and the full gradient is a cosine, and high for windows of 5 in 12 steps.
set -euo pipefail
rewind=$1 data=$2
fail() { echo "FAILED: $*"; exit 1; }
holds() { awk -v a="$2" -v b="${3:-0}" -v c="${4:-0}" "BEGIN { exit !($1) }"; }
out=$("$rewind" demo --data "$data" --hidden 8 --batch 2 --steps 12 --k 5 --updates 3)
echo "$out"
vocab=$(od -An -v -tu1 "$data" | tr -s ' ' '\n' | grep . | sort -un | wc -l)
read -r loss v ln_v < <(sed -nE 's/^  loss ([0-9.]+) \(ln ([0-9]+) = ([0-9.]+)\)$/\1 \2 \3/p' <<< "$out")
[ "$v" = "$vocab" ] || fail "vocabulary $v, the file has $vocab characters"
holds 'a - log(b) < 0.00006 && log(b) - a < 0.00006' "$ln_v" "$vocab" || fail "ln $vocab printed as $ln_v"
holds 'a - log(b) < 0.2 && log(b) - a < 0.2' "$loss" "$vocab" || fail "initial loss $loss is not near ln $vocab"
cosine=$(sed -nE 's/.*cosine\(truncated gradient, full gradient\) = (-?[0-9.]+).*/\1/p' <<< "$out")
holds 'a > 0.9 && a <= 1' "$cosine" || fail "cosine $cosine is not in (0.9, 1]"
echo "demo values checked"
