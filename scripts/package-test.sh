#!/usr/bin/env bash
# shellcheck disable=SC2016 # single-quoted scripts (bash -c, zsh -c) expand in their own shell
# The Debian package on this machine, end to end (CI runs it; needs root):
#  1. build it (scripts/package.sh, release preset) unless a .deb is given;
#  2. `dpkg -i` it and check what it installed: healer --version, Depends, man pages, bash and zsh
#     completions, the healer system user, /var/lib/healer, /etc/healer/config.toml (a conffile,
#     root:healer 0640), the unit (enabled, `systemd-analyze verify` clean);
#  3. run healer as the unit would (its User=, its Environment=, cwd /, no new privileges, no
#     capabilities) against a throwaway sshd, the admin CLI through `runuser` as the operations
#     guide says, and, when this build has it, `healer serve` itself: /healthz, the CLI through
#     the control socket, SIGTERM -> exit 0 within 10 s. All under strace, and
#     packaging/sandbox_check.py checks the unit's sandbox would have allowed every call;
#  4. `dpkg -r` (binary gone, data and user kept), reinstall and upgrade in place (data kept),
#     `dpkg -P` (user, group, state, config and unit links gone: nothing of the package left);
#  5. a `healer` user that existed before the package survives its purge.
# systemd is not PID 1 in CI containers: the unit is verified, not started (systemctl would fail).
#
#   scripts/package-test.sh [PACKAGE.deb]
set -euo pipefail
cd "$(dirname "$0")/.."

# The system python on purpose: a pyenv shim on PATH costs ~100 ms per call.
readonly PYTHON=/usr/bin/python3

