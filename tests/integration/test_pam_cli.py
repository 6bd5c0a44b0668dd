"""pam_planetscale.so end to end: pamtester under pam_wrapper (and
nss_wrapper for shadow states) runs the module, which runs the real command
against the HTTPS simulator."""

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
        # The module runs its helper with a clean environment: this wrapper
        # adds back only the test's syslog capture.
        self.helper = os.path.join(self.dir, "helper.sh")
        env = shim_env(self.syslog)
        wrapper = os.environ.get("TEST_WRAPPER", "")
        with open(self.helper, "w") as f:
            f.write("#!/bin/sh\n")
            for k, v in env.items():
                f.write("export %s='%s'\n" % (k, v))
            f.write("exec %s '%s' \"$@\"\n" % (wrapper, pslib.command_path()))
        os.chmod(self.helper, 0o755)
        # nss_wrapper databases
        self.passwd = os.path.join(self.dir, "passwd")
        self.group = os.path.join(self.dir, "group")
        self.shadow = os.path.join(self.dir, "shadow")
        with open(self.passwd, "w") as f:
            for i, u in enumerate(("alice", "bob", "carol", "dave")):
                f.write("%s:x:%d:%d::/home/%s:/bin/sh\n" % (u, 2000 + i, 2000 + i, u))
        with open(self.group, "w") as f:
            for i, u in enumerate(("alice", "bob", "carol", "dave")):
                f.write("%s:x:%d:\n" % (u, 2000 + i))
        self.write_shadow({})

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
        # expired: removed, and the login's outcome is still pam_permit's
        self.write_shadow({"alice": str(TODAY - 1), "bob": str(TODAY + 10)})
        rc, out = self.pamtester("login", "alice", "acct_mgmt")
        self.assertEqual(rc, 0, "only_expired never changes a login's outcome: " + out)
        self.assertEqual(len(self.deletes()), 1)
        self.assertEqual(len(self.audit("removed")), 1)

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
