"""What an AWS request asks for, in IAM's terms (test infrastructure for gate.py).

The gate enforces IAM in front of LocalStack; to do so it must know, for
each HTTP request, who signed it and which IAM action(s) on which resource
ARN(s) it needs, with which condition keys. This module answers that from
the request alone (method, path, query, headers, body): no lookups. What
only the world knows (an instance's tags, the role behind an instance
profile, the KMS key of an object or a parameter) is added by gate.py from
the ``needs`` each :class:`Call` lists.

Sources: the Service Authorization Reference ("Actions, resources, and
condition keys" for Amazon S3, EC2, Systems Manager, KMS, Amazon RDS —
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonrds.html)
and the EC2 guide's
"Resource-level permissions for RunInstances" (a RunInstances authorizes
the instance, volume, network interface, security group, subnet, image,
key pair and, for spot, the spot-instances-request; tags given at launch
also need ec2:CreateTags with ``ec2:CreateAction``).

RDS (the RDS world, localstack/rds.py): every ARN an operation names is
checked, ``arn:aws:rds:REGION:ACCOUNT:db:ID``, ``snapshot:ID``, ``cluster:ID``,
``cluster-snapshot:ID``, ``subgrp:NAME``, ``pg:NAME``, ``cluster-pg:NAME``,
``og:NAME``, ``secgrp:NAME`` (a Describe without an identifier: ``db:*`` etc.).
A resource the call creates carries ``aws:RequestTag/K``, ``aws:TagKeys``
and the legacy ``rds:req-tag/K``; a create or restore with ``Tags`` also
needs ``rds:AddTagsToResource`` on the new resource with the same keys.
Existing db/snapshot/cluster/cluster-snapshot resources get
``aws:ResourceTag/K`` and the legacy ``rds:db-tag/K``, ``rds:snapshot-tag/K``,
``rds:cluster-tag/K``, ``rds:cluster-snapshot-tag/K`` from a lookup by the
gate (need ``("rds-tags", [arns])``). Create/restore of an instance also
carries ``rds:DatabaseEngine``, ``rds:DatabaseClass``, ``rds:MultiAz``,
``rds:StorageSize`` when given. A DeleteDBInstance/DeleteDBCluster with a final
snapshot also needs ``rds:CreateDBSnapshot``/``rds:CreateDBClusterSnapshot`` on it.

An operation this module does not know maps to ``action=None``: the gate
refuses it for every non-admin principal (fail closed) and logs it as
``unmapped``, so a gap shows up as a denial naming the operation.
"""

import json
import re
import urllib.parse
import xml.etree.ElementTree as ET

ACCOUNT = "000000000000"  # LocalStack's default account, where the `test` key and IAM users live

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")


class Signer:
    """Who signed a request: access key id, region and service of the SigV4 scope.

    A presigned URL also carries when it expires: ``date`` + ``expires``
    (SigV4's ``X-Amz-Date``, ``X-Amz-Expires`` seconds) or ``expires_epoch``
    (SigV2's ``Expires``, seconds since the epoch).
    """

    def __init__(self, access_key_id=None, region="us-east-1", service=None, token=None, presigned=False,
                 date=None, expires=None, expires_epoch=None):
        self.access_key_id = access_key_id
        self.region = region
        self.service = service
        self.token = token
        self.presigned = presigned
        self.date = date
        self.expires = expires
        self.expires_epoch = expires_epoch


def signer_of(headers, query):
    """The :class:`Signer` of a request (header or presigned-URL SigV4; SigV2 URLs by key only)."""
    auth = headers.get("Authorization", "")
    m = _CREDENTIAL.search(auth)
    if m:
        return Signer(m.group(1), m.group(3), m.group(4), headers.get("X-Amz-Security-Token"))
    credential = first(query, "X-Amz-Credential")
    if credential:
        parts = credential.split("/")
        if len(parts) >= 5:
            return Signer(parts[0], parts[2], parts[3], first(query, "X-Amz-Security-Token"), presigned=True,
                          date=first(query, "X-Amz-Date"), expires=first(query, "X-Amz-Expires"))
    if first(query, "AWSAccessKeyId"):
        return Signer(first(query, "AWSAccessKeyId"), service="s3", token=first(query, "x-amz-security-token"),
                      presigned=True, expires_epoch=first(query, "Expires"))
    return Signer()


