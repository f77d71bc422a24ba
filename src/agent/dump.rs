//! The database's own client tools, driven for one backup.
//!
//! Everything engine-specific the agent does lives here: how credentials
//! reach the tools (a private file, never argv), how the server is asked
//! for its version and size, and which dump command produces the dump —
//! a stream on stdout (`pg_dump -Fc`, `mysqldump`) or a directory of files
//! (`pg_dump -Fd`, `mydumper`). The rest of the agent only sees a
//! [`DumpCommand`] and the [`DumpProcess`] it starts.

use std::collections::{BTreeMap, VecDeque};
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use super::compat::{self, Client, Family, Hosting, Mismatch, Server, Tool};
use super::grants::Grants;
use crate::client_limits::MYSQL_MAX_PACKET;
use crate::credentials;
use crate::mysql_batch::rows;
use crate::schema::{DatabaseTarget, DumpMode, DumpSettings, Engine};
use crate::secret::Secret;

/// Schemas every MySQL server has and no backup wants.
const MYSQL_SYSTEM_SCHEMAS: [&str; 4] =
    ["mysql", "information_schema", "performance_schema", "sys"];

/// How much of a tool's stderr is kept for error messages.
const STDERR_TAIL_BYTES: usize = 4096;

/// How long a client tool may take to connect.
/// A database client tool failed or could not be run.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: &'static str,
        source: io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: &'static str,
        status: String,
        stderr: String,
    },
    #[error("{program} printed output this agent does not understand: {output:?}")]
    UnexpectedOutput {
        program: &'static str,
        output: String,
    },
    #[error("cannot wait for {program}: {source}")]
    Wait {
        program: &'static str,
        source: io::Error,
    },
    #[error("cannot write the database password file: {0}")]
    PasswordFile(io::Error),
    #[error("the database password contains a line break, which a password file cannot hold")]
    PasswordNotRepresentable,
    #[error("the server has no databases to dump (system schemas are never dumped)")]
    NoDatabases,
    #[error(
        "mydumper cannot read invisible columns (it selects `*`), so their values would be lost: {}; \
         set mode = \"mysqldump\" for this job, which dumps them",
        .0.join(", ")
    )]
    InvisibleColumns(Vec<String>),
    #[error(
        "the backup role {role} cannot see everything it must dump, and the dump tools leave out \
         what it cannot see without an error: {}; grant what is missing, e.g. \
         GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `<database>`.* TO <role> and, for routines, \
         GRANT SELECT ON mysql.proc TO <role> (MySQL 8.0.20 and later: GRANT SHOW_ROUTINE ON *.* TO <role>)",
        .lacking.join("; ")
    )]
    MysqlPrivileges { role: String, lacking: Vec<String> },
    #[error(
        "mydumper names its files `database.table`, so these names with a dot would be restored \
         under another name: {}; set mode = \"mysqldump\" for this job, which keeps them",
        .0.join(", ")
    )]
    DottedNames(Vec<String>),
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    #[error("the job's exclude does not name exactly one table or view: {}", .0.join("; "))]
    BadExclude(Vec<String>),
    #[error(
        "these views cannot be dumped, so the backup would be missing them: {}; \
         repair or drop them, or leave them out of the job with `exclude = {{ <database> = [\"<view>\"] }}`",
        .0.join("; ")
    )]
    BrokenViews(Vec<String>),
    #[error(
        "the dump is missing what the server's catalog listed before it began: {}; \
         the backup would be incomplete",
        .0.join(", ")
    )]
    MissingFromDump(Vec<String>),
    #[error(
        "the backup role {role} cannot read what it must dump: {}; grant it with \
         GRANT USAGE ON SCHEMA <schema> TO {role}, GRANT SELECT ON ALL TABLES IN SCHEMA <schema> TO {role} \
         and GRANT SELECT ON ALL SEQUENCES IN SCHEMA <schema> TO {role} (or, on PostgreSQL 14 and later, GRANT pg_read_all_data TO {role}); large objects need \
         GRANT SELECT ON LARGE OBJECT <oid> TO {role}, membership of their owner, or large_objects = false; \
         tables under row-level security need ALTER ROLE {role} BYPASSRLS",
        .unreadable.join(", ")
    )]
    Unreadable {
        role: String,
        unreadable: Vec<String>,
    },
}

/// Writes `password` to a new file at `path`, readable by this user only,
/// in the format `engine`'s client tools read.
pub fn write_password_file(
    engine: Engine,
    path: &Path,
    password: &Secret,
) -> Result<(), DumpError> {
    let contents = match engine {
        Engine::Postgres => pgpass_line(password.expose())?,
        Engine::Mysql => mysql_option_file(password.expose())?,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(DumpError::PasswordFile)?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(DumpError::PasswordFile)
}

/// A `.pgpass` line matching any server, database and user: the file is
/// private to this one job, so wildcards cannot pick up a wrong password.
fn pgpass_line(password: &str) -> Result<String, DumpError> {
    credentials::pgpass(password).map_err(|_| DumpError::PasswordNotRepresentable)
}

/// A MySQL option file giving the password to every client program
/// (`[client]` is read by mysql, mysqldump and mydumper alike).
fn mysql_option_file(password: &str) -> Result<String, DumpError> {
    credentials::mysql_options(password, &["client"])
        .map_err(|_| DumpError::PasswordNotRepresentable)
}

/// What the server says about itself before the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    pub version: String,
    pub database_bytes: u64,
    /// PostgreSQL: the session settings of
    /// [`crate::facts::COPY_TEXT_SETTINGS`] the server gives this role and
    /// database (and so pg_dump's session), by name; empty for MySQL.
    pub copy_settings: BTreeMap<String, String>,
}

/// Where the dump tool writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpOutput {
    /// One stream on stdout.
    Stream,
    /// Files in this directory, which exists and is empty; stdout is unused.
    Directory(PathBuf),
}

/// How to reach the database with the engine's client tools.
#[derive(Debug, Clone)]
pub struct Connection {
    engine: Engine,
    target: DatabaseTarget,
    password_file: PathBuf,
}

