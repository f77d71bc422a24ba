//! The key folder, end to end: a backup nobody can decrypt, or one that
//! silently leaves a recipient out, is worse than a failed job. Keys made
//! with the stock gpg CLI — expired, revoked, signing-only, malformed —
//! are put beside a good key in `<prefix>/config/public-keys/`, and the
//! job must fail naming every bad object in its status and on the
//! controller's stderr; an empty folder must refuse to run. Neither may
//! leave a manifest, an upload or an instance behind.

use std::path::Path;
use std::process::Command;

use crate::common::*;
use aws_sdk_s3::primitives::ByteStream;

fn gpg(home: &Path, args: &[&str]) -> Vec<u8> {
    run_ok(
        Command::new("gpg")
            .arg("--homedir")
            .arg(home)
            .args(["--batch", "--quiet", "--passphrase", ""])
            .args(args),
    )
    .stdout
}

fn fingerprint(home: &Path, user_id: &str) -> String {
    let listing = String::from_utf8(gpg(home, &["--with-colons", "--list-keys", user_id])).unwrap();
    listing
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .expect("a fingerprint")
        .to_owned()
}

/// Bad keys, as (object name, armored bytes), made with the gpg CLI.
fn bad_keys() -> Vec<(&'static str, Vec<u8>)> {
    let home = tempfile::tempdir().unwrap();
    let home = home.path();
    let three_days_ago = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 3 * 86_400;
    // created three days ago with a one-day lifetime: expired today
    gpg(
        home,
        &[
            "--faked-system-time",
            &format!("{three_days_ago}!"),
            "--quick-gen-key",
            "Expired <expired@backup-cloud.invalid>",
            "future-default",
            "default",
            "1d",
        ],
    );
    let expired = fingerprint(home, "expired@backup-cloud.invalid");

    // gpg writes a revocation certificate for every key it generates;
    // importing it (without the colon that guards against accidents)
    // revokes the key
    gpg(
        home,
        &[
            "--quick-gen-key",
            "Revoked <revoked@backup-cloud.invalid>",
            "future-default",
            "default",
            "never",
        ],
    );
    let revoked = fingerprint(home, "revoked@backup-cloud.invalid");
    let certificate =
        std::fs::read_to_string(home.join(format!("openpgp-revocs.d/{revoked}.rev"))).unwrap();
    let certificate = certificate.replace(":-----BEGIN PGP", "-----BEGIN PGP");
    let certificate_path = home.join("revoke.asc");
    std::fs::write(&certificate_path, certificate).unwrap();
    gpg(home, &["--import", certificate_path.to_str().unwrap()]);

    gpg(
        home,
        &[
            "--quick-gen-key",
            "Signer <signer@backup-cloud.invalid>",
            "ed25519",
            "sign",
            "never",
        ],
    );
    let signer = fingerprint(home, "signer@backup-cloud.invalid");

    let export = |fpr: &str| gpg(home, &["--armor", "--export", fpr]);
    let revoked_key = export(&revoked);
    assert!(
        String::from_utf8(gpg(home, &["--with-colons", "--list-keys", &revoked]))
            .unwrap()
            .lines()
            .any(|l| l.starts_with("pub:r:")),
        "the key was revoked"
    );
    vec![
        ("expired.asc", export(&expired)),
        ("revoked.asc", revoked_key),
        ("signing-only.asc", export(&signer)),
        (
            "malformed.asc",
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQINBGV0ZXN0IGdhcmJhZ2U=\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
                .to_vec(),
        ),
    ]
}

async fn put_key(fixture: &Fixture, name: &str, data: Vec<u8>) -> String {
    let key = format!("{}/config/public-keys/{name}", fixture.prefix);
    fixture
        .aws
        .s3
        .put_object()
        .bucket(&fixture.bucket)
        .key(&key)
        .body(ByteStream::from(data))
        .send()
        .await
        .unwrap();
    key
}

/// The promises of a job refused for its keys.
async fn assert_refused(fixture: &Fixture, output: &std::process::Output, names: &[String]) {
    assert_eq!(output.status.code(), Some(4), "{}", show(output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let status = fixture.status().await;
    assert_eq!(status["phase"], "failed", "{status}");
    let message = status["message"].as_str().unwrap();
    for name in names {
        assert!(
            message.contains(name.as_str()),
            "status names {name}: {status}"
        );
        assert!(
            stderr.contains(name.as_str()),
            "stderr names {name}: {}",
            show(output)
        );
    }
    let backups = fixture.keys(&format!("{}/backup/", fixture.prefix)).await;
    assert!(backups.is_empty(), "nothing was stored: {backups:?}");
    assert_eq!(fixture.incomplete_uploads().await, 0);
    assert_instances_gone(fixture).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_unusable_key_fails_the_job_by_name() {
    require_services();
    let database = unique("keys_");
    create_sample_database(&database, 100);
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    let mut names = Vec::new();
    for (name, data) in bad_keys() {
        names.push(put_key(&fixture, name, data).await);
    }
    let output = fixture.run_job();
    assert_refused(&fixture, &output, &names).await;
    let message = fixture.status().await["message"]
        .as_str()
        .unwrap()
        .to_owned();
    for problem in [
        "has expired",
        "is revoked",
        "has no valid encryption subkey",
    ] {
        assert!(message.contains(problem), "{problem}: {message}");
    }
    assert!(
        !message.contains("holder.asc"),
        "the good key is not blamed: {message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_key_folder_refuses_to_run() {
    require_services();
    let database = unique("nokeys_");
    create_sample_database(&database, 100);
    let holder = KeyHolder::generate("holder");
    let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
    fixture
        .aws
        .s3
        .delete_object()
        .bucket(&fixture.bucket)
        .key(format!("{}/config/public-keys/holder.asc", fixture.prefix))
        .send()
        .await
        .unwrap();
    // a folder marker is not a key
    put_key(&fixture, "", Vec::new()).await;
    let output = fixture.run_job();
    let folder = format!("{}/config/public-keys/", fixture.prefix);
    assert_refused(&fixture, &output, &[folder]).await;
    let message = fixture.status().await["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("no public keys"), "{message}");
}
