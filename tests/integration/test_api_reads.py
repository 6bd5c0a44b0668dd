"""The API client's reads (one member, the member list, the list probe)
against the HTTPS simulator, through tests/api_driver: TLS, paging to the
end with per_page at the API's limit, the q= filter escaped, the outcome
classes, retries, pacing over one connection."""

import json
import os
import subprocess
import time
import unittest
from urllib.parse import parse_qs, urlsplit

from common import SimTestCase, pslib, shim_env

BIG = 250  # members of "big": three pages of 100


def big_members():
    out = [{"id": "adm0big", "email": "root@big.example", "name": "Root", "role": "admin"}]
    for i in range(1, BIG):
        out.append({"id": "u%04d" % i, "email": "user%04d@big.example" % i,
                    "name": "User %d" % i, "role": "member"})
    return out


def driver_path():
    path = os.environ.get("PS_API_DRIVER")
    if not path:
        top = os.environ.get("top_builddir") or pslib.TOP_SRCDIR
        path = os.path.join(top, "tests", "api_driver")
    return path


class ApiReadsTest(SimTestCase):

    def setUp(self):
        super().setUp()
        members = dict(pslib.DEFAULT_MEMBERS)
        members["big"] = big_members()
        members["acme"] = pslib.DEFAULT_MEMBERS["acme"] + [
            {"id": "pl1s", "email": "a+b@example.com", "name": "Plus", "role": "member"}]
        self.sim.set_members(members)
        self.sim.reset()

    def drive(self, *args, config=None, **cfg):
        path = driver_path()
        if not os.access(path, os.X_OK):
            raise unittest.SkipTest("tests/api_driver not built (set PS_API_DRIVER)")
        config = config or self.config(**cfg)
        env = dict(os.environ)
        env.update(shim_env(self.syslog))
        argv = os.environ.get("TEST_WRAPPER", "").split() + [path, config] + list(args)
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
        self.outputs.append(p.stdout + p.stderr)
        if p.returncode == 99 and os.environ.get("TEST_WRAPPER"):
            self.fail("the test wrapper (valgrind) reported errors:\n" + p.stderr)
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def list_requests(self, org):
        return [r for r in self.sim.requests(method="GET")
                if urlsplit(r["target"]).path == "/v1/organizations/%s/members" % org]

    # ---- the list

    def test_every_page_at_the_limit(self):
        t0 = time.monotonic()
        out = self.drive("list", "big", "", "100", rate_limit=2.5)
        elapsed = time.monotonic() - t0
        self.assertEqual(out["outcome"], "ok", out)
        self.assertEqual(out["pages"], 3)
        self.assertEqual(out["attempts"], 3)
        self.assertEqual(out["connections"], 1)
        ids = [m["user_id"] for m in out["members"]]
        self.assertEqual(ids, [m["id"] for m in big_members()])
        self.assertEqual(out["members"][0]["role"], "admin")
        self.assertEqual(out["members"][5]["email"], "user0005@big.example")
        self.assertEqual(out["members"][5]["name"], "User 5")
        self.assertEqual(out["members"][5]["directory_managed"], 0)
        reqs = self.list_requests("big")
        self.assertEqual([parse_qs(urlsplit(r["target"]).query) for r in reqs],
                         [{"page": [str(p)], "per_page": ["100"]} for p in (1, 2, 3)])
        for r in reqs:
            self.assertEqual(r["status"], 200)
        # paced like every request: at most floor(2.5 * 0.98) = 2 in any
        # second, so the third page waits until a second after the first
        self.assertGreaterEqual(elapsed, 0.98)
        # at the simulator a little less: when each request is seen there
        # varies with the machine's load (valgrind)
        starts = [r["t_start"] for r in reqs]
        self.assertGreaterEqual(starts[2] - starts[0], 0.9, starts)

    def test_per_page_is_capped_at_100(self):
        out = self.drive("list", "big", "", "500")
        self.assertEqual(out["outcome"], "ok", out)
        self.assertEqual(len(out["members"]), BIG)
        for r in self.list_requests("big"):
            self.assertEqual(parse_qs(urlsplit(r["target"]).query)["per_page"], ["100"])

    def test_small_pages(self):
        out = self.drive("list", "acme", "", "2", rate_limit=1000)
        self.assertEqual(out["outcome"], "ok", out)
        self.assertEqual(out["pages"], 3)
        self.assertEqual(len(out["members"]), 5)

    def test_q_is_escaped(self):
        out = self.drive("list", "acme", "a+b@example.com")
        self.assertEqual(out["outcome"], "ok", out)
        self.assertEqual([m["user_id"] for m in out["members"]], ["pl1s"])
        target = self.list_requests("acme")[0]["target"]
        self.assertIn("q=a%2Bb%40example.com", target)

    def test_page_call(self):
        out = self.drive("page", "big", "3", "", "100")
        self.assertEqual(out["outcome"], "ok", out)
        self.assertEqual(len(out["members"]), BIG - 200)
        self.assertEqual(out["next_page"], 0)
        self.assertEqual(out["total_count"], BIG)
        out = self.drive("page", "big", "1", "", "100")
        self.assertEqual(out["next_page"], 2)

    def test_page_bound(self):
        out = self.drive("list", "big", "", "100", "2")
        self.assertEqual(out["outcome"], "transient", out)
        self.assertIn("more than 2 pages", out["message"])
        self.assertEqual(len(self.list_requests("big")), 2)

    def test_unknown_org_is_absent(self):
        out = self.drive("list", "nosuchorg")
        self.assertEqual(out["outcome"], "absent", out)
        self.assertEqual(out["http_status"], 404)
        self.assertIn("read_organization", out["message"])
        self.assertEqual(out["members"], [])

    def test_bad_token_refused(self):
        out = self.drive("list", "acme", token="not-the-token")
        self.assertEqual(out["outcome"], "refused", out)
        self.assertEqual(out["http_status"], 401)
        self.assertIn("the credential is not valid", out["message"])

    def test_transient_page_retried_or_not(self):
        self.sim.set_faults(["status:503;match=page=2"])
        out = self.drive("list", "big", "", "100", "0", "retry", rate_limit=1000)
        self.assertEqual(out["outcome"], "ok", out)
        self.assertEqual(out["attempts"], 4)
        self.assertEqual(len(out["members"]), BIG)
        self.sim.reset()
        self.sim.set_faults(["429:1;match=page=2"])
        out = self.drive("list", "big", "", "100", rate_limit=1000)
        self.assertEqual(out["outcome"], "transient", out)
        self.assertEqual(out["http_status"], 429)
        self.assertEqual(out["retry_after"], 1.0)
        self.assertEqual(len(self.list_requests("big")), 2)

    def test_malformed_page_is_not_a_list(self):
        self.sim.set_faults(["status:200:notjson;match=page=2"])
        out = self.drive("list", "big", "", "100", rate_limit=1000)
        self.assertEqual(out["outcome"], "transient", out)
        self.assertIn("not well-formed", out["message"])

    # ---- one member

    def test_get_member(self):
        out = self.drive("get", "acme", "d4xkq1abc")
        self.assertEqual(out["outcome"], "ok", out)
        self.assertEqual(out["http_status"], 200)
        m = out["members"][0]
        self.assertEqual((m["user_id"], m["email"], m["role"], m["id"]),
                         ("d4xkq1abc", "alice@example.com", "member", "mbr_d4xkq1abc"))
        self.assertEqual(self.sim.requests()[-1]["target"],
                         "/v1/organizations/acme/members/d4xkq1abc")

    def test_get_member_absent_and_refused(self):
        out = self.drive("get", "acme", "nosuchuser")
        self.assertEqual((out["outcome"], out["http_status"]), ("absent", 404))
        out = self.drive("get", "acme", "d4xkq1abc", token="wrong")
        self.assertEqual((out["outcome"], out["http_status"]), ("refused", 401))

    def test_get_member_garbage_200(self):
        self.sim.set_faults(["status:200:notjson;count=-1"])
        out = self.drive("get", "acme", "d4xkq1abc", "once")
        self.assertEqual(out["outcome"], "transient", out)
        self.assertEqual(out["attempts"], 1)
        self.assertIn("not a well-formed membership", out["message"])
        out = self.drive("get", "acme", "d4xkq1abc", retries=3)
        self.assertEqual(out["outcome"], "transient", out)
        self.assertEqual(out["attempts"], 3)

    def test_get_member_redirect_is_config(self):
        self.sim.set_faults(["redirect"])
        out = self.drive("get", "acme", "d4xkq1abc")
        self.assertEqual(out["outcome"], "config", out)
        self.assertEqual(out["attempts"], 1)

    def test_get_member_wrong_ca_is_config(self):
        out = self.drive("get", "acme", "d4xkq1abc", ca_file=self.sim.other_ca_file)
        self.assertEqual(out["outcome"], "config", out)
        self.assertIn("certificate", out["message"])

    # ---- the probe

    def test_probe(self):
        out = self.drive("probe", "acme")
        self.assertEqual(out["outcome"], "ok", out)
        target = self.sim.requests()[-1]["target"]
        self.assertEqual(parse_qs(urlsplit(target).query), {"page": ["1"], "per_page": ["1"]})
        out = self.drive("probe", "nosuchorg", "once")
        self.assertEqual(out["outcome"], "absent", out)
        self.assertIn("cannot see it or lacks read_organization", out["message"])
        out = self.drive("probe", "acme", token="wrong")
        self.assertEqual(out["outcome"], "refused", out)


if __name__ == "__main__":
    unittest.main()
