"""The durable queue through the command: `remove` (write-ahead), `retry`
and `queue` against the HTTPS simulator. Crash safety (kill -9 during a
drain), a full disk, concurrent removes and retries, outages, 429 storms,
hung servers, deadlines, dead letters, hostile entries and deduplication.

Invariant checked throughout: a member that the simulator still has is
always waiting as a valid pending entry; nothing is ever lost."""

import json
import os
import random
import shutil
import signal
import stat
import subprocess
import time
import unittest

from common import SimTestCase, pslib, shim_env

# under a TEST_WRAPPER (valgrind) a process starts and loads its
# configuration several times slower: deadlines and bounds scale
WRAPPED = 3 if os.environ.get("TEST_WRAPPER") else 1

# A TCP port where nothing listens: connection refused at once.
DEAD_URL = "https://127.0.0.1:1/v1"
ADMIN = {"id": "adm0acme", "email": "root@example.com", "name": "Root Admin", "role": "admin"}


def entry_json(login, organization, id_, first_attempt=None, **kw):
    e = {"version": 1, "login": login, "organization": organization, "id": id_,
         "delete_passwords": True, "delete_service_tokens": True,
         "first_attempt": int(time.time()) if first_attempt is None else first_attempt,
         "last_attempt": 0, "attempts": 0, "last_error": ""}
    e.update(kw)
    return e


def write_file(path, data, mode=0o600):
    if isinstance(data, str):
        data = data.encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def members_with(ids, org="acme"):
    return {org: [dict(ADMIN)] + [{"id": i, "email": i + "@example.com", "name": i,
                                   "role": "member"} for i in ids]}


def have_unshare():
    if os.geteuid() != 0:
        return "needs root (mount namespace and tmpfs)"
    if not shutil.which("unshare"):
        return "unshare(1) is not installed"
    p = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if p.returncode != 0:
        return "unshare -m does not work here: " + p.stderr.decode(errors="replace").strip()
    return None


class QueueTestCase(SimTestCase):

    def tearDown(self):
        # SimTestCase.tearDown reads every file of the queue: a fifo would
        # block it and a dangling symlink would fail it; they are ours.
        for root, dirs, files in os.walk(self.qdir()):
            for name in files + dirs:
                p = os.path.join(root, name)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                if stat.S_ISLNK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
                    os.unlink(p)
        super().tearDown()

    def qdir(self, sub=""):
        return os.path.join(self.dir, "queue", sub)

    def queue_json(self, cfg):
        rc, out, err = self.run_cmd(["--json", "queue"], cfg)
        self.assertEqual(rc, 0, err)
        return json.loads(out)

    def retry_json(self, cfg, extra=(), timeout=120):
        rc, out, err = self.run_cmd(["--json", "retry"] + list(extra), cfg, timeout=timeout)
        try:
            summary = json.loads(out)
        except ValueError:
            self.fail("retry --json printed no JSON (rc %d): %r %r" % (rc, out, err))
        return rc, summary, err

    def assert_no_signal(self, rc, what):
        self.assertGreaterEqual(rc, 0, "%s died from signal %d" % (what, -rc))

    def popen(self, args, cfg, stdout=subprocess.PIPE):
        env = dict(os.environ)
        env.update(shim_env(self.syslog))
        return subprocess.Popen([pslib.command_path(), "--config", cfg] + list(args),
                                stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=subprocess.PIPE, env=env)


# ====================================================================== crash