/// The MySQL databases one backup covers, resolved against the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlDatabases(pub Vec<String>);

/// What a mydumper dump must hold, from the server's catalog before the
/// dump began: one file per entry, named as mydumper 0.10 names it, with
/// what the file stands for.
#[derive(Debug, Default)]
pub struct Catalog(Vec<(String, String)>);

impl Catalog {
    /// Fails unless every file the catalog calls for is among `dumped`
    /// (paths relative to the dump directory): a dump tool that skipped
    /// something (mydumper skips what it cannot read, with a warning)
    /// must not pass for a whole backup.
    pub fn account_for<'a>(
        &self,
        dumped: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), DumpError> {
        let dumped: std::collections::HashSet<&str> = dumped.into_iter().collect();
        let missing: Vec<String> = self
            .0
            .iter()
            .filter(|(file, _)| !dumped.contains(file.as_str()))
            .map(|(_, what)| what.clone())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(DumpError::MissingFromDump(missing))
        }
    }

    /// The catalog of `databases` from the server's listing of their
    /// `tables` (`(database, name, table type)`), the `(database, table)`
    /// pairs with `triggers`, and the databases holding routines or events.
    fn of(
        databases: &MysqlDatabases,
        tables: &[[String; 3]],
        triggers: &[[String; 2]],
        routines_or_events: &[String],
    ) -> Catalog {
        let mut files = Vec::new();
        for database in &databases.0 {
            files.push((
                format!("{database}-schema-create.sql"),
                format!("database {database}"),
            ));
        }
        for [database, name, kind] in tables {
            let (suffix, what) = if kind == "VIEW" {
                ("-schema-view", "view")
            } else {
                ("-schema", "table")
            };
            files.push((
                format!("{database}.{name}{suffix}.sql"),
                format!("{what} {database}.{name}"),
            ));
        }
        for [database, table] in triggers {
            files.push((
                format!("{database}.{table}-schema-triggers.sql"),
                format!("the triggers of {database}.{table}"),
            ));
        }
        for database in routines_or_events {
            files.push((
                format!("{database}-schema-post.sql"),
                format!("the routines and events of {database}"),
            ));
        }
        Catalog(files)
    }
}

