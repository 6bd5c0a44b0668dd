#!/usr/bin/env bash
# The whole test suite: `make check` in the main build, again under
# AddressSanitizer + UBSan and under valgrind memcheck, `make distcheck`,
# the fuzzers, the Debian package (build, lintian, install test in a
# debootstrap root). Root-only stages skip with a reason when not root.
# Ends with one line: "tests: N passed, N failed, N skipped".
#
#   tests/run-all.sh            everything
#   STAGES="check asan" tests/run-all.sh   some stages only
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
STAGES=${STAGES:-"style check man asan valgrind distcheck fuzz deb install bench-memory"}
JOBS=$(nproc 2>/dev/null || echo 2)
logdir="$top/test-results"
mkdir -p "$logdir"
pass=0 fail=0 skip=0
failed=()

note() { printf '\n=== %s ===\n' "$*"; }

# Adds the counts of an automake test-suite.log.
count_suite() {
    local log=$1 label=$2 p f s e x
    if [ ! -f "$log" ]; then
        fail=$((fail + 1)); failed+=("$label: no test-suite.log"); return
    fi
    p=$(sed -n 's/^# PASS: *//p' "$log" | head -1)
    f=$(sed -n 's/^# FAIL: *//p' "$log" | head -1)
    s=$(sed -n 's/^# SKIP: *//p' "$log" | head -1)
    x=$(sed -n 's/^# XPASS: *//p' "$log" | head -1)
    e=$(sed -n 's/^# ERROR: *//p' "$log" | head -1)
    pass=$((pass + ${p:-0})); skip=$((skip + ${s:-0}))
    fail=$((fail + ${f:-0} + ${e:-0} + ${x:-0}))
    if [ "$(( ${f:-0} + ${e:-0} + ${x:-0} ))" -gt 0 ]; then
        failed+=("$label: $(( ${f:-0} + ${e:-0} )) failed (see $log)")
        grep -E '^(FAIL|ERROR)' "$log" | head -20
    fi
}

# A stage that is one test. One that prints a TAP plan "1..0 # SKIP reason"
# and exits 0 is counted as skipped, with its reason.
one() {
    local label=$1; shift
    if "$@" > "$logdir/$label.log" 2>&1; then
        if grep -qE '^1\.\.0 *# *(SKIP|skip)' "$logdir/$label.log"; then
            skip=$((skip + 1)); echo "SKIP: $label: $(grep -m1 -E '^1\.\.0' "$logdir/$label.log")"
            return
        fi
        pass=$((pass + 1)); echo "PASS: $label"
    else
        fail=$((fail + 1)); failed+=("$label (see $logdir/$label.log)")
        echo "FAIL: $label"; tail -40 "$logdir/$label.log"
    fi
}

# Counts a TAP stream file (ok / not ok / # SKIP). A plan of "1..0 # SKIP
# reason" (the whole stream skipped) counts as one skipped test.
count_tap() {
    local file=$1 label=$2 p f s whole=0
    p=$(grep -cE '^ok ' "$file" | tr -d ' ')
    s=$(grep -cE '^ok .*# (SKIP|skip)' "$file" | tr -d ' ')
    f=$(grep -cE '^not ok ' "$file" | tr -d ' ')
    if grep -qE '^1\.\.0 *# *(SKIP|skip)' "$file"; then
        whole=1; echo "SKIP: $label: $(sed -n 's/^1\.\.0 *# *[Ss][Kk][Ii][Pp] *//p' "$file" | head -1)"
    elif ! grep -qE '^1\.\.[0-9]+' "$file"; then f=$((f + 1)); failed+=("$label: no plan"); fi
    pass=$((pass + p - s)); skip=$((skip + s + whole)); fail=$((fail + f))
    [ "$f" -gt 0 ] && failed+=("$label: $f failed (see $file)")
    return 0
}

configure_into() {   # DIR [configure args...]
    local dir=$1; shift
    mkdir -p "$dir" && cd "$dir" &&
        "$top/configure" --sysconfdir=/etc --localstatedir=/var "$@" > configure.log 2>&1 &&
        make -j"$JOBS" > make.log 2>&1
    local rc=$?
    cd "$top"
    return $rc
}

[ -x "$top/configure" ] || (cd "$top" && autoreconf -fi > /dev/null 2>&1)

