//! `drill`: a restore rehearsal. Restores a backup into a scratch database,
//! compares every table against the facts the agent recorded at dump time
//! (row counts and checksums, from the dump's own snapshot), reports the
//! restore throughput, and drops the scratch database.
//!
//! A backup whose drill passes has been proven restorable, complete and
//! unaltered down to the rows, with today's tools, at a measured speed.
//!
//! PostgreSQL (custom or directory format): one scratch database beside
//! the one in the URL. MySQL: one scratch database per
//! database dumped, each loaded with `myloader --source-db` (mydumper) or
//! renamed in the stream (mysqldump, see
//! [`super::engine::RenameDatabases`]); MySQL facts
//! come from their own transaction, not the dump's (see
//! [`crate::facts`]), and the report says so.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::engine::{Shape, Target};
use super::pipeline::{self, Restored, Sink};
use super::store::Backup;
use super::RestoreError;
use crate::facts::{self, parse_fact, CopyScriptOutput, MYSQL_METHOD, POSTGRES_COPY_METHOD};
use crate::openpgp::Decryptor;
use crate::schema::{DumpFacts, Manifest, TableFacts};

/// What a MySQL drill's report adds about its facts.
pub const MYSQL_FACTS_NOTE: &str = "MySQL facts were taken after the dump in a transaction of their own, not in the dump's snapshot: they equal the dump only if nothing wrote to the database meanwhile, so a difference on a busy database may be a write, not damage";

/// What a drill found.
#[derive(Debug)]
pub struct DrillReport {
    pub restored: Restored,
    pub tables: usize,
    pub rows: u64,
    /// Differences between the restore and the recorded facts.
    pub problems: Vec<String>,
    /// The scratch database(s), comma-separated.
    pub scratch_database: String,
    /// What the comparison can and cannot prove, when it is not exact.
    pub note: Option<&'static str>,
}

impl DrillReport {
    fn new(
        restored: Restored,
        facts: &DumpFacts,
        problems: Vec<String>,
        scratch_database: String,
        note: Option<&'static str>,
    ) -> DrillReport {
        DrillReport {
            restored,
            tables: facts.tables.len(),
            rows: facts.tables.iter().map(|t| t.rows).sum(),
            problems,
            scratch_database,
            note,
        }
    }
}

/// Drills `backup` on the server at `server` (any database on it; the
/// scratch database is created beside it), with the private key from the
/// gpg keyring. `keep` leaves the scratch database for inspection.
pub async fn drill(
    backup: &Backup,
    server: &Target,
    keep: bool,
) -> Result<DrillReport, RestoreError> {
    let manifest = backup.manifest().await?;
    server.check_backup(&manifest)?;
    let facts = manifest.facts.as_ref().ok_or_else(|| {
        RestoreError::Failed(
            "the manifest records no table facts (taken by an older agent): nothing to drill against; use restore"
                .to_owned(),
        )
    })?;
    let known = match server {
        Target::Mysql(_) => facts.method == MYSQL_METHOD,
        Target::Postgres { .. } => {
            facts.method == POSTGRES_COPY_METHOD
                || facts::postgres_facts_script(&facts.method).is_some()
        }
    };
    if !known {
        let method = match server {
            Target::Mysql(_) => MYSQL_METHOD,
            Target::Postgres { .. } => POSTGRES_COPY_METHOD,
        };
        return Err(RestoreError::Failed(format!(
            "the facts use method {}; this build checks {method}",
            facts.method
        )));
    }
    if let Target::Mysql(_) = server {
        return drill_mysql(backup, &manifest, server, facts, keep).await;
    }
    let scratch = format!("backup_cloud_drill_{:08x}", rand::random::<u32>());
    let admin = server.clone();
    let create = format!("CREATE DATABASE {scratch}");
    tokio::task::spawn_blocking(move || admin.sql(&create))
        .await
        .map_err(RestoreError::crashed)??;
    let target = server.with_database(&scratch);
    let outcome = restore_and_compare(backup, &manifest, &target, facts).await;
    if !keep {
        drop_scratch(
            server,
            format!("DROP DATABASE IF EXISTS {scratch}"),
            &scratch,
        )
        .await?;
    }
    let (restored, problems) = outcome?;
    Ok(DrillReport::new(restored, facts, problems, scratch, None))
}

