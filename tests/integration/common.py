"""Shared fixtures of the integration tests: a simulator per test class, a
temp dir per test, the command run with syslog captured to a file (test-only
LD_PRELOAD shim), and the check that no secret ever leaks."""

import json
import os
import shutil
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import pslib  # noqa: E402

SECRETS = (pslib.TOKEN, pslib.OAUTH_TOKEN)


def shim_env(logfile):
    env = {"PS_SYSLOG_FILE": logfile,
           pslib.UNRESOLVED_ENV: os.path.join(os.path.dirname(logfile), "unresolved")}
    shim = os.environ.get("PS_SYSLOG_SHIM", "")
    if shim and os.path.exists(shim):
        pre = os.environ.get("LD_PRELOAD", "")
        env["LD_PRELOAD"] = (pre + " " + shim).strip()
        env["ASAN_OPTIONS"] = (os.environ.get("ASAN_OPTIONS", "") +
                               ":verify_asan_link_order=0").lstrip(":")
    return env


class SimTestCase(unittest.TestCase):
    """One simulator for the class (reset before each test), a fresh temp
    dir and config per test."""

    sim_kwargs = {}

    @classmethod
    def setUpClass(cls):
        cls.sim = pslib.Simulator(**cls.sim_kwargs).start()

    @classmethod
    def tearDownClass(cls):
        cls.sim.stop()

    def setUp(self):
        # a request the previous test abandoned (timeouts, deadlines) must
        # not land in this test's log
        self.sim.set_faults([])
        self.sim.wait_idle(15)
        self.sim.set_members(pslib.DEFAULT_MEMBERS)
        self.sim.reset()
        self.dir = tempfile.mkdtemp(prefix="ps-it-")
        os.chmod(self.dir, 0o700)
        self.syslog = os.path.join(self.dir, "syslog")
        self.outputs = []

    def tearDown(self):
        try:
            self.assert_no_secret_anywhere()
        finally:
            shutil.rmtree(self.dir, True)

    def config(self, **kw):
        kw.setdefault("sim", self.sim)
        return pslib.write_config(self.dir, **kw)

    def run_cmd(self, args, config=None, input=None, timeout=120, env=None):
        e = shim_env(self.syslog)
        e.update(env or {})
        rc, out, err = pslib.run_cmd(args, config, input=input, timeout=timeout, env=e)
        self.outputs.append(out + err)
        if rc == 99 and os.environ.get("TEST_WRAPPER"):
            self.fail("the test wrapper (valgrind) reported errors:\n" + err)
        return rc, out, err

    def syslog_lines(self):
        try:
            with open(self.syslog, encoding="utf-8", errors="replace") as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def audit(self, outcome=None):
        lines = [l for l in self.syslog_lines() if "outcome=" in l]
        if outcome:
            lines = [l for l in lines if "outcome=%s " % outcome in l]
        return lines

    def assert_no_secret_anywhere(self):
        texts = self.outputs + ["\n".join(self.syslog_lines())]
        qdir = os.path.join(self.dir, "queue")
        for root, _dirs, files in os.walk(qdir):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    texts.append(f.read().decode("utf-8", "replace"))
        for t in texts:
            for s in SECRETS:
                self.assertNotIn(s, t, "a secret leaked into output, syslog or the queue")

    def queue_entries(self, sub=""):
        d = os.path.join(self.dir, "queue", sub)
        if not os.path.isdir(d):
            return []
        return sorted(n for n in os.listdir(d) if n.endswith(".json"))

    def deletes(self):
        return self.sim.deletes()

    def queue_json(self, cfg):
        """`queue --json`: every entry of the spool, with its state."""
        rc, out, err = self.run_cmd(["--json", "queue"], cfg)
        self.assertIn(rc, (0, 78), err)
        return json.loads(out)
