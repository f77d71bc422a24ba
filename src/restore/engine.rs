//! The databases a backup restores into, one arm per engine: how a target
//! URL is read, which stock tool restores a decrypted stream or a
//! decrypted dump directory, and how a scratch database for a drill is
//! made and dropped.
//!
//! Passwords never reach a process's argv: MySQL's go to `mysql` and
//! `myloader` in a 0600 option file, PostgreSQL's to `pg_restore` and
//! `psql` in a 0600 password file (`PGPASSFILE`), each in a private
//! temporary directory that lives exactly as long as the tool.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command};

use super::RestoreError;
use crate::client_limits::MYSQL_MAX_PACKET;
use crate::credentials;
use crate::schema::{Engine, Manifest};
use crate::secret::Secret;

/// Where to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A libpq connection URL (`postgres://` or `postgresql://`).
    Postgres { url: Secret },
    /// `mysql://USER:PASSWORD@HOST:PORT/[DATABASE][?socket=PATH]`.
    Mysql(MysqlTarget),
}

/// A MySQL/MariaDB server (and optionally one database on it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MysqlTarget {
    pub user: Option<String>,
    /// From the URL, or else `MYSQL_PWD`; `None`: the client's own option
    /// files decide.
    password: Option<Secret>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub socket: Option<String>,
    pub database: Option<String>,
    /// `(dumped, scratch)`: databases a mysqldump stream is redirected
    /// into (a drill's scratch databases); see [`RenameDatabases`].
    pub rename: Vec<(String, String)>,
}

/// How a dump format reaches its restore tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One object, streamed into the tool's stdin.
    Stream,
    /// A directory of files the tool reads (decrypted into scratch space).
    Directory,
}

/// A running restore tool; holds the option file it reads until it ends.
pub struct RestoreTool {
    pub child: Child,
    _options: Option<OptionFile>,
    /// Where it says what went wrong, when not its stderr alone.
    said: Option<std::io::PipeReader>,
}

/// A 0600 MySQL option file in a private 0700 directory, removed on drop.
struct OptionFile {
    dir: tempfile::TempDir,
    name: &'static str,
}

impl OptionFile {
    /// A MySQL option file giving `password` to the client and myloader.
    fn write(password: &str) -> Result<OptionFile, RestoreError> {
        let contents =
            credentials::mysql_options(password, &["client", "myloader"]).map_err(|_| {
                RestoreError::Usage(
                    "a MySQL password with a line break cannot go into an option file",
                )
            })?;
        OptionFile::private("my.cnf", &contents)
    }

    /// A libpq password file matching any server, for `PGPASSFILE`.
    fn pgpass(password: &str) -> Result<OptionFile, RestoreError> {
        let contents = credentials::pgpass(password).map_err(|_| {
            RestoreError::Usage(
                "a PostgreSQL password with a line break cannot go into a password file",
            )
        })?;
        OptionFile::private("pgpass", &contents)
    }

    /// Writes `contents` as a 0600 file `name` in a fresh 0700 directory.
    fn private(name: &'static str, contents: &str) -> Result<OptionFile, RestoreError> {
        use std::os::unix::fs::PermissionsExt;
        let fail = |e: std::io::Error| {
            RestoreError::Failed(format!("cannot write the client's password file: {e}"))
        };
        let dir = tempfile::Builder::new()
            .prefix("bc-client-")
            .tempdir()
            .map_err(fail)?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(fail)?;
        credentials::write_private(&dir.path().join(name), contents.as_bytes()).map_err(fail)?;
        Ok(OptionFile { dir, name })
    }

    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join(self.name)
    }
}

/// A PostgreSQL client command for `url` whose password, if the URL has
/// one, travels in a private password file instead of the command line.
fn postgres_command(
    program: &str,
    url: &str,
) -> Result<(Command, Option<OptionFile>), RestoreError> {
    let (url, password) = split_password(url)?;
    let mut command = Command::new(program);
    let passfile = match password {
        Some(password) => {
            let file = OptionFile::pgpass(&password)?;
            command
                .env("PGPASSFILE", file.path())
                .env_remove("PGPASSWORD");
            Some(file)
        }
        None => None,
    };
    command.arg(format!("--dbname={url}"));
    Ok((command, passfile))
}

