//! The restore-side subcommands: their clap definitions, and what each one
//! did ([`Done`]), which `output` shows and `cli` maps to an exit code.

use std::path::PathBuf;

use clap::Subcommand;

use super::engine::Target;
use super::pipeline::{Restored, Sink};
use super::{drill, export, headers, pipeline, store, verify, RestoreError};
use crate::config::Config;
use crate::credentials;
use crate::lifecycle::{records, Pick};
use crate::openpgp::Decryptor;
use crate::schema::CheckKind;
use time::OffsetDateTime;

#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Prove a backup whole and encrypted to exactly the configured keys
    /// (needs no private key). Exits 7 if anything is wrong.
    Verify {
        /// s3://BUCKET/PREFIX/backup/JOB/TIMESTAMP/ or …/manifest.json
        #[arg(required_unless_present_any = ["dir", "latest", "random"], conflicts_with = "dir")]
        backup: Option<String>,
        /// Check an offline copy made by `export` instead (no network).
        #[arg(long, value_name = "DIR", conflicts_with_all = ["latest", "random"])]
        dir: Option<PathBuf>,
        #[command(flatten)]
        pick: PickArgs,
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
        #[arg(required_unless_present_any = ["latest", "random"])]
        backup: Option<String>,
        #[command(flatten)]
        pick: PickArgs,
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
        #[arg(required_unless_present_any = ["latest", "random"])]
        backup: Option<String>,
        #[command(flatten)]
        pick: PickArgs,
        /// The folder to copy into.
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
    },
}

/// `--latest`/`--random`: which of a job's backups to take, for a
/// scheduler that has no address to give.
#[derive(Debug, clap::Args)]
pub struct PickArgs {
    /// Take the newest complete backup of --job.
    #[arg(long, requires = "job", conflicts_with_all = ["backup", "random"])]
    latest: bool,
    /// Take a random complete backup of --job started within --within.
    #[arg(long, requires = "job", conflicts_with = "backup")]
    random: bool,
    /// The job (with --latest or --random).
    #[arg(long, short)]
    job: Option<String>,
    /// With --random: how far back to choose from (e.g. `30d`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30d", requires = "random")]
    within: std::time::Duration,
}

impl PickArgs {
    /// The address given, or the one --latest/--random picks.
    async fn address(
        &self,
        given: Option<String>,
        config: Option<&std::path::Path>,
    ) -> Result<String, RestoreError> {
        let pick = match (self.latest, self.random) {
            (true, _) => Pick::Latest,
            (false, true) => Pick::Random {
                within: self.within,
            },
            (false, false) => {
                return given.ok_or(RestoreError::Usage(
                    "give a backup address, --latest or --random",
                ))
            }
        };
        let path = config.ok_or(RestoreError::Usage(
            "--latest and --random read the configuration: pass --config FILE",
        ))?;
        let config = Config::load(path)?;
        let job = self.job.as_deref().expect("clap requires --job");
        Ok(crate::lifecycle::pick(&config, job, pick).await?)
    }
}

/// What a restore-side command did, for `output` to show (as text or
/// JSON); a verify or drill that found problems is a result too, shown in
/// full before [`Done::failure`] turns it into the exit code.
pub enum Done {
    /// `verify`: the backup's location and the report.
    Verified {
        location: String,
        report: verify::VerifyReport,
    },
    /// `headers`, `session-keys`: the file written and its size in bytes.
    Wrote { path: PathBuf, bytes: usize },
    /// `restore` (`verb` "restored") or `decrypt` ("decrypted").
    Restored {
        verb: &'static str,
        restored: Restored,
    },
    /// `drill`; `kept`: the scratch database was left in place.
    Drilled {
        report: drill::DrillReport,
        kept: bool,
    },
    /// `export`: the folder and what was copied or already there.
    Exported {
        to: PathBuf,
        exported: export::Exported,
    },
}

impl Done {
    /// The error a result with problems exits with (7, "verification
    /// failed"); `None` when there were none.
    pub fn failure(&self) -> Option<RestoreError> {
        match self {
            Done::Verified { location, report } => report.problems.first().map(|first| {
                RestoreError::Failed(format!(
                    "{} problem(s) in {location}; first: {}: {}",
                    report.problems.len(),
                    first.object,
                    first.problem
                ))
            }),
            Done::Drilled { report, .. } => report.problems.first().map(|first| {
                RestoreError::Failed(format!(
                    "drill found {} difference(s); first: {first}",
                    report.problems.len()
                ))
            }),
            _ => None,
        }
    }
}

