#!/usr/bin/env python3
"""PlanetScale organization-members API simulator (HTTPS only) for tests.

API, under /v1 (authentication required, see "Credentials"):
  GET    /v1/organizations/{org}/members?q=&page=&per_page=   (read)
  GET    /v1/organizations/{org}/members/{id}                 (read)
  PATCH  /v1/organizations/{org}/members/{id}  {"role": "admin"|"member"} (write)
  DELETE /v1/organizations/{org}/members/{id}  flags as query or JSON body (write)
{id} is the user id (user.id). A membership object, in GET, PATCH and each
list item: {"id": "mbr_...", "user": {"id", "display_name", "name", "email",
"avatar_url", "created_at", "updated_at", "two_factor_auth_configured",
"default_organization": null, "sso", "managed", "directory_managed",
"email_verified"}, "role", "created_at", "updated_at"}. The list answers
{"type": "list", "current_page", "per_page", "next_page", "next_page_url",
"prev_page", "prev_page_url", "total_count", "total_pages", "data": [...]}:
page >= 1 (default 1), per_page 1..100 (default 25; anything else 422), a
page past the end has empty data and next_page null. q= keeps the members
whose email or name starts with q, case-insensitively (a PREFIX match:
q=bob@acme.com also finds bob@acme.com.au). Deleting the last admin, or a
member with "protected": true, answers 403 with the last-admin message.
Errors are {"code": ..., "message": ...}; unknown paths 404 not_found.
Any other path is an API request too: /redirected/... answers 204 (the
target of the redirect fault), anything else 404.

Members ({org: [member, ...]}, --members FILE or the admin API): a member is
{"id", "email", "name", "role", and optionally "display_name",
"membership_id", "directory_managed", "sso", "managed", "two_factor",
"email_verified", "protected"}; email defaults to ID@example.com, name to
the id, role to member. Ids are unique within an organization.

Credentials. Without any configured credential every request is accepted
with full access. Otherwise the Authorization header must be one of:
  "token"  (--token ID:SECRET)   the legacy service token: every org, read+write
  "oauth"  (--oauth TOKEN)       legacy OAuth token "Bearer TOKEN": same
  "tokens" a list of credentials, each
     {"id": ID, "secret": S}        service token "ID:S"
     {"id_prefix": P, "secret": S}  any "ID:S" whose ID starts with P
                                    (a fleet: one entry, each host its own id)
     {"oauth": T, "id": LABEL}      OAuth "Bearer T" (LABEL names it in stats)
   plus "orgs": "*" or [org, ...] (default "*"), "read": bool (list and GET:
   read_organization), "write": bool (DELETE and PATCH: write_organization),
   both default true. An entry with the same header as the legacy token
   replaces it (to restrict the token a test config already uses).
Answers, as PlanetScale gives them: no valid credential: 401 unauthorized;
an organization the credential cannot access: 404 not_found for every path
under it (nothing is revealed); no read: 404 on list and GET member
("no_read_status": 403 answers 403 forbidden); no write: 404 not_found on
DELETE/PATCH even of a member that exists (GET still returns it), or 403
forbidden with "no_write_status": 403.

Organization rate limit: "org_rate_limit": N admits N requests per
organization in any sliding minute (PlanetScale: 600), shared by every
credential; "time_scale": S makes that minute last 60/S real seconds (N
stays per scaled minute, so rate to load is kept). Over the limit: 429
rate_limited, with Retry-After (real seconds until a slot frees) unless
"org_retry_after" is false. It counts requests by a valid credential to an
organization it can access, after faults, delay and the global limit. The
older "rate_limit" (--rate-limit R) is separate and global: R requests per
real second over every API request, checked before authentication.

Order of a request: fault, delay, global rate limit, /redirected/, 401,
organization access (404), organization limit (429), read/write (404/403),
then the API itself (422, 404, 403 last admin, 200/204).

Admin, without auth, not recorded, never faulted or rate-limited; bodies
and answers are JSON; a bad argument answers 400 {"error": ...}:
  GET    /_admin/health                 {"ok": true, "port"}
  GET    /_admin/state[?members=0]      {"members", "removed", "stats", "faults",
                                         "config", "port"} (members=0: without members)
  GET    /_admin/requests               the request log (list of records)
  GET    /_admin/stats                  traffic statistics (below)
  DELETE /_admin/stats                  clear the traffic statistics only
  GET|POST|DELETE /_admin/faults        list; replace (list) or {"faults": [...],
                                        "append": true}; clear
  POST   /_admin/reset                  members back to the baseline; requests,
                                        faults, stats cleared (config kept)
  GET    /_admin/members[?org=O]        {org: [member]} or O's list ([] if none)
  POST   /_admin/members                {org: [member]}: replace all (and baseline)
  POST   /_admin/members/add            {"org", "members": [member]} (and baseline)
  POST   /_admin/members/generate       {"org", "count", "start": 1, "id_prefix": "gen",
                                        "email_prefix": "user", "domain": "example.com",
                                        "role": "member", "directory_managed_every": 0}
                                        adds count members (and baseline): id
                                        gen00001, email user00001@example.com (digits
                                        padded to 5+), every Nth directory-managed;
                                        answers {"org", "added", "total", "first_id",
                                        "last_id"}
  POST   /_admin/members/update         {"org", "id", FIELD: VALUE...} (and baseline)
  POST   /_admin/members/remove         {"org", "ids": [...]}: gone without an API
                                        DELETE (not in "removed"); reset restores them
  GET    /_admin/tokens                 the credentials, without secrets
  POST   /_admin/tokens                 {"tokens": [...], "append": false}
  POST   /_admin/config                 any of: "token" ("ID:SECRET"|null), "oauth",
                                        "tokens", "no_write_status" (404|403),
                                        "no_read_status" (404|403), "org_rate_limit"
                                        (per minute, 0/null: off), "time_scale" (>0),
                                        "org_retry_after", "rate_limit" (per second),
                                        "retry_after", "delay"; answers the config
                                        (state's "config", no secrets)
--config FILE applies the same JSON object at start.

Traffic statistics (GET /_admin/stats), since the last reset:
  {"since", "window_seconds" (a scaled minute), "time_scale", "org_rate_limit",
   "requests", "methods": {M: n}, "statuses": {"204": n, "none": n (no answer)},
   "rate_limited_org": n, "rate_limited_global": n,
   "orgs": {org: {"requests", "admitted", "rate_limited", "peak_per_minute"
           (most requests in any sliding scaled minute), "peak_admitted_per_minute",
           "methods", "statuses", "first", "last"}},
   "credentials": {id: {"requests", "methods", "statuses"}},   ("(invalid)":
           no valid credential, "(open)": none configured)
   "deletes_204": {"org/id": n}, "delete_statuses": {"org/id": {"204": n, ...}},
   "connections": {"open", "max_open", "tcp", "tls_failures"}}
"orgs" counts the requests that reached an organization's limit (valid
credential with access); "credentials" and "methods" count every API request.

Fault SPEC: ACTION[;match=SUBSTRING][;method=M][;count=N] (count -1: forever)
or a JSON object {"spec": ACTION, "match", "method", "count"}. ACTION:
  status:CODE[:json|notjson|empty]   429[:N|:httpdate:N]   delay:SECONDS
  reset   close   garbage   huge[:STATUS[:MB]]   redirect[:URL]

Scale: member lookups are indexed, a list page costs O(per_page) (q filters
are cached until the members change), one thread per connection, listen
backlog 1024, the open-file limit raised to its hard limit. Measure it with
bench/simload.py (N client processes, each its own TLS connection).
Only the Python standard library is used.
"""

