"""Hardening of the command: files the configuration names are opened without
blocking and checked to be regular files before anything is read from them,
configuration loading is bounded by --deadline, api.ca_file follows the
owner and mode rules of include files, the process is not dumpable (no token
in a core dump), and the systemd units forbid core dumps.

Every case that used to hang runs under a subprocess timeout far below the
test's own: a hang fails the test instead of blocking the suite."""

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import time
import unittest

from common import SimTestCase, pslib, shim_env

WRAPPER = os.environ.get("TEST_WRAPPER", "").split()
SLOW = 6 if WRAPPER else 1          # time factor under valgrind
NOBODY = 65534
FAST = 10 * SLOW                    # seconds a failing load may take, at most
TOP_SRCDIR = os.environ.get("top_srcdir") or os.path.join(os.path.dirname(__file__), "..", "..")


class FileTypeTest(SimTestCase):
    """A FIFO, a character device, a directory or a socket where the
    configuration names a file: a clear error at once, never a hang."""

    def setUp(self):
        super().setUp()
        self.udir = os.path.join(self.dir, "unresolved")

    def records(self):
        if not os.path.isdir(self.udir):
            return []
        out = []
        for n in sorted(os.listdir(self.udir)):
            if n.endswith(".json"):
                with open(os.path.join(self.udir, n)) as f:
                    out.append(json.load(f))
        return out

    def make(self, kind, path):
        """Creates a non-regular file of this kind at path (or a symlink to
        /dev/zero for "chardev"); returns the words of its error message."""
        if kind == "fifo":
            os.mkfifo(path, 0o600)
            return "not a regular file (a FIFO)"
        if kind == "directory":
            os.mkdir(path, 0o700)
            return "not a regular file (a directory)"
        if kind == "socket":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            self.addCleanup(s.close)
            return "not a regular file (a socket)"
        if kind == "chardev":
            return "not a regular file (a character device)"
        raise ValueError(kind)

    def include_dir_with(self, kind, where=None):
        d = os.path.join(where or self.dir, "users.d")
        os.mkdir(d, 0o755)
        with open(os.path.join(d, "10-ok.conf"), "w") as f:
            f.write(pslib.users_block([{"login": "carol", "id": "c4rol"}]))
        bad = os.path.join(d, "20-bad.conf")
        if kind == "chardev":
            os.symlink("/dev/zero", bad)   # include files may be links
        words = self.make(kind, bad)
        return d, bad, words

    def expect_fast_failure(self, cfg, path, words, login="bob"):
        """remove --deadline 2, lookup and check all fail at once naming
        the file; remove records the login for retry."""
        before = len(self.records())
        for args in (["remove", "--deadline", "2", login], ["lookup", login], ["check"]):
            t0 = time.monotonic()
            try:
                rc, out, err = self.run_cmd(args, cfg, timeout=FAST + 20)
            except subprocess.TimeoutExpired:
                self.fail("%s hung on %s" % (" ".join(args), path))
            dt = time.monotonic() - t0
            self.assertEqual(rc, 78, "%s: %s" % (args, err))
            self.assertIn("%s: %s" % (path, words), err, args)
            self.assertLess(dt, FAST, "%s took %.1f s" % (args, dt))
            if args[0] == "remove":
                self.assertIn("%s: NOT removed yet: recorded in" % login, err)
        recs = self.records()
        self.assertEqual(len(recs), before + 1, "remove recorded the login for retry")
        self.assertEqual(recs[-1]["login"], login)
        self.assertEqual(self.deletes(), [])

    def test_fifo_include_file(self):
        d, bad, words = self.include_dir_with("fifo")
        cfg = self.config(include_dir=d)
        self.expect_fast_failure(cfg, bad, words)

    def test_fifo_token_file(self):
        tf = os.path.join(self.dir, "token")
        words = self.make("fifo", tf)
        cfg = self.config(token_file=tf)
        self.expect_fast_failure(cfg, tf, words)

    def test_fifo_ca_file(self):
        ca = os.path.join(self.dir, "ca.pem")
        words = self.make("fifo", ca)
        cfg = self.config(ca_file=ca)
        self.expect_fast_failure(cfg, ca, words)

    def test_fifo_main_file(self):
        cfg = os.path.join(self.dir, "deprovision.conf")
        words = self.make("fifo", cfg)
        self.expect_fast_failure(cfg, cfg, words)

    def test_other_types_as_include_token_and_ca_file(self):
        n = 0
        for kind in ("chardev", "directory", "socket"):
            for role in ("include", "token_file", "ca_file"):
                with self.subTest(kind=kind, role=role):
                    n += 1
                    sub = os.path.join(self.dir, "case%d" % n)
                    os.mkdir(sub, 0o700)
                    if role == "include":
                        d, bad, words = self.include_dir_with(kind, sub)
                        kw = {"include_dir": d}
                    elif kind == "chardev":
                        bad = "/dev/zero"
                        words = "not a regular file (a character device)"
                        kw = {role: bad}
                    else:
                        bad = os.path.join(sub, role)
                        words = self.make(kind, bad)
                        kw = {role: bad}
                    cfg = pslib.write_config(sub, sim=self.sim,
                                             queue_dir=os.path.join(self.dir, "queue"), **kw)
                    self.expect_fast_failure(cfg, bad, words)

    def test_pam_helper_answers_config_at_once(self):
        d, bad, words = self.include_dir_with("fifo")
        cfg = self.config(include_dir=d)
        t0 = time.monotonic()
        rc, out, err = self.run_cmd(["pam-helper", "--mode", "service", "--service",
                                     "planetscale-deprovision", "--deadline", "2", "--", "bob"],
                                    cfg, timeout=FAST + 20)
        self.assertLess(time.monotonic() - t0, FAST)
        self.assertEqual(out, "recorded\n", "the word for a login recorded for retry")
        self.assertTrue(any("%s: %s" % (bad, words) in l for l in self.syslog_lines()),
                        self.syslog_lines())
        self.assertEqual([r["login"] for r in self.records()], ["bob"])


