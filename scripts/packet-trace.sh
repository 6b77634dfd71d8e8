#!/usr/bin/env bash
# A packet trace of one cold `healer exec true` over the packet-level delayed link: every round
# trip of TCP, SSH key exchange, authentication and the command, as the client sees them. Root.
#
#   scripts/packet-trace.sh [--rtt-ms 50] [--healer PATH] [--out DIR] [--warm [--spares N]] [-- COMMAND]
#
# scripts/netdelay.sh brings the link up; the test-bed sshd (scripts/testbed.sh) runs inside its
# namespace (`ip netns exec`), listening on the namespace's address; tcpdump captures this side's
# veth (client -> server packets when they leave, server -> client when they arrive: the client's
# view); then one `healer exec --json -- COMMAND` (default `true`) runs with a fresh HOME. Output
# in DIR (default a new /tmp/healer-trace.XXXXXX): trace.pcap, healer.json, trace.txt (one line per
# packet: ms since the SYN, direction, TCP flags, payload bytes) and waits.txt (each time the
# client sent data and then waited for the server: how long, in RTTs). trace.txt and waits.txt
# are printed too. Everything is removed on exit but DIR.
#
# --warm traces a command on a pooled connection instead: a `healer serve` (its own HOME, store and
# config, no schedule, HEALER_SPARE_CHANNELS=N, default 10) connects with three untraced
# `healer exec` runs through it, waits until the connection holds a confirmed spare channel (N > 0),
# then the capture starts and one `healer exec` runs through the daemon's warm pool: the trace holds
# that command's packets only (the CLI talks to the daemon on a Unix socket).
#
# --healer defaults to $HEALER_BIN, else build/{release,debug}/apps/healer/healer.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly TCPDUMP_TIMEOUT_TICKS=250 # 250 x 20 ms = 5 s

die() {
  echo "packet-trace.sh: $*" >&2
  exit 1
}

usage() {
  sed -n '5s/^#   //p' "$0" >&2
  exit 2
}

healer_bin() {
  local candidate
  for candidate in "${HEALER_BIN:-}" "$ROOT/build/release/apps/healer/healer" \
    "$ROOT/build/debug/apps/healer/healer"; do
    if [[ -n $candidate && -x $candidate ]]; then
      echo "$candidate"
      return 0
    fi
  done
  die "healer not found: build it or pass --healer"
}

# Inside scripts/netdelay.sh run: NETDELAY_* describe the link.
inside() {
  local out=$1 healer=$2 warm=$3 spares=$4
  shift 4
  local bed=$out/bed tcpdump_pid="" daemon_pid=""
  stop_all() {
    if [[ -n $tcpdump_pid ]]; then
      kill -INT "$tcpdump_pid" 2>/dev/null || true
      wait "$tcpdump_pid" 2>/dev/null || true
      tcpdump_pid=""
    fi
    if [[ -n $daemon_pid ]]; then
      kill -TERM "$daemon_pid" 2>/dev/null || true
      wait "$daemon_pid" 2>/dev/null || true
      daemon_pid=""
    fi
    ip netns exec "$NETDELAY_NETNS" "$ROOT/scripts/testbed.sh" stop "$bed" >/dev/null 2>&1 || true
  }
  trap stop_all EXIT
  ip netns exec "$NETDELAY_NETNS" "$ROOT/scripts/testbed.sh" start "$bed" --listen 0.0.0.0 \
    --known-host "$NETDELAY_SERVER" >"$out/testbed.txt"
  local port user
  port=$(sed -n 's/^port=//p' "$out/testbed.txt")
  user=$(sed -n 's/^user=//p' "$out/testbed.txt")
  mkdir -p "$out/home"
  local -a target=(--host "$NETDELAY_SERVER" --port "$port" --user "$user"
    --identity "$bed/client_ed25519" --known-hosts "$bed/known_hosts")

  if ((warm)); then
    # A daemon of its own: HOME, store and config in OUT; no schedule, so nothing else runs.
    export HOME=$out/home HEALER_DB=$out/healer.db HEALER_CONFIG=$out/config.toml
    export HEALER_SPARE_CHANNELS=$spares
    printf '[schedule]\nmetrics_interval = 0\ndiagnose_interval = 0\n' >"$HEALER_CONFIG"
    "$healer" server add trace "${target[@]}" >"$out/server-add.txt"
    local api_port tick
    api_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    "$healer" serve --listen "127.0.0.1:$api_port" >"$out/daemon.log" 2>&1 &
    daemon_pid=$!
    for ((tick = 0; tick < TCPDUMP_TIMEOUT_TICKS; tick++)); do
      curl -fsS "http://127.0.0.1:$api_port/readyz" >/dev/null 2>&1 && break
      sleep 0.02
    done
    curl -fsS "http://127.0.0.1:$api_port/readyz" >/dev/null || die "healer serve is not ready"
    for tick in 1 2 3; do
      "$healer" exec trace -- true >/dev/null 2>>"$out/healer.err" || die "warm-up exec $tick failed"
    done
    if ((spares > 0)); then
      for ((tick = 0; tick < TCPDUMP_TIMEOUT_TICKS; tick++)); do
        curl -fsS "http://127.0.0.1:$api_port/api/v1/servers/trace/pool" \
          | python3 -c 'import json, sys; sys.exit(0 if json.load(sys.stdin)["spare_channels_ready"] > 0 else 1)' \
          && break
        sleep 0.02
      done
    fi
    curl -fsS "http://127.0.0.1:$api_port/api/v1/servers/trace/pool" >"$out/pool-before.json"
  fi

  tcpdump -i "$NETDELAY_ROOT_IF" -nn -U --immediate-mode -s 128 -w "$out/trace.pcap" "tcp port $port" \
    2>"$out/tcpdump.log" &
  tcpdump_pid=$!
  local tick
  for ((tick = 0; tick < TCPDUMP_TIMEOUT_TICKS; tick++)); do
    grep -q "listening on" "$out/tcpdump.log" 2>/dev/null && break
    sleep 0.02
  done
  grep -q "listening on" "$out/tcpdump.log" || die "tcpdump did not start: $(cat "$out/tcpdump.log")"

  local started ended status=0
  started=$(date +%s%N)
  if ((warm)); then
    "$healer" exec trace --json -- "$@" >"$out/healer.json" 2>>"$out/healer.err" || status=$?
  else
    HOME=$out/home "$healer" exec "${target[@]}" --json -- "$@" \
      >"$out/healer.json" 2>"$out/healer.err" || status=$?
  fi
  ended=$(date +%s%N)
  # The last packets (the server's FIN, our ACK) arrive up to one RTT after healer exits.
  sleep "$(awk -v rtt="$NETDELAY_RTT_MS" 'BEGIN { printf "%.3f", 2 * rtt / 1000 + 0.1 }')"
  stop_all
  trap - EXIT
  echo "healer exec exited $status after $(((ended - started) / 1000000)) ms (process start to exit)" \
    >"$out/summary.txt"
}