import argparse
import collections
import copy
import json
import math
import os
import resource
import select
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote, urlencode

FLAGS = ("delete_passwords", "delete_service_tokens")
LAST_ADMIN = "Cannot remove the last admin or leave your only organization"
STAMP = "2024-01-02T03:04:05.000Z"
FAULT_KINDS = ("status", "429", "delay", "reset", "close", "garbage", "huge",
               "redirect")
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0


class ApiError(Exception):
    def __init__(self, status, code, message):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def err422(message):
    return ApiError(422, "unprocessable_entity", message)


# ------------------------------------------------------------------ faults

def parse_fault(spec):
    """Normalise a fault given as a SPEC string or an object."""
    if isinstance(spec, str) and spec.strip().startswith("{"):
        spec = json.loads(spec)
    if isinstance(spec, dict):
        opts = dict(spec)
        action = str(opts.pop("spec", None) or opts.pop("action", ""))
    elif isinstance(spec, str):
        action, *parts = spec.strip().split(";")
        opts = {}
        for part in parts:
            key, eq, val = part.partition("=")
            if not eq:
                raise ValueError("fault option without '=': %r" % part)
            opts[key.strip()] = val
    else:
        raise ValueError("fault must be a string or an object")
    unknown = set(opts) - {"match", "method", "count"}
    if unknown:
        raise ValueError("unknown fault option(s): %s" % ", ".join(sorted(unknown)))
    kind, _, rest = action.strip().partition(":")
    if kind not in FAULT_KINDS:
        raise ValueError("unknown fault kind %r" % kind)
    args = [rest] if kind == "redirect" else (rest.split(":") if rest else [])
    if kind == "status":
        if not args or not args[0].isdigit() or len(args) > 2 or (
                len(args) == 2 and args[1] not in ("json", "notjson", "empty")):
            raise ValueError("status fault: status:CODE[:json|notjson|empty]")
    elif kind == "429":
        if not (args == [] or (len(args) == 1 and args[0].isdigit()) or (
                len(args) == 2 and args[0] == "httpdate" and args[1].isdigit())):
            raise ValueError("429 fault: 429[:N|:httpdate:N]")
    elif kind == "delay":
        if len(args) != 1:
            raise ValueError("delay fault: delay:SECONDS")
        float(args[0])
    elif kind == "huge":
        if len(args) > 2:
            raise ValueError("huge fault: huge[:STATUS[:MB]]")
        [float(a) for a in args]
    elif kind in ("reset", "close", "garbage") and args:
        raise ValueError("%s fault takes no argument" % kind)
    count = int(opts.get("count", 1))
    if count == 0 or count < -1:
        raise ValueError("fault count must be >= 1 or -1 (forever)")
    return {"spec": action.strip(), "kind": kind, "args": args,
            "match": opts.get("match") or None,
            "method": (opts.get("method") or "").upper() or None,
            "count": count}


# ------------------------------------------------------------------ state

MEMBER_BOOLS = ("directory_managed", "sso", "managed", "two_factor", "email_verified",
                "protected")
MEMBER_STRS = ("email", "name", "display_name", "membership_id", "role", "created_at")
ACCESS_STATUSES = (403, 404)


def check_member(m, where):
    """Validate one member object (defaults already set)."""
    for k in MEMBER_STRS:
        if k in m and not isinstance(m[k], str):
            raise ValueError("%s: %s must be a string" % (where, k))
    for k in MEMBER_BOOLS:
        if k in m and not isinstance(m[k], bool):
            raise ValueError("%s: %s must be a boolean" % (where, k))


def load_members(obj):
    if not isinstance(obj, dict):
        raise ValueError("members: expected {org: [member, ...]}")
    out = {}
    for org, lst in obj.items():
        if not isinstance(lst, list):
            raise ValueError("members of %r: expected a list" % org)
        out[str(org)] = []
        seen = set()
        for m in lst:
            if not isinstance(m, dict) or not isinstance(m.get("id"), str):
                raise ValueError("member of %r without a string id" % org)
            if m["id"] in seen:
                raise ValueError("duplicate member id %r in %r" % (m["id"], org))
            seen.add(m["id"])
            m = dict(m)
            m.setdefault("email", m["id"] + "@example.com")
            m.setdefault("name", m["id"])
            m.setdefault("role", "member")
            check_member(m, "member %r of %r" % (m["id"], org))
            out[str(org)].append(m)
    return out


def parse_credential(obj, index):
    """One entry of "tokens", normalised; raises ValueError."""
    where = "tokens[%d]" % index
    if not isinstance(obj, dict):
        raise ValueError("%s: expected an object" % where)
    unknown = set(obj) - {"id", "id_prefix", "secret", "oauth", "orgs", "read", "write"}
    if unknown:
        raise ValueError("%s: unknown key(s) %s" % (where, ", ".join(sorted(unknown))))
    for k in ("id", "id_prefix", "secret", "oauth"):
        if k in obj and not (isinstance(obj[k], str) and (obj[k] or k == "id_prefix")):
            raise ValueError("%s: %s must be a non-empty string" % (where, k))
    cid, prefix = obj.get("id"), obj.get("id_prefix")
    secret, oauth = obj.get("secret"), obj.get("oauth")
    if oauth is not None:
        if secret is not None or prefix is not None:
            raise ValueError("%s: oauth excludes secret and id_prefix" % where)
        cid = cid if cid is not None else "oauth%d" % index
    else:
        if secret is None or (cid is None) == (prefix is None):
            raise ValueError("%s: needs secret with exactly one of id or id_prefix, "
                             "or oauth" % where)
        if ":" in (cid if cid is not None else prefix):
            raise ValueError("%s: an id cannot contain ':'" % where)
    orgs = obj.get("orgs", "*")
    if orgs == "*":
        orgs = None
    elif isinstance(orgs, list) and all(isinstance(o, str) and o for o in orgs):
        orgs = frozenset(orgs)
    else:
        raise ValueError('%s: orgs must be "*" or a list of organization names' % where)
    for k in ("read", "write"):
        if not isinstance(obj.get(k, True), bool):
            raise ValueError("%s: %s must be a boolean" % (where, k))
    return {"id": cid, "id_prefix": prefix, "secret": secret, "oauth": oauth,
            "orgs": orgs, "read": obj.get("read", True), "write": obj.get("write", True)}