def first(params, name, default=None):
    values = params.get(name)
    return values[0] if values else default


class Check:
    """One authorization: ``action`` on ``resource`` with condition ``context``."""

    def __init__(self, action, resource, context=None):
        self.action = action
        self.resource = resource
        self.context = dict(context or {})

    def to_json(self):
        return {"action": self.action, "resource": self.resource, "context": self.context}


class Call:
    """A request as IAM sees it.

    ``service`` (``s3``, ``ec2``, ``ssm``, ``kms``, ``iam``, ``sts``...), ``operation``
    (API name), ``protocol`` (``rest-xml``, ``ec2``, ``query``, ``json``: the shape of
    its errors), ``checks`` (list of :class:`Check`), ``params`` (the query/form
    or JSON parameters), and ``needs``: lookups gate.py does before evaluating
    (``("instance-tags", [ids])``, ``("pass-role", profile)``, ``("s3-kms-put",
    bucket, key, sse, sse_key_id, action)``, ``("s3-kms-upload", bucket, key, upload_id,
    action)``, ``("s3-read", bucket, key)``, ``("ssm-kms", names, action)``,
    ``("ssm-kms-put", name, key_id, action)``, ``("kms-key", key_id)``).
    """

    def __init__(self, service, operation, protocol, params=None):
        self.service = service
        self.operation = operation
        self.protocol = protocol
        self.params = params or {}
        self.checks = []
        self.needs = []
        self.bucket = None  # S3 calls: the bucket whose policy applies

    def check(self, action, resource, context=None):
        c = Check(action, resource, context)
        self.checks.append(c)
        return c


def arn(service, region, resource, account=ACCOUNT):
    return f"arn:aws:{service}:{region}:{account}:{resource}"


# --- parsing ------------------------------------------------------------------

def parse(method, path, query, headers, body, signer):
    """The :class:`Call` of a request; ``query`` is ``parse_qs`` of the query string."""
    region = signer.region or "us-east-1"
    target = headers.get("X-Amz-Target")
    content_type = headers.get("Content-Type", "")
    if target:
        return _json_call(target, body, region, signer.service)
    form = None
    if "x-www-form-urlencoded" in content_type and method == "POST":
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    elif "Action" in query and signer.service not in (None, "s3"):
        form = query
    if form is not None and "Action" in form:
        service = signer.service or "ec2"
        if service == "ec2":
            return _ec2_call(form, region)
        if service == "rds":
            return _rds_call(form, region)
        call = Call(service, first(form, "Action"), "query", form)
        if (service, call.operation) != ("sts", "GetCallerIdentity"):  # needs no permission on AWS
            call.check(f"{service}:{call.operation}", _topic_or_star(service, first(form, "TopicArn")))
        return call
    return _s3_call(method, path, query, headers, body, region)


# --- AWS JSON services (SSM, KMS) ---------------------------------------------

def _json_call(target, body, region, scope_service):
    prefix, _, operation = target.partition(".")
    service = {"AmazonSSM": "ssm", "TrentService": "kms", "secretsmanager": "secretsmanager"}.get(
        prefix, scope_service or prefix.lower())
    try:
        params = json.loads(body or b"{}")
    except ValueError:
        params = {}
    call = Call(service, operation, "json", params)
    if service == "ssm":
        _ssm_checks(call, region)
    elif service == "kms":
        key = params.get("KeyId")
        if key:
            call.needs.append(("kms-key", key))
        call.check(f"kms:{operation}", "*")  # resource filled in by gate.py when the key is known
    else:
        call.check(f"{service}:{operation}", _topic_or_star(service, params.get("TopicArn")))
    return call


