//! `restore` and `decrypt --out` for every dump format, end to end: real
//! backups taken by the real binary through the instance simulator
//! (mysqldump, mydumper, `pg_dump -Fd`), restored by `backup-cloud` into
//! fresh databases and compared table by table with the originals; and
//! `decrypt --out` proven to undo zstd and to put directory dumps back at
//! their paths, byte for byte what stock `gpg` and `zstd -d` give.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::config::{Job, MysqlMode};
use crate::common::*;

/// A MariaDB account that may restore anything, reached over TCP, whose
/// password needs escaping everywhere (URL, option file); dropped with
/// the value.
struct Restorer {
    user: String,
}

/// The password: a quote, a backslash, an `@` and a `#`.
const RESTORER_PASSWORD: &str = r#"p@ss"w\rd#1"#;

impl Restorer {
    fn create() -> Restorer {
        let user = unique("rf_restorer_");
        mariadb(&format!(
            "CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{}'; \
             GRANT ALL ON *.* TO '{user}'@'127.0.0.1'",
            RESTORER_PASSWORD.replace('\\', "\\\\")
        ));
        Restorer { user }
    }

    /// `mysql://USER@127.0.0.1:PORT/`, with the password in it or not.
    fn url(&self, with_password: bool) -> String {
        let password = if with_password {
            format!(
                ":{}",
                RESTORER_PASSWORD.replace('@', "%40").replace('#', "%23")
            )
        } else {
            String::new()
        };
        format!(
            "mysql://{}{password}@127.0.0.1:{}/",
            self.user,
            mysql_port()
        )
    }
}

impl Drop for Restorer {
    fn drop(&mut self) {
        mariadb(&format!("DROP USER '{}'@'127.0.0.1'", self.user));
    }
}

