//! The agent: runs on the instance and takes the backup.
//!
//! `backup-cloud agent` reads the job spec the controller left in S3,
//! claims the job's status document, and streams
//! `dump tool → GPGME → S3 multipart upload` with no plaintext on disk
//! (a mysqldump's parts that the upload cannot take yet wait on disk as
//! ciphertext, so a slow upload never holds it back: see [`spool`]).
//! The manifest is written last, after the object has been checked, so a
//! backup either has a manifest and is complete or has none and is not.
//!
//! Error policy: before the status document is claimed, errors are only
//! returned (there is nowhere trustworthy to report them). After it, every
//! failure ends in a `failed` status whose message names the cause, any
//! multipart upload is aborted, no manifest is written, and [`run`] returns
//! the error. No secret ever reaches a status, a log line or an error.
//!
//! Phases: `preparing` (password, keys, server facts), `dumping` (the dump
//! streams through encryption into the upload), `uploading` (the dump has
//! ended cleanly; the last parts drain and the upload is completed),
//! `verifying` (the object is checked and the manifest written).

mod bench;
mod compat;
mod directory;
mod dump;
mod encrypt;
mod facts;
mod grants;
mod keys;
mod part_size;
mod progress;
mod scratch;
mod spool;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use aws_sdk_s3::types::CompletedPart;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use crate::aws::{describe_sdk_error, AwsClients};
use crate::facts::FactsError;
use crate::layout;
use crate::pg_archive::CustomArchiveReader;
use crate::s3::{self, Bucket, MultipartUpload, ObjectLock, Put, S3Error};
use crate::schema::{
    parse_document, AwsTimeouts, DocumentError, DumpFacts, DumpMode, Engine, JobSpec, Manifest,
    ManifestObject, Phase, Status, ToolVersions, UploadSettings, SCHEMA_VERSION,
    STATUS_MESSAGE_MAX,
};
use crate::secret::Secret;
use crate::status_store::{SsmStatusStore, StatusError, StatusStore};
use part_size::PartSizer;

pub use crate::openpgp::EncryptError;
pub use crate::s3::UploadError;
pub use bench::{bench_encrypt, BenchError};
pub use directory::DirectoryError;
pub use dump::DumpError;
pub use keys::KeyError;
pub use scratch::ScratchError;

use crate::openpgp::{Encryptor, TempHome};
use directory::{FileLayout, ObjectSink};
use dump::{Catalog, Connection, DumpCommand, DumpOutput, DumpTool, MysqlDatabases};
use encrypt::{CiphertextSummary, CountingReader, PartWriter};
use progress::{StatusReporter, TransferCounters};
use spool::Spool;

