#!/usr/bin/env bash
# The real-sshd test bed outside GoogleTest (demo, benchmarks): the same layout and sshd_config as
# tests/support/sshd_fixture.cpp, with sshd left running in the background.
#
#   scripts/testbed.sh start DIR [--port N] [--max-sessions N] [--max-startups S] [--extra 'Line']...
#                                [--listen ADDR] [--known-host ADDR]
#   scripts/testbed.sh stop DIR
#
# start writes DIR/{ssh_host_ed25519_key,client_ed25519,authorized_keys,known_hosts,sshd_config},
# starts `sshd -D -e -f DIR/sshd_config 2>DIR/sshd.log`, records DIR/sshd.pid and DIR/port, waits
# until sshd listens (5 s at most) and prints port=N, user=NAME, dir=DIR and pid=N, one a line.
# Keys already in DIR are kept, so known_hosts stays valid across restarts. --extra lines precede
# the generated ones (sshd keeps the first value of a keyword), from a "Match" line on they follow.
# --listen (default 127.0.0.1; 0.0.0.0 inside a network namespace such as scripts/netdelay.sh's)
# is sshd's ListenAddress; known_hosts names --known-host (default: the listen address, or
# 127.0.0.1 for 0.0.0.0).
# stop sends SIGTERM to sshd and its descendants, SIGKILL after 3 s; stopping a stopped bed is fine.
#
# Client: ssh -F /dev/null -o BatchMode=yes -o UserKnownHostsFile=DIR/known_hosts \
#             -o StrictHostKeyChecking=yes -i DIR/client_ed25519 -p PORT USER@127.0.0.1 CMD
set -euo pipefail

readonly SSHD=/usr/sbin/sshd
readonly KEYGEN=/usr/bin/ssh-keygen
# The system python on purpose: a pyenv shim on PATH costs ~100 ms per call.
readonly PYTHON=/usr/bin/python3
readonly START_TIMEOUT_TICKS=250 # 250 x 20 ms = 5 s
readonly STOP_TIMEOUT_TICKS=150  # 150 x 20 ms = 3 s
readonly PORT_ATTEMPTS=5

usage() {
  sed -n '5,7s/^#   //p' "$0" >&2
  exit "${1:-2}"
}

die() {
  echo "testbed.sh: $*" >&2
  exit "${EXIT_CODE:-1}"
}

bad_usage() {
  EXIT_CODE=2 die "$@"
}

# A port on 127.0.0.1 where nothing listens right now.
free_port() {
  "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# True when 127.0.0.1:PORT (or *:PORT) is in LISTEN state; read from /proc/net/tcp rather than
# by connecting, which would add a connection to sshd's log.
is_listening() {
  local hex
  hex=$(printf '%04X' "$1")
  awk -v port=":$hex" 'NR > 1 && $4 == "0A" && ($2 == "0100007F" port || $2 == "00000000" port) {
    found = 1 } END { exit !found }' /proc/net/tcp
}

# True when PID is gone or a zombie.
is_gone() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  # "pid (comm) S ...": the state follows the last ')'.
  [[ ${stat##*) } == Z* || ${stat##*) } == X* ]]
}

# Every descendant of PID, parents first.
descendants() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 }
    END {
      member[root] = 1
      do {
        grew = 0
        for (p in parent) {
          if (!(p in member) && (parent[p] in member)) { member[p] = 1; grew = 1; print p }
        }
      } while (grew)
    }'
}

# True when PID is the sshd started for DIR (guards against a recycled pid).
is_our_sshd() {
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *sshd* && $cmdline == *"$2/sshd_config"* ]]
}

