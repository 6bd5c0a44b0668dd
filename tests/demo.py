#!/usr/bin/env python3
"""The quick-start demo: removes mapped users from the bundled HTTPS API
simulator, once through the command and once through the PAM module
(pamtester under pam_wrapper), and shows what the simulator received and
the audit lines the removals wrote to syslog (captured here into a file).

    python3 tests/demo.py BUILD_DIR
"""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pslib  # noqa: E402


def find(paths):
    for p in paths:
        if os.path.exists(p):
            return p
    return None


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
    cmd = os.path.join(build, "planetscale-deprovision")
    module = os.path.join(build, ".libs", "pam_planetscale.so")
    shim = os.path.join(build, "tests", ".libs", "libsyslogshim.so")
    os.environ["PS_COMMAND"] = cmd
    if not os.path.exists(shim):
        subprocess.run(["make", "-C", build, "tests/libsyslogshim.la"], check=True,
                       stdout=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="ps-demo-")
    os.chmod(work, 0o700)
    syslog = os.path.join(work, "syslog")
    env = {"LD_PRELOAD": shim, "PS_SYSLOG_FILE": syslog}
    rc = 1
    with pslib.Simulator() as sim:
        cfg = pslib.write_config(work, sim=sim)
        print("== simulator: %s (members of acme: %s)" % (sim.url, ", ".join(sim.members_of("acme"))))
        print("== config: %s\n" % cfg)
        with open(cfg) as f:
            print("".join("   " + l for l in f if "token" not in l))
        print("== planetscale-deprovision lookup alice")
        subprocess.run([cmd, "--config", cfg, "lookup", "alice"])
        print("\n== planetscale-deprovision remove alice")
        r1 = subprocess.run([cmd, "--config", cfg, "remove", "alice"], env={**os.environ, **env})

        print("\n== pamtester planetscale-deprovision bob acct_mgmt  (pam_wrapper)")
        pam_wrapper = find(["/usr/lib/x86_64-linux-gnu/libpam_wrapper.so",
                            "/usr/lib/aarch64-linux-gnu/libpam_wrapper.so"])
        pamtester = shutil.which("pamtester")
        svc = os.path.join(work, "pam.d")
        os.mkdir(svc)
        helper = os.path.join(work, "helper.sh")
        with open(helper, "w") as f:   # the module runs its helper with a clean
            f.write("#!/bin/sh\nexport LD_PRELOAD='%s' PS_SYSLOG_FILE='%s'\nexec '%s' \"$@\"\n"
                    % (shim, syslog, cmd))   # environment: add back the capture
        os.chmod(helper, 0o755)
        with open(os.path.join(svc, "planetscale-deprovision"), "w") as f:
            f.write("account required %s conf=%s helper=%s\n" % (module, cfg, helper))
        with open(os.path.join(svc, "other"), "w") as f:
            f.write("account required pam_deny.so\n")
        r2 = subprocess.run([pamtester, "-v", "planetscale-deprovision", "bob", "acct_mgmt"],
                            env={**os.environ, "LD_PRELOAD": pam_wrapper, "PAM_WRAPPER": "1",
                                 "PAM_WRAPPER_SERVICE_DIR": svc})

        print("\n== what the simulator received")
        for r in sim.deletes():
            print("   %s %s -> %s" % (r["method"], r["target"], r["status"]))
        print("   members of acme now: %s; of acme-eu: %s" % (
            ", ".join(sim.members_of("acme")), ", ".join(sim.members_of("acme-eu"))))
        print("\n== audit lines (syslog, facility authpriv)")
        with open(syslog) as f:
            for line in f:
                if "outcome=" in line:
                    print("   " + line.rstrip())
        ok = (r1.returncode == 0 and r2.returncode == 0 and
              [r["status"] for r in sim.deletes()] == [204, 204])
        print("\n%s" % ("demo OK: alice removed by the command, bob by the PAM module"
                        if ok else "demo FAILED"))
        rc = 0 if ok else 1
    shutil.rmtree(work, True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
