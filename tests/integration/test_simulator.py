"""Self-test of tests/simulator.py and tests/pslib.py (no product code)."""

import email.utils
import http.client
import json
import os
import socket
import ssl
import tempfile
import threading
import time
import unittest

import pslib

MEMBERS = {
    "acme": [
        {"id": "adm0acme", "email": "root@example.com", "name": "Root Admin", "role": "admin"},
        {"id": "d4xkq1abc", "email": "alice@example.com", "name": "Alice", "role": "member"},
        {"id": "x9z8", "email": "bob@example.com", "name": "Bob", "role": "member"},
        {"id": "c4rol", "email": "Carol@Example.com", "name": "Carol", "role": "member"},
        {"id": "d4ve", "email": "dave@example.org", "name": "Dave", "role": "member"},
    ],
    "solo": [{"id": "only1", "email": "only@example.com", "name": "Only", "role": "admin"}],
}
ALICE = "/v1/organizations/acme/members/d4xkq1abc"
FLAGS_QS = "?delete_passwords=true&delete_service_tokens=false"
MEMBERSHIP_KEYS = {"id", "user", "role", "created_at", "updated_at"}
USER_KEYS = {"id", "display_name", "name", "email", "avatar_url", "created_at",
             "updated_at", "two_factor_auth_configured"}
LIST_KEYS = {"type", "current_page", "per_page", "next_page", "next_page_url", "prev_page",
             "prev_page_url", "total_count", "total_pages", "data"}


