"""Helpers for the pam-planetscale integration tests (standard library only).

    with Simulator() as sim:
        cfg = write_config(tmpdir, sim=sim, users=[{"login": "alice", "id": "d4xkq1abc"}])
        rc, out, err = run_cmd(["remove", "alice"], cfg)
        assert sim.requests()[-1]["status"] == 204

Environment: PS_COMMAND (the built planetscale-deprovision; default
$top_builddir/planetscale-deprovision), TEST_WRAPPER (a prefix such as
"valgrind --error-exitcode=99 --leak-check=full -q", split on spaces).
"""

import atexit
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.environ.get("top_srcdir") or os.path.dirname(TESTS_DIR)
SIMULATOR = os.path.join(TESTS_DIR, "simulator.py")
GEN_CA = os.path.join(TESTS_DIR, "gen_ca.sh")

TOKEN_ID = "pscale_tkn_id_0123"
TOKEN = "pscale_tkn_SECRETvalue0123456789"
OAUTH_TOKEN = "pscale_oauth_SECRETvalue987"
LAST_ADMIN_MESSAGE = "Cannot remove the last admin or leave your only organization"

# Two organizations, each with an admin, so that removing a member is allowed.
DEFAULT_MEMBERS = {
    "acme": [
        {"id": "adm0acme", "email": "root@example.com", "name": "Root Admin", "role": "admin"},
        {"id": "d4xkq1abc", "email": "alice@example.com", "name": "Alice", "role": "member"},
        {"id": "x9z8", "email": "bob@example.com", "name": "Bob", "role": "member"},
        {"id": "c4rol", "email": "carol@example.com", "name": "Carol", "role": "member"},
    ],
    "acme-eu": [
        {"id": "adm0eu", "email": "root-eu@example.com", "name": "EU Admin", "role": "admin"},
        {"id": "x9z8", "email": "bob@example.com", "name": "Bob", "role": "member"},
    ],
}

_ca_dir = None


def ca_dir():
    """Directory with ca.pem, ca.key, server.pem, server.key, other-ca.pem
    (generated once per process by gen_ca.sh, removed at exit)."""
    global _ca_dir
    if _ca_dir is None:
        d = tempfile.mkdtemp(prefix="ps-ca-")
        atexit.register(shutil.rmtree, d, True)
        subprocess.run(["sh", GEN_CA, d], check=True)
        _ca_dir = d
    return _ca_dir


def credential(id=None, secret=None, orgs="*", read=True, write=True, oauth=None,
               id_prefix=None):
    """One simulator credential (an entry of Simulator(tokens=...),
    set_tokens(), add_tokens()): a service token (id + secret, sent as
    "ID:SECRET"), a family of them (id_prefix + secret: any id starting with
    the prefix), or an OAuth token (oauth; id is then only its name in the
    statistics). orgs: "*" or a list; read: read_organization (list, GET),
    write: write_organization (DELETE, PATCH)."""
    out = {"orgs": orgs if orgs == "*" else list(orgs), "read": read, "write": write}
    for k, v in (("id", id), ("secret", secret), ("oauth", oauth), ("id_prefix", id_prefix)):
        if v is not None:
            out[k] = v
    return out


def auth_header(id, secret):
    """The Authorization header of a service token."""
    return "%s:%s" % (id, secret)


def ssl_context(cafile=None):
    """A client context that trusts the test CA (or `cafile`)."""
    ctx = ssl.create_default_context(cafile=cafile or os.path.join(ca_dir(), "ca.pem"))
    return ctx


