//! Check records: the proof, kept beside each backup, that it was shown
//! restorable.
//!
//! `verify`, `drill` and `export` each write one small JSON document
//! ([`CheckRecord`]) to `<backup>/checks/<time>-<kind>.json` when they
//! finish, passed or failed, naming who ran it. The manifest is never
//! touched (it is what makes the backup complete, and may be locked), and
//! a record is never overwritten: each run writes its own key, with
//! `If-None-Match`, so history accumulates and the catalog reads the newest.

use time::OffsetDateTime;

use crate::aws::AwsClients;
use crate::layout;
use crate::s3::{self, Bucket, Condition, Put, S3Error};
use crate::schema::{CheckKind, CheckRecord, CheckResult, SCHEMA_VERSION};

/// How a check went, for its record.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub kind: CheckKind,
    pub started_at: OffsetDateTime,
    /// Empty: it passed.
    pub findings: Vec<String>,
}

/// Writes the record of `outcome` beside the backup at `backup_prefix`;
/// returns its key. `clients` say who ran it (STS GetCallerIdentity).
pub async fn write(
    bucket: &Bucket,
    clients: &AwsClients,
    backup_prefix: &str,
    outcome: Outcome,
) -> Result<String, S3Error> {
    let finished = OffsetDateTime::now_utc();
    let record = CheckRecord {
        schema_version: SCHEMA_VERSION,
        kind: outcome.kind,
        result: if outcome.findings.is_empty() {
            CheckResult::Passed
        } else {
            CheckResult::Failed
        },
        findings: outcome.findings,
        started_at: outcome.started_at,
        duration_secs: (finished - outcome.started_at).as_seconds_f64().max(0.0),
        tool_version: format!("backup-cloud {}", env!("CARGO_PKG_VERSION")),
        ran_by: clients
            .caller_arn()
            .await
            .unwrap_or_else(|| "unknown".to_owned()),
        host: hostname(),
        manifest_key: layout::manifest(backup_prefix),
    };
    let key = layout::check_record(backup_prefix, outcome.started_at, outcome.kind);
    let body = serde_json::to_vec_pretty(&record).expect("a record serializes");
    bucket
        .put(
            &key,
            body,
            Put {
                content_type: Some(s3::JSON),
                condition: Condition::Absent,
                checksum_crc32: true,
                ..Put::default()
            },
        )
        .await?;
    Ok(key)
}

/// This machine's name, for the record (`unknown` if it has none).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