/// The MySQL drill: every dumped database into a scratch database of its
/// own, then the MySQL facts of each compared with the recorded ones.
async fn drill_mysql(
    backup: &Backup,
    manifest: &Manifest,
    server: &Target,
    facts: &DumpFacts,
    keep: bool,
) -> Result<DrillReport, RestoreError> {
    let stem = format!("backup_cloud_drill_{:08x}", rand::random::<u32>());
    let databases: BTreeSet<&str> = facts.tables.iter().map(|t| t.schema.as_str()).collect();
    let scratch: Vec<(String, String)> = databases
        .into_iter()
        .enumerate()
        .map(|(i, d)| (d.to_owned(), format!("{stem}_{i}")))
        .collect();
    let outcome =
        restore_and_compare_mysql(backup, manifest, server, &scratch, &facts.tables).await;
    if !keep {
        for (_, database) in &scratch {
            let drop = format!("DROP DATABASE IF EXISTS `{database}`");
            drop_scratch(server, drop, database).await?;
        }
    }
    let (restored, problems) = outcome?;
    let names = scratch.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>();
    Ok(DrillReport::new(
        restored,
        facts,
        problems,
        names.join(", "),
        Some(MYSQL_FACTS_NOTE),
    ))
}

/// Decrypts once, loads each `(dumped, scratch)` database, and compares.
async fn restore_and_compare_mysql(
    backup: &Backup,
    manifest: &Manifest,
    server: &Target,
    scratch: &[(String, String)],
    recorded: &[TableFacts],
) -> Result<(Restored, Vec<String>), RestoreError> {
    let started = Instant::now();
    let decryptor_for = |_: &crate::schema::ManifestObject| Ok(Decryptor::Keyring(None));
    let (dir, mut restored) = match server.check_backup(manifest)? {
        Shape::Directory => {
            let (dir, restored) =
                pipeline::decrypt_to_scratch(backup, manifest, &decryptor_for).await?;
            for (dumped, database) in scratch {
                let admin = server.clone();
                let create = format!("CREATE DATABASE `{database}`");
                tokio::task::spawn_blocking(move || admin.sql(&create))
                    .await
                    .map_err(RestoreError::crashed)??;
                let target = server.with_database(database);
                pipeline::restore_directory(&target, dir.path(), Some(dumped)).await?;
            }
            (Some(dir), restored)
        }
        Shape::Stream => {
            // mysqldump names its databases in the stream: renamed there
            let sink = Sink::Database {
                target: server.renaming(scratch),
                keep_plaintext: None,
            };
            let restored = pipeline::restore(backup, manifest, &decryptor_for, &sink).await?;
            (None, restored)
        }
    };
    let mut found = BTreeMap::new();
    for (dumped, database) in scratch {
        let (admin, database, dumped) = (server.clone(), database.clone(), dumped.clone());
        let tables = tokio::task::spawn_blocking(move || -> Result<_, RestoreError> {
            let failed = |e: facts::FactsError| RestoreError::Failed(e.to_string());
            let listing = admin.sql(&facts::mysql_tables_query(&[database]))?;
            let tables = facts::parse_mysql_tables(&listing).map_err(failed)?;
            let names: Vec<(String, String)> = tables
                .iter()
                .map(|(_, t)| (dumped.clone(), t.clone()))
                .collect();
            let output = admin.sql_script(&facts::mysql_facts_script(&tables))?;
            facts::parse_mysql_facts(&names, &output).map_err(failed)
        })
        .await
        .map_err(RestoreError::crashed)??;
        for fact in tables {
            found.insert((fact.schema.clone(), fact.table.clone()), fact);
        }
    }
    drop(dir); // deletes the plaintext
    restored.elapsed = started.elapsed();
    Ok((restored, compare(recorded, found)))
}

