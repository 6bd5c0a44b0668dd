"""The shipped account-deletion hooks with the real tools: Debian's
`useradd`/`userdel` (shadow) running etc/shadow-maint/userdel-post.d/
50-planetscale, and `adduser`/`deluser` running the example
etc/deluser.local.example as /usr/local/sbin/deluser.local.

Root only. Each case runs in its own private mount namespace
(`unshare -m`) where:
  /etc                      is a bind-mounted copy of the host's /etc, with the
                            hook and /etc/planetscale/deprovision.conf added;
  /usr/sbin/planetscale-deprovision is the built command (bind mount, or an
                            overlay of /usr/sbin when the host has no such file);
  /usr/bin/logger           is a stand-in that appends to a file (there is no
                            syslog daemon in a test; the hook logs with logger);
  /home, /var/mail, /var/log are empty tmpfs (useradd/userdel write there).
The simulator runs in the parent namespace on 127.0.0.1 (mount namespaces
share the network). Nothing on the host is changed.
"""

import os
import pwd
import shutil
import subprocess
import textwrap
import unittest
from urllib.parse import parse_qs, urlsplit

from common import SimTestCase, pslib

DEAD_URL = "https://127.0.0.1:1/v1"
HOOK = os.path.join(pslib.TOP_SRCDIR, "etc", "shadow-maint", "userdel-post.d", "50-planetscale")
DELUSER_LOCAL = os.path.join(pslib.TOP_SRCDIR, "etc", "deluser.local.example")
LOGINS = ("psit_alice", "psit_bob", "psit_nobody", "psit_dave", "svcfoo")
LOOP = 100                                   # userdels in a row against a hanging API
LOOP_LOGINS = tuple("psit_h%02d" % i for i in range(LOOP))
SHIPPED_CONFIG = os.path.join(pslib.TOP_SRCDIR, "etc", "deprovision.conf")
ALICE_PATH = "/v1/organizations/acme/members/d4xkq1abc"


def why_skip():
    if os.geteuid() != 0:
        return "needs root (useradd/userdel in a private mount namespace)"
    for tool in ("unshare", "useradd", "userdel", "mount"):
        if not shutil.which(tool):
            return "%s is not installed" % tool
    p = subprocess.run(["unshare", "-m", "sh", "-c", "mount --make-rprivate / && "
                        "mount -t tmpfs pstest /mnt"], capture_output=True)
    if p.returncode != 0:
        return "unshare -m / mount do not work here: %s" % p.stderr.decode(errors="replace")
    for login in LOGINS + LOOP_LOGINS:
        try:
            pwd.getpwnam(login)
            return "the test login %s exists on this host" % login
        except KeyError:
            pass
    if not os.path.exists(HOOK):
        return "hook not found: " + HOOK
    return None


FAKE_LOGGER = r"""#!/bin/sh
# stand-in for logger(1): appends "PRIORITY TAG: MESSAGE" to a file
tag=logger prio=user.notice
while [ $# -gt 0 ]; do
	case $1 in
	-t) tag=$2; shift 2 ;;
	-p) prio=$2; shift 2 ;;
	--) shift; break ;;
	-*) shift ;;
	*) break ;;
	esac
done
printf '%s %s: %s\n' "$prio" "$tag" "$*" >> '@LOGFILE@'
"""

