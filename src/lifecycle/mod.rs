//! The life of backups after they are written: the catalog (`backups`),
//! the records that prove them restorable (`checks/` beside each backup),
//! retention (`prune`) and monitoring (`check`).
//!
//! A nightly job makes 365 backups a year. They must be listable, expire
//! as the data-retention policy says (and no later: an old backup brings
//! deleted private data back), and be proven restorable regularly, with
//! an alert when that proof or the nightly run itself goes missing. All
//! of it reads S3 alone, through the bucket layout (`crate::layout`), so it
//! works from any machine with the right role and no state of its own.

pub mod catalog;
pub mod monitor;
pub mod prune;
pub mod records;

use std::time::Duration;

use rand::seq::IndexedRandom;
use time::OffsetDateTime;

use crate::aws::AwsClients;
use crate::config::{Config, ConfigError, JobConfig};
use crate::exit::Exit;
use crate::notify::Notifier;
use crate::s3::{Bucket, S3Error};

/// A lifecycle command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// S3 refused or failed a request; `hint` says what to do about it.
    #[error("{what}: {source}{hint}")]
    S3 {
        what: String,
        source: S3Error,
        hint: &'static str,
    },
    /// `--latest`/`--random` found no backup to take: there is nothing
    /// to prove restorable.
    #[error("{0}")]
    NoBackup(String),
}

impl LifecycleError {
    /// The documented exit code for this outcome.
    pub fn exit(&self) -> Exit {
        match self {
            LifecycleError::Config(_) => Exit::Config,
            LifecycleError::NoBackup(_) => Exit::Unrestorable,
            LifecycleError::S3 { .. } => Exit::Internal,
        }
    }

    /// An S3 failure while doing `what`; an access refusal names the
    /// policy the command needs (`policy`, e.g. `policies/prune.json`).
    pub(crate) fn s3(what: impl Into<String>, source: S3Error, policy: &'static str) -> Self {
        let refused = source.to_string().contains("AccessDenied");
        LifecycleError::S3 {
            what: what.into(),
            source,
            hint: if refused { policy } else { "" },
        }
    }
}

/// What an access refusal adds for the read-only commands.
pub(crate) const READ_POLICY: &str =
    "; listing and reading backups needs the role of policies/restore.json (or policies/prune.json)";

/// Which backup `verify`/`drill` take when not given one.
#[derive(Debug, Clone, Copy)]
pub enum Pick {
    /// The newest complete backup.
    Latest,
    /// A random complete backup started within this long of now.
    Random { within: Duration },
}

/// The configured bucket, reached with the config's AWS settings.
pub async fn bucket(config: &Config) -> (Bucket, AwsClients) {
    let clients = AwsClients::load_with(
        config.aws.region.as_deref(),
        config.aws.endpoint_url.as_deref(),
        config.timeouts.aws(),
    )
    .await;
    (
        Bucket::new(clients.s3.clone(), &config.storage.bucket),
        clients,
    )
}

/// The jobs a command covers: `job`, or every configured one.
pub fn jobs<'c>(config: &'c Config, job: Option<&str>) -> Result<Vec<&'c JobConfig>, ConfigError> {
    match job {
        Some(name) => Ok(vec![config.job(name)?]),
        None => Ok(config.jobs.values().collect()),
    }
}

/// The catalog of `job` (or of every job), newest first within each job.
pub async fn backups(
    config: &Config,
    job: Option<&str>,
) -> Result<Vec<catalog::Entry>, LifecycleError> {
    let (bucket, _) = bucket(config).await;
    let locked = object_lock(&bucket, READ_POLICY).await?;
    let now = OffsetDateTime::now_utc();
    let mut entries = Vec::new();
    for job in jobs(config, job)? {
        entries.extend(catalog::list(&bucket, &config.storage.prefix, job, locked, now).await?);
    }
    Ok(entries)
}

/// `check`: the health of `job` (or of every job).
pub async fn check(
    config: &Config,
    job: Option<&str>,
) -> Result<Vec<monitor::JobHealth>, LifecycleError> {
    let (bucket, clients) = bucket(config).await;
    let locked = object_lock(&bucket, READ_POLICY).await?;
    let now = OffsetDateTime::now_utc();
    let notifier = Notifier::new(&clients, config.notify.sns_topic_arn.as_deref());
    let mut health = Vec::new();
    for job in jobs(config, job)? {
        let entries = catalog::list(&bucket, &config.storage.prefix, job, locked, now).await?;
        let assessed = monitor::assess(job, &entries, now);
        if let Some(notifier) = notifier.as_ref().filter(|_| !assessed.problems.is_empty()) {
            let lines: Vec<String> = assessed.problems.iter().map(|p| format!("- {p}")).collect();
            notifier
                .publish_or_warn(
                    &format!(
                        "backup-cloud check: job {} has {} problem(s)",
                        job.name,
                        lines.len()
                    ),
                    &format!(
                        "backup-cloud check found, for job {} (config {}):\n{}",
                        job.name,
                        config.path.display(),
                        lines.join("\n")
                    ),
                )
                .await;
        }
        health.push(assessed);
    }
    Ok(health)
}

/// The location (`s3://…/backup/<job>/<timestamp>/`) of the complete
/// backup of `job` that `pick` chooses.
pub async fn pick(config: &Config, job: &str, pick: Pick) -> Result<String, LifecycleError> {
    let entries = backups(config, Some(job)).await?;
    let now = OffsetDateTime::now_utc();
    // a backup dated in the future is no candidate: the rules and
    // `check` leave it alone too
    let complete: Vec<&catalog::Entry> = entries
        .iter()
        .filter(|e| e.is_complete() && !crate::retention::is_future(e.started_at, now))
        .collect();
    let chosen = match pick {
        Pick::Latest => complete.first().copied(),
        Pick::Random { within } => {
            let recent: Vec<&catalog::Entry> = complete
                .into_iter()
                .filter(|e| now - e.started_at <= within)
                .collect();
            recent.choose(&mut rand::rng()).copied()
        }
    };
    chosen.map(|e| e.location.clone()).ok_or_else(|| {
        LifecycleError::NoBackup(match pick {
            Pick::Latest => format!("job `{job}` has no complete backup"),
            Pick::Random { within } => format!(
                "job `{job}` has no complete backup started within {}",
                crate::retention::shown(within)
            ),
        })
    })
}

/// `prune`: the plan for `job` (or every job), carried out with `remove`.
pub async fn prune(
    config: &Config,
    job: Option<&str>,
    remove: bool,
) -> Result<Vec<prune::JobPrune>, LifecycleError> {
    let jobs = jobs(config, job)?;
    let (bucket, _) = bucket(config).await;
    prune::prune(config, &bucket, &jobs, remove, OffsetDateTime::now_utc()).await
}

/// Whether `bucket` has Object Lock; a refusal adds `policy`'s hint.
pub(crate) async fn object_lock(
    bucket: &Bucket,
    policy: &'static str,
) -> Result<bool, LifecycleError> {
    bucket.object_lock_enabled().await.map_err(|e| {
        LifecycleError::s3(
            format!(
                "reading the Object Lock configuration of s3://{}",
                bucket.name()
            ),
            e,
            policy,
        )
    })
}
