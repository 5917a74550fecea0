#!/usr/bin/env bash
# rewind online on text (issue 24): a token model reads each line's tokens and a newline as they arrive,
# predicts the next token, then learns. On a finite file it takes the updates of rewind train --trainer
# truncated (batch 1, one pass, the same vocabulary); a run saved mid-text and resumed on the rest ends
# bitwise where an uninterrupted one does; words end their lines with <eos>; a symbol outside the vocabulary
# is reported by line and stops the run or is skipped; a trained token run continues with --checkpoint.
set -euo pipefail
rewind=$1 compare=$2 text=$3
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"

# 25 lines of the bundled text, then lines of 'ab' until its tokens less one are a multiple of k1 = 4: a pass
# of rewind train then ends on an update, as the stream does.
head -25 "$text" > text.txt
while [ $((($(wc -c < text.txt) - 1) % 4)) -ne 0 ]; do printf 'ab\n' >> text.txt; done
tokens=$(wc -c < text.txt)  # ASCII: a byte is a character
"$rewind" tokenize --data text.txt --out text.bin --tokens chars --vocab-out chars.json > /dev/null
model=(--hidden 8 --seed 5 --lr 0.5 --optimizer sgd)
"$rewind" train --data text.txt --vocab chars.json --tokens chars "${model[@]}" --trainer truncated --k1 4 \
  --k2 9 --batch 1 --epochs 1 --val-fraction 0 --eval-every 0 --save trained > train.log
online=("$rewind" online --vocab chars.json "${model[@]}" --k1 4 --k2 9)
"${online[@]}" --data text.txt --save file --out file.csv 2> file.log
grep -q "the stream ended at row $tokens: $(((tokens - 1) / 4)) updates" file.log || fail "online on text: $(cat file.log)"
grep -q "prequential log loss .* nats (.* bits), accuracy .* over $((tokens - 1)) tokens" file.log ||
  fail "no prequential log loss over every token but the first: $(cat file.log)"
[ "$(head -1 file.csv)" = "position,token,top1,p1" ] || fail "predictions header: $(head -1 file.csv)"
[ "$(wc -l < file.csv)" = $((tokens + 1)) ] || fail "one prediction per token: $(wc -l < file.csv) lines"
grep -q '^[0-9]*,\\n,' file.csv || fail "a line's end is a token of its own, written as \\n"

# Exactness: the same parameters as rewind train's, to 1e-6 (plain SGD: Adam would hide a loss scale).
"$compare" trained/model.safetensors file/model.safetensors 1e-6 || fail "online vs train --trainer truncated"

# Saved after 12 lines, resumed on the rest through standard input: bitwise the uninterrupted run.
head -12 text.txt | "${online[@]}" --data - --save part --out /dev/null 2> part.log
tail -n +13 text.txt | "$rewind" online --resume part --data - --out /dev/null 2> resumed.log
grep -q "resumed at row $(head -12 text.txt | wc -c)" resumed.log || fail "resume: $(cat resumed.log)"
"$compare" file/model.safetensors part/model.safetensors 0 > /dev/null || fail "a resumed text run differs"

# A trained token run goes on learning with --checkpoint; the next lines of the text are new to it.
sed -n 26,40p "$text" | tr -d '&$3;' > next.txt
"$rewind" online --checkpoint trained --data - --out /dev/null --bad-rows skip < next.txt 2> checkpoint.log
grep -q "the stream ended" checkpoint.log || fail "--checkpoint of a token run: $(cat checkpoint.log)"

# Words: each line's words, then <eos>.
"$rewind" tokenize --data text.txt --out words.bin --tokens words --vocab-out words.json > /dev/null
"$rewind" online --vocab words.json --hidden 8 --data - --out words.csv --metrics words.jsonl --report-every 50 \
  < text.txt 2> words.log
words=$(awk '{ n += NF + 1 } END { print n }' text.txt)
grep -q "the stream ended at row $words:" words.log || fail "words: $(cat words.log)"
[ "$(grep -c '^[0-9]*,<eos>,' words.csv)" = "$(wc -l < text.txt)" ] || fail "words: one <eos> per line"
grep -q '"tokens":{"accuracy":[0-9.e-]*,"count":50,"log_loss":[0-9.e-]*}' words.jsonl ||
  fail "metrics: no token scores in $(head -1 words.jsonl)"
if command -v gnuplot > /dev/null; then  # rewind plot draws the prequential log loss over tokens
  "$rewind" plot words.jsonl --out words.png > plot.log || fail "rewind plot of token metrics: $(cat plot.log)"
  grep -q "prequential log loss of the next token" words.png.gp || fail "rewind plot drew no log loss"
fi

# A symbol outside the vocabulary (chars has no <unk>): named with its line; it stops the run, after saving,
# or the line is skipped and counted.
printf 'First\nab@\nab\n' > unknown.txt
out=$("${online[@]}" --data unknown.txt --save stopped --out /dev/null 2>&1) && fail "an unknown symbol was read"
grep -q "line 2: character '@' at byte offset 2 is not in the model's vocabulary" <<< "$out" ||
  fail "unknown symbol: $out"
[ -f stopped/online.safetensors ] || fail "a run stopped by an unknown symbol did not save"
"${online[@]}" --data unknown.txt --bad-rows skip --out /dev/null 2> skipped.log
grep -q "the stream ended at row 9: .* 1 malformed rows skipped" skipped.log || fail "skip: $(cat skipped.log)"

refused "--vocab describes a new model: the checkpoint fixes it" online --data text.txt --checkpoint trained \
  --vocab chars.json
refused "--inputs applies to CSV rows, not to the text a token model \(--vocab\) reads" online --data text.txt \
  --vocab chars.json --inputs x
echo "online tokens: exact, resumed bitwise, checkpoint, words, unknown symbols: checked"