PRELUDE = r"""
set -u
fail() { echo "@@setup-failed $*"; exit 90; }
mount --make-rprivate / || fail make-rprivate
mount --bind "$T/etc" /etc || fail bind-etc
mount -t tmpfs -o mode=0755 pshome /home || fail tmpfs-home
for d in /var/mail /var/log; do
	if [ -d "$d" ] && [ ! -L "$d" ]; then
		mount -t tmpfs -o mode=2775 psvar "$d" || fail "tmpfs $d"
	fi
done

# install_file SRC DST: make DST show SRC inside this namespace only
install_file() {
	if [ -e "$2" ]; then
		mount --bind "$1" "$2" || fail "bind $2"
		return
	fi
	d=$(dirname "$2")
	x=$(mktemp -d "$T/ovl.XXXXXX")
	cp -p "$1" "$x/$(basename "$2")"
	if ! mount -t overlay psovl -o "lowerdir=$x:$d" "$d" 2>/dev/null; then
		c=$(mktemp -d "$T/copy.XXXXXX")
		cp -a "$d/." "$c/" && cp -p "$1" "$c/$(basename "$2")" &&
			mount --bind "$c" "$d" || fail "install $2"
	fi
}
# hide_file DST: DST does not exist inside this namespace
hide_file() {
	[ -e "$1" ] || return 0
	d=$(dirname "$1")
	c=$(mktemp -d "$T/copy.XXXXXX")
	cp -a "$d/." "$c/" && rm -f "$c/$(basename "$1")" && mount --bind "$c" "$d" ||
		fail "hide $1"
}

install_file "$T/logger" /usr/bin/logger
if [ "$WITH_CMD" = 1 ]; then
	install_file "$CMD" /usr/sbin/planetscale-deprovision
else
	hide_file /usr/sbin/planetscale-deprovision
fi
if [ "$WITH_DELUSER_LOCAL" = 1 ]; then
	install_file "$T/deluser.local" /usr/local/sbin/deluser.local
else
	hide_file /usr/local/sbin/deluser.local
fi
if [ -n "$SHIM" ]; then
	LD_PRELOAD=$SHIM
	PS_SYSLOG_FILE=$SYSLOG
	export LD_PRELOAD PS_SYSLOG_FILE
fi

# run NAME CMD...: runs CMD, output in $T/out.NAME and $T/err.NAME
run() {
	n=$1
	shift
	"$@" >"$T/out.$n" 2>"$T/err.$n" </dev/null
	echo "@@rc $n $?"
}
"""


