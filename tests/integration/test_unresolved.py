"""A removal asked for while the configuration cannot be loaded is not lost.

The userdel-post.d hook runs after the account is gone: if the config is
broken at that moment, `remove` cannot map the login, but it records it
(src/unresolved.h) and `retry`, once that configuration loads again, queues
and sends it. Checked here through the command and through the PAM module:
recording, resolution, unmapped logins, the pam_services interlock, other
configurations, hostile input, invalid records, an unusable directory, and
that a failed resolution keeps the record."""

import json
import os
import stat
import time
import unittest

from common import SimTestCase
from test_pam_cli import PamFixture, find_pam_module

BROKEN = "organization = \"acme\"\napi = { url = \n"      # a libconfig syntax error


class UnresolvedTest(SimTestCase):

    def setUp(self):
        super().setUp()
        self.udir = os.path.join(self.dir, "unresolved")
        self.cfg = os.path.join(self.dir, "deprovision.conf")

    def break_config(self, text=BROKEN):
        fd = os.open(self.cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return self.cfg

    def records(self):
        if not os.path.isdir(self.udir):
            return []
        out = []
        for n in sorted(os.listdir(self.udir)):
            p = os.path.join(self.udir, n)
            if n.endswith(".json") and os.path.isfile(p):
                with open(p) as f:
                    out.append((n, json.load(f), os.stat(p)))
        return out

    def retry(self, *extra):
        rc, out, err = self.run_cmd(["--json", "retry"] + list(extra), config=self.cfg)
        return rc, (json.loads(out) if out.strip() else {}), err

    # ---------------------------------------------------------- command

    def test_queue_and_check_list_the_spool_while_the_config_is_broken(self):
        """The moment the administrator most needs `queue` is when the
        configuration is broken: it says so (exit 78) and still lists a
        pending entry and an unresolved login; `check` counts them."""
        qdir = os.path.join(self.dir, "queue")
        self.config(url="https://127.0.0.1:1/v1", retries=1, connect_timeout=1)
        rc, out, err = self.run_cmd(["remove", "alice"], config=self.cfg)
        self.assertEqual(rc, 75, err)
        self.break_config()
        rc, out, err = self.run_cmd(["remove", "bob"], config=self.cfg)
        self.assertEqual(rc, 78, err)

        rc, out, err = self.run_cmd(["queue", "--queue-dir", qdir], config=self.cfg)
        self.assertEqual(rc, 78, out + err)
        self.assertIn("configuration error", err)
        self.assertIn("deprovision.conf:", err, "the error names the file and line")
        self.assertIn("the configuration does not load", err)
        self.assertIn("listing the spool %s" % qdir, err)
        lines = out.splitlines()
        rows = [l.split() for l in lines]
        self.assertEqual(rows[0][:3], ["STATE", "NAME", "LOGIN"])
        # the STATE column is wide enough for "unresolved": every row's
        # NAME starts under the header's
        for line, row in zip(lines[1:], rows[1:]):
            if len(row) > 2 and row[0] in ("pending", "held", "dead", "unresolved"):
                self.assertEqual(line.index(row[1]), lines[0].index("NAME"), out)
        by_login = {r[2]: r[0] for r in rows[1:] if len(r) > 2}
        self.assertEqual(by_login.get("alice"), "pending", out)
        self.assertEqual(by_login.get("bob"), "unresolved", out)
        self.assertIn("1 pending, 0 held, 0 dead, 1 unresolved (%s)" % qdir, out)
        # the same as JSON
        rc, out, err = self.run_cmd(["--json", "queue", "--queue-dir", qdir], config=self.cfg)
        self.assertEqual(rc, 78, err)
        self.assertEqual(sorted((e["login"], e["state"]) for e in json.loads(out)),
                         [("alice", "pending"), ("bob", "unresolved")])
        # check says the configuration failed, and counts what waits
        rc, out, err = self.run_cmd(["check", "--queue-dir", qdir], config=self.cfg)
        self.assertEqual(rc, 78, out + err)
        self.assertIn("the configuration does not load", out)
        self.assertIn("spool: %s (1 pending, 0 held, 0 dead)" % qdir, out)
        self.assertIn("unresolved: 1 recorded", out)
        rc, out, err = self.run_cmd(["--json", "check", "--queue-dir", qdir], config=self.cfg)
        self.assertEqual(rc, 78, err)
        j = json.loads(out)
        self.assertEqual((j["config_loads"], j["ok"], j["pending"], j["unresolved"]),
                         (False, False, 1, 1))

    def test_broken_config_records_and_retry_removes(self):
        self.break_config()
        rc, out, err = self.run_cmd(["remove", "alice"], config=self.cfg)
        self.assertEqual(rc, 78, err)
        self.assertIn("deprovision.conf", err, "the error names the file")
        self.assertIn("alice: NOT removed yet: recorded in", err)
        self.assertEqual(self.deletes(), [])
        recs = self.records()
        self.assertEqual(len(recs), 1)
        name, rec, st = recs[0]
        self.assertEqual(rec["login"], "alice")
        self.assertEqual(rec["source"], "remove")
        self.assertEqual(rec["config"], os.path.realpath(self.cfg))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.udir).st_mode), 0o700)
        self.assertTrue(any("outcome=recorded trigger=remove login=alice" in l for l in self.syslog_lines()),
                        self.syslog_lines())
        # `queue` and `check` show it once the configuration loads
        self.config()
        rc, out, err = self.run_cmd(["queue"], config=self.cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("unresolved", out)
        self.assertIn("alice", out)
        rc, out, err = self.run_cmd(["--json", "check"], config=self.cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["unresolved"], 1)
        # retry queues it and sends it in the same run
        rc, res, err = self.retry()
        self.assertEqual(rc, 0, err)
        self.assertEqual(res["unresolved"]["queued"], 1)
        self.assertEqual(res["removed"], 1)
        dels = self.deletes()
        self.assertEqual(len(dels), 1)
        self.assertTrue(dels[0]["target"].startswith("/v1/organizations/acme/members/d4xkq1abc"))
        self.assertEqual(self.records(), [])
        self.assertEqual(self.queue_entries(), [])
        self.assertTrue(any("outcome=queued trigger=remove login=alice" in l and "could not be loaded" in l
                            for l in self.syslog_lines()))
        # nothing left to do
        rc, res, err = self.retry()
        self.assertEqual(rc, 0, err)
        self.assertEqual(res["unresolved"]["queued"], 0)
        self.assertEqual(len(self.deletes()), 1)

    def test_semantic_error_and_missing_file_are_recorded_too(self):
        # an unknown key (libconfig parses it, our validation refuses it)
        self.config(extra="bogus_key = 1;\n")
        rc, _out, err = self.run_cmd(["remove", "bob"], config=self.cfg)
        self.assertEqual(rc, 78, err)
        self.assertIn("bogus_key", err)
        # a configuration path that does not exist (yet)
        missing = os.path.join(self.dir, "later.conf")
        rc, _out, err = self.run_cmd(["remove", "alice"], config=missing)
        self.assertEqual(rc, 78, err)
        self.assertEqual(sorted(r["login"] for _n, r, _s in self.records()), ["alice", "bob"])
        # each is resolved by its own configuration only
        self.config()
        rc, res, err = self.retry()
        self.assertEqual(rc, 0, err)
        self.assertEqual((res["unresolved"]["queued"], res["unresolved"]["other_config"]), (1, 1))
        self.assertEqual([d["target"].split("?")[0] for d in self.deletes()],
                         ["/v1/organizations/acme-eu/members/x9z8"])
        self.config(name="later.conf")
        rc, _out, err = self.run_cmd(["retry"], config=missing)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(self.deletes()), 2)
        self.assertEqual(self.records(), [])

    def test_unmapped_login_is_dropped_with_a_log_line(self):
        self.break_config()
        rc, _out, err = self.run_cmd(["remove", "zed"], config=self.cfg)
        self.assertEqual(rc, 78, err)
        self.assertEqual(len(self.records()), 1)
        self.config()
        rc, res, err = self.retry()
        self.assertEqual(rc, 0, err)
        self.assertEqual(res["unresolved"]["dropped"], 1)
        self.assertEqual(self.deletes(), [])
        self.assertEqual(self.records(), [])
        self.assertTrue(any("outcome=unmapped trigger=remove login=zed" in l for l in self.syslog_lines()))

    def test_stdin_and_hostile_logins(self):
        self.break_config()
        rc, out, err = self.run_cmd(["--json", "remove", "-"], config=self.cfg,
                                    input="alice\nbad\x1blogin\n\nbob\n")
        self.assertEqual(rc, 1, "a login that could not be recorded is not a mere config error")
        res = json.loads(out)
        self.assertEqual([(r["login"], r["outcome"]) for r in res],
                         [("alice", "recorded"), ("bad\x1blogin", "error"), ("bob", "recorded")])
        self.assertIn("invalid login", res[1]["message"])
        self.assertEqual(sorted(r["login"] for _n, r, _s in self.records()), ["alice", "bob"])
        self.assertFalse(any("\x1b" in l for l in self.syslog_lines()),
                         "the escape byte never reaches the log")

    def test_dry_run_and_no_queue_record_nothing(self):
        self.break_config()
        for flag in ("--dry-run", "--no-queue"):
            rc, _out, err = self.run_cmd(["remove", flag, "alice"], config=self.cfg)
            self.assertEqual(rc, 78, err)
        self.assertEqual(self.records(), [])

    def test_recording_twice_keeps_the_first_time(self):
        self.break_config()
        self.run_cmd(["remove", "alice"], config=self.cfg)
        first = self.records()[0][1]["recorded"]
        time.sleep(1.1)
        rc, _out, err = self.run_cmd(["remove", "alice"], config=self.cfg)
        self.assertEqual(rc, 78, err)
        recs = self.records()
        self.assertEqual(len(recs), 1)
        self.assertEqual(recs[0][1]["recorded"], first)

    def test_unusable_directory_is_reported_loudly(self):
        self.break_config()
        os.mkdir(self.udir, 0o755)
        os.chmod(self.udir, 0o755)
        rc, _out, err = self.run_cmd(["remove", "alice"], config=self.cfg)
        self.assertEqual(rc, 1, err)
        self.assertIn("NOT removed and NOT recorded", err)
        self.assertIn("chmod 700 " + self.udir, err)
        self.assertTrue(any("outcome=failed trigger=remove login=alice" in l for l in self.syslog_lines()))
        # check refuses the directory too, naming the fix
        os.chmod(self.udir, 0o700)
        os.chmod(self.udir, 0o750)
        self.config()
        rc, _out, err = self.run_cmd(["check"], config=self.cfg)
        self.assertEqual(rc, 78, err)
        self.assertIn("chmod 700", err)

    def test_invalid_records_are_moved_aside(self):
        self.break_config()
        self.run_cmd(["remove", "alice"], config=self.cfg)
        bad = {"junk.json": "{not json", "a.json": json.dumps(
                   {"version": 1, "login": "carol", "config": self.cfg, "source": "remove",
                    "recorded": 1, "token": "x"})}
        for n, text in bad.items():
            fd = os.open(os.path.join(self.udir, n), os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        os.symlink("/etc/passwd", os.path.join(self.udir, "link.json"))
        self.config()
        rc, res, err = self.retry()
        self.assertEqual(rc, 0, err)
        self.assertEqual(res["unresolved"]["invalid"], 3)
        self.assertEqual(res["unresolved"]["queued"], 1)
        self.assertEqual(sorted(os.listdir(os.path.join(self.udir, "invalid"))),
                         ["a.json", "junk.json", "link.json"])
        self.assertEqual(len(self.deletes()), 1)

    def test_a_failed_resolution_keeps_the_record(self):
        self.break_config()
        self.run_cmd(["remove", "alice"], config=self.cfg)
        # the config now loads, but its queue directory is a regular file
        qfile = os.path.join(self.dir, "qfile")
        open(qfile, "w").close()
        self.config(queue_dir=qfile, create_queue=False)
        rc, _res, err = self.retry()
        self.assertNotEqual(rc, 0, err)
        self.assertEqual(len(self.records()), 1, "the record waits for the next retry")
        self.assertEqual(self.deletes(), [])
        self.config()
        rc, res, err = self.retry()
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(self.deletes()), 1)
        self.assertEqual(self.records(), [])

    def test_transient_failure_after_resolution_stays_queued(self):
        self.break_config()
        self.run_cmd(["remove", "alice"], config=self.cfg)
        self.config(retries=1)
        self.sim.set_faults(["status:503;count=-1"])
        rc, res, err = self.retry()
        self.assertEqual(rc, 75, err)
        self.assertEqual(res["unresolved"]["queued"], 1)
        self.assertEqual(self.records(), [])
        self.assertEqual(len(self.queue_entries()), 1, "now an ordinary queue entry")
        self.sim.set_faults([])
        rc, res, err = self.retry()
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.queue_entries(), [])
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))


