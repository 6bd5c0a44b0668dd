#!/bin/bash
# run-install-test.sh - install the built libpam-planetscale .deb into a fresh
# Debian 12 root and check what a system administrator relies on: files and
# modes, pam-auth-update, an expired account removed at its next
# pamtester acct_mgmt (with the real pam_unix still deciding), the userdel
# hook, the queue and retry, the sender (serve) and its units, removal and
# purge. Output: TAP.
#
# Needs root, debootstrap, python3 and openssl on the host, and the Debian
# mirror named in /etc/apt/sources.list.d/debian.sources (the chroot installs
# the package's dependencies and pamtester from it). Skips otherwise.
#
# Environment:
#   INSTALL_TEST_DEB    the .deb (default: the newest ../libpam-planetscale_*.deb
#                       next to the source tree, where dpkg-buildpackage puts it)
#   INSTALL_TEST_CACHE  directory that keeps a tarball of the prepared root
#                       between runs (about 100 MB; saves the debootstrap)
#   INSTALL_TEST_KEEP   1: keep the work directory for inspection
#
# The API simulator (tests/simulator.py) runs on the host on 127.0.0.1 with a
# throwaway CA (tests/gen_ca.sh); the chroot shares the host's network
# namespace and trusts that CA through api.ca_file. Nothing from the host's
# /etc is bind-mounted; the whole run happens in a private mount namespace.

set -u

here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(cd "$here/../.." && pwd)}

skip_all() {
	echo "1..0 # SKIP $*"
	exit 0
}

# ---------------------------------------------------------------- prerequisites
[ "$(id -u)" -eq 0 ] || skip_all "needs root (debootstrap, chroot, mounts)"
command -v debootstrap >/dev/null 2>&1 || skip_all "debootstrap is not installed"
command -v unshare >/dev/null 2>&1 || skip_all "unshare (util-linux) is not installed"
command -v python3 >/dev/null 2>&1 || skip_all "python3 is not installed (API simulator)"
command -v openssl >/dev/null 2>&1 || skip_all "openssl is not installed (test CA)"

deb=${INSTALL_TEST_DEB:-}
if [ -z "$deb" ]; then
	deb=$(ls -t "$top_srcdir"/../libpam-planetscale_*.deb 2>/dev/null | head -n 1)
fi
[ -n "$deb" ] && [ -f "$deb" ] ||
	skip_all "no libpam-planetscale .deb: run dpkg-buildpackage -us -uc -b first, or set INSTALL_TEST_DEB"
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")

# The machine's own Debian mirror, never a hard-coded host name.
mirror_from_sources() {
	local f=/etc/apt/sources.list.d/debian.sources
	if [ -r "$f" ]; then
		awk '
			/^[ \t]*$/ { if (uri != "" && suites ~ /(^| )bookworm( |$)/) { print uri; exit }
			             uri = ""; suites = ""; next }
			tolower($1) == "uris:" { uri = $2 }
			tolower($1) == "suites:" { $1 = ""; suites = $0 " " }
			END { if (uri != "" && suites ~ /(^| )bookworm( |$)/) print uri }
		' "$f" | head -n 1
		return
	fi
	[ -r /etc/apt/sources.list ] &&
		awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list
}
mirror=$(mirror_from_sources)
[ -n "$mirror" ] || skip_all "no bookworm URIs: in /etc/apt/sources.list.d/debian.sources"

# Everything below runs in a private mount namespace: the chroot's mounts
# disappear with the process, whatever happens.
if [ -z "${INSTALL_TEST_IN_NS:-}" ]; then
	INSTALL_TEST_IN_NS=1 exec unshare -m --propagation private "$0" "$@"
fi

