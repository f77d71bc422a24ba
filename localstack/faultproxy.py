#!/usr/bin/env python3
"""Fault-injecting HTTP proxy in front of LocalStack (test infrastructure).

The fault tests need S3 and SSM to misbehave on cue: answer 500/503/SlowDown
for a while or forever, throttle SSM PutParameter, stall, or drop the
connection in the middle of a request body. LocalStack never does any of
that, so this proxy sits between the code under test and LocalStack and
applies rules the test sets through a small control API.

Usage: ``faultproxy.py [--upstream URL] [--port N]``. It listens on
127.0.0.1 (port 0 = any free port) and prints ``listening on PORT`` as its
first stdout line, so a test can start one proxy per test and read the port.
Stdlib only.

Control API (paths under ``/__faultproxy/``; S3 bucket names cannot start
with ``_``, so these never collide with real requests):

* ``POST /__faultproxy/rules`` with a JSON rule adds it; returns its id.
* ``DELETE /__faultproxy/rules`` removes every rule.
* ``GET /__faultproxy/rules`` lists rules with how often each fired.
* ``GET /__faultproxy/log`` lists every proxied request
  (method, path, target, fault applied).

A rule matches a request when every given field matches:

* ``method``: e.g. ``PUT``;
* ``path_contains``: substring of the path (bucket or key);
* ``query_contains``: substring of the query, e.g. ``partNumber=``;
* ``target``: the ``X-Amz-Target`` header, e.g. ``AmazonSSM.PutParameter``;
* ``body_contains``: substring of the request body, for query-protocol APIs
  such as EC2 (``Action=RunInstances``, ``InstanceMarketOptions``).

It lets ``skip`` matching requests through first, then applies its action to
the next ``count`` matching requests (``count`` -1: forever). Actions:

* ``error``: answer ``status`` (default 503) with an S3 XML error ``code``
  (default ``SlowDown``), or, for requests with ``X-Amz-Target``, an AWS JSON
  error (``code`` default ``ThrottlingException``, status default 400), or
  with ``"format": "ec2"`` an EC2 query-protocol error;
* ``drop``: read about half the request body, then reset the connection;
* ``delay``: wait ``seconds`` and then forward normally.

Rules are checked in the order they were added; the first that matches and
still has firings left applies.
"""

import argparse
import http.client
import http.server
import json
import socket
import struct
import sys
import threading
import time
import urllib.parse

CONTROL = "/__faultproxy/"
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
    "trailer", "upgrade", "expect",
}


