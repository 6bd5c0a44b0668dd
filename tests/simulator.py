#!/usr/bin/env python3
"""PlanetScale organization-members API simulator (HTTPS only) for tests.

Serves, under /v1 (auth required):
  GET    /v1/organizations/{org}/members?q=&page=&per_page=
  GET    /v1/organizations/{org}/members/{id}
  PATCH  /v1/organizations/{org}/members/{id}      {"role": "admin"|"member"}
  DELETE /v1/organizations/{org}/members/{id}      flags as query or JSON body
and, without auth, not recorded, never faulted or rate-limited:
  GET  /_admin/health | /_admin/state | /_admin/requests | /_admin/faults
  POST /_admin/faults (list: replace; {"faults": [...], "append": true})
  DELETE /_admin/faults, POST /_admin/reset, POST /_admin/members,
  POST /_admin/config {"token","oauth","rate_limit","retry_after","delay"}
Any other path is an "API request" too: /redirected/... answers 204 (the
target of the redirect fault), anything else 404.

Fault SPEC: ACTION[;match=SUBSTRING][;method=M][;count=N] (count -1: forever)
or a JSON object {"spec": ACTION, "match", "method", "count"}. ACTION:
  status:CODE[:json|notjson|empty]   429[:N|:httpdate:N]   delay:SECONDS
  reset   close   garbage   huge[:STATUS[:MB]]   redirect[:URL]
Only the Python standard library is used.
"""

import argparse
import collections
import copy
import json
import math
import os
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

def load_members(obj):
    if not isinstance(obj, dict):
        raise ValueError("members: expected {org: [member, ...]}")
    out = {}
    for org, lst in obj.items():
        if not isinstance(lst, list):
            raise ValueError("members of %r: expected a list" % org)
        out[str(org)] = []
        for m in lst:
            if not isinstance(m, dict) or not isinstance(m.get("id"), str):
                raise ValueError("member of %r without a string id" % org)
            m = dict(m)
            m.setdefault("email", m["id"] + "@example.com")
            m.setdefault("name", m["id"])
            m.setdefault("role", "member")
            out[str(org)].append(m)
    return out


class ConnInfo:
    def __init__(self, cid, peer):
        self.id, self.peer_port, self.nreq = cid, peer[1], 0
        self.api, self.killed = False, False


