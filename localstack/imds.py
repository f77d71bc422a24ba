"""An IMDSv2 endpoint per simulated instance (test infrastructure for simulator.py).

On EC2 an instance has no keys in its environment: the SDKs and the aws CLI
ask the instance metadata service for the credentials of the role in the
instance profile, IMDSv2-style (a PUT for a session token first; requests
without it are refused with 401). The simulator runs one of these per
instance on a loopback port and points the instance at it with
``AWS_EC2_METADATA_SERVICE_ENDPOINT`` (honoured by the Rust SDK, botocore and
the aws CLI), so the agent's credential chain runs as on EC2.

Served (everything else 404):

* ``PUT /latest/api/token`` with ``X-aws-ec2-metadata-token-ttl-seconds``
  (1..21600; else 400) -> a token;
* with ``X-aws-ec2-metadata-token`` (missing or expired: 401):
  ``/latest/meta-data/instance-id``, ``.../placement/region``,
  ``.../placement/availability-zone``, ``/latest/dynamic/instance-identity/document``,
  ``.../iam/info``, ``.../iam/security-credentials/`` (the role name) and
  ``.../iam/security-credentials/ROLE`` (``AccessKeyId``, ``SecretAccessKey``,
  ``Token``, ``Expiration``...). No instance profile, or a profile without a
  role: the iam paths are 404, as on EC2.

Credentials are minted by the gate (``POST /__gate/sessions``), expire after
``credential_seconds`` and are replaced by fresh ones when a third of their
life (at most 5 minutes) is left, like EC2's rotation.
"""

import json
import secrets
import threading
import time
import urllib.request
from datetime import datetime, timedelta, timezone

from awsproxy import ProxyHandler, Server

MAX_TOKEN_TTL = 21600


class Metadata:
    """What one instance's IMDS knows; ``role`` is looked up lazily by ``resolve_role``."""

    def __init__(self, instance_id, region, account, profile_arn, resolve_role, gate_url, credential_seconds):
        self.instance_id = instance_id
        self.region = region
        self.account = account
        self.profile_arn = profile_arn
        self.resolve_role = resolve_role  # profile ARN -> role name or None
        self.gate_url = gate_url.rstrip("/")
        self.credential_seconds = credential_seconds
        self.lock = threading.Lock()
        self.tokens = {}                  # token -> expiry (monotonic)
        self.role = None
        self.credentials = None           # last minted, with "expires_at" (datetime)

    def new_token(self, ttl):
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = time.monotonic() + ttl
        return token

    def token_valid(self, token):
        with self.lock:
            expiry = self.tokens.get(token or "")
        return expiry is not None and time.monotonic() < expiry

    def role_name(self):
        if self.profile_arn and self.role is None:
            self.role = self.resolve_role(self.profile_arn)
        return self.role

    def current_credentials(self):
        with self.lock:
            creds = self.credentials
            now = datetime.now(timezone.utc)
            refresh_at = min(timedelta(seconds=300), timedelta(seconds=self.credential_seconds / 3))
            if creds is None or creds["expires_at"] - now <= refresh_at:
                creds = self.mint()
                self.credentials = creds
            return creds

    def mint(self):
        request = urllib.request.Request(
            f"{self.gate_url}/__gate/sessions", method="POST",
            data=json.dumps({"role": self.role, "session_name": self.instance_id,
                             "duration_seconds": self.credential_seconds}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            minted = json.load(response)
        minted["expires_at"] = datetime.strptime(minted["Expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=timezone.utc)
        minted["LastUpdated"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return minted


class Handler(ProxyHandler):
    server_version = "EC2ws"

    def text(self, status, body, content_type="text/plain"):
        self.reply(status, {"Content-Type": content_type}, body.encode())

    def handle_any(self):
        md = self.server.metadata
        path = self.path.split("?", 1)[0]
        self.read_body()
        if self.command == "PUT" and path == "/latest/api/token":
            try:
                ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
            except ValueError:
                ttl = 0
            if not 1 <= ttl <= MAX_TOKEN_TTL:
                self.text(400, "")
                return
            token = md.new_token(ttl)
            self.reply(200, {"Content-Type": "text/plain", "X-aws-ec2-metadata-token-ttl-seconds": str(ttl)},
                       token.encode())
            return
        if self.command not in ("GET", "HEAD"):
            self.text(405, "")
            return
        if not md.token_valid(self.headers.get("X-aws-ec2-metadata-token")):
            self.text(401, "")
            return
        self.serve(md, path)

    def serve(self, md, path):
        simple = {
            "/latest/meta-data/instance-id": md.instance_id,
            "/latest/meta-data/placement/region": md.region,
            "/latest/meta-data/placement/availability-zone": md.region + "a",
        }
        if path in simple:
            self.text(200, simple[path])
            return
        if path == "/latest/dynamic/instance-identity/document":
            self.text(200, json.dumps({"instanceId": md.instance_id, "region": md.region, "accountId": md.account,
                                       "availabilityZone": md.region + "a"}), "application/json")
            return
        creds_path = "/latest/meta-data/iam/security-credentials/"
        role = md.role_name() if path.startswith("/latest/meta-data/iam/") else None
        if path == "/latest/meta-data/iam/info" and role:
            self.text(200, json.dumps({"Code": "Success", "InstanceProfileArn": md.profile_arn,
                                       "InstanceProfileId": "AIPA" + md.instance_id[2:].upper()}))
        elif path in (creds_path, creds_path.rstrip("/")) and role:
            self.text(200, role)
        elif path == creds_path + (role or "\0"):
            creds = md.current_credentials()
            self.text(200, json.dumps({
                "Code": "Success", "LastUpdated": creds["LastUpdated"], "Type": "AWS-HMAC",
                "AccessKeyId": creds["AccessKeyId"], "SecretAccessKey": creds["SecretAccessKey"],
                "Token": creds["Token"], "Expiration": creds["Expiration"]}))
        else:
            self.text(404, "")


def start(metadata):
    """Serves ``metadata`` on 127.0.0.1 (any free port) in a thread; returns the server."""
    server = Server(("127.0.0.1", 0), Handler)
    server.metadata = metadata
    threading.Thread(target=server.serve_forever, daemon=True, name=f"imds-{metadata.instance_id}").start()
    return server
