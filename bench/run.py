"""`make bench`: the agent's throughput and memory, measured side by side
with the shell baseline and the endpoint's own limit on this machine.

Why a script and not `cargo bench`: every figure here is a ratio of real
processes (the release `backup-cloud` binary, gpg, pg_dump, the aws CLI,
LocalStack), run interleaved in one session so machine noise hits both
sides alike. Nothing is reimplemented: the encrypt stage runs through the
binary's hidden `bench-encrypt` subcommand (the agent's own stage code),
and the end-to-end runs are `backup-cloud agent` itself against a job spec
this script writes, exactly as the controller would.

Writes bench-results.json at the repository root and prints a table.
Fixtures (a 1 GiB random file, a ≥ 1 GB PostgreSQL database of random
text, a throwaway key pair) are cached under .state/bench/.
"""

import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import boto3

REPO = Path(__file__).resolve().parent.parent
STATE = REPO / ".state" / "bench"
# BENCH_BINARY compares another build (e.g. the previous commit's) on the same fixtures.
BINARY = Path(os.environ.get("BENCH_BINARY", REPO / "target" / "release" / "backup-cloud"))
ENDPOINT = os.environ.get("BACKUP_CLOUD_TEST_ENDPOINT", "http://127.0.0.1:4566")
PG_HOST = os.environ.get("BACKUP_CLOUD_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BACKUP_CLOUD_TEST_PG_PORT", "55432"))
PG_USER = os.environ.get("BACKUP_CLOUD_TEST_PG_USER", "backup")
PG_PASSWORD = os.environ.get("BACKUP_CLOUD_TEST_PG_PASSWORD", "backup-test-pw")
PG_SUPERUSER = os.environ.get("BACKUP_CLOUD_TEST_PG_SUPERUSER", "postgres")
PG_SUPERUSER_PASSWORD = os.environ.get(
    "BACKUP_CLOUD_TEST_PG_SUPERUSER_PASSWORD", "postgres-admin-pw"
)
REGION = "us-east-1"

GIB = 1 << 30
MB = 1_000_000
RANDOM_BYTES = GIB  # the encrypt stage's input: "1 GB of incompressible input"
DB_NAME = "bench_random_1g"
DB_ROWS = 570_000  # × 1900-byte payloads ≈ 1.08 GB of table data
DB_PAYLOAD = 1900
DB_GENERATION = "v1"  # bump when the generator changes to rebuild the database
# The same rows split into tables, for directory mode (pg_dump -Fd --jobs
# parallelises over tables and the agent uploads file by file).
TABLES_DB_NAME = "bench_tables_1g"
TABLES = 16
TABLES_GENERATION = "v1"
# Data that compresses like a business database's, for the e2e context rows.
ORDERS_DB_NAME = "bench_orders_1g"
ORDERS_ROWS = 9_000_000
ORDERS_GENERATION = "v1"
SYNTHETIC_GIB = 8  # the large stream for peak_rss_mib_8g
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
# The agent's upload settings for the runs (the defaults of config.rs unless
# overridden, so `make bench` measures what users get).
PART_SIZE_MIB = int(os.environ.get("BENCH_PART_SIZE_MIB", "0")) or None
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "0")) or None
# BENCH_ONLY=cpu measures only the CPU keys and updates them in an existing
# bench-results.json; BENCH_ONLY=restore (opt-in: about 36 minutes a round)
# measures the restore, verify and small-files keys of restore_verify.py,
# BENCH_ONLY=small-files the small-files keys alone (its own fixtures only).
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
# The CPU keys' goals, for the table.
NEW_GOALS = {
    "server_cpu_vs_pg_dump": "≤ 1.1",
    "agent_cpu_vs_floor": "≤ 1.15",
    "agent_cpu_incompressible_vs_store": "≤ 1.05",
    "restore_vs_by_hand": "≥ 1.3",
    "restore_stream_vs_by_hand": "≥ 1.0",
    "verify_vs_download": "≥ 0.8",
    "small_files_overhead": "≤ 1.5",
    "small_files_pg_dump_alone": "floor",
}


