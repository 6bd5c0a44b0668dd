"""api.spread: a removal is recorded at once (write-ahead, as always) and
its first attempt goes to a random moment within api.spread seconds, made
by `retry` (the timer's): `remove` and the PAM helper send nothing, answer
"scheduled" (exit 75), and never wait for the spread. `retry` sends each
entry at its time, waiting for those due before its --deadline; later ones
stay pending. A smaller api.spread brings waiting entries forward;
`remove --no-spread` sends at once."""

import json
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SimTestCase  # noqa: E402


class TestSpread(SimTestCase):

    def config(self, spread=None, **kw):
        extra = kw.pop("extra", "") + 'sender = { socket = ""; };\n'
        return super().config(api_extra="spread = %r;" % spread if spread is not None else "",
                              extra=extra, **kw)

    def entries(self):
        out = []
        qdir = os.path.join(self.dir, "queue")
        for name in self.queue_entries():
            with open(os.path.join(qdir, name)) as f:
                out.append(json.load(f))
        return out

    def api_requests(self):
        return self.sim.requests(path_contains="/organizations/")

    def test_remove_records_and_sends_nothing(self):
        cfg = self.config(spread=600)
        t0 = time.time()
        rc, out, err = self.run_cmd(["remove", "alice", "bob"], cfg)
        took = time.time() - t0
        self.assertEqual(rc, 75, err)
        self.assertLess(took, 10, "remove waited for the spread")
        self.assertIn("alice: user d4xkq1abc of acme recorded; first attempt at", out)
        self.assertIn("(api.spread = 600 s), sent by retry", out)
        self.assertEqual(self.api_requests(), [])
        es = self.entries()
        self.assertEqual(len(es), 2)
        for e in es:
            self.assertEqual(e["state"], "pending")
            self.assertEqual(e["first_attempt"], 0)
            self.assertEqual(e["last_error"], "")
            self.assertGreaterEqual(e["not_before"], e["recorded"])
            self.assertLess(e["not_before"], e["recorded"] + 600)
        sched = self.audit("scheduled")
        self.assertEqual(len(sched), 2, self.syslog_lines())
        self.assertTrue(all(l.startswith("authpriv.notice ") for l in sched), sched)
        # queue shows when
        rc, out, err = self.run_cmd(["queue"], cfg)
        self.assertIn("first attempt at", out)
        q = self.queue_json(cfg)
        self.assertTrue(all(e["not_before"] != "-" for e in q), q)
        # retry before the time sends nothing and says why
        rc, out, err = self.run_cmd(["retry", "--deadline", "1"], cfg)
        self.assertEqual(rc, 75, err)
        self.assertIn("2 entries wait for a first attempt that api.spread puts later", out)
        self.assertEqual(self.api_requests(), [])

    def test_spread_is_random_within_the_window(self):
        users = [{"login": "u%03d" % i, "id": "gen%05d" % (i + 1)} for i in range(60)]
        cfg = self.config(spread=1000, users=users)
        rc, out, err = self.run_cmd(["remove", "-"], cfg,
                                    input="".join(u["login"] + "\n" for u in users))
        self.assertEqual(rc, 75, err)
        offsets = sorted(e["not_before"] - e["recorded"] for e in self.entries())
        self.assertEqual(len(offsets), 60)
        self.assertGreaterEqual(offsets[0], 0)
        self.assertLess(offsets[-1], 1000)
        # 60 uniform draws: the smallest below 200 and the largest above
        # 800 but for a chance of 0.8^60 (1.5e-6) each
        self.assertLess(offsets[0], 200, offsets)
        self.assertGreater(offsets[-1], 800, offsets)
        self.assertGreater(len(set(offsets)), 40, offsets)

    def test_an_entry_that_comes_due_while_another_is_sent_is_sent_too(self):
        # alice (recorded first, so listed first) is not due when the run
        # looks at her; bob is due and his DELETE takes longer than alice's
        # wait: she comes due meanwhile and must be sent by this run, not
        # fall between its pass over due entries and its wait for the others
        slow = 3 if os.environ.get("TEST_WRAPPER") else 1
        cfg = self.config(spread=60, timeout=20 * slow)
        rc, out, err = self.run_cmd(["remove", "alice", "bob"], cfg)
        self.assertEqual(rc, 75, err)
        qdir = os.path.join(self.dir, "queue")
        now = int(time.time())
        for name in self.queue_entries():
            path = os.path.join(qdir, name)
            with open(path) as f:
                e = json.load(f)
            if e["login"] == "alice":
                e["recorded"], e["not_before"] = now - 10, now + 2 * slow
            else:
                e["recorded"], e["not_before"] = now - 5, now - 1
            with open(path, "w") as f:
                json.dump(e, f)
        self.sim.set_faults(["delay:%d;method=DELETE;count=1" % (4 * slow)])
        rc, out, err = self.run_cmd(["retry", "--deadline", str(60 * slow)], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("sent 2: 2 removed", out)
        self.assertEqual(self.queue_entries(), [])
        order = [("alice" if "d4xkq1abc" in r["path"] else "bob")
                 for r in self.sim.requests() if r.get("method") == "DELETE"]
        self.assertEqual(order, ["bob", "alice"])

    def test_retry_sends_each_at_its_time(self):
        cfg = self.config(spread=3)
        rc, out, err = self.run_cmd(["remove", "alice", "bob"], cfg)
        self.assertEqual(rc, 75, err)
        due = {e["login"]: e["not_before"] for e in self.entries()}
        rc, out, err = self.run_cmd(["retry", "--deadline", "30"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("sent 2: 2 removed", out)
        self.assertEqual(self.queue_entries(), [])
        dels = self.deletes()
        self.assertEqual(len(dels), 2)
        for r in self.sim.requests():
            if r.get("method") == "DELETE":
                login = "alice" if "d4xkq1abc" in r["path"] else "bob"
                self.assertGreaterEqual(r["t_start"], due[login] - 0.01, (r, due))
        self.assertEqual(len(self.audit("removed")), 2)

    def test_no_spread_sends_now(self):
        cfg = self.config(spread=600)
        rc, out, err = self.run_cmd(["remove", "--no-spread", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("alice: removed", out)
        self.assertEqual(len(self.deletes()), 1)
        rc, out, err = self.run_cmd(["retry", "--no-spread"], cfg)
        self.assertEqual(rc, 64, err)

    def test_smaller_spread_brings_entries_forward(self):
        cfg = self.config(spread=3600)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 75, err)
        # the configuration now says 0: due at once
        cfg = self.config(spread=0)
        t0 = time.monotonic()
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertLess(time.monotonic() - t0, 30)
        self.assertEqual(len(self.deletes()), 1)

    def test_zero_sends_at_once(self):
        cfg = self.config(spread=0)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(self.deletes()), 1)
        self.assertEqual(self.audit("scheduled"), [])

    def test_pam_helper_schedules(self):
        cfg = self.config(spread=600)
        rc, out, err = self.run_cmd(["pam-helper", "--mode", "service", "--service",
                                     "planetscale-deprovision", "--", "alice"], cfg)
        self.assertEqual(out.strip(), "scheduled", err)
        self.assertEqual(self.api_requests(), [])
        self.assertEqual(len(self.entries()), 1)

    def test_dry_run_and_no_queue_ignore_spread(self):
        cfg = self.config(spread=600)
        rc, out, err = self.run_cmd(["remove", "--dry-run", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.entries(), [])
        rc, out, err = self.run_cmd(["remove", "--no-queue", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(self.deletes()), 1)


if __name__ == "__main__":
    unittest.main()
