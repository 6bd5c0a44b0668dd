#!/usr/bin/env bash
# Quick start on Debian 12: installs what the build and the tests need,
# builds into ./build, and runs the demo against the bundled local API
# simulator (no PlanetScale account needed).
set -euo pipefail
cd "$(dirname "$0")"

# Everything the build, the demo, `tests/run-all.sh` and `make bench` use:
# this is the project's only package list (.ci/run runs this script).
DEPS="build-essential autoconf automake libtool pkg-config libpam0g-dev
libcurl4-openssl-dev libjson-c-dev libconfig-dev libcmocka-dev libpam-wrapper
libpamtest0-dev libnss-wrapper libuid-wrapper pamtester libpam-modules
libpam-runtime python3 openssl ca-certificates curl strace valgrind clang
clang-format libclang-rt-14-dev debhelper dpkg-dev fakeroot lintian man-db
groff-base debootstrap adduser passwd login util-linux systemd prometheus
prometheus-node-exporter python3-yaml ansible-core"

missing=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' $DEPS 2>/dev/null |
          awk '$2 != "installed" {print $1}'; for p in $DEPS; do
          dpkg-query -W "$p" >/dev/null 2>&1 || echo "$p"; done)
missing=$(echo "$missing" | sort -u | tr '\n' ' ')
if [ -n "${missing// /}" ]; then
    echo "installing: $missing"
    SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $missing > /dev/null
fi

[ -x configure ] || autoreconf -fi > /dev/null
mkdir -p build
cd build
[ -f Makefile ] || ../configure --sysconfdir=/etc --localstatedir=/var > /dev/null
make -j"$(nproc)" > /dev/null
make tests/libsyslogshim.la > /dev/null
cd ..
exec python3 tests/demo.py build
