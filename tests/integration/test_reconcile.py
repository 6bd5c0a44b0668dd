"""`planetscale-deprovision reconcile` against the HTTPS simulator, with the
local account database from the test NSS module in a private mount
namespace (tests/integration/nss.py): accounts found and not found, and the
failures of a directory service.

The confirmation clock: a run counts toward reconcile.confirm_runs only
when it comes at least reconcile.confirm_interval seconds after the last
run that counted, as recorded in QUEUE_DIR/reconcile/state.json. The tests
do not wait an hour: they move the recorded times back (age_state), the
way the file would look an hour later."""

import hashlib
import json
import os
import subprocess
import unittest

from common import SimTestCase, pslib, shim_env
import nss

ACME = [
    {"id": "adm0acme", "email": "root@example.com", "name": "Root Admin", "role": "admin"},
    {"id": "d4xkq1abc", "email": "alice@example.com", "name": "Alice", "role": "member"},
    {"id": "x9z8", "email": "bob@example.com", "name": "Bob", "role": "member"},
    {"id": "c4rol", "email": "carol@example.com", "name": "Carol", "role": "member"},
    {"id": "u0stray", "email": "stray@example.com", "name": "Stray", "role": "member"},
]
USERS = [{"login": "alice", "id": "d4xkq1abc"}, {"login": "bob", "id": "x9z8"},
         {"login": "carol", "id": "c4rol"}]


def many(n, prefix="u"):
    """n mapped users and their members."""
    users = [{"login": "%s%03d" % (prefix, i), "id": "%sid%03d" % (prefix, i)} for i in range(n)]
    members = [{"id": u["id"], "email": "%s@example.com" % u["login"], "name": u["login"],
                "role": "member"} for u in users]
    return users, members


