#!/usr/bin/env bash
# The packet-level delayed link (tests/support/netdelay) as a named network namespace for scripts:
# healer-netdelay makes the namespace, the veth pair and the NFQUEUE that holds every packet RTT/2
# each way; this wrapper names the namespace so that `ip netns exec NAME ...` runs servers in it,
# and removes everything on exit, whatever ends it. Root only.
#
#   scripts/netdelay.sh run --rtt-ms N [--name NAME] [--bin PATH] -- COMMAND [ARG...]
#   scripts/netdelay.sh cleanup
#
# run brings the link up, runs COMMAND in this (the root) namespace with these variables set, and
# takes the link down when COMMAND exits (its exit code is returned), on SIGINT/SIGTERM/SIGHUP, or
# on an error:
#   NETDELAY_NETNS   the namespace's name (default healer-netdelay-<pid>): ip netns exec "$NETDELAY_NETNS" ...
#   NETDELAY_SERVER  the namespace's address (10.B.0.2); NETDELAY_CLIENT this side's (10.B.0.1)
#   NETDELAY_HOSTS   a /17 that is local inside the namespace (10.B.128.0/17), for fleets
#   NETDELAY_ROOT_IF this side's veth (for tcpdump -i); NETDELAY_NS_IF the namespace's
#   NETDELAY_RTT_MS  the round-trip time
# Taking the link down: SIGTERM to healer-netdelay by its pid (it deletes the veth pair and prints
# its counters), SIGKILL after 5 s, then `ip netns delete` of the name: the kernel frees the
# namespace, its iptables rules and queue once the last process in it has exited, so stop the
# servers you started in it before COMMAND returns. If this script is SIGKILLed, healer-netdelay
# still stops (its parent died: PR_SET_PDEATHSIG), and `cleanup` removes a name left behind.
#
# cleanup deletes every healer-netdelay-* namespace name whose healer-netdelay is gone.
# --bin defaults to $HEALER_NETDELAY, else build/{release,debug}/tests/support/healer-netdelay.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly READY_TIMEOUT_TICKS=500 # 500 x 20 ms = 10 s
readonly STOP_TIMEOUT_TICKS=250  # 250 x 20 ms = 5 s

usage() {
  sed -n '7,8s/^#   //p' "$0" >&2
  exit 2
}

die() {
  echo "netdelay.sh: $*" >&2
  exit 1
}

netdelay_bin() {
  local candidate
  for candidate in "${HEALER_NETDELAY:-}" "$ROOT/build/release/tests/support/healer-netdelay" \
    "$ROOT/build/debug/tests/support/healer-netdelay"; do
    if [[ -n $candidate && -x $candidate ]]; then
      echo "$candidate"
      return 0
    fi
  done
  die "healer-netdelay not found: build it (cmake --build build/release --target healer-netdelay) or pass --bin"
}

# The names of our namespaces whose healer-netdelay is gone: the name holds a namespace that no
# longer has its delay program (and may still hold its veth pair).
stale_names() {
  local name pid
  for name in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^healer-netdelay-' || true); do
    pid=$(ip netns pids "$name" 2>/dev/null | while read -r candidate; do
      if [[ $(cat "/proc/$candidate/comm" 2>/dev/null) == healer-netdela* ]]; then
        echo "$candidate"
      fi
    done)
    [[ -n $pid ]] || echo "$name"
  done
}

cmd_cleanup() {
  (($# == 0)) || usage
  local name
  for name in $(stale_names); do
    ip netns delete "$name" && echo "netdelay.sh: deleted the stale namespace name $name"
  done
}

# State of the link, for the trap.
link_pid=""
link_name=""
link_out=""

take_down() {
  local tick
  if [[ -n $link_pid ]] && kill -0 "$link_pid" 2>/dev/null; then
    kill -TERM "$link_pid" 2>/dev/null || true
    for ((tick = 0; tick < STOP_TIMEOUT_TICKS; tick++)); do
      kill -0 "$link_pid" 2>/dev/null || break
      sleep 0.02
    done
    kill -KILL "$link_pid" 2>/dev/null || true
  fi
  if [[ -n $link_pid ]]; then
    wait "$link_pid" 2>/dev/null || true
    link_pid=""
  fi
  if [[ -n $link_name ]]; then
    ip netns delete "$link_name" 2>/dev/null || true
    link_name=""
  fi
  if [[ -n $link_out ]]; then
    [[ -s $link_out/log ]] && cat "$link_out/log" >&2
    rm -rf "$link_out"
    link_out=""
  fi
}

cmd_run() {
  local rtt="" name="healer-netdelay-$$" bin=""
  while (($# > 0)); do
    case $1 in
      --rtt-ms) rtt=${2:-}; shift 2 ;;
      --name) name=${2:-}; shift 2 ;;
      --bin) bin=${2:-}; shift 2 ;;
      --) shift; break ;;
      *) usage ;;
    esac
  done
  (($# > 0)) || usage
  [[ $rtt =~ ^[0-9]+$ ]] || die "--rtt-ms: a whole number of milliseconds, not '$rtt'"
  [[ $name =~ ^[A-Za-z0-9_.-]+$ ]] || die "--name: letters, digits, '_', '.', '-' only"
  ((EUID == 0)) || die "needs root (network namespace, veth, iptables, NFQUEUE)"
  [[ -n $bin ]] || bin=$(netdelay_bin)
  if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$name"; then
    die "a namespace named $name exists already"
  fi

  trap take_down EXIT
  trap 'take_down; exit 130' INT
  trap 'take_down; exit 143' TERM
  trap 'take_down; exit 129' HUP
  link_out=$(mktemp -d /tmp/healer-netdelay.XXXXXX)
  mkfifo "$link_out/ready"
  "$bin" --rtt-ms "$rtt" >"$link_out/ready" 2>"$link_out/log" &
  link_pid=$!
  # The ready line, within the timeout: a reader that gives up instead of blocking forever.
  local line=""
  exec 3<"$link_out/ready"
  if ! IFS= read -r -t $((READY_TIMEOUT_TICKS / 50)) line <&3; then
    exec 3<&-
    die "healer-netdelay did not come up: $(cat "$link_out/log")"
  fi
  exec 3<&-
  [[ $line == ready\ * ]] || die "healer-netdelay: unexpected '$line': $(cat "$link_out/log")"
  local field key value pid=""
  for field in $line; do
    key=${field%%=*}
    value=${field#*=}
    case $key in
      pid) pid=$value ;;
      server) export NETDELAY_SERVER=$value ;;
      client) export NETDELAY_CLIENT=$value ;;
      hosts) export NETDELAY_HOSTS=$value ;;
      root_if) export NETDELAY_ROOT_IF=$value ;;
      ns_if) export NETDELAY_NS_IF=$value ;;
    esac
  done
  [[ $pid == "$link_pid" ]] || die "healer-netdelay reported pid '$pid', started $link_pid"
  ip netns attach "$name" "$link_pid"
  link_name=$name
  export NETDELAY_NETNS=$name NETDELAY_RTT_MS=$rtt
  echo "netdelay.sh: link up: $NETDELAY_CLIENT <-> $NETDELAY_SERVER (namespace $name, RTT $rtt ms)" >&2
  local status=0
  "$@" || status=$?
  take_down
  trap - EXIT INT TERM HUP
  return "$status"
}

(($# >= 1)) || usage
command=$1
shift
case $command in
  run) cmd_run "$@" ;;
  cleanup) cmd_cleanup "$@" ;;
  *) usage ;;
esac