class DeadlineTest(SimTestCase):
    """Configuration loading stops at --deadline: an include_dir with very
    many files cannot hold the userdel hook past it."""

    N = 30000

    def test_many_include_files_stop_at_the_deadline(self):
        d = os.path.join(self.dir, "users.d")
        os.mkdir(d, 0o755)
        for i in range(self.N):
            with open(os.path.join(d, "u%05d.conf" % i), "w") as f:
                f.write('users = ( { login = "u%05d"; id = "i%05d"; } );\n' % (i, i))
        cfg = self.config(include_dir=d)
        # the same directory loads without a deadline: the files are fine
        t0 = time.monotonic()
        rc, out, err = self.run_cmd(["lookup", "u00042"], cfg, timeout=600)
        full = time.monotonic() - t0
        self.assertEqual(rc, 0, err)
        self.assertIn("user id: i00042", out)
        # a deadline well below that is kept, and the login is recorded
        deadline = min(0.5 * SLOW, full / 4)
        t0 = time.monotonic()
        rc, out, err = self.run_cmd(["remove", "--deadline", "%.3f" % deadline, "u00042"],
                                    cfg, timeout=600)
        dt = time.monotonic() - t0
        self.assertEqual(rc, 78, err)
        self.assertIn("deadline", err)
        self.assertIn(d, err, "the error names the directory")
        self.assertRegex(err, r"after \d+ of %d include files" % self.N)
        self.assertIn("u00042: NOT removed yet: recorded in", err)
        self.assertLess(dt, deadline + 2 * SLOW + 0.5 * full / 4,
                        "full load %.2f s, deadline %.2f s, took %.2f s" % (full, deadline, dt))
        self.assertEqual(self.deletes(), [])


class CaFileRulesTest(SimTestCase):
    """api.ca_file replaces the whole trust store: it gets the owner and
    mode rules of include files."""

    def ca_copy(self, mode, uid=0):
        ca = os.path.join(self.dir, "ca.pem")
        shutil.copy(self.sim.ca_file, ca)
        os.chmod(ca, mode)
        os.chown(ca, uid, -1)
        return ca

    def test_world_writable_ca_owned_by_nobody_fails_check(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to give the file to nobody (run make check as root)")
        ca = self.ca_copy(0o666, NOBODY)
        cfg = self.config(ca_file=ca)
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 78, err)
        self.assertIn(ca, err)
        self.assertIn("chown root %s" % ca, err, "says how to fix it")
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 78, err)
        self.assertEqual(self.deletes(), [], "nothing is sent trusting that file")
        # owned by root but writable by others: refused too, with the fix
        os.chown(ca, 0, -1)
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 78, err)
        self.assertIn("writable by group or others", err)
        self.assertIn("chmod go-w %s" % ca, err)
        # fixed as told: accepted, and removals go through it
        os.chmod(ca, 0o644)
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 0, err)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(self.deletes()), 1)

    def test_group_writable_ca_fails_as_any_user(self):
        ca = self.ca_copy(0o664, os.geteuid())
        cfg = self.config(ca_file=ca)
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 78, err)
        self.assertIn("chmod go-w %s" % ca, err)

    def test_ca_file_behind_a_symlink_is_checked_at_its_target(self):
        ca = self.ca_copy(0o644, os.geteuid())
        link = os.path.join(self.dir, "ca-link.pem")
        os.symlink(ca, link)
        cfg = self.config(ca_file=link)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        os.chmod(ca, 0o666)
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 78, err)
        self.assertIn("writable by group or others", err)

    def test_ca_file_is_read_when_loaded(self):
        # the CA is read through the descriptor that was checked: replacing
        # the file after the configuration loaded changes nothing for the
        # running process, and a wrong CA is still refused
        cfg = self.config(ca_file=self.sim.other_ca_file)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 78, err)
        self.assertRegex(err.lower(), "certificate|ssl|tls")
        self.assertEqual(self.deletes(), [])