async fn restore_and_compare(
    backup: &Backup,
    manifest: &crate::schema::Manifest,
    target: &Target,
    recorded: &DumpFacts,
) -> Result<(Restored, Vec<String>), RestoreError> {
    let copy_script = if recorded.method == POSTGRES_COPY_METHOD {
        let script = facts::postgres_copy_script(recorded).ok_or_else(|| {
            RestoreError::Failed(
                "the manifest's table facts lack the dump's column lists".to_owned(),
            )
        })?;
        Some(script)
    } else {
        None
    };
    let sink = Sink::Database {
        target: target.clone(),
        keep_plaintext: None,
    };
    let decryptor_for = |_: &crate::schema::ManifestObject| Ok(Decryptor::Keyring(None));
    let restored = pipeline::restore(backup, manifest, &decryptor_for, &sink).await?;
    if let Some(script) = copy_script {
        let found = read_back(target, script, recorded.tables.clone()).await?;
        return Ok((restored, compare(&recorded.tables, found)));
    }
    let script = facts::postgres_facts_script(&recorded.method)
        .expect("the method was checked before the restore");
    let scratch = target.clone();
    let output = tokio::task::spawn_blocking(move || scratch.sql_script(script))
        .await
        .map_err(RestoreError::crashed)??;
    let mut found = BTreeMap::new();
    for line in output
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
    {
        let fact = parse_fact(line).map_err(|e| RestoreError::Failed(e.to_string()))?;
        found.insert((fact.schema.clone(), fact.table.clone()), fact);
    }
    Ok((restored, compare(&recorded.tables, found)))
}

/// The facts of the restored `tables` ([`POSTGRES_COPY_METHOD`]): `script`
/// (from [`facts::postgres_copy_script`]) reads each back with COPY, and
/// its output is digested as it streams, however large the tables.
async fn read_back(
    target: &Target,
    script: String,
    tables: Vec<TableFacts>,
) -> Result<BTreeMap<(String, String), TableFacts>, RestoreError> {
    let target = target.clone();
    tokio::task::spawn_blocking(move || {
        let mut output = CopyScriptOutput::default();
        target
            .psql_script_streamed(&script, |chunk| output.feed(chunk))
            .expect("a PostgreSQL target")?;
        let found = output
            .finish(&tables)
            .map_err(|e| RestoreError::Failed(format!("reading the restore back: {e}")))?;
        Ok(found
            .into_iter()
            .map(|fact| ((fact.schema.clone(), fact.table.clone()), fact))
            .collect())
    })
    .await
    .map_err(RestoreError::crashed)?
}

/// Every difference between the recorded facts and the restored ones.
fn compare(
    recorded: &[TableFacts],
    mut found: BTreeMap<(String, String), TableFacts>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for expected in recorded {
        let name = format!("{}.{}", expected.schema, expected.table);
        match found.remove(&(expected.schema.clone(), expected.table.clone())) {
            None => problems.push(format!("table {name} is missing from the restore")),
            Some(actual) if actual.rows != expected.rows => problems.push(format!(
                "table {name}: {} rows restored, {} dumped",
                actual.rows, expected.rows
            )),
            Some(actual) if actual.checksum != expected.checksum => problems.push(format!(
                "table {name}: checksum {} differs from the dump's {}",
                actual.checksum, expected.checksum
            )),
            Some(_) => {}
        }
    }
    for (schema, table) in found.keys() {
        problems.push(format!(
            "table {schema}.{table} was restored but not dumped"
        ));
    }
    problems
}

/// Drops a drill's scratch database; a failure only warns, since the drill's
/// verdict is already made.
async fn drop_scratch(server: &Target, drop: String, name: &str) -> Result<(), RestoreError> {
    let admin = server.clone();
    let dropped = tokio::task::spawn_blocking(move || admin.sql(&drop))
        .await
        .map_err(RestoreError::crashed)?;
    if let Err(err) = dropped {
        eprintln!("warning: scratch database {name} was not dropped: {err}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(table: &str, rows: u64, checksum: &str) -> TableFacts {
        TableFacts {
            schema: "public".into(),
            table: table.into(),
            rows,
            checksum: checksum.into(),
            columns: None,
        }
    }

    #[test]
    fn every_difference_is_named() {
        let recorded = [fact("a", 1, "x"), fact("b", 2, "y"), fact("c", 3, "z")];
        let found: BTreeMap<_, _> = [fact("a", 1, "x"), fact("b", 1, "y"), fact("d", 0, "0")]
            .into_iter()
            .map(|f| (("public".to_owned(), f.table.clone()), f))
            .collect();
        assert_eq!(
            compare(&recorded, found),
            [
                "table public.b: 1 rows restored, 2 dumped",
                "table public.c is missing from the restore",
                "table public.d was restored but not dumped",
            ]
        );
        let same: BTreeMap<_, _> = recorded
            .iter()
            .map(|f| (("public".to_owned(), f.table.clone()), f.clone()))
            .collect();
        assert!(compare(&recorded, same).is_empty());
    }
}