/// Why a backup on this machine failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot read the job spec s3://{bucket}/{key}: {source}")]
    SpecUnreadable {
        bucket: String,
        key: String,
        source: S3Error,
    },
    #[error("job spec s3://{bucket}/{key} has schema version {found}; this agent reads version {SCHEMA_VERSION}")]
    SpecVersion {
        bucket: String,
        key: String,
        found: u64,
    },
    #[error("job spec s3://{bucket}/{key} is invalid: {reason}")]
    SpecInvalid {
        bucket: String,
        key: String,
        reason: String,
    },
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("status parameter {parameter} does not exist; the controller creates it before the agent starts")]
    StatusMissing { parameter: String },
    #[error(
        "status parameter {parameter} belongs to job {found}, not {expected}; refusing to touch it"
    )]
    JobMismatch {
        parameter: String,
        found: String,
        expected: String,
    },
    #[error("status parameter {parameter} says job {job_id} has already {phase}; refusing to run it again")]
    AlreadyFinished {
        parameter: String,
        job_id: String,
        phase: &'static str,
    },
    #[error("cannot prepare the private working directory: {0}")]
    Workspace(io::Error),
    #[error("database password parameter {parameter} does not exist")]
    PasswordMissing { parameter: String },
    #[error("cannot read database password parameter {parameter}: {reason}")]
    Password { parameter: String, reason: String },
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Dump(#[from] DumpError),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Scratch(#[from] ScratchError),
    #[error(transparent)]
    Encrypt(#[from] EncryptError),
    #[error("cannot hand the ciphertext to the upload: {0}")]
    CiphertextSink(io::Error),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error("the {stage} stopped unexpectedly: {reason}")]
    Crashed { stage: &'static str, reason: String },
    #[error("the table facts a drill checks this backup against could not be taken: {0}")]
    Facts(#[from] FactsError),
    #[error("s3://{bucket}/{key} holds {found} bytes but {expected} were uploaded")]
    SizeMismatch {
        bucket: String,
        key: String,
        expected: u64,
        found: u64,
    },
    #[error("cannot check s3://{bucket}/{key}: {source}")]
    Verify {
        bucket: String,
        key: String,
        source: S3Error,
    },
    #[error("cannot encode the manifest: {0}")]
    ManifestEncoding(serde_json::Error),
    #[error("cannot write the manifest s3://{bucket}/{key}: {source}")]
    Manifest {
        bucket: String,
        key: String,
        source: S3Error,
    },
    #[error("the backup ended but its final status could not be published: {0}")]
    FinalStatus(StatusError),
    /// What user-data hands [`report_failure`]: the instance failed before
    /// the backup started (its set-up), or the agent died without
    /// reporting. `output` holds the last lines of the set-up's output.
    #[error("the instance failed while {what}{}", if output.is_empty() { String::new() } else { format!("; its last output: {output}") })]
    InstanceFailed { what: String, output: String },
    /// A failure the job's status does not carry and should: the spec or
    /// the status could not be read, or publishing the failure failed.
    /// The agent exits with another code than a reported failure's, so
    /// that user-data reports it. (A status that is another job's, or
    /// already final, is left alone: that refusal exits as reported.)
    #[error("{0} (not in the job's status)")]
    Unreported(Box<AgentError>),
}

fn unreported(err: AgentError) -> AgentError {
    AgentError::Unreported(Box::new(err))
}

/// Reads the job spec at `s3://spec_bucket/spec_key` and runs the backup.
/// Region, endpoint and credentials come from the environment.
pub async fn run(spec_bucket: &str, spec_key: &str) -> Result<(), AgentError> {
    let Job {
        clients,
        spec,
        store,
        initial,
    } = open_job(spec_bucket, spec_key).await?;
    let counters = TransferCounters::default();
    let reporter = StatusReporter::new(
        store,
        &spec.status_parameter,
        initial.clone(),
        Duration::from_secs(spec.heartbeat_interval_secs),
        counters.clone(),
    );
    reporter.enter_phase(Phase::Preparing).await;

    let outcome = tokio::select! {
        outcome = take_backup(&clients, &spec, &initial, &reporter, &counters) => outcome,
        never = reporter.heartbeat() => match never {},
    };
    match outcome {
        Ok(manifest_key) => {
            tracing::info!("backup complete: s3://{}/{manifest_key}", spec.bucket);
            reporter
                .finish(Phase::Succeeded, |status| {
                    status.manifest_key = Some(manifest_key);
                    status.set_message("backup complete");
                })
                .await
                .map_err(AgentError::FinalStatus)?;
            Ok(())
        }
        Err(err) => {
            let message = status_message(&err.to_string());
            tracing::error!("backup failed: {message}");
            if let Err(status_err) = reporter
                .finish(Phase::Failed, |status| status.set_message(&message))
                .await
            {
                tracing::error!("the failure could not be published: {status_err}");
                return Err(unreported(err));
            }
            Err(err)
        }
    }
}

/// A job as the agent finds it: its spec, and its status claimed.
struct Job {
    clients: AwsClients,
    spec: JobSpec,
    store: SsmStatusStore,
    initial: Status,
}

/// Reads the job spec and claims the job's status. Its errors are not in
/// the status ([`AgentError::Unreported`]), except for a status that is
/// another job's or already final, which must be left alone.
async fn open_job(spec_bucket: &str, spec_key: &str) -> Result<Job, AgentError> {
    let clients = AwsClients::load_on_instance(AwsTimeouts::default()).await;
    let spec = fetch_spec(&Bucket::new(clients.s3.clone(), spec_bucket), spec_key)
        .await
        .map_err(unreported)?;
    let clients = AwsClients::load_on_instance(spec.aws_timeouts).await;
    tracing::info!(job = %spec.job_id, "job spec s3://{spec_bucket}/{spec_key} loaded");
    let store = SsmStatusStore::new(clients.ssm.clone());
    let initial = claim_status(&store, &spec).await.map_err(|err| match err {
        AgentError::StatusMissing { .. } => unreported(err),
        other => other,
    })?;
    Ok(Job {
        clients,
        spec,
        store,
        initial,
    })
}

/// How many of the set-up output's last lines a failure report quotes,
/// and how many bytes of each: enough for apt's or dnf's error and the
/// command before it, within the status message's
/// [`STATUS_MESSAGE_MAX`].
const OUTPUT_LINES: usize = 8;
const OUTPUT_LINE_BYTES: usize = 100;

/// Puts into the job's status that the instance failed while `what`,
/// quoting the last lines of `output` (the set-up's log), for user-data,
/// which cannot write the status itself. Returns the error to exit with:
/// [`AgentError::InstanceFailed`] once the status carries it, otherwise
/// [`AgentError::Unreported`] (or the claim's own refusal).
pub async fn report_failure(
    spec_bucket: &str,
    spec_key: &str,
    what: &str,
    output: Option<&std::path::Path>,
) -> AgentError {
    let failure = AgentError::InstanceFailed {
        what: what.to_owned(),
        output: output.map(last_lines).unwrap_or_default(),
    };
    let job = match open_job(spec_bucket, spec_key).await {
        Ok(job) => job,
        Err(err) => {
            tracing::error!("{failure}");
            return err;
        }
    };
    // an agent that died mid-backup left its progress in the status
    let counters = TransferCounters::resumed(&job.initial);
    let reporter = StatusReporter::new(
        job.store,
        &job.spec.status_parameter,
        job.initial,
        Duration::from_secs(job.spec.heartbeat_interval_secs),
        counters,
    );
    let message = status_message(&failure.to_string());
    match reporter
        .finish(Phase::Failed, |status| status.set_message(&message))
        .await
    {
        Ok(_) => failure,
        Err(status_err) => {
            tracing::error!("the failure could not be published: {status_err}");
            unreported(failure)
        }
    }
}

/// The last [`OUTPUT_LINES`] non-blank lines of the file at `path`, each
/// cut to [`OUTPUT_LINE_BYTES`], joined by ` | `; empty when it cannot be
/// read (the report goes on without it).
fn last_lines(path: &std::path::Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut lines: Vec<String> = text
        .lines()
        // a progress line redrawn with CR shows as its last drawing
        .filter_map(|line| line.rsplit('\r').map(str::trim).find(|l| !l.is_empty()))
        .rev()
        .take(OUTPUT_LINES)
        .map(|line| {
            let line = without_userinfo(line);
            let mut end = line.len().min(OUTPUT_LINE_BYTES);
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line[..end].to_owned()
        })
        .collect();
    lines.reverse();
    lines.join(" | ")
}

/// `line` with the user and password of every URL in it (`scheme://user:
/// password@host`, as a private mirror's address in apt's or dnf's output
/// may carry) replaced by `***`.
fn without_userinfo(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(after.len());
        match after[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                rest = &after[userinfo_end..];
            }
            None => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// Downloads and checks the job spec.
async fn fetch_spec(bucket: &Bucket, key: &str) -> Result<JobSpec, AgentError> {
    let invalid = |reason: String| AgentError::SpecInvalid {
        bucket: bucket.name().to_owned(),
        key: key.to_owned(),
        reason,
    };
    let body = bucket
        .get(key)
        .await
        .map_err(|source| AgentError::SpecUnreadable {
            bucket: bucket.name().to_owned(),
            key: key.to_owned(),
            source,
        })?
        .body;
    let spec: JobSpec = parse_document(&body).map_err(|err| match err {
        DocumentError::Version { found } => AgentError::SpecVersion {
            bucket: bucket.name().to_owned(),
            key: key.to_owned(),
            found: found.unwrap_or(0),
        },
        DocumentError::Malformed(err) => invalid(err.to_string()),
    })?;
    check_upload_settings(&spec.upload).map_err(|reason| invalid(reason.to_owned()))?;
    Ok(spec)
}

/// Refuses settings S3 would only reject after the dump has run.
fn check_upload_settings(upload: &UploadSettings) -> Result<(), &'static str> {
    if !s3::PART_SIZE_RANGE.contains(&upload.part_size_bytes)
        || usize::try_from(upload.part_size_bytes).is_err()
    {
        return Err("upload.part_size_bytes must be between 5 MiB and 5 GiB (S3's part limits)");
    }
    if upload.concurrency == 0 {
        return Err("upload.concurrency must be at least 1");
    }
    Ok(())
}

/// Reads the status document the controller wrote and checks that it is
/// this job's and still open.
async fn claim_status(store: &impl StatusStore, spec: &JobSpec) -> Result<Status, AgentError> {
    let parameter = &spec.status_parameter;
    let mut status = store
        .read(parameter)
        .await?
        .ok_or_else(|| AgentError::StatusMissing {
            parameter: parameter.clone(),
        })?;
    if status.job_id != spec.job_id {
        return Err(AgentError::JobMismatch {
            parameter: parameter.clone(),
            found: status.job_id,
            expected: spec.job_id.clone(),
        });
    }
    if status.phase.is_terminal() {
        return Err(AgentError::AlreadyFinished {
            parameter: parameter.clone(),
            job_id: status.job_id,
            phase: status.phase.as_str(),
        });
    }
    status.message.clear();
    Ok(status)
}

/// Everything from `preparing` to the manifest; returns the manifest key.
async fn take_backup(
    clients: &AwsClients,
    spec: &JobSpec,
    initial: &Status,
    reporter: &StatusReporter<impl StatusStore>,
    counters: &TransferCounters,
) -> Result<String, AgentError> {
    let bucket = Bucket::new(clients.s3.clone(), &spec.bucket);
    let prepared = prepare(clients, &bucket, spec, reporter).await?;
    let (dumped, facts) = dump(&bucket, spec, &prepared, reporter, counters).await?;
    if spec.dump.mode == DumpMode::Mydumper {
        let paths = dumped.objects.iter().flat_map(|object| {
            let packed = object
                .packed
                .iter()
                .flatten()
                .map(|file| file.path.as_str());
            object.path.as_deref().into_iter().chain(packed)
        });
        prepared.catalog.account_for(paths)?;
    }
    reporter.enter_phase(Phase::Verifying).await;
    verify_objects(&bucket, &dumped.objects).await?;
    let manifest_key = layout::manifest(&spec.backup_prefix);
    let manifest = build_manifest(spec, initial, prepared, dumped, facts);
    write_manifest(
        &bucket,
        &manifest_key,
        &manifest,
        ObjectLock::new(spec.retention, spec.retention_not_after),
    )
    .await?;
    Ok(manifest_key)
}

/// What `preparing` readies for the dump. The workspace holds the keyring
/// and the password file, so it lives until the dump is done.
struct Prepared {
    _workspace: Workspace,
    /// Fingerprints of every recipient.
    recipients: Vec<String>,
    encryptor: Encryptor,
    connection: Connection,
    databases: MysqlDatabases,
    /// mydumper: the files the dump must hold.
    catalog: Catalog,
    /// The dump tool: its version line, and the flags it needs for this
    /// server beyond the mode's own.
    dump_tool: DumpTool,
    server: dump::ServerFacts,
}

/// `preparing`: the workspace, the password, the recipients' keys, and
/// what the server says about itself.
async fn prepare(
    clients: &AwsClients,
    bucket: &Bucket,
    spec: &JobSpec,
    reporter: &StatusReporter<impl StatusStore>,
) -> Result<Prepared, AgentError> {
    let workspace = Workspace::create().map_err(AgentError::Workspace)?;

    let password = fetch_password(&clients.ssm, &spec.password_parameter).await?;
    dump::write_password_file(spec.engine, &workspace.password_file(), &password)?;
    drop(password);

    let key_objects = keys::fetch_public_keys(bucket, &spec.prefix).await?;
    let gnupg_home = workspace.gnupg_home();
    let (recipients, encryptor) = tokio::task::spawn_blocking(move || {
        let recipients = keys::import_recipients(&gnupg_home, &key_objects)?;
        let encryptor = Encryptor::new(&gnupg_home, &recipients)?;
        Ok::<_, AgentError>((recipients, encryptor))
    })
    .await
    .map_err(|err| crashed("key import", err))??;
    tracing::info!("encrypting to {}", recipients.join(", "));

    let connection = Connection::new(spec.engine, &spec.database, &workspace.password_file());
    // whether this client can dump this server at all, first
    let dump_tool = connection.dump_tool(&spec.dump).await?;
    let databases = match spec.engine {
        Engine::Mysql => connection.mysql_databases(&spec.dump.databases).await?,
        Engine::Postgres => MysqlDatabases(Vec::new()),
    };
    let catalog = match spec.engine {
        Engine::Mysql => {
            connection
                .check_mysql_dumpable(&databases, &spec.dump)
                .await?
        }
        Engine::Postgres => {
            connection
                .check_postgres_readable(spec.dump.large_objects)
                .await?;
            Catalog::default()
        }
    };
    let server = connection.server_facts(&databases).await?;
    tracing::info!(
        "server {}; {} is {} bytes; dumping with {} {}",
        server.version,
        spec.database.name,
        server.database_bytes,
        dump_tool.version_line,
        dump_tool.flags.join(" ")
    );
    reporter
        .amend(|status| {
            status.bytes_expected = Some(server.database_bytes);
            status.set_message(&format!(
                "dumping {} bytes with {}",
                server.database_bytes, dump_tool.version_line
            ));
        })
        .await;
    Ok(Prepared {
        _workspace: workspace,
        recipients,
        encryptor,
        connection,
        databases,
        catalog,
        dump_tool,
        server,
    })
}

/// `dumping` and `uploading`: runs the dump into S3, a stream or a
/// directory of files, and collects the table facts.
async fn dump(
    bucket: &Bucket,
    spec: &JobSpec,
    prepared: &Prepared,
    reporter: &StatusReporter<impl StatusStore>,
    counters: &TransferCounters,
) -> Result<(directory::DirectoryDump, Option<DumpFacts>), AgentError> {
    let Prepared {
        connection,
        databases,
        dump_tool,
        server,
        encryptor,
        ..
    } = prepared;
    let flags = &dump_tool.flags;
    let settings = &spec.dump;
    let jobs = settings.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(2, |n| u32::try_from(n.get()).unwrap_or(2))
    });
    let dumped = async {
        if settings.mode.is_directory() {
            let needed = server.database_bytes;
            let scratch = off_runtime("scratch space", move || scratch::prepare(needed)).await??;
            let dir = scratch.dump_dir();
            let dump = connection.dump_command(
                settings,
                jobs,
                databases,
                flags,
                DumpOutput::Directory(dir.clone()),
            );
            let sink = ObjectSink {
                bucket: bucket.clone(),
                key_prefix: layout::data(&spec.backup_prefix),
                pack_prefix: layout::packs(&spec.backup_prefix),
                encryptor: encryptor.clone(),
                upload: spec.upload,
                compression_level: settings.compression_level,
                counters: counters.clone(),
                retention: spec.retention,
                retention_not_after: spec.retention_not_after,
                copy_digests: Default::default(),
            };
            let layout = match settings.mode {
                DumpMode::Mydumper => FileLayout::Mydumper,
                _ => FileLayout::PostgresDirectory {
                    database: spec.database.name.clone(),
                    copy_settings: server.copy_settings.clone(),
                },
            };
            reporter.enter_phase(Phase::Dumping).await;
            let (dump_finished, dump_finished_signal) = oneshot::channel();
            let pipeline = tokio::spawn(directory::dump_and_upload(
                dump,
                dir,
                layout,
                std::sync::Arc::new(sink),
                dump_finished,
            ));
            if dump_finished_signal.await.is_ok() {
                reporter.enter_phase(Phase::Uploading).await;
            }
            let dumped = pipeline
                .await
                .map_err(|err| crashed("directory dump", err))??;
            off_runtime("scratch clean-up", move || drop(scratch)).await?;
            Ok::<_, AgentError>(dumped)
        } else {
            // MySQL cuts off a reader that stalls (net_write_timeout), so
            // a mysqldump's parts wait on disk when the upload is behind;
            // PostgreSQL waits for its reader as long as it takes
            let scratch = match spec.engine {
                Engine::Mysql => {
                    match off_runtime("scratch space", || scratch::prepare(0)).await? {
                        Ok(scratch) => Some(scratch),
                        Err(err) => {
                            tracing::warn!("{err}; the dump will wait for the upload instead");
                            None
                        }
                    }
                }
                Engine::Postgres => None,
            };
            let dump =
                connection.dump_command(settings, jobs, databases, flags, DumpOutput::Stream);
            reporter.enter_phase(Phase::Dumping).await;
            let encoding = StreamEncoding {
                encryptor: encryptor.clone(),
                compression_level: settings.compression_level,
                // planned for the database's size: the dump is rarely larger
                parts: PartSizer::new(spec.upload.part_size_bytes, Some(server.database_bytes)),
                spool_dir: scratch.as_ref().map(scratch::Scratch::dump_dir),
                archive_settings: (settings.mode == DumpMode::PostgresCustom)
                    .then(|| server.copy_settings.clone()),
            };
            let dumped = dump_stream(bucket, spec, dump, encoding, counters, reporter).await;
            if let Some(scratch) = scratch {
                off_runtime("scratch clean-up", move || drop(scratch)).await?;
            }
            dumped
        }
    }
    .await;
    let mut dumped = dumped?;
    let facts = match dumped.facts.take() {
        Some(facts) => Some(facts),
        None => {
            facts::mysql_facts(|| connection.mysql_facts_client(), &databases.0, &spec.dump).await?
        }
    };
    Ok((dumped, facts))
}

