#!/usr/bin/env bash
# rewind train/eval/sample/tokenize with --tokens chars|words, held-out files and token files: UTF-8 text round
# trips, words get <unk>, perplexity is exp(loss), a token file trains bitwise like the same tokens as text, and
# bad input is refused by file and offset with nothing written.
set -euo pipefail
rewind=$1 text=$2
# shellcheck source=tests/cli_common.sh
source "$(dirname "$0")/cli_common.sh"
holds() { awk -v a="$2" -v b="${3:-0}" "BEGIN { exit !($1) }"; }
# Exit status 1 (an error, not a crash or success) and the message on stderr.
refused() {
  local expect=$1; shift
  local status=0
  "$rewind" "$@" > refused.log 2>&1 || status=$?
  [ "$status" = 1 ] || fail "exit status $status for: $* ($(cat refused.log))"
  grep -qF -- "$expect" refused.log || fail "no '$expect' in: $(cat refused.log)"
}
# The tensor bytes of a .safetensors file (after its 8-byte length and JSON header).
tensors() { local n; n=$(od -An -tu8 -N8 "$1" | tr -d ' '); tail -c +$((n + 9)) "$1"; }
small=(--hidden 16 --batch 4 --k 10 --max-updates 20 --eval-every 0)

# chars: accented letters are one token each; the sample and the prime print as valid UTF-8.
for _ in $(seq 200); do printf 'Café crème à la française.\nÉté, hiver; où êtes-vous?\n'; done > fr.txt
"$rewind" train --data fr.txt --tokens chars "${small[@]}" --prime "Été" --sample-length 60 --save chars > chars.log
distinct=$(iconv -f UTF-8 -t UTF-32LE fr.txt | od -An -v -tx4 | tr -s ' ' '\n' | grep . | sort -u | wc -l)
grep -q "tokens: chars, vocabulary of $distinct$" chars.log || fail "not $distinct code points: $(grep tokens: chars.log)"
"$rewind" sample --checkpoint chars --prime "Été" --length 200 > sample.txt
head -c 6 sample.txt | grep -q "^Été" || fail "the sample does not start with its prime"
iconv -f UTF-8 -t UTF-8 sample.txt > /dev/null || fail "the sample is not valid UTF-8"
out=$("$rewind" eval --checkpoint chars --data fr.txt)
read -r loss bits perplexity count < <(sed -E 's/.*: loss ([0-9.]+) nats per character, ([0-9.]+) bits per character, perplexity ([0-9.]+), .*\(([0-9]+) characters, batch 1\)$/\1 \2 \3 \4/' <<< "$out")
holds 'exp(a) / b < 1.001 && b / exp(a) < 1.001' "$loss" "$perplexity" || fail "perplexity $perplexity != e^$loss"
holds 'a / log(2) - b < 0.0006 && b - a / log(2) < 0.0006' "$loss" "$bits" || fail "$bits bits != $loss nats / ln 2"
chars=$(wc -m < fr.txt)
holds 'a == b - 1' "$count" "$chars" || fail "$count characters scored in a file of $chars code points"
# predict --top-k: after every character, the K most likely next ones and their probabilities (rows holding a
# quoted comma are left out of the awk check).
"$rewind" predict --checkpoint chars --data fr.txt --top-k 3 > top.csv
[ "$(head -1 top.csv)" = "position,token,next,top1,p1,top2,p2,top3,p3" ] || fail "top-k header: $(head -1 top.csv)"
[ "$(($(wc -l < top.csv) - 1))" = "$chars" ] || fail "not one row per character: $(wc -l < top.csv)"
awk -F, 'NR > 1 && !/"/ && !($5 >= $7 && $7 >= $9 && $5 + $7 + $9 <= 1.000001) { exit 1 }' top.csv ||
  fail "the top 3 are not in order of probability"
echo "chars: UTF-8 round trip, perplexity = exp(loss)"

# A validation file with a character the training text lacks: read as <unk>, which the vocabulary gains, and
# counted. eval with a vocabulary without <unk> refuses it by file and offset, or skips it.
for _ in $(seq 30); do printf 'Café ß\n'; done > foreign.txt
"$rewind" train --data fr.txt --tokens chars --val-data foreign.txt "${small[@]}" --sample-length 0 > unk.log ||
  fail "a held-out character the training text lacks: $(cat unk.log)"
grep -q "tokens: chars, vocabulary of $((distinct + 1))$" unk.log || fail "no <unk> added: $(grep tokens: unk.log)"
grep -q "^validation file '.*foreign.txt': 30 symbol(s) the training text lacks, read as <unk>$" unk.log ||
  fail "the <unk> symbols are not counted: $(cat unk.log)"
