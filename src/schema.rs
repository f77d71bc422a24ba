//! The documents both halves of backup-cloud exchange: the job spec the
//! controller hands the instance, the status the agent publishes while it
//! works, and the manifest that marks a backup complete.
//!
//! They live in one module because the controller and the agent are built
//! from the same binary but run on different machines: a field renamed on
//! one side only would break a running fleet. Every document carries a
//! `schema_version`; readers refuse versions they do not know.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Version of the job spec, status and manifest documents.
pub const SCHEMA_VERSION: u32 = 1;

/// Which database engine a job dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    Postgres,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Postgres => "postgres",
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
}

/// Where the database is and who to log in as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub name: String,
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
    /// Per-table row counts and checksums from the dump's own snapshot,
    /// for restore drills; absent in backups from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<DumpFacts>,
}

/// Facts about the dumped data that a drill compares a restore against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpFacts {
    /// How the checksums were computed, e.g. `postgres-row-md5-sum-v1`.
    pub method: String,
    /// The snapshot the facts and the dump share, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub tables: Vec<TableFacts>,
}

/// One table's facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableFacts {
    pub schema: String,
    pub table: String,
    pub rows: u64,
    pub checksum: String,
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