is_positive_int() {
  [[ $1 =~ ^[0-9]+$ ]] && ((10#$1 > 0))
}

write_config() {
  local dir=$1 port=$2 max_sessions=$3 max_startups=$4 listen=$5
  shift 5
  local line overrides="" match_blocks="" in_match=0
  for line in "$@"; do
    [[ $line =~ ^[[:space:]]*Match ]] && in_match=1
    if ((in_match)); then
      match_blocks+="$line"$'\n'
    else
      overrides+="$line"$'\n'
    fi
  done
  # SetEnv HOME: sshd runs each command as `bash -c CMD`, and bash started by sshd sources
  # $HOME/.bashrc; pointing HOME at an empty directory skips the real user's rc file (pyenv init
  # there costs ~95 ms per command). See the comment in tests/support/sshd_fixture.cpp.
  cat >"$dir/sshd_config" <<EOF
# Written by scripts/testbed.sh: a throwaway sshd for the test bed.
${overrides}ListenAddress $listen
Port $port
HostKey $dir/ssh_host_ed25519_key
PidFile none
AuthorizedKeysFile $dir/authorized_keys
StrictModes no
UsePAM no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
LogLevel VERBOSE
MaxSessions $max_sessions
MaxStartups $max_startups
SetEnv HOME=$dir/home
PermitUserRC no
PrintMotd no
PrintLastLog no
X11Forwarding no
${match_blocks}
EOF
}

cmd_start() {
  (($# >= 1)) || usage
  local dir=$1
  shift
  local port="" max_sessions=10 max_startups="10:30:100" listen=127.0.0.1 known_host=""
  local -a extra=()
  while (($# > 0)); do
    (($# >= 2)) || bad_usage "$1 needs a value"
    case $1 in
      --port) port=$2 ;;
      --max-sessions) max_sessions=$2 ;;
      --max-startups) max_startups=$2 ;;
      --extra) extra+=("$2") ;;
      --listen) listen=$2 ;;
      --known-host) known_host=$2 ;;
      *) bad_usage "unknown option '$1'" ;;
    esac
    shift 2
  done
  if [[ -n $port ]] && ! { is_positive_int "$port" && ((10#$port < 65536)); }; then
    bad_usage "--port: not a port number: '$port'"
  fi
  is_positive_int "$max_sessions" || bad_usage "--max-sessions: not a positive number: '$max_sessions'"
  [[ $max_startups =~ ^[0-9]+(:[0-9]+:[0-9]+)?$ ]] ||
    bad_usage "--max-startups: expected N or START:RATE:FULL, got '$max_startups'"
  [[ $listen =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]] || bad_usage "--listen: an IPv4 address, not '$listen'"
  if [[ -z $known_host ]]; then
    known_host=$listen
    [[ $listen == 0.0.0.0 ]] && known_host=127.0.0.1
  fi

  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [[ -f $dir/sshd.pid ]] && is_our_sshd "$(<"$dir/sshd.pid")" "$dir"; then
    die "already running in $dir (pid $(<"$dir/sshd.pid")); run: $0 stop $dir"
  fi
  # sshd refuses to start as root without its privilege separation directory.
  if ((EUID == 0)); then
    [[ -d /run/sshd ]] || mkdir -m 0755 /run/sshd
  fi
  # As root, log in as the unprivileged user made by scripts/install-deps.sh: sshd refuses to
  # signal (time out) commands of root logins, and root's rc files are slow.
  login_user=$(id -un)
  if ((EUID == 0)) && id healer-test >/dev/null 2>&1; then
    login_user=healer-test
    chmod 0755 "$dir"
  fi
  echo "$login_user" >"$dir/user"
  mkdir -p "$dir/home"
  chmod 0777 "$dir/home"
  [[ -f $dir/ssh_host_ed25519_key ]] ||
    "$KEYGEN" -q -t ed25519 -N '' -C healer-testbed -f "$dir/ssh_host_ed25519_key"
  [[ -f $dir/client_ed25519 ]] ||
    "$KEYGEN" -q -t ed25519 -N '' -C healer-testbed -f "$dir/client_ed25519"
  cp "$dir/client_ed25519.pub" "$dir/authorized_keys"

  local attempt pid="" chosen="" tick
  for ((attempt = 1; attempt <= PORT_ATTEMPTS; attempt++)); do
    chosen=${port:-$(free_port)}
    write_config "$dir" "$chosen" "$max_sessions" "$max_startups" "$listen" \
      ${extra[@]+"${extra[@]}"}
    : >"$dir/sshd.log" # exists before the first poll below, which may beat the redirection
    "$SSHD" -D -e -f "$dir/sshd_config" </dev/null >/dev/null 2>"$dir/sshd.log" &
    pid=$!
    for ((tick = 0; tick < START_TIMEOUT_TICKS; tick++)); do
      if ! kill -0 "$pid" 2>/dev/null; then
        break
      fi
      if grep -qF "Server listening on $listen port $chosen." "$dir/sshd.log" &&
        is_listening "$chosen"; then
        break
      fi
      sleep 0.02
    done
    if kill -0 "$pid" 2>/dev/null && is_listening "$chosen"; then
      break
    fi
    if kill -0 "$pid" 2>/dev/null; then
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    if [[ -z $port ]] && grep -q "Address already in use" "$dir/sshd.log"; then
      pid=""
      continue # another process took the port between free_port and sshd's bind
    fi
    die "sshd did not start; $dir/sshd.log says:"$'\n'"$(tail -n 20 "$dir/sshd.log")"
  done
  [[ -n $pid ]] || die "no free port after $PORT_ATTEMPTS attempts"

  echo "$pid" >"$dir/sshd.pid"
  echo "$chosen" >"$dir/port"
  local host_pattern="[$known_host]:$chosen"
  ((chosen == 22)) && host_pattern=$known_host
  echo "$host_pattern $(cut -d' ' -f1,2 "$dir/ssh_host_ed25519_key.pub")" >"$dir/known_hosts"

  echo "port=$chosen"
  echo "user=$(<"$dir/user")"
  echo "dir=$dir"
  echo "pid=$pid"
}

cmd_stop() {
  (($# == 1)) || usage
  local dir=$1
  if [[ ! -f $dir/sshd.pid ]]; then
    echo "testbed.sh: not running in $dir"
    return 0
  fi
  dir=$(cd "$dir" && pwd)
  local pid
  pid=$(<"$dir/sshd.pid")
  if is_our_sshd "$pid" "$dir"; then
    # The per-connection sshd processes and their commands are descendants of the listener and
    # outlive it unless signalled too; collect them while the listener still holds the tree.
    kill -STOP "$pid" 2>/dev/null || true
    local -a tree
    mapfile -t tree < <(echo "$pid"; descendants "$pid")
    kill -TERM "${tree[@]}" 2>/dev/null || true
    kill -CONT "${tree[@]}" 2>/dev/null || true
    local tick member alive
    for ((tick = 0; tick < STOP_TIMEOUT_TICKS; tick++)); do
      alive=0
      for member in "${tree[@]}"; do
        is_gone "$member" || alive=1
      done
      ((alive)) || break
      sleep 0.02
    done
    for member in "${tree[@]}"; do
      is_gone "$member" || kill -KILL "$member" 2>/dev/null || true
    done
  fi
  rm -f "$dir/sshd.pid"
  echo "stopped=$dir"
}

(($# >= 1)) || usage
command=$1
shift
case $command in
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  -h | --help) usage 0 ;;
  *) bad_usage "unknown command '$command' (start or stop)" ;;
esac