grep -q "^validation (final): loss" unk.log || fail "no validation: $(cat unk.log)"
refused "foreign.txt': character 'ß' at byte offset 6 is not in the model's vocabulary" \
  eval --checkpoint chars --data foreign.txt
grep -q "skipped 30 characters" <<< "$("$rewind" eval --checkpoint chars --data foreign.txt --unknown skip)" ||
  fail "eval --unknown skip"
# Malformed UTF-8: named by file and byte offset, nothing written.
printf 'abc\xC3(def\n' > bad.txt
refused "bad.txt': invalid UTF-8 at byte offset 3" train --data bad.txt --tokens chars --max-updates 1 --save nothing
refused "bad.txt': invalid UTF-8 at byte offset 3" tokenize --data bad.txt --tokens chars --out bad.bin
[ ! -e nothing ] && [ ! -e bad.bin ] && [ ! -e bad.vocab.json ] || fail "a refused run wrote files"
echo "chars: bad input refused"

# words: --vocab-size N is N symbols in all, the N - 1 most frequent words and <unk>; a validation and a test
# file; unseen words in eval are <unk>; perplexity = exp(loss).
head -n 2000 "$text" > train.txt
sed -n 2001,2400p "$text" > valid.txt
sed -n 2401,2800p "$text" > test.txt
words=(--tokens words --vocab-size 300 "${small[@]}" --seed 3)
"$rewind" train --data train.txt --val-data valid.txt --test-data test.txt "${words[@]}" --prime "I am the" \
  --save words > words.log
grep -q "tokens: words, vocabulary of 300$" words.log || fail "words vocabulary: $(grep tokens: words.log)"
grep -qE "^test: loss [0-9.]+, perplexity [0-9.]+" words.log || fail "no test loss: $(tail -3 words.log)"
grep -q '\\"<unk>\\"' words/model.safetensors || fail "no <unk> in the saved vocabulary"
printf 'the zyzzyva said\n' > unseen.txt
out=$("$rewind" eval --checkpoint words --data unseen.txt)
grep -q "(3 tokens, batch 1)" <<< "$out" || fail "unseen words: $out"  # the, <unk>, <unk>, <eos>: 3 targets
read -r loss perplexity < <(sed -E 's/.*: loss ([0-9.]+) nats per token, perplexity ([0-9.]+),.*/\1 \2/' <<< "$("$rewind" eval --checkpoint words --data valid.txt | tail -1)")
holds 'exp(a) / b < 1.001 && b / exp(a) < 1.001' "$loss" "$perplexity" || fail "perplexity $perplexity != e^$loss"
"$rewind" sample --checkpoint words --prime "I am the" --length 30 > words_sample.txt
head -c 8 words_sample.txt | grep -q "^I am the" || fail "the word sample does not start with its prime"
# Without --vocab-size, a word only the test file holds is <unk> too: the vocabulary is the training text's.
{ cat test.txt; echo "zyzzyva"; } > test_unseen.txt
"$rewind" train --data train.txt --test-data test_unseen.txt --tokens words "${small[@]}" --sample-length 0 \
  > unseen.log || fail "a word only the test file holds: $(cat unseen.log)"
grep -q "^test file '.*test_unseen.txt': [1-9][0-9]* symbol(s) the training text lacks, read as <unk>$" unseen.log ||
  fail "test-only words not read as <unk>: $(cat unseen.log)"
grep -qE "^test: loss [0-9.]+" unseen.log || fail "no test loss: $(tail -3 unseen.log)"
echo "words: <unk>, test loss, perplexity = exp(loss)"

# A token file written by rewind tokenize trains to the same parameters as the same tokens given as text.
# tokenize builds the vocabulary as train does, from the training text, with <unk> for the rest.
"$rewind" tokenize --data train.txt --val-data valid.txt --tokens words --vocab-size 300 --out train.bin > tokenize.log
[ -e valid.bin ] || fail "no valid.bin: $(cat tokenize.log)"
[ "$(stat -c %s train.bin)" = $((2 * $(grep -o '^wrote train.bin: [0-9]*' tokenize.log | grep -o '[0-9]*$'))) ] ||
  fail "train.bin is not 2 bytes per token"
"$rewind" train --data train.txt --val-data valid.txt "${words[@]}" --sample-length 0 --save text_run > text_run.log
"$rewind" train --data train.bin --val-data valid.bin --token-dtype uint16 --vocab train.vocab.json \
  "${small[@]}" --seed 3 --sample-length 0 --save bin_run > bin_run.log
