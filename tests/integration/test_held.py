"""A removal leaves the spool only when PlanetScale confirmed it: refusals,
404s that cannot be confirmed and configuration problems are held with their
reason; held entries are sent again once the configuration changes or when
asked (retry --held); only `queue drop` deletes one unconfirmed; pending
entries age from their first real attempt; unresolved records are checked
against the local account before they are sent."""

import json
import os
import shutil
import subprocess
import threading
import time
import unittest

from common import SimTestCase, pslib, shim_env

OTHER_ORG_ONLY = pslib.credential(pslib.TOKEN_ID, pslib.TOKEN, orgs=["acme-eu"])
READ_ONLY = pslib.credential(pslib.TOKEN_ID, pslib.TOKEN, write=False)
WRITE_ONLY = pslib.credential(pslib.TOKEN_ID, pslib.TOKEN, read=False)
ALICE = "/v1/organizations/acme/members/d4xkq1abc"


class HeldTestCase(SimTestCase):

    def tearDown(self):
        # the scoped credentials are per test
        self.sim.set_tokens([])
        super().tearDown()

    def qdir(self, sub=""):
        return os.path.join(self.dir, "queue", sub)

    def entries(self, cfg):
        return {e["login"]: e for e in self.queue_json(cfg)}

    def paths(self, method=None):
        return [(r["method"], r["path"], r["status"]) for r in self.sim.requests(method=method)]


class ConfirmedAbsenceTest(HeldTestCase):

    def test_a_member_already_gone_is_confirmed_with_one_probe(self):
        self.sim.remove_members("acme", ["d4xkq1abc", "c4rol"])
        cfg = self.config(users=[{"login": "alice", "id": "d4xkq1abc"},
                                 {"login": "carol", "id": "c4rol"}])
        rc, out, err = self.run_cmd(["remove", "alice", "carol"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("alice: already absent from acme (user d4xkq1abc), confirmed", out)
        # GET alice 404, the list probe proves the credential reads acme, and
        # the proof covers carol too: no DELETE at all, one probe
        self.assertEqual(self.paths(), [
            ("GET", ALICE, 404),
            ("GET", "/v1/organizations/acme/members", 200),
            ("GET", "/v1/organizations/acme/members/c4rol", 404)])
        self.assertEqual(self.queue_entries(), [])
        self.assertEqual(len(self.audit("absent")), 2)

    def test_a_404_the_credential_cannot_confirm_is_held(self):
        # the token cannot see acme: PlanetScale answers 404 for everything
        self.sim.set_tokens([OTHER_ORG_ONLY])
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 77, err)
        self.assertIn("held", err)
        self.assertIn("read_organization", err)
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"), "nothing was removed")
        e = self.entries(cfg)["alice"]
        self.assertEqual(e["state"], "held")
        self.assertIn("could not be confirmed", e["last_error"])
        self.assertEqual(len(self.audit("held")), 1)
        self.assertEqual(self.audit("absent"), [], "a 404 was taken on faith")
        # the right token: the configuration changes, retry sends it
        self.sim.set_tokens([])
        rc, out, err = self.run_cmd(["retry"], self.config(token_id="pscale_tkn_id_0123"))
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))
        self.assertEqual(self.queue_entries(), [])

    def test_a_credential_without_write_organization_is_held(self):
        self.sim.set_tokens([READ_ONLY])
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 77, err)
        self.assertEqual(self.paths(), [("GET", ALICE, 200), ("DELETE", ALICE, 404),
                                        ("GET", ALICE, 200)])
        e = self.entries(cfg)["alice"]
        self.assertEqual(e["state"], "held")
        self.assertIn("still listed", e["last_error"])
        self.assertIn("write_organization", e["last_error"])
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"))

    def test_a_write_only_credential_still_removes(self):
        self.sim.set_tokens([WRITE_ONLY])
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))
        self.assertEqual(self.queue_entries(), [])
        # ... but cannot confirm an absence: that one is held
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 77, err)
        self.assertEqual(self.entries(cfg)["alice"]["state"], "held")

    def test_gone_between_look_and_delete_is_confirmed_without_a_probe(self):
        # another host removes the member between this host's GET and DELETE
        self.sim.set_faults(["delay:2;method=DELETE;count=1"])
        cfg = self.config()
        result = {}
        t = threading.Thread(target=lambda: result.update(
            r=self.run_cmd(["remove", "alice"], cfg)))
        t.start()
        # once the GET has been answered, the member goes; the DELETE (held
        # back 2 s by the simulator) then finds it gone
        until = time.monotonic() + 60
        while time.monotonic() < until and not any(
                r["method"] == "GET" for r in self.sim.requests(settle=False)):
            time.sleep(0.02)
        self.sim.remove_members("acme", ["d4xkq1abc"])
        t.join(120)
        rc, out, err = result["r"]
        self.assertEqual(rc, 0, err)
        self.assertIn("already absent", out)
        # the first GET proved the credential reads acme: no probe needed
        self.assertEqual(self.paths(), [("GET", ALICE, 200), ("DELETE", ALICE, 404),
                                        ("GET", ALICE, 404)])
        self.assertEqual(self.queue_entries(), [])


