"""The warm sender: `serve` and the hand-off that `remove` and `pam-helper`
make to it (src/sender_*.c), against the HTTPS simulator.

What is checked: removals handed to a sender go out on one API connection
and are audited by the sender; every way of not reaching a usable sender
(no socket, a stale one, another queue or API URL, a broken configuration,
a sender that is not root or us) falls back to sending directly; transient
and permanent answers keep the direct path's semantics; deadlines hold and
nothing is lost when the sender or the client is killed; hostile clients
get nothing; configuration reloads; systemd socket activation; `serve`
refuses unsafe sockets; concurrent hooks share one paced connection; idle,
slow and non-reading clients and a slow API hold up no other client's
hand-off; SIGTERM and SIGINT remove the socket file serve created.

Every sender runs under TEST_WRAPPER (valgrind in CI) and must exit 0 on
its idle timeout (99: valgrind found errors)."""

import json
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

from common import SimTestCase, pslib, shim_env

WRAPPER = os.environ.get("TEST_WRAPPER", "").split()
SLOW = 6 if WRAPPER else 1          # time factor under valgrind
IDLE = 2 * SLOW                     # sender.idle_timeout of most tests
MARGIN = 2 if not WRAPPER else 8    # seconds a client may take past its --deadline
DEAD_URL = "https://127.0.0.1:1/v1"  # nothing listens: connection refused
NOBODY = 65534
ADMIN = {"id": "adm0acme", "email": "root@example.com", "name": "Root Admin", "role": "admin"}