impl MysqlDatabases {
    /// The names as SQL string literals, comma-separated, for `IN (…)`.
    fn sql_list(&self) -> String {
        self.0
            .iter()
            .map(|name| sql_string(name))
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Connection {
    /// `password_file` must have been written by [`write_password_file`].
    pub fn new(engine: Engine, target: &DatabaseTarget, password_file: &Path) -> Self {
        Connection {
            engine,
            target: target.clone(),
            password_file: password_file.to_owned(),
        }
    }

    /// The command that takes the dump `settings` describe, with `jobs`
    /// parallel workers, into `output` (which must suit the mode), with
    /// the `flags` this tool needs for this server ([`DumpTool::flags`]).
    /// `databases` is what [`Connection::mysql_databases`] resolved; it is
    /// ignored for PostgreSQL.
    pub fn dump_command(
        &self,
        settings: &DumpSettings,
        jobs: u32,
        databases: &MysqlDatabases,
        flags: &[&str],
        output: DumpOutput,
    ) -> DumpCommand {
        let directory = match &output {
            DumpOutput::Directory(dir) => Some(dir.clone()),
            DumpOutput::Stream => None,
        };
        let (program, command) = match settings.mode {
            DumpMode::PostgresCustom => {
                let mut command = self.postgres_client("pg_dump");
                // uncompressed: the agent compresses the stream with zstd
                command.arg("--format=custom").arg("--compress=0");
                if !settings.large_objects {
                    command.arg("--no-blobs");
                }
                command.args(flags);
                ("pg_dump", command)
            }
            DumpMode::PostgresDirectory => {
                let mut command = self.postgres_client("pg_dump");
                // uncompressed: the agent compresses each file with zstd,
                // faster and smaller than pg_dump's gzip; no fsync: the
                // files are scratch, uploaded and deleted
                command
                    .arg("--format=directory")
                    .arg(format!("--jobs={jobs}"))
                    .arg("--compress=0")
                    .arg("--no-sync");
                if !settings.large_objects {
                    command.arg("--no-blobs");
                }
                command.args(flags);
                if let Some(dir) = &directory {
                    command.arg("--file").arg(dir);
                }
                ("pg_dump", command)
            }
            DumpMode::Mydumper => (
                "mydumper",
                self.mydumper(settings, jobs, databases, flags, directory.as_deref()),
            ),
            DumpMode::Mysqldump => {
                let mut command = self.mysql_client("mysqldump");
                command.args([
                    MYSQL_MAX_PACKET,
                    "--single-transaction",
                    "--quick",
                    "--routines",
                    "--triggers",
                    "--events",
                    "--hex-blob",
                    "--no-tablespaces",
                    "--default-character-set=utf8mb4",
                ]);
                command.args(flags);
                for (database, table) in settings.excluded_tables() {
                    command.arg(format!("--ignore-table={database}.{table}"));
                }
                command.args(["--databases", "--"]);
                command.args(&databases.0);
                ("mysqldump", command)
            }
        };
        DumpCommand {
            program,
            command,
            output,
        }
    }

    /// mydumper, its threads synchronised as `flags` say
    /// ([`compat::dump_flags`]: the lock options of its version, the lock
    /// the server's hosting allows, or none with `no_locks`).
    fn mydumper(
        &self,
        settings: &DumpSettings,
        jobs: u32,
        databases: &MysqlDatabases,
        flags: &[&str],
        directory: Option<&Path>,
    ) -> Command {
        let target = &self.target;
        let mut command = Command::new("mydumper");
        command
            .arg("--defaults-file")
            .arg(&self.password_file)
            .arg(format!("--host={}", target.host))
            .arg(format!("--port={}", target.port))
            .arg(format!("--user={}", target.user))
            .arg(format!("--threads={jobs}"))
            .arg(format!("--rows={}", settings.rows_per_chunk))
            .args(flags)
            .arg(format!(
                "--long-query-guard={}",
                settings.long_query_guard_secs
            ))
            .args(["--triggers", "--events", "--routines", "--verbose=1"])
            .arg(format!(
                "--regex={}",
                mydumper_regex(&databases.0, settings)
            ));
        if settings.kill_long_queries {
            command.arg("--kill-long-queries");
        }
        if let Some(dir) = directory {
            command.arg("--outputdir").arg(dir);
        }
        command
    }

    /// The MySQL databases to dump: the configured list, or every
    /// database on the server but the system schemas.
    pub async fn mysql_databases(
        &self,
        configured: &[String],
    ) -> Result<MysqlDatabases, DumpError> {
        if !configured.is_empty() {
            return Ok(MysqlDatabases(configured.to_vec()));
        }
        let databases: Vec<String> = self
            .mysql_rows("SELECT schema_name FROM information_schema.schemata ORDER BY schema_name")
            .await?
            .into_iter()
            .map(|[name]| name)
            .filter(|name| !MYSQL_SYSTEM_SCHEMAS.contains(&name.as_str()))
            .collect();
        if databases.is_empty() {
            return Err(DumpError::NoDatabases);
        }
        Ok(MysqlDatabases(databases))
    }

    /// A connected `mysql` for the MySQL table facts; `None` for
    /// PostgreSQL, whose facts come from the dump itself.
    pub fn mysql_facts_client(&self) -> Option<Command> {
        match self.engine {
            Engine::Mysql => Some(self.mysql_client("mysql")),
            Engine::Postgres => None,
        }
    }

    /// Asks the server for its version and the size of what is dumped
    /// (`databases` for MySQL, the target database for PostgreSQL).
    pub async fn server_facts(&self, databases: &MysqlDatabases) -> Result<ServerFacts, DumpError> {
        match self.engine {
            Engine::Postgres => {
                let output = self
                    .psql_query(
                        "SELECT current_setting('server_version'), \
                         pg_database_size(current_database()), \
                         current_setting('TimeZone'), current_setting('bytea_output')",
                    )
                    .await?;
                parse_psql_facts(&output).ok_or(DumpError::UnexpectedOutput {
                    program: "psql",
                    output,
                })
            }
            Engine::Mysql => {
                let schemas = databases.sql_list();
                let output = self
                    .mysql_query(&format!(
                        "SELECT VERSION(), COALESCE(SUM(data_length + index_length), 0) \
                         FROM information_schema.tables WHERE table_schema IN ({schemas})"
                    ))
                    .await?;
                parse_psql_facts(&output).ok_or(DumpError::UnexpectedOutput {
                    program: "mysql",
                    output,
                })
            }
        }
    }

    /// Checks, before dumping, that everything in `databases` can be
    /// dumped whole with `mode`, and lists what the dump must then hold:
    /// the role sees every object (see [`grants`](super::grants)); no view
    /// is one the server cannot read (mydumper skipped one with a warning,
    /// mysqldump fails on it midway); and for mydumper, no invisible
    /// column (it reads `SELECT *`, which leaves them out) and no name
    /// with a dot (its file names `db.table.sql` then say another
    /// database, and myloader restores into it). A backup must never exit
    /// 0 with less than was there.
    ///
    /// What `settings.exclude` names is left out of every check and of
    /// the catalog.
    pub async fn check_mysql_dumpable(
        &self,
        databases: &MysqlDatabases,
        settings: &DumpSettings,
    ) -> Result<Catalog, DumpError> {
        let mode = settings.mode;
        let [[role]] = <[[String; 1]; 1]>::try_from(
            self.mysql_rows("SELECT CURRENT_USER()").await?,
        )
        .map_err(|rows| DumpError::UnexpectedOutput {
            program: "mysql",
            output: format!("{} rows for CURRENT_USER()", rows.len()),
        })?;
        let grants = self.mysql_rows::<1>("SHOW GRANTS").await?;
        let lacking =
            Grants::parse(grants.iter().map(|[line]| line.as_str())).lacking(&databases.0);
        if !lacking.is_empty() {
            return Err(DumpError::MysqlPrivileges {
                role,
                lacking: lacking
                    .iter()
                    .map(|(database, missing)| match database {
                        Some(database) => format!("{database}: {}", missing.join(", ")),
                        None => format!("routines: {}", missing.join(", ")),
                    })
                    .collect(),
            });
        }
        let schemas = databases.sql_list();
        // every table-like object: base tables, views, MariaDB's
        // system-versioned tables (sequences are left aside: what
        // mydumper 0.10 writes for one is untried here)
        let listed: Vec<[String; 3]> = self
            .mysql_rows(&format!(
                "SELECT table_schema, table_name, table_type FROM information_schema.tables \
                 WHERE table_type <> 'SEQUENCE' AND table_schema IN ({schemas}) ORDER BY 1, 2"
            ))
            .await?;
        check_exclude(settings, &listed)?;
        let kept = |database: &str, name: &str| !settings.excludes(database, name);
        let tables: Vec<[String; 3]> = listed
            .into_iter()
            .filter(|[database, name, _]| kept(database, name))
            .collect();
        // A view the server cannot read is listed with the error in place
        // of its comment ('VIEW'), once the view is opened: asking for
        // table_rows (always NULL for a view) makes MariaDB open it, and
        // without it 10.11 answers 'VIEW' for every view, broken or not.
        let broken: Vec<String> = self
            .mysql_rows::<3>(&format!(
                "SELECT table_schema, table_name, table_comment \
                 FROM information_schema.tables WHERE table_type = 'VIEW' \
                 AND table_comment <> 'VIEW' AND table_rows IS NULL \
                 AND table_schema IN ({schemas}) ORDER BY 1, 2"
            ))
            .await?
            .into_iter()
            .filter(|[database, name, _]| kept(database, name))
            .map(|[database, name, error]| format!("{database}.{name}: {error}"))
            .collect();
        if !broken.is_empty() {
            return Err(DumpError::BrokenViews(broken));
        }
        if mode != DumpMode::Mydumper {
            return Ok(Catalog::default());
        }
        let invisible: Vec<String> = self
            .mysql_rows::<3>(&format!(
                "SELECT table_schema, table_name, column_name \
                 FROM information_schema.columns WHERE extra LIKE '%INVISIBLE%' \
                 AND table_schema IN ({schemas}) ORDER BY 1, 2, 3"
            ))
            .await?
            .into_iter()
            .filter(|[database, name, _]| kept(database, name))
            .map(|[database, name, column]| format!("{database}.{name}.{column}"))
            .collect();
        if !invisible.is_empty() {
            return Err(DumpError::InvisibleColumns(invisible));
        }
        let dotted: Vec<String> = databases
            .0
            .iter()
            .filter(|database| database.contains('.'))
            .map(|database| format!("database {database}"))
            .chain(
                tables
                    .iter()
                    .filter(|[_, name, _]| name.contains('.'))
                    .map(|[database, name, _]| format!("{database}: {name}")),
            )
            .collect();
        if !dotted.is_empty() {
            return Err(DumpError::DottedNames(dotted));
        }
        let triggers: Vec<[String; 2]> = self
            .mysql_rows::<2>(&format!(
                "SELECT DISTINCT event_object_schema, event_object_table \
                 FROM information_schema.triggers WHERE event_object_schema IN ({schemas})"
            ))
            .await?
            .into_iter()
            .filter(|[database, name]| kept(database, name))
            .collect();
        let routines_or_events: Vec<String> = self
            .mysql_rows::<1>(&format!(
                "SELECT routine_schema FROM information_schema.routines \
                 WHERE routine_schema IN ({schemas}) UNION \
                 SELECT event_schema FROM information_schema.events WHERE event_schema IN ({schemas})"
            ))
            .await?
            .into_iter()
            .map(|[database]| database)
            .collect();
        Ok(Catalog::of(
            databases,
            &tables,
            &triggers,
            &routines_or_events,
        ))
    }

    /// Checks, before dumping, that the role can read everything pg_dump
    /// will read (every table, view, sequence and schema outside the
    /// system ones, and with `large_objects` every large object), so a
    /// role missing a grant fails at once with the whole list and the
    /// GRANT that fixes it, not halfway through the dump on the first.
    /// A table under row-level security counts as unreadable unless the
    /// role bypasses it (superuser, `BYPASSRLS`, or the table's owner
    /// where the security is not forced): pg_dump, which turns
    /// `row_security` off, fails on it ("query would be affected by
    /// row-level security policy"), and a plain `SELECT` would see only
    /// the rows the policies let through. `pg_read_all_data` does not
    /// bypass it (PostgreSQL's manual, "Predefined Roles").
    pub async fn check_postgres_readable(&self, large_objects: bool) -> Result<(), DumpError> {
        let mut sql = String::from(
            "SELECT format('%I.%I', n.nspname, c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
             AND NOT (has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'SELECT')) \
             UNION ALL SELECT format('%I.%I (row-level security)', n.nspname, c.relname) \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND c.relrowsecurity \
             AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) \
             AND (c.relforcerowsecurity OR NOT pg_has_role(c.relowner, 'USAGE'))",
        );
        if large_objects {
            // readable: by a superuser, with lo_compat_privileges, by a
            // member of the owner, or through a SELECT grant
            sql.push_str(
                " UNION ALL SELECT 'large object ' || m.oid FROM pg_largeobject_metadata m \
                 WHERE NOT (current_setting('lo_compat_privileges')::bool \
                 OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) \
                 OR pg_has_role(m.lomowner, 'MEMBER') \
                 OR EXISTS (SELECT 1 FROM aclexplode(m.lomacl) a WHERE a.privilege_type = 'SELECT' \
                 AND (a.grantee = 0 OR pg_has_role(a.grantee, 'MEMBER'))))",
            );
        }
        sql.push_str(" ORDER BY 1");
        let output = self.psql_query(&sql).await?;
        let unreadable: Vec<String> = output
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        if unreadable.is_empty() {
            Ok(())
        } else {
            Err(DumpError::Unreadable {
                role: self.target.user.clone(),
                unreadable,
            })
        }
    }

