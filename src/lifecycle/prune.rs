//! `prune`: removes the backups the retention rules no longer keep.
//!
//! It first shows every backup with its verdict and the reasons
//! (`crate::retention::decide`), and removes only when asked (`--yes`).
//! A backup is removed in an order that never leaves a complete-looking
//! broken one: its manifest first (every version of it), then its open
//! multipart uploads, then every version of every other object and check
//! record under its prefix. Deleting versions by id removes the data on a
//! versioned (Object Lock) bucket, where a plain delete would only add a
//! delete marker and keep every byte. A version S3 Object Lock still
//! retains is not an error: it is reported with its date and removed by a
//! later run. Deletion under `backup/` is allowed only to the role of
//! `policies/prune.json` (by `policies/bucket.json`); a refusal says so.

use futures_util::{stream, StreamExt};
use time::OffsetDateTime;

use super::catalog::{self, Entry};
use super::LifecycleError;
use crate::config::{Config, JobConfig};
use crate::layout;
use crate::retention::{self, Verdict};
use crate::s3::{Bucket, ObjectVersion, S3Error};

/// What an access refusal while pruning adds.
const PRUNE_POLICY: &str = "; removing backups needs the role of policies/prune.json, \
     which policies/bucket.json allows to delete under backup/ (the controller's and the \
     agent's roles never can)";

/// One backup and what the rules say about it.
#[derive(Debug, Clone)]
pub struct Planned {
    pub entry: Entry,
    pub verdict: Verdict,
    /// What removing it did (`--yes` only).
    pub removal: Option<Removal>,
}

/// What became of a backup `prune` set out to remove.
#[derive(Debug, Clone, PartialEq)]
pub enum Removal {
    /// Gone: this many object versions (and delete markers) deleted and
    /// multipart uploads aborted.
    Removed { versions: usize, uploads: usize },
    /// S3 Object Lock retains it (or `left` of its versions) until
    /// `until`; a later run removes it.
    Retained {
        until: Option<OffsetDateTime>,
        left: usize,
    },
    /// It could not be removed (the error); the others were still pruned.
    Failed(String),
}

/// The first removal that failed in `pruned`, and how many did.
pub fn failures(pruned: &[JobPrune]) -> Option<(usize, &str)> {
    let failed: Vec<&str> = pruned
        .iter()
        .flat_map(|j| &j.backups)
        .filter_map(|p| match &p.removal {
            Some(Removal::Failed(err)) => Some(err.as_str()),
            _ => None,
        })
        .collect();
    failed.first().map(|first| (failed.len(), *first))
}

/// The plan (and, with `remove`, the outcome) for one job.
#[derive(Debug, Clone)]
pub struct JobPrune {
    pub job: String,
    pub backups: Vec<Planned>,
}

/// Decides (and with `remove`, carries out) the pruning of `jobs` (every
/// configured job when empty) at `now`.
pub async fn prune(
    config: &Config,
    bucket: &Bucket,
    jobs: &[&JobConfig],
    remove: bool,
    now: OffsetDateTime,
) -> Result<Vec<JobPrune>, LifecycleError> {
    let locked = super::object_lock(bucket, PRUNE_POLICY).await?;
    let mut pruned = Vec::new();
    for job in jobs {
        let mut entries = catalog::list(bucket, &config.storage.prefix, job, locked, now).await?;
        entries.extend(upload_only(bucket, &config.storage.prefix, &job.name, &entries).await?);
        // unreadable manifests are left alone: nothing is decided on them
        let (judged, unreadable): (Vec<Entry>, Vec<Entry>) = entries
            .into_iter()
            .partition(|e| e.state != catalog::State::Unreadable);
        let subjects: Vec<retention::Backup> = judged
            .iter()
            .map(|e| retention::Backup {
                at: e.started_at,
                complete: e.is_complete(),
            })
            .collect();
        let verdicts = retention::decide(&job.retention, &subjects, now);
        // backups are removed side by side, each in its own safe order
        let removals: Vec<Option<Removal>> = stream::iter(judged.iter().zip(&verdicts))
            .map(|(entry, verdict)| async move {
                if remove && verdict.removes() {
                    // one backup that cannot go must not keep the others
                    Some(
                        remove_backup(bucket, entry, now)
                            .await
                            .unwrap_or_else(|err| Removal::Failed(err.to_string())),
                    )
                } else {
                    None
                }
            })
            .buffered(catalog::CONCURRENCY)
            .collect()
            .await;
        let mut backups: Vec<Planned> = judged
            .into_iter()
            .zip(verdicts)
            .zip(removals)
            .map(|((entry, verdict), removal)| Planned {
                entry,
                verdict,
                removal,
            })
            .collect();
        backups.extend(unreadable.into_iter().map(|entry| Planned {
            verdict: Verdict::Keep(vec![
                "its manifest cannot be read: left for an operator".to_owned(),
            ]),
            entry,
            removal: None,
        }));
        backups.sort_by_key(|p| std::cmp::Reverse(p.entry.started_at));
        pruned.push(JobPrune {
            job: job.name.clone(),
            backups,
        });
    }
    Ok(pruned)
}

