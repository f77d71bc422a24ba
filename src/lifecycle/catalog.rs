//! The catalog: every backup of a job, read from S3 alone.
//!
//! A job's backups are the folders under `<prefix>/backup/<job>/` (one
//! listing with a delimiter, paged); each is then read with a few requests
//! (its manifest, its `checks/` folder and newest records, its Object
//! Lock retention), [`CONCURRENCY`] backups at a time, so thousands of
//! backups list in seconds. A folder whose name is not a backup timestamp
//! is left out (and never pruned): nothing here acts on what it cannot
//! date.

use futures_util::{stream, StreamExt, TryStreamExt};
use serde::Serialize;
use time::OffsetDateTime;

use super::{LifecycleError, READ_POLICY};
use crate::config::JobConfig;
use crate::layout;
use crate::s3::Bucket;
use crate::schema::{parse_document, CheckKind, CheckRecord, CheckResult, Manifest};

/// Backups read at once.
pub const CONCURRENCY: usize = 16;

/// Whether a backup is whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Its manifest exists: restorable.
    Complete,
    /// No manifest: still being written, or abandoned.
    Incomplete,
    /// Complete but older than the job's `max_age`: `prune` removes it
    /// (once its Object Lock retention, if any, has passed).
    Expired,
    /// A manifest that cannot be read: never pruned, reported by `check`.
    Unreadable,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Complete => "complete",
            State::Incomplete => "incomplete",
            State::Expired => "expired",
            State::Unreadable => "unreadable",
        }
    }
}

/// The newest check of one kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastCheck {
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub result: CheckResult,
    pub ran_by: String,
    /// How many findings it had (none when it passed).
    pub findings: usize,
}

impl From<&CheckRecord> for LastCheck {
    fn from(record: &CheckRecord) -> LastCheck {
        LastCheck {
            at: record.started_at,
            result: record.result,
            ran_by: record.ran_by.clone(),
            findings: record.findings.len(),
        }
    }
}

/// One backup, as `backups` shows it (`--output json`: this object).
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub job: String,
    /// Its timestamp in the layout (compact ISO 8601, UTC).
    pub timestamp: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// `s3://bucket/<prefix>/backup/<job>/<timestamp>/`: what `verify`,
    /// `restore` and `drill` take.
    pub location: String,
    pub state: State,
    /// Until when S3 Object Lock keeps it (only while in the future).
    #[serde(with = "time::serde::rfc3339::option")]
    pub locked_until: Option<OffsetDateTime>,
    /// Ciphertext bytes: the manifest's objects, or (incomplete) what is there.
    pub size_bytes: u64,
    pub objects: u64,
    /// The dump format, e.g. `pg_dump-custom` (complete backups only).
    pub format: Option<String>,
    /// OpenPGP fingerprints of the recipients (complete backups only).
    pub recipients: Vec<String>,
    pub last_verify: Option<LastCheck>,
    pub last_drill: Option<LastCheck>,
    pub last_export: Option<LastCheck>,
    /// Why the manifest could not be read (`unreadable` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// The backup's key prefix in the bucket.
    #[serde(skip)]
    pub prefix: String,
}

impl Entry {
    /// An incomplete backup of `job` at `prefix` in `bucket`, with nothing
    /// known of it yet but its time.
    pub fn incomplete(
        bucket: &Bucket,
        job: &str,
        prefix: String,
        timestamp: String,
        started_at: OffsetDateTime,
    ) -> Entry {
        Entry {
            job: job.to_owned(),
            timestamp,
            started_at,
            location: bucket.location(&prefix),
            state: State::Incomplete,
            locked_until: None,
            size_bytes: 0,
            objects: 0,
            format: None,
            recipients: Vec::new(),
            last_verify: None,
            last_drill: None,
            last_export: None,
            problem: None,
            prefix,
        }
    }

    /// Whether it has a manifest that reads (complete, expired or not).
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete | State::Expired)
    }

    /// The newest check of `kind`.
    pub fn last(&self, kind: CheckKind) -> Option<&LastCheck> {
        match kind {
            CheckKind::Verify => self.last_verify.as_ref(),
            CheckKind::Drill => self.last_drill.as_ref(),
            CheckKind::Export => self.last_export.as_ref(),
        }
    }
}

