"""The node_exporter textfile (metrics.textfile): what each command writes,
checked with the real Debian components - `promtool check metrics` on the
file, a real prometheus-node-exporter on loopback scraped over HTTP, and the
shipped alert rules through `promtool check rules` and `promtool test rules`.

Also: the file is written atomically (no temp file left, 0644 whatever the
umask), the counters are monotonic across processes (kept in the spool,
0600, under a lock; concurrent removals all counted), a metrics problem
(missing directory, the lock held by someone else, a corrupt state file)
never changes a removal's outcome or makes it wait more than the lock's
bound, and nothing is written without metrics.textfile."""

import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import SimTestCase, shim_env  # noqa: E402
import pslib  # noqa: E402

SRC = os.environ.get("top_srcdir") or pslib.TOP_SRCDIR
RULES = os.path.join(SRC, "etc", "prometheus", "planetscale-deprovision.rules.yml")
PREFIX = "planetscale_deprovision_"
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
PROMTOOL = shutil.which("promtool")
OUTCOMES = ("removed", "absent", "scheduled", "queued", "held", "refused", "not-queued",
            "failed", "recorded", "unmapped", "invalid", "dead-letter", "dropped", "cancelled")


def parse_metrics(text):
    """{'name{labels}': float} of the sample lines; HELP/TYPE checked."""
    out, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
    return out, typed


def ours(samples):
    return {k: v for k, v in samples.items() if k.startswith(PREFIX)}


def need(tool, name):
    if not tool:
        raise unittest.SkipTest("%s is not installed (Debian package %s)" % (name, name))


class MetricsCase(SimTestCase):

    def setUp(self):
        super().setUp()
        self.promdir = os.path.join(self.dir, "textfile")
        os.mkdir(self.promdir)
        self.prom = os.path.join(self.promdir, "planetscale-deprovision.prom")

    def config(self, metrics=True, extra="", **kw):
        block = 'sender = { socket = ""; };\n'
        if metrics:
            block += 'metrics = { textfile = "%s"; };\n' % self.prom
        return super().config(extra=block + extra, **kw)

    def metrics(self):
        with open(self.prom, encoding="utf-8") as f:
            text = f.read()
        samples, typed = parse_metrics(text)
        return ours(samples), text

    def removals(self, outcome):
        return self.metrics()[0]['%sremovals_total{outcome="%s"}' % (PREFIX, outcome)]

    def entries(self, state):
        return self.metrics()[0]['%sspool_entries{state="%s"}' % (PREFIX, state)]

    def state_file(self):
        return os.path.join(self.dir, "queue", ".metrics.json")


