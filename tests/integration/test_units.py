"""The systemd units as shipped: the reconcile service is sandboxed like
the retry service (systemd-analyze security --offline=yes scores it no
worse), and the reconcile timer is installed but not enabled."""

import os
import re
import shutil
import subprocess
import unittest

from common import pslib

UNITS = os.path.join(pslib.TOP_SRCDIR, "etc", "systemd")
DEBIAN = os.path.join(pslib.TOP_SRCDIR, "debian")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def sections(text):
    """{section: [(key, value), ...]} of a unit file."""
    out, cur = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^\[(\w+)\]$", line)
        if m:
            cur = out.setdefault(m.group(1), [])
            continue
        key, _, value = line.partition("=")
        cur.append((key, value))
    return out


class UnitsTest(unittest.TestCase):

    def score(self, unit):
        p = subprocess.run(["systemd-analyze", "security", "--offline=yes",
                            os.path.join(UNITS, unit)],
                           capture_output=True, text=True, timeout=120)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout + p.stderr)
        self.assertIsNotNone(m, p.stdout + p.stderr)
        return float(m.group(1))

    def test_reconcile_service_as_hardened_as_retry(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed (Debian: systemd)")
        retry = self.score("planetscale-deprovision-retry.service")
        reconcile = self.score("planetscale-deprovision-reconcile.service")
        self.assertLessEqual(reconcile, retry)
        self.assertLessEqual(reconcile, 2.0)

    def test_reconcile_service(self):
        s = sections(read(os.path.join(UNITS, "planetscale-deprovision-reconcile.service")))
        service = dict(s["Service"])
        self.assertEqual(service["Type"], "oneshot")
        self.assertRegex(service["ExecStart"],
                         r"^/usr/sbin/planetscale-deprovision reconcile --apply ")
        self.assertEqual([v for k, v in s["Service"] if k == "ReadWritePaths"],
                         ["/var/spool/planetscale-deprovision",
                          "-/var/lib/prometheus/node-exporter"])
        self.assertNotIn("PrivateUsers", service, "root-owned 0600 files must stay readable")
        self.assertNotIn("SuccessExitStatus", service, "an NSS outage must leave the unit failed")
        self.assertNotIn("Install", s, "the timer starts the service")
        # the retry unit's sandbox, line for line (but what is the service's own)
        retry = dict(sections(read(os.path.join(UNITS, "planetscale-deprovision-retry.service")))
                     ["Service"])
        own = {"ExecStart", "SuccessExitStatus", "TimeoutStartSec"}
        for key, value in retry.items():
            if key not in own:
                self.assertEqual(service.get(key), value, key)

    def test_reconcile_timer_shipped_disabled(self):
        s = sections(read(os.path.join(UNITS, "planetscale-deprovision-reconcile.timer")))
        self.assertEqual(dict(s["Install"])["WantedBy"], "timers.target",
                         "an administrator can enable it")
        timer = dict(s["Timer"])
        self.assertIn("OnUnitActiveSec", timer)
        self.assertIn("RandomizedDelaySec", timer)
        install = read(os.path.join(DEBIAN, "libpam-planetscale.install"))
        for unit in ("reconcile.service", "reconcile.timer"):
            self.assertIn("etc/systemd/planetscale-deprovision-%s lib/systemd/system/" % unit,
                          install)
        rules = read(os.path.join(DEBIAN, "rules"))
        self.assertRegex(rules, r"dh_installsystemd --no-enable --no-start "
                                r"planetscale-deprovision-reconcile\.timer")
        enabled = [l for l in rules.splitlines()
                   if "dh_installsystemd" in l and "--no-enable" not in l]
        self.assertFalse(any("reconcile" in l for l in enabled), enabled)


class FleetUnitsTest(unittest.TestCase):
    """What a fleet needs of the units: every timer randomized (hosts do not
    run them in step), the retry timer every minute (a first attempt that
    api.spread put later is sent close to its time), and every service that
    changes the spool allowed to write the metrics textfile's directory,
    with the sandbox's exposure kept."""

    SERVICES = ("retry", "sender", "reconcile")

    def test_timers_randomized(self):
        timers = [n for n in os.listdir(UNITS) if n.endswith(".timer")]
        self.assertGreaterEqual(len(timers), 2, timers)
        for name in timers:
            timer = dict(sections(read(os.path.join(UNITS, name)))["Timer"])
            self.assertRegex(timer.get("RandomizedDelaySec", ""), r"^[1-9][0-9]*(s|min)?$", name)
        retry = dict(sections(read(os.path.join(UNITS, "planetscale-deprovision-retry.timer")))
                     ["Timer"])
        self.assertEqual(retry["OnUnitActiveSec"], "1min")
        service = dict(sections(read(os.path.join(UNITS,
                                                  "planetscale-deprovision-retry.service")))
                       ["Service"])
        self.assertRegex(service["ExecStart"], r" retry --deadline 240$")

    def test_services_may_write_the_textfile_directory(self):
        for unit in self.SERVICES:
            s = sections(read(os.path.join(UNITS, "planetscale-deprovision-%s.service" % unit)))
            paths = [v for k, v in s["Service"] if k == "ReadWritePaths"]
            self.assertIn("-/var/lib/prometheus/node-exporter", paths, unit)

    def test_exposure_kept(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze is not installed (Debian: systemd)")
        for unit in self.SERVICES:
            self.assertLessEqual(UnitsTest.score(self, "planetscale-deprovision-%s.service"
                                                 % unit), 2.0, unit)


if __name__ == "__main__":
    unittest.main()