# ---------------------------------------------------------------- TAP
n=0
failed=0
ok() { # DESCRIPTION
	n=$((n + 1))
	echo "ok $n - $1"
}
not_ok() { # DESCRIPTION [DIAGNOSTIC...]
	n=$((n + 1))
	case $1 in *'# TODO'*) ;; *) failed=$((failed + 1)) ;; esac
	echo "not ok $n - $1"
	shift
	local line
	for line in "$@"; do
		printf '%s\n' "$line" | sed 's/^/# /'
	done
}
check() { # DESCRIPTION COMMAND...: ok when COMMAND succeeds
	local desc=$1 out
	shift
	if out=$("$@" 2>&1); then ok "$desc"; else not_ok "$desc" "$out"; fi
}
bail() {
	echo "Bail out! $*"
	exit 1
}
diag() { printf '%s\n' "$*" | sed 's/^/# /'; }

# ---------------------------------------------------------------- work area
arch=$(dpkg --print-architecture)
work=$(mktemp -d /var/tmp/ps-install-test.XXXXXX) || bail "mktemp failed"
root=$work/root
sim_pid=
serve_pid=
cleanup() {
	for pid in $sim_pid $serve_pid; do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	# Unmount before deleting: never recurse into /proc or /dev.
	for m in "$root/dev" "$root/proc"; do
		mountpoint -q "$m" 2>/dev/null && umount -l "$m"
	done
	if [ "${INSTALL_TEST_KEEP:-0}" = 1 ]; then
		diag "kept $work"
	else
		rm -rf --one-file-system "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# In the chroot, with a clean environment.
in_root() {
	chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
		DEBIAN_FRONTEND=noninteractive HOME=/root "$@"
}

# ---------------------------------------------------------------- the root
cache=${INSTALL_TEST_CACHE:-}
cached=
[ -n "$cache" ] && cached=$cache/bookworm-minbase-$arch-pamtester.tar.gz
if [ -n "$cached" ] && [ -s "$cached" ]; then
	mkdir "$root" && tar -xzpf "$cached" -C "$root" || bail "cannot unpack $cached"
	ok "root unpacked from the cache $cached"
else
	if ! debootstrap --variant=minbase --include=pamtester,adduser bookworm "$root" "$mirror" \
		>"$work/debootstrap.log" 2>&1; then
		tail -n 20 "$work/debootstrap.log" | sed 's/^/# /'
		bail "debootstrap --variant=minbase bookworm from $mirror failed"
	fi
	ok "debootstrap --variant=minbase bookworm (mirror $mirror)"
	if [ -n "$cached" ]; then
		mkdir -p "$cache" && tar -czpf "$cached.tmp" -C "$root" . && mv "$cached.tmp" "$cached" ||
			diag "could not write the cache $cached"
	fi
fi

mount -t proc proc "$root/proc" || bail "cannot mount proc in the chroot"
if [ ! -c "$root/dev/null" ]; then
	# debootstrap in a container may leave /dev empty; /dev is not /etc.
	mount --bind /dev "$root/dev" || bail "cannot provide /dev in the chroot"
fi
cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || :
# No service starts inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 0755 "$root/usr/sbin/policy-rc.d"

# ---------------------------------------------------------------- install
cp "$deb" "$root/tmp/" || bail "cannot copy the .deb"
debname=$(basename "$deb")
if in_root sh -c "apt-get update -q && apt-get install -y -q --no-install-recommends /tmp/$debname" \
	>"$work/apt.log" 2>&1; then
	ok "apt-get install ./$debname with its dependencies"
else
	tail -n 30 "$work/apt.log" | sed 's/^/# /'
	bail "apt-get install ./$debname failed"
fi

# ---------------------------------------------------------------- files
# dpkg-architecture is not in minbase: take the triplet from where libc lives.
multiarch=$(in_root sh -c 'ls -d /lib/*-linux-gnu* | head -n 1' | sed 's|^/lib/||')

expect_file() { # PATH OWNER:GROUP MODE TYPE(f|d|l)
	local p=$1 og=$2 mode=$3 type=$4 got
	case $type in
	f) in_root test -f "$p" -a ! -L "$p" || { not_ok "$p is a regular file" "missing"; return; } ;;
	d) in_root test -d "$p" -a ! -L "$p" || { not_ok "$p is a directory" "missing"; return; } ;;
	esac
	got=$(in_root stat -c '%U:%G %a' "$p")
	if [ "$got" = "$og $mode" ]; then
		ok "$p $og $mode"
	else
		not_ok "$p $og $mode" "got: $got"
	fi
}
expect_file /etc/planetscale/deprovision.conf root:root 600 f
expect_file /etc/planetscale root:root 755 d
expect_file /etc/planetscale/users.d root:root 755 d
expect_file /etc/pam.d/planetscale-deprovision root:root 644 f
expect_file /usr/share/pam-configs/planetscale root:root 644 f
expect_file /etc/shadow-maint/userdel-post.d/50-planetscale root:root 755 f
expect_file "/lib/$multiarch/security/pam_planetscale.so" root:root 644 f
expect_file /usr/sbin/planetscale-deprovision root:root 755 f
expect_file /lib/systemd/system/planetscale-deprovision-retry.service root:root 644 f
expect_file /lib/systemd/system/planetscale-deprovision-retry.timer root:root 644 f
expect_file /lib/systemd/system/planetscale-deprovision-reconcile.service root:root 644 f
expect_file /lib/systemd/system/planetscale-deprovision-reconcile.timer root:root 644 f
expect_file /lib/systemd/system/planetscale-deprovision-sender.socket root:root 644 f
expect_file /lib/systemd/system/planetscale-deprovision-sender.service root:root 644 f
expect_file /var/spool/planetscale-deprovision root:root 700 d
expect_file /usr/share/man/man8/planetscale-deprovision.8.gz root:root 644 f
expect_file /usr/share/man/man5/planetscale-deprovision.conf.5.gz root:root 644 f
expect_file /usr/share/man/man8/pam_planetscale.8.gz root:root 644 f
expect_file /usr/share/doc/libpam-planetscale/copyright root:root 644 f
expect_file /usr/share/doc/libpam-planetscale/examples/users.d-example.conf root:root 644 f
expect_file /usr/share/doc/libpam-planetscale/examples/planetscale-deprovision.rules.yml root:root 644 f

