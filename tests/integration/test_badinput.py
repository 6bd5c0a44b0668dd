"""The bad-input battery: every case gives a clear error, sends nothing it
should not, and leaks no token (checked after every test by SimTestCase)."""

import json
import os
import socket
import time
import unittest

from common import SimTestCase, pslib
from pslib import Raw


class BadConfigTest(SimTestCase):

    def expect_config_error(self, cfg, *needles):
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 78, err)
        self.assertIn(os.path.basename(cfg), err, "the error names the file")
        for n in needles:
            self.assertIn(n, err)
        self.assertEqual(self.deletes(), [], "nothing is sent on a config error")
        rc2, _out, err2 = self.run_cmd(["check"], cfg)
        self.assertEqual(rc2, 78, err2)
        return err

    def line_of(self, cfg, needle):
        with open(cfg) as f:
            for i, line in enumerate(f, 1):
                if needle in line:
                    return i
        raise AssertionError(needle)

    def test_syntax_error(self):
        cfg = self.config(extra="this is = not ( valid\n")
        err = self.expect_config_error(cfg)
        self.assertIn(":%d" % self.line_of(cfg, "this is"), err)

    def test_trailing_comma_in_list(self):
        cfg = self.config(pam_services=Raw('[ "a", ]'))
        err = self.expect_config_error(cfg)
        self.assertIn(":%d" % self.line_of(cfg, "pam_services"), err)

    def test_unknown_key(self):
        cfg = self.config(api_extra="tiemout = 3;")
        err = self.expect_config_error(cfg, "tiemout")
        self.assertIn(":%d" % self.line_of(cfg, "tiemout"), err)

    def test_unknown_key_in_user(self):
        cfg = self.config(users=[{"login": "alice", "id": "d4xkq1abc", "orgnization": "x"}])
        err = self.expect_config_error(cfg, "orgnization")
        self.assertIn(":%d" % self.line_of(cfg, "orgnization"), err)

    def test_wrong_type(self):
        cfg = self.config(retries="three")
        err = self.expect_config_error(cfg, "retries")
        self.assertIn(":%d" % self.line_of(cfg, "retries"), err)

    def test_duplicate_login(self):
        cfg = self.config(users=[{"login": "alice", "id": "d4xkq1abc"},
                                 {"login": "alice", "id": "other1"}])
        self.expect_config_error(cfg, "alice", "duplicate")

    def test_empty_id(self):
        cfg = self.config(users=[{"login": "alice", "id": ""}])
        self.expect_config_error(cfg, "id")

    def test_hostile_ids_and_organizations(self):
        for bad in ("a/b", "a?b", "..", ".", "%2e%2e", "a b", "a\nb", "a\x01b", "../admin"):
            for field in ("id", "organization"):
                user = {"login": "alice", "id": "d4xkq1abc"}
                user[field] = bad
                cfg = self.config(users=[user])
                self.expect_config_error(cfg, field)

    def test_hostile_default_organization(self):
        cfg = self.config(organization="acme/../x")
        self.expect_config_error(cfg, "organization")

    def test_token_readable_by_others(self):
        cfg = self.config()
        os.chmod(cfg, 0o644)
        err = self.expect_config_error(cfg, "chmod")

    def test_token_file_readable_by_others(self):
        tf = os.path.join(self.dir, "token")
        with open(tf, "w") as f:
            f.write("%s:%s\n" % (pslib.TOKEN_ID, pslib.TOKEN))
        os.chmod(tf, 0o640)
        cfg = self.config(token_file=tf)
        self.expect_config_error(cfg, "chmod", "token")

    def test_plain_http_to_remote_host_refused(self):
        cfg = self.config(url="http://api.planetscale.com/v1")
        self.expect_config_error(cfg, "https")

    def test_two_credentials_refused(self):
        cfg = self.config(oauth_token=pslib.OAUTH_TOKEN, token_id=pslib.TOKEN_ID,
                          token=pslib.TOKEN)
        self.expect_config_error(cfg)

    def test_token_with_newline_refused(self):
        cfg = self.config(token=pslib.TOKEN + "\nX-Injected: 1")
        self.expect_config_error(cfg)


