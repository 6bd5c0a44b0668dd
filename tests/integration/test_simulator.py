"""Self-test of tests/simulator.py and tests/pslib.py (no product code)."""

import email.utils
import http.client
import json
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

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
        self.sim.configure(tokens=[], no_write_status=404, no_read_status=404,
                           org_rate_limit=0, time_scale=1, org_retry_after=True)
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
        # a prefix of the email or the name, any case; never a substring
        obj = self.get("/v1/organizations/acme/members?q=example.com")
        self.assertEqual(obj["total_count"], 0)
        obj = self.get("/v1/organizations/acme/members?q=CAROL%40EXAMPLE.COM")
        self.assertEqual([m["user"]["id"] for m in obj["data"]], ["c4rol"])
        # Dave (email and name match: one member); the user id is not searched
        obj = self.get("/v1/organizations/acme/members?q=d&per_page=1")
        self.assertEqual([m["user"]["id"] for m in obj["data"]], ["d4ve"])
        obj = self.get("/v1/organizations/acme/members?q=r&per_page=1")
        self.assertEqual(obj["total_count"], 1)   # Root Admin and root@ are one member
        obj = self.get("/v1/organizations/acme/members?q=&per_page=2")
        self.assertEqual(obj["total_count"], 5)
        self.assertIn("q=&", obj["next_page_url"])
        obj = self.get("/v1/organizations/acme/members?q=root%20ad")
        self.assertEqual([m["user"]["id"] for m in obj["data"]], ["adm0acme"])
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



LIST = "/v1/organizations/%s/members"
NOT_FOUND = {"code": "not_found", "message": "Not Found"}
SECRET = "s3cret-value"


def ids_of(obj):
    return [m["user"]["id"] for m in obj["data"]]