@unittest.skipIf(why_skip(), why_skip())
class HookTestCase(SimTestCase):

    def setUp(self):
        super().setUp()
        self.ns = os.path.join(self.dir, "ns")
        os.mkdir(self.ns, 0o700)
        self.etc = os.path.join(self.ns, "etc")
        subprocess.run(["cp", "-a", "/etc", self.etc], check=True)
        self.logger_file = os.path.join(self.ns, "logger.log")
        with open(os.path.join(self.ns, "logger"), "w") as f:
            f.write(FAKE_LOGGER.replace("@LOGFILE@", self.logger_file))
        os.chmod(os.path.join(self.ns, "logger"), 0o755)
        shutil.copy(DELUSER_LOCAL, os.path.join(self.ns, "deluser.local"))
        os.chmod(os.path.join(self.ns, "deluser.local"), 0o755)
        self.qdir = os.path.join(self.dir, "queue")
        self.udir = os.path.join(self.dir, "unresolved")

    # ---- fixtures in the copied /etc
    def install_hook(self):
        d = os.path.join(self.etc, "shadow-maint", "userdel-post.d")
        os.makedirs(d, 0o755, exist_ok=True)
        os.chmod(os.path.join(self.etc, "shadow-maint"), 0o755)
        os.chmod(d, 0o755)
        dst = os.path.join(d, "50-planetscale")
        shutil.copy(HOOK, dst)
        os.chmod(dst, 0o755)

    def write_etc_config(self, mode=0o600, **kw):
        d = os.path.join(self.etc, "planetscale")
        os.makedirs(d, 0o755, exist_ok=True)
        os.chmod(d, 0o755)
        kw.setdefault("sim", self.sim)
        kw.setdefault("users", [
            {"login": "psit_alice", "id": "d4xkq1abc"},
            {"login": "psit_bob", "id": "x9z8", "organization": "acme-eu"},
            {"login": "psit_dave", "id": "c4rol"}])
        kw.setdefault("defaults", {"delete_passwords": True, "delete_service_tokens": False})
        kw.setdefault("queue_dir", self.qdir)
        path = pslib.write_config(d, **kw)
        os.chmod(path, mode)
        return path

    # ---- running a scenario
    def run_ns(self, body, with_cmd=True, with_deluser_local=False, timeout=120):
        """Runs PRELUDE + body under `unshare -m bash`; returns {name: rc}
        for each `run NAME ...` of the body, and keeps out/err texts."""
        script = os.path.join(self.ns, "script.sh")
        with open(script, "w") as f:
            f.write(PRELUDE + "\n" + textwrap.dedent(body))
        shim = os.environ.get("PS_SYSLOG_SHIM", "")
        env = dict(os.environ)
        env.update({"T": self.ns, "CMD": pslib.command_path(),
                    "WITH_CMD": "1" if with_cmd else "0",
                    "WITH_DELUSER_LOCAL": "1" if with_deluser_local else "0",
                    "SHIM": shim if shim and os.path.exists(shim) else "",
                    "SYSLOG": self.syslog})
        # logins recorded under a broken config: kept in this test's dir
        env.setdefault(pslib.UNRESOLVED_ENV, self.udir)
        if with_cmd and not os.access(pslib.command_path(), os.X_OK):
            self.skipTest("command not built: " + pslib.command_path())
        p = subprocess.run(["unshare", "-m", "bash", script], capture_output=True, text=True,
                           env=env, timeout=timeout, errors="replace")
        self.outputs.append(p.stdout + p.stderr)
        self.assertNotIn("@@setup-failed", p.stdout, p.stdout + p.stderr)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        rcs = {}
        for line in p.stdout.splitlines():
            if line.startswith("@@rc "):
                _, name, rc = line.split()
                rcs[name] = int(rc)
        self.texts = {}
        for name in rcs:
            for kind in ("out", "err"):
                try:
                    with open(os.path.join(self.ns, "%s.%s" % (kind, name)),
                              encoding="utf-8", errors="replace") as f:
                        self.texts[(kind, name)] = f.read()
                except FileNotFoundError:
                    self.texts[(kind, name)] = ""
                self.outputs.append(self.texts[(kind, name)])
        return rcs

    def err(self, name):
        return self.texts.get(("err", name), "")

    def hook_stderr(self, name):
        """stderr lines of NAME that are not userdel's/deluser's own."""
        return [l for l in self.err(name).splitlines()
                if not l.startswith(("userdel:", "useradd:", "info:", "warn:"))]

    def logger_lines(self):
        try:
            with open(self.logger_file, encoding="utf-8", errors="replace") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def have_shim(self):
        shim = os.environ.get("PS_SYSLOG_SHIM", "")
        return bool(shim and os.path.exists(shim))

    def queue_files(self):
        if not os.path.isdir(self.qdir):
            return []
        return sorted(n for n in os.listdir(self.qdir) if n.endswith(".json"))

    def assert_alice_deleted_once(self, flags=("true", "false")):
        dels = self.deletes()
        self.assertEqual(len(dels), 1, "DELETEs: %r" % [(d["target"], d["status"]) for d in dels])
        u = urlsplit(dels[0]["target"])
        self.assertEqual(u.path, ALICE_PATH)
        self.assertEqual(parse_qs(u.query), {"delete_passwords": [flags[0]],
                                             "delete_service_tokens": [flags[1]]})
        self.assertEqual(dels[0]["status"], 204)
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))


USERADD_USERDEL = """
run useradd useradd -m psit_alice
run userdel userdel -r psit_alice
run gone sh -c '! getent passwd psit_alice'
"""