analyse() {
  local out=$1 rtt=$2 server=$3
  # "ms-since-SYN  dir  flags  bytes" per packet; dir '>' client -> server, '<' server -> client.
  tcpdump -r "$out/trace.pcap" -nn -tt 2>/dev/null | awk -v server="$server" '
    {
      t = $1 + 0
      if (start == "") start = t
      src = $3; flags = "-"; len = 0
      if (match($0, /Flags \[[^]]*\]/)) flags = substr($0, RSTART + 7, RLENGTH - 8)
      if (match($0, /length [0-9]+/)) len = substr($0, RSTART + 7, RLENGTH - 7) + 0
      dir = index(src, server ".") == 1 ? "<" : ">"
      printf "%9.1f  %s  %-4s %5d\n", (t - start) * 1000, dir, flags, len
    }' >"$out/trace.txt"
  # Each turn: the client sent data (or the SYN), then waited until the server sent data.
  awk -v rtt="$rtt" '
    BEGIN { waiting = 0 }
    {
      t = $1 + 0; dir = $2; flags = $3; len = $4 + 0
      if (dir == ">" && (len > 0 || flags == "S") && !waiting) { sent = t; waiting = 1; what = (flags == "S" ? "SYN" : len " bytes") }
      else if (dir == "<" && (len > 0 || flags == "S.") && waiting) {
        turns++
        printf "turn %2d: at %7.1f ms sent %-10s answered after %6.1f ms = %.2f RTT (%s)\n", turns, sent, what, t - sent, (t - sent) / rtt, (flags == "S." ? "SYN-ACK" : len " bytes")
        waiting = 0
      }
    }
    END { printf "%d turns in %.1f ms = %.2f RTT\n", turns, t, t / rtt }' "$out/trace.txt" \
    >"$out/waits.txt"
}

main() {
  local rtt=50 healer="" out="" warm=0 spares=10
  if [[ ${1:-} == --inside ]]; then
    shift
    inside "$@"
    return
  fi
  while (($# > 0)); do
    case $1 in
      --rtt-ms) rtt=${2:-}; shift 2 ;;
      --healer) healer=${2:-}; shift 2 ;;
      --out) out=${2:-}; shift 2 ;;
      --warm) warm=1; shift ;;
      --spares) spares=${2:-}; shift 2 ;;
      --) shift; break ;;
      *) usage ;;
    esac
  done
  (($# > 0)) || set -- true
  [[ $spares =~ ^[0-9]+$ ]] || die "--spares wants a whole number, not '$spares'"
  ((EUID == 0)) || die "needs root (network namespace, tcpdump)"
  command -v tcpdump >/dev/null || die "tcpdump is missing (scripts/install-deps.sh installs it)"
  [[ -n $healer ]] || healer=$(healer_bin)
  [[ -n $out ]] || out=$(mktemp -d /tmp/healer-trace.XXXXXX)
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  "$ROOT/scripts/netdelay.sh" run --rtt-ms "$rtt" --name "healer-netdelay-trace-$$" -- \
    "$0" --inside "$out" "$healer" "$warm" "$spares" "$@" 2>"$out/netdelay.log"
  local server
  server=$(sed -n 's/.*<-> \([0-9.]*\) .*/\1/p' "$out/netdelay.log" | head -n 1)
  analyse "$out" "$rtt" "$server"
  cat "$out/summary.txt"
  echo "--- $out/healer.json"
  cat "$out/healer.json"
  echo "--- $out/trace.txt (ms since the first packet, > to the server, < from it, flags, payload bytes)"
  cat "$out/trace.txt"
  echo "--- $out/waits.txt"
  cat "$out/waits.txt"
}

main "$@"
