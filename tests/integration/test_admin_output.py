"""What an administrator reads: counts in the command's output agree with
their nouns ("1 member", "1 removal waits", "1 HTTP 429", "1 day", "1
attempt"; never "1 members" or "1 entries"), in `members`, `check`,
`retry`, `queue` and the dead-letter audit line, and with two of each the
plural; `retry` gives no rate when it made no connection."""

import json
import os
import re
import time

from common import SimTestCase, pslib

# "1 <plural noun>": the mistake this file is about
ONE_PLURAL = re.compile(r"(?<![\d.])1 (members|entries|removals|days|attempts|connections|"
                        r"organizations|logins|pages|429s|records|HTTP 429s)\b")


class PluralsTest(SimTestCase):

    def tearDown(self):
        try:
            for text in self.outputs + self.syslog_lines():
                self.assertIsNone(ONE_PLURAL.search(text), text)
        finally:
            super().tearDown()

    def test_members_one_and_two(self):
        self.sim.set_members({"solo": [{"id": "only1", "email": "only@example.com",
                                        "name": "Only", "role": "admin"}],
                              "duo": [{"id": "one1", "email": "one@example.com", "name": "One",
                                       "role": "admin"},
                                      {"id": "two2", "email": "two@example.com", "name": "Two",
                                       "role": "member"}]})
        cfg = self.config(organization="solo", users=[{"login": "only", "id": "only1"}])
        rc, out, err = self.run_cmd(["members"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines()[-1], "1 member in 1 organization, 1 mapped to a login")
        rc, out, err = self.run_cmd(["members", "--organization", "duo"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines()[-1], "2 members in 1 organization, 0 mapped to a login")

    def test_check_counts_held_removals(self):
        cfg = self.config()
        # a token that may do nothing: GET and DELETE answer 403, the
        # removal is held
        self.sim.set_faults(["status:403:json;count=-1"])
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 77, err)
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("  1 removal waits for a person", out)
        rc, out, err = self.run_cmd(["remove", "bob"], cfg)
        self.assertEqual(rc, 77, err)
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("  2 removals wait for a person", out)
        rc, out, err = self.run_cmd(["queue"], cfg)
        self.assertIn("0 pending, 2 held, 0 dead, 0 unresolved", out)

    def test_retry_one_429(self):
        cfg = self.config(url="https://127.0.0.1:1/v1", retries=1, connect_timeout=1)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 75, err)
        cfg = self.config()
        self.sim.set_faults(["429:1;count=1"])
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(out, r"retry: sent [12]: 1 removed, 0 confirmed absent; 1 HTTP 429, "
                              r"1 connection, [0-9.]+ s")

    def test_retry_without_a_connection_gives_no_rate(self):
        cfg = self.config(url="https://127.0.0.1:1/v1", retries=1, connect_timeout=1)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 75, err)
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 75, out + err)
        self.assertIn("no connection to the API could be made", out)
        self.assertNotIn("/s", out, "no rate after 0 connections")
        self.assertIn("retry: the spool holds 1 pending, 0 held, 0 dead", out)

    def test_dead_letter_after_one_day_and_one_attempt(self):
        cfg = self.config(max_age_days=1)
        qdir = os.path.join(self.dir, "queue")
        name = pslib.entry_name("alice", "acme", "d4xkq1abc")
        now = int(time.time())
        e = {"version": 2, "state": "pending", "login": "alice", "organization": "acme",
             "id": "d4xkq1abc", "delete_passwords": True, "delete_service_tokens": True,
             "recorded": now - 3 * 86400, "first_attempt": now - 2 * 86400,
             "last_attempt": now - 2 * 86400, "attempts": 1, "last_error": "GET: timeout",
             "held_at": 0, "held_config": "", "trigger": "remove"}
        fd = os.open(os.path.join(qdir, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(e, f)
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("retry: 1 entry pending too long became a dead letter", out)
        self.assertEqual(self.queue_entries("dead"), [name])
        if os.environ.get("PS_SYSLOG_SHIM"):
            lines = self.audit("dead-letter")
            self.assertEqual(len(lines), 1, self.syslog_lines())
            self.assertIn("pending for more than 1 day since its first attempt, 1 attempt,",
                          lines[0])


if __name__ == "__main__":
    import unittest
    unittest.main()
