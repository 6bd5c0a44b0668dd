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

    def scoped(self, **kw):
        """Restricts the test config's own token (restored by cleanup)."""
        self.sim.set_tokens([pslib.credential(id=pslib.TOKEN_ID, secret=pslib.TOKEN, **kw)])
        self.addCleanup(self.sim.set_tokens, [])

    def test_token_scoped_to_one_organization(self):
        self.scoped(orgs=["acme"])
        cfg = self.config(users=USERS)
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("online: acme: OK", out)
        self.assertIn("online: acme-eu: FAILED: the token cannot see organization acme-eu or "
                      "lacks read_organization (HTTP 404)", out)

    def test_token_without_read_organization(self):
        self.scoped(read=False)
        cfg = self.config(users=USERS)
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("online: acme: FAILED: the token cannot see organization acme or lacks "
                      "read_organization (HTTP 404)", out)
        self.sim.configure(no_read_status=403)
        self.addCleanup(self.sim.configure, no_read_status=404)
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("online: acme: FAILED: the token may not read the member list of acme: "
                      "it lacks read_organization (HTTP 403)", out)

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



ANN = {"id": "ann1", "email": "Ann@Example.co", "name": "Ann", "role": "member"}


def prefix_decoys(n):
    """N members whose emails start with ann@example.co (the q= filter
    returns them all), listed before Ann."""
    return [{"id": "g%03d" % i, "email": "ann@example.co%03d.test" % i, "name": "Decoy %d" % i,
             "role": "member"} for i in range(n)]


def email_members(decoys=150):
    m = {org: list(lst) for org, lst in pslib.DEFAULT_MEMBERS.items()}
    m["acme"] = prefix_decoys(decoys) + m["acme"] + [ANN]
    return m


EMAIL_USERS = [{"login": "ann", "email": "ann@example.co"},
               {"login": "bob", "id": "x9z8", "organization": "acme-eu"}]