die() {
  echo "package-test: $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || die "needs root (dpkg -i, a system user)"
if dpkg-query -W -f='${Status}' healer 2>/dev/null | grep -q 'ok installed'; then
  die "a healer package is installed here; this test installs and purges it: remove it first"
fi
if getent passwd healer >/dev/null; then
  die "a 'healer' user exists here; this test creates and removes it: remove it first"
fi

started=$(date +%s.%N)
elapsed() { awk -v since="$1" -v now="$(date +%s.%N)" 'BEGIN { printf "%.1f", now - since }'; }

deb=${1:-}
if [ -z "$deb" ]; then
  build_started=$(date +%s.%N)
  scripts/package.sh >/dev/null
  build_seconds=$(elapsed "$build_started")
  shopt -s nullglob
  debs=(build/release/packages/healer_*.deb)
  shopt -u nullglob
  [ "${#debs[@]}" -eq 1 ] || die "expected one package in build/release/packages, found ${#debs[@]}"
  deb=${debs[0]}
fi
deb=$(realpath "$deb")
checks_started=$(date +%s.%N)

work=$(mktemp -d -t healer-package-test-XXXXXX)
chmod 0755 "$work" # the healer user reads the strace logs' directory
serve_pid=""
strace_pid=""
test_user_created=""
cleanup() {
  if [ -n "$strace_pid" ] && [ -z "$serve_pid" ]; then
    serve_pid=$(awk '{ print $1 }' "/proc/$strace_pid/task/$strace_pid/children" 2>/dev/null || true)
  fi
  for pid in $serve_pid; do
    kill -KILL "$pid" 2>/dev/null || true
  done
  scripts/testbed.sh stop "$work/testbed" >/dev/null 2>&1 || true
  if dpkg-query -W -f='${Status}' healer 2>/dev/null | grep -qv 'not-installed'; then
    dpkg -P healer >/dev/null 2>&1 || true
    dpkg --triggers-only --pending >/dev/null 2>&1 || true
  fi
  if [ -n "$test_user_created" ] && getent passwd healer >/dev/null; then
    userdel healer 2>/dev/null || true
    rm -rf /var/lib/healer
  fi
  rm -rf "$work"
}
trap cleanup EXIT

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
pass() { echo "ok: $*"; }
# check DESCRIPTION COMMAND...: runs COMMAND, prints ok or FAIL (with its output).
check() {
  local description=$1
  shift
  local output since
  since=$(date +%s.%N)
  if output=$("$@" 2>&1); then
    pass "$description ($(elapsed "$since") s)"
  else
    fail "$description: $output"
  fi
}
# dpkg refuses to wait for its lock; apt-get on this machine (install-deps.sh) may hold it a
# while. Every call defers triggers (man-db's index costs ~10 s a call); the end of the test runs
# them once, as the last step of a real installation does.
dpkg() {
  local output status
  for _ in $(seq 1 120); do
    status=0
    output=$(command dpkg --no-triggers "$@" 2>&1) || status=$?
    if [ "$status" -eq 0 ] || ! grep -q 'lock was locked by another process' <<<"$output"; then
      [ -z "$output" ] || echo "$output"
      return "$status"
    fi
    sleep 0.5
  done
  echo "$output"
  return 1
}
mode_owner() { stat -c '%a %U:%G' "$1" 2>/dev/null || echo missing; }

version=$(dpkg-deb -f "$deb" Version)
upstream=${version%-*}
mapfile -t package_files < <(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ { sub(/^\./, "", $6); print $6 }')

# --- 2. install ---------------------------------------------------------------------------------
echo "== dpkg -i $(basename "$deb")"
since=$(date +%s.%N)
dpkg -i "$deb" >"$work/dpkg-install.log" 2>&1 || {
  cat "$work/dpkg-install.log" >&2
  die "dpkg -i failed"
}
echo "dpkg -i: $(elapsed "$since") s"
check "dpkg: healer $version installed" \
  test "$(dpkg-query -W -f='${Status} ${Version}' healer)" = "install ok installed $version"
check "/usr/bin/healer --version prints 'healer $upstream'" \
  test "$(/usr/bin/healer --version)" = "healer $upstream"
depends=$(dpkg-query -W -f='${Depends}' healer)
check "Depends computed by dpkg-shlibdeps (libssh, libsqlite3, libsodium) plus adduser" \
  grep -qE '^adduser, .*libsodium23.*libsqlite3-0.*libssh-4' <<<"$depends"

mapfile -t commands < <(/usr/bin/healer --help | sed -n '/^Subcommands:$/,/^$/p' |
  awk 'NR > 1 && NF { print $1 }')
for page in healer "${commands[@]/#/healer-}"; do
  check "man -w $page" test "$(man -w "$page" 2>&1)" = "/usr/share/man/man1/$page.1.gz"
done
check "man healer renders its EXIT STATUS" \
  bash -c 'MANPAGER=cat MANWIDTH=80 man healer 2>/dev/null | grep -q "^EXIT STATUS"'
check "bash: the completion loads and completes 'healer di' to 'diagnose'" bash -c '
  source /usr/share/bash-completion/completions/healer &&
  COMP_WORDS=(healer di) COMP_CWORD=1 && _healer && [[ ${COMPREPLY[*]} == diagnose ]]'
if command -v zsh >/dev/null; then
  check "zsh: compinit finds _healer in vendor-completions" zsh -f -c '
    autoload -Uz compinit && compinit -u -D && [[ $_comps[healer] == _healer ]]'
else
  echo "note: zsh is not installed, its completion was not loaded"
fi

passwd_entry=$(getent passwd healer || true)
IFS=: read -r _ _ uid gid _ home shell <<<"$passwd_entry"
check "user healer: a system uid ($uid), home /var/lib/healer, no login shell" \
  test "${uid:-1000}" -lt 1000 -a "$home" = /var/lib/healer -a "$shell" = /usr/sbin/nologin
check "group healer is the user's group" test "$(getent group healer | cut -d: -f3)" = "$gid"
check "/var/lib/healer is 700 healer:healer" \
  test "$(mode_owner /var/lib/healer)" = "700 healer:healer"
check "/var/lib/healer/.ssh is 700 healer:healer" \
  test "$(mode_owner /var/lib/healer/.ssh)" = "700 healer:healer"
check "/etc/healer/config.toml is 640 root:healer" \
  test "$(mode_owner /etc/healer/config.toml)" = "640 root:healer"
check "/etc/healer/config.toml is a conffile" \
  grep -q '^ /etc/healer/config.toml ' <<<"$(dpkg-query -W -f='${Conffiles}' healer)"

unit=/lib/systemd/system/healer.service
check "the unit is installed" test -f "$unit"
check "the unit is enabled (multi-user.target.wants)" \
  test "$(readlink /etc/systemd/system/multi-user.target.wants/healer.service)" = "$unit"
if command -v systemd-analyze >/dev/null; then
  check "systemd-analyze verify $unit: no finding" \
    bash -c "out=\$(systemd-analyze verify $unit 2>&1) && [ -z \"\$out\" ] || { echo \"\$out\"; false; }"
  exposure=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null |
    sed -n 's/.*Overall exposure level for healer.service: \([0-9.]*\).*/\1/p')
  echo "note: systemd-analyze security: exposure $exposure (0 = most restricted, 10 = none)"
else
  echo "note: systemd-analyze is missing (Debian package systemd): the unit was not verified"
fi
if [ ! -d /run/systemd/system ]; then
  echo "note: systemd is not PID 1 here: the unit was not started (run as it would be, below)"
fi

# --- 3. healer as the unit runs it ---------------------------------------------------------------
echo "== healer as the unit runs it (User=, Environment=, cwd /), under strace"
unit_value() { sed -n "s/^$1=//p" "$unit"; }
service_user=$(unit_value User)
mapfile -t service_environment < <(unit_value Environment)
read -r -a exec_start <<<"$(unit_value ExecStart)"
# setpriv execs (no PAM session, no fork) with no new privileges and no capabilities, like the
# unit's NoNewPrivileges= and empty CapabilityBoundingSet=; env -i: systemd's clean environment.
as_unit() {
  (cd / && setpriv --reuid="$service_user" --regid="$service_user" --init-groups \
    --no-new-privs --inh-caps=-all --bounding-set=-all -- \
    env -i PATH=/usr/local/bin:/usr/bin:/bin USER="$service_user" LOGNAME="$service_user" \
    "${service_environment[@]}" "$@")
}
traced_as_unit() {
  strace -f -qq -o "$(mktemp "$work/strace.XXXXXX")" -- setpriv --reuid="$service_user" \
    --regid="$service_user" --init-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- \
    env -i PATH=/usr/local/bin:/usr/bin:/bin USER="$service_user" LOGNAME="$service_user" \
    "${service_environment[@]}" "$@"
}

scripts/testbed.sh start "$work/testbed" >/dev/null
port=$(cat "$work/testbed/port")
remote_user=$(cat "$work/testbed/user")
# The service user's key and known_hosts, where the operations guide puts them.
install -o healer -g healer -m 0600 "$work/testbed/client_ed25519" /var/lib/healer/.ssh/id_ed25519
install -o healer -g healer -m 0644 "$work/testbed/known_hosts" /var/lib/healer/.ssh/known_hosts

admin=(runuser -u healer -- env HEALER_DB=/var/lib/healer/healer.db /usr/bin/healer)
check "admin: runuser -u healer -- healer server add (the operations guide's form)" \
  "${admin[@]}" server add testbed --host 127.0.0.1 --port "$port" --user "$remote_user" \
  --identity /var/lib/healer/.ssh/id_ed25519 --tag package-test
check "the database and master.key are created 600 healer:healer" \
  test "$(mode_owner /var/lib/healer/healer.db) $(mode_owner /var/lib/healer/master.key)" \
  = "600 healer:healer 600 healer:healer"
check "as the unit: healer server test testbed" traced_as_unit "${exec_start[0]}" server test testbed
diagnose_status=0
traced_as_unit "${exec_start[0]}" diagnose testbed --seed >"$work/diagnose.out" 2>&1 ||
  diagnose_status=$?
# 0-3 is a Nagios status (a container without systemd makes seed.system_state UNKNOWN); the
# summary line says the checks ran, rather than the server being unreachable.
check "as the unit: healer diagnose testbed --seed ran its checks (exit $diagnose_status)" \
  grep -qE '^testbed: (OK|WARNING|CRITICAL|UNKNOWN) - [0-9]+ OK' "$work/diagnose.out"
[ "$diagnose_status" -le 3 ] || fail "healer diagnose exited $diagnose_status: $(cat "$work/diagnose.out")"
check "as the unit: healer metrics collect testbed" \
  traced_as_unit "${exec_start[0]}" metrics collect testbed --no-progress

has_serve=""
if /usr/bin/healer --help | grep -q '^  serve '; then
  has_serve=yes
fi
if [ -n "$has_serve" ]; then
  check "as the unit: healer serve --check-config (the shipped config)" \
    as_unit "${exec_start[0]}" serve --check-config
  token=$(as_unit "${exec_start[0]}" serve --print-token 2>&1 || true)
  check "healer serve --print-token prints a 64-hex token" grep -qxE '[0-9a-f]{64}' <<<"$token"
  check "api.token is 600 healer:healer" \
    test "$(mode_owner /var/lib/healer/api.token)" = "600 healer:healer"
  http_port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  serve_log=$work/serve.log
  strace -f -qq -o "$work/strace.serve" -- setpriv --reuid="$service_user" \
    --regid="$service_user" --init-groups --no-new-privs --inh-caps=-all --bounding-set=-all -- \
    env -i PATH=/usr/local/bin:/usr/bin:/bin USER="$service_user" LOGNAME="$service_user" \
    "${service_environment[@]}" "${exec_start[@]}" --listen "127.0.0.1:$http_port" \
    >"$serve_log" 2>&1 &
  strace_pid=$!
  # strace's one child is healer (setpriv and env exec, they do not fork).
  serve_pid=""
  if "$PYTHON" - "$strace_pid" "$http_port" <<'EOF'; then
import sys, time, urllib.request
strace_pid, port = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 15
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
            if reply.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.05)