def write_entry(qdir, login, organization, id_):
    """A pending entry as `remove` writes it; returns its file name."""
    name = pslib.entry_name(login, organization, id_)
    e = {"version": 1, "login": login, "organization": organization, "id": id_,
         "delete_passwords": True, "delete_service_tokens": True,
         "first_attempt": int(time.time()), "last_attempt": 0, "attempts": 0,
         "last_error": ""}
    fd = os.open(os.path.join(qdir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(e, f)
    return name


def members_with(ids, org="acme"):
    return {org: [dict(ADMIN)] + [{"id": i, "email": i + "@example.com", "name": i,
                                   "role": "member"} for i in ids]}


def users_for(ids):
    return [{"login": "u" + i, "id": i} for i in ids]


CLIENT_USERS = [{"login": "alice", "id": "d4xkq1abc"},
                {"login": "bob", "id": "x9z8", "organization": "acme-eu"},
                {"login": "carol", "id": "c4rol"}]


def sender_block(path, idle=None):
    return "sender = { socket = %s; idle_timeout = %d; };\n" % (
        pslib.cfg_value(path), IDLE if idle is None else idle)


class RawClient:
    """A hand-written client of the sender protocol (for hostile requests)."""

    def __init__(self, path, timeout=15):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.buf = b""

    def send(self, data, fds=()):
        if fds:
            socket.send_fds(self.s, [data], list(fds))
        else:
            self.s.sendall(data)

    def line(self):
        """The next line without '\\n'; None at EOF (or reset) first."""
        while b"\n" not in self.buf:
            try:
                data = self.s.recv(4096)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                return None
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("utf-8", "replace")

    def close(self):
        self.s.close()


class SenderTestCase(SimTestCase):

    def setUp(self):
        super().setUp()
        self.sock = os.path.join(self.dir, "s.sock")
        self.senders = []

    def tearDown(self):
        for p in self.senders:
            if p.poll() is None:      # the test failed before it ended it
                p.kill()
                p.wait()
            self.outputs.append(self.sender_err(p))
        super().tearDown()

    def qdir(self, sub=""):
        return os.path.join(self.dir, "queue", sub)

    def config(self, sock=None, idle=None, extra="", **kw):
        """A config whose sender.socket is this test's socket (or `sock`)."""
        kw.setdefault("sim", self.sim)
        kw["extra"] = sender_block(self.sock if sock is None else sock, idle) + extra
        return pslib.write_config(self.dir, **kw)

    # ---- the sender process
    def sender_argv(self, cfg, socket_arg=None, verbose=False):
        return (WRAPPER + [pslib.command_path()] + (["--verbose"] if verbose else []) +
                ["--config", cfg, "serve"] + (["--socket", socket_arg] if socket_arg else []))

    def start_sender(self, cfg, socket_arg=None, argv=None, env=None, pass_fds=(),
                     wait=True, verbose=True):
        if not os.access(pslib.command_path(), os.X_OK):
            self.skipTest("command not built: %s" % pslib.command_path())
        errpath = os.path.join(self.dir, "sender%d.err" % len(self.senders))
        full_env = dict(os.environ)
        full_env.update(shim_env(self.syslog))
        full_env.update(env or {})
        with open(errpath, "wb") as err:
            p = subprocess.Popen(argv or self.sender_argv(cfg, socket_arg, verbose),
                                 stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                 env=full_env, pass_fds=pass_fds)
        p.err_path = errpath
        self.senders.append(p)
        if wait:
            self.wait_serving(p)
        return p

    def sender_err(self, p):
        try:
            with open(p.err_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def lines_of(self, pid):
        tag = "[%d]: " % pid
        return [l for l in self.syslog_lines() if tag in l]

    def wait_for(self, cond, timeout, what):
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                self.fail("timed out waiting for " + what)
            time.sleep(0.02)

    def wait_serving(self, p, timeout=30 * SLOW):
        """Until the sender logged that it listens (never by connecting: a
        connection would occupy it)."""
        deadline = time.monotonic() + timeout
        while not any("sender: serving removals on" in l for l in self.lines_of(p.pid)):
            if p.poll() is not None:
                self.fail("the sender exited (%d) before serving: %s"
                          % (p.returncode, self.sender_err(p)))
            if time.monotonic() > deadline:
                self.fail("the sender did not start serving: " + self.sender_err(p))
            time.sleep(0.02)

    def wait_sender_exit(self, p, idle=IDLE, sock=None):
        """The sender exits by itself after its idle timeout, with status 0,
        and unlinks the socket it bound (`sock`)."""
        try:
            p.wait(idle + 20 * SLOW)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.fail("the sender did not exit after its idle timeout: " + self.sender_err(p))
        err = self.sender_err(p)
        if p.returncode == 99 and WRAPPER:
            self.fail("the test wrapper (valgrind) reported errors in the sender:\n" + err)
        self.assertEqual(p.returncode, 0, "sender exit status: " + err)
        self.assertTrue(any("idle for" in l for l in self.lines_of(p.pid)), err)
        if sock:
            self.assertFalse(os.path.lexists(sock), "the sender left its socket behind")
        return err

    # ---- assertions
    def audit_of(self, pid, outcome=None):
        return [l for l in self.lines_of(pid) if "outcome=" in l and
                (outcome is None or "outcome=%s " % outcome in l)]

    def assert_audited_by(self, pid, outcome, login):
        lines = [l for l in self.audit_of(pid, outcome) if " login=%s " % login in l]
        self.assertEqual(len(lines), 1, "expected one outcome=%s line for %s from pid %d, "
                         "syslog:\n%s" % (outcome, login, pid, "\n".join(self.syslog_lines())))

    def queue_files(self):
        """Everything in the queue directory but its subdirectories: entries,
        lock files, temp files."""
        d = self.qdir()
        if not os.path.isdir(d):
            return []
        return sorted(n for n in os.listdir(d) if not os.path.isdir(os.path.join(d, n)))

    def assert_queue_clean(self):
        self.assertEqual(self.queue_files(), [], "entries or lock files left in the queue")

    def deletes_of(self, id_):
        return [r for r in self.sim.deletes() if r["path"].endswith("/members/" + id_)]

    def fd_count(self, pid):
        """The sender's open descriptors once it is idle: a removal's lock
        is closed just after its answer, so the count is read until it has
        not changed for 0.3 s (at most 5 s)."""
        last, since, until = None, time.monotonic(), time.monotonic() + 5
        while time.monotonic() < until:
            n = len(os.listdir("/proc/%d/fd" % pid))
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= 0.3:
                break
            time.sleep(0.05)
        return last

    # ---- a client by hand
    def say_hello(self, c):
        c.send(("HELLO 1 %s %s\n" % (self.sim.url, self.qdir())).encode())
        return c.line()

    def pending(self, login):
        """An entry left pending by a removal that could not reach the API
        (written by the command itself); returns its name."""
        cfg = self.config(sock="", users=CLIENT_USERS, url=DEAD_URL, retries=1,
                          connect_timeout=1, name="direct.conf")
        rc, out, err = self.run_cmd(["remove", login], cfg)
        self.assertEqual(rc, 75, err)
        org, id_ = [(u.get("organization", "acme"), u["id"]) for u in CLIENT_USERS
                    if u["login"] == login][0]
        name = pslib.entry_name(login, org, id_)
        self.assertIn(name, self.queue_files())
        return name

    def hand_over(self, c, name, ms=0):
        """SEND of a pending entry with its lock, as `remove` does it (the
        lock is taken here and the descriptor closed once it went)."""
        import fcntl
        fd = os.open(self.qdir("." + name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            c.send(("SEND %s %d\n" % (name, ms)).encode(), [fd])
        finally:
            os.close(fd)


# ====================================================================== basics

class SenderBasicsTest(SenderTestCase):

    USERS = [{"login": "alice", "id": "d4xkq1abc"},
             {"login": "bob", "id": "x9z8", "organization": "acme-eu",
              "delete_service_tokens": False},
             {"login": "carol", "id": "c4rol"}]

    def test_removals_go_through_one_warm_connection(self):
        cfg = self.config(users=self.USERS)
        p = self.start_sender(cfg)
        for login, org, id_ in (("alice", "acme", "d4xkq1abc"), ("bob", "acme-eu", "x9z8")):
            rc, out, err = self.run_cmd(["remove", login], cfg)
            self.assertEqual(rc, 0, err)
            self.assertEqual(out, "%s: removed from %s (user %s)\n" % (login, org, id_))
            self.assert_audited_by(p.pid, "removed", login)
            self.assert_queue_clean()
        # the PAM module's helper hands its removal over the same way
        rc, out, err = self.run_cmd(["pam-helper", "--mode", "service", "--service",
                                     "planetscale-deprovision", "--deadline", "20",
                                     "--config", cfg, "--", "carol"])
        self.assertEqual((rc, out), (0, "removed\n"), err)
        self.assert_audited_by(p.pid, "removed", "carol")
        # and the sender answers "absent" when someone else was first
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual((rc, out),
                         (0, "alice: already absent from acme (user d4xkq1abc), confirmed\n"), err)
        self.assert_audited_by(p.pid, "absent", "alice")

        dels = self.sim.deletes()
        self.assertEqual([(r["path"], r["status"]) for r in dels],
                         [("/v1/organizations/acme/members/d4xkq1abc", 204),
                          ("/v1/organizations/acme-eu/members/x9z8", 204),
                          ("/v1/organizations/acme/members/c4rol", 204)])
        # the last one looked first and sent no DELETE: GET 404, confirmed by
        # the sender's earlier reads of acme (a member returned), no list probe
        last = self.sim.requests()[-1]
        self.assertEqual((last["method"], last["path"], last["status"]),
                         ("GET", "/v1/organizations/acme/members/d4xkq1abc", 404))
        self.assertEqual([r for r in self.sim.requests() if r["path"].endswith("/members")], [])
        # the per-user flags travel with the entry
        self.assertIn(["delete_service_tokens", "false"], dels[1]["params"])
        self.assertIn(["delete_service_tokens", "true"], dels[0]["params"])
        self.assertEqual(self.sim.stats()["connections"], 1, "one warm connection")
        self.assertEqual(self.sim.members_of("acme"), ["adm0acme", "x9z8"])
        # the clients themselves wrote no audit line: the sender did
        client_audit = [l for l in self.audit() if "[%d]: " % p.pid not in l]
        self.assertEqual(client_audit, [])
        self.assert_queue_clean()
        self.wait_sender_exit(p, sock=self.sock)

    def test_no_sender_means_direct(self):
        # "" (no sender), a path where nothing is, a stale socket file
        stale = os.path.join(self.dir, "stale.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(stale)                 # bound, never listening: ECONNREFUSED
        s.close()
        self.assertTrue(stat.S_ISSOCK(os.lstat(stale).st_mode))
        cases = (("", "alice", "d4xkq1abc"),
                 (os.path.join(self.dir, "nothing-here.sock"), "bob", "x9z8"),
                 (stale, "carol", "c4rol"))
        for sock, login, id_ in cases:
            cfg = self.config(sock=sock, users=self.USERS, name="c-%s.conf" % login)
            rc, out, err = self.run_cmd(["--verbose", "remove", login], cfg)
            self.assertEqual(rc, 0, err)
            self.assertIn("%s: removed" % login, out)
            self.assertEqual(len(self.deletes_of(id_)), 1)
            if sock:
                self.assertRegex(err, "sender .*not listening.*sending directly")
            self.assert_queue_clean()
        self.assertEqual(len(self.audit("removed")), 3)

        # a sender takes over the stale socket file and serves there
        cfg = self.config(sock=stale, users=self.USERS)
        self.sim.reset()
        p = self.start_sender(cfg)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assert_audited_by(p.pid, "removed", "alice")
        self.wait_sender_exit(p, sock=stale)

    def test_other_queue_or_url_sends_directly(self):
        sender_cfg = self.config(users=self.USERS, url=DEAD_URL, retries=1,
                                 connect_timeout=1, name="sender.conf")
        p = self.start_sender(sender_cfg)
        # same queue, another API URL: a sender that took it could only fail
        rc, out, err = self.run_cmd(["--verbose", "remove", "alice"],
                                    self.config(users=self.USERS, name="client.conf"))
        self.assertEqual(rc, 0, err)
        self.assertIn("another API URL", err)
        self.assertEqual(len(self.deletes_of("d4xkq1abc")), 1)
        # same URL, another queue directory
        qdir2 = os.path.join(self.dir, "queue2")
        cfg_q = self.config(users=self.USERS, name="sender2.conf")
        p2 = self.start_sender(cfg_q, socket_arg=os.path.join(self.dir, "s2.sock"))
        client = self.config(users=self.USERS, queue_dir=qdir2, name="client2.conf",
                             sock=os.path.join(self.dir, "s2.sock"))
        rc, out, err = self.run_cmd(["--verbose", "remove", "bob"], client)
        self.assertEqual(rc, 0, err)
        self.assertIn("another queue directory", err)
        self.assertEqual(len(self.deletes_of("x9z8")), 1)
        self.assertEqual([n for n in os.listdir(qdir2) if n not in ("dead", "invalid")], [])
        # neither sender audited anything: the clients did
        self.assertEqual(self.audit_of(p.pid) + self.audit_of(p2.pid), [])
        self.assertEqual(len(self.audit("removed")), 2)
        self.assert_queue_clean()
        self.wait_sender_exit(p, sock=self.sock)
        self.wait_sender_exit(p2, sock=os.path.join(self.dir, "s2.sock"))


# ====================================================================== outcomes

class SenderOutcomeTest(SenderTestCase):

    def test_transient_failure_is_queued_then_retried(self):
        cfg = self.config(retries=1)
        p = self.start_sender(cfg)
        self.sim.set_faults(["status:503;count=-1;method=DELETE"])
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 75, err)
        self.assertIn("alice: NOT removed yet: queued for retry (pending in the spool): "
                      "DELETE: HTTP 503", err)
        self.assert_audited_by(p.pid, "queued", "alice")
        name = pslib.entry_name("alice", "acme", "d4xkq1abc")
        self.assertIn(name, self.queue_files())
        with open(self.qdir(name)) as f:
            e = json.load(f)
        self.assertEqual(e["attempts"], 2, "GET, then DELETE")
        self.assertIn("503", e["last_error"])
        self.assertEqual(len(self.deletes()), 1)
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"))
        # the retry timer's path sends it
        self.sim.set_faults([])
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))
        self.assert_queue_clean()
        self.wait_sender_exit(p, sock=self.sock)

    def test_permanent_refusals_are_final(self):
        cfg = self.config(users=[{"login": "alice", "id": "d4xkq1abc"},
                                 {"login": "carol", "id": "c4rol"}])
        p = self.start_sender(cfg)
        for fault, login in (("status:422", "alice"), ("status:403", "carol")):
            self.sim.set_faults([fault + ";method=DELETE"])
            rc, out, err = self.run_cmd(["remove", login], cfg)
            self.assertEqual(rc, 77, err)
            self.assertIn("%s: NOT removed: held in the spool" % login, err)
            self.assertIn("HTTP %s" % fault[-3:], err)
            self.assertIn("Simulated error", err, "the API's message is shown")
            self.assert_audited_by(p.pid, "held", login)
        # refusals are not retried, and not forgotten: held, with the reason
        self.assertEqual(len(self.deletes()), 2, "refusals are not retried")
        q = {e["login"]: e for e in self.queue_json(cfg)}
        self.assertEqual({k: v["state"] for k, v in q.items()}, {"alice": "held", "carol": "held"})
        self.assertIn("422", q["alice"]["last_error"])
        self.wait_sender_exit(p, sock=self.sock)

    def test_client_deadline_shorter_than_the_api(self):
        cfg = self.config(retries=1, timeout=10)
        p = self.start_sender(cfg)
        deadline = 2.0 * SLOW
        self.sim.set_faults(["delay:%d;method=DELETE" % (deadline + 6)])
        t0 = time.monotonic()
        rc, out, err = self.run_cmd(["remove", "--deadline", str(deadline), "alice"], cfg)
        took = time.monotonic() - t0
        self.assertEqual(rc, 75, err)
        self.assertLess(took, deadline + MARGIN, "the deadline was not kept")
        self.assertIn("queued for retry", err)
        self.assertNotIn("which gave no result", err, "the sender answered in time")
        # nothing lost: the entry waits (or the sender finished it)
        self.sim.wait_idle(15)
        if "d4xkq1abc" in self.sim.members_of("acme"):
            self.assertIn(pslib.entry_name("alice", "acme", "d4xkq1abc"), self.queue_files())
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))
        self.assert_queue_clean()
        self.wait_sender_exit(p, sock=self.sock)


# ====================================================================== kills

class SenderKillTest(SenderTestCase):

    def popen_remove(self, cfg, login):
        env = dict(os.environ)
        env.update(shim_env(self.syslog))
        return subprocess.Popen(WRAPPER + [pslib.command_path(), "--config", cfg, "remove",
                                           login], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                text=True)

    def wait_inflight(self):
        self.wait_for(lambda: self.sim.stats()["inflight"] > 0, 30 * SLOW,
                      "the DELETE to reach the simulator")

    def test_sender_killed_mid_request(self):
        cfg = self.config()
        p = self.start_sender(cfg)
        self.sim.set_faults(["delay:10;method=DELETE"])
        c = self.popen_remove(cfg, "alice")
        self.wait_inflight()
        p.kill()
        p.wait()
        out, err = c.communicate(timeout=10 * SLOW)
        self.outputs.append(out + err)
        self.assertEqual(c.returncode, 75, err)
        self.assertIn("handed to the sender", err)
        name = pslib.entry_name("alice", "acme", "d4xkq1abc")
        self.assertIn(name, self.queue_files(), "the entry must stay for retry")
        self.sim.wait_idle(15)
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"))
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))
        self.assert_queue_clean()

    def test_client_killed_while_waiting(self):
        cfg = self.config()
        p = self.start_sender(cfg)
        self.sim.set_faults(["delay:1.5;method=DELETE"])
        c = self.popen_remove(cfg, "alice")
        self.wait_inflight()
        c.kill()
        c.communicate()
        self.wait_for(lambda: "d4xkq1abc" not in self.sim.members_of("acme"), 15 * SLOW,
                      "the sender to finish the removal")
        self.wait_for(lambda: not self.queue_files(), 10 * SLOW, "the entry to be settled")
        self.assert_audited_by(p.pid, "removed", "alice")
        self.assertEqual(len(self.deletes()), 1)
        # and the sender goes on serving
        rc, out, err = self.run_cmd(["remove", "bob"], cfg)
        self.assertEqual(rc, 0, err)
        self.assert_audited_by(p.pid, "removed", "bob")
        self.wait_sender_exit(p, sock=self.sock)