class TestScopes(SimTestCase):
    """Scoped credentials answer the way PlanetScale does: 404 hides what a
    credential cannot see or change; 401 for a credential that is not one."""

    def setUp(self):
        super().setUp()
        self.sim.set_tokens([
            pslib.credential("solo-only", SECRET, orgs=["solo"]),
            pslib.credential("reader", SECRET, orgs=["acme"], write=False),
            pslib.credential("writer", SECRET, orgs=["acme", "solo"], read=False),
            pslib.credential("both", SECRET, orgs="*"),
            pslib.credential(oauth="oauth-reader", id="oauth-r", orgs=["acme"], write=False),
            pslib.credential(id_prefix="host-", secret="fleet", orgs=["acme"]),
        ])

    def as_(self, cid, secret=SECRET):
        return pslib.auth_header(cid, secret)

    def assertNotFound(self, resp):
        self.assertEqual((resp[0], json.loads(resp[2])), (404, NOT_FOUND), resp)

    def test_no_access_to_org_is_404_everywhere(self):
        auth = self.as_("solo-only")
        for method, path, body in (("GET", LIST % "acme", None),
                                   ("GET", LIST % "acme" + "?q=alice", None),
                                   ("GET", ALICE, None),
                                   ("GET", "/v1/organizations/acme/members/zz", None),
                                   ("DELETE", ALICE + FLAGS_QS, None),
                                   ("DELETE", ALICE + "?bogus=1", None),
                                   ("PATCH", ALICE, {"role": "admin"}),
                                   ("POST", LIST % "acme", {}),
                                   ("GET", "/v1/organizations/acme", None)):
            with self.subTest(method=method, path=path):
                self.assertNotFound(self.call(method, path, body, auth=auth))
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"))
        self.assertEqual(self.call("GET", LIST % "solo", auth=auth)[0], 200)
        # an organization that does not exist looks the same to everyone
        self.assertNotFound(self.call("GET", LIST % "nope", auth=self.as_("both")))

    def test_read_only_delete_is_an_ambiguous_404(self):
        for auth in (self.as_("reader"), "Bearer oauth-reader"):
            with self.subTest(auth=auth):
                self.assertNotFound(self.call("DELETE", ALICE + FLAGS_QS, auth=auth))
                self.assertNotFound(self.call("PATCH", ALICE, {"role": "admin"}, auth=auth))
                # ... yet the member is there, and GET and the list say so
                st, _, body = self.call("GET", ALICE, auth=auth)
                self.assertEqual((st, json.loads(body)["user"]["id"]), (200, "d4xkq1abc"))
                st, _, body = self.call("GET", LIST % "acme" + "?q=alice", auth=auth)
                self.assertEqual((st, ids_of(json.loads(body))), (200, ["d4xkq1abc"]))
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"))
        self.assertEqual(self.sim.state()["removed"], [])
        # a deployment that says 403 instead
        self.sim.configure(no_write_status=403)
        resp = self.call("DELETE", ALICE + FLAGS_QS, auth=self.as_("reader"))
        self.assertApiError(resp, 403, "forbidden", "Forbidden")
        self.assertNotEqual(json.loads(resp[2])["message"], pslib.LAST_ADMIN_MESSAGE)
        self.assertEqual(self.call("GET", ALICE, auth=self.as_("reader"))[0], 200)
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"))

    def test_write_only_cannot_read(self):
        auth = self.as_("writer")
        self.assertNotFound(self.call("GET", ALICE, auth=auth))
        self.assertNotFound(self.call("GET", LIST % "acme", auth=auth))
        self.sim.configure(no_read_status=403)
        self.assertApiError(self.call("GET", ALICE, auth=auth), 403, "forbidden")
        self.assertEqual(self.call("PATCH", "/v1/organizations/acme/members/x9z8",
                                   {"role": "admin"}, auth=auth)[0], 200)
        self.assertEqual(self.call("DELETE", ALICE + FLAGS_QS, auth=auth)[0], 204)
        self.assertNotFound(self.call("DELETE", ALICE + FLAGS_QS, auth=auth))
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))
        # the last-admin refusal holds for a scoped credential too
        self.assertApiError(self.call("DELETE", "/v1/organizations/solo/members/only1",
                                      auth=auth), 403, "forbidden", pslib.LAST_ADMIN_MESSAGE)

    def test_invalid_credentials_401(self):
        for auth in (self.as_("reader", "wrong"), self.as_("nobody"), "reader",
                     "Bearer " + SECRET, "Bearer oauth-reade", self.as_("host-", "fleet")[:-1],
                     "hosts-1:fleet", "host-1:" + SECRET, self.as_("reader") + " ", False):
            with self.subTest(auth=auth):
                self.assertApiError(self.call("GET", ALICE, auth=auth), 401, "unauthorized")
        # the legacy all-access token is still accepted beside the list
        self.assertEqual(self.call("DELETE", ALICE)[0], 204)

    def test_id_prefix_family_and_stats_per_credential(self):
        self.assertEqual(self.call("GET", ALICE, auth="host-0001:fleet")[0], 200)
        self.assertEqual(self.call("DELETE", ALICE, auth="host-0002:fleet")[0], 204)
        self.assertEqual(self.call("DELETE", ALICE, auth="host-0003:fleet")[0], 404)
        self.assertEqual(self.call("GET", ALICE, auth="host-0001:wrong")[0], 401)
        self.assertNotFound(self.call("GET", LIST % "solo", auth="host-0004:fleet"))
        creds = self.sim.api_stats()["credentials"]
        self.assertEqual(creds["host-0001"]["methods"], {"GET": 1})
        self.assertEqual(creds["host-0002"]["statuses"], {"204": 1})
        self.assertEqual(creds["host-0003"]["statuses"], {"404": 1})
        self.assertEqual(creds["host-0004"]["requests"], 1)
        self.assertEqual(creds["(invalid)"]["statuses"], {"401": 1})
        self.assertEqual([r["credential"] for r in self.sim.requests()],
                         ["host-0001", "host-0002", "host-0003", None, "host-0004"])

    def test_restrict_the_legacy_token(self):
        # a credential with the legacy token's header replaces it
        self.sim.set_tokens([pslib.credential(pslib.TOKEN_ID, pslib.TOKEN, orgs=["acme"],
                                              write=False)])
        self.assertNotFound(self.call("DELETE", ALICE))
        self.assertEqual(self.call("GET", ALICE)[0], 200)
        self.assertNotFound(self.call("GET", LIST % "solo"))
        self.assertEqual(self.sim.tokens(), [{"kind": "service", "id": pslib.TOKEN_ID,
                                              "orgs": ["acme"], "read": True,
                                              "write": False}])
        self.sim.set_tokens([])
        self.assertEqual(self.call("DELETE", ALICE)[0], 204)
        self.assertEqual(self.sim.tokens()[0]["legacy"], True)

    def test_tokens_listing_has_no_secret(self):
        self.sim.add_tokens([pslib.credential("late", SECRET, orgs=["acme"])])
        listed = self.sim.tokens()
        self.assertEqual(len(listed), 8)   # legacy + six + late
        text = json.dumps([listed, self.sim.state()["config"]])
        for secret in (SECRET, "fleet", "oauth-reader", pslib.TOKEN):
            self.assertNotIn(secret, text)
        self.assertEqual(self.call("GET", ALICE, auth=self.as_("late"))[0], 200)

    def test_open_when_nothing_configured(self):
        self.sim.set_tokens([])
        self.sim.configure(token=None)
        try:
            self.assertEqual(self.call("GET", ALICE, auth=False)[0], 200)
            self.assertEqual(self.sim.api_stats()["credentials"], {"(open)": {
                "requests": 1, "methods": {"GET": 1}, "statuses": {"200": 1}}})
        finally:
            self.sim.configure(token=self.sim.auth_header)

    def test_bad_configuration_changes_nothing(self):
        before = self.sim.state()["config"]
        for bad in ({"tokens": [{"id": "a"}]}, {"tokens": [{"secret": "s"}]},
                    {"tokens": [{"id": "a", "id_prefix": "b", "secret": "s"}]},
                    {"tokens": [{"id": "a:b", "secret": "s"}]},
                    {"tokens": [{"id": "a", "secret": "s", "orgs": "acme"}]},
                    {"tokens": [{"id": "a", "secret": "s", "read": "yes"}]},
                    {"tokens": [{"id": "a", "secret": "s", "scope": "x"}]},
                    {"tokens": [{"oauth": "o", "secret": "s"}]}, {"tokens": {}},
                    {"no_write_status": 500, "delay": 1}, {"no_read_status": True},
                    {"org_rate_limit": -1}, {"org_rate_limit": 1.5}, {"time_scale": 0},
                    {"org_retry_after": 1}, {"token": 5}, {"bogus": 1}):
            with self.subTest(bad=bad):
                with self.assertRaises(RuntimeError):
                    self.sim.configure(**bad)
        self.assertEqual(self.sim.state()["config"], before)


