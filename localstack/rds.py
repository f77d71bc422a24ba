#!/usr/bin/env python3
"""The RDS world: Amazon RDS's Query API backed by real database servers (test infrastructure).

Why it exists
-------------
LocalStack's free edition has no RDS. backup-cloud can back up from an RDS
snapshot or a point in time: the controller restores it into a temporary DB
instance, resets that instance's master password, points the agent at the
instance's endpoint and deletes the instance afterwards. Testing that needs an
RDS whose instances are real servers an agent can connect to and dump, whose
snapshots really are the data at that instant, and which refuses what AWS
refuses (deleting without ``SkipFinalSnapshot``, modifying an instance that is
still ``creating``, restoring a snapshot that is not ``available``...).

How
---
The API is moto's RDS backend (``moto.rds`` from LocalStack's ``moto-ext``),
embedded in this process and called without flask (a werkzeug request handed
to ``RDSResponse.dispatch``). Every DB instance moto knows is backed by a real
server on ``127.0.0.1`` and a port of its own (``--server-ports``, default
56000-56999), data under ``.state/rds/``:

* engine ``postgres``: this machine's PostgreSQL 15 (``/usr/lib/postgresql/15/bin``),
  superuser = ``MasterUsername``, scram-sha-256 over TCP; ``log_connections=on``.
  Snapshots and restore points are ``pg_basebackup`` copies (physical,
  consistent: role password hashes included).
* engines ``mariadb`` and ``mysql``: this machine's MariaDB server; the master
  user is ``'MasterUsername'@'%'`` with all privileges. Snapshots and restore
  points are ``mariadb-dump --single-transaction --routines --triggers --events``
  of every user database plus ``--system=users`` (the accounts); a restore loads
  that into a fresh server and sets the master password it had at that time.
  The general log (turned on once a server is seeded) counts client connections.

The world rewrites what moto answers to match what the servers do:
``DBInstanceStatus`` is ``creating`` (no ``Endpoint``) until the server accepts
connections, then ``available`` with ``Endpoint`` ``127.0.0.1``:real port;
``backing-up`` while a snapshot is copied; ``resetting-master-credentials``
(at least 1 s) while ``ModifyDBInstance(MasterUserPassword)`` is applied with
``ALTER ROLE``/``ALTER USER``; ``deleting`` (at least 1 s) while the server is
stopped and its data removed; ``failed`` when a server does not start or dies.
Snapshots are ``creating`` (no ``SnapshotCreateTime``) until the copy is done.

Aurora DB clusters (``aurora-postgresql`` → PostgreSQL 15, ``aurora-mysql`` →
MariaDB) are backed the same way: one server per cluster, started by
``CreateDBCluster`` / ``RestoreDBClusterFromSnapshot`` /
``RestoreDBClusterToPointInTime``. The cluster is ``creating`` (no ``Endpoint``,
no restorable times) until its server is up, then ``available`` with
``Endpoint`` = ``ReaderEndpoint`` = ``127.0.0.1`` and ``Port`` = the real port.
Its server listens on TCP only while the cluster has a DB instance that is not
being deleted (it is restarted with/without TCP): like an Aurora cluster
endpoint, nothing answers before the first instance is ``available``.
``CreateDBInstance(DBClusterIdentifier=...)`` makes an instance (``creating``,
then ``available`` with the cluster's endpoint, listed in ``DBClusterMembers``,
the first one the writer). ``CreateDBClusterSnapshot`` is a real copy (as
instance snapshots; the cluster stays ``available``); the automated snapshot
moto takes at creation holds the state at creation. ``ModifyDBCluster
(MasterUserPassword)`` shows the cluster and its instances
``resetting-master-credentials`` (at least 1 s); ``DeleteDBCluster`` shows
``deleting`` (at least 1 s), stops the server and removes its data and its
automated snapshots.

Where it is as strict as AWS (it refuses)
-----------------------------------------
* ``DeleteDBInstance`` without ``SkipFinalSnapshot=true`` or a
  ``FinalDBSnapshotIdentifier`` (InvalidParameterCombination); with
  ``DeletionProtection`` (InvalidParameterCombination); a final snapshot of an
  instance that is not ``available``, or a second delete (InvalidDBInstanceState).
* ``ModifyDBInstance`` while the instance is not ``available`` (InvalidDBInstanceState).
* ``CreateDBSnapshot`` of an instance that is not ``available`` (InvalidDBInstanceState);
  ``RestoreDBInstanceFromDBSnapshot`` / ``DeleteDBSnapshot`` of a snapshot that
  is not ``available`` (InvalidDBSnapshotState).
* ``RestoreDBInstanceToPointInTime``: exactly one of ``RestoreTime`` /
  ``UseLatestRestorableTime`` (InvalidParameterCombination), a source with
  ``BackupRetentionPeriod`` 0 (InvalidDBInstanceState), a ``RestoreTime``
  before the source's creation or after now (InvalidRestoreFault).
* Master user name (letter first, letters/digits/underscore, 1-16 for
  MariaDB/MySQL, 1-63 for PostgreSQL) and password (8-41 / 8-128 printable
  ASCII without ``/``, ``"``, ``@`` or space) as RDS validates them.
* Restored instances do not inherit ``DeletionProtection`` (moto's do).
* Aurora: ``CreateDBInstance`` into a cluster that a restore is still creating
  (InvalidDBClusterStateFault: AWS documents that instances can be created only
  once the restored cluster is ``available``), into a ``deleting``/``failed``
  cluster, with another engine or with MasterUsername/MasterUserPassword
  (InvalidParameterCombination); ``CreateDBSnapshot`` of a cluster instance;
  ``DeleteDBInstance`` of a cluster instance with ``FinalDBSnapshotIdentifier``
  (InvalidParameterCombination; ``SkipFinalSnapshot`` is not needed);
  ``ModifyDBCluster`` / ``CreateDBClusterSnapshot`` of a cluster not
  ``available``, ``DeleteDBCluster`` of a cluster not ``available`` or still
  having instances that are not ``deleting`` (InvalidDBClusterStateFault), without
  ``SkipFinalSnapshot=true`` or ``FinalDBSnapshotIdentifier``, or with
  ``DeletionProtection`` (InvalidParameterCombination); restoring or deleting a
  cluster snapshot not ``available`` (InvalidDBClusterSnapshotStateFault), or one
  of the other engine; ``RestoreDBClusterToPointInTime`` with both or neither of
  ``RestoreToTime``/``UseLatestRestorableTime`` or ``RestoreToTime`` with
  ``RestoreType=copy-on-write`` (InvalidParameterCombination), from a cluster
  not yet available, or to a time outside creation..now (InvalidRestoreFault);
  ``BackupRetentionPeriod`` outside 1-35; master user 1-16 characters and
  password 8-41 (CreateDBCluster's constraints).

Where it is kinder than AWS (document, don't rely on it)
--------------------------------------------------------
* Point in time: there is no continuous WAL/binlog archive. A restore to an
  explicit ``RestoreTime`` gets the newest *restore point* taken at or before
  that time. Restore points are: the instance's state at creation (empty, or
  the snapshot it was restored from), every ``CreateDBSnapshot``, every
  ``UseLatestRestorableTime`` restore (a copy taken at the request), and
  ``POST /__rds/restore-points?db=ID`` (a test standing in for continuous
  archiving). Writes between two restore points are not restorable.
* ``EngineVersion`` is whatever this machine runs (PostgreSQL 15, MariaDB
  10.11); ``mysql`` is served by MariaDB; instance classes, storage, VPCs,
  security groups, parameter/option groups are moto's bookkeeping only (any
  client on this host reaches the port). No TLS (``rds.force_ssl`` is off).
* Only ``postgres``, ``mariadb`` and ``mysql`` instances and ``aurora-postgresql``
  / ``aurora-mysql`` clusters can be created; other engines are refused with
  InvalidParameterValue naming this world, not served. Aurora readers are not
  replicas: every instance of a cluster is the cluster's one server.
* ``CreateDBInstance`` into a cluster made by ``CreateDBCluster`` that is still
  ``creating`` is accepted (the instance waits for it), as AWS does in practice.
* State lives in this process: a restart forgets every instance (and stops
  and deletes the servers a previous run left, found by their pid files).

Control API (JSON, on this world's port and, through the AWS gate, on
http://127.0.0.1:4566 under the same ``/__rds/`` paths): see localstack/README.md.
Usage: ``rds.py [--port N] [--state-dir DIR] [--server-ports LO-HI]``; prints
``listening on PORT``. Runs with the LocalStack venv's python.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from datetime import datetime, timezone

os.environ.setdefault("MOTO_ACCOUNT_ID", "000000000000")  # the gate's account (gate_requests.ACCOUNT)

from moto.core.utils import utcnow  # noqa: E402
from moto.rds import models as rds_models  # noqa: E402
from moto.rds.exceptions import RDSClientError  # noqa: E402
from moto.rds.responses import RDSResponse  # noqa: E402
from werkzeug.test import EnvironBuilder  # noqa: E402
from werkzeug.wrappers import Request  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from awsproxy import ProxyHandler, Server as HTTPServer, query_error, serve  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCOUNT = os.environ["MOTO_ACCOUNT_ID"]
CONTROL = "/__rds/"
PG_BIN = os.environ.get("BACKUP_CLOUD_RDS_PG_BIN", "/usr/lib/postgresql/15/bin")
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
IS_ROOT = os.geteuid() == 0
ENGINES = {"postgres": "postgres", "mariadb": "mariadb", "mysql": "mariadb"}
MIN_TRANSITION_SECONDS = 1.0  # resetting-master-credentials / deleting last at least this long
START_TIMEOUT = 60


def log(*args):
    print(datetime.now().strftime("%H:%M:%S.%f")[:-3], *args, file=sys.stderr, flush=True)


def rds_error(code, message):
    """An RDS error; moto serializes it with the HTTP status of the API model."""
    return RDSClientError(code, message)


def iso(dt):
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- running things as the database servers' OS users --------------------------------

def _user_kw(user):
    return {"user": user, "group": user} if IS_ROOT and user else {}


def run(argv, user=None, input=None, timeout=300, check=True, stdout=None):
    p = subprocess.run(argv, input=input, stdout=stdout if stdout is not None else subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, cwd="/", **_user_kw(user))
    if check and p.returncode != 0:
        err = p.stderr.decode(errors="replace") if isinstance(p.stderr, bytes) else p.stderr
        raise RuntimeError(f"{os.path.basename(argv[0])} failed ({p.returncode}): {err.strip()[-2000:]}")
    return p


def chown_tree(path, user):
    if IS_ROOT:
        run(["chown", "-R", f"{user}:{user}", path])


def make_traversable(path):
    """The servers run as postgres/mysql: every ancestor of ``path`` must let others through."""
    d = os.path.abspath(path)
    while d != "/":
        mode = os.stat(d).st_mode
        if not mode & 0o001:
            os.chmod(d, mode | 0o001)
        d = os.path.dirname(d)


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def sql_literal(s):
    return "'" + s.replace("\\", "\\\\").replace("'", "''") + "'"


def pg_literal(s):
    return "'" + s.replace("'", "''") + "'"


def pg_ident(s):
    return '"' + s.replace('"', '""') + '"'


# --- copies: what a snapshot or a restore point holds ------------------------------------

class Copy:
    """A copy of a server's data at ``taken_at``: ``path`` (None: an empty server),
    with the master user and the password it had then."""

    def __init__(self, engine, path, master_user, password, taken_at):
        self.engine = engine
        self.path = path
        self.master_user = master_user
        self.password = password
        self.taken_at = taken_at

    def save_meta(self):
        with open(os.path.join(self.path, "meta.json"), "w") as f:
            json.dump({"engine": self.engine, "master_user": self.master_user,
                       "taken_at": iso(self.taken_at)}, f)


# --- one real server ---------------------------------------------------------------------

class Backing:
    """A real PostgreSQL or MariaDB server behind one DB instance."""

    def __init__(self, world, db_id, engine, port, master_user, password, seed, kind="db"):
        self.world = world
        self.kind = kind                      # "db" (a DB instance) | "cluster" (an Aurora DB cluster)
        # A cluster's server listens on TCP only while the cluster has a live instance (an Aurora
        # cluster endpoint answers only then); the world itself always uses the Unix socket.
        self.networking = kind == "db"
        self.net_lock = threading.Lock()      # one relaunch at a time; stop() waits for it
        self.db_id = db_id
        self.engine = engine                  # "postgres" | "mariadb"
        self.port = port
        self.master_user = master_user
        self.password = password              # the master password the server has now
        self.seed = seed                      # Copy or None
        world.counter += 1
        # short: the Unix socket's path (under it) must stay within 107 bytes
        # wherever the checkout is, and RDS identifiers are up to 63 characters
        prefix = "c" if kind == "cluster" else "d"
        self.dir = os.path.join(world.state, "instances", f"{prefix}{world.counter}")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "run")
        self.log_path = os.path.join(self.dir, "server.log")
        self.general_log = os.path.join(self.dir, "run", "general.log")
        self.proc = None
        self.state = "starting"               # starting | ready | failed | stopping | stopped
        self.error = None
        self.cancel = threading.Event()
        self.stopping = False
        self.created = utcnow()
        self.restore_points = []              # [Copy], oldest first
        self.copy_lock = threading.Lock()     # one copy at a time
        self.busy = []                        # threads copying from this server
        self.auto_snapshots = []              # (cluster) automated snapshots waiting for the first copy

    # -- life ------------------------------------------------------------------------------
    def start(self):
        """Initializes, seeds and starts the server (in the calling worker thread)."""
        os.makedirs(self.sock, exist_ok=True)
        make_traversable(self.dir)
        os.chmod(self.dir, 0o755)
        if self.engine == "postgres":
            self._start_postgres()
        else:
            self._start_mariadb()

    def _popen(self, argv, user):
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, cwd="/",
                                         start_new_session=True, **_user_kw(user))
        finally:
            logf.close()
        with open(os.path.join(self.dir, "pid"), "w") as f:
            f.write(str(self.proc.pid))

    def _wait_ready(self, probe):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.cancel.is_set():
                raise RuntimeError("cancelled")
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.tail()}")
            if probe():
                return
            time.sleep(0.1)
        raise RuntimeError(f"server not ready after {START_TIMEOUT}s: {self.tail()}")

    def tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return " | ".join(f.read().splitlines()[-n:])
        except OSError:
            return ""

    def _start_postgres(self):
        pg_user = "postgres"
        if self.seed is not None and self.seed.path:
            shutil.copytree(os.path.join(self.seed.path, "base"), self.data, symlinks=True)
            chown_tree(self.data, pg_user)
            os.chmod(self.data, 0o700)
        else:
            os.makedirs(self.data)
            chown_tree(self.dir, pg_user)
            os.chmod(self.data, 0o700)
            pwfile = os.path.join(self.sock, "pw")
            with open(pwfile, "w") as f:
                f.write(self.password + "\n")
            chown_tree(pwfile, pg_user)
            try:
                run([f"{PG_BIN}/initdb", "-D", self.data, "-U", self.master_user, f"--pwfile={pwfile}",
                     "--encoding=UTF8", "--locale=C.UTF-8", "--auth-local=trust", "--auth-host=scram-sha-256",
                     "--no-sync"], user=pg_user)
            finally:
                os.unlink(pwfile)
            with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
                f.write("local all all trust\nlocal replication all trust\n"
                        "host all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n")
            chown_tree(self.data, pg_user)
        chown_tree(self.dir, pg_user)
        os.chmod(self.dir, 0o755)
        for stale in ("postmaster.pid", "postmaster.opts"):
            try:
                os.unlink(os.path.join(self.data, stale))
            except FileNotFoundError:
                pass
        self._launch_postgres()

    def _launch_postgres(self):
        pg_user = "postgres"
        if self.cancel.is_set():
            raise RuntimeError("cancelled")
        listen = "127.0.0.1" if self.networking else ""
        self._popen([f"{PG_BIN}/postgres", "-D", self.data, "-p", str(self.port), "-k", self.sock,
                     "-c", f"listen_addresses={listen}", "-c", "password_encryption=scram-sha-256",
                     "-c", "log_connections=on", "-c", "logging_collector=off", "-c", "fsync=off",
                     "-c", "synchronous_commit=off", "-c", "full_page_writes=off", "-c", "shared_buffers=16MB",
                     "-c", "max_connections=50", "-c", "wal_level=replica", "-c", "max_wal_senders=5",
                     "-c", "log_line_prefix=%m [%p] "], pg_user)
        self._wait_ready(lambda: run([f"{PG_BIN}/pg_isready", "-q", "-h", self.sock, "-p", str(self.port),
                                      "-U", self.master_user, "-d", "postgres"],
                                     check=False, timeout=10).returncode == 0)

    def _mariadb_cli(self, sql, tool="mariadb", extra=(), stdout=None):
        return run([tool, "--no-defaults", f"--socket={self.sock}/mysqld.sock", "-u", "root", *extra],
                   input=sql.encode() if sql is not None else None, stdout=stdout)

    def _start_mariadb(self):
        template = self.world.mariadb_template()
        shutil.copytree(template, self.data, symlinks=True)
        chown_tree(self.dir, "mysql")
        os.chmod(self.dir, 0o755)
        self._launch_mariadb(general_log=False)
        user = sql_literal(self.master_user)
        pw = sql_literal(self.password)
        self._mariadb_cli(f"CREATE USER {user}@'%' IDENTIFIED BY {pw};\n"
                          f"GRANT ALL PRIVILEGES ON *.* TO {user}@'%' WITH GRANT OPTION;\nFLUSH PRIVILEGES;\n")
        if self.seed is not None and self.seed.path:
            with open(os.path.join(self.seed.path, "dump.sql"), "rb") as f:
                dump = f.read()
            p = subprocess.run(["mariadb", "--no-defaults", f"--socket={self.sock}/mysqld.sock", "-u", "root",
                                "--binary-mode", "--force"], input=dump, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd="/", timeout=600)
            if p.returncode != 0:
                log(f"{self.db_id}: loading the dump reported: {p.stderr.decode(errors='replace')[-500:]}")
            self._mariadb_cli(f"ALTER USER {user}@'%' IDENTIFIED BY {pw};\nFLUSH PRIVILEGES;\n")
        self._mariadb_cli("SET GLOBAL general_log = 1;\n")

    def _launch_mariadb(self, general_log):
        if self.cancel.is_set():
            raise RuntimeError("cancelled")
        network = ["--bind-address=127.0.0.1"] if self.networking else ["--skip-networking"]
        self._popen([MARIADBD, "--no-defaults", "--user=mysql", f"--datadir={self.data}", f"--port={self.port}",
                     *network, f"--socket={self.sock}/mysqld.sock",
                     f"--pid-file={self.sock}/mysqld.pid", f"--log-error={self.log_path}",
                     "--skip-name-resolve", "--innodb-buffer-pool-size=16M",
                     "--innodb-flush-log-at-trx-commit=0", "--skip-log-bin", "--performance-schema=OFF",
                     f"--general-log={1 if general_log else 0}", f"--general-log-file={self.general_log}"],
                    None)

        def ping():
            return run(["mariadb-admin", "--no-defaults", f"--socket={self.sock}/mysqld.sock", "-u", "root",
                        "--connect-timeout=2", "ping"], check=False, timeout=10).returncode == 0
        self._wait_ready(ping)

    def relaunch(self, networking):
        """Restarts the server (same data) listening on TCP or not. Holds the copy lock: copies wait."""
        with self.net_lock, self.copy_lock:
            if self.stopping or self.state != "ready" or self.networking == networking:
                return
            log(f"{self.db_id}: restarting the server {'with' if networking else 'without'} TCP")
            self.state = "restarting"
            try:
                self._halt()
                self.networking = networking
                if self.engine == "postgres":
                    self._launch_postgres()
                else:
                    self._launch_mariadb(general_log=True)
                self.state = "ready"
            except Exception as e:  # noqa: BLE001
                self.state = "failed"
                self.error = f"restart failed: {e}"
                raise

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """Stops the server (fast shutdown), SIGKILL after 10 s."""
        self.stopping = True
        self.cancel.set()
        with self.net_lock:
            self._halt()

    def _halt(self):
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, signal.SIGINT if self.engine == "postgres" else signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)

    def remove_files(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.points_dir(), ignore_errors=True)

    def points_dir(self):
        return os.path.join(self.world.state, "restore-points", os.path.basename(self.dir))

    # -- data --------------------------------------------------------------------------------
    def copy_to(self, dest):
        """A consistent copy of the data now into ``dest`` (a new directory); returns a :class:`Copy`."""
        with self.copy_lock:
            if not self.running() or self.state != "ready":
                raise RuntimeError(f"server of {self.db_id} is not running")
            taken_at = utcnow()
            password = self.password
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(dest)
            if self.engine == "postgres":
                os.chmod(dest, 0o755)
                chown_tree(dest, "postgres")
                run([f"{PG_BIN}/pg_basebackup", "-h", self.sock, "-p", str(self.port), "-U", self.master_user,
                     "-D", os.path.join(dest, "base"), "-X", "stream", "-c", "fast", "--no-sync"],
                    user="postgres")
            else:
                dbs = self._mariadb_cli("SELECT schema_name FROM information_schema.schemata WHERE schema_name "
                                        "NOT IN ('mysql','information_schema','performance_schema','sys');\n",
                                        extra=["-N", "-B"]).stdout.decode().split()
                with open(os.path.join(dest, "dump.sql"), "wb") as out:
                    args = ["mariadb-dump", "--no-defaults", f"--socket={self.sock}/mysqld.sock", "-u", "root",
                            "--single-transaction", "--routines", "--triggers", "--events", "--system=users",
                            "--insert-ignore"]
                    args += ["--databases", *dbs] if dbs else ["--no-data", "--databases", "mysql",
                                                              "--ignore-table=mysql.global_priv"]
                    run(args, stdout=out)
            copy = Copy(self.engine, dest, self.master_user, password, taken_at)
            copy.save_meta()
            return copy

    def restore_point(self):
        """Takes a restore point now (a copy kept for point-in-time restores)."""
        n = len(self.restore_points)
        copy = self.copy_to(os.path.join(self.points_dir(), f"{n:04d}"))
        with self.world.lock:
            self.restore_points.append(copy)
        return copy

    def add_point_from(self, copy):
        """Keeps ``copy`` (e.g. a snapshot's) as a restore point too, hard-linked (copies are never written)."""
        dest = os.path.join(self.points_dir(), f"{len(self.restore_points):04d}")
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        run(["cp", "-al", copy.path, dest])
        kept = Copy(copy.engine, dest, copy.master_user, copy.password, copy.taken_at)
        with self.world.lock:
            self.restore_points.append(kept)
            self.restore_points.sort(key=lambda c: c.taken_at)

    def set_password(self, password):
        if self.engine == "postgres":
            run([f"{PG_BIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.sock, "-p", str(self.port),
                 "-U", self.master_user, "-d", "postgres"],
                input=f"ALTER ROLE {pg_ident(self.master_user)} PASSWORD {pg_literal(password)};\n".encode(),
                user="postgres")
        else:
            self._mariadb_cli(f"ALTER USER {sql_literal(self.master_user)}@'%' IDENTIFIED BY "
                              f"{sql_literal(password)};\nFLUSH PRIVILEGES;\n")
        self.password = password

    def connections(self):
        """Client connections over TCP since the server started (the world's own use the socket)."""
        n = 0
        if self.engine == "postgres":
            try:
                with open(self.log_path, errors="replace") as f:
                    for line in f:
                        if "connection received: host=" in line and "host=[local]" not in line:
                            n += 1
            except OSError:
                pass
        else:
            try:
                with open(self.general_log, errors="replace") as f:
                    for line in f:
                        fields = line.rstrip("\n").split("\t")
                        if any(f.strip().endswith("Connect") for f in fields[:3]) and "using Socket" not in line:
                            n += 1
            except OSError:
                pass
        return n

    def to_json(self):
        return {"id": self.db_id, "kind": self.kind, "listening": self.networking, "engine": self.engine, "port": self.port,
                "pid": self.proc.pid if self.proc else None, "running": self.running(), "state": self.state,
                "error": self.error, "dir": self.dir, "master_username": self.master_user,
                "connections": self.connections(),
                "restore_points": [iso(c.taken_at) for c in self.restore_points]}


# --- the world --------------------------------------------------------------------------------

class Ctx(threading.local):
    action = None
    params = None


CTX = Ctx()


class World:
    def __init__(self, state, port_range):
        self.state = os.path.abspath(state)
        self.ports = port_range
        self.lock = threading.RLock()        # moto and everything below
        self.counter = 0
        self.servers = {}                    # db id -> Backing (the current one)
        self.snapshot_copies = {}            # snapshot id -> Copy (available ones)
        self.snapshot_threads = {}           # snapshot id (or ("cluster", id)) -> (Backing, Thread)
        self.clusters = {}                   # Aurora cluster id -> Backing
        self.cluster_snapshot_copies = {}    # cluster snapshot id -> Copy (available ones)
        self.member_cancel = {}              # cluster instance id -> Event (cancels its creation)
        self.template_lock = threading.Lock()
        self._versions = {}

    # -- moto ---------------------------------------------------------------------------------
    @property
    def backend(self):
        return rds_models.rds_backends[ACCOUNT]["us-east-1"]

    def backend_of(self, region):
        return rds_models.rds_backends[ACCOUNT][region]

    def find_db(self, db_id):
        for region in ("us-east-1",) + tuple(r for r in rds_models.rds_backends[ACCOUNT].keys() if r != "us-east-1"):
            db = rds_models.rds_backends[ACCOUNT][region].databases.get(db_id)
            if db is not None:
                return db
        return None

    def set_status(self, db, status):
        with self.lock:
            db.status = status

    # -- setup --------------------------------------------------------------------------------
    def clean_leftovers(self):
        """Stops servers a previous run left (pid files) and removes their data."""
        inst = os.path.join(self.state, "instances")
        if os.path.isdir(inst):
            for name in os.listdir(inst):
                pidfile = os.path.join(inst, name, "pid")
                try:
                    pid = int(open(pidfile).read().strip())
                    cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
                except (OSError, ValueError):
                    continue
                if os.path.join(inst, name).encode() in cmdline:
                    log(f"stopping leftover server pid {pid} ({name})")
                    try:
                        os.killpg(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            time.sleep(0.2)
        for sub in ("instances", "snapshots", "cluster-snapshots", "restore-points"):
            shutil.rmtree(os.path.join(self.state, sub), ignore_errors=True)
        os.makedirs(self.state, exist_ok=True)
        make_traversable(self.state)
        os.chmod(self.state, 0o755)

    def version(self, engine):
        if engine not in self._versions:
            if engine == "postgres":
                out = run([f"{PG_BIN}/postgres", "--version"]).stdout.decode()
            else:
                out = run([MARIADBD, "--version"]).stdout.decode()
            m = re.search(r"(\d+\.\d+(?:\.\d+)?)", out)
            self._versions[engine] = m.group(1) if m else "0"
        return self._versions[engine]

    def mariadb_template(self):
        """A freshly installed MariaDB data directory, made once and copied per server."""
        path = os.path.join(self.state, "templates", f"mariadb-{self.version('mariadb')}")
        with self.template_lock:
            if not os.path.isdir(os.path.join(path, "mysql")):
                shutil.rmtree(path, ignore_errors=True)
                os.makedirs(path)
                make_traversable(path)
                chown_tree(os.path.dirname(path), "mysql")
                run(["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={path}",
                     "--auth-root-authentication-method=socket", "--skip-test-db"])
        return path

    def free_port(self):
        lo, hi = self.ports
        used = {b.port for b in list(self.servers.values()) + list(self.clusters.values())}
        for port in range(lo, hi + 1):
            if port not in used and port_free(port):
                return port
        raise rds_error("InsufficientDBInstanceCapacity", f"no free port in {lo}-{hi} for another server")

    # -- instances ----------------------------------------------------------------------------
    def launch(self, db, engine, master_user, password, seed, latest_from=None):
        """Backs moto's ``db`` with a new server (status creating until it is ready)."""
        port = self.free_port()
        backing = Backing(self, db.db_instance_identifier, engine, port, master_user, password, seed)
        self.servers[db.db_instance_identifier] = backing
        db.port = port
        db.status = "creating"
        db._bc_endpoint = False
        db.instance_create_time = backing.created
        log(f"{db.db_instance_identifier}: creating ({engine} on port {port})")

        def work():
            try:
                if latest_from is not None:
                    # a point-in-time restore to the latest time: a copy of the source taken now
                    try:
                        backing.seed = latest_from.restore_point()
                    except Exception as e:
                        log(f"{db.db_instance_identifier}: source copy failed ({e}); newest restore point")
                        backing.seed = latest_from.restore_points[-1]
                    backing.password = backing.seed.password
                    backing.master_user = backing.seed.master_user
                backing.start()
                # the first restore point: the state at creation (empty, or the seed)
                seed_now = backing.seed
                if seed_now is not None and seed_now.path:
                    backing.add_point_from(Copy(engine, seed_now.path, seed_now.master_user, seed_now.password,
                                                backing.created))
                else:
                    with self.lock:
                        backing.restore_points.insert(0, Copy(engine, None, backing.master_user,
                                                              backing.password, backing.created))
                with self.lock:
                    if backing.cancel.is_set():
                        raise RuntimeError("cancelled")
                    backing.state = "ready"
                    db.status = "available"
                    db._bc_endpoint = True
                log(f"{db.db_instance_identifier}: available on 127.0.0.1:{port}")
            except Exception as e:  # noqa: BLE001 - any failure is the instance's
                with self.lock:
                    if backing.cancel.is_set():
                        return
                    backing.state = "failed"
                    backing.error = str(e)
                    db.status = "failed"
                    db._bc_endpoint = False
                log(f"{db.db_instance_identifier}: failed: {e}")
                backing.stop()
        threading.Thread(target=work, daemon=True, name=f"launch-{db.db_instance_identifier}").start()

    def delete(self, db, backend, final_snapshot):
        """Shows ``db`` as deleting, then stops its server and forgets it."""
        db_id = db.db_instance_identifier
        backing = self.servers.get(db_id)
        db.status = "deleting"
        backend.databases[db_id] = db  # moto forgot it at once; AWS shows it deleting for a while
        started = time.monotonic()
        log(f"{db_id}: deleting")

        def work():
            if final_snapshot:
                pending = self.snapshot_threads.get(final_snapshot)
                if pending:
                    pending[1].join()
            if backing is not None:
                backing.stop()
                backing.state = "stopped"
                backing.remove_files()
            time.sleep(max(0.0, MIN_TRANSITION_SECONDS - (time.monotonic() - started)))
            with self.lock:
                if backend.databases.get(db_id) is db:
                    del backend.databases[db_id]
                if self.servers.get(db_id) is backing:
                    del self.servers[db_id]
            log(f"{db_id}: deleted")
        threading.Thread(target=work, daemon=True, name=f"delete-{db_id}").start()

    def reset_password(self, db, password):
        backing = self.servers[db.db_instance_identifier]
        db.status = "resetting-master-credentials"
        started = time.monotonic()

        def work():
            try:
                backing.set_password(password)
                status = "available"
            except Exception as e:  # noqa: BLE001
                log(f"{db.db_instance_identifier}: password reset failed: {e}")
                status = "failed" if not backing.running() else "available"
            time.sleep(max(0.0, MIN_TRANSITION_SECONDS - (time.monotonic() - started)))
            with self.lock:
                if db.status == "resetting-master-credentials":
                    db.status = status
        threading.Thread(target=work, daemon=True).start()

    def snapshot(self, snap, db):
        """Copies ``db``'s data for ``snap`` (status creating until done)."""
        backing = self.servers[db.db_instance_identifier]
        snap_id = snap.db_snapshot_identifier
        snap.status = "creating"
        db.status = "backing-up"
        dest = os.path.join(self.state, "snapshots", snap_id)

        def work():
            try:
                copy = backing.copy_to(dest)
                with self.lock:
                    self.snapshot_copies[snap_id] = copy
                    snap.status = "available"
                    snap.created = copy.taken_at
                backing.add_point_from(copy)
                log(f"snapshot {snap_id} of {db.db_instance_identifier}: available")
            except Exception as e:  # noqa: BLE001
                log(f"snapshot {snap_id} failed: {e}")
                with self.lock:
                    snap.status = "failed"
            finally:
                with self.lock:
                    if db.status == "backing-up":
                        db.status = "available"
        t = threading.Thread(target=work, daemon=True, name=f"snapshot-{snap_id}")
        self.snapshot_threads[snap_id] = (backing, t)
        t.start()

    # -- Aurora DB clusters ---------------------------------------------------------------------
    def live_members(self, cluster_id, backend=None):
        """The cluster's DB instances that are not being deleted."""
        backend = backend or self.backend
        return [d for d in backend.databases.values()
                if getattr(d, "db_cluster_identifier", None) == cluster_id and d.status != "deleting"]

    def sync_network(self, backing, cluster_id, backend):
        """The cluster's server listens on TCP exactly while the cluster has a live instance."""
        with self.lock:
            want = bool(self.live_members(cluster_id, backend))
        if backing.networking != want:
            backing.relaunch(want)

    def launch_cluster(self, cluster, backend, engine, master_user, password, seed, latest_from=None):
        """Backs moto's ``cluster`` with a new server (status creating until it is ready)."""
        cluster_id = cluster.db_cluster_identifier
        port = self.free_port()
        backing = Backing(self, cluster_id, engine, port, master_user, password, seed, kind="cluster")
        backing.backend = backend
        self.clusters[cluster_id] = backing
        cluster.port = port
        cluster.status = "creating"
        cluster._bc_ready = False
        cluster.cluster_create_time = backing.created
        log(f"cluster {cluster_id}: creating ({engine} on port {port})")

        def work():
            try:
                if latest_from is not None:
                    try:
                        backing.seed = latest_from.restore_point()
                    except Exception as e:
                        log(f"cluster {cluster_id}: source copy failed ({e}); newest restore point")
                        backing.seed = latest_from.restore_points[-1]
                    backing.password = backing.seed.password
                    backing.master_user = backing.seed.master_user
                with self.lock:
                    backing.networking = bool(self.live_members(cluster_id, backend))
                backing.start()
                seed_now = backing.seed
                if seed_now is not None and seed_now.path:
                    backing.add_point_from(Copy(engine, seed_now.path, seed_now.master_user, seed_now.password,
                                                backing.created))
                else:
                    with self.lock:
                        backing.restore_points.insert(0, Copy(engine, None, backing.master_user,
                                                              backing.password, backing.created))
                with self.lock:
                    if backing.cancel.is_set():
                        raise RuntimeError("cancelled")
                    backing.state = "ready"
                    cluster.status = "available"
                    cluster._bc_ready = True
                    cluster.earliest_restorable_time = backing.created
                    first = backing.restore_points[0]
                    for snap in backing.auto_snapshots:  # the automated snapshot taken at creation
                        self.cluster_snapshot_copies[snap.db_cluster_snapshot_identifier] = first
                        snap.created = first.taken_at
                        snap.status = "available"
                    backing.auto_snapshots = []
                log(f"cluster {cluster_id}: available (127.0.0.1:{port}, "
                    f"{'listening' if backing.networking else 'no TCP until an instance is available'})")
            except Exception as e:  # noqa: BLE001
                with self.lock:
                    if backing.cancel.is_set():
                        return
                    backing.state = "failed"
                    backing.error = str(e)
                    cluster.status = "failed"
                    for snap in backing.auto_snapshots:
                        snap.status = "failed"
                log(f"cluster {cluster_id}: failed: {e}")
                backing.stop()
        threading.Thread(target=work, daemon=True, name=f"launch-cluster-{cluster_id}").start()

    def launch_member(self, db, cluster, backend):
        """A DB instance in an Aurora cluster: creating until the cluster's server is up and listening."""
        db_id = db.db_instance_identifier
        cluster_id = cluster.db_cluster_identifier
        backing = self.clusters[cluster_id]
        cancel = threading.Event()
        self.member_cancel[db_id] = cancel
        db.status = "creating"
        db._bc_endpoint = False
        db.port = backing.port
        db.instance_create_time = utcnow()
        log(f"{db_id}: creating (instance of cluster {cluster_id})")

        def work():
            try:
                deadline = time.monotonic() + 2 * START_TIMEOUT
                while backing.state != "ready":
                    if cancel.is_set():
                        return
                    if backing.state in ("failed", "stopped") or backing.stopping:
                        raise RuntimeError(f"the cluster's server is {backing.state}")
                    if time.monotonic() > deadline:
                        raise RuntimeError("the cluster's server did not become ready")
                    time.sleep(0.1)
                self.sync_network(backing, cluster_id, backend)
                time.sleep(0.3)  # an instance is never available at once
                with self.lock:
                    if cancel.is_set() or db.status == "deleting":
                        return
                    if backing.state != "ready" or not backing.networking:
                        raise RuntimeError(f"the cluster's server is {backing.state}")
                    db.status = "available"
                    db._bc_endpoint = True
                log(f"{db_id}: available (cluster {cluster_id}, 127.0.0.1:{backing.port})")
            except Exception as e:  # noqa: BLE001
                with self.lock:
                    if cancel.is_set() or db.status == "deleting":
                        return
                    db.status = "failed"
                    db._bc_endpoint = False
                log(f"{db_id}: failed: {e}")
        threading.Thread(target=work, daemon=True, name=f"launch-member-{db_id}").start()

    def delete_member(self, db, backend):
        """Shows the cluster instance as deleting; the cluster stops listening once it has no live instance."""
        db_id = db.db_instance_identifier
        cluster_id = db.db_cluster_identifier
        backing = self.clusters.get(cluster_id)
        cancel = self.member_cancel.pop(db_id, None)
        if cancel is not None:
            cancel.set()
        was_writer = getattr(db, "is_cluster_writer", False)
        db.status = "deleting"
        db._bc_endpoint = False
        backend.databases[db_id] = db
        started = time.monotonic()
        log(f"{db_id}: deleting (instance of cluster {cluster_id})")

        def work():
            try:
                if backing is not None and not backing.stopping and backing.state == "ready":
                    self.sync_network(backing, cluster_id, backend)
            except Exception as e:  # noqa: BLE001
                log(f"cluster {cluster_id}: restart without TCP failed: {e}")
            time.sleep(max(0.0, MIN_TRANSITION_SECONDS - (time.monotonic() - started)))
            with self.lock:
                if backend.databases.get(db_id) is db:
                    del backend.databases[db_id]
                db.is_cluster_writer = False
                if was_writer:  # the next live instance becomes the writer, as a failover does
                    rest = sorted(self.live_members(cluster_id, backend), key=lambda d: d.promotion_tier)
                    if rest and not any(d.is_cluster_writer for d in rest):
                        rest[0].is_cluster_writer = True
            log(f"{db_id}: deleted")
        threading.Thread(target=work, daemon=True, name=f"delete-member-{db_id}").start()

    def delete_cluster(self, cluster, backend, final_snapshot):
        cluster_id = cluster.db_cluster_identifier
        backing = self.clusters.get(cluster_id)
        cluster.status = "deleting"
        cluster._bc_ready = False
        backend.clusters[cluster_id] = cluster
        started = time.monotonic()
        log(f"cluster {cluster_id}: deleting")

        def work():
            if final_snapshot:
                pending = self.snapshot_threads.get(("cluster", final_snapshot))
                if pending:
                    pending[1].join()
            if backing is not None:
                backing.stop()
                backing.state = "stopped"
                backing.remove_files()
            time.sleep(max(0.0, MIN_TRANSITION_SECONDS - (time.monotonic() - started)))
            with self.lock:
                if backend.clusters.get(cluster_id) is cluster:
                    del backend.clusters[cluster_id]
                if self.clusters.get(cluster_id) is backing:
                    del self.clusters[cluster_id]
            log(f"cluster {cluster_id}: deleted")
        threading.Thread(target=work, daemon=True, name=f"delete-cluster-{cluster_id}").start()

    def reset_cluster_password(self, cluster, backend, password):
        cluster_id = cluster.db_cluster_identifier
        backing = self.clusters[cluster_id]
        members = [d for d in self.live_members(cluster_id, backend) if d.status == "available"]
        cluster.status = "resetting-master-credentials"
        for d in members:
            d.status = "resetting-master-credentials"
        started = time.monotonic()

        def work():
            try:
                with backing.net_lock:  # not while the server is being restarted with/without TCP
                    backing.set_password(password)
                status = "available"
            except Exception as e:  # noqa: BLE001
                log(f"cluster {cluster_id}: password reset failed: {e}")
                status = "failed" if not backing.running() else "available"
            time.sleep(max(0.0, MIN_TRANSITION_SECONDS - (time.monotonic() - started)))
            with self.lock:
                if cluster.status == "resetting-master-credentials":
                    cluster.status = status
                for d in members:
                    if d.status == "resetting-master-credentials":
                        d.status = status
        threading.Thread(target=work, daemon=True).start()

    def cluster_snapshot(self, snap, backing):
        """Copies the cluster's data for ``snap`` (status creating until done; the cluster stays available,
        as Aurora's storage-level snapshots leave it)."""
        snap_id = snap.db_cluster_snapshot_identifier
        snap.status = "creating"
        dest = os.path.join(self.state, "cluster-snapshots", snap_id)

        def work():
            try:
                copy = backing.copy_to(dest)
                with self.lock:
                    self.cluster_snapshot_copies[snap_id] = copy
                    snap.status = "available"
                    snap.created = copy.taken_at
                backing.add_point_from(copy)
                log(f"cluster snapshot {snap_id} of {backing.db_id}: available")
            except Exception as e:  # noqa: BLE001
                log(f"cluster snapshot {snap_id} failed: {e}")
                with self.lock:
                    snap.status = "failed"
        t = threading.Thread(target=work, daemon=True, name=f"cluster-snapshot-{snap_id}")
        self.snapshot_threads[("cluster", snap_id)] = (backing, t)
        t.start()

    def server_of(self, ident):
        """The server behind a DB instance, an Aurora cluster, or an instance of a cluster."""
        with self.lock:
            if ident in self.servers:
                return self.servers[ident]
            if ident in self.clusters:
                return self.clusters[ident]
            db = self.find_db(ident)
            cluster_id = getattr(db, "db_cluster_identifier", None) if db is not None else None
            return self.clusters.get(cluster_id) if cluster_id else None

    def stop_all(self):
        with self.lock:
            servers = list(self.servers.values()) + list(self.clusters.values())
        threads = [threading.Thread(target=b.stop) for b in servers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return servers

    def reset(self):
        servers = self.stop_all()
        with self.lock:
            for b in servers:
                b.remove_files()
            self.servers.clear()
            self.clusters.clear()
            self.cluster_snapshot_copies.clear()
            self.member_cancel.clear()
            self.snapshot_copies.clear()
            self.snapshot_threads.clear()
            rds_models.rds_backends.reset()
            for sub in ("instances", "snapshots", "cluster-snapshots", "restore-points"):
                shutil.rmtree(os.path.join(self.state, sub), ignore_errors=True)
        return len(servers)

    def monitor(self):
        """A server that dies on its own makes its instance ``failed``."""
        while True:
            time.sleep(1)
            with self.lock:
                for db_id, b in list(self.servers.items()):
                    if b.state == "ready" and not b.stopping and not b.running():
                        b.state = "failed"
                        b.error = f"server exited ({b.proc.returncode if b.proc else '?'})"
                        db = self.find_db(db_id)
                        if db is not None and db.status != "deleting":
                            db.status = "failed"
                            db._bc_endpoint = False
                        log(f"{db_id}: server died: failed")
                for cluster_id, b in list(self.clusters.items()):
                    if b.state == "ready" and not b.stopping and not b.running():
                        b.state = "failed"
                        b.error = f"server exited ({b.proc.returncode if b.proc else '?'})"
                        cluster = b.backend.clusters.get(cluster_id)
                        if cluster is not None and cluster.status != "deleting":
                            cluster.status = "failed"
                            cluster._bc_ready = False
                        for d in self.live_members(cluster_id, b.backend):
                            d.status = "failed"
                            d._bc_endpoint = False
                        log(f"cluster {cluster_id}: server died: failed")


WORLD = None


# --- validation as RDS does it ------------------------------------------------------------

_PRINTABLE = re.compile(r"^[\x21-\x7e]+$")


def check_master(engine, user, password, creating=True, cluster=False):
    """As RDS validates them; Aurora clusters (CreateDBCluster's constraints): user 1-16, password 8-41."""
    if creating:
        if not user:
            raise rds_error("InvalidParameterValue", "The parameter MasterUsername must be provided and must "
                                                     "not be blank.")
        limit = 63 if engine == "postgres" and not cluster else 16
        if not re.match(r"^[A-Za-z][A-Za-z0-9_]*$", user) or len(user) > limit:
            raise rds_error("InvalidParameterValue",
                            f"The parameter MasterUsername is not a valid identifier. It must begin with a letter, "
                            f"contain only ASCII letters, digits and underscores, and have 1 to {limit} characters.")
        if user.lower() in ("rdsadmin", "rdsrepladmin", "rds_superuser"):
            raise rds_error("InvalidParameterValue", f"MasterUsername {user} cannot be used as it is a reserved "
                                                     "word used by the engine")
        if password is None:
            raise rds_error("InvalidParameterValue", "The parameter MasterUserPassword must be provided and must "
                                                     "not be blank.")
    if password is not None:
        limit = 128 if engine == "postgres" and not cluster else 41
        if len(password) < 8 or len(password) > limit:
            raise rds_error("InvalidParameterValue",
                            f"The parameter MasterUserPassword is not a valid password because it is shorter than "
                            f"8 characters." if len(password) < 8 else
                            f"The parameter MasterUserPassword is not a valid password because it is longer than "
                            f"{limit} characters.")
        if not _PRINTABLE.match(password) or any(c in password for c in '/"@'):
            raise rds_error("InvalidParameterValue",
                            "The parameter MasterUserPassword is not a valid password. Only printable ASCII "
                            "characters besides '/', '@', '\"', ' ' may be used.")


def parse_time(value, name="RestoreTime"):
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        raise rds_error("InvalidParameterValue", f"Invalid {name}: {value}") from None


def truthy(value):
    return str(value).lower() == "true"


# --- hooks into moto's backend ---------------------------------------------------------------

_orig_create = rds_models.RDSBackend.create_db_instance
_orig_snapshot = rds_models.RDSBackend.create_db_snapshot
_orig_delete = rds_models.RDSBackend.delete_db_instance
_orig_modify = rds_models.RDSBackend.modify_db_instance
_orig_delete_snapshot = rds_models.RDSBackend.delete_db_snapshot


def _p(name, default=None):
    values = (CTX.params or {}).get(name)
    return values[0] if values else default


def _request_tags():
    tags = []
    for style in ("Tag", "member"):
        n = 1
        while f"Tags.{style}.{n}.Key" in (CTX.params or {}):
            tags.append({"Key": _p(f"Tags.{style}.{n}.Key"), "Value": _p(f"Tags.{style}.{n}.Value", "")})
            n += 1
    return tags


def hooked_create(self, db_kwargs):
    action = CTX.action
    precheck(action, CTX.params or {}, self)
    if db_kwargs.get("db_cluster_identifier"):
        return create_member(self, action, db_kwargs)
    engine_name = (db_kwargs.get("engine") or "").lower()
    engine = ENGINES.get(engine_name)
    if engine is None:
        raise rds_error("InvalidParameterValue", f"Engine {engine_name or '(none)'} is not backed by this test "
                                                 "world (localstack/rds.py): postgres, mariadb, mysql only")
    latest_from = None
    seed = None
    if action == "CreateDBInstance":
        user = db_kwargs.get("master_username")
        password = _p("MasterUserPassword")
    elif action == "RestoreDBInstanceFromDBSnapshot":
        snap_id = _p("DBSnapshotIdentifier", "").split(":")[-1].lower()
        seed = WORLD.snapshot_copies[snap_id]
        user, password = seed.master_user, seed.password
    elif action == "RestoreDBInstanceToPointInTime":
        source_id = _p("SourceDBInstanceIdentifier")
        source = WORLD.servers[source_id]
        if truthy(_p("UseLatestRestorableTime", "false")):
            if source.state == "ready" and source.running():
                latest_from = source
                seed = source.restore_points[-1]
            else:
                seed = source.restore_points[-1]
        else:
            when = parse_time(_p("RestoreTime"))
            eligible = [c for c in source.restore_points if c.taken_at.replace(tzinfo=timezone.utc) <= when]
            seed = eligible[-1] if eligible else source.restore_points[0]
        user, password = seed.master_user, seed.password
    else:
        raise rds_error("InvalidParameterValue", f"{action} creating a DB instance is not backed by this world")
    if not db_kwargs.get("engine_version"):
        db_kwargs["engine_version"] = WORLD.version(engine)
    db = _orig_create(self, db_kwargs)
    try:
        if action != "CreateDBInstance":
            db.deletion_protection = truthy(_p("DeletionProtection", "false"))
            req_tags = _request_tags()
            if action == "RestoreDBInstanceFromDBSnapshot":
                snap = self.database_snapshots.get(_p("DBSnapshotIdentifier", "").split(":")[-1].lower())
                db.tags = req_tags or (snap.tags if snap is not None else [])
            else:
                db.tags = req_tags
            db.master_username = user
        if seed is not None and not seed.path:
            seed = Copy(engine, None, user, password, seed.taken_at)  # an empty server: initdb with these
        WORLD.launch(db, engine, user, password, seed, latest_from)
    except Exception:
        self.databases.pop(db.db_instance_identifier, None)
        raise
    return db


def hooked_snapshot(self, db_instance_identifier, db_snapshot_identifier, *a, **kw):
    db = self.databases.get(db_instance_identifier) if isinstance(db_instance_identifier, str) else None
    if isinstance(db, rds_models.DBInstanceClustered) and kw.get("snapshot_type", "manual") == "manual":
        raise rds_error("InvalidParameterValue", "The specified instance is a member of a cluster and a snapshot "
                                                 "cannot be created directly. Please use the "
                                                 "CreateDBClusterSnapshot API instead.")
    if db is not None and db.status != "available":
        raise rds_error("InvalidDBInstanceState", "Cannot create a snapshot because the database instance "
                                                  f"{db_instance_identifier} is not currently in the available "
                                                  "state.")
    snap = _orig_snapshot(self, db_instance_identifier, db_snapshot_identifier, *a, **kw)
    if db is not None and db.db_instance_identifier in WORLD.servers:
        WORLD.snapshot(snap, db)
    return snap


def hooked_delete(self, db_instance_identifier, final_db_snapshot_identifier=None, skip_final_snapshot=False,
                  **kw):
    db = self.databases.get(db_instance_identifier)
    skip = truthy(skip_final_snapshot)
    if isinstance(db, rds_models.DBInstanceClustered):
        return delete_member(self, db, final_db_snapshot_identifier)
    if db is not None:
        if db.status == "deleting":
            raise rds_error("InvalidDBInstanceState", f"Instance {db_instance_identifier} is already being deleted.")
        if not skip and not final_db_snapshot_identifier:
            raise rds_error("InvalidParameterCombination",
                            "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is specified.")
        if skip and final_db_snapshot_identifier:
            raise rds_error("InvalidParameterCombination",
                            "Cannot specify both FinalDBSnapshotIdentifier and SkipFinalSnapshot.")
        if not skip and db.status != "available" and not db.deletion_protection:
            raise rds_error("InvalidDBInstanceState", f"Instance {db_instance_identifier} is currently "
                                                      f"{db.status} - a final snapshot cannot be taken.")
    db = _orig_delete(self, db_instance_identifier, final_db_snapshot_identifier=final_db_snapshot_identifier,
                      skip_final_snapshot=skip, **kw)
    WORLD.delete(db, self, None if skip else (final_db_snapshot_identifier or "").lower())
    return db


def hooked_modify(self, db_instance_identifier, db_kwargs):
    db = self.databases.get(db_instance_identifier)
    if db is not None:
        if db.status != "available":
            raise rds_error("InvalidDBInstanceState", "Database instance is not in available state.")
        if db_kwargs.get("new_db_instance_identifier"):
            raise rds_error("InvalidParameterValue", "renaming (NewDBInstanceIdentifier) is not supported by this "
                                                     "test world (localstack/rds.py)")
    password = _p("MasterUserPassword")
    if db is not None and password is not None:
        check_master(ENGINES.get(db.engine, "mariadb"), None, password, creating=False)
    db = _orig_modify(self, db_instance_identifier, db_kwargs)
    if password is not None and db.db_instance_identifier in WORLD.servers:
        WORLD.reset_password(db, password)
    return db


def hooked_delete_snapshot(self, db_snapshot_identifier, *a, **kw):
    snap = self.database_snapshots.get(db_snapshot_identifier)
    if snap is not None and snap.status != "available":
        raise rds_error("InvalidDBSnapshotState", "Cannot delete the snapshot because it is not currently in the "
                                                  "available state.")
    result = _orig_delete_snapshot(self, db_snapshot_identifier, *a, **kw)
    WORLD.snapshot_copies.pop(db_snapshot_identifier, None)
    shutil.rmtree(os.path.join(WORLD.state, "snapshots", db_snapshot_identifier), ignore_errors=True)
    return result


def install_hooks():
    rds_models.RDSBackend.create_db_instance = hooked_create
    rds_models.RDSBackend.create_db_snapshot = hooked_snapshot
    rds_models.RDSBackend.delete_db_instance = hooked_delete
    rds_models.RDSBackend.modify_db_instance = hooked_modify
    rds_models.RDSBackend.delete_db_snapshot = hooked_delete_snapshot
    # Endpoint only once the server accepts connections, and it is this host.
    rds_models.DBInstance.endpoint = property(
        lambda self: {"Address": "127.0.0.1", "Port": self.port} if getattr(self, "_bc_endpoint", False) else None)
    rds_models.DBInstance.address = property(lambda self: "127.0.0.1")
    # SnapshotCreateTime only once the copy is done
    rds_models.DBSnapshot.snapshot_create_time = property(
        lambda self: self.created if self.status == "available" else None)


# --- Aurora DB clusters -----------------------------------------------------------------------

CLUSTER_ENGINES = {"aurora-postgresql": "postgres", "aurora-mysql": "mariadb"}
_orig_create_cluster = rds_models.RDSBackend.create_db_cluster
_orig_cluster_snapshot = rds_models.RDSBackend.create_db_cluster_snapshot
_orig_modify_cluster = rds_models.RDSBackend.modify_db_cluster
_orig_delete_cluster_snapshot = rds_models.RDSBackend.delete_db_cluster_snapshot


def cluster_state_error(cluster_id, status, what):
    return rds_error("InvalidDBClusterStateFault", f"DbCluster {cluster_id} is in {status} state but expected it to "
                                                   f"be available {what}.")


def create_member(backend, action, db_kwargs):
    """CreateDBInstance(DBClusterIdentifier=...): an instance of a backed Aurora cluster."""
    if action != "CreateDBInstance":
        raise rds_error("InvalidParameterCombination", f"{action} cannot create an instance in a DB cluster.")
    cluster_id = db_kwargs["db_cluster_identifier"].lower()
    cluster = backend.clusters.get(cluster_id)
    if cluster is None:
        raise rds_error("DBClusterNotFoundFault", f"DBCluster {cluster_id} not found.")
    if cluster_id not in WORLD.clusters:
        raise rds_error("InvalidParameterValue", f"DB cluster {cluster_id} is not backed by this test world")
    for name in ("MasterUsername", "MasterUserPassword"):
        if _p(name) is not None:
            raise rds_error("InvalidParameterCombination", "The requested DB Instance will be a member of a DB "
                                                           f"Cluster. Set {name} for the DB Cluster.")
    engine = (db_kwargs.get("engine") or "").lower()
    if engine != cluster.engine:
        raise rds_error("InvalidParameterCombination", f"The engine name requested for your DB instance ({engine}) "
                                                       f"doesn't match the engine name of your DB cluster "
                                                       f"({cluster.engine}).")
    if cluster.status in ("deleting", "failed") or (cluster.status == "creating" and
                                                     getattr(cluster, "_bc_restored", False)):
        # AWS: "You can create DB instances only after the Restore... operation has completed and the DB
        # cluster is available."
        raise cluster_state_error(cluster_id, cluster.status, "to create a DB instance in it")
    db_kwargs.pop("engine_version", None)
    db = _orig_create(backend, db_kwargs)
    try:
        for snap_id, snap in list(backend.database_snapshots.items()):  # Aurora instances have no DB snapshots
            if snap.database is db:
                del backend.database_snapshots[snap_id]
        WORLD.launch_member(db, cluster, backend)
    except Exception:
        backend.databases.pop(db.db_instance_identifier, None)
        raise
    return db


def delete_member(backend, db, final_snapshot):
    db_id = db.db_instance_identifier
    if db.status == "deleting":
        raise rds_error("InvalidDBInstanceState", f"Instance {db_id} is already being deleted.")
    if final_snapshot:
        raise rds_error("InvalidParameterCombination", "FinalDBSnapshotIdentifier can not be specified when "
                                                       "deleting a cluster instance")
    db = _orig_delete(backend, db_id, skip_final_snapshot=True)
    WORLD.delete_member(db, backend)
    return db


def hooked_create_cluster(self, kwargs):
    action = CTX.action
    precheck_cluster(action, lambda name, default=None: (CTX.params or {}).get(name, [default])[0], self)
    cluster_id = (kwargs.get("db_cluster_identifier") or "").lower()
    if cluster_id in self.clusters:
        raise rds_error("DBClusterAlreadyExistsFault", "DB Cluster already exists")
    engine_name = (kwargs.get("engine") or "").lower()
    engine = CLUSTER_ENGINES.get(engine_name)
    if engine is None:
        raise rds_error("InvalidParameterValue", f"Engine {engine_name or '(none)'} is not backed by this test "
                                                 "world (localstack/rds.py): aurora-postgresql, aurora-mysql only")
    latest_from = None
    seed = None
    if action == "CreateDBCluster":
        user, password = _p("MasterUsername"), _p("MasterUserPassword")
        check_master(engine, user, password, cluster=True)
        retention = _p("BackupRetentionPeriod")
        if retention is not None and not (retention.isdigit() and 1 <= int(retention) <= 35):
            raise rds_error("InvalidParameterValue", f"Invalid backup retention period: {retention}. Aurora "
                                                     "clusters keep backups for 1 to 35 days.")
    elif action == "RestoreDBClusterFromSnapshot":
        snap_id = (_p("SnapshotIdentifier") or "").split(":cluster-snapshot:")[-1].lower()
        seed = WORLD.cluster_snapshot_copies[snap_id]
        if seed.engine != engine:
            raise rds_error("InvalidParameterCombination", f"The engine {engine_name} cannot restore DB cluster "
                                                           f"snapshot {snap_id} (a {seed.engine} snapshot).")
        user, password = seed.master_user, seed.password
    elif action == "RestoreDBClusterToPointInTime":
        source = WORLD.clusters[_p("SourceDBClusterIdentifier").lower()]
        if truthy(_p("UseLatestRestorableTime", "false")):
            seed = source.restore_points[-1]
            if source.state == "ready" and source.running():
                latest_from = source
        else:
            when = parse_time(_p("RestoreToTime"), "RestoreToTime")
            eligible = [c for c in source.restore_points if c.taken_at.replace(tzinfo=timezone.utc) <= when]
            seed = eligible[-1] if eligible else source.restore_points[0]
        user, password = seed.master_user, seed.password
    else:
        raise rds_error("InvalidParameterValue", f"{action} creating a DB cluster is not backed by this world")
    kwargs["engine_version"] = _p("EngineVersion") or WORLD.version(engine)
    cluster = _orig_create_cluster(self, kwargs)
    try:
        if action != "CreateDBCluster":
            cluster._bc_restored = True
            cluster.deletion_protection = truthy(_p("DeletionProtection", "false"))
            cluster.master_username = user
            cluster.tags = _request_tags()
            if action == "RestoreDBClusterToPointInTime":
                cluster.vpc_security_group_ids = [v[0] for k, v in (CTX.params or {}).items()
                                                  if k.startswith("VpcSecurityGroupIds.")]
                cluster.db_subnet_group_name = _p("DBSubnetGroupName") or "default"
        if seed is not None and not seed.path:
            seed = Copy(engine, None, user, password, seed.taken_at)
        WORLD.launch_cluster(cluster, self, engine, user, password, seed, latest_from)
        backing = WORLD.clusters[cluster.db_cluster_identifier]
        for snap in self.cluster_snapshots.values():  # moto's automated snapshot at creation
            if snap.cluster is not None and snap.db_cluster_identifier == cluster.db_cluster_identifier \
                    and snap.snapshot_type == "automated" and snap.status == "creating":
                snap.port = backing.port
                backing.auto_snapshots.append(snap)
    except Exception:
        self.clusters.pop(cluster.db_cluster_identifier, None)
        raise
    return cluster


def hooked_cluster_snapshot(self, db_cluster_identifier, db_cluster_snapshot_identifier, snapshot_type="manual",
                            *a, **kw):
    cluster = self.clusters.get((db_cluster_identifier or "").lower())
    if cluster is not None and snapshot_type == "manual" and cluster.status != "available":
        raise cluster_state_error(cluster.db_cluster_identifier, cluster.status, "to take a snapshot")
    snap = _orig_cluster_snapshot(self, db_cluster_identifier, db_cluster_snapshot_identifier, snapshot_type,
                                  *a, **kw)
    backing = WORLD.clusters.get(cluster.db_cluster_identifier) if cluster is not None else None
    if backing is not None:
        snap.port = backing.port
    if snapshot_type != "manual":
        snap.status = "creating"   # the state at creation; available once the cluster's server is up
        if backing is not None:
            backing.auto_snapshots.append(snap)
    elif backing is not None:
        WORLD.cluster_snapshot(snap, backing)
    return snap


def hooked_modify_cluster(self, kwargs):
    cluster_id = (kwargs.get("db_cluster_identifier") or "").lower()
    cluster = self.clusters.get(cluster_id)
    if cluster is None:
        raise rds_error("DBClusterNotFoundFault", f"DBCluster {cluster_id} not found.")
    if cluster.status != "available":
        raise cluster_state_error(cluster_id, cluster.status, "for modification")
    if kwargs.get("new_db_cluster_identifier"):
        raise rds_error("InvalidParameterValue", "renaming (NewDBClusterIdentifier) is not supported by this test "
                                                 "world (localstack/rds.py)")
    retention = _p("BackupRetentionPeriod")
    if retention is not None and not (retention.isdigit() and 1 <= int(retention) <= 35):
        raise rds_error("InvalidParameterValue", f"Invalid backup retention period: {retention}.")
    password = _p("MasterUserPassword")
    backing = WORLD.clusters.get(cluster_id)
    if password is not None:
        check_master(backing.engine if backing else "postgres", None, password, creating=False, cluster=True)
    result = _orig_modify_cluster(self, kwargs)
    cluster.status = "available"
    if password is not None and backing is not None:
        WORLD.reset_cluster_password(cluster, self, password)
        result.status = cluster.status
    return result


def hooked_delete_cluster(self, cluster_identifier, snapshot_name=None):
    cluster_id = (cluster_identifier or "").lower()
    cluster = self.clusters.get(cluster_id)
    if cluster is None:
        raise rds_error("DBClusterNotFoundFault", f"DBCluster {cluster_id} not found.")
    skip = truthy(_p("SkipFinalSnapshot", "false"))
    if cluster.status == "deleting":
        raise rds_error("InvalidDBClusterStateFault", f"Cluster {cluster_id} is already being deleted.")
    if cluster.status not in ("available", "failed", "stopped"):
        raise cluster_state_error(cluster_id, cluster.status, "to be deleted")
    if WORLD.live_members(cluster_id, self):
        raise rds_error("InvalidDBClusterStateFault", "Cluster cannot be deleted, it still contains DB instances "
                                                      "in non-deleting state.")
    if cluster.deletion_protection:
        raise rds_error("InvalidParameterCombination", "Cannot delete protected Cluster, please disable deletion "
                                                       "protection and try again.")
    if not skip and not snapshot_name:
        raise rds_error("InvalidParameterCombination", "FinalDBSnapshotIdentifier is required unless "
                                                       "SkipFinalSnapshot is specified.")
    if skip and snapshot_name:
        raise rds_error("InvalidParameterCombination", "Cannot specify both FinalDBSnapshotIdentifier and "
                                                       "SkipFinalSnapshot.")
    if snapshot_name:
        if cluster.status != "available":
            raise cluster_state_error(cluster_id, cluster.status, "for a final snapshot")
        hooked_cluster_snapshot(self, cluster_id, snapshot_name)
    # automated backups go with the cluster
    for snap_id, snap in list(self.cluster_snapshots.items()):
        if snap.db_cluster_identifier == cluster_id and snap.snapshot_type == "automated":
            del self.cluster_snapshots[snap_id]
            WORLD.cluster_snapshot_copies.pop(snap_id, None)
    WORLD.delete_cluster(cluster, self, (snapshot_name or "").lower() or None)
    return cluster


def hooked_delete_cluster_snapshot(self, db_snapshot_identifier, *a, **kw):
    snap = self.cluster_snapshots.get(db_snapshot_identifier)
    if snap is not None and snap.status != "available":
        raise rds_error("InvalidDBClusterSnapshotStateFault", "Cannot delete the snapshot because it is not "
                                                              "currently in the available state.")
    result = _orig_delete_cluster_snapshot(self, db_snapshot_identifier, *a, **kw)
    copy = WORLD.cluster_snapshot_copies.pop(db_snapshot_identifier, None)
    if copy is not None and copy.path and copy.path.startswith(os.path.join(WORLD.state, "cluster-snapshots")):
        shutil.rmtree(copy.path, ignore_errors=True)
    return result


def precheck_cluster(action, first, backend):
    if action == "RestoreDBClusterFromSnapshot":
        snap_id = (first("SnapshotIdentifier") or "").split(":cluster-snapshot:")[-1].lower()
        snap = backend.cluster_snapshots.get(snap_id)
        if snap is None:
            raise rds_error("DBClusterSnapshotNotFoundFault", f"DBClusterSnapshot {snap_id} not found.")
        if snap.status != "available" or snap_id not in WORLD.cluster_snapshot_copies:
            raise rds_error("InvalidDBClusterSnapshotStateFault", f"DBClusterSnapshot {snap_id} must have state "
                                                                  f"available but actually has {snap.status}")
    elif action == "RestoreDBClusterToPointInTime":
        latest = truthy(first("UseLatestRestorableTime", "false"))
        when = first("RestoreToTime")
        restore_type = first("RestoreType") or "full-copy"
        if restore_type not in ("full-copy", "copy-on-write"):
            raise rds_error("InvalidParameterValue", f"Invalid RestoreType: {restore_type}. Valid values: "
                                                     "full-copy, copy-on-write.")
        if latest and when:
            raise rds_error("InvalidParameterCombination", "Cannot specify both RestoreToTime and "
                                                           "UseLatestRestorableTime.")
        if not latest and not when:
            raise rds_error("InvalidParameterCombination", "Either RestoreToTime or UseLatestRestorableTime must "
                                                           "be specified.")
        if when and restore_type == "copy-on-write":
            raise rds_error("InvalidParameterCombination", "RestoreToTime can't be specified if the RestoreType "
                                                           "parameter is copy-on-write.")
        source_id = (first("SourceDBClusterIdentifier") or "").lower()
        cluster = backend.clusters.get(source_id)
        if cluster is None:
            raise rds_error("DBClusterNotFoundFault", f"DBCluster {source_id} not found.")
        backing = WORLD.clusters.get(source_id)
        if backing is None or not backing.restore_points or cluster.status in ("creating", "deleting"):
            raise cluster_state_error(source_id, cluster.status, "to be restored")
        if when:
            t = parse_time(when, "RestoreToTime")
            earliest = backing.created.replace(tzinfo=timezone.utc)
            now = datetime.now(timezone.utc)
            if t < earliest or t > now:
                raise rds_error("InvalidRestoreFault",
                                f"The restore time {iso(t)} is outside the restorable window of DB cluster "
                                f"{source_id}: {iso(earliest)} to {iso(now)}.")
    elif action == "DeleteDBCluster":
        pass


def install_cluster_hooks():
    rds_models.RDSBackend.create_db_cluster = hooked_create_cluster
    rds_models.RDSBackend.create_db_cluster_snapshot = hooked_cluster_snapshot
    rds_models.RDSBackend.modify_db_cluster = hooked_modify_cluster
    rds_models.RDSBackend.delete_db_cluster = hooked_delete_cluster
    rds_models.RDSBackend.delete_db_cluster_snapshot = hooked_delete_cluster_snapshot
    C = rds_models.DBCluster
    # status is the world's (moto flips creating -> available on the first read)
    C.status = property(lambda self: self.__dict__.get("_status", "creating"),
                        lambda self, v: self.__dict__.__setitem__("_status", v))
    ready = lambda self: getattr(self, "_bc_ready", False)  # noqa: E731
    C.endpoint = property(lambda self: "127.0.0.1" if ready(self) else None)
    C.reader_endpoint = property(lambda self: "127.0.0.1" if ready(self) else None)
    C.latest_restorable_time = property(lambda self: utcnow() if ready(self) else None)
    C.earliest_restorable_time = property(
        lambda self: self.__dict__.get("_bc_earliest") if ready(self) else None,
        lambda self, v: self.__dict__.__setitem__("_bc_earliest", v))
    rds_models.DBClusterSnapshot.snapshot_create_time = property(
        lambda self: self.created if self.status == "available" else None)


# --- checks before an instance is created -------------------------------------------------------

def precheck(action, params, backend):
    first = lambda name, default=None: params.get(name, [default])[0]  # noqa: E731
    if action == "CreateDBInstance":
        engine = ENGINES.get((first("Engine") or "").lower())
        if engine and not first("DBClusterIdentifier"):
            check_master(engine, first("MasterUsername"), first("MasterUserPassword"))
    elif action == "RestoreDBInstanceFromDBSnapshot":
        snap_id = (first("DBSnapshotIdentifier") or "").split(":")[-1].lower()
        snap = backend.database_snapshots.get(snap_id)
        if snap is not None and (snap.status != "available" or snap_id not in WORLD.snapshot_copies):
            raise rds_error("InvalidDBSnapshotState", f"DBSnapshot {snap_id} must have state available but "
                                                      f"actually has {snap.status}")
    elif action == "RestoreDBInstanceToPointInTime":
        latest = truthy(first("UseLatestRestorableTime", "false"))
        when = first("RestoreTime")
        if latest and when:
            raise rds_error("InvalidParameterCombination", "Cannot specify both RestoreTime and "
                                                           "UseLatestRestorableTime.")
        if not latest and not when:
            raise rds_error("InvalidParameterCombination", "Either RestoreTime or UseLatestRestorableTime must "
                                                           "be specified.")
        source_id = first("SourceDBInstanceIdentifier")
        db = backend.databases.get(source_id)
        if db is None:
            raise rds_error("DBInstanceNotFound", f"DBInstance {source_id} not found.")
        backing = WORLD.servers.get(source_id)
        if backing is None or not backing.restore_points:
            raise rds_error("InvalidDBInstanceState", f"DB instance {source_id} has no restorable backups yet "
                                                      f"(status {db.status}).")
        if int(db.backup_retention_period or 0) == 0:
            raise rds_error("InvalidDBInstanceState", "Automated backups are not enabled for this database "
                                                      "instance. To enable automated backups, use "
                                                      "ModifyDBInstance to set the backup retention period to a "
                                                      "non-zero value.")
        if when:
            t = parse_time(when)
            earliest = backing.created.replace(tzinfo=timezone.utc)
            now = datetime.now(timezone.utc)
            if t < earliest or t > now:
                raise rds_error("InvalidRestoreFault",
                                f"The restore time {iso(t)} is outside the restorable window of DB instance "
                                f"{source_id}: {iso(earliest)} to {iso(now)}.")


# --- HTTP ------------------------------------------------------------------------------------------

def dispatch(method, path, query, headers, body):
    params = urllib.parse.parse_qs(query, keep_blank_values=True)
    if body and "x-www-form-urlencoded" in headers.get("Content-Type", ""):
        params.update(urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
    action = params.get("Action", [None])[0]
    hdrs = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
    with WORLD.lock:
        CTX.action, CTX.params = action, params
        try:
            env = EnvironBuilder(method=method, path=path, query_string=query, data=body, headers=hdrs).get_environ()
            request = Request(env)
            status, rhdrs, rbody = RDSResponse.dispatch(request, f"http://{headers.get('Host', 'localhost')}{path}"
                                                        + (f"?{query}" if query else ""), request.headers)
        finally:
            CTX.action = CTX.params = None
    rhdrs = {k: v for k, v in rhdrs.items() if k.lower() not in ("status", "content-length")}
    return int(status), rhdrs, rbody.encode() if isinstance(rbody, str) else rbody


class Handler(ProxyHandler):
    server_version = "rds-world"

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        body = self.read_body()
        if url.path.startswith(CONTROL):
            self.control(url.path[len(CONTROL):], urllib.parse.parse_qs(url.query))
            return
        try:
            status, headers, data = dispatch(self.command, url.path, url.query, self.headers, body)
        except Exception as e:  # noqa: BLE001 - an internal error is a 500 naming it
            log(f"internal error: {type(e).__name__}: {e}")
            self.reply(*query_error("InternalFailure", f"rds world: {type(e).__name__}: {e}", 500))
            return
        self.reply(status, headers, data)

    def control(self, what, query):
        status, reply = 200, {}
        db_id = (query.get("db") or [None])[0]
        try:
            if what == "health" and self.command == "GET":
                reply = {"ok": True, "state_dir": WORLD.state, "server_ports": list(WORLD.ports)}
            elif what == "servers" and self.command == "GET":
                with WORLD.lock:
                    servers = list(WORLD.servers.values()) + list(WORLD.clusters.values())
                reply = {"servers": [b.to_json() for b in servers]}
            elif what == "connections" and self.command == "GET":
                backing = WORLD.server_of(db_id)
                if backing is None:
                    status, reply = 404, {"error": f"no server for db {db_id!r}"}
                else:
                    reply = {"db": db_id, "connections": backing.connections()}
            elif what == "restore-points" and self.command == "POST":
                backing = WORLD.server_of(db_id)
                if backing is None:
                    status, reply = 404, {"error": f"no server for db {db_id!r}"}
                else:
                    copy = backing.restore_point()
                    reply = {"db": db_id, "taken_at": iso(copy.taken_at),
                             "restore_points": [iso(c.taken_at) for c in backing.restore_points]}
            elif what == "reset" and self.command == "POST":
                reply = {"stopped": WORLD.reset()}
            else:
                status, reply = 404, {"error": f"no control endpoint {self.command} {what}"}
        except RuntimeError as e:
            status, reply = 409, {"error": str(e)}
        self.reply_json(status, reply)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("BACKUP_CLOUD_RDS_PORT", "4568")))
    parser.add_argument("--state-dir", default=os.environ.get("BACKUP_CLOUD_RDS_STATE_DIR",
                                                              os.path.join(REPO, ".state", "rds")))
    parser.add_argument("--server-ports", default=os.environ.get("BACKUP_CLOUD_RDS_SERVER_PORTS", "56000-56999"))
    args = parser.parse_args()
    lo, hi = (int(x) for x in args.server_ports.split("-"))
    global WORLD
    WORLD = World(args.state_dir, (lo, hi))
    WORLD.clean_leftovers()
    install_hooks()
    install_cluster_hooks()
    threading.Thread(target=WORLD.monitor, daemon=True, name="monitor").start()

    def terminate(signum, frame):
        log(f"signal {signum}: stopping every server")
        WORLD.stop_all()
        os._exit(0)
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, terminate)
    server = HTTPServer(("127.0.0.1", args.port), Handler)
    return serve(server)


if __name__ == "__main__":
    sys.exit(main())