sys.exit(1)
EOF
    pass "healer serve answers /healthz on 127.0.0.1:$http_port"
  else
    fail "healer serve did not answer /healthz within 15 s: $(cat "$serve_log")"
  fi
  serve_pid=$(awk '{ print $1 }' "/proc/$strace_pid/task/$strace_pid/children" 2>/dev/null)
  check "the control socket is /var/lib/healer/healer.db.sock, 600 healer" \
    bash -c "[ -S /var/lib/healer/healer.db.sock ] && [ \"\$(stat -c '%a %U' /var/lib/healer/healer.db.sock)\" = '600 healer' ]"
  # The CLI finds the daemon's socket next to the database and runs on its pool, inside the
  # traced process: the daemon's SSH work is what the sandbox check sees.
  "${admin[@]}" diagnose testbed --seed >"$work/diagnose-daemon.out" 2>&1 || true
  check "admin CLI through the daemon: healer diagnose testbed --seed ran its checks" \
    grep -qE '^testbed: (OK|WARNING|CRITICAL|UNKNOWN) - [0-9]+ OK' "$work/diagnose-daemon.out"
  check "the API lists testbed (with the token)" bash -c "curl -sf -H 'Authorization: Bearer \
    $token' http://127.0.0.1:$http_port/api/v1/servers | grep -q '\"testbed\"'"
  check "/metrics: the daemon's pool made the SSH handshake for testbed" bash -c "curl -sf \
    http://127.0.0.1:$http_port/metrics | grep -qE '^healer_pool_handshakes_total\\{[^}]*testbed[^}]*\\} [1-9]'"
  if [ -n "$serve_pid" ]; then
    stop_started=$(date +%s.%N)
    kill -TERM "$serve_pid"
    serve_status=0
    if ! timeout 12 tail --pid="$serve_pid" -f /dev/null; then
      kill -KILL "$serve_pid" 2>/dev/null || true
    fi
    wait "$strace_pid" || serve_status=$?
    stop_seconds=$(elapsed "$stop_started")
    strace_pid=""
    check "SIGTERM: healer serve exits 0 (after ${stop_seconds} s, limit 10 s)" \
      awk -v status="$serve_status" -v seconds="$stop_seconds" \
      'BEGIN { exit !(status == 0 && seconds < 10) }'
    serve_pid=""
  else
    fail "no healer process under strace $strace_pid"
  fi
