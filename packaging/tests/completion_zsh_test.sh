#!/usr/bin/env bash
# The generated zsh completion (_healer) is picked up by compinit from an fpath directory, as
# /usr/share/zsh/vendor-completions is, and offers what the CLI accepts at each position.
# zsh's completion widgets need a terminal, so _describe, _files and _message are replaced by
# functions that print what they were given; the logic that chooses is _healer's own.
# Usage: completion_zsh_test.sh DIR_WITH__healer HEALER   (exit 77, skipped, without zsh)
set -euo pipefail
if ! command -v zsh >/dev/null; then
  echo "zsh is not installed (scripts/install-deps.sh installs it): skipped"
  exit 77
fi
zsh -f -c '
# our directory and compinit'"'"'s own only: scanning the whole default fpath takes seconds
fpath=("$1" ${(M)fpath:#*/functions/Completion})
autoload -Uz compinit && compinit -u -D
failures=0
if [[ $_comps[healer] != _healer ]]; then
  print -u2 "FAIL: compinit did not register _healer for healer (got: $_comps[healer])"
  exit 1
fi
_describe() { local name=${@[-1]}; print -r -- "${(j: :)${(@)${(P)name}%%:*}}"; }
_files() { print -r -- "<files>"; }
_message() { print -r -- "<message>"; }
expect() {
  local want=$1; shift
  words=("$@"); CURRENT=${#words}; PREFIX=${words[-1]}
  local got; got=$(_healer) || got="<none>"
  if [[ $got != "$want" ]]; then
    print -u2 -- "FAIL: [${words[*]}] offered [$got], expected [$want]"
    (( failures++ ))
  fi
}
expect "$2" healer ""
expect "add list show remove test import" healer server ""
expect "collect show" healer metrics ""
expect "key agent password stored-key" healer server add --auth ""
expect "queue fail direct" healer diagnose --on-exhausted ""
expect "<files>" healer exec --identity ""
expect "<files>" healer diagnose --config ""
expect "<message>" healer exec --host ""
expect "<none>" healer exec --host h -- ""
expect "<none>" healer metrics collect ""
expect "-h --help -t --tag --json --db" healer server list -
(( failures == 0 )) || exit 1
print "zsh completion OK"
' zsh "$1" "$("$2" --help | sed -n '/^Subcommands:$/,/^$/p' | awk 'NR > 1 && NF { print $1 }' |
  paste -sd ' ')"