/// Runs one restore-side command.
///
/// `config` is the global `--config`: AWS endpoint/region and the storage
/// prefix.
pub async fn run(
    command: RestoreCommand,
    config: Option<&std::path::Path>,
) -> Result<Done, RestoreError> {
    match command {
        RestoreCommand::Verify { backup, dir, pick } => {
            let address = match dir {
                Some(_) => None,
                None => Some(pick.address(backup, config).await?),
            };
            let backup = super::open_either(address.as_deref(), dir.as_deref(), config).await?;
            let started = OffsetDateTime::now_utc();
            let report = verify::verify(&backup).await;
            let findings = |report: &verify::VerifyReport| {
                report
                    .problems
                    .iter()
                    .map(|p| format!("{}: {}", p.object, p.problem))
                    .collect()
            };
            record(
                &backup,
                config,
                CheckKind::Verify,
                started,
                &report,
                findings,
            )
            .await;
            Ok(Done::Verified {
                location: backup.store.location(&backup.prefix),
                report: report?,
            })
        }
        RestoreCommand::Headers { backup, out } => {
            let backup = super::open(&backup, config).await?;
            let archive = headers::headers(&backup).await?;
            std::fs::write(&out, &archive).map_err(|e| {
                RestoreError::Failed(format!("cannot write {}: {e}", out.display()))
            })?;
            Ok(Done::Wrote {
                path: out,
                bytes: archive.len(),
            })
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
            Ok(Done::Wrote {
                path: out,
                bytes: keys.len(),
            })
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
                (Some(dir), None) => Sink::Dir { dir, durable: true },
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
            Ok(Done::Restored {
                verb: "decrypted",
                restored,
            })
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
            Ok(Done::Restored {
                verb: "restored",
                restored,
            })
        }
        RestoreCommand::Drill {
            backup,
            pick,
            to,
            keep,
        } => {
            let server = Target::parse(&to)?;
            let address = pick.address(backup, config).await?;
            let backup = super::open(&address, config).await?;
            let started = OffsetDateTime::now_utc();
            let report = drill::drill(&backup, &server, keep).await;
            let findings = |report: &drill::DrillReport| report.problems.clone();
            record(
                &backup,
                config,
                CheckKind::Drill,
                started,
                &report,
                findings,
            )
            .await;
            Ok(Done::Drilled {
                report: report?,
                kept: keep,
            })
        }
        RestoreCommand::Export { backup, pick, to } => {
            let address = pick.address(backup, config).await?;
            let backup = super::open(&address, config).await?;
            let started = OffsetDateTime::now_utc();
            let exported = export::export(&backup, &to).await;
            record(
                &backup,
                config,
                CheckKind::Export,
                started,
                &exported,
                |_| Vec::new(),
            )
            .await;
            Ok(Done::Exported {
                to,
                exported: exported?,
            })
        }
    }
}

/// Writes the record of a `kind` check of `backup` that started at
/// `started` and ended in `result` (its findings by `findings`; an error
/// that is the backup's fault is a finding too), when the backup is in
/// S3. A record that cannot be written is a warning: the check itself
/// stands, and `check` will say the proof is missing.
async fn record<T>(
    backup: &store::Backup,
    config: Option<&std::path::Path>,
    kind: CheckKind,
    started: OffsetDateTime,
    result: &Result<T, RestoreError>,
    findings: impl Fn(&T) -> Vec<String>,
) {
    let store::Store::S3(bucket) = &backup.store else {
        return;
    };
    let findings = match result {
        Ok(done) => findings(done),
        Err(err) if err.exit() == crate::exit::Exit::Unrestorable => vec![err.to_string()],
        // a usage mistake or a crash proves nothing either way
        Err(_) => return,
    };
    let settings = config.and_then(|path| Config::load(path).ok());
    let clients = crate::aws::AwsClients::load(
        settings.as_ref().and_then(|c| c.aws.region.as_deref()),
        settings
            .as_ref()
            .and_then(|c| c.aws.endpoint_url.as_deref()),
    )
    .await;
    let outcome = records::Outcome {
        kind,
        started_at: started,
        findings,
    };
    if let Err(err) = records::write(bucket, &clients, &backup.prefix, outcome).await {
        eprintln!(
            "backup-cloud: warning: the {} record of {} was not written ({err}); \
             writing records needs s3:PutObject on backup/*/checks/* (policies/restore.json)",
            kind.as_str(),
            backup.store.location(&backup.prefix)
        );
    }
}