/// The manifest describing the finished backup.
fn build_manifest(
    spec: &JobSpec,
    initial: &Status,
    prepared: Prepared,
    dumped: directory::DirectoryDump,
    facts: Option<DumpFacts>,
) -> Manifest {
    Manifest {
        schema_version: SCHEMA_VERSION,
        job_name: spec.job_name.clone(),
        job_id: spec.job_id.clone(),
        engine: spec.engine,
        format: spec.dump.mode.name().to_owned(),
        database: spec.database.name.clone(),
        objects: dumped.objects,
        recipients: prepared.recipients,
        tool_versions: ToolVersions {
            agent: env!("CARGO_PKG_VERSION").to_owned(),
            dump_tool: prepared.dump_tool.version_line,
            gpgme: gpgme::init().version().to_owned(),
            server: prepared.server.version,
        },
        ami_id: spec.ami_id.clone(),
        instance_type: spec.instance_type.clone(),
        instance_id: initial.instance_id.clone(),
        started_at: initial.started_at,
        finished_at: OffsetDateTime::now_utc(),
        dump_started_at: Some(dumped.dump_started_at),
        dump_finished_at: Some(dumped.dump_finished_at),
        facts,
        excluded: spec.dump.exclude.clone(),
        source: spec.source.clone(),
    }
}