class CrashSafetyTest(QueueTestCase):

    N = 30
    RUNS = 24

    def test_kill_9_during_retry_loses_nothing(self):
        ids = ["crash%02d" % i for i in range(self.N)]
        logins = ["cu%02d" % i for i in range(self.N)]
        users = [{"login": l, "id": i} for l, i in zip(logins, ids)]
        # a member that is only in a stray temp file: it must never be sent
        users.append({"login": "ghost", "id": "ghost1"})
        members = members_with(ids + ["ghost1"])
        self.sim.set_members(members)
        dead_cfg = self.config(name="dead.conf", url=DEAD_URL, retries=1, connect_timeout=1,
                               users=users)
        # at most 19 requests a second: the drain takes a few seconds, so the
        # kills (0 to 300 ms) land in its first burst and in its waits
        cfg = self.config(users=users, rate_limit=20, retries=1, timeout=3)
        if self.sim.proc is None:
            self.skipTest("simulator not running")

        # the stray temp file: valid JSON of a valid entry, but a temp name
        stray = os.path.join(self.qdir(), ".tmp-%s-abcdef" % pslib.entry_name("ghost", "acme",
                                                                         "ghost1")[:16])
        write_file(stray, json.dumps(entry_json("ghost", "acme", "ghost1")))

        # two members keep failing with 503 during the runs: retry rewrites
        # their entries (temp file + rename), so kills land inside writes too
        failing = {ids[7], ids[19]}
        seed = int(os.environ.get("PS_TEST_SEED", random.randrange(1 << 30)))
        rng = random.Random(seed)
        print("seed", seed)
        mid_drain = killed = 0

        for run in range(self.RUNS):
            self.sim.set_members(members)
            self.sim.reset()
            self.sim.set_faults(["status:503;count=-1;match=/%s" % i for i in sorted(failing)])
            rc, out, err = self.run_cmd(["remove"] + logins, dead_cfg)
            self.assertEqual(rc, 75, err)
            self.assertEqual(len(self.queue_entries()), self.N, "run %d: remove queued all" % run)

            delay = rng.uniform(0, 0.3)
            p = self.popen(["retry"], cfg, stdout=subprocess.DEVNULL)
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=30)
            if p.returncode == -signal.SIGKILL:
                killed += 1
            else:
                self.assertIn(p.returncode, (0, 75), "run %d: retry exit status" % run)

            # the queue first (the process is gone: it is stable now) ...
            files = self.queue_entries()
            q = self.queue_json(cfg)
            self.assertEqual(len(q), len(files),
                             "run %d: queue lists %d entries, %d entry files: %r"
                             % (run, len(q), len(files), q))
            self.assertEqual(self.queue_entries("invalid"), [],
                             "run %d: a kill produced an invalid entry" % run)
            self.assertEqual(os.listdir(self.qdir("invalid")), [])
            self.assertEqual(self.queue_entries("dead"), [])
            queued = {}
            for e in q:
                self.assertEqual(e["state"], "pending")
                self.assertNotEqual(e["login"], "ghost", "a temp file was listed as an entry")
                self.assertEqual(pslib.entry_name(e["login"], e["organization"], e["id"]) in files,
                                 True, e)
                queued[e["id"]] = e
            # ... then the simulator (a request still in flight can only
            # remove more members, never fewer)
            self.sim.wait_idle(10)
            still = set(self.sim.members_of("acme"))
            for i in ids:
                if i in still:
                    self.assertIn(i, queued, "run %d (kill after %.0f ms): member %s neither "
                                  "removed nor queued: LOST" % (run, delay * 1000, i))
            for i in failing:
                self.assertIn(i, still)
                self.assertIn(i, queued)
            self.assertIn("ghost1", still, "the temp file was sent")
            self.assertTrue(os.path.exists(stray), "the stray temp file was touched")
            removed_now = len([i for i in ids if i not in still])
            if 0 < removed_now < self.N - len(failing):
                mid_drain += 1
            self.assertNotIn("ghost1", [r["path"].rsplit("/", 1)[-1] for r in self.deletes()])

        print("runs killed: %d, killed in mid-drain: %d" % (killed, mid_drain))
        self.assertGreaterEqual(mid_drain, 3, "the kills did not land during the drain: "
                                "the test proves little (killed %d of %d)" % (killed, self.RUNS))

        # final clean retry: everything goes, nothing is left
        self.sim.set_faults([])
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.queue_entries(), [])
        self.assertEqual(self.queue_json(cfg), [])
        self.assertEqual(sorted(self.sim.members_of("acme")), ["adm0acme", "ghost1"])
        self.assertTrue(os.path.exists(stray))
        # leftover temp files from killed writes are never entries either
        for name in os.listdir(self.qdir()):
            self.assertTrue(name in ("dead", "invalid") or name.startswith("."), name)


    def test_kill_9_during_remove_loses_nothing(self):
        """`remove` killed at any moment: before, during or after its
        write-ahead, while a DELETE is in flight, while it settles an entry.
        A member the simulator still has is always a valid pending entry."""
        n = 8
        ids = ["kr%02d" % i for i in range(n)]
        logins = ["ku%02d" % i for i in range(n)]
        users = [{"login": l, "id": i} for l, i in zip(logins, ids)]
        members = members_with(ids)
        # a rate limit high enough that pacing does not hide the removals
        # from the kills
        cfg = self.config(users=users, retries=1, timeout=3, rate_limit=200)
        seed = int(os.environ.get("PS_TEST_SEED", random.randrange(1 << 30)))
        rng = random.Random(seed)
        print("seed", seed)
        early = mid = failing_sent = 0
        for run in range(self.RUNS):
            for name in self.queue_entries():
                os.unlink(os.path.join(self.qdir(), name))
            self.sim.set_members(members)
            self.sim.reset()
            # two members fail (503): once their DELETE is sent, only the
            # write-ahead entry remembers them; every other answer takes
            # 20 ms, so a kill lands inside the removals
            self.sim.set_faults(["status:503;count=-1;match=/%s" % ids[2],
                                 "status:503;count=-1;match=/%s" % ids[5],
                                 "delay:0.02;count=-1"])
            delay = rng.uniform(0, 0.25)
            p = self.popen(["remove"] + logins, cfg, stdout=subprocess.DEVNULL)
            time.sleep(delay)
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=30)
            if p.returncode != -signal.SIGKILL:
                self.assertEqual(p.returncode, 75, "run %d: remove exit status" % run)
            files = self.queue_entries()
            # (a kill before remove opened the queue leaves no invalid/ yet)
            if os.path.isdir(self.qdir("invalid")):
                self.assertEqual(os.listdir(self.qdir("invalid")), [],
                                 "run %d: a kill produced an invalid entry" % run)
            q = self.queue_json(cfg)
            self.assertEqual(len(q), len(files), q)
            queued = {e["id"] for e in q}
            self.sim.wait_idle(10)
            still = set(self.sim.members_of("acme"))
            # every request that named a member: GET first, then DELETE
            named = self.sim.requests()
            for i in ids:
                if i in still and i not in queued:
                    # not yet reached: remove never got to this login
                    self.assertFalse(any(r["target"].split("?")[0].endswith("/" + i)
                                         for r in named),
                                     "run %d (kill after %.0f ms): member %s was sent, "
                                     "neither removed nor queued: LOST" % (run, delay * 1000, i))
            sent = {r["target"].split("?")[0].rsplit("/", 1)[-1] for r in named}
            for i in (ids[2], ids[5]):
                self.assertIn(i, still)
                if i in sent:
                    failing_sent += 1
                    self.assertIn(i, queued, "run %d: %s answered 503 and is not queued: LOST"
                                  % (run, i))
            gone = n - len(still & set(ids))
            if gone == 0:
                early += 1
            elif gone < n:
                mid += 1
            # whatever is queued, retry finishes it
            self.sim.set_faults([])
            rc, out, err = self.run_cmd(["retry"], cfg)
            self.assertEqual(rc, 0, out + err)
            self.assertEqual(self.queue_entries(), [])
            for i in queued:
                self.assertNotIn(i, self.sim.members_of("acme"))
        print("runs with nothing removed yet: %d, killed mid-way: %d, failing members sent: "
              "%d" % (early, mid, failing_sent))
        self.assertGreater(failing_sent, 0, "no failing member was ever sent before the kill")
        self.assertGreaterEqual(mid, 3, "the kills did not land between removals: the test "
                                "proves little")


