//! Proving backups restorable, end to end: a real backup taken by the real
//! binary through the instance simulator, then `verify` (and every way of
//! tampering with it), `restore`, the split-knowledge flow in separate gpg
//! homes (ours and stock gpg's), and `export` interrupted and resumed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;
use aws_sdk_s3::primitives::ByteStream;

/// Exit code of a backup that failed verification or restore.
const UNRESTORABLE: i32 = 7;

/// A finished backup of a fresh sample database.
struct Backed {
    holder: KeyHolder,
    database: String,
    fixture: Fixture,
    manifest_key: String,
    object_key: String,
}

impl Backed {
    async fn new(rows: u32) -> Backed {
        require_services();
        let holder = KeyHolder::generate("holder");
        let database = unique("rst_");
        create_sample_database(&database, rows);
        let fixture = Fixture::new(&holder, &database, &pg_backup_password()).await;
        let output = fixture.run_job();
        assert_eq!(output.status.code(), Some(0), "{}", show(&output));
        let status = fixture.status().await;
        let manifest_key = status["manifest_key"].as_str().unwrap().to_owned();
        let manifest = manifest(&fixture, &manifest_key).await;
        let object_key = manifest["objects"][0]["key"].as_str().unwrap().to_owned();
        Backed {
            holder,
            database,
            fixture,
            manifest_key,
            object_key,
        }
    }

    fn address(&self) -> String {
        format!("s3://{}/{}", self.fixture.bucket, self.manifest_key)
    }

    /// Runs backup-cloud with the fixture's config and `gnupg_home`.
    fn run(&self, args: &[&str], gnupg_home: &Path) -> Output {
        self.fixture
            .command(args)
            .env_remove("RUST_LOG")
            .env("GNUPGHOME", gnupg_home)
            .output()
            .unwrap()
    }

    /// The original dump, decrypted with stock gpg.
    async fn stock_plaintext(&self, dir: &Path) -> Vec<u8> {
        let encrypted = dir.join("stock.gpg");
        let plain = dir.join("stock.plain");
        std::fs::write(&encrypted, self.fixture.get(&self.object_key).await).unwrap();
        self.holder.decrypt_and_decompress(&encrypted, &plain);
        std::fs::read(&plain).unwrap()
    }

    async fn put(&self, key: &str, data: Vec<u8>) {
        self.fixture
            .aws
            .s3
            .put_object()
            .bucket(&self.fixture.bucket)
            .key(key)
            .body(ByteStream::from(data))
            .send()
            .await
            .unwrap();
    }

    /// Copies the backup to a sibling timestamp and returns the copy's
    /// manifest key, so each tampering case starts from a good backup.
    async fn copy(&self, timestamp: &str) -> String {
        let old_prefix = self.manifest_key.strip_suffix("manifest.json").unwrap();
        let parent = old_prefix.trim_end_matches('/').rsplit_once('/').unwrap().0;
        let new_prefix = format!("{parent}/{timestamp}/");
        let object = self.fixture.get(&self.object_key).await;
        assert!(
            self.object_key.starts_with(old_prefix),
            "{}",
            self.object_key
        );
        let new_object = self.object_key.replace(old_prefix, &new_prefix);
        self.put(&new_object, object).await;
        let text = String::from_utf8(self.fixture.get(&self.manifest_key).await).unwrap();
        assert!(
            text.contains(old_prefix),
            "the manifest names its prefix: {text}"
        );
        let new_manifest = format!("{new_prefix}manifest.json");
        self.put(
            &new_manifest,
            text.replace(old_prefix, &new_prefix).into_bytes(),
        )
        .await;
        new_manifest
    }
}

async fn manifest(fixture: &Fixture, key: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture.get(key).await).unwrap()
}

