//! Which dump tool can dump which server, and with which flags.
//!
//! The client tools on the instance come from the AMI's distribution (or
//! the job's pre-baked AMI); the server is whatever the job points at,
//! often a newer RDS release. The combinations fail in ways that differ
//! by family and version, some of them silently: `pg_dump` refuses a
//! newer server outright, a MySQL 8 `mysqldump` fails on MariaDB for a
//! table MariaDB does not have, a GTID server makes a recent `mysqldump`
//! take the global read lock RDS refuses, and mydumper renamed its lock
//! options. [`dump_flags`] decides it all from what the tools and the
//! server say about themselves, as one pure function, before anything is
//! dumped; each rule names the documented behaviour it encodes.

use std::fmt;

use crate::schema::DumpMode;

/// A database family: the server's, or the one a client tool belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    PostgreSql,
    MySql,
    MariaDb,
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::PostgreSql => "PostgreSQL",
            Family::MySql => "MySQL",
            Family::MariaDb => "MariaDB",
        })
    }
}

/// A release number, `major.minor.patch` (missing parts are 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// The leading `N[.N[.N]]` of `text` (`15.18 (Debian …)`,
    /// `10.11.19-MariaDB-0+deb12u1`, `v0.16.3-1`), after an optional `v`.
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim().trim_start_matches('v');
        let end = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let mut parts = text[..end].split('.').map(str::parse::<u32>);
        let major = parts.next()?.ok()?;
        let minor = parts.next().and_then(Result::ok).unwrap_or(0);
        let patch = parts.next().and_then(Result::ok).unwrap_or(0);
        Some(Version(major, minor, patch))
    }

    /// PostgreSQL's major version: the first number from 10 on, the
    /// first two before (9.6).
    fn postgres_major(self) -> (u32, u32) {
        if self.0 >= 10 {
            (self.0, 0)
        } else {
            (self.0, self.1)
        }
    }

    /// The release series, `major.minor` (MySQL's 8.0 and 8.4, MariaDB's
    /// 10.11 and 11.4).
    fn series(self) -> (u32, u32) {
        (self.0, self.1)
    }
}

/// `15.18`, `10.11.19`: a zero patch number is left out.
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)?;
        if self.2 != 0 {
            write!(f, ".{}", self.2)?;
        }
        Ok(())
    }
}

/// The program that takes the dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    PgDump,
    Mysqldump,
    Mydumper,
}

impl Tool {
    /// The tool that dumps in `mode`.
    pub fn of(mode: DumpMode) -> Tool {
        match mode {
            DumpMode::PostgresCustom | DumpMode::PostgresDirectory => Tool::PgDump,
            DumpMode::Mydumper => Tool::Mydumper,
            DumpMode::Mysqldump => Tool::Mysqldump,
        }
    }

    pub fn program(self) -> &'static str {
        match self {
            Tool::PgDump => "pg_dump",
            Tool::Mysqldump => "mysqldump",
            Tool::Mydumper => "mydumper",
        }
    }
}

/// The dump tool as its `--version` line describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    pub tool: Tool,
    /// `pg_dump`: PostgreSQL; `mysqldump`: MySQL or MariaDB, whichever
    /// ships it; mydumper: the family of the server it dumps (it speaks
    /// to both).
    pub family: Family,
    /// The tool's own release (mydumper's, not its client library's).
    pub version: Version,
}