class HostileLoginTest(SimTestCase):

    def test_login_with_newline_from_stdin(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "-"], cfg, input="ali\x1bce\n")
        self.assertEqual(rc, 64, err)
        self.assertIn("invalid login", err)
        self.assertIn("\\x1b", err, "control characters are escaped, never echoed raw")
        self.assertNotIn("\x1b", err)
        self.assertEqual(self.deletes(), [])

    def test_login_with_newline_in_argv(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "alice\nforged outcome=removed"], cfg)
        self.assertEqual(rc, 64, err)
        self.assertEqual(self.deletes(), [])
        for line in self.syslog_lines():
            self.assertFalse(line.startswith("forged"), "a login split a log line")

    def test_overlong_login(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "a" * 257], cfg)
        self.assertEqual(rc, 64, err)
        self.assertEqual(self.deletes(), [])
        rc, out, err = self.run_cmd(["remove", "-"], cfg, input="b" * 100000 + "\nalice\n")
        self.assertEqual(rc, 64, err)
        self.assertEqual(len(self.deletes()), 1, "the valid login after it is still removed")

    def test_login_starting_with_dash(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "--", "-rf"], cfg)
        self.assertEqual(rc, 64, err)


class BrokenNetworkTest(SimTestCase):

    def test_unreachable_host_is_queued(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()   # nothing listens there now
        cfg = self.config(url="https://127.0.0.1:%d/v1" % port, retries=2)
        t0 = time.monotonic()
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 75, err)
        self.assertIn("queued", err)
        self.assertLess(time.monotonic() - t0, 15)
        self.assertEqual(len(self.queue_entries()), 1)

    def test_wrong_ca_is_a_config_error(self):
        cfg = self.config(ca_file=self.sim.other_ca_file, retries=3)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 78, err)
        self.assertRegex(err.lower(), "certificate|ssl|tls")
        self.assertEqual(self.sim.requests(), [],
                         "no request goes over an unverified TLS session")
        # the removal is kept, held with the reason (an intercepting proxy
        # looks like this), and sent once the configuration is fixed
        q = self.queue_json(cfg)
        self.assertEqual([(e["login"], e["state"]) for e in q], [("alice", "held")])
        self.assertRegex(q[0]["last_error"].lower(), "certificate|ssl|tls")
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 77, "unchanged configuration: still held\n" + out + err)
        self.assertEqual(self.sim.requests(), [])
        cfg = self.config(retries=3)   # the right CA: the configuration changed
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual([r["status"] for r in self.deletes()], [204])
        self.assertEqual(self.queue_entries(), [])

    def test_retry_stopped_by_the_configuration_says_why(self):
        """A drain that a configuration problem stops says which one, in
        its log line and in --json (found by test_property.py: the line
        read "retry stopped: %s (...)")."""
        cfg = self.config(ca_file=self.sim.other_ca_file, retries=1)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 78, err)
        rc, out, err = self.run_cmd(["retry", "--held"], cfg)
        self.assertEqual(rc, 78, out + err)
        self.assertNotIn("%s", out + err)
        self.assertRegex(err, r"retry stopped: a configuration problem \(GET: .*certificate")
        rc, out, err = self.run_cmd(["--json", "retry", "--held"], cfg)
        self.assertEqual(rc, 78, out + err)
        stopped = json.loads(out)["stopped"]
        self.assertTrue(stopped.startswith("a configuration problem (GET: "), stopped)
        self.assertIn("certificate", stopped)

    def test_redirect_not_followed(self):
        self.sim.set_faults(["redirect;count=1"])
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 78, err)
        self.assertIn("redirect", err)
        self.assertEqual(len(self.sim.requests()), 1, "the redirect was followed")

    def test_huge_answer(self):
        self.sim.set_faults(["huge:500:8;count=-1"])
        cfg = self.config(retries=1)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 75, err)
        self.assertLess(len(err), 4096, "a huge answer is not echoed")

    def test_not_json_error_body(self):
        self.sim.set_faults(["status:403:notjson;method=DELETE;count=1"])
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 77, err)
        self.assertIn("403", err)

    def test_garbage_answer(self):
        self.sim.set_faults(["garbage;count=-1"])
        cfg = self.config(retries=1)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 75, err)
        q = self.queue_json(cfg)
        self.assertEqual([e["state"] for e in q], ["pending"])

    def test_garbage_answer_is_transient(self):
        """An answer that is not HTTP, over a TLS session that verified (a
        broken load balancer), is a failure of the API, not of the
        configuration: the removal should stay pending for `retry`, and its
        reason should not send the administrator to api.url. (curl reports
        "Received HTTP/0.9 when not allowed" as CURLE_UNSUPPORTED_PROTOCOL,
        which is a configuration problem only before the request left.)"""
        self.sim.set_faults(["garbage;count=1"])
        cfg = self.config(retries=1)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        q = self.queue_json(cfg)
        self.assertEqual((rc, [e["state"] for e in q]), (75, ["pending"]), err)
        self.assertNotIn("api.url", q[0]["last_error"])


if __name__ == "__main__":
    unittest.main()