# Every file the package lists: owned by root, nothing writable by others,
# no libtool archive.
bad=$(in_root sh -c 'dpkg -L libpam-planetscale | while read -r p; do
	[ -e "$p" ] || { echo "listed but missing: $p"; continue; }
	s=$(stat -c "%U:%G %a" "$p")
	case $s in root:root\ *) ;; *) echo "$p: $s" ;; esac
	[ -n "$(find "$p" -maxdepth 0 -perm -o+w ! -type l)" ] && echo "$p: writable by others"
	case $p in *.la) echo "libtool archive: $p" ;; esac
done')
if [ -z "$bad" ]; then ok "every packaged path is root:root, none world-writable, no .la"; else not_ok "packaged paths" "$bad"; fi

conffiles=$(in_root dpkg-query -W -f='${Conffiles}\n' libpam-planetscale | awk 'NF { print $1 }' | sort | tr '\n' ' ')
want="/etc/pam.d/planetscale-deprovision /etc/planetscale/deprovision.conf /etc/shadow-maint/userdel-post.d/50-planetscale "
if [ "$conffiles" = "$want" ]; then ok "conffiles: $want"; else not_ok "conffiles" "got: $conffiles" "want: $want"; fi

if in_root test -L /etc/systemd/system/timers.target.wants/planetscale-deprovision-retry.timer; then
	ok "the retry timer is enabled"
else
	not_ok "the retry timer is enabled"
fi
if in_root sh -c 'ls /etc/systemd/system/*.wants/planetscale-deprovision-retry.service' >/dev/null 2>&1; then
	not_ok "the retry service itself is not enabled"
else
	ok "the retry service itself is not enabled (the timer starts it)"
fi
if in_root sh -c 'ls /etc/systemd/system/*.wants/planetscale-deprovision-reconcile.*' >/dev/null 2>&1; then
	not_ok "the reconcile timer is shipped disabled"
else
	ok "the reconcile timer is shipped disabled"
fi
if in_root test -L /etc/systemd/system/sockets.target.wants/planetscale-deprovision-sender.socket; then
	ok "the sender's socket is enabled"
else
	not_ok "the sender's socket is enabled"
