#!/usr/bin/env bash
# packaging/sandbox_check.py on a made-up strace log: each kind of call the unit's sandbox would
# refuse is reported, what it allows is not, and calls before the execve of healer (setpriv
# dropping privileges) do not count. Exit 77 (skipped) without systemd-analyze.
# Usage: sandbox_check_test.sh sandbox_check.py healer.service
set -euo pipefail
checker=$1
# The system python on purpose: a pyenv shim on PATH costs ~100 ms per call.
readonly PYTHON=/usr/bin/python3
unit=$2
if ! command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze is not installed (Debian package systemd): skipped"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# allowed: everything a normal healer run does
cat >"$dir/clean.log" <<'EOF_LOG'
100 setresuid(106, 106, 106) = 0
100 execve("/usr/bin/healer", ["/usr/bin/healer", "serve"], 0x7ffd /* 6 vars */) = 0
100 openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3
100 mmap(NULL, 8192, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_DENYWRITE, 3, 0) = 0x7f00
100 socket(AF_INET6, SOCK_STREAM|SOCK_CLOEXEC, IPPROTO_TCP) = 4
100 socket(AF_NETLINK, SOCK_RAW|SOCK_CLOEXEC, NETLINK_ROUTE) = 5
100 openat(AT_FDCWD, "/var/lib/healer/healer.db", O_RDWR|O_CREAT|O_CLOEXEC, 0600) = 6
100 openat(AT_FDCWD, "/etc/healer/new", O_WRONLY|O_CREAT, 0600) = -1 EACCES (Permission denied)
100 openat(AT_FDCWD, "/dev/urandom", O_RDONLY) = 7
101 clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD, exit_signal=0}, 88) = 102
100 exit_group(0) = ?
EOF_LOG
if ! "$PYTHON" "$checker" "$unit" "$dir/clean.log" /usr/bin/healer /var/lib/healer >"$dir/out" 2>&1; then
  fail "a clean run was refused: $(cat "$dir/out")"
fi
grep -q 'note: AF_NETLINK' "$dir/out" || fail "AF_NETLINK was not noted: $(cat "$dir/out")"

# refused: one of each
cat >"$dir/dirty.log" <<'EOF_LOG'
100 execve("/usr/bin/healer", ["/usr/bin/healer", "serve"], 0x7ffd /* 6 vars */) = 0
100 mmap(NULL, 4096, PROT_READ|PROT_WRITE|PROT_EXEC, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f00
100 mprotect(0x7f00, 4096, PROT_READ|PROT_EXEC) = 0
100 socket(AF_PACKET, SOCK_RAW, 768) = 4
100 unshare(CLONE_NEWNET) = 0
100 openat(AT_FDCWD, "/etc/healer/config.toml", O_WRONLY|O_TRUNC <unfinished ...>
101 read(5, "", 10) = 0
100 <... openat resumed>) = 8
100 mkdir("/var/log/healer", 0700) = 0
100 openat(AT_FDCWD, "/dev/sda", O_RDONLY) = 9
100 reboot(LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_RESTART) = -1 EPERM
EOF_LOG
if "$PYTHON" "$checker" "$unit" "$dir/dirty.log" /usr/bin/healer /var/lib/healer >"$dir/out" 2>&1; then
  fail "a run breaking the sandbox passed: $(cat "$dir/out")"
fi
for expected in "MemoryDenyWriteExecute: 100 mmap" "MemoryDenyWriteExecute: 100 mprotect" \
  "RestrictAddressFamilies: 100 socket(AF_PACKET" "RestrictNamespaces: 100 unshare" \
  "ProtectSystem=strict (read-only): 100 openat(AT_FDCWD, \"/etc/healer/config.toml\"" \
  "ProtectSystem=strict (read-only): 100 mkdir(\"/var/log/healer\"" "PrivateDevices: 100 openat" \
  "SystemCallFilter: reboot is not allowed"; do
  grep -qF "VIOLATION $expected" "$dir/out" || fail "not reported: $expected"
done

# no execve of the program at all: nothing was checked, which is a failure
if "$PYTHON" "$checker" "$unit" /dev/null /usr/bin/healer >"$dir/out" 2>&1; then
  fail "a log without healer's execve passed"
fi

[ "$failures" -eq 0 ] || exit 1
echo "sandbox_check.py OK"
