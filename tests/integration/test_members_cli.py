"""`check --online`, `members` and user entries given by email, through the
command against the HTTPS simulator."""

import json
import os
import unittest
from urllib.parse import parse_qs, urlsplit

from common import SimTestCase, pslib

USERS = [{"login": "alice", "id": "d4xkq1abc"},
         {"login": "bob", "id": "x9z8", "organization": "acme-eu"}]


def list_requests(sim, org=None):
    out = []
    for r in sim.requests(method="GET"):
        path = urlsplit(r["target"]).path
        if path.endswith("/members") and (org is None or path.split("/")[3] == org):
            out.append(r)
    return out


class CheckOnlineTest(SimTestCase):

    def test_good_token(self):
        cfg = self.config(users=USERS)
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("online: acme: OK: the token can read the member list of acme", out)
        self.assertIn("online: acme-eu: OK:", out)
        self.assertIn("write_organization", out)
        reqs = list_requests(self.sim)
        self.assertEqual(len(reqs), 2)
        for r in reqs:
            self.assertEqual(parse_qs(urlsplit(r["target"]).query),
                             {"page": ["1"], "per_page": ["1"]})
        rc, out, err = self.run_cmd(["--json", "check", "--online"], cfg)
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        self.assertTrue(j["ok"])
        self.assertEqual([(e["organization"], e["ok"], e["outcome"]) for e in j["online"]],
                         [("acme", True, "ok"), ("acme-eu", True, "ok")])

    def test_offline_without_the_flag(self):
        cfg = self.config(users=USERS)
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("online", out)
        self.assertEqual(self.sim.requests(), [])
        rc, out, err = self.run_cmd(["--json", "check"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("online", json.loads(out))
        self.assertEqual(self.sim.requests(), [])

    def test_invalid_token(self):
        cfg = self.config(users=USERS, token="pscale_tkn_WRONG_value_42")
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("online: acme: FAILED: the token is invalid", out)
        self.assertIn("HTTP 401", out)
        self.assertIn("the token is invalid", err)
        self.assertNotIn("pscale_tkn_WRONG_value_42", out + err)
        # one 401 is enough: the other organization is not asked
        self.assertEqual(len(self.sim.requests()), 1)
        rc, out, err = self.run_cmd(["--json", "check", "--online"], cfg)
        self.assertEqual(rc, 77)
        j = json.loads(out)
        self.assertFalse(j["ok"])
        self.assertEqual([e["http_status"] for e in j["online"]], [401, 401])
        self.assertNotIn("pscale_tkn_WRONG_value_42", out + err)

    def test_invalid_oauth_token(self):
        cfg = self.config(users=USERS, oauth_token="pscale_oauth_NOT_accepted")
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("the token is invalid", out)
        self.assertNotIn("pscale_oauth_NOT_accepted", out + err)

    def test_organization_not_visible(self):
        users = USERS + [{"login": "zed", "id": "z1", "organization": "globex"}]
        cfg = self.config(users=users)
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("online: acme: OK", out)
        self.assertIn("online: globex: FAILED: the token cannot see organization globex "
                      "or lacks read_organization (HTTP 404)", out)
        self.assertIn("globex", err)
        rc, out, err = self.run_cmd(["--json", "check", "--online"], cfg)
        j = json.loads(out)
        self.assertFalse(j["ok"])
        bad = [e for e in j["online"] if not e["ok"]]
        self.assertEqual([(e["organization"], e["outcome"], e["http_status"]) for e in bad],
                         [("globex", "absent", 404)])
        self.assertIn("cannot see organization globex or lacks read_organization",
                      bad[0]["message"])

    def test_forbidden(self):
        self.sim.set_faults(["status:403;count=-1"])
        cfg = self.config(users=USERS)
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("lacks read_organization (HTTP 403)", out)

    def test_unreachable(self):
        cfg = self.config(users=USERS, url="https://127.0.0.1:1/v1", retries=1)
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 75, out + err)
        self.assertIn("online: acme: FAILED: the API is unreachable", out)

    def test_unavailable_then_retried(self):
        self.sim.set_faults(["status:503"])
        cfg = self.config(users=USERS, retries=2)
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.sim.set_faults(["status:503;count=-1"])
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 75, out + err)
        self.assertIn("the API is unavailable (HTTP 503)", out)

    def test_wrong_ca(self):
        cfg = self.config(users=USERS, ca_file=self.sim.other_ca_file)
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 78, out + err)
        self.assertIn("certificate", out)

    def test_online_only_with_check(self):
        cfg = self.config(users=USERS)
        rc, out, err = self.run_cmd(["queue", "--online"], cfg)
        self.assertEqual(rc, 64)
        self.assertIn("--online does not go with queue", err)



def members_with(extra_acme=(), big=0):
    """The default members, plus EXTRA_ACME in acme, plus BIG generated
    members in acme."""
    m = {org: list(lst) for org, lst in pslib.DEFAULT_MEMBERS.items()}
    m["acme"] += list(extra_acme)
    for i in range(big):
        m["acme"].append({"id": "g%04d" % i, "email": "gen%04d@example.com" % i,
                          "name": "Gen %d" % i, "role": "member"})
    return m


DIRSYNC = {"id": "dsync1", "email": "Dana@Example.com", "name": "Dana", "role": "member",
           "directory_managed": True}
PLAIN = {"id": "nodm1", "email": "erin@example.com", "name": "Erin", "role": "member"}


