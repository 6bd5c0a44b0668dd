"""The command against the HTTPS simulator: every outcome class, both flag
encodings, both auth forms, retries then give-up, bounded timeouts."""

import json
import os
import shlex
import shutil
import subprocess
import time
import unittest
from urllib.parse import parse_qs, urlsplit

from common import SimTestCase, pslib

# under a TEST_WRAPPER (valgrind) a process starts and loads its
# configuration several times slower: the margins past a bound scale
WRAPPED = 3 if os.environ.get("TEST_WRAPPER") else 1

ALICE_PATH = "/v1/organizations/acme/members/d4xkq1abc"


def header(req, name):
    for k, v in (req.get("headers") or {}).items():
        if k.lower() == name.lower():
            return v
    return None


class RemoveTest(SimTestCase):

    def test_remove_query_form(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("alice: removed from acme", out)
        reqs = self.deletes()
        self.assertEqual(len(reqs), 1)
        r = reqs[0]
        u = urlsplit(r["target"])
        self.assertEqual(u.path, ALICE_PATH)
        self.assertEqual(parse_qs(u.query), {"delete_passwords": ["true"],
                                             "delete_service_tokens": ["true"]})
        self.assertEqual(r["status"], 204)
        self.assertEqual(header(r, "Authorization"), self.sim.auth_header)
        self.assertTrue(header(r, "User-Agent").startswith("pam-planetscale/"))
        self.assertFalse(r.get("body"))
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))
        lines = self.audit("removed")
        self.assertEqual(len(lines), 1, self.syslog_lines())
        self.assertTrue(lines[0].startswith("authpriv.info"), lines[0])
        for part in ("login=alice", "organization=acme", "id=d4xkq1abc",
                     "delete_passwords=true", "delete_service_tokens=true", "http_status=204"):
            self.assertIn(part, lines[0])
        self.assertEqual(self.queue_entries(), [], "the write-ahead entry is removed on 204")

    def test_second_remove_is_absent_and_success(self):
        cfg = self.config()
        self.assertEqual(self.run_cmd(["remove", "alice"], cfg)[0], 0)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("already absent", out)
        # the second looks first: GET 404, and the credential reads the
        # member list (the probe), so no DELETE is sent
        self.assertEqual([r["status"] for r in self.deletes()], [204])
        self.assertEqual([r["status"] for r in self.sim.requests(method="GET")], [200, 404, 200])
        self.assertEqual(len(self.audit("absent")), 1)
        self.assertEqual(self.queue_entries(), [])

    def test_body_form(self):
        cfg = self.config(cleanup_flags="body")
        rc, out, err = self.run_cmd(["remove", "bob"], cfg)
        self.assertEqual(rc, 0, err)
        r = self.deletes()[0]
        u = urlsplit(r["target"])
        self.assertEqual(u.path, "/v1/organizations/acme-eu/members/x9z8")
        self.assertEqual(u.query, "")
        self.assertEqual(json.loads(r["body"]), {"delete_passwords": True,
                                                 "delete_service_tokens": False})
        self.assertIn("application/json", header(r, "Content-Type"))
        self.assertEqual(r["status"], 204)

    def test_per_user_flags_and_organization_in_query(self):
        cfg = self.config()
        self.assertEqual(self.run_cmd(["remove", "bob"], cfg)[0], 0)
        u = urlsplit(self.deletes()[0]["target"])
        self.assertEqual(u.path, "/v1/organizations/acme-eu/members/x9z8")
        self.assertEqual(parse_qs(u.query), {"delete_passwords": ["true"],
                                             "delete_service_tokens": ["false"]})

    def test_defaults_block(self):
        cfg = self.config(defaults={"delete_passwords": False, "delete_service_tokens": False},
                          users=[{"login": "alice", "id": "d4xkq1abc"}])
        self.assertEqual(self.run_cmd(["remove", "alice"], cfg)[0], 0)
        u = urlsplit(self.deletes()[0]["target"])
        self.assertEqual(parse_qs(u.query), {"delete_passwords": ["false"],
                                             "delete_service_tokens": ["false"]})

    def test_oauth_bearer(self):
        self.sim.configure(oauth=pslib.OAUTH_TOKEN)
        try:
            cfg = self.config(oauth_token=pslib.OAUTH_TOKEN)
            rc, out, err = self.run_cmd(["remove", "alice"], cfg)
            self.assertEqual(rc, 0, err)
            self.assertEqual(header(self.deletes()[0], "Authorization"),
                             "Bearer " + pslib.OAUTH_TOKEN)
        finally:
            self.sim.configure(oauth=None)

    def test_token_file(self):
        tf = os.path.join(self.dir, "token")
        fd = os.open(tf, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, ("%s:%s\n" % (pslib.TOKEN_ID, pslib.TOKEN)).encode())
        os.close(fd)
        cfg = self.config(token_file=tf)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(header(self.deletes()[0], "Authorization"), self.sim.auth_header)

    def test_unmapped_ignored(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "mallory"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("not mapped", out)
        self.assertEqual(self.deletes(), [])
        self.assertEqual(len(self.audit("unmapped")), 1)

    def test_unmapped_error(self):
        cfg = self.config(unmapped="error")
        rc, out, err = self.run_cmd(["remove", "mallory"], cfg)
        self.assertEqual(rc, 1)
        self.assertIn("unmapped", err)
        self.assertEqual(self.deletes(), [])

    def test_last_admin_refused_with_api_message(self):
        self.sim.set_members({"solo": [{"id": "onlyadm", "email": "a@example.com",
                                        "name": "A", "role": "admin"}]})
        cfg = self.config(users=[{"login": "alice", "id": "onlyadm", "organization": "solo"}])
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 77, err)
        self.assertIn(pslib.LAST_ADMIN_MESSAGE, err)
        self.assertIn("held", err)
        self.assertEqual(len(self.deletes()), 1, "a refusal is not retried")
        # a refusal is kept, held with its reason, never forgotten
        q = self.queue_json(cfg)
        self.assertEqual([(e["login"], e["state"]) for e in q], [("alice", "held")])
        self.assertIn(pslib.LAST_ADMIN_MESSAGE, q[0]["last_error"])
        lines = self.audit("held")
        self.assertEqual(len(lines), 1)
        self.assertIn("http_status=403", lines[0])
        self.assertIn("authpriv.err", lines[0])

    def test_wrong_token_401_refused(self):
        cfg = self.config(token="pscale_tkn_SECRETvalue0123456789-wrong")
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 77, err)
        self.assertEqual([r["status"] for r in self.sim.requests()], [401],
                         "the GET is refused; nothing more is sent")
        q = self.queue_json(cfg)
        self.assertEqual([(e["login"], e["state"]) for e in q], [("alice", "held")])
        self.assertIn("401", q[0]["last_error"])
        self.assertNotIn("-wrong", err + out)

    def test_400_and_422_refused(self):
        for code in (400, 422):
            self.sim.reset()
            self.sim.set_faults(["status:%d;method=DELETE;count=1" % code])
            cfg = self.config()
            rc, out, err = self.run_cmd(["remove", "alice"], cfg)
            self.assertEqual(rc, 77, (code, err))
            self.assertEqual(len(self.deletes()), 1)
            q = self.queue_json(cfg)
            self.assertEqual([e["state"] for e in q], ["held"], code)
            self.assertIn(str(code), q[0]["last_error"])

    def test_503_then_204_retried_in_call(self):
        self.sim.set_faults(["status:503;method=DELETE;count=1"])
        cfg = self.config(retries=3)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual([r["status"] for r in self.deletes()], [503, 204])
        self.assertEqual(self.sim.stats()["connections"], 1,
                         "the retry reuses the connection")

    def test_5xx_retries_then_queued_then_retry_drains(self):
        self.sim.set_faults(["status:503;method=DELETE;count=-1"])
        cfg = self.config(retries=2)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 75, err)
        self.assertIn("queued", err)
        self.assertEqual([r["status"] for r in self.deletes()], [503, 503])
        self.assertEqual(len(self.queue_entries()), 1)
        self.assertEqual(len(self.audit("queued")), 1)
        rc, out, err = self.run_cmd(["--json", "queue"], cfg)
        self.assertEqual(rc, 0, err)
        q = json.loads(out)
        self.assertEqual(len(q), 1)
        # one GET, then two DELETEs
        self.assertEqual((q[0]["login"], q[0]["organization"], q[0]["id"], q[0]["attempts"],
                          q[0]["state"]), ("alice", "acme", "d4xkq1abc", 3, "pending"))
        self.assertIn("503", q[0]["last_error"])
        self.sim.set_faults([])
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("1 removed", out)
        self.assertEqual(self.queue_entries(), [])
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))

    def test_429_retry_after_honoured(self):
        self.sim.set_faults(["429:1;method=DELETE;count=1"])
        cfg = self.config(retries=3)
        t0 = time.monotonic()
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        reqs = self.deletes()
        self.assertEqual([r["status"] for r in reqs], [429, 204])
        self.assertGreaterEqual(reqs[1]["t_start"] - reqs[0]["t_end"], 0.9,
                                "Retry-After: 1 was not honoured")
        self.assertLess(time.monotonic() - t0, 20)

    def test_timeout_bounded(self):
        self.sim.set_faults(["delay:30;count=-1"])
        cfg = self.config(timeout=1, connect_timeout=1, retries=2)
        t0 = time.monotonic()
        rc, out, err = self.run_cmd(["remove", "--no-queue", "alice"], cfg)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 75, err)
        self.assertIn("not queued", err)
        self.assertLess(elapsed, 2 * 1 + 2 + 3 * WRAPPED, "timeouts must bound the wait")
        self.assertEqual(self.queue_entries(), [])

    def test_remove_deadline_bounds_the_wait_and_queues(self):
        self.sim.set_faults(["delay:30;count=-1"])
        cfg = self.config(timeout=10, connect_timeout=3, retries=3)
        t0 = time.monotonic()
        rc, out, err = self.run_cmd(["remove", "--deadline", "2", "alice"], cfg)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 75, err)
        self.assertLess(elapsed, 2 + 3 * WRAPPED, "--deadline bounds retries and timeouts")
        self.assertEqual(len(self.queue_entries()), 1, "the request is kept")

    def test_reset_connection_is_transient(self):
        self.sim.set_faults(["reset;count=1"])
        cfg = self.config(retries=2)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.deletes()[-1]["status"], 204)

    def test_dry_run_sends_nothing(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "--dry-run", "alice", "bob"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("would remove user d4xkq1abc from acme", out)
        self.assertIn("would remove user x9z8 from acme-eu", out)
        self.assertEqual(self.deletes(), [])
        self.assertEqual(self.queue_entries(), [])

    def test_logins_from_stdin(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "-"], cfg, input="alice\n\nbob\nmallory\n")
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(urlsplit(r["target"]).path for r in self.deletes()),
                         sorted([ALICE_PATH, "/v1/organizations/acme-eu/members/x9z8"]))

    def test_json_output(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "alice", "mallory", "--json"], cfg)
        self.assertEqual(rc, 0, err)
        res = json.loads(out)
        self.assertEqual([(r["login"], r["outcome"]) for r in res],
                         [("alice", "removed"), ("mallory", "unmapped")])
        self.assertEqual(res[0]["http_status"], 204)

    def test_global_options_after_command(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "alice", "--config", cfg, "--verbose"])
        self.assertEqual(rc, 0, err)
        self.assertIn("outcome=removed", err, "--verbose copies the audit line to stderr")

    def test_worst_exit_code_wins(self):
        self.sim.set_members({"acme": [{"id": "adm0acme", "email": "r@example.com",
                                        "name": "R", "role": "admin"},
                                       {"id": "d4xkq1abc", "email": "a@example.com",
                                        "name": "A", "role": "member"}],
                              "solo": [{"id": "onlyadm", "email": "o@example.com",
                                        "name": "O", "role": "admin"}]})
        cfg = self.config(users=[{"login": "alice", "id": "d4xkq1abc"},
                                 {"login": "olga", "id": "onlyadm", "organization": "solo"}])
        rc, out, err = self.run_cmd(["remove", "alice", "olga"], cfg)
        self.assertEqual(rc, 77)
        self.assertIn("alice: removed", out)


