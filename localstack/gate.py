#!/usr/bin/env python3
"""The AWS gate: what AWS enforces and LocalStack does not (test infrastructure).

LocalStack's free edition accepts any credentials for anything, serves
presigned URLs after they expire, shows an instance the moment it is
launched, ignores ``ClientToken`` and never throttles SSM. Code that passes
against it can fail on every real run. The gate owns the public endpoint
(``localstack/up`` starts it on http://127.0.0.1:4566, LocalStack behind it)
so that every request — tests, controller, agents on simulated instances,
fault proxies — meets these rules, in this order:

1. **Presigned URL expiry**: after ``X-Amz-Date`` + ``X-Amz-Expires``, S3's
   403 ``AccessDenied`` "Request has expired".
2. **Identity** from the SigV4 access key id. The admin key (``test``; what
   fixtures and harness use to set up and verify) bypasses IAM. Other keys
   are IAM users' access keys (created in LocalStack IAM) or role sessions
   minted here (``POST /__gate/sessions``, used by the simulator's IMDS).
   Unknown key, missing/wrong session token or expired session: the error
   the service gives.
3. **IAM**: the request is mapped to actions/resources/condition keys
   (gate_requests.py, plus lookups: instance tags, the instance profile's
   role for ``iam:PassRole``, the KMS key behind SSE-KMS objects and
   SecureString parameters), and the principal's identity policies (inline
   and attached, read from LocalStack IAM) and the bucket policy are
   evaluated by ``iam-eval`` (the iam-rs crate, localstack/iam-eval).
   Denials are answered as AWS does (S3 ``AccessDenied`` 403, EC2
   ``UnauthorizedOperation`` 403 with an encoded message, JSON
   ``AccessDeniedException`` 400, IAM/STS ``AccessDenied`` 403). A GET/HEAD of
   a missing object without ``s3:ListBucket`` is 403, not 404, as on S3.
4. **Eventual consistency**: for ``consistency_seconds`` after RunInstances,
   its instances are unknown to Describe/Terminate/CreateTags by id
   (``InvalidInstanceID.NotFound``) and absent from other DescribeInstances.
5. **Idempotent launches**: RunInstances with a ``ClientToken`` seen before
   returns the first response (same parameters) or
   ``IdempotentParameterMismatch``.
6. **SSM throttle**: PutParameter through one token bucket for all callers
   (``ThrottlingException``).

RDS requests (SigV4 scope service ``rds``) and ``/__rds/`` control calls go
to the RDS world (localstack/rds.py, ``--rds-upstream``) instead of
LocalStack, after 1-3 like the rest; their resource tags for
``aws:ResourceTag/*`` are looked up there.

Every decision is logged (actor ARN, action, resource, decision):
``GET /__gate/log``. Usage: ``gate.py --upstream URL [--port N] --evaluator
PATH``; prints ``listening on PORT``. Control API (under ``/__gate/``, which
no bucket name can collide with) and environment: see localstack/README.md.
Runs with the LocalStack venv's python (boto3 for the lookups).
"""

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone

import boto3
import botocore.config
import botocore.exceptions

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import actors  # noqa: E402
import gate_requests as gr  # noqa: E402
from awsproxy import (ProxyHandler, Server, ec2_error, json_error, query_error,  # noqa: E402
                      s3_error, serve)

CONTROL = "/__gate/"
ADMIN_KEYS = {"test"}
AWS_MANAGED_KEY_ALIASES = re.compile(r"^(arn:aws:kms:[^:]*:[^:]*:)?alias/aws/")


def env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return float(default)


class Settings:
    """What the gate enforces; changed with ``PUT /__gate/settings``."""

    FIELDS = {
        "enforce": bool,                 # IAM on (default) or off (logging only)
        "consistency_seconds": float,    # NotFound window after RunInstances
        "put_parameter_rate": float,     # SSM PutParameter tokens per second (0: unlimited)
        "put_parameter_burst": float,    # bucket size
        "profile_delay_seconds": float,  # a new instance profile is "invalid" this long
    }

    def __init__(self):
        self.enforce = os.environ.get("BACKUP_CLOUD_GATE_ENFORCE", "1") != "0"
        self.consistency_seconds = env_float("BACKUP_CLOUD_GATE_CONSISTENCY_SECONDS", 3)
        self.put_parameter_rate = env_float("BACKUP_CLOUD_GATE_PUT_PARAMETER_RATE", 3)
        self.put_parameter_burst = env_float("BACKUP_CLOUD_GATE_PUT_PARAMETER_BURST", 3)
        self.profile_delay_seconds = env_float("BACKUP_CLOUD_GATE_PROFILE_DELAY_SECONDS", 2)

    def to_json(self):
        return {name: getattr(self, name) for name in self.FIELDS}

    def update(self, changes):
        for name, value in changes.items():
            if name not in self.FIELDS:
                raise ValueError(f"unknown setting {name!r}")
            setattr(self, name, self.FIELDS[name](value))


