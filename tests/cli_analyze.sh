#!/usr/bin/env bash
# rewind analyze on a saved run: the table, CSV and JSON agree with each other, k = T is exact, the saved run is
# not changed by the analyses (byte for byte), and a model that does not fit the checkpoint is refused by name.
set -euo pipefail
rewind=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAILED: $*"; exit 1; }
"$rewind" train --task recall:6 --hidden 8 --batch 4 --max-updates 5 --save "$dir/run" --sample-length 0 > /dev/null
before=$(cat "$dir"/run/*.safetensors | cksum)
"$rewind" analyze truncation --checkpoint "$dir/run" --steps 24 --segments 2 --k 1,3,24 --k1 2 --k2 6 \
  --csv "$dir/t.csv" --json "$dir/t.json" 2>&1 | tee "$dir/t.out" && fail "--k with --k1 accepted" || true
grep -q "give --k, or --k1 and --k2, not both" "$dir/t.out" || fail "--k with --k1: $(cat "$dir/t.out")"
"$rewind" analyze truncation --checkpoint "$dir/run" --steps 24 --segments 2 --k 1,3,24 --csv "$dir/t.csv" \
  --json "$dir/t.json" | tee "$dir/t.out"
# k = T: cosine 1, relative error 0 (the overall row of the CSV, and the JSON per segment).
awk -F, '$1 == 24 && $4 == "all" { found = 1; if ($5 < 1 - 1e-12 || $7 > 1e-12) exit 1 } END { exit !found }' \
  "$dir/t.csv" || fail "k = T is not exact in $dir/t.csv"
awk -F, '$1 == 1 && $4 == "all" { found = 1; if ($7 < 1e-6) exit 1 } END { exit !found }' "$dir/t.csv" ||
  fail "k = 1 shows no error on recall:6"
[ "$(grep -c '"relative_error"' "$dir/t.json")" -gt 0 ] || fail "no per-segment figures in the JSON"
"$rewind" analyze horizon --checkpoint "$dir/run" --steps 24 --segments 2 --lags 8 --json "$dir/h.json" |
  tee "$dir/h.out"
grep -q "suggested k = \|no suggested k" "$dir/h.out" || fail "no suggestion"
grep -q '"suggested_k"' "$dir/h.json" || fail "no suggested_k in the JSON"
[ "$(cat "$dir"/run/*.safetensors | cksum)" = "$before" ] || fail "the analyses changed the saved run"
out=$("$rewind" analyze truncation --checkpoint "$dir/run" --hidden 9 --steps 24 --k 3 2>&1) && fail "--hidden 9 fit"
grep -q -- "--checkpoint: .*does not match the model" <<< "$out" && grep -q "rnn.weight_hh_l0" <<< "$out" ||
  fail "mismatch not named: $out"
echo "analyze on a saved run checked"