/// Streams a one-object dump (`pg_dump -Fc -Z0`, `mysqldump`) through
/// zstd (unless the job turns compression off), encryption and a
/// multipart upload.
async fn dump_stream(
    bucket: &Bucket,
    spec: &JobSpec,
    dump: DumpCommand,
    encoding: StreamEncoding,
    counters: &TransferCounters,
    reporter: &StatusReporter<impl StatusStore>,
) -> Result<directory::DirectoryDump, AgentError> {
    // The dump tools write uncompressed; zstd here is several times
    // cheaper than pg_dump's zlib for a smaller result, and runs on its own
    // threads instead of inside the single pg_dump process.
    let compression_level = encoding.compression_level;
    let object_key =
        layout::stream_object(&spec.backup_prefix, spec.dump.mode, compression_level > 0);
    let object_name = object_key
        .strip_prefix(spec.backup_prefix.as_str())
        .unwrap_or(&object_key);
    counters.set_activity(&format!("dumping into {object_name}"));
    let lock = ObjectLock::new(spec.retention, spec.retention_not_after);
    let upload = MultipartUpload::create(bucket, &object_key, lock.as_ref()).await?;
    let (dump_finished, dump_finished_signal) = oneshot::channel();
    let dump_started_at = OffsetDateTime::now_utc();
    let pipeline = tokio::spawn(stream_dump(
        dump,
        upload.clone(),
        encoding,
        spec.upload.concurrency,
        counters.clone(),
        dump_finished,
    ));
    let dump_finished_at = if dump_finished_signal.await.is_ok() {
        reporter.enter_phase(Phase::Uploading).await;
        OffsetDateTime::now_utc()
    } else {
        dump_started_at
    };
    let completed = match pipeline.await {
        Ok(Ok(streamed)) => match upload.complete(streamed.parts).await {
            Ok(()) => Ok((streamed.ciphertext, streamed.facts)),
            Err(err) => Err(err.into()),
        },
        Ok(Err(err)) => Err(err),
        Err(err) => Err(crashed("dump pipeline", err)),
    };
    let (ciphertext, facts) = match completed {
        Ok(done) => done,
        Err(err) => {
            abort_upload(&upload).await;
            return Err(err);
        }
    };
    counters.objects_done.fetch_add(1, Ordering::Relaxed);
    let plaintext_bytes = counters.plaintext_bytes.load(Ordering::Relaxed);
    tracing::info!(
        "uploaded s3://{}/{object_key}: {} bytes from {plaintext_bytes} plaintext bytes, sha256 {}",
        spec.bucket,
        ciphertext.bytes,
        ciphertext.sha256
    );
    Ok(directory::DirectoryDump {
        objects: vec![ManifestObject {
            key: object_key,
            size: ciphertext.bytes,
            sha256: ciphertext.sha256,
            plaintext_bytes,
            path: None,
            packed: None,
            database: None,
            table: None,
            compression: (compression_level > 0).then(|| "zstd".to_owned()),
            upload_started_at: Some(dump_started_at),
            upload_finished_at: Some(OffsetDateTime::now_utc()),
        }],
        dump_started_at,
        dump_finished_at,
        facts,
    })
}