# ====================================================================== disk

@unittest.skipIf(have_unshare(), have_unshare())
class FullDiskTest(QueueTestCase):

    def run_full(self, cfg, args):
        """Runs the command with the queue dir on a 64 KiB tmpfs that is full."""
        q = self.qdir()
        script = ("set -e; mount --make-rprivate /; "
                  "mount -t tmpfs -o size=64k,mode=0700 pstest \"$Q\"; "
                  "mkdir -m 0700 \"$Q/dead\" \"$Q/invalid\"; "
                  "dd if=/dev/zero of=\"$Q/.fill\" bs=4096 2>/dev/null || true; "
                  "dd if=/dev/zero of=\"$Q/.fill2\" bs=1 2>/dev/null || true; "
                  "df -k \"$Q\" >&2; "
                  "set +e; \"$CMD\" --config \"$CFG\" \"$@\"; rc=$?; "
                  "ls -a \"$Q\" >&2; exit $rc")
        env = shim_env(self.syslog)
        env.update({"Q": q, "CMD": pslib.command_path(), "CFG": cfg})
        full = dict(os.environ)
        full.update(env)
        p = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh"] + list(args),
                           capture_output=True, text=True, env=full, timeout=60)
        self.outputs.append(p.stdout + p.stderr)
        return p.returncode, p.stdout, p.stderr

    def test_full_disk_simulator_down_fails_loudly(self):
        cfg = self.config(url=DEAD_URL, retries=1, connect_timeout=1)
        rc, out, err = self.run_full(cfg, ["remove", "alice"])
        self.assertNotIn(rc, (0, 75), "a request that could not be kept must not look "
                         "queued or done: rc %d\n%s%s" % (rc, out, err))
        self.assertGreater(rc, 0)
        self.assertRegex(err, r"No space left on device|ENOSPC|disk full",
                         "no clear message on stderr:\n" + err)
        self.assertNotIn("queued", (out + err).lower().replace("not queued", ""),
                         "claims queued:\n" + out + err)
        errs = [l for l in self.syslog_lines() if l.startswith("authpriv.err")]
        self.assertTrue(errs, "no authpriv.err line: %r" % self.syslog_lines())
        self.assertFalse(self.audit("queued"), self.audit("queued"))
        self.assertEqual(self.queue_entries(), [], "nothing was kept, none can be listed")

    def test_full_disk_simulator_up_still_removes(self):
        cfg = self.config()
        rc, out, err = self.run_full(cfg, ["remove", "alice"])
        self.assertEqual(rc, 0, out + err)
        self.assertRegex(err, r"(?i)cannot record|could not record|not recorded",
                         "does not say that it could not record:\n" + err)
        self.assertRegex(err, r"No space left on device")
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"), "never lost: sent anyway")
        self.assertEqual([r["status"] for r in self.deletes()], [204])
        self.assertEqual(len(self.audit("removed")), 1)


