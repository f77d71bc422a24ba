"""HTTP forwarding and AWS-shaped error replies, shared by the test world's proxies.

Both localstack/faultproxy.py (faults on cue) and localstack/gate.py (what
AWS enforces) sit between a client and LocalStack: they read a request,
perhaps answer it themselves with an error shaped like the service's own,
and otherwise forward it and relay the answer. That plumbing lives here
once. Stdlib only: faultproxy.py runs with any python3.

Error shapes (each function returns ``(status, headers, body)`` for
:meth:`ProxyHandler.reply`), as the services document them:

* S3 (REST-XML): ``<Error><Code/><Message/><RequestId/></Error>``;
* EC2 (query): ``<Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>``;
* IAM/STS (query): ``<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>``;
* SSM/KMS/... (AWS JSON 1.1): ``{"__type": code, "message": ...}`` plus ``x-amzn-ErrorType``.
"""

import http.client
import http.server
import json
import socket
import struct
import sys
import uuid
from xml.sax.saxutils import escape

HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
    "trailer", "upgrade", "expect",
}


def request_id():
    """A fresh request id, as every AWS answer carries one."""
    return str(uuid.uuid4())


def s3_error(code, message, status, extra=None):
    """An S3 REST-XML error; ``extra`` adds elements (e.g. ``Expires``) after the message."""
    fields = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in (extra or {}).items())
    rid = request_id()
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message>{fields}<RequestId>{rid}</RequestId></Error>").encode()
    return status, {"Content-Type": "application/xml", "x-amz-request-id": rid}, body


def ec2_error(code, message, status):
    """An EC2 query-protocol error."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id()}</RequestID></Response>").encode()
    return status, {"Content-Type": "text/xml;charset=UTF-8", "x-amzn-RequestId": request_id()}, body


def query_error(code, message, status):
    """An IAM/STS query-protocol error."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>Sender</Type>'
            f"<Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
            f"<RequestId>{request_id()}</RequestId></ErrorResponse>").encode()
    return status, {"Content-Type": "text/xml", "x-amzn-RequestId": request_id()}, body


def json_error(code, message, status):
    """An AWS JSON 1.1 error (SSM, KMS, Secrets Manager)."""
    body = json.dumps({"__type": code, "message": message}).encode()
    return status, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code,
                    "x-amzn-RequestId": request_id()}, body


class Upstream:
    """A response read from the upstream server."""

    def __init__(self, status, reason, headers, data):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.data = data


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    """Request plumbing: subclasses implement ``handle_any``."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet: each proxy keeps its own request log
        pass

    # every method goes through one path
    def do_GET(self):
        self.handle_any()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    def handle_any(self):
        raise NotImplementedError

    # --- request body ---------------------------------------------------------
    def expect_continue(self):
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.flush()

    def read_body(self):
        """The whole request body, de-chunked."""
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

    def reset_connection(self):
        """Closes with RST instead of FIN: the client sees a reset, as on a broken network."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    # --- responses ------------------------------------------------------------
    def reply(self, status, headers, body, reason=None):
        """Answers with ``body`` (not sent for HEAD, whose Content-Length is kept)."""
        headers = list(headers.items()) if isinstance(headers, dict) else list(headers)
        self.send_response(status, reason)
        has_length = False
        for k, v in headers:
            if k.lower() in HOP_BY_HOP:
                continue
            if k.lower() == "content-length":
                if self.command != "HEAD":
                    continue
                has_length = True
            self.send_header(k, v)
        if self.command != "HEAD" or not has_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, status, obj):
        self.reply(status, {"Content-Type": "application/json"}, json.dumps(obj).encode())

    def forward(self, upstream, body):
        """Sends the request (with ``body``) to ``upstream`` (a urlsplit result);
        returns an :class:`Upstream`. Raises OSError when the upstream fails."""
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port or 80, timeout=300)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = b"" if self.command == "HEAD" else resp.read()
            return Upstream(resp.status, resp.reason, resp.getheaders(), data)
        finally:
            conn.close()

    def relay(self, response):
        self.reply(response.status, response.headers, response.data, response.reason)

    def forward_and_relay(self, upstream, body):
        """Forwards and relays; a failed upstream is a 502 naming the error."""
        try:
            response = self.forward(upstream, body)
        except OSError as e:
            self.reply(502, {"Content-Type": "text/plain"}, f"upstream failed: {e}".encode())
            return None
        self.relay(response)
        return response


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # clients that gave up (timeouts, dropped tests) are expected here
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


def serve(server):
    """Prints ``listening on PORT`` (a test starting a proxy on port 0 reads it) and serves until interrupted."""
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