/// `pg_restore` into `url`: owners and privileges are the target's, and
/// the first error stops it.
fn pg_restore(url: &str) -> Result<(Command, Option<OptionFile>), RestoreError> {
    let (mut command, passfile) = postgres_command("pg_restore", url)?;
    command.args(["--no-owner", "--no-privileges", "--exit-on-error"]);
    Ok((command, passfile))
}

/// Splits the password out of a `postgres://user:password@host/…` URL.
fn split_password(url: &str) -> Result<(String, Option<String>), RestoreError> {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return Ok((url.to_owned(), None));
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return Ok((url.to_owned(), None));
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return Ok((url.to_owned(), None));
    };
    let stripped = format!(
        "{}{user}@{host}{}",
        &url[..scheme_end],
        &url[authority_end..]
    );
    Ok((stripped, Some(percent_decode(password)?)))
}

/// Redirects the databases a mysqldump stream names into others: rewrites
/// `` `dumped` `` in the lines that start with `CREATE DATABASE`,
/// `ALTER DATABASE` or `USE` (the only places mysqldump names the database
/// of what follows), and passes every other byte through untouched, so
/// lines of any length stream.
pub struct RenameDatabases<W: Write> {
    inner: W,
    /// `` (`dumped`, `scratch`) ``, quoted.
    names: Vec<(Vec<u8>, Vec<u8>)>,
    /// The start of the current line, while it may still be one of those.
    head: Vec<u8>,
    at_line_start: bool,
}

/// Longest line start inspected: the statement and a backquoted name.
const RENAME_HEAD: usize = 512;
const RENAMED_STATEMENTS: [&[u8]; 3] = [b"CREATE DATABASE ", b"ALTER DATABASE ", b"USE `"];

impl<W: Write> RenameDatabases<W> {
    pub fn new(inner: W, rename: &[(String, String)]) -> Self {
        let quote = |name: &str| format!("`{}`", name.replace('`', "``")).into_bytes();
        RenameDatabases {
            inner,
            names: rename.iter().map(|(a, b)| (quote(a), quote(b))).collect(),
            head: Vec::new(),
            at_line_start: true,
        }
    }

    /// Writes the line start collected so far, renamed if it is one of
    /// the statements.
    fn emit_head(&mut self) -> std::io::Result<()> {
        let head = std::mem::take(&mut self.head);
        if RENAMED_STATEMENTS.iter().any(|s| head.starts_with(s)) {
            for (from, to) in &self.names {
                if let Some(at) = head.windows(from.len()).position(|w| w == &from[..]) {
                    self.inner.write_all(&head[..at])?;
                    self.inner.write_all(to)?;
                    return self.inner.write_all(&head[at + from.len()..]);
                }
            }
        }
        self.inner.write_all(&head)
    }
}