fi
if in_root sh -c 'ls /etc/systemd/system/*.wants/planetscale-deprovision-sender.service' >/dev/null 2>&1; then
	not_ok "the sender service itself is not enabled"
else
	ok "the sender service itself is not enabled (its socket starts it)"
fi

# The sandboxing of the services, scored the way their comments say.
for unit in planetscale-deprovision-retry.service planetscale-deprovision-sender.service \
	planetscale-deprovision-reconcile.service; do
	if ! command -v systemd-analyze >/dev/null 2>&1; then
		ok "$unit: exposure at most 2.0 # SKIP systemd-analyze is not installed"
		continue
	fi
	out=$(systemd-analyze security --offline=yes "$root/lib/systemd/system/$unit" 2>&1)
	score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
	if [ -n "$score" ] && awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }'; then
		ok "$unit: exposure $score (at most 2.0)"
	else
		not_ok "$unit: exposure at most 2.0" "score: ${score:-none}" "$(printf '%s\n' "$out" | tail -n 3)"
	fi
done

# ---------------------------------------------------------------- unconfigured
out=$(in_root planetscale-deprovision check 2>&1)
rc=$?
if [ $rc -eq 78 ]; then ok "unconfigured: check exits 78 and says why"; else not_ok "unconfigured: check exits 78" "rc=$rc: $out"; fi
diag "check: $out"
out=$(in_root planetscale-deprovision remove somebody 2>&1)
rc=$?
if [ $rc -eq 0 ]; then ok "unconfigured: remove of any login does nothing, exit 0"; else not_ok "unconfigured: remove exits 0" "rc=$rc: $out"; fi
# The timer runs retry every minute on every machine, configured or not.
out=$(in_root planetscale-deprovision retry 2>&1)
rc=$?
if [ $rc -eq 0 ]; then
	ok "unconfigured: retry with an empty queue exits 0 (the timer does not fail)"
else
	not_ok "unconfigured: retry with an empty queue exits 0 (the timer does not fail)" "rc=$rc: $out"
fi
# The shipped configuration names /etc/planetscale/users.d as the usual
# include_dir: uncommenting that line must just work.
in_root sed -i 's|^#include_dir = |include_dir = |' /etc/planetscale/deprovision.conf
out=$(in_root planetscale-deprovision lookup somebody 2>&1)
rc=$?
if [ $rc -eq 0 ] && in_root grep -q '^include_dir = "/etc/planetscale/users.d";' /etc/planetscale/deprovision.conf; then
	ok "unconfigured: uncommenting include_dir (the packaged users.d) loads"
else
	not_ok "unconfigured: uncommenting include_dir (the packaged users.d) loads" "rc=$rc: $out"
fi
# A package's maintainer script removes its system user: userdel says nothing.
in_root useradd -r svcfoo
out=$(in_root userdel svcfoo 2>&1)
rc=$?
if [ $rc -eq 0 ] && [ -z "$out" ]; then
	ok "unconfigured: useradd -r svcfoo; userdel svcfoo prints nothing"
else
	not_ok "unconfigured: useradd -r svcfoo; userdel svcfoo prints nothing" "rc=$rc: $out"
fi

if in_root grep -q pam_planetscale /etc/pam.d/common-account; then
	not_ok "installation does not enable the pam-auth-update profile" "$(in_root cat /etc/pam.d/common-account)"
else
	ok "installation does not enable the pam-auth-update profile (Default: no)"
fi