def _topic_or_star(service, topic_arn):
    """The resource of an SNS call on a topic (its ARN), else ``*``."""
    return topic_arn if service == "sns" and topic_arn else "*"


def ssm_parameter_arn(name, region):
    """The ARN of an SSM parameter; public parameters (``/aws/service/...``) have no account."""
    name = name.lstrip("/")
    account = "" if name.startswith("aws/service/") else ACCOUNT
    return arn("ssm", region, f"parameter/{name}", account)


def _ssm_checks(call, region):
    p = call.params
    op = call.operation
    action = f"ssm:{op}"
    if op in ("GetParameter", "PutParameter", "DeleteParameter", "GetParameterHistory", "LabelParameterVersion"):
        names = [p.get("Name", "")]
    elif op in ("GetParameters", "DeleteParameters"):
        names = list(p.get("Names", []))
    elif op == "GetParametersByPath":
        names = [p.get("Path", "")]
    elif op in ("AddTagsToResource", "RemoveTagsFromResource", "ListTagsForResource"):
        names = [p.get("ResourceId", "")]
    else:
        call.check(action, "*")
        return
    for name in names:
        context = {}
        if op == "PutParameter" and p.get("Tags"):
            _request_tags(context, {t.get("Key"): t.get("Value", "") for t in p["Tags"]})
        if op == "PutParameter":
            context["ssm:Overwrite"] = "true" if p.get("Overwrite") else "false"
        call.check(action, ssm_parameter_arn(name, region), context)
    if op in ("GetParameter", "GetParameters", "GetParametersByPath") and p.get("WithDecryption"):
        call.needs.append(("ssm-kms", names, "kms:Decrypt"))
    if op == "PutParameter" and p.get("Type") == "SecureString":
        call.needs.append(("ssm-kms-put", p.get("Name", ""), p.get("KeyId"), "kms:Encrypt"))


def _request_tags(context, tags):
    for k, v in tags.items():
        context[f"aws:RequestTag/{k}"] = v
    if tags:
        context["aws:TagKeys"] = sorted(tags)


# --- EC2 -------------------------------------------------------------------------

def indexed(params, prefix):
    """Values of ``prefix.1``, ``prefix.2``... in order (EC2's list encoding)."""
    pat = re.compile(re.escape(prefix) + r"\.(\d+)$")
    found = sorted((int(m.group(1)), v[0]) for k, v in params.items() if (m := pat.match(k)))
    return [v for _, v in found]


def tag_specifications(params):
    """``{resource type: {key: value}}`` from ``TagSpecification.N``."""
    specs = {}
    n = 1
    while f"TagSpecification.{n}.ResourceType" in params:
        base = f"TagSpecification.{n}"
        rtype = first(params, f"{base}.ResourceType")
        tags = specs.setdefault(rtype, {})
        m = 1
        while f"{base}.Tag.{m}.Key" in params:
            tags[first(params, f"{base}.Tag.{m}.Key")] = first(params, f"{base}.Tag.{m}.Value", "")
            m += 1
        n += 1
    return specs


RESOURCE_PREFIXES = {
    "i-": "instance", "vol-": "volume", "eni-": "network-interface", "sg-": "security-group",
    "subnet-": "subnet", "ami-": "image", "snap-": "snapshot", "sir-": "spot-instances-request",
    "lt-": "launch-template", "vpc-": "vpc",
}


def ec2_resource_arn(resource_id, region):
    for prefix, rtype in RESOURCE_PREFIXES.items():
        if resource_id.startswith(prefix):
            account = "" if rtype == "image" else ACCOUNT
            return arn("ec2", region, f"{rtype}/{resource_id}", account)
    return arn("ec2", region, f"*/{resource_id}")