# ====================================================================== concurrency

class ConcurrencyTest(QueueTestCase):

    def test_8_removes_2_retries_never_send_one_twice_at_once(self):
        ids = ["conc%d" % i for i in range(6)]
        logins = ["cc%d" % i for i in range(6)]
        users = [{"login": l, "id": i} for l, i in zip(logins, ids)]
        self.sim.set_members(members_with(ids))
        self.sim.reset()
        # the first DELETEs fail (so entries get queued), every DELETE takes
        # a while (so that the processes overlap)
        self.sim.set_faults(["status:503;count=5;method=DELETE",
                             "delay:0.15;count=-1;method=DELETE"])
        cfg = self.config(users=users, retries=1, rate_limit=50, timeout=5)
        procs = []
        for k in range(8):
            mine = [logins[(k + j) % 6] for j in range(4)]
            procs.append(("remove %s" % " ".join(mine), self.popen(["remove"] + mine, cfg)))
            if k in (2, 5):
                procs.append(("retry", self.popen(["retry"], cfg)))
        for what, p in procs:
            out, err = p.communicate(timeout=120)
            self.outputs.append(out.decode(errors="replace") + err.decode(errors="replace"))
            self.assert_no_signal(p.returncode, what)
            self.assertIn(p.returncode, (0, 75), "%s: %s" % (what, err.decode(errors="replace")))
        self.sim.set_faults([])
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.queue_entries(), [])
        self.assertEqual(self.queue_json(cfg), [])
        self.assertEqual(self.sim.members_of("acme"), ["adm0acme"], "every member deleted")
        st = self.sim.stats()
        mx = st["max_inflight_deletes"]
        for i in ids:
            key = "acme/" + i
            self.assertIn(key, mx)
            self.assertEqual(mx[key], 1, "member %s: %d DELETEs in flight at once (counts: %r)"
                             % (i, mx[key], mx))
        ok = [r for r in self.deletes() if r["status"] == 204]
        self.assertEqual(sorted(r["path"].rsplit("/", 1)[-1] for r in ok), sorted(ids))

    def test_remove_while_retry_is_sending_the_same_entry(self):
        """The deterministic form of the race above: `retry` holds alice's
        entry (its DELETE is slow); `remove alice` meanwhile must not send a
        second DELETE for her while the first is in flight."""
        down = self.config(name="down.conf", url=DEAD_URL, retries=1, connect_timeout=1)
        self.assertEqual(self.run_cmd(["remove", "alice"], down)[0], 75)
        cfg = self.config(retries=1, timeout=10)
        self.sim.set_faults(["delay:1.5;count=1;method=DELETE"])
        p = self.popen(["retry"], cfg)
        deadline = time.monotonic() + 10
        while self.sim.stats()["inflight"] == 0:
            self.assertLess(time.monotonic(), deadline, "retry never sent its DELETE")
            time.sleep(0.02)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        pout, perr = p.communicate(timeout=60)
        self.outputs.append((pout + perr).decode(errors="replace"))
        self.assertEqual(rc, 0, err)
        self.assertEqual(p.returncode, 0, perr)
        mx = self.sim.stats()["max_inflight_deletes"]
        self.assertEqual(mx.get("acme/d4xkq1abc"), 1,
                         "two DELETEs for alice in flight at once: %r" % mx)
        self.assertEqual(self.queue_entries(), [])


