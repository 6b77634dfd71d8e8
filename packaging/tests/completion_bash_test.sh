#!/usr/bin/env bash
# The generated bash completion loads in a plain bash (no bash-completion package needed),
# registers for `healer`, and offers what the CLI accepts at each position.
# Usage: completion_bash_test.sh healer.bash HEALER
set -uo pipefail
commands=$("$2" --help | sed -n '/^Subcommands:$/,/^$/p' | awk 'NR > 1 && NF { print $1 }' |
  paste -sd ' ')
# shellcheck source=/dev/null
source "$1" || {
  echo "FAIL: $1 does not load" >&2
  exit 1
}
failures=0

[[ $(complete -p healer 2>/dev/null) == "complete -F _healer healer" ]] || {
  echo "FAIL: not registered: $(complete -p healer 2>&1)" >&2
  failures=$((failures + 1))
}

# expect "WORD..." -> "CANDIDATES": the words typed so far, the last one being completed.
expect() {
  local words=$1 want=$2
  read -r -a COMP_WORDS <<<"$words"
  [[ $words == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _healer
  local got="${COMPREPLY[*]}"
  if [[ $got != "$want" ]]; then
    echo "FAIL: '$words' offered '$got', expected '$want'" >&2
    failures=$((failures + 1))
  fi
}

expect "healer " "$commands"
expect "healer di" "diagnose"
expect "healer server " "add list show remove test import"
expect "healer server add --a" "--auth --accept-new-host-key"
expect "healer server add --auth " "key agent password stored-key"
expect "healer exec --auth p" "password"
expect "healer exec --auth = a" "agent"
expect "healer --log-level w" "warn"
expect "healer diagnose --on-exhausted " "queue fail direct"
expect "healer metrics c" "collect"
expect "healer metrics collect --no-p" "--no-progress"
# an option's value is not a command: `--tag server` stays in `diagnose`
expect "healer diagnose --tag server --j" "--json"
# nothing after `--`: that is the remote command
expect "healer exec --host h -- " ""
expect "healer exec --host h -- --a" ""
# no value completion for free text
expect "healer exec --host " ""

# file arguments complete to files
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
touch "$dir/healer-test.toml"
expect "healer diagnose --config $dir/healer-t" "$dir/healer-test.toml"
expect "healer exec -i $dir/healer-t" "$dir/healer-test.toml"

[ "$failures" -eq 0 ] || exit 1
echo "bash completion OK"