class SimTestCase(unittest.TestCase):
    sim = None

    @classmethod
    def setUpClass(cls):
        cls.sim = pslib.Simulator(members=MEMBERS).start()

    @classmethod
    def tearDownClass(cls):
        if cls.sim:
            cls.sim.stop()

    def setUp(self):
        self.sim.set_members(MEMBERS)
        self.sim.reset()

    def connect(self, timeout=10, cafile=None):
        return http.client.HTTPSConnection("127.0.0.1", self.sim.port, timeout=timeout,
                                           context=pslib.ssl_context(cafile or self.sim.ca_file))

    def call(self, method, path, body=None, headers=None, auth=True, conn=None,
             timeout=10):
        """(status, headers, body bytes); a fresh connection unless `conn`."""
        hdrs = {"Authorization": self.sim.auth_header} if auth is True else (
            {"Authorization": auth} if auth else {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
            hdrs["Content-Type"] = "application/json"
        hdrs.update(headers or {})
        c = conn or self.connect(timeout)
        try:
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            return r.status, r.headers, r.read()
        finally:
            if conn is None:
                c.close()

    def assertApiError(self, resp, status, code=None, message=None):
        self.assertEqual(resp[0], status, resp[2])
        obj = json.loads(resp[2])
        self.assertEqual(set(obj), {"code", "message"})
        if code:
            self.assertEqual(obj["code"], code)
        if message:
            self.assertEqual(obj["message"], message)
        return obj


class TestDelete(SimTestCase):
    def test_204_then_404(self):
        st, hdrs, body = self.call("DELETE", ALICE + FLAGS_QS)
        self.assertEqual((st, body), (204, b""))
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))
        removed = self.sim.state()["removed"]
        self.assertEqual(len(removed), 1)
        self.assertEqual((removed[0]["form"], removed[0]["delete_passwords"],
                          removed[0]["delete_service_tokens"]), ("query", True, False))
        self.assertApiError(self.call("DELETE", ALICE + FLAGS_QS), 404, "not_found", "Not Found")

    def test_body_form(self):
        st, _, body = self.call("DELETE", ALICE, {"delete_passwords": False,
                                                  "delete_service_tokens": True})
        self.assertEqual((st, body), (204, b""))
        r = self.sim.state()["removed"][0]
        self.assertEqual((r["form"], r["delete_passwords"], r["delete_service_tokens"]),
                         ("body", False, True))

    def test_no_flags_and_partial(self):
        self.assertEqual(self.call("DELETE", ALICE)[0], 204)
        self.assertEqual(self.call("DELETE", "/v1/organizations/acme/members/x9z8",
                                   {"delete_passwords": True})[0], 204)
        forms = [r["form"] for r in self.sim.state()["removed"]]
        self.assertEqual(forms, ["none", "body"])

    def test_query_validation(self):
        for qs in ("?delete_passwords=1", "?delete_passwords=TRUE", "?delete_passwords=",
                   "?delete_passwords", "?delete_passwords=yes", "?foo=true",
                   "?delete_passwords=true&delete_passwords=false",
                   "?delete_passwords=true&x=1"):
            with self.subTest(qs=qs):
                self.assertApiError(self.call("DELETE", ALICE + qs), 422, "unprocessable_entity")
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"))

    def test_body_validation(self):
        cases = [({"delete_passwords": True, "extra": True}, 422),
                 ({"delete_passwords": "true"}, 422), ({"delete_service_tokens": 1}, 422),
                 ({"delete_passwords": None}, 422), ([True], 422), ("true", 422),
                 ('{"delete_passwords": tru', 400), ('{"delete_passwords": true} x', 400),
                 ('{"delete_passwords": true, "delete_passwords": false}', 422),
                 (b"\xff\xfe", 400)]
        for body, status in cases:
            with self.subTest(body=body):
                if isinstance(body, (str, bytes)):
                    resp = self.call("DELETE", ALICE, body,
                                     headers={"Content-Type": "application/json"})
                else:
                    resp = self.call("DELETE", ALICE, body)
                self.assertApiError(resp, status)
        resp = self.call("DELETE", ALICE, '{"delete_passwords": true}',
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertApiError(resp, 422)
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"))

    def test_both_forms_422(self):
        obj = self.assertApiError(self.call("DELETE", ALICE + FLAGS_QS,
                                            {"delete_passwords": True}), 422)
        self.assertIn("both", obj["message"])

    def test_charset_content_type_ok(self):
        resp = self.call("DELETE", ALICE, '{"delete_passwords":true}',
                         headers={"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(resp[0], 204)

    def test_auth(self):
        for auth in (False, "wrong:token", "Bearer " + self.sim.auth_header,
                     self.sim.auth_header + " ", self.sim.token, self.sim.token_id + ":"):
            with self.subTest(auth=auth):
                self.assertApiError(self.call("DELETE", ALICE, auth=auth), 401, "unauthorized")
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"))
        self.assertEqual(self.call("GET", "/v1/organizations/acme/members", auth=False)[0], 401)

    def test_oauth(self):
        self.sim.configure(oauth="oauth-abc")
        try:
            self.assertEqual(self.call("DELETE", ALICE, auth="oauth-abc")[0], 401)
            self.assertEqual(self.call("DELETE", ALICE, auth="Bearer oauth-abc")[0], 204)
            self.sim.configure(token=None)
            self.assertEqual(self.call("DELETE", "/v1/organizations/acme/members/x9z8")[0],
                             401)
        finally:
            self.sim.configure(oauth=None, token=self.sim.auth_header)

    def test_last_admin_403(self):
        resp = self.call("DELETE", "/v1/organizations/solo/members/only1" + FLAGS_QS)
        self.assertApiError(resp, 403, "forbidden", pslib.LAST_ADMIN_MESSAGE)
        self.assertEqual(self.sim.members_of("solo"), ["only1"])
        # an admin who is not the last one can go
        self.assertEqual(self.call("PATCH", ALICE, {"role": "admin"})[0], 200)
        self.assertEqual(self.call("DELETE", "/v1/organizations/acme/members/adm0acme")[0],
                         204)
        self.assertApiError(self.call("DELETE", ALICE), 403, message=pslib.LAST_ADMIN_MESSAGE)

    def test_unknown_org_and_routes(self):
        self.assertApiError(self.call("DELETE", "/v1/organizations/nope/members/d4xkq1abc"),
                            404, "not_found", "Not Found")
        self.assertApiError(self.call("DELETE", "/v1/organizations/acme"), 404, "not_found")
        self.assertApiError(self.call("DELETE", "/v1/organizations/acme/members/"), 404)
        self.assertApiError(self.call("DELETE", "/organizations/acme/members/d4xkq1abc"), 404)
        # an escaped id is decoded: "a/b" is one segment, not found
        self.assertEqual(self.call("DELETE", "/v1/organizations/acme/members/a%2Fb")[0], 404)


class TestReadApi(SimTestCase):
    def get(self, path):
        st, _, body = self.call("GET", path)
        self.assertEqual(st, 200, body)
        return json.loads(body)

    def test_pagination(self):
        seen, page, pages = [], 1, 0
        while page is not None:
            obj = self.get("/v1/organizations/acme/members?per_page=2&page=%d" % page)
            self.assertEqual(set(obj), LIST_KEYS)
            self.assertEqual((obj["type"], obj["total_count"], obj["total_pages"]),
                             ("list", 5, 3))
            self.assertEqual(obj["current_page"], page)
            self.assertEqual(obj["prev_page"], None if page == 1 else page - 1)
            seen += [m["user"]["id"] for m in obj["data"]]
            if obj["next_page"]:
                self.assertTrue(obj["next_page_url"].startswith(self.sim.url))
                self.assertIn("page=%d" % obj["next_page"], obj["next_page_url"])
            else:
                self.assertIsNone(obj["next_page_url"])
            page, pages = obj["next_page"], pages + 1
        self.assertEqual(pages, 3)
        self.assertEqual(seen, [m["id"] for m in MEMBERS["acme"]])
        obj = self.get("/v1/organizations/acme/members")
        self.assertEqual((obj["per_page"], obj["next_page"], len(obj["data"])), (25, None, 5))
        m = obj["data"][1]
        self.assertEqual(set(m), MEMBERSHIP_KEYS)
        self.assertTrue(USER_KEYS <= set(m["user"]))
        self.assertEqual((m["user"]["email"], m["role"]), ("alice@example.com", "member"))

    def test_search(self):
        obj = self.get("/v1/organizations/acme/members?q=carol%40example.com")
        self.assertEqual([m["user"]["id"] for m in obj["data"]], ["c4rol"])
        obj = self.get("/v1/organizations/acme/members?q=example.com&per_page=1&page=2")
        self.assertEqual(obj["total_count"], 4)
        self.assertIn("q=example.com", obj["next_page_url"])
        obj = self.get("/v1/organizations/acme/members?q=nobody")
        self.assertEqual((obj["total_count"], obj["total_pages"], obj["data"]), (0, 0, []))
        self.assertEqual(self.call("GET", "/v1/organizations/acme/members?page=0")[0], 422)
        self.assertEqual(self.call("GET", "/v1/organizations/acme/members?per_page=x")[0], 422)
        self.assertEqual(self.call("GET", "/v1/organizations/nope/members")[0], 404)

    def test_get_and_patch(self):
        m = self.get(ALICE)
        self.assertEqual((m["user"]["id"], m["role"]), ("d4xkq1abc", "member"))
        st, _, body = self.call("PATCH", ALICE, {"role": "admin"})
        self.assertEqual((st, json.loads(body)["role"]), (200, "admin"))
        self.assertEqual(self.call("PATCH", ALICE, {"role": "owner"})[0], 422)
        self.assertEqual(self.call("PATCH", ALICE, "{", {"Content-Type": "application/json"})[0],
                         400)
        self.assertApiError(self.call("PATCH", "/v1/organizations/solo/members/only1",
                                      {"role": "member"}), 403)
        self.assertEqual(self.call("GET", "/v1/organizations/acme/members/zz")[0], 404)


class TestFaults(SimTestCase):
    def test_status_json_and_notjson(self):
        self.sim.set_faults(["status:503", "status:500:notjson", "status:502:empty"])
        self.assertApiError(self.call("DELETE", ALICE), 503)
        st, _, body = self.call("DELETE", ALICE)
        self.assertEqual(st, 500)
        self.assertRaises(ValueError, json.loads, body)
        self.assertEqual(self.call("DELETE", ALICE)[:3:2], (502, b""))
        self.assertEqual(self.call("DELETE", ALICE)[0], 204)   # queue drained
        self.assertEqual([r["fault"] for r in self.sim.requests()],
                         ["status:503", "status:500:notjson", "status:502:empty", None])

    def test_429_variants(self):
        self.sim.set_faults(["429", "429:7", "429:httpdate:30"])
        st, hdrs, _ = self.call("DELETE", ALICE)
        self.assertEqual((st, hdrs.get("Retry-After")), (429, None))
        st, hdrs, _ = self.call("DELETE", ALICE)
        self.assertEqual((st, hdrs.get("Retry-After")), (429, "7"))
        st, hdrs, _ = self.call("DELETE", ALICE)
        when = email.utils.parsedate_to_datetime(hdrs["Retry-After"]).timestamp()
        self.assertAlmostEqual(when - time.time(), 30, delta=3)
        self.assertEqual(self.sim.stats()["status_counts"]["429"], 3)

    def test_delay_past_client_timeout(self):
        self.sim.set_faults(["delay:3"])
        t0 = time.monotonic()
        with self.assertRaises((socket.timeout, TimeoutError)):
            self.call("DELETE", ALICE, timeout=0.5)
        reqs = self.sim.requests()   # settles: the server notices the client left
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertEqual(len(reqs), 1)
        self.assertTrue(reqs[0]["client_gone"])
        self.assertIsNone(reqs[0]["status"])
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"))

    def test_delay_then_answer(self):
        self.sim.set_faults(["delay:0.4"])
        t0 = time.monotonic()
        self.assertEqual(self.call("DELETE", ALICE)[0], 204)
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)

    def test_reset_and_close(self):
        self.sim.set_faults(["reset", "close"])
        with self.assertRaises(ConnectionResetError):
            self.call("DELETE", ALICE)
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
            self.call("DELETE", ALICE)
        reqs = self.sim.requests()
        self.assertEqual([(r["fault"], r["status"]) for r in reqs],
                         [("reset", None), ("close", None)])
        self.assertEqual(self.call("DELETE", ALICE)[0], 204)

    def test_huge(self):
        self.sim.set_faults(["huge", "huge:500:3"])
        st, _, body = self.call("DELETE", ALICE)
        self.assertEqual(st, 200)
        self.assertEqual(len(body), 5 * 1024 * 1024)
        self.assertEqual(json.loads(body)["code"], "huge")
        st, _, body = self.call("DELETE", ALICE)
        self.assertEqual((st, len(body)), (500, 3 * 1024 * 1024))

    def test_garbage(self):
        self.sim.set_faults(["garbage"])
        with self.assertRaises(http.client.HTTPException):
            self.call("DELETE", ALICE)

    def test_redirect(self):
        self.sim.set_faults(["redirect", "redirect:https://example.invalid/x"])
        st, hdrs, _ = self.call("DELETE", ALICE + FLAGS_QS)
        self.assertEqual(st, 301)
        self.assertEqual(hdrs["Location"], self.sim.base + "/redirected" + ALICE + FLAGS_QS)
        self.assertEqual(self.call("DELETE", ALICE)[1]["Location"], "https://example.invalid/x")
        # following it "works" (204) but leaves a trace in the log
        self.assertEqual(self.call("DELETE", "/redirected" + ALICE)[0], 204)
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"))
        self.assertEqual(len(self.sim.requests(path_contains="/redirected/")), 1)

    def test_match_method_count(self):
        self.sim.set_faults(["status:503;match=/members/x9z8;count=2",
                             {"spec": "status:500", "method": "GET", "count": -1}])
        self.assertEqual(self.call("DELETE", ALICE)[0], 204)
        bob = "/v1/organizations/acme/members/x9z8"
        self.assertEqual([self.call("DELETE", bob)[0] for _ in range(3)], [503, 503, 204])
        self.assertEqual([self.call("GET", "/v1/organizations/acme/members")[0]
                          for _ in range(3)], [500] * 3)
        faults = self.sim.state()["faults"]
        self.assertEqual([(f["spec"], f["count"]) for f in faults], [("status:500", -1)])
        self.sim.add_faults(["status:418"])
        self.assertEqual(len(self.sim.admin("GET", "/_admin/faults")), 2)
        self.sim.admin("DELETE", "/_admin/faults")
        self.assertEqual(self.sim.state()["faults"], [])

    def test_bad_fault_spec(self):
        for spec in ("nonsense", "status:abc", "delay", "429:x", "status:503;count=0",
                     "reset;bogus=1", "status:500;nomatch"):
            with self.subTest(spec=spec):
                with self.assertRaises(RuntimeError):
                    self.sim.set_faults([spec])

    def test_default_delay(self):
        self.sim.configure(delay=0.3)
        try:
            t0 = time.monotonic()
            self.assertEqual(self.call("DELETE", ALICE)[0], 204)
            self.assertGreaterEqual(time.monotonic() - t0, 0.3)
        finally:
            self.sim.configure(delay=0)

    def test_rate_limit(self):
        self.sim.configure(rate_limit=3)
        try:
            c = self.connect()
            got = [self.call("GET", "/v1/organizations/acme/members", conn=c) for _ in range(5)]
            self.assertEqual([g[0] for g in got], [200, 200, 200, 429, 429])
            self.assertEqual(int(got[3][1]["Retry-After"]), 1)
            self.assertEqual(json.loads(got[3][2])["code"], "rate_limited")
            self.sim.configure(retry_after=False)
            self.assertIsNone(self.call("GET", "/v1/organizations/acme/members", conn=c)[1]
                              .get("Retry-After"))
            time.sleep(1.05)
            self.assertEqual(self.call("GET", "/v1/organizations/acme/members", conn=c)[0], 200)
            c.close()
            self.assertEqual(self.sim.stats()["rate_limited"], 3)
        finally:
            self.sim.configure(rate_limit=0, retry_after=True)


class TestLogAndConnections(SimTestCase):
    def test_request_log(self):
        t0 = time.time()
        self.call("DELETE", ALICE + FLAGS_QS, headers={"User-Agent": "pam-planetscale/0.1"})
        self.call("DELETE", "/v1/organizations/acme/members/x9z8",
                  {"delete_passwords": True}, auth="Bearer nope")
        reqs = self.sim.requests()
        self.assertEqual(len(reqs), 2)
        a, b = reqs
        self.assertEqual((a["method"], a["path"], a["query"], a["status"]),
                         ("DELETE", ALICE, FLAGS_QS[1:], 204))
        self.assertEqual(a["params"], [["delete_passwords", "true"],
                                       ["delete_service_tokens", "false"]])
        self.assertEqual(a["authorization"], self.sim.auth_header)
        self.assertEqual(a["headers"]["user-agent"], "pam-planetscale/0.1")
        self.assertEqual((a["body"], a["body_len"]), ("", 0))
        self.assertTrue(t0 <= a["t_start"] <= a["t_end"] <= time.time())
        self.assertEqual((b["authorization"], b["status"]), ("Bearer nope", 401))
        self.assertEqual(json.loads(b["body"]), {"delete_passwords": True})
        self.assertEqual(b["headers"]["content-type"], "application/json")
        self.assertEqual([r["seq"] for r in reqs], [1, 2])
        self.assertEqual(self.sim.requests(method="DELETE", path_contains="x9z8"), [b])
        self.assertEqual(len(self.sim.admin("GET", "/_admin/requests")), 2)
        self.sim.reset()
        self.assertEqual(self.sim.requests(), [])

    def test_keepalive_one_connection(self):
        before = self.sim.stats()
        c = self.connect()
        for path in (ALICE, ALICE, "/v1/organizations/acme/members/x9z8"):
            st, hdrs, _ = self.call("DELETE", path, conn=c)
            self.assertIn(st, (204, 404))
        c.close()
        reqs = self.sim.requests()
        self.assertEqual(len({r["conn"] for r in reqs}), 1)
        self.assertEqual([r["new_conn"] for r in reqs], [True, False, False])
        self.assertEqual([r["conn_request"] for r in reqs], [0, 1, 2])
        self.assertEqual(len({r["peer_port"] for r in reqs}), 1)
        after = self.sim.stats()
        self.assertEqual((before["connections"], after["connections"]), (0, 1))
        # ours, plus one per admin call in requests() and stats()
        self.assertEqual(after["tls_handshakes"] - before["tls_handshakes"], 3)

    def test_404_keeps_connection(self):
        c = self.connect()
        self.assertEqual(self.call("DELETE", "/v1/organizations/acme/members/zz", conn=c)[0], 404)
        self.assertEqual(self.call("DELETE", ALICE + "?bad=1", conn=c)[0], 422)
        self.assertEqual(self.call("DELETE", ALICE, conn=c)[0], 204)
        c.close()
        self.assertEqual(len({r["conn"] for r in self.sim.requests()}), 1)

    def test_max_inflight_deletes(self):
        self.sim.set_faults(["delay:0.5;count=2"])
        threads = [threading.Thread(target=self.call, args=("DELETE", ALICE)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.call("DELETE", "/v1/organizations/acme/members/x9z8")
        self.call("DELETE", "/v1/organizations/acme/members/x9z8")
        st = self.sim.stats()
        self.assertEqual(st["max_inflight_deletes"], {"acme/d4xkq1abc": 2, "acme/x9z8": 1})
        self.assertEqual(st["delete_counts"], {"acme/d4xkq1abc": 2, "acme/x9z8": 2})
        self.assertEqual(st["max_inflight_deletes_any"], 2)
        self.assertEqual(sorted(r["status"] for r in self.sim.requests(path_contains="d4x")),
                         [204, 404])

    def test_wrong_ca_and_plain_http(self):
        before = self.sim.stats()["tls_failures"]
        wrong = self.connect(cafile=self.sim.other_ca_file)
        with self.assertRaises(ssl.SSLCertVerificationError):
            wrong.request("GET", "/v1/organizations/acme/members")
        wrong.close()
        plain = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=5)
        with self.assertRaises((http.client.HTTPException, ConnectionError)):
            plain.request("GET", "/v1/organizations/acme/members")
            plain.getresponse()
        plain.close()
        deadline = time.monotonic() + 3
        while self.sim.stats()["tls_failures"] < before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        st = self.sim.stats()
        self.assertEqual(st["tls_failures"], before + 2)
        self.assertEqual(st["connections"], 0)
        self.assertEqual(self.sim.requests(), [])

    def test_hostname_localhost(self):
        c = http.client.HTTPSConnection("localhost", self.sim.port, timeout=5,
                                         context=pslib.ssl_context(self.sim.ca_file))
        try:
            c.request("GET", "/_admin/health")
        except OSError as e:   # localhost may resolve to ::1 only where we do not listen
            self.skipTest("localhost: %s" % e)
        self.assertEqual(c.getresponse().status, 200)
        c.close()


class TestCommandLine(unittest.TestCase):
    def test_cli_flags_and_sigterm(self):
        sim = pslib.Simulator(members={"o": [{"id": "u1"}, {"id": "a1", "role": "admin"}]},
                              rate_limit=2, retry_after=False, delay=0.2,
                              faults=["status:503;match=/members/u1", "429:9;method=GET"])
        with sim:
            self.assertEqual(sim.state()["config"],
                             {"rate_limit": 2.0, "delay": 0.2, "retry_after": False,
                              "token_auth": True, "oauth_auth": False})
            self.assertEqual(len(sim.state()["faults"]), 2)
            ctx = pslib.ssl_context(sim.ca_file)
            c = http.client.HTTPSConnection("127.0.0.1", sim.port, context=ctx, timeout=5)
            got = []
            for method, path in (("GET", "/v1/organizations/o/members"),
                                 ("DELETE", "/v1/organizations/o/members/u1"),
                                 ("DELETE", "/v1/organizations/o/members/u1")):
                c.request(method, path, headers={"Authorization": sim.auth_header})
                r = c.getresponse()
                r.read()
                got.append((r.status, r.headers.get("Retry-After")))
            c.close()
            self.assertEqual(got, [(429, "9"), (503, None), (204, None)])
            c = http.client.HTTPSConnection("127.0.0.1", sim.port, context=ctx, timeout=5)
            for _ in range(3):
                c.request("GET", "/v1/organizations/o/members",
                          headers={"Authorization": sim.auth_header})
                r = c.getresponse()
                r.read()
            self.assertEqual((r.status, r.headers.get("Retry-After")), (429, None))
            c.close()
            self.assertEqual(sim.stop(), 0)

    def test_oauth_only(self):
        with pslib.Simulator(token_id=None, token=None, oauth="o-tok") as sim:
            ctx = pslib.ssl_context(sim.ca_file)
            for auth, want in (("Bearer o-tok", 200), (pslib.TOKEN_ID + ":" + pslib.TOKEN, 401)):
                c = http.client.HTTPSConnection("127.0.0.1", sim.port, context=ctx, timeout=5)
                c.request("GET", "/v1/organizations/acme/members", headers={"Authorization": auth})
                self.assertEqual(c.getresponse().status, want)
                c.close()

    def test_ipv6(self):
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        try:
            s = socket.socket(socket.AF_INET6)
            s.bind(("::1", 0))
            s.close()
        except OSError as e:
            self.skipTest("no ::1: %s" % e)
        with pslib.Simulator(host="::1") as sim:
            self.assertTrue(sim.url.startswith("https://[::1]:"))
            self.assertTrue(sim.state()["stats"]["tls_handshakes"] >= 1)


class TestPslib(unittest.TestCase):
    def test_write_config(self):
        with tempfile.TemporaryDirectory() as d:
            path = pslib.write_config(d, organization="acme", cleanup_flags="body",
                                      defaults={"delete_passwords": True,
                                                "delete_service_tokens": False},
                                      users=[{"login": 'we"ird', "id": "abc"}],
                                      pam_services=["a", "b"], rate_limit=2.5)
            self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
            self.assertEqual(os.stat(os.path.join(d, "queue")).st_mode & 0o777, 0o700)
            text = open(path).read()
            for want in ('organization = "acme";', 'cleanup_flags = "body";',
                         'token_id = "%s";' % pslib.TOKEN_ID, "delete_service_tokens = false;",
                         '{ login = "we\\"ird"; id = "abc"; }', 'pam_services = [ "a", "b" ];',
                         "rate_limit = 2.5;", 'dir = "%s/queue";' % d, "timeout = 5;"):
                self.assertIn(want, text)
            path = pslib.write_config(d, oauth_token="o", name="o.conf", timeout=None)
            text = open(path).read()
            self.assertIn('oauth_token = "o";', text)
            self.assertNotIn("token_id", text)
            self.assertNotIn("timeout = ", text.replace("connect_timeout", ""))
            self.assertRaises(TypeError, pslib.write_config, d, bogus=1)

    def test_run_cmd_skips_without_command(self):
        old = os.environ.get("PS_COMMAND")
        os.environ["PS_COMMAND"] = "/nonexistent/planetscale-deprovision"
        try:
            self.assertRaises(unittest.SkipTest, pslib.run_cmd, ["check"])
        finally:
            if old is None:
                del os.environ["PS_COMMAND"]
            else:
                os.environ["PS_COMMAND"] = old


if __name__ == "__main__":
    unittest.main()
