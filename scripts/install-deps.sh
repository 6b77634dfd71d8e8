#!/usr/bin/env bash
# Installs what healer needs to build, test and benchmark on Debian 12. Idempotent: installs only
# missing packages. Run as root or with sudo available.
set -euo pipefail

packages=(
  build-essential cmake ninja-build ccache pkg-config clang-format git clang libclang-rt-14-dev lld
  libssh-dev libasio-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev
  libsqlite3-dev libsodium-dev libcpp-httplib-dev libgtest-dev libgmock-dev libbenchmark-dev
  libtomlplusplus-dev libhttp-parser-dev libssl-dev prometheus python3-jsonschema openssl
  # Prometheus remote write from `healer serve`: protobuf messages and snappy compression.
  libprotobuf-dev protobuf-compiler libsnappy-dev
  # PostgreSQL as the shared store (libpq); the tests start a real PostgreSQL 15 server.
  libpq-dev postgresql-15
  openssh-server openssh-client procps bsdutils python3 python3-asyncssh pdsh pssh curl wrk
  # The packet-level delayed link (tests/support/netdelay): NFQUEUE, veth, a namespace.
  libnetfilter-queue-dev iptables iproute2 tcpdump iputils-ping
  # The metrics probe: busybox sh/awk tests, process counts (strace), node_exporter next to it.
  busybox strace prometheus-node-exporter
  # the Debian package: dpkg-shlibdeps, man pages, completions, unit checks (scripts/package*.sh)
  dpkg-dev adduser man-db groff-base zsh systemd
  # The dashboard: Chart.js (embedded at build time); its tests drive headless Chromium.
  libjs-chart.js chromium chromium-driver fonts-dejavu-core
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

# The test sshd logs in as this unprivileged user when the tests run as root: OpenSSH turns off
# privilege separation after a root login and then refuses "signal" requests, which the
# command-timeout tests rely on; its /bin/sh login also skips root's shell rc files.
if [ "$(id -u)" -eq 0 ]; then
  if ! id healer-test >/dev/null 2>&1; then
    useradd --system --create-home --home-dir /var/lib/healer-test --shell /bin/sh healer-test
  fi
  # No password, but not locked either: sshd (UsePAM no) refuses locked accounts even for keys.
  if [ "$(getent shadow healer-test | cut -d: -f2)" != "*" ]; then
    usermod -p '*' healer-test
  fi
fi
# sshd refuses to start without its privilege separation directory (normally made by systemd).
as_root mkdir -p /run/sshd
