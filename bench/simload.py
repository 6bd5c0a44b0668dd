#!/usr/bin/env python3
"""Load the API simulator (tests/simulator.py) with many client processes.

    python3 bench/simload.py [--procs N] [--mode hold|burst|rate] [--rate R] [--reqs K]

Every client is its own forked process with its own TLS connection and its
own token id (hostNNNNN, one "id_prefix" credential), as a host of a fleet
would be, and sends K requests on it: a member-list page, GET member, ...,
and finally the DELETE of its own member.
  hold   every client connects (TLS handshake done) and waits; once all N
         connections are open at the same moment, all send at once
  burst  all N start at once and connect while the others are sending
  rate   R new clients a second (an open loop), for N/R seconds
Prints requests/s, per-client latency, the most connections open at once,
and the simulator's peak RSS and CPU time. The clients run on the same
machine, so the figures are a floor for the simulator itself.
Standard library only (plus tests/pslib.py).
"""

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests"))
import pslib  # noqa: E402

SECRET = "simload-secret"
LIST = "/v1/organizations/acme/members"


def client(i, a, port, ctx, go_fd, out_dir):
    """One host, in a child process: never returns."""
    out = {"ok": 0, "err": None, "t": None}
    try:
        c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=120)
        if a.mode == "hold":
            c.connect()
            os.read(go_fd, 1)
        elif a.mode == "burst":
            os.read(go_fd, 1)
        else:
            time.sleep(i / a.rate)
        t0 = time.monotonic()
        hdrs = {"Authorization": "host%05d:%s" % (i, SECRET)}
        uid = "gen%05d" % (i + 1)
        for k in range(a.reqs):
            if k == a.reqs - 1:
                c.request("DELETE", "%s/%s?delete_passwords=true&delete_service_tokens=true"
                          % (LIST, uid), headers=hdrs)
            elif k == 0:
                c.request("GET", LIST + "?per_page=1", headers=hdrs)
            else:
                c.request("GET", LIST + "/" + uid, headers=hdrs)
            r = c.getresponse()
            r.read()
            if r.status in (200, 204):
                out["ok"] += 1
            else:
                out["err"] = r.status
        c.close()
        out["t"] = time.monotonic() - t0
    except Exception as e:  # reported by the parent
        out["err"] = repr(e)
    with open(os.path.join(out_dir, str(i)), "w") as f:
        json.dump(out, f)
    os._exit(0)


def proc_figures(pid):
    with open("/proc/%d/status" % pid) as f:
        hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return hwm // 1024, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--procs", type=int, default=1000, help="client processes (1000)")
    ap.add_argument("--mode", choices=("hold", "burst", "rate"), default="hold")
    ap.add_argument("--rate", type=float, default=100, help="clients a second (rate mode)")
    ap.add_argument("--reqs", type=int, default=3, help="requests per client (3)")
    a = ap.parse_args()
    if a.procs < 1 or a.reqs < 1 or a.rate <= 0:
        ap.error("--procs, --reqs and --rate must be positive")

    sim = pslib.Simulator(members={"acme": [{"id": "adm", "role": "admin"}]},
                          tokens=[pslib.credential(id_prefix="host", secret=SECRET)])
    out_dir = tempfile.mkdtemp(prefix="simload-")
    sim.start()
    try:
        sim.generate_members("acme", a.procs)
        ctx = pslib.ssl_context(sim.ca_file)
        go_r, go_w = os.pipe()
        pids = []
        for i in range(a.procs):
            pid = os.fork()
            if pid == 0:
                os.close(go_w)
                client(i, a, sim.port, ctx, go_r, out_dir)
            pids.append(pid)
        os.close(go_r)
        if a.mode == "hold":
            deadline = time.monotonic() + 300
            while sim.api_stats()["connections"]["open"] < a.procs:
                if time.monotonic() > deadline:
                    sys.exit("simload: the connections did not all open in 300 s")
                time.sleep(0.2)
        elif a.mode == "burst":
            time.sleep(1.0)   # let the children reach the pipe
        t0 = time.monotonic()
        os.close(go_w)        # go
        for pid in pids:
            os.waitpid(pid, 0)
        elapsed = time.monotonic() - t0
        outs = []
        for name in os.listdir(out_dir):
            with open(os.path.join(out_dir, name)) as f:
                outs.append(json.load(f))
        ok = sum(o["ok"] for o in outs)
        errs = [o["err"] for o in outs if o["err"]] + ["no result"] * (a.procs - len(outs))
        lat = sorted(o["t"] for o in outs if o["t"] is not None) or [float("nan")]
        s = sim.api_stats()
        rss, cpu = proc_figures(sim.proc.pid)
        left = len(sim.members_of("acme")) - 1
        print("simload: mode %s, %d clients x %d requests%s" % (
            a.mode, a.procs, a.reqs, ", %g clients/s" % a.rate if a.mode == "rate" else ""))
        print("  %d requests answered 200/204 in %.2f s: %.0f requests/s; %d errors %s"
              % (ok, elapsed, ok / elapsed, len(errs), errs[:3]))
        print("  per client: median %.3f s, p99 %.3f s, max %.3f s"
              % (lat[len(lat) // 2], lat[int(len(lat) * 0.99)], lat[-1]))
        print("  connections open at once: %d; TLS failures: %d; members left: %d"
              % (s["connections"]["max_open"], s["connections"]["tls_failures"], left))
        print("  simulator: peak RSS %d MiB, CPU %.2f s" % (rss, cpu))
        return 0 if not errs and left == 0 else 1
    finally:
        sim.stop()
        shutil.rmtree(out_dir, True)


if __name__ == "__main__":
    sys.exit(main())
