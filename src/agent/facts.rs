//! Facts about the data, recorded at dump time so a drill can prove a
//! restore complete: per table, the row count and an order-independent
//! checksum of every row.
//!
//! They must describe exactly the data dumped, so on PostgreSQL they are
//! computed inside the transaction whose snapshot `pg_dump --snapshot`
//! dumps: [`SnapshotSession`] opens a REPEATABLE READ transaction, exports
//! its snapshot, and keeps it open until the dump is done. A drill runs the
//! very same [`POSTGRES_FACTS_SCRIPT`] on the restored database.
//!
//! The checksum adds up the first 64 bits of each row's MD5 (of its text
//! form, with every output setting that changes that text pinned), so it
//! needs no sort and streams through any table size.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::schema::{DumpFacts, TableFacts};

/// Name of the checksum definition, recorded with the facts.
pub const POSTGRES_METHOD: &str = "postgres-row-md5-sum-v1";

/// What marks the end of the facts in psql's output.
const END_MARKER: &str = "--backup-cloud-facts-end--";

/// psql script printing `schema \t table \t rows \t checksum` per table,
/// then the end marker. Runs in the current transaction.
pub const POSTGRES_FACTS_SCRIPT: &str = r"SET DateStyle = 'ISO, YMD';
SET TimeZone = 'UTC';
SET IntervalStyle = 'postgres';
SET extra_float_digits = 3;
SET bytea_output = 'hex';
SELECT format('SELECT %L, %L, count(*), coalesce(sum((''x'' || substr(md5(t::text), 1, 16))::bit(64)::bigint::numeric), 0) FROM %I.%I AS t', schemaname, tablename, schemaname, tablename)
FROM pg_tables
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
ORDER BY schemaname, tablename
\gexec
\echo --backup-cloud-facts-end--
";

/// The facts could not be collected or read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error("cannot run psql for the table facts: {0}")]
    Io(#[from] std::io::Error),
    #[error("psql ended before the table facts were complete")]
    Ended,
    #[error("psql printed a table fact this agent does not understand: {0:?}")]
    Unexpected(String),
}

/// Parses one `schema \t table \t rows \t checksum` line.
pub fn parse_fact(line: &str) -> Result<TableFacts, FactsError> {
    let bad = || FactsError::Unexpected(line.to_owned());
    let mut fields = line.split('\t');
    let (Some(schema), Some(table), Some(rows), Some(checksum), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(bad());
    };
    Ok(TableFacts {
        schema: schema.to_owned(),
        table: table.to_owned(),
        rows: rows.parse().map_err(|_| bad())?,
        checksum: checksum.to_owned(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fact_lines_parse_and_garbage_is_refused() {
        let fact = parse_fact("public\torders\t40000\t-123456789012").unwrap();
        assert_eq!(fact.table, "orders");
        assert_eq!(fact.rows, 40_000);
        assert_eq!(fact.checksum, "-123456789012");
        assert!(parse_fact("public\torders\tmany\t1").is_err());
        assert!(parse_fact("public\torders\t1").is_err());
        assert!(parse_fact("a\tb\t1\t2\t3").is_err());
    }
}
