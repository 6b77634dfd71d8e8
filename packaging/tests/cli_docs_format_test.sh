#!/usr/bin/env bash
# cli_docs.py against fake `healer` programs: a help text in CLI11's format becomes pages and
# completions; a line it does not understand, or a --help that fails, fails the generation
# (exit 1, naming the command and the line) instead of silently dropping options.
# Usage: cli_docs_format_test.sh cli_docs.py
set -euo pipefail
generator=$1
# The system python on purpose: a pyenv shim on PATH costs ~100 ms per call.
readonly PYTHON=/usr/bin/python3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# fake NAME BODY: a program whose `--help` prints the top help and `sub --help` BODY
fake() {
  cat >"$dir/$1" <<SCRIPT
#!/bin/sh
case "\$*" in
  --version) echo "healer 9.9.9" ;;
  --help) printf '%s\n' "healer: a fake" "Usage: [OPTIONS] [SUBCOMMAND]" "" "Options:" \
    "  -h,--help                   Print this help message and exit" "" "Subcommands:" \
    "  sub                         A subcommand" ;;
  "sub --help") $2 ;;
  *) exit 64 ;;
esac
SCRIPT
  chmod +x "$dir/$1"
}

fake good "printf '%s\n' 'A subcommand' 'Usage: sub [OPTIONS]' '' 'Options:' \
  '  --mode TEXT:{a,b}           The mode' '  --very-long-option-name-here FILE' \
  '                              Described on the next line'"
if "$PYTHON" "$generator" --healer "$dir/good" --out "$dir/good.out" 2>"$dir/err"; then
  grep -q -- '\\-\\-very\\-long\\-option\\-name\\-here' "$dir/good.out/man/man1/healer-sub.1" ||
    fail "the wrapped option is not on the page"
  grep -q 'Described on the next line' "$dir/good.out/man/man1/healer-sub.1" ||
    fail "the wrapped description is not on the page"
  grep -q "'sub|--mode') _choices='a b'" "$dir/good.out/completions/healer.bash" ||
    fail "the choices of --mode are not completed"
else
  fail "a well-formed help was rejected: $(cat "$dir/err")"
fi

fake odd "printf '%s\n' 'A subcommand' 'Usage: sub [OPTIONS]' '' 'Options:' \
  '  --mode TEXT                 The mode' 'a line in no known place'"
if "$PYTHON" "$generator" --healer "$dir/odd" --out "$dir/odd.out" 2>"$dir/err"; then
  fail "a help line in no known place was accepted"
else
  grep -q "healer sub --help line 6 not understood: 'a line in no known place'" "$dir/err" ||
    fail "unexpected message: $(cat "$dir/err")"
fi

fake broken "exit 3"
if "$PYTHON" "$generator" --healer "$dir/broken" --out "$dir/broken.out" 2>"$dir/err"; then
  fail "a failing --help was accepted"
else
  grep -q "healer sub --help exited 3" "$dir/err" || fail "unexpected message: $(cat "$dir/err")"
fi

fake nousage "printf '%s\n' 'A subcommand' 'Options:'"
if "$PYTHON" "$generator" --healer "$dir/nousage" --out "$dir/nousage.out" 2>"$dir/err"; then
  fail "a help without a Usage line was accepted"
else
  grep -q "healer sub --help: no 'Usage:' line" "$dir/err" || fail "unexpected message: $(cat "$dir/err")"
fi

[ "$failures" -eq 0 ] || exit 1
echo "cli_docs.py: format checks OK"