/// Every file under `dir`, relative, with its contents.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((relative, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// Operator side of split knowledge: headers → key holder's session keys.
fn session_keys(fixture: &Fixture, holder: &KeyHolder, address: &str, work: &Path) -> String {
    let operator = tempfile::tempdir().unwrap();
    let archive = work.join("headers.tar");
    let output = restore_side(
        fixture,
        &["headers", address, "--out", archive.to_str().unwrap()],
        operator.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let keys = work.join("session.keys");
    let output = Command::new(env!("CARGO_BIN_EXE_backup-cloud"))
        .args(["session-keys", archive.to_str().unwrap(), "--out"])
        .arg(&keys)
        .env("GNUPGHOME", holder.home.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    keys.to_str().unwrap().to_owned()
}

/// `decrypt BACKUP --session-keys … --out` as an operator with an empty
/// gpg home, the key holder's session keys made first; returns the
/// output directory.
fn decrypt_with_session_keys(
    fixture: &Fixture,
    holder: &KeyHolder,
    address: &str,
    work: &Path,
) -> PathBuf {
    let keys = session_keys(fixture, holder, address, work);
    let out = work.join("out");
    let output = restore_side(
        fixture,
        &[
            "decrypt",
            address,
            "--session-keys",
            &keys,
            "--out",
            out.to_str().unwrap(),
        ],
        tempfile::tempdir().unwrap().path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    out
}

/// The drill's scratch databases on the MySQL server, one per line.
fn drill_scratch_databases() -> String {
    mariadb("SHOW DATABASES LIKE 'backup\\_cloud\\_drill\\_%'")
}

/// `drill` into the MySQL server: it passes with `counts` ("N table(s),
/// M row(s)") and leaves no scratch database behind; returns its output.
/// The caller holds [`DRILLS`].
fn mysql_drill_passes(
    fixture: &Fixture,
    holder: &KeyHolder,
    address: &str,
    counts: &str,
) -> String {
    let leftover = drill_scratch_databases();
    let out = drill_passes(fixture, holder, address, &mysql_root_url(), counts);
    assert_eq!(
        drill_scratch_databases(),
        leftover,
        "the scratch databases are dropped"
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mysqldump_backup_restores_drills_and_decrypts_through_zstd() {
    require_mysql_services();
    let holder = KeyHolder::generate("holder");
    let (shop, crm) = create_mysql_shop_and_crm("rf_sd", 5_000, 1_000);
    let databases = [shop.as_str(), crm.as_str()];
    let before = mysql_checksums(&databases);

    let fixture = Fixture::new(&holder, "unused", &mysql_backup_password()).await;
    fixture.write(&fixture.config(fixture.mysql_job(MysqlMode::Mysqldump, &databases)));
    let (manifest, address) = back_up(&fixture).await;
    let object = &manifest["objects"][0];
    assert_eq!(object["compression"], "zstd", "{manifest}");

    // decrypt --out undoes zstd: what stock gpg | zstd -d gives
    let work = tempfile::tempdir().unwrap();
    let stock = work.path().join("stock");
    restore_directory_single(&fixture, &holder, object, &stock).await;
    let out = decrypt_with_session_keys(&fixture, &holder, &address, work.path());
    let decrypted = std::fs::read(out.join("mysqldump.sql")).unwrap();
    assert!(decrypted == std::fs::read(&stock).unwrap());
    assert_eq!(
        decrypted.len() as u64,
        object["plaintext_bytes"].as_u64().unwrap()
    );

    // restore streams download → gpg → zstd -d → mysql, the password
    // from MYSQL_PWD (handed on in an option file, never on argv)
    drop_mysql_databases(&databases);
    let restorer = Restorer::create();
    // as the restore side's IAM user, like every restore
    let output = fixture
        .command(&["restore", &address, "--to", &restorer.url(false)])
        .env_remove("RUST_LOG")
        .env("GNUPGHOME", holder.home.path())
        .env("MYSQL_PWD", RESTORER_PASSWORD)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(mysql_checksums(&databases), before);

    // drill: the stream's databases renamed into scratch databases
    let _drills = DRILLS.lock().await;
    mysql_drill_passes(&fixture, &holder, &address, "8 table(s), 18000 row(s)");
    assert_eq!(
        mysql_checksums(&databases),
        before,
        "the originals untouched"
    );
    drop_mysql_databases(&databases);
}

/// Stock gpg and zstd for one object, to `target`.
async fn restore_directory_single(
    fixture: &Fixture,
    holder: &KeyHolder,
    object: &serde_json::Value,
    target: &Path,
) {
    let work = tempfile::tempdir().unwrap();
    let encrypted = work.path().join("object.gpg");
    std::fs::write(
        &encrypted,
        fixture.get(object["key"].as_str().unwrap()).await,
    )
    .unwrap();
    holder.decrypt_and_decompress(&encrypted, target);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mydumper_backup_restores_with_myloader_and_drills() {
    require_mysql_services();
    let holder = KeyHolder::generate("holder");
    let (shop, crm) = create_mysql_shop_and_crm("rf_md", 12_000, 1_000);
    let databases = [shop.as_str(), crm.as_str()];
    let before = mysql_checksums(&databases);

    let fixture = Fixture::new(&holder, "unused", &mysql_backup_password()).await;
    fixture.write(&fixture.config(Job {
        jobs: Some(2),
        rows_per_chunk: Some(5000),
        ..fixture.mysql_job(MysqlMode::Mydumper, &databases)
    }));
    let (manifest, address) = back_up(&fixture).await;
    assert_eq!(manifest["format"], "mydumper");
    let facts = &manifest["facts"];
    assert_eq!(facts["method"], "mysql-checksum-table-v1", "{manifest}");
    assert_eq!(facts["tables"].as_array().unwrap().len(), 8, "{facts}");

    // decrypt --out puts every file back at its path, decompressed
    let work = tempfile::tempdir().unwrap();
    let stock = work.path().join("stock");
    restore_directory(&fixture, &holder, &manifest, &stock).await;
    let out = decrypt_with_session_keys(&fixture, &holder, &address, work.path());
    assert!(
        files(&out) == files(&stock),
        "decrypt --out differs from stock gpg + zstd"
    );

    // restore: decrypt into private scratch space → myloader, the
    // password from the URL (handed on in an option file, never on argv)
    drop_mysql_databases(&databases);
    let restorer = Restorer::create();
    let tmp = tempfile::tempdir().unwrap();
    // as the restore side's IAM user, like every restore
    let output = fixture
        .command(&["restore", &address, "--to", &restorer.url(true)])
        .env_remove("RUST_LOG")
        .env("GNUPGHOME", holder.home.path())
        .env("TMPDIR", tmp.path())
        .env_remove("MYSQL_PWD")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(mysql_checksums(&databases), before);
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "scratch plaintext and option files are removed: {leftovers:?}"
    );

    // drill: scratch databases, compared with the facts from dump time
    let _drills = DRILLS.lock().await;
    let out = mysql_drill_passes(&fixture, &holder, &address, "8 table(s), 39000 row(s)");
    assert!(
        out.contains("note: MySQL facts were taken after the dump"),
        "{out}"
    );

    // a checksum that does not match fails the drill, naming the table
    let mut edited = manifest.clone();
    for table in edited["facts"]["tables"].as_array_mut().unwrap() {
        if table["schema"] == crm.as_str() && table["table"] == "orders" {
            table["checksum"] = "12345".into();
        }
    }
    let manifest_key = address
        .strip_prefix(&format!("s3://{}/", fixture.bucket))
        .unwrap();
    fixture
        .aws
        .s3
        .put_object()
        .bucket(&fixture.bucket)
        .key(manifest_key)
        .body(serde_json::to_vec(&edited).unwrap().into())
        .send()
        .await
        .unwrap();
    let leftover = drill_scratch_databases();
    let output = restore_side(
        &fixture,
        &["drill", &address, "--to", &mysql_root_url()],
        holder.home.path(),
    );
    assert_eq!(output.status.code(), Some(7), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout)
            .contains(&format!("BAD table {crm}.orders: checksum ")),
        "{}",
        show(&output)
    );
    assert_eq!(
        drill_scratch_databases(),
        leftover,
        "dropped after a failed drill too"
    );
    drop_mysql_databases(&databases);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_directory_backup_restores_with_pg_restore_jobs_and_drills() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let database = unique("rf_dir_");
    create_sample_database(&database, 10_000);
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    fixture.write(&fixture.config(fixture.postgres_directory_job(&database)));
    let (manifest, address) = back_up(&fixture).await;
    assert_eq!(manifest["format"], "pg_dump-directory");

    let restored = unique("rf_dir_restored_");
    psql("postgres", &format!("CREATE DATABASE {restored}"));
    let url = format!(
        "postgres://postgres:{PG_ADMIN_PASSWORD}@127.0.0.1:{}/{restored}",
        pg_port()
    );
    let output = restore_side(
        &fixture,
        &["restore", &address, "--to", &url],
        holder.home.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let original = table_digests(&database);
    assert_eq!(original.len(), 3, "{original:?}");
    assert_eq!(table_digests(&restored), original);

    // and the drill: pg_restore --jobs into a scratch database, the facts
    // taken in the dump's own snapshot; it holds the lock because its
    // scratch database would show in another drill's check
    let _drills = DRILLS.lock().await;
    let server = format!(
        "postgres://postgres:{PG_ADMIN_PASSWORD}@127.0.0.1:{}/postgres",
        pg_port()
    );
    let output = restore_side(
        &fixture,
        &["drill", &address, "--to", &server],
        holder.home.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        out.contains("drill passed: 3 table(s), 20000 row(s)"),
        "{out}"
    );
}

/// Issue 11, bug 2: a drill of a database with thousands of tables hung
/// for ever: the facts query written to the `mysql` client's stdin and
/// its answer read from its stdout, one after the other, each larger than
/// a pipe holds. 2,000 one-row tables put well over 64 KiB through both
/// pipes, on the agent's side (the facts at dump time) and the drill's.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_of_two_thousand_tables_backs_up_and_drills() {
    const TABLES: u32 = 2_000;
    require_mysql_services();
    let holder = KeyHolder::generate("holder");
    let database = unique("rf_many_");
    let mut script = format!("CREATE DATABASE {database}; USE {database};\n");
    for n in 0..TABLES {
        script.push_str(&format!(
            "CREATE TABLE table_with_a_long_name_{n:05} (id int PRIMARY KEY, note varchar(40));\n\
             INSERT INTO table_with_a_long_name_{n:05} VALUES ({n}, 'row of table {n}');\n"
        ));
    }
    let created = backup_cloud::process::run_with_input(mariadb_root(), script.as_bytes()).unwrap();
    assert!(created.status.success(), "{created:?}");

    let fixture = Fixture::new(&holder, "unused", &mysql_backup_password()).await;
    fixture.write(&fixture.config(fixture.mysql_job(MysqlMode::Mysqldump, &[&database])));
    let (manifest, address) = back_up(&fixture).await;
    let tables = manifest["facts"]["tables"].as_array().unwrap().len();
    assert_eq!(tables, TABLES as usize, "the facts cover every table");

    let _drills = DRILLS.lock().await;
    mysql_drill_passes(
        &fixture,
        &holder,
        &address,
        &format!("{TABLES} table(s), {TABLES} row(s)"),
    );
    drop_mysql_databases(&[&database]);
}