class Simulator:
    """The API simulator as a subprocess on an ephemeral 127.0.0.1 port.

    Attributes after start(): port, url ("https://127.0.0.1:PORT/v1"),
    base ("https://127.0.0.1:PORT"), ca_file, other_ca_file, dir, log_path,
    token_id, token, oauth, auth_header (what a service-token client sends).

    Beyond the legacy all-access token: tokens (a list of credential()
    dicts), no_write_status / no_read_status (404 or 403),
    org_rate_limit (requests per minute per organization), time_scale
    (a minute lasts 60/time_scale s), org_retry_after, and config (any other
    /_admin/config keys); all applied at start (see simulator.py).
    """

    def __init__(self, members=None, token_id=TOKEN_ID, token=TOKEN, oauth=None,
                 rate_limit=None, retry_after=True, faults=(), delay=None,
                 extra_args=(), host="127.0.0.1", verbose=False, tokens=None,
                 no_write_status=None, no_read_status=None, org_rate_limit=None,
                 time_scale=None, org_retry_after=None, config=None):
        self.members = DEFAULT_MEMBERS if members is None else members
        self.token_id, self.token, self.oauth = token_id, token, oauth
        self.rate_limit, self.retry_after = rate_limit, retry_after
        self.faults, self.delay = list(faults), delay
        self.extra_args, self.host, self.verbose = list(extra_args), host, verbose
        self.start_config = dict(config or {})
        for key, val in (("tokens", tokens), ("no_write_status", no_write_status),
                         ("no_read_status", no_read_status),
                         ("org_rate_limit", org_rate_limit), ("time_scale", time_scale),
                         ("org_retry_after", org_retry_after)):
            if val is not None:
                self.start_config[key] = val
        self.proc = None
        self.dir = None
        self.port = None

    # ---- lifecycle
    def start(self, timeout=15):
        cas = ca_dir()
        self.ca_file = os.path.join(cas, "ca.pem")
        self.other_ca_file = os.path.join(cas, "other-ca.pem")
        self.dir = tempfile.mkdtemp(prefix="ps-sim-")
        self.log_path = os.path.join(self.dir, "requests.jsonl")
        port_file = os.path.join(self.dir, "port")
        members_file = os.path.join(self.dir, "members.json")
        with open(members_file, "w", encoding="utf-8") as f:
            json.dump(self.members, f)
        cmd = [sys.executable, SIMULATOR, "--cert", os.path.join(cas, "server.pem"),
               "--key", os.path.join(cas, "server.key"), "--host", self.host,
               "--port-file", port_file, "--members", members_file, "--log", self.log_path]
        if self.token_id is not None and self.token is not None:
            cmd += ["--token", "%s:%s" % (self.token_id, self.token)]
        if self.oauth:
            cmd += ["--oauth", self.oauth]
        if self.rate_limit:
            cmd += ["--rate-limit", str(self.rate_limit)]
        if not self.retry_after:
            cmd.append("--no-retry-after")
        if self.delay:
            cmd += ["--delay", str(self.delay)]
        for f in self.faults:
            cmd += ["--fault", f if isinstance(f, str) else json.dumps(f)]
        if self.verbose:
            cmd.append("--verbose")
        if self.start_config:
            config_file = os.path.join(self.dir, "config.json")
            with open(config_file, "w", encoding="utf-8") as f:
                json.dump(self.start_config, f)
            cmd += ["--config", config_file]
        cmd += self.extra_args
        self.stderr_path = os.path.join(self.dir, "stderr")
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                msg = self.stderr_text()
                self.stop()
                raise RuntimeError("simulator did not start: " + msg)
            time.sleep(0.02)
        with open(port_file) as f:
            self.port = int(f.read())
        host = "[%s]" % self.host if ":" in self.host else self.host
        self.base = "https://%s:%d" % (host, self.port)
        self.url = self.base + "/v1"
        return self

    def stop(self):
        """SIGTERM, wait, and remove the temp dir. Returns the exit status."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            rc = self.proc.returncode
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, True)
            self.dir = None
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def stderr_text(self):
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    @property
    def auth_header(self):
        return "%s:%s" % (self.token_id, self.token)

    # ---- admin API
    def admin(self, method, path, body=None, timeout=10):
        """One request to /_admin/... on a fresh connection; returns the JSON."""
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                           context=ssl_context(self.ca_file))
        try:
            data = None if body is None else json.dumps(body).encode()
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"} if data else {})
            resp = conn.getresponse()
            out = json.loads(resp.read() or b"null")
            if resp.status != 200:
                raise RuntimeError("simulator %s %s: %s %s" % (method, path, resp.status, out))
            return out
        finally:
            conn.close()

    def state(self, members=True):
        """{"members", "removed", "stats", "faults", "config", "port"}
        (members None unless `members`: cheaper with thousands of them)."""
        return self.admin("GET", "/_admin/state" + ("" if members else "?members=0"))

    def stats(self):
        return self.state()["stats"]

    def set_faults(self, faults):
        """Replace the fault queue (SPEC strings or objects)."""
        return self.admin("POST", "/_admin/faults", list(faults))

    def add_faults(self, faults):
        return self.admin("POST", "/_admin/faults", {"faults": list(faults), "append": True})

    def reset(self):
        """Members back to the last loaded set; requests, faults, stats cleared."""
        return self.admin("POST", "/_admin/reset")

    def set_members(self, members):
        return self.admin("POST", "/_admin/members", members)

    def configure(self, **kw):
        """token ("ID:TOKEN" or None), oauth, rate_limit (per second, global),
        retry_after, delay, tokens, no_write_status, no_read_status (404|403),
        org_rate_limit (per minute per org, 0: off), time_scale,
        org_retry_after. Returns the configuration (no secrets)."""
        return self.admin("POST", "/_admin/config", kw)

    def members_of(self, org):
        """The user ids of org's current members, in order."""
        return [m["id"] for m in self.get_members(org)]

    def get_members(self, org=None):
        """org's member objects ([] when unknown), or {org: [...]} for all."""
        if org is None:
            return self.admin("GET", "/_admin/members")
        return self.admin("GET", "/_admin/members?" + urllib.parse.urlencode({"org": org}))

    # ---- members, at scale
    def add_members(self, org, members):
        """Append members (dicts as in set_members) to org, kept by reset()."""
        return self.admin("POST", "/_admin/members/add", {"org": org, "members": members})

    def generate_members(self, org, count, **kw):
        """Add `count` generated members to org (kept by reset()): ids
        gen00001..., emails user00001@example.com... (distinct, none a prefix
        of another). kw: start (1), id_prefix, email_prefix, domain, role,
        directory_managed_every (every Nth is directory-managed).
        Returns {"org", "added", "total", "first_id", "last_id"}."""
        return self.admin("POST", "/_admin/members/generate",
                          dict(kw, org=org, count=count), timeout=120)

    def update_member(self, org, id, **fields):
        """Change a member (and its baseline): directory_managed=True, email,
        name, role, sso, managed, protected, ... Returns the membership JSON."""
        return self.admin("POST", "/_admin/members/update", dict(fields, org=org, id=id))

    def remove_members(self, org, ids):
        """Members gone without an API DELETE (someone else removed them);
        reset() brings them back. Returns {"removed": [ids actually removed]}."""
        return self.admin("POST", "/_admin/members/remove", {"org": org, "ids": list(ids)})

    # ---- credentials and limits
    def set_tokens(self, tokens):
        """Replace the scoped credentials (credential() dicts); the legacy
        token stays unless a credential has its id and secret."""
        return self.admin("POST", "/_admin/tokens", {"tokens": list(tokens)})

    def add_tokens(self, tokens):
        return self.admin("POST", "/_admin/tokens", {"tokens": list(tokens), "append": True})

    def tokens(self):
        """Every credential accepted, without secrets."""
        return self.admin("GET", "/_admin/tokens")

    def set_org_limit(self, per_minute, time_scale=1, retry_after=True):
        """Organization-wide limit: per_minute requests per org in any sliding
        minute of 60/time_scale real seconds (0: off)."""
        return self.configure(org_rate_limit=per_minute, time_scale=time_scale,
                              org_retry_after=retry_after)

    def api_stats(self):
        """Traffic statistics: requests per org (with peak_per_minute), per
        credential id, per method, 429s, 204 DELETEs per member (simulator.py)."""
        return self.admin("GET", "/_admin/stats")

    def reset_stats(self):
        """Clear the traffic statistics only (members, log and config stay)."""
        return self.admin("DELETE", "/_admin/stats")

    # ---- the API, as a client
    def call(self, method, path, body=None, auth=None, conn=None, timeout=10):
        """One API request: (status, headers, parsed JSON or None for an empty
        or non-JSON body). path is under /v1 unless it starts with "/"; auth
        is the Authorization header (default: the legacy token's; False:
        none). `conn` (from connect()) reuses a connection."""
        if not path.startswith("/"):
            path = "/v1/" + path
        hdrs = {}
        if auth is None:
            auth = (self.auth_header if self.token_id is not None and self.token is not None
                    else "Bearer " + self.oauth if self.oauth else False)
        if auth is not False:
            hdrs["Authorization"] = auth
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        c = conn or self.connect(timeout)
        try:
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            raw = r.read()
            try:
                obj = json.loads(raw) if raw else None
            except ValueError:
                obj = None
            return r.status, r.headers, obj
        finally:
            if conn is None:
                c.close()

    def connect(self, timeout=10):
        """A keep-alive HTTPS connection to the simulator (for call(conn=))."""
        return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                           context=ssl_context(self.ca_file))

    def list_members(self, org, q=None, page=None, per_page=None, auth=None, conn=None):
        """GET the member list: (status, JSON)."""
        params = {k: v for k, v in (("q", q), ("page", page), ("per_page", per_page))
                  if v is not None}
        path = "/v1/organizations/%s/members" % urllib.parse.quote(org, safe="")
        if params:
            path += "?" + urllib.parse.urlencode(params)
        st, _, obj = self.call("GET", path, auth=auth, conn=conn)
        return st, obj

    def list_all_members(self, org, q=None, per_page=100, auth=None):
        """Every page through next_page on one connection: the data items."""
        out, page, conn = [], 1, self.connect()
        try:
            while page is not None:
                st, obj = self.list_members(org, q, page, per_page, auth, conn)
                if st != 200:
                    raise RuntimeError("list %s page %d: %s %s" % (org, page, st, obj))
                out += obj["data"]
                page = obj["next_page"]
        finally:
            conn.close()
        return out

    def wait_idle(self, timeout=5.0):
        """Wait until no API request is in flight (True) or timeout (False)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.state()["stats"]["inflight"] == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def requests(self, method=None, path_contains=None, settle=True):
        """The API requests actually received (from the JSON-lines log), in
        order; admin requests are not included. With settle, first waits
        briefly for in-flight requests to be logged."""
        if settle:
            self.wait_idle()
        out = []
        with open(self.log_path, encoding="utf-8") as f:
            for line in f:
                if not line.endswith("\n"):
                    break
                rec = json.loads(line)
                if method and rec["method"] != method:
                    continue
                if path_contains and path_contains not in rec["target"]:
                    continue
                out.append(rec)
        return out

    def deletes(self):
        return self.requests(method="DELETE")


# ---------------------------------------------------------------- config

def _quote(s):
    out = ['"']
    for ch in str(s):
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append("\\x%02x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def cfg_value(v):
    """A Python value in libconfig syntax (str, bool, int, float, list)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(cfg_value(x) for x in v) + " ]"
    if isinstance(v, Raw):
        return v.text
    return _quote(v)


