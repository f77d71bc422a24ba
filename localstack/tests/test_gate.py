"""Tests of the test world's AWS gate (localstack/gate.py), its evaluator and IMDS.

Run by ``make test`` before the Rust tests: ``.state/venv/bin/python -m unittest
discover -s localstack/tests``. They need LocalStack itself (not the gate) at
``BACKUP_CLOUD_TEST_LOCALSTACK`` (default http://127.0.0.1:4567) and the
evaluator built by localstack/up; each test class starts a private gate on a
free port, so settings changed here touch no other test.
"""

import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request
import uuid

import boto3
import botocore.config
import botocore.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
LOCALSTACK_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(LOCALSTACK_DIR)
sys.path.insert(0, LOCALSTACK_DIR)
import gate  # noqa: E402
import imds  # noqa: E402

UPSTREAM = os.environ.get("BACKUP_CLOUD_TEST_LOCALSTACK", "http://127.0.0.1:4567")
EVALUATOR = os.environ.get("BACKUP_CLOUD_GATE_EVALUATOR",
                           os.path.join(REPO, ".state", "iam-eval", "release", "iam-eval"))
BEFORE = os.path.join(HERE, "policies-before-issue-12")
PREFIX = "backups/prod"
NO_RETRIES = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})


def unique(prefix):
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def old_policy(name):
    with open(os.path.join(BEFORE, f"{name}.json")) as f:
        return f.read()


