"""Tests of the RDS world (localstack/rds.py) and the gate's IAM for RDS (gate_requests.py).

``RdsMapping`` checks the request-to-IAM table without any server. ``RdsWorld``
starts a private RDS world (its own state dir under .state/, server ports
57000-57499) and a private gate in front of it and LocalStack (for IAM users),
and drives real PostgreSQL and MariaDB servers through boto3 with the admin
key: create, write, snapshot, write after, restore, reset the master password,
read the restored data with the new password, delete; the same for Aurora
clusters (aurora-postgresql snapshot/restore/reset/delete, an aurora-mysql
copy-on-write clone). Needs LocalStack at
``BACKUP_CLOUD_TEST_LOCALSTACK`` and the evaluator built by localstack/up, as
test_gate.py does; runs as root (the servers run as postgres/mysql).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import unittest
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import botocore.config
import botocore.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
LOCALSTACK_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(LOCALSTACK_DIR)
sys.path.insert(0, LOCALSTACK_DIR)
import gate_requests as gr  # noqa: E402

UPSTREAM = os.environ.get("BACKUP_CLOUD_TEST_LOCALSTACK", "http://127.0.0.1:4567")
EVALUATOR = os.environ.get("BACKUP_CLOUD_GATE_EVALUATOR",
                           os.path.join(REPO, ".state", "iam-eval", "release", "iam-eval"))
NO_RETRIES = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})
DB = "arn:aws:rds:us-east-1:000000000000:db:"
SNAP = "arn:aws:rds:us-east-1:000000000000:snapshot:"
CLUSTER = "arn:aws:rds:us-east-1:000000000000:cluster:"


def rds_call(**params):
    body = urllib.parse.urlencode(dict(params, Version="2014-10-31")).encode()
    signer = gr.Signer("AKIDEXAMPLE", "us-east-1", "rds")
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
    return gr.parse("POST", "/", {}, headers, body, signer)


def checks(call):
    return [(c.action, c.resource) for c in call.checks]


class RdsMapping(unittest.TestCase):
    def test_describe_without_identifier_is_every_db(self):
        self.assertEqual(checks(rds_call(Action="DescribeDBInstances")), [("rds:DescribeDBInstances", DB + "*")])
        call = rds_call(Action="DescribeDBInstances", DBInstanceIdentifier="a")
        self.assertEqual(checks(call), [("rds:DescribeDBInstances", DB + "a")])
        self.assertEqual(call.needs, [("rds-tags", [DB + "a"])])
        self.assertEqual(call.protocol, "query")

    def test_restore_from_snapshot_with_tags_and_groups(self):
        call = rds_call(Action="RestoreDBInstanceFromDBSnapshot", DBInstanceIdentifier="tmp1",
                        DBSnapshotIdentifier="snap1", DBSubnetGroupName="sub", DBParameterGroupName="pg1",
                        OptionGroupName="og1", DBInstanceClass="db.t3.micro",
                        **{"Tags.Tag.1.Key": "backup-cloud:job", "Tags.Tag.1.Value": "j1"})
        self.assertEqual(checks(call), [
            ("rds:RestoreDBInstanceFromDBSnapshot", DB + "tmp1"),
            ("rds:RestoreDBInstanceFromDBSnapshot", SNAP + "snap1"),
            ("rds:RestoreDBInstanceFromDBSnapshot", "arn:aws:rds:us-east-1:000000000000:subgrp:sub"),
            ("rds:RestoreDBInstanceFromDBSnapshot", "arn:aws:rds:us-east-1:000000000000:og:og1"),
            ("rds:RestoreDBInstanceFromDBSnapshot", "arn:aws:rds:us-east-1:000000000000:pg:pg1"),
            ("rds:AddTagsToResource", DB + "tmp1"),
        ])
        new_db = call.checks[0].context
        self.assertEqual(new_db["aws:RequestTag/backup-cloud:job"], "j1")
        self.assertEqual(new_db["aws:TagKeys"], ["backup-cloud:job"])
        self.assertEqual(new_db["rds:req-tag/backup-cloud:job"], "j1")
        self.assertEqual(new_db["rds:DatabaseClass"], "db.t3.micro")
        self.assertEqual(call.checks[-1].context["aws:TagKeys"], ["backup-cloud:job"])
        self.assertNotIn("aws:RequestTag/backup-cloud:job", call.checks[1].context)  # the snapshot exists
        self.assertEqual(call.needs, [("rds-tags", [SNAP + "snap1"])])

    def test_point_in_time_checks_source_and_target(self):
        call = rds_call(Action="RestoreDBInstanceToPointInTime", SourceDBInstanceIdentifier="prod",
                        TargetDBInstanceIdentifier="tmp2", UseLatestRestorableTime="true")
        self.assertEqual(checks(call), [("rds:RestoreDBInstanceToPointInTime", DB + "tmp2"),
                                        ("rds:RestoreDBInstanceToPointInTime", DB + "prod")])
        self.assertEqual(call.needs, [("rds-tags", [DB + "prod"])])

    def test_cluster_operations(self):
        call = rds_call(Action="RestoreDBClusterToPointInTime", DBClusterIdentifier="tmpc",
                        SourceDBClusterIdentifier="prodc", RestoreType="copy-on-write",
                        UseLatestRestorableTime="true")
        self.assertEqual(checks(call), [
            ("rds:RestoreDBClusterToPointInTime", "arn:aws:rds:us-east-1:000000000000:cluster:tmpc"),
            ("rds:RestoreDBClusterToPointInTime", "arn:aws:rds:us-east-1:000000000000:cluster:prodc")])
        call = rds_call(Action="RestoreDBClusterFromSnapshot", DBClusterIdentifier="c2", SnapshotIdentifier="cs1",
                        Engine="aurora-postgresql")
        self.assertIn(("rds:RestoreDBClusterFromSnapshot",
                       "arn:aws:rds:us-east-1:000000000000:cluster-snapshot:cs1"), checks(call))
        for op in ("ModifyDBCluster", "DeleteDBCluster", "DescribeDBClusters"):
            self.assertEqual(checks(rds_call(Action=op, DBClusterIdentifier="c3")),
                             [(f"rds:{op}", "arn:aws:rds:us-east-1:000000000000:cluster:c3")])
        call = rds_call(Action="CreateDBCluster", DBClusterIdentifier="c4", Engine="aurora-postgresql",
                        **{"Tags.Tag.1.Key": "env", "Tags.Tag.1.Value": "prod"})
        self.assertEqual(checks(call), [("rds:CreateDBCluster", "arn:aws:rds:us-east-1:000000000000:cluster:c4"),
                                        ("rds:AddTagsToResource", "arn:aws:rds:us-east-1:000000000000:cluster:c4")])
        self.assertEqual(call.checks[0].context["rds:DatabaseEngine"], "aurora-postgresql")
        self.assertEqual(call.checks[0].context["aws:RequestTag/env"], "prod")
        self.assertEqual(checks(rds_call(Action="DeleteDBClusterSnapshot", DBClusterSnapshotIdentifier="cs2")),
                         [("rds:DeleteDBClusterSnapshot",
                           "arn:aws:rds:us-east-1:000000000000:cluster-snapshot:cs2")])
        self.assertEqual(checks(rds_call(Action="DescribeDBClusterSnapshots")),
                         [("rds:DescribeDBClusterSnapshots", "arn:aws:rds:us-east-1:000000000000:cluster-snapshot:*")])

    def test_modify_delete_snapshot_tags(self):
        self.assertEqual(checks(rds_call(Action="ModifyDBInstance", DBInstanceIdentifier="t", ApplyImmediately="true",
                                         MasterUserPassword="x" * 10)),
                         [("rds:ModifyDBInstance", DB + "t")])
        self.assertEqual(checks(rds_call(Action="DeleteDBInstance", DBInstanceIdentifier="t",
                                         SkipFinalSnapshot="true")), [("rds:DeleteDBInstance", DB + "t")])
        self.assertEqual(checks(rds_call(Action="DeleteDBInstance", DBInstanceIdentifier="t",
                                         FinalDBSnapshotIdentifier="fin")),
                         [("rds:DeleteDBInstance", DB + "t"), ("rds:CreateDBSnapshot", SNAP + "fin")])
        self.assertEqual(checks(rds_call(Action="CreateDBSnapshot", DBInstanceIdentifier="t",
                                         DBSnapshotIdentifier="s")),
                         [("rds:CreateDBSnapshot", DB + "t"), ("rds:CreateDBSnapshot", SNAP + "s")])
        self.assertEqual(checks(rds_call(Action="DescribeDBSnapshots", DBSnapshotIdentifier="s")),
                         [("rds:DescribeDBSnapshots", SNAP + "s")])
        call = rds_call(Action="AddTagsToResource", ResourceName=SNAP + "s",
                        **{"Tags.Tag.1.Key": "k", "Tags.Tag.1.Value": "v"})
        self.assertEqual(checks(call), [("rds:AddTagsToResource", SNAP + "s")])
        self.assertEqual(call.checks[0].context["aws:TagKeys"], ["k"])
        self.assertEqual(checks(rds_call(Action="ListTagsForResource", ResourceName=DB + "t")),
                         [("rds:ListTagsForResource", DB + "t")])
        self.assertEqual(checks(rds_call(Action="CreateDBInstance", DBInstanceIdentifier="n", Engine="postgres",
                                         **{"Tags.member.1.Key": "a", "Tags.member.1.Value": "b"})),
                         [("rds:CreateDBInstance", DB + "n"), ("rds:AddTagsToResource", DB + "n")])

    def test_unmapped_fails_closed(self):
        self.assertEqual(checks(rds_call(Action="RebootDBInstance", DBInstanceIdentifier="t")), [(None, "*")])


# --- the world, end to end ------------------------------------------------------------------

def start_listening(argv, name, stderr=None):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=stderr, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    line = proc.stdout.readline()
    m = re.match(r"listening on (\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"{name} did not start: {line!r}")
    return proc, f"http://127.0.0.1:{m.group(1)}"


def error_of(call):
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return (e.response["Error"].get("Code"), e.response["ResponseMetadata"]["HTTPStatusCode"],
                e.response["Error"].get("Message", ""))
    raise AssertionError("the call succeeded")


def port_open(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def psql(port, user, password, sql):
    return subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port),
                           "-U", user, "-d", "postgres", "-c", sql],
                          env=dict(os.environ, PGPASSWORD=password, PGCONNECT_TIMEOUT="5"),
                          capture_output=True, text=True, timeout=30)


def mariadb(port, user, password, sql):
    return subprocess.run(["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(port), "-u", user,
                           f"-p{password}", "-N", "-B", "--connect-timeout=5", "-e", sql],
                          capture_output=True, text=True, timeout=30)


ENGINES = {
    "postgres": (psql, "CREATE TABLE t (x int); INSERT INTO t VALUES (1);", "INSERT INTO t VALUES (2);",
                 "SELECT x FROM t ORDER BY x"),
    "mariadb": (mariadb, "CREATE DATABASE app; CREATE TABLE app.t (x int); INSERT INTO app.t VALUES (1);",
                "INSERT INTO app.t VALUES (2);", "SELECT x FROM app.t ORDER BY x"),
}


@unittest.skipUnless(os.geteuid() == 0, "the RDS world runs its servers as postgres/mysql: needs root")
class RdsWorld(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.state = os.path.join(REPO, ".state", f"rds-test-{uuid.uuid4().hex[:8]}")
        cls.world, cls.world_url = start_listening(
            [sys.executable, os.path.join(LOCALSTACK_DIR, "rds.py"), "--port", "0", "--state-dir", cls.state,
             "--server-ports", "57000-57499"], "rds world",
            open(os.path.join(REPO, ".state", "rds-test.log"), "a"))  # noqa: SIM115 - the world's log
        cls.gate, cls.url = start_listening(
            [sys.executable, os.path.join(LOCALSTACK_DIR, "gate.py"), "--port", "0", "--upstream", UPSTREAM,
             "--rds-upstream", cls.world_url, "--evaluator", EVALUATOR], "gate")

    @classmethod
    def tearDownClass(cls):
        for proc in (cls.gate, cls.world):
            proc.terminate()
            proc.wait(30)
            proc.stdout.close()
        shutil.rmtree(cls.state, ignore_errors=True)

    def client(self, key="test", secret="test"):
        return boto3.client("rds", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=key,
                            aws_secret_access_key=secret, config=NO_RETRIES)

    def control(self, method, path):
        req = urllib.request.Request(f"{self.url}/__rds/{path}", method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.load(r)

    def wait(self, rds, db, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = rds.describe_db_instances(DBInstanceIdentifier=db)["DBInstances"][0]
            if d["DBInstanceStatus"] == "available":
                return d
            self.assertIn(d["DBInstanceStatus"], ("creating", "backing-up", "resetting-master-credentials"), db)
            if d["DBInstanceStatus"] == "creating":
                self.assertNotIn("Endpoint", d)
            time.sleep(0.2)
        self.fail(f"{db} not available after {timeout}s")

    def wait_snapshot(self, rds, snap):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            s = rds.describe_db_snapshots(DBSnapshotIdentifier=snap)["DBSnapshots"][0]
            if s["Status"] == "available":
                self.assertIn("SnapshotCreateTime", s)
                return s
            self.assertNotIn("SnapshotCreateTime", s)
            time.sleep(0.2)
        self.fail(f"snapshot {snap} not available")

    def test_snapshot_restore_reset_delete(self):
        rds = self.client()
        t0 = time.monotonic()
        suffix = uuid.uuid4().hex[:6]
        src = {e: f"src-{e}-{suffix}" for e in ENGINES}
        for engine, db in src.items():
            created = rds.create_db_instance(
                DBInstanceIdentifier=db, Engine=engine, DBInstanceClass="db.t3.micro", AllocatedStorage=20,
                MasterUsername="master", MasterUserPassword="first-pw-1",
                Tags=[{"Key": "env", "Value": "prod"}])["DBInstance"]
            self.assertEqual(created["DBInstanceStatus"], "creating")
            self.assertNotIn("Endpoint", created)
        # as AWS: no password reset and no snapshot while creating
        code, status, _ = error_of(lambda: rds.modify_db_instance(
            DBInstanceIdentifier=src["postgres"], MasterUserPassword="other-pw-1", ApplyImmediately=True))
        self.assertEqual((code, status), ("InvalidDBInstanceState", 400))
        ports = {}
        for engine, db in src.items():
            d = self.wait(rds, db)
            self.assertEqual(d["Endpoint"]["Address"], "127.0.0.1")
            self.assertEqual(d["TagList"], [{"Key": "env", "Value": "prod"}])
            ports[engine] = d["Endpoint"]["Port"]
            run, setup, after, query = ENGINES[engine]
            r = run(ports[engine], "master", "first-pw-1", setup)
            self.assertEqual(r.returncode, 0, r.stderr)
            rds.create_db_snapshot(DBInstanceIdentifier=db, DBSnapshotIdentifier=f"{db}-snap")
        for engine, db in src.items():
            self.wait_snapshot(rds, f"{db}-snap")
            self.wait(rds, db)
            run, setup, after, query = ENGINES[engine]
            r = run(ports[engine], "master", "first-pw-1", after)
            self.assertEqual(r.returncode, 0, r.stderr)
            tmp = f"tmp-{engine}-{suffix}"
            rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=tmp, DBSnapshotIdentifier=f"{db}-snap",
                                                     DBInstanceClass="db.t3.micro",
                                                     Tags=[{"Key": "purpose", "Value": "backup"}])
        before = {e: self.control("GET", f"connections?db={db}")["connections"] for e, db in src.items()}
        for engine in ENGINES:
            tmp = f"tmp-{engine}-{suffix}"
            self.wait(rds, tmp)
            tags = rds.list_tags_for_resource(ResourceName=f"{DB}{tmp}")["TagList"]
            self.assertEqual(tags, [{"Key": "purpose", "Value": "backup"}])
            rds.modify_db_instance(DBInstanceIdentifier=tmp, MasterUserPassword="reset-pw-2", ApplyImmediately=True)
            d = rds.describe_db_instances(DBInstanceIdentifier=tmp)["DBInstances"][0]
            self.assertEqual(d["DBInstanceStatus"], "resetting-master-credentials")
        for engine in ENGINES:
            tmp = f"tmp-{engine}-{suffix}"
            d = self.wait(rds, tmp)
            run, setup, after, query = ENGINES[engine]
            port = d["Endpoint"]["Port"]
            self.assertNotEqual(run(port, "master", "first-pw-1", "SELECT 1").returncode, 0)  # the old password
            r = run(port, "master", "reset-pw-2", query)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout.split(), ["1"], f"{engine}: the row written after the snapshot is absent")
        # nobody connected to the sources meanwhile
        self.assertEqual({e: self.control("GET", f"connections?db={db}")["connections"] for e, db in src.items()},
                         before)
        # AWS refuses a delete that neither skips nor names a final snapshot
        tmp_pg = f"tmp-postgres-{suffix}"
        code, status, message = error_of(lambda: rds.delete_db_instance(DBInstanceIdentifier=tmp_pg))
        self.assertEqual((code, status), ("InvalidParameterCombination", 400), message)
        servers = {s["id"]: s for s in self.control("GET", "servers")["servers"]}
        for engine in ENGINES:
            tmp = f"tmp-{engine}-{suffix}"
            d = rds.delete_db_instance(DBInstanceIdentifier=tmp, SkipFinalSnapshot=True)["DBInstance"]
            self.assertEqual(d["DBInstanceStatus"], "deleting")
        for engine in ENGINES:
            tmp = f"tmp-{engine}-{suffix}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    rds.describe_db_instances(DBInstanceIdentifier=tmp)
                except botocore.exceptions.ClientError as e:
                    self.assertEqual(e.response["Error"]["Code"], "DBInstanceNotFound")
                    break
                self.assertLess(time.monotonic(), deadline)
                time.sleep(0.2)
            self.assertFalse(port_open(servers[tmp]["port"]))
            self.assertFalse(os.path.exists(servers[tmp]["dir"]))
        self.assertEqual(sorted(s["id"] for s in self.control("GET", "servers")["servers"] if suffix in s["id"]),
                         sorted(src.values()))
        for db in src.values():
            rds.delete_db_instance(DBInstanceIdentifier=db, SkipFinalSnapshot=True)
        print(f"\nRdsWorld snapshot/restore/reset/delete: {time.monotonic() - t0:.1f}s", file=sys.stderr)

    def test_point_in_time(self):
        rds = self.client()
        db = f"pitr-{uuid.uuid4().hex[:6]}"
        rds.create_db_instance(DBInstanceIdentifier=db, Engine="postgres", DBInstanceClass="db.t3.micro",
                               AllocatedStorage=20, MasterUsername="master", MasterUserPassword="first-pw-1")
        port = self.wait(rds, db)["Endpoint"]["Port"]
        self.assertEqual(psql(port, "master", "first-pw-1", "CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
                         .returncode, 0)
        self.control("POST", f"restore-points?db={db}")
        between = datetime.now(timezone.utc)
        time.sleep(0.2)
        self.assertEqual(psql(port, "master", "first-pw-1", "INSERT INTO t VALUES (2)").returncode, 0)
        code, _, _ = error_of(lambda: rds.restore_db_instance_to_point_in_time(
            SourceDBInstanceIdentifier=db, TargetDBInstanceIdentifier=f"{db}-old",
            RestoreTime=between - timedelta(hours=1)))
        self.assertEqual(code, "InvalidRestoreFault")
        code, _, _ = error_of(lambda: rds.restore_db_instance_to_point_in_time(
            SourceDBInstanceIdentifier=db, TargetDBInstanceIdentifier=f"{db}-future",
            RestoreTime=between + timedelta(hours=1)))
        self.assertEqual(code, "InvalidRestoreFault")
        rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier=db, TargetDBInstanceIdentifier=f"{db}-at",
                                                 RestoreTime=between)
        rds.restore_db_instance_to_point_in_time(SourceDBInstanceIdentifier=db,
                                                 TargetDBInstanceIdentifier=f"{db}-latest",
                                                 UseLatestRestorableTime=True)
        for target, rows in ((f"{db}-at", ["1"]), (f"{db}-latest", ["1", "2"])):
            p = self.wait(rds, target)["Endpoint"]["Port"]
            r = psql(p, "master", "first-pw-1", "SELECT x FROM t ORDER BY x")
            self.assertEqual(r.stdout.split(), rows, target)
        for target in (db, f"{db}-at", f"{db}-latest"):
            rds.delete_db_instance(DBInstanceIdentifier=target, SkipFinalSnapshot=True)

    # -- Aurora DB clusters ----------------------------------------------------------------------
    def wait_cluster(self, rds, cluster, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = rds.describe_db_clusters(DBClusterIdentifier=cluster)["DBClusters"][0]
            if c["Status"] == "available":
                self.assertEqual(c["Endpoint"], "127.0.0.1")
                self.assertIn("LatestRestorableTime", c)
                return c
            self.assertIn(c["Status"], ("creating", "resetting-master-credentials"), cluster)
            if c["Status"] == "creating":
                self.assertNotIn("Endpoint", c)
            time.sleep(0.2)
        self.fail(f"cluster {cluster} not available after {timeout}s")

    def wait_gone(self, describe, code, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            try:
                describe()
            except botocore.exceptions.ClientError as e:
                self.assertEqual(e.response["Error"]["Code"], code)
                return
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.2)

    def test_aurora_postgresql_snapshot_restore_reset_delete(self):
        rds = self.client()
        t0 = time.monotonic()
        prod = f"aurora-{uuid.uuid4().hex[:6]}"
        tmp = f"{prod}-tmp"
        c = rds.create_db_cluster(DBClusterIdentifier=prod, Engine="aurora-postgresql", MasterUsername="master",
                                  MasterUserPassword="first-pw-1", BackupRetentionPeriod=1,
                                  Tags=[{"Key": "env", "Value": "prod"}])["DBCluster"]
        self.assertEqual(c["Status"], "creating")
        self.assertNotIn("Endpoint", c)
        code, _, _ = error_of(lambda: rds.create_db_cluster_snapshot(DBClusterIdentifier=prod,
                                                                     DBClusterSnapshotIdentifier=f"{prod}-early"))
        self.assertEqual(code, "InvalidDBClusterStateFault")
        c = self.wait_cluster(rds, prod)
        port = c["Port"]
        self.assertEqual(c["TagList"], [{"Key": "env", "Value": "prod"}])
        self.assertIn("EarliestRestorableTime", c)
        # as an Aurora cluster endpoint: nothing answers until the cluster has an available instance
        self.assertFalse(port_open(port))
        code, _, _ = error_of(lambda: rds.create_db_instance(
            DBInstanceIdentifier=f"{prod}-bad", DBClusterIdentifier=prod, Engine="aurora-mysql",
            DBInstanceClass="db.r6g.large"))
        self.assertEqual(code, "InvalidParameterCombination")
        d = rds.create_db_instance(DBInstanceIdentifier=f"{prod}-1", DBClusterIdentifier=prod,
                                   Engine="aurora-postgresql", DBInstanceClass="db.r6g.large")["DBInstance"]
        self.assertEqual(d["DBInstanceStatus"], "creating")
        d = self.wait(rds, f"{prod}-1")
        self.assertEqual(d["Endpoint"], {"Address": "127.0.0.1", "Port": port})
        members = rds.describe_db_clusters(DBClusterIdentifier=prod)["DBClusters"][0]["DBClusterMembers"]
        self.assertEqual([(m["DBInstanceIdentifier"], m["IsClusterWriter"]) for m in members], [(f"{prod}-1", True)])
        r = psql(port, "master", "first-pw-1", "CREATE TABLE t (x int); INSERT INTO t VALUES (1);")
        self.assertEqual(r.returncode, 0, r.stderr)
        s = rds.create_db_cluster_snapshot(DBClusterIdentifier=prod,
                                           DBClusterSnapshotIdentifier=f"{prod}-snap")["DBClusterSnapshot"]
        self.assertEqual(s["Status"], "creating")
        self.assertNotIn("SnapshotCreateTime", s)
        deadline = time.monotonic() + 60
        while True:
            s = rds.describe_db_cluster_snapshots(DBClusterIdentifier=prod,
                                                  DBClusterSnapshotIdentifier=f"{prod}-snap")["DBClusterSnapshots"][0]
            if s["Status"] == "available":
                break
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.2)
        self.assertIn("SnapshotCreateTime", s)
        self.assertEqual(psql(port, "master", "first-pw-1", "INSERT INTO t VALUES (2)").returncode, 0)
        rds.restore_db_cluster_from_snapshot(DBClusterIdentifier=tmp, SnapshotIdentifier=f"{prod}-snap",
                                             Engine="aurora-postgresql", DeletionProtection=False,
                                             Tags=[{"Key": "purpose", "Value": "backup"}])
        # AWS: "You can create DB instances only after the RestoreDBClusterFromSnapshot operation has completed
        # and the DB cluster is available."
        code, _, _ = error_of(lambda: rds.create_db_instance(
            DBInstanceIdentifier=tmp, DBClusterIdentifier=tmp, Engine="aurora-postgresql",
            DBInstanceClass="db.r6g.large", PubliclyAccessible=False))
        self.assertEqual(code, "InvalidDBClusterStateFault")
        before = self.control("GET", f"connections?db={prod}")["connections"]
        c = self.wait_cluster(rds, tmp)
        self.assertEqual(c["MasterUsername"], "master")
        self.assertEqual(rds.list_tags_for_resource(ResourceName=f"{CLUSTER}{tmp}")["TagList"],
                         [{"Key": "purpose", "Value": "backup"}])
        rds.create_db_instance(DBInstanceIdentifier=tmp, DBClusterIdentifier=tmp, Engine="aurora-postgresql",
                               DBInstanceClass="db.r6g.large", PubliclyAccessible=False,
                               Tags=[{"Key": "purpose", "Value": "backup"}])
        self.wait(rds, tmp)
        tmp_port = rds.describe_db_clusters(DBClusterIdentifier=tmp)["DBClusters"][0]["Port"]
        rds.modify_db_cluster(DBClusterIdentifier=tmp, MasterUserPassword="reset-pw-2", ApplyImmediately=True)
        self.assertEqual(rds.describe_db_clusters(DBClusterIdentifier=tmp)["DBClusters"][0]["Status"],
                         "resetting-master-credentials")
        self.assertEqual(rds.describe_db_instances(DBInstanceIdentifier=tmp)["DBInstances"][0]["DBInstanceStatus"],
                         "resetting-master-credentials")
        code, _, _ = error_of(lambda: rds.modify_db_cluster(DBClusterIdentifier=tmp, MasterUserPassword="other-pw-3",
                                                            ApplyImmediately=True))
        self.assertEqual(code, "InvalidDBClusterStateFault")
        self.wait(rds, tmp)
        self.assertNotEqual(psql(tmp_port, "master", "first-pw-1", "SELECT 1").returncode, 0)
        r = psql(tmp_port, "master", "reset-pw-2", "SELECT x FROM t ORDER BY x")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["1"], "the row written after the snapshot is absent")
        self.assertEqual(self.control("GET", f"connections?db={prod}")["connections"], before)
        # AWS refuses to delete a cluster that still has instances
        code, _, _ = error_of(lambda: rds.delete_db_cluster(DBClusterIdentifier=tmp, SkipFinalSnapshot=True))
        self.assertEqual(code, "InvalidDBClusterStateFault")
        servers = {s["id"]: s for s in self.control("GET", "servers")["servers"]}
        self.assertEqual(servers[tmp]["kind"], "cluster")
        d = rds.delete_db_instance(DBInstanceIdentifier=tmp, SkipFinalSnapshot=True,
                                   DeleteAutomatedBackups=True)["DBInstance"]
        self.assertEqual(d["DBInstanceStatus"], "deleting")
        self.wait_gone(lambda: rds.describe_db_instances(DBInstanceIdentifier=tmp), "DBInstanceNotFound")
        self.assertFalse(port_open(tmp_port))  # no instance: the endpoint answers no more
        self.assertEqual(rds.describe_db_clusters(DBClusterIdentifier=tmp)["DBClusters"][0]["DBClusterMembers"], [])
        code, _, _ = error_of(lambda: rds.delete_db_cluster(DBClusterIdentifier=tmp))
        self.assertEqual(code, "InvalidParameterCombination")
        c = rds.delete_db_cluster(DBClusterIdentifier=tmp, SkipFinalSnapshot=True)["DBCluster"]
        self.assertEqual(c["Status"], "deleting")
        code, _, _ = error_of(lambda: rds.delete_db_cluster(DBClusterIdentifier=tmp, SkipFinalSnapshot=True))
        self.assertEqual(code, "InvalidDBClusterStateFault")
        self.wait_gone(lambda: rds.describe_db_clusters(DBClusterIdentifier=tmp), "DBClusterNotFoundFault")
        self.assertFalse(os.path.exists(servers[tmp]["dir"]))
        self.assertNotIn(tmp, [s["id"] for s in self.control("GET", "servers")["servers"]])
        rds.delete_db_instance(DBInstanceIdentifier=f"{prod}-1")
        print(f"\nRdsWorld Aurora PostgreSQL: {time.monotonic() - t0:.1f}s", file=sys.stderr)

    def test_aurora_mysql_clone(self):
        rds = self.client()
        t0 = time.monotonic()
        prod = f"aurmy-{uuid.uuid4().hex[:6]}"
        rds.create_db_cluster(DBClusterIdentifier=prod, Engine="aurora-mysql", MasterUsername="admin",
                              MasterUserPassword="first-pw-1")
        rds.create_db_instance(DBInstanceIdentifier=prod, DBClusterIdentifier=prod, Engine="aurora-mysql",
                               DBInstanceClass="db.r6g.large")  # allowed while a *created* cluster is creating
        self.wait(rds, prod)
        port = self.wait_cluster(rds, prod)["Port"]
        r = mariadb(port, "admin", "first-pw-1", ENGINES["mariadb"][1])
        self.assertEqual(r.returncode, 0, r.stderr)
        clone = f"{prod}-clone"
        now = datetime.now(timezone.utc)
        for kwargs in ({}, {"UseLatestRestorableTime": True, "RestoreToTime": now},
                       {"RestoreType": "copy-on-write", "RestoreToTime": now}):
            code, _, _ = error_of(lambda: rds.restore_db_cluster_to_point_in_time(
                DBClusterIdentifier=clone, SourceDBClusterIdentifier=prod, **kwargs))
            self.assertEqual(code, "InvalidParameterCombination", kwargs)
        code, _, _ = error_of(lambda: rds.restore_db_cluster_to_point_in_time(
            DBClusterIdentifier=clone, SourceDBClusterIdentifier=prod, RestoreType="full-copy",
            RestoreToTime=now + timedelta(hours=1)))
        self.assertEqual(code, "InvalidRestoreFault")
        before = self.control("GET", f"connections?db={prod}")["connections"]
        rds.restore_db_cluster_to_point_in_time(DBClusterIdentifier=clone, SourceDBClusterIdentifier=prod,
                                                RestoreType="copy-on-write", UseLatestRestorableTime=True)
        clone_port = self.wait_cluster(rds, clone)["Port"]
        rds.create_db_instance(DBInstanceIdentifier=clone, DBClusterIdentifier=clone, Engine="aurora-mysql",
                               DBInstanceClass="db.r6g.large")
        self.wait(rds, clone)
        r = mariadb(clone_port, "admin", "first-pw-1", ENGINES["mariadb"][3])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["1"])
        self.assertEqual(self.control("GET", f"connections?db={prod}")["connections"], before)
        for db in (clone, prod):
            rds.delete_db_instance(DBInstanceIdentifier=db)
        print(f"\nRdsWorld Aurora MySQL clone: {time.monotonic() - t0:.1f}s", file=sys.stderr)

    def test_iam_for_rds(self):
        iam = boto3.client("iam", endpoint_url=UPSTREAM, region_name="us-east-1", aws_access_key_id="test",
                           aws_secret_access_key="test")
        user = f"rds-user-{uuid.uuid4().hex[:6]}"
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "rds:DescribeDBInstances", "Resource": f"{DB}tmp-*"},
                {"Effect": "Allow", "Action": "rds:DeleteDBInstance", "Resource": f"{DB}*",
                 "Condition": {"StringEquals": {"aws:ResourceTag/purpose": "backup"}}},
                {"Effect": "Allow", "Action": "rds:DeleteDBCluster", "Resource": f"{CLUSTER}*",
                 "Condition": {"StringEquals": {"aws:ResourceTag/purpose": "backup"}}}]}))
        key = iam.create_access_key(UserName=user)["AccessKey"]
        rds = self.client(key["AccessKeyId"], key["SecretAccessKey"])
        code, status, message = error_of(lambda: rds.describe_db_instances(DBInstanceIdentifier="prod"))
        self.assertEqual((code, status), ("AccessDenied", 403))
        self.assertEqual(message, f"User: arn:aws:iam::000000000000:user/{user} is not authorized to perform: "
                                  f"rds:DescribeDBInstances on resource: {DB}prod because no identity-based "
                                  f"policy allows the rds:DescribeDBInstances action")
        code, _, _ = error_of(lambda: rds.describe_db_instances())  # db:* is not tmp-*
        self.assertEqual(code, "AccessDenied")
        code, _, _ = error_of(lambda: rds.describe_db_instances(DBInstanceIdentifier="tmp-none"))
        self.assertEqual(code, "DBInstanceNotFound")  # allowed, then the world answers
        # aws:ResourceTag from the world's tags
        admin = self.client()
        db = f"tagged-{uuid.uuid4().hex[:6]}"
        admin.create_db_instance(DBInstanceIdentifier=db, Engine="postgres", DBInstanceClass="db.t3.micro",
                                 AllocatedStorage=20, MasterUsername="master", MasterUserPassword="first-pw-1",
                                 Tags=[{"Key": "purpose", "Value": "prod"}])
        code, _, _ = error_of(lambda: rds.delete_db_instance(DBInstanceIdentifier=db, SkipFinalSnapshot=True))
        self.assertEqual(code, "AccessDenied")
        admin.add_tags_to_resource(ResourceName=f"{DB}{db}", Tags=[{"Key": "purpose", "Value": "backup"}])
        rds.delete_db_instance(DBInstanceIdentifier=db, SkipFinalSnapshot=True)  # deleting a creating one
        # aws:ResourceTag of a cluster
        cluster = f"tagged-c-{uuid.uuid4().hex[:6]}"
        admin.create_db_cluster(DBClusterIdentifier=cluster, Engine="aurora-postgresql", MasterUsername="master",
                                MasterUserPassword="first-pw-1", Tags=[{"Key": "purpose", "Value": "prod"}])
        self.wait_cluster(admin, cluster)
        code, _, message = error_of(lambda: rds.delete_db_cluster(DBClusterIdentifier=cluster, SkipFinalSnapshot=True))
        self.assertEqual(code, "AccessDenied", message)
        admin.add_tags_to_resource(ResourceName=f"{CLUSTER}{cluster}", Tags=[{"Key": "purpose", "Value": "backup"}])
        self.assertEqual(rds.delete_db_cluster(DBClusterIdentifier=cluster, SkipFinalSnapshot=True)["DBCluster"]
                         ["Status"], "deleting")


if __name__ == "__main__":
    unittest.main()