impl<W: Write> Write for RenameDatabases<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            let newline = rest.iter().position(|&b| b == b'\n');
            let line_end = newline.map_or(rest.len(), |i| i + 1);
            if self.at_line_start {
                let take = line_end.min(RENAME_HEAD - self.head.len());
                self.head.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                let ended = self.head.last() == Some(&b'\n');
                if ended || self.head.len() >= RENAME_HEAD {
                    self.emit_head()?;
                    self.at_line_start = ended;
                }
            } else {
                self.inner.write_all(&rest[..line_end])?;
                rest = &rest[line_end..];
                self.at_line_start = newline.is_some();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.emit_head()?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RenameDatabases<W> {
    fn drop(&mut self) {
        // a last line without a newline
        let _ = self.emit_head();
    }
}

/// `%XX` escapes of a URL's user and password.
fn percent_decode(text: &str) -> Result<String, RestoreError> {
    let bad = || RestoreError::Usage("a bad %-escape in the database URL");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// A folder beside mydumper's `dir` holding hard links to the files of
/// `database` alone (`DATABASE-schema-create.sql`, `DATABASE.…`) and the
/// `metadata` myloader looks for; removed on drop.
fn one_database(dir: &Path, database: &str) -> Result<tempfile::TempDir, RestoreError> {
    let failed = |e: std::io::Error| {
        RestoreError::Failed(format!(
            "cannot gather the files of database {database} in {}: {e}",
            dir.display()
        ))
    };
    let parent = dir.parent().unwrap_or(dir);
    let subset = tempfile::Builder::new()
        .prefix("one-database-")
        .tempdir_in(parent)
        .map_err(failed)?;
    let ours = |name: &str| {
        name == "metadata"
            || name == format!("{database}-schema-create.sql")
            || name.starts_with(&format!("{database}."))
    };
    for entry in std::fs::read_dir(dir).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        if entry.file_name().to_str().is_some_and(ours) {
            std::fs::hard_link(entry.path(), subset.path().join(entry.file_name()))
                .map_err(failed)?;
        }
    }
    Ok(subset)
}

impl MysqlTarget {
    /// Reads `mysql://[USER[:PASSWORD]@]HOST[:PORT]/[DATABASE][?socket=PATH]`;
    /// without a password in the URL, `MYSQL_PWD` is used when set.
    fn parse(url: &str) -> Result<MysqlTarget, RestoreError> {
        let bad = RestoreError::Usage(
            "mysql targets are mysql://USER:PASSWORD@HOST:PORT/[DATABASE][?socket=PATH] URLs",
        );
        let rest = url.strip_prefix("mysql://").ok_or(bad)?;
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, database) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let mut target = MysqlTarget::default();
        if let Some(userinfo) = userinfo {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            target.user = Some(percent_decode(user)?).filter(|u| !u.is_empty());
            target.password = password.map(percent_decode).transpose()?.map(Secret::from);
        }
        if target.password.is_none() {
            target.password = std::env::var("MYSQL_PWD").ok().map(Secret::from);
        }
        let (host, port) = match hostport.rsplit_once(':') {
            Some((host, port)) => (
                host,
                Some(port.parse::<u16>().map_err(|_| {
                    RestoreError::Usage("the port of a mysql:// URL must be a number")
                })?),
            ),
            None => (hostport, None),
        };
        target.host = Some(host.to_owned()).filter(|h| !h.is_empty());
        target.port = port;
        target.database = Some(percent_decode(database)?).filter(|d| !d.is_empty());
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("socket", path)) => target.socket = Some(percent_decode(path)?),
                _ => {
                    return Err(RestoreError::Usage(
                        "the only option a mysql:// URL takes is ?socket=PATH",
                    ))
                }
            }
        }
        Ok(target)
    }

    /// The option file (when there is a password) and the connection
    /// options for `program`; the option file's flag comes first, as the
    /// MySQL tools require.
    fn command(&self, program: &str) -> Result<(Command, Option<OptionFile>), RestoreError> {
        let options = self
            .password
            .as_ref()
            .map(|password| OptionFile::write(password.expose()))
            .transpose()?;
        let mut command = Command::new(program);
        command.env_remove("MYSQL_PWD");
        if let Some(options) = &options {
            // myloader 0.10 knows only --defaults-file
            let flag = if program == "myloader" {
                "--defaults-file="
            } else {
                "--defaults-extra-file="
            };
            let mut arg = std::ffi::OsString::from(flag);
            arg.push(options.path());
            command.arg(arg);
        }
        if let Some(user) = &self.user {
            command.arg(format!("--user={user}"));
        }
        if let Some(host) = &self.host {
            command.arg(format!("--host={host}"));
        }
        if let Some(port) = self.port {
            command.arg(format!("--port={port}"));
        }
        if let Some(socket) = &self.socket {
            command.arg(format!("--socket={socket}"));
        }
        Ok((command, options))
    }
}

