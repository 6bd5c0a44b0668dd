#!/usr/bin/env python3
"""A fleet of hosts removing the same people against one organization-wide
rate limit.

    python3 bench/fleet.py --build BUILD_DIR [--hosts 1000] [--people 1]
                           [--spread SECONDS] [--scale 10] [--limit 600] [--json FILE]

Every simulated host has its own configuration (its own service token id:
hostNNNN, one "id_prefix" credential of the API simulator), its own spool
and unresolved directory, its own syslog file, and runs the product as a
host runs it, each step a process of its own:
  - the hook: `planetscale-deprovision remove --hook -- LOGIN` for each
    person, one after the other (userdel's hook, as a configuration
    management run that deletes the accounts calls it; hook_deadline 5 s),
    every host starting at once; with --batch, one `remove --hook --
    LOGIN...` of every person (deluser.local, or configuration management
    calling the command once);
  - the retry timer: `planetscale-deprovision retry --deadline 240`, first at
    a random phase within the timer's period (hosts' timers are not in
    step), then every minute plus up to 30 s (OnUnitActiveSec=1min,
    RandomizedDelaySec=30); never two at once on a host; until the host's
    spool is empty (a retry of an empty spool sends nothing).
The sender is off (sender.socket = ""): each process sends its own requests.

Time is scaled (--scale S): the simulator's minute for the organization's
limit lasts 60/S real seconds and every time of the product is divided by S
(api.spread, api.rate_limit multiplied, the deadlines, the timer), so the
ratio of the limit to the load is that of the unscaled fleet. Figures are
reported in unscaled time. Limits of the model: all hosts share this
machine's CPUs, so starting 1,000 processes "at once" takes real time (the
hook window below says how much); times inside the product that are not
configurable are not scaled: the backoff without Retry-After (Retry-After
is always given here), the 10 minute probe cache (a process lives far less),
the hooks' minute without waiting after the API did not answer one (it
lasts 10 minutes at x10: hooks then leave more to the timer), and
Retry-After itself, whole seconds, so at least 10 unscaled seconds at x10.

Reported: DELETEs answered 204 per person (must be exactly 1), entries lost
(a host and person with neither a confirmed removal in that host's audit log
nor an entry in its spool: must be 0), requests per host (mean, max), 429s,
the organization's peak requests per minute (offered and admitted), the time
until every host's spool is empty, and how long the hooks took.
Standard library only (plus tests/pslib.py and the simulator).
"""

import argparse
import collections
import heapq
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(SRC, "tests"))
import pslib  # noqa: E402

SECRET = "fleet-secret-0123456789"
ORG = "acme"
TIMER_PERIOD = 60.0      # planetscale-deprovision-retry.timer: OnUnitActiveSec=1min
TIMER_RANDOM = 30.0      # RandomizedDelaySec=30
RETRY_DEADLINE = 240.0   # planetscale-deprovision-retry.service: retry --deadline 240
HOOK_DEADLINE = 5.0      # the userdel hook: remove --hook, hook_deadline's default
RATE_LIMIT = 10.0        # api.rate_limit's default, per host
FILLER_MEMBERS = 200     # other members of the organization


def person_id(i):
    return "person%03d" % i


def login(i):
    return "p%03d" % i