class EmailTest(SimTestCase):

    def setUp(self):
        super().setUp()
        self.sim.set_members(email_members())
        self.sim.reset()

    def resolve_requests(self, email="ann@example.co"):
        return [r for r in list_requests(self.sim, "acme")
                if parse_qs(urlsplit(r["target"]).query).get("q") == [email]]

    def cache_files(self):
        d = os.path.join(self.dir, "queue")
        return sorted(n for n in os.listdir(d) if n.startswith(".email-"))

    def test_prefix_of_another_every_page(self):
        """ann@example.co is a prefix of 150 other emails that come first,
        on two pages of 100: the exact match (ignoring case) wins."""
        cfg = self.config(users=EMAIL_USERS)
        rc, out, err = self.run_cmd(["remove", "ann"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("ann: removed from acme (user ann1, email ann@example.co)", out)
        reqs = self.resolve_requests()
        self.assertEqual([parse_qs(urlsplit(r["target"]).query) for r in reqs],
                         [{"q": ["ann@example.co"], "page": [str(p)], "per_page": ["100"]}
                          for p in (1, 2)])
        self.assertIn("q=ann%40example.co&", reqs[0]["target"])
        dels = self.deletes()
        self.assertEqual([urlsplit(r["target"]).path for r in dels],
                         ["/v1/organizations/acme/members/ann1"])
        self.assertNotIn("ann1", [m for m in self.sim.members_of("acme")])
        self.assertIn("g000", self.sim.members_of("acme"))
        self.assertEqual(len(self.audit("removed")), 1)
        self.assertIn("id=ann1", self.audit("removed")[0])

    def test_resolved_once_then_cached(self):
        cfg = self.config(users=EMAIL_USERS)
        rc, out, err = self.run_cmd(["remove", "ann"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(len(self.resolve_requests()), 2)
        files = self.cache_files()
        self.assertEqual(len(files), 1)
        path = os.path.join(self.dir, "queue", files[0])
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        with open(path, encoding="utf-8") as f:
            cached = json.load(f)
        self.assertEqual((cached["organization"], cached["email"], cached["id"]),
                         ("acme", "ann@example.co", "ann1"))
        # Ann is back (the second host, say): the same removal needs no list
        self.sim.reset()
        rc, out, err = self.run_cmd(["remove", "ann"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.resolve_requests(), [])
        self.assertEqual(list_requests(self.sim), [])
        # look, then delete: nothing but the member itself
        self.assertEqual([(r["method"], urlsplit(r["target"]).path) for r in self.sim.requests()],
                         [("GET", "/v1/organizations/acme/members/ann1"),
                          ("DELETE", "/v1/organizations/acme/members/ann1")])

    def test_lookup_says_where_the_id_comes_from(self):
        cfg = self.config(users=EMAIL_USERS)
        rc, out, err = self.run_cmd(["lookup", "ann"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("email: ann@example.co", out)
        self.assertIn("user id: not resolved yet", out)
        self.assertIn("members?q=ann%40example.co&page=1&per_page=100", out)
        rc, out, err = self.run_cmd(["--json", "lookup", "ann", "bob"], cfg)
        j = json.loads(out)
        self.assertEqual((j[0]["id"], j[0]["id_source"], j[0]["email"]),
                         (None, "request", "ann@example.co"))
        self.assertEqual((j[1]["id"], j[1]["id_source"]), ("x9z8", "config"))
        self.assertEqual(self.sim.requests(), [])  # lookup uses no network
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 0, out + err)
        rc, out, err = self.run_cmd(["lookup", "ann"], cfg)
        self.assertIn("user id: ann1 (from the cache", out)
        self.assertIn("/members/ann1?", out)
        rc, out, err = self.run_cmd(["--json", "lookup", "ann"], cfg)
        j = json.loads(out)
        self.assertEqual((j[0]["id"], j[0]["id_source"]), ("ann1", "cache"))

    def test_dry_run(self):
        cfg = self.config(users=EMAIL_USERS)
        rc, out, err = self.run_cmd(["remove", "--dry-run", "ann"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("would remove user email ann@example.co from acme", out)
        self.assertIn("the email is not resolved yet", out)
        rc, out, err = self.run_cmd(["--json", "remove", "--dry-run", "ann"], cfg)
        self.assertEqual(rc, 0, out + err)
        j = json.loads(out)[0]
        self.assertEqual((j["outcome"], j["id"], j["email"]), ("dry-run", None, "ann@example.co"))
        self.assertEqual(self.sim.requests(), [])

    def test_check_online_resolves_and_caches(self):
        users = EMAIL_USERS + [{"login": "zed", "email": "zed@nowhere.example"}]
        cfg = self.config(users=users)
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("online: acme: email ann@example.co (login ann): user ann1", out)
        self.assertIn("online: acme: email zed@nowhere.example (login zed): WARNING: no member "
                      "of acme has this email", out)
        self.assertIn("would be held", err)
        self.assertEqual(len(self.cache_files()), 1)
        rc, out, err = self.run_cmd(["--json", "check", "--online"], cfg)
        j = json.loads(out)
        emails = [e for o in j["online"] for e in o.get("emails", [])]
        self.assertEqual(sorted((e["login"], e["outcome"], e["id"]) for e in emails),
                         [("ann", "ok", "ann1"), ("zed", "absent", None)])
        # refreshed each time: the API's answer, not the cache's
        self.assertEqual(len(self.resolve_requests()), 4)

    def test_check_online_unresolvable_now(self):
        cfg = self.config(users=EMAIL_USERS, retries=1)
        self.sim.set_faults(["status:503;match=q=ann;count=-1"])
        rc, out, err = self.run_cmd(["check", "--online"], cfg)
        self.assertEqual(rc, 75, out + err)
        self.assertIn("email ann@example.co (login ann): FAILED", out)

    def test_case_of_the_configured_email(self):
        cfg = self.config(users=[{"login": "ann", "email": "ANN@EXAMPLE.CO"}])
        rc, out, err = self.run_cmd(["remove", "ann"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("(user ann1, email ANN@EXAMPLE.CO)", out)

    def test_members_shows_email_logins(self):
        self.sim.set_members(email_members(decoys=3))
        self.sim.reset()
        cfg = self.config(users=EMAIL_USERS)
        rc, out, err = self.run_cmd(["--json", "members", "--organization", "acme"], cfg)
        self.assertEqual(rc, 0, err)
        by = {m["user_id"]: m["logins"] for m in json.loads(out)}
        self.assertEqual(by["ann1"], ["ann"])
        self.assertEqual(by["g000"], [])

    def spool(self):
        rc, out, err = self.run_cmd(["--json", "queue"], self.cfg_path)
        self.assertEqual(rc in (0, 75, 77), True, out + err)
        return json.loads(out)

    def test_email_with_no_member_is_held_not_lost(self):
        users = [{"login": "zed", "email": "zed@nowhere.example"}]
        self.cfg_path = cfg = self.config(users=users)
        rc, out, err = self.run_cmd(["remove", "zed"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("NOT removed: held", err)
        self.assertIn("no member of acme has the email zed@nowhere.example", err)
        self.assertEqual(self.deletes(), [])
        self.assertEqual(self.cache_files(), [])
        entries = self.spool()
        self.assertEqual([(e["state"], e["login"], e["email"], e["id"]) for e in entries],
                         [("held", "zed", "zed@nowhere.example", "")])
        self.assertEqual(len(self.audit("held")), 1)
        # the person turns out to be a member after all: retry --held removes them
        m = email_members(decoys=0)
        m["acme"].append({"id": "zed1", "email": "Zed@Nowhere.example", "name": "Zed",
                          "role": "member"})
        self.sim.set_members(m)
        self.sim.reset()
        rc, out, err = self.run_cmd(["retry", "--held"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual([urlsplit(r["target"]).path for r in self.deletes()],
                         ["/v1/organizations/acme/members/zed1"])
        self.assertEqual(self.spool(), [])
        self.assertNotIn("zed1", self.sim.members_of("acme"))

    def test_list_unavailable_is_pending(self):
        self.cfg_path = cfg = self.config(users=EMAIL_USERS, retries=2)
        self.sim.set_faults(["status:503;match=page=2;count=-1"])
        rc, out, err = self.run_cmd(["remove", "ann"], cfg)
        self.assertEqual(rc, 75, out + err)
        self.assertIn("503", err)
        self.assertEqual(self.deletes(), [])
        self.assertEqual(self.cache_files(), [])
        entries = self.spool()
        self.assertEqual([(e["state"], e["email"], e["id"]) for e in entries],
                         [("pending", "ann@example.co", "")])
        self.assertGreater(entries[0]["attempts"], 0)
        self.sim.set_faults([])
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual([urlsplit(r["target"]).path for r in self.deletes()],
                         ["/v1/organizations/acme/members/ann1"])
        self.assertEqual(self.spool(), [])
        self.assertEqual(len(self.cache_files()), 1)

    def test_list_not_visible_is_not_no_member(self):
        self.cfg_path = cfg = self.config(users=[{"login": "ann", "email": "ann@example.co",
                                                  "organization": "globex"}])
        rc, out, err = self.run_cmd(["remove", "ann"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("cannot read the member list", err)
        self.assertNotIn("no member", err)
        self.assertEqual([e["state"] for e in self.spool()], ["held"])

    def test_no_queue(self):
        cfg = self.config(users=[{"login": "zed", "email": "zed@nowhere.example"}])
        rc, out, err = self.run_cmd(["remove", "--no-queue", "zed"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("no member of acme has the email", err)
        self.assertEqual(self.queue_entries(), [])

    def test_two_members_share_the_email(self):
        m = email_members(decoys=0)
        m["acme"].append({"id": "ann2", "email": "ann@EXAMPLE.co", "name": "Ann 2",
                          "role": "member"})
        self.sim.set_members(m)
        self.sim.reset()
        cfg = self.config(users=EMAIL_USERS)
        rc, out, err = self.run_cmd(["remove", "ann"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("2 members of acme have this email", err)
        self.assertIn("held", err)
        self.assertEqual(self.deletes(), [])

    def test_config_errors_name_the_line(self):
        cfg = self.config(users=[{"login": "ann", "email": "ann@"}])
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 78, out + err)
        self.assertRegex(err, r"deprovision\.conf:\d+: users\[0\]\.email: invalid email")
        cfg = self.config(users=[{"login": "ann", "email": "ann@example.co", "id": "ann1"}])
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 78, out + err)
        self.assertIn("both id and email", err)


if __name__ == "__main__":
    unittest.main()
