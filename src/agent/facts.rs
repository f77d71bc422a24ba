//! Collecting the table facts ([`crate::facts`]) at dump time.
//!
//! They must describe exactly the data dumped, so on PostgreSQL they are
//! computed inside the transaction whose snapshot `pg_dump --snapshot`
//! dumps: [`SnapshotSession`] opens a REPEATABLE READ transaction, exports
//! its snapshot, and keeps it open until the dump is done. A drill runs the
//! very same [`POSTGRES_FACTS_SCRIPT`] on the restored database.
//!
//! On MySQL/MariaDB there is no snapshot a dump tool can be handed, so the
//! facts ([`MYSQL_METHOD`]: `SELECT COUNT(*)` and `CHECKSUM TABLE` per
//! base table) are taken after the dump in a transaction of their own
//! (`START TRANSACTION WITH CONSISTENT SNAPSHOT`; `CHECKSUM TABLE` reads
//! the table as it is): they equal the dump only when nothing wrote to the
//! database meanwhile, and the drill says so.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::facts::{
    mysql_facts_script, mysql_tables_query, parse_fact, parse_mysql_facts, parse_mysql_tables,
    FactsError, END_MARKER, MYSQL_METHOD, POSTGRES_FACTS_SCRIPT, POSTGRES_METHOD,
};
use crate::schema::{DumpFacts, TableFacts};

/// Runs the connected `mysql` client `client` with `sql` on stdin.
async fn mysql_batch(mut client: std::process::Command, sql: &str) -> Result<String, FactsError> {
    client.args([
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
    ]);
    let sql = sql.as_bytes().to_vec();
    let output = tokio::task::spawn_blocking(move || crate::process::run_with_input(client, &sql))
        .await
        .map_err(|_| FactsError::Ended)??;
    if !output.status.success() {
        return Err(FactsError::Failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The MySQL facts of `databases`, taken with `client` (a connected
/// `mysql`, made twice); `None` for another engine. Like the PostgreSQL
/// facts they help drills but are not the backup: a failure warns and
/// returns `None`.
pub async fn mysql_facts(
    client: impl Fn() -> Option<std::process::Command>,
    databases: &[String],
) -> Option<DumpFacts> {
    let (Some(list), Some(facts)) = (client(), client()) else {
        return None;
    };
    let collected = async {
        let tables = parse_mysql_tables(&mysql_batch(list, &mysql_tables_query(databases)).await?)?;
        let output = mysql_batch(facts, &mysql_facts_script(&tables)).await?;
        parse_mysql_facts(&tables, &output)
    };
    match collected.await {
        Ok(tables) => {
            tracing::info!("table facts recorded for {} table(s)", tables.len());
            Some(DumpFacts {
                method: MYSQL_METHOD.to_owned(),
                snapshot: None,
                tables,
            })
        }
        Err(err) => {
            tracing::warn!("no table facts for this backup: {err}");
            None
        }
    }
}

/// Reads fact lines up to the end marker.
async fn read_facts(lines: &mut BufReader<ChildStdout>) -> Result<Vec<TableFacts>, FactsError> {
    let mut tables = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Err(FactsError::Ended);
        }
        let text = line.trim_end_matches(['\n', '\r']);
        if text == END_MARKER {
            return Ok(tables);
        }
        if !text.is_empty() {
            tables.push(parse_fact(text)?);
        }
    }
}

/// A psql session holding a REPEATABLE READ transaction whose snapshot a
/// dump uses. Dropping it ends the session (and the transaction).
pub struct SnapshotSession {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    snapshot: String,
}

impl SnapshotSession {
    /// Starts `psql` (already connected by `command`), opens the
    /// transaction and exports its snapshot.
    pub async fn open(command: std::process::Command) -> Result<SnapshotSession, FactsError> {
        let mut command = tokio::process::Command::from(command);
        command
            .args(["--no-psqlrc", "--quiet", "--tuples-only", "--no-align"])
            .args(["--field-separator=\t", "--set=ON_ERROR_STOP=1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let mut stdin = child.stdin.take().ok_or(FactsError::Ended)?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or(FactsError::Ended)?);
        stdin
            .write_all(
                b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT pg_export_snapshot();\n",
            )
            .await?;
        stdin.flush().await?;
        let mut line = String::new();
        if stdout.read_line(&mut line).await? == 0 {
            return Err(FactsError::Ended);
        }
        let snapshot = line.trim().to_owned();
        if snapshot.is_empty() || !snapshot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(FactsError::Unexpected(snapshot));
        }
        Ok(SnapshotSession {
            child,
            stdin,
            stdout,
            snapshot,
        })
    }

    /// The exported snapshot, for `pg_dump --snapshot`.
    pub fn snapshot(&self) -> &str {
        &self.snapshot
    }

    /// Computes the facts inside the snapshot.
    pub async fn facts(&mut self) -> Result<DumpFacts, FactsError> {
        self.stdin
            .write_all(POSTGRES_FACTS_SCRIPT.as_bytes())
            .await?;
        self.stdin.flush().await?;
        Ok(DumpFacts {
            method: POSTGRES_METHOD.to_owned(),
            snapshot: Some(self.snapshot.clone()),
            tables: read_facts(&mut self.stdout).await?,
        })
    }

    /// Ends the transaction and the session.
    pub async fn close(mut self) -> Result<(), FactsError> {
        self.stdin.write_all(b"COMMIT;\n\\q\n").await?;
        self.stdin.flush().await?;
        drop(self.stdin);
        self.child.wait().await?;
        Ok(())
    }
}

/// Facts being computed beside a running dump, in the dump's snapshot.
/// Dropping it stops the computation and ends the session.
pub struct Collecting {
    snapshot: String,
    task: tokio::task::JoinHandle<(SnapshotSession, Result<DumpFacts, FactsError>)>,
}

impl Collecting {
    /// Opens a snapshot session with `psql` and starts computing the facts.
    /// Facts help drills but are not the backup: if they cannot be had,
    /// this warns and returns `None`, and the dump goes on without them.
    pub async fn start(psql: Option<std::process::Command>) -> Option<Collecting> {
        let session = match SnapshotSession::open(psql?).await {
            Ok(session) => session,
            Err(err) => {
                tracing::warn!("no table facts for this backup: {err}");
                return None;
            }
        };
        let snapshot = session.snapshot().to_owned();
        let task = tokio::spawn(async move {
            let mut session = session;
            let facts = session.facts().await;
            (session, facts)
        });
        Some(Collecting { snapshot, task })
    }

    /// The snapshot the dump must use.
    pub fn snapshot(&self) -> &str {
        &self.snapshot
    }

    /// Waits for the facts (call once the dump has ended: the session holds
    /// the snapshot open until then) and ends the session.
    pub async fn finish(mut self) -> Option<DumpFacts> {
        let outcome = (&mut self.task).await;
        let (session, facts) = match outcome {
            Ok(done) => done,
            Err(err) => {
                tracing::warn!("no table facts for this backup: {err}");
                return None;
            }
        };
        if let Err(err) = session.close().await {
            tracing::warn!("the table facts session did not end cleanly: {err}");
        }
        match facts {
            Ok(facts) => {
                tracing::info!("table facts recorded for {} table(s)", facts.tables.len());
                Some(facts)
            }
            Err(err) => {
                tracing::warn!("no table facts for this backup: {err}");
                None
            }
        }
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        self.task.abort();
    }
}