impl Target {
    /// Reads `postgres://…` or `mysql://…`; other schemes are refused.
    pub fn parse(url: &str) -> Result<Target, RestoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Target::Postgres { url: url.into() })
        } else if url.starts_with("mysql://") {
            Ok(Target::Mysql(MysqlTarget::parse(url)?))
        } else {
            Err(RestoreError::Usage(
                "restore targets are postgres://USER:PASSWORD@HOST:PORT/DATABASE or mysql://USER:PASSWORD@HOST:PORT/ URLs",
            ))
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Target::Postgres { .. } => Engine::Postgres,
            Target::Mysql(_) => Engine::Mysql,
        }
    }

    /// Refuses a backup of another engine or of a format this build does
    /// not know; says how the format reaches the restore tool.
    pub fn check_backup(&self, manifest: &Manifest) -> Result<Shape, RestoreError> {
        if self.engine() != manifest.engine {
            return Err(RestoreError::Failed(format!(
                "the backup is a {} dump; the target is {}",
                manifest.engine.as_str(),
                self.engine().as_str()
            )));
        }
        match (self, manifest.format.as_str()) {
            (Target::Postgres { .. }, "pg_dump-custom") | (Target::Mysql(_), "mysqldump") => {
                Ok(Shape::Stream)
            }
            (Target::Postgres { .. }, "pg_dump-directory") | (Target::Mysql(_), "mydumper") => {
                Ok(Shape::Directory)
            }
            (_, format) => Err(RestoreError::Failed(format!(
                "this build cannot restore a {format} dump"
            ))),
        }
    }

    /// Starts the restore tool reading the plaintext dump on stdin.
    pub fn spawn_restore(&self) -> Result<RestoreTool, RestoreError> {
        let (mut command, options, program) = match self {
            Target::Postgres { url } => {
                let (command, passfile) = pg_restore(url.expose())?;
                (command, passfile, "pg_restore")
            }
            Target::Mysql(mysql) => {
                let (mut command, options) = mysql.command("mysql")?;
                command.arg(MYSQL_MAX_PACKET).arg("--binary-mode");
                if let Some(database) = &mysql.database {
                    command.arg(format!("--database={database}"));
                }
                (command, options, "mysql")
            }
        };
        tool_stdio(&mut command);
        let child = command
            .spawn()
            .map_err(|e| RestoreError::Failed(format!("cannot start {program}: {e}")))?;
        Ok(RestoreTool {
            child,
            _options: options,
            said: None,
        })
    }

    /// The same MySQL target, with a mysqldump stream's databases
    /// redirected `(dumped, into)`; PostgreSQL targets are unchanged.
    pub fn renaming(&self, rename: &[(String, String)]) -> Target {
        match self {
            Target::Mysql(mysql) => Target::Mysql(MysqlTarget {
                rename: rename.to_vec(),
                ..mysql.clone()
            }),
            other => other.clone(),
        }
    }

    /// What the decrypted stream is written to: the tool's stdin, through
    /// [`RenameDatabases`] when a MySQL target redirects databases.
    pub fn restore_input(&self, stdin: ChildStdin) -> Box<dyn Write + Send> {
        match self {
            Target::Mysql(mysql) if !mysql.rename.is_empty() => {
                Box::new(RenameDatabases::new(stdin, &mysql.rename))
            }
            _ => Box::new(stdin),
        }
    }

    /// Restores the dump directory `dir` with `jobs` parallel workers
    /// (`pg_restore --jobs`, `myloader --threads`); blocks. `only` (MySQL)
    /// restores just that database of the dump, into the target's
    /// database.
    pub fn restore_directory(
        &self,
        dir: &Path,
        jobs: usize,
        only: Option<&str>,
    ) -> Result<(), RestoreError> {
        // myloader 0.10 parses its options in the C locale and refuses a
        // non-ASCII database name in `--source-db`: it is handed a folder
        // of that database's files alone instead (hard links, no copies)
        let subset;
        let (dir, only) = match only {
            Some(source) if !source.is_ascii() => {
                subset = one_database(dir, source)?;
                (subset.path(), None)
            }
            _ => (dir, only),
        };
        let (mut command, options, program) = match self {
            Target::Postgres { url } => {
                let (mut command, passfile) = pg_restore(url.expose())?;
                command.arg(format!("--jobs={jobs}")).arg(dir);
                (command, passfile, "pg_restore")
            }
            Target::Mysql(mysql) => {
                let (mut command, options) = mysql.command("myloader")?;
                command
                    .arg(format!("--threads={jobs}"))
                    .arg("--overwrite-tables")
                    .arg("--directory")
                    .arg(dir);
                if let Some(database) = &mysql.database {
                    command.arg(format!("--database={database}"));
                }
                if let Some(source) = only {
                    command.arg(format!("--source-db={source}"));
                }
                (command, options, "myloader")
            }
        };
        let cannot_start =
            |e: std::io::Error| RestoreError::Failed(format!("cannot start {program}: {e}"));
        // both streams into one pipe: myloader reports some failures on
        // stdout (option parsing), pg_restore on stderr
        let (said, writer) = std::io::pipe().map_err(cannot_start)?;
        let also = writer.try_clone().map_err(cannot_start)?;
        command
            .stdin(std::process::Stdio::null())
            .stdout(also)
            .stderr(writer);
        let child = command.spawn().map_err(cannot_start)?;
        // our copies of the pipe's writing end go with the command
        drop(command);
        self.wait_restore(RestoreTool {
            child,
            _options: options,
            said: Some(said),
        })
    }

    /// Waits for the restore tool; fails with what it said unless it
    /// exited 0.
    pub fn wait_restore(&self, tool: RestoreTool) -> Result<(), RestoreError> {
        let RestoreTool {
            mut child,
            _options,
            said,
        } = tool;
        let mut stderr = String::new();
        if let Some(mut pipe) = said {
            let _ = pipe.read_to_string(&mut stderr);
        } else if let Some(mut pipe) = child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let status = child
            .wait()
            .map_err(|e| RestoreError::Failed(format!("cannot wait for the restore tool: {e}")))?;
        if status.success() {
            Ok(())
        } else {
            Err(RestoreError::Failed(format!(
                "the restore tool failed ({status}): {}",
                stderr.trim().replace('\n', "; ")
            )))
        }
    }

    /// The same server, another database.
    pub fn with_database(&self, database: &str) -> Target {
        match self {
            Target::Postgres { url } => {
                let url = url.expose();
                let (base, query) = match url.split_once('?') {
                    Some((base, query)) => (base, format!("?{query}")),
                    None => (url, String::new()),
                };
                let scheme_end = base.find("://").map_or(0, |i| i + 3);
                let authority_end = base[scheme_end..]
                    .find('/')
                    .map_or(base.len(), |i| scheme_end + i);
                Target::Postgres {
                    url: format!("{}/{database}{query}", &base[..authority_end]).into(),
                }
            }
            Target::Mysql(mysql) => Target::Mysql(MysqlTarget {
                database: Some(database.to_owned()),
                ..mysql.clone()
            }),
        }
    }

    /// Runs SQL on the target and returns psql's unaligned, tuples-only,
    /// tab-separated output.
    /// (MySQL: the `mysql` client's batch output, no column names.)
    pub fn sql(&self, sql: &str) -> Result<String, RestoreError> {
        match self {
            Target::Postgres { url } => psql(url.expose(), &["-c", sql], None),
            Target::Mysql(mysql) => mysql.query(sql),
        }
    }

    /// Runs a psql script (meta-commands allowed) fed on stdin, handing
    /// its output (psql's unaligned, tuples-only form, and COPY's text) to
    /// `output` as it arrives, in constant memory. PostgreSQL only: `None`
    /// for a MySQL target.
    pub fn psql_script_streamed(
        &self,
        script: &str,
        output: impl FnMut(&[u8]),
    ) -> Option<Result<(), RestoreError>> {
        let Target::Postgres { url } = self else {
            return None;
        };
        Some((|| {
            let (mut command, passfile) = postgres_command("psql", url.expose())?;
            command.args(PSQL_OPTIONS).args(["-f", "-"]);
            let ran = crate::process::run_with_input_streamed(command, script.as_bytes(), output);
            drop(passfile);
            let (status, stderr) =
                ran.map_err(|e| RestoreError::Failed(format!("cannot run psql: {e}")))?;
            if status.success() {
                Ok(())
            } else {
                Err(RestoreError::Failed(format!(
                    "psql failed: {}",
                    String::from_utf8_lossy(&stderr).trim()
                )))
            }
        })())
    }

    /// Runs a psql script (meta-commands allowed) fed on stdin; MySQL: an
    /// SQL script.
    pub fn sql_script(&self, script: &str) -> Result<String, RestoreError> {
        match self {
            Target::Postgres { url } => psql(url.expose(), &["-f", "-"], Some(script)),
            Target::Mysql(mysql) => mysql.query(script),
        }
    }
}

