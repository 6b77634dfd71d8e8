#!/usr/bin/env bash
# Builds the Debian package from the release preset: build/release/packages/healer_<version>-1_<arch>.deb
# (the binary stripped, man pages, completions, the systemd unit, /etc/healer/config.toml, the
# maintainer scripts; Depends computed by dpkg-shlibdeps). Builds only what the package holds
# (healer and its man pages and completions), not the tests or benchmarks.
#
#   scripts/package.sh [--dbgsym]    --dbgsym: also healer-dbgsym_<version>-1_<arch>.ddeb with the
#                                    debug info (slow: minutes of xz over ~100 MB of DWARF)
# HEALER_WERROR=ON turns warnings into errors, as in scripts/test.sh. The package installs under
# /usr, so the release preset is configured with CMAKE_INSTALL_PREFIX=/usr (it changes no
# compiled code). Install it with `dpkg -i`; scripts/package-test.sh checks it.
set -euo pipefail
cd "$(dirname "$0")/.."

cpack_options=()
case "${1:-}" in
  "") ;;
  --dbgsym) cpack_options=(-D CPACK_DEBIAN_DEBUGINFO_PACKAGE=ON -D CPACK_STRIP_FILES=OFF) ;;
  *)
    echo "usage: scripts/package.sh [--dbgsym]" >&2
    exit 2
    ;;
esac

scripts/install-deps.sh
cmake --preset release -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
cmake --build --preset release -j2 --target healer healer_cli_docs
rm -rf build/release/packages
(cd build/release && cpack -G DEB "${cpack_options[@]}" >cpack.log 2>&1) || {
  cat build/release/cpack.log >&2
  exit 1
}
find build/release/packages -name '*.deb' -o -name '*.ddeb'