fn empty_home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_a_good_backup_and_names_every_tampered_object() {
    let backed = Backed::new(3_000).await;
    let operator = empty_home();
    let output = backed.run(&["verify", &backed.address()], operator.path());
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(
        stdout(&output).contains("ok pg_dump.custom.zst.gpg"),
        "{}",
        show(&output)
    );
    // the same verdict as one JSON object, for schedulers
    let json = |output: &Output| -> serde_json::Value {
        serde_json::from_str(stdout(output).trim())
            .unwrap_or_else(|e| panic!("{e}: {}", show(output)))
    };
    let verdict = json(&backed.run(
        &["verify", &backed.address(), "--output", "json"],
        operator.path(),
    ));
    assert_eq!(verdict["event"], "verified", "{verdict}");
    assert_eq!(verdict["passed"], true, "{verdict}");
    assert_eq!(verdict["good"][0], "pg_dump.custom.zst.gpg", "{verdict}");

    let bucket = &backed.fixture.bucket;
    let stranger = KeyHolder::generate("stranger");
    let plaintext_dir = tempfile::tempdir().unwrap();
    let plaintext = backed.stock_plaintext(plaintext_dir.path()).await;
    let original = backed.fixture.get(&backed.object_key).await;

    let cases: Vec<(&str, &str, &str)> = vec![
        (
            "flipped",
            "pg_dump.custom.zst.gpg",
            "does not match the manifest",
        ),
        ("truncated", "pg_dump.custom.zst.gpg", "truncated"),
        ("missing", "pg_dump.custom.zst.gpg", "missing"),
        ("extra", "stray.bin", "unexpected"),
        (
            "other-key",
            "pg_dump.custom.zst.gpg",
            "not encrypted to configured recipient",
        ),
        (
            "manifest-edited",
            "pg_dump.custom.zst.gpg",
            "does not match the manifest",
        ),
    ];
    for (i, (case, object, expected)) in cases.into_iter().enumerate() {
        let manifest_key = backed.copy(&format!("20990101T00000{i}Z")).await;
        let prefix = manifest_key.strip_suffix("manifest.json").unwrap();
        let object_key = format!("{prefix}pg_dump.custom.zst.gpg");
        match case {
            "flipped" => {
                let mut data = original.clone();
                let middle = data.len() / 2;
                data[middle] ^= 0x01;
                backed.put(&object_key, data).await;
            }
            "truncated" => {
                backed
                    .put(&object_key, original[..original.len() - 1000].to_vec())
                    .await;
            }
            "missing" => {
                backed
                    .fixture
                    .aws
                    .s3
                    .delete_object()
                    .bucket(bucket)
                    .key(&object_key)
                    .send()
                    .await
                    .unwrap();
            }
            "extra" => {
                backed
                    .put(&format!("{prefix}stray.bin"), b"x".to_vec())
                    .await
            }
            "other-key" => {
                // a well-formed object, with a manifest to match, but
                // encrypted to someone else
                let dir = tempfile::tempdir().unwrap();
                let plain = dir.path().join("plain");
                std::fs::write(&plain, &plaintext).unwrap();
                let encrypted = dir.path().join("enc");
                run_ok(
                    Command::new("gpg")
                        .arg("--homedir")
                        .arg(stranger.home.path())
                        .args(["--batch", "--trust-model", "always", "-r"])
                        .arg(&stranger.fingerprint)
                        .arg("-o")
                        .arg(&encrypted)
                        .arg("-e")
                        .arg(&plain),
                );
                let data = std::fs::read(&encrypted).unwrap();
                let text = String::from_utf8(backed.fixture.get(&manifest_key).await).unwrap();
                let mut edited: serde_json::Value = serde_json::from_str(&text).unwrap();
                edited["objects"][0]["size"] = data.len().into();
                edited["objects"][0]["sha256"] =
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data)).into();
                backed.put(&object_key, data).await;
                backed
                    .put(&manifest_key, serde_json::to_vec(&edited).unwrap())
                    .await;
            }
            "manifest-edited" => {
                let text = String::from_utf8(backed.fixture.get(&manifest_key).await).unwrap();
                let mut edited: serde_json::Value = serde_json::from_str(&text).unwrap();
                edited["objects"][0]["sha256"] = "0".repeat(64).into();
                backed
                    .put(&manifest_key, serde_json::to_vec(&edited).unwrap())
                    .await;
            }
            _ => unreachable!(),
        }
        let address = format!("s3://{bucket}/{manifest_key}");
        let output = backed.run(&["verify", &address], operator.path());
        assert_eq!(
            output.status.code(),
            Some(UNRESTORABLE),
            "{case}: {}",
            show(&output)
        );
        let out = stdout(&output);
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("BAD {object}: ")) && l.contains(expected)),
            "{case}: {}",
            show(&output)
        );
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(object),
            "{case}: the one-line reason names the object: {}",
            show(&output)
        );
        let output = backed.run(&["verify", &address, "--output", "json"], operator.path());
        assert_eq!(output.status.code(), Some(UNRESTORABLE), "{case}");
        let verdict = json(&output);
        assert_eq!(verdict["passed"], false, "{case}: {verdict}");
        assert_eq!(
            verdict["problems"][0]["object"], object,
            "{case}: {verdict}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn restore_streams_into_postgres_with_the_private_key() {
    let backed = Backed::new(20_000).await;
    let target = unique("rst_target_");
    psql("postgres", &format!("CREATE DATABASE {target}"));
    let url = format!(
        "postgres://postgres:{PG_ADMIN_PASSWORD}@127.0.0.1:{}/{target}",
        pg_port()
    );
    let kept = tempfile::tempdir().unwrap();
    let output = backed.run(
        &[
            "restore",
            &backed.address(),
            "--to",
            &url,
            "--keep-plaintext",
            kept.path().to_str().unwrap(),
        ],
        backed.holder.home.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(stdout(&output).contains("MB/s"), "{}", show(&output));
    assert_eq!(table_digests(&target), table_digests(&backed.database));
    let stock = backed.stock_plaintext(kept.path()).await;
    assert!(std::fs::read(kept.path().join("pg_dump.custom")).unwrap() == stock);

    // without the private key there is nothing to restore with
    let stranger = empty_home();
    let again = unique("rst_nokey_");
    psql("postgres", &format!("CREATE DATABASE {again}"));
    let output = backed.run(
        &[
            "restore",
            &backed.address(),
            "--to",
            &url.replace(&target, &again),
        ],
        stranger.path(),
    );
    assert_eq!(
        output.status.code(),
        Some(UNRESTORABLE),
        "{}",
        show(&output)
    );
}

/// The command exited 7 (unrestorable) and its report says `finding`.
fn assert_unrestorable(output: &Output, finding: &str) {
    assert_eq!(output.status.code(), Some(UNRESTORABLE), "{}", show(output));
    assert!(stdout(output).contains(finding), "{}", show(output));
}

/// The session keys file from the key holder's stock gpg, one object.
fn stock_session_keys(holder: &KeyHolder, archive: &Path, work: &Path) -> String {
    let unpacked = work.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(archive)
            .arg("-C")
            .arg(&unpacked),
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(unpacked.join("index.json")).unwrap()).unwrap();
    let mut keys = String::new();
    for object in index["objects"].as_array().unwrap() {
        let mut input = std::fs::read(unpacked.join(object["header"].as_str().unwrap())).unwrap();
        input.extend(std::fs::read(unpacked.join("stub-data-packet.bin")).unwrap());
        let request = work.join("request.gpg");
        std::fs::write(&request, &input).unwrap();
        // gpg exits non-zero (the stub is not real data) after the key
        let output = holder
            .gpg()
            .args([
                "--status-fd",
                "1",
                "--show-session-key",
                "--output",
                "/dev/null",
                "--decrypt",
            ])
            .arg(&request)
            .output()
            .unwrap();
        let status = String::from_utf8_lossy(&output.stdout);
        let key = status
            .lines()
            .find_map(|l| l.strip_prefix("[GNUPG:] SESSION_KEY "))
            .unwrap_or_else(|| panic!("no session key: {status}"));
        keys.push_str(&format!("{key} {}\n", object["key"].as_str().unwrap()));
    }
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn split_knowledge_decrypts_with_session_keys_alone() {
    let backed = Backed::new(5_000).await;
    let work = tempfile::tempdir().unwrap();
    let stock = backed.stock_plaintext(work.path()).await;

    // operator: no secret key anywhere in its gpg home
    let operator = empty_home();
    let archive = work.path().join("headers.tar");
    let output = backed.run(
        &[
            "headers",
            &backed.address(),
            "--out",
            archive.to_str().unwrap(),
        ],
        operator.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));

    // what reaches the key holder: index, stub, key packets; no ciphertext
    let unpacked = work.path().join("inspect");
    std::fs::create_dir_all(&unpacked).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&unpacked),
    );
    let mut names: Vec<_> = std::fs::read_dir(&unpacked)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "index.json",
            "pg_dump.custom.zst.gpg.pkesk",
            "stub-data-packet.bin"
        ]
    );
    let pkesk = std::fs::read(unpacked.join("pg_dump.custom.zst.gpg.pkesk")).unwrap();
    let object = backed.fixture.get(&backed.object_key).await;
    assert!(
        pkesk.len() < 200,
        "one cv25519 key packet, {} bytes",
        pkesk.len()
    );
    assert_eq!(
        &object[..pkesk.len()],
        &pkesk[..],
        "the object's own first packets"
    );
    let listing = run_ok(
        Command::new("gpg")
            .args(["--batch", "--list-packets"])
            .arg(unpacked.join("pg_dump.custom.zst.gpg.pkesk"))
            .env("GNUPGHOME", operator.path()),
    );
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains(":pubkey enc packet:"), "{listing}");
    assert!(!listing.contains("encrypted data packet"), "{listing}");

    // key holder: offline (no config, no AWS), its own gpg home
    let keys = work.path().join("session.keys");
    let output = Command::new(env!("CARGO_BIN_EXE_backup-cloud"))
        .args([
            "session-keys",
            archive.to_str().unwrap(),
            "--out",
            keys.to_str().unwrap(),
        ])
        .env("GNUPGHOME", backed.holder.home.path())
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let keys_text = std::fs::read_to_string(&keys).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // operator decrypts with the session keys alone
    let out = work.path().join("out");
    let output = backed.run(
        &[
            "decrypt",
            &backed.address(),
            "--session-keys",
            keys.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        operator.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(std::fs::read(out.join("pg_dump.custom")).unwrap() == stock);
    assert!(
        !operator.path().join("private-keys-v1.d").exists()
            || std::fs::read_dir(operator.path().join("private-keys-v1.d"))
                .unwrap()
                .next()
                .is_none(),
        "the operator never held a secret key"
    );

    // operator half with stock gpg: --override-session-key, no key at all
    let session_key = keys_text
        .lines()
        .find(|l| !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let encrypted = work.path().join("object.gpg");
    std::fs::write(&encrypted, &object).unwrap();
    let stock_out = work.path().join("stock-operator.zst");
    let stock_plain = work.path().join("stock-operator.plain");
    let bare = empty_home();
    run_ok(
        Command::new("gpg")
            .arg("--homedir")
            .arg(bare.path())
            .args(["--batch", "--override-session-key", &session_key])
            .arg("--output")
            .arg(&stock_out)
            .arg("--decrypt")
            .arg(&encrypted),
    );
    run_ok(
        Command::new("zstd")
            .args(["-q", "-d", "-o"])
            .arg(&stock_plain)
            .arg(&stock_out),
    );
    assert!(std::fs::read(&stock_plain).unwrap() == stock);

    // key holder half with stock gpg --show-session-key, operator ours,
    // restoring straight into a database
    let stock_keys = work.path().join("stock.keys");
    std::fs::write(
        &stock_keys,
        stock_session_keys(&backed.holder, &archive, work.path()),
    )
    .unwrap();
    let target = unique("rst_split_");
    psql("postgres", &format!("CREATE DATABASE {target}"));
    let url = format!(
        "postgres://postgres:{PG_ADMIN_PASSWORD}@127.0.0.1:{}/{target}",
        pg_port()
    );
    let output = backed.run(
        &[
            "decrypt",
            &backed.address(),
            "--session-keys",
            stock_keys.to_str().unwrap(),
            "--to",
            &url,
        ],
        operator.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert_eq!(table_digests(&target), table_digests(&backed.database));

    // the key holder's tool refuses an archive carrying ciphertext
    let mut smuggled = pkesk.clone();
    smuggled.extend_from_slice(&object[pkesk.len()..pkesk.len() + 4096]);
    std::fs::write(unpacked.join("pg_dump.custom.zst.gpg.pkesk"), &smuggled).unwrap();
    let bad_archive: PathBuf = work.path().join("smuggled.tar");
    run_ok(
        Command::new("tar")
            .arg("--format=ustar")
            .arg("-cf")
            .arg(&bad_archive)
            .arg("-C")
            .arg(&unpacked)
            .args([
                "index.json",
                "stub-data-packet.bin",
                "pg_dump.custom.zst.gpg.pkesk",
            ]),
    );
    let output = Command::new(env!("CARGO_BIN_EXE_backup-cloud"))
        .args(["session-keys", bad_archive.to_str().unwrap(), "--out"])
        .arg(work.path().join("never.keys"))
        .env("GNUPGHOME", backed.holder.home.path())
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("encrypted data"),
        "{}",
        show(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn export_resumes_after_interruption_and_verifies_offline() {
    let backed = Backed::new(3_000).await;
    let home = empty_home();
    let media = tempfile::tempdir().unwrap();
    let dir = media.path().join("copy");
    let dir_arg = dir.to_str().unwrap();
    let verify_dir = || {
        Command::new(env!("CARGO_BIN_EXE_backup-cloud"))
            .args(["verify", "--dir", dir_arg])
            // no network: any attempt to reach AWS would fail
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("GNUPGHOME", home.path())
            .output()
            .unwrap()
    };

    let output = backed.run(&["export", &backed.address(), "--to", dir_arg], home.path());
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(
        stdout(&output).contains("copied pg_dump.custom.zst.gpg"),
        "{}",
        show(&output)
    );
    let output = verify_dir();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));

    // interrupted: a half-written temporary and a truncated object
    let object = dir.join("pg_dump.custom.zst.gpg");
    let good = std::fs::read(&object).unwrap();
    std::fs::write(&object, &good[..good.len() / 2]).unwrap();
    std::fs::write(dir.join(".pg_dump.custom.zst.gpg.partial"), &good[..100]).unwrap();
    assert_unrestorable(&verify_dir(), "BAD pg_dump.custom.zst.gpg: truncated");

    // resumed: the bad copy is replaced, the rest is kept
    let output = backed.run(&["export", &backed.address(), "--to", dir_arg], home.path());
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let out = stdout(&output);
    assert!(out.contains("copied pg_dump.custom.zst.gpg"), "{out}");
    assert!(out.contains("present manifest.json"), "{out}");
    assert!(!dir.join(".pg_dump.custom.zst.gpg.partial").exists());
    assert!(std::fs::read(&object).unwrap() == good);
    let output = verify_dir();
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));

    // a damaged source never replaces a good copy, nor lands in a new one
    let mut damaged = good.clone();
    damaged[good.len() / 3] ^= 0xff;
    backed.put(&backed.object_key, damaged).await;
    let output = backed.run(&["export", &backed.address(), "--to", dir_arg], home.path());
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    assert!(
        stdout(&output).contains("present pg_dump.custom.zst.gpg"),
        "{}",
        show(&output)
    );
    assert!(std::fs::read(&object).unwrap() == good);
    let fresh = media.path().join("fresh");
    let output = backed.run(
        &["export", &backed.address(), "--to", fresh.to_str().unwrap()],
        home.path(),
    );
    assert_eq!(
        output.status.code(),
        Some(UNRESTORABLE),
        "{}",
        show(&output)
    );
    assert!(!fresh.join("pg_dump.custom.zst.gpg").exists());
    assert!(!fresh.join(".pg_dump.custom.zst.gpg.partial").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn drill_restores_into_a_scratch_database_and_checks_the_dump_facts() {
    let backed = Backed::new(20_000).await;
    let manifest = manifest(&backed.fixture, &backed.manifest_key).await;
    let facts = &manifest["facts"];
    // read off the dump stream: no session, no snapshot of their own
    assert_eq!(facts["method"], "postgres-copy-hash-sum-v4", "{manifest}");
    assert!(facts.get("snapshot").is_none(), "{facts}");
    assert_eq!(facts["settings"]["client_encoding"], "UTF8", "{facts}");
    assert!(facts["settings"]["TimeZone"].is_string(), "{facts}");
    let tables = facts["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 3, "{facts}");
    let customers = tables.iter().find(|t| t["table"] == "customers").unwrap();
    assert_eq!(customers["rows"], 20_000);
    assert!(
        customers["columns"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{facts}"
    );

    let server = format!(
        "postgres://postgres:{PG_ADMIN_PASSWORD}@127.0.0.1:{}/postgres",
        pg_port()
    );
    // no other drill runs while this is held, so any scratch database
    // left would be this test's own
    let _drills = DRILLS.lock().await;
    let scratch = || {
        psql(
            "postgres",
            "SELECT datname FROM pg_database WHERE datname LIKE 'backup_cloud_drill_%'",
        )
    };
    let before = scratch();
    let output = backed.run(
        &["drill", &backed.address(), "--to", &server],
        backed.holder.home.path(),
    );
    assert_eq!(output.status.code(), Some(0), "{}", show(&output));
    let out = stdout(&output);
    assert!(
        out.contains("drill passed: 3 table(s), 40000 row(s)"),
        "{out}"
    );
    assert!(out.contains("MB/s"), "{out}");
    assert_eq!(scratch(), before, "the scratch database is dropped");

    // facts that do not match the restore fail the drill, naming the table
    let mut edited = manifest.clone();
    for table in edited["facts"]["tables"].as_array_mut().unwrap() {
        if table["table"] == "orders" {
            table["rows"] = 19_999.into();
        }
    }
    backed
        .put(&backed.manifest_key, serde_json::to_vec(&edited).unwrap())
        .await;
    let output = backed.run(
        &["drill", &backed.address(), "--to", &server],
        backed.holder.home.path(),
    );
    assert_unrestorable(
        &output,
        "BAD table public.orders: 20000 rows restored, 19999 dumped",
    );
    assert_eq!(scratch(), before, "dropped after a failed drill too");
}