else
  echo "note: this build has no \`healer serve\`: the daemon part was not run"
fi

sandbox_failed=""
traced=0
for log in "$work"/strace.*; do
  traced=$((traced + 1))
  "$PYTHON" packaging/sandbox_check.py "$unit" "$log" "${exec_start[0]}" /var/lib/healer \
    >"$log.check" 2>&1 ||
    sandbox_failed+=" $log"
done
if [ -z "$sandbox_failed" ]; then
  pass "the unit's sandbox allows every call of the $traced traced runs"
  sort -u "$work"/strace.*.check | grep 'note:' || true
else
  fail "the unit's sandbox would have refused calls: $(cat "$work"/strace.*.check)"
fi
scripts/testbed.sh stop "$work/testbed" >/dev/null

# --- 4. remove, reinstall, upgrade, purge --------------------------------------------------------
echo "== dpkg -r, reinstall, upgrade in place, dpkg -P"
check "dpkg -r healer" dpkg -r healer
gone=""
for file in "${package_files[@]}"; do
  [ "$file" = /etc/healer/config.toml ] && continue
  [ -e "$file" ] && gone+=" $file"
done
check "after dpkg -r: every file of the package but the conffile is gone" test -z "$gone"
check "after dpkg -r: user, config, database and key stay" \
  test -n "$(getent passwd healer)" -a -f /etc/healer/config.toml -a -f /var/lib/healer/healer.db \
  -a -f /var/lib/healer/master.key