# ====================================================================== hostile

class SenderHostileTest(SenderTestCase):

    IDS = ["h%d" % i for i in range(11)]

    def hello(self, c, cfg_url=None):
        c.send(("HELLO 1 %s %s\n" % (cfg_url or self.sim.url, self.qdir())).encode())
        return c.line()

    def test_hostile_clients_get_nothing(self):
        self.sim.set_members(members_with(self.IDS + ["victim1"]))
        users = users_for(self.IDS) + [{"login": "victim", "id": "victim1"}]
        cfg = self.config(users=users)
        p = self.start_sender(cfg)
        # a first removal opens the queue and the API connection
        rc, out, err = self.run_cmd(["remove", "u" + self.IDS[10]], cfg)
        self.assertEqual(rc, 0, err)
        self.assert_audited_by(p.pid, "removed", "u" + self.IDS[10])
        fds0 = self.fd_count(p.pid)
        # a pending entry the hostile requests aim at
        victim = write_entry(self.qdir(), "victim", "acme", "victim1")
        lock = os.path.join(self.qdir(), "." + victim + ".lock")
        other = os.path.join(self.dir, "other-file")
        with open(other, "w") as f:
            f.write("not a lock\n")
        holder = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)

        def garbage(c):
            c.send(b"GET / HTTP/1.0\n")
            return c.line()

        def overlong(c):
            c.send(b"HELLO 1 " + b"x" * 5000)
            return c.line()

        def wrong_version(c):
            c.send(("HELLO 2 %s %s\n" % (self.sim.url, self.qdir())).encode())
            return c.line()

        def control_char(c):
            c.send(("HELLO 1 %s %s\x01\n" % (self.sim.url, self.qdir())).encode())
            return c.line()

        def bad_name(c):
            self.assertEqual(self.hello(c), "READY")
            fd = os.open(lock, os.O_RDWR)
            try:
                c.send(b"SEND ../../etc/passwd 1000\n", [fd])
            finally:
                os.close(fd)
            return c.line()

        def no_descriptor(c):
            self.assertEqual(self.hello(c), "READY")
            c.send(("SEND %s 5000\n" % victim).encode())
            return c.line()

        def other_file(c):
            self.assertEqual(self.hello(c), "READY")
            fd = os.open(other, os.O_RDONLY)
            try:
                c.send(("SEND %s 5000\n" % victim).encode(), [fd])
            finally:
                os.close(fd)
            return c.line()

        def five_descriptors(c):
            self.assertEqual(self.hello(c), "READY")
            fds = [os.open(lock, os.O_RDWR) for _ in range(5)]
            try:
                c.send(("SEND %s 5000\n" % victim).encode(), fds)
            finally:
                for fd in fds:
                    os.close(fd)
            return c.line()

        def lock_held_elsewhere(c):
            # the right lock file, but another process holds its lock
            import fcntl
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.assertEqual(self.hello(c), "READY")
            fd = os.open(lock, os.O_RDWR)
            try:
                c.send(("SEND %s 5000\n" % victim).encode(), [fd])
            finally:
                os.close(fd)
            return c.line()

        cases = [(garbage, "REFUSE bad request"), (overlong, ("REFUSE bad request", None)),
                 (wrong_version, "REFUSE bad request"), (control_char, "REFUSE bad request"),
                 (bad_name, "REFUSE bad request"), (no_descriptor, "REFUSE bad request"),
                 (other_file, "REFUSE not this entry's lock"),
                 (five_descriptors, "REFUSE bad request"),
                 (lock_held_elsewhere, "REFUSE not this entry's lock")]
        for i, (fn, expected) in enumerate(cases):
            with self.subTest(fn.__name__):
                c = RawClient(self.sock)
                try:
                    answer = fn(c)
                finally:
                    c.close()
                if isinstance(expected, tuple):
                    self.assertIn(answer, expected)
                else:
                    self.assertEqual(answer, expected)
                self.assertIsNone(p.poll(), "the sender died")
                login, id_ = "u" + self.IDS[i], self.IDS[i]
                rc, out, err = self.run_cmd(["remove", login], cfg)
                self.assertEqual(rc, 0, err)
                self.assert_audited_by(p.pid, "removed", login)
                self.assertEqual(self.deletes_of("victim1"), [], "a hostile request sent")
                self.assertTrue(os.path.exists(self.qdir(victim)))
        os.close(holder)
        self.assertEqual(self.fd_count(p.pid), fds0, "the sender leaks descriptors")
        self.assertEqual(self.sim.stats()["connections"], 1)

        # a client that connects and says nothing holds nobody up
        silent = RawClient(self.sock)
        try:
            t0 = time.monotonic()
            rc, out, err = self.run_cmd(["remove", "u" + self.IDS[9]], cfg)
            took = time.monotonic() - t0
        finally:
            silent.close()
        self.assertEqual(rc, 0, err)
        self.assert_audited_by(p.pid, "removed", "u" + self.IDS[9])
        self.assertLess(took, 2.0 * SLOW)
        self.assertEqual(self.deletes_of("victim1"), [])
        self.assertEqual(self.queue_files(), sorted(["." + victim + ".lock", victim]))
        self.wait_sender_exit(p, sock=self.sock)


