"""The read side of `make bench`: `backup-cloud restore` and `verify`
against what an operator would do by hand with stock tools, and what a
directory backup of many small tables costs against the same bytes in a
few tables.

run.py calls `measure(ctx)`; everything it needs comes from `ctx` (the
binary, run.py's LocalStack, the agent's environment, the throwaway key
pair, whose secret half is in `ctx.keys.home`, run.py's `measure`, the
rounds, the state directory, the upload settings, a superuser `psql`
and the PostgreSQL settings). Nothing is imported from run.py, which
imports this module.

Every figure is a ratio of medians of `ctx.rounds` rounds in which both
sides run one after the other, so machine noise hits both alike. Every
restore, backup-cloud's and the one by hand, is checked: each table's row
count in the restored database must equal the source's.

Fixtures of its own, made once and kept (marked with a generation like
run.py's, so a changed generator rebuilds them):
  PostgreSQL  bench_files_5000   5,000 tables of 100 rows (~50 MB)
              bench_files_16     the same rows in 16 tables
  MariaDB     bench_small_5000   5,000 tables of 20 rows
The 1 GB database (bench_tables_1g) is run.py's.
"""

import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

# run.py's 16-table, ~1.08 GB database (made by run.py before this runs);
# `ctx.tables_database` may name a smaller stand-in while developing.
TABLES_DB_NAME = "bench_tables_1g"
DIRECTORY_JOBS = 2  # pg_dump -Fd --jobs in the spec; pg_restore -j by hand

# small_files_overhead: the same rows in many tables and in few
FILES_ROWS = 500_000  # × ~100 bytes of text ≈ 50 MB of dump
FILES_MANY_DB = "bench_files_5000"
FILES_MANY = 5000
FILES_FEW_DB = "bench_files_16"
FILES_FEW = 16
FILES_GENERATION = "v1"
FILES_BATCH = 100  # tables created per transaction (the lock table is finite)

# verify on many objects: a mydumper backup of 5,000 small MariaDB tables
MYSQL_DB_NAME = "bench_small_5000"
MYSQL_TABLES = 5000
MYSQL_ROWS = 20
MYSQL_GENERATION = "v1"
MYSQL_BATCH = 250  # tables per `mariadb` call


