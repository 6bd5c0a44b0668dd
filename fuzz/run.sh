#!/bin/sh
# fuzz/run.sh - build the libFuzzer targets and run each for a bounded time.
#
#   fuzz/run.sh [TARGET...]        (default: all; e.g. queue_entry config sender_line unresolved member_page
#                                   reconcile_state)
#
# Environment: FUZZ_SECONDS (per target, default 60), CC (default clang),
# FUZZ_WORKDIR (build and scratch corpus; default a fresh mktemp -d, removed
# on success), FUZZ_JOBS passed as -jobs/-workers when set.
# Exits non-zero when a target does not build or reports a crash, a leak, a
# timeout or a sanitizer finding; the reproducer is kept in FUZZ_WORKDIR.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
cc=${CC:-clang}
seconds=${FUZZ_SECONDS:-60}
targets=${*:-"queue_entry api_answer config sender_line unresolved member_page reconcile_state"}

work=${FUZZ_WORKDIR:-}
keep=1
if [ -z "$work" ]; then
    work=$(mktemp -d "${TMPDIR:-/tmp}/ps-fuzz.XXXXXX")
    keep=0
fi
mkdir -p "$work"

pkgflags=$(pkg-config --cflags --libs libcurl json-c libconfig)
# the core: every file of src/ but the PAM module and the command's main
core=$(ls "$top"/src/*.c | grep -v -e '/pam_planetscale\.c$' -e '/deprovision\.c$' | tr '\n' ' ')
cflags="-g -O1 -pthread -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export LSAN_OPTIONS="${LSAN_OPTIONS:-suppressions=$top/fuzz/lsan.supp:print_suppressions=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=""
for t in $targets; do
    src="$top/fuzz/fuzz_$t.c"
    seeds="$top/tests/seeds/$t"
    bin="$work/fuzz_$t"
    corpus="$work/corpus-$t"
    artifacts="$work/artifacts-$t/"

    if [ ! -f "$src" ]; then
        echo "run.sh: unknown target $t ($src)" >&2
        failed="$failed $t"
        continue
    fi
    echo "== build $t"
    # shellcheck disable=SC2086
    if ! $cc $cflags -D_GNU_SOURCE=1 -DSYSCONFDIR='"/etc"' -DLOCALSTATEDIR='"/var"' \
            -DSBINDIR='"/usr/sbin"' -DPS_VERSION='"0.1.0"' -I"$top/src" \
            "$src" $core $pkgflags -o "$bin"; then
        echo "run.sh: $t: build failed" >&2
        failed="$failed $t"
        continue
    fi
    rm -rf "$corpus"
    mkdir -p "$corpus" "$artifacts"
    if [ -d "$seeds" ]; then
        cp "$seeds"/* "$corpus"/ 2>/dev/null || true
    fi

    echo "== run $t for ${seconds}s"
    jobs=""
    if [ -n "${FUZZ_JOBS:-}" ]; then
        jobs="-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS"
    fi
    # shellcheck disable=SC2086
    if ! (cd "$work" && TMPDIR="$work" "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 \
            -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts" \
            $jobs "$corpus"); then
        echo "run.sh: $t: FAILED; reproducer(s) in $artifacts:" >&2
        ls -l "$artifacts" >&2 || true
        failed="$failed $t"
        keep=1
        continue
    fi
    if [ -n "$(find "$artifacts" -type f)" ]; then
        echo "run.sh: $t: artifacts left in $artifacts" >&2
        failed="$failed $t"
        keep=1
    fi
done

if [ -n "$failed" ]; then
    echo "run.sh: FAILED:$failed (work directory: $work)" >&2
    exit 1
fi
if [ "$keep" = 0 ]; then
    rm -rf "$work"
fi
echo "run.sh: all targets ran ${seconds}s without a finding"
