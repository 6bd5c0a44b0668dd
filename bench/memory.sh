#!/bin/sh
# bench/memory.sh [BUILD_DIR] - memory and descriptors of pam_planetscale.so
# over many PAM cycles in one process (bench/login_driver under pam_wrapper
# and nss_wrapper). Output is TAP (one test; details as "#" lines), so it can
# run under the tap-driver in `make check` (BUILD_DIR defaults to
# $top_builddir). Exit 0 when every check passes, 1 otherwise; a missing tool
# is "1..0 # SKIP" with exit 0. Checks:
#   1. valgrind memcheck, MEMORY_CYCLES (default 10,000) cycles of
#      `account only_expired` for a valid user + open/close session:
#      no error, no byte definitely or indirectly lost;
#   2. the same without valgrind: descriptors after the last cycle equal
#      those after the first cycle, VmRSS after the last cycle within
#      RSS_TOLERANCE_KB (default 64) of VmRSS after 1,000 cycles;
#   3. the helper path (an expired user: the module forks and execs
#      planetscale-deprovision pam-helper, answer "unmapped", no network):
#      HELPER_CYCLES (default 200) account + session on_close cycles under
#      memcheck, with the same descriptor check.
set -u

if [ $# -lt 1 ] && [ -z "${top_builddir:-}" ]; then
	echo "usage: $0 BUILD_DIR" >&2
	exit 64
fi
build=$(cd "${1:-$top_builddir}" && pwd)
src=$(cd "$(dirname "$0")/.." && pwd)
cycles=${MEMORY_CYCLES:-10000}
hcycles=${HELPER_CYCLES:-200}
tol=${RSS_TOLERANCE_KB:-64}
module=$build/.libs/pam_planetscale.so
cmd=$build/planetscale-deprovision
secdir=/lib/x86_64-linux-gnu/security
[ -d "$secdir" ] || secdir=$(dirname "$(find /lib /usr/lib -name pam_permit.so 2>/dev/null | head -n1)")

for t in valgrind gcc; do
	command -v "$t" >/dev/null 2>&1 || { echo "1..0 # SKIP $t not found"; exit 0; }
done
for l in libpam_wrapper.so libnss_wrapper.so; do
	ldconfig -p 2>/dev/null | grep -q "$l" || { echo "1..0 # SKIP $l not found"; exit 0; }
done
echo "1..1"
[ -f "$module" ] && [ -x "$cmd" ] || { echo "not ok 1 - memory: FAIL (build first: $module, $cmd)"; exit 1; }

driver=$build/bench/login_driver
if [ ! -x "$driver" ] || [ "$src/bench/login_driver.c" -nt "$driver" ]; then
	mkdir -p "$build/bench"
	${CC:-gcc} -O2 -Wall -o "$driver" "$src/bench/login_driver.c" -lpam || exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ps-memory.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM
mkdir -m 700 "$work/pam.d" "$work/queue"
cat > "$work/pam.d/other" <<EOT
auth required $secdir/pam_deny.so
account required $secdir/pam_deny.so
session required $secdir/pam_deny.so
EOT
printf 'alice:x:1000:1000::/home/alice:/bin/sh\nold:x:1002:1002::/home/old:/bin/sh\n' \
	> "$work/passwd"
printf 'alice:x:1000:\nold:x:1002:\n' > "$work/group"
# alice: valid (no expiry); old: expired on 1970-01-02 (expire day 1)
printf 'alice:!:19000:0:99999:7:::\nold:!:19000:0:99999:7::1:\n' > "$work/shadow"
# "old" is not in the map: the helper answers "unmapped" without any request
cat > "$work/deprovision.conf" <<EOT
organization = "acme";
api = { url = "https://127.0.0.1:1/v1"; token_id = "id"; token = "secret"; };
users = ( { login = "alice"; id = "d4xkq1abc"; } );
queue = { dir = "$work/queue"; };
EOT
chmod 600 "$work/deprovision.conf"
m="$module conf=$work/deprovision.conf helper=$cmd"
cat > "$work/pam.d/cycle" <<EOT
account [default=ignore] $m only_expired
account required $secdir/pam_permit.so
session optional $m
session required $secdir/pam_permit.so
EOT
cat > "$work/pam.d/helper" <<EOT
account [default=ignore] $m only_expired
account required $secdir/pam_permit.so
session optional $m on_close
session required $secdir/pam_permit.so
EOT

export LD_PRELOAD="libpam_wrapper.so libnss_wrapper.so" PAM_WRAPPER=1 \
	PAM_WRAPPER_SERVICE_DIR="$work/pam.d" NSS_WRAPPER_PASSWD="$work/passwd" \
	NSS_WRAPPER_GROUP="$work/group" NSS_WRAPPER_SHADOW="$work/shadow"

fail=0
vg="valgrind --leak-check=full --show-leak-kinds=definite,indirect \
--errors-for-leak-kinds=definite,indirect --error-exitcode=99"

kv() { sed -n "s/^$1=//p" "$2" | head -n1; }

leaks() {       # "definitely lost: X bytes, indirectly lost: Y bytes" from a valgrind log
	d=$(sed -n 's/.*definitely lost: \([0-9,]*\) bytes.*/\1/p' "$1" | tr -d , | tail -n1)
	i=$(sed -n 's/.*indirectly lost: \([0-9,]*\) bytes.*/\1/p' "$1" | tr -d , | tail -n1)
	e=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$1" | tail -n1)
	echo "definitely lost ${d:-0} B, indirectly lost ${i:-0} B, ${e:-?} errors"
}

# ---- 1. memcheck, valid user, account + session
t0=$(date +%s)
$vg --log-file="$work/vg1.log" "$driver" cycle alice "$cycles" --session --report \
	> "$work/r1.txt" 2> "$work/e1.txt"
rc1=$?
t1=$(date +%s)
l1=$(leaks "$work/vg1.log")
if [ $rc1 -ne 0 ]; then
	fail=1
	echo "# FAIL memcheck, $cycles cycles (valid user): exit $rc1: $l1"
	grep -A12 'definitely lost in\|indirectly lost in\|Invalid\|uninitialised' \
		"$work/vg1.log" | head -n 60 | sed 's/^/# /'
	sed 's/^/# /' "$work/e1.txt"
else
	echo "# ok   memcheck, $cycles account+session cycles (valid user) in $((t1 - t0)) s: $l1"
fi

# ---- 2. no valgrind: descriptors and RSS over 10,000 cycles (or more)
n2=$cycles
[ "$n2" -lt 10000 ] && n2=10000
"$driver" cycle alice "$n2" --session --report > "$work/r2.txt" 2> "$work/e2.txt"
rc2=$?
fb=$(kv fds_before "$work/r2.txt"); ff=$(kv fds_after_first "$work/r2.txt")
fa=$(kv fds_after "$work/r2.txt")
r1000=$(kv rss_kb_1000 "$work/r2.txt"); rend=$(kv rss_kb_end "$work/r2.txt")
if [ $rc2 -ne 0 ] || [ -z "$fa" ]; then
	fail=1
	echo "# FAIL driver without valgrind: exit $rc2"; sed 's/^/# /' "$work/e2.txt"
else
	if [ "$fa" -eq "$ff" ]; then
		echo "# ok   descriptors: $fb before, $ff after the first cycle, $fa after $n2 cycles"
	else
		fail=1
		echo "# FAIL descriptors: $ff after the first cycle, $fa after $n2 cycles"
		grep '^fd ' "$work/r2.txt" | sed "s|$work/|WORK/|; s/^/# /"
	fi
	if [ "$fb" -ne "$ff" ]; then
		echo "#      (the first cycle opens $((ff - fb)) descriptor(s) that stay constant:"
		grep '^fd ' "$work/r2.txt" | sed "s|$work/|WORK/|; s|/proc/[0-9]*/|/proc/PID/|; s/^/#        /"
		echo "#       WORK is the test's temporary directory; nss_wrapper keeps its shadow file"
		echo "#       open for getspnam)"
	fi
	d=$((rend - r1000))
	if [ "$d" -le "$tol" ]; then
		echo "# ok   VmRSS: $r1000 KB after 1,000 cycles, $rend KB after $n2 (+$d KB, tolerance $tol KB)"
	else
		fail=1
		echo "# FAIL VmRSS: $r1000 KB after 1,000 cycles, $rend KB after $n2 (+$d KB > $tol KB)"
	fi
fi

# ---- 3. the helper path under memcheck
$vg --log-file="$work/vg3.log" "$driver" helper old "$hcycles" --session --report \
	> "$work/r3.txt" 2> "$work/e3.txt"
rc3=$?
l3=$(leaks "$work/vg3.log")
ff3=$(kv fds_after_first "$work/r3.txt"); fa3=$(kv fds_after "$work/r3.txt")
if [ $rc3 -ne 0 ] || [ "${ff3:-x}" != "${fa3:-y}" ]; then
	fail=1
	echo "# FAIL helper path, $hcycles cycles (expired user, fork+exec of pam-helper): exit $rc3: $l3; fds $ff3 -> $fa3"
	grep -A12 'definitely lost in\|indirectly lost in\|Invalid' "$work/vg3.log" | head -n 40 | sed 's/^/# /'
	sed 's/^/# /' "$work/e3.txt"
else
	echo "# ok   memcheck, $hcycles helper-path cycles (expired user: fork+exec pam-helper, account + session on_close): $l3; fds $ff3 -> $fa3"
fi

if [ $fail -eq 0 ]; then
	echo "ok 1 - memory: PASS ($cycles cycles under memcheck in $((t1 - t0)) s: $l1; fds $ff -> $fa; VmRSS $r1000 -> $rend KB over $n2 cycles; helper path $hcycles cycles: $l3)"
	exit 0
fi
echo "not ok 1 - memory: FAIL"
exit 1