def say(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(args, **kwargs):
    return subprocess.run(args, check=True, **kwargs)


def median(values):
    return statistics.median(values)


# --- PostgreSQL -----------------------------------------------------------------


def pg_conninfo(ctx, database, superuser=True):
    pg = ctx.pg
    user = pg["superuser"] if superuser else pg["user"]
    return f"host={pg['host']} port={pg['port']} user={user} dbname={database}"


def pg_env(ctx, superuser=True):
    password = ctx.pg["superuser_password"] if superuser else ctx.pg["password"]
    return {**ctx.env, "PGPASSWORD": password}


def pg_url(ctx, database):
    """A superuser URL for `backup-cloud restore --to` (it moves the
    password into a private passfile, off the command line)."""
    pg = ctx.pg
    return (f"postgres://{pg['superuser']}:{pg['superuser_password']}"
            f"@{pg['host']}:{pg['port']}/{database}")


def psql_script(ctx, database, script):
    """Runs a SQL script through psql's stdin as the superuser, stopping
    at the first error."""
    run(["psql", pg_conninfo(ctx, database), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", "-"],
        input=script, text=True, env=pg_env(ctx), stdout=subprocess.DEVNULL)


def pg_recreated(ctx, name, generation, what):
    """Drops and creates database `name` unless it is marked with
    `generation` (run.py's pattern); says whether it did."""
    marker = ctx.psql("postgres", f"SELECT shobj_description(oid, 'pg_database') "
                                  f"FROM pg_database WHERE datname = '{name}'")
    if marker == generation:
        return False
    say(f"creating database {name} ({what})")
    ctx.psql("postgres", f"DROP DATABASE IF EXISTS {name}")
    ctx.psql("postgres", f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' "
                         f"LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    return True


def pg_finish(ctx, name, generation):
    """Lets the agent's user read it, analyzes it (one transaction per
    table: 5,000 tables' locks would not fit in one) and marks it done."""
    ctx.psql(name, f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {ctx.pg['user']}")
    ctx.psql(name, "ANALYZE")
    ctx.psql("postgres", f"COMMENT ON DATABASE {name} IS '{generation}'")


def files_payload(g):
    # ~100 bytes of hex per row, deterministic, compressing like hex does
    return f"md5({g}::text) || md5(({g} * 7)::text) || md5(({g} * 13)::text)"


def files_databases(ctx):
    """FILES_ROWS rows in FILES_MANY tables, and the same rows (same ids,
    same text) dealt into FILES_FEW tables."""
    per_table = FILES_ROWS // FILES_MANY
    if pg_recreated(ctx, FILES_MANY_DB, FILES_GENERATION,
                    f"{FILES_MANY} tables of {per_table} rows"):
        for start in range(0, FILES_MANY, FILES_BATCH):
            statements = ["BEGIN;"]
            for table in range(start, min(start + FILES_BATCH, FILES_MANY)):
                name = f"t_{table:04d}"
                low, high = table * per_table + 1, (table + 1) * per_table
                statements.append(
                    f"CREATE TABLE {name} (id integer PRIMARY KEY, data text NOT NULL);"
                    f"INSERT INTO {name} SELECT g, {files_payload('g')} "
                    f"FROM generate_series({low}, {high}) AS g;")
            statements.append("COMMIT;")
            psql_script(ctx, FILES_MANY_DB, "\n".join(statements))
        pg_finish(ctx, FILES_MANY_DB, FILES_GENERATION)
    if pg_recreated(ctx, FILES_FEW_DB, FILES_GENERATION,
                    f"the same {FILES_ROWS} rows in {FILES_FEW} tables"):
        statements = []
        for table in range(FILES_FEW):
            name = f"part_{table:02d}"
            statements.append(
                f"CREATE TABLE {name} (id integer PRIMARY KEY, data text NOT NULL);"
                f"INSERT INTO {name} SELECT g, {files_payload('g')} "
                f"FROM generate_series(1, {FILES_ROWS}) AS g WHERE g % {FILES_FEW} = {table};")
        psql_script(ctx, FILES_FEW_DB, "\n".join(statements))
        pg_finish(ctx, FILES_FEW_DB, FILES_GENERATION)


def row_counts(ctx, database):
    """Every base table of schema public with its exact row count."""
    out = ctx.psql(database, """
        SELECT table_name,
               (xpath('/row/c/text()',
                      query_to_xml(format('SELECT count(*) AS c FROM %I.%I',
                                          table_schema, table_name),
                                   false, true, '')))[1]::text
        FROM information_schema.tables
        WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
        ORDER BY table_name""")
    counts = {}
    for line in out.splitlines():
        table, count = line.split("|")
        counts[table] = int(count)
    return counts


def fresh_database(ctx, name):
    """An empty database shaped like run.py's fixtures (SQL_ASCII: their
    random text is no valid UTF-8)."""
    ctx.psql("postgres", f"DROP DATABASE IF EXISTS {name}")
    ctx.psql("postgres", f"CREATE DATABASE {name} ENCODING 'SQL_ASCII' "
                         f"LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")


def drop_database(ctx, name):
    ctx.psql("postgres", f"DROP DATABASE IF EXISTS {name}")


def check_restored(ctx, database, expected, who):
    got = row_counts(ctx, database)
    if got != expected:
        differ = sorted(set(got) ^ set(expected)
                        | {t for t in got.keys() & expected.keys() if got[t] != expected[t]})
        raise SystemExit(f"bench: {who} restored {sum(got.values())} rows in {len(got)} "
                         f"tables, expected {sum(expected.values())} in {len(expected)}; "
                         f"tables that differ: {differ[:10]}")


# --- MariaDB --------------------------------------------------------------------


def mysql_settings(ctx):
    env = ctx.env
    return {
        "host": env.get("BACKUP_CLOUD_TEST_MYSQL_HOST", "127.0.0.1"),
        "port": int(env.get("BACKUP_CLOUD_TEST_MYSQL_PORT", "53306")),
        "user": env.get("BACKUP_CLOUD_TEST_MYSQL_USER", "backup"),
        "password": env.get("BACKUP_CLOUD_TEST_MYSQL_PASSWORD", "backup-test-pw"),
        # tests/harness/mariadb-up: root over the socket (unix socket auth)
        "socket": env.get("BACKUP_CLOUD_TEST_MYSQL_SOCKET",
                          str(Path(ctx.state).parent / "mariadb.sock")),
    }


def mariadb_root(ctx, sql):
    """Runs `sql` as the server's root over its socket, as the tests do."""
    settings = mysql_settings(ctx)
    return run(["mariadb", "--no-defaults", f"--socket={settings['socket']}", "-u", "root",
                "--batch", "--skip-column-names", "--default-character-set=utf8mb4"],
               input=sql, text=True, capture_output=True).stdout.strip()


def mysql_database(ctx):
    """MYSQL_TABLES InnoDB tables of MYSQL_ROWS rows each; the generation
    is the database's comment, written last."""
    settings = mysql_settings(ctx)
    marker = mariadb_root(ctx, "SELECT schema_comment FROM information_schema.schemata "
                               f"WHERE schema_name = '{MYSQL_DB_NAME}'")
    if marker != MYSQL_GENERATION:
        say(f"creating MariaDB database {MYSQL_DB_NAME} "
            f"({MYSQL_TABLES} tables of {MYSQL_ROWS} rows)")
        mariadb_root(ctx, f"DROP DATABASE IF EXISTS `{MYSQL_DB_NAME}`;"
                          f"CREATE DATABASE `{MYSQL_DB_NAME}` CHARACTER SET utf8mb4 "
                          f"COLLATE utf8mb4_unicode_ci")
        for start in range(0, MYSQL_TABLES, MYSQL_BATCH):
            statements = [f"USE `{MYSQL_DB_NAME}`;"]
            for table in range(start, min(start + MYSQL_BATCH, MYSQL_TABLES)):
                name = f"t_{table:04d}"
                statements.append(
                    f"CREATE TABLE {name} (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, "
                    f"amount DECIMAL(12,2) NOT NULL, note VARCHAR(255) NULL) ENGINE=InnoDB;"
                    f"INSERT INTO {name} SELECT seq, CONCAT('item ', seq, ' of {name}'), "
                    f"seq * 3.17, IF(seq % 5 = 0, NULL, MD5(seq + {table})) "
                    f"FROM seq_1_to_{MYSQL_ROWS};")
            mariadb_root(ctx, "\n".join(statements))
        mariadb_root(ctx, f"ALTER DATABASE `{MYSQL_DB_NAME}` COMMENT '{MYSQL_GENERATION}'")
    # what the agent's preflight checks the role holds on every dumped
    # database (src/agent/grants.rs; mariadb-up grants them globally too)
    user = settings["user"]
    mariadb_root(ctx, "".join(
        f"GRANT SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES ON `{MYSQL_DB_NAME}`.* "
        f"TO '{user}'@'{host}';" for host in ("%", "localhost")))
    tables = int(mariadb_root(ctx, "SELECT count(*) FROM information_schema.tables "
                                   f"WHERE table_schema = '{MYSQL_DB_NAME}'"))
    assert tables == MYSQL_TABLES, tables


# --- backups --------------------------------------------------------------------


def address(ctx, spec):
    return f"s3://{ctx.localstack.bucket}/{spec['backup_prefix']}"


def agent_backup(ctx, name, database, dump):
    """One `backup-cloud agent` run of a PostgreSQL job; returns what
    measure() measured, its spec and its manifest."""
    args, spec = ctx.localstack.job(name, ctx.part_size_mib, ctx.concurrency,
                                    database=database, dump=dump)
    out = ctx.measure([str(ctx.binary), *args], env=ctx.env)
    return out, spec, ctx.localstack.manifest(spec)


def mysql_backup(ctx, name, password_parameter):
    """One `backup-cloud agent` run of a mydumper job on MariaDB: run.py's
    job spec, turned into a MySQL one (engine, server, user, password)."""
    settings = mysql_settings(ctx)
    args, spec = ctx.localstack.job(
        name, ctx.part_size_mib, ctx.concurrency, database=MYSQL_DB_NAME,
        dump={"mode": "mydumper", "jobs": DIRECTORY_JOBS, "databases": [MYSQL_DB_NAME]})
    spec["engine"] = "mysql"
    spec["database"] = {"host": settings["host"], "port": settings["port"],
                        "user": settings["user"], "name": MYSQL_DB_NAME}
    spec["password_parameter"] = password_parameter
    spec_key = args[args.index("--spec-key") + 1]
    ctx.localstack.s3.put_object(Bucket=ctx.localstack.bucket, Key=spec_key,
                                 Body=json.dumps(spec).encode())
    out = ctx.measure([str(ctx.binary), *args], env=ctx.env)
    return out, spec, ctx.localstack.manifest(spec)


def ssm_client(ctx):
    ssm = getattr(ctx.localstack, "ssm", None)
    if ssm is not None:
        return ssm
    import boto3
    s3 = ctx.localstack.s3
    return boto3.client("ssm", endpoint_url=s3.meta.endpoint_url,
                        region_name=s3.meta.region_name)


# --- the two sides ------------------------------------------------------------------


def cpu_of(out):
    """CPU seconds of a measured process tree, when run.py's measure
    reports them (the database server's and LocalStack's not included)."""
    return getattr(out, "tree_cpu_seconds", None)


def tool_restore(ctx, spec, database, scratch):
    """`backup-cloud restore ADDRESS --to postgres://…/DATABASE` with the
    private key's keyring as GNUPGHOME; its plaintext scratch directory
    under `scratch` (TMPDIR). Returns what measure() measured."""
    env = {**ctx.env, "GNUPGHOME": str(ctx.keys.home), "TMPDIR": str(scratch)}
    out = ctx.measure([str(ctx.binary), "--output", "json", "restore", address(ctx, spec),
                       "--to", pg_url(ctx, database)], env=env)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report.get("event") == "restored", report
    leftovers = list(Path(scratch).glob("backup-cloud-restore-*"))
    assert not leftovers, f"backup-cloud restore left {leftovers}"
    return out


def timestamps(stdout):
    """The `date +%s.%N` marks a by-hand script printed, as phase seconds."""
    marks = []
    for line in stdout.splitlines():
        try:
            marks.append(float(line))
        except ValueError:
            continue  # anything else a tool printed
    return [b - a for a, b in zip(marks, marks[1:])]


def by_hand_directory(ctx, spec, manifest, database, work):
    """`aws s3 cp --recursive` of the backup's prefix, then each object
    `gpg -d | zstd -d` back to pg_dump's file name (a pack through
    `tar -x`), then `pg_restore -j`,
    as one bash script. Returns what measure() measured and the phases'
    seconds."""
    prefix = spec["backup_prefix"]
    cipher, dump = work / "cipher", work / "dump"
    gpg = shlex.join(ctx.keys.gpg("--decrypt"))
    lines = [
        "set -euo pipefail",
        "date +%s.%N",
        f"{shlex.quote(str(ctx.aws))} s3 cp --recursive --only-show-errors "
        f"--exclude 'checks/*' s3://{ctx.localstack.bucket}/{prefix} {shlex.quote(str(cipher))}",
        "date +%s.%N",
    ]
    folders = {dump}
    for obj in manifest["objects"]:
        source = cipher / obj["key"][len(prefix):]
        undo = "zstd -d -q" if obj.get("compression") == "zstd" else "cat"
        if "packed" in obj:  # a tar archive of small files, unpacked in place
            for packed in obj["packed"]:
                folders.add((dump / packed["path"]).parent)
            lines.append(f"{gpg} {shlex.quote(str(source))} | {undo} "
                         f"| tar -x -C {shlex.quote(str(dump))}")
            continue
        target = dump / obj["path"]
        folders.add(target.parent)
        lines.append(f"{gpg} {shlex.quote(str(source))} | {undo} > {shlex.quote(str(target))}")
    lines.insert(4, "mkdir -p " + " ".join(shlex.quote(str(f)) for f in sorted(folders)))
    lines += [
        "date +%s.%N",
        f"pg_restore --jobs={DIRECTORY_JOBS} --no-owner --no-privileges --exit-on-error "
        f"--dbname={shlex.quote(pg_conninfo(ctx, database))} {shlex.quote(str(dump))}",
        "date +%s.%N",
        f"rm -rf {shlex.quote(str(cipher))} {shlex.quote(str(dump))}",
    ]
    out = ctx.measure("\n".join(lines), shell=True, env=pg_env(ctx))
    return out, dict(zip(("download", "decrypt", "pg_restore"), timestamps(out.stdout)))


def by_hand_stream(ctx, manifest, database):
    """`aws s3 cp s3://… - | gpg -d | zstd -d | pg_restore -d DB`."""
    [obj] = manifest["objects"]
    undo = "| zstd -d -q " if obj.get("compression") == "zstd" else ""
    script = (
        "set -euo pipefail; "
        f"{shlex.quote(str(ctx.aws))} s3 cp --only-show-errors "
        f"s3://{ctx.localstack.bucket}/{obj['key']} - "
        f"| {shlex.join(ctx.keys.gpg('--decrypt'))} {undo}"
        f"| pg_restore --no-owner --no-privileges --exit-on-error "
        f"--dbname={shlex.quote(pg_conninfo(ctx, database))}"
    )
    return ctx.measure(script, shell=True, env=pg_env(ctx)), {}


def pg_dump_alone(ctx, database, work):
    """`pg_dump -Fd --jobs N -Z0` of `database` into a local folder, as
    the agent runs it (as the superuser here: the dump, not the grants, is
    measured); the folder is deleted after."""
    folder = Path(tempfile.mkdtemp(prefix="pg-dump-alone-", dir=work)) / "dump"
    try:
        return ctx.measure(["pg_dump", f"--jobs={DIRECTORY_JOBS}", "-Fd", "-Z0",
                            f"--file={folder}", f"--dbname={pg_conninfo(ctx, database)}"],
                           env=pg_env(ctx))
    finally:
        shutil.rmtree(folder.parent, ignore_errors=True)


def tool_verify(ctx, spec, manifest):
    """`backup-cloud verify ADDRESS` (no private key), which must pass
    having read every object whole."""
    out = ctx.measure([str(ctx.binary), "--output", "json", "verify", address(ctx, spec)],
                      env=ctx.env)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report.get("passed") is True, report.get("problems")
    assert len(report["good"]) == len(manifest["objects"]), (len(report["good"]),
                                                             len(manifest["objects"]))
    assert report["bytes"] == sum(o["size"] for o in manifest["objects"]), report["bytes"]
    return out


def download(ctx, spec, manifest, work):
    """`aws s3 cp --recursive` of the same objects (and the manifest, not
    the check records verify leaves) into a folder deleted right after."""
    target = Path(tempfile.mkdtemp(prefix="download-", dir=work))
    try:
        out = ctx.measure([str(ctx.aws), "s3", "cp", "--recursive", "--only-show-errors",
                           "--exclude", "checks/*", address(ctx, spec), str(target)],
                          env=ctx.env)
        files = sum(1 for p in target.rglob("*") if p.is_file())
        assert files == len(manifest["objects"]) + 1, (files, len(manifest["objects"]))
        return out
    finally:
        shutil.rmtree(target, ignore_errors=True)


# --- the measurements ---------------------------------------------------------------


class Side:
    """One side's rounds: wall seconds, process-tree CPU seconds, phases."""

    def __init__(self):
        self.seconds, self.cpu, self.phases = [], [], []

    def add(self, out, phases=None):
        self.seconds.append(out.seconds)
        self.cpu.append(cpu_of(out))
        self.phases.append(phases or {})

    @property
    def wall(self):
        return median(self.seconds)

    @property
    def cpu_s(self):
        return None if None in self.cpu else median(self.cpu)

    def phase(self, name):
        return median([p[name] for p in self.phases])

    def text(self):
        """`12.3 s` and, when known, `(CPU 8.1 s)`."""
        cpu = self.cpu_s
        return f"{self.wall:.1f} s" + ("" if cpu is None else f" (CPU {cpu:.1f} s)")


def restore_rounds(ctx, name, spec, manifest, expected, by_hand, work):
    """ctx.rounds interleaved rounds of backup-cloud restore and `by_hand`
    (a function of (target database, round folder) returning measure()'s
    result and phase seconds), each into a fresh database whose row counts
    are checked. Returns both Sides."""
    tool, hand = Side(), Side()
    target = f"bench_restore_{uuid.uuid4().hex[:8]}"
    try:
        for round_ in range(ctx.rounds):
            fresh_database(ctx, target)
            scratch = work / f"tool-{round_}"
            scratch.mkdir()
            tool.add(tool_restore(ctx, spec, target, scratch))
            check_restored(ctx, target, expected, "backup-cloud restore")
            drop_database(ctx, target)
            shutil.rmtree(scratch)

            fresh_database(ctx, target)
            folder = work / f"hand-{round_}"
            folder.mkdir()
            hand.add(*by_hand(target, folder))
            check_restored(ctx, target, expected, "the restore by hand")
            drop_database(ctx, target)
            shutil.rmtree(folder, ignore_errors=True)
            line = (f"{name} restore round {round_ + 1}: backup-cloud {tool.seconds[-1]:.1f} s, "
                    f"by hand {hand.seconds[-1]:.1f} s")
            if hand.phases[-1]:
                line += " (" + ", ".join(f"{k} {v:.1f} s"
                                         for k, v in hand.phases[-1].items()) + ")"
            say(line + f"; {sum(expected.values())} rows checked in each")
    finally:
        drop_database(ctx, target)
    return tool, hand


def verify_rounds(ctx, name, spec, manifest, work):
    """ctx.rounds interleaved rounds of verify and the download of the
    same objects; returns both Sides."""
    verify, fetch = Side(), Side()
    for round_ in range(ctx.rounds):
        verify.add(tool_verify(ctx, spec, manifest))
        fetch.add(download(ctx, spec, manifest, work))
        say(f"{name} verify round {round_ + 1}: verify {verify.seconds[-1]:.1f} s, "
            f"aws s3 cp --recursive {fetch.seconds[-1]:.1f} s "
            f"({len(manifest['objects'])} objects)")
    return verify, fetch


def gb(manifest, field="size"):
    return sum(o[field] for o in manifest["objects"]) / 1e9


def size_text(manifest, field="size"):
    size = gb(manifest, field)
    return f"{size:.2f} GB" if size >= 1 else f"{size * 1e3:.1f} MB"


def small_files(ctx, work, results, notes):
    """small_files_overhead: many small files against the same bytes in a
    few, beside the same two dumps by pg_dump alone (the floor: what the
    tool itself spends on 5,000 tables, which no uploader can take away)."""
    dump = {"mode": "postgres-directory", "jobs": DIRECTORY_JOBS}
    many, few, many_alone, few_alone = Side(), Side(), Side(), Side()
    for round_ in range(ctx.rounds):
        out, _, many_manifest = agent_backup(ctx, "bench-files-many", FILES_MANY_DB, dump)
        many.add(out)
        ctx.localstack.empty()
        out, _, few_manifest = agent_backup(ctx, "bench-files-few", FILES_FEW_DB, dump)
        few.add(out)
        ctx.localstack.empty()
        many_alone.add(pg_dump_alone(ctx, FILES_MANY_DB, work))
        few_alone.add(pg_dump_alone(ctx, FILES_FEW_DB, work))
        say(f"small files round {round_ + 1}: {FILES_MANY} tables {many.seconds[-1]:.1f} s "
            f"({len(many_manifest['objects'])} objects; pg_dump alone "
            f"{many_alone.seconds[-1]:.1f} s), {FILES_FEW} tables {few.seconds[-1]:.1f} s "
            f"({len(few_manifest['objects'])} objects; pg_dump alone "
            f"{few_alone.seconds[-1]:.1f} s)")
    results["small_files_overhead"] = many.wall / few.wall
    results["small_files_pg_dump_alone"] = many_alone.wall / few_alone.wall
    packs = sum(1 for o in many_manifest["objects"] if "packed" in o)
    notes["small_files_overhead"] = (
        f"directory backup (pg_dump -Fd --jobs {DIRECTORY_JOBS}) of the same {FILES_ROWS} "
        f"rows ({size_text(many_manifest, 'plaintext_bytes')} dump) in {FILES_MANY} tables "
        f"({len(many_manifest['objects'])} objects, {packs} of them packs): {many.text()} "
        f"vs in {FILES_FEW} tables ({len(few_manifest['objects'])} objects): {few.text()}; "
        f"medians, agent process tree CPU")
    notes["small_files_pg_dump_alone"] = (
        f"the floor under small_files_overhead: pg_dump -Fd --jobs {DIRECTORY_JOBS} -Z0 "
        f"alone into a local folder, {FILES_MANY} tables {many_alone.text()} vs "
        f"{FILES_FEW} tables {few_alone.text()}; medians of the same rounds")


def measure(ctx, parts=("restore", "small-files")):
    """Returns (results, notes) for run.py's table and bench-results.json:
    with `restore` in `parts` the restore and verify keys, with
    `small-files` the small-files keys."""
    results, notes = {}, {}
    tables_db = getattr(ctx, "tables_database", TABLES_DB_NAME)
    state = Path(ctx.state)
    state.mkdir(parents=True, exist_ok=True)
    if "small-files" in parts:
        files_databases(ctx)
    if "restore" in parts:
        mysql_database(ctx)
        expected = row_counts(ctx, tables_db)
        assert expected and all(expected.values()), f"{tables_db} is empty: {expected}"
    work = Path(tempfile.mkdtemp(prefix="bench-restore-", dir=state))
    ssm = ssm_client(ctx)
    mysql_password = f"/backup-cloud-bench/{ctx.localstack.bucket}/mysql-password"
    try:
        if "restore" in parts:
            ssm.put_parameter(Name=mysql_password, Value=mysql_settings(ctx)["password"],
                              Type="SecureString", Overwrite=True)
            # 1. A directory backup: restored by backup-cloud and by hand, and
            # verified against a download of its objects.
            dump = {"mode": "postgres-directory", "jobs": DIRECTORY_JOBS}
            out, spec, manifest = agent_backup(ctx, "bench-restore-dir", tables_db, dump)
            dir_objects, dir_size = len(manifest["objects"]), size_text(manifest)
            dir_bytes = gb(manifest) * 1e9
            say(f"directory backup of {tables_db}: {out.seconds:.1f} s, {dir_objects} objects, "
                f"{dir_size} stored")
            tool, hand = restore_rounds(
                ctx, "directory", spec, manifest, expected,
                lambda target, folder: by_hand_directory(ctx, spec, manifest, target, folder), work)
            results["restore_vs_by_hand"] = hand.wall / tool.wall
            notes["restore_vs_by_hand"] = (
                f"{tables_db} ({len(expected)} tables, pg_dump -Fd --jobs {DIRECTORY_JOBS}, "
                f"{dir_objects} objects, {size_text(manifest, 'plaintext_bytes')} dump): "
                f"backup-cloud restore {tool.text()} vs by hand {hand.text()}: aws s3 cp "
                f"--recursive {hand.phase('download'):.1f} s, gpg -d | zstd -d file by file "
                f"{hand.phase('decrypt'):.1f} s, pg_restore --jobs {DIRECTORY_JOBS} "
                f"{hand.phase('pg_restore'):.1f} s; medians, every table's row count checked")
            dir_verify, dir_fetch = verify_rounds(ctx, "directory", spec, manifest, work)
            dir_ratio = dir_fetch.wall / dir_verify.wall  # same bytes: rate ratio = time ratio
            ctx.localstack.empty()

            # 2. A custom-format backup (one stream): restored by backup-cloud
            # and through a pipe by hand.
            out, spec, manifest = agent_backup(ctx, "bench-restore-custom", tables_db, None)
            say(f"custom-format backup of {tables_db}: {out.seconds:.1f} s, "
                f"{size_text(manifest)} stored")
            tool, hand = restore_rounds(
                ctx, "stream", spec, manifest, expected,
                lambda target, folder: by_hand_stream(ctx, manifest, target), work)
            results["restore_stream_vs_by_hand"] = hand.wall / tool.wall
            notes["restore_stream_vs_by_hand"] = (
                f"{tables_db}, pg_dump -Fc ({size_text(manifest, 'plaintext_bytes')} dump): "
                f"backup-cloud restore {tool.text()} vs aws s3 cp - | gpg -d | zstd -d | "
                f"pg_restore {hand.text()}; medians, every table's row count checked")
            ctx.localstack.empty()

            # 3. Verify on many small objects: a mydumper backup of 5,000 tables.
            out, spec, manifest = mysql_backup(ctx, "bench-verify-mydumper", mysql_password)
            objects = len(manifest["objects"])
            my_bytes = gb(manifest) * 1e9
            say(f"mydumper backup of {MYSQL_DB_NAME}: {out.seconds:.1f} s, {objects} objects, "
                f"{size_text(manifest)} stored")
            my_verify, my_fetch = verify_rounds(ctx, "mydumper", spec, manifest, work)
            my_ratio = my_fetch.wall / my_verify.wall
            ctx.localstack.empty()
            results["verify_vs_download"] = min(dir_ratio, my_ratio)
            results["verify_s_per_1000_objects"] = my_verify.wall / (objects / 1000)
            notes["verify_vs_download"] = (
                f"the smaller of: directory backup of {tables_db} ({dir_objects} objects, "
                f"{dir_size}): verify {dir_verify.text()}, {dir_bytes / 1e6 / dir_verify.wall:.0f} "
                f"MB/s, vs aws s3 cp --recursive {dir_fetch.text()}, "
                f"{dir_bytes / 1e6 / dir_fetch.wall:.0f} MB/s: {dir_ratio:.2f}; mydumper backup of "
                f"{MYSQL_DB_NAME} ({objects} objects, {my_bytes / 1e6:.1f} MB): verify "
                f"{my_verify.text()} vs aws s3 cp --recursive {my_fetch.text()}: {my_ratio:.2f} "
                f"(medians)")
            notes["verify_s_per_1000_objects"] = (
                f"mydumper backup of {MYSQL_TABLES} tables of {MYSQL_ROWS} rows, {objects} objects: "
                f"verify {my_verify.wall:.1f} s; aws s3 cp --recursive of them "
                f"{my_fetch.wall / (objects / 1000):.2f} s per 1000")

        if "small-files" in parts:
            small_files(ctx, work, results, notes)
    finally:
        ctx.localstack.empty()
        shutil.rmtree(work, ignore_errors=True)
        if "restore" in parts:
            try:
                ssm.delete_parameter(Name=mysql_password)
            except Exception:  # noqa: BLE001 - cleanup only
                pass
    return results, notes