INSTANCE_ID_OPERATIONS = {
    "TerminateInstances", "StopInstances", "StartInstances", "RebootInstances",
    "ModifyInstanceAttribute", "DescribeInstanceAttribute", "GetConsoleOutput",
}

# EC2 actions without resource-level permissions (Describe*, and a few others).
_NO_RESOURCE = re.compile(r"^(Describe|Get(?!ConsoleOutput))")


def _ec2_call(form, region):
    op = first(form, "Action")
    call = Call("ec2", op, "ec2", form)
    base = {"ec2:Region": region}
    if op == "RunInstances":
        _run_instances_checks(call, region)
    elif op in INSTANCE_ID_OPERATIONS:
        ids = indexed(form, "InstanceId") or ([first(form, "InstanceId")] if "InstanceId" in form else [])
        for iid in ids:
            call.check(f"ec2:{op}", ec2_resource_arn(iid, region), dict(base))
        call.needs.append(("instance-tags", ids))
    elif op in ("CreateTags", "DeleteTags"):
        ids = indexed(form, "ResourceId")
        tags = {}
        m = 1
        while f"Tag.{m}.Key" in form:
            tags[first(form, f"Tag.{m}.Key")] = first(form, f"Tag.{m}.Value", "")
            m += 1
        for rid in ids:
            context = dict(base)
            _request_tags(context, tags)
            call.check(f"ec2:{op}", ec2_resource_arn(rid, region), context)
        call.needs.append(("instance-tags", [r for r in ids if r.startswith("i-")]))
    elif _NO_RESOURCE.match(op):
        call.check(f"ec2:{op}", "*", dict(base))
    else:
        call.check(None, "*")  # unmapped: refused for principals
    return call


def _run_instances_checks(call, region):
    p = call.params
    specs = tag_specifications(p)
    spot = (first(p, "InstanceMarketOptions.MarketType") or "").lower() == "spot"
    base = {"ec2:Region": region}

    def launched(rtype, extra=None):
        context = dict(base, **(extra or {}))
        _request_tags(context, specs.get(rtype, {}))
        call.check("ec2:RunInstances", arn("ec2", region, f"{rtype}/*"), context)

    instance_context = {
        "ec2:InstanceType": first(p, "InstanceType", "m1.small"),
        "ec2:InstanceMarketType": "spot" if spot else "on-demand",
    }
    if first(p, "MetadataOptions.HttpTokens"):
        instance_context["ec2:MetadataHttpTokens"] = first(p, "MetadataOptions.HttpTokens")
    profile = first(p, "IamInstanceProfile.Arn") or first(p, "IamInstanceProfile.Name")
    if first(p, "IamInstanceProfile.Arn"):
        instance_context["ec2:InstanceProfile"] = first(p, "IamInstanceProfile.Arn")
    launched("instance", instance_context)
    launched("volume")
    launched("network-interface")
    groups = indexed(p, "SecurityGroupId") or ["*"]
    for group in groups:
        call.check("ec2:RunInstances", arn("ec2", region, f"security-group/{group}"), dict(base))
    call.check("ec2:RunInstances", arn("ec2", region, f"subnet/{first(p, 'SubnetId', '*')}"), dict(base))
    call.check("ec2:RunInstances", arn("ec2", region, f"image/{first(p, 'ImageId', '*')}", ""), dict(base))
    if first(p, "KeyName"):
        call.check("ec2:RunInstances", arn("ec2", region, f"key-pair/{first(p, 'KeyName')}"), dict(base))
    template = first(p, "LaunchTemplate.LaunchTemplateId") or first(p, "LaunchTemplate.LaunchTemplateName")
    if template:
        call.check("ec2:RunInstances", arn("ec2", region, f"launch-template/{template}"), dict(base))
    if spot:
        launched("spot-instances-request")
    # Tagging on create is authorized as ec2:CreateTags too, per tagged resource type.
    for rtype, tags in specs.items():
        context = dict(base, **{"ec2:CreateAction": "RunInstances"})
        _request_tags(context, tags)
        call.check("ec2:CreateTags", arn("ec2", region, f"{rtype}/*"), context)
    if profile:
        call.needs.append(("pass-role", profile))