/// Who a stream is encrypted to, how it is compressed first, and how its
/// ciphertext is cut into parts.
struct StreamEncoding {
    encryptor: Encryptor,
    /// zstd level; 0: not compressed.
    compression_level: i32,
    parts: PartSizer,
    /// Where parts wait when the upload is behind (see [`spool`]);
    /// `None`: the dump waits for the upload instead.
    spool_dir: Option<PathBuf>,
    /// For a pg_dump archive, the dump session's settings (see
    /// [`ServerFacts::copy_settings`](dump::ServerFacts)): the facts are
    /// read from the stream.
    archive_settings: Option<BTreeMap<String, String>>,
}

/// What a successful stream produced.
struct Streamed {
    ciphertext: CiphertextSummary,
    parts: Vec<CompletedPart>,
    /// The table facts read on the way (`pg_dump -Fc`).
    facts: Option<DumpFacts>,
}

/// Runs the dump through encryption into the upload's parts. Succeeds only
/// if the dump tool exited cleanly, the encryption finished and every part
/// was acknowledged; `dump_finished` fires once the first two hold.
///
/// The two halves run under `try_join!`: the first error wins and drops
/// the other half. Dropping the dump half kills the dump tool; dropping
/// the upload half cancels its part uploads and closes the part channel,
/// which stops the encryption thread at its next write.
async fn stream_dump(
    dump: DumpCommand,
    upload: MultipartUpload,
    encoding: StreamEncoding,
    concurrency: usize,
    counters: TransferCounters,
    dump_finished: oneshot::Sender<()>,
) -> Result<Streamed, AgentError> {
    let mut process = dump.spawn()?;
    let program = process.program();
    let stdout = process.take_stdout().ok_or(AgentError::Crashed {
        stage: "dump",
        reason: format!("{program} has no stdout pipe"),
    })?;
    tracing::info!("{program} started");
    // one part queued between the writer and the uploads: memory stays at
    // about part_size × (concurrency + 2); with a spool, one more waits in
    // memory and the rest on disk, so the upload never holds the dump back
    let (part_sender, part_receiver) = mpsc::channel(1);
    let plaintext_bytes = counters.plaintext_bytes.clone();
    let archive_settings = encoding.archive_settings.clone();
    let encryption = tokio::task::spawn_blocking(move || {
        let mut writer = match &encoding.spool_dir {
            Some(dir) => PartWriter::spooled(encoding.parts, Spool::start(dir, part_sender)),
            None => PartWriter::new(encoding.parts, part_sender),
        };
        let mut archive = encoding
            .archive_settings
            .is_some()
            .then(CustomArchiveReader::default);
        let plaintext = facts::Tap::new(CountingReader::new(stdout, plaintext_bytes), |bytes| {
            if let Some(archive) = archive.as_mut() {
                archive.feed(bytes);
            }
        });
        encoding.encryptor.encrypt_maybe_compressed(
            plaintext,
            encoding.compression_level,
            compression_workers(),
            &mut writer,
        )?;
        Ok::<_, AgentError>((writer, archive))
    });

    let dump_half = async move {
        let encrypted = encryption.await;
        let (writer, archive) = match encrypted {
            Ok(Ok(done)) => done,
            Ok(Err(err)) => {
                process.kill();
                return Err(err);
            }
            Err(err) => {
                process.kill();
                return Err(crashed("encryption stage", err));
            }
        };
        // A dump that failed still leaves a well-formed, truncated
        // ciphertext: only the exit status tells, and it is the reason
        // at once, not after the parts still waiting are uploaded.
        process.wait_success().await?;
        tracing::info!("{program} finished");
        let facts = match (archive, &archive_settings) {
            (Some(archive), Some(settings)) => {
                Some(facts::custom_archive_facts(archive, settings)?)
            }
            _ => None,
        };
        let _ = dump_finished.send(());
        let ciphertext = off_runtime("the last parts", move || {
            writer.finish().map_err(AgentError::CiphertextSink)
        })
        .await??;
        Ok((ciphertext, facts))
    };
    let upload_half = async {
        upload
            .upload_parts(part_receiver, concurrency, counters.uploaded_bytes.clone())
            .await
            .map_err(AgentError::from)
    };
    let ((ciphertext, facts), parts) = tokio::try_join!(dump_half, upload_half)?;
    Ok(Streamed {
        ciphertext,
        parts,
        facts,
    })
}