check "reinstall after dpkg -r" dpkg -i "$deb"
check "upgrade in place (dpkg -i over the installed version: postinst configure VERSION)" \
  dpkg -i "$deb"
check "the inventory survived: server list shows testbed" \
  bash -c "\"\$@\" server list | grep -q testbed" _ "${admin[@]}"

check "dpkg -P healer" dpkg -P healer
left=""
for file in "${package_files[@]}" /etc/healer /var/lib/healer \
  /etc/systemd/system/multi-user.target.wants/healer.service \
  /etc/systemd/system/healer.service \
  /var/lib/systemd/deb-systemd-helper-enabled/healer.service.dsh-also \
  /var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/healer.service; do
  if [ -e "$file" ] || [ -L "$file" ]; then left+=" $file"; fi
done
check "after dpkg -P: nothing of the package is left" test -z "$left"
check "after dpkg -P: no healer user or group" \
  test -z "$(getent passwd healer)$(getent group healer)"
check "after dpkg -P: dpkg knows no healer" \
  bash -c '! dpkg-query -W healer >/dev/null 2>&1 || [ "$(dpkg-query -W -f="\${Status}" healer)" = "unknown ok not-installed" ]'

# --- 5. a healer user that was there first ------------------------------------------------------
echo "== an administrator's own healer user"
useradd --system --user-group --home-dir /var/lib/healer --no-create-home \
  --shell /usr/sbin/nologin healer
test_user_created=yes
check "install with an existing healer user" dpkg -i "$deb"
check "the existing user is used (no GECOS of ours)" \
  test "$(getent passwd healer | cut -d: -f5)" = ""
check "its state directory is created" test "$(mode_owner /var/lib/healer)" = "700 healer:healer"
check "dpkg -P with an existing healer user" dpkg -P healer
check "after dpkg -P: the administrator's user stays" test -n "$(getent passwd healer)"
userdel healer
test_user_created=""

check "the deferred triggers run (man-db)" dpkg --triggers-only --pending
checks_seconds=$(elapsed "$checks_started")
echo "package-test: ${build_seconds:+build ${build_seconds} s, }install/run/remove checks ${checks_seconds} s, total $(elapsed "$started") s"
if [ "$failures" -ne 0 ]; then
  die "$failures check(s) failed"
fi
echo "package-test: all checks passed"