# --- RDS --------------------------------------------------------------------------------

# legacy per-type tag keys (rds:db-tag/K ...) of the resource types whose tags the gate looks up
RDS_TAG_KEY = {"db": "db-tag", "snapshot": "snapshot-tag", "cluster": "cluster-tag",
               "cluster-snapshot": "cluster-snapshot-tag"}


def rds_arn(region, kind, ident):
    """The ARN of an RDS resource named by identifier or ARN."""
    if ident.startswith("arn:"):
        return ident
    return arn("rds", region, f"{kind}:{ident}")


def rds_arn_kind(resource_arn):
    """``db``, ``snapshot``, ``cluster``... of an RDS ARN."""
    parts = resource_arn.split(":")
    return parts[5] if len(parts) > 6 else None


def rds_request_tags(params):
    """``{key: value}`` of ``Tags.Tag.N`` (what botocore sends) or ``Tags.member.N``."""
    tags = {}
    for style in ("Tag", "member"):
        n = 1
        while f"Tags.{style}.{n}.Key" in params:
            tags[first(params, f"Tags.{style}.{n}.Key")] = first(params, f"Tags.{style}.{n}.Value", "")
            n += 1
    return tags


def _rds_call(form, region):
    op = first(form, "Action")
    call = Call("rds", op, "query", form)
    p = lambda name: first(form, name)  # noqa: E731
    tags = rds_request_tags(form)
    looked_up = []

    def existing(action, kind, ident):
        resource = rds_arn(region, kind, ident)
        if ident != "*" and rds_arn_kind(resource) in RDS_TAG_KEY:
            looked_up.append(resource)
        return call.check(action, resource)

    def created(action, kind, ident, extra=None):
        context = dict(extra or {})
        _request_tags(context, tags)
        for k, v in tags.items():
            context[f"rds:req-tag/{k}"] = v
        return call.check(action, rds_arn(region, kind, ident or "*"), context)

    def tag_on_create(kind, ident):
        if tags:
            created("rds:AddTagsToResource", kind, ident)

    def groups(action, cluster=False):
        for name, kind in (("DBSubnetGroupName", "subgrp"), ("OptionGroupName", "og"),
                           ("DBClusterParameterGroupName" if cluster else "DBParameterGroupName",
                            "cluster-pg" if cluster else "pg")):
            if p(name):
                call.check(action, rds_arn(region, kind, p(name)))
        for group in (indexed(form, "DBSecurityGroups.DBSecurityGroupName")
                      + indexed(form, "DBSecurityGroups.member")):
            call.check(action, rds_arn(region, "secgrp", group))

    def instance_keys():
        context = {}
        for key, name in (("rds:DatabaseEngine", "Engine"), ("rds:DatabaseClass", "DBInstanceClass"),
                          ("rds:MultiAz", "MultiAZ"), ("rds:StorageSize", "AllocatedStorage")):
            if p(name) is not None:
                context[key] = p(name)
        return context

    action = f"rds:{op}"
    if op == "DescribeDBInstances":
        existing(action, "db", p("DBInstanceIdentifier") or "*")
    elif op == "DescribeDBSnapshots":
        existing(action, "snapshot", p("DBSnapshotIdentifier") or "*")
        if p("DBInstanceIdentifier"):
            existing(action, "db", p("DBInstanceIdentifier"))
    elif op == "DescribeDBClusters":
        existing(action, "cluster", p("DBClusterIdentifier") or "*")
    elif op == "DescribeDBClusterSnapshots":
        existing(action, "cluster-snapshot", p("DBClusterSnapshotIdentifier") or "*")
        if p("DBClusterIdentifier"):
            existing(action, "cluster", p("DBClusterIdentifier"))
    elif op == "CreateDBInstance":
        created(action, "db", p("DBInstanceIdentifier"), instance_keys())
        groups(action)
        if p("DBClusterIdentifier"):
            existing(action, "cluster", p("DBClusterIdentifier"))
        tag_on_create("db", p("DBInstanceIdentifier"))
    elif op == "RestoreDBInstanceFromDBSnapshot":
        created(action, "db", p("DBInstanceIdentifier"), instance_keys())
        existing(action, "snapshot", p("DBSnapshotIdentifier") or "*")
        groups(action)
        tag_on_create("db", p("DBInstanceIdentifier"))
    elif op == "RestoreDBInstanceToPointInTime":
        created(action, "db", p("TargetDBInstanceIdentifier"), instance_keys())
        if p("SourceDBInstanceIdentifier"):
            existing(action, "db", p("SourceDBInstanceIdentifier"))
        elif p("SourceDBInstanceAutomatedBackupsArn"):
            call.check(action, p("SourceDBInstanceAutomatedBackupsArn"))
        else:
            existing(action, "db", "*")
        groups(action)
        tag_on_create("db", p("TargetDBInstanceIdentifier"))
    elif op == "CreateDBCluster":
        created(action, "cluster", p("DBClusterIdentifier"),
                {"rds:DatabaseEngine": p("Engine")} if p("Engine") else None)
        groups(action, cluster=True)
        tag_on_create("cluster", p("DBClusterIdentifier"))
    elif op == "RestoreDBClusterToPointInTime":
        created(action, "cluster", p("DBClusterIdentifier"))
        existing(action, "cluster", p("SourceDBClusterIdentifier") or "*")
        groups(action, cluster=True)
        tag_on_create("cluster", p("DBClusterIdentifier"))
    elif op == "RestoreDBClusterFromSnapshot":
        created(action, "cluster", p("DBClusterIdentifier"))
        existing(action, "cluster-snapshot", p("SnapshotIdentifier") or "*")
        groups(action, cluster=True)
        tag_on_create("cluster", p("DBClusterIdentifier"))
    elif op == "ModifyDBInstance":
        existing(action, "db", p("DBInstanceIdentifier") or "*")
        groups(action)
    elif op == "ModifyDBCluster":
        existing(action, "cluster", p("DBClusterIdentifier") or "*")
        groups(action, cluster=True)
    elif op == "DeleteDBInstance":
        existing(action, "db", p("DBInstanceIdentifier") or "*")
        if p("FinalDBSnapshotIdentifier"):
            created("rds:CreateDBSnapshot", "snapshot", p("FinalDBSnapshotIdentifier"))
    elif op == "DeleteDBCluster":
        existing(action, "cluster", p("DBClusterIdentifier") or "*")
        if p("FinalDBSnapshotIdentifier"):
            created("rds:CreateDBClusterSnapshot", "cluster-snapshot", p("FinalDBSnapshotIdentifier"))
    elif op == "CreateDBSnapshot":
        existing(action, "db", p("DBInstanceIdentifier") or "*")
        created(action, "snapshot", p("DBSnapshotIdentifier"))
        tag_on_create("snapshot", p("DBSnapshotIdentifier"))
    elif op == "DeleteDBSnapshot":
        existing(action, "snapshot", p("DBSnapshotIdentifier") or "*")
    elif op == "DeleteDBClusterSnapshot":
        existing(action, "cluster-snapshot", p("DBClusterSnapshotIdentifier") or "*")
    elif op == "CreateDBClusterSnapshot":
        existing(action, "cluster", p("DBClusterIdentifier") or "*")
        created(action, "cluster-snapshot", p("DBClusterSnapshotIdentifier"))
        tag_on_create("cluster-snapshot", p("DBClusterSnapshotIdentifier"))
    elif op == "AddTagsToResource":
        check = existing(action, "db", p("ResourceName") or "*")
        _request_tags(check.context, tags)
        for k, v in tags.items():
            check.context[f"rds:req-tag/{k}"] = v
    elif op == "RemoveTagsFromResource":
        check = existing(action, "db", p("ResourceName") or "*")
        keys = indexed(form, "TagKeys.member")
        if keys:
            check.context["aws:TagKeys"] = sorted(keys)
    elif op == "ListTagsForResource":
        existing(action, "db", p("ResourceName") or "*")
    else:
        call.check(None, "*")  # unmapped: refused for principals
    if looked_up:
        call.needs.append(("rds-tags", looked_up))
    return call