class HeldLifecycleTest(HeldTestCase):

    def hold_alice(self, cfg):
        self.sim.set_faults(["status:422;method=DELETE;count=1"])
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 77, err)
        self.sim.set_faults([])
        return self.entries(cfg)["alice"]

    def test_held_stays_until_the_configuration_changes_or_retry_held(self):
        cfg = self.config()
        e = self.hold_alice(cfg)
        self.assertEqual(e["state"], "held")
        self.assertRegex(e["held_at"], r"^\d{4}-\d\d-\d\dT")
        # unchanged configuration: retry leaves it alone and fails (77)
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("1 held", out)
        self.assertEqual(len(self.deletes()), 1)
        # a person dealt with it: retry --held sends it
        rc, out, err = self.run_cmd(["retry", "--held"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.queue_entries(), [])
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))

    def test_a_changed_configuration_sends_held_entries_again(self):
        cfg = self.config()
        self.hold_alice(cfg)
        time.sleep(0.01)
        os.utime(cfg)   # any change to a file the configuration is read from
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.queue_entries(), [])

    def test_asking_again_sends_a_held_entry(self):
        cfg = self.config()
        self.hold_alice(cfg)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.queue_entries(), [])

    def test_check_fails_while_anything_is_held(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.hold_alice(cfg)
        rc, out, err = self.run_cmd(["check"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("wait for a person", out)
        self.assertIn("alice", out)
        rc, out, err = self.run_cmd(["--json", "check"], cfg)
        self.assertEqual(rc, 77)
        j = json.loads(out)
        self.assertEqual((j["ok"], j["held"]), (False, 1))

    def test_queue_drop_is_the_only_way_out_and_is_audited(self):
        cfg = self.config()
        e = self.hold_alice(cfg)
        rc, out, err = self.run_cmd(["queue"], cfg)
        self.assertEqual(rc, 0, err)
        row = [l for l in out.splitlines() if l.split()[:2] == ["held", e["name"]]]
        self.assertEqual(len(row), 1, out)
        self.assertIn(e["name"], row[0])
        self.assertIn("422", row[0])
        self.assertIn("0 pending, 1 held", out)
        rc, out, err = self.run_cmd(["queue", "drop", "nonexistent.json"], cfg)
        self.assertEqual(rc, 1)
        self.assertIn("no entry", err)
        rc, out, err = self.run_cmd(["queue", "drop", "../../etc/passwd"], cfg)
        self.assertEqual(rc, 1)
        rc, out, err = self.run_cmd(["queue", "drop", e["name"]], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("NOT removed", out)
        self.assertEqual(self.queue_entries(), [])
        lines = self.audit("dropped")
        self.assertEqual(len(lines), 1)
        self.assertIn("login=alice", lines[0])
        self.assertIn("422", lines[0])
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"))

    def test_a_401_is_held_and_the_summary_counts_what_the_spool_holds(self):
        users = [{"login": "alice", "id": "d4xkq1abc"}, {"login": "carol", "id": "c4rol"}]
        self.sim.set_faults(["status:503;count=-1"])
        rc, out, err = self.run_cmd(["remove", "alice", "carol"],
                                    self.config(users=users, retries=1))
        self.assertEqual(rc, 75, err)
        self.sim.set_faults([])
        # the token was rotated at PlanetScale: the configuration's is refused
        bad = self.config(name="rotated.conf", token="pscale_tkn_SECRETvalue0123456789-rotated",
                          users=users)
        rc, out, err = self.run_cmd(["retry"], bad)
        self.assertEqual(rc, 77, out + err)
        # the first entry was refused (held); the drain stopped: the second
        # was not sent and is still pending; the summary says exactly that
        self.assertIn("the spool holds 1 pending, 1 held, 0 dead", out)
        states = sorted(e["state"] for e in self.queue_json(bad))
        self.assertEqual(states, ["held", "pending"])
        self.assertEqual(len(self.sim.requests()), 1 + 2 * 1, "one request after the 401")
        # the token is fixed: the configuration changed, everything goes
        rc, out, err = self.run_cmd(["retry"], self.config(name="fixed.conf", users=users))
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.queue_entries(), [])


class AgingTest(HeldTestCase):

    def write_entry(self, login, org, id_, **kw):
        e = {"version": 2, "login": login, "organization": org, "id": id_,
             "delete_passwords": True, "delete_service_tokens": True,
             "recorded": int(time.time()), "first_attempt": 0, "last_attempt": 0,
             "attempts": 0, "last_error": "", "state": "pending", "held_at": 0,
             "held_config": "", "trigger": "remove"}
        e.update(kw)
        os.makedirs(self.qdir(), mode=0o700, exist_ok=True)
        name = pslib.entry_name(login, org, id_)
        tmp = os.path.join(self.qdir(), ".tmp-test")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(e, f)
        os.rename(tmp, os.path.join(self.qdir(), name))
        return name

    def test_an_entry_never_sent_never_ages_out(self):
        cfg = self.config()
        old = int(time.time()) - 40 * 86400
        self.write_entry("alice", "acme", "d4xkq1abc", recorded=old)
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"), "it was never sent")
        self.assertEqual(self.queue_entries("dead"), [])

    def test_pending_too_long_since_its_first_attempt_is_dead_and_visible(self):
        cfg = self.config()
        old = int(time.time()) - 40 * 86400
        name = self.write_entry("alice", "acme", "d4xkq1abc", recorded=old, first_attempt=old,
                                last_attempt=old, attempts=7, last_error="HTTP 503")
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertEqual(self.queue_entries("dead"), [name])
        self.assertIn("d4xkq1abc", self.sim.members_of("acme"), "a dead letter is not sent")
        lines = [l for l in self.syslog_lines() if "outcome=dead-letter" in l]
        self.assertEqual(len(lines), 1)
        self.assertTrue(lines[0].startswith("authpriv.alert"), lines[0])
        self.assertEqual(self.entries(cfg)["alice"]["state"], "dead")
        # a person decides: retry --held sends it once more
        rc, out, err = self.run_cmd(["retry", "--held"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))
        self.assertEqual(self.queue_entries("dead") + self.queue_entries(), [])


def why_no_namespace():
    if os.geteuid() != 0:
        return "needs root (a private mount namespace with its own /etc/passwd)"
    if not shutil.which("unshare"):
        return "needs unshare (util-linux)"
    return None


@unittest.skipIf(why_no_namespace(), why_no_namespace())
class UnresolvedRecheckTest(HeldTestCase):
    """The configuration did not load when the login was recorded; before
    the record is sent, the local account must be as it was then. The
    command runs in a private mount namespace whose /etc/passwd and
    /etc/shadow are the test's (glibc's own files backend: a login that is
    not there is "not found", not an error)."""

    def setUp(self):
        super().setUp()
        self.passwd = os.path.join(self.dir, "passwd")
        self.shadow = os.path.join(self.dir, "shadow")
        self.set_accounts({})

    def set_accounts(self, accounts, expire=None):
        """accounts: login -> uid; expire: login -> shadow expiry day."""
        expire = expire or {}
        with open(self.passwd, "w") as f:
            f.write("root:x:0:0:root:/root:/bin/sh\n")
            for login, uid in accounts.items():
                f.write("%s:x:%d:100::/home/%s:/bin/sh\n" % (login, uid, login))
        with open(self.shadow, "w") as f:
            f.write("root:*:19000:0:99999:7:::\n")
            for login in accounts:
                f.write("%s:!:19000:0:99999:7::%s:\n" % (login, expire.get(login, "")))

    def run_cmd(self, args, config=None, input=None, timeout=120, env=None):
        full = dict(os.environ)
        full.update(shim_env(self.syslog))
        if config:
            full[pslib.UNRESOLVED_ENV] = os.path.join(self.dir, "unresolved")
        full.update(env or {})
        script = ('mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/shadow && '
                  'shift 2 && exec "$@"')
        argv = (["unshare", "-m", "--", "sh", "-c", script, "sh", self.passwd, self.shadow] +
                os.environ.get("TEST_WRAPPER", "").split() + [pslib.command_path()] +
                (["--config", config] if config else []) + list(args))
        p = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=full,
                           text=True, errors="replace")
        self.outputs.append(p.stdout + p.stderr)
        return p.returncode, p.stdout, p.stderr

    def broken(self):
        return self.config(extra="no_such_key = 1;\n")

    def test_a_reused_login_is_held_not_sent(self):
        # bob is deleted (userdel hook) while the configuration is broken
        broken = self.broken()
        rc, out, err = self.run_cmd(["remove", "bob"], broken)
        self.assertEqual(rc, 78, err)
        rec = json.load(open(os.path.join(self.dir, "unresolved",
                                          os.listdir(os.path.join(self.dir, "unresolved"))[0])))
        self.assertEqual((rec["account"], rec["uid"]), ("absent", -1))
        # a new hire gets the login bob, and the map is fixed for them
        self.set_accounts({"bob": 3001})
        cfg = self.config(users=[{"login": "bob", "id": "c4rol"}])
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertEqual(self.sim.requests(), [], "the new bob was sent")
        q = self.queue_json(cfg)
        self.assertEqual([(e["login"], e["state"], e["kind"]) for e in q],
                         [("bob", "held", "unresolved")])
        self.assertIn("exists again", q[0]["last_error"])
        self.assertEqual(len(self.audit("held")), 1)
        # still held on the next run; only a person's `queue drop` ends it
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 77, out + err)
        rc, out, err = self.run_cmd(["queue", "drop", q[0]["name"]], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.queue_json(cfg), [])
        self.assertEqual(len(self.audit("dropped")), 1)

    def test_an_account_deleted_since_it_was_recorded_is_sent(self):
        self.set_accounts({"alice": 3000})
        rc, out, err = self.run_cmd(["remove", "alice"], self.broken())
        self.assertEqual(rc, 78, err)
        self.set_accounts({})
        rc, out, err = self.run_cmd(["retry"], self.config())
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))

    def test_another_uid_under_the_same_login_is_held(self):
        self.set_accounts({"alice": 3000})
        rc, out, err = self.run_cmd(["remove", "alice"], self.broken())
        self.set_accounts({"alice": 3999})
        rc, out, err = self.run_cmd(["retry"], self.config())
        self.assertEqual(rc, 77, out + err)
        self.assertEqual(self.sim.requests(), [])

    def test_only_expired_record_of_an_account_no_longer_expired_is_dropped(self):
        today = int(time.time() // 86400)
        self.set_accounts({"alice": 3000}, expire={"alice": today - 30})
        rc, out, err = self.run_cmd(["pam-helper", "--mode", "expired", "--service", "sshd",
                                     "--config", self.broken(), "--", "alice"])
        self.assertEqual(out, "recorded\n", err)
        # the administrator lifts the expiry (the investigation is over)
        self.set_accounts({"alice": 3000})
        rc, out, err = self.run_cmd(["retry"], self.config())
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.sim.requests(), [])
        self.assertEqual(len(self.audit("cancelled")), 1)
        self.assertEqual(self.queue_json(self.config()), [])

    def test_only_expired_record_waits_for_the_configurations_grace(self):
        # recorded 10 days after the expiry (the default 7 made it due while
        # the configuration did not load); the configuration, once it loads,
        # says 14: not sent before the 14th day
        today = int(time.time() // 86400)
        self.set_accounts({"alice": 3000}, expire={"alice": today - 10})
        rc, out, err = self.run_cmd(["pam-helper", "--mode", "expired", "--service", "sshd",
                                     "--config", self.broken(), "--", "alice"])
        self.assertEqual(out, "recorded\n", err)
        cfg = self.config(extra="expired_grace_days = 14;\n")
        rc, out, err = self.run_cmd(["--json", "retry"], cfg)
        self.assertEqual(rc, 75, out + err)
        self.assertEqual(json.loads(out)["unresolved"]["left"], 1)
        self.assertEqual(self.sim.requests(), [])
        self.assertTrue(any("expired_grace_days = 14" in l and "left for a later retry" in l
                            for l in self.syslog_lines()), self.syslog_lines())
        self.assertEqual(len(os.listdir(os.path.join(self.dir, "unresolved"))), 1)
        # four days later it is due
        self.set_accounts({"alice": 3000}, expire={"alice": today - 14})
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))

    def test_a_foreign_file_under_the_records_name_does_not_hide_it(self):
        udir = os.path.join(self.dir, "unresolved")
        os.makedirs(udir, mode=0o700)
        broken = self.broken()
        real = os.path.realpath(broken)
        name = pslib.unresolved_name("alice", real)
        # another request's record (bob's) sits under alice's name
        with open(os.path.join(udir, name), "w") as f:
            json.dump({"version": 1, "login": "bob", "config": real, "source": "remove",
                       "recorded": 1700000000}, f)
        os.chmod(os.path.join(udir, name), 0o600)
        rc, out, err = self.run_cmd(["remove", "alice"], broken)
        self.assertEqual(rc, 78, err)
        self.assertIn(name.replace(".json", "-1.json"), err, "alice was not recorded apart")
        rc, out, err = self.run_cmd(["retry"], self.config())
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))


if __name__ == "__main__":
    unittest.main()