class State:
    """Everything mutable, guarded by one lock."""

    def __init__(self, members, token, oauth, rate_limit, retry_after, delay,
                 log_path, faults):
        self.lock = threading.Lock()
        self.baseline = members
        self.token, self.oauth = token, oauth
        self.rate_limit, self.retry_after, self.delay = rate_limit, retry_after, delay
        self.log = open(log_path, "a", encoding="utf-8") if log_path else None
        self.next_conn = 0
        self.inflight_del = collections.Counter()
        self.inflight = 0
        self.reset()
        self.faults = faults

    def reset(self):
        """Caller holds the lock (or is the constructor)."""
        self.members = copy.deepcopy(self.baseline)
        self.removed, self.requests, self.faults = [], [], []
        self.window = collections.deque()
        # connections: TCP connections that carried at least one API (non-admin)
        # request; tcp_connections/tls_handshakes count admin connections too.
        self.stats = {"connections": 0, "tcp_connections": 0, "tls_handshakes": 0,
                      "tls_failures": 0, "requests": 0, "rate_limited": 0,
                      "faults_applied": 0, "client_gone": 0, "max_inflight": 0,
                      "status_counts": collections.Counter(),
                      "delete_counts": collections.Counter(),
                      "max_inflight_deletes": collections.Counter()}
        self.seq = 0
        if self.log:
            self.log.seek(0)
            self.log.truncate()
            self.log.flush()

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
            return max(1, math.ceil(1.0 - (now - self.window[0])))
        self.window.append(now)
        return None

    def record(self, rec):
        self.seq += 1
        rec["seq"] = self.seq
        self.requests.append(rec)
        if rec.get("status") is not None:
            self.stats["status_counts"][str(rec["status"])] += 1
        if self.log:
            self.log.write(json.dumps(rec, sort_keys=True) + "\n")
            self.log.flush()

    def snapshot(self, port):
        st = dict(self.stats)
        st["inflight"] = self.inflight
        st["requests_logged"] = len(self.requests)
        for k in ("status_counts", "delete_counts", "max_inflight_deletes"):
            st[k] = dict(self.stats[k])
        st["max_inflight_deletes_any"] = max(st["max_inflight_deletes"].values(),
                                             default=0)
        return {"members": copy.deepcopy(self.members), "removed": list(self.removed),
                "stats": st, "faults": [dict(f) for f in self.faults],
                "config": {"rate_limit": self.rate_limit, "delay": self.delay,
                           "retry_after": self.retry_after,
                           "token_auth": bool(self.token),
                           "oauth_auth": bool(self.oauth)},
                "port": port}


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
            "default_organization": None, "sso": False, "managed": False,
            "directory_managed": False, "email_verified": True,
        },
        "role": m["role"], "created_at": STAMP, "updated_at": STAMP,
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
               "status": None, "fault": None, "client_gone": False}
        for k, v in self.headers.items():
            k = k.lower()
            rec["headers"][k] = rec["headers"][k] + ", " + v if k in rec["headers"] else v
        del_key = None
        if self.command == "DELETE" and len(segs) == 5 and segs[:2] == ["v1", "organizations"] \
                and segs[3] == "members":
            del_key = "%s/%s" % (segs[2], segs[4])
        st = self.state
        with st.lock:
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
            token, oauth = st.token, st.oauth
        if retry is not None:
            hdrs = [("Retry-After", str(retry))] if st.retry_after else []
            self.finish_record(rec, 429)
            return self.send_error_json(429, "rate_limited", "Rate limit exceeded", hdrs)
        if path.startswith("/redirected/"):
            self.finish_record(rec, 204)
            return self.send(204)
        auth = rec["authorization"]
        if (token or oauth) and not ((token and auth == token) or
                                     (oauth and auth == "Bearer " + oauth)):
            self.finish_record(rec, 401)
            return self.send_error_json(401, "unauthorized",
                                        "The access token is invalid or missing")
        try:
            status, payload = self.api(segs, pairs, body)
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
    def api(self, segs, pairs, body):
        st = self.state
        if len(segs) < 4 or segs[:2] != ["v1", "organizations"] or segs[3] != "members" \
                or len(segs) > 5 or (len(segs) == 5 and segs[4] == ""):
            raise ApiError(404, "not_found", "Not Found")
        org = segs[2]
        if len(segs) == 4:
            if self.command != "GET":
                raise ApiError(405, "method_not_allowed", "Method Not Allowed")
            return self.api_list(org, pairs)
        uid = segs[4]
        if self.command == "DELETE":
            flags, form = parse_delete_flags(pairs, body, self.headers.get("Content-Type", ""))
        elif self.command == "PATCH":
            role = self.parse_role(body)
        elif self.command != "GET":
            raise ApiError(405, "method_not_allowed", "Method Not Allowed")
        with st.lock:
            members = st.members.get(org)
            member = next((m for m in members or () if m["id"] == uid), None)
            if member is None:
                raise ApiError(404, "not_found", "Not Found")
            if self.command == "GET":
                return 200, membership_json(member)
            admins = sum(1 for m in members if m["role"] == "admin")
            last_admin = member["role"] == "admin" and admins == 1
            if self.command == "PATCH":
                if last_admin and role != "admin":
                    raise ApiError(403, "forbidden", LAST_ADMIN)
                member["role"] = role
                return 200, membership_json(member)
            if last_admin or member.get("protected"):
                raise ApiError(403, "forbidden", LAST_ADMIN)
            members.remove(member)
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
            members = self.state.members.get(org)
            if members is None:
                raise ApiError(404, "not_found", "Not Found")
            found = [membership_json(m) for m in members
                     if q in m["email"].lower() or q in m["name"].lower()]
        total = len(found)
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
                     "data": found[(page - 1) * per_page:page * per_page]}

    # ---- admin
    def admin(self, path, query):
        st = self.state
        try:
            raw = self.read_body()
            arg = json.loads(raw.decode("utf-8")) if raw.strip() else None
            with st.lock:
                out = self.admin_op(self.command, path, arg)
        except (ValueError, TypeError, KeyError) as e:
            return self.send(400, {"error": str(e)})
        if out is None:
            return self.send(404, {"error": "no such admin endpoint"})
        self.send(200, out)

    def admin_op(self, method, path, arg):
        """Caller holds the lock. None: unknown endpoint."""
        st = self.state
        port = self.server.server_address[1]
        op = (method, path.rstrip("/"))
        if op == ("GET", "/_admin/health"):
            return {"ok": True, "port": port}
        if op == ("GET", "/_admin/state"):
            return st.snapshot(port)
        if op == ("GET", "/_admin/requests"):
            return st.requests
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
        if op == ("POST", "/_admin/members"):
            st.baseline = load_members(arg)
            st.members = copy.deepcopy(st.baseline)
            return {"members": st.members}
        if op == ("POST", "/_admin/config"):
            if not isinstance(arg, dict):
                raise ValueError("config: expected an object")
            for key, val in arg.items():
                if key not in ("token", "oauth", "rate_limit", "retry_after", "delay"):
                    raise ValueError("unknown config key %r" % key)
                setattr(st, key, val)
            return st.snapshot(port)["config"]
        return None


# ------------------------------------------------------------------ server

class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

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
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args(argv)

    members = {}
    if a.members:
        with open(a.members, encoding="utf-8") as f:
            members = load_members(json.load(f))
    faults = [parse_fault(s) for s in a.fault]
    state = State(members, a.token, a.oauth, a.rate_limit, not a.no_retry_after,
                  a.delay, a.log, faults)
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