def credential_summary(c):
    """A credential as the admin API shows it: no secret."""
    out = {"kind": "oauth" if c["oauth"] else "service",
           "orgs": "*" if c["orgs"] is None else sorted(c["orgs"]),
           "read": c["read"], "write": c["write"]}
    if c["id_prefix"] is not None:
        out["id_prefix"] = c["id_prefix"]
    else:
        out["id"] = c["id"]
    if c.get("legacy"):
        out["legacy"] = True
    return out


def all_access(cid, **kw):
    c = {"id": cid, "id_prefix": None, "secret": None, "oauth": None, "orgs": None,
         "read": True, "write": True}
    c.update(kw)
    return c


OPEN_ACCESS = all_access(None)


def new_traffic():
    return {"requests": 0, "methods": collections.Counter(),
            "statuses": collections.Counter(), "rate_limited_org": 0,
            "rate_limited_global": 0, "orgs": {}, "credentials": {},
            "deletes_204": collections.Counter(), "delete_statuses": {},
            "since": time.time()}


def new_org_traffic():
    return {"requests": 0, "admitted": 0, "rate_limited": 0, "peak_per_minute": 0,
            "peak_admitted_per_minute": 0, "methods": collections.Counter(),
            "statuses": collections.Counter(), "first": None, "last": None}