class Host:
    __slots__ = ("n", "dir", "cfg", "qdir", "env", "next_person", "hook", "retry",
                 "hook_started", "hook_times", "done_at", "retries", "codes", "due")

    def __init__(self, n, root):
        self.n = n
        self.dir = os.path.join(root, "h%04d" % n)
        self.cfg = os.path.join(self.dir, "deprovision.conf")
        self.qdir = os.path.join(self.dir, "queue")
        self.next_person = 0
        self.hook = None          # pid
        self.retry = None         # pid
        self.hook_started = None
        self.hook_times = []      # seconds each hook took (real)
        self.done_at = None       # real seconds since the start
        self.retries = 0
        self.codes = collections.Counter()
        self.due = {}             # person's login -> not_before (api.spread), wall time

    def read_due(self):
        """Notes the not_before of the entries the hook left (api.spread)."""
        try:
            names = [n for n in os.listdir(self.qdir) if n.endswith(".json") and n[0] != "."]
        except FileNotFoundError:
            return
        for n in names:
            try:
                with open(os.path.join(self.qdir, n)) as f:
                    e = json.load(f)
            except (OSError, ValueError):
                continue
            if e.get("not_before") and e["login"] not in self.due:
                self.due[e["login"]] = e["not_before"]

    def spool_entries(self):
        try:
            live = [n for n in os.listdir(self.qdir) if n.endswith(".json") and n[0] != "."]
            dead = os.listdir(os.path.join(self.qdir, "dead"))
        except FileNotFoundError:
            return 0
        return len(live) + len(dead)