class RetryProgressTest(SimTestCase):

    def test_progress_on_a_tty_summary_otherwise(self):
        script = shutil.which("script")
        if not script:
            self.skipTest("needs script(1) from util-linux to give retry a terminal")
        self.sim.set_faults(["status:503;count=-1"])
        cfg = self.config(retries=1, users=[{"login": "alice", "id": "d4xkq1abc"},
                                            {"login": "carol", "id": "c4rol"}])
        rc, out, err = self.run_cmd(["remove", "alice", "carol"], cfg)
        self.assertEqual(rc, 75, err)
        self.sim.set_faults([])
        cmd = " ".join(shlex.quote(a) for a in
                       os.environ.get("TEST_WRAPPER", "").split() +
                       [pslib.command_path(), "--config", cfg, "retry"])
        p = subprocess.run([script, "-qec", cmd, "/dev/null"], capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
        self.outputs.append(p.stdout + p.stderr)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertRegex(p.stdout, r"retry: 2/2 done, [0-9.]+ entries/s, ETA [0-9]+ s",
                         "a terminal shows done/total, rate and ETA")
        self.assertEqual(self.queue_entries(), [])
        # not a terminal: exactly one summary line, no progress line
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("ETA", out + err)
        self.assertEqual(out.strip(), "retry: the queue is empty")


class CommandLineTest(SimTestCase):

    def test_lookup_no_network(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["lookup", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("DELETE " + self.sim.url + "/organizations/acme/members/d4xkq1abc"
                      "?delete_passwords=true&delete_service_tokens=true", out)
        self.assertIn("service token", out)
        rc, out, err = self.run_cmd(["lookup", "--json", "bob"], self.config(cleanup_flags="body"))
        self.assertEqual(rc, 0, err)
        j = json.loads(out)[0]
        self.assertEqual(j["url"], self.sim.url + "/organizations/acme-eu/members/x9z8")
        self.assertEqual(json.loads(j["body"]), {"delete_passwords": True,
                                                 "delete_service_tokens": False})
        self.assertEqual(self.sim.requests(), [])

    def test_check_ok_and_json(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("OK", out)
        self.assertIn("users mapped: 2", out)
        rc, out, err = self.run_cmd(["check", "--json"], cfg)
        self.assertEqual(json.loads(out)["users"], 2)

    def test_check_without_credential(self):
        cfg = self.config(token_id=None, token=None)
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 78)
        self.assertIn("credential", err)

    def test_usage_errors(self):
        cfg = self.config()
        for args in (["remove"], ["frobnicate"], [], ["remove", "--bogus", "alice"],
                     ["check", "extra"], ["lookup"], ["retry", "--deadline", "abc"]):
            rc, out, err = self.run_cmd(args, cfg)
            self.assertEqual(rc, 64, (args, err))
            self.assertIn("--help", err)

    def test_help_and_version(self):
        rc, out, err = self.run_cmd(["--help"])
        self.assertEqual(rc, 0)
        for word in ("remove", "retry", "queue", "check", "lookup", "--dry-run", "--no-queue",
                     "--config", "--json", "--verbose", "75", "77", "78", "64"):
            self.assertIn(word, out)
        rc, out, err = self.run_cmd(["--version"])
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^planetscale-deprovision \d+\.\d+\.\d+")

    def test_missing_config_file(self):
        rc, out, err = self.run_cmd(["remove", "alice"], os.path.join(self.dir, "nope.conf"))
        self.assertEqual(rc, 78)
        self.assertIn("nope.conf", err)
        self.assertTrue(any("configuration error" in l for l in self.syslog_lines()))


if __name__ == "__main__":
    unittest.main()
