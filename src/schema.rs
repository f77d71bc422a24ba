//! The documents both halves of backup-cloud exchange: the job spec the
//! controller hands the instance, the status the agent publishes while it
//! works, and the manifest that marks a backup complete.
//!
//! They live in one module because the controller and the agent are built
//! from the same binary but run on different machines: a field renamed on
//! one side only would break a running fleet. Every document carries a
//! `schema_version`; readers refuse versions they do not know.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Version of the job spec, status and manifest documents.
pub const SCHEMA_VERSION: u32 = 1;

/// A versioned document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// Not JSON, or not the document's shape.
    #[error(transparent)]
    Malformed(#[from] serde_json::Error),
    /// A `schema_version` this build does not read (`None`: missing or
    /// not a number).
    #[error("schema_version {found:?}; this build reads {SCHEMA_VERSION}")]
    Version { found: Option<u64> },
}

/// Parses a job spec, status or manifest, refusing any `schema_version`
/// but [`SCHEMA_VERSION`] before looking at the rest: a document from a
/// newer build is named as such, not as a missing field.
pub fn parse_document<T: serde::de::DeserializeOwned>(data: &[u8]) -> Result<T, DocumentError> {
    let value: serde_json::Value = serde_json::from_slice(data)?;
    let found = value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64);
    if found != Some(u64::from(SCHEMA_VERSION)) {
        return Err(DocumentError::Version { found });
    }
    Ok(serde_json::from_value(value)?)
}

/// Which database engine a job dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
    /// MySQL and MariaDB, RDS and Aurora included.
    Mysql,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
            Engine::Mysql => "mysql",
        }
    }
}

/// Which tool dumps the database and in what shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DumpMode {
    /// `pg_dump --format=custom`: one stream, one object.
    #[default]
    PostgresCustom,
    /// `pg_dump --format=directory --jobs N`: one object per file.
    PostgresDirectory,
    /// `mydumper`: parallel threads, one object per file.
    Mydumper,
    /// `mysqldump --single-transaction`: one stream, one object.
    Mysqldump,
}

impl DumpMode {
    /// The manifest's name for the format.
    pub fn name(self) -> &'static str {
        match self {
            DumpMode::PostgresCustom => "pg_dump-custom",
            DumpMode::PostgresDirectory => "pg_dump-directory",
            DumpMode::Mydumper => "mydumper",
            DumpMode::Mysqldump => "mysqldump",
        }
    }

    /// Whether the tool writes a directory of files (each its own object)
    /// rather than one stream.
    pub fn is_directory(self) -> bool {
        matches!(self, DumpMode::PostgresDirectory | DumpMode::Mydumper)
    }
}

/// How the agent dumps: the mode and its tuning. Every field has a
/// default, so specs written before it existed still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DumpSettings {
    pub mode: DumpMode,
    /// Parallel workers (`pg_dump --jobs`, `mydumper --threads`); `None`:
    /// one per CPU of the instance.
    pub jobs: Option<u32>,
    /// MySQL databases to dump; empty: every database but the system ones.
    pub databases: Vec<String>,
    /// zstd level applied before encryption (the dump tools themselves run
    /// uncompressed); 0 turns compression off.
    pub compression_level: i32,
    /// mydumper: refuse (or, with `kill_long_queries`, kill) queries
    /// running longer than this many seconds before taking its snapshot.
    pub long_query_guard_secs: u64,
    pub kill_long_queries: bool,
    /// mydumper: take no global read lock at all (RDS/Aurora, where
    /// `FLUSH TABLES WITH READ LOCK` is refused): each thread's snapshot
    /// starts separately, so tables are consistent one by one only.
    pub no_locks: bool,
    /// mydumper: split tables into chunks of this many rows (one file
    /// each), so one big table is dumped by several threads.
    pub rows_per_chunk: u64,
    /// PostgreSQL: dump large objects (`false`: `pg_dump --no-blobs`,
    /// for a role that cannot read them and a database whose large
    /// objects are not to be kept).
    pub large_objects: bool,
    /// MySQL: tables and views left out on purpose, by database (the
    /// job's `exclude`): neither dumped, checked nor accounted for, and
    /// listed in the manifest.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub exclude: BTreeMap<String, Vec<String>>,
}

impl DumpSettings {
    /// Every `(database, table)` that `exclude` names.
    pub fn excluded_tables(&self) -> impl Iterator<Item = (&str, &str)> {
        self.exclude.iter().flat_map(|(database, tables)| {
            tables
                .iter()
                .map(move |table| (database.as_str(), table.as_str()))
        })
    }