class TestMemberList(SimTestCase):
    def get(self, path, status=200):
        st, _, body = self.call("GET", path)
        self.assertEqual(st, status, body)
        return json.loads(body)

    def test_shape_as_the_openapi_document(self):
        self.sim.update_member("acme", "x9z8", directory_managed=True, sso=True)
        obj = self.get(LIST % "acme")
        self.assertEqual(set(obj), LIST_KEYS)
        self.assertEqual((obj["type"], obj["current_page"], obj["per_page"], obj["next_page"],
                          obj["next_page_url"], obj["prev_page"], obj["prev_page_url"],
                          obj["total_count"], obj["total_pages"]),
                         ("list", 1, 25, None, None, None, None, 5, 1))
        full_user = USER_KEYS | {"default_organization", "sso", "managed",
                                 "directory_managed", "email_verified"}
        for item in obj["data"]:
            self.assertEqual(set(item), MEMBERSHIP_KEYS)
            self.assertEqual(set(item["user"]), full_user)
            self.assertIn(item["role"], ("admin", "member"))
            self.assertTrue(item["id"].startswith("mbr_"))
            # GET .../members/{user id} answers the same object
            self.assertEqual(self.get(LIST % "acme" + "/" + item["user"]["id"]), item)
        bob = next(i for i in obj["data"] if i["user"]["id"] == "x9z8")
        self.assertEqual((bob["user"]["directory_managed"], bob["user"]["sso"],
                          bob["user"]["managed"]), (True, True, False))
        self.assertEqual(self.call("GET", LIST % "acme" + "/mbr_x9z8")[0], 404)

    def test_pages_at_per_page_100(self):
        self.sim.generate_members("big", 250)
        seen, pages = [], []
        path = LIST % "big" + "?per_page=100"
        while path:
            obj = self.get(path)
            pages.append((obj["current_page"], obj["prev_page"], obj["next_page"],
                          len(obj["data"])))
            self.assertEqual((obj["per_page"], obj["total_count"], obj["total_pages"]),
                             (100, 250, 3))
            seen += ids_of(obj)
            url = obj["next_page_url"]
            self.assertEqual(url is None, obj["next_page"] is None)
            if url:
                self.assertTrue(url.startswith(self.sim.url), url)
                self.assertIn("per_page=100", url)
            path = url[len(self.sim.base):] if url else None
        self.assertEqual(pages, [(1, None, 2, 100), (2, 1, 3, 100), (3, 2, None, 50)])
        self.assertEqual(seen, ["gen%05d" % i for i in range(1, 251)])
        # past the end: empty, no next page
        obj = self.get(LIST % "big" + "?per_page=100&page=4")
        self.assertEqual((obj["data"], obj["next_page"], obj["next_page_url"],
                          obj["prev_page"], obj["current_page"]), ([], None, None, 3, 4))
        obj = self.get(LIST % "big" + "?per_page=100&page=99")
        self.assertEqual((obj["data"], obj["next_page"]), ([], None))
        # the default is 25 a page
        obj = self.get(LIST % "big")
        self.assertEqual((obj["per_page"], len(obj["data"]), obj["next_page"],
                          obj["total_pages"]), (25, 25, 2, 10))

    def test_per_page_limit(self):
        for qs in ("per_page=101", "per_page=1000", "per_page=0", "per_page=-1",
                   "page=0", "page=x", "per_page=1.5"):
            with self.subTest(qs=qs):
                self.assertApiError(self.call("GET", LIST % "acme" + "?" + qs), 422,
                                    "unprocessable_entity")
        self.assertEqual(self.get(LIST % "acme" + "?per_page=100")["per_page"], 100)
        self.assertEqual(self.get(LIST % "acme" + "?per_page=1")["total_pages"], 5)

    def test_q_is_a_case_insensitive_prefix(self):
        self.sim.add_members("acme", [
            {"id": "b1", "email": "bob@acme.com", "name": "Bob One"},
            {"id": "b2", "email": "bob@acme.com.au", "name": "Bob Two"},
            {"id": "b3", "email": "Bob@Acme.Community", "name": "Bob Three"},
            {"id": "b4", "email": "alice.bob@acme.com", "name": "Alice Bob"},
            {"id": "b5", "email": "builder@example.net", "name": "Bob the Builder"},
            {"id": "b6", "email": "xbob@acme.com", "name": "X"},
        ])
        for q, want in (("bob@acme.com", ["b1", "b2", "b3"]),
                        ("BOB@ACME.COM", ["b1", "b2", "b3"]),
                        ("bob@acme.com.", ["b2"]),
                        ("bob", ["x9z8", "b1", "b2", "b3", "b5"]),
                        ("alice", ["d4xkq1abc", "b4"]),
                        ("acme.com", []), ("ob@", []), ("", None)):
            with self.subTest(q=q):
                obj = self.get(LIST % "acme" + "?" + urllib.parse.urlencode({"q": q}))
                got = ids_of(obj)
                if want is None:
                    self.assertEqual(len(got), 11)
                else:
                    self.assertEqual(got, want)
                    self.assertEqual(obj["total_count"], len(want))
        # a filtered list pages like any other, and next_page_url keeps q
        seen, path = [], LIST % "acme" + "?q=BoB%40acme.com&per_page=1"
        while path:
            obj = self.get(path)
            seen += ids_of(obj)
            url = obj["next_page_url"]
            if url:
                self.assertIn("q=BoB%40acme.com", url)
            path = url[len(self.sim.base):] if url else None
        self.assertEqual(seen, ["b1", "b2", "b3"])
        # the filter follows the members as they change
        self.assertEqual(self.call("DELETE", "/v1/organizations/acme/members/b2")[0], 204)
        self.sim.update_member("acme", "b4", email="bob@acme.com.br")
        self.assertEqual(ids_of(self.get(LIST % "acme" + "?q=bob%40acme.com")),
                         ["b1", "b3", "b4"])

    def test_directory_managed(self):
        self.sim.set_members({"dir": [
            {"id": "adm", "role": "admin"},
            {"id": "dm1", "email": "dm1@example.com", "directory_managed": True},
            {"id": "plain", "email": "plain@example.com"}]})
        flags = {m["user"]["id"]: m["user"]["directory_managed"]
                 for m in self.get(LIST % "dir")["data"]}
        self.assertEqual(flags, {"adm": False, "dm1": True, "plain": False})
        self.sim.update_member("dir", "plain", directory_managed=True)
        self.assertTrue(self.get(LIST % "dir" + "/plain")["user"]["directory_managed"])
        self.sim.reset()   # an update is part of the baseline
        self.assertTrue(self.get(LIST % "dir" + "/plain")["user"]["directory_managed"])
        self.sim.generate_members("dir", 30, directory_managed_every=10)
        dm = [m["user"]["id"] for m in self.sim.list_all_members("dir")
              if m["user"]["directory_managed"]]
        self.assertEqual(dm, ["dm1", "plain", "gen00010", "gen00020", "gen00030"])
        for bad in ({"directory_managed": "yes"}, {"bogus": 1}):
            with self.assertRaises(RuntimeError):
                self.sim.update_member("dir", "plain", **bad)
        with self.assertRaises(RuntimeError):
            self.sim.update_member("dir", "nobody", sso=True)

    def test_member_admin_helpers(self):
        out = self.sim.generate_members("acme", 3, start=7, id_prefix="g", email_prefix="e",
                                        domain="d.test")
        self.assertEqual(out, {"org": "acme", "added": 3, "total": 8,
                               "first_id": "g00007", "last_id": "g00009"})
        self.assertEqual(self.sim.get_members("acme")[-1]["email"], "e00009@d.test")
        with self.assertRaises(RuntimeError):   # ids stay unique
            self.sim.generate_members("acme", 1, start=7, id_prefix="g")
        with self.assertRaises(RuntimeError):
            self.sim.add_members("acme", [{"id": "x9z8"}])
        with self.assertRaises(RuntimeError):
            self.sim.set_members({"o": [{"id": "a"}, {"id": "a"}]})
        out = self.sim.remove_members("acme", ["g00008", "nope"])
        self.assertEqual(out["removed"], ["g00008"])
        self.assertEqual(self.call("GET", LIST % "acme" + "/g00008")[0], 404)
        self.assertEqual(self.sim.state()["removed"], [])   # no API DELETE happened
        self.sim.reset()
        self.assertIn("g00008", self.sim.members_of("acme"))
        self.assertEqual(self.sim.get_members("nope"), [])
        self.assertIsNone(self.sim.state(members=False)["members"])
        st, obj = self.sim.list_members("acme", q="e0000", per_page=2)
        self.assertEqual((st, obj["total_count"], len(obj["data"])), (200, 3, 2))


