#!/usr/bin/env bash
# The main job: install the dependencies, build healer (release preset), start a throwaway OpenSSH
# sshd on 127.0.0.1 (scripts/testbed.sh), run a few commands on it through `healer exec`, keep an
# inventory, diagnose and collect metrics, then run `healer serve` (the daemon: one warm pool for a
# schedule, the CLI, the HTTP API and /metrics) and show it at work; everything stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release -j2 --target healer
healer=build/release/apps/healer/healer

testbed=$(mktemp -d -t healer-demo-XXXXXX)
daemon_pid=""
cleanup() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
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

# The daemon: one process whose warm pool serves the schedule, the CLI and the API.
cat >"$testbed/config.toml" <<'TOML'
[schedule]
metrics_interval = "2s"
diagnose_interval = "4s"
checks = "seed"
TOML
export HEALER_CONFIG="$testbed/config.toml"
api_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
step "healer serve --listen 127.0.0.1:$api_port &   # scheduler, control socket, API, /metrics, dashboard"
"$healer" serve --listen "127.0.0.1:$api_port" >"$testbed/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$api_port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
sleep 5  # a few scheduled runs
logins_before=$(grep -c 'Accepted publickey' "$testbed/sshd.log")
step "healer diagnose demo --seed   # now through the daemon's warm pool (no new login)"
set +e
"$healer" diagnose demo --seed
set -e
step "healer exec demo -- uptime   # also through the daemon"
"$healer" exec demo -- uptime
echo "logins for these two commands: $(( $(grep -c 'Accepted publickey' "$testbed/sshd.log") - logins_before ))"
step "curl http://127.0.0.1:$api_port/api/v1/servers   # the JSON API"
curl -fsS "http://127.0.0.1:$api_port/api/v1/servers" | python3 -m json.tool | awk 'NR <= 40'  # awk reads to the end: no SIGPIPE under pipefail
step "curl http://127.0.0.1:$api_port/metrics | grep demo   # one scrape: healer's pool and the host's node metrics"
curl -fsS "http://127.0.0.1:$api_port/metrics" | grep -E '^(healer_pool_(hit_ratio|commands_per_connection|acquisitions_total)|healer_server_status|node_load1|node_memory_MemAvailable_bytes)\{' | awk 'NR <= 12'
step "dashboard: http://127.0.0.1:$api_port/   (open it in a browser while the daemon runs)"
step "kill -TERM <healer serve>   # graceful stop: in-flight work ends, sessions close politely"
kill -TERM "$daemon_pid"
wait "$daemon_pid" && echo "healer serve stopped (exit 0)"
daemon_pid=""
tail -3 "$testbed/daemon.log"

echo
echo "demo: done; sshd log: $(grep -c 'Accepted publickey' "$testbed/sshd.log") logins, $(grep -c 'Starting session' "$testbed/sshd.log") sessions"