    /// Whether `exclude` names `database`.`table`, exactly.
    pub fn excludes(&self, database: &str, table: &str) -> bool {
        self.exclude
            .get(database)
            .is_some_and(|tables| tables.iter().any(|t| t == table))
    }
}

/// Default zstd level: fast, and most of the ratio of higher levels on SQL text.
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 3;
/// mydumper's own default long-query guard.
pub const DEFAULT_LONG_QUERY_GUARD_SECS: u64 = 60;
pub const DEFAULT_ROWS_PER_CHUNK: u64 = 500_000;

impl Default for DumpSettings {
    fn default() -> Self {
        DumpSettings {
            mode: DumpMode::default(),
            jobs: None,
            databases: Vec::new(),
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            long_query_guard_secs: DEFAULT_LONG_QUERY_GUARD_SECS,
            kill_long_queries: false,
            no_locks: false,
            rows_per_chunk: DEFAULT_ROWS_PER_CHUNK,
            large_objects: true,
            exclude: BTreeMap::new(),
        }
    }
}

/// Everything the agent needs to run one backup. Contains no secret: the
/// database password is named (`password_parameter`), never carried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub schema_version: u32,
    pub job_name: String,
    pub job_id: String,
    pub engine: Engine,
    pub database: DatabaseTarget,
    /// Name of the SSM SecureString parameter holding the database password.
    pub password_parameter: String,
    pub bucket: String,
    /// The configured prefix (no trailing slash; may be empty).
    pub prefix: String,
    /// Key prefix of this backup's objects, ending in `/`.
    pub backup_prefix: String,
    /// SSM parameter the agent writes its status to.
    pub status_parameter: String,
    pub upload: UploadSettings,
    pub ami_id: String,
    pub instance_type: String,
    /// How long the agent may go without a status update before the
    /// controller declares it dead; the agent heartbeats well within it.
    pub heartbeat_interval_secs: u64,
    #[serde(default)]
    pub dump: DumpSettings,
    /// S3 Object Lock retention set on every object and the manifest;
    /// `None`: the bucket's default, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// No Object Lock may last past this: the backup's timestamp plus the
    /// job's `max_age`.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub retention_not_after: Option<OffsetDateTime>,
    #[serde(default)]
    pub aws_timeouts: AwsTimeouts,
    /// What the agent dumps: the live database, or a temporary copy the
    /// controller restored for this job.
    #[serde(default, skip_serializing_if = "DataSource::is_live")]
    pub source: DataSource,
}

/// What a backup was dumped from, and so what moment it represents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum DataSource {
    /// The configured database itself, as of the dump's own snapshot.
    #[default]
    Live,
    /// A temporary RDS DB instance (or Aurora DB cluster) restored from a
    /// DB snapshot: the data as of `snapshot_time`.
    Snapshot {
        /// The snapshot's ARN (`DBSnapshotArn`/`DBClusterSnapshotArn`).
        snapshot_arn: String,
        #[serde(with = "time::serde::rfc3339")]
        snapshot_time: OffsetDateTime,
        /// The temporary database's identifier (deleted after the job).
        temporary_database: String,
    },
    /// A temporary RDS DB instance restored, or an Aurora DB cluster
    /// cloned, to a point in time of `source_database`: the data as of
    /// `restore_time`.
    PointInTime {
        /// The production DB instance or cluster identifier.
        source_database: String,
        #[serde(with = "time::serde::rfc3339")]
        restore_time: OffsetDateTime,
        temporary_database: String,
    },
}

impl DataSource {
    /// Whether this is [`DataSource::Live`].
    pub fn is_live(&self) -> bool {
        *self == DataSource::Live
    }
}

/// How objects are locked against deletion (`storage.retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub mode: RetentionMode,
    /// Days from the start of the backup until the lock ends.
    pub days: u32,
}

/// S3 Object Lock modes: nobody can shorten a COMPLIANCE retention, not
/// even the root user; GOVERNANCE yields to `s3:BypassGovernanceRetention`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetentionMode {
    Compliance,
    Governance,
}

/// Where the database is and who to log in as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub name: String,
    /// How long the client tools wait to connect (`timeouts.database_connect`).
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
}

pub const DEFAULT_DATABASE_CONNECT_SECS: u64 = 30;

fn default_connect_timeout_secs() -> u64 {
    DEFAULT_DATABASE_CONNECT_SECS
}

