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
Stdlib only (the plumbing is localstack/awsproxy.py).

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
* ``drop_response``: forward the request, then reset the connection without
  answering (the request took effect, its response was lost: what a client
  retrying a non-idempotent call must survive);
* ``delay``: wait ``seconds`` and then forward normally.

Rules are checked in the order they were added; the first that matches and
still has firings left applies.
"""

import argparse
import json
import os
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from awsproxy import ProxyHandler, Server, ec2_error, json_error, s3_error, serve  # noqa: E402

CONTROL = "/__faultproxy/"
ACTIONS = ("error", "drop", "drop_response", "delay")


class Rules:
    """The rule table and request log, shared by all handler threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.log = []
        self.next_id = 1

    def add(self, rule):
        action = rule.get("action", "error")
        if action not in ACTIONS:
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


class Handler(ProxyHandler):
    server_version = "faultproxy"

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
            self.reply(*error_response(rule, target))
            return
        if rule and rule["action"] == "delay":
            time.sleep(float(rule.get("seconds", 1)))
        if rule and rule["action"] == "drop_response":
            try:
                self.forward(self.server.upstream, body)
            except OSError:
                pass
            self.reset_connection()
            return
        self.forward_and_relay(self.server.upstream, body)

    def drop_mid_body(self, body_read=False):
        length = 0 if body_read else int(self.headers.get("Content-Length") or 0)
        if length:
            self.expect_continue()
            self.rfile.read(length // 2)
        self.reset_connection()

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
        self.reply_json(status, reply)


def error_response(rule, target):
    """The error a rule answers with: EC2 query, AWS JSON, or S3 XML."""
    if rule.get("format") == "ec2":
        return ec2_error(rule.get("code", "InsufficientInstanceCapacity"),
                         rule.get("message", "There is no capacity available."), int(rule.get("status", 500)))
    if target:
        return json_error(rule.get("code", "ThrottlingException"), rule.get("message", "Rate exceeded"),
                          int(rule.get("status", 400)))
    return s3_error(rule.get("code", "SlowDown"), rule.get("message", "Please reduce your request rate."),
                    int(rule.get("status", 503)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", default="http://127.0.0.1:4566")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.upstream = urllib.parse.urlsplit(args.upstream)
    server.rules = Rules()
    return serve(server)


if __name__ == "__main__":
    sys.exit(main())
