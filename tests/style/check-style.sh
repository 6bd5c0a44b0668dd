#!/usr/bin/env bash
# The C style check: every C file of the project matches .clang-format
# exactly, and none calls strcpy, strcat, sprintf or vsprintf (snprintf and
# memcpy with a checked length say how big the destination is).
# Prints one TAP line per file and rule.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
cd "$top"
fmt=${CLANG_FORMAT:-clang-format}
mapfile -t files < <(ls src/*.[ch] tests/*.c fuzz/*.c bench/*.c 2>/dev/null)
if ! command -v "$fmt" > /dev/null; then
    echo "1..0 # SKIP $fmt is not installed"
    exit 0
fi
echo "1..$(( ${#files[@]} * 2 ))"
n=0
for f in "${files[@]}"; do
    n=$((n + 1))
    if d=$("$fmt" --style=file "$f" | diff -u "$f" - ); then
        echo "ok $n - $f matches .clang-format"
    else
        echo "not ok $n - $f does not match .clang-format (run: clang-format -i $f)"
        printf '%s\n' "$d" | head -20 | sed 's/^/# /'
    fi
    n=$((n + 1))
    # comments may name them; code may not call them
    if hits=$(grep -nE '(^|[^_a-z])(strcpy|strcat|sprintf|vsprintf)[[:space:]]*\(' "$f" |
              grep -vE '^[0-9]+:[[:space:]]*(/\*|\*)'); then
        echo "not ok $n - $f calls strcpy/strcat/sprintf/vsprintf"
        printf '%s\n' "$hits" | sed 's/^/# /'
    else
        echo "ok $n - $f has no strcpy/strcat/sprintf/vsprintf"
    fi
done