class MembersTest(SimTestCase):

    def test_table(self):
        self.sim.set_members(members_with([DIRSYNC, PLAIN]))
        self.sim.reset()
        users = USERS + [{"login": "alice2", "id": "d4xkq1abc"},
                         {"login": "dana", "id": "dsync1"}]
        cfg = self.config(users=users)
        rc, out, err = self.run_cmd(["members"], cfg)
        self.assertEqual(rc, 0, out + err)
        lines = out.splitlines()
        self.assertEqual(lines[0].split(), ["ORGANIZATION", "EMAIL", "USER", "ID", "ROLE",
                                            "DIRECTORY", "LOGIN"])
        rows = {tuple(l.split()[:3]): l.split() for l in lines[1:-1]}
        self.assertEqual(rows[("acme", "alice@example.com", "d4xkq1abc")][3:],
                         ["member", "no", "alice,alice2"])
        self.assertEqual(rows[("acme", "root@example.com", "adm0acme")][3:],
                         ["admin", "no", "-"])
        self.assertEqual(rows[("acme", "Dana@Example.com", "dsync1")][3:],
                         ["member", "yes", "dana"])
        self.assertEqual(rows[("acme", "erin@example.com", "nodm1")][3:], ["member", "no", "-"])
        self.assertEqual(rows[("acme-eu", "bob@example.com", "x9z8")][3:],
                         ["member", "no", "bob"])
        # bob is mapped in acme-eu only
        self.assertEqual(rows[("acme", "bob@example.com", "x9z8")][5], "-")
        self.assertEqual(lines[-1], "8 members in 2 organizations, 3 mapped to a login")

    def test_json(self):
        self.sim.set_members(members_with([DIRSYNC, PLAIN]))
        self.sim.reset()
        cfg = self.config(users=USERS + [{"login": "dana", "id": "dsync1"}])
        rc, out, err = self.run_cmd(["members", "--json"], cfg)
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        self.assertEqual(len(j), 8)
        by = {(m["organization"], m["user_id"]): m for m in j}
        dana = by[("acme", "dsync1")]
        self.assertEqual(dana, {"organization": "acme", "email": "Dana@Example.com",
                                "user_id": "dsync1", "membership_id": "mbr_dsync1",
                                "name": "Dana", "role": "member", "directory_managed": True,
                                "logins": ["dana"]})
        self.assertIs(by[("acme", "nodm1")]["directory_managed"], False)
        self.assertIs(by[("acme", "adm0acme")]["directory_managed"], False)
        self.assertEqual(by[("acme", "adm0acme")]["logins"], [])
        self.assertEqual(by[("acme-eu", "x9z8")]["logins"], ["bob"])

    def test_one_organization_every_page(self):
        self.sim.set_members(members_with(big=230))
        self.sim.reset()
        cfg = self.config(users=USERS)
        rc, out, err = self.run_cmd(["members", "--json", "--organization", "acme"], cfg)
        self.assertEqual(rc, 0, err)
        j = json.loads(out)
        self.assertEqual(len(j), 234)
        self.assertEqual({m["organization"] for m in j}, {"acme"})
        self.assertEqual(len({m["user_id"] for m in j}), 234)
        reqs = list_requests(self.sim)
        self.assertEqual([parse_qs(urlsplit(r["target"]).query) for r in reqs],
                         [{"page": [str(p)], "per_page": ["100"]} for p in (1, 2, 3)])
        self.assertEqual(len(list_requests(self.sim, "acme-eu")), 0)

    def test_organization_not_visible(self):
        users = USERS + [{"login": "zed", "id": "z1", "organization": "globex"}]
        cfg = self.config(users=users)
        rc, out, err = self.run_cmd(["members"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("globex: the token cannot see organization globex or lacks "
                      "read_organization", err)
        self.assertIn("acme-eu", out)   # the others are still listed
        self.assertNotIn("globex", out)

    def test_invalid_token(self):
        cfg = self.config(users=USERS, token="pscale_tkn_WRONG_value_42")
        rc, out, err = self.run_cmd(["members"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("the token is invalid", err)
        self.assertEqual(out, "")
        self.assertNotIn("pscale_tkn_WRONG_value_42", out + err)

    def test_part_of_a_list_is_not_shown(self):
        self.sim.set_members(members_with(big=230))
        self.sim.reset()
        self.sim.set_faults(["status:503;match=page=2;count=-1"])
        cfg = self.config(users=USERS, retries=2)
        rc, out, err = self.run_cmd(["members", "--organization", "acme"], cfg)
        self.assertEqual(rc, 75, out + err)
        self.assertIn("the API is unavailable (HTTP 503)", err)
        self.assertEqual(out, "")

    def test_usage(self):
        cfg = self.config(users=USERS)
        for args, msg in ((["members", "alice"], "members takes no argument"),
                          (["members", "--organization", "../x"], "not an organization"),
                          (["queue", "--organization", "acme"], "--organization does not go with queue")):
            rc, out, err = self.run_cmd(args, cfg)
            self.assertEqual(rc, 64, args)
            self.assertIn(msg, err)
        self.assertEqual(self.sim.requests(), [])

    def test_no_organization(self):
        cfg = self.config(users=[], organization=None)
        rc, out, err = self.run_cmd(["members"], cfg)
        self.assertEqual(rc, 78, out + err)
        self.assertIn("--organization ORG", err)


if __name__ == "__main__":
    unittest.main()