/// The incomplete backups of `job` that hold nothing but open multipart
/// uploads (a streamed dump is one upload until it completes): a listing
/// of objects does not show them, and their parts cost money until they
/// are aborted. `listed`: the backups the catalog found.
async fn upload_only(
    bucket: &Bucket,
    prefix: &str,
    job: &str,
    listed: &[Entry],
) -> Result<Vec<Entry>, LifecycleError> {
    let folder = layout::backups(prefix, job);
    let uploads = bucket.open_uploads(&folder).await.map_err(|e| {
        LifecycleError::s3(
            format!("listing the uploads under {}", bucket.location(&folder)),
            e,
            PRUNE_POLICY,
        )
    })?;
    let mut found: Vec<Entry> = Vec::new();
    for (key, _) in &uploads {
        let Some(backup) = layout::backup_of_object(job, key) else {
            continue;
        };
        let known = listed.iter().chain(&found).any(|e| e.prefix == backup);
        let Some(parsed) = layout::parse_backup(backup).filter(|_| !known) else {
            continue;
        };
        let Some(at) = layout::parse_timestamp(&parsed.timestamp) else {
            continue;
        };
        found.push(Entry::incomplete(
            bucket,
            job,
            backup.to_owned(),
            parsed.timestamp,
            at,
        ));
    }
    Ok(found)
}

/// Removes one backup: manifest, uploads, the rest.
async fn remove_backup(
    bucket: &Bucket,
    entry: &Entry,
    now: OffsetDateTime,
) -> Result<Removal, LifecycleError> {
    if let Some(until) = entry.locked_until {
        return Ok(Removal::Retained {
            until: Some(until),
            left: entry.objects as usize + 1,
        });
    }
    let failed = |what: &str, key: &str, e| {
        LifecycleError::s3(format!("{what} {}", bucket.location(key)), e, PRUNE_POLICY)
    };
    let prefix = &entry.prefix;
    let manifest_key = layout::manifest(prefix);
    let mut manifest = bucket
        .versions(&manifest_key)
        .await
        .map_err(|e| failed("listing the versions of", &manifest_key, e))?;
    manifest.retain(|v| v.key == manifest_key);
    let mut versions = delete(bucket, &manifest, now).await?;
    if let Some(retained) = versions.take_retained() {
        return Ok(retained);
    }
    // the manifest is gone: the backup is incomplete from here on, and
    // nothing can be writing to it (it was complete, or past its grace)
    let uploads = bucket
        .abort_incomplete_uploads(prefix)
        .await
        .map_err(|(key, e)| {
            failed(
                "aborting the uploads under",
                key.as_deref().unwrap_or(prefix),
                e,
            )
        })?
        .len();
    let rest = bucket
        .versions(prefix)
        .await
        .map_err(|e| failed("listing the versions under", prefix, e))?;
    let more = delete(bucket, &rest, now).await?;
    versions.deleted += more.deleted;
    versions.retained = more.retained;
    Ok(versions.take_retained().unwrap_or(Removal::Removed {
        versions: versions.deleted,
        uploads,
    }))
}

/// What one round of deletions did.
struct Deleted {
    deleted: usize,
    /// Versions Object Lock kept, and until when.
    retained: Option<(usize, Option<OffsetDateTime>)>,
}

impl Deleted {
    fn take_retained(&mut self) -> Option<Removal> {
        self.retained
            .take()
            .map(|(left, until)| Removal::Retained { until, left })
    }
}

/// Deletes `versions`. S3 refuses a version under an Object Lock
/// retention with AccessDenied, as it refuses the wrong role: each refused
/// version's own retention tells them apart. Anything else S3 refuses, and
/// an AccessDenied on an unlocked version, is an error.
async fn delete(
    bucket: &Bucket,
    versions: &[ObjectVersion],
    now: OffsetDateTime,
) -> Result<Deleted, LifecycleError> {
    if versions.is_empty() {
        return Ok(Deleted {
            deleted: 0,
            retained: None,
        });
    }
    let refused = bucket.delete_versions(versions).await.map_err(|e| {
        LifecycleError::s3(
            format!("deleting {}", bucket.location(&versions[0].key)),
            e,
            PRUNE_POLICY,
        )
    })?;
    let mut latest: Option<OffsetDateTime> = None;
    for (version, said) in &refused {
        let until = if said.starts_with("AccessDenied") {
            bucket
                .retained_until(&version.key, Some(&version.version_id))
                .await
                .ok()
                .flatten()
                .filter(|until| *until > now)
        } else {
            None
        };
        let Some(until) = until else {
            return Err(LifecycleError::s3(
                format!(
                    "deleting {} (version {})",
                    bucket.location(&version.key),
                    version.version_id
                ),
                S3Error::refused(said),
                PRUNE_POLICY,
            ));
        };
        latest = latest.max(Some(until));
    }
    Ok(Deleted {
        deleted: versions.len() - refused.len(),
        retained: (!refused.is_empty()).then_some((refused.len(), latest)),
    })
}