# ====================================================================== outages

class OutageTest(QueueTestCase):

    def test_down_queued_then_up_drained(self):
        down = self.config(name="down.conf", url=DEAD_URL, retries=2, connect_timeout=1)
        rc, out, err = self.run_cmd(["remove", "alice"], down)
        self.assertEqual(rc, 75, err)
        self.assertIn("queued", err)
        self.assertEqual(self.queue_entries(), [pslib.entry_name("alice", "acme", "d4xkq1abc")])
        cfg = self.config()
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(self.queue_entries(), [])
        self.assertNotIn("d4xkq1abc", self.sim.members_of("acme"))
        self.assertEqual([r["status"] for r in self.deletes()], [204])
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("empty", out)

    def queue_many(self, n, prefix):
        ids = ["%s%02d" % (prefix, i) for i in range(n)]
        users = [{"login": "l" + i, "id": i} for i in ids]
        self.sim.set_members(members_with(ids))
        self.sim.reset()
        down = self.config(name="down.conf", url=DEAD_URL, retries=1, connect_timeout=1,
                           users=users)
        rc, out, err = self.run_cmd(["remove"] + [u["login"] for u in users], down)
        self.assertEqual(rc, 75, err)
        self.assertEqual(len(self.queue_entries()), n)
        return ids, users

    def test_429_storm_slows_down_and_loses_nothing(self):
        ids, users = self.queue_many(40, "storm")
        cfg = self.config(users=users, rate_limit=50, retries=1)
        self.sim.configure(rate_limit=10)
        try:
            t0 = time.monotonic()
            rc, s, err = self.retry_json(cfg)
            took = time.monotonic() - t0
        finally:
            self.sim.configure(rate_limit=0)
        self.assertEqual(rc, 0, (s, err))
        self.assertGreater(s["http_429"], 0, s)
        self.assertEqual(s["removed"], 40, s)
        self.assertEqual(s["pending"], 0, s)
        self.assertEqual(self.queue_entries(), [])
        self.assertEqual(self.sim.members_of("acme"), ["adm0acme"])
        self.assertGreater(took, 2.5, "40 requests at 10/s take about 4 s")
        self.assertLess(took, 60)
        st = self.sim.stats()
        self.assertLess(st["rate_limited"], 40, "did not slow down: %r" % st)
        self.assertEqual(s["connections"], 1, "one connection for the drain: %r" % s)

    def test_rate_below_server_limit_no_429(self):
        ids, users = self.queue_many(40, "calm")
        cfg = self.config(users=users, rate_limit=8, retries=1)
        self.sim.configure(rate_limit=10)
        try:
            rc, s, err = self.retry_json(cfg)
        finally:
            self.sim.configure(rate_limit=0)
        self.assertEqual(rc, 0, (s, err))
        self.assertEqual(s["http_429"], 0, s)
        self.assertEqual(self.sim.stats()["rate_limited"], 0)
        self.assertEqual(s["removed"], 40)
        self.assertEqual(self.queue_entries(), [])

    def test_hung_server_bounded(self):
        ids, users = self.queue_many(4, "hung")
        self.sim.set_faults(["delay:60;count=-1"])
        timeout = 1
        cfg = self.config(users=users, timeout=timeout, connect_timeout=1, retries=1)
        t0 = time.monotonic()
        rc, s, err = self.retry_json(cfg, timeout=90)
        took = time.monotonic() - t0
        self.sim.set_faults([])
        bound = len(ids) * (timeout + 1) + 5
        self.assertLess(took, bound, "retry against a hung server took %.1f s" % took)
        self.assertEqual(rc, 75, (s, err))
        self.assertEqual(len(self.queue_entries()), 4, "entries stay queued")
        self.assertEqual(s["removed"], 0)
        q = self.queue_json(cfg)
        self.assertEqual(len(q), 4)
        tried = [e for e in q if e["attempts"] >= 2]
        self.assertTrue(tried, "the timed-out attempt is recorded: %r" % q)
        self.assertTrue(all(e["last_error"] for e in tried), q)

    def test_deadline_stops_and_leaves_the_rest(self):
        ids, users = self.queue_many(20, "dl")
        cfg = self.config(users=users, rate_limit=5, retries=1)
        t0 = time.monotonic()
        rc, s, err = self.retry_json(cfg, ["--deadline", str(WRAPPED)])
        took = time.monotonic() - t0
        self.assertLess(took, 3.5 * WRAPPED, "--deadline %d took %.1f s" % (WRAPPED, took))
        self.assertEqual(rc, 75, (s, err))
        self.assertIn("deadline", s.get("stopped", ""), s)
        left = self.queue_entries()
        removed = [i for i in ids if i not in self.sim.members_of("acme")]
        self.assertGreater(len(removed), 0, "nothing done before the deadline")
        self.assertGreater(len(left), 0, "the deadline did not stop it")
        self.assertEqual(len(removed) + len(left), 20, (removed, left))
        self.assertEqual(s["pending"], len(left), s)
        # what is left is exactly what is still a member
        still = set(self.sim.members_of("acme")) - {"adm0acme"}
        self.assertEqual({e["id"] for e in self.queue_json(cfg)}, still)