class Rules:
    """The rule table and request log, shared by all handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.log = []
        self.next_id = 1

    def add(self, rule):
        action = rule.get("action", "error")
        if action not in ("error", "drop", "delay"):
            raise ValueError(f"unknown action {action!r}")
        with self.lock:
            rule = dict(rule, id=self.next_id, matched=0, fired=0, action=action)
            rule.setdefault("skip", 0)
            rule.setdefault("count", 1)
            self.next_id += 1
            self.rules.append(rule)
            return rule["id"]

    def clear(self):
        with self.lock:
            self.rules = []

    def wants_body(self):
        """Whether any rule matches on the body, which must then be read first."""
        with self.lock:
            return any("body_contains" in rule for rule in self.rules)

    def pick(self, method, path, query, target, body=None):
        """Returns the rule to apply to this request (or None), counting it."""
        with self.lock:
            for rule in self.rules:
                if not matches(rule, method, path, query, target, body):
                    continue
                if rule["count"] != -1 and rule["fired"] >= rule["count"]:
                    continue
                rule["matched"] += 1
                if rule["matched"] <= rule["skip"]:
                    return None
                rule["fired"] += 1
                return dict(rule)
            return None

    def record(self, entry):
        with self.lock:
            self.log.append(entry)

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps({"rules": self.rules, "log": self.log}))


def matches(rule, method, path, query, target, body):
    if "method" in rule and rule["method"].upper() != method:
        return False
    if "path_contains" in rule and rule["path_contains"] not in path:
        return False
    if "query_contains" in rule and rule["query_contains"] not in query:
        return False
    if "target" in rule and rule["target"] != (target or ""):
        return False
    if "body_contains" in rule and (body is None or rule["body_contains"].encode() not in body):
        return False
    return True


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "faultproxy"

    def log_message(self, *args):  # quiet: the request log is in /__faultproxy/log
        pass

    # every method goes through one path
    def do_GET(self):
        self.handle_any()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith(CONTROL):
            self.control(url.path[len(CONTROL):])
            return
        target = self.headers.get("X-Amz-Target")
        body = self.read_body() if self.server.rules.wants_body() else None
        rule = self.server.rules.pick(self.command, url.path, url.query, target, body)
        entry = {"method": self.command, "path": url.path, "query": url.query,
                 "target": target, "fault": rule["action"] if rule else None}
        self.server.rules.record(entry)
        if rule and rule["action"] == "drop":
            self.drop_mid_body(body_read=body is not None)
            return
        if body is None:
            body = self.read_body()
        if rule and rule["action"] == "error":
            self.send_error_response(rule, target)
            return
        if rule and rule["action"] == "delay":
            time.sleep(float(rule.get("seconds", 1)))
        self.forward(body)

    # --- request body ---------------------------------------------------------
    def expect_continue(self):
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

    def read_body(self):
        self.expect_continue()
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def drop_mid_body(self, body_read=False):
        length = 0 if body_read else int(self.headers.get("Content-Length") or 0)
        if length:
            self.expect_continue()
            self.rfile.read(length // 2)
        # RST instead of FIN: the client sees a reset, as on a broken network
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    # --- responses ------------------------------------------------------------
    def send_error_response(self, rule, target):
        if rule.get("format") == "ec2":
            code = rule.get("code", "InsufficientInstanceCapacity")
            status = int(rule.get("status", 500))
            message = rule.get("message", "There is no capacity available.")
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
                    f"<Message>{message}</Message></Error></Errors><RequestID>faultproxy</RequestID></Response>").encode()
            content_type = "text/xml"
            extra = {}
        elif target:
            code = rule.get("code", "ThrottlingException")
            status = int(rule.get("status", 400))
            body = json.dumps({"__type": code, "message": rule.get("message", "Rate exceeded")}).encode()
            content_type = "application/x-amz-json-1.1"
            extra = {"x-amzn-ErrorType": code}
        else:
            code = rule.get("code", "SlowDown")
            status = int(rule.get("status", 503))
            message = rule.get("message", "Please reduce your request rate.")
            body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                    f"<Message>{message}</Message><RequestId>faultproxy</RequestId></Error>").encode()
            content_type = "application/xml"
            extra = {}
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-request-id", "faultproxy")
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def forward(self, body):
        up = self.server.upstream
        conn = http.client.HTTPConnection(up.hostname, up.port or 80, timeout=300)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = b"" if self.command == "HEAD" else resp.read()
        except OSError as e:
            self.send_response(502)
            msg = f"faultproxy: upstream failed: {e}".encode()
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() in HOP_BY_HOP or (k.lower() == "content-length" and self.command != "HEAD"):
                continue
            self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # --- control API ------------------------------------------------------------
    def control(self, what):
        rules = self.server.rules
        body = self.read_body()
        status, reply = 200, {}
        try:
            if what == "rules" and self.command == "POST":
                reply = {"id": rules.add(json.loads(body or b"{}"))}
            elif what == "rules" and self.command == "DELETE":
                rules.clear()
            elif what == "rules" and self.command == "GET":
                reply = {"rules": rules.snapshot()["rules"]}
            elif what == "log" and self.command == "GET":
                reply = {"log": rules.snapshot()["log"]}
            else:
                status, reply = 404, {"error": f"no control endpoint {self.command} {what}"}
        except (ValueError, TypeError) as e:
            status, reply = 400, {"error": str(e)}
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # clients that gave up (timeouts, dropped tests) are expected here
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", default="http://127.0.0.1:4566")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.upstream = urllib.parse.urlsplit(args.upstream)
    server.rules = Rules()
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