# --- S3 ---------------------------------------------------------------------------

# Bucket sub-resources: query parameter -> (GET, PUT, DELETE) action names.
_BUCKET_SUBRESOURCES = {
    "policy": ("GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
    "encryption": ("GetEncryptionConfiguration", "PutEncryptionConfiguration", "PutEncryptionConfiguration"),
    "versioning": ("GetBucketVersioning", "PutBucketVersioning", None),
    "object-lock": ("GetBucketObjectLockConfiguration", "PutBucketObjectLockConfiguration", None),
    "lifecycle": ("GetLifecycleConfiguration", "PutLifecycleConfiguration", "PutLifecycleConfiguration"),
    "location": ("GetBucketLocation", None, None),
    "tagging": ("GetBucketTagging", "PutBucketTagging", "PutBucketTagging"),
    "acl": ("GetBucketAcl", "PutBucketAcl", None),
    "cors": ("GetBucketCORS", "PutBucketCORS", "PutBucketCORS"),
    "publicAccessBlock": ("GetBucketPublicAccessBlock", "PutBucketPublicAccessBlock",
                          "PutBucketPublicAccessBlock"),
    "ownershipControls": ("GetBucketOwnershipControls", "PutBucketOwnershipControls",
                          "PutBucketOwnershipControls"),
    "uploads": ("ListBucketMultipartUploads", None, None),
    "versions": ("ListBucketVersions", None, None),
}

_OBJECT_SUBRESOURCES = {
    "retention": ("GetObjectRetention", "PutObjectRetention"),
    "legal-hold": ("GetObjectLegalHold", "PutObjectLegalHold"),
    "tagging": ("GetObjectTagging", "PutObjectTagging"),
    "acl": ("GetObjectAcl", "PutObjectAcl"),
    "attributes": ("GetObjectAttributes", None),
}


def s3_object_arn(bucket, key):
    return f"arn:aws:s3:::{bucket}/{key}"


def _s3_call(method, path, query, headers, body, region):
    parts = urllib.parse.unquote(path).lstrip("/").split("/", 1)
    bucket = parts[0] or None
    key = parts[1] if len(parts) > 1 and parts[1] != "" else None
    sub = set(query)
    call = Call("s3", f"{method} {'object' if key else 'bucket' if bucket else 'service'}", "rest-xml", query)
    call.bucket = bucket
    base = {"aws:SecureTransport": True}
    if bucket is None:
        call.operation = "ListBuckets"
        call.check("s3:ListAllMyBuckets", "*", base)
        return call
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if key is None:
        action = None
        for name, actions in _BUCKET_SUBRESOURCES.items():
            if name in sub:
                index = {"GET": 0, "HEAD": 0, "PUT": 1, "DELETE": 2}.get(method)
                action = actions[index] if index is not None else None
                break
        else:
            if method == "POST" and "delete" in sub:
                call.operation = "DeleteObjects"
                # per object, as DeleteObject would: one naming a version
                # needs s3:DeleteObjectVersion
                for obj_key, versioned in _delete_keys(body):
                    action = "s3:DeleteObjectVersion" if versioned else "s3:DeleteObject"
                    call.check(action, s3_object_arn(bucket, obj_key), base)
                return call
            action = {"GET": "ListBucket", "HEAD": "ListBucket", "PUT": "CreateBucket",
                      "DELETE": "DeleteBucket"}.get(method)
        call.operation = action or call.operation
        context = dict(base)
        # s3:prefix and friends apply to ListObjects(V2) and ListObjectVersions
        # (Service Authorization Reference for Amazon S3)
        if action in ("ListBucket", "ListBucketVersions") and method == "GET":
            for name in ("prefix", "delimiter", "max-keys"):
                if name in query:
                    context[f"s3:{name}"] = first(query, name, "")
        call.check(f"s3:{action}" if action else None, bucket_arn, context)
        return call
    obj_arn = s3_object_arn(bucket, key)
    version = "versionId" in sub
    if "uploadId" in sub:
        action = {"GET": "ListMultipartUploadParts", "PUT": "PutObject", "POST": "PutObject",
                  "DELETE": "AbortMultipartUpload"}.get(method)
        call.operation = {"GET": "ListParts", "PUT": "UploadPart", "POST": "CompleteMultipartUpload",
                          "DELETE": "AbortMultipartUpload"}.get(method, call.operation)
    elif method == "POST" and "uploads" in sub:
        action, call.operation = "PutObject", "CreateMultipartUpload"
    else:
        action = None
        for name, (get, put) in _OBJECT_SUBRESOURCES.items():
            if name in sub:
                action = get if method in ("GET", "HEAD") else put if method == "PUT" else None
                call.operation = action or call.operation
                break
        else:
            if method in ("GET", "HEAD"):
                action = "GetObjectVersion" if version else "GetObject"
                call.operation = "GetObject" if method == "GET" else "HeadObject"
            elif method == "PUT":
                action = "PutObject"
                call.operation = "CopyObject" if headers.get("x-amz-copy-source") else "PutObject"
            elif method == "DELETE":
                action = "DeleteObjectVersion" if version else "DeleteObject"
                call.operation = "DeleteObject"
    call.check(f"s3:{action}" if action else None, obj_arn, base)
    source = headers.get("x-amz-copy-source")
    if source and method == "PUT":
        src = urllib.parse.unquote(source.split("?")[0]).lstrip("/")
        call.check("s3:GetObject", f"arn:aws:s3:::{src}", base)
    if method == "PUT" and action == "PutObject" and (
            headers.get("x-amz-object-lock-mode") or headers.get("x-amz-object-lock-retain-until-date")):
        call.check("s3:PutObjectRetention", obj_arn, base)
    if method == "PUT" and action == "PutObject" and headers.get("x-amz-object-lock-legal-hold"):
        call.check("s3:PutObjectLegalHold", obj_arn, base)
    if method == "DELETE" and headers.get("x-amz-bypass-governance-retention", "").lower() == "true":
        call.check("s3:BypassGovernanceRetention", obj_arn, base)
    if call.operation in ("PutObject", "CreateMultipartUpload"):
        call.needs.append(("s3-kms-put", bucket, key, headers.get("x-amz-server-side-encryption"),
                           headers.get("x-amz-server-side-encryption-aws-kms-key-id"), "kms:GenerateDataKey"))
    elif call.operation in ("UploadPart", "CompleteMultipartUpload"):
        call.needs.append(("s3-kms-upload", bucket, key, first(query, "uploadId"), "kms:Decrypt"))
    elif call.operation in ("GetObject", "HeadObject"):
        call.needs.append(("s3-read", bucket, key))
    return call


def _delete_keys(body):
    """The ``(key, names a version)`` of each ``Object`` of a DeleteObjects body."""
    try:
        root = ET.fromstring(body or b"<Delete/>")
    except ET.ParseError:
        return []
    def tag(el):
        return el.tag.rsplit("}", 1)[-1]
    found = []
    for obj in (el for el in root.iter() if tag(el) == "Object"):
        fields = {tag(child): child.text or "" for child in obj}
        found.append((fields.get("Key", ""), "VersionId" in fields))
    return found