cmp <(tensors text_run/model.safetensors) <(tensors bin_run/model.safetensors) || fail "parameters differ"
[ "$(grep 'validation (final)' text_run.log)" = "$(grep 'validation (final)' bin_run.log)" ] ||
  fail "validation differs"
[ "$("$rewind" eval --checkpoint text_run --data valid.txt | tail -1 | cut -d: -f2-)" = \
  "$("$rewind" eval --checkpoint bin_run --data valid.bin | cut -d: -f2-)" ] || fail "eval differs"
# Both resume exactly: the saved run holds the tokenisation, vocabulary and files.
small_10=("${small[@]/20/10}")
"$rewind" train --data train.txt --val-data valid.txt "${words[@]/20/10}" --sample-length 0 --save text_half > /dev/null
"$rewind" train --resume text_half --max-updates 20 --save text_half > /dev/null
cmp text_run/model.safetensors text_half/model.safetensors || fail "words: resumed run differs"
"$rewind" train --data train.bin --val-data valid.bin --token-dtype uint16 --vocab train.vocab.json \
  "${small_10[@]}" --seed 3 --sample-length 0 --save bin_half > /dev/null
"$rewind" train --resume bin_half --max-updates 20 --save bin_half > /dev/null
cmp bin_run/model.safetensors bin_half/model.safetensors || fail "token file: resumed run differs"
# --vocab-size means the number of symbols, <unk> included, for tokenize and train alike.
"$rewind" tokenize --data train.txt --tokens words --vocab-size 3 --out w3.bin > w3.log
grep -q "^vocabulary of 3 (words)" w3.log || fail "tokenize --vocab-size 3: $(cat w3.log)"
"$rewind" train --data w3.bin --token-dtype uint16 --vocab-size 3 "${small[@]}" --sample-length 0 \
  > /dev/null || fail "a token file of --vocab-size 3 is refused by train --vocab-size 3"
# A later file with the saved vocabulary.
"$rewind" tokenize --data test.txt --vocab train.vocab.json --out test2.bin > /dev/null
"$rewind" eval --checkpoint bin_run --data test2.bin | grep -q "nats per token" || fail "eval of test2.bin"
# Bytes, the default, the same way (uint32 this time, no vocabulary: eval works, sample says why not).
"$rewind" tokenize --data fr.txt --out fr.bin --token-dtype uint32 --vocab-out fr.vocab.json > /dev/null
vocab=$(grep -c '^  [0-9]' fr.vocab.json)
"$rewind" train --data fr.txt "${small[@]}" --sample-length 0 --save bytes_text > /dev/null
"$rewind" train --data fr.bin --token-dtype uint32 --vocab-size "$vocab" "${small[@]}" --save bytes_bin > /dev/null
cmp <(tensors bytes_text/model.safetensors) <(tensors bytes_bin/model.safetensors) || fail "bytes: parameters differ"
refused "trained on token ids without a vocabulary" sample --checkpoint bytes_bin
echo "token files: parameters bitwise equal to text"

# Bad token files: refused by name (and offset), nothing written.
head -c 33 fr.bin > odd.bin
refused "odd.bin': 33 bytes is not a multiple of 4" train --data odd.bin --token-dtype uint32 --vocab-size 40 \
  --max-updates 1 --save nothing
printf '\x01\x00\x00\x00\x05\x00\x00\x00\x02\x00\x00\x00' > ids.bin
refused "ids.bin': token 1 (byte offset 4) is 5, not below the vocabulary size 3" \
  train --data ids.bin --token-dtype uint32 --vocab-size 3 --max-updates 1 --save nothing
refused "a token file (--token-dtype) needs --vocab-size N or --vocab FILE" train --data fr.bin --token-dtype uint32
refused "--token-dtype must be uint16 or uint32, got 'int8'" train --data fr.bin --token-dtype int8 --vocab-size 9
refused "--tokens must be bytes, chars or words, got 'bpe'" train --data fr.txt --tokens bpe
refused "--vocab-size applies to --tokens words" train --data fr.txt --tokens chars --vocab-size 10
printf '{"tokens": "words", "vocabulary": ["a", "b", "a"]}' > twice.json
refused "vocabulary file 'twice.json': symbol 'a' appears twice" tokenize --data train.txt --vocab twice.json --out x.bin
refused "--tokens chars does not match the vocabulary file 'train.vocab.json' (words)" \
  train --data train.bin --token-dtype uint16 --vocab train.vocab.json --tokens chars
[ ! -e nothing ] && [ ! -e x.bin ] || fail "a refused run wrote files"
echo "tokens checked"