# ====================================================================== reload

class SenderReloadTest(SenderTestCase):

    def write_token_file(self, path, value):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(value + "\n")

    def test_token_and_config_changes_are_picked_up(self):
        tok = os.path.join(self.dir, "token")
        self.write_token_file(tok, "%s:%s" % (self.sim.token_id, "pscale_tkn_wrong"))
        users = [{"login": "alice", "id": "d4xkq1abc"}, {"login": "carol", "id": "c4rol"}]
        cfg = self.config(token_file=tok, users=users)
        p = self.start_sender(cfg)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 77, err)
        self.assertIn("HTTP 401", err)
        self.assert_audited_by(p.pid, "held", "alice")
        self.assertEqual([e["state"] for e in self.queue_json(cfg)], ["held"])
        # the token file is fixed: the sender reloads it
        self.write_token_file(tok, self.sim.auth_header)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assert_audited_by(p.pid, "removed", "alice")
        # the configuration file changes: reloaded too
        self.config(users=users, token="pscale_tkn_wrong_again")
        rc, out, err = self.run_cmd(["remove", "carol"], cfg)
        self.assertEqual(rc, 77, err)
        self.assert_audited_by(p.pid, "held", "carol")
        self.assertIn("c4rol", self.sim.members_of("acme"))
        self.assertTrue(any("sender: configuration %s reloaded" % cfg in l
                            for l in self.lines_of(p.pid)))
        self.assertEqual([r["status"] for r in self.deletes()], [204])
        self.assertEqual([r["status"] for r in self.sim.requests()], [401, 200, 204, 401])
        self.wait_sender_exit(p, sock=self.sock)

    def test_broken_config_falls_back_to_direct(self):
        users = [{"login": "alice", "id": "d4xkq1abc"}, {"login": "carol", "id": "c4rol"}]
        cfg = self.config(users=users, name="sender.conf")
        client = self.config(users=users, name="client.conf")
        p = self.start_sender(cfg)
        with open(cfg) as f:
            good = f.read()
        with open(cfg, "a") as f:
            f.write("no_such_key = 1;\n")
        rc, out, err = self.run_cmd(["--verbose", "remove", "alice"], client)
        self.assertEqual(rc, 0, err)
        self.assertIn("REFUSE configuration error", err)
        self.assertEqual(self.audit_of(p.pid), [])
        self.assertEqual(len(self.audit("removed")), 1)
        self.assertEqual(len(self.deletes_of("d4xkq1abc")), 1)
        self.assertTrue(any("changed configuration does not load" in l and "sender.conf:" in l
                            for l in self.lines_of(p.pid)))
        self.assert_queue_clean()
        # repaired: the sender serves again
        with open(cfg, "w") as f:
            f.write(good)
        rc, out, err = self.run_cmd(["remove", "carol"], client)
        self.assertEqual(rc, 0, err)
        self.assert_audited_by(p.pid, "removed", "carol")
        self.wait_sender_exit(p, sock=self.sock)


