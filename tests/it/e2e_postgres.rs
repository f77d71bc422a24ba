//! End to end, PostgreSQL: the real binary launches an "instance" in
//! LocalStack, the instance simulator runs its user-data on this machine,
//! the agent dumps a real database through GPGME into S3, and the test
//! proves the result with stock tools: `gpg --decrypt` and `pg_restore`.

use crate::common::*;
use sha2::{Digest, Sha256};
use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_backup_restores_to_identical_contents() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let database = unique("e2e_ok_");
    create_sample_database(&database, 40_000);
    let size: u64 = psql(&database, "SELECT pg_database_size(current_database())")
        .trim()
        .parse()
        .unwrap();
    assert!(
        size > 10 * 1024 * 1024,
        "sample database is only {size} bytes"
    );

    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    let output = fixture.run_job();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));

    assert_instances_gone(&fixture).await;
    assert_eq!(fixture.incomplete_uploads().await, 0);

    let status = fixture.status().await;
    assert_eq!(status["phase"], "succeeded", "{status}");
    let manifest_key = status["manifest_key"].as_str().unwrap().to_owned();
    let backup_prefix = fixture.backup_prefix();
    assert!(manifest_key.starts_with(&backup_prefix), "{manifest_key}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&manifest_key),
        "summary names the manifest: {stdout}"
    );

    let manifest: serde_json::Value =
        serde_json::from_slice(&fixture.get(&manifest_key).await).unwrap();
    assert_eq!(manifest["job_name"], fixture.job.as_str());
    assert_eq!(manifest["engine"], "postgres");
    assert_eq!(
        manifest["recipients"],
        serde_json::json!([holder.fingerprint.clone()])
    );
    assert!(manifest["tool_versions"]["dump_tool"]
        .as_str()
        .unwrap()
        .contains("pg_dump"));
    let objects = manifest["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 1, "{manifest}");
    let object = &objects[0];
    let key = object["key"].as_str().unwrap();
    assert!(key.ends_with("/pg_dump.custom.zst.gpg"), "{key}");
    assert_eq!(object["compression"], "zstd", "{manifest}");

    // Nothing under the backup's prefix but the object and the manifest.
    let mut listed = fixture.keys(&backup_prefix).await;
    listed.sort();
    let mut expected = vec![key.to_owned(), manifest_key.clone()];
    expected.sort();
    assert_eq!(listed, expected);

    let ciphertext = fixture.get(key).await;
    assert_eq!(ciphertext.len() as u64, object["size"].as_u64().unwrap());
    assert_eq!(
        hex::encode(Sha256::digest(&ciphertext)),
        object["sha256"].as_str().unwrap(),
        "the manifest's SHA-256 matches the stored ciphertext"
    );

    let work = tempfile::tempdir().unwrap();
    let encrypted = work.path().join("dump.gpg");
    let dump = work.path().join("dump.pgcustom");
    std::fs::write(&encrypted, &ciphertext).unwrap();
    holder.decrypt_and_decompress(&encrypted, &dump);
    assert_eq!(
        std::fs::metadata(&dump).unwrap().len(),
        object["plaintext_bytes"].as_u64().unwrap()
    );

    let restored = pg_restore_into_new_database("e2e_restored_", &dump, &[]);
    let original = table_digests(&database);
    assert_eq!(original.len(), 3, "{original:?}");
    assert_eq!(table_digests(&restored), original);
    let view = psql(&restored, "SELECT count(*) FROM big_customers");
    assert_eq!(view, psql(&database, "SELECT count(*) FROM big_customers"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_fails_cleanly() {
    require_services();
    let holder = KeyHolder::generate("holder");
    let database = unique("e2e_badpw_");
    create_sample_database(&database, 1_000);
    let wrong_password = "definitely-not-the-password-7f3a";
    let fixture = Fixture::new(&holder, &database, wrong_password).await;

    let output = fixture.run_job();
    assert_eq!(output.status.code(), Some(4), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("password authentication failed"),
        "the reason reaches the operator: {stderr}"
    );

    let (status, keys) = fixture.assert_failed_without_manifest().await;
    let message = status["message"].as_str().unwrap();
    assert!(
        message.contains("password authentication failed"),
        "{message}"
    );

    let everything = format!("{}{}{status}", show(&output), keys.join(" "));
    assert!(!everything.contains(wrong_password), "the password leaked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_mistake_exits_2_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[storage]\nbucket = \"Not_A_Bucket\"\n[jobs.a]\nengine = \"postgres\"\nhost = \"h\"\nuser = \"u\"\ndatabase = \"d\"\npassword_parameter = \"/p\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_backup-cloud"))
        .args(["run", "--job", "a", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.toml") && stderr.contains("`storage.bucket`"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}
