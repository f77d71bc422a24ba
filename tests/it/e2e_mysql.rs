//! End to end, MySQL/MariaDB: the real binary launches an "instance" in
//! LocalStack, the simulator runs its user-data here, and the agent dumps
//! the real test MariaDB with mydumper (a directory, one object per file,
//! uploaded while the dump runs) or mysqldump (one zstd-compressed
//! stream). The tests decrypt with the `gpg` CLI, decompress with `zstd`,
//! restore with `myloader` or `mysql`, and compare every table's
//! `CHECKSUM TABLE` with the original.

use crate::common::config::{Job, MysqlMode};
use crate::common::*;
use std::process::{Command, Stdio};

/// Runs the fixture's job, returning the manifest and the backup's key
/// prefix; panics unless the run succeeded, the instance is gone and no
/// upload was left open.
async fn back_up(fixture: &Fixture) -> (serde_json::Value, String) {
    let output = fixture.run_job();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_instances_gone(fixture).await;
    assert_eq!(fixture.incomplete_uploads().await, 0);
    let status = fixture.status().await;
    assert_eq!(status["phase"], "succeeded", "{status}");
    assert!(status["bytes_expected"].as_u64().unwrap() > 0, "{status}");
    let manifest_key = status["manifest_key"].as_str().unwrap().to_owned();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fixture.get(&manifest_key).await).unwrap();
    assert_eq!(manifest["engine"], "mysql");
    assert_eq!(
        status["objects_done"].as_u64().unwrap(),
        manifest["objects"].as_array().unwrap().len() as u64
    );
    let backup_prefix = manifest_key.trim_end_matches("manifest.json").to_owned();
    (manifest, backup_prefix)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mydumper_backup_restores_with_myloader_to_identical_checksums() {
    require_mysql_services();
    let holder = KeyHolder::generate("holder");
    let (shop, crm) = create_mysql_shop_and_crm("e2e_md", 20_000, 3_000);
    let untouched = unique("e2e_md_other_");
    create_mysql_sample_database(&untouched, 10);
    let databases = [shop.as_str(), crm.as_str()];
    let before = mysql_checksums(&databases);
    assert_eq!(before.len(), 8, "{before:?}");

    let fixture = Fixture::new(&holder, "unused", &mysql_backup_password()).await;
    fixture.write(&fixture.config(Job {
        jobs: Some(2),
        rows_per_chunk: Some(5000),
        ..fixture.mysql_job(MysqlMode::Mydumper, &databases)
    }));
    let (manifest, backup_prefix) = back_up(&fixture).await;
    assert_eq!(manifest["format"], "mydumper");
    assert!(manifest["tool_versions"]["dump_tool"]
        .as_str()
        .unwrap()
        .contains("mydumper"));
    let objects = manifest["objects"].as_array().unwrap();
    assert_directory_keys(objects, &backup_prefix);
    // the many small files of these small tables go up in packs
    assert!(objects.iter().any(|o| o["packed"].is_array()), "{manifest}");
    let files = manifest_files(&manifest);
    let tables: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|o| {
            Some(format!(
                "{}.{}",
                o["database"].as_str()?,
                o["table"].as_str()?
            ))
        })
        .collect();
    assert!(tables.contains(&format!("{shop}.customers")), "{tables:?}");
    assert!(
        tables.contains(&format!("{crm}.big_customers")),
        "{tables:?}"
    );
    assert!(
        files
            .iter()
            .all(|o| !o["path"].as_str().unwrap().contains(&untouched)),
        "only the chosen databases"
    );
    let chunks = files
        .iter()
        .filter(|o| {
            o["path"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{shop}.customers."))
        })
        .count();
    assert!(
        chunks >= 2,
        "20 000 rows in chunks of 5 000: {chunks} files"
    );
    assert!(files.iter().any(|o| o["path"] == "metadata"));

    let work = tempfile::tempdir().unwrap();
    let dump = work.path().join("dump");
    restore_directory(&fixture, &holder, &manifest, &dump).await;

    drop_mysql_databases(&databases);
    run_ok(
        Command::new("myloader")
            .arg(format!("--socket={}", mysql_socket().display()))
            .args([
                "--user=root",
                "--threads=2",
                "--overwrite-tables",
                "--directory",
            ])
            .arg(&dump),
    );
    assert_eq!(mysql_checksums(&databases), before);
    for database in databases {
        let trigger = mariadb(&format!(
            "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = '{database}'"
        ));
        assert_eq!(trigger.trim(), "orders_audit");
        assert_eq!(
            mariadb(&format!("SELECT COUNT(*) FROM `{database}`.big_customers")),
            mariadb(&format!(
                "SELECT COUNT(*) FROM `{database}`.customers WHERE balance > 100"
            ))
        );
    }
    let emoji = mariadb(&format!("SELECT emoji FROM `{shop}`.orders WHERE id = 1"));
    assert_eq!(emoji.trim(), "🚀 naïve café 😀");
    drop_mysql_databases(&databases);
    drop_mysql_databases(&[&untouched]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mysqldump_backup_restores_with_mysql_to_identical_checksums() {
    require_mysql_services();
    let holder = KeyHolder::generate("holder");
    let (shop, crm) = create_mysql_shop_and_crm("e2e_sd", 10_000, 2_000);
    let databases = [shop.as_str(), crm.as_str()];
    let before = mysql_checksums(&databases);

    let fixture = Fixture::new(&holder, "unused", &mysql_backup_password()).await;
    fixture.write(&fixture.config(Job {
        compression_level: Some(5),
        ..fixture.mysql_job(MysqlMode::Mysqldump, &databases)
    }));
    let (manifest, _) = back_up(&fixture).await;
    assert_eq!(manifest["format"], "mysqldump");
    let objects = manifest["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 1, "{manifest}");
    let object = &objects[0];
    let key = object["key"].as_str().unwrap();
    assert!(key.ends_with("/mysqldump.sql.zst.gpg"), "{key}");
    assert_eq!(object["compression"], "zstd");

    // the README's pipeline: gpg --decrypt | zstd -d | mysql
    let work = tempfile::tempdir().unwrap();
    let encrypted = work.path().join("dump.sql.zst.gpg");
    std::fs::write(&encrypted, fixture.get(key).await).unwrap();
    assert!(
        std::fs::metadata(&encrypted).unwrap().len() * 2
            < object["plaintext_bytes"].as_u64().unwrap(),
        "zstd shrinks SQL text"
    );
    drop_mysql_databases(&databases);
    let pipeline = format!(
        "set -o pipefail; gpg --homedir '{home}' --batch --quiet --decrypt '{encrypted}' | zstd -q -d | mariadb --no-defaults --socket='{socket}' -u root",
        home = holder.home.path().display(),
        encrypted = encrypted.display(),
        socket = mysql_socket().display(),
    );
    run_ok(
        Command::new("bash")
            .arg("-c")
            .arg(&pipeline)
            .stdin(Stdio::null()),
    );
    assert_eq!(mysql_checksums(&databases), before);
    let trigger = mariadb(&format!(
        "SELECT trigger_name FROM information_schema.triggers WHERE trigger_schema = '{shop}'"
    ));
    assert_eq!(trigger.trim(), "orders_audit");
    drop_mysql_databases(&databases);
}

/// Seconds between two RFC 3339 timestamps of the manifest.
fn seconds(from: &serde_json::Value, to: &serde_json::Value) -> f64 {
    use time::format_description::well_known::Rfc3339;
    let parse = |v: &serde_json::Value| {
        time::OffsetDateTime::parse(v.as_str().expect("a timestamp"), &Rfc3339).unwrap()
    };
    (parse(to) - parse(from)).as_seconds_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_begin_while_the_dump_is_still_running() {
    require_mysql_services();
    let holder = KeyHolder::generate("holder");
    let database = unique("e2e_overlap_");
    // The sample tables finish within the first second; a narrow table of
    // two million rows keeps both threads dumping for several seconds more,
    // so the proof does not hang on a race between a fast dump and the
    // first upload.
    create_mysql_sample_database(&database, 20_000);
    mariadb(&format!(
        "USE `{database}`;
         CREATE TABLE filler (id INT PRIMARY KEY, v CHAR(16)) ENGINE=InnoDB;
         INSERT INTO filler SELECT seq, LEFT(MD5(seq), 16) FROM seq_1_to_2000000;"
    ));
    let fixture = Fixture::new(&holder, "unused", &mysql_backup_password()).await;
    fixture.write(&fixture.config(Job {
        database: Some(database.clone()),
        databases: None,
        jobs: Some(2),
        rows_per_chunk: Some(50_000),
        ..fixture.mysql_job(MysqlMode::Mydumper, &[])
    }));
    let (manifest, _) = back_up(&fixture).await;

    let dump_started = &manifest["dump_started_at"];
    let dump_finished = &manifest["dump_finished_at"];
    let objects = manifest["objects"].as_array().unwrap();
    let mut intervals: Vec<(f64, f64)> = objects
        .iter()
        .map(|o| {
            (
                seconds(dump_started, &o["upload_started_at"]),
                seconds(dump_started, &o["upload_finished_at"]),
            )
        })
        .collect();
    intervals.sort_by(|a, b| a.0.total_cmp(&b.0));
    let dump = seconds(dump_started, dump_finished);
    let stored_during_dump = intervals.iter().filter(|(_, end)| *end < dump).count();
    let first_stored = intervals
        .iter()
        .map(|(_, end)| *end)
        .fold(f64::INFINITY, f64::min);
    assert!(
        first_stored < dump,
        "the first object was stored {first_stored:.2}s after the dump started, \
         but the dump ran for {dump:.2}s"
    );

    // Figures, all from this one run: the wall time of dump + upload
    // against the dump's own time plus the time uploads were busy.
    let mut upload_busy = 0.0;
    let mut covered_until = f64::NEG_INFINITY;
    for (start, end) in &intervals {
        let start = start.max(covered_until);
        if *end > start {
            upload_busy += end - start;
            covered_until = *end;
        }
    }
    let total = intervals.iter().map(|(_, end)| *end).fold(dump, f64::max);
    eprintln!(
        "overlap: {} objects, {stored_during_dump} stored during the dump; \
         first stored at {:.0}% of the dump; wall/(dump + upload busy) = {:.2}; \
         wall/dump = {:.2}",
        objects.len(),
        100.0 * first_stored / dump,
        total / (dump + upload_busy),
        total / dump,
    );
    mariadb(&format!("DROP DATABASE `{database}`"));
}