class TestOrgRateLimit(SimTestCase):
    def test_limit_per_org_shared_by_credentials(self):
        self.sim.set_tokens([pslib.credential(id_prefix="h", secret=SECRET)])
        # a "minute" of 1 s: 5 requests per organization in any sliding second
        cfg = self.sim.set_org_limit(5, time_scale=60)
        self.assertEqual((cfg["org_rate_limit"], cfg["time_scale"]), (5, 60.0))
        c = self.connect()
        got = [self.call("GET", LIST % "acme", auth="h%d:%s" % (i % 3, SECRET), conn=c)
               for i in range(7)]
        self.assertEqual([g[0] for g in got], [200] * 5 + [429] * 2)
        self.assertEqual(json.loads(got[5][2]), {"code": "rate_limited",
                                                 "message": "Rate limit exceeded"})
        self.assertEqual(got[5][1]["Retry-After"], "1")
        # another organization has its own budget
        self.assertEqual(self.call("GET", LIST % "solo", conn=c)[0], 200)
        self.sim.configure(org_retry_after=False)
        st, hdrs, _ = self.call("DELETE", ALICE, conn=c)
        self.assertEqual((st, hdrs.get("Retry-After")), (429, None))
        time.sleep(1.1)
        self.assertEqual(self.call("DELETE", ALICE, conn=c)[0], 204)
        c.close()
        s = self.sim.api_stats()
        acme = s["orgs"]["acme"]
        self.assertEqual({k: acme[k] for k in ("requests", "admitted", "rate_limited",
                                               "peak_per_minute",
                                               "peak_admitted_per_minute")},
                         {"requests": 9, "admitted": 6, "rate_limited": 3,
                          "peak_per_minute": 8, "peak_admitted_per_minute": 5})
        self.assertEqual(acme["methods"], {"GET": 7, "DELETE": 2})
        self.assertEqual(acme["statuses"], {"200": 5, "429": 3, "204": 1})
        self.assertEqual(s["orgs"]["solo"]["requests"], 1)
        self.assertEqual((s["rate_limited_org"], s["statuses"]["429"], s["window_seconds"]),
                         (3, 3, 1.0))
        self.assertEqual(sorted(s["credentials"]), ["h0", "h1", "h2", pslib.TOKEN_ID])
        self.assertEqual(s["deletes_204"], {"acme/d4xkq1abc": 1})
        self.assertEqual(s["delete_statuses"], {"acme/d4xkq1abc": {"429": 1, "204": 1}})
        self.assertEqual([r["limited_by"] for r in self.sim.requests()].count("org"), 3)

    def test_scaled_minute(self):
        # 20 a minute at 10x: a minute lasts 6 s, the limit stays 20 per scaled minute
        self.sim.set_org_limit(20, time_scale=10)
        c = self.connect()
        t0 = time.monotonic()
        got = [self.call("GET", LIST % "acme", conn=c) for _ in range(26)]
        elapsed = time.monotonic() - t0
        c.close()
        if elapsed >= 5:
            self.skipTest("too slow to fit 26 requests in a scaled minute (%.1f s)" % elapsed)
        statuses = [g[0] for g in got]
        self.assertEqual(statuses, [200] * 20 + [429] * 6)
        retry = int(got[-1][1]["Retry-After"])
        self.assertTrue(1 <= retry <= 6, retry)
        s = self.sim.api_stats()
        self.assertEqual((s["window_seconds"], s["time_scale"], s["org_rate_limit"]),
                         (6.0, 10.0, 20))
        self.assertEqual((s["orgs"]["acme"]["peak_per_minute"],
                          s["orgs"]["acme"]["peak_admitted_per_minute"]), (26, 20))

    def test_peak_is_a_sliding_window(self):
        self.sim.set_org_limit(0, time_scale=60)   # no limit, but a 1 s window to measure
        c = self.connect()
        for _ in range(3):
            self.call("GET", LIST % "acme", conn=c)
        time.sleep(1.1)
        for _ in range(2):
            self.call("GET", LIST % "acme", conn=c)
        c.close()
        acme = self.sim.api_stats()["orgs"]["acme"]
        self.assertEqual((acme["requests"], acme["peak_per_minute"], acme["rate_limited"]),
                         (5, 3, 0))

    def test_not_counted_for_the_org(self):
        """401s, orgs a credential cannot see, and the global limiter's 429s do
        not reach an organization's budget."""
        self.sim.set_tokens([pslib.credential("solo", SECRET, orgs=["solo"])])
        self.sim.set_org_limit(2, time_scale=60)
        self.sim.configure(rate_limit=100)
        try:
            self.assertEqual(self.call("GET", ALICE, auth="x:y")[0], 401)
            self.assertEqual(self.call("GET", ALICE, auth="solo:" + SECRET)[0], 404)
            self.assertEqual([self.call("GET", ALICE)[0] for _ in range(3)], [200, 200, 429])
        finally:
            self.sim.configure(rate_limit=0)
        s = self.sim.api_stats()
        self.assertEqual(s["orgs"]["acme"]["requests"], 3)
        self.assertEqual((s["requests"], s["methods"], s["rate_limited_global"]),
                         (5, {"GET": 5}, 0))
        self.sim.reset_stats()
        s = self.sim.api_stats()
        self.assertEqual((s["requests"], s["orgs"], s["credentials"]), (0, {}, {}))


