# Sourced by the CLI test scripts: a scratch directory to work in, and the checks they share.
# The sourcing script sets `rewind` (the binary) first.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
fail() { echo "FAILED: $*"; exit 1; }
# holds <awk condition on a, b, c> <a> [b] [c]: numeric comparisons the shell cannot do.
holds() { awk -v a="$2" -v b="${3:-0}" -v c="${4:-0}" "BEGIN { exit !($1) }"; }
# refused <regex> <rewind arguments>...: a non-zero exit (not a crash) whose output matches.
refused() {
  local expect=$1 out code=0
  shift
  out=$("$rewind" "$@" 2>&1) || code=$?
  [ "$code" -ne 0 ] && [ "$code" -lt 128 ] || fail "rewind $* exited $code: $out"
  grep -Eq -- "$expect" <<< "$out" || fail "rewind $*: '$out' does not match '$expect'"
}