    /// Runs one query with the `mysql` client, returning its tab-separated
    /// rows without headers.
    async fn mysql_query(&self, sql: &str) -> Result<String, DumpError> {
        let mut command = self.mysql_client("mysql");
        command
            .arg(format!(
                "--connect-timeout={}",
                self.target.connect_timeout_secs
            ))
            .args(["--batch", "--skip-column-names", "--execute"])
            .arg(sql);
        run_to_completion("mysql", command).await
    }

    /// Runs one query whose rows have `N` fields, each unescaped (the
    /// batch format escapes tabs, line breaks and backslashes in values,
    /// which names may hold); a row of another shape is an error.
    async fn mysql_rows<const N: usize>(&self, sql: &str) -> Result<Vec<[String; N]>, DumpError> {
        let output = self.mysql_query(sql).await?;
        rows(&output).ok_or(DumpError::UnexpectedOutput {
            program: "mysql",
            output,
        })
    }

    /// Runs one PostgreSQL query, returning its rows one per line, the
    /// fields separated by tabs, unaligned and without headers.
    async fn psql_query(&self, sql: &str) -> Result<String, DumpError> {
        let mut command = self.postgres_client("psql");
        command
            .args(["--no-psqlrc", "--tuples-only", "--no-align"])
            .args(["--field-separator=\t", "--set=ON_ERROR_STOP=1", "--command"])
            .arg(sql);
        run_to_completion("psql", command).await
    }