class TestScale(SimTestCase):
    def test_10000_members_list_fast(self):
        t0 = time.monotonic()
        out = self.sim.generate_members("big", 10000, directory_managed_every=1000)
        t_gen = time.monotonic() - t0
        self.assertEqual((out["total"], out["last_id"]), (10000, "gen10000"))
        t0 = time.monotonic()
        items = self.sim.list_all_members("big", per_page=100)
        t_list = time.monotonic() - t0
        self.assertEqual(len(items), 10000)
        self.assertEqual(len({m["user"]["id"] for m in items}), 10000)
        self.assertEqual(len({m["user"]["email"] for m in items}), 10000)
        self.assertEqual(sum(m["user"]["directory_managed"] for m in items), 10)
        # the last page costs what the first does (no rescan per page)
        c = self.sim.connect()
        def page_time(page):
            best = None
            for _ in range(3):
                t = time.monotonic()
                st, obj = self.sim.list_members("big", page=page, per_page=100, conn=c)
                t = time.monotonic() - t
                best = t if best is None else min(best, t)
            return best
        first, last = page_time(1), page_time(100)
        st, obj = self.sim.list_members("big", q="USER09999@", conn=c)
        c.close()
        self.assertEqual(ids_of(obj), ["gen09999"])
        self.assertLess(t_list, 30, "100 pages took %.1f s" % t_list)
        self.assertLess(last, max(5 * first, 0.05),
                        "page 100 %.4f s vs page 1 %.4f s" % (last, first))
        sys.stderr.write("\n  10,000 members: generated in %.2f s, listed (100 pages) in "
                         "%.2f s; page 1 %.1f ms, page 100 %.1f ms\n"
                         % (t_gen, t_list, first * 1000, last * 1000))

    def test_hundreds_of_concurrent_tls_connections(self):
        n = 200
        self.sim.generate_members("fleet", n)
        self.sim.set_tokens([pslib.credential(id_prefix="host", secret=SECRET)])
        barrier = threading.Barrier(n + 1, timeout=120)
        results = [None] * n

        def host(i):
            try:
                c = self.sim.connect(timeout=60)
                c.connect()
                barrier.wait()   # every connection is open before anyone asks
                auth = "host%04d:%s" % (i, SECRET)
                uid = "gen%05d" % (i + 1)
                got = [self.sim.call("GET", LIST % "fleet" + "/" + uid, auth=auth, conn=c)[0],
                       self.sim.call("DELETE", LIST % "fleet" + "/" + uid, auth=auth,
                                     conn=c)[0]]
                c.close()
                results[i] = got
            except Exception as e:   # reported below
                results[i] = repr(e)
                barrier.abort()
        threads = [threading.Thread(target=host, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.monotonic()
        for t in threads:
            t.join(120)
        elapsed = time.monotonic() - t0
        self.assertEqual(results, [[200, 204]] * n)
        s = self.sim.api_stats()
        self.assertGreaterEqual(s["connections"]["max_open"], n)
        self.assertEqual(len(s["credentials"]), n)
        self.assertEqual(len(s["deletes_204"]), n)
        self.assertEqual(self.sim.members_of("fleet"), [])
        rate = 2 * n / elapsed
        sys.stderr.write("\n  %d connections open at once; %d requests in %.2f s "
                         "(%.0f requests/s)\n" % (n, 2 * n, elapsed, rate))
        self.assertGreater(rate, 50)

class TestCommandLine(unittest.TestCase):
    def test_cli_flags_and_sigterm(self):
        sim = pslib.Simulator(members={"o": [{"id": "u1"}, {"id": "a1", "role": "admin"}]},
                              rate_limit=2, retry_after=False, delay=0.2,
                              faults=["status:503;match=/members/u1", "429:9;method=GET"])
        with sim:
            config = sim.state()["config"]
            self.assertEqual({k: config[k] for k in ("rate_limit", "delay", "retry_after",
                                                     "token_auth", "oauth_auth")},
                             {"rate_limit": 2.0, "delay": 0.2, "retry_after": False,
                              "token_auth": True, "oauth_auth": False})
            self.assertEqual((config["org_rate_limit"], config["no_write_status"]), (0, 404))
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