/// Runs blocking `work` (child processes waited for, file systems made
/// and mounted) on a thread of its own: on the runtime it would hold up
/// the heartbeats that run beside the backup, and a slow `mkfs` would look
/// like a dead agent. `what` names it if its thread panics.
async fn off_runtime<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| crashed(what, err))
}

fn crashed(stage: &'static str, err: tokio::task::JoinError) -> AgentError {
    AgentError::Crashed {
        stage,
        reason: if err.is_panic() {
            "it panicked".to_owned()
        } else {
            err.to_string()
        },
    }
}

/// zstd worker threads for a single stream: every core but the one
/// GPGME's gpg process needs.
fn compression_workers() -> u32 {
    std::thread::available_parallelism()
        .map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
        .saturating_sub(1)
}

/// Aborts the upload; the backup has already failed, so a failure to
/// abort is logged (S3 lifecycle rules are the backstop), not returned.
async fn abort_upload(upload: &MultipartUpload) {
    match upload.abort().await {
        Ok(()) => tracing::info!("multipart upload of {} aborted", upload.key()),
        Err(err) => tracing::error!("{err}; its parts remain until a lifecycle rule removes them"),
    }
}

/// Reads the database password from an SSM SecureString.
async fn fetch_password(ssm: &aws_sdk_ssm::Client, parameter: &str) -> Result<Secret, AgentError> {
    let missing = || AgentError::PasswordMissing {
        parameter: parameter.to_owned(),
    };
    let output = ssm
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await
        .map_err(|err| {
            if err
                .as_service_error()
                .is_some_and(|e| e.is_parameter_not_found())
            {
                missing()
            } else {
                AgentError::Password {
                    parameter: parameter.to_owned(),
                    reason: describe_sdk_error(&err),
                }
            }
        })?;
    let value = output
        .parameter()
        .and_then(|p| p.value())
        .ok_or_else(missing)?;
    Ok(Secret::from(value))
}

