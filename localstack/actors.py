"""The actors of one test, set up in LocalStack IAM as on AWS (test infrastructure).

Under the gate (gate.py) each actor makes its requests with its own
credentials and is held to its policy in ``policies/``: the controller and
the restore side are IAM users with access keys, the agent is the role of an
instance profile (the simulator hands its credentials out over IMDS). This
module creates them, with each policy's placeholders filled in for the test
account, and puts ``policies/bucket.json`` on the bucket. The gate exposes it
as ``POST /__gate/actors`` (see localstack/README.md for the fields).

Placeholders: ``BUCKET``, ``PREFIX``, ``ACCOUNT``, ``REGION``, ``KMS_KEY_ID`` (the
SecureString passwords' key), ``BUCKET_KMS_KEY_ID`` (the bucket's SSE-KMS key);
the default SSM paths ``/backup-cloud/jobs`` and ``/backup-cloud/secrets``
and the role names ``backup-cloud-agent`` and ``backup-cloud-prune`` are
replaced too when the test uses others, as a deployer would.

``prune`` is a role (policies/prune.json), as on AWS, where the bucket
policy lets only that role delete under ``backup/``; a test acts as it with
a session minted by ``POST /__gate/sessions``.
"""

import json
import os
import re
import secrets

POLICIES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "policies")
ACCOUNT = "000000000000"
NO_KEY = "no-customer-managed-key"  # a KMS key placeholder the test leaves unset: matches no key


def fill(text, values):
    """``text`` with each placeholder word replaced (whole words only)."""
    for word, value in values.items():
        text = re.sub(rf"\b{word}\b", value, text)
    return text


def document(name, values, overrides):
    """Policy ``name`` (e.g. ``controller``): the override text if given, else policies/NAME.json, filled."""
    text = overrides.get(name)
    if text is None:
        with open(os.path.join(POLICIES_DIR, f"{name}.json")) as f:
            text = f.read()
    elif not isinstance(text, str):
        text = json.dumps(text)
    filled = fill(text, values)
    json.loads(filled)  # refuse a broken document here, not at the first request
    return filled


def create(iam, s3, params):
    """Creates the actors; returns their names, ARNs and access keys.

    ``params``: ``bucket`` and ``prefix`` (required); ``suffix`` (names'
    suffix, default random); ``region`` (default us-east-1); ``kms_key_id``;
    ``bucket_kms_key_id``;
    ``status_prefix`` / ``secrets_prefix`` (SSM paths replacing the defaults);
    ``bucket_policy`` (default true); ``policies`` (``{"controller": text or
    document, ...}``: use these instead of policies/*.json, e.g. an old
    version a test shows to fail).
    """
    bucket, prefix = params["bucket"], params["prefix"].strip("/")
    suffix = params.get("suffix") or secrets.token_hex(4)
    role = f"backup-cloud-agent-{suffix}"
    prune_role = f"backup-cloud-prune-{suffix}"
    values = {
        "BUCKET": bucket, "PREFIX": prefix, "ACCOUNT": ACCOUNT, "REGION": params.get("region", "us-east-1"),
        "KMS_KEY_ID": params.get("kms_key_id") or NO_KEY,
        "BUCKET_KMS_KEY_ID": params.get("bucket_kms_key_id") or NO_KEY,
    }
    overrides = params.get("policies") or {}

    def adapt(text):
        text = text.replace(":role/backup-cloud-agent\"", f":role/{role}\"")
        text = text.replace(":role/backup-cloud-prune\"", f":role/{prune_role}\"")
        for default, key in (("/backup-cloud/jobs", "status_prefix"), ("/backup-cloud/secrets", "secrets_prefix")):
            if params.get(key):
                text = text.replace(f"parameter{default}/", f"parameter/{params[key].strip('/')}/")
        return text

    result = {"account": ACCOUNT, "suffix": suffix}
    for actor in ("controller", "restore"):
        user = f"backup-cloud-{actor}-{suffix}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName=actor,
                            PolicyDocument=adapt(document(actor, values, overrides)))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        result[actor] = {"user": user, "arn": f"arn:aws:iam::{ACCOUNT}:user/{user}",
                         "access_key_id": key["AccessKeyId"], "secret_access_key": key["SecretAccessKey"]}
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=document("ec2-trust", values, overrides))
    iam.put_role_policy(RoleName=role, PolicyName="instance",
                        PolicyDocument=adapt(document("instance", values, overrides)))
    profile = iam.create_instance_profile(InstanceProfileName=role)["InstanceProfile"]
    iam.add_role_to_instance_profile(InstanceProfileName=role, RoleName=role)
    result["instance"] = {"role": role, "role_arn": f"arn:aws:iam::{ACCOUNT}:role/{role}",
                          "instance_profile": role, "instance_profile_arn": profile["Arn"]}
    account_trust = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName=prune_role, AssumeRolePolicyDocument=account_trust)
    iam.put_role_policy(RoleName=prune_role, PolicyName="prune",
                        PolicyDocument=adapt(document("prune", values, overrides)))
    result["prune"] = {"role": prune_role, "role_arn": f"arn:aws:iam::{ACCOUNT}:role/{prune_role}"}
    if params.get("bucket_policy", True):
        s3.put_bucket_policy(Bucket=bucket, Policy=adapt(document("bucket", values, overrides)))
    result["bucket_policy"] = bool(params.get("bucket_policy", True))
    return result