class Raw:
    """Text written verbatim into the config (for malformed-config tests)."""

    def __init__(self, text):
        self.text = text


def _group(d, indent="  "):
    return "{\n" + "".join("%s%s = %s;\n" % (indent, k, cfg_value(v))
                           for k, v in d.items() if v is not None) + "}"


def users_block(users):
    """users = ( {login=...; id=...; ...}, ... ); text."""
    items = ["  { " + " ".join("%s = %s;" % (k, cfg_value(v)) for k, v in u.items()) + " }"
             for u in users]
    return "users = (\n" + ",\n".join(items) + "\n);\n"


_API_KEYS = ("url", "token_id", "token", "token_file", "oauth_token", "cleanup_flags",
             "timeout", "connect_timeout", "retries", "rate_limit", "ca_file", "proxy")


def write_config(dir, sim=None, name="deprovision.conf", **kw):
    """Write a libconfig config (mode 0600) into `dir`; return its path.

    Keys (None omits one): organization ("acme"), url, token_id, token,
    token_file, oauth_token, ca_file, timeout (5), connect_timeout (3),
    retries (2), rate_limit, cleanup_flags, proxy, defaults (dict),
    unmapped, users (list of dicts; default alice and bob as in the
    design), include_dir, queue_dir (default DIR/queue; created 0700 unless
    create_queue=False),
    max_age_days, pam_services (list), extra (raw text appended),
    api_extra (raw text inside api = {}). With sim=Simulator, url, token_id,
    token and ca_file default to the simulator's. Giving oauth_token or
    token_file drops the default token_id/token. Raw("text") values are
    written verbatim. Unknown keys raise TypeError.
    """
    api = {"url": sim.url if sim else "https://127.0.0.1:1/v1",
           "token_id": sim.token_id if sim else TOKEN_ID,
           "token": sim.token if sim else TOKEN,
           "token_file": None, "oauth_token": None, "cleanup_flags": None,
           "timeout": 5, "connect_timeout": 3, "retries": 2, "rate_limit": None,
           "ca_file": sim.ca_file if sim else os.path.join(ca_dir(), "ca.pem"),
           "proxy": None}
    explicit = set(kw)
    for k in _API_KEYS:
        if k in kw:
            api[k] = kw.pop(k)
    if (api["oauth_token"] or api["token_file"]) and not explicit & {"token_id", "token"}:
        api["token_id"] = api["token"] = None   # one credential form only
    top = {"organization": kw.pop("organization", "acme"),
           "unmapped": kw.pop("unmapped", None),
           "include_dir": kw.pop("include_dir", None),
           "pam_services": kw.pop("pam_services", None)}
    defaults = kw.pop("defaults", None)
    users = kw.pop("users", [{"login": "alice", "id": "d4xkq1abc"},
                             {"login": "bob", "id": "x9z8", "organization": "acme-eu",
                              "delete_service_tokens": False}])
    queue_dir = kw.pop("queue_dir", os.path.join(dir, "queue"))
    create_queue = kw.pop("create_queue", True)
    max_age = kw.pop("max_age_days", None)
    extra = kw.pop("extra", "")
    api_extra = kw.pop("api_extra", "")
    if kw:
        raise TypeError("write_config: unknown keys " + ", ".join(sorted(kw)))

    text = ["# written by tests/pslib.py\n"]
    for k, v in top.items():
        if v is not None:
            text.append("%s = %s;\n" % (k, cfg_value(v)))
    api_text = _group(api)
    if api_extra:
        api_text = api_text[:-1] + "  " + api_extra + "\n}"
    text.append("api = %s;\n" % api_text)
    if defaults is not None:
        text.append("defaults = %s;\n" % _group(defaults))
    if users is not None:
        text.append(users_block(users))
    if queue_dir is not None:
        q = {"dir": queue_dir, "max_age_days": max_age}
        text.append("queue = %s;\n" % _group(q))
        if create_queue and not os.path.exists(queue_dir):
            os.makedirs(queue_dir, mode=0o700)
            os.chmod(queue_dir, 0o700)
    text.append(extra)
    path = os.path.join(dir, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("".join(text))
    os.chmod(path, 0o600)
    return path


# ---------------------------------------------------------------- command

UNRESOLVED_ENV = "PLANETSCALE_DEPROVISION_UNRESOLVED_DIR"

_FNV64_OFFSET = 0xcbf29ce484222325
_FNV64_PRIME = 0x100000001b3
_MASK64 = (1 << 64) - 1


def key_hex(*parts):
    """ps_key_hex(): FNV-1a 64 over the parts separated by NUL bytes, as 16
    lowercase hex digits."""
    h = _FNV64_OFFSET
    for i, part in enumerate(parts):
        if i:
            h = (h * _FNV64_PRIME) & _MASK64          # the NUL separator
        for b in part.encode():
            h = ((h ^ b) * _FNV64_PRIME) & _MASK64
    return "%016x" % h


def entry_name(login, organization, id_):
    """The file name of a spool entry: KEY.json, KEY = key_hex(login,
    organization, id)."""
    return key_hex(login, organization, id_) + ".json"


def unresolved_name(login, config, service="", mode=""):
    """The file name of an unresolved record (its first slot)."""
    return key_hex(login, config, "%s:%s" % (mode, service)) + ".json"


def command_path():
    path = os.environ.get("PS_COMMAND")
    if not path:
        top = os.environ.get("top_builddir") or TOP_SRCDIR
        path = os.path.join(top, "planetscale-deprovision")
    return path


def run_cmd(args, config=None, input=None, timeout=60, env=None):
    """Run the command: [TEST_WRAPPER...] PS_COMMAND [--config CONFIG] ARGS.

    `env` entries are added to (None: removed from) a copy of os.environ.
    Returns (rc, stdout, stderr) as text. Skips the test (unittest.SkipTest)
    when the command is not built.
    """
    cmd = command_path()
    if not os.access(cmd, os.X_OK):
        raise unittest.SkipTest("command not built: %s (set PS_COMMAND)" % cmd)
    wrapper = os.environ.get("TEST_WRAPPER", "").split()
    argv = wrapper + [cmd] + (["--config", config] if config else []) + list(args)
    full_env = dict(os.environ)
    # logins recorded while a config cannot be loaded go beside that config,
    # never into the machine's spool (src/unresolved.h)
    if config and UNRESOLVED_ENV not in full_env:
        full_env[UNRESOLVED_ENV] = os.path.join(os.path.dirname(os.path.abspath(config)),
                                                "unresolved")
    for k, v in (env or {}).items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    p = subprocess.run(argv, input=input, capture_output=True, timeout=timeout,
                       env=full_env, text=True, errors="replace")
    return p.returncode, p.stdout, p.stderr