/// Objects checked at once: each check is a HEAD round trip, and a
/// directory dump of thousands of tables has thousands of objects (one
/// after another, 5,000 took four minutes in `make bench`).
const VERIFY_CONCURRENCY: usize = 16;

/// Checks that S3 holds exactly the bytes we uploaded, for every object,
/// [`VERIFY_CONCURRENCY`] at a time; the first mismatch or error ends it.
async fn verify_objects(bucket: &Bucket, objects: &[ManifestObject]) -> Result<(), AgentError> {
    let mut checks = tokio::task::JoinSet::new();
    for object in objects {
        if checks.len() >= VERIFY_CONCURRENCY {
            if let Some(done) = checks.join_next().await {
                done.map_err(|err| crashed("object check", err))??;
            }
        }
        let (bucket, key, size) = (bucket.clone(), object.key.clone(), object.size);
        checks.spawn(async move { verify_object(&bucket, &key, size).await });
    }
    while let Some(done) = checks.join_next().await {
        done.map_err(|err| crashed("object check", err))??;
    }
    Ok(())
}

/// Checks that S3 holds exactly the bytes we uploaded.
async fn verify_object(bucket: &Bucket, key: &str, expected: u64) -> Result<(), AgentError> {
    let found = bucket
        .size(key)
        .await
        .map_err(|source| AgentError::Verify {
            bucket: bucket.name().to_owned(),
            key: key.to_owned(),
            source,
        })?
        .unwrap_or(0);
    if found != expected {
        return Err(AgentError::SizeMismatch {
            bucket: bucket.name().to_owned(),
            key: key.to_owned(),
            expected,
            found,
        });
    }
    Ok(())
}

async fn write_manifest(
    bucket: &Bucket,
    key: &str,
    manifest: &Manifest,
    lock: Option<ObjectLock>,
) -> Result<(), AgentError> {
    let body = serde_json::to_vec_pretty(manifest).map_err(AgentError::ManifestEncoding)?;
    let options = Put {
        content_type: Some(s3::JSON),
        lock,
        ..Put::default()
    };
    bucket
        .put(key, body, options)
        .await
        .map_err(|source| AgentError::Manifest {
            bucket: bucket.name().to_owned(),
            key: key.to_owned(),
            source,
        })?;
    Ok(())
}

/// Fits an error into a status message: the start says what failed, the
/// end usually says why (a tool's last stderr line), so both are kept.
fn status_message(error: &str) -> String {
    if error.len() <= STATUS_MESSAGE_MAX {
        return error.to_owned();
    }
    const SEPARATOR: &str = " … ";
    let keep = (STATUS_MESSAGE_MAX - SEPARATOR.len()) / 2;
    let mut head_end = keep;
    while !error.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = error.len() - keep;
    while !error.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    format!("{}{SEPARATOR}{}", &error[..head_end], &error[tail_start..])
}

/// A private directory (0700) for this run: the GnuPG home and the
/// database password file. Removed, with any gpg-agent it started, when
/// dropped.
struct Workspace {
    /// Dropped first: its gpg-agent is stopped before the directory goes.
    gnupg: TempHome,
    dir: tempfile::TempDir,
}