def plain(obj):
    """Counters (nested) as plain dicts for JSON."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    return obj


class ConnInfo:
    def __init__(self, cid, peer):
        self.id, self.peer_port, self.nreq = cid, peer[1], 0
        self.api, self.killed = False, False


class State:
    """Everything mutable, guarded by one lock."""

    CONFIG_KEYS = ("token", "oauth", "rate_limit", "retry_after", "delay", "tokens",
                   "no_write_status", "no_read_status", "org_rate_limit", "time_scale",
                   "org_retry_after")

    def __init__(self, members, token, oauth, rate_limit, retry_after, delay,
                 log_path, faults):
        self.lock = threading.Lock()
        self.baseline = members
        self.token, self.oauth = token, oauth
        self.rate_limit, self.retry_after, self.delay = rate_limit, retry_after, delay
        self.tokens = []
        self.no_write_status = self.no_read_status = 404
        self.org_rate_limit, self.time_scale, self.org_retry_after = 0, 1.0, True
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        self.next_conn = 0
        self.inflight_del = collections.Counter()
        self.inflight = 0
        self.open_conns = 0
        self.version = 0
        self.list_cache = {}
        self.rebuild_auth()
        self.reset()
        self.faults = faults

    def reset(self):
        """Caller holds the lock (or is the constructor)."""
        self.members = copy.deepcopy(self.baseline)
        self.reindex()
        self.removed, self.requests, self.faults = [], [], []
        self.window = collections.deque()
        # connections: TCP connections that carried at least one API (non-admin)
        # request; tcp_connections/tls_handshakes count admin connections too.
        self.stats = {"connections": 0, "tcp_connections": 0, "tls_handshakes": 0,
                      "tls_failures": 0, "requests": 0, "rate_limited": 0,
                      "faults_applied": 0, "client_gone": 0, "max_inflight": 0,
                      "max_open_connections": self.open_conns,
                      "status_counts": collections.Counter(),
                      "delete_counts": collections.Counter(),
                      "max_inflight_deletes": collections.Counter()}
        self.reset_traffic()
        self.seq = 0
        if self.log:
            self.log.seek(0)
            self.log.truncate()
            self.log.flush()

    def reset_traffic(self):
        self.traffic = new_traffic()
        self.org_arrivals, self.org_admitted = {}, {}

    # ---- members
    def reindex(self):
        """Rebuild the id index after the member lists were replaced."""
        self.index = {org: {m["id"]: m for m in lst} for org, lst in self.members.items()}
        self.touch()

    def touch(self):
        """The members changed: cached list filters are stale."""
        self.version += 1
        self.list_cache.clear()

    def member(self, org, uid):
        return self.index.get(org, {}).get(uid)

    def filtered(self, org, q):
        """Members of org whose email or name starts with q (lower case);
        None when the organization does not exist."""
        members = self.members.get(org)
        if members is None or not q:
            return members
        key = (org, q)
        hit = self.list_cache.get(key)
        if hit is None:
            hit = [m for m in members
                   if m["email"].lower().startswith(q) or m["name"].lower().startswith(q)]
            if len(self.list_cache) >= 256:
                self.list_cache.clear()
            self.list_cache[key] = hit
        return hit

    def remove_member(self, org, member):
        self.members[org].remove(member)
        del self.index[org][member["id"]]
        self.touch()

    def add_members(self, org, new):
        """Append validated members to the live set and the baseline."""
        have = self.index.get(org, {})
        base = {m["id"] for m in self.baseline.get(org, ())}
        for m in new:
            if m["id"] in have or m["id"] in base:
                raise ValueError("member %r already in %r" % (m["id"], org))
        self.members.setdefault(org, []).extend(new)
        self.baseline.setdefault(org, []).extend(copy.deepcopy(new))
        self.index.setdefault(org, {}).update((m["id"], m) for m in new)
        self.touch()

    # ---- credentials
    def rebuild_auth(self):
        legacy = {}
        if self.token:
            cid = self.token.partition(":")[0] if ":" in self.token else "token"
            legacy[self.token] = all_access(cid, legacy=True)
        if self.oauth:
            legacy["Bearer " + self.oauth] = all_access("oauth", oauth=True, legacy=True)
        self.auth_map, self.auth_prefix = dict(legacy), []
        for c in self.tokens:
            if c["oauth"]:
                self.auth_map["Bearer " + c["oauth"]] = c
            elif c["id_prefix"] is not None:
                self.auth_prefix.append(c)
            else:
                self.auth_map[c["id"] + ":" + c["secret"]] = c
        # a legacy credential is replaced by a "tokens" entry with its header
        self.legacy_creds = [c for h, c in legacy.items() if self.auth_map[h] is c]
        self.auth_open = not self.auth_map and not self.auth_prefix

    def authenticate(self, header):
        """(credential, id): (OPEN_ACCESS, None) without configured
        credentials, (None, None) when the header matches none."""
        if self.auth_open:
            return OPEN_ACCESS, None
        c = self.auth_map.get(header)
        if c is not None:
            return c, c["id"]
        if header and self.auth_prefix:
            cid, sep, secret = header.partition(":")
            if sep and cid:
                for c in self.auth_prefix:
                    if cid.startswith(c["id_prefix"]) and secret == c["secret"]:
                        return c, cid
        return None, None

    def set_tokens(self, lst, append=False):
        if not isinstance(lst, list):
            raise ValueError("tokens: expected a list")
        base = len(self.tokens) if append else 0
        parsed = [parse_credential(t, base + i) for i, t in enumerate(lst)]
        self.tokens = (self.tokens if append else []) + parsed
        self.rebuild_auth()

    def credentials(self):
        return [credential_summary(c) for c in self.legacy_creds + self.tokens]

    def configure(self, arg):
        """Apply a /_admin/config object: all of it, or nothing when a value
        is invalid."""
        if not isinstance(arg, dict):
            raise ValueError("config: expected an object")
        new = {}
        for key, val in arg.items():
            if key not in self.CONFIG_KEYS:
                raise ValueError("unknown config key %r" % key)
            if key == "tokens":
                if not isinstance(val, list):
                    raise ValueError("tokens: expected a list")
                val = [parse_credential(t, i) for i, t in enumerate(val)]
            elif key in ("no_write_status", "no_read_status"):
                if isinstance(val, bool) or val not in ACCESS_STATUSES:
                    raise ValueError("%s must be 403 or 404" % key)
            elif key == "org_rate_limit":
                val = 0 if val is None else val
                if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                    raise ValueError("org_rate_limit must be an integer >= 0 (per minute)")
            elif key == "time_scale":
                if isinstance(val, bool) or not isinstance(val, (int, float)) or val <= 0:
                    raise ValueError("time_scale must be a number > 0")
                val = float(val)
            elif key == "org_retry_after" and not isinstance(val, bool):
                raise ValueError("org_retry_after must be a boolean")
            elif key in ("token", "oauth") and val is not None and not isinstance(val, str):
                raise ValueError("%s must be a string or null" % key)
            new[key] = val
        for key, val in new.items():
            setattr(self, key, val)
        if {"org_rate_limit", "time_scale"} & set(new):
            self.org_arrivals, self.org_admitted = {}, {}
        self.rebuild_auth()

    def config(self):
        return {"rate_limit": self.rate_limit, "delay": self.delay,
                "retry_after": self.retry_after, "token_auth": bool(self.token),
                "oauth_auth": bool(self.oauth), "tokens": self.credentials(),
                "no_write_status": self.no_write_status,
                "no_read_status": self.no_read_status,
                "org_rate_limit": self.org_rate_limit, "time_scale": self.time_scale,
                "org_retry_after": self.org_retry_after}

    # ---- limits
    def take_fault(self, method, target):
        for i, f in enumerate(self.faults):
            if f["match"] and f["match"] not in target:
                continue
            if f["method"] and f["method"] != method:
                continue
            if f["count"] > 0:
                f["count"] -= 1
                if f["count"] == 0:
                    del self.faults[i]
            self.stats["faults_applied"] += 1
            return dict(f)
        return None

    def rate_check(self):
        """None when admitted, else the seconds until a slot frees."""
        if not self.rate_limit:
            return None
        now = time.monotonic()
        while self.window and now - self.window[0] >= 1.0:
            self.window.popleft()
        if len(self.window) >= self.rate_limit:
            self.stats["rate_limited"] += 1
            self.traffic["rate_limited_global"] += 1
            return max(1, math.ceil(1.0 - (now - self.window[0])))
        self.window.append(now)
        return None

    def org_admit(self, org, method):
        """Count a request that reached org; None when admitted, else the
        real seconds until the organization limit frees a slot."""
        now, wall = time.monotonic(), time.time()
        width = 60.0 / self.time_scale
        o = self.traffic["orgs"].get(org)
        if o is None:
            o = self.traffic["orgs"][org] = new_org_traffic()
            o["first"] = wall
        o["last"] = wall
        o["requests"] += 1
        o["methods"][method] += 1
        arr = self.org_arrivals.setdefault(org, collections.deque())
        adm = self.org_admitted.setdefault(org, collections.deque())
        for dq in (arr, adm):
            while dq and dq[0] <= now - width:
                dq.popleft()
        arr.append(now)
        o["peak_per_minute"] = max(o["peak_per_minute"], len(arr))
        if self.org_rate_limit and len(adm) >= self.org_rate_limit:
            o["rate_limited"] += 1
            self.traffic["rate_limited_org"] += 1
            return max(1, math.ceil(adm[0] + width - now))
        adm.append(now)
        o["admitted"] += 1
        o["peak_admitted_per_minute"] = max(o["peak_admitted_per_minute"], len(adm))
        return None

    # ---- records and statistics
    def record(self, rec):
        self.seq += 1
        rec["seq"] = self.seq
        self.requests.append(rec)
        status = rec.get("status")
        if status is not None:
            self.stats["status_counts"][str(status)] += 1
        skey = "none" if status is None else str(status)
        t = self.traffic
        t["requests"] += 1
        t["methods"][rec["method"]] += 1
        t["statuses"][skey] += 1
        ckey = rec.get("credential") or ("(open)" if rec.get("auth_result") == "open"
                                          else "(invalid)")
        c = t["credentials"].get(ckey)
        if c is None:
            c = t["credentials"][ckey] = {"requests": 0, "methods": collections.Counter(),
                                          "statuses": collections.Counter()}
        c["requests"] += 1
        c["methods"][rec["method"]] += 1
        c["statuses"][skey] += 1
        if rec.get("org_counted"):
            t["orgs"][rec["org"]]["statuses"][skey] += 1
        if rec["method"] == "DELETE" and rec.get("member_id") is not None:
            mkey = "%s/%s" % (rec["org"], rec["member_id"])
            if status == 204:
                t["deletes_204"][mkey] += 1
            t["delete_statuses"].setdefault(mkey, collections.Counter())[skey] += 1
        if self.log:
            self.log.write(json.dumps(rec, sort_keys=True) + "\n")
            self.log.flush()

    def traffic_snapshot(self):
        out = plain(self.traffic)
        out.update({"window_seconds": 60.0 / self.time_scale, "time_scale": self.time_scale,
                    "org_rate_limit": self.org_rate_limit,
                    "connections": {"open": self.open_conns,
                                    "max_open": self.stats["max_open_connections"],
                                    "tcp": self.stats["tcp_connections"],
                                    "tls_failures": self.stats["tls_failures"]}})
        return out

    def snapshot(self, port, members=True):
        st = dict(self.stats)
        st["inflight"] = self.inflight
        st["open_connections"] = self.open_conns
        st["requests_logged"] = len(self.requests)
        for k in ("status_counts", "delete_counts", "max_inflight_deletes"):
            st[k] = dict(self.stats[k])
        st["max_inflight_deletes_any"] = max(st["max_inflight_deletes"].values(),
                                             default=0)
        out = {"members": copy.deepcopy(self.members) if members else None,
               "removed": list(self.removed), "stats": st,
               "faults": [dict(f) for f in self.faults], "config": self.config(),
               "port": port}
        return out


def membership_json(m):
    uid = m["id"]
    return {
        "id": m.get("membership_id") or "mbr_" + uid,
        "user": {
            "id": uid, "display_name": m.get("display_name") or m["name"],
            "name": m["name"], "email": m["email"],
            "avatar_url": "https://avatars.example.com/" + quote(uid),
            "created_at": STAMP, "updated_at": STAMP,
            "two_factor_auth_configured": bool(m.get("two_factor", False)),
            "default_organization": None, "sso": bool(m.get("sso", False)),
            "managed": bool(m.get("managed", False)),
            "directory_managed": bool(m.get("directory_managed", False)),
            "email_verified": bool(m.get("email_verified", True)),
        },
        "role": m["role"], "created_at": m.get("created_at") or STAMP, "updated_at": STAMP,
    }


def parse_delete_flags(pairs, body, ctype):
    """Validate the cleanup flags: (flags dict, form)."""
    flags, form = {}, "none"
    for key, val in pairs:
        if key not in FLAGS:
            raise err422("Unknown parameter: %s" % key)
        if key in flags:
            raise err422("Duplicate parameter: %s" % key)
        if val not in ("true", "false"):
            raise err422("%s must be a boolean (true or false)" % key)
        flags[key] = val == "true"
        form = "query"
    if body:
        if pairs:
            raise err422("Cleanup flags given both as query parameters and in the body")
        if ctype.split(";")[0].strip().lower() != "application/json":
            raise err422("Request body must be application/json")

        def no_dups(items):
            keys = [k for k, _ in items]
            if len(keys) != len(set(keys)):
                raise err422("Duplicate key in body")
            return dict(items)
        try:
            obj = json.loads(body.decode("utf-8"), object_pairs_hook=no_dups)
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "bad_request", "Invalid JSON body")
        if not isinstance(obj, dict):
            raise err422("Request body must be a JSON object")
        for key, val in obj.items():
            if key not in FLAGS:
                raise err422("Unknown property in body: %s" % key)
            if not isinstance(val, bool):
                raise err422("%s must be a boolean" % key)
        flags, form = obj, "body"
    return flags, form


# ------------------------------------------------------------------ handler

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "planetscale-simulator/1"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def __init__(self, request, client_address, server, conn):
        self.conn = conn
        super().__init__(request, client_address, server)

    def log_message(self, fmt, *args):  # quiet unless --verbose
        if self.server.verbose:
            sys.stderr.write("simulator: %s\n" % (fmt % args))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = \
        lambda self: self.dispatch()

    @property
    def state(self):
        return self.server.state

    # ---- low-level I/O
    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        return self.rfile.read(length) if length else b""

    def send(self, status, body=b"", headers=(), ctype="application/json"):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        for key, val in headers:
            self.send_header(key, val)
        if status != 204 and status >= 200:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD" and status != 204:
            self.wfile.write(body)

    def send_error_json(self, status, code, message, headers=()):
        self.send(status, {"code": code, "message": message}, headers)

    def kill(self, rst):
        """Drop the connection without an answer: RST (SO_LINGER 0) or FIN."""
        self.conn.killed = True
        self.close_connection = True
        sock = self.connection
        try:
            if rst:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.rfile.close()
        sock.close()

    def client_gone(self):
        """True when the client closed or sent something while waiting."""
        try:
            readable = select.select([self.connection.fileno()], [], [], 0)[0]
            if not readable:
                return False
            raw = socket.fromfd(self.connection.fileno(), socket.AF_INET, socket.SOCK_STREAM)
            try:
                raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            finally:
                raw.close()
            return True  # EOF, or a TLS alert (close_notify) instead of silence
        except (OSError, ValueError):
            return True

    def sleep(self, seconds):
        """Sleep up to `seconds`; False when the client went away meanwhile."""
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return True
            if self.client_gone():
                return False
            time.sleep(min(0.05, left))

    # ---- dispatch
    def dispatch(self):
        target = self.path
        path, _, query = target.partition("?")
        if path.startswith("/_admin/") or path == "/_admin":
            return self.admin(path, query)
        return self.dispatch_api(target, path, query)

    def dispatch_api(self, target, path, query):
        t_start = time.time()
        conn = self.conn
        try:
            body = self.read_body()
        except (ValueError, OSError):
            self.close_connection = True
            return self.send_error_json(400, "bad_request", "Malformed body framing")
        pairs = parse_qsl(query, keep_blank_values=True)
        segs = [unquote(s) for s in path.split("/")[1:]]
        rec = {"conn": conn.id, "peer_port": conn.peer_port, "new_conn": conn.nreq == 0,
               "conn_request": conn.nreq, "t_start": t_start, "method": self.command,
               "target": target, "path": path, "query": query,
               "params": [list(p) for p in pairs], "http_version": self.request_version,
               "headers": {}, "header_list": [[k, v] for k, v in self.headers.items()],
               "authorization": self.headers.get("Authorization"),
               "body": body.decode("utf-8", "backslashreplace"), "body_len": len(body),
               "status": None, "fault": None, "client_gone": False,
               "credential": None, "auth_result": None, "org": None, "member_id": None,
               "org_counted": False, "limited_by": None}
        for k, v in self.headers.items():
            k = k.lower()
            rec["headers"][k] = rec["headers"][k] + ", " + v if k in rec["headers"] else v
        if len(segs) >= 3 and segs[:2] == ["v1", "organizations"] and segs[2]:
            rec["org"] = segs[2]
            if len(segs) == 5 and segs[3] == "members" and segs[4]:
                rec["member_id"] = segs[4]
        del_key = None
        if self.command == "DELETE" and len(segs) == 5 and segs[:2] == ["v1", "organizations"] \
                and segs[3] == "members":
            del_key = "%s/%s" % (segs[2], segs[4])
        st = self.state
        with st.lock:
            # who sent it, for the statistics (decided again after faults)
            cred, rec["credential"] = st.authenticate(rec["authorization"])
            rec["auth_result"] = "open" if st.auth_open else (
                "ok" if cred is not None else "invalid")
            conn.nreq += 1
            if not conn.api:
                conn.api = True
                st.stats["connections"] += 1
            st.stats["requests"] += 1
            st.inflight += 1
            st.stats["max_inflight"] = max(st.stats["max_inflight"], st.inflight)
            if del_key:
                st.stats["delete_counts"][del_key] += 1
                st.inflight_del[del_key] += 1
                mx = st.stats["max_inflight_deletes"]
                mx[del_key] = max(mx[del_key], st.inflight_del[del_key])
            fault = st.take_fault(self.command, target)
        try:
            self.respond(rec, fault, path, segs, pairs, body)
        finally:
            with st.lock:
                st.inflight -= 1
                if del_key:
                    st.inflight_del[del_key] -= 1

    def finish_record(self, rec, status):
        rec["status"] = status
        rec["t_end"] = time.time()
        with self.state.lock:
            self.state.record(rec)

    def respond(self, rec, fault, path, segs, pairs, body):
        """Fault, delay, rate limit, auth, then the API. The record is logged
        before the answer leaves, so a client that saw it can read it."""
        st = self.state
        if fault:
            rec["fault"] = fault["spec"]
            if self.apply_fault(rec, fault):
                return
        if st.delay and not self.sleep(st.delay):
            return self.gone(rec)
        with st.lock:
            retry = st.rate_check()
        if retry is not None:
            hdrs = [("Retry-After", str(retry))] if st.retry_after else []
            rec["limited_by"] = "global"
            self.finish_record(rec, 429)
            return self.send_error_json(429, "rate_limited", "Rate limit exceeded", hdrs)
        if path.startswith("/redirected/"):
            self.finish_record(rec, 204)
            return self.send(204)
        org = rec["org"]
        with st.lock:
            cred, rec["credential"] = st.authenticate(rec["authorization"])
            rec["auth_result"] = "open" if st.auth_open else (
                "ok" if cred is not None else "invalid")
            visible = cred is not None and (cred["orgs"] is None or org in cred["orgs"])
            retry = None
            if cred is not None and org is not None and visible:
                rec["org_counted"] = True
                retry = st.org_admit(org, self.command)
            org_retry_after = st.org_retry_after
        if cred is None:
            self.finish_record(rec, 401)
            return self.send_error_json(401, "unauthorized",
                                        "The access token is invalid or missing")
        if org is not None and not visible:
            self.finish_record(rec, 404)
            return self.send_error_json(404, "not_found", "Not Found")
        if retry is not None:
            hdrs = [("Retry-After", str(retry))] if org_retry_after else []
            rec["limited_by"] = "org"
            self.finish_record(rec, 429)
            return self.send_error_json(429, "rate_limited", "Rate limit exceeded", hdrs)
        try:
            status, payload = self.api(segs, pairs, body, cred)
        except ApiError as e:
            status, payload = e.status, {"code": e.code, "message": e.message}
        self.finish_record(rec, status)
        self.send(status, payload if payload is not None else b"")

    def gone(self, rec):
        """The client gave up while we were sleeping: log it, drop the line."""
        rec["client_gone"] = True
        with self.state.lock:
            self.state.stats["client_gone"] += 1
        self.finish_record(rec, None)
        self.kill(rst=False)

    def apply_fault(self, rec, f):
        """True when the fault produced the whole answer (or killed it)."""
        kind, args = f["kind"], f["args"]
        if kind == "delay":
            if not self.sleep(float(args[0])):
                self.gone(rec)
                return True
            return False
        if kind in ("reset", "close"):
            self.finish_record(rec, None)
            self.kill(rst=kind == "reset")
        elif kind == "garbage":
            self.finish_record(rec, None)
            self.wfile.write(b"\x00\xffSSH-2.0-garbage \x01\x02\x03 not HTTP\r\n\r\n"
                             + bytes(range(256)))
            self.kill(rst=False)
        elif kind == "status":
            code = int(args[0])
            mode = args[1] if len(args) > 1 else "json"
            self.finish_record(rec, code)
            if mode == "json":
                self.send_error_json(code, "simulated_error", "Simulated error %d" % code)
            elif mode == "empty":
                self.send(code, b"")
            else:
                self.send(code, b"<html><body><h1>%d Simulated</h1>{\"code\":" % code)
        elif kind == "429":
            hdrs = []
            if len(args) == 1:
                hdrs = [("Retry-After", args[0])]
            elif len(args) == 2:
                hdrs = [("Retry-After", formatdate(time.time() + int(args[1]), usegmt=True))]
            self.finish_record(rec, 429)
            self.send_error_json(429, "rate_limited", "Rate limit exceeded", hdrs)
        elif kind == "huge":
            code = int(args[0]) if args else 200
            size = int(float(args[1]) * 1024 * 1024) if len(args) > 1 else 5 * 1024 * 1024
            head = b'{"code":"huge","message":"'
            filler = size - len(head) - 2
            self.finish_record(rec, code)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(head) + filler + 2))
            self.end_headers()
            self.wfile.write(head)
            chunk = b"A" * 65536
            while filler > 0:
                self.wfile.write(chunk[:min(filler, len(chunk))])
                filler -= len(chunk)
            self.wfile.write(b'"}')
        elif kind == "redirect":
            host, port = self.server.server_address[:2]
            host = "[%s]" % host if ":" in host else host
            url = args[0] or "https://%s:%d/redirected%s" % (host, port, self.path)
            self.finish_record(rec, 301)
            self.send(301, {"code": "moved", "message": "Moved"}, [("Location", url)])
        return True

    # ---- the API
    def denied(self, status):
        """What a credential without the needed access gets."""
        if status == 403:
            return ApiError(403, "forbidden", "Forbidden")
        return ApiError(404, "not_found", "Not Found")

    def api(self, segs, pairs, body, cred):
        st = self.state
        if len(segs) < 4 or segs[:2] != ["v1", "organizations"] or segs[3] != "members" \
                or len(segs) > 5 or (len(segs) == 5 and segs[4] == ""):
            raise ApiError(404, "not_found", "Not Found")
        org = segs[2]
        if len(segs) == 4:
            if self.command != "GET":
                raise ApiError(405, "method_not_allowed", "Method Not Allowed")
            if not cred["read"]:
                raise self.denied(st.no_read_status)
            return self.api_list(org, pairs)
        uid = segs[4]
        if self.command in ("DELETE", "PATCH"):
            if not cred["write"]:
                raise self.denied(st.no_write_status)
            if self.command == "DELETE":
                flags, form = parse_delete_flags(pairs, body,
                                                 self.headers.get("Content-Type", ""))
            else:
                role = self.parse_role(body)
        elif self.command == "GET":
            if not cred["read"]:
                raise self.denied(st.no_read_status)
        else:
            raise ApiError(405, "method_not_allowed", "Method Not Allowed")
        with st.lock:
            member = st.member(org, uid)
            if member is None:
                raise ApiError(404, "not_found", "Not Found")
            if self.command == "GET":
                return 200, membership_json(member)
            last_admin = member["role"] == "admin" and sum(
                1 for m in st.members[org] if m["role"] == "admin") == 1
            if self.command == "PATCH":
                if last_admin and role != "admin":
                    raise ApiError(403, "forbidden", LAST_ADMIN)
                member["role"] = role
                return 200, membership_json(member)
            if last_admin or member.get("protected"):
                raise ApiError(403, "forbidden", LAST_ADMIN)
            st.remove_member(org, member)
            st.removed.append({"org": org, "id": uid, "form": form, "time": time.time(),
                               "delete_passwords": flags.get("delete_passwords"),
                               "delete_service_tokens": flags.get("delete_service_tokens")})
        return 204, None

    def parse_role(self, body):
        try:
            obj = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ApiError(400, "bad_request", "Invalid JSON body")
        if not isinstance(obj, dict) or obj.get("role") not in ("admin", "member"):
            raise err422("role must be one of: admin, member")
        return obj["role"]

    def api_list(self, org, pairs):
        params = dict(pairs)
        try:
            page = int(params.get("page", "1"))
            per_page = int(params.get("per_page", "25"))
        except ValueError:
            raise err422("page and per_page must be integers")
        if page < 1 or not 1 <= per_page <= 100:
            raise err422("page must be >= 1 and per_page between 1 and 100")
        q = params.get("q", "").lower()
        with self.state.lock:
            found = self.state.filtered(org, q)
            if found is None:
                raise ApiError(404, "not_found", "Not Found")
            total = len(found)
            data = [membership_json(m) for m in found[(page - 1) * per_page:page * per_page]]
        host, port = self.server.server_address[:2]
        host = "[%s]" % host if ":" in host else host
        base = "https://%s:%d/v1/organizations/%s/members" % (host, port, quote(org, safe=""))

        def page_url(n):
            if n is None:
                return None
            extra = {"q": params["q"]} if "q" in params else {}
            return base + "?" + urlencode(dict(extra, page=n, per_page=per_page))
        nxt = page + 1 if page * per_page < total else None
        prev = page - 1 if page > 1 else None
        return 200, {"type": "list", "current_page": page, "per_page": per_page,
                     "next_page": nxt, "next_page_url": page_url(nxt),
                     "prev_page": prev, "prev_page_url": page_url(prev),
                     "total_count": total, "total_pages": math.ceil(total / per_page),
                     "data": data}

    # ---- admin
    def admin(self, path, query):
        st = self.state
        try:
            raw = self.read_body()
            arg = json.loads(raw.decode("utf-8")) if raw.strip() else None
            params = dict(parse_qsl(query, keep_blank_values=True))
            with st.lock:
                out = self.admin_op(self.command, path, arg, params)
                # encoded under the lock: the state may change right after
                body = None if out is None else json.dumps(out).encode()
        except (ValueError, TypeError, KeyError) as e:
            return self.send(400, {"error": str(e)})
        if out is None:
            return self.send(404, {"error": "no such admin endpoint"})
        self.send(200, body)

    def admin_op(self, method, path, arg, params=None):
        """Caller holds the lock. None: unknown endpoint."""
        st = self.state
        params = params or {}
        port = self.server.server_address[1]
        op = (method, path.rstrip("/"))
        if op == ("GET", "/_admin/health"):
            return {"ok": True, "port": port}
        if op == ("GET", "/_admin/state"):
            return st.snapshot(port, members=params.get("members", "1") != "0")
        if op == ("GET", "/_admin/requests"):
            return st.requests
        if op == ("GET", "/_admin/stats"):
            return st.traffic_snapshot()
        if op == ("DELETE", "/_admin/stats"):
            st.reset_traffic()
            return st.traffic_snapshot()
        if op == ("GET", "/_admin/faults"):
            return st.faults
        if op == ("DELETE", "/_admin/faults"):
            st.faults = []
            return {"faults": []}
        if op == ("POST", "/_admin/faults"):
            append = isinstance(arg, dict) and bool(arg.get("append"))
            lst = arg.get("faults", []) if isinstance(arg, dict) else (arg or [])
            parsed = [parse_fault(f) for f in lst]
            st.faults = (st.faults if append else []) + parsed
            return {"faults": st.faults}
        if op == ("POST", "/_admin/reset"):
            st.reset()
            return {"ok": True}
        if op == ("GET", "/_admin/members"):
            if "org" in params:
                return st.members.get(params["org"], [])
            return st.members
        if op == ("POST", "/_admin/members"):
            st.baseline = load_members(arg)
            st.members = copy.deepcopy(st.baseline)
            st.reindex()
            return {"members": st.members}
        if op[0] == "POST" and op[1].startswith("/_admin/members/"):
            return self.admin_members(op[1].rpartition("/")[2], arg)
        if op == ("GET", "/_admin/tokens"):
            return st.credentials()
        if op == ("POST", "/_admin/tokens"):
            if not isinstance(arg, dict) or set(arg) - {"tokens", "append"}:
                raise ValueError('tokens: expected {"tokens": [...], "append": bool}')
            st.set_tokens(arg.get("tokens", []), append=bool(arg.get("append")))
            return st.credentials()
        if op == ("POST", "/_admin/config"):
            st.configure(arg)
            return st.config()
        return None

    def admin_members(self, what, arg):
        """POST /_admin/members/{add,generate,update,remove}; lock held."""
        st = self.state
        if not isinstance(arg, dict) or not isinstance(arg.get("org"), str) or not arg["org"]:
            raise ValueError('expected an object with "org"')
        org = arg["org"]
        if what == "add":
            if set(arg) - {"org", "members"}:
                raise ValueError('add: expected {"org", "members": [...]}')
            new = load_members({org: arg.get("members")})[org]
            st.add_members(org, new)
            return {"org": org, "added": len(new), "total": len(st.members[org])}
        if what == "generate":
            return self.admin_generate(org, arg)
        if what == "update":
            uid = arg.get("id")
            fields = {k: v for k, v in arg.items() if k not in ("org", "id")}
            unknown = set(fields) - set(MEMBER_BOOLS) - set(MEMBER_STRS)
            if unknown:
                raise ValueError("update: unknown field(s) %s" % ", ".join(sorted(unknown)))
            check_member(fields, "update of %r" % uid)
            member = st.member(org, uid)
            if member is None:
                raise ValueError("update: no member %r in %r" % (uid, org))
            member.update(fields)
            for m in st.baseline.get(org, ()):
                if m["id"] == uid:
                    m.update(fields)
            st.touch()
            return membership_json(member)
        if what == "remove":
            ids = arg.get("ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ValueError('remove: expected {"org", "ids": [id, ...]}')
            gone = []
            for uid in ids:
                member = st.member(org, uid)
                if member is not None:
                    st.remove_member(org, member)
                    gone.append(uid)
            return {"org": org, "removed": gone, "total": len(st.members.get(org, ()))}
        raise ValueError("no such members operation %r" % what)

    def admin_generate(self, org, arg):
        known = {"org", "count", "start", "id_prefix", "email_prefix", "domain", "role",
                 "directory_managed_every"}
        if set(arg) - known:
            raise ValueError("generate: unknown key(s) %s" % ", ".join(sorted(set(arg) - known)))
        count, start = arg.get("count"), arg.get("start", 1)
        every = arg.get("directory_managed_every", 0)
        for name, val, low in (("count", count, 1), ("start", start, 0),
                               ("directory_managed_every", every, 0)):
            if isinstance(val, bool) or not isinstance(val, int) or val < low:
                raise ValueError("generate: %s must be an integer >= %d" % (name, low))
        if count > 1000000:
            raise ValueError("generate: count must be at most 1000000")
        strs = {}
        for key, default in (("id_prefix", "gen"), ("email_prefix", "user"),
                             ("domain", "example.com"), ("role", "member")):
            strs[key] = arg.get(key, default)
            if not isinstance(strs[key], str):
                raise ValueError("generate: %s must be a string" % key)
        width = max(5, len(str(start + count - 1)))
        new = []
        for i in range(start, start + count):
            m = {"id": "%s%0*d" % (strs["id_prefix"], width, i),
                 "email": "%s%0*d@%s" % (strs["email_prefix"], width, i, strs["domain"]),
                 "name": "User %d" % i, "role": strs["role"]}
            if every and i % every == 0:
                m["directory_managed"] = True
            new.append(m)
        self.state.add_members(org, new)
        return {"org": org, "added": count, "total": len(self.state.members[org]),
                "first_id": new[0]["id"], "last_id": new[-1]["id"]}


# ------------------------------------------------------------------ server

class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024   # a fleet connects all at once

    def __init__(self, addr, ctx, state, verbose=False):
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.ctx, self.state, self.verbose = ctx, state, verbose
        super().__init__(addr, Handler)

    def server_bind(self):  # no getfqdn(): it can stall on DNS
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address):
        st = self.state
        with st.lock:
            st.next_conn += 1
            conn = ConnInfo(st.next_conn, client_address)
            st.stats["tcp_connections"] += 1
            st.open_conns += 1
            st.stats["max_open_connections"] = max(st.stats["max_open_connections"],
                                                   st.open_conns)
        try:
            self.serve_connection(request, client_address, conn)
        finally:
            with st.lock:
                st.open_conns -= 1

    def serve_connection(self, request, client_address, conn):
        st = self.state
        request.settimeout(HANDSHAKE_TIMEOUT)
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms stalls
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            with st.lock:
                st.stats["tls_failures"] += 1
            return
        with st.lock:
            st.stats["tls_handshakes"] += 1
        try:
            Handler(tls, client_address, self, conn)
        except (OSError, ValueError):
            pass
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if self.verbose:
            super().handle_error(request, client_address)


def raise_nofile():
    """Hundreds of clients at once need more than the usual 1024 files."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cert", required=True, help="server certificate (PEM)")
    ap.add_argument("--key", required=True, help="server private key (PEM)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: ephemeral")
    ap.add_argument("--port-file", help="write the bound port here once listening")
    ap.add_argument("--members", help='JSON {"org": [{"id","email","name","role"}]}')
    ap.add_argument("--token", help='accept "Authorization: ID:TOKEN"')
    ap.add_argument("--oauth", help='accept "Authorization: Bearer TOKEN"')
    ap.add_argument("--log", help="append one JSON line per API request")
    ap.add_argument("--rate-limit", type=float, default=0, help="requests per second")
    ap.add_argument("--no-retry-after", action="store_true")
    ap.add_argument("--fault", action="append", default=[], metavar="SPEC")
    ap.add_argument("--delay", type=float, default=0, help="seconds before every answer")
    ap.add_argument("--config", help="JSON object as for POST /_admin/config")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)
    raise_nofile()

    members = {}
    if a.members:
        with open(a.members, encoding="utf-8") as f:
            members = load_members(json.load(f))
    faults = [parse_fault(s) for s in a.fault]
    state = State(members, a.token, a.oauth, a.rate_limit, not a.no_retry_after,
                  a.delay, a.log, faults)
    if a.config:
        with open(a.config, encoding="utf-8") as f:
            state.configure(json.load(f))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(a.cert, a.key)
    server = SimServer((a.host, a.port), ctx, state, a.verbose)
    port = server.server_address[1]
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, a.port_file)

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if a.verbose:
        sys.stderr.write("simulator: listening on https://%s:%d\n" % (a.host, port))
    server.serve_forever(poll_interval=0.1)
    server.server_close()
    if state.log:
        with state.lock:
            state.log.close()
            state.log = None
    return 0


if __name__ == "__main__":
    sys.exit(main())