class TestTextfile(MetricsCase):

    def test_off_without_textfile(self):
        cfg = self.config(metrics=False)
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(os.listdir(self.promdir), [])
        self.assertFalse(os.path.exists(self.state_file()))

    def test_remove_writes_the_file(self):
        cfg = self.config()
        old = os.umask(0o077)
        try:
            rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        finally:
            os.umask(old)
        self.assertEqual(rc, 0, err)
        self.assertEqual(os.listdir(self.promdir), ["planetscale-deprovision.prom"],
                         "a temporary file was left beside the textfile")
        self.assertEqual(os.stat(self.prom).st_mode & 0o777, 0o644)
        m, text = self.metrics()
        self.assertEqual(self.removals("removed"), 1)
        for o in OUTCOMES:
            self.assertIn('%sremovals_total{outcome="%s"}' % (PREFIX, o), m)
        for s in ("pending", "held", "dead", "unresolved"):
            self.assertEqual(self.entries(s), 0, s)
        self.assertEqual(m[PREFIX + "spool_oldest_pending_age_seconds"], 0)
        self.assertEqual(m[PREFIX + "last_complete_retry_timestamp_seconds"], 0)
        # HELP and TYPE for every series, base units, counters end in _total
        for name in {k.split("{")[0] for k in m}:
            self.assertIn("# HELP %s " % name, text)
            kind = "counter" if name.endswith("_total") else "gauge"
            self.assertIn("# TYPE %s %s\n" % (name, kind), text)
        # the counters live in the spool, 0600
        self.assertEqual(os.stat(self.state_file()).st_mode & 0o777, 0o600)
        with open(self.state_file()) as f:
            self.assertEqual(json.load(f)["removals"]["removed"], 1)

    def test_states_and_retry(self):
        cfg = self.config()
        self.sim.set_faults(["status:503;match=x9z8;count=-1"])
        self.sim.set_tokens([pslib.credential(id=self.sim.token_id, secret=self.sim.token,
                                              orgs=["acme-eu"])])
        # alice: her organization is not the credential's: an unconfirmed 404, held
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 77, err)
        # bob: 503 -> pending
        rc, out, err = self.run_cmd(["remove", "bob"], cfg)
        self.assertEqual(rc, 75, err)
        self.assertEqual(self.entries("held"), 1)
        self.assertEqual(self.entries("pending"), 1)
        self.assertEqual(self.removals("held"), 1)
        self.assertEqual(self.removals("queued"), 1)
        time.sleep(1.1)
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 77, err)
        m, _ = self.metrics()
        self.assertGreaterEqual(m[PREFIX + "spool_oldest_pending_age_seconds"], 1)
        self.assertEqual(self.removals("queued"), 2)
        t = m[PREFIX + "last_complete_retry_timestamp_seconds"]
        self.assertAlmostEqual(t, time.time(), delta=30)
        self.assertEqual(m[PREFIX + "last_retry_timestamp_seconds"], t)
        # the API is back: the pending one is removed, the held one stays
        self.sim.set_faults([])
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 77, err)
        self.assertEqual(self.entries("pending"), 0)
        self.assertEqual(self.removals("removed"), 1)
        self.assertEqual(self.metrics()[0][PREFIX + "spool_oldest_pending_age_seconds"], 0)
        # queue drop counts as dropped and empties held
        name = [e["name"] for e in self.queue_json(cfg) if e["state"] == "held"][0]
        rc, out, err = self.run_cmd(["queue", "drop", name], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.removals("dropped"), 1)
        self.assertEqual(self.entries("held"), 0)

    def test_retry_stopped_early_is_not_complete(self):
        cfg = self.config(retries=1)
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 0, err)
        first = self.metrics()[0][PREFIX + "last_complete_retry_timestamp_seconds"]
        self.assertGreater(first, 0)
        self.sim.set_faults(["status:503;count=-1"])
        self.run_cmd(["remove", "alice", "bob"], cfg)
        time.sleep(1.1)
        # a refused credential stops the drain at its first entry (a
        # deadline would, too, but one short enough to stop it also stops
        # the loading of the configuration on a slow machine)
        self.sim.set_faults([])
        bad = self.config(name="rotated.conf", retries=1,
                          token="pscale_tkn_SECRETvalue0123456789-rotated")
        rc, out, err = self.run_cmd(["retry"], bad)
        self.assertEqual(rc, 77, err)
        self.assertIn("refused the credential", err)
        m, _ = self.metrics()
        self.assertEqual(m[PREFIX + "last_complete_retry_timestamp_seconds"], first)
        self.assertGreater(m[PREFIX + "last_retry_timestamp_seconds"], first)

    def test_pam_helper_counts(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["pam-helper", "--mode", "service", "--service",
                                     "planetscale-deprovision", "--", "alice"], cfg)
        self.assertEqual(out.strip(), "removed", err)
        self.assertEqual(self.removals("removed"), 1)

    def test_reconcile_figures(self):
        """reconcile --apply reports its candidates and whether its cap
        tripped; a plan (no --apply) changes nothing and writes nothing."""
        cfg = self.config(users=[{"login": "ps-no-such-account-zz", "id": "d4xkq1abc"}])
        rc, out, err = self.run_cmd(["reconcile"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertFalse(os.path.exists(self.prom), "a reconcile plan wrote the metrics")
        rc, out, err = self.run_cmd(["reconcile", "--apply"], cfg)
        self.assertEqual(rc, 0, err)
        m, _ = self.metrics()
        self.assertEqual(m[PREFIX + "reconcile_candidates"], 1)
        self.assertEqual(m[PREFIX + "reconcile_cap_tripped"], 0)
        self.assertAlmostEqual(m[PREFIX + "last_reconcile_timestamp_seconds"], time.time(),
                               delta=60)
        rc, out, err = self.run_cmd(["reconcile", "--apply", "--allow", "0"], cfg)
        self.assertEqual(rc, 77, err)
        m, _ = self.metrics()
        self.assertEqual(m[PREFIX + "reconcile_cap_tripped"], 1)
        # the figures stay when another command rewrites the file
        self.run_cmd(["retry"], cfg)
        self.assertEqual(self.metrics()[0][PREFIX + "reconcile_cap_tripped"], 1)

    def test_unmapped_counted(self):
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "nobody-here"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.removals("unmapped"), 1)
        rc, out, err = self.run_cmd(["remove", "--dry-run", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.removals("unmapped"), 1)

    def test_counters_monotonic_across_processes(self):
        users = [{"login": "u%02d" % i, "id": "gen%05d" % (i + 1)} for i in range(12)]
        self.sim.generate_members("acme", 12)
        cfg = self.config(users=users)
        env = dict(os.environ)
        env.update(shim_env(self.syslog))
        procs = [subprocess.Popen([pslib.command_path(), "--config", cfg, "remove", u["login"]],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                 for u in users]
        for p in procs:
            _, err = p.communicate(timeout=120)
            self.assertEqual(p.returncode, 0, err)
        self.assertEqual(self.removals("removed"), 12)
        # a second round: every one absent now; the counters only grow
        rc, out, err = self.run_cmd(["remove"] + [u["login"] for u in users], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.removals("removed"), 12)
        self.assertEqual(self.removals("absent"), 12)


class TestNeverInTheWay(MetricsCase):
    """A metrics problem is logged; the removal's outcome and timing are
    those it would have had without metrics."""

    def test_missing_directory(self):
        shutil.rmtree(self.promdir)
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("alice: removed", out)
        self.assertIn("metrics:", err)
        self.assertIn(self.promdir, err)
        self.assertEqual(len(self.deletes()), 1)

    def test_lock_held_elsewhere(self):
        cfg = self.config()
        self.run_cmd(["retry"], cfg)       # creates the lock file
        lock = os.path.join(self.dir, "queue", ".metrics.lock")
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            t0 = time.monotonic()
            rc, out, err = self.run_cmd(["remove", "alice"], cfg)
            took = time.monotonic() - t0
        finally:
            os.close(fd)
        self.assertEqual(rc, 0, err)
        self.assertIn("held by another process for too long", err)
        self.assertLess(took, 10, "the removal waited for the metrics lock")
        self.assertEqual(len(self.deletes()), 1)
        # the next writer counts what it saw; what the blocked one counted
        # is lost, never counted twice
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertEqual(self.removals("absent"), 1)
        self.assertEqual(self.removals("removed"), 0)

    def test_corrupt_state_restarts_counters(self):
        cfg = self.config()
        self.run_cmd(["remove", "alice"], cfg)
        with open(self.state_file(), "w") as f:
            f.write("{not json")
        rc, out, err = self.run_cmd(["remove", "bob"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("is not valid", err)
        self.assertEqual(self.removals("removed"), 1)
        with open(self.state_file()) as f:
            self.assertEqual(json.load(f)["removals"]["removed"], 1)

    def test_textfile_is_a_directory(self):
        os.mkdir(self.prom)
        cfg = self.config()
        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        self.assertIn("metrics:", err)
        self.assertEqual([n for n in os.listdir(self.promdir) if n.startswith(".")], [],
                         "the temporary file was left behind")


class TestServe(MetricsCase):

    def test_sender_counts_what_it_sends(self):
        sock = os.path.join(self.dir, "s.sock")
        cfg = super(MetricsCase, self).config(
            extra='sender = { socket = "%s"; };\nmetrics = { textfile = "%s"; };\n'
            % (sock, self.prom))
        env = dict(os.environ)
        env.update(shim_env(self.syslog))
        p = subprocess.Popen([pslib.command_path(), "--config", cfg, "serve"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while not os.path.exists(sock):
                self.assertIsNone(p.poll(), "serve exited")
                self.assertLess(time.monotonic(), deadline, "serve did not listen")
                time.sleep(0.05)
            rc, out, err = self.run_cmd(["remove", "alice"], cfg)
            self.assertEqual(rc, 0, err)
            # the removed line is the sender's: only it can have counted it
            deadline = time.monotonic() + 10
            while not (os.path.exists(self.prom) and self.removals("removed") == 1):
                self.assertLess(time.monotonic(), deadline, "serve did not write the metrics")
                time.sleep(0.1)
        finally:
            p.send_signal(signal.SIGTERM)
            _, err = p.communicate(timeout=30)
            self.outputs.append(err.decode("utf-8", "replace"))
        self.assertEqual(self.removals("removed"), 1)


class TestPrometheusTools(MetricsCase):
    """The real promtool and prometheus-node-exporter of Debian 12."""

    def promtool(self, *args, input=None):
        need(PROMTOOL, "prometheus")
        return subprocess.run([PROMTOOL] + list(args), input=input, capture_output=True,
                              text=True, timeout=120)

    def test_promtool_accepts_the_file(self):
        cfg = self.config()
        self.sim.set_faults(["status:503;match=x9z8;count=-1"])
        self.run_cmd(["remove", "alice", "bob"], cfg)
        self.run_cmd(["retry"], cfg)
        with open(self.prom) as f:
            text = f.read()
        p = self.promtool("check", "metrics", input=text)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual((p.stdout + p.stderr).strip(), "", "promtool has remarks")

    def test_rules_check(self):
        p = self.promtool("check", "rules", RULES)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS: 4 rules found", p.stdout)

    def test_rules_fire(self):
        """promtool test rules: each alert fires on the series it is about
        and stays quiet on a healthy host (annotations left out: they are
        prose)."""
        need(PROMTOOL, "prometheus")
        try:
            import yaml
        except ImportError:
            self.skipTest("python3-yaml is not installed")
        with open(RULES) as f:
            rules = yaml.safe_load(f)
        for g in rules["groups"]:
            for r in g["rules"]:
                r.pop("annotations", None)
        bare = os.path.join(self.dir, "rules.yml")
        with open(bare, "w") as f:
            json.dump(rules, f)
        day = 86400
        now_min = 26 * 60    # the evaluation time, in minutes from 0
        test = {
            "rule_files": [bare],
            "evaluation_interval": "1m",
            "tests": [{
                "interval": "1m",
                "input_series": [
                    {"series": PREFIX + 'spool_entries{state="held",instance="sick"}',
                     "values": "0+0x10 1+0x2000"},
                    {"series": PREFIX + 'spool_entries{state="dead",instance="sick"}',
                     "values": "0+0x2000"},
                    {"series": PREFIX + 'spool_entries{state="held",instance="fine"}',
                     "values": "0+0x2000"},
                    {"series": PREFIX + 'spool_oldest_pending_age_seconds{instance="sick"}',
                     "values": "0+60x2000"},
                    {"series": PREFIX + 'spool_oldest_pending_age_seconds{instance="fine"}',
                     "values": "0+0x2000"},
                    # the sick host's last complete retry was at 0; the fine
                    # host's follows the clock
                    {"series": PREFIX +
                     'last_complete_retry_timestamp_seconds{instance="sick"}',
                     "values": "0+0x2000"},
                    {"series": PREFIX +
                     'last_complete_retry_timestamp_seconds{instance="fine"}',
                     "values": "0+60x2000"},
                    {"series": PREFIX + 'reconcile_cap_tripped{instance="sick"}',
                     "values": "0+0x100 1+0x2000"},
                    {"series": PREFIX + 'reconcile_cap_tripped{instance="fine"}',
                     "values": "0+0x2000"},
                ],
                "alert_rule_test": [
                    {"eval_time": "%dm" % now_min, "alertname": "PlanetScaleDeprovisionHeld",
                     "exp_alerts": [{"exp_labels": {"severity": "warning", "instance": "sick",
                                                    "state": "held"}}]},
                    # held for 14 minutes: not yet (for: 15m)
                    {"eval_time": "24m", "alertname": "PlanetScaleDeprovisionHeld",
                     "exp_alerts": []},
                    {"eval_time": "%dm" % now_min,
                     "alertname": "PlanetScaleDeprovisionPendingTooLong",
                     "exp_alerts": [{"exp_labels": {"severity": "warning",
                                                    "instance": "sick"}}]},
                    {"eval_time": "5h", "alertname": "PlanetScaleDeprovisionPendingTooLong",
                     "exp_alerts": []},
                    {"eval_time": "%dm" % now_min,
                     "alertname": "PlanetScaleDeprovisionNoCompleteRetry",
                     "exp_alerts": [{"exp_labels": {"severity": "warning",
                                                    "instance": "sick"}}]},
                    {"eval_time": "%dm" % (day // 60 + 30),
                     "alertname": "PlanetScaleDeprovisionNoCompleteRetry", "exp_alerts": []},
                    {"eval_time": "%dm" % now_min,
                     "alertname": "PlanetScaleDeprovisionReconcileCapTripped",
                     "exp_alerts": [{"exp_labels": {"severity": "warning",
                                                    "instance": "sick"}}]},
                ],
            }],
        }
        path = os.path.join(self.dir, "rules_test.yml")
        with open(path, "w") as f:
            json.dump(test, f)
        p = self.promtool("test", "rules", path)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS", p.stdout)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TestNodeExporter(MetricsCase):
    """A real prometheus-node-exporter on a free loopback port, its textfile
    collector reading this test's directory, scraped over HTTP after a
    remove, a held entry and a retry."""

    def setUp(self):
        need(NODE_EXPORTER, "prometheus-node-exporter")
        super().setUp()
        self.exporter = None
        for _ in range(5):
            self.port = free_port()
            errf = open(os.path.join(self.dir, "node-exporter.err"), "wb")
            p = subprocess.Popen([NODE_EXPORTER, "--web.listen-address=127.0.0.1:%d" % self.port,
                                  "--collector.disable-defaults", "--collector.textfile",
                                  "--collector.textfile.directory=" + self.promdir],
                                 stdout=errf, stderr=errf)
            errf.close()
            if self.wait_up(p):
                self.exporter = p
                break
            p.kill()
            p.wait()
        if not self.exporter:
            with open(os.path.join(self.dir, "node-exporter.err")) as f:
                self.fail("prometheus-node-exporter did not start: " + f.read())

    def tearDown(self):
        if self.exporter:
            self.exporter.terminate()
            self.exporter.wait(30)
        super().tearDown()

    def wait_up(self, p):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if p.poll() is not None:
                return False
            try:
                self.scrape()
                return True
            except OSError:
                time.sleep(0.1)
        return False

    def scrape(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("GET", "/metrics")
        r = c.getresponse()
        body = r.read().decode("utf-8")
        c.close()
        if r.status != 200:
            raise OSError("HTTP %d" % r.status)
        return parse_metrics(body)[0]

    def test_scrape(self):
        cfg = self.config()
        # before anything is written the collector sees no file of ours
        self.assertEqual(ours(self.scrape()), {})

        rc, out, err = self.run_cmd(["remove", "alice"], cfg)
        self.assertEqual(rc, 0, err)
        m = self.scrape()
        self.assertEqual(m.get("node_textfile_scrape_error"), 0, m)
        self.assertEqual(m[PREFIX + 'removals_total{outcome="removed"}'], 1)
        self.assertEqual(m[PREFIX + 'spool_entries{state="pending"}'], 0)

        # a held entry (a refusal: the last admin) and a pending one
        self.sim.update_member("acme-eu", "x9z8", protected=True)
        rc, out, err = self.run_cmd(["remove", "bob"], cfg)
        self.assertEqual(rc, 77, err)
        m = self.scrape()
        self.assertEqual(m[PREFIX + 'spool_entries{state="held"}'], 1)
        self.assertEqual(m[PREFIX + 'removals_total{outcome="held"}'], 1)

        # retry: the held one stays held (same configuration); the run is complete
        t0 = time.time()
        rc, out, err = self.run_cmd(["retry"], cfg)
        self.assertEqual(rc, 77, err)
        m = self.scrape()
        self.assertEqual(m.get("node_textfile_scrape_error"), 0, m)
        self.assertEqual(m[PREFIX + 'spool_entries{state="held"}'], 1)
        self.assertGreaterEqual(m[PREFIX + "last_complete_retry_timestamp_seconds"],
                                int(t0) - 1)
        self.assertEqual(m[PREFIX + 'removals_total{outcome="removed"}'], 1)
        # node_exporter's own view of the file: it is the one it read
        self.assertIn('node_textfile_mtime_seconds{file="%s"}' % self.prom, m)


if __name__ == "__main__":
    unittest.main()