/// The backups of `job` under storage prefix `prefix` in `bucket`, newest
/// first, at `now`. `locked`: whether the bucket has Object Lock (see
/// [`Bucket::object_lock_enabled`]), so retentions are worth asking for.
pub async fn list(
    bucket: &Bucket,
    prefix: &str,
    job: &JobConfig,
    locked: bool,
    now: OffsetDateTime,
) -> Result<Vec<Entry>, LifecycleError> {
    let folder = layout::backups(prefix, &job.name);
    let folders = bucket.folders(&folder).await.map_err(|e| {
        LifecycleError::s3(
            format!("listing {}", bucket.location(&folder)),
            e,
            READ_POLICY,
        )
    })?;
    let dated: Vec<(String, String, OffsetDateTime)> = folders
        .into_iter()
        .filter_map(|backup_prefix| {
            let timestamp = backup_prefix
                .strip_prefix(&folder)?
                .trim_end_matches('/')
                .to_owned();
            let at = layout::parse_timestamp(&timestamp)?;
            Some((backup_prefix, timestamp, at))
        })
        .collect();
    let mut entries: Vec<Entry> = stream::iter(dated)
        .map(|(backup_prefix, timestamp, at)| {
            read_entry(bucket, job, backup_prefix, timestamp, at, locked, now)
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    entries.sort_by_key(|e| std::cmp::Reverse(e.started_at));
    Ok(entries)
}

async fn read_entry(
    bucket: &Bucket,
    job: &JobConfig,
    prefix: String,
    timestamp: String,
    started_at: OffsetDateTime,
    locked: bool,
    now: OffsetDateTime,
) -> Result<Entry, LifecycleError> {
    let failed = |what: &str, key: &str, e| {
        LifecycleError::s3(format!("{what} {}", bucket.location(key)), e, READ_POLICY)
    };
    let manifest_key = layout::manifest(&prefix);
    let manifest = bucket
        .get_if_exists(&manifest_key)
        .await
        .map_err(|e| failed("reading", &manifest_key, e))?;
    let mut entry = Entry::incomplete(bucket, &job.name, prefix.clone(), timestamp, started_at);
    match manifest.map(|m| parse_document::<Manifest>(&m.body)) {
        Some(Ok(manifest)) => {
            entry.state = if job.retention.expired(started_at, now) {
                State::Expired
            } else {
                State::Complete
            };
            entry.size_bytes = manifest.objects.iter().map(|o| o.size).sum();
            entry.objects = manifest.objects.len() as u64;
            entry.format = Some(manifest.format);
            entry.recipients = manifest.recipients;
            if locked {
                entry.locked_until = bucket
                    .retained_until(&manifest_key, None)
                    .await
                    .map_err(|e| failed("reading the retention of", &manifest_key, e))?
                    .filter(|until| *until > now);
            }
        }
        Some(Err(err)) => {
            entry.state = State::Unreadable;
            entry.problem = Some(format!("its manifest cannot be read: {err}"));
        }
        None => {
            let objects = bucket
                .list_sized(&prefix)
                .await
                .map_err(|e| failed("listing", &prefix, e))?;
            entry.size_bytes = objects.iter().map(|(_, size)| size).sum();
            entry.objects = objects.len() as u64;
        }
    }
    let checks = layout::checks(&prefix);
    let records = bucket
        .list_sized(&checks)
        .await
        .map_err(|e| failed("listing", &checks, e))?;
    for kind in [CheckKind::Verify, CheckKind::Drill, CheckKind::Export] {
        let last = newest_record(bucket, &prefix, &records, kind, now)
            .await
            .map_err(|(key, e)| failed("reading", &key, e))?;
        match kind {
            CheckKind::Verify => entry.last_verify = last,
            CheckKind::Drill => entry.last_drill = last,
            CheckKind::Export => entry.last_export = last,
        }
    }
    Ok(entry)
}

/// Check records are small; a larger one is not a record.
const RECORD_MAX_BYTES: u64 = 64 * 1024;

/// The newest `kind` record among `records` (keys and sizes under the
/// backup at `prefix`'s `checks/`). Only keys of the layout's form count,
/// and none dated in the future (a machine with a wrong clock would hide
/// every later check). A newest record that does not read, is too large,
/// or says another kind or backup than its key counts as a failed check:
/// it proves nothing, and must not let an older one stand in for it.
async fn newest_record(
    bucket: &Bucket,
    prefix: &str,
    records: &[(String, u64)],
    kind: CheckKind,
    now: OffsetDateTime,
) -> Result<Option<LastCheck>, (String, crate::s3::S3Error)> {
    let suffix = format!("-{}.json", kind.as_str());
    let checks = layout::checks(prefix);
    let newest = records
        .iter()
        .filter(|(key, _)| key.ends_with(&suffix) && layout::is_check_record(prefix, key))
        .filter_map(|(key, size)| {
            let stamp = &key[checks.len()..key.len() - suffix.len()];
            let at = layout::parse_timestamp(stamp)?;
            (!crate::retention::is_future(at, now)).then_some((at, key, *size))
        })
        .max_by_key(|(at, key, _)| (*at, key.as_str()));
    let Some((at, key, size)) = newest else {
        return Ok(None);
    };
    let unreadable = |why: &str| LastCheck {
        at,
        result: CheckResult::Failed,
        ran_by: format!("unknown: the record {why}"),
        findings: 1,
    };
    if size > RECORD_MAX_BYTES {
        return Ok(Some(unreadable("is too large to be one")));
    }
    let Some(object) = bucket
        .get_if_exists(key)
        .await
        .map_err(|e| (key.clone(), e))?
    else {
        return Ok(None);
    };
    Ok(Some(match parse_document::<CheckRecord>(&object.body) {
        Ok(record) if record.kind == kind && record.manifest_key == layout::manifest(prefix) => {
            LastCheck::from(&record)
        }
        Ok(_) => unreadable("names another kind or backup than its key"),
        Err(_) => unreadable("does not read"),
    }))
}