class TokenBucket:
    """``rate`` tokens per second, at most ``burst``; shared by every caller."""

    def __init__(self, settings):
        self.settings = settings
        self.lock = threading.Lock()
        self.tokens = settings.put_parameter_burst
        self.at = time.monotonic()

    def take(self):
        rate, burst = self.settings.put_parameter_rate, self.settings.put_parameter_burst
        if rate <= 0:
            return True
        with self.lock:
            now = time.monotonic()
            self.tokens = min(burst, self.tokens + (now - self.at) * rate)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class Log:
    """Every decision, numbered; ``since`` a number, cleared on request."""

    def __init__(self):
        self.lock = threading.Lock()
        self.entries = []
        self.seq = 0

    def add(self, **entry):
        with self.lock:
            self.seq += 1
            entry["seq"] = self.seq
            entry["time"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
            self.entries.append(entry)

    def since(self, seq, actor=None):
        with self.lock:
            found = [e for e in self.entries if e["seq"] > seq and (actor is None or actor in e["actor"])]
            return found, self.seq

    def clear(self):
        with self.lock:
            self.entries = []
            return self.seq


class Evaluator:
    """The iam-eval process (iam-rs behind a pipe), one request at a time."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.proc = None

    def decide(self, policies, principal, checks):
        line = json.dumps({"policies": policies, "principal": principal,
                           "checks": [c.to_json() for c in checks]}) + "\n"
        with self.lock:
            for attempt in (1, 2):
                if self.proc is None or self.proc.poll() is not None:
                    self.proc = subprocess.Popen([self.path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                 text=True, bufsize=1)
                try:
                    self.proc.stdin.write(line)
                    self.proc.stdin.flush()
                    answer = self.proc.stdout.readline()
                except OSError:
                    answer = ""
                if answer:
                    break
                self.proc = None
                if attempt == 2:
                    raise RuntimeError("iam-eval died")
        reply = json.loads(answer)
        if "error" in reply:
            raise RuntimeError(f"iam-eval: {reply['error']}")
        return reply["decisions"]


class Principal:
    """An authenticated caller that is not the admin."""

    def __init__(self, arn, principal_arn, kind, name, policies):
        self.arn = arn                      # user ARN, or the assumed-role session ARN
        self.principal_arn = principal_arn  # aws:PrincipalArn (the role for a session)
        self.kind = kind                    # "User" | "AssumedRole"
        self.name = name
        self.policies = policies            # identity policy documents

    def context(self, source_ip):
        now = datetime.now(timezone.utc)
        context = {
            "aws:PrincipalArn": self.principal_arn,
            "aws:PrincipalAccount": gr.ACCOUNT,
            "aws:PrincipalType": self.kind,
            "aws:SourceIp": source_ip,
            "aws:CurrentTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "aws:EpochTime": int(now.timestamp()),
            "aws:SecureTransport": True,
        }
        if self.kind == "User":
            context["aws:username"] = self.name
        return context


class AuthError(Exception):
    """The caller could not be authenticated: ``kind`` is unknown | token | expired | missing."""

    def __init__(self, kind):
        super().__init__(kind)
        self.kind = kind


class Sessions:
    """Role sessions minted here (what STS does for an instance profile's role)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_key = {}

    def mint(self, role, session_name, seconds):
        key_id = "ASIA" + base64.b32encode(secrets.token_bytes(10)).decode()[:16]
        expires = datetime.now(timezone.utc) + timedelta(seconds=seconds)
        session = {"role": role, "session_name": session_name, "secret": secrets.token_urlsafe(30),
                   "token": base64.b64encode(secrets.token_bytes(48)).decode(), "expires": expires}
        with self.lock:
            self.by_key[key_id] = session
        return {"AccessKeyId": key_id, "SecretAccessKey": session["secret"], "Token": session["token"],
                "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "RoleArn": f"arn:aws:iam::{gr.ACCOUNT}:role/{role}"}

    def get(self, key_id):
        with self.lock:
            return self.by_key.get(key_id)


class World:
    """Admin lookups in LocalStack (direct, not through the gate), with short-lived caches."""

    TTL = 5.0
    RDS_TAGS_TTL = 1.0

    def __init__(self, upstream_url, rds_url=None):
        cfg = botocore.config.Config(region_name="us-east-1", retries={"max_attempts": 2},
                                     connect_timeout=5, read_timeout=30)
        kw = dict(endpoint_url=upstream_url, region_name="us-east-1", aws_access_key_id="test",
                  aws_secret_access_key="test", config=cfg)
        self.iam = boto3.client("iam", **kw)
        self.s3 = boto3.client("s3", **kw)
        self.ec2 = boto3.client("ec2", **kw)
        self.ssm = boto3.client("ssm", **kw)
        self.kms = boto3.client("kms", **kw)
        self.rds = boto3.client("rds", **dict(kw, endpoint_url=rds_url or upstream_url))
        self.lock = threading.Lock()
        self.cache = {}
        self.upload_keys = {}  # multipart upload id -> KMS key ARN of a customer-managed key

    def cached(self, key, fetch):
        with self.lock:
            hit = self.cache.get(key)
            if hit and hit[0] > time.monotonic():
                return hit[1]
        value = fetch()
        with self.lock:
            self.cache[key] = (time.monotonic() + self.TTL, value)
        return value

    def forget(self, kind):
        with self.lock:
            self.cache = {k: v for k, v in self.cache.items() if k[0] != kind}

    # --- identities ---------------------------------------------------------
    def user_of_key(self, key_id):
        def fetch():
            try:
                user = self.iam.get_access_key_last_used(AccessKeyId=key_id).get("UserName")
                keys = self.iam.list_access_keys(UserName=user)["AccessKeyMetadata"]
            except botocore.exceptions.ClientError:
                return None
            active = any(k["AccessKeyId"] == key_id and k.get("Status", "Active") == "Active" for k in keys)
            return user if active else None
        return self.cached(("iam", "key", key_id), fetch)

    def policies_of(self, kind, name):
        """Inline and attached managed policy documents of a user or role."""
        def fetch():
            docs = []
            if kind == "user":
                names = self.iam.list_user_policies(UserName=name)["PolicyNames"]
                docs += [self.iam.get_user_policy(UserName=name, PolicyName=n)["PolicyDocument"] for n in names]
                attached = self.iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]
            else:
                names = self.iam.list_role_policies(RoleName=name)["PolicyNames"]
                docs += [self.iam.get_role_policy(RoleName=name, PolicyName=n)["PolicyDocument"] for n in names]
                attached = self.iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
            for policy in attached:
                version = self.iam.get_policy(PolicyArn=policy["PolicyArn"])["Policy"]["DefaultVersionId"]
                docs.append(self.iam.get_policy_version(PolicyArn=policy["PolicyArn"], VersionId=version)
                            ["PolicyVersion"]["Document"])
            return [json.loads(urllib.parse.unquote(d)) if isinstance(d, str) else d for d in docs]
        return self.cached(("iam", kind, name), fetch)

    def role_of_profile(self, profile):
        """(role ARN, created at) of an instance profile name or ARN; None when it does not exist."""
        name = profile.rsplit("/", 1)[-1]

        def fetch():
            try:
                ip = self.iam.get_instance_profile(InstanceProfileName=name)["InstanceProfile"]
            except botocore.exceptions.ClientError:
                return None
            roles = ip.get("Roles", [])
            return (roles[0]["Arn"] if roles else None, ip["CreateDate"])
        return self.cached(("iam", "profile", name), fetch)

    # --- resources ----------------------------------------------------------
    def bucket_policy(self, bucket):
        def fetch():
            try:
                return json.loads(self.s3.get_bucket_policy(Bucket=bucket)["Policy"])
            except botocore.exceptions.ClientError:
                return None
        return self.cached(("bucket", "policy", bucket), fetch)

    def bucket_kms_key(self, bucket):
        """The bucket's default SSE-KMS key id (None: no SSE-KMS default; "" the AWS managed key)."""
        def fetch():
            try:
                rules = self.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
            except botocore.exceptions.ClientError:
                return None
            for rule in rules:
                default = rule.get("ApplyServerSideEncryptionByDefault", {})
                if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
                    return default.get("KMSMasterKeyID", "")
            return None
        return self.cached(("bucket", "encryption", bucket), fetch)

    def head_object(self, bucket, key):
        """The object's headers, or None when it does not exist."""
        try:
            return self.s3.head_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError:
            return None

    def customer_key_arn(self, key_id):
        """The ARN of a customer-managed KMS key (None for AWS managed keys or no key)."""
        if not key_id or AWS_MANAGED_KEY_ALIASES.match(key_id):
            return None

        def fetch():
            try:
                meta = self.kms.describe_key(KeyId=key_id)["KeyMetadata"]
            except botocore.exceptions.ClientError:
                return None
            return meta["Arn"] if meta.get("KeyManager") == "CUSTOMER" else None
        return self.cached(("kms", key_id), fetch)

    def parameter_key(self, name):
        """The KMS key id of a SecureString parameter (None otherwise)."""
        try:
            found = self.ssm.describe_parameters(
                ParameterFilters=[{"Key": "Name", "Option": "Equals", "Values": [name]}])["Parameters"]
        except botocore.exceptions.ClientError:
            return None
        for p in found:
            if p.get("Type") == "SecureString":
                return p.get("KeyId") or "alias/aws/ssm"
        return None

    def rds_tags(self, resource_arn):
        """``{key: value}`` of an RDS resource (empty when it does not exist). Cached briefly:
        every RDS write through the gate forgets the cache, and a change made around the
        gate (directly on the RDS world) shows within ``RDS_TAGS_TTL`` seconds."""
        key = ("rds", resource_arn)
        with self.lock:
            hit = self.cache.get(key)
            if hit and hit[0] > time.monotonic():
                return hit[1]
        try:
            tags = {t["Key"]: t.get("Value", "") for t in
                    self.rds.list_tags_for_resource(ResourceName=resource_arn).get("TagList", [])}
        except botocore.exceptions.ClientError:
            tags = {}
        with self.lock:
            self.cache[key] = (time.monotonic() + self.RDS_TAGS_TTL, tags)
        return tags

    def instance_tags(self, ids):
        """``{instance id: {key: value}}`` for the ids EC2 knows."""
        if not ids:
            return {}
        try:
            pages = self.ec2.get_paginator("describe_instances").paginate(InstanceIds=ids)
            return {i["InstanceId"]: {t["Key"]: t.get("Value", "") for t in i.get("Tags", [])}
                    for page in pages for r in page["Reservations"] for i in r["Instances"]}
        except botocore.exceptions.ClientError:
            return {}


class Launches:
    """Recent launches (eventual consistency) and client tokens (idempotency)."""

    def __init__(self, settings):
        self.settings = settings
        self.lock = threading.Lock()
        self.launched = {}  # instance id -> monotonic time of launch
        self.tokens = {}    # client token -> (fingerprint, Upstream)
        self.token_locks = {}

    def record(self, ids):
        now = time.monotonic()
        with self.lock:
            for iid in ids:
                self.launched[iid] = now

    def hidden(self, ids):
        window = self.settings.consistency_seconds
        now = time.monotonic()
        with self.lock:
            return [i for i in ids if i in self.launched and now - self.launched[i] < window]

    def hidden_all(self):
        window = self.settings.consistency_seconds
        now = time.monotonic()
        with self.lock:
            return {i for i, t in self.launched.items() if now - t < window}

    def token_lock(self, token):
        """Held while a launch with ``token`` is in flight, so a retry waits for its outcome."""
        with self.lock:
            return self.token_locks.setdefault(token, threading.Lock())

    def seen(self, token):
        with self.lock:
            return self.tokens.get(token)

    def remember(self, token, fingerprint_, response):
        with self.lock:
            self.tokens[token] = (fingerprint_, response)


def fingerprint(params):
    items = sorted((k, v) for k, vs in params.items() for v in vs if k != "ClientToken")
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class Gate:
    """Everything the handler threads share."""

    def __init__(self, upstream, evaluator_path, rds_upstream=None):
        self.upstream_url = upstream
        self.upstream = urllib.parse.urlsplit(upstream)
        self.rds_upstream_url = rds_upstream or upstream
        self.rds_upstream = urllib.parse.urlsplit(self.rds_upstream_url)
        self.settings = Settings()
        self.log = Log()
        self.evaluator = Evaluator(evaluator_path)
        self.sessions = Sessions()
        self.world = World(upstream, self.rds_upstream_url)
        self.launches = Launches(self.settings)
        self.put_parameter_bucket = TokenBucket(self.settings)

    # --- identity -------------------------------------------------------------
    def principal(self, signer):
        """None for the admin key, else a :class:`Principal`; raises :class:`AuthError`."""
        key = signer.access_key_id
        if key is None:
            raise AuthError("missing")
        if key in ADMIN_KEYS:
            return None
        session = self.sessions.get(key)
        if session is not None:
            if signer.token != session["token"]:
                raise AuthError("token")
            if datetime.now(timezone.utc) >= session["expires"]:
                raise AuthError("expired")
            role = session["role"]
            return Principal(f"arn:aws:sts::{gr.ACCOUNT}:assumed-role/{role}/{session['session_name']}",
                             f"arn:aws:iam::{gr.ACCOUNT}:role/{role}", "AssumedRole", role,
                             self.world.policies_of("role", role))
        user = self.world.user_of_key(key)
        if user is None:
            raise AuthError("unknown")
        user_arn = f"arn:aws:iam::{gr.ACCOUNT}:user/{user}"
        return Principal(user_arn, user_arn, "User", user, self.world.policies_of("user", user))

    # --- lookups a call needs -------------------------------------------------
    def enrich(self, call, region):
        """Adds what only the world knows; returns an error reply or None."""
        for need in call.needs:
            kind = need[0]
            if kind == "rds-tags":
                for check in call.checks:
                    if check.resource not in need[1]:
                        continue
                    legacy = gr.RDS_TAG_KEY.get(gr.rds_arn_kind(check.resource))
                    for k, v in self.world.rds_tags(check.resource).items():
                        check.context[f"aws:ResourceTag/{k}"] = v
                        check.context[f"rds:{legacy}/{k}"] = v
            elif kind == "instance-tags":
                tags = self.world.instance_tags(need[1])
                for check in call.checks:
                    iid = check.resource.rsplit("/", 1)[-1]
                    for k, v in tags.get(iid, {}).items():
                        check.context[f"aws:ResourceTag/{k}"] = v
                        check.context[f"ec2:ResourceTag/{k}"] = v
            elif kind == "pass-role":
                found = self.world.role_of_profile(need[1])
                created = found[1] if found else None
                young = created and (datetime.now(timezone.utc) - created).total_seconds() \
                    < self.settings.profile_delay_seconds
                if found is None or found[0] is None or young:
                    field = "arn" if need[1].startswith("arn:") else "name"
                    return ec2_error("InvalidParameterValue",
                                     f"Value ({need[1]}) for parameter iamInstanceProfile.{field} is invalid. "
                                     "Invalid IAM Instance Profile name" if field == "name" else
                                     f"Value ({need[1]}) for parameter iamInstanceProfile.arn is invalid. "
                                     "Invalid IAM Instance Profile ARN", 400)
                call.check("iam:PassRole", found[0], {"iam:PassedToService": "ec2.amazonaws.com"})
            elif kind == "s3-kms-put":
                _, bucket, key, sse, sse_key, action = need
                if sse in ("aws:kms", "aws:kms:dsse"):
                    key_id = sse_key or ""
                elif sse is None:
                    key_id = self.world.bucket_kms_key(bucket)
                else:
                    key_id = None
                self.kms_check(call, action, self.world.customer_key_arn(key_id), "s3", region,
                               {"kms:EncryptionContext:aws:s3:arn": gr.s3_object_arn(bucket, key)})
            elif kind == "s3-kms-upload":
                _, bucket, key, upload_id, action = need
                with self.world.lock:
                    key_arn = self.world.upload_keys.get(upload_id)
                self.kms_check(call, action, key_arn, "s3", region,
                               {"kms:EncryptionContext:aws:s3:arn": gr.s3_object_arn(bucket, key)})
            elif kind == "s3-read":
                _, bucket, key = need
                head = self.world.head_object(bucket, key)
                if head is None:
                    call.missing_object = True
                elif call.operation == "GetObject" and head.get("ServerSideEncryption") in ("aws:kms",
                                                                                             "aws:kms:dsse"):
                    self.kms_check(call, "kms:Decrypt", self.world.customer_key_arn(head.get("SSEKMSKeyId")),
                                   "s3", region, {"kms:EncryptionContext:aws:s3:arn": gr.s3_object_arn(bucket, key)})
            elif kind == "ssm-kms":
                _, names, action = need
                for name in names:
                    self.kms_check(call, action, self.world.customer_key_arn(self.world.parameter_key(name)),
                                   "ssm", region,
                                   {"kms:EncryptionContext:PARAMETER_ARN": gr.ssm_parameter_arn(name, region)})
            elif kind == "ssm-kms-put":
                _, name, key_id, action = need
                self.kms_check(call, action, self.world.customer_key_arn(key_id or "alias/aws/ssm"), "ssm", region,
                               {"kms:EncryptionContext:PARAMETER_ARN": gr.ssm_parameter_arn(name, region)})
            elif kind == "kms-key":
                key_arn = self.world.customer_key_arn(need[1])
                for check in call.checks:
                    if check.action and check.action.startswith("kms:") and key_arn:
                        check.resource = key_arn
        return None

    @staticmethod
    def kms_check(call, action, key_arn, via, region, context):
        """The implicit KMS call a service makes for the caller (customer-managed keys only:
        AWS managed keys' key policies allow every principal of the account through the service)."""
        if key_arn:
            call.check(action, key_arn, dict(context, **{"kms:ViaService": f"{via}.{region}.amazonaws.com",
                                                         "kms:CallerAccount": gr.ACCOUNT}))

    # --- evaluation -----------------------------------------------------------
    def policies_for(self, principal, check, call):
        policies = list(principal.policies)
        if call.bucket and check.resource.startswith(f"arn:aws:s3:::{call.bucket}"):
            bucket_policy = self.world.bucket_policy(call.bucket)
            if bucket_policy:
                policies.append(bucket_policy)
        return policies

    def decide(self, principal, check, call, source_ip):
        """"Allow" | "Deny" (explicit) | "NotApplicable" (implicit deny) | "unmapped"."""
        if check.action is None:
            return "unmapped"
        check.context = dict(principal.context(source_ip), **check.context)
        return self.evaluator.decide(self.policies_for(principal, check, call), principal.arn, [check])[0]

    def explicit_deny_source(self, principal, check):
        identity = self.evaluator.decide(principal.policies, principal.arn, [check])[0]
        return "an identity-based policy" if identity == "Deny" else "a resource-based policy"


# --- errors in each protocol's shape --------------------------------------------

AUTH_ERRORS = {
    # kind: {protocol: (code, message, status)}
    "unknown": {"rest-xml": ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.",
                             403),
                "ec2": ("AuthFailure", "AWS was not able to validate the provided access credentials", 401),
                "json": ("UnrecognizedClientException", "The security token included in the request is invalid.",
                         400),
                "query": ("InvalidClientTokenId", "The security token included in the request is invalid.", 403)},
    "token": {"rest-xml": ("InvalidToken", "The provided token is malformed or otherwise invalid.", 400),
              "ec2": ("AuthFailure", "AWS was not able to validate the provided access credentials", 401),
              "json": ("UnrecognizedClientException", "The security token included in the request is invalid.", 400),
              "query": ("InvalidClientTokenId", "The security token included in the request is invalid.", 403)},
    "expired": {"rest-xml": ("ExpiredToken", "The provided token has expired.", 400),
                "ec2": ("RequestExpired", "Request has expired.", 400),
                "json": ("ExpiredTokenException", "The security token included in the request is expired", 400),
                "query": ("ExpiredToken", "The security token included in the request is expired", 403)},
    "missing": {"rest-xml": ("AccessDenied", "Access Denied", 403),
                "ec2": ("MissingAuthenticationToken", "The request must contain either a valid (registered) AWS "
                                                      "access key ID or X.509 certificate.", 401),
                "json": ("MissingAuthenticationTokenException", "Missing Authentication Token", 400),
                "query": ("MissingAuthenticationToken", "Request is missing Authentication Token", 403)},
}

ERROR_BUILDERS = {"rest-xml": s3_error, "ec2": ec2_error, "json": json_error, "query": query_error}


def error_for(protocol, code, message, status):
    return ERROR_BUILDERS[protocol](code, message, status)


def denial(call, principal, check, decision, deny_source):
    """The service's own AccessDenied for ``check``."""
    action = check.action or f"{call.service}:{call.operation}"
    resource = check.resource
    if decision == "Deny":
        why = f"with an explicit deny in {deny_source}"
    else:
        why = f"because no identity-based policy allows the {action} action"
    message = f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource} {why}"
    if call.protocol == "rest-xml":
        return s3_error("AccessDenied", message, 403)
    if call.protocol == "ec2":
        encoded = base64.b64encode(json.dumps({
            "allowed": False, "explicitDeny": decision == "Deny",
            "context": {"principal": {"arn": principal.arn}, "action": action, "resource": resource,
                        "conditions": check.context},
        }, default=str).encode()).decode()
        return ec2_error("UnauthorizedOperation",
                         f"You are not authorized to perform this operation. {message}. "
                         f"Encoded authorization failure message: {encoded}", 403)
    if call.protocol == "json":
        return json_error("AccessDeniedException", message, 400)
    if call.service == "rds":
        status, headers, body = query_error("AccessDenied", message, 403)
        return status, headers, body.replace(b"<ErrorResponse>",
                                             b'<ErrorResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/">')
    return query_error("AccessDenied", message, 403)