    /// A MySQL client program connected to the target over TCP; the
    /// option file carrying the password must come first on its argv.
    fn mysql_client(&self, program: &str) -> Command {
        let target = &self.target;
        let mut defaults = std::ffi::OsString::from("--defaults-extra-file=");
        defaults.push(&self.password_file);
        let mut command = Command::new(program);
        command
            .env_remove("MYSQL_PWD")
            .env_remove("MYSQL_HOST")
            .arg(defaults)
            .arg(format!("--host={}", target.host))
            .arg(format!("--port={}", target.port))
            .arg(format!("--user={}", target.user))
            .arg("--protocol=TCP");
        command
    }

    /// The dump tool of `settings.mode` as it is here, and the flags it
    /// needs for this server; fails, before anything is dumped, when it
    /// cannot dump this server whole ([`compat::dump_flags`]).
    pub async fn dump_tool(&self, settings: &DumpSettings) -> Result<DumpTool, DumpError> {
        let tool = Tool::of(settings.mode);
        let program = tool.program();
        let mut command = Command::new(program);
        command.arg("--version");
        let version_line = run_to_completion(program, command).await?.trim().to_owned();
        let client = Client::parse(tool, &version_line).ok_or(DumpError::UnexpectedOutput {
            program,
            output: version_line.clone(),
        })?;
        let server = self.server_identity().await?;
        let flags = compat::dump_flags(&client, &server, settings.no_locks)?;
        Ok(DumpTool {
            version_line,
            flags,
        })
    }

    /// The server's family, version and hosting.
    async fn server_identity(&self) -> Result<Server, DumpError> {
        match self.engine {
            Engine::Postgres => {
                let output = self.psql_query("SHOW server_version").await?;
                let version =
                    compat::Version::parse(&output).ok_or(DumpError::UnexpectedOutput {
                        program: "psql",
                        output,
                    })?;
                Ok(Server {
                    family: Family::PostgreSql,
                    version,
                    hosting: Hosting::SelfManaged,
                    gtid_mode: false,
                })
            }
            Engine::Mysql => {
                let variables: Vec<[String; 2]> = self
                    .mysql_rows(
                        "SHOW GLOBAL VARIABLES WHERE Variable_name IN \
                         ('version', 'basedir', 'aurora_version', 'gtid_mode')",
                    )
                    .await?;
                Server::mysql(
                    variables
                        .iter()
                        .map(|[name, value]| (name.as_str(), value.as_str())),
                )
                .ok_or_else(|| DumpError::UnexpectedOutput {
                    program: "mysql",
                    output: format!("{variables:?}"),
                })
            }
        }
    }

    /// A PostgreSQL client command connected to the target. Every value
    /// is passed as `--option=value`, so none can be read as an option;
    /// the database name travels as a quoted conninfo string, so a name
    /// containing `=` cannot be read as one.
    fn postgres_client(&self, program: &str) -> Command {
        let target = &self.target;
        let mut command = Command::new(program);
        command
            .env("PGPASSFILE", &self.password_file)
            .env(
                "PGCONNECT_TIMEOUT",
                self.target.connect_timeout_secs.to_string(),
            )
            .env("PGAPPNAME", "backup-cloud")
            .env_remove("PGPASSWORD")
            .env_remove("PGSERVICE")
            .arg(format!("--host={}", target.host))
            .arg(format!("--port={}", target.port))
            .arg(format!("--username={}", target.user))
            .arg(format!("--dbname={}", conninfo_dbname(&target.name)))
            .arg("--no-password");
        command
    }
}

/// The dump tool as found on this machine, ready for this server.
#[derive(Debug)]
pub struct DumpTool {
    /// Its own `--version` line, e.g. `pg_dump (PostgreSQL) 15.8`.
    pub version_line: String,
    /// What it needs beyond the mode's own flags for this server.
    pub flags: Vec<&'static str>,
}

/// A MySQL string literal: quotes and backslashes escaped.
fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

/// mydumper's `--regex` (matched against `database.table`) selecting
/// exactly `databases` but the tables `settings` exclude; every character but
/// ASCII letters and digits is escaped, so a name is never read as a
/// pattern, and the argument is ASCII (non-ASCII bytes as `\xHH`).
fn mydumper_regex(databases: &[String], settings: &DumpSettings) -> String {
    let databases: Vec<String> = databases.iter().map(|name| regex_literal(name)).collect();
    let excluded: Vec<String> = settings
        .excluded_tables()
        .map(|(database, table)| format!("{}\\.{}", regex_literal(database), regex_literal(table)))
        .collect();
    let lookahead = if excluded.is_empty() {
        String::new()
    } else {
        format!("(?!({})$)", excluded.join("|"))
    };
    format!("^{lookahead}({})\\.", databases.join("|"))
}

/// `name` as a PCRE pattern matching only itself, in ASCII.
fn regex_literal(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b if b.is_ascii_alphanumeric() => char::from(b).to_string(),
            b if b.is_ascii() => format!("\\{}", char::from(b)),
            // mydumper 0.10 parses its options in the C locale and
            // refuses non-ASCII bytes in them; PCRE matches a byte
            // written as an escape just as well
            b => format!("\\x{b:02x}"),
        })
        .collect()
}