# ====================================================================== serve

class ServeTest(SenderTestCase):

    def test_socket_activation(self):
        cfg = self.config(sock=os.path.join(self.dir, "unused.sock"))
        path = os.path.join(self.dir, "systemd.sock")
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(path)
        ls.listen(16)
        fd = ls.fileno()
        # the sd_listen_fds(3) protocol: fd 3, LISTEN_FDS=1, LISTEN_PID = the
        # pid that execs the sender (sh execs it, keeping its pid)
        argv = ["sh", "-c", 'exec 3<&%d; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"' % fd, "sh"] + \
            self.sender_argv(cfg)
        p = self.start_sender(cfg, argv=argv, pass_fds=[fd])
        ls.close()
        self.assertTrue(any("serving removals on the socket from systemd" in l
                            for l in self.lines_of(p.pid)))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "unused.sock")))
        client = self.config(sock=path, name="client.conf")
        rc, out, err = self.run_cmd(["remove", "alice"], client)
        self.assertEqual(rc, 0, err)
        self.assert_audited_by(p.pid, "removed", "alice")
        self.wait_sender_exit(p)
        self.assertTrue(os.path.exists(path), "the socket belongs to systemd: kept")

    def test_serve_errors(self):
        # a bad configuration names its file and line
        bad = self.config(name="bad.conf", extra="sender2 = 1;\n")
        rc, out, err = self.run_cmd(["serve"], bad)
        self.assertEqual(rc, 78, err)
        self.assertRegex(err, r"bad\.conf:\d+")
        # "systemd" passing two sockets, or a descriptor 3 that is not a
        # listening socket: configuration errors, not guesses
        cfg = self.config()
        with open(os.path.join(self.dir, "plain"), "w") as plain:
            for nfds, msg in (("2", "expected one socket from systemd, got LISTEN_FDS=2"),
                              ("1", "descriptor 3 from systemd is not a listening socket")):
                argv = ["sh", "-c", 'exec 3<&%d; LISTEN_PID=$$ LISTEN_FDS=%s exec "$@"'
                        % (plain.fileno(), nfds), "sh"] + self.sender_argv(cfg)
                r = subprocess.run(argv, pass_fds=[plain.fileno()], capture_output=True,
                                   text=True, timeout=60 * SLOW, stdin=subprocess.DEVNULL)
                self.outputs.append(r.stdout + r.stderr)
                self.assertEqual(r.returncode, 78, r.stderr)
                self.assertIn(msg, r.stderr)
        self.assertFalse(os.path.lexists(self.sock), "it bound a socket after all")

        p = self.start_sender(cfg)
        # another sender already listens there
        rc, out, err = self.run_cmd(["serve"], cfg)
        self.assertNotEqual(rc, 0)
        self.assertIn("another sender is listening on %s" % self.sock, err)
        self.assertTrue(stat.S_ISSOCK(os.lstat(self.sock).st_mode))

        # a group/world-writable directory without the sticky bit
        loose = os.path.join(self.dir, "loose")
        os.mkdir(loose)
        os.chmod(loose, 0o777)
        rc, out, err = self.run_cmd(["serve", "--socket", os.path.join(loose, "s.sock")], cfg)
        self.assertNotEqual(rc, 0)
        self.assertIn("must be a directory owned by root", err)
        self.assertEqual(os.listdir(loose), [])
        os.chmod(loose, 0o775)
        rc, out, err = self.run_cmd(["serve", "--socket", os.path.join(loose, "s.sock")], cfg)
        self.assertNotEqual(rc, 0)
        self.assertIn("must be a directory owned by root", err)

        # a regular file in the way is refused and left alone
        f = os.path.join(self.dir, "file.sock")
        with open(f, "w") as fh:
            fh.write("precious\n")
        os.chmod(f, 0o640)
        rc, out, err = self.run_cmd(["serve", "--socket", f], cfg)
        self.assertNotEqual(rc, 0)
        self.assertIn("exists and is not a socket", err)
        with open(f) as fh:
            self.assertEqual(fh.read(), "precious\n")
        self.assertEqual(stat.S_IMODE(os.stat(f).st_mode), 0o640)

        # a relative path, and serve with arguments
        rc, out, err = self.run_cmd(["serve", "--socket", "rel.sock"], cfg)
        self.assertNotEqual(rc, 0)
        self.assertIn("must be absolute", err)
        rc, out, err = self.run_cmd(["serve", "extra"], cfg)
        self.assertEqual(rc, 64, err)
        self.assertIsNone(p.poll(), "the listening sender was disturbed")
        self.wait_sender_exit(p, sock=self.sock)

    def test_sticky_world_writable_dir_is_accepted(self):
        d = os.path.join(self.dir, "tmp")
        os.mkdir(d)
        os.chmod(d, 0o1777)
        sock = os.path.join(d, "s.sock")
        cfg = self.config(sock=sock)
        p = self.start_sender(cfg)
        self.assertEqual(stat.S_IMODE(os.lstat(sock).st_mode), 0o600)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assert_audited_by(p.pid, "removed", "alice")
        self.wait_sender_exit(p, sock=sock)


# ====================================================================== load

class SenderConcurrencyTest(SenderTestCase):

    N = 12 if not WRAPPER else 8
    RATE = 5

    def test_parallel_removes_share_one_paced_connection(self):
        ids = ["p%02d" % i for i in range(self.N)]
        self.sim.set_members(members_with(ids))
        self.sim.configure(rate_limit=self.RATE)
        self.addCleanup(self.sim.configure, rate_limit=0)
        idle = IDLE + (10 if WRAPPER else 0)
        cfg = self.config(users=users_for(ids), rate_limit=self.RATE, idle=idle)
        p = self.start_sender(cfg)
        env = dict(os.environ)
        env.update(shim_env(self.syslog))
        procs = [subprocess.Popen(WRAPPER + [pslib.command_path(), "--config", cfg, "remove",
                                             "u" + i], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                  text=True) for i in ids]
        for i, c in zip(ids, procs):
            out, err = c.communicate(timeout=60 * SLOW)
            self.outputs.append(out + err)
            self.assertEqual(c.returncode, 0, "u%s: %s" % (i, err))
            self.assertEqual(out, "u%s: removed from acme (user %s)\n" % (i, i))
        st = self.sim.stats()
        self.assertEqual(st["connections"], 1, st)
        self.assertEqual(st["max_inflight"], 1, st)
        self.assertEqual(st["rate_limited"], 0, "the sender went over api.rate_limit: %r" % st)
        # each removal looks first (GET 200), then deletes (204)
        self.assertEqual(st["status_counts"], {"200": self.N, "204": self.N}, st)
        # the simulator's request log: one connection, one request at a time,
        # never more than api.rate_limit in any second
        dels = self.deletes()
        self.assertEqual(len(dels), self.N)
        self.assertEqual({r["conn"] for r in dels}, {dels[0]["conn"]}, "one API connection")
        starts = sorted(r["t_start"] for r in dels)
        for a, b in zip(dels, dels[1:]):
            self.assertGreaterEqual(b["t_start"], a["t_end"], "two requests at once")
        for i, t in enumerate(starts):
            in_window = [u for u in starts[i:] if u - t < 1.0]
            self.assertLessEqual(len(in_window), self.RATE,
                                 "more than api.rate_limit requests within a second")
        self.assertEqual(self.sim.members_of("acme"), ["adm0acme"])
        self.assertEqual(len(self.audit_of(p.pid, "removed")), self.N)
        self.assert_queue_clean()
        self.wait_sender_exit(p, idle=idle, sock=self.sock)