# SigV4 presigned URLs live at most a week (S3 API Reference, "Authenticating
# Requests: Using Query Parameters").
MAX_PRESIGN_SECONDS = 604800


def presign_expired(signer):
    """The S3 error for a presigned URL past its expiry, or None."""
    if not signer.presigned:
        return None
    try:
        if signer.date and signer.expires:
            if int(signer.expires) > MAX_PRESIGN_SECONDS:
                return s3_error("AuthorizationQueryParametersError",
                                "X-Amz-Expires must be less than a week (in seconds) that is 604800", 400)
            expires = (datetime.strptime(signer.date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
                       + timedelta(seconds=int(signer.expires)))
            extra = {"X-Amz-Expires": signer.expires}
        elif signer.expires_epoch:
            expires = datetime.fromtimestamp(int(signer.expires_epoch), timezone.utc)
            extra = {}
        else:
            return None
    except ValueError:
        return s3_error("AuthorizationQueryParametersError", "The presigned URL's expiry is malformed.", 400)
    now = datetime.now(timezone.utc)
    if now <= expires:
        return None
    return s3_error("AccessDenied", "Request has expired", 403,
                    dict(extra, Expires=iso(expires), ServerTime=iso(now)))


class Handler(ProxyHandler):
    server_version = "gate"

    def handle_any(self):
        gate = self.server.gate
        url = urllib.parse.urlsplit(self.path)
        if url.path.startswith(CONTROL):
            self.control(url.path[len(CONTROL):], urllib.parse.parse_qs(url.query))
            return
        body = self.read_body()
        if url.path.startswith("/__rds/"):
            self.forward_and_relay(gate.rds_upstream, body)
            return
        if url.path.startswith("/_localstack/"):
            self.forward_and_relay(gate.upstream, body)
            return
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        signer = gr.signer_of(self.headers, query)
        call = gr.parse(self.command, url.path, query, self.headers, body, signer)
        call.missing_object = False
        region = signer.region or "us-east-1"

        expired = presign_expired(signer)
        if expired:
            self.record(call, "presigned-url", "expired")
            self.reply(*expired)
            return
        try:
            principal = gate.principal(signer)
        except AuthError as e:
            code, message, status = AUTH_ERRORS[e.kind][call.protocol]
            self.record(call, f"key {signer.access_key_id or '-'}", f"auth:{code}")
            self.reply(*error_for(call.protocol, code, message, status))
            return
        if principal is None:
            self.record(call, "admin", "admin")
        elif not gate.settings.enforce:
            self.record(call, principal.arn, "not-enforced")
        elif not self.authorize(call, principal, region):
            return
        self.forward_in_world(call, body)

    def record(self, call, actor, decision, checks=None):
        for check in checks or call.checks or [gr.Check(None, "*")]:
            self.server.gate.log.add(actor=actor, service=call.service, operation=call.operation,
                                     action=check.action, resource=check.resource, decision=decision,
                                     context={k: v for k, v in check.context.items()
                                              if not k.startswith(("aws:CurrentTime", "aws:EpochTime"))})

    def authorize(self, call, principal, region):
        """Evaluates every check; on a denial answers it and returns False."""
        gate = self.server.gate
        error = gate.enrich(call, region)
        if error:
            self.record(call, principal.arn, "refused:" + "InvalidParameterValue")
            self.reply(*error)
            return False
        source_ip = self.client_address[0]
        for check in call.checks:
            decision = gate.decide(principal, check, call, source_ip)
            self.record(call, principal.arn, decision.lower() if decision != "NotApplicable" else "implicit-deny",
                        [check])
            if decision != "Allow":
                source = gate.explicit_deny_source(principal, check) if decision == "Deny" else None
                self.reply(*denial(call, principal, check, decision, source))
                return False
        if call.missing_object:
            # S3: a missing key is 404 only to who may list the bucket, else 403.
            listing = gr.Check("s3:ListBucket", f"arn:aws:s3:::{call.bucket}", {"aws:SecureTransport": True})
            decision = gate.decide(principal, listing, call, source_ip)
            self.record(call, principal.arn, "allow" if decision == "Allow" else "implicit-deny", [listing])
            if decision != "Allow":
                self.reply(*s3_error("AccessDenied", "Access Denied", 403))
                return False
        return True

    # --- what AWS does besides IAM -----------------------------------------------
    def forward_in_world(self, call, body):
        gate = self.server.gate
        op = call.operation
        if call.service == "ec2" and op == "RunInstances":
            token = gr.first(call.params, "ClientToken")
            if token:
                with gate.launches.token_lock(token):
                    self.run_instances(call, body, token)
                return
            self.run_instances(call, body, None)
            return
        if call.service == "ec2":
            ids = (gr.indexed(call.params, "InstanceId") + ([gr.first(call.params, "InstanceId")]
                                                            if "InstanceId" in call.params else [])
                   + [r for r in gr.indexed(call.params, "ResourceId") if r.startswith("i-")])
            hidden = gate.launches.hidden(ids)
            if hidden and (op in gr.INSTANCE_ID_OPERATIONS or op in ("DescribeInstances", "DescribeInstanceStatus",
                                                                     "CreateTags", "DeleteTags")):
                quoted = ", ".join(hidden)
                message = (f"The instance ID '{quoted}' does not exist" if len(hidden) == 1
                           else f"The instance IDs '{quoted}' do not exist")
                self.reply(*ec2_error("InvalidInstanceID.NotFound", message, 400))
                return
            if op == "DescribeInstances":
                response = self.forward_or_502(body)
                if response is not None:
                    self.relay_without(response, gate.launches.hidden_all())
                return
        if call.service == "rds":
            response = self.forward_and_relay(gate.rds_upstream, body)
            if response is not None and not op.startswith(("Describe", "List")):
                gate.world.forget("rds")
            return
        if call.service == "ssm" and op == "PutParameter" and not gate.put_parameter_bucket.take():
            self.reply(*json_error("ThrottlingException", "Rate exceeded", 400))
            return
        response = self.forward_and_relay(gate.upstream, body)
        if response is not None and response.status < 300:
            self.after(call, response)

    def forward_or_502(self, body):
        try:
            return self.forward(self.server.gate.upstream, body)
        except OSError as e:
            self.reply(502, {"Content-Type": "text/plain"}, f"upstream failed: {e}".encode())
            return None

    def run_instances(self, call, body, token):
        gate = self.server.gate
        if token:
            seen = gate.launches.seen(token)
            if seen is not None:
                if seen[0] != fingerprint(call.params):
                    self.reply(*ec2_error("IdempotentParameterMismatch",
                                          "Arguments on this idempotent request are inconsistent with arguments "
                                          "used in previous request(s).", 400))
                else:
                    self.relay(seen[1])
                return
        response = self.forward_or_502(body)
        if response is None:
            return
        if response.status == 200:
            gate.launches.record(i.decode() for i in re.findall(rb"<instanceId>(i-[0-9a-zA-Z]+)</instanceId>",
                                                                 response.data))
            if token:
                gate.launches.remember(token, fingerprint(call.params), response)
        self.relay(response)

    def relay_without(self, response, hidden):
        """Relays a DescribeInstances answer minus the instances still hidden."""
        if response.status != 200 or not hidden or not any(i.encode() in response.data for i in hidden):
            self.relay(response)
            return
        root = ET.fromstring(response.data)
        ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
        q = (lambda t: f"{{{ns}}}{t}") if ns else (lambda t: t)
        for rset in root.iter(q("reservationSet")):
            for reservation in list(rset):
                for iset in reservation.iter(q("instancesSet")):
                    for item in list(iset):
                        if item.findtext(q("instanceId")) in hidden:
                            iset.remove(item)
                    if len(iset) == 0:
                        rset.remove(reservation)
        if ns:
            ET.register_namespace("", ns)
        data = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)
        self.reply(200, response.headers, data, response.reason)

    def after(self, call, response):
        """Remembers what later requests depend on; forgets what the request changed."""
        gate = self.server.gate
        if call.service == "iam" and not call.operation.startswith(("Get", "List")):
            gate.world.forget("iam")
        if call.service == "s3" and call.operation in ("PutBucketPolicy", "DeleteBucketPolicy",
                                                       "PutEncryptionConfiguration"):
            gate.world.forget("bucket")
        if call.service == "s3" and call.operation == "CreateMultipartUpload":
            key_id = dict((k.lower(), v) for k, v in response.headers).get(
                "x-amz-server-side-encryption-aws-kms-key-id")
            upload = re.search(rb"<UploadId>([^<]+)</UploadId>", response.data)
            key_arn = gate.world.customer_key_arn(key_id)
            if upload and key_arn:
                with gate.world.lock:
                    gate.world.upload_keys[upload.group(1).decode()] = key_arn

    # --- control API ---------------------------------------------------------------
    def control(self, what, query):
        gate = self.server.gate
        body = self.read_body()
        status, reply = 200, {}
        try:
            if what == "health" and self.command == "GET":
                reply = {"ok": True, "upstream": gate.upstream_url, "rds_upstream": gate.rds_upstream_url}
            elif what == "settings" and self.command == "GET":
                reply = gate.settings.to_json()
            elif what == "settings" and self.command in ("PUT", "POST"):
                gate.settings.update(json.loads(body or b"{}"))
                reply = gate.settings.to_json()
            elif what == "sessions" and self.command == "POST":
                req = json.loads(body or b"{}")
                reply = gate.sessions.mint(req["role"], req.get("session_name", "gate-session"),
                                           int(req.get("duration_seconds", 900)))
            elif what == "log" and self.command == "GET":
                entries, last = gate.log.since(int(gr.first(query, "since", "0")), gr.first(query, "actor"))
                reply = {"entries": entries, "next": last}
            elif what == "log" and self.command == "DELETE":
                reply = {"next": gate.log.clear()}
            elif what == "actors" and self.command == "POST":
                reply = actors.create(gate.world.iam, gate.world.s3, json.loads(body or b"{}"))
                gate.world.forget("iam")
                gate.world.forget("bucket")
            else:
                status, reply = 404, {"error": f"no control endpoint {self.command} {what}"}
        except (ValueError, TypeError, KeyError) as e:
            status, reply = 400, {"error": f"{type(e).__name__}: {e}"}
        except botocore.exceptions.ClientError as e:
            status, reply = 502, {"error": str(e)}
        self.reply_json(status, reply)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", default=os.environ.get("BACKUP_CLOUD_GATE_UPSTREAM", "http://127.0.0.1:4567"))
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--evaluator", default=os.environ.get(
        "BACKUP_CLOUD_GATE_EVALUATOR", os.path.join(os.path.dirname(here), ".state", "iam-eval", "release",
                                                    "iam-eval")))
    parser.add_argument("--rds-upstream", default=os.environ.get("BACKUP_CLOUD_GATE_RDS_UPSTREAM",
                                                                  "http://127.0.0.1:4568"),
                        help="the RDS world (localstack/rds.py)")
    args = parser.parse_args()
    if not os.access(args.evaluator, os.X_OK):
        sys.exit(f"gate: no iam-eval binary at {args.evaluator} (localstack/up builds it)")
    server = Server(("127.0.0.1", args.port), Handler)
    server.gate = Gate(args.upstream, args.evaluator, args.rds_upstream)
    return serve(server)


if __name__ == "__main__":
    sys.exit(main())