impl MysqlTarget {
    /// Runs `sql` (fed on stdin) with the `mysql` client.
    fn query(&self, sql: &str) -> Result<String, RestoreError> {
        let (mut command, options) = self.command("mysql")?;
        command.args([
            "--batch",
            "--skip-column-names",
            "--default-character-set=utf8mb4",
        ]);
        if let Some(database) = &self.database {
            command.arg(format!("--database={database}"));
        }
        let output = run_with_stdin(command, "mysql", sql);
        drop(options);
        output
    }
}

/// psql without a psqlrc, quiet, unaligned and tuples-only with tabs
/// between fields, stopping at the first error.
const PSQL_OPTIONS: [&str; 8] = ["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-F", "\t"];

fn psql(url: &str, args: &[&str], stdin: Option<&str>) -> Result<String, RestoreError> {
    let (mut command, passfile) = postgres_command("psql", url)?;
    command.args(PSQL_OPTIONS).args(args);
    let output = run_with_stdin(command, "psql", stdin.unwrap_or(""));
    drop(passfile);
    output
}

/// Runs a client tool with `input` on stdin; returns its stdout, or fails
/// with its stderr.
fn run_with_stdin(command: Command, program: &str, input: &str) -> Result<String, RestoreError> {
    let output = crate::process::run_with_input(command, input.as_bytes())
        .map_err(|e| RestoreError::Failed(format!("cannot run {program}: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(RestoreError::Failed(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Standard streams for a restore tool: the dump on stdin; stderr kept
/// for the error message.
fn tool_stdio(command: &mut Command) {
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bug: `Target::Postgres` derived `Debug` with the password in its
    /// URL, so any `{:?}` of a target (a log line, a panic) showed it.
    #[test]
    fn no_target_shows_its_password_in_debug() {
        for url in [
            "postgres://u:pa55word@h:5432/db",
            "mysql://u:pa55word@h:3306/db",
        ] {
            let target = Target::parse(url).unwrap();
            let shown = format!("{target:?} {:?}", target.with_database("x"));
            assert!(!shown.contains("pa55word"), "{shown}");
        }
    }

    #[test]
    fn urls_keep_the_server_and_change_the_database() {
        let target = Target::parse("postgres://u:p@h:5432/postgres?sslmode=disable").unwrap();
        assert_eq!(
            target.with_database("drill_1"),
            Target::Postgres {
                url: "postgres://u:p@h:5432/drill_1?sslmode=disable".into()
            }
        );
        let bare = Target::parse("postgresql://h").unwrap();
        assert_eq!(
            bare.with_database("x"),
            Target::Postgres {
                url: "postgresql://h/x".into()
            }
        );
        assert!(Target::parse("ftp://h/db").is_err());
    }

    #[test]
    fn postgres_passwords_leave_the_url_for_a_private_password_file() {
        let (url, password) =
            split_password("postgres://backup:p%40ss:w%2Fd@db:5432/shop?sslmode=require").unwrap();
        assert_eq!(url, "postgres://backup@db:5432/shop?sslmode=require");
        assert_eq!(password.as_deref(), Some("p@ss:w/d"));
        assert_eq!(
            split_password("postgresql://backup@db/shop").unwrap(),
            ("postgresql://backup@db/shop".to_owned(), None)
        );
        let (command, passfile) = postgres_command("psql", "postgres://u:secret@h/d").unwrap();
        let argv: Vec<_> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(argv.iter().all(|a| !a.contains("secret")), "{argv:?}");
        let passfile = passfile.unwrap();
        assert_eq!(
            std::fs::read_to_string(passfile.path()).unwrap(),
            "*:*:*:*:secret\n"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(passfile.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn mysqldump_streams_are_redirected_into_other_databases() {
        let dump = "-- Current Database: `shop`\n\
            CREATE DATABASE /*!32312 IF NOT EXISTS*/ `shop` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\n\
            USE `shop`;\n\
            INSERT INTO `t` VALUES ('USE `shop`;\nCREATE DATABASE `shop`');\n\
            ALTER DATABASE `shop` CHARACTER SET latin1 ;\n\
            USE `a``b`;\n\
            USE `shop`;";
        let rename = [
            ("shop".to_owned(), "drill_0".to_owned()),
            ("a`b".to_owned(), "drill_1".to_owned()),
        ];
        let expected = "-- Current Database: `shop`\n\
            CREATE DATABASE /*!32312 IF NOT EXISTS*/ `drill_0` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\n\
            USE `drill_0`;\n\
            INSERT INTO `t` VALUES ('USE `shop`;\nCREATE DATABASE `drill_0`');\n\
            ALTER DATABASE `drill_0` CHARACTER SET latin1 ;\n\
            USE `drill_1`;\n\
            USE `drill_0`;";
        // (a line inside a string literal that looks like a statement is
        // renamed too: mysqldump escapes newlines in values as \n, so it
        // never writes one)
        for chunk in [1, 3, 7, 4096] {
            let mut out = Vec::new();
            {
                let mut writer = RenameDatabases::new(&mut out, &rename);
                for piece in dump.as_bytes().chunks(chunk) {
                    writer.write_all(piece).unwrap();
                }
            }
            assert_eq!(
                String::from_utf8(out).unwrap(),
                expected,
                "chunks of {chunk}"
            );
        }
        let long = format!(
            "INSERT INTO t VALUES ('{}');\nUSE `shop`;\n",
            "x".repeat(5000)
        );
        let mut out = Vec::new();
        RenameDatabases::new(&mut out, &rename)
            .write_all(long.as_bytes())
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            long.replace("USE `shop`", "USE `drill_0`")
        );
    }

    #[test]
    fn mysql_urls_carry_the_password_apart_from_the_command_line() {
        let Target::Mysql(target) =
            Target::parse("mysql://root:p%40ss@db.internal:3307/?socket=/run/my.sock").unwrap()
        else {
            panic!("a mysql target")
        };
        assert_eq!(target.user.as_deref(), Some("root"));
        assert_eq!(target.password.as_ref().map(Secret::expose), Some("p@ss"));
        assert_eq!(target.host.as_deref(), Some("db.internal"));
        assert_eq!(target.port, Some(3307));
        assert_eq!(target.socket.as_deref(), Some("/run/my.sock"));
        assert_eq!(target.database, None);
        assert!(!format!("{target:?}").contains("p@ss"));
        let (command, options) = target.command("mysql").unwrap();
        let options = options.expect("an option file");
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args[0].starts_with("--defaults-extra-file="), "{args:?}");
        assert!(args.iter().all(|a| !a.contains("p@ss")), "{args:?}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(options.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(std::fs::read_to_string(options.path())
            .unwrap()
            .contains("password=\"p@ss\""));
        let drill = Target::Mysql(target).with_database("scratch");
        assert!(matches!(drill, Target::Mysql(m) if m.database.as_deref() == Some("scratch")));
        assert!(Target::parse("mysql://h:port/").is_err());
    }
}