impl Client {
    /// Reads `tool`'s `--version` line: `pg_dump (PostgreSQL) 15.18
    /// (Debian …)`; `mysqldump  Ver 10.19 Distrib 10.11.19-MariaDB, for
    /// …`, `mariadb-dump from 11.4.2-MariaDB, client 10.19 for …`,
    /// `mysqldump  Ver 8.0.36 for Linux on x86_64 (…)`, `mysqldump  Ver
    /// 10.13 Distrib 5.7.44, for …`; `mydumper 0.10.0, built against
    /// MySQL 10.11.14`, `mydumper v0.16.3-1, built against …`. `None` for
    /// a line of another shape.
    pub fn parse(tool: Tool, line: &str) -> Option<Client> {
        let word_after = |marker: &str| {
            line.split_once(marker)
                .and_then(|(_, rest)| Version::parse(rest))
        };
        let (family, version) = match tool {
            Tool::PgDump => (Family::PostgreSql, word_after("(PostgreSQL)")?),
            Tool::Mydumper => (Family::MySql, word_after("mydumper ")?),
            Tool::Mysqldump => {
                if let Some((before, _)) = line.split_once("-MariaDB") {
                    let number = before.rsplit([' ', '\t']).next()?;
                    (Family::MariaDb, Version::parse(number)?)
                } else if let Some(version) = word_after("Distrib ") {
                    (Family::MySql, version)
                } else {
                    (Family::MySql, word_after(" Ver ")?)
                }
            }
        };
        Some(Client {
            tool,
            family,
            version,
        })
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tool {
            Tool::Mysqldump => write!(f, "mysqldump {} ({})", self.version, self.family),
            tool => write!(f, "{} {}", tool.program(), self.version),
        }
    }
}

/// Where the server runs: what the provider forbids follows from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosting {
    SelfManaged,
    /// Amazon RDS (`@@basedir` under `/rdsdbbin/`).
    Rds,
    /// Amazon Aurora (`@@aurora_version` is set).
    Aurora,
}

/// What the server says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    pub family: Family,
    pub version: Version,
    pub hosting: Hosting,
    /// MySQL's `@@gtid_mode` is other than `OFF` (MariaDB has no such
    /// mode).
    pub gtid_mode: bool,
}

impl Server {
    /// A MySQL-protocol server from its global variables, as `(name,
    /// value)` pairs of `SHOW GLOBAL VARIABLES`: `version`
    /// (`10.11.19-MariaDB-0+deb12u1`, `8.0.35`), `basedir`
    /// (`/rdsdbbin/mysql-8.0.35.R2/` on RDS), `aurora_version` (Aurora
    /// only) and `gtid_mode`. `None` without a readable `version`.
    pub fn mysql<'a>(variables: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Server> {
        let (mut version, mut rds, mut aurora, mut gtid_mode) = (None, false, false, false);
        for (name, value) in variables {
            match name {
                "version" => version = Some(value),
                "basedir" => rds = value.starts_with("/rdsdbbin/"),
                "aurora_version" => aurora = !value.is_empty(),
                // as mysqldump judges it: anything but OFF (OFF_PERMISSIVE,
                // ON_PERMISSIVE, ON) makes it write gtid_purged
                "gtid_mode" => gtid_mode = !value.eq_ignore_ascii_case("OFF"),
                _ => {}
            }
        }
        let version = version?;
        Some(Server {
            family: if version.contains("MariaDB") {
                Family::MariaDb
            } else {
                Family::MySql
            },
            version: Version::parse(version)?,
            hosting: if aurora {
                Hosting::Aurora
            } else if rds {
                Hosting::Rds
            } else {
                Hosting::SelfManaged
            },
            gtid_mode,
        })
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family, self.version)?;
        match self.hosting {
            Hosting::SelfManaged => Ok(()),
            Hosting::Rds => f.write_str(" on RDS"),
            Hosting::Aurora => f.write_str(" on Aurora"),
        }
    }
}

/// A dump tool that cannot dump this server whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The tool is of an older major version or series than the server.
    #[error(
        "{client} cannot dump {server}, which is newer; install the client of the server's version \
         ({fix}) or bake it into the job's AMI"
    )]
    ClientOlder {
        client: String,
        server: String,
        fix: String,
    },
    /// The server is older than the oldest the tool supports.
    #[error(
        "{client} cannot dump {server}, which is older than it supports ({oldest} and later); \
         dump it with an older client on an AMI of its own"
    )]
    ServerOlder {
        client: String,
        server: String,
        oldest: &'static str,
    },
}