/// Checks that each `(database, table)` that `settings` exclude is one
/// object the server `listed`, told apart from every other as mysqldump
/// tells them (it matches `--ignore-table=db.table` without regard to
/// case, and `a.b` + `c` reads as `a` + `b.c`).
fn check_exclude(settings: &DumpSettings, listed: &[[String; 3]]) -> Result<(), DumpError> {
    let mut problems = Vec::new();
    for (database, table) in settings.excluded_tables() {
        if !listed.iter().any(|[d, t, _]| d == database && t == table) {
            problems.push(format!("{database}.{table} names no table or view"));
            continue;
        }
        let spelled = format!("{database}.{table}").to_lowercase();
        if let Some([d, t, _]) = listed.iter().find(|[d, t, _]| {
            (d != database || t != table) && format!("{d}.{t}").to_lowercase() == spelled
        }) {
            problems.push(format!(
                "{database}.{table} cannot be told apart from {d}.{t} by mysqldump"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(DumpError::BadExclude(problems))
    }
}

/// `dbname='…'` with libpq's conninfo quoting.
fn conninfo_dbname(name: &str) -> String {
    let escaped = name.replace('\\', "\\\\").replace('\'', "\\'");
    format!("dbname='{escaped}'")
}

/// `version \t size`, then for PostgreSQL `\t TimeZone \t bytea_output`.
fn parse_psql_facts(output: &str) -> Option<ServerFacts> {
    let mut fields = output.trim().split('\t').map(str::trim);
    let (version, size) = (fields.next()?, fields.next()?);
    let copy_settings = match (fields.next(), fields.next(), fields.next()) {
        (None, _, _) => BTreeMap::new(),
        (Some(time_zone), Some(bytea_output), None) => BTreeMap::from([
            ("TimeZone".to_owned(), time_zone.to_owned()),
            ("bytea_output".to_owned(), bytea_output.to_owned()),
        ]),
        _ => return None,
    };
    Some(ServerFacts {
        version: version.to_owned(),
        database_bytes: size.parse().ok()?,
        copy_settings,
    })
}

/// Runs a short client command, returning its stdout or a [`DumpError`]
/// carrying the tail of its stderr.
async fn run_to_completion(program: &'static str, command: Command) -> Result<String, DumpError> {
    let mut command = tokio::process::Command::from(command);
    command.stdin(Stdio::null()).kill_on_drop(true);
    let output = command
        .output()
        .await
        .map_err(|source| DumpError::Spawn { program, source })?;
    if !output.status.success() {
        return Err(DumpError::Failed {
            program,
            status: output.status.to_string(),
            stderr: summarise_stderr(&output.stderr),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The stderr tail as one line: the last error is what an operator needs.
fn summarise_stderr(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_TAIL_BYTES);
    let text = String::from_utf8_lossy(&stderr[start..]);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        "no error output".to_owned()
    } else {
        lines.join("; ")
    }
}

/// A dump tool's complaint, with what fixes it when the complaint is one
/// whose cause is not in its words.
fn with_remedy(complaint: String) -> String {
    if complaint.contains("permission denied for large object") {
        format!(
            "{complaint}; the backup role cannot read the database's large objects \
             (pg_read_all_data does not cover them): grant it SELECT on them \
             (GRANT SELECT ON LARGE OBJECT <oid> TO <role>), make it a member of their \
             owner, or set large_objects = false for this job to leave them out"
        )
    } else {
        complaint
    }
}

/// A dump command ready to start.
#[derive(Debug)]
pub struct DumpCommand {
    program: &'static str,
    command: Command,
    output: DumpOutput,
}

impl DumpCommand {
    /// Starts the dump with stderr piped and, for a stream, stdout piped;
    /// stderr is drained on a blocking thread so the tool can never stall
    /// on it.
    pub fn spawn(self) -> Result<DumpProcess, DumpError> {
        let program = self.program;
        let spawn_error = |source| DumpError::Spawn { program, source };
        // A tool writing files says what went wrong on stdout as well as
        // stderr (mydumper prints its option-parsing errors on stdout):
        // both go into one pipe whose tail is kept.
        let (stdout, stderr, said) = match self.output {
            DumpOutput::Stream => (Stdio::piped(), Stdio::piped(), None),
            DumpOutput::Directory(_) => {
                let (reader, writer) = std::io::pipe().map_err(spawn_error)?;
                let also = writer.try_clone().map_err(spawn_error)?;
                (Stdio::from(writer), Stdio::from(also), Some(reader))
            }
        };
        let mut command = self.command;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(spawn_error)?;
        // our copies of the pipe's writing end go with the command
        drop(command);
        let stdout = child.stdout.take();
        let said: Option<Box<dyn Read + Send>> = match said {
            Some(reader) => Some(Box::new(reader)),
            None => child
                .stderr
                .take()
                .map(|stderr| Box::new(stderr) as Box<dyn Read + Send>),
        };
        let stderr_tail = said.map(|said| tokio::task::spawn_blocking(move || read_tail(said)));
        Ok(DumpProcess {
            program,
            child: Some(child),
            reaped: false,
            stdout,
            stderr_tail,
        })
    }
}

/// Reads `stream` to its end, keeping only the last [`STDERR_TAIL_BYTES`].
fn read_tail(mut stream: impl Read) -> Vec<u8> {
    let mut tail = VecDeque::with_capacity(2 * STDERR_TAIL_BYTES);
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                tail.extend(&buffer[..n]);
                let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                tail.drain(..excess);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    tail.into()
}

/// A running dump. Dropping it kills and reaps the tool, so no error path
/// (or panic) leaves a dump running.
pub struct DumpProcess {
    program: &'static str,
    /// `None` only once dropped.
    child: Option<Child>,
    reaped: bool,
    stdout: Option<ChildStdout>,
    stderr_tail: Option<tokio::task::JoinHandle<Vec<u8>>>,
}

impl DumpProcess {
    pub fn program(&self) -> &'static str {
        self.program
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child.as_mut().expect("the child is held until drop")
    }

    /// The dump stream; `None` once taken.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.stdout.take()
    }

    /// Stops the tool at once (SIGKILL); harmless if it already ended.
    pub fn kill(&mut self) {
        if !self.reaped {
            // An error means it has already exited, which is what we want.
            let _ = self.child_mut().kill();
        }
    }

    /// Waits for the tool to exit and fails unless it exited with status 0.
    /// Call once its stdout has been read to the end (or after [`kill`]).
    ///
    /// [`kill`]: DumpProcess::kill
    pub async fn wait_success(&mut self) -> Result<(), DumpError> {
        let program = self.program;
        let status = loop {
            match self.child_mut().try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(source) => return Err(DumpError::Wait { program, source }),
            }
        };
        self.reaped = true;
        if status.success() {
            return Ok(());
        }
        let stderr = match self.stderr_tail.take() {
            Some(handle) => handle.await.unwrap_or_default(),
            None => Vec::new(),
        };
        Err(DumpError::Failed {
            program,
            status: status.to_string(),
            stderr: with_remedy(summarise_stderr(&stderr)),
        })
    }
}

impl Drop for DumpProcess {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if !self.reaped {
            let _ = child.kill();
            if !matches!(child.try_wait(), Ok(Some(_))) {
                // Reaped on a thread of its own: waiting here would hold
                // up the runtime (and the heartbeats beside the backup)
                // for as long as the killed tool takes to go, unbounded
                // while it is in uninterruptible I/O.
                std::thread::spawn(move || child.wait());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn every_object_in_the_catalog_needs_its_file_in_the_dump() {
        let catalog = Catalog::of(
            &MysqlDatabases(vec!["app".into()]),
            &[
                ["app".into(), "acct".into(), "BASE TABLE".into()],
                ["app".into(), "v_ok".into(), "VIEW".into()],
            ],
            &[["app".into(), "acct".into()]],
            &["app".into()],
        );
        let whole = [
            "app-schema-create.sql",
            "app.acct-schema.sql",
            "app.acct.00000.sql",
            "app.v_ok-schema-view.sql",
            "app.acct-schema-triggers.sql",
            "app-schema-post.sql",
            "metadata",
        ];
        assert!(catalog.account_for(whole).is_ok());
        for (left_out, named) in [
            ("app.v_ok-schema-view.sql", "view app.v_ok"),
            ("app.acct-schema.sql", "table app.acct"),
            ("app.acct-schema-triggers.sql", "the triggers of app.acct"),
            ("app-schema-post.sql", "the routines and events of app"),
            ("app-schema-create.sql", "database app"),
        ] {
            let err = catalog
                .account_for(whole.iter().copied().filter(|f| *f != left_out))
                .unwrap_err();
            assert!(err.to_string().contains(named), "{err}");
        }
    }

    fn target() -> DatabaseTarget {
        DatabaseTarget {
            host: "db.internal".into(),
            port: 5432,
            user: "backup".into(),
            name: "orders".into(),
            connect_timeout_secs: 30,
        }
    }

    #[test]
    fn pg_dump_gets_the_connection_as_options_and_no_password() {
        let connection = Connection::new(Engine::Postgres, &target(), Path::new("/tmp/x/pgpass"));
        let dump = connection.dump_command(
            &DumpSettings::default(),
            1,
            &MysqlDatabases(Vec::new()),
            &[],
            DumpOutput::Stream,
        );
        assert_eq!(dump.command.get_program(), "pg_dump");
        let args: Vec<_> = dump
            .command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "--host=db.internal",
                "--port=5432",
                "--username=backup",
                "--dbname=dbname='orders'",
                "--no-password",
                "--format=custom",
                "--compress=0",
            ]
        );
        let passfile = dump
            .command
            .get_envs()
            .find(|(k, _)| *k == "PGPASSFILE")
            .and_then(|(_, v)| v);
        assert_eq!(passfile, Some(std::ffi::OsStr::new("/tmp/x/pgpass")));
    }

    fn args_of(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn pg_dump_directory_runs_jobs_uncompressed_into_the_directory() {
        let connection = Connection::new(Engine::Postgres, &target(), Path::new("/tmp/x/pgpass"));
        let settings = DumpSettings {
            mode: DumpMode::PostgresDirectory,
            ..DumpSettings::default()
        };
        let dump = connection.dump_command(
            &settings,
            3,
            &MysqlDatabases(Vec::new()),
            &[],
            DumpOutput::Directory("/scratch/dump".into()),
        );
        let args = args_of(&dump.command);
        for expected in [
            "--format=directory",
            "--jobs=3",
            "--compress=0",
            "--no-sync",
        ] {
            assert!(args.contains(&expected.to_owned()), "{args:?}");
        }
        assert!(args.ends_with(&["--file".to_owned(), "/scratch/dump".to_owned()]));
    }

    #[test]
    fn excluded_tables_are_left_out_by_both_tools_and_every_check() {
        let connection = Connection::new(Engine::Mysql, &target(), Path::new("/tmp/x/my.cnf"));
        let exclude = BTreeMap::from([(
            "app.eu".to_owned(),
            vec!["v_broken".to_owned(), "it's".to_owned()],
        )]);
        let databases = MysqlDatabases(vec!["app.eu".into(), "crm".into()]);
        let args = |mode| {
            let settings = DumpSettings {
                mode,
                exclude: exclude.clone(),
                ..DumpSettings::default()
            };
            args_of(
                &connection
                    .dump_command(&settings, 1, &databases, &[], DumpOutput::Stream)
                    .command,
            )
        };
        let mysqldump = args(DumpMode::Mysqldump);
        let ignored = mysqldump
            .iter()
            .position(|a| a == "--ignore-table=app.eu.v_broken")
            .expect("ignored");
        assert!(mysqldump.contains(&"--ignore-table=app.eu.it's".to_owned()));
        let end_of_options = mysqldump.iter().position(|a| a == "--").unwrap();
        assert!(ignored < end_of_options, "{mysqldump:?}");
        let mydumper = args(DumpMode::Mydumper);
        assert!(
            mydumper.contains(
                &"--regex=^(?!(app\\.eu\\.v\\_broken|app\\.eu\\.it\\'s)$)(app\\.eu|crm)\\."
                    .to_owned()
            ),
            "{mydumper:?}"
        );
        let listed = |names: &[(&str, &str)]| -> Vec<[String; 3]> {
            names
                .iter()
                .map(|(d, t)| [d.to_string(), t.to_string(), "BASE TABLE".to_owned()])
                .collect()
        };
        let both = [("app.eu", "v_broken"), ("app.eu", "it's"), ("crm", "x")];
        let excluding = DumpSettings {
            exclude,
            ..DumpSettings::default()
        };
        assert!(check_exclude(&excluding, &listed(&both)).is_ok());
        let err = check_exclude(
            &excluding,
            &listed(&both[..2])
                .into_iter()
                .chain(listed(&[("app.eu", "V_Broken"), ("app", "eu.it's")]))
                .collect::<Vec<_>>(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("app.eu.v_broken cannot be told apart from app.eu.V_Broken"),
            "{err}"
        );
        assert!(
            err.contains("app.eu.it's cannot be told apart from app.eu.it's"),
            "{err}"
        );
        let err = check_exclude(&excluding, &listed(&both[1..]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("app.eu.v_broken names no table or view"),
            "{err}"
        );
    }

    #[test]
    fn mysql_tools_read_the_password_from_the_option_file_only() {
        let mut target = target();
        target.port = 3306;
        let connection = Connection::new(Engine::Mysql, &target, Path::new("/tmp/x/my.cnf"));
        let databases = MysqlDatabases(vec!["shop".into(), "crm-2".into()]);
        let settings = DumpSettings {
            mode: DumpMode::Mysqldump,
            ..DumpSettings::default()
        };
        let dump = connection.dump_command(
            &settings,
            1,
            &databases,
            &["--set-gtid-purged=OFF"],
            DumpOutput::Stream,
        );
        let args = args_of(&dump.command);
        assert_eq!(args[0], "--defaults-extra-file=/tmp/x/my.cnf");
        assert!(args.contains(&"--set-gtid-purged=OFF".to_owned()));
        assert!(args.contains(&"--single-transaction".to_owned()));
        assert!(args.contains(&MYSQL_MAX_PACKET.to_owned()), "{args:?}");
        assert!(
            args.ends_with(&["--".into(), "shop".into(), "crm-2".into()]),
            "{args:?}"
        );
        assert!(args
            .iter()
            .all(|a| !a.starts_with("--password") && a != "-p"));

        let settings = DumpSettings {
            mode: DumpMode::Mydumper,
            kill_long_queries: true,
            ..DumpSettings::default()
        };
        let dump = connection.dump_command(
            &settings,
            4,
            &databases,
            &["--trx-consistency-only"],
            DumpOutput::Directory("/scratch/d".into()),
        );
        assert_eq!(dump.command.get_program(), "mydumper");
        let args = args_of(&dump.command);
        for expected in [
            "--defaults-file",
            "/tmp/x/my.cnf",
            "--threads=4",
            "--trx-consistency-only",
            "--long-query-guard=60",
            "--kill-long-queries",
            "--regex=^(shop|crm\\-2)\\.",
            "--outputdir",
        ] {
            assert!(
                args.contains(&expected.to_owned()),
                "{expected} in {args:?}"
            );
        }
        assert_eq!(
            mydumper_regex(&["shop-ünï".into()], &DumpSettings::default()),
            "^(shop\\-\\xc3\\xbcn\\xc3\\xaf)\\.",
            "non-ASCII bytes escaped: mydumper refuses them in its options"
        );
    }

    #[test]
    fn mysql_option_file_escapes_quotes_and_backslashes() {
        assert_eq!(
            mysql_option_file(r#"a"b\c"#).unwrap(),
            "[client]\npassword=\"a\\\"b\\\\c\"\n"
        );
        assert!(mysql_option_file("a\rb").is_err());
        assert_eq!(sql_string(r"it's\"), r"'it''s\\'");
    }

    #[test]
    fn database_names_are_quoted_as_conninfo() {
        assert_eq!(conninfo_dbname("a=b c"), "dbname='a=b c'");
        assert_eq!(conninfo_dbname(r"it's\x"), r"dbname='it\'s\\x'");
    }

    #[test]
    fn pgpass_escapes_separators_and_refuses_line_breaks() {
        assert_eq!(pgpass_line(r"a:b\c").unwrap(), "*:*:*:*:a\\:b\\\\c\n");
        assert!(matches!(
            pgpass_line("a\nb"),
            Err(DumpError::PasswordNotRepresentable)
        ));
    }

    #[test]
    fn password_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        let password = Secret::from("s3cret");
        write_password_file(Engine::Postgres, &path, &password).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!format!("{password:?}").contains("s3cret"));
    }

    #[test]
    fn psql_facts_parse_and_garbage_is_refused() {
        let facts = parse_psql_facts("15.8 (Debian 15.8-0+deb12u1)\t7717379\n").unwrap();
        assert_eq!(facts.version, "15.8 (Debian 15.8-0+deb12u1)");
        assert_eq!(facts.database_bytes, 7_717_379);
        assert!(facts.copy_settings.is_empty());
        let postgres = parse_psql_facts("15.8\t7717379\tEurope/Berlin\thex\n").unwrap();
        assert_eq!(postgres.copy_settings["TimeZone"], "Europe/Berlin");
        assert_eq!(postgres.copy_settings["bytea_output"], "hex");
        assert_eq!(parse_psql_facts("15.8\t1\tUTC"), None);
        assert_eq!(parse_psql_facts("nonsense"), None);
    }

    #[test]
    fn stderr_keeps_the_last_lines_on_one_line() {
        let mut noise = "x".repeat(10_000);
        noise.push_str("\npg_dump: error: connection failed\n\n");
        let summary = summarise_stderr(noise.as_bytes());
        assert!(summary.ends_with("; pg_dump: error: connection failed"));
        assert!(summary.len() <= STDERR_TAIL_BYTES);
        assert_eq!(read_tail(noise.as_bytes()).len(), STDERR_TAIL_BYTES);
    }

    #[tokio::test]
    async fn a_failing_tool_reports_its_status_and_stderr() {
        let mut command = Command::new("sh");
        command.args(["-c", "echo 'fatal: no such role' >&2; exit 3"]);
        let mut process = DumpCommand {
            program: "sh",
            command,
            output: DumpOutput::Stream,
        }
        .spawn()
        .unwrap();
        let mut stdout = process.take_stdout().unwrap();
        let mut sink = Vec::new();
        stdout.read_to_end(&mut sink).unwrap();
        let err = process.wait_success().await.unwrap_err().to_string();
        assert!(err.contains("exit status: 3"), "{err}");
        assert!(err.contains("fatal: no such role"), "{err}");
    }
}