def say(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(args, **kwargs):
    return subprocess.run(args, check=True, **kwargs)


# --- fixtures ---------------------------------------------------------------


def random_file():
    """1 GiB from the kernel's CSPRNG: incompressible by construction."""
    path = STATE / "random-1g.bin"
    if path.exists() and path.stat().st_size == RANDOM_BYTES:
        return path
    say(f"writing {path} ({RANDOM_BYTES} random bytes)")
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as out:
        for _ in range(RANDOM_BYTES // (16 << 20)):
            out.write(os.urandom(16 << 20))
    tmp.rename(path)
    return path


def sized_file(size):
    """A random file of exactly `size` bytes (the endpoint-limit upload)."""
    path = STATE / "endpoint.bin"
    if path.exists() and path.stat().st_size == size:
        return path
    source = random_file()
    with open(path, "wb") as out, open(source, "rb") as src:
        left = size
        while left:
            chunk = src.read(min(left, 16 << 20))
            if not chunk:
                src.seek(0)
                continue
            out.write(chunk)
            left -= len(chunk)
    return path


class Keys:
    """A throwaway cv25519 key pair; the bench only ever encrypts to it."""

    def __init__(self):
        self.home = STATE / "gnupg"
        self.public = STATE / "recipient.asc"
        if not self.public.exists():
            shutil.rmtree(self.home, ignore_errors=True)
            self.home.mkdir(mode=0o700, parents=True)
            run(self.gpg("--passphrase", "", "--quick-gen-key",
                         "bench <bench@backup-cloud.invalid>",
                         "future-default", "default", "never"),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with open(self.public, "wb") as out:
                run(self.gpg("--armor", "--export"), stdout=out)
        listing = run(self.gpg("--with-colons", "--list-keys"),
                      capture_output=True, text=True).stdout
        self.fingerprint = next(
            line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
        )

    def gpg(self, *args):
        return ["gpg", "--homedir", str(self.home), "--batch", "--quiet", *args]

    def encrypt_command(self):
        # The same choices the agent makes: no compression, always trust.
        return self.gpg("--trust-model", "always", "--compress-algo", "none",
                        "--recipient", self.fingerprint, "--encrypt")


def psql(database, sql, user=PG_SUPERUSER, password=PG_SUPERUSER_PASSWORD, **kwargs):
    return run(
        ["psql", f"host={PG_HOST} port={PG_PORT} user={user} dbname={database}",
         "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql],
        env={**os.environ, "PGPASSWORD": password},
        capture_output=True, text=True, **kwargs,
    ).stdout.strip()


def recreated(name, generation, what):
    """Drops and creates database `name` (SQL_ASCII, C collation) unless it
    is already marked with `generation`; says whether it did."""
    marker = psql("postgres", f"SELECT shobj_description(oid, 'pg_database') "
                              f"FROM pg_database WHERE datname = '{name}'")
    if marker == generation:
        return False
    say(f"creating database {name} ({what})")
    psql("postgres", f"DROP DATABASE IF EXISTS {name}")
    psql("postgres", f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' "
                     f"LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    return True


def finish_database(name, generation):
    """Lets the agent's user read it and marks it complete."""
    psql(name, f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {PG_USER}; ANALYZE")
    psql("postgres", f"COMMENT ON DATABASE {name} IS '{generation}'")


def database():
    """A database of random text (SQL_ASCII, so any byte but the few COPY
    escapes is stored as is): its dump is as incompressible as the data,
    and about as large as the database."""
    if not recreated(DB_NAME, DB_GENERATION,
                     f"~{DB_ROWS * DB_PAYLOAD / 1e9:.2f} GB of random text"):
        return
    psql(DB_NAME, "CREATE TABLE payload (id integer PRIMARY KEY, data text NOT NULL);"
                  "ALTER TABLE payload ALTER COLUMN data SET STORAGE EXTERNAL;")
    copy = subprocess.Popen(
        ["psql", f"host={PG_HOST} port={PG_PORT} user={PG_SUPERUSER} dbname={DB_NAME}",
         "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", "COPY payload FROM STDIN"],
        env={**os.environ, "PGPASSWORD": PG_SUPERUSER_PASSWORD},
        stdin=subprocess.PIPE,
    )
    # NUL, tab, LF, CR and backslash would need escaping in COPY text: map
    # them to other bytes (entropy stays ~7.96 bits per byte).
    table = bytes.maketrans(b"\x00\t\n\r\\", b"\x01\x02\x03\x04\x05")
    batch = 4096
    for start in range(1, DB_ROWS + 1, batch):
        rows = range(start, min(start + batch, DB_ROWS + 1))
        noise = os.urandom(DB_PAYLOAD * len(rows)).translate(table)
        lines = [b"%d\t%s\n" % (row, noise[i * DB_PAYLOAD:(i + 1) * DB_PAYLOAD])
                 for i, row in enumerate(rows)]
        copy.stdin.write(b"".join(lines))
    copy.stdin.close()
    if copy.wait() != 0:
        raise SystemExit("bench: loading the database failed")
    finish_database(DB_NAME, DB_GENERATION)


def tables_database():
    """bench_random_1g's rows dealt round-robin into TABLES tables of a
    database of their own, copied server to server with psql."""
    if not recreated(TABLES_DB_NAME, TABLES_GENERATION, f"{TABLES} tables from {DB_NAME}"):
        return
    env = {**os.environ, "PGPASSWORD": PG_SUPERUSER_PASSWORD}
    for table in range(TABLES):
        name = f"part_{table:02d}"
        psql(TABLES_DB_NAME, f"CREATE TABLE {name} (id integer PRIMARY KEY, data text NOT NULL);"
                             f"ALTER TABLE {name} ALTER COLUMN data SET STORAGE EXTERNAL;")
        run(["bash", "-c",
             'set -o pipefail; psql "$1" -X -q -c "$2" | psql "$3" -X -q -v ON_ERROR_STOP=1 -c "$4"',
             "copy",
             f"host={PG_HOST} port={PG_PORT} user={PG_SUPERUSER} dbname={DB_NAME}",
             f"COPY (SELECT * FROM payload WHERE id % {TABLES} = {table}) TO STDOUT",
             f"host={PG_HOST} port={PG_PORT} user={PG_SUPERUSER} dbname={TABLES_DB_NAME}",
             f"COPY {name} FROM STDIN"], env=env)
    finish_database(TABLES_DB_NAME, TABLES_GENERATION)


def orders_database():
    """An orders table that compresses the way business data does (ids,
    timestamps, amounts, a few repeated words, one hex digest in two of
    three rows; zstd -3 shrinks its dump about 3x), generated by the
    server from generate_series, deterministic."""
    if not recreated(ORDERS_DB_NAME, ORDERS_GENERATION,
                     f"{ORDERS_ROWS} order rows, ~1.1 GB dump"):
        return
    psql(ORDERS_DB_NAME, """
        CREATE TABLE orders (
            id bigint PRIMARY KEY, customer_id integer NOT NULL,
            created_at timestamptz NOT NULL, status text NOT NULL,
            amount numeric(12, 2) NOT NULL, currency char(3) NOT NULL,
            shipping_address text NOT NULL, note text);""")
    psql(ORDERS_DB_NAME, f"""
        INSERT INTO orders
        SELECT g, (g * 7919) % 100000,
               timestamptz '2020-01-01 00:00:00+00' + g * interval '13 seconds',
               (ARRAY['new', 'paid', 'shipped', 'delivered', 'returned'])[1 + g % 5],
               ((g * 31) % 100000) / 100.0,
               (ARRAY['EUR', 'USD', 'GBP'])[1 + g % 3],
               (g % 9973) || ' ' || (ARRAY['Main Street', 'High Road', 'Station Lane',
                                          'Church Way'])[1 + g % 4]
                   || ', ' || (ARRAY['Berlin', 'Lyon', 'Leeds', 'Porto', 'Graz'])[1 + g % 5],
               CASE WHEN g % 3 = 0 THEN NULL
                    ELSE md5(g::text) || ' ' || repeat('gift wrap please ', (g % 4)::int) END
        FROM generate_series(1::bigint, {ORDERS_ROWS}) AS g""")
    finish_database(ORDERS_DB_NAME, ORDERS_GENERATION)


def shim(name, body):
    """A `pg_dump` put first on PATH for one kind of agent run (the agent
    asks it for its version first; the real one answers)."""
    real = shutil.which("pg_dump")
    directory = STATE / "shims" / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pg_dump").write_text(
        "#!/bin/sh\n"
        f'case "$*" in *--version*) exec {real} --version ;; esac\n'
        + body
    )
    (directory / "pg_dump").chmod(0o755)
    return directory


def synthetic_shim():
    """Ignores the database and streams the random file SYNTHETIC_GIB
    times: an 8 GiB dump without an 8 GB database, still read by the real
    agent through its real pipeline."""
    return shim("synthetic",
                f"for i in $(seq {SYNTHETIC_GIB}); do cat {random_file()} || exit 1; done\n")


def prepared_dump_shim(prepared):
    """Stands in for `pg_dump -Fd` with a directory dumped beforehand: copies
    its files into the agent's `--file DIR`, so the agent's run is its
    upload side alone, plus a page-cache copy."""
    return shim("prepared-directory",
                'while [ $# -gt 0 ]; do [ "$1" = --file ] && target=$2; shift; done\n'
                f'cp -r {prepared}/. "$target"/\n')


def prepared_archive(database):
    """`pg_dump --format=custom --compress=0` of `database` (the agent's own
    flags), dumped once into .state/bench: the same bytes for the agent
    (through archive_shim) and for the stages run alone."""
    path = STATE / f"{database}.custom"
    marker = psql("postgres", f"SELECT shobj_description(oid, 'pg_database') "
                              f"FROM pg_database WHERE datname = '{database}'")
    stamp = path.with_suffix(".generation")
    if path.exists() and stamp.exists() and stamp.read_text() == marker:
        return path
    say(f"dumping {database} into {path}")
    tmp = path.with_suffix(".tmp")
    run(["pg_dump", f"--host={PG_HOST}", f"--port={PG_PORT}", f"--username={PG_USER}",
         "--no-password", "--format=custom", "--compress=0", "--file", str(tmp), database],
        env={**os.environ, "PGPASSWORD": PG_PASSWORD})
    tmp.rename(path)
    stamp.write_text(marker)
    return path


def archive_shim(archive):
    """Stands in for `pg_dump -Fc` with an archive dumped beforehand, so an
    agent run's process tree is the agent's work (and one `cat`)."""
    return shim(f"archive-{archive.stem}", f"exec cat {archive}\n")


# --- measuring --------------------------------------------------------------


class Measured:
    """Wall time and peak RSS (VmHWM, polled) of one process; the CPU time
    of its whole process tree (it and every descendant it waited for:
    the agent's gpg, pg_dump and threads, not the database's server nor
    LocalStack); the CPU of the PostgreSQL backends serving one database
    meanwhile (backend_cpu_seconds); and the CPU time the whole machine
    was busy."""

    def __init__(self, seconds, peak_rss_kib, stdout, busy_cpu_seconds, tree_cpu_seconds,
                 server_cpu_seconds):
        self.seconds = seconds
        self.peak_rss_kib = peak_rss_kib
        self.stdout = stdout
        self.busy_cpu_seconds = busy_cpu_seconds
        self.tree_cpu_seconds = tree_cpu_seconds
        self.server_cpu_seconds = server_cpu_seconds


def children_cpu_seconds():
    """User and system CPU of every child this script has waited for,
    with the descendants each of them waited for (getrusage)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def backend_cpu_seconds(database, seen):
    """Adds to `seen` (pid → CPU seconds) every live PostgreSQL backend
    connected to `database`, by its process title (`postgres: USER
    DATABASE HOST(PORT) ...`), from /proc. Polled through a run, it counts
    the CPU the server spends for that database's clients alone, whatever
    else the machine runs (a backend's last <50 ms before it exits escape
    the poll)."""
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                title = cmdline.read().split(b"\0")[0].decode(errors="replace")
            if not title.startswith("postgres: ") or title.split()[2:3] != [database]:
                continue
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seen[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks


def busy_cpu_seconds():
    """CPU seconds spent on anything but idling and waiting since boot."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measure(args, stdin=None, env=None, shell=False, server_database=None):
    busy_before = busy_cpu_seconds()
    tree_before = children_cpu_seconds()
    backends = {}
    started = time.monotonic()
    process = subprocess.Popen(
        args, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, shell=shell, executable="/bin/bash" if shell else None,
    )
    peak = 0
    stop = threading.Event()

    def poll():
        nonlocal peak
        path = f"/proc/{process.pid}/status"
        while not stop.is_set():
            try:
                with open(path) as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            peak = max(peak, int(line.split()[1]))
            except OSError:
                return
            if server_database:
                backend_cpu_seconds(server_database, backends)
            stop.wait(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stdout, stderr = process.communicate()
    seconds = time.monotonic() - started
    stop.set()
    poller.join()
    if process.returncode != 0:
        sys.stderr.write(stderr.decode(errors="replace")[-4000:])
        raise SystemExit(f"bench: {args if not shell else 'pipeline'} failed ({process.returncode})")
    busy = busy_cpu_seconds() - busy_before
    return Measured(seconds, peak, stdout.decode(errors="replace"), busy,
                    children_cpu_seconds() - tree_before, sum(backends.values()))


class LocalStack:
    def __init__(self):
        session = boto3.session.Session(
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
            region_name=REGION,
        )
        self.s3 = session.client("s3", endpoint_url=ENDPOINT)
        self.ssm = session.client("ssm", endpoint_url=ENDPOINT)
        self.bucket = f"bench-{uuid.uuid4().hex[:10]}"
        self.prefix = "bench"
        self.password_parameter = f"/backup-cloud-bench/{self.bucket}/db-password"
        self.s3.create_bucket(Bucket=self.bucket)
        self.ssm.put_parameter(Name=self.password_parameter, Value=PG_PASSWORD,
                               Type="SecureString", Overwrite=True)

    def put_public_key(self, path):
        self.s3.put_object(Bucket=self.bucket,
                           Key=f"{self.prefix}/config/public-keys/bench.asc",
                           Body=path.read_bytes())

    def job(self, name, part_size_mib, concurrency, database=DB_NAME, dump=None):
        """Writes a job spec and its `booting` status, as the controller
        does before the instance starts; returns the agent's arguments.
        `dump`: the spec's dump settings (the defaults when None)."""
        job_id = f"{name}-{uuid.uuid4().hex[:8]}"
        status_parameter = f"/backup-cloud-bench/{self.bucket}/status/{job_id}"
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        spec = {
            "schema_version": 1,
            "job_name": name,
            "job_id": job_id,
            "engine": "postgres",
            "database": {"host": PG_HOST, "port": PG_PORT, "user": PG_USER, "name": database},
            "password_parameter": self.password_parameter,
            "bucket": self.bucket,
            "prefix": self.prefix,
            "backup_prefix": f"{self.prefix}/backup/{name}/{job_id}/",
            "status_parameter": status_parameter,
            "upload": {"part_size_bytes": part_size_mib << 20, "concurrency": concurrency},
            "ami_id": "ami-bench",
            "instance_type": "bench",
            "heartbeat_interval_secs": 30,
            **({"dump": dump} if dump is not None else {}),
        }
        status = {"schema_version": 1, "job_id": job_id, "phase": "booting",
                  "started_at": now, "updated_at": now}
        self.ssm.put_parameter(Name=status_parameter, Value=json.dumps(status),
                               Type="String", Overwrite=True)
        spec_key = f"{self.prefix}/jobs/{name}/{job_id}/spec.json"
        self.s3.put_object(Bucket=self.bucket, Key=spec_key, Body=json.dumps(spec).encode())
        return ["agent", "--spec-bucket", self.bucket, "--spec-key", spec_key], spec

    def manifest(self, spec):
        key = spec["backup_prefix"] + "manifest.json"
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def empty(self):
        """Drops uploaded objects so LocalStack does not hoard gigabytes."""
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])
                    if "/config/" not in o["Key"]]
            if keys:
                self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})

    def remove(self):
        self.empty()
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for o in page.get("Contents", []):
                self.s3.delete_object(Bucket=self.bucket, Key=o["Key"])
        self.s3.delete_bucket(Bucket=self.bucket)
        self.ssm.delete_parameter(Name=self.password_parameter)


def upload_defaults():
    """The defaults config.rs gives `[upload]` (what `make bench` measures
    unless BENCH_PART_SIZE_MIB / BENCH_CONCURRENCY override them)."""
    text = (REPO / "src" / "config.rs").read_text()

    def constant(name):
        for line in text.splitlines():
            if line.startswith(f"pub const {name}"):
                return int(line.split("=")[1].strip().rstrip(";").replace("_", ""))
        raise SystemExit(f"bench: {name} not found in src/config.rs")

    return (PART_SIZE_MIB or constant("DEFAULT_PART_SIZE_MIB"),
            CONCURRENCY or constant("DEFAULT_UPLOAD_CONCURRENCY"))


def mb_s(size, seconds):
    return size / MB / seconds


def load():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def end_to_end(localstack, env, keys, aws, database, part_size_mib, concurrency,
               uncompressed_too):
    """ROUNDS interleaved rounds of: the agent as users get it, the shell
    baseline as the issue defines it (`pg_dump -Fc`, pg_dump's default
    compression), the endpoint's own ingest of a file the size of the
    agent's ciphertext and, with `uncompressed_too`, the agent and the
    shell both without compression (the pipeline alone). Rates are dump
    bytes per second, except the endpoint's (bytes it stored)."""
    agent_s, shell_s, endpoint_s, rss = [], [], [], []
    agent_cpu, shell_cpu, endpoint_cpu = [], [], []
    plain_agent_s, plain_shell_s = [], []

    def shell(round_, compress):
        return (
            "set -o pipefail; "
            f"pg_dump --host={PG_HOST} --port={PG_PORT} --username={PG_USER} "
            f"--no-password --format=custom {compress} {database} "
            f"| {' '.join(keys.encrypt_command())} "
            f"| {aws} s3 cp --only-show-errors - "
            f"s3://{localstack.bucket}/baseline/{round_}.gpg"
        )

    shell_env = {**env, "PGPASSWORD": PG_PASSWORD}
    for round_ in range(ROUNDS):
        args, spec = localstack.job("bench-e2e", part_size_mib, concurrency, database=database)
        out = measure([str(BINARY), *args], env=env)
        manifest = localstack.manifest(spec)
        dump_bytes = manifest["objects"][0]["plaintext_bytes"]
        cipher_bytes = manifest["objects"][0]["size"]
        agent_s.append(out.seconds)
        agent_cpu.append(out.busy_cpu_seconds)
        rss.append(out.peak_rss_kib)
        localstack.empty()

        out = measure(shell(round_, ""), shell=True, env=shell_env)
        shell_s.append(out.seconds)
        shell_cpu.append(out.busy_cpu_seconds)
        localstack.empty()

        out = measure([aws, "s3", "cp", "--only-show-errors", str(sized_file(cipher_bytes)),
                       f"s3://{localstack.bucket}/endpoint/{round_}.bin"], env=env)
        endpoint_s.append(out.seconds)
        endpoint_cpu.append(out.busy_cpu_seconds)
        localstack.empty()
        line = (f"e2e {database} round {round_ + 1}: "
                f"agent {mb_s(dump_bytes, agent_s[-1]):.0f} MB/s, "
                f"shell {mb_s(dump_bytes, shell_s[-1]):.0f} MB/s, "
                f"aws s3 cp file {mb_s(cipher_bytes, endpoint_s[-1]):.0f} MB/s, "
                f"agent peak RSS {rss[-1] / 1024:.0f} MiB")

        if uncompressed_too:
            args, spec = localstack.job("bench-e2e-plain", part_size_mib, concurrency,
                                        database=database, dump={"compression_level": 0})
            plain_agent_s.append(measure([str(BINARY), *args], env=env).seconds)
            localstack.empty()
            plain_shell_s.append(measure(shell(round_, "--compress=0"), shell=True,
                                         env=shell_env).seconds)
            localstack.empty()
            line += (f"; uncompressed: agent {mb_s(dump_bytes, plain_agent_s[-1]):.0f} MB/s, "
                     f"shell {mb_s(dump_bytes, plain_shell_s[-1]):.0f} MB/s")
        say(line)
    return {
        "agent_mb_s": mb_s(dump_bytes, statistics.median(agent_s)),
        "shell_mb_s": mb_s(dump_bytes, statistics.median(shell_s)),
        "endpoint_mb_s": mb_s(cipher_bytes, statistics.median(endpoint_s)),
        "dump_bytes": dump_bytes,
        "compression_ratio": dump_bytes / cipher_bytes,
        "peak_rss_mib": max(rss) / 1024,
        # CPU seconds the whole machine spent per run (database and
        # LocalStack included), and the agent's wall time over the least
        # its CPU allows on this many cores: near 1, the cores are the limit
        "machine_cpu_s": {"agent": statistics.median(agent_cpu),
                          "shell": statistics.median(shell_cpu),
                          "endpoint": statistics.median(endpoint_cpu)},
        "agent_wall_vs_cpu_floor": statistics.median(agent_s)
                                   / (statistics.median(agent_cpu) / os.cpu_count()),
        "uncompressed_ratio": (statistics.median(plain_shell_s) / statistics.median(plain_agent_s)
                               if uncompressed_too else None),
    }


def overlap_ratio(localstack, env, part_size_mib, concurrency):
    """Wall time of a directory-mode backup over the longer of its two
    halves measured alone, each the median of ROUNDS interleaved runs."""
    jobs = os.cpu_count() or 2
    dump_args = ["pg_dump", f"--host={PG_HOST}", f"--port={PG_PORT}", f"--username={PG_USER}",
                 "--no-password", "--format=directory", f"--jobs={jobs}", "--compress=0",
                 "--no-sync"]
    dump_env = {**env, "PGPASSWORD": PG_PASSWORD}
    spec_dump = {"mode": "postgres-directory", "jobs": jobs}
    work = Path(tempfile.mkdtemp(prefix="bench-directory-", dir=STATE))
    try:
        prepared = work / "prepared"
        run([*dump_args, "--file", str(prepared), TABLES_DB_NAME], env=dump_env)
        upload_only = prepared_dump_shim(prepared)
        backup_s, dump_s, upload_s, dump_cpu, upload_cpu = [], [], [], [], []
        for round_ in range(ROUNDS):
            args, _ = localstack.job("bench-dir", part_size_mib, concurrency,
                                     database=TABLES_DB_NAME, dump=spec_dump)
            backup_s.append(measure([str(BINARY), *args], env=env).seconds)
            localstack.empty()

            target = work / f"alone-{round_}"
            dumped = measure([*dump_args, "--file", str(target), TABLES_DB_NAME], env=dump_env)
            dump_s.append(dumped.seconds)
            dump_cpu.append(dumped.busy_cpu_seconds)
            shutil.rmtree(target)

            args, _ = localstack.job("bench-dir-upload", part_size_mib, concurrency,
                                     database=TABLES_DB_NAME, dump=spec_dump)
            uploaded = measure([str(BINARY), *args],
                               env={**env, "PATH": f"{upload_only}:{env['PATH']}"})
            upload_s.append(uploaded.seconds)
            upload_cpu.append(uploaded.busy_cpu_seconds)
            localstack.empty()
            say(f"directory round {round_ + 1}: backup {backup_s[-1]:.1f} s, "
                f"dump alone {dump_s[-1]:.1f} s, upload alone {upload_s[-1]:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    backup, dump, upload = (statistics.median(x) for x in (backup_s, dump_s, upload_s))
    # what both halves cost the machine, spread over every core: no
    # overlap can finish sooner on this machine
    cpu_floor = (statistics.median(dump_cpu) + statistics.median(upload_cpu)) / os.cpu_count()
    return {"ratio": backup / max(dump, upload), "jobs": jobs,
            "backup_s": backup, "dump_s": dump, "upload_s": upload, "cpu_floor_s": cpu_floor}


def cpu_costs(localstack, env, keys, part_size_mib, concurrency):
    """CPU-seconds, which neither the number of cores nor a co-located
    endpoint skews, ROUNDS interleaved rounds of:

    - the PostgreSQL server's CPU during a whole backup of the orders
      database (the agent with the real pg_dump) and during `pg_dump` alone;
    - the agent's process tree on the orders archive (pg_dump's bytes
      replayed by archive_shim) and the irreducible stages alone on the
      same bytes: `zstd -3`, `gpg --encrypt` of its output, `sha256sum` of
      the ciphertext;
    - the agent's process tree on the random database's archive with the
      default settings and with compression off."""
    orders = prepared_archive(ORDERS_DB_NAME)
    noise = prepared_archive(DB_NAME)
    dump_env = {**env, "PGPASSWORD": PG_PASSWORD}
    work = Path(tempfile.mkdtemp(prefix="bench-cpu-", dir=STATE))
    taken = {k: [] for k in ("backup_server", "dump_server", "dump_client", "agent", "zstd",
                             "gpg", "sha256", "noise_default", "noise_store")}
    sizes = {}

    def agent(name, archive, database, dump=None):
        args, spec = localstack.job(name, part_size_mib, concurrency, database=database,
                                    dump=dump)
        shimmed = {**env, "PATH": f"{archive_shim(archive)}:{env['PATH']}"}
        out = measure([str(BINARY), *args], env=shimmed)
        manifest = localstack.manifest(spec)
        localstack.empty()
        return out, manifest

    try:
        for round_ in range(ROUNDS):
            args, spec = localstack.job("bench-server-cpu", part_size_mib, concurrency,
                                        database=ORDERS_DB_NAME)
            taken["backup_server"].append(measure(
                [str(BINARY), *args], env=env, server_database=ORDERS_DB_NAME
            ).server_cpu_seconds)
            facts = localstack.manifest(spec)["facts"]
            localstack.empty()
            alone = measure(
                ["pg_dump", f"--host={PG_HOST}", f"--port={PG_PORT}", f"--username={PG_USER}",
                 "--no-password", "--format=custom", "--compress=0", "--no-sync", "--file=/dev/null",
                 ORDERS_DB_NAME], env=dump_env, server_database=ORDERS_DB_NAME)
            taken["dump_server"].append(alone.server_cpu_seconds)
            taken["dump_client"].append(alone.tree_cpu_seconds)

            out, manifest = agent("bench-agent-cpu", orders, ORDERS_DB_NAME)
            taken["agent"].append(out.tree_cpu_seconds)
            sizes["orders_plaintext"] = manifest["objects"][0]["plaintext_bytes"]
            sizes["orders_ciphertext"] = manifest["objects"][0]["size"]
            compressed, cipher = work / "orders.zst", work / "orders.zst.gpg"
            taken["zstd"].append(measure(["zstd", "-3", "-q", "-f", "-o", str(compressed),
                                          str(orders)]).tree_cpu_seconds)
            taken["gpg"].append(measure(keys.encrypt_command()
                                        + ["--yes", "--output", str(cipher), str(compressed)]
                                        ).tree_cpu_seconds)
            taken["sha256"].append(measure(["sha256sum", str(cipher)]).tree_cpu_seconds)
            sizes["orders_zstd_cli"] = compressed.stat().st_size
            compressed.unlink()
            cipher.unlink()

            out, _ = agent("bench-noise-default", noise, DB_NAME)
            taken["noise_default"].append(out.tree_cpu_seconds)
            out, _ = agent("bench-noise-store", noise, DB_NAME, dump={"compression_level": 0})
            taken["noise_store"].append(out.tree_cpu_seconds)
            say(f"CPU round {round_ + 1}: server {taken['backup_server'][-1]:.1f} s in a backup "
                f"vs {taken['dump_server'][-1]:.1f} s for pg_dump alone; agent "
                f"{taken['agent'][-1]:.1f} s vs stages alone "
                f"{taken['zstd'][-1] + taken['gpg'][-1] + taken['sha256'][-1]:.1f} s; random: "
                f"{taken['noise_default'][-1]:.1f} s default vs "
                f"{taken['noise_store'][-1]:.1f} s stored")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {k: statistics.median(v) for k, v in taken.items()}
    floor = median["zstd"] + median["gpg"] + median["sha256"]
    gb = sizes["orders_plaintext"] / 1e9
    return {
        "server_cpu_vs_pg_dump": median["backup_server"] / median["dump_server"],
        "agent_cpu_vs_floor": median["agent"] / floor,
        "agent_cpu_incompressible_vs_store": median["noise_default"] / median["noise_store"],
        "cpu_s": {k: round(v, 2) for k, v in median.items()},
        "agent_cpu_s_per_gb": median["agent"] / gb,
        "pg_dump_cpu_s_per_gb": median["dump_client"] / gb,
        "server_cpu_s_per_gb": median["dump_server"] / gb,
        "floor_cpu_s_per_gb": floor / gb,
        "orders_plaintext_bytes": sizes["orders_plaintext"],
        "orders_ciphertext_bytes": sizes["orders_ciphertext"],
        "orders_zstd_cli_bytes": sizes["orders_zstd_cli"],
        "facts_method": facts["method"],
    }


def newer(localstack, env, keys, aws, part_size_mib, concurrency, results, notes, loads):
    """The CPU keys (cpu_costs), unless BENCH_ONLY leaves them out, and the
    restore, verify and small-files keys when BENCH_ONLY names `restore`
    (the small-files keys alone: `small-files`)."""
    parts = {"restore", "small-files"} if "restore" in ONLY else ONLY & {"small-files"}
    if parts:
        import restore_verify  # opt-in: the 5,000-table backups take long

        extra, extra_notes = restore_verify.measure(SimpleNamespace(
            binary=BINARY, localstack=localstack, env=env, keys=keys, aws=aws,
            measure=measure, rounds=ROUNDS, state=STATE, part_size_mib=part_size_mib,
            concurrency=concurrency, psql=psql,
            pg={"host": PG_HOST, "port": PG_PORT, "user": PG_USER, "password": PG_PASSWORD,
                "superuser": PG_SUPERUSER, "superuser_password": PG_SUPERUSER_PASSWORD}),
            parts)
        results.update(extra)
        notes.update(extra_notes)
        loads.append(load())
    if not ONLY or "cpu" in ONLY:
        cpu = cpu_costs(localstack, env, keys, part_size_mib, concurrency)
        for key in ("server_cpu_vs_pg_dump", "agent_cpu_vs_floor",
                    "agent_cpu_incompressible_vs_store", "agent_cpu_s_per_gb",
                    "pg_dump_cpu_s_per_gb", "server_cpu_s_per_gb"):
            results[key] = cpu[key]
        notes["server_cpu_vs_pg_dump"] = (
            f"{ORDERS_DB_NAME}: PostgreSQL server CPU {cpu['cpu_s']['backup_server']} s during a "
            f"whole backup (facts: {cpu['facts_method']}) vs {cpu['cpu_s']['dump_server']} s "
            f"serving pg_dump -Fc -Z0 alone")
        notes["agent_cpu_vs_floor"] = (
            f"agent process tree {cpu['agent_cpu_s_per_gb']:.2f} CPU s/GB vs zstd -3 + gpg "
            f"--encrypt + sha256sum alone {cpu['floor_cpu_s_per_gb']:.2f} CPU s/GB "
            f"({cpu['cpu_s']})")
        notes["agent_cpu_incompressible_vs_store"] = (
            f"{DB_NAME}: agent CPU {cpu['cpu_s']['noise_default']} s default vs "
            f"{cpu['cpu_s']['noise_store']} s with compression_level = 0; {ORDERS_DB_NAME} "
            f"ciphertext {cpu['orders_ciphertext_bytes']} bytes "
            f"(zstd -3 CLI alone: {cpu['orders_zstd_cli_bytes']})")
        loads.append(load())


def rounded(results):
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in results.items()}


def new_rows(results, notes):
    """Table rows of the keys `newer` measured."""
    return [(key, results[key], NEW_GOALS.get(key, ""), notes.get(key, ""))
            for key in results if key in NEW_GOALS or key not in ROW_KEYS_OLD]


# keys the full run's own table already shows
ROW_KEYS_OLD = {"encrypt_vs_gpg", "e2e_vs_shell", "e2e_vs_endpoint_limit", "peak_rss_mib_1g",
                "peak_rss_mib_8g", "overlap_ratio", "baseline_mb_s", "agent_mb_s"}


def print_rows(rows):
    print(f"\n{'key':<36}{'value':>10}  {'goal':<8}note")
    for key, value, goal, note in rows:
        shown = "null" if value is None else (f"{value:.2f}" if isinstance(value, (int, float))
                                              else str(value))
        print(f"{key:<36}{shown:>10}  {goal:<8}{note}")


# --- the benchmark -------------------------------------------------------------


def main():
    STATE.mkdir(parents=True, exist_ok=True)
    if not BINARY.exists():
        raise SystemExit(f"bench: {BINARY} missing; `make bench` builds it")
    part_size_mib, concurrency = upload_defaults()
    keys = Keys()
    random = None
    if ONLY != {"small-files"}:  # which brings its own
        random = random_file()
        database()
        tables_database()
        orders_database()
    aws = shutil.which("aws") or str(REPO / ".state" / "venv" / "bin" / "aws")
    localstack = LocalStack()
    localstack.put_public_key(keys.public)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": ENDPOINT,
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "RUST_LOG": "warn",
    }
    loads = [load()]
    results = {}
    notes = {}
    if ONLY:
        try:
            newer(localstack, env, keys, aws, part_size_mib, concurrency, results, notes, loads)
        finally:
            localstack.remove()
        path = REPO / "bench-results.json"
        document = json.loads(path.read_text()) if path.exists() else {"notes": {}}
        document.update(rounded(results))
        document["notes"].update(notes)
        path.write_text(json.dumps(document, indent=2) + "\n")
        print_rows(new_rows(results, notes))
        print(f"\nupdated {', '.join(sorted(results))} in bench-results.json")
        return
    try:
        # 1. The encrypt-and-hash stage against gpg alone, same input.
        # Context: gpg between two pipes (`cat | gpg | cat`), the shape of
        # any stage that hands gpg a stream and takes the ciphertext back.
        gpg_s, stage_s, piped_s = [], [], []
        piped = (f"set -o pipefail; cat {random} | {' '.join(keys.encrypt_command())} "
                 "| cat > /dev/null")
        for round_ in range(ROUNDS):
            with open(random, "rb") as stdin:
                gpg_s.append(measure(keys.encrypt_command() + ["--output", "/dev/null"],
                                     stdin=stdin).seconds)
            piped_s.append(measure(piped, shell=True).seconds)
            with open(random, "rb") as stdin:
                out = measure([str(BINARY), "bench-encrypt", "--public-key", str(keys.public)],
                              stdin=stdin, env=env)
            report = json.loads(out.stdout)
            assert report["plaintext_bytes"] == RANDOM_BYTES, report
            stage_s.append(report["seconds"])
            say(f"encrypt round {round_ + 1}: gpg {mb_s(RANDOM_BYTES, gpg_s[-1]):.0f} MB/s, "
                f"cat | gpg | cat {mb_s(RANDOM_BYTES, piped_s[-1]):.0f} MB/s, "
                f"agent stage {mb_s(RANDOM_BYTES, stage_s[-1]):.0f} MB/s")
        gpg_mb_s = mb_s(RANDOM_BYTES, statistics.median(gpg_s))
        stage_mb_s = mb_s(RANDOM_BYTES, statistics.median(stage_s))
        results["encrypt_vs_gpg"] = stage_mb_s / gpg_mb_s
        piped_ratio = statistics.median(gpg_s) / statistics.median(piped_s)
        loads.append(load())

        # 2. End to end from PostgreSQL into LocalStack, on the incompressible
        # database (the pipeline's worst case) and on an orders table that
        # compresses like real data.
        e2e = end_to_end(localstack, env, keys, aws, DB_NAME, part_size_mib, concurrency,
                         uncompressed_too=True)
        agent_mb_s, shell_mb_s = e2e["agent_mb_s"], e2e["shell_mb_s"]
        endpoint_mb_s, dump_bytes = e2e["endpoint_mb_s"], e2e["dump_bytes"]
        plain_ratio = e2e["uncompressed_ratio"]
        results["e2e_vs_shell"] = agent_mb_s / shell_mb_s
        results["e2e_vs_endpoint_limit"] = agent_mb_s / endpoint_mb_s
        results["peak_rss_mib_1g"] = e2e["peak_rss_mib"]
        loads.append(load())
        orders = end_to_end(localstack, env, keys, aws, ORDERS_DB_NAME, part_size_mib,
                            concurrency, uncompressed_too=False)
        loads.append(load())

        # 3. The 8 GiB stream: the same agent, a synthetic dump.
        args, spec = localstack.job("bench-8g", part_size_mib, concurrency)
        out = measure([str(BINARY), *args],
                      env={**env, "PATH": f"{synthetic_shim()}:{env['PATH']}"})
        streamed = localstack.manifest(spec)["objects"][0]["plaintext_bytes"]
        assert streamed == SYNTHETIC_GIB * RANDOM_BYTES, streamed
        localstack.empty()
        results["peak_rss_mib_8g"] = out.peak_rss_kib / 1024
        say(f"8 GiB stream: {mb_s(streamed, out.seconds):.0f} MB/s, "
            f"peak RSS {results['peak_rss_mib_8g']:.0f} MiB")
        notes["peak_rss_mib_8g"] = ("synthetic 8 GiB dump (pg_dump shim streaming random "
                                    "data) through the real agent")
        loads.append(load())

        # 4. Directory mode: a `format = "directory"` backup against its dump
        # alone (the same pg_dump -Fd command into local disk) and its
        # upload alone (the agent fed the files of a dump made beforehand).
        overlap = overlap_ratio(localstack, env, part_size_mib, concurrency)
        results["overlap_ratio"] = overlap["ratio"]
        notes["overlap_ratio"] = (
            f"{TABLES} tables, pg_dump -Fd --jobs {overlap['jobs']}: backup "
            f"{overlap['backup_s']:.1f} s vs dump alone {overlap['dump_s']:.1f} s, "
            f"upload alone {overlap['upload_s']:.1f} s (medians); the CPU both halves use "
            f"alone, spread over every core, allows no less than {overlap['cpu_floor_s']:.1f} s")
        loads.append(load())

        # 5. CPU-seconds, restores, verifies and many small tables.
        newer(localstack, env, keys, aws, part_size_mib, concurrency, results, notes, loads)
    finally:
        localstack.remove()

    results["baseline_mb_s"] = shell_mb_s
    results["agent_mb_s"] = agent_mb_s
    document = {
        **rounded(results),
        "notes": notes,
        "context": {
            "machine": f"{os.cpu_count()} cores, {os.uname().machine}, {os.uname().release}",
            "load_average_during_run": [round(x, 2) for x in loads if x is not None],
            "rounds": ROUNDS,
            "part_size_mib": part_size_mib,
            "concurrency": concurrency,
            "dump_bytes": dump_bytes,
            "gpg_mb_s": round(gpg_mb_s, 1),
            "encrypt_stage_mb_s": round(stage_mb_s, 1),
            "endpoint_mb_s": round(endpoint_mb_s, 1),
            "pg_dump": ("agent: --format=custom --compress=0, then zstd level 3 (its default); "
                        "baseline: --format=custom (pg_dump's default zlib)"),
            "uncompressed_agent_vs_shell": round(plain_ratio, 3),
            "machine_cpu_s": {k: round(v, 1) for k, v in e2e["machine_cpu_s"].items()},
            "agent_wall_vs_cpu_floor": round(e2e["agent_wall_vs_cpu_floor"], 3),
            "piped_gpg_vs_gpg": round(piped_ratio, 3),
            "orders_database": {
                "dump_bytes": orders["dump_bytes"],
                "compression_ratio": round(orders["compression_ratio"], 2),
                "agent_mb_s": round(orders["agent_mb_s"], 1),
                "shell_mb_s": round(orders["shell_mb_s"], 1),
                "endpoint_mb_s": round(orders["endpoint_mb_s"], 1),
                "e2e_vs_shell": round(orders["agent_mb_s"] / orders["shell_mb_s"], 3),
                "e2e_vs_endpoint_limit": round(orders["agent_mb_s"] / orders["endpoint_mb_s"], 3),
                "peak_rss_mib": round(orders["peak_rss_mib"], 1),
            },
        },
    }
    (REPO / "bench-results.json").write_text(json.dumps(document, indent=2) + "\n")

    rows = [
        ("encrypt_vs_gpg", results["encrypt_vs_gpg"], "≥ 0.9",
         f"stage {stage_mb_s:.0f} MB/s vs gpg {gpg_mb_s:.0f} MB/s, 1 GiB random"),
        ("e2e_vs_shell", results["e2e_vs_shell"], "≥ 1.5",
         f"agent {agent_mb_s:.0f} vs shell {shell_mb_s:.0f} MB/s, {dump_bytes / 1e9:.2f} GB dump"),
        ("e2e_vs_endpoint_limit", results["e2e_vs_endpoint_limit"], "≥ 0.8",
         f"aws s3 cp FILE {endpoint_mb_s:.0f} MB/s"),
        ("peak_rss_mib_1g", results["peak_rss_mib_1g"], "≤ 256", "max over rounds"),
        ("peak_rss_mib_8g", results["peak_rss_mib_8g"], "≤ 256", notes["peak_rss_mib_8g"]),
        ("overlap_ratio", results["overlap_ratio"], "≤ 1.15", notes["overlap_ratio"]),
        ("baseline_mb_s", shell_mb_s, "", "pg_dump -Fc | gpg | aws s3 cp -"),
        ("agent_mb_s", agent_mb_s, "", f"parts {part_size_mib} MiB × {concurrency} in flight"),
        ("(piped gpg)", piped_ratio, "", "context: cat | gpg | cat vs gpg alone"),
        ("(uncompressed)", plain_ratio, "", "context: agent vs shell, both without compression"),
        ("(CPU-bound)", e2e["agent_wall_vs_cpu_floor"], "",
         "context: agent wall time over the machine CPU it used / cores "
         f"(CPU s: agent {e2e['machine_cpu_s']['agent']:.1f}, "
         f"shell {e2e['machine_cpu_s']['shell']:.1f}, "
         f"aws s3 cp {e2e['machine_cpu_s']['endpoint']:.1f})"),
        ("(orders vs shell)", orders["agent_mb_s"] / orders["shell_mb_s"], "",
         f"context, compressible orders table: agent {orders['agent_mb_s']:.0f} vs shell "
         f"{orders['shell_mb_s']:.0f} MB/s, {orders['dump_bytes'] / 1e9:.2f} GB dump, "
         f"zstd {orders['compression_ratio']:.1f}x"),
        ("(orders vs endpoint)", orders["agent_mb_s"] / orders["endpoint_mb_s"], "",
         f"context: aws s3 cp of a file its ciphertext's size {orders['endpoint_mb_s']:.0f} MB/s"),
    ]
    print_rows(rows + new_rows(results, notes))
    print(f"\nload average (1 min) during the run: {document['context']['load_average_during_run']}"
          f" on {os.cpu_count()} cores; written to bench-results.json")


if __name__ == "__main__":
    main()
