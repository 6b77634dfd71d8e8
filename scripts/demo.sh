#!/usr/bin/env bash
# The main job: install the dependencies, build healer (release preset), start a throwaway OpenSSH
# sshd on 127.0.0.1 (scripts/testbed.sh), run a few commands on it through `healer exec`, print the
# results, and stop the sshd again.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target healer
healer=build/release/apps/healer/healer

testbed=$(mktemp -d -t healer-demo-XXXXXX)
cleanup() {
  scripts/testbed.sh stop "$testbed" >/dev/null 2>&1 || true
  rm -rf "$testbed"
}
trap cleanup EXIT
scripts/testbed.sh start "$testbed" >/dev/null
port=$(cat "$testbed/port")
user=$(cat "$testbed/user")
base=(--host 127.0.0.1 --port "$port" --user "$user" --identity "$testbed/client_ed25519")
target=("${base[@]}" --known-hosts "$testbed/known_hosts")

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step healer exec "${target[@]}" -- 'uname -sr; uptime'
"$healer" exec "${target[@]}" -- 'uname -sr; uptime'

step healer exec ... -- 'df -P / | tail -1; free -b | head -2'
"$healer" exec "${target[@]}" -- 'df -P / | tail -1; free -b | head -2'

step healer exec ... --json -- 'cat /proc/loadavg'
"$healer" exec "${target[@]}" --json -- 'cat /proc/loadavg'

step "healer exec ... -- 'exit 3'   # the remote exit code becomes healer's"
set +e
"$healer" exec "${target[@]}" -- 'echo failing on purpose >&2; exit 3'
echo "exit code: $?"

step "healer exec ... --timeout 1 -- 'sleep 60'   # deadline: typed error, remote process killed"
"$healer" exec "${target[@]}" --timeout 1 -- 'sleep 60'
echo "exit code: $? (124 = timeout)"

step "healer exec with an empty known_hosts   # strict host key checking"
"$healer" exec "${base[@]}" --known-hosts /dev/null -- true
echo "exit code: $? (243 = host key unknown)"
set -e

# The inventory: an embedded SQLite file in the throwaway dir (secrets in it are encrypted under
# the master key created next to it on first use).
export HEALER_DB="$testbed/healer.db"
step healer server add demo --host 127.0.0.1 --port "$port" --user "$user" --identity ... --tag demo
"$healer" server add demo "${target[@]}" --tag demo

step healer server test demo   # connect, verify the host key, authenticate, round trip
"$healer" server test demo

step healer server list
"$healer" server list

step "healer diagnose demo --seed   # the seed design's 7 checks over one pooled connection"
set +e
"$healer" diagnose demo --seed
echo "exit code: $? (Nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)"

step "healer diagnose demo   # the full check set (security updates are slow: apt on the server)"
"$healer" diagnose demo
echo "exit code: $?"
set -e

step "healer metrics collect --all   # one probe on stdin per server, node_exporter names"
"$healer" metrics collect --all
"$healer" metrics collect --all >/dev/null 2>&1

step healer metrics show demo --name node_load1
"$healer" metrics show demo --name node_load1

echo
echo "demo: done; sshd log: $(grep -c 'Accepted publickey' "$testbed/sshd.log") logins, $(grep -c 'Starting session' "$testbed/sshd.log") sessions"