class Fleet:

    def __init__(self, build, hosts=1000, people=1, spread=0.0, scale=10.0, limit=600,
                 root=None, seed=None, verbose=False, max_minutes=None,
                 timer_period=TIMER_PERIOD, timer_random=TIMER_RANDOM, batch=False):
        self.cmd = os.path.join(build, "planetscale-deprovision")
        shim = os.path.join(build, "tests", ".libs", "libsyslogshim.so")
        if not os.access(self.cmd, os.X_OK):
            raise RuntimeError("%s is missing: build first (make all)" % self.cmd)
        if not os.path.exists(shim):
            raise RuntimeError("%s is missing: make tests/libsyslogshim.la" % shim)
        self.shim = shim
        self.nhosts, self.people, self.spread = hosts, people, float(spread)
        self.scale, self.limit = float(scale), int(limit)
        self.rng = random.Random(seed)
        self.timer_period, self.timer_random = float(timer_period), float(timer_random)
        self.batch = batch   # one `remove` of every person instead of one hook each
        self.verbose = verbose
        # give up (and report the hosts left) after this many unscaled minutes
        self.max_minutes = max_minutes or max(30.0, 3.0 * (self.spread / 60.0 + 10.0),
                                              3.0 * hosts * people * 2.2 / limit)
        base = root or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
        self.root = tempfile.mkdtemp(prefix="ps-fleet-", dir=base)
        self.sim = None
        self.hosts = []
        self.max_procs = 0

    # ------------------------------------------------------------ setup
    def setup(self):
        members = {ORG: [{"id": "admin0", "role": "admin"}] +
                   [{"id": person_id(i)} for i in range(self.people)]}
        self.sim = pslib.Simulator(members=members, tokens=[
            pslib.credential(id_prefix="host", secret=SECRET)])
        self.sim.start()
        self.sim.generate_members(ORG, FILLER_MEMBERS)
        self.sim.set_org_limit(self.limit, time_scale=self.scale, retry_after=True)
        users = "".join('  { login = "%s"; id = "%s"; },\n' % (login(i), person_id(i))
                        for i in range(self.people)).rstrip(",\n") + "\n"
        for n in range(self.nhosts):
            h = Host(n, self.root)
            os.makedirs(h.qdir, mode=0o700)
            os.chmod(h.dir, 0o700)
            text = ('organization = "%s";\n'
                    'api = {\n  url = "%s";\n  token_id = "host%04d";\n  token = "%s";\n'
                    '  ca_file = "%s";\n  rate_limit = %r;\n  spread = %r;\n};\n'
                    'users = (\n%s);\nqueue = { dir = "%s"; };\nsender = { socket = ""; };\n'
                    'hook_deadline = %r;\n'
                    % (ORG, self.sim.url, n, SECRET, self.sim.ca_file,
                       RATE_LIMIT * self.scale, self.spread / self.scale, users, h.qdir,
                       HOOK_DEADLINE / self.scale))
            fd = os.open(h.cfg, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD",)}
            if "ASAN_OPTIONS" in env or "PS_SANITIZER_RUNTIME" in env:
                env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") +
                                       ":verify_asan_link_order=0").lstrip(":")
            env.update({"PLANETSCALE_DEPROVISION_UNRESOLVED_DIR":
                        os.path.join(h.dir, "unresolved"),
                        "PS_SYSLOG_FILE": os.path.join(h.dir, "syslog"),
                        "LD_PRELOAD": self.shim})
            h.env = env
            self.hosts.append(h)
        self.sim.reset_stats()

    def close(self):
        if self.sim:
            self.sim.stop()
        shutil.rmtree(self.root, True)

    # ------------------------------------------------------------ the run
    def spawn(self, h, argv):
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            pid = os.posix_spawn(self.cmd, [self.cmd, "--config", h.cfg] + argv, h.env,
                                 file_actions=[(os.POSIX_SPAWN_DUP2, devnull, 0),
                                               (os.POSIX_SPAWN_DUP2, devnull, 1),
                                               (os.POSIX_SPAWN_DUP2, devnull, 2)])
        finally:
            os.close(devnull)
        return pid

    def run(self):
        s = self.scale
        events = []          # (real time, seq, kind, host)
        seq = 0
        procs = {}           # pid -> (host, kind)
        t0 = time.monotonic()
        self.t0_wall = time.time()
        for h in self.hosts:
            heapq.heappush(events, (0.0, seq, "hook", h.n))
            seq += 1
            heapq.heappush(events, (self.rng.uniform(0, self.timer_period / s), seq, "timer",
                                    h.n))
            seq += 1
        left = self.nhosts
        hook_argv = ["remove", "--hook", "--"]
        retry_argv = ["retry", "--deadline", "%g" % (RETRY_DEADLINE / s)]
        self.hook_window = [None, None]
        give_up = self.max_minutes * 60.0 / s
        while left > 0:
            now = time.monotonic() - t0
            if now > give_up:
                break
            while events and events[0][0] <= now:
                _, _, kind, n = heapq.heappop(events)
                h = self.hosts[n]
                if h.done_at is not None:
                    continue
                if kind == "hook":
                    h.hook_started = time.monotonic() - t0
                    who = ([login(i) for i in range(self.people)] if self.batch
                           else [login(h.next_person)])
                    h.hook = self.spawn(h, hook_argv + who)
                    procs[h.hook] = (h, "hook")
                    if self.hook_window[0] is None:
                        self.hook_window[0] = h.hook_started
                    h.next_person += len(who)
                    if h.next_person == self.people:
                        self.hook_window[1] = h.hook_started
                else:
                    if h.retry is None:
                        h.retry = self.spawn(h, retry_argv)
                        procs[h.retry] = (h, "retry")
                        h.retries += 1
                    heapq.heappush(events, (now + (self.timer_period + self.rng.uniform(
                        0, self.timer_random)) / s, seq, "timer", n))
                    seq += 1
            self.max_procs = max(self.max_procs, len(procs))
            reaped = False
            while procs:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                reaped = True
                entry = procs.pop(pid, None)
                if not entry:
                    continue
                h, kind = entry
                end = time.monotonic() - t0
                code = os.waitstatus_to_exitcode(status)
                h.codes["%s %d" % (kind, code)] += 1
                if kind == "hook":
                    h.hook = None
                    h.hook_times.append(end - h.hook_started)
                    if self.spread > 0:
                        h.read_due()
                    if h.next_person < self.people:
                        heapq.heappush(events, (end, seq, "hook", h.n))
                        seq += 1
                else:
                    h.retry = None
                if (h.next_person >= self.people and h.hook is None and h.done_at is None
                        and h.spool_entries() == 0):
                    h.done_at = end
                    left -= 1
            if not reaped:
                nxt = events[0][0] - (time.monotonic() - t0) if events else 0.05
                time.sleep(min(max(nxt, 0.0), 0.005))
        self.elapsed = time.monotonic() - t0
        # let what still runs finish (a host that gave up), then count
        for pid in list(procs):
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.sim.wait_idle(30)

    # ------------------------------------------------------------ figures
    def confirmed(self, h):
        """The people this host's audit log confirms (removed or absent)."""
        out = set()
        try:
            with open(os.path.join(h.dir, "syslog"), errors="replace") as f:
                for line in f:
                    if "outcome=removed " in line or "outcome=absent " in line:
                        for part in line.split():
                            if part.startswith("login="):
                                out.add(part[6:])
        except FileNotFoundError:
            pass
        return out

    def profile(self):
        """Requests and 429s per unscaled minute, from the simulator's log."""
        per_min = collections.Counter()
        limited = collections.Counter()
        self.first_request = {}
        with open(self.sim.log_path) as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                rec = json.loads(line)
                if rec.get("org") != ORG or not rec.get("org_counted"):
                    continue
                m = int((rec["t_start"] - self.t0_wall) * self.scale / 60.0)
                cred = rec.get("credential")
                if cred and cred not in self.first_request:
                    self.first_request[cred] = rec["t_start"]
                per_min[m] += 1
                if rec.get("status") == 429:
                    limited[m] += 1
        n = max(per_min) + 1 if per_min else 0
        return [[m, per_min[m], limited[m]] for m in range(n)]

    def report(self):
        st = self.sim.api_stats()
        o = st["orgs"].get(ORG, {})
        per_host = [st["credentials"].get("host%04d" % h.n, {}).get("requests", 0)
                    for h in self.hosts]
        deletes = st.get("deletes_204", {})
        d204 = [deletes.get("%s/%s" % (ORG, person_id(i)), 0) for i in range(self.people)]
        lost = 0
        left = 0
        for h in self.hosts:
            conf = self.confirmed(h)
            waiting = h.spool_entries()
            left += waiting
            lost += max(0, self.people - len(conf) - waiting)
        done = sorted(h.done_at for h in self.hosts if h.done_at is not None)
        hooks = sorted(t for h in self.hosts for t in h.hook_times)
        codes = collections.Counter()
        for h in self.hosts:
            codes.update(h.codes)
        s = self.scale
        um = lambda real: real * s / 60.0  # noqa: E731 (real seconds -> unscaled minutes)
        r = {
            "hosts": self.nhosts, "people": self.people, "spread_s": self.spread,
            "hooks": "one remove of every person" if self.batch else "one hook per person",
            "time_scale": s, "org_limit_per_min": self.limit,
            "deletes_204_per_person": {"min": min(d204), "max": max(d204),
                                       "total": sum(d204)},
            "entries_lost": lost,
            "entries_left": left,
            "hosts_converged": len(done),
            "requests": o.get("requests", 0), "admitted": o.get("admitted", 0),
            "http_429": o.get("rate_limited", 0),
            "requests_per_host": {"mean": statistics.mean(per_host), "max": max(per_host),
                                  "min": min(per_host)},
            "requests_per_host_person": statistics.mean(per_host) / self.people,
            "peak_per_min": o.get("peak_per_minute", 0),
            "peak_admitted_per_min": o.get("peak_admitted_per_minute", 0),
            "margin": 1.0 - o.get("peak_per_minute", 0) / float(self.limit),
            "converged_min": um(done[-1]) if len(done) == self.nhosts else None,
            "median_host_done_min": um(done[len(done) // 2]) if done else None,
            "last_host_done_min": um(done[-1]) if done else None,
            "hook_window_min": um(self.hook_window[1] or 0) if self.hook_window[0] is not None
            else None,
            "hook_s": {"median": hooks[len(hooks) // 2] * s if hooks else None,
                       "max": hooks[-1] * s if hooks else None},
            "retry_runs": sum(h.retries for h in self.hosts),
            "exit_codes": dict(sorted(codes.items())),
            "max_processes_at_once": self.max_procs,
            "real_seconds": self.elapsed,
            "methods": o.get("methods", {}),
        }
        r["profile_per_min"] = self.profile()
        # api.spread: how late a host's first request came after its entry's
        # not_before (one person: the host's only entry), unscaled seconds
        late = sorted((self.first_request["host%04d" % h.n] - min(h.due.values())) * s
                      for h in self.hosts
                      if h.due and "host%04d" % h.n in self.first_request)
        if late:
            r["first_attempt_late_s"] = {"median": late[len(late) // 2],
                                         "p90": late[int(len(late) * 0.9)], "max": late[-1]}
        return r


def text(r):
    conv = ("%.1f" % r["converged_min"]) if r["converged_min"] is not None else \
        "NOT CONVERGED (%d of %d hosts; %d entries left)" % (r["hosts_converged"], r["hosts"],
                                                             r["entries_left"])
    d = r["deletes_204_per_person"]
    lines = [
        "fleet: %d hosts, %d %s (%s), api.spread %g s, limit %d/min, time x%g (%.0f s real)"
        % (r["hosts"], r["people"], "person" if r["people"] == 1 else "people", r["hooks"],
           r["spread_s"], r["org_limit_per_min"], r["time_scale"], r["real_seconds"]),
        "  DELETE 204 per person: min %d max %d (total %d); entries lost: %d"
        % (d["min"], d["max"], d["total"], r["entries_lost"]),
        "  requests: %d (%d admitted, %d answered 429); per host: mean %.2f, max %d"
        " (%.2f per host and person)"
        % (r["requests"], r["admitted"], r["http_429"], r["requests_per_host"]["mean"],
           r["requests_per_host"]["max"], r["requests_per_host_person"]),
        "  org peak per minute: %d offered (%d admitted): %.0f%% of the limit, margin %.0f%%"
        % (r["peak_per_min"], r["peak_admitted_per_min"],
           100.0 * r["peak_per_min"] / r["org_limit_per_min"], 100.0 * r["margin"]),
        "  every spool empty after: %s min (median host %.1f); hooks: median %.1f s, max %.1f s"
        " (started within %.1f min)"
        % (conv, r["median_host_done_min"] or 0, r["hook_s"]["median"] or 0,
           r["hook_s"]["max"] or 0, r["hook_window_min"] or 0),
        "  first attempt after its api.spread time: %s"
        % ("median %.0f s, p90 %.0f s, max %.0f s" % (
            r["first_attempt_late_s"]["median"], r["first_attempt_late_s"]["p90"],
            r["first_attempt_late_s"]["max"]) if "first_attempt_late_s" in r else "-"),
        "  retry runs: %d; exit codes: %s; processes at once: %d"
        % (r["retry_runs"], ", ".join("%s: %d" % kv for kv in r["exit_codes"].items()),
           r["max_processes_at_once"]),
        "  per unscaled minute (requests/429s): " + " ".join(
            "%d/%d" % (p[1], p[2]) for p in r["profile_per_min"]),
    ]
    return "\n".join(lines)


def run(build, **kw):
    f = Fleet(build, **kw)
    try:
        f.setup()
        f.run()
        return f.report()
    finally:
        f.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--people", type=int, default=1)
    ap.add_argument("--spread", type=float, default=0.0, help="api.spread, unscaled seconds")
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--limit", type=int, default=600, help="org requests per (scaled) minute")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--timer-period", type=float, default=TIMER_PERIOD)
    ap.add_argument("--timer-random", type=float, default=TIMER_RANDOM)
    ap.add_argument("--batch", action="store_true",
                    help="one `remove` of every person per host instead of one hook each")
    ap.add_argument("--json", help="write the figures to this file")
    a = ap.parse_args()
    r = run(a.build, hosts=a.hosts, people=a.people, spread=a.spread, scale=a.scale,
            limit=a.limit, seed=a.seed, timer_period=a.timer_period,
            timer_random=a.timer_random, batch=a.batch)
    print(text(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    ok = (r["deletes_204_per_person"]["min"] == 1 and r["deletes_204_per_person"]["max"] == 1
          and r["entries_lost"] == 0 and r["converged_min"] is not None)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
