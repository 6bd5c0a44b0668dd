#!/usr/bin/env bash
# Builds the binary package from a clean copy of the tracked files (so the
# work tree's own build directories do not leak in) and leaves the .deb in
# test-results/deb/. The test suite already ran: DEB_BUILD_OPTIONS=nocheck.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
out="$top/test-results/deb"
work=$(mktemp -d /tmp/ps-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/pam-planetscale" "$out"
rm -f "$out"/*.deb
(cd "$top" && git ls-files -z | xargs -0 tar -cf - ) | tar -xf - -C "$work/pam-planetscale"
cd "$work/pam-planetscale"
DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b
cp "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo "$out"/
ls -l "$out"