# ---------------------------------------------------------------- simulator
ca=$work/ca
sh "$top_srcdir/tests/gen_ca.sh" "$ca" || bail "tests/gen_ca.sh failed"
token_id=ps_install_tid
token=ps_install_SECRET_token_0123
cat >"$work/members.json" <<'EOF'
{"acme": [
  {"id": "u0expired", "email": "psexp@example.com", "name": "Expired", "role": "member"},
  {"id": "u0valid", "email": "psvalid@example.com", "name": "Valid", "role": "member"},
  {"id": "u0chage", "email": "pschage@example.com", "name": "Chage", "role": "member"},
  {"id": "u0userdel", "email": "psdel@example.com", "name": "Userdel", "role": "member"},
  {"id": "u0queued", "email": "psq@example.com", "name": "Queued", "role": "member"},
  {"id": "u0purge", "email": "pspurge@example.com", "name": "Purge", "role": "member"},
  {"id": "u0sender", "email": "pssender@example.com", "name": "Sender", "role": "member"},
  {"id": "adm0", "email": "admin@example.com", "name": "Admin", "role": "admin"}
]}
EOF
simlog=$work/requests.jsonl
python3 "$top_srcdir/tests/simulator.py" --host 127.0.0.1 --port 0 \
	--cert "$ca/server.pem" --key "$ca/server.key" --port-file "$work/port" \
	--members "$work/members.json" --token "$token_id:$token" --log "$simlog" \
	</dev/null >/dev/null 2>"$work/simulator.err" &
sim_pid=$!
for _ in $(seq 150); do
	[ -s "$work/port" ] && break
	kill -0 "$sim_pid" 2>/dev/null || break
	sleep 0.1
done
[ -s "$work/port" ] || bail "the simulator did not start: $(cat "$work/simulator.err")"
port=$(cat "$work/port")
ok "API simulator listening on https://127.0.0.1:$port"

# number of DELETE requests for user ID $1 that the simulator answered $2
deletes() {
	python3 - "$simlog" "$1" "${2:-}" <<'EOF'
import json, sys
log, uid, status = sys.argv[1], sys.argv[2], sys.argv[3]
n = 0
try:
    with open(log, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("method") == "DELETE" and r.get("path", "").endswith("/members/" + uid) \
                    and (not status or str(r.get("status")) == status):
                n += 1
except FileNotFoundError:
    pass
print(n)
EOF
}

write_config() { # API_URL [MORE_SETTINGS]
	install -m 0644 "$ca/ca.pem" "$root/etc/planetscale/ca.pem"
	cat >"$root/etc/planetscale/deprovision.conf" <<EOF
organization = "acme";
api = {
  url = "$1";
  token_id = "$token_id";
  token = "$token";
  ca_file = "/etc/planetscale/ca.pem";
  timeout = 5;
  connect_timeout = 2;
  retries = 1;
};
users = (
  { login = "psexp"; id = "u0expired"; },
  { login = "psvalid"; id = "u0valid"; },
  { login = "pschage"; id = "u0chage"; },
  { login = "psdel"; id = "u0userdel"; },
  { login = "psq"; id = "u0queued"; },
  { login = "pspurge"; id = "u0purge"; },
  { login = "pssender"; id = "u0sender"; }
);
include_dir = "/etc/planetscale/users.d";
${2:-}
EOF
	chmod 0600 "$root/etc/planetscale/deprovision.conf"
}
# the administrator's own user list, beside the package's configuration
echo 'users = ( { login = "psteam"; id = "u0team"; } );' >"$root/etc/planetscale/users.d/team.conf"
chmod 0600 "$root/etc/planetscale/users.d/team.conf"
write_config "https://127.0.0.1:$port/v1"
check "configured: planetscale-deprovision check" in_root planetscale-deprovision check
out=$(in_root planetscale-deprovision lookup psteam 2>&1)
case $out in
*u0team*) ok "configured: a users.d file of the administrator is read" ;;
*) not_ok "configured: a users.d file of the administrator is read" "$out" ;;
esac

# ---------------------------------------------------------------- pam-auth-update
check "pam-auth-update --enable planetscale" in_root pam-auth-update --enable planetscale
stack=$(in_root sed -n 's/^account[ \t]\+//p' /etc/pam.d/common-account)
first=$(printf '%s\n' "$stack" | head -n 1)
case $first in
*'[default=ignore]'*pam_planetscale.so*only_expired*) ok "common-account: pam_planetscale only_expired comes first" ;;
*) not_ok "common-account: pam_planetscale only_expired comes first" "$stack" ;;
esac
if printf '%s\n' "$stack" | sed -n 2p | grep -q 'pam_unix.so' &&
	printf '%s\n' "$stack" | grep -q 'requisite.*pam_deny.so'; then
	ok "common-account: pam_unix and the pam_deny fallback follow unchanged"