def proc_owner(pid):
    try:
        return os.stat("/proc/%d/status" % pid).st_uid
    except FileNotFoundError:
        return None


def exe_of(pid):
    try:
        return os.readlink("/proc/%d/exe" % pid)
    except OSError:
        return None


class DumpableTest(SimTestCase):
    """The command makes itself non-dumpable first thing (no token in a core
    dump). Observable from outside: the kernel gives the files in /proc/PID
    of a non-dumpable process to root, whoever runs it (proc(5)); here the
    command runs as nobody."""

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root to run the command as nobody (run make check as root)")
        # the command runs without TEST_WRAPPER here (valgrind would be
        # /proc/PID/exe): what is checked is the kernel's view of it
        self.home = os.path.join(self.dir, "nobody")
        os.mkdir(self.home, 0o700)
        os.chmod(self.dir, 0o711)
        ca = os.path.join(self.home, "ca.pem")
        shutil.copy(self.sim.ca_file, ca)
        self.cfg = pslib.write_config(self.home, sim=self.sim, ca_file=ca,
                                      extra='sender = { socket = "%s/s.sock"; };\n' % self.home)
        for root, dirs, files in os.walk(self.home):
            for n in dirs + files + ["."]:
                os.chown(os.path.join(root, n), NOBODY, NOBODY)

    def watch(self, argv):
        """Starts the command as nobody; returns once /proc/PID belongs to
        root (then True) or after 10 s (False)."""
        cmd = os.path.realpath(pslib.command_path())
        env = {"PATH": "/usr/bin:/bin"}
        for k in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        env.update(shim_env(os.path.join(self.home, "syslog")))
        errpath = os.path.join(self.dir, "stderr")
        with open(errpath, "wb") as errf:
            p = subprocess.Popen([cmd, "--config", self.cfg] + argv, stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=errf, env=env,
                                 user=NOBODY, group=NOBODY, extra_groups=[])
        try:
            deadline = time.monotonic() + 10
            seen = False
            while time.monotonic() < deadline and p.poll() is None:
                # only once the command itself runs (after execve, as nobody)
                if exe_of(p.pid) == cmd and proc_owner(p.pid) == 0:
                    seen = True
                    break
                time.sleep(0.01)
            if p.poll() is not None:
                with open(errpath, errors="replace") as f:
                    self.fail("the command exited early: %s" % f.read())
            return seen
        finally:
            if p.poll() is None:
                p.kill()
            p.communicate(timeout=30)

    def test_remove_is_not_dumpable(self):
        # remove - waits on stdin for logins
        self.assertTrue(self.watch(["remove", "-"]), "remove is dumpable")

    def test_serve_is_not_dumpable(self):
        self.assertTrue(self.watch(["serve"]), "serve is dumpable")


class UnitsTest(unittest.TestCase):
    """Every service unit forbids core dumps and stays as hardened as
    before."""

    def units(self):
        d = os.path.join(TOP_SRCDIR, "etc", "systemd")
        return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".service"))

    def test_limit_core_zero(self):
        units = self.units()
        self.assertGreaterEqual(len(units), 2)
        for u in units:
            with self.subTest(unit=os.path.basename(u)):
                section = None
                found = False
                with open(u) as f:
                    for line in f:
                        line = line.strip()
                        if line.startswith("["):
                            section = line
                        elif line == "LimitCORE=0":
                            self.assertEqual(section, "[Service]")
                            found = True
                self.assertTrue(found, "no LimitCORE=0 in [Service]")

    def test_exposure(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed (Debian: systemd)")
        for u in self.units():
            with self.subTest(unit=os.path.basename(u)):
                r = subprocess.run(["systemd-analyze", "security", "--offline=yes", u],
                                   capture_output=True, text=True, timeout=120)
                m = re.search(r"Overall exposure level for [^:]*: ([0-9.]+)", r.stdout + r.stderr)
                self.assertIsNotNone(m, r.stdout + r.stderr)
                self.assertLessEqual(float(m.group(1)), 1.6, r.stdout[-2000:])


if __name__ == "__main__":
    unittest.main()