for stage in $STAGES; do
    case $stage in
    style)
        note "C style (.clang-format) and no strcpy/strcat/sprintf"
        bash "$top/tests/style/check-style.sh" > "$logdir/style.tap" 2>&1
        count_tap "$logdir/style.tap" style
        grep -E '^not ok' -A5 "$logdir/style.tap" | head -40
        ;;
    check)
        note "make check"
        if configure_into "$top/build" --enable-werror; then
            make -C "$top/build" -j"$JOBS" check > "$logdir/check.log" 2>&1
            count_suite "$top/build/test-suite.log" check
        else
            fail=$((fail + 1)); failed+=("build (see build/make.log)"); tail -30 build/make.log
        fi
        ;;
    man)
        note "man pages (man --warnings, no output allowed)"
        for page in "$top"/man/*.[0-9]; do
            one "man-$(basename "$page")" bash -c '
                out=$(LC_ALL=C.UTF-8 MANROFFSEQ="" MANWIDTH=80 \
                      man --warnings -E UTF-8 -l -Tutf8 -Z "$1" 2>&1 >/dev/null)
                [ -z "$out" ] || { echo "$out"; exit 1; }' _ "$page"
        done
        ;;
    asan)
        note "make check under AddressSanitizer + UBSan"
        san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
        if configure_into "$top/build-asan" CFLAGS="$san" LDFLAGS="-fsanitize=address,undefined"; then
            ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:verify_asan_link_order=0 \
            LSAN_OPTIONS=suppressions=$top/fuzz/lsan.supp:print_suppressions=0 \
            UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            UID_WRAPPER_DISABLE_DEEPBIND=1 NSS_WRAPPER_DISABLE_DEEPBIND=1 \
            PS_SANITIZER_RUNTIME="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)" \
                make -C "$top/build-asan" -j"$JOBS" check > "$logdir/asan.log" 2>&1
            count_suite "$top/build-asan/test-suite.log" asan
        else
            fail=$((fail + 1)); failed+=("asan build (see build-asan/make.log)")
        fi
        ;;
    valgrind)
        note "make check under valgrind memcheck"
        if [ -f "$top/build/Makefile" ]; then
            rm -f "$top/build/test-suite.log" "$top"/build/tests/*.log "$top"/build/tests/*.trs \
                  "$top"/build/tests/integration/*.log "$top"/build/tests/integration/*.trs
            TEST_WRAPPER="valgrind -q --suppressions=$top/tests/valgrind.supp --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect --track-fds=no --trace-children=no" \
                make -C "$top/build" -j"$JOBS" check > "$logdir/valgrind.log" 2>&1
            count_suite "$top/build/test-suite.log" valgrind
        else
            fail=$((fail + 1)); failed+=("valgrind: no build")
        fi
        ;;
    distcheck)
        note "make distcheck"
        one distcheck make -C "$top/build" distcheck
        ;;
    fuzz)
        note "fuzzing"
        if [ -x "$top/fuzz/run.sh" ] || [ -f "$top/fuzz/run.sh" ]; then
            one fuzz bash "$top/fuzz/run.sh"
        else
            skip=$((skip + 1)); echo "SKIP: fuzz (fuzz/run.sh missing)"
        fi
        ;;
    deb)
        note "Debian package"
        if [ "$(id -u)" != 0 ] && ! command -v fakeroot > /dev/null; then
            skip=$((skip + 1)); echo "SKIP: deb (needs root or fakeroot)"
        elif [ -d "$top/debian" ]; then
            one deb-build bash "$top/tests/install/build-deb.sh"
            one lintian bash "$top/tests/install/lintian.sh"
        else
            skip=$((skip + 1)); echo "SKIP: deb (no debian/)"
        fi
        ;;
    install)
        note "install test in a debootstrap root"
        if [ -f "$top/tests/install/run-install-test.sh" ]; then
            INSTALL_TEST_DEB=$(ls "$top"/test-results/deb/libpam-planetscale_*.deb 2>/dev/null | head -1) \
            INSTALL_TEST_CACHE=${INSTALL_TEST_CACHE:-/var/tmp/ps-install-cache} \
                bash "$top/tests/install/run-install-test.sh" > "$logdir/install.tap" 2> "$logdir/install.err"
            count_tap "$logdir/install.tap" install
            grep -E '^(not ok|ok .*# SKIP)' "$logdir/install.tap" | head -20
        else
            skip=$((skip + 1)); echo "SKIP: install (no install test)"
        fi
        ;;
    bench-memory)
        note "module memory under valgrind (10,000 cycles)"
        if [ -f "$top/bench/memory.sh" ]; then
            one bench-memory bash "$top/bench/memory.sh" "$top/build"
        else
            skip=$((skip + 1)); echo "SKIP: bench-memory (bench/memory.sh missing)"
        fi
        ;;
    *)
        echo "unknown stage $stage"; fail=$((fail + 1))
        ;;
    esac
done

if [ ${#failed[@]} -gt 0 ]; then
    printf '\nFailures:\n'; printf '  %s\n' "${failed[@]}"
fi
echo "tests: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