# ====================================================================== listing

class QueueListingTest(QueueTestCase):

    def test_pending_and_dead_letters(self):
        users = [{"login": "alice", "id": "d4xkq1abc"},
                 {"login": "bob", "id": "x9z8", "organization": "acme-eu"}]
        down = self.config(name="down.conf", url=DEAD_URL, retries=2, connect_timeout=1,
                           users=users)
        t_before = int(time.time())
        rc, out, err = self.run_cmd(["remove", "alice", "bob"], down)
        self.assertEqual(rc, 75, err)
        alice_name = pslib.entry_name("alice", "acme", "d4xkq1abc")
        bob_name = pslib.entry_name("bob", "acme-eu", "x9z8")
        self.assertEqual(sorted(self.queue_entries()), sorted([alice_name, bob_name]),
                         "entry names are FNV-1a keys of login/organization/id")
        # bob's request is 40 days old (rewritten by hand, still valid)
        path = os.path.join(self.qdir(), bob_name)
        with open(path, encoding="utf-8") as f:
            e = json.load(f)
        self.assertEqual(os.stat(path).st_mode & 0o7777, 0o600)
        e["first_attempt"] = e["recorded"] = int(time.time()) - 40 * 86400
        tmp = os.path.join(self.qdir(), ".tmp-test")
        write_file(tmp, json.dumps(e))
        os.rename(tmp, path)

        q = self.queue_json(down)
        self.assertEqual([x["login"] for x in q], ["bob", "alice"], "oldest first")
        for x in q:
            self.assertEqual(x["state"], "pending")
            for k in ("login", "organization", "id", "attempts", "first_attempt",
                      "last_attempt", "last_error"):
                self.assertIn(k, x)

        # retry while the API is still down: alice stays pending, bob is too
        # old; a dead letter waits for a person, so retry fails (77)
        rc, out, err = self.run_cmd(["retry"], down, timeout=60)
        self.assertEqual(rc, 77, out + err)
        self.assertEqual(self.queue_entries(), [alice_name])
        self.assertEqual(self.queue_entries("dead"), [bob_name])
        dl = [l for l in self.syslog_lines() if "dead-letter" in l]
        self.assertEqual(len(dl), 1, self.syslog_lines())
        self.assertTrue(dl[0].startswith("authpriv.alert"), dl[0])
        self.assertIn("login=bob", dl[0])
        self.assertIn("organization=acme-eu", dl[0])

        q = {x["login"]: x for x in self.queue_json(down)}
        self.assertEqual(q["alice"]["state"], "pending")
        self.assertEqual(q["bob"]["state"], "dead")
        a = q["alice"]
        self.assertEqual((a["organization"], a["id"]), ("acme", "d4xkq1abc"))
        self.assertEqual(a["attempts"], 3, "2 by remove, 1 by retry")
        self.assertRegex(a["first_attempt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertRegex(a["last_attempt"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertGreaterEqual(time.mktime(time.strptime(a["first_attempt"],
                                                          "%Y-%m-%dT%H:%M:%SZ"))
                                - time.timezone, t_before - 1)
        self.assertTrue(a["last_error"], a)
        self.assertNotIn("SECRET", a["last_error"])
        b = q["bob"]
        self.assertEqual((b["organization"], b["id"]), ("acme-eu", "x9z8"))
        self.assertGreater(b["age_seconds"], 39 * 86400)

        rc, out, err = self.run_cmd(["queue"], down)
        self.assertEqual(rc, 0, err)
        rows = {l.split()[2]: l.split() for l in out.splitlines()
                if l.split() and l.split()[0] in ("pending", "dead")}
        self.assertEqual(rows["alice"][0], "pending", out)
        self.assertEqual(rows["bob"][0], "dead", out)
        self.assertIn("acme-eu", rows["bob"])
        self.assertIn("1 pending, 0 held, 1 dead", out)

        # the API comes back: only the pending one is sent, the dead letter stays
        cfg = self.config(users=users)
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 77, out + err)
        self.assertEqual([r["path"] for r in self.deletes()],
                         ["/v1/organizations/acme/members/d4xkq1abc"])
        self.assertEqual(self.queue_entries(), [])
        self.assertEqual(self.queue_entries("dead"), [bob_name])
        self.assertIn("x9z8", self.sim.members_of("acme-eu"))

    def test_same_request_twice_is_one_entry(self):
        down = self.config(name="down.conf", url=DEAD_URL, retries=1, connect_timeout=1)
        rc, out, err = self.run_cmd(["remove", "alice"], down)
        self.assertEqual(rc, 75, err)
        first = self.queue_json(down)
        time.sleep(1.1)
        rc, out, err = self.run_cmd(["remove", "alice", "alice"], down)
        self.assertEqual(rc, 75, err)
        self.assertEqual(self.queue_entries(), [pslib.entry_name("alice", "acme", "d4xkq1abc")])
        q = self.queue_json(down)
        self.assertEqual(len(q), 1, q)
        self.assertEqual(q[0]["first_attempt"], first[0]["first_attempt"],
                         "the first attempt is kept")
        cfg = self.config()
        self.assertEqual(self.run_cmd(["retry"], cfg)[0], 0)
        self.assertEqual(len(self.deletes()), 1)
        self.assertEqual(self.queue_entries(), [])

    def test_requeue_keeps_attempt_count(self):
        """remove.c says it keeps "the entry's history (first attempt,
        attempts)": a second remove of a queued login adds to the count."""
        down = self.config(name="down.conf", url=DEAD_URL, retries=1, connect_timeout=1)
        for _ in range(3):
            rc, out, err = self.run_cmd(["remove", "alice"], down)
            self.assertEqual(rc, 75, err)
        q = self.queue_json(down)
        self.assertEqual(len(q), 1, q)
        self.assertEqual(q[0]["attempts"], 3, "attempts of earlier runs were forgotten: %r" % q)