class UnresolvedPamTest(PamFixture):
    """Through pam_planetscale.so: the helper records what it cannot map."""

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

    def test_dedicated_service_records_then_retry_removes(self):
        cfg = self.config(extra="bogus_key = 1;\n")
        self.service("planetscale-deprovision", [self.modline("account", "required", cfg=cfg)])
        rc, out = self.pamtester("planetscale-deprovision", "alice", "acct_mgmt")
        self.assertNotEqual(rc, 0, out)
        recs = self.records()
        self.assertEqual(len(recs), 1, self.syslog_lines())
        self.assertEqual((recs[0]["login"], recs[0]["source"], recs[0]["service"],
                          recs[0]["mode"]), ("alice", "pam", "planetscale-deprovision", "service"))
        self.config()
        rc, out, err = self.run_cmd(["retry"], config=cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(self.deletes()), 1)
        self.assertEqual(self.records(), [])

    def test_service_outside_pam_services_is_dropped(self):
        cfg = self.config(extra="bogus_key = 1;\n")
        self.service("sshd", [self.modline("account", "required", cfg=cfg)])
        rc, out = self.pamtester("sshd", "alice", "acct_mgmt")
        self.assertEqual(len(self.records()), 1, out)
        self.config()           # pam_services is the default: planetscale-deprovision only
        rc, out, err = self.run_cmd(["--json", "retry"], config=cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["unresolved"]["dropped"], 1)
        self.assertEqual(self.deletes(), [], "the interlock still holds after the fact")
        self.assertTrue(any("not in pam_services: dropped" in l for l in self.syslog_lines()))

    def test_only_expired_records_an_expired_account(self):
        cfg = self.config(extra="bogus_key = 1;\n")
        today = int(time.time() // 86400)
        self.service("login", [self.modline("account", "[default=ignore]", "only_expired",
                                            cfg=cfg),
                               "account required " + find_pam_module("pam_permit.so")])
        # alice expired 7 days ago (due under the default expired_grace_days),
        # carol yesterday (not due), bob never
        self.write_shadow({"alice": str(today - 7), "bob": "", "carol": str(today - 1)})
        for user in ("alice", "bob", "carol"):
            rc, out = self.pamtester("login", user, "acct_mgmt")
            self.assertEqual(rc, 0, "the login's outcome never changes: " + out)
        self.assertEqual([r["login"] for r in self.records()], ["alice"],
                         "only the expired account whose grace period is over is recorded")
        self.config()
        rc, out, err = self.run_cmd(["retry"], config=cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(self.deletes()), 1)


if __name__ == "__main__":
    unittest.main()
