#!/usr/bin/env bash
# lintian on the built packages: no errors and no warnings (overrides carry a
# one-line justification in debian/libpam-planetscale.lintian-overrides).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
debs=("$top"/test-results/deb/*.deb)
out=$(lintian --fail-on error,warning --display-info --pedantic "${debs[@]}" 2>&1 |
      grep -v '^running with root privileges is not recommended!$') || true
lintian --fail-on error,warning --pedantic "${debs[@]}" > /dev/null 2>&1 || {
    echo "$out"; exit 1; }
echo "${out:-lintian: clean (${debs[*]##*/})}"