else
	not_ok "common-account: pam_unix and the pam_deny fallback follow" "$stack"
fi

# ---------------------------------------------------------------- expired accounts
acct_mgmt() { in_root pamtester login "$1" acct_mgmt >/dev/null 2>&1; }

in_root useradd -M -e 2020-01-01 psexp
if acct_mgmt psexp; then
	not_ok "useradd -e 2020-01-01: pam_unix still refuses the expired account"
else
	ok "useradd -e 2020-01-01: pam_unix still refuses the expired account"
fi
c=$(deletes u0expired 204)
if [ "$c" = 1 ]; then ok "useradd -e: its acct_mgmt sent one DELETE (204)"; else not_ok "useradd -e: one DELETE" "DELETEs answered 204: $c" "$(tail -n 3 "$simlog" 2>/dev/null)"; fi

in_root useradd -M psvalid
check "valid account: pamtester login acct_mgmt still succeeds" acct_mgmt psvalid
c=$(deletes u0valid)
if [ "$c" = 0 ]; then ok "valid account: not removed"; else not_ok "valid account: not removed" "DELETEs: $c"; fi

in_root useradd -M pschage
check "chage -E: account still valid before" acct_mgmt pschage
in_root chage -E 2021-06-01 pschage
if acct_mgmt pschage; then
	not_ok "chage -E 2021-06-01: pam_unix refuses the account"
else
	ok "chage -E 2021-06-01: pam_unix refuses the account"
fi
c=$(deletes u0chage 204)
if [ "$c" = 1 ]; then ok "chage -E: its acct_mgmt sent one DELETE (204)"; else not_ok "chage -E: one DELETE" "DELETEs answered 204: $c"; fi

# The dedicated service removes a valid account on request.
in_root useradd -M psq
check "pamtester planetscale-deprovision psq acct_mgmt succeeds" \
	in_root pamtester planetscale-deprovision psq acct_mgmt
c=$(deletes u0queued 204)
if [ "$c" = 1 ]; then ok "dedicated service: one DELETE (204)"; else not_ok "dedicated service: one DELETE" "DELETEs answered 204: $c"; fi
in_root userdel psq >/dev/null 2>&1   # 404 from now on: already absent

check "pam-auth-update --disable planetscale" in_root pam-auth-update --disable planetscale
if in_root grep -rq pam_planetscale /etc/pam.d/common-account /etc/pam.d/common-auth \
	/etc/pam.d/common-session /etc/pam.d/common-password; then
	not_ok "pam-auth-update --disable: no pam_planetscale line left in common-*"
else
	ok "pam-auth-update --disable: no pam_planetscale line left in common-*"
fi

# ---------------------------------------------------------------- userdel hook
in_root useradd -M psdel
if out=$(in_root userdel psdel 2>&1); then ok "userdel of a mapped user succeeds"; else not_ok "userdel of a mapped user succeeds" "$out"; fi
c=$(deletes u0userdel)
if [ "$c" = 1 ]; then ok "userdel hook: exactly one DELETE"; else not_ok "userdel hook: exactly one DELETE" "DELETEs: $c"; fi
c=$(deletes u0userdel 204)
if [ "$c" = 1 ]; then ok "userdel hook: the DELETE was answered 204"; else not_ok "userdel hook: the DELETE was answered 204" "answered 204: $c"; fi

# API unreachable: userdel still succeeds, the request waits in the queue,
# and retry sends it.
closed_port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
write_config "https://127.0.0.1:$closed_port/v1"
in_root useradd -M pspurge
if out=$(in_root userdel pspurge 2>&1); then
	ok "userdel with the API unreachable still exits 0"
else
	not_ok "userdel with the API unreachable still exits 0" "$out"
fi
diag "userdel said: $out"
pending=$(in_root sh -c 'ls /var/spool/planetscale-deprovision/*.json 2>/dev/null | wc -l')
if [ "$pending" = 1 ]; then ok "the removal is queued (1 entry)"; else not_ok "the removal is queued" "entries: $pending"; fi
write_config "https://127.0.0.1:$port/v1"
check "planetscale-deprovision retry" in_root planetscale-deprovision retry
pending=$(in_root sh -c 'ls /var/spool/planetscale-deprovision/*.json 2>/dev/null | wc -l')
if [ "$pending" = 0 ] && [ "$(deletes u0purge 204)" = 1 ]; then
	ok "retry sent the queued DELETE and emptied the queue"
