//! The databases a backup restores into, one arm per engine: how a target
//! URL is read, which stock tool restores a decrypted stream, and how a
//! scratch database for a drill is made and dropped. MySQL/MariaDB becomes
//! one more [`Target`] variant with its own arms.

use std::io::Read;
use std::process::{Child, Command};

use super::pipeline::tool_stdio;
use super::RestoreError;
use crate::schema::{Engine, Manifest};

/// PostgreSQL dump formats `pg_restore` reads from stdin.
const STREAMABLE_POSTGRES_FORMATS: &[&str] = &["pg_dump-custom"];

/// Where to restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A libpq connection URL (`postgres://` or `postgresql://`).
    Postgres { url: String },
}

impl Target {
    /// Reads `postgres://…`; other schemes are refused with what is known.
    pub fn parse(url: &str) -> Result<Target, RestoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Target::Postgres {
                url: url.to_owned(),
            })
        } else {
            Err(RestoreError::Usage(
                "restore targets are postgres://USER:PASSWORD@HOST:PORT/DATABASE URLs",
            ))
        }
    }

    pub fn engine(&self) -> Engine {
        match self {
            Target::Postgres { .. } => Engine::Postgres,
        }
    }

    /// Refuses a backup this target cannot take as a stream: another
    /// engine, or a dump format its tool cannot read from stdin.
    pub fn check_backup(&self, manifest: &Manifest) -> Result<(), RestoreError> {
        if self.engine() != manifest.engine {
            return Err(RestoreError::Failed(format!(
                "the backup is a {} dump; the target is {}",
                manifest.engine.as_str(),
                self.engine().as_str()
            )));
        }
        let streamable = match self {
            Target::Postgres { .. } => STREAMABLE_POSTGRES_FORMATS,
        };
        if !streamable.contains(&manifest.format.as_str()) {
            return Err(RestoreError::Failed(format!(
                "a {} dump cannot be streamed into the restore tool; use `decrypt --out DIR` and restore the files",
                manifest.format
            )));
        }
        Ok(())
    }

    /// Starts the restore tool reading the plaintext dump on stdin.
    pub fn spawn_restore(&self) -> Result<Child, RestoreError> {
        match self {
            Target::Postgres { url } => {
                let mut command = Command::new("pg_restore");
                command
                    .arg("--no-owner")
                    .arg("--no-privileges")
                    .arg("--exit-on-error")
                    .arg(format!("--dbname={url}"));
                tool_stdio(&mut command);
                command
                    .spawn()
                    .map_err(|e| RestoreError::Failed(format!("cannot start pg_restore: {e}")))
            }
        }
    }

    /// Waits for the restore tool; fails with its stderr unless it exited 0.
    pub fn wait_restore(&self, mut child: Child) -> Result<(), RestoreError> {
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
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
                let (base, query) = match url.split_once('?') {
                    Some((base, query)) => (base, format!("?{query}")),
                    None => (url.as_str(), String::new()),
                };
                let scheme_end = base.find("://").map_or(0, |i| i + 3);
                let authority_end = base[scheme_end..]
                    .find('/')
                    .map_or(base.len(), |i| scheme_end + i);
                Target::Postgres {
                    url: format!("{}/{database}{query}", &base[..authority_end]),
                }
            }
        }
    }

    /// Runs SQL on the target and returns psql's unaligned, tuples-only,
    /// tab-separated output.
    pub fn sql(&self, sql: &str) -> Result<String, RestoreError> {
        self.psql(&["-c", sql], None)
    }

    /// Runs a psql script (meta-commands allowed) fed on stdin.
    pub fn sql_script(&self, script: &str) -> Result<String, RestoreError> {
        self.psql(&["-f", "-"], Some(script))
    }

    fn psql(&self, args: &[&str], stdin: Option<&str>) -> Result<String, RestoreError> {
        use std::io::Write;
        match self {
            Target::Postgres { url } => {
                let mut child = Command::new("psql")
                    .arg(format!("--dbname={url}"))
                    .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-F", "\t"])
                    .args(args)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .map_err(|e| RestoreError::Failed(format!("cannot run psql: {e}")))?;
                if let (Some(script), Some(mut pipe)) = (stdin, child.stdin.take()) {
                    pipe.write_all(script.as_bytes())
                        .map_err(|e| RestoreError::Failed(format!("cannot feed psql: {e}")))?;
                }
                drop(child.stdin.take());
                let output = child
                    .wait_with_output()
                    .map_err(|e| RestoreError::Failed(format!("cannot run psql: {e}")))?;
                if output.status.success() {
                    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
                } else {
                    Err(RestoreError::Failed(format!(
                        "psql failed: {}",
                        String::from_utf8_lossy(&output.stderr).trim()
                    )))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(Target::parse("mysql://h/db").is_err());
    }
}