/// Time limits on AWS SDK calls (`timeouts.aws_attempt`,
/// `timeouts.aws_operation`): one attempt, and the whole call with its
/// retries. Generous, because a part upload of 5 GiB is one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AwsTimeouts {
    pub attempt_secs: u64,
    pub operation_secs: u64,
}

pub const DEFAULT_AWS_ATTEMPT_SECS: u64 = 10 * 60;
pub const DEFAULT_AWS_OPERATION_SECS: u64 = 30 * 60;

impl Default for AwsTimeouts {
    fn default() -> Self {
        AwsTimeouts {
            attempt_secs: DEFAULT_AWS_ATTEMPT_SECS,
            operation_secs: DEFAULT_AWS_OPERATION_SECS,
        }
    }
}

/// Multipart upload tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadSettings {
    pub part_size_bytes: u64,
    pub concurrency: usize,
}

/// Where a job is in its life. The order is the order a healthy job
/// moves through; `Succeeded` and `Failed` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Launching,
    Booting,
    Preparing,
    Dumping,
    Uploading,
    Verifying,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Launching => "launching",
            Phase::Booting => "booting",
            Phase::Preparing => "preparing",
            Phase::Dumping => "dumping",
            Phase::Uploading => "uploading",
            Phase::Verifying => "verifying",
            Phase::Succeeded => "succeeded",
            Phase::Failed => "failed",
        }
    }
}

/// The job's status document, stored as JSON in one SSM parameter per job
/// (kept well under SSM's 4 KB standard-tier limit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub schema_version: u32,
    pub job_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub phase: Phase,
    #[serde(default)]
    pub bytes_read: u64,
    #[serde(default)]
    pub bytes_uploaded: u64,
    /// Size of the database as the server reports it, when known: the
    /// basis of an operator's ETA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_expected: Option<u64>,
    #[serde(default)]
    pub objects_done: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_key: Option<String>,
}

/// Maximum length of a status message, so the document stays small.
pub const STATUS_MESSAGE_MAX: usize = 1024;

impl Status {
    /// A fresh status for a job entering `phase` now.
    pub fn new(job_id: &str, phase: Phase) -> Self {
        let now = OffsetDateTime::now_utc();
        Status {
            schema_version: SCHEMA_VERSION,
            job_id: job_id.to_owned(),
            instance_id: None,
            phase,
            bytes_read: 0,
            bytes_uploaded: 0,
            bytes_expected: None,
            objects_done: 0,
            started_at: now,
            updated_at: now,
            message: String::new(),
            manifest_key: None,
        }
    }

    /// Sets the message, truncated on a character boundary to
    /// [`STATUS_MESSAGE_MAX`] bytes.
    pub fn set_message(&mut self, message: &str) {
        let mut end = message.len().min(STATUS_MESSAGE_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        self.message = message[..end].to_owned();
    }
}

/// The manifest: written last, and its presence is what makes a backup
/// complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub job_name: String,
    pub job_id: String,
    pub engine: Engine,
    /// Dump format, e.g. `pg_dump-custom`.
    pub format: String,
    pub database: String,
    pub objects: Vec<ManifestObject>,
    /// Fingerprints of every recipient each object is encrypted to.
    pub recipients: Vec<String>,
    pub tool_versions: ToolVersions,
    pub ami_id: String,
    pub instance_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// When the dump tool started and exited: with the objects' upload
    /// times they show how far dump and upload overlapped.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub dump_started_at: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub dump_finished_at: Option<OffsetDateTime>,
    /// Per-table row counts and checksums from the dump's own snapshot,
    /// for restore drills; absent in backups from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<DumpFacts>,
    /// MySQL tables and views the job left out on purpose (its
    /// `exclude`), by database: not in the backup, nor in its facts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub excluded: BTreeMap<String, Vec<String>>,
    /// What was dumped (from the job spec): absent for the live database.
    #[serde(default, skip_serializing_if = "DataSource::is_live")]
    pub source: DataSource,
}

/// Facts about the dumped data that a drill compares a restore against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpFacts {
    /// How the checksums were computed, e.g. `postgres-row-hash-sum-v3`.
    pub method: String,
    /// The snapshot the facts and the dump shared (facts an older agent
    /// computed on the server beside the dump).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The session settings that shaped the dump's COPY text, by name
    /// (`crate::facts::COPY_TEXT_SETTINGS`), which a drill sets again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, String>,
    pub tables: Vec<TableFacts>,
}

/// One table's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFacts {
    pub schema: String,
    pub table: String,
    pub rows: u64,
    pub checksum: String,
    /// The columns in the order the dump's COPY text lists them (facts
    /// taken from the dump stream), which a drill reads back in the same
    /// order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
}