else
	not_ok "retry sent the queued DELETE and emptied the queue" "pending: $pending"
fi

# ---------------------------------------------------------------- sender
# serve on a socket of its own (no systemd in the chroot); remove, configured
# with the same sender.socket, hands it the removal; then serve exits on its
# idle timeout and removes its socket.
sock=/run/ps-install-test.sock
write_config "https://127.0.0.1:$port/v1" "sender = { socket = \"$sock\"; idle_timeout = 4; };"
in_root planetscale-deprovision --verbose serve --socket "$sock" >"$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 50); do
	in_root test -S "$sock" && break
	kill -0 "$serve_pid" 2>/dev/null || break
	sleep 0.1
done
got=$(in_root stat -c '%U:%G %a %F' "$sock" 2>&1)
if [ "$got" = "root:root 600 socket" ]; then
	ok "serve --socket $sock listens on a root:root 0600 socket"
else
	not_ok "serve --socket $sock listens on a root:root 0600 socket" "got: $got" "$(cat "$work/serve.log")"
fi
out=$(in_root planetscale-deprovision --verbose remove pssender 2>&1)
rc=$?
case $rc:$out in
0:*"sender $sock: removed"*) ok "remove handed the removal to the sender, which removed it (exit 0)" ;;
*) not_ok "remove handed the removal to the sender (exit 0)" "rc=$rc: $out" ;;
esac
c=$(deletes u0sender 204)
if [ "$c" = 1 ]; then ok "sender: one DELETE (204)"; else not_ok "sender: one DELETE (204)" "answered 204: $c"; fi
pending=$(in_root sh -c 'ls /var/spool/planetscale-deprovision/*.json 2>/dev/null | wc -l')
if [ "$pending" = 0 ]; then ok "sender: the entry left the queue"; else not_ok "sender: the entry left the queue" "entries: $pending"; fi
for _ in $(seq 100); do
	kill -0 "$serve_pid" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$serve_pid" 2>/dev/null; then
	kill "$serve_pid"
	wait "$serve_pid" 2>/dev/null
	not_ok "serve exits 0 on its idle timeout" "still running 10 s after the removal" "$(cat "$work/serve.log")"
else
	wait "$serve_pid"
	rc=$?
	if [ $rc -eq 0 ] && grep -q 'idle for 4 s, exiting' "$work/serve.log" && ! in_root test -e "$sock"; then
		ok "serve exits 0 on its idle timeout and removes its socket"
	else
		not_ok "serve exits 0 on its idle timeout and removes its socket" "rc=$rc" "$(cat "$work/serve.log")"
	fi
fi
serve_pid=
write_config "https://127.0.0.1:$port/v1"

# Leave one entry for purge to report.
write_config "https://127.0.0.1:$closed_port/v1"
in_root planetscale-deprovision remove psvalid >/dev/null 2>&1
rc=$?
if [ $rc -eq 75 ]; then ok "remove with the API unreachable exits 75 (queued)"; else not_ok "remove exits 75" "rc=$rc"; fi

# The configuration breaks: queue still lists the default spool, says why,
# exits 78.
cp -p "$root/etc/planetscale/deprovision.conf" "$work/good.conf"
echo 'api = {' >>"$root/etc/planetscale/deprovision.conf"
out=$(in_root planetscale-deprovision queue 2>&1)
rc=$?
case $rc:$out in
78:*"does not load"*"pending "*" psvalid "*"1 pending, 0 held, 0 dead"*) ok "broken configuration: queue lists the pending entry and exits 78" ;;
*) not_ok "broken configuration: queue lists the pending entry and exits 78" "rc=$rc: $out" ;;
esac
cp -p "$work/good.conf" "$root/etc/planetscale/deprovision.conf"