class Gate:
    """A private gate process for one test class."""

    def __init__(self, **settings):
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for name, value in settings.items():
            env[f"BACKUP_CLOUD_GATE_{name.upper()}"] = str(value)
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(LOCALSTACK_DIR, "gate.py"), "--port", "0", "--upstream", UPSTREAM,
             "--evaluator", EVALUATOR], stdout=subprocess.PIPE, env=env, text=True)
        line = self.proc.stdout.readline()
        match = re.match(r"listening on (\d+)", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"gate did not start: {line!r}")
        self.url = f"http://127.0.0.1:{match.group(1)}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        self.proc.stdout.close()

    def control(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/__gate/{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def client(self, service, key_id="test", secret="test", token=None, config=NO_RETRIES):
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=key_id,
                            aws_secret_access_key=secret, aws_session_token=token, config=config)

    def as_user(self, service, actor):
        return self.client(service, actor["access_key_id"], actor["secret_access_key"])

    def as_role(self, service, role, seconds=900, config=NO_RETRIES):
        creds = self.control("POST", "sessions", {"role": role, "session_name": "test", "duration_seconds": seconds})
        return self.client(service, creds["AccessKeyId"], creds["SecretAccessKey"], creds["Token"], config)


def error_of(call):
    """Runs ``call``; returns (code, HTTP status, message) of the ClientError it must raise."""
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return (e.response["Error"].get("Code"), e.response["ResponseMetadata"]["HTTPStatusCode"],
                e.response["Error"].get("Message", ""))
    raise AssertionError("the call succeeded")


class GateCase(unittest.TestCase):
    settings = {}

    @classmethod
    def setUpClass(cls):
        cls.gate = Gate(**cls.settings)

    @classmethod
    def tearDownClass(cls):
        cls.gate.stop()

    def bucket_with_actors(self, policies=None, **params):
        bucket = unique("gate-test-")
        self.gate.client("s3").create_bucket(Bucket=bucket)
        actors = self.gate.control("POST", "actors", dict(bucket=bucket, prefix=PREFIX, policies=policies or {},
                                                          **params))
        return bucket, actors


# --- the evaluator's semantics (iam-rs), pinned -------------------------------------

class EvaluatorSemantics(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.evaluator = gate.Evaluator(EVALUATOR)

    @classmethod
    def tearDownClass(cls):
        proc = cls.evaluator.proc
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()

    def decide(self, statements, action="s3:GetObject", resource="arn:aws:s3:::b/k", context=None,
               principal="arn:aws:iam::000000000000:user/u"):
        policy = {"Version": "2012-10-17", "Statement": statements}
        return self.evaluator.decide([policy], principal, [gate.gr.Check(action, resource, context)])[0]

    def allow(self, **extra):
        return dict({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}, **extra)

    def test_a_star_inside_string_equals_is_a_literal(self):
        cond = {"Condition": {"StringEquals": {"kms:ViaService": "ssm.*.amazonaws.com"}}}
        self.assertEqual(self.decide([self.allow(**cond)], context={"kms:ViaService": "ssm.us-east-1.amazonaws.com"}),
                         "NotApplicable")
        self.assertEqual(self.decide([self.allow(**cond)], context={"kms:ViaService": "ssm.*.amazonaws.com"}),
                         "Allow")

    def test_string_like_takes_wildcards(self):
        cond = {"Condition": {"StringLike": {"kms:ViaService": "ssm.?s-east-1.*.com"}}}
        self.assertEqual(self.decide([self.allow(**cond)], context={"kms:ViaService": "ssm.us-east-1.amazonaws.com"}),
                         "Allow")

    def test_string_not_equals_and_missing_keys(self):
        cond = {"Condition": {"StringNotEquals": {"aws:RequestTag/team": "red"}}}
        self.assertEqual(self.decide([self.allow(**cond)], context={"aws:RequestTag/team": "red"}), "NotApplicable")
        self.assertEqual(self.decide([self.allow(**cond)], context={"aws:RequestTag/team": "blue"}), "Allow")

    def test_explicit_deny_wins(self):
        deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"}
        self.assertEqual(self.decide([self.allow(), deny]), "Deny")
        self.assertEqual(self.decide([self.allow(), deny], resource="arn:aws:s3:::other/k"), "Allow")

    def test_not_action_and_not_resource(self):
        statement = {"Effect": "Allow", "NotAction": "s3:Delete*", "NotResource": "arn:aws:s3:::b/secret/*"}
        self.assertEqual(self.decide([statement]), "Allow")
        self.assertEqual(self.decide([statement], action="s3:DeleteObject"), "NotApplicable")
        self.assertEqual(self.decide([statement], resource="arn:aws:s3:::b/secret/x"), "NotApplicable")

    def test_if_exists(self):
        cond = {"Condition": {"StringLikeIfExists": {"s3:prefix": "backups/*"}}}
        self.assertEqual(self.decide([self.allow(**cond)], context={}), "Allow")
        self.assertEqual(self.decide([self.allow(**cond)], context={"s3:prefix": "backups/x"}), "Allow")
        self.assertEqual(self.decide([self.allow(**cond)], context={"s3:prefix": "other/"}), "NotApplicable")

    def test_null(self):
        cond = {"Condition": {"Null": {"aws:RequestTag/owner": "true"}}}
        self.assertEqual(self.decide([self.allow(**cond)], context={}), "Allow")
        self.assertEqual(self.decide([self.allow(**cond)], context={"aws:RequestTag/owner": "x"}), "NotApplicable")

    def test_bool_string_false_against_secure_transport(self):
        deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
        self.assertEqual(self.decide([self.allow(), deny], context={"aws:SecureTransport": True}), "Allow")
        self.assertEqual(self.decide([self.allow(), deny], context={"aws:SecureTransport": False}), "Deny")

    def test_set_operators_on_tag_keys(self):
        any_value = {"Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["backup-cloud:managed"]}}}
        all_values = {"Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["a", "b"]}}}
        self.assertEqual(self.decide([self.allow(**any_value)], context={"aws:TagKeys": ["x", "backup-cloud:managed"]}),
                         "Allow")
        self.assertEqual(self.decide([self.allow(**all_values)], context={"aws:TagKeys": ["a", "c"]}), "NotApplicable")
        self.assertEqual(self.decide([self.allow(**all_values)], context={"aws:TagKeys": ["a"]}), "Allow")

    def test_arn_like_and_arn_not_like(self):
        deny = {"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "*",
                "Condition": {"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::000000000000:role/backup-admin"}}}
        allow = {"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "*"}
        admin = {"aws:PrincipalArn": "arn:aws:iam::000000000000:role/backup-admin"}
        other = {"aws:PrincipalArn": "arn:aws:iam::000000000000:user/u"}
        self.assertEqual(self.decide([allow, deny], action="s3:DeleteObject", context=admin), "Allow")
        self.assertEqual(self.decide([allow, deny], action="s3:DeleteObject", context=other), "Deny")

    def test_numeric_and_date(self):
        numeric = {"Condition": {"NumericLessThanEquals": {"s3:max-keys": "10"}}}
        self.assertEqual(self.decide([self.allow(**numeric)], context={"s3:max-keys": 5}), "Allow")
        self.assertEqual(self.decide([self.allow(**numeric)], context={"s3:max-keys": 50}), "NotApplicable")
        date = {"Condition": {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}}
        self.assertEqual(self.decide([self.allow(**date)], context={"aws:CurrentTime": "2026-01-01T00:00:00Z"}),
                         "Allow")
        self.assertEqual(self.decide([self.allow(**date)], context={"aws:CurrentTime": "2031-01-01T00:00:00Z"}),
                         "NotApplicable")

    def test_actions_without_resource_level_permissions_need_star(self):
        scoped = {"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "arn:aws:ec2:*:*:instance/*"}
        star = {"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"}
        self.assertEqual(self.decide([scoped], action="ec2:DescribeInstances", resource="*"), "NotApplicable")
        self.assertEqual(self.decide([star], action="ec2:DescribeInstances", resource="*"), "Allow")

    def test_resource_policy_principal_must_match(self):
        statement = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::000000000000:user/reader"},
                     "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
        self.assertEqual(self.decide([statement], principal="arn:aws:iam::000000000000:user/reader"), "Allow")
        self.assertEqual(self.decide([statement], principal="arn:aws:iam::000000000000:user/other"),
                         "NotApplicable")


# --- identities and denials, in each service's own shape ---------------------------------

class Denials(GateCase):
    def test_s3_denial_is_access_denied_403(self):
        bucket, actors = self.bucket_with_actors()
        s3 = self.gate.as_user("s3", actors["restore"])
        code, status, message = error_of(lambda: s3.put_object(Bucket=bucket, Key=f"{PREFIX}/backup/x", Body=b"x"))
        self.assertEqual((code, status), ("AccessDenied", 403))
        self.assertIn(f"{actors['restore']['arn']} is not authorized to perform: s3:PutObject", message)

    def test_ec2_denial_is_unauthorized_operation_with_an_encoded_message(self):
        _, actors = self.bucket_with_actors()
        ec2 = self.gate.as_user("ec2", actors["restore"])
        code, status, message = error_of(lambda: ec2.describe_instances())
        self.assertEqual((code, status), ("UnauthorizedOperation", 403))
        encoded = message.rsplit("Encoded authorization failure message: ", 1)[1]
        decoded = json.loads(base64.b64decode(encoded))
        self.assertEqual(decoded["context"]["action"], "ec2:DescribeInstances")

    def test_json_denial_is_access_denied_exception_400(self):
        _, actors = self.bucket_with_actors()
        ssm = self.gate.as_user("ssm", actors["restore"])
        code, status, _ = error_of(lambda: ssm.get_parameter(Name="/backup-cloud/jobs/x"))
        self.assertEqual((code, status), ("AccessDeniedException", 400))

    def test_query_denial_is_access_denied_403(self):
        _, actors = self.bucket_with_actors()
        iam = self.gate.as_user("iam", actors["restore"])
        self.assertEqual(error_of(lambda: iam.list_users())[:2], ("AccessDenied", 403))

    def test_explicit_deny_of_the_bucket_policy_names_it(self):
        bucket, actors = self.bucket_with_actors(
            policies={"controller": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}})
        s3 = self.gate.as_user("s3", actors["controller"])
        code, status, message = error_of(lambda: s3.delete_object(Bucket=bucket, Key=f"{PREFIX}/backup/j/x"))
        self.assertEqual((code, status), ("AccessDenied", 403))
        self.assertIn("explicit deny in a resource-based policy", message)
        s3.put_object(Bucket=bucket, Key=f"{PREFIX}/elsewhere", Body=b"x")  # the rest is allowed

    def test_only_the_prune_role_deletes_backup_versions_and_deleteobjects_checks_each(self):
        bucket, actors = self.bucket_with_actors(
            policies={"controller": {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}})
        admin = self.gate.client("s3")
        key = f"{PREFIX}/backup/j/20260101T000000Z/x"
        admin.put_object(Bucket=bucket, Key=key, Body=b"x")
        versioned = {"Objects": [{"Key": key, "VersionId": "null"}], "Quiet": True}
        marker = self.gate.control("GET", "log?since=0")["next"]
        controller = self.gate.as_user("s3", actors["controller"])
        code, status, _ = error_of(lambda: controller.delete_objects(Bucket=bucket, Delete=versioned))
        self.assertEqual((code, status), ("AccessDenied", 403))
        entries = self.gate.control("GET", f"log?since={marker}&actor={actors['controller']['user']}")["entries"]
        self.assertEqual([(e["action"], e["decision"]) for e in entries], [("s3:DeleteObjectVersion", "deny")])
        creds = self.gate.control("POST", "sessions", {"role": actors["prune"]["role"], "duration_seconds": 60})
        prune = self.gate.client("s3", creds["AccessKeyId"], creds["SecretAccessKey"], creds["Token"])
        # prune.json grants DeleteObjectVersion only: a versionless delete is refused
        plain = {"Objects": [{"Key": key}], "Quiet": True}
        self.assertEqual(error_of(lambda: prune.delete_objects(Bucket=bucket, Delete=plain))[:2],
                         ("AccessDenied", 403))
        prune.delete_objects(Bucket=bucket, Delete=versioned)
        self.assertNotIn("Contents", admin.list_objects_v2(Bucket=bucket, Prefix=key))

    def test_unknown_keys_are_refused_as_each_service_does(self):
        key = "AKIA" + "X" * 16
        self.assertEqual(error_of(lambda: self.gate.client("s3", key, "x").list_buckets())[:2],
                         ("InvalidAccessKeyId", 403))
        self.assertEqual(error_of(lambda: self.gate.client("ec2", key, "x").describe_instances())[:2],
                         ("AuthFailure", 401))
        self.assertEqual(error_of(lambda: self.gate.client("ssm", key, "x").get_parameter(Name="x"))[:2],
                         ("UnrecognizedClientException", 400))

    def test_role_sessions_need_their_token_and_expire(self):
        bucket, actors = self.bucket_with_actors()
        creds = self.gate.control("POST", "sessions", {"role": actors["instance"]["role"], "duration_seconds": 3})
        wrong = self.gate.client("s3", creds["AccessKeyId"], creds["SecretAccessKey"], "not-the-token")
        self.assertEqual(error_of(lambda: wrong.list_objects_v2(Bucket=bucket))[:2], ("InvalidToken", 400))
        right = self.gate.client("s3", creds["AccessKeyId"], creds["SecretAccessKey"], creds["Token"])
        right.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/config/public-keys/")
        time.sleep(3.5)
        self.assertEqual(error_of(lambda: right.list_objects_v2(Bucket=bucket,
                                                                Prefix=f"{PREFIX}/config/public-keys/"))[:2],
                         ("ExpiredToken", 400))

    def test_the_admin_key_bypasses_iam_and_everything_is_logged(self):
        marker = self.gate.control("GET", "log?since=0")["next"]
        bucket, actors = self.bucket_with_actors()
        self.gate.client("s3").put_object(Bucket=bucket, Key="anything", Body=b"x")
        s3 = self.gate.as_user("s3", actors["restore"])
        error_of(lambda: s3.get_object(Bucket=bucket, Key="anything"))
        entries = self.gate.control("GET", f"log?since={marker}")["entries"]
        admin = [e for e in entries if e["actor"] == "admin" and e["action"] == "s3:PutObject"]
        self.assertEqual(admin[0]["resource"], f"arn:aws:s3:::{bucket}/anything")
        mine = self.gate.control("GET", f"log?since={marker}&actor={actors['restore']['user']}")["entries"]
        self.assertEqual([(e["action"], e["decision"]) for e in mine], [("s3:GetObject", "implicit-deny")])
        self.gate.control("DELETE", "log")
        self.assertEqual(self.gate.control("GET", "log?since=0")["entries"], [])


# --- the three defects of issue 12: denied before the fix, allowed after --------------------

def product_run_instances(ec2, profile, spot, token=None):
    """A RunInstances shaped like src/controller/launch.rs's."""
    tags = [{"Key": "backup-cloud:managed", "Value": "true"}, {"Key": "backup-cloud:job", "Value": "orders"}]
    params = dict(
        ImageId="ami-0123456789abcdef0", InstanceType="t3.micro", MinCount=1, MaxCount=1, UserData="#!/bin/bash\n",
        InstanceInitiatedShutdownBehavior="terminate",
        MetadataOptions={"HttpTokens": "required", "HttpEndpoint": "enabled"},
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}, {"ResourceType": "volume", "Tags": tags}],
        IamInstanceProfile={"Name": profile})
    if spot:
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": {
            "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
    if token:
        params["ClientToken"] = token
    return ec2.run_instances(**params)


class PolicyDefects(GateCase):
    settings = {"profile_delay_seconds": 0}

    def test_controller_writes_and_reads_its_lease(self):
        lease = f"{PREFIX}/leases/orders.json"
        bucket, old = self.bucket_with_actors(policies={"controller": old_policy("controller")})
        s3 = self.gate.as_user("s3", old["controller"])
        self.assertEqual(error_of(lambda: s3.put_object(Bucket=bucket, Key=lease, Body=b"{}", IfNoneMatch="*"))[:2],
                         ("AccessDenied", 403))
        bucket, new = self.bucket_with_actors()
        s3 = self.gate.as_user("s3", new["controller"])
        # no lease yet: S3 says 404 only to who may list the bucket
        self.assertEqual(error_of(lambda: s3.get_object(Bucket=bucket, Key=lease))[:2], ("NoSuchKey", 404))
        s3.put_object(Bucket=bucket, Key=lease, Body=b"{}", IfNoneMatch="*")
        self.assertEqual(s3.get_object(Bucket=bucket, Key=lease)["Body"].read(), b"{}")

    def secure_string(self, actors_params):
        kms = self.gate.client("kms")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        name = f"/backup-cloud/secrets/{unique('db-')}"
        self.gate.client("ssm").put_parameter(Name=name, Value="hunter2", Type="SecureString", KeyId=key_id)
        _, actors = self.bucket_with_actors(kms_key_id=key_id, **actors_params)
        return name, self.gate.as_role("ssm", actors["instance"]["role"])

    def test_agent_decrypts_a_password_under_a_customer_managed_key(self):
        name, ssm = self.secure_string({"policies": {"instance": old_policy("instance")}})
        code, status, message = error_of(lambda: ssm.get_parameter(Name=name, WithDecryption=True))
        self.assertEqual((code, status), ("AccessDeniedException", 400))
        self.assertIn("kms:Decrypt", message)
        name, ssm = self.secure_string({})
        self.assertEqual(ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"], "hunter2")

    def test_spot_launch(self):
        _, old = self.bucket_with_actors(policies={"controller": old_policy("controller")})
        ec2 = self.gate.as_user("ec2", old["controller"])
        code, status, message = error_of(lambda: product_run_instances(ec2, old["instance"]["instance_profile"], True))
        self.assertEqual((code, status), ("UnauthorizedOperation", 403))
        self.assertIn("spot-instances-request/*", message)
        on_demand = product_run_instances(ec2, old["instance"]["instance_profile"], False)
        self.assertTrue(on_demand["Instances"][0]["InstanceId"].startswith("i-"))
        _, new = self.bucket_with_actors()
        ec2 = self.gate.as_user("ec2", new["controller"])
        spot = product_run_instances(ec2, new["instance"]["instance_profile"], True)
        self.assertTrue(spot["Instances"][0]["InstanceId"].startswith("i-"))

    def test_controller_launches_only_tagged_instances_and_passes_only_the_agent_role(self):
        _, actors = self.bucket_with_actors()
        ec2 = self.gate.as_user("ec2", actors["controller"])
        untagged = lambda: ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1)  # noqa: E731
        self.assertEqual(error_of(untagged)[:2], ("UnauthorizedOperation", 403))
        iam = self.gate.client("iam")
        other = unique("other-role-")
        iam.create_role(RoleName=other, AssumeRolePolicyDocument="{}")
        iam.create_instance_profile(InstanceProfileName=other)
        iam.add_role_to_instance_profile(InstanceProfileName=other, RoleName=other)
        code, _, message = error_of(lambda: product_run_instances(ec2, other, False))
        self.assertEqual(code, "UnauthorizedOperation")
        self.assertIn("iam:PassRole", message)

    def test_sse_kms_bucket_backup_and_restore(self):
        key_id = self.gate.client("kms").create_key()["KeyMetadata"]["KeyId"]
        bucket = unique("gate-kms-")
        s3_admin = self.gate.client("s3")
        s3_admin.create_bucket(Bucket=bucket)
        s3_admin.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
            {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_id}}]})
        key = f"{PREFIX}/backup/orders/1/dump.gpg"
        for policies, allowed in ((old_policy("instance"), False), (None, True)):
            actors = self.gate.control("POST", "actors", {
                "bucket": bucket, "prefix": PREFIX, "bucket_kms_key_id": key_id, "bucket_policy": False,
                "policies": {"instance": policies} if policies else {}})
            agent = self.gate.as_role("s3", actors["instance"]["role"])
            if not allowed:
                code, _, message = error_of(lambda: agent.create_multipart_upload(Bucket=bucket, Key=key))
                self.assertEqual(code, "AccessDenied")
                self.assertIn("kms:GenerateDataKey", message)
                continue
            upload = agent.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
            part = agent.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"ciphertext")
            agent.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
            restore = self.gate.as_user("s3", actors["restore"])
            self.assertEqual(restore.get_object(Bucket=bucket, Key=key)["Body"].read(), b"ciphertext")
        marker_free = [e for e in self.gate.control("GET", "log?since=0")["entries"]
                       if e["action"] == "kms:Decrypt" and e["decision"] == "allow"]
        self.assertTrue(any(e["context"].get("kms:ViaService") == "s3.us-east-1.amazonaws.com" for e in marker_free))


# --- what AWS does besides IAM ----------------------------------------------------------

class EventualConsistency(GateCase):
    settings = {"consistency_seconds": 4}

    def test_a_new_instance_is_not_found_for_a_while(self):
        ec2 = self.gate.client("ec2")
        iid = ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
        self.assertEqual(error_of(lambda: ec2.describe_instances(InstanceIds=[iid]))[:2],
                         ("InvalidInstanceID.NotFound", 400))
        self.assertEqual(error_of(lambda: ec2.terminate_instances(InstanceIds=[iid]))[0], "InvalidInstanceID.NotFound")
        self.assertEqual(error_of(lambda: ec2.create_tags(Resources=[iid], Tags=[{"Key": "k", "Value": "v"}]))[0],
                         "InvalidInstanceID.NotFound")
        listed = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]]
        self.assertNotIn(iid, listed)
        time.sleep(4.2)
        found = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
        self.assertEqual(found["InstanceId"], iid)
        ec2.terminate_instances(InstanceIds=[iid])


class IdempotentLaunches(GateCase):
    settings = {"consistency_seconds": 0}

    def instances_tagged(self, value):
        ec2 = self.gate.client("ec2")
        return [i["InstanceId"] for r in ec2.describe_instances(
            Filters=[{"Name": "tag:gate-test", "Values": [value]}])["Reservations"] for i in r["Instances"]]

    def test_same_token_same_reservation_other_parameters_refused(self):
        ec2 = self.gate.client("ec2")
        token = unique("tok-")
        launch = lambda image: ec2.run_instances(  # noqa: E731
            ImageId=image, MinCount=1, MaxCount=1, ClientToken=token)["Instances"][0]["InstanceId"]
        first = launch("ami-0123456789abcdef0")
        self.assertEqual(launch("ami-0123456789abcdef0"), first)
        self.assertEqual(error_of(lambda: launch("ami-0fedcba9876543210"))[:2], ("IdempotentParameterMismatch", 400))

    def test_a_lost_response_retried_by_the_sdk_starts_one_instance(self):
        proxy = subprocess.Popen([sys.executable, os.path.join(LOCALSTACK_DIR, "faultproxy.py"), "--port", "0",
                                  "--upstream", self.gate.url], stdout=subprocess.PIPE, text=True)
        try:
            port = re.match(r"listening on (\d+)", proxy.stdout.readline()).group(1)
            rule = json.dumps({"action": "drop_response", "body_contains": "Action=RunInstances"}).encode()
            urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/__faultproxy/rules", data=rule,
                                                          method="POST"))
            ec2 = boto3.client("ec2", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                               aws_access_key_id="test", aws_secret_access_key="test",
                               config=botocore.config.Config(retries={"max_attempts": 3, "mode": "standard"}))
            token = unique("tok-")
            answer = ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1, ClientToken=token,
                                       TagSpecifications=[{"ResourceType": "instance",
                                                           "Tags": [{"Key": "gate-test", "Value": token}]}])
            self.assertEqual(answer["ResponseMetadata"]["RetryAttempts"], 1)
            self.assertEqual(self.instances_tagged(token), [answer["Instances"][0]["InstanceId"]])
        finally:
            proxy.terminate()
            proxy.wait(10)
            proxy.stdout.close()


class SsmThrottle(GateCase):
    # a slow refill, so that how fast this machine starts ten threads does not matter
    settings = {"put_parameter_rate": 0.5, "put_parameter_burst": 3}

    def put_from_ten_instances_at_once(self):
        codes = []
        clients = [self.gate.client("ssm") for _ in range(10)]
        start = threading.Barrier(10)

        def put(n):
            start.wait()
            try:
                clients[n].put_parameter(Name=f"/gate-test/throttle/{n}", Value="v", Type="String", Overwrite=True)
                codes.append("ok")
            except botocore.exceptions.ClientError as e:
                codes.append(e.response["Error"]["Code"])
        threads = [threading.Thread(target=put, args=(n,)) for n in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return codes

    def test_put_parameter_is_throttled_for_everyone_at_once(self):
        codes = self.put_from_ten_instances_at_once()
        self.assertIn("ThrottlingException", codes)
        self.assertLessEqual(codes.count("ok"), 5)
        self.gate.control("PUT", "settings", {"put_parameter_rate": 0})
        try:
            self.assertEqual(self.put_from_ten_instances_at_once(), ["ok"] * 10)
        finally:
            self.gate.control("PUT", "settings", {"put_parameter_rate": 0.5})


class PresignedUrls(GateCase):
    def test_a_presigned_url_expires(self):
        bucket = unique("gate-presign-")
        s3 = self.gate.client("s3")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="agent", Body=b"binary")
        for version in ("s3v4", "s3"):  # SigV4 (X-Amz-Expires), as the Rust SDK signs, and SigV2 (Expires)
            signer = self.gate.client("s3", config=botocore.config.Config(signature_version=version))
            url = signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "agent"},
                                                ExpiresIn=3)
            self.assertEqual(urllib.request.urlopen(url).read(), b"binary")
            time.sleep(4.1)
            with self.assertRaises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(url)
            self.assertEqual(caught.exception.code, 403)
            body = caught.exception.read().decode()
            self.assertIn("<Code>AccessDenied</Code>", body)
            self.assertIn("<Message>Request has expired</Message>", body)

    def test_a_url_presigned_for_more_than_a_week_is_refused(self):
        bucket = unique("gate-presign-week-")
        s3 = self.gate.client("s3")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="agent", Body=b"binary")
        signer = self.gate.client("s3", config=botocore.config.Config(signature_version="s3v4"))
        url = signer.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "agent"},
                                            ExpiresIn=604801)
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url)
        self.assertEqual(caught.exception.code, 400)
        self.assertIn("AuthorizationQueryParametersError", caught.exception.read().decode())

    def test_a_url_presigned_by_a_role_session_dies_with_it(self):
        bucket, actors = self.bucket_with_actors()
        key = f"{PREFIX}/jobs/spec.json"
        self.gate.client("s3").put_object(Bucket=bucket, Key=key, Body=b"{}")
        agent = self.gate.as_role("s3", actors["instance"]["role"], seconds=3,
                                  config=botocore.config.Config(signature_version="s3v4"))
        url = agent.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)
        self.assertEqual(urllib.request.urlopen(url).read(), b"{}")
        time.sleep(3.5)
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(url)
        self.assertIn("<Code>ExpiredToken</Code>", caught.exception.read().decode())


class InstanceProfiles(GateCase):
    settings = {"profile_delay_seconds": 3, "consistency_seconds": 0}

    def test_a_new_instance_profile_is_invalid_for_a_while(self):
        _, actors = self.bucket_with_actors()
        ec2 = self.gate.as_user("ec2", actors["controller"])
        profile = actors["instance"]["instance_profile"]
        code, status, message = error_of(lambda: product_run_instances(ec2, profile, False))
        self.assertEqual((code, status), ("InvalidParameterValue", 400))
        self.assertIn("Invalid IAM Instance Profile name", message)
        time.sleep(3.1)
        product_run_instances(ec2, profile, False)


class Imds(GateCase):
    def metadata(self, profile_arn, role, seconds=900):
        md = imds.Metadata("i-0123456789abcdef0", "us-east-1", "000000000000", profile_arn,
                           lambda arn: role, self.gate.url, seconds)
        server = imds.start(md)
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        return f"http://127.0.0.1:{server.server_address[1]}"

    @staticmethod
    def http(method, url, headers=None):
        request = urllib.request.Request(url, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""

    def test_token_first_then_the_roles_credentials(self):
        bucket, actors = self.bucket_with_actors()
        role = actors["instance"]["role"]
        base = self.metadata(actors["instance"]["instance_profile_arn"], role, seconds=3)
        creds_path = f"{base}/latest/meta-data/iam/security-credentials/"
        self.assertEqual(self.http("PUT", f"{base}/latest/api/token")[0], 400)
        self.assertEqual(self.http("GET", creds_path)[0], 401)
        status, token = self.http("PUT", f"{base}/latest/api/token",
                                  {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        self.assertEqual(status, 200)
        with_token = {"X-aws-ec2-metadata-token": token}
        self.assertEqual(self.http("GET", creds_path, with_token), (200, role))
        self.assertEqual(self.http("GET", creds_path + "other-role", with_token)[0], 404)
        status, body = self.http("GET", creds_path + role, with_token)
        creds = json.loads(body)
        self.assertEqual((creds["Code"], creds["Type"]), ("Success", "AWS-HMAC"))
        s3 = self.gate.client("s3", creds["AccessKeyId"], creds["SecretAccessKey"], creds["Token"])
        s3.list_objects_v2(Bucket=bucket, Prefix=f"{PREFIX}/config/public-keys/")
        time.sleep(2.1)  # a third of the lifetime left: fresh credentials
        renewed = json.loads(self.http("GET", creds_path + role, with_token)[1])
        self.assertNotEqual(renewed["AccessKeyId"], creds["AccessKeyId"])

    def test_the_sdk_finds_the_credentials_through_the_endpoint_setting(self):
        bucket, actors = self.bucket_with_actors()
        base = self.metadata(actors["instance"]["instance_profile_arn"], actors["instance"]["role"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_EC2_METADATA_SERVICE_ENDPOINT=base, AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE="IPv4",
                   AWS_ENDPOINT_URL=self.gate.url, AWS_REGION="us-east-1", HOME=os.environ.get("TMPDIR", "/tmp"),
                   AWS_CONFIG_FILE="/dev/null", AWS_SHARED_CREDENTIALS_FILE="/dev/null")
        out = subprocess.run([sys.executable, "-c", "import boto3; s = boto3.Session(); "
                              "print(s.get_credentials().method)"], env=env, capture_output=True, text=True)
        self.assertEqual(out.stdout.strip(), "iam-role", out.stderr)

    def test_no_instance_profile_no_credentials(self):
        base = self.metadata(None, None)
        _, token = self.http("PUT", f"{base}/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "60"})
        self.assertEqual(self.http("GET", f"{base}/latest/meta-data/iam/security-credentials/",
                                   {"X-aws-ec2-metadata-token": token})[0], 404)


if __name__ == "__main__":
    unittest.main()
