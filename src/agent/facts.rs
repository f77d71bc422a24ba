//! Collecting the table facts ([`crate::facts`]) at dump time.
//!
//! On PostgreSQL they are read off the dump itself as it passes through
//! the agent: a [`Tap`] feeds a custom-format stream to
//! [`CustomArchiveReader`], a directory dump's `<dump id>.dat` files are
//! digested as they are uploaded (`CopyRows`), and [`postgres_facts`]
//! names each digest after its table from the table of contents. They
//! describe exactly the data dumped, with no session of their own on the
//! server and no second scan.
//!
//! On MySQL/MariaDB there is no snapshot a dump tool can be handed, so the
//! facts ([`MYSQL_METHOD`]: `SELECT COUNT(*)` and `CHECKSUM TABLE` per
//! base table) are taken after the dump in a transaction of their own
//! (`START TRANSACTION WITH CONSISTENT SNAPSHOT`; `CHECKSUM TABLE` reads
//! the table as it is): they equal the dump only when nothing wrote to the
//! database meanwhile, and the drill says so.

use std::collections::BTreeMap;
use std::io::{self, Read};

use crate::facts::{
    copy_facts, mysql_facts_script, mysql_tables_query, parse_mysql_facts, parse_mysql_tables,
    CopyDigest, FactsError, MYSQL_METHOD,
};
use crate::pg_archive::{copy_columns, CustomArchiveReader, Toc, TocEntry};
use crate::schema::{DumpFacts, DumpSettings};

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
        settings: BTreeMap::new(),
        tables,
    }))
}

/// A reader that shows `see` every byte it passes on.
pub struct Tap<R, F> {
    inner: R,
    see: F,
}

impl<R, F: FnMut(&[u8])> Tap<R, F> {
    pub fn new(inner: R, see: F) -> Self {
        Tap { inner, see }
    }
}

impl<R: Read, F: FnMut(&[u8])> Read for Tap<R, F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        (self.see)(&buf[..n]);
        Ok(n)
    }
}

/// The facts of a whole custom-format archive, read as it streamed, with
/// the dump session's `settings` (see [`postgres_facts`]).
pub fn custom_archive_facts(
    archive: CustomArchiveReader,
    settings: &BTreeMap<String, String>,
) -> Result<DumpFacts, FactsError> {
    let (toc, digests) = archive.finish()?;
    postgres_facts(&toc, |entry| digests.get(&entry.dump_id).copied(), settings)
}

/// The facts of a directory dump: its `toc.dat` and the digest of each
/// data file by name, with the dump session's `settings`.
pub fn directory_facts(
    toc: &Toc,
    digests: &BTreeMap<String, CopyDigest>,
    settings: &BTreeMap<String, String>,
) -> Result<DumpFacts, FactsError> {
    postgres_facts(
        toc,
        |entry| digests.get(entry.filename.as_deref()?).copied(),
        settings,
    )
}

/// The facts of every table `toc` has data for, each digest found by
/// `digest_of`, with `settings` (the dump session's, from
/// [`crate::facts::COPY_TEXT_SETTINGS`]) and the archive's encoding. A
/// table whose data was not read is an error, never a gap in the facts.
fn postgres_facts(
    toc: &Toc,
    digest_of: impl Fn(&TocEntry) -> Option<CopyDigest>,
    settings: &BTreeMap<String, String>,
) -> Result<DumpFacts, FactsError> {
    let mut settings = settings.clone();
    if let Some(encoding) = toc.encoding() {
        settings.insert("client_encoding".to_owned(), encoding);
    }
    let mut tables = Vec::new();
    for entry in toc.table_data() {
        let name = entry.qualified_name();
        let digest = digest_of(entry)
            .ok_or_else(|| FactsError::Unexpected(format!("no data was read for table {name}")))?;
        let copy = entry
            .copy_stmt
            .as_deref()
            .ok_or_else(|| FactsError::Unexpected(format!("table {name} has no COPY statement")))?;
        tables.push((
            entry.namespace.clone().unwrap_or_default(),
            entry.tag.clone(),
            copy_columns(copy)?,
            digest,
        ));
    }
    let facts = copy_facts(tables, settings);
    tracing::info!("table facts recorded for {} table(s)", facts.tables.len());
    Ok(facts)
}