/// One encrypted object of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    /// Full S3 key.
    pub key: String,
    /// Ciphertext size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the ciphertext.
    pub sha256: String,
    /// Plaintext bytes read from the dump tool.
    pub plaintext_bytes: u64,
    /// For directory dumps: the file's path relative to the dump
    /// directory, which is where it goes back for a restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// For a pack of a directory dump's small files: the files its
    /// plaintext holds, a POSIX tar archive (`tar -x` reads it) with an
    /// entry for each, in this order. A pack has no `path`, `database` or
    /// `table` of its own; its files have theirs. Absent: not a pack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packed: Option<Vec<PackedFile>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// Compression applied before encryption (`zstd`); absent: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub upload_started_at: Option<OffsetDateTime>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub upload_finished_at: Option<OffsetDateTime>,
}

/// One dump file inside a pack ([`ManifestObject::packed`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedFile {
    /// The file's path relative to the dump directory (its tar entry's
    /// name), where a restore puts it back.
    pub path: String,
    /// Its size in bytes, as dumped.
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

/// Which proof a check record is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// `verify`: every object whole and encrypted to the configured keys.
    Verify,
    /// `drill`: restored into a scratch database and compared with the facts.
    Drill,
    /// `export`: copied onto offline media, every file checked.
    Export,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Verify => "verify",
            CheckKind::Drill => "drill",
            CheckKind::Export => "export",
        }
    }
}

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckResult {
    Passed,
    Failed,
}

/// A record of one `verify`, `drill` or `export` of a backup, written
/// beside it (`<backup>/checks/<time>-<kind>.json`) and never into its
/// manifest: the proof, read by the catalog and `check`, that the backup
/// was shown restorable, when, and by whom.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    pub schema_version: u32,
    pub kind: CheckKind,
    pub result: CheckResult,
    /// What was wrong (empty when it passed), one line each.
    pub findings: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Wall time in seconds.
    pub duration_secs: f64,
    /// The backup-cloud version that ran it.
    pub tool_version: String,
    /// Who ran it: the caller's ARN (STS GetCallerIdentity), or
    /// `unknown` when STS did not say.
    pub ran_by: String,
    /// The machine it ran on.
    pub host: String,
    /// The key of the manifest it checked.
    pub manifest_key: String,
}

/// Versions of everything that produced the backup, for a restore years later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolVersions {
    pub agent: String,
    pub dump_tool: String,
    pub gpgme: String,
    pub server: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_and_uses_lowercase_phases() {
        let mut status = Status::new("orders-1", Phase::Dumping);
        status.bytes_read = 42;
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.contains("\"phase\":\"dumping\""), "{json}");
        let back: Status = serde_json::from_str(&json).unwrap();
        assert_eq!(back, status);
    }

    #[test]
    fn status_message_is_truncated_on_a_char_boundary() {
        let mut status = Status::new("j", Phase::Failed);
        let long = "é".repeat(STATUS_MESSAGE_MAX);
        status.set_message(&long);
        assert!(status.message.len() <= STATUS_MESSAGE_MAX);
        assert!(status.message.chars().all(|c| c == 'é'));
    }

    #[test]
    fn documents_of_another_version_are_refused_before_their_shape() {
        let current = serde_json::to_vec(&Status::new("j", Phase::Booting)).unwrap();
        assert!(parse_document::<Status>(&current).is_ok());
        for (text, found) in [
            (r#"{"schema_version": 2}"#, Some(2)),
            (r#"{"schema_version": "1"}"#, None),
            (r#"{"job_id": "j"}"#, None),
        ] {
            match parse_document::<Status>(text.as_bytes()) {
                Err(DocumentError::Version { found: f }) => assert_eq!(f, found, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            parse_document::<Status>(b"not json"),
            Err(DocumentError::Malformed(_))
        ));
        assert!(matches!(
            parse_document::<Status>(br#"{"schema_version": 1}"#),
            Err(DocumentError::Malformed(_))
        ));
    }

    #[test]
    fn only_succeeded_and_failed_are_terminal() {
        let terminal: Vec<_> = [
            Phase::Launching,
            Phase::Booting,
            Phase::Preparing,
            Phase::Dumping,
            Phase::Uploading,
            Phase::Verifying,
            Phase::Succeeded,
            Phase::Failed,
        ]
        .into_iter()
        .filter(|p| p.is_terminal())
        .collect();
        assert_eq!(terminal, vec![Phase::Succeeded, Phase::Failed]);
    }
}
