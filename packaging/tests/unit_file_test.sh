#!/usr/bin/env bash
# The generated systemd unit (build/<preset>/packaging/healer.service): `systemd-analyze verify`
# finds no problem (its binary swapped for the one just built, its man page from the build),
# `systemd-analyze security` rates its exposure 2.0 or lower, and the hardening the
# operations guide promises is there. Exit 77 (skipped) without systemd-analyze.
# Usage: unit_file_test.sh HEALER GENERATED_DIR
set -euo pipefail
healer=$(realpath "$1")
generated=$2
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

unit=$generated/healer.service
installed_binary=$(sed -n 's/^ExecStart=\([^ ]*\) serve$/\1/p' "$unit")
[ -n "$installed_binary" ] || fail "no 'ExecStart=BINARY serve' line"
sed "s|$installed_binary|$healer|g" "$unit" >"$dir/healer.service"

output=$(MANPATH=$generated/man systemd-analyze verify "$dir/healer.service" 2>&1) ||
  fail "systemd-analyze verify: $output"
[ -z "$output" ] || fail "systemd-analyze verify warns: $output"

exposure=$(systemd-analyze security --offline=yes "$dir/healer.service" 2>&1 |
  sed -n 's/.*Overall exposure level for healer.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "systemd-analyze security printed no exposure level"
systemd-analyze security --offline=yes --threshold=20 "$dir/healer.service" >/dev/null 2>&1 ||
  fail "exposure $exposure is above 2.0"

# What docs/operations.md and the package's maintainer scripts rely on.
for line in "Type=simple" "User=healer" "Group=healer" "StateDirectory=healer" \
  "StateDirectoryMode=0700" "ConfigurationDirectory=healer" \
  "Environment=HEALER_DB=/var/lib/healer/healer.db" "Environment=HOME=/var/lib/healer" \
  "NoNewPrivileges=yes" "ProtectSystem=strict" "ProtectHome=read-only" "PrivateTmp=yes" \
  "PrivateDevices=yes" "ProtectKernelTunables=yes" "ProtectKernelModules=yes" \
  "ProtectKernelLogs=yes" "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" \
  "SystemCallFilter=@system-service" "CapabilityBoundingSet=" "LockPersonality=yes" \
  "MemoryDenyWriteExecute=yes" "UMask=0077" "Restart=on-failure" "TimeoutStopSec=15" \
  "ExecReload=/bin/kill -HUP \$MAINPID" "WantedBy=multi-user.target"; do
  grep -qxF "$line" "$unit" || fail "missing: $line"
done
grep -q '^StartLimitBurst=[0-9]' "$unit" || fail "no start limit"
grep -q "^Environment=HEALER_CONFIG=/.*/healer/config.toml$" "$unit" || fail "no HEALER_CONFIG"

[ "$failures" -eq 0 ] || exit 1
echo "unit OK (exposure $exposure)"
