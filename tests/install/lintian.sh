#!/usr/bin/env bash
# lintian on the built package: no errors and no warnings (overrides carry a
# one-line justification in debian/libpam-planetscale.lintian-overrides).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
changes=$(ls "$top"/test-results/deb/*.changes)
out=$(lintian --fail-on error,warning --display-info --pedantic "$changes" 2>&1) || {
    echo "$out"; exit 1; }
echo "${out:-lintian: clean}"
