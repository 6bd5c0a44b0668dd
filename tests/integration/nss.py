"""The local account database (NSS) for tests, through the test NSS module.

nss_wrapper does not do for `reconcile`: its getpwnam_r returns ENOENT for a
login it does not know, where glibc returns 0 with no result, and ENOENT is
what glibc returns when a directory service is down.

The test NSS module libnss_pstest.so.2 (tests/nss/nss_pstest.c, built by
make check) answers from a passwd file and fails on request the way a
directory service does (UNAVAIL/ENOENT as sssd with its socket missing,
UNAVAIL/EIO, TRYAGAIN/ERANGE, TRYAGAIN/EAGAIN), or is named in nsswitch.conf
without being installed. The command runs in a private mount namespace
(unshare -m) with an nsswitch.conf of its own (`passwd: files pstest`)
bind-mounted over /etc/nsswitch.conf, so this needs root (or unprivileged
user namespaces); pstest_unavailable() says why not.
"""

import os
import shutil
import subprocess

FAILURES = ("unavail-enoent", "unavail-eio", "tryagain-erange", "tryagain-eagain")


def pstest_dir():
    """The directory holding libnss_pstest.so.2, or None."""
    d = os.environ.get("PS_NSS_PSTEST_DIR")
    if not d:
        top = os.environ.get("top_builddir")
        d = os.path.join(top, "tests", "nss", ".libs") if top else None
    if d and os.path.exists(os.path.join(d, "libnss_pstest.so.2")):
        return d
    return None


def unshare_argv():
    """unshare as root; otherwise in a user namespace of its own (-r), where
    the kernel allows unprivileged ones."""
    return [shutil.which("unshare") or "unshare", "-m", "--propagation", "private"] + \
        ([] if os.geteuid() == 0 else ["-r"])


_unavailable = []


def pstest_unavailable():
    """None when the pstest namespace can be used, else the reason."""
    if _unavailable:
        return _unavailable[0]
    why = None
    if not shutil.which("unshare") or not shutil.which("mount"):
        why = "needs unshare and mount (util-linux)"
    elif not pstest_dir():
        why = "libnss_pstest.so.2 not built (make check builds it; set PS_NSS_PSTEST_DIR)"
    else:
        r = subprocess.run(unshare_argv() + ["sh", "-c", "mount --bind /dev/null /dev/null"],
                           capture_output=True)
        if r.returncode != 0:
            why = ("needs root, or unprivileged user namespaces, for a private mount namespace "
                   "over /etc/nsswitch.conf: " + r.stderr.decode(errors="replace").strip())
    _unavailable.append(why)
    return why


def write_passwd(path, logins, uid0=3000):
    """A passwd file with root and these logins."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\n")
        for i, login in enumerate(logins):
            f.write("%s:x:%d:%d::/home/%s:/bin/sh\n" % (login, uid0 + i, uid0 + i, login))


class Namespace:
    """argv prefix and environment for running a command under pstest."""

    def __init__(self, workdir, passwd, fail=None, installed=True, log=None):
        self.conf = os.path.join(workdir, "nsswitch.conf")
        with open(self.conf, "w", encoding="utf-8") as f:
            f.write("passwd: files pstest\ngroup: files\nshadow: files\n")
        self.env = {"PS_NSS_PSTEST_PASSWD": passwd,
                    "PS_NSS_PSTEST_FAIL": fail or ""}
        if installed:
            self.env["LD_LIBRARY_PATH"] = pstest_dir()
        else:
            self.env["LD_LIBRARY_PATH"] = None   # removed: the module cannot be found
        if log:
            self.env["PS_NSS_PSTEST_LOG"] = log

    def prefix(self):
        return unshare_argv() + ["sh", "-c", 'mount --bind "$0" /etc/nsswitch.conf && exec "$@"',
                                 self.conf]