# ====================================================================== clients at once

def serve_limit(name):
    """A limit of `serve` as src/sender_serve.h defines it."""
    top = os.environ.get("top_srcdir") or os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(top, "src", "sender_serve.h")) as f:
        for line in f:
            parts = line.split()
            if parts[:2] == ["#define", name]:
                return int(parts[2])
    raise AssertionError("%s not found in src/sender_serve.h" % name)


READ_WAIT = 5                       # seconds serve gives a client for its next line


class SenderClientsTest(SenderTestCase):
    """Clients are served at once: idle, slow and hostile ones, and a slow
    API, delay no other client's hand-off."""

    USERS = CLIENT_USERS

    def test_idle_and_slow_clients_do_not_delay_a_handoff(self):
        cfg = self.config(users=self.USERS)
        p = self.start_sender(cfg)
        t_connect = time.monotonic()
        silent = [RawClient(self.sock, timeout=30 * SLOW) for _ in range(3)]
        half = RawClient(self.sock, timeout=30 * SLOW)
        half.send(("HELLO 1 %s" % self.sim.url).encode())        # no end of line
        ready = RawClient(self.sock, timeout=30 * SLOW)
        self.assertEqual(self.say_hello(ready), "READY")                # then nothing
        slow = [RawClient(self.sock, timeout=30 * SLOW) for _ in range(2)]
        for c in slow:                                               # a byte at a time
            c.send(b"HE")
        try:
            t0 = time.monotonic()
            rc, out, err = self.run_cmd(["remove", "alice"], cfg)
            took = time.monotonic() - t0
            self.assertEqual(rc, 0, err)
            self.assertEqual(out, "alice: removed from acme (user d4xkq1abc)\n")
            self.assert_audited_by(p.pid, "removed", "alice")
            self.assertLess(took, 1.5 * SLOW, "a hand-off waited behind idle clients")
            # the pam-helper's hand-off too, while they still hang on
            rc, out, err = self.run_cmd(["pam-helper", "--mode", "service", "--service",
                                         "planetscale-deprovision", "--deadline", "20",
                                         "--config", cfg, "--", "carol"])
            self.assertEqual((rc, out), (0, "removed\n"), err)
            if not WRAPPER:
                self.assertLess(time.monotonic() - t_connect, READ_WAIT,
                                "the test did not run while the idle clients were connected")
            # each idle client is ended by its own deadline for its line
            for c in silent + [half, ready] + slow:
                self.assertEqual(c.line(), "REFUSE bad request")
                self.assertIsNone(c.line())
            waited = time.monotonic() - t_connect
            self.assertGreaterEqual(waited, READ_WAIT - 0.5)
            self.assertLess(waited, READ_WAIT + 3 * SLOW)
        finally:
            for c in silent + [half, ready] + slow:
                c.close()
        self.assertEqual(self.sim.stats()["connections"], 1)
        self.assert_queue_clean()
        self.wait_sender_exit(p, sock=self.sock)

    def test_client_that_never_reads_its_answer(self):
        name = self.pending("bob")
        cfg = self.config(users=self.USERS)
        p = self.start_sender(cfg)
        c = RawClient(self.sock)
        try:
            self.assertEqual(self.say_hello(c), "READY")
            self.hand_over(c, name)
            # it reads nothing more; others are served meanwhile
            for login in ("alice", "carol"):
                t0 = time.monotonic()
                rc, out, err = self.run_cmd(["remove", login], cfg)
                self.assertEqual(rc, 0, err)
                self.assertLess(time.monotonic() - t0, 1.5 * SLOW)
                self.assert_audited_by(p.pid, "removed", login)
            self.wait_for(lambda: name not in self.queue_files(), 10 * SLOW,
                          "the handed-over entry to be settled")
            self.assert_audited_by(p.pid, "removed", "bob")
            self.assertNotIn("x9z8", self.sim.members_of("acme-eu"))
            # its answer waited for it in the socket, and then the end
            self.assertEqual(c.line(), "ACCEPT")
            self.assertRegex(c.line(), r"^DONE removed 204 2 ")
            self.assertIsNone(c.line())
        finally:
            c.close()
        self.assertEqual(self.sim.stats()["connections"], 1)
        self.assert_queue_clean()
        self.wait_sender_exit(p, sock=self.sock)

    def test_api_slowdown_does_not_hold_ready_or_accept(self):
        name = self.pending("carol")
        delay = 4 * SLOW
        cfg = self.config(users=self.USERS, retries=1, timeout=delay + 10)
        p = self.start_sender(cfg)
        self.sim.set_faults(["delay:%d;method=DELETE" % delay])
        env = dict(os.environ)
        env.update(shim_env(self.syslog))
        slow = subprocess.Popen(WRAPPER + [pslib.command_path(), "--config", cfg, "remove",
                                           "alice"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                text=True)
        self.wait_for(lambda: self.sim.stats()["inflight"] > 0, 30 * SLOW,
                      "the slow DELETE to reach the simulator")
        t_slow = time.monotonic()
        c = RawClient(self.sock)
        try:
            # READY and ACCEPT while the API takes its time
            t0 = time.monotonic()
            self.assertEqual(self.say_hello(c), "READY")
            self.hand_over(c, name)
            self.assertEqual(c.line(), "ACCEPT")
            self.assertLess(time.monotonic() - t0, 0.5 * SLOW, "READY/ACCEPT waited for the API")
            # check's probe is answered too
            rc, out, err = self.run_cmd(["check"], cfg)
            self.assertIn("running: removals are handed to it", out + err)
            # a removal with a short deadline, behind the slow one: told
            # "queued" by its deadline, with the reason, and kept
            t0 = time.monotonic()
            rc, out, err = self.run_cmd(["remove", "--deadline", "2", "bob"], cfg)
            took = time.monotonic() - t0
            self.assertEqual(rc, 75, err)
            self.assertIn("bob: NOT removed yet: queued for retry (pending in the spool): "
                          "waited behind other removals until its deadline; kept in the queue "
                          "for retry", err)
            self.assertLess(took, 2 + MARGIN)
            self.assertLess(time.monotonic() - t_slow, delay, "the test outran the slow DELETE")
            self.assert_audited_by(p.pid, "queued", "bob")
            self.assertIn(pslib.entry_name("bob", "acme-eu", "x9z8"), self.queue_files())
            # the slow one completes, then the one handed over behind it
            out, err = slow.communicate(timeout=60 * SLOW)
            self.outputs.append(out + err)
            self.assertEqual(slow.returncode, 0, err)
            self.assertEqual(out, "alice: removed from acme (user d4xkq1abc)\n")
            self.assertRegex(c.line(), r"^DONE removed 204 2 ")
        finally:
            c.close()
            if slow.poll() is None:
                slow.kill()
                slow.communicate()
        dels = self.deletes()
        self.assertEqual([r["path"].rsplit("/", 1)[1] for r in dels], ["d4xkq1abc", "c4rol"],
                         "bob's entry was sent after all")
        self.assertEqual(len({r["conn"] for r in dels}), 1, "one API connection")
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("x9z8", self.sim.members_of("acme-eu"))
        self.assert_queue_clean()
        self.wait_sender_exit(p, sock=self.sock)

    def test_clients_beyond_the_cap_are_refused(self):
        cap = serve_limit("PS_SERVE_MAX_CLIENTS")
        cfg = self.config(users=self.USERS)
        p = self.start_sender(cfg)
        conns = []
        try:
            conns = [RawClient(self.sock, timeout=30 * SLOW) for _ in range(cap)]
            extra = RawClient(self.sock, timeout=10 * SLOW)
            t0 = time.monotonic()
            self.assertEqual(extra.line(), "REFUSE busy: too many clients")
            self.assertIsNone(extra.line())
            extra.close()
            self.assertLess(time.monotonic() - t0, 1.0 * SLOW)
            self.assertTrue(any("%d clients connected already; one more refused" % cap in l
                                for l in self.lines_of(p.pid)))
            if not WRAPPER:     # valgrind is too slow to finish within their read wait
                rc, out, err = self.run_cmd(["--verbose", "remove", "alice"], cfg)
                self.assertEqual(rc, 0, err)
                self.assertRegex(err, r"sender \S+: (REFUSE busy: too many clients|no READY); "
                                 "sending directly")
                self.assertEqual(self.audit_of(p.pid), [], "the sender took it after all")
                self.assertEqual(len(self.audit("removed")), 1)
        finally:
            for c in conns:
                c.close()
        # room again: served
        rc, out, err = self.run_cmd(["remove", "carol"], cfg)
        self.assertEqual(rc, 0, err)
        self.assert_audited_by(p.pid, "removed", "carol")
        self.assert_queue_clean()
        self.wait_sender_exit(p, sock=self.sock)


# ====================================================================== stop

class SenderStopTest(SenderTestCase):

    def test_sigterm_and_sigint_remove_the_socket_it_bound(self):
        cfg = self.config(idle=0)
        for sig in (signal.SIGTERM, signal.SIGINT):
            p = self.start_sender(cfg)
            self.assertTrue(stat.S_ISSOCK(os.lstat(self.sock).st_mode))
            rc, out, err = self.run_cmd(["remove", "alice"], cfg)
            self.assertEqual(rc, 0, err)
            p.send_signal(sig)
            p.wait(20 * SLOW)
            self.assertEqual(p.returncode, 0, self.sender_err(p))
            self.assertFalse(os.path.lexists(self.sock), "the socket file was left behind")
            self.assertTrue(any("sender: %s, stopping" % sig.name in l
                                for l in self.lines_of(p.pid)))
            self.sim.reset()
        # a socket from systemd is systemd's: kept
        path = os.path.join(self.dir, "systemd.sock")
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(path)
        ls.listen(16)
        argv = ["sh", "-c", 'exec 3<&%d; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"' % ls.fileno(),
                "sh"] + self.sender_argv(cfg)
        p = self.start_sender(cfg, argv=argv, pass_fds=[ls.fileno()])
        ls.close()
        p.send_signal(signal.SIGTERM)
        p.wait(20 * SLOW)
        self.assertEqual(p.returncode, 0, self.sender_err(p))
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode), "systemd's socket was removed")

    def test_sigterm_lets_the_request_in_flight_finish(self):
        cfg = self.config(idle=0)
        p = self.start_sender(cfg)
        self.sim.set_faults(["delay:2;method=DELETE"])   # shorter than its 5 s of grace
        env = dict(os.environ)
        env.update(shim_env(self.syslog))
        c = subprocess.Popen(WRAPPER + [pslib.command_path(), "--config", cfg, "remove",
                                        "alice"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        self.wait_for(lambda: self.sim.stats()["inflight"] > 0, 30 * SLOW,
                      "the DELETE to reach the simulator")
        p.send_signal(signal.SIGTERM)
        # it stops listening at once: new removals are sent directly
        self.wait_for(lambda: not os.path.lexists(self.sock), 2 * SLOW,
                      "the socket file to be removed")
        out, err = c.communicate(timeout=30 * SLOW)
        self.outputs.append(out + err)
        self.assertEqual(c.returncode, 0, err)
        self.assertEqual(out, "alice: removed from acme (user d4xkq1abc)\n")
        self.assert_audited_by(p.pid, "removed", "alice")
        p.wait(20 * SLOW)
        self.assertEqual(p.returncode, 0, self.sender_err(p))
        self.assert_queue_clean()

    def test_sigterm_does_not_wait_long_for_the_api(self):
        cfg = self.config(idle=0, users=CLIENT_USERS, retries=1, timeout=30)
        name = self.pending("carol")
        p = self.start_sender(cfg)
        self.sim.set_faults(["delay:20;method=DELETE"])
        env = dict(os.environ)
        env.update(shim_env(self.syslog))
        c = subprocess.Popen(WRAPPER + [pslib.command_path(), "--config", cfg, "remove",
                                        "alice"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        self.wait_for(lambda: self.sim.stats()["inflight"] > 0, 30 * SLOW,
                      "the DELETE to reach the simulator")
        raw = RawClient(self.sock)
        try:
            self.assertEqual(self.say_hello(raw), "READY")
            self.hand_over(raw, name)
            self.assertEqual(raw.line(), "ACCEPT")
            t0 = time.monotonic()
            p.send_signal(signal.SIGTERM)
            # what it had not begun is answered at once, and kept
            self.assertEqual(raw.line(), "DONE queued 0 0 the sender is stopping; kept in the "
                             "queue for retry")
            self.assertLess(time.monotonic() - t0, 1.0 * SLOW)
        finally:
            raw.close()
        # the request in flight gets a few seconds, then the sender ends by
        # the signal: the entry stays for retry
        p.wait(30 * SLOW)
        took = time.monotonic() - t0
        self.assertEqual(p.returncode, -signal.SIGTERM, self.sender_err(p))
        self.assertGreater(took, 4.5)
        self.assertLess(took, 5 + 5 * SLOW)
        self.assertFalse(os.path.lexists(self.sock))
        self.assertTrue(any("stopping with a request in flight" in l
                            for l in self.lines_of(p.pid)))
        out, err = c.communicate(timeout=30 * SLOW)
        self.outputs.append(out + err)
        self.assertEqual(c.returncode, 75, err)
        self.assertIn("handed to the sender", err)
        self.assertEqual(sorted(n for n in self.queue_files() if not n.startswith(".")),
                         sorted([name, pslib.entry_name("alice", "acme", "d4xkq1abc")]))
        self.sim.set_faults([])
        self.sim.wait_idle(30)
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))
        self.assertNotIn("c4rol", self.sim.members_of("acme"))
        self.assert_queue_clean()


# ====================================================================== root

def nobody_env(syslog):
    env = {"PATH": "/usr/bin:/bin"}
    for k in ("LD_PRELOAD", "LD_LIBRARY_PATH", "ASAN_OPTIONS", "LSAN_OPTIONS",
              "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update(shim_env(syslog))
    return env


def as_nobody(fn, *args):
    """Runs fn(write, *args) in a forked child that dropped to uid/gid
    nobody; returns (pid, a file reading what the child writes)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                  # the child: never returns into unittest
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            out = os.fdopen(w, "w", buffering=1)
            fn(out, *args)
        except BaseException as e:  # noqa: B036 - reported through the pipe
            try:
                os.write(w, ("child error: %r\n" % e).encode())
            except OSError:
                pass
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    return pid, os.fdopen(r, "rb", buffering=0)


def reap(pid, kill=False):
    if kill:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return os.waitpid(pid, 0)[1]


def nobody_read_answer(out, path):
    """A client running as nobody: connects and reports the first line."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(path)
    data = b""
    while not data.endswith(b"\n"):
        d = s.recv(100)
        if not d:
            break
        data += d
    out.write("answer %r\n" % data.decode())


def nobody_fake_sender(out, path):
    """A "sender" running as nobody that answers a whole exchange at once,
    hoping to be believed, and reports what each client said."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(8)
    out.write("listening\n")
    while True:
        c, _ = s.accept()
        try:
            c.sendall(b"READY\nACCEPT\nDONE removed 204 1 faked\n")
        except OSError:
            pass
        c.settimeout(5)
        got = b""
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                got += d
        except OSError:
            pass
        out.write("got %r\n" % got)
        c.close()


def read_line_within(f, timeout):
    """The next line the child wrote, None when none came in time (read a
    byte at a time: nothing may wait in a buffer that select cannot see)."""
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([f], [], [], left)[0]:
            return None
        b = os.read(f.fileno(), 1)
        if not b:
            return None
        line += b
    return line.decode()


@unittest.skipIf(os.geteuid() != 0, "needs root: runs processes as uid nobody (65534)")
class SenderCredentialsTest(SenderTestCase):

    def tmpdir_for(self, uid, mode):
        d = tempfile.mkdtemp(prefix="ps-cred-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chown(d, uid, uid)
        os.chmod(d, mode)
        return d

    def test_client_of_another_uid_is_refused(self):
        shared = self.tmpdir_for(0, 0o755)
        sock = os.path.join(shared, "s.sock")
        cfg = self.config(sock=sock, users=[{"login": "carol", "id": "c4rol"}])
        p = self.start_sender(cfg)
        os.chmod(sock, 0o666)       # for the test: nobody may connect

        # a raw client running as nobody
        pid, f = as_nobody(nobody_read_answer, sock)
        with f:
            answer = read_line_within(f, 30)
        self.assertEqual(reap(pid, kill=answer is None), 0)
        self.assertEqual(answer, "answer 'REFUSE permission denied\\n'\n")
        self.assertTrue(any("refused a client running as uid %d" % NOBODY in l
                            for l in self.lines_of(p.pid)))

        # the real command as nobody, with its own config and queue: refused
        # by the sender, it sends directly
        home = self.tmpdir_for(NOBODY, 0o700)
        ca = os.path.join(home, "ca.pem")
        shutil.copy(self.sim.ca_file, ca)
        os.chown(ca, NOBODY, NOBODY)
        ncfg = pslib.write_config(home, sim=self.sim, ca_file=ca, extra=sender_block(sock),
                                  users=[{"login": "carol", "id": "c4rol"}])
        for root, dirs, files in os.walk(home):
            for n in dirs + files:
                os.chown(os.path.join(root, n), NOBODY, NOBODY)
        nlog = os.path.join(home, "syslog")
        r = subprocess.run(WRAPPER + [pslib.command_path(), "--verbose", "--config", ncfg,
                                      "remove", "carol"],
                           user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True,
                           text=True, timeout=60 * SLOW, env=nobody_env(nlog))
        self.outputs.append(r.stdout + r.stderr)
        self.assertEqual(r.returncode, 0, r.stderr)
        # (the sender refuses at once: the client reads that, or finds the
        # connection closed when it writes its HELLO)
        self.assertRegex(r.stderr, "sender %s: (REFUSE permission denied|no READY); "
                         "sending directly" % sock)
        self.assertEqual(len(self.deletes_of("c4rol")), 1)
        self.assertEqual(self.audit_of(p.pid), [], "the sender sent for another uid")
        self.assertEqual([n for n in os.listdir(os.path.join(home, "queue"))
                          if n not in ("dead", "invalid")], [])
        self.wait_sender_exit(p, sock=sock)

    def test_sender_of_another_uid_is_ignored(self):
        d = self.tmpdir_for(NOBODY, 0o755)
        sock = os.path.join(d, "s.sock")
        pid, fake = as_nobody(nobody_fake_sender, sock)
        try:
            self.assertEqual(read_line_within(fake, 30), "listening\n")
            cfg = self.config(sock=sock, retries=1)
            # the API fails: a believed fake would turn it into "removed"
            self.sim.set_faults(["status:503;count=-1;method=DELETE"])
            rc, out, err = self.run_cmd(["remove", "alice"], cfg)
            self.assertEqual(rc, 75, err)
            self.assertIn("belongs to uid %d, neither root nor us: not used" % NOBODY, err)
            self.assertEqual(len(self.deletes_of("d4xkq1abc")), 1)
            self.sim.set_faults([])
            rc, out, err = self.run_cmd(["remove", "alice"], cfg)
            self.assertEqual(rc, 0, err)
            self.assertNotIn("faked", out + err)
            self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))
            self.assert_queue_clean()
            self.assertTrue(any("neither root nor us" in l for l in self.syslog_lines()))
            # the client hung up at once: it did not even say HELLO
            self.assertEqual([read_line_within(fake, 10), read_line_within(fake, 10)],
                             ["got b''\n", "got b''\n"])
        finally:
            reap(pid, kill=True)
            fake.close()


if __name__ == "__main__":
    unittest.main()