class ReconcileBase(SimTestCase):

    @classmethod
    def setUpClass(cls):
        why = nss.pstest_unavailable()
        if why:
            raise unittest.SkipTest(why)
        super().setUpClass()

    def setUp(self):
        super().setUp()
        self.sim.set_members({"acme": ACME, "acme-eu": pslib.DEFAULT_MEMBERS["acme-eu"]})
        self.sim.reset()
        self.passwd = os.path.join(self.dir, "passwd")
        self.qdir = os.path.join(self.dir, "queue")
        self.state_path = os.path.join(self.qdir, "reconcile", "state.json")

    def cfg(self, users=USERS, reconcile=None, **kw):
        extra = kw.pop("extra", "")
        if reconcile is not None:
            extra += "reconcile = { %s };\n" % " ".join(
                "%s = %s;" % (k, pslib.cfg_value(v)) for k, v in reconcile.items())
        return self.config(users=users, extra=extra, **kw)

    def accounts(self, *logins):
        nss.write_passwd(self.passwd, logins)

    def ns(self, fail=None, installed=True):
        return nss.Namespace(self.dir, self.passwd, fail=fail, installed=installed,
                             log=os.path.join(self.dir, "nss.log"))

    def reconcile(self, cfg, *args, ns=None, env=None):
        """Runs reconcile with NSS from the test module (ns: a Namespace with
        a failure, or not installed; default: answers from self.passwd)."""
        ns = ns or self.ns()
        cmd = pslib.command_path()
        if not os.access(cmd, os.X_OK):
            raise unittest.SkipTest("command not built: " + cmd)
        e = dict(os.environ)
        shim = shim_env(self.syslog)
        e.update(shim)
        for k, v in ns.env.items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        e.update(env or {})
        wrapper = os.environ.get("TEST_WRAPPER", "").split()
        argv = ns.prefix() + wrapper + [cmd, "--config", cfg, "reconcile"] + \
            list(args)
        p = subprocess.run(argv, capture_output=True, text=True, errors="replace", env=e,
                           timeout=300)
        self.outputs.append(p.stdout + p.stderr)
        if p.returncode == 99 and os.environ.get("TEST_WRAPPER"):
            self.fail("the test wrapper (valgrind) reported errors:\n" + p.stderr)
        return p.returncode, p.stdout, p.stderr

    def reconcile_json(self, cfg, *args, **kw):
        rc, out, err = self.reconcile(cfg, "--json", *args, **kw)
        try:
            return rc, json.loads(out), err
        except ValueError:
            self.fail("not JSON (rc %d): %r\n%s" % (rc, out, err))

    def state(self):
        with open(self.state_path, encoding="utf-8") as f:
            return json.load(f)

    def state_logins(self):
        if not os.path.exists(self.state_path):
            return {}
        return {e["login"]: e["runs"] for e in self.state()["logins"]}

    def age_state(self, seconds=3600):
        """The state as it would look `seconds` later: every time moved back."""
        st = self.state()
        for e in st["logins"]:
            e["first_missing"] -= seconds
            e["last_counted"] -= seconds
        if "last_run" in st:
            st["last_run"] -= seconds
        fd = os.open(self.state_path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(st, f)
        os.rename(self.state_path + ".new", self.state_path)

    def spool_snapshot(self):
        """Every file and directory below the queue directory: mode, size,
        mtime and content hash."""
        snap = {}
        for root, dirs, files in os.walk(self.qdir):
            for name in dirs + files:
                p = os.path.join(root, name)
                st = os.lstat(p)
                h = None
                if os.path.isfile(p) and not os.path.islink(p):
                    with open(p, "rb") as f:
                        h = hashlib.sha256(f.read()).hexdigest()
                snap[os.path.relpath(p, self.qdir)] = (st.st_mode, st.st_size, st.st_mtime_ns, h)
        return snap

    def requests(self):
        return [(r["method"], r["target"]) for r in self.sim.requests()]

    def assert_only_list_pages(self, extra=()):
        reqs = self.requests()
        lists = [r for r in reqs if r[0] == "GET" and "/members?" in r[1]]
        self.assertEqual(sorted(set(reqs) - set(lists)), sorted(extra), reqs)
        return lists


class ReconcileTest(ReconcileBase):

    def test_plan_for_a_missing_account_changes_nothing(self):
        cfg = self.cfg()
        self.accounts("bob", "carol")            # alice is gone
        before = self.spool_snapshot()
        rc, out, err = self.reconcile(cfg)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"wait +alice +acme +d4xkq1abc +missing: an --apply run now "
                              r"counts run 1 of 2")
        self.assertIn("plan only, nothing changed", out)
        self.assertEqual(self.spool_snapshot(), before, "the plan changed the spool")
        self.assertFalse(os.path.exists(os.path.join(self.qdir, "reconcile")))
        lists = self.assert_only_list_pages()
        # one organization (acme: the default and every mapping), one page
        self.assertEqual(len(lists), 1, lists)
        self.assertIn("per_page=100", lists[0][1])
        self.assertEqual(self.audit(), [], "a plan writes no audit line")
        self.assertEqual(self.syslog_lines(), [], "a plan writes nothing to syslog")

    def test_plan_of_a_confirmed_account_changes_nothing(self):
        cfg = self.cfg()
        self.accounts("bob", "carol")
        self.reconcile(cfg, "--apply")
        self.age_state()
        before = self.spool_snapshot()
        self.sim.reset()
        rc, data, err = self.reconcile_json(cfg)
        self.assertEqual(rc, 0, err)
        alice = [l for l in data["logins"] if l["login"] == "alice"]
        self.assertEqual([(a["action"], a["runs"]) for a in alice], [("remove", 2)])
        self.assertFalse(data["apply"])
        self.assertEqual(self.spool_snapshot(), before)
        self.assert_only_list_pages()
        self.assertEqual(data["requests"], 1)

    def test_missing_account_needs_confirm_runs_apart(self):
        cfg = self.cfg()
        self.accounts("bob", "carol")
        # run 1: counted, nothing sent but the list
        rc, out, err = self.reconcile(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.state_logins(), {"alice": 1})
        self.assertEqual(self.deletes(), [])
        st = os.stat(self.state_path)
        self.assertEqual(st.st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(os.path.dirname(self.state_path)).st_mode & 0o777, 0o700)
        # run 2 right away: too soon to count
        rc, out, err = self.reconcile(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.state_logins(), {"alice": 1})
        self.assertIn("the next run counts after", out)
        self.assertEqual(self.deletes(), [])
        # an hour later: run 2 counts, confirm_runs = 2 reached: removed
        self.age_state()
        self.sim.reset()
        rc, out, err = self.reconcile(cfg, "--apply")
        self.assertEqual(rc, 0, err + out)
        dels = self.deletes()
        self.assertEqual(len(dels), 1)
        self.assertTrue(dels[0]["target"].startswith("/v1/organizations/acme/members/d4xkq1abc"))
        self.assertEqual(self.sim.members_of("acme").count("d4xkq1abc"), 0)
        self.assertEqual(self.state_logins(), {}, "a removed login leaves the state")
        removed = self.audit("removed")
        self.assertEqual(len(removed), 1, self.syslog_lines())
        self.assertIn("trigger=reconcile", removed[0])
        self.assertEqual(self.queue_entries(), [], "the spool entry is settled")
        # requests: the list page, then the removal (a removal looks, then
        # deletes); nothing per login
        self.assert_only_list_pages(extra=[("GET", "/v1/organizations/acme/members/d4xkq1abc"),
                                           ("DELETE", dels[0]["target"])])
        # next run: alice is not a member any more (stale mapping), nothing sent
        self.sim.reset()
        self.sim.set_members({"acme": [m for m in ACME if m["id"] != "d4xkq1abc"]})
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertEqual([s["login"] for s in data["stale"]], ["alice"])
        self.assertEqual(self.deletes(), [])

    def test_confirm_runs_three_and_interval_from_config(self):
        cfg = self.cfg(reconcile={"confirm_runs": 3, "confirm_interval": 600})
        self.accounts("bob", "carol")
        for expected in (1, 2, 3):
            rc, out, err = self.reconcile(cfg, "--apply")
            self.assertEqual(rc, 0, err)
            if expected < 3:
                self.assertEqual(self.state_logins(), {"alice": expected})
                self.assertEqual(self.deletes(), [])
                # 540 s later (and however long the runs take, well under a
                # minute): too soon, it does not count
                self.age_state(540)
                rc, out, err = self.reconcile(cfg, "--apply")
                self.assertEqual(self.state_logins(), {"alice": expected})
                self.age_state(60)
        self.assertEqual(len(self.deletes()), 1)

    def test_confirm_runs_one_acts_at_once(self):
        cfg = self.cfg(reconcile={"confirm_runs": 1})
        self.accounts("bob", "carol")
        rc, out, err = self.reconcile(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(self.deletes()), 1)

    def test_reappearing_account_resets_its_count(self):
        cfg = self.cfg()
        self.accounts("bob", "carol")
        self.reconcile(cfg, "--apply")
        self.assertEqual(self.state_logins(), {"alice": 1})
        self.age_state()
        # alice is back (sssd caught up, a restore): the count starts over
        self.accounts("alice", "bob", "carol")
        rc, out, err = self.reconcile(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"reset +alice .*present again")
        self.assertEqual(self.state_logins(), {})
        self.assertTrue(any("alice is present again" in l for l in self.syslog_lines()))
        # gone again an hour later: run 1 again, not 2
        self.age_state()
        self.accounts("bob", "carol")
        self.reconcile(cfg, "--apply")
        self.assertEqual(self.state_logins(), {"alice": 1})
        self.assertEqual(self.deletes(), [])

    def test_every_account_vanishing_trips_the_cap(self):
        users, members = many(12)
        self.sim.set_members({"acme": ACME[:1] + members})
        cfg = self.cfg(users=users)
        self.accounts()                       # nobody is there
        before = self.spool_snapshot()
        rc, out, err = self.reconcile(cfg)
        self.assertEqual(rc, 77, "the plan says the cap would trip: " + err)
        self.assertIn("acting on none", err)
        self.assertEqual(self.spool_snapshot(), before)
        for _ in range(2):
            rc, out, err = self.reconcile(cfg, "--apply")
            self.assertEqual(rc, 77, err)
            self.assertIn("--apply --allow 12", err)
            self.age_state()
        self.assertEqual(self.deletes(), [])
        alerts = [l for l in self.syslog_lines() if "authpriv.alert" in l]
        self.assertEqual(len(alerts), 2, self.syslog_lines())
        self.assertIn("12 mapped accounts are missing", alerts[0])
        # the counts went on: all 12 are confirmed, and still nobody is removed
        self.assertEqual(set(self.state_logins().values()), {2})
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual(rc, 77)
        self.assertEqual((data["cap"]["candidates"], data["cap"]["confirmed"],
                          data["cap"]["tripped"]), (12, 12, True))
        self.assertEqual(self.deletes(), [])
        # an administrator who checked says so: --allow 11 is not enough...
        rc, out, err = self.reconcile(cfg, "--apply", "--allow", "11")
        self.assertEqual(rc, 77)
        self.assertEqual(self.deletes(), [])
        # ...--allow 12 is
        rc, out, err = self.reconcile(cfg, "--apply", "--allow", "12")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(self.deletes()), 12)
        self.assertEqual(self.state_logins(), {})

    def test_cap_by_fraction_and_by_count(self):
        users, members = many(20)
        self.sim.set_members({"acme": ACME[:1] + members})
        # 20 mapped, max_fraction 0.2: at most 4; 5 missing trips it
        cfg = self.cfg(users=users, reconcile={"max_removals": 100, "max_fraction": 0.2,
                                               "confirm_runs": 1})
        self.accounts(*[u["login"] for u in users[5:]])
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual((rc, data["cap"]["limit"], data["cap"]["tripped"]), (77, 4, True))
        self.accounts(*[u["login"] for u in users[4:]])
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual((rc, data["cap"]["tripped"]), (0, False), err)
        self.assertEqual(len(self.deletes()), 4)
        # max_removals = 0: nothing without --allow
        self.sim.reset()
        cfg = self.cfg(users=users, reconcile={"max_removals": 0, "confirm_runs": 1})
        self.accounts(*[u["login"] for u in users[1:]])
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual((rc, data["cap"]["limit"]), (77, 0))
        self.assertEqual(self.deletes(), [])

    def test_fraction_applies_from_ten_mapped(self):
        # 3 mapped, 1 missing is a third, but max_fraction counts from 10
        cfg = self.cfg(reconcile={"max_fraction": 0.1, "confirm_runs": 1})
        self.accounts("bob", "carol")
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual((rc, data["cap"]["limit"], data["cap"]["tripped"]), (0, 10, False), err)
        self.assertEqual(len(self.deletes()), 1)

    def test_report_unmapped_stale_and_shared(self):
        users = USERS + [{"login": "dave", "id": "zz99"},            # not a member, present
                         {"login": "erin", "id": "zz98"},            # not a member, gone
                         {"login": "bob2", "id": "x9z8"}]            # bob's id, gone
        cfg = self.cfg(users=users, reconcile={"confirm_runs": 1})
        self.accounts("alice", "bob", "carol", "dave")
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.deletes(), [], "bob2 shares bob's id, and bob is there")
        self.assertEqual([(m["organization"], m["id"]) for m in data["unmapped_members"]],
                         [("acme", "adm0acme"), ("acme", "u0stray")])
        self.assertEqual(sorted((s["login"], s["account"]) for s in data["stale"]),
                         [("dave", "present"), ("erin", "missing")])
        self.assertEqual([(l["login"], l["action"]) for l in data["logins"]],
                         [("bob2", "shared")])
        rc, out, err = self.reconcile(cfg)
        self.assertRegex(out, r"unmapped member +acme +u0stray +stray@example.com \(member\)")
        self.assertRegex(out, r"stale mapping +acme +zz98 +erin is not a member \(account "
                              r"missing: the mapping can go\)")

    def test_directory_managed_member_is_reported(self):
        # carol (mapped, present) and the stray member are managed by
        # PlanetScale Directory Sync
        self.sim.update_member("acme", "c4rol", directory_managed=True)
        self.sim.update_member("acme", "u0stray", directory_managed=True)
        cfg = self.cfg(reconcile={"confirm_runs": 1})
        self.accounts("alice", "bob", "carol")
        before = self.spool_snapshot()
        rc, out, err = self.reconcile(cfg)
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"directory-managed +acme +c4rol +carol@example.com \(login carol\)")
        self.assertRegex(out, r"directory-managed +acme +u0stray +stray@example.com \(login none\)")
        self.assertRegex(out, r"unmapped member +acme +u0stray +stray@example.com \(member\), "
                              r"directory-managed")
        self.assertIn("2 directory-managed members", out)
        self.assertEqual(self.spool_snapshot(), before)
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted((d["id"], d["login"]) for d in data["directory_managed"]),
                         [("c4rol", "carol"), ("u0stray", None)])
        self.assertEqual(self.deletes(), [], "reported, not acted on")
        # a directory-managed member whose account is gone is removed like any
        # other (its passwords and tokens too), flagged as directory-managed
        self.accounts("alice", "bob")
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertEqual([(l["login"], l["directory_managed"], l["outcome"])
                          for l in data["logins"]], [("carol", True, "removed")])

    def test_users_mapped_by_email(self):
        users = [{"login": "alice", "email": "ALICE@example.com"},     # case differs
                 {"login": "bob", "id": "x9z8"},
                 {"login": "eve", "email": "alice@example.co"},       # a prefix of alice's
                 {"login": "carl", "email": "carol@example.com"}]
        cfg = self.cfg(users=users, reconcile={"confirm_runs": 1})
        self.accounts("bob", "eve", "carl")                          # alice is gone
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertEqual([(l["login"], l["id"], l["email"], l["outcome"]) for l in data["logins"]],
                         [("alice", "d4xkq1abc", "ALICE@example.com", "removed")])
        self.assertEqual([(s["login"], s["problem"]) for s in data["stale"]],
                         [("eve", "no member has this email")])
        self.assertNotIn(("acme", "c4rol"), [(m["organization"], m["id"])
                                             for m in data["unmapped_members"]])
        # the list page, then the removal: no request of its own to resolve
        # the email (this run's list gave the id, through the email cache)
        self.assert_only_list_pages(extra=[("GET", "/v1/organizations/acme/members/d4xkq1abc"),
                                           ("DELETE", self.deletes()[0]["target"])])
        lists = [r for r in self.requests() if "/members?" in r[1]]
        self.assertEqual(len(lists), 1)
        self.assertNotIn("q=", lists[0][1])
        self.assertIn("trigger=reconcile", self.audit("removed")[0])

    def test_two_organizations(self):
        users = USERS + [{"login": "eve", "id": "x9z8", "organization": "acme-eu"}]
        cfg = self.cfg(users=users, reconcile={"confirm_runs": 1})
        self.accounts("alice", "carol")           # bob and eve gone
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(o["organization"] for o in data["organizations"]),
                         ["acme", "acme-eu"])
        self.assertEqual(sorted(d["target"].split("?")[0] for d in self.deletes()),
                         ["/v1/organizations/acme-eu/members/x9z8",
                          "/v1/organizations/acme/members/x9z8"])

    def test_already_queued_is_left_to_the_spool(self):
        cfg = self.cfg(reconcile={"confirm_runs": 1}, retries=1)
        self.accounts("alice", "carol")
        self.sim.set_faults(["status:503;count=-1"])
        rc, out, err = self.run_cmd(["remove", "bob"], config=cfg)
        self.assertEqual(rc, 75, err)
        self.assertEqual(len(self.queue_entries()), 1)
        self.sim.set_faults([])
        self.sim.reset()
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertEqual([(l["login"], l["action"]) for l in data["logins"]], [("bob", "queued")])
        self.assertEqual(self.deletes(), [])

    def test_queued_outcome_of_a_removal(self):
        cfg = self.cfg(reconcile={"confirm_runs": 1}, retries=1)
        self.accounts("alice", "carol")
        # the list is answered, the DELETE is not
        self.sim.set_faults([{"spec": "status:503", "method": "DELETE", "count": -1}])
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual(rc, 75, err)
        self.assertEqual([(l["login"], l["outcome"]) for l in data["logins"]],
                         [("bob", "queued")])
        self.assertEqual(len(self.queue_entries()), 1)
        self.assertEqual(self.state_logins(), {}, "the spool owns it now")

    def test_member_list_failures_act_on_no_one(self):
        self.accounts("bob", "carol")
        for fault, code in (("status:503;count=-1", 75), ("status:401;count=-1", 77),
                            ("status:403;count=-1", 77), ("status:404;count=-1", 77)):
            with self.subTest(fault=fault):
                cfg = self.cfg(reconcile={"confirm_runs": 1}, retries=1)
                self.sim.set_faults([fault])
                rc, out, err = self.reconcile(cfg, "--apply")
                self.assertEqual(rc, code, err)
                self.assertIn("acting on no one", err)
                self.assertEqual(self.deletes(), [])
                self.assertEqual(self.state_logins(), {})
                self.sim.set_faults([])

    def test_invalid_state_is_moved_aside(self):
        cfg = self.cfg()
        self.accounts("bob", "carol")
        self.reconcile(cfg, "--apply")
        with open(self.state_path, "w") as f:
            f.write('{"version": 1, "logins": [{"login": "alice", "runs": 99}]}')
        os.chmod(self.state_path, 0o600)
        before = self.spool_snapshot()
        rc, out, err = self.reconcile(cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("ignored", err)
        self.assertEqual(self.spool_snapshot(), before)
        rc, out, err = self.reconcile(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertTrue(os.path.exists(self.state_path + ".invalid"))
        self.assertEqual(self.state_logins(), {"alice": 1}, "the count started over")
        self.assertEqual(self.deletes(), [])
        # a state file others can read is not trusted either
        os.chmod(self.state_path, 0o644)
        rc, out, err = self.reconcile(cfg, "--apply")
        self.assertIn("moved to", err)
        self.assertEqual(os.stat(self.state_path).st_mode & 0o777, 0o600)

    def test_usage(self):
        cfg = self.cfg()
        self.accounts("alice", "bob", "carol")
        for args in (["extra"], ["--allow", "-1"], ["--allow", "x"], ["--dry-run"]):
            rc, out, err = self.reconcile(cfg, *args)
            self.assertEqual(rc, 64, (args, err))
        rc, out, err = self.run_cmd(["--apply", "retry"], config=cfg)
        self.assertEqual(rc, 64)
        rc, out, err = self.run_cmd(["remove", "--allow", "3", "alice"], config=cfg)
        self.assertEqual(rc, 64)
        self.assertEqual(self.requests(), [])

    def test_nothing_mapped(self):
        cfg = self.cfg(users=[])
        self.accounts()
        rc, data, err = self.reconcile_json(cfg, "--apply")
        self.assertEqual(rc, 0, err)
        self.assertEqual(data["mapped"], 0)
        # the default organization is still listed, for its unmapped members
        self.assertEqual(len(data["unmapped_members"]), len(ACME))


class ReconcileNssTest(ReconcileBase):
    """The account database failing the way a directory does."""

    def nss_lookups(self):
        try:
            with open(os.path.join(self.dir, "nss.log")) as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    def test_directory_users_found_through_the_module(self):
        cfg = self.cfg(reconcile={"confirm_runs": 1})
        self.accounts("alice", "carol")                    # bob is gone from the directory
        rc, data, err = self.reconcile_json(cfg, "--apply", ns=self.ns())
        self.assertEqual(rc, 0, err)
        self.assertEqual(sorted(self.nss_lookups()), ["alice", "bob", "carol"])
        self.assertEqual([d["target"].split("?")[0] for d in self.deletes()],
                         ["/v1/organizations/acme/members/x9z8"])

    def test_nss_outage_acts_on_nobody(self):
        cfg = self.cfg(reconcile={"confirm_runs": 1})
        self.accounts("alice", "carol")
        for fail in nss.FAILURES:
            with self.subTest(fail=fail):
                self.sim.reset()
                before = self.spool_snapshot()
                rc, out, err = self.reconcile(cfg, "--apply", ns=self.ns(fail))
                self.assertEqual(rc, 75, err)
                self.assertIn("failed", err)
                self.assertIn("acting on no one", err)
                self.assertEqual(self.requests(), [], "not even the member list is read")
                self.assertEqual(self.spool_snapshot(), before)
        errs = [l for l in self.syslog_lines() if "authpriv.err" in l and "(NSS) failed" in l]
        self.assertEqual(len(errs), len(nss.FAILURES), self.syslog_lines())
        self.assertIn("No such file or directory", errs[0])   # sssd's socket missing
        self.assertIn("Input/output error", errs[1])

    def test_one_failing_lookup_stops_the_whole_run(self):
        cfg = self.cfg(reconcile={"confirm_runs": 1})
        self.accounts("alice")                    # bob and carol gone, confirmed at once
        rc, out, err = self.reconcile(cfg, "--apply", ns=self.ns("unavail-eio:carol"))
        self.assertEqual(rc, 75, err)
        self.assertIn("looking up carol", err)
        self.assertEqual(self.requests(), [])
        rc, out, err = self.reconcile(cfg, "--apply", ns=self.ns())
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(self.deletes()), 2)

    def test_outage_keeps_the_counts(self):
        cfg = self.cfg()
        self.accounts("alice", "carol")
        self.reconcile(cfg, "--apply", ns=self.ns())
        self.assertEqual(self.state_logins(), {"bob": 1})
        self.age_state()
        rc, out, err = self.reconcile(cfg, "--apply", ns=self.ns("unavail-enoent"))
        self.assertEqual(rc, 75)
        self.assertEqual(self.state_logins(), {"bob": 1}, "an outage neither counts nor resets")
        rc, out, err = self.reconcile(cfg, "--apply", ns=self.ns())
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(self.deletes()), 1)

    def test_module_not_installed_trips_the_cap(self):
        # every lookup of a directory user is "not found", with no error
        users, members = many(10)
        self.sim.set_members({"acme": ACME[:1] + members})
        cfg = self.cfg(users=users, reconcile={"confirm_runs": 1})
        self.accounts(*[u["login"] for u in users])
        rc, out, err = self.reconcile(cfg, "--apply", ns=self.ns(installed=False))
        self.assertEqual(rc, 77, err)
        self.assertIn("--apply --allow 10", err)
        self.assertEqual(self.deletes(), [])
        self.assertTrue(any("authpriv.alert" in l for l in self.syslog_lines()))
        # installed again: everyone is back
        rc, data, err = self.reconcile_json(cfg, "--apply", ns=self.ns())
        self.assertEqual((rc, data["missing"]), (0, 0), err)
        self.assertEqual(self.state_logins(), {})


if __name__ == "__main__":
    unittest.main()
