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

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use crate::facts::{
    mysql_facts_script, mysql_tables_query, parse_fact, parse_mysql_facts, parse_mysql_tables,
    FactsError, END_MARKER, MYSQL_METHOD, POSTGRES_FACTS_SCRIPT, POSTGRES_METHOD,
};
use crate::schema::{DumpFacts, DumpSettings, TableFacts};

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

/// The MySQL facts of `databases` but the tables `settings` exclude,
/// taken with `client` (a connected `mysql`, made twice); `None` for
/// another engine. A backup promises them (a drill proves it against
/// them), so a failure is the backup's.
pub async fn mysql_facts(
    client: impl Fn() -> Option<std::process::Command>,
    databases: &[String],
    settings: &DumpSettings,
) -> Result<Option<DumpFacts>, FactsError> {
    let (Some(list), Some(facts)) = (client(), client()) else {
        return Ok(None);
    };
    let collected = async {
        let mut tables =
            parse_mysql_tables(&mysql_batch(list, &mysql_tables_query(databases)).await?)?;
        tables.retain(|(database, table)| !settings.excludes(database, table));
        let output = mysql_batch(facts, &mysql_facts_script(&tables)).await?;
        parse_mysql_facts(&tables, &output)
    };
    let tables = collected.await?;
    tracing::info!("table facts recorded for {} table(s)", tables.len());
    Ok(Some(DumpFacts {
        method: MYSQL_METHOD.to_owned(),
        snapshot: None,
        tables,
    }))
}

/// Why psql ended early: what it said on stderr (its last 4 KiB), or
/// [`FactsError::Ended`] when it said nothing.
async fn ended(stderr: &mut ChildStderr) -> FactsError {
    let mut said = Vec::new();
    let _ = stderr.read_to_end(&mut said).await;
    let said = String::from_utf8_lossy(&said[said.len().saturating_sub(4096)..])
        .trim()
        .to_owned();
    if said.is_empty() {
        FactsError::Ended
    } else {
        FactsError::Failed(said)
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
    /// psql's complaints, read once it has ended early.
    stderr: ChildStderr,
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
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let mut stdin = child.stdin.take().ok_or(FactsError::Ended)?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or(FactsError::Ended)?);
        let mut stderr = child.stderr.take().ok_or(FactsError::Ended)?;
        stdin
            .write_all(
                b"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\nSELECT pg_export_snapshot();\n",
            )
            .await?;
        stdin.flush().await?;
        let mut line = String::new();
        if stdout.read_line(&mut line).await? == 0 {
            return Err(ended(&mut stderr).await);
        }
        let snapshot = line.trim().to_owned();
        if snapshot.is_empty() || !snapshot.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(FactsError::Unexpected(snapshot));
        }
        Ok(SnapshotSession {
            child,
            stdin,
            stdout,
            stderr,
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
        let tables = match read_facts(&mut self.stdout).await {
            Err(FactsError::Ended) => return Err(ended(&mut self.stderr).await),
            read => read?,
        };
        Ok(DumpFacts {
            method: POSTGRES_METHOD.to_owned(),
            snapshot: Some(self.snapshot.clone()),
            tables,
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
    /// `None` once taken by [`Collecting::failure`] or `finish`.
    task: Option<tokio::task::JoinHandle<(SnapshotSession, Result<DumpFacts, FactsError>)>>,
}

impl Collecting {
    /// Opens a snapshot session with `psql` and starts computing the
    /// facts; `None` without `psql` (another engine). A backup promises
    /// its facts (a drill proves it against them), so not getting them
    /// is the backup's failure, named with psql's own words.
    pub async fn start(
        psql: Option<std::process::Command>,
    ) -> Result<Option<Collecting>, FactsError> {
        let Some(psql) = psql else {
            return Ok(None);
        };
        let session = SnapshotSession::open(psql).await?;
        let snapshot = session.snapshot().to_owned();
        let task = tokio::spawn(async move {
            let mut session = session;
            let facts = session.facts().await;
            (session, facts)
        });
        Ok(Some(Collecting {
            snapshot,
            task: Some(task),
        }))
    }

    /// The snapshot the dump must use.
    pub fn snapshot(&self) -> &str {
        &self.snapshot
    }

    /// The facts' error if they have already failed (after a failed dump:
    /// a facts session that failed first is the root cause, since it took
    /// the dump's snapshot with it).
    pub async fn failure(&mut self) -> Option<FactsError> {
        let task = self.task.take_if(|task| task.is_finished())?;
        match task.await {
            Ok((_, Err(err))) => Some(err),
            _ => None,
        }
    }

    /// Waits for the facts (call once the dump has ended: the session holds
    /// the snapshot open until then) and ends the session.
    pub async fn finish(mut self) -> Result<DumpFacts, FactsError> {
        let task = self.task.take().ok_or(FactsError::Ended)?;
        let (session, facts) = task.await.map_err(|_| FactsError::Ended)?;
        if let Err(err) = session.close().await {
            tracing::warn!("the table facts session did not end cleanly: {err}");
        }
        let facts = facts?;
        tracing::info!("table facts recorded for {} table(s)", facts.tables.len());
        Ok(facts)
    }
}

impl Drop for Collecting {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