/// The flags, beyond the mode's own, that `client` needs to dump `server`
/// whole and consistently, or why it cannot. `no_locks` is the job's
/// mydumper setting (no lock at all, consistency per table only).
///
/// PostgreSQL:
/// - `pg_dump` refuses a server of a newer major version (its manual,
///   Notes: "pg_dump cannot dump from PostgreSQL servers newer than its
///   own major version; it will refuse to even try") →
///   [`Mismatch::ClientOlder`], naming `postgresql-client-NN` (the
///   PostgreSQL project's apt repository) and `postgresqlNN` (Amazon
///   Linux 2023).
/// - `pg_dump` 15 and later dump servers back to 9.2 only (PostgreSQL 15
///   release notes: support for older servers removed from pg_dump) →
///   [`Mismatch::ServerOlder`].
///
/// MySQL and MariaDB, `mysqldump`:
/// - a MySQL 8.0 or later `mysqldump` reads
///   `information_schema.COLUMN_STATISTICS` unless told
///   `--column-statistics=0` (MySQL 8.0 manual, mysqldump); MariaDB and
///   MySQL before 8.0 have no such table and the dump fails on it.
/// - a MySQL `mysqldump` against a MySQL server whose `gtid_mode` is not
///   `OFF` writes `SET @@GLOBAL.gtid_purged` by default, which fails to load
///   into a server with GTIDs of its own, and from 8.0.32 it takes `FLUSH
///   TABLES WITH READ LOCK` with `--single-transaction` to read those
///   GTIDs (MySQL 8.0.32 release notes, Bug #33630199), which RDS and
///   Aurora refuse (AWS Knowledge Center, "mysqldump errors on RDS for
///   MySQL and MariaDB": no global read lock on RDS) →
///   `--set-gtid-purged=OFF`. MariaDB's `mysqldump` has no such option.
///
/// Both `mysqldump` and mydumper:
/// - a tool older than the server's release series (MySQL 8.0 against
///   8.4, MariaDB 10.11 against 11.4) does not know what the newer server
///   may hold, and leaves some of it out silently: a `mysqldump` before
///   MySQL 8.0.23 reads `SELECT *`, which omits invisible columns (MySQL
///   8.0.23 release notes) → [`Mismatch::ClientOlder`]. Only `mysqldump`
///   is compared: mydumper has release numbers of its own.
///
/// mydumper:
/// - threads are synchronised with `FLUSH TABLES WITH READ LOCK` by
///   default, which RDS and Aurora refuse; locking every dumped table
///   instead works there (mydumper's manual, "Lock modes").
/// - before 0.18.1 that is `--trx-consistency-only` (lock released once
///   every thread has its snapshot) with `--lock-all-tables` on
///   RDS/Aurora and `--no-locks` for none; from 0.18.1, which deprecates
///   those, `--trx-tables` with `--sync-thread-lock-mode=FTWRL`,
///   `LOCK_ALL` or `NO_LOCK` (mydumper's manual, "Old lock modes").
pub fn dump_flags(
    client: &Client,
    server: &Server,
    no_locks: bool,
) -> Result<Vec<&'static str>, Mismatch> {
    let older = |fix: String| Mismatch::ClientOlder {
        client: client.to_string(),
        server: server.to_string(),
        fix,
    };
    let managed = server.hosting != Hosting::SelfManaged;
    match client.tool {
        Tool::PgDump => {
            let (major, minor) = server.version.postgres_major();
            if client.version.postgres_major() < (major, minor) {
                let name = if major >= 10 {
                    major.to_string()
                } else {
                    format!("{major}.{minor}")
                };
                return Err(older(format!(
                    "postgresql-client-{name} from the PostgreSQL project's apt repository on \
                     Ubuntu, postgresql{name} on Amazon Linux 2023"
                )));
            }
            if client.version.0 >= 15 && server.version < Version(9, 2, 0) {
                return Err(Mismatch::ServerOlder {
                    client: client.to_string(),
                    server: server.to_string(),
                    oldest: "9.2",
                });
            }
            Ok(Vec::new())
        }
        Tool::Mysqldump => {
            if client.family == server.family && client.version.series() < server.version.series() {
                let (major, minor) = server.version.series();
                return Err(older(match server.family {
                    Family::MariaDb => format!(
                        "mariadb-client {major}.{minor} from MariaDB's repository, \
                         mariadb.org/download"
                    ),
                    _ => format!(
                        "mysql-client {major}.{minor} from MySQL's repository, \
                         dev.mysql.com/downloads"
                    ),
                }));
            }
            let mut flags = Vec::new();
            if client.family == Family::MySql && client.version >= Version(8, 0, 0) {
                let has_column_statistics =
                    server.family == Family::MySql && server.version >= Version(8, 0, 0);
                if !has_column_statistics {
                    flags.push("--column-statistics=0");
                }
            }
            if client.family == Family::MySql && server.family == Family::MySql && server.gtid_mode
            {
                flags.push("--set-gtid-purged=OFF");
            }
            Ok(flags)
        }
        Tool::Mydumper => {
            let flags = if client.version < Version(0, 18, 1) {
                match (no_locks, managed) {
                    (true, _) => vec!["--no-locks"],
                    (false, true) => vec!["--trx-consistency-only", "--lock-all-tables"],
                    (false, false) => vec!["--trx-consistency-only"],
                }
            } else {
                let mode = match (no_locks, managed) {
                    (true, _) => "--sync-thread-lock-mode=NO_LOCK",
                    (false, true) => "--sync-thread-lock-mode=LOCK_ALL",
                    (false, false) => "--sync-thread-lock-mode=FTWRL",
                };
                vec!["--trx-tables", mode]
            };
            Ok(flags)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(tool: Tool, line: &str) -> Client {
        Client::parse(tool, line).unwrap_or_else(|| panic!("{line}"))
    }

    fn server(family: Family, version: Version, hosting: Hosting, gtid_mode: bool) -> Server {
        Server {
            family,
            version,
            hosting,
            gtid_mode,
        }
    }

    #[test]
    fn the_tools_version_lines_are_read() {
        let rows = [
            (
                Tool::PgDump,
                "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)",
                Family::PostgreSql,
                Version(15, 18, 0),
            ),
            (
                Tool::PgDump,
                "pg_dump (PostgreSQL) 9.6.24",
                Family::PostgreSql,
                Version(9, 6, 24),
            ),
            (
                Tool::Mysqldump,
                "mysqldump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)",
                Family::MariaDb,
                Version(10, 11, 19),
            ),
            (
                Tool::Mysqldump,
                "mariadb-dump from 11.4.2-MariaDB, client 10.19 for Linux (x86_64)",
                Family::MariaDb,
                Version(11, 4, 2),
            ),
            (
                Tool::Mysqldump,
                "mysqldump  Ver 8.0.36-0ubuntu0.22.04.1 for Linux on x86_64 ((Ubuntu))",
                Family::MySql,
                Version(8, 0, 36),
            ),
            (
                Tool::Mysqldump,
                "mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)",
                Family::MySql,
                Version(5, 7, 44),
            ),
            (
                Tool::Mydumper,
                "mydumper 0.10.0, built against MySQL 10.11.14",
                Family::MySql,
                Version(0, 10, 0),
            ),
            (
                Tool::Mydumper,
                "mydumper v0.16.3-1, built against MySQL 8.0.36 with SSL support",
                Family::MySql,
                Version(0, 16, 3),
            ),
        ];
        for (tool, line, family, version) in rows {
            let read = client(tool, line);
            assert_eq!((read.family, read.version), (family, version), "{line}");
        }
        assert_eq!(
            Client::parse(Tool::PgDump, "pg_dump: command not found"),
            None
        );
    }

    #[test]
    fn servers_say_their_family_hosting_and_gtid_mode() {
        let debian = Server::mysql([
            ("basedir", "/usr/"),
            ("version", "10.11.19-MariaDB-0+deb12u1"),
        ])
        .unwrap();
        assert_eq!(
            debian,
            server(
                Family::MariaDb,
                Version(10, 11, 19),
                Hosting::SelfManaged,
                false
            )
        );
        let rds = Server::mysql([
            ("basedir", "/rdsdbbin/mysql-8.0.35.R2/"),
            ("gtid_mode", "ON"),
            ("version", "8.0.35"),
        ])
        .unwrap();
        assert_eq!(
            rds,
            server(Family::MySql, Version(8, 0, 35), Hosting::Rds, true)
        );
        let aurora = Server::mysql([
            ("aurora_version", "3.05.2"),
            ("basedir", "/rdsdbbin/oscar-8.0.mysql_aurora.3.05.2/"),
            ("gtid_mode", "OFF_PERMISSIVE"),
            ("version", "8.0.32"),
        ])
        .unwrap();
        assert_eq!(
            aurora,
            server(Family::MySql, Version(8, 0, 32), Hosting::Aurora, true),
            "mysqldump counts OFF_PERMISSIVE as GTIDs on"
        );
        let off = Server::mysql([("gtid_mode", "OFF"), ("version", "8.0.32")]).unwrap();
        assert!(!off.gtid_mode);
        assert_eq!(Server::mysql([("basedir", "/usr/")]), None);
    }

    /// One row of the table: the client's version line, the server, the
    /// job's `no_locks`, and the flags or the start of the refusal.
    fn row(
        tool: Tool,
        line: &str,
        server: Server,
        no_locks: bool,
    ) -> Result<Vec<&'static str>, String> {
        dump_flags(&client(tool, line), &server, no_locks).map_err(|err| err.to_string())
    }

    const PG15: &str = "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)";
    const PG18: &str = "pg_dump (PostgreSQL) 18.6";
    const MARIADB_10_11: &str =
        "mysqldump  Ver 10.19 Distrib 10.11.19-MariaDB, for debian-linux-gnu (x86_64)";
    const MYSQL_8_0: &str = "mysqldump  Ver 8.0.36-0ubuntu0.24.04.1 for Linux on x86_64 ((Ubuntu))";
    const MYSQL_5_7: &str = "mysqldump  Ver 10.13 Distrib 5.7.44, for Linux (x86_64)";
    const MYDUMPER_0_10: &str = "mydumper 0.10.0, built against MySQL 10.11.14";
    const MYDUMPER_0_19: &str = "mydumper v0.19.3-1, built against MySQL 8.0.36 with SSL support";

    #[test]
    fn pg_dump_dumps_its_own_major_version_and_older_back_to_9_2() {
        let pg = |version| server(Family::PostgreSql, version, Hosting::SelfManaged, false);
        assert_eq!(
            row(Tool::PgDump, PG15, pg(Version(15, 4, 0)), false),
            Ok(vec![])
        );
        assert_eq!(
            row(Tool::PgDump, PG18, pg(Version(15, 4, 0)), false),
            Ok(vec![])
        );
        assert_eq!(
            row(Tool::PgDump, PG15, pg(Version(9, 2, 24)), false),
            Ok(vec![])
        );
        let err = row(Tool::PgDump, PG15, pg(Version(18, 1, 0)), false).unwrap_err();
        assert!(
            err.starts_with("pg_dump 15.18 cannot dump PostgreSQL 18.1, which is newer")
                && err.contains("postgresql-client-18")
                && err.contains("postgresql18 on Amazon Linux 2023"),
            "{err}"
        );
        let err = row(Tool::PgDump, PG15, pg(Version(9, 1, 24)), false).unwrap_err();
        assert!(
            err.contains("older than it supports (9.2 and later)"),
            "{err}"
        );
        // 9.6 is a major version of its own
        let err = row(
            Tool::PgDump,
            "pg_dump (PostgreSQL) 9.5.25",
            pg(Version(9, 6, 1)),
            false,
        )
        .unwrap_err();
        assert!(err.contains("postgresql-client-9.6"), "{err}");
    }

    #[test]
    fn mysqldump_gets_the_flags_of_its_family_against_the_server_s() {
        let mariadb = server(
            Family::MariaDb,
            Version(10, 11, 6),
            Hosting::SelfManaged,
            false,
        );
        let mysql = |version, hosting, gtid| server(Family::MySql, version, hosting, gtid);
        // its own family and series: nothing to add
        assert_eq!(
            row(Tool::Mysqldump, MARIADB_10_11, mariadb, false),
            Ok(vec![])
        );
        // MySQL 8's client against MariaDB: no COLUMN_STATISTICS there
        assert_eq!(
            row(Tool::Mysqldump, MYSQL_8_0, mariadb, false),
            Ok(vec!["--column-statistics=0"])
        );
        // nor in MySQL 5.7
        assert_eq!(
            row(
                Tool::Mysqldump,
                MYSQL_8_0,
                mysql(Version(5, 7, 44), Hosting::SelfManaged, false),
                false
            ),
            Ok(vec!["--column-statistics=0"])
        );
        // a GTID server: no gtid_purged line, no global read lock
        assert_eq!(
            row(
                Tool::Mysqldump,
                MYSQL_8_0,
                mysql(Version(8, 0, 35), Hosting::Rds, true),
                false
            ),
            Ok(vec!["--set-gtid-purged=OFF"])
        );
        assert_eq!(
            row(
                Tool::Mysqldump,
                MYSQL_8_0,
                mysql(Version(8, 0, 35), Hosting::SelfManaged, false),
                false
            ),
            Ok(vec![])
        );
        // MariaDB's client has no --set-gtid-purged and needs none
        assert_eq!(
            row(
                Tool::Mysqldump,
                MARIADB_10_11,
                mysql(Version(8, 0, 35), Hosting::Aurora, true),
                false
            ),
            Ok(vec![])
        );
        // an older series of the server's family is refused, naming the fix
        let err = row(
            Tool::Mysqldump,
            MYSQL_5_7,
            mysql(Version(8, 0, 35), Hosting::Rds, false),
            false,
        )
        .unwrap_err();
        assert!(
            err.starts_with("mysqldump 5.7.44 (MySQL) cannot dump MySQL 8.0.35 on RDS")
                && err.contains("mysql-client 8.0"),
            "{err}"
        );
        let err = row(
            Tool::Mysqldump,
            MARIADB_10_11,
            server(Family::MariaDb, Version(11, 4, 2), Hosting::Rds, false),
            false,
        )
        .unwrap_err();
        assert!(err.contains("mariadb-client 11.4"), "{err}");
        // a newer patch release of the same series is fine
        assert_eq!(
            row(
                Tool::Mysqldump,
                MARIADB_10_11,
                server(Family::MariaDb, Version(10, 11, 30), Hosting::Rds, false),
                false
            ),
            Ok(vec![])
        );
    }

    #[test]
    fn mydumper_locks_as_its_version_and_the_hosting_allow() {
        let own = server(
            Family::MariaDb,
            Version(10, 11, 6),
            Hosting::SelfManaged,
            false,
        );
        let rds = server(Family::MySql, Version(8, 0, 35), Hosting::Rds, true);
        let aurora = Server {
            hosting: Hosting::Aurora,
            ..rds
        };
        assert_eq!(
            row(Tool::Mydumper, MYDUMPER_0_10, own, false),
            Ok(vec!["--trx-consistency-only"])
        );
        assert_eq!(
            row(Tool::Mydumper, MYDUMPER_0_10, rds, false),
            Ok(vec!["--trx-consistency-only", "--lock-all-tables"])
        );
        assert_eq!(
            row(Tool::Mydumper, MYDUMPER_0_10, aurora, true),
            Ok(vec!["--no-locks"])
        );
        assert_eq!(
            row(Tool::Mydumper, MYDUMPER_0_19, own, false),
            Ok(vec!["--trx-tables", "--sync-thread-lock-mode=FTWRL"])
        );
        assert_eq!(
            row(Tool::Mydumper, MYDUMPER_0_19, aurora, false),
            Ok(vec!["--trx-tables", "--sync-thread-lock-mode=LOCK_ALL"])
        );
        assert_eq!(
            row(Tool::Mydumper, MYDUMPER_0_19, rds, true),
            Ok(vec!["--trx-tables", "--sync-thread-lock-mode=NO_LOCK"])
        );
    }
}
