"""contrib/ansible: the role that distributes the configuration (0600), the
token file (0600) and the users.d drop-ins. `ansible-playbook
--syntax-check` on the example playbook, then real runs against a local
root (connection local, every path under a temporary prefix): the files
and their modes, the command mapping and removing through the result
(against the API simulator), a second run that changes nothing, a drop-in
the inventory no longer names removed, a drop-in that does not load never
installed, and the token in no output."""

import json
import os
import re
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SimTestCase  # noqa: E402
import pslib  # noqa: E402

PLAYBOOK = os.path.join(pslib.TOP_SRCDIR, "contrib", "ansible", "site.yml")
ANSIBLE = shutil.which("ansible-playbook")
TOKEN_ID = "fleet_tid_01"


class TestAnsibleRole(SimTestCase):

    def setUp(self):
        if not ANSIBLE:
            self.skipTest("ansible-playbook is not installed (Debian package ansible-core)")
        super().setUp()
        self.root = os.path.join(self.dir, "root")
        self.tmp = os.path.join(self.dir, "ansible-tmp")
        os.makedirs(self.tmp)
        # no /etc/ansible/ansible.cfg or ~/.ansible.cfg of this machine
        self.cfg = os.path.join(self.dir, "ansible.cfg")
        with open(self.cfg, "w") as f:
            f.write("[defaults]\n")
        self.conf = os.path.join(self.root, "etc", "planetscale", "deprovision.conf")
        self.usersd = os.path.join(self.root, "etc", "planetscale", "users.d")
        self.sim.set_tokens([pslib.credential(id=TOKEN_ID, secret=self.sim.token)])

    def vars(self, **kw):
        import grp
        import pwd
        v = {"planetscale_deprovision_hosts": "localhost",
             "planetscale_deprovision_become": False,
             "planetscale_deprovision_install": False,
             "planetscale_deprovision_root": self.root,
             "planetscale_deprovision_owner": pwd.getpwuid(os.getuid()).pw_name,
             "planetscale_deprovision_group": grp.getgrgid(os.getgid()).gr_name,
             "planetscale_deprovision_command": pslib.command_path(),
             "planetscale_deprovision_organization": "acme",
             "planetscale_deprovision_token": "%s:%s" % (TOKEN_ID, self.sim.token),
             "planetscale_deprovision_api_url": self.sim.url,
             "planetscale_deprovision_ca_file": self.sim.ca_file,
             "planetscale_deprovision_spread": 480,
             "planetscale_deprovision_queue_dir": "/var/spool/planetscale-deprovision",
             "planetscale_deprovision_metrics_textfile":
                 "/var/lib/prometheus/node-exporter/planetscale-deprovision.prom",
             "planetscale_deprovision_users": [{"login": "carol", "id": "k2m4"}],
             "planetscale_deprovision_users_d": {
                 "team-a": [{"login": "alice", "id": "d4xkq1abc"},
                            {"login": "bob", "id": "x9z8", "organization": "acme-eu",
                             "delete_service_tokens": False}]}}
        v.update(kw)
        return v

    def playbook(self, extra=(), **kw):
        path = os.path.join(self.dir, "vars.json")
        with open(path, "w") as f:
            json.dump(self.vars(**kw), f)
        env = dict(os.environ, ANSIBLE_LOCAL_TEMP=self.tmp, ANSIBLE_REMOTE_TEMP=self.tmp,
                   ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0",
                   ANSIBLE_CONFIG=self.cfg, HOME=self.dir)
        env.pop("LD_PRELOAD", None)
        p = subprocess.run([ANSIBLE, "-i", "localhost,", "-c", "local",
                            "-e", "ansible_python_interpreter=" + sys.executable,
                            "-e", "@" + path] + list(extra) + [PLAYBOOK],
                           capture_output=True, text=True, timeout=300, env=env)
        self.outputs.append(p.stdout + p.stderr)
        return p

    def recap(self, out):
        m = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                      r"failed=(\d+)", out)
        self.assertIsNotNone(m, out)
        return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups())))

    def test_syntax_check(self):
        p = subprocess.run([ANSIBLE, "--syntax-check", "-i", "localhost,", PLAYBOOK],
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, ANSIBLE_CONFIG=self.cfg, HOME=self.dir,
                                    ANSIBLE_LOCAL_TEMP=self.tmp))
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("playbook: " + PLAYBOOK, p.stdout)

    def test_run_against_a_local_root(self):
        p = self.playbook()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.recap(p.stdout)["failed"], 0)
        modes = {os.path.relpath(os.path.join(d, n), self.root):
                 os.stat(os.path.join(d, n)).st_mode & 0o777
                 for d, _, names in os.walk(self.root) for n in names}
        self.assertEqual(modes, {"etc/planetscale/deprovision.conf": 0o600,
                                 "etc/planetscale/token": 0o600,
                                 "etc/planetscale/users.d/team-a.conf": 0o644})
        qdir = os.path.join(self.root, "var", "spool", "planetscale-deprovision")
        self.assertEqual(os.stat(qdir).st_mode & 0o777, 0o700)
        with open(self.conf) as f:
            text = f.read()
        self.assertNotIn(self.sim.token, text, "the token is in the configuration")
        for o in self.outputs:
            self.assertNotIn(self.sim.token, o, "the token is in ansible's output")

        # the command reads the result: the drop-in's mapping, the spread,
        # the metrics path under the root
        rc, out, err = self.run_cmd(["--json", "lookup", "bob", "carol"], self.conf)
        self.assertEqual(rc, 0, err)
        got = {j["login"]: (j["organization"], j["id"], j["delete_service_tokens"])
               for j in json.loads(out)}
        self.assertEqual(got, {"bob": ("acme-eu", "x9z8", False),
                               "carol": ("acme", "k2m4", True)})
        rc, out, err = self.run_cmd(["remove", "alice"], self.conf)
        self.assertEqual(rc, 75, err)
        self.assertIn("api.spread = 480 s", out)
        rc, out, err = self.run_cmd(["remove", "--no-spread", "bob"], self.conf)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(self.deletes()), 1)
        self.assertIn(TOKEN_ID + ":", self.deletes()[0]["authorization"])

        # a second run changes nothing
        p = self.playbook()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(self.recap(p.stdout)["changed"], 0, p.stdout)

        # a drop-in that does not load is never installed; the old one stays
        bad = {"team-a": [{"login": "alice", "id": ".."}]}
        p = self.playbook(planetscale_deprovision_users_d=bad)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("failed to validate", p.stdout)
        with open(os.path.join(self.usersd, "team-a.conf")) as f:
            self.assertIn('"d4xkq1abc"', f.read())

        # a team the inventory no longer names: its drop-in goes
        p = self.playbook(planetscale_deprovision_users_d={
            "team-b": [{"login": "dave", "id": "d4v3"}]})
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(sorted(os.listdir(self.usersd)), ["team-b.conf"])
        rc, out, err = self.run_cmd(["lookup", "dave"], self.conf)
        self.assertEqual(rc, 0, err)
        self.assertIn("d4v3", out)


if __name__ == "__main__":
    unittest.main()