impl Workspace {
    fn create() -> io::Result<Workspace> {
        let dir = tempfile::Builder::new().prefix("backup-cloud-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        let gnupg = TempHome::new_in(dir.path())?;
        Ok(Workspace { gnupg, dir })
    }

    fn gnupg_home(&self) -> PathBuf {
        self.gnupg.to_path_buf()
    }

    fn password_file(&self) -> PathBuf {
        self.dir.path().join("db-password")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{DatabaseTarget, Engine};
    use crate::status_store::memory::MemoryStatusStore;
    use std::path::Path;

    #[test]
    fn a_failure_report_quotes_the_set_up_s_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("set-up.log");
        let mut text = String::new();
        for i in 0..20 {
            text.push_str(&format!("Get:{i} http://mirror noble InRelease\n"));
        }
        text.push_str("Progress: 10%\rProgress: 90%\r\n\n");
        text.push_str("+ apt-get install -y -q postgresql-client gnupg\n");
        text.push_str(&format!("E: Unable to locate package {}\n", "é".repeat(80)));
        std::fs::write(&log, text).unwrap();
        let quoted = last_lines(&log);
        let lines: Vec<&str> = quoted.split(" | ").collect();
        assert_eq!(lines.len(), OUTPUT_LINES, "{quoted}");
        assert_eq!(
            lines[5], "Progress: 90%",
            "a redrawn line shows as last drawn"
        );
        assert_eq!(lines[6], "+ apt-get install -y -q postgresql-client gnupg");
        assert!(lines[7].starts_with("E: Unable to locate package é"));
        assert!(lines[7].len() <= OUTPUT_LINE_BYTES);
        let failure = AgentError::InstanceFailed {
            what: "installing the database client tools (exit 100)".into(),
            output: quoted,
        };
        assert!(status_message(&failure.to_string()).len() <= STATUS_MESSAGE_MAX);
        assert_eq!(last_lines(&dir.path().join("missing")), "");
    }

    #[test]
    fn a_failure_report_never_quotes_a_mirror_s_password() {
        assert_eq!(
            without_userinfo("Err:1 https://deploy:s3cr3t@apt.example.com/ubuntu noble InRelease"),
            "Err:1 https://***@apt.example.com/ubuntu noble InRelease"
        );
        assert_eq!(
            without_userinfo("Get:2 http://deb.debian.org/debian a@b https://u@h x"),
            "Get:2 http://deb.debian.org/debian a@b https://***@h x"
        );
    }

    /// Bug: scratch preparation (`blkid`, `mkfs.ext4`, `mount`) ran inline
    /// in the task beside the heartbeats; on a one-thread runtime nothing
    /// else ran until it was done.
    #[tokio::test(flavor = "current_thread")]
    async fn blocking_work_leaves_the_heartbeats_running() {
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    ticks.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        off_runtime("a slow mkfs", || {
            std::thread::sleep(Duration::from_millis(300))
        })
        .await
        .unwrap();
        ticker.abort();
        assert!(ticks.load(Ordering::Relaxed) > 0, "the runtime was held up");
    }

    fn spec() -> JobSpec {
        JobSpec {
            schema_version: SCHEMA_VERSION,
            job_name: "orders".into(),
            job_id: "orders-1".into(),
            engine: Engine::Postgres,
            database: DatabaseTarget {
                host: "127.0.0.1".into(),
                port: 5432,
                user: "backup".into(),
                name: "orders".into(),
                connect_timeout_secs: 30,
            },
            password_parameter: "/pw".into(),
            bucket: "b".into(),
            prefix: String::new(),
            backup_prefix: "backup/orders/x/".into(),
            status_parameter: "/status".into(),
            upload: UploadSettings {
                part_size_bytes: 8 << 20,
                concurrency: 4,
            },
            ami_id: "ami-1".into(),
            instance_type: "m6id.large".into(),
            heartbeat_interval_secs: 10,
            dump: Default::default(),
            retention: None,
            retention_not_after: None,
            aws_timeouts: Default::default(),
            source: Default::default(),
        }
    }

    async fn claim_with(existing: Option<Status>) -> Result<Status, AgentError> {
        let store = MemoryStatusStore::default();
        if let Some(status) = existing {
            store
                .documents
                .lock()
                .unwrap()
                .insert("/status".into(), status);
        }
        claim_status(&store, &spec()).await
    }

    #[tokio::test]
    async fn the_status_document_must_exist_be_ours_and_be_open() {
        let mut booting = Status::new("orders-1", Phase::Booting);
        booting.instance_id = Some("i-123".into());
        booting.message = "waiting for boot".into();
        let claimed = claim_with(Some(booting)).await.unwrap();
        assert_eq!(claimed.instance_id.as_deref(), Some("i-123"));
        assert!(claimed.message.is_empty());

        let err = claim_with(None).await.unwrap_err();
        assert!(matches!(err, AgentError::StatusMissing { .. }), "{err}");
        let err = claim_with(Some(Status::new("other-9", Phase::Booting)))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("other-9"), "{err}");
        let err = claim_with(Some(Status::new("orders-1", Phase::Failed)))
            .await
            .unwrap_err();
        assert!(matches!(err, AgentError::AlreadyFinished { .. }), "{err}");
    }

    #[test]
    fn upload_settings_are_checked() {
        let mut settings = spec().upload;
        assert!(check_upload_settings(&settings).is_ok());
        settings.concurrency = 0;
        assert!(check_upload_settings(&settings).is_err());
        settings.concurrency = 1;
        for part_size_bytes in [0, 1 << 20, 6 << 30] {
            settings.part_size_bytes = part_size_bytes;
            assert!(check_upload_settings(&settings).is_err());
        }
    }

    #[test]
    fn long_messages_keep_their_start_and_end() {
        let error = format!("pg_dump failed: {}FATAL: bad password", "é".repeat(2000));
        let message = status_message(&error);
        assert!(message.len() <= STATUS_MESSAGE_MAX);
        assert!(message.starts_with("pg_dump failed: "));
        assert!(message.ends_with("FATAL: bad password"));
        assert_eq!(status_message("short"), "short");
    }

    #[test]
    fn workspace_is_private_and_removed() {
        let workspace = Workspace::create().unwrap();
        let root = workspace.dir.path().to_owned();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&workspace.gnupg_home()), 0o700);
        drop(workspace);
        assert!(!root.exists());
    }
}