class UserdelHookTest(HookTestCase):

    def test_mapped_user_one_delete(self):
        self.install_hook()
        self.write_etc_config()
        rcs = self.run_ns(USERADD_USERDEL)
        self.assertEqual(rcs, {"useradd": 0, "userdel": 0, "gone": 0}, self.texts)
        self.assert_alice_deleted_once()
        self.assertEqual(self.queue_files(), [])
        self.assertEqual(self.logger_lines(), [], "nothing to complain about")
        if self.have_shim():
            lines = self.audit("removed")
            self.assertEqual(len(lines), 1, self.syslog_lines())
            self.assertIn("login=psit_alice", lines[0])
            self.assertIn("http_status=204", lines[0])

    def test_unmapped_user_no_delete(self):
        self.install_hook()
        self.write_etc_config()
        rcs = self.run_ns("""
            run useradd useradd -m psit_nobody
            run userdel userdel -r psit_nobody
        """)
        self.assertEqual(rcs, {"useradd": 0, "userdel": 0}, self.texts)
        self.assertEqual(self.deletes(), [])
        self.assertEqual(self.queue_files(), [])
        self.assertEqual(self.hook_stderr("userdel"), [])
        self.assertEqual(self.texts[("out", "userdel")], "", "nothing to say")
        if self.have_shim():
            lines = self.audit("unmapped")
            self.assertEqual(len(lines), 1, self.syslog_lines())
            self.assertTrue(lines[0].startswith("authpriv.debug"), lines[0])

    def test_system_account_of_a_package_is_quiet(self):
        """useradd -r svcfoo; userdel svcfoo, as other packages' maintainer
        scripts do, on a fresh installation (the shipped configuration,
        everything commented out) and on a configured one: userdel prints
        nothing at all."""
        self.install_hook()
        for shipped in (True, False):
            if shipped:
                d = os.path.join(self.etc, "planetscale")
                os.makedirs(d, 0o755, exist_ok=True)
                shutil.copy(SHIPPED_CONFIG, os.path.join(d, "deprovision.conf"))
                os.chmod(os.path.join(d, "deprovision.conf"), 0o600)
            else:
                self.write_etc_config()
            rcs = self.run_ns("""
                run useradd useradd -r svcfoo
                run userdel userdel svcfoo
            """)
            self.assertEqual(rcs, {"useradd": 0, "userdel": 0}, self.texts)
            self.assertEqual(self.texts[("out", "userdel")], "", "shipped=%s" % shipped)
            self.assertEqual(self.texts[("err", "userdel")], "", "shipped=%s" % shipped)
            self.assertEqual(self.logger_lines(), [])
        self.assertEqual(self.sim.requests(), [])
        self.assertEqual(self.queue_files(), [])

    def test_hanging_api_loop_of_userdels_is_bounded_and_all_queued(self):
        """100 userdels in a row while every API request hangs: the first
        hook waits hook_deadline (default 5 s), the ones after it see the
        spool's note and do not wait; every removal is in the spool."""
        users = [{"login": l, "id": "h%02dx" % i} for i, l in enumerate(LOOP_LOGINS)]
        self.install_hook()
        self.write_etc_config(users=users, timeout=30, retries=3)
        self.sim.set_faults(["delay:120;count=-1"])
        rcs = self.run_ns("""
            for l in %s; do useradd -M "$l" || fail "useradd $l"; done
            start=$(date +%%s.%%N)
            for l in %s; do run "del_$l" userdel "$l"; done
            end=$(date +%%s.%%N)
            echo "$start $end" > "$T/elapsed"
        """ % (" ".join(LOOP_LOGINS), " ".join(LOOP_LOGINS)), timeout=900)
        with open(os.path.join(self.ns, "elapsed")) as f:
            start, end = (float(x) for x in f.read().split())
        took = end - start
        print("%d userdels against a hanging API: %.1f s" % (LOOP, took))
        self.assertEqual(rcs, {"del_" + l: 0 for l in LOOP_LOGINS}, self.texts)
        # without the note this takes LOOP * 5 s; the note lasts 60 s, so a
        # slow machine may wait once more per minute
        self.assertLess(took, 60, "a hanging API held up the loop of userdels")
        waited = [l for l in LOOP_LOGINS if "not sent" not in self.err("del_" + l)]
        self.assertLessEqual(len(waited), 1 + int(took // 60), waited)
        self.assertEqual(waited[0], LOOP_LOGINS[0])
        for l in LOOP_LOGINS:
            self.assertIn("%s: NOT removed yet: queued for retry" % l, self.err("del_" + l))
        self.assertEqual(self.queue_files(),
                         sorted(pslib.entry_name(u["login"], "acme", u["id"]) for u in users),
                         "every removal is in the spool")
        self.assertTrue(all(l.startswith("authpriv.warning") for l in self.logger_lines()))
        self.assertEqual(len(self.logger_lines()), LOOP, self.logger_lines()[:3])

    def test_simulator_down_queued_and_userdel_succeeds(self):
        self.install_hook()
        self.write_etc_config(url=DEAD_URL, retries=1, connect_timeout=1)
        rcs = self.run_ns(USERADD_USERDEL)
        self.assertEqual(rcs, {"useradd": 0, "userdel": 0, "gone": 0}, self.texts)
        self.assertEqual(self.deletes(), [])
        self.assertEqual(self.queue_files(), [pslib.entry_name("psit_alice", "acme", "d4xkq1abc")])
        self.assertIn("queued", self.err("userdel"))
        warn = [l for l in self.logger_lines() if "queued" in l]
        self.assertEqual(len(warn), 1, self.logger_lines())
        self.assertTrue(warn[0].startswith("authpriv.warning"), warn[0])
        # and the timer's retry sends it once the API is back
        cfg = pslib.write_config(self.dir, sim=self.sim, name="up.conf", queue_dir=self.qdir,
                                 users=[{"login": "psit_alice", "id": "d4xkq1abc"}],
                                 defaults={"delete_passwords": True,
                                           "delete_service_tokens": False})
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assert_alice_deleted_once()
        self.assertEqual(self.queue_files(), [])

    def test_missing_config_userdel_succeeds_one_log_line(self):
        self.install_hook()
        rcs = self.run_ns(USERADD_USERDEL)
        self.assertEqual(rcs, {"useradd": 0, "userdel": 0, "gone": 0}, self.texts)
        self.assertEqual(self.deletes(), [])
        lines = self.logger_lines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("deprovision.conf", lines[0])
        self.assertIn("psit_alice", lines[0])
        self.assertTrue(lines[0].startswith("authpriv."), lines[0])

    def test_config_error_recorded_and_retry_removes_later(self):
        # a config error (group-readable secret: exit 78) must not fail
        # userdel, and must not lose the removal: the login is recorded
        self.install_hook()
        self.write_etc_config(mode=0o644)
        rcs = self.run_ns(USERADD_USERDEL)
        self.assertEqual(rcs, {"useradd": 0, "userdel": 0, "gone": 0}, self.texts)
        self.assertEqual(self.deletes(), [])
        errs = [l for l in self.logger_lines() if l.startswith("authpriv.err")]
        self.assertEqual(len(errs), 1, self.logger_lines())
        self.assertIn("psit_alice: configuration problem", errs[0])
        self.assertIn("recorded", errs[0])
        self.assertIn("chmod", self.err("userdel"), "the fix is named")
        recs = [n for n in os.listdir(self.udir) if n.endswith(".json")]
        self.assertEqual(len(recs), 1)
        with open(os.path.join(self.udir, recs[0])) as f:
            self.assertIn('"config":"/etc/planetscale/deprovision.conf"', f.read())
        # the administrator fixes the mode; the timer's retry finishes the job
        self.write_etc_config(mode=0o600)
        rcs = self.run_ns("run retry /usr/sbin/planetscale-deprovision retry\n")
        self.assertEqual(rcs, {"retry": 0}, self.texts)
        self.assert_alice_deleted_once()
        self.assertEqual([n for n in os.listdir(self.udir) if n.endswith(".json")], [])

    def test_command_failure_userdel_still_succeeds(self):
        # a config error and nowhere to record the login (exit 1): userdel
        # still succeeds and the log says how to finish by hand
        self.install_hook()
        self.write_etc_config(mode=0o644)
        os.mkdir(self.udir, 0o755)
        os.chmod(self.udir, 0o755)
        rcs = self.run_ns(USERADD_USERDEL)
        self.assertEqual(rcs, {"useradd": 0, "userdel": 0, "gone": 0}, self.texts)
        self.assertEqual(self.deletes(), [])
        errs = [l for l in self.logger_lines() if l.startswith("authpriv.err")]
        self.assertEqual(len(errs), 1, self.logger_lines())
        self.assertIn("exit status 1", errs[0])
        self.assertIn("planetscale-deprovision remove psit_alice", errs[0],
                      "says how to finish by hand")
        self.assertIn("NOT recorded", self.err("userdel"))

    def test_command_absent_userdel_quiet(self):
        # package removed, conffile (the hook) kept
        self.install_hook()
        self.write_etc_config()
        rcs = self.run_ns(USERADD_USERDEL, with_cmd=False)
        self.assertEqual(rcs, {"useradd": 0, "userdel": 0, "gone": 0}, self.texts)
        self.assertEqual(self.deletes(), [])
        self.assertEqual(self.hook_stderr("userdel"), [], "quiet")
        self.assertEqual(self.logger_lines(), [])

    def test_no_hook_no_delete(self):
        # control: without the hook nothing is sent (proves the hook did it)
        self.write_etc_config()
        rcs = self.run_ns(USERADD_USERDEL)
        self.assertEqual(rcs, {"useradd": 0, "userdel": 0, "gone": 0}, self.texts)
        self.assertEqual(self.deletes(), [])


ADDUSER_DELUSER = """
run adduser adduser --disabled-password --gecos '' psit_alice
run deluser deluser psit_alice
run gone sh -c '! getent passwd psit_alice'
"""


@unittest.skipUnless(shutil.which("deluser") and shutil.which("adduser"),
                     "Debian's adduser package (adduser/deluser) is not installed")
class DeluserTest(HookTestCase):

    def test_deluser_local_alone_one_delete(self):
        self.write_etc_config()
        rcs = self.run_ns(ADDUSER_DELUSER, with_deluser_local=True)
        self.assertEqual(rcs, {"adduser": 0, "deluser": 0, "gone": 0}, self.texts)
        self.assert_alice_deleted_once()
        self.assertEqual(self.queue_files(), [])
        self.assertEqual(self.logger_lines(), [])

    def test_deluser_with_both_hooks_one_successful_delete(self):
        """deluser runs userdel (its post.d hook fires) and then
        deluser.local: two requests for one deletion. Only one may succeed
        with 204; the other must find the member absent (404) or be
        deduplicated, and nothing fails."""
        self.install_hook()
        self.write_etc_config()
        rcs = self.run_ns(ADDUSER_DELUSER, with_deluser_local=True)
        self.assertEqual(rcs, {"adduser": 0, "deluser": 0, "gone": 0}, self.texts)
        dels = self.deletes()
        statuses = [d["status"] for d in dels]
        self.assertEqual(statuses.count(204), 1, statuses)
        self.assertTrue(set(statuses) <= {204, 404}, statuses)
        self.assertTrue(all(urlsplit(d["target"]).path == ALICE_PATH for d in dels))
        self.assertEqual(self.queue_files(), [])
        self.assertEqual([l for l in self.logger_lines() if "err" in l.split()[0]], [])
        self.assertNotIn("fail", self.err("deluser").lower())
        print("both hooks: DELETE statuses", statuses)

    def test_deluser_simulator_down_queued(self):
        self.write_etc_config(url=DEAD_URL, retries=1, connect_timeout=1)
        rcs = self.run_ns(ADDUSER_DELUSER, with_deluser_local=True)
        self.assertEqual(rcs, {"adduser": 0, "deluser": 0, "gone": 0}, self.texts)
        self.assertEqual(self.deletes(), [])
        self.assertEqual(self.queue_files(), [pslib.entry_name("psit_alice", "acme", "d4xkq1abc")])

    def test_deluser_local_command_absent_quiet(self):
        self.write_etc_config()
        rcs = self.run_ns(ADDUSER_DELUSER, with_cmd=False, with_deluser_local=True)
        self.assertEqual(rcs, {"adduser": 0, "deluser": 0, "gone": 0}, self.texts)
        self.assertEqual(self.deletes(), [])
        self.assertEqual(self.logger_lines(), [])


if __name__ == "__main__":
    unittest.main()
