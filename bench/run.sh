#!/bin/sh
# bench/run.sh BUILD_DIR [--quick] [--only login,removal,drain,memory,confirm,fleet,reconcile]
#
# The pam-planetscale benchmark suite (`make bench`; not part of `make check`).
# Builds bench/login_driver into BUILD_DIR/bench/, then runs the seven
# benchmarks (login path, one removal, draining, memory, confirming a 404, a
# fleet of 1,000 hosts: bench/fleet.py, reconcile over 10,000 logins and
# members) and prints every figure beside its
# baseline with the ratio, then a "targets:" section.
# Needs: gcc, libpam0g-dev, libpam-wrapper, libnss-wrapper, valgrind, strace,
# curl, python3, openssl (for tests/gen_ca.sh), readelf; perf for the page
# fault counts (printed as "-" without it).
set -eu

if [ $# -lt 1 ]; then
	echo "usage: $0 BUILD_DIR [--quick] [--only LIST]" >&2
	exit 64
fi
build=$(cd "$1" && pwd)
shift
src=$(cd "$(dirname "$0")/.." && pwd)

for f in "$build/planetscale-deprovision" "$build/.libs/pam_planetscale.so"; do
	if [ ! -x "$f" ] && [ ! -f "$f" ]; then
		echo "$0: $f is missing: build first (make all)" >&2
		exit 1
	fi
done
for t in valgrind strace curl python3 gcc; do
	command -v "$t" >/dev/null 2>&1 || { echo "$0: $t not found" >&2; exit 1; }
done

mkdir -p "$build/bench"
${CC:-gcc} -O2 -Wall -Wextra -o "$build/bench/login_driver" \
	"$src/bench/login_driver.c" -lpam
${CC:-gcc} -O2 -Wall -Wextra -o "$build/bench/spawn_rusage" "$src/bench/spawn_rusage.c"
${CC:-gcc} -O2 -Wall -Wextra -shared -fPIC -o "$build/bench/nofsync.so" "$src/bench/nofsync.c"

exec python3 "$src/bench/bench.py" --build "$build" "$@"
