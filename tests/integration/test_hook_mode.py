"""`remove --hook`, what the userdel hook and deluser.local run, against the
HTTPS simulator (no root needed; tests/integration/test_hooks.py runs the
real userdel).

What is checked: a hook waits at most hook_deadline seconds (default 5,
configurable, --deadline wins) and leaves the recorded removal pending;
for a minute after that, hooks for the same API record their removal and
leave it pending without waiting (the note .api-unanswered in the spool),
while `remove` by hand still sends; a note for another API, an old one or
one that is not ours changes nothing; a completed hook removal deletes the
note; a running sender gets the hook's removal and keeps the hook's
deadline; an unmapped login makes a hook print nothing (the audit line is
at debug level) while `remove` by hand still says so."""

import json
import os
import subprocess
import time

from common import SimTestCase, pslib, shim_env

WRAPPER = os.environ.get("TEST_WRAPPER", "").split()
SLOW = 6 if WRAPPER else 1
MARGIN = 2.5 if not WRAPPER else 10   # seconds a command may take past its wait
NOTE = ".api-unanswered"
HANG = "delay:60;count=-1"            # every request hangs (until its client leaves)


class HookModeTest(SimTestCase):

    def note_path(self):
        return os.path.join(self.dir, "queue", NOTE)

    def write_note(self, at, api=None, mode=0o600, text=None):
        path = self.note_path()
        if text is None:
            text = json.dumps({"at": int(at), "api": api or self.sim.url,
                               "reason": "GET: Operation timed out"})
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(path, mode)

    def timed(self, args, cfg, **kw):
        t0 = time.monotonic()
        rc, out, err = self.run_cmd(args, cfg, **kw)
        return rc, out, err, time.monotonic() - t0

    def entry(self, login="alice", org="acme", id_="d4xkq1abc"):
        for e in self.queue_json(self.config_path):
            if e.get("login") == login and e.get("organization") == org and e.get("id") == id_:
                return e
        return None

    def config(self, **kw):
        self.config_path = super().config(**kw)
        return self.config_path

    # ------------------------------------------------------------ the wait

    def test_default_wait_then_pending_and_noted(self):
        cfg = self.config(timeout=30, retries=3)
        self.sim.set_faults([HANG])
        rc, out, err, took = self.timed(["remove", "--hook", "alice"], cfg)
        self.assertEqual(rc, 75, err)
        self.assertEqual(out, "")
        self.assertIn("alice: NOT removed yet: queued for retry", err)
        self.assertGreater(took, 4.0, "waited the default 5 s, not less")
        self.assertLess(took, 5 + MARGIN, "waited at most the default 5 s")
        e = self.entry()
        self.assertIsNotNone(e, "the removal is in the spool")
        self.assertEqual(e["state"], "pending")
        with open(self.note_path()) as f:
            note = json.load(f)
        self.assertEqual(sorted(note), ["api", "at", "reason"])
        self.assertEqual(note["api"], self.sim.url)
        self.assertLessEqual(abs(note["at"] - time.time()), 10 * SLOW)
        self.assertEqual(os.stat(self.note_path()).st_mode & 0o777, 0o600)
        self.assertEqual(self.queue_entries(), [e["name"]], "the note is not an entry")

    def test_hook_deadline_from_the_configuration_and_deadline_wins(self):
        cfg = self.config(timeout=30, retries=3, extra="hook_deadline = 1.5;\n")
        self.sim.set_faults([HANG])
        rc, out, err, took = self.timed(["remove", "--hook", "alice"], cfg)
        self.assertEqual(rc, 75, err)
        self.assertGreater(took, 1.2)
        self.assertLess(took, 1.5 + MARGIN, "hook_deadline = 1.5 kept")
        os.unlink(self.note_path())
        # --deadline given with --hook: it decides
        rc, out, err, took = self.timed(["remove", "--hook", "--deadline", "3", "bob"], cfg)
        self.assertEqual(rc, 75, err)
        self.assertGreater(took, 2.7, "--deadline 3 wins over hook_deadline")
        self.assertLess(took, 3 + MARGIN)
        # without --hook, hook_deadline does not apply
        os.unlink(self.note_path())
        rc, out, err, took = self.timed(["remove", "--deadline", "2.5", "alice"], cfg)
        self.assertEqual(rc, 75, err)
        self.assertGreater(took, 2.2)

    def test_bad_hook_deadline_is_a_configuration_error(self):
        for value, words in (("0", "out of range"), ("301", "out of range"),
                             ('"5"', "a number"), ("-1", "out of range")):
            cfg = self.config(extra="hook_deadline = %s;\n" % value)
            rc, out, err = self.run_cmd(["check"], cfg)
            self.assertEqual(rc, 78, err)
            self.assertIn("deprovision.conf:", err)
            self.assertIn("hook_deadline", err)
            self.assertIn(words, err)
        cfg = self.config(extra="hook_deadline = 2;\n")
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 0, err)

    def test_hook_is_only_for_remove(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["retry", "--hook"], cfg)
        self.assertEqual(rc, 64)
        self.assertIn("--hook does not go with retry", err)

    # ------------------------------------------------------------ the note

    def test_hooks_after_an_unanswered_one_do_not_wait(self):
        users = [{"login": "u%02d" % i, "id": "u%02dx" % i} for i in range(10)]
        self.sim.add_members("acme", [{"id": u["id"], "email": u["login"] + "@example.com",
                                       "name": u["login"], "role": "member"} for u in users])
        cfg = self.config(users=users, timeout=30, extra="hook_deadline = 2;\n")
        self.sim.set_faults([HANG])
        rc, out, err, took = self.timed(["remove", "--hook", "u00"], cfg)
        self.assertEqual(rc, 75, err)
        self.assertGreater(took, 1.7)
        self.sim.wait_idle(15)
        self.sim.reset()
        t0 = time.monotonic()
        for u in users[1:]:
            rc, out, err, took = self.timed(["remove", "--hook", u["login"]], cfg)
            self.assertEqual(rc, 75, err)
            self.assertIn("not sent: the API did not answer another removal", err)
            self.assertIn("left pending for the retry timer", err)
            self.assertLess(took, 1.5 * SLOW, "did not wait")
        self.assertLess(time.monotonic() - t0, 9 * 1.5 * SLOW)
        self.assertEqual(self.sim.requests(), [], "nothing was sent while the note stands")
        names = {e["login"]: e for e in self.queue_json(cfg)}
        self.assertEqual(sorted(names), [u["login"] for u in users], "every removal recorded")
        for login, e in names.items():
            self.assertEqual(e["state"], "pending", login)
        self.assertEqual(names["u05"]["attempts"], 0)
        self.assertIn("not sent", names["u05"]["last_error"])
        if os.environ.get("PS_SYSLOG_SHIM"):
            self.assertEqual(len(self.audit("queued")), 10, self.syslog_lines())
        # `remove` by hand is not a hook: it sends (and the API answers now)
        self.sim.set_faults([])
        rc, out, err = self.run_cmd(["remove", "u05"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("u05: removed from acme", out)
        # and the retry timer sends the rest
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.queue_entries(), [])
        self.assertEqual(sorted(r["path"].rsplit("/", 1)[1] for r in self.sim.deletes()),
                         [u["id"] for u in users])

    def test_an_old_foreign_or_untrusted_note_changes_nothing(self):
        cfg = self.config()
        now = time.time()
        cases = [("61 s old", dict(at=now - 61)),
                 ("from the future", dict(at=now + 3600)),
                 ("another API", dict(at=now, api="https://127.0.0.1:1/v1")),
                 ("group-writable", dict(at=now, mode=0o620)),
                 ("not JSON", dict(at=now, text="garbage")),
                 ("an unknown field", dict(at=now, text=json.dumps(
                     {"at": int(now), "api": self.sim.url, "reason": "", "x": 1}))),
                 ("at is a string", dict(at=now, text=json.dumps(
                     {"at": str(int(now)), "api": self.sim.url, "reason": ""})))]
        for i, (what, kw) in enumerate(cases):
            login = "alice" if i % 2 == 0 else "bob"
            self.write_note(**kw)
            rc, out, err = self.run_cmd(["remove", "--hook", login], cfg)
            self.assertEqual(rc, 0, "%s: %s" % (what, err))
            self.assertIn("%s: " % login, out, what)
            self.assertNotIn("not sent", err, what)
            self.assertFalse(os.path.lexists(self.note_path()),
                             "%s: a completed hook removal deletes the note" % what)
            self.sim.set_members(pslib.DEFAULT_MEMBERS)
        # a symbolic link is not followed
        target = os.path.join(self.dir, "elsewhere.json")
        with open(target, "w") as f:
            json.dump({"at": int(now), "api": self.sim.url, "reason": "x"}, f)
        os.symlink(target, self.note_path())
        rc, out, err = self.run_cmd(["remove", "--hook", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.exists(target))

    def test_a_fresh_note_skips_and_a_completed_removal_clears_it(self):
        cfg = self.config()
        self.write_note(time.time() - 30)
        rc, out, err = self.run_cmd(["remove", "--hook", "alice"], cfg)
        self.assertEqual(rc, 75, err)
        self.assertIn("not sent", err)
        self.assertEqual(self.sim.requests(), [])
        # the note is 61 s old: the next hook sends, completes, clears it,
        # and an entry left by a skipped hook is settled when sent again
        self.write_note(time.time() - 61)
        rc, out, err = self.run_cmd(["remove", "--hook", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("alice: removed from acme", out)
        self.assertFalse(os.path.exists(self.note_path()))
        self.assertEqual(self.queue_entries(), [])

    # ------------------------------------------------------------ unmapped

    def test_unmapped_hook_is_quiet_remove_by_hand_is_not(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "--hook", "svcfoo"], cfg)
        self.assertEqual((rc, out, err), (0, "", ""))
        lines = self.audit("unmapped")
        if os.environ.get("PS_SYSLOG_SHIM"):
            self.assertEqual(len(lines), 1, self.syslog_lines())
            self.assertTrue(lines[0].startswith("authpriv.debug"), lines[0])
        # several logins: only the mapped one speaks
        rc, out, err = self.run_cmd(["remove", "--hook", "svcfoo", "alice", "svcbar"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "alice: removed from acme (user d4xkq1abc)\n")
        self.assertEqual(err, "")
        # by hand, an administrator who typed a login hears about it
        rc, out, err = self.run_cmd(["remove", "svcfoo"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "svcfoo: not mapped to a PlanetScale user, nothing to do\n")
        # --json stays complete
        rc, out, err = self.run_cmd(["--json", "remove", "--hook", "svcfoo"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual([(j["login"], j["outcome"]) for j in json.loads(out)],
                         [("svcfoo", "unmapped")])

    def test_unmapped_hook_with_the_shipped_configuration(self):
        # a fresh installation: the sample configuration, everything in it
        # commented out; a package's maintainer script removes its user
        shipped = os.path.join(pslib.TOP_SRCDIR, "etc", "deprovision.conf")
        cfg = os.path.join(self.dir, "shipped.conf")
        with open(shipped) as src, open(cfg, "w") as dst:
            dst.write(src.read())
        os.chmod(cfg, 0o600)
        rc, out, err = self.run_cmd(["remove", "--hook", "svcfoo"], cfg)
        self.assertEqual((rc, out, err), (0, "", ""))
        self.assertEqual(self.sim.requests(), [])

    def test_unmapped_error_still_speaks(self):
        cfg = self.config(unmapped="error")
        rc, out, err = self.run_cmd(["remove", "--hook", "svcfoo"], cfg)
        self.assertEqual(rc, 1)
        self.assertIn("svcfoo", err)


class HookSenderTest(SimTestCase):
    """A hook hands its removal to a running sender, within its own wait."""

    def setUp(self):
        super().setUp()
        self.senders = []

    def tearDown(self):
        for p, errpath in self.senders:
            self.stop_sender(p, errpath)
        super().tearDown()

    def start_sender(self, cfg):
        errpath = os.path.join(self.dir, "sender.err")
        env = dict(os.environ)
        env.update(shim_env(self.syslog))
        with open(errpath, "wb") as err:
            p = subprocess.Popen(WRAPPER + [pslib.command_path(), "--verbose", "--config", cfg,
                                            "serve"],
                                 stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=env)
        self.senders.append((p, errpath))
        deadline = time.monotonic() + 30 * SLOW
        while not any("sender: serving removals on" in l and "[%d]: " % p.pid in l
                      for l in self.syslog_lines()):
            self.assertIsNone(p.poll(), "the sender exited")
            self.assertLess(time.monotonic(), deadline, "the sender did not start")
            time.sleep(0.02)
        return p

    def stop_sender(self, p, errpath):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(20 * SLOW)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        with open(errpath, encoding="utf-8", errors="replace") as f:
            self.outputs.append(f.read())

    def test_hook_hands_over_to_the_sender_within_its_wait(self):
        if not os.access(pslib.command_path(), os.X_OK):
            self.skipTest("command not built")
        sock = os.path.join(self.dir, "s.sock")
        wait = 2 * SLOW
        cfg = self.config(timeout=30, extra="hook_deadline = %d;\n" % wait +
                          "sender = { socket = %s; idle_timeout = 60; };\n"
                          % pslib.cfg_value(sock))
        p = self.start_sender(cfg)
        rc, out, err = self.run_cmd(["--verbose", "remove", "--hook", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out, "alice: removed from acme (user d4xkq1abc)\n")
        self.assertIn("sender %s: removed" % sock, err)
        by_sender = [l for l in self.audit("removed") if "[%d]: " % p.pid in l]
        if os.environ.get("PS_SYSLOG_SHIM"):
            self.assertEqual(len(by_sender), 1, self.syslog_lines())
        # the API hangs: the hook still returns after its wait, queued
        self.sim.set_faults([HANG])
        t0 = time.monotonic()
        rc, out, err = self.run_cmd(["remove", "--hook", "bob"], cfg)
        took = time.monotonic() - t0
        self.assertEqual(rc, 75, err)
        self.assertLess(took, wait + MARGIN, "the hook's wait holds through the sender")
        self.assertTrue(os.path.exists(os.path.join(self.dir, "queue", NOTE)))
        self.assertIn("x9z8", [e["id"] for e in self.queue_json(cfg)])


if __name__ == "__main__":
    import unittest
    unittest.main()