# ---------------------------------------------------------------- remove, purge
if in_root apt-get remove -y -q libpam-planetscale >"$work/remove.log" 2>&1; then
	ok "apt-get remove"
else
	not_ok "apt-get remove" "$(tail -n 20 "$work/remove.log")"
fi
if grep -q 'PlanetScale removals waiting in /var/spool/planetscale-deprovision: 1 pending, 0 held, 0 dead, 0 unresolved' "$work/remove.log" &&
	grep -q 'will not be sent while the package is removed' "$work/remove.log"; then
	ok "apt-get remove says that 1 removal is pending and will not be sent"
else
	not_ok "apt-get remove says that 1 removal is pending and will not be sent" "$(cat "$work/remove.log")"
fi
if in_root test -x /etc/shadow-maint/userdel-post.d/50-planetscale; then
	ok "after remove: the hook (a conffile) stays"
else
	not_ok "after remove: the hook (a conffile) stays"
fi
in_root useradd -M psafter
if out=$(in_root userdel psafter 2>&1) && [ -z "$out" ]; then
	ok "after remove: userdel succeeds quietly"
else
	not_ok "after remove: userdel succeeds quietly" "$out"
fi

out=$(in_root dpkg --purge libpam-planetscale 2>&1)
rc=$?
if [ $rc -eq 0 ]; then ok "dpkg --purge"; else not_ok "dpkg --purge" "$out"; fi
case $out in
*"1 pending, 0 held, 0 dead, 0 unresolved"*"deleted unsent"*) ok "purge says that the spool still held an entry" ;;
*) not_ok "purge says that the spool still held an entry" "$out" ;;
esac
case $out in
*"kept what you added under /etc/planetscale"*"/etc/planetscale/ca.pem"*"/etc/planetscale/users.d/team.conf"*)
	ok "purge says which files of the administrator it kept" ;;
*) not_ok "purge says which files of the administrator it kept" "$out" ;;
esac
kept=$(in_root find /etc/planetscale -mindepth 1 ! -type d 2>&1 | sort | tr '\n' ' ')
if [ "$kept" = "/etc/planetscale/ca.pem /etc/planetscale/users.d/team.conf " ]; then
	ok "purge keeps the administrator's own files under /etc/planetscale, and only those"
else
	not_ok "purge keeps the administrator's own files under /etc/planetscale, and only those" "left: $kept"
fi
left=$(in_root sh -c '
	for p in /etc/planetscale/deprovision.conf /var/spool/planetscale-deprovision \
		/etc/shadow-maint/userdel-post.d/50-planetscale /etc/pam.d/planetscale-deprovision \
		/usr/share/pam-configs/planetscale /usr/sbin/planetscale-deprovision \
		/lib/*/security/pam_planetscale.so /lib/systemd/system/planetscale-deprovision-retry.service \
		/lib/systemd/system/planetscale-deprovision-retry.timer \
		/lib/systemd/system/planetscale-deprovision-reconcile.service \
		/lib/systemd/system/planetscale-deprovision-reconcile.timer \
		/lib/systemd/system/planetscale-deprovision-sender.socket \
		/lib/systemd/system/planetscale-deprovision-sender.service \
		/etc/systemd/system/timers.target.wants/planetscale-deprovision-retry.timer \
		/etc/systemd/system/sockets.target.wants/planetscale-deprovision-sender.socket \
		/usr/share/doc/libpam-planetscale /usr/share/man/man8/planetscale-deprovision.8.gz \
		/usr/share/man/man5/planetscale-deprovision.conf.5.gz /usr/share/man/man8/pam_planetscale.8.gz; do
		[ -e "$p" ] || [ -L "$p" ] && echo "$p"
	done
	grep -rl planetscale /etc/pam.d /var/lib/pam /var/lib/systemd/deb-systemd-helper-enabled 2>/dev/null
	dpkg -s libpam-planetscale >/dev/null 2>&1 && echo "dpkg still knows the package"
	true')
if [ -z "$left" ]; then ok "purge leaves nothing of ours"; else not_ok "purge leaves nothing of ours" "$left"; fi

echo "1..$n"
[ "$failed" -eq 0 ]
