//! The restore-side subcommands: their clap definitions, and how each one's
//! outcome is printed and mapped to an exit code. Kept here so `cli.rs`
//! only flattens them in and `main` stays thin.

use std::path::PathBuf;

use clap::Subcommand;

use super::engine::Target;
use super::pipeline::{mb_per_s, Restored, Sink};
use super::{drill, export, headers, pipeline, verify, RestoreError};
use crate::credentials;
use crate::exit::Exit;
use crate::openpgp::Decryptor;

#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Prove a backup whole and encrypted to exactly the configured keys
    /// (needs no private key). Exits 7 if anything is wrong.
    Verify {
        /// s3://BUCKET/PREFIX/backup/JOB/TIMESTAMP/ or …/manifest.json
        #[arg(required_unless_present = "dir", conflicts_with = "dir")]
        backup: Option<String>,
        /// Check an offline copy made by `export` instead (no network).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Operator: write an archive of every object's key packets (PKESK),
    /// for the key holder's `session-keys` or `gpg --show-session-key`.
    Headers {
        backup: String,
        /// The archive to write (a tar file).
        #[arg(long)]
        out: PathBuf,
    },
    /// Key holder, offline: recover each object's session key from a
    /// headers archive with the private key in the gpg keyring. Never
    /// needs or sees backup data.
    SessionKeys {
        /// The headers archive.
        file: PathBuf,
        /// The session keys file to write (readable by you only).
        #[arg(long)]
        out: PathBuf,
    },
    /// Operator: decrypt (or restore) a backup with session keys alone; no
    /// private key needed.
    Decrypt {
        backup: String,
        /// The session keys file from `session-keys`.
        #[arg(long)]
        session_keys: PathBuf,
        /// Write each object's plaintext into this folder.
        #[arg(long, required_unless_present = "to", conflicts_with = "to")]
        out: Option<PathBuf>,
        /// Restore into this database instead (postgres://… or mysql://…).
        #[arg(long, value_name = "URL")]
        to: Option<String>,
    },
    /// Restore a backup into a database, decrypting with the private key in
    /// the local gpg keyring/agent; streams, with no plaintext on disk
    /// (directory dumps: in a private scratch directory, deleted after).
    Restore {
        backup: String,
        /// The database to restore into: postgres://…/DATABASE, or
        /// mysql://USER:PASSWORD@HOST:PORT/ (the dump's own databases; the
        /// password may instead come from MYSQL_PWD or the client's option
        /// files; `?socket=PATH` for a local socket).
        #[arg(long, value_name = "URL")]
        to: String,
        /// Also keep each object's plaintext in this folder (a directory
        /// dump is then restored from there).
        #[arg(long, value_name = "DIR")]
        keep_plaintext: Option<PathBuf>,
    },
    /// Rehearse a restore: restore into a scratch database on the server at
    /// URL, compare every table with the facts recorded at dump time,
    /// report the throughput, drop the scratch database.
    Drill {
        backup: String,
        /// A database on the server to drill on (postgres://…), or a MySQL
        /// server (mysql://…/); the scratch database(s) are created there.
        #[arg(long, value_name = "URL")]
        to: String,
        /// Leave the scratch database in place.
        #[arg(long)]
        keep: bool,
    },
    /// Copy a backup (objects, manifest, public keys) onto offline media,
    /// verifying every file; rerun to resume.
    Export {
        backup: String,
        /// The folder to copy into.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
}

/// Runs one restore-side command.
///
/// `config` is the global `--config`: AWS endpoint/region and the storage
/// prefix.
pub async fn dispatch(
    command: RestoreCommand,
    config: Option<&std::path::Path>,
) -> (Exit, Option<anyhow::Error>) {
    match run(command, config).await {
        Ok(exit) => (exit, None),
        Err(err) => (err.exit(), Some(err.into())),
    }
}

async fn run(
    command: RestoreCommand,
    config: Option<&std::path::Path>,
) -> Result<Exit, RestoreError> {
    match command {
        RestoreCommand::Verify { backup, dir } => {
            let backup = super::open_either(backup.as_deref(), dir.as_deref(), config).await?;
            let report = verify::verify(&backup).await?;
            for name in &report.good {
                println!("ok {name}");
            }
            for problem in &report.problems {
                println!("BAD {}: {}", problem.object, problem.problem);
            }
            let where_ = backup.store.location(&backup.prefix);
            if report.problems.is_empty() {
                println!(
                    "verified {where_}: {} object(s), {} bytes, {:.1} MB/s",
                    report.good.len(),
                    report.bytes,
                    mb_per_s(report.bytes, report.elapsed)
                );
                Ok(Exit::Success)
            } else {
                Err(RestoreError::Failed(format!(
                    "{} problem(s) in {where_}; first: {}: {}",
                    report.problems.len(),
                    report.problems[0].object,
                    report.problems[0].problem
                )))
            }
        }
        RestoreCommand::Headers { backup, out } => {
            let backup = super::open(&backup, config).await?;
            let archive = headers::headers(&backup).await?;
            std::fs::write(&out, &archive).map_err(|e| {
                RestoreError::Failed(format!("cannot write {}: {e}", out.display()))
            })?;
            println!("wrote {} ({} bytes)", out.display(), archive.len());
            Ok(Exit::Success)
        }
        RestoreCommand::SessionKeys { file, out } => {
            let archive = std::fs::read(&file).map_err(|e| {
                RestoreError::Failed(format!("cannot read {}: {e}", file.display()))
            })?;
            let keys = tokio::task::spawn_blocking(move || headers::session_keys(&archive, None))
                .await
                .map_err(RestoreError::crashed)??;
            credentials::write_private(&out, keys.as_bytes()).map_err(|e| {
                RestoreError::Failed(format!("cannot write {}: {e}", out.display()))
            })?;
            println!("wrote {}", out.display());
            Ok(Exit::Success)
        }
        RestoreCommand::Decrypt {
            backup,
            session_keys,
            out,
            to,
        } => {
            let text = std::fs::read_to_string(&session_keys).map_err(|e| {
                RestoreError::Failed(format!("cannot read {}: {e}", session_keys.display()))
            })?;
            let keys = headers::parse_session_keys(&text)?;
            let backup = super::open(&backup, config).await?;
            let manifest = backup.manifest().await?;
            let sink = match (out, to) {
                (Some(dir), None) => Sink::Dir(dir),
                (None, Some(url)) => {
                    let target = Target::parse(url.as_str())?;
                    target.check_backup(&manifest)?;
                    Sink::Database {
                        target,
                        keep_plaintext: None,
                    }
                }
                _ => return Err(RestoreError::Usage("give --out DIR or --to URL")),
            };
            let decryptor_for = move |object: &crate::schema::ManifestObject| {
                keys.get(&object.key)
                    .map(|key| Decryptor::SessionKey(key.as_str().into()))
                    .ok_or_else(|| {
                        RestoreError::Failed(format!("no session key for {}", object.key))
                    })
            };
            let restored = pipeline::restore(&backup, &manifest, &decryptor_for, &sink).await?;
            print_restored("decrypted", &restored);
            Ok(Exit::Success)
        }
        RestoreCommand::Restore {
            backup,
            to,
            keep_plaintext,
        } => {
            let target = Target::parse(&to)?;
            let backup = super::open(&backup, config).await?;
            let manifest = backup.manifest().await?;
            target.check_backup(&manifest)?;
            let sink = Sink::Database {
                target,
                keep_plaintext,
            };
            let decryptor_for = |_: &crate::schema::ManifestObject| Ok(Decryptor::Keyring(None));
            let restored = pipeline::restore(&backup, &manifest, &decryptor_for, &sink).await?;
            print_restored("restored", &restored);
            Ok(Exit::Success)
        }
        RestoreCommand::Drill { backup, to, keep } => {
            let server = Target::parse(&to)?;
            let backup = super::open(&backup, config).await?;
            let report = drill::drill(&backup, &server, keep).await?;
            print_restored("drill restored", &report.restored);
            for problem in &report.problems {
                println!("BAD {problem}");
            }
            if let Some(note) = report.note {
                println!("note: {note}");
            }
            if report.problems.is_empty() {
                println!(
                    "drill passed: {} table(s), {} row(s) match the dump{}",
                    report.tables,
                    report.rows,
                    if keep {
                        format!("; scratch database {} kept", report.scratch_database)
                    } else {
                        String::new()
                    }
                );
                Ok(Exit::Success)
            } else {
                Err(RestoreError::Failed(format!(
                    "drill found {} difference(s); first: {}",
                    report.problems.len(),
                    report.problems[0]
                )))
            }
        }
        RestoreCommand::Export { backup, to } => {
            let backup = super::open(&backup, config).await?;
            let exported = export::export(&backup, &to).await?;
            for name in &exported.already_present {
                println!("present {name}");
            }
            for name in &exported.copied {
                println!("copied {name}");
            }
            println!(
                "exported to {}: {} file(s) copied ({} bytes), {} already present and verified",
                to.display(),
                exported.copied.len(),
                exported.bytes_copied,
                exported.already_present.len()
            );
            Ok(Exit::Success)
        }
    }
}

fn print_restored(what: &str, restored: &Restored) {
    println!(
        "{what} {} object(s): {} bytes encrypted, {} bytes restored in {:.1}s ({:.1} MB/s)",
        restored.objects,
        restored.ciphertext_bytes,
        restored.plaintext_bytes,
        restored.elapsed.as_secs_f64(),
        mb_per_s(restored.plaintext_bytes, restored.elapsed)
    );
}
