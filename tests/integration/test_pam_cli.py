"""pam_planetscale.so end to end: pamtester under pam_wrapper (and
nss_wrapper for shadow states) runs the module, which runs the real command
against the HTTPS simulator."""

import json
import os
import shutil
import subprocess
import time
import unittest

from common import SimTestCase, pslib, shim_env

LIBDIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")


def find_lib(name):
    for d in LIBDIRS:
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    return None


def find_pam_module(name):
    for d in ("/lib/x86_64-linux-gnu/security", "/usr/lib/x86_64-linux-gnu/security",
              "/lib/security", "/usr/lib/security", "/lib64/security"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            return p
    return None


TODAY = int(time.time() // 86400)


class PamFixture(SimTestCase):
    """pamtester under pam_wrapper and nss_wrapper, a service dir, a helper
    wrapper that keeps the test's syslog capture."""

    @classmethod
    def setUpClass(cls):
        cls.pam_wrapper = find_lib("libpam_wrapper.so")
        cls.nss_wrapper = find_lib("libnss_wrapper.so")
        cls.pamtester_bin = shutil.which("pamtester")
        cls.module = os.environ.get("PS_MODULE", "")
        missing = [n for n, v in (("libpam_wrapper.so (libpam-wrapper)", cls.pam_wrapper),
                                  ("libnss_wrapper.so (libnss-wrapper)", cls.nss_wrapper),
                                  ("pamtester", cls.pamtester_bin),
                                  ("the built module (PS_MODULE)",
                                   cls.module and os.path.exists(cls.module)))
                   if not v]
        if missing:
            raise unittest.SkipTest("needs " + ", ".join(missing))
        super().setUpClass()

    def setUp(self):
        super().setUp()
        self.svcdir = os.path.join(self.dir, "pam.d")
        os.mkdir(self.svcdir)
        with open(os.path.join(self.svcdir, "other"), "w") as f:
            f.write("account required %s\n" % find_pam_module("pam_deny.so"))
        # nss_wrapper databases
        self.passwd = os.path.join(self.dir, "passwd")
        self.group = os.path.join(self.dir, "group")
        self.shadow = os.path.join(self.dir, "shadow")
        # The module runs its helper with a clean environment: this wrapper
        # adds back the test's syslog capture and the nss_wrapper databases
        # (the helper reads the shadow entry again, in only_expired).
        self.helper = os.path.join(self.dir, "helper.sh")
        env = self.helper_env()
        wrapper = os.environ.get("TEST_WRAPPER", "")
        with open(self.helper, "w") as f:
            f.write("#!/bin/sh\n")
            for k, v in env.items():
                f.write("export %s='%s'\n" % (k, v))
            f.write("exec %s '%s' \"$@\"\n" % (wrapper, pslib.command_path()))
        os.chmod(self.helper, 0o755)
        with open(self.passwd, "w") as f:
            for i, u in enumerate(("alice", "bob", "carol", "dave")):
                f.write("%s:x:%d:%d::/home/%s:/bin/sh\n" % (u, 2000 + i, 2000 + i, u))
        with open(self.group, "w") as f:
            for i, u in enumerate(("alice", "bob", "carol", "dave")):
                f.write("%s:x:%d:\n" % (u, 2000 + i))
        self.write_shadow({})

    def helper_env(self):
        """What the command needs to see the test's accounts and syslog."""
        env = shim_env(self.syslog)
        env.update({"NSS_WRAPPER_PASSWD": self.passwd, "NSS_WRAPPER_GROUP": self.group,
                    "NSS_WRAPPER_SHADOW": self.shadow})
        env["LD_PRELOAD"] = " ".join(filter(None, (
            os.environ.get("PS_SANITIZER_RUNTIME", ""), self.nss_wrapper,
            env.get("LD_PRELOAD", ""))))
        return env

    def write_shadow(self, expire):
        """expire: login -> sp_expire (days since epoch, '' = never); pw '!'"""
        with open(self.shadow, "w") as f:
            for u in ("alice", "bob", "carol", "dave"):
                e = expire.get(u, "")
                pw = "!" if u != "dave" else "$6$salt$hash"
                f.write("%s:%s:19000:0:99999:7::%s:\n" % (u, pw, e))

    def service(self, name, lines):
        with open(os.path.join(self.svcdir, name), "w") as f:
            f.write("\n".join(lines) + "\n")

    def modline(self, kind, control, *args, cfg):
        return "%s %s %s conf=%s helper=%s %s" % (kind, control, self.module, cfg, self.helper,
                                                 " ".join(args))

    def pamtester(self, service, user, *ops):
        env = dict(os.environ)
        env.update({"LD_PRELOAD": "%s %s" % (self.pam_wrapper, self.nss_wrapper),
                    "PAM_WRAPPER": "1", "PAM_WRAPPER_SERVICE_DIR": self.svcdir,
                    "NSS_WRAPPER_PASSWD": self.passwd, "NSS_WRAPPER_GROUP": self.group,
                    "NSS_WRAPPER_SHADOW": self.shadow})
        env.update(shim_env(self.syslog))
        # An ASan-built module in an uninstrumented pamtester needs the
        # sanitizer runtime loaded first (tests/run-all.sh sets this).
        env["LD_PRELOAD"] = " ".join(filter(None, (
            os.environ.get("PS_SANITIZER_RUNTIME", ""), self.pam_wrapper, self.nss_wrapper)))
        p = subprocess.run([self.pamtester_bin, "-v", service, user] + list(ops), env=env,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
        self.outputs.append(p.stdout + p.stderr)
        return p.returncode, p.stdout + p.stderr



class PamTest(PamFixture):

    def test_dedicated_service_removes(self):
        cfg = self.config()
        self.service("planetscale-deprovision", [self.modline("account", "required", cfg=cfg)])
        rc, out = self.pamtester("planetscale-deprovision", "alice", "acct_mgmt")
        self.assertEqual(rc, 0, out)
        reqs = self.deletes()
        self.assertEqual(len(reqs), 1)
        self.assertTrue(reqs[0]["target"].startswith("/v1/organizations/acme/members/d4xkq1abc?"))
        lines = self.audit("removed")
        self.assertEqual(len(lines), 1, self.syslog_lines())
        self.assertIn("authpriv.info", lines[0])

    def test_refusal_reason_is_in_syslog_and_queue(self):
        """pamtester shows only "Permission denied" for the last admin of an
        organization; the reason is in syslog and, the removal being held,
        in `queue` (pam_planetscale(8), "Where the reason is")."""
        cfg = self.config(users=[{"login": "alice", "id": "adm0acme"}])
        self.service("planetscale-deprovision", [self.modline("account", "required", cfg=cfg)])
        rc, out = self.pamtester("planetscale-deprovision", "alice", "acct_mgmt")
        self.assertNotEqual(rc, 0, out)
        self.assertIn("Permission denied", out)
        self.assertNotIn("last admin", out, "the module never converses")
        held = self.audit("held")
        self.assertEqual(len(held), 1, self.syslog_lines())
        self.assertIn("Cannot remove the last admin", held[0])
        rc, qout, err = self.run_cmd(["queue"], cfg)
        self.assertEqual(rc, 0, err)
        line = [l for l in qout.splitlines() if " alice " in l]
        self.assertEqual(len(line), 1, qout)
        self.assertTrue(line[0].startswith("held "), line[0])
        self.assertIn("Cannot remove the last admin", line[0])

    def test_dedicated_service_queued_is_reported(self):
        self.sim.set_faults(["status:503;count=-1"])
        cfg = self.config(retries=1)
        self.service("planetscale-deprovision", [self.modline("account", "required", cfg=cfg)])
        rc, out = self.pamtester("planetscale-deprovision", "alice", "acct_mgmt")
        self.assertNotEqual(rc, 0, "a queued removal is not reported as done")
        self.assertEqual(len(self.queue_entries()), 1)

    def test_interlock_unlisted_service(self):
        cfg = self.config()
        self.service("sshd", [self.modline("account", "optional", cfg=cfg),
                              "account required " + find_pam_module("pam_permit.so")])
        rc, out = self.pamtester("sshd", "alice", "acct_mgmt")
        self.assertEqual(rc, 0, "the login itself is not affected: " + out)
        self.assertEqual(self.deletes(), [], "a mistaken line in another service removes nobody")
        self.assertTrue(any("not in pam_services" in l for l in self.syslog_lines()),
                        self.syslog_lines())

    def test_interlock_configured_service(self):
        cfg = self.config(pam_services=["offboard"])
        self.service("offboard", [self.modline("account", "required", cfg=cfg)])
        rc, out = self.pamtester("offboard", "bob", "acct_mgmt")
        self.assertEqual(rc, 0, out)
        self.assertEqual(len(self.deletes()), 1)

    def test_only_expired(self):
        cfg = self.config(users=[{"login": u, "id": "d4xkq1abc" if u == "alice" else "x9z8"}
                                 for u in ("alice", "bob")])
        self.service("login", [self.modline("account", "[default=ignore]", "only_expired",
                                            cfg=cfg),
                               "account required " + find_pam_module("pam_permit.so")])
        # valid (no expiry / future expiry): nothing sent, login unchanged
        self.write_shadow({"alice": "", "bob": str(TODAY + 10)})
        for user in ("alice", "bob"):
            rc, out = self.pamtester("login", user, "acct_mgmt")
            self.assertEqual(rc, 0, out)
        self.assertEqual(self.deletes(), [])
        # expired, and the default expired_grace_days (7) past: removed, and
        # the login's outcome is still pam_permit's
        self.write_shadow({"alice": str(TODAY - 7), "bob": str(TODAY + 10)})
        rc, out = self.pamtester("login", "alice", "acct_mgmt")
        self.assertEqual(rc, 0, "only_expired never changes a login's outcome: " + out)
        self.assertEqual(len(self.deletes()), 1)
        self.assertEqual(len(self.audit("removed")), 1)

    def expired_stack(self, *args, **cfgkw):
        cfg = self.config(users=[{"login": u, "id": i} for u, i in
                                 (("alice", "d4xkq1abc"), ("bob", "x9z8"), ("carol", "c4rol"))],
                          **cfgkw)
        self.service("login", [self.modline("account", "[default=ignore]", "only_expired",
                                            *args, cfg=cfg),
                               "account required " + find_pam_module("pam_permit.so")])
        return cfg

    def expired_pass(self, user):
        rc, out = self.pamtester("login", user, "acct_mgmt")
        self.assertEqual(rc, 0, "only_expired never changes a login's outcome: " + out)

    def removed_ids(self):
        return [r["target"].split("/members/")[1].split("?")[0] for r in self.deletes()]

    def test_only_expired_grace_default(self):
        """expired_grace_days defaults to 7: expired 6 days ago is the day
        before the removal is due, 7 days ago the day it is."""
        self.expired_stack()
        self.write_shadow({"alice": str(TODAY - 6), "bob": str(TODAY - 7),
                           "carol": str(TODAY)})
        for user in ("alice", "bob", "carol"):
            self.expired_pass(user)
        self.assertEqual(self.removed_ids(), ["x9z8"])
        waits = [l for l in self.syslog_lines() if "waits until" in l]
        self.assertEqual(len(waits), 2, self.syslog_lines())
        self.assertTrue(any("alice" in l and "expired_grace_days = 7" in l for l in waits), waits)
        self.assertEqual(self.queue_entries(), [])

    def test_only_expired_grace_from_config(self):
        self.expired_stack(extra="expired_grace_days = 3;\n")
        self.write_shadow({"alice": str(TODAY - 2), "bob": str(TODAY - 3)})
        for user in ("alice", "bob"):
            self.expired_pass(user)
        self.assertEqual(self.removed_ids(), ["x9z8"])
        # the next day alice is due too
        self.write_shadow({"alice": str(TODAY - 3)})
        self.expired_pass("alice")
        self.assertEqual(self.removed_ids(), ["x9z8", "d4xkq1abc"])

    def test_only_expired_grace_zero(self):
        self.expired_stack(extra="expired_grace_days = 0;\n")
        self.write_shadow({"alice": str(TODAY), "bob": str(TODAY + 1)})
        for user in ("alice", "bob"):
            self.expired_pass(user)
        self.assertEqual(self.removed_ids(), ["d4xkq1abc"])

    def test_only_expired_module_argument_overrides_config(self):
        # the module line says 2, the configuration 30: 2 wins, both ways
        self.expired_stack("expired_grace_days=2", extra="expired_grace_days = 30;\n")
        self.write_shadow({"alice": str(TODAY - 1), "bob": str(TODAY - 2)})
        for user in ("alice", "bob"):
            self.expired_pass(user)
        self.assertEqual(self.removed_ids(), ["x9z8"])
        self.expired_stack("expired_grace_days=40", extra="expired_grace_days = 0;\n")
        self.write_shadow({"carol": str(TODAY - 39)})
        self.expired_pass("carol")
        self.assertEqual(self.removed_ids(), ["x9z8"])
        self.write_shadow({"carol": str(TODAY - 40)})
        self.expired_pass("carol")
        self.assertEqual(self.removed_ids(), ["x9z8", "c4rol"])

    def run_helper(self, cfg, user, *args):
        return self.run_cmd(["pam-helper", "--mode", "expired", "--service", "login",
                             "--deadline", "10"] + list(args) + ["--", user], config=cfg,
                            env=self.helper_env())

    def test_helper_reads_shadow_itself(self):
        """The helper decides on its own reading of shadow, not on the day
        the module (or anyone who runs it) says."""
        cfg = self.expired_stack(extra="expired_grace_days = 3;\n")
        self.write_shadow({"alice": str(TODAY + 5), "bob": str(TODAY - 1)})
        for user, day in (("alice", TODAY - 100), ("bob", TODAY - 100), ("carol", 0)):
            rc, out, err = self.run_helper(cfg, user, "--expire-day", str(day))
            self.assertEqual((rc, out), (0, "not-due\n"), err)
            rc, out, err = self.run_helper(cfg, user, "--expire-day", str(day),
                                       "--expired-grace-days", "0")
            self.assertEqual(out, "removed\n" if user == "bob" else "not-due\n", err)
        self.assertEqual(self.removed_ids(), ["x9z8"])
        # no readable shadow entry at all: not acting
        rc, out, err = self.run_helper(cfg, "nosuchuser", "--expire-day", "0",
                                   "--expired-grace-days", "0")
        self.assertEqual(out, "not-due\n", err)
        # bad values are a bad invocation, never a removal
        for bad in ("-1", "3651", "x", ""):
            rc, out, err = self.run_helper(cfg, "bob", "--expired-grace-days", bad)
            self.assertEqual(rc, 64, err)
            self.assertEqual(out, "")
        self.assertEqual(len(self.deletes()), 1)

    def test_helper_grace_with_broken_config(self):
        """The configuration does not load: the helper cannot know its
        expired_grace_days, so it records (for `retry`) only an account
        that the default (7) or the module argument makes due."""
        cfg = self.config(extra="bogus_key = 1;\n")
        self.write_shadow({"alice": str(TODAY - 6), "bob": str(TODAY - 7),
                           "carol": str(TODAY - 1)})
        unresolved = os.path.join(self.dir, "unresolved")
        rc, out, err = self.run_helper(cfg, "alice", "--expire-day", str(TODAY - 6))
        self.assertEqual(out, "config\n")
        self.assertFalse(os.path.isdir(unresolved) and os.listdir(unresolved))
        rc, out, err = self.run_helper(cfg, "bob", "--expire-day", str(TODAY - 7))
        self.assertEqual(out, "recorded\n")
        rc, out, err = self.run_helper(cfg, "carol", "--expire-day", str(TODAY - 1),
                                   "--expired-grace-days", "1")
        self.assertEqual(out, "recorded\n")
        recorded = [json.load(open(os.path.join(unresolved, n)))["login"]
                    for n in os.listdir(unresolved) if n.endswith(".json")]
        self.assertEqual(sorted(recorded), ["bob", "carol"])
        self.assertEqual(self.deletes(), [])

    def test_only_expired_does_not_remove_locked_accounts(self):
        cfg = self.config()
        self.service("login", [self.modline("account", "[default=ignore]", "only_expired",
                                            cfg=cfg),
                               "account required " + find_pam_module("pam_permit.so")])
        self.write_shadow({})   # every account has '!' (key-only or locked), none expired
        rc, out = self.pamtester("login", "alice", "acct_mgmt")
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.deletes(), [])

    def test_on_close(self):
        cfg = self.config()
        self.service("ephemeral", [self.modline("session", "optional", "on_close", cfg=cfg),
                                   "session required " + find_pam_module("pam_permit.so")])
        rc, out = self.pamtester("ephemeral", "alice", "open_session")
        self.assertEqual(rc, 0, out)
        self.assertEqual(self.deletes(), [], "nothing is removed when the session opens")
        rc, out = self.pamtester("ephemeral", "alice", "open_session", "close_session")
        self.assertEqual(rc, 0, out)
        self.assertEqual(len(self.deletes()), 1)

    def test_config_error_in_dedicated_service(self):
        cfg = self.config(extra="bogus_key = 1;\n")
        self.service("planetscale-deprovision", [self.modline("account", "required", cfg=cfg)])
        rc, out = self.pamtester("planetscale-deprovision", "alice", "acct_mgmt")
        self.assertNotEqual(rc, 0)
        self.assertEqual(self.deletes(), [])
        self.assertTrue(any("bogus_key" in l for l in self.syslog_lines()))


if __name__ == "__main__":
    unittest.main()