# ====================================================================== hostile

class UntrustedEntriesTest(QueueTestCase):

    def test_bad_entries_moved_aside_never_sent(self):
        users = [{"login": "alice", "id": "d4xkq1abc"},
                 {"login": "bob", "id": "x9z8", "organization": "acme-eu"},
                 {"login": "carol", "id": "c4rol"}]
        down = self.config(name="down.conf", url=DEAD_URL, retries=1, connect_timeout=1,
                           users=users)
        cfg = self.config(users=users)
        # alice: the valid entry that must still be drained
        self.assertEqual(self.run_cmd(["remove", "alice"], down)[0], 75)
        alice = pslib.entry_name("alice", "acme", "d4xkq1abc")
        q = self.qdir()
        with open(os.path.join(q, alice), encoding="utf-8") as f:
            valid_text = f.read()
        carol_ok = json.dumps(entry_json("carol", "acme", "c4rol"))
        bad = {}

        def put(name, data, mode=0o600):
            write_file(os.path.join(q, name), data, mode)
            bad[name] = data

        put("1000000000000001.json", "{not json")
        put("1000000000000002.json", valid_text[:len(valid_text) // 2])
        put("1000000000000003.json",
            json.dumps(entry_json("carol", "acme", "c4rol", last_error="x" * 5000)))
        put("1000000000000004.json", json.dumps(entry_json("carol", "acme", "../../x")))
        put("1000000000000005.json", json.dumps(entry_json("ca\nrol", "acme", "c4rol")))
        put(pslib.entry_name("carol", "acme", "c4rol"),
            json.dumps(dict(entry_json("carol", "acme", "c4rol"), extra=1)))
        put("1000000000000007.json", carol_ok, mode=0o644)
        put("1000000000000008.json", carol_ok)                     # name does not match
        put("1000000000000009.json", "[1, 2]")
        put("100000000000000a.json", carol_ok + " trailing")
        put("100000000000000b.json", json.dumps(entry_json("carol", "acme", "..")))
        put("100000000000000c.json", json.dumps(entry_json("carol", "ac/me", "c4rol")))
        put("100000000000000d.json", "")
        put("100000000000000e.json", json.dumps(entry_json("carol", "acme", "c4rol",
                                                           attempts="7")))
        # a symlink to the valid entry, and one named like bob's entry
        # pointing at a valid bob entry outside the queue
        os.symlink(alice, os.path.join(q, "100000000000000f.json"))
        bad["100000000000000f.json"] = "symlink"
        outside = os.path.join(self.dir, "bob-outside.json")
        write_file(outside, json.dumps(entry_json("bob", "acme-eu", "x9z8")))
        bob = pslib.entry_name("bob", "acme-eu", "x9z8")
        os.symlink(outside, os.path.join(q, bob))
        bad[bob] = "symlink"
        os.mkfifo(os.path.join(q, "1000000000000010.json"), 0o600)
        bad["1000000000000010.json"] = "fifo"
        put("not-an-entry.txt", "hello")

        rc, s, err = self.retry_json(cfg, timeout=60)
        self.assert_no_signal(rc, "retry")
        self.assertIn(rc, (0, 75, 1), (s, err))
        self.assertEqual(s["removed"], 1, s)
        self.assertEqual(s["invalid"], len(bad), s)
        # only alice was sent
        self.assertEqual([r["path"] for r in self.deletes()],
                         ["/v1/organizations/acme/members/d4xkq1abc"])
        self.assertIn("c4rol", self.sim.members_of("acme"))
        self.assertIn("x9z8", self.sim.members_of("acme-eu"))
        self.assertEqual(self.queue_entries(), [])
        left = sorted(n for n in os.listdir(q) if n not in ("dead", "invalid"))
        self.assertEqual(left, [], "bad files left in the queue: %r" % left)
        moved = set(os.listdir(self.qdir("invalid")))
        self.assertEqual(moved, set(bad), "moved aside: %r" % moved)
        self.assertTrue(os.path.islink(os.path.join(q, "invalid", bob)),
                        "the symlink itself is moved, not followed")
        self.assertTrue(os.path.exists(outside))
        text = err + "\n".join(self.syslog_lines())
        for name in bad:
            self.assertIn(name, text, "no error names %s" % name)
        errs = [l for l in self.syslog_lines() if l.startswith("authpriv.err")
                and "not valid" in l]
        self.assertGreaterEqual(len(errs), len(bad), self.syslog_lines())
        # the newline in a login never reaches the log raw
        for l in self.syslog_lines():
            self.assertNotIn("ca\nrol", l)
        # a second retry finds nothing
        rc, s, err = self.retry_json(cfg)
        self.assertEqual(rc, 0, (s, err))
        self.assertEqual((s["total"], s["invalid"]), (0, 0), s)

    def test_queue_command_survives_bad_entries(self):
        cfg = self.config()
        write_file(os.path.join(self.qdir(), "2000000000000001.json"), "\x00\x01garbage")
        os.mkfifo(os.path.join(self.qdir(), "2000000000000002.json"), 0o600)
        rc, out, err = self.run_cmd(["--json", "queue"], cfg, timeout=30)
        self.assert_no_signal(rc, "queue")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out), [])
        self.assertEqual(self.deletes(), [])


if __name__ == "__main__":
    unittest.main()
